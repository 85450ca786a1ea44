//! A soak under mixed load: expiry, eviction and tag invalidation at once keep the tag index
//! exact and leak no memory.
//!
//! One server with `maxmemory 32mb` and `allkeys-lru`, for `HC_SOAK_SECS` seconds (default
//! 20; `make soak` runs 600):
//!
//! - two writers pipeline `HC.SET` over 50,000 keys with 0-4 tags out of 200, values of 64 B
//!   to 8 KB (the key space would need ~200 MB: Redis keeps evicting), and TTLs: none, short
//!   (10-500 ms) or 1-30 s;
//! - a reader pipelines `HC.GET`, `HC.MGET`, `HC.FETCH`, `HC.TAGCARD` and checks every value
//!   it gets: a value names its key and the tags it was written with, so a value served
//!   under the wrong key, or with tags other than its own, fails the test;
//! - an invalidator runs `HC.DELTAG` of random tags and `HC.DEL` of random keys.
//!
//! Every 2 s the main thread samples `used_memory`, `INFO hybridcache` and the eviction and
//! expiry counters, and runs `HC.CHECK` (O(N), atomic) every other sample. Asserted:
//!
//! - evictions and expirations happened (the run exercised them), and the tag index was
//!   exact at every check, and after the load stopped;
//! - memory stays flat: after a warm-up that fills the cache (at least a quarter of the run,
//!   until Redis evicts), `used_memory` never rises more than [`DRIFT_BOUND`] above its value
//!   at the end of the warm-up;
//! - nothing is left behind: after `FLUSHALL`, `INFO hybridcache` shows no keys, tags,
//!   links, pending removals or tombstones, and `used_memory` is back within
//!   [`RETURN_BOUND`] of its value before the load (every allocation of the module goes
//!   through Redis's allocator, so a leak of index memory would stay there), not counting
//!   the event log (bounded, and kept across a flush by design);
//! - the event stream ([`StreamChecker`], subscribed for the whole run) is numbered without
//!   gap, duplicate or reordering; every [`LOG_CHECK_EVERY`] and at the end, the changes
//!   received since the last check are exactly those the server's event log holds; and at
//!   the end every write is announced once: as many `set` changes as `HC.SET`s answered OK,
//!   a `del` per `HC.DEL` that removed keys (naming as many keys as they removed), a
//!   `deltag` per `HC.DELTAG` that removed any, at most one `removed` per key expired or
//!   evicted, nothing else, and one `flushall` for the final `FLUSHALL`.
//!
//! A summary line (operations, memory samples, drift) goes to stderr (`--nocapture`).
//! `HC_SOAK_SEED` replays the random choices of a run.

use hybridcache_protocol::command;
use hybridcache_tests::client_support::SplitMix64;
use hybridcache_tests::client_support::{env_u64, seed_from_env};
use hybridcache_tests::event_stream::{OpTally, StreamChecker};
use hybridcache_tests::index_check::hc_check;
use hybridcache_tests::info::{info_i64, info_section};
use hybridcache_tests::{wait_until, HcInfo, RedisServer};
use redis::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default run time, seconds (`HC_SOAK_SECS`).
const DEFAULT_SECS: u64 = 20;
const MAXMEMORY: i64 = 32 << 20;
const KEYS: u64 = 50_000;
const TAGS: u64 = 200;
const WRITERS: u64 = 2;
/// Commands per pipeline.
const BATCH: usize = 32;
const MAX_VALUE: usize = 8192;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How often the received changes are compared with the event log: well within the time
/// the log (`hybridcache.event-log-changes`, 100,000 by default) covers at the writers' rate
/// (about 40,000 changes/s here).
const LOG_CHECK_EVERY: Duration = Duration::from_millis(500);
/// The share of the run spent filling the cache before the memory baseline is taken (at
/// least [`MIN_WARMUP`]).
const WARMUP_SHARE: f64 = 0.25;
const MIN_WARMUP: Duration = Duration::from_secs(4);
/// How far `used_memory` may rise above its value at the end of the warm-up. Once the cache
/// is full, Redis evicts before every command that would go over `maxmemory`, so
/// `used_memory` sits at the 32 MB cap; what may come on top is what eviction does not
/// cover at once: client query and output buffers (each writer's pipeline of 32 commands
/// of up to 8 KB, up to 2 MB of replies to one pipeline of the reader: about 2.5 MB in all)
/// and eviction's lag behind the writers (7.0 yields after a time budget and goes on in a
/// timer). A quarter of `maxmemory` covers both with room; a leak of index memory while the
/// load runs shows as a rise beyond it, and whatever the cap hides shows after `FLUSHALL`.
const DRIFT_BOUND: i64 = MAXMEMORY / 4;
/// How close to its value before the load `used_memory` must come back once everything is
/// flushed: a few hash tables Redis and the module may keep at their grown size, nothing
/// proportional to the 100,000s of entries written.
const RETURN_BOUND: i64 = 2 << 20;

