//! The stand-in's pictures: a gradient along a drawn angle, faint stripes,
//! four to nine shapes and film grain, all from a hash of the prompt, seed and
//! size, encoded as PNG. Never blank or uniform, so image gates have something
//! real to measure; identical for the same request, so caches and resumes do.

use bytes::Bytes;

use super::rng_for;

pub(super) fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

enum Shape {
    Circle { cx: f32, cy: f32, r: f32 },
    Rect { x0: f32, y0: f32, x1: f32, y1: f32 },
    Ring { cx: f32, cy: f32, r: f32, t: f32 },
}

impl Shape {
    fn contains(&self, x: f32, y: f32) -> bool {
        match *self {
            Shape::Circle { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Shape::Rect { x0, y0, x1, y1 } => x >= x0 && x <= x1 && y >= y0 && y <= y1,
            Shape::Ring { cx, cy, r, t } => {
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                (d - r).abs() <= t
            }
        }
    }
}

/// Draw the composition and encode it as PNG.
pub(super) fn render_png(prompt: &str, seed: u64, w: u32, h: u32) -> Bytes {
    let mut rng = rng_for(prompt, seed, "image");
    let base_hue = rng.f32();
    let bg_a = hsv(base_hue, 0.35 + 0.3 * rng.f32(), 0.55 + 0.4 * rng.f32());
    let bg_b = hsv((base_hue + 0.5 * rng.f32()) % 1.0, 0.5, 0.2 + 0.3 * rng.f32());
    let angle = rng.f32() * std::f32::consts::TAU;
    let (ca, sa) = (angle.cos(), angle.sin());
    let (wf, hf) = (w as f32, h as f32);
    let scale = wf.min(hf);
    let n_shapes = 4 + rng.usize(0..6);
    let shapes: Vec<(Shape, [f32; 3])> = (0..n_shapes)
        .map(|_| {
            let color = hsv(
                (base_hue + rng.f32() * 0.6) % 1.0,
                0.5 + 0.5 * rng.f32(),
                0.35 + 0.65 * rng.f32(),
            );
            let shape = match rng.u8(0..3) {
                0 => Shape::Circle {
                    cx: rng.f32() * wf,
                    cy: rng.f32() * hf,
                    r: scale * (0.06 + 0.22 * rng.f32()),
                },
                1 => {
                    let (x, y) = (rng.f32() * wf, rng.f32() * hf);
                    Shape::Rect {
                        x0: x,
                        y0: y,
                        x1: x + scale * (0.1 + 0.35 * rng.f32()),
                        y1: y + scale * (0.1 + 0.35 * rng.f32()),
                    }
                }
                _ => Shape::Ring {
                    cx: rng.f32() * wf,
                    cy: rng.f32() * hf,
                    r: scale * (0.1 + 0.25 * rng.f32()),
                    t: scale * (0.01 + 0.03 * rng.f32()),
                },
            };
            (shape, color)
        })
        .collect();
    let stripe_period = scale * (0.02 + 0.05 * rng.f32());
    let grain_seed = rng.u32(..);
    let mut data = vec![0u8; (w as usize) * (h as usize) * 3];
    for y in 0..h {
        let yf = y as f32;
        let row = &mut data[(y as usize) * (w as usize) * 3..(y as usize + 1) * (w as usize) * 3];
        for x in 0..w {
            let xf = x as f32;
            // Background: a linear gradient along the drawn angle, with faint stripes.
            let t = (((xf / wf - 0.5) * ca + (yf / hf - 0.5) * sa) + 0.5).clamp(0.0, 1.0);
            let stripe = if ((xf * ca - yf * sa) / stripe_period).floor() as i64 % 2 == 0 {
                1.0
            } else {
                0.93
            };
            let mut c = [
                (bg_a[0] * (1.0 - t) + bg_b[0] * t) * stripe,
                (bg_a[1] * (1.0 - t) + bg_b[1] * t) * stripe,
                (bg_a[2] * (1.0 - t) + bg_b[2] * t) * stripe,
            ];
            for (s, col) in &shapes {
                if s.contains(xf, yf) {
                    c = *col;
                }
            }
            // Film grain from a cheap integer hash: texture so the image is never flat.
            let mut g = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77) ^ grain_seed;
            g ^= g >> 15;
            g = g.wrapping_mul(0x2C1B_3C6D);
            g ^= g >> 12;
            let grain = ((g & 0xff) as f32 / 255.0 - 0.5) * 0.06;
            let px = &mut row[(x as usize) * 3..(x as usize) * 3 + 3];
            for k in 0..3 {
                px[k] = ((c[k] + grain).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    encode_png(&data, w, h)
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Bytes {
    let mut out = Vec::with_capacity(rgb.len() / 2);
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        // Writing to a Vec cannot fail for valid dimensions, which the caller checked.
        let mut writer = enc.write_header().expect("png header for checked size");
        writer.write_image_data(rgb).expect("png data of the declared size");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use creative_core::{Artifact, CallCtx, Provider, Request, Task};

    use super::super::Procedural;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(bytes);
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    async fn image(prompt: &str, seed: u64, w: u32, h: u32) -> Artifact {
        let p = Procedural::new("procedural");
        let mut req = Request::new(Task::Image, prompt);
        req.params.seed = Some(seed);
        req.params.width = Some(w);
        req.params.height = Some(h);
        p.generate(&req, &CallCtx::detached())
            .await
            .unwrap()
            .artifacts
            .remove(0)
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64)
            .sum::<f64>()
            / a.len() as f64
    }

    #[tokio::test]
    async fn same_request_same_bytes() {
        let a = image("red mug", 7, 96, 64).await;
        let b = image("red mug", 7, 96, 64).await;
        assert_eq!(a.id(), b.id());
        let (w, h, _) = decode(a.data());
        assert_eq!((w, h), (96, 64));
    }

    #[tokio::test]
    async fn prompts_and_seeds_change_the_picture_clearly() {
        let (_, _, base) = decode(image("red mug", 7, 64, 64).await.data());
        let (_, _, other_seed) = decode(image("red mug", 8, 64, 64).await.data());
        let (_, _, other_prompt) = decode(image("blue lamp", 7, 64, 64).await.data());
        assert!(mean_abs_diff(&base, &other_seed) > 10.0);
        assert!(mean_abs_diff(&base, &other_prompt) > 10.0);
    }

    #[tokio::test]
    async fn images_are_never_flat() {
        for seed in 0..20 {
            let (_, _, px) = decode(image("x", seed, 48, 48).await.data());
            let mean = px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64;
            let var = px.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / px.len() as f64;
            assert!(var > 50.0, "seed {seed}: variance {var}");
        }
    }
}
