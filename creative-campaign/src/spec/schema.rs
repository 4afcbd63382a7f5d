//! The spec's schema: what a TOML or JSON campaign file may say.
//!
//! Typed sections deny unknown fields, so a typo is an error that names it. The
//! settings of providers, steps and gates are passed on to their factories.

use std::collections::BTreeMap;

use creative_core::ConfigError;
use serde::{Deserialize, Deserializer, Serialize};

/// A whole campaign spec.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecDoc {
    /// The campaign's name (used in the manifest, report and events).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Most jobs active at once, and most steps running at once of each kind
    /// (provider calls; local work such as image operations and gates). Default 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_CONCURRENCY))]
    pub concurrency: Option<usize>,
    /// Providers by id.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Named style or brand kits.
    #[serde(default)]
    pub presets: BTreeMap<String, Layer>,
    /// The lowest layer of parameters.
    #[serde(default)]
    pub defaults: Layer,
    /// The highest layer of parameters: wins over everything.
    #[serde(default)]
    pub overrides: Layer,
    /// The campaign matrix.
    #[serde(default)]
    pub matrix: MatrixSpec,
    /// The pipeline's steps.
    pub steps: Vec<StepSpec>,
    /// Limits of the run.
    #[serde(default)]
    pub budget: BudgetSpec,
    /// Retry policy for provider calls.
    #[serde(default)]
    pub retry: RetrySpec,
    /// What to write and where.
    #[serde(default)]
    pub output: OutputSpec,
}

/// A provider: its kind, engine limits, and the kind's own settings.
///
/// API keys are given by the name of an environment variable (for example
/// `api_key_env = "OPENAI_API_KEY"`), never required inline.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProviderSpec {
    /// The registered kind (`procedural`, `openai`, `comfyui`...).
    pub kind: String,
    /// Most calls in flight at once to this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_CONCURRENCY))]
    pub concurrency: Option<usize>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_REQUESTS_PER_MINUTE))]
    pub requests_per_minute: Option<u32>,
    /// Requests allowed at once after an idle spell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_BURST))]
    pub burst: Option<u32>,
    /// The engine's per-call timeout in seconds (a backend's own `timeout_s`,
    /// if it has one, is passed on to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = creative_core::limits::MAX_CALL_TIMEOUT_S), extend("exclusiveMinimum" = 0))]
    pub call_timeout_s: Option<f64>,
    /// Everything else goes to the kind's factory.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// How seeds are chosen. Always recorded in each asset's provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SeedPolicy {
    /// This seed, for every job.
    Fixed(u64),
    /// Derived from the job key and step name: reproducible, different per job.
    #[serde(serialize_with = "ser_derived")]
    Derived,
    /// A fresh random seed for every generation.
    #[serde(serialize_with = "ser_random")]
    Random,
}

impl From<SeedPolicy> for creative_core::SeedPolicy {
    fn from(p: SeedPolicy) -> Self {
        match p {
            SeedPolicy::Fixed(s) => creative_core::SeedPolicy::Fixed(s),
            SeedPolicy::Derived => creative_core::SeedPolicy::Derived,
            SeedPolicy::Random => creative_core::SeedPolicy::Random,
        }
    }
}

fn ser_derived<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("derived")
}

fn ser_random<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("random")
}

