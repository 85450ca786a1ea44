//! `get_or_set`: L1, then Redis, then the factory, with the resilience around the factory:
//! soft and hard timeouts with background completion, fail-safe (stale values, throttle,
//! default values, declared failures), eager refresh, adaptive caching, conditional refresh
//! and distributed stampede protection. Every value a factory produces is filled on the
//! lease of the read made before it ran (see `fill.rs`).

use crate::cache::HybridCache;
use crate::error::{Error, FactoryFailed, Result};
use crate::events::CacheEvent;
use crate::factory::{FactoryContext, FactoryOutput};
use crate::factory_outcome::Stale;
use crate::fill::FillBasis;
use crate::l1::Value;
use crate::l2::with_call_timeout;
use crate::options::EntryOptions;
use crate::stampede_lock::{lock_key, Locked};
use crate::stats::bump;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinHandle;

impl HybridCache {
    /// The value under `key`: from L1, else Redis, else `factory`, whose value is then
    /// written to Redis with `options` (TTL, tags) and kept in L1. Concurrent calls for one
    /// key in this process run the factory once and share its result.
    ///
    /// The factory's value is written with `HC.SET ... LEASE`, on the lease of the read that
    /// found the key missing: if anything changed the key (a `set`, a `remove`, a
    /// `remove_by_tag` of one of its tags, an expiry, a flush, any raw command) between that
    /// read and the write, Redis refuses it. The caller still gets the value (it was current
    /// when the factory read its source), but it is cached nowhere, counted in
    /// [`Stats::fills_refused`](crate::Stats::fills_refused) and reported as
    /// [`CacheEvent::FillRefused`]. A key holding a value of another type in Redis reads as
    /// missing and the fill replaces it. When Redis could not be read before the factory
    /// ran, its value is served and not cached (there is no lease to write it with).
    ///
    /// The factory runs as a task of its own (hence `Send + 'static`), so that with
    /// [`factory_soft_timeout`](EntryOptions::factory_soft_timeout) or
    /// [`factory_hard_timeout`](EntryOptions::factory_hard_timeout) it can finish in the
    /// background. A factory error fails the call unless fail-safe keeps a stale value.
    /// When Redis cannot be reached, a stale value (fail-safe) is served if there is one,
    /// else the factory runs and its value is returned, not cached (no lease).
    ///
    /// The factory may fail with any error a service has: an `E: std::error::Error`,
    /// `anyhow::Error`, `Box<dyn Error + Send + Sync>` (anything that converts into the
    /// latter). The call then fails with [`Error::Factory`](crate::Error::Factory), which
    /// holds that error.
    ///
    /// Because the factory is `'static`, it cannot borrow the caller's state (a `&Db`):
    /// the compiler then reports that the borrowed value "does not live long enough" or
    /// that the closure "may outlive the current function". Keep shared state behind an
    /// `Arc`, clone it, and move the clone in:
    ///
    /// ```no_run
    /// use hybridcache::{EntryOptions, HybridCache};
    /// use std::sync::Arc;
    ///
    /// struct Db;
    /// impl Db {
    ///     async fn load_price(&self, id: u64) -> anyhow::Result<u64> {
    ///         Ok(id * 100)
    ///     }
    /// }
    ///
    /// # async fn example(cache: HybridCache) -> anyhow::Result<()> {
    /// let db = Arc::new(Db);
    /// let id = 42;
    /// let price = cache
    ///     .get_or_set(
    ///         &format!("price:{id}"),
    ///         {
    ///             let db = Arc::clone(&db); // the factory owns its handle
    ///             move || async move { db.load_price(id).await }
    ///         },
    ///         EntryOptions::new().tags(["prices"]),
    ///     )
    ///     .await?;
    /// assert_eq!(*price, 4200);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_set<T, F, Fut, E>(
        &self,
        key: &str,
        factory: F,
        options: EntryOptions,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_set_with(
            key,
            move |ctx: FactoryContext<T>| async move {
                match factory().await {
                    Ok(value) => ctx.value(value),
                    Err(e) => ctx.failed_with(Arc::from(e.into())),
                }
            },
            options,
        )
        .await
    }

    /// [`get_or_set`](Self::get_or_set) with a factory that receives a [`FactoryContext`]:
    /// the stale value and its ETag / Last-Modified (conditional refresh: answer
    /// [`not_modified`](FactoryContext::not_modified)), the options it may change (adaptive
    /// caching), and ways to declare failure with or without a default value.
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) -> Result<(), hybridcache::Error> {
    /// use hybridcache::{EntryOptions, FactoryContext};
    /// use std::time::Duration;
    ///
    /// let price = cache
    ///     .get_or_set_with(
    ///         "price:42",
    ///         |ctx: FactoryContext<u64>| async move {
    ///             match query_price(42).await {
    ///                 Ok(p) => ctx.value(p),
    ///                 Err(e) => ctx.fail(e), // stale value if fail-safe keeps one, else an error
    ///             }
    ///         },
    ///         EntryOptions::new()
    ///             .ttl(Duration::from_secs(60))
    ///             .fail_safe(Duration::from_secs(3600))
    ///             .factory_soft_timeout(Duration::from_millis(100))
    ///             .eager_refresh(0.8),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// # async fn query_price(_id: u64) -> Result<u64, String> { Ok(1) }
    /// ```
    pub async fn get_or_set_with<T, F, Fut>(
        &self,
        key: &str,
        factory: F,
        options: EntryOptions,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext<T>) -> Fut + Send + 'static,
        Fut: Future<Output = FactoryOutput<T>> + Send + 'static,
    {
        let forced = options
            .force_refresh
            .or(self.defaults().force_refresh)
            .unwrap_or(false);
        let found = match forced {
            true => None,
            false => self.tier().lookup::<T>(key, self.skips_l1(&options)),
        };
        if let Some((hit, entry)) = found {
            if entry
                .refresh_after
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                let key = self.full_key(key).into_owned();
                self.refresh_in_background(key, factory, options, hit.clone(), entry);
            }
            return Ok(hit);
        }
        // The miss path's future is tens of KB: boxed, so that a hit does not create (and
        // copy) it.
        Box::pin(self.get_or_set_missed(&self.full_key(key), factory, options)).await
    }

    /// `get_or_set_with` after L1 could not answer (the miss is counted).
    #[tracing::instrument(name = "get_or_set_with", level = "debug", skip(self, factory, options), fields(cache = %self.name()))]
    async fn get_or_set_missed<T, F, Fut>(
        &self,
        key: &str,
        factory: F,
        options: EntryOptions,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext<T>) -> Fut + Send + 'static,
        Fut: Future<Output = FactoryOutput<T>> + Send + 'static,
    {
        let options = options.over(self.defaults());
        let timeout = options.redis_timeout;
        // A forced refresh runs its own factory: joining a load that may end in a Redis
        // hit would not refresh anything.
        let value = match options.forces_refresh() {
            true => with_call_timeout(timeout, self.load(key, factory, options)).await?,
            false => {
                let load = self.in_flight().run(key, self.load(key, factory, options));
                with_call_timeout(timeout, load).await?
            }
        };
        value.downcast::<T>().map_err(|_| Error::UnexpectedReply {
            command: "get_or_set",
            detail: format!("a concurrent load of {key:?} produced another type"),
        })
    }

    async fn load<T, F, Fut>(&self, key: &str, factory: F, options: EntryOptions) -> Result<Value>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext<T>) -> Fut + Send + 'static,
        Fut: Future<Output = FactoryOutput<T>> + Send + 'static,
    {
        let tier = self.tier();
        // A concurrent load may have filled L1 while this one waited for its turn (the miss
        // was counted already).
        let forced = options.forces_refresh();
        if let Some((hit, _)) = tier.fresh::<T>(key, options.skips_l1() || forced) {
            return Ok(hit);
        }
        let mark = tier.log().mark();
        // Only entries that opted in to fail-safe are kept stale.
        let stale = match options.fail_safe {
            Some(_) => tier
                .stale::<T>(key)
                .map(|(value, entry)| Stale { value, entry, mark }),
            None => None,
        };
        let mut basis = FillBasis { lease: None, mark };
        let mut lock = None;
        if !options.skips_l2() {
            let read = match forced {
                true => self.lease_for_refresh(key).await.map(|lease| (None, lease)),
                false => self.read_l2_leased::<T>(key, &options).await,
            };
            match read {
                Ok((Some(found), _)) => return Ok(found),
                Ok((None, lease)) => {
                    basis.lease = lease;
                    if let Some(wait) = options.distributed_lock.filter(|_| !forced) {
                        match self.lock_or_wait::<T>(key, wait, &options).await {
                            Locked::Found(found) => return Ok(found),
                            Locked::Held { token, lease } => {
                                lock = Some(token);
                                basis.lease = lease.or(basis.lease);
                            }
                            Locked::GaveUp => {}
                        }
                    }
                }
                Err(e) if e.is_unreachable() => {
                    if let Some(stale) = &stale {
                        tier.activate_fail_safe(key, &stale.entry, stale.mark, &options);
                        return Ok(stale.value.clone());
                    }
                    tracing::warn!(error = %e, key, "redis unreachable: running the factory (its value is not cached)");
                }
                Err(e) => return Err(e),
            }
        }
        let result = self.produce(key, factory, options, stale, basis).await;
        if let Some(token) = lock {
            if let Err(e) = self.redis().unlock(&lock_key(key), &token).await {
                tracing::debug!(error = %e, key, "stampede lock not released (it expires)");
            }
        }
        result.map(|value| value as Value)
    }

    /// Runs the factory under the options' timeouts and makes the outcome the call's result.
    async fn produce<T, F, Fut>(
        &self,
        key: &str,
        factory: F,
        options: EntryOptions,
        stale: Option<Stale<T>>,
        basis: FillBasis,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext<T>) -> Fut + Send + 'static,
        Fut: Future<Output = FactoryOutput<T>> + Send + 'static,
    {
        bump(&self.tier().counters().factory_runs);
        let ctx = FactoryContext {
            stale: stale.as_ref().map(|s| s.value.clone()),
            etag: stale.as_ref().and_then(|s| s.entry.etag.clone()),
            last_modified: stale.as_ref().and_then(|s| s.entry.last_modified),
            options: options.clone(),
        };
        let soft = options.factory_soft_timeout.filter(|_| stale.is_some());
        let limit = [soft, options.factory_hard_timeout]
            .into_iter()
            .flatten()
            .min();
        // Without a timeout the factory runs in the caller's task (no spawn on the miss
        // path); with one it runs as a task of its own, so that it can outlive the timeout.
        let Some(limit) = limit else {
            let output = factory(ctx).await;
            return self.settle(key, output, stale, &basis, false).await;
        };
        let mut task: JoinHandle<FactoryOutput<T>> = tokio::spawn(factory(ctx));
        let joined = match tokio::time::timeout(limit, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                self.emit("factory_timed_out", || CacheEvent::FactoryTimedOut {
                    key: key.to_string(),
                });
                if options.completes_in_background() {
                    self.complete_in_background(key, task, stale.clone(), basis);
                } else {
                    task.abort();
                }
                return match stale {
                    Some(stale) => {
                        self.tier()
                            .activate_fail_safe(key, &stale.entry, stale.mark, &options);
                        Ok(stale.value)
                    }
                    None => Err(Error::FactoryTimeout(limit)),
                };
            }
        };
        match joined {
            Ok(output) => self.settle(key, output, stale, &basis, false).await,
            Err(e) => {
                let error = Arc::new(FactoryFailed(format!("the factory panicked: {e}")));
                self.fail(key, error, None, stale, &options).await
            }
        }
    }
}
