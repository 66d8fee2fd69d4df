//! The options of a cache and of each call: how long entries live, and
//! which policies protect the database and the data.
//!
//! A cache has default [`Options`]; any call may pass others (clone the
//! defaults and change what differs, as FusionCache's per-call entry
//! options do). Every policy has an off switch, so the problem each one
//! solves can be seen before the fix.

use std::time::Duration;

/// The longest TTL the engine sets (a year): longer ones are cut to it, so
/// no arithmetic on a TTL can overflow.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// `d` within 1 ms and [`MAX_TTL`]: how the engine uses every duration of
/// the options, whatever a call passes.
pub(crate) fn bounded(d: Duration) -> Duration {
    d.clamp(Duration::from_millis(1), MAX_TTL)
}

/// How long entries live and which policies apply. Durations out of range
/// (below 1 ms, above [`MAX_TTL`]) are brought into range when used;
/// [`Options::validate`] says which are.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// How long a value stays in Redis (`SET ... EX`). Every entry has a
    /// TTL: it bounds how long a stale copy can live and keeps the cache
    /// from growing forever (tutorial section 4.3).
    pub ttl: Duration,
    /// How long "does not exist" stays cached, usually shorter than `ttl`
    /// so a record created later shows up soon (section 4.7). `None` turns
    /// negative caching off: every lookup of a missing id reaches the
    /// database.
    pub negative_ttl: Option<Duration>,
    /// Randomize every TTL by up to this share either way, from 0.0 (off)
    /// to 0.9, so keys cached together do not expire together
    /// (section 4.1, "staggered TTL").
    pub jitter: f64,
    /// What keeps a crowd of concurrent misses off the database.
    pub stampede: Stampede,
    /// What keeps a slow reader from storing a value a writer has just
    /// replaced (the stale-set race).
    pub race_guard: RaceGuard,
    /// Use the near cache (this process's memory, in front of Redis), with
    /// entries that live this long. `None` skips it. A near copy may be
    /// stale until an invalidation reaches it; this TTL bounds how long.
    ///
    /// A write publishes its invalidation only when its own options set
    /// this, or its handle was built with
    /// [`crate::Builder::publish_invalidations`]: if any process keeps near
    /// copies, every process that writes must do one or the other (a writer
    /// that does neither leaves the others' near copies until this TTL).
    pub near_ttl: Option<Duration>,
    /// Store entries with no Redis TTL at all: the mistake the tutorial
    /// warns about (section 4.6), here so it can be shown. Entries then
    /// stay until deleted or evicted, and the cache only grows; the
    /// envelope still says when a value stops being fresh. Never in
    /// production.
    pub forget_ttl: bool,
    /// How values are written into Redis (section 4.4). Readers decode any
    /// encoding, so it can change while entries of another remain.
    pub encoding: crate::Encoding,
    /// A circuit breaker around Redis (sections 4.5, 6.3): after enough
    /// outages in a row, stop sending commands for a while, so a dead or
    /// hung Redis costs reads no waiting. `None`: every command is sent,
    /// and each one waits out the failure.
    pub breaker: Option<crate::BreakerPolicy>,
    /// Fail-safe (FusionCache's name): keep entries this long past their
    /// fresh time, and when the loader fails, answer with the expired value
    /// (marked [`crate::Source::FailSafe`]) rather than the error. `None`:
    /// a failing database fails the read once the entry has expired.
    pub fail_safe: Option<Duration>,
    /// When a write's invalidation cannot reach Redis (or Redis refuses
    /// it, as over `maxmemory`), keep it and send it again until Redis
    /// takes it (see [`crate::retry`]). Off, the old copy may outlive the
    /// outage until its TTL (unless an earlier write of the key, with it
    /// on, still owes: then this write owes in its place).
    pub retry_invalidations: bool,
    /// When a command finds its connection dead (one made while Redis was
    /// away, or cut since), send it once more on the new connection the
    /// client is already making, within the same timeout; only a command
    /// that does no harm sent twice (reads, `DEL`, a plain `SET`), never a
    /// `SET NX` or a script. Off, the first command after an outage or a
    /// cut fails, and its read falls back (tutorial section 4.5's "retry
    /// logic").
    pub resend_dropped: bool,
}

