//! Messages between the browser and the back end.
//!
//! Every message is JSON with a `type` field (or, for the page, the same
//! message in a compact binary form: see [`crate::wire`]). The server
//! greets each WebSocket client with [`ServerMessage::Hello`], which
//! carries [`PROTOCOL_VERSION`]; a client that sees another version tells
//! the user to reload instead of misreading messages.

use crate::diagram::{Diagram, NodeId};
use crate::entity::{Kind, Record, SandboxId};
use crate::load::{LoadSpec, LoadState};
use crate::memory::{FillResult, FillSpec, MemorySettings, MemoryState};
use crate::settings::{RaceFix, SandboxSettings, Stats};
use crate::trace::{Operation, Outcome, Trace, TraceStep};
use serde::{Deserialize, Serialize};

use crate::wire::two_forms;

/// Bumped whenever a message changes shape, a field added too: the page's
/// binary form ([`crate::wire`]) reads fields by position, so a field one
/// side has and the other has not misreads every message after it.
/// Version 8 brought that binary form; 9 the setting `resend_dropped`; 10
/// the record a scenario ran on (`ScenarioResult`'s `kind` and `id`); 11
/// the setting `seal_sensitive` and the counter `database_not_found`.
pub const PROTOCOL_VERSION: u32 = 11;

two_forms! {
    "ClientMessage";
    /// Sent by the browser over the WebSocket.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum ClientMessage {
        /// Read one record through the cache. `request_id` is chosen by the
        /// client and echoed in the [`ServerMessage::ReadReply`].
        Read {
            request_id: u64,
            kind: Kind,
            id: u64,
            /// Step-through: the back end pauses the read before each of these
            /// steps until a [`ClientMessage::Continue`] (or a timeout).
            #[serde(default)]
            pause_before: Vec<NodeId>,
            /// The application instance to serve the read (`A`, `B`, `C`);
            /// round-robin when absent.
            #[serde(default)]
            instance: Option<String>,
        },
        /// Cuts (`connected: false`) or restores an instance's Pub/Sub
        /// subscription, to watch a missed invalidation and the recovery.
        SetInstanceLink { instance: String, connected: bool },
        /// Lets a paused operation go on.
        Continue { operation_id: u64 },
        /// Fires a herd of concurrent reads at one cold key (the stampede lab).
        RunHerd { request_id: u64, herd: HerdSpec },
        /// Starts a steady load in the sandbox (replacing one that runs);
        /// every watcher gets [`ServerMessage::Load`].
        StartLoad { request_id: u64, load: LoadSpec },
        /// Stops the sandbox's load, if one runs.
        StopLoad { request_id: u64 },
        /// Lists the sandbox's keys in Redis; answered with
        /// [`ServerMessage::Keys`].
        InspectKeys { request_id: u64 },
        /// Asks for Redis's own figures (`INFO`); answered with
        /// [`ServerMessage::RedisInfo`].
        RedisInfo { request_id: u64 },
        /// Asks for the sandbox's server's memory limit and policy; answered
        /// with [`ServerMessage::Memory`].
        Memory { request_id: u64 },
        /// Sets the memory limit and eviction policy of the sandbox's own
        /// redis-server (refused on a shared Redis); answered with
        /// [`ServerMessage::Memory`].
        SetMemory { request_id: u64, memory: MemorySettings },
        /// Fills the sandbox's own redis-server past its limit (the eviction
        /// lab), after giving it `memory` if set; answered with
        /// [`ServerMessage::FillReply`].
        Fill {
            request_id: u64,
            fill: FillSpec,
            #[serde(default)]
            memory: Option<MemorySettings>,
        },
        /// Measures one record under every value encoding (section 4.4);
        /// answered with [`ServerMessage::Encodings`].
        CompareEncodings {
            request_id: u64,
            kind: Kind,
            id: u64,
            /// Filler added to the record first, in bytes (up to 128 KiB).
            padding_bytes: u64,
        },
        /// Caches a product's price and stock under two keys with their own
        /// TTLs, changes both in the database, and watches when each key shows
        /// the change; answered with [`ServerMessage::RelatedReply`].
        RelatedKeys { request_id: u64, spec: RelatedSpec },
        /// Breaks (or mends) the sandbox's Redis, or warms its cache; with no
        /// action, only asks for the report. Answered with
        /// [`ServerMessage::Faults`].
        Fault {
            request_id: u64,
            #[serde(default)]
            action: Option<crate::FaultAction>,
        },
        /// Runs a preset scenario in the sandbox.
        RunScenario { request_id: u64, scenario: Scenario },
        /// The same seeded workload through cache-aside, read-through,
        /// write-through and write-behind, measured side by side.
        ComparePatterns { request_id: u64, seed: u64 },
        /// Change or remove one record: the database first, then the cache as
        /// the sandbox's write strategy says.
        Write {
            request_id: u64,
            kind: Kind,
            id: u64,
            change: WriteChange,
            /// The instance that writes (and publishes); round-robin when absent.
            #[serde(default)]
            instance: Option<String>,
        },
        /// Compare what Redis holds with the database for every cached key of
        /// the sandbox; answered with [`ServerMessage::Divergence`].
        CheckDivergence { request_id: u64 },
        /// Replace the sandbox's settings (the key prefix stays the server's).
        /// Every watcher gets [`ServerMessage::Settings`].
        UpdateSettings { settings: SandboxSettings },
        /// Put the sandbox back as it started: its rows re-seeded, its keys
        /// deleted, its counters and traces cleared. Every watcher gets
        /// [`ServerMessage::Reset`].
        Reset,
    }
}

