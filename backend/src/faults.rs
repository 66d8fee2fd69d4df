//! The fault lab: break one sandbox's Redis from the page and watch the
//! application cope (tutorial sections 4.5, 6.3 and 7).
//!
//! The first fault puts a [`FaultProxy`] between the sandbox's application
//! instances and its Redis, and rebuilds the instances on it; from then on
//! Redis can be stopped, slowed, hung or have its connections cut for this
//! sandbox alone, whichever Redis it is (shared, its own server, or an
//! external one over plain TCP). Redis itself is never touched, so other
//! sandboxes see nothing, and "stop" keeps the data: it looks to the
//! application like a lost network or a crash with persistence. "Start
//! empty" deletes the sandbox's keys too, as a restart without persistence
//! would. The playground's own inspections (the cache-vs-database check,
//! the key inspector) look at Redis directly, so they still work while the
//! application cannot reach it: the debugger sees what the application
//! cannot.
//!
//! Until the first fault, commands go straight to Redis: a sandbox nobody
//! breaks pays nothing for the lab.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cache_aside::{Change, NoObserver, Redis, WritePolicy};
use embedded_redis::proxy::{FaultProxy, Faults};
use shared::{BreakerView, FaultAction, FaultEvent, FaultReport, InputError, Kind, RedisFault};

use crate::error::OpError;
use crate::policies;
use crate::recorder::unix_millis;
use crate::sandbox::{Running, Sandbox};

/// Records the warm-up caches: users 1 to 100, products 1 to 50.
pub const WARM_USERS: u64 = 100;
pub const WARM_PRODUCTS: u64 = 50;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One sandbox's faults: its proxy, once it has one, and the timeline.
#[derive(Default)]
pub struct FaultLab {
    proxy: Mutex<Option<Arc<FaultProxy>>>,
    events: Mutex<VecDeque<FaultEvent>>,
    /// Held while the proxy is set up, so two first faults make one.
    setting_up: tokio::sync::Mutex<()>,
}

impl FaultLab {
    /// What is being done to Redis now.
    pub fn redis_fault(&self) -> RedisFault {
        lock(&self.proxy)
            .as_ref()
            .map_or_else(RedisFault::default, |proxy| {
                let faults = proxy.faults();
                RedisFault {
                    down: faults.down,
                    delay_ms: u64::try_from(faults.delay.as_millis()).unwrap_or(u64::MAX),
                    hung: faults.hang,
                }
            })
    }

    /// Adds a line to the timeline.
    pub fn note(&self, text: impl Into<String>) {
        let mut events = lock(&self.events);
        if events.len() >= FaultReport::MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(FaultEvent {
            at_ms: unix_millis(),
            text: text.into(),
        });
    }

    /// Mends every fault and forgets the timeline (a sandbox reset). The
    /// proxy stays, passing everything through.
    pub fn clear(&self) {
        if let Some(proxy) = lock(&self.proxy).as_ref() {
            proxy.set(Faults::default());
        }
        lock(&self.events).clear();
    }

    fn proxy(&self) -> Option<Arc<FaultProxy>> {
        lock(&self.proxy).clone()
    }
}

/// The sandbox's faults and its instances' defences, as the page shows
/// them.
pub fn report(sandbox: &Sandbox) -> FaultReport {
    let fleet = sandbox.fleet();
    let mut retried = 0;
    let breakers = fleet
        .instances
        .iter()
        .map(|instance| {
            let cache = &instance.cache;
            retried += cache.retried_invalidations().0;
            BreakerView {
                instance: instance.name.to_string(),
                state: cache.breaker_state().name().to_string(),
                opened: cache.breaker_opened(),
                pending: cache.pending_invalidations() as u64,
            }
        })
        .collect();
    FaultReport {
        redis: sandbox.faults.redis_fault(),
        breakers,
        retried,
        events: lock(&sandbox.faults.events).iter().cloned().collect(),
        refusal: refusal(&sandbox.redis),
    }
}

/// Why this Redis cannot be put behind the proxy, if it cannot: the proxy
/// passes plain TCP, so a TLS or Unix-socket Redis is out; and a cluster's
/// clients connect to every node it names, past any proxy.
fn refusal(redis: &cache_aside::Redis) -> Option<String> {
    if redis.is_cluster() {
        return Some(
            "faults need a single Redis server; this playground runs on a Redis Cluster, whose clients reach \
             every node directly (stop a master instead: its keys' reads fall back)"
                .into(),
        );
    }
    match redis.client().get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(..) => None,
        _ => {
            Some("faults need Redis over plain TCP; this playground's Redis uses TLS or a Unix socket".into())
        }
    }
}

