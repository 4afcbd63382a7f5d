//! Embedded metadata: write an asset's provenance into the file itself, read it
//! back, or strip what a file carries.
//!
//! Where it goes, by format:
//! - PNG: an uncompressed `iTXt` chunk with keyword `creative:provenance` (UTF-8
//!   JSON), before the first `IDAT`.
//! - JPEG: a `COM` segment whose payload is `creative:provenance`, a NUL byte and
//!   the JSON, after the leading `APPn` segments (so JFIF/EXIF stay first). A COM
//!   segment holds at most 65,533 bytes; longer provenance is an error.
//! - WebP: an XMP packet (`XMP ` chunk) with a `creative:provenance` element
//!   holding the XML-escaped JSON; a simple (`VP8 `/`VP8L`) file is upgraded to
//!   the extended format (`VP8X`) that allows metadata chunks.
//!
//! Stripping removes text and camera metadata (PNG `tEXt`/`zTXt`/`iTXt`/`eXIf`/
//! `tIME`; JPEG `COM` and `APPn` except JFIF `APP0`, ICC `APP2` and Adobe
//! `APP14`; WebP `EXIF`/`XMP `) and keeps everything that changes how pixels
//! look (colour profiles, gamma). Pixels are never re-encoded.

use crate::error::OpsError;
use crate::raster::Format;

/// The key under which provenance is stored.
pub const KEY: &str = "creative:provenance";

const PNG_SIG: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
const XMP_NS: &str = "urn:creative:provenance:1";

fn bad(format: Format, what: impl Into<String>) -> OpsError {
    OpsError::Metadata(format!("malformed {}: {}", format.as_str(), what.into()))
}

/// Embed `text` under [`KEY`], replacing an earlier value.
pub fn embed(bytes: &[u8], format: Format, text: &str) -> Result<Vec<u8>, OpsError> {
    match format {
        Format::Png => png_embed(bytes, text),
        Format::Jpeg => jpeg_embed(bytes, text),
        Format::Webp => webp_embed(bytes, text),
    }
}

