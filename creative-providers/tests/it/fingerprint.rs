//! The cache key covers every provider setting that shapes the output: each
//! kind of setting changed between two runs through an `Executor` sharing one
//! cache makes the second run call the provider again. And a seed lands in
//! provenance only for backends that send one.
#![cfg(all(feature = "openai", feature = "comfyui", feature = "procedural"))]

use crate::support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use creative_core::{
    Artifact, CallCtx, Dag, Executor, GenerateStep, Generation, GenerationCache, Job, Pipeline, Provider, Request,
    RunOptions, RunOutcome, Status, StoreError, Task,
};
use creative_providers::procedural::{Procedural, ProceduralSettings};
use creative_providers::router::Router;
use serde_json::{json, Value};
use support::{build, with, MockServer, Reply};

#[derive(Default)]
struct MemCache(Mutex<HashMap<String, Generation>>);

#[async_trait]
impl GenerationCache for MemCache {
    async fn get(&self, key: &str) -> Result<Option<Generation>, StoreError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, g: &Generation) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(key.to_string(), g.clone());
        Ok(())
    }
}

/// A real PNG of `side` px, drawn by the offline provider.
async fn real_png(side: u32) -> Vec<u8> {
    let mut r = Request::new(Task::Image, "x");
    r.params.width = Some(side);
    r.params.height = Some(side);
    r.params.seed = Some(1);
    let g = Procedural::new("png").generate(&r, &CallCtx::detached()).await.unwrap();
    g.artifacts[0].data().to_vec()
}

/// One image job through an executor with `provider` and `cache`; no size is
/// asked, so a provider's default size applies.
async fn run(provider: Arc<dyn Provider>, cache: &Arc<MemCache>) -> RunOutcome {
    let step = GenerateStep::new(Task::Image, [provider.id().to_string()], "a mug").unwrap();
    let pipeline: Arc<dyn Pipeline> = Arc::new(Dag::builder("t").step("hero", step, &[]).build().unwrap());
    let exec = Executor::builder().provider(provider).build().unwrap();
    let opts = RunOptions {
        cache: Some(cache.clone() as Arc<dyn GenerationCache>),
        ..Default::default()
    };
    let out = exec
        .start(pipeline, vec![Job::new([("n", 1)])], opts)
        .unwrap()
        .wait()
        .await;
    assert_eq!(out.status, Status::Succeeded, "{:?}", out.jobs[0].error());
    out
}

fn hero(out: &RunOutcome) -> &Artifact {
    &out.jobs[0].outputs("hero")[0]
}

// ---------------------------------------------------------------- openai

async fn openai_mock() -> MockServer {
    let mock = MockServer::start().await;
    let png = base64::engine::general_purpose::STANDARD.encode(real_png(16).await);
    mock.route(
        "POST",
        "/v1/images/generations",
        Reply::json(200, json!({"size": "1024x1024", "data": [{"b64_json": png}]})),
    );
    mock
}

fn openai(mock: &MockServer, extra: Value) -> Arc<dyn Provider> {
    build(
        "openai",
        with(
            json!({"base_url": format!("{}/v1", mock.url()), "api_key": "sk-1"}),
            extra,
        ),
    )
    .unwrap()
}

fn generations(mock: &MockServer) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path().ends_with("/images/generations"))
        .count()
}

#[tokio::test]
async fn a_changed_openai_model_misses_the_cache() {
    let mock = openai_mock().await;
    let cache = Arc::new(MemCache::default());
    run(openai(&mock, json!({"model": "gpt-image-1"})), &cache).await;
    let again = run(openai(&mock, json!({"model": "gpt-image-1"})), &cache).await;
    assert!(hero(&again).provenance().cached, "same settings: a hit");
    assert_eq!(generations(&mock), 1);

    let changed = run(openai(&mock, json!({"model": "dall-e-3"})), &cache).await;
    assert_eq!(generations(&mock), 2, "a new model is a new call");
    assert!(!hero(&changed).provenance().cached);
    assert_eq!(mock.last().json()["model"], "dall-e-3");
}

#[tokio::test]
async fn a_changed_openai_base_url_misses_the_cache() {
    let (a, b) = (openai_mock().await, openai_mock().await);
    let cache = Arc::new(MemCache::default());
    run(openai(&a, json!({})), &cache).await;
    run(openai(&b, json!({})), &cache).await;
    assert_eq!(generations(&a), 1);
    assert_eq!(
        generations(&b),
        1,
        "another server is called, not served from the first's cache"
    );
}

