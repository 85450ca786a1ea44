//! What enters L1, and the one sequence by which it does: insert, then take the entry out
//! again if an invalidation recorded since the value was read names it (see
//! `invalidation_log`). An entry's L1 lifetime never exceeds what remains of its lifetime
//! in Redis, whoever put it there (a read, the writer's own `set`, a fill); only fail-safe,
//! which the entry opted in to, serves a copy past it.

use crate::events::CacheEvent;
use crate::l1::{L1Entry, Value};
use crate::local_tier::{LocalTier, EXPIRY_TOLERANCE};
use crate::options::EntryOptions;
use crate::stats::bump;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What L1 is told about a value besides the value itself.
pub(crate) struct Admission {
    /// The server the value was read from or written to; `None` for entries kept out of
    /// Redis.
    pub(crate) origin: Option<Arc<str>>,
    pub(crate) version: u64,
    pub(crate) tags: Vec<String>,
    /// When the value expires in Redis (`None`: no expiry, or kept out of Redis).
    pub(crate) l2_expires_at: Option<Instant>,
    pub(crate) weight: usize,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<SystemTime>,
}

impl LocalTier {
    /// Puts a value into L1 for as long as `options` allow and no longer than it lives in
    /// Redis, unless an invalidation recorded since `mark` (taken before the value was read
    /// or produced) names it.
    pub(crate) fn admit(
        &self,
        key: &str,
        value: Value,
        admission: Admission,
        options: &EntryOptions,
        mark: u64,
    ) {
        if !self.is_connected() {
            return;
        }
        let now = Instant::now();
        let l2_remaining = admission
            .l2_expires_at
            .map(|at| at.saturating_duration_since(now));
        let lifetime = options.l1_lifetime(l2_remaining);
        // A lifetime too long for the clock means no expiry.
        let fresh_until = lifetime.and_then(|d| now.checked_add(d));
        let keep_until = match (fresh_until, options.fail_safe) {
            (Some(t), Some(extra)) => t.checked_add(extra),
            (t, _) => t,
        };
        let refresh_after = options
            .refresh_point(lifetime)
            .and_then(|d| now.checked_add(d));
        let entry = L1Entry {
            value,
            origin: admission.origin,
            version: admission.version,
            tags: admission.tags.into(),
            fresh_until,
            keep_until,
            epoch: self.l1().epoch(),
            fail_safe: options.fail_safe.is_some(),
            weight: u32::try_from(admission.weight).unwrap_or(u32::MAX),
            l2_expires_at: admission.l2_expires_at,
            refresh_after,
            etag: admission.etag,
            last_modified: admission.last_modified,
            tags_clear: Default::default(),
            stale_marks_seen: 0,
        };
        self.insert_unless_invalidated(key, entry, mark, false);
    }

    /// Serves `entry` as fail-safe: counted, reported, and kept fresh for the throttle
    /// duration (within its maximum stale duration), so that the failing source is not
    /// tried again on every read — unless an invalidation recorded since `mark` (taken
    /// before `entry` was read) names it, or the subscription is down: a value known to be
    /// replaced is served once at most, never kept.
    pub(crate) fn activate_fail_safe(
        &self,
        key: &str,
        entry: &L1Entry,
        mark: u64,
        options: &EntryOptions,
    ) {
        bump(&self.counters().fail_safe_hits);
        tracing::warn!(key, "serving a stale value (fail-safe)");
        self.emit("fail_safe_activated", || CacheEvent::FailSafeActivated {
            key: key.to_string(),
        });
        let now = Instant::now();
        let until = now.checked_add(options.throttle());
        let fresh_until = match (entry.keep_until, until) {
            (Some(keep), Some(until)) => Some(keep.min(until)),
            (keep, until) => keep.or(until),
        };
        // Its own expiry in Redis (or a read of it making Redis reclaim it) is no change.
        let expired = entry
            .l2_expires_at
            .is_some_and(|at| now + EXPIRY_TOLERANCE >= at);
        let kept = L1Entry {
            value: entry.value.clone(),
            origin: entry.origin.clone(),
            version: entry.version,
            tags: entry.tags.clone(),
            fresh_until,
            keep_until: entry.keep_until,
            epoch: self.l1().epoch(),
            fail_safe: entry.fail_safe,
            weight: entry.weight,
            l2_expires_at: entry.l2_expires_at,
            refresh_after: None,
            etag: entry.etag.clone(),
            last_modified: entry.last_modified,
            tags_clear: Default::default(),
            // Served after the soft expiries of its tags so far: fresh for the throttle
            // window despite them (a later one makes it stale again).
            stale_marks_seen: self.l1().marks_count(),
        };
        self.insert_unless_invalidated(key, kept, mark, expired);
    }

    /// The admission sequence. Event handling records an invalidation before it applies
    /// it, so either this sees the record or the event's removal comes after the insert.
    /// With `expired_is_no_change`, the key's own expiry in Redis does not count.
    fn insert_unless_invalidated(
        &self,
        key: &str,
        entry: L1Entry,
        mark: u64,
        expired_is_no_change: bool,
    ) {
        if !self.is_connected() {
            return;
        }
        let entry = Arc::new(entry);
        self.l1().insert(key, entry.clone());
        if self.log().affects_unless_expired(
            mark,
            key,
            &entry.tags,
            entry.origin.as_deref(),
            entry.version,
            expired_is_no_change,
        ) {
            self.l1().invalidate(key);
        }
    }
}
