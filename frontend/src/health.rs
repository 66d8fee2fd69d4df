//! Redis's own figures over time, and the alerts the tutorial recommends
//! (section 6.4): a hit ratio under 50 % for a minute, memory above 80 % of
//! `maxmemory`, more than 100 evictions a second, database queries at ten
//! times their usual rate. Plain Rust, tested natively.

use std::collections::VecDeque;

use shared::RedisFigures;

use crate::series::Series;
use shared::decimal::fixed;

/// Samples kept (two minutes at one every two seconds).
pub const SAMPLES: usize = 60;

/// Redis's figures as they came, newest last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisWatch {
    samples: VecDeque<RedisFigures>,
    /// Why the latest request failed (cleared by the next answer).
    error: Option<String>,
}

/// What the latest two samples say, per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    pub evictions_per_second: f64,
    pub expirations_per_second: f64,
    /// Redis's own hit ratio over the interval (`None`: no lookups).
    pub hit_ratio: Option<f64>,
}

/// One sample as the Redis card charts it: memory, and rates since the
/// sample before.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisPoint {
    pub used_memory: u64,
    pub maxmemory: u64,
    pub ops_per_second: u64,
    pub evictions_per_second: f64,
    pub expirations_per_second: f64,
    /// Redis's hit ratio over the interval (`None`: no lookups).
    pub hit_ratio: Option<f64>,
}

/// An alert that fires now.
#[derive(Clone, Debug, PartialEq)]
pub enum Alert {
    /// The application's hit ratio stayed under 50 % for a minute.
    LowHitRatio { ratio: f64 },
    /// Redis uses more than 80 % of its `maxmemory`.
    MemoryHigh { share: f64 },
    /// Redis evicts more than 100 keys a second.
    Evicting { per_second: f64 },
    /// The database gets ten times its usual queries.
    DatabaseSurge { factor: f64 },
    /// Over 1 % of the last ten seconds' reads fell back or failed.
    Errors { share: f64 },
    /// Over 10 % of the last ten seconds' database lookups found no row.
    NotFound { share: f64 },
}

impl Alert {
    /// The alert in words.
    pub fn text(&self) -> String {
        match self {
            Alert::LowHitRatio { ratio } => format!(
                "Hit ratio {} % for a minute (under 50 %): check the TTLs and the keys you read.",
                fixed(ratio * 100.0, 0)
            ),
            Alert::MemoryHigh { share } => format!(
                "Redis memory at {} % of maxmemory (over 80 %): evictions are near.",
                fixed(share * 100.0, 0)
            ),
            Alert::Evicting { per_second } => format!(
                "Redis evicts {} keys a second (over 100): the cache is too small for what it holds.",
                fixed(*per_second, 0)
            ),
            Alert::DatabaseSurge { factor } => format!(
                "The database gets {}× its usual queries: a stampede, or the cache is not answering.",
                fixed(*factor, 0)
            ),
            Alert::Errors { share } => format!(
                "{} % of reads in the last 10 s fell back to the database or failed (over 1 %): Redis is failing or not answering in time.",
                fixed(share * 100.0, 1)
            ),
            Alert::NotFound { share } => format!(
                "{} % of database lookups in the last 10 s found no row (over 10 %): reads of records that do not exist reach the database (Diagnostics names the likely cause).",
                fixed(share * 100.0, 0)
            ),
        }
    }
}

impl RedisWatch {
    /// Takes the next sample; one from a restarted Redis (counters that
    /// went down) starts the watch again.
    pub fn observe(&mut self, figures: RedisFigures) {
        self.error = None;
        if let Some(last) = self.samples.back() {
            if figures.evicted_keys < last.evicted_keys
                || figures.keyspace_hits < last.keyspace_hits
                || figures.at_ms <= last.at_ms
            {
                self.samples.clear();
            }
        }
        self.samples.push_back(figures);
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// The latest request failed (Redis down or too slow).
    pub fn failed(&mut self, why: String) {
        self.error = Some(why);
    }

    /// Why the latest request failed, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn latest(&self) -> Option<&RedisFigures> {
        self.samples.back()
    }

