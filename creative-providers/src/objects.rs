//! The object store sink: each asset uploaded to S3 (or an S3-compatible
//! server), Google Cloud Storage, Azure Blob Storage or a local folder, through
//! the `object_store` crate.
//!
//! ```toml
//! [[output.sinks]]
//! kind = "object_store"
//! url = "s3://my-bucket/campaigns/summer"    # gs://, az://, file:///...
//! key = "{{ locale }}/{{ product }}-{{ step }}.{{ ext }}"  # default: the asset's path
//! public_base_url = "https://cdn.example.com/summer/"     # optional: receipts' URLs
//! multipart_threshold_mb = 16  # larger assets go up in parts
//! part_size_mb = 8
//! options = { aws_endpoint = "http://127.0.0.1:9000", aws_allow_http = "true" }
//! ```
//!
//! Credentials and settings come from the environment as `object_store` reads
//! them (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`...), then from `options` (the builders' keys),
//! so the spec holds no secret. Every object gets its content type and the
//! metadata `creative-id` (the asset's content hash), `creative-job` and
//! `creative-step` (not in a local folder, which keeps neither). Keys come from a template over the asset's variables, so a
//! resumed run writes the same keys; an object already holding the asset (its
//! `creative-id` matches) is not uploaded again.

use std::borrow::Cow;
use std::sync::Arc;

use ::object_store::path::Path as ObjectPath;
use ::object_store::{Attribute, Attributes, GetOptions, ObjectStore, PutMultipartOptions, PutOptions, WriteMultipart};
use async_trait::async_trait;
use creative_core::deliver::{AssetEntry, Delivery, Receipt, Sink, SinkError};
use creative_core::registry::{BuildCtx, Registry};
use creative_core::template::Template;
use creative_core::{Artifact, ConfigError};
use serde::Deserialize;
use serde_json::Value;

/// The metadata key holding an object's asset id.
const ID_META: &str = "creative-id";

/// Object store sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreSettings {
    /// Where: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
    /// `file:///folder`.
    pub url: String,
    /// A name for reports. Default `object_store`.
    #[serde(default)]
    pub name: Option<String>,
    /// The object key under the URL's prefix: a template over the asset's
    /// variables with `step`, `index`, `ext`, `id` and `job`. Default: the
    /// asset's path in the output folder.
    #[serde(default)]
    pub key: Option<String>,
    /// Receipts' URLs: this base joined with the object's key (else the
    /// store's own URL, such as `s3://bucket/key`).
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// Assets larger than this many MiB go up in parts, 1 to 5120. Default 16.
    #[serde(default = "default_threshold")]
    pub multipart_threshold_mb: u64,
    /// The size of each part in MiB, 5 to 5120 (S3's smallest part). Default 8.
    #[serde(default = "default_part")]
    pub part_size_mb: u64,
    /// Builder options (`aws_endpoint`, `aws_region`, `google_bucket`...), on
    /// top of the environment's.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

fn default_threshold() -> u64 {
    16
}
fn default_part() -> u64 {
    8
}

/// Uploads assets to an object store.
pub struct ObjectStoreSink {
    name: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The URL the store was opened from, without a trailing slash.
    base: String,
    key: Option<Template>,
    public_base: Option<String>,
    threshold: u64,
    part: usize,
    /// A local folder: it keeps no content type or metadata, so an object's
    /// bytes say whether it holds the asset.
    local: bool,
}

impl std::fmt::Debug for ObjectStoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The store's own Debug may show credentials: only the URL here.
        f.debug_struct("ObjectStoreSink")
            .field("name", &self.name)
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

const MIB: u64 = 1024 * 1024;

