//! Clearing a whole cache (its namespace) on every instance.
//!
//! Every entry a cache writes carries one more tag, [`CLEAR_TAG`] behind the namespace
//! (`shop:*`). Clearing is then the module's tag removal of that one tag: O(1) in Redis
//! (the keys are logically gone at once and deleted by the module's removal timer, never
//! blocking Redis), announced as one tag event that makes every instance drop its L1 of
//! that namespace, and refused to fills that read before it (their write names the tag). The
//! price is one tag link per entry in Redis; `HybridCacheBuilder::clearable(false)` saves it.

use crate::cache::HybridCache;
use crate::error::{Error, Result};

/// The tag (behind the namespace) every entry carries so that
/// [`HybridCache::clear`] can remove them all. Reserved: a tag of your own named `*` would
/// be cleared with the cache.
pub const CLEAR_TAG: &str = "*";

impl HybridCache {
    /// Removes every entry of this cache (its namespace) from Redis and from every
    /// instance's L1, entries kept only in L1 included; returns how many Redis held.
    ///
    /// Redis is not blocked whatever the size: the entries are logically removed at once
    /// (no read returns them, no fill that read before the call is accepted) and deleted in
    /// the background. Entries written without the clear tag (by a cache built with
    /// [`clearable(false)`](crate::HybridCacheBuilder::clearable), by an older client, or by
    /// `HC.SET` outside this library) are not removed. In a cluster every primary is asked.
    ///
    /// ```no_run
    /// # async fn example(cache: hybridcache::HybridCache) -> Result<(), hybridcache::Error> {
    /// let products = cache.named("products", "products:", Default::default(), 10_000);
    /// let removed = products.clear().await?; // "orders:" entries stay
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<u64> {
        if self.tier().clear_tag().is_none() {
            return Err(Error::Config(
                "clear() needs a cache built with clearable(true) (the default)".into(),
            ));
        }
        let removed = self.remove_by_tags([CLEAR_TAG]).await;
        // Also what only this instance holds, now rather than when the event is back.
        self.tier().clear_l1();
        removed
    }

    /// The tags an entry written with `tags` carries in Redis: the namespaced tags, and the
    /// cache's clear tag.
    pub(crate) fn entry_tags(&self, tags: &[String]) -> Vec<String> {
        let mut full = self.full_tags(tags);
        if let Some(clear) = self.tier().clear_tag() {
            if !full.iter().any(|tag| tag == clear) {
                full.push(clear.to_string());
            }
        }
        full
    }
}
