//! The cache handle and its builder.
//!
//! A [`CacheAside`] is what an application keeps, one per type of data
//! (users, products), each with its own TTLs and policies. Cloning it is
//! cheap; clones share the connection, the near cache, the loads in flight
//! and the bus subscription. The read path is in [`crate::read`], writes in
//! [`crate::write`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::breaker::{Breaker, BreakerState};
use crate::bus::Bus;
use crate::connection::Redis;
use crate::envelope::{Content, Envelope};
use crate::flight::Flights;
use crate::keys::KeySpace;
use crate::near::NearCache;
use crate::observe::{NoObserver, Observer};
use crate::options::{Options, OptionsError};
use crate::random::{mix64, SplitMix64};
use crate::retry::Pending;
use crate::seal::Seal;

/// What the engine can cache: any type that serializes, clones and may
/// cross threads. Implemented for every such type.
pub trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}

/// A cache-aside cache of values of type `V` in Redis, in front of the
/// application's own data source. Cheap to clone.
pub struct CacheAside<V> {
    pub(crate) inner: Arc<Inner<V>>,
}

impl<V> Clone for CacheAside<V> {
    fn clone(&self) -> Self {
        CacheAside {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<V> {
    pub(crate) redis: Redis,
    pub(crate) keys: KeySpace,
    /// The options of calls that do not pass their own.
    pub(crate) defaults: Options,
    /// The most one Redis command may take, connecting included.
    pub(crate) timeout: Duration,
    /// Sees the steps of calls that pass no observer of their own, and of
    /// work done outside any call (background refreshes, the bus).
    pub(crate) observer: Arc<dyn Observer>,
    /// The version of a value's source row, for the version guard.
    pub(crate) version_of: Option<fn(&V) -> u64>,
    pub(crate) near: Option<NearCache<V>>,
    /// Seals values on their way into Redis, opens them on their way out.
    pub(crate) seal: Option<Arc<dyn Seal<V>>>,
    pub(crate) flights: Flights<V>,
    pub(crate) bus: Bus<V>,
    /// Whether every write publishes its invalidation, near cache or not
    /// (see [`Builder::publish_invalidations`]).
    pub(crate) publishes: bool,
    /// The circuit breaker's state, shared by the calls that use it.
    pub(crate) breaker: Arc<Breaker>,
    /// Invalidations that did not reach Redis yet.
    pub(crate) pending: Arc<Pending>,
    /// Draws for TTL jitter and XFetch.
    pub(crate) random: SplitMix64,
    /// Tokens (leases, locks) and message ids: this handle's random origin
    /// mixed with a counter, so two processes never hand out the same one.
    origin: u64,
    next_token: AtomicU64,
}

/// Makes a [`CacheAside`]. Every setting has a sensible default: see
/// [`Options::default`].
pub struct Builder<V> {
    redis: Redis,
    keys: KeySpace,
    defaults: Options,
    timeout: Duration,
    observer: Arc<dyn Observer>,
    version_of: Option<fn(&V) -> u64>,
    near_capacity: Option<u64>,
    publishes: bool,
    seed: Option<u64>,
    seal: Option<Arc<dyn Seal<V>>>,
}

impl<V: Value> CacheAside<V> {
    /// Starts building a cache of values in `redis`, under `keys`.
    pub fn builder(redis: Redis, keys: KeySpace) -> Builder<V> {
        Builder {
            redis,
            keys,
            defaults: Options::default(),
            timeout: Duration::from_millis(250),
            observer: Arc::new(NoObserver),
            version_of: None,
            near_capacity: None,
            publishes: false,
            seed: None,
            seal: None,
        }
    }

    /// `value` as it goes to Redis at logical `key`: sealed, if the cache
    /// seals; `None` when sealing fails (then it is not stored).
    pub(crate) fn sealed(&self, key: &str, value: &V) -> Option<V> {
        match &self.inner.seal {
            Some(seal) => seal.seal(&self.inner.keys.value(key), value),
            None => Some(value.clone()),
        }
    }

    /// An entry as read from Redis at logical `key`, its value opened;
    /// `None` when it cannot be opened (then it is a miss).
    pub(crate) fn opened(&self, key: &str, entry: Envelope<V>) -> Option<Envelope<V>> {
        let Some(seal) = &self.inner.seal else {
            return Some(entry);
        };
        let content = match entry.content {
            Content::Value(sealed) => Content::Value(seal.open(&self.inner.keys.value(key), sealed)?),
            other => other,
        };
        Some(Envelope { content, ..entry })
    }

    /// The options used by calls that pass none.
    pub fn options(&self) -> &Options {
        &self.inner.defaults
    }

    /// The key space.
    pub fn keys(&self) -> &KeySpace {
        &self.inner.keys
    }

    /// The Redis connection.
    pub fn redis(&self) -> &Redis {
        &self.inner.redis
    }

    /// The most one Redis command may take.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The observer of calls that pass none.
    pub fn observer(&self) -> &dyn Observer {
        &*self.inner.observer
    }

    /// The version of `value`'s source row, if the cache is versioned.
    pub fn version_of(&self, value: &V) -> Option<u64> {
        self.inner.version_of.map(|version_of| version_of(value))
    }

    /// Subscribes to invalidations (and to values handed over by lock
    /// holders), if not subscribed yet. Call it once at start-up when the
    /// near cache is on: near copies are only kept coherent while
    /// subscribed. The subscription reconnects by itself. Needs a Tokio
    /// runtime.
    pub fn listen(&self) {
        self.inner.bus.listen();
    }

    /// Ends the subscription until [`CacheAside::listen`]: invalidations
    /// published meanwhile are lost to this process (near copies then live
    /// until their TTL). Used at shutdown, and to watch a lost message.
    pub fn stop_listening(&self) {
        self.inner.bus.stop();
    }

    /// Whether the subscription is up.
    pub fn is_listening(&self) -> bool {
        self.inner.bus.is_listening()
    }

    /// Waits at most `within` for the subscription to be up, starting it
    /// unless [`CacheAside::stop_listening`] stopped it; returns whether it
    /// is up. [`CacheAside::listen`] returns at once and subscribes in the
    /// background: a process that wants to hear every invalidation before
    /// it serves near copies waits here once at start-up.
    pub async fn wait_listening(&self, within: Duration) -> bool {
        self.inner.bus.ready(within).await
    }

    /// How many entries the near cache holds (0 without one).
    pub fn near_len(&self) -> u64 {
        self.inner.near.as_ref().map_or(0, NearCache::len)
    }

    /// Drops this process's near copy of `key`.
    pub fn near_remove(&self, key: &str) {
        if let Some(near) = &self.inner.near {
            near.remove(key);
        }
    }

    /// Drops every near copy of this process.
    pub fn near_clear(&self) {
        if let Some(near) = &self.inner.near {
            near.clear();
        }
    }

    /// Where the circuit breaker is (closed unless calls use it).
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// How many times the circuit breaker has opened.
    pub fn breaker_opened(&self) -> u64 {
        self.inner.breaker.times_opened()
    }

    /// How many invalidations wait to be delivered (see [`crate::retry`]).
    pub fn pending_invalidations(&self) -> usize {
        self.inner.pending.len()
    }

    /// Invalidations delivered by retries, and given up because too many
    /// waited, since the handle was built.
    pub fn retried_invalidations(&self) -> (u64, u64) {
        self.inner.pending.counts()
    }

    /// Waits until no invalidation is pending, at most `timeout`; says
    /// whether none is.
    pub async fn invalidations_delivered(&self, timeout: Duration) -> bool {
        self.inner.pending.drained(timeout).await
    }

    /// A token no other handle, in this process or another, hands out.
    pub(crate) fn token(&self) -> u64 {
        mix64(self.inner.origin ^ self.inner.next_token.fetch_add(1, Ordering::Relaxed))
    }
}

impl<V: Value> Builder<V> {
    /// Replaces all default options at once, `near_ttl` included (the near
    /// cache's capacity, set by [`Builder::near_cache`], stays).
    pub fn options(mut self, options: Options) -> Self {
        self.defaults = options;
        self
    }

    /// How long values live in Redis.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.defaults.ttl = ttl;
        self
    }

    /// How long "does not exist" is cached; `None` turns it off.
    pub fn negative_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.defaults.negative_ttl = ttl;
        self
    }

    /// TTL jitter, a share from 0 to 0.9.
    pub fn jitter(mut self, share: f64) -> Self {
        self.defaults.jitter = share;
        self
    }

    /// The stampede defence.
    pub fn stampede(mut self, stampede: crate::Stampede) -> Self {
        self.defaults.stampede = stampede;
        self
    }

    /// The guard against the stale-set race.
    pub fn race_guard(mut self, guard: crate::RaceGuard) -> Self {
        self.defaults.race_guard = guard;
        self
    }

    /// Keeps up to `capacity` entries in this process's memory, each for at
    /// most `ttl`, in front of Redis. Call [`CacheAside::listen`] so that
    /// writes elsewhere drop the copies here.
    pub fn near_cache(mut self, capacity: u64, ttl: Duration) -> Self {
        self.near_capacity = Some(capacity);
        self.defaults.near_ttl = Some(ttl);
        self
    }

    /// For a process that keeps no near copies while others do (a writer
    /// without a near cache, say): every write publishes its invalidation
    /// all the same, so their copies go. Without it, a write publishes only
    /// when its options set `near_ttl`, and the others' near copies of what
    /// this process writes live until their TTL.
    pub fn publish_invalidations(mut self) -> Self {
        self.publishes = true;
        self
    }

    /// The most one Redis command may take (250 ms by default). Past it the
    /// read falls back to the loader.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Who sees the steps of calls that pass no observer of their own.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// How to read the version of a value's source row: needed by the
    /// version guard, which never lets an older version replace a newer one
    /// (`build` refuses the version guard without it; a call that asks for
    /// it anyway stores nothing, the safe side).
    pub fn versioned(mut self, version_of: fn(&V) -> u64) -> Self {
        self.version_of = Some(version_of);
        self
    }

    /// Seals values on their way into Redis and opens them on their way
    /// out (see [`crate::seal`]).
    pub fn seal(mut self, seal: Arc<dyn Seal<V>>) -> Self {
        self.seal = Some(seal);
        self
    }

    /// Seeds the random draws (TTL jitter, XFetch), so runs repeat.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The cache.
    ///
    /// # Errors
    /// [`OptionsError`] when a default option is unusable.
    pub fn build(mut self) -> Result<CacheAside<V>, OptionsError> {
        self.defaults.validate()?;
        if self.defaults.race_guard == crate::RaceGuard::Version && self.version_of.is_none() {
            return Err(OptionsError::Unversioned);
        }
        if self.defaults.near_ttl.is_some() && self.near_capacity.is_none() {
            return Err(OptionsError::NoNearCache);
        }
        if self.timeout.is_zero() {
            return Err(OptionsError::TooShort("timeout"));
        }
        // Tokens must differ between handles even when draws are seeded
        // alike, or two instances could release each other's locks.
        let origin = fresh_origin();
        // On a cluster an entry's keys must share a hash slot (see
        // `KeySpace::tagged`); a prefix with a tag of its own already
        // puts them all in one.
        if self.redis.is_cluster() && !self.keys.prefix_has_hash_tag() {
            self.keys = self.keys.tagged();
        }
        let near = self.near_capacity.map(NearCache::new);
        let bus = Bus::new(
            &self.redis,
            self.keys.invalidation_channel(),
            self.keys.fills_channel(),
            near.clone(),
            self.observer.clone(),
        );
        Ok(CacheAside {
            inner: Arc::new(Inner {
                redis: self.redis,
                keys: self.keys,
                defaults: self.defaults,
                timeout: self.timeout,
                observer: self.observer,
                version_of: self.version_of,
                near,
                seal: self.seal,
                flights: Flights::default(),
                bus,
                publishes: self.publishes,
                breaker: Arc::default(),
                pending: Arc::default(),
                random: SplitMix64::new(self.seed.unwrap_or(origin)),
                origin,
                next_token: AtomicU64::new(1),
            }),
        })
    }
}

/// A random origin for a handle's tokens: the clock and a process-wide
/// counter, mixed.
fn fresh_origin() -> u64 {
    static HANDLES: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix64(nanos ^ mix64(HANDLES.fetch_add(1, Ordering::Relaxed)) ^ u64::from(std::process::id()))
}

/// Milliseconds since the Unix epoch: the clock of logical expiry.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
