//! Several application instances with near caches, kept coherent by Redis
//! Pub/Sub invalidation, on real connections (tutorial step 3.5).

mod common;

use std::time::Duration;

use backend::feed::FeedEvent;
use backend::playground::{ReadOptions, WriteOptions};
use shared::{
    CacheEffect, Kind, Origin, Outcome, Record, SandboxId, ServerMessage, StepStatus, Trace, WriteChange,
};

fn near_caches_on(c: &mut backend::Config) {
    c.near_cache = true;
    c.db_latency_ms = 0;
}

async fn read_at(t: &common::TestBackend, instance: &str, id: u64) -> shared::ReadResult {
    let options = ReadOptions {
        instance: Some(instance.into()),
        ..ReadOptions::default()
    };
    t.backend
        .playground
        .read_with(
            &SandboxId::default_sandbox(),
            Kind::Users,
            id,
            Origin::Rest,
            options,
        )
        .await
        .unwrap()
}

async fn rename_at(t: &common::TestBackend, instance: &str, id: u64, name: &str) -> shared::WriteResult {
    let options = WriteOptions {
        instance: Some(instance.into()),
        ..WriteOptions::default()
    };
    let change = WriteChange::Update { name: name.into() };
    t.backend
        .playground
        .write_with(
            &SandboxId::default_sandbox(),
            Kind::Users,
            id,
            change,
            Origin::Rest,
            options,
        )
        .await
        .unwrap()
}

/// Waits until every instance's subscription is up.
async fn wait_subscribed(t: &common::TestBackend, expected: usize) {
    let sandbox = t
        .backend
        .playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap();
    for _ in 0..200 {
        if sandbox.fleet().states().iter().filter(|s| s.subscribed).count() == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("subscriptions: {:?}", sandbox.fleet().states());
}

fn name_of(record: &Option<Record>) -> String {
    record.as_ref().map(|r| r.title().to_string()).unwrap_or_default()
}

/// Each instance answers from its own near cache once it has the value;
/// a write on one instance reaches the others over Pub/Sub, and their next
/// reads see the new row.
#[tokio::test]
async fn a_write_on_one_instance_invalidates_every_near_cache() {
    let t = common::start(near_caches_on);
    wait_subscribed(&t, 3).await;
    let mut feed = t
        .backend
        .playground
        .subscribe(&SandboxId::default_sandbox())
        .unwrap();
    for instance in ["A", "B", "C"] {
        read_at(&t, instance, 1).await;
    }
    for instance in ["A", "B", "C"] {
        assert_eq!(
            read_at(&t, instance, 1).await.outcome,
            Outcome::NearHit,
            "instance {instance}"
        );
    }

    let written = rename_at(&t, "A", 1, "Everywhere Now").await;
    assert!(
        matches!(written.cache, CacheEffect::Deleted { existed: true, .. }),
        "{:?}",
        written.cache
    );
    let trace = write_trace(&mut feed).await;
    let nodes: Vec<_> = trace.steps.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(
        nodes,
        [
            "write_request",
            "write_database",
            "update_cache",
            "publish",
            "instance_a",
            "instance_b",
            "instance_c",
            "return_written"
        ]
    );
    assert!(trace.steps[3]
        .action
        .text()
        .starts_with("PUBLISH cache:default:invalidation "));
    assert_eq!(trace.steps[3].reply, "(integer) 3");
    for step in &trace.steps[4..7] {
        assert_eq!(step.status, StepStatus::Ok, "{step:?}");
        assert_eq!(step.via.as_ref().map(|v| v.as_str()), Some("publish"));
    }
    assert_eq!(trace.instance.as_deref(), Some("A"));

    for instance in ["B", "C"] {
        let read = read_at(&t, instance, 1).await;
        assert_ne!(
            read.outcome,
            Outcome::NearHit,
            "instance {instance} dropped its copy"
        );
        assert_eq!(name_of(&read.record), "Everywhere Now");
    }
}

/// Pub/Sub is at most once: an instance whose subscription is cut misses
/// the message and serves its stale near copy; when it resubscribes it
/// clears its near cache, and reads are fresh again.
#[tokio::test]
async fn a_disconnected_instance_misses_the_message_and_recovers_on_resubscribe() {
    let t = common::start(near_caches_on);
    wait_subscribed(&t, 3).await;
    let sandbox = t
        .backend
        .playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap();
    let before = read_at(&t, "B", 2).await;
    assert_eq!(read_at(&t, "B", 2).await.outcome, Outcome::NearHit);

    sandbox.set_link("B", false).unwrap();
    wait_subscribed(&t, 2).await;
    let mut feed = t
        .backend
        .playground
        .subscribe(&SandboxId::default_sandbox())
        .unwrap();
    rename_at(&t, "A", 2, "Missed By B").await;
    let trace = write_trace(&mut feed).await;
    let received = |node: &str| {
        trace
            .steps
            .iter()
            .any(|s| s.node.as_str() == node && s.status == StepStatus::Ok)
    };
    assert!(received("instance_a") && received("instance_c") && !received("instance_b"));
    let missed = trace
        .steps
        .iter()
        .find(|s| s.node.as_str() == "instance_b")
        .unwrap();
    assert_eq!(missed.status, StepStatus::Error);
    assert!(
        missed.action.text().contains("missed it"),
        "{}",
        missed.action.text()
    );

    // B still answers from its stale near copy.
    let stale = read_at(&t, "B", 2).await;
    assert_eq!(stale.outcome, Outcome::NearHit);
    assert_eq!(name_of(&stale.record), name_of(&before.record));

    // Resubscribing clears B's near cache: the next read is fresh.
    sandbox.set_link("B", true).unwrap();
    wait_subscribed(&t, 3).await;
    let fresh = read_at(&t, "B", 2).await;
    assert_ne!(fresh.outcome, Outcome::NearHit);
    assert_eq!(name_of(&fresh.record), "Missed By B");
}

/// Without near caches nothing is published, and instances only differ by
/// their connections; round-robin spreads reads over A, B and C.
#[tokio::test]
async fn without_near_caches_reads_go_round_robin_and_nothing_is_published() {
    let t = common::start(|c| c.db_latency_ms = 0);
    let mut served = Vec::new();
    for _ in 0..3 {
        let result = t.read(Kind::Users, 3).await;
        let trace = t
            .backend
            .playground
            .sandbox(&SandboxId::default_sandbox())
            .unwrap()
            .recent()[0]
            .clone();
        assert_eq!(Some(trace.id), result.trace_id);
        served.push(trace.instance.unwrap());
    }
    served.sort();
    assert_eq!(served, ["A", "B", "C"]);
    let mut feed = t
        .backend
        .playground
        .subscribe(&SandboxId::default_sandbox())
        .unwrap();
    rename_at(&t, "A", 3, "No Publish").await;
    let trace = write_trace(&mut feed).await;
    assert!(
        !trace.steps.iter().any(|s| s.node.as_str() == "publish"),
        "{trace:?}"
    );
    let err = t
        .backend
        .playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap()
        .set_link("A", false)
        .unwrap_err();
    assert!(err.to_string().contains("near caches"), "{err}");
}

/// A near copy lives only as long as the near TTL: the bound on staleness.
#[tokio::test]
async fn near_copies_expire_after_the_near_ttl() {
    let t = common::start(|c| {
        near_caches_on(c);
        c.near_ttl_secs = 1;
    });
    wait_subscribed(&t, 3).await;
    read_at(&t, "C", 4).await;
    assert_eq!(read_at(&t, "C", 4).await.outcome, Outcome::NearHit);
    // Read until the answer no longer comes from the near copy; bounded far
    // above the 1 s TTL, so a copy that never expires fails the test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let outcome = read_at(&t, "C", 4).await.outcome;
        if outcome != Outcome::NearHit {
            assert_eq!(outcome, Outcome::Hit, "from Redis once the near copy expired");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the near copy outlived its 1 s TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn write_trace(feed: &mut backend::feed::Subscription) -> Trace {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("a message");
        if let Some(FeedEvent::Message(published)) = event {
            if let ServerMessage::Trace { trace, .. } = published.message().clone() {
                if matches!(trace.operation, shared::Operation::Update { .. }) {
                    return trace;
                }
            }
        }
    }
}

/// A reset puts the fleet back as it started: a cut subscription is
/// restored. And asking for a link state it already has is still answered
/// with the instances (a lesson waits for that answer).
#[tokio::test]
async fn a_reset_reconnects_every_instance_and_links_are_always_answered() {
    let t = common::start(near_caches_on);
    wait_subscribed(&t, 3).await;
    let id = SandboxId::default_sandbox();
    let sandbox = t.backend.playground.sandbox(&id).unwrap();
    sandbox.set_link("C", false).unwrap();
    wait_subscribed(&t, 2).await;

    let mut feed = t.backend.playground.subscribe(&id).unwrap();
    // Already cut: nothing changes, yet the instances are announced.
    sandbox.set_link("C", false).unwrap();
    let announced = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(FeedEvent::Message(published)) = feed.next().await {
                if let ServerMessage::Instances { instances } = published.message().clone() {
                    return instances;
                }
            }
        }
    })
    .await
    .expect("the instances are announced");
    assert!(!announced.iter().find(|i| i.name == "C").unwrap().subscribed);

    t.backend.playground.reset(&id).await.unwrap();
    wait_subscribed(&t, 3).await;
}

