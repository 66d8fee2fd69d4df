//! The troubleshooting checks of the tutorial's section 7, run on what the
//! sandbox really did: a low hit ratio, memory that grows, slow reads,
//! stale data, Redis connection errors. Each check says what it found and
//! what usually causes it. Plain Rust, tested natively.

use std::collections::VecDeque;

use shared::{DivergenceEntry, DivergenceReport, KeyReport, Operation, SandboxSettings, Stats, Trace};

use crate::format::micros;
use crate::health::{too_many_not_found, RedisWatch, ENOUGH_LOOKUPS};
use shared::decimal::fixed;

/// What one check found.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The check, as the tutorial names the symptom.
    pub check: &'static str,
    /// Whether it points at a problem.
    pub problem: bool,
    /// What it saw, and what to do.
    pub text: String,
}

/// Everything the checks look at.
pub struct Evidence<'a> {
    pub stats: &'a Stats,
    pub settings: Option<&'a SandboxSettings>,
    pub redis: &'a RedisWatch,
    pub divergence: Option<&'a DivergenceReport>,
    pub keys: Option<&'a KeyReport>,
    /// The sandbox's recent write traces, newest first.
    pub writes: &'a VecDeque<Trace>,
}

/// Runs every check.
pub fn diagnose(e: &Evidence<'_>) -> Vec<Finding> {
    vec![
        hit_ratio(e),
        memory(e),
        latency(e),
        stale_data(e),
        connection_errors(e),
        missing_records(e),
    ]
}

fn hit_ratio(e: &Evidence<'_>) -> Finding {
    let check = "Low hit ratio";
    let Some(ratio) = e.stats.hit_ratio() else {
        return Finding {
            check,
            problem: false,
            text: "No reads counted yet: read some records, or start a steady load (herds, fills and pattern comparisons are summed up in their own cards).".into(),
        };
    };
    let ttl = e.settings.map(|s| s.cache_ttl_secs);
    if ratio >= 0.8 {
        return Finding {
            check,
            problem: false,
            text: format!(
                "{} % of reads came from the cache: healthy.",
                fixed(ratio * 100.0, 0)
            ),
        };
    }
    let mut text = format!("Only {} % of reads came from the cache.", fixed(ratio * 100.0, 0));
    match ttl {
        Some(ttl) if ttl < 30 => text.push_str(&format!(
            " The TTL is {ttl} s: values expire before they are read again. Raise it, if the data may be that old."
        )),
        _ => text.push_str(
            " Are the keys read often enough to be worth caching, and are readers and writers using the same key names? Misses right after a restart or a reset are normal (a cold cache).",
        ),
    }
    Finding {
        check,
        problem: true,
        text,
    }
}

