//! A cached entry as the module stores it under a key: the value and its tags. Pure Rust.
//!
//! Value and tags share one allocation (`value ++ (varint length ++ tag)*`), so that an
//! entry costs two allocations whatever its number of tags: memory per entry is what a
//! cache of millions of small values pays for.

use crate::key_table::NO_SLOT;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU32, Ordering};

/// `marks` bit: logically deleted.
const DEAD: u32 = 1 << 31;

/// The value of a module-owned key.
#[derive(Debug)]
pub struct Entry {
    /// The value, then each tag behind its varint length.
    data: Box<[u8]>,
    value_len: u32,
    /// The sequence number of the event that announced this value (0 when unknown).
    pub version: u64,
    /// Bit 31 ([`DEAD`]): logically deleted (by an HC.DELTAG) and carried somewhere else
    /// before its physical removal (RENAME, MOVE, COPY, DUMP): still gone for every HC
    /// command. Bits 0–30: the slot of the key in its database's index
    /// ([`crate::key_table`]), [`NO_SLOT`] when it has none.
    marks: AtomicU32,
}

/// Values larger than this are refused (Redis's own bulk limit is far below by default).
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;

impl Clone for Entry {
    fn clone(&self) -> Self {
        Self {
            data: self.data.clone(),
            value_len: self.value_len,
            version: self.version,
            marks: AtomicU32::new(self.marks.load(Ordering::Relaxed)),
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
            && self.value_len == other.value_len
            && self.version == other.version
            && self.is_dead() == other.is_dead()
    }
}

impl Eq for Entry {}

fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut n: usize = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        n |= usize::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return bytes.get(i + 1..).map(|rest| (n, rest));
        }
    }
    None
}

/// The tags of an entry, in order.
#[derive(Clone)]
pub struct Tags<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tags<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = read_varint(self.rest)?;
        let tag = rest.get(..len)?;
        self.rest = rest.get(len..).unwrap_or_default();
        Some(tag)
    }
}

impl Entry {
    /// An entry; repeated tags count once. `None` when the value exceeds [`MAX_VALUE_LEN`].
    pub fn new<T: AsRef<[u8]>>(value: &[u8], tags: &[T], version: u64) -> Option<Self> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        let value_len = u32::try_from(value.len()).ok()?;
        let mut sorted: SmallVec<[&[u8]; 8]> = tags.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let tag_bytes: usize = sorted.iter().map(|t| t.len() + 5).sum();
        let mut data = Vec::with_capacity(value.len() + tag_bytes);
        data.extend_from_slice(value);
        for tag in sorted {
            push_varint(&mut data, tag.len());
            data.extend_from_slice(tag);
        }
        Some(Self {
            data: data.into_boxed_slice(),
            value_len,
            version,
            marks: AtomicU32::new(NO_SLOT),
        })
    }

    /// The cached bytes.
    pub fn value(&self) -> &[u8] {
        self.data.get(..self.value_len as usize).unwrap_or_default()
    }

    /// The distinct tags, sorted.
    pub fn tags(&self) -> Tags<'_> {
        Tags {
            rest: self.data.get(self.value_len as usize..).unwrap_or_default(),
        }
    }

    /// The tags collected, for the index's slice-taking functions.
    pub fn tag_list(&self) -> Vec<&[u8]> {
        self.tags().collect()
    }

    /// Whether the entry is logically deleted wherever it is.
    pub fn is_dead(&self) -> bool {
        self.marks.load(Ordering::Relaxed) & DEAD != 0
    }

    /// Marks the entry logically deleted.
    pub fn mark_dead(&self) {
        self.marks.fetch_or(DEAD, Ordering::Relaxed);
    }

    /// The slot of its key in the index of the database it is stored in (only the index
    /// can tell whether it is still that key's: a copy carries its original's).
    pub fn slot(&self) -> u32 {
        self.marks.load(Ordering::Relaxed) & !DEAD
    }

    /// Remembers the slot the index gave its key.
    pub fn set_slot(&self, slot: u32) {
        let dead = self.marks.load(Ordering::Relaxed) & DEAD;
        self.marks.store(dead | (slot & !DEAD), Ordering::Relaxed);
    }

    /// Bytes this entry holds on the heap, as `MEMORY USAGE` reports it (the index's
    /// share is accounted by `INFO memory`).
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>() + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &[u8], tags: &[&str], version: u64) -> Entry {
        let tags: Vec<&[u8]> = tags.iter().map(|t| t.as_bytes()).collect();
        // A refused entry becomes an impossible one, so that the assertions on it fail.
        Entry::new(value, &tags, version).unwrap_or(Entry {
            data: Box::default(),
            value_len: u32::MAX,
            version: u64::MAX,
            marks: AtomicU32::new(DEAD),
        })
    }

    #[test]
    fn repeated_tags_count_once_and_are_sorted() {
        let e = entry(b"v", &["b", "a", "b"], 1);
        assert_eq!(e.tag_list(), vec![&b"a"[..], b"b"]);
        assert_eq!(e.value(), b"v");
    }

    #[test]
    fn binary_values_and_long_tags_round_trip() {
        let long = "t".repeat(300);
        let e = entry(b"\x00\xff", &[long.as_str(), "", "x\x00"], 2);
        assert_eq!(e.value(), b"\x00\xff");
        assert_eq!(e.tag_list(), vec![&b""[..], long.as_bytes(), b"x\x00"]);
        assert_eq!(entry(b"", &[], 0).tag_list(), Vec::<&[u8]>::new());
    }

    #[test]
    fn dead_marks_survive_cloning() {
        let e = entry(b"v", &["a"], 3);
        assert!(!e.is_dead());
        e.mark_dead();
        assert!(e.clone().is_dead());
        assert_ne!(e, entry(b"v", &["a"], 3));
    }

    #[test]
    fn memory_usage_grows_with_value_and_tags() {
        let small = entry(b"v", &[], 1);
        let big = entry(&[0u8; 1000], &["tag"], 1);
        assert!(big.memory_usage() >= small.memory_usage() + 1000 + 3);
    }

    #[test]
    fn slot_and_dead_mark_are_independent_and_the_header_is_32_bytes() {
        let e = entry(b"v", &["a"], 3);
        assert_eq!(e.slot(), NO_SLOT);
        e.set_slot(7);
        e.mark_dead();
        assert_eq!((e.slot(), e.is_dead()), (7, true));
        e.set_slot(9);
        assert_eq!((e.slot(), e.is_dead()), (9, true));
        assert_eq!(e.clone().slot(), 9);
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn varints_round_trip() {
        for n in [0usize, 1, 127, 128, 300, 16_384, usize::MAX >> 1] {
            let mut out = Vec::new();
            push_varint(&mut out, n);
            assert_eq!(read_varint(&out), Some((n, &[][..])));
        }
        assert_eq!(read_varint(&[0x80]), None);
    }
}
