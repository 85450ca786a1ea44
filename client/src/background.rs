//! Factories that run in the background: a load that outlived its timeout completing, and
//! eager refresh. At most one per key; each holds the cache weakly, so that a factory that
//! never finishes does not keep a dropped cache (and its connections) alive.

use crate::cache::{CacheState, HybridCache};
use crate::events::CacheEvent;
use crate::factory::{FactoryContext, FactoryOutput, Outcome};
use crate::factory_outcome::Stale;
use crate::fill::FillBasis;
use crate::l1::L1Entry;
use crate::l2::{LeaseOnHit, Leased};
use crate::options::EntryOptions;
use crate::stats::bump;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use tokio::task::JoinHandle;

/// Keys with a factory running in the background, and whether this handle wrote or
/// removed the key since it started (then its result is not cached).
#[derive(Default)]
pub(crate) struct BackgroundFactories {
    running: Mutex<HashMap<String, bool>>,
}

impl BackgroundFactories {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This handle wrote or removed `key`.
    pub(crate) fn mark_changed(&self, key: &str) {
        if let Some(changed) = self.lock().get_mut(key) {
            *changed = true;
        }
    }

    /// This handle removed tags: any running factory's key may carry one.
    pub(crate) fn mark_all_changed(&self) {
        self.lock().values_mut().for_each(|changed| *changed = true);
    }

    /// Registers `key`; false when a factory runs for it already.
    fn claim(&self, key: &str) -> bool {
        let mut running = self.lock();
        if running.contains_key(key) {
            return false;
        }
        running.insert(key.to_string(), false);
        true
    }

    fn changed(&self, key: &str) -> bool {
        self.lock().get(key).copied().unwrap_or(true)
    }

    fn release(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// A factory running in the background for a key; the key's registration ends when this is
/// dropped, even if the factory panicked.
struct Background {
    cache: Weak<CacheState>,
    key: String,
    /// Invalidation-log mark taken before the factory started.
    mark: u64,
}

impl Background {
    /// Registers a background factory for `key`; `None` when one is already running.
    fn start(cache: &HybridCache, key: &str) -> Option<Background> {
        let mark = cache.tier().log().mark();
        if !cache.state().background().claim(key) {
            return None;
        }
        Some(Background {
            cache: Arc::downgrade(cache.state()),
            key: key.to_string(),
            mark,
        })
    }

    fn cache(&self) -> Option<HybridCache> {
        self.cache.upgrade().map(HybridCache::from_shared_state)
    }

    /// Fills the factory's output on `basis` (or the cache is gone); never serves
    /// anything, so a failure is only logged.
    async fn finish<T>(self, output: FactoryOutput<T>, stale: Option<Stale<T>>, basis: FillBasis)
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let Some(cache) = self.cache() else {
            return;
        };
        if let Outcome::Failed { error, .. } = &output.outcome {
            tracing::warn!(%error, key = self.key, "background factory failed");
            cache.emit("factory_error", || CacheEvent::FactoryError {
                key: self.key.clone(),
                error: error.to_string(),
            });
            return;
        }
        let changed_here = cache.state().background().changed(&self.key);
        if let Err(e) = cache
            .settle(&self.key, output, stale, &basis, changed_here)
            .await
        {
            tracing::warn!(error = %e, key = self.key, "background result not cached");
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(state) = self.cache.upgrade() {
            state.background().release(&self.key);
        }
    }
}

impl HybridCache {
    /// Lets a factory that ran past its timeout finish in the background and fill its
    /// value on `basis`; false (and the factory is cancelled) when one already runs for
    /// `key`, so that timed-out factories never pile up.
    pub(crate) fn complete_in_background<T>(
        &self,
        key: &str,
        task: JoinHandle<FactoryOutput<T>>,
        stale: Option<Stale<T>>,
        basis: FillBasis,
    ) -> bool
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let Some(background) = Background::start(self, key) else {
            task.abort();
            return false;
        };
        tokio::spawn(async move {
            if let Ok(output) = task.await {
                background.finish(output, stale, basis).await;
            }
        });
        true
    }

    /// Starts one background refresh of `key` (unless one is running): a lease is taken
    /// (`HC.FETCH key LEASE`), then the factory runs with the current value as its stale
    /// value, and its result is filled on that lease: a change of the key after the lease
    /// refuses it.
    pub(crate) fn refresh_in_background<T, F, Fut>(
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
        let options = options.over(self.defaults());
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
        let tier = self.tier_handle();
        tokio::spawn(async move {
            let lease = if options.skips_l2() {
                None
            } else {
                let Some(cache) = background.cache() else {
                    return;
                };
                match cache
                    .redis()
                    .fetch_leased(&background.key, LeaseOnHit::Wanted)
                    .await
                {
                    Ok(Leased {
                        lease: Some(lease), ..
                    }) => Some(lease),
                    Ok(Leased { lease: None, .. }) => return,
                    Err(e) => {
                        // Its value could not be stored: the refresh would be wasted.
                        tracing::debug!(error = %e, key = background.key, "eager refresh skipped: no lease");
                        return;
                    }
                }
            };
            bump(&tier.counters().factory_runs);
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
                let basis = FillBasis {
                    lease,
                    mark: background.mark,
                };
                background.finish(output, Some(stale), basis).await;
            }
        });
    }
}
