//! IPTC `DigitalSourceType` in XMP: the statement that a generative model made
//! an image, for delivered files that carry no C2PA credentials.
//!
//! Where the packet goes, by format (each the place readers such as exiftool
//! and the IPTC's own tools look):
//! - PNG: an uncompressed `iTXt` chunk with keyword `XML:com.adobe.xmp`, before
//!   the first `IDAT`;
//! - JPEG: an `APP1` segment starting `http://ns.adobe.com/xap/1.0/\0`, after
//!   the leading `APPn` segments (so JFIF and EXIF stay first);
//! - WebP: an `XMP ` chunk at the end, the `VP8X` header's XMP flag set; a
//!   simple (`VP8 `/`VP8L`) file is upgraded to the extended format, which is
//!   the only one that may carry metadata.
//!
//! A file that already has an XMP packet keeps it: the statement is added to it
//! as one more `rdf:Description` (RDF allows several), and a packet that already
//! states a source type is left as it is. Pixels are never re-encoded.

use super::mark::MarkError;

/// The IPTC digital source type of media made by a trained model.
pub const TRAINED_ALGORITHMIC_MEDIA: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

const IPTC_EXT_NS: &str = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
const PNG_SIG: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
const PNG_XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
const JPEG_XMP_ID: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// A JPEG segment's payload: 65,535 minus its two length bytes.
const JPEG_MAX_PAYLOAD: usize = 65_533;

/// The image formats that carry XMP here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XmpFormat {
    Png,
    Jpeg,
    Webp,
}

impl XmpFormat {
    fn name(self) -> &'static str {
        match self {
            XmpFormat::Png => "PNG",
            XmpFormat::Jpeg => "JPEG",
            XmpFormat::Webp => "WebP",
        }
    }
}

fn bad(format: XmpFormat, reason: impl Into<String>) -> MarkError {
    MarkError::Malformed {
        format: format.name(),
        reason: reason.into(),
    }
}

/// The `rdf:Description` stating `source_type`.
fn description(source_type: &str) -> String {
    format!(
        "<rdf:Description rdf:about=\"\" xmlns:Iptc4xmpExt=\"{IPTC_EXT_NS}\">\
<Iptc4xmpExt:DigitalSourceType>{source_type}</Iptc4xmpExt:DigitalSourceType></rdf:Description>"
    )
}

/// A whole XMP packet stating `source_type`.
pub fn packet(source_type: &str) -> String {
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">{}\
</rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>",
        description(source_type)
    )
}

/// `existing` with the statement added, or `None` when it already states a
/// source type. A packet without an `rdf:RDF` element is replaced.
fn merged(existing: &[u8], source_type: &str) -> Option<String> {
    let text = String::from_utf8_lossy(existing);
    if text.contains("DigitalSourceType") {
        return None;
    }
    match text.rfind("</rdf:RDF>") {
        Some(end) => Some(format!("{}{}{}", &text[..end], description(source_type), &text[end..])),
        None => Some(packet(source_type)),
    }
}

/// `bytes` with `source_type` stated in XMP; `None` when the file already
/// states one.
pub(crate) fn add_source_type(
    bytes: &[u8],
    format: XmpFormat,
    source_type: &str,
) -> Result<Option<Vec<u8>>, MarkError> {
    match format {
        XmpFormat::Png => png(bytes, source_type),
        XmpFormat::Jpeg => jpeg(bytes, source_type),
        XmpFormat::Webp => webp(bytes, source_type),
    }
}

/// The XMP packet a file carries, if any (what [`add_source_type`] writes).
#[cfg(test)]
fn read(bytes: &[u8], format: XmpFormat) -> Result<Option<String>, MarkError> {
    let found = match format {
        XmpFormat::Png => png_chunks(bytes)?
            .into_iter()
            .find_map(|(ty, d)| (ty == b"iTXt").then(|| itxt_xmp(d)).flatten()),
        XmpFormat::Jpeg => jpeg_segments(bytes)?
            .0
            .into_iter()
            .find_map(|(m, p)| (m == 0xE1).then(|| p.strip_prefix(JPEG_XMP_ID)).flatten()),
        XmpFormat::Webp => webp_chunks(bytes)?
            .into_iter()
            .find_map(|(ty, d)| (ty == b"XMP ").then_some(d)),
    };
    Ok(found.map(|b| String::from_utf8_lossy(b).into_owned()))
}

// ---------------------------------------------------------------- PNG

