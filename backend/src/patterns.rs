//! The pattern comparison (tutorial section 2): one seeded workload of
//! reads and writes, run through cache-aside, read-through, write-through
//! and write-behind on the sandbox's real Redis and database, measured
//! side by side: how long reads and writes took, what reached the
//! database, how often an answer was older than the database, how often
//! the database was behind, how many writes were only in Redis at the
//! worst moment, and how many acknowledged writes a crash of the writer
//! halfway through lost.
//!
//! Each pattern works on ids of its own, so one cannot warm the cache for
//! another. Reads are `get_or_load`; what differs is the write:
//! - cache-aside and read-through: database, then delete the key (read-through
//!   differs in who owns the loader, not in what runs);
//! - write-through: database, then store the new value;
//! - write-behind: store the new value and queue the database write; a
//!   flusher drains the queue in the background, one write at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_aside::random::SplitMix64;
use cache_aside::write::{Change, WritePolicy};
use cache_aside::NoObserver;
use shared::{
    InputError, Kind, Pattern, PatternComparison, PatternRow, Record, SandboxSettings, StampedePolicy,
};

use crate::error::OpError;
use crate::policies;
use crate::recorder::micros;
use crate::sandbox::{Running, Sandbox};
use crate::store::simulated_latency;

/// Operations per pattern.
pub const OPERATIONS: u64 = 100;
/// Share of the operations that are writes, in percent.
pub const WRITE_PERCENT: u64 = 20;
/// Records each pattern works on.
pub const KEYS: u64 = 10;
/// The first user id of the comparison; pattern `i` uses the `KEYS` ids
/// from `FIRST_ID + i * KEYS`.
const FIRST_ID: u64 = 900;
/// How long the end of a run waits for the write-behind queue to drain.
const DRAIN: Duration = Duration::from_secs(60);
/// The comparison's database latency is the sandbox's, at most this: about
/// 50 database round trips per pattern keep a run under 25 s.
pub const MAX_DB_LATENCY_MS: u64 = 100;

/// One operation of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read the record at this index (0..KEYS).
    Read(u64),
    /// Rename it; the number makes the name.
    Write(u64, u64),
}

/// The workload of `seed`: the same seed, the same operations.
pub fn workload(seed: u64) -> Vec<Op> {
    let random = SplitMix64::new(seed);
    (0..OPERATIONS)
        .map(|n| {
            let draw = random.next_u64();
            let index = (draw >> 8) % KEYS;
            if draw % 100 < WRITE_PERCENT {
                Op::Write(index, n)
            } else {
                Op::Read(index)
            }
        })
        .collect()
}

/// Runs the workload of `seed` through every pattern.
///
/// # Errors
/// [`OpError`] when the database fails, or the sandbox may not hold the
/// comparison's keys.
pub async fn compare(running: &Running, seed: u64) -> Result<PatternComparison, OpError> {
    let sandbox: &Arc<Sandbox> = running;
    // The patterns under test, with nothing else in the way: no stampede
    // defence, no race guard, no near cache.
    let settings = SandboxSettings {
        // Bounded, so a comparison takes seconds, not minutes, whatever
        // the sandbox's database latency.
        db_latency_ms: sandbox.settings().db_latency_ms.min(MAX_DB_LATENCY_MS),
        stampede: StampedePolicy::None,
        race_fix: shared::RaceFix::None,
        near_cache: false,
        ttl_jitter_percent: 0,
        ..sandbox.settings()
    };
    let options = policies::options(&settings);
    let records: Vec<(Kind, u64)> = (0..Pattern::ALL.len() as u64 * KEYS)
        .map(|n| (Kind::Users, FIRST_ID + n))
        .collect();
    running.admit(&records, &options)?;
    let ops = workload(seed);
    let mut rows = Vec::new();
    for (index, pattern) in Pattern::ALL.into_iter().enumerate() {
        let first = FIRST_ID + index as u64 * KEYS;
        rows.push(run_pattern(sandbox, &settings, &options, pattern, first, &ops).await?);
    }
    Ok(PatternComparison {
        seed,
        operations: OPERATIONS,
        write_percent: WRITE_PERCENT,
        keys: KEYS,
        db_latency_ms: settings.db_latency_ms,
        rows,
    })
}

/// Latencies of one kind of operation, in microseconds.
#[derive(Default)]
struct Times(Vec<u64>);

