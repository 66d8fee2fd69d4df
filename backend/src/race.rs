//! Fixes for the stale-set race (tutorial section 4.2, "invalidation timing").
//!
//! The race: a reader misses and loads row version 1 from the database; a
//! writer then updates the row to version 2 and deletes the cached key; the
//! reader, still holding version 1, stores it. The cache now serves the old
//! row until its TTL runs out, although every step followed the pattern.
//!
//! Two fixes, each a pair of small functions (one for the reader's store,
//! one for the writer's invalidation), each atomic inside Redis thanks to a
//! Lua script (nothing else runs between a script's steps):
//!
//! - **Leases**, in the style of Facebook's memcache: on a miss the reader
//!   takes a lease (a token in a lease key) before it reads the database; a
//!   write deletes the lease along with the key; the reader may store only
//!   while the lease still holds its own token.
//! - **Version checks**: every cached value carries its row version; a write
//!   leaves an "invalidated at version N" marker instead of deleting the key;
//!   a store never replaces a newer version with an older one.

use std::sync::atomic::{AtomicU64, Ordering};

use shared::diagram::nodes::{CHECK_CACHE, UPDATE_CACHE};
use shared::{Kind, NodeId, RaceFix, StepStatus};

use crate::cache_aside::CacheAside;
use crate::recorder::Recorder;

/// Stores the value only if the lease still holds this reader's token, then
/// releases the lease. KEYS: cache key, lease key. ARGV: token, value, TTL
/// in milliseconds.
pub const STORE_IF_LEASE_HELD: &str = "if redis.call('GET', KEYS[2]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) redis.call('DEL', KEYS[2]) return 1 end return 0";

/// Stores the value unless the key holds a newer version, as a value or as
/// an invalidation marker. KEYS: cache key. ARGV: value, its version, TTL
/// in milliseconds.
pub const STORE_IF_NOT_OLDER: &str = r#"local cur = redis.call('GET', KEYS[1]) if cur then local v = string.match(cur, '"version":(%d+)') or string.match(cur, '^<invalidated:v(%d+)>$') if v and tonumber(v) > tonumber(ARGV[2]) then return 0 end end redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) return 1"#;

/// How long a lease lasts, in milliseconds. A reader slower than this loses
/// its lease and simply does not cache (safe); it never blocks writers.
pub const LEASE_MS: u64 = 10_000;

/// The version an invalidation marker carries after a delete: larger than
/// any row version, and exact in Lua's numbers (2^53 - 1).
pub const DELETED_VERSION: u64 = 9_007_199_254_740_991;

/// The marker a version-checked write leaves in place of the value.
pub fn invalidation_marker(version: u64) -> String {
    format!("<invalidated:v{version}>")
}

/// The version in an invalidation marker, if `cached` is one.
pub fn marker_version(cached: &str) -> Option<u64> {
    cached
        .strip_prefix("<invalidated:v")?
        .strip_suffix('>')?
        .parse()
        .ok()
}

/// A reader's lease, when the lease fix is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Leases are off, or the caller is a writer storing the newest value.
    NotNeeded,
    /// This reader holds the lease with this token.
    Held(String),
    /// Taking the lease failed: the reader must not cache.
    Lost,
}

/// A value to store in the cache, with what the guards need to know.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// What to store: a record's JSON or the missing marker.
    pub value: &'a str,
    /// The row version the value was made from (`None` for the marker).
    pub version: Option<u64>,
    /// How long it lives, in milliseconds.
    pub ttl_ms: u64,
}

