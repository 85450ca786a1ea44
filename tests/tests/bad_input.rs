//! Bad input: every malformed command is refused with an error reply and changes nothing
//! (the existing entry, its tags and TTL, the index counters and the event count stay as
//! they were); the server keeps answering.

use hybridcache_protocol::command;
use hybridcache_tests::hc::{call, hc_get, hc_set, hc_set_with, pttl, query, tagkeys, tags};
use hybridcache_tests::{HcInfo, RedisServer, Subscriber, QUIET_PERIOD};
use redis::Value;

/// Everything a refused command must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    value: Option<Vec<u8>>,
    tags: Vec<String>,
    tagged: Vec<String>,
    pttl_is_set: bool,
    dbsize: i64,
    info: (i64, i64, i64, i64),
}

fn snapshot(con: &mut redis::Connection) -> Snapshot {
    let info = HcInfo::read(con);
    Snapshot {
        value: hc_get(con, "k"),
        tags: tags(con, "k"),
        tagged: tagkeys(con, "t"),
        pttl_is_set: pttl(con, "k") > 0,
        dbsize: query(con, &redis::cmd("DBSIZE")),
        info: (info.keys, info.tags, info.tag_links, info.events_published),
    }
}

struct Fixture {
    server: RedisServer,
    con: redis::Connection,
    before: Snapshot,
}

/// A server holding `k` = `v` with tags `t`, `u` and a TTL, plus a plain string `plain`.
fn fixture() -> Fixture {
    let server = RedisServer::new();
    let mut con = server.connection();
    assert_eq!(
        hc_set_with(&mut con, "k", "v", &["EX", "1000"], &["t", "u"]),
        Value::Okay
    );
    let _: () = query(&mut con, redis::cmd("SET").arg("plain").arg("x"));
    let before = snapshot(&mut con);
    Fixture {
        server,
        con,
        before,
    }
}

impl Fixture {
    /// Runs `words`, which must be refused with an error starting with `code`, and checks
    /// that nothing changed.
    fn refused(&mut self, words: &[&str], code: &str) {
        match call(&mut self.con, words) {
            Err(e) => assert!(
                e.starts_with(code),
                "{words:?} answered {e:?}, expected an error starting with {code}"
            ),
            Ok(v) => panic!("{words:?} answered {v:?}, expected an error starting with {code}"),
        }
        let now = snapshot(&mut self.con);
        assert_eq!(now, self.before, "{words:?} changed something");
    }

    fn still_answers_ping(&mut self) {
        assert_eq!(
            call(&mut self.con, &["PING"]),
            Ok(Value::SimpleString("PONG".into()))
        );
        let mut other = self.server.connection();
        assert_eq!(
            call(&mut other, &["PING"]),
            Ok(Value::SimpleString("PONG".into()))
        );
    }
}

#[test]
fn too_few_arguments_is_an_error_for_every_command() {
    let mut f = fixture();
    let cases: &[&[&str]] = &[
        &[command::SET],
        &[command::SET, "k"],
        &[command::GET],
        &[command::MGET],
        &[command::DEL],
        &[command::DELTAG],
        &[command::STALE],
        &[command::STALETAG],
        &[command::DELTAGALL],
        &[command::TAGS],
        &[command::TAGKEYS],
        &[command::TAGCARD],
    ];
    for words in cases {
        f.refused(words, "ERR");
    }
    f.still_answers_ping();
}

#[test]
fn too_many_arguments_is_an_error_for_single_key_commands() {
    let mut f = fixture();
    let cases: &[&[&str]] = &[
        &[command::GET, "k", "extra"],
        &[command::TAGS, "k", "extra"],
        &[command::TAGKEYS, "t", "extra"],
        &[command::TAGCARD, "t", "extra"],
    ];
    for words in cases {
        f.refused(words, "ERR");
    }
    f.still_answers_ping();
}

