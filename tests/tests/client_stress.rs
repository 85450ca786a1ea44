//! A randomized concurrent stress test of the client: three handles on one Redis, many
//! tasks mixing `get`, `get_or_set`, `set`, `remove` and `remove_by_tag` on a few keys, and
//! an offline checker that no read returned a value older than a change that had
//! completed more than a delivery bound before the read started.
//!
//! Reproduce a run with `HC_STRESS_SEED=<seed>` (the seed is printed and quoted in
//! failures; task scheduling still varies, the operation sequences do not).
//!
//! # The checker
//!
//! Every value written is `(key, version)` with a version drawn from one global counter,
//! so each version is written exactly once, by one operation. Every operation is recorded
//! with the instants it was started and returned; Redis applies it atomically at some
//! point in between. Writes of one key may race, so the checker never assumes an order
//! between operations whose intervals overlap. After all tasks end, each read that
//! started at `S` is checked against the operations that returned before `C = S - BOUND`:
//!
//! - A read that returned version `v` is stale if some successful operation `X` on the key
//!   *started after* `v`'s write returned and *returned before* `C`: `X` was applied after
//!   `v` (so `v` was never current again, versions being unique) and before `C`.
//! - A read that returned nothing is stale if some successful write `X` of the key
//!   returned before `C` and no removal of the key (by `remove` or by `remove_by_tag` of its
//!   tag, successful or not) could have been applied between `X` and the read's end: the
//!   key was present from `X` on, through the whole read.
//!
//! Both conditions only flag reads that no linearization of the recorded operations
//! allows, so the checker has no false positives. It catches a stale L1: if an invalidation
//! were lost or applied to the wrong entry, the handle would go on serving its L1 copy
//! (entries live for the default 5 minutes) while other tasks keep overwriting and
//! removing the key every few milliseconds; within `BOUND` of such a change completing
//! there is an operation that started after the stale value's write and returned, and the
//! next read of that key on that handle is flagged. The unit tests at the end feed the
//! checker such histories (and legitimate races) to show it.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::{CHANNEL_CONFIG, DEFAULT_CHANNEL};
use hybridcache_tests::client_support::seed_from_env;
use hybridcache_tests::client_support::{build, builder, cache, eventually, get_value, SplitMix64};
use hybridcache_tests::hc::query;
use hybridcache_tests::RedisServer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HANDLES: usize = 3;
const TASKS: usize = 16;
const KEYS: usize = 8;
const TAGS: usize = 3;
const RUN_TIME: Duration = Duration::from_secs(3);
/// The handle whose tasks only read.
const READER: usize = HANDLES - 1;
/// How long after a change returned every handle must reflect it.
const BOUND: Duration = Duration::from_millis(500);
/// Where the deaf handle listens: nobody publishes there.
const DEAF_CHANNEL: &str = "hc:nobody-publishes-here";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Val {
    key: u32,
    version: u64,
}

fn key_name(key: usize) -> String {
    format!("k{key}")
}

/// Each key carries one fixed tag, so `remove_by_tag` removes known keys.
fn tag_of(key: usize) -> usize {
    key % TAGS
}

fn tag_name(tag: usize) -> String {
    format!("t{tag}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Wrote this version.
    Write(u64),
    /// Removed the key (`remove`, or `remove_by_tag` of its tag).
    Delete,
}

/// A change to one key, with when it was started and when it returned (relative to the
/// start of the run). `ok` is false when it returned an error (it may or may not have been
/// applied).
#[derive(Debug, Clone, Copy)]
struct Change {
    key: usize,
    kind: Kind,
    start: Duration,
    end: Duration,
    ok: bool,
    task: usize,
}

/// A read of one key and what it returned.
#[derive(Debug, Clone)]
struct Read {
    key: usize,
    start: Duration,
    end: Duration,
    found: Option<Val>,
    handle: usize,
    task: usize,
    op: &'static str,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            Kind::Write(version) => format!("write of version {version}"),
            Kind::Delete => "removal".to_string(),
        };
        let failed = if self.ok { "" } else { " (failed)" };
        write!(
            f,
            "{what} of k{} by task {}{failed}, from {:?} to {:?}",
            self.key, self.task, self.start, self.end
        )
    }
}

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of k{} by task {} on handle {}, from {:?} to {:?}, returned {:?}",
            self.op, self.key, self.task, self.handle, self.start, self.end, self.found
        )
    }
}

