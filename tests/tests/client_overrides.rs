//! Per-call overrides of the entry options against a real server: `force_refresh` runs the
//! factory whatever L1 and Redis hold and writes its value as a conditional fill;
//! `redis_timeout` bounds this call's Redis commands, so a slow Redis gives way to fail-safe
//! or the factory.

use hybridcache::{EntryOptions, Error, HybridCache};
use hybridcache_tests::client_support::{cache, eventually, get_value, DELIVERY};
use hybridcache_tests::hc;
use hybridcache_tests::RedisServer;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// `get_or_set(key)` whose factory counts its runs in `runs` and returns `value`.
async fn load(
    h: &HybridCache,
    key: &str,
    value: u32,
    runs: &Arc<AtomicU32>,
    options: EntryOptions,
) -> hybridcache::Result<u32> {
    let runs = runs.clone();
    h.get_or_set(
        key,
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(value)
        },
        options,
    )
    .await
    .map(|v| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_runs_the_factory_over_l1_and_redis_and_every_instance_sees_the_result() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let b = cache(&server).await;
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        load(&a, "k", 1, &runs, EntryOptions::new()).await.unwrap(),
        1
    );
    assert_eq!(get_value::<u32>(&b, "k").await, Some(1));
    // Held in L1 and Redis: a plain call does not run the factory.
    assert_eq!(
        load(&b, "k", 2, &runs, EntryOptions::new()).await.unwrap(),
        1
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let forced = EntryOptions::new().force_refresh(true);
    assert_eq!(load(&b, "k", 2, &runs, forced).await.unwrap(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "k").as_deref(), Some("2"));
    eventually(DELIVERY, "a sees the refreshed value", async || {
        get_value::<u32>(&a, "k").await == Some(2)
    })
    .await;
    assert_eq!(get_value::<u32>(&b, "k").await, Some(2));
    // A forced refresh of a missing key is an ordinary fill.
    let forced = EntryOptions::new().force_refresh(true);
    assert_eq!(load(&a, "new", 5, &runs, forced).await.unwrap(), 5);
    assert_eq!(hc::hc_get_str(&mut con, "new").as_deref(), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_refresh_overtaken_by_a_write_is_not_cached() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let b = cache(&server).await;
    a.set("k", 1u32, EntryOptions::new()).await.unwrap();
    let (started_tx, started_rx) = oneshot::channel();
    let release = Arc::new(Notify::new());
    let refresh = {
        let a = a.clone();
        let release = release.clone();
        tokio::spawn(async move {
            a.get_or_set(
                "k",
                move || async move {
                    let _ = started_tx.send(());
                    release.notified().await;
                    Ok::<_, std::io::Error>(2u32)
                },
                EntryOptions::new().force_refresh(true),
            )
            .await
        })
    };
    started_rx.await.unwrap();
    b.set("k", 3u32, EntryOptions::new()).await.unwrap();
    release.notify_one();
    assert_eq!(
        *refresh.await.unwrap().unwrap(),
        2,
        "the caller gets its value"
    );
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "k").as_deref(), Some("3"));
    assert_eq!(a.stats().fills_refused, 1, "{:?}", a.stats());
    eventually(DELIVERY, "a serves the newer write", async || {
        get_value::<u32>(&a, "k").await == Some(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_forced_refresh_falls_back_to_the_fail_safe_value_only_with_fail_safe() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let keep = EntryOptions::new().fail_safe(Duration::from_secs(60));
    a.set("kept", 1u32, keep.clone()).await.unwrap();
    a.set("plain", 1u32, EntryOptions::new()).await.unwrap();
    let failing = |key: &'static str, options: EntryOptions| {
        let a = a.clone();
        async move {
            a.get_or_set(
                key,
                || async { Err::<u32, _>(std::io::Error::other("source down")) },
                options.force_refresh(true),
            )
            .await
        }
    };
    assert_eq!(*failing("kept", keep).await.unwrap(), 1);
    assert!(
        matches!(
            failing("plain", EntryOptions::new()).await,
            Err(Error::Factory(_))
        ),
        "without fail-safe the factory's error is the call's"
    );
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "kept").as_deref(), Some("1"));
}

/// Pauses every client of `server` for `ms` (commands wait; the server answers later).
fn pause(server: &RedisServer, ms: u64) {
    let mut con = server.connection();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query(&mut con)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_timeout_bounds_this_calls_commands_and_gives_way_to_fail_safe_or_the_factory() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let keep = EntryOptions::new()
        .ttl(Duration::from_millis(300))
        .fail_safe(Duration::from_secs(60));
    a.set("kept", 1u32, keep.clone()).await.unwrap();
    // The copy expires in Redis and turns stale in L1.
    eventually(DELIVERY, "the entry expired", async || {
        hc::hc_get(&mut server.connection(), "kept").is_none()
    })
    .await;

    pause(&server, 1_500);
    let short = Duration::from_millis(100);
    let read = a
        .get_with::<u32>("other", EntryOptions::new().redis_timeout(short))
        .await;
    assert!(
        matches!(read, Err(Error::Timeout(t)) if t == short),
        "the call's own timeout applies: {read:?}"
    );
    let runs = Arc::new(AtomicU32::new(0));
    let served = load(&a, "kept", 2, &runs, keep.redis_timeout(short)).await;
    assert_eq!(
        served.unwrap(),
        1,
        "the stale value, without waiting for Redis"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let fresh = load(
        &a,
        "uncached",
        9,
        &runs,
        EntryOptions::new().redis_timeout(short),
    )
    .await;
    assert_eq!(
        fresh.unwrap(),
        9,
        "the factory's value when nothing is kept"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
