//! The guided lesson path: what each step says, which experiment its
//! button runs, what to look at, and the question the learner answers from
//! what the sandbox really did. Data only: the front end's lesson panel
//! draws it and its runner performs the experiments over the WebSocket;
//! the back end reads the titles for the embed pages.
//!
//! Every best practice is taught problem first: one step runs the
//! experiment with the remedy off, the next with it on, and the learner
//! compares the numbers the real Redis and database produced.

use crate::diagram::nodes;
use crate::{
    Defence, EvictionPolicy, HerdTiming, Kind, NodeId, Outcome, RaceFix, SandboxSettings, StampedePolicy,
    WriteStrategy,
};

/// A lesson: a few steps on one idea.
#[derive(Debug)]
pub struct Lesson {
    /// Its name in addresses (`?lesson=null-values`).
    pub id: &'static str,
    pub title: &'static str,
    /// What the learner can do afterwards (the tutorial's outcomes).
    pub outcome: &'static str,
    pub steps: &'static [Step],
}

/// One narrated frame of a lesson.
#[derive(Debug)]
pub struct Step {
    /// Its name in addresses (`?lesson=stampede&step=xfetch`) and in the
    /// learner's saved progress. Kept when steps are added or moved, so
    /// links, embeds and progress stay on the same step; numbers
    /// (`step=5`) are read too, but they move.
    pub id: &'static str,
    pub title: &'static str,
    /// Paragraphs, separated by a blank line.
    pub text: &'static str,
    /// The parts of the diagram this step needs; the others are hidden.
    pub parts: &'static [Part],
    /// The lab panel the step uses, if any.
    pub panel: Panel,
    /// How the sandbox is set up before the experiment, on top of
    /// [`baseline`].
    pub setup: &'static [Setting],
    /// The experiment, run after a reset of the sandbox.
    pub run: &'static [Action],
    /// The run button's label.
    pub run_label: &'static str,
    /// What to look at once it ran.
    pub notice: &'static [Pointer],
    /// The check question.
    pub check: Check,
}

impl Step {
    /// Whether the experiment changes the Redis server itself, which only
    /// a sandbox with a redis-server of its own may do.
    pub fn needs_own_redis(&self) -> bool {
        self.run
            .iter()
            .any(|a| matches!(a, Action::Memory { .. } | Action::Fill { .. }))
    }
}

/// A part of the flow diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Request, check Redis, hit, miss, database, store, answer.
    Read,
    /// Redis failed: carry on without it.
    Fallback,
    /// The write path.
    Write,
    /// Near caches, Pub/Sub and the instances.
    Near,
    /// The stampede lock.
    Lock,
    /// The lease against the stale-set race.
    Lease,
    /// The circuit breaker around Redis.
    Breaker,
}

impl Part {
    /// The diagram nodes of this part.
    pub fn nodes(self) -> &'static [NodeId] {
        match self {
            Part::Read => READ_NODES,
            Part::Fallback => FALLBACK_NODES,
            Part::Write => WRITE_NODES,
            Part::Near => NEAR_NODES,
            Part::Lock => LOCK_NODES,
            Part::Lease => LEASE_NODES,
            Part::Breaker => BREAKER_NODES,
        }
    }
}

const READ_NODES: &[NodeId] = &[
    nodes::REQUEST,
    nodes::CHECK_CACHE,
    nodes::RETURN_CACHED,
    nodes::QUERY_DATABASE,
    nodes::STORE_IN_CACHE,
    nodes::RETURN_LOADED,
];
const FALLBACK_NODES: &[NodeId] = &[nodes::CACHE_ERROR];
const WRITE_NODES: &[NodeId] = &[
    nodes::WRITE_REQUEST,
    nodes::WRITE_DATABASE,
    nodes::UPDATE_CACHE,
    nodes::RETURN_WRITTEN,
];
const NEAR_NODES: &[NodeId] = &[
    nodes::NEAR_CACHE,
    nodes::PUBLISH,
    nodes::INSTANCE_A,
    nodes::INSTANCE_B,
    nodes::INSTANCE_C,
];
const LOCK_NODES: &[NodeId] = &[nodes::LOCK];
const LEASE_NODES: &[NodeId] = &[nodes::LEASE];
const BREAKER_NODES: &[NodeId] = &[nodes::BREAKER];

/// Whether the diagram of a step with `parts` shows node `id`.
pub fn shows(parts: &[Part], id: &NodeId) -> bool {
    parts.iter().any(|p| p.nodes().contains(id))
}

/// The lab panel a step shows beside the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    None,
    Instances,
    Divergence,
    Race,
    Stampede,
    Patterns,
    /// The steady load and its charts.
    Load,
    /// The keys in Redis and their TTLs.
    Keys,
    /// Redis's own figures and the alerts.
    Redis,
    /// The troubleshooting checks and their puzzles.
    Diagnose,
    /// The memory limit, the eviction policy and fills past the limit.
    Memory,
    /// The value encodings compared.
    Serialization,
    /// Faults injected into Redis and the database, and the defences.
    Faults,
}

/// One setting a step changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Setting {
    CacheTtl(u64),
    NegativeCaching(bool),
    Write(WriteStrategy),
    Race(RaceFix),
    NearCache(bool),
    NearTtl(u64),
    DbLatency(u64),
    DbJitter(u64),
    /// The database's connections, and how long a query waits for one.
    DbConnections {
        connections: u64,
        wait_ms: u64,
    },
    /// Cache with no TTL at all (the mistake, to see it).
    ForgetTtl(bool),
    /// Fall back to the database when Redis fails (off: the naive
    /// application).
    Fallback(bool),
    /// The circuit breaker around Redis.
    Breaker(bool),
    /// Fail-safe's window past the TTL, in seconds (0: off).
    FailSafe(u64),
    /// Keep and resend invalidations Redis did not take.
    RetryInvalidations(bool),
    /// Send a command again when its connection turns out dead.
    ResendDropped(bool),
    /// Delete the cached copy before the database write (the wrong order).
    DeleteFirst(bool),
    /// Encrypt sensitive fields before caching them (off: in the clear).
    Seal(bool),
}

/// One thing an experiment does, in order; each waits for the previous
/// one's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Read a record `times` times in a row, on any instance.
    Read { kind: Kind, id: u64, times: u32 },
    /// Read a record on one instance (0 for A).
    ReadOn { instance: usize, kind: Kind, id: u64 },
    /// Rename a user, on instance A.
    Rename { id: u64, name: &'static str },
    /// Delete a user from the database, on instance A (a reset brings the
    /// row back).
    Delete { id: u64 },
    /// Compare every cached key with its row.
    CheckDivergence,
    /// The stale-set race, with the sandbox's race fix.
    Race { id: u64 },
    /// A herd of concurrent reads of one key.
    Herd {
        requests: u64,
        defence: Defence,
        timing: HerdTiming,
    },
    /// Cut (or restore) an instance's Pub/Sub subscription.
    Link { instance: usize, connected: bool },
    /// Wait, for a TTL to run out.
    Wait { ms: u32 },
    /// The same seeded workload through every caching pattern.
    ComparePatterns { seed: u64 },
    /// List the sandbox's keys in Redis, with their TTLs.
    InspectKeys,
    /// A steady load of reads over users (Zipf skew 1, seed 1), waited for
    /// until it ends.
    Load {
        per_second: u64,
        keys: u64,
        seconds: u64,
    },
    /// Put the sandbox back as it started (between two runs to compare).
    Reset,
    /// Give the sandbox's own redis-server a memory limit (KiB) and an
    /// eviction policy (5 samples).
    Memory {
        maxmemory_kb: u64,
        policy: EvictionPolicy,
    },
    /// Cache product 7's price and stock with these TTLs, change both in
    /// the database, and watch both keys until they show it.
    RelatedKeys { price_ttl_ms: u64, stock_ttl_ms: u64 },
    /// Measure user 42 under every value encoding, padded by this many
    /// bytes.
    CompareEncodings { padding_bytes: u64 },
    /// Break or mend the sandbox's Redis (through the fault proxy).
    Fault(crate::FaultAction),
    /// Rename a user while a reader reads it right after its cached copy
    /// is deleted, in the sandbox's write order.
    WriteOrder { id: u64 },
    /// From now on, this share of database queries fails (in percent).
    FailDatabase { percent: u64 },
    /// Fill the sandbox's own redis-server: `keys` values of `value_bytes`
    /// each, then `reads` reads hot-first (skew 1, seed 1).
    Fill {
        keys: u64,
        value_bytes: u64,
        reads: u64,
        with_ttl: bool,
        drift: bool,
    },
}

/// A pointer to what shows the effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pointer {
    pub text: &'static str,
    pub target: Target,
}

/// Where a pointer points; the page highlights it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A diagram node, by id.
    Node(&'static str),
    /// A panel or counter of the page, by its `data-spot` name.
    Element(&'static str),
}

/// The check question, answered by looking at what happened.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub question: &'static str,
    pub answer: Expect,
    /// Where to look if the answer was wrong.
    pub hint: &'static str,
}

/// The right answer, read from what the sandbox did.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// A count.
    Number(fn(&Observed) -> Option<u64>),
    /// One of a few choices.
    Choice {
        options: &'static [&'static str],
        correct: fn(&Observed) -> Option<usize>,
    },
}

/// What an experiment's run produced: the back end's own answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub reads: Vec<crate::ReadResult>,
    pub writes: Vec<crate::WriteResult>,
    pub herds: Vec<crate::HerdResult>,
    pub race: Option<crate::ScenarioResult>,
    pub divergence: Option<crate::DivergenceReport>,
    pub keys: Option<crate::KeyReport>,
    pub comparison: Option<crate::PatternComparison>,
    /// The memory limit and policy as the last change left them.
    pub memory: Option<crate::MemoryState>,
    /// The eviction lab's fills, in order.
    pub fills: Vec<crate::FillResult>,
    /// The latest serialization comparison.
    pub encodings: Option<crate::EncodingComparison>,
    /// The latest related-keys experiment.
    pub related: Option<crate::RelatedResult>,
    /// The sandbox's counters as the page last heard them.
    pub stats: Option<crate::Stats>,
    /// Reads the back end answered with an error (the naive application,
    /// a failing database).
    pub failed_reads: u64,
    /// The fault lab's report after the last fault.
    pub faults: Option<crate::FaultReport>,
    /// What the run's traces showed Redis holding for a user's phone
    /// number, in order ([`crate::Trace::cached_phone`]).
    pub cached_phones: Vec<String>,
}

impl Observed {
    /// Reads that went to the database (a miss, a fallback).
    pub fn database_reads(&self) -> u64 {
        self.reads.iter().filter(|r| !r.outcome.from_cache()).count() as u64
    }

    /// Reads answered from a cache (Redis or near).
    pub fn cache_answers(&self) -> u64 {
        self.reads.iter().filter(|r| r.outcome.from_cache()).count() as u64
    }

    fn last_herd(&self) -> Option<&crate::HerdResult> {
        self.herds.last()
    }

    /// The name the last read answered with.
    fn last_name(&self) -> Option<String> {
        let record = self.reads.last()?.record.as_ref()?;
        match record {
            crate::Record::User(user) => Some(user.name.clone()),
            crate::Record::Product(product) => Some(product.name.clone()),
        }
    }
}

/// How far the learner's answer matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The experiment has not run yet (or its answer is unknown).
    NotRun,
    /// Nothing was typed or chosen.
    Unanswered,
    Right,
    Wrong,
}

impl Check {
    /// Judges `given` (a number typed, or the index of a choice) against
    /// what `observed` shows.
    pub fn judge(&self, observed: Option<&Observed>, given: &str) -> Verdict {
        let Some(observed) = observed else {
            return Verdict::NotRun;
        };
        let expected = match self.answer {
            Expect::Number(f) => f(observed),
            Expect::Choice { correct, .. } => correct(observed).map(|i| i as u64),
        };
        let Some(expected) = expected else {
            return Verdict::NotRun;
        };
        if given.trim().is_empty() {
            return Verdict::Unanswered;
        }
        match given.trim().replace([',', '_', ' '], "").parse::<u64>() {
            Ok(n) if n == expected => Verdict::Right,
            _ => Verdict::Wrong,
        }
    }

    /// The right answer as the learner would say it.
    pub fn answer_text(&self, observed: &Observed) -> Option<String> {
        match self.answer {
            Expect::Number(f) => f(observed).map(|n| n.to_string()),
            Expect::Choice { options, correct } => correct(observed)
                .and_then(|i| options.get(i))
                .map(|s| s.to_string()),
        }
    }
}

/// The settings every lesson starts from: the tutorial's figures, every
/// defence off (but for resending a command whose connection was dead:
/// without it, whether the first read after an outage reaches Redis would
/// depend on timing; the failures lesson's last two steps switch it
/// themselves), a roomy database (no queue for
/// its connections), so each step turns on only what it teaches. Fields a lesson
/// does not touch (the Redis timeout, the key prefix) stay as they are.
pub fn baseline(current: &SandboxSettings) -> SandboxSettings {
    SandboxSettings {
        cache_ttl_secs: 300,
        null_ttl_secs: 30,
        db_latency_ms: 100,
        write_strategy: WriteStrategy::DeleteOnWrite,
        race_fix: RaceFix::None,
        db_jitter_percent: 0,
        near_cache: false,
        near_ttl_secs: 30,
        ttl_jitter_percent: 0,
        stampede: StampedePolicy::None,
        negative_caching: true,
        forget_ttl: false,
        mismatched_keys: false,
        value_encoding: crate::ValueEncoding::Json,
        value_padding_bytes: 0,
        product_ttl_secs: 0,
        db_connections: 100,
        db_wait_ms: 30_000,
        fallback: true,
        breaker: false,
        fail_safe_secs: 0,
        retry_invalidations: false,
        // Not a lesson's subject: the first read after an outage reaches
        // Redis, so the steps that stop and start it show what they teach.
        resend_dropped: true,
        db_error_percent: 0,
        delete_first: false,
        seal_sensitive: true,
        ..current.clone()
    }
}

