//! `HC.DELTAGALL tag [tag ...]` removes the entries carrying all of the tags, next to
//! `HC.DELTAG`'s any-of: server-side intersection, an answer at once however many keys, one
//! `deltagall` event with `"match":"all"`, fills leased before it refused, the same result on
//! replicas; checked against a model with random keys and tags. The client's
//! `remove_by_all_tags` on a cluster (every primary) and between two instances (each L1
//! drops only the copies carrying all of the tags).

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::{command, Change, Op, TagMatch};
use hybridcache_tests::client_support::{
    build, builder, eventually, get_value, seed_from_env, SplitMix64, DELIVERY,
};
use hybridcache_tests::hc::{
    self, all_keys, call, dbsize, fetch_lease, hc_deltag, hc_get, hc_set, query, set_lease,
    tagcard, tagkeys, wait_removals_done,
};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::server::scaled;
use hybridcache_tests::{RedisCluster, RedisServer, Subscriber, QUIET_PERIOD};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

fn deltagall(con: &mut redis::Connection, tags: &[&str]) -> i64 {
    query(con, redis::cmd(command::DELTAGALL).arg(tags))
}

/// `ab` (a b), `abc` (a b c), `a` (a), `b` (b), `c` (c).
fn five_entries(con: &mut redis::Connection) {
    hc_set(con, "ab", "1", &["a", "b"]);
    hc_set(con, "abc", "2", &["a", "b", "c"]);
    hc_set(con, "a", "3", &["a"]);
    hc_set(con, "b", "4", &["b"]);
    hc_set(con, "c", "5", &["c"]);
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

#[test]
fn deltagall_removes_only_the_entries_carrying_every_tag_where_deltag_removes_any() {
    let server = RedisServer::new();
    let mut con = server.connection();
    five_entries(&mut con);
    let sub = Subscriber::new(&server);

    assert_eq!(deltagall(&mut con, &["b", "a"]), 2);
    for gone in ["ab", "abc"] {
        assert_eq!(hc_get(&mut con, gone), None, "{gone}");
    }
    for (kept, value) in [("a", "3"), ("b", "4"), ("c", "5")] {
        assert_eq!(
            hc_get(&mut con, kept),
            Some(value.as_bytes().to_vec()),
            "{kept}"
        );
    }
    assert_eq!((tagcard(&mut con, "a"), tagcard(&mut con, "b")), (1, 1));
    assert_eq!(tagkeys(&mut con, "c"), ["c"]);
    let event = sub.expect_event("the deltagall event");
    assert_eq!(event.op, Op::Deltagall);
    assert_eq!(
        event.change,
        Change::Tags {
            tags: vec!["a".into(), "b".into()],
            matching: TagMatch::All,
        }
    );
    sub.assert_no_event(QUIET_PERIOD);
    assert_check_clean(&mut con);
    wait_removals_done(&mut con);
    assert_eq!(sorted(all_keys(&mut con)), ["a", "b", "c"]);
    assert_check_clean(&mut con);

    // The same entries under HC.DELTAG: any of the tags.
    select_fresh_db(&mut con, 1);
    five_entries(&mut con);
    assert_eq!(hc_deltag(&mut con, &["a", "b"]), 4);
    assert_eq!(hc_get(&mut con, "c"), Some(b"5".to_vec()));
}

fn select_fresh_db(con: &mut redis::Connection, db: u32) {
    hc::select(con, db);
    assert_eq!(dbsize(con), 0);
}

#[test]
fn one_distinct_tag_is_exactly_deltag() {
    let server = RedisServer::new();
    let mut con = server.connection();
    five_entries(&mut con);
    let sub = Subscriber::new(&server);
    assert_eq!(deltagall(&mut con, &["c", "c"]), 2);
    let event = sub.expect_event("a deltag event");
    assert_eq!(event.op, Op::Deltag);
    assert!(matches!(
        event.change,
        Change::Tags {
            matching: TagMatch::Any,
            ..
        }
    ));
    assert_eq!(hc_get(&mut con, "abc"), None);
    assert_eq!(deltagall(&mut con, &["a"]), 2, "ab and a");
    assert_eq!(sorted(tagkeys(&mut con, "b")), ["b"]);
    assert_check_clean(&mut con);
}

#[test]
fn a_missing_tag_or_an_empty_intersection_removes_nothing_and_announces_nothing() {
    let server = RedisServer::new();
    let mut con = server.connection();
    five_entries(&mut con);
    let sub = Subscriber::new(&server);
    assert_eq!(deltagall(&mut con, &["a", "missing"]), 0);
    assert_eq!(deltagall(&mut con, &["missing", "other"]), 0);
    assert_eq!(deltagall(&mut con, &["a", "c", "b", "zz"]), 0);
    hc_set(&mut con, "x", "v", &["x"]);
    let _ = sub.expect_event("the set of x");
    assert_eq!(deltagall(&mut con, &["c", "x"]), 0, "no entry has both");
    sub.assert_no_event(QUIET_PERIOD);
    assert_eq!(dbsize(&mut con), 6);
    // Wrong arity is an error, not a removal.
    assert!(call(&mut con, &[command::DELTAGALL]).is_err());
    assert_check_clean(&mut con);
}

#[test]
fn a_fill_leased_before_is_refused_when_it_names_any_of_the_tags() {
    let server = RedisServer::new();
    let mut con = server.connection();
    hc_set(&mut con, "both", "v", &["a", "b"]);
    let named_a = fetch_lease(&mut con, "fill:a");
    let named_c = fetch_lease(&mut con, "fill:c");
    let stored_both = fetch_lease(&mut con, "both");
    assert_eq!(deltagall(&mut con, &["a", "b"]), 1);
    // Conservative: a fill naming any of the tags is refused, even one that would carry
    // only one of them.
    assert!(!set_lease(
        &mut con,
        "fill:a",
        "stale",
        &named_a,
        &[],
        &["a"]
    ));
    assert!(!set_lease(
        &mut con,
        "both",
        "stale",
        &stored_both,
        &[],
        &["a", "b"]
    ));
    assert_eq!(hc_get(&mut con, "both"), None);
    // A fill of other tags stands; a fill leased after the removal too.
    assert!(set_lease(&mut con, "fill:c", "v", &named_c, &[], &["c"]));
    let after = fetch_lease(&mut con, "both");
    assert!(set_lease(&mut con, "both", "new", &after, &[], &["a", "b"]));
    assert_eq!(hc_get(&mut con, "both"), Some(b"new".to_vec()));
    // Even when the intersection was empty: the tags' data changed.
    let lease = fetch_lease(&mut con, "fill:d");
    assert_eq!(deltagall(&mut con, &["a", "d"]), 0);
    assert!(!set_lease(&mut con, "fill:d", "v", &lease, &[], &["d"]));
    assert_check_clean(&mut con);
}

#[test]
fn a_replica_reaches_the_same_keys_as_its_primary() {
    let primary = RedisServer::new();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    let mut con = primary.connection();
    for i in 0..300 {
        let tags: Vec<&str> = ["x", "y", "z"]
            .into_iter()
            .enumerate()
            .filter(|(bit, _)| i & (1 << bit) != 0)
            .map(|(_, t)| t)
            .collect();
        hc_set(&mut con, format!("k{i}"), "v", &tags);
    }
    // Keys with bits 0 and 1 set: i % 4 == 3.
    assert_eq!(deltagall(&mut con, &["x", "y"]), 75);
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    wait_removals_done(&mut con);
    wait_removals_done(&mut rcon);
    hybridcache_tests::wait::wait_until(scaled(Duration::from_secs(10)), "replica equal", || {
        dbsize(&mut rcon) == dbsize(&mut con)
    });
    assert_eq!(sorted(all_keys(&mut rcon)), sorted(all_keys(&mut con)));
    assert_eq!(dbsize(&mut con), 225);
    assert_eq!(hc_get(&mut rcon, "k3"), None);
    assert_eq!(hc_get(&mut rcon, "k1"), Some(b"v".to_vec()));
    assert_check_clean(&mut con);
    assert_check_clean(&mut rcon);
}

/// The tags of a model entry, as a sorted set.
type Tags = BTreeSet<String>;

#[test]
fn random_all_tags_removals_agree_with_a_model() {
    let seed = seed_from_env("HC_DELTAGALL_SEED");
    eprintln!("HC_DELTAGALL_SEED={seed}");
    let mut rng = SplitMix64::new(seed);
    let server = RedisServer::new();
    let mut con = server.connection();
    let tag_names: Vec<String> = (0..6).map(|t| format!("t{t}")).collect();
    let mut model: HashMap<String, Tags> = HashMap::new();
    let pick_tags = |rng: &mut SplitMix64, most: u64| -> Vec<String> {
        let n = 1 + rng.below(most);
        let tags: Tags = (0..n)
            .map(|_| tag_names[rng.below(tag_names.len() as u64) as usize].clone())
            .collect();
        tags.into_iter().collect()
    };
    for step in 0..600 {
        match rng.below(10) {
            0..=5 => {
                let key = format!("m{}", rng.below(120));
                let tags = pick_tags(&mut rng, 4);
                let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
                hc_set(&mut con, &key, "v", &refs);
                model.insert(key, tags.into_iter().collect());
            }
            6..=8 => {
                let tags = pick_tags(&mut rng, 3);
                let doomed: Vec<String> = model
                    .iter()
                    .filter(|(_, carried)| tags.iter().all(|t| carried.contains(t)))
                    .map(|(k, _)| k.clone())
                    .collect();
                let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
                assert_eq!(
                    deltagall(&mut con, &refs),
                    doomed.len() as i64,
                    "step {step}: HC.DELTAGALL {tags:?} (seed {seed})"
                );
                for key in doomed {
                    model.remove(&key);
                }
            }
            _ => {
                let tags = pick_tags(&mut rng, 2);
                let doomed: Vec<String> = model
                    .iter()
                    .filter(|(_, carried)| tags.iter().any(|t| carried.contains(t)))
                    .map(|(k, _)| k.clone())
                    .collect();
                let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
                assert_eq!(
                    hc_deltag(&mut con, &refs),
                    doomed.len() as i64,
                    "step {step}: HC.DELTAG {tags:?} (seed {seed})"
                );
                for key in doomed {
                    model.remove(&key);
                }
            }
        }
        if step % 100 == 99 {
            assert_check_clean(&mut con);
        }
    }
    // What HC commands see at once, then what the keyspace holds once removals finished.
    for tag in &tag_names {
        let mut want: Vec<String> = model
            .iter()
            .filter(|(_, carried)| carried.contains(tag))
            .map(|(k, _)| k.clone())
            .collect();
        want.sort();
        assert_eq!(sorted(tagkeys(&mut con, tag)), want, "{tag} (seed {seed})");
    }
    wait_removals_done(&mut con);
    let mut want: Vec<String> = model.keys().cloned().collect();
    want.sort();
    assert_eq!(sorted(all_keys(&mut con)), want, "seed {seed}");
    for (key, carried) in &model {
        let mut got = hc::tags(&mut con, key);
        got.sort();
        assert_eq!(got, carried.iter().cloned().collect::<Vec<_>>(), "{key}");
    }
    assert_check_clean(&mut con);
}

const N: usize = 20_000;

/// Writes `key:0..N` tagged `big` and `even`/`odd`, pipelined.
fn fill_big(con: &mut redis::Connection) {
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd(command::SET)
                .arg(format!("key:{i}"))
                .arg("value")
                .arg(command::option::TAGS)
                .arg("big")
                .arg(if i % 2 == 0 { "even" } else { "odd" })
                .ignore();
        }
        let _: () = pipe.query(con).unwrap();
    }
}

