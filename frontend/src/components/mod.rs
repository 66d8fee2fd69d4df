//! Leptos components. Each draws part of [`AppState`]; none holds logic
//! that could live in plain Rust.

mod controls;
mod diagnose;
mod diagram;
mod divergence;
mod faults;
mod instances;
mod keys;
pub(crate) mod lesson;
mod load;
mod log;
mod memory;
mod patterns;
mod race;
mod redis;
mod serialization;
mod share;
mod stampede;
mod stats;
mod steps;

pub use controls::{PlaybackControls, ReadForm, SettingsPanel};
pub use diagram::DiagramView;
pub use divergence::DivergencePanel;
pub use instances::InstancesPanel;
pub use lesson::{LessonIndex, LessonPanel};
pub use log::TraceLog;
pub use patterns::PatternsPanel;
pub use race::RacePanel;
pub use share::{EmbedSnippet, SetupLink};
pub use stampede::StampedePanel;
pub use stats::{ResetSandbox, StatsPanel};
pub use steps::StepList;

use leptos::prelude::*;
use leptos::wasm_split::{wasm_split, SplitLoaderError};
use shared::SandboxId;
use wasm_bindgen::JsCast;

use crate::connection::Connection;
use crate::lessons::Panel;
use crate::state::{AppState, Link};

/// The connection, shared with components that send commands.
pub type ConnectionHandle = StoredValue<Connection, LocalStorage>;

/// How often the animation clock ticks, in milliseconds.
const FRAME_MS: u32 = 33;

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let state = AppState::new(choose_sandbox(), prefers_reduced_motion());
    state.lesson.set(lesson::position_from_address());
    lesson::settle_address();
    state.progress.set(lesson::load_progress());
    provide_context(state);
    let connection: ConnectionHandle = StoredValue::new_local(Connection::open(state));
    provide_context(connection);
    start_clock(state);
    keyboard_shortcuts(state);
    lesson::follow_history(state);

    // In a lesson, only the lab panel its step uses; in free play, all.
    // Their modules are fetched once the first greeting is in (or the first
    // try to connect has failed): until then a panel has nothing to show,
    // and the page's own start (the main module, the greeting) goes first.
    let panel = move || state.lesson.get().map(|at| at.step().panel);
    // A memo latched on: it changes once, so later changes of the link
    // (lost, reconnecting) do not redraw the panels.
    let labs_wanted = Memo::new(move |was: Option<&bool>| {
        was.copied().unwrap_or(false) || !matches!(state.link.get(), Link::Connecting { attempt: 1 })
    });
    let shows = move |wanted: Panel| panel().is_none_or(|p| p == wanted);
    let shows_lab = move |wanted: Panel| labs_wanted.get() && shows(wanted);

    let embedded = crate::embed::is_embedded();
    let header = if embedded {
        // In a documentation page's frame: a slim bar, and a way out to the
        // full playground at the same step.
        let full = move || {
            let query = state
                .lesson
                .get()
                .map(|at| format!("?{}", at.query()))
                .unwrap_or_default();
            format!("{}{query}", crate::connection::app_root())
        };
        view! {
            <header class="top slim">
                <h1 class="embed-title">"Cache-aside playground"</h1>
                <a href=full target="_blank" rel="noopener" data-testid="open-full">"Open in the full playground ↗"</a>
                <LinkBadge/>
            </header>
        }
        .into_any()
    } else {
        view! {
            <header class="top">
                <h1>"Cache-aside playground"</h1>
                <p class="tagline">
                    {move || if state.recorded.with(Option::is_some) {
                        "Every read below was run against a real Redis and a real SQLite database, and recorded. Watch each command happen."
                    } else {
                        "Every read below runs against a real Redis and a real SQLite database. Watch each command happen."
                    }}
                </p>
                <LinkBadge/>
            </header>
        }
        .into_any()
    };

    view! {
        <a class="skip" href="#main">"Skip to the playground"</a>
        {header}
        <Notice/>
        <RecordedNotice/>
        // Results in words, for screen readers: one live region for the
        // whole page, never re-created.
        <p class="sr-only" role="status" data-testid="announce">{move || state.announcement.get()}</p>
        <main
            class=move || if panel().is_some() { "layout lesson-mode" } else { "layout" }
            id="main"
            tabindex="-1"
            data-spotlight=move || lesson::spotlight(state)
        >
            // The narration sits beside the diagram it talks about (above
            // it on a narrow screen). First in the page's order, so the
            // keyboard reaches the step and its run button before the
            // diagram and the lab below them (the grid places it).
            {move || panel().is_some().then(|| view! { <div class="lesson-slot"><LessonPanel/></div> })}
            <div class="stage">
                {move || state.lesson.get().is_none().then(|| view! { <LessonIndex/> })}
                <section class="flow" aria-label="Flow diagram">
                    <PlaybackControls/>
                    <DiagramView/>
                    <StepList/>
                </section>
                // One closure type for all eleven (a table, not eleven
                // closures): each distinct closure would instantiate the
                // renderer's generic code again.
                {LAB_PANELS
                    .iter()
                    .map(|&(kind, title, load)| move || shows_lab(kind).then(|| lab_panel(title, load())))
                    .collect_view()}
            </div>
            <div class="side">
                {move || panel().is_none().then(|| view! { <ReadForm/> })}
                <TraceLog/>
                <StatsPanel><ResetSandbox/></StatsPanel>
                {move || shows(Panel::Instances).then(|| view! { <InstancesPanel/> })}
                {move || {
                    if panel().is_none() {
                        view! { <SettingsPanel/> }.into_any()
                    } else {
                        view! {
                            <p class="card help" data-testid="lesson-settings">
                                "The lesson sets this sandbox up for each step. For the settings, the read form and every lab, use "
                                <button type="button" class="link" on:click=move |_| lesson::go_to(state, None)>"free play"</button>
                                "; the sandbox stays as it is."
                            </p>
                        }
                        .into_any()
                    }
                }}
            </div>
        </main>
        {(!embedded).then(|| view! { <CurlHint/> })}
    }
}

