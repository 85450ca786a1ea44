//! Replay instead of flush: a handle whose subscription dropped asks the server for the
//! changes it missed (`HC.EVENTS SINCE`) and drops exactly those from L1, keeping every other
//! entry; it clears L1 only when the server's log no longer reaches back or the server is
//! another process. The outage is made real with ACLs: `resetchannels` on the handle's user
//! makes Redis close its subscription and refuse a new one (its command connection works on),
//! `allchannels` ends it.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_tests::client_support::{build, eventually, get_value};
use hybridcache_tests::hc::{self, query};
use hybridcache_tests::{RedisServer, QUIET_PERIOD};
use std::time::Duration;

/// How long a handle may take to subscribe again once its user may.
const RECOVERY: Duration = Duration::from_secs(5);

const USER: &str = "cache-user";
const PASSWORD: &str = "pw";

/// A server with a user the handle logs in as.
fn server() -> RedisServer {
    let server = RedisServer::new();
    acl(
        &server,
        &["on", &format!(">{PASSWORD}"), "~*", "&*", "+@all"],
    );
    server
}

fn acl(server: &RedisServer, rules: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(USER);
    for rule in rules {
        cmd.arg(*rule);
    }
    let _: () = query(&mut server.connection(), &cmd);
}

async fn handle(server: &RedisServer) -> HybridCache {
    let url = format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/", server.port());
    build(
        HybridCache::builder(url)
            .max_reconnect_backoff(Duration::from_millis(100))
            .health_check(Duration::from_millis(200), Duration::from_millis(500)),
    )
    .await
}

/// Takes the handle's subscription away until [`outage_ends`].
async fn outage_starts(server: &RedisServer, h: &HybridCache) {
    acl(server, &["resetchannels"]);
    eventually(RECOVERY, "the subscription to drop", async || {
        !h.is_subscribed()
    })
    .await;
}

async fn outage_ends(server: &RedisServer, h: &HybridCache) {
    acl(server, &["allchannels"]);
    eventually(RECOVERY, "the handle to subscribe again", async || {
        h.is_subscribed()
    })
    .await;
}

/// Fills `h`'s L1 with `n` keys `k:<i>` = i.
async fn fill(h: &HybridCache, n: u32) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("k:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        h.set(key, i as u32, EntryOptions::new().tags(["all"]))
            .await
            .unwrap();
    }
    keys
}

