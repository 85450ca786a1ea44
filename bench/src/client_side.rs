//! Client side: the `hybridcache` crate against a server with the module. L1 hit latency,
//! get_or_set throughput with and without L1, invalidation propagation between two handles,
//! and how many events one handle absorbs per second.

use crate::config::Config;
use crate::fill::{self, Scheme};
use crate::report::{
    self, duration, ratio_spread, thousands, verdict, Goal, GoalCheck, Report, Section,
};
use crate::servers::{flushall, with_module};
use crate::stats::{median, percentile, ratios, Spread};
use hybridcache::{CacheEvent, EntryOptions, HybridCache};
use hybridcache_protocol::{command, MessageWriter, Names, Op, DEFAULT_CHANNEL};
use hybridcache_tests::client_support::SplitMix64;
use hybridcache_tests::RedisServer;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// The typed value of the client benchmarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u32,
    name: String,
    price_cents: u64,
    in_stock: bool,
}

fn product(id: u32) -> Product {
    Product {
        id,
        name: format!("product {id}"),
        price_cents: 1999,
        in_stock: true,
    }
}

/// Goal of changes absorbed per second by one handle (the issue's).
const ABSORBED_GOAL: f64 = 500_000.0;

/// Goal of the L1 hit latency p50 of a typed value, in seconds (issue 15's).
const L1_HIT_GOAL: f64 = 150e-9;

/// Namespace of the handle whose L1 hits are timed against those of a handle without one.
const NAMESPACE: &str = "shop:";

/// How long one propagation or flood may take before the run fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

async fn handle(server: &RedisServer) -> HybridCache {
    handle_with(server, false).await
}

/// A cache handle; `racy`: its fills are written unconditionally (the baseline that
/// conditional fills are measured against).
async fn handle_with(server: &RedisServer, racy: bool) -> HybridCache {
    let mut builder = HybridCache::builder(server.url())
        .l1_max_entries(1_000_000)
        .default_options(EntryOptions::new().ttl(Duration::from_secs(3600)));
    if racy {
        builder = builder.racy_unconditional_fills_for_benchmarks();
    }
    builder
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot build a cache handle: {e}"))
}

/// What a get_or_set throughput run asks for.
#[derive(Debug, Clone, Copy)]
struct Workload<'a> {
    /// Part of the fresh keys' names, so that runs never share a key.
    label: &'a str,
    skip_l1: bool,
    /// One call in this many asks for a key never seen (1: every call misses).
    fresh_every: u64,
}

/// p50 and p99 of a sample, in seconds.
fn p50_p99(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    (
        percentile(&samples, 0.50).as_secs_f64(),
        percentile(&samples, 0.99).as_secs_f64(),
    )
}

/// Per-round p50 and p99 of one latency measure.
#[derive(Debug, Default, Clone)]
struct Latency {
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Latency {
    fn push(&mut self, samples: Vec<Duration>) -> (f64, f64) {
        let (p50, p99) = p50_p99(samples);
        self.p50.push(p50);
        self.p99.push(p99);
        (p50, p99)
    }

    fn show(&self) -> String {
        format!(
            "{} / {}",
            report::seconds(median(&self.p50)),
            report::seconds(median(&self.p99))
        )
    }
}

/// What an attempt to use the redis crate's client-side cache (RESP3 tracking) gave.
enum RedisCache {
    Works(Latency),
    Failed(String),
}

/// The cost of timing one operation (two `Instant::now()`), median of many.
fn timer_overhead() -> Duration {
    let mut samples: Vec<Duration> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed()
        })
        .collect();
    samples.sort_unstable();
    percentile(&samples, 0.5)
}

async fn l1_hits(cache: &HybridCache, reads: usize) -> Vec<Duration> {
    let key = "l1:product";
    cache
        .set(key, product(7), EntryOptions::new().tags(["products"]))
        .await
        .unwrap_or_else(|e| panic!("set failed: {e}"));
    let before = cache.stats().l1_hits;
    for _ in 0..reads / 10 {
        let _ = cache.get::<Product>(key).await;
    }
    let mut samples = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        let hit = cache.get::<Product>(key).await;
        samples.push(t.elapsed());
        assert!(
            matches!(hit, Ok(Some(_))),
            "the L1 read found nothing: {hit:?}"
        );
    }
    let hits = cache.stats().l1_hits - before;
    assert_eq!(
        hits as usize,
        reads + reads / 10,
        "some reads were not L1 hits"
    );
    samples
}

async fn round_trips(
    server: &RedisServer,
    command: &str,
    key: &str,
    reads: usize,
) -> Vec<Duration> {
    let mut con = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    let mut samples = Vec::with_capacity(reads);
    for i in 0..reads + reads / 10 {
        let t = Instant::now();
        let value: Option<Vec<u8>> = redis::cmd(command)
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap_or_else(|e| panic!("{command} failed: {e}"));
        let elapsed = t.elapsed();
        assert!(value.is_some(), "{command} {key} found nothing");
        if i >= reads / 10 {
            samples.push(elapsed);
        }
    }
    samples
}

