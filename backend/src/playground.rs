//! The playground as a service: runs operations in a sandbox through the
//! engine, records them as traces, keeps the counters and publishes.
//!
//! It sits between the transport (REST and WebSocket handlers in
//! [`crate::http`]) and the cache-aside engine (the `cache-aside` crate),
//! and knows neither HTTP nor the UI. Every read, whoever asks, is the
//! engine's `get_or_load` with the sandbox's policies.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_aside::{Change, Observer, Redis};
use shared::diagram::nodes::{
    self, CACHE_ERROR, PUBLISH, REQUEST, RETURN_WRITTEN, WRITE_DATABASE, WRITE_REQUEST,
};
use shared::{
    check_id, parse_name, CacheEffect, Diagram, DivergenceReport, HerdResult, HerdSpec, InputError, Kind,
    NodeId, Operation, Origin, Outcome, ReadResult, Record, SandboxId, SandboxSettings, ServerMessage,
    StepStatus, Trace, TraceStep, WriteChange, WriteResult, PROTOCOL_VERSION,
};

use crate::divergence;
pub use crate::error::OpError;
use crate::feed::Subscription;
use crate::fleet::Instance;
use crate::policies;
use crate::recorder::{answer_node, micros, unix_millis, Flow, Gate, NoFallback, Path, Recorder};
use crate::sandbox::{Running, Sandbox, Sandboxes};
use crate::store::{simulated_latency, Database, StoreError};

/// Shared state behind every request.
pub struct Playground {
    /// The database of the `default` sandbox.
    pub database: Database,
    /// The back end's Redis, for the health check.
    pub redis: Redis,
    pub sandboxes: Sandboxes,
    /// The next trace id; ids are unique for the life of the process.
    next_trace_id: AtomicU64,
    /// How long a paused operation waits for "continue" before going on by
    /// itself, so nothing hangs forever.
    pub pause_timeout: Duration,
    /// Herds running at once, across all sandboxes: each can fire thousands
    /// of reads, so a few at a time.
    herds: Arc<tokio::sync::Semaphore>,
}

/// The places a heavy job holds while it runs (see
/// [`Playground::heavy_job`]).
struct HeavyJob<'a> {
    _here: tokio::sync::MutexGuard<'a, ()>,
    _everywhere: tokio::sync::OwnedSemaphorePermit,
}

/// How long a paused operation waits for "continue" by default.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a write's trace waits for the instances' receipts of its
/// invalidation, to draw the fan-out. The write itself never waits.
const RECEIPT_WAIT: Duration = Duration::from_millis(500);

/// A herd costs as much as this many operations of the sandbox's limit.
const HERD_WEIGHT: u32 = 10;

/// A divergence check costs as much as this many operations.
const DIVERGENCE_WEIGHT: u32 = 10;

/// The most reads paused at a breakpoint at once in one sandbox.
pub const MOST_PAUSED: usize = 32;

/// Step-through and routing options of a read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Pause before the steps at these nodes.
    pub pause_before: Vec<NodeId>,
    /// Use this operation id (from [`Playground::next_operation_id`]), so a
    /// caller can refer to the operation before it finishes.
    pub operation_id: Option<u64>,
    /// The instance that serves the read; round-robin when `None`.
    pub instance: Option<String>,
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Settings for this one write instead of the sandbox's (the scenarios
    /// use it).
    pub settings: Option<SandboxSettings>,
    /// The instance that writes; round-robin when `None`.
    pub instance: Option<String>,
    /// With the wrong order (`delete_first`), the database write waits,
    /// after the early delete and before it takes a connection, until this
    /// is notified: the write-order scenario lets its reader in there.
    pub hold_database_write: Option<Arc<tokio::sync::Notify>>,
}

impl Playground {
    pub fn new(database: Database, redis: Redis, sandboxes: Sandboxes) -> Playground {
        let herds = Arc::new(tokio::sync::Semaphore::new(sandboxes.limits().herds_at_once));
        Playground {
            database,
            redis,
            sandboxes,
            next_trace_id: AtomicU64::new(1),
            pause_timeout: DEFAULT_PAUSE_TIMEOUT,
            herds,
        }
    }

    /// An existing sandbox (`default` always exists).
    ///
    /// # Errors
    /// [`OpError::Sandbox`] when there is no such sandbox.
    pub fn sandbox(&self, id: &SandboxId) -> Result<Arc<Sandbox>, OpError> {
        Ok(self.sandboxes.get(id)?)
    }

