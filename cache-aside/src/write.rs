//! Writes: the application changes its database first, then tells the
//! engine, which deals with the cached copy (tutorial step 3, section 4.2).
//!
//! The cache is not the source of truth, so a write never starts there: if
//! the cache were changed first, a reader could load the old row back into
//! it before the database changed. After the database write, the policy
//! says what happens to the cached copy:
//!
//! - [`WritePolicy::Invalidate`]: delete it; the next read loads the new
//!   row. With the lease guard the key's lease is revoked too; with the
//!   version guard a marker carrying the new version replaces it.
//! - [`WritePolicy::LeaveToTtl`]: leave it; readers may see the old value
//!   until its TTL runs out.
//! - [`WritePolicy::WriteThrough`]: overwrite it with the new value (the
//!   write-through pattern, for comparison).
//!
//! With near caches on, the writer then drops its own near copy and
//! publishes the key, so every other process drops theirs.

use std::time::Duration;

use crate::cache::{now_ms, CacheAside, Value};
use crate::call::{integer, ok, Call};
use crate::connection::RedisError;
use crate::envelope::{Content, Envelope, DELETED_VERSION};
use crate::guard::{millis, Lease, Put, Who, DELETE_WITH_LEASE};
use crate::observe::{Observer, Reply, Status, Step, StepKind};
use crate::options::bounded;
use crate::options::{Options, RaceGuard};
use crate::retry::{Marker, Owed};

/// What changed in the database.
#[derive(Debug)]
pub enum Change<'a, V> {
    /// The record now has this value.
    Updated(&'a V),
    /// The record is gone.
    Deleted,
}

// A borrow is copied whatever `V` is (a derive would ask `V: Copy`).
impl<V> Clone for Change<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Change<'_, V> {}

/// What to do with the cached copy after the database write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WritePolicy {
    /// Drop it (or fence it, with the version guard).
    Invalidate,
    /// Leave it; its TTL bounds the staleness.
    LeaveToTtl,
    /// Store the new value (after a delete: invalidate).
    WriteThrough,
}

/// What a write did to the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub effect: Effect,
    /// With near caches (or [`crate::Builder::publish_invalidations`]): the
    /// invalidation published to the other processes.
    pub published: Option<Result<Published, RedisError>>,
}

/// What happened to the cached copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `DEL`: the copy is gone (`existed`: there was one). With the lease
    /// guard, the key's lease was deleted too, so a reader loading
    /// meanwhile will not store.
    Deleted { existed: bool, lease_revoked: bool },
    /// Version guard: a marker carrying `version` replaced the copy, so no
    /// older version can be stored. After a delete the version is
    /// [`DELETED_VERSION`] and the marker answers "does not exist".
    Marked { version: u64 },
    /// Version guard: Redis already held a newer version; nothing changed.
    NewerKept,
    /// Left alone, as asked.
    Left(Remaining),
    /// Write-through: the new value is cached.
    WroteThrough,
    /// Write-through: the version guard refused the new value, because
    /// Redis already held a newer one.
    WriteThroughRefused,
    /// Redis failed or refused (its error): the old copy may live until its
    /// TTL. The reason every key has one.
    Failed(RedisError),
    /// Redis failed or refused, and the invalidation is kept: it is sent again until
    /// Redis takes it, and until then this process does not read the key
    /// from Redis (see [`crate::retry`]).
    Pending(RedisError),
}

/// How long a copy left alone still lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remaining {
    /// It was not cached: the next read loads the new row.
    NotCached,
    /// Readers may see the old value for this long.
    Expires(Duration),
    /// It has no TTL: stale until someone deletes it (the engine gives
    /// every entry a TTL, unless `Options::forget_ttl` says not to).
    NoTtl,
}

/// An invalidation sent on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The message's id, which every receiver reports.
    pub message: u64,
    /// How many subscribers Redis delivered it to (any client subscribed to
    /// the channel counts).
    pub receivers: u64,
}

impl<V: Value> CacheAside<V> {
    /// Deals with the cached copy of `key` after the application has changed
    /// its database, with the cache's default options.
    pub async fn after_write(&self, key: &str, change: Change<'_, V>, policy: WritePolicy) -> Written {
        self.after_write_with(key, change, policy, &self.inner.defaults, &*self.inner.observer)
            .await
    }

