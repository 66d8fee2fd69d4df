//! The database: the source of truth the cache sits beside.
//!
//! SQLite, embedded, in one file. On first open it creates the tables and
//! seeds them with deterministic sample data, so every learner sees the same
//! records. Each query can be slowed by a simulated delay to imitate a remote
//! database; the delay is applied after the real query and reported apart
//! from it (see [`SqlCall`]). Like a real database server it has a bounded
//! number of connections ([`Connections`]): a query holds one for its whole
//! time, simulated delay included, and the rest queue, up to a limit, so a
//! crowd of misses has a cost that shows.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use shared::{Kind, Product, Record, User};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How many users the seed creates (ids 1 to 1000).
pub const SEEDED_USERS: u64 = 1000;
/// How many products the seed creates (ids 1 to 500).
pub const SEEDED_PRODUCTS: u64 = 500;

/// The SQLite database. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// One connection, used from Tokio's blocking pool. A std mutex: it is
    /// never held across an `await`, and SQLite queries on this data take
    /// microseconds, so contention is negligible next to the simulated delay
    /// (which is applied outside the lock, so slow "remote" queries still
    /// overlap the way they would on a real database).
    connection: Mutex<Connection>,
    /// Counts the queries that reached the database. Tests use it to prove
    /// that a hit did not touch the database.
    queries: AtomicU64,
    /// The connections an operation's queries share (`None`: unbounded).
    connections: RwLock<Option<Connections>>,
}

/// A database server's connections: at most `size` queries at once; the
/// others queue, each for at most `wait`, and then fail as busy. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Connections {
    free: Arc<Semaphore>,
    size: u64,
    wait: Duration,
}

impl Connections {
    /// `size` connections (at least one); a query waits at most `wait` for
    /// one.
    pub fn new(size: u64, wait: Duration) -> Connections {
        let size = size.max(1);
        Connections {
            free: Arc::new(Semaphore::new(usize::try_from(size).unwrap_or(usize::MAX))),
            size,
            wait,
        }
    }

