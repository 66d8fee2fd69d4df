//! The cache-aside read against a real Redis and a real SQLite file: each
//! test demonstrates one behaviour from the tutorial.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backend::feed::FeedEvent;
use cache_aside::{Content, Envelope};
use redis::Commands;
use shared::diagram::nodes;
use shared::{Action, Kind, Outcome, Record, SandboxId, ServerMessage, StepStatus, Trace};

/// Starts watching the traces of the default sandbox.
fn watch(t: &common::TestBackend) -> backend::feed::Subscription {
    t.backend
        .playground
        .subscribe(&SandboxId::default_sandbox())
        .unwrap()
}

async fn next_trace(feed: &mut backend::feed::Subscription) -> Trace {
    common::traces_of(feed, 1).await.remove(0)
}

/// Tutorial step 2: the first read misses and fills the cache, the second
/// is a hit that never touches the database.
#[tokio::test]
async fn first_read_misses_and_fills_the_cache_second_read_hits() {
    let t = common::start(|_| {});
    let mut feed = watch(&t);

    let first = t.read(Kind::Users, 42).await;
    assert_eq!(first.outcome, Outcome::Miss);
    assert!(first.found);
    let trace = next_trace(&mut feed).await;
    assert_eq!(
        common::nodes(&trace),
        [
            "request",
            "check_cache",
            "query_database",
            "store_in_cache",
            "return_loaded"
        ]
    );
    assert_eq!(
        trace.steps[1].action,
        Action::Redis("GET cache:default:user:42".into())
    );
    assert_eq!(trace.steps[1].reply, "(nil)");
    assert_eq!(trace.steps[1].status, StepStatus::Miss);
    assert!(matches!(&trace.steps[2].action, Action::Sql(sql) if sql.contains("FROM users WHERE id = ?1")));
    assert!(trace.steps[3]
        .action
        .text()
        .starts_with("SET cache:default:user:42 "));
    assert!(trace.steps[3].action.text().ends_with(" EX 60"));
    assert_eq!(t.database_queries(), 1);

    // Redis really holds the record, in the engine's envelope, with a TTL.
    let mut redis = t.redis();
    let cached: Vec<u8> = redis.get("cache:default:user:42").unwrap();
    let entry = Envelope::<Record>::decode(&cached).unwrap();
    assert_eq!(entry.version, 1, "the row's version travels with it");
    // The user's phone number rests sealed: Redis, and the trace of the
    // SET, hold only ciphertext; the reader got it open.
    let Some(Record::User(user)) = &first.record else {
        panic!("{:?}", first.record)
    };
    assert!(!user.phone.is_empty() && !user.phone.starts_with("enc:"));
    let Content::Value(Record::User(sealed)) = &entry.content else {
        panic!("{:?}", entry.content)
    };
    assert!(sealed.phone.starts_with("enc:v1:boot:"), "{}", sealed.phone);
    assert_eq!(
        (&sealed.name, &sealed.email),
        (&user.name, &user.email),
        "only the phone is sealed"
    );
    assert!(!String::from_utf8_lossy(&cached).contains(&user.phone));
    assert!(trace.steps[3].action.text().contains("enc:v1:boot:"));
    assert!(!trace.steps[3].action.text().contains(&user.phone));
    let sandbox = t
        .backend
        .playground
        .sandbox(&shared::SandboxId::default_sandbox())
        .unwrap();
    let (_, opened) = sandbox.decode_entry("cache:default:user:42", &cached).unwrap();
    assert_eq!(
        opened.unwrap().content,
        Content::Value(first.record.clone().unwrap())
    );
    let ttl: i64 = redis.ttl("cache:default:user:42").unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    let second = t.read(Kind::Users, 42).await;
    assert_eq!(second.outcome, Outcome::Hit);
    assert_eq!(second.record, first.record);
    let trace = next_trace(&mut feed).await;
    assert_eq!(common::nodes(&trace), ["request", "check_cache", "return_cached"]);
    assert_eq!(trace.steps[1].status, StepStatus::Hit);
    assert_eq!(t.database_queries(), 1, "a hit must not query the database");
}

