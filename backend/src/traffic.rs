//! Reads beyond what a page can draw, folded into counts.
//!
//! A sandbox traces a few dozen reads a second (a page animates a handful);
//! a flood of reads beyond that is counted here instead: per outcome, per
//! diagram edge and in a latency histogram. Every interval the counts go
//! out as one [`Traffic`] message, serialized once for all of the
//! sandbox's watchers, however many reads and watchers there are.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use shared::{EdgeCount, NodeId, Outcome, Traffic};

use crate::recorder::unix_millis;

/// Latency buckets: bucket `i` holds reads that took at most 2^i µs, the
/// last one everything slower (2^31 µs is over half an hour).
const BUCKETS: usize = 32;

/// One interval's counts. Counting takes one short lock: the reads beyond
/// the trace budget are the fast ones, and a lock-free design would cost
/// more code than it saves here.
#[derive(Default)]
pub struct TrafficMeter {
    interval: Mutex<Interval>,
}

#[derive(Default)]
struct Interval {
    /// When the interval's first read was counted.
    since: Option<Instant>,
    outcomes: Vec<(Outcome, u64)>,
    edges: HashMap<(NodeId, NodeId), u64>,
    buckets: [u64; BUCKETS],
    /// The same, for the reads a cache answered.
    cached: [u64; BUCKETS],
}

impl TrafficMeter {
    /// Counts one read: its outcome, how long it took, and the diagram
    /// nodes it went through, in order.
    pub fn count(&self, outcome: Outcome, latency_us: u64, path: &[NodeId]) {
        let mut interval = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        interval.since.get_or_insert_with(Instant::now);
        match interval.outcomes.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, n)) => *n += 1,
            None => interval.outcomes.push((outcome, 1)),
        }
        for pair in path.windows(2).filter(|p| p[0] != p[1]) {
            *interval
                .edges
                .entry((pair[0].clone(), pair[1].clone()))
                .or_default() += 1;
        }
        interval.buckets[bucket(latency_us)] += 1;
        if outcome.from_cache() {
            interval.cached[bucket(latency_us)] += 1;
        }
    }

    /// The counts since the last call, which start again from zero; the
    /// interval runs from the first read counted to now.
    pub fn take(&self) -> Traffic {
        let interval = std::mem::take(&mut *self.interval.lock().unwrap_or_else(|p| p.into_inner()));
        let interval_ms = interval
            .since
            .map_or(0, |since| since.elapsed().as_millis() as u64);
        let mut edges: Vec<EdgeCount> = interval
            .edges
            .into_iter()
            .map(|((from, to), count)| EdgeCount { from, to, count })
            .collect();
        edges.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (a.from.as_str(), a.to.as_str()).cmp(&(b.from.as_str(), b.to.as_str())))
        });
        Traffic {
            interval_ms,
            at_ms: unix_millis(),
            outcomes: interval.outcomes,
            edges,
            histogram: sparse(&interval.buckets),
            cached_histogram: sparse(&interval.cached),
        }
    }
}

/// The buckets that hold reads, as (upper bound in µs, reads).
fn sparse(buckets: &[u64; BUCKETS]) -> Vec<(u64, u64)> {
    buckets
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| (1u64 << i, *n))
        .collect()
}

/// The bucket of a latency: the smallest power of two at or above it.
fn bucket(latency_us: u64) -> usize {
    let bits = u64::BITS - latency_us.max(1).saturating_sub(1).leading_zeros();
    (bits as usize).min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::diagram::nodes::{
        CHECK_CACHE, QUERY_DATABASE, REQUEST, RETURN_CACHED, RETURN_LOADED, STORE_IN_CACHE,
    };

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(64), 6);
        assert_eq!(bucket(65), 7);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn an_interval_folds_reads_into_counts_and_starts_again() {
        let meter = TrafficMeter::default();
        let hit = [REQUEST, CHECK_CACHE, RETURN_CACHED];
        let miss = [
            REQUEST,
            CHECK_CACHE,
            QUERY_DATABASE,
            STORE_IN_CACHE,
            RETURN_LOADED,
        ];
        for _ in 0..3 {
            meter.count(Outcome::Hit, 40, &hit);
        }
        meter.count(Outcome::Miss, 100_000, &miss);
        let traffic = meter.take();
        assert_eq!(traffic.outcomes, vec![(Outcome::Hit, 3), (Outcome::Miss, 1)]);
        assert_eq!(traffic.cached_histogram, vec![(64, 3)], "the hits alone");
        assert_eq!(traffic.histogram, vec![(64, 3), (131_072, 1)]);
        assert_eq!(traffic.reads(), 4);
        let count = |from: &NodeId, to: &NodeId| {
            traffic
                .edges
                .iter()
                .find(|e| &e.from == from && &e.to == to)
                .map(|e| e.count)
        };
        assert_eq!(count(&REQUEST, &CHECK_CACHE), Some(4));
        assert_eq!(count(&CHECK_CACHE, &RETURN_CACHED), Some(3));
        assert_eq!(count(&STORE_IN_CACHE, &RETURN_LOADED), Some(1));
        assert_eq!(traffic.edges[0].count, 4, "busiest edge first");
        assert_eq!(traffic.histogram, vec![(64, 3), (131_072, 1)]);
        assert_eq!(meter.take().reads(), 0);
    }
}
