//! Cluster: what an HC.SET costs the cluster bus when events travel on shard channels (the
//! default) and on the global channel, and how long an invalidation takes to reach another
//! handle, on 3 primaries with a replica each.
//!
//! Bus traffic is read from every node's `CLUSTER INFO` (`cluster_stats_messages_<type>_sent`
//! and `_received`) before and after the writes of one shard at a time, so that what nodes
//! outside the writer's shard received is measured, not inferred.

use crate::config::Config;
use crate::fill;
use crate::report::{self, thousands, verdict, GoalCheck, Report, Section};
use crate::stats::percentile;
use hybridcache::{CacheEvent, EntryOptions, HybridCache};
use hybridcache_protocol::shard::{shard_channel, slot_tag};
use hybridcache_protocol::{command, decode_message, DEFAULT_CHANNEL};
use hybridcache_tests::info::parse_info;
use hybridcache_tests::{HcInfo, RedisCluster, RedisServer, Subscriber};
use redis::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// The cluster-bus message types that carry events (`PUBLISH` and `SPUBLISH`/
/// `PublishMessageShard`), as `CLUSTER INFO` names them.
const EVENT_TYPES: [&str; 2] = ["publish", "publishshard"];

/// Bytes of a cluster-bus PUBLISH or PUBLISHSHARD message besides its channel and payload, in
/// Redis 7.0: the `clusterMsg` header up to its data union (cluster.h asserts
/// `offsetof(clusterMsg, data) == 2256`) and `clusterMsgDataPublish`'s `channel_len` and
/// `message_len` (4 bytes each). `clusterSendPublish` (cluster.c) sends
/// `sizeof(clusterMsg) - sizeof(union clusterMsgData) + sizeof(clusterMsgDataPublish) - 8 +
/// channel_len + message_len` bytes.
const PUBLISH_OVERHEAD_BYTES: u64 = 2256 + 8;

/// The single-server propagation goal, shown as a reference for the cluster.
const SINGLE_SERVER_P99: f64 = 1e-3;

/// How long the cluster's own bus traffic is counted, without writes.
const BACKGROUND_WINDOW: Duration = Duration::from_secs(2);

/// Longest wait for any step (events delivered, counters settled, B caught up).
const TIMEOUT: Duration = Duration::from_secs(30);

/// `redis-server` arguments of every node besides the harness's cluster defaults: slow
/// subscribers are not disconnected (as on the benchmark's single servers), and a node is
/// failed over only after 5 s without an answer, not the harness's 1 s, so that a busy
/// machine does not fail one over in the middle of a measurement.
const NODE_ARGS: [&str; 4] = [
    "--client-output-buffer-limit",
    "pubsub 0 0 0",
    "--cluster-node-timeout",
    "5000",
];

/// Where the module publishes events in a cluster (`hybridcache.sharded-events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channels {
    /// On its shard's channel (`PublishMessageShard`): only the shard's nodes get it.
    Sharded,
    /// On the global channel (`PublishMessage`): broadcast to every node.
    Global,
}

impl Channels {
    fn config_value(self) -> &'static str {
        match self {
            Channels::Sharded => "yes",
            Channels::Global => "no",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Channels::Sharded => "sharded",
            Channels::Global => "global",
        }
    }
}

/// One primary, its replicas and the slots it serves.
struct Shard<'a> {
    primary: &'a RedisServer,
    replicas: Vec<&'a RedisServer>,
    slots: Vec<u16>,
}

impl Shard<'_> {
    fn holds(&self, node: &RedisServer) -> bool {
        node.port() == self.primary.port() || self.replicas.iter().any(|r| r.port() == node.port())
    }

    /// The shard channel its primary's events are published on (named after its lowest
    /// slot).
    fn channel(&self) -> String {
        let lowest = self.slots.iter().copied().min().unwrap_or(0);
        String::from_utf8_lossy(&shard_channel(DEFAULT_CHANNEL.as_bytes(), lowest)).into_owned()
    }

    /// `count` keys spread evenly over the shard's slots.
    fn keys(&self, prefix: &str, count: u64) -> Vec<String> {
        spread_keys(prefix, &self.slots, count)
    }
}

/// `count` keys named `<prefix>{<tag>}:<j>`, key `j` in slot `slots[j * len / count]`.
fn spread_keys(prefix: &str, slots: &[u16], count: u64) -> Vec<String> {
    (0..count)
        .map(|j| {
            let slot = slots[(j as usize * slots.len()) / count.max(1) as usize];
            format!("{prefix}{{{}}}:{j}", slot_tag(slot))
        })
        .collect()
}

fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, cmd: &redis::Cmd) -> T {
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", cmd.args_iter().next()))
}

/// The slots each primary serves (by port), from `CLUSTER SLOTS`.
fn slots_by_port(con: &mut redis::Connection) -> BTreeMap<u16, Vec<u16>> {
    let reply: Value = query(con, redis::cmd("CLUSTER").arg("SLOTS"));
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS: not an array: {reply:?}");
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(i)) => u16::try_from(*i).ok(),
        _ => None,
    };
    let mut slots: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    for range in &ranges {
        let Value::Array(fields) = range else {
            panic!("CLUSTER SLOTS: not a range: {range:?}");
        };
        let (first, last, port) = match (int(fields.first()), int(fields.get(1)), fields.get(2)) {
            (Some(first), Some(last), Some(Value::Array(primary))) => {
                (first, last, int(primary.get(1)))
            }
            _ => panic!("CLUSTER SLOTS: unexpected range {range:?}"),
        };
        let port = port.unwrap_or_else(|| panic!("CLUSTER SLOTS: no port in {range:?}"));
        slots.entry(port).or_default().extend(first..=last);
    }
    slots
}

