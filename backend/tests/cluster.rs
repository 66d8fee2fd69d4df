//! The playground on a real Redis Cluster (three masters, `redis-cli
//! --cluster create`): every key of a sandbox carries the sandbox's hash
//! tag, so its scripts and its reset run on one master while sandboxes
//! spread; the Redis lock loads a herd once; a race storm leaves nothing
//! stale with leases or version checks; a stopped master fails no read.

mod common;

use std::time::Duration;

use embedded_redis::cluster::EmbeddedCluster;
use embedded_redis::RedisServerOptions;
use shared::{Defence, HerdSpec, Kind, Origin, Outcome, RaceFix, SandboxId};

fn cluster() -> EmbeddedCluster {
    EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a three-master cluster starts")
}

fn on(cluster: &EmbeddedCluster, tweak: impl FnOnce(&mut backend::Config)) -> common::TestBackend {
    let urls = cluster.urls();
    common::start(move |c| {
        c.redis_cluster = urls;
        tweak(c);
    })
}

/// Every key of the cluster matching `pattern`, asking each master.
fn keys_matching(cluster: &EmbeddedCluster, pattern: &str) -> Vec<String> {
    let mut all = Vec::new();
    for node in cluster.nodes() {
        let mut connection = redis::Client::open(node.url()).unwrap().get_connection().unwrap();
        let found: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut connection).unwrap();
        all.extend(found);
    }
    all.sort();
    all
}

fn slot(cluster: &EmbeddedCluster, key: &str) -> i64 {
    let mut connection = redis::Client::open(cluster.nodes()[0].url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut connection)
        .unwrap()
}

async fn open(t: &common::TestBackend, name: &str) -> SandboxId {
    let sandbox = SandboxId::parse(name).unwrap();
    t.backend.playground.open_sandbox(Some(&sandbox)).await.unwrap();
    sandbox
}

/// Opens sandbox `name`, caches user 1 in it, and stops the master that
/// holds the sandbox's slot; returns the sandbox and that master's index.
async fn stop_the_sandboxs_master(
    cluster: &mut EmbeddedCluster,
    t: &common::TestBackend,
    name: &str,
) -> (SandboxId, usize) {
    let sandbox = open(t, name).await;
    t.backend
        .playground
        .read(&sandbox, Kind::Users, 1, Origin::Rest)
        .await
        .unwrap();
    let key = keys_matching(cluster, &format!("cache:{{{name}}}:*"))
        .pop()
        .expect("the cached user");
    let victim = cluster.master_of(&key).expect("a master holds the sandbox");
    cluster.node_mut(victim).stop();
    (sandbox, victim)
}

/// A sandbox's keys share its hash slot; the key inspector finds them (its
/// scan goes to that slot's master); a reset deletes them all and touches
/// no other sandbox's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_keeps_its_keys_in_one_slot_and_a_reset_reclaims_them() {
    let cluster = cluster();
    let t = on(&cluster, |_| {});
    let (a, b) = (open(&t, "tab-a").await, open(&t, "tab-b").await);
    for id in 1..=20 {
        for sandbox in [&a, &b] {
            let read = t
                .backend
                .playground
                .read(sandbox, Kind::Users, id, Origin::Rest)
                .await
                .unwrap();
            assert_eq!(read.outcome, Outcome::Miss);
        }
    }
    let of_a = keys_matching(&cluster, "cache:{tab-a}:*");
    assert_eq!(of_a.len(), 20, "{of_a:?}");
    let slots: std::collections::HashSet<i64> = of_a.iter().map(|k| slot(&cluster, k)).collect();
    assert_eq!(slots.len(), 1, "one slot for the sandbox: {slots:?}");

    let report = t.backend.playground.inspect_keys(&a).await.unwrap();
    assert_eq!(report.keys.len(), 20, "the inspector scans the sandbox's master");

    t.backend.playground.reset(&a).await.unwrap();
    assert!(
        keys_matching(&cluster, "cache:{tab-a}:*").is_empty(),
        "reset reclaims every key"
    );
    assert_eq!(
        keys_matching(&cluster, "cache:{tab-b}:*").len(),
        20,
        "the other sandbox keeps its own"
    );

    let faults = t.backend.playground.fault(&a, None).await.unwrap();
    let refusal = faults.refusal.expect("no fault proxy in front of a cluster");
    assert!(refusal.contains("Cluster"), "{refusal}");
}

