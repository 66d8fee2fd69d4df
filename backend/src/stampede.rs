//! The stampede lab (tutorial section 4.1): a herd of concurrent reads hits
//! one cold key, and each defence decides how many of them reach the
//! database.
//!
//! - [`CacheAside::read`] (no defence): every miss loads.
//! - [`CacheAside::read_single_flight`]: in each instance, the first miss
//!   loads and the instance's other requests wait for that load.
//! - [`CacheAside::read_with_lock`]: one load overall. The first request to
//!   `SET lock NX PX` loads; the others wait until they are told (over Redis
//!   Pub/Sub) that the value is stored, instead of polling. The lock expires
//!   by itself if its holder dies, and only its owner may release it (a Lua
//!   compare-and-delete), so a late holder never frees someone else's lock.

use std::time::Duration;

use shared::diagram::nodes::{
    CHECK_CACHE, QUERY_DATABASE, REQUEST, RETURN_CACHED, RETURN_LOADED, STORE_IN_CACHE,
};
use shared::{Kind, Record, StepStatus};
use tokio::sync::broadcast;

use crate::cache_aside::{encode, CacheAside};
use crate::race::unique_token;
use crate::recorder::{unix_millis, Recorder};
use crate::store::StoreError;

/// Deletes the lock only if it still holds the caller's token.
/// KEYS: lock key. ARGV: token.
pub const RELEASE_IF_OWNER: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// How often a waiter tries to take the lock itself before reading the
/// database without it.
const LOCK_ATTEMPTS: usize = 3;

/// How one request of a herd went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HerdRead {
    /// It read the database.
    pub loaded: bool,
    /// It was answered from Redis.
    pub from_cache: bool,
    /// It waited for someone else's load.
    pub waited: bool,
    /// It gave up waiting and read the database without the lock.
    pub fell_back: bool,
    /// It was answered with a stale value (stale-while-revalidate).
    pub stale: bool,
    /// It recomputed a value that had not expired yet (XFetch).
    pub early: bool,
}

impl HerdRead {
    fn cached(waited: bool) -> HerdRead {
        HerdRead {
            from_cache: true,
            waited,
            ..HerdRead::default()
        }
    }

    fn loaded() -> HerdRead {
        HerdRead {
            loaded: true,
            ..HerdRead::default()
        }
    }
}

