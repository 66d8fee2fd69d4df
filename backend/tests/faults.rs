//! The fault lab (tutorial sections 4.2, 4.5, 6.3 and 7): Redis stopped,
//! hung and brought back for one sandbox through the fault proxy, a failing
//! database, and what the application does: falls back, opens its circuit
//! breaker, serves fail-safe values, retries invalidations. Problem first:
//! each defence is also seen switched off.

mod common;

use std::time::Duration;

use backend::error::OpError;
use backend::store::StoreError;
use cache_aside::{Content, Encoding, Envelope};
use redis::Commands;
use shared::{FaultAction, Kind, Origin, Outcome, Product, Record, SandboxId, SandboxSettings, WriteChange};

fn sandbox() -> SandboxId {
    SandboxId::default_sandbox()
}

fn settings(t: &common::TestBackend, change: impl FnOnce(&mut SandboxSettings)) {
    let sandbox = sandbox();
    let mut settings = t
        .backend
        .playground
        .sandbox(&sandbox)
        .unwrap()
        .config()
        .settings
        .clone();
    change(&mut settings);
    t.backend.playground.update_settings(&sandbox, settings).unwrap();
}

async fn fault(t: &common::TestBackend, action: FaultAction) -> shared::FaultReport {
    t.backend
        .playground
        .fault(&sandbox(), Some(action))
        .await
        .expect("the fault is applied")
}

async fn read(t: &common::TestBackend, kind: Kind, id: u64) -> Result<shared::ReadResult, OpError> {
    t.backend
        .playground
        .read(&sandbox(), kind, id, Origin::Rest)
        .await
}

async fn rename(t: &common::TestBackend, id: u64, name: &str) -> shared::WriteResult {
    t.backend
        .playground
        .write(
            &sandbox(),
            Kind::Users,
            id,
            WriteChange::Update { name: name.into() },
            Origin::Rest,
        )
        .await
        .expect("a write reaches the database whatever Redis does")
}

/// Waits until no instance owes Redis an invalidation (each waits at most
/// 10 s).
async fn invalidations_delivered(t: &common::TestBackend) {
    let fleet = t.backend.playground.sandbox(&sandbox()).unwrap().fleet();
    for instance in &fleet.instances {
        assert!(
            instance
                .cache
                .invalidations_delivered(Duration::from_secs(10))
                .await,
            "instance {} delivered its invalidations",
            instance.name
        );
    }
}

async fn stale_keys(t: &common::TestBackend) -> usize {
    t.backend
        .playground
        .check_divergence(&sandbox())
        .await
        .unwrap()
        .stale()
}

/// The issue's outage under steady load: 200 requests a second (reads of
/// 20 users, one write in ten), Redis stopped for a stretch and started
/// again with its data. No read fails, every read during the outage is
/// answered by the database, hits come back, and with retried
/// invalidations no key is left stale. Phases are counted in requests, so
/// the test does not depend on the machine's speed.
#[tokio::test]
async fn an_outage_under_steady_load_fails_no_read_and_leaves_nothing_stale() {
    let t = common::start(|_| {});
    settings(&t, |s| {
        s.breaker = true;
        s.retry_invalidations = true;
    });
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    let mut n = 0u64;
    let mut request = async |t: &common::TestBackend| {
        pace.tick().await;
        n += 1;
        // Reads go round the 20 users; writes too, a user each time.
        let id = if n % 10 == 0 {
            1 + (n / 10) % 20
        } else {
            1 + n % 20
        };
        if n % 10 == 0 {
            rename(t, id, &format!("User {id}, write {n}")).await;
            None
        } else {
            Some(read(t, Kind::Users, id).await.expect("no read fails").outcome)
        }
    };
    for _ in 0..400 {
        request(&t).await;
    }
    fault(&t, FaultAction::StopRedis).await;
    let mut during = Vec::new();
    for _ in 0..400 {
        during.extend(request(&t).await);
    }
    let report = fault(&t, FaultAction::StartRedis { empty: false }).await;
    assert!(!report.redis.down);
    assert!(
        during.iter().all(|o| *o == Outcome::Fallback),
        "every read during the outage was answered by the database: {during:?}"
    );
    let opened: u64 = report.breakers.iter().map(|b| b.opened).sum();
    assert!(opened >= 1, "the breakers opened: {report:?}");
    assert!(report.pending() > 0, "writes during the outage owe invalidations");

    // Hits come back (each instance's breaker probes after its 2 s), within
    // a bounded number of requests.
    let mut hits = 0;
    for _ in 0..2_000 {
        if request(&t).await == Some(Outcome::Hit) {
            hits += 1;
            if hits == 30 {
                break;
            }
        }
    }
    assert_eq!(hits, 30, "the cache answers again after the outage");
    invalidations_delivered(&t).await;
    assert_eq!(stale_keys(&t).await, 0, "no stale key outlived the outage");
    let report = t.backend.playground.fault(&sandbox(), None).await.unwrap();
    assert!(report.retried > 0, "{report:?}");
    let texts: Vec<&str> = report.events.iter().map(|e| e.text.as_str()).collect();
    assert!(texts.contains(&"Redis stopped"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("circuit breaker opened")),
        "{texts:?}"
    );
}

