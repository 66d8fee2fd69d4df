//! Sandboxes: each browser session's own corner of the playground.
//!
//! A sandbox has its own key space (its name is part of every key), its own
//! database file (so one learner's writes never change another's rows), its
//! own application instances, settings, trace stream and counters.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use cache_aside::{KeySpace, Options, Redis};
use tokio::sync::{oneshot, Notify};

use shared::{InputError, Kind, Outcome, Record, SandboxId, SandboxSettings, ServerMessage, Stats, Trace};

use crate::feed::{to_json, TraceFeed};
use crate::fleet::Fleet;
use crate::policies;
use crate::store::{simulated_latency, Database, SqlDone, StoreError};

/// How many traces a sandbox keeps for browsers that connect later.
pub const RECENT_TRACES: usize = 20;

/// The most reads a sandbox traces per second. A page animates a few
/// traces a second; a flood of reads (a load test, a loop of `curl`) beyond
/// this is counted in the stats, not recorded step by step, so tracing
/// never costs more than the reads themselves.
pub const TRACES_PER_SECOND: u64 = 50;

/// How often, at most, the counters go out on their own.
const STATS_EVERY: Duration = Duration::from_millis(200);

/// A sandbox's counters, one atomic each, so counting never makes two
/// requests wait for each other. A snapshot is not taken atomically across
/// fields; it is exact once the requests have finished.
#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    null_hits: AtomicU64,
    misses: AtomicU64,
    fallbacks: AtomicU64,
    failures: AtomicU64,
    writes: AtomicU64,
    total_latency_us: AtomicU64,
    database_reads: AtomicU64,
    database_latency_us: AtomicU64,
    untraced: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome, total_us: u64, database_us: u64, untraced: bool) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        if untraced {
            add(&self.untraced, 1);
        }
        match outcome {
            Outcome::Hit | Outcome::NearHit | Outcome::Stale => add(&self.hits, 1),
            Outcome::NullHit => add(&self.null_hits, 1),
            Outcome::Miss => add(&self.misses, 1),
            Outcome::Fallback => add(&self.fallbacks, 1),
            Outcome::Written => return add(&self.writes, 1),
            Outcome::Failed => return add(&self.failures, 1),
        }
        add(&self.total_latency_us, total_us);
        if database_us > 0 {
            add(&self.database_reads, 1);
            add(&self.database_latency_us, database_us);
        }
    }

    fn snapshot(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            hits: get(&self.hits),
            null_hits: get(&self.null_hits),
            misses: get(&self.misses),
            fallbacks: get(&self.fallbacks),
            failures: get(&self.failures),
            writes: get(&self.writes),
            total_latency_us: get(&self.total_latency_us),
            database_reads: get(&self.database_reads),
            database_latency_us: get(&self.database_latency_us),
            untraced: get(&self.untraced),
        }
    }
}

/// A budget of traces per second: a counter per whole second.
#[derive(Default)]
struct TraceBudget {
    second: AtomicU64,
    used: AtomicU64,
}

