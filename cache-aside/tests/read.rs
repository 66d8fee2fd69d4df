//! The read path on a real Redis: hits, misses, negative entries, TTLs,
//! jitter, the fallback when Redis fails, and what the observer sees.

mod common;

use std::time::Duration;

use cache_aside::{Options, Source, Status, StepKind};
use common::{cache, get, pttl, raw, redis_server, Db, Recorder};

/// Tutorial step 2: the first read misses, loads and stores with the TTL;
/// the second is a hit that never reaches the database.
#[tokio::test]
async fn a_miss_loads_and_stores_then_a_hit_skips_the_database() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());

    let first = items.get_or_load("item:1", db.loader(1)).await.unwrap();
    assert_eq!(first.source, Source::Loaded);
    assert_eq!(first.value.as_ref().unwrap().name, "item 1");
    let second = items.get_or_load("item:1", db.loader(1)).await.unwrap();
    assert_eq!(second.source, Source::Redis);
    assert_eq!(second.value, first.value);
    assert_eq!(db.loads(), 1);

    let mut redis = raw(&server);
    let stored = get(&mut redis, "cache:item:1").unwrap();
    assert!(
        stored.starts_with("ca1 v 1 "),
        "an envelope with version 1: {stored}"
    );
    assert!(
        stored.ends_with(r#"{"id":1,"name":"item 1","version":1}"#),
        "{stored}"
    );
    let ttl = pttl(&mut redis, "cache:item:1");
    assert!(ttl > 0 && ttl <= 60_000, "every entry has its TTL: {ttl}");
}

/// Section 4.7: "does not exist" is cached with the shorter negative TTL,
/// so asking again does not reach the database; with negative caching off,
/// every lookup of a missing id does.
#[tokio::test]
async fn missing_records_are_cached_with_the_negative_ttl_unless_switched_off() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());
    for _ in 0..10 {
        let answer = items.get_or_load("item:999", db.loader(999)).await.unwrap();
        assert_eq!(answer.value, None);
    }
    assert_eq!(db.loads(), 1, "one query, then nine negative hits");
    let mut redis = raw(&server);
    let ttl = pttl(&mut redis, "cache:item:999");
    assert!(ttl > 0 && ttl <= 30_000, "the negative TTL: {ttl}");

    let off = Options {
        negative_ttl: None,
        ..Options::default()
    };
    let db = Db::new(Duration::ZERO);
    for _ in 0..10 {
        let answer = items
            .get_or_load_with("item:998", &off, items.observer(), db.loader(998))
            .await
            .unwrap();
        assert_eq!(answer.source, Source::Loaded);
    }
    assert_eq!(db.loads(), 10, "without negative caching every lookup loads");
    assert_eq!(get(&mut redis, "cache:item:998"), None);
}

/// Section 5.3: Redis drops the entry when its TTL runs out, and the next
/// read loads again.
#[tokio::test]
async fn a_read_after_the_ttl_runs_out_loads_again() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let short = Options {
        ttl: Duration::from_millis(200),
        ..Options::default()
    };
    let items = cache(&server, short);
    items.get_or_load("item:2", db.loader(2)).await.unwrap();
    common::wait_until_expired(&server, "cache:item:2");
    let again = items.get_or_load("item:2", db.loader(2)).await.unwrap();
    assert_eq!(again.source, Source::Loaded);
    assert_eq!(db.loads(), 2);
}

/// Section 4.5: with Redis stopped the read still answers, from the loader,
/// and stores nothing; when Redis is back the cache is used again with no
/// restart.
#[tokio::test]
async fn a_stopped_redis_falls_back_to_the_loader_and_recovers() {
    let mut server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());
    items.get_or_load("item:3", db.loader(3)).await.unwrap();
    server.stop();

    let recorder = Recorder::default();
    let answer = items
        .get_or_load_with("item:3", items.options(), &recorder, db.loader(3))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Fallback);
    assert_eq!(answer.value.unwrap().name, "item 3");
    assert_eq!(
        recorder.kinds(),
        [StepKind::Lookup, StepKind::Fallback, StepKind::Load],
        "no store after a failure"
    );
    assert_eq!(recorder.seen()[0].status, Status::Error);

    server.restart().unwrap();
    let mut recovered = None;
    // The connection comes back by itself; the first command after the
    // restart may still see the old connection fail.
    for _ in 0..20 {
        let answer = items.get_or_load("item:3", db.loader(3)).await.unwrap();
        if answer.source == Source::Loaded {
            recovered = Some(answer);
            break;
        }
    }
    assert!(recovered.is_some(), "the cache is used again after the restart");
    assert_eq!(
        items.get_or_load("item:3", db.loader(3)).await.unwrap().source,
        Source::Redis
    );
}

