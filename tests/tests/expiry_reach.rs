//! TTL changes reach every L1 (issue #13): after two instances cached key k (with a long
//! L1 lifetime), a raw client shortens k's TTL (`PEXPIRE`, `EXPIRE`, `EXPIREAT`), or
//! removes it (`PERSIST`) and later deletes k; no instance may serve k past its new
//! deadline plus the delivery bound ([`BOUND`]).
//!
//! 20,000 other keys carry TTLs meanwhile, so Redis's sampling of expired keys is unlikely
//! to find k (and announce its expiry) in time: the instances must learn the new deadline
//! from the TTL change itself. Nothing in these tests reads k raw after the change, since a
//! raw read would expire k lazily and announce it. The last scenario does the same under
//! `CLIENT PAUSE <ms> WRITE`, during which Redis expires nothing.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_tests::client_support::{build, builder};
use hybridcache_tests::hc::{query, server_time_ms};
use hybridcache_tests::RedisServer;
use std::time::{Duration, Instant};

/// How long after the deadline an instance may still serve the key.
const BOUND: Duration = Duration::from_millis(300);

/// How long after the deadline plus the bound the instances are watched (unless a test
/// says otherwise).
const WATCH: Duration = Duration::from_millis(700);

/// Other keys carrying TTLs.
const OTHER_KEYS: usize = 20_000;

/// Interval between two reads of the watched key.
const POLL: Duration = Duration::from_millis(20);

/// How long one read of the watched key may take before it counts as "did not serve".
const READ_TIMEOUT: Duration = Duration::from_millis(500);

const KEY: &str = "product:1";