type Chunk<'a> = (&'a [u8; 4], &'a [u8]);

fn png_chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, MarkError> {
    let f = XmpFormat::Png;
    let rest = bytes.strip_prefix(PNG_SIG).ok_or_else(|| bad(f, "no PNG signature"))?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let head = rest
            .get(i..i + 8)
            .ok_or_else(|| bad(f, format!("truncated chunk header at byte {}", i + 8)))?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let ty: &[u8; 4] = head[4..8].try_into().map_err(|_| bad(f, "chunk type"))?;
        let data = rest
            .get(i + 8..i + 8 + len)
            .filter(|_| i + 12 + len <= rest.len())
            .ok_or_else(|| {
                bad(
                    f,
                    format!(
                        "chunk {} at byte {} runs past the end",
                        String::from_utf8_lossy(ty),
                        i + 8
                    ),
                )
            })?;
        out.push((ty, data));
        i += 12 + len;
        if ty == b"IEND" {
            break;
        }
    }
    if !out.iter().any(|(ty, _)| *ty == b"IDAT") {
        return Err(bad(f, "no IDAT chunk"));
    }
    Ok(out)
}

/// The text of an uncompressed XMP `iTXt` chunk.
fn itxt_xmp(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(PNG_XMP_KEYWORD)?.strip_prefix(b"\0")?;
    // Compression flag and method: only uncompressed text is read here.
    let rest = rest.strip_prefix(&[0, 0])?;
    let lang_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[lang_end + 1..];
    let translated_end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[translated_end + 1..])
}

fn push_png_chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(ty);
    out.extend_from_slice(data);
    let mut h = crc32::Crc::new();
    h.update(ty);
    h.update(data);
    out.extend_from_slice(&h.finish().to_be_bytes());
}

fn png(bytes: &[u8], source_type: &str) -> Result<Option<Vec<u8>>, MarkError> {
    let chunks = png_chunks(bytes)?;
    let existing = chunks.iter().position(|(ty, d)| {
        *ty == b"iTXt" && d.starts_with(PNG_XMP_KEYWORD) && d.get(PNG_XMP_KEYWORD.len()) == Some(&0)
    });
    let text = match existing.map(|i| itxt_xmp(chunks[i].1)) {
        // A compressed packet: replaced by a plain one (what it said is kept
        // only when it can be read).
        Some(None) => packet(source_type),
        Some(Some(old)) => match merged(old, source_type) {
            Some(t) => t,
            None => return Ok(None),
        },
        None => packet(source_type),
    };
    let mut itxt = Vec::with_capacity(PNG_XMP_KEYWORD.len() + 5 + text.len());
    itxt.extend_from_slice(PNG_XMP_KEYWORD);
    // NUL, uncompressed, method 0, empty language tag, empty translated keyword.
    itxt.extend_from_slice(&[0, 0, 0, 0, 0]);
    itxt.extend_from_slice(text.as_bytes());
    let mut out = Vec::with_capacity(bytes.len() + itxt.len() + 12);
    out.extend_from_slice(PNG_SIG);
    let mut pending = Some(itxt);
    for (i, (ty, data)) in chunks.iter().enumerate() {
        if Some(i) == existing {
            continue;
        }
        if *ty == b"IDAT" {
            if let Some(x) = pending.take() {
                push_png_chunk(&mut out, b"iTXt", &x);
            }
        }
        push_png_chunk(&mut out, ty, data);
    }
    Ok(Some(out))
}

/// CRC-32 (ISO 3309, as PNG uses), table-driven.
mod crc32 {
    pub(super) struct Crc(u32);

    fn table() -> &'static [u32; 256] {
        static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = [0u32; 256];
            for (n, e) in t.iter_mut().enumerate() {
                let mut c = n as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
                *e = c;
            }
            t
        })
    }

    impl Crc {
        pub(super) fn new() -> Self {
            Crc(0xFFFF_FFFF)
        }
        pub(super) fn update(&mut self, data: &[u8]) {
            let t = table();
            for &b in data {
                self.0 = t[((self.0 ^ u32::from(b)) & 0xFF) as usize] ^ (self.0 >> 8);
            }
        }
        pub(super) fn finish(self) -> u32 {
            self.0 ^ 0xFFFF_FFFF
        }
    }
}

// ---------------------------------------------------------------- JPEG

/// The header segments (marker, payload) up to and including SOS, and the rest
/// of the file (entropy-coded data to EOI), untouched.
type Segments<'a> = (Vec<(u8, &'a [u8])>, &'a [u8]);