#[derive(Debug, Default)]
struct History {
    changes: Vec<Change>,
    reads: Vec<Read>,
    errors: Vec<String>,
}

/// Per key, the indexes the checks need, each answering in O(log n).
struct KeyIndex {
    /// Successful changes sorted by start, with the suffix minimum of their ends.
    by_start: Vec<Duration>,
    suffix_min_end: Vec<Duration>,
    /// Successful writes sorted by end, with the prefix maximum of their starts.
    writes_by_end: Vec<Duration>,
    prefix_max_write_start: Vec<Duration>,
    /// Every removal (also failed ones) sorted by start, with the prefix maximum of ends.
    deletes_by_start: Vec<Duration>,
    prefix_max_delete_end: Vec<Duration>,
}

impl KeyIndex {
    fn new(changes: &[&Change]) -> Self {
        let mut ok: Vec<&Change> = changes.iter().copied().filter(|c| c.ok).collect();
        ok.sort_by_key(|c| c.start);
        let by_start = ok.iter().map(|c| c.start).collect();
        let mut suffix_min_end = vec![Duration::MAX; ok.len()];
        let mut min = Duration::MAX;
        for (i, c) in ok.iter().enumerate().rev() {
            min = min.min(c.end);
            suffix_min_end[i] = min;
        }

        let mut writes: Vec<&Change> = changes
            .iter()
            .copied()
            .filter(|c| c.ok && matches!(c.kind, Kind::Write(_)))
            .collect();
        writes.sort_by_key(|c| c.end);
        let writes_by_end = writes.iter().map(|c| c.end).collect();
        let prefix_max_write_start = writes
            .iter()
            .scan(Duration::ZERO, |max, c| {
                *max = (*max).max(c.start);
                Some(*max)
            })
            .collect();

        let mut deletes: Vec<&Change> = changes
            .iter()
            .copied()
            .filter(|c| c.kind == Kind::Delete)
            .collect();
        deletes.sort_by_key(|c| c.start);
        let deletes_by_start = deletes.iter().map(|c| c.start).collect();
        let prefix_max_delete_end = deletes
            .iter()
            .scan(Duration::ZERO, |max, c| {
                *max = (*max).max(c.end);
                Some(*max)
            })
            .collect();
        Self {
            by_start,
            suffix_min_end,
            writes_by_end,
            prefix_max_write_start,
            deletes_by_start,
            prefix_max_delete_end,
        }
    }

    /// Whether a successful change started after `after` and returned before `before`.
    fn superseded(&self, after: Duration, before: Duration) -> bool {
        let first = self.by_start.partition_point(|s| *s <= after);
        first < self.suffix_min_end.len() && self.suffix_min_end[first] < before
    }

    /// The latest start of a successful write that returned before `before`.
    fn latest_write_start_before(&self, before: Duration) -> Option<Duration> {
        let n = self.writes_by_end.partition_point(|e| *e < before);
        n.checked_sub(1).map(|i| self.prefix_max_write_start[i])
    }

    /// Whether a removal may have been applied after `after` and before `before`.
    fn maybe_deleted_between(&self, after: Duration, before: Duration) -> bool {
        let n = self.deletes_by_start.partition_point(|s| *s < before);
        n > 0 && self.prefix_max_delete_end[n - 1] > after
    }
}

/// Every read that returned a value older than a change that had returned more than
/// `bound` before the read started (see the module documentation).
fn stale_reads(history: &History, bound: Duration) -> Vec<String> {
    let mut per_key: HashMap<usize, Vec<&Change>> = HashMap::new();
    let mut writers: HashMap<u64, &Change> = HashMap::new();
    for c in &history.changes {
        per_key.entry(c.key).or_default().push(c);
        if let Kind::Write(version) = c.kind {
            let previous = writers.insert(version, c);
            assert!(previous.is_none(), "version {version} written twice");
        }
    }
    let index: HashMap<usize, KeyIndex> = per_key
        .iter()
        .map(|(key, changes)| (*key, KeyIndex::new(changes)))
        .collect();
    let empty = KeyIndex::new(&[]);
    let mut problems = Vec::new();
    for read in &history.reads {
        let Some(settled) = read.start.checked_sub(bound) else {
            continue;
        };
        let idx = index.get(&read.key).unwrap_or(&empty);
        match read.found {
            Some(val) => {
                let Some(writer) = writers.get(&val.version) else {
                    problems.push(format!("{read}: a version nobody wrote"));
                    continue;
                };
                if val.key as usize != read.key || writer.key != read.key {
                    problems.push(format!("{read}: a value of another key, from the {writer}"));
                } else if idx.superseded(writer.end, settled) {
                    problems.push(format!(
                        "{read}: stale, the value of the {writer}, overwritten or removed by a change that returned before {settled:?}"
                    ));
                }
            }
            None => {
                if let Some(write_start) = idx.latest_write_start_before(settled) {
                    if !idx.maybe_deleted_between(write_start, read.end) {
                        problems.push(format!(
                            "{read}: stale, a write started at {write_start:?} returned before {settled:?} and no removal could have followed it"
                        ));
                    }
                }
            }
        }
    }
    problems
}

