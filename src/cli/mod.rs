//! The runner's parts: the command line, output that survives closed pipes,
//! the log, progress, tables, the schema and reference, and the subcommands.

pub mod advise;
pub mod args;
pub mod brief;
pub mod checks;
pub mod error;
pub mod init;
pub mod log;
pub mod out;
pub mod plan;
pub mod progress;
pub mod review;
pub mod run;
pub mod schema;
pub mod status;
pub mod tables;
