//! The WebSocket to the back end: connects, greets, dispatches messages to
//! [`AppState::apply`], and reconnects with backoff when the link drops.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use shared::{
    ClientMessage, HerdSpec, Kind, NodeId, SandboxId, SandboxSettings, Scenario, ServerMessage, WriteChange,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::lessons::Position;
use crate::replay::Player;
use crate::runner::{Command, Run};
use crate::state::{AppState, Link};
use leptos::prelude::*;
use shared::recording::{site_file, RecordingEntry, SentKind, RECORDINGS_DIR, REPLAY_META, SITE_INDEX};
use shared::wire::{from_binary, read_frame, to_binary, Frame, Received, BINARY_PARAM};

/// A recording as the page reads it: the messages it sent known by kind
/// alone.
type Recording = shared::recording::Recording<SentKind>;

/// How long an experiment may wait for one answer before it gives up.
const RUN_WATCHDOG_MS: u32 = 120_000;

/// Longest wait between reconnection attempts, in milliseconds.
const MAX_BACKOFF_MS: u32 = 8_000;

/// The connection. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Connection {
    inner: Rc<Inner>,
}

struct Inner {
    state: AppState,
    socket: RefCell<Option<WebSocket>>,
    next_request_id: Cell<u64>,
    attempt: Cell<u32>,
    /// Counts experiments started, so a timer of an abandoned one does
    /// not move a newer one on.
    runs: Cell<u64>,
    /// Whether the settings in the page's address were applied.
    address_settings_done: Cell<bool>,
    /// Set on a page that replays recordings instead of connecting.
    replay: Option<Replay>,
    /// Counts sockets opened and pages put away: a socket's close or a
    /// retry's timer from an older one is ignored, so there is never more
    /// than one socket.
    generation: Cell<u64>,
    /// Whether the browser has put the page away (its back-forward cache).
    away: Cell<bool>,
    /// Whether the page asked for a sandbox with a redis-server of its own
    /// (`?redis=private`): asked again on every reconnection, and kept in
    /// the address for a reload.
    private: bool,
}

/// The request id of a message whose answer the page waits for (its
/// buttons say "Running…" meanwhile); `None` for settings, polls and
/// other messages answered in passing, or not at all.
fn awaited(message: &ClientMessage) -> Option<u64> {
    match message {
        ClientMessage::Read { request_id, .. }
        | ClientMessage::Write { request_id, .. }
        | ClientMessage::RunHerd { request_id, .. }
        | ClientMessage::RunScenario { request_id, .. }
        | ClientMessage::ComparePatterns { request_id, .. }
        | ClientMessage::CheckDivergence { request_id }
        | ClientMessage::Fill { request_id, .. }
        | ClientMessage::RelatedKeys { request_id, .. }
        | ClientMessage::CompareEncodings { request_id, .. } => Some(*request_id),
        _ => None,
    }
}

/// The recordings a static build ships, and the one being played.
#[derive(Default)]
struct Replay {
    /// What `recordings/index.bin` lists.
    index: RefCell<Vec<RecordingEntry>>,
    /// Recordings fetched so far, by lesson id.
    loaded: RefCell<HashMap<String, Rc<Recording>>>,
    /// The step being played.
    player: RefCell<Option<Player>>,
    /// Messages due to the page, oldest first; each has a timer.
    due: RefCell<VecDeque<ServerMessage>>,
    /// Grows when the queue is flushed, so older timers do nothing.
    generation: Cell<u64>,
    /// Grows with every run asked for, so one whose recording arrives
    /// after a newer one was asked for does not start.
    asked: Cell<u64>,
}

/// Whether this page replays recordings: a static build marks its pages
/// (`<meta name="cache-aside-playground-replay">`), and an address naming
/// a back end (`?backend=URL`) goes live instead.
pub fn replay_mode() -> bool {
    let marked = document()
        .query_selector(&format!("meta[name={REPLAY_META}]"))
        .ok()
        .flatten()
        .is_some();
    marked && backend_root().is_none()
}

/// The back end the address names (`?backend=https://host/path`), as a
/// root ending in `/`; only `http` and `https` addresses count.
pub fn backend_root() -> Option<String> {
    let named = page_param("backend")?;
    let named = named.trim();
    if !(named.starts_with("http://") || named.starts_with("https://")) {
        return None;
    }
    Some(if named.ends_with('/') {
        named.to_string()
    } else {
        format!("{named}/")
    })
}

