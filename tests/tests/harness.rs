//! The harness itself, checked against a plain Redis (no module), so that a failure
//! elsewhere can be told apart from a harness bug.

use hybridcache_tests::hc::{call, query};
use hybridcache_tests::{RedisServer, Shutdown, Subscriber, QUIET_PERIOD};
use redis::Value;
use std::time::Duration;

fn plain() -> RedisServer {
    RedisServer::builder().without_module().start()
}

#[test]
fn server_answers_ping_on_its_own_loopback_port() {
    let server = plain();
    assert_ne!(server.port(), 0);
    assert_ne!(server.port(), 6379);
    let mut con = server.connection();
    assert_eq!(query::<String>(&mut con, &redis::cmd("PING")), "PONG");
    let port: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("port"));
    assert_eq!(port, ["port".to_string(), server.port().to_string()]);
}

#[test]
fn two_servers_run_side_by_side_with_separate_dirs() {
    let a = plain();
    let b = plain();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let _: () = query(&mut a.connection(), redis::cmd("SET").arg("k").arg("a"));
    assert_eq!(
        query::<Option<String>>(&mut b.connection(), redis::cmd("GET").arg("k")),
        None
    );
}

#[test]
fn builder_args_override_the_defaults() {
    let server = RedisServer::builder()
        .without_module()
        .arg("--maxmemory")
        .arg("10mb")
        .args(["--appendonly", "yes"])
        .start();
    let mut con = server.connection();
    let maxmemory: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("maxmemory"));
    assert_eq!(maxmemory[1], "10485760");
    let aof: Vec<String> = query(&mut con, redis::cmd("CONFIG").arg("GET").arg("appendonly"));
    assert_eq!(aof[1], "yes");
}

#[test]
fn save_then_kill_and_start_again_keeps_port_dir_and_data() {
    let mut server = plain();
    let (port, dir) = (server.port(), server.dir().to_path_buf());
    let mut con = server.connection();
    let _: () = query(&mut con, redis::cmd("SET").arg("k").arg("v"));
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    server.kill();
    assert!(!server.is_running());
    server.start_again();
    assert_eq!((server.port(), server.dir()), (port, dir.as_path()));
    assert_eq!(
        query::<Option<String>>(&mut server.connection(), redis::cmd("GET").arg("k")),
        Some("v".to_string())
    );
}

#[test]
fn shutdown_save_writes_an_rdb_that_the_next_start_loads() {
    let mut server = plain();
    let _: () = query(
        &mut server.connection(),
        redis::cmd("SET").arg("k").arg("v"),
    );
    server.shutdown(Shutdown::Save);
    assert!(server.dir().join("dump.rdb").is_file());
    server.start_again();
    assert_eq!(
        query::<Option<String>>(&mut server.connection(), redis::cmd("GET").arg("k")),
        Some("v".to_string())
    );
}

#[test]
fn shutdown_nosave_loses_data_without_aof() {
    let mut server = plain();
    let _: () = query(
        &mut server.connection(),
        redis::cmd("SET").arg("k").arg("v"),
    );
    server.shutdown(Shutdown::NoSave);
    server.start_again();
    assert_eq!(
        query::<i64>(&mut server.connection(), &redis::cmd("DBSIZE")),
        0
    );
}

#[test]
fn restart_with_aof_keeps_data() {
    let mut server = RedisServer::builder()
        .without_module()
        .args(["--appendonly", "yes"])
        .start();
    let _: () = query(
        &mut server.connection(),
        redis::cmd("SET").arg("k").arg("v"),
    );
    server.restart();
    assert_eq!(
        query::<Option<String>>(&mut server.connection(), redis::cmd("GET").arg("k")),
        Some("v".to_string())
    );
}

#[test]
fn replica_syncs_data_written_before_and_after_it_attached() {
    let primary = plain();
    let _: () = query(
        &mut primary.connection(),
        redis::cmd("SET").arg("before").arg("1"),
    );
    let replica = RedisServer::builder()
        .without_module()
        .replica_of(&primary)
        .start();
    replica.wait_in_sync_with(&primary);
    let _: () = query(
        &mut primary.connection(),
        redis::cmd("SET").arg("after").arg("2"),
    );
    replica.wait_in_sync_with(&primary);
    let mut con = replica.connection();
    let values: Vec<Option<String>> =
        query(&mut con, redis::cmd("MGET").arg("before").arg("after"));
    assert_eq!(values, [Some("1".to_string()), Some("2".to_string())]);
}

#[test]
fn subscriber_sees_messages_published_after_it_returns_and_nothing_else() {
    let server = plain();
    let sub = Subscriber::on_channel(&server, "harness:test");
    let mut con = server.connection();
    let receivers: i64 = query(
        &mut con,
        redis::cmd("PUBLISH").arg("harness:test").arg("hello"),
    );
    assert_eq!(receivers, 1);
    let _: i64 = query(&mut con, redis::cmd("PUBLISH").arg("other").arg("ignored"));
    assert_eq!(
        sub.next_payload(Duration::from_secs(1)).as_deref(),
        Some(&b"hello"[..])
    );
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn dropping_a_subscriber_closes_its_connection() {
    let server = plain();
    let sub = Subscriber::on_channel(&server, "harness:drop");
    drop(sub);
    let mut con = server.connection();
    let receivers: i64 = query(&mut con, redis::cmd("PUBLISH").arg("harness:drop").arg("x"));
    assert_eq!(receivers, 0);
}

#[test]
fn call_reports_error_replies_as_code_and_detail() {
    let server = plain();
    let mut con = server.connection();
    let err = call(&mut con, &["GET"]).unwrap_err();
    assert!(err.starts_with("ERR wrong number of arguments"), "{err}");
    let _: () = query(&mut con, redis::cmd("LPUSH").arg("l").arg("x"));
    let err = call(&mut con, &["GET", "l"]).unwrap_err();
    assert!(err.starts_with("WRONGTYPE"), "{err}");
    assert_eq!(call(&mut con, &["GET", "missing"]), Ok(Value::Nil));
}

#[test]
fn a_module_that_fails_to_load_panics_with_the_server_log() {
    let missing = std::env::temp_dir().join("hybridcache-no-such-module.so");
    let result = std::panic::catch_unwind(|| {
        RedisServer::builder().module_path(&missing).start();
    });
    let panic = result.expect_err("starting with a missing module must fail");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("redis-server exited"), "{message}");
    assert!(
        message.contains("hybridcache-no-such-module.so"),
        "{message}"
    );
}