impl ClientMessage {
    /// The message's kind: its `type` in JSON (a recording keeps only this
    /// of what the page sent, see [`crate::recording::SentKind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Read { .. } => "read",
            ClientMessage::SetInstanceLink { .. } => "set_instance_link",
            ClientMessage::Continue { .. } => "continue",
            ClientMessage::RunHerd { .. } => "run_herd",
            ClientMessage::StartLoad { .. } => "start_load",
            ClientMessage::StopLoad { .. } => "stop_load",
            ClientMessage::InspectKeys { .. } => "inspect_keys",
            ClientMessage::RedisInfo { .. } => "redis_info",
            ClientMessage::Memory { .. } => "memory",
            ClientMessage::SetMemory { .. } => "set_memory",
            ClientMessage::Fill { .. } => "fill",
            ClientMessage::CompareEncodings { .. } => "compare_encodings",
            ClientMessage::RelatedKeys { .. } => "related_keys",
            ClientMessage::Fault { .. } => "fault",
            ClientMessage::RunScenario { .. } => "run_scenario",
            ClientMessage::ComparePatterns { .. } => "compare_patterns",
            ClientMessage::Write { .. } => "write",
            ClientMessage::CheckDivergence { .. } => "check_divergence",
            ClientMessage::UpdateSettings { .. } => "update_settings",
            ClientMessage::Reset => "reset",
        }
    }
}

two_forms! {
    "Scenario";
    /// A preset experiment the back end drives step by step.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "name", rename_all = "snake_case")]
    pub enum Scenario {
        /// The stale-set race on one record: a reader misses and loads the row,
        /// pauses; a writer updates the row and invalidates the key; the reader
        /// then stores what it loaded.
        StaleSetRace { kind: Kind, id: u64 },
        /// A write in the sandbox's order while a reader reads: the record is
        /// cached, a writer changes it, and a reader reads it as soon as the
        /// cached copy is gone. With `delete_first` (the wrong order) the
        /// reader caches the old row; in the right order, the new one.
        WriteOrder { kind: Kind, id: u64 },
    }
}

/// What a scenario showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The record it ran on.
    pub kind: Kind,
    pub id: u64,
    /// The protection that was in force.
    pub fix: RaceFix,
    /// Whether Redis ended up holding a value the database no longer has.
    pub stale: bool,
    /// What Redis holds for the record at the end.
    pub cached: String,
    /// What the database holds.
    pub database: String,
    /// What happened, step by step, in words.
    pub story: Vec<String>,
}

/// How a herd of concurrent reads is kept off the database (tutorial
/// section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Defence {
    /// Every miss reads the database.
    None,
    /// One load per key per instance; the instance's other requests wait
    /// for it.
    SingleFlight,
    /// One load per key overall: a Redis lock (`SET NX PX`), released only
    /// by its owner; waiters are notified when the value is stored.
    RedisLock,
    /// Probabilistic early expiration (XFetch): a read may recompute the
    /// value before it expires, the more likely the closer expiry is and the
    /// longer a recompute takes.
    XFetch,
    /// Serve the old value after it goes stale while exactly one request
    /// refreshes it in the background.
    StaleWhileRevalidate,
    /// Randomize each TTL by a percentage, so keys cached together do not
    /// all expire together (see [`HerdTiming::ManyKeys`]).
    TtlJitter,
}

