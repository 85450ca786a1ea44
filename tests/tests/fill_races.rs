//! Race-free fills on one server (issue #13): a value a factory read before another
//! instance changed the source and the cache is never cached after that change.
//!
//! Instance A fills key k from a model database; meanwhile instance B (built separately,
//! as another service would be) writes a new version to the database and then removes k,
//! sets k to the new version, or removes a tag k carries. After the delivery bound
//! ([`SETTLE`]), no instance (A, B, a freshly built C) and no raw `HC.GET` may serve the
//! old version, and after a removal the next fill produces the new version.
//!
//! - forced interleaving: A's factory reads, then waits at a gate until B's change is done;
//! - natural timing: a few milliseconds of random jitter on both sides, many rounds, and the
//!   stale outcomes counted (0 expected);
//! - background paths (completion after a soft or hard factory timeout, eager refresh),
//!   forced and natural, with A behind a [`LaggingProxy`]: what the server sends A is held
//!   back (forced) or arrives [`LINK_LATENCY`] late (natural), so B's event reaches A late,
//!   as over a slow network, while A's writes land at once. A's own view of the
//!   invalidations cannot be what keeps the old value out.

use hybridcache::{EntryOptions, Error, HybridCache};
use hybridcache_tests::client_support::{build, builder, seed_from_env, SplitMix64};
use hybridcache_tests::race_support::{
    assert_redis_holds_current, assert_settles, join_lines, long_lived, read_now, read_then_sleep,
    read_then_wait, stale_reads, Change, Database, Gate, LaggingProxy, SETTLE,
};
use hybridcache_tests::RedisServer;
use std::sync::Arc;
use std::time::Duration;

/// How long the background scenarios hold back what the server sends A after releasing
/// A's factory: ample time for A's background write to reach the server.
const HOLD_AFTER_RELEASE: Duration = Duration::from_millis(300);

/// Rounds per variant of the natural-timing scenarios.
const NATURAL_ROUNDS: usize = 50;

/// What the server sends A takes this long to reach A in the natural-timing scenarios of
/// the background paths.
const LINK_LATENCY: Duration = Duration::from_millis(3);

/// A handle on `server` named `name`, built on its own as a separate service's would be.
async fn instance(server: &RedisServer, name: &str) -> HybridCache {
    build(builder(server).name(name)).await
}

/// A handle named `name` that reaches its server through `proxy`.
async fn instance_behind(proxy: &LaggingProxy, name: &str) -> HybridCache {
    build(
        HybridCache::builder(proxy.url())
            .max_reconnect_backoff(Duration::from_millis(200))
            .name(name),
    )
    .await
}

/// One race: a server, instances A and B, the database, and the key and tag raced on.
struct Scene {
    server: RedisServer,
    /// The proxy A reaches the server through, when it does.
    proxy: Option<LaggingProxy>,
    a: HybridCache,
    b: HybridCache,
    db: Arc<Database>,
    key: &'static str,
    tag: &'static str,
}

impl Scene {
    /// A new server, A and B built on it (A through a [`LaggingProxy`] without latency
    /// when `a_behind_proxy`), and `product:1` (tagged `category:1`) written to the
    /// database as v1.
    async fn new(a_behind_proxy: bool) -> (Scene, u64) {
        let server = RedisServer::new();
        let proxy = a_behind_proxy.then(|| LaggingProxy::start(&server, Duration::ZERO));
        let a = match &proxy {
            Some(proxy) => instance_behind(proxy, "a").await,
            None => instance(&server, "a").await,
        };
        let b = instance(&server, "b").await;
        let db = Database::new();
        let (key, tag) = ("product:1", "category:1");
        let v1 = db.write(key);
        let scene = Scene {
            server,
            proxy,
            a,
            b,
            db,
            key,
            tag,
        };
        (scene, v1)
    }

    /// B's change: a new version in the database, then the cache change.
    async fn change(&self, change: Change) {
        change.apply(&self.b, &self.db, self.key, self.tag).await;
    }

    /// After the race: A, B, a new instance C and raw `HC.GET` settle on the database's
    /// value (or a miss); after a removal, a fill through each produces v2.
    async fn assert_no_stale_value(&self, what: &str, change: Change) {
        let c = instance(&self.server, "c").await;
        let handles = [("A", &self.a), ("B", &self.b), ("C", &c)];
        let keys = [self.key.to_string()];
        let mut raw = self.server.connection();
        assert_settles(what, &handles, &mut raw, &self.db, &keys).await;
        assert_eq!(
            self.a.stats().fills_refused,
            1,
            "{what}: A counts its one refused fill; {:?}",
            self.a
        );
        if change.leaves_a_miss() {
            for (name, handle) in handles {
                let refilled = handle
                    .get_or_set(self.key, read_now(&self.db, self.key), long_lived(self.tag))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the fill through {name} failed: {e}"));
                assert_eq!(
                    *refilled,
                    self.db.read(self.key),
                    "{what}: a fill through {name} after the race produced an old version"
                );
            }
        }
        assert_redis_holds_current(what, &mut raw, &self.db, &keys);
    }
}

