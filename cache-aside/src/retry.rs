//! Invalidations that could not be delivered, retried until Redis takes
//! them (tutorial section 4.2, and 4.5's "Redis is down").
//!
//! A write changes the database first, then deletes the cached copy. If
//! Redis is unreachable at that moment, the database has the new row and
//! Redis, once it is back, still has the old one: readers would be served
//! the old value until its TTL runs out. So a failed invalidation is kept
//! here and sent again, with backoff, until Redis answers; meanwhile this
//! process does not serve the key from Redis at all (the read first tries
//! to deliver the pending delete, and falls back if it cannot).
//!
//! Other processes do not know about this process's pending deletes: they
//! may read the old copy from the moment Redis returns until the retry
//! lands, at most one backoff later. Retrying is a plain `DEL` of the
//! value and its lease, whatever guard wrote it: deleting is always safe.
//! The set is bounded; past [`MOST_PENDING`] the oldest is given up and
//! counted, its staleness then bounded by its TTL alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::connection::Redis;
use crate::keys::KeySpace;

/// The most keys waiting for their invalidation.
pub const MOST_PENDING: usize = 10_000;
/// The first retry's delay; each failed round doubles it up to
/// [`LONGEST_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two rounds.
pub const LONGEST_BACKOFF: Duration = Duration::from_secs(1);
/// Keys deleted by one `DEL`.
const BATCH: usize = 100;

/// The invalidations a cache handle still owes Redis.
#[derive(Default)]
pub(crate) struct Pending {
    keys: Mutex<VecDeque<String>>,
    /// How many keys wait: read without the lock on every lookup.
    count: AtomicUsize,
    /// Whether a retry task runs.
    retrying: AtomicBool,
    /// Keys given up because the set was full.
    dropped: AtomicU64,
    /// Invalidations delivered by a retry.
    delivered: AtomicU64,
    /// Woken whenever the set empties.
    drained: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pending {
    /// How many invalidations wait.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether `key`'s invalidation waits. One atomic load when none do.
    pub(crate) fn holds(&self, key: &str) -> bool {
        self.len() > 0 && lock(&self.keys).iter().any(|k| k == key)
    }

    /// Invalidations delivered by retries, and given up, so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    /// Remembers that `key`'s invalidation did not reach Redis, and makes
    /// sure a retry task runs.
    pub(crate) fn add(self: &Arc<Self>, key: &str, redis: &Redis, keys: &KeySpace) {
        {
            let mut waiting = lock(&self.keys);
            if !waiting.iter().any(|k| k == key) {
                if waiting.len() >= MOST_PENDING {
                    waiting.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                waiting.push_back(key.to_string());
            }
            self.count.store(waiting.len(), Ordering::Release);
        }
        if !self.retrying.swap(true, Ordering::AcqRel) {
            // The task holds the set weakly: it ends with the cache handle,
            // even if Redis never comes back.
            let (pending, redis, keys) = (Arc::downgrade(self), redis.clone(), keys.clone());
            tokio::spawn(async move { retry_until_drained(&pending, &redis, &keys).await });
        }
    }

    /// Waits until no invalidation is pending, or `timeout`. Returns
    /// whether none is.
    pub(crate) async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let drained = self.drained.notified();
            if self.len() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.len() == 0;
            }
        }
    }

    /// Forgets invalidations Redis has taken.
    pub(crate) fn forget(&self, delivered: &[String]) {
        let mut waiting = lock(&self.keys);
        let before = waiting.len();
        waiting.retain(|k| !delivered.contains(k));
        self.delivered
            .fetch_add((before - waiting.len()) as u64, Ordering::Relaxed);
        self.count.store(waiting.len(), Ordering::Release);
        if waiting.is_empty() {
            self.drained.notify_waiters();
        }
    }
}

/// Sends the waiting deletes in batches, backing off while Redis fails,
/// until none is left or the cache handle is gone.
async fn retry_until_drained(pending: &Weak<Pending>, redis: &Redis, keys: &KeySpace) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::time::sleep(backoff).await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let batch: Vec<String> = lock(&pending.keys).iter().take(BATCH).cloned().collect();
        if batch.is_empty() {
            pending.retrying.store(false, Ordering::Release);
            // A key added between the look and the store above would wait
            // for nobody: look once more.
            if pending.len() == 0 || pending.retrying.swap(true, Ordering::AcqRel) {
                return;
            }
            continue;
        }
        match redis.query(&delete(keys, &batch), LONGEST_BACKOFF).await {
            Ok(_) => {
                pending.forget(&batch);
                backoff = FIRST_BACKOFF;
            }
            Err(_) => backoff = (backoff * 2).min(LONGEST_BACKOFF),
        }
    }
}

/// `DEL` of the keys' values and leases.
pub(crate) fn delete(keys: &KeySpace, logical: &[impl AsRef<str>]) -> redis::Cmd {
    let mut del = redis::cmd("DEL");
    for key in logical {
        let key = key.as_ref();
        del.arg(keys.value(key)).arg(keys.lease(key));
    }
    del
}
