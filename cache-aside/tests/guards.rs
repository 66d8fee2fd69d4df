//! The stale-set race on a real Redis, driven step by step: a reader loads
//! version 1 and is held before its store; a writer updates the row and
//! invalidates; the reader stores. Without a guard Redis keeps version 1;
//! with leases or version checks the store is refused. Also every write
//! effect.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_aside::{
    Change, Effect, Options, RaceGuard, Remaining, Source, StepKind, WritePolicy, DELETED_VERSION,
};
use common::{cache, get, raw, redis_server, stale_set_race, within, Db, Gate};

fn guarded(race_guard: RaceGuard) -> Options {
    Options {
        race_guard,
        ..Options::default()
    }
}

/// Runs the race on item 1 under `guard`; returns what Redis holds at the
/// end and the database row's name.
async fn race(guard: RaceGuard) -> (Option<String>, String) {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, guarded(guard));
    let (answer, new) = stale_set_race(&items, &db).await;
    assert_eq!(
        answer.value.unwrap().version,
        1,
        "the reader answered with what it loaded"
    );

    let cached = get(&mut raw(&server), "cache:item:1");
    (cached, new.name)
}

/// Without a guard, the race leaves the old row in Redis.
#[tokio::test]
async fn without_a_guard_the_race_leaves_a_stale_value() {
    let (cached, _) = race(RaceGuard::None).await;
    let cached = cached.expect("the reader stored");
    assert!(cached.contains("\"name\":\"item 1\""), "stale: {cached}");
}

/// With leases, the write revoked the reader's lease: its store is refused.
#[tokio::test]
async fn leases_refuse_the_stale_store() {
    let (cached, _) = race(RaceGuard::lease()).await;
    assert_eq!(cached, None, "nothing stale, nothing at all");
}

/// With version checks, the write left a marker at version 2: the store of
/// version 1 is refused, and the next read loads version 2.
#[tokio::test]
async fn version_checks_refuse_the_stale_store() {
    let (cached, _) = race(RaceGuard::Version).await;
    let cached = cached.expect("the marker");
    assert!(cached.starts_with("ca1 i 2 "), "{cached}");
}

/// Each write policy and guard says what it did, as a value.
#[tokio::test]
async fn every_write_reports_its_effect() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let plain = cache(&server, Options::default());
    plain.get_or_load("item:2", db.loader(2)).await.unwrap();
    let row = db.rename(2, "two");

    let left = plain
        .after_write("item:2", Change::Updated(&row), WritePolicy::LeaveToTtl)
        .await;
    assert!(
        matches!(left.effect, Effect::Left(Remaining::Expires(d)) if d > Duration::from_secs(50)),
        "{left:?}"
    );
    let deleted = plain
        .after_write("item:2", Change::Updated(&row), WritePolicy::Invalidate)
        .await;
    assert_eq!(
        deleted.effect,
        Effect::Deleted {
            existed: true,
            lease_revoked: false
        }
    );
    let again = plain
        .after_write("item:2", Change::Updated(&row), WritePolicy::Invalidate)
        .await;
    assert_eq!(
        again.effect,
        Effect::Deleted {
            existed: false,
            lease_revoked: false
        }
    );
    let left = plain
        .after_write("item:2", Change::Updated(&row), WritePolicy::LeaveToTtl)
        .await;
    assert_eq!(left.effect, Effect::Left(Remaining::NotCached));
    let through = plain
        .after_write("item:2", Change::Updated(&row), WritePolicy::WriteThrough)
        .await;
    assert_eq!(through.effect, Effect::WroteThrough);
    let answer = plain.get_or_load("item:2", db.loader(2)).await.unwrap();
    assert_eq!(
        (answer.source, answer.value.unwrap().name.as_str()),
        (Source::Redis, "two")
    );
    assert!(deleted.published.is_none(), "no near caches, nothing published");

    let versioned = cache(&server, guarded(RaceGuard::Version));
    let marked = versioned
        .after_write("item:2", Change::Updated(&row), WritePolicy::Invalidate)
        .await;
    assert_eq!(marked.effect, Effect::Marked { version: 2 });
    let older = common::Item {
        version: 1,
        ..row.clone()
    };
    let refused = versioned
        .after_write("item:2", Change::Updated(&older), WritePolicy::WriteThrough)
        .await;
    assert_eq!(refused.effect, Effect::WriteThroughRefused);

    let leased = cache(&server, guarded(RaceGuard::lease()));
    let revoked = leased
        .after_write("item:2", Change::Updated(&row), WritePolicy::Invalidate)
        .await;
    assert!(matches!(
        revoked.effect,
        Effect::Deleted {
            lease_revoked: true,
            ..
        }
    ));
}

