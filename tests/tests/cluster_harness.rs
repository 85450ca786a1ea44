//! The cluster harness itself. Apart from the check that every node loads the module,
//! these run plain Redis nodes, so that a failure here is a harness bug, not a module bug.

use hybridcache_protocol::MODULE_NAME;
use hybridcache_tests::hc::{error_text, query};
use hybridcache_tests::{RedisCluster, RedisServer};
use redis::{Connection, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn plain(primaries: usize, replicas: usize) -> RedisCluster {
    RedisCluster::builder()
        .primaries(primaries)
        .replicas(replicas)
        .without_module()
        .start()
}

fn cluster_info(node: &RedisServer) -> BTreeMap<String, String> {
    let text: String = query(&mut node.connection(), redis::cmd("CLUSTER").arg("INFO"));
    hybridcache_tests::info::parse_info(&text)
}

/// The connection to `port` in `connections`, made on first use.
fn connect(connections: &mut BTreeMap<u16, Connection>, port: u16) -> &mut Connection {
    connections.entry(port).or_insert_with(|| {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"))
    })
}

/// Sets `key` starting at `port`, following MOVED and ASK redirections like a cluster
/// client; returns the port that took the write and whether it took an ASK to get there.
fn set_following_redirects(
    connections: &mut BTreeMap<u16, Connection>,
    mut port: u16,
    key: &str,
    value: &str,
) -> (u16, bool) {
    for _ in 0..10 {
        let reply = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(connect(connections, port));
        let Err(e) = reply else { return (port, false) };
        let target = e
            .redirect_node()
            .and_then(|(addr, _)| addr.rsplit_once(':')?.1.parse::<u16>().ok());
        match (e.code(), target) {
            (Some("MOVED"), Some(target)) => port = target,
            (Some("ASK"), Some(target)) => {
                let _: ((), ()) = redis::pipe()
                    .cmd("ASKING")
                    .cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query(connect(connections, target))
                    .unwrap_or_else(|e| panic!("ASKING + SET {key} on {target}: {e}"));
                return (target, true);
            }
            _ => panic!("SET {key} on port {port}: {}", error_text(&e)),
        }
    }
    panic!("SET {key}: more than 10 redirections");
}

#[test]
fn a_cluster_of_three_primaries_and_three_replicas_covers_every_slot() {
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    eprintln!("3+3 cluster with the module up in {:?}", started.elapsed());

    assert_eq!(cluster.len(), 6);
    assert_eq!(cluster.urls().len(), 6);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    for primary in &primaries {
        assert_eq!(cluster.replicas_of(primary).len(), 1);
    }
    let mut ids: Vec<&str> = cluster
        .nodes()
        .iter()
        .map(|node| cluster.node_id(node))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    assert!(ids.iter().all(|id| id.len() == 40));
    for node in cluster.nodes() {
        let info = cluster_info(node);
        assert_eq!(info["cluster_state"], "ok", "port {}", node.port());
        assert_eq!(info["cluster_slots_assigned"], "16384");
        assert_eq!(info["cluster_slots_ok"], "16384");
        assert_eq!(info["cluster_known_nodes"], "6");
        assert_eq!(info["cluster_size"], "3");
        let modules: Value = query(&mut node.connection(), redis::cmd("MODULE").arg("LIST"));
        assert!(
            format!("{modules:?}").contains(MODULE_NAME),
            "port {} has not loaded the module: {modules:?}",
            node.port()
        );
    }
}

#[test]
fn keys_route_to_node_for_key_and_other_nodes_answer_moved() {
    let cluster = plain(3, 0);
    let mut slots = Vec::new();
    for i in 0..30 {
        let key = format!("key:{i}");
        let slot = RedisCluster::slot_of(&key);
        let keyslot: u16 = query(
            &mut cluster.node(0).connection(),
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key),
        );
        assert_eq!(slot, keyslot, "slot of {key}");
        slots.push(slot);

        let owner = cluster.node_for_key(&key);
        let _: () = query(&mut owner.connection(), redis::cmd("SET").arg(&key).arg(i));
        for other in cluster.nodes().iter().filter(|n| n.port() != owner.port()) {
            let error = redis::cmd("GET")
                .arg(&key)
                .query::<Option<String>>(&mut other.connection())
                .expect_err("a node that does not own the slot answers MOVED");
            assert_eq!(
                error_text(&error),
                format!("MOVED {slot} 127.0.0.1:{}", owner.port())
            );
        }
    }
    slots.sort_unstable();
    slots.dedup();
    assert!(slots.len() > 3, "the keys spread over several slots");
}

