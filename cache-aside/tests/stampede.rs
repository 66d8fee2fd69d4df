//! The stampede defences on a real Redis, counted in database loads (never
//! timed): no defence, single flight, the lock (across processes, a dead
//! holder, lock safety), XFetch and stale-while-revalidate.

mod common;

use std::time::Duration;

use cache_aside::stampede::RELEASE_IF_OWNER;
use cache_aside::{CacheAside, Options, Source, Stampede, StepKind};
use common::{cache, raw, redis_server, Db, Item, Recorder};

fn with(stampede: Stampede) -> Options {
    Options {
        stampede,
        ..Options::default()
    }
}

/// A slow database: far longer than it takes to send every GET of a herd,
/// so every request misses before the first value is stored.
fn slow() -> Db {
    Db::new(Duration::from_millis(300))
}

/// Fires `n` concurrent reads of `key`, spread round-robin over `caches`
/// (one per application process); returns the answers.
async fn herd(caches: &[CacheAside<Item>], db: &Db, id: u64, n: usize) -> Vec<cache_aside::Answer<Item>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let cache = caches[i % caches.len()].clone();
        let loader = db.loader(id);
        tasks.push(tokio::spawn(async move {
            cache.get_or_load(&format!("item:{id}"), loader).await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// No defence: every request of a cold herd loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_defence_every_request_of_a_cold_herd_loads() {
    let server = redis_server();
    let db = slow();
    let caches = [cache(&server, with(Stampede::None))];
    let answers = herd(&caches, &db, 1, 100).await;
    assert_eq!(db.loads(), 100);
    assert!(answers.iter().all(|a| a.source == Source::Loaded && !a.waited));
}

/// Single flight: one load per process; the other requests share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_loads_once_per_process() {
    let server = redis_server();
    let db = slow();
    let caches: Vec<_> = (0..3)
        .map(|_| cache(&server, with(Stampede::SingleFlight)))
        .collect();
    let answers = herd(&caches, &db, 2, 150).await;
    assert_eq!(db.loads(), 3, "one per process");
    assert_eq!(answers.iter().filter(|a| a.waited).count(), 147);
    assert!(answers.iter().all(|a| a.value.as_ref().unwrap().name == "item 2"));
}

/// The lock: exactly one load for a herd spread over three processes; the
/// others are handed the value, and the lock is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_loads_exactly_once_across_processes() {
    let server = redis_server();
    let db = slow();
    let caches: Vec<_> = (0..3).map(|_| cache(&server, with(Stampede::lock()))).collect();
    let answers = herd(&caches, &db, 3, 300).await;
    assert_eq!(db.loads(), 1);
    assert_eq!(answers.iter().filter(|a| a.source == Source::Loaded).count(), 1);
    assert!(
        answers.iter().filter(|a| a.waited).count() > 200,
        "most waited for the holder"
    );
    assert!(answers.iter().all(|a| a.value.as_ref().unwrap().name == "item 3"));
    let lock: Option<String> = redis::cmd("GET")
        .arg("cache:item:3#lock")
        .query(&mut raw(&server))
        .unwrap();
    assert_eq!(lock, None, "the holder released its lock");
}

/// A holder that died leaves a lock that expires by itself: the waiter
/// then takes the lock and loads, instead of waiting forever.
#[tokio::test]
async fn a_dead_holders_lock_expires_and_a_waiter_takes_over() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let options = with(Stampede::Lock {
        ttl: Duration::from_millis(300),
        attempts: 3,
    });
    let items = cache(&server, options);
    // Connected first (another key), so the read below meets the dead lock
    // within its 300 ms, however long connecting takes on a busy machine.
    items.get_or_load("item:5", db.loader(5)).await.unwrap();
    // A "holder" that will never store or release.
    let _: () = redis::cmd("SET")
        .arg("cache:item:4#lock")
        .arg("dead")
        .arg("PX")
        .arg(300)
        .query(&mut raw(&server))
        .unwrap();
    let recorder = Recorder::default();
    let answer = items
        .get_or_load_with("item:4", items.options(), &recorder, db.loader(4))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Loaded);
    assert!(answer.waited, "it waited for the dead holder first");
    assert_eq!(db.loads(), 2, "the warm-up's load, then this one");
    assert!(
        recorder.count(StepKind::LockAcquire) >= 2,
        "{:?}",
        recorder.kinds()
    );
}