/// Problem first: without retries, a write made while Redis was away
/// leaves the old copy in Redis once it returns.
#[tokio::test]
async fn without_retries_a_write_during_the_outage_leaves_a_stale_key() {
    let t = common::start(|_| {});
    read(&t, Kind::Users, 1).await.unwrap();
    fault(&t, FaultAction::StopRedis).await;
    let written = rename(&t, 1, "Changed While Redis Was Away").await;
    assert!(
        matches!(written.cache, shared::CacheEffect::Failed { .. }),
        "{:?}",
        written.cache
    );
    fault(&t, FaultAction::StartRedis { empty: false }).await;
    assert_eq!(stale_keys(&t).await, 1);
    let served = read(&t, Kind::Users, 1).await.unwrap();
    assert_eq!(served.outcome, Outcome::Hit);
    assert_ne!(served.record.unwrap().title(), "Changed While Redis Was Away");

    // The same with retries: the delete is kept and delivered.
    settings(&t, |s| s.retry_invalidations = true);
    read(&t, Kind::Users, 2).await.unwrap();
    fault(&t, FaultAction::StopRedis).await;
    let written = rename(&t, 2, "Changed And Delivered").await;
    assert!(
        matches!(written.cache, shared::CacheEffect::Pending { .. }),
        "{:?}",
        written.cache
    );
    fault(&t, FaultAction::StartRedis { empty: false }).await;
    invalidations_delivered(&t).await;
    let _: () = t.redis().del("cache:default:user:1").unwrap();
    assert_eq!(stale_keys(&t).await, 0);
}

