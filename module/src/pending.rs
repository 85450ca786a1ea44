//! Tag invalidations that have answered but not yet physically removed their keys. Pure Rust.
//!
//! `HC.DELTAG` must answer at once however many keys a tag holds, and from that moment no
//! HC command may return those keys. So it moves the tag's key set out of the index in O(1),
//! records a tombstone (the tag and the sequence number of the invalidation: entries carrying
//! the tag with an older version are logically gone), and queues the set; a timer deletes
//! the keys a little at a time. Each queued key sits in exactly one queued set. Keys are
//! their slots in the database's [`crate::key_table::KeyTable`].
//!
//! `HC.DELTAGALL` does the same for the keys carrying all of several tags: its tombstone is
//! compound (the sorted tags and the marker), and dooms an older entry only when it carries
//! every one of them.

pub use crate::key_set::KeySet;
use std::collections::VecDeque;

/// Maps and sets of the index: foldhash is several times faster than SipHash on short keys,
/// and seeded per process.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A tag name.
pub type Bytes = Box<[u8]>;

/// What a tombstone is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stone {
    /// `HC.DELTAG`: the entries carrying this tag.
    Tag(Bytes),
    /// `HC.DELTAGALL`: the entries carrying all of these tags (sorted, distinct, two or more).
    AllOf(Box<[Bytes]>),
}

#[derive(Debug)]
struct Queued {
    /// The tombstone this set belongs to; `None` for entries found already dead (copied,
    /// moved or restored after they were invalidated).
    stone: Option<Stone>,
    keys: KeySet,
}

/// A compound tombstone: the tags an entry must all carry to be doomed by it.
#[derive(Debug)]
struct Compound {
    tags: Box<[Bytes]>,
    stone: Tombstone,
}

#[derive(Debug, Clone, Copy)]
struct Tombstone {
    marker: u64,
    /// Queued sets still belonging to this tombstone.
    sets: u32,
}

/// The logically deleted keys of one database, awaiting physical removal.
#[derive(Debug, Default)]
pub struct PendingRemovals {
    queue: VecDeque<Queued>,
    tombstones: HashMap<Bytes, Tombstone>,
    /// Compound tombstones, under their first (smallest) tag: an entry that carries all of
    /// a compound's tags carries that one, so a lookup by each of its tags finds it.
    compound: HashMap<Bytes, Vec<Compound>>,
    /// Compound tombstones, all lists.
    compound_count: usize,
    keys: u64,
}

