//! When Redis or the database fails (tutorial sections 4.2, 4.5, 6.3 and
//! 7): the circuit breaker, fail-safe, and invalidations retried until
//! Redis takes them. Redis is made unreachable or slow through a
//! fault-injecting TCP proxy (its data stays), or hung with `SIGSTOP`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cache_aside::{
    BreakerPolicy, BreakerState, CacheAside, Change, Effect, KeySpace, Options, RaceGuard, Redis, Source,
    Status, StepKind, WritePolicy,
};
use common::{config_set, get, raw, redis_server, within, Db, Gate, Item, Recorder};
use embedded_redis::proxy::{FaultProxy, Faults};
use embedded_redis::EmbeddedRedis;

const TIMEOUT: Duration = Duration::from_millis(200);

async fn proxy_to(server: &EmbeddedRedis) -> FaultProxy {
    FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .await
        .unwrap()
}

/// A cache of items whose commands go through `port` (a proxy or the
/// server itself), with a 200 ms command timeout.
fn cache_on(port: u16, options: Options) -> CacheAside<Item> {
    CacheAside::builder(
        Redis::open(&format!("redis://127.0.0.1:{port}/")).unwrap(),
        KeySpace::new("cache:"),
    )
    .options(options)
    .versioned(Item::version)
    .timeout(TIMEOUT)
    .build()
    .unwrap()
}

fn down() -> Faults {
    Faults {
        down: true,
        ..Faults::default()
    }
}

fn breaker(failures: u32, open_for: Duration) -> Options {
    Options {
        breaker: Some(BreakerPolicy { failures, open_for }),
        ..Options::default()
    }
}

/// A loader for a database that is down.
fn failing() -> impl FnOnce() -> common::Load + Send + 'static {
    || -> common::Load { Box::pin(async { Err("the database is down".to_string()) }) }
}

/// Problem, then fix: with Redis unreachable every read falls back and
/// answers, but without a breaker each one tries Redis first; with one,
/// after three failures in a row commands are not sent at all.
#[tokio::test]
async fn an_open_breaker_sends_nothing_and_every_read_still_answers() {
    let server = redis_server();
    let proxy = proxy_to(&server).await;
    let db = Db::new(Duration::ZERO);
    let items = cache_on(proxy.port(), breaker(3, Duration::from_secs(60)));
    items.get_or_load("item:1", db.loader(1)).await.unwrap();
    proxy.set(down());

    let recorder = Recorder::default();
    for _ in 0..6 {
        let answer = items
            .get_or_load_with("item:1", items.options(), &recorder, db.loader(1))
            .await
            .unwrap();
        assert_eq!(answer.source, Source::Fallback);
        assert_eq!(answer.value.unwrap().name, "item 1", "the database answers");
    }
    let tried = recorder
        .seen()
        .iter()
        .filter(|s| s.kind == StepKind::Lookup)
        .count();
    assert_eq!(tried, 3, "three lookups failed, then none was sent");
    assert_eq!(recorder.count(StepKind::BreakerRefused), 3);
    assert_eq!(recorder.count(StepKind::BreakerOpened), 1);
    // Told right after the lookup that tripped it.
    let kinds = recorder.kinds();
    let opened = kinds.iter().position(|k| *k == StepKind::BreakerOpened).unwrap();
    assert_eq!(kinds[opened - 1], StepKind::Lookup, "{kinds:?}");
    assert_eq!(items.breaker_state(), BreakerState::Open);
    assert_eq!(db.loads(), 1 + 6);

    // The same outage without a breaker: every read tries Redis.
    let plain = cache_on(proxy.port(), Options::default());
    let recorder = Recorder::default();
    for _ in 0..6 {
        let answer = plain
            .get_or_load_with("item:1", plain.options(), &recorder, db.loader(1))
            .await
            .unwrap();
        assert_eq!(answer.source, Source::Fallback);
    }
    let tried = recorder
        .seen()
        .iter()
        .filter(|s| s.kind == StepKind::Lookup)
        .count();
    assert_eq!(tried, 6);
    assert_eq!(recorder.count(StepKind::BreakerRefused), 0);
}

