//! Keeping the tag index equal to the keyspace when the keyspace changes outside our
//! commands: keys arriving by RENAME/MOVE/COPY/RESTORE (keyspace notifications), FLUSHDB,
//! FLUSHALL, SWAPDB and dataset loads (server events, `load_phase`). Keys leaving are seen by
//! the data type's `unlink2` callback (see `datatype`). A notification's database is the one
//! its context has selected, except where `notified_db` knows better (the target of `MOVE`
//! and `COPY` inside `MULTI` on Valkey 9.1).

use crate::changes::{Announce, Change};
use crate::key_handle::{selected_db, KeyHandle};
use crate::load_phase::{LoadAction, LoadEvent, LoadPhase};
use crate::notified_db::{self, Located};
use crate::publisher::apply;
use crate::state::{fills_active, is_gone, set_loading, with_state, State};
use crate::{removal, role};
use redis_module::{raw, Context, NotifyEvent, RedisString};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Mutex;

/// Every keyspace event of every class, in database `db` (the event's, which the context
/// may not have selected: see `notified_db`): any command that touches a key is a change
/// for the fills in flight; a TTL changed on an entry is announced; a key that just
/// entered the keyspace under a new name or in a new database is indexed.
pub fn on_keyspace_event(ctx: &Context, kind: NotifyEvent, event: &str, key: &[u8], db: i32) {
    // Only fill leases care that a command touched a key: while none exist, a plain
    // command on a server with the module pays no lock and no lookup here.
    if fills_active() && !removal::is_announcing_removal(event, db, key) {
        apply(Change::Touched { db, key }, Announce::No);
    }
    if !kind.contains(NotifyEvent::GENERIC) {
        return;
    }
    match event {
        "rename_to" | "move_to" | "copy_to" | "restore" => {
            in_db(ctx.get_raw(), db, || index_arrival(ctx, db, event, key));
        }
        "expire" | "persist" => announce_ttl_change(ctx, db, key),
        _ => {}
    }
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST on an entry: the copies clients keep carry
/// the old deadline, so they are told to drop them. (HC.SET sets TTLs through the module
/// API, which sends no such event, and announces its write itself.)
fn announce_ttl_change(ctx: &Context, db: i32, key: &[u8]) {
    let name = RedisString::create_from_slice(ctx.get_raw(), key);
    let holds_entry = KeyHandle::peek(ctx.get_raw(), name.inner)
        .is_some_and(|handle| matches!(handle.entry(), Ok(Some(e)) if !is_gone(db, e)));
    if holds_entry {
        apply(Change::TtlChanged { db, key }, Announce::Yes);
    }
}

/// A key that entered the keyspace by RENAME/MOVE/COPY/RESTORE is indexed.
fn index_arrival(ctx: &Context, db: i32, event: &str, key: &[u8]) {
    let raw_ctx = ctx.get_raw();
    let name = RedisString::create_from_slice(raw_ctx, key);
    let Some(mut handle) = KeyHandle::peek(raw_ctx, name.inner) else {
        return;
    };
    let restored_live = event == "restore" && matches!(handle.entry(), Ok(Some(e)) if !e.is_dead());
    if restored_live {
        // A restored value is written anew: it gets a version of its own, so that tag
        // invalidations from before the RESTORE do not apply to it.
        if let Some(entry) = handle.entry_mut() {
            entry.version = with_state(State::next_version);
        }
    }
    let Ok(Some(entry)) = handle.entry() else {
        return;
    };
    // A logically deleted entry carried here (RENAME, MOVE, COPY, RESTORE of a DUMP taken
    // before its removal) stays gone: it is queued for removal here too.
    let gone = is_gone(db, entry);
    if gone {
        entry.mark_dead();
    }
    let arrived = Change::Arrived {
        db,
        key,
        entry,
        version: entry.version,
        renumbered: restored_live,
        gone,
    };
    apply(arrived, Announce::Yes);
    drop(handle);
    if gone {
        removal::schedule(raw_ctx);
    }
}

/// Subscribes [`on_keyspace_event`] to keyspace notifications of every class of Redis's own
/// commands (all but key misses, "new" and module events), whatever
/// `notify-keyspace-events` says. Module events are left out: this module's own writes tell
/// the fill leases themselves, and a callback for every `HC.SET` would cost each write a
/// module context; another module's write over one of our entries is still seen (unlink2).
/// Registered by hand rather than through `redis_module!`, whose wrapper unwraps the event
/// name as UTF-8.
pub fn subscribe_keyspace_events(ctx: &Context) -> Result<(), String> {
    // SAFETY: called from OnLoad with its context.
    let status = unsafe {
        raw::RedisModule_SubscribeToKeyspaceEvents.map_or(1, |subscribe| {
            subscribe(
                ctx.get_raw(),
                (raw::REDISMODULE_NOTIFY_ALL & !raw::REDISMODULE_NOTIFY_MODULE) as c_int,
                Some(keyspace_notification),
            )
        })
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err("cannot subscribe to keyspace notifications".into());
    }
    Ok(())
}

extern "C" fn keyspace_notification(
    ctx: *mut raw::RedisModuleCtx,
    class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if event.is_null() || key.is_null() {
        return raw::REDISMODULE_OK as c_int;
    }
    // SAFETY: Redis passes a NUL-terminated event name and the key for this call.
    let event = unsafe { CStr::from_ptr(event) }.to_str().unwrap_or("");
    let key = RedisString::string_as_slice(key);
    let class = NotifyEvent::from_bits_truncate(class);
    let context = Context::new(ctx);
    let db = event_db(ctx, event, key, selected_db(&context));
    on_keyspace_event(&context, class, event, key, db);
    crate::client_db::after_notification(ctx, class, event, key, db);
    raw::REDISMODULE_OK as c_int
}

/// The database of a notification: the selected one unless `notified_db` knows better.
fn event_db(ctx: *mut raw::RedisModuleCtx, event: &str, key: &[u8], selected: i32) -> i32 {
    match notified_db::locate(event, key, selected) {
        Located::Selected => selected,
        Located::Db(db) => db,
        Located::Holding(value) => db_holding(ctx, key, value, selected).unwrap_or(selected),
    }
}

/// The database, other than `skip`, where `key` holds the entry `value`: database by
/// database (a rare case: a `MOVE` whose target the context does not say), the context's
/// database selected again after.
fn db_holding(
    ctx: *mut raw::RedisModuleCtx,
    key: &[u8],
    value: *const c_void,
    skip: i32,
) -> Option<i32> {
    let name = RedisString::create_from_slice(ctx, key);
    let holds = || {
        KeyHandle::peek(ctx, name.inner).is_some_and(|handle| {
            matches!(handle.entry(), Ok(Some(e)) if ptr::eq(ptr::from_ref(e).cast(), value))
        })
    };
    (0..)
        .filter(|&db| db != skip)
        .map(|db| (db, in_db(ctx, db, holds)))
        .take_while(|(_, found)| found.is_some())
        .find_map(|(db, found)| (found == Some(true)).then_some(db))
}

/// Runs `f` with `db` selected on the context, then selects the context's database again;
/// `None` when there is no such database.
fn in_db<T>(ctx: *mut raw::RedisModuleCtx, db: i32, f: impl FnOnce() -> T) -> Option<T> {
    // SAFETY: ctx is the live context of the current notification.
    unsafe {
        let (Some(selected), Some(select)) =
            (raw::RedisModule_GetSelectedDb, raw::RedisModule_SelectDb)
        else {
            return None;
        };
        let original = selected(ctx);
        if original == db {
            return Some(f());
        }
        if select(ctx, db) != raw::REDISMODULE_OK as c_int {
            return None;
        }
        let out = f();
        select(ctx, original);
        Some(out)
    }
}

/// Subscribes to the server events that change many keys at once. Returns whether the
/// server has the `REPL_ASYNC_LOAD` event (Redis 7.0+, Valkey), which lets the index follow a
/// `repl-diskless-load swapdb` load (see `load_phase`): only then may the module declare that
/// it handles one.
pub fn subscribe_server_events(ctx: &Context) -> Result<bool, String> {
    let events: [(u64, raw::RedisModuleEventCallback); 4] = [
        (raw::REDISMODULE_EVENT_FLUSHDB, Some(on_flush)),
        (raw::REDISMODULE_EVENT_SWAPDB, Some(on_swapdb)),
        (raw::REDISMODULE_EVENT_LOADING, Some(on_loading)),
        (
            raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
            Some(on_role_changed),
        ),
    ];
    for (id, callback) in events {
        if !subscribe(ctx, id, callback) {
            return Err(format!("cannot subscribe to server event {id}"));
        }
    }
    Ok(subscribe(
        ctx,
        raw::REDISMODULE_EVENT_REPL_ASYNC_LOAD,
        Some(on_async_load),
    ))
}

/// Subscribes `callback` to server event `id`; false when the server does not have it.
fn subscribe(ctx: &Context, id: u64, callback: raw::RedisModuleEventCallback) -> bool {
    let event = raw::RedisModuleEvent { id, dataver: 1 };
    // SAFETY: called from OnLoad with its context.
    let status = unsafe {
        raw::RedisModule_SubscribeToServerEvent.map_or(1, |f| f(ctx.get_raw(), event, callback))
    };
    status == raw::REDISMODULE_OK as i32
}

unsafe extern "C" fn on_flush(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_FLUSHDB_START {
        return;
    }
    let Some(info) = data.cast::<raw::RedisModuleFlushInfo>().as_ref() else {
        return;
    };
    let db = (info.dbnum >= 0).then_some(info.dbnum);
    apply(Change::Flushed { db }, Announce::Yes);
}

/// A server that becomes a primary announces it with a `promoted` flush event: writes the
/// old primary acknowledged but had not replicated are lost, so readers drop what they
/// cached.
unsafe extern "C" fn on_role_changed(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    match subevent {
        raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER => {
            role::set_replica(false);
            apply(Change::Promoted, Announce::Yes);
            // Removals queued by replicated tag invalidations are this server's job now.
            removal::schedule(ctx);
        }
        raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_REPLICA => role::set_replica(true),
        _ => {}
    }
}

unsafe extern "C" fn on_swapdb(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    let Some(info) = data.cast::<raw::RedisModuleSwapDbInfo>().as_ref() else {
        return;
    };
    let (a, b) = (info.dbnum_first, info.dbnum_second);
    apply(Change::Swapped { a, b }, Announce::Yes);
}

unsafe extern "C" fn on_loading(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    let event = match subevent {
        raw::REDISMODULE_SUBEVENT_LOADING_RDB_START
        | raw::REDISMODULE_SUBEVENT_LOADING_AOF_START
        | raw::REDISMODULE_SUBEVENT_LOADING_REPL_START => LoadEvent::Started,
        raw::REDISMODULE_SUBEVENT_LOADING_ENDED | raw::REDISMODULE_SUBEVENT_LOADING_FAILED => {
            LoadEvent::Ended
        }
        _ => return,
    };
    on_load_event(ctx, event);
}

/// `repl-diskless-load swapdb`: a full sync loads into temporary databases and swaps them in
/// at the end (see `load_phase`).
unsafe extern "C" fn on_async_load(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    let event = match subevent {
        raw::REDISMODULE_SUBEVENT_REPL_ASYNC_LOAD_STARTED => LoadEvent::TempStarted,
        raw::REDISMODULE_SUBEVENT_REPL_ASYNC_LOAD_COMPLETED => LoadEvent::TempCompleted,
        raw::REDISMODULE_SUBEVENT_REPL_ASYNC_LOAD_ABORTED => LoadEvent::TempAborted,
        _ => return,
    };
    on_load_event(ctx, event);
}

/// The load in progress; only the server events above change it.
static LOAD_PHASE: Mutex<LoadPhase> = Mutex::new(LoadPhase::Idle);

fn on_load_event(ctx: *mut raw::RedisModuleCtx, event: LoadEvent) {
    let action = {
        let mut phase = LOAD_PHASE.lock().unwrap_or_else(|p| p.into_inner());
        let (next, action) = phase.on(event);
        *phase = next;
        action
    };
    match action {
        LoadAction::None => {}
        LoadAction::BeginLive => begin_live_load(),
        LoadAction::FinishLive => finish_live_load(ctx),
        LoadAction::Replace => {
            // The old entries are freed after this (data type `free` only): they never
            // reach the new index.
            begin_live_load();
            finish_live_load(ctx);
        }
    }
}

/// Nothing is announced from here to the end of the load; the index starts empty and
/// loaded entries are indexed as they arrive (`datatype::rdb_load`).
fn begin_live_load() {
    set_loading(true);
    apply(Change::LoadStarted, Announce::No);
}

/// The index is rebuilt from the keyspace and one `loaded` change tells every reader to drop
/// what it holds.
fn finish_live_load(ctx: *mut raw::RedisModuleCtx) {
    rebuild_index(ctx);
    set_loading(false);
    apply(Change::Loaded, Announce::Yes);
    removal::schedule(ctx);
}

/// Rebuilds the index from the keyspace: every database, every key of our type. Entries
/// logically deleted by tag invalidations replayed during the load (HC.DELTAG in the AOF),
/// or saved as deleted, are queued for removal.
fn rebuild_index(ctx: *mut raw::RedisModuleCtx) {
    let replayed = with_state(|s| std::mem::take(&mut s.index));
    crate::scan::for_each_entry(&Context::new(ctx), &mut |db, name, entry| {
        if replayed.dooms(db, entry.tags(), entry.version) {
            entry.mark_dead();
        }
        let arrived = Change::Arrived {
            db,
            key: name,
            entry,
            version: entry.version,
            renumbered: false,
            gone: entry.is_dead(),
        };
        apply(arrived, Announce::No);
    });
}
