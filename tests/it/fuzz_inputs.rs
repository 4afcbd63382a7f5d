//! Fuzzing the inputs a user or a host hands the library, in CI, for a bounded
//! time (fixed seeds, bounded case counts, a few seconds in a debug build):
//!
//! - specs generated from the spec's structure (not line mutations of the
//!   examples, which `spec_mutations.rs` covers): providers, presets, matrices,
//!   steps, gates, budgets, retries and output sections with values drawn from
//!   valid ones and from edges (zero, negative, huge, NaN-like, wrong types),
//!   each written as JSON and as TOML, then parsed, built and, when it builds,
//!   dry-run; every outcome is a built campaign or an error naming the spec;
//! - templates made of random pieces of minijinja syntax (loops of loops,
//!   filters, unclosed tags) rendered with random variables: a string or a
//!   `TemplateError`, within fuel, never a panic or a hang;
//! - the C ABI's JSON entry points (engine config, run options, spec text):
//!   random and mutated inputs give a status and a last-error message.

use crate::common;

use std::ffi::{CStr, CString};
use std::panic::AssertUnwindSafe;
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use creative::campaign::spec::{CampaignOptions, Format, Registry, Spec};
use creative::engine::{Template, Vars};
use serde_json::{json, Map, Value};

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

fn pick<'a, T>(rng: &mut fastrand::Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.usize(0..xs.len())]
}

/// The first (valid) choice most of the time, any other now and then: a
/// document has many fields, and one bad value in each would make every
/// document fail at its first field.
fn mostly<'a, T>(rng: &mut fastrand::Rng, xs: &'a [T]) -> &'a T {
    if rng.u8(0..10) == 0 {
        pick(rng, xs)
    } else {
        &xs[0]
    }
}

/// A number: usually sane, sometimes an edge.
fn num(rng: &mut fastrand::Rng, sane: std::ops::Range<i64>) -> Value {
    match rng.u8(0..40) {
        0 => pick(
            rng,
            &[
                json!(0),
                json!(-1),
                json!(i64::MAX),
                json!(u64::MAX),
                json!(1e300),
                json!(-1e300),
                json!(0.5),
                json!(1e-300),
            ],
        )
        .clone(),
        1 => pick(rng, &[json!("7"), json!(true), json!([]), json!({})]).clone(),
        _ => json!(rng.i64(sane)),
    }
}

fn text(rng: &mut fastrand::Rng) -> Value {
    json!(mostly(
        rng,
        &[
            "a {{ product }}",
            "{{ product | upper }} on {{ colour }}",
            "{{ nope }}",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "{{",
            "",
            "plain",
            "{{ product ~ product ~ product }}",
            "\u{0}\u{202e}",
        ]
    ))
}

fn size(rng: &mut fastrand::Rng) -> Value {
    json!(mostly(
        rng,
        &[
            "24x24",
            "32x16",
            "0x0",
            "99999x99999",
            "16",
            "x",
            "1x1",
            "4096x4096",
            ""
        ]
    ))
}

fn maybe(rng: &mut fastrand::Rng, m: &mut Map<String, Value>, k: &str, v: impl FnOnce(&mut fastrand::Rng) -> Value) {
    if rng.u8(0..3) != 0 {
        let v = v(rng);
        m.insert(k.into(), v);
    }
}

fn gate(rng: &mut fastrand::Rng) -> Value {
    let mut g = Map::new();
    let kind = *mostly(rng, &["format", "text", "sharpness", "exposure", "dedupe", "nonsense"]);
    g.insert("kind".into(), json!(kind));
    match kind {
        "format" => {
            maybe(rng, &mut g, "min_width", |r| num(r, 1..64));
            maybe(rng, &mut g, "max_height", |r| num(r, 1..64));
        }
        "text" => {
            maybe(rng, &mut g, "min_chars", |r| num(r, 0..50));
            maybe(rng, &mut g, "max_chars", |r| num(r, 0..5000));
        }
        "sharpness" => maybe(rng, &mut g, "min_variance", |r| num(r, 0..100)),
        _ => maybe(rng, &mut g, "threshold", |r| num(r, 0..2)),
    }
    Value::Object(g)
}