/// The connection state, always visible in the header.
#[component]
fn LinkBadge() -> impl IntoView {
    let state = expect_context::<AppState>();
    let text = move || match state.link.get() {
        _ if state.recorded.with(Option::is_some) => state
            .recorded
            .with(|r| r.as_ref().map(|r| format!("Recorded · {}", r.recorded_at)))
            .unwrap_or_default(),
        Link::Connecting { attempt: 1 } => "Connecting…".to_string(),
        Link::Connecting { attempt } => format!("Reconnecting (attempt {attempt})…"),
        Link::Open => match state.sandbox.get() {
            Some(sandbox) => format!("Live · sandbox {sandbox}"),
            None => "Live".to_string(),
        },
        Link::Lost {
            retry_in_ms,
            refused_for_now,
            ..
        } => format!(
            "{} · retrying in {} s",
            if refused_for_now {
                "Busy: not connected"
            } else {
                "Connection lost"
            },
            shared::decimal::fixed(retry_in_ms as f64 / 1000.0, 1)
        ),
        Link::Incompatible { server } if server > shared::PROTOCOL_VERSION => {
            format!("Back end speaks protocol v{server}: reload the page")
        }
        Link::Incompatible { server } => format!(
            "Back end speaks protocol v{server}, older than this page's v{}: it needs updating",
            shared::PROTOCOL_VERSION
        ),
        Link::Refused => "Not connected: see the message above".to_string(),
    };
    let class = move || match state.link.get() {
        _ if state.recorded.with(Option::is_some) => "badge recorded",
        Link::Open => "badge live",
        Link::Connecting { .. } => "badge waiting",
        _ => "badge down",
    };
    view! { <p class=class role="status" aria-live="polite" data-testid="link">{text}</p> }
}