/// A delete under version checks leaves a "does not exist" entry that no
/// older version can replace: readers get their answer without a query.
#[tokio::test]
async fn a_delete_under_version_checks_answers_does_not_exist() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, guarded(RaceGuard::Version));
    items.get_or_load("item:3", db.loader(3)).await.unwrap();
    db.delete(3);
    let written = items
        .after_write("item:3", Change::Deleted, WritePolicy::Invalidate)
        .await;
    assert_eq!(
        written.effect,
        Effect::Marked {
            version: DELETED_VERSION
        }
    );
    let answer = items.get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!((answer.source, answer.value), (Source::Negative, None));
    assert_eq!(db.loads(), 1, "the delete's marker answered");
}

/// A write when Redis is down says so: the database changed, the cached
/// copy may live until its TTL.
#[tokio::test]
async fn a_write_with_redis_down_reports_the_failure() {
    let mut server = redis_server();
    let items = cache(&server, Options::default());
    server.stop();
    let row = common::Item {
        id: 4,
        name: "x".into(),
        version: 2,
    };
    let written = items
        .after_write("item:4", Change::Updated(&row), WritePolicy::Invalidate)
        .await;
    assert!(matches!(written.effect, Effect::Failed(_)), "{written:?}");
}

/// The gate holds a call until opened, and never a second one.
#[tokio::test]
async fn a_checkpoint_holds_the_call_until_released() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());
    let gate = Gate::before(StepKind::Load);
    let held = {
        let items = items.clone();
        let gate: Arc<Gate> = gate.clone();
        let loader = db.loader(5);
        tokio::spawn(async move {
            let options = items.options().clone();
            items.get_or_load_with("item:5", &options, &*gate, loader).await
        })
    };
    within(&gate.reached, "the checkpoint before the load").await;
    assert_eq!(db.loads(), 0, "held before the load");
    gate.open();
    held.await.unwrap().unwrap();
    assert_eq!(db.loads(), 1);
}

/// Regression: after a delete under version checks, a record created again
/// (version 1) is not blocked by the delete's marker.
#[tokio::test]
async fn a_record_created_again_after_a_delete_can_be_cached() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, guarded(RaceGuard::Version));
    db.delete(12);
    items
        .after_write("item:12", Change::Deleted, WritePolicy::Invalidate)
        .await;
    let again = common::Item {
        id: 12,
        name: "back".into(),
        version: 1,
    };
    let written = items
        .after_write("item:12", Change::Updated(&again), WritePolicy::Invalidate)
        .await;
    assert_eq!(written.effect, Effect::Marked { version: 1 });
}

/// The version guard needs versions, and a near TTL needs a near cache:
/// the builder refuses either, with a reason.
#[tokio::test]
async fn the_builder_refuses_options_it_cannot_honour() {
    let redis = || cache_aside::Redis::open("redis://127.0.0.1:1/").unwrap();
    let keys = || cache_aside::KeySpace::new("x:");
    let unversioned = cache_aside::CacheAside::<common::Item>::builder(redis(), keys())
        .race_guard(RaceGuard::Version)
        .build();
    assert_eq!(unversioned.err(), Some(cache_aside::OptionsError::Unversioned));
    let no_near = cache_aside::CacheAside::<common::Item>::builder(redis(), keys())
        .options(Options {
            near_ttl: Some(Duration::from_secs(1)),
            ..Options::default()
        })
        .build();
    assert_eq!(no_near.err(), Some(cache_aside::OptionsError::NoNearCache));
}
