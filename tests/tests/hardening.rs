//! Hostile input and edge cases that once crashed or misled the module.

use hybridcache_protocol::command;
use hybridcache_tests::hc::{call, hc_deltag, hc_get, hc_set, query, tagkeys, wait_removals_done};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::{module_path, wait_until, RedisServer, Subscriber, QUIET_PERIOD};
use std::time::Duration;

fn used_memory(con: &mut redis::Connection) -> i64 {
    hybridcache_tests::info::info_i64(con, "memory", "used_memory")
}

#[test]
fn unknown_option_in_any_script_is_an_error_and_the_server_stays_up() {
    let server = RedisServer::new();
    let mut con = server.connection();
    for option in ["一", "Ā", "%s%n", "é\0x"] {
        let err = call(&mut con, &[command::SET, "k", "v", option]).unwrap_err();
        assert!(err.starts_with("ERR syntax error, unknown option"), "{err}");
    }
    let pong: String = query(&mut con, &redis::cmd("PING"));
    assert_eq!(pong, "PONG");
}

#[test]
fn truncated_restore_payload_is_refused_and_nothing_is_lost() {
    let server = RedisServer::new();
    let mut con = server.connection();
    hc_set(&mut con, "k", "a value long enough to cut", &["t1", "t2"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    let _: () = query(
        &mut con,
        redis::cmd("DEBUG")
            .arg("SET-SKIP-CHECKSUM-VALIDATION")
            .arg(1),
    );
    let (body, footer) = dump.split_at(dump.len() - 10);
    for cut in [1, 6, 20] {
        let mut payload = body[..body.len() - cut].to_vec();
        payload.extend_from_slice(footer);
        let reply = call(
            &mut con,
            &[&b"RESTORE"[..], b"copy", b"0", payload.as_slice()],
        );
        assert!(reply.is_err(), "cut {cut}: {reply:?}");
    }
    let pong: String = query(&mut con, &redis::cmd("PING"));
    assert_eq!(pong, "PONG");
    assert_eq!(tagkeys(&mut con, "t1"), ["k"]);
}

#[test]
fn percent_signs_in_load_arguments_are_refused_without_crashing() {
    let server = RedisServer::builder().without_module().start();
    let mut con = server.connection();
    let path = module_path().display().to_string();
    let reply = call(&mut con, &["MODULE", "LOAD", &path, "%s%s%s%s%s%s%s%s%n"]);
    assert!(reply.is_err(), "{reply:?}");
    let pong: String = query(&mut con, &redis::cmd("PING"));
    assert_eq!(pong, "PONG");
    let log = server.log();
    assert!(
        log.contains("unknown load argument '?s?s?s?s?s?s?s?s?n'"),
        "{log}"
    );
}

#[test]
fn config_get_of_the_channel_does_not_leak() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let long_name = "c".repeat(5000);
    let _: () = query(
        &mut con,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("hybridcache.channel")
            .arg(&long_name),
    );
    let get = || {
        let mut pipe = redis::pipe();
        for _ in 0..2000 {
            pipe.cmd("CONFIG")
                .arg("GET")
                .arg("hybridcache.channel")
                .ignore();
        }
        pipe
    };
    let _: () = get().query(&mut con).unwrap();
    let before = used_memory(&mut con);
    for _ in 0..10 {
        let _: () = get().query(&mut con).unwrap();
    }
    let grown = used_memory(&mut con) - before;
    // 20,000 reads of a 5 KB value: a leak would be about 100 MB.
    assert!(grown < 4 * 1024 * 1024, "used_memory grew by {grown} bytes");
    let value: Vec<String> = query(
        &mut con,
        redis::cmd("CONFIG").arg("GET").arg("hybridcache.channel"),
    );
    assert_eq!(value, ["hybridcache.channel".to_string(), long_name]);
}

fn wait_for_rewrite(con: &mut redis::Connection) {
    wait_until(Duration::from_secs(10), "the AOF rewrite to finish", || {
        let info: String = query(con, redis::cmd("INFO").arg("persistence"));
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
}

#[test]
fn deltag_replayed_from_the_aof_after_its_rdb_preamble_deletes_the_keys() {
    let mut server = RedisServer::builder()
        .args(["--appendonly", "yes", "--aof-use-rdb-preamble", "yes"])
        .start();
    let mut con = server.connection();
    hc_set(&mut con, "k1", "v", &["t"]);
    hc_set(&mut con, "k2", "v", &["t", "u"]);
    hc_set(&mut con, "other", "v", &["u"]);
    let _: String = query(&mut con, &redis::cmd("BGREWRITEAOF"));
    wait_for_rewrite(&mut con);
    assert_eq!(hc_deltag(&mut con, &["t"]), 2);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("LOADAOF"));
    assert_eq!(hc_get(&mut con, "k1"), None, "gone at once after the load");
    assert_eq!(tagkeys(&mut con, "u"), ["other"]);
    wait_removals_done(&mut con);
    let keys: Vec<String> = query(&mut con, redis::cmd("KEYS").arg("*"));
    assert_eq!(keys, ["other"]);
    server.restart();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    let keys: Vec<String> = query(&mut con, redis::cmd("KEYS").arg("*"));
    assert_eq!(keys, ["other"]);
    assert_eq!(tagkeys(&mut con, "u"), ["other"]);
}

#[test]
fn tag_commands_honour_acl_key_patterns() {
    let server = RedisServer::new();
    let mut admin = server.connection();
    hc_set(&mut admin, "pub:1", "v", &["shared", "public"]);
    hc_set(&mut admin, "secret:1", "v", &["shared"]);
    let _: () = query(
        &mut admin,
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("bob")
            .arg("on")
            .arg(">pw")
            .arg("~pub:*")
            .arg("+@all"),
    );
    let mut bob = server.connection();
    let _: () = query(&mut bob, redis::cmd("AUTH").arg("bob").arg("pw"));
    assert_eq!(tagkeys(&mut bob, "shared"), ["pub:1"]);
    let err = call(&mut bob, &[command::DELTAG, "shared"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    let mut all = tagkeys(&mut admin, "shared");
    all.sort();
    assert_eq!(
        all,
        ["pub:1", "secret:1"],
        "a refused HC.DELTAG removes nothing"
    );
    assert_eq!(hc_deltag(&mut bob, &["public"]), 1);
    let err = call(&mut bob, &[command::GET, "secret:1"]).unwrap_err();
    assert!(
        err.starts_with("NOPERM"),
        "key commands are checked by Redis itself: {err}"
    );
}

#[test]
fn writes_that_change_nothing_do_not_abort_a_watching_transaction() {
    let server = RedisServer::new();
    let mut watcher = server.connection();
    let mut other = server.connection();
    hc_set(&mut other, "w", "v", &[]);
    let _: () = query(&mut watcher, redis::cmd("WATCH").arg("w").arg("missing"));
    let refused: redis::Value = query(
        &mut other,
        redis::cmd(command::SET).arg("w").arg("v2").arg("NX"),
    );
    assert_eq!(refused, redis::Value::Nil);
    let _: i64 = query(&mut other, redis::cmd(command::DEL).arg("missing"));
    let _: () = query(&mut watcher, &redis::cmd("MULTI"));
    let _: () = query(&mut watcher, redis::cmd("SET").arg("x").arg(1));
    let exec: redis::Value = query(&mut watcher, &redis::cmd("EXEC"));
    assert_ne!(exec, redis::Value::Nil, "the transaction was aborted");
}

#[test]
fn pxat_in_the_past_on_a_missing_key_changes_and_publishes_nothing() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    let reply: String = query(
        &mut con,
        redis::cmd(command::SET)
            .arg("k")
            .arg("v")
            .arg("PXAT")
            .arg(1000),
    );
    assert_eq!(reply, "OK");
    sub.assert_no_event(QUIET_PERIOD);
    let exists: bool = query(&mut con, redis::cmd("EXISTS").arg("k"));
    assert!(!exists);
}

fn replica_index_matches_after_diskless_load(mode: &str) {
    let primary = RedisServer::builder()
        .args(["--repl-diskless-sync", "yes"])
        .start();
    let mut pcon = primary.connection();
    for i in 0..50 {
        hc_set(
            &mut pcon,
            format!("k{i}"),
            "v",
            &[if i % 2 == 0 { "even" } else { "odd" }],
        );
    }
    let replica = RedisServer::builder()
        .args(["--repl-diskless-load", mode])
        .replica_of(&primary)
        .start();
    replica.wait_in_sync_with(&primary);
    let mut rcon = replica.connection();
    for tag in ["even", "odd"] {
        let mut on_primary = tagkeys(&mut pcon, tag);
        let mut on_replica = tagkeys(&mut rcon, tag);
        on_primary.sort();
        on_replica.sort();
        assert_eq!(on_replica.len(), 25, "{mode}: {tag}");
        assert_eq!(on_replica, on_primary, "{mode}: {tag}");
    }
    assert_eq!(hc_deltag(&mut pcon, &["even"]), 25);
    replica.wait_in_sync_with(&primary);
    assert!(tagkeys(&mut rcon, "even").is_empty(), "{mode}");
}

#[test]
fn replica_loading_diskless_into_an_empty_db_has_the_primarys_index() {
    replica_index_matches_after_diskless_load("on-empty-db");
}

#[test]
fn replica_configured_for_swapdb_load_has_the_primarys_index() {
    replica_index_matches_after_diskless_load("swapdb");
}
