//! Fills: values a factory produced, and the one place that decides where they are kept.
//!
//! A fill is written to Redis only with the lease of a read made **before** the factory ran
//! (`HC.FETCH key LEASE`), as `HC.SET ... LEASE token`: the server refuses it if anything
//! changed the key, removed one of its tags or reset the server's history since that read,
//! so a value computed from an outdated source can never replace a newer write. The caller
//! always gets the value; what is cached is decided here:
//!
//! | what the fill has | Redis | L1 |
//! |---|---|---|
//! | this handle changed the key while the factory ran | not written | untouched |
//! | no lease (Redis could not be read before the factory) | not written | untouched |
//! | an entry kept out of Redis (`skip_l2`) | — | kept, unless an invalidation since the read names it |
//! | a lease, write accepted | written | kept (unless `skip_l1`), as the accepted version |
//! | a lease, write refused | not written | the key's copy dropped, the refusal counted |
//! | a lease, Redis unreachable | queued with its lease (auto-recovery) or lost | untouched |
//!
//! A write without a lease is never sent unconditionally: nothing can tell whether the key
//! changed while the factory ran.

use crate::events::{CacheEvent, Events};
use crate::stats::{bump, Counters};
use std::sync::Arc;
use std::time::Instant;

/// A fill lease: the opaque token `HC.FETCH key LEASE` returned, valid on the server that
/// issued it until the key changes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Lease(Arc<[u8]>);

impl Lease {
    pub(crate) fn new(token: Vec<u8>) -> Self {
        Self(token.into())
    }

    pub(crate) fn token(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", String::from_utf8_lossy(&self.0))
    }
}

/// What a fill is based on: taken before its factory ran.
#[derive(Debug, Clone)]
pub(crate) struct FillBasis {
    /// The lease of the read before the factory (`None`: Redis could not be read, or the
    /// entry is kept out of it).
    pub(crate) lease: Option<Lease>,
    /// The invalidation-log mark taken before that read: L1 never keeps the value if an
    /// invalidation recorded since names it.
    pub(crate) mark: u64,
}

/// Where a produced value goes before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `HC.SET ... LEASE token`, then L1 according to [`l1_after_write`].
    Conditional(Lease),
    /// The entry is kept out of Redis: L1 only, guarded by the invalidation log.
    L1Only,
    /// Not cached anywhere.
    Discard(Discarded),
}

/// Why a produced value is not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discarded {
    /// This handle wrote or removed the key (or removed tags) while the factory ran.
    ChangedHere,
    /// No lease: Redis could not be read before the factory ran.
    NoLease,
}

/// Where a value produced after a read that gave `lease` goes (`skips_l2`: the entry's
/// options keep it out of Redis; `changed_here`: this handle changed the key meanwhile).
pub(crate) fn route(lease: Option<&Lease>, skips_l2: bool, changed_here: bool) -> Route {
    if changed_here {
        return Route::Discard(Discarded::ChangedHere);
    }
    if skips_l2 {
        return Route::L1Only;
    }
    match lease {
        Some(lease) => Route::Conditional(lease.clone()),
        None => Route::Discard(Discarded::NoLease),
    }
}

/// What the conditional write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FillWrite {
    /// Written: the value's origin and version, and when it expires in Redis.
    Accepted {
        origin: Arc<str>,
        version: u64,
        expires_at: Option<Instant>,
    },
    /// The server refused it: the key changed since the lease was given.
    Refused,
    /// Redis could not be reached; queued for auto-recovery with its lease.
    Queued,
    /// Redis could not be reached (no auto-recovery) or answered an error: the outcome of
    /// a write that timed out is unknown, but it was conditional either way.
    Failed,
}

/// What L1 does after a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum L1AfterFill {
    /// Keep the value as this version of this origin, no longer than it lives in Redis.
    Keep {
        origin: Arc<str>,
        version: u64,
        expires_at: Option<Instant>,
    },
    /// Drop whatever L1 holds for the key: the server says it changed.
    Drop,
    /// Leave L1 as it is (the value is not kept; a fail-safe copy stays).
    Untouched,
}

