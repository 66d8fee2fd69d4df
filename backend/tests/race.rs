//! The stale-set race, reproduced for real against Redis and SQLite, and
//! prevented by leases and by version checks.

mod common;

use backend::scenario::stale_set_race;

use std::time::Duration;

use backend::feed::FeedEvent;
use backend::playground::ReadOptions;
use shared::diagram::nodes::STORE_IN_CACHE;
use shared::{Kind, Origin, Outcome, RaceFix, SandboxId, ServerMessage};

fn with_fix(fix: RaceFix) -> impl FnOnce(&mut backend::Config) {
    move |c| {
        c.race_fix = fix;
        c.db_latency_ms = 0;
    }
}

/// Without a fix, the scenario leaves the old row in Redis.
#[tokio::test]
async fn the_race_leaves_a_stale_value_without_a_fix() {
    let t = common::start(with_fix(RaceFix::None));
    let result = stale_set_race(
        &t.backend.playground,
        &SandboxId::default_sandbox(),
        Kind::Users,
        7,
    )
    .await
    .unwrap();
    assert!(result.stale, "{result:?}");
    assert!(
        result.cached.contains("(version 1), phone sealed with key"),
        "{}",
        result.cached
    );
    assert!(result.database.ends_with("(version 2)"), "{}", result.database);
    // And a read now serves the stale value from the cache.
    let read = t.read(Kind::Users, 7).await;
    assert_eq!(read.outcome, Outcome::Hit);
    assert_eq!(read.record.unwrap().version(), 1);
}

/// Both scenarios need a record that exists: an id in range with no row
/// is refused with that reason (it used to say "out of range"), and
/// nothing is written.
#[tokio::test]
async fn a_scenario_on_a_record_that_does_not_exist_says_so() {
    let t = common::start(with_fix(RaceFix::None));
    let sandbox = SandboxId::default_sandbox();
    let race = stale_set_race(&t.backend.playground, &sandbox, Kind::Users, 5_000)
        .await
        .unwrap_err();
    let order = backend::scenario::write_order(&t.backend.playground, &sandbox, Kind::Users, 5_000)
        .await
        .unwrap_err();
    for error in [race.to_string(), order.to_string()] {
        assert!(
            error.starts_with("there is no record users/5000 in this sandbox"),
            "{error}"
        );
        assert!(!error.contains("out of range"), "{error}");
    }
    assert_eq!(t.backend.playground.sandbox(&sandbox).unwrap().stats().writes, 0);
}

/// With leases, the write revokes the reader's lease and its store is
/// refused.
#[tokio::test]
async fn leases_refuse_the_stale_store() {
    let t = common::start(with_fix(RaceFix::Lease));
    let result = stale_set_race(
        &t.backend.playground,
        &SandboxId::default_sandbox(),
        Kind::Users,
        7,
    )
    .await
    .unwrap();
    assert!(!result.stale, "{result:?}");
    assert_eq!(result.cached, "nothing");
    let read = t.read(Kind::Users, 7).await;
    assert_eq!((read.outcome, read.record.unwrap().version()), (Outcome::Miss, 2));
}

/// With version checks, the write leaves a newer-version marker and the
/// older store is refused.
#[tokio::test]
async fn version_checks_refuse_the_stale_store() {
    let t = common::start(with_fix(RaceFix::Version));
    let result = stale_set_race(
        &t.backend.playground,
        &SandboxId::default_sandbox(),
        Kind::Products,
        9,
    )
    .await
    .unwrap();
    assert!(!result.stale, "{result:?}");
    assert_eq!(result.cached, "invalidated at version 2");
    let read = t.read(Kind::Products, 9).await;
    assert_eq!((read.outcome, read.record.unwrap().version()), (Outcome::Miss, 2));
    assert_eq!(t.read(Kind::Products, 9).await.outcome, Outcome::Hit);
}

/// Step-through: a read paused at a breakpoint is announced, waits for
/// "continue", and finishes after it.
#[tokio::test]
async fn a_paused_read_waits_for_continue() {
    let t = common::start(|_| {});
    let playground = t.backend.playground.clone();
    let sandbox = SandboxId::default_sandbox();
    let mut feed = playground.subscribe(&sandbox).unwrap();
    let operation_id = playground.next_operation_id();
    let reader = {
        let playground = playground.clone();
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            let options = ReadOptions {
                pause_before: vec![STORE_IN_CACHE],
                operation_id: Some(operation_id),
                ..ReadOptions::default()
            };
            playground
                .read_with(&sandbox, Kind::Users, 3, Origin::Browser, options)
                .await
        })
    };
    match next_message(&mut feed).await {
        ServerMessage::Paused {
            operation_id: id,
            at,
            steps,
            ..
        } => {
            assert_eq!(id, operation_id);
            assert_eq!(at, STORE_IN_CACHE);
            let nodes: Vec<_> = steps.iter().map(|s| s.node.as_str()).collect();
            assert_eq!(nodes, ["request", "check_cache", "query_database"]);
        }
        other => panic!("expected a pause, got {other:?}"),
    }
    assert!(!reader.is_finished());
    playground.continue_operation(&sandbox, operation_id).unwrap();
    assert!(matches!(
        next_message(&mut feed).await,
        ServerMessage::Resumed { timed_out: false, .. }
    ));
    assert_eq!(reader.await.unwrap().unwrap().outcome, Outcome::Miss);
    assert!(
        playground.continue_operation(&sandbox, operation_id).is_err(),
        "nothing left to continue"
    );
}

