//! Fills (values a factory produced) against a real server: they are written only on the
//! lease of the read made before the factory ran, so a change that overtakes a factory
//! (`HC.DEL`, `HC.SET`, `HC.DELTAG`, a restart) makes Redis refuse its value, which is then
//! returned to the caller and cached nowhere. Also: a key of a foreign type reads as a
//! miss, `build()` checks the server with `HC.HELLO`, and TTL changes made by raw commands
//! reach every L1.

use hybridcache::{CacheEvent, EntryOptions, Error, HybridCache, ServerCheck};
use hybridcache_protocol::CHANNEL_CONFIG;
use hybridcache_tests::client_support::{
    build, builder, cache, events_total, eventually, get_value, DELIVERY,
};
use hybridcache_tests::hc::{self, query};
use hybridcache_tests::{RedisCluster, RedisServer};
use metrics_util::debugging::DebuggingRecorder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// A change made by another client while a factory runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overtake {
    /// No change: the fill is accepted.
    Nothing,
    /// `HC.DEL key` (the key is missing: a removal of nothing still counts).
    Del,
    /// `HC.SET key 2`.
    Set,
    /// `HC.DELTAG tag` of a tag the fill carries (it removes no key).
    DelTag,
}

fn tag_of(key: &str) -> String {
    format!("tag-of-{key}")
}

