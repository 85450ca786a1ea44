//! `HC.DEL key [key ...]`, `HC.DELTAG tag [tag ...]`, and their soft forms `HC.STALE` and
//! `HC.STALETAG`: the same removals, announced with the op `stale` so that readers may keep
//! their copies for fail-safe. `HC.DELTAGALL tag [tag ...]`: the entries carrying all of the
//! tags.

use crate::acl::KeyAcl;
use crate::changes::{Announce, Change};
use crate::key_handle::selected_db;
use crate::key_handle::KeyHandle;
use crate::publisher::apply;
use crate::removal;
use crate::state::{removal_announced_by_caller, with_state};
use hybridcache_protocol::Op;
use redis_module::{Context, NotifyEvent, RedisError, RedisResult, RedisString, RedisValue};

/// Deletes `name` when it holds an entry; true when it did. Keys of other types are left
/// alone: the module only removes what it owns, and a logically deleted entry is already
/// gone. The key is looked at before it is opened for writing, so that deleting nothing does
/// not touch a WATCH.
fn delete_entry(ctx: &Context, name: &RedisString) -> bool {
    let db = selected_db(ctx);
    let holds_entry = KeyHandle::open(ctx.get_raw(), name.inner, false)
        .is_some_and(|key| matches!(key.live_entry(db), Ok(Some(_))));
    if !holds_entry {
        return false;
    }
    let Some(mut key) = KeyHandle::open(ctx.get_raw(), name.inner, true) else {
        return false;
    };
    if !matches!(key.entry(), Ok(Some(_))) {
        return false;
    }
    let deleted = removal_announced_by_caller(db, name.as_slice(), || key.delete());
    drop(key);
    if deleted {
        ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", name);
    }
    deleted
}

pub fn hc_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    delete_keys(ctx, args, Op::Del)
}

pub fn hc_stale(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    delete_keys(ctx, args, Op::Stale)
}

pub fn hc_deltag(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    delete_tags(ctx, args, Op::Deltag)
}

pub fn hc_staletag(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    delete_tags(ctx, args, Op::Stale)
}

/// `HC.DELTAGALL tag [tag ...]`: removes the entries carrying all of the tags, without
/// blocking (as `HC.DELTAG`); one distinct tag is exactly `HC.DELTAG`.
pub fn hc_deltagall(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, tags @ ..] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let mut tags: Vec<&[u8]> = tags.iter().map(RedisString::as_slice).collect();
    tags.sort_unstable();
    tags.dedup();
    if tags.len() < 2 {
        return delete_tags(ctx, args, Op::Deltag);
    }
    let db = selected_db(ctx);
    let acl = KeyAcl::of_caller(ctx);
    if !acl.covers_all_keys(ctx) {
        let keys = with_state(|s| s.index.keys_with_all(db, &tags));
        may_delete_all(ctx, &acl, &keys)?;
    }
    let tags = &tags;
    let removed = apply(
        Change::AllTagsRemoved {
            db,
            tags,
            op: Op::Deltagall,
        },
        Announce::Yes,
    )
    .removed;
    if removed > 0 {
        ctx.replicate_verbatim();
        removal::schedule(ctx.get_raw());
    }
    Ok(RedisValue::Integer(
        i64::try_from(removed).unwrap_or(i64::MAX),
    ))
}

/// All or nothing: a user whose key patterns forbid deleting one of `keys` gets an error
/// and nothing is removed (so replicas, which re-run the command, stay equal).
fn may_delete_all(ctx: &Context, acl: &KeyAcl, keys: &[Vec<u8>]) -> Result<(), RedisError> {
    let allowed = keys
        .iter()
        .all(|key| acl.may_delete(RedisString::create_from_slice(ctx.get_raw(), key).inner));
    if allowed {
        return Ok(());
    }
    Err(RedisError::Str(
        "NOPERM this user has no permissions to delete some of the keys carrying these tags",
    ))
}

/// `HC.DEL`/`HC.STALE`: removes the entries, announced with `op`.
fn delete_keys(ctx: &Context, args: Vec<RedisString>, op: Op) -> RedisResult {
    let [_, names @ ..] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    if names.is_empty() {
        return Err(RedisError::WrongArity);
    }
    let db = selected_db(ctx);
    let removed: Vec<&[u8]> = names
        .iter()
        .filter(|name| {
            // Even a key that is already gone: a fill that read it before this removal
            // asked for it must not be written after it.
            let key = name.as_slice();
            apply(Change::Touched { db, key }, Announce::No);
            delete_entry(ctx, name)
        })
        .map(RedisString::as_slice)
        .collect();
    if !removed.is_empty() {
        let keys = &removed;
        apply(Change::Deleted { db, keys, op }, Announce::Yes);
        ctx.replicate_verbatim();
    }
    Ok(RedisValue::Integer(removed.len() as i64))
}

/// `HC.DELTAG`/`HC.STALETAG`: removes the entries carrying the tags, announced with `op`.
fn delete_tags(ctx: &Context, args: Vec<RedisString>, op: Op) -> RedisResult {
    let [_, tags @ ..] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    if tags.is_empty() {
        return Err(RedisError::WrongArity);
    }
    let db = selected_db(ctx);
    let mut tags: Vec<&[u8]> = tags.iter().map(RedisString::as_slice).collect();
    tags.sort_unstable();
    tags.dedup();
    // Users with access to every key are not checked key by key.
    let acl = KeyAcl::of_caller(ctx);
    if !acl.covers_all_keys(ctx) {
        let keys: Vec<Vec<u8>> =
            with_state(|s| tags.iter().flat_map(|tag| s.index.keys(db, tag)).collect());
        may_delete_all(ctx, &acl, &keys)?;
    }
    // The keys become logically deleted at once (moved out of the index in O(1) per tag,
    // behind a tombstone numbered like the event); the removal timer deletes them.
    let tags = &tags;
    let removed = apply(Change::TagsRemoved { db, tags, op }, Announce::Yes).removed;
    if removed > 0 {
        ctx.replicate_verbatim();
        removal::schedule(ctx.get_raw());
    }
    Ok(RedisValue::Integer(
        i64::try_from(removed).unwrap_or(i64::MAX),
    ))
}
