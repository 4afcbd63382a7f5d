//! Declarative specs: providers, presets, pipeline, campaign matrix, budgets,
//! outputs, read from TOML or JSON, built into a runnable [`Campaign`].
//!
//! ```
//! use creative_campaign::spec::{Format, Spec};
//! let spec = Spec::parse(r#"
//! name = "demo"
//! [matrix]
//! product = ["mug", "lamp"]
//! [[steps]]
//! name = "hero"
//! kind = "generate"
//! providers = ["art"]
//! prompt = "a {{ product }}"
//! "#, Format::Toml, "demo.toml").unwrap();
//! assert_eq!(spec.doc.steps[0].name, "hero");
//!
//! let err = Spec::parse("name = \"x\"\nsteps = 3\n", Format::Toml, "bad.toml").unwrap_err();
//! assert_eq!(err.line, Some(2));
//! assert_eq!(err.path, "steps");
//! ```

mod build;
mod campaign;
mod ended;
mod error;
mod finish;
mod live;
mod matrix;
mod out_dir;
mod plan;
mod ranges;
mod run;
mod schema;
mod steps;

use std::path::{Path, PathBuf};

pub use campaign::{Campaign, CampaignError, CampaignOptions, Shard, STATE_DIR};
pub use creative_core::registry::{BuildCtx, GateFactory, ProviderFactory, Registry, SinkFactory, StepFactory};
pub use error::{SpecError, SpecErrorKind};
pub use finish::{ArtifactLine, ARTIFACTS_FILE, ASSETS_FILE};
pub use matrix::{JobMatrix, Jobs, DEFAULT_MAX_JOBS, MAX_JOBS_LIMIT};
pub use out_dir::{check_out_dir, UnsafeOutputDir};
pub use plan::{JobPlan, Plan, PlannedRequest, PLAN_SAMPLE};
pub use run::{CampaignEvents, CampaignOutcome, CampaignRun};
pub use schema::{
    generate_settings_schema, BudgetSpec, C2paAlg, C2paSpec, GateSpec, Layer, MatrixSpec, OutputSpec, ProviderSpec,
    RetrySpec, SeedPolicy, SinkSpec, SpecDoc, StepSpec,
};

/// The text format of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (errors carry line numbers).
    Toml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name implies: `.json` is JSON, anything else TOML.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// A parsed spec: the document, where it came from, and its text (for line
/// numbers in later errors).
#[derive(Debug, Clone)]
pub struct Spec {
    /// The document.
    pub doc: SpecDoc,
    /// The file or label it came from.
    pub origin: String,
    /// Its format.
    pub format: Format,
    /// The folder of the file, when read from one.
    pub dir: Option<PathBuf>,
    text: String,
}

impl Spec {
    /// Parse a spec. `origin` names it in errors (usually the file path).
    pub fn parse(text: &str, format: Format, origin: &str) -> Result<Spec, SpecError> {
        let doc = match format {
            Format::Toml => parse_toml(text),
            Format::Json => parse_json(text),
        };
        let doc = doc.map_err(|mut e| {
            e.origin = origin.to_string();
            if e.line.is_none() && format == Format::Toml && !e.path.is_empty() {
                e.line = error::toml_line(text, &e.path);
            }
            e
        })?;
        Ok(Spec {
            doc,
            origin: origin.to_string(),
            format,
            dir: None,
            text: text.to_string(),
        })
    }

    /// Read and parse a spec file; the format follows the extension.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Spec, SpecError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            kind: SpecErrorKind::Io,
            origin: origin.clone(),
            path: String::new(),
            line: None,
            message: format!("cannot read the spec: {e}"),
        })?;
        let mut spec = Spec::parse(&text, Format::from_path(path), &origin)?;
        spec.dir = Some(path.parent().map(Path::to_path_buf).unwrap_or_default());
        Ok(spec)
    }

    /// The campaign's jobs, streamed from the matrix (nothing is expanded).
    pub fn jobs(&self) -> Result<JobMatrix, SpecError> {
        JobMatrix::new(&self.doc.matrix).map_err(|e| self.locate(e))
    }

    /// BLAKE3 of the document's canonical JSON ([`creative_core::canonical`]:
    /// the same in a build with serde_json's `preserve_order` as without).
    pub fn hash(&self) -> String {
        let json = creative_core::canonical::to_vec(&self.doc).unwrap_or_default();
        blake3::hash(&json).to_hex().to_string()
    }

    /// Give an error from building this spec its file and line.
    pub(crate) fn locate(&self, mut e: SpecError) -> SpecError {
        e.origin = self.origin.clone();
        if e.line.is_none() && self.format == Format::Toml && !e.path.is_empty() {
            e.line = error::toml_line(&self.text, &e.path);
        }
        e
    }
}

fn clean_path(p: String) -> String {
    if p == "." {
        String::new()
    } else {
        p
    }
}

fn parse_toml(text: &str) -> Result<SpecDoc, SpecError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| SpecError {
        kind: SpecErrorKind::Syntax,
        origin: String::new(),
        path: String::new(),
        line: e.span().map(|s| error::line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = clean_path(e.path().to_string());
        let inner = e.into_inner();
        SpecError {
            kind: SpecErrorKind::Invalid,
            origin: String::new(),
            line: inner.span().map(|s| error::line_of(text, s.start)),
            path,
            message: inner.message().trim().to_string(),
        }
    })
}

fn parse_json(text: &str) -> Result<SpecDoc, SpecError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = clean_path(e.path().to_string());
        let inner = e.into_inner();
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => SpecErrorKind::Syntax,
            _ => SpecErrorKind::Invalid,
        };
        // serde_json appends " at line L column C"; the line has its own field.
        let msg = inner.to_string();
        let msg = msg.rsplit_once(" at line ").map(|(m, _)| m.to_string()).unwrap_or(msg);
        SpecError {
            kind,
            origin: String::new(),
            path,
            line: Some(inner.line()).filter(|l| *l > 0),
            message: msg,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings whose keys are out of order in the text, which is the order a
    /// `serde_json::Map` keeps them in when serde_json's `preserve_order` is on
    /// (a build with the `c2pa` feature).
    const UNSORTED: &str = r#"{
        "name": "demo",
        "providers": {
            "art": {"kind": "procedural", "zeta": 1, "alpha": {"y": true, "x": [2, 1]}}
        },
        "matrix": {"product": ["mug", "lamp"]},
        "steps": [{
            "name": "hero", "kind": "generate", "providers": ["art"],
            "prompt": "a {{ product }}", "raw": {"z": 1, "a": 2},
            "gates": [{"kind": "min_size", "width": 64, "height": 64}]
        }]
    }"#;

    #[test]
    fn a_spec_hash_is_the_hash_of_a_build_without_preserve_order() {
        let spec = Spec::parse(UNSORTED, Format::Json, "demo.json").unwrap();
        // Pinned from `serde_json::to_vec` in a build without `preserve_order`,
        // before the canonical writer.
        assert_eq!(
            spec.hash(),
            "2eb901783297cfbfef75c4cfc3423468df9ee49dd5aff8a7a98d58629013b083"
        );
        let mut probe = serde_json::Map::new();
        probe.insert("b".into(), serde_json::Value::Null);
        probe.insert("a".into(), serde_json::Value::Null);
        if probe.keys().next().map(String::as_str) == Some("a") {
            // In such a build the canonical bytes are serde_json's, byte for byte.
            let json = serde_json::to_vec(&spec.doc).unwrap();
            assert_eq!(creative_core::canonical::to_vec(&spec.doc).unwrap(), json);
        }
    }
}
