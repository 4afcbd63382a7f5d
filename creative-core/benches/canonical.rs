//! What canonical JSON costs over `serde_json::to_vec` at the two hottest
//! hashing sites: a job key (once per matrix job) and a cache key (once per
//! provider call).

use std::hint::black_box;

use creative_core::job::{Job, Vars};
use creative_core::request::{Request, Task};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn vars() -> Vars {
    [
        ("product", json!("ceramic mug")),
        ("channel", json!("instagram")),
        ("locale", json!("fr-FR")),
        (
            "brand",
            json!({"name": "acme", "palette": ["#112233", "#445566"], "tone": "warm"}),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn request() -> Request {
    let mut r = Request::new(Task::Image, "a ceramic mug on an oak table, morning light, 35mm");
    r.model = Some("dall-e-3".into());
    r.params.seed = Some(42);
    r.params.width = Some(1024);
    r.params.height = Some(1024);
    r.raw.insert("style_preset".into(), json!("photographic"));
    r.raw.insert("cfg".into(), json!({"scale": 7, "sampler": "dpmpp_2m"}));
    r
}

fn bench(c: &mut Criterion) {
    let vars = vars();
    let request = request();
    let mut g = c.benchmark_group("job_key");
    g.bench_function("canonical", |b| b.iter(|| Job::key_of(black_box(&vars))));
    g.bench_function("serde_json_to_vec", |b| {
        b.iter(|| blake3::hash(&serde_json::to_vec(black_box(&vars)).unwrap()).to_hex()[..16].to_string())
    });
    g.finish();
    let mut g = c.benchmark_group("request_json");
    g.bench_function("canonical", |b| {
        b.iter(|| creative_core::canonical::to_vec(black_box(&request)).unwrap())
    });
    g.bench_function("serde_json_to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&request)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