/// What a message the page cannot send while replaying would have done.
fn needs_back_end(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Read { .. } => "A new read would ask Redis for the key and, on a miss, the database",
        ClientMessage::Write { .. } => "A write would change the database and then the cache",
        ClientMessage::UpdateSettings { .. } => {
            "Changing a setting would change how the sandbox's instances cache"
        }
        ClientMessage::RunHerd { .. } => "A herd would send many reads of one key at once",
        ClientMessage::Reset => "A reset would empty the sandbox's cache and records",
        _ => "This would ask the back end to act",
    }
}

/// Where the page keeps its sandbox's name, so a reload (or a new
/// connection) watches the same sandbox.
const STORED_SANDBOX: &str = "playground-sandbox";

/// The close code with which the server refuses a session for good.
const CLOSE_POLICY: u16 = 1008;
/// "Try again later": before a greeting, a session refused for now (a
/// limit that frees up: the playground full, every private redis-server in
/// use); the server also closes a live session with it.
const CLOSE_TRY_AGAIN: u16 = 1013;

/// The playground's root address, `http://host/` or
/// `https://docs.example.com/playground/`: the document's base (an embed
/// page sets one) up to its last `/`. Every address the app builds is
/// relative to it, so it works under any path prefix.
pub fn app_root() -> String {
    let base = document()
        .base_uri()
        .ok()
        .flatten()
        .unwrap_or_else(|| window().location().href().unwrap_or_default());
    root_of(&base)
}

/// `base` without its query, fragment and last path segment.
pub fn root_of(base: &str) -> String {
    let base = base.split(['?', '#']).next().unwrap_or(base);
    match base.rfind('/') {
        Some(slash) if slash > base.find("//").map_or(0, |i| i + 1) => base[..=slash].to_string(),
        _ => format!("{base}/"),
    }
}

/// The WebSocket URL beside the page, asking for `sandbox` (without one
/// the server opens a new sandbox for the page). `private`: the page's
/// sandbox has a redis-server of its own, so if it is gone (reaped while
/// the page was away) the one made in its place gets one too.
pub fn socket_url(sandbox: Option<&SandboxId>, private: bool) -> String {
    let root = backend_root().unwrap_or_else(app_root);
    let root = match root.strip_prefix("https") {
        Some(rest) => format!("wss{rest}"),
        None => root.replacen("http", "ws", 1),
    };
    // The page reads and sends the protocol's compact binary form.
    let wire = format!("{}={}", BINARY_PARAM.0, BINARY_PARAM.1);
    match sandbox {
        // Sandbox names are letters, digits, `-` and `_`: nothing to escape.
        Some(sandbox) if private => format!("{root}ws?sandbox={sandbox}&redis=private&{wire}"),
        Some(sandbox) => format!("{root}ws?sandbox={sandbox}&{wire}"),
        // A new sandbox, with a redis-server of its own if the page asks.
        None if private => format!("{root}ws?redis=private&{wire}"),
        None => format!("{root}ws?{wire}"),
    }
}

/// A parameter of the page's address.
pub fn page_param(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(name)
}

/// The sandbox this tab watched before (a reload), if any. Embedded
/// pages keep theirs in memory only: frames of one page share the tab's
/// `sessionStorage`, and two embedded lessons must not share a sandbox.
pub fn stored_sandbox() -> Option<SandboxId> {
    if crate::embed::is_embedded() {
        return None;
    }
    window()
        .session_storage()
        .ok()
        .flatten()?
        .get_item(STORED_SANDBOX)
        .ok()
        .flatten()
        .and_then(|name| SandboxId::parse(&name).ok())
}

/// Remembers the sandbox the server gave this tab; if the page's address
/// names another (one that had expired), the address follows, so a reload
/// does not ask for the expired one again.
fn remember_sandbox(sandbox: &SandboxId) {
    let window = window();
    if crate::embed::is_embedded() {
        return;
    }
    if let Some(storage) = window.session_storage().ok().flatten() {
        let _ = storage.set_item(STORED_SANDBOX, sandbox.as_str());
    }
    let Ok(search) = window.location().search() else {
        return;
    };
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
        return;
    };
    // `?redis=private` asked for a new sandbox: from now on the address
    // names the one made, so a reload keeps it rather than make another.
    // It keeps `redis=private` too: the server joins a sandbox that still
    // exists, and makes one with a server of its own if it was reclaimed.
    let asked_new = params.get("redis").is_some();
    if asked_new
        || params
            .get("sandbox")
            .is_some_and(|named| named != sandbox.as_str())
    {
        params.set("sandbox", sandbox.as_str());
        let address = format!("?{}", String::from(params.to_string()));
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&address));
        }
    }
}

