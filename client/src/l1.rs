//! The in-process tier: a moka cache of decoded values with what is needed to know whether
//! each one may still be served.

use crate::invalidation_log::tag_event_hits;
use moka::sync::Cache;
use moka::Expiry;
use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Tag removals remembered; beyond this the marks are dropped and L1 is cleared instead.
const MAX_TAG_MARKS: usize = 100_000;

/// What a tag's events of one server did to the entries carrying it: the last removal
/// (`deltag`) and the last soft expiry (`stale`) as event numbers.
struct TagMark {
    origin: Arc<str>,
    removed: Option<u64>,
    staled: Option<u64>,
    /// The count of marks ([`L1`]'s `removals`) when `staled` was last raised: a copy fail-safe
    /// served after it is behind it (see [`L1Entry::stale_marks_seen`]).
    staled_at: u64,
}

/// A removal of the entries carrying all of several tags (`deltagall`) by one server: the
/// last one as an event number.
struct AllTagsMark {
    /// Sorted, distinct.
    tags: Box<[String]>,
    origin: Arc<str>,
    removed: u64,
}

/// How the tag marks see an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagState {
    Clear,
    /// A tag was expired on request (`stale`) after the entry was written: not served as
    /// fresh, still a fail-safe value.
    Stale,
    /// A tag was removed after the entry was written: never served.
    Removed,
}

/// A decoded value, shared by every reader.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// One L1 entry.
pub(crate) struct L1Entry {
    pub(crate) value: Value,
    /// The server the value came from; `None` for entries kept out of Redis.
    pub(crate) origin: Option<Arc<str>>,
    /// Its version on that server (the `seq` of the event that announced it).
    pub(crate) version: u64,
    pub(crate) tags: Box<[String]>,
    /// Served until then (`None`: until evicted or invalidated).
    pub(crate) fresh_until: Option<Instant>,
    /// Kept until then, for fail-safe (at least `fresh_until`).
    pub(crate) keep_until: Option<Instant>,
    /// Served only while the cache's epoch is still this one.
    pub(crate) epoch: u64,
    pub(crate) fail_safe: bool,
    pub(crate) weight: u32,
    /// When the value expires in Redis (`None`: no expiry, or not from Redis).
    pub(crate) l2_expires_at: Option<Instant>,
    /// A hit from then on starts an eager refresh.
    pub(crate) refresh_after: Option<Instant>,
    /// Validators of the value, for a conditional refresh.
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<std::time::SystemTime>,
    /// When none of its tags was last found removed.
    pub(crate) tags_clear: TagsClear,
    /// Soft expiries of its tags marked up to this count of marks are behind it: fail-safe
    /// served this copy after them (0: none is).
    pub(crate) stale_marks_seen: u64,
}

/// The count of tag removals ([`L1`]'s `removals`) at which none of an entry's tags was found
/// removed: a hit checks the tags again only once another tag was removed since, so that
/// it does not take the marks' lock (whose count of readers every thread writes).
#[derive(Debug)]
pub(crate) struct TagsClear(AtomicU64);

impl Default for TagsClear {
    fn default() -> Self {
        Self(AtomicU64::new(NOT_CHECKED))
    }
}

/// No count of removals reaches it.
const NOT_CHECKED: u64 = u64::MAX;

impl L1Entry {
    fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// This entry, no longer fresh as of `now` (kept for fail-safe only).
    pub(crate) fn stale_copy(&self, now: Instant) -> L1Entry {
        L1Entry {
            value: self.value.clone(),
            origin: self.origin.clone(),
            version: self.version,
            tags: self.tags.clone(),
            fresh_until: Some(self.fresh_until.map_or(now, |t| t.min(now))),
            keep_until: self.keep_until,
            epoch: self.epoch,
            fail_safe: self.fail_safe,
            weight: self.weight,
            l2_expires_at: self.l2_expires_at,
            refresh_after: None,
            etag: self.etag.clone(),
            last_modified: self.last_modified,
            tags_clear: TagsClear::default(),
            stale_marks_seen: self.stale_marks_seen,
        }
    }
}

/// Drops entries from moka at their `keep_until`; notes the time of each hit for the
/// reader (see [`L1::get`]).
struct KeepUntil;

