//! HC.DELTAG of one big tag against the Lua scheme's client-side deletion and UNLINK: reply
//! time, the longest stall a concurrent PING prober sees, and the time until used_memory is
//! back near its pre-fill level.

use crate::fill::{self, Scheme};
use crate::report::{
    self, ratio_spread, seconds, thousands, verdict, Chart, Goal, GoalCheck, Report, Section,
};
use crate::server_side::Pair;
use crate::servers::{dbsize, flushall, settled_memory, used_memory, EventLogOff, LUA_CHANNEL};
use crate::stats::{median, ratios, Spread};
use crate::{config::Config, svg};
use hybridcache_protocol::command;
use hybridcache_tests::RedisServer;
use redis::ConnectionLike;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The tag (or set) every key of the deletion benchmark carries.
const TAG: &str = "big";

/// Keys per DEL in the Lua scheme's deletion.
const DEL_BATCH: usize = 10_000;

/// Memory counts as reclaimed when used_memory is within this share of the fill's growth
/// above its pre-fill level.
const RECLAIMED_WITHIN: f64 = 0.05;

/// ... or within this many bytes, whichever is more (client buffers move by a few KB).
const RECLAIMED_SLACK: i64 = 64 * 1024;

/// Pause between two PINGs of the prober.
const PROBE_INTERVAL: Duration = Duration::from_micros(100);

/// Stall goal of HC.DELTAG at the biggest size.
const STALL_GOAL_MS: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    /// `HC.DELTAG big` (module).
    DelTag,
    /// Lua scheme: `SMEMBERS big`, `DEL` of the members in batches of 10k, `DEL big`,
    /// `PUBLISH` (plain Redis).
    SmembersDel,
    /// One `UNLINK` of every key and the set, the keys known to the client (plain Redis).
    Unlink,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::DelTag => "HC.DELTAG",
            Method::SmembersDel => "(a) SMEMBERS + DEL ×10k",
            Method::Unlink => "(b) one UNLINK",
        }
    }
}

/// What one deletion measured.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    reply: f64,
    stall: f64,
    /// `None`: not reclaimed within the timeout.
    reclaim: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Reply,
    Stall,
    Reclaim,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Reply => "reply time",
            Metric::Stall => "longest PING stall",
            Metric::Reclaim => "memory reclaimed after",
        }
    }

    /// Seconds per round; a reclaim that timed out counts as the timeout (a lower bound).
    fn values(self, runs: &[Outcome], timeout: f64) -> Vec<f64> {
        runs.iter()
            .map(|o| match self {
                Metric::Reply => o.reply,
                Metric::Stall => o.stall,
                Metric::Reclaim => o.reclaim.unwrap_or(timeout),
            })
            .collect()
    }

    fn median(self, runs: &[Outcome], timeout: f64) -> f64 {
        median(&self.values(runs, timeout))
    }

    /// The median, as "> timeout" when most rounds timed out.
    fn show(self, runs: &[Outcome], timeout: f64) -> String {
        let timed_out = runs.iter().filter(|o| o.reclaim.is_none()).count();
        if self == Metric::Reclaim && timed_out * 2 > runs.len() {
            format!("> {}", seconds(timeout))
        } else {
            seconds(self.median(runs, timeout))
        }
    }
}

/// A thread sending PING in a loop on its own connection, keeping the longest round trip
/// since it started or was last reset.
struct Prober {
    stop: Arc<AtomicBool>,
    longest_ns: Arc<AtomicU64>,
    /// PINGs answered so far, and how many had been at the last reset.
    answered: Arc<AtomicU64>,
    answered_at_reset: u64,
    thread: JoinHandle<()>,
}

impl Prober {
    fn start(server: &RedisServer) -> Self {
        let mut con = server.connection();
        let stop = Arc::new(AtomicBool::new(false));
        let longest_ns = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let (flag, longest, count) = (stop.clone(), longest_ns.clone(), answered.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                redis::cmd("PING")
                    .query::<String>(&mut con)
                    .unwrap_or_else(|e| panic!("prober PING failed: {e}"));
                let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                longest.fetch_max(ns, Ordering::Relaxed);
                count.fetch_add(1, Ordering::Release);
                std::thread::sleep(PROBE_INTERVAL);
            }
        });
        Self {
            stop,
            longest_ns,
            answered,
            answered_at_reset: 0,
            thread,
        }
    }

    /// Forgets the round trips seen so far.
    fn reset(&mut self) {
        self.answered_at_reset = self.answered.load(Ordering::Acquire);
        self.longest_ns.store(0, Ordering::Relaxed);
    }

    /// Stops the prober once a PING sent after the last reset was answered (a deletion
    /// shorter than one round trip still gets a sample); the longest round trip since the
    /// reset.
    fn stop(self) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.answered.load(Ordering::Acquire) < self.answered_at_reset + 2
            && Instant::now() < deadline
        {
            std::thread::sleep(PROBE_INTERVAL);
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("the PING prober panicked"));
        Duration::from_nanos(self.longest_ns.load(Ordering::Relaxed))
    }
}