    /// Waits for a free connection, at most `wait`.
    async fn take(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        match tokio::time::timeout(self.wait, self.free.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out (the semaphore is never closed).
            _ => Err(StoreError::Busy {
                connections: self.size,
                waited_ms: u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Queries running now.
    pub fn in_use(&self) -> u64 {
        self.size - self.free.available_permits() as u64
    }
}

/// Why the database failed. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Occurs when the database file cannot be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    /// Occurs when the data directory cannot be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// Occurs when SQLite rejects a statement or the file is damaged.
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Occurs when the blocking task running a query panics or is cancelled.
    #[error("database task failed: {0}")]
    Task(String),
    /// Occurs when every connection stayed in use for as long as a query
    /// may wait for one: the database is saturated.
    #[error("database busy: none of its {connections} connections came free within {waited_ms} ms")]
    Busy { connections: u64, waited_ms: u64 },
    /// Occurs when the sandbox's fault lab makes queries fail
    /// ([`shared::SandboxSettings::db_error_percent`]).
    #[error("database unavailable: the fault lab fails {percent} % of queries")]
    Injected { percent: u64 },
    /// Occurs in a sandbox with its fallback off (the naive application)
    /// when Redis failed: the read fails without asking the database.
    #[error("Redis failed ({0}) and this application has no fallback")]
    NoFallback(String),
}

/// One SQL statement, ready to run, with the text the trace shows for it.
pub struct SqlCall<T> {
    /// The statement and its parameters, as sent.
    pub text: String,
    /// The delay to add after the real query.
    pub simulated_delay: Duration,
    pub(crate) run: Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>,
    /// A short form of the result for the trace (`1 row`, `0 rows`).
    pub(crate) summarize: fn(&T) -> String,
    /// The connections it must take one of (`None`: no limit).
    connections: Option<Connections>,
    /// Whether the simulated delay comes before the real query (the
    /// request still on its way to the database) instead of after it.
    delay_first: bool,
    /// Held before it runs until this is notified (see [`SqlCall::held_until`]).
    hold: Option<Arc<Notify>>,
}

/// The longest a held statement waits for its release before it runs
/// anyway: a scenario that lost its reader never leaves a write hanging.
const HOLD_AT_MOST: Duration = Duration::from_secs(10);

/// What a statement did, for the trace: the text, the reply in short, the
/// real query time and the simulated delay, apart.
#[derive(Clone, Debug)]
pub struct SqlDone {
    pub text: String,
    pub summary: String,
    pub real: Duration,
    pub simulated: Duration,
    /// How long it waited for a free connection.
    pub queued: Duration,
    /// Whether it reached the database (not when no connection came free).
    pub reached: bool,
}

impl<T> SqlCall<T> {
    /// Runs the statement without recording it, for inspections that are
    /// not part of an operation (the divergence check). No simulated delay.
    ///
    /// # Errors
    /// Whatever the query returned.
    pub async fn execute(self) -> Result<T, StoreError> {
        self.run.await
    }

    /// Takes a connection (waiting in the queue if all are in use), runs
    /// the statement, then sleeps the simulated delay (only after a
    /// success), holding the connection throughout, as a slow remote query
    /// would. Measures the wait, the query and the delay apart.
    /// The same statement, failing with `error` instead of running (a
    /// fault injected by the lab).
    #[must_use]
    pub fn failing(mut self, error: StoreError) -> Self {
        self.run = Box::pin(async move { Err(error) });
        self
    }

    /// The same statement, its simulated delay spent before it runs when
    /// `first`: it then takes effect at the end of the delay, not its start.
    #[must_use]
    pub fn delayed_first(mut self, first: bool) -> Self {
        self.delay_first = first;
        self
    }

    /// The same statement, held before it takes a connection until
    /// `release` is notified (at most [`HOLD_AT_MOST`]): how a scenario
    /// puts a reader between an early delete and the database write on any
    /// machine, however slow, instead of racing the delay.
    #[must_use]
    pub fn held_until(mut self, release: Option<Arc<Notify>>) -> Self {
        self.hold = release;
        self
    }

    pub async fn run_measured(self) -> (Result<T, StoreError>, SqlDone) {
        if let Some(release) = &self.hold {
            // Before taking a connection (the reader it waits for may need
            // one), and outside the statement's figures (queue, query,
            // delay): this wait is the scenario's, not the database's. Only
            // the write's total time includes it. Released or given up on,
            // it runs.
            let _ = tokio::time::timeout(HOLD_AT_MOST, release.notified()).await;
        }
        let queued_at = Instant::now();
        let _connection = match &self.connections {
            Some(connections) => match connections.take().await {
                Ok(permit) => Some(permit),
                Err(busy) => {
                    let done = SqlDone {
                        text: self.text,
                        summary: format!("error: {busy}"),
                        real: Duration::ZERO,
                        simulated: Duration::ZERO,
                        queued: queued_at.elapsed(),
                        reached: false,
                    };
                    return (Err(busy), done);
                }
            },
            None => None,
        };
        let queued = queued_at.elapsed();
        let delay_started = Instant::now();
        if self.delay_first && !self.simulated_delay.is_zero() {
            tokio::time::sleep(self.simulated_delay).await;
        }
        let delayed_first = delay_started.elapsed();
        let started = Instant::now();
        let result = self.run.await;
        let real = started.elapsed();
        let (summary, simulated) = match &result {
            Ok(value) if !self.delay_first => {
                let delay_started = Instant::now();
                if !self.simulated_delay.is_zero() {
                    tokio::time::sleep(self.simulated_delay).await;
                }
                ((self.summarize)(value), delay_started.elapsed())
            }
            Ok(value) => ((self.summarize)(value), delayed_first),
            Err(error) => (format!("error: {error}"), delayed_first),
        };
        let done = SqlDone {
            text: self.text,
            summary,
            real,
            simulated,
            queued,
            reached: true,
        };
        (result, done)
    }
}

/// The simulated latency of one query: `base_ms`, varied by up to
/// `jitter_percent` either way. Real latencies vary, and races need that.
pub fn simulated_latency(base_ms: u64, jitter_percent: u64) -> Duration {
    static RANDOM: cache_aside::random::SplitMix64 = cache_aside::random::SplitMix64::new(0x5eed);
    let jitter = jitter_percent.min(100) as f64 / 100.0;
    let factor = 1.0 + jitter * (2.0 * RANDOM.next_unit() - 1.0);
    Duration::from_secs_f64((base_ms as f64 * factor).max(0.0) / 1000.0)
}

impl Database {
    /// Opens (or creates and seeds) the SQLite file at `path`, creating its
    /// directory if needed.
    ///
    /// # Errors
    /// [`StoreError::DataDir`], [`StoreError::Open`] or [`StoreError::Sql`].
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut connection = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        create_and_seed(&mut connection)?;
        Ok(Database {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                connection: Mutex::new(connection),
                queries: AtomicU64::new(0),
                connections: RwLock::new(None),
            }),
        })
    }

