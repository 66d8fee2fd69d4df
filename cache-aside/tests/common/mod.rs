//! Test harness: a throwaway `redis-server` per test, a small SQLite table
//! as the source of truth, and observers that record or pause.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_aside::{CacheAside, KeySpace, Observer, Options, Pause, Redis, Status, Step, StepKind};
use embedded_redis::{EmbeddedRedis, RedisServerOptions};
use tokio::sync::Notify;

/// What the test loaders return.
pub type Load = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Item>, String>> + Send>>;

/// A record of the test table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    pub id: u64,
    pub name: String,
    pub version: u64,
}

impl Item {
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// A real Redis for one test; stopped when dropped.
pub fn redis_server() -> EmbeddedRedis {
    EmbeddedRedis::start(&RedisServerOptions::default())
        .expect("redis-server starts (apt-get install redis-server)")
}

/// A direct connection, to look behind the cache's back.
pub fn raw(server: &EmbeddedRedis) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The source of truth: an in-memory SQLite table of items 1 to 100, with a
/// count of the loads that reached it and an optional delay per load (a
/// remote database). Cheap to clone.
#[derive(Clone)]
pub struct Db {
    connection: Arc<Mutex<rusqlite::Connection>>,
    loads: Arc<AtomicU64>,
    pub delay: Duration,
}

impl Db {
    pub fn new(delay: Duration) -> Db {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL);",
            )
            .unwrap();
        for id in 1..=100 {
            connection
                .execute("INSERT INTO items VALUES (?1, ?2, 1)", (id, format!("item {id}")))
                .unwrap();
        }
        Db {
            connection: Arc::new(Mutex::new(connection)),
            loads: Arc::new(AtomicU64::new(0)),
            delay,
        }
    }

    /// The loader an application would hand the engine for item `id`.
    pub fn loader(&self, id: u64) -> impl FnOnce() -> Load + Send + 'static {
        let db = self.clone();
        move || -> Load { Box::pin(async move { db.find(id).await }) }
    }

    /// `SELECT` one item, after the delay.
    pub async fn find(&self, id: u64) -> Result<Option<Item>, String> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let connection = self.connection.lock().unwrap();
        let mut statement = connection
            .prepare_cached("SELECT id, name, version FROM items WHERE id = ?1")
            .map_err(|e| e.to_string())?;
        let mut rows = statement
            .query_map([id], |r| {
                Ok(Item {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.next().transpose().map_err(|e| e.to_string())
    }

    /// `UPDATE` an item's name, bumping its version; the new row.
    pub fn rename(&self, id: u64, name: &str) -> Item {
        let connection = self.connection.lock().unwrap();
        connection
            .query_row(
                "UPDATE items SET name = ?2, version = version + 1 WHERE id = ?1 RETURNING id, name, version",
                (id, name),
                |r| {
                    Ok(Item {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        version: r.get(2)?,
                    })
                },
            )
            .unwrap()
    }

    /// `INSERT` an item again (after a delete), with a version of its own.
    pub fn insert(&self, id: u64, name: &str, version: u64) -> Item {
        let connection = self.connection.lock().unwrap();
        connection
            .execute("INSERT INTO items VALUES (?1, ?2, ?3)", (id, name, version))
            .unwrap();
        Item {
            id,
            name: name.to_string(),
            version,
        }
    }

    /// `DELETE` an item.
    pub fn delete(&self, id: u64) {
        let connection = self.connection.lock().unwrap();
        connection
            .execute("DELETE FROM items WHERE id = ?1", [id])
            .unwrap();
    }

    /// Loads that reached the database so far.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }
}

/// A cache of items on `server`, under `cache:`, with `options`; each call
/// makes a handle with a connection of its own, as another application
/// process would have.
pub fn cache(server: &EmbeddedRedis, options: Options) -> CacheAside<Item> {
    CacheAside::builder(Redis::open(&server.url()).unwrap(), KeySpace::new("cache:"))
        // A near cache of 1,000 entries, used when `options.near_ttl` says.
        .near_cache(1_000, Duration::from_secs(30))
        // Not the 250 ms default: a command's time includes connecting,
        // and on a loaded 2-core machine a first connection or a reconnect
        // can take longer, turning an expected hit or load into a
        // fallback. The tests of timeouts build their own cache.
        .timeout(Duration::from_secs(5))
        .options(options)
        .versioned(Item::version)
        .seed(7)
        .build()
        .unwrap()
}

/// One recorded step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub kind: StepKind,
    pub status: Status,
    pub command: String,
    pub reply: String,
    pub message: Option<u64>,
}

/// An observer that writes every step down.
#[derive(Default)]
pub struct Recorder {
    pub steps: Mutex<Vec<Seen>>,
    /// Woken after every step.
    pub stepped: Notify,
}

impl Observer for Recorder {
    fn step(&self, step: &Step<'_>) {
        self.steps.lock().unwrap().push(Seen {
            kind: step.kind,
            status: step.status,
            command: step.command_text(),
            reply: step.reply.to_string(),
            message: step.message,
        });
        self.stepped.notify_waiters();
    }
}

impl Recorder {
    /// The pattern's steps, leaving out the encoding and decoding of
    /// values (see [`Recorder::all_kinds`]).
    pub fn kinds(&self) -> Vec<StepKind> {
        self.all_kinds()
            .into_iter()
            .filter(|k| !matches!(k, StepKind::Encode | StepKind::Decode))
            .collect()
    }

    /// Every step, in order.
    pub fn all_kinds(&self) -> Vec<StepKind> {
        self.steps.lock().unwrap().iter().map(|s| s.kind).collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.steps.lock().unwrap().clone()
    }

    pub fn count(&self, kind: StepKind) -> usize {
        self.steps
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == kind)
            .count()
    }

    /// Waits until a step of `kind` has been seen `n` times (bounded).
    pub async fn wait_for(&self, kind: StepKind, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let stepped = self.stepped.notified();
                if self.count(kind) >= n {
                    return;
                }
                stepped.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {n} × {kind:?} within 10 s: {:?}", self.kinds()));
    }
}

