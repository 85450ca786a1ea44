//! The one path every change of the keyspace takes: the tag index, the fill leases and the
//! turn's event message are updated together, in [`State::apply`]. Pure Rust.
//!
//! The adapters (commands, keyspace notifications, the data type's callbacks, server events,
//! the removal timer) only describe what happened ([`Change`]) and say whether it is
//! announced ([`Announce`]): a removal a command announces itself (`HC.DEL`'s own deletes)
//! is applied with [`Announce::No`] and the command's change with [`Announce::Yes`].

use crate::entry::Entry;
use crate::fills::KeyspaceChange;
use crate::state::State;
use hybridcache_protocol::{Names, Op};

/// Whether a change is announced to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    Yes,
    /// Announced by another change (the command that caused it), or not a change a reader
    /// could see.
    No,
}

/// Whether this server publishes now: not while a dataset loads (the load ends with one
/// `loaded` change), not as a cluster replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Publishing(pub(crate) bool);

/// What happened.
#[derive(Clone)]
pub(crate) enum Change<'a> {
    /// `HC.SET` stored an entry numbered `version` (taken with [`State::next_version`]),
    /// in place of an entry with `old` tags (None: the key held none of ours).
    Stored {
        db: i32,
        key: &'a [u8],
        old: Option<&'a Entry>,
        new: &'a Entry,
        version: u64,
    },
    /// `HC.SET` wrote an entry already expired: the key was deleted (its removal went
    /// through [`Change::Left`]).
    StoredExpired { db: i32, key: &'a [u8] },
    /// An entry left the keyspace (delete, expiry, eviction, overwrite by another type, the
    /// source of RENAME/MOVE); `gone` when it was logically deleted already (by `HC.DELTAG`,
    /// which announced it).
    Left {
        db: i32,
        key: &'a [u8],
        entry: &'a Entry,
        gone: bool,
    },
    /// An entry entered the keyspace by RENAME/MOVE/COPY/RESTORE or a dataset load,
    /// numbered `version` (`renumbered`: a RESTORE, which is a new write numbered with
    /// [`State::next_version`]); `gone` when it carries a logical deletion (it is queued for
    /// removal, not announced).
    Arrived {
        db: i32,
        key: &'a [u8],
        entry: &'a Entry,
        version: u64,
        renumbered: bool,
        gone: bool,
    },
    /// `HC.DEL` (`op` del) or `HC.STALE` (`op` stale) deleted these keys.
    Deleted {
        db: i32,
        keys: &'a [&'a [u8]],
        op: Op,
    },
    /// A command named the key (any command, `HC.DEL` of a missing key, `HC.SET` refused by
    /// NX/XX): fills that read it before are refused. Nothing is announced.
    Touched { db: i32, key: &'a [u8] },
    /// `DEL`/`UNLINK` of a key in a database the module cannot tell (command filter).
    TouchedInEveryDb { key: &'a [u8] },
    /// A command changed an entry's TTL.
    TtlChanged { db: i32, key: &'a [u8] },
    /// `HC.DELTAG` (`op` deltag) or `HC.STALETAG` (`op` stale): the keys carrying any of
    /// `tags` are logically deleted.
    TagsRemoved {
        db: i32,
        tags: &'a [&'a [u8]],
        op: Op,
    },
    /// `HC.DELTAGALL` (`op` deltagall): the keys carrying all of `tags` (sorted, distinct,
    /// two or more) are logically deleted.
    AllTagsRemoved {
        db: i32,
        tags: &'a [&'a [u8]],
        op: Op,
    },
    /// `FLUSHDB` (`Some(db)`) or `FLUSHALL` (`None`).
    Flushed { db: Option<i32> },
    /// `SWAPDB a b`.
    Swapped { a: i32, b: i32 },
    /// A dataset load starts: the index starts empty; nothing is announced until the end.
    LoadStarted,
    /// A dataset load ended (its entries were indexed with [`Change::Arrived`] unannounced).
    Loaded,
    /// This server became a primary.
    Promoted,
}

/// What applying a change gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Applied {
    /// The number of the last change announced, if any.
    pub(crate) seq: Option<u64>,
    /// `TagsRemoved`, `AllTagsRemoved`: how many keys it logically deleted.
    pub(crate) removed: u64,
}