/// Hits in the redis crate's own client-side cache (feature `cache-aio`, RESP3 tracking),
/// decoded to the same struct as the L1 values.
async fn redis_cache_hits(
    server: &RedisServer,
    key: &str,
    reads: usize,
) -> Result<Vec<Duration>, String> {
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url()))
        .map_err(|e| e.to_string())?;
    let config =
        redis::AsyncConnectionConfig::new().set_cache_config(redis::caching::CacheConfig::new());
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("connecting with a cache config failed: {e}"))?;
    let first: Vec<u8> = con.get(key).await.map_err(|e| format!("GET failed: {e}"))?;
    serde_json::from_slice::<Product>(&first).map_err(|e| e.to_string())?;
    let before = con.get_cache_statistics().ok_or("no cache statistics")?;
    let mut samples = Vec::with_capacity(reads);
    for i in 0..reads + reads / 10 {
        let t = Instant::now();
        let bytes: Vec<u8> = con.get(key).await.map_err(|e| format!("GET failed: {e}"))?;
        let value: Product = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let elapsed = t.elapsed();
        std::hint::black_box(value);
        if i >= reads / 10 {
            samples.push(elapsed);
        }
    }
    let after = con.get_cache_statistics().ok_or("no cache statistics")?;
    let hits = after.hit - before.hit;
    if hits < reads {
        return Err(format!(
            "only {hits} of {} reads were cache hits (misses {}): the cache does not serve on this server",
            reads + reads / 10,
            after.miss - before.miss
        ));
    }
    Ok(samples)
}

/// ops/s and L1 hit ratio of `tasks` concurrent get_or_set loops for `cfg.gos_duration`: hot
/// keys (cached) except one call in `fresh_every`, which asks for a key never seen.
async fn get_or_set_rate(
    cfg: &Config,
    cache: &HybridCache,
    workload: Workload<'_>,
    round: usize,
) -> (f64, f64) {
    let Workload {
        label,
        skip_l1,
        fresh_every,
    } = workload;
    let hot: Arc<Vec<String>> = Arc::new(
        (0..cfg.gos_hot_keys)
            .map(|i| format!("gos:hot:{i}"))
            .collect(),
    );
    let options = EntryOptions::new().tags(["gos"]).skip_l1(skip_l1);
    let before = cache.stats();
    let started = Instant::now();
    let deadline = started + cfg.gos_duration;
    let tasks: Vec<_> = (0..cfg.gos_tasks)
        .map(|task| {
            let (cache, hot, options) = (cache.clone(), hot.clone(), options.clone());
            let label = label.to_string();
            tokio::spawn(async move {
                let mut rng = SplitMix64::new((round * 1000 + task) as u64);
                let mut ops: u64 = 0;
                while Instant::now() < deadline {
                    for _ in 0..32 {
                        ops += 1;
                        let fresh;
                        let key: &str = if ops % fresh_every == 0 {
                            fresh = format!("gos:fresh:{label}:{skip_l1}:{round}:{task}:{ops}");
                            &fresh
                        } else {
                            &hot[rng.below(hot.len() as u64) as usize]
                        };
                        let id = ops as u32;
                        let value = cache
                            .get_or_set(
                                key,
                                move || async move { Ok::<_, Infallible>(product(id)) },
                                options.clone(),
                            )
                            .await
                            .unwrap_or_else(|e| panic!("get_or_set failed: {e}"));
                        std::hint::black_box(value);
                    }
                }
                ops
            })
        })
        .collect();
    let mut ops = 0;
    for task in tasks {
        ops += task
            .await
            .unwrap_or_else(|e| panic!("a get_or_set task failed: {e}"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = cache.stats();
    let hits = (after.l1_hits - before.l1_hits) as f64 / ops as f64;
    (ops as f64 / elapsed, hits)
}

/// Worker threads of the runtimes the L1 hit throughput is measured on.
const SCALING_WORKERS: [usize; 3] = [1, 2, 4];

/// get_or_set ops/s of `cfg.gos_tasks` tasks on a runtime of their own with `workers` worker
/// threads, every call on a hot key (all in L1), with `cache` (built on the main runtime).
fn hits_on_workers(cfg: &Config, cache: &HybridCache, workers: usize, round: usize) -> f64 {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("cannot start a Tokio runtime: {e}"));
                let workload = Workload {
                    label: "scaling",
                    skip_l1: false,
                    fresh_every: u64::MAX,
                };
                let (rate, hits) = runtime.block_on(get_or_set_rate(cfg, cache, workload, round));
                assert!(hits >= 0.999, "L1 hits {:.2}% only", hits * 100.0);
                rate
            })
            .join()
            .unwrap_or_else(|_| panic!("the scaling run on {workers} workers failed"))
    })
}

