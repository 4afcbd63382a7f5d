//! `elevenlabs`: text to speech, returning audio bytes.
//!
//! `POST {base}/v1/text-to-speech/{voice_id}?output_format={format}` with the key
//! in `xi-api-key` and a JSON body `{text, model_id, seed?, ...}`; the answer is
//! the audio itself (`audio/mpeg` for the default `mp3_44100_128`).
//!
//! Parameters: `voice` (the voice id; else the `voice_id` setting), `format`
//! (`output_format`), `seed`. `voice_settings`, `language_code`,
//! `previous_text` and the rest go in `Request::raw`, merged last into the body.
//!
//! Usage is characters (from the `x-character-count` header when the server sends
//! it, else the text's length), priced per thousand characters by model.
//! Errors come as `{"detail": {"status", "message"}}` or FastAPI's `{"detail":
//! [...]}`; a `quota_exceeded` or `detected_unusual_activity` status is `Auth`
//! (no retry helps), and refusals of the text are `ContentPolicy`. A 200 that is
//! not audio is a protocol error.
//!
//! Settings (besides those of [`HttpSettings`]): `voice_id` (default voice),
//! `output_format` (default `mp3_44100_128`). The key comes from `api_key_env`
//! (default `ELEVENLABS_API_KEY`); `model` defaults to `eleven_multilingual_v2`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use creative_core::{
    Artifact, CallCtx, Capabilities, ConfigError, ErrorKind, Generation, MediaType, Provider, ProviderError, Request,
    Task, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::{
    backend_settings, http_setters, merge_raw, sniff_media, Auth, ErrorInfo, HttpRequest, HttpResponse, HttpSettings,
    HttpSettingsBuilder, SettingsDefaults, Transport,
};
use crate::pricing::{elevenlabs_defaults, PriceTable};

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

const DEFAULTS: SettingsDefaults = SettingsDefaults {
    base_url: "https://api.elevenlabs.io",
    key_env: Some("ELEVENLABS_API_KEY"),
    model: "eleven_multilingual_v2",
    timeout: Duration::from_secs(120),
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    voice_id: Option<String>,
    output_format: Option<String>,
}

/// The ElevenLabs backend.
#[derive(Debug, Clone)]
pub struct ElevenLabs {
    id: String,
    /// The settings fingerprint, computed once.
    fingerprint: String,
    /// Configuration concerns found at build (a missing key).
    warnings: Vec<String>,
    transport: Transport,
    model: String,
    voice_id: Option<String>,
    output_format: String,
    prices: Arc<PriceTable>,
}

/// Builds a [`ElevenLabs`] provider. Setters never fail; [`build`](Self::build)
/// reports the first bad value, naming the field as a spec's settings table
/// spells it. Debug never shows the key.
///
/// ```no_run
/// # fn main() -> Result<(), creative_core::ConfigError> {
/// use creative_providers::elevenlabs::ElevenLabs;
/// let voice = ElevenLabs::builder()
///     .api_key_env("ELEVENLABS_API_KEY")
///     .voice_id("21m00Tcm4TlvDq8ikWAM")
///     .build()?;
/// # let _ = voice; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ElevenLabsBuilder {
    id: String,
    http: HttpSettingsBuilder,
    extra: Extra,
}

impl ElevenLabsBuilder {
    http_setters!("elevenlabs");

    /// The default voice (a request's `voice` parameter overrides it).
    pub fn voice_id(mut self, voice: impl Into<String>) -> Self {
        self.extra.voice_id = Some(voice.into());
        self
    }

    /// The audio format asked for (default `mp3_44100_128`).
    pub fn output_format(mut self, format: impl Into<String>) -> Self {
        self.extra.output_format = Some(format.into());
        self
    }

    /// Check every value, resolve the key and build the provider.
    pub fn build(self) -> Result<ElevenLabs, ConfigError> {
        let ElevenLabsBuilder { id, http, extra } = self;
        let http = http.build()?;
        let auth = http
            .api_key
            .clone()
            .map(|k| Auth::Header("xi-api-key", k))
            .unwrap_or(Auth::None);
        let transport = http.transport(&id, auth).error_refiner(refine_error).build()?;
        let prices = elevenlabs_defaults().with_overrides(http.prices.as_ref())?;
        let fingerprint = http.fingerprint(
            "elevenlabs",
            json!({
                "voice_id": extra.voice_id,
                "output_format": extra.output_format.as_deref().unwrap_or("mp3_44100_128"),
            }),
        );
        Ok(ElevenLabs {
            id,
            fingerprint,
            warnings: http.warnings.clone(),
            transport,
            model: http.model.clone(),
            voice_id: extra.voice_id,
            output_format: extra.output_format.unwrap_or_else(|| "mp3_44100_128".into()),
            prices: Arc::new(prices),
        })
    }
}

