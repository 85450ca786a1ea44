//! The module's process-wide state: the tag index and the event sequencer.
//!
//! Redis runs commands, keyspace callbacks and server events on its main thread, one at a
//! time; the mutex is never contended. Callers must not call into Redis while holding it
//! (Redis may call back into the module), so access goes through short closures.

use crate::entry::Entry;
use crate::events::Events;
use crate::fills::{FillLeases, KeyspaceChange};
use crate::index::TagIndex;
use crate::sequencer::{random_origin, Sequencer};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex};

pub struct State {
    pub index: TagIndex,
    pub sequencer: Sequencer,
    pub(crate) fills: FillLeases,
    pub(crate) events: Events,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    let origin = random_origin();
    Mutex::new(State {
        index: TagIndex::default(),
        events: Events::new(&origin, crate::limits::event_log_bounds()),
        sequencer: Sequencer::new(origin),
        fills: FillLeases::new(crate::limits::fill_bounds()),
    })
});

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

/// The one way a change reaches the fill-lease table (see [`crate::fills`]).
pub(crate) fn record_change(change: KeyspaceChange<'_>) {
    with_state(|s| s.fills.record(change));
}

static QUIET: AtomicU32 = AtomicU32::new(0);
static LOADING: AtomicBool = AtomicBool::new(false);

/// While alive, removals seen by the type callbacks publish no event of their own: the
/// command that caused them publishes one event for the whole change.
pub struct Quiet(());

impl Quiet {
    pub fn enter() -> Self {
        QUIET.fetch_add(1, Ordering::Relaxed);
        Quiet(())
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        QUIET.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed) > 0
}

/// Set between the start and the end of a dataset load, when no event is published (one
/// "loaded" event follows the load).
pub fn set_loading(loading: bool) {
    LOADING.store(loading, Ordering::Relaxed);
}

pub fn is_loading() -> bool {
    LOADING.load(Ordering::Relaxed)
}
