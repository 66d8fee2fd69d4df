//! A sandbox's settings and counters, each one serializable value, so a URL
//! or a lesson preset can recreate them later.

use serde::{Deserialize, Serialize};

/// What shapes the behaviour of reads in a sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSettings {
    /// How long a cached record lives in Redis (`SET ... EX`), in seconds.
    pub cache_ttl_secs: u64,
    /// How long a "does not exist" marker lives, in seconds; shorter than
    /// `cache_ttl_secs` so a record created later shows up soon.
    pub null_ttl_secs: u64,
    /// The start of every cache key, such as `cache:`.
    pub key_prefix: String,
    /// Delay added to every database query to imitate a remote database, in
    /// milliseconds (the tutorial's figure is 100 ms).
    pub db_latency_ms: u64,
    /// How long one Redis command may take before the read gives up on the
    /// cache and falls back to the database, in milliseconds.
    pub redis_timeout_ms: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            cache_ttl_secs: 60,
            null_ttl_secs: 30,
            key_prefix: "cache:".into(),
            db_latency_ms: 100,
            redis_timeout_ms: 250,
        }
    }
}

/// Running counters of one sandbox since the back end started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Reads answered from the cache with a value.
    pub hits: u64,
    /// Reads answered from the cache with a "does not exist" marker.
    pub null_hits: u64,
    /// Reads that found nothing in Redis and went to the database.
    pub misses: u64,
    /// Reads where Redis failed and the database answered.
    pub fallbacks: u64,
    /// Reads that failed because the database failed.
    pub failures: u64,
    /// Sum of the wall time of every answered read, in microseconds.
    pub total_latency_us: u64,
    /// Number of reads that went to the database.
    pub database_reads: u64,
    /// Sum of the wall time of those database reads (query plus simulated
    /// delay), in microseconds: what every read would cost with no cache.
    pub database_latency_us: u64,
}

impl Stats {
    /// All reads counted.
    pub fn reads(&self) -> u64 {
        self.hits + self.null_hits + self.misses + self.fallbacks
    }

    /// Share of reads answered from the cache, from 0 to 1; `None` before
    /// the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.reads();
        (reads > 0).then(|| (self.hits + self.null_hits) as f64 / reads as f64)
    }

    /// Average latency of reads as they ran, with the cache, in microseconds.
    pub fn average_latency_us(&self) -> Option<u64> {
        let reads = self.reads();
        (reads > 0).then(|| self.total_latency_us / reads)
    }

    /// Average cost of one database read, in microseconds: the latency every
    /// read would have without a cache.
    pub fn average_database_us(&self) -> Option<u64> {
        (self.database_reads > 0).then(|| self.database_latency_us / self.database_reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_the_tutorials_arithmetic() {
        // Section 2.5: 80 % hits at 1 ms and 20 % misses at 101 ms.
        let stats = Stats {
            hits: 8,
            misses: 2,
            total_latency_us: 8 * 1_000 + 2 * 101_000,
            database_reads: 2,
            database_latency_us: 2 * 100_000,
            ..Stats::default()
        };
        assert_eq!(stats.hit_ratio(), Some(0.8));
        assert_eq!(stats.average_latency_us(), Some(21_000));
        assert_eq!(stats.average_database_us(), Some(100_000));
        assert_eq!(Stats::default().hit_ratio(), None);
    }
}