fn jpeg_segments(bytes: &[u8]) -> Result<Segments<'_>, MarkError> {
    let f = XmpFormat::Jpeg;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(bad(f, "no SOI marker"));
    }
    let mut segs = Vec::new();
    let mut i = 2;
    loop {
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        if i + 4 > bytes.len() || bytes[i] != 0xFF {
            return Err(bad(f, format!("expected a marker at byte {i}")));
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if len < 2 || i + 2 + len > bytes.len() {
            return Err(bad(f, format!("segment {marker:#04X} at byte {i} runs past the end")));
        }
        segs.push((marker, &bytes[i + 4..i + 2 + len]));
        i += 2 + len;
        if marker == 0xDA {
            return Ok((segs, &bytes[i..]));
        }
    }
}

fn jpeg(bytes: &[u8], source_type: &str) -> Result<Option<Vec<u8>>, MarkError> {
    let (segs, rest) = jpeg_segments(bytes)?;
    let existing = segs.iter().position(|(m, p)| *m == 0xE1 && p.starts_with(JPEG_XMP_ID));
    let text = match existing {
        Some(i) => match merged(&segs[i].1[JPEG_XMP_ID.len()..], source_type) {
            Some(t) => t,
            None => return Ok(None),
        },
        None => packet(source_type),
    };
    let mut payload = Vec::with_capacity(JPEG_XMP_ID.len() + text.len());
    payload.extend_from_slice(JPEG_XMP_ID);
    payload.extend_from_slice(text.as_bytes());
    if payload.len() > JPEG_MAX_PAYLOAD {
        return Err(bad(
            XmpFormat::Jpeg,
            format!(
                "its XMP packet would be {} bytes, more than one APP1 segment holds ({JPEG_MAX_PAYLOAD})",
                payload.len()
            ),
        ));
    }
    let push = |out: &mut Vec<u8>, marker: u8, p: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((p.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(p);
    };
    let mut out = Vec::with_capacity(bytes.len() + payload.len() + 4);
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut pending = Some(payload);
    for (i, (marker, p)) in segs.iter().enumerate() {
        if Some(i) == existing {
            if let Some(x) = pending.take() {
                push(&mut out, 0xE1, &x);
            }
            continue;
        }
        if !(0xE0..=0xEF).contains(marker) {
            if let Some(x) = pending.take() {
                push(&mut out, 0xE1, &x);
            }
        }
        push(&mut out, *marker, p);
    }
    out.extend_from_slice(rest);
    Ok(Some(out))
}

// ---------------------------------------------------------------- WebP

fn webp_chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, MarkError> {
    let f = XmpFormat::Webp;
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(bad(f, "no RIFF/WEBP header"));
    }
    let riff_end = (u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize).saturating_add(8);
    if riff_end > bytes.len() {
        return Err(bad(f, "the RIFF size runs past the end"));
    }
    let mut out = Vec::new();
    let mut i = 12;
    while i + 8 <= riff_end {
        let ty: &[u8; 4] = bytes[i..i + 4].try_into().map_err(|_| bad(f, "chunk type"))?;
        let len = u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        let data = bytes
            .get(i + 8..i + 8 + len)
            .filter(|_| i + 8 + len <= riff_end)
            .ok_or_else(|| {
                bad(
                    f,
                    format!("chunk {} at byte {i} runs past the end", String::from_utf8_lossy(ty)),
                )
            })?;
        out.push((ty, data));
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
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

/// Canvas width, height and whether there is alpha, from a simple file's image
/// chunk.
fn webp_simple_info(ty: &[u8; 4], d: &[u8]) -> Result<(u32, u32, bool), MarkError> {
    let f = XmpFormat::Webp;
    match ty {
        // Lossy: a 3-byte frame tag, the start code 9D 01 2A, then 14-bit
        // width and height (the top two bits of each are scaling).
        b"VP8 " => {
            if d.len() < 10 || d[3..6] != [0x9D, 0x01, 0x2A] {
                return Err(bad(f, "VP8 frame header"));
            }
            let w = u32::from(u16::from_le_bytes([d[6], d[7]]) & 0x3FFF);
            let h = u32::from(u16::from_le_bytes([d[8], d[9]]) & 0x3FFF);
            Ok((w, h, false))
        }
        // Lossless: the signature 0x2F, then 14 bits of width - 1, 14 of
        // height - 1 and the alpha hint.
        b"VP8L" => {
            if d.len() < 5 || d[0] != 0x2F {
                return Err(bad(f, "VP8L header"));
            }
            let bits = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, (bits >> 28) & 1 == 1))
        }
        other => Err(bad(
            f,
            format!("unexpected first chunk {}", String::from_utf8_lossy(other)),
        )),
    }
}

