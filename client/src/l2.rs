//! The Redis tier: the module's commands, with replies parsed into Rust values, each bounded
//! by the command timeout and retried once when the connection turned out to be dead.

use crate::circuit::{CircuitBreaker, Transition};
use crate::error::{Error, Result};
use crate::events::{CacheEvent, Events};
use crate::outbox::{Outbox, Pending};
use hybridcache_protocol::command;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{AggregateOp, MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, FromRedisValue, RedisResult};
use std::sync::Arc;
use std::time::Duration;

/// An entry as `HC.FETCH` returns it.
pub(crate) struct Fetched {
    pub value: Vec<u8>,
    pub tags: Vec<String>,
    /// Remaining lifetime in Redis (`None`: no expiry).
    pub remaining: Option<Duration>,
    pub origin: Arc<str>,
    pub version: u64,
}

type FetchReply = Option<(Vec<u8>, Vec<String>, i64, String, u64)>;

/// The command connection: to one server, or to a cluster (commands routed by key slot).
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn send<T: FromRedisValue>(&self, cmd: &Cmd, everywhere: bool) -> RedisResult<T> {
        match self {
            Connection::Single(con) => cmd.query_async(&mut con.clone()).await,
            Connection::Cluster(con) if everywhere => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::Aggregate(AggregateOp::Sum)),
                ));
                let value = con.clone().route_command(cmd.clone(), routing).await?;
                T::from_redis_value(value).map_err(Into::into)
            }
            Connection::Cluster(con) => cmd.query_async(&mut con.clone()).await,
        }
    }
}

/// The command connection, its timeout, the circuit breaker in front of it and the outbox
/// of operations waiting for it.
#[derive(Clone)]
pub(crate) struct L2 {
    pub con: Connection,
    pub timeout: Duration,
    pub breaker: Arc<CircuitBreaker>,
    pub outbox: Arc<Outbox>,
    /// Where circuit and replay events go (the cache built with the connection).
    pub events: Arc<Events>,
}

impl L2 {
    /// Runs `cmd`; a connection found dead (e.g. after a server restart) is reconnected and
    /// the command sent once more, within the same deadline.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.query_on(cmd, false).await
    }

    /// Like `query`; with `everywhere`, a cluster runs `cmd` on every primary and the
    /// integer replies are summed.
    async fn query_on<T: FromRedisValue>(&self, cmd: &Cmd, everywhere: bool) -> Result<T> {
        if !self.breaker.allows(tokio::time::Instant::now().into_std()) {
            return Err(Error::CircuitOpen);
        }
        let result = self.attempt(cmd, everywhere).await;
        let transition = match &result {
            Err(e) if e.is_unreachable() => self
                .breaker
                .on_failure(tokio::time::Instant::now().into_std()),
            _ => self.breaker.on_success(),
        };
        match transition {
            Transition::Opened => {
                tracing::warn!("redis failed repeatedly: circuit breaker open");
                self.events
                    .emit("circuit_opened", || CacheEvent::CircuitOpened);
            }
            Transition::Closed => {
                tracing::info!("redis answers again: circuit breaker closed");
                self.events
                    .emit("circuit_closed", || CacheEvent::CircuitClosed);
            }
            Transition::None => {}
        }
        result
    }

    async fn attempt<T: FromRedisValue>(&self, cmd: &Cmd, everywhere: bool) -> Result<T> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut retried = false;
        loop {
            let attempt =
                tokio::time::timeout_at(deadline, self.con.send::<T>(cmd, everywhere)).await;
            match attempt {
                Err(_) => return Err(Error::Timeout(self.timeout)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !retried && (e.is_connection_dropped() || e.is_io_error()) => {
                    tracing::debug!(error = %e, "command connection dropped; retrying once");
                    retried = true;
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    pub async fn fetch(&self, key: &str) -> Result<Option<Fetched>> {
        let reply: FetchReply = self.query(redis::cmd(command::FETCH).arg(key)).await?;
        Ok(reply.map(|(value, tags, pttl, origin, version)| Fetched {
            value,
            tags,
            remaining: u64::try_from(pttl).ok().map(Duration::from_millis),
            origin: origin.into(),
            version,
        }))
    }

    /// Writes an entry; returns its (origin, version).
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<(Arc<str>, u64)> {
        let mut cmd = redis::cmd(command::SET);
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            cmd.arg(command::option::PX).arg(ms);
        }
        cmd.arg(command::option::GETVERSION);
        if !tags.is_empty() {
            cmd.arg(command::option::TAGS).arg(tags);
        }
        let reply: Option<(String, u64)> = self.query(&cmd).await?;
        let (origin, version) = reply.ok_or_else(|| Error::UnexpectedReply {
            command: command::SET,
            detail: "nil without NX/XX".into(),
        })?;
        Ok((origin.into(), version))
    }

    pub async fn del(&self, key: &str) -> Result<bool> {
        let removed: u64 = self.query(redis::cmd(command::DEL).arg(key)).await?;
        Ok(removed > 0)
    }

    /// Runs a queued operation.
    async fn send(&self, op: &Pending) -> Result<()> {
        match op {
            Pending::Set {
                key,
                bytes,
                ttl,
                tags,
            } => self.set(key, bytes, *ttl, tags).await.map(|_| ()),
            Pending::Del { key } => self.del(key).await.map(|_| ()),
            Pending::DelTags { tags } => self.deltag(tags).await.map(|_| ()),
        }
    }

    /// Replays the outbox in order; stops at the first failure (the operation goes back
    /// first in line). Returns how many were replayed.
    pub async fn replay(&self) -> Result<usize> {
        let mut replayed = 0;
        while let Some(op) = self.outbox.pop() {
            match self.send(&op).await {
                Ok(()) => replayed += 1,
                Err(e) if e.is_unreachable() => {
                    self.outbox.unpop(op);
                    return Err(e);
                }
                // Redis refused it (e.g. a limit): replaying it again would not help.
                Err(e) => tracing::warn!(error = %e, ?op, "queued operation refused by redis"),
            }
        }
        if replayed > 0 {
            tracing::info!(replayed, "queued operations replayed to redis");
            self.events
                .emit("replayed", || CacheEvent::Replayed { count: replayed });
        }
        Ok(replayed)
    }

    /// Takes the stampede lock `lock` for `ttl` with `token`; false when someone holds it.
    pub async fn try_lock(&self, lock: &str, token: &str, ttl: Duration) -> Result<bool> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(lock)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(reply.is_some())
    }

    /// Releases the stampede lock if `token` still holds it.
    pub async fn unlock(&self, lock: &str, token: &str) -> Result<()> {
        const RELEASE: &str =
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        let _: i64 = self
            .query(redis::cmd("EVAL").arg(RELEASE).arg(1).arg(lock).arg(token))
            .await?;
        Ok(())
    }

    /// Removes the keys of `tags`; in a cluster on every primary (each removes its own keys),
    /// with the counts summed.
    pub async fn deltag(&self, tags: &[String]) -> Result<u64> {
        self.query_on(redis::cmd(command::DELTAG).arg(tags), true)
            .await
    }
}
