//! The circuit breaker around Redis (tutorial sections 4.5 and 6.3).
//!
//! A Redis that is down costs every read a failed connection attempt; a
//! Redis that hangs costs every read the full command timeout. Falling back
//! to the database keeps the answers right, but each one still pays that
//! price first. The breaker remembers: after enough outages in a row it
//! *opens*, and for a while commands are not even sent: the read goes
//! straight to its fallback. Then one command is let through as a probe
//! (*half-open*): if Redis answers, the breaker *closes* and traffic
//! resumes; if not, it opens again.
//!
//! ```text
//!            N failures in a row              open_for has passed
//!  Closed ───────────────────────► Open ─────────────────────────► HalfOpen
//!    ▲                              ▲                                 │
//!    │                              └──────── the probe failed ───────┤
//!    └──────────────────────────────────────── the probe answered ────┘
//! ```
//!
//! Only outages count ([`crate::RedisError::is_outage`]): an error reply
//! from a healthy Redis (`OOM` over its memory limit) is not a reason to
//! stop talking to it. The state lives in the cache handle, so every call
//! that uses the breaker shares it; one atomic load is all a closed breaker
//! costs a command.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the breaker opens, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Outages in a row that open it.
    pub failures: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    /// Five outages in a row open it for two seconds.
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            open_for: Duration::from_secs(2),
        }
    }
}

/// Where the breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Commands are sent; outages are counted.
    Closed,
    /// Commands are not sent.
    Open,
    /// One probe is out; other commands are not sent until it answers.
    HalfOpen,
}

impl BreakerState {
    /// Its name in logs and on the page (`closed`, `open`, `half-open`).
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What the breaker says about one command.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Send it, as usual.
    Send,
    /// Send it as the probe: its outcome decides the breaker's state.
    Probe(Probe),
    /// Do not send it.
    Refuse,
}

/// The breaker's shared state: lock-free, so a closed breaker costs the
/// hit path one load.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: AtomicU8,
    /// Outages in a row while closed.
    failures: AtomicU32,
    /// While open: until when, in ms since `epoch`.
    open_until_ms: AtomicU64,
    /// How many times it opened, for whoever watches.
    opened: AtomicU64,
    epoch: Instant,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Breaker {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The state now. An open breaker whose time is up reads as half-open:
    /// the next command will be its probe.
    pub(crate) fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN if self.now_ms() < self.open_until_ms.load(Ordering::Acquire) => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// How many times it has opened.
    pub(crate) fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Whether a command may be sent now.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Send,
            // Time is up: the first command to get here becomes the probe;
            // the others keep away until it answers.
            OPEN if self.now_ms() >= self.open_until_ms.load(Ordering::Acquire)
                && self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                Admission::Probe(Probe {
                    breaker: self.clone(),
                    settled: false,
                })
            }
            _ => Admission::Refuse,
        }
    }

    /// A command sent while closed answered: the count of outages in a
    /// row starts again. (Only a probe closes an open breaker.)
    pub(crate) fn answered(&self) {
        // A write only when there is something to forget: the hit path
        // stays a load.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A command sent while closed met an outage. Returns `true` if this
    /// one opened the breaker.
    pub(crate) fn failed(&self, policy: &BreakerPolicy) -> bool {
        let in_a_row = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        in_a_row >= policy.failures.max(1)
            && self
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && {
                self.open_for(policy.open_for);
                true
            }
    }

    fn open_for(&self, open_for: Duration) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX));
        self.open_until_ms.store(until, Ordering::Release);
        self.failures.store(0, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.state.store(OPEN, Ordering::Release);
    }

    /// Closes the breaker (a probe answered).
    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.state.store(CLOSED, Ordering::Release);
    }
}

/// The one command let through a half-open breaker. Settle it with its
/// outcome; dropped unsettled (its call was cancelled), it hands the probe
/// to the next command.
#[derive(Debug)]
pub(crate) struct Probe {
    breaker: Arc<Breaker>,
    settled: bool,
}

impl Probe {
    /// Redis answered: close the breaker.
    pub(crate) fn answered(mut self) {
        self.settled = true;
        self.breaker.close();
    }

    /// Redis failed again: open it for another `open_for`.
    pub(crate) fn failed(mut self, policy: &BreakerPolicy) {
        self.settled = true;
        self.breaker.open_for(policy.open_for);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.settled {
            // Open, with its time already up: the next command probes.
            self.breaker.open_until_ms.store(0, Ordering::Release);
            self.breaker.state.store(OPEN, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(open_for_ms: u64) -> BreakerPolicy {
        BreakerPolicy {
            failures: 3,
            open_for: Duration::from_millis(open_for_ms),
        }
    }

    #[test]
    fn it_opens_after_the_set_number_of_outages_in_a_row() {
        let breaker = Arc::new(Breaker::default());
        let policy = policy(60_000);
        assert!(!breaker.failed(&policy));
        assert!(!breaker.failed(&policy));
        // An answer in between starts the count again.
        breaker.answered();
        assert!(!breaker.failed(&policy));
        assert!(!breaker.failed(&policy));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.failed(&policy), "the third in a row opens it");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(matches!(breaker.admit(), Admission::Refuse));
        assert_eq!(breaker.times_opened(), 1);
    }

    #[test]
    fn one_probe_at_a_time_and_its_outcome_decides() {
        let breaker = Arc::new(Breaker::default());
        let policy = policy(0);
        for _ in 0..3 {
            breaker.failed(&policy);
        }
        // open_for 0: time is up at once; one probe, the rest refused.
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let Admission::Probe(probe) = breaker.admit() else {
            panic!("the first command probes")
        };
        assert!(matches!(breaker.admit(), Admission::Refuse));
        probe.failed(&policy);
        assert_eq!(breaker.times_opened(), 2, "a failed probe opens it again");
        let Admission::Probe(probe) = breaker.admit() else {
            panic!("probes again")
        };
        probe.answered();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(matches!(breaker.admit(), Admission::Send));
    }

    #[test]
    fn a_probe_dropped_unsettled_lets_the_next_command_probe() {
        let breaker = Arc::new(Breaker::default());
        let policy = policy(0);
        for _ in 0..3 {
            breaker.failed(&policy);
        }
        let Admission::Probe(probe) = breaker.admit() else {
            panic!("probes")
        };
        drop(probe);
        assert!(matches!(breaker.admit(), Admission::Probe(_)));
    }
}