thread_local! {
    /// The time moka read its clock at for the last hit on this thread.
    static READ_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl KeepUntil {
    fn remaining(entry: &L1Entry, now: Instant) -> Option<Duration> {
        entry.keep_until.map(|t| t.saturating_duration_since(now))
    }
}

impl Expiry<String, Arc<L1Entry>> for KeepUntil {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<L1Entry>,
        created_at: Instant,
    ) -> Option<Duration> {
        Self::remaining(value, created_at)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<L1Entry>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Self::remaining(value, updated_at)
    }

    fn expire_after_read(
        &self,
        _key: &String,
        _value: &Arc<L1Entry>,
        read_at: Instant,
        duration_until_expiry: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        READ_AT.set(Some(read_at));
        duration_until_expiry
    }
}

/// L1 capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Capacity {
    Entries(u64),
    Bytes(u64),
}

/// The L1 of one cache. Its keys are kept without the cache's namespace, which all of them
/// start with: a hit does not build the full key.
pub(crate) struct L1 {
    cache: Cache<String, Arc<L1Entry>, foldhash::fast::RandomState>,
    namespace: Box<str>,
    epoch: AtomicU64,
    /// Tag → its last removal and soft expiry on each server that removed or expired it:
    /// entries read from that server with the tag and an older version are no longer served
    /// (after a soft expiry, only by fail-safe).
    tag_marks: RwLock<HashMap<String, Vec<TagMark>>>,
    /// Removals of all of several tags, under their first tag (an entry carrying all of
    /// them carries that one): entries read from that server with every one of the tags and
    /// an older version are no longer served.
    all_tags_marks: RwLock<HashMap<String, Vec<AllTagsMark>>>,
    /// Tag removals recorded in `tag_marks` and `all_tags_marks` so far (counted under the
    /// write lock of `tag_marks`).
    removals: AtomicU64,
}

impl L1 {
    pub(crate) fn new(capacity: Capacity, namespace: &str) -> Self {
        let builder = Cache::builder().expire_after(KeepUntil);
        let hasher = foldhash::fast::RandomState::default();
        let cache = match capacity {
            Capacity::Entries(n) => builder.max_capacity(n).build_with_hasher(hasher),
            Capacity::Bytes(n) => builder
                .max_capacity(n)
                .weigher(|_key: &String, entry: &Arc<L1Entry>| entry.weight)
                .build_with_hasher(hasher),
        };
        Self {
            cache,
            namespace: namespace.into(),
            epoch: AtomicU64::new(0),
            tag_marks: RwLock::new(HashMap::new()),
            all_tags_marks: RwLock::new(HashMap::new()),
            removals: AtomicU64::new(0),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// `key` (a full key) without the namespace; `None` when it is not in the namespace
    /// (then it is never in L1).
    fn in_namespace<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&*self.namespace)
    }

    /// The entry under the full key `key`, whatever its state, and the time it was read at
    /// (see [`get_in_namespace`](Self::get_in_namespace)).
    pub(crate) fn get(&self, key: &str) -> Option<(Arc<L1Entry>, Instant)> {
        self.get_in_namespace(self.in_namespace(key)?)
    }

    /// The entry under `key` of the namespace (the full key without the namespace),
    /// whatever its state, and the time it was read at: the clock moka read to check its
    /// expiry (so that a hit reads the clock once), else now.
    pub(crate) fn get_in_namespace(&self, key: &str) -> Option<(Arc<L1Entry>, Instant)> {
        READ_AT.set(None);
        let entry = self.cache.get(key)?;
        let read_at = READ_AT.take().unwrap_or_else(Instant::now);
        Some((entry, read_at))
    }

    /// Whether `entry` may be served now: same epoch, not expired, none of its tags removed
    /// after it was written.
    pub(crate) fn is_fresh(&self, entry: &L1Entry, now: Instant) -> bool {
        entry.epoch == self.epoch()
            && entry.fresh_until.is_none_or(|t| t > now)
            && self.tag_state(entry) == TagState::Clear
    }

