//! `HC.TAGKEYS tag`, `HC.TAGCARD tag`

use super::{reply_array_header, reply_bytes, REPLIED};
use crate::acl::KeyAcl;
use crate::key_handle::selected_db;
use crate::key_handle::KeyHandle;
use crate::state::with_state;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

/// The keys carrying the tag that the calling user may read. A key whose time to live has
/// passed is not listed (looking at it makes Redis reclaim it, as any read does).
pub fn hc_tagkeys(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, tag] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let live = visible_keys(ctx, &KeyAcl::of_caller(ctx), tag);
    reply_array_header(ctx, live.len());
    for key in &live {
        reply_bytes(ctx, key);
    }
    Ok(REPLIED)
}

/// The keys of `tag` in the selected database that `acl` may read and that hold a live
/// entry.
fn visible_keys(ctx: &Context, acl: &KeyAcl, tag: &RedisString) -> Vec<Vec<u8>> {
    let raw_ctx = ctx.get_raw();
    let db = selected_db(ctx);
    let keys = with_state(|s| s.index.keys(db, tag.as_slice()));
    keys.into_iter()
        .filter(|key| {
            let name = RedisString::create_from_slice(raw_ctx, key);
            acl.may_read(name.inner)
                && KeyHandle::peek(raw_ctx, name.inner)
                    .is_some_and(|k| matches!(k.live_entry(db), Ok(Some(_))))
        })
        .collect()
}

/// How many keys carry the tag: in O(1) for users who may read every key; for users
/// limited by ACL key patterns, how many of them the user may read (O(N)), so that the
/// count says nothing about other tenants' keys. Like DBSIZE, this may count a key whose
/// time to live has passed until Redis reclaims it (on access or by its active expiry cycle).
pub fn hc_tagcard(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, tag] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let db = selected_db(ctx);
    let acl = KeyAcl::of_caller(ctx);
    if acl.covers_all_keys(ctx) {
        let count = with_state(|s| s.index.card(db, tag.as_slice()));
        return Ok(RedisValue::Integer(count as i64));
    }
    Ok(RedisValue::Integer(
        visible_keys(ctx, &acl, tag).len() as i64
    ))
}
