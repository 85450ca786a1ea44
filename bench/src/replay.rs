//! Replay after a subscription outage: a handle whose subscription is cut while 1% of its
//! L1 changes keeps the rest of its L1, by replaying the changes it missed from the
//! server's event log (`HC.EVENTS`), and serves no changed value.

use crate::config::Config;
use crate::report::{self, thousands, verdict, Goal, GoalCheck, Report, Section};
use crate::servers::flushall;
use crate::stats::{median, Spread};
use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::command;
use hybridcache_tests::RedisServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ACL user handle B connects as. Taking its channel permission away is the outage:
/// Redis disconnects the user's subscribed connections at once (`ACL SETUSER …
/// resetchannels`) and refuses their `SUBSCRIBE` until the permission is back, while B's
/// command connection keeps working, as with a network cut between B's subscription and
/// the server.
const USER: &str = "bench-replay";
const PASSWORD: &str = "bench-replay-secret";

/// B's longest wait between two attempts to subscribe again (default 5 s): bounds how long
/// after the outage B tries again; the catch-up is timed from its new subscription.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Tasks reading through B at once.
const READERS: u64 = 16;

/// Longest wait for any step.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Writes per pipeline when filling Redis.
const FILL_PIPELINE: u64 = 1_000;

/// Percentage of the untouched entries B must still serve from L1 (the goal).
const KEPT_GOAL: f64 = 99.0;

fn key(i: u64) -> String {
    format!("rp:{i}")
}

/// The value entry `i` holds after `writes` writes during the outage (0: as filled).
fn value(i: u64, writes: u64) -> u64 {
    (writes << 32) | i
}

/// One round of the scenario.
#[derive(Debug, Clone)]
struct Outcome {
    /// L1 hits over every entry just before the outage.
    held_before: u64,
    untouched: u64,
    /// Untouched entries served from L1 after the catch-up.
    kept: u64,
    changed: u64,
    /// Changed entries served from L1 after the catch-up (with their new value: an old one
    /// fails the run).
    changed_from_l1: u64,
    writes: u64,
    /// Changes applied by the replay (`events_replayed`).
    replayed: u64,
    /// Whether B reset its L1 instead (`l1_flushes` moved).
    reset: bool,
    /// From the permission taken away until it was given back.
    outage: Duration,
    /// From B's new subscription appearing on the server until B caught up (`catch_ups`).
    catch_up: Duration,
    /// From the permission given back until B caught up (includes B's reconnect backoff).
    back: Duration,
}

fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, cmd: &redis::Cmd) -> T {
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", cmd.args_iter().next()))
}

fn set_user(con: &mut redis::Connection, rules: &[&str]) {
    let _: () = query(con, redis::cmd("ACL").arg("SETUSER").arg(USER).arg(rules));
}

/// Whether a subscribed connection of [`USER`] is on the server.
fn user_subscribed(con: &mut redis::Connection) -> bool {
    let list: String = query(
        con,
        redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub"),
    );
    let field = format!("user={USER}");
    list.lines()
        .any(|line| line.split_whitespace().any(|f| f == field))
}

