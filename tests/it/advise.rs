//! `creative advise` (issue 18) on a real run: a gate no output can pass
//! makes every regeneration round wasted; the advice names the gate and
//! proposes, as a diff of the spec, to flag failures instead.

use std::process::Command;

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

const SPEC: &str = r#"name = "advise"

[providers.art]
kind = "procedural"

[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }}"
size = "32x32"
gates = [{ kind = "sharpness", name = "razor", min_variance = 1e12 }]
on_gate_fail = { action = "regenerate", max = 2 }
"#;

#[test]
fn a_gate_nothing_passes_gets_advice_and_a_diff_that_flags_instead_of_regenerating() {
    let dir = temp_dir("advise");
    std::fs::write(dir.join("campaign.toml"), SPEC).unwrap();
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["run", "campaign.toml", "--out", "out", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "every job fails its gate");
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["advise", "out", "--spec", "campaign.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("gate `razor` failed all 6 checks"), "{text}");
    assert!(
        text.contains("step `hero`: regeneration rounds never produced a passing output"),
        "{text}"
    );
    assert!(
        text.contains("-on_gate_fail = { action = \"regenerate\", max = 2 }\n+on_gate_fail = \"flag\"\n"),
        "{text}"
    );
    // The diff applies, and the spec it makes still checks.
    let diff = &text[text.find("--- campaign.toml").unwrap()..];
    std::fs::write(dir.join("advice.diff"), diff).unwrap();
    if let Ok(p) = Command::new("patch")
        .current_dir(&dir)
        .args(["-p0", "-i", "advice.diff"])
        .output()
    {
        assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stdout));
        let c = Command::new(BIN)
            .current_dir(&dir)
            .args(["check", "campaign.toml"])
            .output()
            .unwrap();
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        assert!(std::fs::read_to_string(dir.join("campaign.toml"))
            .unwrap()
            .contains("on_gate_fail = \"flag\""));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
