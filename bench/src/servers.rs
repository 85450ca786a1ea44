//! The servers a run starts (through the test harness), the subscribers that listen on them
//! as in production, and reading their memory.

use hybridcache_tests::info::info_i64;
use hybridcache_tests::{RedisServer, Subscriber};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Channel the Lua baseline publishes its invalidations on.
pub const LUA_CHANNEL: &str = "lua:invalidations";

/// Settings of every benchmark server besides the harness defaults: subscribers that fall
/// behind during a flood are not disconnected (their backlog is waited for before memory is
/// read), and nothing is persisted (the harness sets `save ""` and `appendonly no`).
const SERVER_ARGS: [&str; 2] = ["--client-output-buffer-limit", "pubsub 0 0 0"];

/// A redis-server with the module at `module` (copied at the start of the run, so that a
/// rebuild during the run does not mix versions).
pub fn with_module(module: &Path) -> RedisServer {
    RedisServer::builder()
        .module_path(module)
        .args(SERVER_ARGS)
        .start()
}

/// A plain redis-server, for the baselines.
pub fn plain() -> RedisServer {
    RedisServer::builder()
        .without_module()
        .args(SERVER_ARGS)
        .start()
}

/// Subscribers on one channel that read (and drop) every message on their own threads
/// until dropped.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// `count` confirmed subscriptions on `channel` of `server`.
    pub fn start(server: &RedisServer, channel: &str, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let threads = (0..count)
            .map(|i| {
                let subscriber = Subscriber::on_channel(server, channel);
                let (stop, received) = (stop.clone(), received.clone());
                std::thread::Builder::new()
                    .name(format!("listener-{}-{i}", server.port()))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            if subscriber.next_payload(Duration::from_millis(50)).is_some() {
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        drop(subscriber);
                    })
                    .unwrap_or_else(|e| panic!("cannot spawn a listener thread: {e}"))
            })
            .collect();
        Self {
            stop,
            received,
            threads,
        }
    }

    /// Messages received so far, all subscribers together.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `INFO memory` `used_memory`.
pub fn used_memory(con: &mut redis::Connection) -> i64 {
    info_i64(con, "memory", "used_memory")
}

/// Waits until no client has output pending (subscribers have read every message), so that
/// used_memory holds data only.
///
/// # Panics
/// When that takes longer than `timeout`.
pub fn wait_drained(con: &mut redis::Connection, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(con)
            .unwrap_or_else(|e| panic!("CLIENT LIST failed: {e}"));
        let pending = list
            .lines()
            .flat_map(str::split_whitespace)
            .filter_map(|field| field.strip_prefix("omem="))
            .any(|omem| omem != "0");
        if !pending {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "client output still pending after {timeout:?}:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for subscribers to catch up, then returns used_memory.
pub fn settled_memory(con: &mut redis::Connection) -> i64 {
    wait_drained(con, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(50));
    used_memory(con)
}

/// `FLUSHALL` (synchronous).
pub fn flushall(con: &mut redis::Connection) {
    redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query::<()>(con)
        .unwrap_or_else(|e| panic!("FLUSHALL failed: {e}"));
}

/// `DBSIZE`.
pub fn dbsize(con: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE")
        .query(con)
        .unwrap_or_else(|e| panic!("DBSIZE failed: {e}"))
}

/// The server's `redis_version`.
pub fn redis_version(server: &RedisServer) -> String {
    server
        .info("server")
        .get("redis_version")
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}
