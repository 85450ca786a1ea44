//! The tag index: for every database, which keys carry which tag. Pure Rust, no Redis.
//!
//! The index is a function of the keyspace: a key is in it exactly while a module entry is
//! stored under that name, with exactly that entry's tags. The Redis adapters call
//! [`TagIndex::insert`] when an entry enters the keyspace and [`TagIndex::remove`] when it
//! leaves, however that happens. A tag that loses its last key is dropped, so it takes no memory.

use std::collections::{HashMap, HashSet};

type Bytes = Box<[u8]>;

/// Totals reported by `INFO hybridcache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Module entries, all databases.
    pub keys: u64,
    /// Distinct (database, tag) pairs with at least one key.
    pub tags: u64,
    /// (key, tag) links.
    pub links: u64,
}

#[derive(Debug, Default)]
struct DbIndex {
    keys: u64,
    links: u64,
    tags: HashMap<Bytes, HashSet<Bytes>>,
}

/// Per-database map from tag to the keys that carry it.
#[derive(Debug, Default)]
pub struct TagIndex {
    dbs: HashMap<i32, DbIndex>,
}

impl TagIndex {
    /// Records that `key` in `db` now holds an entry with `tags` (distinct).
    pub fn insert<T: AsRef<[u8]>>(&mut self, db: i32, key: &[u8], tags: &[T]) {
        let index = self.dbs.entry(db).or_default();
        index.keys += 1;
        for tag in tags {
            let keys = match index.tags.get_mut(tag.as_ref()) {
                Some(keys) => keys,
                None => index.tags.entry(tag.as_ref().into()).or_default(),
            };
            if keys.insert(key.into()) {
                index.links += 1;
            }
        }
    }

    /// Records that the entry with `tags` stored under `key` in `db` left the keyspace.
    pub fn remove<T: AsRef<[u8]>>(&mut self, db: i32, key: &[u8], tags: &[T]) {
        let Some(index) = self.dbs.get_mut(&db) else {
            return;
        };
        index.keys = index.keys.saturating_sub(1);
        for tag in tags {
            let tag = tag.as_ref();
            let Some(keys) = index.tags.get_mut(tag) else {
                continue;
            };
            if keys.remove(key) {
                index.links = index.links.saturating_sub(1);
            }
            if keys.is_empty() {
                index.tags.remove(tag);
                if index.tags.capacity() > 64 && index.tags.len() < index.tags.capacity() / 4 {
                    index.tags.shrink_to_fit();
                }
            } else if keys.capacity() > 64 && keys.len() < keys.capacity() / 4 {
                keys.shrink_to_fit();
            }
        }
        if index.keys == 0 && index.tags.is_empty() {
            self.dbs.remove(&db);
        }
    }

    /// The keys carrying `tag` in `db`, in no particular order.
    pub fn keys(&self, db: i32, tag: &[u8]) -> Vec<Vec<u8>> {
        self.tag_keys(db, tag)
            .map(|keys| keys.iter().map(|k| k.to_vec()).collect())
            .unwrap_or_default()
    }

    /// The keys carrying at least one of `tags` in `db`, each once.
    pub fn keys_of_any<T: AsRef<[u8]>>(&self, db: i32, tags: &[T]) -> Vec<Vec<u8>> {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for tag in tags {
            if let Some(keys) = self.tag_keys(db, tag.as_ref()) {
                seen.extend(keys.iter().map(|k| &**k));
            }
        }
        seen.into_iter().map(<[u8]>::to_vec).collect()
    }

    /// How many keys carry `tag` in `db`.
    pub fn card(&self, db: i32, tag: &[u8]) -> usize {
        self.tag_keys(db, tag).map_or(0, HashSet::len)
    }

    /// Forgets everything about `db` (FLUSHDB).
    pub fn clear_db(&mut self, db: i32) {
        self.dbs.remove(&db);
    }

    /// Forgets everything (FLUSHALL, before a load).
    pub fn clear(&mut self) {
        self.dbs = HashMap::new();
    }

    /// Exchanges the contents of two databases (SWAPDB).
    pub fn swap(&mut self, a: i32, b: i32) {
        let first = self.dbs.remove(&a);
        let second = self.dbs.remove(&b);
        if let Some(index) = first {
            self.dbs.insert(b, index);
        }
        if let Some(index) = second {
            self.dbs.insert(a, index);
        }
    }

    /// Totals over all databases.
    pub fn stats(&self) -> IndexStats {
        self.dbs
            .values()
            .fold(IndexStats::default(), |acc, db| IndexStats {
                keys: acc.keys + db.keys,
                tags: acc.tags + db.tags.len() as u64,
                links: acc.links + db.links,
            })
    }

