//! Fill leases: which fills may still be written. Pure Rust.
//!
//! A client that misses (or is about to refresh) reads with `HC.FETCH key LEASE` and gets a
//! position `p`; it computes the value from its source and writes it with
//! `HC.SET ... LEASE p`. The write is accepted only if nothing that could make the value
//! stale happened since `p`:
//! - the key did not change in any way (every change reaches [`FillLeases::record`]);
//! - no tag named by the write, nor carried by the entry stored now, was removed;
//! - the server's history was not reset (flush, swapdb, load, promotion).
//!
//! This is memcached's lease extended to tags. Memory grows with the keys being filled,
//! not with the write rate: a lease is "this key has not changed since position q", kept
//! only for keys someone leased, and dropped as soon as the key changes. Tag removals are
//! kept only as long as a lease older than them exists. Both are bounded; a lease or a tag
//! removal pushed out by the bound makes the fills that needed it refused, never accepted.
//!
//! Positions are ticks of one counter that moves when a lease is created, when tags are
//! removed and when history is reset, so that "changed after `p`" is a comparison.

use crate::pending::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// A change to the keyspace, as far as fills are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyspaceChange<'a> {
    /// The key was written, deleted, expired, evicted, renamed, moved, copied over, its TTL
    /// changed, or touched by any command.
    Key { db: i32, key: &'a [u8] },
    /// `DEL`/`UNLINK` named the key, in a database the caller does not know: it may have
    /// existed in none.
    KeyInEveryDb { key: &'a [u8] },
    /// An entry `HC.DELTAG` had already logically deleted left the keyspace without a
    /// command touching it (the removal timer). The change happened at the tag removal:
    /// leases taken before it end, leases taken since (reads that saw the key missing) stay.
    LogicallyDeletedKeyRemoved {
        db: i32,
        key: &'a [u8],
        tags: &'a [&'a [u8]],
    },
    /// `HC.DELTAG` removed these tags (whether or not keys carried them).
    TagsRemoved { db: i32, tags: &'a [&'a [u8]] },
    /// Flush, swapdb, dataset load, promotion: nothing read before may be written back.
    HistoryReset,
}

/// What [`FillLeases::check`] decided about a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FillVerdict {
    Accept,
    /// The key or one of the tags changed since the position.
    Changed,
    /// The position is not one this server tracks (too old for the bounds, from before a
    /// reset, never issued).
    Untracked,
}

/// The bounds, from the module configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FillBounds {
    pub(crate) max_leases: usize,
    pub(crate) max_tag_removals: usize,
}

/// Counters and sizes for `INFO hybridcache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FillStats {
    pub(crate) leases: u64,
    pub(crate) tag_removals: u64,
    pub(crate) bytes: u64,
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) refused_untracked: u64,
}

/// Bytes per tracked name on top of the name itself: the map slot, the queue record, the
/// shared allocation's header (an estimate for INFO, not an allocator measurement).
const OVERHEAD_PER_NAME: usize = 88;

/// Names tracked per database, each with the tick it was recorded at, plus the order they
/// were recorded in (for the bound). The queue may hold records the map no longer has
/// (changed keys); they are skipped when met and compacted when they dominate.
#[derive(Debug, Default)]
struct TickedNames {
    by_db: HashMap<i32, HashMap<Arc<[u8]>, u64>>,
    order: VecDeque<(u64, i32, Arc<[u8]>)>,
    len: usize,
    name_bytes: usize,
}

impl TickedNames {
    fn get(&self, db: i32, name: &[u8]) -> Option<u64> {
        self.by_db.get(&db)?.get(name).copied()
    }

    fn insert(&mut self, db: i32, name: &[u8], tick: u64) {
        let names = self.by_db.entry(db).or_default();
        let name: Arc<[u8]> = Arc::from(name);
        if names.insert(Arc::clone(&name), tick).is_none() {
            self.len += 1;
            self.name_bytes += name.len();
        }
        self.order.push_back((tick, db, name));
        if self.order.len() > 2 * self.len + 1024 {
            self.compact();
        }
    }

    fn remove(&mut self, db: i32, name: &[u8]) -> bool {
        let Some(names) = self.by_db.get_mut(&db) else {
            return false;
        };
        if names.remove(name).is_none() {
            return false;
        }
        if names.is_empty() {
            self.by_db.remove(&db);
        }
        self.len -= 1;
        self.name_bytes -= name.len();
        true
    }