/// A token unique within this process, for leases and messages.
pub(crate) fn unique_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl CacheAside<'_> {
    /// The lease key of a record: `cache:{sandbox}:lease:user:42`.
    pub fn lease_key(&self, kind: Kind, id: u64) -> String {
        format!(
            "{}{}:lease:{}:{id}",
            self.settings.key_prefix,
            self.sandbox,
            kind.key_segment()
        )
    }

    /// With leases on, takes a lease before the database read. A later
    /// lease by another reader replaces it, which only means this reader
    /// will not cache: safe either way.
    pub async fn take_lease(&self, kind: Kind, id: u64, trace: &mut Recorder) -> Lease {
        if self.settings.race_fix != RaceFix::Lease {
            return Lease::NotNeeded;
        }
        let token = unique_token();
        let call = self.cache.set_px(&self.lease_key(kind, id), &token, LEASE_MS);
        match trace.redis(CHECK_CACHE, call).await {
            Ok(()) => Lease::Held(token),
            // Without a lease this reader must not cache what it loads.
            Err(_) => Lease::Lost,
        }
    }

    /// Stores `entry` at `node` of the diagram, as the race fix in force
    /// allows: with leases only while `lease` still holds; with versions
    /// only if Redis holds nothing newer. Returns whether it was stored.
    pub async fn store_guarded(
        &self,
        node: NodeId,
        kind: Kind,
        id: u64,
        entry: Entry<'_>,
        lease: &Lease,
        trace: &mut Recorder,
    ) -> bool {
        let Entry {
            value,
            version,
            ttl_ms: ttl,
        } = entry;
        let key = self.cache_key(kind, id);
        let ttl_text = ttl.to_string();
        let call = match (self.settings.race_fix, lease, version) {
            (RaceFix::Lease, Lease::Lost, _) => {
                trace.note(node, StepStatus::Miss, "no lease: not caching what was loaded");
                return false;
            }
            (RaceFix::Lease, Lease::Held(token), _) => {
                let lease_key = self.lease_key(kind, id);
                self.cache.eval(
                    STORE_IF_LEASE_HELD,
                    &[&key, &lease_key],
                    &[token.as_str(), value, &ttl_text],
                )
            }
            (RaceFix::Version, _, Some(version)) => self.cache.eval(
                STORE_IF_NOT_OLDER,
                &[&key],
                &[value, &version.to_string(), &ttl_text],
            ),
            // No fix (or nothing to guard): a plain SET with its TTL.
            _ => {
                let call = self.cache.set_ttl(&key, value, ttl);
                return trace.redis(node, call).await.is_ok();
            }
        };
        // 1: stored; 0: refused, because the value is stale.
        matches!(trace.redis(node, call).await, Ok(1))
    }

    /// The writer's side of delete-on-write, as the race fix in force says:
    /// a plain `DEL`; with leases, `DEL` of the key and its lease; with
    /// versions, an invalidation marker carrying `new_version`.
    pub async fn invalidate_guarded(
        &self,
        kind: Kind,
        id: u64,
        new_version: u64,
        trace: &mut Recorder,
    ) -> String {
        let key = self.cache_key(kind, id);
        let result = match self.settings.race_fix {
            RaceFix::None => trace
                .redis(UPDATE_CACHE, self.cache.del(&key))
                .await
                .map(|removed| {
                    if removed > 0 {
                        format!("deleted {key}")
                    } else {
                        format!("sent DEL {key} (it was not cached)")
                    }
                }),
            RaceFix::Lease => {
                let lease_key = self.lease_key(kind, id);
                trace
                    .redis(UPDATE_CACHE, self.cache.del2(&key, &lease_key))
                    .await
                    .map(|_| format!("deleted {key} and revoked its lease"))
            }
            RaceFix::Version => {
                let marker = invalidation_marker(new_version);
                let ttl = (self.settings.cache_ttl_secs * 1000).to_string();
                let call = self.cache.eval(
                    STORE_IF_NOT_OLDER,
                    &[&key],
                    &[&marker, &new_version.to_string(), &ttl],
                );
                trace.redis(UPDATE_CACHE, call).await.map(|stored| match stored {
                    1 => format!("marked {key} invalidated at version {new_version}"),
                    _ => format!("{key} already holds a newer version"),
                })
            }
        };
        match result {
            Ok(done) => format!("{done}: the next read loads the new row"),
            // The row has changed but the old copy may survive until its
            // TTL: the reason every key has one.
            Err(e) => {
                format!("could not invalidate {key} ({e}); a stale copy may live until its TTL")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_markers_carry_their_version() {
        assert_eq!(marker_version(&invalidation_marker(7)), Some(7));
        assert_eq!(marker_version(r#"{"id":1,"version":7}"#), None);
        assert_eq!(
            marker_version(&invalidation_marker(DELETED_VERSION)),
            Some(DELETED_VERSION)
        );
    }
}