/// Half-open: once `open_for` has passed, one read probes; Redis answers,
/// the breaker closes, and the entry cached before the outage is a hit
/// again.
#[tokio::test]
async fn a_probe_that_finds_redis_back_closes_the_breaker() {
    let server = redis_server();
    let proxy = proxy_to(&server).await;
    let db = Db::new(Duration::ZERO);
    let open_for = Duration::from_millis(50);
    let items = cache_on(proxy.port(), breaker(2, open_for));
    items.get_or_load("item:1", db.loader(1)).await.unwrap();
    proxy.set(down());
    for _ in 0..2 {
        items.get_or_load("item:1", db.loader(1)).await.unwrap();
    }
    assert_eq!(items.breaker_opened(), 1);
    proxy.set(Faults::default());
    // The breaker's own clock is what is tested: let its time run out.
    tokio::time::sleep(open_for).await;
    assert_eq!(items.breaker_state(), BreakerState::HalfOpen);

    let recorder = Recorder::default();
    let answer = items
        .get_or_load_with("item:1", items.options(), &recorder, db.loader(1))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Redis, "{:?}", recorder.kinds());
    assert_eq!(recorder.count(StepKind::BreakerClosed), 1);
    assert_eq!(items.breaker_state(), BreakerState::Closed);
}

/// An error reply from a healthy Redis (here `WRONGTYPE`) is not an outage:
/// it never opens the breaker.
#[tokio::test]
async fn error_replies_do_not_open_the_breaker() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache_on(server.port(), breaker(1, Duration::from_secs(60)));
    let _: () = redis::cmd("LPUSH")
        .arg("cache:item:1")
        .arg("a list, not a string")
        .query(&mut raw(&server))
        .unwrap();
    for _ in 0..3 {
        let answer = items.get_or_load("item:1", db.loader(1)).await.unwrap();
        assert_eq!(answer.source, Source::Fallback);
    }
    assert_eq!(items.breaker_state(), BreakerState::Closed);
    assert_eq!(items.breaker_opened(), 0);
}

/// A hung Redis (`SIGSTOP`: it accepts and never answers) is worse than a
/// dead one: without a breaker every read waits the full command timeout.
/// With one, the first failures time out, then reads skip Redis. Every read
/// answers either way (each is bounded here, to fail rather than hang).
#[tokio::test]
async fn a_hung_redis_costs_timeouts_until_the_breaker_opens() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let plain = cache_on(server.port(), Options::default());
    let guarded = cache_on(server.port(), breaker(2, Duration::from_secs(60)));
    plain.get_or_load("item:1", db.loader(1)).await.unwrap();
    guarded.get_or_load("item:1", db.loader(1)).await.unwrap();
    let pid = server.pid().unwrap().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");

    let without = Recorder::default();
    let with = Recorder::default();
    for _ in 0..4 {
        assert_eq!(bounded_read(&plain, &without, &db).await, Source::Fallback);
        assert_eq!(bounded_read(&guarded, &with, &db).await, Source::Fallback);
    }
    signal("-CONT");

    let timeouts = |recorder: &Recorder| {
        recorder
            .seen()
            .iter()
            .filter(|s| s.kind == StepKind::Lookup && s.reply.contains("timed out after 200 ms"))
            .count()
    };
    assert_eq!(timeouts(&without), 4, "every read waited out the timeout");
    assert_eq!(timeouts(&with), 2, "two timed out, then the breaker opened");
    assert_eq!(with.count(StepKind::BreakerRefused), 2);
}

/// A read of item 1 that must answer within 10 s; where the answer came
/// from.
async fn bounded_read(items: &CacheAside<Item>, recorder: &Recorder, db: &Db) -> Source {
    let read = items.get_or_load_with("item:1", items.options(), recorder, db.loader(1));
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read answers, it does not hang")
        .unwrap()
        .source
}

