//! `convert_to`: a host step's or provider's image outputs re-encoded as PNG
//! or JPEG, so a frame a DCC wrote as PPM becomes an image any host can load.
//! The setting is checked when the spec is built.

use creative_core::{Artifact, ConfigError, MediaType};
use serde_json::Value;

/// The target of a `convert_to` setting, checked when the spec is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConvertTo {
    Png,
    Jpeg,
}

/// The `convert_to` setting in `settings`, or a refusal at that key.
pub(super) fn convert_to_from(settings: &Value) -> Result<Option<ConvertTo>, ConfigError> {
    match settings.get("convert_to") {
        None => Ok(None),
        Some(v) => match v.as_str() {
            Some("image/png") => Ok(Some(ConvertTo::Png)),
            Some("image/jpeg") => Ok(Some(ConvertTo::Jpeg)),
            _ => Err(ConfigError::new(
                "convert_to",
                format!("expected \"image/png\" or \"image/jpeg\", got {v}"),
            )),
        },
    }
}

/// An output of a host call that `convert_to` could not re-encode.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConvertError {
    /// Its bytes are no image the decoder knows.
    #[error("output {index} ({from}) cannot be converted to {to}: {source}")]
    Decode {
        index: usize,
        from: String,
        to: &'static str,
        source: image::ImageError,
    },
    /// The target format's encoder refused the pixels.
    #[error("output {index}: encoding {to} failed: {source}")]
    Encode {
        index: usize,
        to: &'static str,
        source: image::ImageError,
    },
}

/// Re-encode the image outputs of a host call into `target`; other media pass
/// through. The pixels are decoded by content (PPM/PGM, PNG, JPEG), whatever
/// media type the host gave.
pub(super) fn convert_outputs(
    outputs: Vec<Artifact>,
    target: Option<ConvertTo>,
) -> Result<Vec<Artifact>, ConvertError> {
    let Some(target) = target else {
        return Ok(outputs);
    };
    let (media, format) = match target {
        ConvertTo::Png => (MediaType::Png, image::ImageFormat::Png),
        ConvertTo::Jpeg => (MediaType::Jpeg, image::ImageFormat::Jpeg),
    };
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let is_image = a.media().as_str().starts_with("image/");
            if !is_image || *a.media() == media {
                return Ok(a);
            }
            let to = match target {
                ConvertTo::Png => "image/png",
                ConvertTo::Jpeg => "image/jpeg",
            };
            let img = image::load_from_memory(a.data()).map_err(|source| ConvertError::Decode {
                index: i,
                from: a.media().as_str().to_string(),
                to,
                source,
            })?;
            // JPEG has no alpha channel.
            let img = if target == ConvertTo::Jpeg {
                image::DynamicImage::ImageRgb8(img.to_rgb8())
            } else {
                img
            };
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, format)
                .map_err(|source| ConvertError::Encode { index: i, to, source })?;
            let mut meta = a.meta().clone();
            meta.width = Some(img.width());
            meta.height = Some(img.height());
            Ok(Artifact::new(media.clone(), out.into_inner()).with_meta(meta))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_bad_convert_to_is_refused_at_its_own_key_naming_the_allowed_types() {
        assert_eq!(convert_to_from(&json!({})).unwrap(), None);
        assert_eq!(
            convert_to_from(&json!({"convert_to": "image/jpeg"})).unwrap(),
            Some(ConvertTo::Jpeg)
        );
        let e = convert_to_from(&json!({"convert_to": "image/x-exr"})).unwrap_err();
        assert_eq!(e.field(), "convert_to");
        assert!(
            e.reason().contains("\"image/png\" or \"image/jpeg\"") && e.reason().contains("image/x-exr"),
            "{e}"
        );
    }

    #[test]
    fn an_output_that_is_no_image_names_its_index_and_both_media_types() {
        let outputs = vec![
            Artifact::new(MediaType::Png, tiny_png()),
            Artifact::new(
                MediaType::Other("image/x-portable-pixmap".into()),
                b"not a picture".to_vec(),
            ),
        ];
        let e = convert_outputs(outputs, Some(ConvertTo::Jpeg)).unwrap_err();
        assert!(matches!(e, ConvertError::Decode { index: 1, .. }), "{e:?}");
        let m = e.to_string();
        assert!(
            m.starts_with("output 1 (image/x-portable-pixmap) cannot be converted to image/jpeg: "),
            "{m}"
        );
    }

    fn tiny_png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::new(2, 2))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }
}
