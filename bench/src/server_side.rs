//! Server side: HC.SET / HC.GET / HC.MGET / HC.FETCH throughput against SET, GET, MGET and
//! the Lua tagging script (redis-benchmark, with and without pipelining), and memory per
//! tagged entry.

use crate::fill::{self, Scheme};
use crate::redis_benchmark::{self, Load};
use crate::report::{
    self, bytes, ratio_spread, thousands, verdict, Chart, Goal, GoalCheck, Report, Section,
};
use crate::servers::{
    flushall, settled_memory, wait_drained, EventLogOff, Listeners, Received, EVENT_LOG_CHANGES,
    LUA_CHANNEL,
};
use crate::stats::{median, ratios, Spread};
use crate::{config::Config, svg};
use hybridcache_protocol::{command, DEFAULT_CHANNEL};
use hybridcache_tests::{HcInfo, RedisServer};
use std::collections::HashMap;
use std::time::Duration;

/// The Lua scheme of tagged writes: the value, the key added to a set per tag, and an
/// invalidation message, atomically. `KEYS = [key, tag...]`, `ARGV = [value, channel]`.
pub const LUA_SET_WITH_TAGS: &str = "\
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('SADD', KEYS[i], KEYS[1]) end
redis.call('PUBLISH', ARGV[2], KEYS[1])
return redis.status_reply('OK')";

/// The two servers of the server-side parts: one with the module, one plain (baselines).
pub struct Pair<'a> {
    pub module: &'a RedisServer,
    pub plain: &'a RedisServer,
    /// The subscribers of the module's channel.
    pub module_listeners: &'a Listeners,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cmd {
    HcSet,
    Set,
    Lua,
    HcGet,
    Get,
    /// [`MGET_KEYS`] keys per call.
    HcMget,
    Mget,
    /// `HC.FETCH key`: the value with its tags, TTL, origin and version.
    HcFetch,
    /// The module's `set` event alone: what publishing costs, without any write.
    Publish,
}

/// Keys per HC.MGET / MGET call.
const MGET_KEYS: usize = 10;

/// A message of the size and shape of one HC.SET change of a benchmark key, published alone
/// (what one message per write would cost).
const EVENT_SIZED_MESSAGE: &str = r#"{"v":2,"origin":"0123456789abcdef","events":[{"seq":1234567,"db":0,"op":"set","kind":"keys","keys":["k:000000012345"]}]}"#;

impl Cmd {
    fn label(self) -> &'static str {
        match self {
            Cmd::HcSet => "HC.SET (3 tags)",
            Cmd::Set => "SET",
            Cmd::Lua => "Lua: SET + 3×SADD + PUBLISH (EVALSHA)",
            Cmd::HcGet => "HC.GET",
            Cmd::Get => "GET",
            Cmd::HcMget => "HC.MGET (10 keys)",
            Cmd::Mget => "MGET (10 keys)",
            Cmd::HcFetch => "HC.FETCH (value, 3 tags, TTL, origin, version)",
            Cmd::Publish => "reference: PUBLISH of one event-sized message (no write)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Cmd::HcSet => "HC.SET",
            Cmd::Set => "SET",
            Cmd::Lua => "Lua",
            Cmd::HcGet => "HC.GET",
            Cmd::Get => "GET",
            Cmd::HcMget => "HC.MGET",
            Cmd::Mget => "MGET",
            Cmd::HcFetch => "HC.FETCH",
            Cmd::Publish => "PUBLISH",
        }
    }

    fn on_module_server(self) -> bool {
        matches!(
            self,
            Cmd::HcSet | Cmd::HcGet | Cmd::HcMget | Cmd::HcFetch | Cmd::Publish
        )
    }

    fn args(self, cfg: &Config, sha: &str) -> Vec<String> {
        let key = "k:__rand_int__".to_string();
        let multi = |name: &str, key: String| {
            std::iter::once(name.to_string())
                .chain(std::iter::repeat_n(key, MGET_KEYS))
                .collect()
        };
        let value = String::from_utf8_lossy(&fill::value(cfg.value_size)).into_owned();
        let mut args: Vec<String> = match self {
            Cmd::HcSet => vec![
                command::SET.into(),
                key,
                value,
                command::option::TAGS.into(),
            ],
            Cmd::Set => vec!["SET".into(), key, value],
            Cmd::Lua => vec![
                "EVALSHA".into(),
                sha.into(),
                (1 + cfg.write_tags.len()).to_string(),
                key,
            ],
            Cmd::HcGet => vec![command::GET.into(), key],
            Cmd::Get => vec!["GET".into(), key],
            // Each `__rand_int__` gets its own random number.
            Cmd::HcMget => multi(command::MGET, key),
            Cmd::Mget => multi("MGET", key),
            Cmd::HcFetch => vec![command::FETCH.into(), key],
            Cmd::Publish => vec![
                "PUBLISH".into(),
                DEFAULT_CHANNEL.into(),
                EVENT_SIZED_MESSAGE.into(),
            ],
        };
        match self {
            Cmd::HcSet => args.extend(cfg.write_tags.iter().cloned()),
            Cmd::Lua => {
                args.extend(cfg.write_tags.iter().cloned());
                args.push(String::from_utf8_lossy(&fill::value(cfg.value_size)).into_owned());
                args.push(LUA_CHANNEL.into());
            }
            _ => {}
        }
        args
    }
}

