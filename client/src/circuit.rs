//! A circuit breaker for Redis: after a number of consecutive failures to reach it, Redis is
//! not called for a while (reads fall back to L1, fail-safe and the factory; writes fail
//! fast or are queued for auto-recovery); the first call after that tries again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A change of the breaker's state, to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Closed,
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    /// Consecutive failures that open the circuit; 0: never opens.
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

impl CircuitBreaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold,
            open_for,
            state: Mutex::new(State::default()),
        }
    }

    /// A breaker that never opens.
    pub(crate) fn disabled() -> Self {
        Self::new(0, Duration::ZERO)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether Redis may be called now: the circuit is closed, or its open time is over
    /// (the next call is the trial).
    pub(crate) fn allows(&self, now: Instant) -> bool {
        self.lock().open_until.is_none_or(|until| now >= until)
    }

    /// Whether the circuit is open now.
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        !self.allows(now)
    }

    pub(crate) fn on_success(&self) -> Transition {
        let mut state = self.lock();
        let was_open = state.open_until.take().is_some();
        state.failures = 0;
        if was_open {
            Transition::Closed
        } else {
            Transition::None
        }
    }

    pub(crate) fn on_failure(&self, now: Instant) -> Transition {
        if self.threshold == 0 {
            return Transition::None;
        }
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        if state.failures < self.threshold {
            return Transition::None;
        }
        let was_open = state.open_until.is_some();
        // An open time too long for the clock: a day, then a trial.
        state.open_until = Some(
            now.checked_add(self.open_for)
                .unwrap_or(now + Duration::from_secs(86_400)),
        );
        if was_open {
            Transition::None
        } else {
            Transition::Opened
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_wait() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(breaker.on_failure(t0), Transition::None);
        assert_eq!(breaker.on_failure(t0), Transition::None);
        assert!(breaker.allows(t0));
        assert_eq!(breaker.on_failure(t0), Transition::Opened);
        assert!(!breaker.allows(t0 + Duration::from_secs(9)));
        // The trial call after the wait fails: open again, without a second "opened".
        let t1 = t0 + Duration::from_secs(10);
        assert!(breaker.allows(t1));
        assert_eq!(breaker.on_failure(t1), Transition::None);
        assert!(breaker.is_open(t1 + Duration::from_secs(1)));
        // A success closes it and resets the count.
        assert_eq!(breaker.on_success(), Transition::Closed);
        assert!(breaker.allows(t1));
        assert_eq!(breaker.on_failure(t1), Transition::None);
        assert_eq!(breaker.on_success(), Transition::None);
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let breaker = CircuitBreaker::disabled();
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(breaker.on_failure(now), Transition::None);
        }
        assert!(breaker.allows(now));
    }
}