impl Default for Options {
    /// The tutorial's starting point: a 60 s TTL, missing records cached for
    /// 30 s, no jitter, no stampede defence, no race guard, no near cache.
    fn default() -> Self {
        Options {
            ttl: Duration::from_secs(60),
            negative_ttl: Some(Duration::from_secs(30)),
            jitter: 0.0,
            stampede: Stampede::None,
            race_guard: RaceGuard::None,
            near_ttl: None,
            forget_ttl: false,
            encoding: crate::Encoding::Json,
            breaker: None,
            fail_safe: None,
            retry_invalidations: false,
            resend_dropped: false,
        }
    }
}

/// Defences against a cache stampede (tutorial section 4.1): many requests
/// missing the same key at once, each reloading it.
#[derive(Clone, Debug, PartialEq)]
pub enum Stampede {
    /// Every miss loads.
    None,
    /// In this process, the first miss of a key loads; concurrent misses of
    /// the same key wait for that load. Other processes still load once
    /// each.
    SingleFlight,
    /// One load across every process: the first miss takes a Redis lock
    /// (`SET lock token NX PX ttl`), loads, stores, hands the value to the
    /// waiters over Pub/Sub and releases the lock (only if it is still its
    /// own). Waiters are told, they do not poll; each waits at most the
    /// lock's TTL, then looks again and may take a lock its holder left to
    /// expire; after `attempts` rounds it loads without caching.
    Lock { ttl: Duration, attempts: u32 },
    /// Probabilistic early expiration (XFetch, Vattani et al.): a hit may
    /// reload before the entry expires, the likelier the closer the expiry
    /// and the slower the load. `beta` above 1 reloads earlier.
    EarlyRefresh { beta: f64 },
    /// Past its fresh time an entry is still served, for up to `stale_for`
    /// more, while exactly one request reloads it in the background: nobody
    /// waits for the database.
    StaleWhileRevalidate { stale_for: Duration },
}

impl Stampede {
    /// The lock policy with its usual settings: locks live 2 s, three
    /// rounds of waiting.
    pub const fn lock() -> Stampede {
        Stampede::Lock {
            ttl: Duration::from_secs(2),
            attempts: 3,
        }
    }
}

/// Guards against the stale-set race (tutorial section 4.2): a reader loads
/// version 1, a writer stores version 2 in the database and invalidates the
/// key, then the reader stores version 1. Both guards are Lua scripts, so
/// each check-and-store is atomic inside Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaceGuard {
    /// No guard: the race can leave a stale value until its TTL.
    None,
    /// Leases, as in Facebook's memcache: a reader takes a lease token
    /// before it loads; a write revokes it; a store whose lease is gone is
    /// refused. A lease lasts `ttl`: a reader slower than that simply does
    /// not cache.
    Lease { ttl: Duration },
    /// Version checks: entries carry their row version (see
    /// [`crate::Builder::versioned`]); a write leaves a marker with the new
    /// version instead of deleting; an older version never replaces a newer
    /// one.
    Version,
}

impl RaceGuard {
    /// Leases that last 10 s.
    pub const fn lease() -> RaceGuard {
        RaceGuard::Lease {
            ttl: Duration::from_secs(10),
        }
    }
}

