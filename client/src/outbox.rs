//! Outbound auto-recovery: writes and invalidations that could not reach Redis wait here
//! (bounded, the last write per key wins) and are replayed, in order, when Redis is back and
//! before L1 is trusted again.
//!
//! A queued `set` is the write of record: replayed, it overwrites whatever another instance
//! wrote in between (last write wins). A queued fill keeps its lease: replayed, it is refused
//! if the key changed since the read before its factory (always after a server restart), and
//! it never replaces an operation of the same key queued before it.

use crate::fill::{Lease, Refusals};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One operation waiting for Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Set {
        key: String,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
        tags: Vec<String>,
    },
    /// A factory's value, written only if the lease still holds.
    Fill {
        key: String,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
        tags: Vec<String>,
        lease: Lease,
        refusals: Refusals,
    },
    Del {
        key: String,
    },
    DelTags {
        tags: Vec<String>,
    },
    /// A removal of the entries carrying all of the tags (`HC.DELTAGALL`).
    DelAllTags {
        tags: Vec<String>,
    },
    /// A soft expiry (`HC.STALE`).
    Stale {
        key: String,
    },
    /// A soft expiry of tags (`HC.STALETAG`).
    StaleTags {
        tags: Vec<String>,
    },
}

impl Pending {
    fn key(&self) -> Option<&str> {
        match self {
            Pending::Set { key, .. }
            | Pending::Fill { key, .. }
            | Pending::Del { key }
            | Pending::Stale { key } => Some(key),
            Pending::DelTags { .. } | Pending::DelAllTags { .. } | Pending::StaleTags { .. } => {
                None
            }
        }
    }
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued; the queue was full and its oldest operation was dropped.
    QueuedDroppingOldest,
    /// A fill not queued: an operation of its key is queued already, and replayed first it
    /// would break the fill's lease.
    FillSuperseded,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    /// Most operations kept; 0: auto-recovery is off.
    max: usize,
    items: Mutex<VecDeque<Pending>>,
    /// A background replay is running.
    replaying: AtomicBool,
}

impl Outbox {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            items: Mutex::new(VecDeque::new()),
            replaying: AtomicBool::new(false),
        }
    }

    /// Claims the background replay; false when one is running.
    pub(crate) fn begin_replay(&self) -> bool {
        !self.replaying.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn end_replay(&self) {
        self.replaying.store(false, Ordering::Release);
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.max > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op`; an earlier write or removal of the same key is dropped (the last one
    /// wins), except that a fill never replaces anything. When full, the oldest operation is
    /// dropped.
    pub(crate) fn push(&self, op: Pending) -> Pushed {
        let mut items = self.lock();
        if let Some(key) = op.key() {
            if matches!(op, Pending::Fill { .. })
                && items.iter().any(|queued| queued.key() == Some(key))
            {
                return Pushed::FillSuperseded;
            }
            items.retain(|queued| queued.key() != Some(key));
        }
        items.push_back(op);
        if items.len() > self.max {
            items.pop_front();
            return Pushed::QueuedDroppingOldest;
        }
        Pushed::Queued
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes the oldest operation, to replay it.
    pub(crate) fn pop(&self) -> Option<Pending> {
        self.lock().pop_front()
    }

    /// Puts back an operation whose replay failed, first in line; a newer operation on the
    /// same key queued meanwhile wins over it.
    pub(crate) fn unpop(&self, op: Pending) {
        let mut items = self.lock();
        if let Some(key) = op.key() {
            if items.iter().any(|queued| queued.key() == Some(key)) {
                return;
            }
        }
        items.push_front(op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: u8) -> Pending {
        Pending::Set {
            key: key.into(),
            bytes: vec![value],
            ttl: None,
            tags: vec![],
        }
    }

    #[test]
    fn the_last_operation_per_key_wins_and_order_is_kept() {
        let outbox = Outbox::new(10);
        outbox.push(set("a", 1));
        outbox.push(Pending::DelTags {
            tags: vec!["t".into()],
        });
        outbox.push(set("b", 1));
        outbox.push(set("a", 2));
        outbox.push(Pending::Del { key: "b".into() });
        let drained: Vec<Pending> = std::iter::from_fn(|| outbox.pop()).collect();
        assert_eq!(
            drained,
            [
                Pending::DelTags {
                    tags: vec!["t".into()]
                },
                set("a", 2),
                Pending::Del { key: "b".into() },
            ]
        );
    }

    fn fill(key: &str, value: u8) -> Pending {
        use crate::events::Events;
        use crate::stats::Counters;
        use std::sync::Arc;
        Pending::Fill {
            key: key.into(),
            bytes: vec![value],
            ttl: None,
            tags: vec![],
            lease: Lease::new(b"o:1".to_vec()),
            refusals: Refusals::new(Arc::new(Counters::default()), Arc::new(Events::new("test"))),
        }
    }

    #[test]
    fn a_fill_never_replaces_a_queued_operation_of_its_key_but_a_later_write_replaces_it() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(set("a", 1)), Pushed::Queued);
        assert_eq!(outbox.push(fill("a", 2)), Pushed::FillSuperseded);
        assert_eq!(outbox.push(fill("b", 2)), Pushed::Queued);
        assert_eq!(
            outbox.push(Pending::Del { key: "b".into() }),
            Pushed::Queued
        );
        let drained: Vec<Pending> = std::iter::from_fn(|| outbox.pop()).collect();
        assert_eq!(drained, [set("a", 1), Pending::Del { key: "b".into() }]);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_a_failed_replay_goes_back_first() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(set("a", 1)), Pushed::Queued);
        assert_eq!(outbox.push(set("b", 1)), Pushed::Queued);
        assert_eq!(outbox.push(set("c", 1)), Pushed::QueuedDroppingOldest);
        assert_eq!(outbox.len(), 2);
        let first = outbox.pop().unwrap();
        assert_eq!(first, set("b", 1));
        outbox.unpop(first.clone());
        assert_eq!(outbox.pop(), Some(first));
        // A newer write of the key queued during the replay is not overwritten.
        let old = outbox.pop().unwrap();
        outbox.push(set("c", 9));
        outbox.unpop(old);
        assert_eq!(outbox.pop(), Some(set("c", 9)));
        assert!(outbox.is_empty());
    }
}
