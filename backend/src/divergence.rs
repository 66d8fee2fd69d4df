//! The divergence check: what Redis holds against what the database holds.
//!
//! It reads the cached copy of every record the sandbox's ledger says it
//! may hold (`MGET`, a page at a time: never a walk of the whole shared
//! key space), reads each row, and flags the copies that disagree: stale
//! data, the consequence of the invalidation timing issues of the
//! tutorial's section 4.2.

use cache_aside::{Content, RedisError};
use shared::{DivergenceEntry, DivergenceReport};

use crate::policies::{describe_entry, describe_record, record_key};
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
    // Which of the records the sandbox may hold are in Redis now.
    let mut cached = Vec::new();
    let mut truncated = false;
    for page in sandbox.held_records().chunks(100) {
        let mut mget = redis::cmd("MGET");
        for (kind, id) in page {
            mget.arg(sandbox.keys.value(&record_key(*kind, *id)));
        }
        let values: Vec<Option<Vec<u8>>> = redis::from_redis_value(redis.query(&mget, timeout).await?)
            .map_err(|e| RedisError::Failed(e.to_string()))?;
        for (record, value) in page.iter().zip(values) {
            if let Some(bytes) = value {
                cached.push((*record, bytes));
            }
        }
        if cached.len() > MAX_KEYS {
            truncated = true;
            cached.truncate(MAX_KEYS);
            break;
        }
    }

    let changed_at = sandbox.changed_at();
    let mut entries = Vec::new();
    for ((kind, id), bytes) in cached {
        let key = sandbox.keys.value(&record_key(kind, id));
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(&key);
        let ttl_ms: i64 = redis::from_redis_value(redis.query(&pttl, timeout).await?).unwrap_or(-2);
        let row = sandbox
            .database
            .find(kind, id, std::time::Duration::ZERO)
            .execute()
            .await?;
        // Compared opened (phone numbers unsealed); shown as it rests.
        let entry = sandbox.decode_entry(&key, &bytes);
        let stale = match entry
            .as_ref()
            .and_then(|(_, opened)| opened.as_ref())
            .map(|e| &e.content)
        {
            // An invalidation marker is never served (it reads as a miss),
            // so it cannot be stale.
            Some(Content::Invalidated) => false,
            // Filler (a padded sandbox) is not part of the row.
            Some(Content::Value(cached)) => row.as_ref() != Some(&cached.unpadded()),
            Some(Content::NotFound) => row.is_some(),
            // Bytes that are not an entry, or do not open here, are served
            // as nothing (a miss).
            None => false,
        };
        entries.push(DivergenceEntry {
            key,
            kind,
            id,
            cached: match &entry {
                Some((sealed, Some(_))) => describe_entry(Some(sealed)),
                Some((sealed, None)) => {
                    format!("{} (cannot be opened here: a miss)", describe_entry(Some(sealed)))
                }
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
