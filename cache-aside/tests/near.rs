//! Near caches on a real Redis (tutorial step 3.5): three processes, each
//! with its own near cache and subscription; a write in one drops the near
//! copies of all; a process whose subscription is down misses the message
//! and serves its stale copy until it resubscribes (and clears).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_aside::{CacheAside, Change, KeySpace, Options, Redis, Source, StepKind, WritePolicy};
use common::{redis_server, Db, Item, Recorder};

/// A process: its cache, with a near cache, and an observer that records
/// what arrives on the bus.
struct Process {
    cache: CacheAside<Item>,
    bus: Arc<Recorder>,
}

fn process(server: &embedded_redis::EmbeddedRedis) -> Process {
    let bus = Arc::new(Recorder::default());
    let cache = CacheAside::builder(Redis::open(&server.url()).unwrap(), KeySpace::new("cache:"))
        .near_cache(100, Duration::from_secs(30))
        .observer(bus.clone())
        .build()
        .unwrap();
    cache.listen();
    Process { cache, bus }
}

async fn read(p: &Process, db: &Db, id: u64) -> cache_aside::Answer<Item> {
    p.cache
        .get_or_load(&format!("item:{id}"), db.loader(id))
        .await
        .unwrap()
}

/// A write on A drops the near copies of A, B and C; their next reads load
/// the new row once and agree.
#[tokio::test]
async fn a_write_in_one_process_drops_every_near_copy() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let all: Vec<Process> = (0..3).map(|_| process(&server)).collect();
    for p in &all {
        p.bus.wait_for(StepKind::Subscribed, 1).await;
        read(p, &db, 1).await;
        assert_eq!(
            read(p, &db, 1).await.source,
            Source::Near,
            "the second read is near"
        );
    }
    let new = db.rename(1, "renamed");
    let written = all[0]
        .cache
        .after_write("item:1", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    let published = written.published.expect("near caches on").unwrap();
    assert_eq!(published.receivers, 3);
    for p in &all {
        p.bus.wait_for(StepKind::InvalidationReceived, 1).await;
        let received = p
            .bus
            .seen()
            .into_iter()
            .find(|s| s.kind == StepKind::InvalidationReceived);
        assert_eq!(
            received.unwrap().message,
            Some(published.message),
            "the same message everywhere"
        );
    }
    let answers = [
        read(&all[0], &db, 1).await,
        read(&all[1], &db, 1).await,
        read(&all[2], &db, 1).await,
    ];
    assert!(answers
        .iter()
        .all(|a| a.value.as_ref().unwrap().name == "renamed"));
    assert!(
        answers.iter().all(|a| a.source != Source::Near),
        "no stale near copy"
    );
}

/// Problem first: a writer with no near cache of its own publishes
/// nothing, so a reader's near copy outlives the write (until its TTL).
/// Built with `publish_invalidations`, the same writer tells the reader.
#[tokio::test]
async fn a_writer_without_a_near_cache_tells_others_only_when_asked_to() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let reader = process(&server);
    reader.bus.wait_for(StepKind::Subscribed, 1).await;
    let writer = |publishes: bool| {
        let builder =
            CacheAside::<Item>::builder(Redis::open(&server.url()).unwrap(), KeySpace::new("cache:"));
        if publishes {
            builder.publish_invalidations()
        } else {
            builder
        }
        .build()
        .unwrap()
    };
    read(&reader, &db, 4).await;
    assert_eq!(read(&reader, &db, 4).await.source, Source::Near);

    let silent = writer(false);
    let new = db.rename(4, "renamed by a silent writer");
    let written = silent
        .after_write("item:4", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    assert_eq!(written.published, None);
    let stale = read(&reader, &db, 4).await;
    assert_eq!(stale.source, Source::Near);
    assert_eq!(stale.value.unwrap().name, "item 4", "the old near copy");

    let telling = writer(true);
    let newer = db.rename(4, "renamed by a writer that tells");
    let written = telling
        .after_write("item:4", Change::Updated(&newer), WritePolicy::Invalidate)
        .await;
    assert_eq!(written.published.expect("published").unwrap().receivers, 1);
    reader.bus.wait_for(StepKind::InvalidationReceived, 1).await;
    let fresh = read(&reader, &db, 4).await;
    assert_ne!(fresh.source, Source::Near);
    assert_eq!(fresh.value.unwrap(), newer);
}

/// Pub/Sub is at most once: B, unsubscribed, misses the message and serves
/// its stale near copy; when B subscribes again it clears its near cache,
/// and its next read is fresh.
#[tokio::test]
async fn a_process_that_misses_a_message_recovers_when_it_resubscribes() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let a = process(&server);
    let b = process(&server);
    b.bus.wait_for(StepKind::Subscribed, 1).await;
    read(&b, &db, 2).await;
    b.cache.stop_listening();
    assert!(!b.cache.is_listening());

    let new = db.rename(2, "renamed");
    a.cache
        .after_write("item:2", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    let stale = read(&b, &db, 2).await;
    assert_eq!(stale.source, Source::Near);
    assert_eq!(stale.value.unwrap().name, "item 2", "B missed the message");

    b.cache.listen();
    b.bus.wait_for(StepKind::Subscribed, 2).await;
    assert_eq!(b.cache.near_len(), 0, "cleared on resubscription");
    assert_eq!(read(&b, &db, 2).await.value.unwrap().name, "renamed");
}

/// A near copy lives no longer than the near TTL: the bound on staleness
/// for a process that missed an invalidation.
#[tokio::test]
async fn near_copies_live_no_longer_than_the_near_ttl() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let p = process(&server);
    // (Subscribing clears the near cache: let it happen first.)
    p.bus.wait_for(StepKind::Subscribed, 1).await;
    let short = Options {
        near_ttl: Some(Duration::from_millis(50)),
        ..p.cache.options().clone()
    };
    p.cache
        .get_or_load_with("item:3", &short, p.cache.observer(), db.loader(3))
        .await
        .unwrap();
    assert_eq!(p.cache.near_len(), 1);
    // The near cache's clock has no event to wait on: look, a bounded
    // number of times, until the entry has expired.
    let mut looks = 0;
    while p.cache.near_len() > 0 {
        looks += 1;
        assert!(looks < 500, "the near copy outlived its 50 ms TTL by 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = p
        .cache
        .get_or_load_with("item:3", &short, p.cache.observer(), db.loader(3))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Redis, "the near copy expired");
}
