//! The Redis tier: the module's commands, with replies parsed into Rust values.

use crate::error::{Error, Result};
use hybridcache_protocol::command;
use redis::aio::ConnectionManager;
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

pub(crate) async fn fetch(con: &mut ConnectionManager, key: &str) -> Result<Option<Fetched>> {
    let reply: FetchReply = redis::cmd(command::FETCH).arg(key).query_async(con).await?;
    Ok(reply.map(|(value, tags, pttl, origin, version)| Fetched {
        value,
        tags,
        remaining: u64::try_from(pttl).ok().map(Duration::from_millis),
        origin: origin.into(),
        version,
    }))
}

/// Writes an entry; returns its (origin, version).
pub(crate) async fn set(
    con: &mut ConnectionManager,
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
    let reply: Option<(String, u64)> = cmd.query_async(con).await?;
    let (origin, version) = reply.ok_or_else(|| Error::UnexpectedReply {
        command: command::SET,
        detail: "nil without NX/XX".into(),
    })?;
    Ok((origin.into(), version))
}

pub(crate) async fn del(con: &mut ConnectionManager, key: &str) -> Result<bool> {
    let removed: u64 = redis::cmd(command::DEL).arg(key).query_async(con).await?;
    Ok(removed > 0)
}

pub(crate) async fn deltag(con: &mut ConnectionManager, tags: &[String]) -> Result<u64> {
    Ok(redis::cmd(command::DELTAG)
        .arg(tags)
        .query_async(con)
        .await?)
}