/// The longest PING round trip on an idle server over `window`: the noise floor of stalls.
fn idle_stall(server: &RedisServer, window: Duration) -> Duration {
    let prober = Prober::start(server);
    std::thread::sleep(window);
    prober.stop()
}

fn measure(cfg: &Config, pair: &Pair, method: Method, size: u64) -> Outcome {
    let server = if method == Method::DelTag {
        pair.module
    } else {
        pair.plain
    };
    let mut con = server.connection();
    // Every connection of the measurement exists before the pre-fill level is read.
    let mut poll_con = server.connection();
    let mut prober = Prober::start(server);
    flushall(&mut con);
    let before = settled_memory(&mut con);
    let scheme = if method == Method::DelTag {
        Scheme::Module
    } else {
        Scheme::SetsPerTag
    };
    let value = fill::value(cfg.value_size);
    fill::fill(&mut con, scheme, 0..size, &value, |_| vec![TAG.to_string()]);
    let filled = settled_memory(&mut con);
    let slack = ((filled - before) as f64 * RECLAIMED_WITHIN) as i64;
    let threshold = before + slack.max(RECLAIMED_SLACK);

    // Prepared before the clock starts: the client knows its keys.
    let unlink = (method == Method::Unlink).then(|| {
        let mut cmd = redis::cmd("UNLINK");
        for i in 0..size {
            cmd.arg(fill::key(i));
        }
        cmd.arg(TAG);
        cmd.get_packed_command()
    });
    std::thread::sleep(Duration::from_millis(20));
    prober.reset();

    let started = Instant::now();
    let removed: i64 = match method {
        Method::DelTag => redis::cmd(command::DELTAG)
            .arg(TAG)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("HC.DELTAG failed: {e}")),
        Method::SmembersDel => {
            let members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
                .arg(TAG)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("SMEMBERS failed: {e}"));
            let mut removed = 0;
            for batch in members.chunks(DEL_BATCH) {
                removed += redis::cmd("DEL")
                    .arg(batch)
                    .query::<i64>(&mut con)
                    .unwrap_or_else(|e| panic!("DEL failed: {e}"));
            }
            let _: i64 = redis::cmd("DEL")
                .arg(TAG)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("DEL failed: {e}"));
            let _: i64 = redis::cmd("PUBLISH")
                .arg(LUA_CHANNEL)
                .arg(TAG)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("PUBLISH failed: {e}"));
            removed
        }
        Method::Unlink => {
            let packed = unlink.unwrap_or_default();
            let reply = con
                .req_packed_command(&packed)
                .unwrap_or_else(|e| panic!("UNLINK failed: {e}"));
            redis::from_redis_value::<i64>(reply).unwrap_or_else(|e| panic!("UNLINK reply: {e}"))
                - 1
        }
    };
    let reply = started.elapsed();
    assert_eq!(
        removed as u64,
        size,
        "{} removed {removed} keys instead of {size}",
        method.label()
    );

    let deadline = started + cfg.reclaim_timeout;
    let reclaim = loop {
        if used_memory(&mut poll_con) <= threshold {
            break Some(started.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stall = prober.stop();
    if reclaim.is_none() {
        say!(
            "  {}: used_memory {} still above {threshold} after {:?} (DBSIZE {})",
            method.label(),
            used_memory(&mut poll_con),
            cfg.reclaim_timeout,
            dbsize(&mut poll_con)
        );
    }
    flushall(&mut con);
    Outcome {
        reply: reply.as_secs_f64(),
        stall: stall.as_secs_f64(),
        reclaim: reclaim.map(|d| d.as_secs_f64()),
    }
}

/// Runs every size and method, and adds the section and its charts.
pub fn deltag(cfg: &Config, pair: &Pair, report: &mut Report) {
    let methods = [Method::DelTag, Method::SmembersDel, Method::Unlink];
    // The log of recent changes would keep each fill's changes: not memory of the tag's keys.
    let _log_off = EventLogOff::new(pair.module);
    let idle = idle_stall(pair.module, cfg.idle_window);
    say!(
        "deltag: longest PING on the idle server over {:?}: {}",
        cfg.idle_window,
        report::duration(idle)
    );
    let mut outcomes: HashMap<(u64, Method), Vec<Outcome>> = HashMap::new();
    for &size in &cfg.deltag_sizes {
        let rounds = (cfg.deltag_rounds)(size);
        for round in 0..rounds {
            let mut order = methods.to_vec();
            order.rotate_left(round % methods.len());
            for method in order {
                let o = measure(cfg, pair, method, size);
                say!(
                    "deltag {} keys round {}/{rounds}: {:<24} reply {:>9}  stall {:>9}  reclaimed {}",
                    thousands(size as f64),
                    round + 1,
                    method.label(),
                    seconds(o.reply),
                    seconds(o.stall),
                    o.reclaim.map_or_else(|| format!("> {:?}", cfg.reclaim_timeout), seconds)
                );
                outcomes.entry((size, method)).or_default().push(o);
            }
        }
    }

    let timeout = cfg.reclaim_timeout.as_secs_f64();
    let biggest = cfg.deltag_sizes.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    for &size in &cfg.deltag_sizes {
        let runs = |m: Method| outcomes[&(size, m)].as_slice();
        for metric in [Metric::Reply, Metric::Stall, Metric::Reclaim] {
            let (goal, met) = if metric == Metric::Stall && size == biggest {
                let stall = metric.median(runs(Method::DelTag), timeout);
                let met = Goal::AtMost(STALL_GOAL_MS).met(stall * 1e3);
                report.goals.push(GoalCheck {
                    what: format!(
                        "HC.DELTAG of {} keys: longest PING stall",
                        thousands(size as f64)
                    ),
                    value: seconds(stall),
                    goal: format!("≤ {STALL_GOAL_MS} ms"),
                    met,
                });
                (format!("≤ {STALL_GOAL_MS} ms"), verdict(met))
            } else {
                ("—".to_string(), "—".to_string())
            };
            let ratio_to = |base: Method| {
                ratio_spread(Spread::of(&ratios(
                    &metric.values(runs(Method::DelTag), timeout),
                    &metric.values(runs(base), timeout),
                )))
            };
            rows.push(vec![
                thousands(size as f64),
                metric.name().to_string(),
                metric.show(runs(Method::DelTag), timeout),
                metric.show(runs(Method::SmembersDel), timeout),
                ratio_to(Method::SmembersDel),
                metric.show(runs(Method::Unlink), timeout),
                ratio_to(Method::Unlink),
                goal,
                met,
            ]);
        }
    }

    let chart = |metric: Metric, file: &str, title: &str| {
        let series: Vec<(String, Vec<(f64, f64)>)> = methods
            .iter()
            .map(|&m| {
                let points = cfg
                    .deltag_sizes
                    .iter()
                    .map(|&size| {
                        (
                            size as f64,
                            metric.median(&outcomes[&(size, m)], timeout) * 1e3,
                        )
                    })
                    .collect();
                (m.label().to_string(), points)
            })
            .collect();
        Chart {
            file: file.into(),
            title: title.into(),
            svg: svg::line_chart(
                title,
                "keys in the tag",
                "ms",
                &series,
                (metric == Metric::Stall)
                    .then(|| svg::Reference {
                        y: STALL_GOAL_MS,
                        label: format!("goal for HC.DELTAG: {STALL_GOAL_MS} ms"),
                    })
                    .as_ref(),
            ),
        }
    };
    let charts = vec![
        chart(
            Metric::Reply,
            "deltag-reply.svg",
            "Deletion reply time (ms) by keys in the tag",
        ),
        chart(
            Metric::Stall,
            "deltag-stall.svg",
            "Longest PING stall (ms) by keys in the tag",
        ),
        chart(
            Metric::Reclaim,
            "deltag-reclaim.svg",
            "Time until used_memory is back (ms) by keys in the tag",
        ),
    ];
    let rounds: Vec<String> = cfg
        .deltag_sizes
        .iter()
        .map(|&s| format!("{} at {}", (cfg.deltag_rounds)(s), thousands(s as f64)))
        .collect();
    report.sections.push(Section {
        title: "Server side: deleting a tag".into(),
        intro: vec![
            format!(
                "One tag (a set, for the baselines) holding N keys with {}-byte values, filled with \
                 pipelined writes (HC.SET … TAGS big on the module's server; SET + SADD big on plain \
                 Redis for both baselines), then deleted:",
                cfg.value_size
            ),
            "- **HC.DELTAG big**: one command.".into(),
            format!(
                "- **(a) Lua scheme, client side**: SMEMBERS big, then DEL of the members in batches of {} \
                 keys, DEL big, PUBLISH of the tag. (SMEMBERS builds its whole reply, and DEL of the set \
                 frees all its members, each in one command: Redis' default `lazyfree-lazy-user-del no`.)",
                thousands(DEL_BATCH as f64)
            ),
            "- **(b) one UNLINK** of every key and the set (the client knows the keys; the command is \
               encoded before the clock starts)."
                .into(),
            format!(
                "Reply time: from sending the first command to the last reply. Stall: the longest PING \
                 round trip of a separate connection sending PING in a loop (100 µs apart) from before \
                 the deletion until memory is reclaimed (noise floor: the longest PING on the idle \
                 server over {} was {}). Memory \
                 reclaimed: from the first command until used_memory (polled every 2 ms) is within {}% \
                 of the fill's growth (at least 64 KiB) above the pre-fill level; given up after {} (shown as \"> …\"); \
                 the module's log of recent changes is off for this part (`hybridcache.event-log-changes 0`: \
                 it would keep each fill's changes, which is not memory of the tag's keys). \
                 Two subscribers listen on each server. Rounds: {}. Ratio = HC.DELTAG ÷ baseline \
                 (lower is better).",
                report::duration(cfg.idle_window),
                report::duration(idle),
                RECLAIMED_WITHIN * 100.0,
                seconds(timeout),
                rounds.join(", ")
            ),
        ],
        header: [
            "keys in tag",
            "metric",
            "HC.DELTAG",
            "(a) SMEMBERS + DEL",
            "ratio to (a)",
            "(b) UNLINK",
            "ratio to (b)",
            "goal",
            "met",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        charts,
        notes: vec![],
    });
}