fn key_name(i: u64) -> String {
    format!("soak:{i}")
}

fn tag_name(i: u64) -> String {
    format!("tag:{i}")
}

/// A value names its key and its tags: `<key>|<tag,tag>|<padding>`.
fn value_for(key: &str, tags: &[String], len: usize) -> Vec<u8> {
    let mut value = format!("{key}|{}|", tags.join(",")).into_bytes();
    value.resize(value.len().max(len), b'x');
    value
}

/// The key and sorted tags a value claims.
fn parse_value(value: &[u8]) -> Option<(String, Vec<String>)> {
    let text = String::from_utf8_lossy(value);
    let mut parts = text.splitn(3, '|');
    let key = parts.next()?.to_string();
    let tags = parts.next()?;
    parts.next()?;
    let mut tags: Vec<String> = tags
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags.dedup();
    Some((key, tags))
}

/// Shared between the load threads and the main thread.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    sets: AtomicU64,
    oom: AtomicU64,
    reads: AtomicU64,
    hits: AtomicU64,
    deltags: AtomicU64,
    dels: AtomicU64,
    removed: AtomicU64,
    /// `HC.DELTAG`s and `HC.DEL`s that removed something, and the keys `HC.DEL` removed.
    deltags_removing: AtomicU64,
    dels_removing: AtomicU64,
    del_keys: AtomicU64,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut failure = self.failure.lock().unwrap();
        if failure.is_none() {
            *failure = Some(what);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    /// Records the failure a load thread ended with.
    fn report(&self, result: Result<(), String>) {
        if let Err(e) = result {
            self.fail(e);
        }
    }
}

/// Stops the load threads when dropped, so that a panic of the main thread inside the
/// thread scope does not leave it waiting for them forever.
struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs a pipeline whose every reply is checked by the caller; a connection failure or a
/// transport error ends the thread with a failure.
fn run_pipe(con: &mut redis::Connection, pipe: &mut redis::Pipeline) -> Result<Vec<Value>, String> {
    pipe.ignore_errors()
        .query::<Vec<Value>>(con)
        .map_err(|e| format!("pipeline failed: {e}"))
}

fn writer(server: &RedisServer, shared: &Shared, seed: u64) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let mut con = server.connection();
    while shared.running() {
        let mut pipe = redis::pipe();
        for _ in 0..BATCH {
            let key = key_name(rng.below(KEYS));
            let mut tags: Vec<String> = (0..rng.below(5))
                .map(|_| tag_name(rng.below(TAGS)))
                .collect();
            tags.sort();
            tags.dedup();
            let len = 64 + rng.below((MAX_VALUE - 64) as u64) as usize;
            let cmd = pipe
                .cmd(command::SET)
                .arg(&key)
                .arg(value_for(&key, &tags, len));
            match rng.below(10) {
                0..=3 => {}
                4..=6 => {
                    cmd.arg("PX").arg(10 + rng.below(491));
                }
                _ => {
                    cmd.arg("EX").arg(1 + rng.below(30));
                }
            }
            if !tags.is_empty() {
                cmd.arg("TAGS").arg(&tags);
            }
        }
        for reply in run_pipe(&mut con, &mut pipe)? {
            match reply {
                Value::Okay => {
                    shared.sets.fetch_add(1, Ordering::Relaxed);
                }
                Value::ServerError(e) if e.code() == "OOM" => {
                    shared.oom.fetch_add(1, Ordering::Relaxed);
                }
                other => return Err(format!("HC.SET answered {other:?}")),
            }
        }
    }
    Ok(())
}