/// The next `Instances` message on `feed`.
async fn next_instances(feed: &mut backend::feed::Subscription) -> Vec<shared::InstanceState> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(FeedEvent::Message(published)) = feed.next().await {
                if let ServerMessage::Instances { instances } = published.message().clone() {
                    return instances;
                }
            }
        }
    })
    .await
    .expect("the instances are announced")
}

/// A read that keeps a near copy tells the pages, so the instances card
/// counts it; a hit in the near cache changes nothing and says nothing.
#[tokio::test]
async fn a_read_that_keeps_a_near_copy_announces_the_instances() {
    let t = common::start(near_caches_on);
    wait_subscribed(&t, 3).await;
    let id = SandboxId::default_sandbox();
    let mut feed = t.backend.playground.subscribe(&id).unwrap();
    assert_eq!(read_at(&t, "B", 3).await.outcome, Outcome::Miss);
    let counted = next_instances(&mut feed).await;
    let near = |name: &str| counted.iter().find(|i| i.name == name).unwrap().near_entries;
    assert_eq!((near("A"), near("B"), near("C")), (0, 1, 0));

    assert_eq!(read_at(&t, "B", 3).await.outcome, Outcome::NearHit);
    // The next announcement is the write's, not one for the near hit.
    rename_at(&t, "A", 3, "Announced").await;
    let after_write = next_instances(&mut feed).await;
    assert!(
        after_write.iter().any(|i| i.received > 0),
        "the first announcement after the near hit is the write's: {after_write:?}"
    );
}
