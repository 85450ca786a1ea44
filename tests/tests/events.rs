//! Invalidation events: one per change, on the configured channel, decoded with the
//! protocol crate, numbered consecutively per origin.

use hybridcache_protocol::{command, Change, InvalidationEvent, Name, Op, CHANNEL_CONFIG};
use hybridcache_tests::hc::{
    all_keys, call, fill_past_maxmemory, hc_del, hc_deltag, hc_get, hc_set, hc_set_with, query,
    select, tagcard, tagkeys, tags,
};
use hybridcache_tests::subscriber::{assert_consecutive, event_keys, event_tags};
use hybridcache_tests::{HcInfo, RedisServer, Subscriber, EVENT_TIMEOUT, QUIET_PERIOD};
use std::time::Duration;

fn setup() -> (RedisServer, redis::Connection, Subscriber) {
    let server = RedisServer::new();
    let con = server.connection();
    let sub = Subscriber::new(&server);
    (server, con, sub)
}

/// Asserts `event` is `op` on `keys` (sorted) in `db`.
fn assert_keys_event(event: &InvalidationEvent, op: Op, db: u32, keys: &[&str]) {
    assert_eq!(event.op, op, "{event:?}");
    assert_eq!(event.db, Some(db), "{event:?}");
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(event_keys(event), expected, "{event:?}");
}

