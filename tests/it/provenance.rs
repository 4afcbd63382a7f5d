//! Provenance on delivered files, checked by independent readers: C2PA
//! content credentials signed with a certificate chain the test makes, read
//! back by the official c2pa Python package (c2pa-python, installed by
//! scripts/test into target/test-venv, or CREATIVE_C2PA_PYTHON), and IPTC
//! DigitalSourceType in XMP, read back by exiftool.

use std::path::Path;
use std::process::Command;

use std::sync::{Arc, Mutex};

use creative::campaign::deliver::{AssetEntry, Manifest, Sink, SinkError, TRAINED_ALGORITHMIC_MEDIA};
use creative::campaign::spec::{CampaignOptions, Format, Registry, Spec, SpecError};
use creative::engine::{Artifact, ArtifactId, Status};
use serde_json::Value;

use crate::common;
use common::temp_dir;

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

/// A campaign of one product: a generated PNG hero, a PNG thumbnail of it, a
/// JPEG of the hero, a WebP of the thumbnail (two links from the hero), and a
/// generated MP4 clip, all delivered.
fn spec(output: &str) -> String {
    format!(
        r#"
name = "provenance"

[providers.art]
kind = "procedural"

[matrix]
product = ["mug"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} on a table"
size = "96x64"
seed = 7

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 48

[[steps]]
name = "print"
kind = "convert"
inputs = ["hero"]
format = "jpeg"

[[steps]]
name = "web"
kind = "convert"
inputs = ["thumb"]
format = "webp"

[[steps]]
name = "clip"
kind = "generate"
task = "video"
providers = ["art"]
prompt = "a {{{{ product }}}} turning"
width = 64
height = 64
duration_s = 1.0

[output]
steps = ["hero", "thumb", "print", "web", "clip"]
file_name = "{{{{ step }}}}.{{{{ ext }}}}"
contact_sheet = false
{output}
"#
    )
}

fn build(text: &str, base: &Path) -> Result<creative::campaign::spec::Campaign, SpecError> {
    Spec::parse(text, Format::Toml, "provenance.toml")
        .unwrap()
        .build(&registry(), base)
}

/// A host sink keeping the bytes it is handed, by delivered path.
#[derive(Default)]
struct Keep(Mutex<Vec<(String, Vec<u8>)>>);

#[async_trait::async_trait]
impl Sink for Keep {
    fn name(&self) -> &str {
        "keep"
    }
    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError> {
        let path = asset.path.clone().unwrap_or_default();
        self.0.lock().unwrap().push((path, artifact.data().to_vec()));
        Ok(())
    }
}

async fn run(text: &str, base: &Path, out: &Path) -> Manifest {
    run_with(text, base, out, Arc::new(Keep::default())).await
}

async fn run_with(text: &str, base: &Path, out: &Path, sink: Arc<Keep>) -> Manifest {
    let mut campaign = build(text, base).unwrap();
    campaign.add_sink(sink);
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        ..CampaignOptions::default()
    };
    let done = campaign.start(opts).unwrap().wait().await.unwrap();
    assert_eq!(done.outcome.status, Status::Succeeded);
    assert!(
        done.report.delivery_errors.is_empty(),
        "{:?}",
        done.report.delivery_errors
    );
    done.read_manifest().unwrap()
}

/// Signing needs the `c2pa` feature (`cargo test --features c2pa`; CI builds
/// every feature).
#[cfg(feature = "c2pa")]
mod c2pa {
    use super::*;
    use std::path::PathBuf;

