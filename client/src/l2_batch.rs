//! The Redis tier's batch reads and writes: `HC.FETCH` and `HC.SET` of many keys in one
//! round trip (pipelines, see `pipeline.rs`), behind the circuit breaker and within the
//! command timeout as one command is. Each key gets its own outcome, as a single command
//! would; the batch fails as a whole only when Redis could not be reached.

use crate::error::{Error, Result};
use crate::fill::Lease;
use crate::l2::{
    fetched, is_wrong_type, leased, leased_command, set_command, written, FetchReply, Fetched,
    Filled, LeaseOnHit, Leased, LeasedReply, Written, L2,
};
use hybridcache_protocol::command;
use redis::{RedisError, RedisResult, Value};
use std::time::{Duration, Instant};

/// One entry of a batch write of record.
#[derive(Debug, Clone)]
pub(crate) struct EntryWrite {
    pub(crate) key: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
}

/// One entry of a batch of fills: written only if its lease still holds.
#[derive(Debug, Clone)]
pub(crate) struct FillEntry {
    pub(crate) key: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) lease: Lease,
}

/// A command's reply decoded as `T`.
fn decode<T: redis::FromRedisValue>(reply: RedisResult<Value>) -> Result<T> {
    let value = reply?;
    redis::from_redis_value(value).map_err(|e| Error::from(RedisError::from(e)))
}

impl L2 {
    /// `HC.FETCH` of every key of `keys`: each one's entry (a key holding a value of
    /// another type reads as missing) or error, in the order of `keys`.
    pub(crate) async fn fetch_many(&self, keys: &[String]) -> Result<Vec<Result<Option<Fetched>>>> {
        let cmds: Vec<_> = keys
            .iter()
            .map(|key| {
                let mut cmd = redis::cmd(command::FETCH);
                cmd.arg(key);
                cmd
            })
            .collect();
        let sent_at = Instant::now();
        let replies = self
            .guarded(|| self.connection().pipelined(keys, cmds.clone()))
            .await?;
        Ok(replies
            .into_iter()
            .map(|reply| match decode::<FetchReply>(reply) {
                Ok(reply) => Ok(fetched(reply, sent_at)),
                Err(e) if is_wrong_type(&e) => Ok(None),
                Err(e) => Err(e),
            })
            .collect())
    }

    /// `HC.FETCH key LEASE` of every key of `keys`: each one's entry (a key of another type
    /// reads as missing) and lease, or error, in the order of `keys`.
    pub(crate) async fn fetch_many_leased(
        &self,
        keys: &[String],
        on_hit: LeaseOnHit,
    ) -> Result<Vec<Result<Leased>>> {
        if self.unconditional_fills() {
            let fetched = self.fetch_many(keys).await?;
            return Ok(fetched
                .into_iter()
                .map(|found| {
                    Ok(Leased {
                        found: found?,
                        lease: Some(Lease::new(Vec::new())),
                    })
                })
                .collect());
        }
        let cmds: Vec<_> = keys.iter().map(|key| leased_command(key, on_hit)).collect();
        let sent_at = Instant::now();
        let replies = self
            .guarded(|| self.connection().pipelined(keys, cmds.clone()))
            .await?;
        Ok(replies
            .into_iter()
            .map(|reply| decode::<LeasedReply>(reply).map(|reply| leased(reply, sent_at)))
            .collect())
    }

    /// Writes every entry of `fills` on its lease (`HC.SET ... LEASE`): each one's
    /// outcome, in the order of `fills`.
    pub(crate) async fn fill_many(&self, fills: &[FillEntry]) -> Result<Vec<Result<Filled>>> {
        let conditional = !self.unconditional_fills();
        let sets = fills.iter().map(|f| {
            let lease = conditional.then_some(&f.lease);
            (
                f.key.as_str(),
                set_command(&f.key, &f.bytes, f.ttl, &f.tags, lease),
            )
        });
        let outcomes = self.set_pipeline(sets).await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.map(|written| written.map_or(Filled::Refused, Filled::Accepted)))
            .collect())
    }

    /// Writes every entry of `writes` unconditionally (writes of record): each one's
    /// outcome, in the order of `writes`.
    pub(crate) async fn set_many(&self, writes: &[EntryWrite]) -> Result<Vec<Result<Written>>> {
        let sets = writes.iter().map(|w| {
            (
                w.key.as_str(),
                set_command(&w.key, &w.bytes, w.ttl, &w.tags, None),
            )
        });
        let outcomes = self.set_pipeline(sets).await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome?.ok_or_else(|| Error::UnexpectedReply {
                    command: command::SET,
                    detail: "nil without NX/XX or LEASE".into(),
                })
            })
            .collect())
    }

    /// Sends `sets` (a key and its `HC.SET`) in one pipeline: what each wrote (`None`:
    /// refused), in their order.
    async fn set_pipeline<'k>(
        &self,
        sets: impl Iterator<Item = (&'k str, (redis::Cmd, Option<Duration>))>,
    ) -> Result<Vec<Result<Option<Written>>>> {
        let mut keys = Vec::new();
        let mut cmds = Vec::new();
        let mut ttls = Vec::new();
        for (key, (cmd, ttl)) in sets {
            keys.push(key.to_string());
            cmds.push(cmd);
            ttls.push(ttl);
        }
        let sent_at = Instant::now();
        let replies = self
            .guarded(|| self.connection().pipelined(&keys, cmds.clone()))
            .await?;
        Ok(replies
            .into_iter()
            .zip(ttls)
            .map(|(reply, ttl)| {
                let reply: Option<(String, u64)> = decode(reply)?;
                Ok(written(reply, ttl, sent_at))
            })
            .collect())
    }
}
