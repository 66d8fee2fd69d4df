//! Runs a lesson step's experiment: resets the sandbox, applies the step's
//! settings, then performs each action, waiting for the back end's answer
//! before the next one (never a fixed delay, except the waits the lesson
//! asks for, such as a TTL running out). Plain Rust: the connection feeds
//! it server messages and carries out the [`Command`]s it returns.

use std::collections::{HashSet, VecDeque};

use shared::{ClientMessage, SandboxSettings, Scenario, ServerMessage, WriteChange};

use crate::lessons::{settings_for, Action, Observed, Position};

/// Request ids of experiments start here, far from the page's own.
const FIRST_REQUEST_ID: u64 = 1 << 40;

/// What the page must do next for the run.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Send this message.
    Send(ClientMessage),
    /// Call [`Run::on_timer`] after this many milliseconds.
    Wait(u32),
}

/// One unit of an experiment.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Reset,
    Settings(Box<SandboxSettings>),
    Act(Action),
}

/// What the run is waiting for.
#[derive(Clone, Debug, PartialEq)]
enum Waiting {
    Reset,
    Settings,
    /// An instance's subscription cut or up again, as the instances'
    /// report shows it: a subscription comes back in the background, and
    /// only once it is up has the instance emptied its near cache.
    Link {
        instance: String,
        connected: bool,
    },
    Reply(u64),
    Timer,
    /// Every action answered; the traces of its reads and writes (which
    /// carry the counters the page shows) are still on their way.
    Traces,
    /// A write's trace: it arrives once the other instances heard the
    /// invalidation, so the next action sees a settled fleet.
    Trace(u64),
    /// The end of the load this run started (its request id, for a
    /// refusal).
    LoadEnd(u64),
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Running,
    Done,
    Failed(String),
}

/// An experiment in progress (or finished, with what it observed).
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub at: Position,
    queue: VecDeque<Item>,
    waiting: Option<Waiting>,
    pub observed: Observed,
    pub phase: Phase,
    /// Units done, of `total`, for the progress bar.
    pub done: usize,
    pub total: usize,
    next_id: u64,
    instances: Vec<String>,
    /// Traces of this run's operations not drawn yet: replies and traces
    /// travel apart, and the run is done when the page shows it all.
    awaited: HashSet<u64>,
    /// Traces that arrived before their operation's reply.
    seen: HashSet<u64>,
    /// Waits for a write's trace begun, so a watchdog sees the run move.
    trace_waits: usize,
    /// The request id of the read under way, if one is: its error is a
    /// result (a failed read), not the run's failure.
    reading: Option<u64>,
}

