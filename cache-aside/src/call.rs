//! One call of the engine: the cache, the key, this call's options and
//! observer, and the two ways a step happens: a Redis command, measured and
//! reported, or a decision, reported.

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::breaker::{Admission, BreakerPolicy};
use crate::cache::CacheAside;
use crate::connection::RedisError;
use crate::observe::{Observer, Reply, Status, Step, StepKind};
use crate::options::Options;

/// Everything one call needs.
pub(crate) struct Call<'a, V> {
    pub(crate) cache: &'a CacheAside<V>,
    /// The application's logical key (`user:42`).
    pub(crate) key: &'a str,
    pub(crate) options: &'a Options,
    pub(crate) observer: &'a dyn Observer,
    /// Whether the observer wants steps (if not, none are measured).
    observed: bool,
    /// The near cache's generation when the call began: its answer is kept
    /// near only if no invalidation arrived meanwhile.
    pub(crate) near_seen: u64,
}

impl<'a, V> Call<'a, V> {
    pub(crate) fn new(
        cache: &'a CacheAside<V>,
        key: &'a str,
        options: &'a Options,
        observer: &'a dyn Observer,
    ) -> Call<'a, V> {
        Call {
            cache,
            key,
            options,
            observed: observer.wants_steps(),
            near_seen: cache.inner.near.as_ref().map_or(0, |near| near.generation()),
            observer,
        }
    }

    /// Whether the observer wants steps (and so, measurements).
    pub(crate) fn observed(&self) -> bool {
        self.observed
    }

    /// Where the value lives in Redis (`{prefix}user:42`), as a command
    /// argument.
    pub(crate) fn redis_key(&self) -> crate::keys::ValueKey<'_> {
        self.cache.inner.keys.value_arg(self.key)
    }

    /// Holds the call before a step if the observer has a breakpoint there.
    pub(crate) async fn pause(&self, next: StepKind) {
        if let Some(pause) = self.observer.checkpoint(next, self.key) {
            pause.await;
        }
    }

    /// Sends one command, measures it and reports it. `judge` names the
    /// step and its status from the reply (a `SET NX` that replies nil is a
    /// lock held by someone else, say); errors are reported as `fallback`.
    /// With a circuit breaker, the command may not be sent at all.
    pub(crate) async fn redis(
        &self,
        intent: StepKind,
        command: &redis::Cmd,
        judge: impl FnOnce(&redis::Value) -> (StepKind, Status),
    ) -> Result<redis::Value, RedisError> {
        // An open breaker: Redis has been failing, so do not wait on it
        // again; the caller falls back at once.
        let admission = match &self.options.breaker {
            Some(_) => self.cache.inner.breaker.admit(),
            None => Admission::Send,
        };
        if let Admission::Refuse = admission {
            let error = RedisError::BreakerOpen;
            self.note(
                StepKind::BreakerRefused,
                Status::Error,
                Duration::ZERO,
                Reply::Error(&error),
            );
            return Err(error);
        }
        self.pause(intent).await;
        // A span per command, named with OpenTelemetry's database
        // conventions; the command's text is only built if it is recorded.
        let span = tracing::debug_span!(
            target: "cache_aside",
            "redis",
            otel.name = intent.name(),
            db.system = "redis",
            db.statement = tracing::field::Empty,
            cache.key = self.key,
            cache.step = tracing::field::Empty,
            cache.status = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("db.statement", crate::connection::command_text(command));
        }
        let started = Instant::now();
        let timeout = self.cache.inner.timeout;
        let redis = &self.cache.inner.redis;
        let mut sent = started;
        let mut result = redis.query(command, timeout).instrument(span.clone()).await;
        // A dead connection (the first command after an outage or a cut)
        // is not Redis failing: the client is already connecting again. A
        // command that may safely go twice goes once more, in what is left
        // of the same timeout; the dead try is told as a step of its own.
        if let Err(error @ RedisError::Dropped(_)) = &result {
            let left = timeout.saturating_sub(started.elapsed());
            if self.options.resend_dropped && crate::connection::is_idempotent(command) && !left.is_zero() {
                if self.observed {
                    self.observer.step(&Step {
                        kind: StepKind::Resent,
                        key: self.key,
                        command: Some(command),
                        reply: Reply::Error(error),
                        status: Status::Error,
                        took: started.elapsed(),
                        message: None,
                    });
                }
                sent = Instant::now();
                result = match redis.query(command, left).instrument(span.clone()).await {
                    // Timed out within the one budget: said as that budget.
                    Err(RedisError::Timeout(_)) => Err(RedisError::Timeout(timeout)),
                    other => other,
                };
            }
        }
        let took = sent.elapsed();
        let (kind, reply, status) = match &result {
            Ok(value) => {
                let (kind, status) = judge(value);
                (kind, Reply::Value(value), status)
            }
            Err(error) => (intent, Reply::Error(error), Status::Error),
        };
        span.record("cache.step", kind.name());
        span.record("cache.status", status.name());
        self.observer.step(&Step {
            kind,
            key: self.key,
            command: Some(command),
            reply,
            status,
            took,
            message: None,
        });
        // After the command's own step, so a change of the breaker's state
        // is told with the command that caused it.
        if let Some(policy) = &self.options.breaker {
            self.settle_breaker(policy, admission, &result);
        }
        result
    }

    /// Tells the breaker how a command it let through went, and reports a
    /// change of state (to this call's observer and the handle's, which
    /// sees every call).
    fn settle_breaker(
        &self,
        policy: &BreakerPolicy,
        admission: Admission,
        result: &Result<redis::Value, RedisError>,
    ) {
        let outage = result.as_ref().err().filter(|e| e.is_outage());
        let changed = match (admission, outage) {
            (Admission::Probe(probe), None) => {
                probe.answered();
                Some(StepKind::BreakerClosed)
            }
            (Admission::Probe(probe), Some(_)) => {
                probe.failed(policy);
                Some(StepKind::BreakerOpened)
            }
            (_, Some(_)) => self
                .cache
                .inner
                .breaker
                .failed(policy)
                .then_some(StepKind::BreakerOpened),
            (_, None) => {
                self.cache.inner.breaker.answered();
                None
            }
        };
        if let Some(kind) = changed {
            let reply = outage.map_or(Reply::None, Reply::Error);
            self.note(kind, Status::Ok, Duration::ZERO, reply);
            let handle = &*self.cache.inner.observer;
            if !std::ptr::addr_eq(handle, self.observer) {
                handle.step(&Step {
                    kind,
                    key: self.key,
                    command: None,
                    reply,
                    status: Status::Ok,
                    took: Duration::ZERO,
                    message: None,
                });
            }
        }
    }

    /// Reports a step that sent nothing: a decision, a wait, a load.
    pub(crate) fn note(&self, kind: StepKind, status: Status, took: Duration, reply: Reply<'_>) {
        if !self.observed {
            return;
        }
        self.observer.step(&Step {
            kind,
            key: self.key,
            command: None,
            reply,
            status,
            took,
            message: None,
        });
    }
}

/// A reply that counts as done.
pub(crate) fn ok(kind: StepKind) -> impl FnOnce(&redis::Value) -> (StepKind, Status) {
    move |_| (kind, Status::Ok)
}

/// The integer in a reply (`EVAL`, `DEL`, `PUBLISH`), 0 if none.
pub(crate) fn integer(value: &redis::Value) -> i64 {
    match value {
        redis::Value::Int(n) => *n,
        _ => 0,
    }
}