/// Remove text and camera metadata, keeping colour information.
pub fn strip(bytes: &[u8], format: Format) -> Result<Vec<u8>, OpsError> {
    match format {
        Format::Png => png_rewrite(
            bytes,
            |ty, _| !matches!(ty, b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf" | b"tIME"),
            None,
        ),
        Format::Jpeg => jpeg_rewrite(bytes, jpeg_keep_when_stripping, None),
        Format::Webp => webp_rewrite(bytes, |ty| !matches!(ty, b"EXIF" | b"XMP "), 0x08 | 0x04, 0, None),
    }
}

/// Read the value stored under [`KEY`], if any.
pub fn read(bytes: &[u8], format: Format) -> Result<Option<String>, OpsError> {
    match format {
        Format::Png => {
            for (ty, data) in png_chunks(bytes)? {
                if ty == b"iTXt" {
                    if let Some(t) = itxt_text(data) {
                        return Ok(Some(t));
                    }
                }
            }
            Ok(None)
        }
        Format::Jpeg => {
            for (marker, payload) in jpeg_segments(bytes)?.0 {
                if marker == 0xFE {
                    if let Some(rest) = payload.strip_prefix(KEY.as_bytes()).and_then(|r| r.strip_prefix(b"\0")) {
                        let t = std::str::from_utf8(rest).map_err(|_| bad(Format::Jpeg, "COM text is not UTF-8"))?;
                        return Ok(Some(t.to_string()));
                    }
                }
            }
            Ok(None)
        }
        Format::Webp => {
            for (ty, data) in webp_chunks(bytes)? {
                if ty == b"XMP " {
                    let xmp = String::from_utf8_lossy(data);
                    let open = format!("<{KEY}>");
                    let close = format!("</{KEY}>");
                    if let (Some(a), Some(b)) = (xmp.find(&open), xmp.find(&close)) {
                        if a + open.len() <= b {
                            return Ok(Some(xml_unescape(&xmp[a + open.len()..b])));
                        }
                    }
                }
            }
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------- PNG

/// A chunk: its four-byte type and its payload.
type Chunk<'a> = (&'a [u8; 4], &'a [u8]);

fn crc32(parts: &[&[u8]]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (n, e) in t.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut c = 0xFFFF_FFFFu32;
    for p in parts {
        for &b in *p {
            c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
    }
    c ^ 0xFFFF_FFFF
}

fn png_chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, OpsError> {
    let f = Format::Png;
    if !bytes.starts_with(PNG_SIG) {
        return Err(bad(f, "no PNG signature"));
    }
    let mut out = Vec::new();
    let mut i = PNG_SIG.len();
    while i < bytes.len() {
        if i + 12 > bytes.len() {
            return Err(bad(f, format!("truncated chunk at byte {i}")));
        }
        let len = u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let ty: &[u8; 4] = bytes[i + 4..i + 8].try_into().map_err(|_| bad(f, "chunk type"))?;
        let end = i + 12 + len;
        if end > bytes.len() {
            return Err(bad(
                f,
                format!("chunk {} runs past the end", String::from_utf8_lossy(ty)),
            ));
        }
        out.push((ty, &bytes[i + 8..i + 8 + len]));
        i = end;
        if ty == b"IEND" {
            break;
        }
    }
    Ok(out)
}

fn push_png_chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(ty);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[ty, data]).to_be_bytes());
}

fn itxt_text(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(KEY.as_bytes())?.strip_prefix(b"\0")?;
    // compression flag, method, then language tag and translated keyword (NUL-ended).
    let (&flag, rest) = rest.split_first()?;
    if flag != 0 {
        return None;
    }
    let rest = &rest[1..];
    let lang_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[lang_end + 1..];
    let tk_end = rest.iter().position(|&b| b == 0)?;
    String::from_utf8(rest[tk_end + 1..].to_vec()).ok()
}

fn png_rewrite(
    bytes: &[u8],
    keep: impl Fn(&[u8; 4], &[u8]) -> bool,
    insert_before_idat: Option<(&[u8; 4], Vec<u8>)>,
) -> Result<Vec<u8>, OpsError> {
    let chunks = png_chunks(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + insert_before_idat.as_ref().map_or(0, |c| c.1.len() + 12));
    out.extend_from_slice(PNG_SIG);
    let mut pending = insert_before_idat;
    for (ty, data) in chunks {
        if ty == b"IDAT" || ty == b"IEND" {
            if let Some((t, d)) = pending.take() {
                push_png_chunk(&mut out, t, &d);
            }
        }
        if keep(ty, data) {
            push_png_chunk(&mut out, ty, data);
        }
    }
    Ok(out)
}

fn png_embed(bytes: &[u8], text: &str) -> Result<Vec<u8>, OpsError> {
    let mut data = Vec::with_capacity(KEY.len() + 5 + text.len());
    data.extend_from_slice(KEY.as_bytes());
    data.extend_from_slice(&[0, 0, 0, 0, 0]); // NUL, uncompressed, method 0, empty language, empty translation
    data.extend_from_slice(text.as_bytes());
    png_rewrite(
        bytes,
        |ty, d| !(ty == b"iTXt" && itxt_text(d).is_some()),
        Some((b"iTXt", data)),
    )
}

// ---------------------------------------------------------------- JPEG

type Segments<'a> = (Vec<(u8, &'a [u8])>, &'a [u8]);

/// The header segments (marker, payload) up to and including SOS, and the rest
/// of the file (entropy-coded data to EOI) untouched.
fn jpeg_segments(bytes: &[u8]) -> Result<Segments<'_>, OpsError> {
    let f = Format::Jpeg;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(bad(f, "no SOI marker"));
    }
    let mut segs = Vec::new();
    let mut i = 2;
    loop {
        while i < bytes.len() && bytes[i] == 0xFF && bytes.get(i + 1) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        if i + 4 > bytes.len() || bytes[i] != 0xFF {
            return Err(bad(f, format!("expected a marker at byte {i}")));
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if len < 2 || i + 2 + len > bytes.len() {
            return Err(bad(f, format!("segment FF{marker:02X} at byte {i} has a bad length")));
        }
        segs.push((marker, &bytes[i + 4..i + 2 + len]));
        i += 2 + len;
        if marker == 0xDA {
            return Ok((segs, &bytes[i..]));
        }
    }
}

fn jpeg_keep_when_stripping(marker: u8, payload: &[u8]) -> bool {
    match marker {
        0xFE => false,
        0xE0 => true,
        0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
        0xEE => payload.starts_with(b"Adobe"),
        0xE1..=0xEF => false,
        _ => true,
    }
}

fn push_jpeg_segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