impl TraceBudget {
    /// Whether one more operation may be traced this second.
    fn take(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let current = self.second.load(Ordering::Relaxed);
        if current != now
            && self
                .second
                .compare_exchange(current, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < TRACES_PER_SECOND
    }
}

/// A sandbox's settings, and the engine options they stand for: one value,
/// replaced whole when the settings change, so a request sees one or the
/// other, never half of each.
#[derive(Debug)]
pub struct Config {
    pub settings: SandboxSettings,
    pub options: Options,
}

impl Config {
    fn new(settings: SandboxSettings) -> Config {
        Config {
            options: policies::options(&settings),
            settings,
        }
    }
}

/// What a loader returns: the SQL query's future, made only when the
/// engine calls the loader (on a miss).
pub type Load = Pin<Box<dyn Future<Output = Result<Option<Record>, StoreError>> + Send>>;

/// One sandbox.
pub struct Sandbox {
    pub id: SandboxId,
    /// The sandbox's Redis, for inspections outside any operation (the
    /// divergence check, a scenario's verdict). Today every sandbox shares
    /// the back end's Redis; a per-sandbox server or a fault proxy goes here.
    pub redis: Redis,
    /// Where this sandbox's keys live.
    pub keys: KeySpace,
    /// The most one Redis command may take.
    pub timeout: Duration,
    /// This sandbox's database.
    pub database: Database,
    /// Traces of this sandbox's operations, for the browsers watching it.
    pub feed: Arc<TraceFeed>,
    /// The application instances serving this sandbox.
    pub fleet: Fleet,
    /// Std locks: each is held for a copy or an update, never across an
    /// `await`. The configuration is read by every request and written
    /// rarely: a read-write lock.
    config: RwLock<Arc<Config>>,
    /// Lock-free: every request counts, on every worker at once.
    counters: Counters,
    /// The latest traces, newest first, for browsers that connect later.
    recent: Mutex<VecDeque<Trace>>,
    /// When each row last changed (milliseconds since the Unix epoch), for
    /// the divergence check's "stale since".
    changed_at: Mutex<HashMap<(Kind, u64), u64>>,
    /// Operations held at a breakpoint, by operation id: sending on the
    /// channel lets one go on.
    paused: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// Woken whenever an operation pauses.
    pause_events: Notify,
    /// Held while a herd runs, so two herds never trample the same key.
    pub herd: tokio::sync::Mutex<()>,
    /// Traces left this second.
    budget: TraceBudget,
    /// Whether counters are due to go out (see [`Sandbox::count_untraced`]).
    stats_due: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Sandbox {
    /// The current settings and engine options.
    pub fn config(&self) -> Arc<Config> {
        read(&self.config).clone()
    }

    /// The current settings.
    pub fn settings(&self) -> SandboxSettings {
        self.config().settings.clone()
    }

    /// Replaces the settings, keeping the key prefix and the Redis timeout
    /// (both fixed when the back end starts: changing the prefix would
    /// orphan every cached key).
    pub fn set_settings(&self, mut settings: SandboxSettings) -> SandboxSettings {
        let mut config = write(&self.config);
        settings.key_prefix = config.settings.key_prefix.clone();
        settings.redis_timeout_ms = config.settings.redis_timeout_ms;
        let near_changed = settings.near_cache != config.settings.near_cache;
        *config = Arc::new(Config::new(settings.clone()));
        // Still under the lock, so the instances follow the settings that
        // were stored last.
        if near_changed {
            self.fleet.near_caches(settings.near_cache);
        }
        settings
    }

    /// The loader the engine runs on a miss of record `kind`/`id`: the SQL
    /// query plus the simulated latency of `settings`. `ran` hears what it
    /// ran (the trace shows it).
    pub fn loader(
        &self,
        kind: Kind,
        id: u64,
        settings: &SandboxSettings,
        ran: impl FnOnce(SqlDone) + Send + 'static,
    ) -> impl FnOnce() -> Load + Send + 'static {
        let (database, latency, jitter) = (
            self.database.clone(),
            settings.db_latency_ms,
            settings.db_jitter_percent,
        );
        // Nothing is prepared until the engine calls the loader: a hit
        // costs no SQL text, no boxed query.
        move || -> Load {
            Box::pin(async move {
                let query = database.find(kind, id, simulated_latency(latency, jitter));
                let (result, done) = query.run_measured().await;
                ran(done);
                result
            })
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Counts one operation: its outcome, its wall time, the time its
    /// database work took (query plus simulated delay), and whether it went
    /// untraced. Returns the counters.
    pub fn count(&self, outcome: Outcome, total_us: u64, database_us: u64, untraced: bool) -> Stats {
        self.counters.count(outcome, total_us, database_us, untraced);
        self.counters.snapshot()
    }

    /// Whether the next operation may be traced step by step (see
    /// [`TRACES_PER_SECOND`]); if not, the caller counts it untraced.
    pub fn may_trace(&self) -> bool {
        self.budget.take()
    }

    /// Counts a read that was not traced, and sends the counters out soon:
    /// at most one message per [`STATS_EVERY`], and never a count lost at
    /// the end of a flood.
    pub fn count_untraced(self: &Arc<Self>, outcome: Outcome, total_us: u64, database_us: u64) {
        self.counters.count(outcome, total_us, database_us, true);
        if self.stats_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let sandbox = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(STATS_EVERY).await;
            if let Some(sandbox) = sandbox.upgrade() {
                sandbox.stats_due.store(false, Ordering::Release);
                let message = ServerMessage::Stats {
                    stats: sandbox.stats(),
                };
                sandbox.feed.publish(Arc::from(to_json(&message)));
            }
        });
    }

