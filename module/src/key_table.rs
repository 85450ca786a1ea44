//! The names of one database's tagged keys, each under a small number (its slot). Pure Rust.
//!
//! Tag sets hold slots (4-byte numbers, packed in compressed bitmaps) instead of key names:
//! a key's name is stored once here, whatever its number of tags, and a (key, tag) link costs
//! a few bytes. The entry stored under the key remembers its slot, so that its departure
//! finds its links without a lookup by name.
//!
//! Slots are reused lowest-freed-last (a free list), so they stay dense: below the number of
//! tagged keys the database ever held at once, which keeps the bitmaps compact. Names of up to
//! [`INLINE`] bytes are kept inside the slot itself (no allocation); longer ones on the heap.
//! Slots live in fixed pages, so growing the table never copies it.

/// Names up to this many bytes need no allocation.
pub const INLINE: usize = 22;
/// Slots per page.
const PAGE: usize = 1024;
/// The slot number an entry without one carries.
pub const NO_SLOT: u32 = u32::MAX >> 1;

#[derive(Debug, Clone)]
enum Slot {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<[u8]>),
    /// Unused; the next unused slot, or [`NO_SLOT`].
    Free(u32),
}

impl Slot {
    fn of(name: &[u8]) -> Self {
        match (u8::try_from(name.len()), [0u8; INLINE]) {
            (Ok(len), mut bytes) if name.len() <= INLINE => {
                if let Some(prefix) = bytes.get_mut(..name.len()) {
                    prefix.copy_from_slice(name);
                }
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(name.into()),
        }
    }

    fn name(&self) -> Option<&[u8]> {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)),
            Self::Heap(name) => Some(name),
            Self::Free(_) => None,
        }
    }
}

/// Slot number → key name, with a free list.
#[derive(Debug)]
pub struct KeyTable {
    pages: Vec<Box<[Slot]>>,
    /// Slots handed out so far (the used ones, and the free ones below).
    high: u32,
    /// The last freed slot, or [`NO_SLOT`].
    free: u32,
    len: u32,
}

impl Default for KeyTable {
    fn default() -> Self {
        Self {
            pages: Vec::new(),
            high: 0,
            free: NO_SLOT,
            len: 0,
        }
    }
}

impl KeyTable {
    /// Stores `name` and returns its slot; `None` when the table is full (2³¹ − 1 names).
    pub fn insert(&mut self, name: &[u8]) -> Option<u32> {
        let slot = if self.free != NO_SLOT {
            let slot = self.free;
            self.free = match self.slot(slot) {
                Some(Slot::Free(next)) => *next,
                _ => NO_SLOT,
            };
            slot
        } else {
            if self.high >= NO_SLOT {
                return None;
            }
            if self.high as usize % PAGE == 0 {
                self.pages
                    .push(vec![Slot::Free(NO_SLOT); PAGE].into_boxed_slice());
            }
            self.high += 1;
            self.high - 1
        };
        *self.slot_mut(slot)? = Slot::of(name);
        self.len += 1;
        Some(slot)
    }

    /// The name in `slot`, if the slot is used.
    pub fn get(&self, slot: u32) -> Option<&[u8]> {
        self.slot(slot).and_then(Slot::name)
    }

    /// Frees `slot`; false when it was not used.
    pub fn remove(&mut self, slot: u32) -> bool {
        let next = self.free;
        let Some(place) = self.slot_mut(slot) else {
            return false;
        };
        if matches!(place, Slot::Free(_)) {
            return false;
        }
        *place = Slot::Free(next);
        self.free = slot;
        self.len -= 1;
        if self.len == 0 {
            *self = Self::default();
        }
        true
    }

    /// Names stored.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        u64::from(self.len)
    }

    /// Every used slot and its name.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.pages
            .iter()
            .flat_map(|page| page.iter())
            .take(self.high as usize)
            .enumerate()
            .filter_map(|(i, slot)| Some((u32::try_from(i).ok()?, slot.name()?)))
    }

    fn slot(&self, slot: u32) -> Option<&Slot> {
        if slot >= self.high {
            return None;
        }
        let i = slot as usize;
        self.pages.get(i / PAGE)?.get(i % PAGE)
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        if slot >= self.high {
            return None;
        }
        let i = slot as usize;
        self.pages.get_mut(i / PAGE)?.get_mut(i % PAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_short_and_long_round_trip() {
        let mut t = KeyTable::default();
        let long = vec![b'x'; 300];
        let names: [&[u8]; 5] = [b"", b"k", &[0, 255, 7], &[b'a'; INLINE], &long];
        let slots: Vec<Option<u32>> = names.iter().map(|n| t.insert(n)).collect();
        for (slot, name) in slots.iter().zip(names) {
            assert_eq!(slot.and_then(|s| t.get(s)), Some(name));
        }
        assert_eq!(t.len(), 5);
        assert!(matches!(t.slot(3), Some(Slot::Inline { .. })));
        assert!(matches!(t.slot(4), Some(Slot::Heap(_))));
    }

    #[test]
    fn freed_slots_are_reused_last_freed_first_and_stay_dense() {
        let mut t = KeyTable::default();
        for i in 0..10u32 {
            assert_eq!(t.insert(format!("k{i}").as_bytes()), Some(i));
        }
        assert!(t.remove(3));
        assert!(t.remove(7));
        assert!(!t.remove(7), "already free");
        assert!(!t.remove(99), "never used");
        assert_eq!(t.get(3), None);
        assert_eq!(t.insert(b"new"), Some(7));
        assert_eq!(t.insert(b"newer"), Some(3));
        assert_eq!(t.insert(b"next"), Some(10));
        assert_eq!(t.len(), 11);
        assert_eq!(t.get(3), Some(&b"newer"[..]));
    }

    #[test]
    fn pages_grow_and_an_emptied_table_gives_its_memory_back() {
        let mut t = KeyTable::default();
        let n = 3 * PAGE as u32 + 5;
        for i in 0..n {
            assert_eq!(t.insert(&i.to_le_bytes()), Some(i));
        }
        assert_eq!(t.pages.len(), 4);
        assert_eq!(t.iter().count(), n as usize);
        assert_eq!(t.get(n - 1), Some(&(n - 1).to_le_bytes()[..]));
        for i in 0..n {
            assert!(t.remove(i));
        }
        assert_eq!(t.len(), 0);
        assert!(t.pages.is_empty());
        assert_eq!(t.insert(b"again"), Some(0));
    }

    #[test]
    fn iter_skips_free_slots() {
        let mut t = KeyTable::default();
        for name in [b"a", b"b", b"c"] {
            t.insert(name);
        }
        t.remove(1);
        let listed: Vec<(u32, Vec<u8>)> = t.iter().map(|(s, n)| (s, n.to_vec())).collect();
        assert_eq!(listed, vec![(0, b"a".to_vec()), (2, b"c".to_vec())]);
    }

    #[test]
    fn a_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }
}