/// Runs `get_or_set(key)` on `h` with a factory that produces 1 only after `overtake` was
/// made by a raw client; returns what the call returned.
async fn fill_overtaken_by(server: &RedisServer, h: &HybridCache, key: &str, overtake: Overtake) {
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let go = Arc::new(Notify::new());
    let load = {
        let (h, key, go) = (h.clone(), key.to_string(), go.clone());
        tokio::spawn(async move {
            h.get_or_set(
                &key,
                move || async move {
                    let _ = started_tx.send(());
                    go.notified().await;
                    Ok::<_, std::io::Error>(1u32)
                },
                EntryOptions::new()
                    .ttl(Duration::from_secs(60))
                    .tags([tag_of(&key)]),
            )
            .await
        })
    };
    started_rx.await.expect("the factory started");
    let mut con = server.connection();
    match overtake {
        Overtake::Nothing => {}
        Overtake::Del => assert_eq!(hc::hc_del(&mut con, &[key]), 0),
        Overtake::Set => hc::hc_set(&mut con, key, "2", &[]),
        Overtake::DelTag => assert_eq!(hc::hc_deltag(&mut con, &[&tag_of(key)]), 0),
    }
    go.notify_one();
    let got = load.await.expect("get_or_set panicked");
    assert_eq!(
        got.as_deref().ok(),
        Some(&1),
        "the factory's value is returned whatever happens to the fill ({overtake:?}): {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_overtaken_by_a_change_is_returned_but_cached_nowhere() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let mut con = server.connection();
    for (i, overtake) in [
        Overtake::Nothing,
        Overtake::Del,
        Overtake::Set,
        Overtake::DelTag,
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("k{i}");
        let before = h.stats();
        fill_overtaken_by(&server, &h, &key, overtake).await;
        let refused = h.stats().fills_refused - before.fills_refused;
        let (redis, l1_holds_it) = match overtake {
            Overtake::Nothing => (Some("1"), true),
            Overtake::Set => (Some("2"), false),
            Overtake::Del | Overtake::DelTag => (None, false),
        };
        assert_eq!(
            hc::hc_get_str(&mut con, &key).as_deref(),
            redis,
            "Redis after a fill overtaken by {overtake:?}"
        );
        assert_eq!(
            refused,
            u64::from(!l1_holds_it),
            "fills refused after {overtake:?}"
        );
        // No L1 copy of a refused value: the next read goes to Redis.
        let before = h.stats();
        let read = get_value::<u32>(&h, &key).await;
        let after = h.stats();
        assert_eq!(read, redis.map(|v| v.parse().unwrap()), "{overtake:?}");
        assert_eq!(
            after.l1_hits - before.l1_hits,
            u64::from(l1_holds_it),
            "L1 answered the read after {overtake:?}: {after:?}"
        );
        // A fresh instance agrees.
        let other = cache(&server).await;
        assert_eq!(
            get_value::<u32>(&other, &key).await,
            redis.map(|v| v.parse().unwrap())
        );
    }
}

/// The only test of this binary that installs a metrics recorder (it is process-wide).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fill_is_counted_in_stats_and_metrics_and_reported_as_an_event() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    let server = RedisServer::new();
    let h = build(builder(&server).name("fills")).await;
    let mut events = h.events();
    fill_overtaken_by(&server, &h, "r", Overtake::Del).await;
    fill_overtaken_by(&server, &h, "a", Overtake::Nothing).await;
    assert_eq!(h.stats().fills_refused, 1);
    assert_eq!(events_total(&snapshotter, "fills", "fill_refused"), 1);
    assert_eq!(
        events_total(&snapshotter, "fills", "set"),
        1,
        "the accepted fill"
    );
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        seen.contains(&CacheEvent::FillRefused { key: "r".into() }),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, CacheEvent::Set { key } if key == "r")),
        "a refused fill is no write: {seen:?}"
    );
    assert_eq!(
        CacheEvent::FillRefused { key: "r".into() }.name(),
        "fill_refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_queued_during_an_outage_is_refused_by_the_restarted_server() {
    let mut server = RedisServer::new();
    let h = build(builder(&server).auto_recovery(100)).await;
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let go = Arc::new(Notify::new());
    let load = {
        let (h, go) = (h.clone(), go.clone());
        tokio::spawn(async move {
            h.get_or_set(
                "q",
                move || async move {
                    let _ = started_tx.send(());
                    go.notified().await;
                    Ok::<_, std::io::Error>(1u32)
                },
                EntryOptions::new(),
            )
            .await
        })
    };
    started_rx.await.expect("the factory started");
    server.kill();
    go.notify_one();
    let got = load.await.expect("get_or_set panicked");
    assert_eq!(got.as_deref().ok(), Some(&1), "{got:?}");
    assert_eq!(h.queued_operations(), 1, "the fill waits with its lease");

    server.start_again();
    eventually(
        Duration::from_secs(10),
        "the queue to be replayed",
        async || h.is_subscribed() && h.queued_operations() == 0,
    )
    .await;
    assert_eq!(
        h.stats().fills_refused,
        1,
        "a lease from before the restart"
    );
    assert_eq!(hc::hc_get_str(&mut server.connection(), "q"), None);
    assert_eq!(get_value::<u32>(&h, "q").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_a_foreign_type_reads_as_a_miss_and_the_next_fill_replaces_it() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let mut con = server.connection();
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("text"));
    assert_eq!(get_value::<u32>(&h, "plain").await, None);

    // An entry overwritten by a raw SET: gone from L1 and read as missing.
    h.set("w", 1u32, EntryOptions::new()).await.unwrap();
    assert_eq!(get_value::<u32>(&h, "w").await, Some(1));
    let _: () = query(&mut con, redis::cmd("SET").arg("w").arg("text"));
    eventually(DELIVERY, "the raw SET to reach L1", async || {
        get_value::<u32>(&h, "w").await.is_none()
    })
    .await;

    let filled = h
        .get_or_set(
            "w",
            || async { Ok::<_, std::io::Error>(7u32) },
            EntryOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(*filled, 7);
    assert_eq!(hc::hc_get_str(&mut con, "w").as_deref(), Some("7"));
    assert_eq!(h.stats().fills_refused, 0);
    assert_eq!(get_value::<u32>(&cache(&server).await, "w").await, Some(7));
}

fn incompatible(result: Result<HybridCache, Error>) -> (ServerCheck, String, String) {
    match result {
        Err(Error::IncompatibleServer {
            check,
            found,
            expected,
            ..
        }) => (check, found, expected),
        other => panic!("expected an incompatible server, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_fails_without_the_module() {
    let plain = RedisServer::builder().without_module().start();
    let started = Instant::now();
    let result = builder(&plain)
        .subscribe_timeout(Duration::from_secs(5))
        .build()
        .await;
    let message = result.as_ref().err().map(ToString::to_string);
    let (check, found, expected) = incompatible(result);
    assert_eq!(check, ServerCheck::Module);
    assert!(found.contains("HC.HELLO"), "{found}");
    assert!(expected.contains("hybridcache"), "{expected}");
    assert!(
        message
            .unwrap()
            .contains(&format!("127.0.0.1:{}", plain.port())),
        "the error names the server"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "fails at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_fails_when_the_module_publishes_on_another_channel() {
    let server = RedisServer::new();
    let (check, found, expected) =
        incompatible(builder(&server).channel("hc:elsewhere").build().await);
    assert_eq!(check, ServerCheck::Channel);
    assert!(found.contains("\"hc:invalidations\""), "{found}");
    assert!(expected.contains("\"hc:elsewhere\""), "{expected}");

    let custom = RedisServer::builder()
        .module_arg("CHANNEL")
        .module_arg("custom:inval")
        .start();
    let (check, ..) = incompatible(builder(&custom).build().await);
    assert_eq!(check, ServerCheck::Channel);
    let h = build(builder(&custom).channel("custom:inval")).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    let other = build(builder(&custom).channel("custom:inval")).await;
    assert_eq!(get_value::<u32>(&other, "k").await, Some(1));
    h.set("k", 2u32, EntryOptions::new()).await.unwrap();
    eventually(DELIVERY, "the change to reach the other L1", async || {
        get_value::<u32>(&other, "k").await == Some(2)
    })
    .await;
}

/// Reads `key` on `h`, which must come from Redis (not L1) with `expected`.
async fn read_from_redis(h: &HybridCache, key: &str, expected: Option<u32>) {
    let before = h.stats();
    assert_eq!(get_value::<u32>(h, key).await, expected, "{h:?}");
    assert_eq!(h.stats().l1_hits, before.l1_hits, "{key} served from L1");
}

/// Reads `key` on `h`, which must come from L1 with `expected`.
async fn read_from_l1(h: &HybridCache, key: &str, expected: u32) {
    let before = h.stats();
    assert_eq!(get_value::<u32>(h, key).await, Some(expected), "{h:?}");
    assert_eq!(h.stats().l1_hits, before.l1_hits + 1, "{key} not from L1");
}

/// Waits until `h` received more than `before` events.
async fn event_received(h: &HybridCache, before: u64) {
    eventually(DELIVERY, "the expire event", async || {
        h.stats().events_received > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_changed_by_a_raw_command_reaches_every_l1() {
    let server = RedisServer::new();
    let mut con = server.connection();
    // Other keys with TTLs: Redis finds expired keys by sampling, so it would be slow to
    // reclaim ours on its own.
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET")
            .arg(format!("other:{i}"))
            .arg("x")
            .arg("PX")
            .arg(600_000)
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();

    let writer = cache(&server).await;
    let reader = cache(&server).await;
    let long = EntryOptions::new().ttl(Duration::from_secs(600));
    for key in ["e", "p"] {
        writer.set(key, 1u32, long.clone()).await.unwrap();
        read_from_l1(&writer, key, 1).await;
        read_from_redis(&reader, key, Some(1)).await;
        read_from_l1(&reader, key, 1).await;
    }

    // PEXPIRE: both copies dropped; re-read, they live no longer than the new deadline.
    let (w0, r0) = (
        writer.stats().events_received,
        reader.stats().events_received,
    );
    let shortened = Instant::now();
    // Long enough for the re-reads below on a loaded machine, short enough to wait for.
    let _: i64 = query(&mut con, redis::cmd("PEXPIRE").arg("e").arg(1500));
    event_received(&writer, w0).await;
    event_received(&reader, r0).await;
    for h in [&writer, &reader] {
        read_from_redis(h, "e", Some(1)).await;
        read_from_l1(h, "e", 1).await;
    }
    tokio::time::sleep(
        (shortened + Duration::from_millis(1550)).saturating_duration_since(Instant::now()),
    )
    .await;
    for h in [&writer, &reader] {
        read_from_redis(h, "e", None).await;
    }

    // PERSIST: the copies (with the old deadline) are dropped too.
    let (w0, r0) = (
        writer.stats().events_received,
        reader.stats().events_received,
    );
    let _: i64 = query(&mut con, redis::cmd("PERSIST").arg("p"));
    event_received(&writer, w0).await;
    event_received(&reader, r0).await;
    for h in [&writer, &reader] {
        read_from_redis(h, "p", Some(1)).await;
    }

    // The writer's own copy lives no longer than the TTL it wrote.
    writer
        .set(
            "s",
            1u32,
            EntryOptions::new().ttl(Duration::from_millis(1000)),
        )
        .await
        .unwrap();
    let written = Instant::now();
    read_from_l1(&writer, "s", 1).await;
    tokio::time::sleep(
        (written + Duration::from_millis(1050)).saturating_duration_since(Instant::now()),
    )
    .await;
    read_from_redis(&writer, "s", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_checks_every_primary_of_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    build(HybridCache::cluster_builder(cluster.urls())).await;
    let odd = cluster.primaries()[2];
    let _: () = query(
        &mut odd.connection(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(CHANNEL_CONFIG)
            .arg("hc:odd"),
    );
    let result = HybridCache::cluster_builder(cluster.urls()).build().await;
    let message = result.as_ref().err().map(ToString::to_string);
    let (check, found, _) = incompatible(result);
    assert_eq!(check, ServerCheck::Channel);
    assert!(found.contains("\"hc:odd\""), "{found}");
    let message = message.unwrap();
    assert!(
        message.contains(&format!(":{}", odd.port())),
        "the error names the primary: {message}"
    );
}
