//! Sealing: the value as it rests in Redis may differ from the value the
//! application uses. Whoever can read Redis (an operator, a backup, a
//! `MONITOR`) reads every cached copy, so a field the application must
//! protect (a phone number, an address) is sealed (encrypted) on its way
//! into Redis and opened on its way out (tutorial section 6.6). The engine
//! only calls the [`Seal`]; the cipher and its keys are the application's.
//!
//! Opening can fail: the entry was sealed with a key since retired, or it
//! was tampered with. Such an entry is never served: it counts as a miss,
//! and the fresh value loaded in its place is sealed with the current key.
//! That is also how keys rotate: add the new key first (so entries sealed
//! with it open everywhere), then seal with it, then retire the old one.

/// Seals values on their way into Redis and opens them on their way out.
/// Values in the process (the near cache, answers, single-flight
/// followers) are always open.
///
/// Both get the Redis key the entry rests at: bind the sealed value to it
/// (as a cipher's associated data), so an entry copied to another key, of
/// another record or another tenant's key space, does not open there.
pub trait Seal<V>: Send + Sync {
    /// The value as it goes to `key`; `None` when it cannot be sealed (then
    /// it is not cached at all: never cached in the clear).
    fn seal(&self, key: &str, value: &V) -> Option<V>;

    /// The value read from `key`, opened; `None` when it cannot be.
    fn open(&self, key: &str, sealed: V) -> Option<V>;
}
