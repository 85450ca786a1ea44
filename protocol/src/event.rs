//! Invalidation events: what the module publishes after every change to an entry.

use crate::{Name, FORMAT_VERSION};
use serde::{Deserialize, Serialize};

/// One invalidation event, as published on the invalidation channel.
///
/// JSON form (one object per pub/sub message; field order as shown):
/// ```text
/// {"v":1,"origin":"<16 hex>","seq":42,"db":0,"op":"set","kind":"keys","keys":["user:1"]}
/// {"v":1,"origin":"<16 hex>","seq":43,"db":0,"op":"deltag","kind":"tags","tags":["team:7"]}
/// {"v":1,"origin":"<16 hex>","seq":44,"db":null,"op":"flushall","kind":"flush"}
/// ```
/// - `v`: the format version ([`FORMAT_VERSION`]).
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
    /// Every key that carried one of these tags is gone. The event names the tags, not
    /// the keys, so its size does not grow with the number of keys a tag held.
    Tags {
        /// The tags.
        tags: Vec<Name>,
    },
    /// Everything in the database (or in every database when `db` is `None`) may have changed.
    Flush,
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
    /// The key left the keyspace another way: expiry, eviction, `DEL`/`UNLINK`, overwrite
    /// by another command, the source of `RENAME`/`MOVE`.
    Removed,
    /// The key entered the keyspace another way: `RENAME`/`MOVE`/`COPY` target, `RESTORE`.
    Added,
    /// The key's time to live was changed by a command (`EXPIRE`, `PEXPIRE`, `EXPIREAT`,
    /// `PEXPIREAT`, `PERSIST`, `GETEX`): copies must be dropped, their deadline is stale.
    Expire,
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

/// Why bytes could not be read as an [`InvalidationEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not a JSON object with a numeric `v`.
    #[error("not an invalidation event: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The event is of another format version: the reader must treat everything as changed.
    #[error(
        "unsupported invalidation event format version {0} (this reader knows {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// The version is right but the body does not match it.
    #[error("invalid version {FORMAT_VERSION} invalidation event: {0}")]
    Invalid(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// The flat wire form read in one pass (the public type's flattened, internally tagged
/// layout would make serde buffer the whole object first).
#[derive(Deserialize)]
struct Wire {
    v: u32,
    origin: String,
    seq: u64,
    #[serde(default)]
    db: Option<u32>,
    op: Op,
    kind: Kind,
    keys: Option<Vec<Name>>,
    tags: Option<Vec<Name>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Keys,
    Tags,
    Flush,
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

    /// The JSON bytes published on the channel.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs, strings and integers into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an event; the version is checked before the body so that a newer format is
    /// reported as [`DecodeError::UnsupportedVersion`] rather than as garbage.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: Wire = match serde_json::from_slice(bytes) {
            Ok(wire) => wire,
            Err(e) => {
                // Only on failure: tell another version from a broken event.
                let VersionOnly { v } =
                    serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
                return Err(if v == FORMAT_VERSION {
                    DecodeError::Invalid(e)
                } else {
                    DecodeError::UnsupportedVersion(v)
                });
            }
        };
        if wire.v != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(wire.v));
        }
        let missing = |field| {
            DecodeError::Invalid(<serde_json::Error as serde::de::Error>::missing_field(
                field,
            ))
        };
        let change = match wire.kind {
            Kind::Keys => Change::Keys {
                keys: wire.keys.ok_or_else(|| missing("keys"))?,
            },
            Kind::Tags => Change::Tags {
                tags: wire.tags.ok_or_else(|| missing("tags"))?,
            },
            Kind::Flush => Change::Flush,
        };
        Ok(Self {
            v: wire.v,
            origin: wire.origin,
            seq: wire.seq,
            db: wire.db,
            op: wire.op,
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(db: Option<u32>, op: Op, change: Change) -> InvalidationEvent {
        InvalidationEvent::new("00000000000000ff", 9, db, op, change)
    }

    #[test]
    fn every_kind_round_trips() {
        for e in [
            event(
                Some(3),
                Op::Del,
                Change::Keys {
                    keys: vec![Name::from("a"), Name(vec![0xfe])],
                },
            ),
            event(
                Some(0),
                Op::Deltag,
                Change::Tags {
                    tags: vec![Name::from("t1"), Name::from("t2")],
                },
            ),
            event(None, Op::Flushall, Change::Flush),
            event(Some(1), Op::Swapdb, Change::Flush),
        ] {
            assert_eq!(InvalidationEvent::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn tag_event_json_names_tags_not_keys() {
        let e = event(
            Some(0),
            Op::Deltag,
            Change::Tags {
                tags: vec![Name::from("t")],
            },
        );
        assert_eq!(
            String::from_utf8(e.encode()).unwrap(),
            r#"{"v":1,"origin":"00000000000000ff","seq":9,"db":0,"op":"deltag","kind":"tags","tags":["t"]}"#
        );
    }

    #[test]
    fn flush_all_has_null_db() {
        let json = String::from_utf8(event(None, Op::Flushall, Change::Flush).encode()).unwrap();
        assert!(json.contains(r#""db":null"#), "{json}");
        assert!(json.ends_with(r#""kind":"flush"}"#), "{json}");
    }

    #[test]
    fn other_version_is_reported_as_unsupported() {
        let err = InvalidationEvent::decode(br#"{"v":2,"anything":"else"}"#).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion(2)), "{err}");
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [&b"not json"[..], b"{}", b"[1,2]", b"{\"v\":\"1\"}"] {
            assert!(matches!(
                InvalidationEvent::decode(bad),
                Err(DecodeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn right_version_with_bad_body_is_invalid() {
        let err = InvalidationEvent::decode(
            br#"{"v":1,"origin":"x","seq":1,"db":0,"op":"set","kind":"nope"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
    }

    #[test]
    fn unknown_op_from_a_newer_module_still_decodes() {
        let e = InvalidationEvent::decode(
            br#"{"v":1,"origin":"x","seq":1,"db":0,"op":"teleported","kind":"keys","keys":["k"]}"#,
        )
        .unwrap();
        assert_eq!(e.op, Op::Unknown);
    }
}