    /// An existing sandbox, for an operation: notes the use and checks the
    /// sandbox's operations-per-second limit.
    ///
    /// # Errors
    /// [`OpError::Sandbox`] for no such sandbox, [`OpError::Input`] when
    /// the sandbox goes too fast.
    pub fn for_operation(&self, id: &SandboxId) -> Result<Running, OpError> {
        self.sandbox(id)?.start_operation(1)
    }

    /// The sandbox a browser asks to watch: an existing one, or a new one
    /// (see [`Sandboxes::open`]).
    ///
    /// # Errors
    /// [`OpError::Sandbox`] when the playground is full or creation fails.
    pub async fn open_sandbox(&self, requested: Option<&SandboxId>) -> Result<Arc<Sandbox>, OpError> {
        self.open_sandbox_with(requested, false).await
    }

    /// [`Playground::open_sandbox`]; a new sandbox gets a redis-server of
    /// its own when `private` asks (see [`crate::private_redis`]).
    ///
    /// # Errors
    /// As [`Playground::open_sandbox`], and [`OpError::Sandbox`] when no
    /// server of its own can be had.
    pub async fn open_sandbox_with(
        &self,
        requested: Option<&SandboxId>,
        private: bool,
    ) -> Result<Arc<Sandbox>, OpError> {
        Ok(self.sandboxes.open(requested, private).await?)
    }

    /// Removes the sandboxes idle for longer than the limits allow, with
    /// everything they hold. Returns how many.
    pub async fn reap_idle(&self) -> usize {
        self.sandboxes.reap(self.sandboxes.limits().sandbox_idle).await
    }

    /// Puts a sandbox back as it started: its database re-seeded, its keys
    /// deleted, its counters and traces cleared; every watcher is told.
    ///
    /// # Errors
    /// [`OpError::Database`] when re-seeding fails; [`OpError::Input`]
    /// while another reset of it runs.
    pub async fn reset(&self, sandbox: &SandboxId) -> Result<(), OpError> {
        self.sandbox(sandbox)?.reset().await
    }

    /// Reads a record through the cache in `sandbox`, then publishes the
    /// trace to every browser watching that sandbox.
    ///
    /// # Errors
    /// [`OpError`]; a failed read is still traced and published.
    pub async fn read(
        &self,
        sandbox: &SandboxId,
        kind: Kind,
        id: u64,
        origin: Origin,
    ) -> Result<ReadResult, OpError> {
        self.read_with(sandbox, kind, id, origin, ReadOptions::default())
            .await
    }

