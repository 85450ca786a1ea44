//! The fuzzer's state (the server, its connections, the generator, the model, the counts),
//! how a reply of the random part is checked, and the start: the server, its users and
//! bounds.

use crate::events::{subscribe, LOG_BYTES, LOG_CHANGES};
use crate::generator::{Cmd, Gen};
use crate::model::Model;
use crate::reply_checks::{
    error_reply_problem, fetch_error_problem, fetch_form, hello_problem, leased_read, visit_errors,
    FetchForm,
};
use hybridcache_protocol::command;
use hybridcache_tests::event_stream::{ExpectedChange, StreamChecker};
use hybridcache_tests::resp::{describe, words, Reply, RespConnection};
use hybridcache_tests::RedisServer;
use std::collections::BTreeMap;

/// DUMP payloads kept for RESTORE.
const KEPT_DUMPS: usize = 32;

/// Lease tokens kept from `HC.FETCH ... LEASE` replies, for the random part.
const KEPT_TOKENS: usize = 64;

/// The restricted user of the second connection.
const LIMITED_USER: &str = "fuzzer";

/// The lease table's bounds during the run: out of reach, so that the model never sees a
/// fill refused for being untracked (the overflow has its own tests in `fill_leases.rs`).
const LEASE_BOUND: &str = "1073741824";

/// One connection of the random part.
pub(crate) struct FuzzConn {
    pub(crate) resp: RespConnection,
    pub(crate) name: &'static str,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) commands: u64,
    pub(crate) error_replies: u64,
    pub(crate) codes: BTreeMap<String, u64>,
    /// Error replies by their first words, for the summary.
    pub(crate) messages: BTreeMap<String, u64>,
    pub(crate) pipelines: u64,
    pub(crate) bulks: u64,
    pub(crate) transactions: u64,
    pub(crate) restores_ok: u64,
    pub(crate) checks: u64,
    /// `HC.FETCH ... LEASE` hits, which answer no token.
    pub(crate) leased_hits_without_token: u64,
    /// Malformed `HC.FETCH` options refused.
    pub(crate) fetch_errors: u64,
    /// Changes received and compared with the event log.
    pub(crate) changes_compared: u64,
    /// Changes of the model found announced exactly once, in order.
    pub(crate) model_changes_checked: u64,
}

pub(crate) struct Fuzz {
    /// Checks every invalidation message of the run (first, so that it stops reading
    /// before the server goes).
    pub(crate) events: StreamChecker,
    pub(crate) server: RedisServer,
    seed: u64,
    pub(crate) gen: Gen,
    pub(crate) conns: Vec<FuzzConn>,
    pub(crate) check: RespConnection,
    pub(crate) model_con: RespConnection,
    pub(crate) model: Model,
    /// The changes the model made since the last checkpoint, in order.
    pub(crate) expected: Vec<ExpectedChange>,
    pub(crate) stats: Stats,
    pub(crate) last: String,
}

impl Fuzz {
    pub(crate) fn fail(&mut self, what: &str) -> ! {
        let alive = self.server.is_running();
        panic!(
            "command fuzz (HC_FUZZ_SEED={}) after {} commands: {what}\nlast command: {}\nserver process running: {alive}\n{}",
            self.seed,
            self.stats.commands,
            self.last,
            self.server.log_tail()
        );
    }

