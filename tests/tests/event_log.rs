//! The event log and `HC.EVENTS SINCE <origin> <seq> [COUNT n]`, end to end: it answers
//! exactly the changes a subscriber received after any position, in pages; it says
//! `too-old` once its bounds (`hybridcache.event-log-changes`: oldest changes dropped first;
//! `-bytes`: oldest whole messages dropped first) no longer reach back, and `other-origin` for another server process;
//! bad requests get clear errors; INFO counts its size and the answers; a replica answers
//! for its own origin; flushes and reloads leave it consistent.

use hybridcache_protocol::command::{self, events};
use hybridcache_protocol::{Change, InvalidationEvent, Op};
use hybridcache_tests::hc::{
    call, hc_del, hc_deltag, hc_events, hc_set, query, select, EventsReply,
};
use hybridcache_tests::subscriber::{assert_consecutive, decode};
use hybridcache_tests::{HcInfo, RedisServer, Subscriber, EVENT_TIMEOUT, QUIET_PERIOD};
use redis::{Connection, Value};
use std::time::{Duration, Instant};

fn setup() -> (RedisServer, Connection, Subscriber) {
    let server = RedisServer::new();
    let con = server.connection();
    let sub = Subscriber::new(&server);
    (server, con, sub)
}

fn config_set(con: &mut Connection, name: &str, value: &str) {
    let _: () = query(con, redis::cmd("CONFIG").arg("SET").arg(name).arg(value));
}

/// `(event_log_changes, event_log_bytes, event_replays, event_replays_too_old)`.
fn log_info(con: &mut Connection) -> (i64, i64, i64, i64) {
    let info = HcInfo::read(con);
    (
        info.int("event_log_changes"),
        info.int("event_log_bytes"),
        info.int("event_replays"),
        info.int("event_replays_too_old"),
    )
}

/// Every raw message until none has come for [`QUIET_PERIOD`] (at most 20 s).
fn payloads_until_quiet(sub: &Subscriber) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut payloads = Vec::new();
    while Instant::now() < deadline {
        match sub.next_payload(QUIET_PERIOD) {
            Some(payload) => payloads.push(payload),
            None => break,
        }
    }
    payloads
}

/// Reads messages into `payloads` until they hold `total` changes in all (a loaded machine
/// can pause longer than the quiet period between two messages), then until quiet.
fn payloads_until_changes(sub: &Subscriber, payloads: &mut Vec<Vec<u8>>, total: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while changes_of(payloads).len() < total && Instant::now() < deadline {
        if let Some(payload) = sub.next_payload(Duration::from_millis(100)) {
            payloads.push(payload);
        }
    }
    payloads.extend(payloads_until_quiet(sub));
}

fn changes_of(payloads: &[Vec<u8>]) -> Vec<InvalidationEvent> {
    payloads.iter().flat_map(|p| decode(p)).collect()
}

/// Writes `prefix:0..n`, one command (so one message) at a time.
fn write_one_by_one(con: &mut Connection, prefix: &str, n: usize) {
    for i in 0..n {
        hc_set(con, format!("{prefix}:{i}"), "v", &[]);
    }
}

/// Writes `prefix:0..n` in one pipeline.
fn write_pipelined(con: &mut Connection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd(command::SET)
            .arg(format!("{prefix}:{i}"))
            .arg("v")
            .ignore();
    }
    let _: () = pipe.query(con).unwrap();
}

fn assert_too_old(reply: &EventsReply, last: u64, what: &str) {
    assert_eq!(
        (reply.status.as_str(), reply.last, reply.message.as_deref()),
        (events::TOO_OLD, last, None),
        "{what}"
    );
}

/// `(op, db, change)` of each event.
fn summary(events: &[InvalidationEvent]) -> Vec<(Op, Option<u32>, Change)> {
    events
        .iter()
        .map(|e| (e.op, e.db, e.change.clone()))
        .collect()
}

