//! Invalidation events: what the module announces after every change to an entry.

use crate::{Name, FORMAT_VERSION};
use serde::{Deserialize, Serialize};

/// One invalidation event: one change. A pub/sub message carries several (see
/// [`crate::decode_message`] for the wire form).
///
/// - `v`: the format version of the message it came in ([`FORMAT_VERSION`] when written
///   by this crate).
/// - `origin`: a random id of the publishing server process, new at every start. Each
///   server numbers its events on its own, so a reader tracks `seq` per origin.
/// - `seq`: 1, 2, 3, ... per origin, no gaps: a reader that sees a gap has missed events
///   and must treat everything as changed. Origins number independently (every primary of
///   a cluster has its own); a server that takes over from a failed primary announces
///   itself with a [`Op::Promoted`] flush.
/// - `db`: the database the change happened in; `null` means every database.
/// - `op`: why (see [`Op`]); informational, readers act on `kind`.
/// - `kind` and its payload ([`Change`]): what to drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidationEvent {
    /// Format version, [`FORMAT_VERSION`] for events this crate writes.
    pub v: u32,
    /// Random id of the publishing server process.
    pub origin: String,
    /// Sequence number, consecutive per origin, starting at 1.
    pub seq: u64,
    /// Database of the change; `None` means every database.
    pub db: Option<u32>,
    /// Why the change happened.
    pub op: Op,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

/// What an event invalidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// These keys changed or disappeared.
    Keys {
        /// The keys.
        keys: Vec<Name>,
    },
    /// Every key that carried one of these tags (with `"match":"all"`: all of them) is
    /// gone. The event names the tags, not the keys, so its size does not grow with the
    /// number of keys a tag held.
    Tags {
        /// The tags.
        tags: Vec<Name>,
        /// Whether an entry must carry any of the tags or all of them to be gone. Absent on
        /// the wire for [`TagMatch::Any`], so any-of events read the same as before it
        /// existed; a reader that does not know the field drops copies carrying any of the
        /// tags, which is safe (it drops more, never less).
        #[serde(default, rename = "match", skip_serializing_if = "TagMatch::is_any")]
        matching: TagMatch,
    },
    /// Everything in the database (or in every database when `db` is `None`) may have changed.
    Flush,
}

/// Which entries a [`Change::Tags`] reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagMatch {
    /// Entries carrying all of the tags (`HC.DELTAGALL`).
    All,
    /// Entries carrying any of the tags (`HC.DELTAG`, `HC.STALETAG`). Also what a value this
    /// version does not know reads as: it reaches more entries, never fewer.
    #[default]
    #[serde(other)]
    Any,
}

impl TagMatch {
    /// Whether this is [`TagMatch::Any`] (the default, left out on the wire).
    pub fn is_any(&self) -> bool {
        *self == TagMatch::Any
    }

    /// The name on the wire (`"any"`, `"all"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TagMatch::Any => "any",
            TagMatch::All => "all",
        }
    }

    /// Whether an entry carrying `carried` is reached by a removal of `tags` with this
    /// matching (an empty `tags` reaches nothing).
    pub fn reaches<T, U>(self, tags: &[T], carried: &[U]) -> bool
    where
        T: PartialEq<U>,
    {
        match self {
            TagMatch::Any => tags.iter().any(|t| carried.iter().any(|c| t == c)),
            TagMatch::All => {
                !tags.is_empty() && tags.iter().all(|t| carried.iter().any(|c| t == c))
            }
        }
    }
}

/// Why an event was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `HC.SET` wrote the key.
    Set,
    /// `HC.DEL` removed the keys.
    Del,
    /// `HC.DELTAG` removed every key of the tags.
    Deltag,
    /// `HC.DELTAGALL` removed every key carrying all of the tags (`kind` tags, `"match":"all"`).
    /// A reader that does not know this op maps it to [`Op::Unknown`] and acts on `kind`.
    Deltagall,
    /// The key left the keyspace another way: expiry, eviction, `DEL`/`UNLINK`, overwrite
    /// by another command, the source of `RENAME`/`MOVE`.
    Removed,
    /// The key entered the keyspace another way: `RENAME`/`MOVE`/`COPY` target, `RESTORE`.
    Added,
    /// The key's time to live was changed by a command (`EXPIRE`, `PEXPIRE`, `EXPIREAT`,
    /// `PEXPIREAT`, `PERSIST`, `GETEX`): copies must be dropped, their deadline is stale.
    Expire,
    /// `HC.STALE` / `HC.STALETAG` (`kind` keys or tags): the entries left Redis as for
    /// `del`/`deltag`, but were expired on request: a reader may keep its copy as a stale
    /// one, served only by fail-safe, never as fresh. A reader that does not know this op
    /// maps it to [`Op::Unknown`] and drops the copies (`kind`), which is safe.
    Stale,
    /// `FLUSHDB` (or `SWAPDB`, `kind` flush, one event per database).
    Flushdb,
    /// `FLUSHALL`.
    Flushall,
    /// `SWAPDB`: the database now holds another database's keys.
    Swapdb,
    /// The dataset was (re)loaded: `DEBUG RELOAD`, a restart, a full sync from a primary.
    Loaded,
    /// This server has just become a primary (failover, `REPLICAOF NO ONE`): writes its
    /// old primary acknowledged may be lost, so `kind` is flush.
    Promoted,
    /// An op this version does not know (from a newer module); act on `kind`.
    #[serde(other)]
    Unknown,
}

