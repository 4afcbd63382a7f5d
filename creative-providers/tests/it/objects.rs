//! The object store sink against a real S3-compatible server on loopback:
//! moto's server (`pip install 'moto[server]'`, which `scripts/test` installs).
//! Where it is not installed, each test prints why and passes without running.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use creative_core::deliver::{AssetEntry, Delivery, Sink};
use creative_core::{Artifact, MediaType, Provenance};
use creative_providers::objects::ObjectStoreSink;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, GetOptions, ObjectStore, PutOptions};
use serde_json::json;

/// A moto server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CREATIVE_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let on_path = std::env::var_os("PATH")?;
    std::env::split_paths(&on_path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
}

/// Start moto and make `bucket`; `None` (with the reason printed) when moto is
/// not installed.
async fn moto(bucket: &str) -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        eprintln!(
            "skipped: moto_server not found (install with `pip install 'moto[server]'`, or set CREATIVE_MOTO_SERVER)"
        );
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Ready once it answers; make the bucket (moto takes unsigned requests).
    let client = creative_providers::http::shared_client().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.put(format!("{}/{bucket}", m.url)).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            r => panic!("moto did not come up at {}: {r:?}", m.url),
        }
    }
    Some(m)
}

fn sink(moto: &Moto, extra: serde_json::Value) -> ObjectStoreSink {
    let mut settings = json!({
        "url": "s3://assets/campaigns/summer",
        "options": {
            "aws_endpoint": moto.url,
            "aws_allow_http": "true",
            "aws_region": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        },
    });
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    ObjectStoreSink::from_json(&settings).unwrap()
}

fn asset(data: Vec<u8>) -> (AssetEntry, Artifact) {
    let a = Artifact::new(MediaType::Png, data);
    let entry = AssetEntry {
        job: "j1".into(),
        vars: [
            ("product".to_string(), json!("mug")),
            ("locale".to_string(), json!("en")),
        ]
        .into_iter()
        .collect(),
        step: "hero".into(),
        index: 0,
        id: a.id().clone(),
        media: MediaType::Png,
        bytes: a.data().len() as u64,
        path: Some("en/mug-hero.png".into()),
        meta: Default::default(),
        finished_at: None,
        provenance: Provenance::default(),
        sources: Vec::new(),
    };
    (entry, a)
}

fn head() -> GetOptions {
    GetOptions {
        head: true,
        ..GetOptions::default()
    }
}

#[tokio::test]
async fn an_asset_lands_under_its_templated_key_with_content_type_metadata_and_a_url() {
    let Some(m) = moto("assets").await else { return };
    let s = sink(
        &m,
        json!({"key": "{{ locale }}/{{ product }}/{{ step }}-{{ index }}.{{ ext }}"}),
    );
    let (entry, a) = asset(vec![7u8; 1000]);
    let receipt = s.deliver_event(&Delivery::default(), &entry, &a).await.unwrap();
    assert_eq!(
        receipt.url.as_deref(),
        Some("s3://assets/campaigns/summer/en/mug/hero-0.png")
    );
    let path = ObjectPath::from("campaigns/summer/en/mug/hero-0.png");
    let got = s.store().get(&path).await.unwrap();
    let attrs = got.attributes.clone();
    assert_eq!(got.bytes().await.unwrap().as_ref(), a.data().as_ref());
    assert_eq!(
        attrs.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("image/png")
    );
    assert_eq!(
        attrs
            .get(&Attribute::Metadata("creative-id".into()))
            .map(|v| v.as_ref()),
        Some(entry.id.as_str())
    );
    assert_eq!(
        attrs
            .get(&Attribute::Metadata("creative-step".into()))
            .map(|v| v.as_ref()),
        Some("hero")
    );
    // A public base URL names the object on the CDN instead.
    let cdn = sink(&m, json!({"public_base_url": "https://cdn.example.com/summer/"}));
    let receipt = cdn.deliver_event(&Delivery::default(), &entry, &a).await.unwrap();
    assert_eq!(
        receipt.url.as_deref(),
        Some("https://cdn.example.com/summer/en/mug-hero.png")
    );
}

#[tokio::test]
async fn a_large_asset_goes_up_in_parts_and_comes_back_whole() {
    let Some(m) = moto("assets").await else { return };
    let s = sink(&m, json!({"multipart_threshold_mb": 5, "part_size_mb": 5}));
    let mut rng = fastrand::Rng::with_seed(7);
    let data: Vec<u8> = (0..12 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    let (entry, a) = asset(data);
    s.deliver(&entry, &a).await.unwrap();
    let path = ObjectPath::from("campaigns/summer/en/mug-hero.png");
    let got = s.store().get(&path).await.unwrap();
    // S3 tags a multipart object's ETag with its part count: 5 + 5 + 2 MiB.
    let etag = got.meta.e_tag.clone().unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "ETag {etag}");
    assert_eq!(
        got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("image/png")
    );
    assert!(
        got.bytes().await.unwrap().as_ref() == a.data().as_ref(),
        "the bytes differ"
    );
}

#[tokio::test]
async fn an_object_already_holding_the_asset_is_kept_and_another_is_replaced() {
    let Some(m) = moto("assets").await else { return };
    let s = sink(&m, json!({}));
    let (entry, a) = asset(vec![1u8; 64]);
    let path = ObjectPath::from("campaigns/summer/en/mug-hero.png");
    // An object of the same size marked as this asset: a resumed run's upload.
    let mut attrs = object_store::Attributes::new();
    attrs.insert(
        Attribute::Metadata("creative-id".into()),
        entry.id.as_str().to_string().into(),
    );
    let marked = PutOptions {
        attributes: attrs,
        ..PutOptions::default()
    };
    s.store().put_opts(&path, vec![9u8; 64].into(), marked).await.unwrap();
    s.deliver(&entry, &a).await.unwrap();
    let kept = s.store().get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(kept.as_ref(), [9u8; 64], "not uploaded again");
    // Unmarked (another asset's, or an old run's): replaced.
    s.store().put(&path, vec![9u8; 64].into()).await.unwrap();
    s.deliver(&entry, &a).await.unwrap();
    let meta = s.store().get_opts(&path, head()).await.unwrap();
    assert_eq!(
        meta.attributes
            .get(&Attribute::Metadata("creative-id".into()))
            .map(|v| v.as_ref()),
        Some(entry.id.as_str())
    );
    let now = s.store().get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(now.as_ref(), a.data().as_ref());
}
