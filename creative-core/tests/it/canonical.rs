//! Hash keys do not depend on serde_json's map order.
//!
//! The `c2pa` feature turns on serde_json's `preserve_order` for the whole
//! build, so `serde_json::Map` keeps insertion order there and sorts keys
//! everywhere else. The keys below were computed with `serde_json::to_vec` in a
//! build without `preserve_order` (before the canonical writer existed); they
//! must come out the same in either build, or a cache or resume made by one
//! build misses in the other. Run this file both ways:
//! `cargo test -p creative-core --test canonical` and the same with
//! `--features serde_json/preserve_order`.

use std::collections::BTreeMap;

use creative_core::job::{Job, Vars};
use creative_core::request::{Request, Task};
use creative_core::store::cache_key;
use serde_json::{json, Map, Value};

/// An object whose keys are inserted out of order, with a nested object (also
/// out of order) and an array of objects.
fn unsorted_object() -> Value {
    let mut inner = Map::new();
    inner.insert("zulu".into(), json!(3));
    inner.insert("Alpha".into(), json!("upper sorts first"));
    inner.insert("mike".into(), Value::Null);
    let mut outer = Map::new();
    outer.insert("palette".into(), Value::Object(inner.clone()));
    outer.insert("brand".into(), json!("acme"));
    outer.insert(
        "layers".into(),
        Value::Array(vec![Value::Object(inner), json!([1.5, true])]),
    );
    outer.insert("émoji \"quoted\"".into(), json!("\u{1F600}"));
    outer.insert("a".into(), json!(-7));
    Value::Object(outer)
}

fn job_vars() -> Vars {
    let mut vars = BTreeMap::new();
    vars.insert("product".to_string(), json!("mug"));
    vars.insert("style".to_string(), unsorted_object());
    vars
}

fn request() -> Request {
    let mut r = Request::new(Task::Image, "a mug on a table");
    r.model = Some("dall-e-3".into());
    r.params.seed = Some(42);
    r.params.width = Some(1024);
    r.raw.insert("style_preset".into(), json!("photographic"));
    r.raw.insert("extra".into(), unsorted_object());
    r.raw.insert("cfg".into(), json!({"b": 1, "a": {"d": 2, "c": 3}}));
    r
}

/// The canonical JSON of `job_vars()`: what `serde_json::to_vec` wrote in a
/// build without `preserve_order`.
const JOB_VARS_JSON: &str = r#"{"product":"mug","style":{"a":-7,"brand":"acme","layers":[{"Alpha":"upper sorts first","mike":null,"zulu":3},[1.5,true]],"palette":{"Alpha":"upper sorts first","mike":null,"zulu":3},"émoji \"quoted\"":"😀"}}"#;

/// The same for `request()`.
const REQUEST_JSON: &str = r#"{"task":"image","model":"dall-e-3","prompt":"a mug on a table","params":{"width":1024,"seed":42},"raw":{"cfg":{"a":{"c":3,"d":2},"b":1},"extra":{"a":-7,"brand":"acme","layers":[{"Alpha":"upper sorts first","mike":null,"zulu":3},[1.5,true]],"palette":{"Alpha":"upper sorts first","mike":null,"zulu":3},"émoji \"quoted\"":"😀"},"style_preset":"photographic"}}"#;

#[test]
fn a_job_key_over_an_object_inserted_out_of_order_is_the_key_of_a_build_without_preserve_order() {
    let vars = job_vars();
    assert_eq!(
        String::from_utf8(creative_core::canonical::to_vec(&vars).unwrap()).unwrap(),
        JOB_VARS_JSON
    );
    assert_eq!(Job::key_of(&vars), "f13f131502d6201b");
    assert_eq!(Job::from_vars(vars).key(), "f13f131502d6201b");
}

