//! Full syncs loaded without a file (`repl-diskless-load`): the module must not change how a
//! replica loads (Redis falls back to a disk load unless every module declares it copes,
//! src/replication.c `useDisklessLoad()`), and after every kind of load the replica's tag
//! index equals its keyspace and its primary's index.
//!
//! With `swapdb` the replica loads into temporary databases and swaps them in at the end;
//! when its replication id matches the primary's (a reconnect whose partial resync failed)
//! it serves the old data meanwhile (*async loading*), tag queries included.

use hybridcache_protocol::Op;
use hybridcache_tests::hc::{
    hc_get_str, hc_set, query, select, tagcard, tagkeys, wait_removals_done,
};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::info::info_section;
use hybridcache_tests::server::scaled;
use hybridcache_tests::{wait_until, RedisServer, Subscriber, QUIET_PERIOD};
use std::time::Duration;

/// Databases the datasets use: entries outside database 0 catch an index built with the
/// wrong database (Redis 7.0's temporary databases all report database 0).
const DBS: [u32; 3] = [0, 1, 2];

/// Tags the datasets use, old and new.
const TAGS: [&str; 7] = ["t:a", "t:b", "t:c", "t:new", "t:moved", "own", "stale"];

/// Entries per database: with values of 1 KiB and `loading-process-events-interval-bytes`
/// at its minimum, a replica loading them answers between two entries.
const ENTRIES: usize = 60;

/// Plain keys of 1 KiB beside the entries, so that a slowed-down sync lasts long enough for
/// the checks made while the replica loads it (it answers about one command per key).
const FILLERS: usize = 3000;

/// How a sync is slowed down so that the replica is caught in the middle of loading it.
#[derive(Clone, Copy)]
enum Slow {
    /// The replica's `key-load-delay`, 20 ms per key (over a minute in all) until the test
    /// lifts it: the checks made meanwhile never race the end of the load, however slowly
    /// the test runs.
    ReplicaLoad,
    /// The primary's `rdb-key-save-delay`, 10 ms per key, for a sync that is cut short:
    /// slowing the replica instead would not do, since the whole sync fits in the socket
    /// buffers and the replica would finish it after its primary dropped the link.
    PrimarySave,
}

/// A primary that sends full syncs straight from its fork (no file, no delay) and keeps a
/// backlog small enough to make a partial resync fail. Uncompressed, so that every value
/// takes its 1 KiB in the sync (a loading replica answers once per KiB received).
fn diskless_primary() -> RedisServer {
    RedisServer::builder()
        .args(["--rdbcompression", "no"])
        .args(["--repl-diskless-sync", "yes"])
        .args(["--repl-diskless-sync-delay", "0"])
        .args(["--repl-backlog-size", "16384"])
        .start()
}

/// A server loading full syncs with `repl-diskless-load mode`, answering clients between
/// loaded entries.
fn replica_builder(mode: &str) -> hybridcache_tests::ServerBuilder {
    RedisServer::builder()
        .args(["--repl-diskless-load", mode])
        .args(["--loading-process-events-interval-bytes", "1024"])
}

fn value(generation: &str, i: usize) -> String {
    format!("{generation}:{i}:{}", "x".repeat(1024))
}

/// Writes the first dataset: `item:i` in every database, tagged `t:a`/`t:b`/`t:c` by `i % 3`.
fn write_first_dataset(con: &mut redis::Connection) {
    for db in DBS {
        select(con, db);
        for i in 0..ENTRIES {
            let tag = ["t:a", "t:b", "t:c"][i % 3];
            hc_set(con, format!("item:{i}"), value("v1", i), &[tag]);
        }
    }
    select(con, 0);
}

/// The changes from the first dataset to the second, in every database: `t:a` removed by
/// tag, odd `t:b` entries deleted, `t:c` entries rewritten under `t:moved`, new entries
/// under `t:new`. Replies are not checked: this also runs inside `MULTI` (`QUEUED`).
fn change_to_second_dataset(con: &mut redis::Connection) {
    let mut run = |cmd: &mut redis::Cmd| {
        let _: redis::Value = query(con, cmd);
    };
    for db in DBS {
        run(redis::cmd("SELECT").arg(db));
        run(redis::cmd("HC.DELTAG").arg("t:a"));
        for i in 0..ENTRIES {
            let key = format!("item:{i}");
            match i % 3 {
                1 if i % 2 == 1 => run(redis::cmd("HC.DEL").arg(&key)),
                2 => run(redis::cmd("HC.SET")
                    .arg(&key)
                    .arg(value("v2", i))
                    .arg("TAGS")
                    .arg("t:moved")),
                _ => {}
            }
            run(redis::cmd("HC.SET")
                .arg(format!("new:{i}"))
                .arg(value("v2", i))
                .arg("TAGS")
                .arg("t:new")
                .arg("t:b"));
        }
    }
    run(redis::cmd("SELECT").arg(0));
}