/// The baseline with a step's settings applied.
pub fn settings_for(step: &Step, current: &SandboxSettings) -> SandboxSettings {
    let mut s = baseline(current);
    for setting in step.setup {
        match *setting {
            Setting::CacheTtl(secs) => s.cache_ttl_secs = secs,
            Setting::NegativeCaching(on) => s.negative_caching = on,
            Setting::Write(strategy) => s.write_strategy = strategy,
            Setting::Race(fix) => s.race_fix = fix,
            Setting::NearCache(on) => s.near_cache = on,
            Setting::NearTtl(secs) => s.near_ttl_secs = secs,
            Setting::DbLatency(ms) => s.db_latency_ms = ms,
            Setting::DbJitter(percent) => s.db_jitter_percent = percent,
            Setting::DbConnections { connections, wait_ms } => {
                s.db_connections = connections;
                s.db_wait_ms = wait_ms;
            }
            Setting::ForgetTtl(on) => s.forget_ttl = on,
            Setting::Fallback(on) => s.fallback = on,
            Setting::Breaker(on) => s.breaker = on,
            Setting::FailSafe(secs) => s.fail_safe_secs = secs,
            Setting::RetryInvalidations(on) => s.retry_invalidations = on,
            Setting::ResendDropped(on) => s.resend_dropped = on,
            Setting::DeleteFirst(on) => s.delete_first = on,
            Setting::Seal(on) => s.seal_sensitive = on,
        }
    }
    s
}

/// A place in the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Index into [`LESSONS`].
    pub lesson: usize,
    /// Index into the lesson's steps.
    pub step: usize,
}

impl Position {
    pub fn lesson(self) -> &'static Lesson {
        &LESSONS[self.lesson]
    }

    pub fn step(self) -> &'static Step {
        &LESSONS[self.lesson].steps[self.step]
    }

    /// From an address's `lesson` and `step`: the step's id
    /// (`step=xfetch`), or its number (`step=5`, as older links have it);
    /// the first step when `step` is missing or names no step of the
    /// lesson ([`Position::names_no_step`] tells the page to say so). An
    /// unknown lesson is `None`.
    pub fn from_query(lesson: &str, step: Option<&str>) -> Option<Position> {
        let index = LESSONS.iter().position(|l| l.id == lesson)?;
        Some(Position {
            lesson: index,
            step: step.and_then(|s| find_step(LESSONS[index].steps, s)).unwrap_or(0),
        })
    }

    /// Whether an address names a lesson and a `step` that is none of its
    /// steps (a typo, a number past its last step, an id since renamed).
    pub fn names_no_step(lesson: &str, step: Option<&str>) -> bool {
        let Some(lesson) = LESSONS.iter().find(|l| l.id == lesson) else {
            return false;
        };
        step.is_some_and(|s| !s.trim().is_empty() && find_step(lesson.steps, s).is_none())
    }

    /// `lesson=ID&step=STEP-ID`, for an address.
    pub fn query(self) -> String {
        format!("lesson={}&step={}", self.lesson().id, self.step().id)
    }

    /// The next step, into the next lesson at the end of one.
    pub fn next(self) -> Option<Position> {
        if self.step + 1 < self.lesson().steps.len() {
            Some(Position {
                step: self.step + 1,
                ..self
            })
        } else if self.lesson + 1 < LESSONS.len() {
            Some(Position {
                lesson: self.lesson + 1,
                step: 0,
            })
        } else {
            None
        }
    }

    /// The previous step, into the previous lesson's last one.
    pub fn back(self) -> Option<Position> {
        if self.step > 0 {
            Some(Position {
                step: self.step - 1,
                ..self
            })
        } else if self.lesson > 0 {
            let lesson = self.lesson - 1;
            Some(Position {
                lesson,
                step: LESSONS[lesson].steps.len() - 1,
            })
        } else {
            None
        }
    }

    /// `LESSON-ID:STEP-ID`, as kept in the learner's progress.
    pub fn key(self) -> String {
        format!("{}:{}", self.lesson().id, self.step().id)
    }
}

/// The index of the step `named` by its id, or by its number (from 1).
fn find_step(steps: &[Step], named: &str) -> Option<usize> {
    let named = named.trim();
    steps.iter().position(|s| s.id == named).or_else(|| {
        let number = named.parse::<usize>().ok()?;
        (1..=steps.len()).contains(&number).then(|| number - 1)
    })
}

/// The steps a learner has answered, kept in the browser
/// (`localStorage`, one line: `basics:1 basics:2 ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    done: Vec<String>,
}

impl Progress {
    /// Reads what [`Progress::encode`] wrote; anything unknown is dropped,
    /// so a stored line from an older path does no harm. Steps kept by
    /// number (`basics:2`, before steps had ids) are read as today's step
    /// of that number.
    pub fn decode(text: &str) -> Progress {
        let known = |key: &str| {
            let (lesson, step) = key.split_once(':')?;
            let at = Position::from_query(lesson, Some(step))?;
            (!step.trim().is_empty() && !Position::names_no_step(lesson, Some(step))).then_some(at)
        };
        let mut progress = Progress { done: Vec::new() };
        for at in text.split_whitespace().filter_map(known) {
            progress.insert(at.key());
        }
        progress
    }

    pub fn encode(&self) -> String {
        self.done.join(" ")
    }

    pub fn mark(&mut self, at: Position) {
        self.insert(at.key());
    }

    /// Puts `key` in its place in the sorted list, once.
    fn insert(&mut self, key: String) {
        if let Err(at) = self.done.binary_search(&key) {
            self.done.insert(at, key);
        }
    }

    pub fn is_done(&self, at: Position) -> bool {
        self.done.contains(&at.key())
    }

    /// How many of a lesson's steps are answered.
    pub fn lesson_done(&self, lesson: usize) -> usize {
        (0..LESSONS[lesson].steps.len())
            .filter(|&step| self.is_done(Position { lesson, step }))
            .count()
    }

    /// The first step not answered yet, where "continue the path" goes.
    pub fn first_open(&self) -> Position {
        let mut at = Position { lesson: 0, step: 0 };
        loop {
            if !self.is_done(at) {
                return at;
            }
            match at.next() {
                Some(next) => at = next,
                None => return Position { lesson: 0, step: 0 },
            }
        }
    }
}

// The answers, read from what the back end reported.

fn keys_without_ttl(o: &Observed) -> Option<u64> {
    o.keys.as_ref().map(|k| k.without_ttl)
}

fn last_fill(o: &Observed) -> Option<&crate::FillResult> {
    o.fills.last()
}

fn refused_stores(o: &Observed) -> Option<u64> {
    last_fill(o).map(|f| f.store_failures)
}

fn evicted_keys(o: &Observed) -> Option<u64> {
    last_fill(o).map(|f| f.evicted)
}

/// 1 when the last fill refused stores without evicting anything (no key
/// could go), 0 when it evicted.
fn refused_rather_than_evicted(o: &Observed) -> Option<usize> {
    last_fill(o).map(|f| usize::from(f.evicted == 0 && f.store_failures > 0))
}

/// Of the last two fills, the one that kept more hits (0: the first).
fn better_of_two_fills(o: &Observed) -> Option<usize> {
    match o.fills.as_slice() {
        [.., first, second] => Some(usize::from(second.hits > first.hits)),
        _ => None,
    }
}

/// Whether the phone number the run cached could be read in Redis as it
/// is: 0 (yes, in the clear) or 1 (no, sealed).
fn phone_in_the_clear(o: &Observed) -> Option<usize> {
    let held = o.cached_phones.first()?;
    Some(if crate::entity::looks_sealed(held) { 1 } else { 0 })
}

/// What the read after a delete returned: 0 (the deleted record) or 1
/// (no such record).
fn deleted_record_served(o: &Observed) -> Option<usize> {
    if o.writes.is_empty() {
        return None;
    }
    Some(if o.reads.last()?.found { 0 } else { 1 })
}

/// The sandbox's misses, as its counters say (a load's reads included).
fn counted_misses(o: &Observed) -> Option<u64> {
    o.stats.map(|s| s.misses)
}

/// The step's own reads that a cache answered.
fn redis_answers(o: &Observed) -> Option<u64> {
    (!o.reads.is_empty()).then(|| o.cache_answers())
}

/// Reads the cache answered, by the sandbox's counters.
fn cache_hits(o: &Observed) -> Option<u64> {
    o.stats.map(|s| s.hits + s.null_hits)
}

/// Looks at the related keys that found one changed and the other not.
fn mismatched_looks(o: &Observed) -> Option<u64> {
    let r = o.related.as_ref()?;
    Some(r.samples.iter().filter(|s| s.mismatched()).count() as u64)
}

/// Bytes gzip saved against plain JSON in the latest comparison.
fn gzip_saved(o: &Observed) -> Option<u64> {
    let c = o.encodings.as_ref()?;
    let bytes = |e: crate::ValueEncoding| c.rows.iter().find(|r| r.encoding == e).map(|r| r.bytes);
    Some(bytes(crate::ValueEncoding::Json)?.saturating_sub(bytes(crate::ValueEncoding::CompressedJson)?))
}

/// The encoding (in [`crate::ValueEncoding::ALL`]'s order) whose hit, the
/// GET and the decoding, cost least: the one the panel's summary names.
fn cheapest_hit(o: &Observed) -> Option<usize> {
    let cheapest = o.encodings.as_ref()?.cheapest_hit()?;
    crate::ValueEncoding::ALL
        .iter()
        .position(|e| *e == cheapest.encoding)
}

fn database_reads(o: &Observed) -> Option<u64> {
    (!o.reads.is_empty()).then(|| o.database_reads())
}

fn herd_loads(o: &Observed) -> Option<u64> {
    o.last_herd().map(|h| h.database_loads)
}

fn herd_waited(o: &Observed) -> Option<u64> {
    o.last_herd().map(|h| h.waited)
}

fn herd_failed(o: &Observed) -> Option<u64> {
    o.last_herd().map(|h| h.failed)
}

fn herd_early(o: &Observed) -> Option<u64> {
    o.last_herd().map(|h| h.early_recomputes)
}

fn herd_peak(o: &Observed) -> Option<u64> {
    o.last_herd().map(|h| h.peak_loads_per_100ms)
}

fn failed_reads(o: &Observed) -> Option<u64> {
    Some(o.failed_reads)
}

fn fallbacks(o: &Observed) -> Option<u64> {
    (!o.reads.is_empty()).then(|| o.reads.iter().filter(|r| r.outcome == Outcome::Fallback).count() as u64)
}

/// Where the reads after the first were answered: 0 Redis, 1 the
/// database, 2 nowhere (they failed).
fn outage_answers(o: &Observed) -> Option<usize> {
    if o.failed_reads > 0 {
        return Some(2);
    }
    let during = o.reads.get(1..)?;
    if during.is_empty() {
        return None;
    }
    Some(usize::from(during.iter().all(|r| !r.outcome.from_cache())))
}

/// Instance A's breaker after the last fault: 0 closed, 1 open, 2 half-open.
fn breaker_a(o: &Observed) -> Option<usize> {
    let a = o.faults.as_ref()?.breakers.first()?;
    BREAKER_STATES.iter().position(|s| *s == a.state)
}

/// The last read: 0 failed, 1 answered fail-safe, 2 anything else.
fn fail_safe_answer(o: &Observed) -> Option<usize> {
    if o.failed_reads > 0 {
        return Some(0);
    }
    Some(if o.reads.last()?.outcome == Outcome::FailSafe {
        1
    } else {
        2
    })
}

fn stale_keys(o: &Observed) -> Option<u64> {
    o.divergence.as_ref().map(|d| d.stale() as u64)
}

/// 0: the old name, 1: the new one.
fn which_name(o: &Observed) -> Option<usize> {
    let written = o.writes.last()?.record.as_ref().map(|r| match r {
        crate::Record::User(user) => user.name.clone(),
        crate::Record::Product(product) => product.name.clone(),
    })?;
    Some(usize::from(o.last_name()? == written))
}

/// 0: Redis serves the old row, 1: nothing stale is cached.
fn race_outcome(o: &Observed) -> Option<usize> {
    o.race.as_ref().map(|r| usize::from(!r.stale))
}

/// 0: the database, 1: Redis.
fn last_source(o: &Observed) -> Option<usize> {
    o.reads.last().map(|r| {
        usize::from(matches!(
            r.outcome,
            Outcome::Hit | Outcome::NullHit | Outcome::NearHit
        ))
    })
}

/// The index (in [`PATTERNS`]) of the pattern with the fastest writes.
fn fastest_writes(o: &Observed) -> Option<usize> {
    let comparison = o.comparison.as_ref()?;
    let fastest = comparison.rows.iter().min_by_key(|r| r.write_avg_us)?;
    crate::Pattern::ALL.iter().position(|p| *p == fastest.pattern)
}

fn unsaved_writes(o: &Observed) -> Option<u64> {
    o.comparison
        .as_ref()?
        .row(crate::Pattern::WriteBehind)
        .map(|r| r.most_unsaved)
}