/// Reads entries `ids` through `b` with [`READERS`] tasks; each must hold its value after
/// `writes` writes. Returns how many were served from L1.
///
/// # Panics
/// When one holds another value (an old value of a changed entry).
async fn read_all(b: &HybridCache, ids: &Arc<Vec<u64>>, writes: u64) -> u64 {
    let before = b.stats().l1_hits;
    let tasks: Vec<_> = (0..READERS)
        .map(|task| {
            let (b, ids) = (b.clone(), ids.clone());
            tokio::spawn(async move {
                for &i in ids.iter().skip(task as usize).step_by(READERS as usize) {
                    let got = b
                        .get::<u64>(&key(i))
                        .await
                        .unwrap_or_else(|e| panic!("B.get failed: {e}"));
                    assert_eq!(
                        got.as_deref(),
                        Some(&value(i, writes)),
                        "B served a wrong value for {} (expected its value after {writes} \
                         writes during the outage)",
                        key(i)
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("a reader task failed: {e}"));
    }
    b.stats().l1_hits - before
}

async fn round(cfg: &Config, server: &RedisServer) -> Outcome {
    let mut con = server.connection();
    flushall(&mut con);
    set_user(
        &mut con,
        &[
            "reset",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "allchannels",
            "+@all",
        ],
    );
    let b = HybridCache::builder(format!(
        "redis://{USER}:{PASSWORD}@127.0.0.1:{}/",
        server.port()
    ))
    .l1_max_entries(1_000_000)
    .default_options(EntryOptions::new().ttl(Duration::from_secs(3600)))
    .max_reconnect_backoff(RECONNECT_BACKOFF)
    .build()
    .await
    .unwrap_or_else(|e| panic!("cannot build handle B: {e}"));

    let entries = cfg.replay_entries;
    let stride = entries / cfg.replay_changed;
    let writes_per_key = cfg.replay_writes / cfg.replay_changed;
    let (changed, untouched): (Vec<u64>, Vec<u64>) = (0..entries).partition(|i| i % stride == 0);
    let (changed, untouched) = (Arc::new(changed), Arc::new(untouched));
    let all = Arc::new((0..entries).collect::<Vec<u64>>());

    // The entries in Redis, then in B's L1 (each read once), then read again: all hits.
    let mut pipe = redis::pipe();
    for i in 0..entries {
        pipe.cmd(command::SET)
            .arg(key(i))
            .arg(value(i, 0).to_string())
            .ignore();
        if (i + 1) % FILL_PIPELINE == 0 || i + 1 == entries {
            query_pipe(&mut con, &pipe);
            pipe.clear();
        }
    }
    read_all(&b, &all, 0).await;
    let held_before = read_all(&b, &all, 0).await;

    // The outage: B's subscription is dropped by the server and cannot come back.
    let before = b.stats();
    let cut = Instant::now();
    set_user(&mut con, &["resetchannels"]);
    while b.is_subscribed() || user_subscribed(&mut con) {
        assert!(cut.elapsed() < TIMEOUT, "B's subscription was not cut");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Meanwhile every changed entry is written `writes_per_key` times, in batches spread
    // over the outage (each batch writes every changed entry once, pipelined).
    for w in 1..=writes_per_key {
        let at = cut
            + cfg
                .replay_outage
                .mul_f64((w - 1) as f64 / writes_per_key as f64);
        tokio::time::sleep_until(at.into()).await;
        let mut pipe = redis::pipe();
        for &i in changed.iter() {
            pipe.cmd(command::SET)
                .arg(key(i))
                .arg(value(i, w).to_string())
                .ignore();
        }
        query_pipe(&mut con, &pipe);
    }
    tokio::time::sleep_until((cut + cfg.replay_outage).into()).await;
    assert!(
        !b.is_subscribed() && b.stats().subscriptions == before.subscriptions,
        "B subscribed again during the outage"
    );
    set_user(&mut con, &["allchannels"]);
    let restored = Instant::now();
    let outage = restored - cut;

    // B subscribes again (seen on the server), then catches up or resets.
    let mut resubscribed = None;
    let done = loop {
        if resubscribed.is_none() && user_subscribed(&mut con) {
            resubscribed = Some(Instant::now());
        }
        let now = b.stats();
        if now.catch_ups > before.catch_ups
            || (now.l1_flushes > before.l1_flushes && now.subscriptions > before.subscriptions)
        {
            break Instant::now();
        }
        assert!(
            restored.elapsed() < TIMEOUT,
            "B did not come back within {TIMEOUT:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_micros(100));
    };
    let after = b.stats();
    let resubscribed = resubscribed.unwrap_or(done);

    // Untouched entries: from L1 if B kept them. Changed ones: never the old value.
    let kept = read_all(&b, &untouched, 0).await;
    let changed_from_l1 = read_all(&b, &changed, writes_per_key).await;
    Outcome {
        held_before,
        untouched: untouched.len() as u64,
        kept,
        changed: changed.len() as u64,
        changed_from_l1,
        writes: writes_per_key * changed.len() as u64,
        replayed: after.events_replayed - before.events_replayed,
        reset: after.l1_flushes > before.l1_flushes,
        outage,
        catch_up: done.saturating_duration_since(resubscribed),
        back: done - restored,
    }
}

fn query_pipe(con: &mut redis::Connection, pipe: &redis::Pipeline) {
    pipe.query::<()>(con)
        .unwrap_or_else(|e| panic!("pipelined HC.SET failed: {e}"));
}

/// Runs the scenario `cfg.replay_rounds` times on `server` (inside a Tokio runtime with
/// worker threads) and adds its section and goals.
pub async fn replay(cfg: &Config, server: &RedisServer, report: &mut Report) {
    let mut outcomes = Vec::new();
    for r in 0..cfg.replay_rounds {
        let o = round(cfg, server).await;
        say!(
            "replay round {}/{}: kept {} of {} untouched entries in L1 ({}), changed served from \
             L1 {} of {}, {} changes replayed{}, catch-up {} (back {} after the {} outage)",
            r + 1,
            cfg.replay_rounds,
            thousands(o.kept as f64),
            thousands(o.untouched as f64),
            percent(kept_share(&o)),
            o.changed_from_l1,
            o.changed,
            thousands(o.replayed as f64),
            if o.reset { ", L1 RESET" } else { "" },
            report::duration(o.catch_up),
            report::duration(o.back),
            report::duration(o.outage)
        );
        outcomes.push(o);
    }
    let of = |f: &dyn Fn(&Outcome) -> f64| Spread::of(&outcomes.iter().map(f).collect::<Vec<_>>());
    let kept = of(&|o| kept_share(o));
    let catch_up = of(&|o| o.catch_up.as_secs_f64());
    let back = of(&|o| o.back.as_secs_f64());
    let first = &outcomes[0];
    let kept_met = Goal::AtLeast(KEPT_GOAL).met(kept.median);
    let resets = outcomes.iter().filter(|o| o.reset).count();
    report.goals.push(GoalCheck {
        what: format!(
            "replay: untouched L1 entries kept through a {} subscription outage",
            report::duration(cfg.replay_outage)
        ),
        value: format!(
            "{} (catch-up {})",
            percent(kept.median),
            report::seconds(catch_up.median)
        ),
        goal: format!("≥ {KEPT_GOAL}%"),
        met: kept_met,
    });
    // Reaching the report means no changed entry served its old value (read_all asserts it).
    report.goals.push(GoalCheck {
        what: "replay: changed entries served with their old value".into(),
        value: format!("0 of {}", thousands(first.changed as f64)),
        goal: "0".into(),
        met: true,
    });
    let spread = |s: Spread, show: fn(f64) -> String| {
        format!("**{}** ({}–{})", show(s.median), show(s.min), show(s.max))
    };
    let rows = vec![
        vec![
            "untouched entries served from L1 after the catch-up".into(),
            format!(
                "{} of {}: {}",
                thousands(median(
                    &outcomes.iter().map(|o| o.kept as f64).collect::<Vec<_>>()
                )),
                thousands(first.untouched as f64),
                spread(kept, percent)
            ),
            format!("≥ {KEPT_GOAL}%"),
            verdict(kept_met),
        ],
        vec![
            "changed entries served with their old value (each read must return the last write)"
                .into(),
            format!(
                "0 of {} (served from L1, with the new value: {})",
                thousands(first.changed as f64),
                thousands(median(
                    &outcomes
                        .iter()
                        .map(|o| o.changed_from_l1 as f64)
                        .collect::<Vec<_>>()
                ))
            ),
            "0".into(),
            verdict(true),
        ],
        vec![
            "catch-up time: B's new subscription on the server → `stats().catch_ups` + 1 \
             (replay read and applied)"
                .into(),
            spread(catch_up, report::seconds),
            "—".into(),
            "—".into(),
        ],
        vec![
            format!(
                "outage over (permission back) → B serves L1 again (includes B's reconnect \
                 backoff, at most {})",
                report::duration(RECONNECT_BACKOFF)
            ),
            spread(back, report::seconds),
            "—".into(),
            "—".into(),
        ],
        vec![
            "changes replayed (`stats().events_replayed`) of the writes made during the \
             outage / rounds in which B reset its L1 instead"
                .into(),
            format!(
                "{} of {} / {resets} of {}",
                thousands(median(
                    &outcomes
                        .iter()
                        .map(|o| o.replayed as f64)
                        .collect::<Vec<_>>()
                )),
                thousands(first.writes as f64),
                outcomes.len()
            ),
            "—".into(),
            "—".into(),
        ],
        vec![
            "entries served from L1 just before the outage".into(),
            format!(
                "{} of {}",
                thousands(median(
                    &outcomes
                        .iter()
                        .map(|o| o.held_before as f64)
                        .collect::<Vec<_>>()
                )),
                thousands(cfg.replay_entries as f64)
            ),
            "—".into(),
            "—".into(),
        ],
    ];
    report.sections.push(Section {
        title: "Client side: replay after a subscription outage".into(),
        intro: vec![
            format!(
                "One server with the module; handle B (1M-entry L1, maximum reconnect backoff {}) \
                 reads {} entries (`rp:0` … `rp:{}`, JSON numbers written with HC.SET), so that all are \
                 in its L1. Then B's subscription is cut for {}: B connects as an ACL user whose \
                 channel permission is taken away (`ACL SETUSER {USER} resetchannels`: Redis \
                 disconnects the user's subscribed connection at once and refuses its \
                 `SUBSCRIBE` until `allchannels` gives the permission back), while B's command \
                 connection keeps working. During the outage another connection writes {} \
                 changes to {} of the entries (every {}th, each written {} times, in batches \
                 spread over the outage). B keeps trying to subscribe; once it is back, it \
                 replays what it missed from the server's event log (`HC.EVENTS SINCE`).",
                report::duration(RECONNECT_BACKOFF),
                thousands(cfg.replay_entries as f64),
                cfg.replay_entries - 1,
                report::duration(cfg.replay_outage),
                thousands(cfg.replay_writes as f64),
                thousands(cfg.replay_changed as f64),
                cfg.replay_entries / cfg.replay_changed,
                cfg.replay_writes / cfg.replay_changed
            ),
            format!(
                "Then every entry is read through B ({READERS} tasks): the untouched ones count \
                 as kept when served from L1 (`stats().l1_hits`), and every changed one must \
                 return its last written value (the run fails otherwise). The catch-up is timed \
                 from B's new subscribed connection appearing in `CLIENT LIST` (polled every \
                 ~0.1 ms) until B's `catch_ups` counter moved. {} round(s); medians, lowest and \
                 highest round in parentheses.",
                cfg.replay_rounds
            ),
        ],
        header: ["measure", "value", "goal", "met"]
            .map(String::from)
            .to_vec(),
        rows,
        charts: vec![],
        notes: vec![],
    });
}

/// Untouched entries kept, in percent.
fn kept_share(o: &Outcome) -> f64 {
    100.0 * o.kept as f64 / o.untouched.max(1) as f64
}

fn percent(value: f64) -> String {
    if (99.0..100.0).contains(&value) {
        format!("{value:.2}%")
    } else {
        format!("{value:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_gives_an_entry_a_value_of_its_own() {
        assert_eq!(value(7, 0), 7);
        assert_ne!(value(7, 1), value(7, 2));
        assert_ne!(value(7, 20), value(8, 20));
        assert_eq!(value(7, 20) >> 32, 20);
        assert_eq!(
            percent(kept_share(&Outcome {
                held_before: 100,
                untouched: 99_000,
                kept: 98_500,
                changed: 1_000,
                changed_from_l1: 0,
                writes: 20_000,
                replayed: 20_000,
                reset: false,
                outage: Duration::ZERO,
                catch_up: Duration::ZERO,
                back: Duration::ZERO,
            })),
            "99.49%"
        );
    }
}
