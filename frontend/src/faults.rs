//! The fault lab's report in words: what is being done to Redis, each
//! instance's breaker, the timeline. Plain Rust, tested without a DOM.

use shared::decimal::fixed;
use shared::{FaultReport, RedisFault};

/// What is being done to the sandbox's Redis, in one sentence.
pub fn headline(redis: &RedisFault) -> String {
    let mut parts = Vec::new();
    if redis.down {
        parts.push("stopped: connections refused".to_string());
    }
    if redis.hung {
        parts.push("hung: commands accepted, never answered".to_string());
    }
    if redis.delay_ms > 0 {
        parts.push(format!("slowed by {} ms a command", redis.delay_ms));
    }
    if parts.is_empty() {
        "Redis is reachable and answering.".to_string()
    } else {
        format!("Redis is {} (for this sandbox only).", parts.join("; "))
    }
}

/// Each instance's breaker, and the invalidations it owes:
/// `A open (opened 2×) · B closed · C closed`.
pub fn breakers(report: &FaultReport) -> String {
    report
        .breakers
        .iter()
        .map(|b| {
            let mut line = format!("{} {}", b.instance, b.state);
            if b.opened > 0 {
                line.push_str(&format!(" (opened {}×)", b.opened));
            }
            if b.pending > 0 {
                line.push_str(&format!(", owes {} delete{}", b.pending, plural(b.pending)));
            }
            line
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The invalidations owed and delivered late, or `None` when there are
/// none of either.
pub fn invalidations(report: &FaultReport) -> Option<String> {
    let pending = report.pending();
    (pending > 0 || report.retried > 0).then(|| {
        format!(
            "{pending} invalidation{} waiting for Redis; {} delivered late by a retry.",
            plural(pending),
            report.retried
        )
    })
}

/// The timeline, each event with its time since the first, in
/// milliseconds under ten seconds: `("+250 ms", "Redis stopped")`.
pub fn timeline(report: &FaultReport) -> Vec<(String, String)> {
    let start = report.events.first().map_or(0, |e| e.at_ms);
    report
        .events
        .iter()
        .map(|e| {
            let ms = e.at_ms.saturating_sub(start);
            let when = if ms < 10_000 {
                format!("+{ms} ms")
            } else {
                format!("+{} s", fixed(ms as f64 / 1000.0, 1))
            };
            (when, e.text.clone())
        })
        .collect()
}

/// Whether the report changes on its own (a breaker's timer, a retry in
/// the background), so the page should ask again soon.
pub fn moving(report: &FaultReport) -> bool {
    report.redis.any() || report.pending() > 0 || report.breakers.iter().any(|b| b.state != "closed")
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{BreakerView, FaultEvent};

    fn breaker(instance: &str, state: &str, opened: u64, pending: u64) -> BreakerView {
        BreakerView {
            instance: instance.into(),
            state: state.into(),
            opened,
            pending,
        }
    }

    #[test]
    fn the_headline_names_every_fault() {
        assert_eq!(
            headline(&RedisFault::default()),
            "Redis is reachable and answering."
        );
        let all = RedisFault {
            down: true,
            delay_ms: 300,
            hung: true,
        };
        let text = headline(&all);
        assert!(
            text.contains("stopped") && text.contains("hung") && text.contains("300 ms"),
            "{text}"
        );
    }

    #[test]
    fn breakers_and_owed_deletes_are_told_per_instance() {
        let report = FaultReport {
            breakers: vec![breaker("A", "open", 2, 1), breaker("B", "closed", 0, 0)],
            retried: 3,
            ..FaultReport::default()
        };
        assert_eq!(breakers(&report), "A open (opened 2×), owes 1 delete · B closed");
        assert_eq!(
            invalidations(&report).unwrap(),
            "1 invalidation waiting for Redis; 3 delivered late by a retry."
        );
        assert!(moving(&report));
        let quiet = FaultReport {
            breakers: vec![breaker("A", "closed", 1, 0)],
            ..FaultReport::default()
        };
        assert!(!moving(&quiet));
        assert_eq!(invalidations(&quiet), None);
    }

    #[test]
    fn the_timeline_counts_from_the_first_event() {
        let report = FaultReport {
            events: vec![
                FaultEvent {
                    at_ms: 10_000,
                    text: "Redis stopped".into(),
                },
                FaultEvent {
                    at_ms: 12_345,
                    text: "Redis back".into(),
                },
                FaultEvent {
                    at_ms: 21_000,
                    text: "breaker closed".into(),
                },
            ],
            ..FaultReport::default()
        };
        assert_eq!(
            timeline(&report),
            [
                ("+0 ms".to_string(), "Redis stopped".to_string()),
                ("+2345 ms".to_string(), "Redis back".to_string()),
                ("+11.0 s".to_string(), "breaker closed".to_string())
            ]
        );
    }
}
