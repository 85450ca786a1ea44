//! The generator's plain Redis commands on the same keys: other types (`WRONGTYPE`),
//! deletes, renames, expiry, copies, moves, `DUMP`/`RESTORE` of valid and corrupted
//! payloads, introspection.

use crate::generator::{Cmd, Gen, BAD_NUMBERS};
use crate::DBS;

impl Gen {
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

    pub(crate) fn plain_command(&mut self) -> Cmd {
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
}
