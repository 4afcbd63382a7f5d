//! Presets in the engine: what a [`Preset`] sets where a [`GenerateStep`]
//! already set something (preset < picked preset < step), the words around the
//! prompt, the seed policy, gates, and the per-job choice by a variable.

use std::sync::Arc;

use async_trait::async_trait;
use creative_core::{
    Artifact, Dag, Executor, GateCtx, GateError, GenerateStep, Job, Params, Preset, QualityGate, SeedPolicy, Status,
    StepErrorKind, StepState, Task, Verdict,
};
use creative_testkit::fake::{Answer, FakeProvider};

fn fake() -> FakeProvider {
    FakeProvider::new("p", &[Task::Text]).respond(|req, _| Answer::text(req.prompt.clone()))
}

fn step(prompt: &str) -> GenerateStep {
    GenerateStep::new(Task::Text, ["p"], prompt).unwrap()
}

fn raw(pairs: &[(&str, i64)]) -> serde_json::Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect()
}

fn job(pairs: &[(&str, &str)]) -> Job {
    Job::new(pairs.iter().map(|(k, v)| (*k, *v)))
}

fn kit() -> Preset {
    Preset::new("kit")
        .params(&Params {
            style: Some("flat".into()),
            temperature: Some(0.2),
            ..Default::default()
        })
        .model("kit-model")
        .raw(raw(&[("a", 1), ("b", 1)]))
        .prompt_prefix("kit: ")
        .prompt_suffix(" (kit)")
        .negative("kit-negative")
        .seed(SeedPolicy::Fixed(11))
}

#[test]
fn the_step_s_own_settings_win_over_its_preset_whether_set_before_or_after_it() {
    let own = |s: GenerateStep| {
        s.params(&Params {
            temperature: Some(0.9),
            ..Default::default()
        })
        .model("own-model")
        .raw(raw(&[("b", 2), ("c", 2)]))
        .seed_policy(SeedPolicy::Fixed(5))
        .negative("own-negative")
        .unwrap()
    };
    let before = own(step("a {{ x }}")).preset(kit());
    let after = own(step("a {{ x }}").preset(kit()));
    let j = job(&[("x", "mug")]);
    for s in [before, after] {
        let r = s.request_for(&j, None).unwrap();
        assert_eq!(r.model.as_deref(), Some("own-model"));
        assert_eq!(r.params.temperature, Some(0.9));
        // What the step does not set comes from the preset.
        assert_eq!(r.params.style.as_deref(), Some("flat"));
        assert_eq!(r.params.seed, Some(5));
        assert_eq!(r.negative_prompt.as_deref(), Some("own-negative"));
        // Raw fields merge key by key, the step's winning.
        assert_eq!(
            serde_json::Value::Object(r.raw),
            serde_json::json!({ "a": 1, "b": 2, "c": 2 })
        );
        // The step has no words of its own around the prompt: the preset's wrap it.
        assert_eq!(r.prompt, "kit: a mug (kit)");
    }
}

#[test]
fn a_preset_fills_in_what_the_step_leaves_unset() {
    let s = step("a {{ x }}").preset(kit());
    let r = s.request_for(&job(&[("x", "lamp")]), None).unwrap();
    assert_eq!(r.model.as_deref(), Some("kit-model"));
    assert_eq!(r.params.temperature, Some(0.2));
    assert_eq!(r.params.seed, Some(11));
    assert_eq!(r.negative_prompt.as_deref(), Some("kit-negative"));
    assert_eq!(serde_json::Value::Object(r.raw), serde_json::json!({ "a": 1, "b": 1 }));
    assert_eq!(s.resolved_params().seed, Some(11));
    assert_eq!(s.seed_policy_for(&job(&[])).unwrap(), SeedPolicy::Fixed(11));
}

#[test]
fn a_step_s_own_derived_seed_policy_wins_over_a_preset_s_fixed_seed() {
    let s = step("a").preset(kit()).seed_policy(SeedPolicy::Derived);
    assert_eq!(s.seed_policy_for(&job(&[])).unwrap(), SeedPolicy::Derived);
    assert_eq!(s.request_for(&job(&[]), None).unwrap().params.seed, None);
}

