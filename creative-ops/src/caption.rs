//! Text layout and rendering for captions: wrap words into a box, shrink the
//! font until the text fits, draw it anti-aliased.
//!
//! Layout is deliberately simple and deterministic: one font, left-to-right
//! scripts, greedy word wrapping (words longer than a line break between
//! grapheme clusters), kerning from the font. Complex shaping (Arabic, Indic
//! scripts) is not done; a character the font lacks is an error naming it, never
//! a silent box.

use std::sync::{Arc, OnceLock};

use ab_glyph::{point, Font as _, FontArc, InvalidFont, PxScale, ScaleFont};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::Rect;
use crate::raster::Raster;

/// The bundled font: DejaVu Sans (Bitstream Vera licence, see
/// `assets/DejaVuSans-LICENSE.txt`). It covers Latin, Greek, Cyrillic and many
/// symbols; use [`Font::from_file`] for other scripts.
static BUNDLED: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// A loaded font, cheap to clone.
#[derive(Clone)]
pub struct Font {
    inner: FontArc,
    name: Arc<str>,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Font").field(&self.name).finish()
    }
}

impl Font {
    /// The bundled DejaVu Sans.
    pub fn bundled() -> Result<Font, OpsError> {
        static FONT: OnceLock<Result<Font, InvalidFont>> = OnceLock::new();
        FONT.get_or_init(|| {
            FontArc::try_from_slice(BUNDLED).map(|inner| Font {
                inner,
                name: Arc::from("DejaVu Sans (bundled)"),
            })
        })
        .clone()
        .map_err(|e| OpsError::File {
            path: "assets/DejaVuSans.ttf (bundled)".into(),
            message: e.to_string(),
        })
    }

    /// Load a TrueType or OpenType font file.
    pub fn from_file(path: &std::path::Path) -> Result<Font, OpsError> {
        let file_err = |message: String| OpsError::File {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
        let inner = FontArc::try_from_vec(bytes).map_err(|e| file_err(format!("not a usable font: {e}")))?;
        Ok(Font {
            inner,
            name: Arc::from(path.display().to_string()),
        })
    }

    /// The font's name for provenance (the file path, or the bundled name).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Horizontal alignment of caption lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// Flush left.
    Left,
    /// Centred. The default.
    #[default]
    #[serde(alias = "center")]
    Centre,
    /// Flush right.
    Right,
}

/// Vertical alignment of the text block inside its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VAlign {
    /// At the top.
    Top,
    /// In the middle. The default.
    #[default]
    Middle,
    /// At the bottom.
    Bottom,
}

/// How text is fitted into a box.
#[derive(Debug, Clone, PartialEq)]
pub struct FitRules {
    /// The largest font size tried, in pixels.
    pub max_px: f32,
    /// The smallest font size allowed; text that does not fit at this size is an
    /// error.
    pub min_px: f32,
    /// Line height as a multiple of the font's natural line height.
    pub line_spacing: f32,
}

/// Text laid out for a box: the chosen size and the wrapped lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Font size in pixels.
    pub px: f32,
    /// The lines, in order.
    pub lines: Vec<String>,
    /// Width of each line in pixels.
    pub widths: Vec<f32>,
    /// Distance between baselines.
    pub line_height: f32,
    /// Height of the whole block.
    pub height: f32,
}

/// Check that `font` has a glyph for every visible character of `text`.
pub fn check_coverage(font: &Font, text: &str) -> Result<(), OpsError> {
    for c in text.chars() {
        if !c.is_whitespace() && !c.is_control() && font.inner.glyph_id(c).0 == 0 {
            return Err(OpsError::Unfit(format!(
                "font {} has no glyph for '{c}' (U+{:04X}); set `font` to a font that covers this script",
                font.name(),
                u32::from(c)
            )));
        }
    }
    Ok(())
}

fn measure(font: &Font, px: f32, s: &str) -> f32 {
    let sf = font.inner.as_scaled(PxScale::from(px));
    let mut w = 0.0;
    let mut prev = None;
    for c in s.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            w += sf.kern(p, id);
        }
        w += sf.h_advance(id);
        prev = Some(id);
    }
    w
}

/// Wrap `text` to `max_w` at size `px`; `None` when a single grapheme is wider
/// than the line.
fn wrap(font: &Font, px: f32, text: &str, max_w: f32) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if measure(font, px, &candidate) <= max_w {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if measure(font, px, word) <= max_w {
                line = word.to_string();
                continue;
            }
            // A word longer than the line (a URL, a CJK run): break between graphemes.
            for g in word.graphemes(true) {
                let candidate = format!("{line}{g}");
                if measure(font, px, &candidate) <= max_w {
                    line = candidate;
                } else if line.is_empty() {
                    return None;
                } else {
                    lines.push(std::mem::replace(&mut line, g.to_string()));
                    if measure(font, px, &line) > max_w {
                        return None;
                    }
                }
            }
        }
        lines.push(line);
    }
    Some(lines)
}

