//! The trace API: the only way the cache-aside code does I/O.
//!
//! The cache-aside functions never call Redis or the database directly; they
//! hand a [`RedisCall`] or an [`SqlCall`] to a [`Recorder`], which runs it,
//! measures it and writes down a [`TraceStep`]. So every step a learner sees
//! is exactly what happened, and no handler sprinkles timing code by hand.

use std::time::{Duration, Instant};

use redis::FromRedisValue;
use shared::{Action, NodeId, StepStatus, TraceStep};

use crate::cache::{reply_text, CacheError, CallKind, RedisCall};
use crate::store::{SqlCall, StoreError};

/// Collects the steps of one operation.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    steps: Vec<TraceStep>,
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

    fn push_error(
        &mut self,
        node: NodeId,
        action: Action,
        error: &dyn std::fmt::Display,
        took: Duration,
    ) {
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
        });
    }
}

/// A duration in whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
