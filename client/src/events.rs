//! What happens in a cache, as events for listeners ([`HybridCache::events`]) and as
//! counters of the [`metrics`] facade (`hybridcache_events_total{cache, event}`), which any
//! `metrics` exporter (Prometheus, OpenTelemetry, ...) can publish. Install the exporter's
//! recorder before building caches: counters are registered when a cache is built.
//!
//! [`HybridCache::events`]: crate::HybridCache::events

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::broadcast;

/// Events kept for a slow listener before it starts missing some
/// ([`broadcast::error::RecvError::Lagged`]).
const LISTENER_BUFFER: usize = 1024;

/// One thing that happened in a cache. Keys and tags are as stored in Redis (namespace
/// included).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheEvent {
    /// A read answered from L1.
    Hit {
        /// The key.
        key: String,
    },
    /// A read L1 could not answer.
    Miss {
        /// The key.
        key: String,
    },
    /// A value was written (Redis and L1).
    Set {
        /// The key.
        key: String,
    },
    /// A key was removed by this handle.
    Remove {
        /// The key.
        key: String,
    },
    /// This handle removed the entries of tags.
    RemoveByTag {
        /// The tags.
        tags: Vec<String>,
    },
    /// This handle removed the entries carrying all of the tags.
    RemoveByAllTags {
        /// The tags.
        tags: Vec<String>,
    },
    /// This handle expired a key on request (soft expiry: stale copies serve fail-safe).
    Expire {
        /// The key.
        key: String,
    },
    /// This handle expired the entries of tags on request.
    ExpireByTag {
        /// The tags.
        tags: Vec<String>,
    },
    /// An invalidation event from the module was applied to L1.
    InvalidationReceived,
    /// A stale value was served instead of an error (Redis unreachable, factory failed or
    /// timed out).
    FailSafeActivated {
        /// The key.
        key: String,
    },
    /// A factory failed (returned an error or declared failure).
    FactoryError {
        /// The key.
        key: String,
        /// The factory's error, as text.
        error: String,
    },
    /// A factory ran past its soft or hard timeout.
    FactoryTimedOut {
        /// The key.
        key: String,
    },
    /// A hit past the eager-refresh threshold started a background refresh.
    EagerRefresh {
        /// The key.
        key: String,
    },
    /// Redis failed too often: it is not called for a while.
    CircuitOpened,
    /// Redis answered again.
    CircuitClosed,
    /// An operation that could not reach Redis was queued for auto-recovery.
    Queued,
    /// Queued operations were replayed to Redis.
    Replayed {
        /// How many.
        count: usize,
    },
    /// Redis refused to store a factory's value because the key changed (or one of its
    /// tags was removed) after the read that preceded the factory. The value was returned to
    /// its caller and is cached nowhere.
    FillRefused {
        /// The key.
        key: String,
    },
}

impl CacheEvent {
    /// The `event` label of the metric.
    pub fn name(&self) -> &'static str {
        match self {
            CacheEvent::Hit { .. } => "hit",
            CacheEvent::Miss { .. } => "miss",
            CacheEvent::Set { .. } => "set",
            CacheEvent::Remove { .. } => "remove",
            CacheEvent::RemoveByTag { .. } => "remove_by_tag",
            CacheEvent::RemoveByAllTags { .. } => "remove_by_all_tags",
            CacheEvent::Expire { .. } => "expire",
            CacheEvent::ExpireByTag { .. } => "expire_by_tag",
            CacheEvent::InvalidationReceived => "invalidation_received",
            CacheEvent::FailSafeActivated { .. } => "fail_safe_activated",
            CacheEvent::FactoryError { .. } => "factory_error",
            CacheEvent::FactoryTimedOut { .. } => "factory_timed_out",
            CacheEvent::EagerRefresh { .. } => "eager_refresh",
            CacheEvent::CircuitOpened => "circuit_opened",
            CacheEvent::CircuitClosed => "circuit_closed",
            CacheEvent::Queued => "queued",
            CacheEvent::Replayed { .. } => "replayed",
            CacheEvent::FillRefused { .. } => "fill_refused",
        }
    }
}

/// Every event name, in the order of [`Kind`].
const NAMES: [&str; 18] = [
    "hit",
    "miss",
    "set",
    "remove",
    "remove_by_tag",
    "invalidation_received",
    "fail_safe_activated",
    "factory_error",
    "factory_timed_out",
    "eager_refresh",
    "circuit_opened",
    "circuit_closed",
    "queued",
    "replayed",
    "fill_refused",
    "expire",
    "expire_by_tag",
    "remove_by_all_tags",
];

pub(crate) struct Events {
    tx: broadcast::Sender<CacheEvent>,
    /// Someone called `subscribe`: from then on events are built and sent.
    listened: AtomicBool,
    counters: Vec<metrics::Counter>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("listened", &self.listened)
            .finish()
    }
}

impl Events {
    /// Events of the cache named `cache` (the metrics label).
    pub fn new(cache: &str) -> Self {
        let (tx, _) = broadcast::channel(LISTENER_BUFFER);
        let counters = NAMES
            .iter()
            .map(|event| {
                metrics::counter!(
                    "hybridcache_events_total",
                    "cache" => cache.to_string(),
                    "event" => *event
                )
            })
            .collect();
        Self {
            tx,
            listened: AtomicBool::new(false),
            counters,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CacheEvent> {
        self.listened.store(true, Ordering::Relaxed);
        self.tx.subscribe()
    }

    /// Counts an event of `name` and, when someone listens, sends the one `make` builds.
    pub fn emit(&self, name: &'static str, make: impl FnOnce() -> CacheEvent) {
        // Names are static strings of NAMES: compared by address first (the hit path).
        if let Some(i) = NAMES
            .iter()
            .position(|n| std::ptr::eq(*n, name) || *n == name)
        {
            if let Some(counter) = self.counters.get(i) {
                counter.increment(1);
            }
        }
        if self.listened.load(Ordering::Relaxed) {
            let event = make();
            debug_assert_eq!(event.name(), name);
            let _ = self.tx.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_receive_events_sent_after_they_subscribed() {
        let events = Events::new("test");
        events.emit("hit", || CacheEvent::Hit { key: "a".into() });
        let mut rx = events.subscribe();
        events.emit("miss", || CacheEvent::Miss { key: "b".into() });
        assert_eq!(rx.try_recv().unwrap(), CacheEvent::Miss { key: "b".into() });
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn every_event_has_a_metric_name() {
        for event in [
            CacheEvent::Hit { key: String::new() },
            CacheEvent::InvalidationReceived,
            CacheEvent::Replayed { count: 1 },
            CacheEvent::CircuitOpened,
            CacheEvent::FillRefused { key: String::new() },
            CacheEvent::Expire { key: String::new() },
            CacheEvent::ExpireByTag { tags: Vec::new() },
            CacheEvent::RemoveByAllTags { tags: Vec::new() },
        ] {
            assert!(NAMES.contains(&event.name()));
        }
    }
}