impl CacheAside<'_> {
    /// The lock key of a record: `cache:{sandbox}:lock:user:42`.
    pub fn lock_key(&self, kind: Kind, id: u64) -> String {
        format!(
            "{}{}:lock:{}:{id}",
            self.settings.key_prefix,
            self.sandbox,
            kind.key_segment()
        )
    }

    /// How long a lock lives: long enough for one load, short enough that a
    /// dead holder does not stall the waiters for long.
    pub fn lock_ttl(&self) -> Duration {
        Duration::from_millis((3 * self.settings.db_latency_ms).max(1_000))
    }

    /// Whether Redis has the value now (errors count as "no").
    async fn cached(&self, key: &str, trace: &mut Recorder) -> bool {
        matches!(trace.redis(CHECK_CACHE, self.cache.get(key)).await, Ok(Some(_)))
    }

    /// Loads the row and stores it with its TTL.
    async fn load_and_store(
        &self,
        kind: Kind,
        id: u64,
        trace: &mut Recorder,
    ) -> Result<Option<Record>, StoreError> {
        let record = trace
            .sql(QUERY_DATABASE, self.database.find(kind, id, self.db_latency()))
            .await?;
        if let Some(record) = &record {
            let key = self.cache_key(kind, id);
            let call = self
                .cache
                .set_ex(&key, &encode(record), self.settings.cache_ttl_secs);
            let _ = trace.redis(STORE_IN_CACHE, call).await;
        }
        Ok(record)
    }

    /// Single flight: the first miss in this instance loads; the instance's
    /// other requests for the key wait for that same load. Instances do not
    /// know of each other, so each still loads once.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn read_single_flight(
        &self,
        kind: Kind,
        id: u64,
        trace: &mut Recorder,
    ) -> Result<HerdRead, StoreError> {
        let key = self.cache_key(kind, id);
        if self.cached(&key, trace).await {
            return Ok(HerdRead::cached(false));
        }
        let Some(me) = self.instance else {
            self.load_and_store(kind, id, trace).await?;
            return Ok(HerdRead::loaded());
        };
        let flight = me.flight(&key);
        let mut loaded_here = false;
        let result = flight
            .get_or_init(|| async {
                loaded_here = true;
                self.load_and_store(kind, id, trace)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .clone();
        me.land(&key, &flight);
        result.map_err(StoreError::Task)?;
        Ok(if loaded_here {
            HerdRead::loaded()
        } else {
            HerdRead::cached(true)
        })
    }

    /// A Redis lock: one load overall. `fills` carries the keys whose value
    /// was just stored, as announced on Pub/Sub.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn read_with_lock(
        &self,
        kind: Kind,
        id: u64,
        fills: &broadcast::Sender<String>,
        trace: &mut Recorder,
    ) -> Result<HerdRead, StoreError> {
        let key = self.cache_key(kind, id);
        if self.cached(&key, trace).await {
            return Ok(HerdRead::cached(false));
        }
        let lock = self.lock_key(kind, id);
        let ttl = self.lock_ttl();
        let mut waited = false;
        for _ in 0..LOCK_ATTEMPTS {
            let token = unique_token();
            let taken = trace
                .redis(
                    CHECK_CACHE,
                    self.cache.set_nx_px(&lock, &token, ttl.as_millis() as u64),
                )
                .await;
            if matches!(taken, Ok(Some(_))) {
                // Someone may have stored the value between our GET and
                // our lock: look once more before loading.
                let result = if self.cached(&key, trace).await {
                    Ok(HerdRead::cached(waited))
                } else {
                    match self.load_and_store(kind, id, trace).await {
                        Ok(record) => {
                            // Tell the waiters, with the value itself, so
                            // they need no further round trip to Redis.
                            let value = record.as_ref().map(encode).unwrap_or_default();
                            let message = format!("{key} {value}");
                            let _ = trace
                                .redis(
                                    STORE_IN_CACHE,
                                    self.cache.publish(&self.fills_channel(), &message),
                                )
                                .await;
                            Ok(HerdRead {
                                waited,
                                ..HerdRead::loaded()
                            })
                        }
                        Err(e) => Err(e),
                    }
                };
                // Release: only if the lock is still ours.
                let release = self.cache.eval(RELEASE_IF_OWNER, &[&lock], &[&token]);
                let _ = trace.redis(STORE_IN_CACHE, release).await;
                return result;
            }
            // Someone else is loading. Listen first, then look, so a value
            // stored in between is not missed.
            let mut told = fills.subscribe();
            if self.cached(&key, trace).await {
                return Ok(HerdRead::cached(waited));
            }
            waited = true;
            let handed = tokio::time::timeout(ttl, async {
                loop {
                    match told.recv().await {
                        // The announcement carries the value: done.
                        Ok(message) if message.split_once(' ').is_some_and(|(k, _)| k == key) => break true,
                        Ok(_) => continue,
                        // Missed some announcements: look in Redis.
                        Err(broadcast::error::RecvError::Lagged(_)) => break false,
                        Err(broadcast::error::RecvError::Closed) => break false,
                    }
                }
            })
            .await;
            if handed == Ok(true) {
                trace.note(
                    RETURN_CACHED,
                    StepStatus::Hit,
                    "handed the value by the lock holder",
                );
                return Ok(HerdRead::cached(true));
            }
            if self.cached(&key, trace).await {
                return Ok(HerdRead::cached(true));
            }
            // Nothing yet: the holder may have died. Its lock expires by
            // itself; try to take it.
        }
        // Still nothing after every attempt: answer from the database
        // without caching, rather than wait any longer.
        trace
            .sql(QUERY_DATABASE, self.database.find(kind, id, self.db_latency()))
            .await?;
        Ok(HerdRead {
            loaded: true,
            waited,
            fell_back: true,
            ..HerdRead::default()
        })
    }

    /// Caches a record the way `defence` keeps it, so a herd starts from a
    /// cached value: stamped for XFetch, with a fresh time for
    /// stale-while-revalidate, a plain record (or missing marker, jittered
    /// TTL included) for the others.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn prime(&self, defence: Defence, kind: Kind, id: u64) -> Result<(), StoreError> {
        let trace = &mut Recorder::new();
        match defence {
            Defence::XFetch => self.store_stamped(kind, id, trace).await,
            Defence::StaleWhileRevalidate => self.store_fresh(kind, id, trace).await,
            _ => self.read(kind, id, trace).await.map(|_| ()),
        }
    }

    /// The channel on which lock holders announce stored values.
    pub fn fills_channel(&self) -> String {
        format!("{}{}:filled", self.settings.key_prefix, self.sandbox)
    }
}

