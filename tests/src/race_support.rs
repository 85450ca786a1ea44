//! Shared pieces of the fill-race suites (`fill_races`, `fill_races_cluster`,
//! `fill_stress`): a model of the database the factories read, a gate that holds a
//! factory between its read and its return, and a checker that reads keys through every
//! handle and a raw `HC.GET` and reports every value the database no longer holds.
//!
//! Values are version numbers (`u64`), unique across the whole [`Database`], so a value
//! read from anywhere names the write it came from: it is stale exactly when it differs
//! from the database's current value. A miss is never stale.

use crate::cluster::RedisCluster;
use crate::hc::hc_get_str;
use hybridcache::{EntryOptions, HybridCache};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long after a race (or after quiescence) every handle and Redis must have settled:
/// the delivery bound of these suites.
pub const SETTLE: Duration = Duration::from_millis(1500);

/// Interval between two polls of [`settle`].
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// How long a gated factory may take to reach its gate before the test gives up.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What instance B does after writing a new version of the key to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `remove(k)`.
    Remove,
    /// `set(k, v2)` (with [`long_lived`] options).
    Set,
    /// `remove_by_tag(t)` for a tag k carries.
    RemoveByTag,
}

impl Change {
    /// Every change.
    pub const ALL: [Change; 3] = [Change::Remove, Change::Set, Change::RemoveByTag];

    /// Writes a new version of `key` to `db`, then changes the cache through `b`: removes
    /// `key`, sets it to the new version (tagged `tag`), or removes `tag`.
    ///
    /// # Panics
    /// When the cache operation fails.
    pub async fn apply(self, b: &HybridCache, db: &Database, key: &str, tag: &str) {
        let v2 = db.write(key);
        match self {
            Change::Remove => {
                b.remove(key).await.expect("B removes k");
            }
            Change::Set => b
                .set(key, v2, long_lived(tag))
                .await
                .expect("B sets k to v2"),
            Change::RemoveByTag => {
                b.remove_by_tag(tag).await.expect("B removes k's tag");
            }
        }
    }

    /// Whether the change leaves the key missing, so that the next fill must produce v2.
    pub fn leaves_a_miss(self) -> bool {
        self != Change::Set
    }
}

/// A minute in Redis and in L1, tagged `tag`: long enough that a stale fill would still be
/// there when a test looks.
pub fn long_lived(tag: &str) -> EntryOptions {
    EntryOptions::new().ttl(Duration::from_secs(60)).tags([tag])
}

/// A model of the source of record: key -> current version. Every write takes a new
/// version from one counter, so versions never repeat across keys or writes.
#[derive(Debug, Default)]
pub struct Database {
    values: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
}

impl Database {
    /// An empty database, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Writes a new version of `key` and returns it.
    pub fn write(&self, key: &str) -> u64 {
        let version = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.lock().insert(key.to_string(), version);
        version
    }

    /// The current version of `key` (as a factory reads it).
    ///
    /// # Panics
    /// When `key` was never written: every test writes its keys first.
    pub fn read(&self, key: &str) -> u64 {
        self.current(key)
            .unwrap_or_else(|| panic!("the model database has no {key:?}"))
    }

    /// The current version of `key`, if it was ever written.
    pub fn current(&self, key: &str) -> Option<u64> {
        self.lock().get(key).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Holds a factory between its read of the database and its return, so a test can change
/// the database and the cache in between: the factory calls [`pass`](Self::pass), the test
/// awaits [`entered`](Self::entered), does its change, then calls
/// [`release`](Self::release).
#[derive(Debug, Default)]
pub struct Gate {
    entered: Notify,
    released: Notify,
}

impl Gate {
    /// A closed gate, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Called by the factory: says it got here, then waits for [`release`](Self::release).
    pub async fn pass(&self) {
        self.entered.notify_one();
        self.released.notified().await;
    }

    /// Waits until the factory reached the gate.
    ///
    /// # Panics
    /// When it does not within [`GATE_TIMEOUT`] (the factory never ran).
    pub async fn entered(&self) {
        tokio::time::timeout(GATE_TIMEOUT, self.entered.notified())
            .await
            .unwrap_or_else(|_| {
                panic!("the factory did not reach its gate within {GATE_TIMEOUT:?}")
            });
    }

    /// Lets the factory return.
    pub fn release(&self) {
        self.released.notify_one();
    }
}

/// The future of a boxed factory.
pub type FactoryFuture = Pin<Box<dyn Future<Output = Result<u64, std::io::Error>> + Send>>;

/// A factory that reads `key` from `db` and returns it at once.
pub fn read_now(db: &Arc<Database>, key: &str) -> impl FnOnce() -> FactoryFuture + Send + 'static {
    let (db, key) = (db.clone(), key.to_string());
    move || Box::pin(async move { Ok(db.read(&key)) })
}

/// A factory that reads `key` from `db`, then waits at `gate` before returning what it
/// read.
pub fn read_then_wait(
    db: &Arc<Database>,
    gate: &Arc<Gate>,
    key: &str,
) -> impl FnOnce() -> FactoryFuture + Send + 'static {
    let (db, gate, key) = (db.clone(), gate.clone(), key.to_string());
    move || {
        Box::pin(async move {
            let value = db.read(&key);
            gate.pass().await;
            Ok(value)
        })
    }
}

