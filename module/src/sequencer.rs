//! Numbering of invalidation events. Pure Rust.

#[cfg(test)]
use hybridcache_protocol::{Change, InvalidationEvent, Op};

/// Gives each event this server publishes the next sequence number under one origin id.
#[derive(Debug)]
pub struct Sequencer {
    origin: String,
    last: u64,
}

impl Sequencer {
    /// A sequencer whose first event will be number 1.
    pub fn new(origin: String) -> Self {
        Self { origin, last: 0 }
    }

    /// Takes the next sequence number, for an event published later (a write stores it as
    /// its version before announcing itself).
    pub fn allocate(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// The event numbered `seq`.
    #[cfg(test)]
    pub fn event(&self, seq: u64, db: Option<u32>, op: Op, change: Change) -> InvalidationEvent {
        InvalidationEvent::new(self.origin.clone(), seq, db, op, change)
    }

    /// The next event.
    #[cfg(test)]
    pub fn next(&mut self, db: Option<u32>, op: Op, change: Change) -> InvalidationEvent {
        let seq = self.allocate();
        self.event(seq, db, op, change)
    }

    /// Makes later numbers greater than `version`, a version found in loaded data, so that
    /// versions stay comparable with the numbers of later events.
    pub fn advance_past(&mut self, version: u64) {
        self.last = self.last.max(version);
    }

    /// The id every event of this process carries.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sequence number of the last event (0 before the first): also the number published.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// A random 64-bit id as 16 hex digits, new for every process.
pub fn random_origin() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_protocol::Name;

    #[test]
    fn events_are_numbered_from_one_without_gaps() {
        let mut seq = Sequencer::new("abc".into());
        assert_eq!(seq.last(), 0);
        let first = seq.next(Some(0), Op::Set, Change::Flush);
        let second = seq.next(
            None,
            Op::Del,
            Change::Keys {
                keys: vec![Name::from("k")],
            },
        );
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(second.origin, "abc");
        assert_eq!(seq.last(), 2);
    }

    #[test]
    fn allocated_numbers_are_not_reused_and_loaded_versions_push_numbers_up() {
        let mut seq = Sequencer::new("o".into());
        assert_eq!(seq.allocate(), 1);
        assert_eq!(seq.next(None, Op::Flushall, Change::Flush).seq, 2);
        seq.advance_past(100);
        assert_eq!(seq.allocate(), 101);
        seq.advance_past(5);
        assert_eq!(seq.allocate(), 102);
    }

    #[test]
    fn origins_differ_and_are_hex() {
        let (a, b) = (random_origin(), random_origin());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
