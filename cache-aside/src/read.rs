//! The read path: `get_or_load`. Start here.
//!
//! Read it beside the tutorial's step 2. The application, not the cache, is
//! in charge: it asks the cache first, and only when the cache has nothing
//! does it run its loader against the database, the source of truth, and
//! then put what it found in Redis for the next reader:
//!
//! ```text
//! near cache ──hit──► answer                         (only with a near cache)
//!     │ miss
//! GET key ────hit───► answer                         (fresh, stale, or refresh early)
//!     │ miss      └─error─► load, do not store ────► answer (fallback)
//!     │                     (an open breaker skips the GET: no waiting)
//! load (once, as the stampede policy says)
//!     │      └─error─► the expired copy, if fail-safe kept one ► answer
//! SET key envelope EX ttl (as the race guard allows) ► answer
//! ```
//!
//! The refinements from the tutorial's pitfalls are options of this one
//! path, so they compose: negative caching (4.7), TTL jitter (4.1), the
//! stampede defences (4.1), the race guards (4.2), the near cache and its
//! invalidation bus (3.5), the fallback when Redis fails (4.5) with its
//! circuit breaker ([`crate::breaker`]), and fail-safe when the database
//! fails.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::cache::{now_ms, CacheAside, Value};
use crate::call::{ok, Call};
use crate::connection::RedisError;
use crate::envelope::{Content, Envelope};
use crate::guard::Stored;
use crate::observe::{Observer, Reply, Status, StepKind};
use crate::options::{bounded, Options, Stampede};
use crate::policy::{judge, Verdict};
use crate::retry::Debt;

/// The answer to a read: the value, or `None` when the source has no such
/// record, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<V> {
    /// `None`: the record does not exist.
    pub value: Option<V>,
    pub source: Source,
    /// Whether this call waited for another call's load (single flight, or
    /// the lock), instead of loading itself.
    pub waited: bool,
    /// How long this call's own loader ran, if it ran: the database's share
    /// of the read, for metrics.
    pub loaded_in: Option<Duration>,
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// This process's near cache: no network at all.
    Near,
    /// Redis; with `waited`, handed over by the lock holder (in any
    /// process) over Pub/Sub.
    Redis,
    /// A cached "does not exist" (near or in Redis): no database query.
    Negative,
    /// The loader, which ran for this call, or (with `waited`) for a
    /// concurrent call in this process whose result this one shared (single
    /// flight). Stored in Redis as the race guard allowed.
    Loaded,
    /// A value past its fresh time (stale-while-revalidate), while one
    /// request refreshes it in the background.
    Stale,
    /// The loader, because Redis failed or timed out (or the circuit
    /// breaker is open). Nothing was stored.
    Fallback,
    /// An expired value, because the loader failed (fail-safe): better a
    /// little old than an error.
    FailSafe,
}

impl Source {
    /// Its name in spans and logs (`redis`, `loaded`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Near => "near",
            Source::Redis => "redis",
            Source::Negative => "negative",
            Source::Loaded => "loaded",
            Source::Stale => "stale",
            Source::Fallback => "fallback",
            Source::FailSafe => "fail_safe",
        }
    }

    /// Whether the answer came from a cache, without running the loader.
    pub fn from_cache(self) -> bool {
        matches!(
            self,
            Source::Near | Source::Redis | Source::Negative | Source::Stale | Source::FailSafe
        )
    }
}

/// What a lookup in Redis found.
pub(crate) enum Lookup<V> {
    /// An entry to answer with.
    Fresh(Envelope<V>),
    /// An entry past its fresh time, still servable (stale-while-revalidate).
    Stale(Envelope<V>),
    /// A fresh entry XFetch wants reloaded now.
    RefreshEarly(Envelope<V>),
    /// An entry past its fresh time, kept for fail-safe.
    Expired(Envelope<V>),
    /// Nothing usable: the key is missing, expired, evicted, a marker, or
    /// unreadable.
    Miss,
    /// Redis failed or timed out.
    Failed(RedisError),
}

/// What the loader returned, and how long it took.
pub(crate) struct Loaded<V> {
    pub(crate) value: Option<V>,
    pub(crate) took: Duration,
}

