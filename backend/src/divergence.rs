//! The divergence check: what Redis holds against what the database holds.
//!
//! It walks the sandbox's cache keys with `SCAN` (never `KEYS`, which blocks
//! Redis while it walks everything), reads each cached copy and its row, and
//! flags the copies that disagree: stale data, the consequence of the
//! invalidation timing issues of the tutorial's section 4.2.

use cache_aside::{Content, Envelope, RedisError};
use shared::{DivergenceEntry, DivergenceReport, Record};

use crate::policies::{describe_entry, describe_record, parse_record_key};
use crate::sandbox::Sandbox;
use crate::store::StoreError;

/// The most keys one report shows.
pub const MAX_KEYS: usize = 200;

/// Why the check could not run. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum DivergenceError {
    /// Occurs when Redis fails during the walk.
    #[error("Redis failed during the check: {0}")]
    Cache(#[from] RedisError),
    /// Occurs when the database fails.
    #[error("the database failed during the check: {0}")]
    Database(#[from] StoreError),
}

/// Compares every cached record of `sandbox` (up to [`MAX_KEYS`]) with its
/// row.
///
/// # Errors
/// [`DivergenceError`].
pub async fn check(sandbox: &Sandbox, now_ms: u64) -> Result<DivergenceReport, DivergenceError> {
    let (redis, timeout) = (&sandbox.redis, sandbox.timeout);
    let pattern = sandbox.keys.pattern();
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(100);
        let (next, page): (u64, Vec<String>) = redis::from_redis_value(redis.query(&scan, timeout).await?)
            .map_err(|e| RedisError::Failed(e.to_string()))?;
        keys.extend(page);
        cursor = next;
        if cursor == 0 || keys.len() > MAX_KEYS {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    // Only value keys name records (not leases, locks...).
    keys.retain(|k| sandbox.keys.logical(k).and_then(parse_record_key).is_some());
    let truncated = keys.len() > MAX_KEYS;
    keys.truncate(MAX_KEYS);

    let changed_at = sandbox.changed_at();
    let mut entries = Vec::new();
    for key in keys {
        let Some((kind, id)) = sandbox.keys.logical(&key).and_then(parse_record_key) else {
            continue;
        };
        let mut get = redis::cmd("GET");
        get.arg(&key);
        // The key may expire between SCAN and GET: then it is simply gone.
        let bytes = match redis.query(&get, timeout).await? {
            redis::Value::BulkString(bytes) => bytes,
            _ => continue,
        };
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(&key);
        let ttl_ms: i64 = redis::from_redis_value(redis.query(&pttl, timeout).await?).unwrap_or(-2);
        let row = sandbox
            .database
            .find(kind, id, std::time::Duration::ZERO)
            .execute()
            .await?;
        let entry = Envelope::<Record>::decode(&bytes).ok();
        let stale = match entry.as_ref().map(|e| &e.content) {
            // An invalidation marker is never served (it reads as a miss),
            // so it cannot be stale.
            Some(Content::Invalidated) => false,
            Some(Content::Value(cached)) => row.as_ref() != Some(cached),
            Some(Content::NotFound) => row.is_some(),
            // Bytes that are not an entry are served as nothing (a miss).
            None => false,
        };
        entries.push(DivergenceEntry {
            key,
            kind,
            id,
            cached: match &entry {
                Some(entry) => describe_entry(Some(entry)),
                None => "unreadable".into(),
            },
            database: row.as_ref().map_or_else(|| "no row".into(), describe_record),
            stale,
            changed_at_ms: changed_at.get(&(kind, id)).copied(),
            ttl_secs: if ttl_ms < 0 { ttl_ms } else { (ttl_ms + 999) / 1000 },
        });
    }
    // Stale keys first, then by key.
    entries.sort_by(|a, b| b.stale.cmp(&a.stale).then_with(|| a.key.cmp(&b.key)));
    Ok(DivergenceReport {
        sandbox: sandbox.id.clone(),
        checked_at_ms: now_ms,
        entries,
        truncated,
    })
}
