//! `HC.STALE` and `HC.STALETAG` (soft expiry): the same removals as `HC.DEL` and `HC.DELTAG`
//! (reply, non-blocking tag path, fill leases, replication, key routing, errors), announced
//! with the op `stale` instead of `del`/`deltag`.

use hybridcache_protocol::{command, Op};
use hybridcache_tests::hc::{
    all_keys, call, exists, fetch_lease, hc_get_str, hc_set, query, set_lease, tagcard,
    wait_removals_done,
};
use hybridcache_tests::index_check::assert_index_matches;
use hybridcache_tests::subscriber::{event_keys, event_tags};
use hybridcache_tests::{RedisServer, Subscriber, QUIET_PERIOD};
use redis::Value;

fn stale(con: &mut redis::Connection, keys: &[&str]) -> i64 {
    query(con, redis::cmd(command::STALE).arg(keys))
}

fn staletag(con: &mut redis::Connection, tags: &[&str]) -> i64 {
    query(con, redis::cmd(command::STALETAG).arg(tags))
}

#[test]
fn hc_stale_removes_entries_like_hc_del_and_announces_them_as_stale() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    hc_set(&mut con, "a", "1", &["t"]);
    hc_set(&mut con, "b", "2", &[]);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("x"));
    sub.expect_events(2, "set a, set b");

    // The count of entries removed; a missing key and a key of another type are not.
    assert_eq!(stale(&mut con, &["a", "missing", "b", "plain", "a"]), 2);
    let event = sub.expect_event("stale a b");
    assert_eq!(event.op, Op::Stale, "{event:?}");
    assert_eq!(event.db, Some(0));
    assert_eq!(event_keys(&event), ["a", "b"]);
    sub.assert_no_event(QUIET_PERIOD);
    assert_eq!(hc_get_str(&mut con, "a"), None);
    assert!(!exists(&mut con, "b"));
    assert!(exists(&mut con, "plain"), "another type is left alone");
    assert_eq!(tagcard(&mut con, "t"), 0);

    // Nothing removed: nothing announced.
    assert_eq!(stale(&mut con, &["a", "missing"]), 0);
    sub.assert_no_event(QUIET_PERIOD);
    assert_index_matches(&mut con, "after HC.STALE");
}

#[test]
fn hc_staletag_removes_a_tags_keys_like_hc_deltag_in_one_stale_event() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    for i in 0..500 {
        hc_set(&mut con, format!("k{i}"), "v", &["big"]);
    }
    hc_set(&mut con, "other", "v", &["small"]);
    hc_set(&mut con, "both", "v", &["big", "small"]);
    sub.events_until_quiet(QUIET_PERIOD, std::time::Duration::from_secs(5));

    assert_eq!(staletag(&mut con, &["big", "small", "big"]), 502);
    let event = sub.expect_event("stale big small");
    assert_eq!(event.op, Op::Stale, "{event:?}");
    assert_eq!(event_tags(&event), ["big", "small"]);
    sub.assert_no_event(QUIET_PERIOD);
    // Gone for every HC command at once; the keys themselves leave in the background,
    // unannounced.
    assert_eq!(hc_get_str(&mut con, "k7"), None);
    assert_eq!(tagcard(&mut con, "big"), 0);
    wait_removals_done(&mut con);
    assert!(all_keys(&mut con).is_empty());
    sub.assert_no_event(QUIET_PERIOD);
    assert_eq!(staletag(&mut con, &["big"]), 0);
    sub.assert_no_event(QUIET_PERIOD);
    assert_index_matches(&mut con, "after HC.STALETAG");
}

#[test]
fn a_fill_read_before_a_soft_expiry_is_refused() {
    let server = RedisServer::new();
    let mut con = server.connection();
    hc_set(&mut con, "k", "v1", &["t"]);
    hc_set(&mut con, "j", "v1", &["u"]);
    let (k_token, j_token, missing_token) = (
        fetch_lease(&mut con, "k"),
        fetch_lease(&mut con, "j"),
        fetch_lease(&mut con, "missing"),
    );
    assert_eq!(stale(&mut con, &["k", "missing"]), 1);
    assert_eq!(staletag(&mut con, &["u"]), 1);
    assert!(!set_lease(&mut con, "k", "old", &k_token, &[], &["t"]));
    assert!(!set_lease(&mut con, "j", "old", &j_token, &[], &["u"]));
    assert!(
        !set_lease(&mut con, "missing", "old", &missing_token, &[], &[]),
        "a soft expiry of a missing key counts too, as HC.DEL's does"
    );
    assert!(!exists(&mut con, "k") && !exists(&mut con, "missing"));
    // A read after it fills.
    let token = fetch_lease(&mut con, "k");
    assert!(set_lease(&mut con, "k", "v2", &token, &[], &["t"]));
    assert_eq!(hc_get_str(&mut con, "k").as_deref(), Some("v2"));
}

#[test]
fn soft_expiries_replicate_and_the_replica_announces_them_as_stale() {
    let primary = RedisServer::new();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    let sub = Subscriber::new(&replica);
    let mut pcon = primary.connection();
    hc_set(&mut pcon, "k", "v", &[]);
    hc_set(&mut pcon, "t1", "v", &["t"]);
    hc_set(&mut pcon, "t2", "v", &["t"]);
    sub.expect_events(3, "three sets replicated");
    assert_eq!(stale(&mut pcon, &["k"]), 1);
    assert_eq!(staletag(&mut pcon, &["t"]), 2);
    let events = sub.expect_events(2, "stale k, stale t replicated");
    assert_eq!(
        events
            .iter()
            .map(|e| (e.op, event_keys_or_tags(e)))
            .collect::<Vec<_>>(),
        [
            (Op::Stale, vec!["k".to_string()]),
            (Op::Stale, vec!["t".to_string()])
        ]
    );
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    assert_eq!(hc_get_str(&mut rcon, "k"), None);
    assert_eq!(hc_get_str(&mut rcon, "t1"), None);
    assert_eq!(tagcard(&mut rcon, "t"), 0);
    wait_removals_done(&mut pcon);
    replica.wait_in_sync_with(&primary);
    wait_removals_done(&mut rcon);
    assert!(all_keys(&mut rcon).is_empty());
    assert_index_matches(&mut rcon, "replica after soft expiries");
    // A read-only replica refuses them, as it refuses HC.DEL.
    for words in [[command::STALE, "k"], [command::STALETAG, "t"]] {
        let err = call(&mut rcon, &words).unwrap_err();
        assert!(err.starts_with("READONLY"), "{words:?}: {err}");
    }
}

fn event_keys_or_tags(event: &hybridcache_protocol::InvalidationEvent) -> Vec<String> {
    match event.change {
        hybridcache_protocol::Change::Tags { .. } => event_tags(event),
        _ => event_keys(event),
    }
}

#[test]
fn hc_stale_declares_its_keys_and_bad_arity_is_an_error() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let keys: Vec<String> = query(
        &mut con,
        redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg(command::STALE)
            .arg("a")
            .arg("b"),
    );
    assert_eq!(keys, ["a", "b"]);
    for words in [&[command::STALE][..], &[command::STALETAG][..]] {
        let err = call(&mut con, words).unwrap_err();
        assert!(
            err.contains("wrong number of arguments"),
            "{words:?}: {err}"
        );
    }
    // Lowercase works, like every command name.
    assert_eq!(call(&mut con, &["hc.stale", "nothing"]), Ok(Value::Int(0)));
    assert_eq!(
        call(&mut con, &["hc.staletag", "nothing"]),
        Ok(Value::Int(0))
    );
}
