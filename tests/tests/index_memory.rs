//! Memory the tag index takes and gives back, measured with `used_memory` on a real server
//! (the module's allocations go through Redis's allocator). Bounds, not benchmarks: the
//! figures themselves are in BENCHMARKS.md; these tests fail when an entry costs far more than
//! its design says, or when memory stays behind after the keys left.

use hybridcache_tests::index_check::hc_check;
use hybridcache_tests::info::info_i64;
use hybridcache_tests::{wait_until, HcInfo, RedisServer};
use std::time::Duration;

const VALUE: [u8; 100] = [b'v'; 100];

/// A server whose event log keeps nothing (it would count as per-entry memory), with a
/// fast expiry cycle.
fn server() -> RedisServer {
    RedisServer::builder()
        .args(["--hz", "100", "--hybridcache.event-log-changes", "0"])
        .start()
}

fn used_memory(con: &mut redis::Connection) -> i64 {
    info_i64(con, "memory", "used_memory")
}

/// Writes `keys` with 3 tags each from a pool of `pool`, pipelined.
fn fill(con: &mut redis::Connection, keys: std::ops::Range<u32>, pool: u32, ttl_ms: Option<u64>) {
    let mut pipe = redis::pipe();
    for i in keys {
        let cmd = pipe.cmd("HC.SET").arg(format!("k:{i:012}")).arg(&VALUE[..]);
        if let Some(ttl) = ttl_ms {
            cmd.arg("PX").arg(ttl);
        }
        cmd.arg("TAGS");
        for t in 0..3 {
            cmd.arg(format!("tag:{:04}", (i * 7 + t * 131) % pool));
        }
        cmd.ignore();
        if pipe.len() >= 1000 {
            pipe.query::<()>(con).unwrap();
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        pipe.query::<()>(con).unwrap();
    }
}

#[test]
fn an_entry_with_three_tags_costs_less_than_the_lua_scheme() {
    let server = server();
    let mut con = server.connection();
    let n = 20_000u32;
    let before = used_memory(&mut con);
    fill(&mut con, 0..n, 200, None);
    let per_entry = (used_memory(&mut con) - before) as f64 / f64::from(n);
    // 100-byte values: a plain SET costs about 187 bytes, the Lua scheme (SET + SADD per
    // tag) about 393, this index about 285 (it was 386 with hash sets of shared names).
    assert!(per_entry < 320.0, "{per_entry:.1} bytes per entry");
    assert!(
        per_entry > 150.0,
        "{per_entry:.1} bytes per entry: not measured?"
    );
    let info = HcInfo::read(&mut con);
    assert_eq!(info.counts(), (i64::from(n), 200, 3 * i64::from(n)));
    let check = hc_check(&mut con);
    assert_eq!(
        (check.keys, check.problems),
        (i64::from(n), Vec::<String>::new())
    );
}

#[test]
fn memory_comes_back_when_tagged_entries_expire() {
    let server = server();
    let mut con = server.connection();
    let before = used_memory(&mut con);
    // Ten lasting entries first (the lowest slots), then 50,000 that expire.
    fill(&mut con, 0..10, 1000, None);
    fill(&mut con, 10..50_010, 1000, Some(2_000));
    let peak = used_memory(&mut con) - before;
    assert!(peak > 5_000_000, "the fill took {peak} bytes");
    wait_until(Duration::from_secs(60), "the entries to expire", || {
        redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap() == 10
    });
    // Redis shrinks its own tables in its cron: give it a moment.
    wait_until(Duration::from_secs(10), "memory to come back", || {
        used_memory(&mut con) - before < 1_000_000
    });
    let info = HcInfo::read(&mut con);
    assert_eq!(info.counts(), (10, 30, 30));
    let check = hc_check(&mut con);
    assert_eq!((check.keys, check.problems), (10, Vec::<String>::new()));
}