/// Fail-safe: the database fails, and the entry is past its fresh time but
/// within the fail-safe window: the old value answers, marked, and nothing
/// is stored. Without fail-safe, or past the window, the read fails.
#[tokio::test]
async fn fail_safe_serves_an_expired_value_when_the_database_fails() {
    let server = redis_server();
    let items = cache_on(server.port(), Options::default());
    let item = Item {
        id: 1,
        name: "item 1".into(),
        version: 1,
    };
    common::put_stale(&server, "cache:item:1", &item, Duration::from_secs(60));
    let before = get(&mut raw(&server), "cache:item:1");

    let fail_safe = Options {
        fail_safe: Some(Duration::from_secs(60)),
        ..Options::default()
    };
    let recorder = Recorder::default();
    let answer = items
        .get_or_load_with("item:1", &fail_safe, &recorder, failing())
        .await
        .unwrap();
    assert_eq!(answer.source, Source::FailSafe);
    assert_eq!(answer.value, Some(item.clone()));
    let lookup = recorder.seen().into_iter().find(|s| s.kind == StepKind::Lookup);
    assert_eq!(
        lookup.map(|s| s.status),
        Some(Status::Miss),
        "an entry kept for fail-safe only is no hit: the loader was asked first"
    );
    assert_eq!(recorder.count(StepKind::FailSafe), 1);
    assert_eq!(recorder.count(StepKind::Store), 0);
    assert_eq!(get(&mut raw(&server), "cache:item:1"), before, "nothing stored");

    // Problem first: without fail-safe an entry lives in Redis no longer
    // than its fresh time, so it is gone and the database's error is the
    // answer.
    let _: () = redis::cmd("DEL")
        .arg("cache:item:1")
        .query(&mut raw(&server))
        .unwrap();
    let error = items
        .get_or_load_with("item:1", &Options::default(), &Recorder::default(), failing())
        .await
        .unwrap_err();
    assert_eq!(error, "the database is down");

    // Past the window (a 1 ms window ended as soon as the entry expired).
    common::put_stale(&server, "cache:item:1", &item, Duration::from_secs(60));
    let short = Options {
        fail_safe: Some(Duration::from_millis(1)),
        ..Options::default()
    };
    assert!(items
        .get_or_load_with("item:1", &short, &Recorder::default(), failing())
        .await
        .is_err());
}

/// A database error is never cached, and with fail-safe on a value lives
/// in Redis for its TTL plus the window.
#[tokio::test]
async fn database_errors_are_never_cached_and_fail_safe_keeps_values_longer() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let options = Options {
        ttl: Duration::from_secs(10),
        fail_safe: Some(Duration::from_secs(60)),
        ..Options::default()
    };
    let items = cache_on(server.port(), options);
    assert!(items.get_or_load("item:2", failing()).await.is_err());
    let mut redis = raw(&server);
    assert_eq!(get(&mut redis, "cache:item:2"), None, "the error was not stored");

    items.get_or_load("item:2", db.loader(2)).await.unwrap();
    let ttl = common::pttl(&mut redis, "cache:item:2");
    assert!(
        ttl > 10_000 && ttl <= 70_000,
        "TTL plus the fail-safe window: {ttl}"
    );
}

