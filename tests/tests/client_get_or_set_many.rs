//! `get_or_set_many` against real servers: L1 and Redis answer what they hold, one factory
//! call gets exactly the keys neither has (each once, duplicates included), and its values
//! are filled on the leases of the read before it (refused after a concurrent change, then
//! cached nowhere) with their tags and the clear tag; a key the factory leaves out fails the
//! call; a failing factory gives way to fail-safe only when every missing key has a stale
//! value; concurrent calls on overlapping keys load each key once; in a cluster the keys of
//! every slot go in one call; `redis_timeout` bounds the batch calls.

use hybridcache::{EntryOptions, Error, HybridCache, CLEAR_TAG};
use hybridcache_tests::client_support::{build, builder, cache, eventually, get_value, DELIVERY};
use hybridcache_tests::hc;
use hybridcache_tests::{RedisCluster, RedisServer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// The keys each factory call was asked for, in call order.
type Asked = Arc<Mutex<Vec<Vec<String>>>>;

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

/// The value the factories of these tests produce for `key`: its length times 10.
fn value_of(key: &str) -> u32 {
    key.len() as u32 * 10
}

/// `get_or_set_many(keys)` on `h` with a factory that records what it is asked in `asked`
/// and answers [`value_of`] each key; the values cloned out of their `Arc`s.
async fn load_many(
    h: &HybridCache,
    keys: &[&str],
    asked: &Asked,
    options: EntryOptions,
) -> hybridcache::Result<Vec<u32>> {
    let asked = asked.clone();
    h.get_or_set_many(
        keys.iter().copied(),
        move |missing: Vec<String>| async move {
            asked.lock().unwrap().push(missing.clone());
            let values: HashMap<String, u32> = missing
                .into_iter()
                .map(|key| {
                    let value = value_of(&key);
                    (key, value)
                })
                .collect();
            Ok::<_, std::io::Error>(values)
        },
        options,
    )
    .await
    .map(|values| values.iter().map(|v| **v).collect())
}

fn asked() -> Asked {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken(asked: &Asked) -> Vec<Vec<String>> {
    std::mem::take(&mut *asked.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_l1_and_redis_hold_are_served_without_calling_the_factory() {
    let server = RedisServer::new();
    let writer = cache(&server).await;
    let reader = cache(&server).await;
    writer
        .set_many([("a", 1u32), ("b", 2), ("c", 3)], EntryOptions::new())
        .await
        .unwrap();
    // The reader holds `a` in L1; `b` and `c` are in Redis only.
    assert_eq!(get_value::<u32>(&reader, "a").await, Some(1));
    let before = reader.stats();
    let asked = asked();
    let values = load_many(&reader, &["c", "a", "b"], &asked, EntryOptions::new()).await;
    assert_eq!(values.unwrap(), [3, 1, 2]);
    assert!(taken(&asked).is_empty(), "the factory was not called");
    let after = reader.stats();
    assert_eq!(after.l1_hits - before.l1_hits, 1);
    assert_eq!(after.l2_hits - before.l2_hits, 2);
    assert_eq!(after.factory_runs, before.factory_runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_hits_and_misses_call_the_factory_once_with_exactly_the_misses_and_fill_them() {
    let server = RedisServer::new();
    let writer = cache(&server).await;
    let reader = cache(&server).await;
    writer
        .set_many([("l1", 1u32), ("l2", 2)], EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(get_value::<u32>(&reader, "l1").await, Some(1));

    let fetches = calls(&server, "hc.fetch");
    let sets = calls(&server, "hc.set");
    let asked = asked();
    let keys = ["miss:a", "l1", "l2", "miss:bb"];
    let values = load_many(&reader, &keys, &asked, EntryOptions::new()).await;
    assert_eq!(
        values.unwrap(),
        [value_of("miss:a"), 1, 2, value_of("miss:bb")]
    );
    assert_eq!(taken(&asked), [vec!["miss:a", "miss:bb"]]);
    assert_eq!(
        calls(&server, "hc.fetch") - fetches,
        3,
        "one leased HC.FETCH per key L1 could not answer"
    );
    assert_eq!(
        calls(&server, "hc.set") - sets,
        2,
        "one fill per factory value"
    );
    let mut con = server.connection();
    assert_eq!(
        hc::hc_get_str(&mut con, "miss:a"),
        Some(value_of("miss:a").to_string())
    );
    // Everything is now in the reader's L1, and in Redis for the writer.
    let before = reader.stats();
    let again = load_many(&reader, &keys, &asked, EntryOptions::new()).await;
    assert_eq!(
        again.unwrap(),
        [value_of("miss:a"), 1, 2, value_of("miss:bb")]
    );
    assert_eq!(reader.stats().l1_hits - before.l1_hits, 4);
    let from_writer = load_many(&writer, &keys, &asked, EntryOptions::new()).await;
    assert_eq!(
        from_writer.unwrap(),
        [value_of("miss:a"), 1, 2, value_of("miss:bb")]
    );
    assert!(taken(&asked).is_empty(), "no factory call after the fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_twice_is_loaded_once_and_answered_at_both_positions() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    h.set("hit", 5u32, EntryOptions::new()).await.unwrap();
    let asked = asked();
    let keys = ["dup", "hit", "dup", "other", "hit", "other"];
    let values = load_many(&h, &keys, &asked, EntryOptions::new()).await;
    let (dup, other) = (value_of("dup"), value_of("other"));
    assert_eq!(values.unwrap(), [dup, 5, dup, other, 5, other]);
    assert_eq!(taken(&asked), [vec!["dup", "other"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_factory_leaves_out_fails_the_call_and_the_values_it_gave_are_cached() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let result = h
        .get_or_set_many(
            ["given", "left-out"],
            |missing: Vec<String>| async move {
                assert_eq!(missing, ["given", "left-out"]);
                Ok::<_, std::io::Error>(HashMap::from([("given".to_string(), 1u32)]))
            },
            EntryOptions::new(),
        )
        .await;
    assert!(
        matches!(&result, Err(Error::FactoryMissingKey { key }) if key == "left-out"),
        "{result:?}"
    );
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "given").as_deref(), Some("1"));
    assert!(hc::hc_get(&mut con, "left-out").is_none());
    // The failed key is not stuck in flight: the next call loads it.
    let asked = asked();
    let values = load_many(&h, &["given", "left-out"], &asked, EntryOptions::new()).await;
    assert_eq!(values.unwrap(), [1, value_of("left-out")]);
    assert_eq!(taken(&asked), [vec!["left-out"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_factory_serves_stale_values_only_when_every_missing_key_has_one() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let keep = EntryOptions::new()
        .ttl(Duration::from_millis(300))
        .fail_safe(Duration::from_secs(60));
    h.set_many([("s1", 1u32), ("s2", 2)], keep.clone())
        .await
        .unwrap();
    // The copies expire in Redis and turn stale in L1.
    eventually(DELIVERY, "the entries expired", async || {
        let mut con = server.connection();
        hc::hc_get(&mut con, "s1").is_none() && hc::hc_get(&mut con, "s2").is_none()
    })
    .await;
    let failing = |keys: &'static [&'static str], options: EntryOptions| {
        let h = h.clone();
        async move {
            h.get_or_set_many(
                keys.iter().copied(),
                |_missing: Vec<String>| async {
                    Err::<HashMap<String, u32>, _>(std::io::Error::other("source down"))
                },
                options,
            )
            .await
            .map(|values| values.iter().map(|v| **v).collect::<Vec<u32>>())
        }
    };
    let before = h.stats();
    assert_eq!(failing(&["s2", "s1"], keep.clone()).await.unwrap(), [2, 1]);
    assert_eq!(h.stats().fail_safe_hits - before.fail_safe_hits, 2);
    let partly = failing(&["s1", "never-set"], keep.clone()).await;
    assert!(
        matches!(&partly, Err(Error::Factory(e)) if e.to_string() == "source down"),
        "a key without a stale value fails the call: {partly:?}"
    );
    let plain = failing(&["plain"], EntryOptions::new()).await;
    assert!(matches!(plain, Err(Error::Factory(_))), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batch_and_single_loads_of_overlapping_keys_run_each_key_once() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let count = {
        let runs = runs.clone();
        move |keys: &[String]| {
            let mut runs = runs.lock().unwrap();
            for key in keys {
                *runs.entry(key.clone()).or_default() += 1;
            }
        }
    };
    let batch = |keys: &'static [&'static str]| {
        let (h, count) = (h.clone(), count.clone());
        tokio::spawn(async move {
            h.get_or_set_many(
                keys.iter().copied(),
                move |missing: Vec<String>| async move {
                    count(&missing);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    Ok::<_, std::io::Error>(
                        missing
                            .into_iter()
                            .map(|key| {
                                let value = value_of(&key);
                                (key, value)
                            })
                            .collect::<HashMap<_, _>>(),
                    )
                },
                EntryOptions::new(),
            )
            .await
            .map(|values| values.iter().map(|v| **v).collect::<Vec<u32>>())
        })
    };
    let single = |key: &'static str| {
        let (h, count) = (h.clone(), count.clone());
        tokio::spawn(async move {
            h.get_or_set(
                key,
                move || async move {
                    count(&[key.to_string()]);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    Ok::<_, std::io::Error>(value_of(key))
                },
                EntryOptions::new(),
            )
            .await
            .map(|v| *v)
        })
    };
    let batches = [
        batch(&["a", "bb", "ccc"]),
        batch(&["ccc", "dddd", "a"]),
        batch(&["dddd", "eeeee"]),
    ];
    let singles = [single("bb"), single("eeeee"), single("ffffff")];
    let expected = [vec![10, 20, 30], vec![30, 40, 10], vec![40, 50]];
    for (task, expected) in batches.into_iter().zip(expected) {
        assert_eq!(task.await.unwrap().unwrap(), expected);
    }
    for (task, key) in singles.into_iter().zip(["bb", "eeeee", "ffffff"]) {
        assert_eq!(task.await.unwrap().unwrap(), value_of(key));
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 6, "{runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "each key loaded once: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_raced_by_a_remove_on_another_instance_is_refused_and_kept_nowhere() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let b = cache(&server).await;
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let go = Arc::new(Notify::new());
    let load = {
        let (a, go) = (a.clone(), go.clone());
        tokio::spawn(async move {
            a.get_or_set_many(
                ["raced", "calm"],
                move |missing: Vec<String>| async move {
                    let _ = started_tx.send(());
                    go.notified().await;
                    Ok::<_, std::io::Error>(
                        missing
                            .into_iter()
                            .map(|key| (key, 7u32))
                            .collect::<HashMap<_, _>>(),
                    )
                },
                EntryOptions::new().ttl(Duration::from_secs(60)),
            )
            .await
        })
    };
    started_rx.await.unwrap();
    // A removal of a missing key still changes it for the leases given before.
    assert!(!b.remove("raced").await.unwrap());
    let before = a.stats();
    go.notify_one();
    let values = load.await.unwrap().unwrap();
    assert_eq!(
        values.iter().map(|v| **v).collect::<Vec<_>>(),
        [7, 7],
        "the caller gets every value"
    );
    assert_eq!(a.stats().fills_refused - before.fills_refused, 1);
    let mut con = server.connection();
    assert!(hc::hc_get(&mut con, "raced").is_none(), "not in Redis");
    assert_eq!(hc::hc_get_str(&mut con, "calm").as_deref(), Some("7"));
    // Not in L1 either: the next read goes to Redis and finds nothing.
    let before = a.stats();
    assert_eq!(get_value::<u32>(&a, "raced").await, None);
    assert_eq!(get_value::<u32>(&a, "calm").await, Some(7));
    let after = a.stats();
    assert_eq!(after.l1_hits - before.l1_hits, 1, "only `calm` from L1");
    assert_eq!(after.l2_misses - before.l2_misses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filled_values_carry_their_tags_and_the_clear_tag() {
    let server = RedisServer::new();
    let h = cache(&server).await;
    let other = cache(&server).await;
    let asked = asked();
    let options = EntryOptions::new().tags(["prices", "eu"]);
    let values = load_many(&h, &["p1", "p2"], &asked, options).await;
    assert_eq!(values.unwrap(), [20, 20]);
    let mut con = server.connection();
    for key in ["p1", "p2"] {
        let mut tags = hc::tags(&mut con, key);
        tags.sort();
        let mut expected = vec![CLEAR_TAG.to_string(), "eu".into(), "prices".into()];
        expected.sort();
        assert_eq!(tags, expected, "tags of {key}");
    }
    assert_eq!(get_value::<u32>(&other, "p1").await, Some(20));
    assert_eq!(h.remove_by_tag("prices").await.unwrap(), 2);
    eventually(DELIVERY, "the other instance to drop p1", async || {
        get_value::<u32>(&other, "p1").await.is_none()
    })
    .await;
    load_many(&h, &["p3"], &asked, EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(h.clear().await.unwrap(), 1, "p3 carries the clear tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_loads_every_key_from_the_factory_over_l1_and_redis() {
    let server = RedisServer::new();
    let a = cache(&server).await;
    let b = cache(&server).await;
    a.set_many([("f1", 1u32), ("f2", 2)], EntryOptions::new())
        .await
        .unwrap();
    let asked = asked();
    let values = load_many(
        &a,
        &["f1", "f2"],
        &asked,
        EntryOptions::new().force_refresh(true),
    )
    .await;
    assert_eq!(values.unwrap(), [20, 20]);
    assert_eq!(taken(&asked), [vec!["f1", "f2"]]);
    let mut con = server.connection();
    assert_eq!(hc::hc_get_str(&mut con, "f1").as_deref(), Some("20"));
    eventually(DELIVERY, "b to see the refreshed values", async || {
        get_value::<u32>(&b, "f2").await == Some(20)
    })
    .await;
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
async fn redis_timeout_bounds_batch_calls_and_gives_way_to_fail_safe_or_the_factory() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let keep = EntryOptions::new()
        .ttl(Duration::from_millis(300))
        .fail_safe(Duration::from_secs(60));
    h.set_many([("t1", 1u32), ("t2", 2)], keep.clone())
        .await
        .unwrap();
    eventually(DELIVERY, "the entries expired", async || {
        hc::hc_get(&mut server.connection(), "t1").is_none()
            && hc::hc_get(&mut server.connection(), "t2").is_none()
    })
    .await;

    pause(&server, 2_000);
    let short = Duration::from_millis(100);
    let started = std::time::Instant::now();
    let read = h
        .get_many_with::<u32, _, _>(["x", "y"], EntryOptions::new().redis_timeout(short))
        .await;
    assert!(
        matches!(read, Err(Error::Timeout(t)) if t == short),
        "get_many_with: {read:?}"
    );
    let written = h
        .set_many([("w", 1u32)], EntryOptions::new().redis_timeout(short))
        .await;
    assert!(
        matches!(written, Err(Error::Timeout(t)) if t == short),
        "set_many: {written:?}"
    );
    let asked = asked();
    let stale = load_many(&h, &["t2", "t1"], &asked, keep.clone().redis_timeout(short)).await;
    assert_eq!(stale.unwrap(), [2, 1], "the stale values, without waiting");
    assert!(taken(&asked).is_empty());
    let fresh = load_many(
        &h,
        &["t1", "uncached"],
        &asked,
        keep.clone().redis_timeout(short),
    )
    .await;
    assert_eq!(
        fresh.unwrap(),
        [1, value_of("uncached")],
        "a stale value where kept, the factory's for the rest"
    );
    assert_eq!(taken(&asked), [vec!["uncached"]]);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "every call gave up before the pause ended: {:?}",
        started.elapsed()
    );
    // The factory's value could not be filled (no lease): Redis does not have it.
    eventually(Duration::from_secs(5), "the pause to end", async || {
        hc::hc_get(&mut server.connection(), "uncached").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_batches_span_every_primary_and_fill_each_key_on_its_own_node() {
    let cluster = RedisCluster::start(3, 0);
    let handle = || async {
        build(
            HybridCache::cluster_builder(cluster.urls())
                .max_reconnect_backoff(Duration::from_millis(200)),
        )
        .await
    };
    let (a, b) = (handle().await, handle().await);
    // Two keys on every primary: one already set, one missing.
    let mut set = Vec::new();
    let mut missing = Vec::new();
    for primary in cluster.primaries() {
        let mut owned = (0..)
            .map(|i| format!("spread:{i}"))
            .filter(|key| cluster.node_for_key(key).port() == primary.port());
        set.push(owned.next().unwrap());
        missing.push(owned.next().unwrap());
    }
    a.set_many(
        set.iter().map(|key| (key.clone(), 1u32)),
        EntryOptions::new(),
    )
    .await
    .unwrap();
    let keys: Vec<&str> = set
        .iter()
        .zip(&missing)
        .flat_map(|(s, m)| [s.as_str(), m.as_str()])
        .collect();
    let fetches: Vec<u64> = cluster
        .primaries()
        .iter()
        .map(|p| calls(p, "hc.fetch"))
        .collect();
    let asked = asked();
    let values = load_many(&b, &keys, &asked, EntryOptions::new().tags(["spread"])).await;
    let expected: Vec<u32> = keys
        .iter()
        .map(|key| match set.iter().any(|s| s == key) {
            true => 1,
            false => value_of(key),
        })
        .collect();
    assert_eq!(values.unwrap(), expected);
    assert_eq!(taken(&asked), [missing.clone()]);
    for (primary, before) in cluster.primaries().iter().zip(fetches) {
        assert_eq!(
            calls(primary, "hc.fetch") - before,
            2,
            "one HC.FETCH per key on {}",
            primary.port()
        );
    }
    for key in &missing {
        let mut con = cluster.node_for_key(key).connection();
        assert_eq!(
            hc::hc_get_str(&mut con, key),
            Some(value_of(key).to_string()),
            "{key} filled on its node"
        );
    }
    // The other instance reads the filled values from Redis.
    let again = load_many(&a, &keys, &asked, EntryOptions::new()).await;
    assert_eq!(again.unwrap(), expected);
    assert!(taken(&asked).is_empty());
}
