//! The load generator against the real back end: every operation it sends
//! is counted, a page sees it start, progress and end, it stops on demand,
//! with a reset and with the page that started it; bad specs are refused.

mod common;

use std::time::Duration;

use backend::feed::FeedEvent;
use shared::{LoadSpec, LoadState, SandboxId, ServerMessage};

/// The next `Load` message on the sandbox's feed that satisfies `wanted`.
async fn load_message(
    feed: &mut backend::feed::Subscription,
    wanted: impl Fn(&LoadState) -> bool,
) -> LoadState {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let Some(FeedEvent::Message(published)) = feed.next().await else {
                continue;
            };
            if let ServerMessage::Load { state } = published.message().clone() {
                if wanted(&state) {
                    return state;
                }
            }
        }
    })
    .await
    .expect("the load's message within 30 s")
}

fn short_load() -> LoadSpec {
    LoadSpec {
        per_second: 300,
        write_percent: 10,
        keys: 20,
        skew: 1.0,
        seconds: 2,
        seed: 7,
        ..LoadSpec::default()
    }
}

/// A load runs to its end: every operation it sent is in the counters
/// (reads and writes), and the twenty keys, read over and over, are hits
/// after their first miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_runs_to_its_end_and_every_operation_counts() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    let mut feed = t.backend.playground.subscribe(&sandbox).unwrap();
    let started = backend::load::start(&t.backend.playground, &sandbox, short_load()).unwrap();
    assert!(started.running);
    // The counters as a page hears them (traces and summaries), up to the
    // message that says the load ended.
    let (ended, heard) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut heard = None;
        loop {
            let Some(FeedEvent::Message(published)) = feed.next().await else {
                continue;
            };
            match published.message().clone() {
                ServerMessage::Trace { stats, .. } | ServerMessage::Summary { stats, .. } => {
                    heard = Some(stats)
                }
                ServerMessage::Load { state } if !state.running => return (state, heard),
                _ => {}
            }
        }
    })
    .await
    .expect("the load ends within 30 s");
    assert_eq!(ended.sent, 600, "300 a second for 2 s");
    let stats = t.backend.playground.sandbox(&sandbox).unwrap().stats();
    assert_eq!(stats.reads() + stats.writes, ended.sent, "{stats:?}");
    // A page that hears "ended" already has the final counters: a lesson
    // answers from them at that moment.
    assert_eq!(heard, Some(stats), "the last counters heard before the end");
    assert!(stats.writes > 0, "10 % writes: {stats:?}");
    assert!(
        stats.hits > stats.misses,
        "the hot keys are cached after their first reads: {stats:?}"
    );
    assert!(t
        .backend
        .playground
        .sandbox(&sandbox)
        .unwrap()
        .load_state()
        .is_some());
}

/// Stopped over REST (and by a reset): the page is told, the state is gone,
/// and a bad spec is refused with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_stops_on_demand_and_bad_specs_are_refused() {
    let t = common::start(|_| {});
    let served = common::serve(&t).await;
    let sandbox = SandboxId::default_sandbox();
    let mut feed = t.backend.playground.subscribe(&sandbox).unwrap();
    let long = serde_json::to_string(&LoadSpec {
        seconds: 300,
        per_second: 50,
        ..LoadSpec::default()
    })
    .unwrap();
    let response = common::http(served.addr, "POST", "/api/v1/load", &[], &long).await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    load_message(&mut feed, |s| s.running).await;
    let response = common::http(served.addr, "DELETE", "/api/v1/load", &[], "").await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    let stopped = load_message(&mut feed, |s| !s.running).await;
    assert_eq!(stopped.spec.seconds, 300);
    let response = common::http_get(served.addr, "/api/v1/load").await;
    assert!(response.ends_with("null"), "{response}");

    // A reset stops it too.
    backend::load::start(&t.backend.playground, &sandbox, short_load()).unwrap();
    t.backend.playground.reset(&sandbox).await.unwrap();
    load_message(&mut feed, |s| !s.running).await;
    assert!(t
        .backend
        .playground
        .sandbox(&sandbox)
        .unwrap()
        .load_state()
        .is_none());

    let too_fast = serde_json::to_string(&LoadSpec {
        per_second: 5_000,
        ..LoadSpec::default()
    })
    .unwrap();
    let response = common::http(served.addr, "POST", "/api/v1/load", &[], &too_fast).await;
    assert_eq!(common::status_of(&response), 400, "{response}");
    assert!(
        response.contains("per_second must be from 1 to 1000"),
        "{response}"
    );
    let response = common::http(served.addr, "POST", "/api/v1/load", &[], "{\"per_second\":").await;
    assert_eq!(common::status_of(&response), 400, "{response}");
}

/// A page's load ends with the page: nothing a visitor started outlives
/// their visit by more than the socket's close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pages_load_stops_when_the_page_leaves() {
    let t = common::start(|_| {});
    let served = common::serve(&t).await;
    let sandbox = SandboxId::default_sandbox();
    let mut feed = t.backend.playground.subscribe(&sandbox).unwrap();
    let mut socket = common::connect(served.addr, "?sandbox=default").await;
    common::greeted(&mut socket).await;
    let start = serde_json::json!({
        "type": "start_load",
        "request_id": 1,
        "load": LoadSpec { seconds: 300, per_second: 20, ..LoadSpec::default() },
    });
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            start.to_string().into(),
        ))
        .await
        .unwrap();
    load_message(&mut feed, |s| s.running).await;
    drop(socket);
    let stopped = load_message(&mut feed, |s| !s.running).await;
    assert_eq!(stopped.spec.seconds, 300);
}
