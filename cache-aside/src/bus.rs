//! The bus: one Redis Pub/Sub subscription per cache handle, carrying two
//! kinds of message (tutorial section 3.5 and 5.6).
//!
//! - **Invalidations** (`{prefix}invalidation`, `"<id> <key>"`): a writer
//!   tells every process to drop its near copy of a key.
//! - **Fills** (`{prefix}filled`, `"<key>\n<envelope>"`): a lock holder
//!   hands the value it stored to the requests waiting for it, so they need
//!   not poll Redis.
//!
//! Pub/Sub delivers at most once: a process whose subscription is down
//! misses messages for good. Two things bound the damage: near copies
//! expire by themselves, and on every (re)subscription the near cache is
//! cleared, because nobody can know what was missed. The subscription
//! reconnects by itself, with backoff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::near::NearCache;
use crate::observe::{Observer, Reply, Status, Step, StepKind};

/// How long connecting and subscribing may take before trying again.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first and the longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A value a lock holder stored, as announced on the fills channel.
#[derive(Debug)]
pub(crate) struct Fill {
    /// The logical key.
    pub key: String,
    /// The envelope as stored; empty when the holder could not store it
    /// (a race guard refused), so waiters must look again.
    pub envelope: Vec<u8>,
}

/// What the subscriber task works with; shared with it, so the task never
/// keeps the handle alive.
struct Shared<V> {
    client: redis::Client,
    /// A cluster's nodes: then the subscription is sharded (`SSUBSCRIBE`).
    cluster_nodes: Vec<String>,
    invalidations: String,
    fills: String,
    near: Option<NearCache<V>>,
    observer: Arc<dyn Observer>,
    listening: watch::Sender<bool>,
    filled: broadcast::Sender<Arc<Fill>>,
}

/// The subscription of one cache handle.
pub(crate) struct Bus<V> {
    shared: Arc<Shared<V>>,
    /// The running subscriber. A std mutex: held only to start or stop it.
    task: Mutex<Option<JoinHandle<()>>>,
    /// Set by [`Bus::stop`]: the application wants no subscription, so the
    /// lock policy must not start one behind its back.
    stopped: AtomicBool,
}