const PATTERNS: &[&str] = &["cache-aside", "read-through", "write-through", "write-behind"];
const SOURCES: &[&str] = &["The database", "Redis"];
const NAMES: &[&str] = &["The old name", "The new name"];
const OUTAGE_ANSWERS: &[&str] = &["From Redis", "From the database", "Nowhere: they failed"];
const BREAKER_STATES: &[&str] = &["closed", "open", "half-open"];
const PHONE_READABLE: &[&str] = &["Yes: it is there in the clear", "No: it is encrypted"];
const AFTER_DELETE: &[&str] = &["The deleted user's record, from Redis", "No such record"];
/// Cache user 42, delete the user, read again.
const READ_DELETE_READ: &[Action] = &[
    Action::Read {
        kind: Kind::Users,
        id: 42,
        times: 1,
    },
    Action::Delete { id: 42 },
    Action::Read {
        kind: Kind::Users,
        id: 42,
        times: 1,
    },
];
const FAIL_SAFE_ANSWERS: &[&str] = &["An error", "The expired copy, marked fail-safe", "A fresh row"];
const FAULT_PARTS: &[Part] = &[Part::Read, Part::Fallback, Part::Breaker];
const FAULT_WRITES: &[Part] = &[Part::Read, Part::Fallback, Part::Write];
/// Read user 42, stop Redis, read it three times, start Redis again.
const OUTAGE_RUN: &[Action] = &[
    Action::Read {
        kind: Kind::Users,
        id: USER,
        times: 1,
    },
    Action::Fault(crate::FaultAction::StopRedis),
    Action::Read {
        kind: Kind::Users,
        id: USER,
        times: 3,
    },
    Action::Fault(crate::FaultAction::StartRedis { empty: false }),
];
const ON_A: Action = Action::ReadOn {
    instance: 0,
    kind: Kind::Users,
    id: USER,
};
/// Read user 42 on instance A, hang Redis, read it eight times on A, let
/// Redis answer again.
const HANG_RUN: &[Action] = &[
    ON_A,
    Action::Fault(crate::FaultAction::HangRedis { hung: true }),
    ON_A,
    ON_A,
    ON_A,
    ON_A,
    ON_A,
    ON_A,
    ON_A,
    ON_A,
    Action::Fault(crate::FaultAction::HangRedis { hung: false }),
];
/// Cache product 5, let its 1 s TTL pass, fail the database, read again.
const DATABASE_DOWN_RUN: &[Action] = &[
    Action::Read {
        kind: Kind::Products,
        id: 5,
        times: 1,
    },
    Action::Wait { ms: 1_500 },
    Action::FailDatabase { percent: 100 },
    Action::Read {
        kind: Kind::Products,
        id: 5,
        times: 1,
    },
];
/// Cut the connections once (the first fault puts the fault proxy in
/// place), read user 42 on A three times (by the third it is cached and A
/// has a live connection), cut the connections, read on A again.
const CUT_RUN: &[Action] = &[
    Action::Fault(crate::FaultAction::CutConnections),
    ON_A,
    ON_A,
    ON_A,
    Action::Fault(crate::FaultAction::CutConnections),
    ON_A,
];
/// Cache user 7, stop Redis, rename the user on A, start Redis with its
/// data, read on A, compare cache and database.
const WRITE_DURING_OUTAGE_RUN: &[Action] = &[
    Action::Read {
        kind: Kind::Users,
        id: 7,
        times: 1,
    },
    Action::Fault(crate::FaultAction::StopRedis),
    Action::Rename {
        id: 7,
        name: "Renamed during the outage",
    },
    Action::Fault(crate::FaultAction::StartRedis { empty: false }),
    Action::ReadOn {
        instance: 0,
        kind: Kind::Users,
        id: 7,
    },
    Action::CheckDivergence,
];
/// Whether Redis serves the old row: asked this way because a race that
/// went right may leave the row, nothing, or only a version marker.
const RACE: &[&str] = &["Yes: Redis holds the old name", "No: nothing stale is cached"];

const READ_PATH: &[Part] = &[Part::Read];
const FORGOTTEN_TTL_RUN: &[Action] = &[
    Action::Read {
        kind: Kind::Users,
        id: 1,
        times: 1,
    },
    Action::Read {
        kind: Kind::Users,
        id: 2,
        times: 1,
    },
    Action::Read {
        kind: Kind::Users,
        id: 3,
        times: 1,
    },
    Action::InspectKeys,
];
const WRITES: &[Part] = &[Part::Read, Part::Write];
const NEAR: &[Part] = &[Part::Read, Part::Write, Part::Near];
const RACE_PARTS: &[Part] = &[Part::Read, Part::Write, Part::Lease];
const HERD_PARTS: &[Part] = &[Part::Read, Part::Lock];

/// A user who is there in every sandbox's seed data.
const USER: u64 = 42;
/// The eviction lesson's limit: an empty redis-server uses about 1 MiB, so
/// 2 MiB leaves room for about 900 values of 1 KiB.
const SMALL_REDIS_KB: u64 = 2 * 1024;
/// About three times what fits in [`SMALL_REDIS_KB`].
const OVERFILL: Action = Action::Fill {
    keys: 3_000,
    value_bytes: 1_024,
    reads: 2_000,
    with_ttl: false,
    drift: false,
};
/// A workload to compare policies on: the same fill, twice, from an
/// empty server each time.
const fn compare(first: EvictionPolicy, second: EvictionPolicy, drift: bool) -> [Action; 5] {
    let fill = Action::Fill {
        keys: 6_000,
        value_bytes: 1_024,
        reads: 12_000,
        with_ttl: false,
        drift,
    };
    [
        Action::Memory {
            maxmemory_kb: 3 * 1024,
            policy: first,
        },
        fill,
        Action::Reset,
        Action::Memory {
            maxmemory_kb: 3 * 1024,
            policy: second,
        },
        fill,
    ]
}
const RANDOM_THEN_LFU: [Action; 5] =
    compare(EvictionPolicy::AllkeysRandom, EvictionPolicy::AllkeysLfu, false);
const LFU_THEN_LRU_MOVING: [Action; 5] =
    compare(EvictionPolicy::AllkeysLfu, EvictionPolicy::AllkeysLru, true);
/// The near-cache lesson's lost message: A and B cache user 9, B's
/// subscription is cut, A renames the user, B reads (its stale near copy),
/// B's link comes back; then (the recovery step only) B reads again.
const CUT_B_THEN_READ: [Action; 7] = {
    const ON_A: Action = Action::ReadOn {
        instance: 0,
        kind: Kind::Users,
        id: 9,
    };
    const ON_B: Action = Action::ReadOn {
        instance: 1,
        kind: Kind::Users,
        id: 9,
    };
    [
        ON_A,
        ON_B,
        Action::Link {
            instance: 1,
            connected: false,
        },
        Action::Rename {
            id: 9,
            name: "Renamed by the lesson",
        },
        ON_B,
        Action::Link {
            instance: 1,
            connected: true,
        },
        ON_B,
    ]
};
/// A user id no sandbox has.
const NOBODY: u64 = 990_000;

