//! The in-process tier of one cache with everything that keeps it in step with Redis: L1,
//! the invalidation log, the subscription state, the counters and events; how an
//! invalidation event changes it; and the reads that may serve from it. What enters L1 is
//! decided in `l1_admission.rs`.

use crate::events::{CacheEvent, Events};
use crate::fill::Refusals;
use crate::invalidation_log::{key_event_hits, InvalidationLog, Record};
use crate::l1::{Capacity, L1Entry, L1};
use crate::stats::{bump, Counters, Stats};
use hybridcache_protocol::{Change, DecodeError, InvalidationEvent, Name, Op, TagMatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `removed` event this close to (or after) an entry's expiry in Redis is taken for that
/// expiry: the clocks of client and server differ by the network delay.
pub(crate) const EXPIRY_TOLERANCE: Duration = Duration::from_millis(250);

pub(crate) struct LocalTier {
    l1: L1,
    log: InvalidationLog,
    counters: Arc<Counters>,
    /// The subscription is confirmed and healthy: only then is L1 read or filled.
    connected: AtomicBool,
    /// Prefix of every key and tag this cache writes.
    namespace: String,
    /// The Redis database this cache works in.
    db: u32,
    events: Arc<Events>,
    /// The tag every entry this cache writes carries (`<namespace>*`), whose removal
    /// ([`HybridCache::clear`](crate::HybridCache::clear)) clears the whole cache; `None`
    /// when built with `clearable(false)`.
    clear_tag: Option<String>,
}

impl LocalTier {
    pub(crate) fn new(capacity: Capacity, namespace: String, db: u32, events: Arc<Events>) -> Self {
        Self {
            l1: L1::new(capacity, &namespace),
            log: InvalidationLog::default(),
            counters: Arc::new(Counters::default()),
            connected: AtomicBool::new(false),
            clear_tag: Some(format!("{namespace}{}", crate::CLEAR_TAG)),
            namespace,
            db,
            events,
        }
    }

    /// Without the clear tag: entries are written without it and `clear()` is refused.
    pub(crate) fn without_clear_tag(mut self) -> Self {
        self.clear_tag = None;
        self
    }

    /// The tag every entry of this cache carries in Redis, if any (see `clear_tag`).
    pub(crate) fn clear_tag(&self) -> Option<&str> {
        self.clear_tag.as_deref()
    }

    pub(crate) fn l1(&self) -> &L1 {
        &self.l1
    }

    pub(crate) fn log(&self) -> &InvalidationLog {
        &self.log
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// Where this cache's refused fills are counted and reported.
    pub(crate) fn refusals(&self) -> Refusals {
        Refusals::new(self.counters.clone(), self.events.clone())
    }

    /// Prefix of every key and tag this cache writes.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn emit(&self, name: &'static str, make: impl FnOnce() -> CacheEvent) {
        self.events.emit(name, make);
    }

    /// A fresh L1 value of type `T` under `key` of the namespace (the full key without the
    /// namespace) and its entry, counting the hit or the miss.
    pub(crate) fn lookup<T: Send + Sync + 'static>(
        &self,
        key: &str,
        skip_l1: bool,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        let found = match self.serves(skip_l1) {
            true => self.l1.get_in_namespace(key),
            false => None,
        };
        let fresh = found.and_then(|(entry, read_at)| self.if_fresh::<T>(entry, read_at));
        if fresh.is_some() {
            self.counters.l1_hits.bump();
            self.emit("hit", || CacheEvent::Hit {
                key: format!("{}{key}", self.namespace),
            });
        } else {
            self.counters.l1_misses.bump();
            self.emit("miss", || CacheEvent::Miss {
                key: format!("{}{key}", self.namespace),
            });
        }
        fresh
    }

    /// A fresh L1 value of type `T` and its entry, not counted.
    pub(crate) fn fresh<T: Send + Sync + 'static>(
        &self,
        key: &str,
        skip_l1: bool,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        if !self.serves(skip_l1) {
            return None;
        }
        let (entry, read_at) = self.l1.get(key)?;
        self.if_fresh::<T>(entry, read_at)
    }

    /// Whether a read (that does not skip L1) may be answered from L1 now.
    fn serves(&self, skip_l1: bool) -> bool {
        !skip_l1 && self.is_connected()
    }

    /// `entry`'s value if it was fresh when read (at `read_at`) and is of type `T`.
    fn if_fresh<T: Send + Sync + 'static>(
        &self,
        entry: Arc<L1Entry>,
        read_at: Instant,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        if !self.l1.is_fresh(&entry, read_at) {
            return None;
        }
        let value = entry.value.clone().downcast::<T>().ok()?;
        Some((value, entry))
    }

    /// The value L1 keeps for `key` for fail-safe (opted in, within its maximum stale
    /// duration, none of its tags removed), whether or not it is fresh.
    pub(crate) fn stale<T: Send + Sync + 'static>(
        &self,
        key: &str,
    ) -> Option<(Arc<T>, Arc<L1Entry>)> {
        let (entry, read_at) = self.l1.get(key)?;
        if !self.l1.is_fail_safe(&entry, read_at) {
            return None;
        }
        let value = entry.value.clone().downcast::<T>().ok()?;
        Some((value, entry))
    }

    /// The subscription is confirmed: what L1 held before may have missed events, so it is
    /// marked stale, and serving from L1 starts.
    /// The first one finds L1 new and empty: that is no flush (`Stats::l1_flushes` counts
    /// the times cached values were dropped).
    pub(crate) fn subscription_up(&self) {
        let first = self.counters.subscriptions.load(Ordering::Relaxed) == 0;
        self.mark_stale("subscription established", !first);
        bump(&self.counters.subscriptions);
        self.connected.store(true, Ordering::Release);
    }

    /// The subscription is back and every event missed while it was down has been applied
    /// (replayed from the server's event log): serving from L1 starts again, with what it
    /// kept.
    pub(crate) fn resume(&self, replayed: usize) {
        bump(&self.counters.subscriptions);
        bump(&self.counters.catch_ups);
        self.counters
            .events_replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
        self.connected.store(true, Ordering::Release);
    }

    /// Serving from L1 starts (or starts again) with what it holds.
    pub(crate) fn connect(&self) {
        bump(&self.counters.subscriptions);
        self.connected.store(true, Ordering::Release);
    }

    /// Missed events were replayed while the subscription stayed up.
    pub(crate) fn caught_up(&self, replayed: usize) {
        bump(&self.counters.catch_ups);
        self.counters
            .events_replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
    }

    /// The subscription is gone: stop serving from L1 at once (what it holds is kept until
    /// the subscription is back: then the missed events are replayed, or it is reset).
    pub(crate) fn subscription_down(&self) {
        self.connected.store(false, Ordering::Release);
    }

    /// Everything in L1 may be wrong: stop serving it (fail-safe may still use it).
    pub(crate) fn reset(&self, why: &str) {
        self.mark_stale(why, true);
    }

    fn mark_stale(&self, why: &str, counted: bool) {
        tracing::debug!(why, "L1 marked stale");
        self.log.push(Record::Reset);
        self.l1.mark_all_stale();
        if counted {
            bump(&self.counters.l1_flushes);
        }
    }

    /// Applies one decoded message from the invalidation channel.
    pub(crate) fn apply_decoded(&self, decoded: Result<InvalidationEvent, &DecodeError>) {
        match decoded {
            Ok(event) => {
                self.apply(event);
                bump(&self.counters.events_received);
                self.events
                    .emit("invalidation_received", || CacheEvent::InvalidationReceived);
            }
            Err(e) => {
                bump(&self.counters.events_received);
                match e {
                    DecodeError::UnsupportedVersion(_) => tracing::error!(
                        error = %e,
                        "invalidation event of an unknown format: L1 cleared"
                    ),
                    _ => tracing::error!(error = %e, "unreadable invalidation event: L1 cleared"),
                }
                self.clear_all();
            }
        }
    }

    /// Drops everything L1 holds (the cache was cleared).
    pub(crate) fn clear_l1(&self) {
        self.clear_all();
    }

    fn clear_all(&self) {
        self.log.push(Record::Reset);
        self.l1.clear();
        bump(&self.counters.l1_flushes);
    }

    /// Applies one event. The subscription hands them over in order, gap-free per origin
    /// (it replays or resets when events were missed: `stream_order.rs`).
    fn apply(&self, event: InvalidationEvent) {
        let origin: Arc<str> = event.origin.into();
        if event.db.is_some_and(|db| db != self.db) {
            return;
        }
        match event.change {
            Change::Keys { keys } => {
                let keys = self.ours(keys);
                if keys.is_empty() {
                    return;
                }
                self.log.push(Record::Keys {
                    origin: origin.clone(),
                    seq: event.seq,
                    keys: keys.clone(),
                    removed: event.op == Op::Removed,
                });
                let now = Instant::now();
                for key in keys {
                    if event.op == Op::Stale {
                        self.expire_key(&key, Some((&origin, event.seq)), now);
                        continue;
                    }
                    if let Some((entry, _)) = self.l1.get(&key) {
                        // The key (most likely) expired in Redis: an entry kept for
                        // fail-safe stays as a stale copy only, never served as fresh.
                        let expired = event.op == Op::Removed
                            && entry.fail_safe
                            && entry
                                .l2_expires_at
                                .is_some_and(|at| now + EXPIRY_TOLERANCE >= at);
                        if expired {
                            // An entry fail-safe keeps fresh past its expiry (throttle)
                            // stays as it is.
                            let throttled = entry.fresh_until.is_some_and(|fresh| {
                                entry.l2_expires_at.is_some_and(|at| fresh > at)
                            });
                            if !throttled {
                                let stale = Arc::new(entry.stale_copy(now));
                                self.l1.replace_if_same(&key, &entry, Some(stale));
                            }
                            continue;
                        }
                        if key_event_hits(
                            entry.origin.as_deref(),
                            entry.version,
                            &origin,
                            event.seq,
                        ) {
                            self.l1.replace_if_same(&key, &entry, None);
                        }
                    }
                }
            }
            Change::Tags {
                tags,
                matching: TagMatch::All,
            } => {
                let named = tags.len();
                let tags = self.ours(tags);
                // An entry of this cache carries only tags of its namespace: one that is
                // not leaves none of them carrying all.
                if tags.is_empty() || tags.len() < named {
                    return;
                }
                self.log.push(Record::Tags {
                    origin: origin.clone(),
                    seq: event.seq,
                    tags: tags.clone(),
                    matching: TagMatch::All,
                });
                self.l1.mark_all_tags_removed(tags, origin, event.seq);
            }
            Change::Tags {
                tags,
                matching: TagMatch::Any,
            } => {
                let tags = self.ours(tags);
                if tags.is_empty() {
                    return;
                }
                // The whole cache was cleared: entries kept only in L1 (`skip_l2`) go too.
                if let Some(clear) = &self.clear_tag {
                    if tags.iter().any(|tag| tag == clear) {
                        tracing::debug!(tag = %clear, "cache cleared: L1 cleared");
                        self.clear_all();
                        return;
                    }
                }
                self.log.push(Record::Tags {
                    origin: origin.clone(),
                    seq: event.seq,
                    tags: tags.clone(),
                    matching: TagMatch::Any,
                });
                for tag in tags {
                    match event.op {
                        Op::Stale => self.l1.mark_tag_stale(tag, origin.clone(), event.seq),
                        _ => self.l1.mark_tag_removed(tag, origin.clone(), event.seq),
                    }
                }
            }
            Change::Flush => self.clear_all(),
        }
    }

    /// `key` (a full key) was expired on request by event `seq` of `origin` (`None`: by this
    /// handle, as of now): a copy kept for fail-safe stays as a stale copy, whatever its
    /// expiry; any other is dropped. The writer's own newer version is not touched.
    pub(crate) fn expire_key(&self, key: &str, event: Option<(&str, u64)>, now: Instant) {
        let Some((entry, _)) = self.l1.get(key) else {
            return;
        };
        let hits = event.is_none_or(|(origin, seq)| {
            key_event_hits(entry.origin.as_deref(), entry.version, origin, seq)
        });
        if !hits {
            return;
        }
        let stale = entry.fail_safe.then(|| Arc::new(entry.stale_copy(now)));
        self.l1.replace_if_same(key, &entry, stale);
    }

    /// The names of this cache's namespace (names that are not UTF-8 cannot be ours).
    fn ours(&self, names: Vec<Name>) -> Vec<String> {
        names
            .into_iter()
            .filter_map(|name| String::from_utf8(name.0).ok())
            .filter(|name| name.starts_with(&self.namespace))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l1_admission::Admission;
    use crate::options::EntryOptions;
    use std::time::Duration;

    fn tier() -> LocalTier {
        let tier = LocalTier::new(
            Capacity::Entries(100),
            String::new(),
            0,
            Arc::new(Events::new("test")),
        );
        tier.subscription_up();
        tier
    }

    fn admit(tier: &LocalTier, key: &str, version: u64, options: &EntryOptions) {
        let admission = Admission {
            origin: Some("o".into()),
            version,
            tags: Vec::new(),
            l2_expires_at: Instant::now().checked_add(Duration::from_millis(100)),
            weight: 1,
            etag: None,
            last_modified: None,
        };
        let mark = tier.log().mark();
        tier.admit(key, Arc::new(1u32), admission, options, mark);
    }

    fn event(seq: u64, op: Op, key: &str) -> InvalidationEvent {
        InvalidationEvent::new(
            "o",
            seq,
            Some(0),
            op,
            Change::Keys {
                keys: vec![Name::from(key)],
            },
        )
    }

    #[test]
    fn an_expire_event_drops_the_copy_even_one_kept_for_fail_safe_near_its_expiry() {
        let tier = tier();
        let fail_safe = EntryOptions::new().fail_safe(Duration::from_secs(60));
        admit(&tier, "k", 5, &EntryOptions::new());
        admit(&tier, "f", 5, &fail_safe);
        assert!(tier.fresh::<u32>("k", false).is_some());
        tier.apply(event(6, Op::Expire, "k"));
        tier.apply(event(7, Op::Expire, "f"));
        assert!(tier.l1().get("k").is_none());
        assert!(tier.stale::<u32>("f").is_none(), "no fail-safe copy");
    }

    #[test]
    fn an_l1_copy_never_outlives_the_redis_deadline_it_was_admitted_with() {
        let tier = tier();
        let long = EntryOptions::new()
            .ttl(Duration::from_secs(600))
            .l1_ttl(Duration::from_secs(600));
        admit(&tier, "k", 5, &long);
        let (entry, _) = tier.l1().get("k").unwrap();
        assert!(entry.fresh_until <= entry.l2_expires_at);
        std::thread::sleep(Duration::from_millis(150));
        assert!(tier.fresh::<u32>("k", false).is_none());
    }

    fn tag_event(seq: u64, op: Op, tag: &str) -> InvalidationEvent {
        InvalidationEvent::new(
            "o",
            seq,
            Some(0),
            op,
            Change::Tags {
                tags: vec![Name::from(tag)],
                matching: TagMatch::Any,
            },
        )
    }

    fn admit_tagged(tier: &LocalTier, key: &str, version: u64, options: &EntryOptions) {
        let admission = Admission {
            origin: Some("o".into()),
            version,
            tags: vec!["t".into()],
            l2_expires_at: Instant::now().checked_add(Duration::from_secs(600)),
            weight: 1,
            etag: None,
            last_modified: None,
        };
        let mark = tier.log().mark();
        tier.admit(key, Arc::new(1u32), admission, options, mark);
    }

    #[test]
    fn a_stale_key_event_keeps_fail_safe_copies_as_stale_whatever_their_expiry() {
        let tier = tier();
        let fail_safe = EntryOptions::new()
            .ttl(Duration::from_secs(600))
            .fail_safe(Duration::from_secs(60));
        admit_tagged(&tier, "f", 5, &fail_safe);
        admit_tagged(
            &tier,
            "k",
            5,
            &EntryOptions::new().ttl(Duration::from_secs(600)),
        );
        admit_tagged(&tier, "own", 9, &fail_safe);
        tier.apply(event(7, Op::Stale, "f"));
        tier.apply(event(7, Op::Stale, "k"));
        tier.apply(event(8, Op::Stale, "own"));
        assert!(tier.fresh::<u32>("f", false).is_none(), "not fresh");
        assert!(tier.stale::<u32>("f").is_some(), "a fail-safe value");
        assert!(tier.l1().get("k").is_none(), "without fail-safe: dropped");
        assert!(
            tier.fresh::<u32>("own", false).is_some(),
            "a version written after the expiry"
        );
    }

    #[test]
    fn a_stale_tag_event_leaves_older_entries_for_fail_safe_and_drops_the_others() {
        let tier = tier();
        let fail_safe = EntryOptions::new()
            .ttl(Duration::from_secs(600))
            .fail_safe(Duration::from_secs(60));
        admit_tagged(&tier, "f", 5, &fail_safe);
        admit_tagged(
            &tier,
            "k",
            5,
            &EntryOptions::new().ttl(Duration::from_secs(600)),
        );
        tier.apply(tag_event(7, Op::Stale, "t"));
        assert!(tier.fresh::<u32>("f", false).is_none());
        assert!(tier.stale::<u32>("f").is_some());
        assert!(tier.fresh::<u32>("k", false).is_none());
        assert!(tier.stale::<u32>("k").is_none());
        // Written after it: fresh.
        admit_tagged(&tier, "f", 8, &fail_safe);
        assert!(tier.fresh::<u32>("f", false).is_some());
    }

    fn all_tags_event(seq: u64, tags: &[&str]) -> InvalidationEvent {
        InvalidationEvent::new(
            "o",
            seq,
            Some(0),
            Op::Deltagall,
            Change::Tags {
                tags: tags.iter().map(|t| Name::from(*t)).collect(),
                matching: TagMatch::All,
            },
        )
    }

    #[test]
    fn an_all_tags_event_drops_copies_with_every_tag_and_is_logged_for_fills() {
        let tier = tier();
        let options = EntryOptions::new().ttl(Duration::from_secs(600));
        admit_tagged(&tier, "k", 5, &options);
        // The copy carries `t` only: a removal of `t` and `u` together leaves it.
        let mark = tier.log().mark();
        tier.apply(all_tags_event(7, &["t", "u"]));
        assert!(tier.fresh::<u32>("k", false).is_some());
        let only_t = vec!["t".to_string()];
        let both = vec!["t".to_string(), "u".to_string()];
        assert!(!tier.log().affects(mark, "j", &only_t, Some("o"), 5));
        assert!(tier.log().affects(mark, "j", &both, Some("o"), 5));
        // A removal of all of its tags (here its one tag) drops it.
        tier.apply(all_tags_event(8, &["t"]));
        assert!(tier.fresh::<u32>("k", false).is_none());
    }

    #[test]
    fn an_all_tags_event_naming_a_tag_outside_the_namespace_reaches_no_copy() {
        let tier = LocalTier::new(
            Capacity::Entries(100),
            "ns:".to_string(),
            0,
            Arc::new(Events::new("test")),
        );
        tier.subscription_up();
        let admission = Admission {
            origin: Some("o".into()),
            version: 5,
            tags: vec!["ns:t".into()],
            l2_expires_at: Instant::now().checked_add(Duration::from_secs(600)),
            weight: 1,
            etag: None,
            last_modified: None,
        };
        let mark = tier.log().mark();
        let options = EntryOptions::new().ttl(Duration::from_secs(600));
        tier.admit("ns:k", Arc::new(1u32), admission, &options, mark);
        tier.apply(all_tags_event(7, &["ns:t", "other:u"]));
        assert!(tier.fresh::<u32>("ns:k", false).is_some());
        tier.apply(all_tags_event(8, &["ns:t", "ns:t2"]));
        assert!(tier.fresh::<u32>("ns:k", false).is_some());
        tier.apply(all_tags_event(9, &["ns:t"]));
        assert!(tier.fresh::<u32>("ns:k", false).is_none());
    }

    #[test]
    fn a_fill_read_before_a_soft_expiry_is_not_kept() {
        let tier = tier();
        let fail_safe = EntryOptions::new()
            .ttl(Duration::from_secs(600))
            .fail_safe(Duration::from_secs(60));
        for (i, stale) in [event(7, Op::Stale, "k"), tag_event(7, Op::Stale, "t")]
            .into_iter()
            .enumerate()
        {
            let mark = tier.log().mark();
            tier.apply(stale);
            let admission = Admission {
                origin: Some("o".into()),
                version: 5,
                tags: vec!["t".into()],
                l2_expires_at: Instant::now().checked_add(Duration::from_secs(600)),
                weight: 1,
                etag: None,
                last_modified: None,
            };
            tier.admit("k", Arc::new(1u32), admission, &fail_safe, mark);
            assert!(tier.fresh::<u32>("k", false).is_none(), "case {i}");
        }
    }
}