#[tokio::test]
async fn an_openai_key_timeout_or_price_change_keeps_the_fingerprint_and_the_cache() {
    let mock = openai_mock().await;
    let a = openai(&mock, json!({}));
    let b = openai(
        &mock,
        json!({"api_key": "sk-2", "timeout_s": 5, "prices": {"gpt-image-1": {"image": {"*": 1.0}}}}),
    );
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert!(!a.fingerprint().contains("sk-1"));
    let cache = Arc::new(MemCache::default());
    run(a, &cache).await;
    run(b, &cache).await;
    assert_eq!(generations(&mock), 1);
}

#[tokio::test]
async fn provenance_records_the_openai_fingerprint_and_no_seed() {
    let mock = openai_mock().await;
    let p = openai(&mock, json!({}));
    let out = run(p.clone(), &Arc::new(MemCache::default())).await;
    let prov = hero(&out).provenance();
    assert_eq!(prov.provider_fingerprint.as_deref(), Some(p.fingerprint().as_str()));
    assert_eq!(prov.seed, None, "the Images API takes no seed");
    assert!(mock.last().json().get("seed").is_none());
    // The answer is 16 px whatever was asked or the body says.
    assert_eq!(
        (hero(&out).meta().width, hero(&out).meta().height),
        (Some(16), Some(16))
    );
}

// ---------------------------------------------------------------- comfyui

fn workflow(steps: u32) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}

/// A ComfyUI server that finishes every prompt at once with one real PNG.
async fn comfy_mock() -> MockServer {
    let mock = MockServer::start().await;
    mock.route(
        "POST",
        "/prompt",
        Reply::json(200, json!({"prompt_id": "p-1", "number": 1, "node_errors": {}})),
    );
    mock.route(
        "GET",
        "/history/p-1",
        Reply::json(
            200,
            json!({"p-1": {
                "outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
                "status": {"status_str": "success", "completed": true, "messages": []}
            }}),
        ),
    );
    mock.route("GET", "/view", Reply::bytes(200, "image/png", real_png(8).await));
    mock
}