/// Reads every key and returns how many reads L1 answered.
async fn l1_answers(h: &HybridCache, keys: &[String], expected: impl Fn(usize) -> u32) -> u64 {
    let before = h.stats().l1_hits;
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(get_value::<u32>(h, key).await, Some(expected(i)), "{key}");
    }
    h.stats().l1_hits - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_changes_are_replayed_and_every_other_entry_stays_in_l1() {
    let server = server();
    let h = handle(&server).await;
    let keys = fill(&h, 200).await;
    assert_eq!(l1_answers(&h, &keys, |i| i as u32).await, 200);
    let before = h.stats();

    outage_starts(&server, &h).await;
    // Another instance's changes while this one hears nothing: writes, a delete, a TTL
    // change, a tag removal of keys this handle does not hold.
    let mut con = server.connection();
    for i in (0..200).step_by(10) {
        hc::hc_set(&mut con, format!("k:{i}"), "1000", &["all"]);
    }
    assert_eq!(hc::hc_del(&mut con, &["k:5"]), 1);
    let _: i64 = query(&mut con, redis::cmd("EXPIRE").arg("k:7").arg(1000));
    hc::hc_set(&mut con, "other:1", "x", &["other"]);
    assert_eq!(hc::hc_deltag(&mut con, &["other"]), 1);
    outage_ends(&server, &h).await;

    let after = h.stats();
    assert_eq!(
        after.l1_flushes, before.l1_flushes,
        "L1 was not reset: {after:?}"
    );
    assert_eq!(after.catch_ups, before.catch_ups + 1, "{after:?}");
    assert!(
        after.events_replayed >= 24,
        "20 sets, a delete, an expire, a set and a tag removal were replayed: {after:?}"
    );
    // The changed keys are read anew from Redis; the others are still in L1.
    let changed = |i: usize| i.is_multiple_of(10) || i == 5 || i == 7;
    let untouched: Vec<String> = (0..200)
        .filter(|i| !changed(*i))
        .map(|i| format!("k:{i}"))
        .collect();
    assert_eq!(
        l1_answers(&h, &untouched, |i| {
            let n: usize = untouched[i].trim_start_matches("k:").parse().unwrap();
            n as u32
        })
        .await,
        untouched.len() as u64,
        "every untouched entry is still served from L1"
    );
    for i in (0..200).step_by(10) {
        assert_eq!(get_value::<u32>(&h, &format!("k:{i}")).await, Some(1000));
    }
    assert_eq!(get_value::<u32>(&h, "k:5").await, None, "deleted meanwhile");
    let from_redis = h.stats().l2_hits;
    assert_eq!(get_value::<u32>(&h, "k:7").await, Some(7));
    assert_eq!(
        h.stats().l2_hits,
        from_redis + 1,
        "k:7's TTL changed: read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_too_short_for_the_outage_resets_l1_and_no_changed_value_is_served() {
    let server = server();
    let _: () = query(
        &mut server.connection(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("hybridcache.event-log-changes")
            .arg(5),
    );
    let h = handle(&server).await;
    let keys = fill(&h, 50).await;
    assert_eq!(l1_answers(&h, &keys, |i| i as u32).await, 50);
    let before = h.stats();

    outage_starts(&server, &h).await;
    let mut con = server.connection();
    for key in keys.iter().take(20) {
        hc::hc_set(&mut con, key, "1000", &["all"]);
    }
    outage_ends(&server, &h).await;

    let after = h.stats();
    assert_eq!(after.l1_flushes, before.l1_flushes + 1, "{after:?}");
    assert_eq!(
        after.catch_ups, before.catch_ups,
        "nothing was replayed: {after:?}"
    );
    for (i, key) in keys.iter().enumerate() {
        let expected = if i < 20 { 1000 } else { i as u32 };
        assert_eq!(get_value::<u32>(&h, key).await, Some(expected), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_another_origin_and_l1_is_reset() {
    let mut server = server();
    let h = handle(&server).await;
    let keys = fill(&h, 10).await;
    assert_eq!(l1_answers(&h, &keys, |i| i as u32).await, 10);
    let before = h.stats();
    server.restart();
    acl(
        &server,
        &["on", &format!(">{PASSWORD}"), "~*", "&*", "+@all"],
    );
    eventually(RECOVERY, "the handle to subscribe again", async || {
        h.is_subscribed() && h.stats().subscriptions > before.subscriptions
    })
    .await;
    let after = h.stats();
    assert_eq!(after.l1_flushes, before.l1_flushes + 1, "{after:?}");
    assert_eq!(after.catch_ups, before.catch_ups, "{after:?}");
    // Nothing was saved: the entries are gone, and L1 does not pretend otherwise.
    for key in &keys {
        assert_eq!(get_value::<u32>(&h, key).await, None, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_the_server_cannot_fill_resets_l1() {
    let server = server();
    let h = handle(&server).await;
    let keys = fill(&h, 10).await;
    assert_eq!(l1_answers(&h, &keys, |i| i as u32).await, 10);
    let before = h.stats();
    // A message of this server's origin numbered past what it published: the handle asks
    // the server, which has nothing of the kind, so it must reset.
    let mut con = server.connection();
    let origin = hybridcache_tests::HcInfo::read(&mut con).origin;
    let last = hybridcache_tests::HcInfo::read(&mut con).events_published;
    let forged = format!(
        r#"{{"v":2,"origin":"{origin}","events":[{{"seq":{},"db":0,"op":"set","kind":"keys","keys":["nothing"]}}]}}"#,
        last + 10
    );
    let _: i64 = query(
        &mut con,
        redis::cmd("PUBLISH").arg("hc:invalidations").arg(forged),
    );
    eventually(RECOVERY, "the handle to reset L1", async || {
        h.stats().l1_flushes > before.l1_flushes
    })
    .await;
    tokio::time::sleep(QUIET_PERIOD).await;
    assert!(h.is_subscribed());
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(get_value::<u32>(&h, key).await, Some(i as u32));
    }
}
