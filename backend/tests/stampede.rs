//! The stampede lab: database loads per defence are exact counts, not
//! timings; lock safety on a real Redis.

mod common;

use std::time::Duration;

use backend::recorder::Recorder;
use backend::stampede::RELEASE_IF_OWNER;
use shared::{Defence, HerdSpec, Kind, SandboxId};

fn herd(defence: Defence, requests: u64) -> HerdSpec {
    HerdSpec {
        kind: Kind::Users,
        id: 21,
        requests,
        defence,
        timing: shared::HerdTiming::Cold,
        beta: 1.0,
        jitter_percent: 25,
    }
}

fn slow_database(c: &mut backend::Config) {
    // Far longer than it takes to send every GET of the herd, so every
    // request misses before the first value is stored.
    c.db_latency_ms = 500;
}

/// No defence: every request of the herd misses and loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_defence_every_request_loads() {
    let t = common::start(slow_database);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd(Defence::None, 200))
        .await
        .unwrap();
    assert_eq!(result.database_loads, 200, "{result:?}");
    assert_eq!(result.from_cache, 0);
    assert!(result.p50_us >= 500_000, "every request waited for its own load");
}

/// Single flight: one load per instance, the other requests wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_loads_once_per_instance() {
    let t = common::start(slow_database);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd(Defence::SingleFlight, 200))
        .await
        .unwrap();
    assert_eq!(result.instances, 3);
    assert_eq!(result.database_loads, 3, "{result:?}");
    assert_eq!(result.waited, 197);
}

/// A Redis lock: exactly one load for the whole herd; everyone else is
/// told when the value is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_lock_loads_exactly_once() {
    let t = common::start(slow_database);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd(Defence::RedisLock, 300))
        .await
        .unwrap();
    assert_eq!(result.database_loads, 1, "{result:?}");
    assert_eq!(result.fallbacks, 0);
    assert_eq!(result.from_cache, 299);
    // The diagram draws the herd as counts: one path through the database.
    let count = |from: &str, to: &str| {
        result
            .edges
            .iter()
            .find(|e| e.from.as_str() == from && e.to.as_str() == to)
            .map_or(0, |e| e.count)
    };
    assert_eq!(count("request", "check_cache"), 300);
    assert_eq!(count("check_cache", "query_database"), 1);
    assert_eq!(count("check_cache", "return_cached"), 299);
}

/// XFetch's beta and the jitter are checked on the server too.
#[tokio::test]
async fn herd_parameters_are_checked() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    for (beta, jitter, message) in [(-1.0, 25, "beta"), (f64::NAN, 25, "beta"), (1.0, 95, "jitter")] {
        let spec = HerdSpec {
            beta,
            jitter_percent: jitter,
            ..herd(Defence::XFetch, 10)
        };
        let err = t.backend.playground.run_herd(&sandbox, spec).await.unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
}

/// Herd sizes outside 1 to 5,000 are refused.
#[tokio::test]
async fn herd_sizes_are_bounded() {
    let t = common::start(|_| {});
    for requests in [0, 5_001] {
        let err = t
            .backend
            .playground
            .run_herd(&SandboxId::default_sandbox(), herd(Defence::None, requests))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("from 1 to 5000"), "{err}");
    }
}