    /// Remembers a trace for browsers that connect later.
    pub fn remember(&self, trace: &Trace) {
        let mut recent = lock(&self.recent);
        recent.push_front(trace.clone());
        recent.truncate(RECENT_TRACES);
    }

    /// The latest traces, newest first.
    pub fn recent(&self) -> Vec<Trace> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Notes that a row changed at `at_ms`.
    pub fn row_changed(&self, kind: Kind, id: u64, at_ms: u64) {
        lock(&self.changed_at).insert((kind, id), at_ms);
    }

    /// When each row last changed.
    pub fn changed_at(&self) -> HashMap<(Kind, u64), u64> {
        lock(&self.changed_at).clone()
    }

    /// Cuts or restores an instance's Pub/Sub link, to watch a missed
    /// invalidation and the recovery.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] for an unknown instance, or when near
    /// caches are off (there is nothing to invalidate then).
    pub fn set_link(&self, instance: &str, connected: bool) -> Result<(), InputError> {
        if !self.config().settings.near_cache {
            return Err(InputError::BadSetting(
                "turn near caches on first: without them there is nothing to invalidate".into(),
            ));
        }
        self.fleet.set_link(instance, connected)
    }

    /// Tells every watcher how the instances stand.
    pub fn announce_instances(&self) {
        let message = ServerMessage::Instances {
            instances: self.fleet.states(),
        };
        self.feed.publish(Arc::from(to_json(&message)));
    }

    /// Registers operation `id` as held; it waits on the returned receiver
    /// (see [`Sandbox::wait_held`]) until [`Sandbox::release`].
    pub fn hold(&self, id: u64) -> oneshot::Receiver<()> {
        let (release, released) = oneshot::channel();
        lock(&self.paused).insert(id, release);
        self.pause_events.notify_waiters();
        released
    }

    /// Waits until held operation `id` is released or `timeout` passes.
    /// Returns whether it timed out.
    pub async fn wait_held(&self, id: u64, released: oneshot::Receiver<()>, timeout: Duration) -> bool {
        let timed_out = tokio::time::timeout(timeout, released).await.is_err();
        lock(&self.paused).remove(&id);
        timed_out
    }

    /// Lets held operation `id` go on. Returns whether it was held.
    pub fn release(&self, id: u64) -> bool {
        match lock(&self.paused).remove(&id) {
            Some(release) => release.send(()).is_ok(),
            None => false,
        }
    }

    /// Waits until operation `id` is held, at most `timeout`. Returns
    /// whether it is.
    pub async fn wait_until_held(&self, id: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = self.pause_events.notified();
            if lock(&self.paused).contains_key(&id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, event).await.is_err() {
                return lock(&self.paused).contains_key(&id);
            }
        }
    }
}

