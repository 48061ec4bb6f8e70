//! One machine-readable form for every crate's benchmark results, so `cargo xtask bench` can
//! print them as one table.
//!
//! A benchmark builds a [`Row`] per workload — our figure, the strongest raw baseline of the
//! same run, the ratio, p50/p99 where measured, and the goal the issue set — and calls
//! [`Row::emit`]. When `INFRA_BENCH_REPORT` names a file (xtask sets it), the row is appended
//! to it as one JSON line; otherwise `emit` does nothing, so `cargo bench` alone is unchanged.
//! xtask reads the file back with [`read`] and prints [`markdown_table`].
//!
//! ```no_run
//! use infra_core::testkit::bench_report::{Goal, Row, Side};
//! use std::time::Duration;
//!
//! Row::new("infra-db", "pooled SELECT 1, 32 tasks", "queries/s")
//!     .ours(Side::new("Database::get() + diesel", 35_022.0)
//!         .with_latency(Duration::from_micros(840), Duration::from_micros(2_330)))
//!     .baseline(Side::new("tokio-postgres, dedicated connection, prepared", 45_127.0))
//!     .goal(Goal::ratio_at_least(0.85))
//!     .emit()
//!     .expect("bench report written");
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file rows are appended to, one JSON object a line; unset: rows are not written.
pub const REPORT_ENV: &str = "INFRA_BENCH_REPORT";

/// Set (to anything but `0` or empty) to ask benchmarks for a short run that only proves the
/// plumbing; rows say they were measured so.
pub const QUICK_ENV: &str = "INFRA_BENCH_QUICK";

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux; zero
/// elsewhere). Throughput on a machine shared with other work drifts; the client's CPU per
/// operation hardly does, so it shows what our layers cost beyond the baseline's.
pub fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // After the command name (in parentheses): utime and stime are the 12th and 13th fields,
    // in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Whether this run was asked to be short ([`QUICK_ENV`]).
pub fn quick() -> bool {
    std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Writing or reading a report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be opened, written or read.
    #[error("bench report {path}: {source}")]
    Io {
        /// The report file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A line of the file is not a [`Row`].
    #[error("bench report {path}, line {line}: not a row: {source}")]
    Parse {
        /// The report file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A row could not be encoded (a figure that is not a finite number).
    #[error("bench row `{workload}` cannot be encoded: {source}")]
    Encode {
        /// The row's workload.
        workload: String,
        /// What the encoder said.
        #[source]
        source: serde_json::Error,
    },
}

/// One side of a comparison: who ran, its figure in the row's unit, and what else was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// What ran, e.g. `raw redis-rs, one multiplexed connection shared`.
    pub name: String,
    /// The figure, in the row's unit.
    pub value: f64,
    /// Median latency of one operation, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th-percentile latency of one operation, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// CPU time this (client) process spent per operation, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_per_op_us: Option<f64>,
}

impl Side {
    /// A side with its figure and nothing else measured.
    pub fn new(name: impl Into<String>, value: f64) -> Side {
        Side {
            name: name.into(),
            value,
            p50_us: None,
            p99_us: None,
            cpu_per_op_us: None,
        }
    }

    /// With its p50 and p99 latency.
    pub fn with_latency(mut self, p50: Duration, p99: Duration) -> Side {
        self.p50_us = Some(p50.as_secs_f64() * 1e6);
        self.p99_us = Some(p99.as_secs_f64() * 1e6);
        self
    }

    /// With the client's CPU time per operation.
    pub fn with_cpu_per_op(mut self, cpu: Duration) -> Side {
        self.cpu_per_op_us = Some(cpu.as_secs_f64() * 1e6);
        self
    }
}

/// What a goal bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Ours / baseline.
    Ratio,
    /// Our figure, in the row's unit.
    Figure,
    /// Our p99 latency, in microseconds.
    P99Us,
}

/// Which way a goal bounds its measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The measure must be at least the value.
    AtLeast,
    /// The measure must be at most the value.
    AtMost,
}

/// A goal an issue set for a workload, e.g. ratio ≥ 0.95.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// What is bounded.
    pub measure: Measure,
    /// Which way.
    pub bound: Bound,
    /// The bound.
    pub value: f64,
}

