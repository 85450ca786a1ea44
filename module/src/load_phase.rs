//! Which dataset load is in progress, and what each of the server's load events means for the
//! tag index. Pure Rust; `keyspace.rs` feeds it the events and carries out the actions.
//!
//! A load either fills the live databases (an RDB or AOF at startup, `DEBUG RELOAD`, a full
//! sync loaded from disk or with `repl-diskless-load on-empty-db`), or, with
//! `repl-diskless-load swapdb`, a set of temporary databases that Redis swaps in at the end
//! while the live ones keep serving (Redis 7.0 `readSyncBulkPayload()`, src/replication.c).
//! In the second case the index must keep following the live databases until the swap:
//! clients read them (during *async loading* they serve every read) and their removals
//! still reach `unlink2`. The index of the new data is built when Redis swaps it in, by a
//! scan of the keyspace: on Redis 7.0 the IO of an entry loaded into a temporary database
//! names database 0 whatever its database is (`initTempDb()` in src/db.c leaves the
//! temporary databases' `id` at zero), so the entries cannot be indexed as they load.
//!
//! The order of the events, in Redis 7.0 and Valkey 8/9 alike:
//!
//! - live load: `LOADING` start, the entries, `LOADING` ended or failed;
//! - swapdb load that succeeds: `REPL_ASYNC_LOAD` started, `LOADING` start, the entries (into
//!   the temporary databases), the swap, `REPL_ASYNC_LOAD` completed, the old databases
//!   freed (data type `free` only, no `unlink2`), `LOADING` ended;
//! - swapdb load that fails: `REPL_ASYNC_LOAD` started, `LOADING` start, the entries,
//!   `LOADING` failed, `REPL_ASYNC_LOAD` aborted, the temporary databases freed (`free`
//!   only).

/// The load in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LoadPhase {
    /// No load.
    #[default]
    Idle,
    /// The live databases are being loaded: loaded entries are indexed as they arrive.
    Live,
    /// Temporary databases are being loaded: the index follows the live databases.
    Temp,
    /// The temporary databases were swapped in and the index rebuilt; the `LOADING` end
    /// event is still to come.
    Swapped,
}

/// A load event of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadEvent {
    /// `LOADING` start (RDB, AOF or replication).
    Started,
    /// `LOADING` ended or failed.
    Ended,
    /// `REPL_ASYNC_LOAD` started: the coming load fills temporary databases.
    TempStarted,
    /// `REPL_ASYNC_LOAD` completed: the temporary databases are the live ones now.
    TempCompleted,
    /// `REPL_ASYNC_LOAD` aborted: the temporary databases are dropped, the live ones stay.
    TempAborted,
}

/// What the index must do on a load event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadAction {
    /// Nothing: the live databases did not change.
    None,
    /// The live databases are about to be loaded: empty the index, announce nothing until
    /// the end.
    BeginLive,
    /// The live load is over: rebuild the index from the keyspace, announce `loaded`.
    FinishLive,
    /// The live databases were replaced at once: build a new index from the keyspace in
    /// place of the old one, announce `loaded` (both steps of a live load in one).
    Replace,
}

impl LoadPhase {
    /// The phase after `event`, and what the index must do.
    pub(crate) fn on(self, event: LoadEvent) -> (LoadPhase, LoadAction) {
        use LoadAction as A;
        use LoadEvent as E;
        use LoadPhase as P;
        match (self, event) {
            (P::Temp, E::Started) => (P::Temp, A::None),
            (_, E::Started) => (P::Live, A::BeginLive),
            // A failed swapdb load: the abort event follows, the live databases stay.
            (P::Temp, E::Ended) => (P::Temp, A::None),
            (P::Swapped, E::Ended) => (P::Idle, A::None),
            (P::Idle | P::Live, E::Ended) => (P::Idle, A::FinishLive),
            (_, E::TempStarted) => (P::Temp, A::None),
            (_, E::TempCompleted) => (P::Swapped, A::Replace),
            (_, E::TempAborted) => (P::Idle, A::None),
        }
    }
}

// Unit tests only (`cfg(test)`): an `unwrap` or `panic!` here is the test failing.
#[cfg(test)]
mod tests {
    use super::LoadAction as A;
    use super::LoadEvent as E;
    use super::LoadPhase as P;

    fn run(events: &[E]) -> (P, Vec<A>) {
        let mut phase = P::Idle;
        let mut actions = Vec::new();
        for &event in events {
            let (next, action) = phase.on(event);
            phase = next;
            actions.push(action);
        }
        (phase, actions)
    }

    #[test]
    fn a_live_load_empties_the_index_then_rebuilds_it_and_announces() {
        let (phase, actions) = run(&[E::Started]);
        assert_eq!((phase, actions), (P::Live, vec![A::BeginLive]));
        let (phase, actions) = run(&[E::Started, E::Ended]);
        assert_eq!(
            (phase, actions),
            (P::Idle, vec![A::BeginLive, A::FinishLive])
        );
    }

    #[test]
    fn a_successful_swapdb_load_leaves_the_live_index_alone_until_the_swap_then_replaces_it_once() {
        let (phase, actions) = run(&[E::TempStarted, E::Started]);
        assert_eq!((phase, actions), (P::Temp, vec![A::None, A::None]));
        let (phase, actions) = run(&[E::TempStarted, E::Started, E::TempCompleted, E::Ended]);
        assert_eq!(phase, P::Idle);
        assert_eq!(actions, [A::None, A::None, A::Replace, A::None]);
    }

    #[test]
    fn a_failed_swapdb_load_changes_nothing() {
        let (phase, actions) = run(&[E::TempStarted, E::Started, E::Ended, E::TempAborted]);
        assert_eq!(phase, P::Idle);
        assert!(actions.iter().all(|a| *a == A::None));
    }

    #[test]
    fn a_live_load_after_a_swapdb_load_is_a_live_load_again() {
        let (_, actions) = run(&[
            E::TempStarted,
            E::Started,
            E::Ended,
            E::TempAborted,
            E::Started,
            E::Ended,
        ]);
        assert_eq!(&actions[4..], [A::BeginLive, A::FinishLive]);
        let (_, actions) = run(&[
            E::TempStarted,
            E::Started,
            E::TempCompleted,
            E::Ended,
            E::Started,
            E::Ended,
        ]);
        assert_eq!(&actions[4..], [A::BeginLive, A::FinishLive]);
    }
}