/// Once Redis is started again, the first read on the instance that wrote
/// during the outage delivers the delete it owed and loads the new row:
/// the contract the failures lesson's last step teaches (it checks the
/// cache right after that read), five times over. Like the lesson, with
/// commands that find their connection dead sent again (without, that
/// read may find the connection made during the outage dead, and fall
/// back: `cache-aside`'s test of `resend_dropped` shows it).
#[tokio::test]
async fn the_first_read_after_redis_starts_again_reaches_it() {
    use backend::playground::{ReadOptions, WriteOptions};
    let t = common::start(|_| {});
    settings(&t, |s| {
        s.retry_invalidations = true;
        s.resend_dropped = true;
    });
    let on_a = || Some("A".to_string());
    let sandbox = sandbox();
    for round in 0..5 {
        let id = 10 + round;
        let read_on_a = || {
            t.backend.playground.read_with(
                &sandbox,
                Kind::Users,
                id,
                Origin::Rest,
                ReadOptions {
                    instance: on_a(),
                    ..ReadOptions::default()
                },
            )
        };
        read_on_a().await.unwrap();
        fault(&t, FaultAction::StopRedis).await;
        assert_eq!(
            read_on_a().await.unwrap().outcome,
            Outcome::Fallback,
            "round {round}"
        );
        let written = t
            .backend
            .playground
            .write_with(
                &sandbox,
                Kind::Users,
                id,
                WriteChange::Update {
                    name: "Renamed In The Outage".into(),
                },
                Origin::Rest,
                WriteOptions {
                    instance: on_a(),
                    ..WriteOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(written.cache, shared::CacheEffect::Pending { .. }),
            "round {round}: {:?}",
            written.cache
        );
        fault(&t, FaultAction::StartRedis { empty: false }).await;
        let after = read_on_a().await.unwrap();
        assert_eq!(
            after.outcome,
            Outcome::Miss,
            "round {round}: the owed delete went first"
        );
        assert_eq!(after.record.unwrap().title(), "Renamed In The Outage");
        assert_eq!(stale_keys(&t).await, 0, "round {round}");
    }
}

/// The naive application (fallback off): Redis down, the request fails
/// with a 503-worthy error and the database is not asked; with the
/// fallback on, the database answers.
#[tokio::test]
async fn a_naive_application_fails_while_redis_is_down() {
    let t = common::start(|_| {});
    settings(&t, |s| s.fallback = false);
    fault(&t, FaultAction::StopRedis).await;
    let queries = t.database_queries();
    let mut feed = t.backend.playground.subscribe(&sandbox()).unwrap();
    let error = read(&t, Kind::Users, 3).await.unwrap_err();
    assert!(
        matches!(error, OpError::Database(StoreError::NoFallback(_))),
        "{error:?}"
    );
    assert_eq!(t.database_queries(), queries, "the database was not asked");
    let trace = common::traces_of(&mut feed, 1).await.remove(0);
    assert_eq!(trace.outcome, Outcome::Failed);
    assert_eq!(common::nodes(&trace), ["request", "check_cache", "cache_error"]);

    settings(&t, |s| s.fallback = true);
    let answered = read(&t, Kind::Users, 3).await.unwrap();
    assert_eq!(answered.outcome, Outcome::Fallback);
}

/// An open breaker skips Redis: the read's trace goes from the request to
/// the breaker and the fallback, with no Redis command.
#[tokio::test]
async fn an_open_breaker_is_drawn_on_the_diagram() {
    let t = common::start(|_| {});
    settings(&t, |s| s.breaker = true);
    fault(&t, FaultAction::StopRedis).await;
    // Five outages in a row open a breaker; each instance has its own.
    for _ in 0..15 {
        read(&t, Kind::Users, 4).await.unwrap();
    }
    let report = t.backend.playground.fault(&sandbox(), None).await.unwrap();
    assert!(report.breakers.iter().all(|b| b.opened >= 1), "{report:?}");
    // The next reads skip Redis (a breaker whose two seconds ran out on a
    // slow machine lets one probe through first, which fails and opens it
    // again): one of the next few is drawn through the breaker.
    let mut feed = t.backend.playground.subscribe(&sandbox()).unwrap();
    let mut drawn = Vec::new();
    for _ in 0..6 {
        let answered = read(&t, Kind::Users, 4).await.unwrap();
        assert_eq!(answered.outcome, Outcome::Fallback);
        let trace = common::traces_of(&mut feed, 1).await.remove(0);
        drawn.push(common::nodes(&trace).join(" "));
    }
    assert!(
        drawn.contains(&"request breaker cache_error query_database return_loaded".to_string()),
        "{drawn:?}"
    );
}

/// Puts an entry for product `id` whose fresh time ended a moment ago and
/// which Redis keeps for a minute: an expired value fail-safe may serve.
fn put_expired(t: &common::TestBackend, product: &Product) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let envelope = Envelope {
        content: Content::Value(Record::Product(product.clone())),
        version: product.version,
        fresh_until_ms: now_ms - 1,
        load_ms: 1,
    };
    let _: () = t
        .redis()
        .set_ex(
            format!("cache:default:product:{}", product.id),
            envelope.encode(Encoding::Json).unwrap(),
            60,
        )
        .unwrap();
}

