//! Sandboxes: each browser session's own corner of the playground.
//!
//! A sandbox namespaces cache keys (its name is part of every key), has its
//! own database file (so one learner's writes never change another's rows),
//! its own settings, trace stream and counters.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use shared::{Kind, SandboxId, SandboxSettings, Stats, Trace};

use crate::cache::Cache;
use crate::cache_aside::CacheAside;
use crate::feed::TraceFeed;
use crate::instance::{Fleet, Instance};
use crate::store::{Database, StoreError};

/// How many traces a sandbox keeps for browsers that connect later.
pub const RECENT_TRACES: usize = 20;

/// One sandbox.
pub struct Sandbox {
    pub id: SandboxId,
    /// The Redis this sandbox uses. Today every sandbox shares the back end's
    /// Redis; this is where a per-sandbox server or a fault proxy will go.
    pub cache: Cache,
    /// This sandbox's database.
    pub database: Database,
    /// Traces of this sandbox's operations, for the browsers watching it.
    pub feed: Arc<TraceFeed>,
    /// The application instances serving this sandbox.
    pub fleet: Fleet,
    /// Std mutexes: each is held for a copy or an update, never across an
    /// `await`.
    settings: Mutex<SandboxSettings>,
    stats: Mutex<Stats>,
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
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sandbox {
    /// The cache-aside engine for this sandbox with a snapshot of its
    /// settings, working through `instance`'s Redis connection (or the
    /// sandbox's own, for inspections and presets).
    pub fn engine<'a>(
        &'a self,
        settings: &'a SandboxSettings,
        instance: Option<&'a Instance>,
    ) -> CacheAside<'a> {
        CacheAside {
            cache: instance.map_or(&self.cache, |i| &i.cache),
            database: &self.database,
            settings,
            sandbox: &self.id,
            instance,
            fleet: Some(&self.fleet),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> SandboxSettings {
        lock(&self.settings).clone()
    }

    /// Replaces the settings, keeping the key prefix (changing it would
    /// orphan every cached key).
    pub fn set_settings(&self, mut settings: SandboxSettings) -> SandboxSettings {
        let mut current = lock(&self.settings);
        // The key prefix and the Redis timeout are fixed when the back end
        // starts (changing the prefix would orphan every cached key).
        settings.key_prefix = current.key_prefix.clone();
        settings.redis_timeout_ms = current.redis_timeout_ms;
        let previous = std::mem::replace(&mut *current, settings.clone());
        // Still under the lock, so the instances always follow the settings
        // that were stored last.
        self.fleet.apply(&settings, Some(&previous));
        settings
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        *lock(&self.stats)
    }

    /// Updates the counters and returns the new values.
    pub fn update_stats(&self, f: impl FnOnce(&mut Stats)) -> Stats {
        let mut stats = lock(&self.stats);
        f(&mut stats);
        *stats
    }

    /// Remembers a trace for browsers that connect later.
    pub fn remember(&self, trace: &Trace) {
        let mut recent = lock(&self.recent);
        recent.push_front(trace.clone());
        recent.truncate(RECENT_TRACES);
    }

    /// Notes that a row changed at `at_ms`.
    pub fn row_changed(&self, kind: Kind, id: u64, at_ms: u64) {
        lock(&self.changed_at).insert((kind, id), at_ms);
    }

    /// When each row last changed.
    pub fn changed_at(&self) -> HashMap<(Kind, u64), u64> {
        lock(&self.changed_at).clone()
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

    /// The latest traces, newest first.
    pub fn recent(&self) -> Vec<Trace> {
        lock(&self.recent).iter().cloned().collect()
    }
}

/// Why a sandbox could not be created. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Occurs when the sandbox's database file cannot be created.
    #[error(transparent)]
    Database(#[from] StoreError),
    /// Occurs when the instances' Redis connections cannot be set up.
    #[error("cannot set up the instances' Redis connections: {0}")]
    Cache(#[from] crate::cache::CacheError),
}

/// All sandboxes, created on first use.
pub struct Sandboxes {
    defaults: SandboxSettings,
    cache: Cache,
    /// The database of the `default` sandbox (the one `curl` uses).
    default_database: Database,
    /// Where other sandboxes' databases are created.
    sandbox_dir: PathBuf,
    feed_capacity: usize,
    map: Mutex<HashMap<SandboxId, Arc<Sandbox>>>,
    /// Held while a sandbox is being created.
    creating: Mutex<()>,
}

impl Sandboxes {
    /// Sandboxes that start with `defaults` and use `cache`. The `default`
    /// sandbox uses `default_database`; others get a seeded file each in
    /// `sandbox_dir`. Up to `feed_capacity` traces wait for a slow browser.
    pub fn new(
        defaults: SandboxSettings,
        cache: Cache,
        default_database: Database,
        sandbox_dir: PathBuf,
        feed_capacity: usize,
    ) -> Sandboxes {
        Sandboxes {
            defaults,
            cache,
            default_database,
            sandbox_dir,
            feed_capacity,
            map: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
        }
    }

    /// The sandbox with this name, created if new.
    ///
    /// # Errors
    /// When a new sandbox's database or connections cannot be created.
    pub fn get(&self, id: &SandboxId) -> Result<Arc<Sandbox>, SandboxError> {
        if let Some(sandbox) = lock(&self.map).get(id) {
            return Ok(sandbox.clone());
        }
        // One creation at a time, outside the map's lock (seeding a new file
        // takes a few milliseconds and lookups should not wait for it), so
        // two first requests never seed one file twice or start two fleets.
        let _creating = lock(&self.creating);
        if let Some(sandbox) = lock(&self.map).get(id) {
            return Ok(sandbox.clone());
        }
        let database = if id.as_str() == SandboxId::DEFAULT {
            self.default_database.clone()
        } else {
            Database::open(&self.sandbox_dir.join(format!("{id}.sqlite3")))?
        };
        let feed = Arc::new(TraceFeed::new(self.feed_capacity));
        let channel = format!("{}{id}:invalidation", self.defaults.key_prefix);
        let fleet = Fleet::new(&self.cache, channel, feed.clone(), &self.defaults)?;
        let mut map = lock(&self.map);
        let sandbox = map.entry(id.clone()).or_insert_with(|| {
            Arc::new(Sandbox {
                id: id.clone(),
                cache: self.cache.clone(),
                database,
                feed,
                fleet,
                settings: Mutex::new(self.defaults.clone()),
                stats: Mutex::new(Stats::default()),
                recent: Mutex::new(VecDeque::new()),
                changed_at: Mutex::new(HashMap::new()),
                paused: Mutex::new(HashMap::new()),
                pause_events: Notify::new(),
                herd: tokio::sync::Mutex::new(()),
            })
        });
        Ok(sandbox.clone())
    }
}
