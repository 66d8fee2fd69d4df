//! The stampede lab: database loads per defence are exact counts, not
//! timings; lock safety on a real Redis.

mod common;

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
    assert_eq!(
        t.database_queries(),
        200,
        "every request queried the database itself"
    );
    let count = |from: &str, to: &str| {
        result
            .edges
            .iter()
            .find(|e| e.from.as_str() == from && e.to.as_str() == to)
            .map_or(0, |e| e.count)
    };
    assert_eq!(count("check_cache", "query_database"), 200);
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
    // The diagram draws the herd as counts: every request went to the lock,
    // one path went on through the database, the rest were handed the value.
    let count = |from: &str, to: &str| {
        result
            .edges
            .iter()
            .find(|e| e.from.as_str() == from && e.to.as_str() == to)
            .map_or(0, |e| e.count)
    };
    assert_eq!(count("request", "check_cache"), 300);
    assert_eq!(count("check_cache", "lock"), 300);
    assert_eq!(count("lock", "query_database"), 1);
    assert_eq!(
        count("store_in_cache", "lock"),
        1,
        "the holder hands the value over"
    );
    assert_eq!(count("lock", "return_cached"), 299);
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
    // The count is the database's own: the priming load and the refresh.
    assert_eq!(t.database_queries(), 2);
    assert_eq!(result.waited, 0);
    assert!(result.served_stale >= 1, "{result:?}");
    // Nobody waited for the database: no request's own path went through
    // it (the one refresh runs in the background).
    assert!(
        !result.edges.iter().any(|e| e.to.as_str() == "query_database"),
        "{:?}",
        result.edges
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

/// Every defence stores the same envelope, so herds and ordinary reads
/// share keys: after a herd of any defence, an ordinary read is a hit.
#[tokio::test]
async fn herds_and_ordinary_reads_share_one_format() {
    let t = common::start(|c| c.db_latency_ms = 0);
    for defence in Defence::ALL {
        t.backend
            .playground
            .run_herd(&SandboxId::default_sandbox(), herd(defence, 5))
            .await
            .unwrap();
        assert_eq!(
            t.read(Kind::Users, 21).await.outcome,
            shared::Outcome::Hit,
            "{defence:?}"
        );
    }
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

/// The stampede policy is a sandbox setting: a burst of ordinary REST reads
/// of a cold key, through the HTTP handlers, is protected exactly as a herd
/// is. With the lock, 1,000 concurrent reads make one database load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_rest_reads_of_a_cold_key_load_once_under_the_lock() {
    use tower::ServiceExt;
    let t = common::start(|c| {
        c.db_latency_ms = 200;
        c.stampede = shared::StampedePolicy::Lock;
        // This counts loads under the lock, not timeouts: on a loaded
        // 2-core machine 1,000 requests at once can keep a Redis reply
        // past the default timeout, and a read that gives up on Redis
        // rightly loads by itself (CI saw 206 such fallbacks once).
        c.redis_timeout_ms = 10_000;
    });
    let router = t.backend.router(tokio::sync::watch::channel(false).1).layer(
        axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))),
    );
    let before = t.database_queries();
    let requests: Vec<_> = (0..1_000)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let request = axum::http::Request::get("/api/v1/users/77")
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                (
                    status,
                    serde_json::from_slice::<shared::ReadResult>(&body).unwrap(),
                )
            })
        })
        .collect();
    let mut outcomes = std::collections::HashMap::new();
    for request in requests {
        let (status, result) = request.await.unwrap();
        assert_eq!(status, axum::http::StatusCode::OK);
        assert_eq!(
            result.record.unwrap().title(),
            shared::Record::User(backend::store::seed::user(77)).title()
        );
        *outcomes.entry(result.outcome).or_insert(0) += 1;
    }
    assert_eq!(
        t.database_queries() - before,
        1,
        "one load for 1,000 reads: {outcomes:?}"
    );
    assert_eq!(outcomes.get(&shared::Outcome::Miss), Some(&1), "{outcomes:?}");
}

/// A database with few connections: each query holds one for its whole
/// (slow) time, the rest queue, and those that wait longer than allowed
/// fail as busy. Counts only: 2 connections held for 1 s, a 100 ms wait.
fn saturated(c: &mut backend::Config) {
    c.db_latency_ms = 1_000;
    c.db_connections = 2;
    c.db_wait_ms = 100;
}

/// Without a defence a herd overwhelms a saturated database: two requests
/// get a connection, every other one gives up waiting and fails, with a
/// clear error; nothing failed is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_database_turns_a_herd_away() {
    let t = common::start(saturated);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd(Defence::None, 20))
        .await
        .unwrap();
    assert_eq!(result.database_loads, 2, "{result:?}");
    assert_eq!(result.failed, 18, "{result:?}");
    assert_eq!(result.from_cache, 0, "{result:?}");
    assert_eq!(t.database_queries(), 2, "the turned-away requests never queried");
    let connections = t.backend.playground.database.connections().expect("bounded");
    assert_eq!(connections.in_use(), 0, "every connection came back");
}

/// The Redis lock keeps the same herd to one query: nothing queues,
/// nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_spares_a_saturated_database() {
    let t = common::start(saturated);
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd(Defence::RedisLock, 20))
        .await
        .unwrap();
    assert_eq!(result.database_loads, 1, "{result:?}");
    assert_eq!(result.failed, 0, "{result:?}");
    assert_eq!(result.from_cache, 19, "{result:?}");
}

/// A herd dropped before it ends (the page that fired it left, and its
/// session dropped the herd) takes its requests with it: none keeps
/// running past the herd's lock and its place among the herds allowed at
/// once, or would store a value after a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_dropped_midway_leaves_no_request_running() {
    let t = common::start(|c| c.db_latency_ms = 10_000);
    let id = SandboxId::default_sandbox();
    let mut herd = Box::pin(t.backend.playground.run_herd(&id, herd(Defence::None, 50)));
    tokio::select! {
        result = &mut herd => panic!("a herd on a 10 s database ended early: {result:?}"),
        // Each request has queried and now waits out the 10 s delay.
        () = common::eventually("every request at the database", std::time::Duration::from_secs(30), || {
            t.database_queries() == 50
        }) => {}
    }
    // Every request holds the sandbox while it runs; a few other holders
    // (the registry, its instances' tasks) do too.
    let sandbox = t.backend.playground.sandbox(&id).unwrap();
    let held = || std::sync::Arc::strong_count(&sandbox);
    assert!(held() > 50, "the requests hold the sandbox: {}", held());
    // The page leaves: its session drops the herd. The requests must go
    // too, long before their delay would have ended.
    drop(herd);
    common::eventually(
        "the dropped herd's requests to stop",
        std::time::Duration::from_secs(5),
        || held() < 50,
    )
    .await;
    let cached: bool = redis::Commands::exists(&mut t.redis(), "cache:default:user:21").unwrap();
    assert!(!cached, "no request stored a value");
}
