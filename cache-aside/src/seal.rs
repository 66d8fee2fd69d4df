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
pub trait Seal<V>: Send + Sync {
    /// The value as it goes to Redis.
    fn seal(&self, value: &V) -> V;

    /// The value as read from Redis, opened; `None` when it cannot be.
    fn open(&self, sealed: V) -> Option<V>;
}