/// A factory that reads `key` from `db`, then sleeps `delay` before returning it.
pub fn read_then_sleep(
    db: &Arc<Database>,
    key: &str,
    delay: Duration,
) -> impl FnOnce() -> FactoryFuture + Send + 'static {
    let (db, key) = (db.clone(), key.to_string());
    move || {
        Box::pin(async move {
            let value = db.read(&key);
            tokio::time::sleep(delay).await;
            Ok(value)
        })
    }
}

/// Raw reads of the value bytes Redis holds for a key, as `HC.GET` returns them.
pub trait RawReads {
    /// `HC.GET key` as text (JSON of the version number), `None` on a miss.
    fn hc_get(&mut self, key: &str) -> Option<String>;
}

impl RawReads for redis::Connection {
    fn hc_get(&mut self, key: &str) -> Option<String> {
        hc_get_str(self, key)
    }
}

/// Raw reads on a cluster: each `HC.GET` goes to the primary owning the key's slot.
pub struct ClusterReads<'a>(pub &'a RedisCluster);

impl RawReads for ClusterReads<'_> {
    fn hc_get(&mut self, key: &str) -> Option<String> {
        hc_get_str(&mut self.0.node_for_key(key).connection(), key)
    }
}

/// One value read that the database no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRead {
    /// The key.
    pub key: String,
    /// Who served it: a handle's name or `raw HC.GET`.
    pub reader: String,
    /// What was served.
    pub served: String,
    /// What the database holds.
    pub current: Option<u64>,
}

impl std::fmt::Display for StaleRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} served {:?} for {:?}, the database holds {:?}",
            self.reader, self.served, self.key, self.current
        )
    }
}

/// Reads every key of `keys` through every handle of `handles` (`get`, L1 then Redis)
/// and through `raw` (`HC.GET`), and returns every value that differs from the
/// database's current one. A handle's read error counts as stale (it shows in `served`).
pub async fn stale_reads(
    handles: &[(&str, &HybridCache)],
    raw: &mut dyn RawReads,
    db: &Database,
    keys: &[String],
) -> Vec<StaleRead> {
    let mut stale = Vec::new();
    for key in keys {
        let current = db.current(key);
        for (name, handle) in handles {
            let served = match handle.get::<u64>(key).await {
                Ok(None) => continue,
                Ok(Some(value)) if Some(*value) == current => continue,
                Ok(Some(value)) => value.to_string(),
                Err(e) => format!("error: {e}"),
            };
            stale.push(StaleRead {
                key: key.clone(),
                reader: (*name).to_string(),
                served,
                current,
            });
        }
        match raw.hc_get(key) {
            None => {}
            Some(text) if Some(text.as_str()) == current.map(|v| v.to_string()).as_deref() => {}
            Some(text) => stale.push(StaleRead {
                key: key.clone(),
                reader: "raw HC.GET".to_string(),
                served: text,
                current,
            }),
        }
    }
    stale
}