/// Section 6.6, problem first: with sealing switched off the phone number
/// rests in Redis in the clear, for anyone who can `GET` the key. Switched
/// on again, that plain entry is never served (whoever can write to Redis
/// could have put it there): the read misses and stores the number sealed.
/// An entry sealed earlier still opens with sealing off.
#[tokio::test]
async fn sealing_switched_off_leaves_the_phone_number_in_the_clear() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    let seal = |on: bool| {
        let mut settings = t.backend.playground.sandbox(&sandbox).unwrap().settings();
        settings.seal_sensitive = on;
        t.backend.playground.update_settings(&sandbox, settings).unwrap();
    };
    let held_phone = || {
        let cached: Vec<u8> = t.redis().get("cache:default:user:42").unwrap();
        match Envelope::<Record>::decode(&cached).unwrap().content {
            Content::Value(Record::User(user)) => user.phone,
            other => panic!("{other:?}"),
        }
    };
    let mut feed = watch(&t);

    seal(false);
    let first = t.read(Kind::Users, 42).await;
    assert_eq!(first.outcome, Outcome::Miss);
    let Some(Record::User(user)) = &first.record else {
        panic!("{:?}", first.record)
    };
    assert_eq!(held_phone(), user.phone, "in the clear in Redis");
    let trace = next_trace(&mut feed).await;
    assert_eq!(trace.cached_phone().as_deref(), Some(user.phone.as_str()));
    assert_eq!(t.read(Kind::Users, 42).await.outcome, Outcome::Hit);
    next_trace(&mut feed).await;

    // On again: the plain entry is a miss, replaced by a sealed one.
    seal(true);
    let sealed_read = t.read(Kind::Users, 42).await;
    assert_eq!(sealed_read.outcome, Outcome::Miss);
    assert_eq!(sealed_read.record, first.record);
    let sealed = held_phone();
    assert!(shared::looks_sealed(&sealed), "{sealed}");
    let trace = next_trace(&mut feed).await;
    assert_eq!(trace.cached_phone(), Some(sealed.clone()));
    assert_eq!(t.read(Kind::Users, 42).await.outcome, Outcome::Hit);

    // Off once more: what is sealed still opens, and stays sealed.
    seal(false);
    let hit = t.read(Kind::Users, 42).await;
    assert_eq!((hit.outcome, &hit.record), (Outcome::Hit, &first.record));
    assert_eq!(held_phone(), sealed);
    assert_eq!(t.database_queries(), 2);
}

/// Section 5.3: Redis drops the key when its TTL runs out, and the next
/// read is a miss again.
#[tokio::test]
async fn a_read_after_the_ttl_runs_out_misses_again() {
    let t = common::start(|c| c.cache_ttl_secs = 1);
    assert_eq!(t.read(Kind::Products, 7).await.outcome, Outcome::Miss);
    assert_eq!(t.read(Kind::Products, 7).await.outcome, Outcome::Hit);
    let mut redis = t.redis();
    // Wait until Redis itself reports the key gone (TTL -2), rather than
    // guessing a sleep.
    common::eventually("the key expires", Duration::from_secs(10), || {
        redis.ttl::<_, i64>("cache:default:product:7").unwrap() == -2
    })
    .await;
    assert_eq!(t.read(Kind::Products, 7).await.outcome, Outcome::Miss);
    assert_eq!(t.database_queries(), 2);
}

/// Section 4.7: a missing record is cached as a marker with the shorter
/// null TTL, so asking again does not reach the database.
#[tokio::test]
async fn missing_records_are_cached_with_the_null_ttl() {
    let t = common::start(|_| {});
    let first = t.read(Kind::Users, 999_999).await;
    assert_eq!((first.outcome, first.found), (Outcome::Miss, false));
    assert_eq!(first.record, None);

    let mut redis = t.redis();
    let cached: Vec<u8> = redis.get("cache:default:user:999999").unwrap();
    assert_eq!(
        Envelope::<Record>::decode(&cached).unwrap().content,
        Content::NotFound
    );
    let ttl: i64 = redis.ttl("cache:default:user:999999").unwrap();
    assert!(
        (1..=30).contains(&ttl),
        "null TTL should be at most 30 s, got {ttl}"
    );

    for _ in 0..5 {
        let again = t.read(Kind::Users, 999_999).await;
        assert_eq!((again.outcome, again.found), (Outcome::NullHit, false));
    }
    assert_eq!(t.database_queries(), 1);
}

