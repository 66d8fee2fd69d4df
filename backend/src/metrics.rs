//! Prometheus metrics of the whole playground at `GET /metrics`, in the
//! OpenMetrics text format (`prometheus-client`).
//!
//! Aggregated over every sandbox, never labelled by sandbox: sandboxes are
//! anonymous visitors', so a label per sandbox would leak their activity
//! and grow without bound. Labels are the outcome only, a closed set.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use shared::Outcome;

/// The outcome of a read, as a label value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus shows them
enum OutcomeLabel {
    hit,
    near_hit,
    null_hit,
    miss,
    stale,
    fallback,
    fail_safe,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    outcome: OutcomeLabel,
}

/// The playground's metrics and the registry that exports them.
pub struct Metrics {
    registry: Mutex<Registry>,
    reads: Family<ReadLabels, Counter>,
    writes: Counter,
    database_queries: Counter,
    database_busy: Counter,
    read_seconds: Histogram,
    sandboxes: Gauge,
    watchers: Gauge,
    loads: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("playground");
        let reads = Family::<ReadLabels, Counter>::default();
        registry.register(
            "reads",
            "Cache-aside reads, by how they were answered",
            reads.clone(),
        );
        let writes = Counter::default();
        registry.register("writes", "Writes that reached the database", writes.clone());
        let database_queries = Counter::default();
        registry.register(
            "database_queries",
            "Reads that queried the database (misses, fallbacks, loads under a lock)",
            database_queries.clone(),
        );
        let database_busy = Counter::default();
        registry.register(
            "database_busy",
            "Queries turned away because no database connection came free in time",
            database_busy.clone(),
        );
        // 50 µs to about 52 s, doubling.
        let read_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 21));
        registry.register(
            "read_duration_seconds",
            "Wall time of a read as the application saw it",
            read_seconds.clone(),
        );
        let sandboxes = Gauge::default();
        registry.register("sandboxes", "Sandboxes open now", sandboxes.clone());
        let watchers = Gauge::default();
        registry.register("watchers", "Browsers watching a sandbox now", watchers.clone());
        let loads = Gauge::default();
        registry.register("load_generators", "Load generators running now", loads.clone());
        Metrics {
            registry: Mutex::new(registry),
            reads,
            writes,
            database_queries,
            database_busy,
            read_seconds,
            sandboxes,
            watchers,
            loads,
        }
    }

    /// Counts one operation as a sandbox counts it.
    pub fn operation(&self, outcome: Outcome, total_us: u64, database_us: u64) {
        let label = match outcome {
            Outcome::Written => {
                self.writes.inc();
                return;
            }
            Outcome::Hit => OutcomeLabel::hit,
            Outcome::NearHit => OutcomeLabel::near_hit,
            Outcome::NullHit => OutcomeLabel::null_hit,
            Outcome::Miss => OutcomeLabel::miss,
            Outcome::Stale => OutcomeLabel::stale,
            Outcome::Fallback => OutcomeLabel::fallback,
            Outcome::FailSafe => OutcomeLabel::fail_safe,
            Outcome::Failed => OutcomeLabel::failed,
        };
        self.reads.get_or_create(&ReadLabels { outcome: label }).inc();
        if outcome != Outcome::Failed {
            self.read_seconds.observe(total_us as f64 / 1e6);
        }
        if database_us > 0 {
            self.database_queries.inc();
        }
    }

    /// Counts a query the saturated database turned away.
    pub fn busy(&self) {
        self.database_busy.inc();
    }

    /// The metrics as OpenMetrics text, with the gauges set to what is
    /// open now.
    pub fn encode(&self, sandboxes: u64, watchers: u64, loads: u64) -> String {
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.sandboxes, sandboxes);
        gauge(&self.watchers, watchers);
        gauge(&self.loads, loads);
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_become_prometheus_text() {
        let metrics = Metrics::new();
        metrics.operation(Outcome::Hit, 40, 0);
        metrics.operation(Outcome::Hit, 60, 0);
        metrics.operation(Outcome::Miss, 101_000, 100_500);
        metrics.operation(Outcome::Written, 100_000, 0);
        metrics.busy();
        let text = metrics.encode(3, 2, 1);
        for line in [
            "# TYPE playground_reads counter",
            "playground_reads_total{outcome=\"hit\"} 2",
            "playground_reads_total{outcome=\"miss\"} 1",
            "playground_writes_total 1",
            "playground_database_queries_total 1",
            "playground_database_busy_total 1",
            "playground_read_duration_seconds_count 3",
            "playground_sandboxes 3",
            "playground_watchers 2",
            "playground_load_generators 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