fn step(rng: &mut fastrand::Rng, i: usize, providers: &[String]) -> Value {
    let mut s = Map::new();
    s.insert("name".into(), json!(format!("s{i}")));
    let kind = *mostly(rng, &["generate", "resize", "overlay", "pad", "teleport"]);
    s.insert("kind".into(), json!(kind));
    if kind == "generate" {
        maybe(rng, &mut s, "task", |r| {
            json!(mostly(r, &["image", "text", "video", "audio"]))
        });
        let least = usize::from(rng.u8(0..10) != 0);
        let chain: Vec<Value> = (0..rng.usize(least..3))
            .map(|_| {
                if providers.is_empty() || rng.u8(0..20) == 0 {
                    json!("ghost")
                } else {
                    json!(pick(rng, providers))
                }
            })
            .collect();
        s.insert("providers".into(), Value::Array(chain));
        s.insert("prompt".into(), text(rng));
        maybe(rng, &mut s, "size", size);
        maybe(rng, &mut s, "count", |r| num(r, 1..4));
        if rng.bool() {
            s.insert(
                "gates".into(),
                Value::Array((0..rng.usize(1..3)).map(|_| gate(rng)).collect()),
            );
            let action = *mostly(rng, &["regenerate", "fallback", "flag", "fail", "pray"]);
            s.insert("on_gate_fail".into(), json!({"action": action, "max": num(rng, 0..3)}));
        }
    } else {
        let inputs: Vec<Value> = (0..rng.usize(0..2))
            .map(|_| json!(format!("s{}", rng.usize(0..=i))))
            .collect();
        s.insert("inputs".into(), Value::Array(inputs));
        maybe(rng, &mut s, "size", size);
        maybe(rng, &mut s, "width", |r| num(r, 1..64));
        maybe(rng, &mut s, "text", text);
    }
    Value::Object(s)
}

/// A spec built from the spec's structure.
fn spec(rng: &mut fastrand::Rng) -> Value {
    let mut doc = Map::new();
    doc.insert(
        "name".into(),
        json!(mostly(rng, &["fuzz", "", "a/b", "x".repeat(300).as_str()])),
    );
    maybe(rng, &mut doc, "concurrency", |r| num(r, 1..8));
    let mut providers = Map::new();
    let mut ids = Vec::new();
    for i in 0..rng.usize(1..4) {
        let id = format!("p{i}");
        let mut p = Map::new();
        let kind = *mostly(rng, &["procedural", "router", "router", "openai", "warp"]);
        p.insert("kind".into(), json!(kind));
        match kind {
            "procedural" => {
                maybe(rng, &mut p, "latency_ms", |r| num(r, 0..3));
                maybe(rng, &mut p, "cost_per_image", |r| num(r, 0..1));
            }
            "router" => {
                p.insert("providers".into(), json!(ids.clone()));
                maybe(rng, &mut p, "strategy", |r| {
                    json!(mostly(r, &["fallback", "cheapest", "fastest", "?"]))
                });
                maybe(rng, &mut p, "max_wait_s", |r| num(r, 0..5));
                maybe(
                    rng,
                    &mut p,
                    "down_after",
                    |r| json!({"after_s": num(r, 0..60), "min_failures": num(r, 1..5)}),
                );
            }
            "openai" => {
                p.insert("base_url".into(), json!("http://127.0.0.1:9/v1"));
                p.insert("api_key".into(), json!("sk-fuzz"));
            }
            _ => {}
        }
        providers.insert(id.clone(), Value::Object(p));
        ids.push(id);
    }
    doc.insert("providers".into(), Value::Object(providers));
    if rng.bool() {
        doc.insert(
            "presets".into(),
            json!({"warm": {"prompt_prefix": text(rng), "seed": num(rng, 0..9)}}),
        );
    }
    let mut matrix = Map::new();
    for k in ["product", "colour"] {
        if rng.u8(0..4) != 0 {
            let n = rng.usize(0..4);
            matrix.insert(
                k.into(),
                Value::Array((0..n).map(|i| json!(format!("{k}{i}"))).collect()),
            );
        }
    }
    if rng.u8(0..6) == 0 {
        matrix.insert("runs".into(), num(rng, 1..3));
    }
    doc.insert("matrix".into(), Value::Object(matrix));
    let least = usize::from(rng.u8(0..10) != 0);
    let n = rng.usize(least..4);
    doc.insert(
        "steps".into(),
        Value::Array((0..n).map(|i| step(rng, i, &ids)).collect()),
    );
    if rng.bool() {
        doc.insert(
            "budget".into(),
            json!({"max_cost_usd": num(rng, 0..10), "max_minutes": num(rng, 1..10), "max_attempts": num(rng, 1..100)}),
        );
    }
    if rng.bool() {
        doc.insert(
            "retry".into(),
            json!({"max_attempts": num(rng, 1..4), "base_ms": num(rng, 1..100), "max_ms": num(rng, 100..1000)}),
        );
    }
    if rng.bool() {
        let steps: Vec<Value> = (0..n).map(|i| json!(format!("s{i}"))).collect();
        doc.insert(
            "output".into(),
            json!({"steps": steps, "file_name": mostly(rng, &["{{ step }}-{{ product }}.{{ ext }}", "../../{{ step }}", "", "{{ step }}.{{ ext }}"]), "dir": mostly(rng, &["out", "", "/"])}),
        );
    }
    Value::Object(doc)
}

