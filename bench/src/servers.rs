//! The servers a run starts (through the test harness), the subscribers that listen on them
//! as in production, and reading their memory.

use hybridcache_protocol::decode_message;
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

/// How a subscriber reads a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The module's invalidation messages: each is decoded with the protocol crate (as a
    /// client does) and its changes counted.
    Events,
    /// The Lua baseline's messages: one key, so one change, per message.
    OneChangeEach,
}

/// What the subscribers of one [`Listeners`] have read so far, all together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub messages: u64,
    pub changes: u64,
    /// Messages that did not decode as invalidation events (must stay 0).
    pub undecodable: u64,
}

#[derive(Debug, Default)]
struct Counts {
    messages: AtomicU64,
    changes: AtomicU64,
    undecodable: AtomicU64,
}

/// Subscribers on one channel that read every message on their own threads until dropped,
/// counting messages and the changes they carry.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    count: usize,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// `count` confirmed subscriptions on `channel` of `server`.
    pub fn start(server: &RedisServer, channel: &str, count: usize, reading: Reading) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let threads = (0..count)
            .map(|i| {
                let subscriber = Subscriber::on_channel(server, channel);
                let (stop, counts) = (stop.clone(), counts.clone());
                std::thread::Builder::new()
                    .name(format!("listener-{}-{i}", server.port()))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            if let Some(payload) =
                                subscriber.next_payload(Duration::from_millis(50))
                            {
                                counts.record(&payload, reading);
                            }
                        }
                        drop(subscriber);
                    })
                    .unwrap_or_else(|e| panic!("cannot spawn a listener thread: {e}"))
            })
            .collect();
        Self {
            stop,
            counts,
            count,
            threads,
        }
    }

    /// Subscribers listening.
    pub fn count(&self) -> usize {
        self.count
    }

    /// What they have read so far.
    pub fn received(&self) -> Received {
        // Messages first (acquire): a message counted has its changes counted.
        let messages = self.counts.messages.load(Ordering::Acquire);
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Received {
            messages,
            changes: read(&self.counts.changes),
            undecodable: read(&self.counts.undecodable),
        }
    }

    /// Waits until the subscribers have read everything sent before (their counts stop moving
    /// for 200 ms; at most 30 s): a count taken after this is not swelled by earlier writes
    /// (the fill before the reads) still on their way.
    pub fn settle(&self) -> Received {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.received();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.received();
            if now == last || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    /// Waits until every subscriber has read `messages` more messages than `since` showed
    /// (each subscriber receives every message); what they read by then.
    ///
    /// # Panics
    /// When that takes longer than `timeout`.
    pub fn wait_for(&self, since: Received, messages: u64, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        let want = since.messages + messages * self.count as u64;
        loop {
            let now = self.received();
            if now.messages >= want {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the subscribers read {} of {} messages within {timeout:?}",
                now.messages - since.messages,
                want - since.messages
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Counts {
    fn record(&self, payload: &[u8], reading: Reading) {
        let changes = match reading {
            Reading::OneChangeEach => 1,
            Reading::Events => match decode_message(payload) {
                Ok(changes) => changes.len() as u64,
                Err(_) => {
                    self.undecodable.fetch_add(1, Ordering::Relaxed);
                    0
                }
            },
        };
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Release);
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

/// The module setting of the event log's length, in changes.
pub const EVENT_LOG_CHANGES: &str = "hybridcache.event-log-changes";

/// The module's event log switched off (`hybridcache.event-log-changes 0`) while this lives,
/// its previous length restored when dropped. The log keeps the server's recent changes,
/// bounded whatever the data, and counts in used_memory: not memory per entry.
pub struct EventLogOff {
    con: redis::Connection,
    previous: String,
}

impl EventLogOff {
    pub fn new(server: &RedisServer) -> Self {
        let mut con = server.connection();
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(EVENT_LOG_CHANGES)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("CONFIG GET {EVENT_LOG_CHANGES} failed: {e}"));
        let previous = match reply.as_slice() {
            [_, value] => value.clone(),
            _ => panic!("CONFIG GET {EVENT_LOG_CHANGES} replied {reply:?}"),
        };
        config_set(&mut con, "0")
            .unwrap_or_else(|e| panic!("CONFIG SET {EVENT_LOG_CHANGES} 0 failed: {e}"));
        Self { con, previous }
    }

    /// The setting it had before.
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for EventLogOff {
    fn drop(&mut self) {
        if let Err(e) = config_set(&mut self.con, &self.previous) {
            say!(
                "could not restore {EVENT_LOG_CHANGES} {}: {e}",
                self.previous
            );
        }
    }
}

fn config_set(con: &mut redis::Connection, changes: &str) -> redis::RedisResult<()> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(EVENT_LOG_CHANGES)
        .arg(changes)
        .query(con)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_protocol::{MessageWriter, Names, Op};

    #[test]
    fn listeners_count_the_changes_of_each_message() {
        let counts = Counts::default();
        let mut writer = MessageWriter::new("0123456789abcdef");
        for seq in 1..=3 {
            writer.push(seq, Some(0), Op::Set, Names::Keys([&b"k"[..]]));
        }
        counts.record(&writer.take(), Reading::Events);
        counts.record(b"not an event", Reading::Events);
        counts.record(b"k:000000000001", Reading::OneChangeEach);
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (
                read(&counts.messages),
                read(&counts.changes),
                read(&counts.undecodable)
            ),
            (3, 4, 1)
        );
    }
}