impl Op {
    /// The name on the wire (`"set"`, `"deltag"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Del => "del",
            Op::Deltag => "deltag",
            Op::Deltagall => "deltagall",
            Op::Removed => "removed",
            Op::Added => "added",
            Op::Expire => "expire",
            Op::Stale => "stale",
            Op::Flushdb => "flushdb",
            Op::Flushall => "flushall",
            Op::Swapdb => "swapdb",
            Op::Loaded => "loaded",
            Op::Promoted => "promoted",
            Op::Unknown => "unknown",
        }
    }
}

impl InvalidationEvent {
    /// An event of the current [`FORMAT_VERSION`].
    pub fn new(
        origin: impl Into<String>,
        seq: u64,
        db: Option<u32>,
        op: Op,
        change: Change,
    ) -> Self {
        Self {
            v: FORMAT_VERSION,
            origin: origin.into(),
            seq,
            db,
            op,
            change,
        }
    }

    /// A message of the current format that carries this one event (what a module would
    /// publish for a turn with one change).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = crate::MessageWriter::new(&self.origin);
        writer.push_change(self.seq, self.db, self.op, &self.change);
        writer.finish().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_match_serde() {
        for op in [
            Op::Set,
            Op::Del,
            Op::Deltag,
            Op::Deltagall,
            Op::Removed,
            Op::Added,
            Op::Expire,
            Op::Stale,
            Op::Flushdb,
            Op::Flushall,
            Op::Swapdb,
            Op::Loaded,
            Op::Promoted,
            Op::Unknown,
        ] {
            assert_eq!(
                serde_json::to_string(&op).unwrap(),
                format!("\"{}\"", op.as_str())
            );
        }
    }

    /// What a reader built before `stale` existed does with it: `serde(other)` makes it
    /// [`Op::Unknown`], and the change (`kind`) is read as usual, so it drops the keys or
    /// tags as for `del`/`deltag`.
    #[test]
    fn an_op_a_reader_does_not_know_is_unknown_and_its_change_is_kept() {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum OldOp {
            Del,
            #[serde(other)]
            Unknown,
        }
        #[derive(Deserialize)]
        struct OldEvent {
            op: OldOp,
            #[serde(flatten)]
            change: Change,
        }
        let stale = InvalidationEvent::new(
            "o",
            1,
            Some(0),
            Op::Stale,
            Change::Tags {
                tags: vec![Name::from("t")],
                matching: TagMatch::Any,
            },
        );
        let json = serde_json::to_string(&stale).unwrap();
        let old: OldEvent = serde_json::from_str(&json).unwrap();
        assert!(matches!(old.op, OldOp::Unknown));
        assert!(!matches!(old.op, OldOp::Del));
        assert_eq!(old.change, stale.change);
        // And through this crate's own reader, an op newer than it is Unknown.
        let newer = json.replace("\"stale\"", "\"rot\"");
        let read: InvalidationEvent = serde_json::from_str(&newer).unwrap();
        assert_eq!((read.op, read.change), (Op::Unknown, stale.change));
    }

    /// An all-of removal read by a reader that knows neither `deltagall` nor `match`: an
    /// unknown op, and a tags change it applies to copies carrying any of the tags (more
    /// than needed, never less).
    #[test]
    fn an_all_tags_removal_reads_as_an_any_of_removal_to_an_older_reader() {
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum OldChange {
            Tags { tags: Vec<Name> },
        }
        let all = InvalidationEvent::new(
            "o",
            1,
            Some(0),
            Op::Deltagall,
            Change::Tags {
                tags: vec![Name::from("a"), Name::from("b")],
                matching: TagMatch::All,
            },
        );
        let json = serde_json::to_string(&all).unwrap();
        assert!(json.contains(r#""match":"all""#), "{json}");
        let old: OldChange = serde_json::from_str(&json).unwrap();
        assert_eq!(
            old,
            OldChange::Tags {
                tags: vec![Name::from("a"), Name::from("b")]
            }
        );
        // A matching this version does not know reaches more entries: any.
        let newer = json.replace(r#""match":"all""#, r#""match":"most""#);
        let read: InvalidationEvent = serde_json::from_str(&newer).unwrap();
        assert!(matches!(
            read.change,
            Change::Tags {
                matching: TagMatch::Any,
                ..
            }
        ));
    }

    #[test]
    fn all_of_matching_needs_every_tag_and_any_of_one() {
        let carried = ["a", "b", "c"];
        assert!(TagMatch::All.reaches(&["a", "c"], &carried));
        assert!(!TagMatch::All.reaches(&["a", "d"], &carried));
        assert!(TagMatch::Any.reaches(&["a", "d"], &carried));
        assert!(!TagMatch::Any.reaches(&["d"], &carried));
        let none: [&str; 0] = [];
        assert!(!TagMatch::All.reaches(&none, &carried));
        assert!(!TagMatch::Any.reaches(&none, &carried));
    }
}
