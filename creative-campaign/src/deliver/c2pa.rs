//! C2PA content credentials, signed with the user's own certificate chain and
//! private key through the official SDK (`c2pa`, Rust-native crypto).
//!
//! What each signed file's manifest says:
//! - a `c2pa.actions` assertion: `c2pa.created` with `digitalSourceType`
//!   `trainedAlgorithmicMedia` (and the model as its software agent) for an
//!   asset a model made from nothing; for one made from another (a rendition,
//!   an edit), `c2pa.opened` of its parent and `c2pa.edited` naming the step;
//! - the parent as an ingredient (`parentOf`), itself signed the same way
//!   first, so a reader walks from a rendition to its generation;
//! - `creative.provenance`: the campaign, step, provider and model, and the
//!   prompt and seed only where the spec allows.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use c2pa::{Builder, BuilderIntent, Context, DigitalSourceType, Reader, SigningAlg};
use creative_core::artifact::{ArtifactId, MediaType};
use creative_core::deliver::{AssetEntry, SourceEntry};
use creative_core::provenance::Provenance;
use serde_json::json;

use super::mark::{generated, MarkError};
use super::xmp::TRAINED_ALGORITHMIC_MEDIA;
use crate::spec::C2paAlg;

/// The label of the campaign's own assertion.
pub const PROVENANCE_LABEL: &str = "creative.provenance";

/// How deep a chain of ingredients may go (each link is signed in turn).
const MAX_DEPTH: usize = 16;

/// Why credentials could not be set up: caught when a spec is built (so
/// `creative check` reports it), never after generating.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum C2paError {
    /// The certificate chain or private key could not be read or parsed.
    #[error("cannot load the signing credentials: {reason}")]
    Credentials {
        /// The SDK's reason (never the key itself).
        reason: String,
    },
    /// The credentials load but a signature made with them does not hold:
    /// the key does not match the certificate, or the certificate is not one
    /// C2PA accepts for signing (a CA, no suitable extended key usage).
    #[error("the signing credentials do not make a valid signature: {reason}")]
    Rejected {
        /// What the check found.
        reason: String,
    },
    /// The timestamp authority's address is not an http(s) URL.
    #[error("tsa_url `{url}` is not an http:// or https:// URL")]
    TsaUrl {
        /// The address given.
        url: String,
    },
}

/// Signs delivered files. Cheap to share; the key stays inside the SDK's
/// signer and is never printed.
pub struct C2paSigner {
    signer: c2pa::BoxedSigner,
    context: Arc<Context>,
    campaign: String,
    include_prompt: bool,
    include_seed: bool,
}

impl std::fmt::Debug for C2paSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("C2paSigner")
            .field("alg", &self.signer.alg())
            .field("campaign", &self.campaign)
            .field("include_prompt", &self.include_prompt)
            .field("include_seed", &self.include_seed)
            .finish_non_exhaustive()
    }
}

fn alg(a: C2paAlg) -> SigningAlg {
    match a {
        C2paAlg::Es256 => SigningAlg::Es256,
        C2paAlg::Ps256 => SigningAlg::Ps256,
        C2paAlg::Ed25519 => SigningAlg::Ed25519,
    }
}

/// The MIME type the SDK embeds credentials in, for the formats signed here.
pub(crate) fn c2pa_format(media: &MediaType) -> Option<&'static str> {
    match media {
        MediaType::Png => Some("image/png"),
        MediaType::Jpeg => Some("image/jpeg"),
        MediaType::Webp => Some("image/webp"),
        MediaType::Mp4 => Some("video/mp4"),
        _ => None,
    }
}

/// Validation codes a signature from the user's own (not publicly trusted)
/// certificate is expected to get: trust is the reader's decision.
fn expected_untrusted(code: &str) -> bool {
    code == "signingCredential.untrusted"
}

