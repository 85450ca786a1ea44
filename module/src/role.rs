//! This server's role, as far as publishing is concerned.
//!
//! In Redis Cluster, `PublishMessage` sends every message to every node over the cluster
//! bus. A replica re-running a replicated write would then announce it a second time, to
//! every subscriber of the cluster, under its own origin; so in a cluster only primaries
//! publish (their events reach subscribers on every node, replicas included). Outside a
//! cluster a replica's messages reach only its own subscribers, so it publishes as before.
//!
//! The role changes are followed by `keyspace.rs` with the other server events (a server
//! that becomes a primary announces it there).

use redis_module::{raw, Context};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

static CLUSTER: AtomicBool = AtomicBool::new(false);
static REPLICA: AtomicBool = AtomicBool::new(false);

/// Reads the role at load.
pub fn init(ctx: &Context) {
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
}

/// Records a change of role (from the replication role server event).
pub fn set_replica(replica: bool) {
    REPLICA.store(replica, Ordering::Relaxed);
}

/// Whether this server runs in a cluster.
pub fn is_cluster() -> bool {
    CLUSTER.load(Ordering::Relaxed)
}

/// Whether events go on shard channels: in a cluster, unless `hybridcache.sharded-events`
/// is off.
pub fn publishes_sharded() -> bool {
    is_cluster() && crate::config::SHARDED_EVENTS.load(Ordering::Relaxed)
}

/// Whether this server publishes events now: always, except as a replica in a cluster.
pub fn publishes() -> bool {
    !(CLUSTER.load(Ordering::Relaxed) && REPLICA.load(Ordering::Relaxed))
}
