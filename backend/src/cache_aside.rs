//! The cache-aside read: the heart of the playground.
//!
//! Read this file beside the tutorial's step 2 (section 3). The application,
//! not the cache, is in charge: it asks Redis first, and only when Redis has
//! nothing does it go to the database and then put what it found into Redis
//! for the next reader. Two refinements from the tutorial's pitfalls are
//! built in:
//!
//! - **Missing records are cached too** (section 4.7). A lookup of an id
//!   that does not exist stores a small marker with a shorter TTL, so a
//!   flood of requests for missing ids does not reach the database each time.
//! - **Redis failing never fails a read** (sections 4.5 and 6.3). Every
//!   Redis command has a short timeout; if the cache errors, the read falls
//!   back to the database and the trace says so.
//!
//! Every Redis command and SQL query goes through the [`Recorder`], which
//! runs it, times it and adds a step to the trace the browser animates.

use shared::diagram::nodes::{
    CACHE_ERROR, CHECK_CACHE, NEAR_CACHE, QUERY_DATABASE, REQUEST, RETURN_CACHED, RETURN_LOADED,
    STORE_IN_CACHE,
};
use shared::{Kind, Outcome, Record, SandboxId, SandboxSettings, StepStatus};
use std::time::Duration;

use crate::cache::{Cache, CacheError};
use crate::instance::{Fleet, Instance};
use crate::race::{marker_version, Entry, Lease};
use crate::recorder::Recorder;
use crate::store::{Database, StoreError};

/// What the cache holds for a record that does not exist. It can never be
/// mistaken for a record, because records are stored as JSON objects.
pub const MISSING_MARKER: &str = "<missing>";

/// Everything a cache-aside read needs: where the cache and the database
/// are, and the sandbox's settings. It knows nothing about HTTP, WebSockets
/// or the UI.
pub struct CacheAside<'a> {
    pub cache: &'a Cache,
    pub database: &'a Database,
    pub settings: &'a SandboxSettings,
    /// Keys are namespaced by sandbox, so learners never see each other's.
    pub sandbox: &'a SandboxId,
    /// The application instance doing the work, and its siblings; their
    /// near caches are used only when the sandbox turns them on.
    pub instance: Option<&'a Instance>,
    pub fleet: Option<&'a Fleet>,
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadAnswer {
    pub outcome: Outcome,
    /// `None` when the record does not exist.
    pub record: Option<Record>,
}