impl Goal {
    /// Ours / baseline ≥ `value` (rates: higher is better).
    pub fn ratio_at_least(value: f64) -> Goal {
        Goal {
            measure: Measure::Ratio,
            bound: Bound::AtLeast,
            value,
        }
    }

    /// Ours / baseline ≤ `value` (costs such as time per call: lower is better).
    pub fn ratio_at_most(value: f64) -> Goal {
        Goal {
            measure: Measure::Ratio,
            bound: Bound::AtMost,
            value,
        }
    }

    /// Our figure ≤ `value`, in the row's unit.
    pub fn figure_at_most(value: f64) -> Goal {
        Goal {
            measure: Measure::Figure,
            bound: Bound::AtMost,
            value,
        }
    }

    /// Our p99 latency ≤ `p99`.
    pub fn p99_at_most(p99: Duration) -> Goal {
        Goal {
            measure: Measure::P99Us,
            bound: Bound::AtMost,
            value: p99.as_secs_f64() * 1e6,
        }
    }

    /// Whether `row` meets the goal; `None` when the row lacks the measure (no baseline, no
    /// latency).
    pub fn met(&self, row: &Row) -> Option<bool> {
        let actual = match self.measure {
            Measure::Ratio => row.ratio?,
            Measure::Figure => row.ours.as_ref()?.value,
            Measure::P99Us => row.ours.as_ref()?.p99_us?,
        };
        Some(match self.bound {
            Bound::AtLeast => actual >= self.value,
            Bound::AtMost => actual <= self.value,
        })
    }

    /// `ratio ≥ 0.95`, `p99 ≤ 10 ms`, `≤ 16 KiB/connection`.
    pub fn describe(&self, unit: &str) -> String {
        let op = match self.bound {
            Bound::AtLeast => "≥",
            Bound::AtMost => "≤",
        };
        match self.measure {
            Measure::Ratio => format!("ratio {op} {}", self.value),
            Measure::Figure => format!("{op} {} {unit}", self.value),
            Measure::P99Us if self.value >= 1000.0 => {
                format!("p99 {op} {} ms", self.value / 1000.0)
            }
            Measure::P99Us => format!("p99 {op} {} µs", self.value),
        }
    }
}

/// One workload of one crate's benchmark, as `cargo xtask bench` tabulates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The benchmarked crate, e.g. `infra-cache`.
    #[serde(rename = "crate")]
    pub krate: String,
    /// What was measured, e.g. `redis get/set 1 KiB JSON, 64 tasks`.
    pub workload: String,
    /// The unit of both sides' figures, e.g. `ops/s` or `µs/capture`.
    pub unit: String,
    /// Our side (always set by [`Row::ours`] before a row is emitted).
    pub ours: Option<Side>,
    /// The strongest raw baseline of the same run, when the workload has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Side>,
    /// Ours / baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The goals the issues set for this workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<Goal>,
    /// Weaker baselines or outside references of the same run, in the same unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<Side>,
    /// Measured in a short run ([`QUICK_ENV`]): proves the plumbing, not the figure.
    #[serde(default)]
    pub quick: bool,
}

impl Row {
    /// A row for `workload` of `krate`, figures in `unit`.
    pub fn new(krate: impl Into<String>, workload: impl Into<String>, unit: &str) -> Row {
        Row {
            krate: krate.into(),
            workload: workload.into(),
            unit: unit.to_owned(),
            ours: None,
            baseline: None,
            ratio: None,
            goals: Vec::new(),
            others: Vec::new(),
            quick: quick(),
        }
    }

    /// Our side.
    pub fn ours(mut self, side: Side) -> Row {
        self.ours = Some(side);
        self.ratio = self.computed_ratio();
        self
    }

    /// The strongest raw baseline of the run.
    pub fn baseline(mut self, side: Side) -> Row {
        self.baseline = Some(side);
        self.ratio = self.computed_ratio();
        self
    }

    /// A goal for this workload.
    pub fn goal(mut self, goal: Goal) -> Row {
        self.goals.push(goal);
        self
    }

    /// Another baseline or reference, shown beside the table.
    pub fn other(mut self, side: Side) -> Row {
        self.others.push(side);
        self
    }

    fn computed_ratio(&self) -> Option<f64> {
        let (ours, base) = (self.ours.as_ref()?, self.baseline.as_ref()?);
        (base.value != 0.0).then(|| ours.value / base.value)
    }

