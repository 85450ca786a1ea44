//! Per-entry options.

use std::time::Duration;

/// How one entry is cached. Unset fields take the cache's defaults
/// ([`HybridCacheBuilder::default_options`](crate::HybridCacheBuilder::default_options)).
///
/// ```
/// use hybridcache::EntryOptions;
/// use std::time::Duration;
///
/// let options = EntryOptions::new()
///     .ttl(Duration::from_secs(600))          // lifetime in Redis (L2)
///     .l1_ttl(Duration::from_secs(30))        // at most this long in process memory (L1)
///     .tags(["product:42", "category:lamps"])
///     .fail_safe(Duration::from_secs(300));   // may be served this much longer if Redis is down
/// assert_eq!(options.tag_list(), ["product:42", "category:lamps"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) skip_l1: Option<bool>,
    pub(crate) skip_l2: Option<bool>,
    pub(crate) fail_safe: Option<Duration>,
}

impl EntryOptions {
    /// Options with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lifetime of the entry in Redis (and, unless [`l1_ttl`](Self::l1_ttl) is shorter, in L1).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Longest time the entry stays in L1; never longer than what remains of its Redis TTL.
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = Some(ttl);
        self
    }

    /// Tags: `remove_by_tag` on any of them removes the entry everywhere.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps the entry out of L1 (as HybridCache's `DisableLocalCache`).
    pub fn skip_l1(mut self, skip: bool) -> Self {
        self.skip_l1 = Some(skip);
        self
    }

    /// Keeps the entry out of Redis: it lives in this process only and other instances never
    /// see it (as HybridCache's `DisableDistributedCache`).
    pub fn skip_l2(mut self, skip: bool) -> Self {
        self.skip_l2 = Some(skip);
        self
    }

    /// Opts in to fail-safe: when Redis cannot be reached, the last value may be served for
    /// up to `max_stale` after it expired or went unconfirmed, instead of an error.
    pub fn fail_safe(mut self, max_stale: Duration) -> Self {
        self.fail_safe = Some(max_stale);
        self
    }

    /// The tags set so far.
    pub fn tag_list(&self) -> &[String] {
        &self.tags
    }

    /// These options over `defaults`: fields set here win; tags are this entry's own when
    /// given, else the defaults'.
    pub(crate) fn over(&self, defaults: &EntryOptions) -> EntryOptions {
        EntryOptions {
            ttl: self.ttl.or(defaults.ttl),
            l1_ttl: self.l1_ttl.or(defaults.l1_ttl),
            tags: if self.tags.is_empty() {
                defaults.tags.clone()
            } else {
                self.tags.clone()
            },
            skip_l1: self.skip_l1.or(defaults.skip_l1),
            skip_l2: self.skip_l2.or(defaults.skip_l2),
            fail_safe: self.fail_safe.or(defaults.fail_safe),
        }
    }

    pub(crate) fn skips_l1(&self) -> bool {
        self.skip_l1.unwrap_or(false)
    }

    pub(crate) fn skips_l2(&self) -> bool {
        self.skip_l2.unwrap_or(false)
    }

    /// How long an entry may stay in L1 given what remains of its Redis lifetime
    /// (`None`: no expiry).
    pub(crate) fn l1_lifetime(&self, l2_remaining: Option<Duration>) -> Option<Duration> {
        [self.l1_ttl, self.ttl, l2_remaining]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_options_win_over_defaults_field_by_field() {
        let defaults = EntryOptions::new()
            .ttl(Duration::from_secs(60))
            .tags(["d"])
            .fail_safe(Duration::from_secs(5));
        let merged = EntryOptions::new()
            .l1_ttl(Duration::from_secs(1))
            .over(&defaults);
        assert_eq!(merged.ttl, Some(Duration::from_secs(60)));
        assert_eq!(merged.l1_ttl, Some(Duration::from_secs(1)));
        assert_eq!(merged.tags, ["d"]);
        assert_eq!(merged.fail_safe, Some(Duration::from_secs(5)));
        let own_tags = EntryOptions::new().tags(["x"]).over(&defaults);
        assert_eq!(own_tags.tags, ["x"]);
    }

    #[test]
    fn l1_lifetime_never_exceeds_the_remaining_redis_lifetime() {
        let o = EntryOptions::new()
            .ttl(Duration::from_secs(60))
            .l1_ttl(Duration::from_secs(30));
        assert_eq!(
            o.l1_lifetime(Some(Duration::from_secs(10))),
            Some(Duration::from_secs(10))
        );
        assert_eq!(o.l1_lifetime(None), Some(Duration::from_secs(30)));
        assert_eq!(EntryOptions::new().l1_lifetime(None), None);
    }
}
