//! Stampede protection: concurrent loads of one key in one process run once and share the
//! result.
//!
//! A caller *claims* a key: the first one becomes its loader (it holds a [`LoadGuard`] and
//! must [`finish`](LoadGuard::finish) it), later ones get a [`Wait`] on that load. A loader
//! never waits on another load while it holds guards (`get_or_set_many` finishes its own
//! loads before awaiting others'), so two callers claiming overlapping keys cannot wait on
//! each other.

use crate::error::Result;
use crate::l1::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use tokio::sync::watch;

/// What a running load will produce (`None` until it finishes).
type Outcome = Option<Result<Value>>;

#[derive(Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
}

/// What claiming a key gave.
pub(crate) enum Claim<'a> {
    /// This caller loads the key.
    Load(LoadGuard<'a>),
    /// Another caller is loading it.
    Wait(Wait),
}

/// The right and duty to load a key: waiters get what [`finish`](Self::finish) is given.
/// Dropped unfinished (the load was cancelled or gave up), its waiters are told so and one
/// of them loads the key itself.
pub(crate) struct LoadGuard<'a> {
    coalescer: &'a Coalescer,
    key: String,
    sender: watch::Sender<Outcome>,
}

/// A load of a key by another caller.
pub(crate) struct Wait(watch::Receiver<Outcome>);

impl Coalescer {
    /// Claims `key`: its load if nobody is loading it, else a wait on the running load.
    pub(crate) fn claim(&self, key: &str) -> Claim<'_> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = map.get(key) {
            return Claim::Wait(Wait(running.clone()));
        }
        let (sender, receiver) = watch::channel(None);
        map.insert(key.to_string(), receiver);
        Claim::Load(LoadGuard {
            coalescer: self,
            key: key.to_string(),
            sender,
        })
    }

    /// Runs `load` unless a load of `key` is already running, in which case its result is
    /// awaited instead. If the running load is cancelled, a waiter runs its own.
    pub(crate) async fn run<F>(&self, key: &str, load: F) -> Result<Value>
    where
        F: Future<Output = Result<Value>>,
    {
        let guard = loop {
            match self.claim(key) {
                Claim::Load(guard) => break guard,
                Claim::Wait(wait) => {
                    if let Some(result) = wait.outcome().await {
                        return result;
                    }
                }
            }
        };
        let result = load.await;
        guard.finish(result.clone());
        result
    }

    /// Forgets the load of `key` behind `sender`, if it is still the one registered.
    fn release(&self, key: &str, sender: &watch::Sender<Outcome>) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(key)
            .is_some_and(|running| running.same_channel(&sender.subscribe()))
        {
            map.remove(key);
        }
    }
}

impl LoadGuard<'_> {
    /// Hands `result` to every waiter. Later callers start a load of their own.
    pub(crate) fn finish(self, result: Result<Value>) {
        // Unregistered first: a caller claiming from now on loads anew rather than reuse a
        // finished load.
        self.coalescer.release(&self.key, &self.sender);
        self.sender.send_replace(Some(result));
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        // Finished or not, the load is no longer running; the waiters of an unfinished one
        // see the channel close.
        self.coalescer.release(&self.key, &self.sender);
    }
}

impl Wait {
    /// The running load's result; `None` when it was dropped unfinished (claim again).
    pub(crate) async fn outcome(mut self) -> Option<Result<Value>> {
        let finished = self.0.wait_for(Option::is_some).await.ok()?;
        finished.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_loads_of_one_key_run_once_and_share_the_result() {
        let coalescer = Arc::new(Coalescer::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (coalescer, runs) = (coalescer.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run("k", async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Arc::new(7u32) as Value)
                    })
                    .await
            }));
        }
        for task in tasks {
            let value = task.await.unwrap().unwrap();
            assert_eq!(value.downcast_ref::<u32>(), Some(&7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(coalescer.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_finished_load_is_not_reused_by_later_callers() {
        let coalescer = Coalescer::default();
        let first = coalescer
            .run("k", async { Ok(Arc::new(1u32) as Value) })
            .await;
        let second = coalescer
            .run("k", async { Ok(Arc::new(2u32) as Value) })
            .await;
        assert_eq!(first.unwrap().downcast_ref::<u32>(), Some(&1));
        assert_eq!(second.unwrap().downcast_ref::<u32>(), Some(&2));
    }

    #[tokio::test]
    async fn a_claimed_key_is_awaited_and_gets_what_its_loader_finishes_with() {
        let coalescer = Coalescer::default();
        let Claim::Load(guard) = coalescer.claim("k") else {
            panic!("the first claim loads");
        };
        let Claim::Wait(wait) = coalescer.claim("k") else {
            panic!("a second claim waits");
        };
        guard.finish(Ok(Arc::new(3u32) as Value));
        let value = wait.outcome().await.unwrap().unwrap();
        assert_eq!(value.downcast_ref::<u32>(), Some(&3));
        assert!(matches!(coalescer.claim("k"), Claim::Load(_)));
    }

    #[tokio::test]
    async fn waiters_of_a_dropped_load_are_told_and_the_key_can_be_claimed_again() {
        let coalescer = Coalescer::default();
        let Claim::Load(guard) = coalescer.claim("k") else {
            panic!("the first claim loads");
        };
        let Claim::Wait(wait) = coalescer.claim("k") else {
            panic!("a second claim waits");
        };
        drop(guard);
        assert!(wait.outcome().await.is_none());
        assert!(matches!(coalescer.claim("k"), Claim::Load(_)));
        assert!(coalescer.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_run_hands_the_load_to_a_waiter() {
        let coalescer = Arc::new(Coalescer::default());
        let first = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move {
                coalescer
                    .run("k", async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(Arc::new(1u32) as Value)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move {
                coalescer
                    .run("k", async { Ok(Arc::new(2u32) as Value) })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        let value = second.await.unwrap().unwrap();
        assert_eq!(value.downcast_ref::<u32>(), Some(&2));
    }
}
