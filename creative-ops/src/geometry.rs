//! Rectangles, aspect ratios and anchors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A pixel rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    /// A rectangle.
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Rect { x, y, width, height }
    }

    /// The whole of a `w`x`h` image.
    pub const fn full(w: u32, h: u32) -> Self {
        Rect::new(0, 0, w, h)
    }

    /// Whether it lies inside a `w`x`h` image.
    pub fn fits_in(&self, w: u32, h: u32) -> bool {
        u64::from(self.x) + u64::from(self.width) <= u64::from(w)
            && u64::from(self.y) + u64::from(self.height) <= u64::from(h)
    }
}

impl fmt::Display for Rect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}+{}+{}", self.width, self.height, self.x, self.y)
    }
}

/// An aspect ratio such as `9:16`, written `9:16`, `9x16` or `0.5625` in specs.
///
/// ```
/// use creative_ops::Aspect;
/// let a: Aspect = "9:16".parse().unwrap();
/// assert_eq!(a.name(), "9x16");
/// assert_eq!(a.largest_in(1024, 1024), (576, 1024));
/// assert_eq!("16x9".parse::<Aspect>().unwrap().largest_in(1024, 1024), (1024, 576));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, schemars::JsonSchema)]
#[schemars(
    with = "String",
    title = "Aspect ratio",
    description = "An aspect ratio as W:H, WxH or W/H, or a number (width / height).",
    extend("type" = ["string", "number"], "examples" = ["9:16", "16x9", 0.5625])
)]
pub struct Aspect {
    w: f64,
    h: f64,
}

impl Aspect {
    /// A ratio `w`:`h`; both must be positive and finite.
    pub fn new(w: f64, h: f64) -> Option<Aspect> {
        (w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0).then_some(Aspect { w, h })
    }

    /// Width over height.
    pub fn ratio(&self) -> f64 {
        self.w / self.h
    }

    /// A rendition name: `9x16`, or the ratio with three decimals for a decimal
    /// ratio.
    pub fn name(&self) -> String {
        if self.w.fract() == 0.0 && self.h.fract() == 0.0 {
            format!("{}x{}", self.w, self.h)
        } else {
            format!("{:.3}", self.ratio())
        }
    }

    /// The largest `(w, h)` of this ratio inside a `w`x`h` image (at least 1x1).
    pub fn largest_in(&self, w: u32, h: u32) -> (u32, u32) {
        let r = self.ratio();
        if f64::from(w) / f64::from(h) > r {
            let cw = (f64::from(h) * r).round().clamp(1.0, f64::from(w)) as u32;
            (cw, h)
        } else {
            let ch = (f64::from(w) / r).round().clamp(1.0, f64::from(h)) as u32;
            (w, ch)
        }
    }

    /// The smallest `(w, h)` of this ratio that contains a `w`x`h` image.
    pub fn smallest_around(&self, w: u32, h: u32) -> (u32, u32) {
        let r = self.ratio();
        if f64::from(w) / f64::from(h) > r {
            (w, (f64::from(w) / r).round().max(f64::from(h)) as u32)
        } else {
            ((f64::from(h) * r).round().max(f64::from(w)) as u32, h)
        }
    }

    /// Whether `w`x`h` has this ratio within a relative tolerance.
    pub fn matches(&self, w: u32, h: u32, tolerance: f64) -> bool {
        if h == 0 {
            return false;
        }
        let got = f64::from(w) / f64::from(h);
        ((got - self.ratio()) / self.ratio()).abs() <= tolerance
    }
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.w.fract() == 0.0 && self.h.fract() == 0.0 {
            write!(f, "{}:{}", self.w, self.h)
        } else {
            write!(f, "{}", self.ratio())
        }
    }
}

/// Why an aspect ratio was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an aspect ratio: write 9:16, 9x16 or 0.5625")]
pub struct AspectParseError(String);