/// XFetch's rule (Vattani, Chierichetti and Lowenstein, "Optimal
/// Probabilistic Cache Stampede Prevention"): recompute now if
/// `now - delta * beta * ln(random) >= expiry`, where `delta` is how long a
/// recompute takes and `random` is uniform in (0, 1]. Since `ln(random)` is
/// negative, the left side runs ahead of the clock by a random amount that
/// grows with `delta` and `beta`: the closer expiry is, the likelier an
/// early recompute, and one request usually does it before anyone misses.
pub fn xfetch_should_recompute(now_ms: f64, delta_ms: f64, beta: f64, expiry_ms: f64, random: f64) -> bool {
    let random = random.clamp(f64::MIN_POSITIVE, 1.0);
    now_ms - delta_ms * beta * random.ln() >= expiry_ms
}

/// A small seeded random source (SplitMix64), so herds and tests are
/// repeatable.
#[derive(Clone, Debug)]
pub struct SeededRandom(u64);

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom(seed)
    }

    /// Uniform in (0, 1].
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// What XFetch keeps beside the value.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Stamped {
    /// The record's JSON.
    pub value: String,
    /// How long the last recompute took, in milliseconds.
    pub delta_ms: u64,
    /// When the value expires, in milliseconds since the Unix epoch.
    pub expiry_ms: u64,
}

/// What stale-while-revalidate keeps beside the value.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Fresh {
    pub value: String,
    /// Until when the value is fresh; after that it is served stale while
    /// one request refreshes it.
    pub fresh_until_ms: u64,
}

/// How long a stale value may still be served, beyond its fresh time.
pub const STALE_FOR: Duration = Duration::from_secs(30);

