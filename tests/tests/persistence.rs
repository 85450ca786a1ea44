//! Entries, tags, TTLs and the index survive RDB and AOF reloads.

use hybridcache_tests::hc::{
    all_keys, hc_deltag, hc_get, hc_get_str, hc_set, hc_set_with, pttl, query, select, tagcard,
    tagkeys, tags, wait_removals_done,
};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::info::info_section;
use hybridcache_tests::{wait_until, HcInfo, RedisServer, Shutdown};
use std::time::Duration;

/// A dataset touching every persisted feature: tags, shared tags, no tags, TTLs, binary
/// names, a second database, a deleted tag.
fn write_dataset(con: &mut redis::Connection) {
    hc_set(con, "user:1", "alice", &["team:7", "users"]);
    hc_set(con, "user:2", "bob", &["team:8", "users"]);
    hc_set(con, "plain-entry", "no tags", &[]);
    hc_set_with(con, "session", "s", &["EX", "1000"], &["sessions"]);
    hc_set(
        con,
        b"bin\x00\xff".as_slice(),
        b"\x00\xff".as_slice(),
        &["bin"],
    );
    hc_set(con, "gone:1", "x", &["gone"]);
    hc_set(con, "gone:2", "x", &["gone", "users"]);
    assert_eq!(hc_deltag(con, &["gone"]), 2);
    select(con, 1);
    hc_set(con, "user:1", "db1", &["team:7"]);
    select(con, 0);
}

/// Checks the dataset of [`write_dataset`], value by value and tag by tag.
fn check_dataset(con: &mut redis::Connection) {
    select(con, 0);
    assert_eq!(hc_get_str(con, "user:1").as_deref(), Some("alice"));
    assert_eq!(hc_get_str(con, "user:2").as_deref(), Some("bob"));
    assert_eq!(hc_get_str(con, "plain-entry").as_deref(), Some("no tags"));
    assert_eq!(
        hc_get(con, b"bin\x00\xff".as_slice()),
        Some(b"\x00\xff".to_vec())
    );
    assert_eq!(tags(con, "user:1"), ["team:7", "users"]);
    assert_eq!(tags(con, "plain-entry"), Vec::<String>::new());
    assert_eq!(tagkeys(con, "users"), ["user:1", "user:2"]);
    assert_eq!(tagkeys(con, "team:7"), ["user:1"]);
    assert_eq!(tagkeys(con, "sessions"), ["session"]);
    assert_eq!(tagcard(con, b"bin".as_slice()), 1);
    assert_eq!(tagcard(con, "gone"), 0);
    let ttl = pttl(con, "session");
    assert!(ttl > 0 && ttl <= 1_000_000, "PTTL session {ttl}");
    assert_eq!(pttl(con, "user:1"), -1);
    assert_eq!(all_keys(con).len(), 5);
    select(con, 1);
    assert_eq!(hc_get_str(con, "user:1").as_deref(), Some("db1"));
    assert_eq!(tagkeys(con, "team:7"), ["user:1"]);
    assert_eq!(tagcard(con, "users"), 0);
    select(con, 0);
    let info = HcInfo::read(con);
    assert_eq!((info.keys, info.tag_links), (6, 7), "{info:?}");
}

#[test]
fn debug_reload_keeps_values_tags_ttls_and_index() {
    let server = RedisServer::new();
    let mut con = server.connection();
    write_dataset(&mut con);
    wait_removals_done(&mut con);
    let before = HcInfo::read(&mut con).counts();
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    check_dataset(&mut con);
    assert_eq!(HcInfo::read(&mut con).counts(), before);
}

#[test]
fn save_and_restart_keeps_values_tags_ttls_and_index() {
    let mut server = RedisServer::new();
    let mut con = server.connection();
    write_dataset(&mut con);
    wait_removals_done(&mut con);
    let before = HcInfo::read(&mut con).counts();
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    server.kill();
    server.start_again();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    check_dataset(&mut con);
    assert_eq!(HcInfo::read(&mut con).counts(), before);
}

#[test]
fn shutdown_save_and_restart_keeps_the_index() {
    let mut server = RedisServer::new();
    write_dataset(&mut server.connection());
    server.shutdown(Shutdown::Save);
    server.start_again();
    assert_check_clean(&mut server.connection());
    check_dataset(&mut server.connection());
}

#[test]
fn index_works_normally_after_an_rdb_reload() {
    let server = RedisServer::new();
    let mut con = server.connection();
    write_dataset(&mut con);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    hc_set(&mut con, "user:3", "carol", &["users"]);
    assert_eq!(tagkeys(&mut con, "users"), ["user:1", "user:2", "user:3"]);
    assert_eq!(hc_deltag(&mut con, &["users"]), 3);
    assert_eq!(tagcard(&mut con, "team:7"), 0);
    select(&mut con, 1);
    assert_eq!(tagkeys(&mut con, "team:7"), ["user:1"]);
}

#[test]
fn ttl_survives_a_reload_and_does_not_grow() {
    let mut server = RedisServer::new();
    let mut con = server.connection();
    hc_set_with(&mut con, "k", "v", &["PX", "60000"], &["t"]);
    let before = pttl(&mut con, "k");
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    server.kill();
    server.start_again();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    let after = pttl(&mut con, "k");
    assert!(
        after > 0 && after <= before,
        "PTTL {before} before, {after} after"
    );
    assert_eq!(tagkeys(&mut con, "t"), ["k"]);
}

