//! The tag index follows every way a key can enter or leave the keyspace: HC commands,
//! DEL/UNLINK, expiry, eviction, RENAME, MOVE, COPY, RESTORE, FLUSHDB/FLUSHALL, SWAPDB,
//! overwrite by another command, and databases stay apart.

use hybridcache_tests::hc::{
    all_keys, call, exists, fill_past_maxmemory, hc_deltag, hc_get, hc_set, hc_set_with, query,
    select, tagcard, tagkeys, tags, wait_removals_done,
};
use hybridcache_tests::index_check::assert_check_clean;
use hybridcache_tests::info::info_i64;
use hybridcache_tests::{wait_until, HcInfo, RedisServer};
use redis::Value;
use std::time::Duration;

const EXPIRY_TIMEOUT: Duration = Duration::from_secs(5);

fn server() -> (RedisServer, redis::Connection) {
    let server = RedisServer::new();
    let con = server.connection();
    (server, con)
}

fn none() -> Vec<String> {
    Vec::new()
}

#[test]
fn plain_del_removes_the_key_from_its_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a", "b"]);
    hc_set(&mut con, "other", "v", &["b"]);
    assert_eq!(call(&mut con, &["DEL", "k"]), Ok(Value::Int(1)));
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(tagkeys(&mut con, "b"), ["other"]);
    assert_eq!(tagcard(&mut con, "a"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn unlink_removes_the_key_from_its_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(call(&mut con, &["UNLINK", "k"]), Ok(Value::Int(1)));
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn active_expiry_removes_the_key_from_its_tags() {
    let (_server, mut con) = server();
    hc_set_with(&mut con, "k", "v", &["PX", "50"], &["t"]);
    hc_set(&mut con, "stays", "v", &["t"]);
    assert_eq!(tagcard(&mut con, "t"), 2);
    // TAGCARD does not touch "k", so only active expiry can bring it to 1.
    wait_until(EXPIRY_TIMEOUT, "TAGCARD t to drop to 1", || {
        tagcard(&mut con, "t") == 1
    });
    assert_eq!(tagkeys(&mut con, "t"), ["stays"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn lazy_expiry_on_hc_get_removes_the_key_from_its_tags() {
    let (_server, mut con) = server();
    let _: () = query(
        &mut con,
        redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg(0),
    );
    hc_set_with(&mut con, "k", "v", &["PX", "20"], &["t"]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(hc_get(&mut con, "k"), None);
    assert_eq!(tagcard(&mut con, "t"), 0);
    assert_eq!(tagkeys(&mut con, "t"), none());
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn expire_command_then_expiry_removes_the_key_from_its_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["t"]);
    let _: i64 = query(&mut con, redis::cmd("PEXPIRE").arg("k").arg(30));
    wait_until(EXPIRY_TIMEOUT, "TAGCARD t to drop to 0", || {
        tagcard(&mut con, "t") == 0
    });
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn expire_in_the_past_removes_the_key_from_its_tags_at_once() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["t"]);
    assert_eq!(call(&mut con, &["EXPIRE", "k", "-1"]), Ok(Value::Int(1)));
    assert!(!exists(&mut con, "k"));
    assert_eq!(tagcard(&mut con, "t"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn eviction_keeps_the_index_equal_to_the_surviving_keys() {
    let (_server, mut con) = server();
    let written = fill_past_maxmemory(&mut con);
    let evicted = info_i64(&mut con, "stats", "evicted_keys");
    let surviving = all_keys(&mut con);
    assert_eq!(
        surviving.len() as i64 + evicted,
        written.len() as i64,
        "every written key is either present or evicted"
    );
    assert_eq!(tagcard(&mut con, "t"), surviving.len() as i64);
    assert_eq!(tagkeys(&mut con, "t"), surviving);
    for group in 0..3 {
        let tag = format!("group:{group}");
        let expected: Vec<String> = surviving
            .iter()
            .filter(|k| {
                let n: usize = k["key:".len()..].parse().unwrap();
                n % 100 % 3 == group
            })
            .cloned()
            .collect();
        assert_eq!(tagkeys(&mut con, tag.as_str()), expected, "{tag}");
    }
    let info = HcInfo::read(&mut con);
    assert_eq!(info.keys, surviving.len() as i64);
    assert_eq!(info.tag_links, 2 * surviving.len() as i64);
}

#[test]
fn rename_lists_the_new_name_and_not_the_old() {
    let (_server, mut con) = server();
    hc_set(&mut con, "old", "v", &["a", "b"]);
    let _: () = query(&mut con, redis::cmd("RENAME").arg("old").arg("new"));
    assert_eq!(tagkeys(&mut con, "a"), ["new"]);
    assert_eq!(tagkeys(&mut con, "b"), ["new"]);
    assert_eq!(tags(&mut con, "old"), none());
    assert_eq!(tags(&mut con, "new"), ["a", "b"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 2, 2));
}

#[test]
fn rename_over_a_tagged_key_drops_the_overwritten_keys_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "src", "v1", &["a"]);
    hc_set(&mut con, "dst", "v2", &["b", "a"]);
    let _: () = query(&mut con, redis::cmd("RENAME").arg("src").arg("dst"));
    assert_eq!(tagkeys(&mut con, "a"), ["dst"]);
    assert_eq!(tagkeys(&mut con, "b"), none());
    assert_eq!(tags(&mut con, "dst"), ["a"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn rename_over_a_plain_string_lists_the_new_name() {
    let (_server, mut con) = server();
    hc_set(&mut con, "src", "v", &["a"]);
    let _: () = query(&mut con, redis::cmd("SET").arg("dst").arg("plain"));
    let _: () = query(&mut con, redis::cmd("RENAME").arg("src").arg("dst"));
    assert_eq!(tagkeys(&mut con, "a"), ["dst"]);
}

#[test]
fn renaming_a_plain_string_over_a_tagged_key_drops_its_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "dst", "v", &["a"]);
    let _: () = query(&mut con, redis::cmd("SET").arg("src").arg("plain"));
    let _: () = query(&mut con, redis::cmd("RENAME").arg("src").arg("dst"));
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn rename_to_itself_keeps_the_index() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let _: () = query(&mut con, redis::cmd("RENAME").arg("k").arg("k"));
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn move_to_db1_moves_the_index_entry() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    hc_set(&mut con, "stays", "v", &["a"]);
    assert_eq!(call(&mut con, &["MOVE", "k", "1"]), Ok(Value::Int(1)));
    assert_eq!(tagkeys(&mut con, "a"), ["stays"]);
    select(&mut con, 1);
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(tagcard(&mut con, "a"), 1);
    assert_eq!(HcInfo::read(&mut con).keys, 2);
    assert_eq!(HcInfo::read(&mut con).tag_links, 2);
}

#[test]
fn move_to_a_db_where_the_key_exists_changes_nothing() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v0", &["a"]);
    select(&mut con, 1);
    hc_set(&mut con, "k", "v1", &["b"]);
    select(&mut con, 0);
    assert_eq!(call(&mut con, &["MOVE", "k", "1"]), Ok(Value::Int(0)));
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    select(&mut con, 1);
    assert_eq!(tagkeys(&mut con, "b"), ["k"]);
    assert_eq!(tagkeys(&mut con, "a"), none());
}

#[test]
fn copy_lists_both_keys() {
    let (_server, mut con) = server();
    hc_set(&mut con, "src", "v", &["a", "b"]);
    assert_eq!(call(&mut con, &["COPY", "src", "dst"]), Ok(Value::Int(1)));
    assert_eq!(tagkeys(&mut con, "a"), ["dst", "src"]);
    assert_eq!(tagkeys(&mut con, "b"), ["dst", "src"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (2, 2, 4));
}

#[test]
fn copy_replace_over_a_tagged_key_drops_the_overwritten_keys_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "src", "v", &["a"]);
    hc_set(&mut con, "dst", "v", &["b"]);
    assert_eq!(
        call(&mut con, &["COPY", "src", "dst", "REPLACE"]),
        Ok(Value::Int(1))
    );
    assert_eq!(tagkeys(&mut con, "a"), ["dst", "src"]);
    assert_eq!(tagkeys(&mut con, "b"), none());
    assert_eq!(HcInfo::read(&mut con).counts(), (2, 1, 2));
}

#[test]
fn copy_to_another_db_lists_the_key_in_both_dbs() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(
        call(&mut con, &["COPY", "k", "k2", "DB", "1"]),
        Ok(Value::Int(1))
    );
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    select(&mut con, 1);
    assert_eq!(tagkeys(&mut con, "a"), ["k2"]);
    assert_eq!(HcInfo::read(&mut con).keys, 2);
    assert_eq!(HcInfo::read(&mut con).tag_links, 2);
}

/// Runs `commands` as one `MULTI`/`EXEC` block and returns EXEC's reply.
fn transaction(con: &mut redis::Connection, commands: &[&[&str]]) -> Vec<Value> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for words in commands {
        pipe.cmd(words[0]).arg(&words[1..]);
    }
    pipe.query(con)
        .unwrap_or_else(|e| panic!("{commands:?}: {e}"))
}

/// Valkey 9.1 runs the notification callback of a command inside `MULTI`/`EXEC` on the
/// executing client without selecting the event's database: `move_to` and `copy_to`
/// arrived "in" the client's database, and the index kept the moved key in the source
/// database and missed it in the target.
#[test]
fn move_and_copy_inside_multi_index_the_key_in_the_target_db() {
    let (_server, mut con) = server();
    select(&mut con, 1);
    hc_set(&mut con, "moved", "v", &["a"]);
    hc_set(&mut con, "copied", "v", &["b"]);
    hc_set(&mut con, "elsewhere", "v", &["c"]);
    let replies = transaction(
        &mut con,
        &[
            &["MOVE", "moved", "0"],
            &["COPY", "copied", "copy", "DB", "0"],
            // A SELECT queued before a MOVE: its source is database 2.
            &["SELECT", "2"],
            &["HC.SET", "from2", "v", "TAGS", "d"],
            &["MOVE", "from2", "3"],
            &["SELECT", "1"],
            &["MOVE", "elsewhere", "3"],
        ],
    );
    let ones = replies.iter().filter(|r| **r == Value::Int(1)).count();
    assert_eq!(ones, 4, "every MOVE and COPY took place: {replies:?}");
    assert_check_clean(&mut con);
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(tagkeys(&mut con, "b"), ["copied"]);
    assert_eq!(tagkeys(&mut con, "c"), none());
    select(&mut con, 0);
    assert_eq!(tagkeys(&mut con, "a"), ["moved"]);
    assert_eq!(tagkeys(&mut con, "b"), ["copy"]);
    select(&mut con, 2);
    assert_eq!(tagkeys(&mut con, "d"), none());
    select(&mut con, 3);
    assert_eq!(tagkeys(&mut con, "d"), ["from2"]);
    assert_eq!(tagkeys(&mut con, "c"), ["elsewhere"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (5, 5, 5));
}

/// The same inside `MULTI`/`EXEC` for entries `HC.DELTAG` removed in the same transaction:
/// moved or copied before their removal, they stay gone in the target database and are
/// removed there.
#[test]
fn entries_moved_or_copied_inside_multi_after_their_tag_removal_stay_gone() {
    let (_server, mut con) = server();
    select(&mut con, 1);
    hc_set(&mut con, "moved", "v", &["gone"]);
    hc_set(&mut con, "copied", "v", &["gone", "kept"]);
    let replies = transaction(
        &mut con,
        &[
            &["HC.DELTAG", "gone"],
            &["MOVE", "moved", "0"],
            &["COPY", "copied", "copy", "DB", "0"],
        ],
    );
    assert_eq!(replies[1..], [Value::Int(1), Value::Int(1)], "{replies:?}");
    assert_eq!(hc_get(&mut con, "copied"), None);
    select(&mut con, 0);
    assert_eq!(hc_get(&mut con, "moved"), None);
    assert_eq!(hc_get(&mut con, "copy"), None);
    assert_eq!(tagkeys(&mut con, "kept"), none());
    assert_check_clean(&mut con);
    wait_removals_done(&mut con);
    assert_check_clean(&mut con);
    for db in [0, 1] {
        select(&mut con, db);
        assert_eq!(all_keys(&mut con), none(), "db {db}");
    }
}

#[test]
fn dump_del_restore_lists_the_key_again() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    let _: () = query(&mut con, redis::cmd("DEL").arg("k"));
    assert_eq!(tagkeys(&mut con, "a"), none());
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE").arg("k").arg(0).arg(dump.as_slice()),
    );
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn restore_under_another_name_lists_that_name() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE").arg("k2").arg(0).arg(dump.as_slice()),
    );
    assert_eq!(tagkeys(&mut con, "a"), ["k", "k2"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (2, 1, 2));
}

#[test]
fn restore_replace_replaces_the_keys_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v1", &["a"]);
    let dump: Vec<u8> = query(&mut con, redis::cmd("DUMP").arg("k"));
    hc_set(&mut con, "k", "v2", &["b"]);
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE")
            .arg("k")
            .arg(0)
            .arg(dump.as_slice())
            .arg("REPLACE"),
    );
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(tagkeys(&mut con, "b"), none());
    assert_eq!(tags(&mut con, "k"), ["a"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn flushdb_clears_only_that_dbs_index() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k0", "v", &["a"]);
    select(&mut con, 1);
    hc_set(&mut con, "k1", "v", &["a"]);
    let _: () = query(&mut con, &redis::cmd("FLUSHDB"));
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(tagcard(&mut con, "a"), 0);
    select(&mut con, 0);
    assert_eq!(tagkeys(&mut con, "a"), ["k0"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn flushdb_async_clears_the_index_too() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let _: () = query(&mut con, redis::cmd("FLUSHDB").arg("ASYNC"));
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn flushall_clears_every_dbs_index() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k0", "v", &["a"]);
    select(&mut con, 3);
    hc_set(&mut con, "k3", "v", &["a"]);
    let _: () = query(&mut con, &redis::cmd("FLUSHALL"));
    assert_eq!(tagkeys(&mut con, "a"), none());
    select(&mut con, 0);
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
    // The index still works after the flush.
    hc_set(&mut con, "again", "v", &["a"]);
    assert_eq!(tagkeys(&mut con, "a"), ["again"]);
}

#[test]
fn swapdb_swaps_the_indexes() {
    let (_server, mut con) = server();
    hc_set(&mut con, "zero", "v", &["t", "only0"]);
    select(&mut con, 1);
    hc_set(&mut con, "one", "v", &["t"]);
    let _: () = query(&mut con, redis::cmd("SWAPDB").arg(0).arg(1));
    assert_eq!(tagkeys(&mut con, "t"), ["zero"]);
    assert_eq!(tagkeys(&mut con, "only0"), ["zero"]);
    select(&mut con, 0);
    assert_eq!(tagkeys(&mut con, "t"), ["one"]);
    assert_eq!(tagkeys(&mut con, "only0"), none());
    // Commands act on the swapped index.
    assert_eq!(hc_deltag(&mut con, &["t"]), 1);
    assert_eq!(hc_get(&mut con, "one"), None);
    wait_removals_done(&mut con);
    assert!(!exists(&mut con, "one"));
    select(&mut con, 1);
    assert!(exists(&mut con, "zero"));
}

#[test]
fn plain_set_over_a_module_key_drops_its_tags() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v", &["a"]);
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    assert_eq!(tagkeys(&mut con, "a"), none());
    assert_eq!(tagcard(&mut con, "a"), 0);
    assert_eq!(HcInfo::read(&mut con).counts(), (0, 0, 0));
}

#[test]
fn hc_set_over_a_plain_string_adds_it_to_the_index() {
    let (_server, mut con) = server();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("plain"));
    hc_set(&mut con, "k", "v", &["a"]);
    assert_eq!(tagkeys(&mut con, "a"), ["k"]);
    assert_eq!(HcInfo::read(&mut con).counts(), (1, 1, 1));
}

#[test]
fn same_tag_in_two_dbs_never_mixes() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k0", "v", &["t"]);
    select(&mut con, 1);
    hc_set(&mut con, "k1", "v", &["t"]);
    assert_eq!(tagkeys(&mut con, "t"), ["k1"]);
    assert_eq!(tagcard(&mut con, "t"), 1);
    select(&mut con, 0);
    assert_eq!(tagkeys(&mut con, "t"), ["k0"]);
    assert_eq!(tagcard(&mut con, "t"), 1);
}