impl CacheAside<'_> {
    /// XFetch: a hit may still recompute, early, by the rule above.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn read_xfetch(
        &self,
        kind: Kind,
        id: u64,
        beta: f64,
        random: f64,
        trace: &mut Recorder,
    ) -> Result<HerdRead, StoreError> {
        let key = self.cache_key(kind, id);
        if let Ok(Some(cached)) = trace.redis(CHECK_CACHE, self.cache.get(&key)).await {
            if let Ok(stamped) = serde_json::from_str::<Stamped>(&cached) {
                let early = xfetch_should_recompute(
                    unix_millis() as f64,
                    stamped.delta_ms as f64,
                    beta,
                    stamped.expiry_ms as f64,
                    random,
                );
                if !early {
                    return Ok(HerdRead::cached(false));
                }
                trace.note(
                    CHECK_CACHE,
                    StepStatus::Miss,
                    "XFetch: recompute early, before the value expires",
                );
                self.store_stamped(kind, id, trace).await?;
                return Ok(HerdRead {
                    early: true,
                    ..HerdRead::loaded()
                });
            }
        }
        self.store_stamped(kind, id, trace).await?;
        Ok(HerdRead::loaded())
    }

    /// Loads the row, timing the load, and stores it with its delta and
    /// expiry for XFetch.
    pub async fn store_stamped(&self, kind: Kind, id: u64, trace: &mut Recorder) -> Result<(), StoreError> {
        let began = std::time::Instant::now();
        let record = trace
            .sql(QUERY_DATABASE, self.database.find(kind, id, self.db_latency()))
            .await?;
        let delta_ms = began.elapsed().as_millis() as u64;
        if let Some(record) = record {
            let ttl_ms = self.settings.cache_ttl_secs * 1000;
            let stamped = Stamped {
                value: encode(&record),
                delta_ms,
                expiry_ms: unix_millis() + ttl_ms,
            };
            let json = serde_json::to_string(&stamped).expect("serializes");
            let call = self.cache.set_px(&self.cache_key(kind, id), &json, ttl_ms);
            let _ = trace.redis(STORE_IN_CACHE, call).await;
        }
        Ok(())
    }

    /// Stale-while-revalidate: a stale value is still served at once; the
    /// first request to see it stale takes a short refresh lock and reloads
    /// in the background, so exactly one load happens and nobody waits.
    ///
    /// # Errors
    /// When the database fails on a hard miss.
    pub async fn read_stale_while_revalidate(
        &self,
        kind: Kind,
        id: u64,
        trace: &mut Recorder,
    ) -> Result<HerdRead, StoreError> {
        let key = self.cache_key(kind, id);
        if let Ok(Some(cached)) = trace.redis(CHECK_CACHE, self.cache.get(&key)).await {
            if let Ok(fresh) = serde_json::from_str::<Fresh>(&cached) {
                if unix_millis() < fresh.fresh_until_ms {
                    return Ok(HerdRead::cached(false));
                }
                let refresh = format!("{key}:refresh");
                let token = unique_token();
                let taken = trace
                    .redis(
                        CHECK_CACHE,
                        self.cache
                            .set_nx_px(&refresh, &token, self.lock_ttl().as_millis() as u64),
                    )
                    .await;
                let mut read = HerdRead::cached(false);
                read.stale = true;
                if matches!(taken, Ok(Some(_))) {
                    // This request refreshes, in the background: it answers
                    // with the stale value now, like everyone else.
                    let cache = self.cache.clone();
                    let database = self.database.clone();
                    let settings = self.settings.clone();
                    let sandbox = self.sandbox.clone();
                    tokio::spawn(async move {
                        let engine = CacheAside {
                            cache: &cache,
                            database: &database,
                            settings: &settings,
                            sandbox: &sandbox,
                            instance: None,
                            fleet: None,
                        };
                        let _ = engine.store_fresh(kind, id, &mut Recorder::new()).await;
                    });
                    read.loaded = true;
                }
                return Ok(read);
            }
        }
        self.store_fresh(kind, id, trace).await?;
        Ok(HerdRead::loaded())
    }

    /// Loads the row and stores it fresh for the TTL, servable stale for
    /// [`STALE_FOR`] more.
    pub async fn store_fresh(&self, kind: Kind, id: u64, trace: &mut Recorder) -> Result<(), StoreError> {
        let record = trace
            .sql(QUERY_DATABASE, self.database.find(kind, id, self.db_latency()))
            .await?;
        if let Some(record) = record {
            let fresh_ms = self.settings.cache_ttl_secs * 1000;
            let fresh = Fresh {
                value: encode(&record),
                fresh_until_ms: unix_millis() + fresh_ms,
            };
            let json = serde_json::to_string(&fresh).expect("serializes");
            let call = self.cache.set_px(
                &self.cache_key(kind, id),
                &json,
                fresh_ms + STALE_FOR.as_millis() as u64,
            );
            let _ = trace.redis(STORE_IN_CACHE, call).await;
        }
        Ok(())
    }
}

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use shared::{
    check_id, Defence, EdgeCount, HerdResult, HerdSpec, HerdTiming, InputError, NodeId, SandboxId,
    SandboxSettings,
};

/// At expiry, the value is primed to live this long before the herd.
const PRIMED_TTL_SECS: u64 = 2;
/// At expiry, requests arrive from this long before the expiry to this long
/// after it.
const EXPIRY_SPREAD: Duration = Duration::from_millis(400);
/// With many keys, how many.
const MANY_KEYS: u64 = 50;
/// The seed of a herd's random draws, so the same herd behaves the same.
const HERD_SEED: u64 = 0x5eed_4e4d;

use crate::playground::{OpError, Playground};
use crate::recorder::micros;
use crate::sandbox::Sandbox;

