//! Writes and the four invalidation strategies, against a real Redis and a
//! real SQLite file (tutorial step 3 and section 4.2).

mod common;

use redis::Commands;
use shared::{
    CacheEffect, Kind, Origin, Outcome, Record, SandboxId, WriteChange, WriteResult, WriteStrategy,
};

fn name_of(record: &Option<Record>) -> &str {
    record.as_ref().map(Record::title).unwrap_or("<none>")
}

async fn rename(t: &common::TestBackend, kind: Kind, id: u64, name: &str) -> WriteResult {
    t.backend
        .playground
        .write(
            &SandboxId::default_sandbox(),
            kind,
            id,
            WriteChange::Update { name: name.into() },
            Origin::Rest,
        )
        .await
        .expect("write succeeds")
}

fn with_strategy(strategy: WriteStrategy) -> impl FnOnce(&mut backend::Config) {
    move |c| c.write_strategy = strategy
}

/// Delete on write: the key is dropped, so the next read misses and sees
/// the new row, whose version went up.
#[tokio::test]
async fn delete_on_write_drops_the_key_and_the_next_read_sees_the_change() {
    let t = common::start(with_strategy(WriteStrategy::DeleteOnWrite));
    let before = t.read(Kind::Users, 10).await;
    assert_eq!(before.record.as_ref().unwrap().version(), 1);

    let written = rename(&t, Kind::Users, 10, "Renamed Person").await;
    assert!(written.found);
    assert_eq!(name_of(&written.record), "Renamed Person");
    assert_eq!(
        written.cache,
        CacheEffect::Deleted {
            key: "cache:default:user:10".into(),
            existed: true,
            lease_revoked: false
        }
    );
    let exists: bool = t.redis().exists("cache:default:user:10").unwrap();
    assert!(!exists);

    let after = t.read(Kind::Users, 10).await;
    assert_eq!(after.outcome, Outcome::Miss);
    assert_eq!(name_of(&after.record), "Renamed Person");
    assert_eq!(after.record.as_ref().unwrap().version(), 2);
}

/// TTL only: the cache keeps serving the old value after the write, until
/// the TTL runs out; the write says how long that can be.
#[tokio::test]
async fn ttl_only_serves_the_old_value_until_the_ttl_runs_out() {
    let t = common::start(|c| {
        c.write_strategy = WriteStrategy::TtlOnly;
        c.cache_ttl_secs = 2;
    });
    let before = t.read(Kind::Users, 11).await;
    let written = rename(&t, Kind::Users, 11, "New Name").await;
    assert!(
        matches!(written.cache, CacheEffect::Left { remaining_ms: Some(ms), .. } if ms > 0 && ms <= 2_000),
        "{:?}",
        written.cache
    );
    assert!(written
        .cache
        .describe()
        .contains("may see the old value for up to"));

    let stale = t.read(Kind::Users, 11).await;
    assert_eq!(stale.outcome, Outcome::Hit);
    assert_eq!(
        name_of(&stale.record),
        name_of(&before.record),
        "the old value is still served"
    );

    let mut redis = t.redis();
    common::eventually(
        "the cached copy expires with its 2 s TTL",
        std::time::Duration::from_secs(15),
        || !redis.exists::<_, bool>("cache:default:user:11").unwrap(),
    )
    .await;
    let fresh = t.read(Kind::Users, 11).await;
    assert_eq!(fresh.outcome, Outcome::Miss);
    assert_eq!(name_of(&fresh.record), "New Name");
}

/// Hybrid: user profiles are invalidated at once, products are left to
/// their TTL.
#[tokio::test]
async fn hybrid_invalidates_users_but_leaves_products_to_their_ttl() {
    let t = common::start(with_strategy(WriteStrategy::Hybrid));
    t.read(Kind::Users, 12).await;
    t.read(Kind::Products, 12).await;
    rename(&t, Kind::Users, 12, "Fresh User").await;
    rename(&t, Kind::Products, 12, "Fresh Product").await;
    let user = t.read(Kind::Users, 12).await;
    let product = t.read(Kind::Products, 12).await;
    assert_eq!(
        (user.outcome, name_of(&user.record)),
        (Outcome::Miss, "Fresh User")
    );
    assert_eq!(product.outcome, Outcome::Hit);
    assert_ne!(
        name_of(&product.record),
        "Fresh Product",
        "products stay stale until their TTL"
    );
}

/// Write-through: the new value is stored at once, so the next read is a
/// hit with the new value.
#[tokio::test]
async fn write_through_stores_the_new_value() {
    let t = common::start(with_strategy(WriteStrategy::WriteThrough));
    t.read(Kind::Products, 13).await;
    rename(&t, Kind::Products, 13, "Shiny Lamp").await;
    let read = t.read(Kind::Products, 13).await;
    assert_eq!(read.outcome, Outcome::Hit);
    assert_eq!(name_of(&read.record), "Shiny Lamp");
    assert_eq!(read.record.unwrap().version(), 2);
}

/// Deleting a record removes its cached copy too, and the next read caches
/// it as missing.
#[tokio::test]
async fn deletes_invalidate_and_the_record_is_gone() {
    let t = common::start(|_| {});
    t.read(Kind::Users, 14).await;
    let deleted = t
        .backend
        .playground
        .write(
            &SandboxId::default_sandbox(),
            Kind::Users,
            14,
            WriteChange::Delete,
            Origin::Rest,
        )
        .await
        .unwrap();
    assert!(deleted.found);
    assert_eq!(deleted.record, None);
    let read = t.read(Kind::Users, 14).await;
    assert_eq!((read.outcome, read.found), (Outcome::Miss, false));
    assert_eq!(t.read(Kind::Users, 14).await.outcome, Outcome::NullHit);
}