/// An observer that holds the call before its first step of `kind` until
/// [`Gate::open`], and says when the call got there.
pub struct Gate {
    pub kind: StepKind,
    pub reached: Notify,
    opened: Notify,
    held: AtomicU64,
}

impl Gate {
    pub fn before(kind: StepKind) -> Arc<Gate> {
        Arc::new(Gate {
            kind,
            reached: Notify::new(),
            opened: Notify::new(),
            held: AtomicU64::new(0),
        })
    }

    /// Lets the held call go on.
    pub fn open(&self) {
        self.opened.notify_one();
    }
}

impl Observer for Gate {
    fn checkpoint<'a>(&'a self, next: StepKind, _key: &'a str) -> Option<Pause<'a>> {
        if next != self.kind || self.held.fetch_add(1, Ordering::SeqCst) > 0 {
            return None;
        }
        Some(Box::pin(async move {
            let opened = self.opened.notified();
            self.reached.notify_one();
            opened.await;
        }))
    }
}

/// Waits for a notification, at most 10 s.
pub async fn within(notify: &Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), notify.notified())
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 10 s"));
}

/// `CONFIG SET name value`.
pub fn config_set(connection: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(connection)
        .unwrap();
}

/// `PTTL key` in milliseconds.
pub fn pttl(connection: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(connection).unwrap()
}

/// `GET key` as text.
pub fn get(connection: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(connection).unwrap()
}

