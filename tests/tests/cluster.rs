//! Redis Cluster: real 3-primary/3-replica clusters of redis-server processes with the
//! module. Key commands route by slot (and multi-key commands follow CROSSSLOT), events
//! reach the subscribers of every node of their shard once, a tag spanning all primaries is
//! removed everywhere (L1 included), resharding under writes and a primary's failover leave
//! every node's index equal to its keyspace, and the client serves no stale value after the
//! failover.
//!
//! Every test with the module runs an event-stream checker ([`shard_checker`]: every node
//! subscribed to its shard's channel): each shard's stream is numbered without gap,
//! duplicate or reordering through writes, reshards and failover, each subscription
//! receives exactly what its primary's event log holds, and each write is announced once.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::shard::shard_channel;
use hybridcache_protocol::{command, Op};
use hybridcache_protocol::{Change, DEFAULT_CHANNEL};
use hybridcache_tests::client_support::{build, eventually, get_value, DELIVERY};
use hybridcache_tests::cluster::key_slot;
use hybridcache_tests::event_stream::{ExpectedChange, StreamChecker, Subject};
use hybridcache_tests::hc::{call, hc_get_str, hc_set, query, tagcard};
use hybridcache_tests::index_check::assert_index_matches;
use hybridcache_tests::{HcInfo, RedisCluster, RedisServer, Subscriber, EVENT_TIMEOUT};
use redis::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a handle may take to find a working node again after a failover.
const RECOVERY: Duration = Duration::from_secs(15);

fn three_by_three() -> RedisCluster {
    RedisCluster::start(3, 1)
}

/// `n` keys named `<prefix><i>` whose slots `owner` holds.
fn keys_on(cluster: &RedisCluster, owner: &RedisServer, prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|key| cluster.node_for_key(key).port() == owner.port())
        .take(n)
        .collect()
}

/// The slots each primary serves (by port), from `CLUSTER SLOTS` asked of `node`.
fn slots_by_primary(node: &RedisServer) -> BTreeMap<u16, Vec<u16>> {
    let reply: Value = query(&mut node.connection(), redis::cmd("CLUSTER").arg("SLOTS"));
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS answered {reply:?}");
    };
    let mut slots: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    for range in ranges {
        let Value::Array(fields) = &range else {
            panic!("CLUSTER SLOTS range {range:?}");
        };
        let [Value::Int(start), Value::Int(end), Value::Array(primary), ..] = fields.as_slice()
        else {
            panic!("CLUSTER SLOTS range {range:?}");
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            panic!("CLUSTER SLOTS range {range:?}");
        };
        slots
            .entry(*port as u16)
            .or_default()
            .extend(*start as u16..=*end as u16);
    }
    slots
}

/// The name of a node's subscription in a [`shard_checker`].
fn source(node: &RedisServer) -> String {
    format!("port {}", node.port())
}

/// An event-stream checker with a subscription on every node to its shard's channel.
///
/// The channel is named after the shard's highest slot not in `moving` (slots the test will
/// migrate; `redis-cli --cluster reshard` moves a shard's lowest slots first), so that no
/// reshard here makes Redis unsubscribe it. The module publishes on every shard channel its
/// primary has subscribers for: the primary's subscription makes its messages go out on
/// this channel, and its replicas' subscriptions receive them from it (and, after a
/// failover, the promoted replica's own).
fn shard_checker(cluster: &RedisCluster, moving: &[u16]) -> StreamChecker {
    let slots = slots_by_primary(cluster.node(0));
    let mut subscribers = Vec::new();
    for primary in cluster.primaries() {
        let slot = slots[&primary.port()]
            .iter()
            .rev()
            .find(|slot| !moving.contains(slot))
            .copied()
            .unwrap_or_else(|| panic!("port {} keeps no slot", primary.port()));
        let channel = String::from_utf8(shard_channel(DEFAULT_CHANNEL.as_bytes(), slot))
            .expect("a shard channel is text");
        let mut shard = vec![primary];
        shard.extend(cluster.replicas_of(primary));
        for node in shard {
            subscribers.push((source(node), Subscriber::on_shard_channel(node, &channel)));
        }
    }
    StreamChecker::on_thread(subscribers)
}

