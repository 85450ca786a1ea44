//! The cache handle and its operations.

use crate::builder::{HybridCacheBuilder, Target};
use crate::coalesce::Coalescer;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::l1::{L1Entry, Value};
use crate::l2::L2;
use crate::options::EntryOptions;
use crate::shared::Shared;
use crate::stats::{bump, Stats};
use redis::IntoConnectionInfo;
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A two-tier cache: values in process memory (L1) in front of Redis (L2), kept in sync
/// across every instance by the hybridcache module's invalidation events.
///
/// Cloning is cheap and shares everything; the subscription stops when the last clone is
/// dropped.
///
/// ```no_run
/// use hybridcache::{EntryOptions, HybridCache};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Product { name: String, price_cents: u64 }
///
/// # async fn example() -> Result<(), hybridcache::Error> {
/// let cache = HybridCache::builder("redis://127.0.0.1:6379/")
///     .namespace("shop:")
///     .build()
///     .await?;
/// let product = cache
///     .get_or_set(
///         "product:42",
///         || async { Ok::<_, std::io::Error>(Product { name: "lamp".into(), price_cents: 1999 }) },
///         EntryOptions::new().tags(["product:42", "category:lighting"]),
///     )
///     .await?;
/// assert_eq!(product.name, "lamp");
/// cache.remove_by_tag("category:lighting").await?; // gone from Redis and every instance's L1
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HybridCache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub shared: Arc<Shared>,
    pub redis: L2,
    pub format: Format,
    pub defaults: EntryOptions,
    pub in_flight: Coalescer,
    pub shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl std::fmt::Debug for HybridCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridCache")
            .field("namespace", &self.inner.shared.namespace)
            .field("connected", &self.inner.shared.is_connected())
            .field("stats", &self.stats())
            .finish()
    }
}

impl HybridCache {
    /// A builder for a cache on the Redis at `url` (e.g. `redis://127.0.0.1:6379/0`).
    pub fn builder(url: impl IntoConnectionInfo) -> HybridCacheBuilder {
        HybridCacheBuilder::new(
            redis::Client::open(url)
                .map(Target::Single)
                .map_err(Error::from),
        )
    }

    /// A builder for a cache on an existing client's Redis.
    pub fn builder_for_client(client: redis::Client) -> HybridCacheBuilder {
        HybridCacheBuilder::new(Ok(Target::Single(client)))
    }