/// The same document as TOML: every top-level key as `"key" = <inline value>`.
fn to_toml(v: &Value) -> Option<String> {
    fn inline(v: &Value) -> Option<String> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => {
                if n.is_f64() {
                    let f = n.as_f64()?;
                    if f.fract() == 0.0 && f.abs() < 1e15 {
                        format!("{f:.1}")
                    } else {
                        format!("{f:e}")
                    }
                } else {
                    n.to_string()
                }
            }
            // JSON's string escapes are TOML's basic-string escapes.
            Value::String(s) => serde_json::to_string(s).ok()?,
            Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Option<Vec<_>>>()?.join(", ")),
            Value::Object(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| Some(format!("{} = {}", serde_json::to_string(k).ok()?, inline(v)?)))
                    .collect::<Option<Vec<_>>>()?
                    .join(", ")
            ),
        })
    }
    let Value::Object(m) = v else { return None };
    let mut out = String::new();
    for (k, v) in m {
        out.push_str(&format!("{} = {}\n", serde_json::to_string(k).ok()?, inline(v)?));
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_specs_in_json_and_toml_build_or_fail_with_a_located_error_and_never_panic() {
    const CASES: usize = 300;
    let started = Instant::now();
    let reg = registry();
    let dir = common::temp_dir("fuzz-specs");
    let mut rng = fastrand::Rng::with_seed(0x5bec);
    let (mut built, mut refused) = (0usize, 0usize);
    for case in 0..CASES {
        let doc = spec(&mut rng);
        let json_text = serde_json::to_string_pretty(&doc).unwrap();
        let toml_text = to_toml(&doc).expect("the generator makes TOML-expressible documents");
        for (text, format, origin) in [
            (&json_text, Format::Json, "fuzz.json"),
            (&toml_text, Format::Toml, "fuzz.toml"),
        ] {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                Spec::parse(text, format, origin).and_then(|s| s.build(&reg, &dir))
            }));
            match result {
                Err(_) => panic!("case {case} ({origin}) panicked; the spec was:\n{text}"),
                Ok(Ok(campaign)) => {
                    let run = campaign
                        .start(CampaignOptions {
                            dry_run: true,
                            out_dir: Some(dir.join("out")),
                            ..CampaignOptions::default()
                        })
                        .unwrap_or_else(|e| {
                            panic!("case {case} ({origin}): built but the dry run refused: {e}\n{text}")
                        });
                    tokio::time::timeout(Duration::from_secs(30), run.wait())
                        .await
                        .unwrap_or_else(|_| panic!("case {case} ({origin}): the dry run hangs\n{text}"))
                        .expect("a dry run ends");
                    built += 1;
                }
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(origin) && msg.len() > origin.len() + 10,
                        "case {case}: an error that says too little: `{msg}`"
                    );
                    refused += 1;
                }
            }
        }
    }
    eprintln!(
        "fuzz specs: {CASES} documents as JSON and TOML: {built} built and dry-run, {refused} refused, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(built > 20 && refused > 200, "{built} built, {refused} refused");
}