/// Writes to a record that does not exist change nothing and say so.
#[tokio::test]
async fn writes_to_missing_records_are_reported_not_found() {
    let t = common::start(|_| {});
    let written = rename(&t, Kind::Users, 5000, "Nobody").await;
    assert!(!written.found);
    assert_eq!(written.cache, CacheEffect::NoRecord);
}

/// Bad names are refused before anything is written.
#[tokio::test]
async fn bad_names_are_refused() {
    let t = common::start(|_| {});
    let err = t
        .backend
        .playground
        .write(
            &SandboxId::default_sandbox(),
            Kind::Users,
            1,
            WriteChange::Update { name: "  ".into() },
            Origin::Rest,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    assert_eq!(t.database_queries(), 0);
}

/// One sandbox's writes never change another sandbox's rows.
#[tokio::test]
async fn sandboxes_have_their_own_rows() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let a = SandboxId::parse("tab-a").unwrap();
    let b = SandboxId::parse("tab-b").unwrap();
    for sandbox in [&a, &b] {
        playground.open_sandbox(Some(sandbox)).await.unwrap();
    }
    playground
        .write(
            &a,
            Kind::Users,
            1,
            WriteChange::Update {
                name: "Only In A".into(),
            },
            Origin::Rest,
        )
        .await
        .unwrap();
    let in_a = playground.read(&a, Kind::Users, 1, Origin::Rest).await.unwrap();
    let in_b = playground.read(&b, Kind::Users, 1, Origin::Rest).await.unwrap();
    assert_eq!(name_of(&in_a.record), "Only In A");
    assert_ne!(name_of(&in_b.record), "Only In A");
}

/// Settings changed at run time apply to the next operation and are
/// validated.
#[tokio::test]
async fn strategies_can_be_switched_per_sandbox() {
    let t = common::start(|_| {});
    let sandbox = SandboxId::default_sandbox();
    let mut settings = t.backend.playground.sandbox(&sandbox).unwrap().settings();
    settings.write_strategy = WriteStrategy::WriteThrough;
    t.backend
        .playground
        .update_settings(&sandbox, settings.clone())
        .unwrap();
    t.read(Kind::Users, 20).await;
    rename(&t, Kind::Users, 20, "Through").await;
    assert_eq!(t.read(Kind::Users, 20).await.outcome, Outcome::Hit);

    settings.cache_ttl_secs = 0;
    let err = t
        .backend
        .playground
        .update_settings(&sandbox, settings)
        .unwrap_err();
    assert!(err.to_string().contains("cache_ttl_secs"), "{err}");
}

/// The divergence check flags a copy the write left behind (TTL only), with
/// when the row changed, and finds nothing stale under delete on write.
#[tokio::test]
async fn the_divergence_check_flags_stale_copies() {
    let t = common::start(with_strategy(WriteStrategy::TtlOnly));
    let sandbox = SandboxId::default_sandbox();
    t.read(Kind::Users, 40).await;
    t.read(Kind::Users, 41).await;
    t.read(Kind::Users, 999_999).await;
    rename(&t, Kind::Users, 40, "Changed").await;

    let report = t.backend.playground.check_divergence(&sandbox).await.unwrap();
    assert_eq!(report.entries.len(), 3, "{report:?}");
    assert_eq!(report.stale(), 1);
    let stale = &report.entries[0];
    assert_eq!((stale.key.as_str(), stale.stale), ("cache:default:user:40", true));
    assert!(
        stale.database.starts_with("Changed (version 2)"),
        "{}",
        stale.database
    );
    assert!(
        stale.cached.contains("(version 1), phone sealed with key boot"),
        "{}",
        stale.cached
    );
    assert!(stale.changed_at_ms.is_some());
    assert!(stale.ttl_secs > 0);
    let missing = report.entries.iter().find(|e| e.id == 999_999).unwrap();
    assert_eq!((missing.cached.as_str(), missing.stale), ("missing", false));

    // Switching to delete on write and writing again clears it.
    let mut settings = t.backend.playground.sandbox(&sandbox).unwrap().settings();
    settings.write_strategy = WriteStrategy::DeleteOnWrite;
    t.backend.playground.update_settings(&sandbox, settings).unwrap();
    rename(&t, Kind::Users, 40, "Changed Again").await;
    let report = t.backend.playground.check_divergence(&sandbox).await.unwrap();
    assert_eq!(report.stale(), 0, "{report:?}");
}

/// A flood of REST writes is drawn within the sandbox's budget of traces
/// like reads: the rest are counted, not traced (their `trace_id` is
/// null, their steps folded into the next summary), and every one is in
/// the counters.
#[tokio::test]
async fn a_flood_of_writes_is_counted_beyond_the_trace_budget() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let sandbox = shared::SandboxId::default_sandbox();
    let writes = (1..=150u64).map(|id| {
        playground.write(
            &sandbox,
            shared::Kind::Users,
            id,
            shared::WriteChange::Update {
                name: format!("Renamed {id}"),
            },
            shared::Origin::Rest,
        )
    });
    let results = futures_util::future::join_all(writes).await;
    let untraced = results
        .iter()
        .filter(|r| r.as_ref().unwrap().trace_id.is_none())
        .count();
    assert!(untraced > 0, "150 writes at once pass the 50 a second drawn");
    assert!(untraced < 150, "the first ones are drawn");
    let stats = playground.sandbox(&sandbox).unwrap().stats();
    assert_eq!(stats.writes, 150, "every write is counted, drawn or not");
}
