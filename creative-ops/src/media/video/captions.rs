//! Captions from a script: cue timing, SRT and WebVTT text, the `captions`
//! step (burned into the picture) and the `subtitles` step (sidecar files).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use creative_core::{Artifact, MediaKind, MediaType, Meta, Provenance, Step, StepCtx, StepError, StepInputs};

use super::{encode, staged_video, VideoOutput};
use crate::caption::{self, Align, FitRules, Font, VAlign};
use crate::color::Color;
use crate::error::OpsError;
use crate::geometry::Rect;
use crate::media::audio::{range_f64, range_u32};
use crate::media::{args, finish, inputs_of, Ffmpeg, Made, Scratch};
use crate::raster::{EncodeSettings, Format, Raster};
use crate::steps::{record, TextBox};

/// One caption cue: the text and when it shows, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cue {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The text.
    pub text: String,
}

/// Split a script into cues of at most `max_chars` characters (at sentence
/// ends, then at word boundaries) and spread them over `duration` seconds in
/// proportion to their length, as speech takes time in proportion to text.
///
/// ```
/// let cues = creative_ops::media::video::cues("One. Two three four.", 6.0, 40);
/// assert_eq!(cues.len(), 2);
/// assert_eq!(cues[0].text, "One.");
/// assert!((cues[1].end - 6.0).abs() < 1e-9);
/// ```
pub fn cues(script: &str, duration: f64, max_chars: usize) -> Vec<Cue> {
    let mut parts: Vec<String> = Vec::new();
    for sentence in split_sentences(script) {
        let mut cur = String::new();
        for word in sentence.split_whitespace() {
            if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > max_chars {
                parts.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
    }
    let total: usize = parts.iter().map(|p| p.chars().count()).sum();
    let mut t = 0.0;
    parts
        .into_iter()
        .map(|text| {
            let len = text.chars().count() as f64 / total.max(1) as f64 * duration;
            let c = Cue {
                start: t,
                end: t + len,
                text,
            };
            t += len;
            c
        })
        .collect()
}

fn split_sentences(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let next_ws = chars.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?' | '。') && next_ws) {
            let end = i + c.len_utf8();
            let piece = s[start..end].trim();
            if !piece.is_empty() {
                out.push(piece);
            }
            start = end;
        }
    }
    let rest = s[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn stamp(t: f64, sep: char) -> String {
    let ms = (t.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Cues as SubRip (SRT).
pub fn to_srt(cues: &[Cue]) -> String {
    let mut s = String::new();
    for (i, c) in cues.iter().enumerate() {
        s.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            stamp(c.start, ','),
            stamp(c.end, ','),
            c.text
        ));
    }
    s
}

/// Cues as WebVTT.
pub fn to_vtt(cues: &[Cue]) -> String {
    let mut s = String::from("WEBVTT\n\n");
    for c in cues {
        // "-->" inside a cue would end its timing line early.
        let text = c.text.replace("-->", "->");
        s.push_str(&format!(
            "{} --> {}\n{text}\n\n",
            stamp(c.start, '.'),
            stamp(c.end, '.')
        ));
    }
    s
}

/// The script for captions: the first text input, trimmed.
fn script_of(inputs: &StepInputs, ctx: &StepCtx, kind: &str) -> Result<(Artifact, String), StepError> {
    let t = inputs_of(inputs, ctx, kind, MediaKind::Text)?.remove(0);
    let text = t.text().unwrap_or_default().trim().to_string();
    if text.is_empty() {
        return Err(StepError::invalid_input(format!(
            "step `{}` ({kind}): the text input {} is empty",
            ctx.step,
            t.id().short()
        )));
    }
    Ok((t, text))
}

/// Settings of the `captions` step: burn the script from a text input into
/// each video input, one cue at a time, timed over the clip (see [`cues`]).
/// Text is drawn with the bundled font (or `font`), fitted into `box`.
///
/// ```toml
/// [[steps]]
/// name = "captioned"
/// kind = "captions"
/// inputs = ["cuts", "script"]
/// box = { x = 0.05, y = 0.78, width = 0.9, height = 0.16 }
/// color = "#ffffff"
/// background = "#00000099"
/// max_chars = 60          # per cue, 8..=500
/// min_font_px = 10
/// output = { codec = "h264", quality = 70 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptionsSettings {
    /// Where captions go, as fractions of the frame.
    #[serde(default = "caption_box", rename = "box")]
    pub text_box: TextBox,
    /// Text colour.
    #[serde(default = "white")]
    pub color: Color,
    /// A band behind the text, if any.
    #[serde(default = "shade")]
    pub background: Option<Color>,
    /// Longest cue, characters.
    #[serde(default = "sixty")]
    pub max_chars: u32,
    /// Smallest font size, pixels (1..=500).
    #[serde(default = "ten")]
    pub min_font_px: f32,
    /// A TrueType/OpenType font file; default the bundled DejaVu Sans.
    #[serde(default)]
    pub font: Option<String>,
    /// Output encoding.
    #[serde(default)]
    pub output: VideoOutput,
}

fn caption_box() -> TextBox {
    TextBox {
        x: 0.05,
        y: 0.78,
        width: 0.9,
        height: 0.16,
    }
}
fn white() -> Color {
    Color::WHITE
}
fn shade() -> Option<Color> {
    Some(Color {
        r: 0,
        g: 0,
        b: 0,
        a: 0x99,
    })
}
fn sixty() -> u32 {
    60
}
fn ten() -> f32 {
    10.0
}

/// Burn captions into video. See [`CaptionsSettings`].
pub struct CaptionsStep {
    s: CaptionsSettings,
    font: Font,
    ff: Arc<Ffmpeg>,
}

impl CaptionsStep {
    /// Build from settings, checking them; `font` is the loaded `font` file.
    pub fn new(s: CaptionsSettings, font: Option<Font>, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        s.text_box.validate()?;
        range_u32("max_chars", Some(s.max_chars), 8, 500)?;
        range_f64("min_font_px", f64::from(s.min_font_px), 1.0, 500.0)?;
        s.output.validate()?;
        let font = match font {
            Some(f) => f,
            None => Font::bundled()?,
        };
        Ok(CaptionsStep { s, font, ff })
    }

    /// One cue drawn on a transparent frame of `w`x`h`.
    pub fn render_cue(&self, text: &str, w: u32, h: u32) -> Result<Raster, OpsError> {
        let mut img = Raster::Rgba(image::RgbaImage::new(w, h));
        let area = self.s.text_box.pixels(w, h);
        let pad = (0.08 * f64::from(area.height)).round() as u32;
        let inner = Rect::new(
            area.x + pad,
            area.y + pad,
            area.width.saturating_sub(2 * pad).max(1),
            area.height.saturating_sub(2 * pad).max(1),
        );
        let rules = FitRules {
            max_px: (inner.height as f32 / 2.2).max(self.s.min_font_px),
            min_px: self.s.min_font_px,
            line_spacing: 1.1,
        };
        let layout = caption::fit(&self.font, text, inner.width, inner.height, &rules)?;
        if let Some(bg) = self.s.background {
            // Only behind the text's lines, like broadcast captions.
            let top = inner.y as f32 + (inner.height as f32 - layout.height) / 2.0;
            let widest = layout.widths.iter().cloned().fold(0.0, f32::max);
            let x0 = (inner.x as f32 + (inner.width as f32 - widest) / 2.0 - pad as f32).max(0.0) as u32;
            let x1 = ((inner.x as f32 + (inner.width as f32 + widest) / 2.0 + pad as f32) as u32).min(w);
            let y0 = (top - pad as f32).max(0.0) as u32;
            let y1 = ((top + layout.height + pad as f32) as u32).min(h);
            for y in y0..y1 {
                for x in x0..x1 {
                    img.blend_pixel(x, y, [bg.r, bg.g, bg.b], bg.a);
                }
            }
        }
        caption::draw(
            &mut img,
            &self.font,
            &layout,
            inner,
            self.s.color,
            Align::Centre,
            VAlign::Middle,
        );
        Ok(img)
    }
}

#[async_trait]
impl Step for CaptionsStep {
    video_step!("captions", &[MediaKind::Video, MediaKind::Text], Some(MediaKind::Video));

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let (script_a, script) = script_of(inputs, ctx, "captions")?;
        let settings = record(&self.s);
        let mut out = Vec::new();
        for input in inputs_of(inputs, ctx, "captions", MediaKind::Video)? {
            let scratch = Scratch::new()?;
            let (src, info, w, h) = staged_video(&self.ff, &scratch, &input, &ctx.cancel).await?;
            let d = info.duration_s.unwrap_or(0.0);
            let cues = cues(&script, d, self.s.max_chars as usize);
            let mut a = args(["-i"]);
            a.push(src.into());
            let mut graph = String::new();
            let mut last = "0:v".to_string();
            for (i, c) in cues.iter().enumerate() {
                let png = self
                    .render_cue(&c.text, w, h)?
                    .encode(Format::Png, &EncodeSettings::default())?;
                let p = scratch.write(&format!("cue{i}.png"), &png).await?;
                a.extend(args(["-i"]));
                a.push(p.into());
                let next = format!("c{i}");
                if !graph.is_empty() {
                    graph.push(';');
                }
                graph.push_str(&format!(
                    "[{last}][{}:v]overlay=0:0:enable='between(t,{:.3},{:.3})'[{next}]",
                    i + 1,
                    c.start,
                    c.end
                ));
                last = next;
            }
            a.extend(args([
                "-filter_complex".to_string(),
                graph,
                "-map".into(),
                format!("[{last}]"),
            ]));
            if info.has_audio() {
                a.extend(args(["-map", "0:a:0"]));
            }
            a.extend(args(self.s.output.args()));
            a.push(scratch.path("out").into());
            encode(&self.ff, ctx, "captions", a, info.duration_s).await?;
            let mut detail = Map::new();
            detail.insert("cues".into(), serde_json::to_value(&cues).unwrap_or_default());
            let made = Made {
                media: self.s.output.media(),
                bytes: scratch.read("out").await?,
                rendition: None,
                detail,
            };
            out.push(finish(&self.ff, ctx, "captions", &settings, &[&input, &script_a], made).await?);
        }
        Ok(out)
    }
}

