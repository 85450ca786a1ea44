//! A real `redis-server` process with the module loaded, on a free loopback port, in its
//! own temporary data directory.
//!
//! # Under valgrind
//!
//! With `$HYBRIDCACHE_VALGRIND` set to a directory ([`VALGRIND_ENV`]), every server runs
//! under valgrind's memcheck (`make memcheck` does this, see `scripts/memcheck.sh`):
//!
//! - one log per process in that directory, `vg-<test binary>-<test>-p<port>-<pid>.log`
//!   (a BGSAVE/AOF-rewrite/diskless-sync fork writes its own, named by its own pid, since
//!   the module's RDB and AOF callbacks run there);
//! - the harness's start, shutdown, replica sync, connect and command timeouts are
//!   [`VALGRIND_SLOWDOWN`] times longer ([`scaled`]): redis runs 20-50 times slower, and a
//!   connection's handshake can wait behind a slow timer callback of the module;
//! - dropping a running server stops it with `SHUTDOWN NOSAVE NOW FORCE` instead of
//!   SIGKILL, so that valgrind's leak check runs at exit (SIGKILL would lose it; the errors
//!   themselves are logged as they happen either way). [`RedisServer::kill`] still sends
//!   SIGKILL: tests use it to simulate a crash.
//!
//! The valgrind options are [`valgrind_options`]; `$HYBRIDCACHE_VALGRIND_ARGS`
//! ([`VALGRIND_ARGS_ENV`]) appends more, split on whitespace (e.g. `--track-origins=yes`,
//! `--suppressions=<file>`).

use crate::info::{info_section, parse_info};
use crate::module_path::module_path;
use crate::ports::free_port;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Environment variable that runs every server under valgrind's memcheck, its logs in the
/// directory it names (see the module documentation).
pub const VALGRIND_ENV: &str = "HYBRIDCACHE_VALGRIND";

/// Environment variable with more valgrind options, split on whitespace, appended to
/// [`valgrind_options`].
pub const VALGRIND_ARGS_ENV: &str = "HYBRIDCACHE_VALGRIND_ARGS";

/// How many times longer the harness's timeouts are under valgrind.
pub const VALGRIND_SLOWDOWN: u32 = 10;

/// How long a server may take to answer PING after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to exit after SHUTDOWN.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a replica may take to link to its primary and catch up.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

/// Read timeout of the connections the harness hands out: a hung server fails the test
/// instead of hanging it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempts to find a port nobody took between probing and binding it.
const PORT_ATTEMPTS: usize = 5;

/// Lines of the server log quoted in failure messages.
const LOG_TAIL_LINES: usize = 80;

/// The `redis-server` executable (on PATH unless `$REDIS_SERVER` names another).
fn redis_server_program() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// The directory of the valgrind logs when servers run under valgrind ([`VALGRIND_ENV`] is
/// set and not empty), else `None`.
pub fn valgrind_log_dir() -> Option<PathBuf> {
    std::env::var_os(VALGRIND_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// `timeout`, made [`VALGRIND_SLOWDOWN`] times longer when servers run under valgrind.
pub fn scaled(timeout: Duration) -> Duration {
    if valgrind_log_dir().is_some() {
        timeout * VALGRIND_SLOWDOWN
    } else {
        timeout
    }
}

/// The valgrind options of a server on `port` whose log goes to `log_dir`, before
/// [`VALGRIND_ARGS_ENV`]'s:
///
/// - `--soname-synonyms=somalloc=*jemalloc*`: Debian's redis-server calls malloc/free of
///   the shared libjemalloc, which valgrind does not replace unless told to; without this
///   it sees no heap blocks at all (neither Redis's nor the module's, which allocates through
///   `RedisModule_Alloc`) and finds nothing but uninitialised values.
/// - `--alignment=64`: the module's Rust allocator (`redis_module::alloc::RedisAlloc`) gets
///   alignment by rounding sizes up to it, which jemalloc's size classes honour; valgrind's
///   malloc aligns to 16 only.
/// - `--leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite`: at a
///   clean exit, list blocks nothing points to any more with where they were allocated.
///   Redis does not free its keyspace at exit, so "still reachable" and "possibly lost"
///   (SDS strings are pointed to past their header) are its normal state, not leaks.
/// - `--keep-debuginfo=yes`: a module that failed to load (its OnLoad refused the
///   arguments) is unloaded before the leak check; without this, what it leaked shows as
///   `???` frames.
/// - `--num-callers=30`: stacks reach from the module's frames back to the Redis command.
/// - `--trace-children=no`: a fork (BGSAVE, AOF rewrite) stays under valgrind anyway; an
///   exec (none expected) would not be traced.
pub fn valgrind_options(log_dir: &Path, port: u16) -> Vec<String> {
    let mut options = vec![
        "--tool=memcheck".to_string(),
        format!(
            "--log-file={}",
            log_dir
                .join(format!("vg-{}-p{port}-%p.log", log_name_of_this_test()))
                .display()
        ),
        "--soname-synonyms=somalloc=*jemalloc*".to_string(),
        "--alignment=64".to_string(),
        "--leak-check=full".to_string(),
        "--show-leak-kinds=definite".to_string(),
        "--errors-for-leak-kinds=definite".to_string(),
        "--keep-debuginfo=yes".to_string(),
        "--num-callers=30".to_string(),
        "--trace-children=no".to_string(),
    ];
    if let Some(extra) = std::env::var_os(VALGRIND_ARGS_ENV) {
        options.extend(
            extra
                .to_string_lossy()
                .split_whitespace()
                .map(str::to_string),
        );
    }
    options
}

/// `<test binary>-<test name>` for log file names: the executable's name without cargo's
/// hash, then the thread's name (libtest names each test's thread after the test), with
/// anything but `[A-Za-z0-9_.-]` replaced by `_`.
fn log_name_of_this_test() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        })
        .unwrap_or_else(|| "test".to_string());
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unnamed");
    let name: String = format!("{binary}-{test}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Keep file names well under the usual 255-byte limit.
    name.chars().take(160).collect()
}

