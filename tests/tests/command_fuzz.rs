//! A randomized command fuzzer against a live server with the module: malformed and random
//! HC commands, and the plain Redis commands that reach module keys, never crash the server,
//! never break the tag index, and never garble a reply.
//!
//! For `HC_FUZZ_SECS` seconds (default 20) one thread sends, over raw RESP connections (so
//! that any byte string can be an argument and every reply byte is seen as sent):
//!
//! - HC commands of random arity with random, empty, binary, NUL-bearing, non-UTF-8, long
//!   and huge (up to 1 MB) arguments; invalid numbers (`EX -1`, `PX 0`, `EX 9999999999999999`,
//!   overflow, `+5`, `1.5`, ...); option keywords in random case, order and repetition;
//!   `TAGS` with hundreds of tags and duplicates;
//! - plain commands on the same keys: `SET`/`LPUSH`/`HSET` (so HC commands meet `WRONGTYPE`),
//!   `DEL`, `UNLINK`, `RENAME`, `EXPIRE`, `PEXPIRE`, `PERSIST`, `COPY`, `MOVE`, `DUMP`,
//!   `RESTORE` of valid and corrupted payloads (checksums skipped, so corrupt bodies reach the
//!   module's loader), `OBJECT`, `TYPE`, `SCAN`, `MEMORY USAGE`, `DEBUG DIGEST-VALUE`; rarely
//!   `SELECT`, `SWAPDB`, `FLUSHDB [ASYNC]` and `DEBUG RELOAD`;
//! - bulk invalidations: up to 3,000 tagged entries written and `HC.DELTAG`ed in one
//!   pipeline followed by random commands (and sometimes `SWAPDB`, `FLUSHDB`, `DEBUG RELOAD`)
//!   that reach the keys while their removal is still pending; the count must be exact;
//! - single commands, pipelines and `MULTI`/`EXEC`/`DISCARD` blocks, on two connections: an
//!   admin one and one of a user restricted to some key patterns (so `NOPERM` paths run);
//! - fill leases: `HC.FETCH key LEASE` and `HC.FETCH key LEASE ALWAYS` (and misspelled,
//!   reordered or extra options), `HC.SET ... LEASE <token>`
//!   with tokens the server gave (fresh, stale, for another key or database), tokens of
//!   another origin, forged positions and garbage, `LEASE` without a token or twice;
//!   `HC.HELLO` with and without extra arguments.
//!
//! Asserted throughout: the process stays alive and every connection keeps answering; every
//! reply is well-formed RESP, and every error reply starts with an uppercase error code
//! (`ERR`, `WRONGTYPE`, `NOPERM`, `EXECABORT`, `BUSYKEY`, ...) and holds no control
//! character (replies of the module's commands: printable ASCII only); `MULTI` blocks answer
//! as Redis specifies; `HC.FETCH ... LEASE [ALWAYS]` answers six well-formed fields (a miss is
//! `[nil, [], -2, origin, 0, token]`; a hit ends in a token with `ALWAYS`, in nil without),
//! any other word after the key is a syntax error and one word too many an arity error;
//! `HC.HELLO` names this server's origin. Every ~2 s and at the end, `HC.CHECK` reports no
//! problem.
//!
//! A shadow model runs alongside on its own connection in database 0: well-formed `HC.SET`
//! (no expiry; NX/XX/GETVERSION sometimes), `HC.DEL` and `HC.DELTAG` over keys `model:*` and
//! tags `mtag:*`, which the random part never generates (it never flushes or swaps database
//! 0 either), plus `HC.FETCH ... LEASE [ALWAYS]`, fills `HC.SET ... LEASE <token>`, and raw
//! `DEL`/`UNLINK` of model keys (alone, in `MULTI`/`EXEC`, from a Lua script, or in another
//! database). Each model reply is checked against the model (OK or nil, exact counts, the
//! entry read, a token exactly when one is due), and at every check
//! `HC.GET`/`HC.TAGS`/`HC.TAGKEYS`/`HC.TAGCARD` must agree with it.
//!
//! The model decides each fill exactly ([`LeaseModel`]): a token is a position in the
//! server's history, and a fill with it is accepted iff a read of the key issued a lease (a
//! miss with `LEASE`, or any read with `LEASE ALWAYS`; a hit without `ALWAYS` issues none) at
//! or before that position and the key has not changed since (any model write or delete of
//! it, an accepted fill included, `HC.SET` refused by NX/XX, `HC.DEL` and raw `DEL`/`UNLINK`
//! of it even when missing, and a raw `DEL`/`UNLINK` of the same name in another database,
//! which the module cannot tell apart), no tag named by the fill or carried by the stored
//! entry was removed after it, and the random part did not reset the history after it (a
//! successful `SWAPDB`, `FLUSHDB` or `DEBUG RELOAD` in any database); tokens of another
//! origin and garbage are always refused. A fill that NX/XX blocks is nil whatever its
//! token and is not counted as a fill. The one thing it cannot know is when the background removal deletes an entry `HC.DELTAG` removed (that
//! delete is a change to the key): a lease taken on such a key before `HC.CHECK` reports no
//! pending removal may be refused or not, and then the model only checks that a refused
//! fill wrote nothing and an accepted one is read back. The lease table's bounds are raised
//! out of reach so that nothing is refused for being untracked.
//!
//! The seed (time-based unless `HC_FUZZ_SEED=<u64>` gives it) is printed at the start and
//! quoted in every failure; the command sequence is a function of the seed, except that
//! payloads kept from `DUMP` replies depend on the server's answers. The end prints the
//! number of commands sent, commands/s, and the error replies seen (`--nocapture`).

use hybridcache_protocol::command::{self, LEASE_VERSION};
use hybridcache_protocol::{DEFAULT_CHANNEL, FORMAT_VERSION, MODULE_NAME};
use hybridcache_tests::client_support::SplitMix64;
use hybridcache_tests::client_support::{env_u64, seed_from_env};
use hybridcache_tests::RedisServer;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Default run time, seconds (`HC_FUZZ_SECS`).
const DEFAULT_SECS: u64 = 20;
/// How often `HC.CHECK` and the model comparison run.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Databases the random part uses (0..DBS); the model lives in database 0.
const DBS: u64 = 4;
/// How long one reply may take before the server is considered hung.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Model keys and tags.
const MODEL_KEYS: u64 = 64;
const MODEL_TAGS: u64 = 8;
/// DUMP payloads kept for RESTORE.
const KEPT_DUMPS: usize = 32;
/// Prefixes only the model uses.
const RESERVED: [&[u8]; 2] = [b"model:", b"mtag:"];
/// The restricted user of the second connection.
const LIMITED_USER: &str = "fuzzer";
/// At most this many keys (`k:b<i>`) are written and invalidated by one bulk step.
const BULK_MAX: u64 = 3000;
/// Lease tokens kept from `HC.FETCH ... LEASE` replies, for the random part.
const KEPT_TOKENS: usize = 64;
/// Tokens the model keeps, with what it knows of them.
const MODEL_TOKENS: usize = 256;
/// The lease table's bounds during the run: out of reach, so that the model never sees a
/// fill refused for being untracked (the overflow has its own tests in `fill_leases.rs`).
const LEASE_BOUND: &str = "1073741824";