impl<V: Value> CacheAside<V> {
    /// Reads `key` the cache-aside way with the cache's default options: from
    /// the cache if it can, else from `load`, whose answer is then cached.
    ///
    /// `load` is the application's own query: it returns the record, or
    /// `None` when there is none. It runs at most once per call, and not at
    /// all when the cache answers. It may outlive the call (a background
    /// refresh), hence `'static`: move clones of what it needs into it.
    ///
    /// # Errors
    /// Only the loader's own error. A Redis failure is never an error: the
    /// read falls back to the loader.
    pub async fn get_or_load<F, Fut, E>(&self, key: &str, load: F) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + 'static,
    {
        self.get_or_load_with(key, &self.inner.defaults, &*self.inner.observer, load)
            .await
    }

    /// [`CacheAside::get_or_load`] with this call's own options and
    /// observer.
    ///
    /// Each call is a `tracing` span (`get_or_load`, target `cache_aside`,
    /// DEBUG) holding a span per Redis command and one for the load, named
    /// after OpenTelemetry's conventions; without a subscriber that wants
    /// them they cost next to nothing.
    ///
    /// # Errors
    /// Only the loader's own error.
    pub async fn get_or_load_with<F, Fut, E>(
        &self,
        key: &str,
        options: &Options,
        observer: &dyn Observer,
        load: F,
    ) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + 'static,
    {
        let span = tracing::debug_span!(
            target: "cache_aside",
            "get_or_load",
            otel.name = "cache_aside.get_or_load",
            cache.key = key,
            cache.source = tracing::field::Empty,
        );
        let answer = self
            .read_path(key, options, observer, load)
            .instrument(span.clone())
            .await;
        if let Ok(answer) = &answer {
            span.record("cache.source", answer.source.name());
        }
        answer
    }

    /// The read path itself.
    async fn read_path<F, Fut, E>(
        &self,
        key: &str,
        options: &Options,
        observer: &dyn Observer,
        load: F,
    ) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + 'static,
    {
        let call = Call::new(self, key, options, observer);

        // 0. With a near cache, this process's own memory first: no network
        //    at all. A near copy may be stale if an invalidation was missed;
        //    its short TTL bounds for how long.
        if let Some(answer) = call.near_lookup() {
            return Ok(answer);
        }

        // 1. Ask Redis: a hit costs one round trip.
        //    (Every path but the hit is boxed: a miss pays for one small
        //    allocation, and the hit's future stays small.)
        let mut expired = None;
        match call.lookup().await {
            Lookup::Fresh(entry) => return Ok(call.answer_from(entry, false)),
            // Past its fresh time: serve it anyway while one request
            // refreshes it, so nobody waits for the database.
            Lookup::Stale(entry) => return Ok(Box::pin(call.serve_stale(entry, load)).await),
            // XFetch: reload before it expires, so nobody ever misses. The
            // entry in hand is still fresh: if the reload fails, it is the
            // answer (the failed load is in the steps), not an error.
            Lookup::RefreshEarly(entry) => {
                return match Box::pin(call.load_and_store(load)).await {
                    Err(_) => Ok(call.answer_from(entry, false)),
                    loaded => loaded,
                };
            }
            // The key was never stored, expired or was evicted.
            Lookup::Miss => {}
            // Expired, but kept in case the database fails (fail-safe).
            Lookup::Expired(entry) => expired = Some(entry),
            // Redis is down or slow. Do not fail the read over it.
            Lookup::Failed(error) => return Box::pin(call.fallback(error, load)).await,
        }

        // 2. A miss: the database answers, and its answer is stored for the
        //    next reader. How many concurrent misses may load at once is the
        //    stampede policy's decision.
        let loaded = match options.stampede {
            Stampede::SingleFlight => Box::pin(call.load_in_single_flight(load)).await,
            Stampede::Lock { ttl, attempts } => Box::pin(call.load_under_lock(ttl, attempts, load)).await,
            _ => Box::pin(call.load_and_store(load)).await,
        };

        // 3. Fail-safe: the database failed, but the expired copy is still
        //    at hand. Nothing was stored (a failed load never is).
        match (loaded, expired) {
            (Err(_), Some(entry)) => Ok(call.serve_fail_safe(entry)),
            (loaded, _) => loaded,
        }
    }
}