fn webp(bytes: &[u8], source_type: &str) -> Result<Option<Vec<u8>>, MarkError> {
    const XMP_FLAG: u8 = 0x04;
    const ALPHA_FLAG: u8 = 0x10;
    let chunks = webp_chunks(bytes)?;
    let text = match chunks.iter().find(|(ty, _)| *ty == b"XMP ") {
        Some((_, old)) => match merged(old, source_type) {
            Some(t) => t,
            None => return Ok(None),
        },
        None => packet(source_type),
    };
    let mut body = Vec::with_capacity(bytes.len() + text.len() + 32);
    body.extend_from_slice(b"WEBP");
    let (first_ty, first) = chunks[0];
    if first_ty == b"VP8X" {
        if first.len() < 10 {
            return Err(bad(XmpFormat::Webp, "VP8X chunk too short"));
        }
        let mut x = first.to_vec();
        x[0] |= XMP_FLAG;
        push_webp_chunk(&mut body, b"VP8X", &x);
    } else {
        let (w, h, alpha) = webp_simple_info(first_ty, first)?;
        if w == 0 || h == 0 {
            return Err(bad(XmpFormat::Webp, "a zero canvas size"));
        }
        let mut x = vec![XMP_FLAG | if alpha { ALPHA_FLAG } else { 0 }, 0, 0, 0];
        x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        push_webp_chunk(&mut body, b"VP8X", &x);
        push_webp_chunk(&mut body, first_ty, first);
    }
    for (ty, data) in chunks[1..].iter().filter(|(ty, _)| *ty != b"XMP ") {
        push_webp_chunk(&mut body, ty, data);
    }
    // XMP comes last in an extended file.
    push_webp_chunk(&mut body, b"XMP ", text.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_file() -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 1);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[255, 0, 0, 0, 255, 0]).unwrap();
        w.finish().unwrap();
        out
    }

    /// A minimal baseline JPEG's header: SOI, JFIF APP0, a quantisation table,
    /// then SOS and two bytes standing for the entropy-coded data, and EOI.
    fn jpeg_file() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&[0xFF, 0xE0, 0, 16]);
        j.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        j.extend_from_slice(&[0xFF, 0xDB, 0, 67, 0]);
        j.extend_from_slice(&[1u8; 64]);
        j.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0]);
        j.extend_from_slice(&[0x12, 0x34, 0xFF, 0xD9]);
        j
    }

    /// A simple lossless WebP: RIFF, WEBP, a VP8L chunk of a 3x2 canvas.
    fn webp_file() -> Vec<u8> {
        let bits: u32 = (3 - 1) | ((2 - 1) << 14) | (1 << 28);
        let mut vp8l = vec![0x2F];
        vp8l.extend_from_slice(&bits.to_le_bytes());
        vp8l.extend_from_slice(&[0, 0, 0]); // stands for the bitstream; odd length on purpose
        let mut body = b"WEBP".to_vec();
        push_webp_chunk(&mut body, b"VP8L", &vp8l);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn a_png_gets_an_xmp_itxt_chunk_before_its_pixels_and_still_decodes() {
        let marked = add_source_type(&png_file(), XmpFormat::Png, TRAINED_ALGORITHMIC_MEDIA)
            .unwrap()
            .unwrap();
        let types: Vec<_> = png_chunks(&marked).unwrap().iter().map(|(t, _)| **t).collect();
        let itxt = types.iter().position(|t| t == b"iTXt").unwrap();
        assert!(itxt < types.iter().position(|t| t == b"IDAT").unwrap());
        let xmp = read(&marked, XmpFormat::Png).unwrap().unwrap();
        assert!(xmp.contains(TRAINED_ALGORITHMIC_MEDIA), "{xmp}");
        // The png crate checks every chunk's CRC as it decodes.
        let mut dec = png::Decoder::new(std::io::Cursor::new(&marked)).read_info().unwrap();
        let mut buf = vec![0; dec.output_buffer_size()];
        dec.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..6], &[255, 0, 0, 0, 255, 0]);
    }

    #[test]
    fn marking_twice_leaves_a_file_as_it_was() {
        for (f, bytes) in [
            (XmpFormat::Png, png_file()),
            (XmpFormat::Jpeg, jpeg_file()),
            (XmpFormat::Webp, webp_file()),
        ] {
            let once = add_source_type(&bytes, f, TRAINED_ALGORITHMIC_MEDIA).unwrap().unwrap();
            assert_eq!(
                add_source_type(&once, f, TRAINED_ALGORITHMIC_MEDIA).unwrap(),
                None,
                "{f:?}"
            );
        }
    }

    #[test]
    fn a_jpeg_gets_an_app1_xmp_segment_after_jfif_with_its_scan_untouched() {
        let bytes = jpeg_file();
        let marked = add_source_type(&bytes, XmpFormat::Jpeg, TRAINED_ALGORITHMIC_MEDIA)
            .unwrap()
            .unwrap();
        let (segs, rest) = jpeg_segments(&marked).unwrap();
        let markers: Vec<u8> = segs.iter().map(|(m, _)| *m).collect();
        assert_eq!(markers, [0xE0, 0xE1, 0xDB, 0xDA]);
        assert_eq!(rest, &[0x12, 0x34, 0xFF, 0xD9]);
        assert!(read(&marked, XmpFormat::Jpeg)
            .unwrap()
            .unwrap()
            .contains(TRAINED_ALGORITHMIC_MEDIA));
    }

    #[test]
    fn a_simple_webp_becomes_extended_with_its_canvas_alpha_and_an_xmp_chunk() {
        let marked = add_source_type(&webp_file(), XmpFormat::Webp, TRAINED_ALGORITHMIC_MEDIA)
            .unwrap()
            .unwrap();
        let riff = u32::from_le_bytes(marked[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, marked.len());
        let chunks = webp_chunks(&marked).unwrap();
        let types: Vec<_> = chunks.iter().map(|(t, _)| **t).collect();
        assert_eq!(types, [*b"VP8X", *b"VP8L", *b"XMP "]);
        let x = chunks[0].1;
        assert_eq!(x[0], 0x04 | 0x10, "XMP and alpha flags");
        assert_eq!((x[4], x[7]), (2, 1), "canvas 3x2, stored minus one");
        assert!(read(&marked, XmpFormat::Webp)
            .unwrap()
            .unwrap()
            .contains(TRAINED_ALGORITHMIC_MEDIA));
    }

    #[test]
    fn an_existing_packet_keeps_what_it_said_and_gains_the_source_type() {
        let old = "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\
<rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:format>image/jpeg</dc:format></rdf:Description></rdf:RDF></x:xmpmeta>";
        let mut payload = JPEG_XMP_ID.to_vec();
        payload.extend_from_slice(old.as_bytes());
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE1];
        bytes.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&jpeg_file()[2..]);
        let marked = add_source_type(&bytes, XmpFormat::Jpeg, TRAINED_ALGORITHMIC_MEDIA)
            .unwrap()
            .unwrap();
        let xmp = read(&marked, XmpFormat::Jpeg).unwrap().unwrap();
        assert!(xmp.contains("<dc:format>image/jpeg</dc:format>"), "{xmp}");
        assert!(xmp.contains(TRAINED_ALGORITHMIC_MEDIA), "{xmp}");
        let app1 = jpeg_segments(&marked)
            .unwrap()
            .0
            .iter()
            .filter(|(m, _)| *m == 0xE1)
            .count();
        assert_eq!(app1, 1, "one XMP segment, not two");
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_its_format_and_where() {
        let mut png = png_file();
        png.truncate(png.len() - 20);
        let e = add_source_type(&png, XmpFormat::Png, TRAINED_ALGORITHMIC_MEDIA).unwrap_err();
        assert!(
            e.to_string().contains("PNG") && e.to_string().contains("runs past the end"),
            "{e}"
        );
        let e = add_source_type(b"\xFF\xD8\xFF", XmpFormat::Jpeg, TRAINED_ALGORITHMIC_MEDIA).unwrap_err();
        assert!(
            e.to_string().contains("JPEG") && e.to_string().contains("byte 2"),
            "{e}"
        );
        let e = add_source_type(b"RIFF\xFF\0\0\0WEBP", XmpFormat::Webp, TRAINED_ALGORITHMIC_MEDIA).unwrap_err();
        assert!(e.to_string().contains("WebP"), "{e}");
    }
}