// ------------------------------------------------------------------------------------------
// A raw RESP2 connection.

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Status(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A client connection speaking raw RESP, so that arguments and replies are bytes as sent.
struct Resp {
    reader: BufReader<TcpStream>,
}

impl Resp {
    fn connect(port: u16) -> Resp {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Resp {
            reader: BufReader::with_capacity(64 * 1024, stream),
        }
    }

    /// Writes `commands` in one go (a pipeline when there are several).
    fn send(&mut self, commands: &[&[Vec<u8>]]) -> Result<(), String> {
        let mut out = Vec::new();
        for words in commands {
            out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
            for word in words.iter() {
                out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
                out.extend_from_slice(word);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.reader
            .get_mut()
            .write_all(&out)
            .map_err(|e| format!("write failed: {e}"))
    }

    fn line(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(format!("reply line not ended by CRLF: {:?}", show(&line)));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn number(text: &[u8]) -> Result<i64, String> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("not a RESP integer: {:?}", show(text)))
    }

    /// Reads one reply; `Err` when the connection failed or the bytes are not RESP.
    fn read(&mut self) -> Result<Reply, String> {
        let line = self.line()?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| "empty reply line".to_string())?;
        match kind {
            b'+' => Ok(Reply::Status(rest.to_vec())),
            b'-' => Ok(Reply::Error(rest.to_vec())),
            b':' => Ok(Reply::Int(Self::number(rest)?)),
            b'$' => {
                let len = Self::number(rest)?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut body = vec![0; len as usize + 2];
                self.reader
                    .read_exact(&mut body)
                    .map_err(|e| format!("read of a {len}-byte bulk failed: {e}"))?;
                if !body.ends_with(b"\r\n") {
                    return Err(format!("bulk of {len} bytes not ended by CRLF"));
                }
                body.truncate(len as usize);
                Ok(Reply::Bulk(Some(body)))
            }
            b'*' => {
                let len = Self::number(rest)?;
                if len < 0 {
                    return Ok(Reply::Array(None));
                }
                let items = (0..len).map(|_| self.read()).collect::<Result<_, _>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(format!("unknown reply type: {:?}", show(&line))),
        }
    }

    fn call(&mut self, words: &[Vec<u8>]) -> Result<Reply, String> {
        self.send(&[words])?;
        self.read()
    }
}

fn words(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// Bytes for a message: lossy, escaped, cut to 120 characters.
fn show(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .escape_debug()
        .collect();
    if bytes.len() > 120 {
        format!("{text}...({} bytes)", bytes.len())
    } else {
        text
    }
}

fn describe(words: &[Vec<u8>]) -> String {
    let shown: Vec<String> = words.iter().take(8).map(|w| show(w)).collect();
    let more = if words.len() > 8 {
        format!(" ...({} args)", words.len())
    } else {
        String::new()
    };
    format!("[{}]{more}", shown.join(", "))
}

/// What is wrong with error reply `text`, if anything: it must start with an uppercase
/// code, hold no control character, and (for the module's commands) only printable ASCII.
fn error_reply_problem(text: &[u8], module: bool) -> Option<String> {
    let code_len = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let code = &text[..code_len];
    if code.len() < 2
        || !code[0].is_ascii_uppercase()
        || !code
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Some(format!(
            "error reply without an uppercase code: {:?}",
            show(text)
        ));
    }
    if text.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Some(format!(
            "error reply with a control character: {:?}",
            show(text)
        ));
    }
    if module && text.iter().any(|&b| b >= 0x80) {
        return Some(format!(
            "module error reply with non-ASCII bytes: {:?}",
            show(text)
        ));
    }
    None
}

// ------------------------------------------------------------------------------------------
// The random command generator.

/// One generated command.
#[derive(Debug, Clone)]
struct Cmd {
    words: Vec<Vec<u8>>,
    /// One of the module's commands (stricter error text rules).
    module: bool,
}

const SET_KEYWORDS: [&str; 9] = [
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "NX",
    "XX",
    "GETVERSION",
    "TAGS",
];

const BAD_NUMBERS: [&str; 22] = [
    "0",
    "-1",
    "-0",
    "00005",
    "9999999999999999",
    "9223372036854775",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999",
    "1.5",
    "+5",
    " 5",
    "5 ",
    "",
    "0x10",
    "1e3",
    "abc",
    "5\0",
    "\u{663}",
    "-",
];

struct Gen {
    rng: SplitMix64,
    /// Payloads returned by DUMP, for RESTORE.
    dumps: Vec<Vec<u8>>,
    /// Tokens returned by `HC.FETCH ... LEASE`, for `HC.SET ... LEASE`.
    tokens: Vec<Vec<u8>>,
    /// The server's origin (`HC.HELLO`), for forged tokens.
    origin: Vec<u8>,
    /// Server time at the start, and when that was, for EXAT/PXAT around "now".
    start_ms: i64,
    started: Instant,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn printable(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| b' ' + self.below(95) as u8).collect()
    }

    /// `word` with each letter's case flipped at random (commands and options are
    /// case-insensitive).
    fn random_case(&mut self, word: &str) -> Vec<u8> {
        word.bytes()
            .map(|b| {
                if self.one_in(2) {
                    b.to_ascii_lowercase()
                } else {
                    b.to_ascii_uppercase()
                }
            })
            .collect()
    }

    /// Keeps generated names out of the model's prefixes.
    fn unreserved(mut name: Vec<u8>) -> Vec<u8> {
        if RESERVED.iter().any(|p| name.starts_with(p)) {
            name.insert(0, b'x');
        }
        name
    }

    fn key(&mut self) -> Vec<u8> {
        let key = match self.below(100) {
            0..=54 => format!("k:{}", self.below(40)).into_bytes(),
            // The keys of the bulk invalidations (see Fuzz::bulk), often still pending
            // removal when commands reach them.
            55..=62 => format!("k:b{}", self.below(BULK_MAX)).into_bytes(),
            63..=75 => format!("w:{}", self.below(10)).into_bytes(),
            76..=85 => {
                let n = self.below(17) as usize;
                self.bytes(n)
            }
            86..=89 => Vec::new(),
            90..=95 => {
                let mut k = b"k:\0".to_vec();
                k.push(self.below(256) as u8);
                k.push(0xff);
                k
            }
            _ => {
                let n = 1024 + self.below(64 * 1024) as usize;
                let mut k = b"k:long:".to_vec();
                k.extend(std::iter::repeat_n(b'L', n));
                k.extend(format!("{}", self.below(4)).bytes());
                k
            }
        };
        Self::unreserved(key)
    }

    fn tag(&mut self) -> Vec<u8> {
        let tag = match self.below(100) {
            0..=69 => format!("t:{}", self.below(12)).into_bytes(),
            70..=79 => {
                let n = self.below(13) as usize;
                self.bytes(n)
            }
            80..=84 => Vec::new(),
            85..=89 => {
                let word = *self.pick(&SET_KEYWORDS);
                self.random_case(word)
            }
            90..=95 => vec![b't', 0, self.below(256) as u8],
            _ => {
                let n = 256 + self.below(8192) as usize;
                self.printable(n)
            }
        };
        Self::unreserved(tag)
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(1000) {
            0..=599 => {
                let n = self.below(65) as usize;
                self.printable(n)
            }
            600..=799 => {
                let n = self.below(257) as usize;
                self.bytes(n)
            }
            800..=849 => Vec::new(),
            850..=969 => {
                let n = 1024 + self.below(63 * 1024) as usize;
                self.bytes(n)
            }
            970..=996 => {
                let n = 64 * 1024 + self.below(192 * 1024) as usize;
                self.printable(n)
            }
            _ => {
                let n = 256 * 1024 + self.below(768 * 1024) as usize;
                self.bytes(n)
            }
        }
    }

    /// A number argument: mostly small and valid, often not.
    fn number(&mut self, valid_max: u64) -> Vec<u8> {
        if self.below(10) < 6 {
            (1 + self.below(valid_max)).to_string().into_bytes()
        } else {
            self.pick(&BAD_NUMBERS).as_bytes().to_vec()
        }
    }

    /// An absolute time around now (past or future), in ms or s.
    fn abs_time(&mut self, seconds: bool) -> Vec<u8> {
        let now = self.start_ms + self.started.elapsed().as_millis() as i64;
        let at = match self.below(6) {
            0 => now - self.below(10_000_000) as i64,
            1 => 1 + self.below(1000) as i64,
            2..=4 => now + 1 + self.below(5_000) as i64,
            _ => return self.number(1_000_000),
        };
        let at = if seconds { at / 1000 } else { at };
        at.to_string().into_bytes()
    }

    /// `token` with its origin replaced by another one of the same length.
    fn other_origin(token: &[u8]) -> Vec<u8> {
        let mut token = token.to_vec();
        if let Some(first) = token.first_mut() {
            *first = if *first == b'0' { b'1' } else { b'0' };
        }
        token
    }

    /// A lease token: mostly one the server gave (any key, database or age), else one of
    /// another origin, a forged position, or garbage.
    fn token(&mut self) -> Vec<u8> {
        let origin = String::from_utf8_lossy(&self.origin).into_owned();
        match self.below(10) {
            0..=4 if !self.tokens.is_empty() => {
                let at = self.below(self.tokens.len() as u64) as usize;
                self.tokens[at].clone()
            }
            5 if !self.tokens.is_empty() => {
                let at = self.below(self.tokens.len() as u64) as usize;
                Self::other_origin(&self.tokens[at])
            }
            0..=6 => format!("{origin}:{}", self.below(100_000)).into_bytes(),
            7 => format!("{origin}:{}", self.pick(&BAD_NUMBERS)).into_bytes(),
            8 => {
                let n = self.below(24) as usize;
                self.bytes(n)
            }
            _ => self
                .pick(&["", ":", "0", ":0", "abc:1", "LEASE", "TAGS", "-1", "x:"])
                .as_bytes()
                .to_vec(),
        }
    }

    fn hc_name(&mut self, name: &str) -> Vec<u8> {
        if self.one_in(4) {
            self.random_case(name)
        } else {
            name.as_bytes().to_vec()
        }
    }

    fn hc_set(&mut self) -> Cmd {
        let mut w = vec![self.hc_name(command::SET), self.key(), self.value()];
        if self.one_in(25) {
            let keep = 1 + self.below(2) as usize;
            w.truncate(keep);
            return Cmd {
                words: w,
                module: true,
            };
        }
        let options = match self.below(10) {
            0..=3 => 0,
            4..=6 => 1,
            7..=8 => 2,
            _ => 3 + self.below(4),
        };
        for _ in 0..options {
            match self.below(17) {
                0 => {
                    w.push(self.random_case("EX"));
                    w.push(self.number(4));
                }
                1 => {
                    w.push(self.random_case("PX"));
                    w.push(self.number(3000));
                }
                2 => {
                    w.push(self.random_case("EXAT"));
                    w.push(self.abs_time(true));
                }
                3 => {
                    w.push(self.random_case("PXAT"));
                    w.push(self.abs_time(false));
                }
                4 => w.push(self.random_case("KEEPTTL")),
                5 => w.push(self.random_case("NX")),
                6 => w.push(self.random_case("XX")),
                7 | 8 => w.push(self.random_case("GETVERSION")),
                9 => {
                    // An expiry keyword missing its value (when last) or taking the next
                    // option as its value.
                    let word = *self.pick(&["EX", "PX", "EXAT", "PXAT"]);
                    w.push(self.random_case(word));
                }
                10 => {
                    let junk = *self.pick(&["EXX", "P X", "", "TAG", "NXX", "\0", "GETVERSIONS"]);
                    w.push(junk.as_bytes().to_vec());
                }
                11 => {
                    let n = self.below(9) as usize;
                    w.push(self.bytes(n));
                }
                12 => w.push(self.number(100)),
                14 | 15 => {
                    w.push(self.random_case("LEASE"));
                    let token = self.token();
                    w.push(token);
                }
                // Without its token (when last), or taking the next option as its token.
                16 => w.push(self.random_case("LEASE")),
                _ => {
                    let word = *self.pick(&["EX", "PX"]);
                    w.push(self.random_case(word));
                    w.push(self.pick(&BAD_NUMBERS).as_bytes().to_vec());
                }
            }
        }
        if self.below(10) < 6 {
            w.push(self.random_case("TAGS"));
            let count = match self.below(100) {
                0..=4 => 0,
                5..=84 => 1 + self.below(6),
                85..=94 => 20 + self.below(300),
                _ => 50,
            };
            let duplicates = self.one_in(5);
            for _ in 0..count {
                let tag = if duplicates {
                    format!("t:{}", self.below(3)).into_bytes()
                } else {
                    self.tag()
                };
                w.push(tag);
            }
        }
        Cmd {
            words: w,
            module: true,
        }
    }

    /// `n` arguments made by `arg`, with the count sometimes off by one or zero.
    fn args(&mut self, usual: u64, arg: fn(&mut Gen) -> Vec<u8>) -> Vec<Vec<u8>> {
        let n = match self.below(20) {
            0 => 0,
            1 => usual + 1,
            2 => 100 + self.below(200),
            _ => usual.max(1),
        };
        (0..n).map(|_| arg(self)).collect()
    }

    fn hc_command(&mut self) -> Cmd {
        let mut w;
        match self.below(100) {
            0..=34 => return self.hc_set(),
            35..=46 => {
                w = vec![self.hc_name(command::GET)];
                w.extend(self.args(1, Gen::key).into_iter().take(3));
            }
            47..=54 => {
                w = vec![self.hc_name(command::FETCH)];
                match self.below(12) {
                    0..=3 => {
                        w.push(self.key());
                        w.push(self.random_case("LEASE"));
                    }
                    4 | 5 => {
                        w.push(self.key());
                        w.push(self.random_case("LEASE"));
                        w.push(self.random_case("ALWAYS"));
                    }
                    6 => {
                        w.push(self.key());
                        let option = *self.pick(&["LEASES", "LEAS", "", "LEASE\0", "TAGS", "NX"]);
                        w.push(option.as_bytes().to_vec());
                        if self.one_in(3) {
                            w.push(self.random_case("LEASE"));
                        }
                    }
                    7 | 8 => {
                        // Two words after the key that are not `LEASE ALWAYS`, or that and a third.
                        w.push(self.key());
                        let (first, second) = *self.pick(&[
                            ("ALWAYS", "LEASE"),
                            ("LEASE", "ALWAYSS"),
                            ("LEASE", "LEASE"),
                            ("ALWAYS", "ALWAYS"),
                            ("LEASE", "ALWAYS\0"),
                            ("LEASE", ""),
                            ("", "ALWAYS"),
                            ("NX", "ALWAYS"),
                        ]);
                        if self.one_in(4) {
                            // `LEASE ALWAYS` and one word too many.
                            w.push(self.random_case("LEASE"));
                            w.push(self.random_case("ALWAYS"));
                            w.push(self.random_case(first));
                        } else {
                            w.push(self.random_case(first));
                            w.push(self.random_case(second));
                        }
                    }
                    9 => {
                        w.push(self.key());
                        w.push(self.random_case("ALWAYS"));
                    }
                    _ => w.extend(self.args(1, Gen::key).into_iter().take(3)),
                }
            }
            55..=62 => {
                w = vec![self.hc_name(command::MGET)];
                let n = 1 + self.below(8);
                w.extend(self.args(n, Gen::key));
            }
            63..=70 => {
                w = vec![self.hc_name(command::DEL)];
                let n = 1 + self.below(4);
                w.extend(self.args(n, Gen::key));
            }
            71..=76 => {
                w = vec![self.hc_name(command::DELTAG)];
                let n = 1 + self.below(3);
                w.extend(self.args(n, Gen::tag));
            }
            77..=83 => {
                w = vec![self.hc_name(command::TAGS)];
                w.extend(self.args(1, Gen::key).into_iter().take(3));
            }
            84..=91 => {
                w = vec![self.hc_name(command::TAGKEYS)];
                w.extend(self.args(1, Gen::tag).into_iter().take(3));
            }
            92..=97 => {
                w = vec![self.hc_name(command::TAGCARD)];
                w.extend(self.args(1, Gen::tag).into_iter().take(3));
            }
            _ => {
                if self.one_in(3) {
                    w = vec![self.hc_name(command::CHECK)];
                    if self.one_in(2) {
                        w.push(self.key());
                    }
                } else if self.one_in(2) {
                    w = vec![self.hc_name(command::HELLO)];
                    if self.one_in(3) {
                        let n = self.below(12) as usize;
                        w.push(self.bytes(n));
                    }
                } else {
                    // Not a command: Redis answers "unknown command" (printable arguments
                    // only, since Redis quotes them in its reply).
                    w = vec![self.pick(&[&b"HC."[..], b"HC.NOPE", b"hc.sett"]).to_vec()];
                    let n = self.below(3) as usize;
                    for _ in 0..n {
                        let len = self.below(12) as usize;
                        w.push(self.printable(len));
                    }
                    return Cmd {
                        words: w,
                        module: false,
                    };
                }
            }
        }
        Cmd {
            words: w,
            module: true,
        }
    }

    fn db_arg(&mut self) -> Vec<u8> {
        if self.one_in(10) {
            self.pick(&["99", "-1", "x", ""]).as_bytes().to_vec()
        } else {
            self.below(DBS).to_string().into_bytes()
        }
    }

    fn restore_payload(&mut self) -> Vec<u8> {
        if self.dumps.is_empty() || self.one_in(10) {
            let n = self.below(64) as usize;
            return self.bytes(n);
        }
        let chosen = self.below(self.dumps.len() as u64) as usize;
        let mut payload = self.dumps[chosen].clone();
        if self.one_in(2) {
            return payload;
        }
        let len = payload.len();
        match self.below(5) {
            0 => {
                for _ in 0..1 + self.below(4) {
                    let at = self.below(len as u64) as usize;
                    payload[at] ^= 1 << self.below(8);
                }
            }
            1 => payload.truncate(self.below(len as u64) as usize),
            2 if len > 11 => {
                // Inside the body, before the RDB version and checksum footer.
                let at = self.below(len as u64 - 10) as usize;
                payload[at] = *self.pick(&[0x00, 0x7f, 0x80, 0xff, 0x3f, 0x40, 0xc0]);
            }
            3 if len > 10 => {
                let n = 1 + self.below(32) as usize;
                let junk = self.bytes(n);
                let at = len - 10;
                payload.splice(at..at, junk);
            }
            _ => {
                let n = self.below(len as u64) as usize;
                let junk = self.bytes(n);
                payload = junk;
            }
        }
        payload
    }

    fn plain_command(&mut self) -> Cmd {
        let k = |g: &mut Gen| g.key();
        let w: Vec<Vec<u8>> = match self.below(100) {
            0..=7 => {
                let key = k(self);
                let value = self.value();
                vec![b"SET".to_vec(), key, value]
            }
            8..=10 => vec![b"LPUSH".to_vec(), k(self), b"x".to_vec()],
            11..=12 => vec![b"HSET".to_vec(), k(self), b"f".to_vec(), b"v".to_vec()],
            13..=20 => {
                let mut w = vec![self.pick(&[&b"DEL"[..], b"UNLINK"]).to_vec()];
                for _ in 0..1 + self.below(4) {
                    w.push(k(self));
                }
                w
            }
            21..=27 => vec![
                self.pick(&[&b"RENAME"[..], b"RENAMENX"]).to_vec(),
                k(self),
                k(self),
            ],
            28..=35 => {
                let cmd = self.pick(&[&b"EXPIRE"[..], b"PEXPIRE"]).to_vec();
                let mut w = vec![cmd, k(self)];
                w.push(if self.one_in(3) {
                    self.pick(&BAD_NUMBERS).as_bytes().to_vec()
                } else {
                    self.number(3000)
                });
                if self.one_in(5) {
                    let flag = *self.pick(&["NX", "XX", "GT", "LT", "ZZ"]);
                    w.push(self.random_case(flag));
                }
                w
            }
            36..=38 => vec![b"PERSIST".to_vec(), k(self)],
            39..=45 => {
                let mut w = vec![b"COPY".to_vec(), k(self), k(self)];
                if self.one_in(3) {
                    w.push(b"DB".to_vec());
                    w.push(self.db_arg());
                }
                if self.one_in(2) {
                    w.push(self.random_case("REPLACE"));
                }
                w
            }
            46..=50 => vec![b"MOVE".to_vec(), k(self), self.db_arg()],
            51..=58 => vec![b"DUMP".to_vec(), k(self)],
            59..=68 => {
                let ttl = match self.below(6) {
                    0..=2 => b"0".to_vec(),
                    3 => self.number(5000),
                    4 => self.abs_time(false),
                    _ => self.pick(&BAD_NUMBERS).as_bytes().to_vec(),
                };
                let payload = self.restore_payload();
                let mut w = vec![b"RESTORE".to_vec(), k(self), ttl, payload];
                if self.below(10) < 6 {
                    w.push(self.random_case("REPLACE"));
                }
                if self.one_in(6) {
                    w.push(self.random_case("ABSTTL"));
                }
                if self.one_in(8) {
                    w.push(self.random_case("IDLETIME"));
                    w.push(self.number(100));
                }
                if self.one_in(12) {
                    w.push(self.random_case("FREQ"));
                    w.push(self.number(100));
                }
                w
            }
            69..=73 => {
                let sub = *self.pick(&["ENCODING", "REFCOUNT", "IDLETIME", "FREQ"]);
                vec![b"OBJECT".to_vec(), self.random_case(sub), k(self)]
            }
            74..=78 => vec![b"TYPE".to_vec(), k(self)],
            79..=82 => {
                let mut w = vec![b"SCAN".to_vec(), self.below(64).to_string().into_bytes()];
                if self.one_in(2) {
                    w.push(b"TYPE".to_vec());
                    w.push(
                        self.pick(&[&b"hc-entry0"[..], b"string", b"nosuch"])
                            .to_vec(),
                    );
                }
                if self.one_in(2) {
                    w.push(b"COUNT".to_vec());
                    w.push(self.number(1000));
                }
                if self.one_in(3) {
                    w.push(b"MATCH".to_vec());
                    w.push(self.pick(&[&b"k:*"[..], b"*", b"w:?"]).to_vec());
                }
                w
            }
            83..=85 => vec![b"MEMORY".to_vec(), b"USAGE".to_vec(), k(self)],
            86..=87 => vec![b"DEBUG".to_vec(), b"DIGEST-VALUE".to_vec(), k(self)],
            88..=91 => vec![
                self.pick(&[&b"TTL"[..], b"PTTL", b"EXISTS"]).to_vec(),
                k(self),
            ],
            92..=93 => vec![self.pick(&[&b"GET"[..], b"STRLEN"]).to_vec(), k(self)],
            94 => vec![b"APPEND".to_vec(), k(self), b"x".to_vec()],
            _ => vec![b"RANDOMKEY".to_vec()],
        };
        Cmd {
            words: w,
            module: false,
        }
    }

    /// A random command (never MULTI/EXEC, SELECT or anything that flushes or swaps).
    fn command(&mut self) -> Cmd {
        if self.below(100) < 60 {
            self.hc_command()
        } else {
            self.plain_command()
        }
    }
}

