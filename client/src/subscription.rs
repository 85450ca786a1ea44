//! The subscription to the invalidation channel: one per cache, on its own RESP3 connection,
//! health-checked with PING (in a cluster: `CLUSTER INFO`, which must say the cluster is
//! up), re-established with backoff (in a cluster: on the next known node). While it is
//! down, L1 serves nothing.
//!
//! Events reach the caches through an [`EventFeed`]: in order, and replayed from the
//! server's event log after the subscription dropped (one server; a cluster's global
//! channel carries every primary's events and is not replayed: L1 is reset instead).
//! In a cluster whose module publishes on shard channels, `shard_subscription.rs` runs
//! instead.

use crate::event_feed::EventFeed;
use crate::hub::Hub;
use crate::l2::L2;
use crate::nodes::{cluster_state_ok, Nodes};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Timing of the subscription.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Time between two health-check PINGs.
    pub(crate) ping_interval: Duration,
    /// A PING (or connection attempt) slower than this means the link is dead.
    pub(crate) ping_timeout: Duration,
    /// First and longest wait between reconnection attempts.
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

pub(crate) struct Subscription {
    pub(crate) nodes: Nodes,
    pub(crate) channel: String,
    pub(crate) timing: Timing,
    pub(crate) hub: Arc<Hub>,
    /// Queued operations are replayed through it before L1 is trusted again.
    pub(crate) redis: L2,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Where each origin's events stand, kept across reconnections.
    pub(crate) feed: EventFeed,
}

impl Subscription {
    /// Runs until the cache is dropped.
    pub(crate) async fn run(mut self) {
        let mut backoff = self.timing.backoff_min;
        loop {
            match self.session().await {
                Ended::Shutdown => return,
                Ended::Lost(reason) => {
                    self.hub.note_failure(&reason);
                    let was_up = self.hub.is_up();
                    self.hub.subscription_down();
                    if was_up {
                        tracing::warn!(%reason, "invalidation subscription lost; L1 off until it is back");
                        backoff = self.timing.backoff_min;
                    } else {
                        tracing::debug!(%reason, ?backoff, "invalidation subscription not established");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(self.timing.backoff_max);
        }
    }

    /// One connection: subscribe, then apply events and health-check until it fails.
    async fn session(&mut self) -> Ended {
        let Some(node) = self.nodes.next() else {
            return Ended::Lost("no node to subscribe on".into());
        };
        let (mut con, mut rx) = match push_connection(node, &self.timing).await {
            Ok(connected) => connected,
            Err(reason) => return Ended::Lost(reason),
        };
        if let Err(e) = con.subscribe(&self.channel).await {
            return Ended::Lost(format!("subscribe: {e}"));
        }
        if self.nodes.cluster {
            // Subscribed first, so that nothing published from here on is missed; only
            // then is the cluster asked whether it is up, and for its other nodes.
            if let Err(reason) = self.check_cluster(&mut con).await {
                return Ended::Lost(reason);
            }
            match redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut con)
                .await
            {
                Ok(slots) => self.nodes.learn(&slots),
                Err(e) => return Ended::Lost(format!("cluster slots: {e}")),
            }
        }
        // Writes queued while Redis was unreachable go first: until they are in Redis,
        // what this instance reads could be older than what it wrote.
        if let Err(e) = self.redis.replay().await {
            return Ended::Lost(format!("replaying queued operations: {e}"));
        }
        match self.feed.catch_up(&mut con).await {
            Ok(replayed) => self.hub.resume(replayed),
            Err(reason) => {
                tracing::debug!(%reason, "L1 starts over");
                self.feed.forget();
                self.hub.subscription_up();
            }
        }
        let mut ping = tokio::time::interval(self.timing.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = rx.recv() => match push {
                    Some(PushInfo { kind: PushKind::Message, data }) => {
                        if let Some(Value::BulkString(payload)) = data.last() {
                            self.feed.on_message(&mut con, payload).await;
                        }
                    }
                    Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => {
                        return Ended::Lost("connection closed".into());
                    }
                    Some(_) => {}
                },
                _ = ping.tick() => {
                    // Replayed by a task of its own: events keep flowing meanwhile.
                    if !self.redis.outbox().is_empty() && self.redis.outbox().begin_replay() {
                        let redis = self.redis.clone();
                        tokio::spawn(async move {
                            if let Err(e) = redis.replay().await {
                                tracing::debug!(error = %e, "queued operations not replayed yet");
                            }
                            redis.outbox().end_replay();
                        });
                    }
                    if self.nodes.cluster {
                        if let Err(reason) = self.check_cluster(&mut con).await {
                            return Ended::Lost(reason);
                        }
                    } else {
                        let pong: redis::RedisResult<String> =
                            redis::cmd("PING").query_async(&mut con).await;
                        if let Err(e) = pong {
                            return Ended::Lost(format!("health check: {e}"));
                        }
                    }
                }
                _ = self.shutdown.changed() => return Ended::Shutdown,
            }
        }
    }
}

/// A RESP3 connection to `node` whose pushes (pub/sub messages, disconnection) arrive on
/// the returned receiver, with the health-check timeout on connecting and on every command.
pub(crate) async fn push_connection(
    node: redis::ConnectionInfo,
    timing: &Timing,
) -> Result<(MultiplexedConnection, mpsc::UnboundedReceiver<PushInfo>), String> {
    let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timing.ping_timeout))
        .set_response_timeout(Some(timing.ping_timeout))
        .set_push_sender(tx);
    let client = redis::Client::open(node).map_err(|e| format!("node address: {e}"))?;
    let con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok((con, rx))
}

impl Subscription {
    /// A cluster node must be answering and see the cluster up: a node cut off from the
    /// cluster bus stops receiving other primaries' events.
    async fn check_cluster(
        &self,
        con: &mut redis::aio::MultiplexedConnection,
    ) -> Result<(), String> {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(con)
            .await
            .map_err(|e| format!("health check: {e}"))?;
        if cluster_state_ok(&info) {
            Ok(())
        } else {
            Err("the node reports the cluster down".into())
        }
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}
