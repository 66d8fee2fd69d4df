//! Storing an entry, as the race guard allows (tutorial section 4.2).
//!
//! The stale-set race: a reader misses and loads row version 1; a writer
//! updates the row to version 2 and invalidates the key; the reader, still
//! holding version 1, stores it. Redis now serves the old row until its TTL
//! runs out, although every step followed the pattern. Two guards, each a
//! Lua script so that the check and the store happen as one step inside
//! Redis (nothing else runs between a script's commands):
//!
//! - **Leases**, in the style of Facebook's memcache: before loading, the
//!   reader puts a token in the key's lease; a write deletes the lease with
//!   the key; the reader may store only while the lease still holds its
//!   token.
//! - **Version checks**: every entry carries its row version in the
//!   envelope header; a write leaves a marker with the new version instead
//!   of deleting; a store never replaces a newer version with an older one.

use std::time::Duration;

use crate::cache::{now_ms, Value};
use crate::call::{integer, ok, Call};
use crate::envelope::{Content, Envelope, LUA_VERSION_OF};
use crate::observe::{Reply, Status, StepKind};
use crate::options::RaceGuard;
use crate::policy::jittered;
use crate::read::Loaded;

/// Stores the entry only if the lease still holds the reader's token, then
/// releases the lease. KEYS: value, lease. ARGV: token, entry, TTL in ms.
pub const STORE_IF_LEASE_HELD: &str = "if redis.call('GET', KEYS[2]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) redis.call('DEL', KEYS[2]) return 1 end return 0";

/// Stores the entry unless the key holds a newer version (a value or a
/// marker). KEYS: value. ARGV: entry, its version, TTL in ms.
pub fn store_if_not_older() -> &'static str {
    static SCRIPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        format!(
            "{LUA_VERSION_OF}local v = version_of(redis.call('GET', KEYS[1])) \
             if v and v > tonumber(ARGV[2]) then return 0 end \
             redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) return 1"
        )
    })
}

/// A reader's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lease {
    /// No lease guard.
    NotNeeded,
    /// This reader holds the lease with this token.
    Held(String),
    /// Taking the lease failed: the reader must not store what it loads.
    Lost,
}

impl<V: Value> Call<'_, V> {
    /// With the lease guard, takes a lease before loading. A later reader
    /// replaces it, which only means this one will not store: safe.
    pub(crate) async fn take_lease(&self) -> Lease {
        let RaceGuard::Lease { ttl } = self.options.race_guard else {
            return Lease::NotNeeded;
        };
        let token = format!("{:016x}", self.cache.token());
        let mut set = redis::cmd("SET");
        set.arg(self.cache.inner.keys.lease(self.key))
            .arg(&token)
            .arg("PX")
            .arg(millis(ttl));
        match self
            .redis(StepKind::LeaseTaken, &set, ok(StepKind::LeaseTaken))
            .await
        {
            Ok(_) => Lease::Held(token),
            Err(_) => Lease::Lost,
        }
    }

    /// Stores what was loaded, or "does not exist", with its TTL (jittered)
    /// as the race guard allows. Returns the envelope if Redis took it.
    /// A failure is reported and otherwise ignored: the reader has its
    /// answer, and the next read simply misses again.
    pub(crate) async fn store(&self, loaded: &Loaded<V>, lease: &Lease) -> Option<Vec<u8>> {
        // Missing records get the shorter negative TTL, so a record created
        // later becomes visible soon; with negative caching off, nothing.
        let ttl = match &loaded.value {
            Some(_) => self.options.ttl,
            None => self.options.negative_ttl?,
        };
        // Jitter spreads the expiries of keys cached together.
        let fresh_for = jittered(ttl, self.options.jitter.clamp(0.0, 0.9), self.draw_for_jitter());
        let version = loaded
            .value
            .as_ref()
            .and_then(|v| self.cache.version_of(v))
            .unwrap_or(0);
        let envelope = Envelope {
            content: match &loaded.value {
                Some(value) => Content::Value(value.clone()),
                None => Content::NotFound,
            },
            version,
            fresh_until_ms: now_ms() + millis(fresh_for),
            load_ms: millis(loaded.took),
        };
        let Ok(bytes) = envelope.encode() else {
            // A value that does not serialize cannot be cached; say so.
            self.note(StepKind::StoreRefused, Status::Error, Duration::ZERO, Reply::None);
            return None;
        };
        let stored = self
            .put(
                &bytes,
                version,
                self.options.redis_ttl(fresh_for),
                lease,
                StepKind::Store,
            )
            .await;
        if stored {
            // Only what Redis accepted is kept near: a refused value is stale.
            self.keep_near(&loaded.value, fresh_for);
        }
        stored.then_some(bytes)
    }

    /// Puts `bytes` at the key for `ttl`, through the race guard. `kind`
    /// names the step (a reader's store, a writer's marker). Returns whether
    /// Redis took it.
    pub(crate) async fn put(
        &self,
        bytes: &[u8],
        version: u64,
        ttl: Duration,
        lease: &Lease,
        kind: StepKind,
    ) -> bool {
        let ttl_ms = millis(ttl).max(1);
        let command = match (&self.options.race_guard, lease) {
            (RaceGuard::Lease { .. }, Lease::Lost) => {
                // Without a lease, a write may have come and gone unseen.
                self.note(StepKind::StoreRefused, Status::Miss, Duration::ZERO, Reply::None);
                return false;
            }
            (RaceGuard::Lease { .. }, Lease::Held(token)) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(STORE_IF_LEASE_HELD)
                    .arg(2)
                    .arg(self.redis_key())
                    .arg(self.cache.inner.keys.lease(self.key))
                    .arg(token)
                    .arg(bytes)
                    .arg(ttl_ms);
                eval
            }
            (RaceGuard::Version, _) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(store_if_not_older())
                    .arg(1)
                    .arg(self.redis_key())
                    .arg(bytes)
                    .arg(version)
                    .arg(ttl_ms);
                eval
            }
            // No guard: a plain SET with its TTL, in whole seconds when it
            // is (it reads like the tutorial), else in milliseconds.
            _ => {
                let mut set = redis::cmd("SET");
                set.arg(self.redis_key()).arg(bytes);
                if ttl_ms % 1000 == 0 {
                    set.arg("EX").arg(ttl_ms / 1000);
                } else {
                    set.arg("PX").arg(ttl_ms);
                }
                let stored = self.redis(kind, &set, ok(kind)).await;
                return stored.is_ok();
            }
        };
        // The scripts reply 1 when they stored, 0 when the guard refused.
        let reply = self
            .redis(kind, &command, |reply| match integer(reply) {
                1 => (kind, Status::Ok),
                _ => (StepKind::StoreRefused, Status::Miss),
            })
            .await;
        matches!(reply, Ok(ref value) if integer(value) == 1)
    }

    /// A draw for jitter, only when jitter is on.
    fn draw_for_jitter(&self) -> f64 {
        if self.options.jitter > 0.0 {
            self.cache.inner.random.next_unit()
        } else {
            0.5
        }
    }
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
