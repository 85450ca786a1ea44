//! The keys of one tag, as slots of the database's key table. Pure Rust.
//!
//! Two forms, chosen by size:
//! - **few** (up to [`FEW_MAX`] keys): a plain vector of 4-byte slots, searched linearly. Most
//!   tags of a cache are small (a user, an order, a product), and a small set spread over a
//!   large keyspace would cost a compressed bitmap one block per key;
//! - **many**: a compressed bitmap (`roaring`): 2 bytes per key where the slots are sparse, a
//!   bit per key where they are dense.
//!
//! A set becomes *many* when it outgrows [`FEW_MAX`] and *few* again when it shrinks to
//! [`FEW_MAX`] / 2 (the gap keeps a set at the border from switching back and forth).

use roaring::RoaringBitmap;

/// Largest set kept as a vector.
pub const FEW_MAX: usize = 32;

/// Largest bitmap rebuilt to give memory back (about 0.1 ms of work).
const MAX_REBUILD_LEN: u64 = 65_536;

#[derive(Debug, Clone, PartialEq)]
pub enum KeySet {
    Few(Vec<u32>),
    /// Boxed, so that the set takes 24 bytes in the tag map whatever its form.
    Many(Box<RoaringBitmap>),
}

impl Default for KeySet {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl FromIterator<u32> for KeySet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut set = Self::default();
        for slot in iter {
            set.insert(slot);
        }
        set
    }
}

/// The slots of a [`KeySet`]: in insertion order (roughly) when few, ascending when many.
pub enum Iter<'a> {
    Few(std::slice::Iter<'a, u32>),
    Many(roaring::bitmap::Iter<'a>),
}

impl Iterator for Iter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match self {
            Self::Few(slots) => slots.next().copied(),
            Self::Many(slots) => slots.next(),
        }
    }
}

impl KeySet {
    /// Adds `slot`; false when it was there.
    pub fn insert(&mut self, slot: u32) -> bool {
        match self {
            Self::Few(slots) => {
                if slots.contains(&slot) {
                    return false;
                }
                if slots.len() < FEW_MAX {
                    slots.push(slot);
                    return true;
                }
                let mut many: RoaringBitmap = slots.iter().copied().collect();
                many.insert(slot);
                *self = Self::Many(Box::new(many));
                true
            }
            Self::Many(slots) => slots.insert(slot),
        }
    }

    /// Removes `slot`; false when it was not there.
    pub fn remove(&mut self, slot: u32) -> bool {
        let removed = match self {
            Self::Few(slots) => match slots.iter().position(|&s| s == slot) {
                Some(at) => {
                    slots.swap_remove(at);
                    true
                }
                None => false,
            },
            Self::Many(slots) => slots.remove(slot),
        };
        if removed {
            self.settle();
        }
        removed
    }

    pub fn contains(&self, slot: u32) -> bool {
        match self {
            Self::Few(slots) => slots.contains(&slot),
            Self::Many(slots) => slots.contains(slot),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Self::Few(slots) => slots.len() as u64,
            Self::Many(slots) => slots.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::Few(slots) => slots.is_empty(),
            Self::Many(slots) => slots.is_empty(),
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            Self::Few(slots) => Iter::Few(slots.iter()),
            Self::Many(slots) => Iter::Many(slots.iter()),
        }
    }

    /// How many slots both sets hold.
    pub fn intersection_len(&self, other: &Self) -> u64 {
        match (self, other) {
            (Self::Many(a), Self::Many(b)) => a.intersection_len(b),
            (Self::Few(few), set) | (set, Self::Few(few)) => {
                few.iter().filter(|&&slot| set.contains(slot)).count() as u64
            }
        }
    }

    /// Keeps only the slots `other` holds too (roaring's `&=` when both are bitmaps, a
    /// lookup per slot when this set is few; a few `other` makes the result few).
    pub fn intersect(&mut self, other: &Self) {
        match (&mut *self, other) {
            (Self::Few(slots), _) => slots.retain(|&slot| other.contains(slot)),
            (Self::Many(a), Self::Many(b)) => **a &= &**b,
            (Self::Many(a), Self::Few(b)) => {
                let common: Vec<u32> = b.iter().copied().filter(|&slot| a.contains(slot)).collect();
                *self = Self::Few(common);
            }
        }
        self.settle();
    }

    /// Removes every slot `other` holds.
    pub fn subtract(&mut self, other: &Self) {
        match (&mut *self, other) {
            (Self::Few(slots), _) => slots.retain(|&slot| !other.contains(slot)),
            (Self::Many(a), Self::Many(b)) => **a -= &**b,
            (Self::Many(a), Self::Few(b)) => {
                for &slot in b {
                    a.remove(slot);
                }
            }
        }
        self.settle();
    }

    /// Takes up to `max` slots out of the set.
    pub fn take(&mut self, max: usize) -> Vec<u32> {
        let taken = match self {
            Self::Few(slots) => slots.split_off(slots.len().saturating_sub(max)),
            Self::Many(slots) => {
                let taken: Vec<u32> = slots.iter().take(max).collect();
                // The smallest slots were taken: one cut per block.
                slots.remove_smallest(taken.len() as u64);
                taken
            }
        };
        self.settle();
        taken
    }