/// Lock safety: a holder whose lock expired cannot delete the lock someone
/// else has taken since (the release is a compare-and-delete in Lua).
#[tokio::test]
async fn a_late_owner_cannot_release_a_newer_lock() {
    let server = redis_server();
    let mut redis = raw(&server);
    let _: () = redis::cmd("SET")
        .arg("lock")
        .arg("newer")
        .query(&mut redis)
        .unwrap();
    let released: i64 = redis::cmd("EVAL")
        .arg(RELEASE_IF_OWNER)
        .arg(1)
        .arg("lock")
        .arg("older")
        .query(&mut redis)
        .unwrap();
    assert_eq!(released, 0);
    let held: String = redis::cmd("GET").arg("lock").query(&mut redis).unwrap();
    assert_eq!(held, "newer");
}

/// XFetch: close to expiry, with a slow load and a large beta, a hit
/// reloads early; far from expiry it does not.
#[tokio::test]
async fn xfetch_refreshes_a_value_close_to_expiry() {
    let server = redis_server();
    let db = Db::new(Duration::from_millis(50));
    // A minute's TTL, so no pause of a busy machine lets the entry expire
    // before the second read; the huge beta makes it "close" all the same.
    let eager = Options {
        ttl: Duration::from_secs(60),
        ..with(Stampede::EarlyRefresh { beta: 1_000_000.0 })
    };
    let items = cache(&server, eager);
    items.get_or_load("item:5", db.loader(5)).await.unwrap();
    // With beta 1,000,000 and a 50 ms load, -50 ms * beta * ln(draw)
    // exceeds the 60 s left unless the draw is above 0.9988: a refresh,
    // all but surely (and the cache's draws are seeded).
    let recorder = Recorder::default();
    let answer = items
        .get_or_load_with("item:5", items.options(), &recorder, db.loader(5))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Loaded);
    assert_eq!(recorder.kinds()[..2], [StepKind::Lookup, StepKind::EarlyRefresh]);
    assert_eq!(db.loads(), 2);

    // Beta tiny: the same entry is served as it is.
    let lazy = Options {
        ttl: Duration::from_secs(60),
        ..with(Stampede::EarlyRefresh { beta: 0.001 })
    };
    let answer = items
        .get_or_load_with("item:5", &lazy, items.observer(), db.loader(5))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Redis);
}

/// XFetch with the database down: the early reload fails, but the entry in
/// hand is still fresh, so it is the answer (the failed load is in the
/// steps), never an error.
#[tokio::test]
async fn an_early_refresh_that_fails_answers_with_the_fresh_entry() {
    let server = redis_server();
    let db = Db::new(Duration::from_millis(50));
    let eager = Options {
        ttl: Duration::from_secs(60),
        ..with(Stampede::EarlyRefresh { beta: 1_000_000.0 })
    };
    let items = cache(&server, eager);
    let stored = items.get_or_load("item:5", db.loader(5)).await.unwrap();
    let recorder = Recorder::default();
    let answer = items
        .get_or_load_with("item:5", items.options(), &recorder, || -> common::Load {
            Box::pin(async { Err("the database is down".to_string()) })
        })
        .await
        .expect("a fresh entry answers when its early reload fails");
    // (As above: with beta 1,000,000 the refresh is all but sure.)
    assert_eq!(recorder.kinds()[..2], [StepKind::Lookup, StepKind::EarlyRefresh]);
    assert_eq!(answer.source, Source::Redis);
    assert_eq!(answer.value, stored.value);
}

/// Stale-while-revalidate: past its fresh time the entry is served stale at
/// once to everyone, and exactly one background refresh reloads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let server = redis_server();
    // A one-second refresh: the hundred reads all look before it stores,
    // even on a busy machine (then they would find the fresh entry).
    let db = Db::new(Duration::from_secs(1));
    let options = Options {
        // Long enough that the read after the refresh is a hit, whenever
        // it comes.
        ttl: Duration::from_secs(60),
        ..with(Stampede::StaleWhileRevalidate {
            stale_for: Duration::from_secs(30),
        })
    };
    let refreshes = std::sync::Arc::new(Recorder::default());
    let items = CacheAside::<Item>::builder(
        cache_aside::Redis::open(&server.url()).unwrap(),
        cache_aside::KeySpace::new("cache:"),
    )
    .options(options)
    .observer(refreshes.clone())
    .build()
    .unwrap();
    let old = Item {
        id: 6,
        name: "item 6 (old)".into(),
        version: 1,
    };
    common::put_stale(&server, "cache:item:6", &old, Duration::from_secs(30));

    let answers = herd(std::slice::from_ref(&items), &db, 6, 100).await;
    assert!(answers.iter().all(|a| a.source == Source::Stale), "nobody waited");
    assert!(answers.iter().all(|a| a.value.as_ref() == Some(&old)));
    // The one refresh reports to the cache's own observer when it stores.
    refreshes.wait_for(StepKind::Store, 1).await;
    assert_eq!(db.loads(), 1, "exactly one background refresh");
    let lookups: Vec<_> = refreshes
        .seen()
        .into_iter()
        .filter(|s| s.kind == StepKind::Lookup)
        .map(|s| s.status)
        .collect();
    // The hundred reads, and the refresh's look before it loads.
    assert_eq!(lookups.len(), 101);
    assert!(
        lookups.iter().all(|s| *s == cache_aside::Status::Hit),
        "a stale entry within its window answers: a hit"
    );
    let fresh = items.get_or_load("item:6", db.loader(6)).await.unwrap();
    assert_eq!(fresh.source, Source::Redis);
    assert_eq!(fresh.value.unwrap().name, "item 6");
}