    fn is_live(&self, record: &(u64, i32, Arc<[u8]>)) -> bool {
        self.get(record.1, &record.2) == Some(record.0)
    }

    /// Drops queue records the map no longer holds from the front; the oldest live tick.
    fn oldest(&mut self) -> Option<u64> {
        while let Some(front) = self.order.front() {
            if self.is_live(front) {
                return Some(front.0);
            }
            self.order.pop_front();
        }
        None
    }

    /// Removes the oldest live name; its tick.
    fn pop_oldest(&mut self) -> Option<u64> {
        let tick = self.oldest()?;
        let (_, db, name) = self.order.pop_front()?;
        self.remove(db, &name);
        Some(tick)
    }

    fn compact(&mut self) {
        let order = std::mem::take(&mut self.order);
        self.order = order.into_iter().filter(|r| self.is_live(r)).collect();
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn bytes(&self) -> usize {
        self.name_bytes + self.len * OVERHEAD_PER_NAME
    }
}

/// The fill-lease table (see the module docs).
#[derive(Debug)]
pub(crate) struct FillLeases {
    tick: u64,
    /// Positions below this are from before a history reset.
    floor: u64,
    /// Leased keys: tick since which each has not changed.
    leases: TickedNames,
    /// The newest tick of a lease pushed out by the bound.
    leases_evicted_up_to: u64,
    /// Removed tags: tick of the last removal of each.
    tag_removals: TickedNames,
    /// Positions below this cannot be checked against tag removals.
    tag_floor: u64,
    bounds: FillBounds,
    accepted: u64,
    refused: u64,
    refused_untracked: u64,
}

impl FillLeases {
    pub(crate) fn new(bounds: FillBounds) -> Self {
        Self {
            tick: 0,
            floor: 0,
            leases: TickedNames::default(),
            leases_evicted_up_to: 0,
            tag_removals: TickedNames::default(),
            tag_floor: 0,
            bounds,
            accepted: 0,
            refused: 0,
            refused_untracked: 0,
        }
    }

    /// Applies new bounds (configuration changed); shrinking evicts the oldest at once.
    pub(crate) fn set_bounds(&mut self, bounds: FillBounds) {
        if bounds == self.bounds {
            return;
        }
        self.bounds = bounds;
        self.enforce_bounds();
    }

    /// Gives a lease on `key`: the position to pass back with the fill.
    pub(crate) fn lease(&mut self, db: i32, key: &[u8]) -> u64 {
        if self.leases.get(db, key).is_none() {
            self.tick += 1;
            self.leases.insert(db, key, self.tick);
            self.enforce_bounds();
        }
        // The key has not changed since its lease's tick, which is at most the current one.
        self.tick
    }

    /// The one way changes reach the table.
    pub(crate) fn record(&mut self, change: KeyspaceChange<'_>) {
        match change {
            KeyspaceChange::Key { db, key } => {
                if self.leases.len > 0 {
                    self.leases.remove(db, key);
                }
            }
            KeyspaceChange::KeyInEveryDb { key } => {
                if self.leases.len > 0 {
                    let dbs: Vec<i32> = self.leases.by_db.keys().copied().collect();
                    for db in dbs {
                        self.leases.remove(db, key);
                    }
                }
            }
            KeyspaceChange::LogicallyDeletedKeyRemoved { db, key, tags } => {
                let Some(since) = self.leases.get(db, key) else {
                    return;
                };
                let doomed_at = tags
                    .iter()
                    .filter_map(|tag| self.tag_removals.get(db, tag))
                    .max();
                // A removal no longer remembered is older than every lease, unless the bound
                // pushed it out: then only leases from after the floor are known to be newer.
                let taken_before = match doomed_at {
                    Some(removed) => since < removed,
                    None => since < self.tag_floor,
                };
                if taken_before {
                    self.leases.remove(db, key);
                }
            }
            KeyspaceChange::TagsRemoved { db, tags } => {
                self.tick += 1;
                if self.leases.len == 0 {
                    // Every future lease is newer than this removal; no outstanding
                    // position can be accepted without a lease.
                    self.tag_removals.clear();
                    return;
                }
                for tag in tags {
                    self.tag_removals.insert(db, tag, self.tick);
                }
                self.enforce_bounds();
            }
            KeyspaceChange::HistoryReset => {
                self.tick += 1;
                self.floor = self.tick;
                self.leases.clear();
                self.tag_removals.clear();
            }
        }
    }

