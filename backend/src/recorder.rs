//! The trace API: the only way the cache-aside code does I/O.
//!
//! The cache-aside functions never call Redis or the database directly; they
//! hand a [`RedisCall`] or an [`SqlCall`] to a [`Recorder`], which runs it,
//! measures it and writes down a [`TraceStep`]. So every step a learner sees
//! is exactly what happened, and no handler sprinkles timing code by hand.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::FromRedisValue;
use shared::{Action, NodeId, StepStatus, TraceStep};

use crate::cache::{reply_text, CacheError, CallKind, RedisCall};
use crate::store::{SqlCall, StoreError};

/// Where an operation may be held at a breakpoint. The playground's
/// implementation tells the watching browsers and waits for "continue".
pub trait Gate: Send + Sync {
    /// Called before the step at `next` runs, with the steps done so far;
    /// the operation waits until the returned future completes.
    fn pause<'a>(
        &'a self,
        next: &'a NodeId,
        done: &'a [TraceStep],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Collects the steps of one operation.
pub struct Recorder {
    started: Instant,
    steps: Vec<TraceStep>,
    /// Step-through: pause before the steps at these nodes.
    breakpoints: Vec<NodeId>,
    gate: Option<Arc<dyn Gate>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("steps", &self.steps)
            .field("breakpoints", &self.breakpoints)
            .finish()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// Starts the clock for a new operation.
    pub fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            steps: Vec::new(),
            breakpoints: Vec::new(),
            gate: None,
        }
    }

    /// A recorder that holds the operation at `gate` before any Redis or SQL
    /// step at one of the `breakpoints` nodes.
    pub fn with_breakpoints(breakpoints: Vec<NodeId>, gate: Arc<dyn Gate>) -> Recorder {
        Recorder {
            breakpoints,
            gate: Some(gate),
            ..Recorder::new()
        }
    }

    /// Waits at the gate if `node` has a breakpoint. The wait is not part of
    /// any step's measured time.
    async fn checkpoint(&mut self, node: &NodeId) {
        if let Some(gate) = &self.gate {
            if self.breakpoints.contains(node) {
                gate.pause(node, &self.steps).await;
            }
        }
    }

    /// Records a step that does no I/O: a decision, or the answer going back.
    pub fn note(&mut self, node: NodeId, status: StepStatus, text: impl Into<String>) {
        self.push(
            node,
            Action::Note(text.into()),
            String::new(),
            status,
            Duration::ZERO,
            Duration::ZERO,
        );
    }

    /// Runs one Redis command and records it with its reply and its measured
    /// time. A nil reply to a lookup is recorded as a miss, any other reply to
    /// a lookup as a hit.
    ///
    /// # Errors
    /// Whatever the command returned; the error is recorded too.
    pub async fn redis<T: FromRedisValue>(
        &mut self,
        node: NodeId,
        call: RedisCall<T>,
    ) -> Result<T, CacheError> {
        self.checkpoint(&node).await;
        let start = Instant::now();
        let result = call.run().await;
        let took = start.elapsed();
        let action = Action::Redis(call.text);
        match result {
            Ok((value, raw)) => {
                let status = match (call.kind, &raw) {
                    (CallKind::Lookup, redis::Value::Nil) => StepStatus::Miss,
                    (CallKind::Lookup, _) => StepStatus::Hit,
                    (CallKind::Write, _) => StepStatus::Ok,
                };
                self.push(node, action, reply_text(&raw), status, took, Duration::ZERO);
                Ok(value)
            }
            Err(error) => {
                self.push_error(node, action, &error, took);
                Err(error)
            }
        }
    }

    /// Runs one SQL statement and records it. The real query time and the
    /// simulated delay (slept after the query) are measured and kept apart.
    ///
    /// # Errors
    /// Whatever the query returned; the error is recorded too.
    pub async fn sql<T>(&mut self, node: NodeId, call: SqlCall<T>) -> Result<T, StoreError> {
        self.checkpoint(&node).await;
        let start = Instant::now();
        let result = call.run.await;
        let took = start.elapsed();
        let action = Action::Sql(call.text);
        match result {
            Ok(value) => {
                let delay_start = Instant::now();
                if !call.simulated_delay.is_zero() {
                    tokio::time::sleep(call.simulated_delay).await;
                }
                let delayed = delay_start.elapsed();
                self.push(
                    node,
                    action,
                    (call.summarize)(&value),
                    StepStatus::Ok,
                    took,
                    delayed,
                );
                Ok(value)
            }
            Err(error) => {
                self.push_error(node, action, &error, took);
                Err(error)
            }
        }
    }

    /// Looks something up in the process's own memory (a near cache) and
    /// records it: found is a hit, not found a miss.
    pub fn local<T>(&mut self, node: NodeId, text: String, lookup: impl FnOnce() -> Option<T>) -> Option<T> {
        let start = Instant::now();
        let found = lookup();
        let took = start.elapsed();
        let (reply, status) = match found {
            Some(_) => ("found".to_string(), StepStatus::Hit),
            None => ("not found".to_string(), StepStatus::Miss),
        };
        self.push(node, Action::Note(text), reply, status, took, Duration::ZERO);
        found
    }

    /// Records that a message sent at `via` arrived at `node` after `delay`
    /// (or, with an error status, that it never did).
    pub fn received(&mut self, node: NodeId, via: NodeId, text: String, status: StepStatus, delay: Duration) {
        self.push(
            node,
            Action::Note(text),
            String::new(),
            status,
            delay,
            Duration::ZERO,
        );
        if let Some(step) = self.steps.last_mut() {
            step.via = Some(via);
        }
    }

    /// Time since the operation started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The steps so far.
    pub fn steps(&self) -> &[TraceStep] {
        &self.steps
    }

    /// Ends the recording: the steps and the total wall time.
    pub fn finish(self) -> (Vec<TraceStep>, Duration) {
        (self.steps, self.started.elapsed())
    }

    fn push_error(&mut self, node: NodeId, action: Action, error: &dyn std::fmt::Display, took: Duration) {
        let reply = format!("error: {error}");
        self.push(node, action, reply, StepStatus::Error, took, Duration::ZERO);
    }

    fn push(
        &mut self,
        node: NodeId,
        action: Action,
        reply: String,
        status: StepStatus,
        took: Duration,
        delayed: Duration,
    ) {
        self.steps.push(TraceStep {
            node,
            action,
            reply,
            status,
            duration_us: micros(took),
            simulated_delay_us: micros(delayed),
            via: None,
        });
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A duration in whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
