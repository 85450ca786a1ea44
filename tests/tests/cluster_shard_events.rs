//! Sharded events in Redis Cluster: a primary publishes on its shard's channel
//! (`{<tag of its lowest slot>}hc:invalidations`, `RedisModule_PublishMessageShard`), so an
//! event reaches only the nodes of its shard; the client subscribes to every shard with
//! `SSUBSCRIBE` and follows reshards and failovers. `hybridcache.sharded-events no` brings
//! back the global channel.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::shard::shard_channel;
use hybridcache_protocol::{Op, DEFAULT_CHANNEL};
use hybridcache_tests::client_support::{build, eventually, get_value};
use hybridcache_tests::hc::{hc_set, query};
use hybridcache_tests::subscriber::event_keys;
use hybridcache_tests::{HcInfo, RedisCluster, RedisServer, Subscriber, QUIET_PERIOD};
use redis::Value;
use std::time::Duration;

/// How long a handle may take to follow a topology change.
const RECOVERY: Duration = Duration::from_secs(15);

/// `n` keys named `<prefix><i>` whose slots `owner` holds.
fn keys_on(cluster: &RedisCluster, owner: &RedisServer, prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|key| cluster.node_for_key(key).port() == owner.port())
        .take(n)
        .collect()
}

/// The lowest slot each primary serves, by port, from `CLUSTER SLOTS`.
fn lowest_slots(node: &RedisServer) -> Vec<(u16, u16)> {
    let reply: Value = query(&mut node.connection(), redis::cmd("CLUSTER").arg("SLOTS"));
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS: {reply:?}");
    };
    let mut lowest: Vec<(u16, u16)> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(Value::Int(start)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(2))
        else {
            continue;
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let (port, start) = (*port as u16, *start as u16);
        match lowest.iter_mut().find(|(p, _)| *p == port) {
            Some((_, slot)) => *slot = (*slot).min(start),
            None => lowest.push((port, start)),
        }
    }
    lowest
}

/// The shard channel of `primary` now.
fn channel_of(cluster: &RedisCluster, primary: &RedisServer) -> String {
    let slot = lowest_slots(cluster.node(0))
        .into_iter()
        .find(|(port, _)| *port == primary.port())
        .map(|(_, slot)| slot)
        .unwrap_or_else(|| panic!("port {} serves no slot", primary.port()));
    String::from_utf8(shard_channel(DEFAULT_CHANNEL.as_bytes(), slot)).unwrap()
}

