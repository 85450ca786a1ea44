//! HC.DELTAG answers at once and its keys are gone for every HC command from that moment,
//! while their physical removal proceeds in the background: on the primary, on replicas,
//! across reloads and under eviction, with exact counts and one event per command.

use hybridcache_protocol::{command, Change, Op};
use hybridcache_tests::hc::{
    call, hc_deltag, hc_get, hc_set, query, select, tagcard, tagkeys, wait_removals_done,
};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::info::info_i64;
use hybridcache_tests::{RedisServer, Subscriber, QUIET_PERIOD};

const N: usize = 20_000;

/// Writes `n` entries `key:0..n` tagged `big` (and `even`/`odd`), pipelined.
fn fill(con: &mut redis::Connection, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd(command::SET)
                .arg(format!("{prefix}:{i}"))
                .arg("value")
                .arg(command::option::TAGS)
                .arg("big")
                .arg(if i % 2 == 0 { "even" } else { "odd" })
                .ignore();
        }
        let _: () = pipe.query(con).unwrap();
    }
}

fn pending(con: &mut redis::Connection) -> i64 {
    info_i64(con, "hybridcache", "hybridcache_pending_removals")
}

/// Every key of `prefix:0..n` reads as missing through HC.GET and HC.MGET.
fn assert_all_gone(con: &mut redis::Connection, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("{prefix}:{i}")).collect();
        let values: Vec<Option<Vec<u8>>> = query(con, redis::cmd(command::MGET).arg(&keys));
        assert!(
            values.iter().all(Option::is_none),
            "an invalidated entry was returned"
        );
    }
    assert_eq!(hc_get(con, format!("{prefix}:0")), None);
    assert_eq!(tagcard(con, "big"), 0);
    assert!(tagkeys(con, "even").is_empty());
}

#[test]
fn invalidated_entries_are_never_returned_from_the_reply_on_and_are_removed_in_the_background() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    fill(&mut con, "key", N);
    hc_set(&mut con, "keep", "v", &["other"]);
    let _ = sub.events_until_quiet(QUIET_PERIOD, std::time::Duration::from_secs(10));
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    assert_all_gone(&mut con, "key", N);
    let events = sub.events_until_quiet(QUIET_PERIOD, std::time::Duration::from_secs(10));
    assert_eq!(
        events.len(),
        1,
        "one event for the whole tag: {:?}",
        events.first()
    );
    assert_eq!(events[0].op, Op::Deltag);
    assert!(matches!(&events[0].change, Change::Tags { tags, .. } if tags.len() == 1));
    wait_removals_done(&mut con);
    let dbsize: i64 = query(&mut con, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 1);
    assert_eq!(hc_get(&mut con, "keep"), Some(b"v".to_vec()));
}

#[test]
fn counts_stay_exact_while_removals_are_pending() {
    let server = RedisServer::new();
    let mut con = server.connection();
    fill(&mut con, "key", N);
    assert_eq!(hc_deltag(&mut con, &["even"]), (N / 2) as i64);
    assert_eq!(
        tagcard(&mut con, "big"),
        (N / 2) as i64,
        "only the odd keys remain"
    );
    assert_eq!(hc_deltag(&mut con, &["even"]), 0, "already gone");
    assert_eq!(hc_deltag(&mut con, &["big", "odd"]), (N / 2) as i64);
    assert_eq!(hc_deltag(&mut con, &["big"]), 0);
    wait_removals_done(&mut con);
    let dbsize: i64 = query(&mut con, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 0);
}

#[test]
fn an_entry_written_again_after_the_invalidation_lives_and_is_not_removed() {
    let server = RedisServer::new();
    let mut con = server.connection();
    fill(&mut con, "key", N);
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    hc_set(&mut con, "key:7", "new", &["big"]);
    assert_eq!(hc_get(&mut con, "key:7"), Some(b"new".to_vec()));
    assert_eq!(tagkeys(&mut con, "big"), ["key:7"]);
    wait_removals_done(&mut con);
    assert_eq!(hc_get(&mut con, "key:7"), Some(b"new".to_vec()));
    let dbsize: i64 = query(&mut con, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 1);
}

