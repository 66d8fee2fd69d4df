//! Writes in a cache-aside system: the database first, then the cache.
//!
//! Read this beside the tutorial's step 3 and section 4.2. The cache is not
//! the source of truth, so a write never starts there: the row is changed in
//! the database, and only then does the application deal with the copy that
//! Redis may hold. How it deals with it is the sandbox's write strategy, one
//! small function each:
//!
//! - [`CacheAside::invalidate`]: delete the key; the next read misses and
//!   loads the new row.
//! - [`CacheAside::leave_until_ttl`]: do nothing; readers see the old copy
//!   until its TTL runs out.
//! - [`CacheAside::write_through`]: overwrite the key with the new value
//!   (the write-through pattern, shown for comparison).
//!
//! The hybrid strategy picks one of these by data class (see
//! [`shared::WriteStrategy::action_for`]).

use std::time::{Duration, Instant};

use shared::diagram::nodes::{self, PUBLISH, RETURN_WRITTEN, UPDATE_CACHE, WRITE_DATABASE, WRITE_REQUEST};
use shared::{CacheWrite, Kind, RaceFix, Record, StepStatus};

use crate::cache_aside::{encode, CacheAside};
use crate::race::{unique_token, Entry, Lease, DELETED_VERSION};

/// The longest a writer waits for the instances' receipts.
const RECEIPT_WAIT: Duration = Duration::from_millis(500);
use crate::recorder::Recorder;
use crate::store::StoreError;

/// The answer to a write.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteAnswer {
    /// Whether the record existed.
    pub found: bool,
    /// The record after the write (`None` after a delete or if not found).
    pub record: Option<Record>,
    /// What was done to the cache, in words.
    pub cache_action: String,
}