/// Per-round results of one command at one depth.
#[derive(Debug, Default, Clone)]
struct Runs {
    rps: Vec<f64>,
    p99_ms: Vec<f64>,
}

/// The events of one HC.SET run: the module's counters (`INFO hybridcache`) and what each
/// subscriber read, over the run.
#[derive(Debug, Clone, Copy)]
struct Batching {
    writes: u64,
    /// The run's writes per second (redis-benchmark).
    rps: f64,
    /// `event_messages` and `event_changes` after the run minus before.
    messages: u64,
    changes: u64,
    /// Messages and changes read by each subscriber.
    received: Received,
}

impl Batching {
    /// Per second of the run.
    fn per_second(&self, count: u64) -> f64 {
        count as f64 * self.rps / self.writes as f64
    }

    fn messages_per_write(&self) -> f64 {
        self.messages as f64 / self.writes as f64
    }
}

/// The module's `(event_messages, event_changes)`.
fn event_counters(con: &mut redis::Connection) -> (u64, u64) {
    let info = HcInfo::read(con);
    let count = |name| u64::try_from(info.int(name)).unwrap_or(0);
    (count("event_messages"), count("event_changes"))
}

/// Goal of messages per write under pipelined load (the issue asks for ≪ 1).
const PIPELINED_MESSAGES_PER_WRITE: f64 = 0.1;

/// Goal of HC.SET ÷ SET at a pipeline depth (the issue's figures).
fn set_ratio_goal(depth: u32) -> f64 {
    if depth > 1 {
        0.6
    } else {
        0.8
    }
}

/// Goal of HC.GET ÷ GET at a pipeline depth (issue 15 asks 0.95× pipelined).
fn get_ratio_goal(depth: u32) -> f64 {
    if depth > 1 {
        0.95
    } else {
        0.9
    }
}

/// Goal of HC.MGET ÷ MGET.
const MGET_RATIO_GOAL: f64 = 0.9;

/// Loads the Lua script once; returns its SHA.
pub fn load_script(plain: &RedisServer) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(LUA_SET_WITH_TAGS)
        .query(&mut plain.connection())
        .unwrap_or_else(|e| panic!("SCRIPT LOAD failed: {e}"))
}

/// The rounds in a rotating order, so that drift in the machine's speed spreads evenly.
fn rotated<T: Copy>(items: &[T], round: usize) -> Vec<T> {
    let mut out = items.to_vec();
    out.rotate_left(round % items.len());
    out
}

