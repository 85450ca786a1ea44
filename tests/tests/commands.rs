//! The module's commands: replies and effects on values, tags and TTLs.

use hybridcache_protocol::{command, MODULE_NAME};
use hybridcache_tests::hc::{
    call, dbsize, exists, hc_del, hc_deltag, hc_get, hc_get_str, hc_set, hc_set_with, key_type,
    pttl, query, server_time_ms, tagcard, tagkeys, tags, wait_removals_done,
};
use hybridcache_tests::{HcInfo, RedisServer};
use redis::Value;

fn server() -> (RedisServer, redis::Connection) {
    let server = RedisServer::new();
    let con = server.connection();
    (server, con)
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn module_list_shows_hybridcache() {
    let (_server, mut con) = server();
    let modules: Value = query(&mut con, redis::cmd("MODULE").arg("LIST"));
    let Value::Array(modules) = modules else {
        panic!("MODULE LIST answered {modules:?}")
    };
    let names: Vec<String> = modules
        .iter()
        .map(|m| {
            let fields: Vec<Value> = match m {
                Value::Array(fields) => fields.clone(),
                Value::Map(pairs) => pairs
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect(),
                other => panic!("MODULE LIST entry {other:?}"),
            };
            let at = fields
                .iter()
                .position(|f| *f == bulk("name"))
                .unwrap_or_else(|| panic!("MODULE LIST entry without name: {fields:?}"));
            redis::from_redis_value::<String>(fields[at + 1].clone()).unwrap()
        })
        .collect();
    // Valkey 9 lists its Lua engine, a built-in module, too.
    let ours: Vec<&String> = names.iter().filter(|n| n.as_str() != "lua").collect();
    assert_eq!(ours, [MODULE_NAME]);
    let listed = format!("{modules:?}");
    assert!(listed.contains("int(100)"), "ver 100 = 0.1.0: {listed}");
    let info = HcInfo::read(&mut con);
    assert_eq!(
        info.fields.get("version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        info.fields.get("role").map(String::as_str),
        Some("publishing")
    );
}

#[test]
fn every_protocol_command_is_registered() {
    let (_server, mut con) = server();
    for name in command::ALL {
        let info: Value = query(&mut con, redis::cmd("COMMAND").arg("INFO").arg(name));
        match info {
            Value::Array(entries) => assert_ne!(entries, [Value::Nil], "{name} is not registered"),
            other => panic!("COMMAND INFO {name} answered {other:?}"),
        }
    }
}

#[test]
fn set_answers_ok_and_get_returns_the_value() {
    let (_server, mut con) = server();
    assert_eq!(call(&mut con, &[command::SET, "k", "v"]), Ok(Value::Okay));
    assert_eq!(call(&mut con, &[command::GET, "k"]), Ok(bulk("v")));
}

#[test]
fn get_of_a_missing_key_is_nil() {
    let (_server, mut con) = server();
    assert_eq!(call(&mut con, &[command::GET, "missing"]), Ok(Value::Nil));
}

#[test]
fn empty_value_reads_back_as_empty_not_nil() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "", &[]);
    assert_eq!(hc_get(&mut con, "k"), Some(Vec::new()));
}

#[test]
fn one_megabyte_value_round_trips() {
    let (_server, mut con) = server();
    let value: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    hc_set(&mut con, "big", value.as_slice(), &["t"]);
    assert_eq!(hc_get(&mut con, "big"), Some(value));
}

#[test]
fn set_with_tags_is_listed_under_each_tag() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["b", "a"]);
    assert_eq!(tags(&mut con, "k"), ["a", "b"]);
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(tagkeys(&mut con, "b"), ["k"]);
    assert_eq!(tagcard(&mut con, "a"), 1);
}

#[test]
fn set_overwrite_replaces_value_and_tags_and_leaves_dropped_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v1", &["a", "b"]);
    hc_set(&mut con, "k", "v2", &["b", "c"]);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v2"));
    assert_eq!(tags(&mut con, "k"), ["b", "c"]);
    assert_eq!(tagkeys(&mut con, "a"), Vec::<String>::new());
    assert_eq!(tagcard(&mut con, "a"), 0);
    assert_eq!(tagkeys(&mut con, "b"), ["k"]);
    assert_eq!(tagkeys(&mut con, "c"), ["k"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 2, 2));
}