/// Lock safety: an expired lock's late owner cannot delete the lock that
/// someone else has taken since.
#[tokio::test]
async fn a_late_owner_cannot_release_a_newer_lock() {
    let t = common::start(|_| {});
    let cache = &t.backend.playground.cache;
    let lock = "cache:default:lock:user:1";
    assert_eq!(
        cache
            .run(cache.set_nx_px(lock, "first", 100))
            .await
            .unwrap()
            .as_deref(),
        Some("OK")
    );
    assert_eq!(
        cache.run(cache.set_nx_px(lock, "second", 100)).await.unwrap(),
        None,
        "held"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cache
            .run(cache.set_nx_px(lock, "second", 10_000))
            .await
            .unwrap()
            .as_deref(),
        Some("OK")
    );
    assert_eq!(
        cache
            .run(cache.eval(RELEASE_IF_OWNER, &[lock], &["first"]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        cache.run(cache.get(lock)).await.unwrap().as_deref(),
        Some("second")
    );
    assert_eq!(
        cache
            .run(cache.eval(RELEASE_IF_OWNER, &[lock], &["second"]))
            .await
            .unwrap(),
        1
    );
}

/// A holder that died leaves a lock that expires by itself: a waiter then
/// takes the lock and loads, instead of waiting forever.
#[tokio::test]
async fn a_dead_holders_lock_expires_and_a_waiter_takes_over() {
    let t = common::start(|c| c.db_latency_ms = 0);
    let sandbox = t
        .backend
        .playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap();
    let settings = sandbox.settings();
    let engine = sandbox.engine(&settings, None);
    let lock = engine.lock_key(Kind::Users, 22);
    // A holder that took the lock and died.
    sandbox
        .cache
        .run(sandbox.cache.set_nx_px(&lock, "dead", 300))
        .await
        .unwrap();
    let (fills, _) = tokio::sync::broadcast::channel(4);
    let mut trace = Recorder::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        engine.read_with_lock(Kind::Users, 22, &fills, &mut trace),
    )
    .await
    .expect("bounded wait")
    .unwrap();
    assert!(read.waited && read.loaded && !read.fell_back, "{read:?}");
}

fn at_expiry(defence: Defence, requests: u64) -> HerdSpec {
    HerdSpec {
        timing: shared::HerdTiming::AtExpiry,
        ..herd(defence, requests)
    }
}

fn tutorial_database(c: &mut backend::Config) {
    c.db_latency_ms = 100;
}

/// A popular key expiring under load, with no defence: the requests that
/// arrive between the expiry and the first store all load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_expiry_without_a_defence_several_requests_load() {
    let t = common::start(tutorial_database);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), at_expiry(Defence::None, 300))
        .await
        .unwrap();
    assert!(result.database_loads > 3, "{result:?}");
    assert!(
        result.from_cache > 100,
        "the requests before expiry hit: {result:?}"
    );
}

/// At expiry, the lock still allows exactly one load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_expiry_the_lock_loads_exactly_once() {
    let t = common::start(tutorial_database);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), at_expiry(Defence::RedisLock, 300))
        .await
        .unwrap();
    assert_eq!(result.database_loads, 1, "{result:?}");
}

/// Stale-while-revalidate: exactly one background refresh, nobody waits,
/// and the requests in between are served the stale value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_refreshes_once_and_nobody_waits() {
    let t = common::start(tutorial_database);
    let result = t
        .backend
        .playground
        .run_herd(
            &SandboxId::default_sandbox(),
            at_expiry(Defence::StaleWhileRevalidate, 300),
        )
        .await
        .unwrap();
    assert_eq!(result.database_loads, 1, "{result:?}");
    assert_eq!(result.waited, 0);
    assert!(result.served_stale >= 1, "{result:?}");
    // Nobody waited for the 100 ms database (the p99, not the max, so one
    // request stalled by a busy machine cannot fail the test).
    assert!(
        result.p99_us < 50_000,
        "no request waited for the database: {result:?}"
    );
}

/// XFetch: some request recomputes before the value expires, so the
/// requests after the original expiry still find a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfetch_recomputes_before_the_value_expires() {
    let t = common::start(tutorial_database);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), at_expiry(Defence::XFetch, 300))
        .await
        .unwrap();
    assert!(result.early_recomputes >= 1, "{result:?}");
    assert_eq!(
        result.database_loads, result.early_recomputes,
        "every load was early, none after a miss: {result:?}"
    );
}

/// Herds use keys of their own: the sandbox's normal cache key is untouched.
#[tokio::test]
async fn herds_do_not_touch_the_sandboxs_own_keys() {
    let t = common::start(|c| c.db_latency_ms = 0);
    t.read(Kind::Users, 21).await;
    t.backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd(Defence::None, 5))
        .await
        .unwrap();
    assert_eq!(t.read(Kind::Users, 21).await.outcome, shared::Outcome::Hit);
}

/// Fifty keys cached at the same moment expire together and their reloads
/// spike; with TTL jitter the same reloads spread out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_flattens_the_spike_of_keys_cached_together() {
    let t = common::start(|c| c.db_latency_ms = 20);
    let many = |defence| HerdSpec {
        timing: shared::HerdTiming::ManyKeys,
        jitter_percent: 50,
        ..herd(defence, 2_000)
    };
    let sandbox = SandboxId::default_sandbox();
    let together = t
        .backend
        .playground
        .run_herd(&sandbox, many(Defence::None))
        .await
        .unwrap();
    let jittered = t
        .backend
        .playground
        .run_herd(&sandbox, many(Defence::TtlJitter))
        .await
        .unwrap();
    println!(
        "peak loads per 100 ms: {} together, {} with 50 % jitter",
        together.peak_loads_per_100ms, jittered.peak_loads_per_100ms
    );
    assert!(together.database_loads >= 50, "{together:?}");
    assert!(
        together.peak_loads_per_100ms >= 2 * jittered.peak_loads_per_100ms,
        "{} vs {}",
        together.peak_loads_per_100ms,
        jittered.peak_loads_per_100ms
    );
}
