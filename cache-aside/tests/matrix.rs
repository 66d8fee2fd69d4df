//! The policies compose: every stampede defence with every race guard, with
//! and without a near cache and jitter, keeps the same promises; then the
//! combinations the issue names, checked in depth.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_aside::{
    CacheAside, Change, KeySpace, Options, RaceGuard, Redis, Source, Stampede, StepKind, WritePolicy,
};
use common::{get, pttl, raw, redis_server, within, Db, Gate, Item, Recorder};
use embedded_redis::EmbeddedRedis;

/// Two processes' caches on `server`, in a key space of their own.
fn processes(server: &EmbeddedRedis, prefix: &str, options: &Options) -> Vec<CacheAside<Item>> {
    (0..2)
        .map(|_| {
            let cache = CacheAside::builder(Redis::open(&server.url()).unwrap(), KeySpace::new(prefix))
                .near_cache(100, Duration::from_secs(30))
                .options(options.clone())
                .versioned(Item::version)
                .build()
                .unwrap();
            cache.listen();
            cache
        })
        .collect()
}

/// Waits until every process's subscription is up.
async fn all_listening(caches: &[CacheAside<Item>]) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !caches.iter().all(CacheAside::is_listening) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("subscriptions up within 10 s");
}

async fn cold_herd(
    caches: &[CacheAside<Item>],
    db: &Db,
    id: u64,
    n: usize,
) -> Vec<cache_aside::Answer<Item>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let cache = caches[i % caches.len()].clone();
            let loader = db.loader(id);
            tokio::spawn(async move { cache.get_or_load(&format!("item:{id}"), loader).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// The most loads a cold herd may cause under each defence, with two
/// processes.
fn most_loads(stampede: &Stampede, herd: u64) -> u64 {
    match stampede {
        Stampede::SingleFlight => 2,
        Stampede::Lock { .. } => 1,
        _ => herd,
    }
}

/// Every defence × guard × near cache × jitter: a cold herd loads no more
/// than the defence allows and everyone gets the row; "does not exist" is
/// cached; a write is seen by every process at once; and the stale-set race
/// leaves a stale value exactly when there is no guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_combination_keeps_the_promises() {
    let server = redis_server();
    let stampedes = [
        Stampede::None,
        Stampede::SingleFlight,
        Stampede::lock(),
        Stampede::EarlyRefresh { beta: 1.0 },
        Stampede::StaleWhileRevalidate {
            stale_for: Duration::from_secs(30),
        },
    ];
    let guards = [RaceGuard::None, RaceGuard::lease(), RaceGuard::Version];
    let mut n = 0;
    for stampede in &stampedes {
        for guard in &guards {
            for near in [None, Some(Duration::from_secs(30))] {
                for jitter in [0.0, 0.3] {
                    n += 1;
                    let options = Options {
                        stampede: stampede.clone(),
                        race_guard: guard.clone(),
                        near_ttl: near,
                        jitter,
                        ..Options::default()
                    };
                    let what = format!("{stampede:?} + {guard:?} + near {near:?} + jitter {jitter}");
                    check_combination(&server, &format!("m{n}:"), &options, &what).await;
                }
            }
        }
    }
    assert_eq!(n, 60);
}

async fn check_combination(server: &EmbeddedRedis, prefix: &str, options: &Options, what: &str) {
    let db = Db::new(Duration::from_millis(40));
    let caches = processes(server, prefix, options);
    all_listening(&caches).await;

    // A cold herd.
    let answers = cold_herd(&caches, &db, 1, 20).await;
    assert!(
        (1..=most_loads(&options.stampede, 20)).contains(&db.loads()),
        "{what}: {} loads",
        db.loads()
    );
    assert!(
        answers
            .iter()
            .all(|a| a.value.as_ref().is_some_and(|v| v.name == "item 1")),
        "{what}"
    );
    let ttl = pttl(&mut raw(server), &format!("{prefix}item:1"));
    assert!(ttl > 0, "{what}: stored with a TTL ({ttl})");

    // "Does not exist", twice: one load.
    let before = db.loads();
    for cache in &caches {
        assert_eq!(
            cache.get_or_load("item:999", db.loader(999)).await.unwrap().value,
            None
        );
    }
    assert_eq!(db.loads() - before, 1, "{what}: the negative entry answered");

    // A write, then every process reads the new row.
    let new = db.rename(1, "renamed");
    let written = caches[0]
        .after_write("item:1", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    if options.near_ttl.is_some() {
        let published = written.published.expect("published").expect("delivered");
        assert_eq!(published.receivers, 2, "{what}");
    }
    for cache in &caches {
        // The other process's invalidation may still be in flight: wait for
        // its near copy to go (the bus is fast, but asynchronous).
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let answer = cache.get_or_load("item:1", db.loader(1)).await.unwrap();
                if answer.value.as_ref().is_some_and(|v| v.name == "renamed") {
                    break;
                }
                assert_eq!(answer.source, Source::Near, "{what}: only a near copy may lag");
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: a process never saw the write"));
    }

    // The stale-set race on item 2.
    let stale = race(&caches[0], &db, server, prefix).await;
    assert_eq!(
        stale,
        matches!(options.race_guard, RaceGuard::None),
        "{what}: stale after the race"
    );
    for cache in &caches {
        cache.stop_listening();
    }
}

/// The race on item 2: a reader held before its store, a write, then the
/// store. Returns whether Redis ends up holding a row the database no
/// longer has.
async fn race(cache: &CacheAside<Item>, db: &Db, server: &EmbeddedRedis, prefix: &str) -> bool {
    let gate = Gate::before(StepKind::Store);
    // No near copy, no stampede defence in the way: the reader must store.
    let options = Options {
        near_ttl: None,
        stampede: Stampede::None,
        ..cache.options().clone()
    };
    let reader = {
        let cache = cache.clone();
        let gate = gate.clone();
        let loader = db.loader(2);
        let options = options.clone();
        tokio::spawn(async move { cache.get_or_load_with("item:2", &options, &*gate, loader).await })
    };
    within(&gate.reached, "the reader reaching its store").await;
    let new = db.rename(2, "two");
    cache
        .after_write_with(
            "item:2",
            Change::Updated(&new),
            WritePolicy::Invalidate,
            &options,
            cache.observer(),
        )
        .await;
    gate.open();
    reader.await.unwrap().unwrap();
    let cached = get(&mut raw(server), &format!("{prefix}item:2"));
    cached.is_some_and(|c| c.starts_with("ca1 v ") && !c.contains("\"two\""))
}

/// Lock + version guard + near cache + jitter, in depth: one load for the
/// herd, the jittered entry carries the row's version, every answer is kept
/// near; after a write the marker fences older versions, the next herd
/// loads once more and the near copies follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_with_version_guard_near_cache_and_jitter() {
    let server = redis_server();
    let options = Options {
        stampede: Stampede::lock(),
        race_guard: RaceGuard::Version,
        near_ttl: Some(Duration::from_secs(30)),
        jitter: 0.5,
        ttl: Duration::from_secs(100),
        ..Options::default()
    };
    let caches = processes(&server, "deep:", &options);
    all_listening(&caches).await;
    let db = Db::new(Duration::from_millis(200));
    let answers = cold_herd(&caches, &db, 7, 100).await;
    assert_eq!(db.loads(), 1);
    assert!(answers.iter().all(|a| a.value.as_ref().unwrap().version == 1));
    let mut redis = raw(&server);
    assert!(get(&mut redis, "deep:item:7").unwrap().starts_with("ca1 v 1 "));
    let ttl = pttl(&mut redis, "deep:item:7");
    assert!((49_000..=150_000).contains(&ttl), "jittered: {ttl}");
    for cache in &caches {
        assert_eq!(
            cache.get_or_load("item:7", db.loader(7)).await.unwrap().source,
            Source::Near
        );
    }

    let new = db.rename(7, "seven");
    caches[1]
        .after_write("item:7", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    assert!(
        get(&mut redis, "deep:item:7").unwrap().starts_with("ca1 i 2 "),
        "a version-2 marker"
    );
    // The marker refuses version 1 from any late store.
    let old = Item {
        version: 1,
        ..new.clone()
    };
    let late = caches[0]
        .after_write("item:7", Change::Updated(&old), WritePolicy::WriteThrough)
        .await;
    assert_eq!(late.effect, cache_aside::Effect::WriteThroughRefused);
    for cache in &caches {
        tokio::time::timeout(Duration::from_secs(5), async {
            while cache.near_len() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the invalidation reaches every near cache");
    }
    let answers = cold_herd(&caches, &db, 7, 100).await;
    assert_eq!(db.loads(), 2, "one more load for the new version");
    assert!(answers.iter().all(|a| a.value.as_ref().unwrap().name == "seven"));
}

/// Stale-while-revalidate + leases: the background refresh takes a lease
/// like any reader, so a write that lands during the refresh revokes it and
/// the refreshed (now stale) value is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_with_leases_never_stores_over_a_write() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let options = Options {
        stampede: Stampede::StaleWhileRevalidate {
            stale_for: Duration::from_secs(30),
        },
        race_guard: RaceGuard::lease(),
        ..Options::default()
    };
    // The refresh reports to the cache's own observer: hold it before its
    // store.
    let gate = Gate::before(StepKind::Store);
    let refresher = Arc::new(Recorder::default());
    let cache: CacheAside<Item> =
        CacheAside::builder(Redis::open(&server.url()).unwrap(), KeySpace::new("swr:"))
            .options(options)
            .observer(Arc::new(GateAndRecord(gate.clone(), refresher.clone())))
            .build()
            .unwrap();
    let old = Item {
        id: 3,
        name: "item 3".into(),
        version: 1,
    };
    common::put_stale(&server, "swr:item:3", &old, Duration::from_secs(30));

    let answer = cache.get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!(answer.source, Source::Stale);
    within(&gate.reached, "the background refresh reaching its store").await;
    assert!(
        refresher.count(StepKind::LeaseTaken) == 1,
        "{:?}",
        refresher.kinds()
    );

    let new = db.rename(3, "three");
    cache
        .after_write("item:3", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    gate.open();
    refresher.wait_for(StepKind::StoreRefused, 1).await;
    assert_eq!(
        get(&mut raw(&server), "swr:item:3"),
        None,
        "the refresh did not store over the write"
    );
    let answer = cache.get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!(answer.value.unwrap().name, "three");
}

/// XFetch + negative entries: "does not exist" is refreshed early like any
/// value, and stays "does not exist".
#[tokio::test]
async fn xfetch_refreshes_negative_entries_early_too() {
    let server = redis_server();
    let db = Db::new(Duration::from_millis(30));
    let options = Options {
        // A minute, so no pause of a busy machine lets it expire before
        // the second read; the huge beta makes it "close" all the same.
        stampede: Stampede::EarlyRefresh { beta: 1_000_000.0 },
        negative_ttl: Some(Duration::from_secs(60)),
        ..Options::default()
    };
    let recorder = Recorder::default();
    let cache = common::cache(&server, options.clone());
    let first = cache.get_or_load("item:404", db.loader(404)).await.unwrap();
    assert_eq!(first.value, None);
    assert!(get(&mut raw(&server), "cache:item:404")
        .unwrap()
        .starts_with("ca1 n "));
    // With beta 1,000,000 and a 30 ms load, a draw below 0.998 refreshes
    // (-30 ms * beta * ln(draw) > 60 s).
    let second = cache
        .get_or_load_with("item:404", &options, &recorder, db.loader(404))
        .await
        .unwrap();
    assert_eq!(second.value, None);
    assert_eq!(
        recorder.kinds(),
        [
            StepKind::Lookup,
            StepKind::EarlyRefresh,
            StepKind::Load,
            StepKind::Store
        ]
    );
    assert!(get(&mut raw(&server), "cache:item:404")
        .unwrap()
        .starts_with("ca1 n "));
    assert_eq!(db.loads(), 2);
}

/// Holds at a gate and records, as one observer.
struct GateAndRecord(Arc<Gate>, Arc<Recorder>);

impl cache_aside::Observer for GateAndRecord {
    fn step(&self, step: &cache_aside::Step<'_>) {
        self.1.step(step);
    }

    fn checkpoint<'a>(&'a self, next: StepKind, key: &'a str) -> Option<cache_aside::Pause<'a>> {
        self.0.checkpoint(next, key)
    }
}