fn memory(e: &Evidence<'_>) -> Finding {
    let check = "Memory keeps growing";
    let without_ttl = e.keys.map_or(0, |k| k.without_ttl);
    if without_ttl > 0 {
        return Finding {
            check,
            problem: true,
            text: format!(
                "{without_ttl} key(s) have no TTL: they never expire, so the cache only grows. Give every key a TTL."
            ),
        };
    }
    if let Some(latest) = e.redis.latest() {
        let full = latest.maxmemory > 0 && latest.used_memory as f64 > 0.8 * latest.maxmemory as f64;
        if full {
            let policy = latest.maxmemory_policy.as_str();
            // A volatile policy evicts only keys with a TTL: it refuses
            // writes when none is left, unless every key has one (the
            // sandbox's keys were listed whole and none lacked a TTL).
            let every_key_has_a_ttl = e.keys.is_some_and(|k| k.without_ttl == 0 && !k.truncated);
            let what = if policy == "noeviction" {
                format!(
                    " Its policy is {policy}: once full, Redis refuses new values it cannot make room for (the reads still answer, from the database). Let Redis evict (allkeys-lru), give every key a TTL, or raise maxmemory."
                )
            } else if policy.starts_with("volatile") && !every_key_has_a_ttl {
                format!(
                    " Its policy is {policy}: Redis evicts only keys with a TTL, and once none is left it refuses new values (the reads still answer, from the database). Give every key a TTL, use an allkeys policy, or raise maxmemory."
                )
            } else {
                format!(" Its policy is {policy}: Redis evicts to make room; if the hit ratio suffers, raise maxmemory or cache less.")
            };
            return Finding {
                check,
                problem: true,
                text: format!(
                    "Redis uses over 80 % of maxmemory ({} of {}).{what}",
                    crate::format::bytes(latest.used_memory),
                    crate::format::bytes(latest.maxmemory)
                ),
            };
        }
    }
    let memory: Vec<u64> = e.redis.memory().collect();
    match (memory.first(), memory.last()) {
        (Some(&first), Some(&last)) if memory.len() >= 5 => {
            let grew = last.saturating_sub(first);
            Finding {
                check,
                problem: false,
                text: if e.keys.is_some() {
                    format!(
                        "Redis memory grew by {} over the watch; every key of the sandbox has a TTL.",
                        crate::format::bytes(grew)
                    )
                } else {
                    format!(
                        "Redis memory grew by {} over the watch; the keys were not inspected.",
                        crate::format::bytes(grew)
                    )
                },
            }
        }
        _ => Finding {
            check,
            problem: false,
            text: if e.keys.is_some() {
                "Every key has a TTL. Keep the Redis card open a little to watch memory over time.".into()
            } else {
                "Not enough to go on yet: inspect the keys, and keep the Redis card open a little.".into()
            },
        },
    }
}

/// The tutorial's bar for a hit: Redis and decoding together should stay
/// well under 5 ms.
const SLOW_CACHE_US: u64 = 5_000;

fn latency(e: &Evidence<'_>) -> Finding {
    let check = "High latency";
    let reads = e.stats.reads();
    let Some(average) = e.stats.average_latency_us() else {
        return Finding {
            check,
            problem: false,
            text: "No reads counted yet.".into(),
        };
    };
    // What a read spends outside its own database query: Redis, decoding,
    // the application, and waits (for a lock holder's load, for a database
    // connection). A slow Redis shows here even when every read hits, where
    // comparing with a database read could not see it.
    let outside = e
        .stats
        .total_latency_us
        .saturating_sub(e.stats.database_latency_us)
        / reads;
    if outside > SLOW_CACHE_US {
        return Finding {
            check,
            problem: true,
            text: format!(
                "Each read spends {} outside its database query, where a hit should take well under 5 ms, whatever the hit ratio says. Redis may be slow (a slow or distant network, big values, a busy or hung server), or reads wait on something else: another reader's load behind a lock, a free database connection.",
                micros(outside)
            ),
        };
    }
    let Some(database) = e.stats.average_database_us() else {
        return Finding {
            check,
            problem: false,
            text: format!(
                "An average read takes {}; no database read yet to compare with.",
                micros(average)
            ),
        };
    };
    // A read that mostly hits should cost far less than a database read.
    let problem = average * 2 > database;
    Finding {
        check,
        problem,
        text: if problem {
            format!(
                "An average read takes {}, close to a database read ({}): most reads miss (or the database behind the misses is saturated).",
                micros(average),
                micros(database)
            )
        } else {
            format!(
                "An average read takes {} against {} for a database read: the cache is doing its job.",
                micros(average),
                micros(database)
            )
        },
    }
}

fn stale_data(e: &Evidence<'_>) -> Finding {
    let check = "Stale data";
    match e.divergence {
        None => Finding {
            check,
            problem: false,
            text: "Not checked: the diagnostics compare the cache with the database when they run.".into(),
        },
        Some(report) if report.stale() > 0 => {
            let missed = report
                .entries
                .iter()
                .filter(|entry| entry.stale)
                .find_map(|entry| Some((entry, deleted_instead(e.writes, entry)?)));
            Finding {
                check,
                problem: true,
                text: match missed {
                    Some((entry, deleted)) => format!(
                        "{} cached key(s) disagree with the database. {} stayed cached while the writes of that record deleted {deleted}: the writers and the readers spell the key differently, so no invalidation ever lands. Build key names in one place, used by both.",
                        report.stale(),
                        entry.key
                    ),
                    None => format!(
                        "{} cached key(s) disagree with the database: a write did not invalidate them (TTL-only strategy, a lost invalidation, a race). Delete on write, or a shorter TTL, or a race guard.",
                        report.stale()
                    ),
                },
            }
        }
        Some(report) => Finding {
            check,
            problem: false,
            text: format!(
                "All {} cached key(s) agree with the database.",
                report.entries.len()
            ),
        },
    }
}