impl PendingRemovals {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.tombstones.is_empty() && self.compound_count == 0
    }

    /// Keys waiting for physical removal.
    pub fn len(&self) -> u64 {
        self.keys
    }

    /// Tombstones, single-tag and compound.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len() + self.compound_count
    }

    /// Whether an entry with `tags` (distinct) and `version` is logically deleted.
    pub fn dooms<I>(&self, tags: I, version: u64) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        if self.compound_count == 0 {
            return !self.tombstones.is_empty()
                && tags
                    .into_iter()
                    .any(|t| self.doomed_by_tag(t.as_ref(), version));
        }
        let tags: Vec<I::Item> = tags.into_iter().collect();
        let carries = |tag: &[u8]| tags.iter().any(|t| t.as_ref() == tag);
        tags.iter().any(|t| {
            let t = t.as_ref();
            self.doomed_by_tag(t, version)
                || self.compound.get(t).is_some_and(|list| {
                    list.iter()
                        .any(|c| c.stone.marker > version && c.tags.iter().all(|tag| carries(tag)))
                })
        })
    }

    fn doomed_by_tag(&self, tag: &[u8], version: u64) -> bool {
        self.tombstones
            .get(tag)
            .is_some_and(|stone| stone.marker > version)
    }

    /// Every queued set with the tombstone it belongs to, for `HC.CHECK`.
    pub fn queued_sets(&self) -> impl Iterator<Item = (Option<&Stone>, &KeySet)> + '_ {
        self.queue.iter().map(|q| (q.stone.as_ref(), &q.keys))
    }

    /// Every tombstone and the count of queued sets it records, for `HC.CHECK`.
    pub fn tombstones(&self) -> Vec<(Stone, u32)> {
        let single = self
            .tombstones
            .iter()
            .map(|(tag, t)| (Stone::Tag(tag.clone()), t.sets));
        let compound = self
            .compound
            .values()
            .flatten()
            .map(|c| (Stone::AllOf(c.tags.clone()), c.stone.sets));
        single.chain(compound).collect()
    }

    /// Whether the key in `slot` waits for physical removal.
    pub fn is_queued(&self, slot: u32) -> bool {
        self.keys > 0 && self.queue.iter().any(|q| q.keys.contains(slot))
    }

    /// Every key waiting for physical removal.
    pub fn queued(&self) -> impl Iterator<Item = u32> + '_ {
        self.queue.iter().flat_map(|q| q.keys.iter())
    }

    /// How many of `keys` are already queued.
    pub fn overlap(&self, keys: &KeySet) -> u64 {
        if self.keys == 0 || keys.is_empty() {
            return 0;
        }
        self.queue
            .iter()
            .map(|q| q.keys.intersection_len(keys))
            .sum()
    }

    /// Invalidates `tag`, whose live keys are `keys`, at `marker`; returns how many of them
    /// were not already logically deleted.
    pub fn invalidate(&mut self, tag: &[u8], mut keys: KeySet, marker: u64) -> u64 {
        if self.keys > 0 {
            for queued in &self.queue {
                keys.subtract(&queued.keys);
            }
        }
        let count = keys.len();
        if count == 0 {
            return 0;
        }
        let stone = self
            .tombstones
            .entry(tag.into())
            .or_insert(Tombstone { marker, sets: 0 });
        stone.marker = stone.marker.max(marker);
        stone.sets += 1;
        self.keys += count;
        self.queue.push_back(Queued {
            stone: Some(Stone::Tag(tag.into())),
            keys,
        });
        count
    }

    /// Invalidates the entries carrying all of `tags` (sorted, distinct, two or more),
    /// whose live keys are `keys` (the intersection of the tags' sets), at `marker`; returns
    /// how many of them were not already logically deleted.
    pub fn invalidate_all<T: AsRef<[u8]>>(
        &mut self,
        tags: &[T],
        mut keys: KeySet,
        marker: u64,
    ) -> u64 {
        let Some(first) = tags.first() else {
            return 0;
        };
        if self.keys > 0 {
            for queued in &self.queue {
                keys.subtract(&queued.keys);
            }
        }
        let count = keys.len();
        if count == 0 {
            return 0;
        }
        let all: Box<[Bytes]> = tags.iter().map(|t| Bytes::from(t.as_ref())).collect();
        let list = self.compound.entry(first.as_ref().into()).or_default();
        match list.iter_mut().find(|c| c.tags == all) {
            Some(c) => {
                c.stone.marker = c.stone.marker.max(marker);
                c.stone.sets += 1;
            }
            None => {
                list.push(Compound {
                    tags: all.clone(),
                    stone: Tombstone { marker, sets: 1 },
                });
                self.compound_count += 1;
            }
        }
        self.keys += count;
        self.queue.push_back(Queued {
            stone: Some(Stone::AllOf(all)),
            keys,
        });
        count
    }

    /// A queued set of `stone` is gone.
    fn release(&mut self, stone: &Stone) {
        let found = match stone {
            Stone::Tag(tag) => self.tombstones.get_mut(tag),
            Stone::AllOf(tags) => tags.first().and_then(|first| {
                self.compound
                    .get_mut(first)?
                    .iter_mut()
                    .find(|c| c.tags == *tags)
                    .map(|c| &mut c.stone)
            }),
        };
        if let Some(found) = found {
            found.sets = found.sets.saturating_sub(1);
        }
    }

    /// Queues a key whose entry is already dead.
    pub fn queue_dead(&mut self, slot: u32) {
        if self.is_queued(slot) {
            return;
        }
        match self.queue.back_mut() {
            Some(last) if last.stone.is_none() => {
                last.keys.insert(slot);
            }
            _ => self.queue.push_back(Queued {
                stone: None,
                keys: KeySet::from_iter([slot]),
            }),
        }
        self.keys += 1;
    }

    /// Whether a queued removal holds the key in `slot`.
    pub fn holds(&self, slot: u32) -> bool {
        self.is_queued(slot)
    }

    /// The key left the keyspace: it no longer needs removing. A set it empties is dropped
    /// at once (its tombstone stays until [`Self::settle`], which may be far away: timers do
    /// not run while a dataset loads, when an AOF replays one invalidation after another),
    /// so that lookups stay proportional to the sets that still hold keys.
    pub fn forget(&mut self, slot: u32) {
        if self.keys == 0 {
            return;
        }
        let Some(at) = self.queue.iter().position(|q| q.keys.contains(slot)) else {
            return;
        };
        self.keys -= 1;
        let emptied = match self.queue.get_mut(at) {
            Some(queued) => {
                queued.keys.remove(slot);
                queued.keys.is_empty()
            }
            None => false,
        };
        if emptied {
            if let Some(Queued {
                stone: Some(stone), ..
            }) = self.queue.remove(at)
            {
                self.release(&stone);
            }
        }
    }

    /// Takes up to `max` keys to remove, oldest invalidation first. Tombstones stay until
    /// [`Self::settle`], so the caller can still tell doomed entries from rewritten ones.
    pub fn take(&mut self, max: usize) -> Vec<u32> {
        let mut batch = Vec::new();
        for queued in &mut self.queue {
            let room = max - batch.len();
            batch.extend(queued.keys.take(room));
            if batch.len() >= max {
                break;
            }
        }
        self.keys -= batch.len() as u64;
        batch
    }

    /// Drops emptied sets, and the tombstones no queued set needs any more.
    pub fn settle(&mut self) {
        while let Some(front) = self.queue.front() {
            if !front.keys.is_empty() {
                break;
            }
            if let Some(Queued {
                stone: Some(stone), ..
            }) = self.queue.pop_front()
            {
                self.release(&stone);
            }
        }
        self.tombstones.retain(|_, stone| stone.sets > 0);
        if self.compound_count > 0 {
            let mut left = 0;
            self.compound.retain(|_, list| {
                list.retain(|c| c.stone.sets > 0);
                left += list.len();
                !list.is_empty()
            });
            self.compound_count = left;
        }
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[u32]) -> KeySet {
        keys.iter().copied().collect()
    }

    fn tags(names: &[&str]) -> Vec<Bytes> {
        names.iter().map(|t| Bytes::from(t.as_bytes())).collect()
    }

    #[test]
    fn invalidation_dooms_older_versions_of_tagged_entries_only() {
        let mut p = PendingRemovals::default();
        assert_eq!(p.invalidate(b"t", set(&[1, 2]), 10), 2);
        assert!(p.dooms(tags(&["t"]), 9));
        assert!(!p.dooms(tags(&["t"]), 11), "written after the invalidation");
        assert!(!p.dooms(tags(&["u"]), 1));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn keys_already_doomed_by_another_tag_are_not_counted_twice() {
        let mut p = PendingRemovals::default();
        assert_eq!(p.invalidate(b"t", set(&[1, 2]), 10), 2);
        assert_eq!(p.overlap(&set(&[2, 3])), 1);
        assert_eq!(p.invalidate(b"u", set(&[2, 3]), 11), 1);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn tombstones_stay_until_their_keys_are_removed() {
        let mut p = PendingRemovals::default();
        p.invalidate(b"t", set(&[1, 2, 3]), 10);
        let first = p.take(2);
        assert_eq!(first.len(), 2);
        p.settle();
        assert!(p.dooms(tags(&["t"]), 5), "one key left");
        let rest = p.take(10);
        assert_eq!(rest.len(), 1);
        assert!(p.dooms(tags(&["t"]), 5), "not settled yet");
        p.settle();
        assert!(!p.dooms(tags(&["t"]), 5));
        assert!(p.is_empty());
    }

    #[test]
    fn forgotten_keys_are_not_taken() {
        let mut p = PendingRemovals::default();
        p.invalidate(b"t", set(&[1, 2]), 10);
        p.forget(1);
        assert_eq!(p.take(10), vec![2]);
        p.settle();
        assert!(p.is_empty());
    }

    #[test]
    fn a_set_emptied_by_departures_is_dropped_at_once_and_its_tombstone_at_settle() {
        let mut p = PendingRemovals::default();
        for i in 0..100u32 {
            let keys: Vec<u32> = (0..3).map(|k| i * 3 + k).collect();
            p.invalidate(format!("t{i}").as_bytes(), set(&keys), 10 + u64::from(i));
            // The removals arrive as DELs (an AOF replay, a replica): no timer, no settle.
            for &key in &keys {
                p.forget(key);
            }
            assert_eq!(p.queue.len(), 0, "emptied sets do not pile up");
        }
        assert_eq!(p.len(), 0);
        assert!(p.dooms(tags(&["t5"]), 1), "tombstones wait for settle");
        p.settle();
        assert!(!p.dooms(tags(&["t5"]), 1));
        assert!(p.is_empty());
    }

    #[test]
    fn dead_keys_are_queued_once() {
        let mut p = PendingRemovals::default();
        p.queue_dead(24);
        p.queue_dead(24);
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(10).len(), 1);
        p.settle();
        assert!(p.is_empty());
    }

    #[test]
    fn a_compound_tombstone_dooms_older_entries_carrying_every_one_of_its_tags() {
        let mut p = PendingRemovals::default();
        assert_eq!(p.invalidate_all(&[b"a", b"b"], set(&[1, 2]), 10), 2);
        assert_eq!(p.tombstone_count(), 1);
        assert!(p.dooms(tags(&["a", "b"]), 9));
        assert!(
            p.dooms(tags(&["a", "b", "c"]), 9),
            "more tags than the stone"
        );
        assert!(p.dooms(tags(&["c", "b", "a"]), 9), "in any order");
        assert!(!p.dooms(tags(&["a"]), 9), "only some of the tags");
        assert!(!p.dooms(tags(&["b", "c"]), 9));
        assert!(
            !p.dooms(tags(&["a", "b"]), 10),
            "written after the invalidation"
        );
        assert_eq!(
            p.tombstones(),
            [(Stone::AllOf(tags(&["a", "b"]).into()), 1)]
        );
    }

    #[test]
    fn compound_and_single_tombstones_share_the_queue_and_count_keys_once() {
        let mut p = PendingRemovals::default();
        assert_eq!(p.invalidate(b"a", set(&[1, 2]), 10), 2);
        assert_eq!(p.invalidate_all(&[b"a", b"b"], set(&[2, 3]), 11), 1);
        assert_eq!(p.invalidate_all(&[b"a", b"b"], set(&[2, 3]), 12), 0);
        assert_eq!(p.len(), 3);
        assert_eq!(p.tombstone_count(), 2);
        assert!(p.dooms(tags(&["a", "b"]), 10), "by the compound tombstone");
        assert!(!p.dooms(tags(&["a"]), 10));
        assert!(!p.dooms(tags(&["b"]), 5));
    }

    #[test]
    fn a_compound_tombstone_stays_until_its_keys_are_removed_or_gone() {
        let mut p = PendingRemovals::default();
        p.invalidate_all(&[b"a", b"b"], set(&[1, 2]), 10);
        p.invalidate_all(&[b"a", b"c"], set(&[3]), 11);
        p.forget(3);
        assert!(p.dooms(tags(&["a", "c"]), 5), "tombstones wait for settle");
        p.settle();
        assert!(!p.dooms(tags(&["a", "c"]), 5));
        assert!(p.dooms(tags(&["a", "b"]), 5));
        assert_eq!(p.take(10).len(), 2);
        p.settle();
        assert!(!p.dooms(tags(&["a", "b"]), 5));
        assert!(p.is_empty());
        assert_eq!(p.tombstone_count(), 0);
    }

    #[test]
    fn a_tag_invalidated_twice_keeps_its_tombstone_until_both_sets_are_done() {
        let mut p = PendingRemovals::default();
        p.invalidate(b"t", set(&[1]), 10);
        p.invalidate(b"t", set(&[2]), 20);
        assert!(p.dooms(tags(&["t"]), 15));
        p.take(1);
        p.settle();
        assert!(p.dooms(tags(&["t"]), 15));
        p.take(1);
        p.settle();
        assert!(p.is_empty());
    }
}
