//! Cache against database: which cached copies are stale, and since when.

use leptos::prelude::*;
use shared::Operation;

use super::ConnectionHandle;
use crate::state::AppState;

/// The divergence view. Once checked, it checks again after every write in
/// the sandbox, so a learner sees a stale copy appear (or not).
#[component]
pub fn DivergencePanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let live = RwSignal::new(false);
    let check = move || {
        connection.with_value(|c| c.check_divergence());
    };
    // Re-check when a write trace arrives, once the learner has asked once.
    Effect::new(move |_| {
        let newest_is_write = state.log.with(|log| {
            log.front()
                .is_some_and(|t| matches!(t.operation, Operation::Update { .. } | Operation::Delete { .. }))
        });
        if newest_is_write && live.get_untracked() {
            check();
        }
    });
    let now = move || js_sys::Date::now() as u64;
    view! {
        <section class="card divergence" aria-labelledby="divergence-title" data-spot="divergence">
            <h2 id="divergence-title">"Cache vs database"</h2>
            <button
                type="button"
                data-testid="check-divergence"
                disabled=move || !state.is_open()
                on:click=move |_| {
                    live.set(true);
                    check();
                }
            >
                "Compare every cached key with its row"
            </button>
            {move || {
                state.divergence.get().map(|report| {
                    let stale = report.stale();
                    let summary = if report.entries.is_empty() {
                        "Nothing is cached in this sandbox.".to_string()
                    } else if stale == 0 {
                        format!("All {} cached keys match the database.", report.entries.len())
                    } else {
                        format!("{stale} of {} cached keys are stale.", report.entries.len())
                    };
                    let summary_class = if stale > 0 { "summary stale" } else { "summary" };
                    let rows = report
                        .entries
                        .iter()
                        .map(|e| {
                            let since = match (e.stale, e.changed_at_ms) {
                                (true, Some(at)) => format!("stale for {} s", now().saturating_sub(at) / 1000),
                                (true, None) => "stale".to_string(),
                                (false, _) => "fresh".to_string(),
                            };
                            view! {
                                <tr class=if e.stale { "stale" } else { "fresh" } data-testid="divergence-row">
                                    <td><code>{e.key.clone()}</code></td>
                                    <td>{e.cached.clone()}</td>
                                    <td>{e.database.clone()}</td>
                                    <td class="status">{since}<span class="ttl">{format!(" · TTL {} s", e.ttl_secs)}</span></td>
                                </tr>
                            }
                        })
                        .collect_view();
                    view! {
                        <p class=summary_class data-testid="divergence-summary">{summary}</p>
                        <div class="table-wrap" tabindex="0" role="region" aria-label="Divergence report, scrollable">
                            <table>
                                <thead><tr><th>"key"</th><th>"in Redis"</th><th>"in the database"</th><th>"status"</th></tr></thead>
                                <tbody>{rows}</tbody>
                            </table>
                        </div>
                    }
                })
            }}
        </section>
    }
}
