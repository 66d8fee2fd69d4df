//! Application instances: several copies of the application serving one
//! sandbox, sharing its Redis and its database (tutorial step 3.5).
//!
//! Each instance is one engine handle, with its own near cache and its own
//! subscription to the sandbox's invalidation channel, as a separate process
//! would have. Their commands share the back end's multiplexed connection
//! to Redis (a pool, in effect), so a sandbox costs no command connections
//! of its own. The fleet picks which
//! instance serves a request, follows the sandbox's near-cache setting, and
//! lets the learner cut and restore an instance's subscription. The
//! instances' handle-level observers note every invalidation they receive
//! ([`Receipts`]), which is how a write's trace shows the fan-out.

use crate::sealing::SandboxSeal;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_aside::{CacheAside, KeySpace, Observer, OptionsError, Redis, Step, StepKind};
use shared::{InputError, InstanceState, Record};
use tokio::sync::Notify;

/// The instances' names, in order.
pub const NAMES: [&str; 3] = ["A", "B", "C"];

/// The most entries one near cache holds.
pub const NEAR_CAPACITY: u64 = 1_000;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One application instance.
pub struct Instance {
    pub name: &'static str,
    /// Position in [`NAMES`].
    pub index: usize,
    /// The engine, as this instance runs it.
    pub cache: CacheAside<Record>,
    /// Invalidations it received over Pub/Sub.
    received: Arc<AtomicU64>,
}

impl Instance {
    /// What the UI shows of this instance.
    pub fn state(&self) -> InstanceState {
        InstanceState {
            name: self.name.to_string(),
            subscribed: self.cache.is_listening(),
            near_entries: self.cache.near_len(),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

/// Who received which invalidation message, and when. Kept for the last
/// [`Receipts::KEPT`] messages whether or not anyone asks, because a
/// receipt may arrive before the writer has even been told its message id.
#[derive(Default)]
pub struct Receipts {
    seen: Mutex<Arrivals>,
    arrived: Notify,
}

#[derive(Default)]
struct Arrivals {
    by_message: HashMap<u64, Vec<(usize, Instant)>>,
    order: VecDeque<u64>,
}

impl Receipts {
    /// How many messages' receipts are kept.
    pub const KEPT: usize = 256;

    fn record(&self, message: u64, index: usize) {
        let mut seen = lock(&self.seen);
        if !seen.by_message.contains_key(&message) {
            seen.order.push_back(message);
            if seen.order.len() > Self::KEPT {
                if let Some(oldest) = seen.order.pop_front() {
                    seen.by_message.remove(&oldest);
                }
            }
        }
        seen.by_message
            .entry(message)
            .or_default()
            .push((index, Instant::now()));
        drop(seen);
        self.arrived.notify_waiters();
    }

    /// Waits until `expected` instances have received `message`, or
    /// `timeout`; returns who did and when.
    pub async fn collect(&self, message: u64, expected: usize, timeout: Duration) -> Vec<(usize, Instant)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let count = lock(&self.seen).by_message.get(&message).map_or(0, Vec::len);
            if count >= expected || tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        lock(&self.seen)
            .by_message
            .get(&message)
            .cloned()
            .unwrap_or_default()
    }
}

/// What an instance's engine reports outside any operation: invalidations
/// received, and its subscription going up or down.
struct InstanceEvents {
    index: usize,
    receipts: Arc<Receipts>,
    received: Arc<AtomicU64>,
    /// Tells the sandbox the instances changed (it tells the browsers).
    changed: Arc<dyn Fn() + Send + Sync>,
    /// Tells the sandbox an instance's circuit breaker opened (`true`) or
    /// closed.
    tripped: Tripped,
}

/// Called with an instance's name when its circuit breaker opens (`true`)
/// or closes.
pub type Tripped = Arc<dyn Fn(&'static str, bool) + Send + Sync>;

impl Observer for InstanceEvents {
    fn step(&self, step: &Step<'_>) {
        match step.kind {
            StepKind::InvalidationReceived => {
                self.received.fetch_add(1, Ordering::Relaxed);
                if let Some(message) = step.message {
                    self.receipts.record(message, self.index);
                }
                (self.changed)();
            }
            StepKind::Subscribed | StepKind::Unsubscribed => (self.changed)(),
            StepKind::BreakerOpened => (self.tripped)(NAMES[self.index], true),
            StepKind::BreakerClosed => (self.tripped)(NAMES[self.index], false),
            _ => {}
        }
    }
}

/// The instances of one sandbox.
pub struct Fleet {
    pub instances: Vec<Arc<Instance>>,
    pub receipts: Arc<Receipts>,
    /// Round-robin position.
    next: AtomicUsize,
    /// How it was made, to make it again on another connection.
    spec: Option<Spec>,
}

/// What a fleet is made of, apart from its Redis.
#[derive(Clone)]
pub struct Spec {
    pub keys: KeySpace,
    pub timeout: Duration,
    pub sealer: Arc<SandboxSeal>,
    pub changed: Arc<dyn Fn() + Send + Sync>,
    pub tripped: Tripped,
}

impl Fleet {
    /// Instances A, B and C on `redis`, under the spec's keys, sealing with
    /// its sealer; its `changed` is called whenever an instance's state
    /// changes, `tripped` when a breaker opens or closes.
    ///
    /// # Errors
    /// When the engine refuses its options (never with the fleet's own).
    pub fn new(redis: &Redis, spec: Spec) -> Result<Fleet, OptionsError> {
        let Spec {
            keys,
            timeout,
            sealer,
            changed,
            tripped,
        } = spec.clone();
        let receipts = Arc::new(Receipts::default());
        let instances = NAMES
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let received = Arc::new(AtomicU64::new(0));
                let events = InstanceEvents {
                    index,
                    receipts: receipts.clone(),
                    received: received.clone(),
                    changed: changed.clone(),
                    tripped: tripped.clone(),
                };
                // One multiplexed command connection serves every instance
                // (as a pool would); each instance still has a Pub/Sub
                // subscription of its own, which is what the lessons cut.
                let cache = CacheAside::builder(redis.clone(), keys.clone())
                    // A near cache exists in every instance; the sandbox's
                    // setting decides whether a call uses it.
                    .near_cache(NEAR_CAPACITY, Duration::from_secs(30))
                    .versioned(Record::version)
                    // Phone numbers rest in Redis sealed (unless the
                    // sandbox switched sealing off, to see why).
                    .seal(sealer.clone())
                    .timeout(timeout)
                    .observer(Arc::new(events))
                    .build()?;
                Ok(Arc::new(Instance {
                    name,
                    index,
                    cache,
                    received,
                }))
            })
            .collect::<Result<Vec<_>, OptionsError>>()?;
        Ok(Fleet {
            instances,
            receipts,
            next: AtomicUsize::new(0),
            spec: Some(spec),
        })
    }

    /// New instances like these, on `redis` (the fault proxy's way to
    /// Redis): empty near caches, no breaker history, fresh subscriptions.
    ///
    /// # Errors
    /// As [`Fleet::new`]; a placeholder fleet cannot be remade.
    pub fn rebuilt_on(&self, redis: &Redis) -> Result<Fleet, String> {
        match &self.spec {
            Some(spec) => Fleet::new(redis, spec.clone()).map_err(|e| e.to_string()),
            None => Err("this sandbox has no instances to move".into()),
        }
    }

    /// A fleet of no instances: only ever a placeholder for a sandbox that
    /// failed to be created and is dropped at once.
    pub(crate) fn empty() -> Fleet {
        Fleet {
            instances: Vec::new(),
            receipts: Arc::new(Receipts::default()),
            next: AtomicUsize::new(0),
            spec: None,
        }
    }

    /// The instance called `name`, or the next one in turn.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] for an unknown name.
    pub fn pick(&self, name: Option<&str>) -> Result<Arc<Instance>, InputError> {
        match name {
            Some(name) => self
                .instances
                .iter()
                .find(|i| i.name.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| {
                    InputError::BadSetting(format!(
                        "unknown instance {name:?}: use one of {}",
                        NAMES.join(", ")
                    ))
                }),
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.instances.len();
                Ok(self.instances[i].clone())
            }
        }
    }