impl Connection {
    /// Opens the connection (and keeps reopening it when it drops).
    pub fn open(state: AppState) -> Connection {
        let connection = Connection {
            inner: Rc::new(Inner {
                state,
                socket: RefCell::new(None),
                next_request_id: Cell::new(1),
                attempt: Cell::new(1),
                runs: Cell::new(0),
                address_settings_done: Cell::new(false),
                replay: replay_mode().then(Replay::default),
                generation: Cell::new(0),
                away: Cell::new(false),
                private: page_param("redis").as_deref() == Some("private"),
            }),
        };
        if connection.inner.replay.is_some() {
            connection.open_recordings();
        } else {
            connection.follow_page_lifecycle();
            connection.connect();
        }
        connection
    }

    /// A browser may keep a page the reader left alive in its back-forward
    /// cache, socket and all, for minutes: its sandbox would still count as
    /// watched, so neither it nor a redis-server of its own would be
    /// reclaimed (Chromium does this). So the socket closes when the page
    /// is put away, and opens again if the reader comes back to it.
    fn follow_page_lifecycle(&self) {
        let this = self.clone();
        let on_hide = Closure::<dyn FnMut(web_sys::PageTransitionEvent)>::new(
            move |event: web_sys::PageTransitionEvent| {
                if !event.persisted() {
                    return; // Unloaded for good: the socket goes with it.
                }
                if matches!(
                    this.inner.state.link.get_untracked(),
                    Link::Refused | Link::Incompatible { .. }
                ) {
                    return; // Stopped for good: nothing to close or reopen.
                }
                this.inner.away.set(true);
                this.inner.generation.set(this.inner.generation.get() + 1);
                if let Some(socket) = this.inner.socket.borrow_mut().take() {
                    let _ = socket.close();
                }
                this.lost_socket("The page was left during the experiment; run it again.");
            },
        );
        let this = self.clone();
        let on_show = Closure::<dyn FnMut(web_sys::PageTransitionEvent)>::new(
            move |event: web_sys::PageTransitionEvent| {
                if event.persisted() && this.inner.away.replace(false) {
                    this.inner.attempt.set(1);
                    this.connect();
                }
            },
        );
        let window = web_sys::window().expect("a window");
        let _ = window.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("pageshow", on_show.as_ref().unchecked_ref());
        on_hide.forget();
        on_show.forget();
    }

    /// What a socket's end means for the page: requests in flight on it
    /// will never be answered, and an experiment waiting on one fails.
    fn lost_socket(&self, why: &str) {
        let state = self.inner.state;
        state.forget_in_flight();
        if state.experimenting() {
            state.run.update(|run| {
                if let Some(run) = run {
                    run.fail(why.into());
                }
            });
        }
    }

    /// Asks the back end to read a record. Returns `false` (and says why on
    /// the page) when not connected.
    pub fn read(&self, kind: Kind, id: u64) -> bool {
        self.read_stepping(kind, id, Vec::new())
    }

    /// Reads a record, pausing before the steps at `pause_before`.
    pub fn read_stepping(&self, kind: Kind, id: u64, pause_before: Vec<NodeId>) -> bool {
        let request_id = self.next_request_id();
        let instance = self.inner.state.target_instance.get_untracked();
        let message = ClientMessage::Read {
            request_id,
            kind,
            id,
            pause_before,
            instance,
        };
        self.send(&message)
    }

    /// Cuts or restores an instance's Pub/Sub subscription.
    pub fn set_instance_link(&self, instance: String, connected: bool) -> bool {
        self.send(&ClientMessage::SetInstanceLink { instance, connected })
    }

