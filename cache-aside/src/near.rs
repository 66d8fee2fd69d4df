//! The near cache: a small in-process cache in front of Redis.
//!
//! A near hit costs no network at all, but the copy is private to this
//! process: when another process writes, this copy is stale until an
//! invalidation arrives over the bus ([`crate::bus`]) or its TTL runs out.
//! Each entry has its own TTL, never longer than the entry's freshness in
//! Redis. Bounded in size: moka evicts the least useful entries first.

use std::time::{Duration, Instant};

/// One near copy: the answer (`None` is "does not exist") and how long it
/// may be kept.
#[derive(Clone)]
struct Entry<V> {
    value: Option<V>,
    ttl: Duration,
}

/// Expires each entry after its own TTL.
struct PerEntryTtl;

impl<V> moka::Expiry<String, Entry<V>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry<V>, _created: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// The near cache of one process. Cheap to clone; clones share entries.
#[derive(Clone)]
pub(crate) struct NearCache<V> {
    entries: moka::sync::Cache<String, Entry<V>>,
}

impl<V: Clone + Send + Sync + 'static> NearCache<V> {
    /// A near cache holding at most `capacity` entries.
    pub(crate) fn new(capacity: u64) -> NearCache<V> {
        NearCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    /// The near copy of `key`: `Some(None)` is a cached "does not exist".
    pub(crate) fn get(&self, key: &str) -> Option<Option<V>> {
        self.entries.get(key).map(|entry| entry.value)
    }

    /// Keeps a copy of `key` for `ttl`.
    pub(crate) fn put(&self, key: &str, value: Option<V>, ttl: Duration) {
        if !ttl.is_zero() {
            self.entries.insert(key.to_string(), Entry { value, ttl });
        }
    }

    /// Drops the copy of `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.entries.invalidate(key);
    }

    /// Drops every copy.
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// How many copies it holds (after pending evictions are applied).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
