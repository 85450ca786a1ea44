//! The module's process-wide state: the tag index, the event sequencer, the fill leases and
//! the events (changes go through [`State::apply`], `changes.rs`).
//!
//! Redis runs commands, keyspace callbacks and server events on its main thread, one at a
//! time; the mutex is never contended. Callers must not call into Redis while holding it
//! (Redis may call back into the module), so access goes through short closures.

use crate::entry::Entry;
use crate::events::Events;
use crate::fills::FillLeases;
use crate::index::TagIndex;
use crate::sequencer::{random_origin, Sequencer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

pub struct State {
    pub index: TagIndex,
    pub sequencer: Sequencer,
    pub(crate) fills: FillLeases,
    pub(crate) events: Events,
    /// A key whose deletion its caller is about to announce (see
    /// [`State::take_removal_announced_by_caller`]).
    pub(crate) removal_announced_by_caller: Option<(i32, Vec<u8>)>,
}

impl State {
    /// An empty state numbering its events under `origin`.
    pub(crate) fn new(origin: String) -> Self {
        State {
            index: TagIndex::default(),
            events: Events::new(&origin, crate::limits::event_log_bounds()),
            sequencer: Sequencer::new(origin),
            fills: FillLeases::new(crate::limits::fill_bounds()),
            removal_announced_by_caller: None,
        }
    }

    /// Whether the removal of `key` in `db` the data type reports now is one its caller
    /// announces itself (`HC.DEL`, an expired `HC.SET`): then it is applied unannounced.
    pub(crate) fn take_removal_announced_by_caller(&mut self, db: i32, key: &[u8]) -> bool {
        let matches = self
            .removal_announced_by_caller
            .as_ref()
            .is_some_and(|(d, k)| *d == db && k.as_slice() == key);
        if matches {
            self.removal_announced_by_caller = None;
        }
        matches
    }
}

/// Runs `delete`, the deletion of `key` in `db` as part of a change its caller announces
/// itself: the data type's report of the removal is applied unannounced.
pub(crate) fn removal_announced_by_caller<R>(db: i32, key: &[u8], delete: impl FnOnce() -> R) -> R {
    with_state(|s| s.removal_announced_by_caller = Some((db, key.to_vec())));
    let result = delete();
    with_state(|s| s.removal_announced_by_caller = None);
    result
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| Mutex::new(State::new(random_origin())));

/// Runs `f` with the state. `f` must not call Redis.
pub fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

/// Like [`with_state`], but gives up instead of waiting when the state is held.
pub fn try_with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    match STATE.try_lock() {
        Ok(mut guard) => Some(f(&mut guard)),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(f(&mut poisoned.into_inner())),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Whether any database has an invalidated tag whose keys are still being removed: reads
/// look at the tombstones only then.
static TOMBSTONES: AtomicBool = AtomicBool::new(false);

/// Whether fill leases may exist: the changes that only matter to them (a command touching a
/// key) are skipped while there are none. Set when a lease is issued, cleared when a change
/// finds the table empty: it may be true a little longer than needed, never false while a
/// lease exists.
static FILLS_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Records that a lease was just issued.
pub(crate) fn note_lease_issued() {
    FILLS_ACTIVE.store(true, Ordering::Relaxed);
}

/// Clears the flag when the table is empty (after a change).
pub(crate) fn note_fills(state: &State) {
    if state.fills.is_empty() {
        FILLS_ACTIVE.store(false, Ordering::Relaxed);
    }
}

/// Whether a change that only fill leases care about must be recorded now.
pub(crate) fn fills_active() -> bool {
    FILLS_ACTIVE.load(Ordering::Relaxed)
}

/// Updates the tombstone flag after the index changed.
pub fn note_tombstones(state: &State) {
    TOMBSTONES.store(state.index.has_tombstones(), Ordering::Relaxed);
}

/// Whether `entry`, stored in `db`, is logically deleted: gone for every HC command even
/// though its key still exists until the removal timer reaches it.
pub fn is_gone(db: i32, entry: &Entry) -> bool {
    entry.is_dead()
        || (TOMBSTONES.load(Ordering::Relaxed)
            && with_state(|s| s.index.dooms(db, entry.tags(), entry.version)))
}

static LOADING: AtomicBool = AtomicBool::new(false);

/// Set between the start and the end of a load of the live databases, when no event is
/// published (one "loaded" event follows the load) and loaded entries are indexed as they
/// arrive. Not set while a `swapdb` sync loads temporary databases (`load_phase`).
pub fn set_loading(loading: bool) {
    LOADING.store(loading, Ordering::Relaxed);
}

pub fn is_loading() -> bool {
    LOADING.load(Ordering::Relaxed)
}