/// Checks a value read under `key`; `tags`, when given, are those the server reports.
fn check_value(key: &str, value: &[u8], tags: Option<&[String]>) -> Result<(), String> {
    let Some((named, claimed)) = parse_value(value) else {
        return Err(format!(
            "{key}: malformed value {:?}",
            String::from_utf8_lossy(&value[..value.len().min(80)])
        ));
    };
    if named != key {
        return Err(format!("{key}: holds the value of {named}"));
    }
    if let Some(tags) = tags {
        let mut tags = tags.to_vec();
        tags.sort();
        if tags != claimed {
            return Err(format!(
                "{key}: HC.FETCH reports tags {tags:?}, the value was written with {claimed:?}"
            ));
        }
    }
    Ok(())
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

fn reader(server: &RedisServer, shared: &Shared, seed: u64) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let mut con = server.connection();
    while shared.running() {
        let mut pipe = redis::pipe();
        let mut asked: Vec<(u8, Vec<String>)> = Vec::new();
        for _ in 0..BATCH {
            match rng.below(10) {
                0..=4 => {
                    let key = key_name(rng.below(KEYS));
                    pipe.cmd(command::GET).arg(&key);
                    asked.push((0, vec![key]));
                }
                5..=6 => {
                    let keys: Vec<String> = (0..8).map(|_| key_name(rng.below(KEYS))).collect();
                    pipe.cmd(command::MGET).arg(&keys);
                    asked.push((1, keys));
                }
                7..=8 => {
                    let key = key_name(rng.below(KEYS));
                    pipe.cmd(command::FETCH).arg(&key);
                    asked.push((2, vec![key]));
                }
                _ => {
                    let tag = tag_name(rng.below(TAGS));
                    pipe.cmd(command::TAGCARD).arg(&tag);
                    asked.push((3, vec![tag]));
                }
            }
        }
        let replies = run_pipe(&mut con, &mut pipe)?;
        for ((kind, names), reply) in asked.iter().zip(replies) {
            let hit = |key: &str, value: &[u8], tags: Option<&[String]>| {
                shared.hits.fetch_add(1, Ordering::Relaxed);
                check_value(key, value, tags)
            };
            shared.reads.fetch_add(1, Ordering::Relaxed);
            match (kind, &reply) {
                (0 | 2, Value::Nil) => {}
                (0, Value::BulkString(v)) => hit(&names[0], v, None)?,
                (1, Value::Array(items)) if items.len() == names.len() => {
                    for (key, item) in names.iter().zip(items) {
                        match item {
                            Value::Nil => {}
                            Value::BulkString(v) => hit(key, v, None)?,
                            other => return Err(format!("HC.MGET item {other:?}")),
                        }
                    }
                }
                (2, Value::Array(items)) => {
                    let [value, Value::Array(tags), Value::Int(pttl), _, Value::Int(_)] =
                        items.as_slice()
                    else {
                        return Err(format!("HC.FETCH {} answered {reply:?}", names[0]));
                    };
                    let tags: Vec<String> = tags
                        .iter()
                        .filter_map(bytes_of)
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                        .collect();
                    let value =
                        bytes_of(value).ok_or_else(|| format!("HC.FETCH value {value:?}"))?;
                    hit(&names[0], value, Some(&tags))?;
                    if *pttl < -1 {
                        return Err(format!("HC.FETCH {}: pttl {pttl}", names[0]));
                    }
                }
                (3, Value::Int(n)) if *n >= 0 => {}
                _ => return Err(format!("{kind} {names:?} answered {reply:?}")),
            }
        }
    }
    Ok(())
}