impl Run {
    /// Starts the experiment of the step `at` on a sandbox now set up as
    /// `current`, with these instance names. Returns the first command.
    pub fn start(at: Position, current: &SandboxSettings, instances: Vec<String>) -> (Run, Command) {
        let step = at.step();
        let mut queue = VecDeque::new();
        queue.push_back(Item::Reset);
        let mut settings = settings_for(step, current);
        queue.push_back(Item::Settings(Box::new(settings.clone())));
        for action in step.run {
            match *action {
                // A failing database is a setting, changed mid-run.
                Action::FailDatabase { percent } => {
                    settings.db_error_percent = percent;
                    queue.push_back(Item::Settings(Box::new(settings.clone())));
                }
                // One read at a time, each waiting for the last.
                Action::Read { kind, id, times } => {
                    for _ in 0..times {
                        queue.push_back(Item::Act(Action::Read { kind, id, times: 1 }));
                    }
                }
                Action::Reset => queue.push_back(Item::Reset),
                other => queue.push_back(Item::Act(other)),
            }
        }
        let total = queue.len();
        let mut run = Run {
            at,
            queue,
            waiting: None,
            observed: Observed::default(),
            phase: Phase::Running,
            done: 0,
            total,
            next_id: FIRST_REQUEST_ID,
            instances,
            awaited: HashSet::new(),
            seen: HashSet::new(),
            trace_waits: 0,
            reading: None,
        };
        let first = run.advance().expect("a run starts with a reset");
        (run, first)
    }

    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Takes in a message from the back end; returns the next command if
    /// the message was what the run waited for.
    pub fn on_message(&mut self, message: &ServerMessage) -> Option<Command> {
        // The counters the page shows, kept even after the run is done: a
        // load's last summary may arrive after its end.
        if let ServerMessage::Trace { stats, .. }
        | ServerMessage::Summary { stats, .. }
        | ServerMessage::Reset { stats } = message
        {
            self.observed.stats = Some(*stats);
        }
        if !self.is_running() {
            return None;
        }
        match message {
            ServerMessage::Trace { trace, .. } => {
                // What a SET sent to Redis for a phone number.
                if let Some(phone) = trace.cached_phone() {
                    self.observed.cached_phones.push(phone);
                }
                if self.waiting == Some(Waiting::Trace(trace.id)) {
                    self.done += 1;
                    return self.advance();
                }
                if !self.awaited.remove(&trace.id) {
                    self.seen.insert(trace.id);
                }
                self.finish_if_drawn();
                return None;
            }
            // The page fell behind and some traces will never come.
            ServerMessage::Missed { .. } => {
                self.awaited.clear();
                if matches!(self.waiting, Some(Waiting::Trace(_))) {
                    self.done += 1;
                    return self.advance();
                }
                // The report of a link change may be among what was missed:
                // asking again costs nothing, and is always answered.
                if let Some(Waiting::Link { instance, connected }) = &self.waiting {
                    return Some(Command::Send(ClientMessage::SetInstanceLink {
                        instance: instance.clone(),
                        connected: *connected,
                    }));
                }
                self.finish_if_drawn();
                return None;
            }
            _ => {}
        }
        let waiting = self.waiting.clone()?;
        let matched = match (&waiting, message) {
            (Waiting::Reset, ServerMessage::Reset { .. }) => true,
            (Waiting::Settings, ServerMessage::Settings { .. }) => true,
            (Waiting::Link { instance, connected }, ServerMessage::Instances { instances }) => instances
                .iter()
                .any(|i| &i.name == instance && i.subscribed == *connected),
            (Waiting::Reply(id), ServerMessage::ReadReply { request_id, result }) if request_id == id => {
                // A read beyond the sandbox's traces per second has none.
                if let Some(trace) = result.trace_id {
                    self.await_trace(trace);
                }
                self.observed.reads.push(result.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::WriteReply { request_id, result }) if request_id == id => {
                self.observed.writes.push(result.clone());
                // A write beyond the sandbox's traces per second has none.
                match result.trace_id {
                    Some(trace) if !self.seen.remove(&trace) => {
                        self.waiting = Some(Waiting::Trace(trace));
                        self.trace_waits += 1;
                        return None;
                    }
                    _ => true,
                }
            }
            (Waiting::Reply(id), ServerMessage::HerdReply { request_id, result }) if request_id == id => {
                self.observed.herds.push(result.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::ScenarioReply { request_id, result }) if request_id == id => {
                self.observed.race = Some(result.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::Comparison { request_id, result }) if request_id == id => {
                self.observed.comparison = Some(result.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::Divergence { request_id, report }) if request_id == id => {
                self.observed.divergence = Some(report.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::Keys { request_id, report }) if request_id == id => {
                self.observed.keys = Some(report.clone());
                true
            }
            (Waiting::LoadEnd(_), ServerMessage::Load { state }) => !state.running,
            (Waiting::Reply(id), ServerMessage::RelatedReply { request_id, result }) if request_id == id => {
                self.observed.related = Some(result.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::Encodings { request_id, result }) if request_id == id => {
                self.observed.encodings = Some(result.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::Memory { request_id, state }) if request_id == id => {
                self.observed.memory = Some(state.clone());
                true
            }
            (Waiting::Reply(id), ServerMessage::FillReply { request_id, result }) if request_id == id => {
                self.observed.fills.push(result.clone());
                true
            }
            (
                Waiting::Reply(id),
                ServerMessage::Faults {
                    request_id: Some(request_id),
                    report,
                },
            ) if request_id == id => {
                self.observed.faults = Some(report.clone());
                true
            }
            // A read the back end could not answer (no fallback, a failing
            // database) is what the experiment shows: counted, not fatal.
            (
                Waiting::Reply(id),
                ServerMessage::Error {
                    request_id: Some(r), ..
                },
            ) if r == id && self.reading == Some(*id) => {
                self.observed.failed_reads += 1;
                true
            }
            // A refusal of this run's request, or of a reset or settings
            // change (those are answered without an id).
            (
                Waiting::Reply(id) | Waiting::LoadEnd(id),
                ServerMessage::Error {
                    request_id: Some(r),
                    message,
                },
            ) if r == id => {
                self.fail(message.clone());
                return None;
            }
            (
                Waiting::Reset | Waiting::Settings | Waiting::Link { .. },
                ServerMessage::Error {
                    request_id: None,
                    message,
                },
            ) => {
                self.fail(message.clone());
                return None;
            }
            _ => false,
        };
        if !matched {
            return None;
        }
        self.done += 1;
        self.advance()
    }

    fn await_trace(&mut self, trace: u64) {
        if !self.seen.remove(&trace) {
            self.awaited.insert(trace);
        }
    }

    /// Done once every action is answered and every trace drawn.
    fn finish_if_drawn(&mut self) {
        if self.waiting == Some(Waiting::Traces) && self.awaited.is_empty() {
            self.phase = Phase::Done;
            self.waiting = None;
        }
    }

    /// The wait the run asked for is over.
    pub fn on_timer(&mut self) -> Option<Command> {
        if self.is_running() && self.waiting == Some(Waiting::Timer) {
            self.done += 1;
            self.advance()
        } else {
            None
        }
    }

    /// Grows whenever the run moves on, for a watchdog to see it did.
    pub fn progress(&self) -> usize {
        self.done + self.trace_waits
    }

    /// Why a run that stopped moving is stuck, for the page to say.
    pub fn stalled(&self) -> String {
        match &self.waiting {
            Some(Waiting::Link {
                instance,
                connected: true,
            }) => format!(
                "instance {instance}'s subscription did not come back within two minutes: is Redis reachable? Run it again"
            ),
            _ => "the back end did not answer within two minutes; run it again".into(),
        }
    }

    /// The connection dropped: nothing more will be answered.
    pub fn fail(&mut self, why: String) {
        if self.is_running() {
            self.phase = Phase::Failed(why);
            self.waiting = None;
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Numbers this run's requests apart: the page's `nth` run counts from
    /// its own block of ids, so a late answer to a request of a run the
    /// learner left (or that failed on its watchdog) is never taken for
    /// this run's. Called before the first request goes out (a run opens
    /// with a reset, which has none). A recording's runs keep the first
    /// block: each of its steps is a run of its own.
    pub fn number(&mut self, nth: u64) {
        self.next_id = FIRST_REQUEST_ID + (nth << 24);
    }

    fn instance(&mut self, index: usize) -> Result<String, String> {
        self.instances
            .get(index)
            .cloned()
            .ok_or_else(|| format!("this sandbox has no instance number {}", index + 1))
    }

    /// The next unit's command, or `None` when done.
    fn advance(&mut self) -> Option<Command> {
        let Some(item) = self.queue.pop_front() else {
            self.waiting = Some(Waiting::Traces);
            self.finish_if_drawn();
            return None;
        };
        let (waiting, command) = match item {
            Item::Reset => (Waiting::Reset, Command::Send(ClientMessage::Reset)),
            Item::Settings(settings) => (
                Waiting::Settings,
                Command::Send(ClientMessage::UpdateSettings { settings: *settings }),
            ),
            Item::Act(action) => match self.act(action) {
                Ok(pair) => pair,
                Err(why) => {
                    self.fail(why);
                    return None;
                }
            },
        };
        self.waiting = Some(waiting);
        Some(command)
    }

    fn act(&mut self, action: Action) -> Result<(Waiting, Command), String> {
        let id = self.request_id();
        self.reading = matches!(action, Action::Read { .. } | Action::ReadOn { .. }).then_some(id);
        let message = match action {
            Action::Read { kind, id: record, .. } => ClientMessage::Read {
                request_id: id,
                kind,
                id: record,
                pause_before: Vec::new(),
                instance: None,
            },
            Action::ReadOn {
                instance,
                kind,
                id: record,
            } => ClientMessage::Read {
                request_id: id,
                kind,
                id: record,
                pause_before: Vec::new(),
                instance: Some(self.instance(instance)?),
            },
            Action::Rename { id: record, name } => ClientMessage::Write {
                request_id: id,
                kind: shared::Kind::Users,
                id: record,
                change: WriteChange::Update {
                    name: name.to_string(),
                },
                // On A, so a lesson can say where the write came from.
                instance: self.instances.first().cloned(),
            },
            Action::Delete { id: record } => ClientMessage::Write {
                request_id: id,
                kind: shared::Kind::Users,
                id: record,
                change: WriteChange::Delete,
                instance: self.instances.first().cloned(),
            },
            Action::CheckDivergence => ClientMessage::CheckDivergence { request_id: id },
            Action::WriteOrder { id: record } => ClientMessage::RunScenario {
                request_id: id,
                scenario: Scenario::WriteOrder {
                    kind: shared::Kind::Users,
                    id: record,
                },
            },
            Action::Race { id: record } => ClientMessage::RunScenario {
                request_id: id,
                scenario: Scenario::StaleSetRace {
                    kind: shared::Kind::Users,
                    id: record,
                },
            },
            Action::Herd {
                requests,
                defence,
                timing,
            } => ClientMessage::RunHerd {
                request_id: id,
                herd: shared::HerdSpec {
                    kind: shared::Kind::Users,
                    id: 21,
                    requests,
                    defence,
                    timing,
                    beta: 1.0,
                    jitter_percent: 25,
                },
            },
            Action::Link { instance, connected } => {
                let instance = self.instance(instance)?;
                return Ok((
                    Waiting::Link {
                        instance: instance.clone(),
                        connected,
                    },
                    Command::Send(ClientMessage::SetInstanceLink { instance, connected }),
                ));
            }
            Action::Wait { ms } => return Ok((Waiting::Timer, Command::Wait(ms))),
            Action::ComparePatterns { seed } => ClientMessage::ComparePatterns { request_id: id, seed },
            Action::InspectKeys => ClientMessage::InspectKeys { request_id: id },
            Action::Memory { maxmemory_kb, policy } => ClientMessage::SetMemory {
                request_id: id,
                memory: shared::MemorySettings {
                    maxmemory_kb,
                    policy,
                    ..shared::MemorySettings::default()
                },
            },
            Action::Fill {
                keys,
                value_bytes,
                reads,
                with_ttl,
                drift,
            } => ClientMessage::Fill {
                request_id: id,
                memory: None,
                fill: shared::FillSpec {
                    keys,
                    value_bytes,
                    reads,
                    with_ttl,
                    drift,
                    skew: 1.0,
                    seed: 1,
                },
            },
            Action::Load {
                per_second,
                keys,
                seconds,
            } => {
                let load = shared::LoadSpec {
                    kind: shared::Kind::Users,
                    per_second,
                    write_percent: 0,
                    keys,
                    skew: 1.0,
                    seconds,
                    seed: 1,
                };
                return Ok((
                    Waiting::LoadEnd(id),
                    Command::Send(ClientMessage::StartLoad { request_id: id, load }),
                ));
            }
            Action::RelatedKeys {
                price_ttl_ms,
                stock_ttl_ms,
            } => ClientMessage::RelatedKeys {
                request_id: id,
                spec: shared::RelatedSpec {
                    id: 7,
                    price_ttl_ms,
                    stock_ttl_ms,
                },
            },
            Action::CompareEncodings { padding_bytes } => ClientMessage::CompareEncodings {
                request_id: id,
                kind: shared::Kind::Users,
                id: 42,
                padding_bytes,
            },
            Action::Fault(action) => ClientMessage::Fault {
                request_id: id,
                action: Some(action),
            },
            // Queued as a reset or a settings change of the run itself (see
            // `Run::start`).
            Action::Reset | Action::FailDatabase { .. } => {
                return Err("a reset or a settings change is not an action".into())
            }
        };
        Ok((Waiting::Reply(id), Command::Send(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lessons::LESSONS;
    use shared::{Kind, Outcome, ReadResult, SandboxId, Stats};

    fn position(lesson: &str, step: usize) -> Position {
        Position::from_query(lesson, Some(&step.to_string())).unwrap()
    }

    fn names() -> Vec<String> {
        vec!["A".into(), "B".into(), "C".into()]
    }

    /// A run of `lesson`'s step `step`, past its reset and settings: with
    /// the first action's command.
    fn past_set_up(lesson: &str, step: usize) -> (Run, Command) {
        let (mut run, _) = Run::start(position(lesson, step), &SandboxSettings::default(), names());
        run.on_message(&ServerMessage::Reset {
            stats: Stats::default(),
        });
        let first = run
            .on_message(&ServerMessage::Settings {
                settings: SandboxSettings::default(),
            })
            .expect("the first action follows the settings");
        (run, first)
    }

    fn reply(request_id: u64, outcome: Outcome) -> ServerMessage {
        traced_reply(request_id, outcome, None)
    }

    fn traced_reply(request_id: u64, outcome: Outcome, trace_id: Option<u64>) -> ServerMessage {
        ServerMessage::ReadReply {
            request_id,
            result: ReadResult {
                kind: Kind::Users,
                id: 42,
                outcome,
                found: true,
                record: None,
                latency_us: 10,
                trace_id,
                sandbox: SandboxId::default_sandbox(),
            },
        }
    }

    fn trace_message(id: u64) -> ServerMessage {
        ServerMessage::Trace {
            trace: crate::timeline::tests::trace(id, &["request", "check_cache", "return_cached"]),
            stats: Stats::default(),
        }
    }

    /// Replies and traces travel apart: the run is done when the page has
    /// both, in either order, so the counters on screen are final.
    #[test]
    fn a_run_is_done_when_its_traces_are_drawn_too() {
        let (mut run, first) = past_set_up("basics", 2);
        // The first read's trace comes before its reply.
        assert_eq!(run.on_message(&trace_message(501)), None);
        let second = run
            .on_message(&traced_reply(request_id(&first), Outcome::Miss, Some(501)))
            .unwrap();
        assert_eq!(
            run.on_message(&traced_reply(request_id(&second), Outcome::Hit, Some(502))),
            None
        );
        assert_eq!(run.phase, Phase::Running, "the second trace is still on its way");
        // Someone else's trace changes nothing.
        run.on_message(&trace_message(999));
        assert_eq!(run.phase, Phase::Running);
        run.on_message(&trace_message(502));
        assert_eq!(run.phase, Phase::Done);

        // A page that fell behind stops waiting.
        let (mut run, read) = past_set_up("basics", 1);
        run.on_message(&traced_reply(request_id(&read), Outcome::Miss, Some(7)));
        assert_eq!(run.phase, Phase::Running);
        run.on_message(&ServerMessage::Missed { count: 3 });
        assert_eq!(run.phase, Phase::Done);
    }

    /// A load step: it runs until the load says it ended; the counters of
    /// every summary are kept, even one that comes after the end.
    #[test]
    fn a_load_step_waits_for_its_end_and_keeps_the_counters() {
        let (mut run, first) = past_set_up("basics", 4);
        let Command::Send(ClientMessage::StartLoad { load, .. }) = first else {
            panic!("a load first, got {first:?}");
        };
        assert_eq!((load.per_second, load.keys, load.seconds), (200, 100, 10));
        let summary = |hits: u64, misses: u64| ServerMessage::Summary {
            stats: Stats {
                hits,
                misses,
                ..Stats::default()
            },
            traffic: shared::Traffic::default(),
        };
        let state = |running: bool| ServerMessage::Load {
            state: shared::LoadState {
                spec: load.clone(),
                started_at_ms: 1,
                sent: 10,
                running,
            },
        };
        assert_eq!(run.on_message(&state(true)), None, "still running");
        run.on_message(&summary(50, 50));
        run.on_message(&state(false));
        assert_eq!(run.phase, Phase::Done);
        run.on_message(&summary(1_700, 300));
        let check = position("basics", 4).step().check;
        assert_eq!(check.answer_text(&run.observed).as_deref(), Some("1700"));
    }

    /// The comparison step: set the memory, fill, reset, set, fill; both
    /// fills are what the check reads.
    #[test]
    fn a_comparison_resets_between_its_two_fills() {
        let (mut run, first) = past_set_up("memory", 4);
        let set_memory = |command: &Command| match command {
            Command::Send(ClientMessage::SetMemory { request_id, memory }) => (*request_id, memory.policy),
            other => panic!("expected a memory change, got {other:?}"),
        };
        let fill_id = |command: &Command| match command {
            Command::Send(ClientMessage::Fill { request_id, fill, .. }) => {
                assert_eq!((fill.keys, fill.reads), (6_000, 12_000));
                *request_id
            }
            other => panic!("expected a fill, got {other:?}"),
        };
        let memory = |request_id: u64| ServerMessage::Memory {
            request_id,
            state: shared::MemoryState {
                controllable: true,
                reason: None,
                limit_kb: 8 * 1024,
                maxmemory: 3 << 20,
                policy: "allkeys-random".into(),
                samples: 5,
                used_memory: 1 << 20,
                keys: 0,
                evicted_keys: 0,
            },
        };
        let filled = |request_id: u64, hits: u64| ServerMessage::FillReply {
            request_id,
            result: shared::FillResult {
                spec: shared::FillSpec::default(),
                memory: shared::MemorySettings::default(),
                stored: 10,
                store_failures: 0,
                hits,
                misses: 1,
                fallbacks: 0,
                evicted: 5,
                keys_left: 5,
                used_memory: 3 << 20,
                duration_ms: 1,
            },
        };
        let (id, policy) = set_memory(&first);
        assert_eq!(policy, shared::EvictionPolicy::AllkeysRandom);
        let fill = run.on_message(&memory(id)).unwrap();
        let reset = run.on_message(&filled(fill_id(&fill), 70)).unwrap();
        assert_eq!(reset, Command::Send(ClientMessage::Reset));
        let second = run
            .on_message(&ServerMessage::Reset {
                stats: Stats::default(),
            })
            .unwrap();
        let (id, policy) = set_memory(&second);
        assert_eq!(policy, shared::EvictionPolicy::AllkeysLfu);
        let fill = run.on_message(&memory(id)).unwrap();
        run.on_message(&filled(fill_id(&fill), 80));
        assert_eq!(run.phase, Phase::Done);
        assert_eq!(run.observed.fills.len(), 2);
        let check = position("memory", 4).step().check;
        assert_eq!(check.answer_text(&run.observed).as_deref(), Some("allkeys-lfu"));
    }

    fn request_id(command: &Command) -> u64 {
        match command {
            Command::Send(ClientMessage::Read { request_id, .. }) => *request_id,
            other => panic!("expected a read, got {other:?}"),
        }
    }

    #[test]
    fn a_late_answer_to_an_abandoned_run_is_not_taken_for_the_next() {
        let at = position("basics", 1);
        let set_up = |nth: u64| {
            let (mut run, _) = Run::start(at, &SandboxSettings::default(), names());
            run.number(nth);
            run.on_message(&ServerMessage::Reset {
                stats: Stats::default(),
            });
            let read = run
                .on_message(&ServerMessage::Settings {
                    settings: SandboxSettings::default(),
                })
                .unwrap();
            (run, read)
        };
        // The learner left run 0 while its read was out, and ran the step
        // again.
        let (_, abandoned) = set_up(0);
        let (mut again, read) = set_up(1);
        assert_ne!(request_id(&abandoned), request_id(&read));
        assert_eq!(
            again.on_message(&reply(request_id(&abandoned), Outcome::Hit)),
            None
        );
        assert_eq!(again.done, 2, "the old answer moved nothing");
        again.on_message(&reply(request_id(&read), Outcome::Miss));
        assert_eq!(again.observed.reads.len(), 1);
    }

    #[test]
    fn a_run_resets_sets_up_then_reads_one_at_a_time() {
        let at = position("basics", 2);
        let (mut run, first) = Run::start(at, &SandboxSettings::default(), names());
        assert_eq!(first, Command::Send(ClientMessage::Reset));
        // Nothing else moves it on.
        assert_eq!(
            run.on_message(&ServerMessage::Summary {
                stats: Stats::default(),
                traffic: shared::Traffic::default(),
            }),
            None
        );
        let settings = run
            .on_message(&ServerMessage::Reset {
                stats: Stats::default(),
            })
            .unwrap();
        let Command::Send(ClientMessage::UpdateSettings { settings }) = settings else {
            panic!("settings next, got {settings:?}");
        };
        assert_eq!(settings.cache_ttl_secs, 300);
        let read = run.on_message(&ServerMessage::Settings { settings }).unwrap();
        let first_read = request_id(&read);
        // A reply to someone else's request does not count.
        assert_eq!(run.on_message(&reply(first_read + 100, Outcome::Miss)), None);
        let second = run.on_message(&reply(first_read, Outcome::Miss)).unwrap();
        assert_ne!(request_id(&second), first_read);
        assert_eq!(run.done, 3);
        assert_eq!(run.total, 4);
        assert_eq!(run.on_message(&reply(request_id(&second), Outcome::Hit)), None);
        assert_eq!(run.phase, Phase::Done);
        assert_eq!(run.observed.reads.len(), 2);
        assert_eq!(
            at.step().check.judge(Some(&run.observed), "1"),
            crate::lessons::Verdict::Right
        );
    }

    #[test]
    fn waits_are_timers_and_links_wait_for_the_instances() {
        let (mut run, mut next) = past_set_up("ttl", 1);
        for _ in 0..2 {
            next = run.on_message(&reply(request_id(&next), Outcome::Miss)).unwrap();
        }
        assert_eq!(next, Command::Wait(3_500));
        assert_eq!(run.on_message(&reply(0, Outcome::Miss)), None);
        let last = run.on_timer().unwrap();
        assert!(matches!(last, Command::Send(ClientMessage::Read { .. })));

        let (mut run, mut next) = past_set_up("near-cache", 2);
        for _ in 0..2 {
            next = run.on_message(&reply(request_id(&next), Outcome::Miss)).unwrap();
        }
        assert_eq!(
            next,
            Command::Send(ClientMessage::SetInstanceLink {
                instance: "B".into(),
                connected: false
            })
        );
        // A cut is done once the instances' report shows B unsubscribed.
        let b = |subscribed: bool| ServerMessage::Instances {
            instances: vec![shared::InstanceState {
                name: "B".into(),
                subscribed,
                near_entries: 1,
                received: 0,
            }],
        };
        assert_eq!(run.on_message(&b(true)), None, "B is still subscribed");
        assert!(run.on_message(&b(false)).is_some());

        // Linked again: only a report of B subscribed moves on (the first
        // report, sent as the subscription starts, may still say it is not).
        let (mut run, mut next) = past_set_up("near-cache", 3);
        while !matches!(
            next,
            Command::Send(ClientMessage::SetInstanceLink { connected: true, .. })
        ) {
            next = match next {
                Command::Send(ClientMessage::Read { request_id, .. }) => {
                    run.on_message(&reply(request_id, Outcome::Miss))
                }
                Command::Send(ClientMessage::SetInstanceLink { connected: false, .. }) => {
                    run.on_message(&b(false))
                }
                Command::Send(ClientMessage::Write { request_id, .. }) => {
                    run.on_message(&ServerMessage::WriteReply {
                        request_id,
                        result: shared::WriteResult {
                            kind: Kind::Users,
                            id: 9,
                            found: true,
                            record: None,
                            cache: shared::CacheEffect::NoRecord,
                            latency_us: 5,
                            trace_id: None,
                            sandbox: SandboxId::default_sandbox(),
                        },
                    })
                }
                other => panic!("unexpected {other:?}"),
            }
            .expect("the run goes on");
        }
        assert_eq!(run.on_message(&b(false)), None, "not subscribed yet");
        // The page fell behind: the report may be lost, so it asks again.
        assert_eq!(
            run.on_message(&ServerMessage::Missed { count: 3 }),
            Some(Command::Send(ClientMessage::SetInstanceLink {
                instance: "B".into(),
                connected: true
            }))
        );
        assert!(run
            .stalled()
            .contains("instance B's subscription did not come back"));
        let read = run.on_message(&b(true)).expect("the read on B follows");
        assert!(
            matches!(read, Command::Send(ClientMessage::Read { .. })),
            "{read:?}"
        );
    }

    /// A write is followed by its trace before the next action: the trace
    /// comes once the instances heard the invalidation.
    #[test]
    fn a_write_waits_for_its_trace() {
        let (mut run, read) = past_set_up("invalidation", 2);
        let write = run.on_message(&reply(request_id(&read), Outcome::Miss)).unwrap();
        let Command::Send(ClientMessage::Write { request_id, .. }) = write else {
            panic!("a write next, got {write:?}");
        };
        let written = ServerMessage::WriteReply {
            request_id,
            result: shared::WriteResult {
                kind: Kind::Users,
                id: 7,
                found: true,
                record: None,
                cache: shared::CacheEffect::NoRecord,
                latency_us: 5,
                trace_id: Some(77),
                sandbox: SandboxId::default_sandbox(),
            },
        };
        assert_eq!(run.on_message(&written), None, "not before its trace");
        let next = run.on_message(&trace_message(77)).unwrap();
        assert!(
            matches!(next, Command::Send(ClientMessage::Read { .. })),
            "{next:?}"
        );
    }

    #[test]
    fn a_refusal_ends_the_run_with_the_reason() {
        let (mut run, _) = Run::start(position("basics", 1), &SandboxSettings::default(), names());
        run.on_message(&ServerMessage::Error {
            request_id: None,
            message: "too many commands".into(),
        });
        assert_eq!(run.phase, Phase::Failed("too many commands".into()));
        assert_eq!(
            run.on_message(&ServerMessage::Reset {
                stats: Stats::default()
            }),
            None
        );
    }

    #[test]
    fn a_sandbox_without_the_instance_is_a_clear_failure() {
        let (mut run, _) = Run::start(position("near-cache", 1), &SandboxSettings::default(), Vec::new());
        run.on_message(&ServerMessage::Reset {
            stats: Stats::default(),
        });
        let next = run.on_message(&ServerMessage::Settings {
            settings: SandboxSettings::default(),
        });
        assert_eq!(next, None);
        assert!(matches!(run.phase, Phase::Failed(ref why) if why.contains("instance number 1")));
    }

    /// The failures lesson: a fault is answered with the report; a read
    /// the back end refuses (no fallback) is counted as failed and the run
    /// goes on; a failing database is a settings change mid-run.
    #[test]
    fn faults_failed_reads_and_a_failing_database_move_the_run_on() {
        let (mut run, first) = past_set_up("failures", 1);
        let stop = run.on_message(&reply(request_id(&first), Outcome::Miss)).unwrap();
        let Command::Send(ClientMessage::Fault {
            request_id: stop_id,
            action: Some(shared::FaultAction::StopRedis),
        }) = stop
        else {
            panic!("a fault next, got {stop:?}");
        };
        let report = shared::FaultReport::default();
        // The announcement to every watcher is not the answer.
        assert_eq!(
            run.on_message(&ServerMessage::Faults {
                request_id: None,
                report: report.clone()
            }),
            None
        );
        let read = run
            .on_message(&ServerMessage::Faults {
                request_id: Some(stop_id),
                report,
            })
            .unwrap();
        let refused = ServerMessage::Error {
            request_id: Some(request_id(&read)),
            message: "Redis failed".into(),
        };
        let next = run.on_message(&refused).unwrap();
        assert!(
            matches!(next, Command::Send(ClientMessage::Read { .. })),
            "{next:?}"
        );
        assert_eq!(run.observed.failed_reads, 1);
        assert_eq!(run.phase, Phase::Running);

        // Step 5: read, wait, then the database fails (a settings change).
        let (mut run, first) = past_set_up("failures", 5);
        let wait = run.on_message(&reply(request_id(&first), Outcome::Miss)).unwrap();
        assert_eq!(wait, Command::Wait(1_500));
        let Some(Command::Send(ClientMessage::UpdateSettings { settings })) = run.on_timer() else {
            panic!("the settings change follows the wait");
        };
        assert_eq!(settings.db_error_percent, 100);
        assert_eq!(settings.cache_ttl_secs, 1);
    }

    #[test]
    fn every_step_of_the_path_starts() {
        for (lesson, l) in LESSONS.iter().enumerate() {
            for step in 0..l.steps.len() {
                let (run, first) =
                    Run::start(Position { lesson, step }, &SandboxSettings::default(), names());
                assert_eq!(first, Command::Send(ClientMessage::Reset));
                assert!(run.total >= 3);
            }
        }
    }
}