/// A paused read nobody continues goes on by itself after the timeout.
#[tokio::test]
async fn a_forgotten_pause_times_out() {
    let t = common::start(|c| c.pause_timeout_secs = 1);
    let options = ReadOptions {
        pause_before: vec![STORE_IN_CACHE],
        operation_id: None,
        ..ReadOptions::default()
    };
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        t.backend.playground.read_with(
            &SandboxId::default_sandbox(),
            Kind::Users,
            4,
            Origin::Browser,
            options,
        ),
    )
    .await
    .expect("the pause ends by itself")
    .unwrap();
    assert_eq!(read.outcome, Outcome::Miss);
}

async fn next_message(feed: &mut backend::feed::Subscription) -> ServerMessage {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("a message")
        {
            Some(FeedEvent::Message(published)) => match published.message().clone() {
                ServerMessage::Trace { .. } => continue,
                other => return other,
            },
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Many readers and writers on a few keys, concurrently; afterwards, counts
/// the keys whose cached value disagrees with the database (TTLs are long,
/// so nothing expires meanwhile). Prints the count for the issue notes.
async fn stale_keys_after_a_storm(fix: RaceFix) -> usize {
    let t = common::start(move |c| {
        c.race_fix = fix;
        // Latencies that vary, as real ones do: a reader can then be slower
        // between its query and its store than a writer is between its
        // update and its delete, which is the race.
        c.db_latency_ms = 5;
        c.db_jitter_percent = 100;
        c.cache_ttl_secs = 3_600;
    });
    println!("race fix {fix:?}:");
    common::stale_keys_after_a_storm(&t, 2_000).await
}

/// Without a fix, the storm leaves stale keys. Whether the last write to a
/// key is raced depends on timing, so one storm shows it about half the
/// time; up to 20 storms are run (all 20 missing it is a one-in-many-
/// thousands event, while a fix that worked would make it impossible).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_reads_and_writes_leaves_stale_keys_without_a_fix() {
    let mut seen = 0;
    for _ in 0..20 {
        seen = stale_keys_after_a_storm(RaceFix::None).await;
        if seen > 0 {
            break;
        }
    }
    assert!(
        seen > 0,
        "the naive strategy should have lost the race at least once"
    );
}

/// With leases, the same storm leaves nothing stale, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_leaves_nothing_stale_with_leases() {
    for _ in 0..3 {
        assert_eq!(stale_keys_after_a_storm(RaceFix::Lease).await, 0);
    }
}

/// With version checks, the same storm leaves nothing stale, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_leaves_nothing_stale_with_version_checks() {
    for _ in 0..3 {
        assert_eq!(stale_keys_after_a_storm(RaceFix::Version).await, 0);
    }
}

/// With as many reads paused as a sandbox allows, the race scenario's own
/// reader is refused, and the scenario says so at once rather than waiting
/// for a breakpoint its reader never reaches.
#[tokio::test]
async fn the_scenario_says_why_when_no_read_may_pause() {
    let t = common::start(|c| c.db_latency_ms = 0);
    let playground = t.backend.playground.clone();
    let sandbox = SandboxId::default_sandbox();
    let mut feed = playground.subscribe(&sandbox).unwrap();
    let mut readers = Vec::new();
    for id in 1..=backend::playground::MOST_PAUSED as u64 {
        let (playground, sandbox) = (playground.clone(), sandbox.clone());
        readers.push(tokio::spawn(async move {
            let options = ReadOptions {
                pause_before: vec![STORE_IN_CACHE],
                ..ReadOptions::default()
            };
            playground
                .read_with(&sandbox, Kind::Users, id, Origin::Browser, options)
                .await
        }));
    }
    let mut paused = 0;
    while paused < backend::playground::MOST_PAUSED {
        if let ServerMessage::Paused { .. } = next_message(&mut feed).await {
            paused += 1;
        }
    }
    let error = stale_set_race(&playground, &sandbox, Kind::Users, 40)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("paused already"), "{error}");
    for reader in readers {
        reader.abort();
    }
}