/// On a page that replays recordings: says so, always, with when and on
/// what they were made, and how to go live.
#[component]
fn RecordedNotice() -> impl IntoView {
    let state = expect_context::<AppState>();
    move || {
        state.recorded.get().map(|recorded| {
            view! {
                <div class="notice recorded" role="note" data-testid="recorded-notice">
                    <span>
                        {format!(
                            "Recorded from a real Redis on {} ({}). This page replays it: the commands, answers and timings are the recorded ones. Connect a back end to run it live: add ?backend=URL (your back end's address) to this page's address.",
                            recorded.recorded_at,
                            recorded.machine
                        )}
                    </span>
                </div>
            }
        })
    }
}

/// A dismissible message (an error from the back end, traces missed).
#[component]
fn Notice() -> impl IntoView {
    let state = expect_context::<AppState>();
    move || {
        state.notice.get().map(|message| {
            view! {
                <div class="notice" role="alert">
                    <span>{message}</span>
                    <button type="button" on:click=move |_| state.notice.set(None) aria-label="Dismiss">"×"</button>
                </div>
            }
        })
    }
}

/// Shows how to make a read from a terminal that shows up on this page.
#[component]
fn CurlHint() -> impl IntoView {
    let state = expect_context::<AppState>();
    let root = crate::connection::app_root();
    let command = move || match state.sandbox.get() {
        Some(sandbox) => format!("curl '{root}api/v1/users/42?sandbox={sandbox}'"),
        None => format!("curl '{root}api/v1/users/42'"),
    };
    view! {
        <footer class="hint">
            <p>"Reads from anywhere show up here live. From a terminal:"</p>
            <code data-testid="curl">{command}</code>
            <p class="small">"Keys (unless turned off above the diagram): Space play/pause · → next step · R replay. Open "<a href="?sandbox=default">"?sandbox=default"</a>" to watch plain curl requests, or "<a href="?redis=private" data-testid="private-redis">"a new sandbox with a redis-server of its own"</a>" (for experiments on the server itself)."</p>
        </footer>
    }
}

/// The sandbox for this tab: `?sandbox=` if given and valid, else the one
/// this tab watched before (a reload), else none: the server gives the
/// page a new one, with a name nobody can guess (`?redis=private` alone
/// asks for a new one, with a redis-server of its own; with `?sandbox=`
/// too, for that one, made again with a server of its own if it is gone).
fn choose_sandbox() -> Option<SandboxId> {
    use crate::connection::page_param;
    let from_url = page_param("sandbox").and_then(|name| SandboxId::parse(&name).ok());
    if from_url.is_some() || page_param("redis").is_some() {
        // Named, or a new one asked for (`?redis=private`).
        return from_url;
    }
    crate::connection::stored_sandbox()
}