    /// [`Playground::read`] with step-through and routing options.
    ///
    /// # Errors
    /// [`OpError`]; a failed read is still traced and published.
    pub async fn read_with(
        &self,
        sandbox: &SandboxId,
        kind: Kind,
        id: u64,
        origin: Origin,
        options: ReadOptions,
    ) -> Result<ReadResult, OpError> {
        check_id(id)?;
        let sandbox = self.for_operation(sandbox)?;
        // Paused reads live until continued or timed out, even after their
        // page left: so many at once per sandbox, no more.
        if !options.pause_before.is_empty() && sandbox.paused_count() >= MOST_PAUSED {
            return Err(InputError::OverLimit(format!(
                "{MOST_PAUSED} reads of this sandbox are paused already; continue some first"
            ))
            .into());
        }
        let instance = sandbox.fleet().pick(options.instance.as_deref())?;
        let config = sandbox.config();
        sandbox.admit(&[(kind, id)], config.options_for(kind))?;
        // Step-through and scenarios are always drawn; other reads as long
        // as the sandbox's budgets of traces per second last (a page's own
        // reads have a budget of their own).
        let drawn =
            !options.pause_before.is_empty() || origin == Origin::Scenario || sandbox.may_trace(origin);
        if !drawn {
            return Self::read_untraced(&sandbox, &instance, &config, kind, id).await;
        }
        let operation = Operation::Read { kind, id };
        let operation_id = options.operation_id.unwrap_or_else(|| self.next_operation_id());
        let started = Started::new(operation_id, operation.clone(), origin, &instance);
        let gate = SandboxGate {
            sandbox: sandbox.clone(),
            operation_id,
            operation,
            timeout: self.pause_timeout,
        };
        let recorder = Arc::new(
            Recorder::new(Flow::Read, Some(instance.name.to_string()))
                .with_breakpoints(options.pause_before, Arc::new(gate)),
        );
        recorder.note(
            REQUEST,
            StepStatus::Ok,
            format!("read {kind}/{id} at instance {}", instance.name),
        );

        // The engine's read, with the sandbox's policies; the loader is the
        // SQL query, and tells the recorder what it ran. (With the fallback
        // off, the naive application's: a Redis error fails the read.)
        let heard = recorder.clone();
        let loader = sandbox.loader(kind, id, &config.settings, move |sql| heard.loaded(sql));
        let naive = NoFallback::when(!config.settings.fallback, &*recorder);
        let observer: &dyn Observer = naive.as_ref().map_or(&*recorder as &dyn Observer, |n| n);
        let near_before = instance.cache.near_len();
        let answer = instance
            .cache
            .get_or_load_with(
                &policies::record_key(kind, id),
                config.options_for(kind),
                observer,
                NoFallback::guard(naive.as_ref(), loader),
            )
            .await;
        // A read that kept a near copy (or found one expired) changes what
        // the instances card counts: the pages hear of it. (Untraced reads,
        // a flood, do not: after one, the card may count too few until the
        // next announcement.)
        if instance.cache.near_len() != near_before {
            sandbox.announce_instances();
        }
        if let Err(StoreError::NoFallback(reason)) = &answer {
            recorder.note(
                CACHE_ERROR,
                StepStatus::Error,
                format!("Redis failed ({reason}); with no fallback, the request fails"),
            );
        }

        let (outcome, record) = match &answer {
            Ok(answer) => (policies::outcome(answer.source), answer.value.clone()),
            Err(_) => (Outcome::Failed, None),
        };
        if let Ok(answer) = &answer {
            // End at the answer, so every path on the diagram is complete.
            let end = answer_node(answer.source, answer.waited);
            let text = if answer.source == cache_aside::Source::Fallback {
                format!("{} (not cached: Redis is unavailable)", returned(record.as_ref()))
            } else {
                returned(record.as_ref())
            };
            if recorder.last_node() != Some(end.clone()) {
                recorder.note(end, StepStatus::Ok, text);
            }
        }
        let found = record.is_some();
        let trace = self.publish(&sandbox, started, outcome, found, &recorder);
        answer?;
        Ok(ReadResult {
            kind,
            id,
            outcome,
            found,
            record,
            latency_us: trace.total_us,
            trace_id: Some(trace.id),
            sandbox: sandbox.id.clone(),
        })
    }

    /// A read beyond the sandbox's traces per second: the same engine call,
    /// watched only for the diagram nodes it passes, counted in the
    /// sandbox's summary instead of traced.
    async fn read_untraced(
        sandbox: &Arc<Sandbox>,
        instance: &Instance,
        config: &crate::sandbox::Config,
        kind: Kind,
        id: u64,
    ) -> Result<ReadResult, OpError> {
        let started = std::time::Instant::now();
        let loader = sandbox.loader(kind, id, &config.settings, |_| {});
        let path = Path::default();
        let naive = NoFallback::when(!config.settings.fallback, &path);
        let observer: &dyn Observer = naive.as_ref().map_or(&path as &dyn Observer, |n| n);
        let answer = instance
            .cache
            .get_or_load_with(
                &policies::record_key(kind, id),
                config.options_for(kind),
                observer,
                NoFallback::guard(naive.as_ref(), loader),
            )
            .await;
        drop(naive);
        let latency_us = micros(started.elapsed());
        let mut nodes = vec![REQUEST];
        nodes.extend(path.finish().nodes);
        if let Err(StoreError::NoFallback(_)) = &answer {
            nodes.push(CACHE_ERROR);
        }
        let (outcome, database_us) = match &answer {
            Ok(answer) => {
                nodes.push(answer_node(answer.source, answer.waited));
                (
                    policies::outcome(answer.source),
                    answer.loaded_in.map_or(0, micros),
                )
            }
            Err(_) => (Outcome::Failed, 0),
        };
        let found = answer.as_ref().is_ok_and(|a| a.value.is_some());
        sandbox.count_untraced(outcome, found, latency_us, database_us, &nodes);
        let record = answer?.value;
        Ok(ReadResult {
            kind,
            id,
            outcome,
            found: record.is_some(),
            record,
            latency_us,
            trace_id: None,
            sandbox: sandbox.id.clone(),
        })
    }

