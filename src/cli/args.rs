//! The command line, as clap types: each subcommand with its own help.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use creative::campaign::spec::Shard;

/// The exit codes, shown under `creative --help` and `creative run --help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    succeeded: every job, each by its first-choice provider
  1    failed: no job succeeded (merge: the merged folder is incomplete)
  2    did not start: a bad command line or spec, a busy output folder, a server that is not up
  3    degraded: every job succeeded, but a fallback served work its primary provider failed to do
  4    partial: some jobs succeeded, some failed
  5    budget: a money, attempt or time limit stopped it (raise it, then --resume)
  130  cancelled (Ctrl-C, SIGTERM or SIGHUP); continue with --resume";

/// Run generative-AI campaigns from a spec: generate, check, finish and deliver
/// every job of its matrix.
#[derive(Debug, Parser)]
#[command(name = "creative", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to log on stderr: error, warn, info, debug or trace (default warn;
    /// RUST_LOG, such as `creative=debug`, filters finer and is used when this is not given).
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// How log lines (and the progress lines of a run whose stderr is not a
    /// terminal) are written: `human` lines or one `json` object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// A log level for `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings (the default).
    Warn,
    /// What the run does, step by step in broad strokes.
    Info,
    /// Details for a bug report.
    Debug,
    /// Everything.
    Trace,
}

/// The shape of log lines for `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object per line, for log collectors on a farm.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a campaign: every job of the spec's matrix, delivered into the output folder.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Check a spec without running it: parse, build, and the static checks.
    Check(CheckArgs),
    /// Combine the output folders of a sharded run (`run --shard K/N`) into one.
    Merge(MergeArgs),
    /// Remove from an output folder's store what no run, cache or list needs.
    Gc(GcArgs),
    /// Say what an output folder holds: campaign, spec hash, jobs done, spend, last run.
    Status(StatusArgs),
    /// Write a commented starter campaign spec.
    Init(InitArgs),
    /// Print the settings of a step, gate or provider kind, or list the kinds.
    Explain(ExplainArgs),
    /// Print the JSON Schema of the spec (for editors), or its reference as Markdown.
    Schema(SchemaArgs),
    /// Turn a brief into a commented spec with a language model (validated, repaired).
    Brief(BriefArgs),
    /// Review a delivered folder in the browser: approve or reject each asset (with a note).
    Review(ReviewArgs),
    /// Findings from a run and its review, with the spec changes they propose as a diff.
    Advise(AdviseArgs),
    /// Print a shell completion script (for example `creative completions bash`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `creative run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The campaign spec (TOML, or JSON by its `.json` extension).
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Continue the run recorded in the output folder (finished steps are not redone).
    #[arg(long)]
    pub resume: bool,
    /// Print the job matrix, the expected and worst-case cost and time against the
    /// budget; call no provider and need no API key.
    #[arg(long)]
    pub dry_run: bool,
    /// Bypass the cache (every generation calls its provider again).
    #[arg(long)]
    pub force: bool,
    /// Output folder (default: the spec's output.dir, else ./out).
    #[arg(long, short = 'o', value_name = "DIR", value_parser = clap::builder::OsStringValueParser::new())]
    pub out: Option<OsString>,
    /// Run only the K-th of N parts of the jobs (split by job key; any machine can
    /// run any part); `merge` then combines the parts' output folders.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Print the report (or the dry run's plan, one job per line) as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Start even if a provider's server does not answer (by default a run first
    /// checks that local servers such as ComfyUI and Ollama are up).
    #[arg(long)]
    pub no_preflight: bool,
    /// Seconds between progress lines when stderr is not a terminal (1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub progress_every: u64,
}

/// `creative check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The campaign spec.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Treat warnings as errors (exit 2 when there is any).
    #[arg(long)]
    pub strict: bool,
}

/// `creative merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The campaign spec every shard ran.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The shards' output folders.
    #[arg(value_name = "SHARD_DIR", required = true)]
    pub shard_dirs: Vec<PathBuf>,
    /// The merged output folder (default: the spec's output.dir, else ./out).
    #[arg(long, short = 'o', value_name = "DIR", value_parser = clap::builder::OsStringValueParser::new())]
    pub out: Option<OsString>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `creative gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The campaign spec.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// The output folder (default: the spec's output.dir, else ./out).
    #[arg(long, short = 'o', value_name = "DIR", value_parser = clap::builder::OsStringValueParser::new())]
    pub out: Option<OsString>,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `creative status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The output folder of a run.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `creative brief`.
#[derive(Debug, Args)]
pub struct BriefArgs {
    /// The brief (Markdown or text): products, audience, channels and sizes,
    /// locales, tone, brand kit, budget, deadline.
    #[arg(value_name = "BRIEF")]
    pub brief: PathBuf,
    /// The text provider that writes the spec: an id of the providers file.
    #[arg(long, value_name = "ID")]
    pub provider: String,
    /// A TOML (or JSON) file with `[providers.ID]` tables, as in a spec.
    #[arg(long, value_name = "FILE", default_value = "providers.toml")]
    pub providers: PathBuf,
    /// The spec to write.
    #[arg(short, long, value_name = "FILE", default_value = "campaign.toml")]
    pub output: PathBuf,
    /// Answers the loader refused that go back to the model for repair (0 to 10).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub max_repairs: u32,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `creative review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The output folder a run delivered into (with manifest.json).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// `creative advise`.
#[derive(Debug, Args)]
pub struct AdviseArgs {
    /// The output folder a run delivered into (manifest.json, report.json).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The spec it ran, to show the proposed changes as a diff of it.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// A text provider that ranks the findings and says why each ranks where
    /// it does (an id of the providers file); the findings and the diff stay
    /// the rules'.
    #[arg(long, value_name = "ID")]
    pub provider: Option<String>,
    /// A TOML (or JSON) file with `[providers.ID]` tables (default: the
    /// `--spec` file, else providers.toml).
    #[arg(long, value_name = "FILE")]
    pub providers: Option<PathBuf>,
    /// Refused rankings that go back to the model for repair (0 to 5).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub max_repairs: u32,
}

/// `creative init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The file to write (refused if it exists).
    #[arg(value_name = "FILE", default_value = "campaign.toml")]
    pub file: PathBuf,
    /// The provider the starter uses: `procedural` needs no key and no network.
    #[arg(long, value_enum, default_value_t = StarterProvider::Procedural)]
    pub provider: StarterProvider,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// The providers `creative init` can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StarterProvider {
    /// Offline test images (no key, no network).
    Procedural,
    /// OpenAI's image API (OPENAI_API_KEY).
    Openai,
    /// A local ComfyUI server.
    Comfyui,
}

/// `creative explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A step, gate or provider kind (`reframe`, `judge`, `openai`...); none lists them all.
    #[arg(value_name = "KIND")]
    pub kind: Option<String>,
}

/// `creative schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// `json`: the JSON Schema; `markdown`: the reference page (docs/spec.md).
    #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
    pub format: SchemaFormat,
}

/// What `creative schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// The JSON Schema.
    Json,
    /// The Markdown reference.
    Markdown,
}

fn parse_shard(s: &str) -> Result<Shard, creative::engine::ConfigError> {
    s.parse()
}
