//! The runner's command line as a new user meets it: help, version, typos,
//! pipes, completions, the schema and reference, init, explain, static checks,
//! the plan against the budget, progress lines, the log and status.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common;
use common::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_creative");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn creative(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A folder with `text` saved as `campaign.toml`.
fn with_spec(name: &str, text: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("campaign.toml"), text).unwrap();
    dir
}

const TWO_CHANNELS: &str = r#"
name = "channels"
[providers.art]
kind = "procedural"
[matrix]
product = ["mug", "lamp"]
[[matrix.zip]]
channel = ["square", "story"]
aspect = ["1:1", "9:16"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }}"
size = "64x64"
"#;

#[test]
fn version_and_subcommand_help_are_the_subcommands_own() {
    let dir = temp_dir("help");
    let o = creative(&dir, &["--version"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), format!("creative {}", env!("CARGO_PKG_VERSION")));
    let o = creative(&dir, &["run", "--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    assert!(help.contains("Usage: creative run [OPTIONS] <SPEC>"), "{help}");
    assert!(help.contains("--dry-run"), "{help}");
    assert!(
        !help.contains("creative merge"),
        "run's help is not the global usage: {help}"
    );
    assert!(
        help.contains("130  cancelled"),
        "run's help documents the exit codes: {help}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_mistyped_option_suggests_the_right_one_exits_2_and_does_not_repeat_the_whole_usage() {
    let dir = with_spec("typo", TWO_CHANNELS);
    let o = creative(&dir, &["run", "campaign.toml", "--dryrun"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("a similar argument exists: '--dry-run'"), "{err}");
    assert!(err.lines().count() < 10, "{err}");
    let o = creative(&dir, &["chek", "campaign.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'check'"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dry_run_piped_into_a_reader_that_stops_early_exits_without_a_panic() {
    let dir = with_spec(
        "pipe",
        &TWO_CHANNELS.replace("product = [\"mug\", \"lamp\"]", "product = { range = 20000 }"),
    );
    let text = std::fs::read_to_string(dir.join("campaign.toml")).unwrap();
    // A long plan: 20,000 products is enough to outrun a pipe buffer.
    let text = text.replace(
        "product = { range = 20000 }",
        &format!(
            "product = [{}]",
            (0..20000).map(|i| format!("\"p{i}\"")).collect::<Vec<_>>().join(",")
        ),
    );
    std::fs::write(dir.join("campaign.toml"), text).unwrap();
    for _ in 0..3 {
        let mut child = Command::new(BIN)
            .current_dir(&dir)
            .args(["run", "campaign.toml", "--dry-run", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("{\"index\":0"), "{first}");
        // The reader is dropped here: the rest of the plan meets a closed pipe.
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_are_printed_for_bash() {
    let dir = temp_dir("completions");
    let o = creative(&dir, &["completions", "bash"]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.contains("_creative()"), "{}", &s[..s.len().min(400)]);
    assert!(s.contains("--dry-run"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_checked_in_reference_and_schema_are_what_the_runner_generates() {
    let dir = temp_dir("sync");
    let md = stdout(&creative(&dir, &["schema", "--format", "markdown"]));
    let on_disk = std::fs::read_to_string(root().join("docs/spec.md")).unwrap();
    assert!(
        md == on_disk,
        "docs/spec.md is stale: run `cargo run -- schema --format markdown > docs/spec.md`"
    );
    let json = stdout(&creative(&dir, &["schema"]));
    let on_disk = std::fs::read_to_string(root().join("examples/specs/creative.schema.json")).unwrap();
    assert!(
        json == on_disk,
        "examples/specs/creative.schema.json is stale: run `cargo run -- schema > examples/specs/creative.schema.json`"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("examples/specs/creative.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn toml_json(text: &str) -> serde_json::Value {
    toml::from_str(text).unwrap()
}

#[test]
fn every_example_spec_names_the_schema_and_is_valid_against_it() {
    let v = schema();
    for name in [
        "product_campaign.toml",
        "social_post.toml",
        "comfyui_campaign.toml",
        "video_spot.toml",
    ] {
        let text = std::fs::read_to_string(root().join("examples/specs").join(name)).unwrap();
        assert!(text.starts_with("#:schema ./creative.schema.json\n"), "{name}");
        let doc = toml_json(&text);
        let errors: Vec<String> = v
            .iter_errors(&doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn the_schema_refuses_a_misspelt_setting_of_a_step_kind_and_a_rendition_given_as_a_string() {
    let v = schema();
    let ok = toml_json(
        "name = \"x\"\n[[steps]]\nname = \"r\"\nkind = \"renditions\"\nrenditions = [{ aspect = \"9:16\" }]\n",
    );
    assert!(
        v.is_valid(&ok),
        "{:?}",
        v.iter_errors(&ok).map(|e| e.to_string()).collect::<Vec<_>>()
    );
    let typo = toml_json("name = \"x\"\n[[steps]]\nname = \"r\"\nkind = \"reframe\"\naspect_varr = \"aspect\"\n");
    assert!(!v.is_valid(&typo));
    let string = toml_json("name = \"x\"\n[[steps]]\nname = \"r\"\nkind = \"renditions\"\nrenditions = [\"9:16\"]\n");
    assert!(!v.is_valid(&string));
}

#[test]
fn a_rendition_written_as_a_string_is_explained_in_spec_terms_not_a_rust_type() {
    let dir = with_spec(
        "rust-names",
        &format!("{TWO_CHANNELS}\n[[steps]]\nname = \"sizes\"\nkind = \"renditions\"\ninputs = [\"hero\"]\nrenditions = [\"9:16\"]\n"),
    );
    let o = creative(&dir, &["check", "campaign.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(!err.contains("struct"), "{err}");
    assert!(!err.contains("RenditionSpec"), "{err}");
    assert!(err.contains("expected a table such as { aspect = \"9:16\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_prints_a_kinds_settings_and_suggests_a_near_name() {
    let dir = temp_dir("explain");
    let o = creative(&dir, &["explain", "reframe"]);
    assert!(o.status.success());
    let s = stdout(&o);
    assert!(s.contains("| `aspect_var` | string |"), "{s}");
    assert!(s.contains("| `attention` |"), "{s}");
    let o = creative(&dir, &["explain"]);
    assert!(
        stdout(&o).contains("gate kinds: composite, consistency"),
        "{}",
        stdout(&o)
    );
    let o = creative(&dir, &["explain", "refrme"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did you mean `reframe`?"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_writes_a_starter_that_checks_and_plans_without_an_api_key() {
    for provider in ["procedural", "openai"] {
        let dir = temp_dir("init");
        let o = creative(&dir, &["init", "--provider", provider]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(dir.join("creative.schema.json").exists());
        let o = creative(&dir, &["check", "campaign.toml"]);
        assert!(o.status.success(), "{provider}: {}", stderr(&o));
        let o = creative(&dir, &["run", "campaign.toml", "--dry-run"]);
        assert!(o.status.success(), "{provider}: {}", stderr(&o));
        assert!(stdout(&o).contains("4 jobs x 2 steps"), "{}", stdout(&o));
        let o = creative(&dir, &["init"]);
        assert_eq!(o.status.code(), Some(2), "an existing file is not overwritten");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_misspelt_aspect_var_fails_check_naming_the_variable_and_the_near_one() {
    let dir = with_spec(
        "aspect-var",
        &format!("{TWO_CHANNELS}\n[[steps]]\nname = \"framed\"\nkind = \"reframe\"\ninputs = [\"hero\"]\naspect_var = \"aspcet\"\n"),
    );
    for args in [
        &["check", "campaign.toml"][..],
        &["run", "campaign.toml", "--dry-run"][..],
    ] {
        let o = creative(&dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(
                "steps[1] `framed`: aspect_var = \"aspcet\" names a variable no job defines (did you mean `aspect`?)"
            ),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn image_parameters_from_defaults_reaching_a_text_step_are_a_warning() {
    let text = format!(
        "{}\n[defaults]\nsteps = 30\n[[steps]]\nname = \"copy\"\nkind = \"generate\"\ntask = \"text\"\nproviders = [\"art\"]\nprompt = \"a line for {{{{ product }}}}\"\n",
        TWO_CHANNELS.replace("size = \"64x64\"\n", "")
    );
    let dir = with_spec("ignored", &text);
    let o = creative(&dir, &["check", "campaign.toml"]);
    assert!(o.status.success(), "a warning, not an error: {}", stderr(&o));
    assert!(
        stderr(&o).contains("steps[1] `copy` (task text): text generation does not use `steps` (set in [defaults])"),
        "{}",
        stderr(&o)
    );
    let o = creative(&dir, &["check", "campaign.toml", "--strict"]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_name_without_index_for_several_renditions_is_an_error() {
    let text = format!(
        "{TWO_CHANNELS}\n[[steps]]\nname = \"sizes\"\nkind = \"renditions\"\ninputs = [\"hero\"]\nrenditions = [{{ aspect = \"1:1\" }}, {{ aspect = \"9:16\" }}]\n[output]\nfile_name = \"{{{{ step }}}}/{{{{ product }}}}-{{{{ channel }}}}.{{{{ ext }}}}\"\n"
    );
    let dir = with_spec("collide", &text);
    let o = creative(&dir, &["check", "campaign.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the same name (it makes several per job); add `{{ index }}`"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plan_far_over_its_money_budget_says_where_the_run_would_stop() {
    let text = r#"
name = "huge"
[providers.art]
kind = "procedural"
cost_per_image = 0.04
[matrix]
a = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
b = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
c = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
d = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "{{ a }}{{ b }}{{ c }}{{ d }}"
[budget]
max_cost_usd = 100
"#;
    let dir = with_spec("budget", text);
    let o = creative(&dir, &["run", "campaign.toml", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("10,000 jobs x 1 steps"), "{s}");
    assert!(s.contains("estimated cost $400.0000"), "{s}");
    assert!(
        s.contains("budget.max_cost_usd = $100.00: expected $400.00, worst case $1200.00: EXCEEDED: the run would stop about 25% of the way"),
        "{s}"
    );
    assert!(
        s.contains("the run would stop at budget.max_cost_usd first, about 25% of the way through"),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_whose_stderr_is_not_a_terminal_prints_progress_lines_and_status_reads_the_folder() {
    let dir = with_spec("progress", TWO_CHANNELS);
    let o = creative(&dir, &["run", "campaign.toml", "--out", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("progress: 4/4 jobs (100%) | 0 failed |"), "{err}");
    assert!(err.contains("jobs/s | ETA"), "{err}");
    let s = stdout(&o);
    let summary = s.lines().next().unwrap_or("");
    assert!(summary.starts_with("succeeded: jobs 4"), "the summary comes first: {s}");

    let o = creative(&dir, &["status", "out"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("4 of 4 complete"), "{s}");
    assert!(s.contains("succeeded, ended"), "{s}");
    let o = creative(&dir, &["status", "out", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["campaign"], "channels");
    assert_eq!(v["jobs_complete"], 4);
    assert_eq!(v["last_status"], "succeeded");

    let o = creative(&dir, &["--log-format", "json", "run", "campaign.toml", "--out", "out2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let last = stderr(&o)
        .lines()
        .rfind(|l| l.contains("\"progress\""))
        .unwrap_or("")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
    assert_eq!(v["jobs_done"], 4, "{last}");
    assert_eq!(v["jobs_total"], 4, "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_rust_log_is_reported_through_the_log_itself_as_json() {
    let dir = with_spec("log", TWO_CHANNELS);
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["--log-format", "json", "check", "campaign.toml"])
        .env("RUST_LOG", "creative=[[")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o)
        .lines()
        .find(|l| l.contains("RUST_LOG"))
        .unwrap_or("")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    assert_eq!(v["level"], "WARN", "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}