/// Asks `SINCE k` for every `k` from `from` to the last change, where `published` are the
/// changes published after `from`, in order, as subscribers received them (their numbers
/// increase; numbers used but never published leave gaps). Each answer must be `too-old` or
/// exactly the changes after `k`, and the log must reach back to one point: too-old below
/// it, ok from it on. Returns that point.
fn assert_every_position_exact_or_too_old(
    con: &mut Connection,
    origin: &str,
    from: u64,
    published: &[InvalidationEvent],
) -> u64 {
    let last = published.last().map_or(from, |e| e.seq);
    let mut previous = from;
    for event in published {
        assert!(
            event.seq > previous,
            "published changes are numbered in order"
        );
        previous = event.seq;
    }
    let mut reaches_back_to = None;
    for k in from..=last {
        let reply = hc_events(con, origin, k, None);
        assert_eq!(reply.last, last, "SINCE {k}: {reply:?}");
        if reply.is_ok() {
            reaches_back_to.get_or_insert(k);
            let after: Vec<InvalidationEvent> =
                published.iter().filter(|e| e.seq > k).cloned().collect();
            assert_eq!(reply.changes(), after, "SINCE {k}");
        } else {
            assert_too_old(&reply, last, &format!("SINCE {k}"));
            assert!(
                reaches_back_to.is_none(),
                "SINCE {k} is too old, but SINCE {} was answered",
                reaches_back_to.unwrap_or_default()
            );
        }
    }
    reaches_back_to.unwrap_or_else(|| panic!("SINCE {last} (the last change) was not answered"))
}

/// How many of the newest messages a log bounded by `fits(changes, bytes)` keeps: it drops
/// whole messages, oldest first, until it fits.
fn kept_messages(payloads: &[Vec<u8>], fits: impl Fn(usize, usize) -> bool) -> usize {
    let (mut changes, mut bytes, mut kept) = (0, 0, 0);
    for payload in payloads.iter().rev() {
        changes += decode(payload).len();
        bytes += payload.len();
        if !fits(changes, bytes) {
            break;
        }
        kept += 1;
    }
    kept
}

// ---------------------------------------------------------------------------------------
// Answers.

#[test]
fn since_returns_exactly_what_subscribers_received_from_any_position_and_in_pages() {
    let (_server, mut con, sub) = setup();
    let origin = HcInfo::read(&mut con).origin;
    hc_set(&mut con, "a", "v", &["t", "u"]);
    hc_set(&mut con, &b"bin\x00\xff"[..], "v", &[]);
    select(&mut con, 3);
    hc_set(&mut con, "x", "v", &[]);
    let _: () = query(&mut con, &redis::cmd("FLUSHDB"));
    select(&mut con, 0);
    let mut pipe = redis::pipe();
    for i in 0..40 {
        pipe.cmd(command::SET)
            .arg(format!("p:{i}"))
            .arg("v")
            .arg(command::option::TAGS)
            .arg("t")
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    assert_eq!(hc_del(&mut con, &["a", "missing"]), 1);
    let _: i64 = query(&mut con, redis::cmd("DEL").arg("p:0"));
    let _: i64 = query(&mut con, redis::cmd("EXPIRE").arg("p:1").arg(100));
    let _: () = query(&mut con, redis::cmd("RENAME").arg("p:2").arg("q"));
    // p:1, p:3 ..= p:39 and q (p:2 renamed).
    assert_eq!(hc_deltag(&mut con, &["t"]), 39);
    let payloads = payloads_until_quiet(&sub);
    let published = changes_of(&payloads);
    assert_consecutive(&published);
    // 4 + 40 + del + removed + expire + removed/added + deltag.
    assert_eq!(published.len(), 50, "{:?}", summary(&published));
    let last = published.len() as u64;

    // Everything, then from every position.
    let all = hc_events(&mut con, &origin, 0, None);
    assert_eq!((all.status.as_str(), all.last), (events::OK, last));
    assert_eq!(all.changes(), published, "the log holds what was published");
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published),
        0,
        "the default log holds every change"
    );

    // Pages: each at most COUNT changes, continued from the last one received.
    for count in [1, 3, 7, 49, 50, 1000] {
        let mut at = 0;
        let mut paged = Vec::new();
        while at < last {
            let page = hc_events(&mut con, &origin, at, Some(count));
            assert!(page.is_ok(), "{page:?}");
            assert_eq!(page.last, last);
            let changes = page.changes();
            assert_eq!(
                changes.len() as u64,
                count.min(last - at),
                "COUNT {count} from {at}"
            );
            at = changes.last().map(|c| c.seq).unwrap_or(at);
            paged.extend(changes);
        }
        assert_eq!(paged, published, "COUNT {count}");
    }

    // Nothing after the last change: ok, an empty message.
    for count in [None, Some(5)] {
        let none = hc_events(&mut con, &origin, last, count);
        assert_eq!(
            (none.status.as_str(), none.last),
            (events::OK, last),
            "{none:?}"
        );
        assert_eq!(
            none.message.as_deref(),
            Some(format!(r#"{{"v":2,"origin":"{origin}","events":[]}}"#).as_bytes())
        );
    }
    // Ahead of what was published: too old (nothing a reader could have seen).
    assert_too_old(
        &hc_events(&mut con, &origin, last + 1, None),
        last,
        "SINCE last+1",
    );
    assert_too_old(
        &hc_events(&mut con, &origin, u64::MAX, None),
        last,
        "SINCE 2^64-1",
    );
}

#[test]
fn a_log_bounded_to_10_changes_reaches_back_exactly_10_changes() {
    let (_server, mut con, sub) = setup();
    config_set(&mut con, "hybridcache.event-log-changes", "10");
    let origin = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "k", 50);
    let published = changes_of(&payloads_until_quiet(&sub));
    assert_eq!(published.len(), 50);
    for k in [0, 1, 20, 39] {
        assert_too_old(
            &hc_events(&mut con, &origin, k, None),
            50,
            &format!("SINCE {k}"),
        );
    }
    let ten = hc_events(&mut con, &origin, 40, None);
    assert!(ten.is_ok(), "{ten:?}");
    assert_eq!(ten.changes(), &published[40..]);
    let five = hc_events(&mut con, &origin, 45, None);
    assert_eq!(five.changes(), &published[45..]);
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published),
        40
    );
    assert_eq!(log_info(&mut con).0, 10);
}

