//! The stampede lab: fire a herd of concurrent reads at a cold key and
//! compare the defences side by side.

use leptos::prelude::*;
use shared::{entity::parse_id, Defence, HerdResult, HerdSpec, HerdTiming, Kind};

use super::ConnectionHandle;
use crate::format;
use crate::state::AppState;
use shared::decimal::fixed;

/// The stampede card.
#[component]
pub fn StampedePanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let id_text = RwSignal::new("1".to_string());
    let requests_text = RwSignal::new("1000".to_string());
    let defence = RwSignal::new(Defence::None);
    let timing = RwSignal::new(HerdTiming::Cold);
    let beta_text = RwSignal::new("1.0".to_string());
    let jitter_text = RwSignal::new("25".to_string());
    let error = RwSignal::new(None::<String>);
    // The form follows the last herd that ran, whoever fired it (a lesson's
    // step, another page on this sandbox): change one thing and fire again
    // to compare.
    Effect::new(move || {
        if let Some(spec) = state.herds.with(|h| h.last().map(|h| h.spec.clone())) {
            id_text.set(spec.id.to_string());
            requests_text.set(spec.requests.to_string());
            defence.set(spec.defence);
            timing.set(spec.timing);
            beta_text.set(shared::decimal::trimmed(spec.beta, 2));
            jitter_text.set(spec.jitter_percent.to_string());
            error.set(None);
        }
    });
    let running = move || state.busy();
    let fire = move |_| {
        let id = match parse_id(&id_text.get_untracked()) {
            Ok(id) => id,
            Err(e) => return error.set(Some(e.to_string())),
        };
        let requests = match requests_text.get_untracked().trim().parse::<u64>() {
            Ok(n) if (1..=HerdSpec::MAX_REQUESTS).contains(&n) => n,
            _ => {
                return error.set(Some(format!(
                    "requests must be a number from 1 to {}",
                    HerdSpec::MAX_REQUESTS
                )))
            }
        };
        let beta = match shared::decimal::parse(&beta_text.get_untracked()) {
            Some(b) if (0.1..=10.0).contains(&b) => b,
            _ => return error.set(Some("beta must be a number from 0.1 to 10".into())),
        };
        let jitter_percent = match jitter_text.get_untracked().trim().parse::<u64>() {
            Ok(j) if j <= 90 => j,
            _ => return error.set(Some("jitter must be a whole percentage from 0 to 90".into())),
        };
        error.set(None);
        let herd = HerdSpec {
            jitter_percent,
            kind: Kind::Users,
            id,
            requests,
            defence: defence.get_untracked(),
            timing: timing.get_untracked(),
            beta,
        };
        connection.with_value(|c| c.run_herd(herd));
    };
    view! {
        <section class="card stampede" aria-labelledby="stampede-title" data-spot="herds">
            <h2 id="stampede-title">"Cache stampede"</h2>
            <p class="help">
                "A herd of concurrent reads hits one key, spread over the three instances. How many reach the database, and who waits?"
            </p>
            <div class="row">
                <label for="herd-requests">"requests"</label>
                <input id="herd-requests" data-testid="herd-requests" inputmode="numeric" prop:value=move || requests_text.get() on:input=move |ev| requests_text.set(event_target_value(&ev))/>
                <label for="herd-id">"user id"</label>
                <input id="herd-id" inputmode="numeric" prop:value=move || id_text.get() on:input=move |ev| id_text.set(event_target_value(&ev))/>
            </div>
            <div class="row">
                <label for="herd-timing">"when"</label>
                <select
                    id="herd-timing"
                    data-testid="herd-timing"
                    on:change=move |ev| {
                        timing.set(match event_target_value(&ev).as_str() {
                            "at_expiry" => HerdTiming::AtExpiry,
                            "many_keys" => HerdTiming::ManyKeys,
                            _ => HerdTiming::Cold,
                        });
                    }
                >
                    <option value="cold" prop:selected=move || timing.get() == HerdTiming::Cold>"all at once, on a cold key"</option>
                    <option value="at_expiry" prop:selected=move || timing.get() == HerdTiming::AtExpiry>"around the moment a cached key expires"</option>
                    <option value="many_keys" prop:selected=move || timing.get() == HerdTiming::ManyKeys>"50 keys cached together, read for 4 s"</option>
                </select>
                <label for="herd-beta">"XFetch beta"</label>
                <input id="herd-beta" inputmode="decimal" prop:value=move || beta_text.get() on:input=move |ev| beta_text.set(event_target_value(&ev))/>
                <label for="herd-jitter">"jitter %"</label>
                <input id="herd-jitter" inputmode="numeric" prop:value=move || jitter_text.get() on:input=move |ev| jitter_text.set(event_target_value(&ev))/>
            </div>
            <div class="row">
                <label for="herd-defence">"defence"</label>
                <select
                    id="herd-defence"
                    data-testid="herd-defence"
                    on:change=move |ev| {
                        if let Ok(d) = event_target_value(&ev).parse::<Defence>() {
                            defence.set(d);
                        }
                    }
                >
                    {Defence::ALL.into_iter().map(|d| view! { <option value=d.name() prop:selected=move || defence.get() == d>{d.label()}</option> }).collect_view()}
                </select>
                <button type="button" class="primary" data-testid="fire-herd" disabled=move || !state.is_open() on:click=fire>
                    {move || if running() { "Running…" } else { "Fire" }}
                </button>
            </div>
            <p class="help">
                "XFetch beta: how eagerly early refresh reloads a key before it expires (1 is usual; higher reloads sooner). Jitter %: how far TTL jitter moves each key's TTL either way."
            </p>
            {move || error.get().map(|e| view! { <p class="help error">{e}</p> })}
            {move || {
                let herds = state.herds.get();
                (!herds.is_empty()).then(|| {
                    let rows = herds
                        .iter()
                        .rev()
                        .map(|h| {
                            view! {
                                <tr role="row" data-testid="herd-row">
                                    <td role="cell" class="lead">
                                        {h.spec.defence.label()}
                                        <span class="timing">
                                            {match h.spec.timing {
                                                HerdTiming::Cold => " · cold",
                                                HerdTiming::AtExpiry => " · at expiry",
                                                HerdTiming::ManyKeys => " · many keys",
                                            }}
                                        </span>
                                    </td>
                                    <td role="cell" class="num" data-label="requests">{h.spec.requests}</td>
                                    <td role="cell" class="num loads" data-label="database loads">{h.database_loads}</td>
                                    <td role="cell" class="num" data-label="from cache">{h.from_cache}</td>
                                    <td role="cell" class={if h.failed > 0 { "num failed-count failed" } else { "num failed-count" }} data-label="failed">{h.failed}</td>
                                    <td role="cell" class="num waited" data-label="waited">{h.waited}</td>
                                    <td role="cell" class="num" data-label="stale">{h.served_stale}</td>
                                    <td role="cell" class="num early" data-label="early">{h.early_recomputes}</td>
                                    <td role="cell" class="num peak" data-label="peak / 100 ms">{h.peak_loads_per_100ms}</td>
                                    <td role="cell" class="num" data-label="p50">{format::micros(h.p50_us)}</td>
                                    <td role="cell" class="num" data-label="p99">{format::micros(h.p99_us)}</td>
                                    <td role="cell" class="num" data-label="max">{format::micros(h.max_us)}</td>
                                </tr>
                            }
                        })
                        .collect_view();
                    view! {
                        <div class="table-wrap" tabindex="0" role="region" aria-label="Herd results, scrollable">
                            <table class="stacks" role="table" data-testid="herd-table">
                                <thead role="rowgroup">
                                    <tr role="row">
                                        <th role="columnheader">"defence"</th><th role="columnheader">"requests"</th><th role="columnheader">"database loads"</th><th role="columnheader">"from cache"</th><th role="columnheader" title="turned away: no database connection came free in time">"failed"</th>
                                        <th role="columnheader">"waited"</th><th role="columnheader">"stale"</th><th role="columnheader">"early"</th><th role="columnheader" title="most database loads in any 100 ms">"peak" <span class="unit">"/ 100 ms"</span></th><th role="columnheader">"p50"</th><th role="columnheader">"p99"</th><th role="columnheader">"max"</th>
                                    </tr>
                                </thead>
                                <tbody role="rowgroup">{rows}</tbody>
                            </table>
                        </div>
                        {herds.last().map(|h| view! { <LatencyChart result=h.clone()/> })}
                        <button type="button" class="secondary" on:click=move |_| state.herds.set(Vec::new())>"Clear results"</button>
                    }
                })
            }}
        </section>
    }
}

/// A bar chart of a herd's latencies: how many requests took how long.
#[component]
fn LatencyChart(
    /// The herd to chart.
    result: HerdResult,
) -> impl IntoView {
    let buckets: Vec<(u64, u64)> = result.histogram.iter().copied().filter(|(_, n)| *n > 0).collect();
    let most = buckets.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let bars = buckets
        .into_iter()
        .map(|(upper_us, count)| {
            let width = 100.0 * count as f64 / most as f64;
            view! {
                <div class="bar-row">
                    <span class="bucket">{format!("≤ {}", format::micros(upper_us))}</span>
                    <span class="bar"><span class="fill" style=format!("width: {}%", fixed(width, 1))></span></span>
                    <span class="count">{count}</span>
                </div>
            }
        })
        .collect_view();
    view! {
        <figure class="latency-chart" data-testid="latency-chart">
            <figcaption>{format!("Latency of the last herd ({}, {} requests)", result.spec.defence.label(), result.spec.requests)}</figcaption>
            {bars}
        </figure>
    }
}
