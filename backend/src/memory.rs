//! The eviction lab (tutorial sections 4.4 and 5.3): what Redis does when
//! a cache outgrows `maxmemory`, under each of its eight policies.
//!
//! Only a sandbox with a redis-server of its own (see
//! [`crate::private_redis`]) may change the limit and policy: on the
//! shared Redis that would evict every other visitor's keys. Elsewhere the
//! lab shows the figures read-only and says why.
//!
//! A fill is an ordinary cache-aside workload through the engine: each key
//! read once (a miss that loads and stores a value of the chosen size),
//! then reads drawn by Zipf's law. Redis decides what stays; the engine's
//! observer counts the stores Redis refused (out of memory), and the reads
//! after the fill count how many hot keys the policy kept.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_aside::{CacheAside, Observer, Options, RedisError, Source, Status, Step, StepKind};
use shared::{FillResult, FillSpec, InputError, MemorySettings, MemoryState};

use crate::error::OpError;
use crate::load::KeySequence;
use crate::sandbox::Sandbox;

/// Reads of a fill in flight at once: enough to keep a local Redis busy,
/// few enough that the order stays close to the sequence's.
const WORKERS: usize = 4;
/// The TTL of a fill's values when it asks for one: long enough that
/// nothing expires during the fill, so every key that goes was evicted.
const FILL_TTL: Duration = Duration::from_secs(600);

/// Why a sandbox on the shared Redis cannot change it.
pub const SHARED: &str = "this sandbox shares the playground's Redis with every other visitor, so its memory limit and policy are read-only here; open a sandbox with a redis-server of its own to change them";

