//! The one harness of hybridcache's end-to-end tests and benchmarks.
//!
//! - [`RedisServer`]: a real `redis-server` with the module loaded, on a free loopback
//!   port, in a temporary directory; restartable, replicable, killed on drop.
//! - [`RedisCluster`]: a Redis Cluster of such servers, with failover and slot migration.
//! - [`Subscriber`]: a confirmed subscription on the invalidation channel that decodes
//!   events with the protocol crate.
//! - [`HcInfo`]: the module's `INFO` section; [`hc`]: typed helpers for the commands.
//! - [`resp`]: a raw RESP2 client, for tests that send any bytes and judge every reply byte.
//! - [`module_path()`]: which module library is loaded (`$HYBRIDCACHE_MODULE` or the
//!   build output).
//!
//! Nothing here uses a Redis on 6379 or any other server the harness did not start.

pub mod client_support;
pub mod cluster;
pub mod event_stream;
pub mod hc;
pub mod index_check;
pub mod info;
pub mod module_path;
pub mod ports;
pub mod race_support;
pub mod resp;
pub mod server;
pub mod subscriber;
pub mod wait;

pub use cluster::{key_slot, ClusterBuilder, RedisCluster};
pub use info::HcInfo;
pub use module_path::module_path;
pub use server::{RedisServer, ServerBuilder, Shutdown};
pub use subscriber::{Subscriber, EVENT_TIMEOUT, QUIET_PERIOD};
pub use wait::{wait_for, wait_until};

#[cfg(test)]
mod tests {
    #[test]
    fn the_module_path_names_the_module_library() {
        let name = super::module_path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        assert_eq!(name.as_deref(), Some("libhybridcache_module.so"));
    }
}
