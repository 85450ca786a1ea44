//! A cached entry as the module stores it under a key: the value and its tags. Pure Rust,
//! but for the layout code that makes it one allocation.
//!
//! Header, value and tags share one allocation (`header ++ varint value length ++ value ++
//! (varint length ++ tag)*`, a 16-byte header): an entry costs one allocation whatever its number of tags, and a read reaches
//! the value in the same memory as the header (one cache miss, not two). Memory per entry
//! and the misses of a read are what a cache of millions of small values pays for.
//!
//! [`Entry`] is a dynamically sized type (its last field is the byte slice), always held as
//! `Box<Entry>`. Redis keeps a thin pointer to it ([`Entry::into_raw`]); the length of the
//! bytes is in the header, so [`Entry::from_raw`] rebuilds the reference.

use crate::key_table::NO_SLOT;
use smallvec::SmallVec;
use std::alloc::Layout;
use std::os::raw::c_void;
use std::sync::atomic::{AtomicU32, Ordering};

/// `marks` bit: logically deleted.
const DEAD: u32 = 1 << 31;

/// The value of a module-owned key.
#[repr(C)]
pub struct Entry {
    /// The sequence number of the event that announced this value (0 when unknown).
    pub version: u64,
    /// Bit 31 ([`DEAD`]): logically deleted (by an HC.DELTAG) and carried somewhere else
    /// before its physical removal (RENAME, MOVE, COPY, DUMP): still gone for every HC
    /// command. Bits 0–30: the slot of the key in its database's index
    /// ([`crate::key_table`]), [`NO_SLOT`] when it has none.
    marks: AtomicU32,
    /// Bytes in `data`.
    data_len: u32,
    /// The value behind its varint length, then each tag behind its varint length.
    data: [u8],
}

/// The sized start of [`Entry`], laid out the same (`repr(C)`): where the header fields are.
#[repr(C)]
struct Header {
    version: u64,
    marks: AtomicU32,
    data_len: u32,
}

/// Where `data_len` is, and where the bytes start.
const DATA_LEN_AT: usize = std::mem::offset_of!(Header, data_len);
const DATA_AT: usize = DATA_LEN_AT + std::mem::size_of::<u32>();

/// Values larger than this are refused (Redis's own bulk limit is far below by default).
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;

/// The allocation of an entry with `data_len` bytes: what `Box<Entry>` frees with
/// (`Layout::for_value`: the header, the bytes, rounded up to the header's alignment).
fn layout(data_len: usize) -> Option<Layout> {
    let size = DATA_AT.checked_add(data_len)?;
    let layout = Layout::from_size_align(size, std::mem::align_of::<Header>()).ok()?;
    Some(layout.pad_to_align())
}

impl Clone for Box<Entry> {
    fn clone(&self) -> Self {
        self.duplicate()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("value", &self.value())
            .field("tags", &self.tag_list())
            .field("version", &self.version)
            .field("dead", &self.is_dead())
            .field("slot", &self.slot())
            .finish()
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
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
    pub fn new<T: AsRef<[u8]>>(value: &[u8], tags: &[T], version: u64) -> Option<Box<Self>> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        let mut sorted: SmallVec<[&[u8]; 8]> = tags.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let tag_bytes: usize = sorted.iter().map(|t| t.len() + 5).sum();
        let mut data: SmallVec<[u8; 256]> = SmallVec::with_capacity(5 + value.len() + tag_bytes);
        let mut varint = Vec::new();
        push_varint(&mut varint, value.len());
        data.extend_from_slice(&varint);
        data.extend_from_slice(value);
        for tag in sorted {
            varint.clear();
            push_varint(&mut varint, tag.len());
            data.extend_from_slice(&varint);
            data.extend_from_slice(tag);
        }
        Self::build(version, &data)
    }

    /// One allocation holding the header and `data`.
    fn build(version: u64, data: &[u8]) -> Option<Box<Self>> {
        let data_len = u32::try_from(data.len()).ok()?;
        let layout = layout(data.len())?;
        // SAFETY: the layout has a non-zero size (the header). The header is written
        // first (its trailing padding overlaps the first bytes of `data`), then the bytes;
        // the fat pointer carries `data.len()`, so `Box<Entry>` frees with `layout`
        // (checked by `the_layout_is_what_box_frees_with`).
        unsafe {
            let at = std::alloc::alloc(layout);
            if at.is_null() {
                return None;
            }
            at.cast::<Header>().write(Header {
                version,
                marks: AtomicU32::new(NO_SLOT),
                data_len,
            });
            std::ptr::copy_nonoverlapping(data.as_ptr(), at.add(DATA_AT), data.len());
            let fat = std::ptr::slice_from_raw_parts_mut(at, data.len()) as *mut Self;
            Some(Box::from_raw(fat))
        }
    }

