//! Crash recovery with the AOF: `kill -9` in the middle of writes, restart on the same data,
//! and every write the server acknowledged is there with its value and tags, the tag index
//! matches the keyspace, and an interrupted tag invalidation finishes.
//!
//! For `appendfsync always` and `everysec`, `HC_CRASH_RUNS` cycles (default 3) on one data
//! directory: writer threads run `HC.SET` of new keys with tags (some with a TTL of an hour),
//! overwrites, `HC.DEL` and `HC.DELTAG` of their own tags, recording every acknowledged
//! operation in an exact model (each thread owns its keys and the tags it invalidates, so
//! its operations are ordered). After a random 1-3 s the server gets SIGKILL (every other
//! run less than a second after a `BGREWRITEAOF`, so the AOF is also loaded from an RDB
//! preamble plus increments, and some kills land during the rewrite); the operation each
//! writer had in flight may or may not be applied (an `HC.DELTAG` all or nothing).
//! After the restart: the module is loaded, `HC.CHECK` is clean, every key holds an allowed
//! state, the keyspace holds no other key, `HC.TAGKEYS` of every tag and the
//! `INFO hybridcache` counters match.
//!
//! - `always`: no acknowledged operation may be lost (Redis fsyncs before it replies).
//! - `everysec`: lost operations are counted and reported; they may only be among those
//!   acknowledged within [`EVERYSEC_WINDOW`] of the kill, and no value that was never
//!   written may appear. (A SIGKILL keeps what Redis handed the kernel, so losses are rare.)
//!
//! A third test kills the server while the background removal of an `HC.DELTAG` of a
//! 40,000-key tag is in progress, twice: no key of the tag is ever visible again, keys
//! tagged after the invalidation survive, `HC.CHECK` is clean, and the removal finishes.
//!
//! A fourth checks that the restart itself stays fast: an AOF holding 800 small
//! invalidations loads about as fast as one deleting the same keys with `HC.DEL`.
//!
//! A summary per mode (runs, acknowledged writes, writes lost) goes to stderr.
//! `HC_CRASH_SEED` replays the random choices of a run.

use hybridcache_protocol::{command, MODULE_NAME};
use hybridcache_tests::client_support::SplitMix64;
use hybridcache_tests::client_support::{env_u64, seed_from_env};
use hybridcache_tests::hc::{
    all_keys, call, error_text, hc_deltag, query, tagcard, tagkeys, wait_removals_done,
};
use hybridcache_tests::index_check::{assert_index_matches, hc_check};
use hybridcache_tests::info::info_i64;
use hybridcache_tests::{wait_until, HcInfo, RedisServer};
use redis::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const DEFAULT_RUNS: u64 = 3;
const WRITERS: u64 = 2;
/// Tags each writer invalidates (`w<id>:g<i>`), and tags shared by every writer, never
/// invalidated (`shared:<i>`).
const OWN_TAGS: u64 = 8;
const SHARED_TAGS: u64 = 16;
/// How long before the kill an operation lost under `everysec` may have been acknowledged:
/// Redis writes the AOF buffer to the kernel before replying unless a background fsync is
/// slow, in which case it postpones the write for up to 2 s; 1 s more for scheduling.
const EVERYSEC_WINDOW: Duration = Duration::from_secs(3);
/// Keys of the large tag, and keys tagged with it after its invalidation.
const BIG_KEYS: u64 = 40_000;
const LATE_KEYS: u64 = 20;

fn aof_server(fsync: &str) -> RedisServer {
    // The harness turns persistence off; these come after its defaults and win.
    RedisServer::builder()
        .args(["--appendonly", "yes", "--appendfsync", fsync])
        .start()
}

/// A module entry as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    tags: BTreeSet<String>,
}

/// What the model knows of one key.
#[derive(Debug, Default)]
struct KeyModel {
    /// After the last acknowledged operation.
    state: Option<Entry>,
    /// When that operation was acknowledged.
    acked_at: Option<Instant>,
    /// The state the operation in flight at the kill would leave, if it touched this key.
    in_flight: Option<Option<Entry>>,
    /// Every value ever written to the key (acknowledged or in flight).
    history: Vec<Vec<u8>>,
}

impl KeyModel {
    fn allows(&self, actual: &Option<Entry>) -> bool {
        *actual == self.state || self.in_flight.as_ref() == Some(actual)
    }
}