/// Section 4.7's detection metric: the database lookups that found no row
/// are counted apart, traced or not (a flood past the traces a sandbox
/// draws), through a fallback too; a null hit never reaches the database
/// and a found row is not counted.
#[tokio::test]
async fn lookups_that_find_no_row_are_counted_on_every_path() {
    let mut t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    let stats = |t: &common::TestBackend| t.backend.playground.sandbox(&sandbox).unwrap().stats();
    let mut settings = t.backend.playground.sandbox(&sandbox).unwrap().settings();
    settings.negative_caching = false;
    settings.db_latency_ms = 0;
    t.backend
        .playground
        .update_settings(&sandbox, settings.clone())
        .unwrap();

    // Missing ids until some went untraced; each one reached the database.
    let (mut missing, mut untraced) = (0, 0);
    while untraced < 3 {
        assert!(missing < 100_000, "the trace budget never ran out");
        let read = t.read(Kind::Users, 900_000 + missing % 50).await;
        assert_eq!((read.outcome, read.found), (Outcome::Miss, false));
        missing += 1;
        untraced += u64::from(read.trace_id.is_none());
    }
    assert_eq!(t.read(Kind::Users, 42).await.outcome, Outcome::Miss);
    let counted = stats(&t);
    assert_eq!(counted.database_not_found, missing);
    assert_eq!(
        counted.database_reads,
        missing + 1,
        "the found row is a lookup too"
    );

    // Cached "not found": the first lookup counts, the null hits do not.
    settings.negative_caching = true;
    t.backend.playground.update_settings(&sandbox, settings).unwrap();
    assert_eq!(t.read(Kind::Users, 999_999).await.outcome, Outcome::Miss);
    assert_eq!(t.read(Kind::Users, 999_999).await.outcome, Outcome::NullHit);
    assert_eq!(stats(&t).database_not_found, missing + 1);

    // Redis gone: a fallback that finds no row is a lookup that found none.
    t.stop_redis();
    let fallback = t.read(Kind::Users, 999_998).await;
    assert_eq!((fallback.outcome, fallback.found), (Outcome::Fallback, false));
    assert_eq!(t.read(Kind::Users, 41).await.outcome, Outcome::Fallback);
    let counted = stats(&t);
    assert_eq!(counted.database_not_found, missing + 2);
    assert_eq!(counted.database_reads, missing + 4);
}

/// Section 4.5: with Redis gone, reads still succeed from the database and
/// the trace shows the fallback; nothing is stored.
#[tokio::test]
async fn reads_fall_back_to_the_database_when_redis_is_stopped() {
    let mut t = common::start(|_| {});
    let mut feed = watch(&t);
    assert_eq!(t.read(Kind::Users, 5).await.outcome, Outcome::Miss);
    let _ = next_trace(&mut feed).await;

    t.stop_redis();
    for _ in 0..3 {
        let read = t.read(Kind::Users, 5).await;
        assert_eq!(read.outcome, Outcome::Fallback);
        assert!(read.found);
        let trace = next_trace(&mut feed).await;
        assert_eq!(
            common::nodes(&trace),
            [
                "request",
                "check_cache",
                "cache_error",
                "query_database",
                "return_loaded"
            ]
        );
        assert_eq!(trace.steps[1].status, StepStatus::Error);
        assert!(
            trace.steps[1].reply.starts_with("error:"),
            "{}",
            trace.steps[1].reply
        );
    }
    assert_eq!(t.database_queries(), 4);
    let stats = t
        .backend
        .playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap()
        .stats();
    assert_eq!((stats.misses, stats.fallbacks), (1, 3));
}

/// When Redis comes back, the cache is used again without a restart of the
/// back end: the connection reconnects by itself.
#[tokio::test]
async fn reads_use_the_cache_again_once_redis_is_back() {
    let mut t = common::start(|_| {});
    assert_eq!(t.read(Kind::Users, 8).await.outcome, Outcome::Miss);
    t.stop_redis();
    assert_eq!(t.read(Kind::Users, 8).await.outcome, Outcome::Fallback);
    t.restart_redis();
    // The first read after the restart may still see the old, broken
    // connection; within a few reads the manager has reconnected.
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let outcome = t.read(Kind::Users, 8).await.outcome;
        outcomes.push(outcome);
        if outcome == Outcome::Hit {
            break;
        }
    }
    assert_eq!(outcomes.last(), Some(&Outcome::Hit), "{outcomes:?}");
    // The restarted Redis was empty, so the cache was refilled by a miss.
    assert!(outcomes.contains(&Outcome::Miss), "{outcomes:?}");
}