/// Regression: a lock holder whose load fails hands the lock back at once
/// (waiters are told to look again), so a failing database never makes a
/// herd sit out the lock's TTL, round after round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_holder_releases_its_waiters_at_once() {
    let server = redis_server();
    let options = with(Stampede::Lock {
        ttl: Duration::from_secs(60),
        attempts: 3,
    });
    let caches: Vec<_> = (0..2).map(|_| cache(&server, options.clone())).collect();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let cache = caches[i % 2].clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("item:7", || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err::<Option<Item>, _>("database down")
                    })
                    .await
            })
        })
        .collect();
    // Without the hand-back every round would wait the 60 s lock TTL.
    let results = tokio::time::timeout(Duration::from_secs(30), async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    })
    .await
    .expect("no waiter sits out the lock's TTL");
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap_err() == &"database down"));
    let lock: Option<String> = redis::cmd("GET")
        .arg("cache:item:7#lock")
        .query(&mut raw(&server))
        .unwrap();
    assert_eq!(lock, None, "every holder released its lock");
}

/// Regression: with negative caching off, the holder still hands "does not
/// exist" to its waiters: one load for a herd of a missing id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_hands_over_a_missing_record_even_uncached() {
    let server = redis_server();
    let db = slow();
    let options = Options {
        negative_ttl: None,
        // Near caches on: a waiter must not keep what it was handed there.
        near_ttl: Some(Duration::from_secs(30)),
        ..with(Stampede::lock())
    };
    let caches: Vec<_> = (0..3).map(|_| cache(&server, options.clone())).collect();
    let answers = herd(&caches, &db, 999, 60).await;
    assert_eq!(db.loads(), 1, "one load for the whole herd");
    assert!(answers.iter().all(|a| a.value.is_none()));
    let cached: Option<String> = redis::cmd("GET")
        .arg("cache:item:999")
        .query(&mut raw(&server))
        .unwrap();
    assert_eq!(cached, None, "and nothing cached");
    // Nor in any process's memory: the next read of each asks the
    // database again.
    for cache in &caches {
        let again = cache.get_or_load("item:999", db.loader(999)).await.unwrap();
        assert_eq!(
            again.source,
            Source::Loaded,
            "absence kept near with negative caching off"
        );
    }
    assert_eq!(db.loads(), 4);
}

/// Regression: a holder dropped half way (its client gone) still releases
/// the lock, in the background, instead of leaving it to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_holder_still_releases_the_lock() {
    let server = redis_server();
    let db = Db::new(Duration::from_secs(30));
    let options = with(Stampede::Lock {
        ttl: Duration::from_secs(60),
        attempts: 3,
    });
    let items = cache(&server, options);
    let recorder = std::sync::Arc::new(Recorder::default());
    let holder = {
        let (items, recorder, loader) = (items.clone(), recorder.clone(), db.loader(8));
        tokio::spawn(async move {
            let options = items.options().clone();
            items
                .get_or_load_with("item:8", &options, &*recorder, loader)
                .await
        })
    };
    // Holding the lock, loading for 30 s: drop it.
    // The holder takes the lock (a blocking wait on Redis's own event;
    // the holder runs on the other worker).
    tokio::task::block_in_place(|| common::wait_until_set(&server, "cache:item:8#lock"));
    holder.abort();
    let _ = holder.await;
    tokio::task::block_in_place(|| common::wait_until_deleted(&server, "cache:item:8#lock"));
}

