//! An [`Entry`] as a sequence of saved fields (RDB, `DUMP`/`RESTORE`, replication), and
//! its decoding from untrusted bytes. Pure Rust: the fields come from a [`Source`] and go to
//! a [`Sink`]; `datatype.rs` backs both with Redis's RDB IO, and [`SliceSource`] /
//! `Vec<u8>` back them with plain bytes for unit tests and fuzzing.
//!
//! Field sequence (encoding version [`ENCODING_VERSION`]): the value as a string, the
//! version as an unsigned, flags as an unsigned (bit 0, [`FLAG_DEAD`]: logically deleted),
//! the tag count as an unsigned, then each tag as a string.
//!
//! Byte form of the same fields (the slice format, never written to Redis): a string is its
//! length as an unsigned LEB128 varint followed by its bytes; an unsigned is 8 bytes,
//! little-endian.

use crate::entry::Entry;

/// The encoding version Redis stores next to every saved entry.
pub const ENCODING_VERSION: i32 = 1;
/// Tag counts above this in a payload are treated as corrupt rather than trusted.
pub const MAX_TAGS_IN_PAYLOAD: u64 = 1 << 24;
/// Flags bit: the entry is logically deleted.
pub const FLAG_DEAD: u64 = 1;

/// Where saved fields are read from; `None` when the input is short or broken.
pub trait Source {
    /// The bytes of one string field.
    type Bytes: AsRef<[u8]>;
    fn string(&mut self) -> Option<Self::Bytes>;
    fn unsigned(&mut self) -> Option<u64>;
}

/// Where saved fields are written to.
pub trait Sink {
    fn string(&mut self, bytes: &[u8]);
    fn unsigned(&mut self, n: u64);
}

/// Writes `entry`; `dead` says whether it is logically deleted where it is saved (which
/// can be more than [`Entry::is_dead`] knows).
pub fn save(entry: &Entry, dead: bool, sink: &mut impl Sink) {
    sink.string(entry.value());
    sink.unsigned(entry.version);
    sink.unsigned(if dead { FLAG_DEAD } else { 0 });
    sink.unsigned(entry.tags().count() as u64);
    for tag in entry.tags() {
        sink.string(tag);
    }
}

/// Reads an entry written by [`save`]; `None` when the fields are short, the tag count is
/// above [`MAX_TAGS_IN_PAYLOAD`] or the value is too large for an [`Entry`].
pub fn load(source: &mut impl Source) -> Option<Box<Entry>> {
    let value = source.string()?;
    let version = source.unsigned()?;
    let flags = source.unsigned()?;
    let count = source.unsigned()?;
    if count > MAX_TAGS_IN_PAYLOAD {
        return None;
    }
    // The count is not trusted for the allocation: a short payload ends the loop early.
    let mut tags = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        tags.push(source.string()?);
    }
    let entry = Entry::new(value.as_ref(), &tags, version)?;
    if flags & FLAG_DEAD != 0 {
        entry.mark_dead();
    }
    Some(entry)
}

/// Saved fields read from bytes in the slice format; trailing bytes are left unread.
#[cfg(any(test, fuzzing))]
#[derive(Debug, Clone)]
pub struct SliceSource<'a> {
    rest: &'a [u8],
}

#[cfg(any(test, fuzzing))]
impl<'a> SliceSource<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        for (i, byte) in self.rest.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * i as u32;
            // The tenth byte holds the top bit only: anything more does not fit a u64.
            if bits.checked_shl(shift)? >> shift != bits {
                return None;
            }
            n |= bits << shift;
            if byte & 0x80 == 0 {
                self.rest = self.rest.get(i + 1..)?;
                return Some(n);
            }
        }
        None
    }
}

#[cfg(any(test, fuzzing))]
impl<'a> Source for SliceSource<'a> {
    type Bytes = &'a [u8];

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let bytes = self.rest.get(..len)?;
        self.rest = self.rest.get(len..)?;
        Some(bytes)
    }

    fn unsigned(&mut self) -> Option<u64> {
        let (bytes, rest) = self.rest.split_first_chunk::<8>()?;
        self.rest = rest;
        Some(u64::from_le_bytes(*bytes))
    }
}

