//! The subscriptions of a cache in a Redis Cluster whose module publishes on shard channels
//! (`HC.HELLO` says `sharded`): one `SSUBSCRIBE` per shard, on its primary, on the channel
//! named after the lowest slot the primary serves ([`hybridcache_protocol::shard`]). An
//! event then travels only within its shard instead of crossing the cluster bus to every
//! node.
//!
//! A manager reads `CLUSTER SLOTS` every health-check interval and keeps one session per
//! primary: a new primary (failover, a new shard) gets a session, a node that is no longer
//! a primary loses its own, and a session whose lowest slot moved (reshard) re-subscribes
//! on the new channel. Each session feeds its events through an [`EventFeed`], which
//! replays from the primary's event log what the session missed (a dropped connection, a
//! forced `SUNSUBSCRIBE` when the channel's slot moved away). L1 serves only while every
//! shard's session is up; a session that starts on a primary the cache has not followed
//! from the start (failover, new shard) cannot know what it missed and resets L1.

use crate::event_feed::EventFeed;
use crate::hub::Hub;
use crate::l2::L2;
use crate::nodes::{shards, Nodes, Shard};
use crate::subscription::{push_connection, Timing};
use hybridcache_protocol::shard::shard_channel;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub(crate) struct ShardedSubscription {
    pub(crate) nodes: Nodes,
    /// The configured channel; shard channels are named after it.
    pub(crate) channel: String,
    pub(crate) timing: Timing,
    pub(crate) hub: Arc<Hub>,
    /// Queued operations are replayed through it before L1 is trusted again.
    pub(crate) redis: L2,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// A running session of one primary.
struct Running {
    slot: watch::Sender<u16>,
    up: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShardedSubscription {
    /// Runs until the cache is dropped.
    pub(crate) async fn run(mut self) {
        let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<()>();
        let mut sessions: HashMap<(String, u16), Running> = HashMap::new();
        let mut followed_from_start = true;
        let mut hub_up = false;
        let mut tick = tokio::time::interval(self.timing.ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.topology().await {
                        Ok(topology) => {
                            self.follow(&topology, &mut sessions, followed_from_start, &changed_tx);
                            followed_from_start = false;
                        }
                        Err(reason) => {
                            self.hub.note_failure(&reason);
                            tracing::debug!(%reason, "cluster topology not read");
                        }
                    }
                    self.replay_outbox();
                }
                _ = changed_rx.recv() => {}
                _ = self.shutdown.changed() => return,
            }
            let all_up =
                !sessions.is_empty() && sessions.values().all(|s| s.up.load(Ordering::Acquire));
            if all_up && !hub_up {
                // Writes queued while Redis was unreachable go first.
                if let Err(e) = self.redis.replay().await {
                    self.hub
                        .note_failure(&format!("replaying queued operations: {e}"));
                    continue;
                }
                self.hub.connect();
                hub_up = true;
            } else if !all_up && hub_up {
                tracing::warn!(
                    "a shard's invalidation subscription is down; L1 off until it is back"
                );
                self.hub.subscription_down();
                hub_up = false;
            }
        }
    }

    /// The shards now, from `CLUSTER SLOTS` of the next known node that answers.
    async fn topology(&mut self) -> Result<Vec<Shard>, String> {
        let mut last_error = String::from("no node to ask");
        for _ in 0..self.nodes_count() {
            let Some(node) = self.nodes.next() else {
                break;
            };
            match cluster_slots(node, &self.timing).await {
                Ok(reply) => {
                    self.nodes.learn(&reply);
                    let found = shards(&reply);
                    if found.is_empty() {
                        last_error = "CLUSTER SLOTS lists no primary".into();
                        continue;
                    }
                    return Ok(found);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn nodes_count(&self) -> usize {
        self.nodes.len().max(1)
    }

    /// One session per primary of `topology`.
    fn follow(
        &self,
        topology: &[Shard],
        sessions: &mut HashMap<(String, u16), Running>,
        from_start: bool,
        changed: &mpsc::UnboundedSender<()>,
    ) {
        sessions
            .retain(|(host, port), _| topology.iter().any(|s| &s.host == host && s.port == *port));
        for shard in topology {
            let id = (shard.host.clone(), shard.port);
            if let Some(running) = sessions.get(&id) {
                running.slot.send_if_modified(|slot| {
                    let moved = *slot != shard.lowest_slot;
                    *slot = shard.lowest_slot;
                    moved
                });
                continue;
            }
            let Some(info) = self.nodes.info_for(&shard.host, shard.port) else {
                continue;
            };
            let (slot_tx, slot_rx) = watch::channel(shard.lowest_slot);
            let up = Arc::new(AtomicBool::new(false));
            let session = ShardSession {
                info,
                base: self.channel.clone(),
                slot: slot_rx,
                up: up.clone(),
                changed: changed.clone(),
                hub: self.hub.clone(),
                feed: EventFeed::new(self.hub.clone(), true),
                timing: self.timing,
                missed_the_start: !from_start,
                shutdown: self.shutdown.clone(),
            };
            let task = tokio::spawn(session.run());
            sessions.insert(
                id,
                Running {
                    slot: slot_tx,
                    up,
                    task,
                },
            );
        }
    }

    fn replay_outbox(&self) {
        if !self.redis.outbox().is_empty() && self.redis.outbox().begin_replay() {
            let redis = self.redis.clone();
            tokio::spawn(async move {
                if let Err(e) = redis.replay().await {
                    tracing::debug!(error = %e, "queued operations not replayed yet");
                }
                redis.outbox().end_replay();
            });
        }
    }
}

async fn cluster_slots(node: ConnectionInfo, timing: &Timing) -> Result<Value, String> {
    let client = redis::Client::open(node).map_err(|e| format!("node address: {e}"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timing.ping_timeout))
        .set_response_timeout(Some(timing.ping_timeout));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut con)
        .await
        .map_err(|e| format!("cluster slots: {e}"))
}

/// The subscription to one primary's shard channel.
struct ShardSession {
    info: ConnectionInfo,
    base: String,
    slot: watch::Receiver<u16>,
    up: Arc<AtomicBool>,
    changed: mpsc::UnboundedSender<()>,
    hub: Arc<Hub>,
    feed: EventFeed,
    timing: Timing,
    /// The cache did not follow this primary from the start: what it published before
    /// the first subscription is unknown.
    missed_the_start: bool,
    shutdown: watch::Receiver<bool>,
}

enum Ended {
    Shutdown,
    /// The shard's channel changed: subscribe again at once.
    Moved,
    Lost(String),
}

impl ShardSession {
    async fn run(mut self) {
        let mut backoff = self.timing.backoff_min;
        loop {
            let ended = self.connection().await;
            if self.up.swap(false, Ordering::AcqRel) {
                let _ = self.changed.send(());
            }
            match ended {
                Ended::Shutdown => return,
                Ended::Moved => {
                    backoff = self.timing.backoff_min;
                    continue;
                }
                Ended::Lost(reason) => {
                    tracing::debug!(node = %self.info.addr(), %reason, "shard subscription lost");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(self.timing.backoff_max);
        }
    }

    async fn connection(&mut self) -> Ended {
        let (mut con, mut rx) = match push_connection(self.info.clone(), &self.timing).await {
            Ok(connected) => connected,
            Err(reason) => return Ended::Lost(reason),
        };
        let slot = *self.slot.borrow_and_update();
        let channel = shard_channel(self.base.as_bytes(), slot);
        if let Err(reason) = ssubscribe(&mut con, &channel).await {
            return Ended::Lost(reason);
        }
        // Subscribed first, so that nothing published from here on is missed; then what
        // was missed before is replayed.
        if self.feed.has_history() {
            match self.feed.catch_up(&mut con).await {
                Ok(replayed) => self.hub.caught_up(replayed),
                Err(reason) => {
                    tracing::debug!(%reason, "shard events not replayed: L1 starts over");
                    self.feed.forget();
                    self.hub.reset("shard events missed");
                }
            }
        } else if self.missed_the_start {
            self.hub.reset("a new shard primary");
        }
        self.missed_the_start = true;
        self.up.store(true, Ordering::Release);
        let _ = self.changed.send(());
        let mut ping = tokio::time::interval(self.timing.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = rx.recv() => match push {
                    Some(PushInfo { kind: PushKind::SMessage | PushKind::Message, data }) => {
                        if let Some(Value::BulkString(payload)) = data.last() {
                            self.feed.on_message(&mut con, payload).await;
                        }
                    }
                    Some(PushInfo { kind: PushKind::SUnsubscribe, .. }) => {
                        // The channel's slot left this primary (reshard).
                        return Ended::Moved;
                    }
                    Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => {
                        return Ended::Lost("connection closed".into());
                    }
                    Some(_) => {}
                },
                _ = ping.tick() => {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut con).await;
                    if let Err(e) = pong {
                        return Ended::Lost(format!("health check: {e}"));
                    }
                }
                changed = self.slot.changed() => {
                    if changed.is_err() {
                        return Ended::Shutdown;
                    }
                    return Ended::Moved;
                }
                _ = self.shutdown.changed() => return Ended::Shutdown,
            }
        }
    }
}

/// `SSUBSCRIBE channel` on a RESP3 connection: the confirmation comes as a push, so the
/// command is sent without waiting for a reply, and a PING behind it tells whether it was
/// refused (an error reply, e.g. `MOVED`, is then the PING's answer).
async fn ssubscribe(con: &mut MultiplexedConnection, channel: &[u8]) -> Result<(), String> {
    let mut cmd = redis::cmd("SSUBSCRIBE");
    cmd.arg(channel).set_no_response(true);
    cmd.exec_async(con)
        .await
        .map_err(|e| format!("ssubscribe: {e}"))?;
    let pong: redis::RedisResult<Value> = redis::cmd("PING").query_async(con).await;
    match pong {
        Ok(Value::SimpleString(s)) if s == "PONG" => Ok(()),
        Ok(other) => Err(format!("ssubscribe: unexpected answer {other:?}")),
        Err(e) => Err(format!("ssubscribe: {e}")),
    }
}