#[test]
fn the_log_keeps_the_newest_changes_so_every_answer_is_exact_or_too_old() {
    let (_server, mut con, sub) = setup();
    config_set(&mut con, "hybridcache.event-log-changes", "10");
    let origin = HcInfo::read(&mut con).origin;
    let mut payloads = Vec::new();
    let mut written = 0;
    // Messages of 1, 6, 1, 25 (more than the whole log) and 1 changes.
    for (prefix, n, pipelined) in [
        ("a", 3, false),
        ("b", 6, true),
        ("c", 2, false),
        ("d", 25, true),
        ("e", 1, false),
    ] {
        if pipelined {
            write_pipelined(&mut con, prefix, n);
        } else {
            write_one_by_one(&mut con, prefix, n);
        }
        written += n;
        payloads_until_changes(&sub, &mut payloads, written);
        let published = changes_of(&payloads);
        let last = published.len() as u64;
        // The oldest changes go first, within a message too.
        let kept = published.len().min(10);
        assert_eq!(
            log_info(&mut con).0 as usize,
            kept,
            "after {prefix}: the log holds the newest 10 changes"
        );
        let from = assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published);
        assert_eq!(from, last - kept as u64, "after {prefix}");
    }
    assert_eq!(log_info(&mut con).0, 10);
}

#[test]
fn event_log_bytes_bounds_the_log_by_the_bytes_of_its_messages() {
    let (_server, mut con, sub) = setup();
    const BYTES: usize = 1000;
    config_set(&mut con, "hybridcache.event-log-bytes", &BYTES.to_string());
    let origin = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "key", 40);
    let payloads = payloads_until_quiet(&sub);
    assert_eq!(payloads.len(), 40);
    let kept = kept_messages(&payloads, |_, bytes| bytes <= BYTES);
    assert!(
        (5..40).contains(&kept),
        "{kept} of 40 messages of about 100 bytes within {BYTES} bytes"
    );
    assert_eq!(log_info(&mut con).0 as usize, kept);
    let published = changes_of(&payloads);
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published),
        (40 - kept) as u64
    );
}