/// Fail-safe: the database fails every query; an expired product is served
/// (marked fail-safe) while one never cached fails with a clear error and
/// is not cached; without fail-safe Redis keeps no expired copy to serve.
#[tokio::test]
async fn fail_safe_serves_an_expired_value_while_the_database_fails() {
    let t = common::start(|_| {});
    settings(&t, |s| {
        s.db_error_percent = 100;
        s.fail_safe_secs = 300;
    });
    let product = backend::store::seed::product(5);
    put_expired(&t, &product);
    let mut feed = t.backend.playground.subscribe(&sandbox()).unwrap();
    let served = read(&t, Kind::Products, 5).await.unwrap();
    assert_eq!(served.outcome, Outcome::FailSafe);
    assert_eq!(served.record, Some(Record::Product(product.clone())));
    let trace = common::traces_of(&mut feed, 1).await.remove(0);
    assert_eq!(
        common::nodes(&trace),
        [
            "request",
            "check_cache",
            "query_database",
            "check_cache",
            "return_cached"
        ]
    );

    let error = read(&t, Kind::Products, 6).await.unwrap_err();
    assert!(
        matches!(error, OpError::Database(StoreError::Injected { percent: 100 })),
        "{error:?}"
    );
    let cached: bool = t.redis().exists("cache:default:product:6").unwrap();
    assert!(!cached, "a database error is never cached");

    // What keeps an expired copy at hand is its TTL in Redis: with
    // fail-safe, the fresh time plus the fail-safe window; without, the
    // fresh time alone, so Redis drops the copy as it expires and a failing
    // database has nothing to fall back on.
    settings(&t, |s| {
        s.db_error_percent = 0;
        s.cache_ttl_secs = 60;
        s.ttl_jitter_percent = 0;
    });
    read(&t, Kind::Products, 8).await.unwrap();
    settings(&t, |s| s.fail_safe_secs = 0);
    read(&t, Kind::Products, 9).await.unwrap();
    let kept_ms = |id: u64| {
        t.redis()
            .pttl::<_, i64>(format!("cache:default:product:{id}"))
            .unwrap()
    };
    assert!(
        kept_ms(8) > 300_000,
        "fresh 60 s + fail-safe 300 s: {}",
        kept_ms(8)
    );
    assert!(
        (1..=60_000).contains(&kept_ms(9)),
        "no fail-safe: the fresh 60 s only, {}",
        kept_ms(9)
    );
}

/// The wrong order (section 4.2): the copy deleted before the database
/// write; a read in between caches the old row, stale until its TTL.
#[tokio::test]
async fn deleting_before_the_database_write_lets_a_reader_cache_the_old_row() {
    let t = common::start(|_| {});
    settings(&t, |s| {
        s.delete_first = true;
        s.db_latency_ms = 400;
    });
    read(&t, Kind::Users, 7).await.unwrap();
    // Keyspace events tell when the delete happened.
    let mut commands = t.redis();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Eg")
        .query(&mut commands)
        .unwrap();
    let mut subscriber = t.redis();
    let (subscribed, ready) = std::sync::mpsc::channel();
    let deleted = tokio::task::spawn_blocking(move || {
        let mut events = subscriber.as_pubsub();
        events.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        events.subscribe("__keyevent@0__:del").unwrap();
        subscribed.send(()).unwrap();
        loop {
            let event = events.get_message().expect("the delete happens within 10 s");
            if event
                .get_payload::<String>()
                .is_ok_and(|k| k == "cache:default:user:7")
            {
                return;
            }
        }
    });
    ready.recv().unwrap();
    let playground = t.backend.playground.clone();
    let write = tokio::spawn(async move {
        playground
            .write(
                &sandbox(),
                Kind::Users,
                7,
                WriteChange::Update {
                    name: "Written Late".into(),
                },
                Origin::Rest,
            )
            .await
    });
    deleted.await.unwrap();
    // The database write is still on its way: this read loads the old row.
    let between = read(&t, Kind::Users, 7).await.unwrap();
    assert_eq!(between.outcome, Outcome::Miss);
    assert_ne!(between.record.unwrap().title(), "Written Late");
    write.await.unwrap().unwrap();
    assert_eq!(stale_keys(&t).await, 1, "the old row is cached after the write");
}

