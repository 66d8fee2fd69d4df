//! A small random source: SplitMix64, seeded, lock-free.
//!
//! The engine draws random numbers for two things, TTL jitter and XFetch's
//! early-refresh rule. Neither needs cryptographic quality; both are easier
//! to test when a seed makes them repeatable. This is the one random source
//! of the engine, and the playground borrows it too.

use std::sync::atomic::{AtomicU64, Ordering};

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A SplitMix64 sequence that many tasks may draw from at once: each draw
/// advances one atomic counter, so no lock is taken.
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    /// A sequence starting at `seed`: the same seed gives the same draws
    /// (in the order they are drawn).
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64 {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        mix64(self.state.fetch_add(GAMMA, Ordering::Relaxed).wrapping_add(GAMMA))
    }

    /// A number uniform in (0, 1]: never 0, so its logarithm is finite.
    pub fn next_unit(&self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's finalizer: scrambles `x` so that neighbouring inputs give
/// unrelated-looking outputs. Also handy as a stateless hash of an id.
pub const fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_numbers() {
        let draws = |seed| {
            let r = SplitMix64::new(seed);
            (0..1000).map(|_| r.next_unit()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(draws(7).iter().all(|d| *d > 0.0 && *d <= 1.0));
    }

    #[test]
    fn draws_are_spread_over_the_unit_interval() {
        let r = SplitMix64::new(1);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_unit()).sum::<f64>() / n as f64;
        assert!((0.49..0.51).contains(&mean), "{mean}");
    }

    #[test]
    fn matches_the_reference_splitmix64_sequence() {
        // The first outputs of SplitMix64 seeded with 0, as published with
        // the algorithm (Steele, Lea and Flood; Vigna's reference code).
        let r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
