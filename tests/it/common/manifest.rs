//! Comparing manifests of different runs. An asset's entry records the run
//! that made it (latency, attempt, whether the cache served it, when its step
//! finished) and the manifest the run that wrote it (start and end), so two
//! runs that delivered the same things differ in exactly those fields: they
//! are checked for plausibility here, then set aside, and everything else must
//! match.

// Each test binary that includes `common` uses some of these.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// The generations a manifest records, by how they were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generations {
    /// Made by a provider call in the run that recorded them.
    pub fresh: usize,
    /// Served from the cache.
    pub cached: usize,
}

/// The fields a provenance records about the run that made its artifact.
const RUN_PROVENANCE: [&str; 3] = ["latency_ms", "attempt", "cached"];

/// `manifest` (the text of a `manifest.json`) without its run-specific fields:
/// the run's `started_at` and `finished_at`, each asset's `finished_at`, and
/// `latency_ms`, `attempt` and `cached` in every provenance (asset and source).
pub fn without_run_fields(manifest: &str) -> Value {
    let mut m: Value = serde_json::from_str(manifest).expect("manifest.json is JSON");
    let top = m.as_object_mut().expect("a manifest is an object");
    top.remove("started_at");
    top.remove("finished_at");
    for a in top
        .get_mut("assets")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let a = a.as_object_mut().expect("an asset is an object");
        a.remove("finished_at");
        strip_provenance(a.get_mut("provenance"));
        for s in a.get_mut("sources").and_then(Value::as_array_mut).into_iter().flatten() {
            strip_provenance(s.get_mut("provenance"));
        }
    }
    m
}

fn strip_provenance(p: Option<&mut Value>) {
    if let Some(p) = p.and_then(Value::as_object_mut) {
        for k in RUN_PROVENANCE {
            p.remove(k);
        }
    }
}

/// Assert that two manifests are equal but for their run-specific fields,
/// printing both when they are not.
pub fn assert_same_but_run_fields(a: &str, b: &str, what: &str) {
    let (na, nb) = (without_run_fields(a), without_run_fields(b));
    assert!(
        na == nb,
        "{what}: manifests differ beyond their run-specific fields:\n--- first\n{a}\n--- second\n{b}"
    );
}

fn parse_time(v: &Value, what: &str) -> SystemTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is missing or not a string: {v}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{what} `{s}` is not UTC RFC 3339: {e}"))
}

/// Assert that `manifest` (the text of a `manifest.json` written by runs that
/// all lay between `from` and `to`) records its run-specific fields and that
/// they are plausible: the library version; a start and an end within the
/// window, in order; for every asset, when its step finished, within the
/// window and before the manifest's end; for every generation a provider made
/// (asset or source), `attempt` >= 1 and `latency_ms` > 0, and for one the
/// cache served, `attempt` 0. Returns how many of each it checked, for the
/// caller to hold to what its run should have done.
pub fn assert_run_fields_plausible(manifest: &str, from: SystemTime, to: SystemTime) -> Generations {
    let m: Value = serde_json::from_str(manifest).expect("manifest.json is JSON");
    assert_eq!(
        m["library_version"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "the manifest names the library's version"
    );
    // Times are written to the millisecond, truncated.
    let from = from - Duration::from_millis(1);
    let within = |t: SystemTime, what: &str| {
        assert!(
            from <= t && t <= to,
            "{what} ({t:?}) lies outside the run ({from:?} to {to:?})"
        );
    };
    let started = parse_time(&m["started_at"], "the manifest's started_at");
    let finished = parse_time(&m["finished_at"], "the manifest's finished_at");
    within(started, "started_at");
    within(finished, "finished_at");
    assert!(started <= finished, "the run ended before it started");
    let mut seen = Generations { fresh: 0, cached: 0 };
    let assets = m["assets"].as_array().expect("assets is an array");
    for (i, a) in assets.iter().enumerate() {
        let at = format!("asset {i} ({} step {})", a["job"], a["step"]);
        let done = parse_time(&a["finished_at"], &format!("{at}: finished_at"));
        within(done, &format!("{at}: finished_at"));
        assert!(done <= finished, "{at} finished after the manifest was written");
        let sources = a["sources"].as_array().into_iter().flatten();
        for (j, p) in std::iter::once(&a["provenance"])
            .chain(sources.map(|s| &s["provenance"]))
            .enumerate()
        {
            let at = if j == 0 {
                at.clone()
            } else {
                format!("{at} source {}", j - 1)
            };
            let latency = p["latency_ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("{at}: latency_ms is missing: {p}"));
            let attempt = p["attempt"]
                .as_u64()
                .unwrap_or_else(|| panic!("{at}: attempt is missing: {p}"));
            assert!(latency.is_finite() && latency >= 0.0, "{at}: latency_ms {latency}");
            if p["provider"].is_null() {
                continue;
            }
            if p["cached"].as_bool() == Some(true) {
                assert_eq!(attempt, 0, "{at}: served from the cache, yet attempt {attempt}");
                seen.cached += 1;
            } else {
                assert!(attempt >= 1, "{at}: a fresh generation with attempt {attempt}");
                assert!(latency > 0.0, "{at}: a fresh generation with latency_ms {latency}");
                seen.fresh += 1;
            }
        }
    }
    seen
}