#[test]
fn set_without_tags_over_a_tagged_key_clears_its_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v1", &["a"]);
    hc_set(&mut con, "k", "v2", &[]);
    assert_eq!(tags(&mut con, "k"), Vec::<String>::new());
    assert_eq!(tagcard(&mut con, "a"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 0, 0));
}

#[test]
fn repeated_tag_counts_once() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a", "a", "a"]);
    assert_eq!(tags(&mut con, "k"), ["a"]);
    assert_eq!(tagcard(&mut con, "a"), 1);
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn tags_are_case_sensitive() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k1", "v", &["Tag"]);
    hc_set(&mut con, "k2", "v", &["tag"]);
    assert_eq!(tagkeys(&mut con, "Tag"), ["k1"]);
    assert_eq!(tagkeys(&mut con, "tag"), ["k2"]);
}

#[test]
fn options_are_case_insensitive() {
    let (_server, mut con) = server();
    let reply = call(
        &mut con,
        &[command::SET, "k", "v", "ex", "100", "nx", "tags", "t"],
    );
    assert_eq!(reply, Ok(Value::Okay));
    assert_eq!(tags(&mut con, "k"), ["t"]);
    let ttl = pttl(&mut con, "k");
    assert!(ttl > 0 && ttl <= 100_000, "PTTL {ttl}");
    let reply = call(&mut con, &[command::SET, "k", "v2", "Xx", "KeepTtl"]);
    assert_eq!(reply, Ok(Value::Okay));
    assert!(pttl(&mut con, "k") > 0);
}

#[test]
fn nx_writes_only_when_the_key_is_missing() {
    let (_server, mut con) = server();
    assert_eq!(
        hc_set_with(&mut con, "k", "v1", &["NX"], &["a"]),
        Value::Okay
    );
    assert_eq!(
        hc_set_with(&mut con, "k", "v2", &["NX"], &["b"]),
        Value::Nil
    );
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v1"));
    assert_eq!(tags(&mut con, "k"), ["a"]);
    assert_eq!(tagcard(&mut con, "b"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn nx_is_nil_when_a_key_of_another_type_exists() {
    let (_server, mut con) = server();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    assert_eq!(hc_set_with(&mut con, "k", "v", &["NX"], &["a"]), Value::Nil);
    assert_eq!(key_type(&mut con, "k"), "string");
    assert_eq!(tagcard(&mut con, "a"), 0);
}

#[test]
fn xx_writes_only_when_the_key_exists() {
    let (_server, mut con) = server();
    assert_eq!(hc_set_with(&mut con, "k", "v", &["XX"], &["a"]), Value::Nil);
    assert!(!exists(&mut con, "k"));
    assert_eq!(tagcard(&mut con, "a"), 0);
    hc_set(&mut con, "k", "v1", &["a"]);
    assert_eq!(
        hc_set_with(&mut con, "k", "v2", &["XX"], &["b"]),
        Value::Okay
    );
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v2"));
    assert_eq!(tags(&mut con, "k"), ["b"]);
    assert_eq!(tagcard(&mut con, "a"), 0);
}

#[test]
fn ex_sets_a_ttl_in_seconds() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v", &["EX", "100"], &[]);
    let ttl = pttl(&mut con, "k");
    assert!(ttl > 98_000 && ttl <= 100_000, "PTTL {ttl}");
    let secs: i64 = query(&mut con, redis::cmd("TTL").arg("k"));
    assert!(secs == 99 || secs == 100, "TTL {secs}");
}

#[test]
fn px_sets_a_ttl_in_milliseconds() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v", &["PX", "5000"], &[]);
    let ttl = pttl(&mut con, "k");
    assert!(ttl > 3_000 && ttl <= 5_000, "PTTL {ttl}");
}

#[test]
fn exat_sets_expiry_at_a_unix_time_in_seconds() {
    let (_server, mut con) = server();
    let at = server_time_ms(&mut con) / 1000 + 100;
    hc_set_with(&mut con, "k", "v", &["EXAT", &at.to_string()], &[]);
    let expire_at: i64 = query(&mut con, redis::cmd("EXPIRETIME").arg("k"));
    assert_eq!(expire_at, at);
}

#[test]
fn pxat_sets_expiry_at_a_unix_time_in_milliseconds() {
    let (_server, mut con) = server();
    let at = server_time_ms(&mut con) + 100_000;
    hc_set_with(&mut con, "k", "v", &["PXAT", &at.to_string()], &[]);
    let expire_at: i64 = query(&mut con, redis::cmd("PEXPIRETIME").arg("k"));
    assert_eq!(expire_at, at);
}

#[test]
fn overwrite_without_ttl_option_clears_the_ttl() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v1", &["EX", "100"], &[]);
    hc_set(&mut con, "k", "v2", &[]);
    assert_eq!(pttl(&mut con, "k"), -1);
}

