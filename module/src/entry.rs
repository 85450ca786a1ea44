//! A cached entry as the module stores it under a key: the value and its tags. Pure Rust.

/// The value of a module-owned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The cached bytes.
    pub value: Box<[u8]>,
    /// Distinct tags, sorted.
    pub tags: Box<[Box<[u8]>]>,
    /// The sequence number of the event that announced this value (0 when unknown).
    pub version: u64,
}

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
        }
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
    fn memory_usage_grows_with_value_and_tags() {
        let small = Entry::new(b"v", tags(&[]), 1);
        let big = Entry::new(&[0u8; 1000], tags(&["tag"]), 1);
        assert!(big.memory_usage() >= small.memory_usage() + 1000 + 3);
    }
}
