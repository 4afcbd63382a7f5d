//! Prompt chaining (issue 18): a step's templates read the outputs of the
//! steps upstream of it by name (`{{ steps.copy.text }}`,
//! `{{ steps.copy.json.headline }}`), its inputs or their ancestors; the spec
//! check refuses a reference to a missing or non-upstream step, and provenance
//! records the prompt as resolved.

use std::path::Path;

use creative::campaign::spec::{CampaignOptions, CampaignOutcome, Format, Registry, Spec, SpecErrorKind};
use creative::engine::Status;
use creative_testkit::{Config, LoopbackServer};

use crate::common;
use common::temp_dir;

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

async fn run(spec: &str, out: &Path) -> CampaignOutcome {
    let spec = Spec::parse(spec, Format::Toml, "chain.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        ..CampaignOptions::default()
    };
    campaign.start(opts).unwrap().wait().await.unwrap()
}

fn provider(server: &LoopbackServer) -> String {
    static KEY: std::sync::Once = std::sync::Once::new();
    KEY.call_once(|| std::env::set_var("CREATIVE_CHAIN_TEST_KEY", "sk-loopback"));
    format!(
        "[providers.llm]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"CREATIVE_CHAIN_TEST_KEY\"\ntimeout_s = 5.0\n",
        server.base_url()
    )
}