// ------------------------------------------------------------------------------------------
// The shadow model.

#[derive(Debug, Clone, PartialEq)]
struct ModelEntry {
    value: Vec<u8>,
    tags: BTreeSet<String>,
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<String, ModelEntry>,
    leases: LeaseModel,
    ops: u64,
}

/// What the model knows of the server's lease on one model key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    /// None: a fill of the key is refused whatever its token.
    Absent,
    /// Held since this model clock: tokens from then on may fill the key.
    Since(u64),
    /// The background removal of an entry `HC.DELTAG` removed may have dropped it, or may
    /// still: tokens from `certain_from` on may fill; older ones may or may not.
    Uncertain { certain_from: Option<u64> },
}

/// The model's decision on a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Refuse,
    /// Either is right (see [`Lease::Uncertain`]).
    Either,
}

/// The fill leases of the model keys, on a clock that moves at every model operation and
/// every history reset (the same order as the server's positions, which is all a fill's
/// check compares).
#[derive(Default)]
struct LeaseModel {
    clock: u64,
    /// The clock of the last history reset.
    reset_at: u64,
    /// Model keys with a lease (any other key: [`Lease::Absent`]).
    leases: BTreeMap<String, Lease>,
    /// Model tags and the clock of their last removal.
    removed: BTreeMap<String, u64>,
    /// Keys `HC.DELTAG` removed that the background removal may not have deleted yet.
    doomed: BTreeSet<String>,
    /// Tokens the model read, with the clock of the read.
    tokens: Vec<(Vec<u8>, u64, String)>,
    accepted: u64,
    refused: u64,
    either: u64,
    /// Fills NX/XX blocked (nil, not counted as fills).
    blocked: u64,
    /// Leased reads of a hit without ALWAYS (no token, no lease).
    hits_without_token: u64,
    /// Raw DEL/UNLINK of model keys, and those of them run in another database.
    raw_deletes: u64,
    raw_deletes_elsewhere: u64,
}