    /// Every goal met (`Some(true)`), one missed (`Some(false)`), or nothing to judge.
    pub fn goals_met(&self) -> Option<bool> {
        let verdicts: Vec<Option<bool>> = self.goals.iter().map(|g| g.met(self)).collect();
        if verdicts.contains(&Some(false)) {
            Some(false)
        } else if verdicts.is_empty() || verdicts.contains(&None) {
            None
        } else {
            Some(true)
        }
    }

    /// The row as one JSON line (with its newline).
    pub fn to_json_line(&self) -> Result<String, ReportError> {
        let mut line = serde_json::to_string(self).map_err(|source| ReportError::Encode {
            workload: self.workload.clone(),
            source,
        })?;
        line.push('\n');
        Ok(line)
    }

    /// Appends the row to the file named by [`REPORT_ENV`]; nothing when it is unset.
    pub fn emit(&self) -> Result<(), ReportError> {
        match std::env::var_os(REPORT_ENV) {
            Some(path) if !path.is_empty() => self.append_to(Path::new(&path)),
            _ => Ok(()),
        }
    }

    /// Appends the row to `path` as one JSON line (one `write` of the whole line, so
    /// processes appending to one file never interleave within a row).
    pub fn append_to(&self, path: &Path) -> Result<(), ReportError> {
        let line = self.to_json_line()?;
        let io = |source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)
    }
}

/// Every row in `path`, in the order written; blank lines are skipped.
pub fn read(path: &Path) -> Result<Vec<Row>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<Row>, ReportError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| ReportError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// `26,221`, `137.9`, `0.46`: thousands separated, three significant figures below 100.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() >= 100.0 {
        let digits = format!("{:.0}", value.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if value < 0.0 { format!("-{out}") } else { out }
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A latency given in microseconds: `840 µs`, `2.33 ms`.
pub fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{} ms", number(us / 1000.0))
    } else {
        format!("{} µs", number(us))
    }
}

fn side_cell(side: &Side, unit: &str) -> String {
    let mut cell = format!("{} {unit} — {}", number(side.value), side.name);
    if let (Some(p50), Some(p99)) = (side.p50_us, side.p99_us) {
        let _ = write!(cell, " (p50 {}, p99 {})", latency(p50), latency(p99));
    }
    cell
}