fn jpeg_rewrite(
    bytes: &[u8],
    keep: impl Fn(u8, &[u8]) -> bool,
    insert: Option<(u8, Vec<u8>)>,
) -> Result<Vec<u8>, OpsError> {
    let (segs, rest) = jpeg_segments(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + insert.as_ref().map_or(0, |s| s.1.len() + 4));
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut pending = insert;
    for (marker, payload) in segs {
        if !(0xE0..=0xEF).contains(&marker) {
            if let Some((m, p)) = pending.take() {
                push_jpeg_segment(&mut out, m, &p);
            }
        }
        if keep(marker, payload) {
            push_jpeg_segment(&mut out, marker, payload);
        }
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn jpeg_embed(bytes: &[u8], text: &str) -> Result<Vec<u8>, OpsError> {
    let mut payload = Vec::with_capacity(KEY.len() + 1 + text.len());
    payload.extend_from_slice(KEY.as_bytes());
    payload.push(0);
    payload.extend_from_slice(text.as_bytes());
    if payload.len() > 65_533 {
        return Err(OpsError::Metadata(format!(
            "provenance of {} bytes does not fit a JPEG COM segment (65,533 at most); use PNG or WebP, or strip",
            payload.len()
        )));
    }
    jpeg_rewrite(
        bytes,
        |m, p| !(m == 0xFE && p.starts_with(KEY.as_bytes())),
        Some((0xFE, payload)),
    )
}

// ---------------------------------------------------------------- WebP

fn webp_chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, OpsError> {
    let f = Format::Webp;
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(bad(f, "no RIFF/WEBP header"));
    }
    let riff_end = (u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize + 8).min(bytes.len());
    let mut out = Vec::new();
    let mut i = 12;
    while i + 8 <= riff_end {
        let ty: &[u8; 4] = bytes[i..i + 4].try_into().map_err(|_| bad(f, "chunk type"))?;
        let len = u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        if i + 8 + len > riff_end {
            return Err(bad(
                f,
                format!("chunk {} runs past the end", String::from_utf8_lossy(ty)),
            ));
        }
        out.push((ty, &bytes[i + 8..i + 8 + len]));
        i += 8 + len + (len & 1);
    }
    if out.is_empty() {
        return Err(bad(f, "no chunks"));
    }
    Ok(out)
}

fn push_webp_chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(ty);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() & 1 == 1 {
        out.push(0);
    }
}

/// The canvas size and alpha use of a simple-format bitstream chunk.
fn webp_simple_info(ty: &[u8; 4], data: &[u8]) -> Result<(u32, u32, bool), OpsError> {
    let f = Format::Webp;
    match ty {
        b"VP8L" => {
            if data.len() < 5 || data[0] != 0x2F {
                return Err(bad(f, "VP8L header"));
            }
            let v = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
            Ok(((v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1, (v >> 28) & 1 == 1))
        }
        b"VP8 " => {
            if data.len() < 10 || data[3..6] != [0x9D, 0x01, 0x2A] {
                return Err(bad(f, "VP8 frame header"));
            }
            let w = u32::from(u16::from_le_bytes([data[6], data[7]]) & 0x3FFF);
            let h = u32::from(u16::from_le_bytes([data[8], data[9]]) & 0x3FFF);
            Ok((w, h, false))
        }
        _ => Err(bad(
            f,
            format!("unexpected first chunk {}", String::from_utf8_lossy(ty)),
        )),
    }
}

fn webp_rewrite(
    bytes: &[u8],
    keep: impl Fn(&[u8; 4]) -> bool,
    clear_flags: u8,
    set_flags: u8,
    append: Option<(&[u8; 4], Vec<u8>)>,
) -> Result<Vec<u8>, OpsError> {
    let chunks = webp_chunks(bytes)?;
    let mut body = Vec::with_capacity(bytes.len() + append.as_ref().map_or(0, |c| c.1.len() + 9));
    let (first_ty, first) = chunks[0];
    if first_ty == b"VP8X" {
        if first.len() < 10 {
            return Err(bad(Format::Webp, "VP8X chunk too short"));
        }
        let mut x = first.to_vec();
        x[0] = (x[0] & !clear_flags) | set_flags;
        push_webp_chunk(&mut body, b"VP8X", &x);
    } else if set_flags != 0 {
        // Upgrade a simple file to the extended format, which allows metadata.
        let (w, h, alpha) = webp_simple_info(first_ty, first)?;
        let mut x = vec![set_flags | if alpha { 0x10 } else { 0 }, 0, 0, 0];
        x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        push_webp_chunk(&mut body, b"VP8X", &x);
        push_webp_chunk(&mut body, first_ty, first);
    } else {
        push_webp_chunk(&mut body, first_ty, first);
    }
    for (ty, data) in &chunks[1..] {
        if keep(ty) {
            push_webp_chunk(&mut body, ty, data);
        }
    }
    if let Some((ty, data)) = append {
        push_webp_chunk(&mut body, ty, &data);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&body);
    Ok(out)
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn webp_embed(bytes: &[u8], text: &str) -> Result<Vec<u8>, OpsError> {
    let xmp = format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\
<rdf:Description rdf:about=\"\" xmlns:creative=\"{XMP_NS}\"><{KEY}>{}</{KEY}></rdf:Description>\
</rdf:RDF></x:xmpmeta><?xpacket end=\"r\"?>",
        xml_escape(text)
    );
    webp_rewrite(bytes, |ty| ty != b"XMP ", 0, 0x04, Some((b"XMP ", xmp.into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_png_reference_value() {
        // CRC of "IEND" with no data, as found at the end of every PNG.
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
    }

    #[test]
    fn xml_escaping_round_trips() {
        let s = r#"{"a":"<b> & 'c'"}"#;
        assert_eq!(xml_unescape(&xml_escape(s)), s);
    }
}
