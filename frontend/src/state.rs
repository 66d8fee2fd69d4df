//! The page's state, as signals, and how each server message changes it.

use std::collections::VecDeque;

use leptos::prelude::*;
use shared::{
    Diagram, DivergenceReport, EdgeCount, HerdResult, InstanceState, KeyReport, LoadState, NodeId, Operation,
    ReadResult, SandboxId, SandboxSettings, ScenarioResult, ServerMessage, Stats, Trace, TraceStep,
    WriteResult, PROTOCOL_VERSION,
};

use crate::flood::Flood;
use crate::health::RedisWatch;
use crate::lessons::{Position, Progress};
use crate::runner::Run;
use crate::series::Series;
use crate::timeline::Timeline;

/// The most traces the log keeps.
pub const LOG_LIMIT: usize = 50;
/// Write traces kept for the diagnostics.
const WRITES_KEPT: usize = 64;

/// Where the WebSocket stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// Connecting; `attempt` counts from 1.
    Connecting { attempt: u32 },
    /// Connected and greeted.
    Open,
    /// Dropped, or refused at a limit of the back end, which the notice
    /// names (`refused_for_now`); the next attempt starts in `retry_in_ms`.
    Lost {
        attempt: u32,
        retry_in_ms: u32,
        refused_for_now: bool,
    },
    /// The server speaks another protocol version: reloading is the fix.
    Incompatible { server: u32 },
    /// The server refused the session for good (a bad sandbox name in the
    /// page's address): the notice says why; no retry.
    Refused,
}

/// An operation held at a breakpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct PausedOperation {
    pub operation_id: u64,
    pub operation: Operation,
    /// The step it will run next.
    pub at: NodeId,
    /// The steps done so far.
    pub steps: Vec<TraceStep>,
    pub timeout_secs: u64,
}

