//! The divergence check: what Redis holds against what the database holds.
//!
//! It walks the sandbox's cache keys with `SCAN` (never `KEYS`, which blocks
//! Redis while it walks everything), reads each cached copy and its row, and
//! flags the copies that disagree: stale data, the consequence of the
//! invalidation timing issues of the tutorial's section 4.2.

use std::collections::HashMap;

use shared::{DivergenceEntry, DivergenceReport, Kind, Record, SandboxId};

use crate::cache::{Cache, CacheError};
use crate::cache_aside::MISSING_MARKER;
use crate::race::marker_version;
use crate::store::{Database, StoreError};

/// The most keys one report shows.
pub const MAX_KEYS: usize = 200;

/// Why the check could not run. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum DivergenceError {
    /// Occurs when Redis fails during the walk.
    #[error("Redis failed during the check: {0}")]
    Cache(#[from] CacheError),
    /// Occurs when the database fails.
    #[error("the database failed during the check: {0}")]
    Database(#[from] StoreError),
}

/// Compares every cached key of `sandbox` (up to [`MAX_KEYS`]) with its row.
/// `changed_at` maps `(kind, id)` to when the row last changed.
///
/// # Errors
/// [`DivergenceError`].
pub async fn check(
    cache: &Cache,
    database: &Database,
    key_prefix: &str,
    sandbox: &SandboxId,
    changed_at: &HashMap<(Kind, u64), u64>,
    now_ms: u64,
) -> Result<DivergenceReport, DivergenceError> {
    let pattern = format!("{key_prefix}{sandbox}:*");
    let mut keys = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, page) = cache.run(cache.scan(cursor, &pattern, 100)).await?;
        keys.extend(page);
        cursor = next;
        if cursor == 0 || keys.len() > MAX_KEYS {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    let truncated = keys.len() > MAX_KEYS;
    keys.truncate(MAX_KEYS);

    let mut entries = Vec::new();
    for key in keys {
        let Some((kind, id)) = parse_key(&key, key_prefix, sandbox) else {
            continue;
        };
        // The key may expire between SCAN and GET: then it is simply gone.
        let Some(cached) = cache.run(cache.get(&key)).await? else {
            continue;
        };
        let ttl_secs = cache.run(cache.ttl(&key)).await?;
        let row = database
            .find(kind, id, std::time::Duration::ZERO)
            .execute()
            .await?;
        // An invalidation marker is never served (it reads as a miss), so
        // it cannot be stale.
        if let Some(version) = marker_version(&cached) {
            entries.push(DivergenceEntry {
                key,
                kind,
                id,
                cached: format!("invalidated at version {version}"),
                database: row.as_ref().map(describe).unwrap_or_else(|| "no row".into()),
                stale: false,
                changed_at_ms: changed_at.get(&(kind, id)).copied(),
                ttl_secs,
            });
            continue;
        }
        let cached_record = (cached != MISSING_MARKER).then(|| serde_json::from_str::<Record>(&cached).ok());
        let stale = match (&cached_record, &row) {
            (None, None) => false,
            (Some(Some(c)), Some(r)) => c != r,
            _ => true,
        };
        entries.push(DivergenceEntry {
            key,
            kind,
            id,
            cached: match &cached_record {
                None => "missing".into(),
                Some(Some(r)) => describe(r),
                Some(None) => "unreadable".into(),
            },
            database: row.as_ref().map(describe).unwrap_or_else(|| "no row".into()),
            stale,
            changed_at_ms: changed_at.get(&(kind, id)).copied(),
            ttl_secs,
        });
    }
    // Stale keys first, then by key.
    entries.sort_by(|a, b| b.stale.cmp(&a.stale).then_with(|| a.key.cmp(&b.key)));
    Ok(DivergenceReport {
        sandbox: sandbox.clone(),
        checked_at_ms: now_ms,
        entries,
        truncated,
    })
}

fn describe(record: &Record) -> String {
    format!("{} (version {})", record.title(), record.version())
}

/// `cache:tab-1:user:42` → `(Users, 42)`.
fn parse_key(key: &str, prefix: &str, sandbox: &SandboxId) -> Option<(Kind, u64)> {
    let rest = key
        .strip_prefix(prefix)?
        .strip_prefix(sandbox.as_str())?
        .strip_prefix(':')?;
    let (segment, id) = rest.split_once(':')?;
    let kind = Kind::ALL.into_iter().find(|k| k.key_segment() == segment)?;
    Some((kind, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_to_records() {
        let sandbox = SandboxId::parse("tab-1").unwrap();
        assert_eq!(
            parse_key("cache:tab-1:user:42", "cache:", &sandbox),
            Some((Kind::Users, 42))
        );
        assert_eq!(
            parse_key("cache:tab-1:product:7", "cache:", &sandbox),
            Some((Kind::Products, 7))
        );
        assert_eq!(parse_key("cache:tab-2:user:42", "cache:", &sandbox), None);
        assert_eq!(parse_key("cache:tab-1:lease:user:42", "cache:", &sandbox), None);
    }
}
