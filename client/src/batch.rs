//! Batch calls: `get_many` and `set_many`. Each key is served and kept exactly as by
//! `get` and `set` (same L1 lookup and admission, same counters and events), but all the
//! keys L1 cannot answer cost one round trip to Redis together (`pipeline.rs`).

use crate::cache::HybridCache;
use crate::error::Result;
use crate::events::CacheEvent;
use crate::l1_admission::Admission;
use crate::l2::with_call_timeout;
use crate::l2_batch::EntryWrite;
use crate::options::EntryOptions;
use crate::outbox::Pending;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The distinct entries of `keys` in first-seen order, and for each position of `keys`
/// the index of its entry there.
pub(crate) fn distinct<S: AsRef<str>>(keys: &[S]) -> (Vec<&str>, Vec<usize>) {
    let mut unique: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let positions = keys
        .iter()
        .map(|key| {
            let key = key.as_ref();
            *index.entry(key).or_insert_with(|| {
                unique.push(key);
                unique.len() - 1
            })
        })
        .collect();
    (unique, positions)
}

impl HybridCache {
    /// The values under `keys`, in their order (`None` where Redis has none): each from L1
    /// when it can answer, all the others from Redis in one round trip (one pipeline of
    /// `HC.FETCH`, or in a cluster one per hash slot, sent at once). A key given twice is
    /// read once.
    ///
    /// Each key is read as by [`get`](Self::get): what Redis returns is kept in L1 unless
    /// an invalidation of it arrived meanwhile, and counts as an L2 hit or miss. When Redis
    /// cannot be reached, the call serves the stale values fail-safe keeps, if it keeps one
    /// for every key L1 could not answer, and fails otherwise; an error Redis gives for one
    /// key fails the call.
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) -> Result<(), hybridcache::Error> {
    /// let prices = cache.get_many::<u64, _, _>(["price:1", "price:2", "price:3"]).await?;
    /// assert_eq!(prices.len(), 3);
    /// let total: u64 = prices.iter().flatten().map(|p| **p).sum();
    /// # let _ = total; Ok(()) }
    /// ```
    pub async fn get_many<T, I, S>(&self, keys: I) -> Result<Vec<Option<Arc<T>>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.get_many_with(keys, EntryOptions::new()).await
    }

    /// [`get_many`](Self::get_many) with options (skip flags, L1 lifetime, fail-safe of the
    /// L1 copies), as [`get_with`](Self::get_with) takes them.
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.name()))]
    pub async fn get_many_with<T, I, S>(
        &self,
        keys: I,
        options: EntryOptions,
    ) -> Result<Vec<Option<Arc<T>>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<S> = keys.into_iter().collect();
        let tier = self.tier();
        let skip_l1 = self.skips_l1(&options);
        let mut values: Vec<Option<Arc<T>>> = Vec::with_capacity(keys.len());
        let mut missed: Vec<(usize, &str)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let hit = tier.lookup::<T>(key.as_ref(), skip_l1).map(|(hit, _)| hit);
            if hit.is_none() {
                missed.push((i, key.as_ref()));
            }
            values.push(hit);
        }
        let options = options.over(self.defaults());
        if missed.is_empty() || options.skips_l2() {
            return Ok(values);
        }
        let missed_keys: Vec<String> = missed
            .iter()
            .map(|(_, key)| self.full_key(key).into_owned())
            .collect();
        let (unique, entry_of) = distinct(&missed_keys);
        let unique: Vec<String> = unique.into_iter().map(str::to_string).collect();
        let mark = tier.log().mark();
        let read = self.redis().fetch_many(&unique);
        let fetched = match with_call_timeout(options.redis_timeout, read).await {
            Ok(fetched) => fetched,
            Err(e) if e.is_unreachable() => {
                let stale: Option<Vec<_>> = unique.iter().map(|key| tier.stale::<T>(key)).collect();
                let Some(stale) = stale else {
                    return Err(e);
                };
                for (key, (_, entry)) in unique.iter().zip(&stale) {
                    tier.activate_fail_safe(key, entry, mark, &options);
                }
                for ((i, _), entry) in missed.iter().zip(&entry_of) {
                    if let (Some(slot), Some((value, _))) = (values.get_mut(*i), stale.get(*entry))
                    {
                        *slot = Some(value.clone());
                    }
                }
                return Ok(values);
            }
            Err(e) => return Err(e),
        };
        let mut found: Vec<Option<Arc<T>>> = Vec::with_capacity(unique.len());
        for (key, entry) in unique.iter().zip(fetched) {
            found.push(self.take_fetched(key, entry?, &options, mark).await?);
        }
        for ((i, _), entry) in missed.iter().zip(&entry_of) {
            if let (Some(slot), Some(value)) = (values.get_mut(*i), found.get(*entry)) {
                slot.clone_from(value);
            }
        }
        Ok(values)
    }

    /// Writes every `(key, value)` of `items` as [`set`](Self::set) does (to Redis with the
    /// options' TTL and tags, and to L1), all in one round trip (one pipeline of `HC.SET`,
    /// or in a cluster one per hash slot, sent at once). A key given twice ends with its
    /// last value.
    ///
    /// With auto-recovery, writes that cannot reach Redis are queued and this returns
    /// `Ok`, as `set` does. An error Redis gives for one entry fails the call after the
    /// others were written (and that entry's L1 copy dropped).
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) -> Result<(), hybridcache::Error> {
    /// use hybridcache::EntryOptions;
    /// cache
    ///     .set_many(
    ///         [("price:1", 1999u64), ("price:2", 2499)],
    ///         EntryOptions::new().tags(["prices"]),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.name()))]
    pub async fn set_many<T, I, K>(&self, items: I, options: EntryOptions) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
        I: IntoIterator<Item = (K, T)>,
        K: AsRef<str>,
    {
        let tier = self.tier();
        let options = options.over(self.defaults());
        let mark = tier.log().mark();
        let tags = self.entry_tags(options.tag_list());
        let mut values = Vec::new();
        let mut writes = Vec::new();
        for (key, value) in items {
            let jittered = options.jittered();
            let key = self.full_key(key.as_ref()).into_owned();
            let bytes = self.format().encode(&value)?;
            writes.push(EntryWrite {
                key,
                bytes,
                ttl: jittered.ttl,
                tags: tags.clone(),
            });
            values.push((Arc::new(value), jittered));
        }
        if writes.is_empty() {
            return Ok(());
        }
        for write in &writes {
            self.state().background().mark_changed(&write.key);
        }
        let outcomes = if options.skips_l2() {
            writes.iter().map(|_| Ok(None)).collect()
        } else {
            let send = async {
                self.drain_outbox().await?;
                self.redis().set_many(&writes).await
            };
            let sent = with_call_timeout(options.redis_timeout, send).await;
            match sent {
                Ok(outcomes) => outcomes.into_iter().map(|o| o.map(Some)).collect(),
                Err(e) if e.is_unreachable() && self.redis().outbox().is_enabled() => {
                    for write in writes {
                        tier.l1().invalidate(&write.key);
                        self.queue(Pending::Set {
                            key: write.key,
                            bytes: write.bytes,
                            ttl: write.ttl,
                            tags: write.tags,
                        });
                    }
                    return Ok(());
                }
                Err(e) => {
                    // Some of the writes may have reached Redis: no copy of ours is current.
                    for write in &writes {
                        tier.l1().invalidate(&write.key);
                    }
                    return Err(e);
                }
            }
        };
        let mut failed = None;
        let outcomes: Vec<Result<_>> = outcomes;
        for ((write, (value, options)), outcome) in writes.into_iter().zip(values).zip(outcomes) {
            let written = match outcome {
                Ok(written) => written,
                Err(e) => {
                    tier.l1().invalidate(&write.key);
                    failed.get_or_insert(e);
                    continue;
                }
            };
            self.emit("set", || CacheEvent::Set {
                key: write.key.clone(),
            });
            if options.skips_l1() {
                tier.l1().invalidate(&write.key);
                continue;
            }
            let admission = Admission {
                origin: written.as_ref().map(|w| w.origin.clone()),
                version: written.as_ref().map_or(0, |w| w.version),
                weight: write.bytes.len() + write.key.len(),
                tags: write.tags,
                l2_expires_at: written.and_then(|w| w.expires_at),
                etag: None,
                last_modified: None,
            };
            tier.admit(&write.key, value, admission, &options, mark);
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::distinct;

    #[test]
    fn distinct_keys_keep_first_seen_order_and_map_every_position() {
        let (unique, positions) = distinct(&["b", "a", "b", "c", "a"]);
        assert_eq!(unique, ["b", "a", "c"]);
        assert_eq!(positions, [0, 1, 0, 2, 1]);
    }
}
