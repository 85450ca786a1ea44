//! The cache handle and its basic operations; `get_or_set` lives in `get_or_set.rs`.

use crate::builder::{HybridCacheBuilder, Target};
use crate::coalesce::Coalescer;
use crate::error::{Error, Result};
use crate::events::{CacheEvent, Events};
use crate::format::Format;
use crate::l1::{Capacity, L1Entry, L1};
use crate::l2::L2;
use crate::options::EntryOptions;
use crate::outbox::Pending;
use crate::shared::{Hub, Shared};
use crate::stats::{bump, Stats};
use redis::IntoConnectionInfo;
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, watch};

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
    pub(crate) inner: Arc<Inner>,
}

/// What the caches made from one builder share: the Redis connection and the subscription.
pub(crate) struct Link {
    pub redis: L2,
    pub hub: Arc<Hub>,
    pub db: u32,
    shutdown: watch::Sender<bool>,
}

impl Link {
    pub fn new(redis: L2, hub: Arc<Hub>, db: u32, shutdown: watch::Sender<bool>) -> Self {
        Self {
            redis,
            hub,
            db,
            shutdown,
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

pub(crate) struct Inner {
    pub shared: Arc<Shared>,
    pub link: Arc<Link>,
    pub format: Format,
    pub defaults: EntryOptions,
    pub in_flight: Coalescer,
    /// Keys with a factory running in the background (eager refresh, a timed-out load
    /// completing), and whether this handle wrote or removed the key since (then the
    /// background result is stale and dropped).
    pub background: Mutex<HashMap<String, bool>>,
    pub name: String,
}

impl Inner {
    pub fn new(
        shared: Arc<Shared>,
        link: Arc<Link>,
        format: Format,
        defaults: EntryOptions,
        name: String,
    ) -> Self {
        Self {
            shared,
            link,
            format,
            defaults,
            in_flight: Coalescer::default(),
            background: Mutex::new(HashMap::new()),
            name,
        }
    }
}

impl std::fmt::Debug for HybridCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridCache")
            .field("name", &self.inner.name)
            .field("namespace", &self.inner.shared.namespace)
            .field("connected", &self.inner.shared.is_connected())
            .field("stats", &self.stats())
            .finish()
    }
}

/// What L1 is told about a value besides the value itself.
pub(crate) struct Keep {
    pub origin: Option<Arc<str>>,
    pub version: u64,
    pub tags: Vec<String>,
    pub lifetime: Option<Duration>,
    /// What remains of the value's lifetime in Redis.
    pub l2_remaining: Option<Duration>,
    pub weight: usize,
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
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
        let link = self.inner.link.clone();
        let shared = Arc::new(Shared::new(
            L1::new(Capacity::Entries(l1_max_entries)),
            namespace.to_string(),
            link.db,
            Arc::new(Events::new(name)),
        ));
        link.hub.add(&shared);
        HybridCache {
            inner: Arc::new(Inner::new(
                shared,
                link,
                self.inner.format,
                defaults,
                name.to_string(),
            )),
        }
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.counters.snapshot()
    }