/// The memory of the sandbox's server as it stands. `refusal` says why the
/// sandbox may not change it (`None`: it may, up to `limit_kb`).
///
/// # Errors
/// [`RedisError`] when Redis fails or is too slow.
pub async fn state(sandbox: &Sandbox, refusal: Option<String>) -> Result<MemoryState, RedisError> {
    let figures = crate::inspect::figures(sandbox, 0).await?;
    let bad = |e: redis::ParsingError| RedisError::Failed(e.to_string());
    // A managed Redis may refuse CONFIG: the samples are then unknown (0).
    let mut samples = redis::cmd("CONFIG");
    samples.arg("GET").arg("maxmemory-samples");
    let samples = match sandbox.redis.query(&samples, sandbox.timeout).await {
        Ok(reply) => redis::from_redis_value::<Vec<String>>(reply)
            .ok()
            .and_then(|pair| pair.get(1)?.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let keys: u64 = redis::from_redis_value(
        sandbox
            .redis
            .query(&redis::cmd("DBSIZE"), sandbox.timeout)
            .await?,
    )
    .map_err(bad)?;
    let limit_kb = sandbox.own_server_limit_kb();
    Ok(MemoryState {
        controllable: limit_kb.is_some() && refusal.is_none(),
        reason: if limit_kb.is_some() {
            refusal
        } else {
            refusal.or_else(|| Some(SHARED.into()))
        },
        limit_kb: limit_kb.unwrap_or(0),
        maxmemory: figures.maxmemory,
        policy: figures.maxmemory_policy,
        samples,
        used_memory: figures.used_memory,
        keys,
        evicted_keys: figures.evicted_keys,
    })
}

/// Gives the sandbox's own server `settings` (one `CONFIG SET`).
///
/// # Errors
/// [`OpError::Input`] on the shared Redis or out of range;
/// [`OpError::Inspection`] when Redis fails.
pub async fn set(sandbox: &Sandbox, settings: MemorySettings) -> Result<MemoryState, OpError> {
    let limit_kb = own_server(sandbox)?;
    settings.validate(limit_kb)?;
    let mut config = redis::cmd("CONFIG");
    config
        .arg("SET")
        .arg("maxmemory")
        .arg(settings.maxmemory_kb * 1024)
        .arg("maxmemory-policy")
        .arg(settings.policy.name())
        .arg("maxmemory-samples")
        .arg(settings.samples);
    sandbox
        .redis
        .query(&config, sandbox.timeout)
        .await
        .map_err(|e| OpError::Inspection(e.into()))?;
    state(sandbox, None)
        .await
        .map_err(|e| OpError::Inspection(e.into()))
}

/// The highest `maxmemory` the sandbox may set, in KiB, if it has a server
/// of its own.
fn own_server(sandbox: &Sandbox) -> Result<u64, InputError> {
    sandbox
        .own_server_limit_kb()
        .ok_or_else(|| InputError::BadSetting(SHARED.into()))
}

/// Runs a fill (see the module's comment) on the sandbox's own server.
///
/// # Errors
/// [`OpError::Input`] on the shared Redis or for a spec out of range;
/// [`OpError::Inspection`] when Redis fails before or after the fill.
pub async fn fill(sandbox: &Sandbox, spec: FillSpec) -> Result<FillResult, OpError> {
    own_server(sandbox)?;
    spec.validate()?;
    let inspection = |e: RedisError| OpError::Inspection(e.into());
    let before = state(sandbox, None).await.map_err(inspection)?;
    let memory = MemorySettings {
        maxmemory_kb: before.maxmemory / 1024,
        policy: shared::EvictionPolicy::from_name(&before.policy).unwrap_or(MemorySettings::default().policy),
        samples: before.samples,
    };

    // The engine as an application would use it, on the sandbox's server
    // and key space; no stampede defence, no guard, no near cache: every
    // miss stores, so Redis alone decides what stays.
    let options = Options {
        ttl: FILL_TTL,
        forget_ttl: !spec.with_ttl,
        ..Options::default()
    };
    let cache: CacheAside<String> = CacheAside::builder(sandbox.redis.clone(), sandbox.keys.clone())
        .options(options.clone())
        .timeout(sandbox.timeout)
        .build()
        .map_err(|e| OpError::Internal(e.to_string()))?;

    // The fill in order, then the skewed reads: a function of the spec.
    let sequence: Arc<Vec<u64>> = Arc::new(
        (1..=spec.keys)
            .chain(
                KeySequence::new(&spec.distribution())
                    .zip(0..spec.reads)
                    .map(|((rank, _), n)| spec.key_of(n, rank)),
            )
            .collect(),
    );
    let counts = Arc::new(FillCounts::default());
    let next = Arc::new(AtomicUsize::new(0));
    let value_bytes = spec.value_bytes as usize;
    let started = Instant::now();
    // In a set: if the fill is dropped (its page left), its workers stop
    // with it rather than fill on unseen.
    let mut workers = tokio::task::JoinSet::new();
    let fill_len = spec.keys as usize;
    for _ in 0..WORKERS {
        let (cache, options, sequence, counts, next) = (
            cache.clone(),
            options.clone(),
            sequence.clone(),
            counts.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some(&id) = sequence.get(at) else { break };
                let key = format!("blob:{id}");
                let load = move || async move { Ok::<_, Infallible>(Some(blob(id, value_bytes))) };
                let Ok(answer) = cache.get_or_load_with(&key, &options, &*counts, load).await;
                if at >= fill_len {
                    counts.read(answer.source);
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| OpError::Internal(e.to_string()))?;
    }
    let duration_ms = started.elapsed().as_millis() as u64;

    let after = state(sandbox, None).await.map_err(inspection)?;
    let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
    Ok(FillResult {
        spec,
        memory,
        stored: get(&counts.stored),
        store_failures: get(&counts.refused),
        hits: get(&counts.hits),
        misses: get(&counts.misses),
        fallbacks: get(&counts.fallbacks),
        evicted: after.evicted_keys.saturating_sub(before.evicted_keys),
        keys_left: after.keys,
        used_memory: after.used_memory,
        duration_ms,
    })
}

/// A value of `bytes` bytes, recognizably `id`'s.
fn blob(id: u64, bytes: usize) -> String {
    let mut value = format!("blob {id} ");
    value.extend(std::iter::repeat_n('.', bytes.saturating_sub(value.len())));
    value.truncate(bytes);
    value
}

/// What a fill's reads found, and what became of its stores (seen through
/// the engine's observer).
#[derive(Default)]
struct FillCounts {
    stored: AtomicU64,
    refused: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    fallbacks: AtomicU64,
}

impl FillCounts {
    fn read(&self, source: Source) {
        let counter = match source {
            Source::Redis | Source::Near | Source::Negative | Source::Stale | Source::FailSafe => &self.hits,
            Source::Loaded => &self.misses,
            Source::Fallback => &self.fallbacks,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Observer for FillCounts {
    fn step(&self, step: &Step<'_>) {
        if step.kind == StepKind::Store {
            let counter = match step.status {
                // Out of memory: `noeviction`, or a volatile policy with
                // no key that has a TTL.
                Status::Error => &self.refused,
                _ => &self.stored,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_has_the_size_asked_for_and_names_its_key() {
        assert_eq!(blob(7, 100).len(), 100);
        assert!(blob(7, 100).starts_with("blob 7 "));
        assert_eq!(blob(123_456, 16).len(), 16);
    }
}
