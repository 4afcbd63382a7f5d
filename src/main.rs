//! `creative`: the campaign runner.
//!
//! ```text
//! creative run SPEC [--resume] [--dry-run] [--force] [--out DIR] [--shard K/N] [--json] [--quiet]
//! creative check SPEC [--strict]
//! creative merge SPEC SHARD_DIR... [--out DIR] [--json]
//! creative gc SPEC [--out DIR] [--dry-run] [--json]
//! creative status OUT [--json]
//! creative init [FILE] [--provider procedural|openai|comfyui]
//! creative explain [KIND]
//! creative schema [--format json|markdown]
//! creative brief BRIEF --provider ID [--providers FILE] [-o FILE] [--max-repairs N]
//! creative review OUT [--port P]
//! creative advise OUT [--spec FILE]
//! creative completions SHELL
//! ```
//!
//! Global options: `--log-level LEVEL` (else `RUST_LOG`, else `warn`) and
//! `--log-format human|json`. Every subcommand has its own `--help`.
//!
//! `run` expands the spec's matrix, runs every job (a progress bar on a
//! terminal, a progress line every few seconds elsewhere), delivers the assets
//! into the output folder (`./out` unless the spec or `--out` says otherwise)
//! with `manifest.json`, `report.json` and `contact_sheet.html`, and prints the
//! report. `--resume` continues a run that was killed or cancelled; `--force`
//! bypasses the cache; `--dry-run` prints the plan (jobs, expected and
//! worst-case cost and time against the budget) without calling any provider.
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

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and --version go to stdout with 0; usage errors to stderr with 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli::log::init(cli.log_level, cli.log_format);
    match cli.command {
        Command::Run(a) => cli::run::run(a, cli.log_format),
        Command::Check(a) => cli::run::check(a),
        Command::Merge(a) => cli::run::merge(a),
        Command::Gc(a) => cli::run::gc(a),
        Command::Status(a) => cli::status::status(a),
        Command::Init(a) => cli::init::init(a),
        Command::Explain(a) => cli::schema::explain(a),
        Command::Schema(a) => cli::schema::schema(a),
        Command::Brief(a) => cli::brief::brief(a),
        Command::Review(a) => cli::review::review(a),
        Command::Advise(a) => cli::advise::advise(a),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "creative",
                &mut out,
            );
            cli::out::print(&String::from_utf8_lossy(&out));
            ExitCode::SUCCESS
        }
    }
}

/// Keep the large buffers of image work in the allocator's pools.
///
/// Every job of a 1024 px campaign allocates a few buffers of 1 to 4 MB (the
/// response, the decoded PNG, the pixels, each rendition). glibc's defaults hand
/// buffers that size back to the kernel when freed and fault fresh zeroed pages
/// in for the next job, and spread the blocking pool's threads over up to eight
/// arenas a core, each keeping its own free memory. Measured on the 200-job
/// renditions campaign (2 cores): serving those buffers from the heap, trimming
/// it only past 32 MiB free and one arena a core cut the system time from 0.5-0.6
/// to 0.31-0.36 s and the peak RSS from 280 to 220 MB; the 10k small-job
/// campaign did not move. A binary's choice, so the library leaves hosts'
/// allocators alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets glibc's malloc parameters, before any other
    // thread exists; a refused value (it returns 0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
