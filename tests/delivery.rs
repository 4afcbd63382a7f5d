//! Delivery end to end: files under template names, manifest, report, contact
//! sheet, a host's own sink, the webhook sink against a loopback server, the
//! cache (hits and money saved, `force`), parameter precedence and seed policy.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use creative::campaign::deliver::{AssetEntry, Manifest, ManifestSummary, Report, Sink, SinkError};
use creative::campaign::spec::{CampaignOptions, CampaignOutcome, Format, Registry, Spec};
use creative::engine::{Artifact, ArtifactId, Status};

#[path = "it/common/mod.rs"]
mod common;
use common::manifest::{assert_run_fields_plausible, without_run_fields, Generations};
use common::temp_dir;

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

/// A loopback HTTP server that answers 503 to its first request and 200 after,
/// recording every request body. It serves at most `limit` requests.
fn webhook_server(limit: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().take(limit).enumerate() {
            let Ok(mut s) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let k = s.read(&mut chunk).unwrap_or(0);
                if k == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    break (Some(i + 4), len);
                }
            };
            let Some(start) = head_end else { continue };
            while buf.len() < start + len {
                let k = s.read(&mut chunk).unwrap_or(0);
                if k == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..k]);
            }
            let status = if n == 0 { "503 Service Unavailable" } else { "200 OK" };
            if n > 0 {
                if let Ok(v) = serde_json::from_slice(&buf[start..]) {
                    rec.lock().unwrap().push(v);
                }
            }
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes());
        }
    });
    (url, seen)
}

#[derive(Default)]
struct Collect {
    assets: Mutex<Vec<AssetEntry>>,
    finished: Mutex<u32>,
}

#[async_trait]
impl Sink for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    async fn deliver(&self, asset: &AssetEntry, artifact: &Artifact) -> Result<(), SinkError> {
        assert_eq!(asset.id, *artifact.id());
        self.assets.lock().unwrap().push(asset.clone());
        Ok(())
    }
    async fn finish(&self, _: &ManifestSummary, _: &Report) -> Result<(), SinkError> {
        *self.finished.lock().unwrap() += 1;
        Ok(())
    }
}

fn campaign_spec(webhook: Option<&str>) -> String {
    let sink = webhook
        .map(|u| format!("\n[[output.sinks]]\nkind = \"webhook\"\nurl = \"{u}\"\nretries = 2\nbackoff_ms = 5\n"))
        .unwrap_or_default();
    format!(
        r#"
name = "delivery"
concurrency = 4

[providers.art]
kind = "procedural"
cost_per_image = 0.05

[matrix]
product = ["mug", "lamp"]
locale = ["en", "fr"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} ({{{{ locale }}}})"
size = "128x96"
gates = [{{ kind = "format", min_width = 100 }}]

[[steps]]
name = "thumb"
kind = "resize"
inputs = ["hero"]
width = 64

[output]
steps = ["hero", "thumb"]
file_name = "{{{{ locale }}}}/{{{{ product }}}}-{{{{ step }}}}.{{{{ ext }}}}"
{sink}"#
    )
}