/// Why a sandbox could not be created. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Occurs when the sandbox's database file cannot be created.
    #[error(transparent)]
    Database(#[from] StoreError),
    /// Occurs when the engine refuses the instances' options.
    #[error("cannot set up the instances: {0}")]
    Engine(#[from] cache_aside::OptionsError),
}

/// All sandboxes, created on first use.
pub struct Sandboxes {
    defaults: SandboxSettings,
    redis: Redis,
    timeout: Duration,
    /// The database of the `default` sandbox (the one `curl` uses).
    default_database: Database,
    /// Where other sandboxes' databases are created.
    sandbox_dir: PathBuf,
    feed_capacity: usize,
    /// Read by every request, written once per new sandbox: a read-write
    /// lock, so requests do not queue behind each other.
    map: RwLock<HashMap<SandboxId, Arc<Sandbox>>>,
    /// Held while a sandbox is being created.
    creating: Mutex<()>,
}

impl Sandboxes {
    /// Sandboxes that start with `defaults` and use `redis`, each command
    /// within `timeout`. The `default` sandbox uses `default_database`;
    /// others get a seeded file each in `sandbox_dir`. Up to
    /// `feed_capacity` traces wait for a slow browser.
    pub fn new(
        defaults: SandboxSettings,
        redis: Redis,
        timeout: Duration,
        default_database: Database,
        sandbox_dir: PathBuf,
        feed_capacity: usize,
    ) -> Sandboxes {
        Sandboxes {
            defaults,
            redis,
            timeout,
            default_database,
            sandbox_dir,
            feed_capacity,
            map: RwLock::new(HashMap::new()),
            creating: Mutex::new(()),
        }
    }

    /// The sandbox with this name, created if new.
    ///
    /// # Errors
    /// When a new sandbox's database or instances cannot be created.
    pub fn get(&self, id: &SandboxId) -> Result<Arc<Sandbox>, SandboxError> {
        if let Some(sandbox) = read(&self.map).get(id) {
            return Ok(sandbox.clone());
        }
        // One creation at a time, outside the map's lock (seeding a new file
        // takes a few milliseconds and lookups should not wait for it), so
        // two first requests never seed one file twice or start two fleets.
        let _creating = lock(&self.creating);
        if let Some(sandbox) = read(&self.map).get(id) {
            return Ok(sandbox.clone());
        }
        let database = if id.as_str() == SandboxId::DEFAULT {
            self.default_database.clone()
        } else {
            Database::open(&self.sandbox_dir.join(format!("{id}.sqlite3")))?
        };
        let keys = policies::key_space(&self.defaults.key_prefix, id);
        let mut failure = None;
        // The instances tell the sandbox when they change, so it holds them
        // through a weak reference: no cycle keeps a sandbox alive.
        let sandbox = Arc::new_cyclic(|me: &Weak<Sandbox>| {
            let me = me.clone();
            let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                if let Some(sandbox) = me.upgrade() {
                    sandbox.announce_instances();
                }
            });
            let fleet = Fleet::new(&self.redis, &keys, self.timeout, changed).unwrap_or_else(|e| {
                failure = Some(e);
                Fleet::empty()
            });
            Sandbox {
                id: id.clone(),
                redis: self.redis.clone(),
                keys: keys.clone(),
                timeout: self.timeout,
                database,
                feed: Arc::new(TraceFeed::new(self.feed_capacity)),
                fleet,
                config: RwLock::new(Arc::new(Config::new(self.defaults.clone()))),
                counters: Counters::default(),
                recent: Mutex::new(VecDeque::new()),
                changed_at: Mutex::new(HashMap::new()),
                paused: Mutex::new(HashMap::new()),
                pause_events: Notify::new(),
                herd: tokio::sync::Mutex::new(()),
                budget: TraceBudget::default(),
                stats_due: AtomicBool::new(false),
            }
        });
        if let Some(error) = failure {
            return Err(error.into());
        }
        if self.defaults.near_cache {
            sandbox.fleet.near_caches(true);
        }
        write(&self.map).insert(id.clone(), sandbox.clone());
        Ok(sandbox)
    }
}
