//! The stampede lab (tutorial section 4.1): a herd of concurrent reads of
//! one key, spread over the sandbox's instances, each an ordinary
//! `get_or_load` with the defence under test. What reached the database,
//! who waited and how long each took are counted, not traced one by one
//! (thousands of traces would drown the page): the result summarises them,
//! with the requests per diagram edge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_aside::Source;
use shared::diagram::nodes::{REQUEST, RETURN_CACHED, RETURN_LOADED};
use shared::Kind;
use shared::{
    check_id, Defence, EdgeCount, HerdResult, HerdSpec, HerdTiming, InputError, NodeId, SandboxSettings,
    StampedePolicy,
};

use crate::error::OpError;
use crate::policies;
use crate::recorder::{micros, Path};
use crate::sandbox::{Running, Sandbox};
use crate::store::StoreError;

/// At expiry, the value is primed to live this long before the herd.
const PRIMED_TTL_SECS: u64 = 2;
/// At expiry, requests arrive from this long before the expiry to this long
/// after it.
const EXPIRY_SPREAD: Duration = Duration::from_millis(400);
/// With many keys, how many.
const MANY_KEYS: u64 = 50;
/// How long a herd waits, after its last answer, for the background
/// refreshes it started (one database query each, normally ~100 ms).
const REFRESHES_DONE: Duration = Duration::from_secs(30);

/// How one request of a herd went.
#[derive(Clone, Debug, Default)]
struct HerdRead {
    /// It read the database (or, with stale-while-revalidate, started the
    /// one background refresh).
    loaded: bool,
    /// It waited for someone else's load.
    waited: bool,
    /// It gave up waiting and read the database without the lock.
    fell_back: bool,
    /// It was answered with a stale value.
    stale: bool,
    /// It reloaded a value that had not expired yet (XFetch).
    early: bool,
    latency_us: u64,
    /// When it started, in milliseconds after the herd.
    offset_ms: u64,
    /// The diagram nodes it went through.
    path: Vec<NodeId>,
    /// The database was saturated: no connection came free in time.
    failed: bool,
}

/// Checks a herd's parameters.
fn check(spec: &HerdSpec) -> Result<(), InputError> {
    check_id(spec.id)?;
    if !(1..=HerdSpec::MAX_REQUESTS).contains(&spec.requests) {
        return Err(InputError::BadSetting(format!(
            "requests must be from 1 to {}, not {}",
            HerdSpec::MAX_REQUESTS,
            spec.requests
        )));
    }
    let (lo, hi) = SandboxSettings::BETA;
    if !(lo..=hi).contains(&spec.beta) {
        return Err(InputError::BadSetting(format!(
            "beta must be from {lo} to {hi}, not {}",
            spec.beta
        )));
    }
    if spec.jitter_percent > 90 {
        return Err(InputError::BadSetting(format!(
            "jitter must be from 0 to 90 %, not {}",
            spec.jitter_percent
        )));
    }
    Ok(())
}

/// The sandbox's settings with the herd's defence and timing.
fn herd_settings(base: &SandboxSettings, spec: &HerdSpec) -> SandboxSettings {
    let primed = spec.timing != HerdTiming::Cold;
    SandboxSettings {
        // Near caches would answer the herd before Redis: keep them out.
        near_cache: false,
        stampede: match spec.defence {
            Defence::None | Defence::TtlJitter => StampedePolicy::None,
            Defence::SingleFlight => StampedePolicy::SingleFlight,
            Defence::RedisLock => StampedePolicy::Lock,
            Defence::XFetch => StampedePolicy::EarlyRefresh,
            Defence::StaleWhileRevalidate => StampedePolicy::StaleWhileRevalidate,
        },
        early_refresh_beta: spec.beta,
        // At expiry and with many keys, the primed values live this long.
        cache_ttl_secs: if primed {
            PRIMED_TTL_SECS
        } else {
            base.cache_ttl_secs
        },
        null_ttl_secs: if primed {
            PRIMED_TTL_SECS
        } else {
            base.null_ttl_secs
        },
        // Jitter only where it is the defence under test.
        ttl_jitter_percent: if spec.defence == Defence::TtlJitter {
            spec.jitter_percent.min(90)
        } else {
            0
        },
        ..base.clone()
    }
}

