//! `HC.CHECK`'s core: compares the tag index of one database with the module entries found
//! in its keyspace. Pure Rust.
//!
//! The index is right when:
//! - its key counter equals the number of entries, and its link counter the links it holds;
//! - every live entry is listed under each of its tags;
//! - every listed (tag, key) is an entry of the keyspace that carries the tag;
//! - every logically deleted entry (HC.DELTAG's, awaiting removal) is queued for removal, and
//!   every queued key is still an entry of the keyspace;
//! - every key queued behind a tombstone (a tag's, or HC.DELTAGALL's compound one) is
//!   logically deleted and carries the tag (all of the compound's tags), and every tombstone
//!   counts the queued sets that name it.

use crate::index::TagIndex;
use crate::pending::{HashMap, Stone};
use crate::text::printable;

/// Longest name quoted in a problem report.
const NAME_CHARS: usize = 64;

/// One module entry as the keyspace has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub key: Vec<u8>,
    pub tags: Vec<Vec<u8>>,
    /// Logically deleted (dead, or doomed by a tag invalidation), awaiting removal.
    pub gone: bool,
    /// The slot the entry remembers ([`crate::entry::Entry::slot`]).
    pub slot: u32,
}

/// What `HC.CHECK` found in one database.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Entries in the keyspace.
    pub keys: u64,
    /// (tag, key) links the keyspace's live entries call for.
    pub links: u64,
    /// Differences, as readable sentences.
    pub problems: Vec<String>,
}

