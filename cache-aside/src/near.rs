//! The near cache: a small in-process cache in front of Redis.
//!
//! A near hit costs no network at all, but the copy is private to this
//! process: when another process writes, this copy is stale until an
//! invalidation arrives over the bus ([`crate::bus`]) or its TTL runs out.
//! Each entry has its own TTL, never longer than the entry's freshness in
//! Redis. Bounded in size: moka evicts the least useful entries first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

    /// A replaced entry lives for its own TTL, not what the old one had left.
    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry<V>,
        _updated: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// The near cache of one process. Cheap to clone; clones share entries.
#[derive(Clone)]
pub(crate) struct NearCache<V> {
    entries: moka::sync::Cache<String, Entry<V>>,
    /// Bumped by every removal: a read that saw another number before its
    /// `GET` does not keep a near copy, since an invalidation may have
    /// arrived between its `GET` and now (and removed nothing yet).
    generation: Arc<AtomicU64>,
}

impl<V> NearCache<V> {
    /// The removals so far (see the field's note).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl<V: Clone + Send + Sync + 'static> NearCache<V> {
    /// A near cache holding at most `capacity` entries.
    pub(crate) fn new(capacity: u64) -> NearCache<V> {
        NearCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build(),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The near copy of `key`: `Some(None)` is a cached "does not exist".
    pub(crate) fn get(&self, key: &str) -> Option<Option<V>> {
        self.entries.get(key).map(|entry| entry.value)
    }

    /// Keeps a copy of `key` for `ttl`, unless a removal happened since
    /// `seen` (a generation read before the value was fetched).
    pub(crate) fn put(&self, key: &str, value: Option<V>, ttl: Duration, seen: u64) {
        if ttl.is_zero() || self.generation() != seen {
            return;
        }
        self.entries.insert(key.to_string(), Entry { value, ttl });
        // A removal that raced the insert: undo it, to be safe.
        if self.generation() != seen {
            self.entries.invalidate(key);
        }
    }

    /// Drops the copy of `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(key);
    }

    /// Drops every copy.
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    /// How many copies it holds (after pending evictions are applied).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
