//! `get_or_set`: L1, then Redis, then the factory, with the resilience around the factory:
//! soft and hard timeouts with background completion, fail-safe (stale values, throttle,
//! default values, declared failures), eager refresh, adaptive caching, conditional refresh
//! and distributed stampede protection.

use crate::cache::{HybridCache, Inner};
use crate::error::{Error, FactoryFailed, Result};
use crate::events::CacheEvent;
use crate::factory::{FactoryContext, FactoryOutput, Outcome};
use crate::l1::{L1Entry, Value};
use crate::options::EntryOptions;
use crate::stats::bump;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a caller waiting for another instance's factory looks for its value.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// The stale value a load may fall back on, and the invalidation-log mark taken before it
/// was read (fail-safe never keeps it if an invalidation since names it).
struct Stale<T> {
    value: Arc<T>,
    entry: Arc<L1Entry>,
    mark: u64,
}

/// A factory running in the background for a key (eager refresh, a timed-out load); the
/// key's registration ends when this is dropped, even if the factory panicked. It holds the
/// cache weakly: a factory that never finishes does not keep a dropped cache (and its
/// connections) alive.
struct Background {
    cache: Weak<Inner>,
    key: String,
    /// Invalidation-log mark taken before the factory started.
    mark: u64,
}

impl Background {
    /// Registers a background factory for `key`; `None` when one is already running.
    fn start(cache: &HybridCache, key: &str) -> Option<Background> {
        let mark = cache.inner.shared.log.mark();
        let mut running = cache
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if running.contains_key(key) {
            return None;
        }
        running.insert(key.to_string(), false);
        Some(Background {
            cache: Arc::downgrade(&cache.inner),
            key: key.to_string(),
            mark,
        })
    }

    /// Whether the key changed since the factory started (this handle wrote or removed it,
    /// or an invalidation named it or one of `tags`): then its result is stale.
    fn overtaken(&self, inner: &Inner, tags: &[String]) -> bool {
        let dirty = inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.key)
            .copied()
            .unwrap_or(true);
        let ns = &inner.shared.namespace;
        let tags: Vec<String> = tags.iter().map(|t| format!("{ns}{t}")).collect();
        dirty
            || inner
                .shared
                .log
                // The key expiring in Redis meanwhile is no change: the result refills it.
                .affects_unless_expired(self.mark, &self.key, &tags, None, 0, true)
    }

    /// Caches the factory's output unless the key changed meanwhile (or the cache is
    /// gone); never serves anything, so a failure is only logged.
    async fn finish<T>(self, output: FactoryOutput<T>, stale: Option<Stale<T>>)
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let Some(inner) = self.cache.upgrade() else {
            return;
        };
        let cache = HybridCache { inner };
        if let Outcome::Failed { error, .. } = &output.outcome {
            tracing::warn!(%error, key = self.key, "background factory failed");
            cache.emit("factory_error", || CacheEvent::FactoryError {
                key: self.key.clone(),
                error: error.to_string(),
            });
            return;
        }
        if self.overtaken(&cache.inner, &output.options.tags) {
            tracing::debug!(
                key = self.key,
                "background result dropped: the key changed meanwhile"
            );
            return;
        }
        if let Err(e) = cache.settle(&self.key, output, stale).await {
            tracing::warn!(error = %e, key = self.key, "background result not cached");
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(inner) = self.cache.upgrade() {
            inner
                .background
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.key);
        }
    }
}

impl<T> Clone for Stale<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            entry: self.entry.clone(),
            mark: self.mark,
        }
    }
}

