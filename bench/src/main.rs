//! `make bench`: hybridcache's benchmarks against their baselines, all measured in one run on
//! this machine. Starts its own redis-server processes (through the test harness) on free
//! loopback ports, and writes `BENCHMARKS.md` and `docs/bench/*.svg` at the workspace root.
//!
//! Environment: `HYBRIDCACHE_MODULE` (the module library; `make bench` passes the release
//! build), `QUICK=1` for a short run,
//! `BENCH_ONLY=throughput,memory,deltag,fills,client,replay,cluster` to run some parts only
//! (while working on them: the partial report then goes to `target/bench-partial/`, not over
//! BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Prints one progress line with the time since the run started.
pub fn progress(line: std::fmt::Arguments) {
    let elapsed = START.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!("[{elapsed:6.1} s] {line}");
}

/// `say!("...", args)`: a progress line.
macro_rules! say {
    ($($arg:tt)*) => { $crate::progress(format_args!($($arg)*)) };
}

mod client_side;
mod cluster;
mod config;
mod deltag;
mod fill;
mod fills;
mod redis_benchmark;
mod replay;
mod report;
mod server_side;
mod servers;
mod stats;
mod svg;

use config::Config;
use report::Report;

/// Where the report goes: the workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Directory of the charts, relative to the workspace root.
const CHART_DIR: &str = "docs/bench";

/// The first line of a command's output, or `None` when it cannot run.
fn command_line(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    output
        .status
        .success()
        .then(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// The 1-minute load average: the machine is shared, so this says how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The module source the run measured: commit, and whether module/ had local changes.
fn module_revision(root: &Path) -> String {
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"], root);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--", "module", "protocol"])
        .current_dir(root)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    match commit {
        Some(c) if dirty => format!("{c} + uncommitted changes in module/ or protocol/"),
        Some(c) => c,
        None => "unknown".into(),
    }
}

fn main() {
    let started = *START.get_or_init(Instant::now);
    let quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let cfg = Config::new(quick);
    let load_at_start = load_average();
    let date = report::utc_now();
    // Read when the module is copied: others may edit module/ while the run goes on.
    let revision = module_revision(&workspace_root());
    let root = workspace_root();
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|p| p.trim().to_string()).collect());
    let wanted = |part: &str| {
        only.as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    };

    // One copy of the module for the whole run, so that a rebuild meanwhile changes nothing.
    let module_source = hybridcache_tests::module_path();
    let module_dir = tempfile::Builder::new()
        .prefix("hybridcache-bench-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let module = module_dir.path().join("libhybridcache_module.so");
    std::fs::copy(&module_source, &module)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", module_source.display()));
    say!(
        "hybridcache-bench: {} run, module {}",
        cfg.mode(),
        module_source.display()
    );

    let mut report = Report::default();
    let redis_version;
    {
        let module_server = servers::with_module(&module);
        let plain_server = servers::plain();
        redis_version = servers::redis_version(&module_server);
        // Declared after the servers: dropped (unsubscribed) before them.
        // The setup: two subscribers on each server, reading as clients do.
        let module_listeners = servers::Listeners::start(
            &module_server,
            hybridcache_protocol::DEFAULT_CHANNEL,
            2,
            servers::Reading::Events,
        );
        let lua_listeners = servers::Listeners::start(
            &plain_server,
            servers::LUA_CHANNEL,
            2,
            servers::Reading::OneChangeEach,
        );
        let pair = server_side::Pair {
            module: &module_server,
            plain: &plain_server,
            module_listeners: &module_listeners,
        };
        say!(
            "servers: module on port {}, plain on port {}",
            module_server.port(),
            plain_server.port()
        );
        if wanted("throughput") {
            server_side::throughput(&cfg, &pair, &mut report);
        }
        if wanted("memory") {
            server_side::memory(&cfg, &pair, &mut report);
        }
        if wanted("deltag") {
            deltag::deltag(&cfg, &pair, &mut report);
        }
        if wanted("fills") {
            fills::fills(&cfg, &module_server, &mut report);
        }
        let (events, lua) = (module_listeners.received(), lua_listeners.received());
        say!(
            "server side done; the subscribers read {} messages ({} changes, {} undecodable) \
             and {} Lua messages",
            events.messages,
            events.changes,
            events.undecodable,
            lua.messages
        );
    }
    if wanted("client") || wanted("replay") {
        client_side::client_side(
            &cfg,
            &module,
            wanted("client"),
            wanted("replay"),
            &mut report,
        );
    }
    if wanted("cluster") {
        cluster::cluster(&cfg, &module, &mut report);
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let wall = started.elapsed();
    report.meta = vec![
        ("date (start of the run)".into(), date),
        (
            "mode".into(),
            format!(
                "{} ({} rounds{})",
                cfg.mode(),
                cfg.rounds,
                if quick {
                    "; `make bench` without QUICK for the full run"
                } else {
                    ""
                }
            ),
        ),
        ("cores (nproc)".into(), cores.to_string()),
        (
            "load average (1 min) at start / end".into(),
            format!("{load_at_start} / {}", load_average()),
        ),
        ("CPU".into(), cpu_model()),
        ("Redis".into(), redis_version),
        (
            "load generator".into(),
            command_line("redis-benchmark", &["--version"], &root)
                .unwrap_or_else(|| "unknown".into()),
        ),
        ("module source (at the start)".into(), revision),
        ("wall time of the run".into(), report::duration(wall)),
    ];

    let out = match &only {
        Some(_) => root.join("target").join("bench-partial"),
        None => root.clone(),
    };
    let chart_dir = out.join(CHART_DIR);
    std::fs::create_dir_all(&chart_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", chart_dir.display()));
    for chart in report.sections.iter().flat_map(|s| &s.charts) {
        let path = chart_dir.join(&chart.file);
        std::fs::write(&path, &chart.svg)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let path = out.join("BENCHMARKS.md");
    std::fs::write(&path, report.markdown(CHART_DIR))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let met = report.goals.iter().filter(|g| g.met).count();
    say!(
        "wrote {} and {}/ ({met} of {} goals met) in {}",
        path.display(),
        chart_dir.display(),
        report.goals.len(),
        report::duration(wall)
    );
    for goal in &report.goals {
        say!(
            "  {:<60} {:>24}  goal {:<12} {}",
            goal.what,
            goal.value,
            goal.goal,
            report::verdict(goal.met)
        );
    }
}
