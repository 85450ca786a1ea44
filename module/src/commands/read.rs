//! `HC.GET key`, `HC.MGET key [key ...]`, `HC.TAGS key`

use super::{reply_array_header, reply_bytes, reply_null, REPLIED};
use crate::key_handle::KeyHandle;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

pub fn hc_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, name] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let Some(key) = KeyHandle::open(ctx.get_raw(), name.inner, false) else {
        return Ok(RedisValue::Null);
    };
    match key.entry()? {
        Some(entry) => reply_bytes(ctx, &entry.value),
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
    reply_array_header(ctx, names.len());
    for name in names {
        let key = KeyHandle::open(ctx.get_raw(), name.inner, false);
        match key.as_ref().map(KeyHandle::entry) {
            Some(Ok(Some(entry))) => reply_bytes(ctx, &entry.value),
            _ => reply_null(ctx),
        }
    }
    Ok(REPLIED)
}

pub fn hc_tags(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, name] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let key = KeyHandle::open(ctx.get_raw(), name.inner, false);
    let entry = match &key {
        Some(key) => key.entry()?,
        None => None,
    };
    let tags = entry.map_or(&[][..], |e| &e.tags[..]);
    reply_array_header(ctx, tags.len());
    for tag in tags {
        reply_bytes(ctx, tag);
    }
    Ok(REPLIED)
}
