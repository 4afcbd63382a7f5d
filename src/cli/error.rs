//! Why a subcommand did not start: a spec that does not load, a bad `--out`,
//! a file it needs that is missing or malformed, a provider it cannot set up.
//!
//! Each variant's message names the flag or file and what is wrong with it, as
//! the user typed it; the CLI prints the message (`error: ...`) and exits with
//! "did not start". The cause is part of each message rather than a
//! `source()`, since the message is all the CLI shows.

use std::path::PathBuf;

use creative::agent::rank::RankError;
use creative::campaign::spec::{SpecError, UnsafeOutputDir};
use creative::engine::ConfigError;

/// Why a subcommand did not start.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The spec does not read, parse or build; said in the spec's terms (TOML
    /// tables and lists, not Rust types).
    #[error("{}", super::schema::spec_terms(&.0.to_string()))]
    Spec(SpecError),
    /// `--out` names a folder the runner must not write into.
    #[error("--out: {0}")]
    OutDir(UnsafeOutputDir),
    /// The async runtime did not start (out of threads or file descriptors).
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A file the command reads cannot be read; `hint` says what it should be.
    #[error("{flag}{}: {error}{hint}", path.display())]
    Read {
        /// The flag that named the file, with a trailing space (`"--providers "`), or empty.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
        /// What the file should be, in parentheses with a leading space, or empty.
        hint: String,
    },
    /// A JSON file that does not parse.
    #[error("{}: {error}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why it does not parse.
        error: serde_json::Error,
    },
    /// A TOML file that does not parse.
    #[error("{}: {error}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and why it does not parse.
        error: toml::de::Error,
    },
    /// `--provider` names a provider the providers file does not declare.
    #[error("--provider {id}: {} declares no [providers.{id}]; it declares: {declared}", file.display())]
    NoSuchProvider {
        /// The provider id asked for.
        id: String,
        /// The providers file.
        file: PathBuf,
        /// The ids it declares, comma-separated, or `(none)`.
        declared: String,
    },
    /// The provider's `kind` is not one this build knows.
    #[error("providers.{id}.kind: unknown provider kind `{kind}`")]
    UnknownKind {
        /// The provider id.
        id: String,
        /// The kind it names.
        kind: String,
    },
    /// The provider's settings are refused; the field is prefixed with
    /// `providers.ID`.
    #[error("{0}")]
    ProviderSettings(ConfigError),
    /// The ranking options are out of range.
    #[error("{0}")]
    Rank(#[from] RankError),
}

/// Why `creative brief`'s loader refused a model's answer (the same checks as
/// `creative check`); the message goes back to the model for repair.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The TOML does not parse, or the spec does not build.
    #[error("{0}")]
    Spec(SpecError),
    /// The spec builds but the static checks find errors, one per line.
    #[error("{}", .0.join("\n"))]
    Checks(Vec<String>),
}
