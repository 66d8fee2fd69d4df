//! The cache-aside playground's back end: the visual debugger of the
//! `cache-aside` engine. Every read and write runs for real, through the
//! engine, against a real Redis and a real SQLite database; each one is
//! traced step by step and streamed to the browser over a WebSocket.
//!
//! # Layout
//! - [`playground`]: runs operations in a sandbox through the engine,
//!   records them, keeps counters, publishes traces. Start here.
//! - [`recorder`]: the engine's observer: maps each engine step onto a node
//!   of the diagram, and holds operations at breakpoints.
//! - [`policies`]: sandbox settings to engine options, records to keys,
//!   engine effects to the wire's words.
//! - [`fleet`]: application instances A, B and C, one engine handle each.
//! - [`herd`]: herds of concurrent reads (the stampede lab).
//! - [`scenario`]: preset experiments, such as the stale-set race.
//! - [`divergence`]: compares what Redis holds with the database, key by key.
//! - [`sandbox`]: per-session key spaces, databases, settings and counters.
//! - [`ledger`]: the bound on what one sandbox may hold in Redis.
//! - [`sealing`]: users' phone numbers encrypted before they are cached.
//! - [`private_redis`]: sandboxes with a redis-server of their own.
//! - [`store`]: the SQLite database, its schema and deterministic seed data.
//! - [`feed`]: bounded fan-out of traces to watching browsers.
//! - [`inspect`]: a sandbox's keys in Redis, with their TTLs (SCAN).
//! - [`load`]: the load generator (seeded, skewed, steady).
//! - [`metrics`]: Prometheus metrics of the whole playground.
//! - [`traffic`]: reads beyond the trace budget, folded into summaries.
//! - [`http`]: the REST API, the WebSocket route and the static files (thin handlers).
//! - [`session`]: one browser's WebSocket session, bounded.
//! - [`access`]: origins, client addresses, per-client limits, security headers.
//! - [`error`]: what can go wrong with an operation.
//! - [`config`]: flags and environment variables.
//!
//! The cache-aside logic itself lives in the `cache-aside` crate, which
//! knows nothing of this one.

pub mod access;
pub mod config;
pub mod divergence;
pub mod embed;
pub mod encodings;
pub mod error;
pub mod faults;
pub mod feed;
pub mod fleet;
pub mod herd;
pub mod http;
pub mod inspect;
pub mod ledger;
pub mod load;
pub mod memory;
pub mod metrics;
pub mod ownership;
pub mod patterns;
pub mod playground;
pub mod policies;
pub mod private_redis;
pub mod recorder;
pub mod related;
pub mod sandbox;
pub mod scenario;
pub mod sealing;
pub mod session;
pub mod store;
pub mod traffic;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use cache_aside::redact_url;
pub use config::Config;
pub use embedded_redis::{EmbeddedRedis, RedisServerOptions};
pub use playground::Playground;
pub use store::Database;

use sandbox::Sandboxes;

/// The allocator of every program built on the playground: the server, its
/// benchmarks and its tests, so a benchmark measures what ships. A read
/// allocates on one worker thread and frees on another (the request, the
/// trace, the reply), and glibc's allocator then waits on its arenas'
/// locks: about two futex calls per read, measured with `perf stat` on
/// `hit_path --only c`. mimalloc frees to the owning thread's list
/// without a lock: the playground's REST read gained about a quarter in
/// requests per second, the bare Redis baseline about 6 % (`hit_path
/// --only c`, then `--only a`, old and new builds alternated).
///
/// Two settings keep its memory near glibc's (`cargo xtask bench memory`):
/// mimalloc does not ask the kernel for transparent huge pages (the
/// `no_thp` feature: no `madvise(MADV_HUGEPAGE)`; a host whose THP setting
/// is `always` may still give them; with them, 15 MiB idle instead of 10),
/// and freed pages go back at once ([`tune_allocator`]; by default at
/// least a second later, at the allocator's next collection, so just after
/// a 5,000-read herd the server held 67 MiB where glibc's held 31).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay` (its `include/mimalloc.h`): how
/// many milliseconds freed memory waits before it goes back to the system.
/// The crate names no constant for it, so `libmimalloc-sys` is pinned, and
/// `tests/allocator.rs` checks the number still means this option.
pub const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Hands freed memory back to the system at once. Once per process: the
/// server's `main` calls it before its runtime starts any thread, and
/// [`Backend::start`] calls it for the programs that start a back end
/// themselves (tests, benchmarks). Costs no throughput measurable on the
/// hit path (`hit_path --only c` with and without, alternated: within the
/// noise).
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: any value is valid for this option. mimalloc stores and
        // loads its options plainly (its docs: not thread-safe); this is
        // one store of an aligned machine word, once. In the server no
        // other thread exists yet; in a test or benchmark a thread that
        // reads the option meanwhile sees the old delay or the new one.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
    });
}

