//! Changes and messages for the unit tests.

use hybridcache_protocol::{Change, InvalidationEvent, MessageWriter, Name, Op};

/// The origin of every sample change.
pub(super) const O: &str = "00000000000000aa";

pub(super) fn set(seq: u64, key: &str) -> InvalidationEvent {
    InvalidationEvent::new(
        O,
        seq,
        Some(0),
        Op::Set,
        Change::Keys {
            keys: vec![Name::from(key)],
        },
    )
}

pub(super) fn del(seq: u64, keys: &[&str]) -> InvalidationEvent {
    InvalidationEvent::new(
        O,
        seq,
        Some(0),
        Op::Del,
        Change::Keys {
            keys: keys.iter().map(|k| Name::from(*k)).collect(),
        },
    )
}

pub(super) fn deltag(seq: u64, tags: &[&str]) -> InvalidationEvent {
    InvalidationEvent::new(
        O,
        seq,
        Some(0),
        Op::Deltag,
        Change::Tags {
            tags: tags.iter().map(|t| Name::from(*t)).collect(),
            matching: hybridcache_protocol::TagMatch::Any,
        },
    )
}

pub(super) fn flush(seq: u64, db: Option<u32>, op: Op) -> InvalidationEvent {
    InvalidationEvent::new(O, seq, db, op, Change::Flush)
}

/// One message of `changes`, as the module writes it.
pub(super) fn message(changes: &[InvalidationEvent]) -> Vec<u8> {
    let mut writer = MessageWriter::new(&changes[0].origin);
    for c in changes {
        writer.push_change(c.seq, c.db, c.op, &c.change);
    }
    writer.finish().to_vec()
}
