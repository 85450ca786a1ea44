//! `HybridCache::clear` against real servers: every entry of the namespace leaves Redis and
//! every instance's L1 (entries kept only in L1 included), other namespaces stay, a fill that
//! read before the clear is refused, Redis keeps a consistent index, and in a cluster every
//! primary is cleared.

use hybridcache::{EntryOptions, Error, HybridCache};
use hybridcache_tests::client_support::{build, builder, eventually, get_value, DELIVERY};
use hybridcache_tests::hc;
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::{RedisCluster, RedisServer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

async fn in_namespace(server: &RedisServer, namespace: &str) -> HybridCache {
    build(builder(server).namespace(namespace)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_removes_the_namespace_from_redis_and_every_l1_and_leaves_other_namespaces() {
    let server = RedisServer::new();
    let a = in_namespace(&server, "shop:").await;
    let b = in_namespace(&server, "shop:").await;
    let blog = in_namespace(&server, "blog:").await;
    for i in 0..40u32 {
        let options = match i % 2 {
            0 => EntryOptions::new().tags([format!("t{}", i % 3)]),
            _ => EntryOptions::new(),
        };
        a.set(&format!("k{i}"), i, options).await.unwrap();
    }
    for i in 0..5u32 {
        blog.set(&format!("post{i}"), i, EntryOptions::new())
            .await
            .unwrap();
    }
    // b holds some of them in L1, and one entry kept only in its L1.
    for i in 0..10u32 {
        assert_eq!(get_value::<u32>(&b, &format!("k{i}")).await, Some(i));
    }
    b.set("local", 7u32, EntryOptions::new().skip_l2(true))
        .await
        .unwrap();
    assert_eq!(get_value::<u32>(&b, "local").await, Some(7));
    let mut con = server.connection();
    assert_eq!(hc::dbsize(&mut con), 45);
    // Every entry carries the namespace's clear tag next to its own.
    assert_eq!(hc::tags(&mut con, "shop:k0"), ["shop:*", "shop:t0"]);
    assert_eq!(hc::tags(&mut con, "shop:k1"), ["shop:*"]);
    assert_eq!(hc::tags(&mut con, "blog:post0"), ["blog:*"]);

    assert_eq!(a.clear().await.unwrap(), 40);

    // Gone for every reader at once in Redis, and from b's L1 once the event is there.
    assert_eq!(hc::hc_get(&mut con, "shop:k3"), None);
    // "local" was only ever in b's L1: only the clear event removes it.
    eventually(DELIVERY, "b's L1 cleared", async || {
        b.get::<u32>("local").await.unwrap().is_none()
    })
    .await;
    for i in 0..40u32 {
        assert_eq!(get_value::<u32>(&b, &format!("k{i}")).await, None, "k{i}");
        assert_eq!(get_value::<u32>(&a, &format!("k{i}")).await, None, "k{i}");
    }
    assert_eq!(get_value::<u32>(&b, "local").await, None);
    for i in 0..5u32 {
        assert_eq!(get_value::<u32>(&blog, &format!("post{i}")).await, Some(i));
    }
    hc::wait_removals_done(&mut con);
    let mut left = hc::all_keys(&mut con);
    left.sort();
    assert_eq!(
        left,
        [
            "blog:post0",
            "blog:post1",
            "blog:post2",
            "blog:post3",
            "blog:post4"
        ]
    );
    assert_check_clean(&mut con);

    // A write after the clear stays.
    a.set("k1", 100u32, EntryOptions::new()).await.unwrap();
    assert_eq!(get_value::<u32>(&b, "k1").await, Some(100));
    assert!(b.stats().l1_flushes >= 1, "{:?}", b.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_the_clear_is_refused() {
    let server = RedisServer::new();
    let a = in_namespace(&server, "shop:").await;
    let b = in_namespace(&server, "shop:").await;
    let (started_tx, started_rx) = oneshot::channel();
    let release = Arc::new(Notify::new());
    let fill = {
        let a = a.clone();
        let release = release.clone();
        tokio::spawn(async move {
            a.get_or_set(
                "slow",
                move || async move {
                    let _ = started_tx.send(());
                    release.notified().await;
                    Ok::<_, std::io::Error>(1u32)
                },
                EntryOptions::new(),
            )
            .await
        })
    };
    started_rx.await.unwrap();
    // The factory has read its source; the cache is cleared before it writes.
    b.clear().await.unwrap();
    release.notify_one();
    assert_eq!(*fill.await.unwrap().unwrap(), 1, "the value is served");
    let mut con = server.connection();
    assert_eq!(hc::hc_get(&mut con, "shop:slow"), None, "but not cached");
    assert_eq!(a.stats().fills_refused, 1, "{:?}", a.stats());
    assert_eq!(get_value::<u32>(&b, "slow").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_built_not_clearable_writes_no_clear_tag_and_refuses_clear() {
    let server = RedisServer::new();
    let cache = build(builder(&server).namespace("n:").clearable(false)).await;
    cache
        .set("k", 1u32, EntryOptions::new().tags(["t"]))
        .await
        .unwrap();
    let named = cache.named("other", "o:", EntryOptions::new(), 100);
    named.set("k", 2u32, EntryOptions::new()).await.unwrap();
    let mut con = server.connection();
    assert_eq!(hc::tags(&mut con, "n:k"), ["n:t"]);
    assert!(hc::tags(&mut con, "o:k").is_empty());
    assert!(
        matches!(cache.clear().await, Err(Error::Config(_))),
        "clear() of a cache without the clear tag must fail"
    );
    assert_eq!(hc::dbsize(&mut con), 2, "nothing was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_caches_are_cleared_one_at_a_time() {
    let server = RedisServer::new();
    let root = in_namespace(&server, "app:").await;
    let orders = root.named("orders", "app:orders:", EntryOptions::new(), 100);
    let users = root.named("users", "app:users:", EntryOptions::new(), 100);
    orders.set("1", 1u32, EntryOptions::new()).await.unwrap();
    users.set("1", 2u32, EntryOptions::new()).await.unwrap();
    root.set("x", 3u32, EntryOptions::new()).await.unwrap();
    assert_eq!(get_value::<u32>(&users, "1").await, Some(2));

    assert_eq!(orders.clear().await.unwrap(), 1);
    assert_eq!(get_value::<u32>(&orders, "1").await, None);
    assert_eq!(get_value::<u32>(&users, "1").await, Some(2));
    assert_eq!(get_value::<u32>(&root, "x").await, Some(3));
    // The root namespace's clear removes its own entries only: the named caches' entries
    // carry their own clear tag.
    assert_eq!(root.clear().await.unwrap(), 1);
    assert_eq!(get_value::<u32>(&users, "1").await, Some(2));
    assert_eq!(get_value::<u32>(&root, "x").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_spans_every_primary_of_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let handle = || async {
        build(
            HybridCache::cluster_builder(cluster.urls())
                .namespace("c:")
                .max_reconnect_backoff(Duration::from_millis(200)),
        )
        .await
    };
    let (a, b) = (handle().await, handle().await);
    let items: Vec<(String, u32)> = (0..60u32).map(|i| (format!("k{i}"), i)).collect();
    a.set_many(items, EntryOptions::new()).await.unwrap();
    for i in 0..60u32 {
        assert_eq!(get_value::<u32>(&b, &format!("k{i}")).await, Some(i));
    }
    for primary in cluster.primaries() {
        assert!(
            hc::dbsize(&mut primary.connection()) > 0,
            "keys spread over every primary"
        );
    }

    assert_eq!(a.clear().await.unwrap(), 60);

    eventually(DELIVERY, "b's L1 cleared on every shard", async || {
        let mut held = 0;
        for i in 0..60u32 {
            held += usize::from(b.get::<u32>(&format!("k{i}")).await.unwrap().is_some());
        }
        held == 0
    })
    .await;
    for i in 0..60u32 {
        assert_eq!(get_value::<u32>(&b, &format!("k{i}")).await, None, "k{i}");
    }
    for primary in cluster.primaries() {
        let mut con = primary.connection();
        hc::wait_removals_done(&mut con);
        assert_eq!(hc::dbsize(&mut con), 0, "primary {}", primary.port());
        assert_check_clean(&mut con);
    }
}
