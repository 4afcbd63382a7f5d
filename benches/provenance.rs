//! Provenance marks at delivery, per file: what `[output.c2pa]` and
//! `output.xmp` cost on top of writing the file.
//!
//! Cases, on a 1024x1024 RGB PNG (noise, so about 3 MB, the size of a
//! generation):
//! - `c2pa_generation`: sign a generated image (`c2pa.created`, ES256).
//! - `c2pa_rendition`: sign a 256x256 rendition of it, which signs the parent
//!   first and embeds it as the ingredient (two signatures, both hashed).
//! - `xmp_generation`: the IPTC DigitalSourceType XMP packet instead.
//!
//! Run with `cargo bench --features c2pa --bench provenance`.

use bytes::Bytes;
use creative::campaign::deliver::{AssetEntry, C2paSigner, Marking, SourceEntry};
use creative::campaign::spec::C2paAlg;
use creative::engine::provenance::Provenance;
use creative::engine::{ArtifactId, MediaType};
use creative::ops::image;
use creative::ops::{EncodeSettings, Format, Raster};
use criterion::{criterion_group, criterion_main, Criterion};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

fn credentials() -> (String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut ee = CertificateParams::new(Vec::<String>::new()).unwrap();
    ee.distinguished_name.push(DnType::CommonName, "bench signer");
    ee.distinguished_name.push(DnType::OrganizationName, "creative");
    ee.is_ca = IsCa::ExplicitNoCa;
    ee.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    ee.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    ee.use_authority_key_identifier_extension = true;
    let cert = ee.signed_by(&key, &ca).unwrap();
    (format!("{}{}", cert.pem(), ca.pem()), key.serialize_pem())
}

fn png(side: u32) -> Vec<u8> {
    let mut x = 0x2545_F491u32;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    Raster::Rgb(img)
        .encode(Format::Png, &EncodeSettings::default())
        .expect("encode bench input")
}

fn entry(step: &str, data: &[u8], provenance: Provenance, sources: Vec<SourceEntry>) -> AssetEntry {
    AssetEntry {
        job: "mug".into(),
        vars: Default::default(),
        step: step.into(),
        index: 0,
        id: ArtifactId::of(&MediaType::Png, data),
        media: MediaType::Png,
        bytes: data.len() as u64,
        path: None,
        meta: Default::default(),
        finished_at: None,
        provenance,
        sources,
    }
}

fn bench(c: &mut Criterion) {
    let (chain, key) = credentials();
    let signer = C2paSigner::new(chain.as_bytes(), key.as_bytes(), C2paAlg::Es256, None).unwrap();
    let c2pa = Marking::c2pa(signer);
    let xmp = Marking::xmp();

    let hero = Bytes::from(png(1024));
    let generated = Provenance {
        step: "hero".into(),
        provider: Some("art".into()),
        model: Some("model-1".into()),
        ..Provenance::default()
    };
    let hero_entry = entry("hero", &hero, generated.clone(), Vec::new());
    let thumb = png(256);
    let source = SourceEntry {
        id: hero_entry.id.clone(),
        media: MediaType::Png,
        provenance: generated,
    };
    let thumb_entry = entry(
        "thumb",
        &thumb,
        Provenance {
            step: "thumb".into(),
            parents: vec![hero_entry.id.clone()],
            ..Provenance::default()
        },
        vec![source],
    );
    let parent = |_: &SourceEntry| Some(hero.clone());
    let none = |_: &SourceEntry| None;

    let signed = c2pa.mark(&hero_entry, "hero.png", &hero, &none).unwrap().unwrap();
    let rendition = c2pa.mark(&thumb_entry, "thumb.png", &thumb, &parent).unwrap().unwrap();
    eprintln!(
        "hero {} -> {} bytes signed; thumb {} -> {} bytes with its parent's manifest",
        hero.len(),
        signed.len(),
        thumb.len(),
        rendition.len()
    );

    let mut g = c.benchmark_group("provenance");
    g.sample_size(20);
    g.bench_function("c2pa_generation", |b| {
        b.iter(|| c2pa.mark(&hero_entry, "hero.png", &hero, &none).unwrap())
    });
    g.bench_function("c2pa_rendition", |b| {
        b.iter(|| c2pa.mark(&thumb_entry, "thumb.png", &thumb, &parent).unwrap())
    });
    g.bench_function("xmp_generation", |b| {
        b.iter(|| xmp.mark(&hero_entry, "hero.png", &hero, &none).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