/// Fires `spec.requests` concurrent reads, spread round-robin over the
/// sandbox's instances, with the chosen defence, and measures what reached
/// the database and how long each took.
///
/// # Errors
/// [`OpError::Input`] for a bad id or parameters out of range;
/// [`OpError::Database`] when a load fails (the rest of the herd stops).
pub async fn run(running: &Running, spec: HerdSpec) -> Result<HerdResult, OpError> {
    check(&spec)?;
    let sandbox: &Arc<Sandbox> = running;
    let settings = Arc::new(herd_settings(&sandbox.settings(), &spec));
    let options = Arc::new(policies::options_for(&settings, spec.kind));
    let key_of = |id: u64| policies::record_key(spec.kind, id);

    // Start cold: no value, no lock, no lease, no refresh lock.
    let ids: Vec<u64> = match spec.timing {
        HerdTiming::ManyKeys => (0..MANY_KEYS).map(|offset| spec.id + offset).collect(),
        _ => vec![spec.id],
    };
    let records: Vec<(Kind, u64)> = ids.iter().map(|id| (spec.kind, *id)).collect();
    running.admit(&records, &options)?;
    for id in &ids {
        let key = key_of(*id);
        let mut del = redis::cmd("DEL");
        for name in [
            sandbox.keys.value(&key),
            sandbox.keys.lock(&key),
            sandbox.keys.lease(&key),
            sandbox.keys.refresh(&key),
        ] {
            del.arg(name);
        }
        let _ = sandbox.redis.query(&del, sandbox.timeout).await;
    }

    // At expiry and with many keys: cache the values now, the way the
    // defence stores them, and schedule the requests around their expiry.
    let primer = sandbox.fleet().instances[0].clone();
    let schedule = match spec.timing {
        HerdTiming::Cold => None,
        HerdTiming::ManyKeys | HerdTiming::AtExpiry => {
            // In a set: dropped with the herd (a page that leaves), the
            // primes stop too.
            let mut primes = tokio::task::JoinSet::new();
            for id in &ids {
                let (primer, sandbox, settings, options) =
                    (primer.clone(), sandbox.clone(), settings.clone(), options.clone());
                let (id, kind) = (*id, spec.kind);
                primes.spawn(async move {
                    let loader = sandbox.loader(kind, id, &settings, |_| {});
                    primer
                        .cache
                        .get_or_load_with(
                            &policies::record_key(kind, id),
                            &options,
                            &cache_aside::NoObserver,
                            loader,
                        )
                        .await
                });
            }
            while let Some(prime) = primes.join_next().await {
                prime.map_err(|e| OpError::Internal(format!("priming failed: {e}")))??;
            }
            let now = tokio::time::Instant::now();
            Some(match spec.timing {
                HerdTiming::ManyKeys => now,
                _ => now + Duration::from_secs(PRIMED_TTL_SECS) - EXPIRY_SPREAD,
            })
        }
    };

    // The database loads are counted where they happen, in the loader,
    // background refreshes included: a request that takes the refresh lock
    // may find that another refresh already stored a fresh value, and then
    // nobody loads. Every loader holds a sender, dropped when the loader
    // has run or been dropped, so the herd can wait for its last refresh.
    let loads = Arc::new(AtomicU64::new(0));
    let (loader_alive, mut loaders_gone) = tokio::sync::mpsc::channel::<()>(1);

    let started = Instant::now();
    let instances = sandbox.fleet().instances.clone();
    // Every request in one set, owned by this future: if the herd ends
    // early (a failure, or the page that fired it leaves and its session
    // drops the herd), dropping the set aborts the requests still running,
    // so none outlives the herd's lock, its place among the herds allowed
    // at once, or a reset of the sandbox.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..spec.requests as usize {
        let (sandbox, settings, options) = (sandbox.clone(), settings.clone(), options.clone());
        let instance = instances[n % instances.len()].clone();
        // At expiry: evenly over twice the spread, centred on the expiry.
        // Many keys: evenly over twice the TTL, key after key.
        let (window, id) = match spec.timing {
            HerdTiming::ManyKeys => (Duration::from_secs(2 * PRIMED_TTL_SECS), ids[n % ids.len()]),
            _ => (EXPIRY_SPREAD * 2, spec.id),
        };
        let at = schedule.map(|first| first + window * n as u32 / spec.requests as u32);
        let kind = spec.kind;
        let (loads, alive) = (loads.clone(), loader_alive.clone());
        tasks.spawn(async move {
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
            let offset_ms = started.elapsed().as_millis() as u64;
            let begun = Instant::now();
            let path = Path::default();
            let loaded = Arc::new(AtomicBool::new(false));
            let heard = loaded.clone();
            let loader = sandbox.loader(kind, id, &settings, move |done| {
                // A query that found no free connection never reached the
                // database: no load.
                if done.reached {
                    heard.store(true, Ordering::SeqCst);
                    loads.fetch_add(1, Ordering::SeqCst);
                }
                drop(alive);
            });
            let answer = instance
                .cache
                .get_or_load_with(&policies::record_key(kind, id), &options, &path, loader)
                .await;
            let latency_us = micros(begun.elapsed());
            let state = path.finish();
            let answer = match answer {
                Ok(answer) => answer,
                // The saturated database turned it away: counted, and the
                // herd goes on (that is what the learner came to see).
                Err(StoreError::Busy { .. }) => {
                    let mut nodes = vec![REQUEST];
                    nodes.extend(state.nodes);
                    return Ok(HerdRead {
                        failed: true,
                        latency_us,
                        offset_ms,
                        path: nodes,
                        ..HerdRead::default()
                    });
                }
                Err(error) => return Err(error),
            };
            let stale = answer.source == Source::Stale;
            // A stale answer's refresh runs in the background: the request
            // that started it counts as the one load.
            let loaded = if stale {
                state.refresh_taken
            } else {
                loaded.load(Ordering::SeqCst)
            };
            let mut nodes = Vec::with_capacity(state.nodes.len() + 2);
            nodes.push(REQUEST);
            nodes.extend(state.nodes);
            // End every path at its answer, so the diagram can count the
            // requests along each edge.
            let end = if loaded && !stale {
                RETURN_LOADED
            } else {
                RETURN_CACHED
            };
            if nodes.last() != Some(&end) {
                nodes.push(end);
            }
            Ok::<HerdRead, StoreError>(HerdRead {
                loaded,
                waited: answer.waited,
                fell_back: answer.waited && loaded,
                stale,
                early: state.early,
                latency_us,
                offset_ms,
                path: nodes,
                failed: false,
            })
        });
    }
    let mut result = tally(spec, instances.len() as u64, started, tasks).await?;
    drop(loader_alive);
    // `recv` answers `None` once every loader is gone: no polling.
    if tokio::time::timeout(REFRESHES_DONE, loaders_gone.recv())
        .await
        .is_err()
    {
        tracing::warn!("a herd's background refresh was still running after {REFRESHES_DONE:?}");
    }
    result.database_loads = loads.load(Ordering::SeqCst);
    Ok(result)
}

