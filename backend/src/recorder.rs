//! The trace recorder: the playground's observer of the engine.
//!
//! The engine reports each step it takes in the pattern's vocabulary (a
//! lookup, a load, a store refused, a lock wait), with the command as sent
//! and the time it took. The recorder turns each into a [`TraceStep`] on a
//! node of the diagram: this is the only place that maps the engine's steps
//! onto the diagram. It also records the playground's own steps (the
//! request arriving, the database write, the answer going back), and holds
//! an operation at a breakpoint when the learner asked for one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_aside::{Observer, Pause, Reply, Status, Step, StepKind};
use shared::diagram::nodes::{
    BREAKER, CACHE_ERROR, CHECK_CACHE, LEASE, LOCK, NEAR_CACHE, PUBLISH, QUERY_DATABASE, RETURN_CACHED,
    RETURN_LOADED, STORE_IN_CACHE, UPDATE_CACHE,
};
use shared::{Action, NodeId, StepStatus, TraceStep};

use crate::store::{SqlCall, SqlDone, StoreError};

/// The most of a Redis command a trace step carries, in bytes. A `SET` of
/// a padded value can be over a hundred kilobytes; every watcher, the
/// sandbox's recent traces and the feed's buffer would each hold a copy.
/// The key and the envelope's header (at the start) and the TTL (at the
/// end, after the value) are what the page shows anyway.
pub const COMMAND_SHOWN: usize = 2_048;

/// Of the bytes shown, those from the command's end.
const COMMAND_TAIL: usize = 256;

/// `command` cut to its first and last bytes ([`COMMAND_SHOWN`] in all,
/// at character boundaries), saying how long it was in between.
pub fn clip_command(command: String) -> String {
    if command.len() <= COMMAND_SHOWN {
        return command;
    }
    let mut head = COMMAND_SHOWN - COMMAND_TAIL;
    while !command.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = command.len() - COMMAND_TAIL;
    while !command.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … ({} bytes in all) … {}",
        &command[..head],
        command.len(),
        &command[tail..]
    )
}

/// Where an operation may be held at a breakpoint. The playground's
/// implementation tells the watching browsers and waits for "continue".
pub trait Gate: Send + Sync {
    /// Called before the step at `next` runs, with the steps done so far;
    /// the operation waits until the returned future completes.
    fn pause(&self, next: NodeId, done: Vec<TraceStep>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Which half of the diagram an operation runs through: a store during a
/// read is "Store in Redis", during a write "Then the cache".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Read,
    Write,
}

/// The diagram node of an engine step. `in_lock` says whether the call has
/// reached the lock: a lookup made there (the holder's second look, a
/// waiter's look) belongs to the lock box. `None` for steps that are not
/// part of an operation (the bus's own events).
pub fn node_of(kind: StepKind, flow: Flow, in_lock: bool) -> Option<NodeId> {
    Some(match kind {
        StepKind::NearLookup => NEAR_CACHE,
        StepKind::Lookup if in_lock => LOCK,
        StepKind::Lookup | StepKind::EarlyRefresh | StepKind::Unreadable => CHECK_CACHE,
        StepKind::Load => QUERY_DATABASE,
        StepKind::Store | StepKind::StoreRefused => match flow {
            Flow::Read => STORE_IN_CACHE,
            Flow::Write => UPDATE_CACHE,
        },
        StepKind::LeaseTaken => LEASE,
        StepKind::LockAcquire | StepKind::LockWait | StepKind::LockRelease => LOCK,
        StepKind::Publish => PUBLISH,
        StepKind::ServedStale => RETURN_CACHED,
        StepKind::Fallback => CACHE_ERROR,
        StepKind::Invalidate | StepKind::Expiry => UPDATE_CACHE,
        // A read that finds its key's invalidation still owed delivers it
        // before looking.
        StepKind::InvalidationRetried => CHECK_CACHE,
        StepKind::BreakerRefused => BREAKER,
        // Fail-safe goes back to the copy the lookup kept.
        StepKind::FailSafe => CHECK_CACHE,
        // Folded into the step they belong to (see `Recorder::step`).
        StepKind::Encode
        | StepKind::Decode
        | StepKind::BreakerOpened
        | StepKind::BreakerClosed
        | StepKind::InvalidationPending
        | StepKind::Resent => return None,
        StepKind::InvalidationReceived | StepKind::Subscribed | StepKind::Unsubscribed => return None,
    })
}

/// Collects the steps of one operation. Shared (`Arc`) between the call and
/// the loader it hands the engine, which reports the SQL it ran.
pub struct Recorder {
    started: Instant,
    flow: Flow,
    /// The instance doing the work, named in near-cache steps.
    instance: Option<String>,
    /// A std mutex: held only to push a step, never across an `await`.
    state: Mutex<State>,
    /// Step-through: hold the operation before the steps at these nodes.
    breakpoints: Vec<NodeId>,
    gate: Option<Arc<dyn Gate>>,
}

#[derive(Default)]
struct State {
    steps: Vec<TraceStep>,
    /// What the loader ran, waiting for the engine's load step.
    sql: Option<SqlDone>,
    /// Whether the call has reached the lock.
    in_lock: bool,
    /// The value just encoded, for the store that follows.
    encoded: Option<String>,
    /// A command that found its connection dead and goes again: drawn at
    /// the box of the try that follows.
    dead_try: Option<TraceStep>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("flow", &self.flow)
            .field("steps", &lock(&self.state).steps)
            .finish()
    }
}