impl C2paSigner {
    /// A signer from a PEM certificate chain (signing certificate first) and a
    /// PEM PKCS #8 private key. The pair is tried at once: a small image is
    /// signed and read back, so a key that does not match its certificate, or
    /// a certificate C2PA refuses, is an error here rather than at delivery.
    pub fn new(
        cert_chain_pem: &[u8],
        private_key_pem: &[u8],
        algorithm: C2paAlg,
        tsa_url: Option<&str>,
    ) -> Result<Self, C2paError> {
        if let Some(url) = tsa_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err(C2paError::TsaUrl { url: url.to_string() });
            }
        }
        let load = |tsa: Option<String>| {
            c2pa::create_signer::from_keys(cert_chain_pem, private_key_pem, alg(algorithm), tsa)
                .map_err(|e| C2paError::Credentials { reason: e.to_string() })
        };
        // The trial signs without the timestamp authority: checking a spec
        // makes no network call.
        let trial = load(None)?;
        let context = Arc::new(Context::new());
        self_test(&context, trial.as_ref())?;
        Ok(C2paSigner {
            signer: load(tsa_url.map(str::to_string))?,
            context,
            campaign: String::new(),
            include_prompt: false,
            include_seed: false,
        })
    }

    /// Name the campaign in each file's `creative.provenance` assertion.
    pub fn campaign(mut self, name: impl Into<String>) -> Self {
        self.campaign = name.into();
        self
    }

    /// Put each asset's prompt (and seed) in its credentials. Default: the
    /// model and provider only.
    pub fn include(mut self, prompt: bool, seed: bool) -> Self {
        self.include_prompt = prompt;
        self.include_seed = seed;
        self
    }

    /// `asset`'s payload `data`, signed; `None` for a media type credentials
    /// are not embedded in here (text, audio).
    pub(crate) fn sign_asset(
        &self,
        asset: &AssetEntry,
        title: &str,
        data: &[u8],
        source: &dyn Fn(&SourceEntry) -> Option<Bytes>,
    ) -> Result<Option<Vec<u8>>, MarkError> {
        if c2pa_format(&asset.media).is_none() {
            return Ok(None);
        }
        let node = Node {
            media: &asset.media,
            provenance: &asset.provenance,
        };
        self.sign(node, title, data, &asset.sources, source, 0).map(Some)
    }

    fn sign(
        &self,
        node: Node<'_>,
        title: &str,
        data: &[u8],
        sources: &[SourceEntry],
        source: &dyn Fn(&SourceEntry) -> Option<Bytes>,
        depth: usize,
    ) -> Result<Vec<u8>, MarkError> {
        let sign_err = |e: c2pa::Error| MarkError::Sign { reason: e.to_string() };
        let format = c2pa_format(node.media).ok_or_else(|| MarkError::Sign {
            reason: format!("{} files cannot carry C2PA credentials here", node.media),
        })?;
        let mut b = Builder::from_shared_context(&self.context)
            .with_definition(json!({
                "title": title,
                "claim_generator_info": [{ "name": "creative", "version": crate::VERSION }],
            }))
            .map_err(sign_err)?;

        // The parents this artifact was made from, each signed first so its
        // own credentials travel inside this file's.
        let mut parents = 0;
        if depth < MAX_DEPTH {
            for (i, pid) in node.provenance.parents.iter().enumerate() {
                let Some(src) = sources.iter().find(|s| &s.id == pid) else {
                    continue;
                };
                let Some(pformat) = c2pa_format(&src.media) else {
                    continue;
                };
                let bytes = source(src).ok_or_else(|| MarkError::MissingSource { id: src.id.clone() })?;
                let ptitle = format!("{} ({})", src.provenance.step, short(&src.id));
                let parent = Node {
                    media: &src.media,
                    provenance: &src.provenance,
                };
                let signed = self.sign(parent, &ptitle, &bytes, sources, source, depth + 1)?;
                let label = format!("parent-{i}");
                let relationship = if parents == 0 { "parentOf" } else { "componentOf" };
                b.add_ingredient_from_stream(
                    json!({ "title": ptitle, "relationship": relationship, "label": label }).to_string(),
                    pformat,
                    &mut Cursor::new(signed),
                )
                .map_err(sign_err)?;
                parents += 1;
            }
        }

        let p = node.provenance;
        let agent = p.model.as_deref().or(p.provider.as_deref());
        let made_by_model = p.provider.is_some();
        if parents == 0 {
            let source_type = if generated(p, sources) {
                DigitalSourceType::TrainedAlgorithmicMedia
            } else {
                DigitalSourceType::DigitalCreation
            };
            b.set_intent(BuilderIntent::Create(source_type.clone()));
            let mut created = json!({ "action": "c2pa.created", "digitalSourceType": source_type });
            if let Some(a) = agent {
                created["softwareAgent"] = json!({ "name": a });
            }
            b.add_action(created).map_err(sign_err)?;
        } else {
            // The SDK adds `c2pa.opened` of the parent for an edit.
            b.set_intent(BuilderIntent::Edit);
            let mut edited = json!({
                "action": "c2pa.edited",
                "description": format!("step {}", p.step),
            });
            if made_by_model {
                // A model remade the parent (image to image, inpainting).
                edited["digitalSourceType"] = json!(TRAINED_ALGORITHMIC_MEDIA);
                if let Some(a) = agent {
                    edited["softwareAgent"] = json!({ "name": a });
                }
            }
            b.add_action(edited).map_err(sign_err)?;
        }
        b.add_assertion(PROVENANCE_LABEL, &self.provenance(p))
            .map_err(sign_err)?;

        let mut out = Cursor::new(Vec::with_capacity(data.len() + 32 * 1024));
        b.sign(self.signer.as_ref(), format, &mut Cursor::new(data), &mut out)
            .map_err(sign_err)?;
        Ok(out.into_inner())
    }

    /// The campaign's assertion: what made the artifact, and the prompt and
    /// seed where the spec allows.
    fn provenance(&self, p: &Provenance) -> serde_json::Value {
        let mut v = json!({ "step": p.step });
        if !self.campaign.is_empty() {
            v["campaign"] = json!(self.campaign);
        }
        if let Some(x) = &p.provider {
            v["provider"] = json!(x);
        }
        if let Some(x) = &p.model {
            v["model"] = json!(x);
        }
        if self.include_prompt {
            if let Some(prompt) = p.params.get("prompt") {
                v["prompt"] = prompt.clone();
            }
            if let Some(negative) = p.params.get("negative_prompt") {
                v["negative_prompt"] = negative.clone();
            }
        }
        if self.include_seed {
            if let Some(seed) = p.seed {
                v["seed"] = json!(seed);
            }
        }
        v
    }
}

