//! The client crate when things go wrong: a killed subscription, a restarted or stopped
//! server, events it cannot read, missed events, a silently dead link. In every case L1
//! must not serve a value that may have changed, and the handle must recover by itself.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::{Change, InvalidationEvent, Name, Op, DEFAULT_CHANNEL};
use hybridcache_tests::client_support::{build, builder, eventually, get_value, DELIVERY};
use hybridcache_tests::hc::{self, query};
use hybridcache_tests::{HcInfo, RedisServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a handle may take to subscribe again once the server is reachable.
const RECOVERY: Duration = Duration::from_secs(5);

/// Longest a command may take while Redis is down, with a 500 ms command timeout.
const FAIL_FAST: Duration = Duration::from_millis(1500);

/// Reads `key` on `h` and asserts that the read was answered from L1 with `expected`.
async fn assert_l1_hit(h: &HybridCache, key: &str, expected: u32) {
    let before = h.stats();
    let found = get_value::<u32>(h, key).await;
    let after = h.stats();
    assert_eq!(found, Some(expected), "get({key:?}); {h:?}");
    assert_eq!(
        after.l1_hits,
        before.l1_hits + 1,
        "get({key:?}) was not answered from L1: before {before:?}, after {after:?}"
    );
}

/// Reads `key` on `h` and asserts that it was not answered from L1 but from Redis, with
/// `expected`.
async fn assert_read_from_redis(h: &HybridCache, key: &str, expected: u32) {
    let before = h.stats();
    let found = get_value::<u32>(h, key).await;
    let after = h.stats();
    assert_eq!(found, Some(expected), "get({key:?}); {h:?}");
    assert_eq!(
        (after.l1_hits, after.l2_hits),
        (before.l1_hits, before.l2_hits + 1),
        "get({key:?}) should have gone to Redis: before {before:?}, after {after:?}"
    );
}

/// A read's result with the value copied out of its `Arc`, for `matches!`.
fn plain(read: hybridcache::Result<Option<Arc<u32>>>) -> hybridcache::Result<Option<u32>> {
    read.map(|found| found.as_deref().copied())
}

async fn wait_resubscribed(h: &HybridCache, at_least: u64) {
    eventually(RECOVERY, "the handle to subscribe again", async || {
        h.is_subscribed() && h.stats().subscriptions >= at_least
    })
    .await;
}

/// Waits until `h` received an event after `before` events.
async fn wait_event(h: &HybridCache, before: u64) {
    eventually(DELIVERY, "the handle to receive the event", async || {
        h.stats().events_received > before
    })
    .await;
}

fn publish(con: &mut redis::Connection, payload: &[u8]) -> i64 {
    query(con, redis::cmd("PUBLISH").arg(DEFAULT_CHANNEL).arg(payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_stops_l1_at_once_and_recovers_without_stale_values() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let h = build(builder(&server)).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    assert_l1_hit(&h, "k", 1).await;
    assert_eq!(h.stats().subscriptions, 1);

    let killed: i64 = query(
        &mut con,
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"),
    );
    assert_eq!(killed, 1, "the handle's subscription connection");
    // Changed while nobody listens: the event of this write reaches no handle.
    hc::hc_set(&mut con, "k", "2", &[]);

    eventually(
        DELIVERY,
        "the handle to notice the lost subscription",
        async || !h.is_subscribed() || h.stats().subscriptions >= 2,
    )
    .await;
    assert_eq!(
        get_value::<u32>(&h, "k").await,
        Some(2),
        "stale L1 value served after the subscription was lost; {h:?}"
    );

    wait_resubscribed(&h, 2).await;
    assert_eq!(get_value::<u32>(&h, "k").await, Some(2));
    assert_l1_hit(&h, "k", 2).await;
    // Events flow again.
    hc::hc_set(&mut con, "k", "3", &[]);
    eventually(DELIVERY, "the handle to read 3", async || {
        get_value::<u32>(&h, "k").await == Some(3)
    })
    .await;
    assert_l1_hit(&h, "k", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_recovered_from_without_stale_values() {
    let mut server = RedisServer::builder().args(["--appendonly", "yes"]).start();
    let h = build(builder(&server)).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    h.set("kept", 5u32, EntryOptions::new()).await.unwrap();
    assert_l1_hit(&h, "k", 1).await;
    assert_l1_hit(&h, "kept", 5).await;

    server.restart();
    let mut con = server.connection();
    assert_eq!(
        hc::hc_get_str(&mut con, "k").as_deref(),
        Some("1"),
        "persisted"
    );
    // Changed on the restarted server before the handle reads again.
    hc::hc_set(&mut con, "k", "2", &[]);

    wait_resubscribed(&h, 2).await;
    // The first operation once the handle reports itself recovered.
    let first = plain(h.get::<u32>("k").await);
    assert!(
        !matches!(first, Ok(Some(1))),
        "stale value served after the restart; {h:?}"
    );
    eventually(RECOVERY, "reads to succeed again", async || {
        h.get::<u32>("k").await.is_ok()
    })
    .await;
    assert_eq!(get_value::<u32>(&h, "k").await, Some(2));
    // Values that did not change come from Redis once, then from L1 again.
    assert_read_from_redis(&h, "kept", 5).await;
    assert_l1_hit(&h, "kept", 5).await;
    // Writes, removals and invalidations work again.
    h.set("new", 7u32, EntryOptions::new()).await.unwrap();
    assert_eq!(hc::hc_get_str(&mut con, "new").as_deref(), Some("7"));
    assert!(h.remove("kept").await.unwrap());
    assert_eq!(get_value::<u32>(&h, "kept").await, None);
    hc::hc_set(&mut con, "k", "3", &[]);
    eventually(DELIVERY, "the handle to read 3", async || {
        get_value::<u32>(&h, "k").await == Some(3)
    })
    .await;
    assert!(
        matches!(first, Ok(Some(2))),
        "the first read after the handle was subscribed again failed: {first:?}"
    );
}

/// Runs `op` for at most [`FAIL_FAST`]; records `what` in `slow` when it takes longer
/// (and then gives up on it).
async fn bounded<T>(
    slow: &mut Vec<&'static str>,
    what: &'static str,
    op: impl std::future::Future<Output = T>,
) -> Option<T> {
    match tokio::time::timeout(FAIL_FAST, op).await {
        Ok(result) => Some(result),
        Err(_) => {
            slow.push(what);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_operations_fail_fast_and_fail_safe_entries_are_served() {
    let mut server = RedisServer::new();
    let h = build(
        builder(&server)
            .command_timeout(Duration::from_millis(500))
            .health_check(Duration::from_millis(200), Duration::from_millis(300)),
    )
    .await;
    let ttl = Duration::from_millis(300);
    let safe = EntryOptions::new()
        .ttl(ttl)
        .fail_safe(Duration::from_secs(60));
    h.set("safe", 1u32, safe.clone()).await.unwrap();
    let written = Instant::now();
    h.set("plain", 2u32, EntryOptions::new()).await.unwrap();
    assert_l1_hit(&h, "safe", 1).await;
    assert_l1_hit(&h, "plain", 2).await;

    server.kill();
    eventually(DELIVERY, "the handle to notice Redis is gone", async || {
        !h.is_subscribed()
    })
    .await;
    // Let the fail-safe entry's TTL pass.
    if let Some(rest) =
        (written + ttl + Duration::from_millis(50)).checked_duration_since(Instant::now())
    {
        tokio::time::sleep(rest).await;
    }

    // Operations that take longer than FAIL_FAST (with a 500 ms command timeout).
    let mut slow = Vec::new();
    let before = h.stats();
    if let Some(got) = bounded(&mut slow, "get(safe)", h.get::<u32>("safe")).await {
        let got = plain(got);
        assert!(matches!(got, Ok(Some(1))), "fail-safe entry: {got:?}");
        assert_eq!(h.stats().fail_safe_hits, before.fail_safe_hits + 1);
    }
    if let Some(got) = bounded(&mut slow, "get(plain)", h.get::<u32>("plain")).await {
        assert!(got.is_err(), "entry without fail-safe: {got:?}");
    }
    if let Some(set) = bounded(&mut slow, "set", h.set("x", 9u32, EntryOptions::new())).await {
        assert!(set.is_err(), "set: {set:?}");
    }
    if let Some(removed) = bounded(&mut slow, "remove", h.remove("plain")).await {
        assert!(removed.is_err(), "remove: {removed:?}");
    }
    if let Some(by_tag) = bounded(&mut slow, "remove_by_tag", h.remove_by_tag("t")).await {
        assert!(by_tag.is_err(), "remove_by_tag: {by_tag:?}");
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let factory = |value: u32| {
        let runs = runs.clone();
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(value)
        }
    };
    let made = h.get_or_set("new", factory(3), EntryOptions::new());
    if let Some(made) = bounded(&mut slow, "get_or_set(new)", made).await {
        // Nothing stale to serve: the source is asked, its value served (not cached).
        assert!(
            matches!(made.as_deref(), Ok(&3)),
            "get_or_set of a new key: {made:?}"
        );
    }
    let stale = h.get_or_set("safe", factory(100), safe.clone());
    if let Some(stale) = bounded(&mut slow, "get_or_set(safe)", stale).await {
        assert!(
            matches!(stale.as_deref(), Ok(&1)),
            "get_or_set falls back to the fail-safe value: {stale:?}"
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the factory runs only where no stale value is kept"
    );

    server.start_again();
    wait_resubscribed(&h, 2).await;
    // The first operation once the handle reports itself recovered.
    let started = Instant::now();
    let first = h.get::<u32>("safe").await;
    let first_took = started.elapsed();
    // The server came back empty (no persistence): the stale value is not served any more,
    // and reads and writes work.
    assert!(
        !matches!(plain(first.clone()), Ok(Some(_))),
        "after recovery: {first:?}; {h:?}"
    );
    eventually(RECOVERY, "reads to succeed again", async || {
        h.get::<u32>("safe").await.is_ok()
    })
    .await;
    assert_eq!(get_value::<u32>(&h, "safe").await, None);
    h.set("x", 9u32, EntryOptions::new()).await.unwrap();
    assert_eq!(get_value::<u32>(&h, "x").await, Some(9));
    assert_l1_hit(&h, "x", 9).await;
    assert_eq!(
        hc::hc_get_str(&mut server.connection(), "x").as_deref(),
        Some("9")
    );

    let mut problems = Vec::new();
    if !slow.is_empty() {
        problems.push(format!(
            "while Redis was down these took longer than {FAIL_FAST:?} despite a 500 ms command timeout: {slow:?}"
        ));
    }
    if !(matches!(plain(first.clone()), Ok(None)) && first_took < FAIL_FAST) {
        problems.push(format!(
            "the first read after the handle was subscribed again returned {first:?} after {first_took:?}"
        ));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Caches `k` in `h`'s L1, publishes `payload` on the channel, and asserts that `k` is no
/// longer served from L1 afterwards (`l1_flushes` grew; the next read goes to Redis).
async fn assert_event_drops_l1(server: &RedisServer, payload: &[u8]) {
    let mut con = server.connection();
    let h = build(builder(server)).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    wait_event(&h, 0).await; // the write's own event
    assert_l1_hit(&h, "k", 1).await;
    let before = h.stats();
    assert_eq!(publish(&mut con, payload), 1, "one subscriber: the handle");
    wait_event(&h, before.events_received).await;
    let after = h.stats();
    assert!(
        after.l1_flushes > before.l1_flushes,
        "payload {:?}: before {before:?}, after {after:?}",
        String::from_utf8_lossy(payload)
    );
    assert_read_from_redis(&h, "k", 1).await;
    assert_l1_hit(&h, "k", 1).await;
    assert!(h.is_subscribed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_an_unknown_format_version_clears_l1() {
    let server = RedisServer::new();
    assert_event_drops_l1(&server, br#"{"v":99}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_clears_l1() {
    let server = RedisServer::new();
    assert_event_drops_l1(&server, b"not an event").await;
}

fn keys_event(origin: &str, seq: u64, key: &str) -> Vec<u8> {
    InvalidationEvent::new(
        origin,
        seq,
        Some(0),
        Op::Set,
        Change::Keys {
            keys: vec![Name::from(key)],
        },
    )
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_sequence_numbers_marks_l1_stale() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let h = build(builder(&server)).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    wait_event(&h, 0).await; // the write's own event
    assert_l1_hit(&h, "k", 1).await;

    // Control: an event in sequence about another key leaves k in L1.
    let before = h.stats();
    hc::hc_set(&mut con, "unrelated", "0", &[]);
    wait_event(&h, before.events_received).await;
    assert_l1_hit(&h, "k", 1).await;
    assert_eq!(h.stats().l1_flushes, before.l1_flushes);

    let info = HcInfo::read(&mut con);
    let last = u64::try_from(info.events_published).unwrap();
    let before = h.stats();
    publish(&mut con, &keys_event(&info.origin, last + 100, "unrelated"));
    wait_event(&h, before.events_received).await;
    assert!(h.stats().l1_flushes > before.l1_flushes, "{:?}", h.stats());
    assert_read_from_redis(&h, "k", 1).await;
    assert_l1_hit(&h, "k", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_another_origin_are_numbered_on_their_own() {
    // In a cluster every primary numbers its events: a first event of another origin is
    // not a gap, a gap in that origin's numbers is.
    let server = RedisServer::new();
    let mut con = server.connection();
    let h = build(builder(&server)).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    wait_event(&h, 0).await;
    assert_l1_hit(&h, "k", 1).await;

    let info = HcInfo::read(&mut con);
    let other = if info.origin == "0123456789abcdef" {
        "fedcba9876543210"
    } else {
        "0123456789abcdef"
    };
    for seq in [7, 8] {
        let before = h.stats();
        publish(&mut con, &keys_event(other, seq, "unrelated"));
        wait_event(&h, before.events_received).await;
        assert_eq!(h.stats().l1_flushes, before.l1_flushes, "seq {seq}");
        assert_l1_hit(&h, "k", 1).await;
    }
    let before = h.stats();
    publish(&mut con, &keys_event(other, 10, "unrelated"));
    wait_event(&h, before.events_received).await;
    assert!(h.stats().l1_flushes > before.l1_flushes, "{:?}", h.stats());
    assert_read_from_redis(&h, "k", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_clears_l1() {
    let primary = RedisServer::new();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    // The handle is subscribed on the replica, as an instance reading from it would be.
    let h = build(builder(&replica)).await;
    hc::hc_set(&mut primary.connection(), "k", "1", &[]);
    replica.wait_in_sync_with(&primary);
    assert_read_from_redis(&h, "k", 1).await;
    assert_l1_hit(&h, "k", 1).await;

    let before = h.stats();
    drop(primary);
    let mut rcon = replica.connection();
    let _: () = query(&mut rcon, redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    wait_event(&h, before.events_received).await;
    assert!(h.stats().l1_flushes > before.l1_flushes, "{:?}", h.stats());
    assert_read_from_redis(&h, "k", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_subscription_is_found_by_the_health_check() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let h = build(
        builder(&server)
            .health_check(Duration::from_millis(200), Duration::from_millis(300))
            .command_timeout(Duration::from_millis(500)),
    )
    .await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    assert_l1_hit(&h, "k", 1).await;
    let before = h.stats();

    // Every client's commands wait while the server is paused: the connection stays open
    // but PINGs go unanswered, as on a dead link.
    let pause = Duration::from_millis(2500);
    let paused_at = Instant::now();
    let _: () = query(
        &mut con,
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(pause.as_millis() as u64)
            .arg("ALL"),
    );
    eventually(
        Duration::from_secs(2),
        "the health check to drop the subscription",
        async || !h.is_subscribed(),
    )
    .await;
    let noticed_after = paused_at.elapsed();
    // L1 keeps what it holds until the subscription is back (then the events missed are
    // replayed, or L1 is reset), but serves nothing now, and Redis does not answer: an error, not the cached value.
    let got = h.get::<u32>("k").await;
    assert!(
        paused_at.elapsed() >= pause || got.is_err(),
        "while paused (noticed after {noticed_after:?}): {got:?}"
    );

    wait_resubscribed(&h, 2).await;
    assert!(paused_at.elapsed() >= pause);
    // Nothing was missed: the server's event log said so, and L1 was kept.
    let after = h.stats();
    assert_eq!(after.catch_ups, before.catch_ups + 1, "{after:?}");
    assert_eq!(after.l1_flushes, before.l1_flushes, "{after:?}");
    assert_l1_hit(&h, "k", 1).await;
}
