//! Conditional fills: what `HC.SET ... LEASE` costs against the unconditional `HC.SET`, and
//! what the lease table holds in memory per write, per fill in flight and per tag removal.

use crate::config::Config;
use crate::fill;
use crate::report::{
    self, bytes, ratio_spread, thousands, verdict, Goal, GoalCheck, Report, Section,
};
use crate::servers::{flushall, settled_memory, used_memory};
use crate::stats::{median, ratios, Spread};
use hybridcache_protocol::command::{self, option};
use hybridcache_tests::{HcInfo, RedisServer};
use redis::Value;
use std::time::Instant;

/// Writes per pipeline (one timed batch).
const BATCH: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Conditional,
}

/// Leases for `keys` (untimed): the tokens, in order.
fn leases(con: &mut redis::Connection, keys: &[String]) -> Vec<Vec<u8>> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd(command::FETCH).arg(key).arg(option::LEASE);
    }
    let replies: Vec<Value> = pipe
        .query(con)
        .unwrap_or_else(|e| panic!("HC.FETCH LEASE failed: {e}"));
    replies
        .into_iter()
        .map(|reply| match reply {
            Value::Array(fields) => match fields.into_iter().nth(5) {
                Some(Value::BulkString(token)) => token,
                other => panic!("HC.FETCH LEASE: no token in {other:?}"),
            },
            other => panic!("HC.FETCH LEASE: unexpected reply {other:?}"),
        })
        .collect()
}

/// Seconds taken by one pipeline of `BATCH` HC.SETs (with the tokens in conditional mode);
/// every conditional write must be accepted.
fn timed_writes(
    con: &mut redis::Connection,
    cfg: &Config,
    keys: &[String],
    tokens: &[Vec<u8>],
    mode: Mode,
    value: &[u8],
) -> f64 {
    let mut pipe = redis::pipe();
    for (key, token) in keys.iter().zip(tokens) {
        // As the client writes a fill: a relative TTL and GETVERSION (so both modes replicate
        // in the rewritten form with PXAT).
        let cmd = pipe
            .cmd(command::SET)
            .arg(key)
            .arg(value)
            .arg(option::PX)
            .arg(3_600_000)
            .arg(option::GETVERSION);
        if mode == Mode::Conditional {
            cmd.arg(option::LEASE).arg(token.as_slice());
        }
        cmd.arg(option::TAGS).arg(&cfg.write_tags);
    }
    let started = Instant::now();
    let replies: Vec<Value> = pipe
        .query(con)
        .unwrap_or_else(|e| panic!("HC.SET failed: {e}"));
    let elapsed = started.elapsed().as_secs_f64();
    let refused = replies.iter().filter(|r| matches!(r, Value::Nil)).count();
    assert_eq!(
        refused,
        0,
        "{mode:?}: {refused} of {} writes refused",
        keys.len()
    );
    elapsed
}