fn layout_at(font: &Font, px: f32, text: &str, w: f32, h: f32, spacing: f32) -> Option<Layout> {
    let sf = font.inner.as_scaled(PxScale::from(px));
    let natural = sf.ascent() - sf.descent();
    let line_height = (natural + sf.line_gap()) * spacing;
    let lines = wrap(font, px, text, w)?;
    let height = natural + line_height * (lines.len().saturating_sub(1)) as f32;
    if height > h {
        return None;
    }
    let widths = lines.iter().map(|l| measure(font, px, l)).collect();
    Some(Layout {
        px,
        lines,
        widths,
        line_height,
        height,
    })
}

/// Lay `text` out in a `w`x`h` pixel box: the largest whole-pixel font size
/// between `rules.min_px` and `rules.max_px` at which the wrapped text fits.
pub fn fit(font: &Font, text: &str, w: u32, h: u32, rules: &FitRules) -> Result<Layout, OpsError> {
    check_coverage(font, text)?;
    let (w, h) = (w as f32, h as f32);
    let min = rules.min_px.max(1.0).floor() as u32;
    let max = rules.max_px.floor().max(rules.min_px) as u32;
    let at = |px: u32| layout_at(font, px as f32, text, w, h, rules.line_spacing);
    let Some(mut best) = at(min) else {
        return Err(OpsError::Unfit(format!(
            "text of {} characters does not fit a {w}x{h} px box even at {min} px; shorten it, enlarge `box` or lower `min_font_px`",
            text.chars().count()
        )));
    };
    // Binary search for the largest size that fits (fit is monotone in practice;
    // a rare non-monotone wrap only costs a pixel of size).
    let (mut lo, mut hi) = (min, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match at(mid) {
            Some(l) => {
                best = l;
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    Ok(best)
}

/// Draw a laid-out block into `area` of `img`.
pub fn draw(img: &mut Raster, font: &Font, layout: &Layout, area: Rect, color: Color, align: Align, valign: VAlign) {
    let sf = font.inner.as_scaled(PxScale::from(layout.px));
    let free = area.height as f32 - layout.height;
    let top = area.y as f32
        + match valign {
            VAlign::Top => 0.0,
            VAlign::Middle => free / 2.0,
            VAlign::Bottom => free,
        };
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    for (i, (line, lw)) in layout.lines.iter().zip(&layout.widths).enumerate() {
        let baseline = top + sf.ascent() + layout.line_height * i as f32;
        let mut x = area.x as f32
            + match align {
                Align::Left => 0.0,
                Align::Centre => (area.width as f32 - lw) / 2.0,
                Align::Right => area.width as f32 - lw,
            };
        let mut prev = None;
        for c in line.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                x += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(PxScale::from(layout.px), point(x, baseline));
            x += sf.h_advance(id);
            prev = Some(id);
            let Some(outline) = font.inner.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            let (ox, oy) = (b.min.x as i64, b.min.y as i64);
            outline.draw(|gx, gy, cov| {
                let (px, py) = (ox + i64::from(gx), oy + i64::from(gy));
                if px < 0 || py < 0 || px >= iw || py >= ih {
                    return;
                }
                let a = (cov.clamp(0.0, 1.0) * f32::from(color.a)).round() as u8;
                if a > 0 {
                    img.blend_pixel(px as u32, py as u32, [color.r, color.g, color.b], a);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max: f32) -> FitRules {
        FitRules {
            max_px: max,
            min_px: 8.0,
            line_spacing: 1.2,
        }
    }

    #[test]
    fn bundled_font_loads_and_covers_latin_and_cyrillic() {
        let f = Font::bundled().unwrap();
        assert!(check_coverage(&f, "Hello, Grüße, Привет").is_ok());
        let e = check_coverage(&f, "日本").unwrap_err();
        assert!(e.to_string().contains("U+65E5"), "{e}");
    }

    #[test]
    fn longer_text_gets_smaller_and_wraps() {
        let f = Font::bundled().unwrap();
        let short = fit(&f, "Sale", 400, 100, &rules(80.0)).unwrap();
        let long = fit(
            &f,
            "Summer sale: everything must go before the end of the month",
            400,
            100,
            &rules(80.0),
        )
        .unwrap();
        assert!(long.px < short.px, "{} < {}", long.px, short.px);
        assert!(long.lines.len() > 1);
        assert!(long.widths.iter().all(|w| *w <= 400.0));
        assert!(long.height <= 100.0);
    }

    #[test]
    fn text_that_cannot_fit_is_an_error() {
        let f = Font::bundled().unwrap();
        let text = "word ".repeat(200);
        let e = fit(&f, &text, 100, 20, &rules(40.0)).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