#[test]
fn hc_set_publishes_one_set_event_naming_the_key() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "user:1", "v", &["team:7"]);
    let event = sub.expect_event("set user:1");
    assert_eq!(event.v, hybridcache_protocol::FORMAT_VERSION);
    assert_keys_event(&event, Op::Set, 0, &["user:1"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_set_over_an_existing_entry_publishes_only_a_set_event() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v1", &["a"]);
    sub.expect_event("set k");
    hc_set(&mut con, "k", "v2", &["b"]);
    assert_keys_event(&sub.expect_event("set k"), Op::Set, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_set_over_a_plain_string_publishes_only_a_set_event() {
    let (_server, mut con, sub) = setup();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    hc_set(&mut con, "k", "v", &[]);
    assert_keys_event(&sub.expect_event("set k"), Op::Set, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_set_prevented_by_nx_or_xx_publishes_nothing() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &[]);
    sub.expect_event("set k");
    assert_eq!(
        hc_set_with(&mut con, "k", "v2", &["NX"], &[]),
        redis::Value::Nil
    );
    assert_eq!(
        hc_set_with(&mut con, "missing", "v", &["XX"], &[]),
        redis::Value::Nil
    );
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn event_db_is_the_database_of_the_write() {
    let (_server, mut con, sub) = setup();
    select(&mut con, 5);
    hc_set(&mut con, "k", "v", &[]);
    assert_keys_event(&sub.expect_event("set k in db 5"), Op::Set, 5, &["k"]);
}

#[test]
fn binary_key_is_named_exactly_in_the_event() {
    let (_server, mut con, sub) = setup();
    let key: &[u8] = b"k\x00\xff";
    hc_set(&mut con, key, "v", &[]);
    let event = sub.expect_event("set of a binary key");
    assert_eq!(
        event.change,
        Change::Keys {
            keys: vec![Name::from(key)]
        }
    );
}

#[test]
fn read_commands_publish_nothing() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["a"]);
    sub.expect_event("set k");
    let _ = hc_get(&mut con, "k");
    let _ = call(&mut con, &[command::MGET, "k", "x"]);
    let _ = tags(&mut con, "k");
    let _ = tagkeys(&mut con, "a");
    let _ = tagcard(&mut con, "a");
    let _: i64 = query(&mut con, redis::cmd("EXISTS").arg("k"));
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_del_publishes_one_del_event_naming_only_the_removed_keys() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "a", "v", &[]);
    hc_set(&mut con, "b", "v", &[]);
    sub.expect_events(2, "two sets");
    assert_eq!(hc_del(&mut con, &["a", "missing", "b"]), 2);
    assert_keys_event(&sub.expect_event("del a b"), Op::Del, 0, &["a", "b"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_del_of_missing_keys_publishes_nothing() {
    let (_server, mut con, sub) = setup();
    assert_eq!(hc_del(&mut con, &["missing", "other"]), 0);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_deltag_publishes_one_tags_event_for_1000_keys() {
    let (_server, mut con, sub) = setup();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd(command::SET)
            .arg(format!("key:{i}"))
            .arg("v")
            .arg("TAGS")
            .arg("big")
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    assert_eq!(sub.expect_events(1000, "1000 sets").len(), 1000);
    assert_eq!(hc_deltag(&mut con, &["big"]), 1000);
    let payload = sub
        .next_payload(EVENT_TIMEOUT)
        .expect("no event for HC.DELTAG");
    assert!(
        payload.len() < 200,
        "the deltag event names tags, not keys; it is {} bytes",
        payload.len()
    );
    let [event] = &hybridcache_tests::subscriber::decode(&payload)[..] else {
        panic!("one change expected: {}", String::from_utf8_lossy(&payload));
    };
    assert_eq!(event.op, Op::Deltag, "{event:?}");
    assert_eq!(event.db, Some(0));
    assert_eq!(event_tags(event), ["big"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn hc_deltag_of_several_tags_publishes_one_event_naming_them() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k1", "v", &["a", "b"]);
    hc_set(&mut con, "k2", "v", &["b"]);
    sub.expect_events(2, "two sets");
    assert_eq!(hc_deltag(&mut con, &["a", "b"]), 2);
    let event = sub.expect_event("deltag a b");
    assert_eq!(event.op, Op::Deltag);
    assert_eq!(event_tags(&event), ["a", "b"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn expiry_publishes_a_removed_event() {
    let (_server, mut con, sub) = setup();
    hc_set_with(&mut con, "k", "v", &["PX", "50"], &["t"]);
    sub.expect_event("set k");
    let event = sub
        .next_event(Duration::from_secs(5))
        .expect("no event for the expiry of k within 5 s");
    assert_keys_event(&event, Op::Removed, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn lazy_expiry_on_hc_get_publishes_a_removed_event() {
    let (_server, mut con, sub) = setup();
    let _: () = query(
        &mut con,
        redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg(0),
    );
    hc_set_with(&mut con, "k", "v", &["PX", "20"], &["t"]);
    sub.expect_event("set k");
    std::thread::sleep(Duration::from_millis(50));
    sub.assert_no_event(Duration::from_millis(1));
    assert_eq!(hc_get(&mut con, "k"), None);
    assert_keys_event(&sub.expect_event("removed k"), Op::Removed, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn expire_in_the_past_publishes_a_removed_event() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["t"]);
    sub.expect_event("set k");
    let _: i64 = query(&mut con, redis::cmd("EXPIRE").arg("k").arg(-1));
    assert_keys_event(&sub.expect_event("removed k"), Op::Removed, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn plain_del_publishes_a_removed_event() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["t"]);
    sub.expect_event("set k");
    let _: i64 = query(&mut con, redis::cmd("DEL").arg("k"));
    assert_keys_event(&sub.expect_event("removed k"), Op::Removed, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn unlink_publishes_a_removed_event() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &[]);
    sub.expect_event("set k");
    let _: i64 = query(&mut con, redis::cmd("UNLINK").arg("k"));
    assert_keys_event(&sub.expect_event("removed k"), Op::Removed, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn plain_set_over_a_module_key_publishes_a_removed_event() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["t"]);
    sub.expect_event("set k");
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    assert_keys_event(&sub.expect_event("removed k"), Op::Removed, 0, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn plain_commands_on_plain_keys_publish_nothing() {
    let (_server, mut con, sub) = setup();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    let _: i64 = query(&mut con, redis::cmd("DEL").arg("k"));
    let _: i64 = query(&mut con, redis::cmd("RPUSH").arg("l").arg("x"));
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn eviction_publishes_a_removed_event_for_each_evicted_key() {
    let (_server, mut con, sub) = setup();
    let written = fill_past_maxmemory(&mut con);
    let surviving = all_keys(&mut con);
    let mut expected_removed: Vec<String> = written
        .iter()
        .filter(|k| surviving.binary_search(k).is_err())
        .cloned()
        .collect();
    expected_removed.sort();
    let events = sub.events_until_quiet(QUIET_PERIOD, Duration::from_secs(20));
    assert_consecutive(&events);
    let mut removed = Vec::new();
    let mut sets = 0;
    for event in &events {
        match event.op {
            Op::Set => sets += 1,
            Op::Removed => {
                assert_eq!(event.db, Some(0));
                removed.extend(event_keys(event));
            }
            other => panic!("unexpected {other:?} event during eviction: {event:?}"),
        }
    }
    assert_eq!(sets, written.len());
    removed.sort();
    assert_eq!(removed.len(), expected_removed.len());
    assert_eq!(removed, expected_removed);
}

#[test]
fn rename_publishes_removed_for_the_source_and_added_for_the_target() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "old", "v", &["t"]);
    sub.expect_event("set old");
    let _: () = query(&mut con, redis::cmd("RENAME").arg("old").arg("new"));
    let events = sub.expect_events(2, "removed old, added new");
    assert_keys_event(&events[0], Op::Removed, 0, &["old"]);
    assert_keys_event(&events[1], Op::Added, 0, &["new"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn move_publishes_removed_in_the_source_db_and_added_in_the_target_db() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["t"]);
    sub.expect_event("set k");
    let _: i64 = query(&mut con, redis::cmd("MOVE").arg("k").arg(1));
    let events = sub.expect_events(2, "removed k in db 0, added k in db 1");
    assert_keys_event(&events[0], Op::Removed, 0, &["k"]);
    assert_keys_event(&events[1], Op::Added, 1, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn copy_publishes_added_for_the_target() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "src", "v", &["t"]);
    sub.expect_event("set src");
    let _: i64 = query(&mut con, redis::cmd("COPY").arg("src").arg("dst"));
    assert_keys_event(&sub.expect_event("added dst"), Op::Added, 0, &["dst"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn copy_to_another_db_publishes_added_in_that_db() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["t"]);
    sub.expect_event("set k");
    let _: i64 = query(
        &mut con,
        redis::cmd("COPY").arg("k").arg("k").arg("DB").arg(2),
    );
    assert_keys_event(&sub.expect_event("added k in db 2"), Op::Added, 2, &["k"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn restore_publishes_added() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "k", "v", &["t"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    sub.expect_event("set k");
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE").arg("k2").arg(0).arg(dump.as_slice()),
    );
    assert_keys_event(&sub.expect_event("added k2"), Op::Added, 0, &["k2"]);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn flushdb_publishes_one_flush_event_for_that_db() {
    let (_server, mut con, sub) = setup();
    select(&mut con, 2);
    hc_set(&mut con, "a", "v", &["t"]);
    hc_set(&mut con, "b", "v", &["t"]);
    sub.expect_events(2, "two sets");
    let _: () = query(&mut con, &redis::cmd("FLUSHDB"));
    let event = sub.expect_event("flushdb of db 2");
    assert_eq!(event.op, Op::Flushdb, "{event:?}");
    assert_eq!(event.change, Change::Flush, "{event:?}");
    assert_eq!(event.db, Some(2), "{event:?}");
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn flushall_publishes_one_flush_event_for_every_db() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "a", "v", &["t"]);
    select(&mut con, 1);
    hc_set(&mut con, "b", "v", &["t"]);
    sub.expect_events(2, "two sets");
    let _: () = query(&mut con, &redis::cmd("FLUSHALL"));
    let event = sub.expect_event("flushall");
    assert_eq!(event.op, Op::Flushall, "{event:?}");
    assert_eq!(event.change, Change::Flush, "{event:?}");
    assert_eq!(event.db, None, "{event:?}");
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn swapdb_publishes_a_flush_event_for_each_of_the_two_dbs() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "a", "v", &["t"]);
    sub.expect_event("set a");
    let _: () = query(&mut con, redis::cmd("SWAPDB").arg(0).arg(3));
    let mut events = sub.expect_events(2, "flush of db 0 and db 3");
    events.sort_by_key(|e| e.db);
    for (event, db) in events.iter().zip([0, 3]) {
        assert_eq!(event.op, Op::Swapdb, "{event:?}");
        assert_eq!(event.change, Change::Flush, "{event:?}");
        assert_eq!(event.db, Some(db), "{event:?}");
    }
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn debug_reload_ends_with_one_loaded_flush_event_for_every_db() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "a", "v", &["t"]);
    sub.expect_event("set a");
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    let events = sub.events_until_quiet(QUIET_PERIOD, Duration::from_secs(5));
    let summary: Vec<(Op, Option<u32>, Change)> = events
        .iter()
        .map(|e| (e.op, e.db, e.change.clone()))
        .collect();
    // Redis and Valkey 8 empty the dataset before loading it (a FLUSHALL-like server event
    // the module reports as such); Valkey 9 sends no flush event for it. Either way the
    // load ends with one "loaded" event, which alone tells every reader to drop all.
    let flushall = (Op::Flushall, None, Change::Flush);
    let loaded = (Op::Loaded, None, Change::Flush);
    assert!(
        summary == [flushall.clone(), loaded.clone()] || summary == [loaded],
        "{events:?}"
    );
    assert_consecutive(&events);
}

#[test]
fn seq_is_consecutive_and_matches_events_published() {
    let (_server, mut con, sub) = setup();
    hc_set(&mut con, "a", "v", &["t"]);
    hc_set(&mut con, "b", "v", &["t"]);
    hc_del(&mut con, &["a"]);
    let _: i64 = query(&mut con, redis::cmd("DEL").arg("b"));
    hc_set(&mut con, "c", "v", &["u"]);
    hc_deltag(&mut con, &["u"]);
    let events = sub.expect_events(6, "set, set, del, removed, set, deltag");
    assert_consecutive(&events);
    let ops: Vec<Op> = events.iter().map(|e| e.op).collect();
    assert_eq!(
        ops,
        [Op::Set, Op::Set, Op::Del, Op::Removed, Op::Set, Op::Deltag]
    );
    let info = HcInfo::read(&mut con);
    assert_eq!(events[0].seq, 1, "first event of a fresh server");
    assert_eq!(info.events_published, events[5].seq as i64);
    assert_eq!(info.origin, events[0].origin);
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn origin_changes_after_a_restart() {
    let mut server = RedisServer::new();
    let before = {
        let sub = Subscriber::new(&server);
        hc_set(&mut server.connection(), "k", "v", &[]);
        sub.expect_event("set k before restart")
    };
    server.kill();
    server.start_again();
    let sub = Subscriber::new(&server);
    let mut con = server.connection();
    hc_set(&mut con, "k", "v", &[]);
    let after = sub.expect_event("set k after restart");
    assert_ne!(after.origin, before.origin);
    assert_eq!(HcInfo::read(&mut con).origin, after.origin);
}

#[test]
fn two_servers_have_different_origins() {
    let a = RedisServer::new();
    let b = RedisServer::new();
    assert_ne!(
        HcInfo::read(&mut a.connection()).origin,
        HcInfo::read(&mut b.connection()).origin
    );
}

#[test]
fn channel_module_argument_moves_events_to_that_channel() {
    let server = RedisServer::builder()
        .module_arg("CHANNEL")
        .module_arg("custom:inval")
        .start();
    let mut con = server.connection();
    assert_eq!(HcInfo::read(&mut con).channel, "custom:inval");
    let config: Vec<String> = query(
        &mut con,
        redis::cmd("CONFIG").arg("GET").arg(CHANNEL_CONFIG),
    );
    assert_eq!(config, [CHANNEL_CONFIG, "custom:inval"]);
    let custom = Subscriber::on_channel(&server, "custom:inval");
    let default = Subscriber::new(&server);
    hc_set(&mut con, "k", "v", &[]);
    assert_keys_event(
        &custom.expect_event("set k on custom:inval"),
        Op::Set,
        0,
        &["k"],
    );
    default.assert_no_event(QUIET_PERIOD);
}

#[test]
fn channel_config_defaults_to_the_protocol_channel() {
    let (_server, mut con, _sub) = setup();
    let config: Vec<String> = query(
        &mut con,
        redis::cmd("CONFIG").arg("GET").arg(CHANNEL_CONFIG),
    );
    assert_eq!(
        config,
        [CHANNEL_CONFIG, hybridcache_protocol::DEFAULT_CHANNEL]
    );
}

#[test]
fn config_set_channel_moves_later_events_to_the_new_channel() {
    let (server, mut con, default) = setup();
    let _: () = query(
        &mut con,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(CHANNEL_CONFIG)
            .arg("moved"),
    );
    assert_eq!(HcInfo::read(&mut con).channel, "moved");
    let moved = Subscriber::on_channel(&server, "moved");
    hc_set(&mut con, "k", "v", &[]);
    assert_keys_event(&moved.expect_event("set k on moved"), Op::Set, 0, &["k"]);
    default.assert_no_event(QUIET_PERIOD);
}

#[test]
fn events_published_counts_every_event() {
    let (_server, mut con, sub) = setup();
    assert_eq!(HcInfo::read(&mut con).events_published, 0);
    hc_set(&mut con, "a", "v", &[]);
    hc_set(&mut con, "b", "v", &[]);
    let _: () = query(&mut con, &redis::cmd("FLUSHDB"));
    sub.expect_events(3, "set, set, flushdb");
    assert_eq!(HcInfo::read(&mut con).events_published, 3);
}
