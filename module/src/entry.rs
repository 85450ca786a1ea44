//! A cached entry as the module stores it under a key: the value and its tags. Pure Rust.

use std::sync::atomic::{AtomicBool, Ordering};

/// The value of a module-owned key.
#[derive(Debug)]
pub struct Entry {
    /// The cached bytes.
    pub value: Box<[u8]>,
    /// Distinct tags, sorted.
    pub tags: Box<[Box<[u8]>]>,
    /// The sequence number of the event that announced this value (0 when unknown).
    pub version: u64,
    /// Logically deleted (by an HC.DELTAG) and carried somewhere else before its physical
    /// removal (RENAME, MOVE, COPY, DUMP): still gone for every HC command.
    dead: AtomicBool,
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            tags: self.tags.clone(),
            version: self.version,
            dead: AtomicBool::new(self.is_dead()),
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
            && self.tags == other.tags
            && self.version == other.version
            && self.is_dead() == other.is_dead()
    }
}

impl Eq for Entry {}

impl Entry {
    /// An entry; repeated tags count once.
    pub fn new(value: &[u8], tags: impl IntoIterator<Item = Box<[u8]>>, version: u64) -> Self {
        let mut tags: Vec<Box<[u8]>> = tags.into_iter().collect();
        tags.sort_unstable();
        tags.dedup();
        Self {
            value: value.into(),
            tags: tags.into_boxed_slice(),
            version,
            dead: AtomicBool::new(false),
        }
    }

    /// Whether the entry is logically deleted wherever it is.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Marks the entry logically deleted.
    pub fn mark_dead(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }

    /// Bytes this entry holds on the heap, as `MEMORY USAGE` reports it (the index's
    /// share is accounted by `INFO memory`).
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.value.len()
            + self
                .tags
                .iter()
                .map(|t| t.len() + std::mem::size_of::<Box<[u8]>>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Box<[u8]>> {
        names.iter().map(|n| n.as_bytes().into()).collect()
    }

    #[test]
    fn repeated_tags_count_once_and_are_sorted() {
        let entry = Entry::new(b"v", tags(&["b", "a", "b"]), 1);
        assert_eq!(&*entry.tags, &tags(&["a", "b"])[..]);
    }

    #[test]
    fn dead_marks_survive_cloning() {
        let entry = Entry::new(b"v", tags(&["a"]), 3);
        assert!(!entry.is_dead());
        entry.mark_dead();
        assert!(entry.clone().is_dead());
        assert_ne!(entry, Entry::new(b"v", tags(&["a"]), 3));
    }

    #[test]
    fn memory_usage_grows_with_value_and_tags() {
        let small = Entry::new(b"v", tags(&[]), 1);
        let big = Entry::new(&[0u8; 1000], tags(&["tag"]), 1);
        assert!(big.memory_usage() >= small.memory_usage() + 1000 + 3);
    }
}
