//! Two service instances sharing one Redis: a change made through one reaches the other's L1.
//!
//! Needs redis-server with the hybridcache module: `make example` starts one on a free port and
//! runs this; or start it yourself (`make run`) and `cargo run --release --example two_instances`
//! (the Redis URL comes from `REDIS_URL`, default `redis://127.0.0.1:6379/`).

use hybridcache::{EntryOptions, HybridCache};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u32,
    name: String,
    price_cents: u64,
}

async fn instance(url: &str) -> Result<HybridCache, hybridcache::Error> {
    HybridCache::builder(url)
        .namespace("example:")
        .default_options(EntryOptions::new().ttl(Duration::from_secs(60)))
        .build()
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let a = instance(&url).await?;
    let b = instance(&url).await?;
    println!("two instances connected to {url}");

    let lamp = Product {
        id: 42,
        name: "lamp".into(),
        price_cents: 1999,
    };
    let options = EntryOptions::new().tags(["product:42", "category:lighting"]);
    a.set("product:42", lamp, options.clone()).await?;
    let seen = b.get::<Product>("product:42").await?;
    println!("B reads product 42 (from Redis, now in its L1): {seen:?}");
    let seen = b.get::<Product>("product:42").await?;
    println!("B reads it again (from L1): {seen:?}");

    let cheaper = Product {
        id: 42,
        name: "lamp".into(),
        price_cents: 1499,
    };
    a.set("product:42", cheaper, options).await?;
    let started = Instant::now();
    loop {
        let seen = b.get::<Product>("product:42").await?;
        if seen.as_ref().is_some_and(|p| p.price_cents == 1499) {
            println!(
                "A changed the price; B serves the new price {:?} later",
                started.elapsed()
            );
            break;
        }
        tokio::task::yield_now().await;
    }

    a.remove_by_tag("category:lighting").await?;
    while b.get::<Product>("product:42").await?.is_some() {
        tokio::task::yield_now().await;
    }
    println!("A removed the tag category:lighting; B no longer has product 42");

    // Propagation: from just before A's write to the event applied on B (the write's own
    // round trip included: B may hear of the change before A's reply arrives).
    let rounds = 1000;
    let mut acknowledged = Vec::with_capacity(rounds);
    let mut propagation = Vec::with_capacity(rounds);
    for i in 0..rounds {
        b.get::<u64>("counter").await?;
        let before = b.stats().events_received;
        let started = Instant::now();
        a.set("counter", i as u64, EntryOptions::new()).await?;
        acknowledged.push(started.elapsed());
        while b.stats().events_received == before {
            tokio::task::yield_now().await;
        }
        propagation.push(started.elapsed());
    }
    acknowledged.sort();
    propagation.sort();
    println!(
        "A's write acknowledged over {rounds} writes: p50 {:?}, p99 {:?}",
        percentile(&acknowledged, 0.50),
        percentile(&acknowledged, 0.99)
    );
    println!(
        "invalidation propagation A -> B, from before the write: p50 {:?}, p99 {:?}",
        percentile(&propagation, 0.50),
        percentile(&propagation, 0.99)
    );

    // L1 hit latency of a typed value.
    let product = Product {
        id: 7,
        name: "bulb".into(),
        price_cents: 299,
    };
    b.set("product:7", product, EntryOptions::new()).await?;
    let reads = 100_000;
    let mut latency = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        let hit = b.get::<Product>("product:7").await?;
        latency.push(t.elapsed());
        assert!(hit.is_some());
    }
    latency.sort();
    println!(
        "L1 hit latency over {reads} reads: p50 {:?}, p99 {:?} (stats: {:?})",
        percentile(&latency, 0.50),
        percentile(&latency, 0.99),
        b.stats()
    );
    Ok(())
}
