//! The webhook sink against a loopback server: retries, idempotency keys, bodies.

use crate::support;

use base64::Engine as _;
use creative_core::deliver::Delivery;
use creative_core::deliver::{AssetEntry, Manifest, ManifestSummary, Report, Sink};
use creative_core::{Artifact, ArtifactId, MediaType, Provenance};
use creative_providers::webhook::WebhookSink;
use hmac::{KeyInit, Mac};
use serde_json::json;
use support::{MockServer, Reply};

/// A Standard Webhooks secret of 32 bytes, for the tests' receivers.
const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtb2YtdGhpcnR5LXR3by1ieXRlcyE=";

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
    let ids: Vec<_> = reqs
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(ids, keys, "the event id is the idempotency key");
    let body = reqs[2].json();
    assert_eq!(body["type"], "asset.delivered");
    assert_eq!(body["data"]["path"], "caption/mug.txt");
    assert_eq!(body["data"]["vars"]["product"], "mug");
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
    assert_eq!(body["type"], "campaign.finished");
    let body = &body["data"];
    assert_eq!(body["campaign"], "c");
    assert_eq!(
        body["assets"][0]["id"],
        json!(ArtifactId::of(&MediaType::Text, b"hello"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a receiver does: recompute HMAC-SHA256 of `id.timestamp.body` with the
/// decoded secret and compare it with every `v1,` signature sent.
fn verifies(id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
            return false;
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

#[tokio::test]
async fn every_attempt_is_signed_over_its_id_timestamp_and_exact_body() {
    std::env::set_var("CREATIVE_TEST_HOOK_SECRET_SIGNED", SECRET);
    let server = MockServer::start().await;
    server.route_once("POST", "/hook", Reply::json(502, json!({"error": "gateway"})));
    server.route("POST", "/hook", Reply::json(200, json!({"ok": true})));
    let sink = WebhookSink::from_json(&json!({
        "url": format!("{}/hook", server.url()),
        "secret_env": "CREATIVE_TEST_HOOK_SECRET_SIGNED",
        "public_base_url": "https://cdn.example.com/summer",
        "backoff_ms": 1,
    }))
    .unwrap();
    let (entry, a) = asset();
    let delivery = Delivery {
        run: "run-1".into(),
        event: "msg_abc".into(),
        urls: vec![("s3".into(), "s3://bucket/caption/mug.txt".into())],
    };
    sink.deliver_event(&delivery, &entry, &a).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        let (id, ts) = (r.header("webhook-id").unwrap(), r.header("webhook-timestamp").unwrap());
        assert_eq!(id, "msg_abc");
        assert!(ts.parse::<u64>().is_ok(), "{ts}");
        let sig = r.header("webhook-signature").unwrap();
        assert!(verifies(id, ts, &r.body, sig), "bad signature {sig}");
        // A body changed by one byte, or another id, fails verification.
        let mut tampered = r.body.clone();
        tampered[0] ^= 1;
        assert!(!verifies(id, ts, &tampered, sig));
        assert!(!verifies("msg_other", ts, &r.body, sig));
    }
    let data = reqs[1].json()["data"].clone();
    assert_eq!(data["run"], "run-1");
    // The public base URL wins over where an earlier sink put the asset.
    assert_eq!(data["url"], "https://cdn.example.com/summer/caption/mug.txt");
    assert_eq!(data["media_type"], "text/plain");
    assert_eq!(
        data["sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "the SHA-256 of `hello`"
    );
}

#[tokio::test]
async fn a_deadline_ends_the_retries_of_an_event() {
    // Real time: paused time would jump the deadline while the loopback
    // server answers.
    let server = MockServer::start().await;
    server.route(
        "POST",
        "/hook",
        Reply::json(503, json!({"error": "busy"})).header("retry-after-ms", "300"),
    );
    let sink = WebhookSink::from_json(&json!({
        "url": format!("{}/hook", server.url()),
        "retries": 50,
        "backoff_ms": 1,
        "deadline_s": 0.75,
    }))
    .unwrap();
    let (entry, a) = asset();
    let e = sink.deliver(&entry, &a).await.unwrap_err();
    // Attempts at 0, 0.3 and 0.6 s; a fourth at 0.9 s would pass the deadline.
    assert_eq!(server.requests().len(), 3, "{e}");
    assert!(e.to_string().contains("deadline"), "{e}");
}
