//! Command handlers: parse arguments, call the core, reply. One file per group.

pub mod check;
pub mod delete;
pub mod events;
pub mod hello;
pub(crate) mod lease;
pub mod read;
pub mod set;
pub mod tag_query;

use redis_module::{raw, Context, RedisValue};

/// Replies with a bulk string holding `bytes` (binary-safe, no copy).
fn reply_bytes(ctx: &Context, bytes: &[u8]) {
    raw::reply_with_string_buffer(ctx.get_raw(), bytes.as_ptr().cast(), bytes.len());
}

fn reply_array_header(ctx: &Context, len: usize) {
    raw::reply_with_array(ctx.get_raw(), len as std::os::raw::c_long);
}

fn reply_null(ctx: &Context) {
    raw::reply_with_null(ctx.get_raw());
}

/// Tells the macro-generated wrapper that the handler already replied.
const REPLIED: RedisValue = RedisValue::NoReply;

/// The current Unix time in milliseconds, as Redis sees it.
fn now_ms() -> i64 {
    // SAFETY: a plain clock read.
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
}
