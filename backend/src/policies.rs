//! From the playground's vocabulary to the engine's: a sandbox's settings
//! become the engine's [`Options`], records get their logical keys, write
//! strategies become write policies, and the engine's effects become the
//! wire's [`CacheEffect`].
//!
//! The engine knows nothing of sandboxes, records or the UI; this module
//! is where the two meet, so neither side names the other's types.

use std::time::Duration;

use cache_aside::{
    BreakerPolicy, Content, Effect, Encoding, Envelope, KeySpace, Options, RaceGuard, Remaining, Stampede,
    WritePolicy, DELETED_VERSION,
};
use shared::{
    CacheEffect, CacheWrite, Kind, Outcome, RaceFix, Record, SandboxId, SandboxSettings, StampedePolicy,
    ValueEncoding,
};

/// How long a value served stale may still be served, beyond its fresh
/// time (stale-while-revalidate).
pub const STALE_FOR: Duration = Duration::from_secs(30);

/// How many rounds a request waits for a lock holder before it loads
/// without the lock.
pub const LOCK_ATTEMPTS: u32 = 3;

/// The engine options a sandbox's settings stand for.
pub fn options(settings: &SandboxSettings) -> Options {
    Options {
        ttl: Duration::from_secs(settings.cache_ttl_secs),
        negative_ttl: settings
            .negative_caching
            .then(|| Duration::from_secs(settings.null_ttl_secs)),
        jitter: settings.ttl_jitter_percent.min(90) as f64 / 100.0,
        stampede: match settings.stampede {
            StampedePolicy::None => Stampede::None,
            StampedePolicy::SingleFlight => Stampede::SingleFlight,
            StampedePolicy::Lock => Stampede::Lock {
                ttl: lock_ttl(settings.db_latency_ms),
                attempts: LOCK_ATTEMPTS,
            },
            StampedePolicy::EarlyRefresh => Stampede::EarlyRefresh {
                beta: settings.early_refresh_beta,
            },
            StampedePolicy::StaleWhileRevalidate => Stampede::StaleWhileRevalidate { stale_for: STALE_FOR },
        },
        race_guard: match settings.race_fix {
            RaceFix::None => RaceGuard::None,
            RaceFix::Lease => RaceGuard::lease(),
            RaceFix::Version => RaceGuard::Version,
        },
        near_ttl: settings
            .near_cache
            .then(|| Duration::from_secs(settings.near_ttl_secs)),
        forget_ttl: settings.forget_ttl,
        encoding: encoding(settings.value_encoding, settings.compress_above_bytes),
        breaker: settings.breaker.then(BreakerPolicy::default),
        fail_safe: (settings.fail_safe_secs > 0).then(|| Duration::from_secs(settings.fail_safe_secs)),
        retry_invalidations: settings.retry_invalidations,
        resend_dropped: settings.resend_dropped,
    }
}

/// The engine options for records of `kind` (products may have a TTL of
/// their own).
pub fn options_for(settings: &SandboxSettings, kind: Kind) -> Options {
    Options {
        ttl: Duration::from_secs(settings.ttl_secs_for(kind)),
        ..options(settings)
    }
}

/// The engine's encoding for a sandbox's choice.
pub fn encoding(choice: ValueEncoding, compress_above_bytes: u64) -> Encoding {
    match choice {
        ValueEncoding::Json => Encoding::Json,
        ValueEncoding::MessagePack => Encoding::MessagePack,
        ValueEncoding::CompressedJson => Encoding::CompressedJson {
            threshold: compress_above_bytes as usize,
        },
    }
}

/// How long the stampede lock lives: long enough for one load of the
/// (simulated) database, short enough that a dead holder does not stall
/// its waiters for long.
pub fn lock_ttl(db_latency_ms: u64) -> Duration {
    Duration::from_millis((3 * db_latency_ms).max(1_000))
}

/// The key space of a sandbox: `cache:tab-1:` (the prefix, the sandbox), so
/// learners never see each other's keys. On a Redis Cluster the sandbox is
/// a hash tag, `cache:{tab-1}:`: every key of a sandbox lives in one slot,
/// so its scripts, its multi-key commands and the scan of its reset run on
/// one master, and sandboxes spread over the masters.
pub fn key_space(prefix: &str, sandbox: &SandboxId, cluster: bool) -> KeySpace {
    if cluster {
        KeySpace::new(format!("{prefix}{{{sandbox}}}:"))
    } else {
        KeySpace::new(format!("{prefix}{sandbox}:"))
    }
}

/// `SCAN cursor MATCH pattern COUNT count` for the keys of `keys`. Send it
/// with [`cache_aside::Redis::query_at`] and [`scan_node`]: on a cluster a
/// plain `SCAN` would go to any one node.
pub fn scan_command(keys: &KeySpace, cursor: u64, count: u64) -> redis::Cmd {
    let mut command = redis::cmd("SCAN");
    command
        .arg(cursor)
        .arg("MATCH")
        .arg(keys.pattern())
        .arg("COUNT")
        .arg(count);
    command
}

/// A name in the sandbox's hash slot (never stored): where commands about
/// the sandbox's node go ([`cache_aside::Redis::query_at`]).
pub fn scan_node(keys: &KeySpace) -> String {
    keys.value("node")
}

/// The logical key of a record: `user:42`, `product:7` (tutorial 6.1).
pub fn record_key(kind: Kind, id: u64) -> String {
    format!("{}:{id}", kind.key_segment())
}

