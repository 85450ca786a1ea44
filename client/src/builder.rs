//! Building a [`HybridCache`].

use crate::cache::{CacheState, HybridCache};
use crate::circuit::CircuitBreaker;
use crate::connections::{self, Connections, Opened, Target};
use crate::error::{Error, Result};
use crate::event_feed::EventFeed;
use crate::events::Events;
use crate::format::Format;
use crate::hub::Hub;
use crate::l1::Capacity;
use crate::l2::L2;
use crate::local_tier::LocalTier;
use crate::options::EntryOptions;
use crate::outbox::Outbox;
use crate::server_check;
use crate::shard_subscription::ShardedSubscription;
use crate::subscription::{Subscription, Timing};
use hybridcache_protocol::DEFAULT_CHANNEL;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Configures a [`HybridCache`]; see [`HybridCache::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is awaited"]
pub struct HybridCacheBuilder {
    target: Result<Target>,
    capacity: Capacity,
    defaults: EntryOptions,
    namespace: String,
    channel: String,
    format: Format,
    timing: Timing,
    subscribe_timeout: Duration,
    command_timeout: Duration,
    name: String,
    circuit: Option<(u32, Duration)>,
    auto_recovery: usize,
    unconditional_fills: bool,
    clearable: bool,
}

impl HybridCacheBuilder {
    pub(crate) fn new(target: Result<Target>) -> Self {
        Self {
            target,
            capacity: Capacity::Entries(10_000),
            defaults: EntryOptions::new().ttl(Duration::from_secs(300)),
            namespace: String::new(),
            channel: DEFAULT_CHANNEL.to_string(),
            format: Format::Json,
            timing: Timing {
                ping_interval: Duration::from_secs(1),
                ping_timeout: Duration::from_secs(2),
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_secs(5),
            },
            subscribe_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            name: "default".to_string(),
            circuit: None,
            auto_recovery: 0,
            unconditional_fills: false,
            clearable: true,
        }
    }

    /// Most entries L1 holds (default 10 000).
    pub fn l1_max_entries(mut self, entries: u64) -> Self {
        self.capacity = Capacity::Entries(entries);
        self
    }

    /// Bound L1 by the encoded size of its values (plus key length) instead of their number.
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.capacity = Capacity::Bytes(bytes);
        self
    }

    /// Options of entries that do not set them (default: a 5 minute TTL).
    pub fn default_options(mut self, options: EntryOptions) -> Self {
        self.defaults = options;
        self
    }

    /// A prefix put before every key and tag in Redis (e.g. `"orders:"`), so that several
    /// applications or caches share one Redis without colliding.
    pub fn namespace(mut self, prefix: impl Into<String>) -> Self {
        self.namespace = prefix.into();
        self
    }

    /// Whether every entry carries the namespace's clear tag (`<namespace>*`, default
    /// true), which [`HybridCache::clear`] removes. `false` saves that tag's link in
    /// Redis (a few bytes per entry, plus the key's name in the tag index for entries
    /// without other tags); `clear()` then fails with [`Error::Config`]. Named caches
    /// ([`HybridCache::named`]) follow the cache they are made from.
    pub fn clearable(mut self, clearable: bool) -> Self {
        self.clearable = clearable;
        self
    }

    /// The module's invalidation channel (default `hc:invalidations`). It must be the
    /// module's `hybridcache.channel`: [`build`](Self::build) checks it and fails with
    /// [`Error::IncompatibleServer`] otherwise.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// How values are serialized in Redis (default JSON).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// How often the subscription is checked with PING (default 1 s); a PING unanswered
    /// within the timeout (default 2 s) drops the subscription and L1 with it.
    pub fn health_check(mut self, interval: Duration, timeout: Duration) -> Self {
        self.timing.ping_interval = interval;
        self.timing.ping_timeout = timeout;
        self
    }

    /// Longest wait between two reconnection attempts of the subscription (default 5 s).
    pub fn max_reconnect_backoff(mut self, max: Duration) -> Self {
        self.timing.backoff_max = max;
        self
    }

    /// How long [`build`](Self::build) waits for the subscription (default 5 s).
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// Timeout of each Redis command and connection attempt (default 2 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The cache's name: the `cache` label of its metrics (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A circuit breaker for Redis (off by default): after `failures` consecutive failures
    /// to reach Redis (timeouts, refused or dropped connections), Redis is not called for
    /// `open_for`; meanwhile reads use L1, fail-safe and the factory, and writes fail at once
    /// with [`Error::CircuitOpen`] (or are queued, with [`auto_recovery`](Self::auto_recovery)).
    /// The first call after `open_for` tries Redis again.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), hybridcache::Error> {
    /// use std::time::Duration;
    /// let cache = hybridcache::HybridCache::builder("redis://127.0.0.1/")
    ///     .circuit_breaker(3, Duration::from_secs(5))
    ///     .auto_recovery(10_000)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.circuit = Some((failures, open_for));
        self
    }

    /// Outbound auto-recovery (off by default): a `set`, `remove` or `remove_by_tag` that
    /// cannot reach Redis is queued instead of failing (at most `max_items`; the last write
    /// per key wins, the oldest operation is dropped when full) and replayed, in order, as
    /// soon as Redis answers again, before L1 is trusted again. A queued `remove` reports
    /// `false` and a queued `remove_by_tag` 0, as the count is not known yet.
    ///
    /// A queued `set` is the write of record: replayed, it overwrites whatever another
    /// instance wrote to the key in between (last write wins). A `get_or_set` fill whose
    /// write could not reach Redis is queued with its lease: replayed, it is written only if
    /// nothing changed the key since the read before its factory, so after a server
    /// restart it is refused (counted in [`Stats::fills_refused`](crate::Stats::fills_refused)).
    /// A fill never replaces an operation of its key queued before it. A value produced
    /// while Redis could not even be read has no lease and is not queued.
    pub fn auto_recovery(mut self, max_items: usize) -> Self {
        self.auto_recovery = max_items;
        self
    }

    /// For benchmarks only, never for a service: fills are read without a lease and written
    /// unconditionally, which reopens the race conditional fills close (a value read before
    /// another instance's change can be cached after it). `make bench` uses it to measure
    /// what conditional fills cost.
    #[doc(hidden)]
    pub fn racy_unconditional_fills_for_benchmarks(mut self) -> Self {
        self.unconditional_fills = true;
        self
    }

    /// Connects, checks the server, subscribes, and returns the cache once the subscription
    /// is confirmed, so that no invalidation can be missed by what L1 will serve. Must run
    /// inside a Tokio runtime (the subscription runs as a task of it).
    ///
    /// The check sends `HC.HELLO` to the server (to every primary of a cluster) and fails
    /// with [`Error::IncompatibleServer`] when the hybridcache module is not loaded, writes
    /// events in another format or speaks another version of the fill-lease contract than
    /// this client, or publishes on another channel than [`channel`](Self::channel). A user
    /// restricted by ACLs needs `+hc.hello`.
    pub async fn build(self) -> Result<HybridCache> {
        if self.channel.is_empty() {
            return Err(Error::Config("the channel name is empty".into()));
        }
        let Opened {
            con,
            nodes,
            db,
            label,
        } = connections::open(self.target?, self.command_timeout).await?;
        let sharded =
            server_check::verify(&con, &label, &self.channel, self.command_timeout).await?;
        let events = Arc::new(Events::new(&self.name));
        let breaker = match self.circuit {
            Some((failures, open_for)) => CircuitBreaker::new(failures, open_for),
            None => CircuitBreaker::disabled(),
        };
        let redis = L2::new(
            con,
            self.command_timeout,
            breaker,
            Outbox::new(self.auto_recovery),
            events.clone(),
        )
        .with_unconditional_fills(self.unconditional_fills);
        let tier = LocalTier::new(self.capacity, self.namespace, db, events);
        let tier = Arc::new(match self.clearable {
            true => tier,
            false => tier.without_clear_tag(),
        });
        let hub = Arc::new(Hub::default());
        hub.add(&tier);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        if nodes.cluster && sharded {
            tokio::spawn(
                ShardedSubscription {
                    nodes,
                    channel: self.channel,
                    timing: self.timing,
                    hub: hub.clone(),
                    redis: redis.clone(),
                    shutdown: shutdown_rx,
                }
                .run(),
            );
        } else {
            // One server (its events can be replayed), or a cluster's global channel (every
            // primary's events through one node: not replayed, L1 resets instead).
            let replayable = !nodes.cluster;
            tokio::spawn(
                Subscription {
                    nodes,
                    channel: self.channel,
                    timing: self.timing,
                    hub: hub.clone(),
                    redis: redis.clone(),
                    shutdown: shutdown_rx,
                    feed: EventFeed::new(hub.clone(), replayable),
                }
                .run(),
            );
        }
        let connections = Arc::new(Connections::new(redis, hub.clone(), db, shutdown_tx));
        let deadline = tokio::time::Instant::now() + self.subscribe_timeout;
        while !tier.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::SubscriptionTimeout {
                    waited: self.subscribe_timeout,
                    reason: hub
                        .last_failure()
                        .unwrap_or_else(|| "no answer yet".to_string()),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(HybridCache::from_state(CacheState::new(
            tier,
            connections,
            self.format,
            self.defaults,
            self.name,
        )))
    }
}