impl State {
    /// The number the next announced change takes, for a write that stores it as its
    /// version before applying its change.
    pub(crate) fn next_version(&mut self) -> u64 {
        self.sequencer.allocate()
    }

    /// Applies `change` to the index, the fill leases and, when `announce` says so and the
    /// server is `publishing`, the turn's event message.
    pub(crate) fn apply(
        &mut self,
        change: Change<'_>,
        announce: Announce,
        publishing: Publishing,
    ) -> Applied {
        let announced = announce == Announce::Yes && publishing.0;
        let mut applied = Applied::default();
        let no_names = Names::Flush::<[&[u8]; 0]>;
        match change {
            Change::Stored {
                db,
                key,
                old,
                new,
                version,
            } => {
                let slot = match old {
                    Some(old) => self
                        .index
                        .replace(db, key, old.slot(), old.tags(), new.tags()),
                    None => self.index.insert(db, key, new.tags()),
                };
                new.set_slot(slot);
                self.fills.record(KeyspaceChange::Key { db, key });
                if announced {
                    self.announce(Some(version), db, Op::Set, Names::Keys([key]), &mut applied);
                }
            }
            Change::StoredExpired { db, key } => {
                self.fills.record(KeyspaceChange::Key { db, key });
                if announced {
                    self.announce(None, db, Op::Set, Names::Keys([key]), &mut applied);
                }
            }
            Change::Left {
                db,
                key,
                entry,
                gone,
            } => {
                if gone {
                    let tags: Vec<&[u8]> = entry.tags().collect();
                    self.fills
                        .record(KeyspaceChange::LogicallyDeletedKeyRemoved {
                            db,
                            key,
                            tags: &tags,
                        });
                } else {
                    self.fills.record(KeyspaceChange::Key { db, key });
                }
                self.index.remove(db, key, entry.slot(), entry.tags());
                // A logically deleted entry was announced when it was invalidated: its
                // physical removal changes nothing a reader could see.
                if announced && !gone {
                    self.announce(None, db, Op::Removed, Names::Keys([key]), &mut applied);
                }
            }
            Change::Arrived {
                db,
                key,
                entry,
                version,
                renumbered,
                gone,
            } => {
                let mut slot = self.index.insert(db, key, entry.tags());
                if !publishing.0 {
                    // A loaded entry's version comes from this server's earlier life:
                    // later numbers must be greater. (A live server's arrivals carry its
                    // own numbers, or a new one for a RESTORE; advancing there would
                    // leave a gap in the announced numbers.)
                    self.sequencer.advance_past(version);
                }
                if gone {
                    slot = self.index.queue_dead(db, key, slot);
                }
                entry.set_slot(slot);
                if !gone && announced {
                    let seq = renumbered.then_some(version);
                    self.announce(seq, db, Op::Added, Names::Keys([key]), &mut applied);
                }
            }
            Change::Deleted { db, keys, op } => {
                for &key in keys {
                    self.fills.record(KeyspaceChange::Key { db, key });
                }
                if announced && !keys.is_empty() {
                    self.announce(
                        None,
                        db,
                        op,
                        Names::Keys(keys.iter().copied()),
                        &mut applied,
                    );
                }
            }
            Change::Touched { db, key } => self.fills.record(KeyspaceChange::Key { db, key }),
            Change::TouchedInEveryDb { key } => {
                self.fills.record(KeyspaceChange::KeyInEveryDb { key });
            }
            Change::TtlChanged { db, key } => {
                self.fills.record(KeyspaceChange::Key { db, key });
                if announced {
                    self.announce(None, db, Op::Expire, Names::Keys([key]), &mut applied);
                }
            }
            Change::TagsRemoved { db, tags, op } => {
                applied.removed = self.remove_tags(db, tags, op, false, announced, &mut applied);
            }
            Change::AllTagsRemoved { db, tags, op } => {
                applied.removed = self.remove_tags(db, tags, op, true, announced, &mut applied);
            }
            Change::Flushed { db } => {
                self.fills.record(KeyspaceChange::HistoryReset);
                match db {
                    Some(db) => self.index.clear_db(db),
                    None => self.index.clear(),
                }
                if announced {
                    let (op, db) = match db {
                        Some(db) => (Op::Flushdb, Some(db)),
                        None => (Op::Flushall, None),
                    };
                    self.announce_flush(db, op, no_names, &mut applied);
                }
            }
            Change::Swapped { a, b } => {
                self.fills.record(KeyspaceChange::HistoryReset);
                self.index.swap(a, b);
                if announced {
                    self.announce_flush(Some(a), Op::Swapdb, no_names, &mut applied);
                    if b != a {
                        self.announce_flush(Some(b), Op::Swapdb, no_names, &mut applied);
                    }
                }
            }
            Change::LoadStarted => {
                self.fills.record(KeyspaceChange::HistoryReset);
                self.index.clear();
            }
            Change::Loaded => {
                self.fills.record(KeyspaceChange::HistoryReset);
                if announced {
                    self.announce_flush(None, Op::Loaded, no_names, &mut applied);
                }
            }
            Change::Promoted => {
                self.fills.record(KeyspaceChange::HistoryReset);
                if announced {
                    self.announce_flush(None, Op::Promoted, no_names, &mut applied);
                }
            }
        }
        crate::state::note_tombstones(self);
        crate::state::note_fills(self);
        applied
    }

