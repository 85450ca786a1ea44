//! Helpers for the end-to-end tests of the client crate (`hybridcache`): handles on a
//! harness server, bounded async polling, and reads that unwrap what they return.

use crate::server::RedisServer;
use hybridcache::{HybridCache, HybridCacheBuilder};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// How long an invalidation may take to reach another handle's L1 in these tests.
pub const DELIVERY: Duration = Duration::from_secs(2);

/// Interval between two polls of [`eventually`].
pub const ASYNC_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A builder for a handle on `server` that reconnects quickly (backoff at most 200 ms),
/// so that the fault tests recover within their deadlines.
pub fn builder(server: &RedisServer) -> HybridCacheBuilder {
    HybridCache::builder(server.url()).max_reconnect_backoff(Duration::from_millis(200))
}

/// A handle on `server` with [`builder`]'s settings.
///
/// # Panics
/// When the handle cannot be built.
pub async fn cache(server: &RedisServer) -> HybridCache {
    build(builder(server)).await
}

/// Builds a handle.
///
/// # Panics
/// When building fails (the message shows the error).
pub async fn build(builder: HybridCacheBuilder) -> HybridCache {
    builder
        .build()
        .await
        .unwrap_or_else(|e| panic!("the cache handle did not build: {e}"))
}

/// Awaits `check` until it returns true, every [`ASYNC_POLL_INTERVAL`].
///
/// # Panics
/// When `timeout` passes first; the message names `what`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(ASYNC_POLL_INTERVAL).await;
    }
}

/// `cache.get::<T>(key)`, which must succeed, with the value cloned out of its `Arc`.
///
/// # Panics
/// When the read fails (the message shows the error and the handle's stats).
pub async fn get_value<T>(cache: &HybridCache, key: &str) -> Option<T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    match cache.get::<T>(key).await {
        Ok(found) => found.as_deref().cloned(),
        Err(e) => panic!("get({key:?}) failed: {e}; {cache:?}"),
    }
}

/// The unsigned number in the environment variable `name`, or `default` when it is unset.
///
/// # Panics
/// When the variable is set but is not a `u64`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={text:?} is not a u64: {e}")),
        Err(_) => default,
    }
}

/// The seed of a randomized test: the environment variable `name` when set (to replay a
/// run), else one taken from the clock.
///
/// # Panics
/// When the variable is set but is not a `u64`.
pub fn seed_from_env(name: &str) -> u64 {
    match std::env::var(name) {
        Ok(_) => env_u64(name, 0),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// A small deterministic random number generator (SplitMix64), so that randomized tests
/// can print their seed and be replayed without an extra dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the tiny modulo bias does not matter for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The `hybridcache_events_total{cache, event}` counter in a debugging recorder's snapshot
/// (0 when it was never incremented).
///
/// # Panics
/// When the metric is not a counter.
pub fn events_total(
    snapshotter: &metrics_util::debugging::Snapshotter,
    cache: &str,
    event: &str,
) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            (key.name() == "hybridcache_events_total"
                && labels.contains(&("cache", cache))
                && labels.contains(&("event", event)))
            .then_some(value)
        })
        .map_or(0, |value| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            other => panic!("{event} is not a counter: {other:?}"),
        })
}
