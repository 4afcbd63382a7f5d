//! Canonical JSON: the bytes every hash in the project is taken over.
//!
//! `serde_json::to_vec` writes a `serde_json::Map` in sorted key order, unless
//! anything in the build turns on serde_json's `preserve_order` feature (the
//! `c2pa` crate does), and then in insertion order. Cargo unifies features
//! across the build, so the same job, request or spec would hash differently
//! in a build with `c2pa` and one without, and a cache or resume made by one
//! would miss in the other. [`to_vec`] writes the bytes `serde_json::to_vec`
//! writes without `preserve_order`, whatever the build: struct fields in
//! declaration order, map entries sorted by key, compact.
//!
//! ```
//! use serde_json::{json, Map};
//! let mut m = Map::new();
//! m.insert("b".into(), json!(1));
//! m.insert("a".into(), json!({"y": 2, "x": 3}));
//! let bytes = creative_core::canonical::to_vec(&m).unwrap();
//! assert_eq!(bytes, br#"{"a":{"x":3,"y":2},"b":1}"#);
//! ```

use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// Serialize `value` as canonical JSON: what `serde_json::to_vec` writes in a
/// build without serde_json's `preserve_order` feature.
///
/// Every map (a `serde_json::Map`, a `BTreeMap`, a `HashMap`...) is written
/// with its entries sorted by the bytes of the key as a string (a number key
/// by its decimal text, as JSON writes it); entries with equal keys keep their
/// order. Everything else is written by serde_json itself.
///
/// A struct with a `#[serde(flatten)]` field, or an internally tagged enum,
/// reaches a serializer as one map holding both its own fields (and tag) and
/// the flattened map's entries. Its own fields keep their place, as
/// serde_json writes them; only the runs of entries between them are sorted.
/// Serde hands its own field names and tags over as `&'static str` keys and a
/// map's entries with the map's key type, and that is how they are told
/// apart: an entry whose key has type `str` keeps its place.
///
/// # Errors
///
/// The errors `serde_json::to_vec` gives: a map key that is not a string,
/// number, bool or char, or a `Serialize` implementation that fails.
pub fn to_vec<T: ?Sized + Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    value.serialize(Canonical { out: &mut out })?;
    Ok(out)
}

type Result<T = ()> = serde_json::Result<T>;

/// serde_json's own serializer over `out`, for scalars: the numbers, strings
/// and escapes are then exactly serde_json's.
fn json(out: &mut Vec<u8>) -> serde_json::Serializer<&mut Vec<u8>> {
    serde_json::Serializer::new(out)
}