/// The rows as one Markdown table — crate, workload, ours, the strongest baseline, the ratio,
/// the goal and whether it was met — followed by the other baselines of the run.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| crate | workload | ours | strongest raw baseline (same run) | ratio ours / baseline | goal | met |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let ours = row
            .ours
            .as_ref()
            .map_or_else(|| "—".to_owned(), |s| side_cell(s, &row.unit));
        let baseline = row
            .baseline
            .as_ref()
            .map_or_else(|| "—".to_owned(), |s| side_cell(s, &row.unit));
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.3}"));
        let goals = if row.goals.is_empty() {
            "—".to_owned()
        } else {
            row.goals
                .iter()
                .map(|g| g.describe(&row.unit))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let met = match row.goals_met() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None if row.goals.is_empty() => "—",
            None => "no figure",
        };
        let quick = if row.quick { " (quick run)" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {}{quick} | {ours} | {baseline} | {ratio} | {goals} | {met} |",
            row.krate, row.workload
        );
    }
    let others: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.others.iter().map(move |side| {
                let versus = row
                    .ours
                    .as_ref()
                    .filter(|_| side.value != 0.0)
                    .map(|ours| format!(" (ours / this: {:.3})", ours.value / side.value))
                    .unwrap_or_default();
                format!(
                    "- {} / {}: {}{versus}",
                    row.krate,
                    row.workload,
                    side_cell(side, &row.unit)
                )
            })
        })
        .collect();
    if !others.is_empty() {
        out.push_str("\nOther baselines and references of the same run:\n\n");
        for line in others {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let mut row = Row::new("infra-cache", "get/set", "ops/s")
            .ours(
                Side::new("RedisCache", 90_000.0)
                    .with_latency(Duration::from_micros(560), Duration::from_micros(4_600)),
            )
            .baseline(Side::new("raw, one shared connection", 100_000.0))
            .goal(Goal::ratio_at_least(0.95))
            .other(Side::new("redis-benchmark 50/50", 36_000.0));
        row.quick = false;
        row
    }

    #[test]
    fn a_row_survives_its_json_line() {
        let row = row();
        let line = row.to_json_line().unwrap();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        assert!(line.contains(r#""crate":"infra-cache""#), "{line}");
        let back = parse(Path::new("mem"), &line).unwrap();
        assert_eq!(back, vec![row]);
    }

    #[test]
    fn the_ratio_follows_both_sides_in_any_order() {
        let a = Row::new("c", "w", "u")
            .baseline(Side::new("b", 4.0))
            .ours(Side::new("o", 3.0));
        assert_eq!(a.ratio, Some(0.75));
        assert_eq!(row().ratio, Some(0.9));
        assert_eq!(
            Row::new("c", "w", "u").ours(Side::new("o", 3.0)).ratio,
            None
        );
    }

    #[test]
    fn goals_are_judged_on_their_measure() {
        assert_eq!(row().goals_met(), Some(false));
        let cost = Row::new("infra-monitoring", "capture", "µs/capture")
            .ours(Side::new("ours", 11.0))
            .baseline(Side::new("bare", 10.0))
            .goal(Goal::ratio_at_most(1.2));
        assert_eq!(cost.goals_met(), Some(true));
        let rss = Row::new("infra-realtime", "idle", "KiB/connection")
            .ours(Side::new("server", 10.4))
            .goal(Goal::figure_at_most(16.0));
        assert_eq!(rss.goals_met(), Some(true));
        let no_latency = Row::new("c", "w", "msgs/s")
            .ours(Side::new("o", 1.0))
            .goal(Goal::p99_at_most(Duration::from_millis(10)));
        assert_eq!(no_latency.goals_met(), None);
        let fanout = Row::new("c", "w", "msgs/s")
            .ours(
                Side::new("o", 1.0)
                    .with_latency(Duration::from_millis(1), Duration::from_millis(20)),
            )
            .baseline(Side::new("raw", 1.0))
            .goal(Goal::ratio_at_least(0.7))
            .goal(Goal::p99_at_most(Duration::from_millis(10)));
        assert_eq!(fanout.goals_met(), Some(false), "p99 over its bound");
        assert_eq!(
            fanout.goals[1].describe(&fanout.unit),
            "p99 ≤ 10 ms",
            "a goal reads as the issue wrote it"
        );
    }

    #[test]
    fn the_table_has_a_line_per_row_and_the_references_below() {
        let rows = vec![
            row(),
            Row::new("infra-jobs", "MemoryQueue", "jobs/s").ours(Side::new("MemoryQueue", 1e5)),
        ];
        let table = markdown_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "| infra-cache | get/set | 90,000 ops/s — RedisCache (p50 560 µs, p99 4.60 ms) | \
             100,000 ops/s — raw, one shared connection | 0.900 | ratio ≥ 0.95 | **not met** |"
        );
        assert_eq!(
            lines[3],
            "| infra-jobs | MemoryQueue | 100,000 jobs/s — MemoryQueue | — | — | — | — |"
        );
        assert!(
            table.contains(
                "- infra-cache / get/set: 36,000 ops/s — redis-benchmark 50/50 (ours / this: 2.500)"
            ),
            "{table}"
        );
    }

    #[test]
    fn numbers_read_like_the_docs() {
        assert_eq!(number(26_221.4), "26,221");
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(137.9), "138");
        assert_eq!(number(11.24), "11.2");
        assert_eq!(number(0.456), "0.46");
        assert_eq!(latency(2_330.0), "2.33 ms");
        assert_eq!(latency(840.0), "840 µs");
    }

    #[test]
    fn emit_appends_whole_lines_and_read_returns_them() {
        let path = std::env::temp_dir().join(format!(
            "{}.jsonl",
            crate::testkit::unique_key("bench-report").replace(':', "-")
        ));
        let _ = std::fs::remove_file(&path);
        row().append_to(&path).unwrap();
        row().append_to(&path).unwrap();
        let rows = read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(rows, vec![row(), row()]);
    }

    #[test]
    fn a_broken_line_names_its_file_and_line() {
        let good = row().to_json_line().unwrap();
        let err = parse(Path::new("r.jsonl"), &format!("{good}{{oops\n")).unwrap_err();
        assert!(matches!(err, ReportError::Parse { line: 2, .. }), "{err:?}");
    }
}
