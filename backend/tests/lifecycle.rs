//! A sandbox's life and the operations under way in it: a reset or a reap
//! never leaves behind a key that an operation stores late.

mod common;

use std::time::Duration;

use backend::playground::ReadOptions;
use shared::diagram::nodes::STORE_IN_CACHE;
use shared::{Kind, Origin, Outcome, SandboxId, SandboxSettings};

/// Starts a read of user `id` in `sandbox` that pauses before it stores,
/// and waits until it is paused.
async fn paused_read(
    t: &common::TestBackend,
    sandbox: &SandboxId,
    id: u64,
) -> tokio::task::JoinHandle<Result<shared::ReadResult, backend::error::OpError>> {
    let playground = t.backend.playground.clone();
    let operation_id = playground.next_operation_id();
    let reader = {
        let (playground, sandbox) = (playground.clone(), sandbox.clone());
        tokio::spawn(async move {
            let options = ReadOptions {
                pause_before: vec![STORE_IN_CACHE],
                operation_id: Some(operation_id),
                ..ReadOptions::default()
            };
            playground
                .read_with(&sandbox, Kind::Users, id, Origin::Browser, options)
                .await
        })
    };
    let held = playground
        .sandbox(sandbox)
        .unwrap()
        .wait_until_held(operation_id, Duration::from_secs(10))
        .await;
    assert!(held, "the read pauses before it stores");
    reader
}

/// A read paused before it stores, then a reset: the reset lets the read
/// go on, waits for it, and only then deletes the keys, so the value it
/// stored late does not survive the reset.
#[tokio::test]
async fn a_reset_waits_for_operations_under_way_and_leaves_no_key() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    let reader = paused_read(&t, &sandbox, 5).await;
    t.backend.playground.reset(&sandbox).await.unwrap();
    let read = reader.await.unwrap().unwrap();
    assert_eq!(read.outcome, Outcome::Miss);
    assert!(t.all_keys().is_empty(), "{:?}", t.all_keys());
    // And the next read of it is a miss again.
    assert_eq!(t.read(Kind::Users, 5).await.outcome, Outcome::Miss);
}

/// A sandbox nobody watches, with an operation under way, is not reaped
/// until the operation ends.
#[tokio::test]
async fn a_sandbox_with_an_operation_under_way_is_not_reaped() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let sandbox = playground.open_sandbox(None).await.unwrap().id.clone();
    let reader = paused_read(&t, &sandbox, 6).await;
    let sandboxes = &playground.sandboxes;
    assert_eq!(sandboxes.reap(Duration::ZERO).await, 0, "a read is paused in it");
    let operation = playground.sandbox(&sandbox).unwrap();
    let paused: Vec<u64> = (0..playground.next_operation_id())
        .filter(|id| operation.release(*id))
        .collect();
    assert_eq!(paused.len(), 1);
    assert_eq!(reader.await.unwrap().unwrap().outcome, Outcome::Miss);
    drop(operation);
    assert_eq!(sandboxes.reap(Duration::ZERO).await, 1);
    assert!(
        !t.all_keys().iter().any(|k| k.contains(sandbox.as_str())),
        "its key went with it"
    );
}

/// Hosted, settings may not ask for TTLs beyond the hour.
#[tokio::test]
async fn hosted_sandboxes_keep_their_ttls_short() {
    let t = common::start(|c| c.hosted = true);
    let playground = &t.backend.playground;
    let sandbox = playground.open_sandbox(None).await.unwrap().id.clone();
    let long = SandboxSettings {
        cache_ttl_secs: 7 * 24 * 3600,
        ..SandboxSettings::default()
    };
    let error = playground.update_settings(&sandbox, long).unwrap_err();
    assert!(error.to_string().contains("at most 3600"), "{error}");
    let hour = SandboxSettings {
        cache_ttl_secs: 3600,
        ..SandboxSettings::default()
    };
    playground.update_settings(&sandbox, hour).unwrap();
}

/// Locally a sandbox may be called anything valid, `template` included:
/// the template new sandboxes copy is out of every sandbox's way.
#[tokio::test]
async fn a_sandbox_called_template_harms_no_other() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let named = SandboxId::parse("template").unwrap();
    t.read_in("template", Kind::Users, 1).await;
    assert_eq!(playground.sandboxes.reap(Duration::ZERO).await, 1);
    assert!(playground.sandbox(&named).is_err());
    let read = t.read_in("another", Kind::Users, 1).await;
    assert_eq!(read.outcome, Outcome::Miss);
}
