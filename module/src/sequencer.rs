//! Numbering of invalidation events. Pure Rust.

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

    /// The next event.
    pub fn next(&mut self, db: Option<u32>, op: Op, change: Change) -> InvalidationEvent {
        self.last += 1;
        InvalidationEvent::new(self.origin.clone(), self.last, db, op, change)
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
    fn origins_differ_and_are_hex() {
        let (a, b) = (random_origin(), random_origin());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