#[test]
fn keepttl_keeps_the_ttl_of_the_replaced_entry() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v1", &["EX", "100"], &["a"]);
    let before: i64 = query(&mut con, redis::cmd("PEXPIRETIME").arg("k"));
    hc_set_with(&mut con, "k", "v2", &["KEEPTTL"], &["b"]);
    let after: i64 = query(&mut con, redis::cmd("PEXPIRETIME").arg("k"));
    assert_eq!(after, before);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v2"));
    assert_eq!(tags(&mut con, "k"), ["b"]);
}

#[test]
fn keepttl_on_a_new_key_sets_no_ttl() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v", &["KEEPTTL"], &[]);
    assert_eq!(pttl(&mut con, "k"), -1);
}

#[test]
fn set_overwrites_a_plain_string_key() {
    let (_server, mut con) = server();
    let _: () = query(
        &mut con,
        redis::cmd("SET").arg("k").arg("plain").arg("EX").arg(100),
    );
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v"));
    assert_ne!(key_type(&mut con, "k"), "string");
    assert_eq!(pttl(&mut con, "k"), -1);
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
}

#[test]
fn set_overwrites_a_list_key() {
    let (_server, mut con) = server();
    let _: () = query(&mut con, redis::cmd("RPUSH").arg("k").arg("x").arg("y"));
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v"));
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
}

#[test]
fn type_of_a_module_key_is_the_module_type() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &[]);
    let kind = key_type(&mut con, "k");
    assert_ne!(kind, "string");
    assert_ne!(kind, "none");
    assert_eq!(
        kind.len(),
        9,
        "module type names are 9 characters: {kind:?}"
    );
}

#[test]
fn get_on_a_plain_string_is_wrongtype() {
    let (_server, mut con) = server();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    let err = call(&mut con, &[command::GET, "k"]).unwrap_err();
    assert!(err.starts_with("WRONGTYPE"), "{err}");
}

#[test]
fn mget_returns_values_and_nils_in_order() {
    let (_server, mut con) = server();
    hc_set(&mut con, "a", "1", &[]);
    hc_set(&mut con, "c", "3", &[]);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("x"));
    let reply = call(&mut con, &[command::MGET, "a", "b", "c", "plain", "a"]);
    assert_eq!(
        reply,
        Ok(Value::Array(vec![
            bulk("1"),
            Value::Nil,
            bulk("3"),
            Value::Nil,
            bulk("1")
        ]))
    );
}