impl Defence {
    pub const ALL: [Defence; 6] = [
        Defence::None,
        Defence::SingleFlight,
        Defence::RedisLock,
        Defence::XFetch,
        Defence::StaleWhileRevalidate,
        Defence::TtlJitter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Defence::None => "none",
            Defence::SingleFlight => "single-flight",
            Defence::RedisLock => "redis-lock",
            Defence::XFetch => "xfetch",
            Defence::StaleWhileRevalidate => "stale-while-revalidate",
            Defence::TtlJitter => "ttl-jitter",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Defence::None => "no defence",
            Defence::SingleFlight => "single flight (per instance)",
            Defence::RedisLock => "Redis lock",
            Defence::XFetch => "early expiration (XFetch)",
            Defence::StaleWhileRevalidate => "stale-while-revalidate",
            Defence::TtlJitter => "TTL jitter",
        }
    }
}

impl std::str::FromStr for Defence {
    type Err = crate::entity::InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Defence::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| {
            crate::entity::InputError::BadSetting(format!(
                "unknown defence {s:?}: use one of {}",
                Defence::ALL.map(Defence::name).join(", ")
            ))
        })
    }
}

/// When a herd's requests arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HerdTiming {
    /// All at once, at a key that is not cached.
    #[default]
    Cold,
    /// Spread evenly over the moments just before and just after a cached
    /// value's TTL runs out: a popular key expiring under load.
    AtExpiry,
    /// Fifty keys cached at the same moment, read evenly for a few seconds:
    /// without jitter they all expire together.
    ManyKeys,
}

/// A herd to fire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HerdSpec {
    pub kind: Kind,
    pub id: u64,
    /// How many concurrent reads, from 1 to [`HerdSpec::MAX_REQUESTS`],
    /// spread round-robin over the instances.
    pub requests: u64,
    pub defence: Defence,
    #[serde(default)]
    pub timing: HerdTiming,
    /// XFetch's beta: above 1 recomputes earlier, below 1 later.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// TTL jitter, in percent either way (with [`Defence::TtlJitter`]).
    #[serde(default = "default_jitter")]
    pub jitter_percent: u64,
}

fn default_jitter() -> u64 {
    25
}

fn default_beta() -> f64 {
    1.0
}

impl HerdSpec {
    pub const MAX_REQUESTS: u64 = 5_000;
}

/// What a herd did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HerdResult {
    pub spec: HerdSpec,
    pub instances: u64,
    /// Reads that went to the database.
    pub database_loads: u64,
    /// Requests answered from Redis (including after waiting).
    pub from_cache: u64,
    /// Requests that waited for someone else's load.
    pub waited: u64,
    /// Requests that gave up waiting and read the database themselves.
    pub fallbacks: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Latency histogram: (upper bound in microseconds, requests).
    pub histogram: Vec<(u64, u64)>,
    /// Wall time of the whole herd, in milliseconds.
    pub duration_ms: u64,
    /// Requests answered with a value that had gone stale (by design, with
    /// stale-while-revalidate).
    #[serde(default)]
    pub served_stale: u64,
    /// Requests that recomputed a value before it expired (XFetch).
    #[serde(default)]
    pub early_recomputes: u64,
    /// The most database loads in any 100 ms: the spike synchronized
    /// expiry causes.
    #[serde(default)]
    pub peak_loads_per_100ms: u64,
    /// How many requests went along each edge of the diagram, so the herd
    /// is drawn as counts rather than thousands of tokens.
    #[serde(default)]
    pub edges: Vec<EdgeCount>,
    /// Requests that failed because the database stayed saturated: none of
    /// its connections came free in time.
    #[serde(default)]
    pub failed: u64,
}