    /// Updates or deletes a record in `sandbox`: the database first, then
    /// the cache as the sandbox's write strategy says; publishes the trace.
    ///
    /// # Errors
    /// [`OpError`]; a failed write is still traced and published.
    pub async fn write(
        &self,
        sandbox: &SandboxId,
        kind: Kind,
        id: u64,
        change: WriteChange,
        origin: Origin,
    ) -> Result<WriteResult, OpError> {
        self.write_with(sandbox, kind, id, change, origin, WriteOptions::default())
            .await
    }

    /// [`Playground::write`] with options.
    ///
    /// # Errors
    /// [`OpError`]; a failed write is still traced and published.
    pub async fn write_with(
        &self,
        sandbox: &SandboxId,
        kind: Kind,
        id: u64,
        change: WriteChange,
        origin: Origin,
        options: WriteOptions,
    ) -> Result<WriteResult, OpError> {
        check_id(id)?;
        let change = match change {
            WriteChange::Update { name } => WriteChange::Update {
                name: parse_name(&name)?,
            },
            WriteChange::Delete => WriteChange::Delete,
        };
        let sandbox = self.for_operation(sandbox)?;
        let instance = sandbox.fleet().pick(options.instance.as_deref())?;
        let settings = match options.settings {
            Some(settings) => Arc::new(crate::sandbox::Config::new(settings)),
            None => sandbox.config(),
        };
        sandbox.admit(&[(kind, id)], settings.options_for(kind))?;
        let operation = match &change {
            WriteChange::Update { name } => Operation::Update {
                kind,
                id,
                name: name.clone(),
            },
            WriteChange::Delete => Operation::Delete { kind, id },
        };
        let started = Started::new(self.next_operation_id(), operation, origin, &instance);
        let recorder = Arc::new(Recorder::new(Flow::Write, Some(instance.name.to_string())));
        recorder.note(
            WRITE_REQUEST,
            StepStatus::Ok,
            format!("{} at instance {}", started.operation.label(), instance.name),
        );

        // (Under the key name readers use, unless the sandbox shows the bug.)
        let key = if settings.settings.mismatched_keys {
            policies::mistyped_key(kind, id)
        } else {
            policies::record_key(kind, id)
        };
        // The wrong order, switched on to see it: the cached copy is deleted
        // before the database changes, so a read in between loads the old
        // row and caches it again, stale until its TTL.
        let deleted_first = if settings.settings.delete_first {
            let plain_delete = cache_aside::Options {
                race_guard: cache_aside::RaceGuard::None,
                ..settings.options_for(kind).clone()
            };
            let written = instance
                .cache
                .after_write_with(
                    &key,
                    Change::Deleted,
                    cache_aside::WritePolicy::Invalidate,
                    &plain_delete,
                    &*recorder,
                )
                .await;
            Some(policies::cache_effect(sandbox.keys.value(&key), written.effect))
        } else {
            None
        };

        // 1. The database first: if the cache were changed first, a reader
        //    could load the old row back into it before the database changed.
        let latency = simulated_latency(
            settings.settings.db_latency_ms,
            settings.settings.db_jitter_percent,
        );
        // (After an early delete, the write's latency is spent before it
        // lands: the window in which a reader caches the old row.)
        let late = deleted_first.is_some();
        let hold = options.hold_database_write.filter(|_| late);
        let written = match &change {
            WriteChange::Update { name } => recorder
                .sql(
                    WRITE_DATABASE,
                    sandbox
                        .database
                        .update_name(kind, id, name.clone(), latency)
                        .delayed_first(late)
                        .held_until(hold.clone()),
                )
                .await
                .map(|row| (row.is_some(), row)),
            WriteChange::Delete => recorder
                .sql(
                    WRITE_DATABASE,
                    sandbox
                        .database
                        .delete(kind, id, latency)
                        .delayed_first(late)
                        .held_until(hold),
                )
                .await
                .map(|removed| (removed, None)),
        };
        let (found, record) = match written {
            Ok(written) => written,
            Err(error) => {
                self.publish(&sandbox, started, Outcome::Failed, false, &recorder);
                return Err(error.into());
            }
        };

        // 2. Then the cached copy, as the write strategy says.
        let mut published = None;
        let effect = if let Some(effect) = deleted_first {
            if found {
                sandbox.row_changed(kind, id, unix_millis());
            }
            effect
        } else if found {
            sandbox.row_changed(kind, id, unix_millis());
            let change = match &record {
                Some(record) => Change::Updated(record),
                None => Change::Deleted,
            };
            let policy = policies::write_policy(&settings.settings, kind);
            let written = instance
                .cache
                .after_write_with(&key, change, policy, settings.options_for(kind), &*recorder)
                .await;
            published = written.published.and_then(Result::ok);
            policies::cache_effect(sandbox.keys.value(&key), written.effect)
        } else {
            CacheEffect::NoRecord
        };
        recorder.note(RETURN_WRITTEN, StepStatus::Ok, effect.describe());
        let latency_us = micros(recorder.elapsed());

        // 3. With near caches the write published an invalidation: its
        //    trace waits (the write does not) for the instances' receipts,
        //    so the diagram can show the fan-out.
        // Writes are drawn within the sandbox's budgets of traces, like
        // reads (a scenario's always); beyond them they are counted.
        let traced = origin == Origin::Scenario || sandbox.may_trace(origin);
        let trace_id = traced.then_some(started.operation_id);
        if !traced {
            let (steps, took) = recorder.finish();
            let nodes: Vec<NodeId> = steps.into_iter().map(|s| s.node).collect();
            sandbox.count_untraced(Outcome::Written, true, micros(took), 0, &nodes);
        } else if let Some(published) = published {
            let sandbox = sandbox.clone();
            let expected = sandbox.fleet().listening();
            tokio::spawn(async move {
                draw_fan_out(&sandbox, &recorder, published.message, expected).await;
                publish_trace(&sandbox, started, Outcome::Written, found, &recorder);
            });
        } else {
            self.publish(&sandbox, started, Outcome::Written, found, &recorder);
        }
        Ok(WriteResult {
            kind,
            id,
            found,
            record,
            cache: effect,
            latency_us,
            trace_id,
            sandbox: sandbox.id.clone(),
        })
    }