#[test]
fn del_counts_only_removed_module_keys() {
    let (_server, mut con) = server();
    hc_set(&mut con, "a", "1", &["t"]);
    hc_set(&mut con, "b", "2", &["t"]);
    assert_eq!(hc_del(&mut con, &["a", "missing", "b", "a"]), 2);
    assert!(!exists(&mut con, "a"));
    assert!(!exists(&mut con, "b"));
    assert_eq!(tagcard(&mut con, "t"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn del_leaves_a_key_of_another_type_alone_and_does_not_count_it() {
    let (_server, mut con) = server();
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("x"));
    hc_set(&mut con, "k", "v", &[]);
    assert_eq!(hc_del(&mut con, &["plain", "k"]), 1);
    assert!(exists(&mut con, "plain"));
    assert!(!exists(&mut con, "k"));
}

#[test]
fn del_removes_the_key_from_every_tag() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a", "b"]);
    hc_set(&mut con, "other", "v", &["b"]);
    assert_eq!(hc_del(&mut con, &["k"]), 1);
    assert_eq!(tagkeys(&mut con, "a"), Vec::<String>::new());
    assert_eq!(tagkeys(&mut con, "b"), ["other"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn deltag_removes_every_key_of_the_tag() {
    let (_server, mut con) = server();
    for k in ["k1", "k2", "k3"] {
        hc_set(&mut con, k, "v", &["t"]);
    }
    hc_set(&mut con, "other", "v", &["u"]);
    assert_eq!(hc_deltag(&mut con, &["t"]), 3);
    assert_eq!(tagcard(&mut con, "t"), 0, "logically gone at once");
    assert_eq!(hc_get(&mut con, "k1"), None, "logically gone at once");
    wait_removals_done(&mut con);
    assert_eq!(dbsize(&mut con), 1);
    assert!(exists(&mut con, "other"));
    assert_eq!(tagcard(&mut con, "t"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn deltag_counts_a_key_with_two_of_the_tags_once() {
    let (_server, mut con) = server();
    hc_set(&mut con, "both", "v", &["a", "b"]);
    hc_set(&mut con, "only_a", "v", &["a"]);
    hc_set(&mut con, "only_b", "v", &["b"]);
    assert_eq!(hc_deltag(&mut con, &["a", "b"]), 3);
    wait_removals_done(&mut con);
    assert_eq!(dbsize(&mut con), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn deltag_removes_the_keys_from_their_other_tags_too() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a", "b"]);
    hc_set(&mut con, "other", "v", &["b"]);
    assert_eq!(hc_deltag(&mut con, &["a"]), 1);
    assert_eq!(tagkeys(&mut con, "b"), ["other"]);
    assert_eq!(tagcard(&mut con, "b"), 1);
    wait_removals_done(&mut con);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn deltag_of_an_unknown_tag_removes_nothing() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(hc_deltag(&mut con, &["nope"]), 0);
    assert!(exists(&mut con, "k"));
}

#[test]
fn repeated_tag_in_deltag_counts_keys_once() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(hc_deltag(&mut con, &["a", "a"]), 1);
}

#[test]
fn tags_of_a_missing_key_is_an_empty_array() {
    let (_server, mut con) = server();
    assert_eq!(
        call(&mut con, &[command::TAGS, "missing"]),
        Ok(Value::Array(vec![]))
    );
}

#[test]
fn tags_of_an_untagged_key_is_an_empty_array() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &[]);
    assert_eq!(
        call(&mut con, &[command::TAGS, "k"]),
        Ok(Value::Array(vec![]))
    );
}

#[test]
fn tagkeys_and_tagcard_of_an_unknown_tag_are_empty_and_zero() {
    let (_server, mut con) = server();
    assert_eq!(
        call(&mut con, &[command::TAGKEYS, "nope"]),
        Ok(Value::Array(vec![]))
    );
    assert_eq!(
        call(&mut con, &[command::TAGCARD, "nope"]),
        Ok(Value::Int(0))
    );
}

#[test]
fn tagkeys_lists_every_key_of_the_tag_and_tagcard_counts_them() {
    let (_server, mut con) = server();
    let mut expected: Vec<String> = (0..50).map(|i| format!("key:{i}")).collect();
    for k in &expected {
        hc_set(&mut con, k.as_str(), "v", &["t"]);
    }
    expected.sort();
    assert_eq!(tagkeys(&mut con, "t"), expected);
    assert_eq!(tagcard(&mut con, "t"), 50);
}

#[test]
fn binary_value_round_trips() {
    let (_server, mut con) = server();
    let value: &[u8] = b"\x00\xff\xfe value \r\n\x00";
    hc_set(&mut con, "k", value, &[]);
    assert_eq!(hc_get(&mut con, "k"), Some(value.to_vec()));
    let values: Vec<Option<Vec<u8>>> = query(&mut con, redis::cmd(command::MGET).arg("k"));
    assert_eq!(values, [Some(value.to_vec())]);
}

#[test]
fn binary_key_round_trips_through_get_del_and_tagkeys() {
    let (_server, mut con) = server();
    let key: &[u8] = b"k\x00\xff\r\n";
    hc_set(&mut con, key, "v", &["t"]);
    assert_eq!(hc_get(&mut con, key), Some(b"v".to_vec()));
    // A key that differs only after the NUL byte is another key.
    assert_eq!(hc_get(&mut con, b"k".as_slice()), None);
    let keys: Vec<Vec<u8>> = query(&mut con, redis::cmd(command::TAGKEYS).arg("t"));
    assert_eq!(keys, [key.to_vec()]);
    let removed: i64 = query(&mut con, redis::cmd(command::DEL).arg(key));
    assert_eq!(removed, 1);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn binary_tag_round_trips_through_tags_tagkeys_and_deltag() {
    let (_server, mut con) = server();
    let tag: &[u8] = b"t\x00\xff";
    let reply: Value = query(
        &mut con,
        redis::cmd(command::SET)
            .arg("k")
            .arg("v")
            .arg(command::option::TAGS)
            .arg(tag)
            .arg(b"t\x00".as_slice()),
    );
    assert_eq!(reply, Value::Okay);
    let mut key_tags: Vec<Vec<u8>> = query(&mut con, redis::cmd(command::TAGS).arg("k"));
    key_tags.sort();
    assert_eq!(key_tags, [b"t\x00".to_vec(), tag.to_vec()]);
    assert_eq!(tagkeys(&mut con, tag), ["k"]);
    // A tag that differs only after the NUL byte is another tag.
    assert_eq!(tagcard(&mut con, b"t".as_slice()), 0);
    let removed: i64 = query(&mut con, redis::cmd(command::DELTAG).arg(tag));
    assert_eq!(removed, 1);
    wait_removals_done(&mut con);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn a_key_with_a_thousand_tags_is_listed_under_each() {
    let (_server, mut con) = server();
    // Above the default hybridcache.max-tags (256).
    let _: () = query(
        &mut con,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("hybridcache.max-tags")
            .arg(1000),
    );
    let names: Vec<String> = (0..1000).map(|i| format!("tag:{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    hc_set(&mut con, "k", "v", &refs);
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(tags(&mut con, "k"), expected);
    assert_eq!(tagkeys(&mut con, "tag:999"), ["k"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1000, 1000));
    assert_eq!(hc_deltag(&mut con, &["tag:500"]), 1);
    wait_removals_done(&mut con);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn options_may_come_in_any_order_before_tags() {
    let (_server, mut con) = server();
    let reply = call(
        &mut con,
        &[command::SET, "k", "v", "NX", "PX", "100000", "TAGS", "t"],
    );
    assert_eq!(reply, Ok(Value::Okay));
    assert!(pttl(&mut con, "k") > 0);
    let reply = call(
        &mut con,
        &[command::SET, "k", "v2", "KEEPTTL", "XX", "TAGS", "u"],
    );
    assert_eq!(reply, Ok(Value::Okay));
    assert!(pttl(&mut con, "k") > 0);
    assert_eq!(tags(&mut con, "k"), ["u"]);
}

#[test]
fn nx_treats_a_logically_expired_key_as_missing() {
    let (_server, mut con) = server();
    let _: () = query(
        &mut con,
        redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg(0),
    );
    hc_set_with(&mut con, "k", "old", &["PX", "20"], &["old"]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        hc_set_with(&mut con, "k", "new", &["NX"], &["new"]),
        Value::Okay
    );
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("new"));
    assert_eq!(tagcard(&mut con, "old"), 0);
    assert_eq!(tagkeys(&mut con, "new"), ["k"]);
    assert_eq!(pttl(&mut con, "k"), -1);
}

#[test]
fn info_counts_keys_distinct_tags_and_links() {
    let (_server, mut con) = server();
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
    hc_set(&mut con, "k1", "v", &["a", "b"]);
    hc_set(&mut con, "k2", "v", &["b", "c"]);
    hc_set(&mut con, "k3", "v", &[]);
    assert_eq!(HcInfo::read(&mut con).counts(), (3, 3, 4));
    hc_del(&mut con, &["k1"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (2, 2, 2));
}

#[test]
fn info_shows_the_default_channel_and_a_hex_origin() {
    let (_server, mut con) = server();
    let info = HcInfo::read(&mut con);
    assert_eq!(info.channel, hybridcache_protocol::DEFAULT_CHANNEL);
    assert_eq!(info.origin.len(), 16, "origin {:?}", info.origin);
    assert!(
        info.origin.chars().all(|c| c.is_ascii_hexdigit()),
        "origin {:?}",
        info.origin
    );
    assert_eq!(info.events_published, 0);
}

#[test]
fn read_commands_do_not_change_anything() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let before = HcInfo::read(&mut con);
    let _ = hc_get(&mut con, "k");
    let _ = call(&mut con, &[command::MGET, "k", "x"]);
    let _ = tags(&mut con, "k");
    let _ = tagkeys(&mut con, "a");
    let _ = tagcard(&mut con, "a");
    assert_eq!(HcInfo::read(&mut con), before);
}