/// Everything the components draw. `Copy`: signals are handles.
#[derive(Clone, Copy)]
pub struct AppState {
    /// The sandbox this page watches: the one it asked for, or the one the
    /// server gave it (`None` until the first greeting, when it asked for
    /// none).
    pub sandbox: RwSignal<Option<SandboxId>>,
    pub link: RwSignal<Link>,
    /// Set when the page replays recordings (a static documentation site
    /// with no back end): which one is shown, when and where recorded.
    pub recorded: RwSignal<Option<shared::recording::RecordingEntry>>,
    pub diagram: RwSignal<Diagram>,
    pub timeline: RwSignal<Timeline>,
    /// Newest first.
    pub log: RwSignal<VecDeque<Trace>>,
    /// The latest write traces, newest first (the diagnostics read them).
    pub writes: RwSignal<VecDeque<Trace>>,
    pub stats: RwSignal<Stats>,
    pub settings: RwSignal<Option<SandboxSettings>>,
    /// The answer to this page's latest read.
    pub last_result: RwSignal<Option<ReadResult>>,
    /// The answer to this page's latest write.
    pub last_write: RwSignal<Option<WriteResult>>,
    /// The latest divergence check.
    pub divergence: RwSignal<Option<DivergenceReport>>,
    /// Operations held at a breakpoint, waiting for "continue".
    pub paused: RwSignal<Vec<PausedOperation>>,
    /// The latest scenario result.
    pub scenario: RwSignal<Option<ScenarioResult>>,
    /// Step-through: reads from this page pause before they store in Redis.
    pub step_through: RwSignal<bool>,
    /// The sandbox's application instances.
    pub instances: RwSignal<Vec<InstanceState>>,
    /// Herd results of this page, oldest first, for side-by-side comparison.
    pub herds: RwSignal<Vec<HerdResult>>,
    /// The last herd's (or flood's) counts per diagram edge, shown until
    /// the next trace that is not part of a flood.
    pub herd_edges: RwSignal<Option<Vec<EdgeCount>>>,
    /// The latest flood of reads too many to animate, from the server's
    /// summaries.
    pub flood: RwSignal<Flood>,
    /// The counters over time, a point a second.
    pub series: RwSignal<Series>,
    /// Read latency, answered by a cache or by the database.
    pub latencies: RwSignal<crate::latency::Latencies>,
    /// The sandbox's load generator, as last told.
    pub load: RwSignal<Option<LoadState>>,
    /// The latest key inspection.
    pub keys: RwSignal<Option<KeyReport>>,
    /// The sandbox's server's memory limit and policy, as last told
    /// (`None`: to be asked).
    pub memory: RwSignal<Option<shared::MemoryState>>,
    /// The fault lab's report, as last told.
    pub faults: RwSignal<Option<shared::FaultReport>>,
    /// How many resets of the sandbox this page has heard of: a puzzle
    /// waits for its reset before it breaks the sandbox.
    pub resets: RwSignal<u64>,
    /// The eviction lab's fills of this page, oldest first.
    pub fills: RwSignal<Vec<shared::FillResult>>,
    /// The latest related-keys experiment.
    pub related: RwSignal<Option<shared::RelatedResult>>,
    /// The latest serialization comparison.
    pub encodings: RwSignal<Option<shared::EncodingComparison>>,
    /// The fill this page is waiting for, if any.
    pub fill_request: RwSignal<Option<u64>>,
    /// Redis's own figures over time.
    pub redis_watch: RwSignal<RedisWatch>,
    /// The latest background request for them: its failure belongs to the
    /// Redis card, not to the page's notice.
    pub redis_request: RwSignal<Option<u64>>,
    /// The instance this page sends its reads and writes to (`None`: any,
    /// round-robin).
    pub target_instance: RwSignal<Option<String>>,
    /// Reads sent and not yet answered.
    pub pending: RwSignal<Vec<u64>>,
    /// A message for the learner (an error, traces missed), if any.
    pub notice: RwSignal<Option<String>>,
    /// Which Redis the sandbox uses, as the server describes it.
    pub redis: RwSignal<String>,
    /// The lesson step on screen (`None`: free play).
    pub lesson: RwSignal<Option<Position>>,
    /// The lesson step's experiment, running or finished.
    pub run: RwSignal<Option<Run>>,
    /// The steps this browser has answered.
    pub progress: RwSignal<Progress>,
    /// Whether Space, → and R drive the animation (WCAG 2.1.4: single-key
    /// shortcuts can be turned off).
    pub shortcuts: RwSignal<bool>,
    /// The latest result, in words, for the page's live region.
    pub announcement: RwSignal<String>,
    /// The latest pattern comparison.
    pub comparison: RwSignal<Option<shared::PatternComparison>>,
}

impl AppState {
    pub fn new(sandbox: Option<SandboxId>, reduced_motion: bool) -> AppState {
        AppState {
            sandbox: RwSignal::new(sandbox),
            link: RwSignal::new(Link::Connecting { attempt: 1 }),
            diagram: RwSignal::new(Diagram::cache_aside_read()),
            timeline: RwSignal::new(Timeline::new(reduced_motion)),
            log: RwSignal::new(VecDeque::new()),
            writes: RwSignal::new(VecDeque::new()),
            stats: RwSignal::new(Stats::default()),
            settings: RwSignal::new(None),
            last_result: RwSignal::new(None),
            last_write: RwSignal::new(None),
            divergence: RwSignal::new(None),
            paused: RwSignal::new(Vec::new()),
            scenario: RwSignal::new(None),
            step_through: RwSignal::new(false),
            instances: RwSignal::new(Vec::new()),
            herds: RwSignal::new(Vec::new()),
            herd_edges: RwSignal::new(None),
            flood: RwSignal::new(Flood::default()),
            series: RwSignal::new(Series::default()),
            latencies: RwSignal::new(crate::latency::Latencies::default()),
            load: RwSignal::new(None),
            keys: RwSignal::new(None),
            memory: RwSignal::new(None),
            faults: RwSignal::new(None),
            resets: RwSignal::new(0),
            fills: RwSignal::new(Vec::new()),
            fill_request: RwSignal::new(None),
            encodings: RwSignal::new(None),
            related: RwSignal::new(None),
            redis_watch: RwSignal::new(RedisWatch::default()),
            redis_request: RwSignal::new(None),
            target_instance: RwSignal::new(None),
            pending: RwSignal::new(Vec::new()),
            notice: RwSignal::new(None),
            recorded: RwSignal::new(None),
            redis: RwSignal::new(String::new()),
            lesson: RwSignal::new(None),
            run: RwSignal::new(None),
            progress: RwSignal::new(Progress::default()),
            shortcuts: RwSignal::new(true),
            announcement: RwSignal::new(String::new()),
            comparison: RwSignal::new(None),
        }
    }

