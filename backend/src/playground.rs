//! The playground as a service: runs operations in a sandbox, turns their
//! recordings into traces, keeps the counters and publishes the traces.
//!
//! It sits between the transport (REST and WebSocket handlers in
//! [`crate::http`]) and the cache-aside engine ([`crate::cache_aside`]),
//! and knows neither HTTP nor the UI.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use shared::{
    check_id, Diagram, InputError, Kind, Operation, Origin, Outcome, ReadResult, SandboxId,
    ServerMessage, Trace, PROTOCOL_VERSION,
};

use crate::cache::Cache;
use crate::cache_aside::{CacheAside, ReadAnswer};
use crate::feed::Subscription;
use crate::recorder::{micros, Recorder};
use crate::sandbox::Sandboxes;
use crate::store::{Database, StoreError};

/// Shared state behind every request.
pub struct Playground {
    /// The database every sandbox reads.
    pub database: Database,
    /// The default Redis endpoint, used for health checks.
    pub cache: Cache,
    pub sandboxes: Sandboxes,
    /// The next trace id; ids are unique for the life of the process.
    next_trace_id: AtomicU64,
}

/// Why a read could not be answered. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Occurs when the request names a bad id or sandbox.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Occurs when the database fails (the cache failing is never an error).
    #[error("the database failed: {0}")]
    Database(#[from] StoreError),
}

impl Playground {
    pub fn new(database: Database, cache: Cache, sandboxes: Sandboxes) -> Playground {
        Playground {
            database,
            cache,
            sandboxes,
            next_trace_id: AtomicU64::new(1),
        }
    }

    /// Reads a record through the cache in `sandbox`, then publishes the
    /// trace to every browser watching that sandbox.
    ///
    /// # Errors
    /// [`ReadError`]; a failed read is still traced and published.
    pub async fn read(
        &self,
        sandbox: &SandboxId,
        kind: Kind,
        id: u64,
        origin: Origin,
    ) -> Result<ReadResult, ReadError> {
        check_id(id)?;
        let sandbox = self.sandboxes.get(sandbox);
        let started_at_ms = unix_millis();
        let engine = CacheAside {
            cache: &sandbox.cache,
            database: &self.database,
            settings: &sandbox.settings,
            sandbox: &sandbox.id,
        };
        let mut recorder = Recorder::new();
        let answer = engine.read(kind, id, &mut recorder).await;
        let (steps, took) = recorder.finish();

        let (outcome, record) = match &answer {
            Ok(ReadAnswer { outcome, record }) => (*outcome, record.clone()),
            Err(_) => (Outcome::Failed, None),
        };
        let trace = Trace {
            id: self.next_trace_id.fetch_add(1, Ordering::Relaxed),
            sandbox: sandbox.id.clone(),
            operation: Operation::Read { kind, id },
            origin,
            outcome,
            found: record.is_some(),
            steps,
            total_us: micros(took),
            started_at_ms,
        };
        let stats = sandbox.update_stats(|s| {
            match outcome {
                Outcome::Hit => s.hits += 1,
                Outcome::NullHit => s.null_hits += 1,
                Outcome::Miss => s.misses += 1,
                Outcome::Fallback => s.fallbacks += 1,
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
        let result = ReadResult {
            kind,
            id,
            outcome,
            found: trace.found,
            record,
            latency_us: trace.total_us,
            trace_id: trace.id,
            sandbox: sandbox.id.clone(),
        };
        sandbox.remember(&trace);
        let message = ServerMessage::Trace { trace, stats };
        sandbox.feed.publish(Arc::from(to_json(&message)));
        answer?;
        Ok(result)
    }

    /// The greeting for a browser that starts watching `sandbox`.
    pub fn hello(&self, sandbox: &SandboxId) -> ServerMessage {
        let sandbox = self.sandboxes.get(sandbox);
        ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            sandbox: sandbox.id.clone(),
            settings: sandbox.settings.clone(),
            stats: sandbox.stats(),
            diagram: Diagram::cache_aside_read(),
            recent: sandbox.recent(),
        }
    }

    /// Starts watching the traces of `sandbox`.
    pub fn subscribe(&self, sandbox: &SandboxId) -> Subscription {
        self.sandboxes.get(sandbox).feed.subscribe()
    }
}

/// Serializes a protocol message; our types always serialize.
pub fn to_json(message: &ServerMessage) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
