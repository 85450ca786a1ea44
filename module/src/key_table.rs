//! The names of one database's tagged keys, each under a small number (its slot). Pure Rust.
//!
//! Tag sets hold slots (4-byte numbers, packed in compressed bitmaps) instead of key names:
//! a key's name is stored once here, whatever its number of tags, and a (key, tag) link costs
//! a few bytes. The entry stored under the key remembers its slot, so that its departure
//! finds its links without a lookup by name.
//!
//! A new name takes the lowest free slot, so slots stay dense (the bitmaps stay compact), and
//! the pages above the highest slot in use are given back: a table that held a million keys
//! and now holds a few keeps only the pages they sit in. Names of up to [`INLINE`] bytes are
//! kept inside the slot itself (no allocation); longer ones on the heap. Slots live in fixed
//! pages, so growing the table never copies it.

use roaring::RoaringBitmap;

/// Names up to this many bytes need no allocation.
pub const INLINE: usize = 22;
/// Slots per page.
const PAGE: usize = 1024;
/// The slot number an entry without one carries.
pub const NO_SLOT: u32 = u32::MAX >> 1;

#[derive(Debug, Clone)]
enum Slot {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
    Free,
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
            Self::Free => None,
        }
    }
}

/// One page of slots, and how many of them are used (a page nobody uses is freed at once,
/// so that a table emptied a batch at a time gives its memory back a page at a time).
#[derive(Debug)]
struct Page {
    slots: Box<[Slot]>,
    used: u32,
}

/// Slot number → key name, with the set of free slots.
#[derive(Debug, Default)]
pub struct KeyTable {
    /// `None`: a page with no slot in use.
    pages: Vec<Option<Page>>,
    /// Slots below this are in use or in `free`; none above.
    high: u32,
    /// The free slots below `high`.
    free: RoaringBitmap,
    len: u32,
}

impl KeyTable {
    /// Stores `name` in the lowest free slot and returns it; `None` when the table is full
    /// (2³¹ − 1 names).
    pub fn insert(&mut self, name: &[u8]) -> Option<u32> {
        let slot = match self.free.min() {
            Some(slot) => {
                self.free.remove(slot);
                slot
            }
            None => {
                if self.high >= NO_SLOT {
                    return None;
                }
                if self.high as usize % PAGE == 0 {
                    self.pages.push(None);
                }
                self.high += 1;
                self.high - 1
            }
        };
        let page = self
            .pages
            .get_mut(slot as usize / PAGE)?
            .get_or_insert_with(|| Page {
                slots: vec![Slot::Free; PAGE].into_boxed_slice(),
                used: 0,
            });
        *page.slots.get_mut(slot as usize % PAGE)? = Slot::of(name);
        page.used += 1;
        self.len += 1;
        Some(slot)
    }

    /// The name in `slot`, if the slot is used.
    pub fn get(&self, slot: u32) -> Option<&[u8]> {
        if slot >= self.high {
            return None;
        }
        let i = slot as usize;
        let page = self.pages.get(i / PAGE)?.as_ref()?;
        page.slots.get(i % PAGE).and_then(Slot::name)
    }

    /// Frees `slot`; false when it was not used. A page left unused is freed; freeing the
    /// highest slots lowers the top.
    pub fn remove(&mut self, slot: u32) -> bool {
        if slot >= self.high {
            return false;
        }
        let i = slot as usize;
        let Some(Some(page)) = self.pages.get_mut(i / PAGE) else {
            return false;
        };
        match page.slots.get_mut(i % PAGE) {
            Some(place) if !matches!(place, Slot::Free) => *place = Slot::Free,
            _ => return false,
        }
        page.used -= 1;
        if page.used == 0 {
            if let Some(emptied) = self.pages.get_mut(i / PAGE) {
                *emptied = None;
            }
        }
        self.len -= 1;
        if self.len == 0 {
            *self = Self::default();
            return true;
        }
        if slot + 1 < self.high {
            self.free.insert(slot);
            return true;
        }
        // The top slot: lower `high` past the run of free slots below it, found with a
        // binary search on range counts (a table emptied from the bottom up frees its top
        // last: the run can be a million slots long, and one call must stay short).
        self.high = slot;
        if self.free.contains(slot.wrapping_sub(1)) {
            let run_is_free = |free: &RoaringBitmap, from: u32, to: u32| {
                free.range_cardinality(from..to) == u64::from(to - from)
            };
            let (mut low, mut top) = (0, self.high);
            // The lowest `from` with [from, high) all free lies in [low, top].
            while low < top {
                let mid = low + (top - low) / 2;
                if run_is_free(&self.free, mid, self.high) {
                    top = mid;
                } else {
                    low = mid + 1;
                }
            }
            self.free.remove_range(low..self.high);
            self.high = low;
        }
        // The pages above the top hold no used slot: they are `None` already.
        self.pages.truncate((self.high as usize).div_ceil(PAGE));
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
            .enumerate()
            .filter_map(|(p, page)| Some((p, page.as_ref()?)))
            .flat_map(|(p, page)| {
                page.slots.iter().enumerate().filter_map(move |(i, slot)| {
                    Some((u32::try_from(p * PAGE + i).ok()?, slot.name()?))
                })
            })
    }

