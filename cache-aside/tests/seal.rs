//! Sealing: what rests in Redis is sealed, what the application gets is
//! open, and an entry sealed with a retired key is a miss that is replaced.
//! The test seal is a toy cipher (a key name and the reversed text): the
//! engine's part is where sealing happens, not the cryptography.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_aside::{
    CacheAside, Change, KeySpace, Options, Redis, Seal, Source, Stampede, StepKind, WritePolicy,
};
use common::{get, raw, redis_server, Db, Item, Recorder};

/// Seals an item's name with the first of its keys, bound to the Redis key
/// it rests at; opens names sealed with any of them, at that key only.
struct ToySeal {
    keys: Vec<&'static str>,
}

impl Seal<Item> for ToySeal {
    fn seal(&self, at: &str, item: &Item) -> Option<Item> {
        let reversed: String = item.name.chars().rev().collect();
        Some(Item {
            name: format!("sealed:{}:{at}:{reversed}", self.keys[0]),
            ..item.clone()
        })
    }

    fn open(&self, at: &str, item: Item) -> Option<Item> {
        let rest = item.name.strip_prefix("sealed:")?;
        let (key, rest) = rest.split_once(':')?;
        let reversed = rest.strip_prefix(at)?.strip_prefix(':')?;
        self.keys.contains(&key).then(|| Item {
            name: reversed.chars().rev().collect(),
            ..item
        })
    }
}

fn sealed_cache(
    server: &embedded_redis::EmbeddedRedis,
    keys: Vec<&'static str>,
    options: Options,
) -> CacheAside<Item> {
    CacheAside::builder(Redis::open(&server.url()).unwrap(), KeySpace::new("cache:"))
        .near_cache(100, Duration::from_secs(30))
        .options(options)
        .versioned(Item::version)
        .seal(Arc::new(ToySeal { keys }))
        .build()
        .unwrap()
}

#[tokio::test]
async fn redis_holds_only_the_sealed_value_and_readers_get_it_open() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = sealed_cache(&server, vec!["k1"], Options::default());
    let first = items.get_or_load("item:7", db.loader(7)).await.unwrap();
    assert_eq!(first.value.unwrap().name, "item 7", "the loader's value, open");
    let stored = get(&mut raw(&server), "cache:item:7").unwrap();
    assert!(stored.contains("sealed:k1:cache:item:7:7 meti"), "{stored}");
    assert!(!stored.contains("item 7"), "never in the clear: {stored}");
    let hit = items.get_or_load("item:7", db.loader(7)).await.unwrap();
    assert_eq!(hit.source, Source::Redis);
    assert_eq!(hit.value.unwrap().name, "item 7");

    // Write-through seals too.
    let renamed = db.rename(7, "renamed");
    let written = items
        .after_write("item:7", Change::Updated(&renamed), WritePolicy::WriteThrough)
        .await;
    assert_eq!(written.effect, cache_aside::Effect::WroteThrough);
    let stored = get(&mut raw(&server), "cache:item:7").unwrap();
    assert!(stored.contains("sealed:k1:cache:item:7:demaner"), "{stored}");
    // Copied to another record's key, it does not open there: a miss.
    let mut redis = raw(&server);
    let bytes: Vec<u8> = redis::cmd("GET").arg("cache:item:7").query(&mut redis).unwrap();
    let _: () = redis::cmd("SET")
        .arg("cache:item:8")
        .arg(bytes)
        .query(&mut redis)
        .unwrap();
    let moved = items.get_or_load("item:8", db.loader(8)).await.unwrap();
    assert_eq!(
        (moved.source, moved.value.unwrap().name.as_str()),
        (Source::Loaded, "item 8")
    );
    assert_eq!(db.loads(), 2, "item 7 once, item 8 once");
}

#[tokio::test]
async fn keys_rotate_without_serving_what_cannot_be_opened() {
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let old = sealed_cache(&server, vec!["k1"], Options::default());
    old.get_or_load("item:3", db.loader(3)).await.unwrap();

    // Step one of a rotation: k2 is known, k1 still seals. Both open.
    let both = sealed_cache(&server, vec!["k2", "k1"], Options::default());
    let answer = both.get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!(
        (answer.source, answer.value.unwrap().name.as_str()),
        (Source::Redis, "item 3")
    );

    // k1 retired: its entry is a miss, replaced by one sealed with k2.
    let new = sealed_cache(&server, vec!["k2"], Options::default());
    let recorder = Recorder::default();
    let answer = new
        .get_or_load_with("item:3", new.options(), &recorder, db.loader(3))
        .await
        .unwrap();
    assert_eq!(answer.source, Source::Loaded);
    assert_eq!(answer.value.unwrap().name, "item 3");
    assert_eq!(recorder.count(StepKind::Unreadable), 1);
    let stored = get(&mut raw(&server), "cache:item:3").unwrap();
    assert!(stored.contains("sealed:k2:"), "{stored}");
    // And the old process, which cannot open k2, misses rather than
    // serving a sealed name.
    let answer = old.get_or_load("item:3", db.loader(3)).await.unwrap();
    assert_eq!(answer.value.unwrap().name, "item 3");
}

#[tokio::test]
async fn waiters_under_the_lock_get_the_handed_value_open() {
    let server = redis_server();
    let db = Db::new(Duration::from_millis(200));
    let options = Options {
        stampede: Stampede::Lock {
            ttl: Duration::from_secs(2),
            attempts: 50,
        },
        ..Options::default()
    };
    let processes: Vec<_> = (0..3)
        .map(|_| sealed_cache(&server, vec!["k1"], options.clone()))
        .collect();
    for process in &processes {
        process.listen();
    }
    let reads: Vec<_> = processes
        .iter()
        .cycle()
        .take(12)
        .map(|process| {
            let (process, db) = (process.clone(), db.clone());
            tokio::spawn(async move { process.get_or_load("item:9", db.loader(9)).await.unwrap() })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().value.unwrap().name, "item 9");
    }
    assert!(db.loads() <= 3, "the lock held: {} loads", db.loads());
}