const PIECES: &[&str] = &[
    "{{ a }}",
    "{{ b | upper }}",
    "{{ c | join(',') }}",
    "{{ a ~ b }}",
    "{% for x in c %}",
    "{% for i in range(100000) %}",
    "{% for i in range(n) %}",
    "{% endfor %}",
    "{% if a %}",
    "{% else %}",
    "{% endif %}",
    "{{ loop.index }}",
    "{{ x }}",
    "{{ missing }}",
    "{{ a * 100000 }}",
    "{{ b * 1000000 }}",
    "{% set b = b ~ b %}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "text ",
    "\u{0}",
    "{{ 1 / 0 }}",
    "{{ n ** n }}",
    "{{ c[99] }}",
    "{{ a.b.c }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% include 'x' %}",
    "{{ range(n) | list | length }}",
];

#[test]
fn random_templates_render_or_fail_within_fuel_and_never_panic_or_hang() {
    const CASES: usize = 3000;
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(0x7e3a);
    let (mut rendered, mut refused, mut slowest) = (0usize, 0usize, Duration::ZERO);
    for case in 0..CASES {
        let source: String = (0..rng.usize(1..10)).map(|_| *pick(&mut rng, PIECES)).collect();
        let mut vars = Vars::new();
        vars.insert("a".into(), json!(pick(&mut rng, &["x", "", "{{ a }}"])));
        vars.insert("b".into(), json!("yz".repeat(rng.usize(0..100))));
        vars.insert("c".into(), json!(["p", "q", "r"]));
        vars.insert(
            "n".into(),
            pick(&mut rng, &[json!(3), json!(1_000_000_000u64), json!(-5), json!("9")]).clone(),
        );
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(|| Template::new(&source).and_then(|t| t.render(&vars)));
        let took = t0.elapsed();
        slowest = slowest.max(took);
        match result {
            Err(_) => panic!("case {case}: template panicked: {source:?}"),
            Ok(Ok(s)) => {
                assert!(
                    s.len() <= creative::engine::template::MAX_OUTPUT_BYTES,
                    "case {case}: {source:?}"
                );
                rendered += 1;
            }
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty(), "case {case}");
                refused += 1;
            }
        }
        assert!(took < Duration::from_secs(10), "case {case} took {took:?}: {source:?}");
    }
    eprintln!(
        "fuzz templates: {CASES} cases, {rendered} rendered, {refused} refused, slowest {slowest:?}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        rendered > 100 && refused > 100,
        "{rendered} rendered, {refused} refused"
    );
}