/// Faults belong to one sandbox: another one, on the same Redis, never
/// notices. Bad input is refused with the field named.
#[tokio::test]
async fn a_fault_touches_one_sandbox_only_and_bad_input_is_refused() {
    let t = common::start(|_| {});
    t.read_in("neighbour", Kind::Users, 8).await;
    fault(&t, FaultAction::StopRedis).await;
    assert_eq!(read(&t, Kind::Users, 8).await.unwrap().outcome, Outcome::Fallback);
    assert_eq!(t.read_in("neighbour", Kind::Users, 8).await.outcome, Outcome::Hit);

    let served = common::serve(&t).await;
    let response = common::http(
        served.addr,
        "POST",
        "/api/v1/faults",
        &[],
        r#"{"fault": "slow_redis", "delay_ms": 99999}"#,
    )
    .await;
    assert_eq!(common::status_of(&response), 400, "{response}");
    assert!(response.contains("delay_ms"), "{response}");
    let response = common::http(
        served.addr,
        "POST",
        "/api/v1/faults",
        &[],
        r#"{"fault": "start_redis", "empty": true}"#,
    )
    .await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    assert!(response.contains(r#""down":false"#), "{response}");
    // Started empty: the sandbox's keys are gone, the neighbour's stay.
    let mine: bool = t.redis().exists("cache:default:user:8").unwrap();
    let theirs: bool = t.redis().exists("cache:neighbour:user:8").unwrap();
    assert!(!mine && theirs);
}

/// Slow and hung Redis: with a short command timeout every read still
/// answers (the fallback), and the breaker then spares the waiting.
#[tokio::test]
async fn a_hung_redis_costs_timeouts_until_the_breaker_opens() {
    let t = common::start(|c| c.redis_timeout_ms = 100);
    settings(&t, |s| s.breaker = true);
    read(&t, Kind::Users, 9).await.unwrap();
    fault(&t, FaultAction::HangRedis { hung: true }).await;
    for _ in 0..20 {
        let answered = tokio::time::timeout(Duration::from_secs(10), read(&t, Kind::Users, 9))
            .await
            .expect("a read answers, it does not hang")
            .unwrap();
        assert_eq!(answered.outcome, Outcome::Fallback);
    }
    let report = fault(&t, FaultAction::HangRedis { hung: false }).await;
    assert!(report.breakers.iter().all(|b| b.opened >= 1), "{report:?}");
}

/// Over the WebSocket, as the page does: a fault is answered with the
/// report (its request id echoed), and every watcher is told.
#[tokio::test]
async fn a_fault_over_the_websocket_is_answered_and_announced() {
    use futures_util::SinkExt;
    let t = common::start(|_| {});
    let served = common::serve(&t).await;
    let mut socket = common::connect(served.addr, "?sandbox=ws-faults").await;
    common::greeted(&mut socket).await;
    // After a reset every instance is subscribed: moving them onto the
    // proxy ends those subscriptions (which once deadlocked on the fleet).
    let sandbox = SandboxId::parse("ws-faults").unwrap();
    t.backend.playground.reset(&sandbox).await.unwrap();
    loop {
        if let shared::ServerMessage::Instances { instances } = common::receive(&mut socket).await {
            if instances.iter().all(|i| i.subscribed) {
                break;
            }
        }
    }
    let command = shared::ClientMessage::Fault {
        request_id: 7,
        action: Some(FaultAction::StopRedis),
    };
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            serde_json::to_string(&command).unwrap().into(),
        ))
        .await
        .unwrap();
    let (mut announced, mut answered) = (false, false);
    while !(announced && answered) {
        // (Each message comes within 10 s, or the test fails.)
        match common::receive(&mut socket).await {
            shared::ServerMessage::Faults { request_id, report } => {
                assert!(report.redis.down, "{report:?}");
                match request_id {
                    Some(7) => answered = true,
                    None => announced = true,
                    other => panic!("unexpected request id {other:?}"),
                }
            }
            shared::ServerMessage::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
}

/// The write-order scenario the lesson runs: deleting first, the reader
/// that comes right after the delete caches the old row; in the right
/// order, the new one. With no database delay at all, so the order is
/// the scenario's doing (it holds the early-deleting writer's database
/// write until its reader is done), not the machine's timing. And with a
/// single database connection: the held writer must not sit on the one
/// its reader needs.
#[tokio::test]
async fn the_write_order_scenario_is_stale_only_when_deleting_first() {
    let t = common::start(|_| {});
    for (delete_first, stale) in [(true, true), (false, false)] {
        settings(&t, |s| {
            s.delete_first = delete_first;
            s.db_latency_ms = 0;
            s.db_connections = 1;
        });
        let result = backend::scenario::write_order(&t.backend.playground, &sandbox(), Kind::Users, 9)
            .await
            .unwrap();
        assert_eq!(result.stale, stale, "{result:?}");
        assert_eq!(stale_keys(&t).await, usize::from(stale));
        t.backend.playground.reset(&sandbox()).await.unwrap();
    }
}
