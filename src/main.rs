//! `creative`: the campaign runner.
//!
//! ```text
//! creative run SPEC [--resume] [--dry-run] [--force] [--out DIR] [--shard K/N] [--json] [--quiet]
//! creative merge SPEC SHARD_DIR... [--out DIR] [--json]
//! creative check SPEC
//! creative gc SPEC [--out DIR] [--dry-run] [--json]
//! ```
//!
//! `run` expands the spec's matrix, runs every job (with a progress bar on a
//! terminal), delivers the assets into the output folder (`./out` unless the
//! spec or `--out` says otherwise) with `manifest.json`, `report.json` and
//! `contact_sheet.html`, and prints the report. `--resume` continues a run that
//! was killed or cancelled; `--force` bypasses the cache; `--dry-run` prints the
//! job matrix and an estimated cost without calling any provider.
//!
//! Exit codes (`run`; `merge` likewise):
//!
//! | code | the run |
//! |---|---|
//! | 0 | succeeded: every job, each by its first-choice provider |
//! | 1 | failed: no job succeeded |
//! | 2 | did not start: a bad command line or spec, a busy output folder, a server that is not up |
//! | 3 | degraded: every job succeeded, but a fallback served work its primary provider failed to do (named on stderr) |
//! | 4 | partial: some jobs succeeded, some failed |
//! | 5 | budget: a money, attempt or time limit stopped it (continue with `--resume` after raising it) |
//! | 130 | cancelled (Ctrl-C, SIGTERM or SIGHUP); continue with `--resume` |

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use creative::campaign::spec::{Campaign, CampaignOptions, Registry, Shard, Spec};
use creative::core::{CancellationToken, EventKind, Status};

const USAGE: &str = "usage:
  creative run SPEC [--resume] [--dry-run] [--force] [--out DIR] [--shard K/N] [--json] [--quiet]
                   [--no-preflight]
  creative merge SPEC SHARD_DIR... [--out DIR] [--json]
  creative check SPEC
  creative gc SPEC [--out DIR] [--dry-run] [--json]

  --resume    continue the run recorded in the output folder (finished steps are not redone)
  --dry-run   print the expanded job matrix and an estimated cost; call no provider
  --force     bypass the cache (every generation calls its provider again)
  --out DIR   output folder (default: the spec's output.dir, else ./out)
  --shard K/N run only the K-th of N parts of the jobs (split by job key; any machine can
              run any part); `merge` then combines the parts' output folders into one, with
              the manifest an unsharded run would give
  --json      print the report (or the dry run's plan) as JSON instead of tables
  --quiet     no progress bar
  --no-preflight  start even if a provider's server does not answer (by default a run
              first checks that local servers such as ComfyUI and Ollama are up)

  gc          remove from the output folder's .creative/ the payloads that neither the journal,
              the cache nor the last run's lists need, stale temporaries and journal.jsonl.prev
              (refused while a run holds the folder); with --dry-run, print what it would remove

exit codes: 0 succeeded, 1 failed, 2 did not start, 3 degraded (a fallback served work its
primary failed), 4 partial (some jobs failed), 5 stopped by the budget, 130 cancelled";

/// The exit code that says how a run ended (see the module docs).
fn exit_code(status: Status) -> ExitCode {
    match status {
        Status::Succeeded => ExitCode::SUCCESS,
        Status::Degraded => ExitCode::from(3),
        Status::Partial => ExitCode::from(4),
        Status::BudgetExhausted => ExitCode::from(5),
        Status::Cancelled => ExitCode::from(130),
        _ => ExitCode::from(1),
    }
}

struct Args {
    command: String,
    spec: PathBuf,
    resume: bool,
    dry_run: bool,
    force: bool,
    json: bool,
    quiet: bool,
    preflight: bool,
    out: Option<PathBuf>,
    shard: Option<Shard>,
    shard_dirs: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("missing command")?;
    if command == "-h" || command == "--help" || command == "help" {
        return Err(String::new());
    }
    if command != "run" && command != "check" && command != "merge" && command != "gc" {
        return Err(format!("unknown command `{command}`"));
    }
    let mut a = Args {
        command,
        spec: PathBuf::new(),
        resume: false,
        dry_run: false,
        force: false,
        json: false,
        quiet: false,
        preflight: true,
        out: None,
        shard: None,
        shard_dirs: Vec::new(),
    };
    let mut spec = None;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--resume" => a.resume = true,
            "--dry-run" => a.dry_run = true,
            "--force" => a.force = true,
            "--json" => a.json = true,
            "--quiet" | "-q" => a.quiet = true,
            "--no-preflight" => a.preflight = false,
            "--out" | "-o" => a.out = Some(it.next().ok_or("--out needs a folder")?.into()),
            s if s.starts_with("--out=") => a.out = Some(s["--out=".len()..].into()),
            "--shard" => a.shard = Some(it.next().ok_or("--shard needs K/N")?.parse()?),
            s if s.starts_with("--shard=") => a.shard = Some(s["--shard=".len()..].parse()?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            s => {
                if spec.is_none() {
                    spec = Some(PathBuf::from(s));
                } else if a.command == "merge" {
                    a.shard_dirs.push(PathBuf::from(s));
                } else {
                    return Err("give one spec file".into());
                }
            }
        }
    }
    a.spec = spec.ok_or("missing SPEC file")?;
    if a.command == "merge" && a.shard_dirs.is_empty() {
        return Err("merge needs the shards' output folders".into());
    }
    if let Some(out) = &a.out {
        // `--out ""` would otherwise write the store, assets and manifest into
        // the current directory.
        creative::campaign::spec::check_out_dir(out).map_err(|e| format!("--out: {e}"))?;
    }
    Ok(a)
}

