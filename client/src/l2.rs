//! The Redis tier: the module's commands, with replies parsed into Rust values, each bounded
//! by the command timeout and retried once when the connection turned out to be dead.

use crate::circuit::{CircuitBreaker, Transition};
use crate::error::{Error, Result};
use crate::events::{CacheEvent, Events};
use crate::fill::Lease;
use crate::outbox::{Outbox, Pending};
use hybridcache_protocol::command;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{AggregateOp, MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, FromRedisValue, RedisResult, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An entry as `HC.FETCH` returns it.
pub(crate) struct Fetched {
    pub(crate) value: Vec<u8>,
    pub(crate) tags: Vec<String>,
    /// When the entry expires in Redis, as seen from here (`None`: no expiry): the moment
    /// the request was sent plus the remaining lifetime the server reported, so never later
    /// than the real deadline.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) origin: Arc<str>,
    pub(crate) version: u64,
}

/// `HC.FETCH key LEASE`: the entry if there is one, and the lease a fill of the key needs.
pub(crate) struct Leased {
    pub(crate) found: Option<Fetched>,
    /// Given on a miss, and on a hit when asked for (`LEASE ALWAYS`).
    pub(crate) lease: Option<Lease>,
}

/// A value Redis stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) origin: Arc<str>,
    pub(crate) version: u64,
    /// When it expires in Redis, as seen from here (the moment the write was sent plus its
    /// TTL); `None`: no expiry.
    pub(crate) expires_at: Option<Instant>,
}

/// What a conditional write (`HC.SET ... LEASE`) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filled {
    Accepted(Written),
    /// The key changed since the lease was given: nothing was written.
    Refused,
}

pub(crate) type FetchReply = Option<(Vec<u8>, Vec<String>, i64, String, u64)>;
pub(crate) type LeasedReply = (
    Option<Vec<u8>>,
    Vec<String>,
    i64,
    String,
    u64,
    Option<Vec<u8>>,
);

/// Whether a read with a lease also wants one when the key is there (a refresh), or only
/// when it misses (a fill of a missing key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseOnHit {
    NotWanted,
    Wanted,
}

/// `sent_at` plus a `pttl` reply (negative: no expiry or no key).
fn deadline(sent_at: Instant, pttl: i64) -> Option<Instant> {
    u64::try_from(pttl)
        .ok()
        .and_then(|ms| sent_at.checked_add(Duration::from_millis(ms)))
}

/// Whether Redis answered `WRONGTYPE`: the key holds a value of another type than the
/// module's (e.g. a raw `SET` over an entry).
pub(crate) fn is_wrong_type(e: &Error) -> bool {
    matches!(e, Error::Redis(e) if e.code() == Some("WRONGTYPE"))
}

/// The entry of an `HC.FETCH` reply to a request sent at `sent_at`.
pub(crate) fn fetched(reply: FetchReply, sent_at: Instant) -> Option<Fetched> {
    reply.map(|(value, tags, pttl, origin, version)| Fetched {
        value,
        tags,
        expires_at: deadline(sent_at, pttl),
        origin: origin.into(),
        version,
    })
}

/// `HC.FETCH key LEASE` (with `ALWAYS` when a lease is wanted on a hit too).
pub(crate) fn leased_command(key: &str, on_hit: LeaseOnHit) -> Cmd {
    let mut cmd = redis::cmd(command::FETCH);
    cmd.arg(key).arg(command::option::LEASE);
    if on_hit == LeaseOnHit::Wanted {
        cmd.arg(command::option::ALWAYS);
    }
    cmd
}

/// The entry and lease of an `HC.FETCH key LEASE` reply to a request sent at `sent_at`.
pub(crate) fn leased(reply: LeasedReply, sent_at: Instant) -> Leased {
    let (value, tags, pttl, origin, version, lease) = reply;
    Leased {
        found: value.map(|value| Fetched {
            value,
            tags,
            expires_at: deadline(sent_at, pttl),
            origin: origin.into(),
            version,
        }),
        lease: lease.map(Lease::new),
    }
}

/// An `HC.SET` (with `lease`: conditional) of `value` under `key`, and the TTL it sets, as
/// Redis keeps it (whole milliseconds).
pub(crate) fn set_command(
    key: &str,
    value: &[u8],
    ttl: Option<Duration>,
    tags: &[String],
    lease: Option<&Lease>,
) -> (Cmd, Option<Duration>) {
    let mut cmd = redis::cmd(command::SET);
    cmd.arg(key).arg(value);
    // Whole milliseconds, as Redis keeps them; the L1 deadline uses the same figure, so
    // that a copy never outlives the entry by the dropped fraction.
    let ttl = ttl.map(|ttl| {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg(command::option::PX).arg(ms);
        Duration::from_millis(ms)
    });
    if let Some(lease) = lease {
        cmd.arg(command::option::LEASE).arg(lease.token());
    }
    cmd.arg(command::option::GETVERSION);
    if !tags.is_empty() {
        cmd.arg(command::option::TAGS).arg(tags);
    }
    (cmd, ttl)
}