impl Playground {
    /// Fires `spec.requests` concurrent reads at a cold key, spread
    /// round-robin over the sandbox's instances, with the chosen defence,
    /// and measures what reached the database and how long each took.
    /// Herds are not traced one by one (thousands of traces would drown
    /// the page); the result summarises them.
    ///
    /// # Errors
    /// [`OpError::Input`] for a bad id or a request count out of range.
    pub async fn run_herd(
        self: &Arc<Self>,
        sandbox_id: &SandboxId,
        spec: HerdSpec,
    ) -> Result<HerdResult, OpError> {
        check_id(spec.id)?;
        if !(1..=HerdSpec::MAX_REQUESTS).contains(&spec.requests) {
            return Err(InputError::BadSetting(format!(
                "requests must be from 1 to {}, not {}",
                HerdSpec::MAX_REQUESTS,
                spec.requests
            ))
            .into());
        }
        if !(0.1..=10.0).contains(&spec.beta) {
            return Err(
                InputError::BadSetting(format!("beta must be from 0.1 to 10, not {}", spec.beta)).into(),
            );
        }
        if spec.jitter_percent > 90 {
            return Err(InputError::BadSetting(format!(
                "jitter must be from 0 to 90 %, not {}",
                spec.jitter_percent
            ))
            .into());
        }
        let sandbox = self.sandbox(sandbox_id)?;
        let _one_herd_at_a_time = sandbox.herd.lock().await;
        // Near caches would answer the herd before Redis: keep them out.
        let base = sandbox.settings();
        let settings = Arc::new(SandboxSettings {
            // Near caches would answer the herd before Redis: keep them out.
            near_cache: false,
            // Herds use keys of their own (`cache:herd:{sandbox}:...`), so
            // their value formats never meet the sandbox's normal reads.
            key_prefix: format!("{}herd:", base.key_prefix),
            // At expiry and with many keys, the primed values live this long.
            cache_ttl_secs: if spec.timing == HerdTiming::Cold {
                base.cache_ttl_secs
            } else {
                PRIMED_TTL_SECS
            },
            null_ttl_secs: if spec.timing == HerdTiming::Cold {
                base.null_ttl_secs
            } else {
                PRIMED_TTL_SECS
            },
            // Jitter only where it is the defence under test.
            ttl_jitter_percent: if spec.defence == Defence::TtlJitter {
                spec.jitter_percent.min(90)
            } else {
                0
            },
            ..base
        });

        // Start cold: no value, no lock.
        let probe = sandbox.engine(&settings, None);
        let key = probe.cache_key(spec.kind, spec.id);
        let lock = probe.lock_key(spec.kind, spec.id);
        let _ = sandbox.cache.run(sandbox.cache.del2(&key, &lock)).await;
        let _ = sandbox
            .cache
            .run(sandbox.cache.del(&format!("{key}:refresh")))
            .await;
        let fills = match spec.defence {
            Defence::RedisLock => Some(listen_for_fills(&sandbox, &probe.fills_channel()).await),
            _ => None,
        };
        // At expiry: store the value now, in the defence's own format, and
        // spread the requests evenly around the moment it expires.
        let schedule = match spec.timing {
            HerdTiming::Cold => None,
            HerdTiming::ManyKeys => {
                // Cache every key at the same moment (their TTLs differ
                // only by the jitter, if any), starting from none cached.
                for offset in 1..MANY_KEYS {
                    let other = probe.cache_key(spec.kind, spec.id + offset);
                    let _ = sandbox.cache.run(sandbox.cache.del(&other)).await;
                }
                let mut primes = Vec::new();
                for offset in 0..MANY_KEYS {
                    let sandbox = sandbox.clone();
                    let settings = settings.clone();
                    primes.push(tokio::spawn(async move {
                        let engine = sandbox.engine(&settings, None);
                        engine.prime(spec.defence, spec.kind, spec.id + offset).await
                    }));
                }
                for prime in primes {
                    prime.await.map_err(|e| StoreError::Task(e.to_string()))??;
                }
                Some(tokio::time::Instant::now())
            }
            HerdTiming::AtExpiry => {
                probe.prime(spec.defence, spec.kind, spec.id).await?;
                let expires = tokio::time::Instant::now() + Duration::from_secs(PRIMED_TTL_SECS);
                Some(expires - EXPIRY_SPREAD)
            }
        };

        let started = Instant::now();
        let instances = sandbox.fleet.instances.clone();
        let mut tasks = Vec::with_capacity(spec.requests as usize);
        let mut random = SeededRandom::new(HERD_SEED);
        for n in 0..spec.requests as usize {
            let sandbox = sandbox.clone();
            let settings = settings.clone();
            let instance = instances[n % instances.len()].clone();
            let fills = fills.as_ref().map(|f| f.senders[instance.index].clone());
            let spec = spec.clone();
            let draw = random.next_unit();
            // At expiry: evenly over twice the spread, centred on the
            // expiry. Many keys: evenly over twice the TTL, key after key.
            let (window, id) = match spec.timing {
                HerdTiming::ManyKeys => (
                    Duration::from_secs(2 * PRIMED_TTL_SECS),
                    spec.id + n as u64 % MANY_KEYS,
                ),
                _ => (EXPIRY_SPREAD * 2, spec.id),
            };
            let at = schedule.map(|first| first + window * n as u32 / spec.requests as u32);
            let herd_start = started;
            tasks.push(tokio::spawn(async move {
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                let engine = sandbox.engine(&settings, Some(&instance));
                let mut trace = Recorder::new();
                trace.note(REQUEST, StepStatus::Ok, "a request of the herd");
                let begun = Instant::now();
                let kind = spec.kind;
                let offset_ms = herd_start.elapsed().as_millis() as u64;
                let read = match (spec.defence, &fills) {
                    (Defence::SingleFlight, _) => engine.read_single_flight(kind, id, &mut trace).await,
                    (Defence::RedisLock, Some(fills)) => {
                        engine.read_with_lock(kind, id, fills, &mut trace).await
                    }
                    (Defence::XFetch, _) => engine.read_xfetch(kind, id, spec.beta, draw, &mut trace).await,
                    (Defence::StaleWhileRevalidate, _) => {
                        engine.read_stale_while_revalidate(kind, id, &mut trace).await
                    }
                    _ => engine.read(kind, id, &mut trace).await.map(|answer| HerdRead {
                        loaded: !answer.outcome.from_cache(),
                        from_cache: answer.outcome.from_cache(),
                        ..HerdRead::default()
                    }),
                };
                // End every path at its answer, so the diagram can count
                // the requests along each edge.
                let end = if read.as_ref().is_ok_and(|r| r.loaded) {
                    RETURN_LOADED
                } else {
                    RETURN_CACHED
                };
                if trace.steps().last().map(|s| &s.node) != Some(&end) {
                    trace.note(end, StepStatus::Ok, "answered");
                }
                let path: Vec<NodeId> = trace.steps().iter().map(|s| s.node.clone()).collect();
                (read, micros(begun.elapsed()), offset_ms, path)
            }));
        }
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .expect("valid histogram bounds");
        let mut result = HerdResult {
            spec: spec.clone(),
            instances: instances.len() as u64,
            database_loads: 0,
            from_cache: 0,
            waited: 0,
            fallbacks: 0,
            p50_us: 0,
            p90_us: 0,
            p99_us: 0,
            max_us: 0,
            histogram: Vec::new(),
            duration_ms: 0,
            served_stale: 0,
            early_recomputes: 0,
            peak_loads_per_100ms: 0,
            edges: Vec::new(),
        };
        let mut loads_per_100ms = std::collections::HashMap::new();
        let mut edge_counts: std::collections::HashMap<(NodeId, NodeId), u64> =
            std::collections::HashMap::new();
        // On the first failure, stop the rest of the herd before returning,
        // so nothing outlives the herd lock (the listeners stop on drop).
        let mut tasks = tasks.into_iter();
        while let Some(task) = tasks.next() {
            let joined = task.await.map_err(|e| StoreError::Task(e.to_string()));
            let outcome =
                joined.and_then(|(read, latency, offset, path)| read.map(|r| (r, latency, offset, path)));
            let (read, latency_us, offset_ms, path) = match outcome {
                Ok(done) => done,
                Err(e) => {
                    for rest in tasks.by_ref() {
                        rest.abort();
                    }
                    return Err(e.into());
                }
            };
            for pair in path.windows(2).filter(|p| p[0] != p[1]) {
                *edge_counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_insert(0u64) += 1;
            }
            if read.loaded {
                *loads_per_100ms.entry(offset_ms / 100).or_insert(0u64) += 1;
            }
            let _ = histogram.record(latency_us.max(1));
            result.database_loads += u64::from(read.loaded);
            result.from_cache += u64::from(read.from_cache);
            result.waited += u64::from(read.waited);
            result.fallbacks += u64::from(read.fell_back);
            result.served_stale += u64::from(read.stale);
            result.early_recomputes += u64::from(read.early);
        }
        result.duration_ms = started.elapsed().as_millis() as u64;
        result.peak_loads_per_100ms = loads_per_100ms.values().copied().max().unwrap_or(0);
        result.edges = edge_counts
            .into_iter()
            .map(|((from, to), count)| EdgeCount { from, to, count })
            .collect();
        result.edges.sort_by_key(|e| std::cmp::Reverse(e.count));
        result.p50_us = histogram.value_at_quantile(0.50);
        result.p90_us = histogram.value_at_quantile(0.90);
        result.p99_us = histogram.value_at_quantile(0.99);
        result.max_us = histogram.max();
        result.histogram = histogram
            .iter_log(1_000, 2.0)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect();
        drop(fills);
        Ok(result)
    }
}