/// The key a recent write of `entry`'s record deleted, if it is not the key
/// the record is cached under: an invalidation that missed.
fn deleted_instead(writes: &VecDeque<Trace>, entry: &DivergenceEntry) -> Option<String> {
    writes
        .iter()
        .filter(|t| match t.operation {
            Operation::Update { kind, id, .. } | Operation::Delete { kind, id } => {
                (kind, id) == (entry.kind, entry.id)
            }
            Operation::Read { .. } => false,
        })
        .flat_map(|t| &t.steps)
        .find_map(|step| {
            let shared::Action::Redis(command) = &step.action else {
                return None;
            };
            let mut words = command.split_whitespace();
            let verb = words.next()?;
            if !verb.eq_ignore_ascii_case("DEL") && !verb.eq_ignore_ascii_case("UNLINK") {
                return None;
            }
            let key = words.next()?.trim_matches(|c| c == '"' || c == '\'');
            (key != entry.key).then(|| key.to_string())
        })
}

fn connection_errors(e: &Evidence<'_>) -> Finding {
    let check = "Redis connection errors";
    let fallbacks = e.stats.fallbacks;
    Finding {
        check,
        problem: fallbacks > 0,
        text: if fallbacks > 0 {
            format!(
                "{fallbacks} read(s) fell back to the database because Redis failed or was too slow: check that Redis runs, the timeout, and the network."
            )
        } else {
            "No read fell back: Redis answered every time.".into()
        },
    }
}

