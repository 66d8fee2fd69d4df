//! The playground as a service: runs operations in a sandbox, turns their
//! recordings into traces, keeps the counters and publishes the traces.
//!
//! It sits between the transport (REST and WebSocket handlers in
//! [`crate::http`]) and the cache-aside engine ([`crate::cache_aside`],
//! [`crate::writes`]), and knows neither HTTP nor the UI.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shared::{
    check_id, parse_name, Diagram, DivergenceReport, InputError, Kind, NodeId, Operation, Origin, Outcome,
    ReadResult, SandboxId, SandboxSettings, ServerMessage, Trace, TraceStep, WriteChange, WriteResult,
    PROTOCOL_VERSION,
};

use crate::cache::Cache;
use crate::cache_aside::ReadAnswer;
use crate::divergence::{self, DivergenceError};
use crate::feed::Subscription;
use crate::instance::Instance;
use crate::recorder::{micros, unix_millis, Gate, Recorder};
use crate::sandbox::{Sandbox, Sandboxes};
use crate::store::{Database, StoreError};

/// Shared state behind every request.
pub struct Playground {
    /// The database of the `default` sandbox.
    pub database: Database,
    /// The default Redis endpoint, used for health checks.
    pub cache: Cache,
    pub sandboxes: Sandboxes,
    /// The next trace id; ids are unique for the life of the process.
    next_trace_id: AtomicU64,
    /// How long a paused operation waits for "continue" before going on by
    /// itself, so nothing hangs forever.
    pub pause_timeout: Duration,
}

