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
//!   reader takes the key's lease (`SET lease token NX`: one reader at a
//!   time); a write deletes the lease with the key; the reader may store
//!   only while the lease still holds its token. A reader that finds the
//!   lease taken loads all the same but does not store.
//! - **Version checks**: every entry carries its row version in the
//!   envelope header; a write leaves a marker with the new version instead
//!   of deleting; a store never replaces a newer version with an older one.

use std::time::{Duration, Instant};

use crate::cache::{now_ms, Value};
use crate::call::{integer, ok, Call};
use crate::connection::RedisError;
use crate::envelope::{Content, Envelope, DELETED_VERSION, LUA_VERSION_OF};
use crate::observe::{Reply, Status, StepKind};
use crate::options::{bounded, RaceGuard};
use crate::policy::jittered;
use crate::read::Loaded;

/// Stores the entry only if the lease still holds the reader's token, then
/// releases the lease. KEYS: value, lease. ARGV: token, entry, TTL in ms.
/// A TTL of 0 stores with none (`Options::forget_ttl`).
pub const STORE_IF_LEASE_HELD: &str = "if redis.call('GET', KEYS[2]) == ARGV[1] then \
     if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
     else redis.call('SET', KEYS[1], ARGV[2]) end \
     redis.call('DEL', KEYS[2]) return 1 end return 0";

/// Stores the entry unless the key holds a newer version (a value or a
/// marker). KEYS: value. ARGV: entry, its version, TTL in ms (0: none), and whether
/// the caller is a writer (`1`): a writer, who has just committed its row,
/// may replace the marker a delete left, since the record exists again.
pub fn store_if_not_older() -> &'static str {
    static SCRIPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        format!(
            "{LUA_VERSION_OF}local v = version_of(redis.call('GET', KEYS[1])) \
             if v and v > tonumber(ARGV[2]) and not (ARGV[4] == '1' and v == {DELETED_VERSION}) then return 0 end \
             if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) \
             else redis.call('SET', KEYS[1], ARGV[1]) end return 1"
        )
    })
}

/// Deletes the key and its lease, and says whether the key existed.
/// KEYS: value, lease.
pub const DELETE_WITH_LEASE: &str =
    "local n = redis.call('DEL', KEYS[1]) redis.call('DEL', KEYS[2]) return n";

/// What became of an entry the engine tried to store.
pub(crate) enum Stored {
    /// Redis holds it now.
    Yes(Vec<u8>),
    /// Not stored, but still the right answer: negative caching is off, or
    /// Redis failed. (A lock holder still hands it to its waiters.)
    Skipped(Vec<u8>),
    /// A race guard refused it: the value loaded is stale.
    Refused,
    /// Loaded without the lease (another reader held it): this call's own
    /// answer, but a write may have come and gone unseen during the load,
    /// so it is handed to nobody else.
    Unguarded,
}

/// Who stores: a reader (what it loaded) or a writer (what it committed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Reader,
    Writer,
}

/// A reader's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lease {
    /// No lease guard.
    NotNeeded,
    /// This reader holds the lease with this token.
    Held(String),
    /// Another reader holds the lease (or taking it failed): this reader
    /// must not store what it loads, though it is no less right.
    Lost,
}