/// Reads that were counted rather than traced during one interval: what
/// they found, where they went on the diagram, and how long they took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// The interval's length, in milliseconds.
    pub interval_ms: u64,
    /// When it closed, in milliseconds since the Unix epoch (the clock of
    /// [`Trace::started_at_ms`]).
    pub at_ms: u64,
    /// Reads in the interval, by outcome (only outcomes that happened).
    pub outcomes: Vec<(Outcome, u64)>,
    /// How many of them went along each edge of the diagram.
    pub edges: Vec<EdgeCount>,
    /// Latency histogram: (upper bound in microseconds, reads), powers of
    /// two, only buckets with reads.
    pub histogram: Vec<(u64, u64)>,
    /// The same for the reads a cache answered (the rest went to the
    /// database): latency with and without the cache, apart.
    #[serde(default)]
    pub cached_histogram: Vec<(u64, u64)>,
}

impl Traffic {
    /// All reads in the interval.
    pub fn reads(&self) -> u64 {
        self.outcomes.iter().map(|(_, n)| n).sum()
    }

    /// The latency under which `share` (0 to 1) of the reads finished, to
    /// the histogram's precision; `None` without reads.
    pub fn quantile_us(&self, share: f64) -> Option<u64> {
        let total: u64 = self.histogram.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64 * share).ceil() as u64).max(1);
        let mut seen = 0;
        self.histogram.iter().find_map(|&(bound, n)| {
            seen += n;
            (seen >= wanted).then_some(bound)
        })
    }
}

/// What a sandbox has in Redis now (`GET /api/v1/keys`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyReport {
    /// The keys, without the sandbox's prefix, sorted.
    pub keys: Vec<KeyInfo>,
    /// How many of them have no TTL.
    pub without_ttl: u64,
    /// Whether there were more than the report lists.
    pub truncated: bool,
    /// Redis's `maxmemory-policy` (`None`: Redis would not say).
    pub policy: Option<String>,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Redis's own figures from `INFO` (the whole server's: on a shared Redis,
/// every sandbox's together). Counters run from the server's start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisFigures {
    /// When they were read, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub used_memory: u64,
    /// 0: no limit.
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub evicted_keys: u64,
    pub expired_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub instantaneous_ops_per_sec: u64,
}

/// One key and its figures, as Redis gives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub key: String,
    /// `string`, `hash`, ...
    pub redis_type: String,
    /// Time to live in milliseconds (`None`: no TTL at all).
    pub ttl_ms: Option<u64>,
    /// `MEMORY USAGE`, in bytes.
    pub bytes: Option<u64>,
    /// Seconds since it was last used (LRU and other non-LFU policies).
    pub idle_secs: Option<u64>,
    /// Its LFU counter (LFU policies).
    pub frequency: Option<u64>,
}

/// Requests that went from one diagram node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeCount {
    pub from: NodeId,
    pub to: NodeId,
    pub count: u64,
}

/// One application instance of a sandbox, as the UI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// `A`, `B`, `C`...
    pub name: String,
    /// Whether its Pub/Sub subscription is up.
    pub subscribed: bool,
    /// Entries in its near cache.
    pub near_entries: u64,
    /// Invalidations it received over Pub/Sub.
    pub received: u64,
}

two_forms! {
    "WriteChange";
    /// What a write does to a record.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum WriteChange {
        /// Set the record's name.
        Update { name: String },
        /// Remove the record.
        Delete,
    }
}

