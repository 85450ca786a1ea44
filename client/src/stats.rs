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
    pub(crate) l1_hits: Striped,
    pub(crate) l1_misses: Striped,
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

/// Stripes of a [`Striped`] counter: threads beyond this many share stripes.
const STRIPES: usize = 8;

/// One stripe, alone on its cache lines (128 bytes: adjacent lines are fetched in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter bumped on every read (L1 hits and misses): each thread adds to its own stripe,
/// so that threads reading at the same time do not take the same cache line from each
/// other; a read of the counter adds the stripes up.
#[derive(Debug, Default)]
pub(crate) struct Striped([Stripe; STRIPES]);

/// The stripe of the current thread: threads take stripes in turn as they first count.
fn stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Initialised by hand (`usize::MAX`: none yet): a const thread-local is read without
    // the check of a lazy one.
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    let stripe = STRIPE.get();
    if stripe < STRIPES {
        return stripe;
    }
    let stripe = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    STRIPE.set(stripe);
    stripe
}

impl Striped {
    pub(crate) fn bump(&self) {
        self.0[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            l1_hits: self.l1_hits.read(),
            l1_misses: self.l1_misses.read(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_striped_counter_adds_up_the_bumps_of_every_thread() {
        let counter = Arc::new(Striped::default());
        let threads: Vec<_> = (0..2 * STRIPES)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.bump();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.read(), 2000 * STRIPES as u64);
    }
}
