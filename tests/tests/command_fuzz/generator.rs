//! The random command generator: HC commands and plain ones on the same keys, with random,
//! empty, binary, huge and invalid arguments; a function of the seed, but for the DUMP
//! payloads and lease tokens kept from replies.

use crate::model::RESERVED;
use hybridcache_tests::client_support::SplitMix64;
use std::time::Instant;

/// At most this many keys (`k:b<i>`) are written and invalidated by one bulk step.
pub(crate) const BULK_MAX: u64 = 3000;

/// One generated command.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub(crate) words: Vec<Vec<u8>>,
    /// One of the module's commands (stricter error text rules).
    pub(crate) module: bool,
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

pub(crate) const BAD_NUMBERS: [&str; 22] = [
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

pub(crate) struct Gen {
    rng: SplitMix64,
    /// Payloads returned by DUMP, for RESTORE.
    pub(crate) dumps: Vec<Vec<u8>>,
    /// Tokens returned by `HC.FETCH ... LEASE`, for `HC.SET ... LEASE`.
    pub(crate) tokens: Vec<Vec<u8>>,
    /// The server's origin (`HC.HELLO`), for forged tokens.
    pub(crate) origin: Vec<u8>,
    /// Server time at the start, and when that was, for EXAT/PXAT around "now".
    start_ms: i64,
    started: Instant,
}

impl Gen {
    /// A generator from `seed`, for the server of `origin`, whose clock reads `start_ms` now.
    pub(crate) fn new(seed: u64, origin: Vec<u8>, start_ms: i64) -> Gen {
        Gen {
            rng: SplitMix64::new(seed),
            dumps: Vec::new(),
            tokens: Vec::new(),
            origin,
            start_ms,
            started: Instant::now(),
        }
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// True one time in `n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    pub(crate) fn printable(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| b' ' + self.below(95) as u8).collect()
    }

    /// `word` with each letter's case flipped at random (commands and options are
    /// case-insensitive).
    pub(crate) fn random_case(&mut self, word: &str) -> Vec<u8> {
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

    pub(crate) fn key(&mut self) -> Vec<u8> {
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

    pub(crate) fn tag(&mut self) -> Vec<u8> {
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

    pub(crate) fn value(&mut self) -> Vec<u8> {
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
    pub(crate) fn number(&mut self, valid_max: u64) -> Vec<u8> {
        if self.below(10) < 6 {
            (1 + self.below(valid_max)).to_string().into_bytes()
        } else {
            self.pick(&BAD_NUMBERS).as_bytes().to_vec()
        }
    }

    /// An absolute time around now (past or future), in ms or s.
    pub(crate) fn abs_time(&mut self, seconds: bool) -> Vec<u8> {
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
    pub(crate) fn other_origin(token: &[u8]) -> Vec<u8> {
        let mut token = token.to_vec();
        if let Some(first) = token.first_mut() {
            *first = if *first == b'0' { b'1' } else { b'0' };
        }
        token
    }

    /// A lease token: mostly one the server gave (any key, database or age), else one of
    /// another origin, a forged position, or garbage.
    pub(crate) fn token(&mut self) -> Vec<u8> {
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

    pub(crate) fn hc_name(&mut self, name: &str) -> Vec<u8> {
        if self.one_in(4) {
            self.random_case(name)
        } else {
            name.as_bytes().to_vec()
        }
    }

    /// `n` arguments made by `arg`, with the count sometimes off by one or zero.
    pub(crate) fn args(&mut self, usual: u64, arg: fn(&mut Gen) -> Vec<u8>) -> Vec<Vec<u8>> {
        let n = match self.below(20) {
            0 => 0,
            1 => usual + 1,
            2 => 100 + self.below(200),
            _ => usual.max(1),
        };
        (0..n).map(|_| arg(self)).collect()
    }

    /// A random command (never MULTI/EXEC, SELECT or anything that flushes or swaps).
    pub(crate) fn command(&mut self) -> Cmd {
        if self.below(100) < 60 {
            self.hc_command()
        } else {
            self.plain_command()
        }
    }
}