/// One writer's keys and what it did.
struct Writer {
    id: u64,
    rng: SplitMix64,
    keys: BTreeMap<String, KeyModel>,
    /// Key names in creation order, to pick existing keys from.
    names: Vec<String>,
    next: u64,
    /// Keys an `HC.DELTAG` in flight at the kill would remove: all or none of them.
    in_flight_group: Vec<String>,
    acked_ops: u64,
    acked_sets: u64,
}

enum Op {
    Set {
        key: String,
        entry: Entry,
        ttl: bool,
    },
    Del {
        keys: Vec<String>,
    },
    DelTag {
        tag: String,
    },
    Get {
        key: String,
    },
}

impl Writer {
    fn new(id: u64, seed: u64) -> Writer {
        Writer {
            id,
            rng: SplitMix64::new(seed ^ (id + 1).wrapping_mul(0x9e37_79b9)),
            keys: BTreeMap::new(),
            names: Vec::new(),
            next: 0,
            in_flight_group: Vec::new(),
            acked_ops: 0,
            acked_sets: 0,
        }
    }

    fn own_tag(&self, i: u64) -> String {
        format!("w{}:g{i}", self.id)
    }

    fn existing(&mut self) -> Option<String> {
        if self.names.is_empty() {
            return None;
        }
        let i = self.rng.below(self.names.len() as u64) as usize;
        Some(self.names[i].clone())
    }

    fn next_op(&mut self, run: u64) -> Op {
        let roll = self.rng.below(100);
        let existing = if roll >= 75 { self.existing() } else { None };
        match (roll, existing) {
            (75..=84, Some(key)) => self.set_op(key),
            (85..=92, Some(key)) => {
                let mut keys = vec![key];
                if let Some(other) = self.existing() {
                    if !keys.contains(&other) {
                        keys.push(other);
                    }
                }
                Op::Del { keys }
            }
            (93, Some(_)) => Op::DelTag {
                tag: {
                    let i = self.rng.below(OWN_TAGS);
                    self.own_tag(i)
                },
            },
            (_, Some(key)) => Op::Get { key },
            (_, None) => {
                let key = format!("c{}:{run}:{}", self.id, self.next);
                self.next += 1;
                self.names.push(key.clone());
                self.set_op(key)
            }
        }
    }

    fn set_op(&mut self, key: String) -> Op {
        let mut tags = BTreeSet::new();
        for _ in 0..1 + self.rng.below(2) {
            let i = self.rng.below(OWN_TAGS);
            tags.insert(self.own_tag(i));
        }
        if self.rng.below(2) == 0 {
            tags.insert(format!("shared:{}", self.rng.below(SHARED_TAGS)));
        }
        let value = format!(
            "{key}|{}|{}",
            self.rng.next_u64(),
            "v".repeat(self.rng.below(200) as usize)
        )
        .into_bytes();
        Op::Set {
            key,
            entry: Entry { value, tags },
            ttl: self.rng.below(5) == 0,
        }
    }

    fn command(op: &Op) -> redis::Cmd {
        match op {
            Op::Set { key, entry, ttl } => {
                let mut cmd = redis::cmd(command::SET);
                cmd.arg(key).arg(&entry.value);
                if *ttl {
                    cmd.arg("EX").arg(3600);
                }
                cmd.arg("TAGS").arg(entry.tags.iter().collect::<Vec<_>>());
                cmd
            }
            Op::Del { keys } => {
                let mut cmd = redis::cmd(command::DEL);
                cmd.arg(keys);
                cmd
            }
            Op::DelTag { tag } => {
                let mut cmd = redis::cmd(command::DELTAG);
                cmd.arg(tag);
                cmd
            }
            Op::Get { key } => {
                let mut cmd = redis::cmd(command::GET);
                cmd.arg(key);
                cmd
            }
        }
    }

    /// Keys an operation changes, and the state it leaves each in.
    fn effects(&self, op: &Op) -> Vec<(String, Option<Entry>)> {
        match op {
            Op::Set { key, entry, .. } => vec![(key.clone(), Some(entry.clone()))],
            Op::Del { keys } => keys.iter().map(|k| (k.clone(), None)).collect(),
            Op::DelTag { tag } => self
                .keys
                .iter()
                .filter(|(_, m)| m.state.as_ref().is_some_and(|e| e.tags.contains(tag)))
                .map(|(k, _)| (k.clone(), None))
                .collect(),
            Op::Get { .. } => Vec::new(),
        }
    }