impl TagIndex {
    /// Compares the index of `db` with `entries`, the module entries of that database.
    pub fn check(&self, db: i32, entries: &[Observed]) -> Findings {
        let mut findings = Findings {
            keys: entries.len() as u64,
            ..Findings::default()
        };
        let problems = &mut findings.problems;
        let name = |bytes: &[u8]| format!("'{}'", printable(bytes, NAME_CHARS));
        let by_key: HashMap<&[u8], &Observed> =
            entries.iter().map(|e| (e.key.as_slice(), e)).collect();
        let view = self.view(db);
        let name_of = |slot: u32| view.names.and_then(|names| names.get(slot));

        if view.keys != findings.keys {
            problems.push(format!(
                "db {db}: the index counts {} entries, the keyspace holds {}",
                view.keys, findings.keys
            ));
        }
        for entry in entries {
            let needs_slot = entry.gone || !entry.tags.is_empty();
            let slot_named = name_of(entry.slot) == Some(entry.key.as_slice());
            if needs_slot && !slot_named {
                problems.push(format!(
                    "db {db}: key {} remembers slot {}, which the index does not give it",
                    name(&entry.key),
                    entry.slot
                ));
            }
            if entry.gone {
                if !view.pending.is_some_and(|p| p.is_queued(entry.slot)) {
                    problems.push(format!(
                        "db {db}: key {} is logically deleted but not queued for removal",
                        name(&entry.key)
                    ));
                }
                continue;
            }
            for tag in &entry.tags {
                findings.links += 1;
                let listed = view
                    .tags
                    .and_then(|tags| tags.get(tag.as_slice()))
                    .is_some_and(|keys| keys.contains(entry.slot));
                if !listed {
                    problems.push(format!(
                        "db {db}: key {} carries tag {} but the index does not list it",
                        name(&entry.key),
                        name(tag)
                    ));
                }
            }
        }
        for (slot, key) in view.names.into_iter().flat_map(|names| names.iter()) {
            let claimed = by_key
                .get(key)
                .is_some_and(|e| e.slot == slot && (e.gone || !e.tags.is_empty()));
            if !claimed {
                problems.push(format!(
                    "db {db}: the index keeps key {} in slot {slot}, but no entry of it needs it",
                    name(key)
                ));
            }
        }
        let mut held_links = 0u64;
        for (tag, keys) in view.tags.into_iter().flatten() {
            held_links += keys.len();
            for slot in keys.iter() {
                let Some(key) = name_of(slot) else {
                    problems.push(format!(
                        "db {db}: the index lists slot {slot} under tag {}, but no key is in it",
                        name(tag)
                    ));
                    continue;
                };
                match by_key.get(key) {
                    None => problems.push(format!(
                        "db {db}: the index lists key {} under tag {}, but there is no such entry",
                        name(key),
                        name(tag)
                    )),
                    Some(entry) if !entry.tags.iter().any(|t| t.as_slice() == tag.as_ref()) => {
                        problems.push(format!(
                            "db {db}: the index lists key {} under tag {}, which it does not carry",
                            name(key),
                            name(tag)
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        if held_links != view.links {
            problems.push(format!(
                "db {db}: the index counts {} links but holds {held_links}",
                view.links
            ));
        }
        for slot in view.pending.into_iter().flat_map(|p| p.queued()) {
            match name_of(slot) {
                Some(key) if by_key.contains_key(key) => {}
                Some(key) => problems.push(format!(
                    "db {db}: key {} is queued for removal but is no entry of the keyspace",
                    name(key)
                )),
                None => problems.push(format!(
                    "db {db}: slot {slot} is queued for removal but holds no key"
                )),
            }
        }
        check_tombstones(db, &view, &by_key, problems);
        findings
    }
}

/// The tombstones of `db` against the queued sets and the entries they hold.
fn check_tombstones(
    db: i32,
    view: &crate::index::DbView<'_>,
    by_key: &HashMap<&[u8], &Observed>,
    problems: &mut Vec<String>,
) {
    let Some(pending) = view.pending else {
        return;
    };
    let name = |bytes: &[u8]| format!("'{}'", printable(bytes, NAME_CHARS));
    let stone_name = |stone: &Stone| match stone {
        Stone::Tag(tag) => format!("tag {}", name(tag)),
        Stone::AllOf(tags) => {
            let tags: Vec<String> = tags.iter().map(|t| name(t)).collect();
            format!("all of tags {}", tags.join(" "))
        }
    };
    let mut named: Vec<(&Stone, u32)> = Vec::new();
    for (stone, keys) in pending.queued_sets() {
        let Some(stone) = stone else {
            continue;
        };
        match named.iter_mut().find(|(s, _)| *s == stone) {
            Some((_, sets)) => *sets += 1,
            None => named.push((stone, 1)),
        }
        let needed: &[crate::pending::Bytes] = match stone {
            Stone::Tag(tag) => std::slice::from_ref(tag),
            Stone::AllOf(tags) => tags,
        };
        for slot in keys.iter() {
            let Some(entry) = view
                .names
                .and_then(|names| names.get(slot))
                .and_then(|key| by_key.get(key))
            else {
                continue; // reported with the queued keys
            };
            let carries = needed
                .iter()
                .all(|tag| entry.tags.iter().any(|t| t.as_slice() == tag.as_ref()));
            if !carries || !entry.gone {
                problems.push(format!(
                    "db {db}: key {} is queued behind the tombstone of {}, but {}",
                    name(&entry.key),
                    stone_name(stone),
                    if carries {
                        "is not logically deleted"
                    } else {
                        "does not carry its tags"
                    }
                ));
            }
        }
    }
    for (stone, sets) in pending.tombstones() {
        let queued = named
            .iter()
            .find(|(s, _)| **s == stone)
            .map_or(0, |(_, n)| *n);
        if queued != sets {
            problems.push(format!(
                "db {db}: the tombstone of {} counts {sets} queued sets, the queue holds {queued}",
                stone_name(&stone)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_table::NO_SLOT;

    fn entry(key: &str, tags: &[&str]) -> Observed {
        Observed {
            key: key.as_bytes().to_vec(),
            tags: tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
            gone: false,
            slot: NO_SLOT,
        }
    }

    /// Indexes `entries` as the adapters would, giving each the slot the index returns.
    fn indexed(index: &mut TagIndex, entries: &mut [Observed]) {
        for e in entries {
            e.slot = index.insert(0, &e.key, &e.tags);
        }
    }

    #[test]
    fn an_index_built_from_the_keyspace_matches_it() {
        let mut entries = [
            entry("k1", &["a", "b"]),
            entry("k2", &["a"]),
            entry("k3", &[]),
        ];
        let mut index = TagIndex::default();
        indexed(&mut index, &mut entries);
        let findings = index.check(0, &entries);
        assert_eq!(findings.problems, Vec::<String>::new());
        assert_eq!((findings.keys, findings.links), (3, 3));
        assert!(index.check(1, &[]).problems.is_empty());
    }

    #[test]
    fn missing_and_extra_links_and_entries_are_reported() {
        let mut index = TagIndex::default();
        let k1 = index.insert(0, b"k1", [b"a"]);
        let ghost = index.insert(0, b"ghost", [b"a"]);
        let mut entries = [entry("k1", &["a", "b"]), entry("k2", &[])];
        entries[0].slot = k1;
        let problems = index.check(0, &entries).problems;
        assert!(
            problems.iter().any(|p| p.contains("'k1' carries tag 'b'")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("key 'ghost' under tag 'a', but there is no such entry")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("keeps key 'ghost' in slot")),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 3, "{problems:?}");

        let mut stale = [entry("k1", &["b"]), entry("ghost", &["a"])];
        stale[0].slot = k1;
        stale[1].slot = ghost;
        let problems = index.check(0, &stale).problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("key 'k1' under tag 'a', which it does not carry")),
            "{problems:?}"
        );
        // Counters: two entries indexed, none in db 1.
        let problems = index.check(1, &[entry("x", &[])]).problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("counts 0 entries, the keyspace holds 1")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_entry_remembering_a_wrong_slot_is_reported() {
        let mut index = TagIndex::default();
        let mut entries = [entry("k1", &["a"]), entry("k2", &["a"])];
        indexed(&mut index, &mut entries);
        entries[1].slot = entries[0].slot;
        let problems = index.check(0, &entries).problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("key 'k2' remembers slot")),
            "{problems:?}"
        );
    }

    #[test]
    fn invalidated_entries_must_be_queued_until_removed() {
        let mut index = TagIndex::default();
        let mut entries = [
            entry("k1", &["t"]),
            entry("k2", &["t", "u"]),
            entry("k3", &["u"]),
        ];
        indexed(&mut index, &mut entries);
        assert_eq!(index.invalidate(0, &[b"t"], 10), 2);
        entries[0].gone = true;
        entries[1].gone = true;
        assert_eq!(index.check(0, &entries).problems, Vec::<String>::new());

        // A doomed entry the queue does not hold, and a queued key that left the keyspace.
        entries[2].gone = true;
        let problems = index.check(0, &entries[1..]).problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'k3' is logically deleted but not queued")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'k1' is queued for removal but is no entry")),
            "{problems:?}"
        );
    }

    #[test]
    fn keys_queued_behind_a_compound_tombstone_must_be_deleted_entries_with_all_its_tags() {
        let mut index = TagIndex::default();
        let mut entries = [
            entry("ab", &["a", "b"]),
            entry("abc", &["a", "b", "c"]),
            entry("a", &["a"]),
        ];
        indexed(&mut index, &mut entries);
        assert_eq!(index.invalidate_all(0, &[b"a", b"b"], 10), 2);
        entries[0].gone = true;
        entries[1].gone = true;
        assert_eq!(index.check(0, &entries).problems, Vec::<String>::new());

        // The keyspace says one of them is live, and that another lost a tag.
        entries[0].gone = false;
        entries[1].tags = vec![b"a".to_vec(), b"c".to_vec()];
        let problems = index.check(0, &entries).problems;
        assert!(
            problems.iter().any(|p| p.contains(
                "'ab' is queued behind the tombstone of all of tags 'a' 'b', but is not logically deleted"
            )),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'abc' is queued behind the tombstone of all of tags 'a' 'b', but does not carry its tags")),
            "{problems:?}"
        );
    }
}