impl<'de> Deserialize<'de> for SeedPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SeedPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a seed number, \"derived\" or \"random\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SeedPolicy, E> {
                Ok(SeedPolicy::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SeedPolicy, E> {
                u64::try_from(v)
                    .map(SeedPolicy::Fixed)
                    .map_err(|_| E::custom(format!("seed must not be negative, got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SeedPolicy, E> {
                match v {
                    "derived" => Ok(SeedPolicy::Derived),
                    "random" => Ok(SeedPolicy::Random),
                    other => other.parse().map(SeedPolicy::Fixed).map_err(|_| {
                        E::custom(format!(
                            "seed must be a number, \"derived\" or \"random\", got `{other}`"
                        ))
                    }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One layer of generation parameters: `[defaults]`, a preset, a generate step,
/// a job's variables, `[overrides]`. Higher layers win field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Seed policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<SeedPolicy>,
    /// Size as `WIDTHxHEIGHT` (sets width and height).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Aspect ratio such as `16:9`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Candidates per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Quality tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Sampling steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    /// Named style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f32>,
    /// Voice id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Maximum output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Provider-specific fields merged last into the provider's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<serde_json::Map<String, serde_json::Value>>,
    /// Text put before the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_prefix: Option<String>,
    /// Text put after the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_suffix: Option<String>,
    /// Negative prompt (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Brand palette as `#rrggbb` colours; offered to templates as `palette` and
    /// to `palette` gates that set none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<Vec<String>>,
}

/// The names of the [`Layer`] fields a job variable may set.
pub(crate) const PARAM_VARS: &[&str] = &[
    "model",
    "seed",
    "size",
    "width",
    "height",
    "aspect_ratio",
    "count",
    "quality",
    "steps",
    "guidance",
    "style",
    "format",
    "duration_s",
    "voice",
    "temperature",
    "max_tokens",
    "system",
];

impl Layer {
    /// Overlay `other` on `self`: every field set in `other` wins (`raw` merges
    /// key by key).
    pub fn merge_from(&mut self, other: &Layer) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            model,
            seed,
            width,
            height,
            aspect_ratio,
            count,
            quality,
            steps,
            guidance,
            style,
            format,
            duration_s,
            voice,
            temperature,
            max_tokens,
            system,
            prompt_prefix,
            prompt_suffix,
            negative_prompt,
            palette
        );
        if let Some(size) = &other.size {
            // A size in a higher layer replaces width and height of lower ones.
            self.size = Some(size.clone());
            if other.width.is_none() {
                self.width = None;
            }
            if other.height.is_none() {
                self.height = None;
            }
        }
        if let Some(raw) = &other.raw {
            let mine = self.raw.get_or_insert_with(Default::default);
            for (k, v) in raw {
                mine.insert(k.clone(), v.clone());
            }
        }
    }

    /// Width and height, from `size` unless set on their own. A malformed
    /// size is refused at field `size`.
    pub(crate) fn dimensions(&self) -> Result<(Option<u32>, Option<u32>), ConfigError> {
        let (mut w, mut h) = (None, None);
        if let Some(s) = &self.size {
            let bad = || ConfigError::new("size", format!("size `{s}` is not WIDTHxHEIGHT"));
            let (a, b) = s.split_once(['x', 'X']).ok_or_else(bad)?;
            let parse = |t: &str| t.trim().parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(bad);
            w = Some(parse(a)?);
            h = Some(parse(b)?);
        }
        Ok((self.width.or(w), self.height.or(h)))
    }

    /// The typed request parameters of this layer (a fixed seed included: see
    /// the policy). Fails only on a malformed `size`.
    pub(crate) fn params(&self) -> Result<creative_core::request::Params, ConfigError> {
        let (width, height) = self.dimensions()?;
        Ok(creative_core::request::Params {
            width,
            height,
            aspect_ratio: self.aspect_ratio.clone(),
            seed: match self.seed {
                Some(SeedPolicy::Fixed(s)) => Some(s),
                _ => None,
            },
            count: self.count,
            quality: self.quality.clone(),
            steps: self.steps,
            guidance: self.guidance,
            style: self.style.clone(),
            format: self.format.clone(),
            duration_s: self.duration_s,
            voice: self.voice.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            system: self.system.clone(),
        })
    }
}

/// The campaign matrix.
///
/// ```toml
/// [matrix]
/// runs = 1                       # repeat every combination
/// product = ["mug", "lamp"]      # each list is an axis of the cartesian product
/// locale = ["en", "fr"]
/// [[matrix.zip]]                 # lists that advance together form one axis
/// channel = ["square", "story"]
/// size = ["1080x1080", "1080x1920"]
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MatrixSpec {
    /// Runs of every combination (default 1); with more than one, jobs get a
    /// `run` variable (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u32>,
    /// The most jobs the matrix may expand to (default 10,000,000, at most
    /// 1,000,000,000): a larger matrix is refused when the spec is built, before
    /// anything is allocated, so a typo cannot start a billion-job run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u64>,
    /// Zipped groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zip: Vec<BTreeMap<String, serde_json::Value>>,
    /// Axes of the product; a single value (not a list) is a constant.
    #[serde(flatten)]
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// One step of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepSpec {
    /// Unique name (letters, digits, `_`, `-`).
    pub name: String,
    /// `generate`, or a registered step kind (`resize`, `overlay`...).
    pub kind: String,
    /// Steps whose outputs this one reads, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Quality gates on the step's outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateSpec>,
    /// What to do when an output fails a gate: `regenerate` (generate steps
    /// only; `{ action = "regenerate", max = 3 }`), `fallback` (generate only),
    /// `flag` or `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_gate_fail: Option<serde_json::Value>,
    /// The kind's own settings.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// A quality gate.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GateSpec {
    /// A registered gate kind.
    pub kind: String,
    /// A name for reports (default: the kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The kind's own settings.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// The settings of a `generate` step (besides name, kind, inputs, gates,
/// on_gate_fail); any [`Layer`] field may also be given.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerateSettings {
    pub providers: Vec<String>,
    pub prompt: String,
    #[serde(default)]
    #[schemars(with = "Option<TaskName>")]
    pub task: Option<creative_core::request::Task>,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub keep: Option<usize>,
}

/// The names of [`creative_core::request::Task`], for the schema (the core
/// crate has no schema derives).
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only its schema is used
enum TaskName {
    /// Text from a prompt.
    Text,
    /// An image from a prompt (the default).
    Image,
    /// An image from input images and a prompt.
    ImageEdit,
    /// A video.
    Video,
    /// Speech or other audio.
    Audio,
    /// A 3D model.
    Model3d,
}

/// The JSON Schema of a `generate` step's own settings (`providers`, `prompt`,
/// `task`, `preset`, `keep`), without the [`Layer`] fields it also takes.
pub fn generate_settings_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    <GenerateSettings as schemars::JsonSchema>::json_schema(generator)
}

impl schemars::JsonSchema for SeedPolicy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SeedPolicy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A seed number (the same for every job), \"derived\" (from the job key and step: reproducible, different per job) or \"random\" (fresh for every generation).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "enum": ["derived", "random"] },
                { "type": "string", "pattern": "^[0-9]+$" }
            ]
        })
    }
}

