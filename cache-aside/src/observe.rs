//! The observer: how the engine tells the world what it does.
//!
//! Every step of a call, each Redis command with its reply, the load, the
//! decisions (serve stale, refresh early, fall back), is reported to an
//! [`Observer`] as it happens, with what was sent and how long it took.
//! Logging, metrics, tracing spans or the playground's animated diagram are
//! all observers; the engine knows none of them.
//!
//! The default observer, [`NoObserver`], does nothing: a [`Step`] borrows
//! everything it shows (the command is only printed if an observer asks for
//! its text), so observing costs nothing when nobody watches.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::connection::{command_text, reply_text, RedisError};

/// What a step did, in the vocabulary of the pattern rather than of Redis
/// commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Looked in this process's near cache.
    NearLookup,
    /// Looked in Redis (`GET`).
    Lookup,
    /// Read the value out of the entry found (its encoding and size in the
    /// reply; the time is the decoding's).
    Decode,
    /// Wrote the value into an entry before a store (the same figures).
    Encode,
    /// Found an entry that cannot be read (another format, or sealed with a
    /// key this process no longer has): it counts as a miss.
    Unreadable,
    /// Ran the application's loader: the database, the source of truth.
    Load,
    /// Stored an entry in Redis, with its TTL.
    Store,
    /// A race guard refused a store: the value loaded had become stale.
    StoreRefused,
    /// Took a lease before loading (lease guard).
    LeaseTaken,
    /// Tried to take the stampede lock (`SET NX PX`).
    LockAcquire,
    /// Waited for the lock holder to hand over the value.
    LockWait,
    /// Handed the value to the waiters and released the lock.
    LockRelease,
    /// Published an invalidation, or a value handed to lock waiters.
    Publish,
    /// This instance received an invalidation and dropped its near copy.
    InvalidationReceived,
    /// XFetch decided to reload a value before it expires.
    EarlyRefresh,
    /// Answered with a value past its fresh time (stale-while-revalidate),
    /// while one request refreshes it.
    ServedStale,
    /// Redis failed, so the answer comes from the loader alone and nothing
    /// is stored.
    Fallback,
    /// A writer invalidated the cached copy (`DEL`, or a version marker).
    Invalidate,
    /// A writer asked how long the cached copy has left (`TTL`).
    Expiry,
    /// The invalidation subscription came up; the near cache was cleared,
    /// since messages sent while it was down are lost.
    Subscribed,
    /// The invalidation subscription went down.
    Unsubscribed,
    /// The circuit breaker is open: the command was not sent.
    BreakerRefused,
    /// The circuit breaker opened (outages in a row, or a failed probe).
    BreakerOpened,
    /// The circuit breaker closed: its probe found Redis answering.
    BreakerClosed,
    /// The loader failed and an expired value was served instead
    /// (fail-safe). The step's `took` is how long ago the value expired.
    FailSafe,
    /// A write's invalidation could not reach Redis, or Redis refused it:
    /// kept, to be sent again until Redis takes it.
    InvalidationPending,
    /// A pending invalidation was delivered before the key was read.
    InvalidationRetried,
    /// The command before found its connection dead and goes once more on
    /// a new one (see [`crate::Options::resend_dropped`]).
    Resent,
}

