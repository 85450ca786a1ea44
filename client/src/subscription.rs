//! The subscription to the invalidation channel: one per cache, on its own RESP3 connection,
//! health-checked with PING, re-established with backoff. While it is down, L1 serves nothing.

use crate::shared::Shared;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Timing of the subscription.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Time between two health-check PINGs.
    pub ping_interval: Duration,
    /// A PING (or connection attempt) slower than this means the link is dead.
    pub ping_timeout: Duration,
    /// First and longest wait between reconnection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

pub(crate) struct Subscription {
    pub client: redis::Client,
    pub channel: String,
    pub timing: Timing,
    pub shared: Arc<Shared>,
    pub shutdown: watch::Receiver<bool>,
}

impl Subscription {
    /// Runs until the cache is dropped.
    pub async fn run(mut self) {
        let mut backoff = self.timing.backoff_min;
        loop {
            match self.session().await {
                Ended::Shutdown => return,
                Ended::Lost(reason) => {
                    let was_up = self.shared.is_connected();
                    self.shared.subscription_down();
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
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timing.ping_timeout))
            .set_response_timeout(Some(self.timing.ping_timeout))
            .set_push_sender(tx);
        let mut con = match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(con) => con,
            Err(e) => return Ended::Lost(format!("connect: {e}")),
        };
        if let Err(e) = con.subscribe(&self.channel).await {
            return Ended::Lost(format!("subscribe: {e}"));
        }
        self.shared.subscription_up();
        let mut ping = tokio::time::interval(self.timing.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = rx.recv() => match push {
                    Some(PushInfo { kind: PushKind::Message, data }) => {
                        if let Some(Value::BulkString(payload)) = data.last() {
                            self.shared.apply_message(payload).await;
                        }
                    }
                    Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => {
                        return Ended::Lost("connection closed".into());
                    }
                    Some(_) => {}
                },
                _ = ping.tick() => {
                    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut con).await;
                    if let Err(e) = pong {
                        return Ended::Lost(format!("health check: {e}"));
                    }
                }
                _ = self.shutdown.changed() => return Ended::Shutdown,
            }
        }
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}