impl<V: Value> Call<'_, V> {
    /// The near-cache step, when this call uses the near cache.
    fn near_lookup(&self) -> Option<Answer<V>> {
        if !self.uses_near() {
            return None;
        }
        let near = self.cache.inner.near.as_ref()?;
        let started = Instant::now();
        let found = near.get(self.key);
        let status = if found.is_some() {
            Status::Hit
        } else {
            Status::Miss
        };
        self.note(StepKind::NearLookup, status, started.elapsed(), Reply::None);
        found.map(|value| Answer {
            source: if value.is_some() {
                Source::Near
            } else {
                Source::Negative
            },
            value,
            waited: false,
            loaded_in: None,
        })
    }

    /// `GET key`, and what the entry found means under this call's policy.
    pub(crate) async fn lookup(&self) -> Lookup<V> {
        // A write of this key still owes Redis its invalidation (it could
        // not deliver it, or came after one that could not): deliver it
        // first, or the old copy would be served. (One atomic
        // load when none waits; the delivery is boxed, so the hit's future
        // stays small.)
        if let Some(debt) = self.cache.inner.pending.owed(self.key) {
            if let Err(error) = Box::pin(self.deliver_pending(debt)).await {
                return Lookup::Failed(error);
            }
        }
        // XFetch, stale-while-revalidate and fail-safe look at the clock,
        // once the reply is in (a breakpoint may hold the call before the
        // GET); other policies let Redis's TTL decide.
        let reads_clock = matches!(
            self.options.stampede,
            Stampede::EarlyRefresh { .. } | Stampede::StaleWhileRevalidate { .. }
        ) || self.options.fail_safe.is_some();
        let mut now = 0;
        let mut get = redis::cmd("GET");
        get.arg(self.redis_key());
        let reply = self
            .redis(StepKind::Lookup, &get, |reply| {
                if reads_clock {
                    now = now_ms();
                }
                // A hit is an entry this call may answer with: not a
                // marker, and not one kept past its time for fail-safe
                // only (judged from the header, before the value is read).
                let hit = match reply {
                    redis::Value::BulkString(bytes) => Envelope::<()>::peek(bytes)
                        .is_some_and(|entry| judge(&entry, now, self.options, 1.0).answers()),
                    _ => false,
                };
                (StepKind::Lookup, if hit { Status::Hit } else { Status::Miss })
            })
            .await;
        let bytes = match reply {
            Ok(redis::Value::BulkString(bytes)) => bytes,
            Ok(_) => return Lookup::Miss,
            Err(error) => return Lookup::Failed(error),
        };
        // Bytes that are not an envelope (written by hand, or by an older
        // version), or a value sealed with a retired key, count as a miss,
        // and the store below replaces them. Decoding is part of a hit's
        // cost (section 4.4): measured when someone watches.
        let decoding = self.observed().then(Instant::now);
        let Some((entry, told)) = Envelope::<V>::decode_told(&bytes)
            .ok()
            .and_then(|(e, told)| Some((self.cache.opened(self.key, e)?, told)))
        else {
            self.note(StepKind::Unreadable, Status::Miss, Duration::ZERO, Reply::None);
            return Lookup::Miss;
        };
        if let (Some(started), Some((body, size))) = (decoding, told) {
            self.note(
                StepKind::Decode,
                Status::Ok,
                started.elapsed(),
                Reply::Encoded { body, bytes: size },
            );
        }
        // XFetch needs a random draw, and only it.
        let draw = match self.options.stampede {
            Stampede::EarlyRefresh { .. } => self.cache.inner.random.next_unit(),
            _ => 1.0,
        };
        match judge(&entry, now, self.options, draw) {
            Verdict::Fresh => Lookup::Fresh(entry),
            Verdict::Expired => Lookup::Expired(entry),
            Verdict::Stale => Lookup::Stale(entry),
            Verdict::RefreshEarly => {
                self.note(StepKind::EarlyRefresh, Status::Miss, Duration::ZERO, Reply::None);
                Lookup::RefreshEarly(entry)
            }
            Verdict::Miss => Lookup::Miss,
        }
    }

    /// Steps 2 and 3 of the tutorial's read: load from the source of truth,
    /// then store for the next reader. With the lease guard, a lease is
    /// taken first, so a write that lands meanwhile can veto the store.
    pub(crate) async fn load_and_store<F, Fut, E>(&self, load: F) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        Ok(self.load_and_store_telling(load).await?.0)
    }

    /// [`Call::load_and_store`], also saying what became of the store (the
    /// lock holder hands it over; single flight shares it).
    pub(crate) async fn load_and_store_telling<F, Fut, E>(&self, load: F) -> Result<(Answer<V>, Stored), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let lease = self.take_lease().await;
        let loaded = self.load(load).await?;
        let stored = self.store(&loaded, &lease).await;
        let answer = Answer {
            value: loaded.value,
            source: Source::Loaded,
            waited: false,
            loaded_in: Some(loaded.took),
        };
        Ok((answer, stored))
    }

    /// Runs the application's loader, measured and reported.
    pub(crate) async fn load<F, Fut, E>(&self, load: F) -> Result<Loaded<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        self.pause(StepKind::Load).await;
        let span =
            tracing::debug_span!(target: "cache_aside", "load", otel.name = "load", cache.key = self.key);
        let started = Instant::now();
        let result = load().instrument(span).await;
        let took = started.elapsed();
        let status = match &result {
            Ok(Some(_)) => Status::Hit,
            Ok(None) => Status::Miss,
            Err(_) => Status::Error,
        };
        self.note(StepKind::Load, status, took, Reply::None);
        result.map(|value| Loaded { value, took })
    }

    /// The fallback (tutorial section 4.5): Redis failed, so the loader
    /// answers alone. Nothing is stored: Redis has just failed, and another
    /// attempt would add another timeout to a read that is already slow.
    pub(crate) async fn fallback<F, Fut, E>(&self, error: RedisError, load: F) -> Result<Answer<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        self.note(
            StepKind::Fallback,
            Status::Error,
            Duration::ZERO,
            Reply::Error(&error),
        );
        let loaded = self.load(load).await?;
        Ok(Answer {
            value: loaded.value,
            source: Source::Fallback,
            waited: false,
            loaded_in: Some(loaded.took),
        })
    }

    /// Sends what a write of this key still owes: its `DEL`, or its
    /// marker (see [`crate::retry`]).
    async fn deliver_pending(&self, debt: Debt) -> Result<(), RedisError> {
        let pending = &self.cache.inner.pending;
        let command = debt.owed.command(&self.cache.inner.keys, self.key);
        match self
            .redis(
                StepKind::InvalidationRetried,
                &command,
                ok(StepKind::InvalidationRetried),
            )
            .await
        {
            Ok(_) => {
                pending.forget(&[debt]);
                Ok(())
            }
            Err(error) => {
                if matches!(error, RedisError::Replied(_)) {
                    pending.delete_instead(&debt);
                }
                Err(error)
            }
        }
    }

    /// Fail-safe: the loader failed, so the expired entry answers, marked
    /// as such. It is not stored again and not kept near.
    fn serve_fail_safe(&self, entry: Envelope<V>) -> Answer<V> {
        let stale_by = Duration::from_millis(now_ms().saturating_sub(entry.fresh_until_ms));
        self.note(StepKind::FailSafe, Status::Hit, stale_by, Reply::None);
        let value = match entry.content {
            Content::Value(value) => Some(value),
            _ => None,
        };
        Answer {
            value,
            source: Source::FailSafe,
            waited: false,
            loaded_in: None,
        }
    }

    /// An answer from an entry found in Redis (or handed over by a lock
    /// holder), kept near for as long as it stays fresh.
    pub(crate) fn answer_from(&self, entry: Envelope<V>, waited: bool) -> Answer<V> {
        let value = match entry.content {
            Content::Value(value) => Some(value),
            _ => None,
        };
        if self.uses_near() {
            let fresh_for = Duration::from_millis(entry.fresh_until_ms.saturating_sub(now_ms()));
            self.keep_near(&value, fresh_for);
        }
        Answer {
            source: if value.is_some() {
                Source::Redis
            } else {
                Source::Negative
            },
            value,
            waited,
            loaded_in: None,
        }
    }

    /// Whether this call uses the near cache.
    fn uses_near(&self) -> bool {
        self.cache.inner.near.is_some() && self.options.near_ttl.is_some()
    }

    /// Keeps a near copy, when this call uses the near cache, for the near
    /// TTL or the entry's own freshness, whichever ends first.
    pub(crate) fn keep_near(&self, value: &Option<V>, fresh_for: Duration) {
        if let (Some(near), Some(near_ttl)) = (&self.cache.inner.near, self.options.near_ttl) {
            near.put(
                self.key,
                value.clone(),
                bounded(near_ttl).min(fresh_for),
                self.near_seen,
            );
        }
    }
}