    /// Compares every cached key of `sandbox` with its database row.
    ///
    /// # Errors
    /// [`OpError::Inspection`] when Redis or the database fails.
    pub async fn check_divergence(&self, sandbox: &SandboxId) -> Result<DivergenceReport, OpError> {
        // A check reads every key the sandbox holds and each row: it costs
        // as much as many reads, and runs one at a time per sandbox.
        let sandbox = self.sandbox(sandbox)?.start_operation(DIVERGENCE_WEIGHT)?;
        let Ok(_one_at_a_time) = sandbox.inspecting.try_lock() else {
            return Err(InputError::OverLimit("a check of this sandbox is running already".into()).into());
        };
        Ok(divergence::check(&sandbox, unix_millis()).await?)
    }

    /// Lists the sandbox's keys in Redis with their TTLs and sizes.
    ///
    /// # Errors
    /// [`OpError::Inspection`] when Redis fails; [`OpError::Input`] while
    /// another inspection of the sandbox runs.
    pub async fn inspect_keys(&self, sandbox: &SandboxId) -> Result<shared::KeyReport, OpError> {
        let sandbox = self.sandbox(sandbox)?.start_operation(DIVERGENCE_WEIGHT)?;
        let Ok(_one_at_a_time) = sandbox.listing_keys.try_lock() else {
            return Err(
                InputError::OverLimit("the keys of this sandbox are being listed already".into()).into(),
            );
        };
        crate::inspect::inspect(&sandbox, unix_millis())
            .await
            .map_err(|e| OpError::Inspection(e.into()))
    }

    /// Redis's own figures (`INFO`).
    ///
    /// # Errors
    /// [`OpError::Inspection`] when Redis fails.
    pub async fn redis_figures(&self, sandbox: &SandboxId) -> Result<shared::RedisFigures, OpError> {
        let sandbox = self.sandbox(sandbox)?.start_operation(1)?;
        crate::inspect::figures(&sandbox, unix_millis())
            .await
            .map_err(|e| OpError::Inspection(e.into()))
    }

    /// The memory limit and eviction policy of the sandbox's server, and
    /// whether the sandbox may change them (see [`crate::memory`]).
    ///
    /// # Errors
    /// [`OpError::Inspection`] when Redis fails.
    pub async fn memory(&self, sandbox: &SandboxId) -> Result<shared::MemoryState, OpError> {
        let sandbox = self.sandbox(sandbox)?.start_operation(1)?;
        crate::memory::state(&sandbox, self.memory_refusal())
            .await
            .map_err(|e| OpError::Inspection(e.into()))
    }

