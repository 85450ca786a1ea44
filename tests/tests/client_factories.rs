//! What a factory may fail with, and how its error reaches the caller: the errors services
//! have (`anyhow::Error`, `Box<dyn Error + Send + Sync>`, any `std::error::Error`), reported
//! once (not twice) by error reporters; and state a factory uses through an `Arc` it owns.

use hybridcache::{EntryOptions, Error};
use hybridcache_tests::client_support::{build, builder, get_value};
use hybridcache_tests::RedisServer;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factories_may_fail_with_anyhow_boxed_or_std_errors() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;

    let failed = h
        .get_or_set::<u32, _, _, _>(
            "a",
            || async { Err(anyhow::anyhow!("the catalogue is down")) },
            EntryOptions::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(failed, Error::Factory(_)), "{failed:?}");
    // anyhow's chain printing shows the factory's message once.
    let report = format!("{:#}", anyhow::Error::from(failed));
    assert_eq!(
        report.matches("the catalogue is down").count(),
        1,
        "{report}"
    );

    let failed = h
        .get_or_set::<u32, _, _, Box<dyn std::error::Error + Send + Sync>>(
            "b",
            || async { Err("no such product".into()) },
            EntryOptions::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(failed.to_string(), "factory failed: no such product");

    let failed = h
        .get_or_set::<u32, _, _, _>(
            "c",
            || async { Err(std::io::Error::other("disk gone")) },
            EntryOptions::new(),
        )
        .await
        .unwrap_err();
    let Error::Factory(inner) = &failed else {
        panic!("{failed:?}")
    };
    // The factory's own error is there to downcast.
    assert_eq!(
        inner.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::Other)
    );

    // Nothing was cached for any of them.
    for key in ["a", "b", "c"] {
        assert_eq!(get_value::<u32>(&h, key).await, None, "{key}");
    }
}

/// The service's state, shared by its request handlers.
struct Catalogue {
    loads: AtomicU32,
}

impl Catalogue {
    async fn price(&self, id: u32) -> anyhow::Result<u32> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        Ok(id * 100)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_uses_shared_state_through_an_arc_it_owns() {
    let server = RedisServer::new();
    let h = build(builder(&server)).await;
    let catalogue = Arc::new(Catalogue {
        loads: AtomicU32::new(0),
    });
    for _ in 0..3 {
        let price = h
            .get_or_set(
                "price:7",
                {
                    let catalogue = Arc::clone(&catalogue);
                    move || async move { catalogue.price(7).await }
                },
                EntryOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(*price, 700);
    }
    assert_eq!(
        catalogue.loads.load(Ordering::Relaxed),
        1,
        "cached after the first"
    );
}