/// Conditional HC.SET ÷ HC.SET, and the lease table's memory.
pub fn fills(cfg: &Config, module: &RedisServer, report: &mut Report) {
    let mut con = module.connection();
    let value = fill::value(cfg.value_size);
    let batches = if cfg.quick { 20 } else { 60 };
    let (mut plain_rate, mut conditional_rate) = (Vec::new(), Vec::new());
    for round in 0..cfg.rounds {
        flushall(&mut con);
        settled_memory(&mut con);
        let modes = if round % 2 == 0 {
            [Mode::Plain, Mode::Conditional]
        } else {
            [Mode::Conditional, Mode::Plain]
        };
        let (mut secs_plain, mut secs_conditional) = (0.0, 0.0);
        for batch in 0..batches {
            for mode in modes {
                let keys: Vec<String> = (0..BATCH)
                    .map(|i| format!("fill:{round}:{batch}:{mode:?}:{i}"))
                    .collect();
                // Both modes take the same leases, so that the table is the same size.
                let tokens = leases(&mut con, &keys);
                let secs = timed_writes(&mut con, cfg, &keys, &tokens, mode, &value);
                match mode {
                    Mode::Plain => secs_plain += secs,
                    Mode::Conditional => secs_conditional += secs,
                }
            }
        }
        let writes = (batches * BATCH) as f64;
        plain_rate.push(writes / secs_plain);
        conditional_rate.push(writes / secs_conditional);
        say!(
            "fills round {}/{}: HC.SET {} writes/s, HC.SET LEASE {} writes/s",
            round + 1,
            cfg.rounds,
            thousands(writes / secs_plain),
            thousands(writes / secs_conditional)
        );
    }
    let spread = Spread::of(&ratios(&conditional_rate, &plain_rate));
    let goal = 0.95;
    let met = Goal::AtLeast(goal).met(spread.median);
    report.goals.push(GoalCheck {
        what: "conditional HC.SET (LEASE) ÷ HC.SET, pipelined".into(),
        value: report::ratio(spread.median),
        goal: format!("≥ {goal}×"),
        met,
    });
    let mut rows = vec![vec![
        format!(
            "HC.SET k v PX ms LEASE token GETVERSION TAGS ({} tags: a fill as the client writes it), pipelines of {BATCH}",
            cfg.write_tags.len()
        ),
        thousands(median(&conditional_rate)),
        "the same without LEASE, same keys and leases".to_string(),
        thousands(median(&plain_rate)),
        ratio_spread(spread),
        format!("≥ {goal}×"),
        verdict(met),
    ]];

    let memory = lease_memory(&mut con, cfg);
    rows.extend(memory.iter().map(|(what, value)| {
        vec![
            what.clone(),
            value.clone(),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
        ]
    }));
    flushall(&mut con);
    report.sections.push(Section {
        title: "Conditional fills (fill leases)".into(),
        intro: vec![
            "Every fill is written with `HC.SET … LEASE <token>`, the token from the \
             `HC.FETCH … LEASE` that missed. The server checks the lease (one hash lookup for \
             the key, one per tag) before writing. Both modes below write fresh keys for \
             which a lease was taken (untimed), so only the writes are timed; every \
             conditional write was accepted."
                .into(),
            "Memory rows: `used_memory` before and after, on the module server; the lease \
             table's own estimate is `INFO hybridcache` `fill_leases_bytes`."
                .into(),
        ],
        header: [
            "measured",
            "writes/s or size",
            "baseline",
            "writes/s",
            "ratio (min–max)",
            "goal",
            "met",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        charts: Vec::new(),
        notes: Vec::new(),
    });
}

/// `(what, figure)` rows: bytes per write without a lease, per lease in flight, per tag
/// removal while leases are in flight.
fn lease_memory(con: &mut redis::Connection, cfg: &Config) -> Vec<(String, String)> {
    let n: usize = if cfg.quick { 20_000 } else { 100_000 };
    let value = fill::value(cfg.value_size);
    flushall(con);
    let info = |con: &mut redis::Connection| HcInfo::read(con);
    // Writes without leases: the table does not grow.
    let before = info(con).int("fill_leases_bytes");
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd(command::SET)
            .arg(format!("w:{i}"))
            .arg(&value)
            .arg(option::TAGS)
            .arg(&cfg.write_tags)
            .ignore();
    }
    let _: () = pipe
        .query(con)
        .unwrap_or_else(|e| panic!("HC.SET failed: {e}"));
    let per_write = (info(con).int("fill_leases_bytes") - before) as f64 / n as f64;
    flushall(con);

    // Leases in flight: keys of the benchmark's shape (`fill:` + 12 digits).
    let start = settled_memory(con);
    let keys: Vec<String> = (0..n).map(|i| format!("lease:{i:012}")).collect();
    for chunk in keys.chunks(10_000) {
        let _ = leases(con, chunk);
    }
    let held = info(con);
    let after = used_memory(con);
    let per_lease = (after - start) as f64 / held.int("fill_leases") as f64;
    let estimate = held.int("fill_leases_bytes") as f64 / held.int("fill_leases") as f64;

    // Tag removals while the leases are in flight.
    let start = used_memory(con);
    let removals = n / 10;
    let mut pipe = redis::pipe();
    for i in 0..removals {
        pipe.cmd(command::DELTAG)
            .arg(format!("tag:{i:08}"))
            .ignore();
    }
    let _: () = pipe
        .query(con)
        .unwrap_or_else(|e| panic!("HC.DELTAG failed: {e}"));
    let after = used_memory(con);
    let tracked = info(con).int("fill_tag_removals");
    let per_removal = (after - start) as f64 / tracked.max(1) as f64;
    flushall(con);
    vec![
        (
            format!("lease table growth per HC.SET without a lease ({n} writes)"),
            bytes(per_write),
        ),
        (
            format!("memory per fill in flight ({} leases, 19-byte keys)", held.int("fill_leases")),
            format!("{} (table's estimate {})", bytes(per_lease), bytes(estimate)),
        ),
        (
            format!("memory per tag removal remembered ({tracked} of {removals} DELTAGs, leases in flight)"),
            bytes(per_removal),
        ),
    ]
}
