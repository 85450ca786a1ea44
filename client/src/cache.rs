//! The cache handle and its public API; `get_or_set` lives in `get_or_set.rs`, what enters
//! L1 in `l1_admission.rs`, reads and writes of Redis in `store.rs`, the connections in
//! `connections.rs`.

use crate::background::BackgroundFactories;
use crate::builder::HybridCacheBuilder;
use crate::coalesce::Coalescer;
use crate::connections::{Connections, Target};
use crate::error::{Error, Result};
use crate::events::{CacheEvent, Events};
use crate::format::Format;
use crate::l1::Capacity;
use crate::l2::with_call_timeout;
use crate::l2::L2;
use crate::local_tier::LocalTier;
use crate::options::EntryOptions;
use crate::outbox::Pending;
use crate::stats::Stats;
use redis::IntoConnectionInfo;
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;

/// A two-tier cache: values in process memory (L1) in front of Redis (L2), kept in sync
/// across every instance by the hybridcache module's invalidation events.
///
/// Cloning is cheap and shares everything; the subscription stops when the last clone (of
/// this cache and of the caches [`named`](Self::named) from it) is dropped.
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
    state: Arc<CacheState>,
}

/// Everything one cache handle (and its clones) holds.
pub(crate) struct CacheState {
    tier: Arc<LocalTier>,
    connections: Arc<Connections>,
    format: Format,
    defaults: EntryOptions,
    in_flight: Coalescer,
    background: BackgroundFactories,
    name: String,
}

impl CacheState {
    pub(crate) fn new(
        tier: Arc<LocalTier>,
        connections: Arc<Connections>,
        format: Format,
        defaults: EntryOptions,
        name: String,
    ) -> Self {
        Self {
            tier,
            connections,
            format,
            defaults,
            in_flight: Coalescer::default(),
            background: BackgroundFactories::default(),
            name,
        }
    }

    pub(crate) fn background(&self) -> &BackgroundFactories {
        &self.background
    }
}