/// The stream of every shard was clean and every running primary's subscribers received
/// exactly what its event log holds.
fn assert_streams_match_logs(checker: &StreamChecker, cluster: &RedisCluster, when: &str) {
    checker.assert_clean(when);
    for primary in cluster.primaries() {
        if let Err(e) = checker.check_log(primary) {
            panic!("{when}: {e}\n{}", checker.summary());
        }
    }
}

/// How often each (op, key) was announced, over every origin (as the first subscription
/// that received the origin has it).
fn key_announcements(checker: &StreamChecker) -> BTreeMap<(String, String), usize> {
    checker.with_streams(|s| {
        let mut counts = BTreeMap::new();
        for origin in s.origins() {
            for change in s.received(&origin, u64::MAX) {
                if let Change::Keys { keys } = &change.change {
                    for key in keys {
                        let key = String::from_utf8_lossy(key.as_bytes()).into_owned();
                        *counts
                            .entry((change.op.as_str().to_string(), key))
                            .or_default() += 1;
                    }
                }
            }
        }
        counts
    })
}

/// Each key that moved with its slot was announced once as removed (by the node it left)
/// and once as added (by the node it reached), and no key more than that.
fn assert_migrations_announced_once(announced: &BTreeMap<(String, String), usize>) {
    let count = |op: &str, key: &str| {
        announced
            .get(&(op.to_string(), key.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let keys: BTreeSet<&String> = announced
        .keys()
        .filter(|(op, _)| op == "added" || op == "removed")
        .map(|(_, key)| key)
        .collect();
    assert!(!keys.is_empty(), "no key was announced as moved");
    for key in keys {
        let (added, removed) = (count("added", key), count("removed", key));
        assert!(
            added == 1 && removed == 1,
            "{key}: announced added {added} times and removed {removed} times by the reshard"
        );
    }
}

/// A cluster handle on every node of `cluster`, reconnecting quickly.
async fn cluster_cache(cluster: &RedisCluster) -> HybridCache {
    build(
        HybridCache::cluster_builder(cluster.urls())
            .max_reconnect_backoff(Duration::from_millis(200))
            .health_check(Duration::from_millis(250), Duration::from_millis(500)),
    )
    .await
}

/// The `MOVED <slot> <host:port>` error a node gives for a key it does not own.
fn moved(error: &str) -> Option<(u16, u16)> {
    let mut words = error.split_whitespace();
    if words.next()? != "MOVED" {
        return None;
    }
    let slot = words.next()?.parse().ok()?;
    let port = words.next()?.rsplit(':').next()?.parse().ok()?;
    Some((slot, port))
}

#[test]
fn key_commands_route_by_slot_and_multi_key_commands_need_one_slot() {
    let cluster = three_by_three();
    let key = "product:42";
    let owner = cluster.node_for_key(key);
    let other = cluster
        .primaries()
        .into_iter()
        .find(|p| p.port() != owner.port())
        .expect("another primary");
    let mut ocon = owner.connection();
    let mut xcon = other.connection();
    let slot = key_slot(key);

    // COMMAND GETKEYS names the key of every key command, so cluster clients route them.
    let words: [&[&str]; 6] = [
        &[command::SET, key, "v", "EX", "60", "TAGS", "a", "b"],
        &[command::GET, key],
        &[command::FETCH, key],
        &[command::TAGS, key],
        &[command::MGET, key, "{product:42}x"],
        &[command::DEL, key, "{product:42}x"],
    ];
    for command_words in words {
        let mut getkeys = vec!["COMMAND", "GETKEYS"];
        getkeys.extend_from_slice(command_words);
        let keys: Vec<String> = query(&mut ocon, redis::cmd(getkeys[0]).arg(&getkeys[1..]));
        let expected: Vec<&str> = command_words[1..]
            .iter()
            .copied()
            .filter(|w| *w == key || w.starts_with("{product:42}"))
            .collect();
        assert_eq!(keys, expected, "COMMAND GETKEYS {command_words:?}");
        // The owner runs it; another primary redirects to the owner.
        assert!(
            call(&mut ocon, command_words).is_ok(),
            "{command_words:?} on the owner"
        );
        let refused = call(&mut xcon, command_words).expect_err("another primary must redirect");
        assert_eq!(
            moved(&refused),
            Some((slot, owner.port())),
            "{command_words:?} on another primary: {refused}"
        );
    }
    hc_set(&mut ocon, key, "v", &["a"]);
    assert_eq!(hc_get_str(&mut ocon, key).as_deref(), Some("v"));

    // Multi-key commands across slots get Redis's own CROSSSLOT error; one slot is fine.
    let (a, b) = ("{u}:1", "{v}:1");
    assert_ne!(key_slot(a), key_slot(b));
    let mut acon = cluster.node_for_key(a).connection();
    for name in [command::MGET, command::DEL] {
        let refused = call(&mut acon, &[name, a, b]).expect_err("keys of two slots");
        assert!(refused.starts_with("CROSSSLOT"), "{name}: {refused}");
    }
    hc_set(&mut acon, "{u}:1", "1", &["t"]);
    hc_set(&mut acon, "{u}:2", "2", &["t"]);
    assert_eq!(
        call(&mut acon, &[command::MGET, "{u}:1", "{u}:2"]),
        Ok(Value::Array(vec![
            Value::BulkString(b"1".to_vec()),
            Value::BulkString(b"2".to_vec())
        ]))
    );
    assert_eq!(
        call(&mut acon, &[command::DEL, "{u}:1", "{u}:2"]),
        Ok(Value::Int(2))
    );
    // Keyless tag commands run on any node, over that node's keys.
    assert_eq!(tagcard(&mut ocon, "a"), 1);
    assert_eq!(tagcard(&mut xcon, "a"), 0);
}

#[test]
fn events_reach_every_node_of_their_shard_exactly_once_as_the_logs_have_them() {
    let cluster = three_by_three();
    let checker = shard_checker(&cluster, &[]);
    let mut published = BTreeMap::new();
    for primary in cluster.primaries() {
        let key = keys_on(&cluster, primary, "k", 1).remove(0);
        let mut con = primary.connection();
        hc_set(&mut con, &key, "v", &["t"]);
        published.insert(HcInfo::read(&mut con).origin, (primary, key));
    }
    assert_streams_match_logs(&checker, &cluster, "after one write per primary");
    for (origin, (primary, key)) in &published {
        // Each write once, under its primary's origin, on the nodes of its shard only:
        // replicas applying it stay silent.
        let mut shard: Vec<String> = cluster
            .replicas_of(primary)
            .into_iter()
            .chain([*primary])
            .map(source)
            .collect();
        shard.sort();
        // The replicas hear it over the bus, a little after the primary's subscribers.
        let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
        while checker.with_streams(|s| s.sources_of(origin)) != shard
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        checker.with_streams(|s| {
            assert_eq!(s.sources_of(origin), shard, "who received {origin}");
            for node in &shard {
                let changes = s.kept(node, origin, u64::MAX);
                assert_eq!(changes.len(), 1, "{node}: {changes:?}");
                assert_eq!(
                    (changes[0].op, &changes[0].change),
                    (
                        Op::Set,
                        &Change::Keys {
                            keys: vec![key.as_str().into()]
                        }
                    )
                );
            }
        });
    }
    assert_eq!(
        checker.with_streams(|s| s.origins()),
        published.keys().cloned().collect::<BTreeSet<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_spanning_every_primary_is_removed_everywhere_and_from_every_l1() {
    let cluster = three_by_three();
    let checker = shard_checker(&cluster, &[]);
    let handles = [cluster_cache(&cluster).await, cluster_cache(&cluster).await];
    let mut tagged = Vec::new();
    for primary in cluster.primaries() {
        tagged.extend(keys_on(&cluster, primary, "item:", 3));
    }
    let untagged = "other:1";
    for (i, key) in tagged.iter().enumerate() {
        handles[0]
            .set(key, i as u32, EntryOptions::new().tags(["sale", "all"]))
            .await
            .unwrap();
    }
    handles[0]
        .set(untagged, 7u32, EntryOptions::new().tags(["all-but-sale"]))
        .await
        .unwrap();
    // Both handles hold every entry in L1.
    for h in &handles {
        for (i, key) in tagged.iter().enumerate() {
            assert_eq!(get_value::<u32>(h, key).await, Some(i as u32));
        }
        let before = h.stats();
        assert_eq!(get_value::<u32>(h, &tagged[0]).await, Some(0));
        assert_eq!(h.stats().l1_hits, before.l1_hits + 1, "{h:?}");
    }

    let removed = handles[1].remove_by_tag("sale").await.unwrap();
    assert_eq!(
        removed,
        tagged.len() as u64,
        "counts summed over the primaries"
    );
    for primary in cluster.primaries() {
        assert_eq!(tagcard(&mut primary.connection(), "sale"), 0);
        assert_eq!(tagcard(&mut primary.connection(), "all"), 0);
    }
    for h in &handles {
        eventually(
            DELIVERY,
            "every tagged key to be gone from L1",
            async || {
                for key in &tagged {
                    if get_value::<u32>(h, key).await.is_some() {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        assert_eq!(get_value::<u32>(h, untagged).await, Some(7));
    }
    assert_eq!(handles[0].remove_by_tag("sale").await.unwrap(), 0);
    // Single-key removal is routed to the key's primary.
    let mut spread = Vec::new();
    for primary in cluster.primaries() {
        spread.extend(keys_on(&cluster, primary, "one:", 1));
    }
    for key in &spread {
        handles[0]
            .set(key, 1u32, EntryOptions::new())
            .await
            .unwrap();
        assert_eq!(get_value::<u32>(&handles[1], key).await, Some(1));
        assert!(handles[0].remove(key).await.unwrap(), "{key}");
        assert!(!handles[0].remove(key).await.unwrap(), "{key}");
        eventually(DELIVERY, "the removal to reach the other L1", async || {
            get_value::<u32>(&handles[1], key).await.is_none()
        })
        .await;
    }
    tokio::task::block_in_place(|| {
        assert_streams_match_logs(&checker, &cluster, "at the end");
        // Each primary announced the tag removal once (as one change), each key's
        // removal once.
        let deltags: usize = checker.with_streams(|s| {
            s.origins()
                .iter()
                .flat_map(|origin| s.received(origin, u64::MAX))
                .filter(|c| c.op == Op::Deltag)
                .count()
        });
        assert_eq!(deltags, cluster.primaries().len(), "{}", checker.summary());
        let announced = key_announcements(&checker);
        for key in &spread {
            assert_eq!(
                announced.get(&("del".into(), key.clone())),
                Some(&1),
                "{key}"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_slot_while_writing_keeps_every_index_exact() {
    let cluster = three_by_three();
    let writer = cluster_cache(&cluster).await;
    // Every key of the writer lives in one slot (hash tag {r}); half carry the tag.
    let key = |i: u32| format!("{{r}}:{i}");
    let slot = key_slot(key(0));
    let checker = shard_checker(&cluster, &[slot]);
    let from = cluster.slot_owner(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| p.port() != from.port())
        .expect("another primary");
    for i in 0..200u32 {
        let tags: &[&str] = if i.is_multiple_of(2) {
            &["moving"]
        } else {
            &[]
        };
        writer
            .set(&key(i), i, EntryOptions::new().tags(tags.iter().copied()))
            .await
            .unwrap();
    }
    // Bystanders on the other primaries with the same tag.
    let bystanders: Vec<String> = cluster
        .primaries()
        .into_iter()
        .filter(|p| p.port() != from.port())
        .flat_map(|p| keys_on(&cluster, p, "stay:", 2))
        .collect();
    for k in &bystanders {
        writer
            .set(k, 1u32, EntryOptions::new().tags(["moving"]))
            .await
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (writer, stop) = (writer.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 200u32;
            while !stop.load(Ordering::Relaxed) {
                let tags: &[&str] = if i.is_multiple_of(2) {
                    &["moving"]
                } else {
                    &[]
                };
                // Overwrites of old keys (tags change) and new keys, through MOVED/ASK.
                let target = if i.is_multiple_of(3) { i % 200 } else { i };
                writer
                    .set(
                        &format!("{{r}}:{target}"),
                        i,
                        EntryOptions::new().tags(tags.iter().copied()),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("write {i} during resharding: {e}"));
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::task::block_in_place(|| cluster.migrate_slot(slot, from, to));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let written = load.await.unwrap();
    assert!(written > 200, "the writer made no progress during the move");

    tokio::task::block_in_place(|| {
        assert_eq!(cluster.slot_owner(slot).port(), to.port());
        let mut fcon = from.connection();
        let left: i64 = query(
            &mut fcon,
            redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot),
        );
        assert_eq!(left, 0, "keys left behind on the source");
        for primary in cluster.primaries() {
            let _: i64 = query(
                &mut primary.connection(),
                redis::cmd("WAIT").arg(1).arg(5000),
            );
        }
        for node in cluster.running_nodes() {
            assert_index_matches(&mut node.connection(), &format!("port {}", node.port()));
        }
        // Every shard's stream stayed gap-free through the move and matches its log;
        // every write was announced once, every moved key once by each side.
        assert_streams_match_logs(&checker, &cluster, "after the reshard");
        let mut writes: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..written {
            let target = if i >= 200 && i.is_multiple_of(3) {
                i % 200
            } else {
                i
            };
            *writes.entry(key(target)).or_default() += 1;
        }
        for k in &bystanders {
            *writes.entry(k.clone()).or_default() += 1;
        }
        let announced = key_announcements(&checker);
        let sets: BTreeMap<String, usize> = announced
            .iter()
            .filter(|((op, _), _)| op == "set")
            .map(|((_, k), n)| (k.clone(), *n))
            .collect();
        assert_eq!(sets, writes, "set changes per key vs writes per key");
        assert_migrations_announced_once(&announced);
    });

    // The tagged keys, as the keyspace has them now.
    let mut tcon = to.connection();
    let expected_tagged = (0..written)
        .filter(|i| {
            let tags: Vec<String> = query(&mut tcon, redis::cmd(command::TAGS).arg(key(*i)));
            tags.iter().any(|t| t == "moving")
        })
        .count()
        + bystanders.len();
    assert!(expected_tagged > bystanders.len());
    let removed = writer.remove_by_tag("moving").await.unwrap();
    assert_eq!(removed, expected_tagged as u64);
    tokio::task::block_in_place(|| {
        for primary in cluster.primaries() {
            let mut con = primary.connection();
            assert_eq!(tagcard(&mut con, "moving"), 0);
            assert_index_matches(&mut con, &format!("port {}", primary.port()));
        }
        assert_streams_match_logs(&checker, &cluster, "after the tag removal");
    });
    // Untagged keys stay.
    let untagged_left = (0..written)
        .filter(|i| hc_get_str(&mut tcon, key(*i)).is_some())
        .count();
    assert!(untagged_left > 0);
}

/// A cluster handle whose subscription starts on `first` (the seeds are tried in order).
async fn cluster_cache_subscribed_on(cluster: &RedisCluster, first: u16) -> HybridCache {
    let mut urls = cluster.urls();
    urls.sort_by_key(|url| !url.contains(&format!(":{first}/")));
    build(
        HybridCache::cluster_builder(urls)
            .max_reconnect_backoff(Duration::from_millis(200))
            .health_check(Duration::from_millis(250), Duration::from_millis(500)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_keeps_entries_and_index_and_the_client_serves_no_stale_value() {
    let mut cluster = three_by_three();
    let victim = cluster.primaries()[0].port();
    let victim_index = cluster
        .nodes()
        .iter()
        .position(|n| n.port() == victim)
        .unwrap();
    let survivor = cluster
        .primaries()
        .into_iter()
        .find(|p| p.port() != victim)
        .unwrap()
        .port();
    let keys = keys_on(&cluster, cluster.node(victim_index), "acct:", 20);
    let checker = shard_checker(&cluster, &[]);
    let victim_origin = HcInfo::read(&mut cluster.node(victim_index).connection()).origin;
    // Each reader has a shard subscription on every primary: the one on the victim's shard
    // dies with it and moves to the promoted replica.
    let readers = [
        cluster_cache_subscribed_on(&cluster, victim).await,
        cluster_cache_subscribed_on(&cluster, survivor).await,
    ];
    let writer = cluster_cache(&cluster).await;
    for (i, key) in keys.iter().enumerate() {
        writer
            .set(
                key,
                i as u32,
                EntryOptions::new().tags(["accounts", &format!("n:{}", i % 4)]),
            )
            .await
            .unwrap();
    }
    for reader in &readers {
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(get_value::<u32>(reader, key).await, Some(i as u32));
        }
    }
    let before: Vec<_> = readers.iter().map(HybridCache::stats).collect();
    let promoted_port = tokio::task::block_in_place(|| {
        let _: i64 = query(
            &mut cluster.node(victim_index).connection(),
            redis::cmd("WAIT").arg(1).arg(5000),
        );
        // Every subscription of the shard has received the victim's changes.
        assert_streams_match_logs(&checker, &cluster, "before the failover");
        checker.allow_loss(&source(cluster.node(victim_index)));
        // Valkey ends the shard subscriptions of the replica it promotes (SUNSUBSCRIBE sent
        // by the server, as when a slot moves away); Redis 7.0 keeps them. The client
        // treats either as a lost subscription (checked below).
        for replica in cluster.replicas_of(cluster.node(victim_index)) {
            checker.allow_loss(&source(replica));
        }
        cluster.kill_primary_and_wait_failover(victim_index).port()
    });
    let promoted = cluster
        .nodes()
        .iter()
        .find(|n| n.port() == promoted_port)
        .unwrap();

    // The promoted replica holds every entry, with its tags, and an exact index.
    tokio::task::block_in_place(|| {
        let mut pcon = promoted.connection();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(hc_get_str(&mut pcon, key), Some(i.to_string()), "{key}");
        }
        assert_eq!(tagcard(&mut pcon, "accounts"), keys.len() as i64);
        assert_index_matches(&mut pcon, "the promoted replica");
    });

    // Both readers learnt that the shard changed hands: L1 was dropped.
    for (reader, before) in readers.iter().zip(&before) {
        eventually(
            RECOVERY,
            "the reader to drop L1 and be subscribed",
            async || reader.is_subscribed() && reader.stats().l1_flushes > before.l1_flushes,
        )
        .await;
    }
    for (reader, before) in readers.iter().zip(&before) {
        assert!(
            reader.stats().subscriptions > before.subscriptions,
            "the subscription on the victim's shard moved: {reader:?}"
        );
    }
    // Writes to the new primary reach the readers; they never serve the old values.
    eventually(
        RECOVERY,
        "the writer to reach the new primary",
        async || {
            writer
                .set(&keys[0], 1000u32, EntryOptions::new())
                .await
                .is_ok()
        },
    )
    .await;
    for (i, key) in keys.iter().enumerate().skip(1) {
        writer
            .set(key, 1000 + i as u32, EntryOptions::new().tags(["accounts"]))
            .await
            .unwrap();
    }
    for reader in &readers {
        eventually(DELIVERY, "the reader to see every new value", async || {
            for (i, key) in keys.iter().enumerate() {
                if get_value::<u32>(reader, key).await != Some(1000 + i as u32) {
                    return false;
                }
            }
            true
        })
        .await;
        // And keeps them in L1 again.
        let hits = reader.stats().l1_hits;
        assert_eq!(get_value::<u32>(reader, &keys[1]).await, Some(1001));
        assert_eq!(reader.stats().l1_hits, hits + 1, "{reader:?}");
    }
    assert_eq!(
        readers[0].remove_by_tag("accounts").await.unwrap(),
        keys.len() as u64 - 1
    );

    tokio::task::block_in_place(|| {
        let promoted_origin = HcInfo::read(&mut promoted.connection()).origin;
        let subscription = source(promoted);
        let victim_changes =
            checker.with_streams(|s| s.kept(&subscription, &victim_origin, u64::MAX));
        // The replica's subscription heard the victim's writes.
        let first_writes: Vec<ExpectedChange> = keys
            .iter()
            .map(|key| ExpectedChange::key(0, Op::Set, key))
            .collect();
        let differences = hybridcache_tests::event_stream::model_differences(
            &victim_changes,
            &first_writes,
            &|_, _| true,
        );
        assert!(
            differences.is_empty(),
            "the victim's changes as {subscription} received them: {differences:?}"
        );
        if checker.with_streams(|s| s.lost_sources().contains(&subscription)) {
            // Valkey ended the promoted replica's shard subscriptions as it took the slots
            // over, before the module published the promoted flush: nobody subscribed
            // there hears it, and the readers dropped L1 for the lost subscription instead
            // (asserted above). Redis keeps the subscription.
            assert!(
                is_valkey(promoted),
                "the promoted replica ended its shard subscriptions"
            );
            checker.assert_clean("after the failover");
            for primary in cluster.primaries() {
                if primary.port() != promoted_port {
                    if let Err(e) = checker.check_log(primary) {
                        panic!("after the failover: {e}\n{}", checker.summary());
                    }
                }
            }
            return;
        }
        // Every shard's stream stayed clean through the failover and matches its log.
        assert_streams_match_logs(&checker, &cluster, "after the failover");
        // The replica's subscription then heard the promoted node's own changes under its
        // own origin, starting with the promoted flush.
        let (seen_by, changes) = checker.with_streams(|s| {
            (
                s.sources_of(&promoted_origin),
                s.received(&promoted_origin, u64::MAX),
            )
        });
        assert_eq!(seen_by, std::slice::from_ref(&subscription));
        let first = changes
            .first()
            .expect("the promoted node announced nothing");
        assert_eq!(
            (first.op, first.db, &first.change),
            (Op::Promoted, None, &Change::Flush),
            "the promoted node's first change"
        );
        // keys[0] was written until a write succeeded: only the others are counted.
        let mut expected: Vec<ExpectedChange> = keys[1..]
            .iter()
            .map(|key| ExpectedChange::key(0, Op::Set, key))
            .collect();
        expected.push(ExpectedChange::tag(0, Op::Deltag, "accounts"));
        checker.assert_model_changes(&promoted_origin, u64::MAX, &expected, &|_, subject| {
            match subject {
                Subject::Key(key) => key.starts_with(b"acct:") && key != keys[0].as_bytes(),
                Subject::Tag(tag) => tag == b"accounts",
            }
        });
    });
}

/// The server is Valkey (it reports its own version beside the Redis one it is compatible
/// with).
fn is_valkey(server: &RedisServer) -> bool {
    server.info("server").contains_key("valkey_version")
}

/// Runs `redis-cli` with `args`, which must succeed; returns its standard output.
fn redis_cli(args: &[String]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn redis_cli_follows_redirects_and_its_reshard_keeps_every_index_exact() {
    let cluster = three_by_three();
    let checker = shard_checker(&cluster, &[]);
    let primaries: Vec<&RedisServer> = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let key = |i: usize| format!("k:{i}");
    for primary in &primaries {
        let mut pipe = redis::pipe();
        for i in (0..2000).filter(|i| cluster.node_for_key(&key(*i)).port() == primary.port()) {
            pipe.cmd(command::SET)
                .arg(key(i))
                .arg(i)
                .arg(command::option::TAGS)
                .arg("all")
                .arg(format!("t:{}", i % 5))
                .ignore();
        }
        let _: () = pipe.query(&mut primary.connection()).unwrap();
    }

    // redis-cli -c routes HC commands by their key from any node.
    let port = |p: &RedisServer| p.port().to_string();
    let elsewhere = cluster
        .primaries()
        .into_iter()
        .find(|p| p.port() != cluster.node_for_key("cli").port())
        .unwrap();
    let via = |words: &[&str]| {
        let mut args = vec!["-c".to_string(), "-p".to_string(), port(elsewhere)];
        args.extend(words.iter().map(|w| w.to_string()));
        redis_cli(&args)
    };
    assert_eq!(via(&[command::SET, "cli", "v", "TAGS", "x"]).trim(), "OK");
    assert_eq!(via(&[command::GET, "cli"]).trim(), "v");
    assert_eq!(via(&[command::TAGS, "cli"]).trim(), "x");
    assert_eq!(via(&[command::DEL, "cli"]).trim(), "1");

    // redis-cli --cluster reshard moves 2000 slots (and their keys) from one primary to another.
    let moved_before = tagcard(&mut to.connection(), "all");
    redis_cli(&[
        "--cluster".into(),
        "reshard".into(),
        format!("127.0.0.1:{}", from.port()),
        "--cluster-from".into(),
        cluster.node_id(from).into(),
        "--cluster-to".into(),
        cluster.node_id(to).into(),
        "--cluster-slots".into(),
        "2000".into(),
        "--cluster-yes".into(),
    ]);
    cluster.wait_until_consistent();
    assert!(tagcard(&mut to.connection(), "all") > moved_before + 100);
    let mut total = 0;
    for primary in cluster.primaries() {
        total += tagcard(&mut primary.connection(), "all");
        let _: i64 = query(
            &mut primary.connection(),
            redis::cmd("WAIT").arg(1).arg(5000),
        );
    }
    assert_eq!(total, 2000);
    for node in cluster.running_nodes() {
        assert_index_matches(&mut node.connection(), &format!("port {}", node.port()));
    }
    for i in [0, 1, 2, 1999] {
        let mut con = cluster.node_for_key(&key(i)).connection();
        assert_eq!(hc_get_str(&mut con, key(i)), Some(i.to_string()));
    }
    let removed: i64 = cluster
        .primaries()
        .into_iter()
        .map(|p| hybridcache_tests::hc::hc_deltag(&mut p.connection(), &["t:3"]))
        .sum();
    assert_eq!(removed, 400);

    // Every shard's stream stayed clean through the reshard and matches its log; every
    // write was announced once, every moved key once by each side.
    assert_streams_match_logs(&checker, &cluster, "after the reshard");
    let announced = key_announcements(&checker);
    for i in 0..2000 {
        assert_eq!(
            announced.get(&("set".into(), key(i))),
            Some(&1),
            "set changes of {}",
            key(i)
        );
    }
    assert_eq!(announced.get(&("set".into(), "cli".into())), Some(&1));
    assert_eq!(announced.get(&("del".into(), "cli".into())), Some(&1));
    assert_migrations_announced_once(&announced);
}