/// Each instance's Pub/Sub subscription to the "value stored" channel,
/// forwarding to that instance's waiters.
struct Fills {
    senders: Vec<broadcast::Sender<String>>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fills {
    /// The listeners stop with the herd, however it ends.
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// How long connecting and subscribing to Pub/Sub may take; past that,
/// waiters still wake at their own timeout.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn listen_for_fills(sandbox: &Sandbox, channel: &str) -> Fills {
    let mut fills = Fills {
        senders: Vec::new(),
        listeners: Vec::new(),
    };
    for instance in &sandbox.fleet.instances {
        let (sender, _) = broadcast::channel(64);
        fills.senders.push(sender.clone());
        // Subscribe before the herd starts, so no announcement is missed;
        // if Redis refuses, waiters still wake at their timeout.
        let client = instance.cache.client();
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(channel).await.ok()?;
            Some(pubsub)
        })
        .await;
        let Ok(Some(mut pubsub)) = subscribed else {
            continue;
        };
        fills.listeners.push(tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                if let Ok(announcement) = message.get_payload::<String>() {
                    let _ = sender.send(announcement);
                }
            }
        }));
    }
    fills
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfetch_never_recomputes_early_with_a_draw_of_one() {
        // ln(1) = 0: only expiry itself triggers a recompute.
        assert!(!xfetch_should_recompute(999.0, 100.0, 1.0, 1_000.0, 1.0));
        assert!(xfetch_should_recompute(1_000.0, 100.0, 1.0, 1_000.0, 1.0));
    }

    #[test]
    fn xfetch_recomputes_more_often_closer_to_expiry() {
        // With beta 1, a request one delta before expiry recomputes when
        // -ln(r) >= 1, that is with probability e^-1 (about 0.368); ten
        // deltas before, with e^-10 (about 0.00005).
        let share = |before_ms: f64, beta: f64| {
            let mut random = SeededRandom::new(42);
            let n = 100_000;
            let hits = (0..n)
                .filter(|_| {
                    xfetch_should_recompute(1_000.0 - before_ms, 100.0, beta, 1_000.0, random.next_unit())
                })
                .count();
            hits as f64 / n as f64
        };
        let one_delta = share(100.0, 1.0);
        assert!((0.36..0.376).contains(&one_delta), "{one_delta}");
        assert!(share(1_000.0, 1.0) < 0.001);
        // A larger beta recomputes earlier: e^-0.5 at one delta with beta 2.
        let eager = share(100.0, 2.0);
        assert!((0.60..0.61).contains(&eager), "{eager}");
    }

    #[test]
    fn seeded_draws_repeat_and_stay_in_range() {
        let draws = |seed| {
            let mut r = SeededRandom::new(seed);
            (0..1000).map(|_| r.next_unit()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(draws(7).iter().all(|d| *d > 0.0 && *d <= 1.0));
    }
}
