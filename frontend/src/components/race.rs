//! The stale-set race lab: run the preset interleaving, step through it by
//! hand, and see whether Redis ends up holding an old row.

use leptos::prelude::*;
use shared::{entity::parse_id, Kind, RaceFix, Scenario};

use super::ConnectionHandle;
use crate::state::AppState;

/// The race card.
#[component]
pub fn RacePanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let id_text = RwSignal::new("7".to_string());
    let error = RwSignal::new(None::<String>);
    // The form shows the record of the verdict below, a lesson's run too.
    Effect::new(move || {
        if let Some(id) = state.scenario.with(|s| s.as_ref().map(|s| s.id)) {
            id_text.set(id.to_string());
        }
    });
    let fix = move || {
        state
            .settings
            .with(|s| s.as_ref().map(|s| s.race_fix).unwrap_or_default())
    };
    let run = move |_| match parse_id(&id_text.get_untracked()) {
        Ok(id) => {
            error.set(None);
            connection.with_value(|c| {
                c.run_scenario(Scenario::StaleSetRace {
                    kind: Kind::Users,
                    id,
                })
            });
        }
        Err(e) => error.set(Some(e.to_string())),
    };
    view! {
        <section class="card race" aria-labelledby="race-title" data-spot="race">
            <h2 id="race-title">"The stale-set race"</h2>
            <p class="help">
                "A reader misses and loads a row, then pauses. A writer updates the row and deletes the key. "
                "The reader goes on and stores the row it loaded: the old one."
            </p>
            <div class="row">
                <label for="race-id">"user id"</label>
                <input id="race-id" inputmode="numeric" prop:value=move || id_text.get() on:input=move |ev| id_text.set(event_target_value(&ev))/>
                <button type="button" class="primary" data-testid="run-race" disabled=move || !state.is_open() on:click=run>
                    "Run the race"
                </button>
            </div>
            <p class="help">{move || format!("Protection in force: {} (change it in the sandbox settings).", fix().label())}</p>
            {move || error.get().map(|e| view! { <p class="help error">{e}</p> })}
            <label class="check">
                <input
                    type="checkbox"
                    data-testid="pause-store"
                    prop:checked=move || state.step_through.get()
                    on:change=move |ev| state.step_through.set(event_target_checked(&ev))
                />
                " Step through by hand: reads from this page pause before they store in Redis"
            </label>
            <PausedList/>
            {move || {
                state.scenario.get().map(|result| {
                    let verdict = if result.stale {
                        "Stale: Redis holds an older row than the database."
                    } else {
                        "Nothing stale: the cache agrees with the database."
                    };
                    let story = result.story.iter().map(|line| view! { <li>{line.clone()}</li> }).collect_view();
                    view! {
                        <div class=if result.stale { "verdict stale" } else { "verdict fresh" } data-testid="race-verdict">
                            <p><strong>{verdict}</strong>{format!(" ({}/{}, {})", result.kind, result.id, result.fix.label())}</p>
                            <table>
                                <tr><th>"in Redis"</th><td data-testid="race-cached">{result.cached.clone()}</td></tr>
                                <tr><th>"in the database"</th><td>{result.database.clone()}</td></tr>
                            </table>
                            <ol class="story">{story}</ol>
                        </div>
                    }
                })
            }}
        </section>
    }
}

/// Operations held at a breakpoint, each with a "Continue" button.
#[component]
fn PausedList() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    move || {
        state.paused.with(|paused| {
            paused
                .iter()
                .map(|p| {
                    let operation_id = p.operation_id;
                    let at = state.diagram.with(|d| d.node(&p.at).map(|n| n.title.clone()).unwrap_or_else(|| p.at.to_string()));
                    let loaded = p.steps.last().map(|s| s.reply.clone()).unwrap_or_default();
                    view! {
                        <div class="paused" data-testid="paused">
                            <span>{format!("{} is paused before “{at}” ({loaded}).", p.operation.label())}</span>
                            <button type="button" on:click=move |_| {
                                connection.with_value(|c| c.continue_operation(operation_id));
                            }>
                                "Continue"
                            </button>
                        </div>
                    }
                })
                .collect_view()
        })
    }
}

/// The race fix options, for the settings panel.
pub fn race_fix_options() -> impl IntoView {
    RaceFix::ALL
        .into_iter()
        .map(|f| view! { <option value=f.name()>{f.label()}</option> })
        .collect_view()
}
