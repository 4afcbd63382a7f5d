//! What a host callback does with its call: read its context and inputs, hand
//! back outputs, a verdict, a cost, a receipt URL or why it failed.

use std::ffi::c_char;
use std::sync::Arc;

use creative_core::{Artifact, MediaType, Meta, Verdict};

use super::{creative_host_call, Role};
use crate::panic::{guard, opt_text_arg, text_arg, Out};
use crate::status::{creative_status, FfiError};
use crate::strings::creative_bytes;

/// Borrow the call a host callback was handed; NULL is a
/// `CREATIVE_STATUS_NULL_POINTER` error.
///
/// # Safety
/// `call` is NULL or the pointer `invoke` passed to a host callback that has not
/// returned, and `'a` ends before it returns (`creative_host_fn`: "`call` is
/// valid only until the callback returns").
unsafe fn call_ref<'a>(call: *const creative_host_call) -> Result<&'a creative_host_call, FfiError> {
    // SAFETY: NULL (`as_ref` gives None) or the live call, by this function's
    // contract.
    unsafe { call.as_ref() }.ok_or_else(|| FfiError::null("call"))
}

/// Borrow the call a host callback was handed, to record what it hands back.
///
/// # Safety
/// As [`call_ref`], and no other reference to the call is in use for `'a`: the
/// library does not touch the call while the callback runs (`invoke` lends it
/// for the callback's whole duration), and the callback uses it through one
/// `creative_host_call_*` function at a time.
unsafe fn call_mut<'a>(call: *mut creative_host_call) -> Result<&'a mut creative_host_call, FfiError> {
    // SAFETY: NULL (`as_mut` gives None) or the live call with no other user, by
    // this function's contract.
    unsafe { call.as_mut() }.ok_or_else(|| FfiError::null("call"))
}

/// The call's context as a JSON object: `role` (`provider`, `step`, `gate`,
/// `sink`, `sink_finish`), `kind`, `settings` (the spec's table for this
/// provider, step, gate or sink), and per role: `id`, `attempt`, `request`
/// (provider); `step`, `job` {`key`, `vars`}, `seed` (step); `job`, `artifact`
/// (gate); `inputs` (descriptions of the inputs); `name`, `run`, `event`,
/// `urls` (where earlier sinks put the asset) and `attempt`, `asset` (the
/// manifest's entry: provenance, metadata, sources) for a sink, or `manifest`
/// (counts) and `report` for its finish.
///
/// Lifetime: `*out_json` is lent until the callback returns; never free it.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_context_json(
    call: *const creative_host_call,
    out_json: *mut *const c_char,
) -> creative_status {
    guard("creative_host_call_context_json", || {
        // SAFETY: `out_json` is NULL or writable (the doc: `*out_json` is lent).
        let mut out = unsafe { Out::new(out_json, "out_json") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        out.write(c.context.as_ptr());
        Ok(())
    })
}

/// How many input artifacts the call has (for a gate: 1, the artifact judged).
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_input_count(
    call: *const creative_host_call,
    out_count: *mut usize,
) -> creative_status {
    guard("creative_host_call_input_count", || {
        // SAFETY: `out_count` is NULL or writable: the out-parameter the host
        // passes for the count.
        let mut out = unsafe { Out::new(out_count, "out_count") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        out.write(c.inputs.len());
        Ok(())
    })
}

/// Input artifact `index`: its bytes and (if `out_media_type` is not NULL) its
/// media type.
///
/// Lifetime: both are lent until the callback returns; never free them.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_input(
    call: *const creative_host_call,
    index: usize,
    out_data: *mut creative_bytes,
    out_media_type: *mut *const c_char,
) -> creative_status {
    guard("creative_host_call_input", || {
        // SAFETY: `out_data` is NULL or writable (the doc: the bytes are lent there).
        let mut out = unsafe { Out::new(out_data, "out_data") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        let (a, m) = c.inputs.get(index).ok_or_else(|| {
            FfiError::invalid(format!(
                "input index {index} is out of range: the call has {} input(s)",
                c.inputs.len()
            ))
        })?;
        out.write(creative_bytes::of(a.data()));
        // SAFETY: `out_media_type` is NULL ("not wanted", as the doc says) or
        // writable.
        if let Some(mut media) = unsafe { Out::optional(out_media_type) } {
            media.write(m.as_ptr());
        }
        Ok(())
    })
}

/// Hand back one output artifact (providers and steps): `len` bytes at `data`
/// (copied; `data` may be NULL when `len` is 0) of `media_type` (such as
/// `"image/png"`), with optional `meta_json` (NULL, or a JSON object with
/// `width`, `height`, `duration_s` and free-form `extra`).
///
/// `CREATIVE_STATUS_WRONG_STATE` from a gate's call.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_add_output(
    call: *mut creative_host_call,
    media_type: *const c_char,
    data: *const u8,
    len: usize,
    meta_json: *const c_char,
) -> creative_status {
    guard("creative_host_call_add_output", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        match c.role {
            Role::Provider | Role::Step => {}
            Role::Gate => {
                return Err(FfiError::wrong_state(
                    "a gate hands back a verdict (creative_host_call_set_verdict), not outputs",
                ))
            }
            Role::Sink | Role::SinkFinish => {
                return Err(FfiError::wrong_state(format!(
                    "a sink takes assets, it hands none back; this is a {} call",
                    c.role.as_str()
                )))
            }
        }
        // SAFETY: `media_type` is NULL or NUL-terminated text (the header's
        // conventions), read only during this call.
        let media: MediaType = unsafe { text_arg(media_type, "media_type") }?
            .parse()
            .unwrap_or(MediaType::Other(Arc::from("application/octet-stream")));
        if data.is_null() && len > 0 {
            return Err(FfiError::null("data"));
        }
        if len > isize::MAX as usize {
            return Err(FfiError::invalid(format!(
                "`len` {len} is larger than any buffer can be"
            )));
        }
        let bytes = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: the doc: "`len` bytes at `data`" (copied here, before this
            // returns); `data` is not NULL (checked above: `len` > 0 here), `u8`
            // needs no alignment, and `len` <= isize::MAX (checked above).
            unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
        };
        // SAFETY: `meta_json` is NULL (the doc: "NULL, or a JSON object") or
        // NUL-terminated text, read only during this call.
        let meta = match unsafe { opt_text_arg(meta_json, "meta_json") }? {
            None => Meta::default(),
            Some(t) => serde_json::from_str::<Meta>(t)
                .map_err(|e| FfiError::new(creative_status::Parse, format!("`meta_json`: {e}")))?,
        };
        c.outputs.push(Artifact::new(media, bytes).with_meta(meta));
        Ok(())
    })
}