#[test]
fn a_cache_key_over_raw_fields_inserted_out_of_order_is_the_key_of_a_build_without_preserve_order() {
    let r = request();
    assert_eq!(
        String::from_utf8(creative_core::canonical::to_vec(&r).unwrap()).unwrap(),
        REQUEST_JSON
    );
    assert_eq!(
        cache_key("openai", "fp", &r),
        "1941701cf6d947a2f0fd0c9ba1dbb824626ed0d2dcb4e6b5a0b362f22f6d2e8d"
    );
}

#[test]
fn the_same_raw_fields_in_another_insertion_order_give_the_same_cache_key() {
    let a = request();
    let mut b = Request::new(Task::Image, "a mug on a table");
    b.model = a.model.clone();
    b.params = a.params.clone();
    for (k, v) in a.raw.iter().rev() {
        b.raw.insert(k.clone(), v.clone());
    }
    assert_eq!(cache_key("openai", "fp", &a), cache_key("openai", "fp", &b));
}

/// Every shape serde has, with any map in it already sorted: serde_json's own
/// bytes are then canonical in either build, and the writer must match them.
#[derive(serde::Serialize)]
struct Shapes {
    unit: (),
    unit_struct: UnitStruct,
    newtype: Newtype,
    tuple: (u8, i64, &'static str),
    tuple_struct: TupleStruct,
    variants: Vec<Variant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    some: Option<f32>,
    floats: Vec<f64>,
    big: (u128, i128),
    chars: Vec<char>,
    #[serde(with = "bytes_as_bytes")]
    bytes: Vec<u8>,
    escapes: &'static str,
    int_keys: BTreeMap<i32, bool>,
    bool_keys: BTreeMap<bool, u8>,
    char_keys: BTreeMap<char, u8>,
    object: Value,
    empty_map: BTreeMap<String, u8>,
    empty_seq: Vec<u8>,
    nested: Vec<BTreeMap<String, Vec<BTreeMap<String, Value>>>>,
}

#[derive(serde::Serialize)]
struct UnitStruct;

#[derive(serde::Serialize)]
struct Newtype(String);

#[derive(serde::Serialize)]
struct TupleStruct(u8, Option<u8>);

#[derive(serde::Serialize)]
enum Variant {
    Unit,
    Newtype(u32),
    Tuple(u8, String),
    Struct { x: i8, y: Vec<u8> },
}

mod bytes_as_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }
}

fn sorted_object() -> Value {
    let mut m = Map::new();
    m.insert("a".into(), json!([1, {"inner": null}]));
    m.insert("b".into(), json!(2.5));
    m.insert("c".into(), json!("three"));
    Value::Object(m)
}

#[test]
fn canonical_bytes_of_input_with_sorted_maps_equal_serde_json_to_vec() {
    let shapes = Shapes {
        unit: (),
        unit_struct: UnitStruct,
        newtype: Newtype("n".into()),
        tuple: (1, -2, "three"),
        tuple_struct: TupleStruct(4, None),
        variants: vec![
            Variant::Unit,
            Variant::Newtype(5),
            Variant::Tuple(6, "six".into()),
            Variant::Struct { x: -7, y: vec![8, 9] },
        ],
        skipped: None,
        some: Some(0.1),
        floats: vec![0.0, -0.0, 1e300, 1.5e-7, f64::NAN, f64::INFINITY],
        big: (u128::MAX, i128::MIN),
        chars: vec!['a', '"', '\n', '\u{1F600}'],
        bytes: vec![0, 127, 255],
        escapes: "tab\tquote\"backslash\\nul\u{0}del\u{7f}",
        int_keys: [(-3, true), (5, false)].into_iter().collect(),
        bool_keys: [(false, 0), (true, 1)].into_iter().collect(),
        char_keys: [('x', 0), ('y', 1)].into_iter().collect(),
        object: sorted_object(),
        empty_map: BTreeMap::new(),
        empty_seq: vec![],
        nested: vec![[(
            "k".to_string(),
            vec![[("v".to_string(), sorted_object())].into_iter().collect()],
        )]
        .into_iter()
        .collect()],
    };
    let canonical = creative_core::canonical::to_vec(&shapes).unwrap();
    assert_eq!(
        String::from_utf8(canonical).unwrap(),
        String::from_utf8(serde_json::to_vec(&shapes).unwrap()).unwrap()
    );
    for v in [
        json!(null),
        json!(true),
        json!(-1),
        json!(u64::MAX),
        json!("s"),
        json!([]),
        json!({}),
    ] {
        assert_eq!(
            creative_core::canonical::to_vec(&v).unwrap(),
            serde_json::to_vec(&v).unwrap()
        );
    }
}