impl LeaseModel {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Any change to `key` (a write, a delete, an accepted fill) drops its lease.
    fn changed(&mut self, key: &str) {
        self.tick();
        self.leases.remove(key);
    }

    /// `HC.SET` replaced the entry: the background removal will not delete it.
    fn written(&mut self, key: &str) {
        self.changed(key);
        self.doomed.remove(key);
    }

    fn tags_removed<'a>(&mut self, tags: impl IntoIterator<Item = &'a String>) {
        let at = self.tick();
        for tag in tags {
            self.removed.insert(tag.clone(), at);
        }
    }

    /// FLUSHDB, SWAPDB, DEBUG RELOAD (any database): no older token fills anything.
    fn reset(&mut self) {
        self.reset_at = self.tick();
        self.leases.clear();
    }

    /// `HC.FETCH key LEASE` answered `token`.
    fn leased(&mut self, key: &str, token: Vec<u8>) {
        let at = self.tick();
        let lease = if self.doomed.contains(key) {
            Lease::Uncertain { certain_from: None }
        } else {
            match self.leases.get(key).copied().unwrap_or(Lease::Absent) {
                Lease::Absent => Lease::Since(at),
                Lease::Since(since) => Lease::Since(since),
                Lease::Uncertain { certain_from } => Lease::Uncertain {
                    certain_from: certain_from.or(Some(at)),
                },
            }
        };
        self.leases.insert(key.to_string(), lease);
        self.tokens.push((token, at, key.to_string()));
        if self.tokens.len() > MODEL_TOKENS {
            self.tokens.remove(0);
        }
    }

    /// The background removals are done: no lease can be dropped by them any more.
    fn removals_done(&mut self) {
        self.doomed.clear();
    }

    /// Whether a fill of `key` naming or carrying `tags`, with a token read at `read`
    /// (`None`: not a token of this server), is written.
    fn verdict<'a>(
        &self,
        key: &str,
        read: Option<u64>,
        tags: impl IntoIterator<Item = &'a String>,
    ) -> Verdict {
        let Some(read) = read else {
            return Verdict::Refuse;
        };
        if self.reset_at > read {
            return Verdict::Refuse;
        }
        let tag_removed = tags
            .into_iter()
            .any(|tag| self.removed.get(tag).is_some_and(|&at| at > read));
        if tag_removed {
            return Verdict::Refuse;
        }
        match self.leases.get(key).copied().unwrap_or(Lease::Absent) {
            Lease::Absent => Verdict::Refuse,
            Lease::Since(since) if since <= read => Verdict::Accept,
            Lease::Since(_) => Verdict::Refuse,
            Lease::Uncertain {
                certain_from: Some(from),
            } if read >= from => Verdict::Accept,
            Lease::Uncertain { .. } => Verdict::Either,
        }
    }
}

/// What the words of an `HC.FETCH` command ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchForm {
    /// `HC.FETCH key`.
    Plain,
    /// `HC.FETCH key LEASE`: a token on a miss, nil on a hit.
    Lease,
    /// `HC.FETCH key LEASE ALWAYS`: a token either way.
    LeaseAlways,
    /// One or two words after the key that are not these: a syntax error.
    UnknownOption,
    /// No key, or three words after it: an arity error.
    WrongArity,
}

/// The form of `HC.FETCH` command `words` (any case).
fn fetch_form(words: &[Vec<u8>]) -> FetchForm {
    let is = |word: &Vec<u8>, option: &str| word.eq_ignore_ascii_case(option.as_bytes());
    match words {
        [_, _] => FetchForm::Plain,
        [_, _, lease] if is(lease, command::option::LEASE) => FetchForm::Lease,
        [_, _, lease, always]
            if is(lease, command::option::LEASE) && is(always, command::option::ALWAYS) =>
        {
            FetchForm::LeaseAlways
        }
        [_, _, _] | [_, _, _, _] => FetchForm::UnknownOption,
        _ => FetchForm::WrongArity,
    }
}