    /// Whether a lesson's experiment is running.
    pub fn experimenting(&self) -> bool {
        self.run
            .with_untracked(|r| r.as_ref().is_some_and(Run::is_running))
    }

    /// Applies one message from the server.
    pub fn apply(&self, message: ServerMessage) {
        match message {
            ServerMessage::Hello {
                protocol_version,
                sandbox,
                settings,
                stats,
                diagram,
                recent,
                instances,
                redis,
                load,
                ..
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    self.link.set(Link::Incompatible {
                        server: protocol_version,
                    });
                    return;
                }
                self.link.set(Link::Open);
                // A refusal from an earlier attempt ("full", "too many")
                // no longer holds.
                self.notice.set(None);
                // The server may have given a new sandbox (the page asked
                // for none, or for one that had expired): reconnections
                // ask for this one. Another sandbox's paused reads are not
                // this one's to continue.
                if self.sandbox.get_untracked().as_ref() != Some(&sandbox) {
                    self.paused.set(Vec::new());
                }
                self.sandbox.set(Some(sandbox));
                self.settings.set(Some(*settings));
                self.stats.set(stats);
                self.diagram.set(diagram);
                self.instances.set(instances);
                self.redis.set(redis);
                self.load.set(load);
                self.series.set(Series::default());
                self.latencies.set(crate::latency::Latencies::default());
                // A reconnect or reload picks the log up where it was.
                self.writes.set(
                    recent
                        .iter()
                        .filter(|t| !matches!(t.operation, shared::Operation::Read { .. }))
                        .take(WRITES_KEPT)
                        .cloned()
                        .collect(),
                );
                self.log.set(recent.into_iter().take(LOG_LIMIT).collect());
            }
            // The greeting's recent traces and the live feed may overlap by
            // one: a trace already in the log is not shown twice.
            ServerMessage::Trace { trace, .. }
                if self
                    .log
                    .with_untracked(|log| log.iter().any(|t| t.id == trace.id)) => {}
            ServerMessage::Trace { trace, stats } => {
                // A real trace takes the diagram back from a herd's counts,
                // but not from a flood's: it is one of the flood's reads.
                if !self.flood.with_untracked(|f| f.active_at(trace.started_at_ms)) {
                    self.herd_edges.set(None);
                }
                self.stats.set(stats);
                let ended_ms = trace.started_at_ms + trace.total_us / 1_000;
                self.series.update(|s| s.observe(ended_ms, stats));
                self.latencies.update(|l| l.add_trace(&trace));
                self.log.update(|log| {
                    log.push_front(trace.clone());
                    log.truncate(LOG_LIMIT);
                });
                // Writes are kept apart too: a flood of reads pushes them
                // out of the log long before a check looks for them.
                if !matches!(trace.operation, shared::Operation::Read { .. }) {
                    self.writes.update(|writes| {
                        writes.push_front(trace.clone());
                        writes.truncate(WRITES_KEPT);
                    });
                }
                self.timeline.update(|t| t.push(trace));
            }
            ServerMessage::ReadReply {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.announcement.set(announce_read(&result));
                self.last_result.set(Some(result));
            }
            ServerMessage::WriteReply {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.announcement.set(format!(
                    "{} {}/{} written in {}",
                    if result.record.is_some() {
                        "Updated"
                    } else {
                        "Removed"
                    },
                    result.kind,
                    result.id,
                    crate::format::micros(result.latency_us)
                ));
                self.last_write.set(Some(result));
            }
            ServerMessage::Settings { settings } => self.settings.set(Some(settings)),
            ServerMessage::Load { state } => self.load.set(Some(state)),
            ServerMessage::RedisInfo { figures, .. } => self.redis_watch.update(|w| w.observe(figures)),
            ServerMessage::Keys { report, .. } => {
                self.announcement.set(format!(
                    "{} keys in Redis, {} without a TTL",
                    report.keys.len(),
                    report.without_ttl
                ));
                self.keys.set(Some(report));
            }
            ServerMessage::Memory { state, .. } => self.memory.set(Some(state)),
            ServerMessage::Faults { report, .. } => self.faults.set(Some(report)),
            ServerMessage::RelatedReply {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.announcement.set(crate::ttl::related_story(&result));
                self.related.set(Some(result));
            }
            ServerMessage::Encodings {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.announcement.set(crate::serialization::summary(&result));
                self.encodings.set(Some(result));
            }
            ServerMessage::FillReply {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.fill_request.set(None);
                self.announcement.set(crate::eviction::story(&result));
                // The figures moved: ask again.
                self.memory.set(None);
                self.fills.update(|f| keep_last(f, result));
            }
            ServerMessage::Summary { stats, traffic } => {
                self.stats.set(stats);
                self.series.update(|s| s.observe(traffic.at_ms, stats));
                // A summary of nothing (the one a load sends as it ends,
                // for its final counters) starts no flood.
                if traffic.outcomes.is_empty() && traffic.edges.is_empty() {
                    return;
                }
                self.latencies.update(|l| l.add_traffic(&traffic));
                self.flood.update(|f| f.add(traffic));
                self.herd_edges
                    .set(Some(self.flood.with_untracked(|f| f.edges().to_vec())));
            }
            ServerMessage::Instances { instances } => self.instances.set(instances),
            ServerMessage::HerdReply {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.herd_edges.set(Some(result.edges.clone()));
                self.announcement.set(format!(
                    "Herd of {} requests: {} database loads, {} waited, {}p99 {}",
                    result.spec.requests,
                    result.database_loads,
                    result.waited,
                    if result.failed > 0 {
                        format!("{} failed (the database was saturated), ", result.failed)
                    } else {
                        String::new()
                    },
                    crate::format::micros(result.p99_us)
                ));
                self.herds.update(|h| keep_last(h, result));
            }
            ServerMessage::Paused {
                operation_id,
                operation,
                at,
                steps,
                timeout_secs,
            } => self.paused.update(|p| {
                p.retain(|o| o.operation_id != operation_id);
                p.push(PausedOperation {
                    operation_id,
                    operation,
                    at,
                    steps,
                    timeout_secs,
                });
            }),
            ServerMessage::Resumed { operation_id, .. } => self
                .paused
                .update(|p| p.retain(|o| o.operation_id != operation_id)),
            ServerMessage::ScenarioReply {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.announcement.set(if result.stale {
                    "Race over: Redis holds a stale value".to_string()
                } else {
                    "Race over: Redis agrees with the database".to_string()
                });
                self.scenario.set(Some(result));
            }
            ServerMessage::Comparison {
                request_id, result, ..
            } => {
                self.answered(request_id);
                self.announcement.set(format!(
                    "Compared {} patterns on {} operations",
                    result.rows.len(),
                    result.operations
                ));
                self.comparison.set(Some(result));
            }
            ServerMessage::Divergence {
                request_id, report, ..
            } => {
                self.answered(request_id);
                self.announcement.set(format!(
                    "Checked {} cached keys: {} stale",
                    report.entries.len(),
                    report.stale()
                ));
                self.divergence.set(Some(report));
            }
            ServerMessage::Missed { count } => {
                self.notice.set(Some(format!(
                    "This page fell behind and missed {count} trace(s); the reads still happened and are counted."
                )));
            }
            ServerMessage::Reset { stats } => {
                self.stats.set(stats);
                self.resets.update(|n| *n += 1);
                // A lesson's experiment starts with a reset: its steps
                // compare herds side by side, and it needs no notice.
                let experiment = self.experimenting();
                self.log.update(VecDeque::clear);
                self.writes.update(VecDeque::clear);
                self.timeline.update(Timeline::clear);
                self.last_result.set(None);
                self.last_write.set(None);
                self.divergence.set(None);
                // The reset mended every fault: the card asks again.
                self.faults.set(None);
                self.scenario.set(None);
                self.comparison.set(None);
                if !experiment {
                    self.herds.update(Vec::clear);
                    self.fills.update(Vec::clear);
                }
                // A reset puts a server of one's own back to its limits.
                self.memory.set(None);
                self.herd_edges.set(None);
                self.flood.set(Flood::default());
                self.series.set(Series::default());
                self.keys.set(None);
                self.paused.update(Vec::clear);
                self.notice.set((!experiment).then(|| {
                    "This sandbox was reset: its rows are back to the seed data and its cache is empty."
                        .into()
                }));
            }
            ServerMessage::Error {
                request_id: Some(id),
                message,
            } if self.redis_request.get_untracked() == Some(id) => {
                self.redis_watch.update(|w| w.failed(message));
            }
            ServerMessage::Error { request_id, message } => {
                if request_id.is_some() && request_id == self.fill_request.get_untracked() {
                    self.fill_request.set(None);
                }
                if let Some(id) = request_id {
                    self.answered(id);
                }
                self.notice.set(Some(message));
            }
        }
    }

    /// Whether a request the page counts (a read, a write, a herd, a
    /// lab's run) still awaits its answer.
    pub fn busy(&self) -> bool {
        self.pending.with(|p| !p.is_empty())
    }

    /// Counts a request as awaiting its answer.
    pub fn awaiting(&self, request_id: u64) {
        self.pending.update(|p| p.push(request_id));
    }

    /// A request was answered (or refused): no longer awaited. An answer
    /// to a request the page did not count (a poll) changes nothing.
    fn answered(&self, request_id: u64) {
        if self.pending.with_untracked(|p| p.contains(&request_id)) {
            self.pending.update(|p| p.retain(|id| *id != request_id));
        }
    }

    /// The socket closed: whatever was in flight on it will never be
    /// answered (a new connection is a new session). Paused reads are the
    /// sandbox's, not the socket's: they stay (see the greeting).
    pub fn forget_in_flight(&self) {
        self.pending.set(Vec::new());
        self.fill_request.set(None);
    }

    /// Whether reads can be sent.
    pub fn is_open(&self) -> bool {
        self.link.with(|l| *l == Link::Open)
    }

    /// Whether a lab ran reads of its own that its card sums up (a herd, a
    /// fill, a comparison of patterns): they are neither in the trace log
    /// nor in the sandbox's counters, and both say so.
    pub fn ran_in_bulk(&self) -> bool {
        !self.herds.with(Vec::is_empty)
            || !self.fills.with(Vec::is_empty)
            || self.comparison.with(Option::is_some)
    }
}