/// Set a gate's verdict: `passed`, a `score` (higher is better, finite), and an
/// optional `reason` (NULL for none). `CREATIVE_STATUS_WRONG_STATE` outside a
/// gate's call.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_set_verdict(
    call: *mut creative_host_call,
    passed: bool,
    score: f64,
    reason: *const c_char,
) -> creative_status {
    guard("creative_host_call_set_verdict", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        if c.role != Role::Gate {
            return Err(FfiError::wrong_state(format!(
                "only a gate sets a verdict; this is a {} call",
                c.role.as_str()
            )));
        }
        if !score.is_finite() {
            return Err(FfiError::invalid(format!(
                "`score` must be a finite number, got {score}"
            )));
        }
        // SAFETY: `reason` is NULL (the doc: "NULL for none") or NUL-terminated
        // text, copied before this returns.
        let reasons = unsafe { opt_text_arg(reason, "reason") }?
            .map(|r| vec![r.to_string()])
            .unwrap_or_default();
        c.verdict = Some(Verdict { passed, score, reasons });
        Ok(())
    })
}

/// Report what a provider call cost, in US dollars (finite, not negative).
/// `CREATIVE_STATUS_WRONG_STATE` outside a provider's call.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_set_cost(call: *mut creative_host_call, cost_usd: f64) -> creative_status {
    guard("creative_host_call_set_cost", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        if c.role != Role::Provider {
            return Err(FfiError::wrong_state("only a provider call has a cost"));
        }
        if !cost_usd.is_finite() || cost_usd < 0.0 {
            return Err(FfiError::invalid(format!(
                "`cost_usd` must be finite and not negative, got {cost_usd}"
            )));
        }
        c.cost_usd = Some(cost_usd);
        Ok(())
    })
}

/// Say why the call failed; the message becomes part of the step's error. Call it
/// before returning a status other than `CREATIVE_STATUS_OK`.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_fail(
    call: *mut creative_host_call,
    message: *const c_char,
) -> creative_status {
    guard("creative_host_call_fail", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        // SAFETY: `message` is NULL or NUL-terminated text (the header's
        // conventions), copied before this returns.
        c.error = Some(unsafe { text_arg(message, "message") }?.to_string());
        Ok(())
    })
}

/// Whether the run this call belongs to was cancelled; long host work should
/// check it now and then and return `CREATIVE_STATUS_CANCELLED` early.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_cancelled(
    call: *const creative_host_call,
    out_cancelled: *mut bool,
) -> creative_status {
    guard("creative_host_call_cancelled", || {
        // SAFETY: `out_cancelled` is NULL or writable: the out-parameter the host
        // passes for the answer.
        let mut out = unsafe { Out::new(out_cancelled, "out_cancelled") }?;
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_host_fn`: valid only until the callback returns).
        let c = unsafe { call_ref(call) }?;
        out.write(c.cancel.is_cancelled());
        Ok(())
    })
}

/// Record where a sink put the asset it was handed (a URL or any locator the
/// host's tools read): kept with the acknowledgement in the run's delivery
/// ledger, and told to the sinks after this one. `url` is copied; 1 to 4096 bytes.
/// `CREATIVE_STATUS_WRONG_STATE` outside a sink's `deliver`.
#[no_mangle]
pub unsafe extern "C" fn creative_host_call_set_url(
    call: *mut creative_host_call,
    url: *const c_char,
) -> creative_status {
    guard("creative_host_call_set_url", || {
        // SAFETY: `call` is NULL or the pointer passed to the host callback now
        // running (`creative_sink_fn`: valid only until the callback returns).
        // Nothing else uses it while this function runs.
        let c = unsafe { call_mut(call) }?;
        if c.role != Role::Sink {
            return Err(FfiError::wrong_state(format!(
                "only a sink's `deliver` records a URL; this is a {} call",
                c.role.as_str()
            )));
        }
        // SAFETY: `url` is NULL or NUL-terminated text (the header's
        // conventions), copied before this returns.
        let u = unsafe { text_arg(url, "url") }?;
        if u.is_empty() || u.len() > 4096 {
            return Err(FfiError::invalid(format!(
                "`url` must be 1 to 4096 bytes, got {}",
                u.len()
            )));
        }
        c.url = Some(u.to_string());
        Ok(())
    })
}
