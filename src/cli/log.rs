//! The log: the library's `tracing` events (for example "no price for this
//! model; cost counted as 0") on stderr, as human lines or JSON objects.
//!
//! The filter is `--log-level` when given, else `RUST_LOG` when set, else
//! `warn`. Lines are written around the progress bar, never through it.

use std::io::Write;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use super::args::{LogFormat, LogLevel};

/// The progress bar on the terminal, if one is drawn: log lines suspend it.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Draw log lines around `bar` until [`clear_bar`].
pub fn set_bar(bar: &indicatif::ProgressBar) {
    if let Ok(mut b) = BAR.lock() {
        *b = Some(bar.clone());
    }
}

/// Log lines go straight to stderr again.
pub fn clear_bar() {
    if let Ok(mut b) = BAR.lock() {
        *b = None;
    }
}

/// Install the subscriber. A bad `RUST_LOG` is reported and `warn` used instead.
pub fn init(level: Option<LogLevel>, format: LogFormat) {
    let (filter, note) = match level {
        Some(l) => (EnvFilter::new(level_name(l)), None),
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
                Ok(f) => (f, None),
                Err(e) => (
                    EnvFilter::new("warn"),
                    Some(format!("RUST_LOG=`{v}` is not a log filter ({e}); logging warnings")),
                ),
            },
            _ => (EnvFilter::new("warn"), None),
        },
    };
    let ansi = format == LogFormat::Human && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(ansi);
    let installed = match format {
        LogFormat::Human => builder.without_time().with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    if installed.is_ok() {
        if let Some(n) = note {
            tracing::warn!("{n}");
        }
    }
}

fn level_name(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// Writes each log line to stderr, above the progress bar when there is one.
#[derive(Clone, Copy)]
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
