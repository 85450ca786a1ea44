//! Regression tests for races found in review of the resilience features: a fail-safe copy
//! never outlives an invalidation, a late factory result or an old queued write never lands
//! over a newer write, a real DEL near an entry's expiry is not mistaken for the expiry, a
//! panicking eager refresh does not block later ones, and "forever" durations do not panic.

use hybridcache::{EntryOptions, Error, FactoryContext};
use hybridcache_tests::client_support::{build, builder, get_value};
use hybridcache_tests::hc::{self, query};
use hybridcache_tests::RedisServer;
use std::time::Duration;

fn fs_opts() -> EntryOptions {
    EntryOptions::new()
        .ttl(Duration::from_millis(150))
        .fail_safe(Duration::from_secs(60))
}

/// A: fail-safe after a failing factory resurrects a value another instance replaced meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_safe_resurrects_invalidated_value() {
    let server = RedisServer::new();
    let h1 = build(builder(&server)).await;
    let h2 = build(builder(&server)).await;
    h1.get_or_set("k", || async { Ok::<_, std::io::Error>(1u32) }, fs_opts())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await; // expired in Redis, stale kept
    let writer = {
        let h2 = h2.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            h2.set("k", 2u32, EntryOptions::new().ttl(Duration::from_secs(60)))
                .await
                .unwrap();
        })
    };
    let got = h1
        .get_or_set_with(
            "k",
            |ctx: FactoryContext<u32>| async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                ctx.fail("source down")
            },
            fs_opts(),
        )
        .await
        .unwrap();
    writer.await.unwrap();
    eprintln!("served {got}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let redis = hc::hc_get_str(&mut server.connection(), "k");
    let l1 = get_value::<u32>(&h1, "k").await;
    eprintln!(
        "A: redis={redis:?} h1.get={l1:?} h2.get={:?}",
        get_value::<u32>(&h2, "k").await
    );
    assert_eq!(
        l1,
        Some(2),
        "h1 serves the value h2 replaced, 1 s after the change"
    );
}

/// B: a background completion after a hard timeout overwrites a later explicit set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_background_completion_overwrites_newer_set() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let got = h
        .get_or_set(
            "k",
            || async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok::<_, std::io::Error>(1u32)
            },
            EntryOptions::new().factory_hard_timeout(Duration::from_millis(100)),
        )
        .await;
    assert!(matches!(got, Err(Error::FactoryTimeout(_))));
    h.set("k", 2u32, EntryOptions::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let redis = hc::hc_get_str(&mut server.connection(), "k");
    eprintln!(
        "B: redis={redis:?} get={:?}",
        get_value::<u32>(&h, "k").await
    );
    assert_eq!(redis.as_deref(), Some("2"), "the later set was overwritten");
}

/// C: a write that timed out is queued and replayed over a later successful write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_outbox_replays_over_a_later_write() {
    let server = RedisServer::new();
    let h = build(
        builder(&server)
            .command_timeout(Duration::from_millis(100))
            .auto_recovery(100),
    )
    .await;
    let port = server.port();
    let sleeper = std::thread::spawn(move || {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.5")
            .query(&mut con)
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap(); // times out: queued
    eprintln!("C: queued={}", h.queued_operations());
    sleeper.join().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.set("k", 2u32, EntryOptions::new()).await.unwrap();
    eprintln!(
        "C: after set 2 redis={:?}",
        hc::hc_get_str(&mut server.connection(), "k")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let redis = hc::hc_get_str(&mut server.connection(), "k");
    eprintln!(
        "C: later redis={redis:?} queued={} get={:?}",
        h.queued_operations(),
        get_value::<u32>(&h, "k").await
    );
    assert_eq!(
        redis.as_deref(),
        Some("2"),
        "the replay overwrote the later write"
    );
}

/// D: a plain DEL near the end of a fail-safe entry's TTL (always, with TTL < 250 ms) is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_removed_event_ignored_for_fail_safe_entries() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let opts = EntryOptions::new()
        .ttl(Duration::from_millis(240))
        .fail_safe(Duration::from_secs(60));
    h.set("k", 1u32, opts).await.unwrap();
    let mut con = server.connection();
    let _: i64 = query(&mut con, redis::cmd("DEL").arg("k"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = get_value::<u32>(&h, "k").await;
    eprintln!("D: redis={:?} get={got:?}", hc::hc_get_str(&mut con, "k"));
    assert_eq!(got, None, "a deleted key is still served from L1");
}

/// F: a panicking eager-refresh factory leaves the key in `refreshing` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_eager_refresh_panic_blocks_later_refreshes() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let opts = EntryOptions::new()
        .ttl(Duration::from_millis(2000))
        .eager_refresh(0.5);
    h.set("k", 1u32, opts.clone()).await.unwrap();
    // Past the eager-refresh point (1000 ms), well before the expiry (2000 ms), even on a
    // loaded machine.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = h
        .get_or_set_with(
            "k",
            |_ctx: FactoryContext<u32>| async move { panic!("boom") },
            opts.clone(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.set("k", 1u32, opts.clone()).await.unwrap();
    let written = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = h.stats().factory_runs;
    // Reads past the eager-refresh point until one starts a refresh, and only while Redis
    // still holds the key (so a factory run is the refresh, not a miss). Several reads, so
    // that one answered by Redis (an L1 flushed by a slow health check on a loaded machine)
    // does not decide the test: the next one hits the copy it kept.
    let until = written + Duration::from_millis(1800);
    while h.stats().factory_runs == before && tokio::time::Instant::now() < until {
        let _ = h
            .get_or_set_with(
                "k",
                |ctx: FactoryContext<u32>| async move { ctx.value(2) },
                opts.clone(),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    eprintln!(
        "F: factory runs before={before} after={} redis={:?}",
        h.stats().factory_runs,
        hc::hc_get_str(&mut server.connection(), "k")
    );
    assert_eq!(
        h.stats().factory_runs,
        before + 1,
        "no eager refresh after a panicking one"
    );
}

/// H: Duration::MAX as "forever" panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_duration_max_panics() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let r = tokio::spawn(async move {
        h.set(
            "k",
            1u32,
            EntryOptions::new()
                .ttl(Duration::from_secs(1))
                .fail_safe(Duration::MAX),
        )
        .await
    })
    .await;
    eprintln!("H: {:?}", r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    assert!(r.is_ok(), "set panicked");
}

/// G: a hung background factory keeps the subscription alive after every handle is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_hung_background_factory_keeps_cache_alive() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    for i in 0..3 {
        let got = h
            .get_or_set(
                &format!("k{i}"),
                || async { std::future::pending::<Result<u32, std::io::Error>>().await },
                EntryOptions::new().factory_hard_timeout(Duration::from_millis(20)),
            )
            .await;
        assert!(matches!(got, Err(Error::FactoryTimeout(_))));
    }
    drop(h);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clients: String = query(&mut server.connection(), redis::cmd("CLIENT").arg("LIST"));
    let subs = clients.lines().filter(|l| l.contains(" sub=1")).count();
    eprintln!("G: subscribers after drop = {subs}");
    assert_eq!(
        subs, 0,
        "subscription still alive after the last handle was dropped"
    );
}
