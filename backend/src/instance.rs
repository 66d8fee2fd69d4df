//! Application instances: several copies of the application serving one
//! sandbox, sharing its Redis and its database (tutorial step 3.5).
//!
//! Each instance has its own Redis connection and, when the sandbox turns
//! near caches on, a small in-process cache in front of Redis (moka,
//! bounded, with a TTL). A near cache is fast but private: when one instance
//! writes, the others still hold the old copy. So writers publish the key on
//! a Redis Pub/Sub channel, and every instance's subscriber drops it.
//!
//! Pub/Sub delivers at most once: an instance whose subscription is down
//! misses messages for good. Two things bound the damage: near-cache entries
//! expire (`near_ttl_secs`), and on every (re)subscription the instance
//! clears its whole near cache, because it cannot know what it missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shared::{InputError, InstanceState, SandboxSettings, ServerMessage};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::feed::TraceFeed;
use crate::playground::to_json;

/// The instances' names, in order.
pub const NAMES: [&str; 3] = ["A", "B", "C"];

/// The most entries one near cache holds.
pub const NEAR_CAPACITY: u64 = 1_000;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One application instance.
pub struct Instance {
    pub name: String,
    /// Position in [`NAMES`].
    pub index: usize,
    /// This instance's own connection to Redis.
    pub cache: Cache,
    /// The near cache. Rebuilt when its TTL setting changes; a std mutex
    /// held only to clone the handle (moka is itself concurrent).
    near: Mutex<moka::sync::Cache<String, String>>,
    /// The running Pub/Sub subscriber, if any.
    listener: Mutex<Option<JoinHandle<()>>>,
    subscribed: AtomicBool,
    received: AtomicU64,
    /// Loads in flight in this instance, by key (the single-flight defence).
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

/// One load in flight: the first request of an instance runs it, the
/// others wait for its result.
pub type Flight = tokio::sync::OnceCell<Result<Option<shared::Record>, String>>;

fn near_cache(ttl_secs: u64) -> moka::sync::Cache<String, String> {
    moka::sync::Cache::builder()
        .max_capacity(NEAR_CAPACITY)
        .time_to_live(Duration::from_secs(ttl_secs.max(1)))
        .build()
}

impl Instance {
    fn near(&self) -> moka::sync::Cache<String, String> {
        lock(&self.near).clone()
    }

    /// The near copy of `key`, if any.
    pub fn near_get(&self, key: &str) -> Option<String> {
        self.near().get(key)
    }

    /// Keeps a near copy of `key`.
    pub fn near_put(&self, key: &str, value: &str) {
        self.near().insert(key.to_string(), value.to_string());
    }

    /// Drops the near copy of `key`.
    pub fn near_drop(&self, key: &str) {
        self.near().invalidate(key);
    }

    /// Drops every near copy.
    pub fn near_clear(&self) {
        self.near().invalidate_all();
    }

    /// The load in flight for `key` in this instance, new if none.
    pub fn flight(&self, key: &str) -> Arc<Flight> {
        lock(&self.flights).entry(key.to_string()).or_default().clone()
    }

    /// Forgets a finished load, so the next miss loads again.
    pub fn land(&self, key: &str, flight: &Arc<Flight>) {
        let mut flights = lock(&self.flights);
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
    }