    /// [`CacheAside::after_write`] with this call's own options and
    /// observer. Never fails: a Redis failure is the [`Effect::Failed`]
    /// effect, since the database has already changed.
    pub async fn after_write_with(
        &self,
        key: &str,
        change: Change<'_, V>,
        policy: WritePolicy,
        options: &Options,
        observer: &dyn Observer,
    ) -> Written {
        let call = Call::new(self, key, options, observer);
        // A load in flight started before this write: later readers must not
        // join it and be handed what it loaded.
        self.inner.flights.forget(key);
        // Looked at before this write's command too: an older debt paid
        // after that command, and settled before the look below, would
        // otherwise go unseen.
        let owed_before = self.inner.pending.owed(key).is_some();
        let effect = match (policy, change) {
            // TTL only means no invalidation at all, near copies included
            // (an older debt of the key stays as it is: at worst its
            // marker fences the record off, and reads go to the database,
            // until the marker's TTL).
            (WritePolicy::LeaveToTtl, _) => {
                return Written {
                    effect: call.leave_to_ttl().await,
                    published: None,
                }
            }
            (WritePolicy::WriteThrough, Change::Updated(value)) => call.write_through(value).await,
            (_, change) => call.invalidate(change).await,
        };
        // Redis is unreachable, but the database has changed: the old copy
        // must not outlive the outage. Keep the invalidation to send again.
        // Also when Redis refused the command (`OOM` over `maxmemory`
        // refuses a marker or a new value): the retry's `DEL` is what Redis
        // takes even then.
        let owed = || match call.marker(change) {
            // Sent again, a marker fences but does not answer "does not
            // exist": by the time it lands, the record may exist again.
            Some(marker) => Owed::Mark(Marker {
                not_found: false,
                ..marker
            }),
            None => Owed::Delete,
        };
        // And when an earlier write of this key still owes Redis, even if
        // this one went through: paid after this write, the older debt
        // would undo it (an old version's fence, or a delete's marker over
        // a record made again). This write's own is owed instead, which is
        // harmless to send again (it costs a miss: a value written through
        // is replaced by its marker, a delete's "does not exist" by a plain
        // fence).
        let pending = &self.inner.pending;
        let failed = matches!(effect, Effect::Failed(_));
        let owes = (failed && options.retry_invalidations) || owed_before || pending.owed(key).is_some();
        if owes {
            pending.add(key, owed(), &self.inner.redis, &self.inner.keys);
        }
        let effect = match effect {
            Effect::Failed(error) if owes => {
                call.note(
                    StepKind::InvalidationPending,
                    Status::Error,
                    Duration::ZERO,
                    Reply::Error(&error),
                );
                Effect::Pending(error)
            }
            effect => effect,
        };
        // Near copies, in this process and the others, go too (tutorial
        // step 3.5), if this call keeps any or the handle was told others do.
        let published = if options.near_ttl.is_some() || self.inner.publishes {
            Some(call.publish_invalidation().await)
        } else {
            None
        };
        Written { effect, published }
    }
}

