//! The guided path: the index of lessons (free play) and the lesson panel
//! (one narrated step: explanation, experiment, what to notice, a check
//! question answered from the sandbox's real numbers, Back / Continue).

use leptos::prelude::*;
use wasm_bindgen::JsValue;

use super::ConnectionHandle;
use crate::lessons::{Expect, Position, Progress, Target, Verdict, LESSONS};
use crate::runner::Phase;
use crate::state::AppState;

/// Where the learner's progress is kept in the browser.
const PROGRESS_KEY: &str = "playground-progress";

/// The learner's progress, from `localStorage` (nothing if storage is
/// blocked, as in some embedded frames).
pub fn load_progress() -> Progress {
    window()
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(PROGRESS_KEY).ok().flatten())
        .map(|line| Progress::decode(&line))
        .unwrap_or_default()
}

fn save_progress(progress: &Progress) {
    if let Some(storage) = window().local_storage().ok().flatten() {
        let _ = storage.set_item(PROGRESS_KEY, &progress.encode());
    }
}

/// The lesson step the page's address names (`?lesson=`, or an embed's
/// path), if any.
pub fn position_from_address() -> Option<Position> {
    let path = window().location().pathname().unwrap_or_default();
    let lesson = crate::connection::page_param("lesson")
        .or_else(|| crate::embed::lesson_in_path(&path).map(str::to_string))?;
    Position::from_query(&lesson, crate::connection::page_param("step").as_deref())
}

/// The `step` the address asks for, when it names no step of its lesson
/// (the page shows the first step instead, and says so).
fn unknown_step_in_address() -> Option<String> {
    let lesson = position_from_address()?.lesson().id;
    let step = crate::connection::page_param("step")?;
    Position::names_no_step(lesson, Some(&step)).then(|| step.chars().take(40).collect())
}

/// Writes the step the address names with the step's id (an older link's
/// number, or no step at all, becomes `step=ID`), so a link copied from
/// the address bar stays on this step when steps are added. An address
/// naming no step of its lesson is left for the page to point out.
pub fn settle_address() {
    if let Some(at) = position_from_address() {
        if unknown_step_in_address().is_none() {
            show_in_address(Some(at), false);
        }
    }
}

/// Follows the browser's Back and Forward buttons between the steps (and
/// free play) this page has shown.
pub fn follow_history(state: AppState) {
    let handle = window_event_listener(leptos::ev::popstate, move |_| {
        move_to(state, position_from_address());
    });
    on_cleanup(move || handle.remove());
}

/// Puts `at` (or free play) in the address without reloading, keeping the
/// other parameters (the theme, an embed's options): as a new entry of the
/// browser's history when `new_entry`, so Back returns to the last step.
/// (Never in an embed: the host page's Back button should leave the host
/// page, not walk the frame's steps.)
fn show_in_address(at: Option<Position>, new_entry: bool) {
    let window = window();
    let search = window.location().search().unwrap_or_default();
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
        return;
    };
    let path = window.location().pathname().unwrap_or_default();
    match at {
        Some(at) => {
            // An embed's path names its lesson already.
            if crate::embed::lesson_in_path(&path) == Some(at.lesson().id) {
                params.delete("lesson");
            } else {
                params.set("lesson", at.lesson().id);
            }
            params.set("step", at.step().id);
        }
        None => {
            params.delete("lesson");
            params.delete("step");
        }
    }
    let query = String::from(params.to_string());
    let address = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    if let Ok(history) = window.history() {
        let _ = if new_entry && !crate::embed::is_embedded() {
            history.push_state_with_url(&JsValue::NULL, "", Some(&address))
        } else {
            history.replace_state_with_url(&JsValue::NULL, "", Some(&address))
        };
    }
}

/// Moves the page to a lesson step (or free play), forgetting the last
/// step's experiment; the browser's Back button returns.
pub fn go_to(state: AppState, at: Option<Position>) {
    move_to(state, at);
    show_in_address(at, true);
}

