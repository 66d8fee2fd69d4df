//! Preset scenarios: experiments the back end drives step by step, so a
//! learner can watch an interleaving that is hard to produce by hand.

use std::sync::Arc;
use std::time::Duration;

use cache_aside::{Content, Envelope};
use shared::diagram::nodes::STORE_IN_CACHE;
use shared::{
    InputError, Kind, Origin, RaceFix, Record, SandboxId, ScenarioResult, WriteChange, WriteStrategy,
    MAX_NAME_LEN,
};

use crate::error::OpError;
use crate::playground::{Playground, ReadOptions, WriteOptions};
use crate::policies;
use crate::sandbox::Sandbox;

/// How long the scenario waits for the reader to reach its breakpoint.
const REACH_BREAKPOINT: Duration = Duration::from_secs(10);

/// The stale-set race on one record, with the sandbox's race fix:
///
/// 1. a reader misses and loads the row, then pauses before storing it;
/// 2. a writer updates the row and invalidates the key (delete on write);
/// 3. the reader goes on and stores what it loaded.
///
/// Without a fix, Redis ends up holding the old row; with leases or version
/// checks the reader's store is refused.
///
/// # Errors
/// [`OpError`] when the record does not exist or a step fails.
pub async fn stale_set_race(
    playground: &Arc<Playground>,
    sandbox_id: &SandboxId,
    kind: Kind,
    id: u64,
) -> Result<ScenarioResult, OpError> {
    shared::check_id(id)?;
    let sandbox = playground.for_operation(sandbox_id)?;
    let settings = sandbox.settings();
    sandbox.admit(&[(kind, id)], sandbox.config().options_for(kind))?;
    let record_key = policies::record_key(kind, id);
    let key = sandbox.keys.value(&record_key);
    let mut story = Vec::new();

    // 0. Start cold, so the reader misses: no value, no lease, no lock, and
    //    no near copy in any instance.
    let mut del = redis::cmd("DEL");
    del.arg(&key)
        .arg(sandbox.keys.lease(&record_key))
        .arg(sandbox.keys.lock(&record_key));
    let _ = sandbox.redis.query(&del, sandbox.timeout).await;
    for instance in &sandbox.fleet().instances {
        instance.cache.near_remove(&record_key);
    }
    let before = sandbox.database.find(kind, id, Duration::ZERO).execute().await?;
    let Some(before) = before else {
        return Err(no_such_record(kind, id).into());
    };
    story.push(format!("Cleared {key} so the reader misses."));

    // 1. The reader, paused before it stores what it loaded.
    let operation_id = playground.next_operation_id();
    let mut reader = {
        let playground = playground.clone();
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
    let held = tokio::select! {
        held = sandbox.wait_until_held(operation_id, reach) => held,
        // The reader ended before its breakpoint: refused (too many reads
        // paused in this sandbox, a limit) or failed. Its own error says
        // why, at once.
        ended = &mut reader => {
            return Err(match ended {
                Ok(Err(error)) => error,
                Ok(Ok(_)) => OpError::Internal("the reader did not pause before storing".into()),
                Err(e) => OpError::Internal(format!("the reader failed: {e}")),
            });
        }
    };
    if !held {
        // If it got there just now, let it go before dropping it.
        sandbox.release(operation_id);
        reader.abort();
        return Err(OpError::Internal(
            "the reader did not reach its breakpoint".into(),
        ));
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
    let written = playground
        .write_with(
            sandbox_id,
            kind,
            id,
            WriteChange::Update { name },
            Origin::Scenario,
            WriteOptions {
                settings: Some(writer_settings),
                ..WriteOptions::default()
            },
        )
        .await?;
    let after = written.record.clone();
    story.push(format!(
        "Writer: updated the row to version {} and {}.",
        after.as_ref().map(Record::version).unwrap_or_default(),
        written.cache.describe()
    ));

    // 3. The reader goes on and tries to store the row it loaded.
    sandbox.release(operation_id);
    reader
        .await
        .map_err(|e| OpError::Internal(format!("the reader failed: {e}")))??;

    // 4. What does Redis hold now, against the database?
    let (stale, cached, database) = compare(&sandbox, kind, id, &key).await?;
    story.push(match (stale, settings.race_fix) {
        (true, _) => format!(
            "Reader: stored version {}. Redis now serves the old row until its TTL ({} s) runs out.",
            before.version(),
            settings.cache_ttl_secs
        ),
        (false, RaceFix::Lease) => {
            "Reader: its lease had been revoked by the write, so the store was refused. Nothing stale.".into()
        }
        (false, RaceFix::Version) => {
            "Reader: Redis held a newer version marker, so the older version was refused. Nothing stale."
                .into()
        }
        (false, RaceFix::None) => "Reader: the store did not happen. Nothing stale.".into(),
    });
    Ok(ScenarioResult {
        kind,
        id,
        fix: settings.race_fix,
        stale,
        cached,
        database,
        story,
    })
}

/// How long [`write_order`] watches for the cached copy to go.
const DELETE_WAIT: Duration = Duration::from_secs(10);
/// How often it looks.
const DELETE_LOOK: Duration = Duration::from_millis(5);

/// The write order (tutorial section 4.2) on one record, in the sandbox's
/// order (`delete_first` or not):
///
/// 1. the record is read, so it is cached;
/// 2. a writer renames it;
/// 3. as soon as the cached copy is gone, a reader reads it.
///
/// In the right order the copy goes after the database changed, so the
/// reader loads the new row. Deleting first, the database write is still
/// on its way: the reader loads the old row and caches it again, stale
/// until its TTL.
///
/// # Errors
/// [`OpError`] when the record does not exist or a step fails.
pub async fn write_order(
    playground: &Arc<Playground>,
    sandbox_id: &SandboxId,
    kind: Kind,
    id: u64,
) -> Result<ScenarioResult, OpError> {
    shared::check_id(id)?;
    let sandbox = playground.for_operation(sandbox_id)?;
    let settings = sandbox.settings();
    let key = sandbox.keys.value(&policies::record_key(kind, id));
    let mut story = Vec::new();

    // 1. Cached.
    let first = playground.read(sandbox_id, kind, id, Origin::Scenario).await?;
    let Some(before) = first.record else {
        return Err(no_such_record(kind, id).into());
    };
    story.push(format!(
        "Reader: cached {:?} (version {}).",
        before.title(),
        before.version()
    ));

    // 2. The writer, in the sandbox's order.
    let base = before.title().trim_end_matches(" (edited)");
    let name: String = format!("{base} (edited)").chars().take(MAX_NAME_LEN).collect();
    // Deleting first, the writer's database write waits for the reader
    // below: on a slow or busy machine a fixed delay alone could let the
    // write land before the reader loads, and the lesson would show
    // nothing. Released when the reader is done, or if this scenario ends
    // early (dropped, or an error on the way).
    let release = Release(Arc::new(tokio::sync::Notify::new()));
    let writer = {
        let (playground, sandbox_id) = (playground.clone(), sandbox_id.clone());
        let options = WriteOptions {
            hold_database_write: Some(release.0.clone()),
            ..WriteOptions::default()
        };
        tokio::spawn(async move {
            playground
                .write_with(
                    &sandbox_id,
                    kind,
                    id,
                    WriteChange::Update { name },
                    Origin::Scenario,
                    options,
                )
                .await
        })
    };

    // 3. The reader, as soon as the copy is gone (a bounded watch: the
    //    shared Redis's keyspace events are not ours to switch on).
    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
    loop {
        let mut exists = redis::cmd("EXISTS");
        exists.arg(&key);
        if let Ok(redis::Value::Int(0)) = sandbox.redis.query(&exists, sandbox.timeout).await {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            writer.abort();
            return Err(OpError::Internal(
                "the writer never deleted the cached copy".into(),
            ));
        }
        tokio::time::sleep(DELETE_LOOK).await;
    }
    let between = playground.read(sandbox_id, kind, id, Origin::Scenario).await?;
    drop(release);
    story.push(format!(
        "Writer: {} Reader, right after the delete: {} {}.",
        if settings.delete_first {
            "deleted the cached copy first; its database write is still on its way."
        } else {
            "changed the database, then deleted the cached copy."
        },
        between.outcome.label(),
        between
            .record
            .as_ref()
            .map_or_else(|| "nothing".into(), policies::describe_record)
    ));
    let written = writer
        .await
        .map_err(|e| OpError::Internal(format!("the writer failed: {e}")))??;
    story.push(format!(
        "Writer: the database now holds version {}.",
        written.record.as_ref().map(Record::version).unwrap_or_default()
    ));

    // 4. What does Redis hold now, against the database?
    let (stale, cached, database) = compare(&sandbox, kind, id, &key).await?;
    story.push(if stale {
        format!(
            "Redis serves the old row until its TTL ({} s) runs out: the reader cached it in between.",
            settings.ttl_secs_for(kind)
        )
    } else {
        "Redis holds the row as the database has it.".into()
    });
    Ok(ScenarioResult {
        kind,
        id,
        fix: settings.race_fix,
        stale,
        cached,
        database,
        story,
    })
}

/// Lets a held database write go when dropped (see [`write_order`]).
struct Release(Arc<tokio::sync::Notify>);

impl Drop for Release {
    fn drop(&mut self) {
        // A permit is kept if the write is not waiting yet.
        self.0.notify_one();
    }
}

/// A scenario's verdict: whether Redis holds a value the database no
/// longer has at `key`, and what each holds, in words.
async fn compare(
    sandbox: &Sandbox,
    kind: Kind,
    id: u64,
    key: &str,
) -> Result<(bool, String, String), OpError> {
    let (cached, opened) = cached_entry(sandbox, key).await.unzip();
    let row = sandbox.database.find(kind, id, Duration::ZERO).execute().await?;
    let stale = match (opened.flatten(), &row) {
        (Some(entry), Some(row)) => matches!(&entry.content, Content::Value(cached) if cached != row),
        _ => false,
    };
    let database = row
        .as_ref()
        .map_or_else(|| "no row".into(), policies::describe_record);
    Ok((stale, policies::describe_entry(cached.as_ref()), database))
}

/// What Redis holds at `key`, if it is an entry of the engine: as it
/// rests, and opened (see [`Sandbox::decode_entry`]).
async fn cached_entry(sandbox: &Sandbox, key: &str) -> Option<(Envelope<Record>, Option<Envelope<Record>>)> {
    let mut get = redis::cmd("GET");
    get.arg(key);
    match sandbox.redis.query(&get, sandbox.timeout).await {
        Ok(redis::Value::BulkString(bytes)) => sandbox.decode_entry(key, &bytes),
        _ => None,
    }
}

/// A scenario needs a record that exists: an id in range may still name
/// no row (deleted, or past the seed data).
fn no_such_record(kind: Kind, id: u64) -> InputError {
    InputError::BadSetting(format!(
        "there is no record {kind}/{id} in this sandbox: the experiment needs one that exists"
    ))
}