/// A copywriter step answering JSON, and a visual whose prompt is its headline.
fn chained_spec(provider: &str) -> String {
    format!(
        r#"
name = "chain"
concurrency = 2
{provider}
[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "copy"
kind = "generate"
task = "text"
providers = ["llm"]
prompt = "Write a headline for the {{{{ product }}}} as JSON."
gates = [{{ kind = "text", json_schema = {{ type = "object", required = ["headline", "mood"], properties = {{ headline = {{ type = "string" }}, mood = {{ type = "string" }} }} }} }}]
on_gate_fail = "fail"

[[steps]]
name = "hero"
kind = "generate"
inputs = ["copy"]
providers = ["llm"]
prompt = "poster: {{{{ steps.copy.json.headline }}}}, {{{{ steps.copy.json.mood }}}} light, by {{{{ steps.copy.model }}}}"
size = "64x64"
"#
    )
}

fn manifest_prompts(out: &Path, step: &str) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let mut prompts = Vec::new();
    for a in m["assets"].as_array().unwrap() {
        if a["step"] == step {
            prompts.push(
                a["provenance"]["params"]["prompt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    prompts.sort();
    prompts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_prompt_reads_json_fields_of_the_upstream_text_step_and_provenance_keeps_it_resolved() {
    let server = LoopbackServer::start(
        0,
        Config {
            size: Some((64, 64)),
            ..Config::default()
        },
    )
    .await
    .unwrap();
    server.respond_to_chat(|body| {
        let prompt = body["messages"][0]["content"].as_str().unwrap_or_default().to_string();
        let product = if prompt.contains("mug") { "mug" } else { "lamp" };
        // Wrapped in a code fence, as chat models often do.
        format!("```json\n{{\"headline\": \"The {product} that keeps up\", \"mood\": \"dawn\"}}\n```")
    });
    let dir = temp_dir("chain-e2e");
    let out = dir.join("out");
    let done = run(&chained_spec(&provider(&server)), &out).await;
    assert_eq!(done.outcome.status, Status::Succeeded, "{:?}", done.report.failures);
    assert_eq!(server.chat_requests().len(), 2, "one copy per product");
    // The image calls were generations, not edits of the copy: the text fed the
    // prompt, not the provider's inputs (the loopback serves no edits route).
    assert_eq!(server.stats().generations, 2);
    assert_eq!(
        manifest_prompts(&out, "hero"),
        vec![
            "poster: The lamp that keeps up, dawn light, by gpt-4o-mini".to_string(),
            "poster: The mug that keeps up, dawn light, by gpt-4o-mini".to_string(),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_stand_in_chains_plain_text_into_the_next_prompt() {
    let spec = r#"
name = "chain-offline"
[providers.standin]
kind = "procedural"
[matrix]
product = ["mug"]
[[steps]]
name = "script"
kind = "generate"
task = "text"
providers = ["standin"]
prompt = "a voice-over line for the {{ product }}"
[[steps]]
name = "visual"
kind = "generate"
inputs = ["script"]
providers = ["standin"]
prompt = "illustrate: {{ steps.script.text }}"
size = "32x32"
[output]
steps = ["script", "visual"]
"#;
    let dir = temp_dir("chain-offline");
    let out = dir.join("out");
    let done = run(spec, &out).await;
    assert_eq!(done.outcome.status, Status::Succeeded, "{:?}", done.report.failures);
    let script = std::fs::read_dir(out.join("script"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    let prompts = manifest_prompts(&out, "visual");
    assert_eq!(prompts, vec![format!("illustrate: {script}")]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_error(spec: &str) -> creative::campaign::spec::SpecError {
    let spec = Spec::parse(spec, Format::Toml, "chain.toml").unwrap();
    match spec.build(&registry(), ".") {
        Ok(_) => panic!("the spec built"),
        Err(e) => e,
    }
}

const TWO_STEPS: &str = r#"
name = "chain-check"
[providers.standin]
kind = "procedural"
[[steps]]
name = "copy"
kind = "generate"
task = "text"
providers = ["standin"]
prompt = "a headline"
gates = [{ kind = "text", json_schema = { type = "object", properties = { headline = { type = "string" } }, additionalProperties = false } }]
"#;

#[test]
fn a_reference_to_a_step_that_does_not_exist_is_a_check_error_naming_the_prompt() {
    let e = check_error(&format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"{{{{ steps.coppy.text }}}}\"\n"
    ));
    assert_eq!(e.kind, SpecErrorKind::UnknownStep, "{e}");
    assert_eq!(e.path, "steps[1].prompt", "{e}");
    assert!(
        e.message.contains("names no step `coppy`; steps are: copy, hero"),
        "{e}"
    );
}

#[test]
fn a_reference_to_a_step_that_is_not_an_input_is_a_check_error_saying_what_to_add() {
    let e = check_error(&format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"standin\"]\nnegative_prompt = \"not {{{{ steps.copy.text }}}}\"\nprompt = \"a mug\"\n"
    ));
    assert_eq!(e.kind, SpecErrorKind::UnknownStep, "{e}");
    assert_eq!(e.path, "steps[1].negative_prompt", "{e}");
    assert!(
        e.message
            .contains("not upstream of step `hero`: add \"copy\" to its inputs"),
        "{e}"
    );
}

#[test]
fn a_json_field_the_upstream_schema_does_not_declare_is_a_check_error() {
    let e = check_error(&format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"{{{{ steps.copy.json.headlin }}}}\"\n"
    ));
    assert_eq!(e.path, "steps[1].prompt", "{e}");
    assert!(
        e.message.contains("declares no field `headlin`; it declares: headline"),
        "{e}"
    );
}

#[test]
fn a_step_reading_its_own_output_is_a_check_error() {
    let e = check_error(&format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"{{{{ steps.hero.text }}}}\"\n"
    ));
    assert!(e.message.contains("reads step `hero`'s own output"), "{e}");
}

#[test]
fn a_valid_chain_checks_and_its_dry_run_shows_the_prompt_with_placeholders() {
    let spec = format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"{{{{ steps.copy.json.headline | upper }}}}\"\n"
    );
    let spec = Spec::parse(&spec, Format::Toml, "chain.toml").unwrap();
    let c = spec.build(&registry(), ".").unwrap();
    let plan = c.plan();
    assert_eq!(plan.generations, 2, "copy and hero");
    let hero = plan.jobs[0].requests.iter().find(|r| r.step == "hero").unwrap();
    assert_eq!(hero.request["prompt"], "‹STEPS.COPY.JSON.HEADLINE›");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_reads_the_text_of_an_ancestor_that_is_not_its_input() {
    let spec = r#"
name = "chain-ancestor"
[providers.standin]
kind = "procedural"
[matrix]
product = ["mug", "lamp"]
[[steps]]
name = "script"
kind = "generate"
task = "text"
providers = ["standin"]
prompt = "a voice-over line for the {{ product }}"
[[steps]]
name = "visual"
kind = "generate"
inputs = ["script"]
providers = ["standin"]
prompt = "illustrate: {{ steps.script.text }}"
size = "32x32"
[[steps]]
name = "caption"
kind = "generate"
task = "text"
inputs = ["visual"]
providers = ["standin"]
prompt = "a caption for the {{ product }} picture, echoing: {{ steps.script.text }}"
[output]
steps = ["script", "visual", "caption"]
"#;
    let dir = temp_dir("chain-ancestor");
    let out = dir.join("out");
    let done = run(spec, &out).await;
    assert_eq!(done.outcome.status, Status::Succeeded, "{:?}", done.report.failures);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let assets = m["assets"].as_array().unwrap();
    for product in ["mug", "lamp"] {
        let of = |step: &str| {
            assets
                .iter()
                .find(|a| a["step"] == step && a["vars"]["product"] == product)
                .unwrap_or_else(|| panic!("no {step} for {product}"))
        };
        let script = std::fs::read_to_string(out.join(of("script")["path"].as_str().unwrap())).unwrap();
        assert_eq!(
            of("caption")["provenance"]["params"]["prompt"],
            format!("a caption for the {product} picture, echoing: {script}"),
            "the caption reads its grandparent's text, of its own job"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reference_to_an_ancestor_checks_and_its_dry_run_shows_the_placeholder() {
    let spec = format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"a mug\"\n[[steps]]\nname = \"banner\"\nkind = \"generate\"\ninputs = [\"hero\"]\nproviders = [\"standin\"]\nprompt = \"banner: {{{{ steps.copy.json.headline }}}}\"\n"
    );
    let spec = Spec::parse(&spec, Format::Toml, "chain.toml").unwrap();
    let c = spec.build(&registry(), ".").unwrap();
    let plan = c.plan();
    let banner = plan.jobs[0].requests.iter().find(|r| r.step == "banner").unwrap();
    assert_eq!(banner.request["prompt"], "banner: ‹steps.copy.json.headline›");
}

#[test]
fn a_json_field_an_ancestor_s_schema_does_not_declare_is_a_check_error() {
    let e = check_error(&format!(
        "{TWO_STEPS}[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"a mug\"\n[[steps]]\nname = \"banner\"\nkind = \"generate\"\ninputs = [\"hero\"]\nproviders = [\"standin\"]\nprompt = \"{{{{ steps.copy.json.headlin }}}}\"\n"
    ));
    assert_eq!(e.path, "steps[2].prompt", "{e}");
    assert!(e.message.contains("declares no field `headlin`"), "{e}");
}

#[test]
fn a_reference_to_a_sibling_that_is_not_upstream_is_still_a_check_error() {
    let e = check_error(&format!(
        "{TWO_STEPS}[[steps]]\nname = \"side\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"a mug\"\n[[steps]]\nname = \"hero\"\nkind = \"generate\"\ninputs = [\"copy\"]\nproviders = [\"standin\"]\nprompt = \"{{{{ steps.side.text }}}}\"\n"
    ));
    assert_eq!(e.kind, SpecErrorKind::UnknownStep, "{e}");
    assert_eq!(e.path, "steps[2].prompt", "{e}");
    assert!(
        e.message
            .contains("`{{ steps.side.text }}` reads step `side`, which is not upstream of step `hero`"),
        "{e}"
    );
}