    /// Breaks (or mends) the sandbox's Redis, or warms its cache (see
    /// [`crate::faults`]); with no action, the fault lab's report alone.
    ///
    /// # Errors
    /// [`OpError::Input`] for a bad delay or a Redis the proxy cannot stand
    /// in front of, or past the operations limit.
    pub async fn fault(
        &self,
        sandbox: &SandboxId,
        action: Option<shared::FaultAction>,
    ) -> Result<shared::FaultReport, OpError> {
        let sandbox = self.sandbox(sandbox)?;
        match action {
            None => Ok(crate::faults::report(&sandbox)),
            Some(action) => {
                // A warm-up stores 150 records: it weighs as much.
                let weight = if action == shared::FaultAction::WarmCache {
                    20
                } else {
                    1
                };
                let running = sandbox.start_operation(weight)?;
                crate::faults::apply(&running, action).await
            }
        }
    }

    /// Sets the memory limit and eviction policy of the sandbox's own
    /// server.
    ///
    /// # Errors
    /// [`OpError::Input`] on the shared Redis or out of range;
    /// [`OpError::Inspection`] when Redis fails.
    pub async fn set_memory(
        &self,
        sandbox: &SandboxId,
        settings: shared::MemorySettings,
    ) -> Result<shared::MemoryState, OpError> {
        let sandbox = self.sandbox(sandbox)?.start_operation(1)?;
        crate::memory::set(&sandbox, settings).await
    }

    /// Fills the sandbox's own server past its limit (weighed like a herd,
    /// one at a time per sandbox and within the herds' shared places).
    ///
    /// # Errors
    /// [`OpError::Input`] on the shared Redis, for a bad spec or a busy
    /// sandbox; [`OpError::Inspection`] when Redis fails.
    pub async fn fill(
        &self,
        sandbox: &SandboxId,
        spec: shared::FillSpec,
    ) -> Result<shared::FillResult, OpError> {
        let sandbox = self.sandbox(sandbox)?.start_operation(HERD_WEIGHT)?;
        let _job = self.heavy_job(&sandbox)?;
        crate::memory::fill(&sandbox, spec).await
    }

    /// Measures a record under every value encoding (weighed like a herd,
    /// one at a time per sandbox: it encodes values of up to 128 KiB many
    /// times).
    ///
    /// # Errors
    /// [`OpError`] for bad input, a busy sandbox, or a failing database or
    /// Redis.
    pub async fn compare_encodings(
        &self,
        sandbox: &SandboxId,
        kind: Kind,
        id: u64,
        padding: u64,
    ) -> Result<shared::EncodingComparison, OpError> {
        check_id(id)?;
        let sandbox = self.sandbox(sandbox)?.start_operation(HERD_WEIGHT)?;
        let _job = self.heavy_job(&sandbox)?;
        let settings = sandbox.settings();
        crate::encodings::compare(&sandbox, &settings, kind, id, padding).await
    }

    /// Related keys with different TTLs (weighed like a herd, one at a time
    /// per sandbox; it runs for up to the longer TTL and a second).
    ///
    /// # Errors
    /// [`OpError`] for bad input, a busy sandbox or a failing database.
    pub async fn related_keys(
        &self,
        sandbox: &SandboxId,
        spec: shared::RelatedSpec,
    ) -> Result<shared::RelatedResult, OpError> {
        spec.validate()?;
        let sandbox = self.sandbox(sandbox)?.start_operation(HERD_WEIGHT)?;
        let _job = self.heavy_job(&sandbox)?;
        crate::related::run(&sandbox, spec).await
    }

