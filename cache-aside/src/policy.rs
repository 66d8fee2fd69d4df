//! The decisions of the read path, as pure functions: no Redis, no clock
//! of their own, no randomness of their own. So each rule can be tested
//! exactly, and the read path only carries them out.

use std::time::Duration;

use crate::envelope::{Content, Envelope};
use crate::options::{Options, Stampede};

/// What to do with an entry found in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with it.
    Fresh,
    /// Answer with it although it is past its fresh time, and have one
    /// request refresh it (stale-while-revalidate).
    Stale,
    /// Reload it now, before it expires (XFetch).
    RefreshEarly,
    /// It is no answer (an invalidation marker): treat the lookup as a miss.
    Miss,
    /// Past its fresh time, kept only for fail-safe: load as on a miss,
    /// and answer with it if the loader fails.
    Expired,
}

impl Verdict {
    /// Whether the entry answers the read (fresh, stale, or fresh and due
    /// for an early reload): the lookup was a hit.
    pub fn answers(self) -> bool {
        matches!(self, Verdict::Fresh | Verdict::Stale | Verdict::RefreshEarly)
    }
}

/// Judges an entry found in Redis at `now_ms`, under `options`. `draw` is
/// a random number in (0, 1], used only by XFetch.
pub fn judge<V>(entry: &Envelope<V>, now_ms: u64, options: &Options, draw: f64) -> Verdict {
    if matches!(entry.content, Content::Invalidated) {
        return Verdict::Miss;
    }
    // Only stale-while-revalidate and fail-safe keep entries past their
    // fresh time; under other policies Redis's TTL alone decides.
    let keeps_past_fresh =
        matches!(options.stampede, Stampede::StaleWhileRevalidate { .. }) || options.fail_safe.is_some();
    if keeps_past_fresh && !entry.is_fresh(now_ms) {
        let past_fresh = |window: Duration| {
            entry
                .fresh_until_ms
                .saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
        };
        // Stale-while-revalidate: within its window, answer with it while
        // one request refreshes it.
        if let Stampede::StaleWhileRevalidate { stale_for } = options.stampede {
            if now_ms < past_fresh(stale_for) {
                return Verdict::Stale;
            }
        }
        // Past that, kept for the loader's bad days only (fail-safe), and
        // never longer than the fail-safe window. (Redis keeps the entry
        // for the longer of the two windows.)
        return match options.fail_safe {
            Some(fail_safe) if now_ms < past_fresh(fail_safe) => Verdict::Expired,
            _ => Verdict::Miss,
        };
    }
    match &options.stampede {
        Stampede::EarlyRefresh { beta }
            if xfetch_should_refresh(
                now_ms as f64,
                entry.load_ms as f64,
                *beta,
                entry.fresh_until_ms as f64,
                draw,
            ) =>
        {
            Verdict::RefreshEarly
        }
        _ => Verdict::Fresh,
    }
}

/// XFetch's rule (Vattani, Chierichetti and Lowenstein, "Optimal
/// Probabilistic Cache Stampede Prevention", 2015): reload now if
/// `now - delta * beta * ln(draw) >= expiry`, where `delta` is how long a
/// reload takes and `draw` is uniform in (0, 1].
///
/// `ln(draw)` is negative, so the left side runs ahead of the clock by a
/// random amount that grows with `delta` and `beta`: far from expiry an
/// early reload is rare, close to it likely, and usually one request
/// reloads before anyone misses.
pub fn xfetch_should_refresh(now_ms: f64, delta_ms: f64, beta: f64, expiry_ms: f64, draw: f64) -> bool {
    let draw = draw.clamp(f64::MIN_POSITIVE, 1.0);
    now_ms - delta_ms * beta * draw.ln() >= expiry_ms
}