    /// The used memory of every sample, oldest first.
    pub fn memory(&self) -> impl Iterator<Item = u64> + '_ {
        self.samples.iter().map(|s| s.used_memory)
    }

    /// Rates between the last two samples.
    pub fn rates(&self) -> Option<Rates> {
        let n = self.samples.len();
        if n < 2 {
            return None;
        }
        Some(rates_between(&self.samples[n - 2], &self.samples[n - 1]))
    }

    /// Every sample but the first, with the rates since the one before,
    /// oldest first: the card's charts.
    pub fn points(&self) -> Vec<RedisPoint> {
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(a, b)| {
                let rates = rates_between(a, b);
                RedisPoint {
                    used_memory: b.used_memory,
                    maxmemory: b.maxmemory,
                    ops_per_second: b.instantaneous_ops_per_sec,
                    evictions_per_second: rates.evictions_per_second,
                    expirations_per_second: rates.expirations_per_second,
                    hit_ratio: rates.hit_ratio,
                }
            })
            .collect()
    }

    /// The alerts that fire now, from Redis's figures and the sandbox's
    /// own series of reads.
    pub fn alerts(&self, app: &Series) -> Vec<Alert> {
        let mut alerts = Vec::new();
        // A minute of points that all had reads and all stayed under 50 %.
        let points: Vec<_> = app.points().collect();
        if let Some(last) = points.last() {
            let minute: Vec<_> = points
                .iter()
                .rev()
                .take_while(|p| last.at_ms - p.at_ms < 60_000)
                .collect();
            let spans_a_minute = minute.last().is_some_and(|p| last.at_ms - p.at_ms >= 55_000);
            let ratios: Vec<f64> = minute.iter().filter_map(|p| p.hit_ratio).collect();
            if spans_a_minute && ratios.len() == minute.len() && ratios.iter().all(|r| *r < 0.5) {
                let ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
                alerts.push(Alert::LowHitRatio { ratio });
            }
        }
        if let Some(latest) = self.latest() {
            if latest.maxmemory > 0 {
                let share = latest.used_memory as f64 / latest.maxmemory as f64;
                if share > 0.8 {
                    alerts.push(Alert::MemoryHigh { share });
                }
            }
        }
        if let Some(rates) = self.rates() {
            if rates.evictions_per_second > 100.0 {
                alerts.push(Alert::Evicting {
                    per_second: rates.evictions_per_second,
                });
            }
        }
        // Errors: the last ten seconds, once they hold enough reads to
        // tell 1 % from chance.
        let (attempts, failed) = points
            .iter()
            .rev()
            .take(10)
            .fold((0, 0), |(a, f), p| (a + p.attempts, f + p.failed));
        if attempts >= 100 && failed * 100 > attempts {
            alerts.push(Alert::Errors {
                share: failed as f64 / attempts as f64,
            });
        }
        // Lookups of missing records: over 10 % of the last ten seconds'
        // queries, once there are enough of them to tell.
        let (queries, not_found) = points
            .iter()
            .rev()
            .take(10)
            .fold((0, 0), |(q, n), p| (q + p.queries, n + p.not_found));
        if too_many_not_found(queries, not_found) {
            alerts.push(Alert::NotFound {
                share: not_found as f64 / queries as f64,
            });
        }
        // The usual rate: the quietest ten seconds with any queries; the
        // alert compares the latest ten seconds with it.
        let rates: Vec<f64> = points.iter().map(|p| p.database_per_second).collect();
        if rates.len() >= 20 {
            let averages: Vec<f64> = rates.windows(10).map(|w| w.iter().sum::<f64>() / 10.0).collect();
            let usual = averages
                .iter()
                .copied()
                .filter(|r| *r > 0.0)
                .fold(f64::INFINITY, f64::min);
            let now = *averages.last().unwrap_or(&0.0);
            if usual.is_finite() && now > 10.0 * usual {
                alerts.push(Alert::DatabaseSurge { factor: now / usual });
            }
        }
        alerts
    }
}

/// The fewest database lookups from which the share that found no row is
/// judged.
pub const ENOUGH_LOOKUPS: u64 = 20;

/// Whether `missing` of `lookups` database lookups finding no row is the
/// tutorial's warning sign: over 10 %, of enough lookups to tell.
pub fn too_many_not_found(lookups: u64, missing: u64) -> bool {
    lookups >= ENOUGH_LOOKUPS && missing * 10 > lookups
}

