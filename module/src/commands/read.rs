//! `HC.GET key`, `HC.MGET key [key ...]`, `HC.FETCH key [LEASE]`, `HC.TAGS key`

use super::{lease, now_ms, reply_array_header, reply_bytes, reply_null, REPLIED};
use crate::entry::Entry;
use crate::error::CommandError;
use crate::key_handle::selected_db;
use crate::key_handle::KeyHandle;
use crate::state::with_state;
use hybridcache_protocol::command::option;
use redis_module::raw;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

pub fn hc_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, name] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let Some(key) = KeyHandle::open(ctx.get_raw(), name.inner, false) else {
        return Ok(RedisValue::Null);
    };
    match key.live_entry(selected_db(ctx))? {
        Some(entry) => reply_bytes(ctx, entry.value()),
        None => reply_null(ctx),
    }
    Ok(REPLIED)
}

pub fn hc_mget(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, names @ ..] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    if names.is_empty() {
        return Err(RedisError::WrongArity);
    }
    let db = selected_db(ctx);
    reply_array_header(ctx, names.len());
    for name in names {
        let key = KeyHandle::open(ctx.get_raw(), name.inner, false);
        match key.as_ref().map(|k| k.live_entry(db)) {
            Some(Ok(Some(entry))) => reply_bytes(ctx, entry.value()),
            _ => reply_null(ctx),
        }
    }
    Ok(REPLIED)
}

/// When `HC.FETCH` gives a fill lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseWanted {
    Never,
    /// `LEASE`: when the key misses, for the fill that follows.
    OnMiss,
    /// `LEASE ALWAYS`: also on a hit, for a refresh of the entry.
    Always,
}

/// `[value, [tag ...], pttl, origin, version]` or nil: what a client cache needs to keep
/// the value, drop it on the right events, and never outlive the Redis entry. With LEASE,
/// always `[value or nil, [tag ...], pttl, origin, version, lease or nil]`.
pub fn hc_fetch(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let is = |arg: &RedisString, word: &str| arg.as_slice().eq_ignore_ascii_case(word.as_bytes());
    let (name, wanted) = match args.as_slice() {
        [_, name] => (name, LeaseWanted::Never),
        [_, name, lease] if is(lease, option::LEASE) => (name, LeaseWanted::OnMiss),
        [_, name, lease, always] if is(lease, option::LEASE) && is(always, option::ALWAYS) => {
            (name, LeaseWanted::Always)
        }
        [_, _, unknown] | [_, _, _, unknown] => {
            return Err(CommandError::unknown_fetch_option(unknown.as_slice()).into())
        }
        _ => return Err(RedisError::WrongArity),
    };
    let with_lease = wanted != LeaseWanted::Never;
    let db = selected_db(ctx);
    let key = KeyHandle::open(ctx.get_raw(), name.inner, false);
    if with_lease {
        // A key of another type reads as a miss: the fill may replace it, as HC.SET would.
        let entry = key.as_ref().and_then(|k| k.live_entry(db).ok().flatten());
        // A lease on every hit would fill the table with reads nobody follows with a fill.
        let token = (entry.is_none() || wanted == LeaseWanted::Always)
            .then(|| lease::issue(ctx.get_raw(), db, name.as_slice()));
        match (&key, entry) {
            (Some(key), Some(entry)) => reply_entry(ctx, key, entry, 6),
            _ => {
                let origin = with_state(|s| s.sequencer.origin().to_string());
                reply_array_header(ctx, 6);
                reply_null(ctx);
                reply_array_header(ctx, 0);
                raw::reply_with_long_long(ctx.get_raw(), -2);
                reply_bytes(ctx, origin.as_bytes());
                raw::reply_with_long_long(ctx.get_raw(), 0);
            }
        }
        match token {
            Some(token) => reply_bytes(ctx, token.as_bytes()),
            None => reply_null(ctx),
        }
        return Ok(REPLIED);
    }
    let Some(key) = key else {
        return Ok(RedisValue::Null);
    };
    let Some(entry) = key.live_entry(db)? else {
        return Ok(RedisValue::Null);
    };
    reply_entry(ctx, &key, entry, 5);
    Ok(REPLIED)
}

/// The first five fields of HC.FETCH's reply, in an array of `len`.
fn reply_entry(ctx: &Context, key: &KeyHandle, entry: &Entry, len: usize) {
    let pttl = key
        .expire_at()
        .map_or(-1, |at| at.saturating_sub(now_ms()).max(0));
    let origin = with_state(|s| s.sequencer.origin().to_string());
    reply_array_header(ctx, len);
    reply_bytes(ctx, entry.value());
    let tags = entry.tag_list();
    reply_array_header(ctx, tags.len());
    for tag in tags {
        reply_bytes(ctx, tag);
    }
    raw::reply_with_long_long(ctx.get_raw(), pttl);
    reply_bytes(ctx, origin.as_bytes());
    raw::reply_with_long_long(
        ctx.get_raw(),
        i64::try_from(entry.version).unwrap_or(i64::MAX),
    );
}

pub fn hc_tags(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, name] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let key = KeyHandle::open(ctx.get_raw(), name.inner, false);
    let entry = match &key {
        Some(key) => key.live_entry(selected_db(ctx))?,
        None => None,
    };
    let tags = entry.map(|e| e.tag_list()).unwrap_or_default();
    reply_array_header(ctx, tags.len());
    for tag in tags {
        reply_bytes(ctx, tag);
    }
    Ok(REPLIED)
}
