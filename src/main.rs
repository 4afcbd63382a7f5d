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

mod alloc;
mod cli;

use std::process::ExitCode;

use clap::Parser as _;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    alloc::tune();
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
