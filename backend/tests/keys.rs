//! The key inspector on a real Redis: every key of the sandbox with its
//! TTL and size, none of another sandbox's, and the audit of keys with no
//! TTL.

mod common;

use redis::Commands;
use shared::{KeyReport, Kind, SandboxId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_lists_the_sandboxs_keys_and_flags_those_without_a_ttl() {
    let t = common::start(|c| c.cache_ttl_secs = 60);
    let served = common::serve(&t).await;
    for id in [1, 2, 3] {
        t.read(Kind::Users, id).await;
    }
    t.read_in("keys-other", Kind::Users, 4).await;
    // A key someone cached with no TTL (the "forgot the TTL" bug).
    let mut redis = t.redis();
    let planted = "cache:default:user:999";
    let _: () = redis.set(planted, "ca1 v 1 0 0\n{}").unwrap();

    let report = t
        .backend
        .playground
        .inspect_keys(&SandboxId::default_sandbox())
        .await
        .unwrap();
    let names: Vec<&str> = report.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(names, ["user:1", "user:2", "user:3", "user:999"], "{report:?}");
    assert_eq!(report.without_ttl, 1);
    assert!(!report.truncated);
    for key in &report.keys[..3] {
        let ttl = key.ttl_ms.expect("a TTL");
        assert!(ttl > 0 && ttl <= 60_000, "{key:?}");
        assert!(key.bytes.is_some_and(|b| b > 0), "{key:?}");
        assert_eq!(key.redis_type, "string");
        assert!(key.idle_secs.is_some() || key.frequency.is_some(), "{key:?}");
    }
    assert_eq!(report.keys[3].ttl_ms, None);
    assert!(report.policy.is_some(), "our own Redis answers CONFIG GET");

    let response = common::http_get(served.addr, "/api/v1/keys?sandbox=keys-other").await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let other: KeyReport = serde_json::from_str(body).unwrap();
    let names: Vec<&str> = other.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(names, ["user:4"]);
    assert_eq!(other.without_ttl, 0);
}

/// "Forget the TTL", switched on: the sandbox's next reads cache keys that
/// never expire, and the audit finds exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_the_ttl_is_caught_by_the_audit() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    t.read(Kind::Users, 1).await;
    let mut settings = t.backend.playground.sandbox(&sandbox).unwrap().settings();
    settings.forget_ttl = true;
    t.backend.playground.update_settings(&sandbox, settings).unwrap();
    t.read(Kind::Users, 2).await;
    t.read(Kind::Users, 3).await;
    let report = t.backend.playground.inspect_keys(&sandbox).await.unwrap();
    let forgotten: Vec<&str> = report
        .keys
        .iter()
        .filter(|k| k.ttl_ms.is_none())
        .map(|k| k.key.as_str())
        .collect();
    assert_eq!(forgotten, ["user:2", "user:3"], "{report:?}");
    assert_eq!(report.without_ttl, 2);
}

/// `GET /api/v1/redis-info`: Redis's own counters, read from INFO; a read
/// shows up in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_info_reports_the_servers_own_figures() {
    let t = common::start(|_| {});
    let served = common::serve(&t).await;
    let before = t
        .backend
        .playground
        .redis_figures(&SandboxId::default_sandbox())
        .await
        .unwrap();
    t.read(Kind::Users, 1).await;
    t.read(Kind::Users, 1).await;
    let response = common::http_get(served.addr, "/api/v1/redis-info").await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let after: shared::RedisFigures = serde_json::from_str(body).unwrap();
    assert!(after.used_memory > 0);
    assert!(!after.maxmemory_policy.is_empty());
    assert!(
        after.keyspace_hits > before.keyspace_hits,
        "{before:?} then {after:?}"
    );
    assert!(
        after.keyspace_misses > before.keyspace_misses,
        "{before:?} then {after:?}"
    );
}

/// Keys a sandbox leaves without a TTL, or under the mistyped name of the
/// key-typo bug, are still its own to clean up: a reset deletes them all,
/// and nothing of the sandbox is left in the shared Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_deletes_keys_without_a_ttl_and_under_the_mistyped_name() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let sandbox = playground.open_sandbox(None).await.unwrap().id.clone();
    let mut settings = playground.sandbox(&sandbox).unwrap().settings();
    settings.forget_ttl = true;
    settings.mismatched_keys = true;
    settings.write_strategy = shared::WriteStrategy::WriteThrough;
    playground.update_settings(&sandbox, settings).unwrap();
    for id in [1, 2] {
        playground
            .read(&sandbox, Kind::Users, id, shared::Origin::Rest)
            .await
            .unwrap();
    }
    let change = shared::WriteChange::Update { name: "Ada".into() };
    playground
        .write(&sandbox, Kind::Users, 3, change, shared::Origin::Rest)
        .await
        .unwrap();
    let prefix = format!("cache:{sandbox}:");
    let own = || -> Vec<String> {
        let mut keys: Vec<String> = t
            .all_keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(own(), ["user:1", "user:2", "users:3"]);
    let mut redis = t.redis();
    let ttl: i64 = redis.ttl(format!("{prefix}user:1")).unwrap();
    assert_eq!(ttl, -1, "no TTL: it would never go by itself");

    playground.reset(&sandbox).await.unwrap();
    assert!(own().is_empty(), "left behind: {:?}", own());
}