#[test]
fn of_two_presets_the_first_wins_where_both_set_something() {
    let second = Preset::new("second")
        .model("second-model")
        .params(&Params {
            max_tokens: Some(9),
            ..Default::default()
        })
        .prompt_prefix("second: ");
    let s = step("a").preset(kit()).preset(second);
    let r = s.request_for(&job(&[]), None).unwrap();
    assert_eq!(r.model.as_deref(), Some("kit-model"));
    assert_eq!(r.params.max_tokens, Some(9));
    assert_eq!(r.prompt, "kit: a (kit)");
}

#[test]
fn bare_params_still_make_a_preset_and_their_seed_fixes_the_policy() {
    let brand = Params {
        width: Some(1024),
        seed: Some(3),
        ..Default::default()
    };
    let s = step("a").size(512, 512).preset(&brand);
    assert_eq!(s.resolved_params().width, Some(512));
    assert_eq!(s.resolved_params().seed, Some(3));
    let s = step("a").preset(brand.clone());
    assert_eq!(s.resolved_params().width, Some(1024));
}

#[test]
fn a_reviewer_s_note_goes_after_the_preset_s_suffix_and_keeps_its_braces() {
    let s = step("a {{ x }}")
        .preset(kit())
        .append_to_prompt(" note: {{ not a var }}")
        .unwrap();
    let r = s.request_for(&job(&[("x", "cup")]), None).unwrap();
    assert_eq!(r.prompt, "kit: a cup (kit) note: {{ not a var }}");
}

#[test]
fn a_prefix_and_suffix_make_one_template_with_the_prompt() {
    let split = Preset::new("split")
        .prompt_prefix("{% if x %}[")
        .prompt_suffix("]{% endif %}");
    let s = step("{{ x }}").try_preset(split).unwrap();
    assert_eq!(s.request_for(&job(&[("x", "mug")]), None).unwrap().prompt, "[mug]");
}

#[test]
fn a_preset_whose_words_do_not_parse_with_the_prompt_is_refused_by_try_preset() {
    let bad = Preset::new("bad").prompt_prefix("{% if x %}");
    let e = step("a")
        .try_preset(bad.clone())
        .err()
        .expect("an unclosed block is refused");
    assert_eq!(e.kind(), StepErrorKind::Template);
    assert!(e.to_string().contains("preset `bad`"), "{e}");
    // The infallible form keeps the error for the step's runs.
    let e = step("a").preset(bad).request_for(&job(&[]), None).unwrap_err();
    assert!(e.to_string().contains("preset `bad`"), "{e}");
}

fn picked() -> GenerateStep {
    let flat = Preset::new("flat").prompt_prefix("flat ").model("flat-model");
    let photo = Preset::new("photo").prompt_prefix("photo ").params(&Params {
        style: Some("photo".into()),
        ..Default::default()
    });
    step("{{ x }}")
        .params(&Params {
            style: Some("own".into()),
            ..Default::default()
        })
        .preset(kit())
        .preset_by_var("look", [flat, photo], Some("flat"))
        .unwrap()
}

#[test]
fn a_picked_preset_applies_over_the_fixed_one_and_under_the_step() {
    let s = picked();
    let r = s.request_for(&job(&[("x", "mug"), ("look", "photo")]), None).unwrap();
    // The picked preset's prefix over the kit's; the kit's suffix and model
    // where the picked one sets none; the step's style over both.
    assert_eq!(r.prompt, "photo mug (kit)");
    assert_eq!(r.model.as_deref(), Some("kit-model"));
    assert_eq!(r.params.style.as_deref(), Some("own"));
    let r = s.request_for(&job(&[("x", "mug"), ("look", "flat")]), None).unwrap();
    assert_eq!(r.model.as_deref(), Some("flat-model"));
}

#[test]
fn a_job_without_the_variable_runs_with_the_default_preset() {
    let r = picked().request_for(&job(&[("x", "mug")]), None).unwrap();
    assert_eq!(r.prompt, "flat mug (kit)");
    assert_eq!(r.model.as_deref(), Some("flat-model"));
}

#[test]
fn a_job_naming_a_preset_the_step_does_not_carry_is_invalid_input_naming_it() {
    let e = picked()
        .request_for(&job(&[("x", "mug"), ("look", "neon")]), None)
        .unwrap_err();
    assert_eq!(e.kind(), StepErrorKind::InvalidInput);
    assert!(e.to_string().contains("unknown preset `neon`"), "{e}");
}