impl Recorder {
    /// Starts the clock for a new operation of `flow`, done by `instance`.
    pub fn new(flow: Flow, instance: Option<String>) -> Recorder {
        Recorder {
            started: Instant::now(),
            flow,
            instance,
            state: Mutex::new(State::default()),
            breakpoints: Vec::new(),
            gate: None,
        }
    }

    /// A recorder that holds the operation at `gate` before any step at
    /// one of the `breakpoints` nodes.
    pub fn with_breakpoints(mut self, breakpoints: Vec<NodeId>, gate: Arc<dyn Gate>) -> Recorder {
        if !breakpoints.is_empty() {
            self.breakpoints = breakpoints;
            self.gate = Some(gate);
        }
        self
    }

    /// Records a step that does no I/O: the request arriving, the answer.
    pub fn note(&self, node: NodeId, status: StepStatus, text: impl Into<String>) {
        self.push(
            node,
            Action::Note(text.into()),
            String::new(),
            status,
            Duration::ZERO,
            Duration::ZERO,
        );
    }

    /// Runs one SQL statement of the playground's own (a write) and records
    /// it; the real query time and the simulated delay are kept apart.
    ///
    /// # Errors
    /// Whatever the statement returned; the error is recorded too.
    pub async fn sql<T>(&self, node: NodeId, call: SqlCall<T>) -> Result<T, StoreError> {
        self.hold(&node).await;
        let (result, done) = call.run_measured().await;
        let status = if result.is_ok() {
            StepStatus::Ok
        } else {
            StepStatus::Error
        };
        self.push(
            node,
            Action::Sql(done.text),
            done.summary,
            status,
            done.real,
            done.simulated,
        );
        result
    }

    /// What the loader ran: kept until the engine reports its load step,
    /// which it then describes.
    pub fn loaded(&self, done: SqlDone) {
        lock(&self.state).sql = Some(done);
    }

    /// Records that a message sent at `via` arrived at `node` after
    /// `delay` (or, with an error status, that it never did). The step goes
    /// right after the sending step (and the arrivals recorded before it),
    /// where it happened, even if the operation has answered since.
    pub fn received(&self, node: NodeId, via: NodeId, text: String, status: StepStatus, delay: Duration) {
        let mut state = lock(&self.state);
        let at = state
            .steps
            .iter()
            .rposition(|s| s.node == via || s.via.as_ref() == Some(&via))
            .map_or(state.steps.len(), |i| i + 1);
        state.steps.insert(
            at,
            TraceStep {
                node,
                action: Action::Note(text),
                reply: String::new(),
                status,
                duration_us: micros(delay),
                simulated_delay_us: 0,
                via: Some(via),
            },
        );
    }

    /// The node of the last step so far.
    pub fn last_node(&self) -> Option<NodeId> {
        lock(&self.state).steps.last().map(|s| s.node.clone())
    }