/// The path, in order.
pub const LESSONS: &[Lesson] = &[
    Lesson {
        id: "basics",
        title: "The read path",
        outcome: "Explain cache-aside and trace a read through a miss and a hit.",
        steps: &[
            Step {
                id: "cold-read",
                title: "Cache-aside in one read",
                text: "In cache-aside the application, not the cache, does the work. To read a record it asks Redis first. If Redis has nothing, the application reads the database, puts a copy in Redis with an expiry time, and answers.\n\nThe cache never talks to the database itself, and a write goes straight to the database. That keeps the pattern simple, and an application that falls back to the database when Redis is down keeps answering, only slower (a write during the outage has its own trap: see the last lesson). It suits data read far more often than written that may be a little out of date; it is the wrong choice for write-heavy data, for data that must never be stale, and for a small data set that could simply live in memory.\n\nThe button empties this sandbox's cache and reads user 42 once. The sandbox's database waits 100 ms per query, like a database across a network.",
                parts: READ_PATH,
                panel: Panel::None,
                setup: &[],
                run: &[Action::Read { kind: Kind::Users, id: USER, times: 1 }],
                run_label: "Read user 42 from a cold cache",
                notice: &[
                    Pointer { text: "The GET found nothing: the token turns toward the database.", target: Target::Node("check_cache") },
                    Pointer { text: "The database box shows the SQL and its measured time.", target: Target::Node("query_database") },
                    Pointer { text: "The SET stores the row with its TTL (EX 300).", target: Target::Node("store_in_cache") },
                ],
                check: Check {
                    question: "How many times did that read query the database?",
                    answer: Expect::Number(database_reads),
                    hint: "Count the visits to the blue database box in the step list.",
                },
            },
            Step {
                id: "second-read",
                title: "The second read is a hit",
                text: "Now the key is in Redis. The same read again costs one GET and no SQL at all: the answer comes straight from memory.\n\nThe button empties the cache and reads user 42 twice in a row.",
                parts: READ_PATH,
                panel: Panel::None,
                setup: &[],
                run: &[Action::Read { kind: Kind::Users, id: USER, times: 2 }],
                run_label: "Read user 42 twice",
                notice: &[
                    Pointer { text: "The second trace stops at \"Return cached\".", target: Target::Node("return_cached") },
                    Pointer { text: "Compare the two reads' times in the log.", target: Target::Element("log") },
                ],
                check: Check {
                    question: "Where did the second read's answer come from?",
                    answer: Expect::Choice { options: SOURCES, correct: last_source },
                    hint: "Look at the last entry of the trace log: hit or miss?",
                },
            },
            Step {
                id: "savings",
                title: "What the cache saves",
                text: "One miss pays for many hits. Ten reads of a popular record cost one database query; the other nine answer in well under a millisecond on this machine, against 100 ms or more for the query.\n\nThe counters on the right add it up: the hit ratio, the average read with the cache, and what every read would cost without one.",
                parts: READ_PATH,
                panel: Panel::None,
                setup: &[],
                run: &[Action::Read { kind: Kind::Users, id: USER, times: 10 }],
                run_label: "Read user 42 ten times",
                notice: &[
                    Pointer { text: "The hit ratio and the speed-up are measured, not computed from assumptions.", target: Target::Element("stats") },
                ],
                check: Check {
                    question: "Of the ten reads, how many reached the database?",
                    answer: Expect::Number(database_reads),
                    hint: "The misses counter of the sandbox panel.",
                },
            },
            Step {
                id: "hit-ratio",
                title: "Real traffic: the hit ratio settles",
                text: "An application does not read one record ten times: it reads many, and a few of them far more often than the rest. That skew is why caching pays: the popular records stay cached, the rare ones miss.\n\nThis step sends 200 reads a second for 10 seconds over 100 users, drawn so that the hottest fifth get about 70 % of the reads. Watch the hit ratio climb as the hot users get cached, and the database queries fall.",
                parts: READ_PATH,
                panel: Panel::Load,
                setup: &[],
                run: &[Action::Load { per_second: 200, keys: 100, seconds: 10 }],
                run_label: "Run 10 s of skewed traffic",
                notice: &[
                    Pointer { text: "The hit ratio chart climbs, the database queries chart falls.", target: Target::Element("load") },
                    Pointer { text: "The latency bars: hits on the left, database reads far to the right.", target: Target::Element("load") },
                ],
                check: Check {
                    question: "Of the 2,000 reads, how many did the cache answer?",
                    answer: Expect::Number(cache_hits),
                    hint: "The hits counter of the sandbox panel (its hit ratio is this over 2,000).",
                },
            },
        ],
    },
    Lesson {
        id: "ttl",
        title: "Time to live",
        outcome: "Choose a TTL, see a key expire on a real Redis, and see what forgetting it does.",
        steps: &[Step {
            id: "expiry",
            title: "Keys expire",
            text: "Every value is stored with an expiry (SET ... EX). When the time is up Redis drops the key by itself, and the next read misses and loads a fresh copy. The TTL is the longest a cached copy can be out of date when nobody invalidates it, and it keeps keys nobody reads from piling up.\n\nChoose it by how stale each kind of data may be: a few minutes for data that must stay close to the truth (1 to 5) and for sessions (5 to 15), an hour or a few for product pages, a day or more for reference data that hardly changes. Below a second the cache mostly misses; beyond a week, a copy that missed its invalidation stays wrong for days.\n\nThis step sets the TTL to 3 seconds, reads user 42 twice, waits 3.5 seconds, and reads it again.",
            parts: READ_PATH,
            panel: Panel::None,
            setup: &[Setting::CacheTtl(3)],
            run: &[
                Action::Read { kind: Kind::Users, id: USER, times: 2 },
                Action::Wait { ms: 3_500 },
                Action::Read { kind: Kind::Users, id: USER, times: 1 },
            ],
            run_label: "Read, wait for the TTL, read again",
            notice: &[
                Pointer { text: "The SET carries EX 3.", target: Target::Node("store_in_cache") },
                Pointer { text: "The third read misses again: the key had expired.", target: Target::Element("log") },
            ],
            check: Check {
                question: "How many of the three reads went to the database?",
                answer: Expect::Number(database_reads),
                hint: "Count the misses in the trace log.",
            },
        },
        Step {
            id: "forgotten-ttl",
            title: "The problem: a cache that only grows",
            text: "Forget the TTL on a SET and the key never expires. Nothing goes wrong at first; then every record ever read stays in Redis until memory runs out, and a copy nobody invalidates stays wrong forever.\n\nThis step caches with no TTL, reads three users, and lists the sandbox's keys in Redis.",
            parts: READ_PATH,
            panel: Panel::Keys,
            setup: &[Setting::ForgetTtl(true)],
            run: FORGOTTEN_TTL_RUN,
            run_label: "Read three users with no TTL, then list the keys",
            notice: &[
                Pointer { text: "The SET has no EX.", target: Target::Node("store_in_cache") },
                Pointer { text: "The keys card flags keys that never expire.", target: Target::Element("keys") },
            ],
            check: Check {
                question: "How many of the sandbox's keys have no TTL?",
                answer: Expect::Number(keys_without_ttl),
                hint: "The warning above the keys table counts them.",
            },
        },
        Step {
            id: "ttl-fix",
            title: "The fix: every key gets a TTL",
            text: "The same reads with the TTL back on. Each key now counts down and goes by itself, and the audit finds nothing.",
            parts: READ_PATH,
            panel: Panel::Keys,
            setup: &[],
            run: FORGOTTEN_TTL_RUN,
            run_label: "Read three users with a TTL, then list the keys",
            notice: &[Pointer { text: "Every key shows its TTL counting down.", target: Target::Element("keys") }],
            check: Check {
                question: "How many keys have no TTL now?",
                answer: Expect::Number(keys_without_ttl),
                hint: "The keys table: is any TTL \"none\"?",
            },
        },
        Step {
            id: "related-apart",
            title: "The problem: related keys with different TTLs",
            text: "Data that belongs together often lives under several keys: a product's price and its stock, a user's profile and preferences. Give them different TTLs and, after a change, one key shows it long before the other: a reader sees the new price with the old stock.\n\nThis step caches product 7's price for 1 s and its stock for 4 s, changes both in the database with no invalidation, and reads both keys every 250 ms until both show the change.",
            parts: READ_PATH,
            panel: Panel::Keys,
            setup: &[],
            run: &[Action::RelatedKeys { price_ttl_ms: 1_000, stock_ttl_ms: 4_000 }],
            run_label: "Change price and stock, watch the two keys",
            notice: &[Pointer { text: "The red cells: one key changed, the other not yet.", target: Target::Element("related") }],
            check: Check {
                question: "In how many of the 250 ms looks did a reader see one key changed and not the other?",
                answer: Expect::Number(mismatched_looks),
                hint: "Count the red cells.",
            },
        },
        Step {
            id: "related-together",
            title: "The fix: one TTL for related data",
            text: "The same change with both keys cached at the same moment with one TTL (2 s): they expire together and come back together. (Caching the product as one value removes the question altogether.)",
            parts: READ_PATH,
            panel: Panel::Keys,
            setup: &[],
            run: &[Action::RelatedKeys { price_ttl_ms: 2_000, stock_ttl_ms: 2_000 }],
            run_label: "The same with one TTL for both",
            notice: &[Pointer { text: "No red cell, or one at the very moment both expire.", target: Target::Element("related") }],
            check: Check {
                question: "In how many looks did the two keys disagree this time?",
                answer: Expect::Number(mismatched_looks),
                hint: "Count the red cells.",
            },
        }],
    },
    Lesson {
        id: "memory",
        title: "Memory and eviction",
        outcome: "Give Redis a memory limit, pick an eviction policy for a cache, and see what each policy keeps or refuses when the cache outgrows memory.",
        steps: &[
            Step {
                id: "noeviction",
                title: "The problem: a full Redis that evicts nothing",
                text: "A busy cache can grow until it meets its memory limit. What happens there is the eviction policy's call. With noeviction, Redis refuses every write that needs more memory: the application still answers, from the database, but the cache has stopped caching anything new.\n\nThis step needs a redis-server of its own. It gives it a 2 MB limit and noeviction, then stores 3,000 values of 1 KB (about three times what fits) the cache-aside way: each read misses and stores.",
                parts: READ_PATH,
                panel: Panel::Memory,
                setup: &[],
                run: &[Action::Memory { maxmemory_kb: SMALL_REDIS_KB, policy: EvictionPolicy::Noeviction }, OVERFILL],
                run_label: "Fill a 2 MB Redis under noeviction",
                notice: &[
                    Pointer { text: "The refused column: stores Redis turned down (out of memory).", target: Target::Element("memory") },
                    Pointer { text: "The reads still answered: a full cache is not a reason to fail.", target: Target::Node("return_loaded") },
                ],
                check: Check {
                    question: "How many stores did Redis refuse?",
                    answer: Expect::Number(refused_stores),
                    hint: "The refused column of the fills table.",
                },
            },
            Step {
                id: "allkeys-lru",
                title: "The fix: let Redis evict (allkeys-lru)",
                text: "The usual choice for a cache is allkeys-lru: when memory is full, Redis drops a key that has gone unused the longest, and the write goes through. Redis approximates this by sampling a few keys (maxmemory-samples) rather than keeping an exact order.\n\nThe same fill as before, under allkeys-lru.",
                parts: READ_PATH,
                panel: Panel::Memory,
                setup: &[],
                run: &[Action::Memory { maxmemory_kb: SMALL_REDIS_KB, policy: EvictionPolicy::AllkeysLru }, OVERFILL],
                run_label: "Fill a 2 MB Redis under allkeys-lru",
                notice: &[Pointer { text: "Nothing refused; the evicted column counts the keys that made room.", target: Target::Element("memory") }],
                check: Check {
                    question: "How many keys did Redis evict to make room?",
                    answer: Expect::Number(evicted_keys),
                    hint: "The evicted column of the newest fill.",
                },
            },
            Step {
                id: "volatile-trap",
                title: "The trap: a volatile policy and keys with no TTL",
                text: "The volatile-* policies only ever evict keys that have a TTL; they suit a Redis that also holds data which must never go. If the cache forgets its TTLs, there is nothing they may evict, and they behave exactly like noeviction.\n\nThe same fill under volatile-lru, with values stored without a TTL.",
                parts: READ_PATH,
                panel: Panel::Memory,
                setup: &[],
                run: &[Action::Memory { maxmemory_kb: SMALL_REDIS_KB, policy: EvictionPolicy::VolatileLru }, OVERFILL],
                run_label: "Fill under volatile-lru, no TTLs",
                notice: &[Pointer { text: "Evicted stays at 0 and refused climbs: no key was a candidate.", target: Target::Element("memory") }],
                check: Check {
                    question: "What did volatile-lru do once memory was full?",
                    answer: Expect::Choice {
                        options: &["It evicted the least recently used keys", "It refused stores: no key had a TTL"],
                        correct: refused_rather_than_evicted,
                    },
                    hint: "Compare the evicted and refused columns of the newest fill.",
                },
            },
            Step {
                id: "steady-popularity",
                title: "Which keys to keep: popularity that stays",
                text: "Which key goes decides the hit ratio. With the same keys popular all along, counting uses (LFU) picks the cold ones best; evicting at random sometimes drops a hot key.\n\nThis step fills 6,000 values into 3 MB and reads 12,000 times, hottest keys most often, first under allkeys-random, then (from an empty server) under allkeys-lfu.",
                parts: READ_PATH,
                panel: Panel::Memory,
                setup: &[],
                run: &RANDOM_THEN_LFU,
                run_label: "Compare allkeys-random with allkeys-lfu",
                notice: &[Pointer { text: "The hit ratios in the last two rows of the fills table.", target: Target::Element("memory") }],
                check: Check {
                    question: "Which policy kept more hits?",
                    answer: Expect::Choice {
                        options: &["allkeys-random", "allkeys-lfu"],
                        correct: better_of_two_fills,
                    },
                    hint: "The hit ratios in the last two rows of the fills table.",
                },
            },
            Step {
                id: "moving-popularity",
                title: "Which keys to keep: popularity that moves",
                text: "Real popularity moves: today's posts, this hour's prices. LFU keeps counting what used to be hot, while LRU follows what was used lately.\n\nThe same comparison with moving popularity (the newest keys are the hot ones), first under allkeys-lfu, then under allkeys-lru. Redis samples, so runs differ a little; the live numbers decide the answer.",
                parts: READ_PATH,
                panel: Panel::Memory,
                setup: &[],
                run: &LFU_THEN_LRU_MOVING,
                run_label: "Compare allkeys-lfu with allkeys-lru, popularity moving",
                notice: &[Pointer { text: "Compare the two hit ratios of this run.", target: Target::Element("memory") }],
                check: Check {
                    question: "Which policy kept more hits this time?",
                    answer: Expect::Choice {
                        options: &["allkeys-lfu", "allkeys-lru"],
                        correct: better_of_two_fills,
                    },
                    hint: "The hit ratios in the last two rows of the fills table.",
                },
            },
        ],
    },
    Lesson {
        id: "serialization",
        title: "What a value costs",
        outcome: "Measure what encoding and size cost on every hit, and choose JSON, MessagePack or compression with numbers.",
        steps: &[
            Step {
                id: "small-values",
                title: "Small values: compression would not pay",
                text: "A hit is not free: Redis sends the whole value and the application decodes it. A compact encoding shrinks both; compression shrinks more but costs CPU on every read and write, which only pays for big values.\n\nThis step measures user 42 as stored (a few hundred bytes) written as JSON, as MessagePack, and as JSON gzipped above 1 KB: each entry's size, and the median time to encode it, decode it and GET it from this Redis.",
                parts: READ_PATH,
                panel: Panel::Serialization,
                setup: &[],
                run: &[Action::CompareEncodings { padding_bytes: 0 }],
                run_label: "Measure a small record three ways",
                notice: &[Pointer { text: "The gzip row: under the threshold it is plain JSON, byte for byte.", target: Target::Element("serialization") }],
                check: Check {
                    question: "How many bytes did gzip save on this small record?",
                    answer: Expect::Number(gzip_saved),
                    hint: "Compare the JSON and gzip rows' bytes in Redis.",
                },
            },
            Step {
                id: "big-values",
                title: "Big values: compression trades CPU for bytes",
                text: "The same user with 100 KB of notes, like a profile with a long biography. Now every hit moves 100 KB unless the value shrinks first. Gzip shrinks text to a fraction, but every hit then pays to unpack it. Which side wins depends on what is dear: on this loopback network bytes are cheap, while over a slower network, or with Redis short of memory, the smaller entry can be worth the CPU.\n\nCompare the bytes in Redis and the cost of a hit, row by row.",
                parts: READ_PATH,
                panel: Panel::Serialization,
                setup: &[],
                run: &[Action::CompareEncodings { padding_bytes: 100_000 }],
                run_label: "Measure a 100 KB record three ways",
                notice: &[Pointer { text: "Bytes in Redis and the cost of a hit, side by side.", target: Target::Element("serialization") }],
                check: Check {
                    question: "Which encoding gave the cheapest hit here (the GET and the decoding)?",
                    answer: Expect::Choice {
                        options: &["JSON", "MessagePack", "JSON, gzipped when big"],
                        correct: cheapest_hit,
                    },
                    hint: "The \"a hit\" column, or the line above the table.",
                },
            },
        ],
    },
    Lesson {
        id: "null-values",
        title: "Records that do not exist",
        outcome: "Recognise the missing-record pitfall and cache \"not found\".",
        steps: &[
            Step {
                id: "endless-misses",
                title: "The problem: misses that never end",
                text: "A lookup of an id that does not exist finds nothing in Redis, and nothing in the database either. If the application caches nothing in that case, every later lookup of the id goes to the database again. A client that asks for made-up ids, by mistake or on purpose, then reaches the database with every request. In production it shows as a database log full of queries that return nothing: worth an alert once they pass 10 % of all queries.\n\nThis step turns caching of \"not found\" off and looks up a missing user twenty times.",
                parts: READ_PATH,
                panel: Panel::Diagnose,
                setup: &[Setting::NegativeCaching(false), Setting::DbLatency(20)],
                run: &[Action::Read { kind: Kind::Users, id: NOBODY, times: 20 }],
                run_label: "Look up a missing user 20 times (null caching off)",
                notice: &[
                    Pointer { text: "Every lookup ends at the database.", target: Target::Node("query_database") },
                    Pointer { text: "The misses counter climbs with every lookup.", target: Target::Element("misses") },
                    Pointer { text: "Press \"Run the checks\": the last one counts the queries that found nothing.", target: Target::Element("diagnose") },
                ],
                check: Check {
                    question: "How many database queries did the 20 lookups cause?",
                    answer: Expect::Number(database_reads),
                    hint: "The misses counter of the sandbox panel.",
                },
            },
            Step {
                id: "cache-not-found",
                title: "The fix: cache \"not found\" too",
                text: "The remedy is to store a small marker that says \"no such record\", with a TTL of its own, shorter than a record's (here 30 s against 300 s), so a record created later shows up soon. The next lookups find the marker and answer \"not found\" from Redis.\n\nSame twenty lookups, marker on.",
                parts: READ_PATH,
                panel: Panel::None,
                setup: &[Setting::DbLatency(20)],
                run: &[Action::Read { kind: Kind::Users, id: NOBODY, times: 20 }],
                run_label: "Look up a missing user 20 times (null caching on)",
                notice: &[
                    Pointer { text: "The first lookup stores the marker.", target: Target::Node("store_in_cache") },
                    Pointer { text: "The others are null hits.", target: Target::Element("stats") },
                ],
                check: Check {
                    question: "How many database queries did the 20 lookups cause this time?",
                    answer: Expect::Number(database_reads),
                    hint: "The misses counter, against the null hits beside it.",
                },
            },
        ],
    },
    Lesson {
        id: "invalidation",
        title: "Writes and invalidation",
        outcome: "Design an invalidation strategy and check the cache against the database.",
        steps: &[
            Step {
                id: "ttl-only",
                title: "The problem: relying on the TTL alone",
                text: "A write changes the database, never the cache directly. If the application leaves the cached copy alone, readers get the old value until its TTL runs out, here five minutes.\n\nThis step reads user 7 (so it is cached), renames the user with the \"TTL only\" strategy, reads again, and then compares every cached key with its row.",
                parts: WRITES,
                panel: Panel::Divergence,
                setup: &[Setting::Write(WriteStrategy::TtlOnly)],
                run: &[
                    Action::Read { kind: Kind::Users, id: 7, times: 1 },
                    Action::Rename { id: 7, name: "Renamed by the lesson" },
                    Action::Read { kind: Kind::Users, id: 7, times: 1 },
                    Action::CheckDivergence,
                ],
                run_label: "Read, rename, read again (TTL only)",
                notice: &[
                    Pointer { text: "The write changes the row and leaves the key.", target: Target::Node("update_cache") },
                    Pointer { text: "The check lists the key as stale.", target: Target::Element("divergence") },
                ],
                check: Check {
                    question: "How many cached keys did the check find out of date?",
                    answer: Expect::Number(stale_keys),
                    hint: "The cache-versus-database panel counts the stale keys.",
                },
            },
            Step {
                id: "delete-on-write",
                title: "The fix: delete the key after the write",
                text: "Deleting the key right after the database write makes the next read miss and load the new row. Delete rather than overwrite: a delete cannot store a wrong value, and the next read fills the cache only if someone asks.\n\nThe order matters: database first, then the cache. Deleting first lets a read in between put the old row back.\n\nSame experiment, with \"delete on write\".",
                parts: WRITES,
                panel: Panel::Divergence,
                setup: &[Setting::Write(WriteStrategy::DeleteOnWrite)],
                run: &[
                    Action::Read { kind: Kind::Users, id: 7, times: 1 },
                    Action::Rename { id: 7, name: "Renamed by the lesson" },
                    Action::Read { kind: Kind::Users, id: 7, times: 1 },
                    Action::CheckDivergence,
                ],
                run_label: "Read, rename, read again (delete on write)",
                notice: &[
                    Pointer { text: "The write ends with a DEL.", target: Target::Node("update_cache") },
                    Pointer { text: "The read after it misses and loads the new row.", target: Target::Node("query_database") },
                ],
                check: Check {
                    question: "Which name did the last read answer with?",
                    answer: Expect::Choice { options: NAMES, correct: which_name },
                    hint: "Open the last read in the trace log, or look at the result under the read form.",
                },
            },
        ],
    },
    Lesson {
        id: "near-cache",
        title: "Several instances, near caches and Pub/Sub",
        outcome: "Invalidate across instances and see what a lost message costs.",
        steps: &[
            Step {
                id: "pubsub",
                title: "Every instance hears the invalidation",
                text: "Real applications run several instances. When each keeps a small in-process copy in front of Redis (a near cache), deleting the Redis key is not enough: every instance must drop its own copy too. Redis Pub/Sub carries that message to all of them.\n\nThis step turns near caches on, reads user 9 on instances A, B and C, renames the user on A, and reads on B again.",
                parts: NEAR,
                panel: Panel::Instances,
                setup: &[Setting::NearCache(true), Setting::NearTtl(30)],
                run: &[
                    Action::ReadOn { instance: 0, kind: Kind::Users, id: 9 },
                    Action::ReadOn { instance: 1, kind: Kind::Users, id: 9 },
                    Action::ReadOn { instance: 2, kind: Kind::Users, id: 9 },
                    Action::Rename { id: 9, name: "Renamed by the lesson" },
                    Action::ReadOn { instance: 1, kind: Kind::Users, id: 9 },
                ],
                run_label: "Read on A, B, C; rename on A; read on B",
                notice: &[
                    Pointer { text: "The write publishes on the invalidation channel.", target: Target::Node("publish") },
                    Pointer { text: "Each instance counts the invalidations it received.", target: Target::Element("instances") },
                ],
                check: Check {
                    question: "Which name did instance B answer with after the rename?",
                    answer: Expect::Choice { options: NAMES, correct: which_name },
                    hint: "The last trace in the log, read on B.",
                },
            },
            Step {
                id: "lost-message",
                title: "The problem: a message that never arrives",
                text: "Pub/Sub delivers to whoever is listening at that moment and keeps nothing. An instance whose subscription dropped misses the invalidation and serves its near copy until that copy's own TTL runs out. That short near-cache TTL is the safety net.\n\nThis step cuts instance B's subscription before the rename.",
                parts: NEAR,
                panel: Panel::Instances,
                setup: &[Setting::NearCache(true), Setting::NearTtl(30)],
                run: CUT_B_THEN_READ.as_slice().split_at(6).0,
                run_label: "Cut B's subscription, rename, read on B",
                notice: &[
                    Pointer { text: "B answers from its own memory: no Redis, no database.", target: Target::Node("near_cache") },
                    Pointer { text: "B received nothing while cut off.", target: Target::Element("instances") },
                ],
                check: Check {
                    question: "Which name did instance B answer with after the rename?",
                    answer: Expect::Choice { options: NAMES, correct: which_name },
                    hint: "The last trace in the log: a near-cache hit on B.",
                },
            },
            Step {
                id: "resubscribe",
                title: "The recovery: a new subscription starts with an empty near cache",
                text: "An instance that subscribes again cannot tell which invalidations it missed while it was away. Until its subscription is back it goes on serving its near copies, stale or not; the moment it is back, it empties its whole near cache. (That is why B's card showed no near entries at the end of the last step.) Every copy it keeps after that was loaded while it was listening, so a later change reaches it.\n\nThis step repeats the cut, the rename and the stale read on B, then links B again and reads on B once more.",
                parts: NEAR,
                panel: Panel::Instances,
                setup: &[Setting::NearCache(true), Setting::NearTtl(30)],
                run: &CUT_B_THEN_READ,
                run_label: "Cut B, rename, read on B; link B again, read on B",
                notice: &[
                    Pointer { text: "The last read on B misses its near cache, then Redis, and loads the new row.", target: Target::Node("near_cache") },
                    Pointer { text: "B is subscribed again; its one near entry is the new row, loaded after its near cache was emptied.", target: Target::Element("instances") },
                ],
                check: Check {
                    question: "Which name did instance B answer with once its link was back?",
                    answer: Expect::Choice { options: NAMES, correct: which_name },
                    hint: "The last trace in the log, read on B after the link came back.",
                },
            },
        ],
    },
    Lesson {
        id: "race",
        title: "The stale-set race",
        outcome: "Explain how a slow reader can cache an old row, and the two fixes.",
        steps: &[
            Step {
                id: "stale-set",
                title: "The problem: a slow reader stores an old row",
                text: "A reader misses and loads the row. Before it stores it, a writer changes the row and deletes the key. Then the slow reader stores what it loaded, which is now old, and it stays in Redis for a whole TTL.\n\nThe button plays exactly that interleaving on the real Redis and database, with no protection.",
                parts: RACE_PARTS,
                panel: Panel::Race,
                setup: &[Setting::Race(RaceFix::None)],
                run: &[Action::Race { id: 5 }],
                run_label: "Play the race with no protection",
                notice: &[Pointer { text: "The story lists every step in the order it happened.", target: Target::Element("race") }],
                check: Check {
                    question: "After the race, would a reader get the old name from Redis?",
                    answer: Expect::Choice { options: RACE, correct: race_outcome },
                    hint: "The race panel compares the cached value with the row.",
                },
            },
            Step {
                id: "lease",
                title: "Fix one: a lease",
                text: "The reader takes a lease (a small token in Redis) before loading. A write deletes the lease with the key, so the slow reader's store, which is allowed only while its lease is there, is refused.",
                parts: RACE_PARTS,
                panel: Panel::Race,
                setup: &[Setting::Race(RaceFix::Lease)],
                run: &[Action::Race { id: 5 }],
                run_label: "Play the race with a lease",
                notice: &[Pointer { text: "The lease box lights up before the load.", target: Target::Node("lease") }],
                check: Check {
                    question: "Would a reader get the old name from Redis this time?",
                    answer: Expect::Choice { options: RACE, correct: race_outcome },
                    hint: "The race panel's verdict.",
                },
            },
            Step {
                id: "versions",
                title: "Fix two: versions",
                text: "Every row carries a version that each write increases, and every cached value records the version it came from. The write deletes the cached value but leaves a small marker holding the new version. The store is a small Lua script that refuses anything older than what Redis holds, marker included, so the slow reader's old row cannot win.",
                parts: RACE_PARTS,
                panel: Panel::Race,
                setup: &[Setting::Race(RaceFix::Version)],
                run: &[Action::Race { id: 5 }],
                run_label: "Play the race with versions",
                notice: &[Pointer { text: "The story shows the store refused.", target: Target::Element("race") }],
                check: Check {
                    question: "Would a reader get the old name from Redis this time?",
                    answer: Expect::Choice { options: RACE, correct: race_outcome },
                    hint: "The race panel's verdict.",
                },
            },
        ],
    },
    Lesson {
        id: "stampede",
        title: "Stampede",
        outcome: "See a thundering herd reach the database, and stop it.",
        steps: &[
            Step {
                id: "cold-herd",
                title: "The problem: a herd on a cold key",
                text: "When a popular key is missing, every request that arrives before the first load finishes misses too, and each one queries the database for the same row. With a 100 ms query, that is every request of the first 100 ms.\n\nThe button sends 200 concurrent reads of one cold key, spread over the three instances, with no defence.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 200, defence: Defence::None, timing: HerdTiming::Cold }],
                run_label: "Send 200 reads at a cold key (no defence)",
                notice: &[
                    Pointer { text: "The edge counts show how many requests took each path.", target: Target::Node("query_database") },
                    Pointer { text: "The herd table lists the database loads.", target: Target::Element("herds") },
                ],
                check: Check {
                    question: "How many database loads did the herd cause?",
                    answer: Expect::Number(herd_loads),
                    hint: "The \"database loads\" column of the herd table.",
                },
            },
            Step {
                id: "lock",
                title: "The fix: a lock in Redis",
                text: "With a lock, the first request to miss takes a short-lived key in Redis (SET NX PX) and loads; the others wait to be handed its result. One load, however many requests and instances. The lock expires by itself if its holder dies.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 200, defence: Defence::RedisLock, timing: HerdTiming::Cold }],
                run_label: "Send 200 reads at a cold key (Redis lock)",
                notice: &[Pointer { text: "Most requests pass through the lock box and wait.", target: Target::Node("lock") }],
                check: Check {
                    question: "How many database loads did the herd cause with the lock?",
                    answer: Expect::Number(herd_loads),
                    hint: "The top row of the herd table (the newest).",
                },
            },
            Step {
                id: "single-flight",
                title: "Single flight: one load per instance, not one in all",
                text: "Single flight merges concurrent misses inside one process, with no Redis round trip. It is cheap, but each instance still loads once: with three instances, three loads.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 200, defence: Defence::SingleFlight, timing: HerdTiming::Cold }],
                run_label: "Send 200 reads at a cold key (single flight)",
                notice: &[Pointer { text: "Compare the rows of the herd table.", target: Target::Element("herds") }],
                check: Check {
                    question: "How many database loads did single flight allow?",
                    answer: Expect::Number(herd_loads),
                    hint: "One per instance; the herd table has the count.",
                },
            },
            Step {
                id: "hot-key-expiry",
                title: "The problem again: a hot key expires under load",
                text: "A herd needs no cold start. A key read all the time serves hits until the moment its TTL runs out; from then until the first reload is stored, every read misses and goes to the database for the same row.\n\nThe button caches the key with a 2-second TTL, then sends 200 reads spread evenly over the 0.8 s around its expiry, with no defence.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 200, defence: Defence::None, timing: HerdTiming::AtExpiry }],
                run_label: "Send 200 reads around the expiry (no defence)",
                notice: &[Pointer { text: "The reads before the expiry are in \"from cache\"; the loads came after it.", target: Target::Element("herds") }],
                check: Check {
                    question: "How many database loads did the herd cause around the expiry?",
                    answer: Expect::Number(herd_loads),
                    hint: "The \"database loads\" column of the newest row.",
                },
            },
            Step {
                id: "xfetch",
                title: "Refresh early, before the key expires",
                text: "Probabilistic early expiration (XFetch) lets a reader renew a key before it runs out. Near the end of the TTL each read draws a random number, weighted by how long a load takes (100 ms here) and by a factor called beta (1 here): the closer the expiry, the likelier that this read reloads and stores a fresh copy with a new TTL. One reader, or a few, wins the draw before the expiry and reloads while the others are still served the cached copy, so the key never goes missing and nobody waits for someone else's load. A fixed rule, such as reloading once 80 % of the TTL has passed, needs a lock beside it: on its own, every read past that point reloads.\n\nThe same herd around the expiry, with early refresh on.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 200, defence: Defence::XFetch, timing: HerdTiming::AtExpiry }],
                run_label: "Send 200 reads around the expiry (early refresh)",
                notice: &[Pointer { text: "The \"early\" column counts the reads that refreshed before the expiry; compare it with the loads.", target: Target::Element("herds") }],
                check: Check {
                    question: "How many reads refreshed the key early?",
                    answer: Expect::Number(herd_early),
                    hint: "The \"early\" column of the newest row; compare it with the database loads beside it.",
                },
            },
            Step {
                id: "serve-stale",
                title: "Serve stale while one request refreshes",
                text: "Stale-while-revalidate takes another way out. It keeps the value a little past its fresh time: reads get the slightly old value at once while a single request reloads it in the background. Nobody waits for the database, and there is exactly one load instead of a few.\n\nThe same herd around the expiry, with stale-while-revalidate.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 200, defence: Defence::StaleWhileRevalidate, timing: HerdTiming::AtExpiry }],
                run_label: "Send 200 reads around the expiry (serve stale)",
                notice: &[Pointer { text: "The \"served stale\" column counts who got the old value.", target: Target::Element("herds") }],
                check: Check {
                    question: "How many requests had to wait for the database?",
                    answer: Expect::Number(herd_waited),
                    hint: "The \"waited\" column of the herd table.",
                },
            },
            Step {
                id: "saturated-database",
                title: "A real database runs out of connections",
                text: "So far the database took every query at once. A real one has a pool of connections: each query holds one until it is done, and the rest wait in line. Here it has 5, each query takes 100 ms, and a query gives up after waiting 300 ms.\n\nSend the same herd with no defence: only the first few get a connection in time; the others fail, and the application has nothing to answer with.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[Setting::DbConnections { connections: 5, wait_ms: 300 }],
                run: &[Action::Herd { requests: 200, defence: Defence::None, timing: HerdTiming::Cold }],
                run_label: "Send 200 reads at a cold key (5 connections, no defence)",
                notice: &[Pointer { text: "The \"failed\" column counts the requests the database turned away.", target: Target::Element("herds") }],
                check: Check {
                    question: "How many of the 200 requests failed?",
                    answer: Expect::Number(herd_failed),
                    hint: "The \"failed\" column of the herd table's top row.",
                },
            },
            Step {
                id: "lock-saves-database",
                title: "The lock keeps a small database standing",
                text: "The same small database, the same herd, with the Redis lock: one request loads, the others wait on the lock rather than on the database's queue, and all of them are answered.\n\nThis step sends the herd twice, with no defence and then with the lock, so both runs stand side by side in the table, whether or not the last step ran here.",
                parts: HERD_PARTS,
                panel: Panel::Stampede,
                setup: &[Setting::DbConnections { connections: 5, wait_ms: 300 }],
                run: &[
                    Action::Herd { requests: 200, defence: Defence::None, timing: HerdTiming::Cold },
                    Action::Herd { requests: 200, defence: Defence::RedisLock, timing: HerdTiming::Cold },
                ],
                run_label: "200 reads at a cold key, 5 connections: no defence, then the Redis lock",
                notice: &[Pointer { text: "Compare the failed column of the two newest rows.", target: Target::Element("herds") }],
                check: Check {
                    question: "How many requests failed with the lock?",
                    answer: Expect::Number(herd_failed),
                    hint: "The \"failed\" column of the herd table's top row.",
                },
            },
        ],
    },
    Lesson {
        id: "jitter",
        title: "Keys that expire together",
        outcome: "Spread expiries with TTL jitter.",
        steps: &[
            Step {
                id: "same-ttl",
                title: "The problem: one TTL for a batch of keys",
                text: "Keys cached at the same moment with the same TTL also expire at the same moment, and their reloads arrive together. This herd caches 50 keys at once with a fixed TTL and reads them across their expiry.",
                parts: READ_PATH,
                panel: Panel::Stampede,
                setup: &[],
                run: &[Action::Herd { requests: 500, defence: Defence::None, timing: HerdTiming::ManyKeys }],
                run_label: "50 keys, one TTL",
                notice: &[Pointer { text: "\"Peak loads per 100 ms\" in the herd table.", target: Target::Element("herds") }],
                check: Check {
                    question: "What was the peak of database loads in one 100 ms window?",
                    answer: Expect::Number(herd_peak),
                    hint: "The \"peak / 100 ms\" column of the herd table.",
                },
            },
            Step {
                id: "ttl-jitter",
                title: "The fix: add jitter to the TTL",
                text: "Adding a random share (here up to 25 % either way) to each TTL spreads the expiries out, so the reloads arrive a few at a time. Jitter does not save loads: a key that drew a shorter TTL may even reload once more during the 4 s of reads, so the loads column can go up a little. What it changes is when the loads land, and that is what the peak shows.\n\nThis step sends the same herd twice, with one TTL and then with jitter, so both runs stand side by side in the table, whether or not the last step ran here.",
                parts: READ_PATH,
                panel: Panel::Stampede,
                setup: &[],
                run: &[
                    Action::Herd { requests: 500, defence: Defence::None, timing: HerdTiming::ManyKeys },
                    Action::Herd { requests: 500, defence: Defence::TtlJitter, timing: HerdTiming::ManyKeys },
                ],
                run_label: "50 keys: one TTL, then TTL with jitter",
                notice: &[Pointer { text: "Compare the peaks of the two newest rows: one TTL, then jitter.", target: Target::Element("herds") }],
                check: Check {
                    question: "What was the peak of database loads in one 100 ms window this time?",
                    answer: Expect::Number(herd_peak),
                    hint: "The \"peak / 100 ms\" column, top row (the newest).",
                },
            },
        ],
    },
    Lesson {
        id: "patterns",
        title: "Cache-aside among the other patterns",
        outcome: "Compare cache-aside with read-through, write-through and write-behind, and know when not to use it.",
        steps: &[
            Step {
                id: "four-patterns",
                title: "Four ways to put a cache in front of a database",
                text: "Cache-aside is one of four common arrangements. Read-through moves the loading into the cache layer: the reads are the same, only the owner of the loader changes. Write-through writes every change to the database and then to the cache, so reads after a write still hit. Write-behind writes to the cache at once and to the database later, from a queue.\n\nThe button runs one seeded workload (100 operations on 10 users, about one in five a write, a 20 ms database) through all four on this sandbox's Redis and database, and measures each.",
                parts: WRITES,
                panel: Panel::Patterns,
                setup: &[Setting::DbLatency(20)],
                run: &[Action::ComparePatterns { seed: 7 }],
                run_label: "Run the same workload through all four",
                notice: &[
                    Pointer { text: "Write times: the database write dominates, except for write-behind.", target: Target::Element("patterns") },
                    Pointer { text: "Database reads: cache-aside reloads after each write; write-through does not.", target: Target::Element("patterns") },
                ],
                check: Check {
                    question: "Which pattern answered writes fastest?",
                    answer: Expect::Choice { options: PATTERNS, correct: fastest_writes },
                    hint: "The \"write avg\" column of the comparison table.",
                },
            },
            Step {
                id: "costs",
                title: "What the speed costs",
                text: "Write-behind's fast writes are only in Redis until the queue reaches the database. While they wait, the database is behind (a report run on it would see old rows), and a Redis or application crash would lose them. Write-through pays the database's latency on every write, as cache-aside does (tables that rate cache-aside writes as fast count only its part in the cache, a delete), and keeps cache and database in step: reads after a write still hit. Cache-aside keeps the database as the only source of truth and lets the cache miss.\n\nSo cache-aside fits data read far more often than written that may be briefly stale; data written constantly suits write-behind (if losing a little is acceptable) or no cache; data that must never be stale needs write-through or no cache; a small data set may simply live in memory.",
                parts: WRITES,
                panel: Panel::Patterns,
                setup: &[Setting::DbLatency(20)],
                run: &[Action::ComparePatterns { seed: 7 }],
                run_label: "Run it again",
                notice: &[Pointer { text: "\"Only in Redis\" and \"database behind\" are write-behind's risks, counted.", target: Target::Element("patterns") }],
                check: Check {
                    question: "With write-behind, how many writes were only in Redis at the worst moment?",
                    answer: Expect::Number(unsaved_writes),
                    hint: "The \"only in Redis\" column, write-behind's row.",
                },
            },
        ],
    },
    Lesson {
        id: "failures",
        title: "When Redis or the database fails",
        outcome: "Keep serving through a Redis outage, a hung Redis and a failing database, and lose no invalidation.",
        steps: &[
            Step {
                id: "naive",
                title: "The problem: a cache that takes the application down",
                text: "Redis is an optimisation, yet code that calls it without handling its errors turns a Redis outage into an application outage: every request fails, even though the database is fine.\n\nThis sandbox now runs such an application. The button reads user 42 (so it is cached), stops this sandbox's Redis, reads the user three more times, and starts Redis again. The other sandboxes on this Redis see nothing: the fault is injected by a proxy between this sandbox's application and Redis.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[Setting::Fallback(false)],
                run: OUTAGE_RUN,
                run_label: "Stop Redis under a naive application",
                notice: &[
                    Pointer { text: "The GET fails and, with no fallback, so does the request.", target: Target::Node("cache_error") },
                    Pointer { text: "The fault timeline shows when Redis stopped and came back.", target: Target::Element("faults") },
                ],
                check: Check {
                    question: "How many of the three reads made while Redis was stopped failed?",
                    answer: Expect::Number(failed_reads),
                    hint: "Failed reads show in red in the trace log, and as errors above the page.",
                },
            },
            Step {
                id: "fallback",
                title: "The fix: fall back to the database",
                text: "Treat a Redis error like a miss that must not be stored: log it, count it, read the database and answer. Do not try to store the value either, since Redis has just failed and another attempt would only add another wait. Reads get slower during the outage, but none fails.\n\nSame experiment, with the fallback on.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[],
                run: OUTAGE_RUN,
                run_label: "Stop Redis under an application that falls back",
                notice: &[
                    Pointer { text: "The error is logged and the read carries on to the database.", target: Target::Node("cache_error") },
                    Pointer { text: "After a fallback the store is skipped.", target: Target::Node("return_loaded") },
                ],
                check: Check {
                    question: "Where did the reads made while Redis was stopped get their answer?",
                    answer: Expect::Choice { options: OUTAGE_ANSWERS, correct: outage_answers },
                    hint: "Each read's outcome is in the trace log: fallback means the database answered.",
                },
            },
            Step {
                id: "hung-redis",
                title: "The problem: a hung Redis costs every read its timeout",
                text: "A Redis that is down refuses connections at once. A Redis that hangs (an overloaded server, a stalled network) accepts the command and never answers, so each read waits for the full command timeout, 250 ms here, before it falls back. A common choice is 100 to 500 ms: long enough to ride out a busy moment, short enough that a hung cache adds a fraction of a second to a read, not seconds.\n\nThe button caches user 42, hangs this sandbox's Redis, reads the user eight times on instance A, then lets Redis answer again.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[],
                run: HANG_RUN,
                run_label: "Hang Redis and read eight times",
                notice: &[
                    Pointer { text: "Each GET ends in a timeout: look at its measured time.", target: Target::Node("check_cache") },
                    Pointer { text: "The read's total is the timeout plus the database.", target: Target::Element("log") },
                ],
                check: Check {
                    question: "How many of the nine reads were answered by the database after a Redis error?",
                    answer: Expect::Number(fallbacks),
                    hint: "Count the fallbacks in the trace log.",
                },
            },
            Step {
                id: "breaker",
                title: "The fix: a circuit breaker",
                text: "A circuit breaker remembers that Redis has been failing. After five failures in a row it opens, and for two seconds reads skip Redis altogether and go straight to the database, without waiting. Then it lets one read through as a probe: if Redis answers, the breaker closes again; if not, it stays open for another two seconds.\n\nSame experiment, with the breaker on. Each instance keeps its own breaker, as separate processes would.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[Setting::Breaker(true)],
                run: HANG_RUN,
                run_label: "Hang Redis with the breaker on",
                notice: &[
                    Pointer { text: "Once open, reads pass the breaker and skip Redis.", target: Target::Node("breaker") },
                    Pointer { text: "The fault card shows each instance's breaker and when it opened.", target: Target::Element("faults") },
                ],
                check: Check {
                    question: "In which state was instance A's breaker when Redis answered again?",
                    answer: Expect::Choice { options: BREAKER_STATES, correct: breaker_a },
                    hint: "The fault card's timeline: when did the breaker open, and how long does it stay open? (Once those 2 s are up, the breakers line moves on to half-open.)",
                },
            },
            Step {
                id: "database-fails",
                title: "The problem: the database fails too",
                text: "The database can fail as well: a restart, a full connection pool, a network split. A read whose entry has just expired then has nothing to answer with.\n\nThe button caches product 5 with a one-second TTL, waits for it to expire, makes every database query fail, and reads the product again.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[Setting::CacheTtl(1)],
                run: DATABASE_DOWN_RUN,
                run_label: "Let the entry expire, then fail the database",
                notice: &[Pointer { text: "The query fails, and the read with it.", target: Target::Node("query_database") }],
                check: Check {
                    question: "How many reads failed?",
                    answer: Expect::Number(failed_reads),
                    hint: "The failed read is red in the trace log.",
                },
            },
            Step {
                id: "fail-safe",
                title: "The fix: fail-safe",
                text: "Fail-safe keeps each entry in Redis for a while after it stops being fresh (here a minute longer). Normally an expired entry is just a miss. But when the database fails, the read answers with the expired copy, marked as such, instead of an error: a value a few seconds old is usually better than no page at all. A database error is never cached.\n\nSame experiment, with fail-safe on.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[Setting::CacheTtl(1), Setting::FailSafe(60)],
                run: DATABASE_DOWN_RUN,
                run_label: "The same, with fail-safe",
                notice: &[Pointer { text: "After the failed query the read goes back to the copy it found.", target: Target::Node("check_cache") }],
                check: Check {
                    question: "What did the last read answer with?",
                    answer: Expect::Choice { options: FAIL_SAFE_ANSWERS, correct: fail_safe_answer },
                    hint: "The last read's outcome in the trace log.",
                },
            },
            Step {
                id: "delete-first",
                title: "The problem: deleting before the database write",
                text: "Even with Redis healthy, the order of a write matters. Delete the cached copy first and the database write is still on its way when the next reader arrives: the reader misses, loads the row the database still has, the old one, and caches it. The write lands a moment later and nobody deletes the copy again: Redis serves the old row until its TTL.\n\nThe button caches user 9, renames the user with the delete first, and has a reader read it the moment the copy is gone.",
                parts: WRITES,
                panel: Panel::Race,
                setup: &[Setting::DeleteFirst(true)],
                run: &[Action::WriteOrder { id: 9 }],
                run_label: "Delete first, then write the database",
                notice: &[
                    Pointer { text: "The write starts with the delete, before the database.", target: Target::Node("update_cache") },
                    Pointer { text: "The story says what the reader cached in between.", target: Target::Element("race") },
                ],
                check: Check {
                    question: "At the end, would a reader get user 9's old name from Redis?",
                    answer: Expect::Choice { options: RACE, correct: race_outcome },
                    hint: "The verdict of the experiment, under its story.",
                },
            },
            Step {
                id: "database-first",
                title: "The fix: the database first, then delete",
                text: "Write the database first and delete the cached copy after. A reader that misses once the copy is gone loads the new row. (A reader that loaded just before the write can still store an old row late: that is the stale-set race, and its guards are leases and version checks.)\n\nSame experiment, in the right order.",
                parts: WRITES,
                panel: Panel::Race,
                setup: &[],
                run: &[Action::WriteOrder { id: 9 }],
                run_label: "Write the database, then delete",
                notice: &[Pointer { text: "The delete comes after the database write.", target: Target::Node("update_cache") }],
                check: Check {
                    question: "Would a reader get user 9's old name from Redis this time?",
                    answer: Expect::Choice { options: RACE, correct: race_outcome },
                    hint: "The verdict of the experiment, under its story.",
                },
            },
            Step {
                id: "write-during-outage",
                title: "The problem: a write while Redis is away",
                text: "Writes keep working during an outage, since they go to the database. But the delete that should follow cannot reach Redis, and when Redis comes back with its data (a network split that healed, a restart with persistence) it still holds the old value, served until its TTL runs out.\n\nThe button caches user 7, stops Redis, renames the user on instance A, starts Redis with its data, reads the user on A and compares the cache with the database.",
                parts: FAULT_WRITES,
                panel: Panel::Faults,
                setup: &[],
                run: WRITE_DURING_OUTAGE_RUN,
                run_label: "Write during an outage",
                notice: &[
                    Pointer { text: "The delete fails: the old copy stays in Redis.", target: Target::Node("update_cache") },
                    Pointer { text: "The fault card tells what the check found.", target: Target::Element("faults") },
                ],
                check: Check {
                    question: "How many cached keys did the check find out of date?",
                    answer: Expect::Number(stale_keys),
                    hint: "The fault card's last line: the cache-versus-database check.",
                },
            },
            Step {
                id: "retry-invalidation",
                title: "The fix: keep the delete and send it again",
                text: "A delete that could not be delivered is kept and sent again, with growing pauses, until Redis takes it. Meanwhile the writing process never serves the old copy: before it reads that key from Redis again, it sends the delete it owes. Other processes may see the old copy from the moment Redis returns until the retry lands, a second at most here.\n\nSame experiment, with retries on. (Lessons also send a command again, once, when its connection has died, as the first one after an outage often has: the read's trace may show that dead try first. In free play that switch, in the Faults card, starts off.)",
                parts: FAULT_WRITES,
                panel: Panel::Faults,
                setup: &[Setting::RetryInvalidations(true)],
                run: WRITE_DURING_OUTAGE_RUN,
                run_label: "Write during an outage, with retries",
                notice: &[
                    Pointer { text: "The failed delete is kept: the write's last step says so.", target: Target::Node("update_cache") },
                    Pointer { text: "The read on A delivers it first, then misses and loads the new row.", target: Target::Node("check_cache") },
                ],
                check: Check {
                    question: "How many cached keys did the check find out of date this time?",
                    answer: Expect::Number(stale_keys),
                    hint: "The fault card's last line: the cache-versus-database check.",
                },
            },
            Step {
                id: "dead-connection",
                title: "The problem: a connection that died",
                text: "A restart or failover of Redis, or a proxy or firewall that drops idle connections, can leave the application holding a connection that is already dead. The next command sent on it fails, and its read falls back to the database although Redis is up and holds the value. The client reconnects right after, so each process loses one command: on a busy service nobody notices, on a quiet one it is the next visitor's read.\n\nThe button reads user 42 on instance A until it is cached, cuts the connections between the application and Redis, and reads the user on A again.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[Setting::ResendDropped(false)],
                run: CUT_RUN,
                run_label: "Cut the connections, then read",
                notice: &[
                    Pointer { text: "The GET fails on the dead connection.", target: Target::Node("check_cache") },
                    Pointer { text: "So the read falls back, with Redis up.", target: Target::Node("cache_error") },
                ],
                check: Check {
                    question: "Where did the read after the cut get user 42 from?",
                    answer: Expect::Choice { options: SOURCES, correct: last_source },
                    hint: "The last entry of the trace log, or the last read's steps.",
                },
            },
            Step {
                id: "resend",
                title: "The fix: send it again on a new connection",
                text: "A command that finds its connection dead can go once more, on the connection the client is already making, within the same timeout. Only a command that does no harm if it runs twice qualifies: a read, a delete, a plain SET; never a lock's SET NX or a script, which the first try may already have run.\n\nSame experiment, with resending on.",
                parts: FAULT_PARTS,
                panel: Panel::Faults,
                setup: &[Setting::ResendDropped(true)],
                run: CUT_RUN,
                run_label: "Cut the connections, then read (resending)",
                notice: &[Pointer {
                    text: "The dead try, then the same GET on a new connection: a hit.",
                    target: Target::Node("check_cache"),
                }],
                check: Check {
                    question: "Where did the read after the cut get user 42 from this time?",
                    answer: Expect::Choice { options: SOURCES, correct: last_source },
                    hint: "The last entry of the trace log, or the last read's steps.",
                },
            },
        ],
    },
    Lesson {
        id: "operations",
        title: "Running a cache: watch it, warm it",
        outcome: "Read the figures that tell a healthy cache from a sick one, trace a symptom to its cause, and warm a cache before it takes traffic.",
        steps: &[
            Step {
                id: "short-ttl",
                title: "The signs of a sick cache: a TTL too short",
                text: "A cache that works badly does not fail: it just answers from the database more often than it should. The figures that give it away are the hit ratio (a tuned cache answers well over 80 % of reads; under 50 % for a minute is worth an alert), the time a hit takes (well under 5 ms), Redis's memory (under 80 % of its limit) with its evictions, and the share of reads that fail or fall back (under 1 %).\n\nThe button sets the TTL to 1 second and runs 5 seconds of skewed traffic, 100 reads a second over 50 users.",
                parts: READ_PATH,
                panel: Panel::Diagnose,
                setup: &[Setting::CacheTtl(1)],
                run: &[Action::Load { per_second: 100, keys: 50, seconds: 5 }],
                run_label: "Run 5 s of traffic with a 1 s TTL",
                notice: &[
                    Pointer { text: "The hit ratio of the sandbox panel.", target: Target::Element("stats") },
                    Pointer { text: "Press \"Run the checks\": the first check names the likely cause.", target: Target::Element("diagnose") },
                ],
                check: Check {
                    question: "How many of the reads missed?",
                    answer: Expect::Number(counted_misses),
                    hint: "The misses counter of the sandbox panel.",
                },
            },
            Step {
                id: "longer-ttl",
                title: "The fix, confirmed by the same figures",
                text: "Back to a five-minute TTL, the same traffic. A user misses when it is first read (now and then twice, when a second read arrives while the first is still loading) and then stays cached. Check the figures again: a fix is only a fix once the numbers that showed the problem say so.",
                parts: READ_PATH,
                panel: Panel::Diagnose,
                setup: &[],
                run: &[Action::Load { per_second: 100, keys: 50, seconds: 5 }],
                run_label: "Run the same traffic with a 300 s TTL",
                notice: &[
                    Pointer { text: "The hit ratio now.", target: Target::Element("stats") },
                    Pointer { text: "Run the checks again.", target: Target::Element("diagnose") },
                ],
                check: Check {
                    question: "How many of the reads missed this time?",
                    answer: Expect::Number(counted_misses),
                    hint: "The misses counter: about one per user read, far fewer than before.",
                },
            },
            Step {
                id: "slow-redis",
                title: "Hits, and still slow: a Redis that lags",
                text: "A good hit ratio does not prove a fast cache. If Redis itself answers slowly (a distant or congested network, big values, a busy server), every hit pays for it, and the hit ratio never shows it. Watch the time a read spends outside the database.\n\nThe button makes every Redis command of this sandbox wait 20 ms more, then reads user 42 ten times.",
                parts: READ_PATH,
                panel: Panel::Diagnose,
                setup: &[],
                run: &[
                    Action::Fault(crate::FaultAction::SlowRedis { delay_ms: 20 }),
                    Action::Read { kind: Kind::Users, id: USER, times: 10 },
                ],
                run_label: "Slow Redis by 20 ms, then read ten times",
                notice: &[
                    Pointer { text: "Nine hits, yet the average read is slower than 20 ms.", target: Target::Element("stats") },
                    Pointer { text: "Run the checks: the latency check names Redis.", target: Target::Element("diagnose") },
                ],
                check: Check {
                    question: "How many of the ten reads did Redis answer?",
                    answer: Expect::Number(redis_answers),
                    hint: "The hits counter, or the HIT entries of the trace log.",
                },
            },
            Step {
                id: "cold-restart",
                title: "The problem: a cache that restarts empty",
                text: "A Redis that restarts without its data (no persistence, a new node, a flush) comes back empty, and the first wave of traffic after it misses on every key at once: a stampede over the whole data set, right when the system is recovering.\n\nThe button warms the cache (users 1 to 100, products 1 to 50), stops this sandbox's Redis, starts it again empty, and sends 2 seconds of traffic, 100 reads a second over 50 users.",
                parts: READ_PATH,
                panel: Panel::Faults,
                setup: &[],
                run: &[
                    Action::Fault(crate::FaultAction::WarmCache),
                    Action::Fault(crate::FaultAction::StopRedis),
                    Action::Fault(crate::FaultAction::StartRedis { empty: true }),
                    Action::Load { per_second: 100, keys: 50, seconds: 2 },
                ],
                run_label: "Warm the cache, restart Redis empty, then take traffic",
                notice: &[
                    Pointer { text: "The fault card's timeline: warmed, then stopped and started empty.", target: Target::Element("faults") },
                    Pointer { text: "The misses counter: each user's first read after the restart had to be loaded.", target: Target::Element("misses") },
                ],
                check: Check {
                    question: "How many of the reads after the restart missed?",
                    answer: Expect::Number(counted_misses),
                    hint: "The misses counter of the sandbox panel.",
                },
            },
            Step {
                id: "warm-up",
                title: "The fix: warm the cache before traffic arrives",
                text: "Warming fills the cache before it takes traffic: here by loading users 1 to 100 (every user this traffic reads) and products 1 to 50 straight from the database. Redis's own snapshots (RDB) or log (AOF) do the same by bringing the data back with the server.\n\nThe same restart, then a warm-up before the same traffic.",
                parts: READ_PATH,
                panel: Panel::Faults,
                setup: &[],
                run: &[
                    Action::Fault(crate::FaultAction::StopRedis),
                    Action::Fault(crate::FaultAction::StartRedis { empty: true }),
                    Action::Fault(crate::FaultAction::WarmCache),
                    Action::Load { per_second: 100, keys: 50, seconds: 2 },
                ],
                run_label: "Restart Redis empty, warm it, then take traffic",
                notice: &[
                    Pointer { text: "The fault card's timeline: the warm-up stored its records before the traffic.", target: Target::Element("faults") },
                    Pointer { text: "The misses counter now.", target: Target::Element("misses") },
                ],
                check: Check {
                    question: "How many of the reads after the warm restart missed?",
                    answer: Expect::Number(counted_misses),
                    hint: "The misses counter of the sandbox panel.",
                },
            },
        ],
    },
    Lesson {
        id: "sensitive-data",
        title: "Sensitive data in a cache",
        outcome: "Keep personal fields unreadable in Redis, and make sure a deleted person is gone from the cache as well as the database.",
        steps: &[
            Step {
                id: "phone-in-clear",
                title: "The problem: a phone number anyone with Redis access can read",
                text: "Cached records are copies of real data, and some of their fields are personal: here, each user's phone number. Redis is seldom guarded as closely as the database. Operators run MONITOR, backups get copied around, and every client holding the password can GET any key. A personal field cached as it is leaks through each of them.\n\nThis step switches encryption off and reads user 42 once. The miss stores the whole record: look at the SET command in the steps under the diagram, and the line under it.",
                parts: READ_PATH,
                panel: Panel::None,
                setup: &[Setting::Seal(false)],
                run: &[Action::Read { kind: Kind::Users, id: 42, times: 1 }],
                run_label: "Read user 42 (encryption off)",
                notice: &[Pointer {
                    text: "The SET sends the whole record to Redis; the line under it shows the phone field as stored.",
                    target: Target::Node("store_in_cache"),
                }],
                check: Check {
                    question: "Could someone who can only read this Redis learn user 42's phone number?",
                    answer: Expect::Choice { options: PHONE_READABLE, correct: phone_in_the_clear },
                    hint: "The phone field in the SET command: a number, or enc:v1:… ?",
                },
            },
            Step {
                id: "encrypt",
                title: "The fix: encrypt the field before it is cached",
                text: "The remedy is to encrypt sensitive fields on their way into Redis and decrypt them on the way out, with a key that never goes to Redis. Here each phone number is sealed with AES-256-GCM and bound to the key it is stored under, so a copy pasted under another key does not open. The other fields stay readable, so the cache is as easy to inspect as before. Some data should never be cached, encrypted or not: passwords, full card numbers.\n\nThe same read with encryption on. A later hit gets the number back decrypted, in the application: Redis never sees the encryption key.",
                parts: READ_PATH,
                panel: Panel::None,
                setup: &[],
                run: &[Action::Read { kind: Kind::Users, id: 42, times: 1 }],
                run_label: "Read user 42 (encryption on)",
                notice: &[Pointer {
                    text: "The SET now carries enc:v1:… where the number was.",
                    target: Target::Node("store_in_cache"),
                }],
                check: Check {
                    question: "Could someone who can only read this Redis learn user 42's phone number now?",
                    answer: Expect::Choice { options: PHONE_READABLE, correct: phone_in_the_clear },
                    hint: "The phone field in the SET command: a number, or enc:v1:… ?",
                },
            },
            Step {
                id: "deleted-still-served",
                title: "The problem: a deleted person still served from the cache",
                text: "Privacy laws such as the GDPR give people the right to have their data erased. Deleting the row is not enough while a copy lives on in Redis. With the \"TTL only\" strategy writes leave the cache alone, so the deleted user is still served, phone number and all, until the TTL runs out: five minutes here.\n\nThis step reads user 42 (now cached), deletes the user from the database, and reads again.",
                parts: WRITES,
                panel: Panel::None,
                setup: &[Setting::Write(WriteStrategy::TtlOnly)],
                run: READ_DELETE_READ,
                run_label: "Read, delete, read again (TTL only)",
                notice: &[
                    Pointer { text: "The delete changed the database and nothing else.", target: Target::Node("update_cache") },
                    Pointer { text: "The last read is the newest entry, at the top of the trace log.", target: Target::Element("log") },
                ],
                check: Check {
                    question: "After the delete, what did the last read of user 42 return?",
                    answer: Expect::Choice { options: AFTER_DELETE, correct: deleted_record_served },
                    hint: "The newest entry of the trace log, at its top: a hit answered from Redis; \"no such record\" means the read found nothing.",
                },
            },
            Step {
                id: "delete-invalidates",
                title: "The fix: a delete removes the cached copy too",
                text: "Treat an erasure like any other write: delete the cached copy right after the row, and every other key built from the person's data. The next read misses, finds no row, and caches \"not found\" for a short while (30 s here) instead of the person.\n\nThe same three operations with delete-on-write, the default strategy.",
                parts: WRITES,
                panel: Panel::None,
                setup: &[],
                run: READ_DELETE_READ,
                run_label: "Read, delete, read again (delete on write)",
                notice: &[
                    Pointer { text: "The delete also deletes the cached copy.", target: Target::Node("update_cache") },
                    Pointer { text: "The last read is the newest entry, at the top of the trace log.", target: Target::Element("log") },
                ],
                check: Check {
                    question: "After the delete, what did the last read of user 42 return this time?",
                    answer: Expect::Choice { options: AFTER_DELETE, correct: deleted_record_served },
                    hint: "The newest entry of the trace log, at its top: does it say \"no such record\"?",
                },
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A lesson crops the diagram to the parts its step shows: in the wide
    /// and the narrow layout, every curve drawn, and the text the page
    /// writes under a curve's middle (baseline 20 below it, 6 more for the
    /// letters), stays inside the crop.
    #[test]
    fn a_lessons_cropped_diagram_holds_every_curve_it_draws() {
        let wide = crate::diagram::Diagram::cache_aside_read();
        let mut cut_by_the_boxes_alone = Vec::new();
        for diagram in [wide.clone(), wide.transposed()] {
            for lesson in LESSONS {
                for step in lesson.steps {
                    let shown = |id: &NodeId| shows(step.parts, id);
                    let height = diagram.height_showing(shown);
                    let boxes_only = diagram
                        .nodes
                        .iter()
                        .filter(|n| shown(&n.id))
                        .map(|n| n.y + n.height + 40.0)
                        .fold(0.0, f64::max);
                    for edge in diagram.edges.iter().filter(|e| shown(&e.from) && shown(&e.to)) {
                        let curve = diagram.edge_curve(edge).unwrap();
                        // Every point of the drawn curve (a finer sampling
                        // than the crop's own).
                        for t in 0..=100 {
                            let (_, y) = crate::diagram::Diagram::point_on(&curve, f64::from(t) / 100.0);
                            assert!(
                                y < height,
                                "{}: {}: {edge:?} at {y} > {height}",
                                lesson.id,
                                step.title
                            );
                            if y >= boxes_only {
                                cut_by_the_boxes_alone.push((lesson.id, edge.label.clone()));
                            }
                        }
                        // The label and the herd's count, to the bottom of
                        // their letters (3 under the baseline, and a margin).
                        let (_, label, _) = diagram.label_place(edge).unwrap();
                        let (_, count, _) = diagram.count_place(edge).unwrap();
                        assert!(
                            label.max(count) + 4.0 <= height,
                            "{}: {}: {edge:?}",
                            lesson.id,
                            step.title
                        );
                    }
                }
            }
        }
        // Cropping to the boxes alone (as the page once did) cut curves off.
        assert!(
            cut_by_the_boxes_alone.iter().any(|(lesson, _)| *lesson == "race"),
            "{cut_by_the_boxes_alone:?}"
        );
    }

    #[test]
    fn every_lesson_has_steps_and_unique_ids() {
        let mut ids: Vec<&str> = LESSONS.iter().map(|l| l.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), LESSONS.len());
        for lesson in LESSONS {
            assert!(!lesson.steps.is_empty(), "{}", lesson.id);
            for step in lesson.steps {
                assert!(!step.run.is_empty(), "{}: {}", lesson.id, step.title);
                assert!(step.parts.contains(&Part::Read));
            }
        }
    }

    #[test]
    fn every_step_is_settable_on_a_real_sandbox() {
        let current = SandboxSettings::default();
        for lesson in LESSONS {
            for step in lesson.steps {
                let settings = settings_for(step, &current);
                assert_eq!(settings.validate(), Ok(()), "{}: {}", lesson.id, step.title);
            }
        }
    }

    #[test]
    fn positions_round_trip_through_the_address() {
        let at = Position::from_query("null-values", Some("2")).unwrap();
        assert_eq!(at.step().title, "The fix: cache \"not found\" too");
        // Written with the step's id, which stays when steps move.
        assert_eq!(at.query(), "lesson=null-values&step=cache-not-found");
        assert_eq!(
            Position::from_query("null-values", Some("cache-not-found")),
            Some(at)
        );
        let xfetch = Position::from_query("stampede", Some("xfetch")).unwrap();
        assert_eq!(xfetch.step().title, "Refresh early, before the key expires");
        // A step the lesson does not have: the first, and the page says so.
        for (step, none) in [
            (None, false),
            (Some(""), false),
            (Some("2"), false),
            (Some("99"), true),
            (Some("0"), true),
            (Some("x"), true),
        ] {
            let shown = Position::from_query("null-values", step).unwrap().step;
            assert_eq!(shown, if step == Some("2") { 1 } else { 0 }, "{step:?}");
            assert_eq!(Position::names_no_step("null-values", step), none, "{step:?}");
        }
        assert_eq!(Position::from_query("no-such-lesson", None), None);
        assert!(!Position::names_no_step("no-such-lesson", Some("1")));
    }

    /// Step ids name steps in addresses and saved progress: each unique in
    /// its lesson, and never a number (numbers are read as positions).
    #[test]
    fn every_step_has_an_id_of_its_own() {
        for lesson in LESSONS {
            for (n, step) in lesson.steps.iter().enumerate() {
                assert!(
                    !step.id.is_empty()
                        && step
                            .id
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && step.id.parse::<u64>().is_err(),
                    "{}: {:?}",
                    lesson.id,
                    step.id
                );
                assert_eq!(
                    lesson.steps.iter().position(|s| s.id == step.id),
                    Some(n),
                    "{}: {} twice",
                    lesson.id,
                    step.id
                );
            }
        }
    }

    /// The sensitive-data lesson's answers: what the run's SET carried for
    /// the phone number, and what the read after a delete returned.
    #[test]
    fn the_sensitive_data_answers_come_from_the_traces_and_the_reads() {
        let mut observed = Observed::default();
        assert_eq!(phone_in_the_clear(&observed), None, "no SET seen");
        observed.cached_phones = vec!["+1 415 555 0142".into()];
        assert_eq!(phone_in_the_clear(&observed), Some(0));
        observed.cached_phones = vec!["enc:v1:boot:QUJD".into(), "+1 415 555 0142".into()];
        assert_eq!(phone_in_the_clear(&observed), Some(1), "the run's first SET");

        let mut observed = Observed {
            reads: vec![read(Outcome::Miss), read(Outcome::Hit)],
            ..Observed::default()
        };
        assert_eq!(deleted_record_served(&observed), None, "no delete yet");
        observed.writes = vec![crate::WriteResult {
            kind: Kind::Users,
            id: USER,
            found: true,
            record: None,
            cache: crate::CacheEffect::NoRecord,
            latency_us: 1,
            trace_id: None,
            sandbox: crate::SandboxId::default_sandbox(),
        }];
        assert_eq!(deleted_record_served(&observed), Some(0));
        observed.reads.last_mut().unwrap().found = false;
        assert_eq!(deleted_record_served(&observed), Some(1));
    }

    #[test]
    fn the_memory_lessons_answers_come_from_the_fills() {
        let fill = |hits: u64, evicted: u64, refused: u64| crate::FillResult {
            spec: crate::FillSpec::default(),
            memory: crate::MemorySettings::default(),
            stored: 100,
            store_failures: refused,
            hits,
            misses: 10,
            fallbacks: 0,
            evicted,
            keys_left: 50,
            used_memory: 1 << 21,
            duration_ms: 5,
        };
        let at = Position::from_query("memory", Some("1")).unwrap();
        assert!(at.step().needs_own_redis());
        assert!(!Position::from_query("ttl", Some("1"))
            .unwrap()
            .step()
            .needs_own_redis());
        let observed = Observed {
            fills: vec![fill(5, 0, 700)],
            ..Observed::default()
        };
        assert_eq!(at.step().check.judge(Some(&observed), "700"), Verdict::Right);
        let volatile = Position::from_query("memory", Some("3")).unwrap().step().check;
        assert_eq!(
            volatile.judge(Some(&observed), "1"),
            Verdict::Right,
            "refused, nothing evicted"
        );
        let evicting = Observed {
            fills: vec![fill(5, 300, 0)],
            ..Observed::default()
        };
        assert_eq!(volatile.judge(Some(&evicting), "0"), Verdict::Right);
        let compare = Position::from_query("memory", Some("4")).unwrap().step().check;
        let second_better = Observed {
            fills: vec![fill(5, 1, 0), fill(9, 1, 0)],
            ..Observed::default()
        };
        assert_eq!(compare.judge(Some(&second_better), "1"), Verdict::Right);
        let first_better = Observed {
            fills: vec![fill(9, 1, 0), fill(5, 1, 0)],
            ..Observed::default()
        };
        assert_eq!(compare.judge(Some(&first_better), "0"), Verdict::Right);
        assert_eq!(
            compare.judge(Some(&evicting), "0"),
            Verdict::NotRun,
            "one fill compares nothing"
        );
    }

    #[test]
    fn continue_and_back_walk_the_whole_path() {
        let mut at = Position { lesson: 0, step: 0 };
        let mut steps = 1;
        while let Some(next) = at.next() {
            assert_eq!(next.back(), Some(at));
            at = next;
            steps += 1;
        }
        assert_eq!(steps, LESSONS.iter().map(|l| l.steps.len()).sum::<usize>());
        assert_eq!(Position { lesson: 0, step: 0 }.back(), None);
    }

    #[test]
    fn progress_survives_encoding_and_drops_what_it_does_not_know() {
        let mut progress = Progress::default();
        let null_values = Position::from_query("null-values", Some("2")).unwrap();
        progress.mark(null_values);
        progress.mark(Position { lesson: 0, step: 0 });
        let line = progress.encode();
        assert_eq!(line, "basics:cold-read null-values:cache-not-found");
        let back = Progress::decode(&format!(
            "{line} gone:1 basics:99 basics:renamed basics: nonsense"
        ));
        assert_eq!(back, progress);
        // Kept by number before steps had ids: today's step of that number.
        assert_eq!(Progress::decode("null-values:2 basics:1"), progress);
        assert_eq!(back.first_open(), Position { lesson: 0, step: 1 });
        assert_eq!(back.lesson_done(null_values.lesson), 1);
    }

    fn read(outcome: Outcome) -> crate::ReadResult {
        crate::ReadResult {
            kind: Kind::Users,
            id: USER,
            outcome,
            found: true,
            record: None,
            latency_us: 1,
            trace_id: None,
            sandbox: crate::SandboxId::default_sandbox(),
        }
    }

    #[test]
    fn answers_are_judged_against_what_happened() {
        let check = LESSONS[0].steps[2].check;
        assert_eq!(check.judge(None, "1"), Verdict::NotRun);
        let mut observed = Observed::default();
        observed.reads.push(read(Outcome::Miss));
        for _ in 0..9 {
            observed.reads.push(read(Outcome::Hit));
        }
        assert_eq!(check.judge(Some(&observed), " 1 "), Verdict::Right);
        assert_eq!(check.judge(Some(&observed), "10"), Verdict::Wrong);
        assert_eq!(check.judge(Some(&observed), "one"), Verdict::Wrong);
        assert_eq!(check.judge(Some(&observed), "  "), Verdict::Unanswered);
        // Had the database been asked every time, 10 would be right.
        let every_time = Observed {
            reads: vec![read(Outcome::Miss); 10],
            ..Observed::default()
        };
        assert_eq!(check.judge(Some(&every_time), "10"), Verdict::Right);

        let source = LESSONS[0].steps[1].check;
        assert_eq!(source.judge(Some(&observed), "1"), Verdict::Right);
        assert_eq!(source.answer_text(&observed).as_deref(), Some("Redis"));
    }

    #[test]
    fn the_first_lesson_shows_only_the_read_path() {
        let parts = LESSONS[0].steps[0].parts;
        assert!(shows(parts, &nodes::QUERY_DATABASE));
        assert!(!shows(parts, &nodes::LOCK));
        assert!(!shows(parts, &nodes::WRITE_REQUEST));
    }
}
