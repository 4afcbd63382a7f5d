//! The report tells the truth per model and per member (issue 11): rows keyed by
//! the model a provider actually used, a router's members as rows of their own
//! that add up to what their servers saw, and flagged assets counted alike in
//! the summary line and the contact sheet.

use std::path::Path;

use creative::campaign::deliver::Report;
use creative::campaign::spec::{CampaignOptions, CampaignOutcome, Format, Registry, Spec};
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
    let spec = Spec::parse(spec, Format::Toml, "report.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        ..CampaignOptions::default()
    };
    campaign.start(opts).unwrap().wait().await.unwrap()
}

/// An `openai` provider on a loopback server, its key in the environment.
fn openai(id: &str, server: &LoopbackServer) -> String {
    static KEY: std::sync::Once = std::sync::Once::new();
    KEY.call_once(|| std::env::set_var("CREATIVE_REPORT_TEST_KEY", "sk-loopback"));
    format!(
        "[providers.{id}]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"CREATIVE_REPORT_TEST_KEY\"\ntimeout_s = 5.0\n",
        server.base_url()
    )
}

fn tiny() -> Config {
    Config {
        size: Some((8, 8)),
        ..Config::default()
    }
}

const MATRIX: &str = r#"
[matrix]
product = ["mug", "lamp", "chair", "bag"]
locale = ["en", "fr"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_naming_no_model_has_attempts_cost_and_accepted_in_one_row_of_the_default_model() {
    let server = LoopbackServer::start(0, tiny()).await.unwrap();
    let spec = format!(
        r#"
name = "default-model"
concurrency = 4
{provider}{MATRIX}
[[steps]]
name = "hero"
kind = "generate"
providers = ["img"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}})"
size = "1024x1024"
"#,
        provider = openai("img", &server)
    );
    let dir = temp_dir("report-default-model");
    let done = run(&spec, &dir.join("out")).await;
    assert_eq!(done.outcome.status, Status::Succeeded);
    let rows: Vec<(&str, &str)> = done
        .report
        .providers
        .iter()
        .map(|r| (r.provider.as_str(), r.model.as_str()))
        .collect();
    assert_eq!(rows, [("img", "gpt-image-1")], "one row, of the model used");
    let row = &done.report.providers[0];
    assert_eq!((row.attempts, row.successes, row.accepted), (8, 8, 8));
    assert!(row.cost_usd > 0.0, "gpt-image-1 is priced: {}", row.cost_usd);
    let per = row.cost_per_accepted_usd.expect("cost per accepted asset");
    assert!((per - row.cost_usd / 8.0).abs() < 1e-9);
    assert!(
        done.report.table().contains("img/gpt-image-1"),
        "{}",
        done.report.table()
    );
    // The manifest's provenance names the same model.
    let m = done.read_manifest().unwrap();
    assert!(m
        .assets
        .iter()
        .all(|a| a.provenance.model.as_deref() == Some("gpt-image-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_s_members_are_rows_whose_calls_and_failures_add_up_to_what_their_servers_saw() {
    let good = LoopbackServer::start(0, tiny()).await.unwrap();
    let flaky = LoopbackServer::start(
        0,
        Config {
            rate_500: 0.3,
            ..tiny()
        },
    )
    .await
    .unwrap();
    // `flaky` first: the router tries it first and moves to `good` when it
    // answers 500, so the engine sees a success while `flaky`'s server saw a
    // failure.
    let spec = format!(
        r#"
name = "router-members"
concurrency = 4
{a}{b}
[providers.images]
kind = "router"
providers = ["flaky", "good"]
exploration = 0.0
breaker = {{ failure_threshold = 1000 }}
{MATRIX}
[[steps]]
name = "hero"
kind = "generate"
providers = ["images"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}}) {{{{ n }}}}"
size = "1024x1024"
"#,
        a = openai("flaky", &flaky),
        b = openai("good", &good),
        MATRIX = MATRIX.replace(
            "locale = [\"en\", \"fr\"]",
            "locale = [\"en\", \"fr\"]\nn = [1, 2, 3, 4, 5]"
        ),
    );
    let dir = temp_dir("report-router-members");
    let done = run(&spec, &dir.join("out")).await;
    assert_eq!(done.outcome.status, Status::Succeeded);
    let report: Report = serde_json::from_slice(&std::fs::read(dir.join("out/report.json")).unwrap()).unwrap();
    assert_eq!(report, done.report, "report.json is the report returned");

    let router = report
        .providers
        .iter()
        .find(|r| r.provider == "images" && r.router.is_none())
        .expect("the router keeps its own row");
    assert_eq!((router.attempts, router.accepted), (40, 40));
    let member = |id: &str| {
        report
            .providers
            .iter()
            .find(|r| r.provider == id && r.router.as_deref() == Some("images"))
            .unwrap_or_else(|| panic!("a row for member {id}: {:#?}", report.providers))
    };
    let (f, g) = (member("flaky"), member("good"));
    assert_eq!((f.model.as_str(), g.model.as_str()), ("gpt-image-1", "gpt-image-1"));
    let (fs, gs) = (flaky.stats(), good.stats());
    assert!(fs.injected_errors > 0, "the flaky server failed some calls: {fs:?}");
    assert_eq!(f.attempts, fs.requests, "flaky's row counts every call its server saw");
    assert_eq!(g.attempts, gs.requests, "good's row counts every call its server saw");
    assert_eq!(f.failures.values().sum::<u64>(), fs.injected_errors, "{:?}", f.failures);
    assert_eq!(g.failures.values().sum::<u64>(), 0);
    assert_eq!(f.accepted + g.accepted, 40, "each accepted asset is its maker's");
    assert!((f.cost_usd + g.cost_usd - router.cost_usd).abs() < 1e-9);
    assert!(g.cost_per_accepted_usd.is_some());
    // The totals count the calls the servers saw, failures included.
    assert_eq!(report.totals.attempts, fs.requests + gs.requests);
    assert_eq!(report.totals.failed_attempts, fs.injected_errors);
    // Why each call went where it did: `flaky` is always the first choice of
    // the ordered strategy; `good` only ever takes over after its failure.
    let why = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(f.routed, why(&[("exploited", fs.requests)]));
    assert_eq!(g.routed, why(&[("fallback", gs.requests)]));
    let table = report.table();
    assert!(table.contains("images:flaky/gpt-image-1"), "{table}");
    assert!(table.contains("images:good/gpt-image-1"), "{table}");
    assert!(table.contains(&format!("routed: fallback {}", gs.requests)), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_flagged_by_a_gate_are_counted_in_the_summary_and_marked_on_the_contact_sheet() {
    let spec = format!(
        r#"
name = "flagged"
concurrency = 4

[providers.art]
kind = "procedural"
{MATRIX}
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}})"
size = "128x96"
gates = [{{ kind = "format", min_width = 1000 }}]
on_gate_fail = "flag"

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 64

[output]
steps = ["hero", "thumb"]
"#
    );
    let dir = temp_dir("report-flagged");
    let out = dir.join("out");
    let done = run(&spec, &out).await;
    assert_eq!(done.report.totals.assets, 16);
    // Every hero failed its gate and was kept flagged; its thumbnail is made
    // from a flagged picture, so it is flagged too.
    assert_eq!(done.report.totals.flagged, 16);
    assert!(
        done.report.summary_line().contains("assets 16 (16 flagged)"),
        "{}",
        done.report.summary_line()
    );
    let html = std::fs::read_to_string(out.join("contact_sheet.html")).unwrap();
    assert_eq!(
        html.matches("<div class=\"card flag\">").count(),
        16,
        "every card marked"
    );
    assert_eq!(html.matches("flagged for review").count(), 16);
}