    /// Fires a herd of concurrent reads.
    pub fn run_herd(&self, herd: HerdSpec) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::RunHerd { request_id, herd })
    }

    /// Lets a paused operation go on.
    pub fn continue_operation(&self, operation_id: u64) -> bool {
        self.send(&ClientMessage::Continue { operation_id })
    }

    /// Runs a preset scenario.
    pub fn run_scenario(&self, scenario: Scenario) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::RunScenario { request_id, scenario })
    }

    /// Asks the back end to change or remove a record.
    pub fn write(&self, kind: Kind, id: u64, change: WriteChange) -> bool {
        let request_id = self.next_request_id();
        let instance = self.inner.state.target_instance.get_untracked();
        let message = ClientMessage::Write {
            request_id,
            kind,
            id,
            change,
            instance,
        };
        self.send(&message)
    }

    /// Runs the seeded workload through every caching pattern.
    pub fn compare_patterns(&self, seed: u64) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::ComparePatterns { request_id, seed })
    }

    /// Starts a steady load in the sandbox.
    pub fn start_load(&self, load: shared::LoadSpec) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::StartLoad { request_id, load })
    }

    /// Asks for Redis's own figures, in the background (the Redis card
    /// polls): nothing is pending, and the page's notice is left alone; a
    /// failure is shown in the card (see [`AppState::redis_request`]).
    pub fn redis_info(&self) -> bool {
        let request_id = self.next_request_id();
        let sent = self.transmit(&ClientMessage::RedisInfo { request_id });
        if sent {
            self.inner.state.redis_request.set(Some(request_id));
        }
        sent
    }

    /// Breaks or mends the sandbox's Redis, or warms its cache (see
    /// [`shared::FaultAction`]); with `None`, asks for the fault lab's
    /// report alone, quietly.
    pub fn fault(&self, action: Option<shared::FaultAction>) -> bool {
        let request_id = self.next_request_id();
        let message = ClientMessage::Fault { request_id, action };
        match action {
            Some(_) => self.send(&message),
            None => self.transmit(&message),
        }
    }

    /// Asks for the sandbox's server's memory limit and policy.
    pub fn memory(&self) -> bool {
        let request_id = self.next_request_id();
        self.transmit(&ClientMessage::Memory { request_id })
    }

    /// Sets the memory limit and policy of the sandbox's own server.
    pub fn set_memory(&self, memory: shared::MemorySettings) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::SetMemory { request_id, memory })
    }

    /// Fills the sandbox's own server past its limit, after giving it
    /// `memory` if set.
    pub fn fill(&self, fill: shared::FillSpec, memory: Option<shared::MemorySettings>) -> bool {
        let request_id = self.next_request_id();
        let sent = self.send(&ClientMessage::Fill {
            request_id,
            fill,
            memory,
        });
        if sent {
            self.inner.state.fill_request.set(Some(request_id));
        }
        sent
    }

    /// Runs the related-keys experiment.
    pub fn related_keys(&self, spec: shared::RelatedSpec) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::RelatedKeys { request_id, spec })
    }

    /// Measures a record under every value encoding.
    pub fn compare_encodings(&self, kind: Kind, id: u64, padding_bytes: u64) -> bool {
        let request_id = self.next_request_id();
        let message = ClientMessage::CompareEncodings {
            request_id,
            kind,
            id,
            padding_bytes,
        };
        self.send(&message)
    }

    /// Lists the sandbox's keys in Redis.
    pub fn inspect_keys(&self) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::InspectKeys { request_id })
    }

    /// Stops the sandbox's load.
    pub fn stop_load(&self) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::StopLoad { request_id })
    }

    /// Asks the back end to compare the cache with the database.
    pub fn check_divergence(&self) -> bool {
        let request_id = self.next_request_id();
        self.send(&ClientMessage::CheckDivergence { request_id })
    }

    /// Asks the back end to replace the sandbox's settings.
    pub fn update_settings(&self, settings: SandboxSettings) -> bool {
        self.send(&ClientMessage::UpdateSettings { settings })
    }

    /// Asks the back end to put the sandbox back as it started.
    pub fn reset(&self) -> bool {
        self.send(&ClientMessage::Reset)
    }

    /// A shared setup (`?ttl=5&stampede=lock...`): applied once, after the
    /// first greeting, unless a lesson sets the sandbox up itself.
    fn apply_address_settings(&self) {
        if self.inner.address_settings_done.replace(true) {
            return;
        }
        let state = self.inner.state;
        if state.lesson.get_untracked().is_some() {
            return;
        }
        let Ok(search) = window().location().search() else {
            return;
        };
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return;
        };
        let pairs: Vec<(String, String)> = shared::settings::QUERY_NAMES
            .iter()
            .filter_map(|name| params.get(name).map(|value| (name.to_string(), value)))
            .collect();
        if pairs.is_empty() {
            return;
        }
        let Some(current) = state.settings.get_untracked() else {
            return;
        };
        match current.with_query(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            Ok(settings) => {
                self.update_settings(settings);
            }
            Err(error) => state
                .notice
                .set(Some(format!("The address's settings were not applied: {error}"))),
        }
    }

    /// Runs the experiment of lesson step `at` on this page's sandbox (on
    /// a replaying page: plays its recording).
    pub fn start_run(&self, at: Position) {
        if self.inner.replay.is_some() {
            self.start_replay(at);
            return;
        }
        self.begin_run(at);
    }

    fn begin_run(&self, at: Position) {
        let state = self.inner.state;
        let Some(settings) = state.settings.get_untracked() else {
            state.notice.set(Some(
                "Not connected to the back end yet; try again in a moment.".into(),
            ));
            return;
        };
        let instances = state
            .instances
            .with_untracked(|i| i.iter().map(|i| i.name.clone()).collect());
        let (mut run, first) = Run::start(at, &settings, instances);
        // A replayed run answers with the recording's ids: a recorded step
        // is a run of its own, numbered from the first block.
        if self.inner.replay.is_none() {
            run.number(self.inner.runs.get());
        }
        self.inner.runs.set(self.inner.runs.get() + 1);
        state.run.set(Some(run));
        self.execute(first);
    }

    /// Carries out what an experiment asks for next.
    fn execute(&self, command: Command) {
        let state = self.inner.state;
        self.watch_run();
        match command {
            Command::Send(message) => {
                if self.inner.replay.is_some() {
                    self.play(&message);
                } else if !self.send(&message) {
                    state.run.update(|run| {
                        if let Some(run) = run {
                            run.fail("Not connected to the back end; run it again in a moment.".into());
                        }
                    });
                }
            }
            Command::Wait(ms) => {
                let this = self.clone();
                let serial = self.inner.runs.get();
                Timeout::new(ms, move || {
                    if this.inner.runs.get() != serial {
                        return;
                    }
                    let next = state
                        .run
                        .try_update(|run| run.as_mut().and_then(Run::on_timer))
                        .flatten();
                    if let Some(command) = next {
                        this.execute(command);
                    }
                })
                .forget();
            }
        }
    }

    /// Fails the run if it has not moved for [`RUN_WATCHDOG_MS`]: a lost
    /// message must never leave the button disabled for good.
    fn watch_run(&self) {
        let state = self.inner.state;
        let serial = self.inner.runs.get();
        let Some(at_progress) = state.run.with_untracked(|r| r.as_ref().map(Run::progress)) else {
            return;
        };
        let this = self.clone();
        Timeout::new(RUN_WATCHDOG_MS, move || {
            if this.inner.runs.get() != serial {
                return;
            }
            state.run.update(|run| {
                if let Some(run) = run
                    .as_mut()
                    .filter(|r| r.is_running() && r.progress() == at_progress)
                {
                    let why = run.stalled();
                    run.fail(why);
                }
            });
        })
        .forget();
    }

    fn next_request_id(&self) -> u64 {
        let id = self.inner.next_request_id.get();
        self.inner.next_request_id.set(id + 1);
        id
    }

    /// Sends a message if connected; one that awaits its answer (see
    /// [`awaited`]) is counted until the answer (or a refusal) comes.
    fn send(&self, message: &ClientMessage) -> bool {
        let state = self.inner.state;
        if self.inner.replay.is_some() {
            state.notice.set(Some(format!(
                "{}: that needs a live back end, and this page replays a recording. Each lesson step's run \
                 button replays what its experiment did; add ?backend=URL to the address to run your own.",
                needs_back_end(message)
            )));
            return false;
        }
        let sent = self.transmit(message);
        if sent {
            if let Some(request_id) = awaited(message) {
                state.awaiting(request_id);
            }
            state.notice.set(None);
        } else {
            state.notice.set(Some(
                "Not connected to the back end yet; try again in a moment.".into(),
            ));
        }
        sent
    }

    /// Puts a message on the socket if it is open; says whether it did.
    fn transmit(&self, message: &ClientMessage) -> bool {
        if self.inner.replay.is_some() {
            return false;
        }
        let bytes = to_binary(message);
        self.inner
            .socket
            .borrow()
            .as_ref()
            .filter(|s| s.ready_state() == WebSocket::OPEN)
            .is_some_and(|s| s.send_with_u8_array(&bytes).is_ok())
    }

    /// A replaying page: reads the build's list of recordings, then greets
    /// the page with the recording of its lesson (the first listed when
    /// the address names none, or one not recorded).
    fn open_recordings(&self) {
        let this = self.clone();
        leptos::task::spawn_local(async move {
            let state = this.inner.state;
            let index_url = format!("{}{RECORDINGS_DIR}/{SITE_INDEX}", app_root());
            let index = match fetch_bytes(&index_url).await.and_then(|bytes| {
                from_binary::<Vec<RecordingEntry>>(&bytes).map_err(|e| format!("{index_url}: {e}"))
            }) {
                Ok(index) if !index.is_empty() => index,
                Ok(_) => {
                    return this
                        .refuse("This build has no recordings: `cargo xtask record` makes them.".into())
                }
                Err(why) => return this.refuse(format!("The recordings could not be read: {why}")),
            };
            let wanted = crate::components::lesson::position_from_address().map(|at| at.lesson().id);
            let lesson = index
                .iter()
                .find(|e| Some(e.lesson.as_str()) == wanted)
                .unwrap_or(&index[0])
                .lesson
                .clone();
            *this.replay().index.borrow_mut() = index;
            match this.recording(&lesson).await {
                Ok(recording) => {
                    state.recorded.set(Some(recording.entry()));
                    this.receive(recording.hello.clone());
                }
                Err(why) => this.refuse(why),
            }
        });
    }

    fn replay(&self) -> &Replay {
        self.inner
            .replay
            .as_ref()
            .expect("only a replaying page plays recordings")
    }

    /// The page cannot go on: says why, and tries no more.
    fn refuse(&self, why: String) {
        self.inner.state.notice.set(Some(why));
        self.inner.state.link.set(Link::Refused);
    }

    /// The recording of `lesson`, fetched once.
    async fn recording(&self, lesson: &str) -> Result<Rc<Recording>, String> {
        if let Some(recording) = self.replay().loaded.borrow().get(lesson) {
            return Ok(recording.clone());
        }
        if !self.replay().index.borrow().iter().any(|e| e.lesson == lesson) {
            return Err(format!(
                "This build has no recording of the lesson `{lesson}`; add ?backend=URL to the address to run it live."
            ));
        }
        let url = format!("{}{RECORDINGS_DIR}/{}", app_root(), site_file(lesson));
        let bytes = fetch_bytes(&url).await?;
        let recording: Recording =
            from_binary(&bytes).map_err(|e| format!("The recording {url} cannot be read: {e}"))?;
        if let Some(why) = recording.problem() {
            return Err(format!("The recording {url} cannot be played: {why}"));
        }
        let recording = Rc::new(recording);
        self.replay()
            .loaded
            .borrow_mut()
            .insert(lesson.to_string(), recording.clone());
        Ok(recording)
    }

    /// Plays step `at` of its lesson's recording through the experiment
    /// runner, as a live run would go.
    fn start_replay(&self, at: Position) {
        let asked = self.replay().asked.get() + 1;
        self.replay().asked.set(asked);
        let this = self.clone();
        leptos::task::spawn_local(async move {
            let state = this.inner.state;
            let recording = this.recording(at.lesson().id).await;
            // A newer run was asked for while this one's recording came.
            if this.replay().asked.get() != asked {
                return;
            }
            let recording = match recording {
                Ok(recording) => recording,
                Err(why) => {
                    state.notice.set(Some(why));
                    return;
                }
            };
            let Some(step) = recording.steps.get(at.step) else {
                return;
            };
            this.flush_due();
            *this.replay().player.borrow_mut() = Some(Player::new(step));
            state.recorded.set(Some(recording.entry()));
            this.begin_run(at);
        });
    }

    /// The experiment sent `message`: hands the page what the back end
    /// answered in the recording, at the recorded pace.
    fn play(&self, message: &ClientMessage) {
        self.flush_due();
        let played = self
            .replay()
            .player
            .borrow_mut()
            .as_mut()
            .map(|player| player.on_send(message));
        let (overdue, later) = match played {
            Some(Ok(answers)) => answers,
            Some(Err(why)) => {
                self.inner.state.run.update(|run| {
                    if let Some(run) = run {
                        run.fail(why);
                    }
                });
                return;
            }
            None => return,
        };
        for message in overdue {
            self.receive(message);
        }
        let generation = self.replay().generation.get();
        for delivery in later {
            self.replay().due.borrow_mut().push_back(delivery.message);
            let this = self.clone();
            let ms = u32::try_from(delivery.after_ms).unwrap_or(u32::MAX);
            Timeout::new(ms, move || {
                if this.replay().generation.get() != generation {
                    return;
                }
                let next = this.replay().due.borrow_mut().pop_front();
                if let Some(message) = next {
                    this.receive(message);
                }
            })
            .forget();
        }
    }

    /// Hands out at once whatever is still due (the experiment moved on,
    /// as it did when recorded, after these had arrived).
    fn flush_due(&self) {
        let replay = self.replay();
        replay.generation.set(replay.generation.get() + 1);
        let due: Vec<ServerMessage> = replay.due.borrow_mut().drain(..).collect();
        for message in due {
            self.receive(message);
        }
    }

    /// Hands a message from the back end (or from a recording) to the
    /// experiment under way and to the page's state.
    fn receive(&self, message: ServerMessage) {
        let state = self.inner.state;
        // A lesson's experiment waits for some of these.
        let before = state.run.with_untracked(|r| r.as_ref().map(Run::progress));
        let next = state
            .run
            .try_update(|run| run.as_mut().and_then(|run| run.on_message(&message)))
            .flatten();
        // Moved on, yet nothing to send (a write's or the last
        // traces are awaited): watch that wait too.
        let moved = state.run.with_untracked(|r| r.as_ref().map(Run::progress)) != before;
        if next.is_none() && moved && state.experimenting() {
            self.watch_run();
        }
        let greeted = matches!(message, ServerMessage::Hello { .. });
        // A sandbox another replica took over starts with the default
        // settings: the page puts back the ones it had.
        let restore = match &message {
            ServerMessage::Hello { moved: true, .. } => state.settings.get_untracked(),
            _ => None,
        };
        state.apply(message);
        if let Some(settings) = restore {
            self.update_settings(settings);
        }
        if greeted {
            self.apply_address_settings();
            mark_interactive();
        }
        if let Some(command) = next {
            self.execute(command);
        }
    }

    fn connect(&self) {
        let state = self.inner.state;
        state.link.set(Link::Connecting {
            attempt: self.inner.attempt.get(),
        });
        let url = socket_url(state.sandbox.get_untracked().as_ref(), self.inner.private);
        let socket = match WebSocket::new(&url) {
            Ok(socket) => socket,
            Err(_) => {
                self.retry_later(false);
                return;
            }
        };

        let this = self.clone();
        // Binary frames: the protocol's compact form (`shared::wire`).
        socket.set_binary_type(web_sys::BinaryType::Arraybuffer);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            let received = match data.dyn_ref::<js_sys::ArrayBuffer>() {
                Some(buffer) => read_frame(Frame::Binary(&js_sys::Uint8Array::new(buffer).to_vec())),
                None => read_frame(Frame::Text(&data.as_string().unwrap_or_default())),
            };
            match received {
                Received::Message(message) => {
                    if let ServerMessage::Hello { sandbox, .. } = message.as_ref() {
                        remember_sandbox(sandbox);
                        // Greeted, not merely connected: a refusal (the
                        // socket opens, then closes) keeps backing off.
                        this.inner.attempt.set(1);
                    }
                    this.receive(*message);
                }
                // Nothing more this page can read from that back end: it
                // stops there and says which version it met.
                Received::OtherVersion(server) => {
                    state.link.set(Link::Incompatible { server });
                    if let Some(socket) = this.inner.socket.borrow().as_ref() {
                        let _ = socket.close();
                    }
                }
                Received::Unreadable(why) => state
                    .notice
                    .set(Some(format!("Could not read a message from the back end: {why}"))),
            }
        });
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();

        let this = self.clone();
        let generation = self.inner.generation.get() + 1;
        self.inner.generation.set(generation);
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            if this.inner.generation.get() != generation {
                return; // Closed when the page was put away, and dealt with then.
            }
            this.inner.socket.borrow_mut().take();
            this.lost_socket("The connection dropped during the experiment; run it again.");
            if event.code() == CLOSE_POLICY {
                // Refused for good; the server said why in a notice.
                this.inner.state.link.set(Link::Refused);
            } else if !matches!(this.inner.state.link.get_untracked(), Link::Incompatible { .. }) {
                // Gone, or refused for now (a limit; the notice says
                // which): try again, later and later.
                // Refused for now: closed with 1013 before any greeting (a
                // session closed after it, even with 1013, was lost).
                let greeted = matches!(this.inner.state.link.get_untracked(), Link::Open);
                this.retry_later(event.code() == CLOSE_TRY_AGAIN && !greeted);
            }
        });
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        on_close.forget();

        *self.inner.socket.borrow_mut() = Some(socket);
    }

    /// Schedules the next attempt with exponential backoff;
    /// `refused_for_now`: the back end refused the session at a limit,
    /// rather than the link failing.
    fn retry_later(&self, refused_for_now: bool) {
        let attempt = self.inner.attempt.get();
        let delay = backoff_ms(attempt);
        self.inner.state.link.set(Link::Lost {
            attempt,
            retry_in_ms: delay,
            refused_for_now,
        });
        self.inner.attempt.set(attempt + 1);
        let this = self.clone();
        let generation = self.inner.generation.get();
        Timeout::new(delay, move || {
            // Not if the page was put away meanwhile: it connects when shown.
            if this.inner.generation.get() == generation {
                this.connect();
            }
        })
        .forget();
    }
}