    /// A builder for a cache on a Redis Cluster, given some of its nodes (any node will do;
    /// the rest are discovered).
    ///
    /// Key operations go to the primary owning the key's slot (following `MOVED`/`ASK`
    /// during resharding); [`remove_by_tag`](Self::remove_by_tag) runs on every primary
    /// and adds up the counts. The invalidation subscription is held on one node (every
    /// node receives every primary's events over the cluster bus), moves to another node if
    /// that one fails, and is dropped, with L1, while the node reports the cluster down.
    ///
    /// ```no_run
    /// use hybridcache::HybridCache;
    ///
    /// # async fn example() -> Result<(), hybridcache::Error> {
    /// let cache = HybridCache::cluster_builder([
    ///     "redis://127.0.0.1:7000/",
    ///     "redis://127.0.0.1:7001/",
    /// ])
    /// .namespace("shop:")
    /// .build()
    /// .await?;
    /// cache.remove_by_tag("category:lighting").await?; // on every shard
    /// # Ok(()) }
    /// ```
    pub fn cluster_builder<I>(nodes: I) -> HybridCacheBuilder
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        let seeds: redis::RedisResult<Vec<_>> = nodes
            .into_iter()
            .map(IntoConnectionInfo::into_connection_info)
            .collect();
        HybridCacheBuilder::new(seeds.map(Target::Cluster).map_err(Error::from))
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.counters.snapshot()
    }

    /// Whether the invalidation subscription is up (L1 is used only then).
    pub fn is_subscribed(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// Entries in L1 (approximate, as moka counts them).
    pub fn l1_entry_count(&self) -> u64 {
        self.inner.shared.l1.entry_count()
    }

    fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        let ns = &self.inner.shared.namespace;
        if ns.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{ns}{key}"))
        }
    }

    /// Whether `options` (over the defaults) keep the entry out of L1, without merging the
    /// rest: the L1 hit path allocates nothing it can avoid.
    fn skips_l1(&self, options: &EntryOptions) -> bool {
        options
            .skip_l1
            .or(self.inner.defaults.skip_l1)
            .unwrap_or(false)
    }

    fn full_tags(&self, tags: &[String]) -> Vec<String> {
        let ns = &self.inner.shared.namespace;
        tags.iter().map(|t| format!("{ns}{t}")).collect()
    }

    fn redis(&self) -> &L2 {
        &self.inner.redis
    }

    /// The value under `key`, from L1 or else Redis; `None` when Redis has none.
    pub async fn get<T>(&self, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.get_with(key, EntryOptions::new()).await
    }

    /// [`get`](Self::get) with options (skip flags, L1 lifetime, fail-safe of the L1 copy).
    #[tracing::instrument(level = "debug", skip(self, options), fields(namespace = %self.inner.shared.namespace))]
    pub async fn get_with<T>(&self, key: &str, options: EntryOptions) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let key = self.full_key(key);
        if let Some(hit) = self.l1_hit::<T>(&key, self.skips_l1(&options)).await {
            return Ok(Some(hit));
        }
        let options = options.over(&self.inner.defaults);
        if options.skips_l2() {
            return Ok(None);
        }
        match self.read_l2::<T>(&key, &options).await {
            Ok(found) => Ok(found),
            Err(e) => self.fail_safe::<T>(&key).await.map(Some).ok_or(e),
        }
    }

    /// The value under `key`: from L1, else Redis, else `factory`, whose value is then
    /// written to Redis with `options` (TTL, tags) and kept in L1. Concurrent calls for one
    /// key in this process run the factory once and share its result.
    #[tracing::instrument(level = "debug", skip(self, factory, options), fields(namespace = %self.inner.shared.namespace))]
    pub async fn get_or_set<T, F, Fut, E>(
        &self,
        key: &str,
        factory: F,
        options: EntryOptions,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let key = self.full_key(key);
        if let Some(hit) = self.l1_hit::<T>(&key, self.skips_l1(&options)).await {
            return Ok(hit);
        }
        let options = options.over(&self.inner.defaults);
        let value = self
            .inner
            .in_flight
            .run(&key, self.load(&key, factory, &options))
            .await?;
        value.downcast::<T>().map_err(|_| Error::UnexpectedReply {
            command: "get_or_set",
            detail: format!("a concurrent load of {key:?} produced another type"),
        })
    }

    async fn load<T, F, Fut, E>(
        &self,
        key: &str,
        factory: F,
        options: &EntryOptions,
    ) -> Result<Value>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        // A concurrent load may have filled L1 while this one waited for its turn.
        if let Some(hit) = self.l1_hit::<T>(key, options.skips_l1()).await {
            return Ok(hit);
        }
        if !options.skips_l2() {
            match self.read_l2::<T>(key, options).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) => {
                    return match self.fail_safe::<T>(key).await {
                        Some(stale) => Ok(stale),
                        None => Err(e),
                    };
                }
            }
        }
        bump(&self.inner.shared.counters.factory_runs);
        let value = factory().await.map_err(|e| Error::Factory(Arc::new(e)))?;
        let value = Arc::new(value);
        if let Err(e) = self.write(key, value.clone(), options).await {
            tracing::warn!(error = %e, key, "factory value not cached: writing it to Redis failed");
        }
        Ok(value)
    }

    /// Writes `value` under `key` to Redis (with the options' TTL and tags) and to L1. When
    /// this returns, every other instance's L1 copy of `key` is being invalidated, and this
    /// instance reads the new value.
    #[tracing::instrument(level = "debug", skip(self, value, options), fields(namespace = %self.inner.shared.namespace))]
    pub async fn set<T>(&self, key: &str, value: T, options: EntryOptions) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let options = options.over(&self.inner.defaults);
        self.write(&self.full_key(key), Arc::new(value), &options)
            .await
    }

    async fn write<T>(&self, key: &str, value: Arc<T>, options: &EntryOptions) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let shared = &self.inner.shared;
        let mark = shared.log.mark();
        let bytes = self.inner.format.encode(&*value)?;
        let tags = self.full_tags(&options.tags);
        let weight = bytes.len() + key.len();
        let (origin, version) = if options.skips_l2() {
            (None, 0)
        } else {
            let (origin, version) = self.redis().set(key, &bytes, options.ttl, &tags).await?;
            (Some(origin), version)
        };
        if options.skips_l1() {
            shared.l1.invalidate(key).await;
            return Ok(());
        }
        let lifetime = options.l1_lifetime(None);
        self.keep(
            key, value, origin, version, tags, lifetime, weight, options, mark,
        )
        .await;
        Ok(())
    }

    /// Removes `key` from Redis and from every instance's L1; true when Redis held it.
    #[tracing::instrument(level = "debug", skip(self), fields(namespace = %self.inner.shared.namespace))]
    pub async fn remove(&self, key: &str) -> Result<bool> {
        let key = self.full_key(key);
        let removed = self.redis().del(&key).await;
        self.inner.shared.l1.invalidate(&key).await;
        removed
    }

    /// Removes every entry carrying `tag`, in Redis and in every instance's L1; returns how
    /// many Redis held.
    pub async fn remove_by_tag(&self, tag: &str) -> Result<u64> {
        self.remove_by_tags(&[tag]).await
    }

    /// Removes every entry carrying any of `tags` (an entry with several counts once).
    #[tracing::instrument(level = "debug", skip(self), fields(namespace = %self.inner.shared.namespace))]
    pub async fn remove_by_tags(&self, tags: &[&str]) -> Result<u64> {
        if tags.is_empty() {
            return Ok(0);
        }
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let tags = self.full_tags(&tags);
        let removed = self.redis().deltag(&tags).await;
        self.inner.shared.l1.remove_tagged(&tags).await;
        removed
    }

    /// A fresh L1 value of type `T`, counting the hit or the miss.
    async fn l1_hit<T: Send + Sync + 'static>(&self, key: &str, skip_l1: bool) -> Option<Arc<T>> {
        let shared = &self.inner.shared;
        if skip_l1 || !shared.is_connected() {
            bump(&shared.counters.l1_misses);
            return None;
        }
        let fresh = match shared.l1.get(key).await {
            Some(entry) if shared.l1.is_fresh(&entry, Instant::now()) => {
                entry.value.clone().downcast::<T>().ok()
            }
            _ => None,
        };
        bump(if fresh.is_some() {
            &shared.counters.l1_hits
        } else {
            &shared.counters.l1_misses
        });
        fresh
    }

    /// The L1 value kept for fail-safe, when Redis cannot be reached.
    async fn fail_safe<T: Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        let shared = &self.inner.shared;
        let entry = shared.l1.get(key).await?;
        if !shared.l1.is_fail_safe(&entry, Instant::now()) {
            return None;
        }
        let value = entry.value.clone().downcast::<T>().ok()?;
        bump(&shared.counters.fail_safe_hits);
        tracing::warn!(key, "Redis unreachable: serving a stale value (fail-safe)");
        Some(value)
    }

    /// Reads `key` from Redis; keeps what it finds in L1 unless an invalidation of it arrived
    /// meanwhile.
    async fn read_l2<T>(&self, key: &str, options: &EntryOptions) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let shared = &self.inner.shared;
        let mark = shared.log.mark();
        let Some(found) = self.redis().fetch(key).await? else {
            bump(&shared.counters.l2_misses);
            return Ok(None);
        };
        bump(&shared.counters.l2_hits);
        let value: Arc<T> = Arc::new(self.inner.format.decode(&found.value)?);
        if !options.skips_l1() {
            let weight = found.value.len() + key.len();
            let lifetime = options.l1_lifetime(found.remaining);
            self.keep(
                key,
                value.clone(),
                Some(found.origin),
                found.version,
                found.tags,
                lifetime,
                weight,
                options,
                mark,
            )
            .await;
        }
        Ok(Some(value))
    }

    /// Puts a value into L1, then takes it out again if an invalidation recorded since
    /// `mark` names it (see `invalidation_log`).
    #[allow(clippy::too_many_arguments)]
    async fn keep<T: Send + Sync + 'static>(
        &self,
        key: &str,
        value: Arc<T>,
        origin: Option<Arc<str>>,
        version: u64,
        tags: Vec<String>,
        lifetime: Option<Duration>,
        weight: usize,
        options: &EntryOptions,
        mark: u64,
    ) {
        let shared = &self.inner.shared;
        if !shared.is_connected() {
            return;
        }
        let now = Instant::now();
        let fresh_until = lifetime.map(|d| now + d);
        let keep_until = match (fresh_until, options.fail_safe) {
            (Some(t), Some(extra)) => Some(t + extra),
            (t, _) => t,
        };
        let check_origin = origin.clone();
        let tags: Box<[String]> = tags.into();
        let check_tags = tags.clone();
        shared
            .l1
            .insert(
                key.to_string(),
                L1Entry {
                    value,
                    origin,
                    version,
                    tags,
                    fresh_until,
                    keep_until,
                    epoch: shared.l1.epoch(),
                    fail_safe: options.fail_safe.is_some(),
                    weight: u32::try_from(weight).unwrap_or(u32::MAX),
                },
            )
            .await;
        if shared
            .log
            .affects(mark, key, &check_tags, check_origin.as_deref(), version)
        {
            shared.l1.invalidate(key).await;
        }
    }
}
