//! Metrics: a cache reports its events as `hybridcache_events_total{cache, event}` counters
//! through the `metrics` facade, which any exporter (Prometheus, OpenTelemetry) can publish.
//! Its own test binary: the recorder is process-wide.

use hybridcache::EntryOptions;
use hybridcache_tests::client_support::{build, builder, events_total, get_value};
use hybridcache_tests::RedisServer;
use metrics_util::debugging::DebuggingRecorder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_counted_by_the_installed_metrics_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = RedisServer::new();
    let h = build(builder(&server).name("shop")).await;
    h.set("k", 1u32, EntryOptions::new()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get_value::<u32>(&h, "k").await, Some(1));
    }
    assert_eq!(get_value::<u32>(&h, "missing").await, None);

    let counter = |event: &str| events_total(&snapshotter, "shop", event);
    assert_eq!(counter("hit"), 3);
    assert_eq!(counter("miss"), 1);
    assert_eq!(counter("set"), 1);
    assert_eq!(counter("circuit_opened"), 0);
}
