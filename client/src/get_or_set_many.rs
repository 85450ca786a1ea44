//! `get_or_set_many`: `get_or_set` for many keys at once. L1 answers what it can; the other
//! keys are claimed in the coalescer (a key another caller is loading is awaited, not
//! loaded again), read from Redis with fill leases in one round trip, and whatever Redis
//! lacks comes from one factory call, filled on those leases in one round trip.

use crate::batch::distinct;
use crate::cache::HybridCache;
use crate::coalesce::{Claim, LoadGuard, Wait};
use crate::error::{Error, FactoryFailed, Result};
use crate::events::CacheEvent;
use crate::factory_outcome::Stale;
use crate::fill::{FillBasis, Lease};
use crate::l1::Value;
use crate::l2::with_call_timeout;
use crate::l2::{LeaseOnHit, Leased};
use crate::options::EntryOptions;
use crate::stats::bump;
use crate::store::{PlannedFill, Validators};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// One distinct key of a call: as the caller gave it (what the factory sees) and in full
/// (namespace included: what L1, Redis and the coalescer see).
struct BatchKey {
    given: String,
    full: String,
}

/// What the factory's failure leaves each key it was asked for.
enum FactoryFailure {
    Failed(Arc<dyn std::error::Error + Send + Sync>),
    TimedOut(std::time::Duration),
}

