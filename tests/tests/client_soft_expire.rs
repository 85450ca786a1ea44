//! Soft expiry (`expire`, `expire_by_tag`), as FusionCache's `Expire`, between two client
//! instances on a real server: the entry leaves Redis, so the next `get_or_set` on any
//! instance runs its factory; an instance holding a copy with fail-safe serves it as a stale
//! value when the factory fails or Redis is down, never as fresh; without fail-safe the copy
//! is simply gone. A cluster test expires a tag on every primary.

use hybridcache::{CacheEvent, EntryOptions, Error, HybridCache};
use hybridcache_tests::client_support::{build, builder, eventually, get_value, DELIVERY};
use hybridcache_tests::cluster::key_slot;
use hybridcache_tests::hc::{hc_get, query};
use hybridcache_tests::{RedisCluster, RedisServer};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Factory =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<u32, std::io::Error>> + Send>> + Send>;

/// A factory counting its runs in `runs`: `Some(v)` answers `v`, `None` fails.
fn factory(runs: &Arc<AtomicUsize>, value: Option<u32>) -> Factory {
    let runs = runs.clone();
    Box::new(move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            value.ok_or_else(|| std::io::Error::other("source down"))
        })
    })
}

fn runs() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(runs: &Arc<AtomicUsize>) -> usize {
    runs.load(Ordering::SeqCst)
}

/// A long-lived entry with fail-safe, retried soon after a failure.
fn with_fail_safe() -> EntryOptions {
    EntryOptions::new()
        .ttl(Duration::from_secs(600))
        .fail_safe(Duration::from_secs(600))
        .fail_safe_throttle(Duration::from_millis(300))
}

async fn get_or_set(
    h: &HybridCache,
    key: &str,
    factory: Factory,
    options: &EntryOptions,
) -> Result<u32, Error> {
    h.get_or_set(key, factory, options.clone())
        .await
        .map(|v| *v)
}

/// Fills `key` with `value` on `h` and checks the next read is an L1 hit.
async fn fill(h: &HybridCache, key: &str, value: u32, options: &EntryOptions) {
    let n = runs();
    assert_eq!(
        get_or_set(h, key, factory(&n, Some(value)), options)
            .await
            .unwrap(),
        value
    );
    let before = h.stats().l1_hits;
    assert_eq!(
        get_or_set(h, key, factory(&n, Some(value + 1000)), options)
            .await
            .unwrap(),
        value,
        "{key}: cached"
    );
    assert_eq!(h.stats().l1_hits, before + 1, "{key}: an L1 hit; {h:?}");
}

