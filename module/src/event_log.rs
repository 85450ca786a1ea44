//! The log of recent published messages, so that a reader that missed some (its
//! subscription dropped, or it saw a gap) asks for exactly those (`HC.EVENTS SINCE`) instead
//! of dropping everything it cached. Pure Rust.
//!
//! It keeps published messages ([`Sealed`]), oldest first, bounded by a number of changes
//! and of bytes (module config): the oldest changes go first (past the bytes bound, the
//! oldest whole messages: a message larger than the bound is not kept). The changes it holds
//! are always consecutive: a message whose first number does not follow the last one kept
//! (numbers were used while nothing was published: a dataset load, a cluster replica)
//! empties it first, so "the log reaches back to `seq`" means nothing after `seq` is missing.

use crate::event_batch::Sealed;
use hybridcache_protocol::MessageWriter;
use std::collections::VecDeque;

/// Bounds of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogBounds {
    /// Changes kept at most (0: no log).
    pub(crate) max_changes: usize,
    /// Bytes of messages kept at most.
    pub(crate) max_bytes: usize,
}

/// The answer to "what was published after `seq`?".
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Since {
    /// The changes after `seq` (at most the count asked for), as one message; `last` is the
    /// number of the last change published so far.
    Changes {
        message: Vec<u8>,
        count: usize,
        last: u64,
    },
    /// The log no longer reaches back that far (or `seq` is ahead of what was published).
    TooOld { oldest: Option<u64>, last: u64 },
}

/// A published message and the first of its changes still kept.
#[derive(Debug)]
struct Kept {
    sealed: Sealed,
    start: usize,
}

impl Kept {
    fn first(&self) -> Option<u64> {
        self.sealed.changes.get(self.start).map(|(seq, _)| *seq)
    }

    fn last(&self) -> Option<u64> {
        self.sealed.last()
    }

    fn kept(&self) -> usize {
        self.sealed.changes.len().saturating_sub(self.start)
    }
}

#[derive(Debug)]
pub(crate) struct EventLog {
    messages: VecDeque<Kept>,
    changes: usize,
    bytes: usize,
    bounds: LogBounds,
    /// Number of the last change published (kept or not).
    last: u64,
}

impl EventLog {
    pub(crate) fn new(bounds: LogBounds) -> Self {
        Self {
            messages: VecDeque::new(),
            changes: 0,
            bytes: 0,
            bounds,
            last: 0,
        }
    }

    /// Changes kept.
    pub(crate) fn len(&self) -> usize {
        self.changes
    }

    /// Memory the kept messages take (their buffers and change lists).
    pub(crate) fn memory(&self) -> usize {
        self.messages
            .iter()
            .map(|m| {
                m.sealed.message.capacity()
                    + m.sealed.changes.capacity() * size_of::<(u64, std::ops::Range<usize>)>()
            })
            .sum::<usize>()
            + self.messages.capacity() * size_of::<Sealed>()
    }