two_forms! {
    "ServerMessage";
    /// Sent by the back end over the WebSocket.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum ServerMessage {
        /// The first message on every connection. It stays the first
        /// variant, with the version its first field: a page reads those
        /// two before anything else ([`crate::wire::greeting_version`]).
        Hello {
            protocol_version: u32,
            sandbox: SandboxId,
            /// (Boxed: the greeting is sent once; other messages stay small.)
            settings: Box<SandboxSettings>,
            stats: Stats,
            /// The diagram to draw; traces refer to its node ids.
            diagram: Diagram,
            /// The sandbox's latest traces, newest first, so a reloaded page
            /// still shows its log.
            recent: Vec<Trace>,
            /// The sandbox's application instances.
            #[serde(default)]
            instances: Vec<InstanceState>,
            /// Which Redis the sandbox uses: the shared one, or its own server.
            #[serde(default)]
            redis: String,
            /// The sandbox's load, if one runs.
            #[serde(default)]
            load: Option<LoadState>,
            /// This back end just took the sandbox over from a replica that
            /// stopped: its records are kept, its settings are the defaults
            /// again (the page puts its own back). Back ends before the
            /// binary form left it out when false.
            #[serde(default)]
            moved: bool,
        },
        /// An operation in this sandbox finished, whoever started it.
        Trace { trace: Trace, stats: Stats },
        /// The answer to this client's own [`ClientMessage::Read`].
        ReadReply { request_id: u64, result: ReadResult },
        /// The answer to this client's own [`ClientMessage::Write`].
        WriteReply { request_id: u64, result: WriteResult },
        /// The answer to [`ClientMessage::CheckDivergence`].
        Divergence {
            request_id: u64,
            report: DivergenceReport,
        },
        /// An operation stopped at a breakpoint; it goes on after a
        /// [`ClientMessage::Continue`] or after `timeout_secs`.
        Paused {
            operation_id: u64,
            operation: Operation,
            /// The step it will run next.
            at: NodeId,
            /// The steps done so far.
            steps: Vec<TraceStep>,
            timeout_secs: u64,
        },
        /// A paused operation went on.
        Resumed { operation_id: u64, timed_out: bool },
        /// The answer to [`ClientMessage::RunScenario`].
        ScenarioReply { request_id: u64, result: ScenarioResult },
        /// The answer to [`ClientMessage::ComparePatterns`].
        Comparison {
            request_id: u64,
            result: PatternComparison,
        },
        /// The sandbox's application instances and their state; sent in the
        /// greeting's wake and whenever a link changes.
        Instances { instances: Vec<InstanceState> },
        /// The answer to [`ClientMessage::RunHerd`].
        HerdReply { request_id: u64, result: HerdResult },
        /// The sandbox's settings changed.
        Settings { settings: SandboxSettings },
        /// The sandbox's load started, moved on (once a second) or ended.
        Load { state: LoadState },
        /// The answer to [`ClientMessage::InspectKeys`].
        Keys { request_id: u64, report: KeyReport },
        /// The answer to [`ClientMessage::RedisInfo`].
        RedisInfo { request_id: u64, figures: RedisFigures },
        /// The answer to [`ClientMessage::Memory`] and
        /// [`ClientMessage::SetMemory`].
        Memory { request_id: u64, state: MemoryState },
        /// The answer to [`ClientMessage::Fill`].
        FillReply { request_id: u64, result: FillResult },
        /// The answer to [`ClientMessage::RelatedKeys`].
        RelatedReply { request_id: u64, result: RelatedResult },
        /// The answer to [`ClientMessage::CompareEncodings`].
        Encodings {
            request_id: u64,
            result: EncodingComparison,
        },
        /// Reads beyond what the sandbox draws per second, folded into counts:
        /// sent a few times a second at most, serialized once for every
        /// watcher, with the counters as they stand.
        Summary { stats: Stats, traffic: Traffic },
        /// This client fell behind and `count` traces were dropped for it; the
        /// back end never waits for a slow browser.
        Missed { count: u64 },
        /// The sandbox was put back as it started (by any of its watchers, or
        /// `POST /api/v1/reset`): forget its traces and results.
        Reset { stats: Stats },
        /// The sandbox's faults and the application's defences: the answer to
        /// [`ClientMessage::Fault`] (with its `request_id`), and sent to every
        /// watcher when they change (a fault, a breaker opening or closing).
        Faults {
            request_id: Option<u64>,
            report: crate::FaultReport,
        },
        /// A message could not be handled.
        Error {
            request_id: Option<u64>,
            message: String,
        },
    }
}

/// The result of a read: the body of `GET /api/v1/{kind}/{id}` and of a
/// [`ServerMessage::ReadReply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadResult {
    pub kind: Kind,
    pub id: u64,
    pub outcome: Outcome,
    pub found: bool,
    #[serde(default, with = "crate::entity::in_message")]
    pub record: Option<Record>,
    /// Wall time of the read in microseconds.
    pub latency_us: u64,
    /// The trace of this read, as pushed over the WebSocket; `None` when
    /// the read was counted but not drawn (more reads per second than the
    /// sandbox draws).
    pub trace_id: Option<u64>,
    pub sandbox: SandboxId,
}

