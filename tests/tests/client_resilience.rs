//! The client's resilience features against a real server: factory timeouts, fail-safe
//! (stale values, maximum stale duration, throttle, default value, declared failure), eager
//! refresh, jitter, adaptive caching, conditional refresh, the circuit breaker, outbound
//! auto-recovery, events, named caches and distributed stampede protection. Faults are real:
//! a stopped and restarted redis-server, slow and failing factories.

use hybridcache::{CacheEvent, EntryOptions, Error, FactoryContext};
use hybridcache_tests::client_support::{build, builder, eventually, get_value, DELIVERY};
use hybridcache_tests::hc::{self, query};
use hybridcache_tests::RedisServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a handle may take to subscribe again once the server is back.
const RECOVERY: Duration = Duration::from_secs(5);

/// A factory counting its runs, answering `value` after `delay`.
fn slow_factory(
    runs: &Arc<AtomicUsize>,
    value: u32,
    delay: Duration,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u32, std::io::Error>> + Send>,
> + Send
       + 'static {
    let runs = runs.clone();
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(value)
        })
    }
}

/// A factory that fails.
fn failing_factory(
    runs: &Arc<AtomicUsize>,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u32, std::io::Error>> + Send>,
> + Send
       + 'static {
    let runs = runs.clone();
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(std::io::Error::other("source down"))
        })
    }
}

fn runs() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(runs: &Arc<AtomicUsize>) -> usize {
    runs.load(Ordering::SeqCst)
}

/// Options of an entry that expires quickly and keeps a stale copy for fail-safe.
fn short_with_fail_safe() -> EntryOptions {
    EntryOptions::new()
        .ttl(Duration::from_millis(150))
        .fail_safe(Duration::from_secs(60))
        .fail_safe_throttle(Duration::from_millis(300))
}

