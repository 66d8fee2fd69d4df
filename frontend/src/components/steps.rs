//! The steps of the trace on the diagram, with the real commands, replies
//! and timings; the lit step is marked.

use leptos::prelude::*;
use shared::{Action, StepStatus};

use crate::format;
use crate::state::AppState;

/// The step list under the diagram.
#[component]
pub fn StepList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let diagram = state.diagram;
    move || {
        state.timeline.with(|t| {
            let Some(frame) = t.frame() else {
                return view! {
                    <div class="card steps empty" data-testid="steps">
                        <p>"Read a record to see each step here: the command sent, the reply, and how long it really took."</p>
                    </div>
                }
                .into_any();
            };
            let trace = frame.trace;
            let current = frame.step_index;
            let arrived = frame.progress >= 1.0;
            let title = |node: &shared::NodeId| {
                diagram.with(|d| d.node(node).map(|n| n.title.clone()).unwrap_or_else(|| node.to_string()))
            };
            let caption = format!(
                "{} · {} · {} · step {} of {}{}",
                trace.operation.label(),
                trace.origin.description(),
                trace.outcome.label(),
                current + 1,
                trace.steps.len(),
                if frame.finished { " · done" } else { "" }
            );
            let rows = trace
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| {
                    let phase = if i < current || (i == current && frame.finished) {
                        "done"
                    } else if i == current && arrived {
                        "current"
                    } else {
                        "pending"
                    };
                    let status = match step.status {
                        StepStatus::Ok => "ok",
                        StepStatus::Hit => "hit",
                        StepStatus::Miss => "miss",
                        StepStatus::Error => "error",
                    };
                    let (system, text) = match &step.action {
                        Action::Redis(t) => ("Redis", t.clone()),
                        Action::Sql(t) => ("SQL", t.clone()),
                        Action::Note(t) => ("app", t.clone()),
                    };
                    let time = if step.simulated_delay_us > 0 {
                        format!("{} + {} simulated", format::micros(step.duration_us), format::micros(step.simulated_delay_us))
                    } else if matches!(step.action, Action::Note(_)) {
                        String::new()
                    } else {
                        format::micros(step.duration_us)
                    };
                    view! {
                        <li class=format!("step {phase} {status}") aria-current=if phase == "current" { Some("step") } else { None }>
                            <span class="where">{title(&step.node)}</span>
                            <span class=format!("system {}", system.to_lowercase())>{system}</span>
                            <code class="what">{text}</code>
                            <span class="reply">{step.reply.clone()}</span>
                            <span class="time">{time}</span>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <div class="card steps" data-testid="steps">
                    <p class="caption" aria-live="polite">{caption}</p>
                    <ol>{rows}</ol>
                    <p class="total">{format!("Total {}", format::micros(trace.total_us))}</p>
                </div>
            }
            .into_any()
        })
    }
}