impl HybridCache {
    /// The value under `key`: from L1, else Redis, else `factory`, whose value is then
    /// written to Redis with `options` (TTL, tags) and kept in L1. Concurrent calls for one
    /// key in this process run the factory once and share its result.
    ///
    /// The factory runs as a task of its own (hence `Send + 'static`), so that with
    /// [`factory_soft_timeout`](EntryOptions::factory_soft_timeout) or
    /// [`factory_hard_timeout`](EntryOptions::factory_hard_timeout) it can finish in the
    /// background. A factory error fails the call unless fail-safe keeps a stale value.
    /// When Redis cannot be reached, a stale value (fail-safe) is served if there is one,
    /// else the factory runs and its value is returned (and queued for Redis with
    /// auto-recovery).
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
        E: std::error::Error + Send + Sync + 'static,
    {
        self.get_or_set_with(
            key,
            move |ctx: FactoryContext<T>| async move {
                match factory().await {
                    Ok(value) => ctx.value(value),
                    Err(e) => ctx.failed_with(Arc::new(e)),
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
    #[tracing::instrument(level = "debug", skip(self, factory, options), fields(cache = %self.inner.name))]
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
        // Borrowed when there is no namespace: the hit path allocates nothing.
        let key = self.full_key(key);
        if let Some((hit, entry)) = self.l1_hit::<T>(&key, self.skips_l1(&options)).await {
            if entry
                .refresh_after
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                self.refresh_in_background(key.into_owned(), factory, options, hit.clone(), entry);
            }
            return Ok(hit);
        }
        let options = options.over(&self.inner.defaults);
        let value = self
            .inner
            .in_flight
            .run(&key, self.load(&key, factory, options))
            .await?;
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
        // A concurrent load may have filled L1 while this one waited for its turn (the miss
        // was counted already).
        if let Some((hit, _)) = self.l1_fresh::<T>(key, options.skips_l1()).await {
            return Ok(hit);
        }
        let mark = self.inner.shared.log.mark();
        // Only entries that opted in to fail-safe are kept stale.
        let stale = match options.fail_safe {
            Some(_) => {
                self.stale::<T>(key)
                    .await
                    .map(|(value, entry)| Stale { value, entry, mark })
            }
            None => None,
        };
        let mut lock = None;
        if !options.skips_l2() {
            match self.read_l2::<T>(key, &options).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {
                    if let Some(wait) = options.distributed_lock {
                        match self.lock_or_wait::<T>(key, wait, &options).await {
                            Locked::Found(found) => return Ok(found),
                            Locked::Held(token) => lock = Some(token),
                            Locked::GaveUp => {}
                        }
                    }
                }
                Err(e) if e.is_unreachable() => {
                    if let Some(stale) = &stale {
                        self.activate_fail_safe(key, &stale.entry, stale.mark, &options)
                            .await;
                        return Ok(stale.value.clone());
                    }
                    tracing::warn!(error = %e, key, "redis unreachable: running the factory");
                }
                Err(e) => return Err(e),
            }
        }
        let result = self.produce(key, factory, options, stale).await;
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
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext<T>) -> Fut + Send + 'static,
        Fut: Future<Output = FactoryOutput<T>> + Send + 'static,
    {
        bump(&self.inner.shared.counters.factory_runs);
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
            return self.settle(key, output, stale).await;
        };
        let mut task: JoinHandle<FactoryOutput<T>> = tokio::spawn(factory(ctx));
        let joined = match Some(limit) {
            None => (&mut task).await,
            Some(limit) => match tokio::time::timeout(limit, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    self.emit("factory_timed_out", || CacheEvent::FactoryTimedOut {
                        key: key.to_string(),
                    });
                    // At most one background factory per key: a later timed-out one is
                    // cancelled instead of piling up.
                    let background = options
                        .completes_in_background()
                        .then(|| Background::start(self, key))
                        .flatten();
                    match background {
                        Some(background) => {
                            let stale = stale.clone();
                            tokio::spawn(async move {
                                if let Ok(output) = task.await {
                                    background.finish(output, stale).await;
                                }
                            });
                        }
                        None => task.abort(),
                    }
                    return match stale {
                        Some(stale) => {
                            self.activate_fail_safe(key, &stale.entry, stale.mark, &options)
                                .await;
                            Ok(stale.value)
                        }
                        None => Err(Error::FactoryTimeout(limit)),
                    };
                }
            },
        };
        match joined {
            Ok(output) => self.settle(key, output, stale).await,
            Err(e) => {
                let error = Arc::new(FactoryFailed(format!("the factory panicked: {e}")));
                self.fail(key, error, None, stale, &options).await
            }
        }
    }

    /// Caches what the factory produced and returns the value to serve.
    async fn settle<T>(
        &self,
        key: &str,
        output: FactoryOutput<T>,
        stale: Option<Stale<T>>,
    ) -> Result<Arc<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let options = output.options.over(&self.inner.defaults);
        match output.outcome {
            Outcome::Value(value) => {
                let value = Arc::new(value);
                self.keep_produced(
                    key,
                    value.clone(),
                    &options,
                    output.etag,
                    output.last_modified,
                )
                .await;
                Ok(value)
            }
            Outcome::NotModified => match stale {
                Some(stale) => {
                    self.keep_produced(
                        key,
                        stale.value.clone(),
                        &options,
                        output.etag,
                        output.last_modified,
                    )
                    .await;
                    Ok(stale.value)
                }
                None => {
                    let error = Arc::new(FactoryFailed(
                        "the factory answered \"not modified\" but no stale value is kept".into(),
                    ));
                    self.fail(key, error, None, None, &options).await
                }
            },
            Outcome::Failed { error, default } => {
                self.fail(key, error, default, stale, &options).await
            }
        }
    }

    /// Writes a produced value; a failure to reach Redis is logged (the value is served
    /// anyway, and queued with auto-recovery).
    async fn keep_produced<T>(
        &self,
        key: &str,
        value: Arc<T>,
        options: &EntryOptions,
        etag: Option<String>,
        last_modified: Option<std::time::SystemTime>,
    ) where
        T: Serialize + Send + Sync + 'static,
    {
        if let Err(e) = self.write(key, value, options, etag, last_modified).await {
            tracing::warn!(error = %e, key, "factory value not cached: writing it to Redis failed");
        }
    }

    /// A failed factory: the stale value (fail-safe), else the default, else the error.
    async fn fail<T>(
        &self,
        key: &str,
        error: Arc<dyn std::error::Error + Send + Sync>,
        default: Option<T>,
        stale: Option<Stale<T>>,
        options: &EntryOptions,
    ) -> Result<Arc<T>>
    where
        T: Send + Sync + 'static,
    {
        tracing::warn!(%error, key, "factory failed");
        self.emit("factory_error", || CacheEvent::FactoryError {
            key: key.to_string(),
            error: error.to_string(),
        });
        if let Some(stale) = stale {
            self.activate_fail_safe(key, &stale.entry, stale.mark, options)
                .await;
            return Ok(stale.value);
        }
        match default {
            Some(default) => Ok(Arc::new(default)),
            None => Err(Error::Factory(error)),
        }
    }

    /// Starts one background refresh of `key` (unless one is running): the factory runs
    /// with the current value as its stale value, and its result replaces it unless the key
    /// changed meanwhile.
    fn refresh_in_background<T, F, Fut>(
        &self,
        key: String,
        factory: F,
        options: EntryOptions,
        current: Arc<T>,
        entry: Arc<L1Entry>,
    ) where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(FactoryContext<T>) -> Fut + Send + 'static,
        Fut: Future<Output = FactoryOutput<T>> + Send + 'static,
    {
        let Some(background) = Background::start(self, &key) else {
            return;
        };
        self.emit("eager_refresh", || CacheEvent::EagerRefresh {
            key: key.clone(),
        });
        let options = options.over(&self.inner.defaults);
        let ctx = FactoryContext {
            stale: Some(current.clone()),
            etag: entry.etag.clone(),
            last_modified: entry.last_modified,
            options: options.clone(),
        };
        let stale = Stale {
            value: current,
            entry,
            mark: background.mark,
        };
        let factory_runs = self.inner.shared.clone();
        tokio::spawn(async move {
            bump(&factory_runs.counters.factory_runs);
            let run = tokio::spawn(factory(ctx));
            let output = match options.factory_hard_timeout {
                Some(limit) => match tokio::time::timeout(limit, run).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(key = background.key, "eager refresh timed out");
                        return;
                    }
                },
                None => run.await,
            };
            // A panicking factory ends the refresh; the guard frees the key either way.
            if let Ok(output) = output {
                background.finish(output, Some(stale)).await;
            }
        });
    }

    /// Distributed stampede protection: takes the key's lock in Redis, or waits (up to
    /// `wait`) for the holder's value to appear in Redis or for the lock to be free.
    async fn lock_or_wait<T>(&self, key: &str, wait: Duration, options: &EntryOptions) -> Locked<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let lock = lock_key(key);
        let token = lock_token();
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(wait)
            .unwrap_or(now + Duration::from_secs(86_400));
        loop {
            match self.redis().try_lock(&lock, &token, wait).await {
                Ok(true) => {
                    // The previous holder may have written just before releasing.
                    return match self.read_l2::<T>(key, options).await {
                        Ok(Some(found)) => {
                            let _ = self.redis().unlock(&lock, &token).await;
                            Locked::Found(found)
                        }
                        _ => Locked::Held(token),
                    };
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, key, "stampede lock unavailable: running the factory");
                    return Locked::GaveUp;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Locked::GaveUp;
            }
            tokio::time::sleep(LOCK_POLL).await;
            if let Ok(Some(found)) = self.read_l2::<T>(key, options).await {
                return Locked::Found(found);
            }
        }
    }
}

enum Locked<T> {
    /// Another instance produced the value meanwhile.
    Found(Arc<T>),
    /// This caller holds the lock (with this token) and runs the factory.
    Held(String),
    /// The wait is over or Redis cannot lock: run the factory anyway.
    GaveUp,
}

/// The Redis key of `key`'s stampede lock.
fn lock_key(key: &str) -> String {
    format!("{key}:hc-lock")
}

/// A random token, so that only the holder releases a lock.
fn lock_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}
