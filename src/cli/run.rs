//! `run`, `check`, `merge` and `gc`: the subcommands that build the spec.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use creative::campaign::spec::{Campaign, CampaignOptions, Registry, Spec};
use creative::engine::{CancellationToken, EventKind, Status};

use super::args::{CheckArgs, GcArgs, LogFormat, MergeArgs, RunArgs};
use super::error::CliError;
use super::out;
use super::progress::{Counts, Progress};

/// "Did not start": a bad command line or spec, a busy folder, a server not up.
pub const DID_NOT_START: u8 = 2;

/// The exit code that says how a run ended (see the binary's docs).
pub fn exit_code(status: Status) -> ExitCode {
    match status {
        Status::Succeeded => ExitCode::SUCCESS,
        Status::Degraded => ExitCode::from(3),
        Status::Partial => ExitCode::from(4),
        Status::BudgetExhausted => ExitCode::from(5),
        Status::Cancelled => ExitCode::from(130),
        _ => ExitCode::from(1),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(DID_NOT_START)
}

/// Every kind this build knows: providers (and the webhook sink), steps, gates.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

/// Read and build a spec.
pub fn load(path: &Path) -> Result<(Spec, Campaign), CliError> {
    let spec = Spec::from_path(path).map_err(CliError::Spec)?;
    let base = spec.dir.clone().unwrap_or_default();
    let campaign = spec.build(&registry(), base).map_err(CliError::Spec)?;
    Ok((spec, campaign))
}

/// `--out`, checked: an empty path or a file-system root is refused before
/// anything is written.
fn out_dir(out: Option<OsString>) -> Result<Option<PathBuf>, CliError> {
    let Some(out) = out else { return Ok(None) };
    let out = PathBuf::from(out);
    creative::campaign::spec::check_out_dir(&out).map_err(CliError::OutDir)?;
    Ok(Some(out))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Print the static checks' findings; true when there are errors.
fn report_findings(spec: &Spec, campaign: &Campaign) -> (usize, usize) {
    let findings = super::checks::check(spec, campaign, &registry());
    let (mut errors, mut warnings) = (0, 0);
    for f in &findings {
        match f.level {
            super::checks::Level::Error => {
                errors += 1;
                eprintln!("error: {}", f.message);
            }
            super::checks::Level::Warning => {
                warnings += 1;
                eprintln!("warning: {}", f.message);
            }
        }
    }
    (errors, warnings)
}

/// `creative check`.
pub fn check(a: CheckArgs) -> ExitCode {
    let (spec, campaign) = match load(&a.spec) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut warnings = 0;
    for w in campaign.warnings() {
        warnings += 1;
        eprintln!("warning: {w}");
    }
    let (errors, more) = report_findings(&spec, &campaign);
    warnings += more;
    if errors > 0 || (a.strict && warnings > 0) {
        eprintln!(
            "{}: {errors} errors, {warnings} warnings{}",
            a.spec.display(),
            if errors == 0 { " (--strict)" } else { "" }
        );
        return ExitCode::from(DID_NOT_START);
    }
    out::println(&format!(
        "{}: ok ({} jobs x {} steps; delivers {}){}",
        a.spec.display(),
        campaign.jobs().len(),
        campaign.steps().len(),
        campaign.deliver_steps().join(", "),
        if warnings > 0 {
            format!("; {warnings} warnings")
        } else {
            String::new()
        }
    ));
    ExitCode::SUCCESS
}

/// `creative gc`: store housekeeping of the output folder.
pub fn gc(a: GcArgs) -> ExitCode {
    let out = match out_dir(a.out) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let (_, campaign) = match load(&a.spec) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let started = Instant::now();
    match campaign.gc(out.as_deref(), a.dry_run) {
        Ok(report) => {
            if a.json {
                out::println(&serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                out::println(&format!(
                    "{} ({:.2} s)",
                    report.summary_line(),
                    started.elapsed().as_secs_f64()
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `creative merge`.
pub fn merge(a: MergeArgs) -> ExitCode {
    let out = match out_dir(a.out) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let (_, campaign) = match load(&a.spec) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let out_dir = out.unwrap_or_else(|| campaign.default_out_dir().to_path_buf());
    match rt.block_on(campaign.merge(&out_dir, &a.shard_dirs)) {
        Ok((manifest, report)) => {
            if a.json {
                out::println(&serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                out::print(&super::tables::report(&report));
                out::println(&format!(
                    "\nmerged {} shard folders: {} of {} jobs complete, {} assets into {}",
                    a.shard_dirs.len(),
                    manifest.jobs_complete,
                    manifest.jobs,
                    manifest.assets,
                    out_dir.display()
                ));
            }
            if manifest.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(e),
    }
}

/// `creative run`.
pub fn run(a: RunArgs, log_format: LogFormat) -> ExitCode {
    let out = match out_dir(a.out.clone()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let (spec, campaign) = match load(&a.spec) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if !a.dry_run {
        // A dry run needs no key: the plan says what a missing one would do.
        for w in campaign.warnings() {
            eprintln!("warning: {w}");
        }
    }
    let (errors, _) = report_findings(&spec, &campaign);
    if errors > 0 {
        eprintln!("{}: {errors} errors; `creative check` lists them", a.spec.display());
        return ExitCode::from(DID_NOT_START);
    }
    if a.dry_run {
        let campaign = match a.shard {
            Some(s) => campaign.shard(s),
            None => campaign,
        };
        return super::plan::dry_run(&spec, &campaign, out.as_deref(), a.json);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(run_async(campaign, a, out, log_format))
}

async fn run_async(campaign: Campaign, a: RunArgs, out: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    if !a.no_preflight {
        if let Err(e) = campaign.preflight(Duration::from_secs(5)).await {
            return fail(format!(
                "{e}\n(start the server or fix its base_url; --no-preflight starts anyway, and the run waits for it)"
            ));
        }
    }
    let cancel = CancellationToken::new();
    let opts = CampaignOptions {
        out_dir: out,
        resume: a.resume,
        force: a.force,
        dry_run: false,
        events: true,
        cancel: Some(cancel.clone()),
        shard: a.shard,
    };
    let mut run = match campaign.start(opts) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let out_dir = run.out_dir().to_path_buf();
    if let (Some(s), Some(limit)) = (a.shard, campaign.max_cost_usd()) {
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
    let total = match a.shard {
        Some(s) => campaign.jobs().shard(s).count(),
        None => campaign.jobs().len(),
    };
    let mut progress = Progress::new(total, a.quiet, log_format, Duration::from_secs(a.progress_every));
    let mut events = run.events();
    let quiet = a.quiet;
    let watcher = tokio::spawn(async move {
        let Some(events) = events.as_mut() else {
            progress.finish(&Counts::default());
            return;
        };
        let mut c = Counts::default();
        let mut notices = Notices::default();
        let period = progress.tick_period().unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            let e = tokio::select! {
                e = events.recv() => match e {
                    Some(e) => e,
                    None => break,
                },
                _ = tick.tick() => {
                    progress.line(&c);
                    continue;
                }
            };
            let note = match e.kind {
                EventKind::Retry {
                    step, provider, reason, ..
                } => notices.once(format!("retry {step} {provider}"), || {
                    format!("note: {step}: retrying {provider} ({reason}); further retries are counted in the report")
                }),
                EventKind::Fallback {
                    step, from, to, reason, ..
                } => notices.once(format!("fallback {step} {from} {to}"), || {
                    format!("note: {step}: falling back from {from} to {to} ({reason})")
                }),
                EventKind::Waiting {
                    step, delay_ms, reason, ..
                } if delay_ms >= 1000 => notices.every(format!("waiting {step}"), Duration::from_secs(10), || {
                    format!(
                        "note: {step}: {reason}; waiting {:.0} s before trying again (Ctrl-C to stop, then --resume)",
                        delay_ms as f64 / 1e3
                    )
                }),
                EventKind::AttemptFinished { cost_usd, .. } => {
                    c.cost_usd += cost_usd;
                    None
                }
                EventKind::GateVerdict { passed: false, .. } => {
                    c.gate_failures += 1;
                    None
                }
                EventKind::StepResumed { .. } => {
                    c.resumed += 1;
                    None
                }
                EventKind::CacheHit { .. } => {
                    c.cache_hits += 1;
                    None
                }
                EventKind::JobFinished { status, progress, .. } => {
                    if status == Status::Failed {
                        c.failed += 1;
                    }
                    c.done = progress.jobs_done;
                    c.done_here += 1;
                    None
                }
                _ => continue,
            };
            if let Some(line) = note {
                if !quiet {
                    progress.note(&line);
                }
            }
            progress.update(&c);
        }
        progress.finish(&c);
    });
    let result = run.wait().await;
    // The events end with the run, and the watcher with them.
    let _ = watcher.await;
    match result {
        Ok(done) => {
            // A reviewed folder: the new manifest records each decision that holds.
            if creative::campaign::review::review_path(&out_dir).exists() {
                if let Err(e) = creative::campaign::review::annotate_manifest(&out_dir) {
                    eprintln!("warning: review decisions not recorded in the manifest: {e}");
                }
            }
            if a.json {
                out::println(&serde_json::to_string_pretty(&done.report).unwrap_or_default());
            } else {
                out::print(&super::tables::report(&done.report));
                out::println(&format!(
                    "\noutputs: {} ({} assets; manifest.json, report.json{})",
                    out_dir.display(),
                    done.manifest.assets,
                    if out_dir.join("contact_sheet.html").exists() {
                        ", contact_sheet.html"
                    } else {
                        ""
                    }
                ));
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
        Err(e) => fail(e),
    }
}

/// What the run tells the user while it goes, each kind of notice once or once
/// per period, so a provider that keeps failing does not flood the log.
#[derive(Default)]
struct Notices {
    last: HashMap<String, Instant>,
}

impl Notices {
    fn once(&mut self, key: String, text: impl FnOnce() -> String) -> Option<String> {
        self.every(key, Duration::MAX, text)
    }

    fn every(&mut self, key: String, period: Duration, text: impl FnOnce() -> String) -> Option<String> {
        let now = Instant::now();
        if self.last.get(&key).is_some_and(|t| now.duration_since(*t) < period) {
            return None;
        }
        self.last.insert(key, now);
        Some(text())
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
