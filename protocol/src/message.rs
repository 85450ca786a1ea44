//! Reading messages from the invalidation channel (and `HC.EVENTS` replies): format 2, and
//! format 1 from older modules.

use crate::{Change, InvalidationEvent, Name, Op, TagMatch, FORMAT_VERSION, OLDEST_FORMAT_VERSION};
use serde::Deserialize;

/// Why bytes could not be read as a message of invalidation events.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not a JSON object with a numeric `v`.
    #[error("not an invalidation event: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The message is of a format version this reader does not know: the reader must treat
    /// everything as changed.
    #[error(
        "unsupported invalidation event format version {0} (this reader knows {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// The version is known but the body does not match it.
    #[error("invalid version {0} invalidation event: {1}")]
    Invalid(u32, #[source] serde_json::Error),
}

/// Reads one message: the changes it carries, in order.
///
/// Format 2 (what this crate writes, [`crate::MessageWriter`]): one object per message,
/// with the changes of one event-loop turn of one server, numbered consecutively:
/// ```text
/// {"v":2,"origin":"<16 hex>","events":[
///   {"seq":42,"db":0,"op":"set","kind":"keys","keys":["user:1"]},
///   {"seq":43,"db":0,"op":"deltag","kind":"tags","tags":["team:7"]},
///   {"seq":44,"db":null,"op":"flushall","kind":"flush"}]}
/// ```
/// (on one line). Format 1 (modules before batching) is one change per message, its fields
/// at the top level: `{"v":1,"origin":"...","seq":42,"db":0,"op":"set","kind":"keys",...}`.
///
/// - `v`: the format version. The version is read before the body, so that a newer format
///   is reported as [`DecodeError::UnsupportedVersion`] rather than as garbage.
/// - `origin`: a random id of the publishing server process, new at every start. Each
///   server numbers its changes on its own, so a reader tracks `seq` per origin.
/// - `seq`: 1, 2, 3, ... per origin, no gaps: a reader that sees a gap has missed changes
///   (it can ask the server for them with `HC.EVENTS`, or treat everything as changed).
///   A server that takes over from a failed primary announces itself with a
///   [`Op::Promoted`] flush.
/// - `db`: the database the change happened in; `null` means every database.
/// - `op`: why (see [`Op`]); informational, readers act on `kind`.
/// - `kind` and its payload ([`Change`]): what to drop. Names are JSON strings, or
///   `{"b64":"..."}` when they are not UTF-8 ([`Name`]).
pub fn decode_message(bytes: &[u8]) -> Result<Vec<InvalidationEvent>, DecodeError> {
    let wire: Wire = match serde_json::from_slice(bytes) {
        Ok(wire) => wire,
        Err(e) => {
            // Only on failure: tell another version from a broken message.
            let VersionOnly { v } =
                serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
            return Err(if known(v) {
                DecodeError::Invalid(v, e)
            } else {
                DecodeError::UnsupportedVersion(v)
            });
        }
    };
    let v = wire.v;
    if !known(v) {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let invalid = |e| DecodeError::Invalid(v, e);
    if v == 1 {
        let event = WireEvent {
            seq: wire.seq.ok_or_else(|| invalid(missing("seq")))?,
            db: wire.db,
            op: wire.op.ok_or_else(|| invalid(missing("op")))?,
            kind: wire.kind.ok_or_else(|| invalid(missing("kind")))?,
            keys: wire.keys,
            tags: wire.tags,
            matching: TagMatch::Any,
        };
        return Ok(vec![event.into_event(v, wire.origin).map_err(invalid)?]);
    }
    let events = wire.events.ok_or_else(|| invalid(missing("events")))?;
    events
        .into_iter()
        .map(|event| event.into_event(v, wire.origin.clone()).map_err(invalid))
        .collect()
}

fn known(v: u32) -> bool {
    (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&v)
}

fn missing(field: &'static str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::missing_field(field)
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

/// Every field of either version, read in one pass (a flattened, internally tagged layout
/// would make serde buffer the whole object first).
#[derive(Deserialize)]
struct Wire {
    v: u32,
    origin: String,
    events: Option<Vec<WireEvent>>,
    // Format 1: the one change at the top level.
    seq: Option<u64>,
    #[serde(default)]
    db: Option<u32>,
    op: Option<Op>,
    kind: Option<Kind>,
    keys: Option<Vec<Name>>,
    tags: Option<Vec<Name>>,
}

#[derive(Deserialize)]
struct WireEvent {
    seq: u64,
    #[serde(default)]
    db: Option<u32>,
    op: Op,
    kind: Kind,
    keys: Option<Vec<Name>>,
    tags: Option<Vec<Name>>,
    #[serde(default, rename = "match")]
    matching: TagMatch,
}

impl WireEvent {
    fn into_event(self, v: u32, origin: String) -> Result<InvalidationEvent, serde_json::Error> {
        let change = match self.kind {
            Kind::Keys => Change::Keys {
                keys: self.keys.ok_or_else(|| missing("keys"))?,
            },
            Kind::Tags => Change::Tags {
                tags: self.tags.ok_or_else(|| missing("tags"))?,
                matching: self.matching,
            },
            Kind::Flush => Change::Flush,
        };
        Ok(InvalidationEvent {
            v,
            origin,
            seq: self.seq,
            db: self.db,
            op: self.op,
            change,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Keys,
    Tags,
    Flush,
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
                    matching: TagMatch::Any,
                },
            ),
            event(
                Some(0),
                Op::Deltagall,
                Change::Tags {
                    tags: vec![Name::from("t1"), Name::from("t2")],
                    matching: TagMatch::All,
                },
            ),
            event(None, Op::Flushall, Change::Flush),
            event(Some(1), Op::Swapdb, Change::Flush),
        ] {
            assert_eq!(decode_message(&e.encode()).unwrap(), vec![e]);
        }
    }

    #[test]
    fn tag_event_json_names_tags_not_keys() {
        let e = event(
            Some(0),
            Op::Deltag,
            Change::Tags {
                tags: vec![Name::from("t")],
                matching: TagMatch::Any,
            },
        );
        assert_eq!(
            String::from_utf8(e.encode()).unwrap(),
            r#"{"v":2,"origin":"00000000000000ff","events":[{"seq":9,"db":0,"op":"deltag","kind":"tags","tags":["t"]}]}"#
        );
        let all = event(
            Some(0),
            Op::Deltagall,
            Change::Tags {
                tags: vec![Name::from("a"), Name::from("b")],
                matching: TagMatch::All,
            },
        );
        assert_eq!(
            String::from_utf8(all.encode()).unwrap(),
            r#"{"v":2,"origin":"00000000000000ff","events":[{"seq":9,"db":0,"op":"deltagall","kind":"tags","tags":["a","b"],"match":"all"}]}"#
        );
    }

    #[test]
    fn flush_all_has_null_db() {
        let json = String::from_utf8(event(None, Op::Flushall, Change::Flush).encode()).unwrap();
        assert!(json.contains(r#""db":null"#), "{json}");
        assert!(json.ends_with(r#""kind":"flush"}]}"#), "{json}");
    }

    #[test]
    fn format_1_messages_of_older_modules_still_decode() {
        let events = decode_message(
            br#"{"v":1,"origin":"o","seq":4,"db":0,"op":"set","kind":"keys","keys":["k"]}"#,
        )
        .unwrap();
        assert_eq!(
            events,
            vec![InvalidationEvent {
                v: 1,
                origin: "o".into(),
                seq: 4,
                db: Some(0),
                op: Op::Set,
                change: Change::Keys {
                    keys: vec![Name::from("k")]
                },
            }]
        );
        let flush = decode_message(
            br#"{"v":1,"origin":"o","seq":5,"db":null,"op":"flushall","kind":"flush"}"#,
        )
        .unwrap();
        assert_eq!(flush[0].change, Change::Flush);
        assert!(matches!(
            decode_message(br#"{"v":1,"origin":"o","db":0,"op":"set","kind":"flush"}"#),
            Err(DecodeError::Invalid(1, _))
        ));
    }

    #[test]
    fn other_version_is_reported_as_unsupported() {
        for bad in [
            &br#"{"v":3,"anything":"else"}"#[..],
            br#"{"v":0,"origin":"o","events":[]}"#,
        ] {
            let err = decode_message(bad).unwrap_err();
            assert!(matches!(err, DecodeError::UnsupportedVersion(_)), "{err}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [&b"not json"[..], b"{}", b"[1,2]", b"{\"v\":\"1\"}"] {
            assert!(matches!(
                decode_message(bad),
                Err(DecodeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn right_version_with_bad_body_is_invalid() {
        for bad in [
            &br#"{"v":2,"origin":"x","events":[{"seq":1,"db":0,"op":"set","kind":"nope"}]}"#[..],
            br#"{"v":2,"origin":"x"}"#,
            br#"{"v":2,"origin":"x","events":[{"seq":1,"db":0,"op":"set","kind":"keys"}]}"#,
        ] {
            let err = decode_message(bad).unwrap_err();
            assert!(matches!(err, DecodeError::Invalid(2, _)), "{err}");
        }
    }

    #[test]
    fn unknown_op_from_a_newer_module_still_decodes() {
        let events = decode_message(
            br#"{"v":2,"origin":"x","events":[{"seq":1,"db":0,"op":"teleported","kind":"keys","keys":["k"]}]}"#,
        )
        .unwrap();
        assert_eq!(events[0].op, Op::Unknown);
    }
}
