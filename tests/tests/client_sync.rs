//! The client crate against a real server: handles on one Redis keep their L1 copies in
//! sync with every change, whoever makes it (another handle, a plain Redis client, expiry,
//! eviction), and the per-entry options and formats do what they say.

use hybridcache::{EntryOptions, Format, HybridCache};
use hybridcache_tests::client_support::{build, builder, cache, eventually, get_value, DELIVERY};
use hybridcache_tests::hc::{self, query};
use hybridcache_tests::info::info_i64;
use hybridcache_tests::{HcInfo, RedisServer};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Reads `key` on `h` and asserts that the read was answered from L1 with `expected`.
async fn assert_l1_hit<T>(h: &HybridCache, key: &str, expected: T)
where
    T: DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static,
{
    let before = h.stats();
    let found = get_value::<T>(h, key).await;
    let after = h.stats();
    assert_eq!(found, Some(expected), "get({key:?}); {h:?}");
    assert_eq!(
        after.l1_hits,
        before.l1_hits + 1,
        "get({key:?}) was not answered from L1: before {before:?}, after {after:?}"
    );
}

/// Reads `key` on `h` (from wherever) expecting `expected`, then once more, which must be
/// an L1 hit: afterwards `h` holds `key` in L1.
async fn prime<T>(h: &HybridCache, key: &str, expected: T)
where
    T: DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static,
{
    assert_eq!(
        get_value::<T>(h, key).await,
        Some(expected.clone()),
        "get({key:?}); {h:?}"
    );
    assert_l1_hit(h, key, expected).await;
}

/// Waits until `h` reads `expected` under `key`.
async fn eventually_reads<T>(h: &HybridCache, key: &str, expected: Option<T>)
where
    T: DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static,
{
    let what = format!("get({key:?}) to return {expected:?} within {DELIVERY:?}");
    eventually(DELIVERY, &what, async || {
        get_value::<T>(h, key).await == expected
    })
    .await;
}

/// Waits until `h` has received every event the server published so far (for handles
/// that subscribed before the server published its first event).
async fn all_events_received(h: &HybridCache, con: &mut redis::Connection) {
    let published = u64::try_from(HcInfo::read(con).events_published).unwrap();
    let what = format!("the handle to receive all {published} events");
    eventually(DELIVERY, &what, async || {
        h.stats().events_received >= published
    })
    .await;
}

fn opts() -> EntryOptions {
    EntryOptions::new()
}

