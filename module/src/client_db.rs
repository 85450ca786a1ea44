//! Giving a client its database back after `MOVE` and `COPY … DB n` on servers that run
//! keyspace-notification callbacks on the client executing the command.
//!
//! Valkey 8.1 runs a module's notification callback with the executing client as the
//! context's client and selects the event's database on it, without selecting the old one
//! afterwards (valkey-io/valkey#4024 fixed it later). `MOVE` notifies `move_to` in the
//! target database and `COPY … DB n` notifies `copy_to` there: with any module subscribed
//! to generic events, the client is left in the target database, and its next commands,
//! even those later in the same `MULTI` or script, run there. Redis uses a temporary
//! client, whose database nobody sees. Valkey 9.1 runs the callback on the executing client
//! too and leaves it in its database (so this changes nothing there), but inside
//! `MULTI`/`EXEC` it does not select the event's database at all: `notified_db` finds that.
//!
//! The behaviour is detected, not the version: the first notification that can only come
//! from a command (not an expiry or an eviction) tells whether the callback's client is
//! executing a command (`GetCurrentCommandName` is set then). Where it is not, the filter
//! below is removed and nothing more is done. Where it is:
//! - `move_to` selects the database `move_from` was notified in (`notified_db` keeps it);
//! - `copy_to` selects the database the copy was sent from, which a command filter noted
//!   before the command ran (`copy_sources`). A `COPY` called from a script is not seen with
//!   its client's database (a script's client is not a connection), so there the script's
//!   later calls still run in the target database.

use crate::copy_sources::{CopySources, Sender};
use crate::filter_slot::{FilterArgs, FilterSlot};
use redis_module::{raw, NotifyEvent};
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

const UNKNOWN: u8 = 0;
const SWITCHES: u8 = 1;
const KEEPS: u8 = 2;

/// What this server does to the client's database during a notification.
static BEHAVIOUR: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The filter noting where copies come from.
static FILTER: FilterSlot = FilterSlot::new();

static COPIES: Mutex<CopySources> = Mutex::new(CopySources::new());

/// What was found, for INFO: `unknown` until a notification of a command came,
/// `restored` where the server switches the client's database (this module selects it
/// back), `kept` where it does not.
pub fn behaviour() -> &'static str {
    match BEHAVIOUR.load(Ordering::Relaxed) {
        SWITCHES => "restored",
        KEEPS => "kept",
        _ => "unknown",
    }
}

/// Registers the copy filter where the server has what detection and restoring need; a
/// server without them (Redis 7.0) keeps the database as Redis always did.
pub fn init(ctx: *mut raw::RedisModuleCtx) {
    // SAFETY: the API table was filled in at load; only function pointers are read.
    let complete = unsafe {
        present(raw::RedisModule_CommandFilterGetClientId)
            && present(raw::RedisModule_GetClientInfoById)
            && present(raw::RedisModule_GetCurrentCommandName)
            && present(raw::RedisModule_GetClientId)
            && present(raw::RedisModule_SelectDb)
            && present(raw::RedisModule_RegisterCommandFilter)
    };
    if !complete {
        BEHAVIOUR.store(KEEPS, Ordering::Relaxed);
        return;
    }
    FILTER.register(ctx, note_copy);
}

/// An API function pointer, read by copy.
fn present<F>(function: Option<F>) -> bool {
    function.is_some()
}

/// Called after this module handled a keyspace notification, with the context it got.
pub fn after_notification(
    ctx: *mut raw::RedisModuleCtx,
    class: NotifyEvent,
    event: &str,
    key: &[u8],
    db: i32,
) {
    match BEHAVIOUR.load(Ordering::Relaxed) {
        KEEPS => return,
        UNKNOWN => {
            // Expiry and eviction also happen outside commands: they do not tell.
            if class.intersects(NotifyEvent::EXPIRED | NotifyEvent::EVICTED) {
                return;
            }
            if !runs_on_executing_client(ctx) {
                BEHAVIOUR.store(KEEPS, Ordering::Relaxed);
                FILTER.unregister(ctx);
                return;
            }
            BEHAVIOUR.store(SWITCHES, Ordering::Relaxed);
        }
        _ => {}
    }
    let client = client_id(ctx);
    match event {
        "move_to" => {
            if let Some(from_db) = crate::notified_db::move_source() {
                select(ctx, from_db);
            }
        }
        "copy_to" => {
            let from = COPIES.lock().ok().and_then(|mut c| c.take(client, db, key));
            if let Some(from_db) = from {
                select(ctx, from_db);
            }
        }
        _ => {}
    }
}

fn runs_on_executing_client(ctx: *mut raw::RedisModuleCtx) -> bool {
    // SAFETY: ctx is the notification's context.
    unsafe { raw::RedisModule_GetCurrentCommandName.is_some_and(|name| !name(ctx).is_null()) }
}

fn client_id(ctx: *mut raw::RedisModuleCtx) -> u64 {
    // SAFETY: ctx is the notification's context.
    unsafe { raw::RedisModule_GetClientId.map_or(0, |id| id(ctx)) }
}

fn select(ctx: *mut raw::RedisModuleCtx, db: i32) {
    // SAFETY: ctx is the notification's context; its client is the executing client.
    unsafe {
        if let Some(select) = raw::RedisModule_SelectDb {
            select(ctx, db);
        }
    }
}

/// The command filter: every command passes here before it runs or is queued. Only the
/// few names `copy_sources` cares about go further than a length check.
unsafe extern "C" fn note_copy(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    let Some(args) = FilterArgs::new(fctx) else {
        return;
    };
    let Some(name) = args.get(0) else {
        return;
    };
    if !matches!(name.len(), 4..=7) || !is_noted(name) {
        return;
    }
    let Some(sender) = sender(fctx) else {
        return;
    };
    let args: Vec<&[u8]> = (0..args.len().min(8))
        .filter_map(|pos| args.get(pos))
        .collect();
    if let Ok(mut copies) = COPIES.lock() {
        copies.command(sender, &args);
    }
}

fn is_noted(name: &[u8]) -> bool {
    ["copy", "select", "multi", "exec", "discard"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// The client sending the filtered command, if it is a connection.
unsafe fn sender(fctx: *mut raw::RedisModuleCommandFilterCtx) -> Option<Sender> {
    let client = raw::RedisModule_CommandFilterGetClientId?(fctx);
    let mut info = raw::RedisModuleClientInfo {
        version: 1,
        flags: 0,
        id: 0,
        addr: [0; 46],
        port: 0,
        db: 0,
    };
    let found = raw::RedisModule_GetClientInfoById?(ptr::addr_of_mut!(info).cast(), client);
    if found != raw::REDISMODULE_OK as c_int {
        return None;
    }
    Some(Sender {
        client,
        db: i32::from(info.db),
        queuing: info.flags & u64::from(raw::REDISMODULE_CLIENTINFO_FLAG_MULTI) != 0,
    })
}