    /// Pages allocated.
    #[cfg(test)]
    fn pages_held(&self) -> usize {
        self.pages.iter().flatten().count()
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
        assert!(matches!(
            t.pages[0].as_ref().map(|p| &p.slots[3]),
            Some(Slot::Inline { .. })
        ));
        assert!(matches!(
            t.pages[0].as_ref().map(|p| &p.slots[4]),
            Some(Slot::Heap(_))
        ));
    }

    #[test]
    fn the_lowest_free_slot_is_reused_first() {
        let mut t = KeyTable::default();
        for i in 0..10u32 {
            assert_eq!(t.insert(format!("k{i}").as_bytes()), Some(i));
        }
        assert!(t.remove(7));
        assert!(t.remove(3));
        assert!(!t.remove(7), "already free");
        assert!(!t.remove(99), "never used");
        assert_eq!(t.get(3), None);
        assert_eq!(t.insert(b"new"), Some(3));
        assert_eq!(t.insert(b"newer"), Some(7));
        assert_eq!(t.insert(b"next"), Some(10));
        assert_eq!(t.len(), 11);
        assert_eq!(t.get(7), Some(&b"newer"[..]));
    }

    #[test]
    fn freeing_the_top_slots_gives_their_pages_back() {
        let mut t = KeyTable::default();
        let n = 5 * PAGE as u32;
        for i in 0..n {
            t.insert(&i.to_le_bytes());
        }
        // Free everything but slots 0 and 10, the top last: the table shrinks to one page.
        for i in (1..n).filter(|&i| i != 10) {
            assert!(t.remove(i));
        }
        assert_eq!(
            (t.len(), t.high, t.pages.len(), t.pages_held()),
            (2, 11, 1, 1)
        );
        assert_eq!(t.free.len(), 9, "1..=9 stay free below the top");
        assert_eq!(t.get(10), Some(&10u32.to_le_bytes()[..]));
        assert_eq!(t.insert(b"x"), Some(1));
        assert!(t.remove(10));
        assert_eq!((t.high, t.free.len()), (2, 0));
    }

    #[test]
    fn a_table_emptied_from_the_bottom_up_lowers_its_top_in_one_step() {
        let mut t = KeyTable::default();
        let n: u32 = 3 * 65_536;
        for i in 0..n {
            t.insert(&i.to_le_bytes());
        }
        for i in 1..n - 1 {
            t.remove(i);
        }
        assert_eq!((t.high, t.free.len()), (n, u64::from(n - 2)));
        assert!(t.remove(n - 1));
        assert_eq!(
            (t.high, t.free.len(), t.pages.len(), t.pages_held()),
            (1, 0, 1, 1)
        );
        assert!(t.remove(0));
        assert!(t.pages.is_empty());
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
    fn a_page_nobody_uses_is_freed_at_once() {
        let mut t = KeyTable::default();
        let n = 3 * PAGE as u32;
        for i in 0..n {
            t.insert(&i.to_le_bytes());
        }
        for i in 0..PAGE as u32 {
            t.remove(i);
        }
        assert_eq!((t.pages.len(), t.pages_held()), (3, 2));
        assert_eq!(t.get(5), None);
        // Its slots are still the lowest free ones: the page comes back for them.
        assert_eq!(t.insert(b"back"), Some(0));
        assert_eq!((t.pages_held(), t.get(0)), (3, Some(&b"back"[..])));
        assert_eq!(t.iter().count(), 2 * PAGE + 1);
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
