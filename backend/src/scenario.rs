//! Preset scenarios: experiments the back end drives step by step, so a
//! learner can watch an interleaving that is hard to produce by hand.

use std::sync::Arc;
use std::time::Duration;

use shared::diagram::nodes::STORE_IN_CACHE;
use shared::{
    Kind, Origin, RaceFix, Record, SandboxId, ScenarioResult, WriteChange, WriteStrategy, MAX_NAME_LEN,
};

use crate::cache_aside::MISSING_MARKER;
use crate::playground::{OpError, Playground, ReadOptions, WriteOptions};
use crate::race::marker_version;

/// How long the scenario waits for the reader to reach its breakpoint.
const REACH_BREAKPOINT: Duration = Duration::from_secs(10);

impl Playground {
    /// The stale-set race on one record, with the sandbox's race fix:
    ///
    /// 1. a reader misses and loads the row, then pauses before storing it;
    /// 2. a writer updates the row and invalidates the key (delete on write);
    /// 3. the reader goes on and stores what it loaded.
    ///
    /// Without a fix, Redis ends up holding the old row; with leases or
    /// version checks the reader's store is refused.
    ///
    /// # Errors
    /// [`OpError`] when the record does not exist or a step fails.
    pub async fn stale_set_race(
        self: &Arc<Self>,
        sandbox_id: &SandboxId,
        kind: Kind,
        id: u64,
    ) -> Result<ScenarioResult, OpError> {
        shared::check_id(id)?;
        let sandbox = self.sandbox(sandbox_id)?;
        let settings = sandbox.settings();
        let probe = sandbox.engine(&settings, None);
        let (key, lease_key) = (probe.cache_key(kind, id), probe.lease_key(kind, id));
        let mut story = Vec::new();

        // 0. Start cold, so the reader misses.
        let _ = sandbox.cache.run(sandbox.cache.del2(&key, &lease_key)).await;
        // Near copies too: the reader must miss all the way to the database.
        for instance in &sandbox.fleet.instances {
            instance.near_drop(&key);
        }
        let before = sandbox.database.find(kind, id, Duration::ZERO).execute().await?;
        let Some(before) = before else {
            return Err(
                shared::InputError::IdOutOfRange(format!("{id} (no such {kind} in this sandbox)")).into(),
            );
        };
        story.push(format!("Cleared {key} so the reader misses."));

        // 1. The reader, paused before it stores what it loaded.
        let operation_id = self.next_operation_id();
        let reader = {
            let playground = self.clone();
            let sandbox_id = sandbox_id.clone();
            let options = ReadOptions {
                pause_before: vec![STORE_IN_CACHE],
                operation_id: Some(operation_id),
                instance: None,
            };
            tokio::spawn(async move {
                playground
                    .read_with(&sandbox_id, kind, id, Origin::Scenario, options)
                    .await
            })
        };
        // Long enough for a slow (simulated) database and a few Redis
        // round trips.
        let latency = settings.db_latency_ms * (100 + settings.db_jitter_percent) / 100;
        let reach = Duration::from_millis(latency + 4 * settings.redis_timeout_ms) + REACH_BREAKPOINT;
        if !sandbox.wait_until_held(operation_id, reach).await {
            // If it got there just now, let it go before dropping it.
            sandbox.release(operation_id);
            reader.abort();
            return Err(
                shared::InputError::BadSetting("the reader did not reach its breakpoint".into()).into(),
            );
        }
        story.push(format!(
            "Reader: missed, loaded {:?} (version {}) from the database, and paused before storing it.",
            before.title(),
            before.version()
        ));

        // 2. The writer: the database first, then delete on write.
        let base = before.title().trim_end_matches(" (edited)");
        let name: String = format!("{base} (edited)").chars().take(MAX_NAME_LEN).collect();
        let writer_settings = shared::SandboxSettings {
            write_strategy: WriteStrategy::DeleteOnWrite,
            ..settings.clone()
        };
        let written = self
            .write_with(
                sandbox_id,
                kind,
                id,
                WriteChange::Update { name },
                Origin::Scenario,
                WriteOptions {
                    settings: Some(writer_settings),
                    instance: None,
                },
            )
            .await?;
        let after = written.record.clone();
        story.push(format!(
            "Writer: updated the row to version {} and {}.",
            after.as_ref().map(Record::version).unwrap_or_default(),
            written.cache_action
        ));

        // 3. The reader goes on and tries to store the row it loaded.
        sandbox.release(operation_id);
        reader
            .await
            .map_err(|e| shared::InputError::BadSetting(format!("the reader failed: {e}")))??;

        // 4. What does Redis hold now, against the database?
        let cached = sandbox.cache.run(sandbox.cache.get(&key)).await.ok().flatten();
        let row = sandbox.database.find(kind, id, Duration::ZERO).execute().await?;
        let cached_record = cached
            .as_deref()
            .and_then(|c| serde_json::from_str::<Record>(c).ok());
        let stale = matches!((&cached_record, &row), (Some(c), Some(r)) if c != r);
        story.push(match (stale, settings.race_fix) {
            (true, _) => format!(
                "Reader: stored version {}. Redis now serves the old row until its TTL ({} s) runs out.",
                before.version(),
                settings.cache_ttl_secs
            ),
            (false, RaceFix::Lease) => {
                "Reader: its lease had been revoked by the write, so the store was refused. Nothing stale."
                    .into()
            }
            (false, RaceFix::Version) => {
                "Reader: Redis held a newer version marker, so the older version was refused. Nothing stale."
                    .into()
            }
            (false, RaceFix::None) => "Reader: the store did not happen. Nothing stale.".into(),
        });
        Ok(ScenarioResult {
            fix: settings.race_fix,
            stale,
            cached: describe_cached(cached.as_deref()),
            database: row
                .map(|r| format!("{} (version {})", r.title(), r.version()))
                .unwrap_or_else(|| "no row".into()),
            story,
        })
    }
}

fn describe_cached(cached: Option<&str>) -> String {
    match cached {
        None => "nothing".into(),
        Some(MISSING_MARKER) => "missing".into(),
        Some(c) => match marker_version(c) {
            Some(v) => format!("invalidated at version {v}"),
            None => match serde_json::from_str::<Record>(c) {
                Ok(r) => format!("{} (version {})", r.title(), r.version()),
                Err(_) => "unreadable".into(),
            },
        },
    }
}