fn invalidator(server: &RedisServer, shared: &Shared, seed: u64) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let mut con = server.connection();
    while shared.running() {
        let mut pipe = redis::pipe();
        let tags: Vec<String> = (0..1 + rng.below(2))
            .map(|_| tag_name(rng.below(TAGS)))
            .collect();
        pipe.cmd(command::DELTAG).arg(&tags);
        let keys: Vec<String> = (0..1 + rng.below(10))
            .map(|_| key_name(rng.below(KEYS)))
            .collect();
        pipe.cmd(command::DEL).arg(&keys);
        let replies = run_pipe(&mut con, &mut pipe)?;
        match replies.as_slice() {
            [Value::Int(by_tag), Value::Int(by_key)] if *by_tag >= 0 && *by_key >= 0 => {
                shared.deltags.fetch_add(1, Ordering::Relaxed);
                shared.dels.fetch_add(1, Ordering::Relaxed);
                if *by_tag > 0 {
                    shared.deltags_removing.fetch_add(1, Ordering::Relaxed);
                }
                if *by_key > 0 {
                    shared.dels_removing.fetch_add(1, Ordering::Relaxed);
                    shared.del_keys.fetch_add(*by_key as u64, Ordering::Relaxed);
                }
                shared
                    .removed
                    .fetch_add((by_tag + by_key) as u64, Ordering::Relaxed);
            }
            other => return Err(format!("HC.DELTAG/HC.DEL answered {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(80)));
    }
    Ok(())
}

/// One sample of the server's state.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    used_memory: i64,
    info: HcInfo,
    pending_removals: i64,
    evicted: i64,
    expired: i64,
}

fn sample(con: &mut redis::Connection, started: Instant) -> Sample {
    let info = HcInfo::read(con);
    let pending_removals = info
        .fields
        .get("pending_removals")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "INFO hybridcache has no pending_removals: {:?}",
                info.fields
            )
        });
    let stats = info_section(con, "stats");
    let stat = |name: &str| -> i64 {
        stats
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO stats has no {name}"))
    };
    Sample {
        at: started.elapsed(),
        used_memory: info_i64(con, "memory", "used_memory"),
        pending_removals,
        evicted: stat("evicted_keys"),
        expired: stat("expired_keys"),
        info,
    }
}

/// The event stream broke no rule, and the changes received since the last check are those
/// the event log holds up to what the server has published; they are forgotten then.
/// Returns the origin and the number of changes compared.
fn check_events(events: &StreamChecker, server: &RedisServer) -> Result<(String, usize), String> {
    events.check_clean()?;
    let log = events.check_log(server)?;
    events.release_through(&log.origin, log.last);
    Ok((log.origin, log.compared))
}

/// The changes per op the checker received from `origin`.
fn op_tally(
    events: &StreamChecker,
    origin: &str,
) -> std::collections::BTreeMap<&'static str, OpTally> {
    events.with_streams(|s| {
        s.sources_of(origin)
            .first()
            .map(|source| s.op_tally(source, origin))
            .unwrap_or_default()
    })
}

/// `event_log_bytes` of `INFO hybridcache`: the memory the event log takes.
fn event_log_bytes(info: &HcInfo) -> i64 {
    info.fields
        .get("event_log_bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO hybridcache has no event_log_bytes: {:?}", info.fields))
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn assert_check_clean(con: &mut redis::Connection, when: &str, server: &RedisServer) {
    let report = hc_check(con);
    assert!(
        report.problems.is_empty(),
        "HC.CHECK {when} found {} problems:\n{}\n{}",
        report.problems.len(),
        report
            .problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        server.log_tail()
    );
}