/// The bytes at `url` (same origin: the static build's own files),
/// unpacked if they are gzipped: the static build gzips the recordings,
/// since hosts rarely compress a binary file on the way.
async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let bytes = fetch_raw(url).await?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        gunzip(&bytes)
            .await
            .map_err(|_| format!("{url} could not be unpacked"))
    } else {
        // Already unpacked by the browser (a host that labels it gzip).
        Ok(bytes)
    }
}

#[wasm_bindgen]
extern "C" {
    /// The browser's own gzip reader (every current browser has one), so
    /// the page carries none.
    type DecompressionStream;
    #[wasm_bindgen(constructor, catch)]
    fn new(format: &str) -> Result<DecompressionStream, JsValue>;
}

async fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, JsValue> {
    use wasm_bindgen_futures::JsFuture;
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let packed = web_sys::Blob::new_with_u8_array_sequence(&parts)?.stream();
    // A transform stream is the readable and writable pair `pipeThrough`
    // asks for.
    let gzip = DecompressionStream::new("gzip")?;
    let unpacked = packed.pipe_through(gzip.unchecked_ref());
    let response = web_sys::Response::new_with_opt_readable_stream(Some(&unpacked))?;
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

async fn fetch_raw(url: &str) -> Result<Vec<u8>, String> {
    use wasm_bindgen_futures::JsFuture;
    let response = JsFuture::from(window().fetch_with_str(url))
        .await
        .map_err(|_| format!("{url} could not be fetched"))?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| format!("{url} gave no response"))?;
    if !response.ok() {
        return Err(format!("{url} answered HTTP {}", response.status()));
    }
    let body = response
        .array_buffer()
        .map_err(|_| format!("{url} has no body"))?;
    JsFuture::from(body)
        .await
        .ok()
        .and_then(|b| b.dyn_into::<js_sys::ArrayBuffer>().ok())
        .map(|b| js_sys::Uint8Array::new(&b).to_vec())
        .ok_or_else(|| format!("{url} could not be read"))
}

