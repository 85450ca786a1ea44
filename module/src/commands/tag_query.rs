//! `HC.TAGKEYS tag`, `HC.TAGCARD tag`

use super::{reply_array_header, reply_bytes, REPLIED};
use crate::acl::KeyAcl;
use crate::key_handle::KeyHandle;
use crate::keyspace::selected_db;
use crate::state::with_state;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

/// The keys carrying the tag that the calling user may read. A key whose time to live has
/// passed is not listed (looking at it makes Redis reclaim it, as any read does).
pub fn hc_tagkeys(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, tag] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let raw_ctx = ctx.get_raw();
    let db = selected_db(ctx);
    let keys = with_state(|s| s.index.keys(db, tag.as_slice()));
    let acl = KeyAcl::of_caller(ctx);
    let live: Vec<Vec<u8>> = keys
        .into_iter()
        .filter(|key| {
            let name = RedisString::create_from_slice(raw_ctx, key);
            acl.may_read(name.inner)
                && KeyHandle::peek(raw_ctx, name.inner)
                    .is_some_and(|k| matches!(k.live_entry(db), Ok(Some(_))))
        })
        .collect();
    reply_array_header(ctx, live.len());
    for key in &live {
        reply_bytes(ctx, key);
    }
    Ok(REPLIED)
}

/// How many keys carry the tag, in O(1). Like DBSIZE, this may count a key whose time to
/// live has passed until Redis reclaims it (on access or by its active expiry cycle).
pub fn hc_tagcard(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, tag] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let db = selected_db(ctx);
    let count = with_state(|s| s.index.card(db, tag.as_slice()));
    Ok(RedisValue::Integer(count as i64))
}