/// Subtitle formats the `subtitles` step writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubtitleFormat {
    /// SubRip, `application/x-subrip`.
    Srt,
    /// WebVTT, `text/vtt`.
    Vtt,
}

/// Settings of the `subtitles` step: the script of a text input as timed
/// subtitle files (the same cues the `captions` step burns in), timed over
/// the duration of the first audio or video input, or `duration_s`.
///
/// ```toml
/// [[steps]]
/// name = "subs"
/// kind = "subtitles"
/// inputs = ["script", "voice"]
/// formats = ["srt", "vtt"]
/// max_chars = 60
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubtitlesSettings {
    /// Which files to write (default both).
    #[serde(default = "both")]
    pub formats: Vec<SubtitleFormat>,
    /// Longest cue, characters (8..=500).
    #[serde(default = "sixty")]
    pub max_chars: u32,
    /// The duration to time over when no audio or video input has one (0.1..=86400).
    #[serde(default)]
    pub duration_s: Option<f64>,
}

fn both() -> Vec<SubtitleFormat> {
    vec![SubtitleFormat::Srt, SubtitleFormat::Vtt]
}

/// Write SRT / WebVTT subtitles. See [`SubtitlesSettings`].
pub struct SubtitlesStep {
    s: SubtitlesSettings,
    ff: Arc<Ffmpeg>,
}