/// Why options cannot be used. Each variant says when it occurs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// Occurs when a TTL is zero or shorter than a millisecond.
    #[error("{0} must be at least 1 ms")]
    TooShort(&'static str),
    /// Occurs when a TTL is longer than [`MAX_TTL`].
    #[error("{0} must be at most a year")]
    TooLong(&'static str),
    /// Occurs when the version guard is chosen for a cache that cannot read
    /// versions (see [`crate::Builder::versioned`]).
    #[error("the version guard needs versions: call Builder::versioned")]
    Unversioned,
    /// Occurs when the options use a near cache the cache does not have
    /// (see [`crate::Builder::near_cache`]).
    #[error("near_ttl is set but the cache has no near cache: call Builder::near_cache")]
    NoNearCache,
    /// Occurs when the jitter is not a number from 0 to 0.9.
    #[error("jitter must be from 0 to 0.9, not {0}")]
    Jitter(f64),
    /// Occurs when XFetch's beta is not a positive number.
    #[error("beta must be a positive number, not {0}")]
    Beta(f64),
    /// Occurs when the lock policy allows no attempt at all.
    #[error("the lock needs at least one attempt")]
    Attempts,
    /// Occurs when the breaker would open before any failure.
    #[error("the breaker opens after at least one failure")]
    BreakerFailures,
}

impl Options {
    /// Checks that every duration and number is usable.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first problem.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let at_least_a_ms = |d: Duration, name| {
            if d < Duration::from_millis(1) {
                Err(OptionsError::TooShort(name))
            } else if d > MAX_TTL {
                Err(OptionsError::TooLong(name))
            } else {
                Ok(())
            }
        };
        at_least_a_ms(self.ttl, "ttl")?;
        if let Some(d) = self.negative_ttl {
            at_least_a_ms(d, "negative_ttl")?;
        }
        if let Some(d) = self.near_ttl {
            at_least_a_ms(d, "near_ttl")?;
        }
        if !(0.0..=0.9).contains(&self.jitter) {
            return Err(OptionsError::Jitter(self.jitter));
        }
        match &self.stampede {
            Stampede::Lock { ttl, attempts } => {
                at_least_a_ms(*ttl, "the lock's ttl")?;
                if *attempts == 0 {
                    return Err(OptionsError::Attempts);
                }
            }
            Stampede::EarlyRefresh { beta } if !(beta.is_finite() && *beta > 0.0) => {
                return Err(OptionsError::Beta(*beta));
            }
            _ => {}
        }
        if let RaceGuard::Lease { ttl } = &self.race_guard {
            at_least_a_ms(*ttl, "the lease's ttl")?;
        }
        if let Some(d) = self.fail_safe {
            at_least_a_ms(d, "fail_safe")?;
        }
        if let Some(breaker) = &self.breaker {
            at_least_a_ms(breaker.open_for, "the breaker's open_for")?;
            if breaker.failures == 0 {
                return Err(OptionsError::BreakerFailures);
            }
        }
        Ok(())
    }

    /// How long Redis keeps an entry: its TTL, plus the stale window under
    /// stale-while-revalidate or fail-safe, whichever is longer (the entry
    /// must outlive its fresh time to be served stale).
    pub fn redis_ttl(&self, fresh_for: Duration) -> Duration {
        let swr = match &self.stampede {
            Stampede::StaleWhileRevalidate { stale_for } => bounded(*stale_for),
            _ => Duration::ZERO,
        };
        let fail_safe = self.fail_safe.map_or(Duration::ZERO, bounded);
        bounded(fresh_for) + swr.max(fail_safe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_tutorials_and_valid() {
        let options = Options::default();
        assert_eq!(options.ttl, Duration::from_secs(60));
        assert_eq!(options.negative_ttl, Some(Duration::from_secs(30)));
        assert_eq!(options.validate(), Ok(()));
    }

    #[test]
    fn unusable_options_are_named() {
        let bad = |options: Options| options.validate().unwrap_err().to_string();
        let base = Options::default;
        assert!(bad(Options {
            ttl: Duration::ZERO,
            ..base()
        })
        .contains("ttl"));
        assert!(bad(Options {
            ttl: Duration::MAX,
            ..base()
        })
        .contains("at most a year"));
        assert!(bad(Options {
            jitter: 0.95,
            ..base()
        })
        .contains("jitter"));
        assert!(bad(Options {
            stampede: Stampede::EarlyRefresh { beta: f64::NAN },
            ..base()
        })
        .contains("beta"));
        assert!(bad(Options {
            stampede: Stampede::Lock {
                ttl: Duration::from_secs(1),
                attempts: 0
            },
            ..base()
        })
        .contains("attempt"));
    }

    #[test]
    fn stale_while_revalidate_keeps_entries_past_their_fresh_time() {
        let swr = Options {
            stampede: Stampede::StaleWhileRevalidate {
                stale_for: Duration::from_secs(30),
            },
            ..Options::default()
        };
        assert_eq!(swr.redis_ttl(Duration::from_secs(60)), Duration::from_secs(90));
        assert_eq!(
            Options::default().redis_ttl(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