    /// The reply the live server must give.
    fn expected_reply(&self, op: &Op) -> Value {
        match op {
            Op::Set { .. } => Value::Okay,
            Op::Del { keys } => Value::Int(
                keys.iter()
                    .filter(|k| self.keys.get(*k).is_some_and(|m| m.state.is_some()))
                    .count() as i64,
            ),
            Op::DelTag { .. } => Value::Int(self.effects(op).len() as i64),
            Op::Get { key } => match self.keys.get(key).and_then(|m| m.state.as_ref()) {
                Some(e) => Value::BulkString(e.value.clone()),
                None => Value::Nil,
            },
        }
    }

    /// Writes until the connection breaks (the kill). `Err` on any unexpected reply.
    fn run(&mut self, con: &mut redis::Connection, run: u64) -> Result<(), String> {
        loop {
            let op = self.next_op(run);
            let cmd = Self::command(&op);
            if let Op::Set { key, entry, .. } = &op {
                self.keys
                    .entry(key.clone())
                    .or_default()
                    .history
                    .push(entry.value.clone());
            }
            match cmd.query::<Value>(con) {
                Ok(reply) => {
                    let expected = self.expected_reply(&op);
                    if reply != expected {
                        return Err(format!(
                            "writer {}: {} answered {reply:?}, the model expects {expected:?}",
                            self.id,
                            String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " ")
                        ));
                    }
                    let now = Instant::now();
                    for (key, state) in self.effects(&op) {
                        let model = self.keys.entry(key).or_default();
                        model.state = state;
                        model.acked_at = Some(now);
                    }
                    self.acked_ops += 1;
                    if matches!(op, Op::Set { .. }) {
                        self.acked_sets += 1;
                    }
                }
                Err(e) if e.code().is_some() => {
                    return Err(format!(
                        "writer {}: error reply {}",
                        self.id,
                        error_text(&e)
                    ));
                }
                Err(_) => {
                    // The connection broke: the server was killed with this op in flight.
                    let effects = self.effects(&op);
                    if matches!(op, Op::DelTag { .. }) {
                        self.in_flight_group = effects.iter().map(|(k, _)| k.clone()).collect();
                    }
                    for (key, state) in effects {
                        self.keys.entry(key).or_default().in_flight = Some(state);
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// `HC.FETCH` of `keys`, pipelined: each key's entry or `None`.
fn fetch_all(con: &mut redis::Connection, keys: &[String]) -> Vec<Option<Entry>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd(command::FETCH).arg(key);
        }
        let replies: Vec<Value> = pipe
            .query(con)
            .unwrap_or_else(|e| panic!("HC.FETCH pipeline failed: {e}"));
        for (key, reply) in chunk.iter().zip(replies) {
            out.push(match reply {
                Value::Nil => None,
                Value::Array(items) => match items.as_slice() {
                    [Value::BulkString(value), Value::Array(tags), ..] => Some(Entry {
                        value: value.clone(),
                        tags: tags
                            .iter()
                            .map(|t| match t {
                                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                                other => panic!("HC.FETCH {key}: tag {other:?}"),
                            })
                            .collect(),
                    }),
                    _ => panic!("HC.FETCH {key} answered {items:?}"),
                },
                other => panic!("HC.FETCH {key} answered {other:?}"),
            });
        }
    }
    out
}

/// What one restart found.
#[derive(Debug, Default)]
struct Recovery {
    /// Acknowledged operations whose effect is missing.
    lost: u64,
    /// In-flight operations found applied.
    in_flight_applied: u64,
}

/// Checks the restarted server against the writers' models, then makes the models exact
/// (the state found becomes the acknowledged one). Panics on anything not allowed.
fn verify_after_restart(
    server: &RedisServer,
    writers: &mut [Writer],
    strict: bool,
    killed_at: Instant,
    what: &str,
) -> Recovery {
    let mut con = server.connection();
    let modules = format!("{:?}", call(&mut con, &["MODULE", "LIST"]));
    assert!(
        modules.contains(MODULE_NAME),
        "{what}: the module is not loaded after the restart: {modules}"
    );
    let report = hc_check(&mut con);
    assert!(
        report.problems.is_empty(),
        "{what}: HC.CHECK after the restart: {:?}\n{}",
        report.problems,
        server.log_tail()
    );
    wait_removals_done(&mut con);

    let mut found = Recovery::default();
    let mut problems = Vec::new();
    for writer in writers.iter_mut() {
        let names: Vec<String> = writer.keys.keys().cloned().collect();
        let actual = fetch_all(&mut con, &names);
        // An HC.DELTAG in flight is one AOF record: all of its keys went, or none.
        let group_applied: BTreeSet<bool> = writer
            .in_flight_group
            .iter()
            .filter_map(|k| {
                let i = names.binary_search(k).ok()?;
                let model = &writer.keys[k];
                (model.state.is_some()).then(|| actual[i].is_none())
            })
            .collect();
        if strict && group_applied.len() > 1 {
            problems.push(format!(
                "writer {}: the HC.DELTAG in flight removed only some of its keys",
                writer.id
            ));
        }
        for (key, actual) in names.iter().zip(actual) {
            let model = writer.keys.get_mut(key).unwrap();
            if let Some(entry) = &actual {
                if !model.history.contains(&entry.value) {
                    problems.push(format!(
                        "{key}: holds a value never written: {:?}",
                        String::from_utf8_lossy(&entry.value)
                    ));
                }
            }
            if model.allows(&actual) {
                if actual != model.state {
                    found.in_flight_applied += 1;
                }
            } else {
                found.lost += 1;
                let age = model
                    .acked_at
                    .map(|at| killed_at.saturating_duration_since(at));
                let detail = format!(
                    "{key}: after the restart {:?}, acknowledged {:?} ({age:?} before the kill), in flight {:?}",
                    actual.as_ref().map(|e| (String::from_utf8_lossy(&e.value).into_owned(), &e.tags)),
                    model.state.as_ref().map(|e| (String::from_utf8_lossy(&e.value).into_owned(), &e.tags)),
                    model.in_flight
                );
                if strict || age.is_none_or(|a| a > EVERYSEC_WINDOW) {
                    problems.push(format!("acknowledged operation lost: {detail}"));
                } else {
                    eprintln!("crash_recovery: {what}: lost under everysec: {detail}");
                }
            }
            model.state = actual;
            model.in_flight = None;
        }
        writer.in_flight_group.clear();
    }
    assert!(
        problems.is_empty(),
        "{what}: {} problems after the restart:\n{}\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        server.log_tail()
    );

    // The keyspace holds exactly the model's keys; the index and INFO agree with it.
    let present: BTreeMap<&String, &Entry> = writers
        .iter()
        .flat_map(|w| w.keys.iter())
        .filter_map(|(k, m)| m.state.as_ref().map(|e| (k, e)))
        .collect();
    let keyspace = all_keys(&mut con);
    let expected_keys: Vec<String> = present.keys().map(|k| (*k).clone()).collect();
    assert_eq!(keyspace.len(), expected_keys.len(), "{what}: keyspace size");
    assert!(
        keyspace == expected_keys,
        "{what}: the keyspace differs from the model's keys"
    );
    let mut by_tag: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (key, entry) in &present {
        for tag in &entry.tags {
            by_tag.entry(tag).or_default().push((*key).clone());
        }
    }
    let mut all_tags: Vec<String> = (0..SHARED_TAGS).map(|i| format!("shared:{i}")).collect();
    for w in writers.iter() {
        all_tags.extend((0..OWN_TAGS).map(|i| w.own_tag(i)));
    }
    for tag in &all_tags {
        let expected = by_tag.get(tag.as_str()).cloned().unwrap_or_default();
        assert_eq!(tagkeys(&mut con, tag), expected, "{what}: HC.TAGKEYS {tag}");
        assert_eq!(
            tagcard(&mut con, tag),
            expected.len() as i64,
            "{what}: HC.TAGCARD {tag}"
        );
    }
    let links: usize = by_tag.values().map(Vec::len).sum();
    let info = HcInfo::read(&mut con);
    assert_eq!(
        info.counts(),
        (present.len() as i64, by_tag.len() as i64, links as i64),
        "{what}: INFO hybridcache (keys, tags, tag_links) against the keyspace"
    );
    let report = hc_check(&mut con);
    assert!(
        report.problems.is_empty(),
        "{what}: HC.CHECK: {:?}",
        report.problems
    );
    assert_eq!(report.keys, present.len() as i64, "{what}: HC.CHECK keys");
    found
}

/// Runs `HC_CRASH_RUNS` write/kill/restart cycles with `appendfsync <fsync>`.
fn crash_cycles(fsync: &str) {
    let strict = fsync == "always";
    let runs = env_u64("HC_CRASH_RUNS", DEFAULT_RUNS);
    let seed = seed_from_env("HC_CRASH_SEED");
    eprintln!("crash_recovery ({fsync}): HC_CRASH_SEED={seed} HC_CRASH_RUNS={runs}");
    let mut rng = SplitMix64::new(seed);
    let mut server = aof_server(fsync);
    let mut writers: Vec<Writer> = (0..WRITERS).map(|id| Writer::new(id, seed)).collect();
    let mut lost = 0;
    let mut in_flight_applied = 0;
    let mut load_secs: Vec<f64> = Vec::new();
    for run in 0..runs {
        let write_time = Duration::from_millis(1000 + rng.below(2001));
        // Every other run rewrites the AOF just before the kill (which may land while the
        // rewrite runs); this also keeps the AOF, and the restarts, short.
        let rewrite_at = (run % 2 == 1)
            .then(|| write_time.saturating_sub(Duration::from_millis(rng.below(900))));
        let mut admin = server.connection();
        let mut connections: Vec<redis::Connection> =
            writers.iter().map(|_| server.connection()).collect();
        let killed_at = std::thread::scope(|scope| {
            let threads: Vec<_> = writers
                .iter_mut()
                .zip(connections.iter_mut())
                .map(|(writer, con)| scope.spawn(move || writer.run(con, run)))
                .collect();
            match rewrite_at {
                Some(at) => {
                    std::thread::sleep(at);
                    let started = call(&mut admin, &["BGREWRITEAOF"]);
                    std::thread::sleep(write_time - at);
                    server.kill();
                    assert!(started.is_ok(), "BGREWRITEAOF: {started:?}");
                }
                None => {
                    std::thread::sleep(write_time);
                    server.kill();
                }
            }
            let killed_at = Instant::now();
            for thread in threads {
                match thread.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("{fsync} run {run} (HC_CRASH_SEED={seed}): {e}"),
                    Err(_) => panic!("{fsync} run {run}: a writer panicked"),
                }
            }
            killed_at
        });
        drop(connections);
        drop(admin);
        server.start_again();
        load_secs.extend(last_aof_load_secs(&server));
        let what = format!("{fsync} run {run} (HC_CRASH_SEED={seed})");
        let found = verify_after_restart(&server, &mut writers, strict, killed_at, &what);
        lost += found.lost;
        in_flight_applied += found.in_flight_applied;
    }
    let acked_ops: u64 = writers.iter().map(|w| w.acked_ops).sum();
    let acked_sets: u64 = writers.iter().map(|w| w.acked_sets).sum();
    let keys: usize = writers
        .iter()
        .map(|w| w.keys.values().filter(|m| m.state.is_some()).count())
        .sum();
    let slowest_load = load_secs.iter().copied().fold(0.0, f64::max);
    let log = server.log();
    let rewrites = (
        log.matches("Background append only file rewriting started")
            .count(),
        log.matches("Background AOF rewrite finished successfully")
            .count(),
    );
    eprintln!(
        "crash_recovery ({fsync}): {runs} kill -9 runs, {acked_ops} acknowledged operations ({acked_sets} HC.SET), {lost} lost, {in_flight_applied} in-flight effects applied, {keys} keys at the end; AOF rewrites started/finished before a kill {rewrites:?}; slowest AOF load {slowest_load:.3} s"
    );
    if strict {
        assert_eq!(lost, 0, "acknowledged writes lost under appendfsync always");
    }
    let mut con = server.connection();
    assert_index_matches(
        &mut con,
        &format!("the server after {runs} crashes ({fsync})"),
    );
}

/// How long the last AOF load took, from the server log.
fn last_aof_load_secs(server: &RedisServer) -> Option<f64> {
    let log = server.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("DB loaded from append only file: "))?;
    line.rsplit(": ")
        .next()?
        .trim_end_matches(" seconds")
        .parse()
        .ok()
}