    /// Whether `entry` may be served as a fail-safe fallback: it opted in, is still kept,
    /// and none of its tags was removed (a value known to be gone is never served; one
    /// expired on request is).
    pub(crate) fn is_fail_safe(&self, entry: &L1Entry, now: Instant) -> bool {
        entry.fail_safe
            && entry.keep_until.is_none_or(|t| t > now)
            && self.tag_state(entry) != TagState::Removed
    }

    /// The count of tag marks so far, for [`L1Entry::stale_marks_seen`].
    pub(crate) fn marks_count(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    fn tag_state(&self, entry: &L1Entry) -> TagState {
        if entry.tags.is_empty() {
            return TagState::Clear;
        }
        // Marks are only ever added (or dropped with all of L1): an entry clear of them
        // stays clear until the next mark.
        if entry.tags_clear.0.load(Ordering::Relaxed) == self.removals.load(Ordering::Acquire) {
            return TagState::Clear;
        }
        let marks = self.tag_marks.read().unwrap_or_else(|p| p.into_inner());
        let removals = self.removals.load(Ordering::Relaxed);
        let hits = |seq: Option<u64>, mark: &TagMark| {
            seq.is_some_and(|seq| tag_event_hits(entry.origin(), entry.version, &mark.origin, seq))
        };
        let mut state = TagState::Clear;
        for mark in entry.tags.iter().filter_map(|tag| marks.get(tag)).flatten() {
            if hits(mark.removed, mark) {
                return TagState::Removed;
            }
            if mark.staled_at > entry.stale_marks_seen && hits(mark.staled, mark) {
                state = TagState::Stale;
            }
        }
        drop(marks);
        if self.removed_with_all_tags(entry) {
            return TagState::Removed;
        }
        if state == TagState::Clear {
            entry.tags_clear.0.store(removals, Ordering::Relaxed);
        }
        state
    }

    /// Whether a removal of all of several tags, all carried by `entry`, came after it.
    fn removed_with_all_tags(&self, entry: &L1Entry) -> bool {
        let marks = self
            .all_tags_marks
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if marks.is_empty() {
            return false;
        }
        entry
            .tags
            .iter()
            .filter_map(|tag| marks.get(tag))
            .flatten()
            .any(|mark| {
                mark.tags.iter().all(|t| entry.tags.contains(t))
                    && tag_event_hits(entry.origin(), entry.version, &mark.origin, mark.removed)
            })
    }

    /// Keeps `entry` under the full key `key`.
    pub(crate) fn insert(&self, key: &str, entry: Arc<L1Entry>) {
        match self.in_namespace(key) {
            Some(key) => self.cache.insert(key.to_string(), entry),
            None => debug_assert!(false, "{key:?} is not in the namespace"),
        }
    }

    /// Drops the entry under the full key `key`.
    pub(crate) fn invalidate(&self, key: &str) {
        if let Some(key) = self.in_namespace(key) {
            self.cache.invalidate(key);
        }
    }

    /// Replaces the entry under the full key `key` with `with` (`None`: drops it) only if
    /// it is still `judged`: an event that judged the entry it read must not drop or
    /// overwrite a newer one written meanwhile (the writer's own value, admitted between
    /// the event's read and its change).
    pub(crate) fn replace_if_same(
        &self,
        key: &str,
        judged: &Arc<L1Entry>,
        with: Option<Arc<L1Entry>>,
    ) {
        use moka::ops::compute::Op;
        if let Some(key) = self.in_namespace(key) {
            self.cache
                .entry_by_ref(key)
                .and_compute_with(|current| match (current, with) {
                    (Some(current), Some(with)) if Arc::ptr_eq(current.value(), judged) => {
                        Op::Put(with)
                    }
                    (Some(current), None) if Arc::ptr_eq(current.value(), judged) => Op::Remove,
                    _ => Op::Nop,
                });
        }
    }

    /// Records that every key carrying `tag` up to event `seq` of `origin` is gone.
    pub(crate) fn mark_tag_removed(&self, tag: String, origin: Arc<str>, seq: u64) {
        self.mark_tag(tag, origin, seq, false);
    }

    /// Records that every key carrying `tag` up to event `seq` of `origin` was expired on
    /// request: those entries serve fail-safe only.
    pub(crate) fn mark_tag_stale(&self, tag: String, origin: Arc<str>, seq: u64) {
        self.mark_tag(tag, origin, seq, true);
    }

    fn mark_tag(&self, tag: String, origin: Arc<str>, seq: u64, soft: bool) {
        let mut marks = self.tag_marks.write().unwrap_or_else(|p| p.into_inner());
        if marks.len() >= MAX_TAG_MARKS && !marks.contains_key(&tag) {
            marks.clear();
            drop(marks);
            self.clear();
            return;
        }
        let count = self.removals.load(Ordering::Relaxed) + 1;
        let of_tag = marks.entry(tag).or_default();
        let mark = match of_tag.iter().position(|m| m.origin == origin) {
            Some(i) => &mut of_tag[i],
            None => {
                of_tag.push(TagMark {
                    origin,
                    removed: None,
                    staled: None,
                    staled_at: 0,
                });
                let last = of_tag.len() - 1;
                &mut of_tag[last]
            }
        };
        let raised = |last: Option<u64>| Some(last.map_or(seq, |last| last.max(seq)));
        if soft {
            mark.staled = raised(mark.staled);
            mark.staled_at = count;
        } else {
            mark.removed = raised(mark.removed);
        }
        self.removals.store(count, Ordering::Release);
    }

    /// Records that every key carrying all of `tags` up to event `seq` of `origin` is gone.
    pub(crate) fn mark_all_tags_removed(&self, mut tags: Vec<String>, origin: Arc<str>, seq: u64) {
        tags.sort_unstable();
        tags.dedup();
        let Some(first) = tags.first().cloned() else {
            return;
        };
        // Under the lock of the single-tag marks: the count of removals is raised there.
        let mut single = self.tag_marks.write().unwrap_or_else(|p| p.into_inner());
        let mut marks = self
            .all_tags_marks
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let held: usize = single.len() + marks.values().map(Vec::len).sum::<usize>();
        if held >= MAX_TAG_MARKS {
            single.clear();
            marks.clear();
            drop((single, marks));
            self.clear();
            return;
        }
        let of_first = marks.entry(first).or_default();
        match of_first
            .iter_mut()
            .find(|m| m.origin == origin && *m.tags == *tags)
        {
            Some(mark) => mark.removed = mark.removed.max(seq),
            None => of_first.push(AllTagsMark {
                tags: tags.into(),
                origin,
                removed: seq,
            }),
        }
        let count = self.removals.load(Ordering::Relaxed) + 1;
        self.removals.store(count, Ordering::Release);
    }

    /// Entries with all of `tags`, as of now, are removed (the writer's own removal).
    pub(crate) fn remove_all_tagged(&self, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        let hit: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(_, entry)| tags.iter().all(|t| entry.tags.contains(t)))
            .map(|(key, _)| key)
            .collect();
        for key in hit {
            self.cache.invalidate(key.as_str());
        }
    }