#[test]
fn a_hash_map_is_written_as_the_sorted_map_with_its_entries() {
    let pairs: Vec<(String, u32)> = (0..64).map(|i| (format!("key{}", (i * 37) % 64), i)).collect();
    let hashed: std::collections::HashMap<String, u32> = pairs.iter().cloned().collect();
    let sorted: BTreeMap<String, u32> = pairs.into_iter().collect();
    assert_eq!(
        creative_core::canonical::to_vec(&hashed).unwrap(),
        serde_json::to_vec(&sorted).unwrap()
    );
}

#[test]
fn map_keys_sort_by_their_text_not_their_number() {
    // "10" < "9" as text: the order a `serde_json::Map` of the same keys has.
    let m: BTreeMap<u32, u8> = [(9, 0), (10, 1)].into_iter().collect();
    assert_eq!(creative_core::canonical::to_vec(&m).unwrap(), br#"{"10":1,"9":0}"#);
}

#[test]
fn a_map_key_serde_json_refuses_is_the_same_error_not_a_panic() {
    let m: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
    let ours = creative_core::canonical::to_vec(&m).unwrap_err();
    let theirs = serde_json::to_vec(&m).unwrap_err();
    assert_eq!(ours.to_string(), theirs.to_string());
}

/// Whether this build's serde_json sorts a `Map` (no `preserve_order`).
fn serde_json_sorts_maps() -> bool {
    let mut m = Map::new();
    m.insert("b".into(), Value::Null);
    m.insert("a".into(), Value::Null);
    m.keys().next().map(String::as_str) == Some("a")
}

fn unsorted_settings() -> Map<String, Value> {
    let mut inner = Map::new();
    inner.insert("b".into(), json!(1));
    inner.insert("a".into(), json!(2));
    let mut m = Map::new();
    m.insert("zulu".into(), json!(1));
    m.insert("Alpha".into(), json!(2));
    m.insert("mike".into(), Value::Object(inner));
    m
}

#[derive(serde::Serialize)]
struct Flat {
    name: String,
    #[serde(flatten)]
    settings: Map<String, Value>,
    after: u8,
}

#[derive(serde::Serialize)]
#[serde(tag = "type")]
enum Tagged {
    Settings(Map<String, Value>),
    Step { zeta: u8, alpha: u8 },
}

#[test]
fn a_flattened_map_is_sorted_between_the_fields_of_its_struct_which_keep_their_order() {
    let flat = Flat {
        name: "hero".into(),
        settings: unsorted_settings(),
        after: 9,
    };
    let bytes = creative_core::canonical::to_vec(&flat).unwrap();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        r#"{"name":"hero","Alpha":2,"mike":{"a":2,"b":1},"zulu":1,"after":9}"#
    );
    if serde_json_sorts_maps() {
        assert_eq!(bytes, serde_json::to_vec(&flat).unwrap());
    }
}

#[test]
fn an_internally_tagged_enum_keeps_its_tag_first_and_its_struct_fields_in_order() {
    let cases = [
        (
            Tagged::Settings(unsorted_settings()),
            r#"{"type":"Settings","Alpha":2,"mike":{"a":2,"b":1},"zulu":1}"#,
        ),
        (
            Tagged::Step { zeta: 1, alpha: 2 },
            r#"{"type":"Step","zeta":1,"alpha":2}"#,
        ),
    ];
    for (value, expected) in cases {
        let bytes = creative_core::canonical::to_vec(&value).unwrap();
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        if serde_json_sorts_maps() {
            assert_eq!(bytes, serde_json::to_vec(&value).unwrap());
        }
    }
}
