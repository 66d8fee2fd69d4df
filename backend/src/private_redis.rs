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
    #[error("every private redis-server is in use ({0} at most); one frees up when its sandbox closes, soon after its page does")]
    AllInUse(usize),
    /// Occurs when `redis-server` does not start.
    #[error("could not start a redis-server for the sandbox: {0}")]
    DidNotStart(String),
}

/// The policy a server starts with: the tutorial's usual one for a cache.
const STARTING_POLICY: &str = "allkeys-lru";

/// The limit a sandbox may set when the configured `maxmemory` does not
/// parse (Redis itself would have refused to start with it).
const DEFAULT_LIMIT_KB: u64 = 64 * 1024;

/// Bytes in a Redis memory amount (`64mb`, `1gb`, `100000`), read the way
/// Redis reads its configuration: `k`, `m`, `g` are powers of 1,000, `kb`,
/// `mb`, `gb` powers of 1,024, any case.
pub fn memory_bytes(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// Starts private servers, at most so many at once.
pub struct PrivateServers {
    options: RedisServerOptions,
    permits: Arc<Semaphore>,
    most: usize,
    /// The one thread that starts them. The kernel stops a server when the
    /// *thread* that started it ends (`PR_SET_PDEATHSIG`, so none outlives
    /// a crashed back end), and the blocking pool's threads end after ten
    /// idle seconds: started there, a sandbox's server died ten seconds
    /// later. This thread lives as long as the back end.
    starter: std::sync::Mutex<std::sync::mpsc::Sender<Start>>,
}

/// A request to the starter thread: the server, and where to send it with
/// its place (if the requester is gone, the server is stopped there, before
/// its place is given back).
type Start = (
    RedisServerOptions,
    OwnedSemaphorePermit,
    tokio::sync::oneshot::Sender<(Result<EmbeddedRedis, String>, OwnedSemaphorePermit)>,
);

/// A sandbox's own server; stops when dropped, giving its place back.
pub struct PrivateServer {
    server: EmbeddedRedis,
    maxmemory: String,
    /// The highest `maxmemory` the sandbox may set: the configured one.
    limit_kb: u64,
    _permit: OwnedSemaphorePermit,
}

impl PrivateServers {
    /// At most `most` servers of `program`, each with `maxmemory` and the
    /// tutorial's `allkeys-lru` policy (a server of one's own may evict:
    /// that is the experiment).
    pub fn new(program: PathBuf, maxmemory: String, most: usize) -> PrivateServers {
        let (starter, requests) = std::sync::mpsc::channel::<Start>();
        // Ends when `PrivateServers` does (its sender dropped).
        let _ = std::thread::Builder::new()
            .name("redis-starter".into())
            .spawn(move || {
                for (options, permit, reply) in requests {
                    let server = EmbeddedRedis::start(&options).map_err(|e| e.to_string());
                    // A requester that left drops the server here: stopped.
                    let _ = reply.send((server, permit));
                }
            });
        PrivateServers {
            starter: std::sync::Mutex::new(starter),
            options: RedisServerOptions {
                program,
                maxmemory,
                maxmemory_policy: STARTING_POLICY.into(),
                extra_args: Vec::new(),
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
        // The place goes with the start: if the request is dropped
        // meanwhile, the server started is stopped before its place is
        // given back, so never more run than the cap.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.starter.lock().unwrap_or_else(|p| p.into_inner()).send((
            self.options.clone(),
            permit,
            reply,
        ));
        if sent.is_err() {
            return Err(PrivateRedisError::DidNotStart(
                "the starter thread is gone".into(),
            ));
        }
        let (server, permit) = answer
            .await
            .map_err(|_| PrivateRedisError::DidNotStart("the starter thread is gone".into()))?;
        let server = server.map_err(PrivateRedisError::DidNotStart)?;
        Ok(PrivateServer {
            server,
            maxmemory: self.options.maxmemory.clone(),
            limit_kb: memory_bytes(&self.options.maxmemory).map_or(DEFAULT_LIMIT_KB, |b| b / 1024),
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

    /// The highest `maxmemory` the sandbox may set, in KiB.
    pub fn limit_kb(&self) -> u64 {
        self.limit_kb
    }

    /// The `CONFIG SET` that puts its memory limit and policy back as it
    /// started.
    pub fn restore_command(&self) -> redis::Cmd {
        let mut config = redis::cmd("CONFIG");
        config
            .arg("SET")
            .arg("maxmemory")
            .arg(&self.maxmemory)
            .arg("maxmemory-policy")
            .arg(STARTING_POLICY)
            .arg("maxmemory-samples")
            .arg(5);
        config
    }

    /// What the page shows of it.
    pub fn describe(&self) -> String {
        format!(
            "its own redis-server (port {}; started with maxmemory {}, {STARTING_POLICY})",
            self.server.port(),
            self.maxmemory
        )
    }
}

#[cfg(test)]
mod tests {
    use super::memory_bytes;

    #[test]
    fn memory_amounts_read_as_redis_reads_them() {
        assert_eq!(memory_bytes("64mb"), Some(64 << 20));
        assert_eq!(memory_bytes("64MB"), Some(64 << 20));
        assert_eq!(memory_bytes("2m"), Some(2_000_000));
        assert_eq!(memory_bytes("1gb"), Some(1 << 30));
        assert_eq!(memory_bytes("4096"), Some(4096));
        assert_eq!(memory_bytes("12kb"), Some(12 * 1024));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(memory_bytes("5tb"), None);
        assert_eq!(memory_bytes("99999999999999999999gb"), None);
    }
}
