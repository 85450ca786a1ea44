//! Redis's own key commands on module keys behave as on any key (values, tags and TTLs
//! follow the key). Index bookkeeping is pinned in `index_keyspace.rs`.

use hybridcache_tests::hc::{
    call, exists, hc_get_str, hc_set, hc_set_with, key_type, pttl, query, select, tags,
};
use hybridcache_tests::RedisServer;
use redis::Value;

fn server() -> (RedisServer, redis::Connection) {
    let server = RedisServer::new();
    let con = server.connection();
    (server, con)
}

#[test]
fn expire_ttl_and_persist_work_on_module_keys() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &[]);
    assert_eq!(pttl(&mut con, "k"), -1);
    let set: i64 = query(&mut con, redis::cmd("EXPIRE").arg("k").arg(100));
    assert_eq!(set, 1);
    let ttl: i64 = query(&mut con, redis::cmd("TTL").arg("k"));
    assert!(ttl == 99 || ttl == 100, "TTL {ttl}");
    let persisted: i64 = query(&mut con, redis::cmd("PERSIST").arg("k"));
    assert_eq!(persisted, 1);
    assert_eq!(pttl(&mut con, "k"), -1);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v"));
}

#[test]
fn pttl_of_a_px_entry_counts_down() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v", &["PX", "10000"], &[]);
    let first = pttl(&mut con, "k");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = pttl(&mut con, "k");
    assert!(
        first <= 10_000 && second < first,
        "PTTL {first} then {second}"
    );
}

#[test]
fn del_and_unlink_remove_module_keys() {
    let (_server, mut con) = server();
    hc_set(&mut con, "a", "v", &["t"]);
    hc_set(&mut con, "b", "v", &["t"]);
    assert_eq!(call(&mut con, &["DEL", "a"]), Ok(Value::Int(1)));
    assert_eq!(call(&mut con, &["UNLINK", "b"]), Ok(Value::Int(1)));
    assert!(!exists(&mut con, "a"));
    assert!(!exists(&mut con, "b"));
}

#[test]
fn rename_keeps_value_tags_and_ttl() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "old", "v", &["EX", "100"], &["a", "b"]);
    let _: () = query(&mut con, redis::cmd("RENAME").arg("old").arg("new"));
    assert!(!exists(&mut con, "old"));
    assert_eq!(hc_get_str(&mut con, "new").as_deref(), Some("v"));
    assert_eq!(tags(&mut con, "new"), ["a", "b"]);
    let ttl = pttl(&mut con, "new");
    assert!(ttl > 0 && ttl <= 100_000, "PTTL {ttl}");
}

#[test]
fn move_carries_value_and_tags_to_the_other_db() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(call(&mut con, &["MOVE", "k", "1"]), Ok(Value::Int(1)));
    assert!(!exists(&mut con, "k"));
    select(&mut con, 1);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v"));
    assert_eq!(tags(&mut con, "k"), ["a"]);
}

#[test]
fn copy_duplicates_value_tags_and_ttl() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "src", "v", &["EX", "100"], &["a"]);
    assert_eq!(call(&mut con, &["COPY", "src", "dst"]), Ok(Value::Int(1)));
    assert_eq!(hc_get_str(&mut con, "src").as_deref(), Some("v"));
    assert_eq!(hc_get_str(&mut con, "dst").as_deref(), Some("v"));
    assert_eq!(tags(&mut con, "dst"), ["a"]);
    let ttl = pttl(&mut con, "dst");
    assert!(ttl > 0 && ttl <= 100_000, "PTTL {ttl}");
}

#[test]
fn copy_is_independent_of_its_source() {
    let (_server, mut con) = server();
    hc_set(&mut con, "src", "v1", &["a"]);
    assert_eq!(call(&mut con, &["COPY", "src", "dst"]), Ok(Value::Int(1)));
    hc_set(&mut con, "src", "v2", &["b"]);
    assert_eq!(hc_get_str(&mut con, "dst").as_deref(), Some("v1"));
    assert_eq!(tags(&mut con, "dst"), ["a"]);
}

