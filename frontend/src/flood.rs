//! A flood of reads, as the page shows it: more reads than it can animate
//! arrive as the server's periodic summaries, and are drawn like a herd
//! (counts on the diagram's arrows) with their rate and latency.
//!
//! Plain Rust, tested natively.

use std::collections::VecDeque;

use shared::{EdgeCount, Traffic};

/// Summaries further apart than this belong to different floods.
pub const GAP_MS: u64 = 1_500;
/// Rate and latency are taken over the summaries of this last stretch.
pub const WINDOW_MS: u64 = 2_000;

/// The latest flood of untraced reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flood {
    /// The summaries of the last [`WINDOW_MS`], oldest first.
    recent: VecDeque<Traffic>,
    /// Reads per diagram edge since the flood began.
    edges: Vec<EdgeCount>,
    /// Reads since the flood began.
    reads: u64,
}

impl Flood {
    /// Adds the server's next summary; one that comes long after the last
    /// starts a new flood.
    pub fn add(&mut self, traffic: Traffic) {
        if !self.active_at(traffic.at_ms) {
            *self = Flood::default();
        }
        self.reads += traffic.reads();
        for edge in &traffic.edges {
            match self
                .edges
                .iter_mut()
                .find(|e| e.from == edge.from && e.to == edge.to)
            {
                Some(known) => known.count += edge.count,
                None => self.edges.push(edge.clone()),
            }
        }
        let newest = traffic.at_ms;
        self.recent.push_back(traffic);
        while self
            .recent
            .front()
            .is_some_and(|t| newest.saturating_sub(t.at_ms) >= WINDOW_MS)
        {
            self.recent.pop_front();
        }
    }

    /// Whether a flood was still going at `at_ms` (server time): its last
    /// summary is recent. A trace from then is part of it, and must not
    /// take the counts off the diagram.
    pub fn active_at(&self, at_ms: u64) -> bool {
        self.recent
            .back()
            .is_some_and(|last| at_ms.saturating_sub(last.at_ms) < GAP_MS)
    }

    /// Reads since the flood began (0: none yet).
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Reads per diagram edge since the flood began.
    pub fn edges(&self) -> &[EdgeCount] {
        &self.edges
    }

    /// Untraced reads per second over the last stretch.
    pub fn per_second(&self) -> Option<f64> {
        let ms: u64 = self.recent.iter().map(|t| t.interval_ms).sum();
        let reads: u64 = self.recent.iter().map(Traffic::reads).sum();
        (ms > 0).then(|| reads as f64 * 1000.0 / ms as f64)
    }

    /// The latency under which `share` of the last stretch's reads
    /// finished, to the histogram's precision (a power of two).
    pub fn quantile_us(&self, share: f64) -> Option<u64> {
        let mut merged = Traffic::default();
        for traffic in &self.recent {
            // Kept in order of bound as it is merged.
            for &(bound, n) in &traffic.histogram {
                match merged.histogram.binary_search_by_key(&bound, |(b, _)| *b) {
                    Ok(at) => merged.histogram[at].1 += n,
                    Err(at) => merged.histogram.insert(at, (bound, n)),
                }
            }
        }
        merged.quantile_us(share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::diagram::nodes::{CHECK_CACHE, REQUEST, RETURN_CACHED};
    use shared::Outcome;

    fn summary(at_ms: u64, hits: u64, micros: u64) -> Traffic {
        Traffic {
            interval_ms: 250,
            at_ms,
            outcomes: vec![(Outcome::Hit, hits)],
            edges: vec![
                EdgeCount {
                    from: REQUEST,
                    to: CHECK_CACHE,
                    count: hits,
                },
                EdgeCount {
                    from: CHECK_CACHE,
                    to: RETURN_CACHED,
                    count: hits,
                },
            ],
            histogram: vec![(micros, hits)],
            cached_histogram: vec![(micros, hits)],
        }
    }

    #[test]
    fn summaries_add_up_along_the_edges_while_the_flood_lasts() {
        let mut flood = Flood::default();
        assert!(!flood.active_at(0));
        assert_eq!(flood.per_second(), None);
        flood.add(summary(10_000, 100, 64));
        flood.add(summary(10_250, 300, 128));
        assert_eq!(flood.reads(), 400);
        assert_eq!(flood.edges()[0].count, 400);
        assert_eq!(flood.edges().len(), 2);
        // 400 reads in two intervals of 250 ms.
        assert_eq!(flood.per_second(), Some(800.0));
        assert_eq!(flood.quantile_us(0.2), Some(64));
        assert_eq!(flood.quantile_us(0.99), Some(128));
        assert!(flood.active_at(10_300), "a trace amid the flood");
        assert!(!flood.active_at(10_250 + GAP_MS), "a trace after it");
    }

    #[test]
    fn rate_covers_the_last_stretch_only() {
        let mut flood = Flood::default();
        for n in 0..20 {
            flood.add(summary(n * 250, if n < 10 { 1_000 } else { 10 }, 64));
        }
        // The last two seconds held only the slow tail: 10 reads a summary.
        assert_eq!(flood.per_second(), Some(40.0));
        assert_eq!(flood.reads(), 10_100, "the flood's total is kept");
    }

    #[test]
    fn a_summary_after_a_pause_starts_a_new_flood() {
        let mut flood = Flood::default();
        flood.add(summary(1_000, 500, 64));
        flood.add(summary(1_000 + GAP_MS + 1, 7, 64));
        assert_eq!(flood.reads(), 7);
        assert_eq!(flood.edges()[0].count, 7);
    }
}