/// How [`RedisServer::shutdown`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `SHUTDOWN`: saves an RDB only if save points are configured (the harness configures
    /// none), flushes the AOF when it is on.
    Default,
    /// `SHUTDOWN NOSAVE`: no RDB; the AOF is still flushed when it is on.
    NoSave,
    /// `SHUTDOWN SAVE`: writes an RDB first.
    Save,
}

#[derive(Debug, Clone)]
enum ModuleChoice {
    Default,
    Path(PathBuf),
    None,
}

/// Configures a [`RedisServer`] before starting it.
///
/// ```no_run
/// use hybridcache_tests::RedisServer;
/// let server = RedisServer::builder()
///     .arg("--maxmemory").arg("10mb")
///     .module_arg("CHANNEL").module_arg("my:channel")
///     .start();
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is called"]
pub struct ServerBuilder {
    module: ModuleChoice,
    module_args: Vec<String>,
    args: Vec<String>,
    replica_of: Option<u16>,
    pick_port: fn() -> u16,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            module: ModuleChoice::Default,
            module_args: Vec::new(),
            args: Vec::new(),
            replica_of: None,
            pick_port: free_port,
        }
    }
}

impl ServerBuilder {
    /// Appends one `redis-server` command-line argument (config options are `--name value`;
    /// they come after the harness defaults, so they override them).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several `redis-server` command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Appends one argument of `--loadmodule <path> ...` (passed to the module's OnLoad).
    pub fn module_arg(mut self, arg: impl Into<String>) -> Self {
        self.module_args.push(arg.into());
        self
    }

    /// Loads this module library instead of [`module_path()`].
    pub fn module_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.module = ModuleChoice::Path(path.into());
        self
    }

    /// Starts a plain Redis, without the module (e.g. as a benchmark baseline).
    pub fn without_module(mut self) -> Self {
        self.module = ModuleChoice::None;
        self
    }

    /// Makes the server a replica of `primary` (`--replicaof 127.0.0.1 <port>`).
    pub fn replica_of(mut self, primary: &RedisServer) -> Self {
        self.replica_of = Some(primary.port());
        self
    }

    /// Chooses the ports to try with `pick` instead of [`free_port`] (e.g.
    /// [`free_cluster_port`](crate::ports::free_cluster_port) for a cluster node, whose bus
    /// port must be free too). A port taken by the time the server binds it, or whose bus
    /// port is, is replaced by another pick.
    pub fn pick_port_with(mut self, pick: fn() -> u16) -> Self {
        self.pick_port = pick;
        self
    }

    /// Starts the server on a free loopback port and waits until it answers PING.
    ///
    /// # Panics
    /// When the module library is missing, or the server does not come up within
    /// [`START_TIMEOUT`] ([`scaled`]; the message quotes the server log).
    pub fn start(self) -> RedisServer {
        let mut server_args = Vec::new();
        match &self.module {
            ModuleChoice::None => {}
            choice => {
                let path = match choice {
                    ModuleChoice::Path(path) => path.clone(),
                    _ => module_path(),
                };
                server_args.push("--loadmodule".to_string());
                server_args.push(path.display().to_string());
                server_args.extend(self.module_args.iter().cloned());
            }
        }
        server_args.extend(self.args.iter().cloned());
        if let Some(port) = self.replica_of {
            server_args.extend([
                "--replicaof".to_string(),
                "127.0.0.1".to_string(),
                port.to_string(),
            ]);
        }
        let dir = tempfile::Builder::new()
            .prefix("hybridcache-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for redis: {e}"));
        let mut server = RedisServer {
            port: 0,
            dir,
            server_args,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = (self.pick_port)();
            match server.launch() {
                Ok(()) => return server,
                Err(PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(PortTaken) => {}
            }
        }
        panic!(
            "redis-server could not bind a free loopback port in {PORT_ATTEMPTS} attempts\n{}",
            server.log_tail()
        );
    }
}

