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

use crate::config::RECORD_BYTES;

/// Records a sandbox may hold in Redis, each with when its value is gone
/// for sure (milliseconds since the Unix epoch) and its weight: how many
/// records' worth of memory it may take (1, or more for a padded value).
pub struct KeyLedger {
    most: usize,
    held: Mutex<Records>,
}

/// The records held, and their weights summed as they change: admitting
/// is on every read's path, and must not add up the whole ledger.
#[derive(Default)]
struct Records {
    by_record: HashMap<(Kind, u64), Held>,
    weight: u64,
}

#[derive(Clone, Copy)]
struct Held {
    gone_at: u64,
    weight: u64,
}

impl Records {
    /// What holding `records` at `weight` too would weigh in all: a record
    /// already held weighs the heavier of its two weights.
    fn weight_with(&self, records: &[(Kind, u64)], weight: u64) -> u64 {
        let extra: u64 = records
            .iter()
            .map(|r| weight.saturating_sub(self.by_record.get(r).map_or(0, |h| h.weight)))
            .sum();
        self.weight + extra
    }

    /// Holds `record` until at least `until`, at `weight` at least.
    fn hold_until(&mut self, record: (Kind, u64), until: u64, weight: u64) {
        let held = self.by_record.entry(record).or_insert(Held {
            gone_at: until,
            weight: 0,
        });
        held.gone_at = held.gone_at.max(until);
        if weight > held.weight {
            self.weight += weight - held.weight;
            held.weight = weight;
        }
    }

    /// Forgets the records whose values are gone at `now_ms`.
    fn forget_gone(&mut self, now_ms: u64) {
        self.by_record.retain(|_, h| h.gone_at > now_ms);
        self.weight = self.by_record.values().map(|h| h.weight).sum();
    }
}

impl KeyLedger {
    /// A ledger of at most `most` records (of weight 1).
    pub fn new(most: usize) -> KeyLedger {
        KeyLedger {
            most,
            held: Mutex::new(Records::default()),
        }
    }

    /// The most records the sandbox may hold.
    pub fn most(&self) -> usize {
        self.most
    }

    /// Admits an operation on `records`, each of `weight` (see
    /// [`weight_of_padding`]), whose values live at most `hold` from
    /// `now_ms`: all of them, or none.
    ///
    /// # Errors
    /// [`InputError::OverLimit`] when they would take the sandbox over
    /// its limit, even after forgetting the records whose values are gone.
    pub fn admit(
        &self,
        records: &[(Kind, u64)],
        hold: Duration,
        now_ms: u64,
        weight: u64,
    ) -> Result<(), InputError> {
        let until = now_ms.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.weight_with(records, weight) > self.most as u64 {
            held.forget_gone(now_ms);
            if held.weight_with(records, weight) > self.most as u64 {
                let padded = if weight > 1 {
                    format!(", a record of this size counting as {weight}")
                } else {
                    String::new()
                };
                return Err(InputError::OverLimit(format!(
                    "this sandbox holds as many cached records as it may ({}{padded}): reset it, or wait for their TTLs to run out",
                    self.most
                )));
            }
        }
        for record in records {
            held.hold_until(*record, until, weight);
        }
        Ok(())
    }

    /// Holds `records` (admitted already, with `weight`) at least `hold`
    /// from `now_ms`: an operation ending after its values were stored
    /// late.
    pub fn extend(&self, records: &[(Kind, u64)], hold: Duration, now_ms: u64, weight: u64) {
        let until = now_ms.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            held.hold_until(*record, until, weight);
        }
    }

    /// The records whose values may still be in Redis at `now_ms`, sorted.
    pub fn held(&self, now_ms: u64) -> Vec<(Kind, u64)> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut records: Vec<(Kind, u64)> = held
            .by_record
            .iter()
            .filter(|(_, h)| h.gone_at > now_ms)
            .map(|(record, _)| *record)
            .collect();
        records.sort();
        records
    }

    /// Forgets every record (their keys were just deleted).
    pub fn clear(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Records::default();
    }
}

/// How many records' worth of Redis memory a record padded by `padding`
/// bytes may take: each [`RECORD_BYTES`] of filler counts as one record
/// more, so the ledger bounds a sandbox's bytes, not only its keys. A
/// quarter more on top: Redis's allocator rounds a large value up to its
/// size class, by up to a quarter (128 KiB of filler takes 160 KiB).
pub fn weight_of_padding(padding: u64) -> u64 {
    1 + (padding + padding / 4).div_ceil(RECORD_BYTES)
}

