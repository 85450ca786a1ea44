//! `HC.SET key value [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL] [NX | XX] [LEASE token]
//! [GETVERSION] [TAGS tag ...]`

use super::{lease, now_ms, REPLIED};
use crate::changes::{Announce, Change};
use crate::entry::Entry;
use crate::key_handle::selected_db;
use crate::key_handle::KeyHandle;
use crate::publisher::apply;
use crate::set_options::{Condition, Expiry, SetOptions};
use crate::state::{removal_announced_by_caller, with_state, State};
use hybridcache_protocol::command::option;
use redis_module::raw;
use redis_module::{Context, NotifyEvent, RedisError, RedisResult, RedisString, RedisValue};
use smallvec::SmallVec;

pub fn hc_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let [_, name, value, options @ ..] = args.as_slice() else {
        return Err(RedisError::WrongArity);
    };
    let options: SmallVec<[&[u8]; 16]> = options.iter().map(RedisString::as_slice).collect();
    let options = SetOptions::parse(&options)?;
    crate::limits::current().check(value.as_slice().len(), options.tags)?;
    let now = now_ms();
    let mut deadline = options.expiry.deadline(now)?;

    let raw_ctx = ctx.get_raw();
    let db = selected_db(ctx);
    let key_changed = || {
        apply(
            Change::Touched {
                db,
                key: name.as_slice(),
            },
            Announce::No,
        )
    };
    if options.condition != Condition::Always {
        // Looked at before opening for writing, so that a refused write does not touch a
        // WATCH on the key.
        let exists = KeyHandle::open(raw_ctx, name.inner, false).is_some_and(|k| k.holds_live(db));
        if exists == (options.condition == Condition::IfAbsent) {
            // Nothing written, but a writer meant to change the key (XX on a missing key is
            // a write-through of a new value): fills read before it are refused.
            key_changed();
            return Ok(RedisValue::Null);
        }
    }
    if let Some(token) = options.lease {
        // A fill computed from a read the server has seen overtaken: refused, and nothing
        // is written, replicated or announced.
        if !lease::fill_allowed(raw_ctx, db, name, token, options.tags) {
            return Ok(RedisValue::Null);
        }
    }
    let mut key = KeyHandle::open(raw_ctx, name.inner, true)
        .ok_or(RedisError::Str("ERR cannot open the key for writing"))?;
    // Whether an entry lives under the key matters only for KEEPTTL and an expired write:
    // the common write does not pay for the look at the old entry.
    if options.expiry == Expiry::Keep {
        deadline = if key.holds_live(db) {
            key.expire_at()
        } else {
            None
        };
    }

    if deadline.is_some_and(|at| at <= now) {
        // Written already expired (EXAT/PXAT in the past): like SET, the key is deleted.
        if !key.holds_live(db) {
            key_changed();
            return Ok(success(ctx, &options, 0));
        }
        removal_announced_by_caller(db, name.as_slice(), || key.delete());
        drop(key);
        let applied = apply(
            Change::StoredExpired {
                db,
                key: name.as_slice(),
            },
            Announce::Yes,
        );
        ctx.notify_keyspace_event(NotifyEvent::MODULE, "hc.set", name);
        ctx.replicate("DEL", &[name]);
        return Ok(success(ctx, &options, applied.seq.unwrap_or_default()));
    }

    let mut entry = Entry::new(value.as_slice(), options.tags, 0)
        .ok_or(RedisError::Str("ERR the value is too large"))?;
    // The value's version is the number of the event announcing it.
    let version = with_state(State::next_version);
    entry.version = version;
    let replaced = match key.replace_entry(entry) {
        // Overwriting an entry of ours: in place, which spares Redis a delete and an insert.
        Ok(old) => {
            if deadline.is_none() && key.expire_at().is_some() {
                key.persist();
            }
            old
        }
        Err(entry) => {
            // A new key, or one of another type (not ours: no removal of ours to report).
            if !key.set_entry(entry) {
                return Err(RedisError::Str("ERR cannot store the entry"));
            }
            None
        }
    };
    if let Some(at) = deadline {
        key.set_expire_at(at);
    }
    let key_name = name.as_slice();
    if let Ok(Some(stored)) = key.entry() {
        apply(
            Change::Stored {
                db,
                key: key_name,
                old: replaced.as_deref(),
                new: stored,
                version,
            },
            Announce::Yes,
        );
    } else {
        // Nothing readable was stored: the old entry left.
        if let Some(old) = &replaced {
            let left = Change::Left {
                db,
                key: key_name,
                entry: old,
                gone: false,
            };
            apply(left, Announce::No);
        }
        apply(Change::StoredExpired { db, key: key_name }, Announce::Yes);
    }
    drop(key);
    ctx.notify_keyspace_event(NotifyEvent::MODULE, "hc.set", name);
    replicate(ctx, &args, &options, deadline);
    Ok(success(ctx, &options, version))
}

/// `OK`, or `[origin, version]` with GETVERSION.
fn success(ctx: &Context, options: &SetOptions, version: u64) -> RedisValue {
    if !options.get_version {
        // A static C string: the generic reply path allocates one for every "OK".
        raw::reply_with_simple_string(ctx.get_raw(), c"OK".as_ptr());
        return REPLIED;
    }
    let origin = with_state(|s| s.sequencer.origin().as_bytes().to_vec());
    RedisValue::Array(vec![
        RedisValue::StringBuffer(origin),
        RedisValue::Integer(i64::try_from(version).unwrap_or(i64::MAX)),
    ])
}

/// Replicas and the AOF get the write with an absolute expiry and without NX/XX, so that
/// replaying it later gives the same entry.
fn replicate(ctx: &Context, args: &[RedisString], options: &SetOptions, deadline: Option<i64>) {
    // An accepted fill travels without its LEASE: leases belong to this server process.
    let verbatim = options.condition == Condition::Always
        && !options.get_version
        && options.lease.is_none()
        && matches!(options.expiry, Expiry::Never | Expiry::At(_));
    if verbatim {
        ctx.replicate_verbatim();
        return;
    }
    let deadline = deadline.map(|at| at.to_string());
    let mut rewritten: Vec<&[u8]> = args
        .iter()
        .skip(1)
        .take(2)
        .map(RedisString::as_slice)
        .collect();
    if let Some(at) = &deadline {
        rewritten.push(option::PXAT.as_bytes());
        rewritten.push(at.as_bytes());
    }
    if !options.tags.is_empty() {
        rewritten.push(option::TAGS.as_bytes());
        rewritten.extend(options.tags.iter().copied());
    }
    ctx.replicate(hybridcache_protocol::command::SET, rewritten.as_slice());
}
