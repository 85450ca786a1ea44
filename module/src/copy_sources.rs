//! The database each cross-database `COPY` was sent from, remembered before the command
//! runs (see `client_db`, which needs it to give the client its database back on servers
//! that switch it during a keyspace notification).
//!
//! A `COPY src dst DB n` fires its only notification, `copy_to`, in database `n`: by then
//! the database it was sent from is nowhere to be read. So a command filter reports every
//! command here first, and `copy_to` takes the matching record. Inside `MULTI` the filter
//! sees commands when they are queued: a queued `SELECT` changes the database the queued
//! commands after it will run in, and that is what their records say. Records of copies
//! that fire no notification (a missing source, an existing target) are dropped oldest
//! first once [`CAPACITY`] are kept.

use std::collections::VecDeque;

/// Records kept at most; a copy is recorded and taken within one command execution, so
/// only copies that never notified age out.
pub const CAPACITY: usize = 64;

/// A client's connection, as the server numbers it.
pub type ClientId = u64;

#[derive(Debug, Default)]
pub struct CopySources {
    /// Clients inside `MULTI` that queued a `SELECT`: the database it selects.
    queued_select: Vec<(ClientId, i32)>,
    pending: VecDeque<Pending>,
}

#[derive(Debug)]
struct Pending {
    client: ClientId,
    to_db: i32,
    key: Box<[u8]>,
    from_db: i32,
}

/// What the filter knows of the client sending a command.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub client: ClientId,
    /// The client's selected database now.
    pub db: i32,
    /// The client is inside `MULTI`: this command is being queued, not run.
    pub queuing: bool,
}

