//! Read latency with and without the cache (tutorial section 5.3): every
//! read the page hears of (traced, or folded into a summary) lands in one
//! of two power-of-two histograms, answered by a cache or by the database.
//! Plain Rust, tested natively.

use shared::{Outcome, Trace, Traffic};

/// Buckets: bucket `i` holds reads of at most 2^i µs.
const BUCKETS: usize = 32;

/// The two distributions.
#[derive(Clone, Debug, PartialEq)]
pub struct Latencies {
    cached: [u64; BUCKETS],
    loaded: [u64; BUCKETS],
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            cached: [0; BUCKETS],
            loaded: [0; BUCKETS],
        }
    }
}

/// Where a read was answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    Cache,
    Database,
}

fn bucket(us: u64) -> usize {
    let bits = u64::BITS - us.max(1).saturating_sub(1).leading_zeros();
    (bits as usize).min(BUCKETS - 1)
}

impl Latencies {
    /// One traced read (writes are not reads).
    pub fn add_trace(&mut self, trace: &Trace) {
        if !matches!(trace.operation, shared::Operation::Read { .. }) || trace.outcome == Outcome::Failed {
            return;
        }
        let side = if trace.outcome.from_cache() {
            &mut self.cached
        } else {
            &mut self.loaded
        };
        side[bucket(trace.total_us)] += 1;
    }

    /// A summary's reads: its cached histogram, and the rest of its
    /// histogram as the database's.
    pub fn add_traffic(&mut self, traffic: &Traffic) {
        for &(bound, n) in &traffic.histogram {
            let cached = traffic
                .cached_histogram
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c)
                .min(n);
            self.cached[bucket(bound)] += cached;
            self.loaded[bucket(bound)] += n - cached;
        }
    }

    fn side(&self, from: From) -> &[u64; BUCKETS] {
        match from {
            From::Cache => &self.cached,
            From::Database => &self.loaded,
        }
    }

    /// Reads counted on one side.
    pub fn count(&self, from: From) -> u64 {
        self.side(from).iter().sum()
    }

    /// The latency under which `share` of one side's reads finished, to
    /// the histogram's precision (`None` without reads).
    pub fn quantile_us(&self, from: From, share: f64) -> Option<u64> {
        let side = self.side(from);
        let total: u64 = side.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64 * share).ceil() as u64).max(1);
        let mut seen = 0;
        side.iter().enumerate().find_map(|(i, &n)| {
            seen += n;
            (seen >= wanted).then_some(1u64 << i)
        })
    }

    /// Each side's share of its reads per bucket, from the fastest bucket
    /// either side has to the slowest: (upper bound µs, cache, database).
    pub fn bars(&self) -> Vec<(u64, f64, f64)> {
        let used = |i: usize| self.cached[i] + self.loaded[i] > 0;
        let (Some(first), Some(last)) = (
            (0..BUCKETS).find(|&i| used(i)),
            (0..BUCKETS).rev().find(|&i| used(i)),
        ) else {
            return Vec::new();
        };
        let share = |side: &[u64; BUCKETS], i: usize| {
            let total: u64 = side.iter().sum();
            if total == 0 {
                0.0
            } else {
                side[i] as f64 / total as f64
            }
        };
        (first..=last)
            .map(|i| (1u64 << i, share(&self.cached, i), share(&self.loaded, i)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(outcome: Outcome, total_us: u64) -> Trace {
        let mut trace = crate::timeline::tests::trace(1, &["request"]);
        trace.outcome = outcome;
        trace.total_us = total_us;
        trace
    }

    #[test]
    fn hits_and_database_reads_are_kept_apart() {
        let mut l = Latencies::default();
        for _ in 0..9 {
            l.add_trace(&read(Outcome::Hit, 300));
        }
        l.add_trace(&read(Outcome::Miss, 101_000));
        l.add_traffic(&Traffic {
            histogram: vec![(512, 10), (131_072, 2)],
            cached_histogram: vec![(512, 10)],
            ..Traffic::default()
        });
        assert_eq!((l.count(From::Cache), l.count(From::Database)), (19, 3));
        assert_eq!(l.quantile_us(From::Cache, 0.5), Some(512));
        assert_eq!(l.quantile_us(From::Database, 0.99), Some(131_072));
        let bars = l.bars();
        assert_eq!(bars.first().map(|b| b.0), Some(512));
        assert_eq!(bars.last().map(|b| b.0), Some(131_072));
        assert!((bars[0].1 - 1.0).abs() < 1e-9, "every hit in the first bucket");
        assert!((bars.last().unwrap().2 - 1.0).abs() < 1e-9);
        assert_eq!(Latencies::default().quantile_us(From::Cache, 0.5), None);
        assert!(Latencies::default().bars().is_empty());
    }
}
