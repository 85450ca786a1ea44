//! Building a [`HybridCache`].

use crate::cache::{HybridCache, Inner, Link};
use crate::circuit::CircuitBreaker;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::format::Format;
use crate::l1::{Capacity, L1};
use crate::l2::{Connection, L2};
use crate::nodes::Nodes;
use crate::options::EntryOptions;
use crate::outbox::Outbox;
use crate::shared::{Hub, Shared};
use crate::subscription::{Subscription, Timing};
use hybridcache_protocol::DEFAULT_CHANNEL;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{ConnectionInfo, ProtocolVersion};
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
}

/// Where the cache's Redis is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<ConnectionInfo>),
}

/// `info` speaking RESP3: redis-rs then notices a closed connection at once and reconnects,
/// instead of on the next command.
fn resp3(info: &ConnectionInfo) -> ConnectionInfo {
    info.clone().set_redis_settings(
        info.redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3),
    )
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

    /// The module's invalidation channel (default `hc:invalidations`; must match the module's
    /// `hybridcache.channel`).
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
    pub fn auto_recovery(mut self, max_items: usize) -> Self {
        self.auto_recovery = max_items;
        self
    }

    /// Connects, subscribes, and returns the cache once the subscription is confirmed, so
    /// that no invalidation can be missed by what L1 will serve. Must run inside a Tokio
    /// runtime (the subscription runs as a task of it).
    pub async fn build(self) -> Result<HybridCache> {
        if self.channel.is_empty() {
            return Err(Error::Config("the channel name is empty".into()));
        }
        let (redis, nodes, db) = match self.target? {
            Target::Single(client) => {
                let info = client.get_connection_info().clone();
                let db = u32::try_from(info.redis_settings().db())
                    .map_err(|_| Error::Config("negative database number".into()))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.command_timeout))
                    .set_response_timeout(Some(self.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(self.command_timeout);
                let con = ConnectionManager::new_with_config(
                    redis::Client::open(resp3(&info))?,
                    manager_config,
                )
                .await?;
                (Connection::Single(con), Nodes::single(resp3(&info)), db)
            }
            Target::Cluster(seeds) => {
                if seeds.is_empty() {
                    return Err(Error::Config("no cluster node given".into()));
                }
                if seeds.iter().any(|s| s.redis_settings().db() != 0) {
                    return Err(Error::Config("a Redis Cluster has only database 0".into()));
                }
                let client = ClusterClientBuilder::new(seeds.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(self.command_timeout)
                    .response_timeout(self.command_timeout)
                    .build()?;
                let con = client.get_async_connection().await?;
                let seeds = seeds.iter().map(resp3).collect();
                (Connection::Cluster(con), Nodes::cluster(seeds), 0)
            }
        };
        let events = Arc::new(Events::new(&self.name));
        let breaker = match self.circuit {
            Some((failures, open_for)) => CircuitBreaker::new(failures, open_for),
            None => CircuitBreaker::disabled(),
        };
        let redis = L2 {
            con: redis,
            timeout: self.command_timeout,
            breaker: Arc::new(breaker),
            outbox: Arc::new(Outbox::new(self.auto_recovery)),
            events: events.clone(),
        };
        let shared = Arc::new(Shared::new(
            L1::new(self.capacity),
            self.namespace,
            db,
            events,
        ));
        let hub = Arc::new(Hub::default());
        hub.add(&shared);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(
            Subscription {
                nodes,
                channel: self.channel,
                timing: self.timing,
                hub: hub.clone(),
                redis: redis.clone(),
                shutdown: shutdown_rx,
            }
            .run(),
        );
        let link = Arc::new(Link::new(redis, hub.clone(), db, shutdown_tx));
        let deadline = tokio::time::Instant::now() + self.subscribe_timeout;
        while !shared.is_connected() {
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
        Ok(HybridCache {
            inner: Arc::new(Inner::new(
                shared,
                link,
                self.format,
                self.defaults,
                self.name,
            )),
        })
    }
}