/// What an `HC.SET ... GETVERSION` reply says was stored (`None`: a conditional write
/// refused), for a request sent at `sent_at` with `ttl`.
pub(crate) fn written(
    reply: Option<(String, u64)>,
    ttl: Option<Duration>,
    sent_at: Instant,
) -> Option<Written> {
    reply.map(|(origin, version)| Written {
        origin: origin.into(),
        version,
        expires_at: ttl.and_then(|ttl| sent_at.checked_add(ttl)),
    })
}

/// The command connection: to one server, or to a cluster (commands routed by key slot).
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub(crate) async fn send<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        everywhere: bool,
    ) -> RedisResult<T> {
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

    /// Runs `cmd` on the server, or on every primary of a cluster: each node's address
    /// (`None` for the single server) with its reply or error.
    pub(crate) async fn on_every_primary(
        &self,
        cmd: &Cmd,
    ) -> RedisResult<Vec<(Option<String>, RedisResult<Value>)>> {
        match self {
            Connection::Single(con) => Ok(vec![(None, cmd.query_async(&mut con.clone()).await)]),
            Connection::Cluster(con) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let reply = con.clone().route_command(cmd.clone(), routing).await?;
                let Value::Map(by_node) = reply else {
                    return Ok(vec![(None, Ok(reply))]);
                };
                Ok(by_node
                    .into_iter()
                    .map(|(node, reply)| {
                        let node = match node {
                            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                            Value::SimpleString(s) => s,
                            other => format!("{other:?}"),
                        };
                        let reply = match reply {
                            Value::ServerError(e) => Err(e.into()),
                            other => Ok(other),
                        };
                        (Some(node), reply)
                    })
                    .collect())
            }
        }
    }
}

tokio::task_local! {
    /// The Redis timeout of the cache call running in this task
    /// ([`EntryOptions::redis_timeout`](crate::EntryOptions::redis_timeout)).
    static CALL_TIMEOUT: Duration;
}

/// Runs `call` with every Redis command it sends bounded by `timeout` (when given) instead
/// of the connection's command timeout, which stays the upper bound (the connection gives
/// up on a reply then).
pub(crate) async fn with_call_timeout<F: Future>(timeout: Option<Duration>, call: F) -> F::Output {
    match timeout {
        Some(timeout) => CALL_TIMEOUT.scope(timeout, call).await,
        None => call.await,
    }
}

/// The command connection, its timeout, the circuit breaker in front of it and the outbox
/// of operations waiting for it.
#[derive(Clone)]
pub(crate) struct L2 {
    con: Connection,
    timeout: Duration,
    breaker: Arc<CircuitBreaker>,
    outbox: Arc<Outbox>,
    /// Where circuit and replay events go (the cache built with the connection).
    events: Arc<Events>,
    /// Benchmarks only: fills read without a lease and are written unconditionally (the
    /// racy behaviour every fill used to have), to measure what conditional fills cost.
    unconditional_fills: bool,
}

impl L2 {
    pub(crate) fn new(
        con: Connection,
        timeout: Duration,
        breaker: CircuitBreaker,
        outbox: Outbox,
        events: Arc<Events>,
    ) -> Self {
        Self {
            con,
            timeout,
            breaker: Arc::new(breaker),
            outbox: Arc::new(outbox),
            events,
            unconditional_fills: false,
        }
    }

    /// See the field; set by the builder's benchmark switch.
    pub(crate) fn with_unconditional_fills(mut self, unconditional: bool) -> Self {
        self.unconditional_fills = unconditional;
        self
    }