/// What L1 does with a produced value once Redis answered the conditional write.
pub(crate) fn l1_after_write(write: &FillWrite, skips_l1: bool) -> L1AfterFill {
    match write {
        FillWrite::Accepted { .. } if skips_l1 => L1AfterFill::Drop,
        FillWrite::Accepted {
            origin,
            version,
            expires_at,
        } => L1AfterFill::Keep {
            origin: origin.clone(),
            version: *version,
            expires_at: *expires_at,
        },
        FillWrite::Refused => L1AfterFill::Drop,
        FillWrite::Queued | FillWrite::Failed => L1AfterFill::Untouched,
    }
}

/// Where refused fills are counted and reported: the stats and events of the cache that
/// produced them (also for a queued fill refused when it is replayed).
#[derive(Clone)]
pub(crate) struct Refusals {
    counters: Arc<Counters>,
    events: Arc<Events>,
}

impl Refusals {
    pub(crate) fn new(counters: Arc<Counters>, events: Arc<Events>) -> Self {
        Self { counters, events }
    }

    /// Counts a refused fill of `key` and reports it.
    pub(crate) fn refused(&self, key: &str) {
        tracing::debug!(
            key,
            "fill refused: the key changed since the read before the factory"
        );
        bump(&self.counters.fills_refused);
        self.events
            .emit("fill_refused", || CacheEvent::FillRefused {
                key: key.to_string(),
            });
    }
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals").finish_non_exhaustive()
    }
}

/// Two reporters are equal when they report to the same cache.
impl PartialEq for Refusals {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.counters, &other.counters)
    }
}

impl Eq for Refusals {}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease::new(b"o:1".to_vec())
    }

    #[test]
    fn a_value_is_written_only_with_a_lease_taken_before_the_factory() {
        assert_eq!(
            route(Some(&lease()), false, false),
            Route::Conditional(lease())
        );
        assert_eq!(
            route(None, false, false),
            Route::Discard(Discarded::NoLease)
        );
    }

    #[test]
    fn a_change_made_here_meanwhile_discards_the_value_whatever_else_holds() {
        for (lease, skips_l2) in [(Some(lease()), false), (None, false), (None, true)] {
            assert_eq!(
                route(lease.as_ref(), skips_l2, true),
                Route::Discard(Discarded::ChangedHere)
            );
        }
    }

    #[test]
    fn entries_kept_out_of_redis_go_to_l1_only_lease_or_not() {
        assert_eq!(route(None, true, false), Route::L1Only);
        assert_eq!(route(Some(&lease()), true, false), Route::L1Only);
    }

    #[test]
    fn an_accepted_fill_is_kept_in_l1_as_the_accepted_version() {
        let expires_at = Some(Instant::now());
        let accepted = FillWrite::Accepted {
            origin: "o".into(),
            version: 7,
            expires_at,
        };
        assert_eq!(
            l1_after_write(&accepted, false),
            L1AfterFill::Keep {
                origin: "o".into(),
                version: 7,
                expires_at,
            }
        );
        assert_eq!(l1_after_write(&accepted, true), L1AfterFill::Drop);
    }

    #[test]
    fn a_refused_fill_leaves_no_l1_copy_of_the_key() {
        for skips_l1 in [false, true] {
            assert_eq!(
                l1_after_write(&FillWrite::Refused, skips_l1),
                L1AfterFill::Drop
            );
        }
    }

    #[test]
    fn an_unanswered_fill_is_not_kept_and_leaves_l1_alone() {
        for write in [FillWrite::Queued, FillWrite::Failed] {
            assert_eq!(l1_after_write(&write, false), L1AfterFill::Untouched);
        }
    }

    #[test]
    fn refusals_are_counted_and_reported_to_the_cache_that_produced_them() {
        let counters = Arc::new(Counters::default());
        let events = Arc::new(Events::new("test"));
        let mut rx = events.subscribe();
        let refusals = Refusals::new(counters.clone(), events);
        refusals.refused("k");
        assert_eq!(counters.snapshot().fills_refused, 1);
        assert_eq!(
            rx.try_recv().unwrap(),
            CacheEvent::FillRefused { key: "k".into() }
        );
        assert_eq!(refusals.clone(), refusals);
    }
}