impl StepKind {
    /// Its name in spans and logs (`lookup`, `lock_acquire`).
    pub fn name(self) -> &'static str {
        match self {
            StepKind::NearLookup => "near_lookup",
            StepKind::Lookup => "lookup",
            StepKind::Decode => "decode",
            StepKind::Encode => "encode",
            StepKind::Unreadable => "unreadable",
            StepKind::Load => "load",
            StepKind::Store => "store",
            StepKind::StoreRefused => "store_refused",
            StepKind::LeaseTaken => "lease_taken",
            StepKind::LockAcquire => "lock_acquire",
            StepKind::LockWait => "lock_wait",
            StepKind::LockRelease => "lock_release",
            StepKind::Publish => "publish",
            StepKind::InvalidationReceived => "invalidation_received",
            StepKind::EarlyRefresh => "early_refresh",
            StepKind::ServedStale => "served_stale",
            StepKind::Fallback => "fallback",
            StepKind::Invalidate => "invalidate",
            StepKind::Expiry => "expiry",
            StepKind::Subscribed => "subscribed",
            StepKind::Unsubscribed => "unsubscribed",
            StepKind::BreakerRefused => "breaker_refused",
            StepKind::BreakerOpened => "breaker_opened",
            StepKind::BreakerClosed => "breaker_closed",
            StepKind::FailSafe => "fail_safe",
            StepKind::InvalidationPending => "invalidation_pending",
            StepKind::InvalidationRetried => "invalidation_retried",
            StepKind::Resent => "resent",
        }
    }

    /// Every kind, for tables and tests.
    pub const ALL: [StepKind; 28] = [
        StepKind::NearLookup,
        StepKind::Lookup,
        StepKind::Decode,
        StepKind::Encode,
        StepKind::Unreadable,
        StepKind::Load,
        StepKind::Store,
        StepKind::StoreRefused,
        StepKind::LeaseTaken,
        StepKind::LockAcquire,
        StepKind::LockWait,
        StepKind::LockRelease,
        StepKind::Publish,
        StepKind::InvalidationReceived,
        StepKind::EarlyRefresh,
        StepKind::ServedStale,
        StepKind::Fallback,
        StepKind::Invalidate,
        StepKind::Expiry,
        StepKind::Subscribed,
        StepKind::Unsubscribed,
        StepKind::BreakerRefused,
        StepKind::BreakerOpened,
        StepKind::BreakerClosed,
        StepKind::FailSafe,
        StepKind::InvalidationPending,
        StepKind::InvalidationRetried,
        StepKind::Resent,
    ];
}

/// How a step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Done.
    Ok,
    /// Found something (a lookup that hit, a loader that found the record,
    /// a lock taken).
    Hit,
    /// Found nothing (a lookup that missed, a record that does not exist,
    /// a lock held by someone else, a wait that ran out).
    Miss,
    /// Failed: the reply is the error.
    Error,
}

impl Status {
    /// Its name in spans and logs.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Error => "error",
        }
    }
}

/// A reply, borrowed, printed the way `redis-cli` prints it.
#[derive(Clone, Copy, Debug)]
pub enum Reply<'a> {
    /// The step sent nothing to Redis.
    None,
    /// Redis's reply.
    Value(&'a redis::Value),
    /// The command failed.
    Error(&'a RedisError),
    /// A value encoded or decoded: how, and its size as stored.
    Encoded { body: crate::Body, bytes: usize },
}

impl std::fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::None => Ok(()),
            Reply::Value(value) => f.write_str(&reply_text(value)),
            Reply::Error(error) => write!(f, "error: {error}"),
            Reply::Encoded { body, bytes } => write!(f, "{bytes} bytes of {}", body.name()),
        }
    }
}

/// One step, as it happened. Everything is borrowed: nothing is formatted
/// unless the observer asks.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    pub kind: StepKind,
    /// The application's logical key (`user:42`).
    pub key: &'a str,
    /// The Redis command exactly as sent, if the step sent one.
    pub command: Option<&'a redis::Cmd>,
    pub reply: Reply<'a>,
    pub status: Status,
    /// Measured wall time of the step (the command's round trip, the
    /// loader's run, a wait).
    pub took: Duration,
    /// The id of the Pub/Sub message a step sent or received, so an
    /// observer can match a publish with its deliveries.
    pub message: Option<u64>,
}

impl Step<'_> {
    /// The command as `redis-cli` would accept it; empty if none was sent.
    pub fn command_text(&self) -> String {
        self.command.map(command_text).unwrap_or_default()
    }
}

/// A pause before a step, for breakpoints.
pub type Pause<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Sees what the engine does. Every method has a do-nothing default.
pub trait Observer: Send + Sync {
    /// Whether this observer wants [`Observer::step`] calls. An observer
    /// that answers `false` is never called for steps, and the engine skips
    /// measuring them: watching nothing costs nothing.
    fn wants_steps(&self) -> bool {
        true
    }

    /// Called after every step.
    fn step(&self, step: &Step<'_>) {
        let _ = step;
    }

    /// Called before a step that does I/O runs. Returning a future holds
    /// the call there until it completes: a debugger's breakpoint. Return
    /// `None` (the default) to go on at once; nothing is allocated then.
    fn checkpoint<'a>(&'a self, next: StepKind, key: &'a str) -> Option<Pause<'a>> {
        let _ = (next, key);
        None
    }
}

/// The observer that does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn wants_steps(&self) -> bool {
        false
    }
}