async fn run(spec: &str, out: &Path, force: bool, sink: Option<Arc<dyn Sink>>) -> CampaignOutcome {
    let spec = Spec::parse(spec, Format::Toml, "delivery.toml").unwrap();
    let mut campaign = spec.build(&registry(), ".").unwrap();
    if let Some(s) = sink {
        campaign.add_sink(s);
    }
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        force,
        ..CampaignOptions::default()
    };
    campaign.start(opts).unwrap().wait().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_land_under_template_names_with_manifest_report_sheet_and_sinks() {
    let dir = temp_dir("delivery");
    let out = dir.join("out");
    let (url, posts) = webhook_server(16);
    let collect = Arc::new(Collect::default());
    let from = SystemTime::now();
    let done = run(&campaign_spec(Some(&url)), &out, false, Some(collect.clone())).await;
    let first = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert_eq!(
        assert_run_fields_plausible(&first, from, SystemTime::now()),
        Generations { fresh: 8, cached: 0 },
        "four heroes, each an asset and a thumbnail's source"
    );
    assert_eq!(done.outcome.status, Status::Succeeded);
    assert!(
        done.report.delivery_errors.is_empty(),
        "{:?}",
        done.report.delivery_errors
    );

    // Files, named by the template, holding exactly the manifest's bytes.
    let m = &done.read_manifest().unwrap();
    assert_eq!(m.assets.len(), 8);
    for a in &m.assets {
        let path = a.path.as_deref().unwrap();
        assert_eq!(
            path,
            format!(
                "{}/{}-{}.png",
                a.vars["locale"].as_str().unwrap(),
                a.vars["product"].as_str().unwrap(),
                a.step
            )
        );
        let bytes = std::fs::read(out.join(path)).unwrap();
        assert_eq!(ArtifactId::of(&a.media, &bytes), a.id);
    }
    // A rendition names its generation, with the prompt and seed.
    let thumb = m.assets.iter().find(|a| a.step == "thumb").unwrap();
    let gen = &thumb.sources[0].provenance;
    assert_eq!(gen.step, "hero");
    assert_eq!(gen.provider.as_deref(), Some("art"));
    assert!(gen.seed.is_some());
    assert!(gen.params["prompt"].as_str().unwrap().starts_with("a "));
    assert_eq!(gen.gates[0].gate, "format");

    // The files on disk match what was returned.
    let bytes = std::fs::read(out.join("manifest.json")).unwrap();
    let on_disk: Manifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&on_disk, m);
    let mut whole = serde_json::to_vec_pretty(&on_disk).unwrap();
    whole.push(b'\n');
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&whole),
        "the streamed manifest is the document serializing it whole would give"
    );
    assert_eq!(
        (done.manifest.jobs, done.manifest.jobs_complete, done.manifest.assets),
        (4, 4, 8)
    );
    let report: Report = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let row = &report.providers[0];
    assert_eq!(
        (row.provider.as_str(), row.attempts, row.successes, row.accepted),
        ("art", 4, 4, 4)
    );
    assert!((row.cost_usd - 0.20).abs() < 1e-9);
    assert!((row.cost_per_accepted_usd.unwrap() - 0.05).abs() < 1e-9);
    assert_eq!(row.gate_pass_rate, Some(1.0));
    assert!(row.latency_p50_ms.is_some() && row.latency_p95_ms.is_some());
    let html = std::fs::read_to_string(out.join("contact_sheet.html")).unwrap();
    // A picture per asset, linked (not embedded) and lazily loaded: the
    // thumbnail made as its job ended, or the delivered file itself.
    let srcs: Vec<&str> = html
        .split("<img loading=\"lazy\"")
        .skip(1)
        .map(|rest| {
            let at = rest.find("src=\"").unwrap() + 5;
            &rest[at..at + rest[at..].find('"').unwrap()]
        })
        .collect();
    assert_eq!(srcs.len(), 8, "a picture per asset");
    for src in &srcs {
        assert!(out.join(src).is_file(), "{src} is there");
    }
    assert!(!html.contains("base64,"), "images are linked, not embedded");
    assert!(html.contains("mug") && html.contains("format"));
    assert!(!html.contains("src=\"http"), "nothing from elsewhere");

    // The host's sink saw every asset, with its path, and the end.
    assert_eq!(collect.assets.lock().unwrap().len(), 8);
    assert!(collect.assets.lock().unwrap().iter().all(|a| a.path.is_some()));
    assert_eq!(*collect.finished.lock().unwrap(), 1);

    // The webhook got every asset and the end, despite a 503 first.
    let posts = posts.lock().unwrap().clone();
    assert_eq!(
        posts.iter().filter(|p| p["type"] == "asset.delivered").count(),
        8,
        "{posts:?}"
    );
    assert_eq!(posts.iter().filter(|p| p["type"] == "campaign.finished").count(), 1);

    // Run again: every generation comes from the cache, the money is saved, the
    // manifest is the same, and no file is duplicated.
    let files = |d: &Path| {
        walk(d)
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains(".creative"))
            .count()
    };
    let before = files(&out);
    let from = SystemTime::now();
    let again = run(&campaign_spec(None), &out, false, None).await;
    let second = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert_eq!(
        assert_run_fields_plausible(&second, from, SystemTime::now()),
        Generations { fresh: 0, cached: 8 }
    );
    // The first run's spec had a webhook (another spec hash): the assets match.
    assert_eq!(
        without_run_fields(&second)["assets"],
        without_run_fields(&first)["assets"],
        "a run served by the cache"
    );
    assert_eq!(again.report.totals.attempts, 0, "no provider call");
    assert_eq!(again.report.totals.cache_hits, 4);
    assert!((again.report.totals.saved_usd - 0.20).abs() < 1e-9);
    assert_eq!(again.report.providers[0].cache_hits, 4);
    assert_eq!(files(&out), before);

    // --force pays again.
    let from = SystemTime::now();
    let forced = run(&campaign_spec(None), &out, true, None).await;
    let third = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert_eq!(
        assert_run_fields_plausible(&third, from, SystemTime::now()),
        Generations { fresh: 8, cached: 0 }
    );
    assert_eq!(forced.report.totals.attempts, 4);
    assert_eq!(forced.report.totals.cache_hits, 0);
    assert_eq!(
        without_run_fields(&third)["assets"],
        without_run_fields(&first)["assets"],
        "procedural is deterministic"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_follow_defaults_preset_step_job_overrides() {
    let spec = r#"
name = "layers"
[providers.art]
kind = "procedural"
[defaults]
steps = 10
guidance = 1.0
width = 64
height = 64
quality = "low"
style = "from-defaults"
[presets.kit]
guidance = 2.0
width = 80
style = "from-preset"
prompt_prefix = "kit: "
[overrides]
steps = 42
[matrix]
style = ["from-job"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
preset = "kit"
width = 96
style = "from-step"
prompt = "a thing"
"#;
    let dir = temp_dir("layers");
    let done = run(spec, &dir, false, None).await;
    let manifest = done.read_manifest().unwrap();
    let p = &manifest.assets[0].provenance.params;
    assert_eq!(p["prompt"], "kit: a thing");
    let params = &p["params"];
    assert_eq!(params["steps"], 42, "overrides win over everything");
    assert_eq!(params["style"], "from-job", "job variables win over the step");
    assert_eq!(params["width"], 96, "the step wins over the preset");
    assert_eq!(params["guidance"], 2.0, "the preset wins over the defaults");
    assert_eq!(params["quality"], "low", "defaults fill the rest");
    assert_eq!(params["height"], 64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_policies_are_applied_and_always_recorded() {
    let spec = |policy: &str| {
        format!(
            r#"
name = "seeds"
[providers.art]
kind = "procedural"
[defaults]
seed = {policy}
size = "32x32"
[matrix]
i = [1, 2]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "x {{{{ i }}}}"
"#
        )
    };
    let dir = temp_dir("seeds");
    let seeds = |o: &CampaignOutcome| -> Vec<u64> {
        o.read_manifest()
            .unwrap()
            .assets
            .iter()
            .map(|a| a.provenance.seed.unwrap())
            .collect()
    };
    let fixed = run(&spec("7"), &dir.join("fixed"), false, None).await;
    assert_eq!(seeds(&fixed), vec![7, 7]);
    assert_eq!(
        fixed.read_manifest().unwrap().assets[0].provenance.params["params"]["seed"],
        7
    );
    let d1 = run(&spec("\"derived\""), &dir.join("d1"), false, None).await;
    let d2 = run(&spec("\"derived\""), &dir.join("d2"), false, None).await;
    assert_eq!(seeds(&d1), seeds(&d2), "derived seeds are reproducible");
    assert_ne!(seeds(&d1)[0], seeds(&d1)[1], "and differ between jobs");
    let r1 = run(&spec("\"random\""), &dir.join("r1"), false, None).await;
    let r2 = run(&spec("\"random\""), &dir.join("r2"), false, None).await;
    assert_eq!(seeds(&r1).len(), 2, "random seeds are recorded");
    assert_ne!(seeds(&r1), seeds(&r2), "random seeds change from run to run");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_expands_the_matrix_and_estimates_without_calling() {
    let dir = temp_dir("dry");
    let log = dir.join("calls.log");
    let spec = campaign_spec(None).replace(
        "cost_per_image = 0.05",
        &format!("cost_per_image = 0.05\ncall_log = \"{}\"", log.display()),
    );
    let spec = Spec::parse(&spec, Format::Toml, "d.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(dir.join("out")),
        dry_run: true,
        ..CampaignOptions::default()
    };
    let done = campaign.start(opts).unwrap().wait().await.unwrap();
    let plan = done.plan.unwrap();
    assert_eq!(plan.jobs.len(), 4);
    assert_eq!(plan.generations, 4);
    assert!((plan.estimated_cost_usd - 0.20).abs() < 1e-9);
    assert_eq!(plan.jobs[0].requests[0].request["params"]["width"], 128);
    assert!(plan.table().contains("estimated cost $0.2000"));
    assert!(!log.exists(), "no provider was called");
    assert!(!dir.join("out").exists(), "nothing was written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dry_run_of_a_large_matrix_counts_and_prices_every_job_without_listing_them() {
    // 60 x 50 x 40 = 120,000 jobs; the prompt names two of the three axes, so
    // the estimate prices 3,000 representatives, each counted for 40 jobs.
    let values = |n: usize, p: &str| (0..n).map(|i| format!("\"{p}{i}\"")).collect::<Vec<_>>().join(", ");
    let spec = format!(
        r#"
name = "big"
[providers.art]
kind = "procedural"
cost_per_image = 0.01
[matrix]
product = [{}]
locale = [{}]
variant = [{}]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}} for {{{{ locale }}}}"
size = "64x64"
[output]
file_name = "{{{{ product }}}}/{{{{ locale }}}}-{{{{ variant }}}}.{{{{ ext }}}}"
"#,
        values(60, "p"),
        values(50, "l"),
        values(40, "v")
    );
    let campaign = Spec::parse(&spec, Format::Toml, "big.toml")
        .unwrap()
        .build(&registry(), ".")
        .unwrap();
    assert_eq!(campaign.jobs().len(), 120_000);
    let plan = campaign.plan();
    assert_eq!(plan.job_count, 120_000);
    assert_eq!(plan.generations, 120_000);
    assert!(
        (plan.estimated_cost_usd - 1200.0).abs() < 1e-6,
        "{}",
        plan.estimated_cost_usd
    );
    assert_eq!(plan.jobs.len(), 20, "the first and last ten jobs in full");
    assert_eq!(plan.jobs_omitted, 119_980);
    assert_eq!((plan.jobs[0].index, plan.jobs[19].index), (0, 119_999));
    let last = campaign.jobs().iter().next_back().unwrap();
    assert_eq!(plan.jobs[19].key, last.key());
    let table = plan.table();
    assert!(table.contains("(119,980 more jobs; --json lists every job)"), "{table}");
    assert!(table.contains("120,000 jobs x 1 steps"), "{table}");
    // The streamed plan agrees with the computed totals.
    let (mut n, mut cost) = (0u64, 0.0);
    for j in campaign.plan_jobs().take(1000) {
        n += 1;
        cost += j.estimated_cost_usd;
    }
    assert_eq!(n, 1000);
    assert!((cost - 10.0).abs() < 1e-9);
}

#[test]
fn a_file_name_that_two_jobs_share_is_found_among_a_hundred_thousand() {
    let values = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let spec = |name: &str| {
        format!(
            r#"
name = "names"
[providers.art]
kind = "procedural"
[matrix]
a = [{}]
b = [{}]
[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "x {{{{ a }}}} {{{{ b }}}}"
[output]
file_name = "{name}"
"#,
            values(1000),
            values(100)
        )
    };
    let ok = Spec::parse(&spec("{{ a }}/{{ b }}.{{ ext }}"), Format::Toml, "n.toml").unwrap();
    assert!(ok.build(&registry(), ".").is_ok());
    // `a + b` names (a=0, b=1) and (a=1, b=0) alike.
    let clash = Spec::parse(&spec("{{ a + b }}.{{ ext }}"), Format::Toml, "n.toml").unwrap();
    let e = clash.build(&registry(), ".").unwrap_err();
    assert_eq!(e.path, "output.file_name");
    assert!(e.message.contains("file name `1.png` is the same for"), "{}", e.message);
    assert!(
        e.message.contains("a=0, b=1") && e.message.contains("a=1, b=0"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_delivers_its_files_as_it_ends_and_one_run_holds_the_folder() {
    use creative::engine::EventKind;
    let dir = temp_dir("live");
    let out = dir.join("out");
    let spec = Spec::parse(&campaign_spec(None), Format::Toml, "delivery.toml").unwrap();
    let campaign = spec.build(&registry(), ".").unwrap();
    let mut run = campaign
        .start(CampaignOptions {
            out_dir: Some(out.clone()),
            events: true,
            ..CampaignOptions::default()
        })
        .unwrap();
    // A second run into the same folder is refused while the first holds it.
    let e = campaign
        .start(CampaignOptions {
            out_dir: Some(out.clone()),
            ..CampaignOptions::default()
        })
        .err()
        .expect("the folder is taken");
    assert!(
        matches!(&e, creative::campaign::spec::CampaignError::OutputInUse { holder: Some(pid), .. } if *pid == std::process::id()),
        "{e:?}"
    );
    assert!(e.to_string().contains("in use by another run"), "{e}");
    let mut events = run.events().unwrap();
    let mut seen_on_finish = 0;
    let mut written: Vec<(String, String)> = Vec::new();
    while let Some(ev) = events.recv().await {
        if let EventKind::AssetWritten { job, path, .. } = &ev.kind {
            assert!(out.join(path).is_file(), "{path} is on disk when announced");
            written.push((job.clone(), path.clone()));
        }
        if let EventKind::JobFinished { job, .. } = &ev.kind {
            assert_eq!(
                written.iter().filter(|(j, _)| j == job).count(),
                2,
                "both files of {job} were announced before it finished"
            );
            let j = campaign.jobs().iter().find(|j| j.key() == job).unwrap();
            let (locale, product) = (
                j.vars()["locale"].as_str().unwrap(),
                j.vars()["product"].as_str().unwrap(),
            );
            for step in ["hero", "thumb"] {
                let path = out.join(locale).join(format!("{product}-{step}.png"));
                assert!(path.is_file(), "{} is there when its job ends", path.display());
            }
            seen_on_finish += 1;
        }
    }
    assert_eq!(seen_on_finish, 4);
    assert_eq!(written.len(), 8);
    assert!(!out.join("manifest.json").exists(), "the manifest comes at the end");
    let done = run.wait().await.unwrap();
    assert_eq!(done.outcome.status, Status::Succeeded);
    assert!(
        done.report.delivery_errors.is_empty(),
        "{:?}",
        done.report.delivery_errors
    );
    // Released: the same folder can be resumed now.
    let first = done.read_manifest().unwrap();
    let again = campaign
        .start(CampaignOptions {
            out_dir: Some(out.clone()),
            resume: true,
            ..CampaignOptions::default()
        })
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(again.manifest, done.manifest);
    // Every entry read back as the first run recorded it; only the run's own
    // start and end are the resume's.
    let resumed = again.read_manifest().unwrap();
    assert_eq!((&resumed.jobs, &resumed.assets), (&first.jobs, &first.assets));
    assert!(
        resumed.started_at >= first.finished_at,
        "the resume started after the first run ended"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_hanging_webhook_but_keeps_files_and_manifest() {
    use creative::engine::CancellationToken;
    // A receiver that accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(4) {
            held.push(conn);
            let _ = tx.send(());
        }
        std::thread::sleep(std::time::Duration::from_secs(60));
    });
    let dir = temp_dir("hang");
    let out = dir.join("out");
    let spec = campaign_spec(Some(&url)).replace("retries = 2", "retries = 2\ntimeout_s = 30");
    let campaign = Spec::parse(&spec, Format::Toml, "delivery.toml")
        .unwrap()
        .build(&registry(), ".")
        .unwrap();
    let cancel = CancellationToken::new();
    let run = campaign
        .start(CampaignOptions {
            out_dir: Some(out.clone()),
            cancel: Some(cancel.clone()),
            ..CampaignOptions::default()
        })
        .unwrap();
    // Cancel once the first POST is stuck.
    let waiter = tokio::task::spawn_blocking(move || {
        rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        cancel.cancel();
        std::time::Instant::now()
    });
    let done = run.wait().await.unwrap();
    let cancelled_at = waiter.await.unwrap();
    let took = cancelled_at.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "wait returned {took:?} after the cancel"
    );
    let manifest = done.read_manifest().unwrap();
    assert_eq!(manifest.assets.len(), 8, "every finished asset is in the manifest");
    assert!(out.join("manifest.json").is_file());
    for a in &manifest.assets {
        assert!(out.join(a.path.as_ref().unwrap()).is_file());
    }
    let errors = done.report.delivery_errors.join("\n");
    assert!(errors.contains("stopped: the run was cancelled"), "{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sink that takes a moment per asset and records how many it held at once.
#[derive(Default)]
struct Slow {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    seen: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Sink for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn deliver(&self, _asset: &AssetEntry, _artifact: &Artifact) -> Result<(), SinkError> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(n, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        self.now.fetch_sub(1, SeqCst);
        self.seen.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_take_several_assets_at_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = temp_dir("slow-sink");
    let slow = Arc::new(Slow::default());
    let done = run(&campaign_spec(None), &dir.join("out"), false, Some(slow.clone())).await;
    assert_eq!(done.outcome.status, Status::Succeeded);
    assert_eq!(slow.seen.load(SeqCst), 8, "every asset once");
    let most = slow.most.load(SeqCst);
    assert!(most > 1 && most <= 8, "held {most} at once");
    let _ = std::fs::remove_dir_all(&dir);
}