    /// Entries with any of `tags`, as of now, are removed (the writer's own tag removal).
    pub(crate) fn remove_tagged(&self, tags: &[String]) {
        for (key, _) in self.tagged(tags) {
            self.cache.invalidate(key.as_str());
        }
    }

    /// Entries with any of `tags`, as of `now`, are expired (the writer's own soft expiry):
    /// those kept for fail-safe stay as stale copies, the others are dropped.
    pub(crate) fn stale_tagged(&self, tags: &[String], now: Instant) {
        for (key, entry) in self.tagged(tags) {
            match entry.fail_safe {
                true => self
                    .cache
                    .insert(key.to_string(), Arc::new(entry.stale_copy(now))),
                false => self.cache.invalidate(key.as_str()),
            }
        }
    }

    fn tagged(&self, tags: &[String]) -> Vec<(Arc<String>, Arc<L1Entry>)> {
        self.cache
            .iter()
            .filter(|(_, entry)| entry.tags.iter().any(|t| tags.contains(t)))
            .collect()
    }

    /// Nothing in L1 is served any more (its values may still serve fail-safe).
    pub(crate) fn mark_all_stale(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.mark_all_stale();
        self.cache.invalidate_all();
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tags: &[&str], version: u64) -> L1Entry {
        L1Entry {
            value: Arc::new(1u32),
            origin: Some("o".into()),
            version,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            fresh_until: None,
            keep_until: None,
            epoch: 0,
            fail_safe: false,
            weight: 1,
            l2_expires_at: None,
            refresh_after: None,
            etag: None,
            last_modified: None,
            tags_clear: TagsClear::default(),
            stale_marks_seen: 0,
        }
    }