impl<V: Clone + Send + Sync + 'static> Bus<V> {
    pub(crate) fn new(
        redis: &crate::Redis,
        invalidations: String,
        fills: String,
        near: Option<NearCache<V>>,
        observer: Arc<dyn Observer>,
    ) -> Bus<V> {
        Bus {
            shared: Arc::new(Shared {
                client: redis.client().clone(),
                cluster_nodes: redis.cluster_nodes().to_vec(),
                invalidations,
                fills,
                near,
                observer,
                listening: watch::channel(false).0,
                // Waiters that fall this far behind look in Redis instead.
                filled: broadcast::channel(256).0,
            }),
            task: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    /// Starts the subscriber (needs a Tokio runtime), unless it runs.
    pub(crate) fn listen(&self) {
        self.stopped.store(false, Ordering::Relaxed);
        self.start();
    }

    /// Stops the subscriber: messages published from now on are lost to
    /// this process until [`Bus::listen`].
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        let was = self.shared.listening.send_replace(false);
        if was {
            self.shared.announce(StepKind::Unsubscribed, Duration::ZERO);
        }
    }

    /// Whether the subscription is up.
    pub(crate) fn is_listening(&self) -> bool {
        *self.shared.listening.borrow()
    }

    /// A receiver of the values lock holders announce.
    pub(crate) fn fills(&self) -> broadcast::Receiver<Arc<Fill>> {
        self.shared.filled.subscribe()
    }

    /// Makes sure the subscription is up, starting it if the application
    /// has not stopped it, and waits at most `within` for it. Returns
    /// whether it is up.
    pub(crate) async fn ready(&self, within: Duration) -> bool {
        if self.is_listening() {
            return true;
        }
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        self.start();
        let mut listening = self.shared.listening.subscribe();
        tokio::time::timeout(within, listening.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn start(&self) {
        let mut task = lock(&self.task);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        *task = Some(tokio::spawn(subscribe_forever(self.shared.clone())));
    }
}

impl<V> Drop for Bus<V> {
    /// The subscriber would outlive a dropped handle: stop it.
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl<V> Shared<V> {
    fn announce(&self, kind: StepKind, took: Duration) {
        self.observer.step(&Step {
            kind,
            key: "",
            command: None,
            reply: Reply::None,
            status: Status::Ok,
            took,
            message: None,
        });
    }
}

/// (Re)subscribes, clears the near cache on every subscription, then
/// handles messages until the connection drops; forever.
async fn subscribe_forever<V: Clone + Send + Sync + 'static>(shared: Arc<Shared<V>>) {
    if !shared.cluster_nodes.is_empty() {
        return subscribe_sharded_forever(shared).await;
    }
    let mut backoff = BACKOFF.0;
    loop {
        let started = Instant::now();
        let connected = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = shared.client.get_async_pubsub().await.ok()?;
            pubsub
                .subscribe(&[shared.invalidations.as_str(), shared.fills.as_str()])
                .await
                .ok()?;
            Some(pubsub)
        })
        .await;
        if let Ok(Some(mut pubsub)) = connected {
            // Recovery: whatever was published while we were away is lost,
            // so no near copy can be trusted any more.
            if let Some(near) = &shared.near {
                near.clear();
            }
            shared.listening.send_replace(true);
            shared.announce(StepKind::Subscribed, started.elapsed());
            backoff = BACKOFF.0;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<Vec<u8>>() else {
                    continue;
                };
                if message.get_channel_name() == shared.invalidations {
                    on_invalidation(&shared, &payload);
                } else if let Some(fill) = parse_fill(payload) {
                    let _ = shared.filled.send(Arc::new(fill));
                }
            }
            shared.listening.send_replace(false);
            shared.announce(StepKind::Unsubscribed, Duration::ZERO);
        }
        // The connection dropped, or never came up: try again, later.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// On a cluster: sharded Pub/Sub (`SSUBSCRIBE`), each channel on the
/// shard that owns its slot, so a message crosses no other node. When any
/// node's link drops, the whole subscription is made again on a new
/// cluster connection (which reads the slot map afresh, so it finds a
/// promoted replica), and every subscription clears the near cache, as on
/// one server. (Rebuilding on every drop is the simple safe choice: the
/// client's own resubscription neither reports every case nor refreshes the
/// slot map when no command is sent.)
async fn subscribe_sharded_forever<V: Clone + Send + Sync + 'static>(shared: Arc<Shared<V>>) {
    let mut backoff = BACKOFF.0;
    loop {
        let started = Instant::now();
        let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
        let connected = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let client = redis::cluster::ClusterClientBuilder::new(shared.cluster_nodes.clone())
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                .build()
                .ok()?;
            let mut connection = client.get_async_connection().await.ok()?;
            // One at a time: the two channels may hash to different slots.
            connection.ssubscribe(shared.invalidations.as_str()).await.ok()?;
            connection.ssubscribe(shared.fills.as_str()).await.ok()?;
            Some(connection)
        })
        .await;
        if let Ok(Some(_connection)) = connected {
            if let Some(near) = &shared.near {
                near.clear();
            }
            shared.listening.send_replace(true);
            shared.announce(StepKind::Subscribed, started.elapsed());
            backoff = BACKOFF.0;
            while let Some(push) = received.recv().await {
                match push.kind {
                    redis::PushKind::SMessage => {
                        let mut data = push.data.into_iter();
                        let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
                            continue;
                        };
                        let (Ok(channel), Ok(payload)) = (
                            redis::from_redis_value::<String>(channel),
                            redis::from_redis_value::<Vec<u8>>(payload),
                        ) else {
                            continue;
                        };
                        if channel == shared.invalidations {
                            on_invalidation(&shared, &payload);
                        } else if let Some(fill) = parse_fill(payload) {
                            let _ = shared.filled.send(Arc::new(fill));
                        }
                    }
                    redis::PushKind::Disconnection => break,
                    _ => {}
                }
            }
            shared.listening.send_replace(false);
            shared.announce(StepKind::Unsubscribed, Duration::ZERO);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// `"<id> <key>"`: drop the near copy and say so.
fn on_invalidation<V: Clone + Send + Sync + 'static>(shared: &Shared<V>, payload: &[u8]) {
    let Some((id, key)) = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.split_once(' '))
    else {
        return;
    };
    let started = Instant::now();
    if let Some(near) = &shared.near {
        near.remove(key);
    }
    shared.observer.step(&Step {
        kind: StepKind::InvalidationReceived,
        key,
        command: None,
        reply: Reply::None,
        status: Status::Ok,
        took: started.elapsed(),
        message: id.parse().ok(),
    });
}

/// `"<key>\n<envelope>"`.
fn parse_fill(payload: Vec<u8>) -> Option<Fill> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let key = std::str::from_utf8(&payload[..newline]).ok()?.to_string();
    let envelope = payload[newline + 1..].to_vec();
    Some(Fill { key, envelope })
}

/// The message that hands a stored envelope to the waiters of `key`.
pub(crate) fn fill_message(key: &str, envelope: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(key.len() + 1 + envelope.len());
    message.extend_from_slice(key.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(envelope);
    message
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_carry_the_key_and_the_envelope() {
        let message = fill_message("user:1", b"ca1 n 0 5 0\n");
        let fill = parse_fill(message).unwrap();
        assert_eq!(fill.key, "user:1");
        assert_eq!(fill.envelope, b"ca1 n 0 5 0\n");
        assert!(parse_fill(b"no newline".to_vec()).is_none());
    }
}