    /// A copy, marks (slot, dead) included.
    pub fn duplicate(&self) -> Box<Self> {
        let Some(copy) = Self::build(self.version, &self.data) else {
            // The same sizes were allocated once already: only an allocator failure gets
            // here, which Redis's allocator turns into an abort before returning.
            std::process::abort();
        };
        copy.marks
            .store(self.marks.load(Ordering::Relaxed), Ordering::Relaxed);
        copy
    }

    /// The thin pointer Redis keeps.
    pub fn into_raw(entry: Box<Self>) -> *mut c_void {
        Box::into_raw(entry).cast()
    }

    /// The entry behind a pointer made by [`Entry::into_raw`].
    ///
    /// # Safety
    /// `value` is null or came from [`Entry::into_raw`] and was not freed.
    pub unsafe fn from_raw<'a>(value: *const c_void) -> Option<&'a Self> {
        Self::fat(value.cast_mut()).map(|fat| &*fat)
    }

    /// Takes back ownership of a pointer made by [`Entry::into_raw`].
    ///
    /// # Safety
    /// As [`Entry::from_raw`], and nothing else uses the pointer afterwards.
    pub unsafe fn box_from_raw(value: *mut c_void) -> Option<Box<Self>> {
        Self::fat(value).map(|fat| Box::from_raw(fat))
    }

    unsafe fn fat(value: *mut c_void) -> Option<*mut Self> {
        if value.is_null() {
            return None;
        }
        let data_len = value.cast::<u8>().add(DATA_LEN_AT).cast::<u32>().read();
        Some(std::ptr::slice_from_raw_parts_mut(value.cast::<u8>(), data_len as usize) as *mut Self)
    }

    /// The value and the bytes behind it (the tags).
    fn split(&self) -> (&[u8], &[u8]) {
        let mut tags = Tags { rest: &self.data };
        let value = tags.next().unwrap_or_default();
        (value, tags.rest)
    }

    /// The cached bytes.
    pub fn value(&self) -> &[u8] {
        self.split().0
    }

    /// The distinct tags, sorted.
    pub fn tags(&self) -> Tags<'_> {
        Tags {
            rest: self.split().1,
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
        std::mem::size_of_val(self)
    }
}

// Test-only: `unwrap` here fails a unit test, it is never compiled into the module.
#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &[u8], tags: &[&str], version: u64) -> Box<Entry> {
        let tags: Vec<&[u8]> = tags.iter().map(|t| t.as_bytes()).collect();
        Entry::new(value, &tags, version).unwrap()
    }

    #[test]
    fn the_layout_is_what_box_frees_with() {
        for len in [0usize, 1, 3, 4, 5, 100, 1000] {
            let e = entry(&vec![7u8; len], &[], 1);
            let start = (&*e as *const Entry).cast::<u8>();
            assert_eq!(e.data.len(), len + if len < 128 { 1 } else { 2 });
            assert_eq!(
                std::mem::size_of_val(&*e),
                layout(e.data.len()).unwrap().size()
            );
            assert_eq!(
                std::mem::align_of_val(&*e),
                layout(e.data.len()).unwrap().align()
            );
            assert_eq!(e.data.as_ptr() as usize - start as usize, DATA_AT);
            assert_eq!(e.value(), &vec![7u8; len][..]);
        }
    }

    #[test]
    fn a_thin_pointer_round_trips() {
        let e = entry(b"value", &["a", "b"], 9);
        let raw = Entry::into_raw(e.clone());
        let seen = unsafe { Entry::from_raw(raw) }.map(|e| (e.value(), e.tag_list()));
        assert_eq!(seen, Some((&b"value"[..], vec![&b"a"[..], b"b"])));
        let back = unsafe { Entry::box_from_raw(raw) };
        assert_eq!(back, Some(e));
        assert!(unsafe { Entry::from_raw(std::ptr::null()) }.is_none());
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
        assert!(small.memory_usage() > DATA_AT);
        assert!(big.memory_usage() >= DATA_AT + 2 + 1000 + 1 + 3);
    }

    #[test]
    fn slot_and_dead_mark_are_independent_and_the_header_is_16_bytes() {
        let e = entry(b"v", &["a"], 3);
        assert_eq!(e.slot(), NO_SLOT);
        e.set_slot(7);
        e.mark_dead();
        assert_eq!((e.slot(), e.is_dead()), (7, true));
        e.set_slot(9);
        assert_eq!((e.slot(), e.is_dead()), (9, true));
        assert_eq!(e.clone().slot(), 9);
        assert_eq!(std::mem::size_of::<Header>(), 16);
        assert_eq!(DATA_AT, 16);
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
