//! Visiting every module entry of every database (dataset load, `HC.CHECK`).

use crate::entry::Entry;
use crate::key_handle::entry_of_raw_key;
use crate::key_handle::selected_db;
use redis_module::{raw, Context, RedisString};
use std::os::raw::c_void;

type Visitor<'v> = dyn FnMut(i32, &[u8], &Entry) + 'v;

struct Visit<'a, 'v> {
    db: i32,
    visitor: &'a mut Visitor<'v>,
}

/// Calls `visit(db, key name, entry)` for every module entry, database by database, then
/// selects the context's original database again. `visit` must not call Redis.
pub fn for_each_entry(ctx: &Context, visit: &mut Visitor<'_>) {
    let original = selected_db(ctx);
    let ctx = ctx.get_raw();
    // SAFETY: ctx is the live context of the current command or server event; the scan
    // callback only reads keys.
    unsafe {
        let (Some(select), Some(create), Some(scan), Some(destroy)) = (
            raw::RedisModule_SelectDb,
            raw::RedisModule_ScanCursorCreate,
            raw::RedisModule_Scan,
            raw::RedisModule_ScanCursorDestroy,
        ) else {
            return;
        };
        let mut db = 0;
        while select(ctx, db) == raw::REDISMODULE_OK as i32 {
            let cursor = create();
            let mut state = Visit { db, visitor: visit };
            while scan(ctx, cursor, Some(on_key), (&raw mut state).cast()) != 0 {}
            destroy(cursor);
            db += 1;
        }
        select(ctx, original);
    }
}

unsafe extern "C" fn on_key(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    key: *mut raw::RedisModuleKey,
    state: *mut c_void,
) {
    let Some(state) = state.cast::<Visit>().as_mut() else {
        return;
    };
    if name.is_null() {
        return;
    }
    if let Ok(Some(entry)) = entry_of_raw_key(key) {
        (state.visitor)(state.db, RedisString::string_as_slice(name), entry);
    }
}