/// The serializer: writes compound values itself, so that it can sort maps,
/// and hands every scalar to serde_json.
struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Serializer for Canonical<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Struct<'a>;
    type SerializeStructVariant = Struct<'a>;

    fn serialize_bool(self, v: bool) -> Result {
        json(self.out).serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result {
        json(self.out).serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result {
        json(self.out).serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result {
        json(self.out).serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result {
        json(self.out).serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result {
        json(self.out).serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result {
        json(self.out).serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result {
        json(self.out).serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result {
        json(self.out).serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result {
        json(self.out).serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result {
        json(self.out).serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result {
        json(self.out).serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result {
        json(self.out).serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result {
        json(self.out).serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result {
        json(self.out).serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        json(self.out).serialize_bytes(v)
    }
    fn serialize_none(self) -> Result {
        json(self.out).serialize_none()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        json(self.out).serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result {
        json(self.out).serialize_unit_struct(name)
    }
    fn serialize_unit_variant(self, name: &'static str, index: u32, variant: &'static str) -> Result {
        json(self.out).serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _name: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        open_variant(self.out, variant)?;
        value.serialize(Canonical { out: &mut *self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>> {
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            close: b"]",
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a>> {
        open_variant(self.out, variant)?;
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            close: b"]}",
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map<'a>> {
        self.out.push(b'{');
        Ok(Map {
            start: self.out.len(),
            out: self.out,
            entries: Vec::with_capacity(len.unwrap_or(0)),
            in_order: true,
            prev: None,
            key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Struct<'a>> {
        self.out.push(b'{');
        Ok(Struct {
            out: self.out,
            first: true,
            close: b"}",
        })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Struct<'a>> {
        open_variant(self.out, variant)?;
        self.out.push(b'{');
        Ok(Struct {
            out: self.out,
            first: true,
            close: b"}}",
        })
    }
}

/// `{"variant":`, as serde_json opens every variant that carries data.
fn open_variant(out: &mut Vec<u8>, variant: &str) -> Result {
    out.push(b'{');
    json(out).serialize_str(variant)?;
    out.push(b':');
    Ok(())
}

/// A sequence, tuple or tuple variant being written.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// `]`, or `]}` for a variant.
    close: &'static [u8],
}

impl Seq<'_> {
    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { out: &mut *self.out })
    }
    fn close(self) -> Result {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl SerializeTupleVariant for Seq<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.element(value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

/// A struct or struct variant being written: fields in the order serde hands
/// them over, which is declaration order (skipped fields are never handed).
struct Struct<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// `}`, or `}}` for a variant.
    close: &'static [u8],
}

impl Struct<'_> {
    fn field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json(self.out).serialize_str(key)?;
        self.out.push(b':');
        value.serialize(Canonical { out: &mut *self.out })
    }
    fn close(self) -> Result {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl SerializeStruct for Struct<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl SerializeStructVariant for Struct<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }
    fn end(self) -> Result {
        self.close()
    }
}

/// Where one map entry was written.
struct Entry {
    /// A struct's own field or an enum tag: it keeps its place.
    fixed: bool,
    /// Where its key starts in the output.
    start: usize,
    /// Where its key ends.
    key_end: usize,
    /// Where its value ends.
    end: usize,
}

/// A map being written.
///
/// Entries are written as they come, which is the whole job when they come in
/// key order (a `BTreeMap`, or a `serde_json::Map` without `preserve_order`);
/// only when one comes out of order are they moved into order at the end.
struct Map<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first entry starts (after the `{`).
    start: usize,
    entries: Vec<Entry>,
    /// Whether every run of entries so far came in key order.
    in_order: bool,
    /// The previous key's text in the current run, if the run has one.
    prev: Option<Vec<u8>>,
    /// The key written by `serialize_key`, waiting for its value: whether it
    /// is fixed, where it starts, where it ends.
    key: Option<(bool, usize, usize)>,
}

impl SerializeMap for Map<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result {
        if !self.entries.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        write_key(self.out, key)?;
        let key_end = self.out.len();
        let fixed = is_field_name::<T>();
        if fixed {
            self.prev = None;
        } else {
            let text = key_text(&self.out[start..key_end])?;
            if self.prev.as_deref().is_some_and(|prev| text.as_ref() < prev) {
                self.in_order = false;
            }
            let prev = self.prev.get_or_insert_with(Vec::new);
            prev.clear();
            prev.extend_from_slice(&text);
        }
        self.key = Some((fixed, start, key_end));
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        let (fixed, start, key_end) = self
            .key
            .take()
            .ok_or_else(|| serde::ser::Error::custom("canonical JSON: a map value came without its key"))?;
        self.out.push(b':');
        value.serialize(Canonical { out: &mut *self.out })?;
        self.entries.push(Entry {
            fixed,
            start,
            key_end,
            end: self.out.len(),
        });
        Ok(())
    }
    fn end(self) -> Result {
        if !self.in_order {
            let texts = self
                .entries
                .iter()
                .map(|e| key_text(&self.out[e.start..e.key_end]).map(std::borrow::Cow::into_owned))
                .collect::<Result<Vec<_>>>()?;
            let mut order: Vec<usize> = (0..self.entries.len()).collect();
            // Sort each run between fixed entries; stable, so duplicate keys
            // keep the order they came in, as serde_json would write them.
            let mut run = 0;
            for i in 0..=self.entries.len() {
                if self.entries.get(i).is_none_or(|e| e.fixed) {
                    order[run..i].sort_by(|&a, &b| texts[a].cmp(&texts[b]));
                    run = i + 1;
                }
            }
            let written = self.out.split_off(self.start);
            for (n, &i) in order.iter().enumerate() {
                if n > 0 {
                    self.out.push(b',');
                }
                let e = &self.entries[i];
                self.out
                    .extend_from_slice(&written[e.start - self.start..e.end - self.start]);
            }
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Whether a map key of type `K` is one of serde's own field names or tags
/// (always `&'static str`, so `K` is `str`) rather than a map's key (`String`,
/// `&str`, a number...).
fn is_field_name<K: ?Sized>() -> bool {
    // `type_name` is meant for diagnostics, but for `str` it has only ever been
    // "str"; the flatten tests in tests/canonical.rs fail if that changes.
    std::any::type_name::<K>() == "str"
}

/// Write a map key as serde_json writes it: quoted and escaped.
///
/// serde_json decides which keys are allowed and how a number or bool key is
/// quoted, so the key goes through serde_json's own map, which writes `{` and
/// then the key; the `{` is taken out again.
fn write_key<T: ?Sized + Serialize>(out: &mut Vec<u8>, key: &T) -> Result {
    let brace = out.len();
    // The map is left unfinished on purpose: only the key was wanted.
    json(out).serialize_map(None)?.serialize_key(key)?;
    out.remove(brace);
    Ok(())
}

/// The text of a written key, the order of which is the order of its entry:
/// the key's bytes without quotes, unescaped when it has escapes.
fn key_text(written: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    match written {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Ok(std::borrow::Cow::Borrowed(inner)),
        _ => {
            let text: String = serde_json::from_slice(written)?;
            Ok(std::borrow::Cow::Owned(text.into_bytes()))
        }
    }
}
