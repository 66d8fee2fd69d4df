//! The trace log: recent reads in this sandbox, newest first. Choosing one
//! plays it on the diagram again.

use leptos::prelude::*;
use shared::{Action, Trace};

use crate::format;
use crate::state::AppState;

/// Per-step timings in one line: `GET 210 µs → SQL 95 µs (+100.1 ms) → SET 180 µs`.
pub fn timings(trace: &Trace) -> String {
    trace
        .steps
        .iter()
        .filter_map(|s| {
            let name = match &s.action {
                Action::Redis(t) => t.split(' ').next().unwrap_or("Redis").to_string(),
                Action::Sql(_) => "SQL".to_string(),
                Action::Note(_) => return None,
            };
            Some(if s.simulated_delay_us > 0 {
                format!(
                    "{name} {} (+{})",
                    format::micros(s.duration_us),
                    format::micros(s.simulated_delay_us)
                )
            } else {
                format!("{name} {}", format::micros(s.duration_us))
            })
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The log.
#[component]
pub fn TraceLog() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        <section class="card log" aria-labelledby="log-title" data-spot="log">
            <h2 id="log-title">"Trace log"</h2>
            <p class="help" hidden=move || state.log.with(|log| !log.is_empty())>"No reads yet in this sandbox."</p>
            // Keyed by trace: a new trace adds one entry, and the others
            // (and the keyboard focus on them) stay where they are.
            <ol class="entries" data-testid="log" hidden=move || state.log.with(|log| log.is_empty())>
                <For
                    each=move || state.log.get()
                    key=|trace| trace.id
                    children=move |trace| {
                        let outcome = trace.outcome.label();
                        let replay = trace.clone();
                        view! {
                            <li>
                                <button
                                    type="button"
                                    class="entry"
                                    data-outcome=outcome
                                    on:click=move |_| state.timeline.update(|t| t.show(replay.clone()))
                                    title="Play this trace on the diagram"
                                >
                                    <span class=format!("outcome {}", outcome.replace(' ', "-"))>{outcome}</span>
                                    <span class="op">{trace.operation.label()}</span>
                                    <span class="origin">
                                        {match &trace.instance {
                                            Some(instance) => format!("{} · {instance}", trace.origin.label()),
                                            None => trace.origin.label().to_string(),
                                        }}
                                    </span>
                                    <span class="total">{format::micros(trace.total_us)}</span>
                                    <span class="timings">{timings(&trace)}</span>
                                </button>
                            </li>
                        }
                    }
                />
            </ol>
        </section>
    }
}