/// Problem first: a write whose `DEL` cannot reach Redis leaves the old
/// copy in Redis for when it returns. With retries, the invalidation is
/// kept and delivered once Redis is back, and meanwhile this process does
/// not read the key from Redis.
#[tokio::test]
async fn a_failed_invalidation_is_delivered_when_redis_returns() {
    let server = redis_server();
    let proxy = proxy_to(&server).await;
    let db = Db::new(Duration::ZERO);
    let mut redis = raw(&server);

    for retry in [false, true] {
        let options = Options {
            retry_invalidations: retry,
            ..Options::default()
        };
        let items = cache_on(proxy.port(), options);
        items.get_or_load("item:1", db.loader(1)).await.unwrap();
        proxy.set(down());
        let renamed = db.rename(1, &format!("renamed, retry {retry}"));
        let written = items
            .after_write("item:1", Change::Updated(&renamed), WritePolicy::Invalidate)
            .await;
        // While Redis is away, the database answers, with the new name.
        let during = items.get_or_load("item:1", db.loader(1)).await.unwrap();
        assert_eq!(during.source, Source::Fallback);
        assert_eq!(during.value.unwrap().name, renamed.name);
        proxy.set(Faults::default());

        if retry {
            assert!(matches!(written.effect, Effect::Pending(_)), "{written:?}");
            // The first read after the outage delivers it if the retry has
            // not yet: never the old copy.
            let after = items.get_or_load("item:1", db.loader(1)).await.unwrap();
            assert_eq!(after.value.unwrap().name, renamed.name);
            assert!(items.invalidations_delivered(Duration::from_secs(10)).await);
            assert_eq!(items.pending_invalidations(), 0);
        } else {
            assert!(matches!(written.effect, Effect::Failed(_)), "{written:?}");
            assert_eq!(items.pending_invalidations(), 0);
            let stale = get(&mut redis, "cache:item:1").unwrap();
            assert!(
                !stale.contains("renamed"),
                "the old copy outlived the outage: {stale}"
            );
            let after = items.get_or_load("item:1", db.loader(1)).await.unwrap();
            assert_eq!(after.source, Source::Redis);
            assert_ne!(after.value.unwrap().name, renamed.name, "served stale");
            let _: () = redis::cmd("DEL").arg("cache:item:1").query(&mut redis).unwrap();
        }
    }
}

/// Under the version guard, a retried invalidation keeps the write's fence.
/// Another process's reader loads the old row before the write and stores
/// it only after the retry has landed (held at its store by a gate). Had
/// the retry been a bare `DEL`, that old row would be cached for its TTL;
/// the retried marker refuses it.
#[tokio::test]
async fn a_retried_invalidation_keeps_the_version_guards_fence() {
    let server = redis_server();
    let proxy = proxy_to(&server).await;
    let db = Db::new(Duration::ZERO);
    let guarded = Options {
        race_guard: RaceGuard::Version,
        retry_invalidations: true,
        ..Options::default()
    };
    let writer = cache_on(proxy.port(), guarded.clone());
    // The reader is another process, with a path to Redis of its own.
    let other = common::cache(&server, guarded);
    writer.get_or_load("item:2", db.loader(2)).await.unwrap();

    let gate = Gate::before(StepKind::Store);
    let reader = {
        let (other, gate, loader) = (other.clone(), gate.clone(), db.loader(1));
        tokio::spawn(async move {
            let options = other.options().clone();
            other.get_or_load_with("item:1", &options, &*gate, loader).await
        })
    };
    within(&gate.reached, "the reader holding the old row").await;

    proxy.set(down());
    let renamed = db.rename(1, "renamed during the outage");
    let written = writer
        .after_write("item:1", Change::Updated(&renamed), WritePolicy::Invalidate)
        .await;
    assert!(matches!(written.effect, Effect::Pending(_)), "{written:?}");
    proxy.set(Faults::default());
    assert!(writer.invalidations_delivered(Duration::from_secs(10)).await);
    let mut redis = raw(&server);
    let fence = get(&mut redis, "cache:item:1").expect("the retry left a marker");
    assert!(fence.starts_with("ca1 i 2 "), "{fence}");

    gate.open();
    let late = reader.await.unwrap().unwrap();
    assert_eq!(late.value.unwrap().name, "item 1", "it loaded before the write");
    let cached = get(&mut redis, "cache:item:1").unwrap();
    assert!(cached.starts_with("ca1 i 2 "), "the old row got in: {cached}");
    let next = other.get_or_load("item:1", db.loader(1)).await.unwrap();
    assert_eq!(next.value.unwrap(), renamed);
}

