//! Sandboxes: each browser session's own corner of the playground.
//!
//! A sandbox has its own key space (its name is part of every key), its own
//! database file (so one learner's writes never change another's rows), its
//! own application instances, settings, trace stream and counters.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use cache_aside::{Content, Envelope, KeySpace, Options, Redis};
use tokio::sync::{oneshot, Notify};

use shared::{
    InputError, Kind, LoadState, NodeId, Origin, Outcome, Record, SandboxId, SandboxSettings, ServerMessage,
    Stats, Trace,
};

use crate::config::Limits;
use crate::feed::TraceFeed;
use crate::fleet::Fleet;
use crate::ledger::{longest_hold, KeyLedger};
use crate::load::RunningLoad;
use crate::metrics::Metrics;
use crate::policies;
use crate::private_redis::{PrivateRedisError, PrivateServer, PrivateServers};
use crate::recorder::unix_millis;
use crate::sealing::{SandboxSeal, Sealer};
use crate::store::{simulated_latency, Database, SqlDone, StoreError};
use crate::traffic::TrafficMeter;

/// How many traces a sandbox keeps for browsers that connect later.
pub const RECENT_TRACES: usize = 20;

/// The most reads a sandbox traces per second. A page animates a few
/// traces a second; a flood of reads (a load test, a loop of `curl`) beyond
/// this is counted in the stats, not recorded step by step, so tracing
/// never costs more than the reads themselves.
pub const TRACES_PER_SECOND: u64 = 50;

/// A page's own reads (sent over its WebSocket) are drawn up to this many a
/// second, on a budget of their own: the page asked to see them (a lesson
/// waits for its reads' traces), so a flood of REST reads in the same
/// sandbox must not use up their budget.
pub const ASKED_TRACES_PER_SECOND: u64 = 200;

/// How long a sandbox that was opened and never used is kept once nobody
/// watches it (a page that came and went at once).
pub const NEVER_USED_GRACE: Duration = Duration::from_secs(120);

/// How often, at most, the summary of untraced reads goes out: often
/// enough to look live, rarely enough to cost nothing per watcher.
pub const SUMMARY_EVERY: Duration = Duration::from_millis(250);

/// Why a sandbox cannot be watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unwatchable {
    /// As many watch it as may.
    Full,
    /// It was removed a moment ago.
    Gone,
}

/// A watcher counted in; counted out when dropped.
pub struct Watching(Arc<Sandbox>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

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
    database_not_found: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome, found: bool, total_us: u64, database_us: u64, untraced: bool) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        // `untraced` counts reads (the page says so); untraced writes are
        // in `writes` and in the summaries.
        if untraced && outcome != Outcome::Written {
            add(&self.untraced, 1);
        }
        match outcome {
            // A fail-safe answer is an old value from the cache.
            Outcome::Hit | Outcome::NearHit | Outcome::Stale | Outcome::FailSafe => add(&self.hits, 1),
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
            // A lookup that found no row (not a fail-safe answer, whose
            // database step failed).
            if !found && matches!(outcome, Outcome::Miss | Outcome::Fallback) {
                add(&self.database_not_found, 1);
            }
        }
    }

    fn reset(&self) {
        for counter in [
            &self.hits,
            &self.null_hits,
            &self.misses,
            &self.fallbacks,
            &self.failures,
            &self.writes,
            &self.total_latency_us,
            &self.database_reads,
            &self.database_latency_us,
            &self.untraced,
            &self.database_not_found,
        ] {
            counter.store(0, Ordering::Relaxed);
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
            database_not_found: get(&self.database_not_found),
        }
    }
}

/// Reads that fell back to the database, logged once per burst: Redis
/// down during a herd is a line every ten seconds, not one per read.
static FALLBACKS: BurstLog = BurstLog::new(10_000);

/// Counts a repeated event and says when to log it: the first time, then
/// at most once per window, with how many happened since the last line.
pub struct BurstLog {
    window_ms: u64,
    /// When the last line was due, in milliseconds since the epoch (0:
    /// never).
    logged_at: AtomicU64,
    /// Events since the last line.
    count: AtomicU64,
}