    /// Number of the oldest change kept.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.messages.front().and_then(Kept::first)
    }

    /// Number of the last change published.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// New bounds; applied now.
    pub(crate) fn set_bounds(&mut self, bounds: LogBounds) {
        if bounds != self.bounds {
            self.bounds = bounds;
            self.trim();
        }
    }

    /// Keeps a message that has just been published.
    pub(crate) fn append(&mut self, sealed: Sealed) {
        let (Some(first), Some(last)) = (sealed.first(), sealed.last()) else {
            return;
        };
        if first != self.last.wrapping_add(1) {
            self.clear();
        }
        self.last = last;
        self.changes += sealed.changes.len();
        self.bytes += sealed.message.len();
        self.messages.push_back(Kept { sealed, start: 0 });
        self.trim();
    }

    /// Forgets everything kept (the numbers published so far stay known).
    pub(crate) fn clear(&mut self) {
        self.messages.clear();
        self.changes = 0;
        self.bytes = 0;
    }

    fn trim(&mut self) {
        while self.bytes > self.bounds.max_bytes {
            let Some(gone) = self.messages.pop_front() else {
                break;
            };
            self.changes -= gone.kept();
            self.bytes -= gone.sealed.message.len();
        }
        while self.changes > self.bounds.max_changes {
            let excess = self.changes - self.bounds.max_changes;
            let Some(front) = self.messages.front_mut() else {
                break;
            };
            if front.kept() > excess {
                front.start += excess;
                self.changes -= excess;
            } else if let Some(gone) = self.messages.pop_front() {
                self.changes -= gone.kept();
                self.bytes -= gone.sealed.message.len();
            }
        }
    }

    /// The changes published after `seq`, at most `count`, written as one message of
    /// `origin`.
    pub(crate) fn since(&self, origin: &str, seq: u64, count: usize) -> Since {
        let too_old = || Since::TooOld {
            oldest: self.oldest(),
            last: self.last,
        };
        if seq > self.last {
            return too_old();
        }
        let mut writer = MessageWriter::new(origin);
        if seq == self.last || count == 0 {
            return Since::Changes {
                message: writer.finish().to_vec(),
                count: 0,
                last: self.last,
            };
        }
        // The next change must be kept: the log is consecutive, so then all the rest is.
        match self.oldest() {
            Some(oldest) if oldest <= seq.saturating_add(1) => {}
            _ => return too_old(),
        }
        // Messages that hold changes after seq; within the first one, skip to seq + 1.
        let start = self
            .messages
            .partition_point(|m| m.last().is_some_and(|last| last <= seq));
        let mut left = count;
        for kept in self.messages.iter().skip(start) {
            if left == 0 {
                break;
            }
            let sealed = &kept.sealed;
            let from = sealed
                .changes
                .partition_point(|(s, _)| *s <= seq)
                .max(kept.start);
            let to = (from + left).min(sealed.changes.len());
            if let (Some((_, a)), Some((_, b))) = (
                sealed.changes.get(from),
                sealed.changes.get(to.wrapping_sub(1)),
            ) {
                if let Some(objects) = sealed.message.get(a.start..b.end) {
                    writer.push_raw(objects, to - from);
                    left -= to - from;
                }
            }
        }
        Since::Changes {
            count: writer.len(),
            message: writer.finish().to_vec(),
            last: self.last,
        }
    }
}