impl ObjectStoreSink {
    /// A sink from settings; the error's field is the bad setting.
    pub fn new(settings: ObjectStoreSettings) -> Result<Self, ConfigError> {
        if !(1..=5120).contains(&settings.multipart_threshold_mb) {
            return Err(ConfigError::new(
                "multipart_threshold_mb",
                format!("must be 1 to 5120, not {}", settings.multipart_threshold_mb),
            ));
        }
        if !(5..=5120).contains(&settings.part_size_mb) {
            return Err(ConfigError::new(
                "part_size_mb",
                format!("must be 5 to 5120, not {}", settings.part_size_mb),
            ));
        }
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| ConfigError::new("url", format!("`{}`: {e}", settings.url)))?;
        // The environment first (lowercased, as the builders' keys are), then
        // the spec's options over it.
        let mut options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        options.extend(settings.options.clone());
        // The error may quote option values (keys among them): name the URL only.
        let (store, prefix) = ::object_store::parse_url_opts(&url, options).map_err(|e| {
            let e = e.to_string();
            let what = e.split(':').next().unwrap_or("invalid settings");
            ConfigError::new("url", format!("`{}`: cannot open the store ({what})", settings.url))
        })?;
        let key = settings
            .key
            .as_deref()
            .map(Template::new)
            .transpose()
            .map_err(|e| ConfigError::new("key", e.to_string()))?;
        let public_base = match &settings.public_base_url {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_string())
            }
            Some(u) => {
                return Err(ConfigError::new(
                    "public_base_url",
                    format!("`{u}` must start with http:// or https://"),
                ))
            }
            None => None,
        };
        Ok(ObjectStoreSink {
            name: settings.name.clone().unwrap_or_else(|| "object_store".into()),
            store: Arc::from(store),
            prefix,
            base: settings.url.trim_end_matches('/').to_string(),
            key,
            public_base,
            threshold: settings.multipart_threshold_mb * MIB,
            local: url.scheme() == "file",
            part: usize::try_from(settings.part_size_mb * MIB)
                .map_err(|_| ConfigError::new("part_size_mb", "is too large here"))?,
        })
    }

    /// Build from a spec's settings table.
    pub fn from_json(settings: &Value) -> Result<Self, ConfigError> {
        let s: ObjectStoreSettings =
            serde_json::from_value(settings.clone()).map_err(|e| crate::http::field_error(&e.to_string()))?;
        Self::new(s)
    }

    /// The store the sink writes to (for listing what it wrote).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of `asset`, relative to the URL's prefix.
    pub fn key_for(&self, asset: &AssetEntry) -> Result<String, SinkError> {
        let rel = match &self.key {
            Some(t) => t
                .render(&asset.name_vars())
                .map_err(|e| SinkError::new(&self.name, format!("key for {} step {}: {e}", asset.job, asset.step)))?,
            None => asset.path.clone().unwrap_or_else(|| {
                format!(
                    "{}/{}-{}.{}",
                    asset.step,
                    asset.job,
                    asset.index,
                    asset.media.extension()
                )
            }),
        };
        // The key's own shape: no empty, `.` or `..` segment, nothing absolute.
        if rel.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(SinkError::new(
                &self.name,
                format!(
                    "key `{rel}` for {} step {} has an empty, `.` or `..` part",
                    asset.job, asset.step
                ),
            ));
        }
        Ok(rel)
    }

    fn path(&self, rel: &str) -> Result<ObjectPath, SinkError> {
        let mut parts: Vec<_> = self.prefix.parts().collect();
        for seg in rel.split('/') {
            parts.push(
                ::object_store::path::PathPart::parse(seg)
                    .map_err(|e| SinkError::new(&self.name, format!("key `{rel}`: {e}")))?
                    .to_owned(),
            );
        }
        Ok(ObjectPath::from_iter(parts))
    }

    /// Whether the object at `path` already holds `asset`.
    async fn holds(&self, path: &ObjectPath, asset: &AssetEntry) -> bool {
        if self.local {
            return match self.store.get(path).await {
                Ok(r) if r.meta.size == asset.bytes => r
                    .bytes()
                    .await
                    .is_ok_and(|b| creative_core::ArtifactId::of(&asset.media, &b) == asset.id),
                _ => false,
            };
        }
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(path, opts).await {
            Ok(r) => {
                r.meta.size == asset.bytes
                    && r.attributes
                        .get(&Attribute::Metadata(Cow::Borrowed(ID_META)))
                        .map(|v| v.as_ref())
                        == Some(asset.id.as_str())
            }
            Err(_) => false,
        }
    }

    fn attributes(&self, asset: &AssetEntry) -> Attributes {
        let mut a = Attributes::new();
        if self.local {
            return a;
        }
        a.insert(Attribute::ContentType, asset.media.as_str().to_string().into());
        a.insert(
            Attribute::Metadata(Cow::Borrowed(ID_META)),
            asset.id.as_str().to_string().into(),
        );
        a.insert(
            Attribute::Metadata(Cow::Borrowed("creative-job")),
            asset.job.clone().into(),
        );
        a.insert(
            Attribute::Metadata(Cow::Borrowed("creative-step")),
            asset.step.clone().into(),
        );
        a
    }

    /// Upload `artifact` as `asset`; returns where it went.
    pub async fn upload(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<String, SinkError> {
        let rel = self.key_for(asset)?;
        let path = self.path(&rel)?;
        let err = |what: &str, e: ::object_store::Error| {
            SinkError::new(&self.name, format!("{what} {}/{rel}: {e}", self.base))
        };
        if !self.holds(&path, asset).await {
            let data = artifact.data().clone();
            if data.len() as u64 > self.threshold {
                let opts = PutMultipartOptions {
                    attributes: self.attributes(asset),
                    ..PutMultipartOptions::default()
                };
                let upload = self
                    .store
                    .put_multipart_opts(&path, opts)
                    .await
                    .map_err(|e| err("start upload of", e))?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, self.part);
                for chunk in data.chunks(self.part) {
                    w.wait_for_capacity(4).await.map_err(|e| err("upload part of", e))?;
                    w.write(chunk);
                }
                // `finish` aborts the upload on failure, so no part is left billed.
                w.finish().await.map_err(|e| err("finish upload of", e))?;
            } else {
                let opts = PutOptions {
                    attributes: self.attributes(asset),
                    ..PutOptions::default()
                };
                self.store
                    .put_opts(&path, data.into(), opts)
                    .await
                    .map_err(|e| err("upload", e))?;
            }
        }
        Ok(match &self.public_base {
            Some(base) => format!("{base}/{}", encode_key(&rel)),
            None => format!("{}/{rel}", self.base),
        })
    }
}

