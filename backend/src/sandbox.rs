//! Sandboxes: each browser session's own corner of the playground.
//!
//! A sandbox namespaces cache keys (its name is part of every key) and has
//! its own trace stream and counters, so two tabs or two visitors never see
//! or disturb each other's cache. The database is shared and read-only for
//! now.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use shared::{SandboxId, SandboxSettings, Stats, Trace};

use crate::cache::Cache;
use crate::feed::TraceFeed;

/// One sandbox.
pub struct Sandbox {
    pub id: SandboxId,
    /// Settings for reads in this sandbox.
    pub settings: SandboxSettings,
    /// The Redis this sandbox uses. Today every sandbox shares the back end's
    /// Redis; this is where a per-sandbox server or a fault proxy will go.
    pub cache: Cache,
    /// Traces of this sandbox's operations, for the browsers watching it.
    pub feed: TraceFeed,
    /// A std mutex: updated in a few nanoseconds, never across an `await`.
    stats: Mutex<Stats>,
    /// The latest traces, newest first, for browsers that connect later.
    recent: Mutex<VecDeque<Trace>>,
}

/// How many traces a sandbox keeps for browsers that connect later.
pub const RECENT_TRACES: usize = 20;

impl Sandbox {
    /// The counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the counters and returns the new values.
    pub fn update_stats(&self, f: impl FnOnce(&mut Stats)) -> Stats {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut stats);
        *stats
    }

    /// Remembers a trace for browsers that connect later.
    pub fn remember(&self, trace: &Trace) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_front(trace.clone());
        recent.truncate(RECENT_TRACES);
    }

    /// The latest traces, newest first.
    pub fn recent(&self) -> Vec<Trace> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// All sandboxes, created on first use.
pub struct Sandboxes {
    defaults: SandboxSettings,
    cache: Cache,
    feed_capacity: usize,
    map: Mutex<HashMap<SandboxId, Arc<Sandbox>>>,
}

impl Sandboxes {
    /// Sandboxes that start with `defaults`, use `cache`, and keep up to
    /// `feed_capacity` traces for a slow browser.
    pub fn new(defaults: SandboxSettings, cache: Cache, feed_capacity: usize) -> Sandboxes {
        Sandboxes {
            defaults,
            cache,
            feed_capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The sandbox with this name, created if new.
    pub fn get(&self, id: &SandboxId) -> Arc<Sandbox> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Sandbox {
                    id: id.clone(),
                    settings: self.defaults.clone(),
                    cache: self.cache.clone(),
                    feed: TraceFeed::new(self.feed_capacity),
                    stats: Mutex::new(Stats::default()),
                    recent: Mutex::new(VecDeque::new()),
                })
            })
            .clone()
    }
}