/// Waits for every request and sums them up. On the first failure the rest
/// of the herd is stopped before returning (dropping the set aborts them),
/// so nothing outlives the herd's lock.
async fn tally(
    spec: HerdSpec,
    instances: u64,
    started: Instant,
    mut tasks: tokio::task::JoinSet<Result<HerdRead, StoreError>>,
) -> Result<HerdResult, OpError> {
    let mut histogram =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    let mut result = HerdResult {
        spec,
        instances,
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
        failed: 0,
    };
    let mut loads_per_100ms: HashMap<u64, u64> = HashMap::new();
    let mut edge_counts: HashMap<(NodeId, NodeId), u64> = HashMap::new();
    while let Some(task) = tasks.join_next().await {
        let read = match task {
            Ok(Ok(read)) => read,
            failed => {
                return Err(match failed {
                    Ok(Err(error)) => error.into(),
                    Err(error) => OpError::Internal(format!("a herd request failed: {error}")),
                    Ok(Ok(_)) => unreachable!("matched above"),
                });
            }
        };
        for pair in read.path.windows(2).filter(|p| p[0] != p[1]) {
            *edge_counts.entry((pair[0].clone(), pair[1].clone())).or_default() += 1;
        }
        if read.loaded {
            *loads_per_100ms.entry(read.offset_ms / 100).or_default() += 1;
        }
        let _ = histogram.record(read.latency_us.max(1));
        result.database_loads += u64::from(read.loaded);
        result.from_cache += u64::from((!read.loaded || read.stale) && !read.failed);
        result.waited += u64::from(read.waited);
        result.fallbacks += u64::from(read.fell_back);
        result.served_stale += u64::from(read.stale);
        result.early_recomputes += u64::from(read.early);
        result.failed += u64::from(read.failed);
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
    Ok(result)
}