    fn tag_keys(&self, db: i32, tag: &[u8]) -> Option<&HashSet<Bytes>> {
        self.dbs.get(&db).and_then(|index| index.tags.get(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        keys.sort();
        keys
    }

    #[test]
    fn insert_links_key_to_each_tag() {
        let mut index = TagIndex::default();
        index.insert(0, b"k1", &[b"a", b"b"]);
        index.insert(0, b"k2", &[b"a"]);
        assert_eq!(
            sorted(index.keys(0, b"a")),
            vec![b"k1".to_vec(), b"k2".to_vec()]
        );
        assert_eq!(index.keys(0, b"b"), vec![b"k1".to_vec()]);
        assert_eq!(index.card(0, b"a"), 2);
        assert_eq!(
            index.stats(),
            IndexStats {
                keys: 2,
                tags: 2,
                links: 3
            }
        );
    }

    #[test]
    fn remove_drops_links_and_empty_tags_take_no_memory() {
        let mut index = TagIndex::default();
        index.insert(0, b"k1", &[b"a", b"b"]);
        index.insert(0, b"k2", &[b"a"]);
        index.remove(0, b"k1", &[b"a", b"b"]);
        assert_eq!(index.keys(0, b"a"), vec![b"k2".to_vec()]);
        assert_eq!(index.card(0, b"b"), 0);
        assert_eq!(index.stats().tags, 1);
        index.remove(0, b"k2", &[b"a"]);
        assert_eq!(index.stats(), IndexStats::default());
        assert!(index.dbs.is_empty(), "an empty database keeps no map");
    }

    #[test]
    fn untagged_keys_are_counted() {
        let mut index = TagIndex::default();
        index.insert(3, b"k", &[] as &[&[u8]]);
        assert_eq!(index.stats().keys, 1);
        index.remove(3, b"k", &[] as &[&[u8]]);
        assert_eq!(index.stats(), IndexStats::default());
    }

    #[test]
    fn databases_are_isolated() {
        let mut index = TagIndex::default();
        index.insert(0, b"k", &[b"t"]);
        index.insert(1, b"k", &[b"t"]);
        index.remove(0, b"k", &[b"t"]);
        assert_eq!(index.card(0, b"t"), 0);
        assert_eq!(index.keys(1, b"t"), vec![b"k".to_vec()]);
        index.clear_db(1);
        assert_eq!(index.stats(), IndexStats::default());
    }

    #[test]
    fn keys_of_any_counts_a_key_with_two_of_the_tags_once() {
        let mut index = TagIndex::default();
        index.insert(0, b"k1", &[b"a", b"b"]);
        index.insert(0, b"k2", &[b"b"]);
        index.insert(0, b"k3", &[b"c"]);
        assert_eq!(
            sorted(index.keys_of_any(0, &[&b"a"[..], b"b", b"zzz"])),
            vec![b"k1".to_vec(), b"k2".to_vec()]
        );
    }

    #[test]
    fn swap_exchanges_databases_even_when_one_is_empty() {
        let mut index = TagIndex::default();
        index.insert(0, b"k0", &[b"t"]);
        index.swap(0, 5);
        assert_eq!(index.card(0, b"t"), 0);
        assert_eq!(index.keys(5, b"t"), vec![b"k0".to_vec()]);
        index.insert(0, b"j", &[b"t"]);
        index.swap(5, 0);
        assert_eq!(index.keys(0, b"t"), vec![b"k0".to_vec()]);
        assert_eq!(index.keys(5, b"t"), vec![b"j".to_vec()]);
    }

    #[test]
    fn remove_of_unknown_key_changes_nothing_it_should_not() {
        let mut index = TagIndex::default();
        index.insert(0, b"k", &[b"t"]);
        index.remove(0, b"other", &[b"t"]);
        index.remove(7, b"k", &[b"t"]);
        assert_eq!(index.keys(0, b"t"), vec![b"k".to_vec()]);
    }

    #[test]
    fn binary_names_are_kept_exactly() {
        let mut index = TagIndex::default();
        index.insert(0, b"\x00\xff", &[b"\xfe\x00"]);
        assert_eq!(index.keys(0, b"\xfe\x00"), vec![b"\x00\xff".to_vec()]);
        assert_eq!(index.card(0, b"\xfe"), 0);
    }

    #[test]
    fn large_tag_shrinks_after_mass_removal() {
        let mut index = TagIndex::default();
        let keys: Vec<Vec<u8>> = (0..10_000).map(|i| format!("k{i}").into_bytes()).collect();
        for k in &keys {
            index.insert(0, k, &[b"t"]);
        }
        for k in &keys[..9_990] {
            index.remove(0, k, &[b"t"]);
        }
        let shape = index
            .tag_keys(0, b"t")
            .map(|set| (set.len(), set.capacity() < 1_000));
        assert_eq!(shape, Some((10, true)), "ten keys left, capacity shrunk");
    }
}
