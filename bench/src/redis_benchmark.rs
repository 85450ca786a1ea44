//! Running `redis-benchmark` and reading its `--csv` output.

use std::process::Command;

/// One row of `redis-benchmark --csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub test: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// How a run is driven: the same for every row of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub clients: u32,
    pub requests: u64,
    pub keyspace: u64,
    pub pipeline: u32,
}

/// Runs `redis-benchmark` with `load` against 127.0.0.1:`port` for one command line
/// (`__rand_int__` in an argument becomes a 12-digit number below `keyspace`).
///
/// # Panics
/// When redis-benchmark cannot run, fails, or prints no result row (the message quotes it).
pub fn run(port: u16, load: Load, command: &[String]) -> BenchRow {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &load.clients.to_string()])
        .args(["-n", &load.requests.to_string()])
        .args(["-r", &load.keyspace.to_string()])
        .args(["-P", &load.pipeline.to_string()])
        .arg("--csv")
        .args(command)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-benchmark (is it on PATH?): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "redis-benchmark failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }
    // An error reply makes redis-benchmark print it (and stop, or report a rate of errors).
    if stdout.contains("Error from server") || stderr.contains("Error from server") {
        panic!("redis-benchmark got error replies:\n{stdout}\n{stderr}");
    }
    let rows = parse_csv(&stdout).unwrap_or_else(|e| {
        panic!("cannot read redis-benchmark output ({e}):\n{stdout}\n{stderr}")
    });
    rows.into_iter()
        .next()
        .unwrap_or_else(|| panic!("redis-benchmark printed no result:\n{stdout}\n{stderr}"))
}

/// Parses `redis-benchmark --csv` output: a header line naming the columns, then one line
/// per test. Columns are looked up by name; other lines (warnings) are skipped.
pub fn parse_csv(text: &str) -> Result<Vec<BenchRow>, String> {
    let mut lines = text.lines().map(split_csv_line);
    let header = lines
        .by_ref()
        .find(|fields| fields.first().map(String::as_str) == Some("test"))
        .ok_or("no header line")?;
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("no column {name:?} in {header:?}"))
    };
    let (rps, p50, p99) = (
        column("rps")?,
        column("p50_latency_ms")?,
        column("p99_latency_ms")?,
    );
    let number = |fields: &[String], at: usize| -> Result<f64, String> {
        let field = fields.get(at).ok_or(format!("short line {fields:?}"))?;
        field
            .parse::<f64>()
            .map_err(|e| format!("{field:?} is not a number: {e}"))
    };
    let mut rows = Vec::new();
    for fields in lines {
        if fields.len() != header.len() {
            continue;
        }
        rows.push(BenchRow {
            test: fields[0].clone(),
            rps: number(&fields, rps)?,
            p50_ms: number(&fields, p50)?,
            p99_ms: number(&fields, p99)?,
        });
    }
    Ok(rows)
}

/// Splits one CSV line: fields separated by commas, optionally in double quotes (a doubled
/// quote inside quotes is one quote).
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = concat!(
        "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n",
        "\"HC.SET k:__rand_int__ v TAGS a,b \"\"c\"\"\",\"84745.77\",\"0.340\",\"0.144\",\"0.319\",\"0.511\",\"0.671\",\"1.127\"\n",
    );

    #[test]
    fn parses_the_csv_of_redis_benchmark() {
        let rows = parse_csv(OUTPUT).unwrap();
        assert_eq!(
            rows,
            vec![BenchRow {
                test: "HC.SET k:__rand_int__ v TAGS a,b \"c\"".into(),
                rps: 84745.77,
                p50_ms: 0.319,
                p99_ms: 0.671,
            }]
        );
    }

    #[test]
    fn skips_lines_before_the_header_and_rejects_missing_columns() {
        let rows = parse_csv(&format!("WARNING: something\n{OUTPUT}")).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(parse_csv("\"test\",\"rps\"\n\"x\",\"1\"\n").is_err());
        assert!(parse_csv("nothing here").is_err());
    }

    #[test]
    fn splits_quoted_and_plain_fields() {
        assert_eq!(split_csv_line("a,\"b,c\",d\r"), ["a", "b,c", "d"]);
        assert_eq!(split_csv_line(""), [""]);
    }
}