/// For the ledger, a value stored with no TTL is never gone by itself: it
/// stays counted (and named for deletion) until the sandbox is reset or
/// reaped.
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The longest a value written with `options` can stay in Redis: the
/// longer of the TTLs, stretched by the most jitter can add, plus the
/// stale window, plus a margin for the clock.
pub fn longest_hold(options: &Options) -> Duration {
    if options.forget_ttl {
        return NEVER;
    }
    let longest = options.ttl.max(options.negative_ttl.unwrap_or(Duration::ZERO));
    let jittered = longest.mul_f64(1.0 + options.jitter.clamp(0.0, 1.0));
    // A near copy lives in the instances' memory for its own TTL: counted
    // as long, so the ledger bounds the near caches too.
    let near = options.near_ttl.unwrap_or(Duration::ZERO);
    options.redis_ttl(jittered).max(near) + Duration::from_secs(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_sandbox_may_hold_only_so_many_records() {
        let ledger = KeyLedger::new(3);
        let users = |ids: &[u64]| ids.iter().map(|id| (Kind::Users, *id)).collect::<Vec<_>>();
        ledger.admit(&users(&[1, 2]), MINUTE, 0, 1).unwrap();
        ledger.admit(&users(&[1, 2, 3]), MINUTE, 0, 1).unwrap();
        // The same records again cost nothing more.
        ledger.admit(&users(&[3]), MINUTE, 1_000, 1).unwrap();
        let error = ledger.admit(&users(&[4]), MINUTE, 1_000, 1).unwrap_err();
        assert!(
            error.to_string().contains("as many cached records as it may (3)"),
            "{error}"
        );
        // All or nothing: a herd of two new keys is refused whole.
        assert!(ledger.admit(&users(&[4, 5]), MINUTE, 1_000, 1).is_err());
        assert_eq!(ledger.held(1_000), users(&[1, 2, 3]));
    }

    #[test]
    fn records_whose_values_are_gone_make_room() {
        let ledger = KeyLedger::new(2);
        ledger
            .admit(&[(Kind::Users, 1)], Duration::from_secs(1), 0, 1)
            .unwrap();
        ledger.admit(&[(Kind::Users, 2)], MINUTE, 0, 1).unwrap();
        assert!(ledger.admit(&[(Kind::Users, 3)], MINUTE, 500, 1).is_err());
        // User 1's value lived a second: after it, there is room.
        ledger.admit(&[(Kind::Users, 3)], MINUTE, 1_001, 1).unwrap();
        assert_eq!(ledger.held(1_001), [(Kind::Users, 2), (Kind::Users, 3)]);
        // Touching a record again keeps it held for the longer of the two.
        ledger
            .admit(&[(Kind::Users, 2)], Duration::from_secs(1), 2_000, 1)
            .unwrap();
        assert_eq!(ledger.held(59_999).len(), 2);
        ledger.clear();
        assert!(ledger.held(0).is_empty());
    }

    #[test]
    fn an_operation_that_ends_late_keeps_its_records_held_from_then() {
        let ledger = KeyLedger::new(10);
        ledger
            .admit(&[(Kind::Users, 1)], Duration::from_secs(1), 0, 1)
            .unwrap();
        // The value was stored after a long pause; the operation ends at 5 s.
        ledger.extend(&[(Kind::Users, 1)], Duration::from_secs(1), 5_000, 1);
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

    #[test]
    fn a_padded_record_weighs_as_many_records_as_its_bytes() {
        assert_eq!(weight_of_padding(0), 1);
        assert_eq!(weight_of_padding(1), 2);
        assert_eq!(weight_of_padding(RECORD_BYTES * 64), 81);
        let ledger = KeyLedger::new(10);
        let heavy = weight_of_padding(RECORD_BYTES * 3);
        assert_eq!(heavy, 5);
        ledger.admit(&[(Kind::Users, 1)], MINUTE, 0, heavy).unwrap();
        ledger.admit(&[(Kind::Users, 2)], MINUTE, 0, 1).unwrap();
        // 5 + 1 held; another record of 5 would make 11.
        let error = ledger.admit(&[(Kind::Users, 3)], MINUTE, 0, heavy).unwrap_err();
        assert!(error.to_string().contains("counting as 5"), "{error}");
        // The same record padded again costs nothing more; user 2 padded
        // costs the difference (4), which fits.
        ledger.admit(&[(Kind::Users, 1)], MINUTE, 0, heavy).unwrap();
        ledger.admit(&[(Kind::Users, 2)], MINUTE, 0, heavy).unwrap();
        assert!(ledger.admit(&[(Kind::Users, 3)], MINUTE, 0, 1).is_err());
    }

    #[test]
    fn a_value_with_no_ttl_stays_counted_and_a_near_copy_as_long_as_it_lives() {
        let forgotten = Options {
            forget_ttl: true,
            ..Options::default()
        };
        assert!(longest_hold(&forgotten) >= Duration::from_secs(365 * 86_400));
        let ledger = KeyLedger::new(1);
        ledger
            .admit(&[(Kind::Users, 1)], longest_hold(&forgotten), 0, 1)
            .unwrap();
        // A year on, its key is still there (nothing expires it): still held.
        let year_ms = 365 * 86_400 * 1_000;
        assert!(ledger.admit(&[(Kind::Users, 2)], MINUTE, year_ms, 1).is_err());
        assert_eq!(ledger.held(year_ms), [(Kind::Users, 1)]);

        let near = Options {
            ttl: Duration::from_secs(10),
            near_ttl: Some(Duration::from_secs(600)),
            ..Options::default()
        };
        assert!(longest_hold(&near) >= Duration::from_secs(600));
    }
}