impl CopySources {
    pub const fn new() -> Self {
        Self {
            queued_select: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    /// Notes a command before it runs (or is queued); `args[0]` is its name.
    pub fn command(&mut self, sender: Sender, args: &[&[u8]]) {
        let Some(name) = args.first() else {
            return;
        };
        if name.eq_ignore_ascii_case(b"copy") {
            self.copy(sender, args);
        } else if name.eq_ignore_ascii_case(b"select") {
            if sender.queuing {
                if let Some(db) = args.get(1).and_then(|a| parse_db(a)) {
                    self.forget_select(sender.client);
                    self.queued_select.push((sender.client, db));
                }
            }
        } else if name.eq_ignore_ascii_case(b"multi")
            || name.eq_ignore_ascii_case(b"exec")
            || name.eq_ignore_ascii_case(b"discard")
        {
            // A transaction starts or ends: its queued SELECT no longer applies to what
            // comes next (the records of its copies are already made).
            self.forget_select(sender.client);
        }
    }

    /// The database the copy to `key` in `to_db` was sent from, if it was recorded.
    pub fn take(&mut self, client: ClientId, to_db: i32, key: &[u8]) -> Option<i32> {
        let at = self
            .pending
            .iter()
            .position(|p| p.client == client && p.to_db == to_db && *p.key == *key)?;
        self.pending.remove(at).map(|p| p.from_db)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    fn copy(&mut self, sender: Sender, args: &[&[u8]]) {
        let (Some(key), Some(to_db)) = (args.get(2), db_option(args)) else {
            return;
        };
        let from_db = match sender.queuing {
            true => self
                .queued_select
                .iter()
                .find(|(client, _)| *client == sender.client)
                .map_or(sender.db, |&(_, db)| db),
            false => sender.db,
        };
        if from_db == to_db {
            return;
        }
        if self.pending.len() >= CAPACITY {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            client: sender.client,
            to_db,
            key: Box::from(*key),
            from_db,
        });
    }

    fn forget_select(&mut self, client: ClientId) {
        self.queued_select.retain(|(c, _)| *c != client);
    }
}

/// `COPY source destination [DB n] [REPLACE]`: the `n`, if given and valid.
fn db_option(args: &[&[u8]]) -> Option<i32> {
    let options = args.get(3..)?;
    let at = options.iter().position(|a| a.eq_ignore_ascii_case(b"db"))?;
    options.get(at + 1).and_then(|a| parse_db(a))
}

fn parse_db(arg: &[u8]) -> Option<i32> {
    std::str::from_utf8(arg)
        .ok()?
        .parse::<i32>()
        .ok()
        .filter(|db| *db >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(client: ClientId, db: i32, queuing: bool) -> Sender {
        Sender {
            client,
            db,
            queuing,
        }
    }

    fn run(sources: &mut CopySources, s: Sender, line: &str) {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        sources.command(s, &args);
    }

    #[test]
    fn a_copy_to_another_db_remembers_where_it_was_sent_from() {
        let mut sources = CopySources::default();
        run(&mut sources, sender(7, 2, false), "COPY a b DB 5 REPLACE");
        assert_eq!(sources.take(7, 5, b"b"), Some(2));
        assert_eq!(sources.take(7, 5, b"b"), None, "taken once");
    }

    #[test]
    fn copies_within_one_db_and_other_commands_are_not_recorded() {
        let mut sources = CopySources::default();
        run(&mut sources, sender(7, 2, false), "COPY a b");
        run(&mut sources, sender(7, 2, false), "copy a b db 2");
        run(&mut sources, sender(7, 2, false), "COPY a b DB x");
        run(&mut sources, sender(7, 2, false), "COPY a b DB -1");
        run(&mut sources, sender(7, 2, false), "SET a b");
        assert_eq!(sources.len(), 0);
    }

    #[test]
    fn records_match_client_db_and_key() {
        let mut sources = CopySources::default();
        run(&mut sources, sender(1, 0, false), "COPY a b DB 3");
        run(&mut sources, sender(2, 4, false), "COPY a b DB 3");
        assert_eq!(sources.take(2, 3, b"a"), None);
        assert_eq!(sources.take(2, 2, b"b"), None);
        assert_eq!(sources.take(2, 3, b"b"), Some(4));
        assert_eq!(sources.take(1, 3, b"b"), Some(0));
    }

    #[test]
    fn a_queued_select_sets_the_source_of_the_copies_queued_after_it() {
        let mut sources = CopySources::default();
        let queuing = sender(9, 0, true);
        run(&mut sources, sender(9, 0, false), "MULTI");
        run(&mut sources, queuing, "COPY a x DB 1");
        run(&mut sources, queuing, "SELECT 3");
        run(&mut sources, queuing, "COPY a y DB 1");
        run(&mut sources, sender(9, 0, false), "EXEC");
        assert_eq!(sources.take(9, 1, b"x"), Some(0));
        assert_eq!(sources.take(9, 1, b"y"), Some(3));
        // After EXEC, the queued SELECT no longer applies.
        run(&mut sources, sender(9, 3, false), "COPY a z DB 1");
        assert_eq!(sources.take(9, 1, b"z"), Some(3));
    }

    #[test]
    fn a_select_outside_multi_is_not_remembered() {
        let mut sources = CopySources::default();
        run(&mut sources, sender(9, 0, false), "SELECT 3");
        run(&mut sources, sender(9, 0, true), "COPY a b DB 1");
        assert_eq!(sources.take(9, 1, b"b"), Some(0));
    }

    #[test]
    fn copies_that_never_notified_age_out() {
        let mut sources = CopySources::default();
        for i in 0..CAPACITY + 10 {
            run(
                &mut sources,
                sender(1, 0, false),
                &format!("COPY a k{i} DB 1"),
            );
        }
        assert_eq!(sources.len(), CAPACITY);
        assert_eq!(sources.take(1, 1, b"k0"), None);
        assert_eq!(
            sources.take(1, 1, format!("k{}", CAPACITY + 9).as_bytes()),
            Some(0)
        );
    }

    #[test]
    fn short_or_empty_commands_are_ignored() {
        let mut sources = CopySources::default();
        sources.command(sender(1, 0, false), &[]);
        run(&mut sources, sender(1, 0, false), "COPY");
        run(&mut sources, sender(1, 0, false), "COPY a");
        run(&mut sources, sender(1, 0, false), "COPY a b DB");
        run(&mut sources, sender(1, 0, true), "SELECT");
        assert_eq!(sources.len(), 0);
    }
}