    /// Whether a fill of `key` with `write_tags`, over an entry carrying `stored_tags` (empty
    /// when there is none), computed from a read at `position`, may be written. Counts the
    /// outcome. O(tags).
    pub(crate) fn check<'t>(
        &mut self,
        db: i32,
        key: &[u8],
        position: u64,
        tags: impl IntoIterator<Item = &'t [u8]>,
    ) -> FillVerdict {
        let verdict = self.verdict(db, key, position, tags);
        match verdict {
            FillVerdict::Accept => self.accepted += 1,
            FillVerdict::Changed => self.refused += 1,
            FillVerdict::Untracked => {
                self.refused += 1;
                self.refused_untracked += 1;
            }
        }
        verdict
    }

    /// Counts a fill refused before the table was asked (a token from another origin or
    /// one that does not parse).
    pub(crate) fn count_foreign(&mut self) {
        self.refused += 1;
        self.refused_untracked += 1;
    }

    fn verdict<'t>(
        &self,
        db: i32,
        key: &[u8],
        position: u64,
        tags: impl IntoIterator<Item = &'t [u8]>,
    ) -> FillVerdict {
        if position > self.tick || position < self.floor {
            return FillVerdict::Untracked;
        }
        match self.leases.get(db, key) {
            None if position <= self.leases_evicted_up_to => return FillVerdict::Untracked,
            None => return FillVerdict::Changed,
            Some(since) if since > position => return FillVerdict::Changed,
            Some(_) => {}
        }
        if self.tag_removals.len == 0 && position >= self.tag_floor {
            return FillVerdict::Accept;
        }
        for tag in tags {
            if position < self.tag_floor {
                return FillVerdict::Untracked;
            }
            if self
                .tag_removals
                .get(db, tag)
                .is_some_and(|removed| removed > position)
            {
                return FillVerdict::Changed;
            }
        }
        FillVerdict::Accept
    }

    fn enforce_bounds(&mut self) {
        while self.leases.len > self.bounds.max_leases {
            match self.leases.pop_oldest() {
                Some(tick) => self.leases_evicted_up_to = self.leases_evicted_up_to.max(tick),
                None => break,
            }
        }
        // A removal no older than the oldest lease cannot refuse anything: every position
        // that passes the lease check is at least that lease's tick.
        match self.leases.oldest() {
            None => self.tag_removals.clear(),
            Some(oldest) => {
                while self.tag_removals.oldest().is_some_and(|t| t <= oldest) {
                    self.tag_removals.pop_oldest();
                }
            }
        }
        while self.tag_removals.len > self.bounds.max_tag_removals {
            match self.tag_removals.pop_oldest() {
                Some(tick) => self.tag_floor = self.tag_floor.max(tick),
                None => break,
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.leases.len == 0
    }

    pub(crate) fn stats(&self) -> FillStats {
        FillStats {
            leases: self.leases.len as u64,
            tag_removals: self.tag_removals.len as u64,
            bytes: (self.leases.bytes() + self.tag_removals.bytes()) as u64,
            accepted: self.accepted,
            refused: self.refused,
            refused_untracked: self.refused_untracked,
        }
    }
}

/// A lease token as clients see it: `<origin>:<position>`.
pub(crate) fn encode_token(origin: &str, position: u64) -> String {
    format!("{origin}:{position}")
}

/// The origin and position of a token, if it has that shape.
pub(crate) fn decode_token(token: &[u8]) -> Option<(&[u8], u64)> {
    let colon = token.iter().rposition(|&b| b == b':')?;
    let (origin, rest) = token.split_at(colon);
    let digits = rest.get(1..)?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let position = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((origin, position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FillVerdict::*;

    const BOUNDS: FillBounds = FillBounds {
        max_leases: 100,
        max_tag_removals: 100,
    };

    fn table() -> FillLeases {
        FillLeases::new(BOUNDS)
    }

    fn key(db: i32, key: &[u8]) -> KeyspaceChange<'_> {
        KeyspaceChange::Key { db, key }
    }

    const NO_TAGS: [&[u8]; 0] = [];

    #[test]
    fn a_fill_of_an_unchanged_key_is_accepted() {
        let mut t = table();
        let p = t.lease(0, b"k");
        assert_eq!(t.check(0, b"k", p, [b"t".as_slice()]), Accept);
        assert_eq!(t.stats().accepted, 1);
    }

    #[test]
    fn any_change_to_the_key_after_the_read_refuses_the_fill() {
        let mut t = table();
        let p = t.lease(0, b"k");
        t.record(key(0, b"k"));
        assert_eq!(t.check(0, b"k", p, NO_TAGS), Changed);
        // A later reader gets a lease that postdates the change; the old position stays refused.
        let q = t.lease(0, b"k");
        assert!(q > p);
        assert_eq!(t.check(0, b"k", p, NO_TAGS), Changed);
        assert_eq!(t.check(0, b"k", q, NO_TAGS), Accept);
    }

    #[test]
    fn a_key_changed_in_an_unknown_database_ends_its_leases_in_all() {
        let mut t = table();
        let p0 = t.lease(0, b"k");
        let p3 = t.lease(3, b"k");
        let other = t.lease(0, b"j");
        t.record(KeyspaceChange::KeyInEveryDb { key: b"k" });
        assert_eq!(t.check(0, b"k", p0, NO_TAGS), Changed);
        assert_eq!(t.check(3, b"k", p3, NO_TAGS), Changed);
        assert_eq!(t.check(0, b"j", other, NO_TAGS), Accept);
    }

    #[test]
    fn changes_to_other_keys_or_databases_do_not_refuse() {
        let mut t = table();
        let p = t.lease(0, b"k");
        t.record(key(1, b"k"));
        t.record(key(0, b"other"));
        assert_eq!(t.check(0, b"k", p, NO_TAGS), Accept);
    }

    #[test]
    fn concurrent_readers_share_the_lease_and_the_first_fill_breaks_it() {
        let mut t = table();
        let a = t.lease(0, b"k");
        let b = t.lease(0, b"k");
        assert_eq!(t.check(0, b"k", a, NO_TAGS), Accept);
        // The accepted fill is itself a change to the key.
        t.record(key(0, b"k"));
        assert_eq!(t.check(0, b"k", b, NO_TAGS), Changed);
    }

    #[test]
    fn a_tag_removed_after_the_read_refuses_fills_naming_it() {
        let mut t = table();
        let p = t.lease(0, b"k");
        t.record(KeyspaceChange::TagsRemoved {
            db: 0,
            tags: &[b"t"],
        });
        assert_eq!(t.check(0, b"k", p, [b"u".as_slice(), b"t"]), Changed);
        assert_eq!(t.check(0, b"k", p, [b"u".as_slice()]), Accept);
        // Another database's tag of the same name is another tag.
        let mut t = table();
        let p = t.lease(0, b"k");
        t.record(KeyspaceChange::TagsRemoved {
            db: 1,
            tags: &[b"t"],
        });
        assert_eq!(t.check(0, b"k", p, [b"t".as_slice()]), Accept);
    }

    #[test]
    fn a_tag_removed_before_the_read_does_not_refuse() {
        let mut t = table();
        let _older = t.lease(0, b"x");
        t.record(KeyspaceChange::TagsRemoved {
            db: 0,
            tags: &[b"t"],
        });
        let p = t.lease(0, b"k");
        assert_eq!(t.check(0, b"k", p, [b"t".as_slice()]), Accept);
    }

    #[test]
    fn the_physical_removal_of_a_logically_deleted_key_ends_only_older_leases() {
        let mut t = table();
        let before = t.lease(0, b"k");
        let _other = t.lease(0, b"o");
        t.record(KeyspaceChange::TagsRemoved {
            db: 0,
            tags: &[b"t"],
        });
        let after = t.lease(0, b"j");
        let removed = |key| KeyspaceChange::LogicallyDeletedKeyRemoved {
            db: 0,
            key,
            tags: &[b"t"],
        };
        t.record(removed(b"k"));
        t.record(removed(b"j"));
        // k was read before the tag removal: its fill (with other tags) is refused.
        assert_eq!(t.check(0, b"k", before, [b"u".as_slice()]), Changed);
        // j was read after it (a miss): the removal that follows changes nothing it saw.
        assert_eq!(t.check(0, b"j", after, [b"u".as_slice()]), Accept);
    }

    #[test]
    fn history_resets_refuse_every_older_position() {
        let mut t = table();
        let p = t.lease(0, b"k");
        t.record(KeyspaceChange::HistoryReset);
        assert_eq!(t.check(0, b"k", p, NO_TAGS), Untracked);
        let q = t.lease(0, b"k");
        assert_eq!(t.check(0, b"k", p, NO_TAGS), Untracked);
        assert_eq!(t.check(0, b"k", q, NO_TAGS), Accept);
    }

    #[test]
    fn positions_never_issued_are_refused() {
        let mut t = table();
        let p = t.lease(0, b"k");
        assert_eq!(t.check(0, b"k", p + 1, NO_TAGS), Untracked);
        assert_eq!(t.check(0, b"never-leased", p, NO_TAGS), Changed);
        assert_eq!(t.stats().refused, 2);
        assert_eq!(t.stats().refused_untracked, 1);
    }

    #[test]
    fn leases_pushed_out_by_the_bound_are_refused_as_untracked() {
        let mut t = FillLeases::new(FillBounds {
            max_leases: 2,
            max_tag_removals: 100,
        });
        let a = t.lease(0, b"a");
        let b = t.lease(0, b"b");
        let c = t.lease(0, b"c");
        assert_eq!(t.stats().leases, 2);
        assert_eq!(t.check(0, b"a", a, NO_TAGS), Untracked);
        assert_eq!(t.check(0, b"b", b, NO_TAGS), Accept);
        assert_eq!(t.check(0, b"c", c, NO_TAGS), Accept);
        assert_eq!(t.stats().refused_untracked, 1);
    }

    #[test]
    fn tag_removals_pushed_out_by_the_bound_refuse_older_tagged_fills() {
        let mut t = FillLeases::new(FillBounds {
            max_leases: 100,
            max_tag_removals: 1,
        });
        let p = t.lease(0, b"k");
        for tag in [b"t1".as_slice(), b"t2", b"t3"] {
            t.record(KeyspaceChange::TagsRemoved {
                db: 0,
                tags: &[tag],
            });
        }
        assert_eq!(t.stats().tag_removals, 1);
        // t1 was forgotten: a fill naming any tag from before the floor is refused.
        assert_eq!(t.check(0, b"k", p, [b"t1".as_slice()]), Untracked);
        assert_eq!(t.check(0, b"k", p, [b"zz".as_slice()]), Untracked);
        assert_eq!(t.check(0, b"k", p, NO_TAGS), Accept);
    }

    #[test]
    fn tag_removals_older_than_every_lease_are_forgotten() {
        let mut t = table();
        let p = t.lease(0, b"k");
        t.record(KeyspaceChange::TagsRemoved {
            db: 0,
            tags: &[b"t"],
        });
        assert_eq!(t.stats().tag_removals, 1);
        assert_eq!(t.check(0, b"k", p, [b"t".as_slice()]), Changed);
        t.record(key(0, b"k"));
        let _q = t.lease(0, b"k");
        assert_eq!(t.stats().tag_removals, 0);
        // With no lease at all nothing is kept.
        t.record(key(0, b"k"));
        t.record(KeyspaceChange::TagsRemoved {
            db: 0,
            tags: &[b"t"],
        });
        assert_eq!(t.stats().tag_removals, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn memory_follows_the_leases_not_the_writes() {
        let mut t = table();
        for i in 0..10_000u32 {
            t.record(key(0, &i.to_be_bytes()));
        }
        assert_eq!(t.stats().bytes, 0);
        let _ = t.lease(0, b"k");
        let one = t.stats().bytes;
        assert!(one > 0 && one < 200, "{one}");
        // Churn of one key keeps one lease and a bounded queue.
        for _ in 0..10_000 {
            t.record(key(0, b"k"));
            let _ = t.lease(0, b"k");
        }
        assert_eq!(t.stats().leases, 1);
        assert!(t.leases.order.len() <= 1024 + 3, "{}", t.leases.order.len());
    }

    #[test]
    fn shrinking_the_bound_evicts_at_once() {
        let mut t = table();
        for i in 0..10u8 {
            t.lease(0, &[i]);
        }
        t.set_bounds(FillBounds {
            max_leases: 3,
            max_tag_removals: 3,
        });
        assert_eq!(t.stats().leases, 3);
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_rejected() {
        let token = encode_token("6c1f0e3a9b2d4f70", 42);
        assert_eq!(
            decode_token(token.as_bytes()),
            Some((b"6c1f0e3a9b2d4f70".as_slice(), 42))
        );
        for bad in [
            "",
            "abc",
            "abc:",
            "abc:-1",
            "abc:1x",
            ":",
            "a:99999999999999999999999",
        ] {
            assert_eq!(decode_token(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(decode_token(b":7"), Some((b"".as_slice(), 7)));
    }
}
