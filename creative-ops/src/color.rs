//! Colours: the `#rrggbb[aa]` values of specs, CIE L*a*b*, and the CIEDE2000
//! colour difference.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An sRGB colour with alpha, written `#rrggbb` or `#rrggbbaa` in specs (`#rgb`
/// is accepted too).
///
/// ```
/// use creative_ops::Color;
/// let c: Color = "#ff8000cc".parse().unwrap();
/// assert_eq!(c, Color { r: 255, g: 128, b: 0, a: 204 });
/// assert_eq!(c.to_string(), "#ff8000cc");
/// assert_eq!("#fff".parse::<Color>().unwrap().to_string(), "#ffffff");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[schemars(
    with = "String",
    title = "Colour",
    description = "A colour as #rrggbb, #rrggbbaa or #rgb.",
    extend("pattern" = "^\\s*#([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})\\s*$", "examples" = ["#ff8000", "#00000080"])
)]
pub struct Color {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
    /// Alpha: 0 transparent, 255 opaque.
    pub a: u8,
}

impl Color {
    /// An opaque colour.
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Color { r, g, b, a: 255 }
    }

    /// Opaque white.
    pub const WHITE: Color = Color::rgb(255, 255, 255);
    /// Opaque black.
    pub const BLACK: Color = Color::rgb(0, 0, 0);

    /// The colour in CIE L*a*b* (D65), ignoring alpha.
    pub fn to_lab(self) -> Lab {
        Lab::from_srgb(self.r, self.g, self.b)
    }
}

/// Why a colour string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a colour: write #rrggbb or #rrggbbaa")]
pub struct ColorParseError(String);

impl FromStr for Color {
    type Err = ColorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ColorParseError(s.to_string());
        let hex = s.trim().strip_prefix('#').ok_or_else(err)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| err());
        let nibble = |i: usize| {
            u8::from_str_radix(&hex[i..i + 1], 16)
                .map(|v| v * 17)
                .map_err(|_| err())
        };
        match hex.len() {
            3 => Ok(Color::rgb(nibble(0)?, nibble(1)?, nibble(2)?)),
            6 => Ok(Color::rgb(byte(0)?, byte(2)?, byte(4)?)),
            8 => Ok(Color {
                r: byte(0)?,
                g: byte(2)?,
                b: byte(4)?,
                a: byte(6)?,
            }),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)?;
        if self.a != 255 {
            write!(f, "{:02x}", self.a)?;
        }
        Ok(())
    }
}

