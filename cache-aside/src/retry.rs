//! Invalidations that could not be delivered, retried until Redis takes
//! them (tutorial section 4.2, and 4.5's "Redis is down").
//!
//! A write changes the database first, then deletes the cached copy. If
//! Redis is unreachable at that moment, the database has the new row and
//! Redis, once it is back, still has the old one: readers would be served
//! the old value until its TTL runs out. So a failed invalidation is kept
//! here and sent again, with backoff, until Redis answers; meanwhile this
//! process does not serve the key from Redis at all (the read first tries
//! to deliver the pending invalidation, and falls back if it cannot).
//!
//! Other processes do not know about this process's pending invalidations:
//! they may read the old copy from the moment Redis returns until the retry
//! lands: a backoff later for a few keys, a round more per hundred keys
//! waiting.
//!
//! What is sent again is what the write owed ([`Owed`]): a plain `DEL` of
//! the value and its lease, or, under the version guard, the write's
//! marker. A bare `DEL` there would drop the fence: a reader elsewhere that
//! loaded the old row before the write could store it after the retry, and
//! it would stay until its TTL. A marker sent again never answers "does
//! not exist" (the record may have been made again meanwhile); it still
//! fences. If Redis refuses the marker itself (`OOM` over `maxmemory`), the
//! retry deletes instead, which Redis takes even then: the old copy goes,
//! the fence is given up. (Redis refuses a `DEL` only to a client without
//! the permission, or on a read-only replica: such a debt never drains,
//! and this process reads the key from the database meanwhile.)
//!
//! Each key waits once, with what its last write owes (of two writes
//! failing at once, the one that failed last, which may not be the one
//! that committed last). A write of a key that still owes, even one that
//! succeeds, owes in the older debt's place: that debt, paid after it,
//! would undo it. A retry forgets a key only if no write of it came while
//! the retry was on its way: a `DEL` sent before the second write's
//! database change does not settle the second write. (A key written more
//! often than a retry round takes may so stay owed for a while: its reads
//! in this process deliver the debt first, a round trip more, and stay
//! correct.)
//!
//! A read that delivers a marker itself does not send it again on a dead
//! connection (scripts never are, see `Options::resend_dropped`): it falls
//! back to the database, and the retry task sends the marker.
//!
//! The set is bounded; past [`MOST_PENDING`] the oldest is given up and
//! counted, its staleness then bounded by its TTL alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::cache::now_ms;
use crate::connection::{Redis, RedisError};
use crate::envelope::{Content, Encoding, Envelope};
use crate::guard::store_if_not_older;
use crate::keys::KeySpace;

/// The most keys waiting for their invalidation.
pub const MOST_PENDING: usize = 10_000;
/// The first retry's delay; each failed round doubles it up to
/// [`LONGEST_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between two rounds.
pub const LONGEST_BACKOFF: Duration = Duration::from_secs(1);
/// Keys dealt with in one round (their deletes in one `DEL`).
const BATCH: usize = 100;

/// What a failed write still owes Redis for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owed {
    /// `DEL` of the value and its lease.
    Delete,
    /// The version guard's marker, which fences off older versions.
    Mark(Marker),
}

/// A version guard's marker, as a write stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The row's new version (`DELETED_VERSION` after a delete).
    pub(crate) version: u64,
    /// Whether it answers "does not exist" (a delete, negative caching on).
    pub(crate) not_found: bool,
    /// How long it counts as fresh, in milliseconds.
    pub(crate) fresh_ms: u64,
    /// Its TTL in Redis in milliseconds (0: none, `Options::forget_ttl`).
    pub(crate) ttl_ms: u64,
}

impl Marker {
    /// The entry as stored, fresh from `now_ms` on.
    pub(crate) fn bytes(&self, now_ms: u64) -> Option<Vec<u8>> {
        let marker = Envelope::<()> {
            content: if self.not_found {
                Content::NotFound
            } else {
                Content::Invalidated
            },
            version: self.version,
            fresh_until_ms: now_ms.saturating_add(self.fresh_ms),
            load_ms: 0,
        };
        // A marker has no value to encode: this cannot fail.
        marker.encode(Encoding::Json).ok()
    }

