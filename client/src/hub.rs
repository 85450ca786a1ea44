//! The caches one subscription feeds: a cache and the named caches made from it.

use crate::local_tier::LocalTier;
use hybridcache_protocol::{DecodeError, InvalidationEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The caches fed by one subscription.
#[derive(Default)]
pub(crate) struct Hub {
    members: Mutex<Vec<Weak<LocalTier>>>,
    up: AtomicBool,
    /// Why the subscription last failed, for the builder's error.
    last_failure: Mutex<Option<String>>,
}

impl Hub {
    /// Adds a cache; if the subscription is up, the cache starts connected.
    pub(crate) fn add(&self, tier: &Arc<LocalTier>) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(tier));
        if self.up.load(Ordering::Acquire) {
            tier.subscription_up();
        }
    }

    fn members(&self) -> Vec<Arc<LocalTier>> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn subscription_up(&self) {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        self.up.store(true, Ordering::Release);
        for member in members.iter().filter_map(Weak::upgrade) {
            member.subscription_up();
        }
    }

    pub(crate) fn subscription_down(&self) {
        self.up.store(false, Ordering::Release);
        for member in self.members() {
            member.subscription_down();
        }
    }

    /// Remembers why the subscription could not be (re)established.
    pub(crate) fn note_failure(&self, reason: &str) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }

    /// Why the subscription last failed, if it did.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies one event to every cache.
    pub(crate) fn apply_event(&self, event: &InvalidationEvent) {
        for member in self.members() {
            member.apply_decoded(Ok(event.clone()));
        }
    }

    /// A message that cannot be read: every cache clears its L1.
    pub(crate) fn apply_unreadable(&self, error: &DecodeError) {
        for member in self.members() {
            member.apply_decoded(Err(error));
        }
    }

    /// Every cache marks its L1 stale (events were missed and cannot be replayed).
    pub(crate) fn reset(&self, why: &str) {
        for member in self.members() {
            member.reset(why);
        }
    }

    /// The subscription is back and the events missed meanwhile were replayed: caches serve
    /// from what their L1 kept.
    pub(crate) fn resume(&self, replayed: usize) {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        self.up.store(true, Ordering::Release);
        for member in members.iter().filter_map(Weak::upgrade) {
            member.resume(replayed);
        }
    }

    /// Every shard's subscription is up (each replayed what it missed or reset L1): caches
    /// serve from L1.
    pub(crate) fn connect(&self) {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        self.up.store(true, Ordering::Release);
        for member in members.iter().filter_map(Weak::upgrade) {
            member.connect();
        }
    }

    /// Events missed while the subscription stayed up were replayed.
    pub(crate) fn caught_up(&self, replayed: usize) {
        for member in self.members() {
            member.caught_up(replayed);
        }
    }
}