    /// Ends the recording: the steps and the wall time so far.
    pub fn finish(&self) -> (Vec<TraceStep>, Duration) {
        let mut state = lock(&self.state);
        // A dead try whose resend never reported (the call was cancelled):
        // told where the command was headed, the box it was looking in.
        if let Some(dead) = state.dead_try.take() {
            state.steps.push(dead);
        }
        (std::mem::take(&mut state.steps), self.started.elapsed())
    }

    /// Time since the operation started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits at the gate if `node` has a breakpoint.
    async fn hold(&self, node: &NodeId) {
        if let Some(pause) = self.pause_at(node.clone()) {
            pause.await;
        }
    }

    fn pause_at(&self, node: NodeId) -> Option<Pause<'_>> {
        let gate = self.gate.as_ref()?;
        if !self.breakpoints.contains(&node) {
            return None;
        }
        let done = lock(&self.state).steps.clone();
        Some(gate.pause(node, done))
    }

    fn push(
        &self,
        node: NodeId,
        action: Action,
        reply: String,
        status: StepStatus,
        took: Duration,
        delayed: Duration,
    ) {
        lock(&self.state).steps.push(TraceStep {
            node,
            action,
            reply,
            status,
            duration_us: micros(took),
            simulated_delay_us: micros(delayed),
            via: None,
        });
    }

    /// What a step that sent no command says, in words.
    fn describe(&self, step: &Step<'_>) -> String {
        match (step.kind, step.status) {
            (StepKind::NearLookup, _) => match &self.instance {
                Some(name) => format!("near cache of instance {name}: {}", step.key),
                None => format!("near cache: {}", step.key),
            },
            (StepKind::EarlyRefresh, _) => "XFetch: refresh now, before the value expires".into(),
            (StepKind::Unreadable, _) => {
                "the cached copy cannot be read (sealed with a retired key, stored in the clear while encryption was off, or another format): a miss".into()
            }
            (StepKind::ServedStale, _) => {
                "past its fresh time: served stale while one request refreshes it".into()
            }
            (StepKind::Fallback, _) => format!("cache error ({}); falling back to the database", step.reply),
            (StepKind::BreakerRefused, _) => {
                "the circuit breaker is open: Redis is not asked, no waiting".into()
            }
            (StepKind::FailSafe, _) => format!(
                "the database failed: answering with the copy that expired {} ms ago (fail-safe)",
                step.took.as_millis()
            ),
            (StepKind::LockWait, Status::Hit) => "handed the value by the lock holder".into(),
            (StepKind::LockWait, _) => "waited for the lock holder: nothing handed over".into(),
            (StepKind::StoreRefused, Status::Error) => "the value does not serialize: not cached".into(),
            (StepKind::StoreRefused, _) => {
                "not stored: another reader holds the lease, or a guard refused".into()
            }
            (StepKind::Load, _) => format!("load {}", step.key),
            (kind, _) => format!("{kind:?}"),
        }
    }
}