#[test]
fn mixed_load_with_expiry_eviction_and_invalidation_keeps_the_index_exact_and_memory_flat() {
    let secs = env_u64("HC_SOAK_SECS", DEFAULT_SECS);
    let seed = seed_from_env("HC_SOAK_SEED");
    eprintln!("soak: HC_SOAK_SEED={seed} HC_SOAK_SECS={secs}");
    let mut server = RedisServer::builder()
        .args(["--maxmemory", &MAXMEMORY.to_string()])
        .args(["--maxmemory-policy", "allkeys-lru"])
        .start();
    let mut con = server.connection();
    let events = StreamChecker::subscribe(&[&server]);
    let before_load = info_i64(&mut con, "memory", "used_memory");
    let log_before_load = event_log_bytes(&HcInfo::read(&mut con));
    let run_time = Duration::from_secs(secs);
    let warmup = MIN_WARMUP.max(run_time.mul_f64(WARMUP_SHARE));
    let shared = Shared::default();
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut checks = 0;
    let mut baseline: Option<Sample> = None;
    let mut compared = 0;

    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        let server = &server;
        let shared = &shared;
        let events = &events;
        let compared = &mut compared;
        let _stop = StopOnDrop(shared);
        for w in 0..WRITERS {
            threads
                .push(scope.spawn(move || shared.report(writer(server, shared, seed ^ (w + 1)))));
        }
        threads.push(scope.spawn(move || shared.report(reader(server, shared, seed ^ 0x100))));
        threads.push(scope.spawn(move || shared.report(invalidator(server, shared, seed ^ 0x200))));

        let mut next = started + SAMPLE_EVERY;
        let mut next_log_check = started + LOG_CHECK_EVERY;
        while started.elapsed() < run_time && shared.running() {
            std::thread::sleep(
                next.min(next_log_check)
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
            if Instant::now() >= next_log_check {
                match check_events(events, server) {
                    Ok((_, n)) => *compared += n,
                    Err(e) => shared.fail(format!("event stream at {:?}: {e}", started.elapsed())),
                }
                next_log_check = Instant::now() + LOG_CHECK_EVERY;
            }
            if Instant::now() < next {
                continue;
            }
            next += SAMPLE_EVERY;
            let s = sample(&mut con, started);
            // The baseline: the first sample after the warm-up with the cache full
            // (Redis evicting).
            if baseline.is_none() && s.at >= warmup && s.evicted > 0 {
                baseline = Some(s.clone());
            }
            if samples.len() % 2 == 1 {
                let report = hc_check(&mut con);
                checks += 1;
                if !report.problems.is_empty() {
                    shared.fail(format!(
                        "HC.CHECK at {:?} found {} problems:\n{}",
                        s.at,
                        report.problems.len(),
                        report
                            .problems
                            .iter()
                            .take(30)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
            }
            samples.push(s);
        }
        shared.stop.store(true, Ordering::SeqCst);
        for thread in threads {
            if thread.join().is_err() {
                shared.fail("a load thread panicked".into());
            }
        }
    });
    if let Some(failure) = shared.failure.lock().unwrap().take() {
        panic!(
            "soak (HC_SOAK_SEED={seed}) failed: {failure}\n{}",
            server.log_tail()
        );
    }
    assert!(
        server.is_running(),
        "the server is gone\n{}",
        server.log_tail()
    );

    // The load has stopped: the index is exact.
    assert_check_clean(&mut con, "after the load", &server);
    checks += 1;
    let last = sample(&mut con, started);
    samples.push(last.clone());

    // Every change of the run was received, once, as the log has it, and every write was
    // announced once.
    let (origin, n) = check_events(&events, &server)
        .unwrap_or_else(|e| panic!("event stream after the load: {e}\n{}", server.log_tail()));
    compared += n;
    let tally = op_tally(&events, &origin);
    let count = |op: &str| tally.get(op).copied().unwrap_or_default();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(
        count("set").changes,
        load(&shared.sets),
        "set changes received vs HC.SETs answered OK ({tally:?})"
    );
    assert_eq!(
        (count("del").changes, count("del").names),
        (load(&shared.dels_removing), load(&shared.del_keys)),
        "del changes and the keys they name vs HC.DELs that removed keys and the keys removed ({tally:?})"
    );
    assert_eq!(
        count("deltag").changes,
        load(&shared.deltags_removing),
        "deltag changes vs HC.DELTAGs that removed keys ({tally:?})"
    );
    let removed = count("removed");
    assert!(
        removed.changes == removed.names
            && removed.names > 0
            && removed.names as i64 <= last.expired + last.evicted,
        "removed changes: {removed:?}; keys expired {} and evicted {} ({tally:?})",
        last.expired,
        last.evicted
    );
    let others: Vec<&&str> = tally
        .keys()
        .filter(|op| !["set", "del", "deltag", "removed"].contains(op))
        .collect();
    assert!(others.is_empty(), "changes of other ops: {tally:?}");
    assert!(
        last.evicted > 0,
        "no key was evicted: the run did not exercise eviction ({last:?})"
    );
    assert!(
        last.expired > 0,
        "no key expired: the run did not exercise expiry ({last:?})"
    );
    let baseline = baseline.unwrap_or_else(|| {
        panic!(
            "no sample after the {warmup:?} warm-up found Redis evicting (run longer):\n{}",
            samples_text(&samples)
        )
    });
    let peak = samples
        .iter()
        .filter(|s| s.at >= baseline.at)
        .map(|s| s.used_memory)
        .max()
        .unwrap_or(0);
    let drift = peak - baseline.used_memory;
    assert!(
        drift <= DRIFT_BOUND,
        "used_memory rose {:.1} MB above its {:.1} MB after the warm-up (bound {:.1} MB); samples (s: MB/keys/links/pending):\n{}",
        mb(drift),
        mb(baseline.used_memory),
        mb(DRIFT_BOUND),
        samples_text(&samples)
    );

    // Flushed, nothing is left in the index or in memory.
    let _: () = redis::cmd("FLUSHALL").arg("SYNC").query(&mut con).unwrap();
    let mut after = sample(&mut con, started);
    wait_until(
        Duration::from_secs(20),
        "the index to empty after FLUSHALL",
        || {
            after = sample(&mut con, started);
            after.info.counts() == (0, 0, 0)
                && after.pending_removals == 0
                && after.info.fields.get("tombstones").map(String::as_str) == Some("0")
        },
    );
    assert_check_clean(&mut con, "after FLUSHALL", &server);
    let (_, n) = check_events(&events, &server)
        .unwrap_or_else(|e| panic!("event stream after FLUSHALL: {e}\n{}", server.log_tail()));
    compared += n;
    let flushes = op_tally(&events, &origin).get("flushall").copied();
    assert_eq!(
        flushes,
        Some(OpTally {
            changes: 1,
            names: 0
        }),
        "one flushall change for FLUSHALL"
    );
    // The event log is bounded and outlives a flush (readers may still ask for what came
    // before it): not a leak. Emptied, it keeps only its queue's capacity, which INFO
    // counts exactly (the messages' own allocations it counts without the allocator's
    // rounding).
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("hybridcache.event-log-changes")
        .arg(0)
        .query(&mut con)
        .unwrap();
    let after = sample(&mut con, started);
    let log_after = event_log_bytes(&after.info);
    let returned = (after.used_memory - log_after) - (before_load - log_before_load);
    assert!(
        returned <= RETURN_BOUND,
        "after FLUSHALL used_memory is {:.2} MB ({:.2} MB of it the event log), {:.2} MB above its {:.2} MB before the load (bound {:.1} MB): memory leaked\n{:?}",
        mb(after.used_memory),
        mb(log_after),
        mb(returned),
        mb(before_load),
        mb(RETURN_BOUND),
        after.info.fields
    );

    let elapsed = started.elapsed().as_secs_f64();
    let ops = load(&shared.sets)
        + load(&shared.oom)
        + load(&shared.reads)
        + load(&shared.deltags)
        + load(&shared.dels);
    eprintln!(
        "soak: {secs} s, seed {seed}: {ops} ops ({:.0}/s): {} HC.SET ({} OOM), {} reads ({} hits), {} HC.DELTAG + {} HC.DEL removing {} keys; evicted {}, expired {}; {} memory samples, {} HC.CHECKs; used_memory {:.1} MB after warm-up, peak {:.1} MB, drift {:+.2} MB (bound {:.0} MB); before load {:.2} MB, after FLUSHALL {:.2} MB ({:+.2} MB, bound {:.0} MB)",
        ops as f64 / elapsed,
        load(&shared.sets),
        load(&shared.oom),
        load(&shared.reads),
        load(&shared.hits),
        load(&shared.deltags),
        load(&shared.dels),
        load(&shared.removed),
        last.evicted,
        last.expired,
        samples.len(),
        checks,
        mb(baseline.used_memory),
        mb(peak),
        mb(drift),
        mb(DRIFT_BOUND),
        mb(before_load),
        mb(after.used_memory),
        mb(returned),
        mb(RETURN_BOUND)
    );
    eprintln!(
        "soak: events: {}; {compared} changes compared with the event log",
        events.summary()
    );
    eprintln!(
        "soak: samples (s: used_memory MB/keys/tag_links/pending): {}",
        samples_text(&samples)
    );
}

/// The samples, compactly.
fn samples_text(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| {
            format!(
                "{}: {:.1}/{}/{}/{}",
                s.at.as_secs(),
                mb(s.used_memory),
                s.info.keys,
                s.info.tag_links,
                s.pending_removals
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
