//! Physical removal of logically deleted entries, a little at a time, on a timer, so that
//! an HC.DELTAG of a million keys never stalls the event loop.
//!
//! Only a primary removes keys, and replicates each removal as `DEL`; a replica keeps its
//! queue (HC.DELTAG reached it too) and starts on it if it is promoted.

use crate::key_handle::KeyHandle;
use crate::state::{is_gone, is_loading, note_tombstones, with_state};
use redis_module::{raw, Context, NotifyEvent, RedisString};
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Work per timer run: keys taken at a time, and the time after which a run yields.
const BATCH: usize = 256;
const BUDGET: Duration = Duration::from_millis(2);
/// Wait between runs while there is work, and while this server is a replica or loading.
const BUSY_PERIOD_MS: i64 = 1;
const IDLE_PERIOD_MS: i64 = 100;

static ARMED: AtomicBool = AtomicBool::new(false);

/// The key whose `del` notification the timer is sending, while it sends it.
static ANNOUNCING: Mutex<Option<(i32, Vec<u8>)>> = Mutex::new(None);

fn announcing() -> MutexGuard<'static, Option<(i32, Vec<u8>)>> {
    ANNOUNCING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether this keyspace notification is the timer's own `del` of a key HC.DELTAG had
/// logically deleted: a change made at the tag removal, not now (anything else delivered
/// meanwhile, such as another module's reaction to it, is a change as usual).
pub fn is_announcing_removal(event: &str, db: i32, key: &[u8]) -> bool {
    event == "del"
        && announcing()
            .as_ref()
            .is_some_and(|(d, k)| *d == db && k.as_slice() == key)
}

/// Makes sure a removal run is scheduled if anything is queued.
pub fn schedule(ctx: *mut raw::RedisModuleCtx) {
    if with_state(|s| s.index.pending_removals()) == 0 {
        return;
    }
    arm(ctx, BUSY_PERIOD_MS);
}

fn arm(ctx: *mut raw::RedisModuleCtx, period_ms: i64) {
    if ARMED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: ctx is a live context of the current callback.
    let created = unsafe {
        raw::RedisModule_CreateTimer
            .map(|create| create(ctx, period_ms, Some(run), ptr::null_mut()))
    };
    if created.is_none() {
        ARMED.store(false, Ordering::Release);
    }
}

unsafe extern "C" fn run(ctx: *mut raw::RedisModuleCtx, _data: *mut c_void) {
    ARMED.store(false, Ordering::Release);
    if with_state(|s| s.index.pending_removals()) == 0 {
        with_state(|s| {
            s.index.settle();
            note_tombstones(s);
        });
        return;
    }
    let flags = raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx));
    let primary = flags & raw::REDISMODULE_CTX_FLAGS_MASTER as c_int != 0;
    if !primary || is_loading() {
        if !is_loading() {
            // A replica removes nothing itself (its primary's DELs empty its sets), but it
            // drops the tombstones and emptied sets no longer needed.
            with_state(|s| {
                s.index.settle();
                note_tombstones(s);
            });
        }
        arm(ctx, IDLE_PERIOD_MS);
        return;
    }
    remove_some(ctx);
    arm(ctx, BUSY_PERIOD_MS);
}

/// Removes queued keys until the queue is empty or the time budget is spent.
fn remove_some(ctx: *mut raw::RedisModuleCtx) {
    let started = Instant::now();
    let context = Context::new(ctx);
    while started.elapsed() < BUDGET {
        let batch = with_state(|s| s.index.take_removals(BATCH));
        if batch.is_empty() {
            break;
        }
        for (db, key) in batch {
            remove_if_gone(&context, db, &key);
        }
        with_state(|s| {
            s.index.settle();
            note_tombstones(s);
        });
    }
}

/// Deletes `key` in `db` if it still holds a logically deleted entry (it may have been
/// written again since), replicating the deletion.
fn remove_if_gone(ctx: &Context, db: i32, key: &[u8]) {
    // SAFETY: the timer's context; selecting a database only affects it.
    let selected = unsafe { raw::RedisModule_SelectDb.map_or(1, |f| f(ctx.get_raw(), db)) };
    if selected != raw::REDISMODULE_OK as c_int {
        return;
    }
    let name = RedisString::create_from_slice(ctx.get_raw(), key);
    let Some(mut handle) = KeyHandle::open(ctx.get_raw(), name.inner, true) else {
        return;
    };
    let doomed = matches!(handle.entry(), Ok(Some(entry)) if is_gone(db, entry));
    if !doomed {
        return;
    }
    // Its data type callback reports the removal of a logically deleted entry, which
    // HC.DELTAG announced already.
    let deleted = handle.delete();
    drop(handle);
    if deleted {
        // unlink2 has told the fill leases what this removal changes; the notification
        // must not count as a change of its own (see `is_announcing_removal`).
        *announcing() = Some((db, key.to_vec()));
        ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", &name);
        *announcing() = None;
        ctx.replicate("DEL", &[&name]);
    }
}