/// The result of a write: the body of `PUT` / `DELETE /api/v1/{kind}/{id}`
/// and of a [`ServerMessage::WriteReply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteResult {
    pub kind: Kind,
    pub id: u64,
    /// Whether the record existed.
    pub found: bool,
    /// The record as it is now (`None` after a delete, or if not found).
    #[serde(default, with = "crate::entity::in_message")]
    pub record: Option<Record>,
    /// What the write did to the cache.
    pub cache: CacheEffect,
    pub latency_us: u64,
    /// The trace of this write; `None` when it was counted but not drawn
    /// (more operations per second than the sandbox draws), as for reads.
    pub trace_id: Option<u64>,
    pub sandbox: SandboxId,
}

two_forms! {
    "CacheEffect";
    /// What a write did to the cached copy of its record, as a value (the
    /// engine's effect, named for the UI); [`CacheEffect::describe`] says it in
    /// words.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "effect", rename_all = "snake_case")]
    pub enum CacheEffect {
        /// The record does not exist: nothing was written, nothing to do.
        NoRecord,
        /// `DEL`: the copy is gone (`existed`: there was one); with leases the
        /// key's lease was revoked too.
        Deleted {
            key: String,
            existed: bool,
            lease_revoked: bool,
        },
        /// Version checks: a marker at `version` replaced the copy; after a
        /// delete (`deleted`) it answers "does not exist".
        Marked {
            key: String,
            version: u64,
            deleted: bool,
        },
        /// Version checks: Redis already held a newer version.
        NewerKept { key: String },
        /// TTL only: the copy was left alone; it lives `remaining_ms` more
        /// (`None`: it was not cached at all).
        Left { key: String, remaining_ms: Option<u64> },
        /// Write-through: the new value is cached.
        WroteThrough { key: String },
        /// Write-through: a newer version was already cached.
        WriteThroughRefused { key: String },
        /// Redis failed: the old copy may live until its TTL.
        Failed { key: String, error: String },
        /// Redis failed; the invalidation is kept and sent again until Redis
        /// takes it.
        Pending { key: String, error: String },
    }
}

impl CacheEffect {
    /// The effect in one sentence.
    pub fn describe(&self) -> String {
        match self {
            CacheEffect::NoRecord => "nothing: there is no such record".into(),
            CacheEffect::Deleted {
                key,
                existed: true,
                lease_revoked,
            } => {
                let lease = if *lease_revoked {
                    " and revoked its lease"
                } else {
                    ""
                };
                format!("deleted {key}{lease}: the next read loads the row from the database")
            }
            CacheEffect::Deleted {
                key, lease_revoked, ..
            } => {
                let lease = if *lease_revoked { ", revoked its lease" } else { "" };
                format!("sent DEL {key} (it was not cached){lease}")
            }
            CacheEffect::Marked {
                key, deleted: true, ..
            } => format!(
                "marked {key} deleted: readers get \"does not exist\" and no older version can return"
            ),
            CacheEffect::Marked { key, version, .. } => {
                format!("marked {key} invalidated at version {version}: the next read loads the new row")
            }
            CacheEffect::NewerKept { key } => format!("{key} already holds a newer version"),
            CacheEffect::Left {
                key,
                remaining_ms: Some(ms),
            } => format!(
                "left {key} alone: readers may see the old value for up to {} s",
                ms.div_ceil(1000)
            ),
            CacheEffect::Left { key, .. } => {
                format!("{key} is not cached: the next read loads the row from the database")
            }
            CacheEffect::WroteThrough { key } => format!("stored the new value in {key}"),
            CacheEffect::WriteThroughRefused { key } => {
                format!("could not store {key}: a newer version is cached")
            }
            CacheEffect::Failed { key, error } => {
                format!("could not update {key} ({error}); a stale copy may live until its TTL")
            }
            CacheEffect::Pending { key, error } => {
                format!("could not invalidate {key} ({error}); kept, and sent again until Redis takes it")
            }
        }
    }

    /// Whether the write left the old value servable from Redis.
    pub fn leaves_old_copy(&self) -> bool {
        matches!(
            self,
            CacheEffect::Left {
                remaining_ms: Some(_),
                ..
            } | CacheEffect::Failed { .. }
        )
    }
}

/// What Redis holds against what the database holds, key by key: the body
/// of `GET /api/v1/divergence` and of a [`ServerMessage::Divergence`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DivergenceReport {
    pub sandbox: SandboxId,
    /// When the check ran, in milliseconds since the Unix epoch.
    pub checked_at_ms: u64,
    /// One entry per cached key, stale ones first.
    pub entries: Vec<DivergenceEntry>,
    /// Whether there were more keys than the report shows.
    pub truncated: bool,
}

