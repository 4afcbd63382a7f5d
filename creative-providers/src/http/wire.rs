//! Helpers adapters share for the wire format: `raw` merged deeply, floats as
//! written, lenient usage counts, URLs moved onto the base URL, base64, media
//! sniffed from magic bytes.

use std::sync::Arc;

use super::Url;
use base64::Engine as _;
use bytes::Bytes;
use creative_core::{ErrorKind, MediaType, ProviderError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Merge `raw` into a JSON body last, so the escape hatch wins over anything the
/// adapter set, key by key and at every depth: an object in `raw` is merged into
/// the object the adapter built under the same key (a raw `options` adds to
/// Ollama's `options` instead of dropping the seed and temperature the typed
/// parameters put there); any other value replaces, and `null` removes the key.
/// A non-object body is left as is.
///
/// ```
/// use creative_providers::http::merge_raw;
/// use serde_json::json;
/// let mut body = json!({"options": {"seed": 7, "temperature": 0.7}, "n": 1});
/// let raw = json!({"options": {"temperature": 0.2, "num_ctx": 8192}, "n": null});
/// merge_raw(&mut body, raw.as_object().unwrap());
/// assert_eq!(body, json!({"options": {"seed": 7, "temperature": 0.2, "num_ctx": 8192}}));
/// ```
pub fn merge_raw(body: &mut Value, raw: &Map<String, Value>) {
    if let Value::Object(m) = body {
        merge_object(m, raw);
    }
}

fn merge_object(into: &mut Map<String, Value>, raw: &Map<String, Value>) {
    for (k, v) in raw {
        match (into.get_mut(k), v) {
            (_, Value::Null) => {
                into.remove(k);
            }
            (Some(Value::Object(have)), Value::Object(add)) => merge_object(have, add),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// An `f32` parameter as it goes on the wire: the shortest decimal that reads back
/// as the same `f32` (the value the user wrote), not its `f64` widening
/// (`0.7f32` is `0.699999988079071` as an `f64`). `None` for NaN or infinity,
/// which JSON cannot carry.
///
/// ```
/// use creative_providers::http::wire_f32;
/// assert_eq!(serde_json::to_string(&wire_f32(0.7).unwrap()).unwrap(), "0.7");
/// assert!(wire_f32(f32::NAN).is_none());
/// ```
pub fn wire_f32(x: f32) -> Option<Value> {
    if !x.is_finite() {
        return None;
    }
    // `Display` for f32 prints the shortest round-tripping decimal; read as an
    // f64 it is the nearest f64 to what was written, which serialises the same.
    let shortest: f64 = x.to_string().parse().ok()?;
    serde_json::Number::from_f64(shortest).map(Value::Number)
}

/// A token or unit count from a provider's `usage` block, read tolerantly: a
/// non-negative integer is kept; anything else (negative, fractional, a string,
/// an object) is logged and counted as absent, so a surprising `usage` never
/// throws away the outputs it came with. For `#[serde(deserialize_with)]` on an
/// `Option<u64>` field (with `#[serde(default)]`).
pub fn lenient_count<'de, D>(d: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = <Value as serde::Deserialize>::deserialize(d)?;
    Ok(match &v {
        Value::Null => None,
        Value::Number(n) => match n.as_u64() {
            Some(c) => Some(c),
            // A float with no fraction (`12.0`) is a count some servers write.
            None => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Some(f as u64),
                _ => {
                    tracing::warn!(value = %v, "ignoring a usage count that is not a non-negative integer");
                    None
                }
            },
        },
        _ => {
            tracing::warn!(value = %v, "ignoring a usage count that is not a number");
            None
        }
    })
}

/// A provider's whole `usage` block, read tolerantly: when it is not the shape
/// `T` expects (a string, a list, a field of the wrong type), it is logged and
/// treated as absent instead of failing the call. For
/// `#[serde(deserialize_with)]` on an `Option<T>` field (with `#[serde(default)]`).
pub fn lenient_block<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = <Value as serde::Deserialize>::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    match serde_json::from_value::<T>(v) {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a usage block of an unexpected shape");
            Ok(None)
        }
    }
}

/// An absolute URL a provider handed back (a job's poll or cancel URL) moved onto
/// the configured base URL: the part of its path below the base URL's path is
/// kept (with its query), the scheme, host, port and path prefix are the base
/// URL's. Behind a gateway or proxy the follow-up calls then go where the
/// configuration says, with the credential, instead of straight to the
/// provider's own host. `None` when the URL's path is not under the base URL's
/// last path segment (then the caller builds the path itself).
///
/// ```
/// use creative_providers::http::{rebase_onto, Url};
/// let base = Url::parse("https://gw.example/replicate/v1").unwrap();
/// assert_eq!(
///     rebase_onto(&base, "https://api.replicate.com/v1/predictions/p1").as_deref(),
///     Some("https://gw.example/replicate/v1/predictions/p1"),
/// );
/// ```
pub fn rebase_onto(base: &Url, url: &str) -> Option<String> {
    let given = Url::parse(url).ok()?;
    let base_path = base.path().trim_end_matches('/');
    let given_path = given.path();
    let tail = if given.origin() == base.origin() && given_path.starts_with(base_path) {
        &given_path[base_path.len()..]
    } else {
        // Another host: match on the base path's last segment (`/v1`), which the
        // provider's own URLs share with a gateway's prefix.
        let last = base_path.rsplit('/').next().filter(|s| !s.is_empty())?;
        let at = given_path.find(&format!("/{last}/"))?;
        &given_path[at + last.len() + 1..]
    };
    let mut out = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        tail.trim_start_matches('/')
    );
    if let Some(q) = given.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Decode standard base64 (padding optional); bad input is a `Protocol` error.
pub fn decode_base64(provider: &str, s: &str) -> Result<Bytes, ProviderError> {
    let s = s.trim();
    if let Ok(v) = base64_simd::STANDARD.decode_to_vec(s) {
        return Ok(Bytes::from(v));
    }
    // The rare other cases (no padding, or bad input) go through the scalar
    // decoder, whose error names the offending symbol and offset.
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .map(Bytes::from)
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Protocol,
                provider,
                format!("bad base64 in the response: {e}"),
            )
        })
}

/// Encode bytes as standard base64 (for inline image inputs).
pub fn encode_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Guess an image's media type from its first bytes (PNG, JPEG, WebP, GIF).
pub fn sniff_media(data: &[u8]) -> Option<MediaType> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(MediaType::Png)
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(MediaType::Jpeg)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some(MediaType::Webp)
    } else if data.starts_with(b"GIF8") {
        Some(MediaType::Other(Arc::from("image/gif")))
    } else if data.starts_with(b"ID3") || data.starts_with(&[0xFF, 0xFB]) || data.starts_with(&[0xFF, 0xF3]) {
        Some(MediaType::Mp3)
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WAVE" {
        Some(MediaType::Wav)
    } else if data.len() >= 8 && &data[4..8] == b"ftyp" {
        Some(MediaType::Mp4)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_or_without_padding_and_around_whitespace() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let padded = base64::engine::general_purpose::STANDARD.encode(&data);
        assert!(padded.ends_with('='), "the sample must need padding");
        assert_eq!(decode_base64("p", &padded).unwrap(), data);
        assert_eq!(decode_base64("p", padded.trim_end_matches('=')).unwrap(), data);
        assert_eq!(decode_base64("p", &format!(" {padded}\n")).unwrap(), data);
    }

    #[test]
    fn bad_base64_is_a_protocol_error_naming_the_offset() {
        let e = decode_base64("p", "aGVsbG8*d29ybGQ=").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("offset 7"), "{e}");
    }
}