fn info_field(node: &RedisServer, section: &str, field: &str) -> i64 {
    let text: String = query(&mut node.connection(), redis::cmd("INFO").arg(section));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn cluster_stat(node: &RedisServer, field: &str) -> i64 {
    let text: String = query(&mut node.connection(), redis::cmd("CLUSTER").arg("INFO"));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_write_is_announced_on_its_shard_only() {
    let cluster = RedisCluster::start(3, 1);
    // Every node of every shard listens on its shard's channel; one node also listens on
    // the global channel.
    let mut shard_subscribers = Vec::new();
    for primary in cluster.primaries() {
        let channel = channel_of(&cluster, primary);
        let mut nodes = vec![primary];
        nodes.extend(cluster.replicas_of(primary));
        for node in nodes {
            shard_subscribers.push((
                primary.port(),
                node.port(),
                Subscriber::on_shard_channel(node, &channel),
            ));
        }
    }
    let global = Subscriber::new(cluster.node(0));
    let target = cluster.primaries()[1];
    let others: Vec<&RedisServer> = cluster
        .running_nodes()
        .into_iter()
        .filter(|n| n.port() != target.port())
        .collect();
    let bus_before: Vec<i64> = others
        .iter()
        .map(|n| cluster_stat(n, "cluster_stats_messages_received"))
        .collect();
    let publish_before = cluster_stat(target, "cluster_stats_messages_publish_sent");
    let shard_before = cluster_stat(target, "cluster_stats_messages_publishshard_sent");

    let key = keys_on(&cluster, target, "k", 1).remove(0);
    let mut con = target.connection();
    hc_set(&mut con, &key, "v", &["t"]);
    let origin = HcInfo::read(&mut con).origin;

    for (shard, port, sub) in &shard_subscribers {
        if *shard == target.port() {
            let event = sub.expect_event(&format!("the set, on port {port}"));
            assert_eq!((event.op, &event.origin), (Op::Set, &origin), "{event:?}");
            assert_eq!(event_keys(&event), std::slice::from_ref(&key));
        }
        sub.assert_no_event(QUIET_PERIOD);
    }
    global.assert_no_event(Duration::from_millis(50));
    // One shard message to the replica, no global publish over the bus.
    assert_eq!(
        cluster_stat(target, "cluster_stats_messages_publish_sent"),
        publish_before
    );
    assert_eq!(
        cluster_stat(target, "cluster_stats_messages_publishshard_sent") - shard_before,
        1,
        "one shard message, to the shard's replica"
    );
    let _ = bus_before;
}

#[test]
fn the_global_channel_when_sharded_events_are_off() {
    let cluster = RedisCluster::start(2, 0);
    for node in cluster.running_nodes() {
        let _: () = query(
            &mut node.connection(),
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("hybridcache.sharded-events")
                .arg("no"),
        );
    }
    let target = cluster.primaries()[0];
    let elsewhere = Subscriber::new(cluster.primaries()[1]);
    let key = keys_on(&cluster, target, "k", 1).remove(0);
    hc_set(&mut target.connection(), &key, "v", &[]);
    let event = elsewhere.expect_event("the set, on the other primary");
    assert_eq!(event_keys(&event), [key]);
    let hello: Vec<Value> = query(&mut target.connection(), &redis::cmd("HC.HELLO"));
    assert_eq!(hello.last(), Some(&Value::Int(0)), "{hello:?}");
    assert!(info_field(target, "hybridcache", "hybridcache_event_messages") >= 1);
}

/// A cluster handle reconnecting quickly.
async fn cluster_cache(cluster: &RedisCluster) -> HybridCache {
    build(
        HybridCache::cluster_builder(cluster.urls())
            .max_reconnect_backoff(Duration::from_millis(200))
            .health_check(Duration::from_millis(250), Duration::from_millis(500)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_a_reshard_of_a_shards_lowest_slot_without_dropping_l1() {
    let cluster = RedisCluster::start(2, 0);
    let (a, b) = (cluster.primaries()[0], cluster.primaries()[1]);
    let writer = cluster_cache(&cluster).await;
    let reader = cluster_cache(&cluster).await;
    let mut keys = keys_on(&cluster, a, "a:", 5);
    keys.extend(keys_on(&cluster, b, "b:", 5));
    for (i, key) in keys.iter().enumerate() {
        writer
            .set(key, i as u32, EntryOptions::new())
            .await
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(get_value::<u32>(&reader, key).await, Some(i as u32));
    }
    let before = reader.stats();

    // A's lowest slot (which names its channel) moves to B: the server unsubscribes A's
    // subscribers, the reader subscribes again on A's new channel and replays what it
    // missed meanwhile.
    let old_channel = channel_of(&cluster, a);
    let lowest = lowest_slots(a)
        .into_iter()
        .find(|(port, _)| *port == a.port())
        .map(|(_, slot)| slot)
        .unwrap();
    tokio::task::block_in_place(|| cluster.migrate_slot(lowest, a, b));
    assert_ne!(channel_of(&cluster, a), old_channel);
    for (i, key) in keys.iter().enumerate() {
        writer
            .set(key, 100 + i as u32, EntryOptions::new())
            .await
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let expected = 100 + i as u32;
        eventually(RECOVERY, "the reader to see every new value", async || {
            get_value::<u32>(&reader, key).await == Some(expected)
        })
        .await;
    }
    eventually(RECOVERY, "the reader to be subscribed", async || {
        reader.is_subscribed()
    })
    .await;
    let after = reader.stats();
    assert_eq!(
        after.l1_flushes, before.l1_flushes,
        "a reshard on a primary the reader follows replays, it does not reset: {after:?}"
    );
    assert!(
        after.catch_ups > before.catch_ups,
        "the reader subscribed again and replayed: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_receives_every_shards_events_and_serves_no_stale_value() {
    let cluster = RedisCluster::start(3, 0);
    let writer = cluster_cache(&cluster).await;
    let reader = cluster_cache(&cluster).await;
    let mut keys = Vec::new();
    for primary in cluster.primaries() {
        keys.extend(keys_on(&cluster, primary, "item:", 3));
    }
    for key in &keys {
        writer.set(key, 1u32, EntryOptions::new()).await.unwrap();
        assert_eq!(get_value::<u32>(&reader, key).await, Some(1));
    }
    let hits = reader.stats().l1_hits;
    for key in &keys {
        assert_eq!(get_value::<u32>(&reader, key).await, Some(1));
    }
    assert_eq!(reader.stats().l1_hits, hits + keys.len() as u64);
    for key in &keys {
        writer.set(key, 2u32, EntryOptions::new()).await.unwrap();
    }
    for key in &keys {
        eventually(RECOVERY, "the reader to drop the old value", async || {
            get_value::<u32>(&reader, key).await == Some(2)
        })
        .await;
    }
    for primary in cluster.primaries() {
        assert!(
            cluster_stat(primary, "cluster_stats_messages_publish_sent") == 0,
            "no global publish on port {}",
            primary.port()
        );
    }
}

#[test]
fn a_subscriber_on_a_replica_alone_hears_its_shard() {
    let cluster = RedisCluster::start(2, 1);
    let primary = cluster.primaries()[0];
    let replica = cluster.replicas_of(primary)[0];
    let sub = Subscriber::on_shard_channel(replica, &channel_of(&cluster, primary));
    let key = keys_on(&cluster, primary, "k", 1).remove(0);
    hc_set(&mut primary.connection(), &key, "v", &[]);
    let event = sub.expect_event("the set, on the replica, with nobody subscribed on the primary");
    assert_eq!((event.op, event.seq), (Op::Set, 1));
    assert_eq!(event_keys(&event), [key]);
}
