//! The pattern comparison: one seeded workload through cache-aside,
//! read-through, write-through and write-behind, side by side.

use leptos::prelude::*;

use super::ConnectionHandle;
use crate::format;
use crate::state::AppState;

/// The comparison card.
#[component]
pub fn PatternsPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let seed_text = RwSignal::new("7".to_string());
    let error = RwSignal::new(None::<String>);
    // The form shows the seed of the comparison below, a lesson's too.
    Effect::new(move || {
        if let Some(seed) = state.comparison.with(|c| c.as_ref().map(|c| c.seed)) {
            seed_text.set(seed.to_string());
        }
    });
    let run = move |_| match seed_text.get_untracked().trim().parse::<u64>() {
        Ok(seed) if seed <= shared::protocol::MAX_SEED => {
            error.set(None);
            connection.with_value(|c| c.compare_patterns(seed));
        }
        _ => error.set(Some("The seed is a whole number up to 2^53.".into())),
    };
    view! {
        <section class="card patterns" aria-labelledby="patterns-title" data-spot="patterns">
            <h2 id="patterns-title">"Caching patterns compared"</h2>
            <p class="help">
                "The same seeded workload (reads and renames of a few users) through four patterns, on this sandbox's Redis and database. The seed fixes the operations; only the timings change between runs."
            </p>
            <div class="row">
                <label class="setting">
                    <span>"seed"</span>
                    <input type="text" inputmode="numeric" maxlength="16" size="8" data-testid="patterns-seed"
                        prop:value=move || seed_text.get()
                        on:input=move |ev| seed_text.set(event_target_value(&ev))/>
                </label>
                <button type="button" class="primary" data-testid="compare-patterns" disabled=move || !state.is_open() on:click=run>
                    "Compare"
                </button>
            </div>
            {move || error.get().map(|e| view! { <p class="help error">{e}</p> })}
            {move || {
                state.comparison.get().map(|c| {
                    let rows = c
                        .rows
                        .iter()
                        .map(|r| {
                            view! {
                                <tr role="row" data-testid="pattern-row" data-pattern=r.pattern.label()>
                                    <th scope="row" role="rowheader">{r.pattern.label()}</th>
                                    <td role="cell" data-label="write avg" class="num">{format::micros(r.write_avg_us)}</td>
                                    <td role="cell" data-label="write p99" class="num">{format::micros(r.write_p99_us)}</td>
                                    <td role="cell" data-label="read avg" class="num">{format::micros(r.read_avg_us)}</td>
                                    <td role="cell" data-label="read p99" class="num">{format::micros(r.read_p99_us)}</td>
                                    <td role="cell" data-label="database reads" class="num">{r.database_reads}</td>
                                    <td role="cell" data-label="database writes" class="num">{r.database_writes}</td>
                                    <td role="cell" data-label="stale reads" class="num">{r.stale_reads}</td>
                                    <td role="cell" data-label="database behind" class="num">{r.database_behind}</td>
                                    <td role="cell" data-label="only in Redis" class="num unsaved">{r.most_unsaved}</td>
                                    <td role="cell" data-label="lost in a crash" class="num lost" data-testid="lost-writes">{r.lost_writes}</td>
                                </tr>
                            }
                        })
                        .collect_view();
                    view! {
                        <p class="small">
                            {format!(
                                "Seed {}: {} operations on {} users, {} % writes, database {} ms; the writer crashes and restarts halfway.",
                                c.seed, c.operations, c.keys, c.write_percent, c.db_latency_ms
                            )}
                        </p>
                        <div class="table-wrap" tabindex="0" role="region" aria-label="Pattern comparison, scrollable">
                            <table class="stacks" role="table" data-testid="patterns-table">
                                <thead role="rowgroup">
                                    <tr role="row">
                                        <th scope="col" role="columnheader">"pattern"</th>
                                        <th scope="col" role="columnheader">"write avg"</th>
                                        <th scope="col" role="columnheader">"write p99"</th>
                                        <th scope="col" role="columnheader">"read avg"</th>
                                        <th scope="col" role="columnheader">"read p99"</th>
                                        <th scope="col" role="columnheader" title="database queries the reads caused">"database reads"</th>
                                        <th scope="col" role="columnheader" title="rows written by the end">"database writes"</th>
                                        <th scope="col" role="columnheader" title="reads answered with an older version than the database held">"stale reads"</th>
                                        <th scope="col" role="columnheader" title="reads after which the database held an older version than the one answered">"database behind"</th>
                                        <th scope="col" role="columnheader" title="the most writes that were only in Redis at one moment">"only in Redis"</th>
                                        <th scope="col" role="columnheader" title="acknowledged writes that never reached the database when the writer crashed halfway">"lost in a crash"</th>
                                    </tr>
                                </thead>
                                <tbody role="rowgroup">{rows}</tbody>
                            </table>
                        </div>
                    }
                })
            }}
        </section>
    }
}