/// When Redis refuses a write's command (over `maxmemory`, it refuses the
/// new value and the marker alike), the write reports Redis's own error,
/// and the invalidation is kept: the retry's `DEL` is what Redis takes
/// even then, so the old copy goes. With the version guard, the marker is
/// tried first and, refused, given up for the `DEL`.
#[tokio::test]
async fn a_write_redis_refuses_reports_its_error_and_the_old_copy_still_goes() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let mut redis = raw(&server);
    // Refused, not evicted: the old copy stays until something deletes it.
    config_set(&mut redis, "maxmemory-policy", "noeviction");
    let cases = [
        (RaceGuard::None, WritePolicy::WriteThrough),
        (RaceGuard::Version, WritePolicy::Invalidate),
        (RaceGuard::Version, WritePolicy::WriteThrough),
    ];
    for (round, (guard, policy)) in cases.into_iter().enumerate() {
        let items = common::cache(
            &server,
            Options {
                race_guard: guard.clone(),
                retry_invalidations: true,
                ..Options::default()
            },
        );
        let id = round as u64 + 1;
        let key = format!("item:{id}");
        items.get_or_load(&key, db.loader(id)).await.unwrap();
        config_set(&mut redis, "maxmemory", "1");
        let renamed = db.rename(id, "renamed over maxmemory");
        let written = items.after_write(&key, Change::Updated(&renamed), policy).await;
        let outcome = format!("{guard:?} {policy:?}: {written:?}");
        match written.effect {
            Effect::Pending(cache_aside::RedisError::Replied(error)) => {
                assert!(error.contains("OOM"), "{outcome}")
            }
            _ => panic!("{outcome}"),
        }
        assert!(
            items.invalidations_delivered(Duration::from_secs(10)).await,
            "{outcome}"
        );
        assert_eq!(get(&mut redis, &format!("cache:{key}")), None, "{outcome}");
        config_set(&mut redis, "maxmemory", "0");
        let next = items.get_or_load(&key, db.loader(id)).await.unwrap();
        assert_eq!(next.value.unwrap(), renamed, "{outcome}");
    }
}

/// A delete Redis refused is owed; the record is made again and that write
/// goes through. The older debt, the delete's marker, must not be paid
/// after it (it would fence off the record made again, or answer "does
/// not exist" for it): the write that succeeded owes in its place.
#[tokio::test]
async fn a_write_that_succeeds_after_a_failed_one_is_not_undone_by_its_retry() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let mut redis = raw(&server);
    config_set(&mut redis, "maxmemory-policy", "noeviction");
    let items = common::cache(
        &server,
        Options {
            race_guard: RaceGuard::Version,
            retry_invalidations: true,
            ..Options::default()
        },
    );
    items.get_or_load("item:3", db.loader(3)).await.unwrap();

    config_set(&mut redis, "maxmemory", "1");
    db.delete(3);
    let deleted = items
        .after_write("item:3", Change::Deleted, WritePolicy::Invalidate)
        .await;
    assert!(matches!(deleted.effect, Effect::Pending(_)), "{deleted:?}");
    config_set(&mut redis, "maxmemory", "0");
    // At once, before the retry's first round (100 ms on), so that the
    // older debt is still owed (had the retry come first, this write would
    // land after it, and be right either way).
    let again = db.insert(3, "made again", 2);
    let written = items
        .after_write("item:3", Change::Updated(&again), WritePolicy::Invalidate)
        .await;
    assert_eq!(written.effect, Effect::Marked { version: 2 });

    assert!(items.invalidations_delivered(Duration::from_secs(10)).await);
    let read = items.get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!(read.value, Some(again));
    let cached = get(&mut redis, "cache:item:3").unwrap();
    assert!(cached.starts_with("ca1 v 2 "), "cached again: {cached}");
}