    /// Whether its Pub/Sub subscription is up.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// What the UI shows of this instance.
    pub fn state(&self) -> InstanceState {
        let near = self.near();
        near.run_pending_tasks();
        InstanceState {
            name: self.name.clone(),
            subscribed: self.subscribed.load(Ordering::Relaxed),
            near_entries: near.entry_count(),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

/// Who received which invalidation, and when.
#[derive(Default)]
pub struct Receipts {
    /// By message token: (instance index, when it arrived).
    seen: Mutex<HashMap<String, Vec<(usize, Instant)>>>,
    arrived: Notify,
}

impl Receipts {
    /// Starts collecting receipts for message `token`; receipts for tokens
    /// nobody expects are ignored, so the map never grows on its own.
    pub fn expect(&self, token: &str) {
        lock(&self.seen).insert(token.to_string(), Vec::new());
    }

    /// Stops collecting receipts for `token`.
    pub fn forget(&self, token: &str) {
        lock(&self.seen).remove(token);
    }

    fn record(&self, token: &str, index: usize) {
        if let Some(arrivals) = lock(&self.seen).get_mut(token) {
            arrivals.push((index, Instant::now()));
            self.arrived.notify_waiters();
        }
    }

    /// Waits until `expected` instances have received message `token`, or
    /// `timeout`; returns who did and when.
    pub async fn collect(&self, token: &str, expected: usize, timeout: Duration) -> Vec<(usize, Instant)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let count = lock(&self.seen).get(token).map_or(0, Vec::len);
            if count >= expected {
                break;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        lock(&self.seen).remove(token).unwrap_or_default()
    }
}

/// The instances of one sandbox and the channel that connects them.
pub struct Fleet {
    pub instances: Vec<Arc<Instance>>,
    /// The sandbox's invalidation channel.
    pub channel: String,
    pub receipts: Arc<Receipts>,
    /// For new Pub/Sub connections.
    client: redis::Client,
    /// Where instance changes are announced.
    feed: Arc<TraceFeed>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Whether near caches (and so subscriptions) are on.
    enabled: AtomicBool,
}

impl Fleet {
    /// Instances A, B and C, each with its own connection to `cache`'s
    /// Redis; subscriptions start when `settings` turn near caches on.
    ///
    /// # Errors
    /// When the Redis URL is not valid.
    pub fn new(
        cache: &Cache,
        channel: String,
        feed: Arc<TraceFeed>,
        settings: &SandboxSettings,
    ) -> Result<Fleet, crate::cache::CacheError> {
        let instances = NAMES
            .iter()
            .enumerate()
            .map(|(index, name)| {
                Ok(Arc::new(Instance {
                    name: (*name).to_string(),
                    index,
                    cache: cache.with_new_connection()?,
                    near: Mutex::new(near_cache(settings.near_ttl_secs)),
                    listener: Mutex::new(None),
                    subscribed: AtomicBool::new(false),
                    received: AtomicU64::new(0),
                    flights: Mutex::new(HashMap::new()),
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fleet = Fleet {
            instances,
            channel,
            receipts: Arc::new(Receipts::default()),
            client: cache.client(),
            feed,
            next: AtomicUsize::new(0),
            enabled: AtomicBool::new(false),
        };
        fleet.apply(settings, None);
        Ok(fleet)
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

    /// Follows a settings change: starts or stops the subscriptions with
    /// near caches, and rebuilds near caches whose TTL changed.
    pub fn apply(&self, settings: &SandboxSettings, previous: Option<&SandboxSettings>) {
        if previous.is_some_and(|p| p.near_ttl_secs != settings.near_ttl_secs) {
            for instance in &self.instances {
                *lock(&instance.near) = near_cache(settings.near_ttl_secs);
            }
        }
        let was = self.enabled.swap(settings.near_cache, Ordering::Relaxed);
        match (was, settings.near_cache) {
            (false, true) => {
                for instance in &self.instances {
                    self.subscribe(instance);
                }
            }
            (true, false) => {
                for instance in &self.instances {
                    self.unsubscribe(instance);
                    instance.near_clear();
                }
            }
            _ => {}
        }
        self.announce();
    }

    /// Whether near caches are on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Cuts or restores an instance's subscription (from the UI).
    ///
    /// # Errors
    /// [`InputError::BadSetting`] for an unknown instance, or when near
    /// caches are off (there is nothing to subscribe for).
    pub fn set_link(&self, name: &str, connected: bool) -> Result<(), InputError> {
        let instance = self.pick(Some(name))?;
        if !self.enabled() {
            return Err(InputError::BadSetting(
                "turn near caches on first: without them there is nothing to invalidate".into(),
            ));
        }
        if connected {
            self.subscribe(&instance);
        } else {
            self.unsubscribe(&instance);
        }
        self.announce();
        Ok(())
    }

    /// The state of every instance.
    pub fn states(&self) -> Vec<InstanceState> {
        self.instances.iter().map(|i| i.state()).collect()
    }

    /// Tells the sandbox's watchers how the instances stand.
    pub fn announce(&self) {
        let message = ServerMessage::Instances {
            instances: self.states(),
        };
        self.feed.publish(Arc::from(to_json(&message)));
    }

    fn subscribe(&self, instance: &Arc<Instance>) {
        let mut listener = lock(&instance.listener);
        if listener.as_ref().is_some_and(|l| !l.is_finished()) {
            return;
        }
        let task = listen(
            instance.clone(),
            self.client.clone(),
            self.channel.clone(),
            self.receipts.clone(),
            self.feed.clone(),
            self.instances.clone(),
        );
        *listener = Some(tokio::spawn(task));
    }

    fn unsubscribe(&self, instance: &Instance) {
        if let Some(listener) = lock(&instance.listener).take() {
            // Dropping the task drops its Pub/Sub connection: messages
            // published from now on are lost to this instance.
            listener.abort();
        }
        instance.subscribed.store(false, Ordering::Relaxed);
    }
}

impl Drop for Fleet {
    /// Subscriber tasks would outlive a dropped fleet: stop them.
    fn drop(&mut self) {
        for instance in &self.instances {
            if let Some(listener) = lock(&instance.listener).take() {
                listener.abort();
            }
        }
    }
}

/// How long connecting and subscribing to Pub/Sub may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One instance's subscriber: (re)subscribes, clears the near cache on
/// every subscription (recovery), then drops each key it is told about.
async fn listen(
    instance: Arc<Instance>,
    client: redis::Client,
    channel: String,
    receipts: Arc<Receipts>,
    feed: Arc<TraceFeed>,
    all: Vec<Arc<Instance>>,
) {
    let announce = |all: &[Arc<Instance>]| {
        let message = ServerMessage::Instances {
            instances: all.iter().map(|i| i.state()).collect(),
        };
        feed.publish(Arc::from(to_json(&message)));
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        })
        .await;
        if let Ok(Some(mut pubsub)) = connected {
            // Recovery: whatever was published while we were away is
            // lost, so no near copy can be trusted.
            instance.near_clear();
            instance.subscribed.store(true, Ordering::Relaxed);
            announce(&all);
            backoff = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                if let Some((token, key)) = payload.split_once(' ') {
                    instance.near_drop(key);
                    instance.received.fetch_add(1, Ordering::Relaxed);
                    receipts.record(token, instance.index);
                }
            }
        }
        // The connection dropped (or never came up): try again.
        instance.subscribed.store(false, Ordering::Relaxed);
        announce(&all);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
