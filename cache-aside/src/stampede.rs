//! The stampede defences of the read path (tutorial section 4.1): what
//! happens when many requests miss the same key at once.
//!
//! - [`Stampede::SingleFlight`](crate::Stampede::SingleFlight): per process.
//! - [`Stampede::Lock`](crate::Stampede::Lock): across processes, with a
//!   Redis lock; waiters are handed the value over Pub/Sub.
//! - [`Stampede::StaleWhileRevalidate`](crate::Stampede::StaleWhileRevalidate):
//!   nobody waits; one request refreshes in the background.
//!
//! (XFetch, the fourth defence, needs no code of its own here: it is a
//! verdict of the lookup, see [`crate::policy::xfetch_should_refresh`].)

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::bus::{fill_message, Fill};
use crate::cache::{CacheAside, Value};
use crate::call::{integer, Call};
use crate::envelope::Envelope;
use crate::guard::millis;
use crate::guard::Stored;
use crate::observe::{Reply, Status, StepKind};
use crate::options::bounded;
use crate::read::{Answer, Lookup, Source};

/// Deletes a lock only if it still holds the caller's token, so a holder
/// whose lock expired never frees the lock someone else took since.
/// KEYS: lock. ARGV: token.
pub const RELEASE_IF_OWNER: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The longest the refresh lock of stale-while-revalidate lives: past it,
/// a refresher that died is replaced by the next request that sees the
/// entry stale.
const REFRESH_LOCK: Duration = Duration::from_secs(5);