impl CacheAside<'_> {
    /// Changes a record's name.
    ///
    /// # Errors
    /// When the database fails. A cache failure after the database write is
    /// recorded but does not fail the write: the row has changed.
    pub async fn update(
        &self,
        kind: Kind,
        id: u64,
        name: String,
        trace: &mut Recorder,
    ) -> Result<WriteAnswer, StoreError> {
        trace.note(
            WRITE_REQUEST,
            StepStatus::Ok,
            self.describe(&format!("update {kind}/{id}: name = {name:?}")),
        );

        // 1. The database first: if the cache were changed first, a reader
        //    could reload the old row into it before the database changed.
        let call = self.database.update_name(kind, id, name, self.db_latency());
        let record = trace.sql(WRITE_DATABASE, call).await?;

        // 2. Then the cached copy, as the strategy says.
        let cache_action = match &record {
            Some(record) => self.after_write(kind, id, Some(record), trace).await,
            None => "nothing: there is no such record".to_string(),
        };
        trace.note(RETURN_WRITTEN, StepStatus::Ok, cache_action.clone());
        Ok(WriteAnswer {
            found: record.is_some(),
            record,
            cache_action,
        })
    }

    /// Removes a record.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn delete(&self, kind: Kind, id: u64, trace: &mut Recorder) -> Result<WriteAnswer, StoreError> {
        trace.note(
            WRITE_REQUEST,
            StepStatus::Ok,
            self.describe(&format!("delete {kind}/{id}")),
        );

        // 1. The database first.
        let removed = trace
            .sql(WRITE_DATABASE, self.database.delete(kind, id, self.db_latency()))
            .await?;

        // 2. Then the cache. Leaving a deleted record cached means readers
        //    still see it: the "right to be forgotten" case of section 4.2.
        let cache_action = if removed {
            self.after_write(kind, id, None, trace).await
        } else {
            "nothing: there is no such record".to_string()
        };
        trace.note(RETURN_WRITTEN, StepStatus::Ok, cache_action.clone());
        Ok(WriteAnswer {
            found: removed,
            record: None,
            cache_action,
        })
    }

    /// Applies the write strategy to the cached copy. `new` is the record
    /// after the write, `None` after a delete.
    async fn after_write(&self, kind: Kind, id: u64, new: Option<&Record>, trace: &mut Recorder) -> String {
        let key = self.cache_key(kind, id);
        let done = match self.settings.write_strategy.action_for(kind) {
            CacheWrite::Invalidate => self.invalidate(kind, id, new, trace).await,
            // TTL only means no invalidation at all, near copies included.
            CacheWrite::LeaveToTtl => return self.leave_until_ttl(&key, trace).await,
            CacheWrite::WriteThrough => self.write_through(kind, id, new, trace).await,
        };
        match self.publish_invalidation(&key, trace).await {
            Some(published) => format!("{done}; {published}"),
            None => done,
        }
    }

    /// Tutorial step 3.5: with near caches on, every instance holds its own
    /// copy, so the writer drops its own at once and publishes the key on
    /// the sandbox's channel; each instance's subscriber drops its copy.
    /// The writer waits briefly for the receipts, so the trace shows each
    /// instance's delay, and which one missed the message.
    async fn publish_invalidation(&self, key: &str, trace: &mut Recorder) -> Option<String> {
        let fleet = self.fleet.filter(|f| f.enabled() && self.settings.near_cache)?;
        if let Some(me) = self.instance {
            me.near_drop(key);
        }
        let token = unique_token();
        let sent = Instant::now();
        let message = format!("{token} {key}");
        // Count on this fleet's subscribed instances, not on PUBLISH's reply:
        // any other client subscribed to the channel is counted there too.
        let expected = fleet.instances.iter().filter(|i| i.is_subscribed()).count();
        fleet.receipts.expect(&token);
        let published = trace
            .redis(PUBLISH, self.cache.publish(&fleet.channel, &message))
            .await;
        if published.is_err() {
            fleet.receipts.forget(&token);
            return None;
        }
        let receipts = fleet.receipts.collect(&token, expected, RECEIPT_WAIT).await;
        for instance in &fleet.instances {
            let Some(node) = nodes::instance(instance.index) else {
                continue;
            };
            match receipts.iter().find(|(index, _)| *index == instance.index) {
                Some((_, at)) => {
                    let text = format!("instance {} dropped {key} from its near cache", instance.name);
                    trace.received(
                        node,
                        PUBLISH,
                        text,
                        StepStatus::Ok,
                        at.saturating_duration_since(sent),
                    );
                }
                None => {
                    // Pub/Sub delivers at most once: this one is lost.
                    let text = format!(
                        "instance {} missed it (not subscribed): its near copy may be stale for up to {} s",
                        instance.name, self.settings.near_ttl_secs
                    );
                    trace.received(node, PUBLISH, text, StepStatus::Error, Duration::ZERO);
                }
            }
        }
        // The instances' counters changed: tell the watchers.
        fleet.announce();
        Some(format!(
            "published the key; {} of {} instances received it",
            receipts.len(),
            fleet.instances.len()
        ))
    }

    /// Delete on write: drop the key, so the next reader misses and loads
    /// the new row. With a race fix on, the lease is revoked too, or an
    /// invalidation marker replaces the value (see `race.rs`).
    pub async fn invalidate(
        &self,
        kind: Kind,
        id: u64,
        new: Option<&Record>,
        trace: &mut Recorder,
    ) -> String {
        let new_version = new.map(Record::version).unwrap_or(DELETED_VERSION);
        self.invalidate_guarded(kind, id, new_version, trace).await
    }

    /// TTL only: leave the copy alone. We ask Redis how long it has left,
    /// because that is exactly how long readers may see the old value.
    pub async fn leave_until_ttl(&self, key: &str, trace: &mut Recorder) -> String {
        match trace.redis(UPDATE_CACHE, self.cache.ttl(key)).await {
            Ok(-2) => format!("{key} is not cached: the next read loads the new row"),
            Ok(secs) if secs >= 0 => {
                format!("left {key} alone: readers may see the old value for up to {secs} s")
            }
            Ok(_) => format!("left {key} alone, and it has no TTL: it stays stale until deleted"),
            Err(e) => format!("left {key} alone (TTL unknown: {e})"),
        }
    }

    /// Write-through: put the new value in the cache now (or remove the key
    /// after a delete), so readers never miss after a write.
    pub async fn write_through(
        &self,
        kind: Kind,
        id: u64,
        new: Option<&Record>,
        trace: &mut Recorder,
    ) -> String {
        let Some(record) = new else {
            return self.invalidate(kind, id, None, trace).await;
        };
        let key = self.cache_key(kind, id);
        if self.settings.race_fix == RaceFix::Lease {
            // Revoke any reader's lease first, so a reader holding the old
            // row cannot overwrite the value stored below.
            let _ = trace
                .redis(UPDATE_CACHE, self.cache.del(&self.lease_key(kind, id)))
                .await;
        }
        // With version checks this store is guarded like a reader's.
        let value = encode(record);
        let entry = Entry {
            value: &value,
            version: Some(record.version()),
            ttl_ms: self.settings.cache_ttl_secs * 1000,
        };
        if self
            .store_guarded(UPDATE_CACHE, kind, id, entry, &Lease::NotNeeded, trace)
            .await
        {
            format!("stored the new value in {key}")
        } else {
            format!("could not store {key}; a stale copy may live until its TTL")
        }
    }
}
