//! A replica holds the same entries, TTLs and index as its primary, publishes events for
//! replicated writes, and carries on after promotion.

use hybridcache_protocol::{command, Op};
use hybridcache_tests::hc::{
    all_keys, call, hc_del, hc_deltag, hc_get_str, hc_set, hc_set_with, query, select, tagcard,
    tagkeys, tags, wait_removals_done,
};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::subscriber::event_keys;
use hybridcache_tests::{HcInfo, RedisServer, Subscriber, QUIET_PERIOD};
use std::time::Duration;

fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::new();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    (primary, replica)
}

fn write_dataset(con: &mut redis::Connection) {
    hc_set(con, "user:1", "alice", &["team:7", "users"]);
    hc_set(con, "user:2", "bob", &["team:8", "users"]);
    hc_set_with(con, "session", "s", &["PX", "600000"], &["sessions"]);
    hc_set(con, "untagged", "v", &[]);
    select(con, 1);
    hc_set(con, "user:1", "db1", &["team:7"]);
    select(con, 0);
}

/// The index of `con`'s server for `tags` in `dbs`, for comparison across servers.
fn index_snapshot(
    con: &mut redis::Connection,
    tag_names: &[&str],
) -> Vec<(u32, String, Vec<String>)> {
    let mut out = Vec::new();
    for db in [0, 1] {
        select(con, db);
        for tag in tag_names {
            out.push((db, tag.to_string(), tagkeys(con, *tag)));
        }
    }
    select(con, 0);
    out
}

const TAGS: [&str; 5] = ["team:7", "team:8", "users", "sessions", "none"];

#[test]
fn replica_synced_after_writes_has_the_same_entries_tags_ttls_and_index() {
    let primary = RedisServer::new();
    let mut pcon = primary.connection();
    write_dataset(&mut pcon);
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    assert_eq!(hc_get_str(&mut rcon, "user:1").as_deref(), Some("alice"));
    assert_eq!(tags(&mut rcon, "user:2"), ["team:8", "users"]);
    assert_eq!(all_keys(&mut rcon), all_keys(&mut pcon));
    assert_eq!(
        index_snapshot(&mut rcon, &TAGS),
        index_snapshot(&mut pcon, &TAGS)
    );
    let ttl: i64 = query(&mut rcon, redis::cmd("PTTL").arg("session"));
    assert!(ttl > 0 && ttl <= 600_000, "replica PTTL {ttl}");
    let p_at: i64 = query(&mut pcon, redis::cmd("PEXPIRETIME").arg("session"));
    let r_at: i64 = query(&mut rcon, redis::cmd("PEXPIRETIME").arg("session"));
    assert_eq!(r_at, p_at);
    assert_eq!(
        HcInfo::read(&mut rcon).counts(),
        HcInfo::read(&mut pcon).counts()
    );
}

#[test]
fn writes_after_sync_reach_the_replica_with_the_same_index() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    write_dataset(&mut pcon);
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    assert_eq!(all_keys(&mut rcon), all_keys(&mut pcon));
    assert_eq!(
        index_snapshot(&mut rcon, &TAGS),
        index_snapshot(&mut pcon, &TAGS)
    );
    let p_at: i64 = query(&mut pcon, redis::cmd("PEXPIRETIME").arg("session"));
    let r_at: i64 = query(&mut rcon, redis::cmd("PEXPIRETIME").arg("session"));
    assert_eq!(r_at, p_at);
    assert_eq!(
        HcInfo::read(&mut rcon).counts(),
        HcInfo::read(&mut pcon).counts()
    );
}

#[test]
fn tag_overwrite_on_the_primary_is_reflected_on_the_replica() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    hc_set(&mut pcon, "k", "v1", &["a", "b"]);
    hc_set(&mut pcon, "k", "v2", &["b", "c"]);
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    assert_eq!(hc_get_str(&mut rcon, "k").as_deref(), Some("v2"));
    assert_eq!(tags(&mut rcon, "k"), ["b", "c"]);
    assert_eq!(tagcard(&mut rcon, "a"), 0);
}

#[test]
fn deltag_on_the_primary_removes_the_keys_on_the_replica() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    write_dataset(&mut pcon);
    assert_eq!(hc_deltag(&mut pcon, &["users"]), 2);
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    // Logically gone on the replica as soon as it applied HC.DELTAG...
    assert_eq!(hc_get_str(&mut rcon, "user:1"), None);
    assert_eq!(tagcard(&mut rcon, "users"), 0);
    // ...and physically once the primary's removals (replicated as DEL) reached it.
    wait_removals_done(&mut pcon);
    replica.wait_in_sync_with(&primary);
    wait_removals_done(&mut rcon);
    assert_eq!(all_keys(&mut rcon), ["session", "untagged"]);
    assert_eq!(tagcard(&mut rcon, "team:7"), 0);
    assert_eq!(tagcard(&mut rcon, "users"), 0);
    select(&mut rcon, 1);
    assert_eq!(tagkeys(&mut rcon, "team:7"), ["user:1"]);
    assert_eq!(
        HcInfo::read(&mut rcon).counts(),
        HcInfo::read(&mut pcon).counts()
    );
}

#[test]
fn hc_del_and_plain_del_on_the_primary_update_the_replica_index() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    write_dataset(&mut pcon);
    assert_eq!(hc_del(&mut pcon, &["user:1"]), 1);
    let _: i64 = query(&mut pcon, redis::cmd("DEL").arg("user:2"));
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    assert_eq!(tagkeys(&mut rcon, "users"), Vec::<String>::new());
    assert_eq!(
        index_snapshot(&mut rcon, &TAGS),
        index_snapshot(&mut pcon, &TAGS)
    );
}