impl SubtitlesStep {
    /// Build from settings, checking them.
    pub fn new(s: SubtitlesSettings, ff: Arc<Ffmpeg>) -> Result<Self, OpsError> {
        if s.formats.is_empty() {
            return Err(OpsError::settings("formats", "list at least one of srt, vtt"));
        }
        range_u32("max_chars", Some(s.max_chars), 8, 500)?;
        if let Some(d) = s.duration_s {
            range_f64("duration_s", d, 0.1, 86_400.0)?;
        }
        Ok(SubtitlesStep { s, ff })
    }
}

#[async_trait]
impl Step for SubtitlesStep {
    fn kind(&self) -> &str {
        "subtitles"
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(&[MediaKind::Text, MediaKind::Audio, MediaKind::Video])
    }
    fn min_inputs(&self) -> usize {
        1
    }

    async fn run(&self, inputs: &StepInputs, ctx: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        let (script_a, script) = script_of(inputs, ctx, "subtitles")?;
        let timed = inputs
            .all()
            .find(|a| matches!(a.media().kind(), MediaKind::Audio | MediaKind::Video));
        let mut parents = vec![script_a.id().clone()];
        let d = match timed {
            Some(a) => {
                parents.push(a.id().clone());
                match a.meta().duration_s {
                    Some(d) => d,
                    None => self.ff.probe(a, &ctx.cancel).await?.duration_s.unwrap_or_default(),
                }
            }
            None => self.s.duration_s.ok_or_else(|| {
                StepError::invalid_input(format!(
                    "step `{}` (subtitles) needs an audio or video input to time against, or `duration_s`",
                    ctx.step
                ))
            })?,
        };
        let cues = cues(&script, d, self.s.max_chars as usize);
        Ok(self
            .s
            .formats
            .iter()
            .map(|f| {
                let (media, body) = match f {
                    SubtitleFormat::Srt => ("application/x-subrip", to_srt(&cues)),
                    SubtitleFormat::Vtt => ("text/vtt", to_vtt(&cues)),
                };
                let mut params = Map::new();
                params.insert("op".into(), "subtitles".into());
                params.insert("settings".into(), record(&self.s));
                params.insert("cues".into(), Value::from(cues.len()));
                Artifact::new(MediaType::Other(Arc::from(media)), body.into_bytes())
                    .with_meta(Meta {
                        duration_s: Some(d),
                        ..Meta::default()
                    })
                    .with_provenance(Provenance {
                        step: ctx.step.to_string(),
                        params: Value::Object(params),
                        parents: parents.clone(),
                        ..Provenance::default()
                    })
            })
            .collect())
    }
}
