//! Fill leases on a 3+3 Redis Cluster: positions belong to the primary that issued them. A
//! token presented to another primary, or to the replica that took over after a failover,
//! is refused, even where the same position would be accepted with that node's own origin.

use hybridcache_tests::hc::{fetch_lease, hc_get_str, hc_set, query, set_lease};
use hybridcache_tests::{key_slot, HcInfo, RedisCluster, RedisServer};
use redis::Connection;

/// A hash tag `{...}` whose slot `node` owns, so that keys carrying it live there.
fn hash_tag_on(cluster: &RedisCluster, node: &RedisServer) -> String {
    (0..10_000)
        .map(|i| format!("{{n{i}}}"))
        .find(|tag| cluster.slot_owner(key_slot(tag)).port() == node.port())
        .unwrap_or_else(|| panic!("no hash tag maps to the node on port {}", node.port()))
}

/// `(fills_refused, fills_refused_untracked)`.
fn refusals(con: &mut Connection) -> (i64, i64) {
    let info = HcInfo::read(con);
    (
        info.int("fills_refused"),
        info.int("fills_refused_untracked"),
    )
}

/// Leases on new keys carrying `tag` until the node's position passes `past`; the last
/// position.
fn pad_past(con: &mut Connection, tag: &str, past: u64) -> u64 {
    for i in 0.. {
        let reached = position(&fetch_lease(con, format!("{tag}:pad:{i}")));
        if reached > past {
            return reached;
        }
    }
    unreachable!()
}

/// The position part of a token (`origin:position`).
fn position(token: &str) -> u64 {
    token
        .rsplit_once(':')
        .and_then(|(_, position)| position.parse().ok())
        .unwrap_or_else(|| panic!("token {token:?} is not origin:position"))
}

#[test]
fn a_token_issued_by_one_primary_is_refused_by_another() {
    let cluster = RedisCluster::start(3, 1);
    let primaries = cluster.primaries();
    let (a, b) = (primaries[0], primaries[1]);
    let (tag_a, tag_b) = (hash_tag_on(&cluster, a), hash_tag_on(&cluster, b));
    let (key_a, key_b) = (format!("{tag_a}:k"), format!("{tag_b}:k"));
    let mut acon = a.connection();
    let mut bcon = b.connection();
    let origin_a = HcInfo::read(&mut acon).origin;
    let origin_b = HcInfo::read(&mut bcon).origin;
    assert_ne!(origin_a, origin_b, "each primary has its own origin");

    // B leases key_b at a position below A's token, then issues positions past it.
    let token_b = fetch_lease(&mut bcon, &key_b);
    pad_past(&mut acon, &tag_a, position(&token_b));
    let token_a = fetch_lease(&mut acon, &key_a);
    pad_past(&mut bcon, &tag_b, position(&token_a));
    assert!(token_a.starts_with(&format!("{origin_a}:")), "{token_a}");

    // A's token on B's key: refused, although B has a lease on it older than the position.
    assert!(!set_lease(
        &mut bcon,
        &key_b,
        "from a",
        &token_a,
        &[],
        &["t"]
    ));
    assert_eq!(refusals(&mut bcon), (1, 1));
    assert_eq!(hc_get_str(&mut bcon, &key_b), None);
    let rebranded = format!("{origin_b}:{}", position(&token_a));
    assert!(
        set_lease(&mut bcon, &key_b, "b", &rebranded, &[], &["t"]),
        "the same position with B's origin"
    );
    // Each token is good where it was issued (B's was used up by the fill above).
    assert!(!set_lease(&mut bcon, &key_b, "again", &token_b, &[], &[]));
    assert!(set_lease(&mut acon, &key_a, "a", &token_a, &[], &["t"]));
    assert_eq!(hc_get_str(&mut acon, &key_a).as_deref(), Some("a"));

    // The accepted fill reached B's replica as a plain write.
    let replicas = cluster.replicas_of(b);
    let replica = replicas.first().expect("B has a replica");
    let acked: i64 = query(&mut bcon, redis::cmd("WAIT").arg(1).arg(10_000));
    assert_eq!(acked, 1);
    let mut rcon = replica.connection();
    let _: () = query(&mut rcon, &redis::cmd("READONLY"));
    assert_eq!(hc_get_str(&mut rcon, &key_b).as_deref(), Some("b"));
}

#[test]
fn after_a_failover_tokens_of_the_dead_primary_and_of_the_replica_before_are_refused() {
    let mut cluster = RedisCluster::start(3, 1);
    let primary = cluster.primaries()[0];
    let index = cluster.index_of(primary);
    let tag = hash_tag_on(&cluster, primary);
    let key = format!("{tag}:k");
    let mut pcon = primary.connection();
    hc_set(&mut pcon, &key, "v", &["t"]);
    let acked: i64 = query(&mut pcon, redis::cmd("WAIT").arg(1).arg(10_000));
    assert_eq!(acked, 1);
    let replica_port = cluster.replicas_of(primary)[0].port();
    let mut rcon = cluster.replicas_of(primary)[0].connection();
    let _: () = query(&mut rcon, &redis::cmd("READONLY"));
    let from_replica = fetch_lease(&mut rcon, &key);
    pad_past(&mut pcon, &tag, 100);
    let from_primary = fetch_lease(&mut pcon, &key);
    drop(pcon);
    drop(rcon);

    let promoted = cluster.kill_primary_and_wait_failover(index);
    assert_eq!(promoted.port(), replica_port);
    let mut con = promoted.connection();
    let origin = HcInfo::read(&mut con).origin;
    assert_eq!(hc_get_str(&mut con, &key).as_deref(), Some("v"));
    assert!(
        !set_lease(&mut con, &key, "stale", &from_replica, &[], &[]),
        "a token the replica issued before its promotion"
    );
    // A lease on the key older than the dead primary's position, and positions past it:
    // only the origin refuses that token.
    let since = position(&fetch_lease(&mut con, &key));
    assert!(
        since < position(&from_primary),
        "the promoted node is already past {from_primary}"
    );
    pad_past(&mut con, &tag, position(&from_primary));
    assert!(
        !set_lease(&mut con, &key, "stale", &from_primary, &[], &[]),
        "a token of the dead primary"
    );
    assert_eq!(refusals(&mut con), (2, 2));
    assert_eq!(hc_get_str(&mut con, &key).as_deref(), Some("v"));
    let rebranded = format!("{origin}:{}", position(&from_primary));
    assert!(set_lease(&mut con, &key, "fresh", &rebranded, &[], &[]));
    assert_eq!(hc_get_str(&mut con, &key).as_deref(), Some("fresh"));
}
