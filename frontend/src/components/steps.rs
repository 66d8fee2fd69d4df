//! The steps of the trace on the diagram, with the real commands, replies
//! and timings; the lit step is marked.
//!
//! The animation clock ticks ~30 times a second, but what this list shows
//! changes only when the token reaches a step: a memo keeps the list (and
//! its caption, a live region) in place between steps, so screen readers
//! hear each step once.

use leptos::prelude::*;
use shared::{Action, StepStatus};

use crate::format;
use crate::state::AppState;

/// One row of the list.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    class: String,
    current: bool,
    title: String,
    system: &'static str,
    text: String,
    reply: String,
    time: String,
    /// For a Redis step carrying a user's phone number: how it rests in
    /// Redis (the sensitive-data lesson looks for it), and whether that
    /// is in the clear.
    phone: Option<(String, bool)>,
}

/// What the list shows for the frame on screen.
#[derive(Clone, Debug, PartialEq)]
struct Shown {
    caption: String,
    rows: Vec<Row>,
    total: String,
}

/// The step list under the diagram.
#[component]
pub fn StepList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let diagram = state.diagram;
    let shown = Memo::new(move |_| {
        state.timeline.with(|t| {
            let frame = t.frame()?;
            let trace = frame.trace;
            let current = frame.step_index;
            let arrived = frame.progress >= 1.0;
            let title = |node: &shared::NodeId| {
                diagram.with(|d| {
                    d.node(node)
                        .map(|n| n.title.clone())
                        .unwrap_or_else(|| node.to_string())
                })
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
                        format!(
                            "{} + {} simulated",
                            format::micros(step.duration_us),
                            format::micros(step.simulated_delay_us)
                        )
                    } else if matches!(step.action, Action::Note(_)) {
                        String::new()
                    } else {
                        format::micros(step.duration_us)
                    };
                    let phone = step.cached_phone().map(|phone| {
                        if shared::looks_sealed(phone) {
                            (
                                format!("phone number: encrypted ({})", format::truncate(phone, 24)),
                                false,
                            )
                        } else {
                            (format!("phone number: in the clear ({phone})"), true)
                        }
                    });
                    Row {
                        class: format!("step {phase} {status}"),
                        current: phase == "current",
                        title: title(&step.node),
                        system,
                        text,
                        reply: step.reply.clone(),
                        time,
                        phone,
                    }
                })
                .collect();
            Some(Shown {
                caption,
                rows,
                total: format!("Total {}", format::micros(trace.total_us)),
            })
        })
    });
    let caption = move || shown.with(|s| s.as_ref().map(|s| s.caption.clone()).unwrap_or_default());
    view! {
        <div class=move || if shown.with(Option::is_some) { "card steps" } else { "card steps empty" } data-testid="steps">
            <p class="caption" aria-live="polite">{caption}</p>
            {move || {
                shown.with(|s| match s {
                    None => view! {
                        <p>"Read a record to see each step here: the command sent, the reply, and how long it really took."</p>
                    }
                    .into_any(),
                    Some(s) => {
                        let rows = s
                            .rows
                            .iter()
                            .cloned()
                            .map(|row| {
                                view! {
                                    <li class=row.class aria-current=row.current.then_some("step")>
                                        <span class="where">{row.title}</span>
                                        <span class=format!("system {}", row.system.to_ascii_lowercase())>{row.system}</span>
                                        <code class="what">{row.text}</code>
                                        <span class="reply">{row.reply}</span>
                                        {row.phone.map(|(phone, clear)| view! {
                                            <span class=if clear { "phone exposed" } else { "phone" } data-testid="step-phone">{phone}</span>
                                        })}
                                        <span class="time">{row.time}</span>
                                    </li>
                                }
                            })
                            .collect_view();
                        view! {
                            <ol>{rows}</ol>
                            <p class="total">{s.total.clone()}</p>
                        }
                        .into_any()
                    }
                })
            }}
        </div>
    }
}