struct Worker {
    task: usize,
    handle_no: usize,
    /// Only reads (`get`, and `get_or_set`, which writes only missing keys): its handle's
    /// L1 copies are refreshed by nothing but invalidations and misses.
    reader: bool,
    cache: HybridCache,
    rng: SplitMix64,
    versions: Arc<AtomicU64>,
    t0: Instant,
    history: History,
}

impl Worker {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    fn options(key: usize) -> EntryOptions {
        EntryOptions::new().tags([tag_name(tag_of(key))])
    }

    fn change(&mut self, key: usize, kind: Kind, start: Duration, ok: bool) {
        let end = self.now();
        self.history.changes.push(Change {
            key,
            kind,
            start,
            end,
            ok,
            task: self.task,
        });
    }

    fn read(&mut self, key: usize, start: Duration, found: Option<Val>, op: &'static str) {
        let end = self.now();
        self.history.reads.push(Read {
            key,
            start,
            end,
            found,
            handle: self.handle_no,
            task: self.task,
            op,
        });
    }

    async fn run(mut self, until: Instant) -> History {
        while Instant::now() < until {
            if self.reader {
                // L1 hits take microseconds: pace the readers so that they do not crowd
                // out the tasks that change things.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let key = self.rng.below(KEYS as u64) as usize;
            let name = key_name(key);
            let dice = match self.rng.below(100) {
                // A reader's mix: 85% get, 15% get_or_set.
                n if self.reader && n < 85 => 0,
                _ if self.reader => 50,
                n => n,
            };
            let start = self.now();
            match dice {
                0..50 => match self.cache.get::<Val>(&name).await {
                    Ok(found) => self.read(key, start, found.as_deref().copied(), "get"),
                    Err(e) => self.history.errors.push(format!("get {name}: {e}")),
                },
                50..70 => {
                    let made: Arc<Mutex<Option<(Duration, u64)>>> = Arc::default();
                    let (slot, versions, t0) = (made.clone(), self.versions.clone(), self.t0);
                    let factory = move || async move {
                        let at = t0.elapsed();
                        let version = versions.fetch_add(1, Ordering::SeqCst);
                        *slot.lock().unwrap() = Some((at, version));
                        Ok::<_, std::io::Error>(Val {
                            key: key as u32,
                            version,
                        })
                    };
                    let result = self
                        .cache
                        .get_or_set(&name, factory, Self::options(key))
                        .await;
                    let made = *made.lock().unwrap();
                    match (result, made) {
                        (Ok(value), Some((at, version))) => {
                            assert_eq!(
                                value.version, version,
                                "get_or_set returned another value than its own factory's"
                            );
                            self.change(key, Kind::Write(version), at, true);
                        }
                        (Ok(value), None) => self.read(key, start, Some(*value), "get_or_set"),
                        (Err(e), made) => {
                            if let Some((at, version)) = made {
                                self.change(key, Kind::Write(version), at, false);
                            }
                            self.history.errors.push(format!("get_or_set {name}: {e}"));
                        }
                    }
                }
                70..85 => {
                    let version = self.versions.fetch_add(1, Ordering::SeqCst);
                    let value = Val {
                        key: key as u32,
                        version,
                    };
                    let result = self.cache.set(&name, value, Self::options(key)).await;
                    self.change(key, Kind::Write(version), start, result.is_ok());
                    if let Err(e) = result {
                        self.history.errors.push(format!("set {name}: {e}"));
                    }
                }
                85..95 => {
                    let result = self.cache.remove(&name).await;
                    self.change(key, Kind::Delete, start, result.is_ok());
                    if let Err(e) = result {
                        self.history.errors.push(format!("remove {name}: {e}"));
                    }
                }
                _ => {
                    let tag = tag_of(key);
                    let result = self.cache.remove_by_tag(&tag_name(tag)).await;
                    for k in (0..KEYS).filter(|k| tag_of(*k) == tag) {
                        self.change(k, Kind::Delete, start, result.is_ok());
                    }
                    if let Err(e) = result {
                        self.history
                            .errors
                            .push(format!("remove_by_tag t{tag}: {e}"));
                    }
                }
            }
        }
        self.history
    }
}

/// One run: `TASKS` tasks on `HANDLES` handles for `run_time`; the tasks of handle
/// `READER` only read. With `deaf`, handle `READER` listens on a channel nobody
/// publishes on, so it never hears of a change.
async fn stress(
    server: &RedisServer,
    seed: u64,
    run_time: Duration,
    deaf: bool,
) -> (Vec<HybridCache>, History) {
    let mut handles = Vec::new();
    for i in 0..HANDLES {
        if deaf && i == READER {
            // build() checks that the module publishes on the handle's channel: the module
            // is moved there while the handle is built, and back before anything is written.
            let mut con = server.connection();
            let set_channel = |con: &mut redis::Connection, channel: &str| {
                let _: () = query(
                    con,
                    redis::cmd("CONFIG")
                        .arg("SET")
                        .arg(CHANNEL_CONFIG)
                        .arg(channel),
                );
            };
            set_channel(&mut con, DEAF_CHANNEL);
            handles.push(build(builder(server).channel(DEAF_CHANNEL)).await);
            set_channel(&mut con, DEFAULT_CHANNEL);
        } else {
            handles.push(build(builder(server)).await);
        }
    }
    let versions = Arc::new(AtomicU64::new(1));
    let t0 = Instant::now();
    let until = t0 + run_time;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let worker = Worker {
                task,
                handle_no: task % HANDLES,
                reader: task % HANDLES == READER,
                cache: handles[task % HANDLES].clone(),
                rng: SplitMix64::new(seed ^ (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                versions: versions.clone(),
                t0,
                history: History::default(),
            };
            tokio::spawn(worker.run(until))
        })
        .collect();
    let mut history = History::default();
    for task in tasks {
        let part = task.await.expect("a stress task panicked");
        history.changes.extend(part.changes);
        history.reads.extend(part.reads);
        history.errors.extend(part.errors);
    }
    (handles, history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_random_operations_never_read_a_value_older_than_the_delivery_bound() {
    let seed = seed_from_env("HC_STRESS_SEED");
    println!("HC_STRESS_SEED={seed}");
    let server = RedisServer::new();
    let (handles, history) = stress(&server, seed, RUN_TIME, false).await;
    let stats: Vec<_> = handles.iter().map(HybridCache::stats).collect();
    println!(
        "seed {seed}: {} changes, {} reads, {} errors; stats {stats:#?}",
        history.changes.len(),
        history.reads.len(),
        history.errors.len()
    );

    assert!(
        history.errors.is_empty(),
        "seed {seed}: operations failed against a healthy server: {:#?}",
        &history.errors[..history.errors.len().min(20)]
    );
    let problems = stale_reads(&history, BOUND);
    assert!(
        problems.is_empty(),
        "seed {seed}: {} stale reads (bound {BOUND:?}), first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n")
    );
    // The run exercised what it is meant to: L1 served reads, events invalidated copies.
    for (i, s) in stats.iter().enumerate() {
        assert!(
            s.l1_hits > 100,
            "seed {seed}: handle {i} barely used L1: {s:?}"
        );
        assert!(s.events_received > 100, "seed {seed}: handle {i}: {s:?}");
        assert_eq!(
            s.subscriptions, 1,
            "seed {seed}: handle {i} lost its subscription: {s:?}"
        );
    }
    assert!(history.reads.iter().any(|r| r.found.is_none()));
    assert!(history.reads.iter().any(|r| r.found.is_some()));

    // Once quiet, every handle agrees with Redis (read by a handle with an empty L1).
    let fresh = cache(&server).await;
    for key in (0..KEYS).map(key_name) {
        let truth = get_value::<Val>(&fresh, &key).await;
        for (i, h) in handles.iter().enumerate() {
            let what = format!("handle {i} to read {truth:?} under {key} (seed {seed})");
            eventually(BOUND, &what, async || {
                get_value::<Val>(h, &key).await == truth
            })
            .await;
        }
    }
}

/// The same run with one handle that hears no invalidations (its L1 goes stale): the
/// checker must flag its reads, and only its reads. This shows on real histories that the
/// main test would catch a client whose invalidation is broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_flags_a_handle_that_misses_invalidations() {
    let seed = seed_from_env("HC_STRESS_SEED");
    println!("HC_STRESS_SEED={seed}");
    let server = RedisServer::new();
    let (_handles, history) = stress(&server, seed, Duration::from_millis(1500), true).await;
    assert!(
        history.errors.is_empty(),
        "seed {seed}: {:?}",
        history.errors
    );
    let deaf = READER;
    let problems = stale_reads(&history, BOUND);
    assert!(
        !problems.is_empty(),
        "seed {seed}: no stale read found although handle {deaf} missed every invalidation"
    );
    let heard = History {
        changes: history.changes.clone(),
        reads: history
            .reads
            .iter()
            .filter(|r| r.handle != deaf)
            .cloned()
            .collect(),
        errors: Vec::new(),
    };
    let problems = stale_reads(&heard, BOUND);
    assert!(
        problems.is_empty(),
        "seed {seed}: stale reads on handles that hear events:\n{}",
        problems[..problems.len().min(10)].join("\n")
    );
}

#[cfg(test)]
mod checker {
    //! The checker itself, on made-up histories.

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn write(version: u64, start: u64, end: u64) -> Change {
        Change {
            key: 0,
            kind: Kind::Write(version),
            start: ms(start),
            end: ms(end),
            ok: true,
            task: 0,
        }
    }

