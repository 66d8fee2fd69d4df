//! A fault-injecting TCP proxy in front of any Redis.
//!
//! Put it between an application and Redis, and Redis can be made slow,
//! hung, unreachable or flaky for that application alone, without touching
//! the server (which others may share) or its data. The proxy forwards
//! bytes; it does not parse Redis's protocol, so it works with any Redis
//! and any client.
//!
//! - **down**: live connections are cut and new ones are closed at once,
//!   as a stopped server or a lost network would look to the client;
//! - **delay**: every chunk the client sends waits this long before it
//!   goes on (a request, or a pipelined batch, pays it once);
//! - **hang**: what the client sends is held, not forwarded, until the
//!   hang ends: a server that accepts and never answers (`SIGSTOP`);
//! - [`FaultProxy::cut`]: live connections are cut once, new ones work.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Refuse everything: cut live connections, close new ones.
    pub down: bool,
    /// Added before each chunk the client sends is forwarded.
    pub delay: Duration,
    /// Hold what the client sends until this is turned off.
    pub hang: bool,
}

#[derive(Clone, Copy, Debug)]
struct State {
    faults: Faults,
    /// Bumped by [`FaultProxy::cut`]: connections of an older epoch end.
    epoch: u64,
}

/// The proxy; stops (and cuts every connection) when dropped.
pub struct FaultProxy {
    port: u16,
    state: watch::Sender<State>,
    accepted: Arc<AtomicU64>,
    /// Connections being forwarded now.
    live: Arc<LiveConnections>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`. Needs a
    /// Tokio runtime.
    ///
    /// # Errors
    /// When no loopback port can be had.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (state, _) = watch::channel(State {
            faults: Faults::default(),
            epoch: 0,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let live = Arc::new(LiveConnections::default());
        let task = tokio::spawn(serve(
            listener,
            upstream,
            state.clone(),
            accepted.clone(),
            live.clone(),
        ));
        Ok(FaultProxy {
            port,
            state,
            accepted,
            live,
            task,
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it does now.
    pub fn faults(&self) -> Faults {
        self.state.borrow().faults
    }

    /// Changes what it does, at once for live connections too.
    pub fn set(&self, faults: Faults) {
        self.state.send_modify(|state| state.faults = faults);
    }

    /// Cuts every live connection once; new ones are served as usual.
    /// Returns once the connections it cut have ended (at most a second:
    /// each ends as soon as its task sees the cut), so a command sent
    /// after it meets a dead connection.
    pub async fn cut(&self) {
        let mut epoch = 0;
        self.state.send_modify(|state| {
            state.epoch += 1;
            epoch = state.epoch;
        });
        let ended = async {
            loop {
                let changed = self.live.changed.notified();
                if self.live.oldest().is_none_or(|oldest| oldest >= epoch) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ended).await;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connections being forwarded, by the epoch they began in.
#[derive(Default)]
struct LiveConnections {
    by_epoch: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
    /// Woken whenever one ends.
    changed: tokio::sync::Notify,
}

impl LiveConnections {
    /// The epoch of the oldest connection still forwarded.
    fn oldest(&self) -> Option<u64> {
        lock(&self.by_epoch).keys().next().copied()
    }
}

/// Counts a forwarded connection of `epoch` while it lives.
struct Live(Arc<LiveConnections>, u64);

impl Live {
    fn new(live: &Arc<LiveConnections>, epoch: u64) -> Live {
        *lock(&live.by_epoch).entry(epoch).or_default() += 1;
        Live(live.clone(), epoch)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        {
            let mut by_epoch = lock(&self.0.by_epoch);
            if let Some(n) = by_epoch.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    by_epoch.remove(&self.1);
                }
            }
        }
        self.0.changed.notify_waiters();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Every connection's pumps watch the state: ending it ends them.
        self.state.send_modify(|state| {
            state.faults.down = true;
            state.epoch += 1;
        });
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    accepted: Arc<AtomicU64>,
    live: Arc<LiveConnections>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let watching = state.subscribe();
        let now = *watching.borrow();
        if now.faults.down {
            // Closed at once: the client sees the connection end.
            drop(client);
            continue;
        }
        let forwarding = Live::new(&live, now.epoch);
        tokio::spawn(async move {
            let _forwarding = forwarding;
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // Either direction ending ends both.
            tokio::select! {
                () = pump(client_read, server_write, watching.clone(), now.epoch, true) => {}
                () = pump(server_read, client_write, watching, now.epoch, false) => {}
            }
        });
    }
}

/// Whether a connection of `epoch` must end.
fn ended(state: &State, epoch: u64) -> bool {
    state.faults.down || state.epoch != epoch
}

/// Copies `from` to `to`; the client's side (`faulted`) gets the delay and
/// the hang.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    epoch: u64,
    faulted: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = state.wait_for(|s| ended(s, epoch)) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if faulted {
            // Held while hung; ended if cut meanwhile.
            let Ok(now) = state
                .wait_for(|s| ended(s, epoch) || !s.faults.hang)
                .await
                .map(|s| *s)
            else {
                return;
            };
            if ended(&now, epoch) {
                return;
            }
            if !now.faults.delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(now.faults.delay) => {}
                    _ = state.wait_for(|s| ended(s, epoch)) => return,
                }
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
