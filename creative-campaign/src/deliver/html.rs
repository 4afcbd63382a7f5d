//! The HTML contact sheet: pages with a thumbnail of every delivered asset
//! (linked, lazily loaded), its variables and its gate verdicts.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::deliver::{AssetEntry, Manifest, Report};
use creative_core::artifact::{MediaKind, MediaType};

/// Longest side of a thumbnail, in pixels.
const THUMB: u32 = 256;

/// Whether an image's recorded size already fits a thumbnail: none is made of
/// it, so the sheet shows the file itself and never looks for one.
fn fits_a_thumbnail(meta: &creative_core::artifact::Meta) -> bool {
    meta.width.is_some_and(|w| w <= THUMB) && meta.height.is_some_and(|h| h <= THUMB)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A PNG scaled down so its longest side is at most `max` (box filter), or the
/// original when it is small already. `None` if it does not decode.
pub(crate) fn png_thumbnail(data: &[u8], max: u32) -> Option<Vec<u8>> {
    let mut dec = png::Decoder::new(data);
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).ok()?;
    let (w, h) = (info.width, info.height);
    if w <= max && h <= max {
        return Some(data.to_vec());
    }
    let (ch, color) = match info.color_type {
        png::ColorType::Grayscale => (1, png::ColorType::Grayscale),
        png::ColorType::GrayscaleAlpha => (2, png::ColorType::GrayscaleAlpha),
        png::ColorType::Rgb => (3, png::ColorType::Rgb),
        png::ColorType::Rgba => (4, png::ColorType::Rgba),
        png::ColorType::Indexed => return None,
    };
    shrink(&buf, w, h, info.line_size, ch, color, max)
}

/// The thumbnail of pixels a step kept beside its image (see
/// [`creative_core::pixels`]): the same box filter, no decode.
fn pixels_thumbnail(p: &creative_core::pixels::Pixels, max: u32) -> Option<Vec<u8>> {
    if p.width() <= max && p.height() <= max {
        return None;
    }
    let (ch, color) = if p.has_alpha() {
        (4, png::ColorType::Rgba)
    } else {
        (3, png::ColorType::Rgb)
    };
    shrink(p.data(), p.width(), p.height(), p.width() as usize * ch, ch, color, max)
}

/// Scale 8-bit pixels (`ch` bytes each, rows `stride` bytes apart) so the
/// longest side is `max` (box filter) and encode them as a PNG.
///
/// The box filter runs in fast_image_resize (SIMD, two separable passes, alpha
/// premultiplied): a scalar per-pixel loop over a 1024 px asset cost about a
/// tenth of a campaign's CPU, for a preview.
fn shrink(buf: &[u8], w: u32, h: u32, stride: usize, ch: usize, color: png::ColorType, max: u32) -> Option<Vec<u8>> {
    use fast_image_resize as fir;
    if w == 0 || h == 0 {
        return None;
    }
    let scale = f64::from(max) / f64::from(w.max(h));
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    let pt = match ch {
        1 => fir::PixelType::U8,
        2 => fir::PixelType::U8x2,
        3 => fir::PixelType::U8x3,
        4 => fir::PixelType::U8x4,
        _ => return None,
    };
    // The resizer reads packed rows; a decoder's rows may carry padding.
    let row = w as usize * ch;
    let packed: std::borrow::Cow<'_, [u8]> = if stride == row {
        std::borrow::Cow::Borrowed(buf.get(..row * h as usize)?)
    } else {
        let rows = (0..h as usize).map(|y| buf.get(y * stride..y * stride + row));
        std::borrow::Cow::Owned(rows.collect::<Option<Vec<_>>>()?.concat())
    };
    let src = fir::images::ImageRef::new(w, h, &packed, pt).ok()?;
    let mut dst = fir::images::Image::new(nw, nh, pt);
    let opts = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box));
    fir::Resizer::new().resize(&src, &mut dst, &opts).ok()?;
    let out = dst.into_vec();
    let mut png_out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_out, nw, nh);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        // Per-row filters make the deflate pass cheap and the file small: with
        // one fixed filter a thumbnail of a 512 px rendition came out larger
        // than the rendition and was thrown away after all the work.
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        enc.set_compression(png::Compression::Default);
        let mut wr = enc.write_header().ok()?;
        wr.write_image_data(&out).ok()?;
    }
    Some(png_out)
}

