//! Loading the module never changes which database a client's commands run in.
//!
//! Valkey 8.1 runs a module's keyspace-notification callback on the client executing the
//! command and selects the event's database on it without selecting the old one again:
//! with the module loaded, `MOVE` and `COPY … DB n` left the client in database `n`, and
//! its next commands (even later in the same `MULTI`) wrote there. The module gives the
//! client its database back (`module/src/client_db.rs`). These tests hold on every server
//! (`REDIS_SERVER`), with plain keys and with entries.

use hybridcache_tests::hc::{call, hc_set, query, select};
use hybridcache_tests::info::HcInfo;
use hybridcache_tests::RedisServer;
use redis::Value;

fn client_db(con: &mut redis::Connection) -> i64 {
    let info: String = query(con, redis::cmd("CLIENT").arg("INFO"));
    info.split_whitespace()
        .find_map(|field| field.strip_prefix("db="))
        .and_then(|db| db.parse().ok())
        .unwrap_or(-1)
}

fn exists_in(con: &mut redis::Connection, db: u32, key: &str) -> bool {
    select(con, db);
    let n: i64 = query(con, redis::cmd("EXISTS").arg(key));
    n == 1
}

#[test]
fn move_leaves_the_client_in_its_database() {
    let server = RedisServer::new();
    let mut con = server.connection();
    select(&mut con, 2);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("v"));
    hc_set(&mut con, "entry", "v", &["t"]);
    assert_eq!(call(&mut con, &["MOVE", "plain", "5"]), Ok(Value::Int(1)));
    assert_eq!(client_db(&mut con), 2, "after MOVE of a plain key");
    // What the module found, once a command notified: Redis uses a temporary client for
    // notifications ("kept"); Valkey 8.1 and 9.1 use the executing client ("restored").
    let found = HcInfo::read(&mut con).fields["notification_client_db"].clone();
    assert!(found == "kept" || found == "restored", "{found}");
    assert_eq!(call(&mut con, &["MOVE", "entry", "5"]), Ok(Value::Int(1)));
    assert_eq!(client_db(&mut con), 2, "after MOVE of an entry");
    let _: () = query(&mut con, redis::cmd("SET").arg("next").arg("v"));
    assert!(
        exists_in(&mut con, 2, "next"),
        "the next write runs in db 2"
    );
    assert!(!exists_in(&mut con, 5, "next"));
    assert!(exists_in(&mut con, 5, "plain") && exists_in(&mut con, 5, "entry"));
}

#[test]
fn copy_to_another_db_leaves_the_client_in_its_database() {
    let server = RedisServer::new();
    let mut con = server.connection();
    select(&mut con, 1);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("v"));
    hc_set(&mut con, "entry", "v", &["t"]);
    let copy = |con: &mut redis::Connection, key: &str| {
        call(con, &["COPY", key, key, "DB", "3", "REPLACE"])
    };
    assert_eq!(copy(&mut con, "plain"), Ok(Value::Int(1)));
    assert_eq!(client_db(&mut con), 1, "after COPY of a plain key");
    assert_eq!(copy(&mut con, "entry"), Ok(Value::Int(1)));
    assert_eq!(client_db(&mut con), 1, "after COPY of an entry");
    // Again over the copies just made (REPLACE notifies a del in db 3 first).
    assert_eq!(copy(&mut con, "entry"), Ok(Value::Int(1)));
    assert_eq!(client_db(&mut con), 1, "after COPY … REPLACE");
    assert!(exists_in(&mut con, 3, "entry") && exists_in(&mut con, 1, "entry"));
}

#[test]
fn commands_after_a_copy_or_move_in_multi_run_in_the_selected_database() {
    let server = RedisServer::new();
    let mut con = server.connection();
    select(&mut con, 4);
    hc_set(&mut con, "entry", "v", &["t"]);
    select(&mut con, 0);
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("v"));
    let replies: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("MOVE")
        .arg("plain")
        .arg(6)
        .cmd("SET")
        .arg("after-move")
        .arg("v")
        .cmd("SELECT")
        .arg(4)
        .cmd("COPY")
        .arg("entry")
        .arg("entry")
        .arg("DB")
        .arg(7)
        .cmd("SET")
        .arg("after-copy")
        .arg("v")
        .query(&mut con)
        .expect("the transaction runs");
    assert_eq!(replies.len(), 5, "{replies:?}");
    assert_eq!(client_db(&mut con), 4, "the transaction's SELECT stays");
    assert!(exists_in(&mut con, 0, "after-move"), "written in db 0");
    assert!(exists_in(&mut con, 4, "after-copy"), "written in db 4");
    assert!(!exists_in(&mut con, 6, "after-move"));
    assert!(!exists_in(&mut con, 7, "after-copy"));
}

#[test]
fn a_script_moving_a_key_keeps_writing_in_its_database() {
    let server = RedisServer::new();
    let mut con = server.connection();
    select(&mut con, 3);
    hc_set(&mut con, "entry", "v", &["t"]);
    let script = "redis.call('MOVE', KEYS[1], '8'); return redis.call('SET', KEYS[2], 'v')";
    let _: Value = query(
        &mut con,
        redis::cmd("EVAL")
            .arg(script)
            .arg(2)
            .arg("entry")
            .arg("written"),
    );
    assert_eq!(client_db(&mut con), 3);
    assert!(
        exists_in(&mut con, 3, "written"),
        "the script's SET ran in db 3"
    );
    assert!(!exists_in(&mut con, 8, "written"));
    assert!(exists_in(&mut con, 8, "entry"));
}

#[test]
fn a_client_in_another_database_is_not_moved_by_someone_elses_copy() {
    let server = RedisServer::new();
    let mut mover = server.connection();
    let mut bystander = server.connection();
    select(&mut bystander, 9);
    hc_set(&mut mover, "entry", "v", &["t"]);
    assert_eq!(
        call(&mut mover, &["COPY", "entry", "copy", "DB", "9"]),
        Ok(Value::Int(1))
    );
    assert_eq!(client_db(&mut mover), 0);
    assert_eq!(client_db(&mut bystander), 9);
}
