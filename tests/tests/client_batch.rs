//! Batch calls of the client crate against real servers: `get_many` answers each key from
//! L1 when it can and all the others in one round trip, in the order of the keys, with the
//! counters single reads keep; it sees other instances' changes; `set_many` writes like
//! `set` in one round trip; in a cluster, keys of every slot go in one call without
//! `CROSSSLOT`; when Redis is down, fail-safe serves what it keeps.

use hybridcache::{EntryOptions, HybridCache, Stats};
use hybridcache_tests::client_support::{build, builder, cache, eventually, DELIVERY};
use hybridcache_tests::hc;
use hybridcache_tests::{RedisCluster, RedisServer};
use std::time::Duration;

/// Calls of `command` (e.g. `hc.fetch`, any case) the server has answered, from `INFO
/// commandstats` (0 before the first).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let name = format!("cmdstat_{command}");
    server
        .info("commandstats")
        .into_iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(&name))
        .and_then(|(_, stat)| {
            stat.split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Reads the server made from client sockets (`INFO stats`): a pipeline sent in one write
/// is one read, N commands sent one after the other are N.
fn reads(server: &RedisServer) -> u64 {
    server
        .info("stats")
        .get("total_reads_processed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total_reads_processed in INFO stats"))
}

/// `get_many` on `h`, which must succeed, with the values cloned out of their `Arc`s.
async fn get_many(h: &HybridCache, keys: &[&str]) -> Vec<Option<u32>> {
    match h.get_many::<u32, _, _>(keys.iter().copied()).await {
        Ok(found) => found.iter().map(|v| v.as_deref().copied()).collect(),
        Err(e) => panic!("get_many({keys:?}) failed: {e}; {h:?}"),
    }
}

/// The difference `after - before` of the read counters.
fn reads_delta(before: Stats, after: Stats) -> [u64; 4] {
    [
        after.l1_hits - before.l1_hits,
        after.l1_misses - before.l1_misses,
        after.l2_hits - before.l2_hits,
        after.l2_misses - before.l2_misses,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_serves_l1_hits_l2_hits_and_misses_in_key_order_reading_each_missed_key_once() {
    let server = RedisServer::new();
    let writer = cache(&server).await;
    let reader = cache(&server).await;
    for i in 1..=4u32 {
        writer
            .set(&format!("k{i}"), i, EntryOptions::new())
            .await
            .unwrap();
    }
    // The reader holds k1 and k2 in L1.
    assert_eq!(get_many(&reader, &["k1", "k2"]).await, [Some(1), Some(2)]);

    let keys = ["k3", "k1", "missing:1", "k2", "k4", "missing:2", "k1", "k3"];
    let before = reader.stats();
    let fetches = calls(&server, "hc.fetch");
    let found = get_many(&reader, &keys).await;
    assert_eq!(
        found,
        [
            Some(3),
            Some(1),
            None,
            Some(2),
            Some(4),
            None,
            Some(1),
            Some(3)
        ]
    );
    // L1 answered k1, k2, k1; k3 (twice), k4 and the two missing keys missed it; Redis
    // was asked once per distinct missed key.
    assert_eq!(
        reads_delta(before, reader.stats()),
        [3, 5, 2, 2],
        "[l1 hits, l1 misses, l2 hits, l2 misses]"
    );
    assert_eq!(calls(&server, "hc.fetch") - fetches, 4);

    // What Redis returned is in L1 now; the missing keys are asked for again.
    let before = reader.stats();
    let fetches = calls(&server, "hc.fetch");
    assert_eq!(get_many(&reader, &keys).await, found);
    assert_eq!(reads_delta(before, reader.stats()), [6, 2, 0, 2]);
    assert_eq!(calls(&server, "hc.fetch") - fetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_and_set_many_cost_one_round_trip_whatever_the_number_of_keys() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let other = cache(&server).await;
    let keys: Vec<String> = (0..40).map(|i| format!("many:{i}")).collect();
    let items: Vec<(&str, u32)> = keys.iter().zip(0..).map(|(k, i)| (k.as_str(), i)).collect();

    let sets = calls(&server, "hc.set");
    let before = reads(&server);
    h.set_many(items, EntryOptions::new()).await.unwrap();
    let set_reads = reads(&server) - before;
    assert_eq!(calls(&server, "hc.set") - sets, 40);

    let fetches = calls(&server, "hc.fetch");
    let before = reads(&server);
    let found = other.get_many::<u32, _, _>(&keys).await.unwrap();
    let get_reads = reads(&server) - before;
    assert_eq!(calls(&server, "hc.fetch") - fetches, 40);
    let found: Vec<u32> = found.iter().map(|v| **v.as_ref().unwrap()).collect();
    assert_eq!(found, (0..40).collect::<Vec<_>>());
    // One read for the pipeline and one for the INFO that counts it (and some slack for
    // a background ping): 40 commands sent one by one would be 40 reads.
    assert!(set_reads <= 4, "set_many took {set_reads} reads");
    assert!(get_reads <= 4, "get_many took {get_reads} reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_sees_another_instances_change_and_removal_made_between_two_calls() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let b = cache(&server).await;
    for (key, value) in [("k1", 1u32), ("k2", 2), ("k3", 3)] {
        a.set(key, value, EntryOptions::new()).await.unwrap();
    }
    let keys = ["k1", "k2", "k3"];
    assert_eq!(get_many(&b, &keys).await, [Some(1), Some(2), Some(3)]);
    let before = b.stats();
    assert_eq!(get_many(&b, &keys).await, [Some(1), Some(2), Some(3)]);
    assert_eq!(reads_delta(before, b.stats()), [3, 0, 0, 0], "all from L1");

    let received = b.stats().events_received;
    a.set("k1", 10u32, EntryOptions::new()).await.unwrap();
    assert!(a.remove("k2").await.unwrap());
    eventually(DELIVERY, "b to receive both invalidations", async || {
        b.stats().events_received >= received + 2
    })
    .await;
    // The first call after the events: neither the old k1 nor the removed k2.
    let before = b.stats();
    assert_eq!(get_many(&b, &keys).await, [Some(10), None, Some(3)]);
    assert_eq!(reads_delta(before, b.stats()), [1, 2, 1, 1]);
    // A plain Redis client's removal counts the same.
    hc::hc_del(&mut server.connection(), &["k3"]);
    eventually(DELIVERY, "b to see k3 removed", async || {
        get_many(&b, &["k3"]).await == [None]
    })
    .await;
    assert_eq!(get_many(&b, &keys).await, [Some(10), None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_writes_like_set_and_another_instance_reads_it_with_get_many() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let b = cache(&server).await;
    a.set_many(
        [("k1", 1u32), ("k2", 2), ("k1", 11)],
        EntryOptions::new()
            .tags(["batch"])
            .ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut con = server.connection();
    assert_eq!(hc::tags(&mut con, "k1"), ["*", "batch"]);
    assert_eq!(hc::tags(&mut con, "k2"), ["*", "batch"]);
    let pttl = hc::pttl(&mut con, "k2");
    assert!((1..=60_000).contains(&pttl), "pttl {pttl}");

    // The writer holds its values in L1 (the last of a key given twice).
    let before = a.stats();
    assert_eq!(get_many(&a, &["k1", "k2"]).await, [Some(11), Some(2)]);
    assert_eq!(reads_delta(before, a.stats()), [2, 0, 0, 0]);
    // The other instance reads them from Redis.
    let before = b.stats();
    assert_eq!(get_many(&b, &["k2", "k1"]).await, [Some(2), Some(11)]);
    assert_eq!(reads_delta(before, b.stats()), [0, 2, 2, 0]);

    // A second set_many replaces b's L1 copies; the tags removal reaches both.
    a.set_many([("k1", 21u32)], EntryOptions::new().tags(["batch"]))
        .await
        .unwrap();
    eventually(DELIVERY, "b to read the new k1", async || {
        get_many(&b, &["k1"]).await == [Some(21)]
    })
    .await;
    assert_eq!(b.remove_by_tag("batch").await.unwrap(), 2);
    eventually(DELIVERY, "a to see the tag removed", async || {
        get_many(&a, &["k1", "k2"]).await == [None, None]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_calls_of_no_keys_send_nothing() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let before = h.stats();
    let fetches = calls(&server, "hc.fetch");
    let found = h.get_many::<u32, _, _>(Vec::<String>::new()).await.unwrap();
    assert!(found.is_empty());
    h.set_many(Vec::<(String, u32)>::new(), EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(h.stats(), before);
    assert_eq!(calls(&server, "hc.fetch"), fetches);
    assert_eq!(calls(&server, "hc.set"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_without_redis_serves_fail_safe_copies_only_when_every_missed_key_has_one() {
    let mut server = RedisServer::new();
    let h = build(builder(&server).command_timeout(Duration::from_millis(500))).await;
    let options = EntryOptions::new()
        .l1_ttl(Duration::from_millis(50))
        .fail_safe(Duration::from_secs(60));
    h.set_many([("k1", 1u32), ("k2", 2)], options.clone())
        .await
        .unwrap();
    h.set("uncached", 3u32, EntryOptions::new().skip_l1(true))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the L1 copies are stale
    server.kill();

    let found = h
        .get_many_with::<u32, _, _>(["k1", "k2", "k1"], options.clone())
        .await
        .unwrap();
    let found: Vec<Option<u32>> = found.iter().map(|v| v.as_deref().copied()).collect();
    assert_eq!(found, [Some(1), Some(2), Some(1)]);
    assert_eq!(h.stats().fail_safe_hits, 2, "one per distinct key");
    // A key without a stale copy fails the batch, as it fails a single get.
    let failed = h
        .get_many_with::<u32, _, _>(["k1", "uncached"], options)
        .await;
    assert!(
        failed
            .as_ref()
            .is_err_and(hybridcache::Error::is_unreachable),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_batch_calls_span_every_primary_without_crossslot() {
    let cluster = RedisCluster::start(3, 0);
    let handle = || async {
        build(
            HybridCache::cluster_builder(cluster.urls())
                .max_reconnect_backoff(Duration::from_millis(200)),
        )
        .await
    };
    let (a, b) = (handle().await, handle().await);
    // Keys on every primary, two of them sharing a slot.
    let mut keys: Vec<String> = Vec::new();
    for primary in cluster.primaries() {
        keys.extend(
            (0..)
                .map(|i| format!("spread:{i}"))
                .filter(|key| cluster.node_for_key(key).port() == primary.port())
                .take(3),
        );
    }
    keys.push("{same}:1".into());
    keys.push("{same}:2".into());
    let items: Vec<(String, u32)> = keys.iter().cloned().zip(0..).collect();
    let set_calls = |c: &RedisCluster| -> Vec<u64> {
        c.primaries().iter().map(|p| calls(p, "hc.set")).collect()
    };
    let before = set_calls(&cluster);
    a.set_many(items, EntryOptions::new().tags(["spread"]))
        .await
        .unwrap();
    let after = set_calls(&cluster);
    for (primary, (before, after)) in cluster.primaries().iter().zip(before.iter().zip(&after)) {
        let owned = keys
            .iter()
            .filter(|k| cluster.node_for_key(k).port() == primary.port())
            .count() as u64;
        assert_eq!(after - before, owned, "HC.SET calls on {}", primary.port());
    }

    let mut asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    asked.insert(2, "spread:missing");
    let fetches: u64 = cluster
        .primaries()
        .iter()
        .map(|p| calls(p, "hc.fetch"))
        .sum();
    let found = get_many(&b, &asked).await;
    let mut expected: Vec<Option<u32>> = (0..keys.len() as u32).map(Some).collect();
    expected.insert(2, None);
    assert_eq!(found, expected);
    let fetched: u64 = cluster
        .primaries()
        .iter()
        .map(|p| calls(p, "hc.fetch"))
        .sum();
    assert_eq!(
        fetched - fetches,
        asked.len() as u64,
        "one HC.FETCH per key"
    );
    // The writer answers from L1.
    let before = a.stats();
    let values = a.get_many::<u32, _, _>(&keys).await.unwrap();
    assert!(values.iter().all(Option::is_some));
    assert_eq!(a.stats().l1_hits - before.l1_hits, keys.len() as u64);
    // The tag spans every primary: removed everywhere, and from b's L1.
    assert_eq!(a.remove_by_tag("spread").await.unwrap(), keys.len() as u64);
    eventually(DELIVERY, "b to see every key removed", async || {
        get_many(&b, &asked).await.iter().all(Option::is_none)
    })
    .await;
}
