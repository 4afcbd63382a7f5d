//! Range checks of a spec's numbers (see [`creative_core::limits`] for the ranges and
//! why). Each error names the field path and the allowed range.

use crate::spec::error::{SpecError, SpecErrorKind};
use crate::spec::schema::{Layer, SpecDoc};
use creative_core::gate::OnGateFail;
use creative_core::limits::{self as l, check_float, check_int};

fn bad(path: impl Into<String>, msg: String) -> SpecError {
    SpecError::new(SpecErrorKind::Invalid, path, msg)
}

fn int<T: PartialOrd + std::fmt::Display + Copy>(v: Option<T>, lo: T, hi: T, path: &str) -> Result<(), SpecError> {
    match v {
        Some(v) => check_int(v, lo, hi).map_err(|e| bad(path, e.reason().to_string())),
        None => Ok(()),
    }
}

fn float(v: Option<f64>, lo: f64, lo_open: bool, hi: f64, path: &str) -> Result<(), SpecError> {
    match v {
        Some(v) => check_float(v, lo, lo_open, hi).map_err(|e| bad(path, e.reason().to_string())),
        None => Ok(()),
    }
}

/// The numbers of the document's own sections: concurrency, providers'
/// limits, budget, retry.
pub(crate) fn check_doc(doc: &SpecDoc) -> Result<(), SpecError> {
    int(doc.concurrency, 1, l::MAX_CONCURRENCY, "concurrency")?;
    for (id, p) in &doc.providers {
        let at = |f: &str| format!("providers.{id}.{f}");
        int(p.concurrency, 1, l::MAX_CONCURRENCY, &at("concurrency"))?;
        int(
            p.requests_per_minute,
            1,
            l::MAX_REQUESTS_PER_MINUTE,
            &at("requests_per_minute"),
        )?;
        int(p.burst, 1, l::MAX_BURST, &at("burst"))?;
        float(
            p.call_timeout_s,
            0.0,
            true,
            l::MAX_CALL_TIMEOUT_S,
            &at("call_timeout_s"),
        )?;
    }
    let b = &doc.budget;
    float(b.max_cost_usd, 0.0, false, f64::MAX, "budget.max_cost_usd")?;
    int(b.max_attempts, 1, l::MAX_BUDGET_ATTEMPTS, "budget.max_attempts")?;
    float(b.max_minutes, 0.0, true, l::MAX_RUN_MINUTES, "budget.max_minutes")?;
    let r = &doc.retry;
    int(r.max_attempts, 1, l::MAX_RETRY_ATTEMPTS, "retry.max_attempts")?;
    int(r.base_ms, 1, l::MAX_BACKOFF_MS, "retry.base_ms")?;
    int(r.max_ms, 1, l::MAX_BACKOFF_MS, "retry.max_ms")?;
    int(doc.output.cache_max_mb, 1, l::MAX_CACHE_MB, "output.cache_max_mb")?;
    if let Some(d) = &doc.output.dir {
        crate::spec::check_out_dir(std::path::Path::new(d)).map_err(|e| bad("output.dir", e.to_string()))?;
    }
    Ok(())
}

/// The generation parameters of one layer; `base` is its path (`defaults`,
/// `presets.brand`, `steps[2]`, `matrix`).
pub(crate) fn check_layer(layer: &Layer, base: &str) -> Result<(), SpecError> {
    let at = |f: &str| {
        if base.is_empty() {
            f.to_string()
        } else {
            format!("{base}.{f}")
        }
    };
    let (w, h) = layer
        .dimensions()
        .map_err(|e| bad(at("size"), e.reason().to_string()))?;
    // A size's parts are reported at `size` unless set on their own.
    let w_at = at(if layer.width.is_some() { "width" } else { "size" });
    let h_at = at(if layer.height.is_some() { "height" } else { "size" });
    match (w, h) {
        (Some(w), Some(h)) => {
            let at = if w > l::MAX_IMAGE_SIDE || w == 0 { w_at } else { h_at };
            l::check_image_size(w, h).map_err(|e| bad(at, e.reason().to_string()))?;
        }
        _ => {
            int(w, 1, l::MAX_IMAGE_SIDE, &w_at)?;
            int(h, 1, l::MAX_IMAGE_SIDE, &h_at)?;
        }
    }
    int(layer.count, 1, l::MAX_COUNT_PER_CALL, &at("count"))?;
    int(layer.steps, 1, l::MAX_SAMPLING_STEPS, &at("steps"))?;
    float(
        layer.guidance.map(f64::from),
        0.0,
        false,
        l::MAX_GUIDANCE,
        &at("guidance"),
    )?;
    float(
        layer.duration_s.map(f64::from),
        0.0,
        true,
        l::MAX_DURATION_S,
        &at("duration_s"),
    )?;
    float(
        layer.temperature.map(f64::from),
        0.0,
        false,
        l::MAX_TEMPERATURE,
        &at("temperature"),
    )?;
    int(layer.max_tokens, 1, l::MAX_TOKENS, &at("max_tokens"))?;
    Ok(())
}

/// A gate-failure policy's rounds.
pub(crate) fn check_policy(p: &OnGateFail, path: &str) -> Result<(), SpecError> {
    if let OnGateFail::Regenerate { max } = p {
        check_int(*max, 0, l::MAX_REGENERATIONS).map_err(|e| bad(format!("{path}.max"), e.reason().to_string()))?;
    }
    Ok(())
}

/// A generate step's `keep`.
pub(crate) fn check_keep(keep: Option<usize>, path: &str) -> Result<(), SpecError> {
    int(keep, 1, l::MAX_KEEP, path)
}