/// The token (if any) of a well-formed `HC.FETCH key LEASE [ALWAYS]` reply from the server
/// of `origin`, or what is wrong with the reply: a token on a miss, and on a hit only
/// with `always`.
fn leased_read(reply: &Reply, origin: &[u8], always: bool) -> Result<Option<Vec<u8>>, String> {
    let Reply::Array(Some(items)) = reply else {
        return Err(format!("HC.FETCH ... LEASE answered {reply:?}"));
    };
    let [value, Reply::Array(Some(tags)), Reply::Int(pttl), Reply::Bulk(Some(from)), Reply::Int(version), Reply::Bulk(token)] =
        items.as_slice()
    else {
        return Err(format!("HC.FETCH ... LEASE answered {reply:?}"));
    };
    if from != origin {
        return Err(format!("HC.FETCH ... LEASE names origin {:?}", show(from)));
    }
    if let Some(token) = token {
        let well_formed_token = token
            .strip_prefix(origin)
            .and_then(|rest| rest.strip_prefix(b":"))
            .is_some_and(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
        if !well_formed_token {
            return Err(format!("HC.FETCH ... LEASE gave token {:?}", show(token)));
        }
    }
    let shape_ok = match value {
        Reply::Bulk(None) => tags.is_empty() && *pttl == -2 && *version == 0,
        Reply::Bulk(Some(_)) => {
            (*pttl == -1 || *pttl >= 0)
                && *version >= 0
                && tags.iter().all(|t| matches!(t, Reply::Bulk(Some(_))))
        }
        _ => false,
    };
    if !shape_ok {
        return Err(format!("HC.FETCH ... LEASE answered {reply:?}"));
    }
    let hit = matches!(value, Reply::Bulk(Some(_)));
    if token.is_some() != (!hit || always) {
        let form = if always { "LEASE ALWAYS" } else { "LEASE" };
        return Err(format!(
            "HC.FETCH ... {form} on a {} answered {reply:?}",
            if hit { "hit" } else { "miss" }
        ));
    }
    Ok(token.clone())
}

/// What is wrong with `reply` to an `HC.FETCH` of `form` that must fail, if anything.
fn fetch_error_problem(form: FetchForm, reply: &Reply) -> Option<String> {
    let expected: &[u8] = match form {
        FetchForm::UnknownOption => b"ERR syntax error, unknown option '",
        FetchForm::WrongArity => b"ERR wrong number of arguments",
        _ => return None,
    };
    match reply {
        // A key outside the restricted user's patterns.
        Reply::Error(text) if text.starts_with(b"NOPERM") => None,
        Reply::Error(text) if text.starts_with(expected) => None,
        _ => Some(format!(
            "HC.FETCH of form {form:?} answered {reply:?}, not {:?}...",
            show(expected)
        )),
    }
}

/// What is wrong with a reply to `HC.HELLO` from the server of `origin`, if anything.
fn hello_problem(reply: &Reply, origin: &[u8]) -> Option<String> {
    let text = |t: &str| Reply::Bulk(Some(t.as_bytes().to_vec()));
    let expected = [
        text("module"),
        text(MODULE_NAME),
        text("version"),
        text(env!("CARGO_PKG_VERSION")),
        text("events"),
        Reply::Int(i64::from(FORMAT_VERSION)),
        text("leases"),
        Reply::Int(LEASE_VERSION),
        text("channel"),
        text(DEFAULT_CHANNEL),
        text("origin"),
        Reply::Bulk(Some(origin.to_vec())),
    ];
    match reply {
        Reply::Array(Some(items)) if items.as_slice() == expected.as_slice() => None,
        _ => Some(format!("HC.HELLO answered {reply:?}")),
    }
}

fn model_key(i: u64) -> String {
    format!("model:{i}")
}

fn model_tag(i: u64) -> String {
    format!("mtag:{i}")
}

// ------------------------------------------------------------------------------------------
// The fuzzer.

/// One connection of the random part.
struct FuzzConn {
    resp: Resp,
    name: &'static str,
}

#[derive(Default)]
struct Stats {
    commands: u64,
    error_replies: u64,
    codes: BTreeMap<String, u64>,
    /// Error replies by their first words, for the summary.
    messages: BTreeMap<String, u64>,
    pipelines: u64,
    bulks: u64,
    transactions: u64,
    restores_ok: u64,
    checks: u64,
    /// `HC.FETCH ... LEASE` hits, which answer no token.
    leased_hits_without_token: u64,
    /// Malformed `HC.FETCH` options refused.
    fetch_errors: u64,
}

struct Fuzz {
    server: RedisServer,
    seed: u64,
    gen: Gen,
    conns: Vec<FuzzConn>,
    check: Resp,
    model_con: Resp,
    model: Model,
    stats: Stats,
    last: String,
}

impl Fuzz {
    fn fail(&mut self, what: &str) -> ! {
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
    fn check_reply(&mut self, cmd: &Cmd, reply: &Reply) {
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

    fn read_reply(&mut self, conn: usize, cmd: &Cmd) -> Reply {
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

    fn send(&mut self, conn: usize, batch: &[&[Vec<u8>]]) {
        self.stats.commands += batch.len() as u64;
        if let Err(e) = self.conns[conn].resp.send(batch) {
            self.last = batch.last().map_or_else(String::new, |w| describe(w));
            self.fail(&format!("sending failed: {e}"));
        }
    }

    fn single(&mut self, conn: usize) {
        let cmd = self.gen.command();
        self.send(conn, &[cmd.words.as_slice()]);
        let reply = self.read_reply(conn, &cmd);
        self.check_reply(&cmd, &reply);
    }

    fn pipeline(&mut self, conn: usize) {
        self.stats.pipelines += 1;
        let n = 2 + self.gen.below(15);
        let cmds: Vec<Cmd> = (0..n).map(|_| self.gen.command()).collect();
        let batch: Vec<&[Vec<u8>]> = cmds.iter().map(|c| c.words.as_slice()).collect();
        self.send(conn, &batch);
        for cmd in &cmds {
            let reply = self.read_reply(conn, cmd);
            self.check_reply(cmd, &reply);
        }
    }

    /// MULTI, some commands, EXEC or DISCARD, in one pipeline; the replies must be those
    /// Redis specifies: OK, QUEUED or an error per command, then the results, EXECABORT
    /// when a command was refused (OOM over maxmemory), or OK for DISCARD.
    fn transaction(&mut self, conn: usize) {
        self.stats.transactions += 1;
        let n = 1 + self.gen.below(8);
        let cmds: Vec<Cmd> = (0..n).map(|_| self.gen.command()).collect();
        let discard = self.gen.one_in(6);
        let multi = Cmd {
            words: words(&["MULTI"]),
            module: false,
        };
        let end = Cmd {
            words: words(&[if discard { "DISCARD" } else { "EXEC" }]),
            module: false,
        };
        let mut batch: Vec<&[Vec<u8>]> = vec![&multi.words];
        batch.extend(cmds.iter().map(|c| c.words.as_slice()));
        batch.push(&end.words);
        self.send(conn, &batch);
        let reply = self.read_reply(conn, &multi);
        if reply != Reply::Status(b"OK".to_vec()) {
            self.fail(&format!("MULTI answered {reply:?}"));
        }
        let mut refused = false;
        for cmd in &cmds {
            let reply = self.read_reply(conn, cmd);
            self.check_reply(cmd, &reply);
            match reply {
                Reply::Status(s) if s == b"QUEUED" => {}
                Reply::Error(_) => refused = true,
                other => {
                    self.last = describe(&cmd.words);
                    self.fail(&format!("inside MULTI: {other:?} instead of QUEUED"));
                }
            }
        }
        let reply = self.read_reply(conn, &end);
        self.check_reply(&end, &reply);
        match (&reply, discard, refused) {
            (Reply::Status(s), true, _) if s == b"OK" => {}
            (Reply::Error(e), false, true) if e.starts_with(b"EXECABORT") => {}
            // Over maxmemory, EXEC of a block with a write is refused as a whole.
            (Reply::Error(e), false, false) if e.starts_with(b"OOM") => {}
            (Reply::Array(Some(items)), false, false) if items.len() == cmds.len() => {
                for (cmd, item) in cmds.iter().zip(items) {
                    self.check_reply(cmd, item);
                }
            }
            _ => {
                self.last = format!("MULTI block of {}", cmds.len());
                self.fail(&format!(
                    "{} answered {reply:?} (refused inside: {refused})",
                    show(&end.words[0])
                ));
            }
        }
    }

    fn call_checked(&mut self, conn: usize, w: Vec<Vec<u8>>) -> Reply {
        let cmd = Cmd {
            words: w,
            module: false,
        };
        self.send(conn, &[cmd.words.as_slice()]);
        let reply = self.read_reply(conn, &cmd);
        self.check_reply(&cmd, &reply);
        reply
    }

    /// SELECT, SWAPDB, FLUSHDB and DEBUG RELOAD, which the model's database 0 must escape.
    fn control(&mut self, conn: usize) {
        match self.gen.below(100) {
            0..=79 => {
                let db = self.gen.below(DBS);
                let reply =
                    self.call_checked(conn, vec![b"SELECT".to_vec(), db.to_string().into_bytes()]);
                if reply != Reply::Status(b"OK".to_vec()) {
                    self.fail(&format!("SELECT {db} answered {reply:?}"));
                }
            }
            80..=92 => {
                let a = 1 + self.gen.below(DBS - 1);
                let b = if self.gen.one_in(8) {
                    b"99".to_vec()
                } else {
                    (1 + self.gen.below(DBS - 1)).to_string().into_bytes()
                };
                let reply =
                    self.call_checked(0, vec![b"SWAPDB".to_vec(), a.to_string().into_bytes(), b]);
                if reply == Reply::Status(b"OK".to_vec()) {
                    self.model.leases.reset();
                }
            }
            93..=98 => {
                // On the admin connection, never in database 0.
                let db = 1 + self.gen.below(DBS - 1);
                self.call_checked(0, vec![b"SELECT".to_vec(), db.to_string().into_bytes()]);
                let mode = self.gen.pick(&[&b"ASYNC"[..], b"SYNC", b""]).to_vec();
                let mut w = vec![b"FLUSHDB".to_vec()];
                if !mode.is_empty() {
                    w.push(mode);
                }
                if self.call_checked(0, w) == Reply::Status(b"OK".to_vec()) {
                    self.model.leases.reset();
                }
            }
            _ if self.gen.one_in(5) => {
                let reply = self.call_checked(0, words(&["DEBUG", "RELOAD"]));
                if reply != Reply::Status(b"OK".to_vec()) {
                    self.fail(&format!("DEBUG RELOAD answered {reply:?}"));
                }
                self.model.leases.reset();
            }
            _ => {
                let db = self.gen.below(DBS);
                self.call_checked(conn, vec![b"SELECT".to_vec(), db.to_string().into_bytes()]);
            }
        }
    }

    /// Writes up to [`BULK_MAX`] keys `k:b<i>` with tag `t:bulk`, invalidates the tag, and
    /// at once (same pipeline, before the background removal runs) sends random commands,
    /// sometimes a SWAPDB, FLUSHDB or DEBUG RELOAD, at keys that are logically deleted but
    /// still in the keyspace. HC.DELTAG must count exactly the entries written.
    fn bulk(&mut self) {
        self.stats.bulks += 1;
        let n = 100 + self.gen.below(BULK_MAX - 100);
        let mut batch: Vec<Cmd> = (0..n)
            .map(|i| Cmd {
                words: vec![
                    command::SET.into(),
                    format!("k:b{i}").into_bytes(),
                    self.gen.printable(8),
                    b"TAGS".to_vec(),
                    b"t:bulk".to_vec(),
                    format!("t:{}", i % 12).into_bytes(),
                ],
                module: true,
            })
            .collect();
        batch.push(Cmd {
            words: words(&[command::DELTAG, "t:bulk"]),
            module: true,
        });
        let after = match self.gen.below(20) {
            0 => Some(words(&["SWAPDB", "1", "2"])),
            1 => Some(words(&["FLUSHDB"])),
            2 if self.gen.one_in(4) => Some(words(&["DEBUG", "RELOAD"])),
            _ => None,
        };
        let db = if after.is_some() {
            // Never database 0, which the model uses.
            1 + self.gen.below(DBS - 1)
        } else {
            self.gen.below(DBS)
        };
        batch.insert(
            0,
            Cmd {
                words: vec![b"SELECT".to_vec(), db.to_string().into_bytes()],
                module: false,
            },
        );
        for _ in 0..self.gen.below(30) {
            batch.push(self.gen.command());
        }
        let reset_at = after.as_ref().map(|_| batch.len());
        if let Some(words) = after {
            batch.push(Cmd {
                words,
                module: false,
            });
        }
        for _ in 0..self.gen.below(30) {
            batch.push(self.gen.command());
        }
        let refs: Vec<&[Vec<u8>]> = batch.iter().map(|c| c.words.as_slice()).collect();
        self.send(0, &refs);
        let mut written = 0;
        for (i, cmd) in batch.iter().enumerate() {
            let reply = self.read_reply(0, cmd);
            self.check_reply(cmd, &reply);
            if (1..=n as usize).contains(&i) && reply == Reply::Status(b"OK".to_vec()) {
                written += 1;
            }
            if Some(i) == reset_at && reply == Reply::Status(b"OK".to_vec()) {
                self.model.leases.reset();
            }
            if i == n as usize + 1 && reply != Reply::Int(written) {
                self.last = describe(&cmd.words);
                self.fail(&format!(
                    "HC.DELTAG of {written} freshly written keys answered {reply:?}"
                ));
            }
        }
    }

    /// `pending_removals` of `INFO hybridcache`, on the model's connection.
    fn pending_removals(&mut self) -> i64 {
        self.stats.commands += 1;
        let reply = self.model_con.call(&words(&["INFO", "hybridcache"]));
        let text = match reply {
            Ok(Reply::Bulk(Some(text))) => String::from_utf8_lossy(&text).into_owned(),
            other => self.fail(&format!("INFO hybridcache answered {other:?}")),
        };
        let field = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("hybridcache_pending_removals:"))
            .and_then(|n| n.parse().ok());
        match field {
            Some(n) => n,
            None => self.fail(&format!(
                "INFO hybridcache without pending_removals: {text}"
            )),
        }
    }

    /// A value for a model key.
    fn model_value(&mut self) -> Vec<u8> {
        let g = &mut self.gen;
        match g.below(4) {
            0 => Vec::new(),
            1 => {
                let n = g.below(40) as usize;
                g.bytes(n)
            }
            _ => {
                let n = g.below(40) as usize;
                g.printable(n)
            }
        }
    }

    /// NX, XX or neither, and whether it lets a write of `key` happen.
    fn model_condition(&mut self, key: &str) -> (Option<&'static str>, bool) {
        let condition = match self.gen.below(10) {
            0 => Some("NX"),
            1 => Some("XX"),
            _ => None,
        };
        let exists = self.model.entries.contains_key(key);
        let applies = match condition {
            Some("NX") => !exists,
            Some(_) => exists,
            None => true,
        };
        (condition, applies)
    }

    /// `TAGS` and up to four model tags, appended to `w`; the tags.
    fn model_tags(&mut self, w: &mut Vec<Vec<u8>>) -> BTreeSet<String> {
        let mut tags = BTreeSet::new();
        let n = self.gen.below(5);
        if n > 0 {
            w.push(self.gen.random_case("TAGS"));
            for _ in 0..n {
                let tag = model_tag(self.gen.below(MODEL_TAGS));
                w.push(tag.clone().into_bytes());
                tags.insert(tag);
            }
        }
        tags
    }

    /// A token for a fill of `key` and the model clock of the read that gave it (`None`
    /// for tokens this server never gave): mostly the latest read of the key, else any read
    /// (stale, or of another key), a token of another origin, or garbage.
    fn model_token(&mut self, key: &str) -> (Vec<u8>, Option<u64>) {
        let tokens = &self.model.leases.tokens;
        let latest = tokens.iter().rev().find(|(_, _, k)| k == key);
        let g = &mut self.gen;
        match g.below(10) {
            0..=5 if latest.is_some() => latest.map(|(t, at, _)| (t.clone(), Some(*at))).unwrap(),
            0..=7 if !tokens.is_empty() => {
                let (token, at, _) = &tokens[g.below(tokens.len() as u64) as usize];
                (token.clone(), Some(*at))
            }
            8 if !tokens.is_empty() => {
                let (token, _, _) = &tokens[g.below(tokens.len() as u64) as usize];
                (Gen::other_origin(token), None)
            }
            _ => {
                let garbage = g
                    .pick(&["", "x", ":", ":1", "0:0", "LEASE"])
                    .as_bytes()
                    .to_vec();
                (garbage, None)
            }
        }
    }

    /// `tenths` times in ten a model key among the last leased reads (when there are any),
    /// so that changes meet live leases and fills meet the changes; else any model key.
    fn model_key_read_lately(&mut self, tenths: u64) -> String {
        let tokens = &self.model.leases.tokens;
        let recent = &tokens[tokens.len().saturating_sub(8)..];
        if !recent.is_empty() && self.gen.below(10) < tenths {
            recent[self.gen.below(recent.len() as u64) as usize]
                .2
                .clone()
        } else {
            model_key(self.gen.below(MODEL_KEYS))
        }
    }

    /// One well-formed operation on the model's keys, its reply checked against the model.
    fn model_step(&mut self) {
        self.model.ops += 1;
        let kind = self.gen.below(100);
        if (92..=96).contains(&kind) {
            return self.model_raw_delete();
        }
        let (w, expected): (Vec<Vec<u8>>, ModelOutcome) = match kind {
            0..=54 => {
                let key = self.model_key_read_lately(3);
                let value = self.model_value();
                let mut w = vec![
                    self.gen.hc_name(command::SET),
                    key.clone().into_bytes(),
                    value.clone(),
                ];
                let (condition, applies) = self.model_condition(&key);
                if let Some(c) = condition {
                    w.push(self.gen.random_case(c));
                }
                let get_version = self.gen.one_in(5);
                if get_version {
                    w.push(self.gen.random_case("GETVERSION"));
                }
                let tags = self.model_tags(&mut w);
                (
                    w,
                    ModelOutcome::Set {
                        key,
                        entry: ModelEntry { value, tags },
                        applies,
                        get_version,
                    },
                )
            }
            55..=69 => {
                let key = model_key(self.gen.below(MODEL_KEYS));
                let mut w = vec![
                    self.gen.hc_name(command::FETCH),
                    key.clone().into_bytes(),
                    self.gen.random_case("LEASE"),
                ];
                let always = self.gen.one_in(3);
                if always {
                    w.push(self.gen.random_case("ALWAYS"));
                }
                (w, ModelOutcome::Fetch { key, always })
            }
            70..=85 => {
                // Mostly a key read lately, as a cache would fill it.
                let key = self.model_key_read_lately(7);
                let value = self.model_value();
                let mut w = vec![
                    self.gen.hc_name(command::SET),
                    key.clone().into_bytes(),
                    value.clone(),
                ];
                let mut options = Vec::new();
                let (condition, condition_ok) = self.model_condition(&key);
                if let Some(c) = condition {
                    options.push(vec![self.gen.random_case(c)]);
                }
                let get_version = self.gen.one_in(5);
                if get_version {
                    options.push(vec![self.gen.random_case("GETVERSION")]);
                }
                let (token, read) = self.model_token(&key);
                let at = self.gen.below(options.len() as u64 + 1) as usize;
                options.insert(at, vec![self.gen.random_case("LEASE"), token]);
                w.extend(options.into_iter().flatten());
                let tags = self.model_tags(&mut w);
                if self.model.leases.doomed.contains(&key) && self.pending_removals() == 0 {
                    self.model.leases.removals_done();
                }
                let stored = self.model.entries.get(&key).map(|e| &e.tags);
                let verdict = self.model.leases.verdict(
                    &key,
                    read,
                    tags.iter().chain(stored.into_iter().flatten()),
                );
                (
                    w,
                    ModelOutcome::Fill {
                        key,
                        entry: ModelEntry { value, tags },
                        verdict,
                        condition_ok,
                        get_version,
                    },
                )
            }
            86..=91 => {
                let g = &mut self.gen;
                let mut keys = BTreeSet::new();
                for _ in 0..1 + g.below(3) {
                    keys.insert(model_key(g.below(MODEL_KEYS)));
                }
                let mut w = vec![g.hc_name(command::DEL)];
                w.extend(keys.iter().map(|k| k.clone().into_bytes()));
                let count = keys
                    .iter()
                    .filter(|k| self.model.entries.contains_key(*k))
                    .count();
                (
                    w,
                    ModelOutcome::Removed {
                        keys,
                        count,
                        tags: None,
                    },
                )
            }
            _ => {
                let g = &mut self.gen;
                let mut w = vec![g.hc_name(command::DELTAG)];
                let mut tags = BTreeSet::new();
                for _ in 0..1 + g.below(2) {
                    let tag = model_tag(g.below(MODEL_TAGS));
                    w.push(tag.clone().into_bytes());
                    tags.insert(tag);
                }
                let keys: BTreeSet<String> = self
                    .model
                    .entries
                    .iter()
                    .filter(|(_, e)| !e.tags.is_disjoint(&tags))
                    .map(|(k, _)| k.clone())
                    .collect();
                let count = keys.len();
                (
                    w,
                    ModelOutcome::Removed {
                        keys,
                        count,
                        tags: Some(tags),
                    },
                )
            }
        };
        self.stats.commands += 1;
        let reply = match self.model_con.call(&w) {
            Ok(reply) => reply,
            Err(e) => {
                self.last = describe(&w);
                self.fail(&format!("model connection: no reply: {e}"))
            }
        };
        let cmd = Cmd {
            words: w.clone(),
            module: true,
        };
        self.check_reply(&cmd, &reply);
        if let Reply::Error(text) = &reply {
            if text.starts_with(b"OOM") {
                return; // refused before running: nothing changed
            }
        }
        let ok = match expected {
            ModelOutcome::Set {
                key,
                entry,
                applies,
                get_version,
            } => {
                let ok = match (&reply, applies, get_version) {
                    (Reply::Bulk(None), false, _) => true,
                    (Reply::Status(s), true, false) => s == b"OK",
                    (Reply::Array(Some(items)), true, true) => {
                        matches!(items.as_slice(), [Reply::Bulk(Some(_)), Reply::Int(v)] if *v > 0)
                    }
                    _ => false,
                };
                if applies {
                    self.model.entries.insert(key.clone(), entry);
                    self.model.leases.written(&key);
                } else {
                    // Refused by NX/XX: still a change of the key for its leases.
                    self.model.leases.changed(&key);
                }
                ok
            }
            ModelOutcome::Fetch { key, always } => {
                // check_reply has checked the form and kept the token for the random part.
                let token = match leased_read(&reply, &self.gen.origin, always) {
                    Ok(token) => token,
                    Err(problem) => {
                        self.last = describe(&w);
                        self.fail(&problem)
                    }
                };
                let expected = self.model.entries.get(&key);
                let Reply::Array(Some(items)) = &reply else {
                    unreachable!("leased_read accepted {reply:?}")
                };
                let want_tags: Vec<String> = expected
                    .map(|e| e.tags.iter().cloned().collect())
                    .unwrap_or_default();
                let ok = items[0] == Reply::Bulk(expected.map(|e| e.value.clone()))
                    && sorted_texts(Some(items[1].clone())) == Some(want_tags)
                    && items[2] == Reply::Int(if expected.is_some() { -1 } else { -2 });
                // A lease exists only where a token was given: a hit without ALWAYS
                // leaves the key's lease as it was (absent or not).
                match token {
                    Some(token) => self.model.leases.leased(&key, token),
                    None => self.model.leases.hits_without_token += 1,
                }
                ok
            }
            ModelOutcome::Fill {
                key,
                entry,
                verdict,
                condition_ok,
                get_version,
            } => {
                let written = match (&reply, get_version) {
                    (Reply::Status(s), false) if s == b"OK" => Some(true),
                    (Reply::Array(Some(items)), true) if matches!(items.as_slice(), [Reply::Bulk(Some(_)), Reply::Int(v)] if *v > 0) => {
                        Some(true)
                    }
                    (Reply::Bulk(None), _) => Some(false),
                    _ => None,
                };
                let leases = &mut self.model.leases;
                if condition_ok {
                    match written {
                        Some(true) => leases.accepted += 1,
                        Some(false) => leases.refused += 1,
                        None => {}
                    }
                    if verdict == Verdict::Either {
                        leases.either += 1;
                    }
                } else {
                    // Blocked by NX/XX before its token is looked at: not a fill, but a
                    // change of the key all the same.
                    leases.blocked += 1;
                    leases.changed(&key);
                }
                if written == Some(true) {
                    self.model.entries.insert(key.clone(), entry);
                    self.model.leases.written(&key);
                }
                match written {
                    None => false,
                    Some(true) => condition_ok && verdict != Verdict::Refuse,
                    Some(false) => !condition_ok || verdict != Verdict::Accept,
                }
            }
            ModelOutcome::Removed { keys, count, tags } => {
                if let Some(tags) = &tags {
                    self.model.leases.tags_removed(tags);
                }
                for key in &keys {
                    self.model.entries.remove(key);
                    self.model.leases.changed(key);
                    if tags.is_some() {
                        self.model.leases.doomed.insert(key.clone());
                    }
                }
                reply == Reply::Int(count as i64)
            }
        };
        if !ok {
            self.last = describe(&w);
            self.fail(&format!(
                "model command answered {reply:?}, not what the model expects"
            ));
        }
    }

    /// A raw `DEL`/`UNLINK` of one to three model keys: alone, in `MULTI`/`EXEC`, from a
    /// Lua script (database 0), or in another database, where model keys never exist. Each
    /// named key's lease ends, missing or not, and in database 0 even for a deletion run
    /// in another one (the module's command filter does not know the database). A key
    /// `HC.DELTAG` removed may still be in the keyspace, so the count may include it.
    fn model_raw_delete(&mut self) {
        let mut keys = BTreeSet::from([self.model_key_read_lately(7)]);
        let g = &mut self.gen;
        for _ in 0..g.below(3) {
            keys.insert(model_key(g.below(MODEL_KEYS)));
        }
        let name = *g.pick(&["DEL", "UNLINK"]);
        let mut delete = vec![g.random_case(name)];
        delete.extend(keys.iter().map(|k| k.clone().into_bytes()));
        let how = g.below(4);
        let elsewhere = 1 + g.below(DBS - 1);
        let batch: Vec<Vec<Vec<u8>>> = match how {
            0 => vec![delete],
            1 => vec![words(&["MULTI"]), delete, words(&["EXEC"])],
            2 => {
                let name = String::from_utf8_lossy(&delete[0]).into_owned();
                let mut eval = words(&[
                    "EVAL",
                    &format!("return redis.call('{name}', unpack(KEYS))"),
                    &keys.len().to_string(),
                ]);
                eval.extend(delete.into_iter().skip(1));
                vec![eval]
            }
            _ => vec![
                vec![b"SELECT".to_vec(), elsewhere.to_string().into_bytes()],
                delete,
                words(&["SELECT", "0"]),
            ],
        };
        let refs: Vec<&[Vec<u8>]> = batch.iter().map(Vec::as_slice).collect();
        self.stats.commands += refs.len() as u64;
        let replies: Result<Vec<Reply>, String> = self
            .model_con
            .send(&refs)
            .and_then(|()| (0..refs.len()).map(|_| self.model_con.read()).collect());
        self.last = format!("{} (as {how})", describe(&batch[batch.len() / 2]));
        let replies = match replies {
            Ok(replies) => replies,
            Err(e) => self.fail(&format!("model connection: no reply: {e}")),
        };
        for (words, reply) in batch.iter().zip(&replies) {
            let cmd = Cmd {
                words: words.clone(),
                module: false,
            };
            self.check_reply(&cmd, reply);
        }
        let ok = Reply::Status(b"OK".to_vec());
        let count = match (how, replies.as_slice()) {
            (0 | 2, [Reply::Int(n)]) => Some(*n),
            (1, [multi, Reply::Status(queued), Reply::Array(Some(items))])
                if *multi == ok && queued == b"QUEUED" =>
            {
                match items.as_slice() {
                    [Reply::Int(n)] => Some(*n),
                    _ => None,
                }
            }
            (3, [select, Reply::Int(n), back]) if *select == ok && *back == ok => Some(*n),
            _ => None,
        };
        let leases = &mut self.model.leases;
        leases.raw_deletes += 1;
        let (low, high) = if how == 3 {
            leases.raw_deletes_elsewhere += 1;
            (0, 0)
        } else {
            let live = keys
                .iter()
                .filter(|k| self.model.entries.contains_key(*k))
                .count();
            let doomed = keys.iter().filter(|k| leases.doomed.contains(*k)).count();
            (live as i64, (live + doomed) as i64)
        };
        for key in &keys {
            leases.changed(key);
            if how != 3 {
                // Gone from the keyspace now: no background removal will delete it.
                leases.doomed.remove(key);
                self.model.entries.remove(key);
            }
        }
        if !count.is_some_and(|n| (low..=high).contains(&n)) {
            self.fail(&format!(
                "raw deletion answered {replies:?}; the model expects a count in {low}..={high}"
            ));
        }
    }

    /// Differences between the server and the model.
    fn model_differences(&mut self) -> Vec<String> {
        let mut batch: Vec<Vec<Vec<u8>>> = Vec::new();
        for i in 0..MODEL_KEYS {
            let key = model_key(i).into_bytes();
            batch.push(vec![command::GET.into(), key.clone()]);
            batch.push(vec![command::TAGS.into(), key]);
        }
        for i in 0..MODEL_TAGS {
            let tag = model_tag(i).into_bytes();
            batch.push(vec![command::TAGKEYS.into(), tag.clone()]);
            batch.push(vec![command::TAGCARD.into(), tag]);
        }
        let refs: Vec<&[Vec<u8>]> = batch.iter().map(Vec::as_slice).collect();
        self.stats.commands += refs.len() as u64;
        let replies: Result<Vec<Reply>, String> = self
            .model_con
            .send(&refs)
            .and_then(|()| (0..refs.len()).map(|_| self.model_con.read()).collect());
        let replies = match replies {
            Ok(r) => r,
            Err(e) => self.fail(&format!("model check: {e}")),
        };
        let mut replies = replies.into_iter();
        let mut differences = Vec::new();
        for i in 0..MODEL_KEYS {
            let key = model_key(i);
            let expected = self.model.entries.get(&key);
            let value = replies.next();
            let tags = replies.next();
            let want_value = Reply::Bulk(expected.map(|e| e.value.clone()));
            if value.as_ref() != Some(&want_value) {
                differences.push(format!("HC.GET {key}: {value:?}, model {want_value:?}"));
            }
            let want_tags: Vec<String> = expected
                .map(|e| e.tags.iter().cloned().collect())
                .unwrap_or_default();
            let got_tags = sorted_texts(tags);
            if got_tags.as_ref() != Some(&want_tags) {
                differences.push(format!("HC.TAGS {key}: {got_tags:?}, model {want_tags:?}"));
            }
        }
        for i in 0..MODEL_TAGS {
            let tag = model_tag(i);
            let want: Vec<String> = self
                .model
                .entries
                .iter()
                .filter(|(_, e)| e.tags.contains(&tag))
                .map(|(k, _)| k.clone())
                .collect();
            let keys = sorted_texts(replies.next());
            if keys.as_ref() != Some(&want) {
                differences.push(format!("HC.TAGKEYS {tag}: {keys:?}, model {want:?}"));
            }
            let card = replies.next();
            if card != Some(Reply::Int(want.len() as i64)) {
                differences.push(format!("HC.TAGCARD {tag}: {card:?}, model {}", want.len()));
            }
        }
        differences
    }

    /// HC.CHECK must report no problem, and the model must match. Returns the pending
    /// removals HC.CHECK reported.
    fn checkpoint(&mut self, when: &str) -> i64 {
        self.stats.checks += 1;
        if !self.server.is_running() {
            self.fail(&format!("{when}: the server process is gone"));
        }
        let reply = match self.check.call(&words(&[command::CHECK])) {
            Ok(r) => r,
            Err(e) => self.fail(&format!("{when}: HC.CHECK got no reply: {e}")),
        };
        let Reply::Array(Some(items)) = &reply else {
            self.fail(&format!("{when}: HC.CHECK answered {reply:?}"))
        };
        let (pending, problems) = match items.as_slice() {
            [_, Reply::Int(_), _, Reply::Int(_), _, Reply::Int(pending), _, Reply::Array(Some(problems))] => {
                (*pending, problems.clone())
            }
            _ => self.fail(&format!("{when}: HC.CHECK answered {reply:?}")),
        };
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .iter()
                .take(30)
                .map(|p| match p {
                    Reply::Bulk(Some(b)) => show(b),
                    other => format!("{other:?}"),
                })
                .collect();
            self.fail(&format!(
                "{when}: HC.CHECK found {} problems:\n{}",
                problems.len(),
                lines.join("\n")
            ));
        }
        let differences = self.model_differences();
        if !differences.is_empty() {
            self.fail(&format!(
                "{when}: the server differs from the model:\n{}",
                differences.join("\n")
            ));
        }
        if pending == 0 {
            self.model.leases.removals_done();
        }
        pending
    }
}

enum ModelOutcome {
    Set {
        key: String,
        entry: ModelEntry,
        applies: bool,
        get_version: bool,
    },
    Fetch {
        key: String,
        always: bool,
    },
    Fill {
        key: String,
        entry: ModelEntry,
        verdict: Verdict,
        condition_ok: bool,
        get_version: bool,
    },
    /// HC.DEL (`tags` None) or HC.DELTAG of `tags`; `keys` are the keys it changes.
    Removed {
        keys: BTreeSet<String>,
        count: usize,
        tags: Option<BTreeSet<String>>,
    },
}

/// An array reply of bulk strings, as sorted lossy text.
fn sorted_texts(reply: Option<Reply>) -> Option<Vec<String>> {
    let Some(Reply::Array(Some(items))) = reply else {
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let Reply::Bulk(Some(bytes)) = item else {
            return None;
        };
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    out.sort();
    Some(out)
}

/// Calls `f` on the text of every error reply in `reply`, nested ones included.
fn visit_errors(reply: &Reply, f: &mut impl FnMut(&[u8])) {
    match reply {
        Reply::Error(text) => f(text),
        Reply::Array(Some(items)) => items.iter().for_each(|i| visit_errors(i, f)),
        _ => {}
    }
}

fn start_fuzz(seed: u64) -> Fuzz {
    let server = RedisServer::builder()
        // A safety net for the rare huge values: evict only keys with a TTL (never the
        // model's), refuse writes otherwise (OOM is a valid error reply).
        .args(["--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru"])
        // RESTORE of corrupted payloads of Redis's own types must be refused, not crash.
        .args(["--sanitize-dump-payload", "yes"])
        .start();
    let port = server.port();
    let mut admin = Resp::connect(port);
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
    for bound in ["hybridcache.fill-leases", "hybridcache.fill-tag-removals"] {
        let reply = admin
            .call(&words(&["CONFIG", "SET", bound, LEASE_BOUND]))
            .unwrap();
        assert_eq!(reply, Reply::Status(b"OK".to_vec()), "CONFIG SET {bound}");
    }
    let hello = admin.call(&words(&[command::HELLO])).unwrap();
    let origin = match &hello {
        Reply::Array(Some(items)) => match items.last() {
            Some(Reply::Bulk(Some(origin))) => origin.clone(),
            _ => panic!("HC.HELLO answered {hello:?}"),
        },
        _ => panic!("HC.HELLO answered {hello:?}"),
    };
    if let Some(problem) = hello_problem(&hello, &origin) {
        panic!("{problem}");
    }
    let mut limited = Resp::connect(port);
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
        check: Resp::connect(port),
        model_con: Resp::connect(port),
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
        gen: Gen {
            rng: SplitMix64::new(seed),
            dumps: Vec::new(),
            tokens: Vec::new(),
            origin,
            start_ms,
            started: Instant::now(),
        },
        model: Model::default(),
        stats: Stats::default(),
        last: String::new(),
    }
}

#[test]
fn random_commands_never_crash_the_server_garble_a_reply_or_break_the_index() {
    let seed = seed_from_env("HC_FUZZ_SEED");
    let secs = env_u64("HC_FUZZ_SECS", DEFAULT_SECS);
    eprintln!("command_fuzz: HC_FUZZ_SEED={seed} HC_FUZZ_SECS={secs}");
    let mut fuzz = start_fuzz(seed);
    let run_time = Duration::from_secs(secs);
    let started = Instant::now();
    let mut next_check = started + CHECK_EVERY;
    while started.elapsed() < run_time {
        let conn = if fuzz.gen.one_in(4) { 1 } else { 0 };
        match fuzz.gen.below(1000) {
            0..=699 => fuzz.single(conn),
            700..=799 => fuzz.pipeline(conn),
            800..=849 => fuzz.transaction(conn),
            850..=979 => fuzz.model_step(),
            980..=998 => fuzz.control(conn),
            _ if fuzz.gen.one_in(3) => fuzz.bulk(),
            _ => fuzz.single(conn),
        }
        if Instant::now() >= next_check {
            fuzz.checkpoint("during the run");
            next_check = Instant::now() + CHECK_EVERY;
        }
    }
    let elapsed = started.elapsed();

    // Every connection still answers, and the index is consistent now and once the
    // background removals of HC.DELTAG are done.
    for i in 0..fuzz.conns.len() {
        let reply = fuzz.conns[i].resp.call(&words(&["PING"]));
        if reply != Ok(Reply::Status(b"PONG".to_vec())) {
            let name = fuzz.conns[i].name;
            fuzz.fail(&format!("PING on the {name} connection answered {reply:?}"));
        }
    }
    fuzz.checkpoint("at the end");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fuzz.checkpoint("while removals finish") > 0 {
        if Instant::now() >= deadline {
            fuzz.fail("pending removals did not reach 0 within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fuzz.server.is_running());
    assert!(
        fuzz.model.ops > 100 && !fuzz.model.entries.is_empty(),
        "the model part hardly ran: {} ops",
        fuzz.model.ops
    );
    let leases = &fuzz.model.leases;
    if fuzz.model.ops > 1000 {
        assert!(
            leases.accepted > 0 && leases.refused > 0,
            "the model's fills were never both accepted and refused: {} accepted, {} refused",
            leases.accepted,
            leases.refused
        );
        assert!(
            leases.hits_without_token > 0 && leases.blocked > 0 && leases.raw_deletes_elsewhere > 0,
            "the model never read a hit without a token ({}), had a fill blocked by NX/XX ({}) \
             or deleted in another database ({})",
            leases.hits_without_token,
            leases.blocked,
            leases.raw_deletes_elsewhere
        );
        assert!(
            fuzz.stats.fetch_errors > 0,
            "no malformed HC.FETCH was refused"
        );
    }

    let s = &fuzz.stats;
    let codes: Vec<String> = s.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    eprintln!(
        "command_fuzz: seed {seed}: {} commands in {:.1} s ({:.0}/s); {} error replies ({}); {} pipelines, {} MULTI blocks, {} bulk invalidations, {} RESTOREs accepted, {} model ops ({} model keys at the end; fills {} accepted, {} refused, {} either way, {} blocked by NX/XX; {} leased hits without a token; {} raw deletions, {} in another database), {} leased hits without a token and {} malformed HC.FETCH refused in the random part, {} checks",
        s.commands,
        elapsed.as_secs_f64(),
        s.commands as f64 / elapsed.as_secs_f64(),
        s.error_replies,
        codes.join(" "),
        s.pipelines,
        s.transactions,
        s.bulks,
        s.restores_ok,
        fuzz.model.ops,
        fuzz.model.entries.len(),
        leases.accepted,
        leases.refused,
        leases.either,
        leases.blocked,
        leases.hits_without_token,
        leases.raw_deletes,
        leases.raw_deletes_elsewhere,
        s.leased_hits_without_token,
        s.fetch_errors,
        s.checks
    );
    let mut messages: Vec<(&String, &u64)> = s.messages.iter().collect();
    messages.sort_by(|a, b| b.1.cmp(a.1));
    for (text, n) in messages.iter().take(25) {
        eprintln!("  {n:>7}  {text}");
    }
}

#[test]
fn error_replies_are_judged_by_their_code_and_characters() {
    assert_eq!(error_reply_problem(b"ERR syntax error", true), None);
    assert_eq!(error_reply_problem(b"WRONGTYPE Operation", true), None);
    assert_eq!(error_reply_problem(b"EXECABORT Transaction", false), None);
    assert_eq!(error_reply_problem(b"NOPERM", false), None);
    assert!(error_reply_problem(b"err lower case", false).is_some());
    assert!(error_reply_problem(b"", false).is_some());
    assert!(error_reply_problem(b" ERR leading space", false).is_some());
    assert!(error_reply_problem(b"ERR nul \0 inside", false).is_some());
    assert!(error_reply_problem(b"ERR tab \t inside", false).is_some());
    assert!(error_reply_problem("ERR caf\u{e9}".as_bytes(), true).is_some());
    assert_eq!(error_reply_problem("ERR caf\u{e9}".as_bytes(), false), None);
}
