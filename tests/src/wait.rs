//! Bounded polling: tests wait for conditions with deadlines instead of sleeping.

use std::time::{Duration, Instant};

/// Interval between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Calls `check` until it returns `Some`, and returns that value.
///
/// # Panics
/// When `timeout` passes first; the message names `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Calls `check` until it returns true.
///
/// # Panics
/// When `timeout` passes first; the message names `what`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    wait_for(timeout, what, || check().then_some(()));
}