/// A server with [`OTHER_KEYS`] plain keys expiring in an hour, and two instances that
/// both hold [`KEY`] in L1 for a minute.
async fn two_instances_caching_the_key() -> (RedisServer, [(&'static str, HybridCache); 2]) {
    let server = RedisServer::new();
    let mut con = server.connection();
    let mut pipe = redis::pipe();
    for i in 0..OTHER_KEYS {
        pipe.cmd("SET")
            .arg(format!("other:{i}"))
            .arg("x")
            .arg("EX")
            .arg(3600)
            .ignore();
    }
    pipe.query::<()>(&mut con)
        .unwrap_or_else(|e| panic!("the other keys were not written: {e}"));
    let a = build(builder(&server).name("a")).await;
    let b = build(builder(&server).name("b")).await;
    let options = EntryOptions::new()
        .ttl(Duration::from_secs(60))
        .l1_ttl(Duration::from_secs(60));
    a.get_or_set(
        KEY,
        || async { Ok::<_, std::io::Error>("v1".to_string()) },
        options,
    )
    .await
    .expect("A fills the key");
    for (name, handle) in [("A", &a), ("B", &b)] {
        // The second read must be an L1 hit: both instances hold the key in L1.
        let _ = handle.get::<String>(KEY).await;
        let hits = handle.stats().l1_hits;
        let value = handle.get::<String>(KEY).await.expect("the read");
        assert_eq!(value.as_deref().map(String::as_str), Some("v1"));
        assert_eq!(
            handle.stats().l1_hits,
            hits + 1,
            "{name} does not hold the key in L1; the scenario needs it to"
        );
    }
    (server, [("A", a), ("B", b)])
}

/// Reads [`KEY`] through every instance every [`POLL`] from `deadline` + [`BOUND`] until
/// `until` and asserts that none serves it. A read that
/// fails or takes longer than [`READ_TIMEOUT`] serves nothing (and is reported).
async fn assert_not_served_past(
    what: &str,
    instances: &[(&'static str, HybridCache)],
    deadline: Instant,
    until: Instant,
) {
    let from = deadline + BOUND;
    tokio::time::sleep_until(from.into()).await;
    let mut served = Vec::new();
    let mut unanswered = Vec::new();
    while Instant::now() < until {
        for (name, handle) in instances {
            let late = Instant::now().saturating_duration_since(deadline);
            match tokio::time::timeout(READ_TIMEOUT, handle.get::<String>(KEY)).await {
                Ok(Ok(Some(value))) => served.push(format!(
                    "{name} served {value:?} {late:?} after the deadline"
                )),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => unanswered.push(format!("{name}: {e}")),
                Err(_) => unanswered.push(format!("{name}: no answer within {READ_TIMEOUT:?}")),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    if !unanswered.is_empty() {
        eprintln!(
            "{what}: {} reads did not answer: {:?}",
            unanswered.len(),
            unanswered.first()
        );
    }
    assert!(
        served.is_empty(),
        "{what}: the key was served past its deadline plus {BOUND:?} ({} times), first: {}",
        served.len(),
        served.first().map_or("", String::as_str)
    );
}

/// The local instant of a server Unix time in milliseconds.
fn instant_of_unix_ms(con: &mut redis::Connection, unix_ms: i64) -> Instant {
    let now_ms = server_time_ms(con);
    let ahead = Duration::from_millis(u64::try_from(unix_ms - now_ms).unwrap_or(0));
    Instant::now() + ahead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pexpire_reaches_every_l1() {
    let (server, instances) = two_instances_caching_the_key().await;
    let mut con = server.connection();
    let changed: i64 = query(&mut con, redis::cmd("PEXPIRE").arg(KEY).arg(300));
    let deadline = Instant::now() + Duration::from_millis(300);
    assert_eq!(changed, 1);
    assert_not_served_past(
        "PEXPIRE k 300",
        &instances,
        deadline,
        deadline + BOUND + WATCH,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expire_reaches_every_l1() {
    let (server, instances) = two_instances_caching_the_key().await;
    let mut con = server.connection();
    let changed: i64 = query(&mut con, redis::cmd("EXPIRE").arg(KEY).arg(1));
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(changed, 1);
    assert_not_served_past("EXPIRE k 1", &instances, deadline, deadline + BOUND + WATCH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expireat_reaches_every_l1() {
    let (server, instances) = two_instances_caching_the_key().await;
    let mut con = server.connection();
    // The next whole second at least 500 ms away.
    let at_s = (server_time_ms(&mut con) + 1500) / 1000;
    let changed: i64 = query(&mut con, redis::cmd("EXPIREAT").arg(KEY).arg(at_s));
    assert_eq!(changed, 1);
    let deadline = instant_of_unix_ms(&mut con, at_s * 1000);
    assert_not_served_past(
        "EXPIREAT k <in 0.5-1.5 s>",
        &instances,
        deadline,
        deadline + BOUND + WATCH,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_del_after_persist_reaches_every_l1() {
    let (server, instances) = two_instances_caching_the_key().await;
    let mut con = server.connection();
    let changed: i64 = query(&mut con, redis::cmd("PERSIST").arg(KEY));
    assert_eq!(changed, 1);
    // The instances may refetch the key meanwhile: it is still there, now for good.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, handle) in &instances {
        let value = handle.get::<String>(KEY).await.expect("the read");
        assert_eq!(
            value.as_deref().map(String::as_str),
            Some("v1"),
            "{name} lost the key after PERSIST"
        );
    }
    let deleted: i64 = query(&mut con, redis::cmd("DEL").arg(KEY));
    let deadline = Instant::now();
    assert_eq!(deleted, 1);
    assert_not_served_past(
        "PERSIST k, then DEL k",
        &instances,
        deadline,
        deadline + BOUND + WATCH,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pexpire_reaches_every_l1_under_client_pause_write() {
    const PAUSE: Duration = Duration::from_millis(2500);
    let (server, instances) = two_instances_caching_the_key().await;
    let mut con = server.connection();
    let changed: i64 = query(&mut con, redis::cmd("PEXPIRE").arg(KEY).arg(300));
    let paused_at = Instant::now();
    let () = query(
        &mut con,
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(PAUSE.as_millis() as u64)
            .arg("WRITE"),
    );
    assert_eq!(changed, 1);
    let deadline = paused_at + Duration::from_millis(300);
    // Watch while the pause lasts (with a margin for the pause's own start).
    let pause_ends = paused_at + PAUSE - Duration::from_millis(100);
    let outcome = tokio::spawn({
        let instances = instances.clone();
        async move {
            assert_not_served_past(
                "PEXPIRE k 300, then CLIENT PAUSE WRITE",
                &instances,
                deadline,
                pause_ends,
            )
            .await;
        }
    })
    .await;
    let () = query(
        &mut server.connection(),
        redis::cmd("CLIENT").arg("UNPAUSE"),
    );
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
