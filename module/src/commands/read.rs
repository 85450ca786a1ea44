//! `HC.GET key`, `HC.MGET key [key ...]`, `HC.FETCH key`, `HC.TAGS key`

use super::{now_ms, reply_array_header, reply_bytes, reply_null, REPLIED};
use crate::key_handle::KeyHandle;
use crate::keyspace::selected_db;
use crate::state::with_state;
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

/// `[value, [tag ...], pttl, origin, version]` or nil: what a client cache needs to keep
/// the value, drop it on the right events, and never outlive the Redis entry.
pub fn hc_fetch(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, name] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let Some(key) = KeyHandle::open(ctx.get_raw(), name.inner, false) else {
        return Ok(RedisValue::Null);
    };
    let Some(entry) = key.live_entry(selected_db(ctx))? else {
        return Ok(RedisValue::Null);
    };
    let pttl = key
        .expire_at()
        .map_or(-1, |at| at.saturating_sub(now_ms()).max(0));
    let origin = with_state(|s| s.sequencer.origin().to_string());
    reply_array_header(ctx, 5);
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
    Ok(REPLIED)
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
