//! The engine on a real Redis Cluster (tutorial section 5: cache-aside
//! scales out with a clustered cache): three masters made with
//! `redis-cli --cluster create`. Entries spread over the masters while the
//! keys of one entry share a hash slot, so the Lua scripts (leases,
//! version checks, the lock's release) and a write's one `DEL` of value
//! and lease run as on one server; near caches hear invalidations over
//! sharded Pub/Sub; a master that stops fails no read, and the cache
//! recovers when it is back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_aside::{
    CacheAside, Change, KeySpace, Options, RaceGuard, Redis, Source, Stampede, StepKind, WritePolicy,
};
use common::{stale_set_race, Db, Item, Recorder};
use embedded_redis::cluster::EmbeddedCluster;
use embedded_redis::RedisServerOptions;

fn cluster() -> EmbeddedCluster {
    EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a three-master cluster starts")
}

/// A cache of items on the cluster, with a connection of its own (another
/// application process), a near cache used when `options` say, and an
/// observer.
fn cache_on(cluster: &EmbeddedCluster, options: Options, observer: Arc<Recorder>) -> CacheAside<Item> {
    CacheAside::builder(
        Redis::open_cluster(&cluster.urls()).unwrap(),
        KeySpace::new("cache:"),
    )
    .near_cache(1_000, Duration::from_secs(30))
    .options(options)
    .versioned(Item::version)
    .observer(observer)
    // A node that is down answers no command: a read falls back after
    // this long.
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap()
}

/// Two processes with near caches, each subscribed to invalidations; their
/// caches and the observers that record what arrives on the bus.
async fn near_processes(cluster: &EmbeddedCluster) -> (Vec<CacheAside<Item>>, Vec<Arc<Recorder>>) {
    let near = Options {
        near_ttl: Some(Duration::from_secs(30)),
        ..Options::default()
    };
    let buses: Vec<Arc<Recorder>> = (0..2).map(|_| Arc::new(Recorder::default())).collect();
    let caches: Vec<_> = buses
        .iter()
        .map(|bus| cache_on(cluster, near.clone(), bus.clone()))
        .collect();
    for (cache, bus) in caches.iter().zip(&buses) {
        cache.listen();
        bus.wait_for(StepKind::Subscribed, 1).await;
    }
    (caches, buses)
}

fn plain(cluster: &EmbeddedCluster, options: Options) -> CacheAside<Item> {
    cache_on(cluster, options, Arc::new(Recorder::default()))
}

/// A plain connection to one node (no redirections followed).
fn node(cluster: &EmbeddedCluster, index: usize) -> redis::Connection {
    redis::Client::open(cluster.nodes()[index].url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The index of the master holding `key` now (the others answer `MOVED`).
fn owner(cluster: &EmbeddedCluster, key: &str) -> usize {
    (0..cluster.nodes().len())
        .find(|&i| {
            redis::cmd("EXISTS")
                .arg(key)
                .query::<i64>(&mut node(cluster, i))
                .is_ok_and(|n| n == 1)
        })
        .unwrap_or_else(|| panic!("no master holds {key}"))
}

fn slot(cluster: &EmbeddedCluster, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut node(cluster, 0))
        .unwrap()
}

/// Misses then hits on a cluster; the entries spread over all three
/// masters, and an entry's value and helper keys share one slot.
#[tokio::test]
async fn reads_miss_then_hit_and_entries_spread_over_the_masters() {
    let cluster = cluster();
    let db = Db::new(Duration::ZERO);
    let items = plain(&cluster, Options::default());
    for id in 1..=60 {
        let answer = items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
        assert_eq!(answer.source, Source::Loaded);
    }
    for id in 1..=60 {
        let answer = items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
        assert_eq!(answer.source, Source::Redis, "item {id} is a hit");
    }
    assert_eq!(db.loads(), 60);
    let per_master: Vec<i64> = (0..3)
        .map(|i| redis::cmd("DBSIZE").query(&mut node(&cluster, i)).unwrap())
        .collect();
    assert_eq!(per_master.iter().sum::<i64>(), 60, "{per_master:?}");
    assert!(
        per_master.iter().all(|&n| n > 0),
        "every master holds some: {per_master:?}"
    );
    assert_eq!(
        slot(&cluster, "cache:{item:7}"),
        slot(&cluster, "cache:{item:7}#lease"),
        "value and lease in one slot"
    );
    assert_eq!(
        slot(&cluster, "cache:{item:7}"),
        slot(&cluster, "cache:{item:7}#lock")
    );
}

/// The Redis lock on a cluster: a cold herd over three processes loads
/// the row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_lets_one_request_load_a_cold_herd() {
    let cluster = cluster();
    let db = Db::new(Duration::from_millis(300));
    let options = Options {
        stampede: Stampede::Lock {
            ttl: Duration::from_secs(5),
            attempts: 50,
        },
        ..Options::default()
    };
    let caches: Vec<_> = (0..3).map(|_| plain(&cluster, options.clone())).collect();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let cache = caches[i % 3].clone();
        let loader = db.loader(5);
        tasks.push(tokio::spawn(
            async move { cache.get_or_load("item:5", loader).await },
        ));
    }
    for task in tasks {
        let answer = task.await.unwrap().expect("every request answers");
        assert_eq!(answer.value.unwrap().id, 5);
    }
    assert_eq!(db.loads(), 1, "one load for the whole herd");
}