#[test]
fn an_invalidated_entry_stays_gone_when_renamed_moved_copied_or_restored() {
    let server = RedisServer::new();
    let mut con = server.connection();
    fill(&mut con, "key", N);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("key:1"));
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    // The keys still exist physically for a moment: carry some of them away.
    let moved: Vec<(&str, redis::Cmd)> = vec![
        (
            "renamed",
            redis::cmd("RENAME").arg("key:2").arg("renamed").clone(),
        ),
        (
            "copied",
            redis::cmd("COPY").arg("key:3").arg("copied").clone(),
        ),
        ("moved", redis::cmd("MOVE").arg("key:4").arg(1).clone()),
    ];
    for (name, cmd) in &moved {
        // The key may already be removed; either way it must not come back.
        let _: redis::RedisResult<redis::Value> = cmd.query(&mut con);
        if *name == "moved" {
            select(&mut con, 1);
            assert_eq!(hc_get(&mut con, "key:4"), None, "moved");
            select(&mut con, 0);
        } else {
            assert_eq!(hc_get(&mut con, *name), None, "{name}");
        }
    }
    // A dump taken before the invalidation is a value of its own: restoring it writes it back.
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE").arg("restored").arg(0).arg(dump),
    );
    assert_eq!(hc_get(&mut con, "restored"), Some(b"value".to_vec()));
    // A dump of a logically deleted entry restores as deleted.
    hc_set(&mut con, "late", "v", &["late"]);
    assert_eq!(hc_deltag(&mut con, &["late"]), 1);
    // (Unless the removal timer was quicker than this DUMP, which then finds nothing.)
    if let Ok(redis::Value::BulkString(payload)) = call(&mut con, &["DUMP", "late"]) {
        let _: () = query(
            &mut con,
            redis::cmd("RESTORE").arg("late2").arg(0).arg(payload),
        );
        assert_eq!(hc_get(&mut con, "late2"), None);
    }
    wait_removals_done(&mut con);
    let keys: Vec<String> = query(&mut con, redis::cmd("KEYS").arg("*"));
    assert_eq!(keys, ["restored"]);
    select(&mut con, 1);
    let keys: Vec<String> = query(&mut con, redis::cmd("KEYS").arg("*"));
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn a_replica_never_returns_invalidated_entries_and_is_emptied_by_the_primary() {
    let primary = RedisServer::new();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    let mut pcon = primary.connection();
    let mut rcon = replica.connection();
    fill(&mut pcon, "key", N);
    replica.wait_in_sync_with(&primary);
    let replica_events = Subscriber::new(&replica);
    assert_eq!(hc_deltag(&mut pcon, &["big"]), N as i64);
    replica.wait_in_sync_with(&primary);
    assert_all_gone(&mut rcon, "key", N);
    wait_removals_done(&mut pcon);
    replica.wait_in_sync_with(&primary);
    wait_removals_done(&mut rcon);
    let dbsize: i64 = query(&mut rcon, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 0);
    let events =
        replica_events.events_until_quiet(QUIET_PERIOD, std::time::Duration::from_secs(10));
    assert_eq!(
        events.len(),
        1,
        "the replica announces the tag once, not each removal"
    );
}

#[test]
fn invalidated_entries_stay_gone_across_an_rdb_reload_and_a_restart() {
    let mut server = RedisServer::new();
    let mut con = server.connection();
    fill(&mut con, "key", N);
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    assert_all_gone(&mut con, "key", N);
    fill(&mut con, "again", N);
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    server.restart();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    assert_all_gone(&mut con, "again", N);
    wait_removals_done(&mut con);
    let dbsize: i64 = query(&mut con, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 0);
}

#[test]
fn invalidated_entries_stay_gone_across_an_aof_restart() {
    let mut server = RedisServer::builder()
        .args(["--appendonly", "yes", "--aof-use-rdb-preamble", "no"])
        .start();
    let mut con = server.connection();
    fill(&mut con, "key", N);
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    server.restart();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    assert_all_gone(&mut con, "key", N);
    wait_removals_done(&mut con);
    let dbsize: i64 = query(&mut con, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 0);
}

#[test]
fn eviction_never_brings_an_invalidated_entry_back() {
    let server = RedisServer::new();
    let mut con = server.connection();
    fill(&mut con, "key", N);
    let used = info_i64(&mut con, "memory", "used_memory");
    assert_eq!(hc_deltag(&mut con, &["big"]), N as i64);
    let _: () = query(
        &mut con,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used * 3 / 4)
            .arg("maxmemory-policy")
            .arg("allkeys-lru"),
    );
    // Push memory over the limit so that Redis evicts while removals are pending.
    let value = vec![b'x'; 2000];
    for i in 0..2000 {
        let _: () = query(
            &mut con,
            redis::cmd(command::SET)
                .arg(format!("filler:{i}"))
                .arg(value.as_slice()),
        );
        if i % 200 == 0 {
            assert_eq!(hc_get(&mut con, format!("key:{i}")), None);
        }
    }
    let evicted = info_i64(&mut con, "stats", "evicted_keys");
    assert!(evicted > 0, "the test must evict");
    let _: () = query(
        &mut con,
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0),
    );
    assert_all_gone(&mut con, "key", N);
    wait_removals_done(&mut con);
    assert_eq!(pending(&mut con), 0);
    let stones = info_i64(&mut con, "hybridcache", "hybridcache_tombstones");
    assert_eq!(
        stones, 0,
        "tombstones are dropped once their keys are removed"
    );
}