/// Waits (at most 10 s, looking every 2 ms) until `done` holds: the
/// proxy's counters move on its own tasks, with nothing to await.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One round of the failures lesson's last step, at the engine: item 1
/// cached, Redis made unreachable, item 1 renamed (its delete kept), the
/// client left holding a connection made while Redis was away, Redis back,
/// then the first read, observed by `recorder`.
async fn read_after_an_outage(
    proxy: &FaultProxy,
    items: &CacheAside<Item>,
    db: &Db,
    recorder: &Recorder,
    round: usize,
) -> (cache_aside::Answer<Item>, Item) {
    items.get_or_load("item:1", db.loader(1)).await.unwrap();
    proxy.set(down());
    let before = proxy.accepted();
    let renamed = db.rename(1, &format!("renamed in round {round}"));
    let written = items
        .after_write("item:1", Change::Updated(&renamed), WritePolicy::Invalidate)
        .await;
    assert!(matches!(written.effect, Effect::Pending(_)), "{written:?}");
    // The write's failed `DEL` made the client connect again; when it was
    // sent once more, that try failed and made it connect once more. Back
    // up only once the last of those connections is made (and dropped).
    let tries = if items.options().resend_dropped { 2 } else { 1 };
    // Each try is a connection the proxy accepts, then drops at once.
    until("the client's reconnection while Redis was away", || {
        proxy.accepted() >= before + tries
    })
    .await;
    proxy.set(Faults::default());
    let after = items
        .get_or_load_with("item:1", items.options(), recorder, db.loader(1))
        .await
        .unwrap();
    (after, renamed)
}

/// Problem first: the first command after an outage finds the connection
/// made while Redis was away dead, and fails (once that connection is
/// made, as `read_after_an_outage` waits for). Here that command
/// is the read's owed `DEL`: the read falls back, and the old copy stays in
/// Redis until the background retry. With `resend_dropped`, a command that
/// may safely go twice (here `GET` and `DEL`) goes again on a new
/// connection, so every first read reaches Redis: it delivers the owed
/// delete, misses and loads the new row, and leaves no old copy behind
/// (the failures lesson's last step).
#[tokio::test]
async fn the_first_read_after_an_outage_reaches_redis_when_resent() {
    let server = redis_server();
    let proxy = proxy_to(&server).await;
    let db = Db::new(Duration::ZERO);
    let mut redis = raw(&server);

    // Without: the first read after the outage finds the connection made
    // during it dead and falls back (in almost every round: the client may
    // have replaced that connection by itself first; the cut test below
    // shows it for certain).
    let options = Options {
        retry_invalidations: true,
        ..Options::default()
    };
    let items = cache_on(proxy.port(), options.clone());
    let mut fell_back = 0;
    for round in 0..10 {
        let recorder = Recorder::default();
        let (after, renamed) = read_after_an_outage(&proxy, &items, &db, &recorder, round).await;
        fell_back += usize::from(after.source == Source::Fallback);
        assert_eq!(after.value.unwrap().name, renamed.name, "never the old copy");
        assert_eq!(recorder.count(StepKind::Resent), 0);
        assert!(items.invalidations_delivered(Duration::from_secs(10)).await);
    }
    assert!(fell_back > 0, "no first read after an outage fell back");
    assert!(items.invalidations_delivered(Duration::from_secs(10)).await);
    drop(items);

    let items = cache_on(
        proxy.port(),
        Options {
            resend_dropped: true,
            ..options
        },
    );
    let mut resent = 0;
    for round in 0..10 {
        let recorder = Recorder::default();
        let (after, renamed) = read_after_an_outage(&proxy, &items, &db, &recorder, round).await;
        assert_eq!(after.source, Source::Loaded, "round {round}: {after:?}");
        assert_eq!(after.value.unwrap().name, renamed.name);
        assert_eq!(items.pending_invalidations(), 0, "round {round}");
        let cached = get(&mut redis, "cache:item:1").unwrap();
        assert!(cached.contains(&renamed.name), "round {round}: {cached}");
        resent += recorder.count(StepKind::Resent);
    }
    // Every round reached Redis, though most found their connection dead.
    assert!(resent > 0, "no first read found its connection dead");
}

