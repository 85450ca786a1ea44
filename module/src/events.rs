//! What the module holds for its events: the message of the current turn, the log of
//! published messages, and their counters. Pure Rust.

use crate::event_batch::{EventBatch, Sealed};
use crate::event_log::{EventLog, LogBounds, Since};

#[derive(Debug)]
pub(crate) struct Events {
    /// The changes of this turn, not published yet.
    pub(crate) batch: EventBatch,
    /// Published messages, for `HC.EVENTS SINCE`.
    pub(crate) log: EventLog,
    pub(crate) stats: EventStats,
}

/// Counters for `INFO hybridcache`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventStats {
    /// Messages published.
    pub(crate) messages: u64,
    /// Changes published.
    pub(crate) changes: u64,
    /// `HC.EVENTS SINCE` answered with changes.
    pub(crate) replays: u64,
    /// `HC.EVENTS SINCE` answered that the log does not reach back that far.
    pub(crate) replays_too_old: u64,
}

impl Events {
    pub(crate) fn new(origin: &str, bounds: LogBounds) -> Self {
        Self {
            batch: EventBatch::new(origin),
            log: EventLog::new(bounds),
            stats: EventStats::default(),
        }
    }

    /// Records a message that has just been published (under the log bounds in force).
    pub(crate) fn published(&mut self, sealed: Sealed, bounds: LogBounds) {
        self.stats.messages += 1;
        self.stats.changes += sealed.changes.len() as u64;
        self.log.set_bounds(bounds);
        self.log.append(sealed);
    }

    pub(crate) fn count_replay(&mut self, answer: &Since) {
        match answer {
            Since::Changes { .. } => self.stats.replays += 1,
            Since::TooOld { .. } => self.stats.replays_too_old += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_protocol::{Names, Op};

    #[test]
    fn published_messages_are_counted_and_logged() {
        let bounds = LogBounds {
            max_changes: 10,
            max_bytes: 1 << 20,
        };
        let mut events = Events::new("o", bounds);
        events
            .batch
            .push(1, Some(0), Op::Set, Names::Keys([&b"a"[..]]));
        events
            .batch
            .push(2, Some(0), Op::Set, Names::Keys([&b"b"[..]]));
        let sealed = events.batch.seal().unwrap();
        events.published(sealed, bounds);
        assert_eq!(
            (
                events.stats.messages,
                events.stats.changes,
                events.log.len()
            ),
            (1, 2, 2)
        );
        let answer = events.log.since("o", 0, 10);
        events.count_replay(&answer);
        events.count_replay(&events.log.since("o", 5, 10));
        assert_eq!((events.stats.replays, events.stats.replays_too_old), (1, 1));
    }
}