    /// Makes `path` a seeded database file that new sandboxes copy (far
    /// faster than seeding 1,500 rows each time), if it is not one yet.
    ///
    /// # Errors
    /// As [`Database::open`].
    pub fn make_template(path: &Path) -> Result<(), StoreError> {
        let template = Database::open(path)?;
        let connection = template
            .inner
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Everything into the main file, so a plain copy is complete.
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    /// A new database at `path`, copied from a template made by
    /// [`Database::make_template`]. Blocking: call it off the async workers.
    ///
    /// # Errors
    /// [`StoreError::DataDir`] when the copy fails, or as [`Database::open`].
    pub fn copy_of(template: &Path, path: &Path) -> Result<Database, StoreError> {
        std::fs::copy(template, path).map_err(|source| StoreError::DataDir {
            path: path.to_path_buf(),
            source,
        })?;
        Database::open(path)
    }

    /// Removes a database's files (the file, its WAL and shared memory).
    pub fn remove_files(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }

    /// Puts every row back as seeded (the `default` sandbox's reset).
    ///
    /// # Errors
    /// When SQLite fails; the reseed is one transaction, so nothing is half
    /// done.
    pub async fn reseed(&self) -> Result<(), StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            // One hold of the connection: no query sees the tables empty.
            let mut connection = db.inner.connection.lock().unwrap_or_else(|p| p.into_inner());
            connection.execute_batch("DELETE FROM users; DELETE FROM products; PRAGMA user_version = 0;")?;
            create_and_seed(&mut connection)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many queries have reached the database since it was opened.
    pub fn query_count(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Bounds the connections operations' queries share from now on
    /// (queries already holding one of the old ones finish on it). A no-op
    /// when nothing changed, so waiting queries keep their place.
    pub fn set_connections(&self, size: u64, wait: Duration) {
        let mut current = self.inner.connections.write().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.size == size.max(1) && c.wait == wait)
        {
            return;
        }
        *current = Some(Connections::new(size, wait));
    }

    /// The connections in force, if bounded.
    pub fn connections(&self) -> Option<Connections> {
        self.inner
            .connections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads one record by id; `None` if there is no such row.
    pub fn find(&self, kind: Kind, id: u64, simulated_delay: Duration) -> SqlCall<Option<Record>> {
        let sql = match kind {
            Kind::Users => "SELECT id, name, email, city, joined, version, phone FROM users WHERE id = ?1",
            Kind::Products => {
                "SELECT id, name, category, price_cents, stock, version FROM products WHERE id = ?1"
            }
        };
        self.call(
            format!("{sql}  -- ?1 = {id}"),
            simulated_delay,
            summarize_row,
            move |conn| {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(statement
                    .query_row(params![id as i64], |row| record_from_row(kind, row))
                    .optional()?)
            },
        )
    }

    /// Sets a record's name and bumps its version; returns the new row, or
    /// `None` if there is no such row.
    pub fn update_name(
        &self,
        kind: Kind,
        id: u64,
        name: String,
        simulated_delay: Duration,
    ) -> SqlCall<Option<Record>> {
        let sql = match kind {
            Kind::Users => {
                "UPDATE users SET name = ?2, version = version + 1 WHERE id = ?1 \
                 RETURNING id, name, email, city, joined, version, phone"
            }
            Kind::Products => {
                "UPDATE products SET name = ?2, version = version + 1 WHERE id = ?1 \
                 RETURNING id, name, category, price_cents, stock, version"
            }
        };
        let text = format!("{sql}  -- ?1 = {id}, ?2 = {name:?}");
        self.call(text, simulated_delay, summarize_row, move |conn| {
            let mut statement = conn.prepare_cached(sql)?;
            Ok(statement
                .query_row(params![id as i64, name], |row| record_from_row(kind, row))
                .optional()?)
        })
    }

    /// Sets a product's price and stock and bumps its version; returns the
    /// new row, or `None` if there is no such product.
    pub fn reprice(&self, id: u64, price_cents: u64, stock: u64) -> SqlCall<Option<Record>> {
        let sql = "UPDATE products SET price_cents = ?2, stock = ?3, version = version + 1 WHERE id = ?1 \
                   RETURNING id, name, category, price_cents, stock, version";
        let text = format!("{sql}  -- ?1 = {id}, ?2 = {price_cents}, ?3 = {stock}");
        self.call(text, Duration::ZERO, summarize_row, move |conn| {
            let mut statement = conn.prepare_cached(sql)?;
            Ok(statement
                .query_row(params![id as i64, price_cents as i64, stock as i64], |row| {
                    record_from_row(Kind::Products, row)
                })
                .optional()?)
        })
    }

    /// Removes a record; returns whether a row was removed.
    pub fn delete(&self, kind: Kind, id: u64, simulated_delay: Duration) -> SqlCall<bool> {
        let sql = match kind {
            Kind::Users => "DELETE FROM users WHERE id = ?1",
            Kind::Products => "DELETE FROM products WHERE id = ?1",
        };
        let summarize: fn(&bool) -> String = |removed| {
            if *removed {
                "1 row".into()
            } else {
                "0 rows".into()
            }
        };
        self.call(
            format!("{sql}  -- ?1 = {id}"),
            simulated_delay,
            summarize,
            move |conn| {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(statement.execute(params![id as i64])? > 0)
            },
        )
    }

    /// Wraps a query as an [`SqlCall`] that runs on the blocking pool.
    fn call<T, F>(
        &self,
        text: String,
        simulated_delay: Duration,
        summarize: fn(&T) -> String,
        query: F,
    ) -> SqlCall<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        SqlCall {
            text,
            simulated_delay,
            run: Box::pin(async move { db.blocking(query).await }),
            summarize,
            connections: self.connections(),
            delay_first: false,
            hold: None,
        }
    }

    /// Runs `f` on the connection in Tokio's blocking pool, so a query never
    /// stalls the async workers.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            db.inner.queries.fetch_add(1, Ordering::Relaxed);
            let connection = db.inner.connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&connection)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// The schema version this code writes (SQLite's `user_version`).
const SCHEMA_VERSION: i64 = 3;

/// One row as a record; the columns are those the queries above select.
fn record_from_row(kind: Kind, row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let id = row.get::<_, i64>(0)? as u64;
    Ok(match kind {
        Kind::Users => Record::User(User {
            id,
            name: row.get(1)?,
            email: row.get(2)?,
            city: row.get(3)?,
            joined: row.get(4)?,
            version: row.get::<_, i64>(5)? as u64,
            phone: row.get(6)?,
            notes: String::new(),
        }),
        Kind::Products => Record::Product(Product {
            id,
            name: row.get(1)?,
            category: row.get(2)?,
            price_cents: row.get::<_, i64>(3)? as u64,
            stock: row.get::<_, i64>(4)? as u64,
            version: row.get::<_, i64>(5)? as u64,
            notes: String::new(),
        }),
    })
}

fn summarize_row(row: &Option<Record>) -> String {
    match row {
        Some(record) => format!("1 row ({}, version {})", record.title(), record.version()),
        None => "0 rows".into(),
    }
}

/// Creates the tables and fills them with the sample data, once, in one
/// transaction (so a crash mid-seed leaves no half-filled table). Files from
/// before row versions get a `version` column; files from before phone
/// numbers get a `phone` column, filled with the seed's (names and other
/// changes kept).
fn create_and_seed(connection: &mut Connection) -> Result<(), StoreError> {
    // WAL, with its file cut back to 1 MB at each checkpoint: without the
    // limit it keeps the size of its busiest moment.
    connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA journal_size_limit = 1048576;")?;
    let schema: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if schema >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = connection.transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (
             id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
             city TEXT NOT NULL, joined TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1,
             phone TEXT NOT NULL DEFAULT '');
         CREATE TABLE IF NOT EXISTS products (
             id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
             price_cents INTEGER NOT NULL, stock INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1);",
    )?;
    for table in ["users", "products"] {
        let has_version: bool = tx.query_row(
            &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = 'version'"),
            [],
            |r| r.get(0),
        )?;
        if !has_version {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN version INTEGER NOT NULL DEFAULT 1"
            ))?;
        }
    }
    let has_phone: bool = tx.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('users') WHERE name = 'phone'",
        [],
        |r| r.get(0),
    )?;
    if !has_phone {
        tx.execute_batch("ALTER TABLE users ADD COLUMN phone TEXT NOT NULL DEFAULT ''")?;
        let mut fill = tx.prepare("UPDATE users SET phone = ?2 WHERE id = ?1")?;
        for id in 1..=SEEDED_USERS {
            fill.execute(params![id as i64, seed::user(id).phone])?;
        }
    }
    let users: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
    let products: i64 = tx.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?;
    if users == 0 {
        let mut insert = tx.prepare(
            "INSERT INTO users (id, name, email, city, joined, version, phone) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
        )?;
        for id in 1..=SEEDED_USERS {
            let u = seed::user(id);
            insert.execute(params![u.id as i64, u.name, u.email, u.city, u.joined, u.phone])?;
        }
    }
    if products == 0 {
        let mut insert = tx.prepare("INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5, 1)")?;
        for id in 1..=SEEDED_PRODUCTS {
            let p = seed::product(id);
            insert.execute(params![
                p.id as i64,
                p.name,
                p.category,
                p.price_cents as i64,
                p.stock as i64
            ])?;
        }
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

/// Deterministic sample data: record `id` is always the same record.
pub mod seed {
    // A small integer hash (SplitMix64's finalizer), so neighbouring ids
    // get unrelated-looking values without any random state.
    use cache_aside::random::mix64 as mix;
    use shared::{Product, User};

    const FIRST: [&str; 20] = [
        "Ada",
        "Alan",
        "Grace",
        "Linus",
        "Barbara",
        "Dennis",
        "Margaret",
        "Ken",
        "Frances",
        "Edsger",
        "Radia",
        "Donald",
        "Hedy",
        "Tim",
        "Katherine",
        "Guido",
        "Sophie",
        "Niklaus",
        "Annie",
        "Bjarne",
    ];
    const LAST: [&str; 25] = [
        "Lovelace",
        "Turing",
        "Hopper",
        "Torvalds",
        "Liskov",
        "Ritchie",
        "Hamilton",
        "Thompson",
        "Allen",
        "Dijkstra",
        "Perlman",
        "Knuth",
        "Lamarr",
        "Berners-Lee",
        "Johnson",
        "van Rossum",
        "Wilson",
        "Wirth",
        "Easley",
        "Stroustrup",
        "Kay",
        "Goldberg",
        "Backus",
        "Hoare",
        "Cerf",
    ];
    const CITIES: [&str; 12] = [
        "Oslo",
        "Lisbon",
        "Nairobi",
        "Osaka",
        "Lima",
        "Toronto",
        "Krakow",
        "Austin",
        "Pune",
        "Melbourne",
        "Dublin",
        "Seoul",
    ];
    const ADJECTIVES: [&str; 10] = [
        "Compact", "Sturdy", "Quiet", "Bright", "Foldable", "Classic", "Smart", "Rugged", "Tiny", "Deluxe",
    ];
    const ITEMS: [(&str, &str); 10] = [
        ("Desk Lamp", "home"),
        ("Kettle", "kitchen"),
        ("Backpack", "outdoor"),
        ("Keyboard", "electronics"),
        ("Notebook", "office"),
        ("Water Bottle", "outdoor"),
        ("Headphones", "electronics"),
        ("Chair", "home"),
        ("Teapot", "kitchen"),
        ("Stapler", "office"),
    ];

    /// The seeded user with this id.
    pub fn user(id: u64) -> User {
        let h = mix(id);
        let first = FIRST[(h % 20) as usize];
        let last = LAST[((h >> 8) % 25) as usize];
        let day = (h >> 16) % 28 + 1;
        let month = (h >> 24) % 12 + 1;
        let year = 2015 + (h >> 32) % 10;
        User {
            id,
            name: format!("{first} {last}"),
            email: format!(
                "{}.{}{id}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace(' ', "")
            ),
            city: CITIES[((h >> 40) % 12) as usize].into(),
            joined: format!("{year}-{month:02}-{day:02}"),
            // 555-01xx numbers are set aside for fiction: none is real.
            phone: format!("+1 {:03} 555 01{:02}", 200 + (h >> 48) % 800, id % 100),
            version: 1,
            notes: String::new(),
        }
    }

    /// The seeded product with this id.
    pub fn product(id: u64) -> Product {
        let h = mix(id ^ 0x5eed);
        let (item, category) = ITEMS[(h % 10) as usize];
        Product {
            id,
            name: format!("{} {item}", ADJECTIVES[((h >> 8) % 10) as usize]),
            category: category.into(),
            price_cents: 499 + (h >> 16) % 20_000,
            stock: (h >> 40) % 250,
            version: 1,
            notes: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file from before phone numbers (schema 2) keeps every change made
    /// to it, and gains the seed's phone numbers.
    #[test]
    fn an_older_file_gains_phone_numbers_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let connection = Connection::open(&path).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
                         city TEXT NOT NULL, joined TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1);
                     CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
                         price_cents INTEGER NOT NULL, stock INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1);
                     INSERT INTO users VALUES (1, 'Renamed Long Ago', 'a@example.com', 'Oslo', '2020-01-01', 4);
                     INSERT INTO products VALUES (1, 'Old Lamp', 'home', 100, 1, 1);
                     PRAGMA user_version = 2;",
                )
                .unwrap();
        }
        let database = Database::open(&path).unwrap();
        let connection = database.inner.connection.lock().unwrap();
        let (name, version, phone): (String, i64, String) = connection
            .query_row("SELECT name, version, phone FROM users WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((name.as_str(), version), ("Renamed Long Ago", 4));
        assert_eq!(phone, seed::user(1).phone);
        assert!(phone.contains(" 555 01"), "{phone}");
        let schema: i64 = connection
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(schema, SCHEMA_VERSION);
    }
}
