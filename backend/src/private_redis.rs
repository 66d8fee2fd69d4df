//! Sandboxes with a `redis-server` of their own.
//!
//! Every sandbox shares the back end's Redis, bounded so that none can
//! crowd out another (see [`crate::ledger`]). Experiments on the server
//! itself (filling its memory to watch eviction, stopping it to watch the
//! fallback) must not touch anyone else, so they get a server of their own:
//! started on demand when the sandbox is opened, stopped when it is reaped,
//! a few at most. Only a back end that starts its own Redis can start more;
//! with `REDIS_URL` such sandboxes are refused, with the reason.

use std::path::PathBuf;
use std::sync::Arc;

use embedded_redis::{EmbeddedRedis, RedisServerOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a sandbox cannot have its own server. Each variant says when it
/// occurs.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PrivateRedisError {
    /// Occurs when the back end uses an external Redis (`REDIS_URL`).
    #[error(
        "this playground uses an external Redis (REDIS_URL), so it cannot start a redis-server for a sandbox; experiments on the server itself are off"
    )]
    External,
    /// Occurs when every private server allowed is in use.
    #[error("all {0} private redis-servers are in use; try again when a sandbox closes")]
    AllInUse(usize),
    /// Occurs when `redis-server` does not start.
    #[error("could not start a redis-server for the sandbox: {0}")]
    DidNotStart(String),
}

/// Starts private servers, at most so many at once.
pub struct PrivateServers {
    options: RedisServerOptions,
    permits: Arc<Semaphore>,
    most: usize,
}

/// A sandbox's own server; stops when dropped, giving its place back.
pub struct PrivateServer {
    server: EmbeddedRedis,
    maxmemory: String,
    _permit: OwnedSemaphorePermit,
}

impl PrivateServers {
    /// At most `most` servers of `program`, each with `maxmemory` and the
    /// tutorial's `allkeys-lru` policy (a server of one's own may evict:
    /// that is the experiment).
    pub fn new(program: PathBuf, maxmemory: String, most: usize) -> PrivateServers {
        PrivateServers {
            options: RedisServerOptions {
                program,
                maxmemory,
                maxmemory_policy: "allkeys-lru".into(),
            },
            permits: Arc::new(Semaphore::new(most)),
            most,
        }
    }

    /// Starts a server, if one is free (off the async workers: starting
    /// waits for it to answer).
    ///
    /// # Errors
    /// [`PrivateRedisError::AllInUse`] or [`PrivateRedisError::DidNotStart`].
    pub async fn start(&self) -> Result<PrivateServer, PrivateRedisError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| PrivateRedisError::AllInUse(self.most))?;
        let options = self.options.clone();
        // The place goes with the blocking start: if the request is dropped
        // meanwhile, the server started is stopped before its place is
        // given back, so never more run than the cap.
        let (server, permit) = tokio::task::spawn_blocking(move || (EmbeddedRedis::start(&options), permit))
            .await
            .map_err(|e| PrivateRedisError::DidNotStart(e.to_string()))?;
        let server = server.map_err(|e| PrivateRedisError::DidNotStart(e.to_string()))?;
        Ok(PrivateServer {
            server,
            maxmemory: self.options.maxmemory.clone(),
            _permit: permit,
        })
    }

    /// How many are running now.
    pub fn running(&self) -> usize {
        self.most - self.permits.available_permits()
    }
}

impl PrivateServer {
    /// Where it listens.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What the page shows of it.
    pub fn describe(&self) -> String {
        format!(
            "its own redis-server (port {}, maxmemory {}, allkeys-lru)",
            self.server.port(),
            self.maxmemory
        )
    }
}
