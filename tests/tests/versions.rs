//! HC.FETCH and HC.SET GETVERSION: one-round-trip reads for client caches, and versions that
//! are comparable with event sequence numbers.

use hybridcache_protocol::command;
use hybridcache_tests::hc::{call, hc_set, hc_set_with, query};
use hybridcache_tests::{RedisServer, Subscriber};

/// (value, tags, pttl, origin, version) of HC.FETCH, or None for nil.
type Fetched = Option<(Vec<u8>, Vec<String>, i64, String, u64)>;

fn fetch(con: &mut redis::Connection, key: &str) -> Fetched {
    query(con, redis::cmd(command::FETCH).arg(key))
}

fn set_getversion(
    con: &mut redis::Connection,
    key: &str,
    value: &str,
    extra: &[&str],
) -> (String, u64) {
    query(
        con,
        redis::cmd(command::SET)
            .arg(key)
            .arg(value)
            .arg("GETVERSION")
            .arg(extra),
    )
}

#[test]
fn fetch_returns_value_sorted_tags_ttl_origin_and_version() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    hc_set_with(&mut con, "k", "v", &["PX", "60000"], &["b", "a"]);
    let event = sub.expect_event("set k");
    let (value, tags, pttl, origin, version) = fetch(&mut con, "k").expect("k exists");
    assert_eq!(value, b"v");
    assert_eq!(tags, ["a", "b"]);
    assert!((1..=60_000).contains(&pttl), "pttl {pttl}");
    assert_eq!(origin, event.origin);
    assert_eq!(
        version, event.seq,
        "the version is the seq of the set event"
    );
}

#[test]
fn fetch_of_missing_key_is_nil_without_ttl_is_minus_one_and_other_type_is_wrongtype() {
    let server = RedisServer::new();
    let mut con = server.connection();
    assert_eq!(fetch(&mut con, "nope"), None);
    hc_set(&mut con, "k", "v", &[]);
    assert_eq!(fetch(&mut con, "k").map(|f| (f.1, f.2)), Some((vec![], -1)));
    let _: () = query(&mut con, redis::cmd("SET").arg("s").arg("x"));
    let err = call(&mut con, &[command::FETCH, "s"]).unwrap_err();
    assert!(err.starts_with("WRONGTYPE"), "{err}");
    let err = call(&mut con, &[command::FETCH]).unwrap_err();
    assert!(err.starts_with("ERR wrong number"), "{err}");
}

#[test]
fn getversion_replies_the_version_that_fetch_and_the_event_report() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    let (origin, version) = set_getversion(&mut con, "k", "v1", &["TAGS", "t"]);
    let event = sub.expect_event("set k");
    assert_eq!(
        (origin.as_str(), version),
        (event.origin.as_str(), event.seq)
    );
    let (origin2, version2) = set_getversion(&mut con, "k", "v2", &[]);
    assert_eq!(origin2, origin);
    assert!(version2 > version, "{version2} > {version}");
    assert_eq!(fetch(&mut con, "k").map(|f| f.4), Some(version2));
}

#[test]
fn getversion_with_nx_that_prevents_the_write_is_nil() {
    let server = RedisServer::new();
    let mut con = server.connection();
    hc_set(&mut con, "k", "v", &[]);
    let reply: redis::Value = query(
        &mut con,
        redis::cmd(command::SET)
            .arg("k")
            .arg("x")
            .arg("NX")
            .arg("GETVERSION"),
    );
    assert_eq!(reply, redis::Value::Nil);
}

#[test]
fn versions_survive_a_reload_and_later_writes_get_greater_versions() {
    let server = RedisServer::new();
    let mut con = server.connection();
    for i in 0..5 {
        hc_set(&mut con, format!("k{i}"), "v", &[]);
    }
    let (_, before) = set_getversion(&mut con, "k", "v", &[]);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    assert_eq!(fetch(&mut con, "k").map(|f| f.4), Some(before));
    let (_, after) = set_getversion(&mut con, "other", "v", &[]);
    assert!(after > before, "{after} > {before}");
}

#[test]
fn versions_after_a_restart_are_greater_than_every_loaded_version() {
    let mut server = RedisServer::new();
    let mut con = server.connection();
    let (origin, before) = set_getversion(&mut con, "k", "v", &[]);
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    server.restart();
    let mut con = server.connection();
    let fetched = fetch(&mut con, "k").expect("k was saved");
    assert_eq!(fetched.4, before);
    assert_ne!(fetched.3, origin, "a restarted server has a new origin");
    let (_, after) = set_getversion(&mut con, "k2", "v", &[]);
    assert!(after > before, "{after} > {before}");
}