impl ElevenLabs {
    /// A builder with every default (see the module docs).
    pub fn builder() -> ElevenLabsBuilder {
        ElevenLabsBuilder {
            id: "elevenlabs".into(),
            http: HttpSettings::builder(DEFAULTS),
            extra: Extra::default(),
        }
    }

    /// Build from a spec's settings table (see the module docs): the table
    /// fills a [`ElevenLabsBuilder`]. The error's field is the refused key.
    pub fn from_settings(id: &str, settings: &Value) -> Result<Self, ConfigError> {
        let (http, rest) = HttpSettingsBuilder::parse(settings, DEFAULTS)?;
        ElevenLabsBuilder {
            id: id.to_string(),
            http,
            extra: backend_settings(rest)?,
        }
        .build()
    }
}

// ---------------------------------------------------------------------------------
// Wire types: the request is JSON built below; the answer is audio bytes.
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// Request mapping
// ---------------------------------------------------------------------------------

/// Voice ids are path segments: keep them to the characters ids use.
fn valid_voice(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl ElevenLabs {
    fn request(&self, req: &Request) -> Result<HttpRequest, ProviderError> {
        let voice = req
            .params
            .voice
            .as_deref()
            .or(self.voice_id.as_deref())
            .ok_or_else(|| ProviderError::invalid(&self.id, "no voice: set `voice` or the `voice_id` setting"))?;
        if !valid_voice(voice) {
            return Err(ProviderError::invalid(&self.id, format!("`{voice}` is not a voice id")));
        }
        if req.prompt.trim().is_empty() {
            return Err(ProviderError::invalid(&self.id, "the text to speak is empty"));
        }
        let model = req.model.as_deref().unwrap_or(&self.model);
        let format = req.params.format.as_deref().unwrap_or(&self.output_format);
        let mut b = Map::new();
        b.insert("text".into(), json!(req.prompt));
        b.insert("model_id".into(), json!(model));
        if let Some(s) = req.params.seed {
            // The API takes seeds up to 4294967295.
            b.insert("seed".into(), json!(s % (u64::from(u32::MAX) + 1)));
        }
        let mut body = Value::Object(b);
        merge_raw(&mut body, &req.raw);
        Ok(HttpRequest::post_json(format!("v1/text-to-speech/{voice}"), body)
            .query("output_format", format)
            .header("accept", "audio/*"))
    }
}

// ---------------------------------------------------------------------------------
// Response mapping
// ---------------------------------------------------------------------------------

fn media_for_format(f: &str) -> MediaType {
    let family = f.split('_').next().unwrap_or("");
    match family {
        "mp3" => MediaType::Mp3,
        "wav" => MediaType::Wav,
        "pcm" => MediaType::Other(Arc::from("audio/pcm")),
        "ulaw" => MediaType::Other(Arc::from("audio/basic")),
        "alaw" => MediaType::Other(Arc::from("audio/x-alaw-basic")),
        "opus" => MediaType::Other(Arc::from("audio/ogg")),
        _ => MediaType::Other(Arc::from("application/octet-stream")),
    }
}

impl ElevenLabs {
    fn generation(&self, req: &Request, resp: HttpResponse) -> Result<Generation, ProviderError> {
        let declared = resp.media_type();
        if let Some(m) = &declared {
            if m.kind() != creative_core::MediaKind::Audio && m.as_str() != "application/octet-stream" {
                let mut e = ProviderError::new(ErrorKind::Protocol, &self.id, format!("expected audio, got `{m}`"))
                    .with_status(resp.status)
                    .with_body(String::from_utf8_lossy(&resp.body[..resp.body.len().min(512)]));
                if let Some(id) = resp.request_id() {
                    e = e.with_request_id(id);
                }
                return Err(e);
            }
        }
        if resp.body.is_empty() {
            return Err(ProviderError::new(ErrorKind::Protocol, &self.id, "empty audio"));
        }
        let model = req.model.as_deref().unwrap_or(&self.model);
        let format = req.params.format.as_deref().unwrap_or(&self.output_format);
        let media = sniff_media(&resp.body)
            .or(declared.filter(|m| m.kind() == creative_core::MediaKind::Audio))
            .unwrap_or_else(|| media_for_format(format));
        let chars = resp
            .header("x-character-count")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(req.prompt.chars().count() as u64);
        let mut a = Artifact::new(media, resp.body.clone());
        a.provenance_mut().model = Some(model.to_string());
        a.meta_mut().extra.insert("output_format".into(), json!(format));
        if let Some(id) = resp.request_id() {
            a.meta_mut().extra.insert("request_id".into(), json!(id));
        }
        Ok(Generation {
            artifacts: vec![a],
            usage: Usage {
                cost_usd: self.prices.characters(model, chars).unwrap_or(0.0),
                units: Some(chars as f64),
                ..Usage::default()
            },
            raw: None,
        })
    }
}

// ---------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------

fn refine_error(e: &ErrorInfo<'_>) -> Option<ErrorKind> {
    match e.code {
        Some("quota_exceeded" | "detected_unusual_activity" | "invalid_api_key" | "missing_permissions") => {
            Some(ErrorKind::Auth)
        }
        Some("too_many_concurrent_requests" | "system_busy") => Some(ErrorKind::RateLimited),
        Some(c) if c.contains("against_policy") || c.contains("tos") || c.contains("moderation") => {
            Some(ErrorKind::ContentPolicy)
        }
        _ => None,
    }
}

#[async_trait]
impl Provider for ElevenLabs {
    fn id(&self) -> &str {
        &self.id
    }

    /// `GET /v1/voices/{voice_id}` when a voice is configured (it checks the key,
    /// the base URL and that the voice exists), else `GET /v1/models`: both
    /// authenticated, neither spends characters.
    async fn preflight(&self, ctx: &CallCtx) -> Result<(), ProviderError> {
        let target = match self.voice_id.as_deref().filter(|v| valid_voice(v)) {
            Some(v) => format!("v1/voices/{v}"),
            None => "v1/models".to_string(),
        };
        self.transport.send(HttpRequest::get(target), ctx).await.map(|_| ())
    }

    /// The base URL, default model, extra header names and the backend's own
    /// output-shaping settings (see `HttpSettings::fingerprint`).
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tasks: vec![Task::Audio],
            seed: true,
            negative_prompt: false,
            max_count: 1,
        }
    }

    /// The request's model, else this provider's default for the task.
    fn model(&self, req: &Request) -> Option<String> {
        Some(req.model.clone().unwrap_or_else(|| self.model.clone()))
    }

    /// The price of `req` from the price table, `None` for a model it lacks.
    fn price(&self, req: &Request) -> Option<f64> {
        let model = req.model.as_deref().unwrap_or(&self.model);
        self.prices.characters(model, req.prompt.chars().count() as u64)
    }

    async fn generate(&self, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        if req.task != Task::Audio {
            return Err(ProviderError::invalid(
                &self.id,
                format!("task `{}` is not supported (audio only)", req.task.as_str()),
            ));
        }
        let http = self.request(req)?;
        let resp = self.transport.send(http, ctx).await?;
        self.generation(req, resp)
    }
}

