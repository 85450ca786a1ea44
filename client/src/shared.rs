//! State shared by the cache handles and the subscription task, and how an invalidation
//! event changes it.

use crate::events::{CacheEvent, Events};
use crate::invalidation_log::{key_event_hits, InvalidationLog, Record};
use crate::l1::L1;
use crate::stats::{bump, Counters};
use hybridcache_protocol::{Change, DecodeError, InvalidationEvent, Name, Op};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A `removed` event this close to (or after) an entry's expiry in Redis is taken for that
/// expiry: the clocks of client and server differ by the network delay.
pub(crate) const EXPIRY_TOLERANCE: Duration = Duration::from_millis(250);

pub(crate) struct Shared {
    pub l1: L1,
    pub log: InvalidationLog,
    pub counters: Counters,
    /// The subscription is confirmed and healthy: only then is L1 read or filled.
    connected: AtomicBool,
    /// Prefix of every key and tag this cache writes.
    pub namespace: String,
    /// The Redis database this cache works in.
    pub db: u32,
    /// Last `seq` seen per origin since the subscription was (re)established.
    last_seq: Mutex<HashMap<Arc<str>, u64>>,
    pub events: Arc<Events>,
}

impl Shared {
    pub fn new(l1: L1, namespace: String, db: u32, events: Arc<Events>) -> Self {
        Self {
            l1,
            log: InvalidationLog::default(),
            counters: Counters::default(),
            connected: AtomicBool::new(false),
            namespace,
            db,
            last_seq: Mutex::new(HashMap::new()),
            events,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The subscription is confirmed: what L1 held before may have missed events, so it is
    /// marked stale, and serving from L1 starts.
    pub fn subscription_up(&self) {
        self.reset("subscription established");
        self.last_seq
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        bump(&self.counters.subscriptions);
        self.connected.store(true, Ordering::Release);
    }

    /// The subscription is gone: stop serving from L1 at once.
    pub fn subscription_down(&self) {
        self.connected.store(false, Ordering::Release);
        self.reset("subscription lost");
    }

    /// Everything in L1 may be wrong: stop serving it (fail-safe may still use it).
    pub fn reset(&self, why: &str) {
        tracing::debug!(why, "L1 marked stale");
        self.log.push(Record::Reset);
        self.l1.mark_all_stale();
        bump(&self.counters.l1_flushes);
    }

    /// Applies one decoded message from the invalidation channel.
    async fn apply_decoded(&self, decoded: Result<InvalidationEvent, &DecodeError>) {
        match decoded {
            Ok(event) => {
                self.apply(event).await;
                bump(&self.counters.events_received);
                self.events
                    .emit("invalidation_received", || CacheEvent::InvalidationReceived);
            }
            Err(e) => {
                bump(&self.counters.events_received);
                match e {
                    DecodeError::UnsupportedVersion(_) => tracing::error!(
                        error = %e,
                        "invalidation event of an unknown format: L1 cleared"
                    ),
                    _ => tracing::error!(error = %e, "unreadable invalidation event: L1 cleared"),
                }
                self.clear_all();
            }
        }
    }

    fn clear_all(&self) {
        self.log.push(Record::Reset);
        self.l1.clear();
        bump(&self.counters.l1_flushes);
    }

    /// Checks `seq` against the last one of its origin: a gap means events were missed.
    ///
    /// An origin seen for the first time is not a gap: in a cluster every primary numbers
    /// its events on its own, and everything published since the subscription was confirmed
    /// has arrived. A server that restarted or took over from a failed primary is covered
    /// elsewhere: the subscription to a restarted server drops (L1 reset), and a promoted
    /// replica announces itself with a flush event.
    fn missed_events(&self, origin: &Arc<str>, seq: u64) -> bool {
        let mut last = self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(origin) {
            Some(prev) if seq == *prev + 1 => {
                *prev = seq;
                false
            }
            // A duplicate or a late event: applying it again is harmless.
            Some(prev) if seq <= *prev => false,
            Some(prev) => {
                *prev = seq;
                true
            }
            None => {
                last.insert(origin.clone(), seq);
                false
            }
        }
    }

    async fn apply(&self, event: InvalidationEvent) {
        let origin: Arc<str> = event.origin.into();
        if self.missed_events(&origin, event.seq) {
            self.reset("missed invalidation events");
        }
        if event.db.is_some_and(|db| db != self.db) {
            return;
        }
        match event.change {
            Change::Keys { keys } => {
                let keys = self.ours(keys);
                if keys.is_empty() {
                    return;
                }
                self.log.push(Record::Keys {
                    origin: origin.clone(),
                    seq: event.seq,
                    keys: keys.clone(),
                    removed: event.op == Op::Removed,
                });
                let now = Instant::now();
                for key in keys {
                    if let Some(entry) = self.l1.get(&key).await {
                        // The key (most likely) expired in Redis: an entry kept for
                        // fail-safe stays as a stale copy only, never served as fresh.
                        let expired = event.op == Op::Removed
                            && entry.fail_safe
                            && entry
                                .l2_expires_at
                                .is_some_and(|at| now + EXPIRY_TOLERANCE >= at);
                        if expired {
                            // An entry fail-safe keeps fresh past its expiry (throttle)
                            // stays as it is.
                            let throttled = entry.fresh_until.is_some_and(|fresh| {
                                entry.l2_expires_at.is_some_and(|at| fresh > at)
                            });
                            if !throttled {
                                self.l1.insert(key.clone(), entry.stale_copy(now)).await;
                            }
                            continue;
                        }
                        if key_event_hits(
                            entry.origin.as_deref(),
                            entry.version,
                            &origin,
                            event.seq,
                        ) {
                            self.l1.invalidate(&key).await;
                        }
                    }
                }
            }
            Change::Tags { tags } => {
                let tags = self.ours(tags);
                if tags.is_empty() {
                    return;
                }
                self.log.push(Record::Tags {
                    origin: origin.clone(),
                    seq: event.seq,
                    tags: tags.clone(),
                });
                for tag in tags {
                    self.l1.mark_tag_removed(tag, origin.clone(), event.seq);
                }
            }
            Change::Flush => self.clear_all(),
        }
    }

    /// The names of this cache's namespace (names that are not UTF-8 cannot be ours).
    fn ours(&self, names: Vec<Name>) -> Vec<String> {
        names
            .into_iter()
            .filter_map(|name| String::from_utf8(name.0).ok())
            .filter(|name| name.starts_with(&self.namespace))
            .collect()
    }
}

/// The caches fed by one subscription: a cache and the named caches made from it.
#[derive(Default)]
pub(crate) struct Hub {
    members: Mutex<Vec<Weak<Shared>>>,
    up: AtomicBool,
    /// Why the subscription last failed, for the builder's error.
    last_failure: Mutex<Option<String>>,
}

impl Hub {
    /// Adds a cache; if the subscription is up, the cache starts connected.
    pub fn add(&self, shared: &Arc<Shared>) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(shared));
        if self.up.load(Ordering::Acquire) {
            shared.subscription_up();
        }
    }

    fn members(&self) -> Vec<Arc<Shared>> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn subscription_up(&self) {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        self.up.store(true, Ordering::Release);
        for member in members.iter().filter_map(Weak::upgrade) {
            member.subscription_up();
        }
    }

    pub fn subscription_down(&self) {
        self.up.store(false, Ordering::Release);
        for member in self.members() {
            member.subscription_down();
        }
    }

    /// Remembers why the subscription could not be (re)established.
    pub fn note_failure(&self, reason: &str) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }

    /// Why the subscription last failed, if it did.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies one message from the invalidation channel to every cache.
    pub async fn apply_message(&self, payload: &[u8]) {
        let decoded = InvalidationEvent::decode(payload);
        for member in self.members() {
            let event = match &decoded {
                Ok(event) => Ok(event.clone()),
                Err(e) => Err(e),
            };
            member.apply_decoded(event).await;
        }
    }
}