/// The even keys read as missing, the odd ones as written.
fn assert_only_odd_keys_live(con: &mut redis::Connection) {
    let keys: Vec<String> = (0..N).step_by(97).map(|i| format!("key:{i}")).collect();
    let values: Vec<Option<Vec<u8>>> = query(con, redis::cmd(command::MGET).arg(&keys));
    for (i, value) in (0..N).step_by(97).zip(values) {
        assert_eq!(value.is_some(), i % 2 == 1, "key:{i}");
    }
    assert_eq!(tagcard(con, "big"), (N / 2) as i64);
    assert_eq!(tagcard(con, "even"), 0);
}

#[test]
fn removed_entries_stay_gone_across_an_rdb_reload_and_an_aof_restart() {
    let server = RedisServer::new();
    let mut con = server.connection();
    fill_big(&mut con);
    assert_eq!(deltagall(&mut con, &["even", "big"]), (N / 2) as i64);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    assert_only_odd_keys_live(&mut con);
    assert_check_clean(&mut con);

    // Replayed from the AOF, HC.DELTAGALL removes the same keys again.
    let mut server = RedisServer::builder()
        .args(["--appendonly", "yes", "--aof-use-rdb-preamble", "no"])
        .start();
    let mut con = server.connection();
    fill_big(&mut con);
    assert_eq!(deltagall(&mut con, &["big", "even"]), (N / 2) as i64);
    server.restart();
    let mut con = server.connection();
    assert_check_clean(&mut con);
    assert_only_odd_keys_live(&mut con);
    wait_removals_done(&mut con);
    assert_eq!(dbsize(&mut con), (N / 2) as i64);
    assert_check_clean(&mut con);
}

