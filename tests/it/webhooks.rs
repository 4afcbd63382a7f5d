//! Signed webhooks end to end: a loopback receiver that verifies every
//! Standard Webhooks signature, refuses some deliveries, and sees a resume
//! send exactly what it had not acknowledged, under the same event ids.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use creative::campaign::spec::{CampaignOptions, CampaignOutcome, Format, Registry, Spec};
use hmac::{KeyInit, Mac};
use sha2::Digest;

use crate::common;
use common::temp_dir;

/// 32 bytes, as `whsec_<base64>`.
const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtb2YtdGhpcnR5LXR3by1ieXRlcyE=";

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

/// One POST the receiver verified.
#[derive(Debug, Clone)]
struct Event {
    id: String,
    body: serde_json::Value,
    /// What the receiver answered.
    accepted: bool,
    at: SystemTime,
}

/// The receiver's state: every verified POST, whether to refuse `lamp`
/// assets, and any POST whose signature did not verify.
#[derive(Default)]
struct Receiver {
    events: Vec<Event>,
    refuse_lamps: bool,
    forged: Vec<String>,
}

/// Verify a Standard Webhooks signature as a receiver would.
fn verify(id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(header.strip_prefix("v1,").unwrap_or("")) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn receiver() -> (String, Arc<Mutex<Receiver>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Receiver::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (start, len) = loop {
                let k = s.read(&mut chunk).unwrap_or(0);
                if k == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < start + len {
                let k = s.read(&mut chunk).unwrap_or(0);
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            let raw = String::from_utf8_lossy(&buf[..start]).to_string();
            let header = |name: &str| {
                raw.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let (id, ts, sig) = (
                header("webhook-id"),
                header("webhook-timestamp"),
                header("webhook-signature"),
            );
            let body = &buf[start..(start + len).min(buf.len())];
            let mut r = st.lock().unwrap();
            let status = if !verify(&id, &ts, body, &sig) {
                r.forged.push(id.clone());
                "401 Unauthorized"
            } else {
                let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let lamp = body["data"]["vars"]["product"] == "lamp";
                let accepted = !(lamp && r.refuse_lamps);
                r.events.push(Event {
                    id: id.clone(),
                    body,
                    accepted,
                    at: SystemTime::now(),
                });
                if accepted {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                }
            };
            drop(r);
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
        }
    });
    (url, state)
}

fn spec(url: &str) -> String {
    format!(
        r#"
name = "hooks"
concurrency = 2

[providers.art]
kind = "procedural"

[matrix]
product = ["mug", "lamp"]
locale = ["en", "fr"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}})"
size = "64x48"

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 32

[output]
steps = ["hero", "thumb"]
file_name = "{{{{ locale }}}}/{{{{ product }}}}-{{{{ step }}}}.{{{{ ext }}}}"

[[output.sinks]]
kind = "webhook"
url = "{url}"
secret_env = "CREATIVE_TEST_WEBHOOK_SECRET"
public_base_url = "https://cdn.example.com/hooks/"
retries = 1
backoff_ms = 5
"#
    )
}

async fn run(url: &str, out: &Path, resume: bool) -> CampaignOutcome {
    let spec = Spec::parse(&spec(url), Format::Toml, "hooks.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        resume,
        ..CampaignOptions::default()
    };
    campaign.start(opts).unwrap().wait().await.unwrap()
}