    /// `TagsRemoved` (`all` false: the keys carrying any of `tags`) and `AllTagsRemoved`
    /// (`all`: those carrying every one): how many keys were logically deleted.
    fn remove_tags(
        &mut self,
        db: i32,
        tags: &[&[u8]],
        op: Op,
        all: bool,
        announced: bool,
        applied: &mut Applied,
    ) -> u64 {
        // Whatever the tags held now: fills computed before this removal that name them are
        // refused from here on. For an all-of removal that is conservative (a lease does not
        // know which tags its value will carry together).
        self.fills.record(KeyspaceChange::TagsRemoved { db, tags });
        // The keys are logically deleted behind a tombstone numbered like the change
        // (greater than every version stored so far).
        let marker = self.sequencer.last() + 1;
        let removed = match all {
            true => self.index.invalidate_all(db, tags, marker),
            false => self.index.invalidate(db, tags, marker),
        };
        if removed > 0 {
            self.sequencer.allocate();
            if announced {
                let tags = tags.iter().copied();
                let names = match all {
                    true => Names::AllTags(tags),
                    false => Names::Tags(tags),
                };
                self.announce(Some(marker), db, op, names, applied);
            }
        }
        removed
    }

    fn announce<'n, I>(
        &mut self,
        seq: Option<u64>,
        db: i32,
        op: Op,
        names: Names<I>,
        applied: &mut Applied,
    ) where
        I: IntoIterator<Item = &'n [u8]>,
    {
        let seq = seq.unwrap_or_else(|| self.sequencer.allocate());
        self.events
            .batch
            .push(seq, u32::try_from(db).ok(), op, names);
        applied.seq = Some(seq);
    }

    fn announce_flush(
        &mut self,
        db: Option<i32>,
        op: Op,
        names: Names<[&[u8]; 0]>,
        applied: &mut Applied,
    ) {
        let seq = self.sequencer.allocate();
        let db = db.and_then(|d| u32::try_from(d).ok());
        self.events.batch.push(seq, db, op, names);
        applied.seq = Some(seq);
    }
}