/// Writes the slice format.
impl Sink for Vec<u8> {
    fn string(&mut self, bytes: &[u8]) {
        let mut len = bytes.len() as u64;
        while len >= 0x80 {
            self.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        self.push(len as u8);
        self.extend_from_slice(bytes);
    }

    fn unsigned(&mut self, n: u64) {
        self.extend_from_slice(&n.to_le_bytes());
    }
}

/// `entry` in the slice format.
#[cfg(any(test, fuzzing))]
pub fn to_bytes(entry: &Entry, dead: bool) -> Vec<u8> {
    let mut out = Vec::new();
    save(entry, dead, &mut out);
    out
}

/// An entry from the slice format.
#[cfg(any(test, fuzzing))]
pub fn from_bytes(bytes: &[u8]) -> Option<Box<Entry>> {
    load(&mut SliceSource::new(bytes))
}

// Test-only: `unwrap` here fails a unit test, it is never compiled into the module.
#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &[u8], tags: &[&str], version: u64) -> Box<Entry> {
        let tags: Vec<&[u8]> = tags.iter().map(|t| t.as_bytes()).collect();
        Entry::new(value, &tags, version).unwrap()
    }

    /// The fields as `save` writes them, built by hand.
    fn fields(value: &[u8], version: u64, flags: u64, tags: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        out.string(value);
        out.unsigned(version);
        out.unsigned(flags);
        out.unsigned(tags.len() as u64);
        for tag in tags {
            out.string(tag);
        }
        out
    }

    #[test]
    fn save_then_load_gives_the_same_entry() {
        let long = "t".repeat(300);
        for e in [
            entry(b"v", &["b", "a"], 7),
            entry(b"", &[], 0),
            entry(&[0u8, 0xff, 0x80], &[long.as_str(), "", "x\x00"], u64::MAX),
            entry(&vec![1u8; 20_000], &["only"], 1),
        ] {
            let bytes = to_bytes(&e, false);
            assert_eq!(from_bytes(&bytes), Some(e.clone()));
            // Saving what was loaded writes the same bytes.
            assert_eq!(to_bytes(&from_bytes(&bytes).unwrap(), false), bytes);
        }
    }

    #[test]
    fn the_dead_flag_is_saved_and_loaded() {
        let e = entry(b"v", &["a"], 3);
        let loaded = from_bytes(&to_bytes(&e, true)).unwrap();
        assert!(loaded.is_dead());
        assert!(!from_bytes(&to_bytes(&e, false)).unwrap().is_dead());
        e.mark_dead();
        assert_eq!(loaded, e);
        // Other flag bits are ignored.
        let other = fields(b"v", 3, 0b110, &[b"a"]);
        assert!(!from_bytes(&other).unwrap().is_dead());
    }

    #[test]
    fn the_field_order_is_value_version_flags_count_tags() {
        let e = entry(b"val", &["t2", "t1"], 0x0102);
        assert_eq!(
            to_bytes(&e, true),
            fields(b"val", 0x0102, FLAG_DEAD, &[b"t1", b"t2"])
        );
    }

    #[test]
    fn loaded_tags_are_sorted_and_deduplicated() {
        let bytes = fields(b"v", 1, 0, &[b"b", b"a", b"b"]);
        assert_eq!(
            from_bytes(&bytes).unwrap().tag_list(),
            vec![&b"a"[..], b"b"]
        );
    }

    #[test]
    fn short_payloads_are_refused_at_every_cut() {
        let bytes = to_bytes(&entry(b"value", &["t1", "t2"], 9), false);
        for cut in 0..bytes.len() {
            assert_eq!(from_bytes(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_tag_count_above_the_limit_is_corrupt() {
        let mut bytes = fields(b"v", 1, 0, &[]);
        let count_at = bytes.len() - 8;
        bytes[count_at..].copy_from_slice(&(MAX_TAGS_IN_PAYLOAD + 1).to_le_bytes());
        bytes.extend(std::iter::repeat_n(0u8, 64));
        assert_eq!(from_bytes(&bytes), None);
        // At the limit the count is believed, and the payload is then too short.
        bytes[count_at..count_at + 8].copy_from_slice(&MAX_TAGS_IN_PAYLOAD.to_le_bytes());
        assert_eq!(from_bytes(&bytes), None);
    }

    #[test]
    fn varints_that_overflow_or_run_past_the_end_are_refused() {
        let ten_bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(SliceSource::new(&ten_bytes).varint(), Some(u64::MAX));
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(SliceSource::new(&too_big).varint(), None);
        assert_eq!(SliceSource::new(&[0x80; 11]).varint(), None);
        assert_eq!(SliceSource::new(&[0x80]).varint(), None);
        // A non-minimal varint still reads.
        assert_eq!(SliceSource::new(&[0x81, 0x00]).varint(), Some(1));
        let mut huge = SliceSource::new(&ten_bytes);
        assert_eq!(huge.string(), None);
    }

    #[test]
    fn trailing_bytes_are_left_unread() {
        let mut bytes = to_bytes(&entry(b"v", &["a"], 1), false);
        bytes.extend_from_slice(b"more");
        let mut source = SliceSource::new(&bytes);
        assert!(load(&mut source).is_some());
        assert_eq!(source.rest(), b"more");
    }
}