/// Section 4.7's detection metric: lookups of records that do not exist,
/// over 10 % of the database's lookups.
fn missing_records(e: &Evidence<'_>) -> Finding {
    let check = "Lookups of missing records";
    let (lookups, missing) = (e.stats.database_reads, e.stats.database_not_found);
    if lookups < ENOUGH_LOOKUPS {
        return Finding {
            check,
            problem: false,
            text: format!(
                "{missing} of {lookups} database lookups found no row: too few to judge (the check needs {ENOUGH_LOOKUPS})."
            ),
        };
    }
    let mut text = format!(
        "{missing} of {lookups} database lookups ({} %) found no row.",
        fixed(missing as f64 * 100.0 / lookups as f64, 0)
    );
    let problem = too_many_not_found(lookups, missing);
    if !problem {
        text.push_str(" Under 10 %.");
    } else if e.settings.is_some_and(|s| !s.negative_caching) {
        text.push_str(
            " Over 10 %, and \"does not exist\" is not cached: every lookup of a missing id goes to the database. Switch it on (a short TTL of its own).",
        );
    } else {
        text.push_str(
            " Over 10 %, with \"does not exist\" cached: the lookups are of many different ids (a scan, a bug, an attack). A marker only helps repeats; a filter of the ids that exist (a Bloom filter) keeps the rest off the database.",
        );
    }
    Finding { check, problem, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_TRACES: VecDeque<Trace> = VecDeque::new();

    fn evidence<'a>(stats: &'a Stats, settings: &'a SandboxSettings, redis: &'a RedisWatch) -> Evidence<'a> {
        Evidence {
            stats,
            settings: Some(settings),
            redis,
            divergence: None,
            keys: None,
            writes: &NO_TRACES,
        }
    }

    /// A stale `user:42` whose write deleted `users:42`: the key names
    /// differ, and the finding says which.
    #[test]
    fn an_invalidation_of_a_misspelled_key_is_named() {
        let cached = "cache:s:user:42";
        let report = DivergenceReport {
            entries: vec![DivergenceEntry {
                key: cached.into(),
                kind: shared::Kind::Users,
                id: 42,
                cached: "Ada (version 1)".into(),
                database: "Grace (version 2)".into(),
                stale: true,
                changed_at_ms: None,
                ttl_secs: 200,
            }],
            checked_at_ms: 0,
            sandbox: shared::SandboxId::default_sandbox(),
            truncated: false,
        };
        let mut write = crate::timeline::tests::trace(7, &["write_request", "update_cache"]);
        write.operation = Operation::Update {
            kind: shared::Kind::Users,
            id: 42,
            name: "Grace".into(),
        };
        write.steps[1].action = shared::Action::Redis("DEL cache:s:users:42".into());
        let log = VecDeque::from([write.clone()]);
        let (stats, settings, watch) = (
            Stats::default(),
            SandboxSettings::default(),
            RedisWatch::default(),
        );
        let mut e = evidence(&stats, &settings, &watch);
        e.divergence = Some(&report);
        e.writes = &log;
        let finding = &diagnose(&e)[3];
        assert!(finding.problem);
        assert!(
            finding.text.contains(
                "cache:s:user:42 stayed cached while the writes of that record deleted cache:s:users:42"
            ),
            "{}",
            finding.text
        );
        // The same write deleting the right key: another cause.
        write.steps[1].action = shared::Action::Redis(format!("DEL {cached}"));
        let log = VecDeque::from([write]);
        e.writes = &log;
        let finding = &diagnose(&e)[3];
        assert!(
            finding.text.contains("a write did not invalidate them"),
            "{}",
            finding.text
        );
    }

    /// The memory finding for a Redis 2 MB full under `policy`, the
    /// sandbox's keys not listed.
    fn full_redis_under(policy: &str) -> Finding {
        full_redis_with_keys(policy, None)
    }

    fn full_redis_with_keys(policy: &str, keys: Option<&KeyReport>) -> Finding {
        let mut watch = RedisWatch::default();
        watch.observe(shared::RedisFigures {
            used_memory: 2_000_000,
            maxmemory: 2 << 20,
            maxmemory_policy: policy.into(),
            ..shared::RedisFigures::default()
        });
        let (stats, settings) = (Stats::default(), SandboxSettings::default());
        let mut e = evidence(&stats, &settings, &watch);
        e.keys = keys;
        diagnose(&e).swap_remove(1)
    }

    #[test]
    fn a_full_redis_under_noeviction_is_named_with_its_policy() {
        let finding = full_redis_under("noeviction");
        assert!(finding.problem);
        assert!(
            finding
                .text
                .contains("Its policy is noeviction: once full, Redis refuses"),
            "{}",
            finding.text
        );
    }

    #[test]
    fn a_volatile_policy_evicts_keys_with_a_ttl_before_it_refuses() {
        let finding = full_redis_under("volatile-lru");
        assert!(finding.problem);
        assert!(
            finding.text.contains(
                "volatile-lru: Redis evicts only keys with a TTL, and once none is left it refuses"
            ),
            "{}",
            finding.text
        );
        let finding = full_redis_under("allkeys-lru");
        assert!(
            finding.text.contains("Redis evicts to make room"),
            "{}",
            finding.text
        );
        // Every key listed has a TTL: a volatile policy can evict them all.
        let all_with_ttl = KeyReport {
            keys: Vec::new(),
            without_ttl: 0,
            truncated: false,
            policy: None,
            at_ms: 0,
        };
        let finding = full_redis_with_keys("volatile-lru", Some(&all_with_ttl));
        assert!(
            finding.text.contains("Redis evicts to make room"),
            "{}",
            finding.text
        );
    }

    /// Section 4.7: over 10 % of the database's queries found nothing;
    /// the cause named depends on whether "not found" is cached.
    #[test]
    fn lookups_of_missing_records_are_judged_by_their_share_of_queries() {
        let redis = RedisWatch::default();
        let stats = |queries: u64, missing: u64| Stats {
            misses: queries,
            database_reads: queries,
            database_not_found: missing,
            ..Stats::default()
        };
        let finding = |stats: &Stats, negative: bool| {
            let settings = SandboxSettings {
                negative_caching: negative,
                ..SandboxSettings::default()
            };
            let found = missing_records(&evidence(stats, &settings, &redis));
            assert_eq!(diagnose(&evidence(stats, &settings, &redis))[5], found);
            found
        };
        let off = finding(&stats(20, 20), false);
        assert!(off.problem);
        assert!(off.text.starts_with("20 of 20 database lookups (100 %) found no row. Over 10 %, and \"does not exist\" is not cached"), "{}", off.text);
        let on = finding(&stats(40, 20), true);
        assert!(
            on.problem && on.text.contains("many different ids"),
            "{}",
            on.text
        );
        assert!(!finding(&stats(20, 2), false).problem, "10 % is the limit");
        let few = finding(&stats(19, 19), false);
        assert!(!few.problem && few.text.contains("too few"), "{}", few.text);
    }

    #[test]
    fn a_short_ttl_is_named_as_the_cause_of_a_low_hit_ratio() {
        let stats = Stats {
            hits: 20,
            misses: 80,
            total_latency_us: 8_000_000,
            database_reads: 80,
            database_latency_us: 8_000_000,
            ..Stats::default()
        };
        let settings = SandboxSettings {
            cache_ttl_secs: 2,
            ..SandboxSettings::default()
        };
        let watch = RedisWatch::default();
        let findings = diagnose(&evidence(&stats, &settings, &watch));
        assert!(findings[0].problem);
        assert!(
            findings[0].text.contains("The TTL is 2 s"),
            "{}",
            findings[0].text
        );
        // 80 000 µs a read against 100 000 µs from the database.
        assert!(findings[2].problem, "{}", findings[2].text);
        assert!(!findings[4].problem);
    }

    /// Every read hits, but Redis answers in 20 ms: the hit ratio is fine,
    /// the comparison with the database (100 ms) would pass, and the check
    /// still names Redis as slow.
    #[test]
    fn a_slow_redis_is_named_even_when_every_read_hits() {
        let stats = Stats {
            hits: 99,
            misses: 1,
            total_latency_us: 100 * 20_000 + 100_000,
            database_reads: 1,
            database_latency_us: 100_000,
            ..Stats::default()
        };
        let (settings, watch) = (SandboxSettings::default(), RedisWatch::default());
        let findings = diagnose(&evidence(&stats, &settings, &watch));
        assert!(!findings[0].problem, "the hit ratio is 99 %");
        assert!(findings[2].problem, "{}", findings[2].text);
        assert!(
            findings[2]
                .text
                .starts_with("Each read spends 20.0 ms outside its database query"),
            "{}",
            findings[2].text
        );
        // The same reads at 1 ms each: nothing to report.
        let quick = Stats {
            total_latency_us: 100 * 1_000 + 100_000,
            ..stats
        };
        assert!(!diagnose(&evidence(&quick, &settings, &watch))[2].problem);
    }

    #[test]
    fn a_healthy_sandbox_has_no_problem_and_fallbacks_and_missing_ttls_are_named() {
        let stats = Stats {
            hits: 95,
            misses: 5,
            fallbacks: 0,
            total_latency_us: 600_000,
            database_reads: 5,
            database_latency_us: 500_000,
            ..Stats::default()
        };
        let settings = SandboxSettings::default();
        let watch = RedisWatch::default();
        assert!(diagnose(&evidence(&stats, &settings, &watch))
            .iter()
            .all(|f| !f.problem));

        let broken = Stats {
            fallbacks: 3,
            ..stats
        };
        let keys = KeyReport {
            keys: Vec::new(),
            without_ttl: 4,
            truncated: false,
            policy: None,
            at_ms: 0,
        };
        let mut e = evidence(&broken, &settings, &watch);
        e.keys = Some(&keys);
        let findings = diagnose(&e);
        assert!(findings[1].problem && findings[1].text.starts_with("4 key(s) have no TTL"));
        assert!(findings[4].problem && findings[4].text.starts_with("3 read(s) fell back"));
    }
}
