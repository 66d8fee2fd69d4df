//! Components mounted in a real browser (headless Chromium through
//! wasm-bindgen-test): what the timeline says is what the DOM shows.
//! Run by `cargo xtask test`.

#![cfg(target_arch = "wasm32")]

use frontend::components::{DiagramView, StatsPanel, StepList};
use frontend::state::AppState;
use leptos::prelude::*;
use shared::{
    Action, Kind, NodeId, Operation, Origin, Outcome, SandboxId, Stats, StepStatus, Trace, TraceStep,
};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn step(node: &'static str, action: Action, reply: &str, status: StepStatus) -> TraceStep {
    TraceStep {
        node: NodeId::new(node),
        action,
        reply: reply.into(),
        status,
        duration_us: 250,
        simulated_delay_us: 0,
        via: None,
    }
}

fn miss_trace() -> Trace {
    Trace {
        id: 1,
        sandbox: SandboxId::default_sandbox(),
        operation: Operation::Read {
            kind: Kind::Users,
            id: 42,
        },
        origin: Origin::Browser,
        outcome: Outcome::Miss,
        found: true,
        steps: vec![
            step(
                "request",
                Action::Note("read users/42".into()),
                "",
                StepStatus::Ok,
            ),
            step(
                "check_cache",
                Action::Redis("GET cache:default:user:42".into()),
                "(nil)",
                StepStatus::Miss,
            ),
            step(
                "query_database",
                Action::Sql("SELECT ...".into()),
                "1 row",
                StepStatus::Ok,
            ),
            step(
                "store_in_cache",
                Action::Redis("SET cache:default:user:42 {} EX 60".into()),
                "OK",
                StepStatus::Ok,
            ),
            step(
                "return_loaded",
                Action::Note("return Ada".into()),
                "",
                StepStatus::Ok,
            ),
        ],
        total_us: 101_000,
        started_at_ms: 0,
        instance: Some("A".into()),
    }
}

/// Mounts `view` in a fresh container and returns the container.
fn mount<V: IntoView + 'static>(state: AppState, view: impl FnOnce() -> V + 'static) -> web_sys::HtmlElement {
    let document = document();
    let container: web_sys::HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&container).unwrap();
    let handle = leptos::mount::mount_to(container.clone(), move || {
        provide_context(state);
        view()
    });
    handle.forget();
    container
}

/// Lets the page's reactive work finish: Leptos runs effects as
/// microtasks, and a timer is a macrotask, which the browser runs only once
/// every queued microtask (and those they queue) has run. An event, not a
/// guess at a duration: zero milliseconds would do as well.
async fn settle() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}

fn class_of(container: &web_sys::HtmlElement, selector: &str) -> String {
    container
        .query_selector(selector)
        .unwrap()
        .unwrap_or_else(|| panic!("no element {selector}"))
        .get_attribute("class")
        .unwrap_or_default()
}

use wasm_bindgen::JsCast;

/// Stepping the timeline lights the matching node and edge in the SVG.
#[wasm_bindgen_test]
async fn the_diagram_lights_the_timelines_current_step() {
    let state = AppState::new(Some(SandboxId::default_sandbox()), true);
    let container = mount(state, || view! { <DiagramView/> });
    settle().await;
    assert!(class_of(&container, "[data-node=check_cache]").contains("idle"));

    state.timeline.update(|t| {
        t.set_paused(true);
        t.push(miss_trace());
        t.step_forward();
    });
    settle().await;
    assert!(class_of(&container, "[data-node=check_cache]").contains("active"));
    assert!(class_of(&container, "[data-node=request]").contains("visited"));
    assert!(class_of(&container, "[data-node=query_database]").contains("idle"));
    assert!(class_of(&container, "[data-edge='request->check_cache']").contains("lit"));
    // The node shows the real command once reached.
    let detail = container
        .query_selector("[data-node=check_cache] .node-detail")
        .unwrap()
        .unwrap()
        .text_content()
        .unwrap();
    // (Cut to fit the box.)
    assert!(detail.starts_with("GET cache:default:u"), "{detail}");

    state.timeline.update(|t| {
        for _ in 0..4 {
            t.step_forward();
        }
    });
    settle().await;
    assert!(class_of(&container, "[data-node=return_loaded]").contains("active"));
    assert!(class_of(&container, "[data-node=store_in_cache]").contains("visited"));
    assert!(class_of(&container, "[data-node=return_cached]").contains("idle"));
}

/// The step list marks the lit step and shows the commands and replies.
#[wasm_bindgen_test]
async fn the_step_list_follows_the_timeline() {
    let state = AppState::new(Some(SandboxId::default_sandbox()), true);
    let container = mount(state, || view! { <StepList/> });
    settle().await;
    assert!(container
        .text_content()
        .unwrap()
        .contains("Read a record to see each step"));
    state.timeline.update(|t| {
        t.set_paused(true);
        t.push(miss_trace());
        t.step_forward();
    });
    settle().await;
    let current = container
        .query_selector("li[aria-current=step]")
        .unwrap()
        .unwrap();
    let text = current.text_content().unwrap();
    assert!(
        text.contains("GET cache:default:user:42") && text.contains("(nil)"),
        "{text}"
    );
    assert_eq!(container.query_selector_all("li.step").unwrap().length(), 5);
}

/// Counters show the sandbox's numbers and the hit ratio.
#[wasm_bindgen_test]
async fn the_counters_show_hits_misses_and_ratio() {
    let state = AppState::new(Some(SandboxId::default_sandbox()), true);
    let container = mount(state, || view! { <StatsPanel/> });
    state.stats.set(Stats {
        hits: 3,
        misses: 1,
        total_latency_us: 104_000,
        database_reads: 1,
        database_latency_us: 100_000,
        ..Stats::default()
    });
    settle().await;
    let text = container.text_content().unwrap();
    assert!(text.contains("75.0%"), "{text}");
    let hits = container
        .query_selector("[data-testid=hits]")
        .unwrap()
        .unwrap()
        .text_content()
        .unwrap();
    assert_eq!(hits, "3");
}
