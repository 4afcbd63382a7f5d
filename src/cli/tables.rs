//! Tables that fit: wrapped to the terminal's width (or `COLUMNS`), not cut
//! mid-row; unwrapped when stdout is a file or pipe and `COLUMNS` is unset.

use comfy_table::{presets, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table};

use creative::campaign::spec::JobPlan;
use creative::engine::deliver::Report;

/// The width to fit tables to: the terminal's, else `COLUMNS`, else none.
fn width() -> Option<u16> {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(std::io::stdout()) {
        return Some(w);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| (20..=2000).contains(w))
}

/// An empty table with the house style and the width to fit.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    t.load_preset(if tty {
        presets::UTF8_BORDERS_ONLY
    } else {
        presets::ASCII_BORDERS_ONLY_CONDENSED
    });
    match width() {
        Some(w) => {
            t.set_width(w).set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t.set_header(header.iter().map(Cell::new));
    // One space between columns (the preset's border is another), so eleven
    // columns of numbers still leave the names room at 80 columns.
    for c in t.column_iter_mut() {
        c.set_padding((0, 1));
    }
    if let Some(first) = t.column_mut(0) {
        first.set_padding((1, 1));
        first.set_constraint(ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(10)));
    }
    t
}

/// Right-align the columns from `from` on (numbers), and never wrap them: a
/// narrow terminal wraps the text columns instead of splitting a number.
fn numbers_right(t: &mut Table, from: usize) {
    let n = t.column_count();
    numbers(t, from..n);
}

pub fn numbers(t: &mut Table, columns: impl IntoIterator<Item = usize>) {
    for i in columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
            c.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
}

/// Lines of prose broken between words to fit the width, continuations
/// indented by two spaces.
pub fn wrap_text(text: &str) -> String {
    let Some(w) = width().map(usize::from) else {
        return text.to_string();
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut cur = String::new();
        for word in line.split(' ') {
            if !cur.trim().is_empty() && cur.chars().count() + 1 + word.chars().count() > w {
                out.push_str(cur.trim_end());
                out.push('\n');
                cur = format!("  {word}");
            } else if cur.is_empty() {
                cur = word.to_string();
            } else {
                cur.push(' ');
                cur.push_str(word);
            }
        }
        out.push_str(&cur);
        out.push('\n');
    }
    out
}