    fn delete(start: u64, end: u64) -> Change {
        Change {
            kind: Kind::Delete,
            ..write(0, start, end)
        }
    }

    fn read(start: u64, found: Option<u64>) -> Read {
        Read {
            key: 0,
            start: ms(start),
            end: ms(start + 1),
            found: found.map(|version| Val { key: 0, version }),
            handle: 0,
            task: 1,
            op: "get",
        }
    }

    fn check(changes: Vec<Change>, reads: Vec<Read>) -> Vec<String> {
        stale_reads(
            &History {
                changes,
                reads,
                errors: Vec::new(),
            },
            BOUND,
        )
    }

    #[test]
    fn a_value_overwritten_before_the_bound_is_stale() {
        let problems = check(
            vec![write(1, 0, 10), write(2, 20, 30)],
            vec![read(600, Some(1))],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(check(
            vec![write(1, 0, 10), write(2, 20, 30)],
            vec![read(600, Some(2))]
        )
        .is_empty());
    }

    #[test]
    fn a_value_removed_before_the_bound_is_stale() {
        let changes = vec![write(1, 0, 10), delete(20, 30)];
        assert_eq!(check(changes.clone(), vec![read(600, Some(1))]).len(), 1);
        assert!(check(changes, vec![read(600, None)]).is_empty());
    }

    #[test]
    fn nothing_is_stale_when_a_write_returned_before_the_bound_and_no_removal_followed() {
        assert_eq!(check(vec![write(1, 0, 10)], vec![read(600, None)]).len(), 1);
        // A removal racing with the write may have been applied after it.
        assert!(check(vec![write(1, 0, 10), delete(5, 700)], vec![read(600, None)]).is_empty());
    }

    #[test]
    fn racing_writes_may_end_in_either_order() {
        // Write 1 started before write 2 but returned after it: either may have been
        // applied last, so either may be read.
        let changes = vec![write(1, 0, 30), write(2, 10, 20)];
        assert!(check(changes.clone(), vec![read(600, Some(1))]).is_empty());
        assert!(check(changes, vec![read(600, Some(2))]).is_empty());
    }

    #[test]
    fn changes_within_the_bound_need_not_be_seen_yet() {
        let changes = vec![write(1, 0, 10), write(2, 20, 30), delete(40, 50)];
        assert!(check(changes.clone(), vec![read(100, Some(1))]).is_empty());
        assert!(check(changes.clone(), vec![read(520, Some(1))]).is_empty());
        assert_eq!(check(changes, vec![read(531, Some(1))]).len(), 1);
    }

    #[test]
    fn a_failed_change_supersedes_nothing() {
        let mut failed = write(2, 20, 30);
        failed.ok = false;
        assert!(check(vec![write(1, 0, 10), failed], vec![read(600, Some(1))]).is_empty());
    }
}