/// A Redis that accepts connections but never answers must not hang a read:
/// the command times out and the read falls back.
#[tokio::test]
async fn a_redis_that_never_answers_times_out_into_the_fallback() {
    // A listener that accepts and then says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            keep.lock().await.push(socket);
        }
    });
    let t = common::start(|c| {
        c.redis_url = Some(url);
        c.redis_timeout_ms = 100;
    });
    let read = t.read(Kind::Users, 1).await;
    assert_eq!(read.outcome, Outcome::Fallback);
    assert!(read.found);
}

/// The simulated database delay is reported apart from the real query time.
#[tokio::test]
async fn simulated_delay_is_reported_separately_from_the_real_query() {
    let t = common::start(|c| c.db_latency_ms = 40);
    let mut feed = watch(&t);
    t.read(Kind::Users, 3).await;
    let trace = next_trace(&mut feed).await;
    let query = &trace.steps[2];
    assert!(matches!(query.action, Action::Sql(_)));
    assert!(query.simulated_delay_us >= 40_000, "{}", query.simulated_delay_us);
    assert!(trace.total_us >= query.duration_us + query.simulated_delay_us);
    // Redis steps never carry a simulated delay.
    assert_eq!(trace.steps[1].simulated_delay_us, 0);
}

/// A cached value that is not a record (written by hand, say) is treated
/// as a miss and overwritten, never a crash.
#[tokio::test]
async fn unreadable_cached_values_are_replaced() {
    let t = common::start(|_| {});
    let mut redis = t.redis();
    let _: () = redis.set("cache:default:user:9", "not json").unwrap();
    let read = t.read(Kind::Users, 9).await;
    assert_eq!(read.outcome, Outcome::Miss);
    let cached: String = redis.get("cache:default:user:9").unwrap();
    assert!(cached.starts_with("ca1 v "), "{cached}");
}

/// Sandboxes namespace keys: one learner's hit is another's miss.
#[tokio::test]
async fn sandboxes_do_not_share_cache_entries() {
    let t = common::start(|_| {});
    assert_eq!(t.read_in("tab-a", Kind::Users, 1).await.outcome, Outcome::Miss);
    assert_eq!(t.read_in("tab-a", Kind::Users, 1).await.outcome, Outcome::Hit);
    assert_eq!(t.read_in("tab-b", Kind::Users, 1).await.outcome, Outcome::Miss);
    let mut redis = t.redis();
    let exists: bool = redis.exists("cache:tab-b:user:1").unwrap();
    assert!(exists);
}

/// The seed is deterministic: the same id is the same record on every
/// machine, and the tables have the promised sizes.
#[tokio::test]
async fn the_seeded_data_is_deterministic() {
    let t = common::start(|_| {});
    let read = t.read(Kind::Users, 1000).await;
    assert_eq!(read.record, Some(Record::User(backend::store::seed::user(1000))));
    assert!(t.read(Kind::Products, 500).await.found);
    assert!(!t.read(Kind::Users, 1001).await.found);
    assert!(!t.read(Kind::Products, 501).await.found);
}

/// When the database itself fails the read reports an error (no panic),
/// and the failed trace is still published.
#[tokio::test]
async fn a_failing_database_is_an_error_not_a_panic() {
    let t = common::start(|_| {});
    let mut feed = watch(&t);
    let path = t.backend.playground.database.path().to_path_buf();
    rusqlite_drop_users(&path);
    let err = t
        .backend
        .playground
        .read(
            &SandboxId::default_sandbox(),
            Kind::Users,
            1,
            shared::Origin::Rest,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("database"), "{err}");
    let trace = next_trace(&mut feed).await;
    assert_eq!(trace.outcome, Outcome::Failed);
    assert_eq!(trace.steps.last().unwrap().status, StepStatus::Error);
}

fn rusqlite_drop_users(path: &std::path::Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.execute_batch("DROP TABLE users").unwrap();
}