/// A Redis that accepts connections but never answers must not hang a
/// read: the command times out and the read falls back.
#[tokio::test]
async fn a_redis_that_never_answers_times_out_into_the_fallback() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let db = Db::new(Duration::ZERO);
    let items = cache_aside::CacheAside::<common::Item>::builder(
        cache_aside::Redis::open(&url).unwrap(),
        cache_aside::KeySpace::new("cache:"),
    )
    .timeout(Duration::from_millis(100))
    .build()
    .unwrap();
    let answer = items.get_or_load("item:4", db.loader(4)).await.unwrap();
    assert_eq!(answer.source, Source::Fallback);
    drop(silent);
}

/// Bytes in the key that are not an envelope (written by hand, say) count
/// as a miss and are replaced; never a crash.
#[tokio::test]
async fn unreadable_entries_are_misses_and_get_replaced() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());
    let mut redis = raw(&server);
    let _: () = redis::cmd("SET")
        .arg("cache:item:5")
        .arg("not json")
        .query(&mut redis)
        .unwrap();
    let answer = items.get_or_load("item:5", db.loader(5)).await.unwrap();
    assert_eq!(answer.source, Source::Loaded);
    assert!(get(&mut redis, "cache:item:5").unwrap().starts_with("ca1 v "));
}

/// The loader's error is the read's error, and nothing is cached.
#[tokio::test]
async fn a_failing_loader_fails_the_read_and_caches_nothing() {
    let server = redis_server();
    let items = cache(&server, Options::default());
    let result = items
        .get_or_load("item:6", || async {
            Err::<Option<common::Item>, _>("database down")
        })
        .await;
    assert_eq!(result.unwrap_err(), "database down");
    assert_eq!(get(&mut raw(&server), "cache:item:6"), None);
}

/// Section 4.1: with jitter the TTLs of keys cached together differ, each
/// within its share of the base TTL.
#[tokio::test]
async fn jitter_spreads_the_ttls_of_keys_cached_together() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let jittered = Options {
        ttl: Duration::from_secs(100),
        jitter: 0.5,
        ..Options::default()
    };
    let items = cache(&server, jittered);
    let mut redis = raw(&server);
    let mut ttls = Vec::new();
    for id in 1..=40 {
        items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
        ttls.push(pttl(&mut redis, &format!("cache:item:{id}")));
    }
    assert!(ttls.iter().all(|t| (49_000..=150_000).contains(t)), "{ttls:?}");
    let spread = ttls.iter().max().unwrap() - ttls.iter().min().unwrap();
    assert!(spread > 30_000, "expiries are spread, not together: {ttls:?}");
}

/// The observer sees each step with the command as sent: a miss is a GET
/// that missed, the load, the encoding and a SET with the TTL; a hit is
/// one GET and the decoding, each with its size and format.
#[tokio::test]
async fn the_observer_sees_every_command_as_sent() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());
    let miss = Recorder::default();
    items
        .get_or_load_with("item:7", items.options(), &miss, db.loader(7))
        .await
        .unwrap();
    let seen = miss.seen();
    assert_eq!(
        miss.all_kinds(),
        [
            StepKind::Lookup,
            StepKind::Load,
            StepKind::Encode,
            StepKind::Store
        ]
    );
    assert_eq!(seen[0].command, "GET cache:item:7");
    assert_eq!(seen[0].status, Status::Miss);
    assert_eq!(seen[1].status, Status::Hit, "the loader found the record");
    assert_eq!(seen[2].reply, "36 bytes of JSON");
    assert!(
        seen[3].command.starts_with("SET cache:item:7 \"ca1 v 1 "),
        "{}",
        seen[3].command
    );
    assert!(seen[3].command.ends_with(" EX 60"), "{}", seen[3].command);

    let hit = Recorder::default();
    items
        .get_or_load_with("item:7", items.options(), &hit, db.loader(7))
        .await
        .unwrap();
    assert_eq!(hit.all_kinds(), [StepKind::Lookup, StepKind::Decode]);
    assert_eq!(hit.seen()[0].status, Status::Hit);
    assert_eq!(hit.seen()[1].reply, "36 bytes of JSON");
}

/// Section 4.6, the mistake made visible: with `forget_ttl` every way of
/// storing (plain, under a lease, with a version check) leaves a key with
/// no TTL (`PTTL` answers -1), and it is still served.
#[tokio::test]
async fn forgetting_the_ttl_stores_keys_that_never_expire() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let mut redis = raw(&server);
    for (n, race_guard) in [
        cache_aside::RaceGuard::None,
        cache_aside::RaceGuard::lease(),
        cache_aside::RaceGuard::Version,
    ]
    .into_iter()
    .enumerate()
    {
        let items = cache(
            &server,
            Options {
                forget_ttl: true,
                race_guard: race_guard.clone(),
                ..Options::default()
            },
        );
        let id = n as u64 + 1;
        let key = format!("item:{id}");
        assert_eq!(
            items.get_or_load(&key, db.loader(id)).await.unwrap().source,
            Source::Loaded
        );
        assert_eq!(pttl(&mut redis, &format!("cache:{key}")), -1, "{race_guard:?}");
        assert_eq!(
            items.get_or_load(&key, db.loader(id)).await.unwrap().source,
            Source::Redis
        );
    }
}