/// A's foreground fill reads v1 and waits; B changes the database and the cache; A's
/// factory returns v1.
async fn forced_foreground_race(change: Change) {
    let (scene, v1) = Scene::new(false).await;
    let (key, tag) = (scene.key, scene.tag);
    let gate = Gate::new();
    let fill = {
        let (a, factory) = (scene.a.clone(), read_then_wait(&scene.db, &gate, key));
        tokio::spawn(async move { a.get_or_set(key, factory, long_lived(tag)).await })
    };
    gate.entered().await;
    scene.change(change).await;
    gate.release();
    let served = fill
        .await
        .expect("the fill task")
        .expect("A's fill returns its factory's value");
    assert_eq!(*served, v1, "A's caller gets what its factory read");
    let what = format!("forced foreground race, B: {change:?}");
    scene.assert_no_stale_value(&what, change).await;
}

/// The control: with nothing in between, A's fill is cached in Redis and in A's L1, and
/// nothing is refused (so the races below pass because of the refusals, not because fills
/// are never cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_with_nothing_in_between_is_cached() {
    let (scene, v1) = Scene::new(false).await;
    let (key, tag) = (scene.key, scene.tag);
    let filled = scene
        .a
        .get_or_set(key, read_now(&scene.db, key), long_lived(tag))
        .await
        .expect("A's fill");
    assert_eq!(*filled, v1);
    let keys = [key.to_string()];
    assert_redis_holds_current(
        "a fill alone",
        &mut scene.server.connection(),
        &scene.db,
        &keys,
    );
    let hits = scene.a.stats().l1_hits;
    let again = scene
        .a
        .get_or_set(key, read_now(&scene.db, key), long_lived(tag))
        .await
        .expect("A's second read");
    assert_eq!(*again, v1);
    let stats = scene.a.stats();
    assert_eq!(stats.l1_hits, hits + 1, "A keeps its fill in L1: {stats:?}");
    assert_eq!(stats.fills_refused, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_a_remove_is_not_cached() {
    forced_foreground_race(Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_a_set_does_not_overwrite_it() {
    forced_foreground_race(Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_a_tag_removal_is_not_cached() {
    forced_foreground_race(Change::RemoveByTag).await;
}

/// Which background path completes A's fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackgroundPath {
    /// The factory exceeds the soft timeout: the caller gets the fail-safe copy, the
    /// factory completes in the background.
    SoftTimeout,
    /// The factory exceeds the hard timeout: the caller gets `FactoryTimeout`, the factory
    /// completes in the background.
    HardTimeout,
    /// A hit past the eager-refresh point: the caller gets the cached value, a refresh runs
    /// in the background.
    EagerRefresh,
}

/// A's background fill reads v1 and waits; with what the server sends A held back, B
/// changes the database and the cache and A's factory returns v1; a moment later A gets
/// B's event.
async fn forced_background_race(path: BackgroundPath, change: Change) {
    let (scene, v1) = Scene::new(true).await;
    let (a, db, key, tag) = (&scene.a, &scene.db, scene.key, scene.tag);
    let gate = Gate::new();
    let what = format!("forced race, A's {path:?}, B: {change:?}");
    match path {
        BackgroundPath::SoftTimeout => {
            // An entry that expires in Redis soon; fail-safe keeps A's copy as a stale value.
            let short = EntryOptions::new()
                .ttl(Duration::from_millis(200))
                .fail_safe(Duration::from_secs(60))
                .tags([tag]);
            a.get_or_set(key, read_now(db, key), short)
                .await
                .expect("A's first fill");
            tokio::time::sleep(Duration::from_millis(400)).await;
            let options = long_lived(tag)
                .fail_safe(Duration::from_secs(60))
                .factory_soft_timeout(Duration::from_millis(50));
            let load = {
                let (a, factory) = (a.clone(), read_then_wait(db, &gate, key));
                tokio::spawn(async move { a.get_or_set(key, factory, options).await })
            };
            gate.entered().await;
            let served = tokio::time::timeout(Duration::from_secs(3), load)
                .await
                .unwrap_or_else(|_| {
                    panic!("{what}: the soft timeout did not answer with the stale copy")
                })
                .expect("the load task")
                .expect("the soft timeout serves the stale copy");
            assert_eq!(*served, v1, "{what}: the stale copy is v1");
        }
        BackgroundPath::HardTimeout => {
            let options = long_lived(tag).factory_hard_timeout(Duration::from_millis(50));
            let load = {
                let (a, factory) = (a.clone(), read_then_wait(db, &gate, key));
                tokio::spawn(async move { a.get_or_set(key, factory, options).await })
            };
            gate.entered().await;
            let outcome = tokio::time::timeout(Duration::from_secs(3), load)
                .await
                .unwrap_or_else(|_| panic!("{what}: the hard timeout did not end the call"))
                .expect("the load task");
            assert!(
                matches!(outcome, Err(Error::FactoryTimeout(_))),
                "{what}: expected FactoryTimeout, got {outcome:?}"
            );
        }
        BackgroundPath::EagerRefresh => {
            // Refresh point at 0.5 % of a minute: 300 ms.
            let options = long_lived(tag).eager_refresh(0.005);
            a.get_or_set(key, read_now(db, key), options.clone())
                .await
                .expect("A's first fill");
            tokio::time::sleep(Duration::from_millis(400)).await;
            let served = a
                .get_or_set(key, read_then_wait(db, &gate, key), options)
                .await
                .expect("A's hit");
            assert_eq!(*served, v1, "{what}: the hit serves v1");
            gate.entered().await;
        }
    }
    let proxy = scene.proxy.as_ref().expect("A is behind the proxy");
    proxy.hold();
    scene.change(change).await;
    gate.release();
    tokio::time::sleep(HOLD_AFTER_RELEASE).await;
    proxy.release();
    scene.assert_no_stale_value(&what, change).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_timeout_completion_that_read_before_a_remove_is_not_cached() {
    forced_background_race(BackgroundPath::SoftTimeout, Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_timeout_completion_that_read_before_a_set_does_not_overwrite_it() {
    forced_background_race(BackgroundPath::SoftTimeout, Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_timeout_completion_that_read_before_a_tag_removal_is_not_cached() {
    forced_background_race(BackgroundPath::SoftTimeout, Change::RemoveByTag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_timeout_completion_that_read_before_a_remove_is_not_cached() {
    forced_background_race(BackgroundPath::HardTimeout, Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_timeout_completion_that_read_before_a_set_does_not_overwrite_it() {
    forced_background_race(BackgroundPath::HardTimeout, Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_timeout_completion_that_read_before_a_tag_removal_is_not_cached() {
    forced_background_race(BackgroundPath::HardTimeout, Change::RemoveByTag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_refresh_that_read_before_a_remove_is_not_cached() {
    forced_background_race(BackgroundPath::EagerRefresh, Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_refresh_that_read_before_a_set_does_not_overwrite_it() {
    forced_background_race(BackgroundPath::EagerRefresh, Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_refresh_that_read_before_a_tag_removal_is_not_cached() {
    forced_background_race(BackgroundPath::EagerRefresh, Change::RemoveByTag).await;
}

/// How A's fill runs in the natural-timing scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `get_or_set` on a miss: the caller waits for the factory.
    Foreground,
    /// A miss with a fail-safe copy and a 1 ms soft timeout: the factory (1-5 ms)
    /// completes in the background.
    SoftTimeout,
    /// A hit past the refresh point: the factory refreshes in the background.
    EagerRefresh,
}

/// [`NATURAL_ROUNDS`] rounds of A's fill against B's change, each on its own key and tag,
/// with a few milliseconds of random delay on both sides instead of a gate; then, after
/// the delivery bound, every key read through A, B, a new C and raw `HC.GET`, and (after
/// a removal) a fill through C. Counts the rounds that left a stale value anywhere.
async fn natural_races(path: Path, change: Change) {
    let seed = seed_from_env("HC_FILL_RACES_SEED");
    let mut rng = SplitMix64::new(seed);
    let server = RedisServer::new();
    let proxy = (path != Path::Foreground).then(|| LaggingProxy::start(&server, LINK_LATENCY));
    let a = match &proxy {
        Some(proxy) => instance_behind(proxy, "a").await,
        None => instance(&server, "a").await,
    };
    let b = instance(&server, "b").await;
    let db = Database::new();
    let keys: Vec<String> = (0..NATURAL_ROUNDS)
        .map(|r| format!("product:{r}"))
        .collect();
    let tags: Vec<String> = (0..NATURAL_ROUNDS)
        .map(|r| format!("category:{r}"))
        .collect();
    let fail_safe = Duration::from_secs(60);
    // The background paths need A to hold every key first: as a fail-safe copy of an entry
    // expired in Redis, or as an entry past its refresh point (0.5 % of a minute: 300 ms).
    let first_fill = |tag: &str| match path {
        Path::Foreground => None,
        Path::SoftTimeout => Some(
            EntryOptions::new()
                .ttl(Duration::from_millis(150))
                .fail_safe(fail_safe)
                .tags([tag]),
        ),
        Path::EagerRefresh => Some(long_lived(tag).eager_refresh(0.005)),
    };
    for (key, tag) in keys.iter().zip(&tags) {
        db.write(key);
        if let Some(options) = first_fill(tag) {
            a.get_or_set(key, read_now(&db, key), options)
                .await
                .expect("A's first fill");
        }
    }
    if path != Path::Foreground {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    for (round, (key, tag)) in keys.iter().zip(&tags).enumerate() {
        let (read_delay, options) = match path {
            Path::Foreground => (rng.below(4000), long_lived(tag)),
            Path::SoftTimeout => (
                1000 + rng.below(4000),
                long_lived(tag)
                    .fail_safe(fail_safe)
                    .factory_soft_timeout(Duration::from_millis(1)),
            ),
            Path::EagerRefresh => (rng.below(4000), long_lived(tag).eager_refresh(0.005)),
        };
        let change_delay = Duration::from_micros(rng.below(4000));
        let factory = read_then_sleep(&db, key, Duration::from_micros(read_delay));
        let fill = a.get_or_set(key, factory, options);
        let change_later = async {
            tokio::time::sleep(change_delay).await;
            change.apply(&b, &db, key, tag).await;
        };
        let (filled, ()) = tokio::join!(fill, change_later);
        filled.unwrap_or_else(|e| panic!("round {round}: A's fill failed: {e}"));
    }
    tokio::time::sleep(SETTLE).await;
    let c = instance(&server, "c").await;
    let handles = [("A", &a), ("B", &b), ("C", &c)];
    let stale = stale_reads(&handles, &mut server.connection(), &db, &keys).await;
    let mut stale_keys: Vec<&str> = stale.iter().map(|s| s.key.as_str()).collect();
    if change.leaves_a_miss() {
        for (key, tag) in keys.iter().zip(&tags) {
            let refilled = c
                .get_or_set(key, read_now(&db, key), long_lived(tag))
                .await
                .unwrap_or_else(|e| panic!("the fill of {key} through C failed: {e}"));
            if *refilled != db.read(key) {
                stale_keys.push(key);
            }
        }
    }
    let what = format!("natural races, A's {path:?}, B: {change:?}");
    if stale_keys.is_empty() {
        assert_redis_holds_current(&what, &mut server.connection(), &db, &keys);
    }
    stale_keys.sort_unstable();
    stale_keys.dedup();
    eprintln!(
        "{what}, seed {seed}: {} of {NATURAL_ROUNDS} rounds left a stale value; A refused {} fills",
        stale_keys.len(),
        a.stats().fills_refused
    );
    assert!(
        stale_keys.is_empty(),
        "{what} (replay with HC_FILL_RACES_SEED={seed}): {} of {NATURAL_ROUNDS} rounds left a \
         stale value {SETTLE:?} after the race: {stale_keys:?}\n  {}",
        stale_keys.len(),
        join_lines(&stale)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_fills_against_removes_leave_no_stale_value() {
    natural_races(Path::Foreground, Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_fills_against_sets_leave_no_stale_value() {
    natural_races(Path::Foreground, Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_fills_against_tag_removals_leave_no_stale_value() {
    natural_races(Path::Foreground, Change::RemoveByTag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_soft_timeout_completions_against_removes_leave_no_stale_value() {
    natural_races(Path::SoftTimeout, Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_soft_timeout_completions_against_sets_leave_no_stale_value() {
    natural_races(Path::SoftTimeout, Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_soft_timeout_completions_against_tag_removals_leave_no_stale_value() {
    natural_races(Path::SoftTimeout, Change::RemoveByTag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_eager_refreshes_against_removes_leave_no_stale_value() {
    natural_races(Path::EagerRefresh, Change::Remove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_eager_refreshes_against_sets_leave_no_stale_value() {
    natural_races(Path::EagerRefresh, Change::Set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_timing_eager_refreshes_against_tag_removals_leave_no_stale_value() {
    natural_races(Path::EagerRefresh, Change::RemoveByTag).await;
}