impl<V: Value> Call<'_, V> {
    /// With the lease guard, takes the lease before loading, unless another
    /// reader holds it (then this one will not store: safe).
    pub(crate) async fn take_lease(&self) -> Lease {
        let RaceGuard::Lease { ttl } = self.options.race_guard else {
            return Lease::NotNeeded;
        };
        let token = format!("{:016x}", self.cache.token());
        let mut set = redis::cmd("SET");
        set.arg(self.cache.inner.keys.lease(self.key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(bounded(ttl)));
        let taken = |reply: &redis::Value| !matches!(reply, redis::Value::Nil);
        match self
            .redis(StepKind::LeaseTaken, &set, |reply| {
                (
                    StepKind::LeaseTaken,
                    if taken(reply) { Status::Hit } else { Status::Miss },
                )
            })
            .await
        {
            Ok(reply) if taken(&reply) => Lease::Held(token),
            _ => Lease::Lost,
        }
    }

    /// Stores what was loaded, or "does not exist", with its TTL (jittered)
    /// as the race guard allows. A failure is reported and otherwise
    /// ignored: the reader has its answer, and the next read misses again.
    pub(crate) async fn store(&self, loaded: &Loaded<V>, lease: &Lease) -> Stored {
        // Missing records get the shorter negative TTL, so a record created
        // later becomes visible soon.
        let ttl = match &loaded.value {
            Some(_) => self.options.ttl,
            None => self.options.negative_ttl.unwrap_or(self.options.ttl),
        };
        // Jitter spreads the expiries of keys cached together.
        let fresh_for = jittered(ttl, self.options.jitter, self.draw_for_jitter());
        let version = loaded.value.as_ref().and_then(|v| self.cache.version_of(v));
        let content = match &loaded.value {
            // Sealed on its way in, if the cache seals; never stored in the
            // clear when sealing fails.
            Some(value) => match self.cache.sealed(self.key, value) {
                Some(sealed) => Content::Value(sealed),
                None => {
                    self.note(StepKind::StoreRefused, Status::Error, Duration::ZERO, Reply::None);
                    return Stored::Refused;
                }
            },
            None => Content::NotFound,
        };
        let envelope = Envelope {
            content,
            version: version.unwrap_or(0),
            fresh_until_ms: now_ms().saturating_add(millis(fresh_for)),
            load_ms: millis(loaded.took),
        };
        // Serializing is part of a store's cost (section 4.4): measured and
        // reported when someone watches.
        let encoding = self.observed().then(Instant::now);
        let Ok(bytes) = envelope.encode(self.options.encoding) else {
            // A value that does not serialize cannot be cached; say so.
            self.note(StepKind::StoreRefused, Status::Error, Duration::ZERO, Reply::None);
            return Stored::Refused;
        };
        // (The header is read again only when someone watches.)
        let told = encoding.and_then(|started| Some((started, crate::envelope::body_of(&bytes)?)));
        if let Some((started, (body, size))) = told {
            self.note(
                StepKind::Encode,
                Status::Ok,
                started.elapsed(),
                Reply::Encoded { body, bytes: size },
            );
        }
        if *lease == Lease::Lost {
            // Another reader holds the lease and will store. (Checked
            // first: an absence loaded without it is no surer.)
            self.note(StepKind::StoreRefused, Status::Miss, Duration::ZERO, Reply::None);
            return Stored::Unguarded;
        }
        if loaded.value.is_none() && self.options.negative_ttl.is_none() {
            // Negative caching is off: "does not exist" is not stored.
            return Stored::Skipped(bytes);
        }
        if loaded.value.is_some() && version.is_none() && self.options.race_guard == RaceGuard::Version {
            // The version guard cannot compare a value without a version:
            // refusing is the safe side (see `Builder::versioned`).
            self.note(StepKind::StoreRefused, Status::Miss, Duration::ZERO, Reply::None);
            return Stored::Refused;
        }
        let ttl = self.options.redis_ttl(fresh_for);
        match self
            .put(
                &bytes,
                version.unwrap_or(0),
                ttl,
                lease,
                StepKind::Store,
                Who::Reader,
            )
            .await
        {
            Put::Stored => {
                // Only what Redis accepted is kept near: a refused value is
                // stale.
                self.keep_near(&loaded.value, fresh_for);
                Stored::Yes(bytes)
            }
            Put::Failed(_) => Stored::Skipped(bytes),
            Put::Refused => Stored::Refused,
        }
    }

    /// Puts `bytes` at the key for `ttl`, through the race guard. `kind`
    /// names the step (a reader's store, a writer's marker).
    pub(crate) async fn put(
        &self,
        bytes: &[u8],
        version: u64,
        ttl: Duration,
        lease: &Lease,
        kind: StepKind,
        who: Who,
    ) -> Put {
        // 0: no TTL at all (the mistake `forget_ttl` demonstrates).
        let ttl_ms = if self.options.forget_ttl {
            0
        } else {
            millis(bounded(ttl))
        };
        let command = match (&self.options.race_guard, lease) {
            (RaceGuard::Lease { .. }, Lease::Lost) => {
                // Without a lease, a write may have come and gone unseen.
                self.note(StepKind::StoreRefused, Status::Miss, Duration::ZERO, Reply::None);
                return Put::Refused;
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
                    .arg(ttl_ms)
                    .arg(u8::from(who == Who::Writer));
                eval
            }
            // No guard: a plain SET with its TTL, in whole seconds when it
            // is (it reads like the tutorial), else in milliseconds.
            _ => {
                let mut set = redis::cmd("SET");
                set.arg(self.redis_key()).arg(bytes);
                if ttl_ms == 0 {
                    // No TTL: stays until deleted or evicted.
                } else if ttl_ms % 1000 == 0 {
                    set.arg("EX").arg(ttl_ms / 1000);
                } else {
                    set.arg("PX").arg(ttl_ms);
                }
                return match self.redis(kind, &set, ok(kind)).await {
                    Ok(_) => Put::Stored,
                    Err(error) => Put::Failed(error),
                };
            }
        };
        // The scripts reply 1 when they stored, 0 when the guard refused.
        let reply = self
            .redis(kind, &command, |reply| match integer(reply) {
                1 => (kind, Status::Ok),
                _ => (StepKind::StoreRefused, Status::Miss),
            })
            .await;
        match reply {
            Ok(value) if integer(&value) == 1 => Put::Stored,
            Ok(_) => Put::Refused,
            Err(error) => Put::Failed(error),
        }
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

/// What became of one guarded `SET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Put {
    Stored,
    Refused,
    /// Redis failed, timed out or refused the command: its error.
    Failed(RedisError),
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