/// Throughput of HC.SET/HC.GET and their baselines at every pipeline depth.
pub fn throughput(cfg: &Config, pair: &Pair, report: &mut Report) {
    let sha = load_script(pair.plain);
    let mut results: HashMap<(u32, Cmd), Runs> = HashMap::new();
    let mut batching: HashMap<u32, Vec<Batching>> = HashMap::new();
    let mut module_con = pair.module.connection();
    let mut plain_con = pair.plain.connection();
    for &depth in &cfg.pipelines {
        let load = Load {
            clients: cfg.clients,
            requests: if depth > 1 {
                cfg.pipelined_requests
            } else {
                cfg.requests
            },
            keyspace: cfg.keyspace,
            pipeline: depth,
        };
        for round in 0..cfg.rounds {
            let run = |cmd: Cmd, results: &mut HashMap<(u32, Cmd), Runs>| {
                let server = if cmd.on_module_server() {
                    pair.module
                } else {
                    pair.plain
                };
                let row = redis_benchmark::run(server.port(), load, &cmd.args(cfg, &sha));
                say!(
                    "throughput P={depth} round {}/{}: {:<7} {:>10} ops/s  p99 {:.3} ms",
                    round + 1,
                    cfg.rounds,
                    cmd.short(),
                    thousands(row.rps),
                    row.p99_ms
                );
                let runs = results.entry((depth, cmd)).or_default();
                runs.rps.push(row.rps);
                runs.p99_ms.push(row.p99_ms);
                row
            };
            // Writes: each from an empty database.
            for cmd in rotated(&[Cmd::HcSet, Cmd::Set, Cmd::Lua, Cmd::Publish], round) {
                let con = if cmd.on_module_server() {
                    &mut module_con
                } else {
                    &mut plain_con
                };
                flushall(con);
                settled_memory(con);
                if cmd != Cmd::HcSet {
                    run(cmd, &mut results);
                    continue;
                }
                let counters = event_counters(&mut module_con);
                let heard = pair.module_listeners.settle();
                let row = run(cmd, &mut results);
                let after = event_counters(&mut module_con);
                let (messages, changes) = (after.0 - counters.0, after.1 - counters.1);
                wait_drained(&mut module_con, Duration::from_secs(120));
                let now = pair
                    .module_listeners
                    .wait_for(heard, messages, Duration::from_secs(60));
                let subscribers = pair.module_listeners.count() as u64;
                let received = Received {
                    messages: (now.messages - heard.messages) / subscribers,
                    changes: (now.changes - heard.changes) / subscribers,
                    undecodable: now.undecodable - heard.undecodable,
                };
                assert_eq!(
                    (received.changes, received.undecodable),
                    (changes, 0),
                    "the subscribers did not read every change published ({received:?}, \
                     {changes} changes in {messages} messages published)"
                );
                let b = Batching {
                    writes: load.requests,
                    rps: row.rps,
                    messages,
                    changes,
                    received,
                };
                say!(
                    "throughput P={depth} round {}/{}: HC.SET events {} messages/s, {} changes/s, \
                     {:.4} messages per write",
                    round + 1,
                    cfg.rounds,
                    thousands(b.per_second(messages)),
                    thousands(b.per_second(changes)),
                    b.messages_per_write()
                );
                batching.entry(depth).or_default().push(b);
            }
            // Reads: every key of the key space present, written as the writes write it.
            flushall(&mut module_con);
            flushall(&mut plain_con);
            let value = fill::value(cfg.value_size);
            fill::fill(
                &mut module_con,
                Scheme::Module,
                0..cfg.keyspace,
                &value,
                |_| cfg.write_tags.clone(),
            );
            fill::fill(
                &mut plain_con,
                Scheme::Plain,
                0..cfg.keyspace,
                &value,
                |_| Vec::new(),
            );
            settled_memory(&mut module_con);
            let reads = [Cmd::HcGet, Cmd::Get, Cmd::HcMget, Cmd::Mget, Cmd::HcFetch];
            for cmd in rotated(&reads, round) {
                run(cmd, &mut results);
            }
        }
    }
    flushall(&mut module_con);
    flushall(&mut plain_con);

    let mut rows = Vec::new();
    for &depth in &cfg.pipelines {
        let comparisons = [
            (Cmd::HcSet, Cmd::Set, Some(set_ratio_goal(depth))),
            (Cmd::HcSet, Cmd::Lua, Some(1.5)),
            (Cmd::Publish, Cmd::Set, None),
            (Cmd::HcGet, Cmd::Get, Some(get_ratio_goal(depth))),
            (Cmd::HcMget, Cmd::Mget, Some(MGET_RATIO_GOAL)),
            // Per call: a fetch replies the value with its metadata (report only).
            (Cmd::HcFetch, Cmd::Get, None),
        ];
        for (measured, baseline, goal) in comparisons {
            let m = &results[&(depth, measured)];
            let b = &results[&(depth, baseline)];
            let spread = Spread::of(&ratios(&m.rps, &b.rps));
            let met = goal.map(|goal| Goal::AtLeast(goal).met(spread.median));
            rows.push(vec![
                depth.to_string(),
                measured.label().to_string(),
                thousands(median(&m.rps)),
                baseline.label().to_string(),
                thousands(median(&b.rps)),
                ratio_spread(spread),
                goal.map_or("—".into(), |goal| format!("≥ {goal}×")),
                met.map_or("—".into(), verdict),
                format!("{:.3} / {:.3}", median(&m.p99_ms), median(&b.p99_ms)),
            ]);
            let (Some(goal), Some(met)) = (goal, met) else {
                continue;
            };
            report.goals.push(GoalCheck {
                what: format!(
                    "{} ÷ {}, pipeline {depth}",
                    measured.short(),
                    baseline.short()
                ),
                value: report::ratio(spread.median),
                goal: format!("≥ {goal}×"),
                met,
            });
        }
    }
    let cmds = [
        Cmd::HcSet,
        Cmd::Set,
        Cmd::Lua,
        Cmd::HcGet,
        Cmd::Get,
        Cmd::HcMget,
        Cmd::Mget,
        Cmd::HcFetch,
    ];
    let chart = svg::bar_chart(
        "Throughput (median ops/s) by pipeline depth",
        "ops/s",
        &cfg.pipelines
            .iter()
            .map(|d| format!("pipeline {d}"))
            .collect::<Vec<_>>(),
        &cmds
            .iter()
            .map(|&cmd| {
                (
                    cmd.short().to_string(),
                    cfg.pipelines
                        .iter()
                        .map(|&d| median(&results[&(d, cmd)].rps))
                        .collect(),
                )
            })
            .collect::<Vec<_>>(),
    );
    report.sections.push(Section {
        title: "Server side: throughput".into(),
        intro: vec![
            format!(
                "redis-benchmark, the same for every row: {} clients, key space `-r {}` (keys \
                 `k:__rand_int__`), {}-byte values, pipeline depth 1 (no pipelining, {} requests \
                 per run) and 16 ({} requests per run); {} rounds, commands in rotating order. HC.SET writes the tags `{}`; the Lua \
                 baseline is one script (loaded once, run with EVALSHA) doing SET, SADD of the key \
                 to each tag's set and PUBLISH of the key. Writes start from an empty database; \
                 reads find every key of the key space (filled with the same writes, pipelined). \
                 HC.MGET and MGET ask for {MGET_KEYS} random keys per call (ops/s = calls/s); \
                 HC.FETCH ÷ GET is per call, a fetch replying the value with its tags, TTL, \
                 origin and version (reported, no goal).",
                cfg.clients,
                thousands(cfg.keyspace as f64),
                cfg.value_size,
                thousands(cfg.requests as f64),
                thousands(cfg.pipelined_requests as f64),
                cfg.rounds,
                cfg.write_tags.join(" "),
            ),
            "HC commands run on a server with the module, baselines on a plain redis-server of \
             the same version and settings; each server has two subscribers reading its \
             invalidation channel during every run (`hc:invalidations`, and the Lua script's \
             `lua:invalidations`); the module's subscribers decode every message (as a client \
             does), the Lua ones only count them. Ratio = HC ÷ baseline (higher is better). The \
             PUBLISH row is a reference, not a goal: the cost of delivering one message holding \
             one HC.SET change to the two subscribers, which the Lua script pays on every write \
             and HC.SET would pay without batching (it publishes one message per event-loop \
             turn: see the next section)."
                .into(),
        ],
        header: [
            "pipeline",
            "measure",
            "ops/s",
            "baseline",
            "baseline ops/s",
            "ratio",
            "goal",
            "met",
            "p99 ms (HC / baseline)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        charts: vec![Chart {
            file: "throughput.svg".into(),
            title: "Throughput by pipeline depth".into(),
            svg: chart,
        }],
        notes: vec![],
    });
    batching_section(cfg, &batching, report);
}

