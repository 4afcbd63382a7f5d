use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use creative_core::{Artifact, GateCtx, GateError, MediaKind, QualityGate, Verdict};

use super::{on_pixels, IMAGE};
use crate::color::{Color, Lab};
use crate::error::OpsError;
use crate::raster::{Filter, Raster};

/// Settings of the `palette` gate.
///
/// Score: the coverage, the share of (opaque) pixels whose dominant colour is
/// within `max_delta_e` of a palette colour.
///
/// ```toml
/// [[gates]]
/// kind = "palette"
/// palette = ["#0b3d91", "#ffffff", "#fc3d21"]   # the brand colours
/// colors = 5            # dominant colours extracted (median cut + k-means in Lab)
/// max_delta_e = 12.0    # CIEDE2000 distance that still counts as on-palette
/// min_coverage = 0.75   # share of pixels that must be on-palette
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaletteSettings {
    /// The brand palette.
    pub palette: Vec<Color>,
    /// How many dominant colours to extract.
    #[serde(default = "colors")]
    pub colors: usize,
    /// CIEDE2000 distance that counts as on-palette.
    #[serde(default = "delta")]
    pub max_delta_e: f64,
    /// Share of pixels that must be on-palette.
    #[serde(default = "coverage")]
    pub min_coverage: f64,
}

fn colors() -> usize {
    5
}
fn delta() -> f64 {
    12.0
}
fn coverage() -> f64 {
    0.75
}

const SAMPLE: u32 = 128;

/// The dominant colours of an image with their shares of the (opaque) pixels,
/// largest first: median cut in RGB for a deterministic start, then a few
/// k-means rounds in L*a*b* so clusters follow perceived colour.
///
/// The image is first reduced to at most 128 pixels a side (area average).
pub fn dominant_colors(img: &Raster, k: usize) -> Vec<(Color, f64)> {
    let scale = (f64::from(SAMPLE) / f64::from(img.width().max(img.height()))).min(1.0);
    let (w, h) = (
        ((f64::from(img.width()) * scale).round() as u32).max(1),
        ((f64::from(img.height()) * scale).round() as u32).max(1),
    );
    let small = if scale < 1.0 {
        img.resize(None, w, h, Filter::Box).unwrap_or_else(|_| img.clone())
    } else {
        img.clone()
    };
    let px: Vec<[u8; 3]> = small
        .pixels()
        .filter(|p| p[3] >= 128)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    if px.is_empty() || k == 0 {
        return Vec::new();
    }
    let boxes = median_cut(px.clone(), k);
    let mut centres: Vec<Lab> = boxes.iter().map(|b| mean_rgb(b).to_lab()).collect();
    let labs: Vec<Lab> = px.iter().map(|p| Lab::from_srgb(p[0], p[1], p[2])).collect();
    let mut assign = vec![0usize; labs.len()];
    for _ in 0..6 {
        for (i, l) in labs.iter().enumerate() {
            assign[i] = nearest(&centres, *l);
        }
        let mut sums = vec![(0.0, 0.0, 0.0, 0usize); centres.len()];
        for (l, &c) in labs.iter().zip(&assign) {
            let s = &mut sums[c];
            s.0 += l.l;
            s.1 += l.a;
            s.2 += l.b;
            s.3 += 1;
        }
        for (c, s) in centres.iter_mut().zip(&sums) {
            if s.3 > 0 {
                let n = s.3 as f64;
                *c = Lab {
                    l: s.0 / n,
                    a: s.1 / n,
                    b: s.2 / n,
                };
            }
        }
    }
    // Report each cluster by the mean sRGB of its members (exact, no Lab round trip).
    let mut sums = vec![([0u64; 3], 0u64); centres.len()];
    for (p, &c) in px.iter().zip(&assign) {
        for (acc, v) in sums[c].0.iter_mut().zip(p) {
            *acc += u64::from(*v);
        }
        sums[c].1 += 1;
    }
    let n = px.len() as f64;
    let mut out: Vec<(Color, f64)> = sums
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(s, c)| {
            let avg = |v: u64| ((v + c / 2) / c) as u8;
            (Color::rgb(avg(s[0]), avg(s[1]), avg(s[2])), c as f64 / n)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
    out
}

fn nearest(centres: &[Lab], l: Lab) -> usize {
    let d = |c: &Lab| (c.l - l.l).powi(2) + (c.a - l.a).powi(2) + (c.b - l.b).powi(2);
    let mut best = 0;
    for i in 1..centres.len() {
        if d(&centres[i]) < d(&centres[best]) {
            best = i;
        }
    }
    best
}

fn mean_rgb(px: &[[u8; 3]]) -> Color {
    let n = px.len().max(1) as u64;
    let mut s = [0u64; 3];
    for p in px {
        for (acc, v) in s.iter_mut().zip(p) {
            *acc += u64::from(*v);
        }
    }
    Color::rgb((s[0] / n) as u8, (s[1] / n) as u8, (s[2] / n) as u8)
}

fn median_cut(px: Vec<[u8; 3]>, k: usize) -> Vec<Vec<[u8; 3]>> {
    let range = |b: &[[u8; 3]]| -> (usize, u8) {
        let mut best = (0, 0u8);
        for ch in 0..3 {
            let (lo, hi) = b
                .iter()
                .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[ch]), hi.max(p[ch])));
            let r = hi.saturating_sub(lo);
            if r > best.1 {
                best = (ch, r);
            }
        }
        best
    };
    let mut boxes = vec![px];
    while boxes.len() < k {
        // Split the box with the widest channel range (ties: the larger box).
        let Some((i, (ch, r))) = boxes.iter().enumerate().map(|(i, b)| (i, range(b))).max_by(|a, b| {
            (a.1 .1, boxes[a.0].len())
                .cmp(&(b.1 .1, boxes[b.0].len()))
                .then(b.0.cmp(&a.0))
        }) else {
            break;
        };
        if r == 0 {
            break;
        }
        let mut b = boxes.swap_remove(i);
        b.sort_unstable_by_key(|p| (p[ch], p[(ch + 1) % 3], p[(ch + 2) % 3]));
        let mid = b.len() / 2;
        let hi = b.split_off(mid);
        boxes.push(b);
        boxes.push(hi);
    }
    boxes.retain(|b| !b.is_empty());
    boxes
}

