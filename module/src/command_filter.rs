//! A command filter for the one change no notification shows: `DEL`/`UNLINK` of a key that
//! does not exist. Redis sends nothing for it, yet it is how a service that invalidates
//! with raw commands says "this key's source changed": a fill read before it must be
//! refused. The filter sees every command before it runs and, for these two, reports each
//! key as changed in every database (a filter is not told the client's database; ending a
//! lease too many only refuses a fill).

use crate::fills::KeyspaceChange;
use crate::state::record_change;
use redis_module::{raw, Context, RedisString};
use std::os::raw::c_int;

/// Registers the filter; called once at load.
pub fn register(ctx: &Context) -> Result<(), String> {
    // SAFETY: called from OnLoad with its context.
    let filter = unsafe {
        raw::RedisModule_RegisterCommandFilter.map(|register| {
            register(
                ctx.get_raw(),
                Some(filter),
                raw::REDISMODULE_CMDFILTER_NOSELF as c_int,
            )
        })
    };
    match filter {
        Some(f) if !f.is_null() => Ok(()),
        _ => Err("cannot register the command filter".into()),
    }
}

unsafe extern "C" fn filter(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    let (Some(count), Some(arg)) = (
        raw::RedisModule_CommandFilterArgsCount,
        raw::RedisModule_CommandFilterArgGet,
    ) else {
        return;
    };
    let argc = count(fctx);
    if argc < 2 {
        return;
    }
    let name = arg(fctx, 0);
    if name.is_null() {
        return;
    }
    let name = RedisString::string_as_slice(name);
    if !(name.eq_ignore_ascii_case(b"del") || name.eq_ignore_ascii_case(b"unlink")) {
        return;
    }
    for pos in 1..argc {
        let key = arg(fctx, pos);
        if !key.is_null() {
            record_change(KeyspaceChange::KeyInEveryDb {
                key: RedisString::string_as_slice(key),
            });
        }
    }
}
