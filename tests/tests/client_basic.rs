//! The client crate against a real server: two handles stay in sync.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_tests::RedisServer;
use std::time::{Duration, Instant};

async fn cache(server: &RedisServer) -> HybridCache {
    HybridCache::builder(format!("redis://127.0.0.1:{}/", server.port()))
        .build()
        .await
        .expect("cache builds")
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_handle_is_seen_by_the_other_handles_l1() {
    let server = RedisServer::new();
    let (a, b) = (cache(&server).await, cache(&server).await);
    a.set("k", "v1".to_string(), EntryOptions::new())
        .await
        .unwrap();
    assert_eq!(
        b.get::<String>("k")
            .await
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("v1")
    );
    assert_eq!(
        b.get::<String>("k")
            .await
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("v1")
    );
    assert!(b.stats().l1_hits >= 1, "{:?}", b.stats());
    a.set("k", "v2".to_string(), EntryOptions::new())
        .await
        .unwrap();
    eventually("b to see v2", async || {
        b.get::<String>("k")
            .await
            .unwrap()
            .as_deref()
            .map(String::as_str)
            == Some("v2")
    })
    .await;
    // The writer keeps its own value in L1 despite its own event.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hits = a.stats().l1_hits;
    assert_eq!(
        a.get::<String>("k")
            .await
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("v2")
    );
    assert_eq!(a.stats().l1_hits, hits + 1, "{:?}", a.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_by_tag_drops_the_entry_from_every_handle() {
    let server = RedisServer::new();
    let (a, b) = (cache(&server).await, cache(&server).await);
    let options = EntryOptions::new().tags(["t"]);
    a.set("k1", 1u32, options.clone()).await.unwrap();
    a.set("k2", 2u32, options).await.unwrap();
    assert_eq!(b.get::<u32>("k1").await.unwrap().as_deref(), Some(&1));
    assert_eq!(b.get::<u32>("k2").await.unwrap().as_deref(), Some(&2));
    assert_eq!(a.remove_by_tag("t").await.unwrap(), 2);
    assert_eq!(a.get::<u32>("k1").await.unwrap(), None);
    eventually("b to drop k1 and k2", async || {
        b.get::<u32>("k1").await.unwrap().is_none() && b.get::<u32>("k2").await.unwrap().is_none()
    })
    .await;
}
