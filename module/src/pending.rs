//! Tag invalidations that have answered but not yet physically removed their keys. Pure Rust.
//!
//! `HC.DELTAG` must answer at once however many keys a tag holds, and from that moment no
//! HC command may return those keys. So it moves the tag's key set out of the index in O(1),
//! records a tombstone (the tag and the sequence number of the invalidation: entries carrying
//! the tag with an older version are logically gone), and queues the set; a timer deletes
//! the keys a little at a time. Each queued key sits in exactly one queued set. Keys are
//! their slots in the database's [`crate::key_table::KeyTable`].

pub use crate::key_set::KeySet;
use std::collections::VecDeque;

/// Maps and sets of the index: foldhash is several times faster than SipHash on short keys,
/// and seeded per process.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A tag name.
pub type Bytes = Box<[u8]>;

#[derive(Debug)]
struct Queued {
    /// The tombstone this set belongs to; `None` for entries found already dead (copied,
    /// moved or restored after they were invalidated).
    tag: Option<Bytes>,
    keys: KeySet,
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
    keys: u64,
}

impl PendingRemovals {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.tombstones.is_empty()
    }

    /// Keys waiting for physical removal.
    pub fn len(&self) -> u64 {
        self.keys
    }

    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// Whether an entry with `tags` and `version` is logically deleted.
    pub fn dooms<I>(&self, tags: I, version: u64) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        !self.tombstones.is_empty()
            && tags.into_iter().any(|t| {
                self.tombstones
                    .get(t.as_ref())
                    .is_some_and(|stone| stone.marker > version)
            })
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
            tag: Some(tag.into()),
            keys,
        });
        count
    }

    /// Queues a key whose entry is already dead.
    pub fn queue_dead(&mut self, slot: u32) {
        if self.is_queued(slot) {
            return;
        }
        match self.queue.back_mut() {
            Some(last) if last.tag.is_none() => {
                last.keys.insert(slot);
            }
            _ => self.queue.push_back(Queued {
                tag: None,
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
            if let Some(Queued { tag: Some(tag), .. }) = self.queue.remove(at) {
                if let Some(stone) = self.tombstones.get_mut(&tag) {
                    stone.sets = stone.sets.saturating_sub(1);
                }
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
            if let Some(Queued { tag: Some(tag), .. }) = self.queue.pop_front() {
                if let Some(stone) = self.tombstones.get_mut(&tag) {
                    stone.sets = stone.sets.saturating_sub(1);
                }
            }
        }
        self.tombstones.retain(|_, stone| stone.sets > 0);
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
