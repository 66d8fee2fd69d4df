//! The sandbox's counters over time, one point a second: hit ratio,
//! database queries per second and average latency, from the running
//! counters every trace and summary carries. Plain Rust, tested natively.

use std::collections::VecDeque;

use shared::decimal::fixed;
use shared::Stats;

/// Points kept: two minutes at one a second.
pub const POINTS: usize = 120;
/// A point covers at least this long.
pub const STEP_MS: u64 = 1_000;

/// One second (or so) of the sandbox's activity.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// When it ended, server time, in milliseconds since the epoch.
    pub at_ms: u64,
    /// Reads in it.
    pub reads: u64,
    /// Share of them answered from the cache (`None`: no reads).
    pub hit_ratio: Option<f64>,
    /// Database queries per second.
    pub database_per_second: f64,
    /// Average read latency, in microseconds (`None`: no reads).
    pub average_us: Option<u64>,
    /// Reads tried in it: those answered and those that failed.
    pub attempts: u64,
    /// Of those, the ones Redis did not answer: fell back to the database,
    /// or failed.
    pub failed: u64,
    /// Database queries in it.
    pub queries: u64,
    /// Of those, the ones that found no row.
    pub not_found: u64,
}

/// The series, fed with the counters as they arrive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The counters at the end of the last point.
    last: Option<(u64, Stats)>,
    points: VecDeque<Point>,
}

impl Series {
    /// Takes the counters as they stood at `at_ms`; closes a point when a
    /// second has passed since the last one.
    pub fn observe(&mut self, at_ms: u64, stats: Stats) {
        let Some((since_ms, before)) = self.last else {
            self.last = Some((at_ms, stats));
            return;
        };
        // Counters that went down were reset: start again from here.
        if stats.reads() < before.reads() || stats.database_reads < before.database_reads {
            self.last = Some((at_ms, stats));
            return;
        }
        let elapsed = at_ms.saturating_sub(since_ms);
        if elapsed < STEP_MS {
            return;
        }
        let reads = stats.reads() - before.reads();
        let hits = (stats.hits + stats.null_hits).saturating_sub(before.hits + before.null_hits);
        let latency = stats.total_latency_us.saturating_sub(before.total_latency_us);
        let queries = stats.database_reads - before.database_reads;
        let failures = stats.failures.saturating_sub(before.failures);
        self.points.push_back(Point {
            at_ms,
            reads,
            hit_ratio: (reads > 0).then(|| hits as f64 / reads as f64),
            database_per_second: queries as f64 * 1000.0 / elapsed as f64,
            average_us: (reads > 0).then(|| latency / reads),
            attempts: reads + failures,
            failed: stats.fallbacks.saturating_sub(before.fallbacks) + failures,
            queries,
            not_found: stats.database_not_found.saturating_sub(before.database_not_found),
        });
        while self.points.len() > POINTS {
            self.points.pop_front();
        }
        self.last = Some((at_ms, stats));
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The newest point.
    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }
}

/// SVG polyline points (a 240 × 60 view box) for `values`, oldest first,
/// scaled so `top` is the chart's top; the newest at the right edge, at
/// least `min_span` points across so a short run is not squeezed into a
/// corner; missing values are left out.
pub fn polyline(values: &[Option<f64>], top: f64, min_span: usize) -> String {
    let count = values.len();
    let span = count.max(min_span).max(2);
    let offset = span - count;
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v = (*v)?;
            let x = (offset + i) as f64 * 240.0 / (span - 1) as f64;
            let y = 58.0 - 56.0 * (v / top).clamp(0.0, 1.0);
            Some(format!("{},{}", fixed(x, 1), fixed(y, 1)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polyline_ends_at_the_right_edge_and_skips_gaps() {
        let line = polyline(&[Some(0.0), None, Some(1.0)], 1.0, 5);
        assert_eq!(line, "120.0,58.0 240.0,2.0");
        assert_eq!(polyline(&[Some(2.0)], 1.0, 1), "240.0,2.0", "clamped to the top");
        assert_eq!(polyline(&[], 1.0, 20), "");
    }

    fn stats(hits: u64, misses: u64, latency_us: u64) -> Stats {
        Stats {
            hits,
            misses,
            database_reads: misses,
            total_latency_us: latency_us,
            ..Stats::default()
        }
    }

    #[test]
    fn a_point_a_second_from_the_running_counters() {
        let mut series = Series::default();
        series.observe(0, stats(0, 0, 0));
        series.observe(400, stats(10, 10, 1_000));
        assert!(series.is_empty(), "less than a second");
        series.observe(1_000, stats(20, 20, 2_000));
        series.observe(2_000, stats(110, 30, 3_000));
        let points: Vec<&Point> = series.points().collect();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].reads, 40);
        assert_eq!(points[0].hit_ratio, Some(0.5));
        assert_eq!(points[0].database_per_second, 20.0);
        assert_eq!(points[0].average_us, Some(50));
        // The hit ratio climbs as the hot keys are cached.
        assert_eq!(points[1].reads, 100);
        assert_eq!(points[1].hit_ratio, Some(0.9));
        assert_eq!(series.latest().unwrap().database_per_second, 10.0);
    }

    #[test]
    fn a_reset_starts_the_differences_again_and_the_series_is_bounded() {
        let mut series = Series::default();
        series.observe(0, stats(100, 100, 0));
        series.observe(1_000, stats(0, 0, 0));
        series.observe(2_000, stats(5, 5, 0));
        assert_eq!(series.latest().unwrap().reads, 10);
        for n in 3..300 {
            series.observe(n * 1_000, stats(5 + n, 5, 0));
        }
        assert_eq!(series.points().count(), POINTS);
    }
}
