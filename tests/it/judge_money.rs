//! Judge calls are paid calls (issue 11, "Money"): a `judge` gate's calls to
//! its provider are billed in the report (totals and the judge provider's
//! row), count against `budget.max_cost_usd`, are estimated by the dry run and
//! need a price under a money budget, like generations.
//!
//! The judge here is a provider kind of the test's own, `verdict`: it answers
//! every call with a passing verdict and bills a fixed price, so the figures
//! are exact.

use std::path::Path;
use std::sync::Arc;

use creative::campaign::spec::{CampaignOptions, CampaignOutcome, Format, Registry, Spec};
use creative::engine::{Provider, Status, Task};
use creative_testkit::fake::{Answer, FakeProvider};

use crate::common;
use common::temp_dir;

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg.provider(
        "verdict",
        Arc::new(|id: &str, s: &serde_json::Value, _: &_| {
            // The kit's fake as a judge that passes everything at `cost`
            // dollars a call (estimated alike), and says it has no price when
            // `priced` is false.
            let judge = FakeProvider::new(id, &[Task::Text])
                .cost(s.get("cost").and_then(|v| v.as_f64()).unwrap_or(0.0))
                .priced(s.get("priced").and_then(|v| v.as_bool()).unwrap_or(true))
                .respond(|_, _| Answer::text(r#"{"score": 0.9, "pass": true, "reasons": []}"#));
            Ok(Arc::new(judge) as Arc<dyn Provider>)
        }),
    );
    reg
}

/// A campaign of `jobs` judged heroes: images from a procedural provider at
/// `image_cost` each, judged by a `verdict` provider at `judge_cost` a call.
fn spec(jobs: usize, image_cost: f64, judge_cost: f64, extra: &str) -> String {
    let products: Vec<String> = (0..jobs).map(|i| format!("\"p{i}\"")).collect();
    format!(
        r#"
name = "judged"
concurrency = 1
{extra}
[providers.img]
kind = "procedural"
cost_per_image = {image_cost}
default_size = 32

[providers.judge]
kind = "verdict"
cost = {judge_cost}

[matrix]
product = [{products}]

[[steps]]
name = "hero"
kind = "generate"
providers = ["img"]
prompt = "a {{{{ product }}}}"

[[steps.gates]]
kind = "judge"
provider = "judge"
rubric = "A clear {{{{ product }}}}."
"#,
        products = products.join(", ")
    )
}

async fn run(spec: &str, out: &Path) -> CampaignOutcome {
    let spec = Spec::parse(spec, Format::Toml, "judged.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        ..CampaignOptions::default()
    };
    campaign.start(opts).unwrap().wait().await.unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_calls_are_in_the_reports_cost_and_in_the_row_of_the_judges_provider() {
    let dir = temp_dir("judge-report");
    let done = run(&spec(4, 0.002, 0.01, ""), &dir.join("out")).await;
    assert_eq!(done.outcome.status, Status::Succeeded);
    let r = &done.report;
    assert!(
        close(r.totals.cost_usd, 4.0 * 0.002 + 4.0 * 0.01),
        "totals: {:?}",
        r.totals
    );
    assert_eq!(r.totals.attempts, 8, "4 generations and 4 judge calls");
    let judge = r
        .providers
        .iter()
        .find(|row| row.provider == "judge")
        .unwrap_or_else(|| panic!("no row for the judge's provider: {:?}", r.providers));
    assert_eq!((judge.attempts, judge.successes), (4, 4));
    assert!(close(judge.cost_usd, 0.04), "{judge:?}");
    let img = r.providers.iter().find(|row| row.provider == "img").unwrap();
    assert!(close(img.cost_usd, 0.008), "{img:?}");
    // The gate's checks stay with the generation they judged.
    assert_eq!((img.gate_checks, img.accepted, judge.accepted), (4, 4, 0), "{img:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_cost_usd_that_only_judge_calls_exceed_stops_the_run() {
    // Images are free; only the judge costs: $0.10 a call against $0.25.
    let dir = temp_dir("judge-budget");
    let done = run(
        &spec(10, 0.0, 0.10, "[budget]\nmax_cost_usd = 0.25\n"),
        &dir.join("out"),
    )
    .await;
    assert_eq!(done.outcome.status, Status::BudgetExhausted, "{:?}", done.report.jobs);
    let judge = done
        .report
        .providers
        .iter()
        .find(|row| row.provider == "judge")
        .unwrap();
    assert_eq!(judge.attempts, 2, "a third judge call would pass the limit: {judge:?}");
    assert!(done.report.totals.cost_usd <= 0.25 + 1e-9, "{:?}", done.report.totals);
    assert!(done.outcome.counts.succeeded < 10, "{:?}", done.outcome.counts);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_dry_runs_estimate_includes_one_judge_call_per_gate_check() {
    let spec = Spec::parse(&spec(6, 0.002, 0.01, ""), Format::Toml, "judged.toml").unwrap();
    let plan = spec.build(&registry(), ".").unwrap().plan();
    assert_eq!((plan.generations, plan.gate_calls), (6, 6));
    assert!(close(plan.gate_calls_cost_usd, 0.06), "{plan:?}");
    assert!(close(plan.estimated_cost_usd, 6.0 * 0.002 + 0.06), "{plan:?}");
    let first = &plan.jobs[0];
    assert!(close(first.estimated_cost_usd, 0.012), "{first:?}");
    let judged: Vec<_> = first.requests.iter().filter(|r| r.gate.is_some()).collect();
    assert_eq!(judged.len(), 1);
    assert_eq!(
        (judged[0].provider.as_str(), judged[0].step.as_str()),
        ("judge", "hero")
    );
    let table = plan.table();
    assert!(
        table.contains("6 gate calls") && table.contains("first attempt"),
        "{table}"
    );
}

#[test]
fn an_unpriced_judge_under_a_money_budget_is_refused_at_check_naming_its_gate() {
    let unpriced = spec(2, 0.002, 0.0, "[budget]\nmax_cost_usd = 1.0\n")
        .replace("kind = \"verdict\"", "kind = \"verdict\"\npriced = false");
    let spec = Spec::parse(&unpriced, Format::Toml, "judged.toml").unwrap();
    let e = spec.build(&registry(), ".").unwrap_err().to_string();
    assert!(e.contains("steps[0].gates[0]"), "{e}");
    assert!(e.contains("provider `judge` has no price"), "{e}");
    // Without a money budget the same spec builds.
    let free = unpriced.replace("[budget]\nmax_cost_usd = 1.0\n", "");
    let spec = Spec::parse(&free, Format::Toml, "judged.toml").unwrap();
    assert!(spec.build(&registry(), ".").is_ok());
}