impl Times {
    fn average(&self) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.iter().sum::<u64>() / self.0.len() as u64
        }
    }

    fn p99(&mut self) -> u64 {
        self.0.sort_unstable();
        let rank = (self.0.len() * 99).div_ceil(100);
        self.0.get(rank.saturating_sub(1)).copied().unwrap_or(0)
    }
}

/// Writes waiting for the database (write-behind).
#[derive(Default)]
struct Queue {
    waiting: Mutex<VecDeque<(u64, String)>>,
    /// Writes taken off the queue and not yet in the database.
    in_flight: AtomicU64,
    written: AtomicU64,
    failed: Mutex<Option<String>>,
}

impl Queue {
    /// Writes not in the database yet.
    fn unsaved(&self) -> u64 {
        self.waiting.lock().map(|q| q.len() as u64).unwrap_or(0) + self.in_flight.load(Ordering::SeqCst)
    }
}

async fn run_pattern(
    sandbox: &Arc<Sandbox>,
    settings: &SandboxSettings,
    options: &cache_aside::Options,
    pattern: Pattern,
    first: u64,
    ops: &[Op],
) -> Result<PatternRow, OpError> {
    let cache = sandbox.fleet().instances[0].cache.clone();
    let key_of = |index: u64| policies::record_key(Kind::Users, first + index);

    // Start cold: none of this pattern's keys cached.
    let mut del = redis::cmd("DEL");
    for index in 0..KEYS {
        del.arg(sandbox.keys.value(&key_of(index)));
    }
    let _ = sandbox.redis.query(&del, sandbox.timeout).await;

    let loads = Arc::new(AtomicU64::new(0));
    let (mut reads, mut writes) = (Times::default(), Times::default());
    let (mut stale_reads, mut database_behind, mut most_unsaved, mut database_writes) = (0, 0, 0, 0);

    // Write-behind's flusher: one database write at a time, in order.
    let queue = Arc::new(Queue::default());
    let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel::<()>();
    let flusher = (pattern == Pattern::WriteBehind).then(|| {
        let (queue, sandbox) = (queue.clone(), sandbox.clone());
        let latency = (settings.db_latency_ms, settings.db_jitter_percent);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                loop {
                    let next = queue.waiting.lock().ok().and_then(|mut q| {
                        let next = q.pop_front();
                        if next.is_some() {
                            queue.in_flight.fetch_add(1, Ordering::SeqCst);
                        }
                        next
                    });
                    let Some((id, name)) = next else {
                        break;
                    };
                    let delay = simulated_latency(latency.0, latency.1);
                    // With the simulated latency, as every database write.
                    let (done, _) = sandbox
                        .database
                        .update_name(Kind::Users, id, name, delay)
                        .run_measured()
                        .await;
                    queue.in_flight.fetch_sub(1, Ordering::SeqCst);
                    match done {
                        Ok(_) => {
                            sandbox.row_changed(Kind::Users, id, crate::recorder::unix_millis());
                            queue.written.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => {
                            if let Ok(mut failed) = queue.failed.lock() {
                                *failed = Some(error.to_string());
                            }
                        }
                    }
                }
            }
        })
    });

    let read = |index: u64| {
        let (cache, sandbox, loads) = (cache.clone(), sandbox.clone(), loads.clone());
        let key = key_of(index);
        async move {
            let loader = sandbox.loader(Kind::Users, first + index, settings, move |_| {
                loads.fetch_add(1, Ordering::SeqCst);
            });
            cache.get_or_load_with(&key, options, &NoObserver, loader).await
        }
    };

    // Right after the first write acknowledged past halfway, the writer's
    // process crashes and restarts: what it held only in memory is lost.
    // (Cache-aside and write-through acknowledge a write once the database
    // has it: nothing to lose.)
    let crash_at = ops.len() / 2;
    let (mut crashed, mut lost_writes) = (false, 0);
    for (at, op) in ops.iter().enumerate() {
        match *op {
            Op::Read(index) => {
                let started = Instant::now();
                let answer = read(index).await?;
                reads.0.push(micros(started.elapsed()));
                // Compared with the row outside the measured time.
                let row = sandbox
                    .database
                    .find(Kind::Users, first + index, Duration::ZERO)
                    .execute()
                    .await?;
                let (seen, truth) = (
                    answer.value.as_ref().map_or(0, Record::version),
                    row.as_ref().map_or(0, Record::version),
                );
                stale_reads += u64::from(seen < truth);
                database_behind += u64::from(truth < seen);
            }
            Op::Write(index, n) => {
                let id = first + index;
                let name = format!("Renamed {n}");
                let key = key_of(index);
                let started = Instant::now();
                match pattern {
                    Pattern::CacheAside | Pattern::ReadThrough | Pattern::WriteThrough => {
                        let delay = simulated_latency(settings.db_latency_ms, settings.db_jitter_percent);
                        let (row, _) = sandbox
                            .database
                            .update_name(Kind::Users, id, name, delay)
                            .run_measured()
                            .await;
                        let row = row?;
                        database_writes += 1;
                        if let Some(row) = row {
                            let policy = if pattern == Pattern::WriteThrough {
                                WritePolicy::WriteThrough
                            } else {
                                WritePolicy::Invalidate
                            };
                            cache
                                .after_write_with(&key, Change::Updated(&row), policy, options, &NoObserver)
                                .await;
                            sandbox.row_changed(Kind::Users, id, crate::recorder::unix_millis());
                        }
                    }
                    Pattern::WriteBehind => {
                        // Read, modify, store in the cache; the database
                        // hears of it later.
                        let current = read(index).await?;
                        if let Some(Record::User(mut user)) = current.value {
                            user.name = name.clone();
                            user.version += 1;
                            let record = Record::User(user);
                            cache
                                .after_write_with(
                                    &key,
                                    Change::Updated(&record),
                                    WritePolicy::WriteThrough,
                                    options,
                                    &NoObserver,
                                )
                                .await;
                            if let Ok(mut waiting) = queue.waiting.lock() {
                                waiting.push_back((id, name));
                                if !crashed && at >= crash_at {
                                    // The crash: the queue dies with the
                                    // process (the write the flusher has
                                    // sent already still lands).
                                    lost_writes = waiting.len() as u64;
                                    waiting.clear();
                                }
                            }
                            let _ = wake.send(());
                        }
                    }
                }
                writes.0.push(micros(started.elapsed()));
                crashed |= at >= crash_at;
            }
        }
        most_unsaved = most_unsaved.max(queue.unsaved());
    }

    if let Some(flusher) = flusher {
        // Nothing is lost: the run ends when the queue has drained.
        drop(wake);
        match tokio::time::timeout(DRAIN, flusher).await {
            Ok(_) => {}
            Err(_) => {
                return Err(OpError::Internal(format!(
                    "the write-behind queue did not drain in {DRAIN:?}"
                )))
            }
        }
        if let Some(error) = queue.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(OpError::Internal(format!("a queued write failed: {error}")));
        }
        database_writes = queue.written.load(Ordering::SeqCst);
    }
    Ok(PatternRow {
        pattern,
        reads: reads.0.len() as u64,
        writes: writes.0.len() as u64,
        read_avg_us: reads.average(),
        read_p99_us: reads.p99(),
        write_avg_us: writes.average(),
        write_p99_us: writes.p99(),
        database_reads: loads.load(Ordering::SeqCst),
        database_writes,
        stale_reads,
        database_behind,
        most_unsaved,
        lost_writes,
    })
}