/// The rates from sample `a` to the later sample `b`.
fn rates_between(a: &RedisFigures, b: &RedisFigures) -> Rates {
    let seconds = (b.at_ms.saturating_sub(a.at_ms)).max(1) as f64 / 1000.0;
    let hits = b.keyspace_hits.saturating_sub(a.keyspace_hits);
    let misses = b.keyspace_misses.saturating_sub(a.keyspace_misses);
    Rates {
        evictions_per_second: b.evicted_keys.saturating_sub(a.evicted_keys) as f64 / seconds,
        expirations_per_second: b.expired_keys.saturating_sub(a.expired_keys) as f64 / seconds,
        hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Stats;

    #[test]
    fn each_sample_after_the_first_is_a_chart_point_with_its_rates() {
        let mut watch = RedisWatch::default();
        watch.observe(figures(1_000, 100, 0, 0, 0));
        assert!(watch.points().is_empty(), "one sample has no rates yet");
        watch.observe(figures(3_000, 400, 400, 30, 10));
        watch.observe(figures(5_000, 500, 400, 30, 10));
        let points = watch.points();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].used_memory, 400);
        assert_eq!(points[0].evictions_per_second, 200.0);
        assert_eq!(points[0].hit_ratio, Some(0.75));
        assert_eq!(points[1].evictions_per_second, 0.0);
        assert_eq!(points[1].hit_ratio, None, "no lookups in that interval");
    }

    fn figures(at_ms: u64, used: u64, evicted: u64, hits: u64, misses: u64) -> RedisFigures {
        RedisFigures {
            at_ms,
            used_memory: used,
            maxmemory: 1_000,
            maxmemory_policy: "allkeys-lru".into(),
            evicted_keys: evicted,
            expired_keys: 0,
            keyspace_hits: hits,
            keyspace_misses: misses,
            instantaneous_ops_per_sec: 0,
        }
    }

    #[test]
    fn rates_and_memory_and_eviction_alerts() {
        let mut watch = RedisWatch::default();
        watch.observe(figures(0, 500, 0, 0, 0));
        assert_eq!(watch.rates(), None);
        assert!(watch.alerts(&Series::default()).is_empty());
        watch.observe(figures(2_000, 900, 400, 30, 10));
        let rates = watch.rates().unwrap();
        assert_eq!(rates.evictions_per_second, 200.0);
        assert_eq!(rates.hit_ratio, Some(0.75));
        let alerts = watch.alerts(&Series::default());
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert!(matches!(alerts[0], Alert::MemoryHigh { share } if (share - 0.9).abs() < 1e-9));
        assert!(matches!(alerts[1], Alert::Evicting { per_second } if per_second == 200.0));
        // A failed request is kept until the next answer.
        watch.failed("Redis failed".into());
        assert_eq!(watch.error(), Some("Redis failed"));
        // A restarted Redis starts the watch again.
        watch.observe(figures(4_000, 100, 0, 0, 0));
        assert_eq!(watch.rates(), None);
        assert_eq!(watch.error(), None);
    }

    /// The sandbox's series: `ratio` of each second's 10 reads are hits,
    /// with `queries` database queries a second.
    fn series(seconds: u64, ratio: f64, queries: impl Fn(u64) -> u64) -> Series {
        let mut series = Series::default();
        let mut stats = Stats::default();
        series.observe(0, stats);
        for s in 1..=seconds {
            let hits = (10.0 * ratio) as u64;
            stats.hits += hits;
            stats.misses += 10 - hits;
            stats.database_reads += queries(s);
            series.observe(s * 1_000, stats);
        }
        series
    }

    #[test]
    fn a_low_hit_ratio_alerts_only_after_a_whole_minute() {
        let watch = RedisWatch::default();
        let low = |alerts: Vec<Alert>| alerts.iter().any(|a| matches!(a, Alert::LowHitRatio { .. }));
        assert!(!low(watch.alerts(&series(30, 0.3, |_| 1))), "half a minute");
        assert!(low(watch.alerts(&series(70, 0.3, |_| 1))));
        assert!(!low(watch.alerts(&series(70, 0.8, |_| 1))), "a healthy ratio");
    }

    /// Over 1 % of the last ten seconds' reads not answered by Redis:
    /// 2 fallbacks in 100 reads alert, 1 does not, nor 2 in 50.
    #[test]
    fn an_error_rate_over_one_percent_alerts() {
        let watch = RedisWatch::default();
        let errors = |fallbacks_at: &[u64], per_second: u64| {
            let mut series = Series::default();
            let mut stats = Stats::default();
            series.observe(0, stats);
            for s in 1..=10 {
                stats.hits += per_second;
                if fallbacks_at.contains(&s) {
                    stats.hits -= 1;
                    stats.fallbacks += 1;
                }
                series.observe(s * 1_000, stats);
            }
            watch
                .alerts(&series)
                .into_iter()
                .any(|a| matches!(a, Alert::Errors { .. }))
        };
        assert!(errors(&[3, 7], 10));
        assert!(!errors(&[3], 10));
        assert!(!errors(&[3, 7], 5), "too few reads to tell");
    }

    /// Over 10 % of the last ten seconds' database lookups found no row:
    /// 3 missing of 20 alert, 2 of 20 do not, nor 3 of 15 (too few).
    #[test]
    fn lookups_of_missing_records_over_ten_percent_alert() {
        let watch = RedisWatch::default();
        let alerted = |queries: u64, missing: u64| {
            let mut series = Series::default();
            let mut stats = Stats::default();
            series.observe(0, stats);
            for s in 1..=10 {
                let (q, m) = if s == 1 { (queries, missing) } else { (0, 0) };
                stats.misses += q;
                stats.database_reads += q;
                stats.database_not_found += m;
                series.observe(s * 1_000, stats);
            }
            watch
                .alerts(&series)
                .into_iter()
                .any(|a| matches!(a, Alert::NotFound { .. }))
        };
        assert!(alerted(20, 3));
        assert!(!alerted(20, 2));
        assert!(!alerted(15, 3), "too few queries to tell");
    }

    #[test]
    fn a_database_surge_is_ten_times_the_quiet_rate() {
        let watch = RedisWatch::default();
        let surge = |alerts: Vec<Alert>| alerts.iter().any(|a| matches!(a, Alert::DatabaseSurge { .. }));
        assert!(!surge(watch.alerts(&series(40, 0.9, |_| 2))), "steady");
        assert!(surge(watch.alerts(&series(40, 0.9, |s| if s > 30 {
            50
        } else {
            2
        }))));
    }
}