/// A flood of reads, more per second than the sandbox draws, is counted but
/// not traced: tracing never costs more than the reads themselves, and the
/// watchers get the counters instead of thousands of traces.
#[tokio::test]
async fn a_flood_of_reads_is_counted_not_traced() {
    use backend::sandbox::TRACES_PER_SECOND;
    let t = common::start(|_| {});
    let mut feed = watch(&t);
    // Reads until 2 seconds' worth went untraced, however fast or slow
    // the machine reads: past each second's budget a read is only counted.
    let (mut reads, mut untraced) = (0, 0);
    let started = std::time::Instant::now();
    while untraced < 2 * TRACES_PER_SECOND {
        assert!(
            reads < 100 * TRACES_PER_SECOND,
            "{untraced} untraced of {reads}: the budget never ran out"
        );
        let result = t.read(Kind::Users, reads % 10 + 1).await;
        reads += 1;
        untraced += u64::from(result.trace_id.is_none());
    }
    // And no more were drawn than the budget of each second the loop
    // touched (a budget, not a timing: a slow machine only touches more).
    let seconds_touched = started.elapsed().as_secs() + 2;
    assert!(
        reads - untraced <= TRACES_PER_SECOND * seconds_touched,
        "{} traced in at most {seconds_touched} seconds",
        reads - untraced
    );
    // Summaries arrive on their own, counting every read; the traffic in
    // them adds up to the untraced reads, each drawn along real edges.
    let mut traces = 0;
    let mut summaries = Vec::new();
    let stats = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Some(FeedEvent::Message(published)) = feed.next().await else {
                panic!("the feed ended");
            };
            match published.message().clone() {
                ServerMessage::Trace { .. } => traces += 1,
                ServerMessage::Summary { stats, traffic } => {
                    summaries.push(traffic);
                    if stats.reads() == reads {
                        break stats;
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the counters within 10 s");
    assert_eq!(stats.untraced, untraced);
    let summed: u64 = summaries.iter().map(|t| t.reads()).sum();
    assert_eq!(summed, untraced, "every untraced read is in one summary");
    let diagram = shared::Diagram::cache_aside_read();
    let mut from_request = 0;
    for traffic in &summaries {
        assert_eq!(
            traffic.histogram.iter().map(|(_, n)| n).sum::<u64>(),
            traffic.reads()
        );
        for edge in &traffic.edges {
            assert!(
                diagram.edge(&edge.from, &edge.to).is_some(),
                "{} -> {} is not on the diagram",
                edge.from,
                edge.to
            );
            if edge.from == nodes::REQUEST {
                from_request += edge.count;
            }
        }
    }
    assert_eq!(
        from_request, untraced,
        "each untraced read leaves the request once"
    );
    // The ten keys were cached by the first reads: the rest are hits, drawn
    // from the request through Redis straight back.
    let hits_drawn: u64 = summaries
        .iter()
        .flat_map(|t| &t.edges)
        .filter(|e| e.from == nodes::CHECK_CACHE && e.to == nodes::RETURN_CACHED)
        .map(|e| e.count)
        .sum();
    let hits: u64 = summaries
        .iter()
        .flat_map(|t| &t.outcomes)
        .filter(|(o, _)| *o == Outcome::Hit)
        .map(|(_, n)| n)
        .sum();
    assert!(
        hits > 0 && hits_drawn == hits,
        "{hits} hits, {hits_drawn} drawn as hits"
    );
    assert_eq!(traces, reads - untraced, "one trace per traced read, no more");
}

/// A page's own reads are drawn even while a flood of REST reads has used
/// up the sandbox's traces for this second: the page asked to see them, and
/// a lesson waits for their traces.
#[tokio::test]
async fn a_pages_own_read_is_traced_amid_a_flood() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    // REST reads until one goes untraced: the budget is spent.
    let mut reads = 0;
    while t.read(Kind::Users, 1).await.trace_id.is_some() {
        reads += 1;
        assert!(
            reads <= 10 * backend::sandbox::TRACES_PER_SECOND,
            "the budget never ran out"
        );
    }
    let asked = t
        .backend
        .playground
        .read(&sandbox, Kind::Users, 1, shared::Origin::Browser)
        .await
        .unwrap();
    assert!(asked.trace_id.is_some(), "the page's read was not drawn");
}