#[test]
fn with_event_log_changes_0_there_is_no_log_and_every_earlier_position_is_too_old() {
    let (_server, mut con, sub) = setup();
    config_set(&mut con, "hybridcache.event-log-changes", "0");
    let origin = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "k", 3);
    write_pipelined(&mut con, "p", 5);
    assert_eq!(changes_of(&payloads_until_quiet(&sub)).len(), 8);
    for k in 0..8 {
        assert_too_old(
            &hc_events(&mut con, &origin, k, None),
            8,
            &format!("SINCE {k}"),
        );
    }
    let none = hc_events(&mut con, &origin, 8, None);
    assert!(none.is_ok() && none.changes().is_empty(), "{none:?}");
    let (changes, _, replays, too_old) = log_info(&mut con);
    assert_eq!((changes, replays, too_old), (0, 1, 8));
    // Turned on again, it keeps what is published from then on.
    config_set(&mut con, "hybridcache.event-log-changes", "100");
    write_one_by_one(&mut con, "later", 2);
    assert_eq!(changes_of(&payloads_until_quiet(&sub)).len(), 2);
    assert_too_old(&hc_events(&mut con, &origin, 7, None), 10, "SINCE 7");
    let later = hc_events(&mut con, &origin, 8, None);
    assert_eq!(
        later.changes().iter().map(|c| c.seq).collect::<Vec<_>>(),
        [9, 10]
    );
}

#[test]
fn a_smaller_log_bound_applies_at_once() {
    let (_server, mut con, _sub) = setup();
    let origin = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "k", 20);
    assert_eq!(log_info(&mut con).0, 20);
    config_set(&mut con, "hybridcache.event-log-changes", "5");
    // No write since: the log should already be bounded (memory given back, answers
    // consistent with the configuration in force).
    assert_eq!(
        log_info(&mut con).0,
        5,
        "event_log_changes right after CONFIG SET"
    );
    assert_too_old(&hc_events(&mut con, &origin, 10, None), 20, "SINCE 10");
    config_set(&mut con, "hybridcache.event-log-changes", "0");
    assert_eq!(
        log_info(&mut con).0,
        0,
        "event_log_changes right after CONFIG SET 0"
    );
}

// ---------------------------------------------------------------------------------------
// Origins.

#[test]
fn other_origin_for_a_made_up_origin_and_for_the_origin_before_a_restart() {
    let mut server = RedisServer::new();
    let mut con = server.connection();
    let before = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "k", 3);
    let upper = before.to_uppercase();
    for made_up in ["0123456789abcdef", "", "\u{0}\u{ff}", upper.as_str()] {
        if made_up == before {
            continue;
        }
        let reply = hc_events(&mut con, made_up, 0, None);
        assert_eq!(
            (reply.status.as_str(), reply.last, reply.message.as_deref()),
            (events::OTHER_ORIGIN, 3, None),
            "origin {made_up:?}"
        );
    }
    // Not a replay, not a too-old answer.
    assert_eq!((log_info(&mut con).2, log_info(&mut con).3), (0, 0));
    assert!(hc_events(&mut con, &before, 0, None).is_ok());

    server.restart();
    let mut con = server.connection();
    let after = HcInfo::read(&mut con).origin;
    assert_ne!(after, before, "a restarted server has a new origin");
    let stale = hc_events(&mut con, &before, 3, None);
    assert_eq!(
        (stale.status.as_str(), stale.message.as_deref()),
        (events::OTHER_ORIGIN, None),
        "{stale:?}"
    );
    assert_eq!(stale.last, 0, "last is the new process's");
    // The new process's own log starts empty (nothing was saved, nothing loaded).
    let fresh = hc_events(&mut con, &after, 0, None);
    assert_eq!(
        (fresh.status.as_str(), fresh.last),
        (events::OK, 0),
        "{fresh:?}"
    );
    assert!(fresh.changes().is_empty());
    hc_set(&mut con, "new", "v", &[]);
    let first = hc_events(&mut con, &after, 0, None).changes();
    assert_eq!(
        first
            .iter()
            .map(|c| (c.origin.as_str(), c.seq))
            .collect::<Vec<_>>(),
        [(after.as_str(), 1)]
    );
}

