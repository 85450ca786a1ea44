//! Counters readable from the cache handle.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the cache's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Reads answered from L1.
    pub l1_hits: u64,
    /// Reads L1 could not answer.
    pub l1_misses: u64,
    /// Reads answered from Redis.
    pub l2_hits: u64,
    /// Reads Redis could not answer (missing key).
    pub l2_misses: u64,
    /// Factory runs of `get_or_set`.
    pub factory_runs: u64,
    /// Invalidation events received.
    pub events_received: u64,
    /// Times the whole L1 was cleared or marked stale (flush events, reconnects, missed events).
    pub l1_flushes: u64,
    /// Times the invalidation subscription was (re)established.
    pub subscriptions: u64,
    /// Stale values served by fail-safe (Redis unreachable, factory failed or timed out).
    pub fail_safe_hits: u64,
    /// Factory values Redis refused to store because the key changed (or one of its tags was
    /// removed) after the read that preceded the factory: returned to their caller, cached
    /// nowhere.
    pub fills_refused: u64,
    /// Times missed invalidation events (a subscription that dropped, a gap in the
    /// sequence) were replayed from the server's event log (`HC.EVENTS`) instead of
    /// clearing L1.
    pub catch_ups: u64,
    /// Invalidation events applied by those replays.
    pub events_replayed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l1_misses: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_misses: AtomicU64,
    pub(crate) factory_runs: AtomicU64,
    pub(crate) events_received: AtomicU64,
    pub(crate) l1_flushes: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) fail_safe_hits: AtomicU64,
    pub(crate) fills_refused: AtomicU64,
    pub(crate) catch_ups: AtomicU64,
    pub(crate) events_replayed: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            l1_hits: read(&self.l1_hits),
            l1_misses: read(&self.l1_misses),
            l2_hits: read(&self.l2_hits),
            l2_misses: read(&self.l2_misses),
            factory_runs: read(&self.factory_runs),
            events_received: read(&self.events_received),
            l1_flushes: read(&self.l1_flushes),
            subscriptions: read(&self.subscriptions),
            catch_ups: read(&self.catch_ups),
            events_replayed: read(&self.events_replayed),
            fail_safe_hits: read(&self.fail_safe_hits),
            fills_refused: read(&self.fills_refused),
        }
    }
}