async fn expire(options: &EntryOptions) {
    let _ = options;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_timeout_serves_the_stale_value_and_the_factory_completes_in_the_background() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let n = runs();
    let options = short_with_fail_safe().factory_soft_timeout(Duration::from_millis(50));
    let first = h
        .get_or_set("k", slow_factory(&n, 1, Duration::ZERO), options.clone())
        .await
        .unwrap();
    assert_eq!(*first, 1);
    expire(&options).await;

    let started = Instant::now();
    let got = h
        .get_or_set(
            "k",
            slow_factory(&n, 2, Duration::from_millis(500)),
            options.clone(),
        )
        .await
        .unwrap();
    assert_eq!(*got, 1, "the stale value, at the soft timeout");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.stats().fail_safe_hits, 1);
    // The factory finishes in the background and its value replaces the stale one.
    eventually(
        Duration::from_secs(3),
        "the background value in Redis",
        async || hc::hc_get_str(&mut server.connection(), "k").as_deref() == Some("2"),
    )
    .await;
    eventually(DELIVERY, "the handle to serve the new value", async || {
        get_value::<u32>(&h, "k").await == Some(2)
    })
    .await;
    assert_eq!(count(&n), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_timeout_fails_the_call_without_a_stale_value_and_can_cancel_the_factory() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let n = runs();
    let hard = EntryOptions::new()
        .factory_soft_timeout(Duration::from_millis(10)) // no stale value: does not apply
        .factory_hard_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let got = h
        .get_or_set(
            "k",
            slow_factory(&n, 7, Duration::from_millis(400)),
            hard.clone(),
        )
        .await;
    assert!(
        matches!(got, Err(Error::FactoryTimeout(d)) if d == Duration::from_millis(100)),
        "{got:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(350));
    // Background completion (the default) caches the value anyway.
    eventually(Duration::from_secs(3), "the late value", async || {
        get_value::<u32>(&h, "k").await == Some(7)
    })
    .await;

    // Without background completion the factory is cancelled: nothing is cached.
    let cancel = hard.background_completion(false);
    let got = h
        .get_or_set(
            "other",
            slow_factory(&n, 8, Duration::from_millis(300)),
            cancel,
        )
        .await;
    assert!(matches!(got, Err(Error::FactoryTimeout(_))), "{got:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_value::<u32>(&h, "other").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_serves_stale_values_throttles_the_source_and_stops_after_the_maximum() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let n = runs();
    let options = EntryOptions::new()
        .ttl(Duration::from_millis(100))
        .fail_safe(Duration::from_millis(2000))
        .fail_safe_throttle(Duration::from_millis(500));
    h.get_or_set("k", slow_factory(&n, 1, Duration::ZERO), options.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;

    // The source fails: the stale value is served.
    let failing = runs();
    let got = h
        .get_or_set("k", failing_factory(&failing), options.clone())
        .await
        .unwrap();
    assert_eq!(*got, 1);
    // Within the throttle the stale value is served as a hit: the source is not retried.
    for _ in 0..5 {
        let got = h
            .get_or_set("k", failing_factory(&failing), options.clone())
            .await
            .unwrap();
        assert_eq!(*got, 1);
    }
    assert_eq!(count(&failing), 1, "retried within the throttle");
    // After the throttle it is tried again (and fails again: stale again).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        *h.get_or_set("k", failing_factory(&failing), options.clone())
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&failing), 2);
    // Past the maximum stale duration nothing is served: the error comes through.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let got = h.get_or_set("k", failing_factory(&failing), options).await;
    assert!(matches!(got, Err(Error::Factory(_))), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_declares_failure_and_falls_back_to_stale_or_default_values() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    // Nothing stale: the default is served, and not cached.
    let got = h
        .get_or_set_with(
            "k",
            |ctx: FactoryContext<String>| async move { ctx.fail_or("source down", "default".into()) },
            EntryOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(*got, "default");
    assert_eq!(get_value::<String>(&h, "k").await, None);
    // Without a default a declared failure is an error naming the reason.
    let got = h
        .get_or_set_with(
            "k",
            |ctx: FactoryContext<String>| async move { ctx.fail("source down") },
            EntryOptions::new(),
        )
        .await;
    assert!(
        matches!(&got, Err(Error::Factory(e)) if e.to_string() == "source down"),
        "{got:?}"
    );
    // With a stale value, a declared failure serves it.
    let options = short_with_fail_safe();
    h.get_or_set(
        "s",
        slow_factory(&runs(), 5, Duration::ZERO),
        options.clone(),
    )
    .await
    .unwrap();
    expire(&options).await;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_in_factory = seen.clone();
    let got = h
        .get_or_set_with(
            "s",
            move |ctx: FactoryContext<u32>| async move {
                *seen_in_factory.lock().unwrap() = Some(ctx.stale_value().map(|v| **v));
                ctx.fail_or("source down", 0)
            },
            options,
        )
        .await
        .unwrap();
    assert_eq!(*got, 5);
    assert_eq!(
        *seen.lock().unwrap(),
        Some(Some(5)),
        "the factory saw the stale value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_refresh_renews_a_hot_key_once_in_the_background() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let n = runs();
    let options = EntryOptions::new()
        .ttl(Duration::from_millis(1000))
        .eager_refresh(0.5);
    let mut events = h.events();
    h.get_or_set("hot", slow_factory(&n, 1, Duration::ZERO), options.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(550)).await;
    // Past half of its lifetime: hits return at once and one refresh starts. Its factory
    // finishes before the entry expires in Redis (an expiry in between refuses the fill).
    for _ in 0..10 {
        let started = Instant::now();
        let got = h
            .get_or_set(
                "hot",
                slow_factory(&n, 2, Duration::from_millis(200)),
                options.clone(),
            )
            .await
            .unwrap();
        assert_eq!(*got, 1);
        assert!(started.elapsed() < Duration::from_millis(150));
    }
    eventually(Duration::from_secs(2), "the refreshed value", async || {
        get_value::<u32>(&h, "hot").await == Some(2)
    })
    .await;
    assert_eq!(count(&n), 2, "one refresh for ten hits");
    let mut refreshes = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, CacheEvent::EagerRefresh { .. }) {
            refreshes += 1;
        }
    }
    assert_eq!(refreshes, 1);
    // The key never expired: the refreshed value has a fresh TTL in Redis.
    let pttl = hc::pttl(&mut server.connection(), "hot");
    assert!(pttl > 200, "{pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_spreads_the_expiry_of_entries_written_together() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let options = EntryOptions::new()
        .ttl(Duration::from_secs(100))
        .jitter(Duration::from_secs(10));
    let mut con = server.connection();
    let mut ttls = Vec::new();
    for i in 0..20 {
        h.set(&format!("k{i}"), i, options.clone()).await.unwrap();
        ttls.push(hc::pttl(&mut con, format!("k{i}")));
    }
    assert!(
        ttls.iter().all(|t| (99_000..=110_000).contains(t)),
        "{ttls:?}"
    );
    let distinct: std::collections::BTreeSet<i64> = ttls.iter().map(|t| t / 100).collect();
    assert!(distinct.len() > 10, "spread: {ttls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_caching_lets_the_factory_choose_ttl_and_tags() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    for (key, volatile) in [("stable", false), ("volatile", true)] {
        h.get_or_set_with(
            key,
            move |mut ctx: FactoryContext<u32>| async move {
                let ttl = if volatile { 2 } else { 600 };
                let adapted = ctx
                    .options()
                    .clone()
                    .ttl(Duration::from_secs(ttl))
                    .tags([if volatile { "volatile" } else { "stable" }]);
                ctx.set_options(adapted);
                ctx.value(1)
            },
            EntryOptions::new().ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    }
    let mut con = server.connection();
    assert!(hc::pttl(&mut con, "stable") > 500_000);
    assert!(hc::pttl(&mut con, "volatile") <= 2000);
    assert_eq!(hc::tags(&mut con, "volatile"), ["*", "volatile"]);
    assert_eq!(h.remove_by_tag("stable").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_refresh_passes_the_etag_and_not_modified_extends_the_stale_value() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let options = short_with_fail_safe();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let factory = |seen: Arc<std::sync::Mutex<Vec<Option<String>>>>, modified: bool| {
        move |ctx: FactoryContext<String>| async move {
            seen.lock().unwrap().push(ctx.etag().map(str::to_owned));
            if modified || ctx.stale_value().is_none() {
                ctx.modified("body v1".into(), Some("\"v1\"".into()), None)
            } else {
                ctx.not_modified()
            }
        }
    };
    let got = h
        .get_or_set_with("doc", factory(seen.clone(), true), options.clone())
        .await
        .unwrap();
    assert_eq!(*got, "body v1");
    expire(&options).await;
    assert_eq!(
        hc::pttl(&mut server.connection(), "doc"),
        -2,
        "expired in Redis"
    );
    let got = h
        .get_or_set_with("doc", factory(seen.clone(), false), options.clone())
        .await
        .unwrap();
    assert_eq!(*got, "body v1");
    assert_eq!(*seen.lock().unwrap(), [None, Some("\"v1\"".to_string())]);
    // "Not modified" cached the stale value again, in Redis too.
    assert_eq!(
        hc::hc_get_str(&mut server.connection(), "doc").as_deref(),
        Some("\"body v1\"")
    );
    assert_eq!(h.stats().factory_runs, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_stops_calling_a_dead_redis_and_closes_when_it_is_back() {
    let mut server = RedisServer::new();
    let h = build(
        builder(&server)
            .command_timeout(Duration::from_millis(300))
            .circuit_breaker(2, Duration::from_millis(500)),
    )
    .await;
    let mut events = h.events();
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    server.kill();
    for _ in 0..2 {
        assert!(h.set("k", 2u32, EntryOptions::new()).await.is_err());
    }
    assert!(h.is_circuit_open());
    // Open: calls fail at once, without waiting for Redis.
    let started = Instant::now();
    let got = h.set("k", 3u32, EntryOptions::new()).await;
    assert!(matches!(got, Err(Error::CircuitOpen)), "{got:?}");
    assert!(started.elapsed() < Duration::from_millis(50));
    // get_or_set keeps working from the factory while Redis is skipped.
    let n = runs();
    let got = h
        .get_or_set(
            "fresh",
            slow_factory(&n, 9, Duration::ZERO),
            EntryOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(*got, 9);

    server.start_again();
    tokio::time::sleep(Duration::from_millis(600)).await;
    eventually(
        RECOVERY,
        "a write to succeed (the trial closes the circuit)",
        async || h.set("k", 4u32, EntryOptions::new()).await.is_ok(),
    )
    .await;
    assert!(!h.is_circuit_open());
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event.name());
    }
    assert!(
        seen.contains(&"circuit_opened") && seen.contains(&"circuit_closed"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_recovery_replays_queued_writes_when_redis_is_back_before_l1_is_trusted() {
    let mut server = RedisServer::new();
    let h = build(builder(&server).auto_recovery(100)).await;
    h.set("a", 1u32, EntryOptions::new().tags(["t"]))
        .await
        .unwrap();
    h.set("gone", 1u32, EntryOptions::new().tags(["old"]))
        .await
        .unwrap();
    // Someone else's copy of "b", saved: the restarted server loads it (with "a", "gone").
    let mut con = server.connection();
    hc::hc_set(&mut con, "b", "999", &[]);
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    drop(con);
    server.kill();
    eventually(DELIVERY, "the handle to notice Redis is gone", async || {
        !h.is_subscribed()
    })
    .await;
    // While Redis is down: writes and removals are queued, the last write per key wins.
    h.set("a", 2u32, EntryOptions::new()).await.unwrap();
    h.set("a", 3u32, EntryOptions::new()).await.unwrap();
    h.set("b", 4u32, EntryOptions::new()).await.unwrap();
    assert!(
        !h.remove("x").await.unwrap(),
        "a queued removal reports false"
    );
    assert_eq!(h.remove_by_tag("old").await.unwrap(), 0);
    assert_eq!(h.queued_operations(), 4);

    // Back with the saved data; the queued operations replay over it.
    server.start_again();
    eventually(RECOVERY, "the handle to subscribe again", async || {
        h.is_subscribed()
    })
    .await;
    assert_eq!(h.queued_operations(), 0);
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "a").as_deref(), Some("3"));
    assert_eq!(hc::hc_get_str(&mut con, "b").as_deref(), Some("4"));
    assert_eq!(get_value::<u32>(&h, "b").await, Some(4));
    // A second instance sees the replayed values.
    let other = build(builder(&server)).await;
    assert_eq!(get_value::<u32>(&other, "a").await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_hits_misses_writes_invalidations_and_fail_safe() {
    let server = RedisServer::new();
    let h = build(builder(&server).name("catalogue")).await;
    assert_eq!(h.name(), "catalogue");
    let mut events = h.events();
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    let _ = get_value::<u32>(&h, "k").await;
    let _ = get_value::<u32>(&h, "missing").await;
    hc::hc_set(&mut server.connection(), "k", "2", &[]);
    eventually(DELIVERY, "the invalidation", async || {
        get_value::<u32>(&h, "k").await == Some(2)
    })
    .await;
    h.remove("k").await.unwrap();
    let mut names = Vec::new();
    while let Ok(event) = events.try_recv() {
        names.push(event.name());
    }
    for expected in ["set", "hit", "miss", "invalidation_received", "remove"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(names.contains(&"set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_caches_share_one_connection_with_their_own_namespace_and_l1() {
    let server = RedisServer::new();
    let root = build(builder(&server)).await;
    let orders = root.named(
        "orders",
        "orders:",
        EntryOptions::new().ttl(Duration::from_secs(60)),
        100,
    );
    let users = root.named("users", "users:", EntryOptions::new(), 100);
    orders.set("42", 1u32, EntryOptions::new()).await.unwrap();
    users.set("42", 2u32, EntryOptions::new()).await.unwrap();
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "orders:42").as_deref(), Some("1"));
    assert_eq!(hc::hc_get_str(&mut con, "users:42").as_deref(), Some("2"));
    assert!(
        hc::pttl(&mut con, "orders:42") > 50_000,
        "the named cache's defaults"
    );
    assert_eq!(get_value::<u32>(&orders, "42").await, Some(1));
    assert_eq!(get_value::<u32>(&users, "42").await, Some(2));
    // One subscription (and one command connection) for all three caches.
    let clients: String = query(&mut con, redis::cmd("CLIENT").arg("LIST"));
    let pubsub = clients.lines().filter(|l| l.contains("sub=1")).count();
    assert_eq!(pubsub, 1, "{clients}");
    // An invalidation reaches the named cache's L1.
    hc::hc_set(&mut con, "orders:42", "5", &[]);
    eventually(DELIVERY, "the named cache to see the change", async || {
        get_value::<u32>(&orders, "42").await == Some(5)
    })
    .await;
    assert_eq!(get_value::<u32>(&users, "42").await, Some(2));
    drop(root);
    // The named caches keep the subscription alive: invalidations still reach them.
    assert_eq!(get_value::<u32>(&users, "42").await, Some(2));
    hc::hc_set(&mut con, "users:42", "6", &[]);
    eventually(
        DELIVERY,
        "an invalidation after the root was dropped",
        async || get_value::<u32>(&users, "42").await == Some(6),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_lock_runs_one_factory_across_instances() {
    let server = RedisServer::new();
    let instances = [
        build(builder(&server)).await,
        build(builder(&server)).await,
        build(builder(&server)).await,
    ];
    let n = runs();
    let options = EntryOptions::new().distributed_lock(Duration::from_secs(2));
    let mut tasks = Vec::new();
    for h in &instances {
        let (h, factory, options) = (
            h.clone(),
            slow_factory(&n, 11, Duration::from_millis(300)),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            h.get_or_set("expensive", factory, options).await
        }));
    }
    for task in tasks {
        assert_eq!(*task.await.unwrap().unwrap(), 11);
    }
    assert_eq!(count(&n), 1, "one factory run across three instances");
    // The lock is released.
    assert!(!hc::exists(&mut server.connection(), "expensive:hc-lock"));
}