#[derive(Clone, Copy)]
struct Node<'a> {
    media: &'a MediaType,
    provenance: &'a Provenance,
}

fn short(id: &ArtifactId) -> String {
    id.to_string().chars().take(12).collect()
}

/// Sign a 1x1 PNG with `signer` and read it back: any validation failure but
/// the expected untrusted certificate means these credentials cannot sign.
fn self_test(context: &Arc<Context>, signer: &dyn c2pa::Signer) -> Result<(), C2paError> {
    let rejected = |reason: String| C2paError::Rejected { reason };
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, 1, 1);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().map_err(|e| rejected(e.to_string()))?;
        w.write_image_data(&[0]).map_err(|e| rejected(e.to_string()))?;
    }
    let mut b = Builder::from_shared_context(context)
        .with_definition(json!({ "title": "creative credentials check" }))
        .map_err(|e| rejected(e.to_string()))?;
    b.set_intent(BuilderIntent::Create(DigitalSourceType::TrainedAlgorithmicMedia));
    let mut out = Cursor::new(Vec::new());
    b.sign(signer, "image/png", &mut Cursor::new(&png), &mut out)
        .map_err(|e| rejected(e.to_string()))?;
    out.set_position(0);
    let reader = Reader::from_shared_context(context)
        .with_stream("image/png", &mut out)
        .map_err(|e| rejected(e.to_string()))?;
    let failures: Vec<String> = reader
        .validation_results()
        .and_then(|r| r.active_manifest())
        .map(|m| {
            m.failure()
                .iter()
                .filter(|s| !expected_untrusted(s.code()))
                .map(|s| match s.explanation() {
                    Some(x) => format!("{} ({x})", s.code()),
                    None => s.code().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if failures.is_empty() {
        return Ok(());
    }
    let mut reason = failures.join("; ");
    if reason.contains("claimSignature.mismatch") {
        // The SDK says only that the signature is not valid; these are the
        // two causes seen in practice.
        reason.push_str(
            ": the private key does not match the first certificate of the chain, \
             or that certificate's subject has no organization (O=), which C2PA readers require",
        );
    }
    Err(rejected(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::{DirectorySink, FileNameTemplate, Marking};
    use crate::store::BlobStore;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    /// A CA-issued ES256 signer as C2PA wants one: (chain PEM, key PEM).
    fn credentials() -> (String, String) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "unit test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut ee = CertificateParams::new(Vec::<String>::new()).unwrap();
        ee.distinguished_name.push(DnType::CommonName, "unit test signer");
        // C2PA readers reject a signer without an organization.
        ee.distinguished_name.push(DnType::OrganizationName, "creative");
        ee.is_ca = IsCa::ExplicitNoCa;
        ee.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        ee.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        ee.use_authority_key_identifier_extension = true;
        let cert = ee.signed_by(&key, &ca).unwrap();
        (format!("{}{}", cert.pem(), ca.pem()), key.serialize_pem())
    }

    fn png() -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 4, 4);
        enc.set_color(png::ColorType::Grayscale);
        enc.write_header().unwrap().write_image_data(&[128; 16]).unwrap();
        out
    }

    fn asset(data: &[u8]) -> AssetEntry {
        let media = MediaType::Png;
        AssetEntry {
            job: "mug".into(),
            vars: Default::default(),
            step: "hero".into(),
            index: 0,
            id: ArtifactId::of(&media, data),
            media,
            bytes: data.len() as u64,
            path: None,
            meta: Default::default(),
            finished_at: None,
            provenance: Provenance {
                step: "hero".into(),
                provider: Some("art".into()),
                model: Some("m1".into()),
                ..Provenance::default()
            },
            sources: Vec::new(),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_file_signed_as_its_job_ended_is_kept_by_the_final_pass_not_signed_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("creative-c2pa-once-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (chain, key) = credentials();
        let signer = C2paSigner::new(chain.as_bytes(), key.as_bytes(), C2paAlg::Es256, None).unwrap();
        let blobs = BlobStore::new(dir.join(".creative/objects"));
        let data = png();
        let a = asset(&data);
        blobs.put(&a.id, &data, false).unwrap();
        let sink = DirectorySink::new(&dir, FileNameTemplate::new("{{ step }}.{{ ext }}").unwrap())
            .with_blobs(blobs.clone())
            .with_marking(Marking::c2pa(signer));
        let none = |_: &SourceEntry| None;
        assert!(sink.write_marked_unless_taken("hero.png", &a, &data, &none).unwrap());
        let file = dir.join("hero.png");
        let (first, inode) = (std::fs::read(&file).unwrap(), std::fs::metadata(&file).unwrap().ino());
        assert!(first.len() > data.len(), "signed");
        assert!(sink.place_marked("hero.png", &blobs, &a).unwrap());
        assert_eq!(std::fs::read(&file).unwrap(), first, "the same signed file");
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode, "not replaced");

        // A file this run did not write there is replaced by a signed one.
        std::fs::write(&file, b"stale").unwrap();
        assert!(!sink.write_marked_unless_taken("hero.png", &a, &data, &none).unwrap());
        assert!(sink.place_marked("hero.png", &blobs, &a).unwrap());
        let again = std::fs::read(&file).unwrap();
        assert!(again.starts_with(b"\x89PNG") && again.len() > data.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_signer_s_debug_shows_no_key() {
        let (chain, key) = credentials();
        let signer = C2paSigner::new(chain.as_bytes(), key.as_bytes(), C2paAlg::Es256, None).unwrap();
        let shown = format!("{signer:?}");
        let body = key.lines().nth(1).unwrap();
        assert!(!shown.contains(body) && shown.contains("Es256"), "{shown}");
    }

    #[test]
    fn a_timestamp_authority_must_be_an_http_url() {
        let (chain, key) = credentials();
        let e = C2paSigner::new(chain.as_bytes(), key.as_bytes(), C2paAlg::Es256, Some("tsa.example")).unwrap_err();
        assert!(matches!(e, C2paError::TsaUrl { .. }), "{e}");
    }
}
