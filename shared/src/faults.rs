//! The fault lab's wire types: faults a learner injects into one sandbox's
//! Redis, and what the application did about them.
//!
//! Redis is broken through a TCP proxy the back end puts between the
//! sandbox's application instances and Redis, so one sandbox's Redis can be
//! stopped, slowed or hung without touching anyone else's (the playground's
//! own inspections, the cache-vs-database check, still look at Redis
//! directly). A failing or slow database is a setting
//! ([`crate::SandboxSettings::db_error_percent`], `db_latency_ms`).

use serde::{Deserialize, Serialize};

use crate::wire::two_forms;

two_forms! {
    "FaultAction";
    /// Something done to the sandbox's Redis.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "fault", rename_all = "snake_case")]
    pub enum FaultAction {
        /// Redis goes away: connections are cut, new ones refused.
        StopRedis,
        /// Redis comes back; `empty`: as after a restart without persistence,
        /// the sandbox's keys are gone (a cold cache).
        StartRedis { empty: bool },
        /// Every command waits this long more (0: back to normal). At most
        /// [`FaultAction::MAX_DELAY_MS`].
        SlowRedis { delay_ms: u64 },
        /// Redis accepts and never answers (like `SIGSTOP`), or answers again.
        HangRedis { hung: bool },
        /// Live connections are cut once; reconnecting works.
        CutConnections,
        /// Reads every user and product once, so the cache is warm.
        WarmCache,
    }
}

impl FaultAction {
    /// The longest added delay.
    pub const MAX_DELAY_MS: u64 = 5_000;

    /// The action in a few words, for the timeline.
    pub fn describe(self) -> String {
        match self {
            FaultAction::StopRedis => "Redis stopped".into(),
            FaultAction::StartRedis { empty: false } => "Redis back, with its data".into(),
            FaultAction::StartRedis { empty: true } => "Redis back, empty (restarted)".into(),
            FaultAction::SlowRedis { delay_ms: 0 } => "Redis at full speed".into(),
            FaultAction::SlowRedis { delay_ms } => format!("Redis slowed by {delay_ms} ms a command"),
            FaultAction::HangRedis { hung: true } => "Redis hung (accepts, never answers)".into(),
            FaultAction::HangRedis { hung: false } => "Redis answers again".into(),
            FaultAction::CutConnections => "connections to Redis cut".into(),
            FaultAction::WarmCache => "cache warmed".into(),
        }
    }
}

/// What is being done to the sandbox's Redis now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisFault {
    pub down: bool,
    pub delay_ms: u64,
    pub hung: bool,
}

impl RedisFault {
    /// Whether anything is being done.
    pub fn any(&self) -> bool {
        self.down || self.hung || self.delay_ms > 0
    }
}

/// One instance's circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerView {
    /// The instance (`A`).
    pub instance: String,
    /// `closed`, `open` or `half-open`.
    pub state: String,
    /// How many times it opened.
    pub opened: u64,
    /// Invalidations this instance still owes Redis.
    pub pending: u64,
}

/// One line of the fault timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub text: String,
}

/// The sandbox's faults and what the application did: the body of
/// `GET /api/v1/faults` and of [`crate::ServerMessage::Faults`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultReport {
    pub redis: RedisFault,
    /// Each instance's breaker and pending invalidations.
    pub breakers: Vec<BreakerView>,
    /// Invalidations delivered late by retries, over all instances.
    pub retried: u64,
    /// The latest events, oldest first (at most [`FaultReport::MAX_EVENTS`]).
    pub events: Vec<FaultEvent>,
    /// Why faults cannot be injected here, if they cannot.
    #[serde(default)]
    pub refusal: Option<String>,
}

impl FaultReport {
    /// The most events kept.
    pub const MAX_EVENTS: usize = 40;

    /// Invalidations still owed, over all instances.
    pub fn pending(&self) -> u64 {
        self.breakers.iter().map(|b| b.pending).sum()
    }
}