/// Waits a moment between two polls without taking a core away from the server and the
/// handle's subscription task for long (this runs on the runtime's `block_on` thread, not a
/// worker): spins for the first 20 µs of a wait, then sleeps 20 µs at a time.
fn pause(waiting_since: Instant) {
    if waiting_since.elapsed() < POLL_SPIN {
        std::hint::spin_loop();
    } else {
        std::thread::sleep(POLL_SPIN);
    }
}

/// See [`pause`].
const POLL_SPIN: Duration = Duration::from_micros(20);

/// Propagation samples: from just before A's `set` is called until B has applied the
/// event (`until_event`: B's [`CacheEvent::InvalidationReceived`], awaited on its event
/// stream), or until B.get returns the new value (polled).
async fn propagation(
    a: HybridCache,
    b: HybridCache,
    writes: usize,
    until_event: bool,
    round: usize,
) -> Vec<Duration> {
    let key = if until_event {
        "prop:event"
    } else {
        "prop:value"
    };
    let mut events = b.events();
    let mut samples = Vec::with_capacity(writes);
    let base = (round * writes * 10) as u64;
    for i in 0..writes {
        let version = base + i as u64;
        // B holds the key in L1 (read from Redis after the previous invalidation).
        let held = b
            .get::<u64>(key)
            .await
            .unwrap_or_else(|e| panic!("B.get failed: {e}"));
        if i > 0 {
            assert_eq!(
                held.as_deref(),
                Some(&(version - 1)),
                "B read a stale value"
            );
        }
        // What B's stream holds so far (its reads' hits and misses) is not the write's.
        while !matches!(events.try_recv(), Err(TryRecvError::Empty)) {}
        let received = b.stats().events_received;
        let started = Instant::now();
        let deadline = started + DELIVERY_TIMEOUT;
        a.set(key, version, EntryOptions::new())
            .await
            .unwrap_or_else(|e| panic!("A.set failed: {e}"));
        if until_event {
            loop {
                let next = tokio::time::timeout_at(deadline.into(), events.recv()).await;
                match next {
                    Ok(Ok(CacheEvent::InvalidationReceived)) => break,
                    Ok(Ok(_)) => {}
                    // Fell behind B's stream: the counter says whether the event came.
                    Ok(Err(RecvError::Lagged(_))) if b.stats().events_received > received => break,
                    Ok(Err(RecvError::Lagged(_))) => {}
                    Ok(Err(RecvError::Closed)) => panic!("B's event stream closed"),
                    Err(_) => panic!("no invalidation reached B within {DELIVERY_TIMEOUT:?}"),
                }
            }
        } else {
            loop {
                let seen = b
                    .get::<u64>(key)
                    .await
                    .unwrap_or_else(|e| panic!("B.get failed: {e}"));
                if seen.as_deref() == Some(&version) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "B did not read the new value within {DELIVERY_TIMEOUT:?}"
                );
                pause(started);
            }
        }
        samples.push(started.elapsed());
        assert!(
            b.stats().events_received > received,
            "B's counters do not show the event"
        );
        // Before the next write, B serves the new value (read from Redis into L1).
        while b
            .get::<u64>(key)
            .await
            .unwrap_or_else(|e| panic!("B.get failed: {e}"))
            .as_deref()
            != Some(&version)
        {
            assert!(Instant::now() < deadline, "B kept serving a stale value");
            pause(started);
        }
    }
    samples
}

/// What one flood gave.
#[derive(Debug, Clone, Copy)]
struct Flood {
    /// Changes per second the handle applied, from the first write until its last change.
    absorbed: f64,
    /// Changes per second the producers sent, from the first write until the last reply.
    produced: f64,
    /// How long after the producers' last reply the handle had applied every change.
    behind: Duration,
}

/// Where a flood's changes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Pipelined HC.SET of distinct keys from `flood_producers` plain connections at once,
    /// each on its own thread: the module publishes them, batched per event-loop turn. The
    /// server's write rate bounds the flood.
    Writes,
    /// The same changes as messages built beforehand, exactly as the module writes them
    /// (`MessageWriter`, split at the module's `hybridcache.event-message-bytes`), under an
    /// origin of their own numbered from 1, PUBLISHed in order from one pipelined
    /// connection: publishing costs the server a fraction of the writes, so the handle
    /// sets the pace.
    Messages,
}