impl DivergenceReport {
    /// How many cached keys disagree with the database.
    pub fn stale(&self) -> usize {
        self.entries.iter().filter(|e| e.stale).count()
    }
}

/// One cached key compared with its row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergenceEntry {
    pub key: String,
    pub kind: Kind,
    pub id: u64,
    /// What Redis holds, in short (`Ada Lovelace (version 1)`, `missing`).
    pub cached: String,
    /// What the database holds, in short.
    pub database: String,
    /// Whether the two disagree.
    pub stale: bool,
    /// When the row last changed, if it changed while the back end ran: a
    /// stale key has been stale since then.
    pub changed_at_ms: Option<u64>,
    /// Seconds the cached copy has left (`-1`: no TTL).
    pub ttl_secs: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_use_a_readable_tagged_form() {
        let msg: ClientMessage =
            serde_json::from_str(r#"{"type":"read","request_id":1,"kind":"users","id":42}"#).unwrap();
        assert_eq!(
            msg,
            ClientMessage::Read {
                request_id: 1,
                kind: Kind::Users,
                id: 42,
                pause_before: vec![],
                instance: None,
            }
        );
    }

    #[test]
    fn unknown_client_messages_are_rejected() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"flush_all"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(
            r#"{"type":"read","request_id":1,"kind":"orders","id":1}"#
        )
        .is_err());
    }

    #[test]
    fn traffic_quantiles_come_from_its_histogram() {
        let traffic = Traffic {
            interval_ms: 250,
            at_ms: 0,
            outcomes: vec![(Outcome::Hit, 90), (Outcome::Miss, 10)],
            edges: vec![],
            histogram: vec![(64, 50), (128, 40), (131_072, 10)],
            cached_histogram: vec![(64, 50), (128, 40)],
        };
        assert_eq!(traffic.reads(), 100);
        assert_eq!(traffic.quantile_us(0.5), Some(64));
        assert_eq!(traffic.quantile_us(0.9), Some(128));
        assert_eq!(traffic.quantile_us(0.99), Some(131_072));
        assert_eq!(Traffic::default().quantile_us(0.5), None);
    }

    #[test]
    fn server_messages_round_trip() {
        let msg = ServerMessage::Missed { count: 3 };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"missed","count":3}"#);
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), msg);
    }
}

/// The largest seed a comparison takes: JavaScript numbers carry whole
/// numbers exactly only up to 2^53.
pub const MAX_SEED: u64 = 1 << 53;

/// A caching pattern, for the comparison lab (tutorial section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// The application reads the cache, loads on a miss, and deletes the
    /// key after writing the database.
    CacheAside,
    /// The same reads, with the loading done by the cache layer; writes
    /// as cache-aside.
    ReadThrough,
    /// Every write goes to the database and then to the cache, at once.
    WriteThrough,
    /// Writes go to the cache and a queue; the database is written later,
    /// in the background.
    WriteBehind,
}

impl Pattern {
    pub const ALL: [Pattern; 4] = [
        Pattern::CacheAside,
        Pattern::ReadThrough,
        Pattern::WriteThrough,
        Pattern::WriteBehind,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Pattern::CacheAside => "cache-aside",
            Pattern::ReadThrough => "read-through",
            Pattern::WriteThrough => "write-through",
            Pattern::WriteBehind => "write-behind",
        }
    }
}

/// How one pattern did on the workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatternRow {
    pub pattern: Pattern,
    pub reads: u64,
    pub writes: u64,
    pub read_avg_us: u64,
    pub read_p99_us: u64,
    pub write_avg_us: u64,
    pub write_p99_us: u64,
    /// Database queries the reads caused.
    pub database_reads: u64,
    /// Rows the database had written by the end (every write, once the
    /// write-behind queue drained).
    pub database_writes: u64,
    /// Reads that answered an older version than the database held.
    pub stale_reads: u64,
    /// Reads after which the database held an older version than the one
    /// answered: it was behind the cache (write-behind).
    pub database_behind: u64,
    /// The most writes that were at any moment only in Redis, lost if it
    /// had crashed then.
    pub most_unsaved: u64,
    /// Acknowledged writes that never reached the database because the
    /// writer crashed halfway through the workload (write-behind's queue
    /// dies with it; the others acknowledge only what the database has).
    #[serde(default)]
    pub lost_writes: u64,
}