    /// The cache's name (the `cache` label of its metrics).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A stream of what happens in this cache (hits, misses, writes, invalidations,
    /// fail-safe, factory errors and timeouts, circuit breaker changes, ...). Events are
    /// built only once someone has subscribed; a listener that falls more than 1024 events
    /// behind misses some (`RecvError::Lagged`).
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
        self.inner.shared.events.subscribe()
    }

    /// Whether the invalidation subscription is up (L1 is used only then).
    pub fn is_subscribed(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// Whether the circuit breaker is open now (Redis is not being called).
    pub fn is_circuit_open(&self) -> bool {
        self.redis().breaker.is_open(Instant::now())
    }

    /// Operations waiting for Redis (auto-recovery), for all caches of this connection.
    pub fn queued_operations(&self) -> usize {
        self.inner.link.redis.outbox.len()
    }

    /// Entries in L1 (approximate, as moka counts them).
    pub fn l1_entry_count(&self) -> u64 {
        self.inner.shared.l1.entry_count()
    }

    pub(crate) fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        let ns = &self.inner.shared.namespace;
        if ns.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{ns}{key}"))
        }
    }

    /// Whether `options` (over the defaults) keep the entry out of L1, without merging the
    /// rest: the L1 hit path allocates nothing it can avoid.
    pub(crate) fn skips_l1(&self, options: &EntryOptions) -> bool {
        options
            .skip_l1
            .or(self.inner.defaults.skip_l1)
            .unwrap_or(false)
    }

    fn full_tags(&self, tags: &[String]) -> Vec<String> {
        let ns = &self.inner.shared.namespace;
        tags.iter().map(|t| format!("{ns}{t}")).collect()
    }

    pub(crate) fn redis(&self) -> &L2 {
        &self.inner.link.redis
    }

    pub(crate) fn emit(&self, name: &'static str, make: impl FnOnce() -> CacheEvent) {
        self.inner.shared.events.emit(name, make);
    }

    /// The value under `key`, from L1 or else Redis; `None` when Redis has none.
    pub async fn get<T>(&self, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.get_with(key, EntryOptions::new()).await
    }

    /// [`get`](Self::get) with options (skip flags, L1 lifetime, fail-safe of the L1 copy).
    #[tracing::instrument(level = "debug", skip(self, options), fields(cache = %self.inner.name))]
    pub async fn get_with<T>(&self, key: &str, options: EntryOptions) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let key = self.full_key(key);
        if let Some((hit, _)) = self.l1_hit::<T>(&key, self.skips_l1(&options)).await {
            return Ok(Some(hit));
        }
        let options = options.over(&self.inner.defaults);
        if options.skips_l2() {
            return Ok(None);
        }
        let mark = self.inner.shared.log.mark();
        match self.read_l2::<T>(&key, &options).await {
            Ok(found) => Ok(found),
            Err(e) if e.is_unreachable() => match self.stale::<T>(&key).await {
                Some((stale, entry)) => {
                    self.activate_fail_safe(&key, &entry, mark, &options).await;
                    Ok(Some(stale))
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Writes `value` under `key` to Redis (with the options' TTL and tags) and to L1. When
    /// this returns, every other instance's L1 copy of `key` is being invalidated, and this
    /// instance reads the new value. With auto-recovery, a write that cannot reach Redis is
    /// queued and this returns `Ok`.
    #[tracing::instrument(level = "debug", skip(self, value, options), fields(cache = %self.inner.name))]
    pub async fn set<T>(&self, key: &str, value: T, options: EntryOptions) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let options = options.over(&self.inner.defaults);
        self.write(&self.full_key(key), Arc::new(value), &options, None, None)
            .await
    }

    /// Writes to Redis and L1 (see [`set`](Self::set)); `etag`/`last_modified` are kept
    /// with the L1 copy for the next conditional refresh.
    pub(crate) async fn write<T>(
        &self,
        key: &str,
        value: Arc<T>,
        options: &EntryOptions,
        etag: Option<String>,
        last_modified: Option<SystemTime>,
    ) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let shared = &self.inner.shared;
        let options = options.jittered();
        let mark = shared.log.mark();
        let bytes = self.inner.format.encode(&*value)?;
        let tags = self.full_tags(&options.tags);
        let weight = bytes.len() + key.len();
        self.mark_dirty(key);
        let (origin, version) = if options.skips_l2() {
            (None, 0)
        } else {
            let sent = match self.drain_outbox().await {
                Ok(()) => self.redis().set(key, &bytes, options.ttl, &tags).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok((origin, version)) => (Some(origin), version),
                Err(e) if e.is_unreachable() && self.redis().outbox.is_enabled() => {
                    self.queue(Pending::Set {
                        key: key.to_string(),
                        bytes,
                        ttl: options.ttl,
                        tags,
                    });
                    shared.l1.invalidate(key).await;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        self.emit("set", || CacheEvent::Set {
            key: key.to_string(),
        });
        if options.skips_l1() {
            shared.l1.invalidate(key).await;
            return Ok(());
        }
        let lifetime = options.l1_lifetime(None);
        let keep = Keep {
            origin,
            version,
            tags,
            lifetime,
            l2_remaining: options.ttl.filter(|_| !options.skips_l2()),
            weight,
            etag,
            last_modified,
        };
        self.keep(key, value, keep, &options, mark).await;
        Ok(())
    }

    /// Operations queued earlier go to Redis before a new one, so that an old queued write
    /// never lands after a newer one. Fails (unreachable) when they cannot be sent.
    async fn drain_outbox(&self) -> Result<()> {
        if self.redis().outbox.is_empty() {
            return Ok(());
        }
        self.redis().replay().await.map(|_| ())
    }

    /// Notes that this handle changed `key`: a background factory result for it is stale.
    pub(crate) fn mark_dirty(&self, key: &str) {
        let mut background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(dirty) = background.get_mut(key) {
            *dirty = true;
        }
    }

    fn queue(&self, op: Pending) {
        tracing::warn!(?op, "redis unreachable: operation queued for auto-recovery");
        if self.redis().outbox.push(op) {
            tracing::warn!("auto-recovery queue full: the oldest queued operation was dropped");
        }
        self.emit("queued", || CacheEvent::Queued);
    }

    /// Removes `key` from Redis and from every instance's L1; true when Redis held it.
    #[tracing::instrument(level = "debug", skip(self), fields(cache = %self.inner.name))]
    pub async fn remove(&self, key: &str) -> Result<bool> {
        let key = self.full_key(key);
        self.mark_dirty(&key);
        let sent = match self.drain_outbox().await {
            Ok(()) => self.redis().del(&key).await,
            Err(e) => Err(e),
        };
        let removed = match sent {
            Err(e) if e.is_unreachable() && self.redis().outbox.is_enabled() => {
                self.queue(Pending::Del {
                    key: key.to_string(),
                });
                Ok(false)
            }
            other => other,
        };
        self.inner.shared.l1.invalidate(&key).await;
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
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.inner.name))]
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
        self.inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
            .for_each(|dirty| *dirty = true);
        let sent = match self.drain_outbox().await {
            Ok(()) => self.redis().deltag(&tags).await,
            Err(e) => Err(e),
        };
        let removed = match sent {
            Err(e) if e.is_unreachable() && self.redis().outbox.is_enabled() => {
                self.queue(Pending::DelTags { tags: tags.clone() });
                Ok(0)
            }
            other => other,
        };
        self.inner.shared.l1.remove_tagged(&tags).await;
        self.emit("remove_by_tag", || CacheEvent::RemoveByTag { tags });
        removed
    }

    /// A fresh L1 value of type `T` and its entry, counting the hit or the miss.
    pub(crate) async fn l1_hit<T: Send + Sync + 'static>(
        &self,
        key: &str,
        skip_l1: bool,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        let shared = &self.inner.shared;
        let fresh = self.l1_fresh::<T>(key, skip_l1).await;
        if fresh.is_some() {
            bump(&shared.counters.l1_hits);
            self.emit("hit", || CacheEvent::Hit {
                key: key.to_string(),
            });
        } else {
            bump(&shared.counters.l1_misses);
            self.emit("miss", || CacheEvent::Miss {
                key: key.to_string(),
            });
        }
        fresh
    }

    /// A fresh L1 value of type `T` and its entry, not counted.
    pub(crate) async fn l1_fresh<T: Send + Sync + 'static>(
        &self,
        key: &str,
        skip_l1: bool,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        let shared = &self.inner.shared;
        if skip_l1 || !shared.is_connected() {
            return None;
        }
        match shared.l1.get(key).await {
            Some(entry) if shared.l1.is_fresh(&entry, Instant::now()) => entry
                .value
                .clone()
                .downcast::<T>()
                .ok()
                .map(|value| (value, entry)),
            _ => None,
        }
    }

    /// The value L1 keeps for `key` for fail-safe (opted in, within its maximum stale
    /// duration, none of its tags removed), whether or not it is fresh.
    pub(crate) async fn stale<T: Send + Sync + 'static>(
        &self,
        key: &str,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        let shared = &self.inner.shared;
        let entry = shared.l1.get(key).await?;
        if !shared.l1.is_fail_safe(&entry, Instant::now()) {
            return None;
        }
        let value = entry.value.clone().downcast::<T>().ok()?;
        Some((value, entry))
    }

    /// Serves `entry` as fail-safe: counted, reported, and kept fresh for the throttle
    /// duration (within its maximum stale duration), so that the failing source is not
    /// tried again on every read — unless an invalidation recorded since `mark` (taken
    /// before `entry` was read) names it, or the subscription is down: a value known to be
    /// replaced is served once at most, never kept.
    pub(crate) async fn activate_fail_safe(
        &self,
        key: &str,
        entry: &L1Entry,
        mark: u64,
        options: &EntryOptions,
    ) {
        let shared = &self.inner.shared;
        bump(&shared.counters.fail_safe_hits);
        tracing::warn!(key, "serving a stale value (fail-safe)");
        self.emit("fail_safe_activated", || CacheEvent::FailSafeActivated {
            key: key.to_string(),
        });
        if !shared.is_connected() {
            return;
        }
        let now = Instant::now();
        let until = now.checked_add(options.throttle());
        let fresh_until = match (entry.keep_until, until) {
            (Some(keep), Some(until)) => Some(keep.min(until)),
            (keep, until) => keep.or(until),
        };
        shared
            .l1
            .insert(
                key.to_string(),
                L1Entry {
                    value: entry.value.clone(),
                    origin: entry.origin.clone(),
                    version: entry.version,
                    tags: entry.tags.clone(),
                    fresh_until,
                    keep_until: entry.keep_until,
                    epoch: shared.l1.epoch(),
                    fail_safe: entry.fail_safe,
                    weight: entry.weight,
                    l2_expires_at: entry.l2_expires_at,
                    refresh_after: None,
                    etag: entry.etag.clone(),
                    last_modified: entry.last_modified,
                },
            )
            .await;
        // Its own expiry in Redis (or a read of it making Redis reclaim it) is no change.
        let expired = entry
            .l2_expires_at
            .is_some_and(|at| now + crate::shared::EXPIRY_TOLERANCE >= at);
        if shared.log.affects_unless_expired(
            mark,
            key,
            &entry.tags,
            entry.origin.as_deref(),
            entry.version,
            expired,
        ) {
            shared.l1.invalidate(key).await;
        }
    }

    /// Reads `key` from Redis; keeps what it finds in L1 unless an invalidation of it arrived
    /// meanwhile.
    pub(crate) async fn read_l2<T>(
        &self,
        key: &str,
        options: &EntryOptions,
    ) -> Result<Option<Arc<T>>>
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
            let keep = Keep {
                weight: found.value.len() + key.len(),
                lifetime: options.l1_lifetime(found.remaining),
                l2_remaining: found.remaining,
                origin: Some(found.origin),
                version: found.version,
                tags: found.tags,
                etag: None,
                last_modified: None,
            };
            self.keep(key, value.clone(), keep, options, mark).await;
        }
        Ok(Some(value))
    }

    /// Puts a value into L1, then takes it out again if an invalidation recorded since
    /// `mark` names it (see `invalidation_log`).
    async fn keep<T: Send + Sync + 'static>(
        &self,
        key: &str,
        value: Arc<T>,
        keep: Keep,
        options: &EntryOptions,
        mark: u64,
    ) {
        let shared = &self.inner.shared;
        if !shared.is_connected() {
            return;
        }
        let now = Instant::now();
        // A lifetime too long for the clock means no expiry.
        let fresh_until = keep.lifetime.and_then(|d| now.checked_add(d));
        let keep_until = match (fresh_until, options.fail_safe) {
            (Some(t), Some(extra)) => t.checked_add(extra),
            (t, _) => t,
        };
        let refresh_after = options
            .refresh_point(keep.lifetime)
            .and_then(|d| now.checked_add(d));
        let check_origin = keep.origin.clone();
        let tags: Box<[String]> = keep.tags.into();
        let check_tags = tags.clone();
        let version = keep.version;
        shared
            .l1
            .insert(
                key.to_string(),
                L1Entry {
                    value,
                    origin: keep.origin,
                    version,
                    tags,
                    fresh_until,
                    keep_until,
                    epoch: shared.l1.epoch(),
                    fail_safe: options.fail_safe.is_some(),
                    weight: u32::try_from(keep.weight).unwrap_or(u32::MAX),
                    l2_expires_at: keep.l2_remaining.and_then(|d| now.checked_add(d)),
                    refresh_after,
                    etag: keep.etag,
                    last_modified: keep.last_modified,
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