    use creative::campaign::spec::SpecErrorKind;
    use creative::campaign::store::BlobStore;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SignatureAlgorithm,
    };

    const BIN: &str = env!("CARGO_BIN_EXE_creative");

    /// A CA and a signing certificate it issued, as C2PA wants a signer: not a
    /// CA, digitalSignature key usage, emailProtection extended key usage, an
    /// authority key identifier. Writes `chain.pem` (signer first, then the CA)
    /// and `key.pem` (the signer's PKCS #8 key) under `dir`.
    fn credentials(dir: &Path, alg: &'static SignatureAlgorithm) -> (PathBuf, PathBuf) {
        signer_credentials(dir, alg, true)
    }

    /// [`credentials`], with or without an organization in the signer's subject.
    fn signer_credentials(dir: &Path, alg: &'static SignatureAlgorithm, organization: bool) -> (PathBuf, PathBuf) {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "creative test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, ca_key).unwrap();

        let key = KeyPair::generate_for(alg).unwrap();
        let mut ee = CertificateParams::new(Vec::<String>::new()).unwrap();
        ee.distinguished_name.push(DnType::CommonName, "creative test signer");
        if organization {
            ee.distinguished_name.push(DnType::OrganizationName, "creative tests");
        }
        ee.is_ca = IsCa::ExplicitNoCa;
        ee.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        ee.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        ee.use_authority_key_identifier_extension = true;
        let signer = ee.signed_by(&key, &ca).unwrap();

        let (chain, key_path) = (dir.join("chain.pem"), dir.join("key.pem"));
        std::fs::write(&chain, format!("{}{}", signer.pem(), ca.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (chain, key_path)
    }

    /// The c2pa-python interpreter, or `None` (the test then says so and skips).
    fn c2pa_python() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("CREATIVE_C2PA_PYTHON") {
            return Some(PathBuf::from(p));
        }
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
        let ok = Command::new(&venv)
            .args(["-c", "import c2pa"])
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(venv)
    }

    /// What c2pa-python reads from each file: its manifest store as JSON.
    fn read_credentials(python: &Path, files: &[PathBuf]) -> Vec<Value> {
        const SCRIPT: &str = r#"
import json, sys, c2pa
out = []
for p in sys.argv[1:]:
    try:
        out.append(json.loads(c2pa.Reader(p).json()))
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
print(json.dumps(out))
"#;
        let o = Command::new(python).arg("-c").arg(SCRIPT).args(files).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The failure codes of a store's active manifest.
    fn failures(store: &Value) -> Vec<String> {
        store["validation_results"]["activeManifest"]["failure"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["code"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn manifest<'a>(store: &'a Value, label: &str) -> &'a Value {
        &store["manifests"][label]
    }

    fn active(store: &Value) -> &Value {
        manifest(store, store["active_manifest"].as_str().expect("an active manifest"))
    }

    fn assertion<'a>(m: &'a Value, prefix: &str) -> Option<&'a Value> {
        m["assertions"]
            .as_array()?
            .iter()
            .find(|a| a["label"].as_str().is_some_and(|l| l.starts_with(prefix)))
            .map(|a| &a["data"])
    }

    fn actions(m: &Value) -> Vec<Value> {
        assertion(m, "c2pa.actions")
            .and_then(|a| a["actions"].as_array())
            .cloned()
            .unwrap_or_default()
    }

    fn action<'a>(acts: &'a [Value], name: &str) -> Option<&'a Value> {
        acts.iter().find(|a| a["action"] == name)
    }

    /// The manifest a `parentOf` ingredient of `m` points to, within `store`.
    fn parent<'a>(store: &'a Value, m: &Value) -> &'a Value {
        let ingredients = m["ingredients"].as_array().expect("ingredients");
        let p = ingredients
            .iter()
            .find(|i| i["relationship"] == "parentOf")
            .expect("a parentOf ingredient");
        let label = p["active_manifest"]
            .as_str()
            .expect("the ingredient carries its own manifest");
        let found = manifest(store, label);
        assert!(found.is_object(), "ingredient manifest {label} is in the store");
        found
    }

    fn created_by_a_model(m: &Value) {
        let acts = actions(m);
        let created = action(&acts, "c2pa.created").unwrap_or_else(|| panic!("no c2pa.created in {acts:?}"));
        assert_eq!(created["digitalSourceType"], TRAINED_ALGORITHMIC_MEDIA);
    }

    fn edited_from_a_parent(m: &Value) {
        let acts = actions(m);
        assert!(action(&acts, "c2pa.opened").is_some(), "{acts:?}");
        assert!(action(&acts, "c2pa.edited").is_some(), "{acts:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signed_files_validate_in_c2pa_python_and_each_rendition_chains_to_its_generation() {
        let Some(python) = c2pa_python() else {
            eprintln!("skipped: c2pa-python not found (scripts/test installs it into target/test-venv; or set CREATIVE_C2PA_PYTHON)");
            return;
        };
        let dir = temp_dir("c2pa-signed");
        credentials(&dir, &rcgen::PKCS_ECDSA_P256_SHA256);
        let out = dir.join("out");
        let keep = Arc::new(Keep::default());
        let text = spec("[output.c2pa]\ncert = \"chain.pem\"\nkey = \"key.pem\"\n");
        let m = run_with(&text, &dir, &out, keep.clone()).await;
        assert_eq!(m.assets.len(), 5);
        // Sinks are handed the signed files, as delivered.
        let kept = keep.0.lock().unwrap().clone();
        assert_eq!(kept.len(), 5);
        for (path, bytes) in &kept {
            assert_eq!(&std::fs::read(out.join(path)).unwrap(), bytes, "{path}");
        }

        let path = |step: &str| {
            let a = m.assets.iter().find(|a| a.step == step).unwrap();
            out.join(a.path.as_deref().unwrap())
        };
        let steps = ["hero", "thumb", "print", "web", "clip"];
        let files: Vec<PathBuf> = steps.iter().map(|s| path(s)).collect();
        let stores = read_credentials(&python, &files);
        for (step, store) in steps.iter().zip(&stores) {
            assert!(store.get("error").is_none(), "{step}: {store}");
            let bad: Vec<_> = failures(store)
                .into_iter()
                .filter(|c| c != "signingCredential.untrusted")
                .collect();
            assert!(bad.is_empty(), "{step}: validation failures {bad:?}");
            assert_ne!(store["validation_state"], "Invalid", "{step}");
            let own = assertion(active(store), "creative.provenance").unwrap_or_else(|| panic!("{step}: {store}"));
            assert_eq!(own["step"], *step);
            assert_eq!(own["campaign"], "provenance");
            // By default the credentials name the provider, not the prompt or seed.
            assert!(
                own.get("prompt").is_none() && own.get("seed").is_none(),
                "{step}: {own}"
            );
        }
        let [hero, thumb, print, web, clip] = &stores[..] else {
            unreachable!()
        };

        // Generations: made by a model from nothing.
        for s in [hero, clip] {
            created_by_a_model(active(s));
            assert_eq!(assertion(active(s), "creative.provenance").unwrap()["provider"], "art");
        }
        // Renditions: opened from their parent, edited, and the parent's own
        // credentials inside, back to the generation.
        for s in [thumb, print] {
            let own = active(s);
            edited_from_a_parent(own);
            created_by_a_model(parent(s, own));
        }
        let web_own = active(web);
        edited_from_a_parent(web_own);
        let thumb_in_web = parent(web, web_own);
        edited_from_a_parent(thumb_in_web);
        assert_eq!(assertion(thumb_in_web, "creative.provenance").unwrap()["step"], "thumb");
        created_by_a_model(parent(web, thumb_in_web));

        // The store keeps what the steps made: the signed file is a new one.
        let blobs = BlobStore::new(out.join(".creative/objects"));
        for a in &m.assets {
            let file = std::fs::read(out.join(a.path.as_deref().unwrap())).unwrap();
            assert_ne!(ArtifactId::of(&a.media, &file), a.id, "{} is signed", a.step);
            let kept = blobs.get(&a.id, &a.media).unwrap().expect("the unsigned payload");
            assert_eq!(kept.len() as u64, a.bytes);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cli_checks_and_signs_with_ed25519_credentials_from_the_environment_and_the_prompt_and_seed_allowed() {
        let Some(python) = c2pa_python() else {
            eprintln!("skipped: c2pa-python not found (scripts/test installs it into target/test-venv; or set CREATIVE_C2PA_PYTHON)");
            return;
        };
        let dir = temp_dir("c2pa-env");
        let (chain, key) = credentials(&dir, &rcgen::PKCS_ED25519);
        let text = spec(
            "[output.c2pa]\ncert_env = \"CREATIVE_TEST_C2PA_CHAIN\"\nkey_env = \"CREATIVE_TEST_C2PA_KEY\"\n\
             alg = \"ed25519\"\ninclude_prompt = true\ninclude_seed = true\n",
        )
        .replace("\"hero\", \"thumb\", \"print\", \"web\", \"clip\"", "\"hero\"");
        let spec_path = dir.join("campaign.toml");
        std::fs::write(&spec_path, text).unwrap();
        // The credentials reach the runner through its environment only.
        let creative = |args: &[&str], key: &Path| {
            Command::new(BIN)
                .args(args)
                .arg(&spec_path)
                .env("CREATIVE_TEST_C2PA_CHAIN", std::fs::read_to_string(&chain).unwrap())
                .env("CREATIVE_TEST_C2PA_KEY", std::fs::read_to_string(key).unwrap())
                .output()
                .unwrap()
        };

        // `check` tries the credentials: another key fails it, before any run.
        let other = dir.join("other.pem");
        std::fs::write(
            &other,
            KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem(),
        )
        .unwrap();
        let o = creative(&["check"], &other);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("output.c2pa") && err.contains("valid signature"), "{err}");
        let o = creative(&["check"], &key);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        let out = dir.join("out");
        let o = creative(&["run", "-q", "--out", out.to_str().unwrap()], &key);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stores = read_credentials(&python, &[out.join("hero.png")]);
        let bad: Vec<_> = failures(&stores[0])
            .into_iter()
            .filter(|c| c != "signingCredential.untrusted")
            .collect();
        assert!(bad.is_empty(), "{bad:?}: {}", stores[0]);
        let own = assertion(active(&stores[0]), "creative.provenance").unwrap();
        assert_eq!(own["prompt"], "a mug on a table");
        assert_eq!(own["seed"], 7);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_credentials_are_spec_errors_at_build_time_naming_the_setting() {
        let dir = temp_dir("c2pa-bad");
        let (chain, key) = credentials(&dir, &rcgen::PKCS_ECDSA_P256_SHA256);
        let check = |output: &str| -> SpecError {
            let e = build(&spec(output), &dir).expect_err(output);
            assert!(
                matches!(e.kind, SpecErrorKind::Settings | SpecErrorKind::Invalid),
                "{e}"
            );
            e
        };

        // Another key than the certificate's: a signature that does not verify.
        let other = dir.join("other.pem");
        std::fs::write(
            &other,
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .unwrap()
                .serialize_pem(),
        )
        .unwrap();
        let e = check("[output.c2pa]\ncert = \"chain.pem\"\nkey = \"other.pem\"\n");
        assert_eq!(e.path, "output.c2pa", "{e}");
        assert!(e.message.contains("do not make a valid signature"), "{e}");

        // The CA's own certificate as the signer: C2PA refuses it.
        let ca_only: String = std::fs::read_to_string(&chain)
            .unwrap()
            .split_inclusive("-----END CERTIFICATE-----\n")
            .nth(1)
            .unwrap()
            .to_string();
        std::fs::write(dir.join("ca.pem"), ca_only).unwrap();
        let e = check("[output.c2pa]\ncert = \"ca.pem\"\nkey = \"key.pem\"\n");
        assert_eq!(e.path, "output.c2pa", "{e}");

        // A signer whose subject names no organization: readers reject it.
        let nameless = dir.join("nameless");
        std::fs::create_dir_all(&nameless).unwrap();
        signer_credentials(&nameless, &rcgen::PKCS_ECDSA_P256_SHA256, false);
        let e = check("[output.c2pa]\ncert = \"nameless/chain.pem\"\nkey = \"nameless/key.pem\"\n");
        assert!(e.message.contains("organization (O=)"), "{e}");

        // A missing file, named with its path.
        let e = check("[output.c2pa]\ncert = \"nope.pem\"\nkey = \"key.pem\"\n");
        assert_eq!(e.path, "output.c2pa.cert");
        assert!(e.message.contains("nope.pem"), "{e}");

        // An unset variable, named.
        let e = check("[output.c2pa]\ncert = \"chain.pem\"\nkey_env = \"CREATIVE_TEST_C2PA_UNSET\"\n");
        assert_eq!(e.path, "output.c2pa.key_env");
        assert!(e.message.contains("CREATIVE_TEST_C2PA_UNSET"), "{e}");

        // Both a file and a variable, or neither.
        let e = check("[output.c2pa]\ncert = \"chain.pem\"\ncert_env = \"X\"\nkey = \"key.pem\"\n");
        assert_eq!(e.path, "output.c2pa.cert");
        let e = check("[output.c2pa]\nkey = \"key.pem\"\n");
        assert!(e.message.contains("`cert`"), "{e}");

        // Not a timestamp authority URL; an unknown algorithm.
        let e = check("[output.c2pa]\ncert = \"chain.pem\"\nkey = \"key.pem\"\ntsa_url = \"ftp://tsa\"\n");
        assert_eq!(e.path, "output.c2pa.tsa_url");
        let e = Spec::parse(
            &spec("[output.c2pa]\ncert = \"chain.pem\"\nkey = \"key.pem\"\nalg = \"rs1\"\n"),
            Format::Toml,
            "provenance.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("output.c2pa.alg"), "{e}");

        // The private key never shows in an error.
        let pem = std::fs::read_to_string(&key).unwrap();
        let secret_line = pem.lines().nth(1).unwrap();
        let e = check("[output.c2pa]\ncert = \"chain.pem\"\nkey = \"other.pem\"\n");
        assert!(!e.to_string().contains(secret_line));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_images_state_their_ai_source_in_xmp_that_exiftool_reads() {
    if Command::new("exiftool").arg("-ver").output().is_err() {
        eprintln!("skipped: exiftool not found (scripts/test installs Debian's libimage-exiftool-perl)");
        return;
    }
    let dir = temp_dir("xmp");
    let out = dir.join("out");
    let m = run(&spec("xmp = true\n"), &dir, &out).await;
    for a in m.assets.iter().filter(|a| a.step != "clip") {
        let file = out.join(a.path.as_deref().unwrap());
        let o = Command::new("exiftool")
            .args(["-json", "-XMP-iptcExt:DigitalSourceType", "-Warning", "-Error"])
            .arg(&file)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
        let tags = &v[0];
        assert_eq!(
            tags["DigitalSourceType"], TRAINED_ALGORITHMIC_MEDIA,
            "{}: {tags}",
            a.step
        );
        assert!(
            tags.get("Error").is_none() && tags.get("Warning").is_none(),
            "{}: {tags}",
            a.step
        );
    }
    // A video carries no XMP here: delivered as made.
    let clip = m.assets.iter().find(|a| a.step == "clip").unwrap();
    let bytes = std::fs::read(out.join(clip.path.as_deref().unwrap())).unwrap();
    assert_eq!(ArtifactId::of(&clip.media, &bytes), clip.id);
    let _ = std::fs::remove_dir_all(&dir);
}