// Unit tests only (`cfg(test)`, never in the loadable module): an `unwrap` or `panic!` here
// is the test failing, as clippy's `allow-*-in-tests` settings permit.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;
    use hybridcache_protocol::{decode_message, Change as Wire, InvalidationEvent};

    const LIVE: Publishing = Publishing(true);

    fn state() -> State {
        State::new("o".into())
    }

    fn published(state: &mut State) -> Vec<InvalidationEvent> {
        state
            .events
            .batch
            .seal()
            .map(|sealed| decode_message(&sealed.message).unwrap())
            .unwrap_or_default()
    }

    fn keys(event: &InvalidationEvent) -> Vec<String> {
        match &event.change {
            Wire::Keys { keys } => keys
                .iter()
                .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn entry(tags: &[&str]) -> Box<Entry> {
        Entry::new(b"v", tags, 0).unwrap()
    }

    #[test]
    fn a_write_indexes_its_tags_and_is_announced_under_its_version() {
        let mut s = state();
        let e = entry(&["t1", "t2"]);
        let version = s.next_version();
        let applied = s.apply(
            Change::Stored {
                db: 0,
                key: b"k",
                old: None,
                new: &e,
                version,
            },
            Announce::Yes,
            LIVE,
        );
        assert_eq!(applied.seq, Some(version));
        assert_eq!(s.index.keys(0, b"t1"), vec![b"k".to_vec()]);
        let events = published(&mut s);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].seq, events[0].op), (version, Op::Set));
        assert_eq!(keys(&events[0]), ["k"]);
    }

    #[test]
    fn a_removal_announced_by_its_command_is_applied_but_not_announced() {
        let mut s = state();
        let e = entry(&["t"]);
        let v = s.next_version();
        s.apply(
            Change::Stored {
                db: 0,
                key: b"k",
                old: None,
                new: &e,
                version: v,
            },
            Announce::Yes,
            LIVE,
        );
        published(&mut s);
        s.apply(
            Change::Left {
                db: 0,
                key: b"k",
                entry: &e,
                gone: false,
            },
            Announce::No,
            LIVE,
        );
        assert!(s.index.keys(0, b"t").is_empty());
        s.apply(
            Change::Deleted {
                db: 0,
                keys: &[b"k"],
                op: Op::Del,
            },
            Announce::Yes,
            LIVE,
        );
        let events = published(&mut s);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].op, events[0].seq), (Op::Del, v + 1));
    }

    #[test]
    fn nothing_is_announced_while_not_publishing_but_the_index_follows() {
        let mut s = state();
        let e = entry(&["t"]);
        let applied = s.apply(
            Change::Arrived {
                db: 2,
                key: b"k",
                entry: &e,
                version: 40,
                renumbered: false,
                gone: false,
            },
            Announce::Yes,
            Publishing(false),
        );
        assert_eq!(applied.seq, None);
        assert_eq!(s.index.card(2, b"t"), 1);
        // Loaded versions push later numbers up.
        assert_eq!(s.next_version(), 41);
        // A live server's arrivals leave the numbering alone: no gap in what it announces.
        s.apply(
            Change::Arrived {
                db: 2,
                key: b"j",
                entry: &e,
                version: 900,
                renumbered: false,
                gone: true,
            },
            Announce::Yes,
            LIVE,
        );
        assert_eq!(s.next_version(), 42);
        assert!(published(&mut s).is_empty());
    }

    #[test]
    fn a_tag_removal_is_one_change_numbered_past_every_version_and_only_when_it_removed_keys() {
        let mut s = state();
        let e = entry(&["t"]);
        let v = s.next_version();
        s.apply(
            Change::Stored {
                db: 0,
                key: b"k",
                old: None,
                new: &e,
                version: v,
            },
            Announce::Yes,
            LIVE,
        );
        published(&mut s);
        let none = s.apply(
            Change::TagsRemoved {
                db: 0,
                tags: &[b"other"],
                op: Op::Deltag,
            },
            Announce::Yes,
            LIVE,
        );
        assert_eq!(none, Applied::default());
        let applied = s.apply(
            Change::TagsRemoved {
                db: 0,
                tags: &[b"t"],
                op: Op::Deltag,
            },
            Announce::Yes,
            LIVE,
        );
        assert_eq!(
            applied,
            Applied {
                seq: Some(v + 1),
                removed: 1
            }
        );
        assert!(s.index.dooms(0, e.tags(), v));
        let events = published(&mut s);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].op, Op::Deltag);
        // Its physical removal later is not announced again.
        s.apply(
            Change::Left {
                db: 0,
                key: b"k",
                entry: &e,
                gone: true,
            },
            Announce::Yes,
            LIVE,
        );
        assert!(published(&mut s).is_empty());
    }

    #[test]
    fn an_all_tags_removal_deletes_the_intersection_under_one_compound_tombstone() {
        let mut s = state();
        let (both, one) = (entry(&["a", "b"]), entry(&["a"]));
        for (key, e) in [(&b"both"[..], &both), (&b"one"[..], &one)] {
            let version = s.next_version();
            s.apply(
                Change::Stored {
                    db: 0,
                    key,
                    old: None,
                    new: e,
                    version,
                },
                Announce::Yes,
                LIVE,
            );
        }
        published(&mut s);
        let none = s.apply(
            Change::AllTagsRemoved {
                db: 0,
                tags: &[b"a", b"zz"],
                op: Op::Deltagall,
            },
            Announce::Yes,
            LIVE,
        );
        assert_eq!(
            none,
            Applied::default(),
            "nothing removed, nothing announced"
        );
        let applied = s.apply(
            Change::AllTagsRemoved {
                db: 0,
                tags: &[b"a", b"b"],
                op: Op::Deltagall,
            },
            Announce::Yes,
            LIVE,
        );
        assert_eq!(
            applied,
            Applied {
                seq: Some(3),
                removed: 1
            }
        );
        assert!(s.index.dooms(0, both.tags(), 2));
        assert!(!s.index.dooms(0, one.tags(), 2));
        let events = published(&mut s);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].seq, events[0].op), (3, Op::Deltagall));
        assert_eq!(
            events[0].change,
            Wire::Tags {
                tags: vec!["a".into(), "b".into()],
                matching: hybridcache_protocol::TagMatch::All,
            }
        );
    }

    #[test]
    fn flushes_swaps_loads_and_promotions_are_flush_changes_in_order() {
        let mut s = state();
        s.apply(Change::Flushed { db: Some(3) }, Announce::Yes, LIVE);
        s.apply(Change::Flushed { db: None }, Announce::Yes, LIVE);
        s.apply(Change::Swapped { a: 0, b: 1 }, Announce::Yes, LIVE);
        s.apply(Change::Swapped { a: 2, b: 2 }, Announce::Yes, LIVE);
        s.apply(Change::LoadStarted, Announce::Yes, LIVE);
        s.apply(Change::Loaded, Announce::Yes, LIVE);
        s.apply(Change::Promoted, Announce::Yes, LIVE);
        let events = published(&mut s);
        let got: Vec<(u64, Option<u32>, Op)> = events.iter().map(|e| (e.seq, e.db, e.op)).collect();
        assert_eq!(
            got,
            [
                (1, Some(3), Op::Flushdb),
                (2, None, Op::Flushall),
                (3, Some(0), Op::Swapdb),
                (4, Some(1), Op::Swapdb),
                (5, Some(2), Op::Swapdb),
                (6, None, Op::Loaded),
                (7, None, Op::Promoted),
            ]
        );
        assert!(events.iter().all(|e| e.change == Wire::Flush));
    }

    #[test]
    fn touches_are_not_announced_and_ttl_changes_are() {
        let mut s = state();
        s.apply(Change::Touched { db: 0, key: b"k" }, Announce::Yes, LIVE);
        s.apply(Change::TouchedInEveryDb { key: b"k" }, Announce::Yes, LIVE);
        assert!(published(&mut s).is_empty());
        s.apply(Change::TtlChanged { db: 0, key: b"k" }, Announce::Yes, LIVE);
        let events = published(&mut s);
        assert_eq!(events[0].op, Op::Expire);
    }

    #[test]
    fn a_soft_expiry_is_a_removal_announced_under_its_own_op() {
        let mut s = state();
        let (e, f) = (entry(&["t"]), entry(&["u"]));
        for (key, entry) in [(&b"k"[..], &e), (&b"j"[..], &f)] {
            let version = s.next_version();
            s.apply(
                Change::Stored {
                    db: 0,
                    key,
                    old: None,
                    new: entry,
                    version,
                },
                Announce::Yes,
                LIVE,
            );
        }
        published(&mut s);
        s.apply(
            Change::Deleted {
                db: 0,
                keys: &[b"k"],
                op: Op::Stale,
            },
            Announce::Yes,
            LIVE,
        );
        let applied = s.apply(
            Change::TagsRemoved {
                db: 0,
                tags: &[b"u"],
                op: Op::Stale,
            },
            Announce::Yes,
            LIVE,
        );
        // Logically deleted as by HC.DELTAG: the same tombstone, the same count.
        assert_eq!(applied.removed, 1);
        assert!(s.index.dooms(0, f.tags(), 2));
        let events = published(&mut s);
        let got: Vec<(u64, Op, Wire)> = events
            .into_iter()
            .map(|e| (e.seq, e.op, e.change))
            .collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    Op::Stale,
                    Wire::Keys {
                        keys: vec!["k".into()]
                    }
                ),
                (
                    4,
                    Op::Stale,
                    Wire::Tags {
                        tags: vec!["u".into()],
                        matching: hybridcache_protocol::TagMatch::Any,
                    }
                ),
            ]
        );
    }
}
