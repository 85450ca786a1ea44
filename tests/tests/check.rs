//! `HC.CHECK`: the module's own comparison of its tag index with the keyspace stays clean
//! through every way keys enter and leave, reports its counts, and is an admin command.

use hybridcache_protocol::command;
use hybridcache_tests::hc::{call, hc_deltag, hc_set, hc_set_with, query, select};
use hybridcache_tests::index_check::{assert_index_matches, hc_check};
use hybridcache_tests::RedisServer;

fn clean(con: &mut redis::Connection, step: &str) {
    let report = hc_check(con);
    assert!(
        report.problems.is_empty(),
        "after {step}: {:?}",
        report.problems
    );
}

#[test]
fn check_stays_clean_through_every_keyspace_path() {
    let server = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("local")
        .start();
    let mut con = server.connection();
    let empty = hc_check(&mut con);
    assert_eq!(
        (empty.keys, empty.links, empty.pending_removals),
        (0, 0, 0),
        "{empty:?}"
    );
    assert!(empty.problems.is_empty());

    hc_set(&mut con, "a", "1", &["t1", "t2"]);
    hc_set(&mut con, "b", "2", &["t1"]);
    hc_set(&mut con, "c", "3", &[]);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("x"));
    let report = hc_check(&mut con);
    assert_eq!((report.keys, report.links), (3, 3), "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");

    let steps: Vec<(&str, Vec<&str>)> = vec![
        (
            "overwrite with other tags",
            vec![command::SET, "a", "1", "TAGS", "t3"],
        ),
        ("RENAME", vec!["RENAME", "b", "b2"]),
        ("COPY", vec!["COPY", "b2", "b3"]),
        ("MOVE", vec!["MOVE", "b3", "1"]),
        ("DEL", vec!["DEL", "c"]),
        ("SET over an entry", vec!["SET", "b2", "plain now"]),
        ("SWAPDB", vec!["SWAPDB", "0", "1"]),
        ("SWAPDB back", vec!["SWAPDB", "0", "1"]),
        ("PEXPIRE in the past", vec!["PEXPIRE", "a", "0"]),
        ("DEBUG RELOAD", vec!["DEBUG", "RELOAD"]),
        ("FLUSHDB", vec!["FLUSHDB"]),
    ];
    for (step, words) in steps {
        call(&mut con, &words).unwrap_or_else(|e| panic!("{step}: {e}"));
        clean(&mut con, step);
    }
    select(&mut con, 1);
    let report = hc_check(&mut con);
    assert_eq!(report.keys, 1, "b3 moved to db 1: {report:?}");
    assert!(report.problems.is_empty());
}

#[test]
fn check_is_clean_while_a_tag_invalidation_is_still_removing_keys() {
    let server = RedisServer::new();
    let mut con = server.connection();
    for batch in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            let key = format!("k:{}", batch * 1000 + i);
            let tags: &[&str] = if i % 2 == 0 {
                &["big", "even"]
            } else {
                &["big"]
            };
            pipe.cmd(command::SET)
                .arg(key)
                .arg("v")
                .arg("TAGS")
                .arg(tags)
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
    }
    hc_set_with(&mut con, "other", "v", &["PX", "600000"], &["even"]);
    // The reply comes at once; removal goes on in the background.
    assert_eq!(hc_deltag(&mut con, &["big"]), 20_000);
    let during = hc_check(&mut con);
    assert!(during.problems.is_empty(), "{during:?}");
    assert!(during.keys <= 20_001);
    assert_index_matches(&mut con, "the server after the removals");
    let after = hc_check(&mut con);
    assert_eq!(
        (after.keys, after.links, after.pending_removals),
        (1, 1, 0),
        "{after:?}"
    );
}

#[test]
fn check_takes_no_arguments_is_flagged_admin_and_can_be_denied() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let refused = call(&mut con, &[command::CHECK, "extra"]).unwrap_err();
    assert!(
        refused.starts_with("ERR wrong number of arguments"),
        "{refused}"
    );
    // COMMAND INFO: [[name, arity, [flags...], ...]]
    let info = call(&mut con, &["COMMAND", "INFO", command::CHECK]).unwrap();
    let flags = format!("{info:?}");
    assert!(flags.contains("admin"), "{flags}");
    // Redis 7.0 gives module commands no ACL category: deny it by name.
    let _: () = query(
        &mut con,
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("app")
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("+@all")
            .arg(format!("-{}", command::CHECK.to_lowercase())),
    );
    let _: () = query(&mut con, redis::cmd("AUTH").arg("app").arg("pw"));
    let refused = call(&mut con, &[command::CHECK]).unwrap_err();
    assert!(refused.starts_with("NOPERM"), "{refused}");
    hc_set(&mut con, "k", "v", &["t"]);
}