impl<V: Value> Call<'_, V> {
    /// Single flight: in this process, the first miss loads and the misses
    /// that arrive meanwhile wait for that same load. Processes do not know
    /// of each other, so each still loads once.
    pub(crate) async fn load_in_single_flight<F, Fut, E>(&self, load: F) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        // The seat lands the flight when this call leaves it, however it
        // ends (dropped midway included).
        let flight = self.cache.inner.flights.join(self.key);
        let mut load = Some(load);
        let mut failure = None;
        let mut led = None;
        let outcome = flight
            .get_or_init(|| async {
                // This call is first: it loads for everyone on the flight.
                let load = load.take().expect("the loader runs once");
                match self.load_and_store_telling(load).await {
                    // A value a race guard refused is stale: it is this
                    // call's answer, but not one to hand to others. (One
                    // loaded without the lease is shared, as single flight
                    // shares any load: a trade of freshness for one load
                    // per process. The passengers would load without the
                    // lease too, if a little later.)
                    Ok((answer, Stored::Refused)) => {
                        led = Some(answer);
                        None
                    }
                    Ok((answer, _)) => {
                        let shared = answer.value.clone();
                        led = Some(answer);
                        Some(shared)
                    }
                    Err(error) => {
                        failure = Some(error);
                        None
                    }
                }
            })
            .await
            .clone();
        drop(flight);
        if let Some(error) = failure {
            return Err(error);
        }
        if let Some(answer) = led {
            return Ok(answer);
        }
        match (outcome, load) {
            (Some(value), _) => Ok(Answer {
                value,
                source: Source::Loaded,
                waited: true,
                loaded_in: None,
            }),
            // The leader failed or was refused: its answer is its own, so
            // this call loads for itself.
            (None, Some(load)) => self.load_and_store(load).await,
            (None, None) => unreachable!("the leader returned above"),
        }
    }

    /// A Redis lock: one load across every process. The first miss takes the
    /// lock, loads, stores and hands the value to the waiters; the others
    /// wait to be told, then answer with what they were handed.
    pub(crate) async fn load_under_lock<F, Fut, E>(
        &self,
        lock_ttl: Duration,
        attempts: u32,
        load: F,
    ) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let lock_ttl = bounded(lock_ttl);
        let mut waited = false;
        for _ in 0..attempts.max(1) {
            let token = format!("{:016x}", self.cache.token());
            // Armed before asking for the lock: if this call is dropped once
            // the lock may be ours, it is handed back all the same (the
            // release checks the token, so it is harmless otherwise).
            let mut held = HeldLock::new(self.cache, self.key, token);
            match self.try_lock(&held.token, lock_ttl).await {
                // Redis failed under us: answer without the cache.
                Err(error) => {
                    held.done = true;
                    return self.fallback(error, load).await;
                }
                Ok(true) => {
                    // Someone may have stored the value between our GET and
                    // our lock: look once more before loading.
                    let (result, fill) = match self.lookup().await {
                        // Waiters are told to look again, and will find it.
                        Lookup::Fresh(entry) => (Ok(self.answer_from(entry, waited)), Vec::new()),
                        _ => match self.load_and_store_telling(load).await {
                            Ok((answer, Stored::Yes(bytes) | Stored::Skipped(bytes))) => {
                                (Ok(Answer { waited, ..answer }), bytes)
                            }
                            // Refused (stale), loaded without the lease, or
                            // failed: the waiters look again.
                            Ok((answer, Stored::Refused | Stored::Unguarded)) => {
                                (Ok(Answer { waited, ..answer }), Vec::new())
                            }
                            Err(error) => (Err(error), Vec::new()),
                        },
                    };
                    self.hand_over_and_release(held, &fill).await;
                    return result;
                }
                Ok(false) => {
                    held.done = true;
                    // Someone else is loading. Listen first, then look, so a
                    // value stored in between is not missed.
                    let mut told = self.cache.inner.bus.fills();
                    // One lock TTL per round in all, subscribing included:
                    // by then a live holder has stored or its lock expired.
                    let round_ends = tokio::time::Instant::now() + lock_ttl;
                    let listening = self.cache.inner.bus.ready(lock_ttl).await;
                    if let Lookup::Fresh(entry) = self.lookup().await {
                        return Ok(self.answer_from(entry, waited));
                    }
                    waited = true;
                    let left = round_ends.saturating_duration_since(tokio::time::Instant::now());
                    let handed = if listening {
                        self.wait_to_be_handed(&mut told, left).await
                    } else {
                        // No subscription (stopped, or Redis refuses it):
                        // nobody can tell us, so look now and then.
                        self.look_until_stored(left).await
                    };
                    if let Some(entry) = handed {
                        return Ok(self.answer_from(entry, true));
                    }
                    if let Lookup::Fresh(entry) = self.lookup().await {
                        return Ok(self.answer_from(entry, true));
                    }
                    // Nothing yet: the holder may have died. Its lock
                    // expires by itself; the next round may take it.
                }
            }
        }
        // Still nothing after every round: answer from the loader without
        // storing, rather than wait any longer.
        let loaded = self.load(load).await?;
        Ok(Answer {
            value: loaded.value,
            source: Source::Loaded,
            waited,
            loaded_in: Some(loaded.took),
        })
    }

    /// `SET lock token NX PX ttl`: whether this call now holds the lock.
    async fn try_lock(&self, token: &str, ttl: Duration) -> Result<bool, crate::RedisError> {
        let mut set = redis::cmd("SET");
        set.arg(self.cache.inner.keys.lock(self.key))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let reply = self
            .redis(StepKind::LockAcquire, &set, |reply| {
                let taken = !matches!(reply, redis::Value::Nil);
                (
                    StepKind::LockAcquire,
                    if taken { Status::Hit } else { Status::Miss },
                )
            })
            .await?;
        Ok(!matches!(reply, redis::Value::Nil))
    }

    /// The lock holder's last word: tell the waiters, with the stored entry
    /// itself so they need no further round trip (empty: "look again"),
    /// then release the lock, only if it is still ours.
    async fn hand_over_and_release(&self, mut held: HeldLock<V>, fill: &[u8]) {
        let mut publish = self.cache.inner.redis.publish_command();
        publish
            .arg(self.cache.inner.keys.fills_channel())
            .arg(fill_message(self.key, fill));
        let _ = self
            .redis(StepKind::LockRelease, &publish, |_| {
                (StepKind::LockRelease, Status::Ok)
            })
            .await;
        let release = release_command(self.cache.inner.keys.lock(self.key), &held.token);
        let _ = self
            .redis(StepKind::LockRelease, &release, |reply| {
                let released = integer(reply) == 1;
                (
                    StepKind::LockRelease,
                    if released { Status::Ok } else { Status::Miss },
                )
            })
            .await;
        held.done = true;
    }

    /// Waits at most `within` for the lock holder to announce this key's
    /// value. `None` when the wait ran out, announcements were missed, or
    /// the holder could not store.
    async fn wait_to_be_handed(
        &self,
        told: &mut broadcast::Receiver<Arc<Fill>>,
        within: Duration,
    ) -> Option<Envelope<V>> {
        self.pause(StepKind::LockWait).await;
        let started = Instant::now();
        let handed = tokio::time::timeout(within, async {
            loop {
                match told.recv().await {
                    Ok(fill) if fill.key == self.key => break Some(fill),
                    Ok(_) => continue,
                    // Missed some announcements, or the bus is gone: look
                    // in Redis instead.
                    Err(_) => break None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        let entry = handed
            .and_then(|fill| Envelope::decode(&fill.envelope).ok())
            .and_then(|entry| self.cache.opened(self.key, entry));
        let status = if entry.is_some() {
            Status::Hit
        } else {
            Status::Miss
        };
        self.note(StepKind::LockWait, status, started.elapsed(), Reply::None);
        entry
    }

    /// Without a subscription: looks in Redis a few times a lock's TTL
    /// until the holder has stored, at most `within`.
    async fn look_until_stored(&self, within: Duration) -> Option<Envelope<V>> {
        self.pause(StepKind::LockWait).await;
        let started = Instant::now();
        let every = (within / 10).clamp(Duration::from_millis(10), Duration::from_millis(200));
        let mut found = None;
        while started.elapsed() + every < within {
            tokio::time::sleep(every).await;
            if let Lookup::Fresh(entry) = self.lookup().await {
                found = Some(entry);
                break;
            }
        }
        let status = if found.is_some() {
            Status::Hit
        } else {
            Status::Miss
        };
        self.note(StepKind::LockWait, status, started.elapsed(), Reply::None);
        found
    }

    /// Stale-while-revalidate: the entry is past its fresh time but inside
    /// its stale window. Answer with it now; the one request that takes the
    /// short refresh lock reloads it in the background.
    pub(crate) async fn serve_stale<F, Fut, E>(&self, entry: Envelope<V>, load: F) -> Answer<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + 'static,
    {
        let token = format!("{:016x}", self.cache.token());
        let mut set = redis::cmd("SET");
        set.arg(self.cache.inner.keys.refresh(self.key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.refresh_lock_ttl()));
        let taken = self
            .redis(StepKind::LockAcquire, &set, |reply| {
                let taken = !matches!(reply, redis::Value::Nil);
                (
                    StepKind::LockAcquire,
                    if taken { Status::Hit } else { Status::Miss },
                )
            })
            .await
            .is_ok_and(|reply| !matches!(reply, redis::Value::Nil));
        if taken {
            // The refresh outlives this call, so it reports to the cache's
            // own observer, not to this call's.
            let cache = self.cache.clone();
            let key = self.key.to_string();
            let options = self.options.clone();
            tokio::spawn(async move {
                let observer = cache.inner.observer.clone();
                let refresh = Call::new(&cache, &key, &options, &*observer);
                // Look again before loading: between this request's GET and
                // its lock, another refresher may have stored a fresh value
                // and let go of the lock; loading again would be a second
                // trip to the database for nothing.
                if !matches!(refresh.lookup().await, Lookup::Fresh(_)) {
                    let _ = refresh.load_and_store(load).await;
                }
                // Done: the next time the entry goes stale, the next request
                // may refresh it at once.
                let release = release_command(cache.inner.keys.refresh(&key), &token);
                let _ = refresh
                    .redis(StepKind::LockRelease, &release, |_| {
                        (StepKind::LockRelease, Status::Ok)
                    })
                    .await;
            });
        }
        self.note(StepKind::ServedStale, Status::Hit, Duration::ZERO, Reply::None);
        let mut answer = self.answer_from(entry, false);
        answer.source = Source::Stale;
        answer
    }

    /// How long the refresh lock lives: the stale window, at most
    /// [`REFRESH_LOCK`].
    fn refresh_lock_ttl(&self) -> Duration {
        match self.options.stampede {
            crate::Stampede::StaleWhileRevalidate { stale_for } => stale_for.min(REFRESH_LOCK),
            _ => REFRESH_LOCK,
        }
    }
}

/// `EVAL RELEASE_IF_OWNER 1 <lock> <token>`.
fn release_command(lock: String, token: &str) -> redis::Cmd {
    let mut eval = redis::cmd("EVAL");
    eval.arg(RELEASE_IF_OWNER).arg(1).arg(lock).arg(token);
    eval
}

/// A lock this call holds. If the call is dropped before it hands the lock
/// back (a client gone, a task aborted), the guard does it in the
/// background: the waiters are told to look again, and the lock is released
/// rather than left to expire.
struct HeldLock<V> {
    cache: CacheAside<V>,
    key: String,
    token: String,
    done: bool,
}

impl<V> HeldLock<V> {
    fn new(cache: &CacheAside<V>, key: &str, token: String) -> HeldLock<V> {
        HeldLock {
            cache: cache.clone(),
            key: key.to_string(),
            token,
            done: false,
        }
    }
}

impl<V> Drop for HeldLock<V> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut publish = self.cache.inner.redis.publish_command();
        publish
            .arg(self.cache.inner.keys.fills_channel())
            .arg(fill_message(&self.key, &[]));
        let release = release_command(self.cache.inner.keys.lock(&self.key), &self.token);
        let (redis, timeout) = (self.cache.inner.redis.clone(), self.cache.inner.timeout);
        runtime.spawn(async move {
            let _ = redis.query(&publish, timeout).await;
            let _ = redis.query(&release, timeout).await;
        });
    }
}