/// The module's largest message (`hybridcache.event-message-bytes`).
fn message_bytes(con: &mut redis::Connection) -> usize {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hybridcache.event-message-bytes")
        .query(con)
        .unwrap_or_else(|e| panic!("CONFIG GET failed: {e}"));
    reply
        .get(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no hybridcache.event-message-bytes in {reply:?}"))
}

/// `set` changes of keys `keys`, numbered from 1, in messages split as the module splits
/// them: a message goes out once it reaches `max_bytes`.
fn set_messages(origin: &str, keys: Range<u64>, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut writer = MessageWriter::new(origin);
    let mut messages = Vec::new();
    for (seq, i) in (1..).zip(keys) {
        let key = fill::key(i);
        writer.push(seq, Some(0), Op::Set, Names::Keys([key.as_bytes()]));
        if writer.byte_len() >= max_bytes {
            messages.push(writer.take());
        }
    }
    if !writer.is_empty() {
        messages.push(writer.take());
    }
    messages
}

/// Floods the channel with `n` changes of distinct keys from `source`, with `cache` the
/// only handle subscribed. Counts changes (the handle's `events_received` counts each
/// change of a message).
async fn flood(
    server: &RedisServer,
    cache: &HybridCache,
    n: u64,
    producers: u64,
    round: u64,
    source: Source,
) -> Flood {
    let mut con = server.connection();
    let flushed = cache.stats().events_received;
    flushall(&mut con);
    // The flush's own change in before counting.
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while cache.stats().events_received == flushed {
        assert!(Instant::now() < deadline, "the handle missed the flush");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let producers = if source == Source::Writes {
        producers
    } else {
        1
    };
    let per_producer = n / producers;
    let n = per_producer * producers;
    let first_key = |p: u64| (round * producers + p) * per_producer;
    let messages = (source == Source::Messages).then(|| {
        // An origin per round: a handle takes a known origin's repeated numbers as repeats.
        let origin = format!("f100d{round:011x}");
        set_messages(
            &origin,
            first_key(0)..first_key(0) + n,
            message_bytes(&mut con),
        )
    });
    let before = cache.stats();
    let started = Instant::now();
    let threads: Vec<_> = match messages {
        None => (0..producers)
            .map(|p| {
                let mut con = server.connection();
                let first = first_key(p);
                std::thread::spawn(move || {
                    let value = fill::value(16);
                    fill::fill(
                        &mut con,
                        Scheme::Module,
                        first..first + per_producer,
                        &value,
                        |_| Vec::new(),
                    );
                    Instant::now()
                })
            })
            .collect(),
        Some(messages) => vec![std::thread::spawn(move || {
            for chunk in messages.chunks(64) {
                let mut pipe = redis::pipe();
                for message in chunk {
                    pipe.cmd("PUBLISH")
                        .arg(DEFAULT_CHANNEL)
                        .arg(message.as_slice())
                        .ignore();
                }
                pipe.query::<()>(&mut con)
                    .unwrap_or_else(|e| panic!("PUBLISH failed: {e}"));
            }
            Instant::now()
        })],
    };
    let deadline = started + DELIVERY_TIMEOUT;
    while cache.stats().events_received < before.events_received + n {
        assert!(
            Instant::now() < deadline,
            "the handle received {} of {n} changes within {DELIVERY_TIMEOUT:?}",
            cache.stats().events_received - before.events_received
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let absorbed = Instant::now();
    let produced = threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| panic!("a flood producer panicked"))
        })
        .max()
        .unwrap_or(started);
    let after = cache.stats();
    assert_eq!(
        (after.l1_flushes, after.events_received),
        (before.l1_flushes, before.events_received + n),
        "the handle missed changes during the flood, or got others"
    );
    let secs = |t: Instant| t.duration_since(started).as_secs_f64();
    Flood {
        absorbed: n as f64 / secs(absorbed),
        produced: n as f64 / secs(produced),
        behind: absorbed.saturating_duration_since(produced),
    }
}

/// Per-round results of the floods of one source.
#[derive(Debug, Default)]
struct Floods {
    absorbed: Vec<f64>,
    produced: Vec<f64>,
    behind: Vec<f64>,
}

impl Floods {
    fn push(&mut self, f: Flood) {
        self.absorbed.push(f.absorbed);
        self.produced.push(f.produced);
        self.behind.push(f.behind.as_secs_f64());
    }
}

/// Runs the client-side parts (`client`: latencies, get_or_set, propagation, flood;
/// `replay`: the outage scenario) on a server of their own and adds their sections.
pub fn client_side(cfg: &Config, module: &Path, client: bool, replay: bool, report: &mut Report) {
    let server = with_module(module);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a Tokio runtime: {e}"));
    runtime.block_on(async {
        if client {
            client_parts(cfg, &server, report).await;
        }
        if replay {
            crate::replay::replay(cfg, &server, report).await;
        }
    });
}

/// Latencies, get_or_set, propagation and the flood, over `cfg.rounds`.
async fn client_parts(cfg: &Config, server: &RedisServer, report: &mut Report) {
    let overhead = timer_overhead();
    // The handle of every part but propagation, which makes two of its own per round, so
    // that only one handle is subscribed during the flood.
    let c = handle(server).await;
    let mut con = server.connection();
    let plain_key = "plain:product";
    let json = serde_json::to_vec(&product(7)).unwrap_or_default();
    let _: () = redis::cmd("SET")
        .arg(plain_key)
        .arg(&json)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("SET failed: {e}"));
    let hc_key = "hc:product";
    let _: () = redis::cmd(command::SET)
        .arg(hc_key)
        .arg(&json)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("HC.SET failed: {e}"));

    let (mut l1, mut hc_get, mut get) =
        (Latency::default(), Latency::default(), Latency::default());
    let mut l1_namespaced = Latency::default();
    let namespaced = c.named(
        "namespaced",
        NAMESPACE,
        EntryOptions::new().ttl(Duration::from_secs(3600)),
        1_000_000,
    );
    let mut redis_cache = RedisCache::Works(Latency::default());
    let (mut gos_l1, mut gos_l2, mut gos_hits) = (Vec::new(), Vec::new(), Vec::new());
    let mut scaling: Vec<Vec<f64>> = vec![Vec::new(); SCALING_WORKERS.len()];
    let (mut prop_event, mut prop_value) = (Latency::default(), Latency::default());
    let (mut written, mut published) = (Floods::default(), Floods::default());
    let (mut miss_conditional, mut miss_racy) = (Vec::new(), Vec::new());
    for round in 0..cfg.rounds {
        let r = format!("client round {}/{}", round + 1, cfg.rounds);
        let (p50, p99) = l1.push(l1_hits(&c, cfg.l1_reads).await);
        say!(
            "{r}: L1 hit p50 {} p99 {}",
            report::seconds(p50),
            report::seconds(p99)
        );
        let (p50, p99) = l1_namespaced.push(l1_hits(&namespaced, cfg.l1_reads).await);
        say!(
            "{r}: L1 hit, namespace {NAMESPACE:?}, p50 {} p99 {}",
            report::seconds(p50),
            report::seconds(p99)
        );
        let (p50, p99) =
            hc_get.push(round_trips(server, command::GET, hc_key, cfg.rtt_reads).await);
        say!(
            "{r}: HC.GET round trip p50 {} p99 {}",
            report::seconds(p50),
            report::seconds(p99)
        );
        let (p50, p99) = get.push(round_trips(server, "GET", plain_key, cfg.rtt_reads).await);
        say!(
            "{r}: GET round trip p50 {} p99 {}",
            report::seconds(p50),
            report::seconds(p99)
        );
        if let RedisCache::Works(latency) = &mut redis_cache {
            match redis_cache_hits(server, plain_key, cfg.l1_reads).await {
                Ok(samples) => {
                    let (p50, p99) = latency.push(samples);
                    say!(
                        "{r}: redis cache-aio hit p50 {} p99 {}",
                        report::seconds(p50),
                        report::seconds(p99)
                    );
                }
                Err(e) => {
                    say!("{r}: redis cache-aio: {e}");
                    redis_cache = RedisCache::Failed(e);
                }
            }
        }

        // Every hot key in Redis and in L1.
        let hot_options = EntryOptions::new().tags(["gos"]);
        for i in 0..cfg.gos_hot_keys {
            let key = format!("gos:hot:{i}");
            let id = i as u32;
            let _ = c
                .get_or_set(
                    &key,
                    move || async move { Ok::<_, Infallible>(product(id)) },
                    hot_options.clone(),
                )
                .await;
        }
        let modes = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for skip_l1 in modes {
            let workload = Workload {
                label: "hot",
                skip_l1,
                fresh_every: cfg.gos_fresh_every,
            };
            let (rate, hits) = get_or_set_rate(cfg, &c, workload, round).await;
            say!(
                "{r}: get_or_set {} {} ops/s (L1 hits {:.1}%)",
                if skip_l1 { "without L1" } else { "with L1   " },
                thousands(rate),
                hits * 100.0
            );
            if skip_l1 {
                gos_l2.push(rate);
            } else {
                gos_l1.push(rate);
                gos_hits.push(hits);
            }
        }
        for (rates, workers) in scaling.iter_mut().zip(SCALING_WORKERS) {
            let rate = hits_on_workers(cfg, &c, workers, round);
            say!(
                "{r}: get_or_set, L1 hits only, {workers} worker thread(s): {} ops/s",
                thousands(rate)
            );
            rates.push(rate);
        }

        {
            let a = handle(server).await;
            let b = handle(server).await;
            let writes = cfg.propagation_writes;
            for until_event in [true, false] {
                let measure = propagation(a.clone(), b.clone(), writes, until_event, round);
                // Awaiting B's event: a task of the runtime, as an application's code. Polling
                // B.get (which sleeps between polls): on this thread, not a worker's.
                let samples = if until_event {
                    tokio::spawn(measure)
                        .await
                        .unwrap_or_else(|e| panic!("the propagation task failed: {e}"))
                } else {
                    measure.await
                };
                let (latency, what) = if until_event {
                    (&mut prop_event, "event")
                } else {
                    (&mut prop_value, "new value")
                };
                let (p50, p99) = latency.push(samples);
                say!(
                    "{r}: propagation to B's {what} p50 {} p99 {}",
                    report::seconds(p50),
                    report::seconds(p99)
                );
            }
        }

        {
            let racy = handle_with(server, true).await;
            let order: [bool; 2] = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for conditional in order {
                let (cache, label) = if conditional {
                    (&c, "conditional")
                } else {
                    (&racy, "unconditional")
                };
                let refused = cache.stats().fills_refused;
                let workload = Workload {
                    label,
                    skip_l1: false,
                    fresh_every: 1,
                };
                let (rate, _) = get_or_set_rate(cfg, cache, workload, round).await;
                assert_eq!(
                    cache.stats().fills_refused,
                    refused,
                    "{label}: fills of keys nobody else touches were refused"
                );
                say!(
                    "{r}: get_or_set misses only, {label} fills: {} ops/s",
                    thousands(rate)
                );
                if conditional {
                    miss_conditional.push(rate)
                } else {
                    miss_racy.push(rate)
                }
            }
        }

        let sources = if round % 2 == 0 {
            [Source::Writes, Source::Messages]
        } else {
            [Source::Messages, Source::Writes]
        };
        for source in sources {
            let f = flood(
                server,
                &c,
                cfg.flood_events,
                cfg.flood_producers,
                (2 * round + usize::from(source == Source::Messages)) as u64,
                source,
            )
            .await;
            say!(
                    "{r}: flood of {} changes ({}): handle absorbed {} changes/s (producers {} changes/s, done {} after them)",
                    thousands(cfg.flood_events as f64),
                    if source == Source::Writes { "HC.SET" } else { "published messages" },
                    thousands(f.absorbed),
                    thousands(f.produced),
                    duration(f.behind)
                );
            match source {
                Source::Writes => written.push(f),
                Source::Messages => published.push(f),
            }
        }
        // The flood's keys out, the fixtures back for the next round.
        let _: () = redis::cmd("SET")
            .arg(plain_key)
            .arg(&json)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("SET failed: {e}"));
        let _: () = redis::cmd(command::SET)
            .arg(hc_key)
            .arg(&json)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("HC.SET failed: {e}"));
    }

    let l1_p50 = median(&l1.p50);
    let l1_met = Goal::AtMost(L1_HIT_GOAL).met(l1_p50);
    report.goals.push(GoalCheck {
        what: "L1 hit latency p50 (typed value)".into(),
        value: report::seconds(l1_p50),
        goal: format!("≤ {}", report::seconds(L1_HIT_GOAL)),
        met: l1_met,
    });
    let mut rows = Vec::new();
    let latency_row = |name: &str, base: &Latency, goal: bool| {
        vec![
            "L1 hit latency p50 / p99 (`get::<Product>`)".to_string(),
            l1.show(),
            name.to_string(),
            base.show(),
            ratio_spread(Spread::of(&ratios(&l1.p50, &base.p50))),
            if goal {
                format!("p50 ≤ {}", report::seconds(L1_HIT_GOAL))
            } else {
                "—".into()
            },
            if goal { verdict(l1_met) } else { "—".into() },
        ]
    };
    rows.push(latency_row("HC.GET round trip", &hc_get, true));
    rows.push(latency_row("GET round trip", &get, false));
    match &redis_cache {
            RedisCache::Works(latency) => rows.push(latency_row(
                "hit in the redis crate's client-side cache (`cache-aio`, RESP3 tracking) + JSON decode",
                latency,
                false,
            )),
            RedisCache::Failed(why) => rows.push(vec![
                "L1 hit latency p50 / p99".into(),
                l1.show(),
                "redis crate's client-side cache (`cache-aio`)".into(),
                format!("failed: {why}"),
                "n/a".into(),
                "—".into(),
                "—".into(),
            ]),
        }
    rows.push(vec![
        format!(
            "L1 hit latency p50 / p99 (`get::<Product>`), a cache with namespace `{NAMESPACE}`"
        ),
        l1_namespaced.show(),
        "same, the cache without a namespace".into(),
        l1.show(),
        ratio_spread(Spread::of(&ratios(&l1_namespaced.p50, &l1.p50))),
        "—".into(),
        "—".into(),
    ]);
    let gos = Spread::of(&ratios(&gos_l1, &gos_l2));
    let gos_met = Goal::AtLeast(25.0).met(gos.median);
    report.goals.push(GoalCheck {
        what: "get_or_set throughput with L1 ÷ without".into(),
        value: report::ratio(gos.median),
        goal: "≥ 25×".into(),
        met: gos_met,
    });
    rows.push(vec![
        format!(
            "get_or_set ops/s, {} tasks, {:.0}% of calls on {} cached keys (L1 hits {:.1}%)",
            cfg.gos_tasks,
            100.0 - 100.0 / cfg.gos_fresh_every as f64,
            thousands(cfg.gos_hot_keys as f64),
            median(&gos_hits) * 100.0
        ),
        thousands(median(&gos_l1)),
        "same workload, `EntryOptions::skip_l1(true)`".into(),
        thousands(median(&gos_l2)),
        ratio_spread(gos),
        "≥ 25×".into(),
        verdict(gos_met),
    ]);
    for (rates, workers) in scaling.iter().zip(SCALING_WORKERS).skip(1) {
        rows.push(vec![
            format!(
                "get_or_set ops/s, {} tasks, L1 hits only (1,000 hot keys), a runtime of {workers} worker threads",
                cfg.gos_tasks
            ),
            thousands(median(rates)),
            "same, 1 worker thread".into(),
            thousands(median(&scaling[0])),
            ratio_spread(Spread::of(&ratios(rates, &scaling[0]))),
            "—".into(),
            "—".into(),
        ]);
    }
    let fills = Spread::of(&ratios(&miss_conditional, &miss_racy));
    let fills_met = Goal::AtLeast(0.9).met(fills.median);
    report.goals.push(GoalCheck {
        what: "get_or_set, misses only: conditional fills ÷ unconditional".into(),
        value: report::ratio(fills.median),
        goal: "≥ 0.9×".into(),
        met: fills_met,
    });
    rows.push(vec![
            format!(
                "get_or_set ops/s, {} tasks, every call a miss (`HC.FETCH … LEASE`, factory, `HC.SET … LEASE`)",
                cfg.gos_tasks
            ),
            thousands(median(&miss_conditional)),
            "same, fills read with `HC.FETCH` and written without a lease (the racy way)".into(),
            thousands(median(&miss_racy)),
            ratio_spread(fills),
            "≥ 0.9×".into(),
            verdict(fills_met),
        ]);
    let prop_p99 = median(&prop_event.p99);
    let prop_met = Goal::AtMost(1e-3).met(prop_p99);
    report.goals.push(GoalCheck {
        what: "invalidation propagation p99, one server (A's write called → B applied the event)"
            .into(),
        value: report::seconds(prop_p99),
        goal: "≤ 1 ms".into(),
        met: prop_met,
    });
    rows.push(vec![
            "invalidation propagation p50 / p99: A's `set` called → B has applied the event (B's `InvalidationReceived`)".into(),
            prop_event.show(),
            "—".into(),
            "—".into(),
            "—".into(),
            "p99 ≤ 1 ms".into(),
            verdict(prop_met),
        ]);
    rows.push(vec![
            "invalidation propagation p50 / p99: A's `set` called → B.get returns the new value (includes B's read from Redis)".into(),
            prop_value.show(),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
        ]);
    let rate = median(&published.absorbed);
    let rate_met = Goal::AtLeast(ABSORBED_GOAL).met(rate);
    report.goals.push(GoalCheck {
        what: "events absorbed by one handle (changes per second)".into(),
        value: format!(
            "{}/s (with HC.SET writes: {}/s, the server's pace)",
            thousands(rate),
            thousands(median(&written.absorbed))
        ),
        goal: format!("≥ {}/s", thousands(ABSORBED_GOAL)),
        met: rate_met,
    });
    rows.push(vec![
        format!(
            "changes absorbed per second by one handle: {} changes published as the module's \
                 messages, as fast as the handle takes them",
            thousands(cfg.flood_events as f64)
        ),
        format!("{}/s", thousands(rate)),
        "publisher's rate (one pipelined connection, PUBLISH of the ready messages)".into(),
        format!("{}/s", thousands(median(&published.produced))),
        ratio_spread(Spread::of(&ratios(
            &published.absorbed,
            &published.produced,
        ))),
        format!("≥ {}/s", thousands(ABSORBED_GOAL)),
        verdict(rate_met),
    ]);
    rows.push(vec![
        format!(
            "changes absorbed per second by one handle: {} HC.SET writes (the module batches \
                 their changes)",
            thousands(cfg.flood_events as f64)
        ),
        format!("{}/s", thousands(median(&written.absorbed))),
        format!(
            "producers' rate ({} connections of pipelined HC.SET: the server's write rate)",
            cfg.flood_producers
        ),
        format!("{}/s", thousands(median(&written.produced))),
        ratio_spread(Spread::of(&ratios(&written.absorbed, &written.produced))),
        "—".into(),
        "—".into(),
    ]);
    report.sections.push(Section {
            title: "Client side (crate `hybridcache`)".into(),
            intro: vec![
                format!(
                    "One server with the module, handles built with default settings (JSON, RESP3) and a \
                     1M-entry L1, a Tokio runtime with 2 worker threads; {} rounds. The typed value is a \
                     small struct (`{{id, name, price_cents, in_stock}}`, {} bytes as JSON).",
                    cfg.rounds,
                    json.len()
                ),
                format!(
                    "- Latencies: {} timed L1 hits (on the handle, then on a cache `named` from it \
                     with a namespace) and {} timed round trips (sequential, one multiplexed \
                     connection) per round after a warm-up; each sample includes the timer's own \
                     cost ({}).",
                    thousands(cfg.l1_reads as f64),
                    thousands(cfg.rtt_reads as f64),
                    duration(overhead)
                ),
                format!(
                    "- get_or_set: {} tasks calling for {} per run; {} hot keys are in Redis and L1 \
                     before the run; one call in {} asks for a fresh key (HC.FETCH miss, factory, \
                     HC.SET with a tag). Baseline: the same calls with `skip_l1(true)`, so every call \
                     reads Redis (HC.FETCH, over the handle's one multiplexed connection).",
                    cfg.gos_tasks,
                    duration(cfg.gos_duration),
                    thousands(cfg.gos_hot_keys as f64),
                    cfg.gos_fresh_every
                ),
                format!(
                    "- Scaling: the same tasks and hot keys, every call an L1 hit, on a runtime of \
                     its own with 1, 2 or 4 worker threads ({} CPUs on this machine, shared with the \
                     server and the main runtime).",
                    std::thread::available_parallelism().map_or(0, |n| n.get())
                ),
                format!(
                    "- Propagation: {} writes per round through handle A of a key handle B holds in \
                     L1, measured by a task on the runtime; timed from just before A's `set` is \
                     called (so the write's own round trip counts) until B's event stream \
                     (`events()`) reports `InvalidationReceived` for it, which B emits once it has \
                     applied the change to L1; the new-value row polls B.get instead (spinning for \
                     20 µs, then sleeping 20 µs between polls, so that the poller does not starve \
                     the server or B's subscription task on this machine's cores).",
                    cfg.propagation_writes
                ),
                format!(
                    "- Events, {} changes of distinct keys per flood, two floods per round with only \
                     one handle subscribed; rate = changes ÷ time from the first write until the \
                     handle's `events_received` (one per change, however the changes were batched \
                     into messages) counted them all. HC.SET flood: pipelines of {} from {} plain \
                     connections at once, each on its own thread; the handle was done {} after the \
                     producers' last reply (median), so the server's write rate, not the handle, set \
                     the pace. Published flood: the same changes written beforehand as the module \
                     writes them (`MessageWriter`, split at `hybridcache.event-message-bytes`, under \
                     an origin of their own numbered from 1) and PUBLISHed in order from one \
                     pipelined connection, which costs the server far less than the writes: the \
                     handle was done {} after the last PUBLISH reply (median), so the handle set the \
                     pace; that figure is the goal's.",
                    thousands(cfg.flood_events as f64),
                    fill::PIPELINE,
                    cfg.flood_producers,
                    report::seconds(median(&written.behind)),
                    report::seconds(median(&published.behind))
                ),
                "Ratio = measured ÷ baseline (for latencies, lower is better).".into(),
            ],
            header: ["measure", "measured", "baseline", "baseline value", "ratio", "goal", "met"]
                .map(String::from)
                .to_vec(),
            rows,
            charts: vec![],
            notes: vec![],
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_protocol::{decode_message, Change, Name};

    #[test]
    fn flood_messages_split_as_the_module_splits_and_number_every_change_once() {
        let max = 4096;
        let messages = set_messages("f100d00000000007", 10..2010, max);
        assert!(messages.len() > 1, "{} messages", messages.len());
        let mut seq = 0;
        for (n, message) in messages.iter().enumerate() {
            let changes = decode_message(message).unwrap();
            let last = n + 1 == messages.len();
            // Full once it reaches the limit: over it by less than one change.
            assert!(
                last || message.len() >= max,
                "message {n}: {} bytes",
                message.len()
            );
            assert!(
                message.len() < max + 100,
                "message {n}: {} bytes",
                message.len()
            );
            for change in changes {
                seq += 1;
                assert_eq!(
                    (change.origin.as_str(), change.seq),
                    ("f100d00000000007", seq)
                );
                assert_eq!(change.db, Some(0));
                assert_eq!(
                    change.change,
                    Change::Keys {
                        keys: vec![Name::from(fill::key(10 + seq - 1).as_str())]
                    }
                );
            }
        }
        assert_eq!(seq, 2000);
    }
}