impl std::fmt::Debug for HybridCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridCache")
            .field("name", &self.state.name)
            .field("namespace", &self.tier().namespace())
            .field("connected", &self.tier().is_connected())
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

    pub(crate) fn from_state(state: CacheState) -> Self {
        Self {
            state: Arc::new(state),
        }
    }

    pub(crate) fn from_shared_state(state: Arc<CacheState>) -> Self {
        Self { state }
    }

    /// Another cache on the same Redis connection and subscription, with its own name
    /// (metrics label), namespace (prefix of its keys and tags in Redis), default options
    /// and L1 of `l1_max_entries` entries. Builds at once: nothing new is connected.
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) {
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    /// let orders = cache.named(
    ///     "orders",
    ///     "orders:",
    ///     EntryOptions::new().ttl(Duration::from_secs(60)),
    ///     10_000,
    /// );
    /// let _ = orders.get::<String>("42").await; // reads key "orders:42"
    /// # }
    /// ```
    pub fn named(
        &self,
        name: &str,
        namespace: &str,
        defaults: EntryOptions,
        l1_max_entries: u64,
    ) -> HybridCache {
        let connections = self.state.connections.clone();
        let tier = LocalTier::new(
            Capacity::Entries(l1_max_entries),
            namespace.to_string(),
            connections.db(),
            Arc::new(Events::new(name)),
        );
        let tier = Arc::new(match self.tier().clear_tag() {
            Some(_) => tier,
            None => tier.without_clear_tag(),
        });
        connections.hub().add(&tier);
        HybridCache::from_state(CacheState::new(
            tier,
            connections,
            self.state.format,
            defaults,
            name.to_string(),
        ))
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        self.tier().stats()
    }

    /// The cache's name (the `cache` label of its metrics).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// A stream of what happens in this cache (hits, misses, writes, invalidations,
    /// fail-safe, factory errors and timeouts, refused fills, circuit breaker changes,
    /// ...). Events are built only once someone has subscribed; a listener that falls more
    /// than 1024 events behind misses some (`RecvError::Lagged`).
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) {
    /// use hybridcache::CacheEvent;
    /// let mut events = cache.events();
    /// tokio::spawn(async move {
    ///     while let Ok(event) = events.recv().await {
    ///         if let CacheEvent::FailSafeActivated { key } = event {
    ///             eprintln!("serving a stale {key}");
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn events(&self) -> broadcast::Receiver<CacheEvent> {
        self.tier().events().subscribe()
    }

    /// Whether the invalidation subscription is up (L1 is used only then).
    pub fn is_subscribed(&self) -> bool {
        self.tier().is_connected()
    }

    /// Whether the circuit breaker is open now (Redis is not being called).
    pub fn is_circuit_open(&self) -> bool {
        self.redis().breaker().is_open(Instant::now())
    }

    /// Operations waiting for Redis (auto-recovery), for all caches of this connection.
    pub fn queued_operations(&self) -> usize {
        self.redis().outbox().len()
    }

    /// Entries in L1 (approximate, as moka counts them).
    pub fn l1_entry_count(&self) -> u64 {
        self.tier().l1().entry_count()
    }

    pub(crate) fn state(&self) -> &Arc<CacheState> {
        &self.state
    }

    pub(crate) fn tier(&self) -> &LocalTier {
        &self.state.tier
    }

    pub(crate) fn tier_handle(&self) -> Arc<LocalTier> {
        self.state.tier.clone()
    }

    pub(crate) fn redis(&self) -> &L2 {
        self.state.connections.l2()
    }

    pub(crate) fn format(&self) -> Format {
        self.state.format
    }

    pub(crate) fn defaults(&self) -> &EntryOptions {
        &self.state.defaults
    }

    pub(crate) fn in_flight(&self) -> &Coalescer {
        &self.state.in_flight
    }

    pub(crate) fn emit(&self, name: &'static str, make: impl FnOnce() -> CacheEvent) {
        self.tier().emit(name, make);
    }

    pub(crate) fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        let ns = self.tier().namespace();
        if ns.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{ns}{key}"))
        }
    }

    pub(crate) fn full_tags(&self, tags: &[String]) -> Vec<String> {
        let ns = self.tier().namespace();
        tags.iter().map(|t| format!("{ns}{t}")).collect()
    }

    /// Whether `options` (over the defaults) keep the entry out of L1, without merging the
    /// rest: the L1 hit path allocates nothing it can avoid.
    pub(crate) fn skips_l1(&self, options: &EntryOptions) -> bool {
        options
            .skip_l1
            .or(self.state.defaults.skip_l1)
            .unwrap_or(false)
    }

    /// The value under `key`, from L1 or else Redis; `None` when Redis has none.
    ///
    /// A key that holds a value of another type in Redis (e.g. a raw `SET` over an entry)
    /// reads as `None`, like a missing key: the next [`get_or_set`](Self::get_or_set) or
    /// [`set`](Self::set) replaces it.
    pub async fn get<T>(&self, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        // Not through `get_with`: the hit path's future holds no options.
        let skip_l1 = self.state.defaults.skip_l1.unwrap_or(false);
        if let Some((hit, _)) = self.tier().lookup::<T>(key, skip_l1) {
            return Ok(Some(hit));
        }
        Box::pin(self.get_missed(&self.full_key(key), EntryOptions::new())).await
    }

    /// [`get`](Self::get) with options (skip flags, L1 lifetime, fail-safe of the L1 copy).
    pub async fn get_with<T>(&self, key: &str, options: EntryOptions) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if let Some((hit, _)) = self.tier().lookup::<T>(key, self.skips_l1(&options)) {
            return Ok(Some(hit));
        }
        // Boxed: a hit neither creates nor copies the read of Redis' future.
        Box::pin(self.get_missed(&self.full_key(key), options)).await
    }

    /// `get_with` after L1 could not answer (the miss is counted).
    #[tracing::instrument(name = "get_with", level = "debug", skip(self, options), fields(cache = %self.state.name))]
    async fn get_missed<T>(&self, key: &str, options: EntryOptions) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let tier = self.tier();
        let options = options.over(self.defaults());
        if options.skips_l2() {
            return Ok(None);
        }
        let mark = tier.log().mark();
        let read = with_call_timeout(options.redis_timeout, self.read_l2::<T>(key, &options));
        match read.await {
            Ok(found) => Ok(found),
            Err(e) if e.is_unreachable() => match tier.stale::<T>(key) {
                Some((stale, entry)) => {
                    tier.activate_fail_safe(key, &entry, mark, &options);
                    Ok(Some(stale))
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Writes `value` under `key` to Redis (with the options' TTL and tags) and to L1. When
    /// this returns, every other instance's L1 copy of `key` is being invalidated, and this
    /// instance reads the new value.
    ///
    /// `set` is the write of record: it is unconditional, whatever was written or removed
    /// before. With auto-recovery, a write that cannot reach Redis is queued and this
    /// returns `Ok`; replayed once Redis answers again, it overwrites whatever another
    /// instance wrote to the key in between (the last write to reach Redis wins), and
    /// fills that read the key before the replay are refused.
    #[tracing::instrument(level = "debug", skip(self, value, options), fields(cache = %self.state.name))]
    pub async fn set<T>(&self, key: &str, value: T, options: EntryOptions) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let options = options.over(self.defaults());
        let key = self.full_key(key);
        let write = self.write_of_record(&key, Arc::new(value), &options);
        with_call_timeout(options.redis_timeout, write).await
    }

    /// Removes `key` from Redis and from every instance's L1; true when Redis held it.
    #[tracing::instrument(level = "debug", skip(self), fields(cache = %self.state.name))]
    pub async fn remove(&self, key: &str) -> Result<bool> {
        let key = self.full_key(key);
        self.state.background.mark_changed(&key);
        let removed = self
            .send_or_queue(
                self.redis().del(&key),
                || Pending::Del {
                    key: key.to_string(),
                },
                false,
            )
            .await;
        self.tier().l1().invalidate(&key);
        self.emit("remove", || CacheEvent::Remove {
            key: key.to_string(),
        });
        removed
    }

    /// Removes every entry carrying `tag`, in Redis and in every instance's L1; returns how
    /// many Redis held.
    pub async fn remove_by_tag(&self, tag: &str) -> Result<u64> {
        self.remove_by_tags(&[tag]).await
    }

    /// Removes every entry carrying any of `tags` (an entry with several counts once).
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.state.name))]
    pub async fn remove_by_tags<I, S>(&self, tags: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tags: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_string()).collect();
        if tags.is_empty() {
            return Ok(0);
        }
        let tags = self.full_tags(&tags);
        // Any background result may carry one of the tags: all of them are stale now.
        self.state.background.mark_all_changed();
        let removed = self
            .send_or_queue(
                self.redis().deltag(&tags),
                || Pending::DelTags { tags: tags.clone() },
                0,
            )
            .await;
        self.tier().l1().remove_tagged(&tags);
        self.emit("remove_by_tag", || CacheEvent::RemoveByTag { tags });
        removed
    }

    /// Removes every entry carrying all of `tags` (entries with only some of them stay), in
    /// Redis (`HC.DELTAGALL`, in a cluster on every primary) and in every instance's L1;
    /// returns how many Redis held. No tags removes nothing; one tag is
    /// [`remove_by_tag`](Self::remove_by_tag).
    ///
    /// A fill (`get_or_set`) whose factory started before this call and whose entry would
    /// carry any of the tags is not written: the module refuses it conservatively, as after
    /// a `remove_by_tags` of them.
    ///
    /// ```no_run
    /// # async fn demo(cache: hybridcache::HybridCache) -> hybridcache::Result<()> {
    /// // The orders of customer 7 in March, not their other orders nor March's other ones.
    /// let removed = cache.remove_by_all_tags(["customer:7", "month:2026-03"]).await?;
    /// # let _ = removed;
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.state.name))]
    pub async fn remove_by_all_tags<I, S>(&self, tags: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut tags: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_string()).collect();
        tags.sort_unstable();
        tags.dedup();
        if tags.is_empty() {
            return Ok(0);
        }
        let tags = self.full_tags(&tags);
        // Any background result may carry the tags: all of them are stale now.
        self.state.background.mark_all_changed();
        let removed = self
            .send_or_queue(
                self.redis().deltagall(&tags),
                || Pending::DelAllTags { tags: tags.clone() },
                0,
            )
            .await;
        self.tier().l1().remove_all_tagged(&tags);
        self.emit("remove_by_all_tags", || CacheEvent::RemoveByAllTags {
            tags,
        });
        removed
    }
}