/// The key a writer with the bug of mismatched names deletes: the table's
/// name (`users:42`) where readers cache `user:42`.
pub fn mistyped_key(kind: Kind, id: u64) -> String {
    format!("{}:{id}", kind.path())
}

/// The record a logical key names, if it names one.
pub fn parse_record_key(key: &str) -> Option<(Kind, u64)> {
    let (segment, id) = key.split_once(':')?;
    let kind = Kind::ALL.into_iter().find(|k| k.key_segment() == segment)?;
    Some((kind, id.parse().ok()?))
}

/// What a sandbox's write strategy does after a write of a `kind` record.
pub fn write_policy(settings: &SandboxSettings, kind: Kind) -> WritePolicy {
    match settings.write_strategy.action_for(kind) {
        CacheWrite::Invalidate => WritePolicy::Invalidate,
        CacheWrite::LeaveToTtl => WritePolicy::LeaveToTtl,
        CacheWrite::WriteThrough => WritePolicy::WriteThrough,
    }
}

/// The engine's effect, for the wire; `key` is the Redis key it touched.
pub fn cache_effect(key: String, effect: Effect) -> CacheEffect {
    match effect {
        Effect::Deleted {
            existed,
            lease_revoked,
        } => CacheEffect::Deleted {
            key,
            existed,
            lease_revoked,
        },
        Effect::Marked { version } => CacheEffect::Marked {
            key,
            version,
            deleted: version == DELETED_VERSION,
        },
        Effect::NewerKept => CacheEffect::NewerKept { key },
        Effect::Left(remaining) => CacheEffect::Left {
            key,
            remaining_ms: match remaining {
                Remaining::NotCached => None,
                Remaining::Expires(d) => Some(d.as_millis() as u64),
                // The engine gives every entry a TTL; a key without one was
                // written by hand. It stays until deleted.
                Remaining::NoTtl => Some(u64::MAX),
            },
        },
        Effect::WroteThrough => CacheEffect::WroteThrough { key },
        Effect::WriteThroughRefused => CacheEffect::WriteThroughRefused { key },
        Effect::Failed(error) => CacheEffect::Failed {
            key,
            error: error.to_string(),
        },
        Effect::Pending(error) => CacheEffect::Pending {
            key,
            error: error.to_string(),
        },
    }
}

/// How a read was served, in the wire's words.
pub fn outcome(source: cache_aside::Source) -> Outcome {
    use cache_aside::Source;
    match source {
        Source::Near => Outcome::NearHit,
        Source::Redis => Outcome::Hit,
        Source::Negative => Outcome::NullHit,
        Source::Loaded => Outcome::Miss,
        Source::Stale => Outcome::Stale,
        Source::Fallback => Outcome::Fallback,
        Source::FailSafe => Outcome::FailSafe,
    }
}

/// A record in short: `Ada Lovelace (version 2)`.
pub fn describe_record(record: &Record) -> String {
    format!("{} (version {})", record.title(), record.version())
}

/// What Redis holds for a record, in short, as the divergence view and the
/// race's verdict show it.
pub fn describe_entry(entry: Option<&Envelope<Record>>) -> String {
    match entry {
        None => "nothing".into(),
        Some(entry) => match &entry.content {
            // Entries as they rest in Redis: a user's phone number sealed.
            Content::Value(Record::User(user)) if !user.phone.is_empty() => {
                match crate::sealing::sealed_with(&user.phone) {
                    Some(key) => format!(
                        "{}, phone sealed with key {key}",
                        describe_record(&Record::User(user.clone()))
                    ),
                    None => format!(
                        "{}, phone in the clear",
                        describe_record(&Record::User(user.clone()))
                    ),
                }
            }
            Content::Value(record) => describe_record(record),
            Content::NotFound => "missing".into(),
            Content::Invalidated => format!("invalidated at version {}", entry.version),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_engines_defaults() {
        let options = options(&SandboxSettings::default());
        assert_eq!(options, Options::default());
    }

    #[test]
    fn every_switch_reaches_the_engine() {
        let settings = SandboxSettings {
            negative_caching: false,
            ttl_jitter_percent: 25,
            stampede: StampedePolicy::Lock,
            race_fix: RaceFix::Version,
            near_cache: true,
            db_latency_ms: 500,
            ..SandboxSettings::default()
        };
        let options = options(&settings);
        assert_eq!(options.negative_ttl, None);
        assert_eq!(options.jitter, 0.25);
        assert_eq!(
            options.stampede,
            Stampede::Lock {
                ttl: Duration::from_millis(1_500),
                attempts: LOCK_ATTEMPTS
            }
        );
        assert_eq!(options.race_guard, RaceGuard::Version);
        assert_eq!(options.near_ttl, Some(Duration::from_secs(30)));
        assert_eq!(options.validate(), Ok(()));
    }

    #[test]
    fn record_keys_round_trip() {
        assert_eq!(record_key(Kind::Users, 42), "user:42");
        assert_eq!(parse_record_key("product:7"), Some((Kind::Products, 7)));
        assert_eq!(parse_record_key("order:7"), None);
        assert_eq!(parse_record_key("user:x"), None);
        let keys = key_space("cache:", &SandboxId::parse("tab-1").unwrap(), false);
        assert_eq!(keys.value(&record_key(Kind::Users, 42)), "cache:tab-1:user:42");
    }
}