#[test]
fn presets_sharing_a_name_or_a_default_that_is_not_among_them_are_refused() {
    let e = step("a")
        .preset_by_var("look", [Preset::new("a"), Preset::new("a")], None)
        .err()
        .expect("duplicate names");
    assert!(e.to_string().contains("two presets are named `a`"), "{e}");
    let e = step("a")
        .preset_by_var("look", [Preset::new("a")], Some("b"))
        .err()
        .expect("unknown default");
    assert!(e.to_string().contains("default preset `b`"), "{e}");
}

/// Passes everything, under its own name.
struct Named(&'static str);

#[async_trait]
impl QualityGate for Named {
    fn name(&self) -> &str {
        self.0
    }
    async fn check(&self, _: &Artifact, _: &GateCtx) -> Result<Verdict, GateError> {
        Ok(Verdict::pass(1.0))
    }
}

#[test]
fn a_preset_s_gates_judge_after_the_step_s_own_and_a_higher_preset_s_replace_a_lower_one_s() {
    let fixed = Preset::new("fixed").gate(Named("fixed-gate"));
    let with_gate = Preset::new("g").gate(Named("picked-gate"));
    let s = step("a")
        .gate(Named("own"))
        .preset(fixed)
        .preset_by_var("look", [with_gate, Preset::new("none")], None)
        .unwrap();
    let names = |j: &Job| -> Vec<String> { s.gates_for(j).unwrap().iter().map(|g| g.name().to_string()).collect() };
    assert_eq!(names(&job(&[("look", "g")])), ["own", "picked-gate"]);
    assert_eq!(names(&job(&[("look", "none")])), ["own", "fixed-gate"]);
    assert_eq!(names(&job(&[])), ["own", "fixed-gate"]);
}

#[tokio::test]
async fn a_run_sends_each_job_the_request_of_its_picked_preset_and_records_the_preset_s_gates() {
    let p = fake();
    let exec = Executor::builder().provider(p.clone()).build().unwrap();
    let s = step("{{ x }}")
        .preset(Preset::new("base").gate(Named("base-gate")))
        .preset_by_var(
            "look",
            [
                Preset::new("loud").prompt_prefix("LOUD ").seed(SeedPolicy::Fixed(42)),
                Preset::new("calm").prompt_prefix("calm "),
            ],
            Some("calm"),
        )
        .unwrap();
    let dag = Arc::new(Dag::builder("t").step("gen", s, &[]).build().unwrap());
    let jobs = [job(&[("x", "mug"), ("look", "loud")]), job(&[("x", "cup")])];
    let out = exec.run(dag, jobs).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    let mut sent: Vec<(String, Option<u64>)> = p.requests().iter().map(|r| (r.prompt.clone(), r.params.seed)).collect();
    sent.sort();
    assert_eq!(sent[0].0, "LOUD mug");
    assert_eq!(sent[0].1, Some(42));
    assert_eq!(sent[1].0, "calm cup");
    assert_ne!(sent[1].1, Some(42), "the calm preset leaves the seed derived");
    for j in &out.jobs {
        let a = &j.outputs("gen")[0];
        assert_eq!(a.provenance().gates[0].gate, "base-gate");
    }
    // A job naming an unknown preset fails its step, not the run's other jobs.
    let s = step("{{ x }}")
        .preset_by_var("look", [Preset::new("calm")], None)
        .unwrap();
    let dag = Arc::new(Dag::builder("t").step("gen", s, &[]).build().unwrap());
    let out = exec
        .run(
            dag,
            [
                job(&[("x", "a"), ("look", "neon")]),
                job(&[("x", "b"), ("look", "calm")]),
            ],
        )
        .await
        .unwrap();
    let failed = out
        .jobs
        .iter()
        .find(|j| j.job.var_str("look").as_deref() == Some("neon"))
        .unwrap();
    assert_eq!(failed.steps[0].state, StepState::Failed);
    let ok = out
        .jobs
        .iter()
        .find(|j| j.job.var_str("look").as_deref() == Some("calm"))
        .unwrap();
    assert_eq!(ok.status, Status::Succeeded);
}