/// Register the `elevenlabs` kind.
pub fn register(reg: &mut creative_core::registry::Registry) {
    reg.provider(
        "elevenlabs",
        Arc::new(|id: &str, settings: &Value, _: &creative_core::registry::BuildCtx| {
            ElevenLabs::from_settings(id, settings).map(|p| Arc::new(p) as Arc<dyn Provider>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_map_to_media_types() {
        assert_eq!(media_for_format("mp3_44100_128"), MediaType::Mp3);
        assert_eq!(media_for_format("pcm_16000").as_str(), "audio/pcm");
        assert_eq!(media_for_format("ulaw_8000").as_str(), "audio/basic");
    }

    #[test]
    fn voices_must_look_like_ids() {
        assert!(valid_voice("JBFqnCBsd6RMkjVDRZzb"));
        assert!(!valid_voice("../v1/user"));
        assert!(!valid_voice(""));
    }

    #[test]
    fn a_request_without_a_voice_is_invalid() {
        let p = ElevenLabs::from_settings("el", &json!({})).unwrap();
        let e = p.request(&Request::new(Task::Audio, "hi")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        let e = ElevenLabs::from_settings("el", &json!({"voice": "x"})).unwrap_err();
        assert!(e.to_string().contains("voice"), "{e}");
    }
}