impl BurstLog {
    pub const fn new(window_ms: u64) -> BurstLog {
        BurstLog {
            window_ms,
            logged_at: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one event at `now_ms`; `Some(events)` when a line is due.
    pub fn note(&self, now_ms: u64) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let last = self.logged_at.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < self.window_ms {
            return None;
        }
        // One caller wins the line; the others keep counting.
        self.logged_at
            .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

/// A budget of traces per second: a counter per whole second.
#[derive(Default)]
struct TraceBudget {
    second: AtomicU64,
    used: AtomicU64,
}

impl TraceBudget {
    /// Whether one more operation may be traced this second, of `limit`.
    fn take(&self, limit: u64) -> bool {
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
        self.used.fetch_add(1, Ordering::Relaxed) < limit
    }
}

/// A sandbox's settings, and the engine options they stand for: one value,
/// replaced whole when the settings change, so a request sees one or the
/// other, never half of each.
#[derive(Debug)]
pub struct Config {
    pub settings: SandboxSettings,
    /// For users (and products, unless they have a TTL of their own).
    pub options: Options,
    /// For products.
    pub product_options: Options,
}

impl Config {
    pub fn new(settings: SandboxSettings) -> Config {
        Config {
            options: policies::options(&settings),
            product_options: policies::options_for(&settings, Kind::Products),
            settings,
        }
    }

    /// The engine options for records of `kind`.
    pub fn options_for(&self, kind: Kind) -> &Options {
        match kind {
            Kind::Users => &self.options,
            Kind::Products => &self.product_options,
        }
    }
}

/// What a loader returns: the SQL query's future, made only when the
/// engine calls the loader (on a miss).
pub type Load = Pin<Box<dyn Future<Output = Result<Option<Record>, StoreError>> + Send>>;

/// One sandbox.
pub struct Sandbox {
    pub id: SandboxId,
    /// The sandbox's Redis: the back end's, shared, or a server of its own
    /// (see [`crate::private_redis`]). Its instances use it; so do
    /// inspections outside any operation (the divergence check, a
    /// scenario's verdict).
    pub redis: Redis,
    /// Which Redis that is, for the page.
    pub redis_description: String,
    /// The sandbox's own server, if it has one; stopped when taken.
    private_server: Mutex<Option<PrivateServer>>,
    /// Where this sandbox's keys live.
    pub keys: KeySpace,
    /// The most one Redis command may take.
    pub timeout: Duration,
    /// Seals users' phone numbers before they are cached (with the
    /// back end's keys, as the sandbox's `seal_sensitive` says).
    pub sealer: Arc<SandboxSeal>,
    /// This sandbox's database.
    pub database: Database,
    /// Traces of this sandbox's operations, for the browsers watching it.
    pub feed: Arc<TraceFeed>,
    /// The application instances serving this sandbox; replaced when the
    /// fault lab puts its proxy in front of Redis (see [`Sandbox::fleet`]).
    fleet: RwLock<Arc<Fleet>>,
    /// The fault lab: faults injected into this sandbox's Redis.
    pub faults: crate::faults::FaultLab,
    /// Draws which queries the fault lab fails.
    chaos: cache_aside::random::SplitMix64,
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
    /// Held while a divergence check runs: one at a time.
    pub inspecting: tokio::sync::Mutex<()>,
    /// Held while a key inspection runs: one at a time (apart from the
    /// divergence check, so the diagnostics can run both at once).
    pub listing_keys: tokio::sync::Mutex<()>,
    /// Set when this back end took the sandbox over from a replica that
    /// stopped; the next page to connect is told (see
    /// [`Sandbox::take_moved`]).
    moved: std::sync::atomic::AtomicBool,
    /// Set when this replica lets the sandbox go (another took its lease):
    /// its pages' WebSockets close, so they reconnect to the new holder
    /// instead of running a second copy here (see [`Sandbox::close_pages`]).
    pages_closed: tokio::sync::watch::Sender<bool>,
    /// Traces left this second.
    budget: TraceBudget,
    /// Traces of the pages' own reads left this second.
    asked_budget: TraceBudget,
    /// Whether a summary is due to go out (see [`Sandbox::count_untraced`]).
    summary_due: AtomicBool,
    /// Untraced reads since the last summary.
    traffic: TrafficMeter,
    /// The load generator running here, if any.
    load: Mutex<Option<RunningLoad>>,
    /// The playground's metrics.
    metrics: Arc<Metrics>,
    /// When the sandbox was last used, in milliseconds since the epoch.
    last_used: AtomicU64,
    /// Browsers watching it now.
    watchers: AtomicUsize,
    /// Operations per second it may run (`None`: no limit).
    ops: Option<governor::DefaultDirectRateLimiter>,
    /// The records it may hold in Redis, bounded.
    ledger: KeyLedger,
    /// Held while the sandbox is being reset: one reset at a time.
    resetting: tokio::sync::Mutex<()>,
    /// Set while a reset runs: operations do not start meanwhile.
    frozen: AtomicBool,
    /// Operations under way (see [`Running`]); a sandbox is neither reaped
    /// nor reset under one.
    in_flight: AtomicUsize,
    /// Woken when the last operation under way ends.
    settled: Notify,
    /// Set once the sandbox is removed; nothing starts in it after.
    retired: AtomicBool,
    /// Whether anything was ever done in it (one never used is reaped
    /// sooner).
    used: AtomicBool,
}

/// An operation under way in a sandbox. While it lives the sandbox is
/// neither reaped nor reset. The records it admits are held in the ledger
/// from its start and, when it ends, again from then on: a value stored
/// late (after a pause at a breakpoint, a slow load) is still counted for
/// as long as it can live. Derefs to the sandbox.
pub struct Running {
    sandbox: Arc<Sandbox>,
    admitted: Mutex<Admitted>,
}

/// What a [`Running`] operation admitted: its records, the longest hold,
/// the heaviest weight.
type Admitted = (Vec<(Kind, u64)>, Duration, u64);

impl std::ops::Deref for Running {
    type Target = Arc<Sandbox>;

    fn deref(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }
}

impl Running {
    /// Admits the operation's records, which it may cache with `options`,
    /// within the sandbox's bound on what it holds in Redis (see
    /// [`crate::ledger`]).
    ///
    /// # Errors
    /// [`InputError::OverLimit`] when the sandbox holds all it may.
    pub fn admit(&self, records: &[(Kind, u64)], options: &Options) -> Result<(), InputError> {
        // Background work the call leaves (a stale-while-revalidate
        // refresh) may store a little after the operation ends.
        let hold = longest_hold(options) + Duration::from_secs(30);
        // A padded value takes more memory: it counts as more records.
        let weight = crate::ledger::weight_of_padding(self.sandbox.config().settings.value_padding_bytes);
        self.sandbox.ledger.admit(records, hold, unix_millis(), weight)?;
        let mut admitted = lock(&self.admitted);
        admitted.0.extend_from_slice(records);
        admitted.1 = admitted.1.max(hold);
        admitted.2 = admitted.2.max(weight);
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let (records, hold, weight) = std::mem::take(&mut *lock(&self.admitted));
        if !records.is_empty() {
            self.sandbox.ledger.extend(&records, hold, unix_millis(), weight);
        }
        self.sandbox.touch();
        if self.sandbox.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.sandbox.settled.notify_waiters();
        }
    }
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
    /// The highest `maxmemory` this sandbox may give its Redis, in KiB:
    /// `Some` only when it has a server of its own.
    pub fn own_server_limit_kb(&self) -> Option<u64> {
        lock(&self.private_server).as_ref().map(PrivateServer::limit_kb)
    }

    /// Starts an operation: notes the use, checks the sandbox's
    /// operations-per-second limit (an operation may `weigh` several), and
    /// counts it under way until the returned guard is dropped.
    ///
    /// # Errors
    /// [`SandboxError::Unknown`] once the sandbox is removed;
    /// [`InputError::OverLimit`] at the limit or during a reset.
    pub fn start_operation(self: &Arc<Self>, weigh: u32) -> Result<Running, crate::error::OpError> {
        self.touch();
        self.used.store(true, Ordering::Relaxed);
        self.check_rate(weigh)?;
        if self.frozen.load(Ordering::SeqCst) {
            return Err(
                InputError::OverLimit("this sandbox is being reset; try again in a moment".into()).into(),
            );
        }
        // Counted in, then checked: the reaper retires a sandbox, then
        // checks for operations (both sequentially consistent), so one of
        // the two always sees the other.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let running = Running {
            sandbox: self.clone(),
            admitted: Mutex::new((Vec::new(), Duration::ZERO, 1)),
        };
        if self.retired.load(Ordering::SeqCst) {
            return Err(SandboxError::Unknown(self.id.clone()).into());
        }
        Ok(running)
    }

    /// Checks the operations-per-second limit for `weigh` operations.
    fn check_rate(&self, weigh: u32) -> Result<(), InputError> {
        let too_fast = || InputError::OverLimit("too many operations in this sandbox; wait a moment".into());
        match (&self.ops, std::num::NonZeroU32::new(weigh)) {
            (Some(limiter), Some(n)) => match limiter.check_n(n) {
                Ok(Ok(())) => Ok(()),
                _ => Err(too_fast()),
            },
            _ => Ok(()),
        }
    }

    /// Whether an operation ever ran in it.
    pub fn was_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Retires the sandbox if nobody watches it and nothing runs in it;
    /// after that nothing starts in it. Returns whether it did.
    fn try_retire(&self) -> bool {
        self.retired.store(true, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) > 0 || self.watchers.load(Ordering::SeqCst) > 0 {
            self.retired.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// An entry as it rests in Redis at `key`, and the same entry opened
    /// (its phone numbers unsealed): `None` for bytes that are not an
    /// entry, or an opened `None` for one that does not open here.
    pub fn decode_entry(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Option<(Envelope<Record>, Option<Envelope<Record>>)> {
        let sealed = Envelope::<Record>::decode(bytes).ok()?;
        let content = match &sealed.content {
            Content::Value(record) => match cache_aside::Seal::open(&*self.sealer, key, record.clone()) {
                Some(open) => Content::Value(open),
                None => return Some((sealed, None)),
            },
            Content::NotFound => Content::NotFound,
            Content::Invalidated => Content::Invalidated,
        };
        let opened = Envelope {
            content,
            ..sealed.clone()
        };
        Some((sealed, Some(opened)))
    }

    /// The records whose values may be in Redis now, sorted.
    pub fn held_records(&self) -> Vec<(Kind, u64)> {
        self.ledger.held(unix_millis())
    }

    /// Closes the sockets of every page watching: this back end no longer
    /// holds the sandbox (a replica whose lease another replica took).
    pub fn close_pages(&self) {
        self.pages_closed.send_replace(true);
    }

    /// Changes to `true` when the pages must go (see
    /// [`Sandbox::close_pages`]).
    pub fn pages_closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.pages_closed.subscribe()
    }

    /// Notes a use now.
    pub fn touch(&self) {
        self.last_used.store(unix_millis(), Ordering::Relaxed);
    }

    /// When it was last used, in milliseconds since the epoch.
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// How many browsers watch it now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Counts a watcher in, if there is room for one more; the watcher
    /// counts itself out by dropping the returned guard.
    ///
    /// # Errors
    /// [`Unwatchable`]: no room, or the sandbox was just removed.
    pub fn watch(self: &Arc<Self>, most: usize) -> Result<Watching, Unwatchable> {
        let mut now = self.watchers.load(Ordering::Relaxed);
        loop {
            if now >= most {
                return Err(Unwatchable::Full);
            }
            match self
                .watchers
                .compare_exchange(now, now + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => now = actual,
            }
        }
        self.touch();
        // As for operations: counted in, then checked against retirement.
        if self.retired.load(Ordering::SeqCst) {
            self.watchers.fetch_sub(1, Ordering::AcqRel);
            return Err(Unwatchable::Gone);
        }
        Ok(Watching(self.clone()))
    }

    /// Removes what the sandbox holds outside the process: its instances'
    /// subscriptions, its keys in Redis and, for any sandbox but `default`,
    /// its database files.
    pub async fn clean_up(&self) {
        self.let_go();
        // A server of its own goes, keys and all; in the shared one, its
        // keys are deleted.
        let own = lock(&self.private_server).take();
        match own {
            Some(server) => drop(server),
            None => self.delete_keys().await,
        }
        if self.id.as_str() != SandboxId::DEFAULT {
            Database::remove_files(self.database.path());
        }
    }

    /// Stops what runs in the sandbox here (its load, its instances'
    /// subscriptions), leaving its files and keys.
    pub fn let_go(&self) {
        // Its load would otherwise keep it alive until its time is up.
        drop(self.set_load(None));
        self.fleet().close();
    }

    /// Puts the sandbox back as it started: its rows re-seeded, its keys
    /// deleted, near copies dropped, counters and traces cleared; then
    /// tells every watcher. New operations wait it out ("being reset");
    /// those under way finish first (paused ones are let go), so none
    /// stores a key after the keys are deleted.
    ///
    /// # Errors
    /// [`InputError::OverLimit`] while another reset runs or past the
    /// operations limit; when re-seeding the database fails.
    pub async fn reset(&self) -> Result<(), crate::error::OpError> {
        /// A reset costs as much as this many operations.
        const WEIGHT: u32 = 20;
        /// The longest a reset waits for operations under way.
        const DRAIN: Duration = Duration::from_secs(30);
        let Ok(_one_at_a_time) = self.resetting.try_lock() else {
            return Err(InputError::OverLimit("this sandbox is being reset already".into()).into());
        };
        self.check_rate(WEIGHT)?;
        // A reset starts from quiet: the load generator stops first.
        self.stop_load();
        self.frozen.store(true, Ordering::SeqCst);
        let paused: Vec<u64> = lock(&self.paused).keys().copied().collect();
        for id in paused {
            self.release(id);
        }
        let deadline = tokio::time::Instant::now() + DRAIN;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::warn!(sandbox = %self.id, "reset went ahead with operations still under way");
                break;
            }
        }
        let reseeded = self.database.reseed().await;
        // Redis mended first (its keys are deleted next, and the instances
        // reach it again).
        self.faults.clear();
        self.delete_keys().await;
        for instance in &self.fleet().instances {
            // As it started: every instance listening, no near copies.
            instance.cache.listen();
            instance.cache.near_clear();
        }
        self.counters.reset();
        self.traffic.take();
        lock(&self.recent).clear();
        lock(&self.changed_at).clear();
        self.frozen.store(false, Ordering::SeqCst);
        reseeded?;
        let message = ServerMessage::Reset { stats: self.stats() };
        self.feed.publish(message);
        Ok(())
    }

    /// Deletes the sandbox's keys: those its ledger says it may hold (a
    /// value and its helper keys each, under both spellings), 800 names per
    /// `UNLINK`.
    /// `default` also walks its key space with `SCAN` (never `KEYS`): its
    /// keys may predate this process, with an external Redis.
    async fn delete_keys(&self) {
        let mut names = Vec::new();
        for (kind, id) in self.ledger.held(0) {
            // Under both spellings: with the mistyped-key bug switched on,
            // writes stored the record under the name readers never use.
            for key in [policies::record_key(kind, id), policies::mistyped_key(kind, id)] {
                names.extend([
                    self.keys.value(&key),
                    self.keys.lock(&key),
                    self.keys.lease(&key),
                    self.keys.refresh(&key),
                ]);
            }
        }
        for page in names.chunks(800) {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(page);
            let _ = self.redis.query(&unlink, self.timeout).await;
        }
        self.ledger.clear();
        // The ledger knows the records; the default sandbox's curl users
        // and a server of one's own (the eviction lab's fills) may hold
        // keys it never saw.
        let own_server = self.own_server_limit_kb().is_some();
        if self.id.as_str() == SandboxId::DEFAULT || own_server {
            self.scan_and_delete_keys().await;
        }
        if own_server {
            // As it started: the configured limit and policy.
            let restore = lock(&self.private_server)
                .as_ref()
                .map(PrivateServer::restore_command);
            if let Some(restore) = restore {
                let _ = self.redis.query(&restore, self.timeout).await;
            }
        }
    }

    /// Whether this back end took the sandbox over from a stopped replica
    /// since the last call (once: for the first page that connects).
    pub fn take_moved(&self) -> bool {
        self.moved.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Deletes every key of the sandbox's key space: SCAN and UNLINK, a page
    /// at a time.
    async fn scan_and_delete_keys(&self) {
        let mut cursor = 0u64;
        // Bounded, whatever Redis answers: a page of 500 keys at a time.
        for _ in 0..10_000 {
            let scan = policies::scan_command(&self.keys, cursor, 500);
            let node = policies::scan_node(&self.keys);
            let Ok(reply) = self.redis.query_at(&scan, &node, self.timeout).await else {
                break;
            };
            let Ok((next, keys)) = redis::from_redis_value::<(u64, Vec<String>)>(reply) else {
                break;
            };
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                let _ = self.redis.query(&unlink, self.timeout).await;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }

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
        bound_connections(&self.database, &settings);
        self.sealer.set(settings.seal_sensitive);
        *config = Arc::new(Config::new(settings.clone()));
        // Still under the lock, so the instances follow the settings that
        // were stored last.
        if near_changed {
            self.fleet().near_caches(settings.near_cache);
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
        let (database, latency, jitter, metrics, padding) = (
            self.database.clone(),
            settings.db_latency_ms,
            settings.db_jitter_percent,
            self.metrics.clone(),
            settings.value_padding_bytes as usize,
        );
        // The fault lab's failing database: this query's fate is drawn now
        // (a hit never calls the loader, so it draws for nothing).
        let failing = settings.db_error_percent;
        let fails = failing > 0 && self.chaos.next_unit() * 100.0 < failing as f64;
        // Nothing is prepared until the engine calls the loader: a hit
        // costs no SQL text, no boxed query.
        move || -> Load {
            Box::pin(async move {
                let mut query = database.find(kind, id, simulated_latency(latency, jitter));
                if fails {
                    query = query.failing(StoreError::Injected { percent: failing });
                }
                let (result, done) = query.run_measured().await;
                if !done.reached {
                    metrics.busy();
                }
                ran(done);
                // A padded sandbox makes every value big (section 4.4).
                match result {
                    Ok(Some(record)) if padding > 0 => Ok(Some(record.padded(padding))),
                    other => other,
                }
            })
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Counts one operation: its outcome, whether its record exists, its
    /// wall time, the time its database work took (query plus simulated
    /// delay), and whether it went untraced. Returns the counters.
    pub fn count(
        &self,
        outcome: Outcome,
        found: bool,
        total_us: u64,
        database_us: u64,
        untraced: bool,
    ) -> Stats {
        self.counters
            .count(outcome, found, total_us, database_us, untraced);
        self.metrics.operation(outcome, total_us, database_us);
        if outcome == Outcome::Fallback {
            if let Some(reads) = FALLBACKS.note(unix_millis()) {
                tracing::warn!(
                    reads,
                    "Redis failed or was too slow: {reads} read(s) fell back to the database since the last such line"
                );
            }
        }
        self.counters.snapshot()
    }

    /// Whether the next operation, from `origin`, may be traced step by
    /// step (see [`TRACES_PER_SECOND`] and [`ASKED_TRACES_PER_SECOND`]);
    /// if not, the caller counts it untraced.
    pub fn may_trace(&self, origin: Origin) -> bool {
        match origin {
            Origin::Browser => self.asked_budget.take(ASKED_TRACES_PER_SECOND),
            Origin::Rest | Origin::Scenario | Origin::Load => self.budget.take(TRACES_PER_SECOND),
        }
    }

    /// Counts a read that was not traced (its outcome, wall time, database
    /// time and the diagram nodes it went through) and sends the interval's
    /// summary out soon: at most one message per [`SUMMARY_EVERY`],
    /// serialized once for every watcher, and never a count lost at the end
    /// of a flood.
    pub fn count_untraced(
        self: &Arc<Self>,
        outcome: Outcome,
        found: bool,
        total_us: u64,
        database_us: u64,
        path: &[NodeId],
    ) {
        self.counters.count(outcome, found, total_us, database_us, true);
        self.metrics.operation(outcome, total_us, database_us);
        self.traffic.count(outcome, total_us, path);
        if self.summary_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let sandbox = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(SUMMARY_EVERY).await;
            if let Some(sandbox) = sandbox.upgrade() {
                sandbox.flush_summary(false);
            }
        });
    }

    /// Sends the summary of the reads counted untraced since the last one,
    /// now: if any are due, or always with `always`. A load that ends sends
    /// one before saying so, so a page that hears "ended" holds the final
    /// counters, even when the load's last reads were traced (two traces
    /// may be published in another order than they were counted).
    pub fn flush_summary(&self, always: bool) {
        // Cleared first: a read counted after this line schedules the next
        // summary, so none is left behind; a summary already flushed leaves
        // the scheduled one nothing to send.
        if !self.summary_due.swap(false, Ordering::AcqRel) && !always {
            return;
        }
        let message = ServerMessage::Summary {
            traffic: self.traffic.take(),
            stats: self.stats(),
        };
        self.feed.publish(message);
    }

    /// Puts `load` in place of the one running (which stops); returns the
    /// one it replaced.
    pub fn set_load(&self, load: Option<RunningLoad>) -> Option<RunningLoad> {
        std::mem::replace(&mut *lock(&self.load), load)
    }

    /// The load running here, as it stands.
    pub fn load_state(&self) -> Option<LoadState> {
        lock(&self.load).as_ref().map(RunningLoad::state)
    }

    /// Stops the load running here, if any, and tells every watcher.
    pub fn stop_load(&self) -> Option<LoadState> {
        let load = self.set_load(None)?;
        let mut state = load.state();
        drop(load);
        state.running = false;
        let message = ServerMessage::Load { state: state.clone() };
        self.feed.publish(message);
        Some(state)
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
        self.fleet().set_link(instance, connected)?;
        // Told even when nothing changed, so whoever asked hears back.
        self.announce_instances();
        Ok(())
    }

    /// Tells every watcher how the instances stand.
    pub fn announce_instances(&self) {
        let message = ServerMessage::Instances {
            instances: self.fleet().states(),
        };
        self.feed.publish(message);
    }

    /// The application instances serving this sandbox now.
    pub fn fleet(&self) -> Arc<Fleet> {
        read(&self.fleet).clone()
    }

    /// Moves the instances onto `redis` (the fault proxy): new instances,
    /// following the near-cache setting; operations under way finish on
    /// the old ones.
    ///
    /// # Errors
    /// When the new instances cannot be made.
    pub fn move_fleet_to(&self, redis: &Redis) -> Result<(), String> {
        let fleet = Arc::new(self.fleet().rebuilt_on(redis)?);
        fleet.near_caches(self.config().settings.near_cache);
        let old = std::mem::replace(&mut *write(&self.fleet), fleet);
        // Dropped outside the lock: ending the old instances' subscriptions
        // tells the sandbox, which reads the fleet.
        drop(old);
        self.announce_instances();
        Ok(())
    }

    /// Tells every watcher the fault lab's state.
    pub fn announce_faults(&self, report: &shared::FaultReport) {
        let message = ServerMessage::Faults {
            request_id: None,
            report: report.clone(),
        };
        self.feed.publish(message);
    }

    /// An instance's circuit breaker opened or closed: on the timeline, and
    /// told to the watchers.
    fn breaker_moved(&self, instance: &str, opened: bool) {
        self.faults.note(if opened {
            format!("instance {instance}: circuit breaker opened")
        } else {
            format!("instance {instance}: circuit breaker closed")
        });
        self.announce_faults(&crate::faults::report(self));
    }

    /// Deletes every key the sandbox cached and drops near copies: Redis
    /// restarted without its data.
    pub async fn forget_cached(&self) {
        self.delete_keys().await;
        for instance in &self.fleet().instances {
            instance.cache.near_clear();
        }
    }

    /// How many operations are held at a breakpoint now.
    pub fn paused_count(&self) -> usize {
        lock(&self.paused).len()
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
    /// Occurs when a request names a sandbox that does not exist (never
    /// made, or removed after being idle).
    #[error("no sandbox \"{0}\" (it may have expired): open the playground page for a new one")]
    Unknown(SandboxId),
    /// Occurs when the playground already has as many sandboxes as it may.
    #[error("the playground is full: all {0} sandboxes it may hold are in use; try again in a few minutes")]
    Full(usize),
    /// Occurs when creating the sandbox's files fails in its blocking task.
    #[error("creating the sandbox failed: {0}")]
    Task(String),
    /// Occurs when a sandbox asks for its own redis-server and cannot have
    /// one.
    #[error(transparent)]
    Private(#[from] PrivateRedisError),
    /// Occurs on a replica when another replica holds the sandbox (its
    /// lease in Redis): the balancer sent the request astray, or the owner
    /// stopped less than a lease ago.
    #[error("this sandbox is open on another server of the playground; try again in a few seconds")]
    Elsewhere,
    /// Occurs on a replica when Redis cannot say who holds the sandbox.
    #[error("cannot tell which server holds this sandbox (Redis: {0}); try again in a moment")]
    Ownership(String),
}

/// What every sandbox shares: the back end's choices.
pub struct Setup {
    /// The settings every sandbox starts with.
    pub defaults: SandboxSettings,
    /// The Redis sandboxes use.
    pub redis: Redis,
    /// The most one Redis command may take.
    pub timeout: Duration,
    /// Seals users' phone numbers before they are cached.
    pub sealer: Arc<Sealer>,
    /// Where sandboxes' databases are created (and their template).
    pub sandbox_dir: PathBuf,
    /// Traces that wait for a slow browser.
    pub feed_capacity: usize,
    /// The playground's metrics, shared by every sandbox.
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Starts sandboxes' own servers; `None` with an external Redis.
    pub private_servers: Option<PrivateServers>,
}

/// All sandboxes: `default`, plus those opened by browsers, each removed
/// with its keys and files once idle.
pub struct Sandboxes {
    setup: Setup,
    /// The database of the `default` sandbox (the one `curl` uses).
    default_database: Database,
    /// A seeded database new sandboxes copy.
    template: PathBuf,
    /// Read by every request, written once per new sandbox: a read-write
    /// lock, so requests do not queue behind each other.
    map: RwLock<HashMap<SandboxId, Arc<Sandbox>>>,
    /// Held while a sandbox is being created (an async lock: creation waits
    /// on a blocking task), so two first requests never make one twice.
    creating: tokio::sync::Mutex<()>,
    /// This process's name on the sandboxes' leases (`--replica`, see
    /// [`crate::ownership`]).
    owner: String,
}

impl Sandboxes {
    /// Sandboxes as `setup` says. The `default` sandbox uses
    /// `default_database`; others get a copy of a seeded template in the
    /// setup's directory, made now if missing.
    ///
    /// # Errors
    /// When the template cannot be made.
    pub fn new(setup: Setup, default_database: Database) -> Result<Sandboxes, StoreError> {
        // A name no sandbox can have (they are letters, digits, - and _).
        let template = setup.sandbox_dir.join(".template.sqlite3");
        Database::make_template(&template)?;
        // No sandbox exists yet: files left by a process that crashed or
        // was killed are nobody's. Not so for a replica: the directory is
        // shared, and the others' sandboxes (and those of a replica that
        // stopped, to be taken over) live there.
        if !setup.limits.adopt_sandboxes {
            remove_leftovers(&setup.sandbox_dir);
        }
        Ok(Sandboxes {
            setup,
            default_database,
            template,
            map: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            owner: new_token().to_string(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.setup.limits
    }

    /// How many sandboxes exist, `default` included.
    pub fn len(&self) -> usize {
        read(&self.map).len()
    }

    /// Whether no sandbox exists yet.
    pub fn is_empty(&self) -> bool {
        read(&self.map).is_empty()
    }

    /// An existing sandbox (`default` always exists).
    ///
    /// # Errors
    /// [`SandboxError::Unknown`] for any other name not in use.
    pub fn get(&self, id: &SandboxId) -> Result<Arc<Sandbox>, SandboxError> {
        if let Some(sandbox) = read(&self.map).get(id) {
            return Ok(sandbox.clone());
        }
        if id.as_str() != SandboxId::DEFAULT {
            return Err(SandboxError::Unknown(id.clone()));
        }
        // `default` is made on first use, from its own (persistent) file.
        let mut map = write(&self.map);
        if let Some(sandbox) = map.get(id) {
            return Ok(sandbox.clone());
        }
        let sandbox = self.assemble(id.clone(), self.default_database.clone(), None)?;
        map.insert(id.clone(), sandbox.clone());
        Ok(sandbox)
    }

    /// Why no sandbox here can have a server of its own, if none can
    /// (the back end uses an external Redis).
    pub fn private_servers_refusal(&self) -> Option<PrivateRedisError> {
        self.setup
            .private_servers
            .is_none()
            .then_some(PrivateRedisError::External)
    }

    /// The sandbox a browser asks for: `default` or an existing one as
    /// named; otherwise a new one, named as asked when the limits allow
    /// named sandboxes (local use), else with a server-issued token. A new
    /// one gets a redis-server of its own when `private` asks.
    ///
    /// # Errors
    /// [`SandboxError::Full`] at the cap; [`SandboxError::Private`] when no
    /// server of its own can be had; creation errors.
    pub async fn open(
        &self,
        requested: Option<&SandboxId>,
        private: bool,
    ) -> Result<Arc<Sandbox>, SandboxError> {
        if let Some(id) = requested {
            match self.get(id) {
                Ok(sandbox) => return Ok(sandbox),
                Err(SandboxError::Unknown(_)) => {}
                Err(error) => return Err(error),
            }
        }
        // A server of its own is started before taking the creation lock
        // (starting one takes a while; other sandboxes need not wait).
        let server = match (private, &self.setup.private_servers) {
            (false, _) => None,
            (true, None) => return Err(PrivateRedisError::External.into()),
            (true, Some(servers)) => Some(servers.start().await?),
        };
        let creating = self.creating.lock().await;
        // A replica takes over a sandbox under its own name only when its
        // database is in the shared directory; a name nobody made gets a
        // token, as anywhere (unless names are allowed: local use).
        let adoptable = |id: &SandboxId| {
            self.setup.limits.adopt_sandboxes && self.setup.sandbox_dir.join(format!("{id}.sqlite3")).exists()
        };
        let id = match requested {
            Some(id) if self.setup.limits.named_sandboxes || adoptable(id) => {
                // Made meanwhile by another request?
                if let Some(sandbox) = read(&self.map).get(id) {
                    return Ok(sandbox.clone());
                }
                id.clone()
            }
            _ => new_token(),
        };
        // A replica holds the sandbox's lease before it opens it.
        if self.setup.limits.adopt_sandboxes {
            let key = crate::ownership::key(&id, self.setup.redis.is_cluster());
            match crate::ownership::claim(&self.setup.redis, &key, &self.owner, self.setup.timeout).await {
                Ok(true) => {}
                Ok(false) => return Err(SandboxError::Elsewhere),
                Err(e) => return Err(SandboxError::Ownership(e.to_string())),
            }
        }
        let others = read(&self.map)
            .keys()
            .filter(|k| k.as_str() != SandboxId::DEFAULT)
            .count();
        if others >= self.setup.limits.max_sandboxes {
            return Err(SandboxError::Full(others));
        }
        let (template, path) = (
            self.template.clone(),
            self.setup.sandbox_dir.join(format!("{id}.sqlite3")),
        );
        // A replica taking over a sandbox whose back end stopped: its
        // database file (in the shared data directory) holds every write
        // that back end acknowledged, so it is kept, not re-seeded.
        let adopted = requested == Some(&id) && adoptable(&id);
        let database = tokio::task::spawn_blocking(move || {
            if adopted {
                Database::open(&path)
            } else {
                Database::copy_of(&template, &path)
            }
        })
        .await
        .map_err(|e| SandboxError::Task(e.to_string()))??;
        let sandbox = self.assemble(id.clone(), database, server)?;
        if adopted {
            sandbox.moved.store(true, std::sync::atomic::Ordering::Release);
            // Its keys in Redis were the other back end's (its ledger died
            // with it): emptied, so the cache refills from the database
            // and every key is this back end's to reclaim. Done before
            // anyone can use it, but after the creation lock: the scan may
            // take a while, and other sandboxes need not wait for it.
            drop(creating);
            sandbox.scan_and_delete_keys().await;
            let mut map = write(&self.map);
            return Ok(map.entry(id).or_insert(sandbox).clone());
        }
        write(&self.map).insert(id, sandbox.clone());
        Ok(sandbox)
    }

    /// A replica's take-over of a sandbox a stopped replica held: when
    /// `id` is not open here, this back end adopts sandboxes
    /// (`--replica`) and the shared data directory has its database, it is
    /// opened here (see [`Sandboxes::open`]). Anything else is left as it
    /// is, for the lookup that follows to say.
    ///
    /// # Errors
    /// As [`Sandboxes::open`].
    pub async fn take_over(&self, id: &SandboxId) -> Result<(), SandboxError> {
        // Every REST read and write passes here: no lock unless a replica.
        if !self.setup.limits.adopt_sandboxes || read(&self.map).contains_key(id) {
            return Ok(());
        }
        if !self.setup.sandbox_dir.join(format!("{id}.sqlite3")).exists() {
            return Ok(());
        }
        self.open(Some(id), false).await.map(|_| ())
    }

    /// Renews the lease of every sandbox this replica holds
    /// (`--replica`); a sandbox whose lease another replica took meanwhile
    /// is let go here, its files and keys left to the new owner. Returns
    /// how many were let go.
    pub async fn renew_leases(&self) -> usize {
        if !self.setup.limits.adopt_sandboxes {
            return 0;
        }
        let ids: Vec<SandboxId> = read(&self.map)
            .keys()
            .filter(|k| k.as_str() != SandboxId::DEFAULT)
            .cloned()
            .collect();
        let cluster = self.setup.redis.is_cluster();
        let mut lost = Vec::new();
        for id in ids {
            let key = crate::ownership::key(&id, cluster);
            // A Redis error says nothing of who holds it: kept.
            if let Ok(false) =
                crate::ownership::renew(&self.setup.redis, &key, &self.owner, self.setup.timeout).await
            {
                lost.push(id);
            }
        }
        let let_go: Vec<Arc<Sandbox>> = {
            let mut map = write(&self.map);
            lost.iter().filter_map(|id| map.remove(id)).collect()
        };
        // What runs here stops; its pages reconnect, through the balancer,
        // to the new holder.
        for sandbox in &let_go {
            tracing::warn!(sandbox = %sandbox.id, "another replica holds this sandbox now: closing its pages' sockets");
            sandbox.let_go();
            sandbox.close_pages();
        }
        lost.len()
    }

    /// Whether this back end may delete the sandbox's files and keys: always,
    /// unless it is a replica that no longer holds the sandbox's lease (it
    /// gives the lease up here when it does).
    async fn may_clean_up(&self, id: &SandboxId) -> bool {
        if !self.setup.limits.adopt_sandboxes || id.as_str() == SandboxId::DEFAULT {
            return true;
        }
        let key = crate::ownership::key(id, self.setup.redis.is_cluster());
        matches!(
            crate::ownership::release(&self.setup.redis, &key, &self.owner, self.setup.timeout).await,
            Ok(true)
        )
    }

    /// The playground's metrics as OpenMetrics text, with what is open now.
    pub fn metrics_text(&self) -> String {
        let (mut watchers, mut loads) = (0, 0);
        let sandboxes = {
            let map = read(&self.map);
            for sandbox in map.values() {
                watchers += sandbox.watchers() as u64;
                loads += u64::from(sandbox.load_state().is_some_and(|l| l.running));
            }
            map.len() as u64
        };
        self.setup.metrics.encode(sandboxes, watchers, loads)
    }

    /// Removes the sandboxes nobody watches and nobody used for `idle`
    /// (never `default`), and cleans each up completely: its instances'
    /// subscriptions, its keys in Redis, its database files, its own
    /// redis-server. One never used goes after [`NEVER_USED_GRACE`], one
    /// with a redis-server of its own after `private_sandbox_idle`, if
    /// shorter. Returns how many were removed.
    pub async fn reap(&self, idle: Duration) -> usize {
        let now = unix_millis();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // One that was opened and never used goes sooner; so does one with
        // a redis-server of its own, since those are few.
        let (idle_ms, unused_ms) = (millis(idle), millis(idle.min(NEVER_USED_GRACE)));
        let own_server_ms = millis(idle.min(self.setup.limits.private_sandbox_idle));
        let victims: Vec<Arc<Sandbox>> = {
            let mut map = write(&self.map);
            let idle_ids: Vec<SandboxId> = map
                .iter()
                .filter(|(id, sandbox)| {
                    let mut threshold = if sandbox.was_used() { idle_ms } else { unused_ms };
                    if sandbox.own_server_limit_kb().is_some() {
                        threshold = threshold.min(own_server_ms);
                    }
                    id.as_str() != SandboxId::DEFAULT
                        && now.saturating_sub(sandbox.last_used()) >= threshold
                        // Last: nothing starts in it once retired.
                        && sandbox.try_retire()
                })
                .map(|(id, _)| id.clone())
                .collect();
            idle_ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        let removed = victims.len();
        for sandbox in victims {
            if self.may_clean_up(&sandbox.id).await {
                sandbox.clean_up().await;
            } else {
                // Another replica holds it now: its files and keys are
                // that replica's.
                sandbox.let_go();
            }
        }
        removed
    }

    /// Makes a sandbox around its database.
    fn assemble(
        &self,
        id: SandboxId,
        database: Database,
        mut server: Option<PrivateServer>,
    ) -> Result<Arc<Sandbox>, SandboxError> {
        let keys = policies::key_space(
            &self.setup.defaults.key_prefix,
            &id,
            self.setup.redis.is_cluster(),
        );
        let (redis, redis_description) = match &server {
            Some(server) => (
                Redis::open(&server.url()).map_err(|e| PrivateRedisError::DidNotStart(e.to_string()))?,
                server.describe(),
            ),
            None => (
                self.setup.redis.clone(),
                "the playground's Redis, shared with other sandboxes (each its own keys, bounded)"
                    .to_string(),
            ),
        };
        bound_connections(&database, &self.setup.defaults);
        let mut failure = None;
        // The instances tell the sandbox when they change, so it holds them
        // through a weak reference: no cycle keeps a sandbox alive.
        let sandbox = Arc::new_cyclic(|me: &Weak<Sandbox>| {
            let (me, also_me) = (me.clone(), me.clone());
            let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                if let Some(sandbox) = me.upgrade() {
                    sandbox.announce_instances();
                }
            });
            let tripped: crate::fleet::Tripped = Arc::new(move |instance, opened| {
                if let Some(sandbox) = also_me.upgrade() {
                    sandbox.breaker_moved(instance, opened);
                }
            });
            let sealer = Arc::new(SandboxSeal::new(
                self.setup.sealer.clone(),
                self.setup.defaults.seal_sensitive,
            ));
            let spec = crate::fleet::Spec {
                keys: keys.clone(),
                timeout: self.setup.timeout,
                sealer: sealer.clone(),
                changed,
                tripped,
            };
            let fleet = Fleet::new(&redis, spec).unwrap_or_else(|e| {
                failure = Some(e);
                Fleet::empty()
            });
            Sandbox {
                id,
                redis: redis.clone(),
                redis_description: redis_description.clone(),
                private_server: Mutex::new(server.take()),
                keys: keys.clone(),
                timeout: self.setup.timeout,
                sealer,
                database,
                feed: Arc::new(TraceFeed::new(self.setup.feed_capacity)),
                fleet: RwLock::new(Arc::new(fleet)),
                faults: crate::faults::FaultLab::default(),
                chaos: cache_aside::random::SplitMix64::new(unix_millis()),
                config: RwLock::new(Arc::new(Config::new(self.setup.defaults.clone()))),
                counters: Counters::default(),
                recent: Mutex::new(VecDeque::new()),
                changed_at: Mutex::new(HashMap::new()),
                paused: Mutex::new(HashMap::new()),
                pause_events: Notify::new(),
                herd: tokio::sync::Mutex::new(()),
                inspecting: tokio::sync::Mutex::new(()),
                listing_keys: tokio::sync::Mutex::new(()),
                moved: std::sync::atomic::AtomicBool::new(false),
                pages_closed: tokio::sync::watch::Sender::new(false),
                budget: TraceBudget::default(),
                asked_budget: TraceBudget::default(),
                summary_due: AtomicBool::new(false),
                traffic: TrafficMeter::default(),
                load: Mutex::new(None),
                metrics: self.setup.metrics.clone(),
                last_used: AtomicU64::new(unix_millis()),
                watchers: AtomicUsize::new(0),
                ops: ops_limiter(self.setup.limits.sandbox_ops_per_second),
                ledger: KeyLedger::new(self.setup.limits.sandbox_max_keys),
                resetting: tokio::sync::Mutex::new(()),
                frozen: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                settled: Notify::new(),
                retired: AtomicBool::new(false),
                used: AtomicBool::new(false),
            }
        });
        if let Some(error) = failure {
            return Err(error.into());
        }
        if self.setup.defaults.near_cache {
            sandbox.fleet().near_caches(true);
        }
        Ok(sandbox)
    }
}

/// Removes the sandbox database files in `dir` (not the template).
fn remove_leftovers(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.contains(".sqlite3") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A new sandbox name nobody can guess: `s` and 26 base-32 characters
/// (128 bits from the operating system's random source).
pub fn new_token() -> SandboxId {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    // Without entropy (never on a working system), fall back to the clock
    // and a counter mixed, rather than fail: still unique, less secret.
    if getrandom::fill(&mut bytes).is_err() {
        let fallback = cache_aside::random::mix64(unix_millis()).to_le_bytes();
        bytes[..8].copy_from_slice(&fallback);
    }
    let number = u128::from_le_bytes(bytes);
    let token: String = std::iter::once('s')
        .chain((0..26).map(|i| ALPHABET[((number >> (i * 5)) & 31) as usize] as char))
        .collect();
    SandboxId::parse(&token).expect("tokens are valid sandbox names")
}

/// The per-sandbox operation limiter, if there is a limit.
/// The database's connections as the settings say.
fn bound_connections(database: &Database, settings: &SandboxSettings) {
    database.set_connections(
        settings.db_connections,
        Duration::from_millis(settings.db_wait_ms),
    );
}

fn ops_limiter(per_second: u32) -> Option<governor::DefaultDirectRateLimiter> {
    let per_second = std::num::NonZeroU32::new(per_second)?;
    Some(governor::RateLimiter::direct(governor::Quota::per_second(
        per_second,
    )))
}

#[cfg(test)]
mod tests {
    use super::BurstLog;

    #[test]
    fn a_burst_is_one_line_per_window_with_its_count() {
        let log = BurstLog::new(10_000);
        assert_eq!(log.note(1_000), Some(1), "the first event is logged at once");
        let lines: Vec<u64> = (0..5_000).filter_map(|n| log.note(1_001 + n)).collect();
        assert!(lines.is_empty(), "a burst within the window: no line");
        assert_eq!(log.note(11_000), Some(5_001), "then one line, with the count");
        assert_eq!(log.note(11_001), None);
    }
}