fn prefers_reduced_motion() -> bool {
    window()
        .match_media("(prefers-reduced-motion: reduce)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches())
}

/// Drives the timeline from a gloo-timers interval, with real elapsed time.
fn start_clock(state: AppState) {
    let mut last = js_sys::Date::now();
    let interval = gloo_timers::callback::Interval::new(FRAME_MS, move || {
        let now = js_sys::Date::now();
        let dt = now - last;
        last = now;
        if state.timeline.with_untracked(|t| t.is_animating()) {
            state.timeline.update(|t| {
                t.tick(dt);
            });
        }
    });
    let interval = StoredValue::new_local(Some(interval));
    on_cleanup(move || interval.update_value(|i| drop(i.take())));
}

/// Space, → and R, unless the learner is typing in a field.
fn keyboard_shortcuts(state: AppState) {
    let handle = window_event_listener(leptos::ev::keydown, move |event| {
        if !state.shortcuts.get_untracked() || event.ctrl_key() || event.meta_key() || event.alt_key() {
            return;
        }
        // Keys on a control (a field, a button, a link, a disclosure) are
        // the control's own.
        let typing = event
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .is_some_and(|el| {
                matches!(
                    el.tag_name().as_str(),
                    "INPUT" | "SELECT" | "TEXTAREA" | "BUTTON" | "SUMMARY" | "A" | "LABEL"
                ) || el.get_attribute("contenteditable").is_some()
            });
        if typing {
            return;
        }
        match event.key().as_str() {
            " " => {
                event.prevent_default();
                state.timeline.update(|t| t.toggle_paused());
            }
            "ArrowRight" => state.timeline.update(|t| t.step_forward()),
            "r" | "R" => state.timeline.update(|t| t.replay()),
            _ => {}
        }
    });
    on_cleanup(move || handle.remove());
}

/// A lab panel, drawn once its module has arrived.
///
/// Each lab panel is a split point: the build (`cargo xtask split-wasm`,
/// run by Trunk after every build) moves the code only that panel uses
/// into a WebAssembly module of its own, fetched the first time the panel
/// is shown. A lesson page (or an embed of one) then loads the one panel
/// its step uses, not all eleven. A module that cannot be fetched leaves a
/// card saying so; the rest of the page works on.
fn lab_panel(title: &'static str, panel: PanelFuture) -> impl IntoView {
    let loaded = async move {
        panel.await.unwrap_or_else(|_| {
            view! {
                <section class="card" role="alert" data-testid="panel-unavailable">
                    <h2>{title}</h2>
                    <p class="help">"This panel's code could not be downloaded (the connection failed, or the playground was updated since this page was loaded). Reload the page to try again; the rest of the page works meanwhile."</p>
                    // A link to this very address: a reload, with no code.
                    <a href="" data-testid="reload-page">"Reload the page"</a>
                </section>
            }
            .into_any()
        })
    };
    // Until the module is there (a few milliseconds on a fast link), a
    // card with the panel's title holds its place.
    let loading = move || {
        view! {
            <section class="card loading" aria-busy="true" data-testid="panel-loading">
                <h2>{title}</h2>
                <p class="help">"Loading…"</p>
            </section>
        }
    };
    view! { <Suspense fallback=loading>{Suspend::new(loaded)}</Suspense> }
}

/// A lab panel's code on its way: its split point's future, boxed, so that
/// every panel goes through one instantiation of [`lab_panel`].
type PanelFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AnyView, SplitLoaderError>> + Send>>;

/// One split point per lab panel: `name => Component (Panel, "title")`
/// makes `async fn name() -> Result<AnyView, SplitLoaderError>`, whose first
/// call fetches the module holding the panel's code (the splitter names the
/// module after `name`), and lists it in `LAB_PANELS`, in page order.
macro_rules! split_panels {
    ($($name:ident => $panel:ident ($kind:ident, $title:literal)),* $(,)?) => {
        $(
            #[wasm_split($name, fallible, wasm_split_path = leptos::wasm_split)]
            fn $name() -> Result<AnyView, SplitLoaderError> {
                Ok(view! { <$panel/> }.into_any())
            }
        )*
        /// Every lab panel: which it is, its title, and its code to fetch.
        const LAB_PANELS: &[(Panel, &str, fn() -> PanelFuture)] =
            &[$((Panel::$kind, $title, || Box::pin($name()))),*];
    };
}

use diagnose::DiagnosePanel;
use faults::FaultsPanel;
use keys::KeysPanel;
use load::LoadPanel;
use memory::MemoryPanel;
use redis::RedisPanel;
use serialization::SerializationPanel;

split_panels! {
    divergence_panel => DivergencePanel(Divergence, "Cache vs database"),
    race_panel => RacePanel(Race, "The stale-set race"),
    stampede_panel => StampedePanel(Stampede, "Cache stampede"),
    patterns_panel => PatternsPanel(Patterns, "Caching patterns compared"),
    load_panel => LoadPanel(Load, "Steady load"),
    keys_panel => KeysPanel(Keys, "Keys in Redis"),
    redis_panel => RedisPanel(Redis, "Redis itself"),
    diagnose_panel => DiagnosePanel(Diagnose, "Diagnostics"),
    memory_panel => MemoryPanel(Memory, "Memory and eviction"),
    serialization_panel => SerializationPanel(Serialization, "Serialization"),
    faults_panel => FaultsPanel(Faults, "Faults"),
}
