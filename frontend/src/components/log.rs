//! The trace log: recent reads in this sandbox, newest first. Choosing one
//! plays it on the diagram again.

use leptos::prelude::*;
use shared::{Action, Operation, Outcome, StepStatus, Trace};

use crate::format;
use crate::state::AppState;

/// Per-step timings in one line: `GET 210 µs → SQL 95 µs (+100.1 ms) → SET 180 µs`.
///
/// A command that failed says so (`GET failed 250 ms → SQL …`): a read
/// whose outcome is a hit or a load may still have met an error on the way
/// (a dead connection, sent again), and the log should not hide it.
pub fn timings(trace: &Trace) -> String {
    trace
        .steps
        .iter()
        .filter_map(|s| {
            let command = match &s.action {
                Action::Redis(t) => t.split(' ').next().unwrap_or("Redis"),
                Action::Sql(_) => "SQL",
                Action::Note(_) => return None,
            };
            let name = if s.status == StepStatus::Error {
                format!("{command} failed")
            } else {
                command.to_string()
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
            <p class="help" data-testid="log-empty" hidden=move || state.log.with(|log| !log.is_empty())>
                {move || if state.ran_in_bulk() {
                    "No single reads yet: a herd, a fill or a comparison of patterns is summed up in its own card, not listed here."
                } else {
                    "No reads yet in this sandbox."
                }}
            </p>
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
                                    <span class="op">{op_label(&trace)}</span>
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

/// What the operation was, and for a read that found no record, that it
/// found none (a lesson asks whether a deleted user is still served).
fn op_label(trace: &Trace) -> String {
    let answered = matches!(
        trace.outcome,
        Outcome::Miss | Outcome::NullHit | Outcome::Fallback
    );
    if matches!(trace.operation, Operation::Read { .. }) && answered && !trace.found {
        format!("{} · no such record", trace.operation.label())
    } else {
        trace.operation.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{NodeId, TraceStep};

    fn step(action: Action, status: StepStatus, duration_us: u64) -> TraceStep {
        TraceStep {
            node: NodeId::new("check_redis"),
            action,
            reply: String::new(),
            status,
            duration_us,
            simulated_delay_us: 0,
            via: None,
        }
    }

    #[test]
    fn a_failed_command_is_named_as_failed_in_the_timings() {
        let mut trace = crate::timeline::tests::trace(1, &[]);
        trace.steps = vec![
            step(Action::Note("a note".into()), StepStatus::Ok, 1),
            step(Action::Redis("GET cache:user:42".into()), StepStatus::Error, 121),
            step(Action::Redis("GET cache:user:42".into()), StepStatus::Hit, 5_360),
        ];
        assert_eq!(timings(&trace), "GET failed 121 µs → GET 5.36 ms");
        trace.steps[1].status = StepStatus::Miss;
        assert_eq!(timings(&trace), "GET 121 µs → GET 5.36 ms");
    }

    #[test]
    fn a_read_that_found_nothing_says_so() {
        let mut trace = crate::timeline::tests::trace(1, &[]);
        trace.operation = Operation::Read {
            kind: shared::Kind::Users,
            id: 42,
        };
        trace.outcome = Outcome::Miss;
        trace.found = true;
        assert_eq!(op_label(&trace), "read users/42");
        trace.found = false;
        assert_eq!(op_label(&trace), "read users/42 · no such record");
        trace.outcome = Outcome::NullHit;
        assert_eq!(op_label(&trace), "read users/42 · no such record");
        // A failed read did not find out.
        trace.outcome = Outcome::Failed;
        assert_eq!(op_label(&trace), "read users/42");
    }
}