#[test]
fn migrate_slot_moves_a_slot_and_its_keys_while_a_writer_keeps_writing() {
    let cluster = plain(2, 1);
    let slot = RedisCluster::slot_of("{moving}");
    let from = cluster.node_for_key("{moving}");
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| p.port() != from.port())
        .expect("a second primary");
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET")
            .arg(format!("{{moving}}:{i}"))
            .arg(i)
            .ignore();
    }
    let _: () = pipe
        .query(&mut from.connection())
        .expect("SET of the keys to move");

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (written, asked) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut connections = BTreeMap::new();
            let (mut written, mut asked, mut port) = (0, 0, from.port());
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{{moving}}:w{written}");
                let (took, ask) = set_following_redirects(&mut connections, port, &key, "w");
                if ask {
                    asked += 1;
                } else {
                    port = took;
                }
                written += 1;
            }
            (written, asked)
        });
        cluster.migrate_slot(slot, from, to);
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer thread")
    });
    eprintln!(
        "slot {slot} migrated in {:?}; the writer wrote {written} keys meanwhile, {asked} after ASK",
        started.elapsed()
    );

    assert_eq!(cluster.node_for_key("{moving}").port(), to.port());
    let count = |node: &RedisServer| -> i64 {
        query(
            &mut node.connection(),
            redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot),
        )
    };
    assert_eq!(count(from), 0);
    assert_eq!(count(to), 1000 + written);
    let mut con = to.connection();
    for i in (0..1000).step_by(97) {
        let value: String = query(&mut con, redis::cmd("GET").arg(format!("{{moving}}:{i}")));
        assert_eq!(value, i.to_string());
    }
    let error = redis::cmd("GET")
        .arg("{moving}:1")
        .query::<Option<String>>(&mut from.connection())
        .expect_err("the former owner redirects");
    assert_eq!(
        error_text(&error),
        format!("MOVED {slot} 127.0.0.1:{}", to.port())
    );
}

#[test]
fn killing_a_primary_promotes_its_replica_and_the_old_primary_rejoins_as_replica() {
    let mut cluster = plain(3, 1);
    let owner = cluster.node_for_key("k");
    let index = cluster.index_of(owner);
    let replica_port = cluster.replicas_of(owner)[0].port();
    let mut con = owner.connection();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("v"));
    let acked: i64 = query(&mut con, redis::cmd("WAIT").arg(1).arg(5000));
    assert_eq!(acked, 1, "the replica acknowledged the write");

    let started = Instant::now();
    let promoted = cluster.kill_primary_and_wait_failover(index).port();
    eprintln!("failover took {:?}", started.elapsed());
    assert_eq!(promoted, replica_port);
    assert_eq!(cluster.node_for_key("k").port(), promoted);
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.replicas().len(), 2);
    let value: String = query(
        &mut cluster.node_for_key("k").connection(),
        redis::cmd("GET").arg("k"),
    );
    assert_eq!(value, "v");

    let started = Instant::now();
    cluster.node_mut(index).start_again();
    cluster.wait_until_consistent();
    eprintln!("the old primary rejoined in {:?}", started.elapsed());
    let promoted_node = cluster.node_for_key("k");
    let replicas: Vec<u16> = cluster
        .replicas_of(promoted_node)
        .iter()
        .map(|r| r.port())
        .collect();
    assert_eq!(replicas, [cluster.node(index).port()]);
}