/// Entries only the replica holds before its sync, under names and tags of both datasets.
fn write_replica_only_data(con: &mut redis::Connection) {
    for db in DBS {
        select(con, db);
        hc_set(con, "own:1", "mine", &["own", "t:a"]);
        hc_set(con, "item:0", "stale", &["stale", "t:c"]);
    }
    select(con, 0);
}

/// Every (database, tag) → its keys (sorted) and its card.
fn index_snapshot(con: &mut redis::Connection) -> Vec<(u32, &'static str, Vec<String>, i64)> {
    let mut out = Vec::new();
    for db in DBS {
        select(con, db);
        for tag in TAGS {
            let mut keys = tagkeys(con, tag);
            keys.sort();
            out.push((db, tag, keys, tagcard(con, tag)));
        }
    }
    select(con, 0);
    out
}

fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> String {
    info_section(con, section)
        .get(field)
        .cloned()
        .unwrap_or_default()
}

fn set_config(con: &mut redis::Connection, name: &str, value: u32) {
    let _: () = query(con, redis::cmd("CONFIG").arg("SET").arg(name).arg(value));
}

fn async_loading(con: &mut redis::Connection) -> bool {
    info_field(con, "persistence", "async_loading") == "1"
}

/// Asserts that the replica loaded its full sync without a file, as configured: the module
/// did not make Redis fall back to a disk load.
fn assert_loaded_diskless(replica: &RedisServer) {
    let log = replica.log();
    assert!(
        !log.contains("Skipping diskless-load"),
        "the replica fell back to a disk load because of the module:\n{}",
        replica.log_tail()
    );
    assert!(
        log.contains("to parser"),
        "the replica did not load its sync from the socket:\n{}",
        replica.log_tail()
    );
}

/// The `loaded` events among `events`; a sync must announce exactly one and no flush of
/// its own besides.
fn assert_one_loaded_event(events: &[hybridcache_protocol::InvalidationEvent], what: &str) {
    let loaded = events.iter().filter(|e| e.op == Op::Loaded).count();
    assert_eq!(loaded, 1, "{what}: events {events:?}");
}

/// The replica's index equals its keyspace and the primary's index.
fn assert_replica_index_matches_primary(primary: &RedisServer, replica: &RedisServer) {
    let (mut p, mut r) = (primary.connection(), replica.connection());
    wait_removals_done(&mut p);
    replica.wait_in_sync_with(primary);
    assert_check_clean(&mut r);
    assert_eq!(index_snapshot(&mut r), index_snapshot(&mut p));
    for db in DBS {
        select(&mut r, db);
        assert_eq!(tagcard(&mut r, "own"), 0, "replica-only tag in db {db}");
        assert_eq!(tagcard(&mut r, "stale"), 0, "replica-only tag in db {db}");
    }
}

#[test]
fn swapdb_sync_into_a_replica_holding_other_entries_loads_diskless_and_replaces_its_index() {
    let primary = diskless_primary();
    let mut p = primary.connection();
    write_first_dataset(&mut p);
    change_to_second_dataset(&mut p);
    let replica = replica_builder("swapdb").start();
    let mut r = replica.connection();
    write_replica_only_data(&mut r);
    let sub = Subscriber::new(&replica);

    let _: () = query(
        &mut r,
        redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary.port()),
    );
    replica.wait_in_sync_with(&primary);

    assert_loaded_diskless(&replica);
    assert_replica_index_matches_primary(&primary, &replica);
    let events = sub.events_until_quiet(QUIET_PERIOD, scaled(Duration::from_secs(5)));
    assert_one_loaded_event(&events, "swapdb sync");
}

/// Starts a primary with the first dataset and a `swapdb` replica in sync with it; then,
/// with the next sync slowed down as `slow` says, the primary drops the replica and changes
/// to the second dataset, overflowing its backlog, so the replica's reconnect ends in a full
/// sync with the same replication id: an async load.
fn start_async_load(slow: Slow) -> (RedisServer, RedisServer, Vec<SnapshotRow>) {
    let primary = diskless_primary();
    let mut p = primary.connection();
    write_first_dataset(&mut p);
    let mut fill = redis::pipe();
    for i in 0..FILLERS {
        fill.cmd("SET")
            .arg(format!("filler:{i}"))
            .arg("f".repeat(1024))
            .ignore();
    }
    let _: () = fill
        .query(&mut p)
        .unwrap_or_else(|e| panic!("fillers: {e}"));
    let replica = replica_builder("swapdb").replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    let mut r = replica.connection();
    assert_check_clean(&mut r);
    let before = index_snapshot(&mut r);
    let (server, config, delay_us) = match slow {
        Slow::ReplicaLoad => (&mut r, "key-load-delay", 20_000),
        Slow::PrimarySave => (&mut p, "rdb-key-save-delay", 10_000),
    };
    set_config(server, config, delay_us);

    let _: () = query(&mut p, &redis::cmd("MULTI"));
    let _: () = query(
        &mut p,
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
    );
    change_to_second_dataset(&mut p);
    for i in 0..20 {
        let _: () = query(
            &mut p,
            redis::cmd("SET")
                .arg(format!("filler:{i}"))
                .arg("f".repeat(16384)),
        );
    }
    let _: redis::Value = query(&mut p, &redis::cmd("EXEC"));
    (primary, replica, before)
}