    #[test]
    fn keys_are_kept_without_the_namespace_and_found_with_or_without_it() {
        let l1 = L1::new(Capacity::Entries(10), "ns:");
        l1.insert("ns:k", Arc::new(entry(&[], 1)));
        assert!(l1.get("ns:k").is_some());
        assert!(l1.get_in_namespace("k").is_some());
        assert!(l1.get("k").is_none(), "a key outside the namespace");
        assert!(l1.get_in_namespace("ns:k").is_none());
        l1.invalidate("k");
        assert!(l1.get("ns:k").is_some(), "not the namespace's key k");
        l1.invalidate("ns:k");
        assert!(l1.get_in_namespace("k").is_none());
    }

    #[test]
    fn a_hit_comes_with_the_time_moka_checked_its_expiry_at() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let mut kept = entry(&[], 1);
        kept.keep_until = Some(Instant::now() + Duration::from_secs(60));
        l1.insert("k", Arc::new(kept));
        l1.insert("forever", Arc::new(entry(&[], 1)));
        for key in ["k", "forever", "k"] {
            let before = Instant::now();
            let (_, read_at) = l1.get(key).unwrap();
            assert!(before <= read_at && read_at <= Instant::now(), "{key}");
        }
        // A miss leaves no time behind for the next reader.
        assert!(l1.get("missing").is_none());
        READ_AT.set(Some(Instant::now() - Duration::from_secs(3600)));
        let before = Instant::now();
        let (_, read_at) = l1.get("k").unwrap();
        assert!(before <= read_at);
    }

    #[test]
    fn an_entry_past_its_fresh_time_is_not_fresh_while_moka_still_keeps_it() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let mut e = entry(&[], 1);
        e.fail_safe = true;
        e.fresh_until = Some(Instant::now() + Duration::from_millis(20));
        e.keep_until = Some(Instant::now() + Duration::from_secs(60));
        l1.insert("k", Arc::new(e));
        let (found, read_at) = l1.get("k").unwrap();
        assert!(l1.is_fresh(&found, read_at));
        std::thread::sleep(Duration::from_millis(30));
        let (found, read_at) = l1.get("k").unwrap();
        assert!(!l1.is_fresh(&found, read_at));
        assert!(l1.is_fail_safe(&found, read_at));
    }

    #[test]
    fn an_entry_found_clear_of_tag_removals_is_checked_again_after_the_next_one() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let now = Instant::now();
        let (a, b) = (entry(&["a"], 5), entry(&["b"], 5));
        assert!(l1.is_fresh(&a, now) && l1.is_fresh(&b, now));
        l1.mark_tag_removed("a".into(), "o".into(), 4);
        assert!(l1.is_fresh(&a, now), "removed before the entry was written");
        l1.mark_tag_removed("a".into(), "o".into(), 6);
        assert!(!l1.is_fresh(&a, now), "a removal after it was written");
        assert!(!l1.is_fresh(&a, now), "and it stays removed");
        assert!(l1.is_fresh(&b, now));
        l1.mark_tag_removed("b".into(), "p".into(), 9);
        assert!(l1.is_fresh(&b, now), "a removal on another server");
        l1.mark_tag_removed("b".into(), "o".into(), 9);
        assert!(!l1.is_fresh(&b, now));
    }

    #[test]
    fn an_event_drops_the_entry_it_judged_and_not_one_written_since() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let old = Arc::new(entry(&[], 1));
        l1.insert("k", old.clone());
        let (judged, _) = l1.get("k").unwrap();
        // The writer's newer value lands between the event's read and its removal.
        let newer = Arc::new(entry(&[], 2));
        l1.insert("k", newer.clone());
        l1.replace_if_same("k", &judged, None);
        assert!(Arc::ptr_eq(&l1.get("k").unwrap().0, &newer), "kept");
        l1.replace_if_same("k", &newer, None);
        assert!(l1.get("k").is_none(), "the entry judged is dropped");
    }

    #[test]
    fn a_removal_of_all_of_several_tags_hits_older_entries_carrying_every_one() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let now = Instant::now();
        let (ab, abc, a, newer) = (
            entry(&["a", "b"], 5),
            entry(&["c", "b", "a"], 5),
            entry(&["a"], 5),
            entry(&["a", "b"], 9),
        );
        l1.mark_all_tags_removed(vec!["b".into(), "a".into()], "o".into(), 7);
        assert!(!l1.is_fresh(&ab, now) && !l1.is_fail_safe(&ab, now));
        assert!(!l1.is_fresh(&abc, now), "more tags than the removal");
        assert!(l1.is_fresh(&a, now), "only some of the tags");
        assert!(l1.is_fresh(&newer, now), "written after the removal");
        l1.mark_all_tags_removed(vec!["a".into(), "b".into()], "p".into(), 20);
        assert!(l1.is_fresh(&newer, now), "a removal on another server");
    }

    #[test]
    fn the_writers_own_all_tags_removal_drops_only_copies_with_every_tag() {
        let l1 = L1::new(Capacity::Entries(10), "");
        l1.insert("ab", Arc::new(entry(&["a", "b"], 5)));
        l1.insert("a", Arc::new(entry(&["a"], 5)));
        l1.remove_all_tagged(&["a".to_string(), "b".to_string()]);
        assert!(l1.get("ab").is_none());
        assert!(l1.get("a").is_some());
    }

    #[test]
    fn a_soft_expiry_of_a_tag_leaves_older_entries_for_fail_safe_only() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let now = Instant::now();
        let mut kept = entry(&["t"], 5);
        kept.fail_safe = true;
        let plain = entry(&["t"], 5);
        let newer = entry(&["t"], 8);
        l1.mark_tag_stale("t".into(), "o".into(), 7);
        assert!(!l1.is_fresh(&kept, now) && !l1.is_fresh(&plain, now));
        assert!(l1.is_fail_safe(&kept, now), "a stale value for fail-safe");
        assert!(
            !l1.is_fail_safe(&plain, now),
            "no fail-safe: not served at all"
        );
        assert!(l1.is_fresh(&newer, now), "written after the expiry");
        // A hard removal after it wins: never served.
        l1.mark_tag_removed("t".into(), "o".into(), 9);
        assert!(!l1.is_fail_safe(&kept, now));
        assert!(!l1.is_fresh(&newer, now));
    }

    #[test]
    fn a_copy_fail_safe_served_after_a_soft_expiry_is_behind_it_but_not_behind_the_next() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let now = Instant::now();
        l1.mark_tag_stale("t".into(), "o".into(), 7);
        let mut served = entry(&["t"], 5);
        served.fail_safe = true;
        served.stale_marks_seen = l1.marks_count();
        assert!(l1.is_fresh(&served, now), "fresh for its throttle window");
        l1.mark_tag_stale("u".into(), "o".into(), 8);
        assert!(l1.is_fresh(&served, now), "another tag's expiry");
        l1.mark_tag_stale("t".into(), "o".into(), 9);
        assert!(!l1.is_fresh(&served, now), "expired again");
        assert!(l1.is_fail_safe(&served, now));
    }

    #[test]
    fn the_writers_own_soft_expiry_keeps_fail_safe_entries_as_stale_copies() {
        let l1 = L1::new(Capacity::Entries(10), "");
        let mut kept = entry(&["t"], 5);
        kept.fail_safe = true;
        l1.insert("kept", Arc::new(kept));
        l1.insert("plain", Arc::new(entry(&["t"], 5)));
        l1.insert("other", Arc::new(entry(&["u"], 5)));
        let now = Instant::now();
        l1.stale_tagged(&["t".to_string()], now);
        let (found, read_at) = l1.get("kept").unwrap();
        assert!(!l1.is_fresh(&found, read_at) && l1.is_fail_safe(&found, read_at));
        assert!(l1.get("plain").is_none());
        let (other, read_at) = l1.get("other").unwrap();
        assert!(l1.is_fresh(&other, read_at));
    }
}