/// Checks a seed before a comparison runs.
///
/// # Errors
/// [`InputError::BadSetting`] for a seed above 2^53 (JavaScript numbers
/// carry it exactly only up to there).
pub fn check_seed(seed: u64) -> Result<(), InputError> {
    const MAX: u64 = shared::protocol::MAX_SEED;
    if seed > MAX {
        return Err(InputError::BadSetting(format!(
            "seed must be at most {MAX}, not {seed}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_the_seeds() {
        assert_eq!(workload(7), workload(7));
        assert_ne!(workload(7), workload(8));
        let ops = workload(7);
        assert_eq!(ops.len() as u64, OPERATIONS);
        let writes = ops.iter().filter(|o| matches!(o, Op::Write(..))).count() as u64;
        assert!(
            (5..=40).contains(&writes),
            "about {WRITE_PERCENT} % writes: {writes}"
        );
        assert!(ops.iter().all(|o| match o {
            Op::Read(i) | Op::Write(i, _) => *i < KEYS,
        }));
    }

    #[test]
    fn p99_is_a_rank_not_an_average() {
        let mut times = Times((1..=100).collect());
        assert_eq!(times.p99(), 99);
        assert_eq!(times.average(), 50);
        assert_eq!(Times::default().p99(), 0);
    }
}
