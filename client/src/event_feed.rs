//! Hands the events of one subscription to the caches in order and without gaps per origin
//! ([`StreamOrder`]): events missed while the subscription was down, or seen missing in
//! the sequence, are asked for with `HC.EVENTS` on the subscription's own connection
//! ([`changes_since`]), so that L1 drops exactly what changed; only when the server cannot
//! say (its log does not reach back, it restarted, it is not the server that numbered
//! them) is L1 marked stale as a whole.

use crate::catch_up::{changes_since, Unavailable};
use crate::hub::Hub;
use crate::stream_order::{Continuity, StreamOrder};
use hybridcache_protocol::{decode_message, InvalidationEvent};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;

pub(crate) struct EventFeed {
    hub: Arc<Hub>,
    order: StreamOrder,
    /// Whether the connection's server numbered every event this feed receives (one server,
    /// or one shard's primary), so that it can replay them; not on a cluster's global
    /// channel, where every primary's events arrive.
    replayable: bool,
}

impl EventFeed {
    pub(crate) fn new(hub: Arc<Hub>, replayable: bool) -> Self {
        Self {
            hub,
            order: StreamOrder::default(),
            replayable,
        }
    }

    /// Whether any event was seen (since the start or the last reset).
    pub(crate) fn has_history(&self) -> bool {
        !self.order.positions().is_empty()
    }

    /// After the subscription was (re)established: replays, for every origin seen before,
    /// the events published since; the number applied.
    pub(crate) async fn catch_up(
        &mut self,
        con: &mut MultiplexedConnection,
    ) -> Result<usize, Unavailable> {
        let positions = self.order.positions();
        if positions.is_empty() {
            return Err(Unavailable::Failed("nothing seen yet".into()));
        }
        if !self.replayable {
            return Err(Unavailable::Failed(
                "events of several primaries are not replayed from one node".into(),
            ));
        }
        let mut replayed = 0;
        for (origin, after) in positions {
            let missed = changes_since(con, &origin, after).await?;
            replayed += self.apply_replayed(missed);
        }
        Ok(replayed)
    }

    /// Forgets every origin: the caches start over (after they were reset).
    pub(crate) fn forget(&mut self) {
        self.order.clear();
    }

    fn apply_replayed(&mut self, missed: Vec<InvalidationEvent>) -> usize {
        let count = missed.len();
        for event in missed {
            self.order.advance(&event.origin, event.seq);
            self.hub.apply_event(&event);
        }
        count
    }

    /// One message: its events in order; a gap is filled from the server's log first.
    pub(crate) async fn on_message(&mut self, con: &mut MultiplexedConnection, payload: &[u8]) {
        let events = match decode_message(payload) {
            Ok(events) => events,
            Err(e) => {
                self.order.clear();
                self.hub.apply_unreadable(&e);
                return;
            }
        };
        for event in events {
            match self.order.place(&event.origin, event.seq) {
                Continuity::Next => {}
                Continuity::Repeat => continue,
                Continuity::Gap { after } => {
                    self.fill_gap(con, &event.origin, after).await;
                    match self.order.place(&event.origin, event.seq) {
                        Continuity::Next => {}
                        // The replay brought it already.
                        Continuity::Repeat => continue,
                        Continuity::Gap { .. } => {
                            self.order.clear();
                            self.hub.reset("missed invalidation events");
                            self.order.place(&event.origin, event.seq);
                        }
                    }
                }
            }
            self.hub.apply_event(&event);
        }
    }

    /// Events `after + 1 ..` of `origin` were missed: replayed from the server's log, or
    /// else L1 is marked stale and every origin starts over.
    async fn fill_gap(&mut self, con: &mut MultiplexedConnection, origin: &str, after: u64) {
        let missed = if self.replayable {
            changes_since(con, origin, after).await
        } else {
            Err(Unavailable::Failed(
                "events of several primaries are not replayed from one node".into(),
            ))
        };
        match missed {
            Ok(missed) => {
                let replayed = self.apply_replayed(missed);
                self.hub.caught_up(replayed);
            }
            Err(reason) => {
                tracing::warn!(%reason, "missed invalidation events: L1 marked stale");
                self.order.clear();
                self.hub.reset("missed invalidation events");
            }
        }
    }
}