#[test]
fn unknown_option_is_an_error() {
    let mut f = fixture();
    f.refused(&[command::SET, "k", "new", "BOGUS"], "ERR");
    f.refused(&[command::SET, "k", "new", "EX", "10", "BOGUS"], "ERR");
    f.refused(&[command::SET, "k", "new", "GET"], "ERR");
    f.refused(&[command::SET, "k", "new", "TAG", "x"], "ERR");
    f.still_answers_ping();
}

#[test]
fn missing_ttl_value_is_an_error() {
    let mut f = fixture();
    for option in ["EX", "PX", "EXAT", "PXAT"] {
        f.refused(&[command::SET, "k", "new", option], "ERR");
    }
    f.refused(&[command::SET, "k", "new", "EX", "TAGS", "a"], "ERR");
    f.still_answers_ping();
}

#[test]
fn non_integer_ttl_is_an_error() {
    let mut f = fixture();
    for option in ["EX", "PX", "EXAT", "PXAT"] {
        for bad in ["abc", "1.5", "10s", "", " 10", "0x10"] {
            f.refused(&[command::SET, "k", "new", option, bad], "ERR");
        }
    }
    f.still_answers_ping();
}

#[test]
fn zero_or_negative_ttl_is_an_error() {
    let mut f = fixture();
    for option in ["EX", "PX", "EXAT", "PXAT"] {
        for bad in ["0", "-1", "-9223372036854775808"] {
            f.refused(&[command::SET, "k", "new", option, bad], "ERR");
        }
    }
    f.still_answers_ping();
}

#[test]
fn overflowing_ttl_is_an_error() {
    let mut f = fixture();
    for option in ["EX", "PX", "EXAT", "PXAT"] {
        for bad in ["9223372036854775808", "99999999999999999999999"] {
            f.refused(&[command::SET, "k", "new", option, bad], "ERR");
        }
    }
    let cases: &[&[&str]] = &[
        // Seconds that overflow once converted to milliseconds.
        &[command::SET, "k", "new", "EX", "9223372036854775807"],
        &[command::SET, "k", "new", "EX", "9223372036854776"],
        &[command::SET, "k", "new", "EXAT", "9223372036854775807"],
        &[command::SET, "k", "new", "EXAT", "9223372036854776"],
        // Relative milliseconds that overflow once the current time is added.
        &[command::SET, "k", "new", "PX", "9223372036854775807"],
        &[command::SET, "k", "new", "PX", "9223372036854775000"],
    ];
    for words in cases {
        f.refused(words, "ERR");
    }
    f.still_answers_ping();
}

#[test]
fn two_expiry_options_are_an_error() {
    let mut f = fixture();
    let cases: &[&[&str]] = &[
        &[command::SET, "k", "new", "EX", "10", "PX", "10000"],
        &[command::SET, "k", "new", "PX", "10000", "EX", "10"],
        &[command::SET, "k", "new", "EX", "10", "EXAT", "9999999999"],
        &[
            command::SET,
            "k",
            "new",
            "PXAT",
            "9999999999999",
            "EX",
            "10",
        ],
        &[command::SET, "k", "new", "EX", "10", "KEEPTTL"],
        &[command::SET, "k", "new", "KEEPTTL", "PX", "10"],
    ];
    for words in cases {
        f.refused(words, "ERR");
    }
    f.still_answers_ping();
}

#[test]
fn nx_with_xx_is_an_error() {
    let mut f = fixture();
    f.refused(&[command::SET, "k", "new", "NX", "XX"], "ERR");
    f.refused(&[command::SET, "k", "new", "XX", "NX"], "ERR");
    f.refused(&[command::SET, "k", "new", "XX", "EX", "10", "NX"], "ERR");
    f.still_answers_ping();
}

