//! The random part's steps: single commands, pipelines, `MULTI` blocks, database control
//! (`SELECT`, `SWAPDB`, `FLUSHDB`, `DEBUG RELOAD`) and bulk invalidations.

use crate::fuzzer::Fuzz;
use crate::generator::{Cmd, BULK_MAX};
use crate::DBS;
use hybridcache_protocol::command;
use hybridcache_tests::resp::{describe, show, words, Reply};

impl Fuzz {
    pub(crate) fn single(&mut self, conn: usize) {
        let cmd = self.gen.command();
        self.send(conn, &[cmd.words.as_slice()]);
        let reply = self.read_reply(conn, &cmd);
        self.check_reply(&cmd, &reply);
    }

    pub(crate) fn pipeline(&mut self, conn: usize) {
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
    pub(crate) fn transaction(&mut self, conn: usize) {
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

    /// SELECT, SWAPDB, FLUSHDB and DEBUG RELOAD, which the model's database 0 must escape.
    pub(crate) fn control(&mut self, conn: usize) {
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
    pub(crate) fn bulk(&mut self) {
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
        // HC.DELTAGALL of `t:bulk` and one of the `t:<i % 12>`: the keys of that residue.
        let all_of = self.gen.one_in(4).then(|| self.gen.below(12));
        let invalidate = match all_of {
            Some(residue) => vec![
                command::DELTAGALL.into(),
                b"t:bulk".to_vec(),
                format!("t:{residue}").into_bytes(),
            ],
            None if self.gen.one_in(3) => words(&[command::STALETAG, "t:bulk"]),
            None => words(&[command::DELTAG, "t:bulk"]),
        };
        batch.push(Cmd {
            words: invalidate,
            module: true,
        });
        if all_of.is_some() {
            // The other residues go too, so that no `t:bulk` entry outlives its bulk (a later,
            // shorter bulk would count it).
            batch.push(Cmd {
                words: words(&[command::DELTAG, "t:bulk"]),
                module: true,
            });
        }
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
        let (mut written, mut others) = (0, 0);
        for (i, cmd) in batch.iter().enumerate() {
            let reply = self.read_reply(0, cmd);
            self.check_reply(cmd, &reply);
            // Entry `k:b<i - 1>` carries `t:<(i - 1) % 12>`.
            let reached = all_of.is_none_or(|residue| (i as u64).wrapping_sub(1) % 12 == residue);
            if (1..=n as usize).contains(&i) && reply == Reply::Status(b"OK".to_vec()) {
                match reached {
                    true => written += 1,
                    false => others += 1,
                }
            }
            if Some(i) == reset_at && reply == Reply::Status(b"OK".to_vec()) {
                self.model.leases.reset();
            }
            if i == n as usize + 1 && reply != Reply::Int(written) {
                self.last = describe(&cmd.words);
                self.fail(&format!(
                    "HC.DELTAG/HC.DELTAGALL of {written} freshly written keys answered {reply:?}"
                ));
            }
            if all_of.is_some() && i == n as usize + 2 && reply != Reply::Int(others) {
                self.last = describe(&cmd.words);
                self.fail(&format!(
                    "HC.DELTAG after HC.DELTAGALL: {others} keys left, answered {reply:?}"
                ));
            }
        }
    }
}
