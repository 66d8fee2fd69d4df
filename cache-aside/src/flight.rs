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
    /// A seat on the flight for `key`, new if none is in the air.
    pub(crate) fn join<'a>(&'a self, key: &'a str) -> Seat<'a, V> {
        let flight = lock(&self.map).entry(key.to_string()).or_default().clone();
        Seat {
            flights: self,
            key,
            flight: Some(flight),
        }
    }

    /// Gives up a seat on `flight`, and forgets the flight once it has
    /// landed, or once nobody is left on it: a call cancelled before its
    /// load ended (a client that went away) must not leave its flight in
    /// the map for good. A flight others are still on stays for them (one
    /// of them loads, and lands it). Never removes a newer flight of the
    /// same key.
    fn leave(&self, key: &str, flight: Arc<Flight<V>>) {
        let mut map = lock(&self.map);
        let landed = flight.initialized();
        let left = Arc::as_ptr(&flight);
        // Dropped under the map's lock, where nobody can join or leave:
        // if the map's `Arc` is the last, nobody is aboard.
        drop(flight);
        let forget = map
            .get(key)
            .is_some_and(|f| Arc::as_ptr(f) == left && (landed || Arc::strong_count(f) == 1));
        if forget {
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

/// A call's place on a flight. Leaving it, however the call ends
/// (answered, failed, or dropped midway), lands the flight if it is done
/// or was this call's alone.
pub(crate) struct Seat<'a, V> {
    flights: &'a Flights<V>,
    key: &'a str,
    /// Always there until the seat is dropped.
    flight: Option<Arc<Flight<V>>>,
}

impl<V> std::ops::Deref for Seat<'_, V> {
    type Target = Flight<V>;

    fn deref(&self) -> &Flight<V> {
        self.flight
            .as_ref()
            .expect("a seat holds its flight until dropped")
    }
}

impl<V> Drop for Seat<'_, V> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            self.flights.leave(self.key, flight);
        }
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
        assert!(std::ptr::eq(&*first, &*second), "one flight");
        assert_eq!(flights.len(), 1);
        // The first passenger leaves before the load ends: the second is
        // still on, so the flight stays.
        drop(first);
        assert_eq!(flights.len(), 1);
        second.set(Some(Some(7))).unwrap();
        let landed = second.flight.clone().unwrap();
        drop(second);
        assert_eq!(flights.len(), 0);
        // A later miss starts a new flight.
        let third = flights.join("k");
        assert!(!std::ptr::eq(&*third, &*landed));
        // A forgotten flight never removes its successor.
        flights.forget("k");
        let fourth = flights.join("k");
        drop(third);
        assert_eq!(flights.len(), 1);
        drop(fourth);
    }

    #[tokio::test]
    async fn a_leader_cancelled_midway_leaves_no_flight_behind() {
        let flights = Flights::<u8>::default();
        let seat = flights.join("k");
        // The load never ends; the call is dropped (its client went away).
        let load = seat.get_or_init(std::future::pending::<Outcome<u8>>);
        assert!(tokio::time::timeout(std::time::Duration::from_millis(1), load)
            .await
            .is_err());
        drop(seat);
        assert_eq!(flights.len(), 0, "the cancelled flight is forgotten");
    }
}