/// Assets on one page of the contact sheet: a campaign of ten thousand assets
/// opens as twenty light pages rather than one page a browser chokes on.
pub const SHEET_PAGE: usize = 500;

/// Where the contact sheet keeps an asset's thumbnail, relative to the output
/// folder.
pub fn thumbnail_path(id: &creative_core::artifact::ArtifactId) -> String {
    format!(".creative/thumbs/{}.png", id.as_str())
}

/// Make the sheet's thumbnail of a delivered PNG, if it is worth one (larger
/// than a thumbnail) and decodes. Called as each job ends, on the worker pool,
/// so the end of a run has no image work left.
pub fn make_thumbnail(
    out_dir: &std::path::Path,
    artifact: &creative_core::artifact::Artifact,
) -> std::io::Result<bool> {
    if *artifact.media() != MediaType::Png {
        return Ok(false);
    }
    // Small enough to show as it is: known without asking the file system.
    if fits_a_thumbnail(artifact.meta()) {
        return Ok(false);
    }
    let path = out_dir.join(thumbnail_path(artifact.id()));
    if path.is_file() {
        return Ok(true);
    }
    let thumb = match artifact.pixels() {
        Some(p) => pixels_thumbnail(&p, THUMB),
        None => png_thumbnail(artifact.data(), THUMB),
    };
    match thumb {
        Some(t) if t.len() < artifact.data().len() => {
            crate::store::write_atomic(&path, &t, false)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn url(path: &str) -> String {
    // Relative paths from the spec's file names: only characters a URL cannot
    // carry as they are need escaping.
    let mut o = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' | b'~' => o.push(b as char),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn preview(out_dir: &std::path::Path, asset: &AssetEntry, load: &dyn Fn(&AssetEntry) -> Option<Bytes>) -> String {
    let img = |src: &str| {
        format!(
            "<a href=\"{}\"><img loading=\"lazy\" alt=\"{}\" src=\"{}\"></a>",
            esc(&url(asset.path.as_deref().unwrap_or(src))),
            esc(&asset.step),
            esc(&url(src))
        )
    };
    match asset.media.kind() {
        MediaKind::Image => {
            let thumb = thumbnail_path(&asset.id);
            if !fits_a_thumbnail(&asset.meta) && out_dir.join(&thumb).is_file() {
                img(&thumb)
            } else if let Some(p) = &asset.path {
                img(p)
            } else {
                "<div class=\"ph\">not delivered</div>".into()
            }
        }
        MediaKind::Text => match load(asset) {
            Some(data) => {
                let text = String::from_utf8_lossy(&data[..data.len().min(8 * 1024)]);
                let cut: String = text.chars().take(1200).collect();
                format!("<pre>{}</pre>", esc(&cut))
            }
            None => "<div class=\"ph\">payload missing</div>".into(),
        },
        // Delivered audio and video play in place.
        kind @ (MediaKind::Video | MediaKind::Audio) if asset.path.is_some() => format!(
            "<{tag} controls preload=\"metadata\" src=\"{src}\"></{tag}>",
            tag = if kind == MediaKind::Video { "video" } else { "audio" },
            src = esc(&url(asset.path.as_deref().unwrap_or_default()))
        ),
        _ => match &asset.path {
            Some(p) => format!(
                "<div class=\"ph\"><a href=\"{}\">{} ({} bytes)</a></div>",
                esc(&url(p)),
                esc(asset.media.as_str()),
                asset.bytes
            ),
            None => format!(
                "<div class=\"ph\">{} ({} bytes)</div>",
                esc(asset.media.as_str()),
                asset.bytes
            ),
        },
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The file name of page `n` (1-based) of the sheet.
pub fn sheet_page_name(n: usize) -> String {
    if n <= 1 {
        "contact_sheet.html".into()
    } else {
        format!("contact_sheet-{n}.html")
    }
}

fn head(h: &mut String, campaign: &str, report: &Report, page: usize, pages: usize) {
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name} contact sheet{pg}</title><style>\
body{{font:14px system-ui,sans-serif;margin:20px;background:#f6f6f4;color:#222}}\
table{{border-collapse:collapse;margin:8px 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
th:first-child,td:first-child{{text-align:left}}\
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}}\
.card{{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}}.card.flag{{border:2px solid #d80}}\
.card img,.card video{{max-width:256px;max-height:256px;display:block;margin:auto}}.card audio{{width:100%}}\
pre{{white-space:pre-wrap;max-height:256px;overflow:auto;background:#fafafa;margin:0}}\
.ph{{height:120px;display:flex;align-items:center;justify-content:center;background:#eee}}\
.vars,.gates{{font-size:12px;margin:4px 0;padding:0;list-style:none}}.pass{{color:#070}}.fail{{color:#b00}}\
.path{{font-family:monospace;font-size:11px;word-break:break-all}}nav{{margin:8px 0}}</style></head><body>",
        name = esc(campaign),
        pg = if pages > 1 {
            format!(", page {page} of {pages}")
        } else {
            String::new()
        }
    );
    let _ = write!(h, "<h1>{}</h1><p>{}</p>", esc(campaign), esc(&report.summary_line()));
    if page == 1 {
        h.push_str("<table><tr><th>provider/model</th><th>attempts</th><th>ok</th><th>gate pass</th><th>p50 ms</th><th>p95 ms</th><th>cost $</th><th>accepted</th><th>$/accepted</th><th>cache hits</th></tr>");
        for r in &report.providers {
            let pct = |v: Option<f64>| v.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "-".into());
            let num = |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "-".into());
            let _ = write!(
                h,
                "<tr><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.provider),
                esc(&r.model),
                r.attempts,
                r.successes,
                pct(r.gate_pass_rate),
                num(r.latency_p50_ms, 0),
                num(r.latency_p95_ms, 0),
                r.cost_usd,
                r.accepted,
                num(r.cost_per_accepted_usd, 4),
                r.cache_hits
            );
        }
        h.push_str("</table>");
    }
    nav(h, page, pages);
}

fn nav(h: &mut String, page: usize, pages: usize) {
    if pages <= 1 {
        return;
    }
    h.push_str("<nav>");
    if page > 1 {
        let _ = write!(h, "<a href=\"{}\">&larr; previous</a> ", sheet_page_name(page - 1));
    }
    let _ = write!(h, "page {page} of {pages}");
    if page < pages {
        let _ = write!(h, " <a href=\"{}\">next &rarr;</a>", sheet_page_name(page + 1));
    }
    h.push_str("</nav>");
}

fn card(h: &mut String, out_dir: &std::path::Path, a: &AssetEntry, load: &dyn Fn(&AssetEntry) -> Option<Bytes>) {
    let _ = write!(
        h,
        "<div class=\"card{}\">{}",
        if a.flagged() { " flag" } else { "" },
        preview(out_dir, a, load)
    );
    h.push_str("<ul class=\"vars\">");
    for (k, v) in &a.vars {
        let _ = write!(h, "<li><b>{}</b>: {}</li>", esc(k), esc(&value_text(v)));
    }
    let _ = write!(h, "<li><b>step</b>: {}</li>", esc(&a.step));
    let generation = std::iter::once(&a.provenance)
        .chain(a.sources.iter().map(|s| &s.provenance))
        .find(|p| p.provider.is_some());
    if let Some(p) = generation {
        let _ = write!(
            h,
            "<li><b>by</b>: {}{} seed {}</li>",
            esc(p.provider.as_deref().unwrap_or("-")),
            p.model.as_deref().map(|m| format!("/{}", esc(m))).unwrap_or_default(),
            p.seed.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    h.push_str("</ul><ul class=\"gates\">");
    let gates = std::iter::once(&a.provenance)
        .chain(a.sources.iter().map(|s| &s.provenance))
        .flat_map(|p| p.gates.iter());
    for g in gates {
        let _ = write!(
            h,
            "<li class=\"{}\">{} {} {:.3}{}</li>",
            if g.verdict.passed { "pass" } else { "fail" },
            if g.verdict.passed { "&#10003;" } else { "&#10007;" },
            esc(&g.gate),
            g.verdict.score,
            if g.verdict.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&g.verdict.reasons.join("; ")))
            }
        );
    }
    if a.flagged() {
        h.push_str("<li class=\"fail\">flagged for review</li>");
    }
    let _ = write!(
        h,
        "</ul><div class=\"path\">{}</div></div>",
        esc(a.path.as_deref().unwrap_or(a.id.short()))
    );
}

/// Write the contact sheet into `out_dir`: pages of [`SHEET_PAGE`] assets
/// (`contact_sheet.html`, `contact_sheet-2.html`, ...), each a card per asset
/// with its variables, maker and gate verdicts. Images are linked, not
/// embedded: the thumbnail made as the job ended, else the delivered file,
/// lazily loaded. `assets` is streamed, `total` says how many it yields, and
/// `load` reads a text asset's payload. Returns the pages written; pages of an
/// earlier, larger sheet are removed.
pub fn write_contact_sheet(
    out_dir: &std::path::Path,
    campaign: &str,
    report: &Report,
    total: usize,
    assets: impl Iterator<Item = AssetEntry>,
    load: &dyn Fn(&AssetEntry) -> Option<Bytes>,
) -> std::io::Result<usize> {
    let pages = total.div_ceil(SHEET_PAGE).max(1);
    let mut assets = assets.peekable();
    let mut cards = String::with_capacity(256 * 1024);
    for page in 1..=pages {
        cards.clear();
        for a in assets.by_ref().take(SHEET_PAGE) {
            card(&mut cards, out_dir, &a, load);
        }
        write_page(out_dir, campaign, report, page, pages, &cards)?;
    }
    remove_pages_after(out_dir, pages);
    Ok(pages)
}

/// One page of the sheet around its `cards`, written atomically and durably.
fn write_page(
    out_dir: &std::path::Path,
    campaign: &str,
    report: &Report,
    page: usize,
    pages: usize,
    cards: &str,
) -> std::io::Result<()> {
    let mut h = String::with_capacity(cards.len() + 16 * 1024);
    head(&mut h, campaign, report, page, pages);
    h.push_str("<div class=\"grid\">");
    h.push_str(cards);
    h.push_str("</div>");
    nav(&mut h, page, pages);
    h.push_str("</body></html>\n");
    crate::store::write_atomic(&out_dir.join(sheet_page_name(page)), h.as_bytes(), true)
}

/// A re-run with fewer assets leaves no stale page behind.
fn remove_pages_after(out_dir: &std::path::Path, pages: usize) {
    let mut n = pages + 1;
    while std::fs::remove_file(out_dir.join(sheet_page_name(n))).is_ok() {
        n += 1;
    }
}

/// The contact sheet made as the assets pass: each card is rendered when its
/// asset is placed (by the pass that follows the run) into a file aside, and
/// [`finish`](Self::finish) writes the pages around them once the report they
/// open with is known. The end of a run then only copies cards, where it used
/// to read every asset back and render every card.
pub(crate) struct SheetCards {
    path: std::path::PathBuf,
    /// `None` once finished.
    out: Option<std::io::BufWriter<std::fs::File>>,
    /// Where each full page's cards end in the file.
    page_ends: Vec<u64>,
    written: u64,
    in_page: usize,
    card: String,
}

impl SheetCards {
    /// Cards written to `path` (a temporary, removed when finished or dropped).
    pub(crate) fn create(path: std::path::PathBuf) -> std::io::Result<SheetCards> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(SheetCards {
            path,
            out: Some(std::io::BufWriter::with_capacity(1 << 16, f)),
            page_ends: Vec::new(),
            written: 0,
            in_page: 0,
            card: String::with_capacity(4096),
        })
    }

    /// The card of `a`, delivered into `out_dir`; `load` reads a text asset's payload.
    pub(crate) fn push(
        &mut self,
        out_dir: &std::path::Path,
        a: &AssetEntry,
        load: &dyn Fn(&AssetEntry) -> Option<Bytes>,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        let out = self.out.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        self.card.clear();
        card(&mut self.card, out_dir, a, load);
        out.write_all(self.card.as_bytes())?;
        self.written += self.card.len() as u64;
        self.in_page += 1;
        if self.in_page == SHEET_PAGE {
            self.page_ends.push(self.written);
            self.in_page = 0;
        }
        Ok(())
    }

    /// Write the pages into `out_dir` (as [`write_contact_sheet`] does); returns
    /// how many.
    pub(crate) fn finish(
        mut self,
        out_dir: &std::path::Path,
        campaign: &str,
        report: &Report,
    ) -> std::io::Result<usize> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let out = self.out.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let mut f = out.into_inner().map_err(|e| e.into_error())?;
        if self.in_page > 0 || self.page_ends.is_empty() {
            self.page_ends.push(self.written);
        }
        let pages = self.page_ends.len();
        f.seek(SeekFrom::Start(0))?;
        let mut cards = String::new();
        let mut start = 0;
        for (i, &end) in self.page_ends.iter().enumerate() {
            cards.clear();
            (&mut f).take(end - start).read_to_string(&mut cards)?;
            write_page(out_dir, campaign, report, i + 1, pages, &cards)?;
            start = end;
        }
        drop(f);
        let _ = std::fs::remove_file(&self.path);
        remove_pages_after(out_dir, pages);
        Ok(pages)
    }
}

impl Drop for SheetCards {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Render a one-page contact sheet of a manifest in memory (small campaigns,
/// tests). `load` returns an asset's payload.
pub fn contact_sheet(manifest: &Manifest, report: &Report, load: impl Fn(&AssetEntry) -> Option<Bytes>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    head(&mut h, &manifest.campaign, report, 1, 1);
    h.push_str("<div class=\"grid\">");
    for a in &manifest.assets {
        card(&mut h, std::path::Path::new(""), a, &load);
    }
    h.push_str("</div></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        wr.write_image_data(&px).unwrap();
        drop(wr);
        out
    }

    #[test]
    fn thumbnails_keep_aspect_and_fit() {
        let t = png_thumbnail(&png(1024, 512), 256).unwrap();
        let dec = png::Decoder::new(&t[..]).read_info().unwrap();
        assert_eq!((dec.info().width, dec.info().height), (256, 128));
        let small = png(64, 64);
        assert_eq!(png_thumbnail(&small, 256).unwrap(), small);
    }

    fn asset(i: usize) -> AssetEntry {
        let data = format!("asset {i}");
        AssetEntry {
            job: format!("job{i}"),
            vars: [("n".to_string(), serde_json::json!(i))].into_iter().collect(),
            step: "hero".into(),
            index: 0,
            id: creative_core::artifact::ArtifactId::of(&MediaType::Png, data.as_bytes()),
            media: MediaType::Png,
            bytes: data.len() as u64,
            path: Some(format!("hero/{i} <x>.png")),
            meta: Default::default(),
            finished_at: None,
            provenance: Default::default(),
            sources: Vec::new(),
        }
    }

    fn pages(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("contact_sheet"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn cards_made_as_assets_pass_give_the_pages_a_sheet_made_at_once_gives() {
        let root = std::env::temp_dir().join(format!("creative-sheet-cards-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let report = Report {
            campaign: "c".into(),
            ..Report::default()
        };
        let none = |_: &AssetEntry| None;
        for n in [0, 1, SHEET_PAGE, SHEET_PAGE + 1, 2 * SHEET_PAGE + 7] {
            let (once, cards) = (root.join(format!("once-{n}")), root.join(format!("cards-{n}")));
            std::fs::create_dir_all(&once).unwrap();
            std::fs::create_dir_all(&cards).unwrap();
            // A stale page of a larger sheet goes in both.
            std::fs::write(once.join(sheet_page_name(9)), "old").unwrap();
            std::fs::write(cards.join(sheet_page_name(9)), "old").unwrap();
            let a = write_contact_sheet(&once, "c", &report, n, (0..n).map(asset), &none).unwrap();
            let part = cards.join(".cards.part");
            let mut sheet = SheetCards::create(part.clone()).unwrap();
            for i in 0..n {
                sheet.push(&cards, &asset(i), &none).unwrap();
            }
            let b = sheet.finish(&cards, "c", &report).unwrap();
            assert_eq!(a, b, "{n} assets: pages");
            assert_eq!(a, n.div_ceil(SHEET_PAGE).max(1));
            assert!(!part.exists(), "the cards' file is removed");
            assert_eq!(pages(&once), pages(&cards), "{n} assets: the same pages, byte for byte");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }
}