#[test]
fn a_replica_answers_for_its_own_origin_with_the_changes_it_published() {
    let primary = RedisServer::new();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_in_sync_with(&primary);
    let mut p = primary.connection();
    let mut r = replica.connection();
    let primary_origin = HcInfo::read(&mut p).origin;
    let replica_info = HcInfo::read(&mut r);
    let replica_origin = replica_info.origin.clone();
    assert_ne!(replica_origin, primary_origin);
    let replica_from = replica_info.events_published as u64;
    let primary_from = HcInfo::read(&mut p).events_published as u64;
    let sub = Subscriber::new(&replica);

    hc_set(&mut p, "a", "v", &["t"]);
    hc_set(&mut p, "b", "v", &["t", "u"]);
    assert_eq!(hc_del(&mut p, &["a"]), 1);
    write_pipelined(&mut p, "p", 20);
    assert_eq!(hc_deltag(&mut p, &["u"]), 1);
    let _: i64 = query(&mut p, redis::cmd("DEL").arg("p:3"));
    replica.wait_in_sync_with(&primary);
    let mut published = Vec::new();
    while published.len() < 25 {
        let message = sub
            .next_message(EVENT_TIMEOUT)
            .unwrap_or_else(|| panic!("{} of 25 changes from the replica", published.len()));
        published.extend(message);
    }
    sub.assert_no_event(QUIET_PERIOD);
    assert!(published.iter().all(|c| c.origin == replica_origin));
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut r, &replica_origin, replica_from, &published),
        replica_from
    );
    // The replica announced the same changes as its primary, under its own numbers.
    let on_primary = hc_events(&mut p, &primary_origin, primary_from, None);
    assert_eq!(summary(&on_primary.changes()), summary(&published));
    let foreign = hc_events(&mut r, &primary_origin, primary_from, None);
    assert_eq!(foreign.status, events::OTHER_ORIGIN, "{foreign:?}");
}

// ---------------------------------------------------------------------------------------
// Flushes and reloads.

#[test]
fn flushall_is_in_the_log_and_debug_reload_keeps_the_log_consistent() {
    let (_server, mut con, sub) = setup();
    let origin = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "k", 3);
    let _: () = query(&mut con, &redis::cmd("FLUSHALL"));
    write_pipelined(&mut con, "p", 4);
    let mut published = changes_of(&payloads_until_quiet(&sub));
    assert_eq!(published.len(), 8);
    assert_eq!(
        (published[3].op, published[3].db, &published[3].change),
        (Op::Flushall, None, &Change::Flush)
    );
    assert_eq!(hc_events(&mut con, &origin, 0, None).changes(), published);

    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    let reload = changes_of(&payloads_until_quiet(&sub));
    // The flush before the load is announced by Redis and Valkey 8, not by Valkey 9 (no
    // flush server event); the "loaded" flush always is.
    let loaded = (Op::Loaded, None, Change::Flush);
    let reloaded = summary(&reload);
    assert!(
        reloaded == [(Op::Flushall, None, Change::Flush), loaded.clone()] || reloaded == [loaded],
        "{reloaded:?}"
    );
    published.extend(reload);
    hc_set(&mut con, "after", "v", &[]);
    published.extend(changes_of(&payloads_until_quiet(&sub)));
    assert_consecutive(&published);
    assert_eq!(
        HcInfo::read(&mut con).origin,
        origin,
        "same process, same origin"
    );
    // The reload used no number it did not publish: the log still reaches back to the
    // start, through the reload.
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published),
        0
    );
}

// ---------------------------------------------------------------------------------------
// Bad requests.

