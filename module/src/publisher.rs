//! Publishing invalidation events on the configured channel.

use crate::config::CHANNEL;
use crate::role;
use crate::state::{is_loading, with_state};
use hybridcache_protocol::{Change, Op};
use redis_module::{raw, Context};
use std::sync::atomic::{AtomicPtr, Ordering};

/// A context that outlives any command, for publishing from type callbacks (which get
/// none). Redis 7.0's `PublishMessage` does not depend on the context's client.
static PUBLISH_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// Creates the publishing context; called once at load.
pub fn init(ctx: &Context) {
    // SAFETY: ctx is the module's load context.
    let detached = unsafe {
        raw::RedisModule_GetDetachedThreadSafeContext
            .map_or(std::ptr::null_mut(), |f| f(ctx.get_raw()))
    };
    PUBLISH_CTX.store(detached, Ordering::Relaxed);
}

/// Publishes one event for a change that has just been made. Nothing is published while
/// a dataset loads; the load ends with one "loaded" event instead. A replica in a cluster
/// publishes nothing (see [`role`]).
pub fn publish(db: Option<i32>, op: Op, change: Change) {
    if is_loading() || !role::publishes() {
        return;
    }
    let seq = with_state(|s| s.sequencer.allocate());
    publish_numbered(seq, db, op, change);
}

/// Publishes an event under a number taken earlier with `Sequencer::allocate`.
pub fn publish_numbered(seq: u64, db: Option<i32>, op: Op, change: Change) {
    if is_loading() || !role::publishes() {
        return;
    }
    let db = db.and_then(|d| u32::try_from(d).ok());
    let payload = with_state(|s| s.sequencer.event(seq, db, op, change)).encode();
    let channel = CHANNEL.get();
    let ctx = PUBLISH_CTX.load(Ordering::Relaxed);
    // SAFETY: strings are created without automatic memory management and freed here;
    // the API functions exist on every Redis this module loads on (7.0+).
    unsafe {
        let (Some(create), Some(publish), Some(free)) = (
            raw::RedisModule_CreateString,
            raw::RedisModule_PublishMessage,
            raw::RedisModule_FreeString,
        ) else {
            return;
        };
        let channel = create(ctx, channel.as_ptr().cast(), channel.len());
        let message = create(ctx, payload.as_ptr().cast(), payload.len());
        publish(ctx, channel, message);
        free(ctx, channel);
        free(ctx, message);
    }
}