    /// The write's guarded store of the marker: refused only where Redis
    /// holds a newer version.
    fn command(&self, keys: &KeySpace, key: &str) -> Option<redis::Cmd> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(store_if_not_older())
            .arg(1)
            .arg(keys.value(key))
            .arg(self.bytes(now_ms())?)
            .arg(self.version)
            .arg(self.ttl_ms)
            .arg(1);
        Some(eval)
    }
}

impl Owed {
    /// The command that pays the debt: the marker's store, or the `DEL`.
    pub(crate) fn command(&self, keys: &KeySpace, key: &str) -> redis::Cmd {
        match self {
            Owed::Mark(marker) => marker.command(keys, key),
            Owed::Delete => None,
        }
        .unwrap_or_else(|| delete(keys, &[key]))
    }
}

/// One key's debt, and which write it is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Debt {
    pub(crate) key: String,
    pub(crate) owed: Owed,
    /// Counts the writes that owed: a later write of the same key makes
    /// the debt new again.
    pub(crate) write: u64,
}

/// The debts, oldest first, one per key.
#[derive(Default)]
struct Debts {
    waiting: VecDeque<Debt>,
    writes: u64,
}

impl Debts {
    /// Records what `key`'s latest write owes. Returns whether the
    /// oldest debt was given up to make room.
    fn owe(&mut self, key: &str, owed: Owed) -> bool {
        self.writes += 1;
        if let Some(debt) = self.waiting.iter_mut().find(|d| d.key == key) {
            debt.owed = owed;
            debt.write = self.writes;
            return false;
        }
        let full = self.waiting.len() >= MOST_PENDING;
        if full {
            self.waiting.pop_front();
        }
        self.waiting.push_back(Debt {
            key: key.to_string(),
            owed,
            write: self.writes,
        });
        full
    }

    fn of(&self, key: &str) -> Option<Debt> {
        self.waiting.iter().find(|d| d.key == key).cloned()
    }

    /// Forgets the debts paid, unless a later write of their key owes
    /// since (then the payment was for an older write). Returns how many went.
    fn settle(&mut self, paid: &[Debt]) -> usize {
        let before = self.waiting.len();
        self.waiting
            .retain(|d| !paid.iter().any(|p| p.key == d.key && p.write == d.write));
        before - self.waiting.len()
    }

    /// Redis refused `debt`'s marker: owe a `DEL` instead (unless a later
    /// write replaced the debt).
    fn delete_instead(&mut self, debt: &Debt) {
        if let Some(d) = self
            .waiting
            .iter_mut()
            .find(|d| d.key == debt.key && d.write == debt.write)
        {
            d.owed = Owed::Delete;
        }
    }
}

/// The invalidations a cache handle still owes Redis.
#[derive(Default)]
pub(crate) struct Pending {
    debts: Mutex<Debts>,
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

    /// What `key`'s last write still owes, if anything. One atomic load
    /// when nothing waits.
    pub(crate) fn owed(&self, key: &str) -> Option<Debt> {
        if self.len() == 0 {
            return None;
        }
        lock(&self.debts).of(key)
    }

    /// Invalidations delivered by retries, and given up, so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    /// Remembers what `key`'s write owes Redis, and makes sure a retry
    /// task runs.
    pub(crate) fn add(self: &Arc<Self>, key: &str, owed: Owed, redis: &Redis, keys: &KeySpace) {
        {
            let mut debts = lock(&self.debts);
            if debts.owe(key, owed) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            self.count.store(debts.waiting.len(), Ordering::Release);
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

    /// Forgets debts Redis has taken (see [`Debts::settle`]).
    pub(crate) fn forget(&self, paid: &[Debt]) {
        let mut debts = lock(&self.debts);
        let settled = debts.settle(paid);
        self.delivered.fetch_add(settled as u64, Ordering::Relaxed);
        self.count.store(debts.waiting.len(), Ordering::Release);
        if debts.waiting.is_empty() {
            self.drained.notify_waiters();
        }
    }

    /// Redis refused a marker (it refuses writes, not deletes): the key
    /// is deleted instead.
    pub(crate) fn delete_instead(&self, debt: &Debt) {
        lock(&self.debts).delete_instead(debt);
    }
}

/// Pays the waiting debts in batches, backing off while Redis fails,
/// until none is left or the cache handle is gone.
async fn retry_until_drained(pending: &Weak<Pending>, redis: &Redis, keys: &KeySpace) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::time::sleep(backoff).await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let batch: Vec<Debt> = lock(&pending.debts).waiting.iter().take(BATCH).cloned().collect();
        if batch.is_empty() {
            pending.retrying.store(false, Ordering::Release);
            // A key added between the look and the store above would wait
            // for nobody: look once more.
            if pending.len() == 0 || pending.retrying.swap(true, Ordering::AcqRel) {
                return;
            }
            continue;
        }
        let paid = pay(&pending, &batch, redis, keys).await;
        let failed = paid.len() < batch.len();
        pending.forget(&paid);
        backoff = if failed {
            (backoff * 2).min(LONGEST_BACKOFF)
        } else {
            FIRST_BACKOFF
        };
    }
}

