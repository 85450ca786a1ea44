//! A command filter for the one change no notification shows: `DEL`/`UNLINK` of a key that
//! does not exist. Redis sends nothing for it, yet it is how a service that invalidates
//! with raw commands says "this key's source changed": a fill read before it must be
//! refused. The filter sees every command before it runs and, for these two, reports each
//! key as changed in every database (a filter is not told the client's database; ending a
//! lease too many only refuses a fill).
//!
//! A filter costs every command of the server a call, so it is registered only while fill
//! leases exist: before the first lease is given, and removed by a timer once the table
//! has stayed empty for a second.

use crate::changes::{Announce, Change};
use crate::filter_slot::{FilterArgs, FilterSlot};
use crate::publisher::apply;
use crate::state::with_state;
use redis_module::raw;
use std::os::raw::c_void;
use std::ptr;

static FILTER: FilterSlot = FilterSlot::new();

/// How often the timer looks whether the filter is still needed.
const IDLE_CHECK_MS: i64 = 1000;

/// Registers the filter if it is not; called before a lease is given. A failure leaves
/// the lease without the filter's help (a `DEL` of a missing key then does not end it).
pub(crate) fn ensure_registered(ctx: *mut raw::RedisModuleCtx) {
    if FILTER.is_registered() {
        return;
    }
    if FILTER.register(ctx, filter) {
        arm_idle_check(ctx);
    }
}

fn arm_idle_check(ctx: *mut raw::RedisModuleCtx) {
    // SAFETY: ctx is a live context of this module (a command's or the timer's).
    unsafe {
        if let Some(create) = raw::RedisModule_CreateTimer {
            create(ctx, IDLE_CHECK_MS, Some(idle_check), ptr::null_mut());
        }
    }
}

unsafe extern "C" fn idle_check(ctx: *mut raw::RedisModuleCtx, _data: *mut c_void) {
    if !FILTER.is_registered() {
        return;
    }
    if !with_state(|s| s.fills.is_empty()) {
        arm_idle_check(ctx);
        return;
    }
    FILTER.unregister(ctx);
}

unsafe extern "C" fn filter(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    let Some(args) = FilterArgs::new(fctx) else {
        return;
    };
    let Some(name) = args.get(0) else {
        return;
    };
    if args.len() < 2
        || !(name.eq_ignore_ascii_case(b"del") || name.eq_ignore_ascii_case(b"unlink"))
    {
        return;
    }
    for key in (1..args.len()).filter_map(|pos| args.get(pos)) {
        apply(Change::TouchedInEveryDb { key }, Announce::No);
    }
}