fn shards(cluster: &RedisCluster) -> Vec<Shard<'_>> {
    let slots = slots_by_port(&mut cluster.node(0).connection());
    let shards: Vec<Shard<'_>> = cluster
        .primaries()
        .into_iter()
        .map(|primary| Shard {
            primary,
            replicas: cluster.replicas_of(primary),
            slots: slots.get(&primary.port()).cloned().unwrap_or_default(),
        })
        .collect();
    for shard in &shards {
        assert!(
            !shard.slots.is_empty() && !shard.replicas.is_empty(),
            "primary {} serves {} slots with {} replicas\n{}",
            shard.primary.port(),
            shard.slots.len(),
            shard.replicas.len(),
            cluster.state_report()
        );
    }
    shards
}

/// The harness's cluster is consistent once every node sees every other and all agree on the
/// slots, but a primary learns that a node replicates it only from that node's next ping or
/// pong, and until then sends its shard messages to no replica; and a bus link that is still
/// connecting may hold messages. Waits until a probe `SPUBLISH` on every primary reaches all
/// its replicas, and a probe `PUBLISH` every other node, over the bus.
fn wait_until_bus_delivers(nodes: &[&RedisServer], shards: &[Shard<'_>]) {
    let started = Instant::now();
    for shard in shards {
        let others: Vec<&RedisServer> = nodes
            .iter()
            .copied()
            .filter(|n| n.port() != shard.primary.port())
            .collect();
        let probes = [
            ("SPUBLISH", "publishshard", shard.replicas.clone()),
            ("PUBLISH", "publish", others),
        ];
        let mut con = shard.primary.connection();
        for (command, kind, targets) in probes {
            let received = |node: &RedisServer| {
                BusCounters::read(node)
                    .received
                    .get(kind)
                    .copied()
                    .unwrap_or(0)
            };
            let probe = format!("{{{}}}hc:bench-probe", slot_tag(shard.slots[0]));
            loop {
                let before: Vec<i64> = targets.iter().map(|r| received(r)).collect();
                let _: i64 = query(&mut con, redis::cmd(command).arg(&probe).arg("probe"));
                let sent = Instant::now();
                let arrived = loop {
                    let now: Vec<i64> = targets.iter().map(|r| received(r)).collect();
                    if now.iter().zip(&before).all(|(n, b)| n > b) {
                        break true;
                    }
                    if sent.elapsed() > Duration::from_millis(200) {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                };
                if arrived {
                    break;
                }
                assert!(
                    started.elapsed() < TIMEOUT,
                    "a {command} on primary {} did not reach every node it should within \
                     {TIMEOUT:?}",
                    shard.primary.port()
                );
            }
        }
    }
}

/// Waits until every event bus message sent so far has been received (summed over the
/// nodes), so that messages still in flight from before are not counted in a run.
fn wait_until_bus_quiet(nodes: &[&RedisServer]) {
    let started = Instant::now();
    loop {
        let all: Vec<BusCounters> = nodes.iter().map(|n| BusCounters::read(n)).collect();
        let sent: i64 = all.iter().map(BusCounters::sent_events).sum();
        let received: i64 = all.iter().map(BusCounters::received_events).sum();
        if sent == received {
            return;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "{} event bus messages sent were still not received after {TIMEOUT:?}",
            sent - received
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Bus messages sent per second by all nodes together over `window` without writes: the
/// cluster's own gossip (ping, pong).
fn background_rate(nodes: &[&RedisServer], window: Duration) -> f64 {
    let before: Vec<BusCounters> = nodes.iter().map(|n| BusCounters::read(n)).collect();
    let started = Instant::now();
    std::thread::sleep(window);
    let sent: i64 = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| BusCounters::read(n).since(b).sent_all())
        .sum();
    sent as f64 / started.elapsed().as_secs_f64()
}

/// One node's cluster-bus counters, or the difference of two readings.
#[derive(Debug, Clone, Default, PartialEq)]
struct BusCounters {
    /// `cluster_stats_messages_<type>_sent` by type.
    sent: BTreeMap<String, i64>,
    /// `cluster_stats_messages_<type>_received` by type.
    received: BTreeMap<String, i64>,
    /// Every `CLUSTER INFO` field with "bytes" in its name (none in Redis 7.0).
    bytes: BTreeMap<String, i64>,
}

impl BusCounters {
    /// Parses the text of `CLUSTER INFO` (`field:value` lines).
    fn parse(text: &str) -> Self {
        let mut counters = Self::default();
        for (field, value) in parse_info(text) {
            let Ok(value) = value.trim().parse::<i64>() else {
                continue;
            };
            if field.contains("bytes") {
                counters.bytes.insert(field, value);
                continue;
            }
            let Some(rest) = field.strip_prefix("cluster_stats_messages_") else {
                continue;
            };
            // The totals (`cluster_stats_messages_sent`) are the sums of the types.
            if let Some(kind) = rest.strip_suffix("_sent") {
                counters.sent.insert(kind.to_string(), value);
            } else if let Some(kind) = rest.strip_suffix("_received") {
                counters.received.insert(kind.to_string(), value);
            }
        }
        counters
    }

    fn read(node: &RedisServer) -> Self {
        let text: String = query(&mut node.connection(), redis::cmd("CLUSTER").arg("INFO"));
        Self::parse(&text)
    }

    /// `self - before`, field by field.
    fn since(&self, before: &Self) -> Self {
        let minus = |now: &BTreeMap<String, i64>, then: &BTreeMap<String, i64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                .collect()
        };
        Self {
            sent: minus(&self.sent, &before.sent),
            received: minus(&self.received, &before.received),
            bytes: minus(&self.bytes, &before.bytes),
        }
    }

    fn add(&mut self, other: &Self) {
        let plus = |into: &mut BTreeMap<String, i64>, from: &BTreeMap<String, i64>| {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        };
        plus(&mut self.sent, &other.sent);
        plus(&mut self.received, &other.received);
        plus(&mut self.bytes, &other.bytes);
    }

    fn sent_events(&self) -> i64 {
        EVENT_TYPES.iter().filter_map(|t| self.sent.get(*t)).sum()
    }

    fn received_events(&self) -> i64 {
        EVENT_TYPES
            .iter()
            .filter_map(|t| self.received.get(*t))
            .sum()
    }

    fn sent_all(&self) -> i64 {
        self.sent.values().sum()
    }

    fn received_all(&self) -> i64 {
        self.received.values().sum()
    }
}

/// What the witnesses read: every event message published, once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Witnessed {
    messages: u64,
    changes: u64,
    /// Channel name and payload bytes of the messages.
    bytes: u64,
    undecodable: u64,
}

impl Witnessed {
    fn since(self, before: Self) -> Self {
        Self {
            messages: self.messages - before.messages,
            changes: self.changes - before.changes,
            bytes: self.bytes - before.bytes,
            undecodable: self.undecodable - before.undecodable,
        }
    }
}

#[derive(Debug, Default)]
struct WitnessCounts {
    messages: AtomicU64,
    changes: AtomicU64,
    bytes: AtomicU64,
    undecodable: AtomicU64,
}

/// Raw subscribers that read every event message once, to learn the messages' sizes (the
/// bus counters count messages, not bytes) and when all of a run's changes are out: one on
/// the global channel, or one per shard on its channel (the same channels as the handles',
/// so the module publishes nothing more for them).
struct Witnesses {
    stop: Arc<AtomicBool>,
    counts: Arc<WitnessCounts>,
    threads: Vec<JoinHandle<()>>,
}

impl Witnesses {
    fn start(subscribers: Vec<Subscriber>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(WitnessCounts::default());
        let threads = subscribers
            .into_iter()
            .enumerate()
            .map(|(i, subscriber)| {
                let (stop, counts) = (stop.clone(), counts.clone());
                std::thread::Builder::new()
                    .name(format!("witness-{i}"))
                    .spawn(move || {
                        let channel_bytes = subscriber.channel().len() as u64;
                        while !stop.load(Ordering::Relaxed) {
                            let Some(payload) = subscriber.next_payload(Duration::from_millis(50))
                            else {
                                continue;
                            };
                            match decode_message(&payload) {
                                Ok(changes) => {
                                    counts
                                        .changes
                                        .fetch_add(changes.len() as u64, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    counts.undecodable.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            counts
                                .bytes
                                .fetch_add(channel_bytes + payload.len() as u64, Ordering::Relaxed);
                            counts.messages.fetch_add(1, Ordering::Release);
                        }
                        drop(subscriber);
                    })
                    .unwrap_or_else(|e| panic!("cannot spawn a witness thread: {e}"))
            })
            .collect();
        Self {
            stop,
            counts,
            threads,
        }
    }

    fn read(&self) -> Witnessed {
        let messages = self.counts.messages.load(Ordering::Acquire);
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Witnessed {
            messages,
            changes: read(&self.counts.changes),
            bytes: read(&self.counts.bytes),
            undecodable: read(&self.counts.undecodable),
        }
    }
}

impl Drop for Witnesses {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The traffic of HC.SET writes to one shard, or the sum over several.
#[derive(Debug, Clone, Default)]
struct Traffic {
    writes: u64,
    /// The module's `event_messages` on the writer (one per channel published on).
    published: u64,
    /// Bus counters summed over the writer's shard's nodes ...
    inside: BusCounters,
    /// ... and over every other node.
    outside: BusCounters,
    witnessed: Witnessed,
    /// From the first write until every event message was received on the bus.
    elapsed: Duration,
}

impl Traffic {
    fn add(&mut self, other: &Traffic) {
        self.writes += other.writes;
        self.published += other.published;
        self.inside.add(&other.inside);
        self.outside.add(&other.outside);
        self.witnessed.messages += other.witnessed.messages;
        self.witnessed.changes += other.witnessed.changes;
        self.witnessed.bytes += other.witnessed.bytes;
        self.witnessed.undecodable += other.witnessed.undecodable;
        self.elapsed += other.elapsed;
    }

    fn all(&self) -> BusCounters {
        let mut all = self.inside.clone();
        all.add(&self.outside);
        all
    }

    fn per_write(&self, count: i64) -> f64 {
        count as f64 / self.writes.max(1) as f64
    }

    /// Event bus messages sent per message published (how many nodes each one went to).
    fn copies(&self) -> f64 {
        self.all().sent_events() as f64 / self.published.max(1) as f64
    }

    /// Estimated bytes of one event bus message: the Redis 7.0 header and lengths plus the
    /// witnessed channel and payload bytes, averaged over the messages.
    fn bus_message_bytes(&self) -> f64 {
        PUBLISH_OVERHEAD_BYTES as f64
            + self.witnessed.bytes as f64 / self.witnessed.messages.max(1) as f64
    }

    /// Estimated event bytes on the bus per HC.SET.
    fn bytes_per_write(&self) -> f64 {
        self.per_write(self.all().sent_events()) * self.bus_message_bytes()
    }
}

/// Writes `keys` to `shard`'s primary, `depth` HC.SET per pipeline, and waits until every
/// event message they caused has been received on the bus; the traffic they caused.
fn shard_traffic(
    cfg: &Config,
    nodes: &[&RedisServer],
    shard: &Shard<'_>,
    keys: &[String],
    depth: usize,
    witnesses: &Witnesses,
) -> Traffic {
    wait_until_bus_quiet(nodes);
    let mut con = shard.primary.connection();
    let value = fill::value(cfg.value_size);
    let messages = |con: &mut redis::Connection| HcInfo::read(con).int("event_messages");
    let published_before = messages(&mut con);
    let seen_before = witnesses.read();
    let before: Vec<BusCounters> = nodes.iter().map(|n| BusCounters::read(n)).collect();
    let started = Instant::now();
    for chunk in keys.chunks(depth.max(1)) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd(command::SET)
                .arg(key)
                .arg(&value)
                .arg(command::option::TAGS)
                .arg(&cfg.write_tags)
                .ignore();
        }
        pipe.query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("pipelined HC.SET failed: {e}"));
    }
    // Every change out, then every event message sent on the bus received by its node.
    let deadline = Instant::now() + TIMEOUT;
    let writes = keys.len() as u64;
    let mut deltas: Vec<BusCounters> = Vec::new();
    let elapsed = loop {
        let seen = witnesses.read().since(seen_before);
        if seen.changes >= writes {
            let elapsed = started.elapsed();
            deltas = nodes
                .iter()
                .zip(&before)
                .map(|(n, b)| BusCounters::read(n).since(b))
                .collect();
            let sent: i64 = deltas.iter().map(BusCounters::sent_events).sum();
            let received: i64 = deltas.iter().map(BusCounters::received_events).sum();
            if sent == received {
                break elapsed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the events of {writes} HC.SET on the shard of {} did not all arrive within \
             {TIMEOUT:?}: the witnesses read {} changes; bus counters since the writes: {}",
            shard.primary.port(),
            seen.changes,
            nodes
                .iter()
                .zip(&deltas)
                .map(|(n, d)| format!("{}: sent {:?} received {:?}", n.port(), d.sent, d.received))
                .collect::<Vec<_>>()
                .join("; ")
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut traffic = Traffic {
        writes,
        published: u64::try_from(messages(&mut con) - published_before).unwrap_or(0),
        witnessed: witnesses.read().since(seen_before),
        elapsed,
        ..Traffic::default()
    };
    for (node, delta) in nodes.iter().zip(&deltas) {
        if shard.holds(node) {
            traffic.inside.add(delta);
        } else {
            traffic.outside.add(delta);
        }
    }
    traffic
}

/// Writes `writes` HC.SET spread over every slot, each shard's in turn, `depth` per pipeline.
fn traffic(
    cfg: &Config,
    nodes: &[&RedisServer],
    shards: &[Shard<'_>],
    keys: &[Vec<String>],
    depth: usize,
    witnesses: &Witnesses,
) -> Traffic {
    let mut total = Traffic::default();
    for (shard, keys) in shards.iter().zip(keys) {
        total.add(&shard_traffic(cfg, nodes, shard, keys, depth, witnesses));
    }
    total
}

/// The global-channel subscriptions per node (`PUBSUB NUMSUB`) or, sharded, the shard
/// channel subscriptions of each primary (`PUBSUB SHARDNUMSUB`).
fn subscriptions(
    channels: Channels,
    nodes: &[&RedisServer],
    shards: &[Shard<'_>],
) -> Vec<(u16, i64)> {
    let count = |node: &RedisServer, sub: &str, channel: &str| {
        let reply: Vec<Value> = query(
            &mut node.connection(),
            redis::cmd("PUBSUB").arg(sub).arg(channel),
        );
        match reply.get(1) {
            Some(Value::Int(n)) => *n,
            other => panic!("PUBSUB {sub}: unexpected count {other:?}"),
        }
    };
    match channels {
        Channels::Sharded => shards
            .iter()
            .map(|s| {
                (
                    s.primary.port(),
                    count(s.primary, "SHARDNUMSUB", &s.channel()),
                )
            })
            .collect(),
        Channels::Global => nodes
            .iter()
            .map(|n| (n.port(), count(n, "NUMSUB", DEFAULT_CHANNEL)))
            .collect(),
    }
}

async fn handle(cluster: &RedisCluster) -> HybridCache {
    HybridCache::cluster_builder(cluster.urls())
        .l1_max_entries(100_000)
        .default_options(EntryOptions::new().ttl(Duration::from_secs(3600)))
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot build a cluster handle: {e}"))
}

/// Propagation samples, each with the index of the key written: from just before A's `set`
/// of a key B holds in L1 until B's event stream reports the invalidation applied. The keys
/// rotate over the shards. The first round over the keys is a warm-up, not kept.
async fn propagation(
    a: HybridCache,
    b: HybridCache,
    keys: Arc<Vec<String>>,
    writes: usize,
) -> Vec<(usize, Duration)> {
    let mut events = b.events();
    let mut samples = Vec::with_capacity(writes);
    for i in 0..keys.len() + writes {
        let key = &keys[i % keys.len()];
        let version = i as u64 + 1;
        // B holds the key in L1 (read from Redis after its previous invalidation).
        b.get::<u64>(key)
            .await
            .unwrap_or_else(|e| panic!("B.get failed: {e}"));
        // What B's stream holds so far (its reads' hits and misses) is not the write's.
        while !matches!(events.try_recv(), Err(TryRecvError::Empty)) {}
        let received = b.stats().events_received;
        let started = Instant::now();
        let deadline = started + TIMEOUT;
        a.set(key, version, EntryOptions::new())
            .await
            .unwrap_or_else(|e| panic!("A.set failed: {e}"));
        loop {
            match tokio::time::timeout_at(deadline.into(), events.recv()).await {
                Ok(Ok(CacheEvent::InvalidationReceived)) => break,
                Ok(Ok(_)) => {}
                // Fell behind B's stream: the counter says whether the event came.
                Ok(Err(RecvError::Lagged(_))) if b.stats().events_received > received => break,
                Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => panic!("B's event stream closed"),
                Err(_) => panic!("no invalidation of {key} reached B within {TIMEOUT:?}"),
            }
        }
        let elapsed = started.elapsed();
        if i >= keys.len() {
            samples.push((i % keys.len(), elapsed));
        }
        // B serves the new value from now on.
        while b
            .get::<u64>(key)
            .await
            .unwrap_or_else(|e| panic!("B.get failed: {e}"))
            .as_deref()
            != Some(&version)
        {
            assert!(Instant::now() < deadline, "B kept serving a stale {key}");
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    samples
}

/// p50, p99 and the highest sample, in seconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
    /// Share of the samples over 10 ms.
    over_10ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let slow = samples
            .iter()
            .filter(|d| **d > Duration::from_millis(10))
            .count();
        Self {
            over_10ms: slow as f64 / samples.len().max(1) as f64,
            p50: percentile(&samples, 0.50).as_secs_f64(),
            p99: percentile(&samples, 0.99).as_secs_f64(),
            max: percentile(&samples, 1.0).as_secs_f64(),
            samples: samples.len(),
        }
    }
}

/// Everything measured with one setting of `hybridcache.sharded-events`.
struct ModeResult {
    channels: Channels,
    /// `(pipeline depth, traffic)`.
    traffic: Vec<(usize, Traffic)>,
    propagation: Latency,
    /// The samples whose event reached B from the writer itself (B subscribed there) ...
    direct: Option<Latency>,
    /// ... and those whose event crossed the cluster bus first (global channel, B
    /// subscribed on another node).
    over_bus: Option<Latency>,
    /// Global: the node of B's subscription.
    b_node: Option<u16>,
    /// Where the handles' subscriptions are: `(port, subscriptions)` of every node with any.
    subscribed: Vec<(u16, i64)>,
}

/// Measures one setting on the running cluster.
fn measure_mode(
    cfg: &Config,
    runtime: &tokio::runtime::Runtime,
    cluster: &RedisCluster,
    shards: &[Shard<'_>],
    keys: &[Vec<String>],
    channels: Channels,
) -> ModeResult {
    let nodes = cluster.running_nodes();
    for node in &nodes {
        let _: () = query(
            &mut node.connection(),
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("hybridcache.sharded-events")
                .arg(channels.config_value()),
        );
    }
    // The two handles of a deployment, subscribed as HC.HELLO tells them (per shard, or
    // globally on one node).
    let b = runtime.block_on(handle(cluster));
    let b_node = match channels {
        Channels::Sharded => None,
        Channels::Global => subscriptions(channels, &nodes, shards)
            .into_iter()
            .find(|(_, n)| *n > 0)
            .map(|(port, _)| port),
    };
    let a = runtime.block_on(handle(cluster));
    let subscribed: Vec<(u16, i64)> = subscriptions(channels, &nodes, shards)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let total: i64 = subscribed.iter().map(|(_, n)| n).sum();
    match channels {
        Channels::Sharded => assert!(
            subscribed.len() == shards.len() && subscribed.iter().all(|(_, n)| *n == 2),
            "sharded: every primary should have the two handles' subscriptions: {subscribed:?}"
        ),
        Channels::Global => assert_eq!(
            total, 2,
            "global: the two handles should be subscribed once each: {subscribed:?}"
        ),
    }
    let witnesses = Witnesses::start(match channels {
        Channels::Sharded => shards
            .iter()
            .map(|s| Subscriber::on_shard_channel(s.primary, &s.channel()))
            .collect(),
        Channels::Global => vec![Subscriber::on_channel(nodes[0], DEFAULT_CHANNEL)],
    });

    let mut results = Vec::new();
    for &depth in &cfg.cluster_pipelines {
        let t = traffic(cfg, &nodes, shards, keys, depth, &witnesses);
        say!(
            "cluster {} P={depth}: {} HC.SET, {} messages published, bus event messages {} sent \
             ({:.2}/HC.SET, {:.2} per message), received outside the writer's shard {} inside {}, \
             all bus messages sent {} in {}",
            channels.name(),
            thousands(t.writes as f64),
            thousands(t.published as f64),
            thousands(t.all().sent_events() as f64),
            t.per_write(t.all().sent_events()),
            t.copies(),
            thousands(t.outside.received_events() as f64),
            thousands(t.inside.received_events() as f64),
            thousands(t.all().sent_all() as f64),
            report::duration(t.elapsed)
        );
        assert_eq!(
            t.witnessed.undecodable, 0,
            "the witnesses read undecodable messages"
        );
        results.push((depth, t));
    }
    drop(witnesses);

    // Key `i` is on shard `i % shards.len()`.
    let prop_keys: Arc<Vec<String>> = Arc::new(
        (0..cfg.cluster_propagation_keys)
            .flat_map(|j| {
                shards.iter().enumerate().map(move |(s, shard)| {
                    let slot = shard.slots[(j * shard.slots.len()) / cfg.cluster_propagation_keys];
                    format!("cp:{s}:{{{}}}", slot_tag(slot))
                })
            })
            .collect(),
    );
    let writes = cfg.cluster_propagation_writes;
    let samples = runtime.block_on(async {
        tokio::spawn(propagation(a.clone(), b.clone(), prop_keys, writes))
            .await
            .unwrap_or_else(|e| panic!("the propagation task failed: {e}"))
    });
    let over_bus =
        |key: usize| b_node.is_some_and(|port| shards[key % shards.len()].primary.port() != port);
    let part = |bus: bool| {
        let part: Vec<Duration> = samples
            .iter()
            .filter(|(key, _)| over_bus(*key) == bus)
            .map(|(_, d)| *d)
            .collect();
        (!part.is_empty()).then(|| Latency::of(part))
    };
    let (direct, over_bus) = (part(false), part(true));
    let latency = Latency::of(samples.into_iter().map(|(_, d)| d).collect());
    say!(
        "cluster {}: propagation A.set → B's event p50 {} p99 {} max {} ({} writes){}",
        channels.name(),
        report::seconds(latency.p50),
        report::seconds(latency.p99),
        report::seconds(latency.max),
        latency.samples,
        over_bus.map_or(String::new(), |l| format!(
            "; over the bus p50 {} p99 {} ({} writes)",
            report::seconds(l.p50),
            report::seconds(l.p99),
            l.samples
        ))
    );
    runtime.block_on(async move {
        drop(a);
        drop(b);
    });
    ModeResult {
        channels,
        traffic: results,
        propagation: latency,
        direct,
        over_bus,
        b_node,
        subscribed,
    }
}

/// Runs the cluster part on a cluster of its own and adds its sections and goal.
pub fn cluster(cfg: &Config, module: &Path, report: &mut Report) {
    let started = Instant::now();
    let cluster = RedisCluster::builder()
        .primaries(3)
        .replicas(1)
        .module_path(module)
        .args(NODE_ARGS)
        .start();
    say!(
        "cluster: 3 primaries + 3 replicas on ports {} up in {}",
        cluster
            .running_nodes()
            .iter()
            .map(|n| n.port().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        report::duration(started.elapsed())
    );
    let shards = shards(&cluster);
    wait_until_bus_delivers(&cluster.running_nodes(), &shards);
    say!(
        "cluster: every primary's messages reach the nodes they should ({} after the start)",
        report::duration(started.elapsed())
    );
    let per_shard = cfg.cluster_writes / shards.len() as u64;
    let keys: Vec<Vec<String>> = shards
        .iter()
        .enumerate()
        .map(|(s, shard)| shard.keys(&format!("cb:{s}:"), per_shard))
        .collect();
    // Every key exists before the runs (no subscriber yet: nothing is published), so that
    // every measured write is an overwrite.
    let value = fill::value(cfg.value_size);
    for (shard, keys) in shards.iter().zip(&keys) {
        let mut con = shard.primary.connection();
        for chunk in keys.chunks(1_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd(command::SET)
                    .arg(key)
                    .arg(&value)
                    .arg(command::option::TAGS)
                    .arg(&cfg.write_tags)
                    .ignore();
            }
            pipe.query::<()>(&mut con)
                .unwrap_or_else(|e| panic!("HC.SET (fill) failed: {e}"));
        }
    }
    let background = background_rate(&cluster.running_nodes(), BACKGROUND_WINDOW);
    say!(
        "cluster: {:.1} bus messages/s sent without writes (gossip)",
        background
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a Tokio runtime: {e}"));
    let modes: Vec<ModeResult> = [Channels::Sharded, Channels::Global]
        .into_iter()
        .map(|channels| measure_mode(cfg, &runtime, &cluster, &shards, &keys, channels))
        .collect();
    drop(runtime);
    let ports: Vec<String> = shards
        .iter()
        .map(|s| {
            format!(
                "{} (+ replica {}): {} slots",
                s.primary.port(),
                s.replicas
                    .iter()
                    .map(|r| r.port().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.slots.len()
            )
        })
        .collect();
    let bytes_fields: Vec<String> = BusCounters::read(cluster.node(0))
        .bytes
        .keys()
        .cloned()
        .collect();
    say!(
        "cluster part done in {}",
        report::duration(started.elapsed())
    );
    add_sections(cfg, &modes, &ports, &bytes_fields, background, report);
}

/// A per-write figure with three significant digits at most.
fn per(value: f64) -> String {
    if !value.is_finite() {
        "n/a".into()
    } else if value == 0.0 {
        "0".into()
    } else if value >= 100.0 {
        thousands(value)
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn add_sections(
    cfg: &Config,
    modes: &[ModeResult],
    shards: &[String],
    bytes_fields: &[String],
    background: f64,
    report: &mut Report,
) {
    // Columns: every depth, sharded then global.
    let columns: Vec<(Channels, usize, &Traffic)> = cfg
        .cluster_pipelines
        .iter()
        .flat_map(|&depth| {
            modes.iter().filter_map(move |m| {
                m.traffic
                    .iter()
                    .find(|(d, _)| *d == depth)
                    .map(|(_, t)| (m.channels, depth, t))
            })
        })
        .collect();
    let row = |what: String, show: &dyn Fn(&Traffic) -> String, goal: &str, met: &str| {
        let mut cells = vec![what];
        cells.extend(columns.iter().map(|(_, _, t)| show(t)));
        cells.push(goal.into());
        cells.push(met.into());
        cells
    };
    let sharded: Vec<&Traffic> = columns
        .iter()
        .filter(|(c, _, _)| *c == Channels::Sharded)
        .map(|(_, _, t)| *t)
        .collect();
    // Met when no node outside a writer's shard received an event message, and the events
    // did travel (to the shard's replicas).
    let outside_sharded: i64 = sharded.iter().map(|t| t.outside.received_events()).sum();
    let inside_sharded: i64 = sharded.iter().map(|t| t.inside.received_events()).sum();
    let local_met = !sharded.is_empty() && outside_sharded == 0 && inside_sharded > 0;
    let global_outside = columns
        .iter()
        .find(|(c, d, _)| *c == Channels::Global && *d == 1)
        .or_else(|| columns.iter().find(|(c, _, _)| *c == Channels::Global))
        .map(|(_, d, t)| (*d, t.per_write(t.outside.received_events())));
    report.goals.push(GoalCheck {
        what: "cluster: a write's event reaches only the nodes of its own shard (bus messages \
               received outside the writer's shard)"
            .into(),
        value: format!(
            "sharded: {} event bus messages outside the writer's shard ({} inside); global{}: {} \
             per HC.SET",
            thousands(outside_sharded as f64),
            thousands(inside_sharded as f64),
            global_outside.map_or(String::new(), |(d, _)| format!(" at P={d}")),
            global_outside.map_or("n/a".into(), |(_, v)| per(v))
        ),
        goal: "0".into(),
        met: local_met,
    });

    let mut rows = vec![
        row(
            "HC.SET writes (3 tags; each shard's slots in turn)".into(),
            &|t| thousands(t.writes as f64),
            "—",
            "—",
        ),
        row(
            "messages published per HC.SET (module's `event_messages`)".into(),
            &|t| per(t.per_write(t.published as i64)),
            "—",
            "—",
        ),
        row(
            "**cluster-bus event messages sent per HC.SET**, all nodes (`publish` + \
             `publishshard` types)"
                .into(),
            &|t| format!("**{}**", per(t.per_write(t.all().sent_events()))),
            "—",
            "—",
        ),
        row(
            "… per message published (nodes each message was sent to)".into(),
            &|t| per(t.copies()),
            "—",
            "—",
        ),
        row(
            "**event messages received by nodes outside the writer's shard**, per HC.SET".into(),
            &|t| format!("**{}**", per(t.per_write(t.outside.received_events()))),
            "0 (sharded)",
            &verdict(local_met),
        ),
        row(
            "… in all (sharded: the goal's count)".into(),
            &|t| thousands(t.outside.received_events() as f64),
            "0 (sharded)",
            "—",
        ),
        row(
            "event messages received inside the writer's shard (its replica), per HC.SET".into(),
            &|t| per(t.per_write(t.inside.received_events())),
            "—",
            "—",
        ),
        row(
            "**estimated cluster-bus event bytes per HC.SET** (see below)".into(),
            &|t| format!("**{} B**", thousands(t.bytes_per_write())),
            "—",
            "—",
        ),
        row(
            "… bytes of one event bus message (2,264 + channel + payload, average)".into(),
            &|t| format!("{} B", thousands(t.bus_message_bytes())),
            "—",
            "—",
        ),
        row(
            "changes per message published (batching)".into(),
            &|t| per(t.witnessed.changes as f64 / t.witnessed.messages.max(1) as f64),
            "—",
            "—",
        ),
        row(
            "all bus messages sent per HC.SET, all types, all nodes (`cluster_stats_messages_sent`; \
             includes the ping/pong gossip during the run)"
                .into(),
            &|t| per(t.per_write(t.all().sent_all())),
            "—",
            "—",
        ),
        row(
            "all bus messages received per HC.SET (`cluster_stats_messages_received`)".into(),
            &|t| per(t.per_write(t.all().received_all())),
            "—",
            "—",
        ),
        row(
            "run time (writes until the last event message was received)".into(),
            &|t| report::duration(t.elapsed),
            "—",
            "—",
        ),
    ];
    for field in bytes_fields {
        rows.push(row(
            format!("`{field}` per HC.SET, all nodes (measured)"),
            &|t| per(t.per_write(t.all().bytes.get(field).copied().unwrap_or(0))),
            "—",
            "—",
        ));
    }
    let mut header = vec!["measure".to_string()];
    header.extend(
        columns
            .iter()
            .map(|(c, d, _)| format!("{}, P={d}", c.name())),
    );
    header.extend(["goal".to_string(), "met".to_string()]);
    let subscribed = |channels: Channels| {
        modes
            .iter()
            .find(|m| m.channels == channels)
            .map(|m| {
                m.subscribed
                    .iter()
                    .map(|(port, n)| format!("{port}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let bytes_note = if bytes_fields.is_empty() {
        format!(
            "**Bytes are an estimate**: Redis 7.0's `CLUSTER INFO` counts bus messages, not bytes. \
             Each event bus message is `clusterSendPublish`'s (cluster.c) `sizeof(clusterMsg) - \
             sizeof(union clusterMsgData) + sizeof(clusterMsgDataPublish) - 8 + channel_len + \
             message_len` bytes: the message header of {PUBLISH_OVERHEAD_BYTES} − 8 = 2,256 bytes \
             (cluster.h asserts `offsetof(clusterMsg, data) == 2256`; 2,048 of them the sender's \
             slot bitmap), the channel and payload lengths (8 bytes), then the channel name and \
             the payload. The channel and payload bytes are those of the messages the witnesses \
             read; estimated bytes per HC.SET = event bus messages sent per HC.SET × average bytes \
             of one. The ping/pong gossip (at least 2,256 bytes each, plus gossip sections) is not \
             in the estimate."
        )
    } else {
        format!(
            "`CLUSTER INFO` exposes byte counters ({}): their deltas are in the last rows; the \
             estimate (2,264 bytes + channel + payload per event bus message) is shown as well.",
            bytes_fields.join(", ")
        )
    };
    report.sections.push(Section {
        title: "Cluster (3 primaries + 3 replicas): bus traffic per HC.SET, sharded vs global"
            .into(),
        intro: vec![
            format!(
                "A Redis Cluster of 3 primaries with one replica each, started by the test harness \
                 with the module (`--cluster-node-timeout 5000`); shards: {}. For each setting of \
                 `hybridcache.sharded-events` (set with `CONFIG SET` on every node), two handles \
                 built with `HybridCache::cluster_builder` are subscribed as a deployment's would \
                 be: sharded, each `SSUBSCRIBE`s every primary's shard channel (subscriptions per \
                 primary: {}); global, each `SUBSCRIBE`s the global channel on one node \
                 (subscriptions per node: {}).",
                shards.join("; "),
                subscribed(Channels::Sharded),
                subscribed(Channels::Global)
            ),
            format!(
                "Then {} HC.SET (3 tags, {}-byte values, overwrites of keys written before) spread \
                 evenly over every slot: each shard's {} in turn, sent to its primary on one \
                 connection, {} per pipeline. Around each shard's writes, every node's `CLUSTER \
                 INFO` is read before and after (after: once raw subscribers, one per shard \
                 channel or one on the global channel, read every change, and the event bus \
                 messages received over all nodes equal those sent); nodes are counted inside or \
                 outside the writer's shard. Event bus messages are the `publish` and \
                 `publishshard` types; the rest (ping, pong, …) is the cluster's background \
                 gossip.",
                thousands(cfg.cluster_writes as f64),
                cfg.value_size,
                thousands((cfg.cluster_writes / 3) as f64),
                cfg.cluster_pipelines
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ],
        header,
        rows,
        charts: vec![],
        notes: vec![
            "Batching: the module publishes one message per channel per event-loop turn, so at \
             pipeline 1 every HC.SET is a message of its own and pipelined writes share one; \
             bus messages per HC.SET = messages published per HC.SET × nodes each message goes \
             to (global: every other node, 5; sharded: the shard's replica, 1)."
                .into(),
            bytes_note,
            format!(
                "Background: without writes, the 6 nodes together sent {:.1} bus messages per \
                 second ({} window; ping and pong, each at least 2,256 bytes, their rate set by \
                 `cluster-node-timeout`), whatever the events' setting.",
                background,
                report::duration(BACKGROUND_WINDOW)
            ),
        ],
    });

    let reference = |p99: f64| {
        if p99 <= SINGLE_SERVER_P99 {
            "within it".to_string()
        } else {
            "above it".to_string()
        }
    };
    let latency_row = |what: String, p: Latency| {
        vec![
            what,
            format!(
                "{} / **{}**",
                report::seconds(p.p50),
                report::seconds(p.p99)
            ),
            report::seconds(p.max),
            thousands(p.samples as f64),
            reference(p.p99),
        ]
    };
    let mut rows = Vec::new();
    for m in modes {
        rows.push(latency_row(
            format!(
                "**{}**: A's `set` called → B applied the event (B's `InvalidationReceived`), \
                 every write",
                m.channels.name()
            ),
            m.propagation,
        ));
        if let (Some(port), Some(direct)) = (m.b_node, m.direct) {
            rows.push(latency_row(
                format!(
                    "… {}: writes to the primary B subscribed on (port {port}): no bus hop",
                    m.channels.name()
                ),
                direct,
            ));
        }
        if let Some(over_bus) = m.over_bus {
            rows.push(latency_row(
                format!(
                    "… {}: writes to a primary other than B's node: the event crosses the \
                     cluster bus first",
                    m.channels.name()
                ),
                over_bus,
            ));
        }
    }
    rows.push(vec![
        "reference: the single-server goal (issue 14)".into(),
        format!("p99 ≤ {}", report::seconds(SINGLE_SERVER_P99)),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    let global = modes.iter().find(|m| m.channels == Channels::Global);
    let mut notes = Vec::new();
    if let Some(bus) = global.and_then(|m| m.over_bus) {
        let without_hop = global
            .and_then(|m| m.direct)
            .map_or("n/a".to_string(), percent_over);
        notes.push(format!(
            "The global channel's tail comes from the bus hop: {} of the writes to another \
             primary than B's node took over 10 ms (p99 {}), against {without_hop} of those to \
             B's node. This \
             matches Nagle's algorithm on the cluster bus: Redis 7.0 sets `TCP_NODELAY` only on \
             the bus connections a node accepts, not on those it opens (`clusterCron` → \
             `clusterLinkConnectHandler` in cluster.c), and it sends PUBLISH messages on the \
             link it opened (`node->link`), so a small message that follows one not yet \
             acknowledged waits for the peer's delayed ACK (up to 40 ms on Linux). Reported \
             upstream as redis/redis#11869 (30–40 ms when a PUBLISH is broadcast) and \
             valkey-io/valkey#1758 (TCP_NODELAY missing on outgoing cluster-bus connections). \
             Shard channels avoid it for a subscriber on the primary: the event goes from the \
             writer straight to B, and only the copy to the replica crosses the bus.",
            percent_over(bus),
            report::seconds(bus.p99)
        ));
    }
    report.sections.push(Section {
        title: "Cluster (3 primaries + 3 replicas): invalidation propagation".into(),
        intro: vec![format!(
            "The same cluster and handles, for each setting: handle A writes ({} writes after a \
             warm-up round) keys that handle B holds in L1, rotating over {} keys, {} per shard, \
             so that consecutive writes go to different shards. Timed as on one server: from \
             just before A's `set` is called (its round trip to the key's primary counts) until \
             B's event stream (`events()`) reports `InvalidationReceived`, awaited by a task of \
             a Tokio runtime with 2 worker threads; then B must read the new value before the \
             next write. Sharded, B receives each shard's events from that shard's primary; \
             global, from its one node, so the events of the other primaries cross the cluster \
             bus first. No goal is set for the cluster; the single-server goal is shown for \
             reference.",
            thousands(cfg.cluster_propagation_writes as f64),
            cfg.cluster_propagation_keys * 3,
            cfg.cluster_propagation_keys
        )],
        header: [
            "measure",
            "p50 / p99",
            "max",
            "samples",
            "vs the reference (p99)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        charts: vec![],
        notes,
    });
}

/// The share of samples over 10 ms, as text ("8.1%").
fn percent_over(latency: Latency) -> String {
    format!("{:.1}%", latency.over_10ms * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_tests::key_slot;

    #[test]
    fn spread_keys_land_in_the_slots_they_are_named_for() {
        let slots: Vec<u16> = (5461..=10922).collect();
        let keys = spread_keys("cb:1:", &slots, 1_000);
        assert_eq!(keys.len(), 1_000);
        for (j, key) in keys.iter().enumerate() {
            assert_eq!(key_slot(key), slots[j * slots.len() / 1_000], "{key}");
        }
        assert_eq!(key_slot(&keys[0]), 5461);
        assert!(key_slot(&keys[999]) > 10_900);
    }

    #[test]
    fn bus_counters_parse_types_and_skip_totals() {
        let before = BusCounters::parse(
            "cluster_state:ok\r\ncluster_stats_messages_ping_sent:10\r\n\
             cluster_stats_messages_publish_sent:4\r\ncluster_stats_messages_sent:14\r\n\
             cluster_stats_messages_publishshard_received:2\r\n\
             cluster_stats_messages_received:2\r\n",
        );
        let after = BusCounters::parse(
            "cluster_stats_messages_ping_sent:13\r\ncluster_stats_messages_publish_sent:9\r\n\
             cluster_stats_messages_pong_sent:1\r\ncluster_stats_messages_sent:23\r\n\
             cluster_stats_messages_publishshard_received:7\r\n\
             cluster_stats_messages_received:7\r\n",
        );
        let delta = after.since(&before);
        assert_eq!(delta.sent_events(), 5);
        assert_eq!(delta.sent_all(), 9);
        assert_eq!(delta.received_events(), 5);
        assert_eq!(delta.received_all(), 5);
        assert!(delta.bytes.is_empty());
        assert_eq!(
            after.sent_all(),
            23,
            "the per-type counts add up to the total"
        );
    }

    #[test]
    fn bytes_estimate_uses_the_redis_7_publish_message_size() {
        let t = Traffic {
            writes: 10,
            published: 10,
            inside: BusCounters {
                sent: [("publish".to_string(), 10)].into(),
                ..BusCounters::default()
            },
            outside: BusCounters {
                sent: [("publish".to_string(), 40), ("ping".to_string(), 3)].into(),
                ..BusCounters::default()
            },
            witnessed: Witnessed {
                messages: 10,
                changes: 10,
                bytes: 10 * 336,
                undecodable: 0,
            },
            elapsed: Duration::from_millis(1),
        };
        assert_eq!(t.copies(), 5.0);
        assert_eq!(t.bus_message_bytes(), 2_600.0);
        assert_eq!(t.bytes_per_write(), 13_000.0);
        assert_eq!(per(0.0626), "0.063");
        assert_eq!(per(5.0), "5.00");
        assert_eq!(per(13_000.0), "13,000");
    }
}