/// Waits until `h` no longer serves `key` as fresh: a failing factory runs (and its call
/// is answered with the stale `value`).
async fn until_stale(h: &HybridCache, key: &str, value: u32, options: &EntryOptions) {
    let failing = runs();
    eventually(
        DELIVERY,
        "the soft expiry to reach the instance",
        async || {
            let got = get_or_set(h, key, factory(&failing, None), options).await;
            assert_eq!(got.ok(), Some(value), "{key}: the stale value is served");
            count(&failing) > 0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_sends_every_instance_to_the_factory_and_a_failure_gets_the_stale_value() {
    let server = RedisServer::new();
    let (a, b) = (build(builder(&server)).await, build(builder(&server)).await);
    let options = with_fail_safe();
    fill(&a, "k", 1, &options).await;
    fill(&b, "k", 1, &options).await;
    fill(&b, "other", 5, &options).await;
    let mut events = a.events();

    assert!(a.expire("k").await.unwrap(), "Redis held it");
    assert_eq!(
        hc_get(&mut server.connection(), "k"),
        None,
        "gone from Redis"
    );
    let seen: Vec<CacheEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        seen.contains(&CacheEvent::Expire { key: "k".into() }),
        "{seen:?}"
    );
    // The calling instance at once, the other when the event reaches it: the factory
    // runs; it fails, so the stale value is served.
    let failing = runs();
    assert_eq!(
        get_or_set(&a, "k", factory(&failing, None), &options)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&failing), 1, "A ran the factory");
    until_stale(&b, "k", 1, &options).await;
    // Another key is untouched.
    let n = runs();
    assert_eq!(
        get_or_set(&b, "other", factory(&n, Some(6)), &options)
            .await
            .unwrap(),
        5
    );
    assert_eq!(count(&n), 0);

    // Past the throttle a working factory refills; the new value is fresh everywhere.
    tokio::time::sleep(Duration::from_millis(350)).await;
    // A plain read (no factory, Redis answering) finds nothing: the copy is only stale.
    assert_eq!(get_value::<u32>(&b, "k").await, None);
    let n = runs();
    assert_eq!(
        get_or_set(&b, "k", factory(&n, Some(2)), &options)
            .await
            .unwrap(),
        2
    );
    assert_eq!(count(&n), 1);
    eventually(DELIVERY, "A to read the refilled value", async || {
        get_value::<u32>(&a, "k").await == Some(2)
    })
    .await;
    // Written after the expiry: unaffected by it (served from L1, no factory).
    for h in [&a, &b] {
        assert_eq!(
            get_or_set(h, "k", factory(&n, None), &options)
                .await
                .unwrap(),
            2
        );
    }
    assert_eq!(count(&n), 1);
    assert!(!a.expire("missing").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fail_safe_an_expired_entry_is_simply_gone() {
    let server = RedisServer::new();
    let (a, b) = (build(builder(&server)).await, build(builder(&server)).await);
    let plain = EntryOptions::new().ttl(Duration::from_secs(600));
    fill(&a, "k", 1, &plain).await;
    fill(&b, "k", 1, &plain).await;
    assert!(b.expire("k").await.unwrap());
    assert_eq!(get_value::<u32>(&b, "k").await, None);
    eventually(DELIVERY, "the soft expiry to reach A", async || {
        get_value::<u32>(&a, "k").await.is_none()
    })
    .await;
    // No stale copy to fall back on: the factory's failure comes through.
    for h in [&a, &b] {
        let failing = runs();
        let got = get_or_set(h, "k", factory(&failing, None), &plain).await;
        assert!(matches!(got, Err(Error::Factory(_))), "{got:?}");
        assert_eq!(count(&failing), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_by_tag_makes_the_tags_entries_stale_on_every_instance() {
    let server = RedisServer::new();
    let (a, b) = (build(builder(&server)).await, build(builder(&server)).await);
    let tagged = with_fail_safe().tags(["sale"]);
    let tagged_plain = EntryOptions::new()
        .ttl(Duration::from_secs(600))
        .tags(["sale"]);
    let other = with_fail_safe().tags(["other"]);
    for h in [&a, &b] {
        fill(h, "t1", 1, &tagged).await;
        fill(h, "t2", 2, &tagged).await;
        fill(h, "plain", 3, &tagged_plain).await;
        fill(h, "o", 4, &other).await;
    }

    assert_eq!(a.expire_by_tag("sale").await.unwrap(), 3);
    assert_eq!(hc_get(&mut server.connection(), "t1"), None);
    for h in [&a, &b] {
        until_stale(h, "t1", 1, &tagged).await;
        until_stale(h, "t2", 2, &tagged).await;
        // Without fail-safe: not served at all.
        let failing = runs();
        let got = get_or_set(h, "plain", factory(&failing, None), &tagged_plain).await;
        assert!(matches!(got, Err(Error::Factory(_))), "{got:?}");
        // Another tag: untouched.
        let n = runs();
        assert_eq!(
            get_or_set(h, "o", factory(&n, Some(40)), &other)
                .await
                .unwrap(),
            4
        );
        assert_eq!(count(&n), 0);
    }
    // An entry of the tag written after the expiry is fresh on both.
    a.set("t3", 30u32, tagged.clone()).await.unwrap();
    eventually(DELIVERY, "B to read t3", async || {
        get_value::<u32>(&b, "t3").await == Some(30)
    })
    .await;
    for h in [&a, &b] {
        let n = runs();
        assert_eq!(
            get_or_set(h, "t3", factory(&n, None), &tagged)
                .await
                .unwrap(),
            30
        );
        assert_eq!(count(&n), 0, "served as fresh");
    }
    assert_eq!(a.expire_by_tags(["nothing", "none"]).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_stale_value_is_served_and_the_expiry_is_replayed() {
    let mut server = RedisServer::new();
    let h = build(builder(&server).auto_recovery(10)).await;
    let options = with_fail_safe();
    fill(&h, "k", 1, &options).await;
    fill(&h, "q", 7, &options).await;
    assert!(h.expire("k").await.unwrap());
    // Saved with q; the restarted server loads it.
    let _: () = query(&mut server.connection(), &redis::cmd("SAVE"));
    server.kill();
    eventually(DELIVERY, "the handle to notice Redis is gone", async || {
        !h.is_subscribed()
    })
    .await;
    // Redis unreachable: the stale value, and a working factory is not needed.
    let n = runs();
    assert_eq!(
        get_or_set(&h, "k", factory(&n, Some(2)), &options)
            .await
            .unwrap(),
        1
    );
    // An expiry while Redis is down is queued and replayed before L1 serves again.
    assert!(
        !h.expire("q").await.unwrap(),
        "a queued expiry reports false"
    );
    assert_eq!(h.queued_operations(), 1);
    assert_eq!(
        get_or_set(&h, "q", factory(&n, Some(8)), &options)
            .await
            .unwrap(),
        7,
        "its stale value while Redis is down"
    );
    server.start_again();
    eventually(
        Duration::from_secs(5),
        "the handle to subscribe again",
        async || h.is_subscribed(),
    )
    .await;
    assert_eq!(h.queued_operations(), 0);
    assert_eq!(hc_get(&mut server.connection(), "q"), None, "replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_expire_by_tag_reaches_every_primary() {
    let cluster = RedisCluster::start(3, 0);
    let handle = || {
        build(
            HybridCache::cluster_builder(cluster.urls())
                .max_reconnect_backoff(Duration::from_millis(200))
                .health_check(Duration::from_millis(250), Duration::from_millis(500)),
        )
    };
    let (a, b) = (handle().await, handle().await);
    // Two keys on each primary.
    let mut keys = Vec::new();
    for primary in cluster.primaries() {
        let mine: Vec<String> = (0..)
            .map(|i| format!("item:{i}"))
            .filter(|key| cluster.slot_owner(key_slot(key)).port() == primary.port())
            .take(2)
            .collect();
        keys.extend(mine);
    }
    let options = with_fail_safe().tags(["sale"]);
    for (i, key) in keys.iter().enumerate() {
        fill(&a, key, i as u32, &options).await;
        fill(&b, key, i as u32, &options).await;
    }
    assert_eq!(
        b.expire_by_tag("sale").await.unwrap(),
        keys.len() as u64,
        "counts summed over the primaries"
    );
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            hc_get(&mut cluster.node_for_key(key).connection(), key),
            None
        );
        for h in [&a, &b] {
            until_stale(h, key, i as u32, &options).await;
        }
    }
    // A single key is routed to its primary.
    fill(&a, "one", 9, &with_fail_safe()).await;
    fill(&b, "one", 9, &with_fail_safe()).await;
    assert!(a.expire("one").await.unwrap());
    until_stale(&b, "one", 9, &with_fail_safe()).await;
}
