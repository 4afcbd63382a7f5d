//! How a run shows progress: a bar on a terminal; elsewhere (a farm's log, CI)
//! a line every few seconds with jobs done / total, rate, ETA and spend, so a
//! log that is read while the run goes is never empty until the end.

use std::io::Write;
use std::time::{Duration, Instant};

use super::args::LogFormat;

/// Counts of a run so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Jobs finished, resumed ones included.
    pub done: u64,
    /// Jobs finished by this session.
    pub done_here: u64,
    /// Jobs that failed.
    pub failed: u64,
    /// Money spent by this session.
    pub cost_usd: f64,
    /// Gate verdicts that failed.
    pub gate_failures: u64,
    /// Steps kept from an earlier session.
    pub resumed: u64,
    /// Cache hits.
    pub cache_hits: u64,
}

/// Where progress goes.
pub enum Progress {
    /// Nothing (`--quiet`).
    Off,
    /// The bar on a terminal.
    Bar(indicatif::ProgressBar),
    /// Lines on stderr.
    Lines {
        /// The shape of the lines.
        format: LogFormat,
        /// Time between lines.
        every: Duration,
        /// The run's start.
        started: Instant,
        /// The last line's time, if any.
        last: Option<Instant>,
        /// Jobs in all.
        total: u64,
    },
}

impl Progress {
    /// The progress of a run of `total` jobs.
    pub fn new(total: u64, quiet: bool, format: LogFormat, every: Duration) -> Progress {
        if quiet {
            return Progress::Off;
        }
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) && format == LogFormat::Human {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:32} {pos}/{len} jobs  {msg}  [{elapsed_precise} < {eta}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(250));
            super::log::set_bar(&b);
            return Progress::Bar(b);
        }
        Progress::Lines {
            format,
            every,
            started: Instant::now(),
            last: None,
            total,
        }
    }

    /// The time until the next line is due (None: no lines are printed).
    pub fn tick_period(&self) -> Option<Duration> {
        match self {
            Progress::Lines { every, .. } => Some(*every),
            _ => None,
        }
    }

    /// Show `c`: the bar moves at once; a line is printed when one is due.
    pub fn update(&mut self, c: &Counts) {
        match self {
            Progress::Off => {}
            Progress::Bar(b) => {
                b.set_position(c.done);
                b.set_message(format!(
                    "${:.4}  failed {}  gate failures {}  resumed steps {}  cache hits {}",
                    c.cost_usd, c.failed, c.gate_failures, c.resumed, c.cache_hits
                ));
            }
            Progress::Lines { every, last, .. } => {
                if last.is_some_and(|t| t.elapsed() < *every) {
                    return;
                }
                self.line(c);
            }
        }
    }

    /// Print a line now (lines only): at the period's tick and at the end.
    pub fn line(&mut self, c: &Counts) {
        let Progress::Lines {
            format,
            started,
            last,
            total,
            ..
        } = self
        else {
            return;
        };
        *last = Some(Instant::now());
        let elapsed = started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            c.done_here as f64 / elapsed
        } else {
            0.0
        };
        let left = total.saturating_sub(c.done);
        let eta = (rate > 0.0).then(|| left as f64 / rate);
        let text = match format {
            LogFormat::Json => serde_json::json!({
                "event": "progress",
                "jobs_done": c.done,
                "jobs_total": *total,
                "jobs_failed": c.failed,
                "rate_jobs_per_s": (rate * 100.0).round() / 100.0,
                "eta_s": eta.map(|e| e.round()),
                "elapsed_s": elapsed.round(),
                "cost_usd": c.cost_usd,
            })
            .to_string(),
            LogFormat::Human => format!(
                "progress: {}/{} jobs ({:.0}%) | {} failed | {:.2} jobs/s | ETA {} | spent ${:.4} | {} elapsed",
                c.done,
                total,
                if *total > 0 {
                    c.done as f64 * 100.0 / *total as f64
                } else {
                    100.0
                },
                c.failed,
                rate,
                eta.map(duration_text).unwrap_or_else(|| "-".into()),
                c.cost_usd,
                duration_text(elapsed),
            ),
        };
        let _ = writeln!(std::io::stderr(), "{text}");
    }

    /// A notice for the user: above the bar, or a line on stderr.
    pub fn note(&self, line: &str) {
        match self {
            Progress::Off => {}
            Progress::Bar(b) => b.println(line),
            Progress::Lines { .. } => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    /// The run is over: clear the bar, or print the last line.
    pub fn finish(&mut self, c: &Counts) {
        match self {
            Progress::Off => {}
            Progress::Bar(b) => {
                b.finish_and_clear();
                super::log::clear_bar();
            }
            Progress::Lines { .. } => self.line(c),
        }
    }
}

/// `75 s` as `1m15s`, `3700 s` as `1h01m`.
pub fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn durations_read_as_seconds_minutes_or_hours() {
        assert_eq!(duration_text(0.4), "0s");
        assert_eq!(duration_text(75.0), "1m15s");
        assert_eq!(duration_text(3700.0), "1h01m");
        assert_eq!(duration_text(-3.0), "0s");
    }
}