/// Two related keys of one product (tutorial section 4.6): its price and
/// its stock, cached apart, each with its own TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedSpec {
    /// The product.
    pub id: u64,
    pub price_ttl_ms: u64,
    pub stock_ttl_ms: u64,
}

impl RelatedSpec {
    pub const TTL_MS: (u64, u64) = (500, 10_000);
    /// The tutorial's alert: related keys whose TTLs differ by more than
    /// half of the longer one.
    pub const SPREAD_ALERT: f64 = 0.5;

    /// Checks the id and both TTLs.
    ///
    /// # Errors
    /// [`crate::InputError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), crate::InputError> {
        crate::check_id(self.id)?;
        crate::settings::check_range("price_ttl_ms", self.price_ttl_ms, Self::TTL_MS)?;
        crate::settings::check_range("stock_ttl_ms", self.stock_ttl_ms, Self::TTL_MS)
    }

    /// How far apart the TTLs are, as a share of the longer one.
    pub fn spread(&self) -> f64 {
        let (short, long) = (
            self.price_ttl_ms.min(self.stock_ttl_ms),
            self.price_ttl_ms.max(self.stock_ttl_ms),
        );
        (long - short) as f64 / long.max(1) as f64
    }
}

/// One look at both keys after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedSample {
    /// Milliseconds since the row changed.
    pub at_ms: u64,
    /// Whether the price read shows the change.
    pub price_new: bool,
    /// Whether the stock read shows the change.
    pub stock_new: bool,
}

impl RelatedSample {
    /// One key shows the change and the other does not: a new price with
    /// an old stock, or the reverse.
    pub fn mismatched(&self) -> bool {
        self.price_new != self.stock_new
    }
}

/// What the two keys showed, over time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelatedResult {
    pub spec: RelatedSpec,
    /// Price (cents) and stock before the change, and after it.
    pub before: (u64, u64),
    pub after: (u64, u64),
    /// Looks at both keys, every 250 ms, until both showed the change.
    pub samples: Vec<RelatedSample>,
    /// How long readers saw one key changed and the other not, in
    /// milliseconds (to the sampling's precision).
    pub mismatched_ms: u64,
    /// [`RelatedSpec::spread`], and whether it passes the alert.
    pub spread: f64,
    pub flagged: bool,
}

/// One record under every value encoding, measured on this machine and
/// this Redis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodingComparison {
    pub kind: Kind,
    pub id: u64,
    pub padding_bytes: u64,
    /// The JSON size above which the gzip encoding compresses.
    pub compress_above_bytes: u64,
    pub rows: Vec<EncodingRow>,
}

/// What one encoding costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodingRow {
    pub encoding: crate::ValueEncoding,
    /// The entry's size in Redis, header included.
    pub bytes: u64,
    /// Median time to encode the entry, in nanoseconds.
    pub encode_ns: u64,
    /// Median time to decode it, in nanoseconds.
    pub decode_ns: u64,
    /// Median round trip of a real `GET` of it, in microseconds: what its
    /// size costs on the wire.
    pub get_us: u64,
}

impl EncodingComparison {
    /// The encoding whose hit cost least: what the page's summary names and
    /// the serialization lesson asks for.
    pub fn cheapest_hit(&self) -> Option<&EncodingRow> {
        self.rows.iter().min_by(|a, b| a.hit_us().total_cmp(&b.hit_us()))
    }
}

impl EncodingRow {
    /// What a hit costs: the `GET` and the decoding.
    pub fn hit_us(&self) -> f64 {
        self.get_us as f64 + self.decode_ns as f64 / 1_000.0
    }
}

/// The comparison: one seeded workload, every pattern.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatternComparison {
    pub seed: u64,
    pub operations: u64,
    pub write_percent: u64,
    pub keys: u64,
    pub db_latency_ms: u64,
    pub rows: Vec<PatternRow>,
}

impl PatternComparison {
    /// The row of `pattern`.
    pub fn row(&self, pattern: Pattern) -> Option<&PatternRow> {
        self.rows.iter().find(|r| r.pattern == pattern)
    }
}
