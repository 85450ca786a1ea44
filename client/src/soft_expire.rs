//! Soft expiry, as FusionCache's `Expire`: the entry leaves Redis (the next read misses and
//! its factory runs), but every instance keeps its L1 copy as a stale one when the entry has
//! fail-safe, so that a failing factory (or an unreachable Redis) can still be answered with
//! it. [`remove`](HybridCache::remove) stays the hard form.
//!
//! The module removes the entries exactly as `HC.DEL`/`HC.DELTAG` would (`HC.STALE`,
//! `HC.STALETAG`) and announces them with the op `stale`; `local_tier.rs` applies it.

use crate::cache::HybridCache;
use crate::error::Result;
use crate::events::CacheEvent;
use crate::outbox::Pending;
use std::time::Instant;

impl HybridCache {
    /// Expires `key` on request: it leaves Redis, so the next `get_or_set` on any instance
    /// runs its factory; an instance whose L1 holds a copy with
    /// [`fail_safe`](crate::EntryOptions::fail_safe) keeps it as a stale value, served only
    /// when the factory fails or Redis cannot be reached, never as fresh. A copy without
    /// fail-safe is dropped, as by [`remove`](Self::remove). True when Redis held the key.
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) -> Result<(), hybridcache::Error> {
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    ///
    /// let options = EntryOptions::new().fail_safe(Duration::from_secs(300));
    /// let price = cache
    ///     .get_or_set("price:42", || async { Ok::<_, std::io::Error>(1999u64) }, options.clone())
    ///     .await?;
    /// cache.expire("price:42").await?; // stale everywhere: the next read asks the factory
    /// let price = cache
    ///     .get_or_set("price:42", || async { Err::<u64, _>(std::io::Error::other("db down")) }, options)
    ///     .await?; // the factory failed: 1999, the stale value
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), fields(cache = %self.name()))]
    pub async fn expire(&self, key: &str) -> Result<bool> {
        let key = self.full_key(key);
        self.state().background().mark_changed(&key);
        let expired = self
            .send_or_queue(
                self.redis().stale(&key),
                || Pending::Stale {
                    key: key.to_string(),
                },
                false,
            )
            .await;
        self.tier().expire_key(&key, None, Instant::now());
        self.emit("expire", || CacheEvent::Expire {
            key: key.to_string(),
        });
        expired
    }

    /// Expires every entry carrying `tag` on request (in a cluster, on every primary), as
    /// [`expire`](Self::expire) does for one key; returns how many Redis held.
    pub async fn expire_by_tag(&self, tag: &str) -> Result<u64> {
        self.expire_by_tags(&[tag]).await
    }

    /// Expires every entry carrying any of `tags` on request (an entry with several counts
    /// once).
    #[tracing::instrument(level = "debug", skip_all, fields(cache = %self.name()))]
    pub async fn expire_by_tags<I, S>(&self, tags: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tags: Vec<String> = tags.into_iter().map(|t| t.as_ref().to_string()).collect();
        if tags.is_empty() {
            return Ok(0);
        }
        let tags = self.full_tags(&tags);
        self.state().background().mark_all_changed();
        let expired = self
            .send_or_queue(
                self.redis().staletag(&tags),
                || Pending::StaleTags { tags: tags.clone() },
                0,
            )
            .await;
        self.tier().l1().stale_tagged(&tags, Instant::now());
        self.emit("expire_by_tag", || CacheEvent::ExpireByTag { tags });
        expired
    }
}
