//! Which replica holds a sandbox (`--replica`): a lease in Redis, the one
//! thing replicas share besides the data directory. A replica claims a
//! sandbox's lease before it opens the sandbox, renews every lease it holds
//! each second, and deletes a sandbox's files and keys only while it still
//! holds the lease. So a request routed to the wrong replica while the
//! owner lives (a balancer restarted, a sticky entry expired, a retry) is
//! refused for a moment instead of opening the sandbox twice, and a replica
//! takes a sandbox over only once its owner has stopped renewing.

use std::time::Duration;

use cache_aside::{Redis, RedisError};
use shared::SandboxId;

/// How long a lease lives unrenewed: how long a sandbox of a replica that
/// died stays closed to the others.
pub const LEASE: Duration = Duration::from_secs(3);

/// How often a replica renews its leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// `SET key token PX` if nobody holds it, or prolong it if we do.
const CLAIM: &str = "local held = redis.call('GET', KEYS[1]) \
    if held == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
    if held then return 0 end \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";

/// Prolong the lease only if it is still ours.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Give the lease up only if it is still ours.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end";

/// The lease's key: outside every sandbox's key space (a reset's scan
/// never deletes it), in the sandbox's slot on a cluster.
pub fn key(sandbox: &SandboxId, cluster: bool) -> String {
    if cluster {
        format!("playground-owner:{{{sandbox}}}")
    } else {
        format!("playground-owner:{sandbox}")
    }
}

async fn script(
    redis: &Redis,
    source: &str,
    key: &str,
    token: &str,
    timeout: Duration,
) -> Result<bool, RedisError> {
    let mut eval = redis::cmd("EVAL");
    eval.arg(source)
        .arg(1)
        .arg(key)
        .arg(token)
        .arg(LEASE.as_millis() as u64);
    let reply = redis.query(&eval, timeout).await?;
    Ok(matches!(reply, redis::Value::Int(n) if n > 0))
}

/// Claims the lease for `token`; `false` when another replica holds it.
///
/// # Errors
/// [`RedisError`] when Redis fails.
pub async fn claim(redis: &Redis, key: &str, token: &str, timeout: Duration) -> Result<bool, RedisError> {
    script(redis, CLAIM, key, token, timeout).await
}

/// Renews the lease; `false` when it is no longer ours.
///
/// # Errors
/// [`RedisError`] when Redis fails (the lease may still be ours).
pub async fn renew(redis: &Redis, key: &str, token: &str, timeout: Duration) -> Result<bool, RedisError> {
    script(redis, RENEW, key, token, timeout).await
}

/// Gives the lease up; `false` when it was not ours (any more).
///
/// # Errors
/// [`RedisError`] when Redis fails.
pub async fn release(redis: &Redis, key: &str, token: &str, timeout: Duration) -> Result<bool, RedisError> {
    script(redis, RELEASE, key, token, timeout).await
}