#[test]
fn expiry_on_the_primary_removes_the_key_from_the_replica_index() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    hc_set_with(&mut pcon, "k", "v", &["PX", "50"], &["t"]);
    hc_set(&mut pcon, "stays", "v", &["t"]);
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    // A replica never expires keys itself; it waits for the primary's DEL.
    hybridcache_tests::wait_until(Duration::from_secs(5), "the primary to expire k", || {
        tagcard(&mut pcon, "t") == 1
    });
    replica.wait_in_sync_with(&primary);
    assert_eq!(tagkeys(&mut rcon, "t"), ["stays"]);
    assert_eq!(HcInfo::read(&mut rcon).counts(), (1, 1, 1));
}

#[test]
fn hc_set_on_a_read_only_replica_is_refused() {
    let (_primary, replica) = primary_and_replica();
    let mut rcon = replica.connection();
    let err = call(&mut rcon, &[command::SET, "k", "v"]).unwrap_err();
    assert!(err.starts_with("READONLY"), "{err}");
    let err = call(&mut rcon, &[command::DELTAG, "t"]).unwrap_err();
    assert!(err.starts_with("READONLY"), "{err}");
    let err = call(&mut rcon, &[command::DEL, "k"]).unwrap_err();
    assert!(err.starts_with("READONLY"), "{err}");
    // Reads are fine.
    assert_eq!(call(&mut rcon, &[command::GET, "k"]), Ok(redis::Value::Nil));
    assert_eq!(
        call(&mut rcon, &[command::TAGCARD, "t"]),
        Ok(redis::Value::Int(0))
    );
}

#[test]
fn subscriber_on_the_replica_receives_events_for_replicated_writes() {
    let (primary, replica) = primary_and_replica();
    let sub = Subscriber::new(&replica);
    let mut pcon = primary.connection();
    hc_set(&mut pcon, "k", "v", &["t"]);
    let event = sub.expect_event("set k replicated");
    assert_eq!(event.op, Op::Set, "{event:?}");
    assert_eq!(event.db, Some(0));
    assert_eq!(event_keys(&event), ["k"]);
    sub.assert_no_event(QUIET_PERIOD);
    assert_eq!(hc_deltag(&mut pcon, &["t"]), 1);
    let event = sub.expect_event("deltag t replicated");
    assert_eq!(event.op, Op::Deltag, "{event:?}");
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn promoted_replica_keeps_its_index_and_serves_deltag() {
    let (primary, replica) = primary_and_replica();
    let mut pcon = primary.connection();
    write_dataset(&mut pcon);
    replica.wait_in_sync_with(&primary);
    let before = index_snapshot(&mut pcon, &TAGS);
    drop(primary);
    let mut rcon = replica.connection();
    let _: () = query(&mut rcon, redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    assert_check_clean(&mut rcon);
    assert_eq!(index_snapshot(&mut rcon, &TAGS), before);
    assert_eq!(hc_deltag(&mut rcon, &["users"]), 2);
    assert_eq!(tagcard(&mut rcon, "users"), 0);
    wait_removals_done(&mut rcon);
    assert_eq!(all_keys(&mut rcon), ["session", "untagged"]);
    hc_set(&mut rcon, "new", "v", &["team:7"]);
    assert_eq!(tagkeys(&mut rcon, "team:7"), ["new"]);
    let ttl: i64 = query(&mut rcon, redis::cmd("PTTL").arg("session"));
    assert!(ttl > 0, "PTTL {ttl}");
    select(&mut rcon, 1);
    assert_eq!(tagkeys(&mut rcon, "team:7"), ["user:1"]);
}

#[test]
fn promoted_replica_publishes_its_own_events() {
    let (primary, replica) = primary_and_replica();
    hc_set(&mut primary.connection(), "k", "v", &["t"]);
    replica.wait_in_sync_with(&primary);
    drop(primary);
    let mut rcon = replica.connection();
    let _: () = query(&mut rcon, redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    assert_check_clean(&mut rcon);
    let sub = Subscriber::new(&replica);
    assert_eq!(hc_deltag(&mut rcon, &["t"]), 1);
    let event = sub.expect_event("deltag t on the promoted replica");
    assert_eq!(event.op, Op::Deltag);
    assert_eq!(event.origin, HcInfo::read(&mut rcon).origin);
}

#[test]
fn promotion_announces_a_flush_to_the_replicas_subscribers() {
    let (primary, replica) = primary_and_replica();
    let sub = Subscriber::new(&replica);
    hc_set(&mut primary.connection(), "k", "v", &["t"]);
    let _ = sub.expect_event("set k replicated");
    drop(primary);
    let mut rcon = replica.connection();
    let _: () = query(&mut rcon, redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    assert_check_clean(&mut rcon);
    let event = sub.expect_event("promoted");
    assert_eq!(event.op, Op::Promoted, "{event:?}");
    assert_eq!(event.change, hybridcache_protocol::Change::Flush);
    assert_eq!(event.db, None);
    assert_eq!(event.origin, HcInfo::read(&mut rcon).origin);
    sub.assert_no_event(QUIET_PERIOD);
    // The data stays: the flush tells readers to re-read, it removes nothing.
    assert_eq!(hc_get_str(&mut rcon, "k").as_deref(), Some("v"));
}