/// A summary line of `a | b | c` parts, broken between parts to fit the width.
pub fn wrap_summary(line: &str) -> String {
    let Some(w) = width().map(usize::from) else {
        return line.to_string();
    };
    let mut out = String::new();
    let mut cur = String::new();
    for part in line.split(" | ") {
        if !cur.is_empty() && cur.chars().count() + 3 + part.chars().count() > w {
            out.push_str(&cur);
            out.push('\n');
            cur = format!("  {part}");
        } else if cur.is_empty() {
            cur = part.to_string();
        } else {
            cur.push_str(" | ");
            cur.push_str(part);
        }
    }
    out.push_str(&cur);
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

/// The report: the summary first, then per provider and model, per gate, the
/// failures grouped by reason, and the first failed jobs.
pub fn report(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&wrap_summary(&r.summary_line()));
    s.push('\n');
    if !r.providers.is_empty() {
        let mut t = table(&[
            "provider/model",
            "calls",
            "ok",
            "fail",
            "gate%",
            "p50ms",
            "p95ms",
            "cost $",
            "kept",
            "$/kept",
            "cache",
        ]);
        for p in &r.providers {
            let name = match &p.router {
                Some(router) => format!("{router}:{}/{}", p.provider, p.model),
                None => format!("{}/{}", p.provider, p.model),
            };
            t.add_row(vec![
                name,
                p.attempts.to_string(),
                p.successes.to_string(),
                p.attempts.saturating_sub(p.successes).to_string(),
                opt(p.gate_pass_rate.map(|x| x * 100.0), 1),
                opt(p.latency_p50_ms, 0),
                opt(p.latency_p95_ms, 0),
                format!("{:.4}", p.cost_usd),
                p.accepted.to_string(),
                opt(p.cost_per_accepted_usd, 4),
                p.cache_hits.to_string(),
            ]);
        }
        numbers_right(&mut t, 1);
        s.push('\n');
        s.push_str(&t.to_string());
        s.push('\n');
        // Seconds of audio and video in their own table, only when there are
        // any: a campaign of stills keeps the table it had.
        let timed: Vec<_> = r
            .providers
            .iter()
            .filter(|p| p.audio_s > 0.0 || p.video_s > 0.0)
            .collect();
        if !timed.is_empty() {
            let mut t = table(&["media by provider/model", "video s", "audio s", "cost $", "$/s"]);
            for p in timed {
                let name = match &p.router {
                    Some(router) => format!("{router}:{}/{}", p.provider, p.model),
                    None => format!("{}/{}", p.provider, p.model),
                };
                t.add_row(vec![
                    name,
                    format!("{:.1}", p.video_s),
                    format!("{:.1}", p.audio_s),
                    format!("{:.4}", p.cost_usd),
                    opt(p.cost_per_second_usd, 4),
                ]);
            }
            numbers_right(&mut t, 1);
            s.push('\n');
            s.push_str(&t.to_string());
            s.push('\n');
        }
        // Why each router member got its calls: the decisions behind the rows.
        for p in r.providers.iter().filter(|p| !p.routed.is_empty()) {
            let why: Vec<String> = p.routed.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let name = match &p.router {
                Some(router) => format!("{router}:{}", p.provider),
                None => p.provider.clone(),
            };
            s.push_str(&wrap_text(&format!("{name} routed: {}", why.join(", "))));
            s.push('\n');
        }
    }
    if !r.gates.is_empty() {
        let mut t = table(&["gate", "checks", "passed", "pass %", "top failure reasons"]);
        for g in &r.gates {
            let mut reasons: Vec<(&String, &u64)> = g.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{r} ({n})")).collect();
            t.add_row(vec![
                g.gate.clone(),
                g.checks.to_string(),
                g.passes.to_string(),
                opt(g.pass_rate.map(|x| x * 100.0), 1),
                top.join("; "),
            ]);
        }
        numbers(&mut t, 1..4);
        s.push('\n');
        s.push_str(&t.to_string());
        s.push('\n');
    }
    if !r.failure_groups.is_empty() {
        let mut t = table(&["failure reason", "jobs", "for example"]);
        for g in &r.failure_groups {
            let what = match &g.gate {
                Some(gate) => format!("{} ({gate})", g.class),
                None => g.class.clone(),
            };
            t.add_row(vec![what, g.count.to_string(), g.sample.clone()]);
        }
        numbers(&mut t, [1]);
        s.push('\n');
        s.push_str(&t.to_string());
        s.push('\n');
    }
    if !r.failures.is_empty() {
        const SHOWN: usize = 20;
        let mut t = table(&["failed job", "step", "class", "error"]);
        for f in r.failures.iter().take(SHOWN) {
            t.add_row(vec![f.job.clone(), f.step.clone(), f.class.clone(), f.error.clone()]);
        }
        s.push('\n');
        s.push_str(&t.to_string());
        s.push('\n');
        if r.failures.len() > SHOWN {
            s.push_str(&format!(
                "... and {} more failed jobs (report.json)\n",
                r.failures.len() - SHOWN
            ));
        }
    }
    for e in &r.delivery_errors {
        s.push_str(&format!("delivery error: {e}\n"));
    }
    s
}

/// The dry run's job table: the first and last jobs, their calls and estimate.
pub fn plan_jobs(jobs: &[JobPlan], omitted: u64) -> String {
    let names: Vec<String> = jobs
        .first()
        .map(|j| j.vars.keys().cloned().collect())
        .unwrap_or_default();
    let mut header: Vec<&str> = vec!["#", "job"];
    header.extend(names.iter().map(String::as_str));
    header.extend(["calls", "est. $"]);
    let mut t = table(&header);
    let mut last: Option<u64> = None;
    for j in jobs {
        if last.is_some_and(|l| j.index > l + 1) && omitted > 0 {
            let mut row = vec!["...".to_string(), format!("{omitted} more")];
            row.extend(names.iter().map(|_| String::new()));
            row.extend([String::new(), String::new()]);
            t.add_row(row);
        }
        last = Some(j.index);
        let mut row = vec![(j.index + 1).to_string(), j.key.clone()];
        for n in &names {
            row.push(match j.vars.get(n) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            });
        }
        row.push(j.requests.len().to_string());
        row.push(format!("{:.4}", j.estimated_cost_usd));
        t.add_row(row);
    }
    let n = t.column_count();
    numbers(&mut t, [0, n.saturating_sub(2), n.saturating_sub(1)]);
    let mut s = t.to_string();
    s.push('\n');
    if omitted > 0 {
        s.push_str("(--json lists every job)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use creative::engine::deliver::ProviderRow;

    #[test]
    fn the_report_table_says_why_each_router_member_got_its_calls() {
        let member = ProviderRow {
            provider: "cheap".into(),
            model: "m".into(),
            router: Some("images".into()),
            attempts: 12,
            routed: [("exploited".to_string(), 9), ("explored".to_string(), 3)].into(),
            ..ProviderRow::default()
        };
        let report = Report {
            providers: vec![member],
            ..Report::default()
        };
        let out = super::report(&report);
        assert!(out.contains("images:cheap routed: exploited 9, explored 3"), "{out}");
    }
}