#[test]
fn entry_that_expired_while_down_is_gone_from_the_index_after_restart() {
    let mut server = RedisServer::new();
    let mut con = server.connection();
    hc_set_with(&mut con, "short", "v", &["PX", "300"], &["t"]);
    hc_set(&mut con, "long", "v", &["t"]);
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    server.kill();
    std::thread::sleep(Duration::from_millis(400));
    server.start_again();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    assert_eq!(hc_get(&mut con, "short"), None);
    assert_eq!(tagkeys(&mut con, "t"), ["long"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

fn aof_server(extra: &[&str]) -> RedisServer {
    RedisServer::builder()
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(extra.iter().copied())
        .start()
}

fn wait_for_aof_rewrite(con: &mut redis::Connection) {
    wait_until(Duration::from_secs(20), "BGREWRITEAOF to finish", || {
        let p = info_section(con, "persistence");
        p.get("aof_rewrite_in_progress").map(String::as_str) == Some("0")
            && p.get("aof_rewrite_scheduled").map(String::as_str) == Some("0")
    });
    let p = info_section(con, "persistence");
    assert_eq!(
        p.get("aof_last_bgrewrite_status").map(String::as_str),
        Some("ok"),
        "{p:?}"
    );
}

#[test]
fn aof_restart_replays_values_tags_ttls_and_index() {
    let mut server = aof_server(&[]);
    let mut con = server.connection();
    write_dataset(&mut con);
    server.restart();
    assert_check_clean(&mut server.connection());
    check_dataset(&mut server.connection());
}

#[test]
fn aof_restart_after_kill_replays_the_written_commands() {
    let mut server = aof_server(&[]);
    write_dataset(&mut server.connection());
    server.kill();
    server.start_again();
    assert_check_clean(&mut server.connection());
    check_dataset(&mut server.connection());
}

/// The contents of the base file of the multi-part AOF (Redis 7: `appendonlydir/*.base.*`).
fn aof_base(server: &RedisServer) -> Vec<u8> {
    let dir = server.dir().join("appendonlydir");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let base = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".base."))
        .unwrap_or_else(|| panic!("no AOF base file in {}", dir.display()));
    std::fs::read(&base).unwrap_or_else(|e| panic!("cannot read {}: {e}", base.display()))
}

#[test]
fn aof_rewrite_without_rdb_preamble_then_restart_keeps_everything() {
    let mut server = aof_server(&["--aof-use-rdb-preamble", "no"]);
    let mut con = server.connection();
    write_dataset(&mut con);
    let _: String = query(&mut con, &redis::cmd("BGREWRITEAOF"));
    wait_for_aof_rewrite(&mut con);
    // The rewrite wrote commands (the module's AOF rewrite callback), not an RDB preamble.
    let base = aof_base(&server);
    assert!(
        base.starts_with(b"*"),
        "AOF base starts with {:?}",
        &base[..base.len().min(16)]
    );
    assert!(
        base.windows(5).any(|w| w == b"alice"),
        "the rewritten AOF does not hold the entry values"
    );
    server.restart();
    assert_check_clean(&mut server.connection());
    check_dataset(&mut server.connection());
}

#[test]
fn writes_after_an_aof_rewrite_are_replayed_on_top_of_it() {
    let mut server = aof_server(&["--aof-use-rdb-preamble", "no"]);
    let mut con = server.connection();
    write_dataset(&mut con);
    let _: String = query(&mut con, &redis::cmd("BGREWRITEAOF"));
    wait_for_aof_rewrite(&mut con);
    assert_eq!(hc_deltag(&mut con, &["users"]), 2);
    hc_set(&mut con, "after", "rewrite", &["users", "team:7"]);
    server.restart();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    assert_eq!(hc_get_str(&mut con, "after").as_deref(), Some("rewrite"));
    assert_eq!(hc_get(&mut con, "user:1"), None);
    assert_eq!(tagkeys(&mut con, "users"), ["after"]);
    assert_eq!(tagkeys(&mut con, "team:7"), ["after"]);
    assert_eq!(tagkeys(&mut con, "sessions"), ["session"]);
}

#[test]
fn aof_rewrite_with_rdb_preamble_then_restart_keeps_everything() {
    let mut server = aof_server(&["--aof-use-rdb-preamble", "yes"]);
    let mut con = server.connection();
    write_dataset(&mut con);
    let _: String = query(&mut con, &redis::cmd("BGREWRITEAOF"));
    wait_for_aof_rewrite(&mut con);
    server.restart();
    assert_check_clean(&mut server.connection());
    check_dataset(&mut server.connection());
}

#[test]
fn aof_rewrite_keeps_ttls_absolute() {
    let mut server = aof_server(&["--aof-use-rdb-preamble", "no"]);
    let mut con = server.connection();
    hc_set_with(&mut con, "k", "v", &["PX", "60000"], &["t"]);
    let expire_at: i64 = query(&mut con, redis::cmd("PEXPIRETIME").arg("k"));
    let _: String = query(&mut con, &redis::cmd("BGREWRITEAOF"));
    wait_for_aof_rewrite(&mut con);
    server.restart();
    assert_check_clean(&mut server.connection());
    let mut con = server.connection();
    let after: i64 = query(&mut con, redis::cmd("PEXPIRETIME").arg("k"));
    assert_eq!(after, expire_at);
    assert_eq!(tagkeys(&mut con, "t"), ["k"]);
}