    /// One heavy job (a herd, a comparison, a fill, an experiment) at a
    /// time per sandbox, and a few at a time across all of them: this
    /// sandbox's place is taken first, so a second job here does not hold
    /// one of the shared places only to be refused.
    fn heavy_job<'a>(&self, sandbox: &'a Sandbox) -> Result<HeavyJob<'a>, OpError> {
        let Ok(here) = sandbox.herd.try_lock() else {
            return Err(InputError::OverLimit(
                "a herd, comparison, fill or experiment is running in this sandbox already".into(),
            )
            .into());
        };
        let Ok(everywhere) = self.herds.clone().try_acquire_owned() else {
            return Err(InputError::OverLimit(
                "other herds are running right now; try again in a moment".into(),
            )
            .into());
        };
        Ok(HeavyJob {
            _here: here,
            _everywhere: everywhere,
        })
    }

    /// Why no sandbox here may change its server's memory, if none may:
    /// with an external Redis no sandbox has a server of its own.
    fn memory_refusal(&self) -> Option<String> {
        self.sandboxes.private_servers_refusal().map(|e| e.to_string())
    }

    /// Fires a herd of concurrent reads (see [`crate::herd`]), if fewer
    /// herds than the limit run now.
    ///
    /// # Errors
    /// [`OpError::Input`] for a herd out of bounds or too many herds at once.
    pub async fn run_herd(&self, sandbox: &SandboxId, spec: HerdSpec) -> Result<HerdResult, OpError> {
        let most = self.sandboxes.limits().max_herd_requests;
        if spec.requests > most {
            return Err(InputError::BadSetting(format!(
                "requests must be from 1 to {most} here, not {}",
                spec.requests
            ))
            .into());
        }
        let sandbox = self.sandbox(sandbox)?.start_operation(HERD_WEIGHT)?;
        let _job = self.heavy_job(&sandbox)?;
        crate::herd::run(&sandbox, spec).await
    }

    /// Runs the seeded workload through every caching pattern (one
    /// comparison at a time per sandbox, weighed like a herd).
    ///
    /// # Errors
    /// [`OpError`] for a bad seed, a busy sandbox, or a failing database.
    pub async fn compare_patterns(
        &self,
        sandbox: &SandboxId,
        seed: u64,
    ) -> Result<shared::PatternComparison, OpError> {
        crate::patterns::check_seed(seed)?;
        let sandbox = self.sandbox(sandbox)?.start_operation(HERD_WEIGHT)?;
        let _job = self.heavy_job(&sandbox)?;
        crate::patterns::compare(&sandbox, seed).await
    }

    /// A new operation id; it becomes the id of the operation's trace.
    pub fn next_operation_id(&self) -> u64 {
        self.next_trace_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Lets a paused operation go on.
    ///
    /// # Errors
    /// [`OpError::Input`] when no operation with that id is paused.
    pub fn continue_operation(&self, sandbox: &SandboxId, operation_id: u64) -> Result<(), OpError> {
        let sandbox = self.sandbox(sandbox)?;
        sandbox.touch();
        if sandbox.release(operation_id) {
            Ok(())
        } else {
            Err(InputError::BadSetting(format!("operation {operation_id} is not paused")).into())
        }
    }

    /// Replaces a sandbox's settings and tells every watcher.
    ///
    /// # Errors
    /// [`OpError::Input`] when a setting is out of range.
    pub fn update_settings(
        &self,
        sandbox: &SandboxId,
        settings: SandboxSettings,
    ) -> Result<SandboxSettings, OpError> {
        settings.validate()?;
        // Hosted, no TTL outlives the hour: whatever a visitor leaves in
        // Redis goes by itself soon.
        let most = self.sandboxes.limits().max_ttl_secs;
        for (name, secs) in [
            ("cache_ttl_secs", settings.cache_ttl_secs),
            ("null_ttl_secs", settings.null_ttl_secs),
            ("near_ttl_secs", settings.near_ttl_secs),
            ("product_ttl_secs", settings.product_ttl_secs),
            // Fail-safe keeps entries this much longer.
            ("fail_safe_secs", settings.fail_safe_secs),
        ] {
            if secs > most {
                return Err(InputError::BadSetting(format!(
                    "{name} must be at most {most} here, not {secs}"
                ))
                .into());
            }
        }
        let sandbox = self.for_operation(sandbox)?;
        let settings = sandbox.set_settings(settings);
        let message = ServerMessage::Settings {
            settings: settings.clone(),
        };
        sandbox.feed.publish(message);
        sandbox.announce_instances();
        Ok(settings)
    }

    /// The greeting for a browser that starts watching `sandbox`.
    pub fn hello(&self, sandbox: &Sandbox) -> ServerMessage {
        ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            sandbox: sandbox.id.clone(),
            settings: Box::new(sandbox.settings()),
            stats: sandbox.stats(),
            diagram: Diagram::cache_aside_read(),
            recent: sandbox.recent(),
            instances: sandbox.fleet().states(),
            redis: sandbox.redis_description.clone(),
            load: sandbox.load_state(),
            moved: false,
        }
    }

    /// Starts watching the traces of `sandbox`.
    ///
    /// # Errors
    /// [`OpError::Sandbox`] when there is no such sandbox.
    pub fn subscribe(&self, sandbox: &SandboxId) -> Result<Subscription, OpError> {
        Ok(self.sandbox(sandbox)?.feed.subscribe())
    }

    fn publish(
        &self,
        sandbox: &Sandbox,
        started: Started,
        outcome: Outcome,
        found: bool,
        recorder: &Recorder,
    ) -> Trace {
        publish_trace(sandbox, started, outcome, found, recorder)
    }
}