#[test]
fn deltag_in_db0_leaves_db1_alone() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v0", &["t"]);
    select(&mut con, 1);
    hc_set(&mut con, "k", "v1", &["t"]);
    select(&mut con, 0);
    assert_eq!(hc_deltag(&mut con, &["t"]), 1);
    assert_eq!(hc_get(&mut con, "k"), None);
    wait_removals_done(&mut con);
    assert!(!exists(&mut con, "k"));
    select(&mut con, 1);
    assert_eq!(tagkeys(&mut con, "t"), ["k"]);
    assert_eq!(hc_get(&mut con, "k"), Some(b"v1".to_vec()));
}

#[test]
fn hc_del_in_db0_leaves_the_same_key_in_db1_alone() {
    let (_server, mut con) = server();
    hc_set(&mut con, "k", "v0", &["t"]);
    select(&mut con, 1);
    hc_set(&mut con, "k", "v1", &["t"]);
    select(&mut con, 0);
    assert_eq!(
        call(&mut con, &[hybridcache_protocol::command::DEL, "k"]),
        Ok(Value::Int(1))
    );
    select(&mut con, 1);
    assert_eq!(tagkeys(&mut con, "t"), ["k"]);
}

#[test]
fn index_stays_consistent_through_a_mix_of_operations() {
    let (_server, mut con) = server();
    for i in 0..20 {
        hc_set(
            &mut con,
            format!("k{i}").as_str(),
            "v",
            &["all", &format!("mod{}", i % 4)],
        );
    }
    let _: i64 = query(&mut con, redis::cmd("DEL").arg("k0").arg("k1"));
    let _: () = query(&mut con, redis::cmd("RENAME").arg("k2").arg("r2"));
    let _: i64 = query(&mut con, redis::cmd("MOVE").arg("k3").arg(1));
    assert_eq!(hc_deltag(&mut con, &["mod0"]), 4); // k4 k8 k12 k16 (k0 gone)
    hc_set(&mut con, "k5", "v", &["new"]);
    let expected_all: Vec<String> = {
        let mut v: Vec<String> = (6..20)
            .filter(|i| i % 4 != 0)
            .map(|i| format!("k{i}"))
            .chain(["r2".to_string()])
            .collect();
        v.sort();
        v
    };
    assert_eq!(tagkeys(&mut con, "all"), expected_all);
    assert_eq!(tagcard(&mut con, "all") as usize, expected_all.len());
    wait_removals_done(&mut con);
    assert_eq!(all_keys(&mut con).len(), expected_all.len() + 1);
    for key in all_keys(&mut con) {
        for tag in tags(&mut con, key.as_str()) {
            assert!(
                tagkeys(&mut con, tag.as_str()).contains(&key),
                "{key} has tag {tag} but TAGKEYS {tag} does not list it"
            );
        }
    }
}