/// The keys of [`GenerateSettings`].
pub(crate) const GENERATE_KEYS: &[&str] = &["providers", "prompt", "task", "preset", "keep"];

/// Limits of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Most money to spend, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_cost_usd: Option<f64>,
    /// Most provider attempts, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_BUDGET_ATTEMPTS))]
    pub max_attempts: Option<u64>,
    /// Stop starting work after this many minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = creative_core::limits::MAX_RUN_MINUTES), extend("exclusiveMinimum" = 0))]
    pub max_minutes: Option<f64>,
}

/// Retry policy for provider calls.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts per provider for failures other than rate limits (first call
    /// included). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_RETRY_ATTEMPTS))]
    pub max_attempts: Option<u32>,
    /// First backoff delay in milliseconds. Default: the engine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_BACKOFF_MS))]
    pub base_ms: Option<u64>,
    /// Longest backoff delay in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_BACKOFF_MS))]
    pub max_ms: Option<u64>,
}

/// What to write and where.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output folder, relative to the working directory (the runner's `--out`
    /// wins). Default `out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// File-name template, relative to the output folder. Variables: the job's,
    /// plus `step`, `index` (output number within the step), `ext`, `id` (short
    /// content hash) and `job` (job key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Steps whose outputs are delivered. Default: the steps no other step reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
    /// Cache folder, relative to the spec's folder. Default: the output
    /// folder's `.creative/`, whose payloads the cache shares with the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Cap on the cache's size in MiB (entries and the payloads they name):
    /// past it, the least recently used entries are evicted, but never a
    /// payload the run's journal needs. Default: no cap. 1 to 16,777,216.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = creative_core::limits::MAX_CACHE_MB))]
    pub cache_max_mb: Option<u64>,
    /// Write the HTML contact sheet (`contact_sheet.html`). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_sheet: Option<bool>,
    /// Extra sinks (`kind = "webhook"`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkSpec>,
    /// Mark delivered PNG, JPEG and WebP files that a generative model made
    /// (or that were made from its output) with IPTC `DigitalSourceType`
    /// `trainedAlgorithmicMedia` in an XMP packet. Files signed by `c2pa`
    /// carry the same statement in their credentials instead. Default false: a delivered file then holds exactly the bytes its
    /// manifest entry's hash names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmp: Option<bool>,
    /// Sign delivered files with C2PA content credentials (needs the `c2pa`
    /// feature). Default: not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c2pa: Option<C2paSpec>,
}

/// C2PA content credentials: the signer's own certificate chain and private key.
///
/// Each of the certificate chain and the key comes from a file (`cert`, `key`:
/// PEM, relative to the spec's folder) or from an environment variable holding
/// the PEM text (`cert_env`, `key_env`), exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct C2paSpec {
    /// PEM file of the certificate chain, the signing certificate first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Environment variable holding the PEM certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_env: Option<String>,
    /// PEM file of the private key (PKCS #8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Environment variable holding the PEM private key (PKCS #8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// Signing algorithm, matching the key: `es256` (ECDSA P-256, the
    /// default), `ps256` (RSA-PSS) or `ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<C2paAlg>,
    /// An RFC 3161 timestamp authority (`http://` or `https://`), asked for a
    /// timestamp at each signing, so the credentials outlive the certificate.
    /// Default: none (no network call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa_url: Option<String>,
    /// Put each asset's prompt in its credentials. Default false: the model
    /// and provider only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_prompt: Option<bool>,
    /// Put each asset's seed in its credentials. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_seed: Option<bool>,
}

/// A C2PA signing algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum C2paAlg {
    /// ECDSA with P-256 and SHA-256.
    #[default]
    Es256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// Ed25519.
    Ed25519,
}

/// A sink.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SinkSpec {
    /// A registered sink kind.
    pub kind: String,
    /// The kind's own settings.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}