fn of_type<'a>(events: &'a [Event], ty: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.body["type"] == ty).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_go_out_as_assets_land_and_a_resume_sends_exactly_the_unacknowledged_ones() {
    std::env::set_var("CREATIVE_TEST_WEBHOOK_SECRET", SECRET);
    let dir = temp_dir("webhooks");
    let out = dir.join("out");
    let (url, rx) = receiver();

    // First run: every lamp asset is refused (twice: one retry).
    rx.lock().unwrap().refuse_lamps = true;
    let first = run(&url, &out, false).await;
    let errors = first.report.delivery_errors.clone();
    assert_eq!(errors.len(), 4, "the four lamp assets failed: {errors:?}");
    assert!(errors.iter().all(|e| e.contains("after 2 attempt(s)")), "{errors:?}");
    let manifest_written = std::fs::metadata(out.join("manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    let events = rx.lock().unwrap().events.clone();
    let assets = of_type(&events, "asset.delivered");
    let accepted: BTreeSet<&str> = assets.iter().filter(|e| e.accepted).map(|e| e.id.as_str()).collect();
    let refused: BTreeSet<&str> = assets.iter().filter(|e| !e.accepted).map(|e| e.id.as_str()).collect();
    assert_eq!(accepted.len(), 4, "each mug asset once");
    assert_eq!(
        assets.iter().filter(|e| e.accepted).count(),
        4,
        "an acknowledged asset is not sent again"
    );
    assert_eq!(refused.len(), 4, "each lamp asset, under one id per asset");
    // The mug assets went out as their jobs ended, before the end of the run
    // wrote the manifest.
    assert!(
        assets.iter().filter(|e| e.accepted).all(|e| e.at <= manifest_written),
        "assets were sent before the manifest was written"
    );
    assert_eq!(of_type(&events, "campaign.finished").len(), 1);
    // Every payload names where to fetch the asset and what its bytes are.
    for e in &assets {
        let d = &e.body["data"];
        let path = d["path"].as_str().unwrap();
        assert_eq!(d["url"], format!("https://cdn.example.com/hooks/{path}"));
        let bytes = std::fs::read(out.join(path)).unwrap();
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(d["sha256"], sha, "{path}");
        assert_eq!(d["media_type"], "image/png");
        assert!(d["provenance"]["step"].is_string());
        if d["step"] == "thumb" {
            assert_eq!(
                d["sources"][0]["provenance"]["step"], "hero",
                "a rendition names its generation"
            );
        }
    }
    let run_id = assets[0].body["data"]["run"].as_str().unwrap().to_string();

    // Resume with the receiver fixed: exactly the four lamp assets, under the
    // ids they had, then a new end of the run.
    let seen = events.len();
    rx.lock().unwrap().refuse_lamps = false;
    let resumed = run(&url, &out, true).await;
    assert!(
        resumed.report.delivery_errors.is_empty(),
        "{:?}",
        resumed.report.delivery_errors
    );
    let events = rx.lock().unwrap().events.clone();
    let new = &events[seen..];
    let resent: BTreeSet<&str> = of_type(new, "asset.delivered").iter().map(|e| e.id.as_str()).collect();
    assert_eq!(of_type(new, "asset.delivered").len(), 4, "{new:?}");
    assert_eq!(
        resent, refused,
        "the same event ids, so the receiver can drop duplicates"
    );
    assert!(of_type(new, "asset.delivered")
        .iter()
        .all(|e| e.body["data"]["run"] == run_id.as_str()));
    let finished = of_type(new, "campaign.finished");
    assert_eq!(finished.len(), 1);
    assert_ne!(finished[0].id, of_type(&events[..seen], "campaign.finished")[0].id);

    // Resumed again with nothing left: nothing is sent.
    let seen = events.len();
    let again = run(&url, &out, true).await;
    assert!(again.report.delivery_errors.is_empty());
    assert_eq!(
        rx.lock().unwrap().events.len(),
        seen,
        "nothing unacknowledged, nothing sent"
    );

    // A fresh run of the same spec is another run: new ids for everything.
    let fresh = run(&url, &out, false).await;
    assert!(fresh.report.delivery_errors.is_empty());
    let events = rx.lock().unwrap().events.clone();
    let fresh_ids: BTreeSet<&str> = of_type(&events[seen..], "asset.delivered")
        .iter()
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(fresh_ids.len(), 8);
    assert!(fresh_ids.is_disjoint(&accepted) && fresh_ids.is_disjoint(&refused));
    assert!(rx.lock().unwrap().forged.is_empty(), "every POST was signed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_after_an_object_store_sends_the_url_the_store_gave_each_asset() {
    std::env::set_var("CREATIVE_TEST_WEBHOOK_SECRET", SECRET);
    let dir = temp_dir("webhooks-store");
    let (out, bucket) = (dir.join("out"), dir.join("bucket"));
    std::fs::create_dir_all(&bucket).unwrap();
    let (url, rx) = receiver();
    let store = format!(
        "[[output.sinks]]\nkind = \"object_store\"\nurl = \"file://{}\"\nkey = \"{{{{ product }}}}/{{{{ locale }}}}-{{{{ step }}}}.{{{{ ext }}}}\"\n\n",
        bucket.display()
    );
    // The store is listed before the webhook, and the webhook has no public base.
    let text = spec(&url)
        .replace(
            "[[output.sinks]]\nkind = \"webhook\"",
            &format!("{store}[[output.sinks]]\nkind = \"webhook\""),
        )
        .replace("public_base_url = \"https://cdn.example.com/hooks/\"\n", "");
    let campaign = Spec::parse(&text, Format::Toml, "hooks.toml")
        .unwrap()
        .build(&registry(), ".")
        .unwrap();
    let done = campaign
        .start(CampaignOptions {
            out_dir: Some(out.clone()),
            ..CampaignOptions::default()
        })
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(
        done.report.delivery_errors.is_empty(),
        "{:?}",
        done.report.delivery_errors
    );
    let events = rx.lock().unwrap().events.clone();
    let assets = of_type(&events, "asset.delivered");
    assert_eq!(assets.len(), 8);
    for e in assets {
        let d = &e.body["data"];
        let key = format!(
            "{}/{}-{}.png",
            d["vars"]["product"].as_str().unwrap(),
            d["vars"]["locale"].as_str().unwrap(),
            d["step"].as_str().unwrap()
        );
        assert_eq!(d["url"], format!("file://{}/{key}", bucket.display()));
        let uploaded = std::fs::read(bucket.join(&key)).unwrap();
        let delivered = std::fs::read(out.join(d["path"].as_str().unwrap())).unwrap();
        assert!(uploaded == delivered, "{key} holds the asset's bytes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
