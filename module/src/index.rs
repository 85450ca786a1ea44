//! The tag index: for every database, which keys carry which tag. Pure Rust, no Redis.
//!
//! The index is a function of the keyspace: a key is in it exactly while a module entry is
//! stored under that name, with exactly that entry's tags. The Redis adapters call
//! [`TagIndex::insert`] when an entry enters the keyspace and [`TagIndex::remove`] when it
//! leaves, however that happens. A tag that loses its last key is dropped, so it takes no memory.
//!
//! `HC.DELTAG` moves a tag's keys out of the index at once ([`TagIndex::invalidate`]) into the
//! database's [`PendingRemovals`]; those keys are logically gone until a timer removes them.

use crate::key_table::{KeyTable, NO_SLOT};
use crate::pending::{Bytes, HashMap, KeySet, PendingRemovals};

/// Totals reported by `INFO hybridcache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Module entries, all databases.
    pub keys: u64,
    /// Distinct (database, tag) pairs with at least one key.
    pub tags: u64,
    /// (key, tag) links.
    pub links: u64,
    /// Keys logically deleted by HC.DELTAG, not yet physically removed.
    pub pending_removals: u64,
    /// Invalidated tags whose keys are still being removed.
    pub tombstones: u64,
}

#[derive(Debug, Default)]
struct DbIndex {
    keys: u64,
    links: u64,
    /// The names of the keys that have tags (or await removal), by slot.
    names: KeyTable,
    tags: HashMap<Bytes, KeySet>,
    pending: PendingRemovals,
}

impl DbIndex {
    /// `slot` if it holds `key` in this database.
    fn slot_of(&self, key: &[u8], slot: u32) -> Option<u32> {
        (slot != NO_SLOT && self.names.get(slot) == Some(key)).then_some(slot)
    }
}

/// Largest table rehashed to give memory back: rehashing costs time in proportion to the
/// entries left, and must stay well under a millisecond of event-loop time.
const MAX_SHRINK_LEN: usize = 16_384;

/// Whether a table with `len` entries and room for `capacity` should give memory back.
fn should_shrink(len: usize, capacity: usize) -> bool {
    capacity > 64 && len < capacity / 4 && len <= MAX_SHRINK_LEN
}

/// One database of the index, read-only.
pub(crate) struct DbView<'a> {
    pub keys: u64,
    pub links: u64,
    pub names: Option<&'a KeyTable>,
    pub tags: Option<&'a HashMap<Bytes, KeySet>>,
    pub pending: Option<&'a PendingRemovals>,
}

/// Per-database map from tag to the keys that carry it.
#[derive(Debug, Default)]
pub struct TagIndex {
    dbs: HashMap<i32, DbIndex>,
}