    /// Checks one reply to `cmd`; keeps DUMP payloads.
    pub(crate) fn check_reply(&mut self, cmd: &Cmd, reply: &Reply) {
        let mut problem = None;
        visit_errors(reply, &mut |text| {
            if problem.is_none() {
                problem = error_reply_problem(text, cmd.module);
            }
        });
        if let Some(problem) = problem {
            self.last = describe(&cmd.words);
            self.fail(&problem);
        }
        if let Reply::Error(text) = reply {
            self.stats.error_replies += 1;
            let code_len = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
            let code = String::from_utf8_lossy(&text[..code_len]).into_owned();
            *self.stats.codes.entry(code).or_default() += 1;
            let head = String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned();
            *self.stats.messages.entry(head).or_default() += 1;
        }
        let name = cmd.words.first().map(|w| w.to_ascii_uppercase());
        // An error, or QUEUED inside MULTI: no result to check.
        let queued = matches!(reply, Reply::Status(s) if s == b"QUEUED");
        let no_result = queued || matches!(reply, Reply::Error(_));
        let fetch = (name.as_deref() == Some(command::FETCH.as_bytes()) && !queued)
            .then(|| fetch_form(&cmd.words));
        let leased = match fetch {
            Some(FetchForm::Lease) => Some(false),
            Some(FetchForm::LeaseAlways) => Some(true),
            _ => None,
        };
        if let (Some(always), false) = (leased, no_result) {
            match leased_read(reply, &self.gen.origin, always) {
                Ok(None) => self.stats.leased_hits_without_token += 1,
                Ok(Some(token)) => {
                    if self.gen.tokens.len() < KEPT_TOKENS {
                        self.gen.tokens.push(token);
                    } else {
                        let at = self.gen.below(KEPT_TOKENS as u64) as usize;
                        self.gen.tokens[at] = token;
                    }
                }
                Err(problem) => {
                    self.last = describe(&cmd.words);
                    self.fail(&problem);
                }
            }
        }
        if let Some(problem) = fetch.and_then(|form| fetch_error_problem(form, reply)) {
            self.last = describe(&cmd.words);
            self.fail(&problem);
        }
        if matches!(
            fetch,
            Some(FetchForm::UnknownOption | FetchForm::WrongArity)
        ) && matches!(reply, Reply::Error(e) if e.starts_with(b"ERR"))
        {
            self.stats.fetch_errors += 1;
        }
        if name.as_deref() == Some(command::HELLO.as_bytes()) && cmd.words.len() == 1 && !no_result
        {
            if let Some(problem) = hello_problem(reply, &self.gen.origin) {
                self.last = describe(&cmd.words);
                self.fail(&problem);
            }
        }
        match (name.as_deref(), reply) {
            (Some(b"DUMP"), Reply::Bulk(Some(payload))) if payload.len() <= 2 << 20 => {
                if self.gen.dumps.len() < KEPT_DUMPS {
                    self.gen.dumps.push(payload.clone());
                } else {
                    let at = self.gen.below(KEPT_DUMPS as u64) as usize;
                    self.gen.dumps[at] = payload.clone();
                }
            }
            (Some(b"RESTORE"), Reply::Status(_)) => self.stats.restores_ok += 1,
            _ => {}
        }
    }

    pub(crate) fn read_reply(&mut self, conn: usize, cmd: &Cmd) -> Reply {
        match self.conns[conn].resp.read() {
            Ok(reply) => reply,
            Err(e) => {
                self.last = format!(
                    "{} on the {} connection",
                    describe(&cmd.words),
                    self.conns[conn].name
                );
                self.fail(&format!("no reply: {e}"))
            }
        }
    }

    pub(crate) fn send(&mut self, conn: usize, batch: &[&[Vec<u8>]]) {
        self.stats.commands += batch.len() as u64;
        if let Err(e) = self.conns[conn].resp.send(batch) {
            self.last = batch.last().map_or_else(String::new, |w| describe(w));
            self.fail(&format!("sending failed: {e}"));
        }
    }

    pub(crate) fn call_checked(&mut self, conn: usize, w: Vec<Vec<u8>>) -> Reply {
        let cmd = Cmd {
            words: w,
            module: false,
        };
        self.send(conn, &[cmd.words.as_slice()]);
        let reply = self.read_reply(conn, &cmd);
        self.check_reply(&cmd, &reply);
        reply
    }
}