/// The Redis lock on a cluster: a cold herd of 200 loads once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_with_the_redis_lock_loads_exactly_once() {
    let cluster = cluster();
    let t = on(&cluster, |c| c.db_latency_ms = 500);
    let herd = HerdSpec {
        kind: Kind::Users,
        id: 21,
        requests: 200,
        defence: Defence::RedisLock,
        timing: shared::HerdTiming::Cold,
        beta: 1.0,
        jitter_percent: 25,
    };
    let result = t
        .backend
        .playground
        .run_herd(&SandboxId::default_sandbox(), herd)
        .await
        .unwrap();
    assert_eq!(result.database_loads, 1, "{result:?}");
    assert_eq!(result.fallbacks, 0);
}

/// Readers and writers racing on three keys of a sandbox on the cluster;
/// returns the keys left stale.
async fn stale_after_a_storm(cluster: &EmbeddedCluster, fix: RaceFix) -> usize {
    let t = on(cluster, move |c| {
        c.race_fix = fix;
        c.db_latency_ms = 5;
        c.db_jitter_percent = 100;
        c.cache_ttl_secs = 3_600;
    });
    common::stale_keys_after_a_storm(&t, 1_200).await
}

/// Leases and version checks keep the storm from leaving a stale key on a
/// cluster, as on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_race_storm_leaves_nothing_stale_with_leases_or_version_checks() {
    let cluster = cluster();
    assert_eq!(stale_after_a_storm(&cluster, RaceFix::Lease).await, 0);
    assert_eq!(stale_after_a_storm(&cluster, RaceFix::Version).await, 0);
}

/// The master holding a sandbox stops: its reads fall back to the
/// database (none fails); when it is back the cache fills again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_fails_no_read_and_the_cache_recovers() {
    let mut cluster = cluster();
    let t = on(&cluster, |c| c.redis_timeout_ms = 500);
    let (sandbox, victim) = stop_the_sandboxs_master(&mut cluster, &t, "tab-c").await;
    for id in 1..=5 {
        let read = t
            .backend
            .playground
            .read(&sandbox, Kind::Users, id, Origin::Rest)
            .await
            .unwrap();
        assert_eq!(read.outcome, Outcome::Fallback, "user {id}");
        assert!(read.record.is_some(), "the database answered");
    }
    cluster.node_mut(victim).restart().unwrap();
    cluster.wait_until_ok(Duration::from_secs(20)).unwrap();
    let mut hit = false;
    for _ in 0..200 {
        let read = t
            .backend
            .playground
            .read(&sandbox, Kind::Users, 1, Origin::Rest)
            .await
            .unwrap();
        if read.outcome == Outcome::Hit {
            hit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hit, "the cache recovers once the master is back");
}

/// A master with a replica stops during steady reads: until the replica is
/// promoted the reads of its slots fall back (none fails); after the
/// failover the cache serves hits again, with the old master still down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_fails_no_read_and_hits_return_without_the_old_master() {
    let mut cluster = EmbeddedCluster::start_with_replicas(3, 1, &RedisServerOptions::default())
        .expect("a cluster with replicas");
    let t = on(&cluster, |c| c.redis_timeout_ms = 500);
    let (sandbox, victim) = stop_the_sandboxs_master(&mut cluster, &t, "tab-f").await;

    let (mut fallbacks, mut hit_after_failover) = (0, false);
    // Bounded: the failover takes the 2 s node timeout and an election.
    for _ in 0..600 {
        let read = t
            .backend
            .playground
            .read(&sandbox, Kind::Users, 1, Origin::Rest)
            .await
            .unwrap();
        assert!(read.record.is_some(), "every read answers: {:?}", read.outcome);
        match read.outcome {
            Outcome::Fallback => fallbacks += 1,
            Outcome::Hit | Outcome::Miss if fallbacks > 0 => {
                hit_after_failover = true;
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fallbacks > 0, "reads fell back while the master was down");
    assert!(hit_after_failover, "the promoted replica serves the sandbox");
    assert!(
        cluster.nodes()[victim].pid().is_none(),
        "the old master is still down"
    );
}