/// Every kind this build knows: providers (and the webhook sink), steps, gates.
fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

fn load(path: &PathBuf) -> Result<Campaign, String> {
    let spec = Spec::from_path(path).map_err(|e| e.to_string())?;
    let base = spec.dir.clone().unwrap_or_default();
    spec.build(&registry(), base).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let campaign = match load(&args.spec) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.command == "gc" {
        return gc(&campaign, &args);
    }
    for w in campaign.warnings() {
        eprintln!("warning: {w}");
    }
    if args.command == "check" {
        println!(
            "{}: ok ({} jobs x {} steps; delivers {})",
            args.spec.display(),
            campaign.jobs().len(),
            campaign.steps().len(),
            campaign.deliver_steps().join(", ")
        );
        return ExitCode::SUCCESS;
    }
    if args.dry_run {
        let campaign = match args.shard {
            Some(s) => campaign.shard(s),
            None => campaign,
        };
        if args.json {
            // One line per job as it is planned, then the totals: a million-job
            // plan streams instead of building one document.
            use std::io::Write as _;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for job in campaign.plan_jobs() {
                if serde_json::to_writer(&mut out, &job).is_err() || out.write_all(b"\n").is_err() {
                    return ExitCode::from(1);
                }
            }
            let plan = campaign.plan();
            let totals = serde_json::json!({
                "campaign": plan.campaign,
                "steps": plan.steps,
                "deliver": plan.deliver,
                "job_count": plan.job_count,
                "generations": plan.generations,
                "estimated_cost_usd": plan.estimated_cost_usd,
            });
            let _ = writeln!(out, "{totals}");
        } else {
            let plan = campaign.plan();
            print!("{}", plan.table());
        }
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if args.command == "merge" {
        return rt.block_on(merge(campaign, args));
    }
    rt.block_on(run(campaign, args))
}

/// `creative gc`: store housekeeping of the output folder.
fn gc(campaign: &Campaign, args: &Args) -> ExitCode {
    let started = std::time::Instant::now();
    match campaign.gc(args.out.as_deref(), args.dry_run) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                println!("{} ({:.2} s)", report.summary_line(), started.elapsed().as_secs_f64());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn merge(campaign: Campaign, args: Args) -> ExitCode {
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| campaign.default_out_dir().to_path_buf());
    match campaign.merge(&out_dir, &args.shard_dirs).await {
        Ok((manifest, report)) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print!("{}", report.table());
                println!(
                    "\nmerged {} shard folders: {} of {} jobs complete, {} assets into {}",
                    args.shard_dirs.len(),
                    manifest.jobs_complete,
                    manifest.jobs,
                    manifest.assets,
                    out_dir.display()
                );
            }
            if manifest.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(campaign: Campaign, args: Args) -> ExitCode {
    if args.preflight {
        if let Err(e) = campaign.preflight(Duration::from_secs(5)).await {
            eprintln!(
                "error: {e}\n(start the server or fix its base_url; --no-preflight starts anyway, and the run waits for it)"
            );
            return ExitCode::from(2);
        }
    }
    let cancel = CancellationToken::new();
    let opts = CampaignOptions {
        out_dir: args.out.clone(),
        resume: args.resume,
        force: args.force,
        dry_run: false,
        events: true,
        cancel: Some(cancel.clone()),
        shard: args.shard,
    };
    let mut run = match campaign.start(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let out_dir = run.out_dir().to_path_buf();
    if let (Some(s), Some(limit)) = (args.shard, campaign.max_cost_usd()) {
        eprintln!(
            "shard {s}: money budget ${:.4}, its 1/{} share of the spec's ${limit:.2}",
            limit / f64::from(s.count),
            s.count
        );
    }
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if stop_signal().await {
                eprintln!("\ncancelling: finished steps are kept; continue with --resume");
                cancel.cancel();
                if stop_signal().await {
                    std::process::exit(130);
                }
            }
        });
    }
    let total = match args.shard {
        Some(s) => campaign.jobs().shard(s).count(),
        None => campaign.jobs().len(),
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:32} {pos}/{len} jobs  {msg}  [{elapsed_precise} < {eta}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(250));
        b
    };
    let mut events = run.events();
    let quiet = args.quiet;
    let progress = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let Some(events) = events.as_mut() else { return };
            let (mut cost, mut failed, mut gate_failures, mut resumed, mut hits) = (0.0, 0u64, 0u64, 0u64, 0u64);
            let mut notices = Notices::new(&bar, quiet);
            while let Some(e) = events.recv().await {
                match e.kind {
                    EventKind::Retry {
                        step, provider, reason, ..
                    } => {
                        notices.once(format!("retry {step} {provider}"), || {
                            format!("note: {step}: retrying {provider} ({reason}); further retries are counted in the report")
                        });
                        continue;
                    }
                    EventKind::Fallback {
                        step, from, to, reason, ..
                    } => {
                        notices.once(format!("fallback {step} {from} {to}"), || {
                            format!("note: {step}: falling back from {from} to {to} ({reason})")
                        });
                        continue;
                    }
                    EventKind::Waiting {
                        step, delay_ms, reason, ..
                    } if delay_ms >= 1000 => {
                        notices.every(format!("waiting {step}"), Duration::from_secs(10), || {
                            format!(
                                "note: {step}: {reason}; waiting {:.0} s before trying again (Ctrl-C to stop, then --resume)",
                                delay_ms as f64 / 1e3
                            )
                        });
                        continue;
                    }
                    EventKind::AttemptFinished { cost_usd, .. } => cost += cost_usd,
                    EventKind::GateVerdict { passed: false, .. } => gate_failures += 1,
                    EventKind::StepResumed { .. } => resumed += 1,
                    EventKind::CacheHit { .. } => hits += 1,
                    EventKind::JobFinished { status, progress, .. } => {
                        if status == Status::Failed {
                            failed += 1;
                        }
                        bar.set_position(progress.jobs_done);
                    }
                    _ => continue,
                }
                bar.set_message(format!(
                    "${cost:.4}  failed {failed}  gate failures {gate_failures}  resumed steps {resumed}  cache hits {hits}"
                ));
            }
        })
    };
    let result = run.wait().await;
    let _ = progress.await;
    bar.finish_and_clear();
    match result {
        Ok(done) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&done.report).unwrap_or_default());
            } else {
                print!("{}", done.report.table());
                println!("\n{}", done.report.summary_line());
                println!(
                    "outputs: {} ({} assets; manifest.json, report.json{})",
                    out_dir.display(),
                    done.manifest.assets,
                    if out_dir.join("contact_sheet.html").exists() {
                        ", contact_sheet.html"
                    } else {
                        ""
                    }
                );
            }
            for d in &done.outcome.degraded {
                eprintln!(
                    "degraded: provider `{}` failed {} call(s) that {} then served ({}: {})",
                    d.provider,
                    d.calls,
                    d.served_by
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.class,
                    d.sample
                );
            }
            match done.outcome.status {
                Status::Cancelled => eprintln!("run cancelled; continue it with --resume"),
                Status::BudgetExhausted => {
                    eprintln!("run stopped by the budget; raise it and continue with --resume")
                }
                _ => {}
            }
            exit_code(done.outcome.status)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What the run tells the user while it goes, above the progress bar (or on
/// stderr when there is none), each kind of notice once or once per period, so a
/// provider that keeps failing does not flood the terminal.
struct Notices<'a> {
    bar: &'a indicatif::ProgressBar,
    quiet: bool,
    last: std::collections::HashMap<String, std::time::Instant>,
}

impl<'a> Notices<'a> {
    fn new(bar: &'a indicatif::ProgressBar, quiet: bool) -> Self {
        Notices {
            bar,
            quiet,
            last: std::collections::HashMap::new(),
        }
    }

    fn once(&mut self, key: String, text: impl FnOnce() -> String) {
        self.every(key, Duration::MAX, text);
    }

    fn every(&mut self, key: String, period: Duration, text: impl FnOnce() -> String) {
        if self.quiet {
            return;
        }
        let now = std::time::Instant::now();
        if self.last.get(&key).is_some_and(|t| now.duration_since(*t) < period) {
            return;
        }
        self.last.insert(key, now);
        let line = text();
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// Ctrl-C, or on Unix SIGTERM (a farm's or systemd's stop) or SIGHUP (a closed
/// terminal): each cancels the run the same way, so prompts on remote servers are
/// taken back and finished steps are kept. `false` when no signal can be awaited.
async fn stop_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            return tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                _ = term.recv() => true,
                _ = hup.recv() => true,
            };
        }
    }
    tokio::signal::ctrl_c().await.is_ok()
}