    /// Bytes the set holds on the heap (roaring's parts estimated from its statistics).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> u64 {
        match self {
            Self::Few(slots) => (slots.capacity() * std::mem::size_of::<u32>()) as u64,
            Self::Many(slots) => {
                let stats = slots.statistics();
                // roaring reports a sparse part's room times four, a dense part in bits.
                stats.n_bytes_array_containers / 2
                    + stats.n_bytes_bitset_containers / 8
                    + stats.n_bytes_run_containers
                    + u64::from(stats.n_containers) * 32
            }
        }
    }

    /// After a removal: back to the small form when small enough; a set that has shrunk to
    /// a power of two and holds much more room than keys is rebuilt tight (so at most once per
    /// halving: amortised O(1) per removal).
    fn settle(&mut self) {
        match self {
            Self::Few(slots) => {
                if slots.capacity() > 2 * slots.len() + 4 {
                    slots.shrink_to_fit();
                }
            }
            Self::Many(slots) => {
                let len = slots.len();
                if len <= (FEW_MAX / 2) as u64 {
                    *self = Self::Few(slots.iter().collect());
                    return;
                }
                if !len.is_power_of_two() || len > MAX_REBUILD_LEN {
                    return;
                }
                let stats = slots.statistics();
                let room = stats.n_bytes_array_containers / 4;
                if room > 4 * u64::from(stats.n_values_array_containers) + 64 {
                    **slots = slots.iter().collect();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersect_keeps_the_common_slots_in_every_pair_of_forms() {
        let few: KeySet = [1, 5, 9, 200].into_iter().collect();
        let many: KeySet = (0..100).map(|s| s * 2 + 1).collect();
        let other_many: KeySet = (0..100).map(|s| s * 3).collect();
        let sorted = |set: &KeySet| {
            let mut v: Vec<u32> = set.iter().collect();
            v.sort_unstable();
            v
        };
        let mut a = few.clone();
        a.intersect(&many);
        assert_eq!(sorted(&a), [1, 5, 9]);
        let mut b = many.clone();
        b.intersect(&few);
        assert_eq!(sorted(&b), [1, 5, 9]);
        let mut c = many.clone();
        c.intersect(&other_many);
        let want: Vec<u32> = (0..200).filter(|s| s % 2 == 1 && s % 3 == 0).collect();
        assert_eq!(sorted(&c), want);
        assert_eq!(c.len(), want.len() as u64);
        let mut d = few.clone();
        d.intersect(&KeySet::default());
        assert!(d.is_empty());
    }

    fn sorted(set: &KeySet) -> Vec<u32> {
        let mut slots: Vec<u32> = set.iter().collect();
        slots.sort_unstable();
        slots
    }

    #[test]
    fn a_small_set_is_a_vector_and_grows_into_a_bitmap_and_back() {
        let mut set = KeySet::default();
        for slot in 0..FEW_MAX as u32 {
            assert!(set.insert(slot * 1000));
        }
        assert!(!set.insert(0), "already there");
        assert!(matches!(set, KeySet::Few(_)));
        assert!(set.insert(7));
        assert!(matches!(set, KeySet::Many(_)));
        assert_eq!(set.len(), FEW_MAX as u64 + 1);
        // Down to half the limit: a vector again, with the same slots.
        for slot in 0..=(FEW_MAX / 2) as u32 {
            assert!(set.remove(slot * 1000));
        }
        assert!(matches!(set, KeySet::Few(_)));
        let mut expected: Vec<u32> = ((FEW_MAX / 2 + 1) as u32..FEW_MAX as u32)
            .map(|s| s * 1000)
            .collect();
        expected.push(7);
        expected.sort_unstable();
        assert_eq!(sorted(&set), expected);
        assert!(!set.remove(0), "not there");
        assert!(set.contains(7) && !set.contains(8));
    }

    #[test]
    fn intersection_and_subtraction_work_across_forms() {
        let few: KeySet = [1, 2, 3, 100_000].into_iter().collect();
        let many: KeySet = (0..100).chain([100_000]).collect();
        assert!(matches!(few, KeySet::Few(_)) && matches!(many, KeySet::Many(_)));
        assert_eq!(few.intersection_len(&many), 4);
        assert_eq!(many.intersection_len(&few), 4);
        assert_eq!(many.intersection_len(&many), 101);
        assert_eq!(few.intersection_len(&few), 4);

        let mut a = many.clone();
        a.subtract(&few);
        assert_eq!(a.len(), 97);
        assert!(!a.contains(100_000) && !a.contains(2) && a.contains(4));
        let mut b = few.clone();
        b.subtract(&many);
        assert!(b.is_empty());
        let mut c = many.clone();
        c.subtract(&(10..100).chain([100_000]).collect());
        assert!(matches!(c, KeySet::Few(_)), "ten left: small form");
        assert_eq!(sorted(&c), (0..10).collect::<Vec<u32>>());
    }

    #[test]
    fn take_empties_a_set_in_batches() {
        for n in [5u32, 1000] {
            let mut set: KeySet = (0..n).collect();
            let mut taken = Vec::new();
            while !set.is_empty() {
                let batch = set.take(64);
                assert!(!batch.is_empty() && batch.len() <= 64);
                taken.extend(batch);
            }
            taken.sort_unstable();
            assert_eq!(taken, (0..n).collect::<Vec<u32>>());
        }
    }

    #[test]
    fn a_large_set_gives_memory_back_as_it_shrinks() {
        // Sparse slots over a large range: one sparse block per 65,536 slots.
        let mut set: KeySet = (0..20_000u32).map(|i| i * 3).collect();
        let full = set.heap_bytes();
        assert!(full <= 3 * 20_000, "{full} bytes for 20,000 keys");
        for i in 0..19_990u32 {
            set.remove(i * 3);
        }
        assert!(matches!(set, KeySet::Few(_)));
        assert!(set.heap_bytes() <= 64, "{} bytes left", set.heap_bytes());
    }

    #[test]
    fn the_forms_take_24_bytes_in_a_map() {
        assert_eq!(std::mem::size_of::<KeySet>(), 24);
    }
}