/// The events of the HC.SET rows: messages and changes per second, messages per write.
fn batching_section(cfg: &Config, batching: &HashMap<u32, Vec<Batching>>, report: &mut Report) {
    let mut rows = Vec::new();
    for &depth in &cfg.pipelines {
        let runs = &batching[&depth];
        let of = |f: &dyn Fn(&Batching) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let per_write = Spread::of(
            &runs
                .iter()
                .map(Batching::messages_per_write)
                .collect::<Vec<_>>(),
        );
        let goal = (depth > 1).then_some(PIPELINED_MESSAGES_PER_WRITE);
        let met = goal.map(|goal| Goal::AtMost(goal).met(per_write.median));
        if let (Some(goal), Some(met)) = (goal, met) {
            report.goals.push(GoalCheck {
                what: format!("HC.SET events: messages per write, pipeline {depth}"),
                value: format!(
                    "{} ({} messages/s, {} changes/s)",
                    messages_per_write(per_write.median),
                    thousands(of(&|b| b.per_second(b.messages))),
                    thousands(of(&|b| b.per_second(b.changes)))
                ),
                goal: format!("≤ {goal}"),
                met,
            });
        }
        rows.push(vec![
            depth.to_string(),
            thousands(of(&|b| b.rps)),
            thousands(of(&|b| b.per_second(b.messages))),
            thousands(of(&|b| b.per_second(b.changes))),
            format!(
                "**{}** ({}–{})",
                messages_per_write(per_write.median),
                messages_per_write(per_write.min),
                messages_per_write(per_write.max)
            ),
            format!(
                "{:.1}",
                of(&|b| b.changes as f64 / b.messages.max(1) as f64)
            ),
            format!(
                "{} / {}",
                thousands(of(&|b| b.received.messages as f64)),
                thousands(of(&|b| b.received.changes as f64))
            ),
            goal.map_or("—".into(), |goal| format!("≤ {goal}")),
            met.map_or("—".into(), verdict),
        ]);
    }
    report.sections.push(Section {
        title: "Server side: event batching".into(),
        intro: vec![format!(
            "The HC.SET runs of the throughput table: the module publishes the changes of one \
             event-loop turn as one message. Messages and changes are the module's counters \
             (`INFO hybridcache` `event_messages`, `event_changes`) after the run minus \
             before; per second = per write × the run's writes/s. Each of the two subscribers \
             decoded every message with `hybridcache_protocol::decode_message` and read every \
             change (checked after every run). The Lua baseline publishes one message per \
             write. Medians over {} rounds; messages per write with the lowest and highest \
             round.",
            cfg.rounds
        )],
        header: [
            "pipeline",
            "HC.SET writes/s",
            "messages/s",
            "changes/s",
            "messages per write",
            "changes per message",
            "read by each subscriber (messages / changes)",
            "goal",
            "met",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        charts: vec![],
        notes: vec![],
    });
}

/// Messages per write, with enough decimals for the small ones.
fn messages_per_write(value: f64) -> String {
    if value >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// Goal of the module's memory per entry with 3 tags ÷ the Lua scheme's (issue 15).
const MEMORY_RATIO_GOAL: f64 = 0.75;

/// used_memory per entry of `n` entries written with `scheme` and `tags_of` into an empty
/// server (emptied again after), read once the subscribers have caught up; for the module,
/// its `INFO hybridcache` after the fill too.
///
/// # Panics
/// When the module's event log kept changes (it must be off: [`EventLogOff`]).
fn bytes_per_entry(
    server: &RedisServer,
    scheme: Scheme,
    n: u64,
    value: &[u8],
    tags_of: impl FnMut(u64) -> Vec<String>,
) -> (f64, Option<HcInfo>) {
    let mut con = server.connection();
    flushall(&mut con);
    let before = settled_memory(&mut con);
    fill::fill(&mut con, scheme, 0..n, value, tags_of);
    let after = settled_memory(&mut con);
    let info = (scheme == Scheme::Module).then(|| HcInfo::read(&mut con));
    if let Some(info) = &info {
        let kept = info.fields.get("event_log_changes").map(String::as_str);
        assert_eq!(
            kept,
            Some("0"),
            "the event log kept changes during a memory fill"
        );
    }
    flushall(&mut con);
    ((after - before) as f64 / n as f64, info)
}

/// used_memory per entry: the module's entries with 3 tags against the Lua scheme's string
/// plus set members and a plain string (the goal), then by tag shape.
pub fn memory(cfg: &Config, pair: &Pair, report: &mut Report) {
    let log_off = EventLogOff::new(pair.module);
    let previous = log_off
        .previous()
        .parse::<f64>()
        .map_or_else(|_| log_off.previous().to_string(), thousands);
    let log_intro = format!(
        "The module's event log (the last changes, kept for clients that reconnect: \
         `{EVENT_LOG_CHANGES}`, {} changes here, within `hybridcache.event-log-bytes`) counts \
         in used_memory but is bounded whatever the data, so it is not memory per entry: this \
         part runs with `CONFIG SET {EVENT_LOG_CHANGES} 0` and restores {} after.",
        previous, previous,
    );
    memory_goal(cfg, pair, &log_intro, report);
    memory_by_shape(cfg, pair, report);
    drop(log_off);
}

/// The goal: 3 tags of a pool, module ÷ Lua scheme, and plain SET for reference.
fn memory_goal(cfg: &Config, pair: &Pair, log_intro: &str, report: &mut Report) {
    let n = cfg.memory_entries;
    let value = fill::value(cfg.value_size);
    let pool = cfg.tag_pool;
    let schemes = [Scheme::Module, Scheme::SetsPerTag, Scheme::Plain];
    let mut per_entry: HashMap<Scheme, Vec<f64>> = HashMap::new();
    let mut module_info = None;
    for round in 0..cfg.rounds {
        for scheme in rotated(&schemes, round) {
            let server = if scheme == Scheme::Module {
                pair.module
            } else {
                pair.plain
            };
            let (bytes_per_entry, info) =
                bytes_per_entry(server, scheme, n, &value, |i| fill::pooled_tags(i, pool, 3));
            module_info = info.or(module_info);
            say!(
                "memory round {}/{}: {scheme:?} {bytes_per_entry:.1} B/entry",
                round + 1,
                cfg.rounds
            );
            per_entry.entry(scheme).or_default().push(bytes_per_entry);
        }
    }
    let hc = &per_entry[&Scheme::Module];
    let lua = &per_entry[&Scheme::SetsPerTag];
    let plain = &per_entry[&Scheme::Plain];
    let spread = Spread::of(&ratios(hc, lua));
    let met = Goal::AtMost(MEMORY_RATIO_GOAL).met(spread.median);
    let goal = format!("≤ {MEMORY_RATIO_GOAL}×");
    report.goals.push(GoalCheck {
        what: "memory per entry with 3 tags ÷ Lua scheme".into(),
        value: format!(
            "{} ({} vs {})",
            report::ratio(spread.median),
            bytes(median(hc)),
            bytes(median(lua))
        ),
        goal: goal.clone(),
        met,
    });
    let info = module_info
        .map(|i| {
            format!(
                "{} entries, {} tags, {} (key, tag) links",
                i.keys, i.tags, i.tag_links
            )
        })
        .unwrap_or_default();
    report.sections.push(Section {
        title: "Server side: memory per entry".into(),
        intro: vec![
            format!(
                "`used_memory` after writing {} entries minus before, divided by {}; {}-byte \
                 values, keys `k:<12 digits>`, 3 distinct tags per entry drawn from a pool of \
                 {} (about {} keys per tag), the same tags for both schemes; filled with \
                 pipelines of {} writes, memory read once the subscribers had caught up. The \
                 Lua scheme (string + the key in one set per tag) is measured on plain Redis. \
                 {} rounds. Ratio = HC ÷ baseline (lower is better).",
                thousands(n as f64),
                thousands(n as f64),
                cfg.value_size,
                thousands(pool as f64),
                thousands((3 * n / pool) as f64),
                fill::PIPELINE,
                cfg.rounds,
            ),
            log_intro.to_string(),
        ],
        header: [
            "measure",
            "bytes/entry",
            "baseline",
            "baseline bytes/entry",
            "ratio",
            "goal",
            "met",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![
            vec![
                "HC.SET, 3 tags".into(),
                bytes(median(hc)),
                "Lua scheme: SET + SADD ×3".into(),
                bytes(median(lua)),
                ratio_spread(spread),
                goal,
                verdict(met),
            ],
            vec![
                "HC.SET, 3 tags".into(),
                bytes(median(hc)),
                "plain SET, no tags (reference)".into(),
                bytes(median(plain)),
                ratio_spread(Spread::of(&ratios(hc, plain))),
                "—".into(),
                "—".into(),
            ],
        ],
        charts: vec![],
        notes: vec![format!(
            "Module index after the fill (INFO hybridcache): {info}."
        )],
    });
}

/// The tags each entry of a memory-by-shape fill carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TagShape {
    /// This many tags per entry, drawn from the configured pool.
    Pooled(usize),
    /// [`SMALL_TAGS`] tags per entry drawn from a pool sized so that each tag holds about
    /// [`SMALL_TAG_KEYS`] keys.
    Small,
    /// One tag, on every entry.
    Shared,
}

const SHAPES: [TagShape; 6] = [
    TagShape::Pooled(0),
    TagShape::Pooled(1),
    TagShape::Pooled(3),
    TagShape::Pooled(10),
    TagShape::Small,
    TagShape::Shared,
];

/// Tags per entry of [`TagShape::Small`] ...
const SMALL_TAGS: usize = 3;
/// ... and keys per tag, on average.
const SMALL_TAG_KEYS: u64 = 10;

/// The tag of [`TagShape::Shared`].
const SHARED_TAG: &str = "tag:shared";

impl TagShape {
    fn tags_per_entry(self) -> usize {
        match self {
            TagShape::Pooled(count) => count,
            TagShape::Small => SMALL_TAGS,
            TagShape::Shared => 1,
        }
    }

    /// The pool the tags are drawn from, with `n` entries.
    fn pool(self, cfg: &Config, n: u64) -> u64 {
        match self {
            TagShape::Pooled(_) => cfg.tag_pool,
            TagShape::Small => n * SMALL_TAGS as u64 / SMALL_TAG_KEYS,
            TagShape::Shared => 1,
        }
    }

    /// The tags of entry `i` of `n`.
    fn tags(self, cfg: &Config, n: u64, i: u64) -> Vec<String> {
        match self {
            TagShape::Shared => vec![SHARED_TAG.to_string()],
            _ => fill::pooled_tags(i, self.pool(cfg, n), self.tags_per_entry()),
        }
    }

    /// What the tags are, for every size of `sizes`.
    fn describe(self, cfg: &Config, sizes: &[u64]) -> String {
        let keys_per_tag = |shape: TagShape| {
            sizes
                .iter()
                .map(|&n| {
                    thousands((n * shape.tags_per_entry() as u64 / shape.pool(cfg, n)) as f64)
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        match self {
            TagShape::Pooled(0) => "none".into(),
            TagShape::Pooled(_) => format!(
                "drawn from a pool of {} ({} keys per tag)",
                thousands(cfg.tag_pool as f64),
                keys_per_tag(self)
            ),
            TagShape::Small => format!(
                "drawn from a pool of 3 × entries ÷ {SMALL_TAG_KEYS} ({} tags), about \
                 {SMALL_TAG_KEYS} keys per tag",
                sizes
                    .iter()
                    .map(|&n| thousands(self.pool(cfg, n) as f64))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            TagShape::Shared => format!(
                "`{SHARED_TAG}`, on every entry ({} keys)",
                keys_per_tag(self)
            ),
        }
    }

    /// The Lua scheme's writes for this shape.
    fn baseline(self) -> String {
        match self.tags_per_entry() {
            0 => "SET".into(),
            1 => "SET + SADD".into(),
            tags => format!("SET + SADD ×{tags}"),
        }
    }
}

/// Module and Lua scheme figures of one shape at one size, per round.
#[derive(Debug, Default)]
struct ShapeRuns {
    hc: Vec<f64>,
    lua: Vec<f64>,
}

/// Memory per entry by tag shape, at each size of `cfg.memory_shape_sizes`.
fn memory_by_shape(cfg: &Config, pair: &Pair, report: &mut Report) {
    let value = fill::value(cfg.value_size);
    let sizes = &cfg.memory_shape_sizes;
    let mut runs: HashMap<(u64, TagShape), ShapeRuns> = HashMap::new();
    for &n in sizes {
        let rounds = (cfg.memory_shape_rounds)(n);
        for round in 0..rounds {
            for shape in rotated(&SHAPES, round) {
                let tags_of = |i| shape.tags(cfg, n, i);
                // Each on its own server, at the same time: the fills of a million entries
                // take seconds, and neither server's memory depends on the other's.
                let (hc, lua) = std::thread::scope(|scope| {
                    let lua = scope.spawn(|| {
                        bytes_per_entry(pair.plain, Scheme::SetsPerTag, n, &value, tags_of).0
                    });
                    let hc = bytes_per_entry(pair.module, Scheme::Module, n, &value, tags_of).0;
                    let lua = lua
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    (hc, lua)
                });
                say!(
                    "memory by shape, {} entries, round {}/{rounds}: {shape:?} HC {hc:.1} B, \
                     Lua {lua:.1} B per entry",
                    thousands(n as f64),
                    round + 1
                );
                let runs = runs.entry((n, shape)).or_default();
                runs.hc.push(hc);
                runs.lua.push(lua);
            }
        }
    }

    let rows = SHAPES
        .iter()
        .map(|&shape| {
            let mut row = vec![
                shape.tags_per_entry().to_string(),
                shape.describe(cfg, sizes),
                shape.baseline(),
            ];
            for &n in sizes {
                let runs = &runs[&(n, shape)];
                let spread = Spread::of(&ratios(&runs.hc, &runs.lua));
                row.push(bytes(median(&runs.hc)));
                row.push(bytes(median(&runs.lua)));
                row.push(if runs.hc.len() > 1 {
                    ratio_spread(spread)
                } else {
                    format!("**{}**", report::ratio(spread.median))
                });
            }
            row
        })
        .collect();
    let mut header = ["tags per entry", "tags", "Lua scheme"]
        .map(String::from)
        .to_vec();
    for &n in sizes {
        let n = thousands(n as f64);
        header.push(format!("HC, {n} entries"));
        header.push(format!("Lua, {n} entries"));
        header.push(format!("ratio, {n} entries"));
    }
    let rounds = sizes
        .iter()
        .map(|&n| {
            format!(
                "{} at {}",
                (cfg.memory_shape_rounds)(n),
                thousands(n as f64)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sizes_note = if cfg.quick {
        " (QUICK sizes; the full run measures 100,000 and 1,000,000 entries)"
    } else {
        ""
    };
    report.sections.push(Section {
        title: "Server side: memory per entry by tag shape".into(),
        intro: vec![format!(
            "Bytes per entry as above (`used_memory` after the fill minus before, divided by \
             the entries; {}-byte values, keys `k:<12 digits>`, pipelines of {} writes, the \
             event log off), one column group per number of entries: {}{sizes_note}. Each \
             row writes the same tags with HC.SET … TAGS on the module's server and with the \
             Lua scheme's commands (SET, then SADD of the key to each tag's set) on plain \
             Redis (the two fills of a row at the same time, each on its own server); with no \
             tags the Lua scheme is a plain SET. Rounds: {rounds} (a fill of \
             a million entries takes seconds: 11 million commands for the Lua scheme with 10 \
             tags). Ratio = HC ÷ Lua scheme (lower is better).",
            cfg.value_size,
            fill::PIPELINE,
            sizes
                .iter()
                .map(|&n| thousands(n as f64))
                .collect::<Vec<_>>()
                .join(" and "),
        )],
        header,
        rows,
        charts: vec![],
        notes: vec![],
    });
}
