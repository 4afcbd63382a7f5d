//! What placing one prompt on a pool of ComfyUI servers costs.
//!
//! - `comfyui_pool_claim/N`: choosing the server with the shortest queue and
//!   counting the prompt on it (`Pool::claim`, then dropping the claim), for
//!   pools of 1 to 64 servers, half of them holding a prompt: the scheduling
//!   overhead itself.
//! - `comfyui_pool_prompt/N`: one whole prompt, one after another, through a
//!   `comfyui` provider over N loopback ComfyUI servers that run prompts at
//!   once (`creative_testkit::comfyui`): queue, websocket, history, `/view`,
//!   history cleanup. The difference between 1 server (no pool) and 4 is what
//!   the pool adds to a prompt; the whole is what a server's GPU time is
//!   compared against.
//!
//! `cargo bench -p creative-providers --bench comfyui_pool`
//!
//! Measured at 0e5260d (2 shared cores under other builds, criterion 3 s,
//! medians): claim 145 ns with 1 server, 388 ns with 4, 1.05 us with 16,
//! 6.8 us with 64; a whole loopback prompt 2.11 ms on one server and 2.55 ms
//! on a pool of 4 (interval 1.8-3.6 ms: within the machine's noise). Placing a
//! prompt costs under a ten-thousandth of the 1-1.5 s a GPU spends on one image.

use std::sync::Arc;

use creative_core::{CallCtx, Provider, Request, Task};
use creative_providers::comfyui::pool::{Pool, Server};
use creative_providers::comfyui::ComfyUi;
use creative_providers::http::Transport;
use creative_testkit::comfyui::{ComfyConfig, FakeComfyUi};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;

fn pool(n: usize) -> Pool {
    Pool::new(
        (0..n)
            .map(|i| {
                Server::new(
                    Transport::builder("bench", format!("http://10.0.0.{i}:8188"))
                        .build()
                        .unwrap(),
                )
            })
            .collect(),
    )
}

fn claim(c: &mut Criterion) {
    let mut g = c.benchmark_group("comfyui_pool_claim");
    for n in [1usize, 4, 16, 64] {
        let p = pool(n);
        // Half the servers hold a prompt each, so the choice is not trivial.
        let held: Vec<_> = (0..n / 2).filter_map(|_| p.claim(&[])).collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &p, |b, p| {
            b.iter(|| {
                let c = p.claim(&[]).unwrap();
                std::hint::black_box(c.index)
            })
        });
        drop(held);
    }
    g.finish();
}

fn workflow() -> serde_json::Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}

fn prompt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("comfyui_pool_prompt");
    for n in [1usize, 4] {
        let servers: Vec<FakeComfyUi> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(FakeComfyUi::start(ComfyConfig::default()).await.unwrap());
            }
            v
        });
        let urls: Vec<String> = servers.iter().map(FakeComfyUi::url).collect();
        let settings = if n == 1 {
            json!({"base_url": urls[0], "workflow": workflow()})
        } else {
            json!({"base_urls": urls, "workflow": workflow()})
        };
        let p: Arc<ComfyUi> = Arc::new(ComfyUi::from_settings("bench", &settings, &Default::default()).unwrap());
        let request = Request::new(Task::Image, "a red fox in snow");
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let g = rt.block_on(p.generate(&request, &CallCtx::detached())).unwrap();
                std::hint::black_box(g.artifacts.len())
            })
        });
        drop(servers);
    }
    g.finish();
}

criterion_group!(benches, claim, prompt);
criterion_main!(benches);