pub(crate) fn start_fuzz(seed: u64) -> Fuzz {
    let server = RedisServer::builder()
        // A safety net for the rare huge values: evict only keys with a TTL (never the
        // model's), refuse writes otherwise (OOM is a valid error reply).
        .args(["--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru"])
        // RESTORE of corrupted payloads of Redis's own types must be refused, not crash.
        .args(["--sanitize-dump-payload", "yes"])
        .start();
    let port = server.port();
    monitor_to_file(port);
    let mut admin = RespConnection::connect(port);
    // Corrupted DUMP bodies reach the module's loader instead of failing the checksum.
    let reply = admin
        .call(&words(&["DEBUG", "SET-SKIP-CHECKSUM-VALIDATION", "1"]))
        .unwrap();
    assert_eq!(reply, Reply::Status(b"OK".to_vec()));
    let reply = admin
        .call(&words(&[
            "ACL",
            "SETUSER",
            LIMITED_USER,
            "on",
            "nopass",
            "~k:*",
            "~w:*",
            "&*",
            "+@all",
        ]))
        .unwrap();
    assert_eq!(reply, Reply::Status(b"OK".to_vec()));
    for (bound, value) in [
        ("hybridcache.fill-leases", LEASE_BOUND),
        ("hybridcache.fill-tag-removals", LEASE_BOUND),
        ("hybridcache.event-log-changes", LOG_CHANGES),
        ("hybridcache.event-log-bytes", LOG_BYTES),
    ] {
        let reply = admin
            .call(&words(&["CONFIG", "SET", bound, value]))
            .unwrap();
        assert_eq!(reply, Reply::Status(b"OK".to_vec()), "CONFIG SET {bound}");
    }
    // Before the first change.
    let events = subscribe(&server);
    let hello = admin.call(&words(&[command::HELLO])).unwrap();
    let origin = match &hello {
        Reply::Array(Some(items)) => items.chunks(2).find_map(|pair| match pair {
            [Reply::Bulk(Some(name)), Reply::Bulk(Some(origin))] if name == b"origin" => {
                Some(origin.clone())
            }
            _ => None,
        }),
        _ => None,
    };
    let origin = origin.unwrap_or_else(|| panic!("HC.HELLO answered {hello:?}"));
    if let Some(problem) = hello_problem(&hello, &origin) {
        panic!("{problem}");
    }
    let mut limited = RespConnection::connect(port);
    let reply = limited
        .call(&words(&["AUTH", LIMITED_USER, "any"]))
        .unwrap();
    assert_eq!(reply, Reply::Status(b"OK".to_vec()));
    let time = admin.call(&words(&["TIME"])).unwrap();
    let start_ms = match &time {
        Reply::Array(Some(parts)) => match parts.as_slice() {
            [Reply::Bulk(Some(s)), Reply::Bulk(Some(us))] => {
                let s: i64 = String::from_utf8_lossy(s).parse().unwrap();
                let us: i64 = String::from_utf8_lossy(us).parse().unwrap();
                s * 1000 + us / 1000
            }
            _ => panic!("TIME answered {time:?}"),
        },
        _ => panic!("TIME answered {time:?}"),
    };
    Fuzz {
        check: RespConnection::connect(port),
        model_con: RespConnection::connect(port),
        conns: vec![
            FuzzConn {
                resp: admin,
                name: "admin",
            },
            FuzzConn {
                resp: limited,
                name: "restricted",
            },
        ],
        server,
        seed,
        gen: Gen::new(seed, origin, start_ms),
        model: Model::default(),
        events,
        expected: Vec::new(),
        stats: Stats::default(),
        last: String::new(),
    }
}

/// With `HC_FUZZ_MONITOR=<file>`, every command the server runs (as `MONITOR` shows it: time,
/// database, client, arguments) is written to that file, line by line, for finding the
/// command sequence behind a failure.
fn monitor_to_file(port: u16) {
    use std::io::{BufRead, BufReader, Write};
    let Some(path) = std::env::var_os("HC_FUZZ_MONITOR") else {
        return;
    };
    let mut file = std::fs::File::create(&path).expect("HC_FUZZ_MONITOR file");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("monitor connection");
    stream.write_all(b"MONITOR\r\n").expect("MONITOR");
    let mut lines = BufReader::new(stream);
    let mut first = Vec::new();
    lines.read_until(b'\n', &mut first).expect("MONITOR reply");
    assert_eq!(first, b"+OK\r\n", "MONITOR answered");
    std::thread::spawn(move || {
        let mut line = Vec::new();
        while matches!(lines.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            if file.write_all(&line).is_err() {
                return;
            }
            line.clear();
        }
    });
}
