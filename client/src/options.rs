//! Per-entry options.

use std::sync::Arc;
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
    /// Shared by clones (`None`: no tags): a call that clones its options copies no tag.
    pub(crate) tags: Option<Arc<[String]>>,
    pub(crate) skip_l1: Option<bool>,
    pub(crate) skip_l2: Option<bool>,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) fail_safe_throttle: Option<Duration>,
    pub(crate) factory_soft_timeout: Option<Duration>,
    pub(crate) factory_hard_timeout: Option<Duration>,
    pub(crate) background_completion: Option<bool>,
    /// Eager refresh threshold in millionths of the lifetime.
    pub(crate) eager_refresh: Option<u32>,
    pub(crate) jitter: Option<Duration>,
    pub(crate) distributed_lock: Option<Duration>,
    pub(crate) force_refresh: Option<bool>,
    pub(crate) redis_timeout: Option<Duration>,
}

/// How long a stale value served by fail-safe is served without retrying the failing
/// source, unless [`EntryOptions::fail_safe_throttle`] says otherwise (FusionCache's
/// default too).
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

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
        let tags: Arc<[String]> = tags.into_iter().map(Into::into).collect();
        self.tags = (!tags.is_empty()).then_some(tags);
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

    /// After fail-safe served a stale value, keep serving it for `throttle` before trying
    /// the failing source again (default 30 s), so a failing source is not called on every
    /// read.
    ///
    /// ```
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    /// // Serve the last good value for up to an hour when the source fails, and ask the
    /// // source again at most every 10 s meanwhile.
    /// let options = EntryOptions::new()
    ///     .ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .fail_safe_throttle(Duration::from_secs(10));
    /// # let _ = options;
    /// ```
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = Some(throttle);
        self
    }

    /// Soft factory timeout: when the factory takes longer and a stale value is kept
    /// (fail-safe), the stale value is returned; the factory goes on in the background and
    /// updates the cache when it finishes.
    ///
    /// ```
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    /// // Answer within 100 ms with the stale value if the source is slow; never wait more
    /// // than 2 s; let the slow call finish and refresh the cache in the background.
    /// let options = EntryOptions::new()
    ///     .fail_safe(Duration::from_secs(600))
    ///     .factory_soft_timeout(Duration::from_millis(100))
    ///     .factory_hard_timeout(Duration::from_secs(2));
    /// # let _ = options;
    /// ```
    pub fn factory_soft_timeout(mut self, timeout: Duration) -> Self {
        self.factory_soft_timeout = Some(timeout);
        self
    }

    /// Hard factory timeout: past it the call returns [`Error::FactoryTimeout`]
    /// (or the stale value, when fail-safe keeps one); the factory still completes in the
    /// background unless [`background_completion`](Self::background_completion) is off.
    ///
    /// [`Error::FactoryTimeout`]: crate::Error::FactoryTimeout
    pub fn factory_hard_timeout(mut self, timeout: Duration) -> Self {
        self.factory_hard_timeout = Some(timeout);
        self
    }

    /// Whether a timed-out factory goes on in the background and caches its value when it
    /// finishes (default true). When false it is cancelled.
    pub fn background_completion(mut self, allow: bool) -> Self {
        self.background_completion = Some(allow);
        self
    }

    /// Eager refresh: a hit on an entry past `threshold` of its lifetime (0.0 < threshold
    /// < 1.0, e.g. 0.8) starts one background refresh (the factory, coalesced), so a hot key
    /// never expires under load. Needs a lifetime (a TTL).
    ///
    /// ```
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    /// // Hits in the last 20 % of the 5-minute lifetime refresh the entry in the background.
    /// let options = EntryOptions::new().ttl(Duration::from_secs(300)).eager_refresh(0.8);
    /// # let _ = options;
    /// ```
    pub fn eager_refresh(mut self, threshold: f64) -> Self {
        let millionths = (threshold.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
        self.eager_refresh = Some(millionths);
        self
    }

    /// Adds a random extra of up to `max` to the entry's TTL in Redis and in L1 at each
    /// write, so entries written together do not all expire together.
    ///
    /// ```
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    /// // Between 10 and 11 minutes.
    /// let options = EntryOptions::new()
    ///     .ttl(Duration::from_secs(600))
    ///     .jitter(Duration::from_secs(60));
    /// # let _ = options;
    /// ```
    pub fn jitter(mut self, max: Duration) -> Self {
        self.jitter = Some(max);
        self
    }

    /// Distributed stampede protection: before running the factory, take a lock in Redis
    /// (one per key, expiring after `max_wait`), so that across every instance one factory
    /// runs per key at a time; the others wait up to `max_wait` for its value and then run
    /// their own. An efficiency measure, not a guarantee: the lock expires, and when Redis
    /// cannot be reached the factory runs anyway.
    ///
    /// ```
    /// use hybridcache::EntryOptions;
    /// use std::time::Duration;
    /// // An expensive report: one instance computes it, the others wait up to 5 s for it.
    /// let options = EntryOptions::new()
    ///     .ttl(Duration::from_secs(3600))
    ///     .distributed_lock(Duration::from_secs(5));
    /// # let _ = options;
    /// ```
    pub fn distributed_lock(mut self, max_wait: Duration) -> Self {
        self.distributed_lock = Some(max_wait);
        self
    }

    /// `get_or_set` ignores what L1 and Redis hold and runs the factory, writing its value
    /// as any fill (conditionally: refused if the key changed meanwhile). For a caller that
    /// knows the source changed. The value held so far is still the fail-safe fallback (with
    /// [`fail_safe`](Self::fail_safe)) and the factory's stale value (conditional refresh).
    /// Forced refreshes are not coalesced with other loads of the key. Other calls ignore it.
    ///
    /// ```
    /// use hybridcache::EntryOptions;
    /// let options = EntryOptions::new().force_refresh(true);
    /// # let _ = options;
    /// ```
    pub fn force_refresh(mut self, force: bool) -> Self {
        self.force_refresh = Some(force);
        self
    }

    /// Bounds each Redis command of this call (FusionCache's distributed cache timeout):
    /// a read that takes longer fails with [`Error::Timeout`](crate::Error::Timeout), so
    /// `get_or_set` serves the fail-safe value or runs the factory instead of waiting. At
    /// most the cache's
    /// [`command_timeout`](crate::HybridCacheBuilder::command_timeout), which bounds every
    /// reply. A timed-out command counts as a failure for the circuit breaker.
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = Some(timeout);
        self
    }

    /// The tags set so far.
    pub fn tag_list(&self) -> &[String] {
        self.tags.as_deref().unwrap_or_default()
    }

    /// These options over `defaults`: fields set here win; tags are this entry's own when
    /// given, else the defaults'.
    pub(crate) fn over(&self, defaults: &EntryOptions) -> EntryOptions {
        EntryOptions {
            ttl: self.ttl.or(defaults.ttl),
            l1_ttl: self.l1_ttl.or(defaults.l1_ttl),
            tags: self.tags.clone().or_else(|| defaults.tags.clone()),
            skip_l1: self.skip_l1.or(defaults.skip_l1),
            skip_l2: self.skip_l2.or(defaults.skip_l2),
            fail_safe: self.fail_safe.or(defaults.fail_safe),
            fail_safe_throttle: self.fail_safe_throttle.or(defaults.fail_safe_throttle),
            factory_soft_timeout: self.factory_soft_timeout.or(defaults.factory_soft_timeout),
            factory_hard_timeout: self.factory_hard_timeout.or(defaults.factory_hard_timeout),
            background_completion: self
                .background_completion
                .or(defaults.background_completion),
            eager_refresh: self.eager_refresh.or(defaults.eager_refresh),
            jitter: self.jitter.or(defaults.jitter),
            distributed_lock: self.distributed_lock.or(defaults.distributed_lock),
            force_refresh: self.force_refresh.or(defaults.force_refresh),
            redis_timeout: self.redis_timeout.or(defaults.redis_timeout),
        }
    }

    pub(crate) fn throttle(&self) -> Duration {
        self.fail_safe_throttle
            .unwrap_or(DEFAULT_FAIL_SAFE_THROTTLE)
    }

    pub(crate) fn completes_in_background(&self) -> bool {
        self.background_completion.unwrap_or(true)
    }

    /// When an entry kept now for `lifetime` should be refreshed eagerly.
    pub(crate) fn refresh_point(&self, lifetime: Option<Duration>) -> Option<Duration> {
        let threshold = self.eager_refresh?;
        let lifetime = lifetime?;
        (threshold > 0 && threshold < 1_000_000)
            .then(|| lifetime.mul_f64(f64::from(threshold) / 1_000_000.0))
    }

    /// A random extra lifetime in `[0, jitter)`.
    pub(crate) fn jitter_extra(&self) -> Duration {
        match self.jitter {
            Some(max) if !max.is_zero() => {
                let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(crate::random::random_u64() % nanos)
            }
            _ => Duration::ZERO,
        }
    }

    /// These options with the jitter drawn once and added to both TTLs.
    pub(crate) fn jittered(&self) -> EntryOptions {
        let extra = self.jitter_extra();
        if extra.is_zero() {
            return self.clone();
        }
        let mut out = self.clone();
        out.ttl = self.ttl.map(|t| t.saturating_add(extra));
        out.l1_ttl = self.l1_ttl.map(|t| t.saturating_add(extra));
        out
    }

    pub(crate) fn skips_l1(&self) -> bool {
        self.skip_l1.unwrap_or(false)
    }

    pub(crate) fn forces_refresh(&self) -> bool {
        self.force_refresh.unwrap_or(false)
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
        assert_eq!(merged.tag_list(), ["d"]);
        assert_eq!(merged.fail_safe, Some(Duration::from_secs(5)));
        let own_tags = EntryOptions::new().tags(["x"]).over(&defaults);
        assert_eq!(own_tags.tag_list(), ["x"]);
    }

    #[test]
    fn resilience_options_merge_and_derive() {
        let defaults = EntryOptions::new()
            .eager_refresh(0.8)
            .factory_soft_timeout(Duration::from_millis(10));
        let o = EntryOptions::new()
            .jitter(Duration::from_millis(100))
            .over(&defaults);
        assert_eq!(o.factory_soft_timeout, Some(Duration::from_millis(10)));
        assert_eq!(
            o.refresh_point(Some(Duration::from_secs(10))),
            Some(Duration::from_secs(8))
        );
        assert_eq!(o.refresh_point(None), None);
        assert_eq!(o.throttle(), DEFAULT_FAIL_SAFE_THROTTLE);
        assert!(o.completes_in_background());
        let ttl = Duration::from_secs(1);
        for _ in 0..20 {
            let j = o.clone().ttl(ttl).jittered();
            let extra = j.ttl.unwrap() - ttl;
            assert!(extra < Duration::from_millis(100), "{extra:?}");
        }
        assert!(EntryOptions::new()
            .eager_refresh(1.5)
            .refresh_point(Some(ttl))
            .is_none());
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
