//! The webhook sink against a loopback server: retries, idempotency keys, bodies.

mod support;

use creative_core::deliver::{AssetEntry, Manifest, ManifestSummary, Report, Sink};
use creative_core::{Artifact, ArtifactId, MediaType, Provenance};
use creative_providers::webhook::WebhookSink;
use serde_json::json;
use support::{MockServer, Reply};

fn sink(url: &str, retries: u32) -> WebhookSink {
    WebhookSink::from_json(&json!({"url": format!("{url}/hook"), "retries": retries, "backoff_ms": 1})).unwrap()
}

fn asset() -> (AssetEntry, Artifact) {
    let a = Artifact::text_plain("hello");
    let entry = AssetEntry {
        job: "j1".into(),
        vars: [("product".to_string(), json!("mug"))].into_iter().collect(),
        step: "caption".into(),
        index: 0,
        id: a.id().clone(),
        media: MediaType::Text,
        bytes: 5,
        path: Some("caption/mug.txt".into()),
        meta: Default::default(),
        finished_at: None,
        provenance: Provenance::default(),
        sources: Vec::new(),
    };
    (entry, a)
}

#[tokio::test]
async fn retries_a_server_error_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    server.route_once("POST", "/hook", Reply::json(503, json!({"error": "busy"})));
    server.route_once(
        "POST",
        "/hook",
        Reply::json(429, json!({"error": "slow down"})).header("retry-after", "0"),
    );
    server.route("POST", "/hook", Reply::json(200, json!({"ok": true})));
    let (entry, a) = asset();
    sink(&server.url(), 3).deliver(&entry, &a).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "two failures, then success");
    let keys: Vec<_> = reqs
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    let body = reqs[2].json();
    assert_eq!(body["event"], "asset");
    assert_eq!(body["asset"]["path"], "caption/mug.txt");
    assert_eq!(body["asset"]["vars"]["product"], "mug");
    assert_eq!(reqs[2].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn gives_up_after_its_retries_and_says_so() {
    let server = MockServer::start().await;
    server.route("POST", "/hook", Reply::json(500, json!({"error": "down"})));
    let (entry, a) = asset();
    let e = sink(&server.url(), 2).deliver(&entry, &a).await.unwrap_err();
    assert_eq!(server.requests().len(), 3);
    assert!(e.to_string().contains("after 3 attempt(s)"), "{e}");
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let server = MockServer::start().await;
    server.route("POST", "/hook", Reply::json(400, json!({"error": "bad"})));
    let (entry, a) = asset();
    assert!(sink(&server.url(), 5).deliver(&entry, &a).await.is_err());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_final_post_summarizes_the_campaign() {
    let server = MockServer::start().await;
    server.route("POST", "/hook", Reply::json(204, json!({})));
    let (entry, _) = asset();
    let manifest = Manifest {
        campaign: "c".into(),
        spec_hash: "ab".repeat(32),
        jobs: Vec::new(),
        assets: vec![entry],
        ..Manifest::default()
    };
    // The sink reads the entries back from the manifest the run wrote.
    let dir = std::env::temp_dir().join(format!("creative-webhook-finish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let summary = ManifestSummary {
        campaign: "c".into(),
        spec_hash: manifest.spec_hash.clone(),
        jobs: 0,
        jobs_complete: 0,
        assets: 1,
        path: Some(path),
    };
    sink(&server.url(), 0)
        .finish(&summary, &Report::default())
        .await
        .unwrap();
    let body = server.last().json();
    assert_eq!(body["event"], "campaign_finished");
    assert_eq!(body["campaign"], "c");
    assert_eq!(
        body["assets"][0]["id"],
        json!(ArtifactId::of(&MediaType::Text, b"hello"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