/// A TTL randomized by up to `jitter` (a share, 0 to 0.9) either way, using
/// `draw` in (0, 1]; never below a millisecond.
pub fn jittered(ttl: Duration, jitter: f64, draw: f64) -> Duration {
    let ttl = crate::options::bounded(ttl);
    // (NaN is no jitter either.)
    if jitter.is_nan() || jitter <= 0.0 {
        return ttl;
    }
    let factor = 1.0 + jitter.min(0.9) * (2.0 * draw.clamp(0.0, 1.0) - 1.0);
    ttl.mul_f64(factor).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::RaceGuard;
    use crate::random::SplitMix64;

    fn entry(fresh_until_ms: u64, load_ms: u64) -> Envelope<u8> {
        Envelope {
            content: Content::Value(1),
            version: 1,
            fresh_until_ms,
            load_ms,
        }
    }

    fn with(stampede: Stampede) -> Options {
        Options {
            stampede,
            ..Options::default()
        }
    }

    #[test]
    fn xfetch_never_refreshes_early_with_a_draw_of_one() {
        // ln(1) = 0: only the expiry itself triggers a reload.
        assert!(!xfetch_should_refresh(999.0, 100.0, 1.0, 1_000.0, 1.0));
        assert!(xfetch_should_refresh(1_000.0, 100.0, 1.0, 1_000.0, 1.0));
    }

    #[test]
    fn xfetch_refreshes_more_often_closer_to_expiry() {
        // With beta 1, a request one delta before expiry reloads when
        // -ln(r) >= 1, that is with probability e^-1 (about 0.368); ten
        // deltas before, with e^-10 (about 0.00005).
        let share = |before_ms: f64, beta: f64| {
            let random = SplitMix64::new(42);
            let n = 100_000;
            let hits = (0..n)
                .filter(|_| {
                    xfetch_should_refresh(1_000.0 - before_ms, 100.0, beta, 1_000.0, random.next_unit())
                })
                .count();
            hits as f64 / n as f64
        };
        let one_delta = share(100.0, 1.0);
        assert!((0.36..0.376).contains(&one_delta), "{one_delta}");
        assert!(share(1_000.0, 1.0) < 0.001);
        // A larger beta reloads earlier: e^-0.5 at one delta with beta 2.
        let eager = share(100.0, 2.0);
        assert!((0.60..0.61).contains(&eager), "{eager}");
    }

    #[test]
    fn plain_policies_answer_with_any_entry_found() {
        for stampede in [Stampede::None, Stampede::SingleFlight, Stampede::lock()] {
            // Even past its fresh time: Redis's TTL decides, not the clock.
            assert_eq!(
                judge(&entry(1_000, 5), 5_000, &with(stampede), 0.5),
                Verdict::Fresh
            );
        }
    }

    #[test]
    fn stale_while_revalidate_serves_stale_only_after_the_fresh_time() {
        let swr = with(Stampede::StaleWhileRevalidate {
            stale_for: Duration::from_secs(30),
        });
        assert_eq!(judge(&entry(1_000, 5), 999, &swr, 0.5), Verdict::Fresh);
        assert_eq!(judge(&entry(1_000, 5), 1_000, &swr, 0.5), Verdict::Stale);
    }

    #[test]
    fn a_stale_entry_is_served_only_within_its_window_then_kept_for_fail_safe() {
        let both = Options {
            fail_safe: Some(Duration::from_secs(600)),
            ..with(Stampede::StaleWhileRevalidate {
                stale_for: Duration::from_secs(30),
            })
        };
        assert_eq!(judge(&entry(1_000, 5), 30_999, &both, 0.5), Verdict::Stale);
        // Redis keeps it for the fail-safe window: past the stale window it
        // answers only if the loader fails.
        assert_eq!(judge(&entry(1_000, 5), 31_000, &both, 0.5), Verdict::Expired);
        assert_eq!(judge(&entry(1_000, 5), 601_000, &both, 0.5), Verdict::Miss);
    }

    #[test]
    fn early_refresh_follows_the_xfetch_rule() {
        let xfetch = with(Stampede::EarlyRefresh { beta: 1.0 });
        // 50 ms before expiry with a 100 ms load: -ln(0.3) * 100 = 120 > 50.
        assert_eq!(
            judge(&entry(1_000, 100), 950, &xfetch, 0.3),
            Verdict::RefreshEarly
        );
        // -ln(0.9) * 100 = 10.5 < 50: keep serving.
        assert_eq!(judge(&entry(1_000, 100), 950, &xfetch, 0.9), Verdict::Fresh);
    }

    #[test]
    fn invalidation_markers_are_misses_under_every_policy() {
        let marker = Envelope::<u8> {
            content: Content::Invalidated,
            version: 7,
            fresh_until_ms: u64::MAX,
            load_ms: 0,
        };
        for stampede in [Stampede::None, Stampede::EarlyRefresh { beta: 1.0 }] {
            let options = Options {
                race_guard: RaceGuard::Version,
                ..with(stampede)
            };
            assert_eq!(judge(&marker, 0, &options, 0.5), Verdict::Miss);
        }
    }

    #[test]
    fn jitter_stays_within_its_share_and_spreads() {
        let ttl = Duration::from_secs(100);
        assert_eq!(jittered(ttl, 0.0, 0.01), ttl);
        assert_eq!(jittered(ttl, 0.5, 0.5), ttl);
        assert_eq!(jittered(ttl, 0.5, 1.0), Duration::from_secs(150));
        let random = SplitMix64::new(3);
        let draws: Vec<Duration> = (0..1_000)
            .map(|_| jittered(ttl, 0.25, random.next_unit()))
            .collect();
        assert!(draws
            .iter()
            .all(|d| *d >= Duration::from_secs(75) && *d <= Duration::from_secs(125)));
        let distinct: std::collections::HashSet<_> = draws.iter().map(|d| d.as_millis()).collect();
        assert!(distinct.len() > 500, "jitter spreads expiries");
        assert_eq!(
            jittered(Duration::from_millis(1), 0.9, 0.0),
            Duration::from_millis(1)
        );
    }
}