/// The stale-set race on a cluster: a reader held before its store while a
/// writer renames the row. Leases and version checks refuse the stale
/// store, as on one server (their scripts touch one slot).
#[tokio::test]
async fn leases_and_version_checks_refuse_the_stale_store() {
    for guard in [RaceGuard::lease(), RaceGuard::Version] {
        let cluster = cluster();
        let db = Db::new(Duration::ZERO);
        let items = plain(
            &cluster,
            Options {
                race_guard: guard.clone(),
                ..Options::default()
            },
        );
        stale_set_race(&items, &db).await;
        let next = items.get_or_load("item:1", db.loader(1)).await.unwrap();
        assert_eq!(
            next.value.unwrap().name,
            "renamed",
            "{guard:?}: the stale row was not kept"
        );
    }
}

/// Near caches on a cluster: a write in one process drops the near copy in
/// the others (the invalidation is published on one node and reaches the
/// subscribers of every node).
#[tokio::test]
async fn a_write_drops_the_near_copies_of_every_process() {
    let cluster = cluster();
    let db = Db::new(Duration::ZERO);
    let (caches, buses) = near_processes(&cluster).await;
    for cache in &caches {
        cache.get_or_load("item:3", db.loader(3)).await.unwrap();
        let again = cache.get_or_load("item:3", db.loader(3)).await.unwrap();
        assert_eq!(again.source, Source::Near);
    }
    // Sharded Pub/Sub: both subscribers are on the shard that owns the
    // channel's slot, and none on the classic, cluster-wide channels.
    let channel = "cache:invalidation";
    let (mut sharded, mut classic) = (0, 0);
    for i in 0..3 {
        let counts: (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query(&mut node(&cluster, i))
            .unwrap();
        sharded += counts.1;
        let counts: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut node(&cluster, i))
            .unwrap();
        classic += counts.1;
    }
    assert_eq!(
        (sharded, classic),
        (2, 0),
        "two sharded subscribers, no classic one"
    );
    let new = db.rename(3, "renamed");
    caches[0]
        .after_write("item:3", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    buses[1].wait_for(StepKind::InvalidationReceived, 1).await;
    let read = caches[1].get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!(read.value.unwrap().name, "renamed");
    assert_ne!(read.source, Source::Near, "no stale near copy");
}

/// A master stops: the reads of its keys fall back to the database (none
/// fails) while the other masters keep serving hits; when it is back, the
/// cache fills again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_fails_no_read_and_the_cache_recovers() {
    let mut cluster = cluster();
    let db = Db::new(Duration::ZERO);
    let items = plain(&cluster, Options::default());
    for id in 1..=30 {
        items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
    }
    let victim = owner(&cluster, "cache:{item:1}");
    let on_victim: Vec<u64> = (1..=30)
        .filter(|id| owner(&cluster, &format!("cache:{{item:{id}}}")) == victim)
        .collect();
    cluster.node_mut(victim).stop();

    for id in 1..=30 {
        let answer = items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .expect("no read fails while a master is down");
        assert_eq!(answer.value.unwrap().id, id);
        if on_victim.contains(&id) {
            assert_eq!(
                answer.source,
                Source::Fallback,
                "item {id} lives on the stopped master"
            );
        } else {
            assert_eq!(
                answer.source,
                Source::Redis,
                "item {id} lives on a master that is up"
            );
        }
    }

    // Back (empty: nothing is persisted), it rejoins with its slots.
    cluster.node_mut(victim).restart().unwrap();
    cluster.wait_until_ok(Duration::from_secs(20)).unwrap();
    let mut loaded_again = false;
    for _ in 0..200 {
        let answer = items.get_or_load("item:1", db.loader(1)).await.unwrap();
        if answer.source == Source::Redis {
            loaded_again = true;
            break;
        }
        // Until the client has reconnected to the node, reads fall back;
        // the first that reaches it stores, the next is a hit.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loaded_again, "the cache recovers once the master is back");
}

/// An operator moves every slot of one master to another while reads run
/// (`redis-cli --cluster reshard`): the client follows `ASK` and `MOVED`,
/// no read fails, and the entries that moved with their slots are still
/// hits afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moving_between_masters_fail_no_read() {
    let cluster = cluster();
    let db = Db::new(Duration::ZERO);
    let items = plain(&cluster, Options::default());
    for id in 1..=60 {
        items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
    }
    let loads_before = db.loads();
    let moved = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Reads go on for as long as the slots move.
    let reading = {
        let (items, db, moved) = (items.clone(), db.clone(), moved.clone());
        tokio::spawn(async move {
            let mut answered = 0u64;
            while !moved.load(std::sync::atomic::Ordering::Acquire) {
                for id in 1..=60 {
                    let answer = items
                        .get_or_load(&format!("item:{id}"), db.loader(id))
                        .await
                        .expect("no read fails while slots move");
                    assert_eq!(answer.value.unwrap().id, id);
                    answered += 1;
                }
            }
            answered
        })
    };
    let moving = {
        let moved = moved.clone();
        tokio::task::spawn_blocking(move || {
            // Node 0 holds slots 0-5460 (redis-cli assigns them in order).
            let result = cluster.move_slots(0, 1, 5461);
            moved.store(true, std::sync::atomic::Ordering::Release);
            result.expect("the slots move");
            cluster
        })
    };
    let cluster = moving.await.unwrap();
    let answered = reading.await.unwrap();
    assert!(answered >= 60, "reads ran while the slots moved: {answered}");
    // Node 0 serves no slot now (having none, it even turned into a replica
    // of the master that took them, as Redis does).
    for id in 1..=60 {
        assert_ne!(
            cluster.master_of(&format!("cache:{{item:{id}}}")),
            Some(0),
            "item {id}"
        );
    }
    for id in 1..=60 {
        let answer = items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
        assert_eq!(
            answer.source,
            Source::Redis,
            "item {id} is still a hit on its new master"
        );
    }
    println!(
        "{answered} reads while the slots moved; loads meanwhile: {}",
        db.loads() - loads_before
    );
}