fn last_error() -> String {
    let p = creative_ffi::creative_last_error_message();
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn mutate_text(rng: &mut fastrand::Rng, s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    match rng.u8(0..4) {
        0 => b.truncate(rng.usize(0..=b.len())),
        1 if !b.is_empty() => {
            let i = rng.usize(0..b.len());
            b[i] = *pick(rng, b"{}[]\",:0-9e.ntf\\ ");
        }
        2 => {
            let i = rng.usize(0..=b.len());
            b.splice(i..i, pick(rng, &["\"x\":1,", "[", "}", "1e999", "\"\\ud800\""]).bytes());
        }
        _ => {}
    }
    // A C string has no NUL inside.
    b.retain(|c| *c != 0);
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn random_and_mutated_json_through_the_c_abi_gives_a_status_and_a_message_never_a_crash() {
    use creative_ffi::*;
    const CASES: usize = 150;
    let started = Instant::now();
    let dir = common::temp_dir("fuzz-ffi");
    let mut rng = fastrand::Rng::with_seed(0xabcd);
    let base_spec = "name = \"t\"\n[providers.procedural]\nkind = \"procedural\"\n[matrix]\nproduct = [\"a\", \"b\"]\n\
        [[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"procedural\"]\nprompt = \"a {{ product }}\"\nsize = \"8x8\"\n";
    let (mut ok, mut refused) = (0usize, 0usize);
    for case in 0..CASES {
        // The engine's config.
        let config = match rng.u8(0..6) {
            0 => String::new(),
            1 => {
                json!({"worker_threads": num(&mut rng, 1..3), "max_blocking_threads": num(&mut rng, 1..8)}).to_string()
            }
            2 => json!({"base_dir": dir, "worker_threads": 1}).to_string(),
            3 => json!({"worker_threads": 1, "colour": "red"}).to_string(),
            4 => mutate_text(&mut rng, r#"{"worker_threads": 1, "max_blocking_threads": 2}"#),
            _ => pick(
                &mut rng,
                &["[]", "null", "1", "\"x\"", "{", "{\"worker_threads\": 1e400}"],
            )
            .to_string(),
        };
        let config_c = CString::new(config.clone()).unwrap();
        let mut engine = null_mut();
        let status =
            unsafe { creative_engine_new(if config.is_empty() { null() } else { config_c.as_ptr() }, &mut engine) };
        if status != creative_status::Ok {
            assert!(
                engine.is_null(),
                "case {case}: a failed creative_engine_new set out_engine"
            );
            assert!(
                !last_error().is_empty(),
                "case {case}: {status:?} without a message for {config:?}"
            );
            refused += 1;
            continue;
        }
        // A run's options and spec. Runs stay inside the temporary folder: the
        // output folder is either there or refused ("" or "/").
        let out = dir.join(format!("run{case}"));
        let mut opts = json!({"dry_run": rng.u8(0..4) != 0, "out_dir": out, "base_dir": dir});
        match rng.u8(0..12) {
            0 => opts["out_dir"] = json!(pick(&mut rng, &["", "/"])),
            1 => opts["format"] = json!(pick(&mut rng, &["toml", "json", "yaml", ""])),
            2 => opts["shard"] = json!(pick(&mut rng, &["1/2", "0/0", "3/2", "x", "1/18446744073709551616"])),
            3 => opts["unknown"] = json!(1),
            4 => opts["resume"] = json!("yes"),
            _ => {}
        }
        let mut opts_text = opts.to_string();
        if rng.u8(0..5) == 0 {
            opts_text = mutate_text(&mut rng, &opts_text);
            if opts_text.contains("out_dir") && !opts_text.contains(out.to_str().unwrap()) {
                // A mutation inside the path could point elsewhere: keep it a dry run.
                opts_text = json!({"dry_run": true, "out_dir": out}).to_string();
            }
        }
        let spec_text = match rng.u8(0..4) {
            0 | 1 => base_spec.to_string(),
            2 => mutate_text(&mut rng, base_spec),
            _ => to_toml(&spec(&mut rng)).unwrap(),
        };
        let spec_c = CString::new(spec_text.clone()).unwrap();
        let opts_c = CString::new(opts_text.clone()).unwrap();
        let mut run = null_mut();
        let status =
            unsafe { creative_run_start(engine, spec_c.as_ptr(), opts_c.as_ptr(), None, null_mut(), &mut run) };
        if status == creative_status::Ok {
            assert!(!run.is_null(), "case {case}: Ok without a run");
            let waited = unsafe { creative_run_wait(run, 30_000) };
            assert_ne!(
                waited,
                creative_status::Timeout,
                "case {case}: the run hangs\n{spec_text}"
            );
            unsafe { creative_run_free(run) };
            ok += 1;
        } else {
            assert!(run.is_null(), "case {case}: a failed creative_run_start set out_run");
            let msg = last_error();
            assert!(
                !msg.is_empty(),
                "case {case}: {status:?} without a message; options {opts_text:?}"
            );
            refused += 1;
        }
        unsafe { creative_engine_free(engine) };
    }
    eprintln!(
        "fuzz C ABI: {CASES} cases, {ok} runs ended, {refused} refused with a status and message, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(ok > 10 && refused > 30, "{ok} ran, {refused} refused");
    let _ = std::fs::remove_dir_all(&dir);
}