/// A back end ready to serve: its state, plus the Redis it owns (if any),
/// which stops when this value is dropped.
pub struct Backend {
    pub playground: Arc<Playground>,
    /// Origins, client addresses and per-client counts.
    pub access: Arc<access::Access>,
    pub config: Config,
    /// `Some` when the back end started its own `redis-server`.
    pub embedded_redis: Option<EmbeddedRedis>,
}

/// Why the back end could not start. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Occurs when the configuration is inconsistent.
    #[error("{0}")]
    Config(String),
    /// Occurs when the embedded `redis-server` cannot be started.
    #[error(transparent)]
    Redis(#[from] embedded_redis::EmbeddedRedisError),
    /// Occurs when REDIS_URL is not a valid Redis URL.
    #[error("REDIS_URL is not valid: {0}")]
    RedisUrl(cache_aside::RedisError),
    /// Occurs when a TLS file for Redis cannot be read or used.
    #[error("Redis TLS: {0}")]
    RedisTls(String),
    /// Occurs when the database cannot be opened or seeded.
    #[error(transparent)]
    Database(#[from] store::StoreError),
    /// Occurs when the address cannot be bound (in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Occurs when the server fails while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

impl Backend {
    /// Opens the database and connects (or starts) Redis.
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start(config: Config) -> Result<Backend, StartError> {
        tune_allocator();
        let database = Database::open(&config.database_path().map_err(StartError::Config)?)?;
        let limits = config.limits();
        let (redis_url, embedded_redis) = match &config.redis_url {
            _ if !config.redis_cluster.is_empty() => (config.redis_cluster[0].clone(), None),
            Some(url) => {
                tracing::info!(
                    "with these limits the sandboxes may hold up to {} MiB in Redis; \
                     give it that much, or lower --max-sandboxes or --sandbox-max-keys",
                    limits.redis_bytes() >> 20
                );
                (url.clone(), None)
            }
            None => {
                // Sized for every sandbox holding all it may, and set never
                // to evict: if the bound were ever passed, a store would
                // fail (and the read fall back to the database) rather than
                // push out another sandbox's keys, its leases and version
                // markers included.
                let server = EmbeddedRedis::start(&RedisServerOptions {
                    program: config.redis_server.clone(),
                    maxmemory: config.redis_maxmemory(&limits),
                    maxmemory_policy: "noeviction".into(),
                    extra_args: Vec::new(),
                })?;
                (server.url(), Some(server))
            }
        };
        let redis = if config.redis_cluster.is_empty() {
            connect_redis(&redis_url, &config)?
        } else {
            cache_aside::Redis::open_cluster(&config.redis_cluster).map_err(|e| {
                let shown = redact_url(&redis_url);
                StartError::RedisUrl(redact_error(e, &redis_url, &shown))
            })?
        };
        let sealer = match &config.cache_keys {
            Some(keys) => {
                sealing::Sealer::from_config(keys).map_err(|e| StartError::Config(e.to_string()))?
            }
            None => {
                tracing::info!(
                    "cached phone numbers are sealed with a key made at start; set CACHE_KEYS to keep keys across restarts"
                );
                sealing::Sealer::ephemeral()
            }
        };
        let setup = sandbox::Setup {
            defaults: config.sandbox_defaults(),
            redis: redis.clone(),
            timeout: Duration::from_millis(config.redis_timeout_ms),
            sealer: Arc::new(sealer),
            sandbox_dir: config.data_dir.join("sandboxes"),
            feed_capacity: config.trace_buffer as usize,
            metrics: Arc::new(metrics::Metrics::new()),
            limits: limits.clone(),
            // Only a back end that starts its own Redis starts more.
            private_servers: embedded_redis.is_some().then(|| {
                private_redis::PrivateServers::new(
                    config.redis_server.clone(),
                    config.private_redis_maxmemory.clone(),
                    limits.private_redis_servers,
                )
            }),
        };
        let sandboxes = Sandboxes::new(setup, database.clone())?;
        let mut playground = Playground::new(database, redis, sandboxes);
        playground.pause_timeout = Duration::from_secs(config.pause_timeout_secs);
        Ok(Backend {
            playground: Arc::new(playground),
            access: Arc::new(access::Access::new(&config, &limits)),
            config,
            embedded_redis,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then closes open
    /// WebSockets and returns. Meanwhile a reaper removes idle sandboxes.
    ///
    /// # Errors
    /// [`StartError::Serve`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let router = self.router(stopped.clone());
        let reaper = tokio::spawn(reap_idle_sandboxes(self.playground.clone(), stopped.clone()));
        // A replica keeps its sandboxes' leases while it serves; once it
        // stops, they lapse and another replica may take them over.
        let leases = tokio::spawn(renew_leases(self.playground.clone(), stopped));
        // No Nagle: a trace and the reply after it are two small writes,
        // and holding the second until the first is acknowledged meets the
        // browser's delayed ACK: 40 ms added to a read over a WebSocket
        // (measured by `cargo xtask bench sandboxes`).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await
        .map_err(StartError::Serve);
        reaper.abort();
        leases.abort();
        served
    }

    /// The whole HTTP surface of this back end; open WebSockets close when
    /// `shutdown` turns `true`. Serve it with connection info
    /// (`into_make_service_with_connect_info::<SocketAddr>`), or layer a
    /// `MockConnectInfo` over it to call it without a socket.
    pub fn router(&self, shutdown: tokio::sync::watch::Receiver<bool>) -> axum::Router {
        let state = http::AppState {
            playground: self.playground.clone(),
            shutdown,
            access: self.access.clone(),
        };
        let app = http::app(
            state,
            &self.config.static_dir,
            &self.config.allowed_origins,
            &self.config.embed_ancestors(),
        );
        http::under_base_path(app, &self.config.base_path)
    }

    /// A second handle on the same playground, to serve it again (say
    /// after stopping serving in a test) without owning its Redis.
    pub fn share(&self) -> Backend {
        Backend {
            playground: self.playground.clone(),
            access: self.access.clone(),
            config: self.config.clone(),
            embedded_redis: None,
        }
    }

    /// Binds the configured address.
    ///
    /// # Errors
    /// [`StartError::Bind`].
    pub async fn bind(&self) -> Result<tokio::net::TcpListener, StartError> {
        let addr = self.config.addr;
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    }
}

/// The back end's handle on Redis: from the URL alone (passwords and ACL
/// users go in it: `redis://user:password@host:6379/`), or, for
/// `rediss://` with a private certificate authority or a client
/// certificate, built with those files.
fn connect_redis(url: &str, config: &Config) -> Result<cache_aside::Redis, StartError> {
    let shown = redact_url(url);
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StartError::RedisTls(format!("cannot read {}: {e}", path.display())))
    };
    let client_tls = match (&config.redis_client_cert, &config.redis_client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(StartError::RedisTls(
                "give both --redis-client-cert and --redis-client-key, or neither".into(),
            ))
        }
    };
    if client_tls.is_none() && config.redis_ca_cert.is_none() {
        return cache_aside::Redis::open(url).map_err(|e| StartError::RedisUrl(redact_error(e, url, &shown)));
    }
    if !url.starts_with("rediss://") {
        return Err(StartError::RedisTls(format!(
            "TLS files were given but REDIS_URL {shown} is not a rediss:// URL"
        )));
    }
    let certificates = redis::TlsCertificates {
        client_tls,
        root_cert: config.redis_ca_cert.as_deref().map(read).transpose()?,
    };
    let client = redis::Client::build_with_tls(url, certificates)
        .map_err(|e| StartError::RedisTls(e.to_string().replace(url, &shown)))?;
    Ok(cache_aside::Redis::from_client(url, client))
}

/// An error about `url` that names it only as `shown`.
fn redact_error(error: cache_aside::RedisError, url: &str, shown: &str) -> cache_aside::RedisError {
    match error {
        cache_aside::RedisError::Url(message) => cache_aside::RedisError::Url(message.replace(url, shown)),
        other => other,
    }
}

/// Renews the leases of the sandboxes a replica holds, every second, until
/// the back end stops serving (see [`ownership`]).
async fn renew_leases(playground: Arc<Playground>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    if !playground.sandboxes.limits().adopt_sandboxes {
        return;
    }
    let mut ticks = tokio::time::interval(ownership::RENEW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let lost = playground.sandboxes.renew_leases().await;
                if lost > 0 {
                    tracing::warn!(lost, "sandboxes taken over by another replica");
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Removes idle sandboxes (with their keys and files) every so often:
/// a quarter of the shortest idle time (a sandbox with a redis-server of
/// its own may have a shorter one), every 250 ms to 30 s.
async fn reap_idle_sandboxes(playground: Arc<Playground>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let limits = playground.sandboxes.limits();
    let idle = limits.sandbox_idle.min(limits.private_sandbox_idle);
    let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let removed = playground.reap_idle().await;
                if removed > 0 {
                    tracing::info!(removed, left = playground.sandboxes.len(), "removed idle sandboxes");
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Resolves on the next Ctrl-C or SIGTERM after this call: it listens
/// from the moment it is called, not from its first poll.
pub fn signal_listener() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    shutdown_signal()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