/// Sends one batch: the deletes in one `DEL`, each marker on its own.
/// Returns the debts Redis took; stops at the first failure.
async fn pay(pending: &Pending, batch: &[Debt], redis: &Redis, keys: &KeySpace) -> Vec<Debt> {
    let (deletes, marks): (Vec<&Debt>, Vec<&Debt>) = batch.iter().partition(|d| d.owed == Owed::Delete);
    let mut paid = Vec::new();
    if !deletes.is_empty() {
        let names: Vec<&str> = deletes.iter().map(|d| d.key.as_str()).collect();
        if redis.query(&delete(keys, &names), LONGEST_BACKOFF).await.is_err() {
            return paid;
        }
        paid.extend(deletes.into_iter().cloned());
    }
    for debt in marks {
        match redis
            .query(&debt.owed.command(keys, &debt.key), LONGEST_BACKOFF)
            .await
        {
            // Stored, or refused because a newer version is there: either
            // way the fence stands.
            Ok(_) => paid.push(debt.clone()),
            Err(RedisError::Replied(_)) => pending.delete_instead(debt),
            Err(_) => break,
        }
    }
    paid
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(version: u64) -> Owed {
        Owed::Mark(Marker {
            version,
            not_found: false,
            fresh_ms: 1_000,
            ttl_ms: 1_000,
        })
    }

    #[test]
    fn a_payment_for_an_older_write_leaves_the_newer_debt() {
        let mut debts = Debts::default();
        debts.owe("user:1", Owed::Delete);
        // A retry takes the debt and sends its `DEL`...
        let sent = vec![debts.of("user:1").unwrap()];
        // ...while a second write of the key fails.
        debts.owe("user:1", mark(7));
        assert_eq!(debts.settle(&sent), 0, "the second write is not settled");
        let debt = debts.of("user:1").unwrap();
        assert_eq!(debt.owed, mark(7), "the latest write decides what is owed");
        assert_eq!(debts.settle(&[debt]), 1);
        assert!(debts.of("user:1").is_none());
    }

    #[test]
    fn each_key_waits_once_and_the_oldest_goes_when_full() {
        let mut debts = Debts::default();
        for n in 0..MOST_PENDING {
            assert!(!debts.owe(&format!("user:{n}"), Owed::Delete));
        }
        assert!(!debts.owe("user:0", Owed::Delete), "already waiting");
        assert_eq!(debts.waiting.len(), MOST_PENDING);
        assert!(debts.owe("user:new", Owed::Delete), "full: the oldest goes");
        assert!(debts.of("user:0").is_none());
        assert!(debts.of("user:new").is_some());
    }

    #[test]
    fn a_refused_marker_becomes_a_delete_unless_a_later_write_owes_more() {
        let mut debts = Debts::default();
        debts.owe("user:1", mark(3));
        let refused = debts.of("user:1").unwrap();
        debts.delete_instead(&refused);
        assert_eq!(debts.of("user:1").unwrap().owed, Owed::Delete);

        debts.owe("user:2", mark(3));
        let refused = debts.of("user:2").unwrap();
        debts.owe("user:2", mark(4));
        debts.delete_instead(&refused);
        assert_eq!(debts.of("user:2").unwrap().owed, mark(4));
    }

    #[test]
    fn a_marker_carries_its_version_and_answer() {
        let gone = Marker {
            version: 9,
            not_found: true,
            fresh_ms: 500,
            ttl_ms: 0,
        };
        let bytes = gone.bytes(1_000).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "ca1 n 9 1500 0\n");
    }
}