/// The master holding the invalidation channel fails over: the sharded
/// subscription is made again on the promoted replica (the near cache
/// cleared, as after any resubscription), and a write's invalidation
/// reaches the other process again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_invalidations_follow_a_failover_of_their_channels_master() {
    let mut cluster = EmbeddedCluster::start_with_replicas(3, 1, &RedisServerOptions::default())
        .expect("a cluster with replicas");
    let db = Db::new(Duration::ZERO);
    let (caches, buses) = near_processes(&cluster).await;
    let victim = cluster
        .master_of("cache:invalidation")
        .expect("a master holds the channel");
    cluster.node_mut(victim).stop();
    cluster
        .wait_until_ok(Duration::from_secs(30))
        .expect("the replica takes over");
    // Both subscribers come back on the new master.
    for bus in &buses {
        bus.wait_for(StepKind::Subscribed, 2).await;
    }
    assert_ne!(cluster.master_of("cache:invalidation"), Some(victim));

    caches[1].get_or_load("item:9", db.loader(9)).await.unwrap();
    let again = caches[1].get_or_load("item:9", db.loader(9)).await.unwrap();
    assert_eq!(again.source, Source::Near);
    let new = db.rename(9, "renamed");
    caches[0]
        .after_write("item:9", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    buses[1].wait_for(StepKind::InvalidationReceived, 1).await;
    let read = caches[1].get_or_load("item:9", db.loader(9)).await.unwrap();
    assert_eq!(
        read.value.unwrap().name,
        "renamed",
        "no stale near copy after the failover"
    );
}