#[test]
fn copy_to_another_db_carries_value_and_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(
        call(&mut con, &["COPY", "k", "k", "DB", "1"]),
        Ok(Value::Int(1))
    );
    select(&mut con, 1);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v"));
    assert_eq!(tags(&mut con, "k"), ["a"]);
}

#[test]
fn copy_onto_an_existing_key_needs_replace() {
    let (_server, mut con) = server();
    hc_set(&mut con, "src", "v1", &["a"]);
    hc_set(&mut con, "dst", "v2", &["b"]);
    assert_eq!(call(&mut con, &["COPY", "src", "dst"]), Ok(Value::Int(0)));
    assert_eq!(hc_get_str(&mut con, "dst").as_deref(), Some("v2"));
    assert_eq!(
        call(&mut con, &["COPY", "src", "dst", "REPLACE"]),
        Ok(Value::Int(1))
    );
    assert_eq!(hc_get_str(&mut con, "dst").as_deref(), Some("v1"));
    assert_eq!(tags(&mut con, "dst"), ["a"]);
}

#[test]
fn dump_and_restore_round_trip_value_and_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", b"\x00\xffbinary".as_slice(), &["a", "b"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    let _: () = query(&mut con, redis::cmd("DEL").arg("k"));
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE").arg("k").arg(0).arg(dump.as_slice()),
    );
    assert_eq!(
        query::<Option<Vec<u8>>>(
            &mut con,
            redis::cmd(hybridcache_protocol::command::GET).arg("k")
        ),
        Some(b"\x00\xffbinary".to_vec())
    );
    assert_eq!(tags(&mut con, "k"), ["a", "b"]);
    assert_eq!(pttl(&mut con, "k"), -1);
}

#[test]
fn restore_with_ttl_sets_the_ttl() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE")
            .arg("k2")
            .arg(50_000)
            .arg(dump.as_slice()),
    );
    let ttl = pttl(&mut con, "k2");
    assert!(ttl > 0 && ttl <= 50_000, "PTTL {ttl}");
    assert_eq!(tags(&mut con, "k2"), ["a"]);
}

#[test]
fn restore_onto_an_existing_key_needs_replace() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v1", &["a"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    hc_set(&mut con, "k", "v2", &["b"]);
    let err = call(&mut con, &[&b"RESTORE"[..], b"k", b"0", dump.as_slice()]).unwrap_err();
    assert!(err.starts_with("BUSYKEY"), "{err}");
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v2"));
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE")
            .arg("k")
            .arg(0)
            .arg(dump.as_slice())
            .arg("REPLACE"),
    );
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v1"));
    assert_eq!(tags(&mut con, "k"), ["a"]);
}

#[test]
fn memory_usage_counts_the_value() {
    let (_server, mut con) = server();
    hc_set(&mut con, "small", "v", &[]);
    hc_set(&mut con, "big", vec![b'x'; 100_000].as_slice(), &["a"]);
    let small: i64 = query(&mut con, redis::cmd("MEMORY").arg("USAGE").arg("small"));
    let big: i64 = query(&mut con, redis::cmd("MEMORY").arg("USAGE").arg("big"));
    assert!(small > 0, "MEMORY USAGE small = {small}");
    assert!(big >= 100_000, "MEMORY USAGE big = {big}");
    assert!(big > small, "big {big} <= small {small}");
}

#[test]
fn type_exists_and_scan_type_see_module_keys() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &[]);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("x"));
    let kind = key_type(&mut con, "k");
    let (_cursor, keys): (u64, Vec<String>) = query(
        &mut con,
        redis::cmd("SCAN")
            .arg(0)
            .arg("COUNT")
            .arg(100)
            .arg("TYPE")
            .arg(&kind),
    );
    assert_eq!(keys, ["k"]);
    assert_eq!(
        call(&mut con, &["EXISTS", "k", "plain", "none"]),
        Ok(Value::Int(2))
    );
}