/// The same, made certain with a cut: a cut connection stays in the
/// client until a command finds it dead. Without resending, the next
/// read's `GET` fails and the read falls back; with it, the `GET` goes
/// again on a new connection and hits. Five rounds each.
#[tokio::test]
async fn a_read_after_a_cut_falls_back_unless_resent() {
    let server = redis_server();
    let proxy = proxy_to(&server).await;
    let db = Db::new(Duration::ZERO);
    for resend in [false, true] {
        let options = Options {
            resend_dropped: resend,
            ..Options::default()
        };
        let items = cache_on(proxy.port(), options);
        items.get_or_load("item:1", db.loader(1)).await.unwrap();
        for round in 0..5 {
            // A hit on a live connection, then that connection cut.
            let hit = items.get_or_load("item:1", db.loader(1)).await.unwrap();
            assert_eq!(hit.source, Source::Redis, "resend {resend}, round {round}");
            // Returns once the cut connection has ended.
            proxy.cut().await;
            let recorder = Recorder::default();
            let after = items
                .get_or_load_with("item:1", items.options(), &recorder, db.loader(1))
                .await
                .unwrap();
            let context = format!("resend {resend}, round {round}: {:?}", recorder.seen());
            if resend {
                assert_eq!(after.source, Source::Redis, "{context}");
                assert_eq!(recorder.count(StepKind::Resent), 1, "{context}");
            } else {
                assert_eq!(after.source, Source::Fallback, "{context}");
                assert_eq!(recorder.count(StepKind::Resent), 0, "{context}");
            }
        }
    }
}

/// A cache with retried invalidations behind a proxy, items `1..=n`
/// cached, then Redis made unreachable and each item renamed: `n` deletes
/// owed.
async fn owing(server: &EmbeddedRedis, n: u64) -> (FaultProxy, CacheAside<Item>) {
    let proxy = proxy_to(server).await;
    let db = Db::new(Duration::ZERO);
    let options = Options {
        retry_invalidations: true,
        ..Options::default()
    };
    let items = cache_on(proxy.port(), options);
    for id in 1..=n {
        items
            .get_or_load(&format!("item:{id}"), db.loader(id))
            .await
            .unwrap();
    }
    proxy.set(down());
    for id in 1..=n {
        let renamed = db.rename(id, "new");
        items
            .after_write(
                &format!("item:{id}"),
                Change::Updated(&renamed),
                WritePolicy::Invalidate,
            )
            .await;
    }
    assert_eq!(items.pending_invalidations(), n as usize);
    (proxy, items)
}

/// The retry runs on its own: with nobody reading, the pending `DEL`
/// reaches Redis once it is reachable, and the old copy is gone.
#[tokio::test]
async fn pending_invalidations_are_retried_in_the_background() {
    let server = redis_server();
    let (proxy, items) = owing(&server, 3).await;
    assert!(
        !items.invalidations_delivered(Duration::from_millis(300)).await,
        "nothing is delivered while Redis is away"
    );
    proxy.set(Faults::default());
    assert!(items.invalidations_delivered(Duration::from_secs(10)).await);
    let mut redis = raw(&server);
    for id in 1..=3 {
        assert_eq!(get(&mut redis, &format!("cache:item:{id}")), None);
    }
    assert_eq!(items.retried_invalidations(), (3, 0));
}

/// A handle dropped while its deletes are still owed (a sandbox reaped
/// with Redis down) leaves no task behind: the retries end with it.
#[tokio::test]
async fn retries_end_with_the_cache_handle() {
    let server = redis_server();
    let (proxy, items) = owing(&server, 1).await;
    // First the retries are seen running (each round connects through the
    // proxy), so the silence below is the handle's doing.
    let before = proxy.accepted();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proxy.accepted() < before + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry round within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted = proxy.accepted();
    drop(items);
    // Long enough for several rounds had the task lived on (each round
    // connects through the proxy).
    tokio::time::sleep(cache_aside::retry::LONGEST_BACKOFF * 3).await;
    assert!(
        proxy.accepted() <= accepted + 1,
        "no retry after the handle went: {} connections",
        proxy.accepted() - accepted
    );
}
