//! `HC.HELLO`: what a client checks before trusting this server.

use crate::config::CHANNEL;
use crate::state::with_state;
use hybridcache_protocol::command::LEASE_VERSION;
use hybridcache_protocol::{FORMAT_VERSION, MODULE_NAME};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

pub fn hc_hello(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    let origin = with_state(|s| s.sequencer.origin().as_bytes().to_vec());
    let field = |name: &str| RedisValue::BulkString(name.to_string());
    Ok(RedisValue::Array(vec![
        field("module"),
        field(MODULE_NAME),
        field("version"),
        field(env!("CARGO_PKG_VERSION")),
        field("events"),
        RedisValue::Integer(i64::from(FORMAT_VERSION)),
        field("leases"),
        RedisValue::Integer(LEASE_VERSION),
        field("channel"),
        RedisValue::StringBuffer(CHANNEL.get()),
        field("origin"),
        RedisValue::StringBuffer(origin),
        field("sharded"),
        RedisValue::Integer(i64::from(crate::role::publishes_sharded())),
    ]))
}
