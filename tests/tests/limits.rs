//! Write limits: tags per write, tag length and value size refuse oversize writes with a
//! clear error, are module configuration (CONFIG GET/SET, command line), and never touch
//! what is already stored.

use hybridcache_protocol::command;
use hybridcache_tests::hc::{call, hc_get_str, hc_set, query, tags};
use hybridcache_tests::index_check::hc_check;
use hybridcache_tests::RedisServer;

fn config_get(con: &mut redis::Connection, name: &str) -> String {
    let (_, value): (String, String) = query(con, redis::cmd("CONFIG").arg("GET").arg(name));
    value
}

fn config_set(con: &mut redis::Connection, name: &str, value: &str) -> Result<(), String> {
    call(con, &["CONFIG", "SET", name, value]).map(|_| ())
}

fn set_words<'a>(key: &'a str, value: &'a str, tag_list: &'a [String]) -> Vec<&'a str> {
    let mut words = vec![command::SET, key, value, "TAGS"];
    words.extend(tag_list.iter().map(String::as_str));
    words
}

#[test]
fn defaults_accept_ordinary_writes_and_refuse_oversize_ones() {
    let server = RedisServer::new();
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "hybridcache.max-tags"), "256");
    assert_eq!(config_get(&mut con, "hybridcache.max-tag-length"), "1024");
    assert_eq!(
        config_get(&mut con, "hybridcache.max-value-size"),
        "536870912"
    );

    let many: Vec<String> = (0..256).map(|i| format!("t{i}")).collect();
    call(&mut con, &set_words("k", "v", &many)).unwrap();
    assert_eq!(tags(&mut con, "k").len(), 256);
    let too_many: Vec<String> = (0..257).map(|i| format!("t{i}")).collect();
    assert_eq!(
        call(&mut con, &set_words("k2", "v", &too_many)),
        Err("ERR too many tags: 257 (hybridcache.max-tags is 256)".into())
    );
    let long = vec!["x".repeat(1025)];
    assert_eq!(
        call(&mut con, &set_words("k2", "v", &long)),
        Err("ERR tag too long: 1025 bytes (hybridcache.max-tag-length is 1024)".into())
    );
    assert!(!hybridcache_tests::hc::exists(&mut con, "k2"));
}

#[test]
fn limits_change_at_run_time_and_spare_what_is_stored() {
    let server = RedisServer::new();
    let mut con = server.connection();
    hc_set(&mut con, "stored", "0123456789abcdef", &["a", "b", "c"]);

    config_set(&mut con, "hybridcache.max-tags", "2").unwrap();
    config_set(&mut con, "hybridcache.max-tag-length", "4").unwrap();
    config_set(&mut con, "hybridcache.max-value-size", "1kb").unwrap();
    assert_eq!(config_get(&mut con, "hybridcache.max-value-size"), "1024");

    let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(
        call(&mut con, &set_words("stored", "new", &three)),
        Err("ERR too many tags: 3 (hybridcache.max-tags is 2)".into())
    );
    let big = "v".repeat(1025);
    assert_eq!(
        call(&mut con, &[command::SET, "stored", big.as_str()]),
        Err("ERR value too large: 1025 bytes (hybridcache.max-value-size is 1024)".into())
    );
    let long: Vec<String> = vec!["abcde".into()];
    assert!(call(&mut con, &set_words("stored", "new", &long))
        .unwrap_err()
        .starts_with("ERR tag too long: 5 bytes"));
    // The refused writes changed nothing; the entry over the new limits stays readable.
    assert_eq!(
        hc_get_str(&mut con, "stored").as_deref(),
        Some("0123456789abcdef")
    );
    assert_eq!(tags(&mut con, "stored"), ["a", "b", "c"]);
    assert!(hc_check(&mut con).problems.is_empty());
    // Within the limits: fine.
    hc_set(&mut con, "ok", "v", &["abcd", "e"]);

    // Out-of-range values are refused by Redis and the old value stays.
    assert!(config_set(&mut con, "hybridcache.max-tags", "0").is_err());
    assert!(config_set(&mut con, "hybridcache.max-tags", "70000").is_err());
    assert!(config_set(&mut con, "hybridcache.max-value-size", "-1").is_err());
    assert_eq!(config_get(&mut con, "hybridcache.max-tags"), "2");
}

#[test]
fn limits_can_be_set_on_the_command_line() {
    let server = RedisServer::builder()
        .arg("--hybridcache.max-tags")
        .arg("1")
        .start();
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "hybridcache.max-tags"), "1");
    hc_set(&mut con, "k", "v", &["one"]);
    let two: Vec<String> = vec!["a".into(), "b".into()];
    assert!(call(&mut con, &set_words("k", "v", &two))
        .unwrap_err()
        .starts_with("ERR too many tags: 2"));
}