    /// See the field.
    pub(crate) fn unconditional_fills(&self) -> bool {
        self.unconditional_fills
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.con
    }

    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Runs `cmd`; a connection found dead (e.g. after a server restart) is reconnected and
    /// the command sent once more, within the same deadline.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.query_on(cmd, false).await
    }

    /// Like `query`; with `everywhere`, a cluster runs `cmd` on every primary and the
    /// integer replies are summed.
    async fn query_on<T: FromRedisValue>(&self, cmd: &Cmd, everywhere: bool) -> Result<T> {
        self.guarded(|| self.con.send::<T>(cmd, everywhere)).await
    }

    /// Runs `send` (one request to Redis, however many commands it carries) behind the
    /// circuit breaker and within the command timeout, once more if the connection turned
    /// out to be dead; its outcome counts for the breaker as one command.
    pub(crate) async fn guarded<T, F, Fut>(&self, send: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.breaker.allows(tokio::time::Instant::now().into_std()) {
            return Err(Error::CircuitOpen);
        }
        let result = self.attempt(send).await;
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

    async fn attempt<T, F, Fut>(&self, send: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let timeout = CALL_TIMEOUT
            .try_with(|call| (*call).min(self.timeout))
            .unwrap_or(self.timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut retried = false;
        loop {
            let attempt = tokio::time::timeout_at(deadline, send()).await;
            match attempt {
                Err(_) => return Err(Error::Timeout(timeout)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !retried && (e.is_connection_dropped() || e.is_io_error()) => {
                    tracing::debug!(error = %e, "command connection dropped; retrying once");
                    retried = true;
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// `HC.FETCH key`: the entry, or `None` when there is none. A key holding a value of
    /// another type reads as missing too (a fill will replace it).
    pub(crate) async fn fetch(&self, key: &str) -> Result<Option<Fetched>> {
        let sent_at = Instant::now();
        let reply: FetchReply = match self.query(redis::cmd(command::FETCH).arg(key)).await {
            Err(e) if is_wrong_type(&e) => return Ok(None),
            other => other?,
        };
        Ok(fetched(reply, sent_at))
    }

    /// `HC.FETCH key LEASE`: the entry (a key of another type reads as missing) and a lease
    /// for a fill computed from now on.
    pub(crate) async fn fetch_leased(&self, key: &str, on_hit: LeaseOnHit) -> Result<Leased> {
        if self.unconditional_fills {
            let found = self.fetch(key).await?;
            return Ok(Leased {
                found,
                lease: Some(Lease::new(Vec::new())),
            });
        }
        let sent_at = Instant::now();
        let reply: LeasedReply = self.query(&leased_command(key, on_hit)).await?;
        Ok(leased(reply, sent_at))
    }

    /// `HC.SET` with `lease` (nil: refused) or without (the write of record).
    async fn write(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
        lease: Option<&Lease>,
    ) -> Result<Option<Written>> {
        let (cmd, ttl) = set_command(key, value, ttl, tags, lease);
        let sent_at = Instant::now();
        let reply: Option<(String, u64)> = self.query(&cmd).await?;
        Ok(written(reply, ttl, sent_at))
    }

    /// Writes an entry unconditionally (the write of record).
    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<Written> {
        self.write(key, value, ttl, tags, None)
            .await?
            .ok_or_else(|| Error::UnexpectedReply {
                command: command::SET,
                detail: "nil without NX/XX or LEASE".into(),
            })
    }

    /// Writes an entry only if nothing changed the key (or removed one of `tags` or of the
    /// stored entry's tags) since `lease` was given.
    pub(crate) async fn fill(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
        lease: &Lease,
    ) -> Result<Filled> {
        let lease = (!self.unconditional_fills).then_some(lease);
        Ok(match self.write(key, value, ttl, tags, lease).await? {
            Some(written) => Filled::Accepted(written),
            None => Filled::Refused,
        })
    }

    pub(crate) async fn del(&self, key: &str) -> Result<bool> {
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
            Pending::Fill {
                key,
                bytes,
                ttl,
                tags,
                lease,
                refusals,
            } => {
                if self.fill(key, bytes, *ttl, tags, lease).await? == Filled::Refused {
                    refusals.refused(key);
                }
                Ok(())
            }
            Pending::Del { key } => self.del(key).await.map(|_| ()),
            Pending::DelTags { tags } => self.deltag(tags).await.map(|_| ()),
            Pending::DelAllTags { tags } => self.deltagall(tags).await.map(|_| ()),
            Pending::Stale { key } => self.stale(key).await.map(|_| ()),
            Pending::StaleTags { tags } => self.staletag(tags).await.map(|_| ()),
        }
    }

    /// Replays the outbox in order; stops at the first failure (the operation goes back
    /// first in line). Returns how many were replayed.
    pub(crate) async fn replay(&self) -> Result<usize> {
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
    pub(crate) async fn try_lock(&self, lock: &str, token: &str, ttl: Duration) -> Result<bool> {
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
    pub(crate) async fn unlock(&self, lock: &str, token: &str) -> Result<()> {
        const RELEASE: &str =
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        let _: i64 = self
            .query(redis::cmd("EVAL").arg(RELEASE).arg(1).arg(lock).arg(token))
            .await?;
        Ok(())
    }

    /// Removes the keys of `tags`; in a cluster on every primary (each removes its own keys),
    /// with the counts summed.
    pub(crate) async fn deltag(&self, tags: &[String]) -> Result<u64> {
        self.query_on(redis::cmd(command::DELTAG).arg(tags), true)
            .await
    }

    /// `HC.DELTAGALL tags`: removes the keys carrying all of `tags`; in a cluster on every
    /// primary (each removes its own keys), with the counts summed.
    pub(crate) async fn deltagall(&self, tags: &[String]) -> Result<u64> {
        self.query_on(redis::cmd(command::DELTAGALL).arg(tags), true)
            .await
    }

    /// `HC.STALE key`: removes `key` as `del` does, announced as expired on request.
    pub(crate) async fn stale(&self, key: &str) -> Result<bool> {
        let removed: u64 = self.query(redis::cmd(command::STALE).arg(key)).await?;
        Ok(removed > 0)
    }

    /// `HC.STALETAG tags`: removes the keys of `tags` as `deltag` does (on every primary),
    /// announced as expired on request.
    pub(crate) async fn staletag(&self, tags: &[String]) -> Result<u64> {
        self.query_on(redis::cmd(command::STALETAG).arg(tags), true)
            .await
    }
}