/// The port was taken between probing and binding it.
#[derive(Debug)]
struct PortTaken;

/// A running (or stopped) `redis-server` process owned by a test. Dropping it kills the
/// process (under valgrind: shuts it down, see the module documentation); its data
/// directory lives as long as this value, across restarts.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    /// Everything after the harness defaults: module, caller's args, replicaof.
    server_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A builder for a server with non-default settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with the module and the harness defaults.
    pub fn new() -> RedisServer {
        Self::builder().start()
    }

    /// The loopback port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`--dir`): RDB, AOF and the server log live here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("redis.log")
    }

    /// The whole server log (every run of this server).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client for the server.
    ///
    /// # Panics
    /// Never in practice: the URL is well formed.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url())
            .unwrap_or_else(|e| panic!("cannot make a client for {}: {e}", self.url()))
    }

    /// A new synchronous connection (database 0), with a read timeout of
    /// [`COMMAND_TIMEOUT`] ([`scaled`]).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn connection(&self) -> redis::Connection {
        let con = self
            .client()
            .get_connection_with_timeout(scaled(Duration::from_secs(5)))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to redis on port {}: {e}\n{}",
                    self.port,
                    self.log_tail()
                )
            });
        con.set_read_timeout(Some(scaled(COMMAND_TIMEOUT)))
            .unwrap_or_else(|e| panic!("cannot set a read timeout: {e}"));
        con.set_write_timeout(Some(scaled(COMMAND_TIMEOUT)))
            .unwrap_or_else(|e| panic!("cannot set a write timeout: {e}"));
        con
    }

    /// A new connection with database `db` selected.
    ///
    /// # Panics
    /// When the server cannot be reached or SELECT fails.
    pub fn connection_to_db(&self, db: u32) -> redis::Connection {
        let mut con = self.connection();
        redis::cmd("SELECT")
            .arg(db)
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("SELECT {db} failed: {e}"));
        con
    }

    /// The `field:value` lines of `INFO <section>`.
    pub fn info(&self, section: &str) -> std::collections::BTreeMap<String, String> {
        info_section(&mut self.connection(), section)
    }

    /// Kills the process (SIGKILL, no save, no AOF flush beyond what the kernel has) and
    /// reaps it. Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with `SHUTDOWN [NOSAVE|SAVE]` and waits for the process to exit.
    ///
    /// # Panics
    /// When the server refuses (e.g. SAVE fails) or does not exit within
    /// [`SHUTDOWN_TIMEOUT`] ([`scaled`]).
    pub fn shutdown(&mut self, mode: Shutdown) {
        let mut cmd = redis::cmd("SHUTDOWN");
        match mode {
            Shutdown::Default => {}
            Shutdown::NoSave => {
                cmd.arg("NOSAVE");
            }
            Shutdown::Save => {
                cmd.arg("SAVE");
            }
        }
        let mut con = self.connection();
        match cmd.query::<redis::Value>(&mut con) {
            // The server closes the connection instead of answering.
            Err(e) if e.code().is_none() => {}
            Ok(reply) => panic!("SHUTDOWN answered {reply:?} instead of exiting"),
            Err(e) => panic!("SHUTDOWN failed: {e}\n{}", self.log_tail()),
        }
        if !self.wait_for_exit(scaled(SHUTDOWN_TIMEOUT)) {
            let log = self.log_tail();
            self.kill();
            panic!(
                "redis-server did not exit within {:?} of SHUTDOWN\n{log}",
                scaled(SHUTDOWN_TIMEOUT)
            );
        }
    }

    /// Waits up to `timeout` for the process to exit and reaps it; false when it still runs.
    fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = &mut self.child else {
                return true;
            };
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    return true;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return false,
            }
        }
    }

    /// Under valgrind, lets a running server exit cleanly so that valgrind's leak check
    /// runs: `SHUTDOWN NOSAVE NOW FORCE` (no RDB, no waiting for replicas, exit even if the
    /// AOF cannot be flushed). Never panics (it runs on drop, maybe during a panic); the
    /// caller kills whatever is still running afterwards.
    fn stop_for_valgrind(&mut self) {
        if self.child.is_none() {
            return;
        }
        let Ok(mut con) = self
            .client()
            .get_connection_with_timeout(scaled(Duration::from_secs(5)))
        else {
            return;
        };
        let _ = con.set_read_timeout(Some(scaled(SHUTDOWN_TIMEOUT)));
        let _ = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .arg("NOW")
            .arg("FORCE")
            .query::<redis::Value>(&mut con);
        if !self.wait_for_exit(scaled(SHUTDOWN_TIMEOUT)) {
            eprintln!(
                "redis-server on port {} did not exit within {:?} of SHUTDOWN; killing it (valgrind's leak check is lost)",
                self.port,
                scaled(SHUTDOWN_TIMEOUT)
            );
        }
    }

    /// Starts the stopped server again with the same port, directory and arguments, and
    /// waits until it answers PING (it has loaded its RDB/AOF by then).
    ///
    /// # Panics
    /// When it is already running, or does not come up.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again: redis on port {} is still running; kill() or shutdown() it first",
            self.port
        );
        for attempt in 1..=PORT_ATTEMPTS {
            match self.launch() {
                Ok(()) => return,
                Err(PortTaken) if attempt < PORT_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(PortTaken) => {}
            }
        }
        panic!(
            "redis-server could not bind its port {} again\n{}",
            self.port,
            self.log_tail()
        );
    }

    /// Graceful restart: [`Shutdown::NoSave`] (the AOF, when on, is flushed), then
    /// [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.shutdown(Shutdown::NoSave);
        self.start_again();
    }

    /// Waits until this replica's link to `primary` is up and it has processed everything
    /// the primary had written when this was called.
    ///
    /// # Panics
    /// When that does not happen within [`SYNC_TIMEOUT`] ([`scaled`]; the message quotes
    /// both sides' `INFO replication` and the replica's log).
    pub fn wait_in_sync_with(&self, primary: &RedisServer) {
        let sync_timeout = scaled(SYNC_TIMEOUT);
        let deadline = Instant::now() + sync_timeout;
        let mut replica_con = self.connection();
        let mut primary_con = primary.connection();
        let replication = |con: &mut redis::Connection| -> String {
            redis::cmd("INFO")
                .arg("replication")
                .query(con)
                .unwrap_or_else(|e| panic!("INFO replication failed: {e}"))
        };
        let fail = |what: &str, replica: &str, primary_info: &str| -> ! {
            panic!(
                "replica on port {} {what} within {sync_timeout:?}\n--- replica INFO replication\n{replica}\n--- primary INFO replication\n{primary_info}\n--- replica log\n{}\n--- primary log\n{}",
                self.port,
                self.log_tail(),
                primary.log_tail()
            )
        };
        loop {
            let text = replication(&mut replica_con);
            if parse_info(&text)
                .get("master_link_status")
                .map(String::as_str)
                == Some("up")
            {
                break;
            }
            if Instant::now() >= deadline {
                fail(
                    "did not report master_link_status:up",
                    &text,
                    &replication(&mut primary_con),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let offset = |text: &str, field: &str| -> Option<i64> {
            parse_info(text).get(field).and_then(|v| v.parse().ok())
        };
        let primary_text = replication(&mut primary_con);
        let Some(target) = offset(&primary_text, "master_repl_offset") else {
            panic!("primary INFO replication has no master_repl_offset:\n{primary_text}");
        };
        loop {
            let text = replication(&mut replica_con);
            if offset(&text, "slave_repl_offset").is_some_and(|o| o >= target) {
                return;
            }
            if Instant::now() >= deadline {
                fail(
                    &format!("did not reach the primary's offset {target}"),
                    &text,
                    &replication(&mut primary_con),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The end of the server log, its crash report if any, and its stderr (where a panic
    /// in the module is printed), for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let stderr = std::fs::read_to_string(self.dir().join("redis.stderr")).unwrap_or_default();
        let mut out = format!(
            "--- redis log ({}), last lines:\n{}",
            self.log_path().display(),
            excerpt(&log, 0, LOG_TAIL_LINES)
        );
        if let Some(at) = log.rfind("=== REDIS BUG REPORT START") {
            out.push_str("\n--- crash report, first lines:\n");
            out.push_str(&excerpt(&log[at..], LOG_TAIL_LINES, 0));
        }
        out.push_str("\n--- redis stderr:\n");
        out.push_str(&excerpt(&stderr, 40, 20));
        out
    }

    /// Spawns the process on `self.port` and waits for PING.
    fn launch(&mut self) -> Result<(), PortTaken> {
        let log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("redis.stderr"))
            .unwrap_or_else(|e| panic!("cannot open redis.stderr: {e}"));
        let valgrind_dir = valgrind_log_dir();
        let mut command = match &valgrind_dir {
            Some(log_dir) => {
                std::fs::create_dir_all(log_dir).unwrap_or_else(|e| {
                    panic!(
                        "cannot create the valgrind log directory {}: {e}",
                        log_dir.display()
                    )
                });
                let mut command = Command::new("valgrind");
                command
                    .args(valgrind_options(log_dir, self.port))
                    .arg(redis_server_program());
                command
            }
            None => Command::new(redis_server_program()),
        };
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--daemonize", "no"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .args(["--enable-module-command", "yes"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = command.spawn().unwrap_or_else(|e| {
            let program = match valgrind_dir {
                Some(_) => PathBuf::from("valgrind"),
                None => redis_server_program(),
            };
            panic!(
                "cannot run {}: {e} (is it installed and on PATH?)",
                program.display()
            )
        });
        self.child = Some(child);

        let start_timeout = scaled(START_TIMEOUT);
        let deadline = Instant::now() + start_timeout;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let new_log = read_from(&self.log_path(), log_start);
                    if new_log.contains("Address already in use") {
                        return Err(PortTaken);
                    }
                    panic!(
                        "redis-server exited ({status}) before answering PING on port {}; args: {:?}\n{}",
                        self.port,
                        self.server_args,
                        self.log_tail()
                    );
                }
            }
            if self.answers_ping() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.log_tail();
                self.kill();
                panic!(
                    "redis-server on port {} did not answer PING within {start_timeout:?}; args: {:?}\n{log}",
                    self.port, self.server_args
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether our process answers PING with PONG (not LOADING, not refused, and not
    /// another server that took the port first: INFO's process_id must be our child's).
    fn answers_ping(&self) -> bool {
        let Some(pid) = self.pid() else { return false };
        let Ok(mut con) = self
            .client()
            .get_connection_with_timeout(scaled(Duration::from_millis(500)))
        else {
            return false;
        };
        let _ = con.set_read_timeout(Some(scaled(Duration::from_secs(2))));
        if !matches!(
            redis::cmd("PING").query::<String>(&mut con).as_deref(),
            Ok("PONG")
        ) {
            return false;
        }
        let Ok(text) = redis::cmd("INFO").arg("server").query::<String>(&mut con) else {
            return false;
        };
        parse_info(&text).get("process_id") == Some(&pid.to_string())
    }
}

impl Default for RedisServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A server that died on its own (a crash in the module, typically) explains the
        // test failure that follows better than the client error does: show its log.
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!(
                    "redis-server on port {} exited unexpectedly ({status})\n{}",
                    self.port,
                    self.log_tail()
                );
            }
        }
        if valgrind_log_dir().is_some() {
            self.stop_for_valgrind();
        }
        self.kill();
    }
}

/// The first `head` and last `tail` lines of `text` (all of it when that is shorter).
fn excerpt(text: &str, head: usize, tail: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= head + tail {
        return lines.join("\n");
    }
    let mut out = lines[..head].join("\n");
    if head > 0 {
        out.push_str("\n[...]\n");
    }
    out.push_str(&lines[lines.len() - tail..].join("\n"));
    out
}

/// The bytes of `path` from `offset` on, as text.
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valgrind_logs_are_one_per_process_named_after_the_test_and_port() {
        let options = valgrind_options(Path::new("/logs"), 4321);
        let log_file = options
            .iter()
            .find_map(|o| o.strip_prefix("--log-file="))
            .unwrap_or_else(|| panic!("no --log-file in {options:?}"));
        assert!(log_file.starts_with("/logs/vg-"), "{log_file}");
        assert!(log_file.ends_with("-p4321-%p.log"), "{log_file}");
        // libtest names the thread after the test; `::` and the like become `_`.
        assert!(
            log_file.contains("-server__tests__valgrind_logs_are_one_per_process"),
            "{log_file}"
        );
        assert!(options.contains(&"--soname-synonyms=somalloc=*jemalloc*".to_string()));
    }
}
