//! Stampede protection: concurrent loads of one key in one process run once and share the
//! result.

use crate::error::Result;
use crate::l1::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type Slot = Arc<OnceCell<Result<Value>>>;

#[derive(Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<String, Slot>>,
}

impl Coalescer {
    /// Runs `load` unless a load of `key` is already running, in which case its result is
    /// awaited instead. If the running load is cancelled, a waiter runs its own.
    pub(crate) async fn run<F>(&self, key: &str, load: F) -> Result<Value>
    where
        F: Future<Output = Result<Value>>,
    {
        let slot = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let result = slot.get_or_init(|| load).await.clone();
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &slot))
        {
            map.remove(key);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
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
}