/// Shows a lesson step (or free play), forgetting the last step's
/// experiment, the address left as it is.
fn move_to(state: AppState, at: Option<Position>) {
    state.run.set(None);
    // Herds stay side by side within a lesson (problem, then fix); a new
    // lesson starts a new table.
    let same_lesson = state
        .lesson
        .with_untracked(|now| now.map(|p| p.lesson) == at.map(|p| p.lesson));
    if !same_lesson {
        state.herds.update(Vec::clear);
    }
    state.herd_edges.set(None);
    state.lesson.set(at);
    // The panel's heading takes the focus, so a screen reader starts at
    // the new step.
    request_animation_frame(|| {
        if let Some(heading) = document().get_element_by_id("lesson-step-title") {
            use wasm_bindgen::JsCast;
            if let Ok(heading) = heading.dyn_into::<web_sys::HtmlElement>() {
                let _ = heading.focus();
            }
        }
    });
}

/// The `data-spotlight` of the page: what the step's pointers point at,
/// once its experiment ran.
pub fn spotlight(state: AppState) -> String {
    let Some(at) = state.lesson.get() else {
        return String::new();
    };
    let ran = state
        .run
        .with(|r| r.as_ref().is_some_and(|r| r.at == at && r.phase == Phase::Done));
    if !ran {
        return String::new();
    }
    at.step()
        .notice
        .iter()
        .map(|p| match p.target {
            Target::Node(id) => format!("node:{id}"),
            Target::Element(name) => name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The list of lessons, with the learner's progress: the first thing a
/// newcomer sees in free play.
#[component]
pub fn LessonIndex() -> impl IntoView {
    let state = expect_context::<AppState>();
    let resume = move |_| go_to(state, Some(state.progress.with_untracked(Progress::first_open)));
    // An address that names no lesson (a typo, an old link) opens free
    // play, and says so rather than leaving the reader to wonder.
    let unknown = crate::connection::page_param("lesson")
        .filter(|asked| !asked.trim().is_empty() && position_from_address().is_none())
        .map(|asked| asked.chars().take(40).collect::<String>());
    view! {
        <section class="card lessons" aria-labelledby="lessons-title" data-testid="lesson-index">
            {unknown.map(|asked| view! {
                <p class="help error" role="alert" data-testid="unknown-lesson">
                    {format!("There is no lesson “{asked}”: pick one below, or play freely.")}
                </p>
            })}
            <div class="lessons-head">
                <h2 id="lessons-title">"Guided lessons"</h2>
                <p class="help">
                    "New to cache-aside? Each step runs a real experiment on this page's sandbox, then asks what you saw; every remedy comes after the problem it solves."
                </p>
                <button type="button" class="primary" data-testid="start-path" on:click=resume>
                    {move || if state.progress.with(|p| p.first_open() == Position { lesson: 0, step: 0 }) {
                        "Start the path"
                    } else {
                        "Continue where you left off"
                    }}
                </button>
            </div>
            <ol class="lesson-list">
                {LESSONS
                    .iter()
                    .enumerate()
                    .map(|(index, lesson)| {
                        let href = format!("?{}", Position { lesson: index, step: 0 }.query());
                        let done = move || state.progress.with(|p| p.lesson_done(index));
                        let open = move |ev: leptos::ev::MouseEvent| {
                            ev.prevent_default();
                            go_to(state, Some(Position { lesson: index, step: 0 }));
                        };
                        view! {
                            <li>
                                <a href=href on:click=open title=lesson.outcome data-testid=format!("lesson-{}", lesson.id)>{lesson.title}</a>
                                <span class="small">
                                    {move || format!(" · {} of {} answered", done(), lesson.steps.len())}
                                </span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
        </section>
    }
}

/// One lesson step.
#[component]
pub fn LessonPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    move || state.lesson.get().map(|at| view! { <StepView at=at/> })
}

#[component]
fn StepView(at: Position) -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let lesson = at.lesson();
    let step = at.step();
    let answer = RwSignal::new(String::new());
    let verdict = RwSignal::new(None::<Verdict>);
    let shown = RwSignal::new(false);

    let phase = move || {
        state
            .run
            .with(|r| r.as_ref().filter(|r| r.at == at).map(|r| r.phase.clone()))
    };
    let running = move || phase() == Some(Phase::Running);
    // A step that changes the server itself, in a sandbox that may not.
    let needs_own_server =
        move || step.needs_own_redis() && state.memory.with(|m| m.as_ref().is_some_and(|m| !m.controllable));
    let ran = move || phase() == Some(Phase::Done);
    let progress = move || {
        state.run.with(|r| {
            r.as_ref()
                .filter(|r| r.at == at && r.phase == Phase::Running)
                .map(|r| (r.done, r.total))
        })
    };
    // The run button is marked busy, not disabled, while it runs: a
    // disabled button drops the keyboard focus to the page's top. Once the
    // run is over, focus on the button moves to the status line beside it,
    // so the page's keys (Space, →, R) work again and a stray Space does
    // not run the experiment again (which resets its results).
    let button = NodeRef::<leptos::html::Button>::new();
    let status = NodeRef::<leptos::html::Span>::new();
    Effect::new(move || {
        if !matches!(phase(), Some(Phase::Done | Phase::Failed(_))) {
            return;
        }
        let (Some(button), Some(status)) = (button.get_untracked(), status.get_untracked()) else {
            return;
        };
        let button: &web_sys::Element = button.as_ref();
        if document().active_element().as_ref() == Some(button) {
            let _ = status.focus();
        }
    });
    let run = move |_| {
        if running() {
            return;
        }
        verdict.set(None);
        shown.set(false);
        connection.with_value(|c| c.start_run(at));
    };
    let check = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let given = answer.get_untracked();
        let judged = state.run.with_untracked(|r| {
            let observed = r
                .as_ref()
                .filter(|r| r.at == at && r.phase == Phase::Done)
                .map(|r| &r.observed);
            step.check.judge(observed, &given)
        });
        if judged == Verdict::Right {
            state.progress.update(|p| {
                p.mark(at);
                save_progress(p);
            });
        }
        verdict.set(Some(judged));
    };
    let feedback = move || {
        let right_answer = || {
            state.run.with(|r| {
                r.as_ref()
                    .filter(|r| r.at == at)
                    .and_then(|r| step.check.answer_text(&r.observed))
            })
        };
        match verdict.get() {
            None => String::new(),
            Some(Verdict::NotRun) => "Run the experiment first: the answer comes from what it does.".into(),
            Some(Verdict::Unanswered) => match step.check.answer {
                Expect::Number(_) => "Type a number first.".into(),
                Expect::Choice { .. } => "Choose one of the answers first.".into(),
            },
            Some(Verdict::Right) => format!(
                "Right. This run's answer: {}.",
                right_answer().unwrap_or_default()
            ),
            Some(Verdict::Wrong) if shown.get() => format!(
                "This run's answer: {}. {}",
                right_answer().unwrap_or_default(),
                step.check.hint
            ),
            Some(Verdict::Wrong) => format!("Not quite. {}", step.check.hint),
        }
    };
    let question = match step.check.answer {
        Expect::Number(_) => view! {
            <label class="setting">
                <span>{step.check.question}</span>
                <input
                    type="text"
                    inputmode="numeric"
                    maxlength="12"
                    autocomplete="off"
                    data-testid="lesson-answer"
                    prop:value=move || answer.get()
                    on:input=move |ev| answer.set(event_target_value(&ev))
                />
            </label>
        }
        .into_any(),
        Expect::Choice { options, .. } => view! {
            <fieldset class="choices">
                <legend>{step.check.question}</legend>
                {options
                    .iter()
                    .enumerate()
                    .map(|(index, option)| {
                        view! {
                            <label class="check">
                                <input
                                    type="radio"
                                    name="lesson-choice"
                                    value=index.to_string()
                                    data-testid=format!("lesson-choice-{index}")
                                    on:change=move |_| answer.set(index.to_string())
                                />
                                {format!(" {option}")}
                            </label>
                        }
                    })
                    .collect_view()}
            </fieldset>
        }
        .into_any(),
    };
    // An embed stays inside its lesson: the documentation page around it
    // is about that lesson.
    let embedded = crate::embed::is_embedded();
    let within = move |p: Option<Position>| p.filter(|p| !embedded || p.lesson == at.lesson);
    let next = within(at.next());
    let back = within(at.back());
    let steps_total: usize = LESSONS.iter().map(|l| l.steps.len()).sum();
    let step_number = LESSONS[..at.lesson].iter().map(|l| l.steps.len()).sum::<usize>() + at.step + 1;
    view! {
        <section class="card lesson" aria-labelledby="lesson-step-title" data-testid="lesson">
            <p class="small lesson-where">
                {format!("Lesson {}: {} · step {} of {} ", at.lesson + 1, lesson.title, at.step + 1, lesson.steps.len())}
                <span class="sr-only">{format!("({step_number} of {steps_total} in the path)")}</span>
            </p>
            <progress class="path" max=steps_total value=step_number aria-hidden="true"></progress>
            {(position_from_address() == Some(at)).then(unknown_step_in_address).flatten().map(|asked| view! {
                <p class="help error" role="alert" data-testid="unknown-step">
                    {format!("This lesson has no step “{asked}” (it has {}): here is its first.", lesson.steps.len())}
                </p>
            })}
            <h2 id="lesson-step-title" tabindex="-1">{step.title}</h2>
            {step.text.split("\n\n").map(|p| view! { <p>{p}</p> }).collect_view()}
            {move || needs_own_server().then(|| view! {
                <p class="help error" data-testid="lesson-own-redis">
                    "This sandbox shares the playground's Redis, and this step changes the server itself. "
                    <a href=format!("?redis=private&{}", at.query())>"Open this step in a sandbox with a redis-server of its own"</a>
                </p>
            })}
            <div class="lesson-run">
                <button
                    node_ref=button
                    type="button"
                    class="primary"
                    data-testid="run-experiment"
                    on:click=run
                    aria-disabled=move || running().then_some("true")
                    disabled=move || !state.is_open() || needs_own_server()
                >
                    {step.run_label}
                </button>
                <span node_ref=status class="small" role="status" tabindex="-1" data-testid="experiment-status">
                    {move || match (phase(), progress()) {
                        (Some(Phase::Running), Some((done, total))) => format!("Running… {done} of {total} done"),
                        (Some(Phase::Done), _) => "Done: see below what to look at.".to_string(),
                        (Some(Phase::Failed(why)), _) => format!("The experiment stopped: {why}"),
                        _ => String::new(),
                    }}
                </span>
            </div>
            <div class="notice-list" hidden=move || !ran()>
                <h3>"What to notice"</h3>
                <ul>
                    {step.notice.iter().map(|p| view! { <li>{p.text}</li> }).collect_view()}
                </ul>
            </div>
            <form class="lesson-check" on:submit=check data-testid="lesson-check">
                {question}
                <div class="row">
                    <button type="submit" data-testid="check-answer">"Check my answer"</button>
                    <button
                        type="button"
                        class="link"
                        hidden=move || verdict.get() != Some(Verdict::Wrong)
                        on:click=move |_| shown.set(true)
                    >
                        "Show the answer"
                    </button>
                </div>
                <p
                    class=move || match verdict.get() {
                        Some(Verdict::Right) => "verdict right",
                        Some(Verdict::Wrong) => "verdict wrong",
                        _ => "verdict",
                    }
                    role="status"
                    data-testid="lesson-verdict"
                >
                    {feedback}
                </p>
            </form>
            <super::EmbedSnippet at=at/>
            <nav class="lesson-nav" aria-label="Lesson steps">
                <button type="button" disabled=back.is_none() on:click=move |_| go_to(state, back) data-testid="lesson-back">
                    "Back"
                </button>
                <button type="button" on:click=move |_| go_to(state, None) class="link" data-testid="free-play">
                    "Free play"
                </button>
                <button
                    type="button"
                    class="primary"
                    data-testid="lesson-continue"
                    on:click=move |_| go_to(state, next)
                >
                    {if next.is_some() { "Continue" } else { "Finish: free play" }}
                </button>
            </nav>
        </section>
    }
}