impl HybridCache {
    /// The values under `keys`, in their order: each from L1, else Redis, else one call of
    /// `factory` for all the keys neither has. A key given twice is loaded once.
    ///
    /// `factory` gets the missing keys (as given, each once, in first-seen order) and
    /// returns their values in a map. Each value is written to Redis with `options` (TTL,
    /// tags) on the lease of the read that found its key missing, exactly as
    /// [`get_or_set`](Self::get_or_set) writes its factory's value: a fill Redis refuses
    /// because the key changed meanwhile is returned to this caller but cached nowhere.
    /// The reads of the keys L1 cannot answer go to Redis together (one pipeline of
    /// `HC.FETCH`, or in a cluster one per hash slot, all sent at once), and so do the
    /// writes.
    ///
    /// Stampede protection is per key: a key another call in this process (a
    /// `get_or_set`, a `get_or_set_many`) is already loading is awaited and not handed to
    /// `factory`; while this call loads a key, other calls wait for it.
    ///
    /// The call fails as a whole:
    /// - with [`Error::FactoryMissingKey`] when `factory` leaves out a key it was asked
    ///   for (the values it did return are still cached);
    /// - with [`Error::Factory`] when `factory` fails, unless fail-safe keeps a stale value
    ///   of **every** key it was asked for: those are served instead;
    /// - with [`Error::FactoryTimeout`] past [`factory_hard_timeout`](EntryOptions::factory_hard_timeout),
    ///   with the same fail-safe rule.
    ///
    /// When Redis cannot be reached, keys with a stale value (fail-safe) are served it and
    /// the others go to the factory, whose values are then returned and not cached (there
    /// is no lease to write them with).
    ///
    /// Of `get_or_set`'s options, [`force_refresh`](EntryOptions::force_refresh) skips L1
    /// and Redis for every key and [`redis_timeout`](EntryOptions::redis_timeout) bounds
    /// every Redis command of the call; the factory's soft timeout, background completion,
    /// eager refresh and the distributed lock are `get_or_set`'s only.
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) -> Result<(), hybridcache::Error> {
    /// use hybridcache::EntryOptions;
    /// use std::collections::HashMap;
    ///
    /// let prices = cache
    ///     .get_or_set_many(
    ///         ["price:1", "price:2", "price:3"],
    ///         |missing: Vec<String>| async move {
    ///             // One query for every key neither L1 nor Redis had.
    ///             let found: HashMap<String, u64> =
    ///                 missing.into_iter().map(|key| (key, 1999)).collect();
    ///             Ok::<_, std::io::Error>(found)
    ///         },
    ///         EntryOptions::new().tags(["prices"]),
    ///     )
    ///     .await?;
    /// assert_eq!(prices.len(), 3);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.name()))]
    pub async fn get_or_set_many<T, I, S, F, Fut, E>(
        &self,
        keys: I,
        factory: F,
        options: EntryOptions,
    ) -> Result<Vec<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let keys: Vec<S> = keys.into_iter().collect();
        let (unique, position_of) = distinct(&keys);
        let unique: Vec<BatchKey> = unique
            .into_iter()
            .map(|key| BatchKey {
                given: key.to_string(),
                full: self.full_key(key).into_owned(),
            })
            .collect();
        let options = options.over(self.defaults());
        let timeout = options.redis_timeout;
        let values =
            with_call_timeout(timeout, self.load_batch(&unique, factory, &options)).await?;
        position_of
            .iter()
            .map(|&i| {
                values
                    .get(i)
                    .cloned()
                    .ok_or_else(|| Error::UnexpectedReply {
                        command: "get_or_set_many",
                        detail: format!("no value for key #{i}"),
                    })
            })
            .collect()
    }

    /// The value of every key of `keys` (distinct), in their order.
    async fn load_batch<T, F, Fut, E>(
        &self,
        keys: &[BatchKey],
        factory: F,
        options: &EntryOptions,
    ) -> Result<Vec<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let forced = options.forces_refresh();
        let mut values: Vec<Option<Arc<T>>> = keys.iter().map(|_| None).collect();
        let mut pending = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let hit = match forced {
                true => None,
                false => self.tier().lookup::<T>(&key.given, options.skips_l1()),
            };
            match (hit, values.get_mut(i)) {
                (Some((hit, _)), Some(slot)) => *slot = Some(hit),
                _ => pending.push(i),
            }
        }
        let mut factory = Some(factory);
        // Rounds: a key whose loader gave up unfinished is claimed again in the next one.
        while !pending.is_empty() {
            let mut loads: Vec<(usize, Option<LoadGuard<'_>>)> = Vec::new();
            let mut waits: Vec<(usize, Wait)> = Vec::new();
            for &i in &pending {
                let Some(key) = keys.get(i) else { continue };
                // A forced refresh loads every key itself (as `get_or_set` does).
                if forced {
                    loads.push((i, None));
                    continue;
                }
                match self.in_flight().claim(&key.full) {
                    Claim::Load(guard) => loads.push((i, Some(guard))),
                    Claim::Wait(wait) => waits.push((i, wait)),
                }
            }
            pending.clear();
            // This call's own loads finish before it awaits anyone else's: a caller that
            // waits for one of its keys may hold a key this call waits for.
            if !loads.is_empty() {
                let batch: Vec<&BatchKey> =
                    loads.iter().filter_map(|(i, _)| keys.get(*i)).collect();
                let loaded = self.load_claimed(&batch, &mut factory, options).await;
                let outcomes: Vec<Result<Arc<T>>> = match loaded {
                    Ok(outcomes) => outcomes,
                    Err(e) => loads.iter().map(|_| Err(e.clone())).collect(),
                };
                let mut failed = None;
                for ((i, guard), outcome) in loads.into_iter().zip(outcomes) {
                    if let Some(guard) = guard {
                        guard.finish(outcome.clone().map(|value| value as Value));
                    }
                    match (outcome, values.get_mut(i)) {
                        (Ok(value), Some(slot)) => *slot = Some(value),
                        (Err(e), _) => {
                            failed.get_or_insert(e);
                        }
                        (Ok(_), None) => {}
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            for (i, wait) in waits {
                match (wait.outcome().await, values.get_mut(i)) {
                    (Some(Ok(value)), Some(slot)) => {
                        let value = value.downcast::<T>().map_err(|_| Error::UnexpectedReply {
                            command: "get_or_set_many",
                            detail: "a concurrent load produced another type".into(),
                        })?;
                        *slot = Some(value);
                    }
                    (Some(Err(e)), _) => return Err(e),
                    (None, _) => pending.push(i),
                    (Some(Ok(_)), None) => {}
                }
            }
        }
        values
            .into_iter()
            .map(|value| {
                value.ok_or_else(|| Error::UnexpectedReply {
                    command: "get_or_set_many",
                    detail: "a key was left without a value".into(),
                })
            })
            .collect()
    }

    /// Loads `keys`, claimed by this call (or forced): Redis with leases, then the
    /// factory for what Redis lacks, then the fills. Each key's outcome, in their order;
    /// `Err` as a whole when Redis answered an error.
    async fn load_claimed<T, F, Fut, E>(
        &self,
        keys: &[&BatchKey],
        factory: &mut Option<F>,
        options: &EntryOptions,
    ) -> Result<Vec<Result<Arc<T>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let tier = self.tier();
        let forced = options.forces_refresh();
        let mut outcomes: Vec<Option<Result<Arc<T>>>> = keys.iter().map(|_| None).collect();
        // A concurrent load may have filled L1 while this call claimed (the miss was
        // counted already).
        let mut unanswered = Vec::new();
        for (j, key) in keys.iter().enumerate() {
            match (
                tier.fresh::<T>(&key.full, options.skips_l1() || forced),
                outcomes.get_mut(j),
            ) {
                (Some((hit, _)), Some(slot)) => *slot = Some(Ok(hit)),
                _ => unanswered.push(j),
            }
        }
        let mark = tier.log().mark();
        // Only entries that opted in to fail-safe are kept stale.
        let stale: Vec<Option<Stale<T>>> = keys
            .iter()
            .map(|key| match options.fail_safe {
                Some(_) => {
                    tier.stale::<T>(&key.full)
                        .map(|(value, entry)| Stale { value, entry, mark })
                }
                None => None,
            })
            .collect();
        let mut bases: Vec<FillBasis> = keys
            .iter()
            .map(|_| FillBasis { lease: None, mark })
            .collect();
        let mut misses = Vec::new();
        if options.skips_l2() || unanswered.is_empty() {
            misses = unanswered;
        } else {
            let full: Vec<String> = unanswered
                .iter()
                .filter_map(|&j| keys.get(j).map(|key| key.full.clone()))
                .collect();
            match self.read_l2_many_leased::<T>(&full, options, mark).await {
                Ok(read) => {
                    for (&j, found) in unanswered.iter().zip(read) {
                        match found? {
                            (Some(found), _) if !forced => {
                                if let Some(slot) = outcomes.get_mut(j) {
                                    *slot = Some(Ok(found));
                                }
                            }
                            (_, lease) => {
                                if let Some(basis) = bases.get_mut(j) {
                                    basis.lease = lease;
                                }
                                misses.push(j);
                            }
                        }
                    }
                }
                Err(e) if e.is_unreachable() => {
                    for j in unanswered {
                        match (stale.get(j).and_then(Option::as_ref), keys.get(j)) {
                            (Some(stale), Some(key)) => {
                                tier.activate_fail_safe(
                                    &key.full,
                                    &stale.entry,
                                    stale.mark,
                                    options,
                                );
                                if let Some(slot) = outcomes.get_mut(j) {
                                    *slot = Some(Ok(stale.value.clone()));
                                }
                            }
                            _ => misses.push(j),
                        }
                    }
                    if !misses.is_empty() {
                        tracing::warn!(error = %e, misses = misses.len(), "redis unreachable: running the factory (its values are not cached)");
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !misses.is_empty() {
            let produced = self
                .produce_many(keys, &misses, factory, options, &stale, &bases)
                .await;
            for (j, outcome) in misses.iter().zip(produced) {
                if let Some(slot) = outcomes.get_mut(*j) {
                    *slot = Some(outcome);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(Error::UnexpectedReply {
                        command: "get_or_set_many",
                        detail: "a key was left without an outcome".into(),
                    })
                })
            })
            .collect())
    }

    /// `HC.FETCH key LEASE` of every key in one round trip (for a forced refresh, with
    /// `ALWAYS` and what Redis holds ignored by the caller); what is found is kept in L1
    /// as [`read_l2_leased`](Self::read_l2_leased) keeps it.
    async fn read_l2_many_leased<T>(
        &self,
        keys: &[String],
        options: &EntryOptions,
        mark: u64,
    ) -> Result<Vec<Result<(Option<Arc<T>>, Option<Lease>)>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let on_hit = match options.forces_refresh() {
            true => LeaseOnHit::Wanted,
            false => LeaseOnHit::NotWanted,
        };
        let read = self.redis().fetch_many_leased(keys, on_hit).await?;
        let mut out = Vec::with_capacity(read.len());
        for (key, leased) in keys.iter().zip(read) {
            out.push(match leased {
                Ok(Leased { lease, .. }) if on_hit == LeaseOnHit::Wanted => Ok((None, lease)),
                Ok(Leased { found, lease }) => self
                    .take_fetched(key, found, options, mark)
                    .await
                    .map(|found| (found, lease)),
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }

    /// Runs the factory once for the keys at `misses` and makes each one's outcome: its
    /// value (filled on its basis), or the stale value / error of a failed factory.
    async fn produce_many<T, F, Fut, E>(
        &self,
        keys: &[&BatchKey],
        misses: &[usize],
        factory: &mut Option<F>,
        options: &EntryOptions,
        stale: &[Option<Stale<T>>],
        bases: &[FillBasis],
    ) -> Vec<Result<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let asked: Vec<&BatchKey> = misses
            .iter()
            .filter_map(|&j| keys.get(j).copied())
            .collect();
        let Some(factory) = factory.take() else {
            // Only after a key's loader gave up, once this call's factory had run.
            let error = Error::Factory(Arc::new(FactoryFailed(
                "the load of a key this call waited for was cancelled, and its factory had already run".into(),
            )));
            return asked.iter().map(|_| Err(error.clone())).collect();
        };
        bump(&self.tier().counters().factory_runs);
        let call = factory(asked.iter().map(|key| key.given.clone()).collect());
        let produced = match options.factory_hard_timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(produced) => produced.map_err(|e| FactoryFailure::Failed(Arc::from(e.into()))),
                Err(_) => Err(FactoryFailure::TimedOut(limit)),
            },
            None => call
                .await
                .map_err(|e| FactoryFailure::Failed(Arc::from(e.into()))),
        };
        let mut produced = match produced {
            Ok(produced) => produced,
            Err(failure) => return self.fail_many(&asked, misses, failure, stale, options),
        };
        let mut plans: Vec<PlannedFill<T>> = Vec::new();
        let mut outcomes = Vec::with_capacity(asked.len());
        for (key, &j) in asked.iter().zip(misses) {
            let Some(value) = produced.remove(&key.given) else {
                outcomes.push(Err(Error::FactoryMissingKey {
                    key: key.given.clone(),
                }));
                continue;
            };
            let value = Arc::new(value);
            let basis = bases.get(j).cloned().unwrap_or(FillBasis {
                lease: None,
                mark: 0,
            });
            let plan = self.plan_fill(
                &key.full,
                value.clone(),
                options,
                Validators::default(),
                &basis,
                false,
            );
            plans.extend(plan);
            outcomes.push(Ok(value));
        }
        self.fill_many(plans).await;
        outcomes
    }

    /// The outcome of each key asked of a factory that failed: the stale values when
    /// fail-safe keeps one for every key, else the error.
    fn fail_many<T>(
        &self,
        asked: &[&BatchKey],
        misses: &[usize],
        failure: FactoryFailure,
        stale: &[Option<Stale<T>>],
        options: &EntryOptions,
    ) -> Vec<Result<Arc<T>>>
    where
        T: Send + Sync + 'static,
    {
        let error = match failure {
            FactoryFailure::Failed(error) => {
                tracing::warn!(%error, keys = asked.len(), "factory failed");
                for key in asked {
                    self.emit("factory_error", || CacheEvent::FactoryError {
                        key: key.full.clone(),
                        error: error.to_string(),
                    });
                }
                Error::Factory(error)
            }
            FactoryFailure::TimedOut(limit) => {
                for key in asked {
                    self.emit("factory_timed_out", || CacheEvent::FactoryTimedOut {
                        key: key.full.clone(),
                    });
                }
                Error::FactoryTimeout(limit)
            }
        };
        let kept: Option<Vec<&Stale<T>>> = misses
            .iter()
            .map(|&j| stale.get(j).and_then(Option::as_ref))
            .collect();
        let Some(kept) = kept else {
            return asked.iter().map(|_| Err(error.clone())).collect();
        };
        asked
            .iter()
            .zip(kept)
            .map(|(key, stale)| {
                self.tier()
                    .activate_fail_safe(&key.full, &stale.entry, stale.mark, options);
                Ok(stale.value.clone())
            })
            .collect()
    }
}