#[test]
fn kill_during_writes_with_appendfsync_always_loses_no_acknowledged_write() {
    crash_cycles("always");
}

#[test]
fn kill_during_writes_with_appendfsync_everysec_keeps_the_index_exact() {
    crash_cycles("everysec");
}

/// Keys and tags of the load-time test: `LOAD_KEYS` entries in tags of `LOAD_TAG_SIZE`.
const LOAD_KEYS: u64 = 16_000;
const LOAD_TAG_SIZE: u64 = 20;

/// Writes `LOAD_KEYS` entries in tags of `LOAD_TAG_SIZE` and deletes them all, each tag's
/// keys right after they were written: by `HC.DELTAG` of the tag (then the background
/// removal's `DEL`s) or by `HC.DEL` of its keys. Then kills the server, restarts it and
/// returns how long loading the AOF took (from the server log).
fn write_delete_restart(by_tag: bool) -> f64 {
    let mut server = aof_server("everysec");
    let mut con = server.connection();
    for first in (0..LOAD_KEYS).step_by(2000) {
        let mut pipe = redis::pipe();
        for i in first..first + 2000 {
            let tag = format!("p{}", i / LOAD_TAG_SIZE);
            pipe.cmd(command::SET)
                .arg(format!("k{i}"))
                .arg("v")
                .arg("TAGS")
                .arg(&tag)
                .ignore();
            if i % LOAD_TAG_SIZE == LOAD_TAG_SIZE - 1 {
                if by_tag {
                    pipe.cmd(command::DELTAG).arg(&tag).ignore();
                } else {
                    let keys: Vec<String> = (i + 1 - LOAD_TAG_SIZE..=i)
                        .map(|k| format!("k{k}"))
                        .collect();
                    pipe.cmd(command::DEL).arg(keys).ignore();
                }
            }
        }
        let _: () = pipe.query(&mut con).unwrap();
    }
    wait_removals_done(&mut con);
    assert_eq!(query::<i64>(&mut con, &redis::cmd("DBSIZE")), 0);
    server.kill();
    server.start_again();
    let mut con = server.connection();
    let report = hc_check(&mut con);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    wait_removals_done(&mut con);
    assert_eq!(query::<i64>(&mut con, &redis::cmd("DBSIZE")), 0);
    last_aof_load_secs(&server)
        .unwrap_or_else(|| panic!("no AOF load time in the log\n{}", server.log_tail()))
}