/// Percent-encode each segment of a key for a URL.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[async_trait]
impl Sink for ObjectStoreSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError> {
        self.upload(asset, artifact).await.map(|_| ())
    }

    async fn deliver_event(
        &self,
        _delivery: &Delivery,
        asset: &AssetEntry,
        artifact: &Artifact,
    ) -> Result<Receipt, SinkError> {
        let url = self.upload(asset, artifact).await?;
        Ok(Receipt { url: Some(url) })
    }
}

/// Register the `object_store` sink kind.
pub fn register(reg: &mut Registry) {
    reg.sink(
        "object_store",
        Arc::new(|settings: &Value, _: &BuildCtx| {
            ObjectStoreSink::from_json(settings).map(|s| Arc::new(s) as Arc<dyn Sink>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_settings_name_the_problem() {
        let e = ObjectStoreSink::from_json(&json!({"url": "file:///tmp/x", "part_size_mb": 1})).unwrap_err();
        assert!(e.to_string().contains("part_size_mb"), "{e}");
        let e = ObjectStoreSink::from_json(&json!({"url": "file:///tmp/x", "multipart_threshold_mb": 0})).unwrap_err();
        assert!(e.to_string().contains("multipart_threshold_mb"), "{e}");
        let e = ObjectStoreSink::from_json(&json!({"url": "nope"})).unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
        let e = ObjectStoreSink::from_json(&json!({"url": "file:///tmp/x", "bukket": "b"})).unwrap_err();
        assert!(e.to_string().contains("bukket"), "{e}");
    }

    #[test]
    fn keys_are_percent_encoded_per_segment() {
        assert_eq!(encode_key("en/mug cup#1.png"), "en/mug%20cup%231.png");
    }
}