    /// Follows the near-cache setting: on, every instance subscribes (a cut
    /// link is restored); off, every near copy is dropped. (The
    /// subscriptions stay: the lock policy hands values over them too.)
    pub fn near_caches(&self, on: bool) {
        for instance in &self.instances {
            if on {
                instance.cache.listen();
            } else {
                instance.cache.near_clear();
            }
        }
    }

    /// Cuts or restores an instance's subscription (from the UI), to watch a
    /// lost invalidation and the recovery.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] for an unknown instance.
    pub fn set_link(&self, name: &str, connected: bool) -> Result<(), InputError> {
        let instance = self.pick(Some(name))?;
        if connected {
            instance.cache.listen();
        } else {
            instance.cache.stop_listening();
        }
        Ok(())
    }

    /// Waits at most `within` in all for every instance's subscription to
    /// be up (with near caches on, the fleet starts them in the
    /// background; otherwise this starts them, as
    /// `CacheAside::wait_listening` does); returns whether they all are.
    pub async fn wait_listening(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        for instance in &self.instances {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !instance.cache.wait_listening(left).await {
                return false;
            }
        }
        true
    }

    /// How many instances are subscribed now.
    pub fn listening(&self) -> usize {
        self.instances.iter().filter(|i| i.cache.is_listening()).count()
    }

    /// The state of every instance.
    pub fn states(&self) -> Vec<InstanceState> {
        self.instances.iter().map(|i| i.state()).collect()
    }
}

impl Fleet {
    /// Ends every subscription and drops every near copy: the sandbox is
    /// going away.
    pub fn close(&self) {
        for instance in &self.instances {
            instance.cache.stop_listening();
            instance.cache.near_clear();
        }
    }
}

impl Drop for Fleet {
    /// The subscriptions end with the sandbox.
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receipts_arriving_before_anyone_asks_are_kept() {
        let receipts = Receipts::default();
        receipts.record(7, 0);
        receipts.record(7, 2);
        let got = receipts.collect(7, 2, Duration::from_secs(1)).await;
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
    }

    #[tokio::test]
    async fn receipts_are_bounded() {
        let receipts = Receipts::default();
        for message in 0..(Receipts::KEPT as u64 + 10) {
            receipts.record(message, 0);
        }
        assert!(
            receipts.collect(0, 1, Duration::ZERO).await.is_empty(),
            "the oldest are forgotten"
        );
        assert_eq!(
            receipts
                .collect(Receipts::KEPT as u64 + 9, 1, Duration::ZERO)
                .await
                .len(),
            1
        );
    }
}
