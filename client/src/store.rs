//! Reading from and writing to Redis on behalf of a cache handle: reads that keep what
//! they find in L1, the write of record (`set`), fills (conditional writes of factory
//! values, decided by `fill.rs`), and the outbox in front of them.

use crate::cache::HybridCache;
use crate::error::Result;
use crate::events::CacheEvent;
use crate::fill::{self, FillBasis, FillWrite, L1AfterFill, Lease, Route};
use crate::l1_admission::Admission;
use crate::l2::{Fetched, Filled, LeaseOnHit, Leased};
use crate::l2_batch::FillEntry;
use crate::options::EntryOptions;
use crate::outbox::{Pending, Pushed};
use crate::stats::bump;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;
use std::time::SystemTime;

/// A fill on its way to Redis: the conditional write to send, and what L1 needs once it
/// is answered.
pub(crate) struct PlannedFill<T> {
    entry: FillEntry,
    value: Arc<T>,
    /// The entry's options, jitter drawn.
    options: EntryOptions,
    validators: Validators,
    /// The invalidation-log mark of the fill's basis.
    mark: u64,
}

/// The validators a factory produced its value with (conditional refresh).
#[derive(Debug, Clone, Default)]
pub(crate) struct Validators {
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<SystemTime>,
}

impl HybridCache {
    /// Reads `key` from Redis (`HC.FETCH`); keeps what it finds in L1 unless an
    /// invalidation of it arrived meanwhile.
    pub(crate) async fn read_l2<T>(
        &self,
        key: &str,
        options: &EntryOptions,
    ) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let mark = self.tier().log().mark();
        let found = self.redis().fetch(key).await?;
        self.take_fetched(key, found, options, mark).await
    }

    /// [`read_l2`](Self::read_l2) with a lease (`HC.FETCH key LEASE`), for a fill computed
    /// after this read.
    pub(crate) async fn read_l2_leased<T>(
        &self,
        key: &str,
        options: &EntryOptions,
    ) -> Result<(Option<Arc<T>>, Option<Lease>)>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let mark = self.tier().log().mark();
        let Leased { found, lease } = self
            .redis()
            .fetch_leased(key, LeaseOnHit::NotWanted)
            .await?;
        let found = self.take_fetched(key, found, options, mark).await?;
        Ok((found, lease))
    }

    /// A lease on `key` whatever it holds, for a fill that replaces the entry (a forced
    /// refresh); what Redis holds is not read.
    pub(crate) async fn lease_for_refresh(&self, key: &str) -> Result<Option<Lease>> {
        let Leased { lease, .. } = self.redis().fetch_leased(key, LeaseOnHit::Wanted).await?;
        Ok(lease)
    }

    pub(crate) async fn take_fetched<T>(
        &self,
        key: &str,
        found: Option<Fetched>,
        options: &EntryOptions,
        mark: u64,
    ) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let tier = self.tier();
        let Some(found) = found else {
            bump(&tier.counters().l2_misses);
            return Ok(None);
        };
        bump(&tier.counters().l2_hits);
        let value: Arc<T> = Arc::new(self.format().decode(&found.value)?);
        if !options.skips_l1() {
            let admission = Admission {
                weight: found.value.len() + key.len(),
                l2_expires_at: found.expires_at,
                origin: Some(found.origin),
                version: found.version,
                tags: found.tags,
                etag: None,
                last_modified: None,
            };
            tier.admit(key, value.clone(), admission, options, mark);
        }
        Ok(Some(value))
    }

    /// The write of record: writes `value` to Redis unconditionally and keeps it in L1.
    /// With auto-recovery, a write that cannot reach Redis is queued (and L1's copy
    /// dropped).
    pub(crate) async fn write_of_record<T>(
        &self,
        key: &str,
        value: Arc<T>,
        options: &EntryOptions,
    ) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let tier = self.tier();
        let options = options.jittered();
        let mark = tier.log().mark();
        let bytes = self.format().encode(&*value)?;
        let tags = self.entry_tags(options.tag_list());
        let weight = bytes.len() + key.len();
        self.state().background().mark_changed(key);
        let written = if options.skips_l2() {
            None
        } else {
            let sent = match self.drain_outbox().await {
                Ok(()) => self.redis().set(key, &bytes, options.ttl, &tags).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(written) => Some(written),
                Err(e) if e.is_unreachable() && self.redis().outbox().is_enabled() => {
                    self.queue(Pending::Set {
                        key: key.to_string(),
                        bytes,
                        ttl: options.ttl,
                        tags,
                    });
                    tier.l1().invalidate(key);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        self.emit("set", || CacheEvent::Set {
            key: key.to_string(),
        });
        if options.skips_l1() {
            tier.l1().invalidate(key);
            return Ok(());
        }
        let admission = Admission {
            origin: written.as_ref().map(|w| w.origin.clone()),
            version: written.as_ref().map_or(0, |w| w.version),
            tags,
            l2_expires_at: written.and_then(|w| w.expires_at),
            weight,
            etag: None,
            last_modified: None,
        };
        tier.admit(key, value, admission, &options, mark);
        Ok(())
    }

    /// Keeps a value a factory produced where `fill::route` and `fill::l1_after_write`
    /// say: in Redis only through a conditional write with the lease of `basis`, in L1 only
    /// once Redis accepted it (or for entries kept out of Redis). Never fails: the value is
    /// served whatever happens here. `changed_here`: this handle wrote or removed the key
    /// while the factory ran.
    pub(crate) async fn fill<T>(
        &self,
        key: &str,
        value: Arc<T>,
        options: &EntryOptions,
        validators: Validators,
        basis: &FillBasis,
        changed_here: bool,
    ) where
        T: Serialize + Send + Sync + 'static,
    {
        let Some(plan) = self.plan_fill(key, value, options, validators, basis, changed_here)
        else {
            return;
        };
        let sent = match self.drain_outbox().await {
            Ok(()) => {
                let entry = &plan.entry;
                self.redis()
                    .fill(
                        &entry.key,
                        &entry.bytes,
                        entry.ttl,
                        &entry.tags,
                        &entry.lease,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        self.conclude_fill(plan, sent);
    }

    /// [`fill`](Self::fill) of many values, their conditional writes sent in one round trip
    /// (one pipeline, or one per hash slot in a cluster). Each value is kept exactly as
    /// `fill` would keep it.
    pub(crate) async fn fill_many<T>(&self, fills: Vec<PlannedFill<T>>)
    where
        T: Send + Sync + 'static,
    {
        if fills.is_empty() {
            return;
        }
        let entries: Vec<FillEntry> = fills.iter().map(|f| f.entry.clone()).collect();
        let sent = match self.drain_outbox().await {
            Ok(()) => self.redis().fill_many(&entries).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(outcomes) => {
                for (plan, outcome) in fills.into_iter().zip(outcomes) {
                    self.conclude_fill(plan, outcome);
                }
            }
            Err(e) => {
                for plan in fills {
                    self.conclude_fill(plan, Err(e.clone()));
                }
            }
        }
    }

    /// The first step of a fill: where `fill::route` sends the value. An entry kept out of
    /// Redis goes to L1 here (or nowhere); a value to write conditionally comes back as the
    /// write to send, for [`conclude_fill`](Self::conclude_fill) once it is answered.
    pub(crate) fn plan_fill<T>(
        &self,
        key: &str,
        value: Arc<T>,
        options: &EntryOptions,
        validators: Validators,
        basis: &FillBasis,
        changed_here: bool,
    ) -> Option<PlannedFill<T>>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let tier = self.tier();
        let options = options.jittered();
        let lease = match fill::route(basis.lease.as_ref(), options.skips_l2(), changed_here) {
            Route::Discard(why) => {
                tracing::debug!(key, ?why, "factory value served, not cached");
                return None;
            }
            Route::L1Only => {
                if options.skips_l1() {
                    tier.l1().invalidate(key);
                    return None;
                }
                // Weighed as it would be stored (for an L1 bounded in bytes).
                let size = self.format().encode(&*value).map_or(0, |b| b.len());
                let admission = Admission {
                    origin: None,
                    version: 0,
                    tags: self.entry_tags(options.tag_list()),
                    l2_expires_at: None,
                    weight: size + key.len(),
                    etag: validators.etag,
                    last_modified: validators.last_modified,
                };
                tier.admit(key, value, admission, &options, basis.mark);
                return None;
            }
            Route::Conditional(lease) => lease,
        };
        let bytes = match self.format().encode(&*value) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, key, "factory value not cached");
                return None;
            }
        };
        Some(PlannedFill {
            entry: FillEntry {
                key: key.to_string(),
                bytes,
                ttl: options.ttl,
                tags: self.entry_tags(options.tag_list()),
                lease,
            },
            value,
            options,
            validators,
            mark: basis.mark,
        })
    }

    /// The last step of a fill: what Redis answered to its conditional write (`sent`)
    /// decides what is counted, queued and kept in L1.
    pub(crate) fn conclude_fill<T>(&self, plan: PlannedFill<T>, sent: Result<Filled>)
    where
        T: Send + Sync + 'static,
    {
        let tier = self.tier();
        let PlannedFill {
            entry,
            value,
            options,
            validators,
            mark,
        } = plan;
        let key = entry.key.as_str();
        let write = match sent {
            Ok(Filled::Accepted(written)) => {
                self.emit("set", || CacheEvent::Set {
                    key: key.to_string(),
                });
                FillWrite::Accepted {
                    origin: written.origin,
                    version: written.version,
                    expires_at: written.expires_at,
                }
            }
            Ok(Filled::Refused) => {
                tier.refusals().refused(key);
                FillWrite::Refused
            }
            Err(e) if e.is_unreachable() && self.redis().outbox().is_enabled() => {
                self.queue(Pending::Fill {
                    key: key.to_string(),
                    bytes: entry.bytes.clone(),
                    ttl: entry.ttl,
                    tags: entry.tags.clone(),
                    lease: entry.lease.clone(),
                    refusals: tier.refusals(),
                });
                FillWrite::Queued
            }
            Err(e) => {
                tracing::warn!(error = %e, key, "factory value not cached: writing it to Redis failed");
                FillWrite::Failed
            }
        };
        match fill::l1_after_write(&write, options.skips_l1()) {
            L1AfterFill::Keep {
                origin,
                version,
                expires_at,
            } => {
                let admission = Admission {
                    origin: Some(origin),
                    version,
                    weight: entry.bytes.len() + key.len(),
                    tags: entry.tags,
                    l2_expires_at: expires_at,
                    etag: validators.etag,
                    last_modified: validators.last_modified,
                };
                tier.admit(key, value, admission, &options, mark);
            }
            L1AfterFill::Drop => tier.l1().invalidate(key),
            L1AfterFill::Untouched => {}
        }
    }

    /// Operations queued earlier go to Redis before a new one, so that an old queued write
    /// never lands after a newer one. Fails (unreachable) when they cannot be sent.
    pub(crate) async fn drain_outbox(&self) -> Result<()> {
        if self.redis().outbox().is_empty() {
            return Ok(());
        }
        self.redis().replay().await.map(|_| ())
    }

    /// Sends an invalidation once the queued operations are replayed. When Redis cannot be
    /// reached and auto-recovery is on, queues it for replay instead (`pending`) and answers
    /// `queued`.
    pub(crate) async fn send_or_queue<R, Fut>(
        &self,
        send: Fut,
        pending: impl FnOnce() -> Pending,
        queued: R,
    ) -> Result<R>
    where
        Fut: std::future::Future<Output = Result<R>>,
    {
        let sent = match self.drain_outbox().await {
            Ok(()) => send.await,
            Err(e) => Err(e),
        };
        match sent {
            Err(e) if e.is_unreachable() && self.redis().outbox().is_enabled() => {
                self.queue(pending());
                Ok(queued)
            }
            other => other,
        }
    }

    pub(crate) fn queue(&self, op: Pending) {
        let described = format!("{op:?}");
        match self.redis().outbox().push(op) {
            Pushed::FillSuperseded => {
                tracing::debug!(
                    op = described,
                    "fill not queued: its key has a queued operation"
                );
                return;
            }
            Pushed::QueuedDroppingOldest => {
                tracing::warn!("auto-recovery queue full: the oldest queued operation was dropped");
            }
            Pushed::Queued => {}
        }
        tracing::warn!(
            op = described,
            "redis unreachable: operation queued for auto-recovery"
        );
        self.emit("queued", || CacheEvent::Queued);
    }
}