/// Regression: without a subscription (stopped), a lock waiter looks in
/// Redis now and then instead of waiting the whole lock TTL for a message
/// that cannot come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_without_a_subscription_still_finds_the_value() {
    let server = redis_server();
    let db = Db::new(Duration::from_millis(200));
    let options = with(Stampede::Lock {
        ttl: Duration::from_secs(60),
        attempts: 3,
    });
    let (holder, waiter) = (cache(&server, options.clone()), cache(&server, options));
    waiter.stop_listening();
    let first = {
        let (holder, loader) = (holder.clone(), db.loader(9));
        tokio::spawn(async move { holder.get_or_load("item:9", loader).await })
    };
    // The holder takes the lock (a blocking wait on Redis's own event;
    // the holder runs on the other worker).
    tokio::task::block_in_place(|| common::wait_until_set(&server, "cache:item:9#lock"));
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        waiter.get_or_load("item:9", db.loader(9)),
    )
    .await
    .expect("the waiter does not wait out the 60 s lock")
    .unwrap();
    assert!(answer.waited);
    assert_eq!(answer.source, Source::Redis);
    first.await.unwrap().unwrap();
    assert_eq!(db.loads(), 1);
}

/// Regression: single flight never hands a value loaded before a write to a
/// reader that started after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_starts_afresh_after_a_write() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, with(Stampede::SingleFlight));
    let gate = common::Gate::before(StepKind::Store);
    let leader = {
        let (items, gate, loader) = (items.clone(), gate.clone(), db.loader(10));
        tokio::spawn(async move {
            let options = items.options().clone();
            items.get_or_load_with("item:10", &options, &*gate, loader).await
        })
    };
    common::within(&gate.reached, "the leader loaded and holds before storing").await;
    let new = db.rename(10, "ten");
    items
        .after_write(
            "item:10",
            cache_aside::Change::Updated(&new),
            cache_aside::WritePolicy::Invalidate,
        )
        .await;
    let later = items.get_or_load("item:10", db.loader(10)).await.unwrap();
    assert_eq!(later.value.unwrap().name, "ten", "not the leader's old row");
    gate.open();
    leader.await.unwrap().unwrap();
}

/// Regression: stale-while-revalidate releases its refresh lock when the
/// refresh is done, so the next staleness is refreshed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_lock_is_released_after_the_refresh() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let options = with(Stampede::StaleWhileRevalidate {
        stale_for: Duration::from_secs(30),
    });
    let refreshes = std::sync::Arc::new(Recorder::default());
    let items = CacheAside::<Item>::builder(
        cache_aside::Redis::open(&server.url()).unwrap(),
        cache_aside::KeySpace::new("cache:"),
    )
    .options(options)
    .observer(refreshes.clone())
    .build()
    .unwrap();
    let old = Item {
        id: 11,
        name: "old".into(),
        version: 1,
    };
    common::put_stale(&server, "cache:item:11", &old, Duration::from_secs(30));
    assert_eq!(
        items.get_or_load("item:11", db.loader(11)).await.unwrap().source,
        Source::Stale
    );
    refreshes.wait_for(StepKind::LockRelease, 1).await;
    let held: bool = redis::cmd("EXISTS")
        .arg("cache:item:11#refresh")
        .query(&mut raw(&server))
        .unwrap();
    assert!(!held, "released");
}

/// The lock's holder that could not take the lease (another reader holds
/// it) answers with what it loaded, but hands it to no waiter: a write may
/// have come and gone unseen during its load. Each waiter loads for
/// itself instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_without_the_lease_hands_nothing_over() {
    let server = redis_server();
    let db = Db::new(Duration::from_millis(200));
    let options = Options {
        race_guard: cache_aside::RaceGuard::lease(),
        ..with(Stampede::Lock {
            ttl: Duration::from_secs(1),
            attempts: 3,
        })
    };
    let caches: Vec<_> = (0..3).map(|_| cache(&server, options.clone())).collect();
    // Another reader's lease, held for the whole test.
    let lease = cache_aside::KeySpace::new("cache:").lease("item:7");
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("another-reader")
        .arg("PX")
        .arg(60_000)
        .query(&mut raw(&server))
        .unwrap();
    let answers = herd(&caches, &db, 7, 3).await;
    assert!(answers
        .iter()
        .all(|a| a.value.as_ref().is_some_and(|i| i.id == 7)));
    assert_eq!(db.loads(), 3, "a waiter was handed an unguarded value");
}