impl TagIndex {
    /// Records that `key` in `db` now holds an entry with `tags` (distinct); returns the
    /// slot the entry must remember ([`NO_SLOT`] for an entry without tags).
    pub fn insert<I>(&mut self, db: i32, key: &[u8], tags: I) -> u32
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let index = self.dbs.entry(db).or_default();
        index.keys += 1;
        let mut tags = tags.into_iter().peekable();
        if tags.peek().is_none() {
            return NO_SLOT;
        }
        let Some(slot) = index.names.insert(key) else {
            return NO_SLOT;
        };
        for tag in tags {
            let keys = match index.tags.get_mut(tag.as_ref()) {
                Some(keys) => keys,
                None => index.tags.entry(tag.as_ref().into()).or_default(),
            };
            if keys.insert(slot) {
                index.links += 1;
            }
        }
        slot
    }

    /// Records that the entry stored under `key` in `db` in `slot` was replaced in place:
    /// `old` tags by `new`; returns the new entry's slot. An overwrite that keeps its tags,
    /// of a key no tag removal holds, costs nothing (the common case of a cache refilled
    /// with the same tags).
    pub fn replace<I, J>(&mut self, db: i32, key: &[u8], slot: u32, old: I, new: J) -> u32
    where
        I: IntoIterator + Clone,
        I::Item: AsRef<[u8]>,
        J: IntoIterator + Clone,
        J::Item: AsRef<[u8]>,
    {
        let (mut a, mut b) = (old.clone().into_iter(), new.clone().into_iter());
        let unchanged = loop {
            match (a.next(), b.next()) {
                (None, None) => break true,
                (Some(x), Some(y)) if x.as_ref() == y.as_ref() => {}
                _ => break false,
            }
        };
        let kept = self.dbs.get(&db).and_then(|index| {
            let untagged = slot == NO_SLOT;
            match index.slot_of(key, slot) {
                Some(slot) if !index.pending.holds(slot) => Some(slot),
                None if untagged => Some(NO_SLOT),
                _ => None,
            }
        });
        if let (true, Some(slot)) = (unchanged, kept) {
            return slot;
        }
        self.remove(db, key, slot, old);
        self.insert(db, key, new)
    }

    /// Records that the entry with `tags` stored under `key` in `db` in `slot` left the
    /// keyspace.
    pub fn remove<I>(&mut self, db: i32, key: &[u8], slot: u32, tags: I)
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let Some(index) = self.dbs.get_mut(&db) else {
            return;
        };
        index.keys = index.keys.saturating_sub(1);
        if let Some(slot) = index.slot_of(key, slot) {
            index.pending.forget(slot);
            for tag in tags {
                let tag = tag.as_ref();
                let Some(keys) = index.tags.get_mut(tag) else {
                    continue;
                };
                if keys.remove(slot) {
                    index.links = index.links.saturating_sub(1);
                }
                if keys.is_empty() {
                    index.tags.remove(tag);
                    if should_shrink(index.tags.len(), index.tags.capacity()) {
                        index.tags.shrink_to_fit();
                    }
                }
            }
            index.names.remove(slot);
        }
        if index.keys == 0 && index.tags.is_empty() && index.pending.is_empty() {
            self.dbs.remove(&db);
        }
    }

    /// HC.DELTAG: the keys carrying any of `tags` in `db` become logically deleted as of
    /// `marker` (a sequence number greater than every existing version). Returns how many
    /// keys that deleted, a key with several of the tags or already deleted counting once.
    pub fn invalidate<T: AsRef<[u8]>>(&mut self, db: i32, tags: &[T], marker: u64) -> u64 {
        let Some(index) = self.dbs.get_mut(&db) else {
            return 0;
        };
        let mut count = 0;
        for tag in tags {
            let tag = tag.as_ref();
            let Some(keys) = index.tags.remove(tag) else {
                continue;
            };
            index.links = index.links.saturating_sub(keys.len());
            count += index.pending.invalidate(tag, keys, marker);
        }
        count
    }

    /// HC.DELTAGALL: the keys carrying all of `tags` (sorted, distinct, two or more) in `db`
    /// become logically deleted as of `marker`, behind one compound tombstone. The keys stay
    /// listed under their tags (as a key HC.DELTAG reached stays under its other tags) until
    /// they are physically removed. Returns how many keys that deleted (already deleted ones
    /// not counted); a tag without keys deletes none.
    pub fn invalidate_all<T: AsRef<[u8]>>(&mut self, db: i32, tags: &[T], marker: u64) -> u64 {
        let Some(keys) = self.all_of(db, tags) else {
            return 0;
        };
        match self.dbs.get_mut(&db) {
            Some(index) => index.pending.invalidate_all(tags, keys, marker),
            None => 0,
        }
    }

    /// The slots of the keys carrying all of `tags` in `db`, the smallest set first (each
    /// intersection can only shrink it); `None` when one of the tags has no keys.
    fn all_of<T: AsRef<[u8]>>(&self, db: i32, tags: &[T]) -> Option<KeySet> {
        let index = self.dbs.get(&db)?;
        let mut sets = tags
            .iter()
            .map(|tag| index.tags.get(tag.as_ref()))
            .collect::<Option<Vec<&KeySet>>>()?;
        sets.sort_unstable_by_key(|keys| keys.len());
        let (smallest, rest) = sets.split_first()?;
        let mut keys = (*smallest).clone();
        for other in rest {
            if keys.is_empty() {
                break;
            }
            keys.intersect(other);
        }
        Some(keys)
    }

    /// The keys carrying all of `tags` in `db` (logically deleted ones included), in no
    /// particular order.
    pub fn keys_with_all<T: AsRef<[u8]>>(&self, db: i32, tags: &[T]) -> Vec<Vec<u8>> {
        let Some(index) = self.dbs.get(&db) else {
            return Vec::new();
        };
        self.all_of(db, tags).map_or_else(Vec::new, |keys| {
            keys.iter()
                .filter_map(|slot| Some(index.names.get(slot)?.to_vec()))
                .collect()
        })
    }

    /// Whether the entry (`tags`, `version`) stored in `db` is logically deleted.
    pub fn dooms<I>(&self, db: i32, tags: I, version: u64) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.dbs
            .get(&db)
            .is_some_and(|index| index.pending.dooms(tags, version))
    }

    /// Whether any database has a tombstone (the fast path of every read checks this).
    pub fn has_tombstones(&self) -> bool {
        self.dbs
            .values()
            .any(|index| index.pending.tombstone_count() > 0)
    }

    /// Queues for removal a key whose entry, indexed in `slot`, is dead (invalidated, then
    /// copied or moved); returns the slot the entry must remember (an entry without tags
    /// takes one here).
    pub fn queue_dead(&mut self, db: i32, key: &[u8], slot: u32) -> u32 {
        let index = self.dbs.entry(db).or_default();
        let slot = match index.slot_of(key, slot) {
            Some(slot) => slot,
            None => match index.names.insert(key) {
                Some(slot) => slot,
                None => return NO_SLOT,
            },
        };
        index.pending.queue_dead(slot);
        slot
    }

    /// Up to `max` logically deleted keys to remove now.
    pub fn take_removals(&mut self, max: usize) -> Vec<(i32, Vec<u8>)> {
        let mut batch = Vec::new();
        for (db, index) in &mut self.dbs {
            if batch.len() >= max {
                break;
            }
            let taken = index.pending.take(max - batch.len());
            let names = &index.names;
            batch.extend(
                taken
                    .into_iter()
                    .filter_map(|slot| Some((*db, names.get(slot)?.to_vec()))),
            );
        }
        batch
    }

    /// After a batch of removals: drops finished invalidations and their tombstones.
    pub fn settle(&mut self) {
        for index in self.dbs.values_mut() {
            index.pending.settle();
        }
        self.dbs.retain(|_, index| {
            index.keys > 0 || !index.tags.is_empty() || !index.pending.is_empty()
        });
    }

    /// Keys waiting for physical removal, all databases.
    pub fn pending_removals(&self) -> u64 {
        self.dbs.values().map(|index| index.pending.len()).sum()
    }

    /// The keys carrying `tag` in `db`, in no particular order.
    pub fn keys(&self, db: i32, tag: &[u8]) -> Vec<Vec<u8>> {
        let Some(index) = self.dbs.get(&db) else {
            return Vec::new();
        };
        index.tags.get(tag).map_or_else(Vec::new, |keys| {
            keys.iter()
                .filter_map(|slot| Some(index.names.get(slot)?.to_vec()))
                .collect()
        })
    }

    /// How many keys carry `tag` in `db` (logically deleted ones not counted).
    pub fn card(&self, db: i32, tag: &[u8]) -> u64 {
        let Some(index) = self.dbs.get(&db) else {
            return 0;
        };
        index.tags.get(tag).map_or(0, |keys| {
            keys.len().saturating_sub(index.pending.overlap(keys))
        })
    }

    /// Forgets everything about `db` (FLUSHDB).
    pub fn clear_db(&mut self, db: i32) {
        self.dbs.remove(&db);
    }

    /// Forgets everything (FLUSHALL, before a load).
    pub fn clear(&mut self) {
        self.dbs = HashMap::default();
    }

    /// Exchanges the contents of two databases (SWAPDB).
    pub fn swap(&mut self, a: i32, b: i32) {
        let first = self.dbs.remove(&a);
        let second = self.dbs.remove(&b);
        if let Some(index) = first {
            self.dbs.insert(b, index);
        }
        if let Some(index) = second {
            self.dbs.insert(a, index);
        }
    }

    /// Totals over all databases.
    pub fn stats(&self) -> IndexStats {
        self.dbs
            .values()
            .fold(IndexStats::default(), |acc, db| IndexStats {
                keys: acc.keys + db.keys,
                tags: acc.tags + db.tags.len() as u64,
                links: acc.links + db.links,
                pending_removals: acc.pending_removals + db.pending.len(),
                tombstones: acc.tombstones + db.pending.tombstone_count() as u64,
            })
    }

    /// The databases the index holds anything for.
    pub fn dbs(&self) -> Vec<i32> {
        self.dbs.keys().copied().collect()
    }

    /// Read access to one database's parts, for `check.rs`.
    pub(crate) fn view(&self, db: i32) -> DbView<'_> {
        match self.dbs.get(&db) {
            Some(index) => DbView {
                keys: index.keys,
                links: index.links,
                names: Some(&index.names),
                tags: Some(&index.tags),
                pending: Some(&index.pending),
            },
            None => DbView {
                keys: 0,
                links: 0,
                names: None,
                tags: None,
                pending: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        keys.sort();
        keys
    }

    const NONE: &[&[u8]] = &[];

    #[test]
    fn insert_links_key_to_each_tag() {
        let mut index = TagIndex::default();
        index.insert(0, b"k1", [b"a", b"b"]);
        index.insert(0, b"k2", [b"a"]);
        assert_eq!(
            sorted(index.keys(0, b"a")),
            vec![b"k1".to_vec(), b"k2".to_vec()]
        );
        assert_eq!(index.keys(0, b"b"), vec![b"k1".to_vec()]);
        assert_eq!(index.card(0, b"a"), 2);
        assert_eq!(
            index.stats(),
            IndexStats {
                keys: 2,
                tags: 2,
                links: 3,
                ..IndexStats::default()
            }
        );
    }

    #[test]
    fn untagged_entries_take_no_slot() {
        let mut index = TagIndex::default();
        assert_eq!(index.insert(0, b"k", NONE), NO_SLOT);
        assert_ne!(index.insert(0, b"j", [b"t"]), NO_SLOT);
        assert_eq!(index.view(0).names.map(KeyTable::len), Some(1));
    }

    #[test]
    fn replace_keeps_unchanged_tags_and_moves_changed_ones() {
        let mut index = TagIndex::default();
        let slot = index.insert(0, b"k1", [b"a", b"b"]);
        let before = index.stats();
        assert_eq!(
            index.replace(0, b"k1", slot, [b"a", b"b"], [b"a", b"b"]),
            slot
        );
        assert_eq!(index.stats(), before);
        assert_eq!(index.keys(0, b"b"), vec![b"k1".to_vec()]);
        let slot = index.replace(0, b"k1", slot, [b"a", b"b"], [b"b", b"c"]);
        assert_eq!(index.card(0, b"a"), 0);
        assert_eq!(index.keys(0, b"c"), vec![b"k1".to_vec()]);
        assert_eq!((index.stats().keys, index.stats().links), (1, 2));
        assert_eq!(index.replace(0, b"k1", slot, [b"b", b"c"], NONE), NO_SLOT);
        assert_eq!((index.stats().keys, index.stats().links), (1, 0));
        assert_eq!(index.view(0).names.map(KeyTable::len), Some(0));
    }

    #[test]
    fn replace_with_the_same_tags_puts_back_a_key_a_tag_removal_holds() {
        let mut index = TagIndex::default();
        let slot = index.insert(0, b"k1", [b"a"]);
        assert_eq!(index.invalidate(0, &[b"a"], 5), 1);
        assert_eq!(index.pending_removals(), 1);
        // Written again with the same tag: live again, no longer queued for removal.
        index.replace(0, b"k1", slot, [b"a"], [b"a"]);
        assert_eq!(index.keys(0, b"a"), vec![b"k1".to_vec()]);
        assert_eq!(index.pending_removals(), 0);
        assert_eq!(index.stats().keys, 1);
    }

    #[test]
    fn invalidate_all_deletes_only_the_keys_carrying_every_tag() {
        let mut index = TagIndex::default();
        let both = index.insert(0, b"both", [b"a", b"b"]);
        let all3 = index.insert(0, b"all3", [b"a", b"b", b"c"]);
        index.insert(0, b"a-only", [b"a"]);
        index.insert(0, b"b-only", [b"b"]);
        let links = index.stats().links;
        assert_eq!(
            sorted(index.keys_with_all(0, &[b"a", b"b"])),
            vec![b"all3".to_vec(), b"both".to_vec()]
        );
        assert_eq!(index.invalidate_all(0, &[b"a", b"b"], 9), 2);
        assert_eq!(index.pending_removals(), 2);
        assert_eq!((index.card(0, b"a"), index.card(0, b"b")), (1, 1));
        assert_eq!(index.stats().links, links, "listed until removed");
        assert_eq!(index.stats().tombstones, 1);
        assert!(index.dooms(0, [b"a", b"b"], 5));
        assert!(!index.dooms(0, [b"a"], 5));
        // Again: nothing left to delete. A tag without keys, or another db: none.
        assert_eq!(index.invalidate_all(0, &[b"a", b"b"], 10), 0);
        assert_eq!(index.invalidate_all(0, &[&b"a"[..], b"zz"], 11), 0);
        assert_eq!(index.invalidate_all(1, &[b"a", b"b"], 12), 0);
        // Physically removed: the links go, and the tombstone at settle.
        let taken = index.take_removals(10);
        assert_eq!(taken.len(), 2);
        index.remove(0, b"both", both, [b"a", b"b"]);
        index.remove(0, b"all3", all3, [b"a", b"b", b"c"]);
        index.settle();
        assert_eq!(index.stats().tombstones, 0);
        assert_eq!(index.stats().links, 2);
    }

    #[test]
    fn remove_drops_links_and_empty_tags_take_no_memory() {
        let mut index = TagIndex::default();
        let k1 = index.insert(0, b"k1", [b"a", b"b"]);
        let k2 = index.insert(0, b"k2", [b"a"]);
        index.remove(0, b"k1", k1, [b"a", b"b"]);
        assert_eq!(index.keys(0, b"a"), vec![b"k2".to_vec()]);
        assert_eq!(index.card(0, b"b"), 0);
        assert_eq!(index.stats().tags, 1);
        index.remove(0, b"k2", k2, [b"a"]);
        assert_eq!(index.stats(), IndexStats::default());
        assert!(index.dbs.is_empty(), "an empty database keeps no map");
    }

    #[test]
    fn a_slot_that_does_not_name_the_key_unlinks_nothing() {
        let mut index = TagIndex::default();
        let k1 = index.insert(0, b"k1", [b"a"]);
        index.insert(0, b"k2", [b"a"]);
        // A stale or foreign slot (the entry was indexed under another name): the links of
        // the key really in that slot stay.
        index.remove(0, b"k2", k1, [b"a"]);
        assert!(index.keys(0, b"a").contains(&b"k1".to_vec()));
        assert_eq!(index.stats().links, 2);
    }

    #[test]
    fn untagged_keys_are_counted() {
        let mut index = TagIndex::default();
        let slot = index.insert(3, b"k", NONE);
        assert_eq!(index.stats().keys, 1);
        index.remove(3, b"k", slot, NONE);
        assert_eq!(index.stats(), IndexStats::default());
    }

    #[test]
    fn databases_are_isolated() {
        let mut index = TagIndex::default();
        let slot = index.insert(0, b"k", [b"t"]);
        index.insert(1, b"k", [b"t"]);
        index.remove(0, b"k", slot, [b"t"]);
        assert_eq!(index.card(0, b"t"), 0);
        assert_eq!(index.keys(1, b"t"), vec![b"k".to_vec()]);
        index.clear_db(1);
        assert_eq!(index.stats(), IndexStats::default());
    }

    #[test]
    fn invalidate_counts_a_key_with_two_of_the_tags_once() {
        let mut index = TagIndex::default();
        index.insert(0, b"k1", [b"a", b"b"]);
        index.insert(0, b"k2", [b"b"]);
        index.insert(0, b"k3", [b"c"]);
        assert_eq!(index.invalidate(0, &[&b"a"[..], b"b", b"zzz"], 100), 2);
        assert_eq!(index.card(0, b"a"), 0);
        assert_eq!(index.card(0, b"c"), 1);
        assert_eq!(index.pending_removals(), 2);
    }

    #[test]
    fn keys_invalidated_through_one_tag_are_not_counted_under_their_other_tags() {
        let mut index = TagIndex::default();
        index.insert(0, b"k1", [b"a", b"b"]);
        index.insert(0, b"k2", [b"b"]);
        assert_eq!(index.invalidate(0, &[b"a"], 10), 1);
        assert_eq!(index.card(0, b"b"), 1, "k1 is logically gone");
        assert_eq!(index.invalidate(0, &[b"b"], 11), 1, "only k2 is new");
        let doomed: Vec<Bytes> = vec![Box::from(&b"b"[..])];
        assert!(index.dooms(0, &doomed, 5));
        assert!(!index.dooms(1, &doomed, 5), "databases are isolated");
    }

    #[test]
    fn removals_are_taken_in_batches_and_settle_the_tombstones() {
        let mut index = TagIndex::default();
        let mut slots = HashMap::default();
        for i in 0..10 {
            let key = format!("k{i}").into_bytes();
            slots.insert(key.clone(), index.insert(0, &key, [b"t"]));
        }
        assert_eq!(index.invalidate(0, &[b"t"], 50), 10);
        assert!(index.has_tombstones());
        let batch = index.take_removals(4);
        assert_eq!(batch.len(), 4);
        for (db, key) in &batch {
            index.remove(*db, key, slots[key], [b"t"]);
        }
        index.settle();
        assert!(index.has_tombstones());
        for (db, key) in index.take_removals(100) {
            index.remove(db, &key, slots[&key], [b"t"]);
        }
        index.settle();
        assert!(!index.has_tombstones());
        assert_eq!(index.stats(), IndexStats::default());
    }

    #[test]
    fn a_dead_arrival_without_tags_takes_a_slot_to_be_queued() {
        let mut index = TagIndex::default();
        let slot = index.insert(0, b"d", NONE);
        let slot = index.queue_dead(0, b"d", slot);
        assert_ne!(slot, NO_SLOT);
        assert_eq!(index.take_removals(10), vec![(0, b"d".to_vec())]);
        index.remove(0, b"d", slot, NONE);
        index.settle();
        assert_eq!(index.stats(), IndexStats::default());
    }

    #[test]
    fn swap_exchanges_databases_even_when_one_is_empty() {
        let mut index = TagIndex::default();
        index.insert(0, b"k0", [b"t"]);
        index.swap(0, 5);
        assert_eq!(index.card(0, b"t"), 0);
        assert_eq!(index.keys(5, b"t"), vec![b"k0".to_vec()]);
        index.insert(0, b"j", [b"t"]);
        index.swap(5, 0);
        assert_eq!(index.keys(0, b"t"), vec![b"k0".to_vec()]);
        assert_eq!(index.keys(5, b"t"), vec![b"j".to_vec()]);
    }

    #[test]
    fn remove_of_unknown_key_changes_nothing_it_should_not() {
        let mut index = TagIndex::default();
        let slot = index.insert(0, b"k", [b"t"]);
        index.remove(0, b"other", slot, [b"t"]);
        index.remove(7, b"k", slot, [b"t"]);
        assert_eq!(index.keys(0, b"t"), vec![b"k".to_vec()]);
    }

    #[test]
    fn binary_names_are_kept_exactly() {
        let mut index = TagIndex::default();
        index.insert(0, b"\x00\xff", [b"\xfe\x00"]);
        assert_eq!(index.keys(0, b"\xfe\x00"), vec![b"\x00\xff".to_vec()]);
        assert_eq!(index.card(0, b"\xfe"), 0);
    }

    #[test]
    fn a_large_tag_costs_a_few_bytes_per_key_and_gives_them_back() {
        let mut index = TagIndex::default();
        let keys: Vec<Vec<u8>> = (0..10_000).map(|i| format!("k{i}").into_bytes()).collect();
        let slots: Vec<u32> = keys.iter().map(|k| index.insert(0, k, [b"t"])).collect();
        let size = |index: &TagIndex| Some(index.view(0).tags?.get(&b"t"[..])?.heap_bytes());
        assert!(
            size(&index).is_some_and(|bytes| bytes <= 20_000),
            "{:?}",
            size(&index)
        );
        for (k, slot) in keys.iter().zip(&slots).take(9_990) {
            index.remove(0, k, *slot, [b"t"]);
        }
        assert_eq!(index.card(0, b"t"), 10);
        assert!(
            size(&index).is_some_and(|bytes| bytes <= 512),
            "{:?}",
            size(&index)
        );
    }
}