/// Replaying an `HC.DELTAG` must not get slower with every invalidation replayed before it:
/// an AOF holding thousands of small invalidations (the usual traffic: a tag per product,
/// invalidated on every change) must load about as fast as one deleting the same keys with
/// `HC.DEL`. During a load the removal timer does not run, so nothing may depend on it to
/// keep the replay linear.
#[test]
fn an_aof_with_thousands_of_invalidations_loads_as_fast_as_one_with_plain_deletes() {
    let by_del = write_delete_restart(false);
    let by_tag = write_delete_restart(true);
    let invalidations = LOAD_KEYS / LOAD_TAG_SIZE;
    eprintln!(
        "crash_recovery (load time): {LOAD_KEYS} entries deleted by HC.DEL: AOF loaded in {by_del:.3} s; by {invalidations} HC.DELTAG: {by_tag:.3} s"
    );
    assert!(
        by_tag <= 4.0 * by_del + 0.5,
        "loading {LOAD_KEYS} HC.SET and {invalidations} HC.DELTAG took {by_tag:.3} s, against {by_del:.3} s for the same keys deleted by HC.DEL: the replay of invalidations is superlinear"
    );
}

/// The number of `DEL` records in the AOF's incremental files.
fn aof_dels(server: &RedisServer) -> usize {
    let dir = server.dir().join("appendonlydir");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".incr."))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            bytes
                .windows(11)
                .filter(|w| w == b"*2\r\n$3\r\nDEL")
                .count()
        })
        .sum()
}

