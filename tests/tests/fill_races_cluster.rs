//! Race-free fills on a 3-primary/3-replica Redis Cluster (issue #13): the three forced
//! races of `fill_races.rs` through `cluster_builder` handles.
//!
//! Instance A's fill reads v1 from a model database and waits at a gate; instance B
//! (built separately) writes v2 to the database and removes k, sets k to v2, or removes a
//! tag k carries (on every primary); then A's factory returns v1. After the delivery bound
//! no instance (A, B, a freshly built C) and no raw `HC.GET` on k's primary serves v1, and
//! after a removal the next fill produces v2. Each race runs on a cluster of its own, on a
//! key owned by a different primary.

use hybridcache::HybridCache;
use hybridcache_tests::client_support::build;
use hybridcache_tests::race_support::{
    assert_redis_holds_current, assert_settles, long_lived, read_now, read_then_wait, Change,
    ClusterReads, Database, Gate,
};
use hybridcache_tests::RedisCluster;
use std::time::Duration;

/// A cluster handle on every node of `cluster`, named `name`, built on its own as a
/// separate service's would be.
async fn instance(cluster: &RedisCluster, name: &str) -> HybridCache {
    build(
        HybridCache::cluster_builder(cluster.urls())
            .max_reconnect_backoff(Duration::from_millis(200))
            .name(name),
    )
    .await
}

/// The first key `product:<variant>:<i>` that primary `primary` owns.
fn key_on_primary(cluster: &RedisCluster, primary: usize, variant: &str) -> String {
    let owner = cluster.primaries()[primary].port();
    (0..)
        .map(|i| format!("product:{variant}:{i}"))
        .find(|key| cluster.node_for_key(key).port() == owner)
        .expect("some key lands on every primary")
}

/// One forced race on a new cluster, on a key owned by primary `primary`, then the checks.
async fn forced_race(change: Change, primary: usize) {
    let cluster = RedisCluster::start(3, 1);
    let a = instance(&cluster, "a").await;
    let b = instance(&cluster, "b").await;
    let variant = format!("{change:?}").to_lowercase();
    let key = key_on_primary(&cluster, primary, &variant);
    let tag = format!("category:{variant}");
    let db = Database::new();
    let v1 = db.write(&key);
    let gate = Gate::new();
    let fill = {
        let factory = read_then_wait(&db, &gate, &key);
        let (a, key, tag) = (a.clone(), key.clone(), tag.clone());
        tokio::spawn(async move { a.get_or_set(&key, factory, long_lived(&tag)).await })
    };
    gate.entered().await;
    change.apply(&b, &db, &key, &tag).await;
    gate.release();
    let served = fill
        .await
        .expect("the fill task")
        .expect("A's fill returns its factory's value");
    assert_eq!(*served, v1, "A's caller gets what its factory read");
    let c = instance(&cluster, "c").await;
    let handles = [("A", &a), ("B", &b), ("C", &c)];
    let what = format!("forced race on a cluster, B: {change:?}");
    let keys = [key.clone()];
    assert_settles(&what, &handles, &mut ClusterReads(&cluster), &db, &keys).await;
    assert_eq!(
        a.stats().fills_refused,
        1,
        "{what}: A counts its one refused fill; {a:?}"
    );
    if change.leaves_a_miss() {
        for (name, handle) in handles {
            let refilled = handle
                .get_or_set(&key, read_now(&db, &key), long_lived(&tag))
                .await
                .unwrap_or_else(|e| panic!("{what}: the fill through {name} failed: {e}"));
            assert_eq!(
                *refilled,
                db.read(&key),
                "{what}: a fill through {name} after the race produced an old version"
            );
        }
    }
    assert_redis_holds_current(&what, &mut ClusterReads(&cluster), &db, &keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_fill_that_read_before_a_remove_is_not_cached() {
    forced_race(Change::Remove, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_fill_that_read_before_a_set_does_not_overwrite_it() {
    forced_race(Change::Set, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_fill_that_read_before_a_tag_removal_is_not_cached() {
    forced_race(Change::RemoveByTag, 2).await;
}
