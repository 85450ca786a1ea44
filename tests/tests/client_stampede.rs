//! Stampede protection: many concurrent `get_or_set` calls for one missing key on one
//! handle run the factory once and share its value (or its error).

use hybridcache::{EntryOptions, Error, HybridCache};
use hybridcache_tests::client_support::{cache, get_value};
use hybridcache_tests::hc;
use hybridcache_tests::RedisServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

const CALLERS: usize = 1_000;
const FACTORY_TIME: Duration = Duration::from_millis(250);

/// Spawns `CALLERS` tasks that wait for each other, then each call `get_or_set(key)` with
/// a factory that counts its runs in `runs`, sleeps `FACTORY_TIME`, and then returns `42`
/// or fails.
fn spawn_callers(
    h: &HybridCache,
    key: &'static str,
    runs: &Arc<AtomicUsize>,
    fail: bool,
) -> Vec<tokio::task::JoinHandle<hybridcache::Result<Arc<u64>>>> {
    let start = Arc::new(Barrier::new(CALLERS));
    (0..CALLERS)
        .map(|_| {
            let (h, runs, start) = (h.clone(), runs.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                h.get_or_set(
                    key,
                    move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(FACTORY_TIME).await;
                        if fail {
                            Err(std::io::Error::other("backend down"))
                        } else {
                            Ok(42u64)
                        }
                    },
                    EntryOptions::new(),
                )
                .await
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_get_or_set_calls_run_the_factory_once() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let h = cache(&server).await;
    let runs = Arc::new(AtomicUsize::new(0));

    let tasks = spawn_callers(&h, "hot", &runs, false);
    let mut values = Vec::with_capacity(CALLERS);
    for task in tasks {
        let value = task.await.expect("task panicked").expect("get_or_set");
        values.push(value);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "factory runs");
    assert!(values.iter().all(|v| **v == 42), "every caller got 42");
    // Not only equal: most callers share the very value the one factory run made.
    let first = values[0].clone();
    let shared = values.iter().filter(|v| Arc::ptr_eq(v, &first)).count();
    assert!(
        shared > CALLERS / 2,
        "only {shared} callers share one value"
    );
    let stats = h.stats();
    assert_eq!(stats.factory_runs, 1, "{stats:?}");
    assert_eq!(hc::hc_get_str(&mut con, "hot").as_deref(), Some("42"));
    assert_eq!(get_value::<u64>(&h, "hot").await, Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_factory_runs_once_for_concurrent_callers_and_is_not_cached() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let h = cache(&server).await;
    let runs = Arc::new(AtomicUsize::new(0));

    let tasks = spawn_callers(&h, "hot", &runs, true);
    for task in tasks {
        match task.await.expect("task panicked") {
            Err(Error::Factory(e)) => assert_eq!(e.to_string(), "backend down"),
            other => panic!("expected the factory's error, got {other:?}"),
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "factory runs");
    assert_eq!(h.stats().factory_runs, 1);
    assert_eq!(hc::hc_get(&mut con, "hot"), None, "nothing was written");

    // The error is not remembered: the next caller runs the factory again.
    let value = h
        .get_or_set(
            "hot",
            || async { Ok::<_, std::io::Error>(7u64) },
            EntryOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(*value, 7);
    assert_eq!(h.stats().factory_runs, 2);
}
