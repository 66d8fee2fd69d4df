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
use crate::cache::Value;
use crate::call::{integer, Call};
use crate::envelope::Envelope;
use crate::guard::millis;
use crate::observe::{Reply, Status, StepKind};
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
        let flights = &self.cache.inner.flights;
        let flight = flights.join(self.key);
        let mut load = Some(load);
        let mut failure = None;
        let mut led = None;
        let outcome = flight
            .get_or_init(|| async {
                // This call is first: it loads for everyone on the flight.
                let load = load.take().expect("the loader runs once");
                match self.load_and_store(load).await {
                    Ok(answer) => {
                        led = answer.loaded_in;
                        Some(answer.value)
                    }
                    Err(error) => {
                        failure = Some(error);
                        None
                    }
                }
            })
            .await
            .clone();
        flights.land(self.key, &flight);
        if let Some(error) = failure {
            return Err(error);
        }
        match (outcome, load) {
            (Some(value), _) => Ok(Answer {
                value,
                source: Source::Loaded,
                waited: led.is_none(),
                loaded_in: led,
            }),
            // The leader's load failed: its error is its own, so this call
            // loads for itself.
            (None, Some(load)) => self.load_and_store(load).await,
            (None, None) => unreachable!("the leader returned its error above"),
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
        let mut waited = false;
        for _ in 0..attempts.max(1) {
            let token = format!("{:016x}", self.cache.token());
            match self.try_lock(&token, lock_ttl).await {
                // Redis failed under us: answer without the cache.
                Err(error) => return self.fallback(error, load).await,
                Ok(true) => {
                    // Someone may have stored the value between our GET and
                    // our lock: look once more before loading.
                    let result = match self.lookup().await {
                        Lookup::Fresh(entry) => Ok(self.answer_from(entry, waited)),
                        _ => self.load_store_and_hand_over(load, waited).await,
                    };
                    self.release_lock(&token).await;
                    return result;
                }
                Ok(false) => {
                    // Someone else is loading. Listen first, then look, so a
                    // value stored in between is not missed.
                    let mut told = self.cache.inner.bus.fills();
                    self.cache.inner.bus.ready(lock_ttl).await;
                    if let Lookup::Fresh(entry) = self.lookup().await {
                        return Ok(self.answer_from(entry, waited));
                    }
                    waited = true;
                    if let Some(entry) = self.wait_to_be_handed(&mut told, lock_ttl).await {
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

    /// The lock holder's work: load, store, and tell the waiters, with the
    /// value itself so they need no further round trip to Redis.
    async fn load_store_and_hand_over<F, Fut, E>(&self, load: F, waited: bool) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let lease = self.take_lease().await;
        let loaded = self.load(load).await?;
        // An empty envelope tells the waiters the store did not happen (a
        // race guard refused it), so they look again.
        let stored = self.store(&loaded, &lease).await.unwrap_or_default();
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(self.cache.inner.keys.fills_channel())
            .arg(fill_message(self.key, &stored));
        let _ = self
            .redis(StepKind::LockRelease, &publish, |_| {
                (StepKind::LockRelease, Status::Ok)
            })
            .await;
        Ok(Answer {
            value: loaded.value,
            source: Source::Loaded,
            waited,
            loaded_in: Some(loaded.took),
        })
    }

    /// Releases the lock, only if it is still ours.
    async fn release_lock(&self, token: &str) {
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE_IF_OWNER)
            .arg(1)
            .arg(self.cache.inner.keys.lock(self.key))
            .arg(token);
        let _ = self
            .redis(StepKind::LockRelease, &eval, |reply| {
                let released = integer(reply) == 1;
                (
                    StepKind::LockRelease,
                    if released { Status::Ok } else { Status::Miss },
                )
            })
            .await;
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
        let entry = handed.and_then(|fill| Envelope::decode(&fill.envelope).ok());
        let status = if entry.is_some() {
            Status::Hit
        } else {
            Status::Miss
        };
        self.note(StepKind::LockWait, status, started.elapsed(), Reply::None);
        entry
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
                let _ = refresh.load_and_store(load).await;
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
