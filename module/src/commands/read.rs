//! `HC.GET key`, `HC.MGET key [key ...]`, `HC.FETCH key [LEASE]`, `HC.TAGS key`

//!
//! The first three are the hot reads: registered by hand ([`super::create_command`]) so that
//! they borrow their arguments instead of getting a `Vec<RedisString>` built per call.

use super::{
    arg_bytes, lease, now_ms, reply_array_header, reply_bytes, reply_null, run_borrowed, Args,
    REPLIED,
};
use crate::entry::Entry;
use crate::error::CommandError;
use crate::key_handle::selected_db;
use crate::key_handle::KeyHandle;
use crate::state::with_state;
use hybridcache_protocol::command::option;
use redis_module::raw;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};
use std::os::raw::c_int;
use std::sync::OnceLock;

/// Redis's callback for `HC.GET`.
///
/// # Safety
/// Called by Redis with a command's context and arguments.
pub(crate) unsafe extern "C" fn hc_get_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    run_borrowed(ctx, argv, argc, hc_get)
}

/// Redis's callback for `HC.MGET`.
///
/// # Safety
/// Called by Redis with a command's context and arguments.
pub(crate) unsafe extern "C" fn hc_mget_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    run_borrowed(ctx, argv, argc, hc_mget)
}

/// Redis's callback for `HC.FETCH`.
///
/// # Safety
/// Called by Redis with a command's context and arguments.
pub(crate) unsafe extern "C" fn hc_fetch_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    run_borrowed(ctx, argv, argc, hc_fetch)
}

fn hc_get(ctx: &Context, args: Args) -> RedisResult {
    let [_, name] = args else {
        return Err(RedisError::WrongArity);
    };
    let Some(key) = KeyHandle::open(ctx.get_raw(), *name, false) else {
        return Ok(RedisValue::Null);
    };
    match key.live_entry(selected_db(ctx))? {
        Some(entry) => reply_bytes(ctx, entry.value()),
        None => reply_null(ctx),
    }
    Ok(REPLIED)
}

fn hc_mget(ctx: &Context, args: Args) -> RedisResult {
    let [_, names @ ..] = args else {
        return Err(RedisError::WrongArity);
    };
    if names.is_empty() {
        return Err(RedisError::WrongArity);
    }
    let db = selected_db(ctx);
    reply_array_header(ctx, names.len());
    for name in names {
        let key = KeyHandle::open(ctx.get_raw(), *name, false);
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
fn hc_fetch(ctx: &Context, args: Args) -> RedisResult {
    let is = |arg, word: &str| arg_bytes(arg).eq_ignore_ascii_case(word.as_bytes());
    let (name, wanted) = match args {
        [_, name] => (name, LeaseWanted::Never),
        [_, name, lease] if is(lease, option::LEASE) => (name, LeaseWanted::OnMiss),
        [_, name, lease, always] if is(lease, option::LEASE) && is(always, option::ALWAYS) => {
            (name, LeaseWanted::Always)
        }
        [_, _, unknown] | [_, _, _, unknown] => {
            return Err(CommandError::unknown_fetch_option(arg_bytes(unknown)).into())
        }
        _ => return Err(RedisError::WrongArity),
    };
    let with_lease = wanted != LeaseWanted::Never;
    let db = selected_db(ctx);
    let key = KeyHandle::open(ctx.get_raw(), *name, false);
    if with_lease {
        // A key of another type reads as a miss: the fill may replace it, as HC.SET would.
        let entry = key.as_ref().and_then(|k| k.live_entry(db).ok().flatten());
        // A lease on every hit would fill the table with reads nobody follows with a fill.
        let token = (entry.is_none() || wanted == LeaseWanted::Always)
            .then(|| lease::issue(ctx.get_raw(), db, arg_bytes(name)));
        match (&key, entry) {
            (Some(key), Some(entry)) => reply_entry(ctx, key, entry, 6),
            _ => {
                reply_array_header(ctx, 6);
                reply_null(ctx);
                reply_array_header(ctx, 0);
                raw::reply_with_long_long(ctx.get_raw(), -2);
                reply_bytes(ctx, origin().as_bytes());
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

/// This server's origin id (fixed for the life of the process), kept outside the state so
/// that a read takes neither the state's lock nor a copy of it.
fn origin() -> &'static str {
    static ORIGIN: OnceLock<String> = OnceLock::new();
    ORIGIN.get_or_init(|| with_state(|s| s.sequencer.origin().to_string()))
}

/// The first five fields of HC.FETCH's reply, in an array of `len`.
fn reply_entry(ctx: &Context, key: &KeyHandle, entry: &Entry, len: usize) {
    let pttl = key
        .expire_at()
        .map_or(-1, |at| at.saturating_sub(now_ms()).max(0));
    reply_array_header(ctx, len);
    reply_bytes(ctx, entry.value());
    // Counted, then walked again: no list built per call.
    reply_array_header(ctx, entry.tags().count());
    for tag in entry.tags() {
        reply_bytes(ctx, tag);
    }
    raw::reply_with_long_long(ctx.get_raw(), pttl);
    reply_bytes(ctx, origin().as_bytes());
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