#[test]
fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let (_server, mut con, _sub) = setup();
    let origin = HcInfo::read(&mut con).origin;
    hc_set(&mut con, "k", "v", &[]);
    let arity = "ERR wrong number of arguments";
    let unknown = "ERR syntax error, unknown option";
    let not_integer = "ERR value is not an integer or out of range";
    let count_range = "ERR COUNT must be between 1 and 1000000";
    let o = origin.as_str();
    let cases: &[(&[&str], &str)] = &[
        (&[], arity),
        (&["SINCE"], arity),
        (&["SINCE", o], arity),
        (&["FROM", o, "1"], unknown),
        (&["SINCE", o, "1", "LIMIT", "3"], unknown),
        (
            &["SINCE", o, "1", "COUNT"],
            "ERR syntax error, COUNT needs a value",
        ),
        (&["SINCE", o, "1", "COUNT", "2", "COUNT", "3"], unknown),
        (&["SINCE", o, "1", "2"], unknown),
        (&["SINCE", o, "-1"], not_integer),
        (&["SINCE", o, "abc"], not_integer),
        (&["SINCE", o, "+1"], not_integer),
        (&["SINCE", o, "1.5"], not_integer),
        (&["SINCE", o, ""], not_integer),
        (&["SINCE", o, " 1"], not_integer),
        (&["SINCE", o, "18446744073709551616"], not_integer),
        (&["SINCE", o, "0", "COUNT", "-1"], not_integer),
        (&["SINCE", o, "0", "COUNT", "x"], not_integer),
        (&["SINCE", o, "0", "COUNT", "0"], count_range),
        (&["SINCE", o, "0", "COUNT", "1000001"], count_range),
    ];
    for (args, expected) in cases {
        let mut words = vec![command::EVENTS];
        words.extend_from_slice(args);
        let reply = call(&mut con, &words);
        match &reply {
            Err(text) => assert!(text.starts_with(expected), "{words:?}: {text}"),
            Ok(value) => panic!("{words:?} answered {value:?}, expected {expected}"),
        }
    }
    // The unknown word is named, printable, whatever its bytes.
    let weird = call(
        &mut con,
        &[
            command::EVENTS.as_bytes(),
            &b"\x00\xffbad\r\n"[..],
            o.as_bytes(),
            &b"1"[..],
        ],
    )
    .unwrap_err();
    assert!(weird.starts_with(unknown), "{weird}");
    assert!(weird.contains("bad"), "{weird}");
    assert!(
        weird.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{weird:?}"
    );
    let unknown_reply = call(&mut con, &[command::EVENTS, "FROM", o, "1"]).unwrap_err();
    assert!(unknown_reply.contains("'FROM'"), "{unknown_reply}");
    assert!(
        unknown_reply.contains("HC.EVENTS SINCE <origin> <seq> [COUNT n]"),
        "{unknown_reply}"
    );
    // Keywords in any case; the largest COUNT is accepted.
    let lower = call(
        &mut con,
        &[command::EVENTS, "since", o, "0", "count", "1000000"],
    )
    .unwrap();
    assert!(
        hybridcache_tests::hc::parse_events_reply(&lower).is_some_and(|r| r.changes().len() == 1),
        "{lower:?}"
    );
    assert_eq!(
        call(&mut con, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
    // Errors are neither replays nor too-old answers.
    assert_eq!((log_info(&mut con).2, log_info(&mut con).3), (1, 0));
}

// ---------------------------------------------------------------------------------------
// INFO.

#[test]
fn info_reports_the_log_size_and_counts_replays_and_too_old_answers() {
    let (_server, mut con, sub) = setup();
    let origin = HcInfo::read(&mut con).origin;
    assert_eq!(log_info(&mut con), (0, 0, 0, 0));
    write_one_by_one(&mut con, "k", 5);
    let payloads = payloads_until_quiet(&sub);
    let (changes, bytes, _, _) = log_info(&mut con);
    assert_eq!(changes, 5);
    let payload_bytes: usize = payloads.iter().map(Vec::len).sum();
    assert!(
        bytes as usize >= payload_bytes,
        "event_log_bytes {bytes} < the {payload_bytes} bytes of its messages"
    );
    assert!(hc_events(&mut con, &origin, 0, None).is_ok());
    assert!(hc_events(&mut con, &origin, 5, None).is_ok());
    assert_eq!((log_info(&mut con).2, log_info(&mut con).3), (2, 0));
    assert!(!hc_events(&mut con, &origin, 6, None).is_ok());
    assert_eq!((log_info(&mut con).2, log_info(&mut con).3), (2, 1));

    write_pipelined(&mut con, "p", 100);
    let _ = payloads_until_quiet(&sub);
    let (changes, more_bytes, _, _) = log_info(&mut con);
    assert_eq!(changes, 105);
    assert!(more_bytes > bytes, "{more_bytes} <= {bytes}");

    // Bounded to 10 changes, the next message pushes the big ones out.
    config_set(&mut con, "hybridcache.event-log-changes", "10");
    hc_set(&mut con, "one", "v", &[]);
    let _ = payloads_until_quiet(&sub);
    let (changes, fewer_bytes, replays, too_old) = log_info(&mut con);
    assert!((1..=10).contains(&changes), "{changes} changes kept");
    assert!(fewer_bytes < more_bytes, "{fewer_bytes} >= {more_bytes}");
    assert!(!hc_events(&mut con, &origin, 0, None).is_ok());
    assert!(hc_events(&mut con, &origin, 105, None).is_ok());
    assert_eq!(
        (log_info(&mut con).2, log_info(&mut con).3),
        (replays + 1, too_old + 1)
    );
}

#[test]
fn debug_loadaof_uses_numbers_it_does_not_publish_and_the_log_stays_exact() {
    let server = RedisServer::builder()
        .arg("--appendonly")
        .arg("yes")
        .start();
    let mut con = server.connection();
    let sub = Subscriber::new(&server);
    let origin = HcInfo::read(&mut con).origin;
    hc_set(&mut con, "a", "v", &["t"]);
    hc_set(&mut con, "b", "v", &["t"]);
    assert_eq!(hc_deltag(&mut con, &["t"]), 2);
    hc_set(&mut con, "c", "v", &[]);
    let mut published = changes_of(&payloads_until_quiet(&sub));
    assert_eq!(published.len(), 4);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("LOADAOF"));
    let reload = changes_of(&payloads_until_quiet(&sub));
    // The flush before the load is announced by Redis and Valkey 8, not by Valkey 9 (no
    // flush server event); the "loaded" flush always is.
    let loaded = (Op::Loaded, None, Change::Flush);
    let reloaded = summary(&reload);
    assert!(
        reloaded == [(Op::Flushall, None, Change::Flush), loaded.clone()] || reloaded == [loaded],
        "{reloaded:?}"
    );
    // Replaying HC.SET and HC.DELTAG numbered the loaded entries: those numbers were used
    // and never published (the "loaded" flush stands for them).
    assert_eq!(reload[0].seq, 5);
    assert!(reload[1].seq > 6, "{reload:?}");
    published.extend(reload);
    hc_set(&mut con, "after", "v", &[]);
    published.extend(changes_of(&payloads_until_quiet(&sub)));
    // The reload's two changes went out in one message right after change 4: the log goes
    // on reaching back to the start, and answers across the unused numbers exactly.
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published),
        0
    );
}