/// Carries out `action` on the sandbox (the operation `running` holds it),
/// tells every watcher, and returns the report.
///
/// # Errors
/// [`OpError::Input`] for a delay out of range or a Redis the proxy cannot
/// stand in front of; [`OpError::Internal`] when no proxy can be started.
pub async fn apply(running: &Running, action: FaultAction) -> Result<FaultReport, OpError> {
    let sandbox: &Sandbox = running;
    if let FaultAction::SlowRedis { delay_ms } = action {
        shared::settings::check_range("delay_ms", delay_ms, (0, FaultAction::MAX_DELAY_MS))?;
    }
    match action {
        FaultAction::WarmCache => {
            let warmed = warm(running).await?;
            sandbox
                .faults
                .note(format!("cache warmed: {warmed} records stored"));
        }
        FaultAction::StartRedis { empty } => {
            if let Some(proxy) = sandbox.faults.proxy() {
                proxy.set(Faults::default());
            }
            if empty {
                // A restart without persistence: the data is gone. (Keys
                // are deleted over the playground's own connection.)
                sandbox.forget_cached().await;
            }
            sandbox.faults.note(action.describe());
        }
        _ => {
            let proxy = proxied(sandbox).await?;
            let mut faults = proxy.faults();
            match action {
                FaultAction::StopRedis => faults.down = true,
                FaultAction::SlowRedis { delay_ms } => {
                    faults.delay = std::time::Duration::from_millis(delay_ms);
                }
                FaultAction::HangRedis { hung } => faults.hang = hung,
                _ => {}
            }
            if action == FaultAction::CutConnections {
                proxy.cut().await;
            } else {
                proxy.set(faults);
            }
            sandbox.faults.note(action.describe());
        }
    }
    let report = report(sandbox);
    sandbox.announce_faults(&report);
    Ok(report)
}

/// The sandbox's proxy, set up (and the instances moved onto it) on first
/// use.
async fn proxied(sandbox: &Sandbox) -> Result<Arc<FaultProxy>, OpError> {
    let _one = sandbox.faults.setting_up.lock().await;
    if let Some(proxy) = sandbox.faults.proxy() {
        return Ok(proxy);
    }
    let client = sandbox.redis.client();
    if let Some(refusal) = refusal(&sandbox.redis) {
        return Err(InputError::BadSetting(refusal).into());
    }
    let info = client.get_connection_info().clone();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        return Err(OpError::Internal("not a TCP address".into()));
    };
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| OpError::Internal(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| OpError::Internal(format!("{host} has no address")))?;
    let proxy = Arc::new(
        FaultProxy::start(upstream)
            .await
            .map_err(|e| OpError::Internal(format!("cannot start the fault proxy: {e}")))?,
    );
    // The same Redis (its password, its database), reached through the
    // proxy.
    let through = info.set_addr(redis::ConnectionAddr::Tcp("127.0.0.1".into(), proxy.port()));
    let client = redis::Client::open(through).map_err(|e| OpError::Internal(e.to_string()))?;
    let redis = Redis::from_client(&format!("redis://127.0.0.1:{}/", proxy.port()), client);
    sandbox
        .move_fleet_to(&redis)
        .map_err(|e| OpError::Internal(e.to_string()))?;
    *lock(&sandbox.faults.proxy) = Some(proxy.clone());
    sandbox
        .faults
        .note("the application's Redis connections now go through the fault proxy");
    Ok(proxy)
}

/// Stores users 1 to [`WARM_USERS`] and products 1 to [`WARM_PRODUCTS`]
/// straight from the database, as a warm-up job would (no simulated
/// latency: one batch, not a reader per record). Returns how many were
/// stored.
async fn warm(running: &Running) -> Result<u64, OpError> {
    let sandbox: &Sandbox = running;
    let records: Vec<(Kind, u64)> = (1..=WARM_USERS)
        .map(|id| (Kind::Users, id))
        .chain((1..=WARM_PRODUCTS).map(|id| (Kind::Products, id)))
        .collect();
    let config = sandbox.config();
    running.admit(&records, config.options_for(Kind::Users))?;
    let instance = sandbox.fleet().pick(None)?;
    let mut stored = 0;
    for (kind, id) in records {
        let (row, _) = sandbox
            .database
            .find(kind, id, std::time::Duration::ZERO)
            .run_measured()
            .await;
        let Some(record) = row? else { continue };
        let written = instance
            .cache
            .after_write_with(
                &policies::record_key(kind, id),
                Change::Updated(&record),
                WritePolicy::WriteThrough,
                config.options_for(kind),
                &NoObserver,
            )
            .await;
        if written.effect == cache_aside::Effect::WroteThrough {
            stored += 1;
        }
    }
    Ok(stored)
}