#[test]
fn kill_while_a_large_tag_is_being_removed_hides_it_for_good_and_the_removal_finishes() {
    let mut server = aof_server("always");
    let mut con = server.connection();
    let big_keys: Vec<String> = (0..BIG_KEYS).map(|i| format!("big:{i}")).collect();
    for (batch, chunk) in big_keys.chunks(2000).enumerate() {
        let mut pipe = redis::pipe();
        for (i, key) in chunk.iter().enumerate() {
            let cmd = pipe
                .cmd(command::SET)
                .arg(key)
                .arg("v")
                .arg("TAGS")
                .arg("big");
            if (batch + i) % 2 == 0 {
                cmd.arg("half");
            }
            cmd.ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
    }
    let mut pipe = redis::pipe();
    for i in 0..100 {
        let cmd = pipe
            .cmd(command::SET)
            .arg(format!("other:{i}"))
            .arg("o")
            .arg("TAGS")
            .arg("other");
        if i % 2 == 0 {
            cmd.arg("half");
        }
        cmd.ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let late_keys: Vec<String> = (0..LATE_KEYS).map(|i| format!("late:{i}")).collect();
    let other_half: Vec<String> = {
        let mut keys: Vec<String> = (0..100).step_by(2).map(|i| format!("other:{i}")).collect();
        keys.sort();
        keys
    };

    // The invalidation, keys tagged after it, and a look at the removal queue run in one
    // pipeline (one event-loop turn, before the removal timer runs); the kill follows.
    let mut pipe = redis::pipe();
    pipe.cmd(command::DELTAG).arg("big");
    for key in &late_keys {
        pipe.cmd(command::SET)
            .arg(key)
            .arg("late")
            .arg("TAGS")
            .arg("big")
            .arg("late")
            .ignore();
    }
    pipe.cmd("INFO").arg(MODULE_NAME);
    let (removed, info): (i64, String) = pipe.query(&mut con).unwrap();
    assert_eq!(removed, BIG_KEYS as i64);
    assert!(
        info.contains(&format!("pending_removals:{BIG_KEYS}")),
        "{info}"
    );
    let pending = info_i64(
        &mut con,
        MODULE_NAME,
        &format!("{MODULE_NAME}_pending_removals"),
    );
    server.kill();
    assert!(pending > 0, "the removal had finished before the kill");
    let dels_before_kill = aof_dels(&server);

    let mut cycles = Vec::new();
    for cycle in 0..2 {
        server.start_again();
        let mut con = server.connection();
        let what = format!("after kill {}", cycle + 1);
        // At once, while the removal resumes: nothing of the invalidated tag is visible.
        let check = hc_check(&mut con);
        assert!(
            check.problems.is_empty(),
            "{what}: HC.CHECK {:?}",
            check.problems
        );
        let pending_after_load = check.pending_removals;
        let mut late_sorted = late_keys.clone();
        late_sorted.sort();
        assert_eq!(
            tagkeys(&mut con, "big"),
            late_sorted,
            "{what}: HC.TAGKEYS big"
        );
        assert_eq!(tagcard(&mut con, "big"), LATE_KEYS as i64, "{what}");
        cycles.push(pending_after_load);
        if cycle == 0 {
            // Killed again at once, while the resumed removal runs.
            server.kill();
            continue;
        }
        assert_eq!(
            tagkeys(&mut con, "half"),
            other_half,
            "{what}: HC.TAGKEYS half"
        );
        for chunk in big_keys.chunks(1000) {
            let values: Vec<Option<Vec<u8>>> =
                query(&mut con, redis::cmd(command::MGET).arg(chunk));
            assert!(
                values.iter().all(Option::is_none),
                "{what}: HC.MGET found an invalidated key"
            );
        }
        let late: Vec<Option<String>> = query(&mut con, redis::cmd(command::MGET).arg(&late_keys));
        assert!(
            late.iter().all(|v| v.as_deref() == Some("late")),
            "{what}: {late:?}"
        );
    }
    let mut con = server.connection();
    wait_until(
        Duration::from_secs(60),
        "the resumed removal to finish",
        || {
            info_i64(
                &mut con,
                MODULE_NAME,
                &format!("{MODULE_NAME}_pending_removals"),
            ) == 0
        },
    );
    let keys = all_keys(&mut con);
    assert_eq!(
        keys.len(),
        100 + LATE_KEYS as usize,
        "only other:* and late:* remain"
    );
    assert!(keys.iter().all(|k| !k.starts_with("big:")));
    assert_index_matches(&mut con, "the server after the removal finished");
    let report = hc_check(&mut con);
    assert_eq!(
        (report.keys, report.pending_removals),
        (100 + LATE_KEYS as i64, 0)
    );
    assert_eq!(hc_deltag(&mut con, &["big"]), LATE_KEYS as i64);
    eprintln!(
        "crash_recovery (large tag): killed with {pending} of {BIG_KEYS} removals pending ({dels_before_kill} DELs in the AOF); pending after each restart: {cycles:?}"
    );
}
