//! The database a keyspace notification is about, where the callback's context does not
//! say it.
//!
//! A notification callback reads its database from its context (`GetSelectedDb`): Redis
//! selects the event's database on the callback's client. Valkey 9.1 runs the callback on
//! the executing client and, inside `MULTI`/`EXEC`, leaves that client's own database
//! selected. Only two events name a database other than the one the command runs in: the
//! target side of a cross-database `MOVE` (`move_to`) and `COPY … DB n` (`copy_to`). For
//! those the database is found from what the same command told the module just before:
//!
//! - `COPY`: the data type's `copy2` callback is given the target database
//!   (`GetToDbIdFromOptCtx`) and runs right before `copy_to`, which takes that record.
//! - `MOVE`: its target is never its source, so a `move_to` that reads the database of its
//!   own `move_from` was not selected. Then the target is the database where the key now
//!   holds the very entry that `unlink2` saw leave the source: the caller looks for it
//!   ([`Located::Holding`]).
//!
//! Behaviour is observed per event, not assumed per server: wherever the context does name
//! the event's database, these records change nothing.

use std::os::raw::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// Where the database of one notification is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// The context's selected database.
    Selected,
    /// This database.
    Db(i32),
    /// The database whose key of the event's name holds this entry (a module value).
    Holding(*const c_void),
}

/// What the commands running now told the module about the databases they reach.
#[derive(Debug, Default)]
pub struct Records {
    /// The last cross-database copy made by `copy2`: its target database and key.
    copy: Option<(i32, Box<[u8]>)>,
    /// The database of the last `move_from`, until its `move_to`.
    move_from: Option<i32>,
    /// The source database of the `move_to` being handled.
    move_source: Option<i32>,
}

impl Records {
    pub const fn new() -> Self {
        Self {
            copy: None,
            move_from: None,
            move_source: None,
        }
    }

    /// `copy2` made a copy for `to_key` in `to_db`, from `from_db`.
    pub fn copied(&mut self, from_db: i32, to_db: i32, to_key: &[u8]) {
        self.copy = (to_db != from_db).then(|| (to_db, Box::from(to_key)));
    }

    /// Where the database of `event` on `key` is, the context having `selected` selected;
    /// `left` is the last entry `unlink2` saw leave.
    pub fn locate(
        &mut self,
        event: &str,
        key: &[u8],
        selected: i32,
        left: *const c_void,
    ) -> Located {
        match event {
            "move_from" => {
                self.move_from = Some(selected);
                Located::Selected
            }
            "move_to" => {
                self.move_source = self.move_from.take();
                match self.move_source {
                    Some(source) if source == selected && !left.is_null() => Located::Holding(left),
                    _ => Located::Selected,
                }
            }
            "copy_to" => match self.copy.take() {
                Some((db, copied)) if *copied == *key => Located::Db(db),
                _ => Located::Selected,
            },
            _ => Located::Selected,
        }
    }
}

static RECORDS: Mutex<Records> = Mutex::new(Records::new());

/// The last entry that left the keyspace (as `unlink2` saw it); compared, never read.
static LEFT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// Called by `unlink2` for every entry that leaves: one store.
pub fn entry_left(value: *const c_void) {
    LEFT.store(value.cast_mut(), Ordering::Relaxed);
}

/// Called by `copy2`.
pub fn copied(from_db: i32, to_db: i32, to_key: &[u8]) {
    if let Ok(mut records) = RECORDS.lock() {
        records.copied(from_db, to_db, to_key);
    }
}

/// The database the `move_to` being handled was moved from (its `move_from`'s).
pub fn move_source() -> Option<i32> {
    RECORDS.lock().ok().and_then(|r| r.move_source)
}

/// Where the database of a notification is (see [`Records::locate`]).
pub fn locate(event: &str, key: &[u8], selected: i32) -> Located {
    if !matches!(event, "move_from" | "move_to" | "copy_to") {
        return Located::Selected;
    }
    let left = LEFT.load(Ordering::Relaxed).cast_const();
    RECORDS.lock().map_or(Located::Selected, |mut r| {
        r.locate(event, key, selected, left)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(n: usize) -> *const c_void {
        n as *const c_void
    }

    #[test]
    fn a_move_to_in_the_database_of_its_move_from_is_looked_for_by_its_entry() {
        let mut r = Records::new();
        assert_eq!(r.locate("move_from", b"k", 1, value(8)), Located::Selected);
        assert_eq!(
            r.locate("move_to", b"k", 1, value(8)),
            Located::Holding(value(8))
        );
        assert_eq!(r.move_source, Some(1));
        // The record is used once.
        assert_eq!(r.locate("move_to", b"k", 1, value(8)), Located::Selected);
        assert_eq!(r.move_source, None);
    }

    #[test]
    fn a_move_to_in_another_database_than_its_move_from_is_where_it_says() {
        let mut r = Records::new();
        r.locate("move_from", b"k", 1, value(8));
        assert_eq!(r.locate("move_to", b"k", 0, value(8)), Located::Selected);
        // Without a move_from (or an entry that left), nothing is guessed.
        assert_eq!(r.locate("move_to", b"k", 0, value(8)), Located::Selected);
        r.locate("move_from", b"k", 1, value(8));
        assert_eq!(
            r.locate("move_to", b"k", 1, std::ptr::null()),
            Located::Selected
        );
    }

    #[test]
    fn a_copy_to_takes_the_target_database_copy2_was_given() {
        let mut r = Records::new();
        r.copied(1, 0, b"dst");
        assert_eq!(r.locate("copy_to", b"dst", 1, value(0)), Located::Db(0));
        assert_eq!(r.locate("copy_to", b"dst", 1, value(0)), Located::Selected);
    }

    #[test]
    fn a_copy_within_one_database_or_of_another_key_is_not_redirected() {
        let mut r = Records::new();
        r.copied(2, 2, b"dst");
        assert_eq!(r.locate("copy_to", b"dst", 2, value(0)), Located::Selected);
        r.copied(1, 0, b"dst");
        assert_eq!(
            r.locate("copy_to", b"other", 1, value(0)),
            Located::Selected
        );
        // A later copy within one database replaces the record of an earlier one.
        r.copied(1, 0, b"dst");
        r.copied(3, 3, b"dst");
        assert_eq!(r.locate("copy_to", b"dst", 3, value(0)), Located::Selected);
    }

    #[test]
    fn other_events_are_in_the_selected_database() {
        let mut r = Records::new();
        r.copied(1, 0, b"k");
        for event in ["del", "expired", "rename_to", "restore", "expire"] {
            assert_eq!(r.locate(event, b"k", 1, value(8)), Located::Selected);
        }
        assert_eq!(r.locate("copy_to", b"k", 1, value(0)), Located::Db(0));
    }
}