#[test]
fn tags_keyword_with_no_tag_is_an_error() {
    let mut f = fixture();
    f.refused(&[command::SET, "k", "new", "TAGS"], "ERR");
    f.refused(&[command::SET, "k", "new", "EX", "10", "TAGS"], "ERR");
    f.still_answers_ping();
}

#[test]
fn everything_after_tags_is_a_tag() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let reply = call(&mut con, &[command::SET, "k", "v", "TAGS", "a", "EX", "10"]);
    assert_eq!(reply, Ok(Value::Okay));
    assert_eq!(tags(&mut con, "k"), ["10", "EX", "a"]);
    assert_eq!(pttl(&mut con, "k"), -1);
    assert_eq!(tagkeys(&mut con, "EX"), ["k"]);
    let reply = call(&mut con, &[command::SET, "k2", "v", "TAGS", "NX", "TAGS"]);
    assert_eq!(reply, Ok(Value::Okay));
    assert_eq!(tags(&mut con, "k2"), ["NX", "TAGS"]);
}

#[test]
fn get_and_tags_on_a_key_of_another_type_are_wrongtype() {
    let mut f = fixture();
    f.refused(&[command::GET, "plain"], "WRONGTYPE");
    f.refused(&[command::TAGS, "plain"], "WRONGTYPE");
    let _: i64 = query(&mut f.con, redis::cmd("RPUSH").arg("list").arg("x"));
    f.before = snapshot(&mut f.con);
    f.refused(&[command::GET, "list"], "WRONGTYPE");
    f.refused(&[command::TAGS, "list"], "WRONGTYPE");
    f.still_answers_ping();
}

#[test]
fn mget_and_del_on_keys_of_another_type_are_not_errors() {
    let mut f = fixture();
    assert_eq!(
        call(&mut f.con, &[command::MGET, "plain", "k"]),
        Ok(Value::Array(vec![
            Value::Nil,
            Value::BulkString(b"v".to_vec())
        ]))
    );
    assert_eq!(
        call(&mut f.con, &[command::DEL, "plain"]),
        Ok(Value::Int(0))
    );
    assert_eq!(snapshot(&mut f.con), f.before);
    let plain: Option<String> = query(&mut f.con, redis::cmd("GET").arg("plain"));
    assert_eq!(plain.as_deref(), Some("x"));
}

#[test]
fn refused_commands_publish_no_event() {
    let mut f = fixture();
    let sub = Subscriber::new(&f.server);
    f.refused(&[command::SET, "k", "new", "EX", "0"], "ERR");
    f.refused(&[command::SET, "k", "new", "NX", "XX"], "ERR");
    f.refused(&[command::SET, "k", "new", "TAGS"], "ERR");
    f.refused(&[command::DEL], "ERR");
    f.refused(&[command::DELTAG], "ERR");
    f.refused(&[command::STALE], "ERR");
    f.refused(&[command::STALETAG], "ERR");
    f.refused(&[command::DELTAGALL], "ERR");
    sub.assert_no_event(QUIET_PERIOD);
}

#[test]
fn a_long_run_of_bad_input_leaves_the_server_healthy() {
    let mut f = fixture();
    let junk: [&[&str]; 8] = [
        &[command::SET, "k", "new", "PX", "-5"],
        &[command::SET, "k", "new", "EX"],
        &[command::SET, "k", "new", "NX", "NX", "XX"],
        &[command::SET, "k", "new", "KEEPTTL", "EX", "1"],
        &[command::SET, "k", "new", "TAGS"],
        &[command::TAGS],
        &[command::GET, "plain"],
        &[command::SET, "k"],
    ];
    for _ in 0..50 {
        for words in junk {
            assert!(call(&mut f.con, words).is_err(), "{words:?} was accepted");
        }
    }
    assert_eq!(snapshot(&mut f.con), f.before);
    f.still_answers_ping();
    hc_set(&mut f.con, "fresh", "v", &["t"]);
    assert_eq!(tagkeys(&mut f.con, "t"), ["fresh", "k"]);
}