/// Checks that an image's dominant colours are on the brand palette, by
/// CIEDE2000 distance.
#[derive(Debug, Clone)]
pub struct PaletteGate {
    name: String,
    s: PaletteSettings,
    labs: Vec<Lab>,
}

impl PaletteGate {
    /// Build from settings, checking them.
    pub fn new(s: PaletteSettings) -> Result<Self, OpsError> {
        if s.palette.is_empty() {
            return Err(OpsError::settings("palette", "list at least one colour"));
        }
        if !(1..=32).contains(&s.colors) {
            return Err(OpsError::settings("colors", "must be within 1..=32"));
        }
        if !(s.max_delta_e > 0.0 && s.max_delta_e.is_finite()) {
            return Err(OpsError::settings("max_delta_e", "must be a positive number"));
        }
        if !(0.0..=1.0).contains(&s.min_coverage) {
            return Err(OpsError::settings("min_coverage", "must be within 0..=1"));
        }
        let labs = s.palette.iter().map(|c| c.to_lab()).collect();
        Ok(PaletteGate {
            name: "palette".into(),
            s,
            labs,
        })
    }

    /// Rename the gate.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge a decoded image.
    pub fn judge(&self, img: &Raster) -> Verdict {
        let dominant = dominant_colors(img, self.s.colors);
        if dominant.is_empty() {
            return Verdict::fail(0.0, "no opaque pixels to compare with the palette");
        }
        let mut covered = 0.0;
        let mut off = Vec::new();
        for (c, share) in &dominant {
            let lab = c.to_lab();
            let (i, d) = self
                .labs
                .iter()
                .enumerate()
                .map(|(i, p)| (i, lab.delta_e2000(*p)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, f64::INFINITY));
            if d <= self.s.max_delta_e {
                covered += share;
            } else {
                off.push(format!(
                    "{c} covers {:.1}% (nearest {} at ΔE2000 {d:.1})",
                    share * 100.0,
                    self.s.palette[i]
                ));
            }
        }
        if covered + 1e-12 >= self.s.min_coverage {
            Verdict::pass(covered.min(1.0))
        } else {
            let mut reasons = vec![format!(
                "only {:.1}% of pixels are on-palette (min {:.1}%)",
                covered * 100.0,
                self.s.min_coverage * 100.0
            )];
            reasons.extend(off);
            Verdict {
                passed: false,
                score: covered,
                reasons,
            }
        }
    }
}

#[async_trait]
impl QualityGate for PaletteGate {
    fn name(&self) -> &str {
        &self.name
    }
    fn accepts(&self) -> Option<&[MediaKind]> {
        Some(IMAGE)
    }
    async fn check(&self, a: &Artifact, _ctx: &GateCtx) -> Result<Verdict, GateError> {
        let me = self.clone();
        on_pixels(&self.name, a, move |img| me.judge(&img)).await
    }
}