impl Serialize for Color {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Color {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A colour in CIE L*a*b* (D65 white point).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lab {
    /// Lightness, 0 to 100.
    pub l: f64,
    /// Green (negative) to red (positive).
    pub a: f64,
    /// Blue (negative) to yellow (positive).
    pub b: f64,
}

fn srgb_to_linear(c: u8) -> f64 {
    let c = f64::from(c) / 255.0;
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

impl Lab {
    /// Convert an 8-bit sRGB colour.
    pub fn from_srgb(r: u8, g: u8, b: u8) -> Lab {
        let (r, g, b) = (srgb_to_linear(r), srgb_to_linear(g), srgb_to_linear(b));
        // sRGB (D65) to XYZ, then normalised by the D65 white.
        let x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047;
        let y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
        let z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883;
        let f = |t: f64| {
            if t > 216.0 / 24389.0 {
                t.cbrt()
            } else {
                (24389.0 / 27.0 * t + 16.0) / 116.0
            }
        };
        let (fx, fy, fz) = (f(x), f(y), f(z));
        Lab {
            l: 116.0 * fy - 16.0,
            a: 500.0 * (fx - fy),
            b: 200.0 * (fy - fz),
        }
    }

    /// The CIEDE2000 colour difference to `other` (kL = kC = kH = 1).
    ///
    /// About 1 is the smallest difference most people see; brand guides often
    /// allow 2 to 5 for print and more for photographs.
    pub fn delta_e2000(self, other: Lab) -> f64 {
        ciede2000(self, other)
    }
}

/// CIEDE2000 (Sharma, Wu and Dalal, 2005), with the hue-angle conventions of
/// their paper so the published test pairs reproduce to four decimals.
pub fn ciede2000(x: Lab, y: Lab) -> f64 {
    use std::f64::consts::PI;
    let deg = |r: f64| r * 180.0 / PI;
    let rad = |d: f64| d * PI / 180.0;

    let c1 = x.a.hypot(x.b);
    let c2 = y.a.hypot(y.b);
    let c_bar = (c1 + c2) / 2.0;
    let c_bar7 = c_bar.powi(7);
    let g = 0.5 * (1.0 - (c_bar7 / (c_bar7 + 25f64.powi(7))).sqrt());
    let a1 = (1.0 + g) * x.a;
    let a2 = (1.0 + g) * y.a;
    let c1p = a1.hypot(x.b);
    let c2p = a2.hypot(y.b);
    let hue = |b: f64, a: f64| {
        if b == 0.0 && a == 0.0 {
            0.0
        } else {
            let h = deg(b.atan2(a));
            if h < 0.0 {
                h + 360.0
            } else {
                h
            }
        }
    };
    let h1p = hue(x.b, a1);
    let h2p = hue(y.b, a2);

    let dl = y.l - x.l;
    let dc = c2p - c1p;
    let dh = if c1p * c2p == 0.0 {
        0.0
    } else {
        let d = h2p - h1p;
        if d > 180.0 {
            d - 360.0
        } else if d < -180.0 {
            d + 360.0
        } else {
            d
        }
    };
    let dh_big = 2.0 * (c1p * c2p).sqrt() * (rad(dh) / 2.0).sin();

    let l_bar = (x.l + y.l) / 2.0;
    let c_bar_p = (c1p + c2p) / 2.0;
    let h_bar_p = if c1p * c2p == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    let t = 1.0 - 0.17 * rad(h_bar_p - 30.0).cos()
        + 0.24 * rad(2.0 * h_bar_p).cos()
        + 0.32 * rad(3.0 * h_bar_p + 6.0).cos()
        - 0.20 * rad(4.0 * h_bar_p - 63.0).cos();
    let d_theta = 30.0 * (-((h_bar_p - 275.0) / 25.0).powi(2)).exp();
    let c_bar_p7 = c_bar_p.powi(7);
    let r_c = 2.0 * (c_bar_p7 / (c_bar_p7 + 25f64.powi(7))).sqrt();
    let l50 = (l_bar - 50.0).powi(2);
    let s_l = 1.0 + 0.015 * l50 / (20.0 + l50).sqrt();
    let s_c = 1.0 + 0.045 * c_bar_p;
    let s_h = 1.0 + 0.015 * c_bar_p * t;
    let r_t = -(rad(2.0 * d_theta)).sin() * r_c;

    let tl = dl / s_l;
    let tc = dc / s_c;
    let th = dh_big / s_h;
    (tl * tl + tc * tc + th * th + r_t * tc * th).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(l: f64, a: f64, b: f64) -> Lab {
        Lab { l, a, b }
    }

    #[test]
    fn ciede2000_matches_sharma_test_pairs() {
        // Pairs 1, 7, 17 and 24 of the published CIEDE2000 test data.
        let pairs = [
            (lab(50.0, 2.6772, -79.7751), lab(50.0, 0.0, -82.7485), 2.0425),
            (lab(50.0, 0.0, 0.0), lab(50.0, -1.0, 2.0), 2.3669),
            (lab(50.0, 2.5, 0.0), lab(73.0, 25.0, -18.0), 27.1492),
            (lab(60.2574, -34.0099, 36.2677), lab(60.4626, -34.1751, 39.4387), 1.2644),
        ];
        for (x, y, want) in pairs {
            let got = ciede2000(x, y);
            assert!((got - want).abs() < 5e-5, "{x:?} {y:?}: got {got}, want {want}");
            assert!((ciede2000(y, x) - want).abs() < 5e-5, "symmetric");
        }
        assert_eq!(ciede2000(lab(40.0, 10.0, -5.0), lab(40.0, 10.0, -5.0)), 0.0);
    }

    #[test]
    fn srgb_to_lab_known_values() {
        let w = Lab::from_srgb(255, 255, 255);
        assert!(
            (w.l - 100.0).abs() < 1e-3 && w.a.abs() < 1e-3 && w.b.abs() < 1e-3,
            "{w:?}"
        );
        let r = Lab::from_srgb(255, 0, 0);
        // sRGB red is L* 53.24, a* 80.09, b* 67.20.
        assert!(
            (r.l - 53.24).abs() < 0.01 && (r.a - 80.09).abs() < 0.01 && (r.b - 67.20).abs() < 0.01,
            "{r:?}"
        );
    }

    #[test]
    fn colours_parse_and_reject() {
        assert_eq!("#000000".parse::<Color>().unwrap(), Color::BLACK);
        assert!("000000".parse::<Color>().is_err());
        assert!("#12345".parse::<Color>().is_err());
        assert!("#gg0000".parse::<Color>().is_err());
        let e = serde_json::from_value::<Color>(serde_json::json!("red")).unwrap_err();
        assert!(e.to_string().contains("`red` is not a colour"), "{e}");
    }
}