fn prompts(mock: &MockServer) -> usize {
    mock.requests().iter().filter(|r| r.path() == "/prompt").count()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("creative-fp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn comfy(mock: &MockServer, extra: Value) -> Arc<dyn Provider> {
    build(
        "comfyui",
        with(
            json!({"base_url": mock.url(), "poll_interval_ms": 5, "poll_max_ms": 20}),
            extra,
        ),
    )
    .unwrap()
}

#[tokio::test]
async fn an_edited_comfyui_workflow_file_misses_the_cache_and_its_hash_is_recorded() {
    let mock = comfy_mock().await;
    let dir = temp_dir("workflow");
    let file = dir.join("wf.json");
    std::fs::write(&file, workflow(20).to_string()).unwrap();
    let settings = json!({"workflow_path": file.to_str().unwrap()});
    let cache = Arc::new(MemCache::default());
    let first = run(comfy(&mock, settings.clone()), &cache).await;
    run(comfy(&mock, settings.clone()), &cache).await;
    assert_eq!(prompts(&mock), 1, "same file: a hit");
    let hash = blake3::hash(workflow(20).to_string().as_bytes()).to_hex().to_string();
    assert_eq!(hero(&first).provenance().workflow_hash.as_deref(), Some(hash.as_str()));

    std::fs::write(&file, workflow(30).to_string()).unwrap();
    let edited = run(comfy(&mock, settings), &cache).await;
    assert_eq!(prompts(&mock), 2, "an edited workflow is a new call");
    assert_ne!(
        hero(&edited).provenance().workflow_hash,
        hero(&first).provenance().workflow_hash
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_changed_comfyui_injection_map_misses_the_cache() {
    let mock = comfy_mock().await;
    let cache = Arc::new(MemCache::default());
    let into = |node: &str| json!({"workflow": workflow(20), "inject": {"prompt": format!("{node}.inputs.text")}});
    run(comfy(&mock, into("6")), &cache).await;
    run(comfy(&mock, into("6")), &cache).await;
    assert_eq!(prompts(&mock), 1);
    run(comfy(&mock, into("7")), &cache).await;
    assert_eq!(prompts(&mock), 2, "the prompt now goes to another node: a new call");
}

// ---------------------------------------------------------------- procedural

fn procedural(default_size: u32) -> Arc<Procedural> {
    Arc::new(
        Procedural::with_settings(
            "procedural",
            ProceduralSettings {
                default_size,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn a_changed_procedural_default_size_misses_the_cache() {
    let cache = Arc::new(MemCache::default());
    let a = procedural(64);
    run(a.clone(), &cache).await;
    run(a.clone(), &cache).await;
    assert_eq!(a.calls(), 1, "same settings: a hit");
    let b = procedural(96);
    let out = run(b.clone(), &cache).await;
    assert_eq!(b.calls(), 1, "a new default size is a new call");
    assert_eq!(hero(&out).meta().width, Some(96));
    // Latency and failure settings do not shape the output.
    let c = Arc::new(
        Procedural::with_settings(
            "procedural",
            ProceduralSettings {
                default_size: 96,
                latency_ms: 1,
                cost_per_image: 1.0,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    run(c.clone(), &cache).await;
    assert_eq!(c.calls(), 0);
}

// ---------------------------------------------------------------- router

#[tokio::test]
async fn a_router_fingerprint_follows_its_members_and_strategy_and_its_seeds_follow_the_member() {
    let mock = openai_mock().await;
    let router = |size: u32, strategy: &str| {
        Router::builder("r")
            .member(procedural(size))
            .member(openai(&mock, json!({})))
            .strategy(strategy.parse().unwrap())
            .exploration(0.0)
            .build()
            .unwrap()
    };
    let base = router(64, "fallback").fingerprint();
    assert_eq!(base, router(64, "fallback").fingerprint());
    assert_ne!(base, router(96, "fallback").fingerprint(), "a member's setting changed");
    assert_ne!(base, router(64, "cheapest").fingerprint(), "another strategy");

    // The procedural member sends the seed: recorded.
    let out = run(Arc::new(router(64, "fallback")), &Arc::new(MemCache::default())).await;
    assert!(hero(&out).provenance().seed.is_some());
    // Only the OpenAI member: none.
    let only_openai = Router::builder("r").member(openai(&mock, json!({}))).build().unwrap();
    let out = run(Arc::new(only_openai), &Arc::new(MemCache::default())).await;
    assert_eq!(hero(&out).provenance().seed, None);
}

// ---------------------------------------------------------------- every backend

/// Build `kind` from `settings`, skipping kinds this build leaves out.
fn fp(kind: &str, settings: Value) -> Option<String> {
    let mut reg = creative_core::registry::Registry::new();
    creative_providers::register(&mut reg);
    let f = reg.provider_factory(kind)?.clone();
    Some(
        f(kind, &settings, &creative_core::registry::BuildCtx::default())
            .unwrap()
            .fingerprint(),
    )
}

#[test]
fn every_http_backend_fingerprints_its_model_base_url_and_own_settings_but_never_its_key() {
    let cases: &[(&str, &str, Value)] = &[
        ("openai", "dall-e-3", json!({"text_model": "gpt-4o"})),
        ("stability", "ultra", json!({})),
        ("replicate", "owner/other", json!({})),
        ("fal", "fal-ai/flux/dev", json!({})),
        ("ollama", "qwen3", json!({"endpoint": "generate"})),
        ("gemini", "gemini-2.5-pro", json!({"image_model": "imagen-4"})),
        (
            "elevenlabs",
            "eleven_v3",
            json!({"voice_id": "abc", "output_format": "wav_44100"}),
        ),
    ];
    for (kind, model, own) in cases {
        let base = json!({"base_url": "http://127.0.0.1:1/v1", "api_key": "secret-key-1"});
        let Some(a) = fp(kind, base.clone()) else { continue };
        assert_eq!(a.len(), 64, "{kind}: a BLAKE3 hex");
        assert!(!a.contains("secret"), "{kind}");
        let other_key = with(base.clone(), json!({"api_key": "secret-key-2", "timeout_s": 3}));
        assert_eq!(
            fp(kind, other_key),
            Some(a.clone()),
            "{kind}: key and timeout change no output"
        );
        let header_value = with(base.clone(), json!({"headers": {"x-org": "token-a"}}));
        let header_other = with(base.clone(), json!({"headers": {"x-org": "token-b"}}));
        assert_eq!(
            fp(kind, header_value),
            fp(kind, header_other),
            "{kind}: header values stay out"
        );
        let moved = with(base.clone(), json!({"base_url": "http://127.0.0.1:2/v1"}));
        assert_ne!(fp(kind, moved), Some(a.clone()), "{kind}: base_url");
        assert_ne!(
            fp(kind, with(base.clone(), json!({"model": model}))),
            Some(a.clone()),
            "{kind}: model"
        );
        if own.as_object().is_some_and(|o| !o.is_empty()) {
            assert_ne!(fp(kind, with(base, own.clone())), Some(a), "{kind}: {own}");
        }
    }
}