type SnapshotRow = (u32, &'static str, Vec<String>, i64);

fn wait_async_loading(replica: &RedisServer) {
    let mut r = replica.connection();
    wait_until(
        scaled(Duration::from_secs(15)),
        "the replica to start an async load",
        || async_loading(&mut r),
    );
}

/// While the replica loads, it serves the old data: values, tag queries, `HC.CHECK`.
fn assert_serves_first_dataset(replica: &RedisServer, before: &[SnapshotRow]) {
    let mut r = replica.connection();
    assert_eq!(
        hc_get_str(&mut r, "item:1").as_deref(),
        Some(value("v1", 1).as_str())
    );
    assert_eq!(hc_get_str(&mut r, "new:1"), None);
    let during = index_snapshot(&mut r);
    let differing: Vec<_> = during.iter().filter(|row| !before.contains(row)).collect();
    assert!(
        differing.is_empty(),
        "tag queries during the load differ from before it: {differing:?}\n{}",
        replica.log_tail()
    );
    assert_check_clean(&mut r);
    assert!(
        async_loading(&mut r),
        "the async load ended before the checks ran: they proved nothing (slow the load down)"
    );
}

#[test]
fn async_load_serves_the_old_index_until_the_swap_then_the_new_one() {
    let (primary, replica, before) = start_async_load(Slow::ReplicaLoad);
    let sub = Subscriber::new(&replica);
    wait_async_loading(&replica);
    assert_serves_first_dataset(&replica, &before);
    sub.assert_no_event(Duration::from_millis(100));
    set_config(&mut replica.connection(), "key-load-delay", 0);

    assert_replica_index_matches_primary(&primary, &replica);
    assert_loaded_diskless(&replica);
    let mut r = replica.connection();
    assert_eq!(
        hc_get_str(&mut r, "new:1").as_deref(),
        Some(value("v2", 1).as_str())
    );
    let events = sub.events_until_quiet(QUIET_PERIOD, scaled(Duration::from_secs(5)));
    assert_one_loaded_event(&events, "async load");
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.op, Op::Flushall | Op::Flushdb)),
        "a swap is announced as a load, not a flush: {events:?}"
    );
}

#[test]
fn an_aborted_async_load_keeps_the_old_index_and_announces_nothing() {
    let (primary, replica, before) = start_async_load(Slow::PrimarySave);
    let sub = Subscriber::new(&replica);
    wait_async_loading(&replica);
    let mut p = primary.connection();
    // The next attempt waits, so that the replica is seen between two syncs.
    let _: () = query(
        &mut p,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg(3),
    );
    let _: () = query(
        &mut p,
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
    );
    let mut r = replica.connection();
    wait_until(
        scaled(Duration::from_secs(10)),
        "the replica to give up its load",
        || !async_loading(&mut r),
    );
    assert_eq!(
        info_field(&mut r, "replication", "master_link_status"),
        "down"
    );
    assert_eq!(index_snapshot(&mut r), before);
    assert_check_clean(&mut r);
    assert_eq!(
        hc_get_str(&mut r, "item:1").as_deref(),
        Some(value("v1", 1).as_str())
    );
    sub.assert_no_event(Duration::from_millis(200));

    // The next sync succeeds and replaces the data.
    set_config(&mut p, "rdb-key-save-delay", 0);
    assert_replica_index_matches_primary(&primary, &replica);
    let events = sub.events_until_quiet(QUIET_PERIOD, scaled(Duration::from_secs(5)));
    assert_one_loaded_event(&events, "the sync after the aborted one");
}

/// A replica that loads a full sync into its live databases (`on-empty-db` with an empty
/// keyspace from the socket, `disabled` from a file) ends with the primary's index.
fn live_load_sync(mode: &str) -> RedisServer {
    let primary = diskless_primary();
    let mut p = primary.connection();
    write_first_dataset(&mut p);
    change_to_second_dataset(&mut p);
    let replica = replica_builder(mode).start();
    let sub = Subscriber::new(&replica);
    let mut r = replica.connection();
    let _: () = query(
        &mut r,
        redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary.port()),
    );
    replica.wait_in_sync_with(&primary);
    assert_replica_index_matches_primary(&primary, &replica);
    let events = sub.events_until_quiet(QUIET_PERIOD, scaled(Duration::from_secs(5)));
    assert_one_loaded_event(&events, mode);
    replica
}

#[test]
fn on_empty_db_sync_loads_from_the_socket_with_the_primary_index() {
    let replica = live_load_sync("on-empty-db");
    assert_loaded_diskless(&replica);
}

#[test]
fn disabled_diskless_load_syncs_through_a_file_with_the_primary_index() {
    let replica = live_load_sync("disabled");
    assert!(replica.log().contains("to disk"), "{}", replica.log_tail());
}