impl<V: Value> Call<'_, V> {
    /// Invalidates the cached copy, as the race guard says.
    async fn invalidate(&self, change: Change<'_, V>) -> Effect {
        match self.marker(change) {
            Some(marker) => self.mark(marker).await,
            // Without a version to fence with, deleting is the safe choice.
            None => self.delete().await,
        }
    }

    /// The version guard's marker for this change: the new version, or
    /// "deleted" (which answers "does not exist" with negative caching
    /// on). None without the version guard, or without a version.
    fn marker(&self, change: Change<'_, V>) -> Option<Marker> {
        if self.options.race_guard != RaceGuard::Version {
            return None;
        }
        let (version, not_found, ttl) = match change {
            Change::Updated(value) => (self.cache.version_of(value)?, false, self.options.ttl),
            Change::Deleted => match self.options.negative_ttl {
                Some(ttl) => (DELETED_VERSION, true, ttl),
                None => (DELETED_VERSION, false, self.options.ttl),
            },
        };
        let fresh_ms = millis(bounded(ttl));
        Some(Marker {
            version,
            not_found,
            fresh_ms,
            ttl_ms: if self.options.forget_ttl { 0 } else { fresh_ms },
        })
    }

    /// `DEL key` (with the lease guard, the key's lease goes too, in one
    /// atomic script that still says whether the key existed).
    async fn delete(&self) -> Effect {
        let lease_revoked = matches!(self.options.race_guard, RaceGuard::Lease { .. });
        let command = if lease_revoked {
            let mut eval = redis::cmd("EVAL");
            eval.arg(DELETE_WITH_LEASE)
                .arg(2)
                .arg(self.redis_key())
                .arg(self.cache.inner.keys.lease(self.key));
            eval
        } else {
            let mut del = redis::cmd("DEL");
            del.arg(self.redis_key());
            del
        };
        match self
            .redis(StepKind::Invalidate, &command, ok(StepKind::Invalidate))
            .await
        {
            Ok(reply) => Effect::Deleted {
                existed: integer(&reply) > 0,
                lease_revoked,
            },
            Err(error) => Effect::Failed(error),
        }
    }

    /// Version guard: replaces the copy with a marker carrying the new
    /// version, unless Redis holds a newer one. After a delete the marker
    /// says "does not exist" (with negative caching on), so readers need not
    /// ask the database.
    async fn mark(&self, marker: Marker) -> Effect {
        let Some(bytes) = marker.bytes(now_ms()) else {
            return self.delete().await;
        };
        match self
            .put(
                &bytes,
                marker.version,
                Duration::from_millis(marker.fresh_ms),
                &Lease::NotNeeded,
                StepKind::Invalidate,
                Who::Writer,
            )
            .await
        {
            Put::Stored => Effect::Marked {
                version: marker.version,
            },
            Put::Refused => Effect::NewerKept,
            Put::Failed(error) => Effect::Failed(error),
        }
    }

    /// `PTTL key`: how long the old copy will still be served.
    async fn leave_to_ttl(&self) -> Effect {
        let mut ttl = redis::cmd("PTTL");
        ttl.arg(self.redis_key());
        match self.redis(StepKind::Expiry, &ttl, ok(StepKind::Expiry)).await {
            Ok(reply) => Effect::Left(match integer(&reply) {
                -2 => Remaining::NotCached,
                ms if ms >= 0 => Remaining::Expires(Duration::from_millis(ms as u64)),
                _ => Remaining::NoTtl,
            }),
            Err(error) => Effect::Failed(error),
        }
    }

    /// Write-through: store the new value now, so readers never miss after
    /// a write. With the lease guard, readers' leases are revoked first, so
    /// a reader holding the old row cannot overwrite it; with the version
    /// guard, the store is checked like a reader's.
    async fn write_through(&self, value: &V) -> Effect {
        if matches!(self.options.race_guard, RaceGuard::Lease { .. }) {
            let mut del = redis::cmd("DEL");
            del.arg(self.cache.inner.keys.lease(self.key));
            if let Err(error) = self
                .redis(StepKind::Invalidate, &del, ok(StepKind::Invalidate))
                .await
            {
                return Effect::Failed(error);
            }
        }
        let version = self.cache.version_of(value);
        if version.is_none() && self.options.race_guard == RaceGuard::Version {
            // Nothing to fence with: delete instead (see `invalidate`).
            return self.delete().await;
        }
        // Not sealable: delete rather than cache in the clear.
        let Some(sealed) = self.cache.sealed(self.key, value) else {
            return self.delete().await;
        };
        let envelope = Envelope {
            content: Content::Value(sealed),
            version: version.unwrap_or(0),
            fresh_until_ms: now_ms().saturating_add(millis(bounded(self.options.ttl))),
            load_ms: 0,
        };
        let Ok(bytes) = envelope.encode(self.options.encoding) else {
            return self.delete().await;
        };
        let ttl = self.options.redis_ttl(self.options.ttl);
        // (No near copy is kept here: the invalidation this write publishes
        // next drops it in every process, this one included.)
        match self
            .put(
                &bytes,
                version.unwrap_or(0),
                ttl,
                &Lease::NotNeeded,
                StepKind::Store,
                Who::Writer,
            )
            .await
        {
            Put::Stored => Effect::WroteThrough,
            Put::Refused => Effect::WriteThroughRefused,
            Put::Failed(error) => Effect::Failed(error),
        }
    }

    /// Tutorial step 3.5: drop this process's near copy now, and publish
    /// the key so every other process drops theirs.
    async fn publish_invalidation(&self) -> Result<Published, RedisError> {
        if let Some(near) = &self.cache.inner.near {
            near.remove(self.key);
        }
        let message = self.cache.token();
        let mut publish = self.cache.inner.redis.publish_command();
        publish
            .arg(self.cache.inner.keys.invalidation_channel())
            .arg(format!("{message} {}", self.key));
        self.pause(StepKind::Publish).await;
        let started = std::time::Instant::now();
        let result = self
            .cache
            .inner
            .redis
            .query(&publish, self.cache.inner.timeout)
            .await;
        let (reply, status) = match &result {
            Ok(value) => (Reply::Value(value), Status::Ok),
            Err(error) => (Reply::Error(error), Status::Error),
        };
        self.observer.step(&Step {
            kind: StepKind::Publish,
            key: self.key,
            command: Some(&publish),
            reply,
            status,
            took: started.elapsed(),
            message: Some(message),
        });
        let receivers = integer(&result?);
        Ok(Published {
            message,
            receivers: receivers.max(0) as u64,
        })
    }
}