/// Polls [`stale_reads`] until it finds nothing or `bound` passed; returns what the last
/// poll found (empty when everything settled) and how long settling took.
pub async fn settle(
    handles: &[(&str, &HybridCache)],
    raw: &mut dyn RawReads,
    db: &Database,
    keys: &[String],
    bound: Duration,
) -> (Vec<StaleRead>, Duration) {
    let started = Instant::now();
    loop {
        let stale = stale_reads(handles, raw, db, keys).await;
        if stale.is_empty() || started.elapsed() >= bound {
            return (stale, started.elapsed());
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Asserts that within [`SETTLE`] no handle and no raw `HC.GET` serves a value the
/// database no longer holds for `keys`, and that this still holds a moment later (a late
/// background write would show then).
///
/// # Panics
/// When a stale value is still served after the bound; the message lists them, prefixed
/// with `what`.
pub async fn assert_settles(
    what: &str,
    handles: &[(&str, &HybridCache)],
    raw: &mut dyn RawReads,
    db: &Database,
    keys: &[String],
) {
    let (stale, took) = settle(handles, raw, db, keys, SETTLE).await;
    assert!(
        stale.is_empty(),
        "{what}: stale values still served {took:?} after the race:\n  {}",
        join_lines(&stale)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stale = stale_reads(handles, raw, db, keys).await;
    assert!(
        stale.is_empty(),
        "{what}: stale values served again after everything had settled:\n  {}",
        join_lines(&stale)
    );
}

/// Asserts that Redis holds the database's current value of every key of `keys` (raw
/// `HC.GET`): after the race, the last write or the refill was cached, not refused.
///
/// # Panics
/// When a key is missing or holds another value; the message is prefixed with `what`.
pub fn assert_redis_holds_current(
    what: &str,
    raw: &mut dyn RawReads,
    db: &Database,
    keys: &[String],
) {
    for key in keys {
        let expected = db.current(key).map(|v| v.to_string());
        assert_eq!(
            raw.hc_get(key),
            expected,
            "{what}: Redis does not hold the current value of {key:?} (a fill with nothing \
             racing it must be cached)"
        );
    }
}

/// One line per stale read.
pub fn join_lines(stale: &[StaleRead]) -> String {
    stale
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// A TCP proxy in front of a server whose direction back to the client lags: what a
/// client behind it sends reaches the server at once, but what the server sends (replies
/// and invalidation events) arrives `latency` later, and not at all while
/// [`hold`](Self::hold) lasts. A handle built on [`url`](Self::url) then learns of other
/// instances' changes late, as over a slow network, while its own writes land.
///
/// Plain threads and blocking sockets, so the harness needs no more of tokio.
pub struct LaggingProxy {
    port: u16,
    state: Arc<ProxyState>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

struct ProxyState {
    latency: Duration,
    held: Mutex<bool>,
    released: std::sync::Condvar,
    stopped: std::sync::atomic::AtomicBool,
    /// Both ends of every proxied connection, shut down when the proxy is dropped.
    sockets: Mutex<Vec<std::net::TcpStream>>,
}

impl ProxyState {
    /// Blocks while the way back is held (and the proxy runs).
    fn wait_while_held(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held && !self.stopped.load(Ordering::SeqCst) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn set_held(&self, value: bool) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = value;
        self.released.notify_all();
    }
}

impl LaggingProxy {
    /// A proxy on a free loopback port forwarding to `server`, adding `latency` to
    /// everything the server sends back.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(server: &crate::RedisServer, latency: Duration) -> Self {
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("the proxy cannot bind a port: {e}"));
        let port = listener.local_addr().expect("the proxy's address").port();
        let state = Arc::new(ProxyState {
            latency,
            held: Mutex::new(false),
            released: std::sync::Condvar::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let state = state.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if state.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(upstream) = std::net::TcpStream::connect(target) else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    forward(&state, client, upstream);
                }
            })
        };
        Self {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// `redis://127.0.0.1:<proxy port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// From now on, nothing the server sends reaches the clients behind the proxy.
    pub fn hold(&self) {
        self.state.set_held(true);
    }

    /// Lets everything held (and what follows) through.
    pub fn release(&self) {
        self.state.set_held(false);
    }
}

/// Copies `client` -> `upstream` at once, and `upstream` -> `client` with the latency and
/// unless held: a reader thread stamps each chunk, a writer thread sends it when due.
fn forward(state: &Arc<ProxyState>, client: std::net::TcpStream, upstream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let clones = (client.try_clone(), upstream.try_clone());
    let (Ok(client_reader), Ok(upstream_writer)) = clones else {
        return;
    };
    {
        let mut sockets = state.sockets.lock().unwrap_or_else(|p| p.into_inner());
        for socket in [&client, &upstream] {
            if let Ok(clone) = socket.try_clone() {
                sockets.push(clone);
            }
        }
    }
    std::thread::spawn(move || {
        let (mut from, mut to) = (client_reader, upstream_writer);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    let (chunks, due) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut from = upstream;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if chunks.send((Instant::now(), buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let state = state.clone();
    std::thread::spawn(move || {
        let mut to = client;
        for (read_at, chunk) in due {
            let at = read_at + state.latency;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            state.wait_while_held();
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

impl Drop for LaggingProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.release();
        for socket in self
            .state
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        // Wakes the acceptor, which then sees `stopped`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}