/// Why a lookup that found an entry is still a miss: a version guard's
/// marker, or a copy past its fresh time that fail-safe keeps only for when
/// the database fails. `None` for every other step.
fn why_a_found_entry_missed(step: &Step<'_>) -> Option<&'static str> {
    let Reply::Value(redis::Value::BulkString(bytes)) = step.reply else {
        return None;
    };
    if step.kind != StepKind::Lookup || step.status != Status::Miss {
        return None;
    }
    match cache_aside::Envelope::<()>::peek(bytes)?.content {
        cache_aside::Content::Invalidated => Some("a write's marker (version guard): a miss"),
        _ => Some("past its fresh time: a miss (Redis keeps it for fail-safe, which answers with it only if the database fails)"),
    }
}

impl Observer for Recorder {
    fn step(&self, step: &Step<'_>) {
        let mut state = lock(&self.state);
        // Encoding and decoding are told with the store they precede and
        // the lookup they follow: their size, format and measured time.
        let codec = || format!("{}, in {} µs", step.reply, step.took.as_micros());
        match step.kind {
            StepKind::Encode => {
                state.encoded = Some(codec());
                return;
            }
            StepKind::Decode => {
                if let Some(last) = state.steps.last_mut() {
                    last.reply = format!("{} · decoded {}", last.reply, codec());
                }
                return;
            }
            // The breaker changes state on the command that made it; the
            // kept invalidation belongs to the failed delete.
            StepKind::BreakerOpened | StepKind::BreakerClosed | StepKind::InvalidationPending => {
                let told = match step.kind {
                    StepKind::BreakerOpened => "the circuit breaker opens: reads skip Redis for a while",
                    StepKind::BreakerClosed => "the probe got through: the circuit breaker closes",
                    _ => "the invalidation is kept and sent again until Redis takes it",
                };
                if let Some(last) = state.steps.last_mut() {
                    last.reply = if last.reply.is_empty() {
                        told.to_string()
                    } else {
                        format!("{} · {told}", last.reply)
                    };
                }
                return;
            }
            StepKind::Resent => {
                state.dead_try = Some(TraceStep {
                    node: CHECK_CACHE,
                    action: Action::Redis(clip_command(step.command_text())),
                    reply: format!("{} · sent again on a new connection", step.reply),
                    status: StepStatus::Error,
                    duration_us: micros(step.took),
                    simulated_delay_us: 0,
                    via: None,
                });
                return;
            }
            _ => {}
        }
        let Some(node) = node_of(step.kind, self.flow, state.in_lock) else {
            return;
        };
        if let Some(mut dead) = state.dead_try.take() {
            dead.node = node.clone();
            state.steps.push(dead);
        }
        if matches!(step.kind, StepKind::LockAcquire | StepKind::LockWait) {
            state.in_lock = true;
        }
        let status = match step.status {
            Status::Ok => StepStatus::Ok,
            Status::Hit => StepStatus::Hit,
            Status::Miss => StepStatus::Miss,
            Status::Error => StepStatus::Error,
        };
        let (action, reply, took, delayed) = match (step.kind, state.sql.take()) {
            // The loader said which query it ran and how long the database
            // really took, apart from the simulated delay.
            (StepKind::Load, Some(sql)) => {
                // Time spent queueing for one of the database's connections
                // is neither the query nor the simulated delay: said apart.
                let reply = if sql.reached && sql.queued >= Duration::from_millis(1) {
                    format!(
                        "{} (after {} ms waiting for a free database connection)",
                        sql.summary,
                        sql.queued.as_millis()
                    )
                } else {
                    sql.summary
                };
                (Action::Sql(sql.text), reply, sql.real, sql.simulated)
            }
            (_, sql) => {
                state.sql = sql;
                let action = match step.command {
                    Some(_) => Action::Redis(clip_command(step.command_text())),
                    None => Action::Note(self.describe(step)),
                };
                let mut reply = match step.reply {
                    Reply::None => String::new(),
                    reply => reply.to_string(),
                };
                if let Some(why) = why_a_found_entry_missed(step) {
                    reply = format!("{reply} · {why}");
                }
                if matches!(step.kind, StepKind::Store | StepKind::StoreRefused) {
                    if let Some(encoded) = state.encoded.take() {
                        reply = format!("{reply} · encoded {encoded}");
                    }
                }
                // A fail-safe step's time is how stale the copy is (told in
                // its text), not time spent.
                let took = if step.kind == StepKind::FailSafe {
                    Duration::ZERO
                } else {
                    step.took
                };
                (action, reply, took, Duration::ZERO)
            }
        };
        state.steps.push(TraceStep {
            node,
            action,
            reply,
            status,
            duration_us: micros(took),
            simulated_delay_us: micros(delayed),
            via: None,
        });
    }

    fn checkpoint<'a>(&'a self, next: StepKind, _key: &'a str) -> Option<Pause<'a>> {
        self.gate.as_ref()?;
        let in_lock = lock(&self.state).in_lock;
        self.pause_at(node_of(next, self.flow, in_lock)?)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

/// A light observer for reads that are counted, not traced: the diagram
/// nodes a call passed and the decisions that matter for counting, with no
/// text and no timings (herds, and reads beyond a sandbox's traces per
/// second).
#[derive(Default)]
pub struct Path {
    state: Mutex<PathState>,
}

/// What a [`Path`] saw.
#[derive(Default)]
pub struct PathState {
    /// The nodes the engine's steps mapped to, in order.
    pub nodes: Vec<NodeId>,
    in_lock: bool,
    /// It reloaded a value that had not expired yet (XFetch).
    pub early: bool,
    /// It took the refresh lock (stale-while-revalidate's one refresh).
    pub refresh_taken: bool,
}

impl Path {
    /// What the call did.
    pub fn finish(self) -> PathState {
        self.state.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for Path {
    fn step(&self, step: &Step<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = node_of(step.kind, Flow::Read, state.in_lock) {
            state.nodes.push(node);
        }
        match step.kind {
            StepKind::LockAcquire => {
                state.in_lock = true;
                state.refresh_taken |= step.status == Status::Hit;
            }
            StepKind::LockWait => state.in_lock = true,
            StepKind::EarlyRefresh => state.early = true,
            _ => {}
        }
    }
}

/// The naive application of section 7, whose handler lets a cache error
/// through (the engine itself always falls back): wraps a read's observer
/// and loader so that once Redis has failed the loader fails at once, with
/// [`StoreError::NoFallback`], instead of asking the database. The steps
/// of the fallback that did not happen are not passed on.
pub struct NoFallback<'a> {
    inner: &'a dyn Observer,
    failed: Arc<Mutex<Option<String>>>,
}

impl<'a> NoFallback<'a> {
    /// Wraps `inner` when `naive`; `None` otherwise.
    pub fn when(naive: bool, inner: &'a dyn Observer) -> Option<NoFallback<'a>> {
        naive.then(|| NoFallback {
            inner,
            failed: Arc::default(),
        })
    }

    /// `load`, failing instead once Redis has failed (when wrapped).
    pub fn guard(
        naive: Option<&NoFallback<'_>>,
        load: impl FnOnce() -> crate::sandbox::Load + Send + 'static,
    ) -> impl FnOnce() -> crate::sandbox::Load + Send + 'static {
        let failed = naive.map(|n| n.failed.clone());
        move || match failed.and_then(|f| lock(&f).clone()) {
            Some(error) => Box::pin(async move { Err(StoreError::NoFallback(error)) }),
            None => load(),
        }
    }

    fn has_failed(&self) -> bool {
        lock(&self.failed).is_some()
    }
}

impl Observer for NoFallback<'_> {
    fn step(&self, step: &Step<'_>) {
        match step.kind {
            StepKind::Fallback => {
                *lock(&self.failed) = Some(step.reply.to_string());
                return;
            }
            StepKind::Load if self.has_failed() => return,
            _ => {}
        }
        if self.inner.wants_steps() {
            self.inner.step(step);
        }
    }

    fn checkpoint<'b>(&'b self, next: StepKind, key: &'b str) -> Option<Pause<'b>> {
        if next == StepKind::Load && self.has_failed() {
            return None;
        }
        self.inner.checkpoint(next, key)
    }
}

/// Where a read's answer leaves the diagram: from the cache (a hit, a
/// value handed over by a lock holder, a stale value) or from the
/// database (a load, a fallback).
pub fn answer_node(source: cache_aside::Source, waited: bool) -> NodeId {
    match source {
        cache_aside::Source::Fallback => RETURN_LOADED,
        source if source.from_cache() || waited => RETURN_CACHED,
        _ => RETURN_LOADED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_command_is_cut_at_characters_keeping_its_start_and_end() {
        let short = "GET cache:user:1".to_string();
        assert_eq!(clip_command(short.clone()), short);
        // Two-byte characters straddle both cuts.
        let long = format!(
            "SET k \"{}é{}é{}\" EX 300",
            "a".repeat(COMMAND_SHOWN - COMMAND_TAIL - 8),
            "b".repeat(100_000),
            "c".repeat(COMMAND_TAIL - 12)
        );
        let clipped = clip_command(long.clone());
        assert!(clipped.len() < COMMAND_SHOWN + 40, "{}", clipped.len());
        assert!(clipped.starts_with("SET k \"aaa"));
        assert!(
            clipped.contains(&format!("… ({} bytes in all) …", long.len())),
            "{clipped}"
        );
        assert!(clipped.ends_with("ccc\" EX 300"), "the TTL stays: {clipped}");
    }

    #[test]
    fn every_step_of_an_operation_has_a_box() {
        for kind in StepKind::ALL {
            // Bus events are no operation's; encoding and decoding are
            // told within the store and the lookup.
            let boxless = matches!(
                kind,
                StepKind::InvalidationReceived
                    | StepKind::Subscribed
                    | StepKind::Unsubscribed
                    | StepKind::Encode
                    | StepKind::Decode
                    | StepKind::BreakerOpened
                    | StepKind::BreakerClosed
                    | StepKind::InvalidationPending
                    | StepKind::Resent
            );
            assert_eq!(node_of(kind, Flow::Read, false).is_none(), boxless, "{kind:?}");
        }
        let diagram = shared::Diagram::cache_aside_read();
        for kind in StepKind::ALL {
            for flow in [Flow::Read, Flow::Write] {
                if let Some(node) = node_of(kind, flow, false) {
                    assert!(diagram.node(&node).is_some(), "{kind:?} → {node} is drawn");
                }
            }
        }
    }

    /// A command resent on a new connection is two steps at its box: the
    /// dead try, failed, saying it goes again, then the try that answered.
    #[test]
    fn a_resent_command_shows_its_dead_try_at_its_box() {
        let recorder = Recorder::new(Flow::Read, None);
        let mut get = redis::cmd("GET");
        get.arg("user:42");
        let dead = cache_aside::RedisError::Dropped("broken pipe".into());
        let step = |kind, reply, status| Step {
            kind,
            key: "user:42",
            command: Some(&get),
            reply,
            status,
            took: Duration::from_micros(40),
            message: None,
        };
        recorder.step(&step(StepKind::Resent, Reply::Error(&dead), Status::Error));
        recorder.step(&step(
            StepKind::Lookup,
            Reply::Value(&redis::Value::Nil),
            Status::Miss,
        ));
        let (steps, _) = recorder.finish();
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(steps.iter().all(|s| s.node == CHECK_CACHE), "{steps:?}");
        assert_eq!(steps[0].status, StepStatus::Error);
        assert_eq!(
            steps[0].reply,
            "error: the connection was dead: broken pipe · sent again on a new connection"
        );
        assert_eq!(steps[1].status, StepStatus::Miss);
        assert_eq!(steps[0].action, steps[1].action, "the same command");

        // A call cancelled during its resend still shows the dead try.
        let recorder = Recorder::new(Flow::Read, None);
        recorder.step(&step(StepKind::Resent, Reply::Error(&dead), Status::Error));
        let (steps, _) = recorder.finish();
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].status, StepStatus::Error);
    }

    /// A lookup that found an entry and still missed says why; a hit, or
    /// a miss that found nothing, says nothing more.
    #[test]
    fn a_found_entry_that_misses_says_why() {
        let mut get = redis::cmd("GET");
        get.arg("user:42");
        let reply_of = |bytes: &str, status| {
            let recorder = Recorder::new(Flow::Read, None);
            let value = redis::Value::BulkString(bytes.as_bytes().to_vec());
            recorder.step(&Step {
                kind: StepKind::Lookup,
                key: "user:42",
                command: Some(&get),
                reply: Reply::Value(&value),
                status,
                took: Duration::from_micros(40),
                message: None,
            });
            recorder.finish().0.remove(0).reply
        };
        let kept = "ca1 v 1 1000 3\n{\"id\":42}";
        assert!(reply_of(kept, Status::Miss).contains("Redis keeps it for fail-safe"));
        // A "does not exist" kept past its time is said the same way.
        assert!(reply_of("ca1 n 0 1000 0\n", Status::Miss).contains("Redis keeps it for fail-safe"));
        assert!(!reply_of(kept, Status::Hit).contains("fail-safe"));
        let marker = "ca1 i 2 1000 0\n";
        assert!(reply_of(marker, Status::Miss).contains("a write's marker (version guard): a miss"));
        assert!(!reply_of("not an envelope", Status::Miss).contains(" · "));
    }

    #[test]
    fn lock_and_lease_steps_have_boxes_of_their_own() {
        assert_eq!(node_of(StepKind::LockAcquire, Flow::Read, false), Some(LOCK));
        assert_eq!(node_of(StepKind::LockRelease, Flow::Read, true), Some(LOCK));
        assert_eq!(node_of(StepKind::LeaseTaken, Flow::Read, false), Some(LEASE));
        // A second look made under the lock is drawn at the lock.
        assert_eq!(node_of(StepKind::Lookup, Flow::Read, true), Some(LOCK));
        assert_eq!(node_of(StepKind::Lookup, Flow::Read, false), Some(CHECK_CACHE));
        assert_eq!(node_of(StepKind::Store, Flow::Write, false), Some(UPDATE_CACHE));
    }
}
