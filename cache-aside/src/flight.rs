//! Loads in flight, by key: the single-flight defence's bookkeeping.
//!
//! The first miss of a key in this process starts a flight and loads; the
//! misses that arrive while it is in the air join it and share its result.
//! When it lands it is forgotten, so the next miss (after the TTL) loads
//! again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a flight brings back: the answer, or `None` if its load failed
/// (then each passenger loads for itself: an error cannot be shared).
pub(crate) type Outcome<V> = Option<Option<V>>;

/// One load in flight.
pub(crate) type Flight<V> = tokio::sync::OnceCell<Outcome<V>>;

/// The flights of one cache handle.
pub(crate) struct Flights<V> {
    /// A std mutex: held only to look up, add or remove a flight.
    map: Mutex<HashMap<String, Arc<Flight<V>>>>,
}

impl<V> Default for Flights<V> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> Flights<V> {
    /// The flight for `key`, new if none is in the air.
    pub(crate) fn join(&self, key: &str) -> Arc<Flight<V>> {
        lock(&self.map).entry(key.to_string()).or_default().clone()
    }

    /// Forgets a flight that has landed (unless a newer one replaced it).
    pub(crate) fn land(&self, key: &str, flight: &Arc<Flight<V>>) {
        let mut map = lock(&self.map);
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
        }
    }

    /// Forgets the flight of `key`, if any: calls already on it still get
    /// its outcome, later calls start a new one.
    pub(crate) fn forget(&self, key: &str) {
        lock(&self.map).remove(key);
    }

    /// How many flights are in the air.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joiners_share_one_flight_until_it_lands() {
        let flights = Flights::<u8>::default();
        let first = flights.join("k");
        let second = flights.join("k");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(flights.len(), 1);
        flights.land("k", &first);
        assert_eq!(flights.len(), 0);
        // A later miss starts a new flight.
        assert!(!Arc::ptr_eq(&flights.join("k"), &first));
        // A landed flight never removes its successor.
        flights.land("k", &first);
        assert_eq!(flights.len(), 1);
    }
}