#[test]
fn a_restored_entry_is_numbered_in_sequence_whatever_its_version_elsewhere() {
    // An entry written as change 301 of another server.
    let other = RedisServer::new();
    let mut other_con = other.connection();
    write_pipelined(&mut other_con, "o", 300);
    hc_set(&mut other_con, "src", "v", &["t"]);
    let dump: Vec<u8> = query(&mut other_con, redis::cmd("DUMP").arg("src"));

    let (_server, mut con, sub) = setup();
    let origin = HcInfo::read(&mut con).origin;
    write_one_by_one(&mut con, "k", 3);
    let _: () = query(
        &mut con,
        redis::cmd("RESTORE").arg("dst").arg(0).arg(dump.as_slice()),
    );
    hc_set(&mut con, "after", "v", &[]);
    let published = changes_of(&payloads_until_quiet(&sub));
    assert_eq!(
        published.iter().map(|c| (c.seq, c.op)).collect::<Vec<_>>(),
        [
            (1, Op::Set),
            (2, Op::Set),
            (3, Op::Set),
            (4, Op::Added),
            (5, Op::Set)
        ],
        "a restored value is a new write of this server: the next number, no gap \
         (a slot migration restores keys on the target; a gap would make readers reset)"
    );
    assert_eq!(
        assert_every_position_exact_or_too_old(&mut con, &origin, 0, &published),
        0
    );
}
