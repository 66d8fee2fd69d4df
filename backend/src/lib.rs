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
//! - [`store`]: the SQLite database, its schema and deterministic seed data.
//! - [`feed`]: bounded fan-out of traces to watching browsers.
//! - [`http`]: the REST API, the WebSocket and the static files (thin handlers).
//! - [`error`]: what can go wrong with an operation.
//! - [`config`]: flags and environment variables.
//!
//! The cache-aside logic itself lives in the `cache-aside` crate, which
//! knows nothing of this one.

pub mod config;
pub mod divergence;
pub mod error;
pub mod feed;
pub mod fleet;
pub mod herd;
pub mod http;
pub mod playground;
pub mod policies;
pub mod recorder;
pub mod sandbox;
pub mod scenario;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use embedded_redis::{EmbeddedRedis, RedisServerOptions};
pub use playground::Playground;
pub use store::Database;

use sandbox::Sandboxes;

/// A back end ready to serve: its state, plus the Redis it owns (if any),
/// which stops when this value is dropped.
pub struct Backend {
    pub playground: Arc<Playground>,
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
        let database = Database::open(&config.database_path().map_err(StartError::Config)?)?;
        let (redis_url, embedded_redis) = match &config.redis_url {
            Some(url) => (url.clone(), None),
            None => {
                let server = EmbeddedRedis::start(&RedisServerOptions {
                    program: config.redis_server.clone(),
                    maxmemory: config.redis_maxmemory.clone(),
                    ..RedisServerOptions::default()
                })?;
                (server.url(), Some(server))
            }
        };
        let redis = cache_aside::Redis::open(&redis_url).map_err(StartError::RedisUrl)?;
        let sandboxes = Sandboxes::new(
            config.sandbox_defaults(),
            redis.clone(),
            Duration::from_millis(config.redis_timeout_ms),
            database.clone(),
            config.data_dir.join("sandboxes"),
            config.trace_buffer as usize,
        );
        let mut playground = Playground::new(database, redis, sandboxes);
        playground.pause_timeout = Duration::from_secs(config.pause_timeout_secs);
        Ok(Backend {
            playground: Arc::new(playground),
            config,
            embedded_redis,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then closes open
    /// WebSockets and returns.
    ///
    /// # Errors
    /// [`StartError::Serve`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let state = http::AppState {
            playground: self.playground.clone(),
            shutdown: stopped,
        };
        let router = http::app(state, &self.config.static_dir);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await
            .map_err(StartError::Serve)
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
