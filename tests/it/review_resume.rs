//! Resume after review (issue 18): `creative run --resume` regenerates exactly
//! the rejected assets (a new derived seed, the reviewer's note appended to the
//! prompt) and the steps downstream of them, leaves approved and undecided ones
//! untouched, and the manifest records each decision.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use creative::campaign::review::{append, Decision, Verdict};
use serde_json::Value;

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const SPEC: &str = r#"
name = "review-resume"
[providers.art]
kind = "procedural"
[matrix]
product = ["mug", "lamp", "chair"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }} on a table"
size = "48x48"
[[steps]]
name = "square"
kind = "resize"
inputs = ["hero"]
width = 24
height = 24
[output]
steps = ["hero", "square"]
"#;

fn run(dir: &Path, resume: bool) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(["run", "spec.toml", "--out", "out", "--quiet"]);
    if resume {
        cmd.arg("--resume");
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// (step, product) -> the asset's manifest entry.
fn assets(dir: &Path) -> BTreeMap<(String, String), Value> {
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("out/manifest.json")).unwrap()).unwrap();
    m["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let key = (
                a["step"].as_str().unwrap().to_string(),
                a["vars"]["product"].as_str().unwrap().to_string(),
            );
            (key, a.clone())
        })
        .collect()
}

fn decide(a: &Value, verdict: Verdict, note: Option<&str>, at: u64) -> Decision {
    Decision {
        asset: a["id"].as_str().unwrap().into(),
        job: a["job"].as_str().unwrap().into(),
        step: a["step"].as_str().unwrap().into(),
        verdict,
        note: note.map(str::to_string),
        at,
    }
}

#[test]
fn resume_after_review_regenerates_exactly_the_rejected_assets_with_a_new_seed_and_the_note() {
    let dir = temp_dir("review-resume");
    std::fs::write(dir.join("spec.toml"), SPEC).unwrap();
    run(&dir, false);
    let before = assets(&dir);
    assert_eq!(before.len(), 6);
    let k = |s: &str, p: &str| (s.to_string(), p.to_string());
    append(
        &dir.join("out"),
        &[
            decide(&before[&k("hero", "mug")], Verdict::Approved, None, 1),
            decide(
                &before[&k("hero", "lamp")],
                Verdict::Rejected,
                Some("brighter, {{ no template }}"),
                2,
            ),
            // A rejected rendition regenerates the hero it was made from.
            decide(&before[&k("square", "chair")], Verdict::Rejected, None, 3),
        ],
    )
    .unwrap();
    run(&dir, true);
    let after = assets(&dir);
    assert_eq!(after.len(), 6);
    let changed: Vec<&(String, String)> = before
        .keys()
        .filter(|key| before[*key]["id"] != after[*key]["id"])
        .collect();
    assert_eq!(
        changed,
        vec![
            &k("hero", "chair"),
            &k("hero", "lamp"),
            &k("square", "chair"),
            &k("square", "lamp")
        ],
        "exactly the rejected assets and what is made from them"
    );
    let lamp = &after[&k("hero", "lamp")]["provenance"];
    assert_eq!(
        lamp["params"]["prompt"],
        "a lamp on a table. Reviewer: brighter, {{ no template }}"
    );
    assert_ne!(lamp["seed"], before[&k("hero", "lamp")]["provenance"]["seed"]);
    assert_eq!(
        after[&k("hero", "chair")]["provenance"]["params"]["prompt"],
        "a chair on a table"
    );
    assert_ne!(
        after[&k("hero", "chair")]["provenance"]["seed"],
        before[&k("hero", "chair")]["provenance"]["seed"]
    );
    // The manifest records each decision that holds for an asset it lists.
    assert_eq!(after[&k("hero", "mug")]["review"]["verdict"], "approved");
    assert!(
        after[&k("hero", "lamp")].get("review").is_none(),
        "a new asset, not yet reviewed"
    );
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["review"]["approved"], 1);
    assert_eq!(m["review"]["undecided"], 5);

    // Nothing new decided: a second resume changes nothing.
    run(&dir, true);
    let again = assets(&dir);
    for key in after.keys() {
        assert_eq!(after[key]["id"], again[key]["id"], "{key:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