impl FromStr for Aspect {
    type Err = AspectParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AspectParseError(s.to_string());
        let t = s.trim();
        let (w, h) = match t.split_once([':', 'x', 'X', '/']) {
            Some((a, b)) => (
                a.trim().parse::<f64>().map_err(|_| err())?,
                b.trim().parse::<f64>().map_err(|_| err())?,
            ),
            None => (t.parse::<f64>().map_err(|_| err())?, 1.0),
        };
        Aspect::new(w, h).ok_or_else(err)
    }
}

impl Serialize for Aspect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Aspect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Aspect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an aspect ratio such as \"9:16\" or 0.5625")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Aspect, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Aspect, E> {
                Aspect::new(v, 1.0).ok_or_else(|| E::custom(AspectParseError(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Aspect, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Aspect, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where something sits inside a larger area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Top left corner.
    TopLeft,
    /// Middle of the top edge.
    Top,
    /// Top right corner.
    TopRight,
    /// Middle of the left edge.
    Left,
    /// Centre.
    #[default]
    #[serde(alias = "center")]
    Centre,
    /// Middle of the right edge.
    Right,
    /// Bottom left corner.
    BottomLeft,
    /// Middle of the bottom edge.
    Bottom,
    /// Bottom right corner.
    BottomRight,
}

impl Anchor {
    /// Horizontal and vertical position as fractions (0 left/top, 1 right/bottom).
    pub fn fractions(self) -> (f64, f64) {
        use Anchor::*;
        match self {
            TopLeft => (0.0, 0.0),
            Top => (0.5, 0.0),
            TopRight => (1.0, 0.0),
            Left => (0.0, 0.5),
            Centre => (0.5, 0.5),
            Right => (1.0, 0.5),
            BottomLeft => (0.0, 1.0),
            Bottom => (0.5, 1.0),
            BottomRight => (1.0, 1.0),
        }
    }

    /// The top-left corner of a `w`x`h` item placed in a `outer_w`x`outer_h` area
    /// at this anchor, `margin` pixels in from the edges it touches.
    pub fn place(self, outer_w: u32, outer_h: u32, w: u32, h: u32, margin: u32) -> (i64, i64) {
        let (fx, fy) = self.fractions();
        let axis = |outer: u32, size: u32, f: f64| -> i64 {
            let free = i64::from(outer) - i64::from(size);
            let m = i64::from(margin);
            if f == 0.0 {
                m
            } else if f == 1.0 {
                free - m
            } else {
                (free as f64 * f).round() as i64
            }
        };
        (axis(outer_w, w, fx), axis(outer_h, h, fy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aspect_forms() {
        for s in ["9:16", "9x16", "9/16", " 9 : 16 "] {
            assert_eq!(s.parse::<Aspect>().unwrap().name(), "9x16", "{s}");
        }
        assert!((("0.5625".parse::<Aspect>().unwrap().ratio()) - 0.5625).abs() < 1e-12);
        assert!("0:1".parse::<Aspect>().is_err());
        assert!("wide".parse::<Aspect>().is_err());
        let v: Aspect = serde_json::from_value(serde_json::json!(1.5)).unwrap();
        assert_eq!(v.largest_in(300, 300), (300, 200));
    }

    #[test]
    fn largest_and_smallest() {
        let a: Aspect = "1:1".parse().unwrap();
        assert_eq!(a.largest_in(640, 480), (480, 480));
        assert_eq!(a.smallest_around(640, 480), (640, 640));
        let b: Aspect = "16:9".parse().unwrap();
        assert_eq!(b.smallest_around(1000, 1000), (1778, 1000));
        assert!(b.matches(1920, 1080, 0.001));
        assert!(!b.matches(1920, 1200, 0.01));
    }

    #[test]
    fn anchors_place_with_margin() {
        assert_eq!(Anchor::BottomRight.place(100, 50, 20, 10, 5), (75, 35));
        assert_eq!(Anchor::Centre.place(100, 50, 20, 10, 5), (40, 20));
        assert_eq!(Anchor::TopLeft.place(100, 50, 20, 10, 5), (5, 5));
    }
}
