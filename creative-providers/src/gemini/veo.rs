//! Veo: a video is a long-running operation. The request is submitted with
//! `:predictLongRunning`, the operation polled with backoff until `done`, and
//! cancelled (best effort) when the call ends first; the finished operation's
//! samples are decoded or downloaded and priced per second of video. Apart
//! from the rest of the backend because nothing else in it waits.

use creative_core::{Artifact, CallCtx, ErrorKind, Generation, MediaType, ProviderError, Request, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::Gemini;
use crate::http::{
    cleanup_ctx, decode_base64, encode_base64, merge_raw, sniff_media, HttpRequest, LongJob, PollBackoff,
};
use crate::pricing;

// ---------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Operation {
    name: String,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<OperationError>,
    #[serde(default)]
    response: Option<OperationResponse>,
}

#[derive(Debug, Deserialize)]
struct OperationError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationResponse {
    #[serde(default)]
    generate_video_response: Option<VideoResponse>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoResponse {
    #[serde(default)]
    generated_samples: Vec<VideoSample>,
    #[serde(default)]
    rai_media_filtered_count: Option<u64>,
    #[serde(default)]
    rai_media_filtered_reasons: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct VideoSample {
    video: VideoRef,
}

#[derive(Debug, Deserialize)]
struct VideoRef {
    #[serde(default)]
    uri: Option<String>,
    #[serde(default, rename = "bytesBase64Encoded")]
    bytes: Option<String>,
}

// ---------------------------------------------------------------------------------
// Request mapping
// ---------------------------------------------------------------------------------

impl Gemini {
    fn veo_body(req: &Request) -> Value {
        let mut instance = Map::new();
        instance.insert("prompt".into(), json!(req.prompt));
        if let Some(a) = req.inputs.iter().find(|a| a.media().as_str().starts_with("image/")) {
            instance.insert(
                "image".into(),
                json!({"bytesBase64Encoded": encode_base64(a.data()), "mimeType": a.media().as_str()}),
            );
        }
        let mut p = Map::new();
        if let Some(r) = &req.params.aspect_ratio {
            p.insert("aspectRatio".into(), json!(r));
        }
        if let Some(n) = &req.negative_prompt {
            p.insert("negativePrompt".into(), json!(n));
        }
        if let Some(d) = req.params.duration_s {
            p.insert("durationSeconds".into(), json!(d.round() as u32));
        }
        if let Some(n) = req.params.count {
            p.insert("sampleCount".into(), json!(n));
        }
        if let Some(s) = req.params.seed {
            p.insert("seed".into(), json!(s as u32 as i32));
        }
        let mut v = json!({"instances": [instance], "parameters": p});
        merge_raw(&mut v, &req.raw);
        v
    }
}

// ---------------------------------------------------------------------------------
// The job: submit, poll, cancel on drop; then the response mapping
// ---------------------------------------------------------------------------------

impl Gemini {
    pub(super) async fn veo(&self, model: &str, req: &Request, ctx: &CallCtx) -> Result<Generation, ProviderError> {
        let body = Self::veo_body(req);
        let mut op: Operation = self
            .transport
            .send_json(
                HttpRequest::post_json(format!("models/{model}:predictLongRunning"), body),
                ctx,
            )
            .await?;
        let mut job = LongJob::new(&self.id, PollBackoff::new(self.poll_interval, self.poll_interval * 4));
        if !op.done {
            job.guard().arm(self.cancel_operation(op.name.clone()));
        }
        while !op.done {
            job.wait(ctx).await?;
            let name = op.name.clone();
            op = job
                .poll(self.transport.send_json(HttpRequest::get(name.as_str()), ctx))
                .await?;
            tracing::debug!(provider = %self.id, operation = %op.name, done = op.done, polls = job.polls(), "veo poll");
        }
        job.done();
        if let Some(e) = op.error {
            // google.rpc.Code: 3 INVALID_ARGUMENT, 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE...
            let kind = match e.code {
                3 | 5 | 9 | 11 => ErrorKind::Invalid,
                7 | 16 => ErrorKind::Auth,
                8 => ErrorKind::RateLimited,
                4 => ErrorKind::Timeout,
                _ => ErrorKind::Transient,
            };
            let kind = if crate::http::looks_like_content_policy(None, &e.message) {
                ErrorKind::ContentPolicy
            } else {
                kind
            };
            return Err(ProviderError::new(
                kind,
                &self.id,
                format!("operation failed: {}", e.message),
            ));
        }
        let resp = op
            .response
            .and_then(|r| r.generate_video_response)
            .ok_or_else(|| self.protocol("operation done without a video response"))?;
        let mut artifacts = Vec::new();
        for s in &resp.generated_samples {
            let (data, served) = match (&s.video.bytes, &s.video.uri) {
                (Some(b), _) => (decode_base64(&self.id, b)?, None),
                (None, Some(uri)) => {
                    let d = self.transport.download(uri, ctx).await?;
                    (d.data, d.media)
                }
                (None, None) => return Err(self.protocol("a video sample has neither uri nor bytes")),
            };
            let media = sniff_media(&data)
                .or(served.filter(|m| m.kind() == creative_core::MediaKind::Video))
                .unwrap_or(MediaType::Mp4);
            // The container's duration where its movie header says, else the request's.
            let seconds = pricing::mp4_duration_s(&data).or(req.params.duration_s.map(f64::from));
            let mut a = Artifact::new(media, data);
            a.provenance_mut().model = Some(model.to_string());
            a.meta_mut().duration_s = seconds;
            artifacts.push(a);
        }
        if artifacts.is_empty() {
            let reasons = resp.rai_media_filtered_reasons.join("; ");
            return Err(
                if resp.rai_media_filtered_count.unwrap_or(0) > 0 || !reasons.is_empty() {
                    self.refused(format!("video filtered: {reasons}"))
                } else {
                    self.protocol("operation done with no video")
                },
            );
        }
        let price = self.prices.get(model);
        let default_s = price.and_then(|p| p.default_s).unwrap_or(8.0);
        let seconds: f64 = artifacts.iter().map(|a| a.meta().duration_s.unwrap_or(default_s)).sum();
        let cost = price.and_then(|p| pricing::bill(p, req, &artifacts, None));
        Ok(Generation {
            artifacts,
            usage: Usage {
                cost_usd: cost.unwrap_or(0.0),
                units: Some(seconds),
                ..Usage::default()
            },
            raw: None,
        })
    }

    /// Ask the server to stop a running operation; a failure is only logged, since
    /// the call is already failing for another reason.
    fn cancel_operation(&self, name: String) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (transport, id) = (self.transport.clone(), self.id.clone());
        async move {
            let req = HttpRequest::post_json(format!("{name}:cancel"), json!({}));
            match transport.send(req, &cleanup_ctx()).await {
                Ok(_) => tracing::debug!(provider = %id, operation = name, "operation cancelled"),
                Err(e) => tracing::debug!(provider = %id, operation = name, error = %e, "cancel failed"),
            }
        }
    }
}