/// Why an operation could not be done. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Occurs when the request names a bad id, name, setting or sandbox.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Occurs when the database fails (the cache failing is never an error
    /// for reads and writes).
    #[error("the database failed: {0}")]
    Database(#[from] StoreError),
    /// Occurs when a sandbox cannot be set up.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// Occurs when an inspection of the cache (the divergence check) cannot
    /// reach Redis.
    #[error("{0}")]
    Inspection(#[from] DivergenceError),
}

impl Playground {
    pub fn new(database: Database, cache: Cache, sandboxes: Sandboxes) -> Playground {
        Playground {
            database,
            cache,
            sandboxes,
            next_trace_id: AtomicU64::new(1),
            pause_timeout: DEFAULT_PAUSE_TIMEOUT,
        }
    }

    /// The sandbox with this name, created on first use.
    ///
    /// # Errors
    /// When a new sandbox's database cannot be created.
    pub fn sandbox(&self, id: &SandboxId) -> Result<Arc<Sandbox>, OpError> {
        Ok(self.sandboxes.get(id)?)
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

    /// [`Playground::read`] with step-through options.
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
        let sandbox = self.sandbox(sandbox)?;
        let instance = sandbox.fleet.pick(options.instance.as_deref())?;
        let settings = sandbox.settings();
        let engine = sandbox.engine(&settings, Some(&instance));
        let operation = Operation::Read { kind, id };
        let operation_id = options.operation_id.unwrap_or_else(|| self.next_operation_id());
        let started = Started::new(operation_id, operation.clone(), origin, &instance);
        let mut recorder = if options.pause_before.is_empty() {
            Recorder::new()
        } else {
            let gate = SandboxGate {
                sandbox: sandbox.clone(),
                operation_id,
                operation,
                timeout: self.pause_timeout,
            };
            Recorder::with_breakpoints(options.pause_before, Arc::new(gate))
        };
        let answer = engine.read(kind, id, &mut recorder).await;

        let (outcome, record) = match &answer {
            Ok(ReadAnswer { outcome, record }) => (*outcome, record.clone()),
            Err(_) => (Outcome::Failed, None),
        };
        let found = record.is_some();
        let trace = self.publish(&sandbox, started, outcome, found, recorder);
        answer?;
        Ok(ReadResult {
            kind,
            id,
            outcome,
            found,
            record,
            latency_us: trace.total_us,
            trace_id: trace.id,
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

    /// [`Playground::write`] with the sandbox's settings replaced by
    /// `settings` for this one write (the scenarios use it).
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
        let sandbox = self.sandbox(sandbox)?;
        let instance = sandbox.fleet.pick(options.instance.as_deref())?;
        let settings = options.settings.unwrap_or_else(|| sandbox.settings());
        let engine = sandbox.engine(&settings, Some(&instance));
        let started_at_ms = unix_millis();
        let mut recorder = Recorder::new();
        let (operation, answer) = match change {
            WriteChange::Update { name } => (
                Operation::Update {
                    kind,
                    id,
                    name: name.clone(),
                },
                engine.update(kind, id, name, &mut recorder).await,
            ),
            WriteChange::Delete => (
                Operation::Delete { kind, id },
                engine.delete(kind, id, &mut recorder).await,
            ),
        };
        let outcome = if answer.is_ok() {
            Outcome::Written
        } else {
            Outcome::Failed
        };
        let found = answer.as_ref().is_ok_and(|a| a.found);
        if found {
            sandbox.row_changed(kind, id, unix_millis());
        }
        let mut started = Started::new(self.next_operation_id(), operation, origin, &instance);
        started.at_ms = started_at_ms;
        let trace = self.publish(&sandbox, started, outcome, found, recorder);
        let answer = answer?;
        Ok(WriteResult {
            kind,
            id,
            found: answer.found,
            record: answer.record,
            cache_action: answer.cache_action,
            latency_us: trace.total_us,
            trace_id: trace.id,
            sandbox: sandbox.id.clone(),
        })
    }

    /// Compares every cached key of `sandbox` with its database row.
    ///
    /// # Errors
    /// [`OpError::Inspection`] when Redis or the database fails.
    pub async fn check_divergence(&self, sandbox: &SandboxId) -> Result<DivergenceReport, OpError> {
        let sandbox = self.sandbox(sandbox)?;
        let settings = sandbox.settings();
        let report = divergence::check(
            &sandbox.cache,
            &sandbox.database,
            &settings.key_prefix,
            &sandbox.id,
            &sandbox.changed_at(),
            unix_millis(),
        )
        .await?;
        Ok(report)
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
        if self.sandbox(sandbox)?.release(operation_id) {
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
        let sandbox = self.sandbox(sandbox)?;
        let settings = sandbox.set_settings(settings);
        let message = ServerMessage::Settings {
            settings: settings.clone(),
        };
        sandbox.feed.publish(Arc::from(to_json(&message)));
        Ok(settings)
    }

    /// The greeting for a browser that starts watching `sandbox`.
    ///
    /// # Errors
    /// When a new sandbox's database cannot be created.
    pub fn hello(&self, sandbox: &SandboxId) -> Result<ServerMessage, OpError> {
        let sandbox = self.sandbox(sandbox)?;
        Ok(ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            sandbox: sandbox.id.clone(),
            settings: sandbox.settings(),
            stats: sandbox.stats(),
            diagram: Diagram::cache_aside_read(),
            recent: sandbox.recent(),
            instances: sandbox.fleet.states(),
        })
    }

    /// Starts watching the traces of `sandbox`.
    ///
    /// # Errors
    /// When a new sandbox's database cannot be created.
    pub fn subscribe(&self, sandbox: &SandboxId) -> Result<Subscription, OpError> {
        Ok(self.sandbox(sandbox)?.feed.subscribe())
    }

    /// Turns a finished recording into a trace: counts it, keeps it for late
    /// watchers and publishes it. Returns the trace.
    fn publish(
        &self,
        sandbox: &Sandbox,
        started: Started,
        outcome: Outcome,
        found: bool,
        recorder: Recorder,
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
        let stats = sandbox.update_stats(|s| {
            match outcome {
                Outcome::Hit | Outcome::NearHit => s.hits += 1,
                Outcome::NullHit => s.null_hits += 1,
                Outcome::Miss => s.misses += 1,
                Outcome::Fallback => s.fallbacks += 1,
                Outcome::Written => {
                    s.writes += 1;
                    return;
                }
                Outcome::Failed => {
                    s.failures += 1;
                    return;
                }
            }
            s.total_latency_us += trace.total_us;
            let db_us = trace.database_us() + trace.simulated_us();
            if db_us > 0 {
                s.database_reads += 1;
                s.database_latency_us += db_us;
            }
        });
        sandbox.remember(&trace);
        let message = ServerMessage::Trace {
            trace: trace.clone(),
            stats,
        };
        sandbox.feed.publish(Arc::from(to_json(&message)));
        trace
    }
}

/// How long a paused operation waits for "continue" by default.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Step-through options of a read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Pause before the Redis or SQL steps at these nodes.
    pub pause_before: Vec<NodeId>,
    /// Use this operation id (from [`Playground::next_operation_id`]), so a
    /// caller can refer to the operation before it finishes.
    pub operation_id: Option<u64>,
    /// The instance that serves the read; round-robin when `None`.
    pub instance: Option<String>,
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
    fn pause<'a>(
        &'a self,
        next: &'a NodeId,
        done: &'a [TraceStep],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let paused = ServerMessage::Paused {
                operation_id: self.operation_id,
                operation: self.operation.clone(),
                at: next.clone(),
                steps: done.to_vec(),
                timeout_secs: self.timeout.as_secs(),
            };
            // Register first, then tell: a "continue" can only come after
            // the browser has heard of the pause.
            let released = self.sandbox.hold(self.operation_id);
            self.sandbox.feed.publish(Arc::from(to_json(&paused)));
            let timed_out = self
                .sandbox
                .wait_held(self.operation_id, released, self.timeout)
                .await;
            let resumed = ServerMessage::Resumed {
                operation_id: self.operation_id,
                timed_out,
            };
            self.sandbox.feed.publish(Arc::from(to_json(&resumed)));
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
            instance: Some(instance.name.clone()),
            at_ms: unix_millis(),
        }
    }
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Settings for this one write instead of the sandbox's (the scenarios
    /// use it).
    pub settings: Option<SandboxSettings>,
    /// The instance that writes; round-robin when `None`.
    pub instance: Option<String>,
}

/// Serializes a protocol message; our types always serialize.
pub fn to_json(message: &ServerMessage) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}
