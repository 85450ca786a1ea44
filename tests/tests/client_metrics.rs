//! Metrics: a cache reports its events as `hybridcache_events_total{cache, event}` counters
//! through the `metrics` facade, which any exporter (Prometheus, OpenTelemetry) can publish.
//! Its own test binary: the recorder is process-wide.

use hybridcache::EntryOptions;
use hybridcache_tests::client_support::{build, builder, get_value};
use hybridcache_tests::RedisServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

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

    let counter = |event: &str| -> u64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<(&str, &str)> =
                    key.labels().map(|l| (l.key(), l.value())).collect();
                (key.name() == "hybridcache_events_total"
                    && labels.contains(&("cache", "shop"))
                    && labels.contains(&("event", event)))
                .then_some(value)
            })
            .map_or(0, |value| match value {
                DebugValue::Counter(n) => n,
                other => panic!("{event} is not a counter: {other:?}"),
            })
    };
    assert_eq!(counter("hit"), 3);
    assert_eq!(counter("miss"), 1);
    assert_eq!(counter("set"), 1);
    assert_eq!(counter("circuit_opened"), 0);
}