/// How many herd and fill results a card keeps to compare, newest last.
pub const RESULTS_KEPT: usize = 20;

/// Adds `result`, dropping the oldest past [`RESULTS_KEPT`].
fn keep_last<T>(results: &mut Vec<T>, result: T) {
    if results.len() >= RESULTS_KEPT {
        results.drain(..=results.len() - RESULTS_KEPT);
    }
    results.push(result);
}

/// A read's result in words.
fn announce_read(result: &ReadResult) -> String {
    format!(
        "Read {}/{}: {} in {}",
        result.kind,
        result.id,
        result.outcome.label(),
        crate::format::micros(result.latency_us)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sandbox: &str) -> ServerMessage {
        ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            sandbox: SandboxId::parse(sandbox).unwrap(),
            settings: Box::default(),
            stats: Stats::default(),
            diagram: Diagram::cache_aside_read(),
            recent: Vec::new(),
            instances: Vec::new(),
            redis: String::new(),
            load: None,
            moved: false,
        }
    }

    #[test]
    fn only_counted_requests_are_awaited_and_a_closed_socket_awaits_nothing() {
        let state = AppState::new(None, true);
        state.apply(hello("default"));
        state.awaiting(7);
        state.fill_request.set(Some(8));
        state.awaiting(8);
        // A poll's refusal (never counted) leaves the herd running.
        state.apply(ServerMessage::Error {
            request_id: Some(99),
            message: "too many operations".into(),
        });
        assert!(state.busy());
        state.apply(ServerMessage::Error {
            request_id: Some(7),
            message: "refused".into(),
        });
        assert_eq!(state.pending.get_untracked(), [8]);
        state.apply(ServerMessage::Paused {
            operation_id: 3,
            operation: shared::Operation::Read {
                kind: shared::Kind::Users,
                id: 1,
            },
            at: shared::diagram::nodes::STORE_IN_CACHE,
            steps: Vec::new(),
            timeout_secs: 30,
        });
        // The socket drops with the fill out: its answer went with it.
        state.forget_in_flight();
        assert!(!state.busy());
        assert_eq!(state.fill_request.get_untracked(), None);
        // The paused read is the sandbox's: still there after a reconnect
        // to it, gone with a greeting from another sandbox.
        state.apply(hello("default"));
        assert_eq!(state.paused.with_untracked(Vec::len), 1);
        state.apply(hello("another"));
        assert!(state.paused.with_untracked(Vec::is_empty));
    }

    /// The summary a load sends as it ends carries its final counters and
    /// no reads: the counters change, no flood starts, the diagram keeps
    /// drawing traces.
    #[test]
    fn a_summary_of_nothing_brings_the_counters_only() {
        let state = AppState::new(None, true);
        state.apply(hello("default"));
        let stats = Stats {
            hits: 5,
            misses: 2,
            ..Stats::default()
        };
        state.apply(ServerMessage::Summary {
            stats,
            traffic: shared::Traffic {
                interval_ms: 250,
                at_ms: 1_000,
                outcomes: Vec::new(),
                edges: Vec::new(),
                histogram: Vec::new(),
                cached_histogram: Vec::new(),
            },
        });
        assert_eq!(state.stats.get_untracked(), stats);
        assert_eq!(state.herd_edges.get_untracked(), None);
        assert_eq!(state.flood.get_untracked(), Flood::default());
    }

    #[test]
    fn a_card_keeps_its_last_twenty_results() {
        let mut kept = Vec::new();
        for n in 0..30 {
            keep_last(&mut kept, n);
        }
        assert_eq!(kept, (10..30).collect::<Vec<_>>());
    }

    #[test]
    fn the_greeting_names_the_sandbox_later_connections_ask_for() {
        let state = AppState::new(None, true);
        state.apply(hello("sgivenbytheserver"));
        assert_eq!(state.link.get_untracked(), Link::Open);
        assert_eq!(
            state.sandbox.get_untracked().map(|s| s.as_str().to_string()),
            Some("sgivenbytheserver".into())
        );
    }

    #[test]
    fn a_reset_forgets_the_traces_and_results_and_says_so() {
        let state = AppState::new(None, true);
        state.apply(hello("default"));
        let trace = crate::timeline::tests::trace(1, &["request", "check_cache", "return_cached"]);
        state.apply(ServerMessage::Trace {
            trace,
            stats: Stats {
                hits: 1,
                ..Stats::default()
            },
        });
        assert_eq!(state.log.with_untracked(VecDeque::len), 1);
        assert!(state.timeline.with_untracked(|t| t.frame().is_some()));
        state.apply(ServerMessage::Reset {
            stats: Stats::default(),
        });
        assert!(state.log.with_untracked(VecDeque::is_empty));
        assert!(state.timeline.with_untracked(|t| t.frame().is_none()));
        assert_eq!(state.stats.get_untracked(), Stats::default());
        assert!(state.notice.get_untracked().is_some_and(|n| n.contains("reset")));
    }
}
