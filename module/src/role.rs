//! This server's role, as far as publishing is concerned.
//!
//! In Redis Cluster, `PublishMessage` sends every message to every node over the cluster
//! bus. A replica re-running a replicated write would then announce it a second time, to
//! every subscriber of the cluster, under its own origin; so in a cluster only primaries
//! publish (their events reach subscribers on every node, replicas included). Outside a
//! cluster a replica's messages reach only its own subscribers, so it publishes as before.
//!
//! When a server becomes a primary it announces it with a `promoted` flush event: writes
//! the old primary acknowledged but had not replicated are lost, so readers drop what they
//! cached.

use crate::fills::KeyspaceChange;
use crate::publisher::publish;
use crate::removal;
use crate::state::record_change;
use hybridcache_protocol::{Change, Op};
use redis_module::{raw, Context};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

static CLUSTER: AtomicBool = AtomicBool::new(false);
static REPLICA: AtomicBool = AtomicBool::new(false);

/// Reads the role at load, and follows its changes.
pub fn init(ctx: &Context) -> Result<(), String> {
    // SAFETY: ctx is the module's load context.
    let flags = unsafe { raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.get_raw())) };
    CLUSTER.store(
        flags & raw::REDISMODULE_CTX_FLAGS_CLUSTER as c_int != 0,
        Ordering::Relaxed,
    );
    REPLICA.store(
        flags & raw::REDISMODULE_CTX_FLAGS_SLAVE as c_int != 0,
        Ordering::Relaxed,
    );
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
        dataver: 1,
    };
    // SAFETY: called from OnLoad with its context.
    let status = unsafe {
        raw::RedisModule_SubscribeToServerEvent
            .map_or(1, |f| f(ctx.get_raw(), event, Some(on_role_changed)))
    };
    if status != raw::REDISMODULE_OK as i32 {
        return Err("cannot subscribe to replication role changes".into());
    }
    Ok(())
}

/// Whether this server publishes events now: always, except as a replica in a cluster.
pub fn publishes() -> bool {
    !(CLUSTER.load(Ordering::Relaxed) && REPLICA.load(Ordering::Relaxed))
}

unsafe extern "C" fn on_role_changed(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    match subevent {
        raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER => {
            REPLICA.store(false, Ordering::Relaxed);
            record_change(KeyspaceChange::HistoryReset);
            publish(None, Op::Promoted, Change::Flush);
            // Removals queued by replicated tag invalidations are this server's job now.
            removal::schedule(ctx);
        }
        raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_REPLICA => {
            REPLICA.store(true, Ordering::Relaxed);
        }
        _ => {}
    }
}