/// Waits, on Redis's own keyspace event, until `key` has expired (at most
/// 10 s). Redis deletes expired keys lazily and in a background cycle ten
/// times a second, so the event comes soon after the TTL runs out.
pub fn wait_until_expired(server: &EmbeddedRedis, key: &str) {
    let mut commands = raw(server);
    config_set(&mut commands, "notify-keyspace-events", "Ex");
    let mut subscriber = raw(server);
    let mut events = subscriber.as_pubsub();
    events.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    events.subscribe("__keyevent@0__:expired").unwrap();
    // Subscribed first, then looked: an expiry in between is not missed.
    if pttl(&mut commands, key) == -2 {
        return;
    }
    loop {
        let event = events.get_message().expect("the key expires within 10 s");
        if event.get_payload::<String>().is_ok_and(|expired| expired == key) {
            return;
        }
    }
}

/// Puts an entry for `item` at `key` whose fresh time ended a moment ago
/// but which Redis keeps for `keep` more: what stale-while-revalidate finds
/// once a value's TTL has passed. (A logical expiry has no Redis event to
/// wait for, so the test writes the state instead of sleeping into it.)
pub fn put_stale(server: &EmbeddedRedis, key: &str, item: &Item, keep: Duration) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let envelope = cache_aside::Envelope {
        content: cache_aside::Content::Value(item.clone()),
        version: item.version,
        fresh_until_ms: now_ms - 1,
        load_ms: 100,
    };
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(envelope.encode(cache_aside::Encoding::Json).unwrap())
        .arg("PX")
        .arg(keep.as_millis() as u64)
        .query(&mut raw(server))
        .unwrap();
}

/// Waits, on Redis's keyspace events, until `key` is deleted (at most 10 s).
pub fn wait_until_deleted(server: &EmbeddedRedis, key: &str) {
    let mut commands = raw(server);
    config_set(&mut commands, "notify-keyspace-events", "Eg");
    let mut subscriber = raw(server);
    let mut events = subscriber.as_pubsub();
    events.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    events.subscribe("__keyevent@0__:del").unwrap();
    let exists: bool = redis::cmd("EXISTS").arg(key).query(&mut commands).unwrap();
    if !exists {
        return;
    }
    loop {
        let event = events.get_message().expect("the key is deleted within 10 s");
        if event.get_payload::<String>().is_ok_and(|deleted| deleted == key) {
            return;
        }
    }
}

/// Waits, on Redis's keyspace events, until `key` is set (at most 10 s).
pub fn wait_until_set(server: &EmbeddedRedis, key: &str) {
    let mut commands = raw(server);
    config_set(&mut commands, "notify-keyspace-events", "E$");
    let mut subscriber = raw(server);
    let mut events = subscriber.as_pubsub();
    events.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    events.subscribe("__keyevent@0__:set").unwrap();
    let exists: bool = redis::cmd("EXISTS").arg(key).query(&mut commands).unwrap();
    if exists {
        return;
    }
    loop {
        let event = events.get_message().expect("the key is set within 10 s");
        if event.get_payload::<String>().is_ok_and(|set| set == key) {
            return;
        }
    }
}

/// The stale-set race on item 1: a reader loads the row and is held before
/// its store; a writer renames the row and invalidates (which must not
/// fail); then the reader stores. Returns the reader's answer and the row
/// as renamed.
pub async fn stale_set_race(items: &CacheAside<Item>, db: &Db) -> (cache_aside::Answer<Item>, Item) {
    use cache_aside::{Change, Effect, WritePolicy};
    let gate = Gate::before(StepKind::Store);
    let reader = {
        let items = items.clone();
        let gate = gate.clone();
        let loader = db.loader(1);
        tokio::spawn(async move {
            let options = items.options().clone();
            items.get_or_load_with("item:1", &options, &*gate, loader).await
        })
    };
    within(&gate.reached, "the reader reaching its store").await;
    let new = db.rename(1, "renamed");
    let written = items
        .after_write("item:1", Change::Updated(&new), WritePolicy::Invalidate)
        .await;
    assert!(!matches!(written.effect, Effect::Failed(_)), "{written:?}");
    gate.open();
    let answer = reader.await.unwrap().unwrap();
    (answer, new)
}