/// Turns a finished recording into a trace: counts it, keeps it for late
/// watchers and publishes it. Returns the trace.
fn publish_trace(
    sandbox: &Sandbox,
    started: Started,
    outcome: Outcome,
    found: bool,
    recorder: &Recorder,
) -> Trace {
    let (steps, took) = recorder.finish();
    let trace = Trace {
        id: started.operation_id,
        sandbox: sandbox.id.clone(),
        operation: started.operation,
        origin: started.origin,
        instance: started.instance,
        outcome,
        found,
        steps,
        total_us: micros(took),
        started_at_ms: started.at_ms,
    };
    let stats = sandbox.count(
        outcome,
        found,
        trace.total_us,
        trace.database_us() + trace.simulated_us(),
        false,
    );
    sandbox.remember(&trace);
    let message = ServerMessage::Trace {
        trace: trace.clone(),
        stats,
    };
    sandbox.feed.publish(message);
    trace
}

/// Adds to a write's trace which instances received its invalidation, and
/// how long after the publish: waits at most [`RECEIPT_WAIT`].
async fn draw_fan_out(sandbox: &Sandbox, recorder: &Recorder, message: u64, expected: usize) {
    let sent = std::time::Instant::now();
    let receipts = sandbox
        .fleet()
        .receipts
        .collect(message, expected, RECEIPT_WAIT)
        .await;
    let near_ttl = sandbox.config().settings.near_ttl_secs;
    for instance in &sandbox.fleet().instances {
        let Some(node) = nodes::instance(instance.index) else {
            continue;
        };
        match receipts.iter().find(|(index, _)| *index == instance.index) {
            Some((_, at)) => recorder.received(
                node,
                PUBLISH,
                format!("instance {} dropped its near copy", instance.name),
                StepStatus::Ok,
                at.saturating_duration_since(sent),
            ),
            // Pub/Sub delivers at most once: this one is lost.
            None => recorder.received(
                node,
                PUBLISH,
                format!(
                    "instance {} missed it (not subscribed): its near copy may be stale for up to {near_ttl} s",
                    instance.name
                ),
                StepStatus::Error,
                Duration::ZERO,
            ),
        }
    }
    sandbox.announce_instances();
}

/// Holds an operation of a sandbox at its breakpoints, telling every
/// watcher when it pauses and when it goes on.
struct SandboxGate {
    sandbox: Arc<Sandbox>,
    operation_id: u64,
    operation: Operation,
    timeout: Duration,
}

impl Gate for SandboxGate {
    fn pause(&self, next: NodeId, done: Vec<TraceStep>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let paused = ServerMessage::Paused {
                operation_id: self.operation_id,
                operation: self.operation.clone(),
                at: next,
                steps: done,
                timeout_secs: self.timeout.as_secs(),
            };
            // Register first, then tell: a "continue" can only come after
            // the browser has heard of the pause.
            let released = self.sandbox.hold(self.operation_id);
            self.sandbox.feed.publish(paused);
            let timed_out = self
                .sandbox
                .wait_held(self.operation_id, released, self.timeout)
                .await;
            let resumed = ServerMessage::Resumed {
                operation_id: self.operation_id,
                timed_out,
            };
            self.sandbox.feed.publish(resumed);
        })
    }
}

/// What is known of an operation when it starts.
struct Started {
    operation_id: u64,
    operation: Operation,
    origin: Origin,
    instance: Option<String>,
    at_ms: u64,
}

impl Started {
    fn new(operation_id: u64, operation: Operation, origin: Origin, instance: &Instance) -> Started {
        Started {
            operation_id,
            operation,
            origin,
            instance: Some(instance.name.to_string()),
            at_ms: unix_millis(),
        }
    }
}

fn returned(record: Option<&Record>) -> String {
    match record {
        Some(record) => format!("return {}", record.title()),
        None => "return \"not found\"".into(),
    }
}