/// A new cache has dropped nothing: its first subscription finds L1 empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cache_reports_no_l1_flush() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let stats = h.stats();
    assert_eq!((stats.l1_flushes, stats.subscriptions), (0, 1), "{stats:?}");
    // A named cache added to a subscribed hub starts connected, with nothing dropped either.
    let named = h.named("other", "other:", EntryOptions::new(), 100);
    assert_eq!(named.stats().l1_flushes, 0, "{:?}", named.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_on_one_handle_replaces_the_l1_copies_of_the_others() {
    let server = RedisServer::new();
    let (a, b, c) = (
        cache(&server).await,
        cache(&server).await,
        cache(&server).await,
    );
    a.set("k", "v1".to_string(), opts()).await.unwrap();
    prime(&b, "k", "v1".to_string()).await;
    prime(&c, "k", "v1".to_string()).await;

    a.set("k", "v2".to_string(), opts()).await.unwrap();
    eventually_reads(&b, "k", Some("v2".to_string())).await;
    eventually_reads(&c, "k", Some("v2".to_string())).await;
    // The new value is cached again.
    assert_l1_hit(&b, "k", "v2".to_string()).await;

    // And the other way round: b writes, a drops its copy.
    prime(&a, "k", "v2".to_string()).await;
    b.set("k", "v3".to_string(), opts()).await.unwrap();
    eventually_reads(&a, "k", Some("v3".to_string())).await;
    eventually_reads(&c, "k", Some("v3".to_string())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_on_one_handle_drops_the_l1_copies_of_the_others() {
    let server = RedisServer::new();
    let (a, b, c) = (
        cache(&server).await,
        cache(&server).await,
        cache(&server).await,
    );
    a.set("gone", 1u32, opts()).await.unwrap();
    a.set("kept", 2u32, opts()).await.unwrap();
    for h in [&b, &c] {
        prime(h, "gone", 1u32).await;
        prime(h, "kept", 2u32).await;
    }
    assert!(a.remove("gone").await.unwrap(), "Redis held the key");
    assert_eq!(get_value::<u32>(&a, "gone").await, None);
    eventually_reads::<u32>(&b, "gone", None).await;
    eventually_reads::<u32>(&c, "gone", None).await;
    // Only the removed key was dropped.
    assert_l1_hit(&b, "kept", 2u32).await;
    assert_l1_hit(&c, "kept", 2u32).await;
    assert!(
        !a.remove("gone").await.unwrap(),
        "the key was removed already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_tag_drops_tagged_l1_copies_everywhere_and_keeps_the_rest() {
    let server = RedisServer::new();
    let (a, b, c) = (
        cache(&server).await,
        cache(&server).await,
        cache(&server).await,
    );
    a.set("k1", 1u32, opts().tags(["t", "x"])).await.unwrap();
    a.set("k2", 2u32, opts().tags(["t"])).await.unwrap();
    a.set("k3", 3u32, opts().tags(["x"])).await.unwrap();
    for h in [&a, &b, &c] {
        prime(h, "k1", 1u32).await;
        prime(h, "k2", 2u32).await;
        prime(h, "k3", 3u32).await;
    }
    assert_eq!(c.remove_by_tag("t").await.unwrap(), 2);
    assert_eq!(get_value::<u32>(&c, "k1").await, None);
    assert_eq!(get_value::<u32>(&c, "k2").await, None);
    for h in [&a, &b] {
        eventually_reads::<u32>(h, "k1", None).await;
        eventually_reads::<u32>(h, "k2", None).await;
    }
    let mut con = server.connection();
    for h in [&a, &b, &c] {
        all_events_received(h, &mut con).await;
        assert_l1_hit(h, "k3", 3u32).await;
    }
    // A key written again with the tag after the removal is served (and cached) normally.
    a.set("k1", 10u32, opts().tags(["t"])).await.unwrap();
    eventually_reads(&b, "k1", Some(10u32)).await;
    assert_l1_hit(&b, "k1", 10u32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_tags_drops_entries_carrying_any_of_the_tags_everywhere() {
    let server = RedisServer::new();
    let (a, b) = (cache(&server).await, cache(&server).await);
    a.set("k1", 1u32, opts().tags(["t1"])).await.unwrap();
    a.set("k2", 2u32, opts().tags(["t2"])).await.unwrap();
    a.set("k12", 12u32, opts().tags(["t1", "t2"]))
        .await
        .unwrap();
    a.set("k3", 3u32, opts().tags(["t3"])).await.unwrap();
    for (key, value) in [("k1", 1u32), ("k2", 2), ("k12", 12), ("k3", 3)] {
        prime(&b, key, value).await;
    }
    assert_eq!(a.remove_by_tags(&["t1", "t2"]).await.unwrap(), 3);
    for key in ["k1", "k2", "k12"] {
        assert_eq!(get_value::<u32>(&a, key).await, None, "{key} on the writer");
        eventually_reads::<u32>(&b, key, None).await;
    }
    assert_l1_hit(&b, "k3", 3u32).await;
    assert_eq!(a.remove_by_tags(Vec::<String>::new()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_ttl_expiry_drops_l1_copies() {
    let server = RedisServer::new();
    let (a, b) = (cache(&server).await, cache(&server).await);
    let ttl = Duration::from_millis(300);
    a.set("k", 1u32, opts().ttl(ttl)).await.unwrap();
    let written = Instant::now();
    prime(&b, "k", 1u32).await;
    assert!(
        written.elapsed() < ttl,
        "test too slow: the entry expired before it was read"
    );
    // Once the TTL has passed (plus scheduling slack) neither handle may serve it.
    tokio::time::sleep((written + ttl + Duration::from_millis(100)) - Instant::now()).await;
    assert_eq!(get_value::<u32>(&b, "k").await, None, "{b:?}");
    assert_eq!(get_value::<u32>(&a, "k").await, None, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_never_outlives_the_redis_ttl_it_was_read_with() {
    let server = RedisServer::new();
    let mut con = server.connection();
    // Without active expiry the key stays in Redis until it is accessed, so no expiry event
    // can drop the L1 copy: only the lifetime L1 gave the copy can.
    let _: () = query(
        &mut con,
        redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg(0),
    );
    let b = cache(&server).await;
    let long_l1 = opts().l1_ttl(Duration::from_secs(60));
    let ttl = Duration::from_millis(200);
    let started = Instant::now();
    assert_eq!(
        hc::hc_set_with(&mut con, "k", "7", &["PX", "200"], &[]),
        redis::Value::Okay
    );
    assert_eq!(
        b.get_with::<u32>("k", long_l1.clone())
            .await
            .unwrap()
            .as_deref(),
        Some(&7)
    );
    let hits = b.stats().l1_hits;
    assert_eq!(
        b.get_with::<u32>("k", long_l1.clone())
            .await
            .unwrap()
            .as_deref(),
        Some(&7)
    );
    assert_eq!(b.stats().l1_hits, hits + 1, "second read not from L1");
    all_events_received(&b, &mut con).await;
    assert!(started.elapsed() < ttl, "test too slow");
    let events = b.stats().events_received;
    tokio::time::sleep((started + ttl + Duration::from_millis(100)) - Instant::now()).await;
    assert_eq!(
        b.stats().events_received,
        events,
        "an event arrived although active expiry is off; the test proves nothing"
    );
    assert_eq!(
        b.get_with::<u32>("k", long_l1).await.unwrap().as_deref(),
        None,
        "L1 served a value whose Redis TTL had passed; {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expiring_on_the_server_drops_l1_copies_that_would_live_longer() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let (a, b) = (cache(&server).await, cache(&server).await);
    // Cached with the default 5 minute TTL; then the TTL is shortened behind the
    // handles' backs (PEXPIRE publishes nothing), so only the expiry's event can drop
    // the copies.
    a.set("k", 1u32, opts()).await.unwrap();
    prime(&a, "k", 1u32).await;
    prime(&b, "k", 1u32).await;
    assert_eq!(
        query::<i64>(&mut con, redis::cmd("PEXPIRE").arg("k").arg(200)),
        1
    );
    let what = "get(k) to return None after the server expired the key";
    eventually(Duration::from_millis(200) + DELIVERY, what, async || {
        get_value::<u32>(&b, "k").await.is_none()
    })
    .await;
    eventually(DELIVERY, what, async || {
        get_value::<u32>(&a, "k").await.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_eviction_drops_l1_copies_of_evicted_keys() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let (a, b) = (cache(&server).await, cache(&server).await);
    a.set("victim", 1u32, opts()).await.unwrap();
    prime(&b, "victim", 1u32).await;
    prime(&a, "victim", 1u32).await;

    let used = info_i64(&mut con, "memory", "used_memory");
    let _: () = query(
        &mut con,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("allkeys-lru")
            .arg("maxmemory")
            .arg(used + 2 * 1024 * 1024),
    );
    let filler = "x".repeat(10 * 1024);
    let mut evicted = false;
    for i in 0..5_000 {
        hc::hc_set(&mut con, format!("fill:{i}"), filler.as_str(), &[]);
        if i % 20 == 19 && !hc::exists(&mut con, "victim") {
            evicted = true;
            break;
        }
    }
    let evicted_keys = info_i64(&mut con, "stats", "evicted_keys");
    assert!(
        evicted,
        "the victim was not evicted; evicted_keys={evicted_keys}"
    );
    assert!(evicted_keys > 0);
    eventually_reads::<u32>(&b, "victim", None).await;
    eventually_reads::<u32>(&a, "victim", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_reads_its_own_write_at_once_and_keeps_it_in_l1() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let (a, b) = (cache(&server).await, cache(&server).await);

    a.set("k", "v1".to_string(), opts()).await.unwrap();
    assert_l1_hit(&a, "k", "v1".to_string()).await;
    // Its own event does not drop what it wrote.
    all_events_received(&a, &mut con).await;
    assert_l1_hit(&a, "k", "v1".to_string()).await;

    // An overwrite replaces its own L1 copy at once, even while others hold the old one.
    prime(&b, "k", "v1".to_string()).await;
    a.set("k", "v2".to_string(), opts()).await.unwrap();
    assert_l1_hit(&a, "k", "v2".to_string()).await;
    all_events_received(&a, &mut con).await;
    assert_l1_hit(&a, "k", "v2".to_string()).await;
    eventually_reads(&b, "k", Some("v2".to_string())).await;

    // The same for a value get_or_set made with its factory.
    let made = a
        .get_or_set(
            "made",
            || async { Ok::<_, std::io::Error>(5u32) },
            opts().tags(["t"]),
        )
        .await
        .unwrap();
    assert_eq!(*made, 5);
    assert_eq!(a.stats().factory_runs, 1);
    all_events_received(&a, &mut con).await;
    assert_l1_hit(&a, "made", 5u32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_by_plain_redis_commands_drop_l1_copies() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let (a, b) = (cache(&server).await, cache(&server).await);
    for (key, value) in [("k1", 1u32), ("k2", 2), ("k3", 3)] {
        a.set(key, value, opts()).await.unwrap();
        prime(&a, key, value).await;
        prime(&b, key, value).await;
    }

    // HC.SET by another client.
    hc::hc_set(&mut con, "k1", "10", &[]);
    eventually_reads(&a, "k1", Some(10u32)).await;
    eventually_reads(&b, "k1", Some(10u32)).await;

    // Plain DEL.
    assert_eq!(query::<i64>(&mut con, redis::cmd("DEL").arg("k2")), 1);
    eventually_reads::<u32>(&a, "k2", None).await;
    eventually_reads::<u32>(&b, "k2", None).await;
    assert_l1_hit(&b, "k3", 3u32).await;

    // FLUSHALL.
    let _: () = query(&mut con, &redis::cmd("FLUSHALL"));
    eventually_reads::<u32>(&a, "k3", None).await;
    eventually_reads::<u32>(&b, "k3", None).await;

    // FLUSHDB.
    a.set("k4", 4u32, opts()).await.unwrap();
    prime(&b, "k4", 4u32).await;
    let _: () = query(&mut con, &redis::cmd("FLUSHDB"));
    eventually_reads::<u32>(&a, "k4", None).await;
    eventually_reads::<u32>(&b, "k4", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_isolate_keys_and_tags() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let a = build(builder(&server).namespace("A:")).await;
    let a2 = build(builder(&server).namespace("A:")).await;
    let b = build(builder(&server).namespace("B:")).await;

    a.set("k", 1u32, opts().tags(["t"])).await.unwrap();
    b.set("k", 2u32, opts().tags(["t"])).await.unwrap();
    assert_eq!(hc::hc_get_str(&mut con, "A:k").as_deref(), Some("1"));
    assert_eq!(hc::hc_get_str(&mut con, "B:k").as_deref(), Some("2"));
    assert_eq!(hc::hc_get_str(&mut con, "k"), None);
    assert_eq!(hc::tags(&mut con, "A:k"), ["A:*", "A:t"]);
    assert_eq!(hc::tags(&mut con, "B:k"), ["B:*", "B:t"]);
    prime(&a, "k", 1u32).await;
    prime(&a2, "k", 1u32).await;
    prime(&b, "k", 2u32).await;
    assert_eq!(get_value::<u32>(&b, "A:k").await, None);

    assert_eq!(a.remove_by_tag("t").await.unwrap(), 1);
    assert_eq!(get_value::<u32>(&a, "k").await, None);
    eventually_reads::<u32>(&a2, "k", None).await;
    assert_eq!(hc::hc_get_str(&mut con, "B:k").as_deref(), Some("2"));
    // B received the event of namespace A's tag removal and kept its own entry in L1.
    all_events_received(&b, &mut con).await;
    assert_l1_hit(&b, "k", 2u32).await;

    // A key removal in one namespace leaves the same key of the other alone, too.
    a.set("k", 1u32, opts()).await.unwrap();
    assert_l1_hit(&a, "k", 1u32).await;
    assert!(b.remove("k").await.unwrap());
    assert_eq!(hc::hc_get_str(&mut con, "A:k").as_deref(), Some("1"));
    all_events_received(&a, &mut con).await;
    assert_l1_hit(&a, "k", 1u32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_isolate_keys_and_their_invalidations() {
    let server = RedisServer::new();
    let mut con0 = server.connection();
    let mut con1 = server.connection_to_db(1);
    let in_db = |db: u32| HybridCache::builder(format!("{}{db}", server.url()));
    let a0 = build(in_db(0)).await;
    let b0 = build(in_db(0)).await;
    let a1 = build(in_db(1)).await;

    a0.set("k", 0u32, opts()).await.unwrap();
    a1.set("k", 1u32, opts()).await.unwrap();
    assert_eq!(hc::hc_get_str(&mut con0, "k").as_deref(), Some("0"));
    assert_eq!(hc::hc_get_str(&mut con1, "k").as_deref(), Some("1"));
    prime(&b0, "k", 0u32).await;
    prime(&a1, "k", 1u32).await;

    // A change in database 0 drops database 0's copies only.
    assert_eq!(query::<i64>(&mut con0, redis::cmd("DEL").arg("k")), 1);
    eventually_reads::<u32>(&b0, "k", None).await;
    eventually_reads::<u32>(&a0, "k", None).await;
    all_events_received(&a1, &mut con0).await;
    assert_l1_hit(&a1, "k", 1u32).await;

    // FLUSHDB of database 1 leaves database 0 alone.
    b0.set("k", 2u32, opts()).await.unwrap();
    prime(&a0, "k", 2u32).await;
    let _: () = query(&mut con1, &redis::cmd("FLUSHDB"));
    eventually_reads::<u32>(&a1, "k", None).await;
    all_events_received(&a0, &mut con0).await;
    assert_l1_hit(&a0, "k", 2u32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_l1_entries_are_never_served_from_l1() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let skip = opts().skip_l1(true);

    a.set("k", 1u32, skip.clone()).await.unwrap();
    let before = a.stats();
    for _ in 0..3 {
        assert_eq!(
            a.get_with::<u32>("k", skip.clone())
                .await
                .unwrap()
                .as_deref(),
            Some(&1)
        );
    }
    let after = a.stats();
    assert_eq!(after.l1_hits, before.l1_hits, "{after:?}");
    assert_eq!(after.l2_hits, before.l2_hits + 3, "{after:?}");
    // The write kept nothing in L1 either: a normal read goes to Redis.
    assert_eq!(get_value::<u32>(&a, "k").await, Some(1));
    assert_eq!(a.stats().l1_hits, before.l1_hits, "{:?}", a.stats());

    // get_or_set with skip_l1: the factory runs once, later calls read Redis, not L1.
    for _ in 0..3 {
        let value = a
            .get_or_set(
                "made",
                || async { Ok::<_, std::io::Error>(7u32) },
                skip.clone(),
            )
            .await
            .unwrap();
        assert_eq!(*value, 7);
    }
    let stats = a.stats();
    assert_eq!(stats.factory_runs, 1, "{stats:?}");
    assert_eq!(stats.l1_hits, before.l1_hits, "{stats:?}");
    assert_eq!(stats.l2_hits, after.l2_hits + 1 + 2, "{stats:?}");

    // A handle whose default is skip_l1 never serves from L1.
    let no_l1 = build(builder(&server).default_options(opts().skip_l1(true))).await;
    no_l1.set("d", 3u32, opts()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get_value::<u32>(&no_l1, "d").await, Some(3));
    }
    assert_eq!(no_l1.stats().l1_hits, 0, "{:?}", no_l1.stats());
    assert_eq!(no_l1.l1_entry_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_l2_entries_stay_out_of_redis_and_are_served_locally() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let (a, b) = (cache(&server).await, cache(&server).await);
    let skip = opts().skip_l2(true);

    a.set("local", 1u32, skip.clone()).await.unwrap();
    assert_eq!(hc::hc_get(&mut con, "local"), None);
    assert!(!hc::exists(&mut con, "local"));
    assert_l1_hit(&a, "local", 1u32).await;
    assert_l1_hit(&a, "local", 1u32).await;
    assert_eq!(get_value::<u32>(&b, "local").await, None);

    let made = a
        .get_or_set(
            "made",
            || async { Ok::<_, std::io::Error>(2u32) },
            skip.clone(),
        )
        .await
        .unwrap();
    assert_eq!(*made, 2);
    assert_eq!(hc::hc_get(&mut con, "made"), None);
    let again = a
        .get_or_set(
            "made",
            || async { Ok::<_, std::io::Error>(99u32) },
            skip.clone(),
        )
        .await
        .unwrap();
    assert_eq!(*again, 2, "served from L1, factory not run again");
    assert_eq!(a.stats().factory_runs, 1);

    // A read that skips L2 never asks Redis.
    hc::hc_set(&mut con, "remote", "3", &[]);
    let before = a.stats();
    assert_eq!(
        a.get_with::<u32>("remote", skip.clone()).await.unwrap(),
        None
    );
    let after = a.stats();
    assert_eq!(
        (after.l2_hits, after.l2_misses),
        (before.l2_hits, before.l2_misses)
    );
    assert_eq!(hc::dbsize(&mut con), 1, "only `remote` is in Redis");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    name: String,
    price_cents: u64,
    tags: Vec<String>,
}

fn lamp() -> Product {
    Product {
        name: "lamp".into(),
        price_cents: 1999,
        tags: vec!["lighting".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_pack_round_trips_a_struct_between_handles() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let a = build(builder(&server).format(Format::MessagePack)).await;
    let b = build(builder(&server).format(Format::MessagePack)).await;
    a.set("p", lamp(), opts()).await.unwrap();
    let before = b.stats();
    assert_eq!(get_value::<Product>(&b, "p").await, Some(lamp()));
    assert_eq!(b.stats().l2_hits, before.l2_hits + 1, "decoded from Redis");
    assert_l1_hit(&b, "p", lamp()).await;

    let bytes = hc::hc_get(&mut con, "p").expect("stored in Redis");
    assert_eq!(
        bytes[0], 0x83,
        "a MessagePack map of 3 named fields: {bytes:?}"
    );
    assert!(
        bytes.windows(11).any(|w| w == b"price_cents"),
        "fields by name: {bytes:?}"
    );
    // A handle of the other format reports an error instead of a wrong value.
    let json = cache(&server).await;
    assert!(json.get::<Product>("p").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_stores_readable_json_in_redis() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let a = build(builder(&server).format(Format::Json)).await;
    a.set("p", lamp(), opts()).await.unwrap();
    assert_eq!(
        hc::hc_get_str(&mut con, "p").as_deref(),
        Some(r#"{"name":"lamp","price_cents":1999,"tags":["lighting"]}"#)
    );
    // JSON written by anyone is read back as the struct.
    hc::hc_set(
        &mut con,
        "q",
        r#"{"name":"bulb","price_cents":5,"tags":[]}"#,
        &[],
    );
    let b = cache(&server).await;
    assert_eq!(
        get_value::<Product>(&b, "q").await,
        Some(Product {
            name: "bulb".into(),
            price_cents: 5,
            tags: vec![],
        })
    );
    assert_eq!(get_value::<Product>(&b, "p").await, Some(lamp()));
}