#[test]
fn a_large_intersection_answers_at_once_and_is_removed_in_the_background() {
    let server = RedisServer::new();
    let mut con = server.connection();
    fill_big(&mut con);
    let started = Instant::now();
    assert_eq!(deltagall(&mut con, &["big", "even"]), (N / 2) as i64);
    let answered = started.elapsed();
    assert!(
        answered < scaled(Duration::from_millis(500)),
        "HC.DELTAGALL took {answered:?}"
    );
    // Gone for HC commands from the reply on, before the timer removed them.
    assert_eq!(tagcard(&mut con, "big"), (N / 2) as i64);
    assert_eq!(tagcard(&mut con, "even"), 0);
    let evens: Vec<String> = (0..N)
        .step_by(2)
        .take(500)
        .map(|i| format!("key:{i}"))
        .collect();
    let values: Vec<Option<Vec<u8>>> = query(&mut con, redis::cmd(command::MGET).arg(&evens));
    assert!(values.iter().all(Option::is_none));
    assert_eq!(hc_get(&mut con, "key:1"), Some(b"value".to_vec()));
    assert_check_clean(&mut con);
    wait_removals_done(&mut con);
    assert_eq!(dbsize(&mut con), (N / 2) as i64);
    assert_check_clean(&mut con);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_all_tags_runs_on_every_primary_of_a_cluster() {
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
    for i in 0..60u32 {
        let tags: &[&str] = if i % 2 == 0 { &["x", "y"] } else { &["x"] };
        a.set(
            &format!("k{i}"),
            i,
            EntryOptions::new().tags(tags.iter().copied()),
        )
        .await
        .unwrap();
    }
    for i in 0..60u32 {
        assert_eq!(get_value::<u32>(&b, &format!("k{i}")).await, Some(i));
    }
    assert_eq!(a.remove_by_all_tags(["y", "x"]).await.unwrap(), 30);
    eventually(
        DELIVERY,
        "b drops the even keys on every shard",
        async || {
            let mut held = 0;
            for i in (0..60u32).step_by(2) {
                held += usize::from(b.get::<u32>(&format!("k{i}")).await.unwrap().is_some());
            }
            held == 0
        },
    )
    .await;
    for i in (1..60u32).step_by(2) {
        assert_eq!(
            get_value::<u32>(&b, &format!("k{i}")).await,
            Some(i),
            "k{i}"
        );
    }
    let mut left = 0;
    for primary in cluster.primaries() {
        let mut con = primary.connection();
        wait_removals_done(&mut con);
        left += dbsize(&mut con);
        assert_check_clean(&mut con);
    }
    assert_eq!(left, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_drops_only_its_copies_carrying_all_of_the_tags() {
    let server = RedisServer::new();
    let (a, b) = (build(builder(&server)).await, build(builder(&server)).await);
    let entries: [(&str, &[&str]); 4] = [
        ("both", &["x", "y"]),
        ("more", &["x", "y", "z"]),
        ("x-only", &["x"]),
        ("y-only", &["y"]),
    ];
    for (i, (key, tags)) in entries.iter().enumerate() {
        a.set(
            key,
            i as u32,
            EntryOptions::new().tags(tags.iter().copied()),
        )
        .await
        .unwrap();
    }
    // b reads each once from Redis: now in its L1.
    for (i, (key, _)) in entries.iter().enumerate() {
        assert_eq!(get_value::<u32>(&b, key).await, Some(i as u32));
    }
    assert_eq!(a.remove_by_all_tags(["x", "y"]).await.unwrap(), 2);
    for key in ["both", "more"] {
        assert_eq!(get_value::<u32>(&a, key).await, None, "a: {key}");
    }
    eventually(DELIVERY, "b drops both and more", async || {
        get_value::<u32>(&b, "both").await.is_none() && get_value::<u32>(&b, "more").await.is_none()
    })
    .await;
    // The copies with only some of the tags are still served from b's L1.
    let hits = b.stats().l1_hits;
    assert_eq!(get_value::<u32>(&b, "x-only").await, Some(2));
    assert_eq!(get_value::<u32>(&b, "y-only").await, Some(3));
    assert_eq!(b.stats().l1_hits, hits + 2, "{b:?}");
    // A value written after the removal with the same tags is served again.
    a.set("both", 9u32, EntryOptions::new().tags(["x", "y"]))
        .await
        .unwrap();
    eventually(DELIVERY, "b reads the new value", async || {
        get_value::<u32>(&b, "both").await == Some(9)
    })
    .await;
    let mut con = server.connection();
    wait_removals_done(&mut con);
    assert_check_clean(&mut con);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_by_all_tags_while_redis_is_down_is_queued_and_replayed() {
    let mut server = RedisServer::new();
    let h = build(builder(&server).auto_recovery(100)).await;
    let mut events = h.events();
    h.set("both", 1u32, EntryOptions::new().tags(["a", "b"]))
        .await
        .unwrap();
    h.set("one", 2u32, EntryOptions::new().tags(["a"]))
        .await
        .unwrap();
    let _: () = query(&mut server.connection(), &redis::cmd("SAVE"));
    server.kill();
    eventually(DELIVERY, "the handle to notice Redis is gone", async || {
        !h.is_subscribed()
    })
    .await;
    assert_eq!(h.remove_by_all_tags(["a", "b"]).await.unwrap(), 0);
    assert_eq!(h.queued_operations(), 1);
    assert!(
        !matches!(h.get::<u32>("both").await, Ok(Some(_))),
        "the local copy is gone at once"
    );

    // Back with the saved data: the queued removal replays over it.
    server.start_again();
    eventually(
        scaled(Duration::from_secs(15)),
        "the handle to subscribe again",
        async || h.is_subscribed(),
    )
    .await;
    assert_eq!(h.queued_operations(), 0);
    let mut con = server.connection();
    assert_eq!(hc_get(&mut con, "both"), None);
    assert_eq!(hc_get(&mut con, "one"), Some(b"2".to_vec()));
    assert_eq!(get_value::<u32>(&h, "one").await, Some(2));
    let mut names = Vec::new();
    while let Ok(event) = events.try_recv() {
        names.push(event.name());
    }
    assert!(names.contains(&"remove_by_all_tags"), "{names:?}");
    assert!(names.contains(&"replayed"), "{names:?}");
}
