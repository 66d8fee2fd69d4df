//! The load generator (tutorial section 3, steps 4 and 5; section 6.2): a
//! steady rate of operations against one sandbox, over keys drawn from a
//! seeded Zipf distribution, for a while. Each operation is an ordinary
//! read or write of the playground, so the sandbox's counters, summaries
//! and traces show it like any other traffic: the hit ratio climbs as the
//! hot keys get cached, database queries fall.
//!
//! One load per sandbox at a time; starting another replaces it. Bounded:
//! at most [`LoadSpec::PER_SECOND`] operations a second for at most
//! [`LoadSpec::SECONDS`], and at most [`IN_FLIGHT`] at once (a saturated
//! database slows the load down instead of piling up tasks).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_aside::random::SplitMix64;
use shared::{LoadSpec, LoadState, Origin, SandboxId, ServerMessage, WriteChange};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::OpError;
use crate::playground::Playground;
use crate::recorder::unix_millis;
use crate::sandbox::Sandbox;

/// The most operations of one load in flight at once.
pub const IN_FLIGHT: usize = 256;
/// How often the load sends out how far it got.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The operations of a load, in order: which id, and whether it is a
/// write. A function of the spec alone, so a seed replays exactly.
pub struct KeySequence {
    cdf: Vec<f64>,
    random: SplitMix64,
    write_percent: u64,
}

impl KeySequence {
    pub fn new(spec: &LoadSpec) -> KeySequence {
        KeySequence {
            cdf: spec.cdf(),
            random: SplitMix64::new(spec.seed),
            write_percent: spec.write_percent,
        }
    }
}

impl Iterator for KeySequence {
    /// (id, is a write)
    type Item = (u64, bool);

    fn next(&mut self) -> Option<(u64, bool)> {
        let id = LoadSpec::key_at(&self.cdf, self.random.next_unit());
        let write = self.random.next_unit() * 100.0 < self.write_percent as f64;
        Some((id, write))
    }
}

/// A sandbox's running load.
pub struct RunningLoad {
    state: Arc<Mutex<LoadState>>,
    task: JoinHandle<()>,
}

impl RunningLoad {
    pub fn state(&self) -> LoadState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for RunningLoad {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `spec` in `sandbox`, replacing a load already running there.
///
/// # Errors
/// [`OpError::Input`] when the spec is out of range; [`OpError::Sandbox`]
/// when there is no such sandbox.
pub fn start(
    playground: &Arc<Playground>,
    sandbox: &SandboxId,
    spec: LoadSpec,
) -> Result<LoadState, OpError> {
    spec.validate()?;
    let running = playground.for_operation(sandbox)?;
    let sandbox: Arc<Sandbox> = Arc::clone(&running);
    let state = Arc::new(Mutex::new(LoadState {
        spec: spec.clone(),
        started_at_ms: unix_millis(),
        sent: 0,
        running: true,
    }));
    let task = tokio::spawn(run(playground.clone(), sandbox.clone(), spec, state.clone()));
    let load = RunningLoad { state, task };
    let first = load.state();
    sandbox.set_load(Some(load));
    announce(&sandbox, &first);
    Ok(first)
}

/// Stops the load of `sandbox`, if one runs; every watcher is told.
///
/// # Errors
/// [`OpError::Sandbox`] when there is no such sandbox.
pub fn stop(playground: &Playground, sandbox: &SandboxId) -> Result<Option<LoadState>, OpError> {
    Ok(playground.sandbox(sandbox)?.stop_load())
}

fn announce(sandbox: &Sandbox, state: &LoadState) {
    let message = ServerMessage::Load { state: state.clone() };
    sandbox.feed.publish(message);
}

/// Sends the load's operations on schedule, every 10 ms what is due.
async fn run(
    playground: Arc<Playground>,
    sandbox: Arc<Sandbox>,
    spec: LoadSpec,
    state: Arc<Mutex<LoadState>>,
) {
    let total = spec.per_second * spec.seconds;
    let mut sequence = KeySequence::new(&spec);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut reported = Instant::now();
    let mut sent = 0u64;
    // A load that fell behind (a saturated database holds its operations)
    // stops a second after its time rather than catching up.
    let deadline = Duration::from_secs(spec.seconds) + Duration::from_secs(1);
    while sent < total && started.elapsed() < deadline {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * spec.per_second as f64) as u64).min(total);
        while sent < due {
            // Behind: the rest waits for the next tick.
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                break;
            };
            let (id, write) = sequence.next().expect("endless");
            let (playground, sandbox_id, kind) = (playground.clone(), sandbox.id.clone(), spec.kind);
            tokio::spawn(async move {
                // Errors (a saturated database, a sandbox reset meanwhile)
                // are counted by the sandbox like any operation's.
                let _ = if write {
                    let change = WriteChange::Update {
                        name: format!("Load {id}"),
                    };
                    playground
                        .write(&sandbox_id, kind, id, change, Origin::Load)
                        .await
                        .map(drop)
                } else {
                    playground
                        .read(&sandbox_id, kind, id, Origin::Load)
                        .await
                        .map(drop)
                };
                drop(permit);
            });
            sent += 1;
        }
        if reported.elapsed() >= REPORT_EVERY {
            reported = Instant::now();
            let now = {
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.sent = sent;
                state.clone()
            };
            announce(&sandbox, &now);
        }
    }
    // Ended means every operation it sent has finished: the counters
    // then hold all of them.
    let _all_done = in_flight.acquire_many(IN_FLIGHT as u32).await;
    // And the page hears them before it hears the end.
    sandbox.flush_summary(true);
    let last = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        state.sent = sent;
        state.running = false;
        state.clone()
    };
    announce(&sandbox, &last);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_sequence() {
        let spec = LoadSpec {
            write_percent: 10,
            ..LoadSpec::default()
        };
        let first: Vec<_> = KeySequence::new(&spec).take(1_000).collect();
        let again: Vec<_> = KeySequence::new(&spec).take(1_000).collect();
        assert_eq!(first, again);
        let other: Vec<_> = KeySequence::new(&LoadSpec {
            seed: 2,
            ..spec.clone()
        })
        .take(1_000)
        .collect();
        assert_ne!(first, other);
        assert!(first.iter().all(|(id, _)| (1..=spec.keys).contains(id)));
        let writes = first.iter().filter(|(_, w)| *w).count();
        assert!((60..=140).contains(&writes), "{writes} writes of 1,000 at 10 %");
    }

    #[test]
    fn skewed_sequences_favour_the_hot_keys() {
        let spec = LoadSpec {
            keys: 100,
            skew: 1.2,
            ..LoadSpec::default()
        };
        let hot = KeySequence::new(&spec)
            .take(10_000)
            .filter(|(id, _)| *id <= 20)
            .count();
        let expected = spec.share_of_top(0.2) * 10_000.0;
        assert!(
            (hot as f64 - expected).abs() < 300.0,
            "{hot} of 10,000 on the hottest fifth, expected about {expected:.0}"
        );
    }
}
