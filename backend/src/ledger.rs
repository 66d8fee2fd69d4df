//! What a sandbox may hold in Redis, and what it may be holding now.
//!
//! Every sandbox shares the back end's Redis, so one sandbox must not be
//! able to fill it (and push out everyone else's keys: the leases and
//! version markers other sandboxes' race fixes rely on included). Ids run
//! to a billion and missing records are cached too, so without a bound a
//! loop of reads of made-up ids would grow the cache without end.
//!
//! The ledger is that bound. Before an operation touches a record, the
//! record is admitted: counted, with the latest moment its value could
//! still be in Redis (the longest TTL the operation's options can set). A
//! sandbox holds at most [`KeyLedger::most`] records at once; past that
//! it is told so, until it resets or some of its TTLs run out. Each value is
//! bounded too (names are capped), so keys × the largest value bounds a
//! sandbox's memory, and the cap on sandboxes bounds everyone's.
//!
//! The ledger also lists the keys a sandbox may hold, so cleaning up and
//! the divergence check visit exactly those, instead of walking the whole
//! shared key space with `SCAN`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cache_aside::Options;
use shared::{InputError, Kind};

/// Records a sandbox may hold in Redis, each with when its value is gone
/// for sure (milliseconds since the Unix epoch).
pub struct KeyLedger {
    most: usize,
    held: Mutex<HashMap<(Kind, u64), u64>>,
}

impl KeyLedger {
    /// A ledger of at most `most` records.
    pub fn new(most: usize) -> KeyLedger {
        KeyLedger {
            most,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The most records the sandbox may hold.
    pub fn most(&self) -> usize {
        self.most
    }

    /// Admits an operation on `records` whose values live at most `hold`
    /// from `now_ms`: all of them, or none.
    ///
    /// # Errors
    /// [`InputError::OverLimit`] when they would take the sandbox over
    /// its limit, even after forgetting the records whose values are gone.
    pub fn admit(&self, records: &[(Kind, u64)], hold: Duration, now_ms: u64) -> Result<(), InputError> {
        let until = now_ms.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let new = |held: &HashMap<(Kind, u64), u64>| records.iter().filter(|r| !held.contains_key(r)).count();
        if held.len() + new(&held) > self.most {
            held.retain(|_, gone_at| *gone_at > now_ms);
            if held.len() + new(&held) > self.most {
                return Err(InputError::OverLimit(format!(
                    "this sandbox holds as many cached records as it may ({}): reset it, or wait for their TTLs to run out",
                    self.most
                )));
            }
        }
        for record in records {
            let gone_at = held.entry(*record).or_insert(until);
            *gone_at = (*gone_at).max(until);
        }
        Ok(())
    }

    /// Holds `records` (admitted already) at least `hold` from `now_ms`:
    /// an operation ending after its values were stored late.
    pub fn extend(&self, records: &[(Kind, u64)], hold: Duration, now_ms: u64) {
        let until = now_ms.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            let gone_at = held.entry(*record).or_insert(until);
            *gone_at = (*gone_at).max(until);
        }
    }

    /// The records whose values may still be in Redis at `now_ms`, sorted.
    pub fn held(&self, now_ms: u64) -> Vec<(Kind, u64)> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut records: Vec<(Kind, u64)> = held
            .iter()
            .filter(|(_, gone_at)| **gone_at > now_ms)
            .map(|(record, _)| *record)
            .collect();
        records.sort();
        records
    }

    /// Forgets every record (their keys were just deleted).
    pub fn clear(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The longest a value written with `options` can stay in Redis: the
/// longer of the TTLs, stretched by the most jitter can add, plus the
/// stale window, plus a margin for the clock.
pub fn longest_hold(options: &Options) -> Duration {
    let longest = options.ttl.max(options.negative_ttl.unwrap_or(Duration::ZERO));
    let jittered = longest.mul_f64(1.0 + options.jitter.clamp(0.0, 1.0));
    options.redis_ttl(jittered) + Duration::from_secs(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_sandbox_may_hold_only_so_many_records() {
        let ledger = KeyLedger::new(3);
        let users = |ids: &[u64]| ids.iter().map(|id| (Kind::Users, *id)).collect::<Vec<_>>();
        ledger.admit(&users(&[1, 2]), MINUTE, 0).unwrap();
        ledger.admit(&users(&[1, 2, 3]), MINUTE, 0).unwrap();
        // The same records again cost nothing more.
        ledger.admit(&users(&[3]), MINUTE, 1_000).unwrap();
        let error = ledger.admit(&users(&[4]), MINUTE, 1_000).unwrap_err();
        assert!(
            error.to_string().contains("as many cached records as it may (3)"),
            "{error}"
        );
        // All or nothing: a herd of two new keys is refused whole.
        assert!(ledger.admit(&users(&[4, 5]), MINUTE, 1_000).is_err());
        assert_eq!(ledger.held(1_000), users(&[1, 2, 3]));
    }

    #[test]
    fn records_whose_values_are_gone_make_room() {
        let ledger = KeyLedger::new(2);
        ledger
            .admit(&[(Kind::Users, 1)], Duration::from_secs(1), 0)
            .unwrap();
        ledger.admit(&[(Kind::Users, 2)], MINUTE, 0).unwrap();
        assert!(ledger.admit(&[(Kind::Users, 3)], MINUTE, 500).is_err());
        // User 1's value lived a second: after it, there is room.
        ledger.admit(&[(Kind::Users, 3)], MINUTE, 1_001).unwrap();
        assert_eq!(ledger.held(1_001), [(Kind::Users, 2), (Kind::Users, 3)]);
        // Touching a record again keeps it held for the longer of the two.
        ledger
            .admit(&[(Kind::Users, 2)], Duration::from_secs(1), 2_000)
            .unwrap();
        assert_eq!(ledger.held(59_999).len(), 2);
        ledger.clear();
        assert!(ledger.held(0).is_empty());
    }

    #[test]
    fn an_operation_that_ends_late_keeps_its_records_held_from_then() {
        let ledger = KeyLedger::new(10);
        ledger
            .admit(&[(Kind::Users, 1)], Duration::from_secs(1), 0)
            .unwrap();
        // The value was stored after a long pause; the operation ends at 5 s.
        ledger.extend(&[(Kind::Users, 1)], Duration::from_secs(1), 5_000);
        assert_eq!(ledger.held(5_500), [(Kind::Users, 1)]);
        assert!(ledger.held(6_001).is_empty());
    }

    #[test]
    fn the_hold_covers_every_ttl_the_options_can_set() {
        let options = Options {
            ttl: Duration::from_secs(60),
            negative_ttl: Some(Duration::from_secs(300)),
            jitter: 0.5,
            ..Options::default()
        };
        assert!(longest_hold(&options) >= Duration::from_secs(450));
        let swr = Options {
            stampede: cache_aside::Stampede::StaleWhileRevalidate {
                stale_for: Duration::from_secs(30),
            },
            negative_ttl: None,
            ..Options::default()
        };
        assert!(longest_hold(&swr) >= Duration::from_secs(90));
    }
}