impl CacheAside<'_> {
    /// The cache key of a record, such as `cache:default:user:42`: the
    /// prefix, the sandbox, the record's type and its id (section 6.1).
    pub fn cache_key(&self, kind: Kind, id: u64) -> String {
        format!(
            "{}{}:{}:{id}",
            self.settings.key_prefix,
            self.sandbox,
            kind.key_segment()
        )
    }

    /// Reads one record the cache-aside way.
    ///
    /// # Errors
    /// Only when the database fails: a cache failure is never an error.
    pub async fn read(&self, kind: Kind, id: u64, trace: &mut Recorder) -> Result<ReadAnswer, StoreError> {
        let key = self.cache_key(kind, id);
        trace.note(
            REQUEST,
            StepStatus::Ok,
            self.describe(&format!("read {kind}/{id}")),
        );

        // 0. With near caches on, this instance's own memory first: no
        //    network at all. A copy here may be stale if this instance missed
        //    an invalidation; the near cache's short TTL bounds how long.
        if let Some(answer) = self.read_near(&key, trace) {
            return Ok(answer);
        }

        // 1. Ask Redis: a hit costs one round trip.
        match trace.redis(CHECK_CACHE, self.cache.get(&key)).await {
            Ok(Some(cached)) => {
                if let Some(answer) = answer_from_cache(&cached, trace) {
                    self.keep_near(&key, &cached);
                    return Ok(answer);
                }
                // The cached bytes were unreadable (someone wrote junk to
                // the key): treat it as a miss and overwrite it below.
            }
            // A miss: the key was never stored, expired or was evicted.
            Ok(None) => {}
            // Redis is down or slow. Do not fail the read over it.
            Err(error) => return self.read_without_cache(kind, id, error, trace).await,
        }

        // 2. On a miss the database, the source of truth, answers. (With
        //    leases on, the reader first takes a lease: see `race.rs`.)
        let lease = self.take_lease(kind, id, trace).await;
        let record = trace
            .sql(QUERY_DATABASE, self.database.find(kind, id, self.db_latency()))
            .await?;

        // 3. Store what we found so the next reader gets a hit. The TTL bounds
        //    how long a stale copy can live and keeps the cache from growing
        //    forever (section 4.3): no key is ever stored without one.
        self.store(kind, id, record.as_ref(), &lease, trace).await;

        // 4. Answer.
        trace.note(RETURN_LOADED, StepStatus::Ok, returned(record.as_ref()));
        Ok(ReadAnswer {
            outcome: Outcome::Miss,
            record,
        })
    }

    /// The near-cache step: the serving instance's own copy, if near caches
    /// are on and it has one.
    fn read_near(&self, key: &str, trace: &mut Recorder) -> Option<ReadAnswer> {
        let me = self.near_cache()?;
        let text = format!("near cache of instance {}: {key}", me.name);
        let cached = trace.local(NEAR_CACHE, text, || me.near_get(key))?;
        let answer = answer_from_cache(&cached, trace)?;
        let outcome = if answer.outcome == Outcome::Hit {
            Outcome::NearHit
        } else {
            answer.outcome
        };
        Some(ReadAnswer { outcome, ..answer })
    }

    /// Puts a record, or the missing marker, into Redis with its TTL.
    /// A failure here is recorded and otherwise ignored: the reader already
    /// has its answer, and the next read simply misses again.
    /// With a race fix on, the store is guarded (see `race.rs`) and may be
    /// refused because a writer got in between: the value is stale.
    async fn store(&self, kind: Kind, id: u64, record: Option<&Record>, lease: &Lease, trace: &mut Recorder) {
        let (value, ttl) = match record {
            Some(record) => (encode(record), self.settings.cache_ttl_secs),
            // Missing records get the shorter TTL, so a record created later
            // becomes visible soon (section 4.7).
            None => (MISSING_MARKER.to_string(), self.settings.null_ttl_secs),
        };
        let entry = Entry {
            value: &value,
            version: record.map(Record::version),
            ttl_ms: self.jittered_ms(ttl),
        };
        let key = self.cache_key(kind, id);
        if self
            .store_guarded(STORE_IN_CACHE, kind, id, entry, lease, trace)
            .await
        {
            // Only what Redis accepted is kept near: a refused value is stale.
            self.keep_near(&key, &value);
        }
    }

    /// The fallback path (section 4.5): Redis failed, so the database answers
    /// alone. We do not try to store the result: Redis has just failed, and
    /// a second attempt would add another timeout to a read that is already
    /// slow.
    async fn read_without_cache(
        &self,
        kind: Kind,
        id: u64,
        error: CacheError,
        trace: &mut Recorder,
    ) -> Result<ReadAnswer, StoreError> {
        tracing::warn!(%error, "cache unavailable, reading from the database");
        trace.note(
            CACHE_ERROR,
            StepStatus::Error,
            format!("cache error ({error}); falling back to the database"),
        );
        let record = trace
            .sql(QUERY_DATABASE, self.database.find(kind, id, self.db_latency()))
            .await?;
        trace.note(
            RETURN_LOADED,
            StepStatus::Ok,
            format!("{} (not cached: Redis is unavailable)", returned(record.as_ref())),
        );
        Ok(ReadAnswer {
            outcome: Outcome::Fallback,
            record,
        })
    }

    /// The serving instance, when near caches are on.
    pub(crate) fn near_cache(&self) -> Option<&Instance> {
        self.instance.filter(|_| self.settings.near_cache)
    }

    /// Keeps a near copy in the serving instance, when near caches are on.
    fn keep_near(&self, key: &str, value: &str) {
        if let Some(me) = self.near_cache() {
            me.near_put(key, value);
        }
    }

    /// `text`, plus which instance does it when there are several.
    pub(crate) fn describe(&self, text: &str) -> String {
        match self.instance {
            Some(me) => format!("{text} at instance {}", me.name),
            None => text.to_string(),
        }
    }

    /// A TTL in milliseconds, randomized by the sandbox's TTL jitter so keys
    /// cached together do not expire together (section 4.1).
    pub(crate) fn jittered_ms(&self, ttl_secs: u64) -> u64 {
        let base = ttl_secs * 1000;
        let jitter = self.settings.ttl_jitter_percent as f64 / 100.0;
        if jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + jitter * (2.0 * unit_random() - 1.0);
        ((base as f64 * factor) as u64).max(1)
    }

    /// The simulated database latency for one query: the setting, varied
    /// by up to the jitter percentage either way.
    pub(crate) fn db_latency(&self) -> Duration {
        let base = self.settings.db_latency_ms as f64;
        let jitter = self.settings.db_jitter_percent as f64 / 100.0;
        let factor = 1.0 + jitter * (2.0 * unit_random() - 1.0);
        Duration::from_secs_f64((base * factor).max(0.0) / 1000.0)
    }
}

/// Turns a cached string into an answer: the missing marker means "this
/// record does not exist" (no database query needed); anything else must be
/// a record's JSON. `None` when the bytes are neither.
fn answer_from_cache(cached: &str, trace: &mut Recorder) -> Option<ReadAnswer> {
    if let Some(version) = marker_version(cached) {
        // A version-checked write left this marker: the row changed, so
        // this is a miss; the marker stops older versions being stored.
        trace.note(
            CHECK_CACHE,
            StepStatus::Miss,
            format!("invalidated by a write (version {version}): a miss"),
        );
        return None;
    }
    if cached == MISSING_MARKER {
        trace.note(
            RETURN_CACHED,
            StepStatus::Hit,
            "cached \"does not exist\": no database query",
        );
        return Some(ReadAnswer {
            outcome: Outcome::NullHit,
            record: None,
        });
    }
    match serde_json::from_str::<Record>(cached) {
        Ok(record) => {
            trace.note(RETURN_CACHED, StepStatus::Hit, returned(Some(&record)));
            Some(ReadAnswer {
                outcome: Outcome::Hit,
                record: Some(record),
            })
        }
        Err(error) => {
            trace.note(
                CHECK_CACHE,
                StepStatus::Miss,
                format!("cached value is unreadable ({error}); treating it as a miss"),
            );
            None
        }
    }
}

/// A number in [0, 1) from a process-wide SplitMix64 sequence: enough for
/// latency jitter, and no dependency.
fn unit_random() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Records are cached as JSON: readable in `redis-cli`, which suits a lesson.
pub(crate) fn encode(record: &Record) -> String {
    serde_json::to_string(record).expect("records always serialize")
}

fn returned(record: Option<&Record>) -> String {
    match record {
        Some(record) => format!("return {}", record.title()),
        None => "return \"not found\"".into(),
    }
}
