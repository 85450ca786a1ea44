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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_returns_the_first_value_found() {
        let mut calls = 0;
        let value = wait_for(Duration::from_secs(1), "the third call", || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after")]
    fn wait_until_panics_when_the_deadline_passes() {
        wait_until(
            Duration::from_millis(30),
            "something that never happens",
            || false,
        );
    }
}