/// Milliseconds to wait before attempt `attempt + 1`: 500 ms, doubling, at
/// most [`MAX_BACKOFF_MS`].
pub fn backoff_ms(attempt: u32) -> u32 {
    500u32
        .saturating_mul(1 << attempt.saturating_sub(1).min(5))
        .min(MAX_BACKOFF_MS)
}

/// Marks, once, the moment the page became usable: the first greeting
/// drawn (the next frame, after the reactive updates ran) with the Read
/// button enabled. `cargo xtask bench browser` reads the mark
/// (`performance.getEntriesByName("playground-interactive")`).
fn mark_interactive() {
    leptos::prelude::request_animation_frame(|| {
        let Some(performance) = web_sys::window().and_then(|w| w.performance()) else {
            return;
        };
        if performance.get_entries_by_name("playground-interactive").length() == 0 {
            let _ = performance.mark("playground-interactive");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_base_up_to_its_last_slash() {
        assert_eq!(
            root_of("http://127.0.0.1:8080/?lesson=basics"),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            root_of("https://docs.example.com/playground/"),
            "https://docs.example.com/playground/"
        );
        assert_eq!(
            root_of("https://docs.example.com/playground/index.html#x"),
            "https://docs.example.com/playground/"
        );
        assert_eq!(root_of("http://host"), "http://host/");
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff_ms(1), 500);
        assert_eq!(backoff_ms(2), 1_000);
        assert_eq!(backoff_ms(4), 4_000);
        assert_eq!(backoff_ms(5), 8_000);
        assert_eq!(backoff_ms(50), 8_000);
    }
}