// Unit tests only (`cfg(test)`, never in the loadable module): an `unwrap` or `panic!` here
// is the test failing, as clippy's `allow-*-in-tests` settings permit.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_batch::EventBatch;
    use hybridcache_protocol::{decode_message, Names, Op};

    fn message(seqs: std::ops::RangeInclusive<u64>) -> Sealed {
        let mut batch = EventBatch::new("o");
        for seq in seqs {
            let key = format!("k{seq}");
            batch.push(seq, Some(0), Op::Set, Names::Keys([key.as_bytes()]));
        }
        batch.seal().unwrap()
    }

    fn seqs(answer: &Since) -> Vec<u64> {
        match answer {
            Since::Changes { message, count, .. } => {
                let events = decode_message(message).unwrap();
                assert_eq!(events.len(), *count);
                events.iter().map(|e| e.seq).collect()
            }
            Since::TooOld { .. } => panic!("too old: {answer:?}"),
        }
    }

    const ROOMY: LogBounds = LogBounds {
        max_changes: 1000,
        max_bytes: 1 << 20,
    };

    #[test]
    fn answers_exactly_the_changes_after_seq_across_messages() {
        let mut log = EventLog::new(ROOMY);
        log.append(message(1..=3));
        log.append(message(4..=4));
        log.append(message(5..=9));
        assert_eq!((log.len(), log.oldest(), log.last()), (9, Some(1), 9));
        assert_eq!(seqs(&log.since("o", 0, 100)), (1..=9).collect::<Vec<_>>());
        assert_eq!(seqs(&log.since("o", 2, 100)), (3..=9).collect::<Vec<_>>());
        assert_eq!(seqs(&log.since("o", 3, 100)), (4..=9).collect::<Vec<_>>());
        assert_eq!(seqs(&log.since("o", 2, 3)), [3, 4, 5]);
        assert_eq!(seqs(&log.since("o", 8, 100)), [9]);
        assert_eq!(seqs(&log.since("o", 9, 100)), Vec::<u64>::new());
        assert_eq!(seqs(&log.since("o", 4, 0)), Vec::<u64>::new());
        // The keys come back with their changes.
        let Since::Changes { message, .. } = log.since("o", 6, 1) else {
            panic!()
        };
        let event = &decode_message(&message).unwrap()[0];
        assert_eq!(event.origin, "o");
        assert_eq!(
            event.change,
            hybridcache_protocol::Change::Keys {
                keys: vec!["k7".into()]
            }
        );
    }

    #[test]
    fn the_oldest_messages_go_first_and_then_the_log_is_too_short() {
        let mut log = EventLog::new(LogBounds {
            max_changes: 5,
            max_bytes: 1 << 20,
        });
        log.append(message(1..=3));
        log.append(message(4..=6));
        // 6 changes > 5: the oldest change is gone, the rest of its message stays.
        assert_eq!((log.len(), log.oldest()), (5, Some(2)));
        assert_eq!(
            log.since("o", 0, 10),
            Since::TooOld {
                oldest: Some(2),
                last: 6
            }
        );
        assert_eq!(seqs(&log.since("o", 1, 10)), [2, 3, 4, 5, 6]);
        assert_eq!(seqs(&log.since("o", 3, 10)), [4, 5, 6]);
        // A message larger than the bound keeps its last changes.
        log.append(message(7..=14));
        assert_eq!((log.len(), log.oldest()), (5, Some(10)));
        assert_eq!(seqs(&log.since("o", 9, 10)), [10, 11, 12, 13, 14]);
        assert!(matches!(log.since("o", 8, 10), Since::TooOld { .. }));
        // Bytes bound too.
        let one = message(15..=15).message.len();
        log.set_bounds(LogBounds {
            max_changes: 100,
            max_bytes: one,
        });
        assert_eq!(log.len(), 0);
        log.append(message(15..=15));
        assert_eq!(log.len(), 1);
        assert_eq!(seqs(&log.since("o", 14, 10)), [15]);
        assert!(log.memory() >= one);
    }

    #[test]
    fn a_jump_in_the_numbers_empties_the_log() {
        let mut log = EventLog::new(ROOMY);
        log.append(message(1..=2));
        // 3..=9 were used while nothing was published.
        log.append(message(10..=11));
        assert_eq!((log.len(), log.oldest(), log.last()), (2, Some(10), 11));
        assert!(matches!(log.since("o", 2, 10), Since::TooOld { .. }));
        assert_eq!(seqs(&log.since("o", 9, 10)), [10, 11]);
    }

    #[test]
    fn a_position_ahead_of_what_was_published_is_refused() {
        let mut log = EventLog::new(ROOMY);
        assert!(matches!(log.since("o", 1, 10), Since::TooOld { .. }));
        assert_eq!(seqs(&log.since("o", 0, 10)), Vec::<u64>::new());
        log.append(message(1..=1));
        assert!(matches!(log.since("o", 2, 10), Since::TooOld { .. }));
    }

    #[test]
    fn no_log_when_bounded_to_nothing() {
        let mut log = EventLog::new(LogBounds {
            max_changes: 0,
            max_bytes: 0,
        });
        log.append(message(1..=3));
        assert_eq!((log.len(), log.last()), (0, 3));
        assert!(matches!(log.since("o", 1, 10), Since::TooOld { .. }));
        assert_eq!(seqs(&log.since("o", 3, 10)), Vec::<u64>::new());
    }
}
