//! The report: BENCHMARKS.md (a table per part) and the charts next to it.

use crate::stats::Spread;
use std::fmt::Write as _;
use std::time::Duration;

/// A chart written to `docs/bench/<file>` and linked from its section.
#[derive(Debug, Clone)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// One part of the report: a table and what is needed to read it.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    /// Paragraphs (or `- ` bullet lines) before the table.
    pub intro: Vec<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub charts: Vec<Chart>,
    /// Paragraphs after the table.
    pub notes: Vec<String>,
}

/// A goal and whether the run met it, for the summary at the top.
#[derive(Debug, Clone)]
pub struct GoalCheck {
    pub what: String,
    pub value: String,
    pub goal: String,
    pub met: bool,
}

/// Everything BENCHMARKS.md shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(field, value)` lines of the header (machine, versions, date, mode, wall time).
    pub meta: Vec<(String, String)>,
    pub goals: Vec<GoalCheck>,
    pub sections: Vec<Section>,
}

/// How a goal is stated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub fn met(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(bound) => value >= bound,
            Goal::AtMost(bound) => value <= bound,
        }
    }
}

/// "✅ met" or "❌ not met".
pub fn verdict(met: bool) -> String {
    if met { "✅ met" } else { "❌ not met" }.to_string()
}

/// `1234567.8` as "1,234,568".
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A ratio with two significant decimals (more for small ratios).
pub fn ratio(value: f64) -> String {
    if !value.is_finite() {
        "n/a".into()
    } else if value >= 100.0 {
        format!("{value:.0}×")
    } else if value >= 10.0 {
        format!("{value:.1}×")
    } else if value >= 0.1 {
        format!("{value:.2}×")
    } else {
        format!("{value:.4}×")
    }
}

/// A per-round ratio: the median and, in parentheses, the lowest and highest round.
pub fn ratio_spread(spread: Spread) -> String {
    format!(
        "**{}** ({}–{})",
        ratio(spread.median),
        ratio(spread.min).trim_end_matches('×'),
        ratio(spread.max).trim_end_matches('×')
    )
}

/// A duration in seconds with a unit that fits (ns, µs, ms, s).
pub fn seconds(secs: f64) -> String {
    if !secs.is_finite() {
        return "n/a".into();
    }
    let (value, unit) = if secs < 1e-6 {
        (secs * 1e9, "ns")
    } else if secs < 1e-3 {
        (secs * 1e6, "µs")
    } else if secs < 1.0 {
        (secs * 1e3, "ms")
    } else {
        (secs, "s")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// [`seconds`] of a duration.
pub fn duration(d: Duration) -> String {
    seconds(d.as_secs_f64())
}

/// Bytes with one decimal.
pub fn bytes(value: f64) -> String {
    format!("{value:.1} B")
}

impl Report {
    /// The Markdown text of BENCHMARKS.md; charts are linked as `chart_dir/<file>`.
    pub fn markdown(&self, chart_dir: &str) -> String {
        let mut out = String::new();
        out.push_str("# hybridcache benchmarks\n\n");
        out.push_str(
            "Written by `make bench` (`QUICK=1 make bench` for a short run). Every figure is \
             compared with a baseline measured in the same run on the same machine; values \
             are medians over rounds, ratios are medians of the per-round ratios with the \
             lowest and highest round in parentheses.\n\n",
        );
        out.push_str("| | |\n|---|---|\n");
        for (field, value) in &self.meta {
            let _ = writeln!(out, "| {field} | {value} |");
        }
        out.push('\n');
        if !self.goals.is_empty() {
            let met = self.goals.iter().filter(|g| g.met).count();
            let _ = writeln!(out, "## Goals: {met} of {} met\n", self.goals.len());
            out.push_str("| measure | result | goal | |\n|---|---|---|---|\n");
            for g in &self.goals {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    g.what,
                    g.value,
                    g.goal,
                    verdict(g.met)
                );
            }
            out.push('\n');
        }
        for section in &self.sections {
            let _ = writeln!(out, "## {}\n", section.title);
            let mut in_list = false;
            for paragraph in &section.intro {
                let bullet = paragraph.starts_with("- ");
                if in_list && !bullet {
                    out.push('\n');
                }
                out.push_str(paragraph);
                out.push_str(if bullet { "\n" } else { "\n\n" });
                in_list = bullet;
            }
            if in_list {
                out.push('\n');
            }
            if !section.header.is_empty() {
                let _ = writeln!(out, "| {} |", section.header.join(" | "));
                let _ = writeln!(
                    out,
                    "|{}|",
                    section
                        .header
                        .iter()
                        .map(|_| "---")
                        .collect::<Vec<_>>()
                        .join("|")
                );
                for row in &section.rows {
                    let _ = writeln!(out, "| {} |", row.join(" | "));
                }
                out.push('\n');
            }
            for chart in &section.charts {
                let _ = writeln!(out, "![{}]({chart_dir}/{})\n", chart.title, chart.file);
            }
            for paragraph in &section.notes {
                out.push_str(paragraph);
                out.push_str("\n\n");
            }
        }
        out
    }
}

/// The current UTC date and time as "YYYY-MM-DD HH:MM UTC".
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// Unix seconds as "YYYY-MM-DD HH:MM UTC" (proleptic Gregorian calendar).
pub fn utc_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_units() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(ratio(0.934), "0.93×");
        assert_eq!(ratio(31.25), "31.2×");
        assert_eq!(ratio(0.0123), "0.0123×");
        assert_eq!(seconds(0.000_000_45), "450 ns");
        assert_eq!(seconds(0.000_012_3), "12.3 µs");
        assert_eq!(seconds(0.004_567), "4.57 ms");
        assert_eq!(seconds(2.5), "2.50 s");
        assert_eq!(
            ratio_spread(Spread {
                median: 0.93,
                min: 0.9,
                max: 0.97
            }),
            "**0.93×** (0.90–0.97)"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc_from_unix(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_from_unix(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_from_unix(1_764_216_000), "2025-11-27 04:00 UTC");
    }

    #[test]
    fn markdown_has_meta_goals_tables_and_charts() {
        let report = Report {
            meta: vec![("cores (nproc)".into(), "2".into())],
            goals: vec![GoalCheck {
                what: "HC.GET ÷ GET".into(),
                value: "0.95×".into(),
                goal: "≥ 0.9×".into(),
                met: true,
            }],
            sections: vec![Section {
                title: "Part".into(),
                intro: vec!["- a bullet".into(), "text".into()],
                header: vec!["a".into(), "b".into()],
                rows: vec![vec!["1".into(), "2".into()]],
                charts: vec![Chart {
                    file: "c.svg".into(),
                    title: "C".into(),
                    svg: String::new(),
                }],
                notes: vec![],
            }],
        };
        let md = report.markdown("docs/bench");
        assert!(md.contains("| cores (nproc) | 2 |"));
        assert!(md.contains("## Goals: 1 of 1 met"));
        assert!(md.contains("| HC.GET ÷ GET | 0.95× | ≥ 0.9× | ✅ met |"));
        assert!(md.contains("- a bullet\n\ntext\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"));
        assert!(md.contains("![C](docs/bench/c.svg)"));
        assert!(Goal::AtLeast(0.9).met(0.9) && !Goal::AtMost(1.0).met(1.01));
    }
}
