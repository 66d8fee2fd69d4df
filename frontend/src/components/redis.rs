//! "Redis itself": the server's own figures every two seconds (memory
//! against maxmemory, evictions, expirations, its hit ratio, operations a
//! second) and the alerts a production cache would page someone for.

use leptos::prelude::*;

use super::ConnectionHandle;
use crate::format;
use crate::health::RedisPoint;
use crate::series::polyline;
use crate::state::AppState;
use shared::decimal::fixed;

/// How often the page asks for Redis's figures while the card is shown.
const EVERY_MS: u32 = 2_000;

/// The card.
#[component]
pub fn RedisPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    // A timer, not a reactive context: read without subscribing.
    let ask = move || {
        if state.link.with_untracked(|l| *l == crate::state::Link::Open) {
            connection.with_value(|c| c.redis_info());
        }
    };
    let poll = gloo_timers::callback::Interval::new(EVERY_MS, ask);
    let poll = StoredValue::new_local(Some(poll));
    on_cleanup(move || poll.update_value(|p| drop(p.take())));
    let watch = state.redis_watch;
    let alerts = move || watch.with(|w| state.series.with(|s| w.alerts(s)));
    view! {
        <section class="card redis" aria-labelledby="redis-title" data-spot="redis">
            <h2 id="redis-title">"Redis itself"</h2>
            <p class="help">
                "The server's own figures (INFO), every two seconds. On a shared Redis they count every sandbox's keys together."
            </p>
            {move || watch.with(|w| w.error().map(|e| view! {
                <p class="help error" data-testid="redis-error">{format!("Redis did not answer: {e}")}</p>
            }))}
            <dl class="figures" data-testid="redis-figures">
                {move || watch.with(|w| w.latest().cloned()).map(|f| {
                    let memory = if f.maxmemory > 0 {
                        format!("{} of {} ({})", format::bytes(f.used_memory), format::bytes(f.maxmemory),
                            format::percent(f.used_memory as f64 / f.maxmemory as f64))
                    } else {
                        format!("{} (no maxmemory)", format::bytes(f.used_memory))
                    };
                    let rates = watch.with(|w| w.rates());
                    view! {
                        <div><dt>"memory"</dt><dd data-testid="redis-memory">{memory}</dd></div>
                        <div><dt>"eviction policy"</dt><dd>{f.maxmemory_policy.clone()}</dd></div>
                        <div><dt>"operations/s"</dt><dd>{f.instantaneous_ops_per_sec}</dd></div>
                        <div><dt>"evictions/s"</dt><dd>{rates.as_ref().map(|r| fixed(r.evictions_per_second, 0)).unwrap_or_else(|| "–".into())}</dd></div>
                        <div><dt>"expirations/s"</dt><dd>{rates.as_ref().map(|r| fixed(r.expirations_per_second, 1)).unwrap_or_else(|| "–".into())}</dd></div>
                        <div><dt>"Redis hit ratio"</dt><dd>{rates.and_then(|r| r.hit_ratio).map(format::percent).unwrap_or_else(|| "–".into())}</dd></div>
                    }
                })}
            </dl>
            <RedisCharts/>
            <div role="status"><ul class="alerts" data-testid="alerts">
                {move || {
                    let alerts = alerts();
                    if alerts.is_empty() {
                        view! { <li class="quiet">"No alert: hit ratio, memory, evictions and database load look healthy."</li> }.into_any()
                    } else {
                        alerts
                            .into_iter()
                            .map(|a| view! { <li class="alert" data-testid="alert">{a.text()}</li> })
                            .collect_view()
                            .into_any()
                    }
                }}
            </ul></div>
        </section>
    }
}

/// Redis's figures over the last two minutes: memory against its limit,
/// operations, evictions and its own hit ratio.
#[component]
fn RedisCharts() -> impl IntoView {
    let state = expect_context::<AppState>();
    let points = move || state.redis_watch.with(|w| w.points());
    view! {
        <div class="charts" data-testid="redis-charts">
            {move || {
                let points = points();
                (!points.is_empty()).then(|| {
                    let limit = points.iter().map(|p| p.maxmemory).max().unwrap_or(0);
                    let most_used = points.iter().map(|p| p.used_memory).max().unwrap_or(0).max(1);
                    // Against the limit when it is near; far below it, a
                    // flat line at the bottom would hide the growth.
                    let near_limit = limit > 0 && most_used * 4 >= limit;
                    let memory_top = if near_limit { limit as f64 } else { most_used as f64 * 1.25 };
                    let most_ops = points.iter().map(|p| p.ops_per_second).max().unwrap_or(0).max(1) as f64;
                    let most_evictions = points.iter().map(|p| p.evictions_per_second).fold(1.0, f64::max);
                    let values = |f: &dyn Fn(&RedisPoint) -> Option<f64>| points.iter().map(f).collect::<Vec<_>>();
                    let chart = |caption: String, label: &'static str, class: &'static str, line: String| view! {
                        <figure class="chart">
                            <figcaption>{caption}</figcaption>
                            <svg viewBox="0 0 240 60" preserveAspectRatio="none" role="img" aria-label=label>
                                <polyline class=class points=line/>
                            </svg>
                        </figure>
                    };
                    view! {
                        {chart(
                            match (near_limit, limit) {
                                (true, _) => format!("memory (of {})", format::bytes(limit)),
                                (false, 0) => format!("memory (top {})", format::bytes(most_used)),
                                (false, _) => format!("memory (top {}; limit {})", format::bytes(most_used), format::bytes(limit)),
                            },
                            "Redis memory over the last two minutes",
                            "memory-line",
                            polyline(&values(&|p| Some(p.used_memory as f64)), memory_top, MIN_SPAN),
                        )}
                        {chart(
                            format!("operations/s (top {})", fixed(most_ops, 0)),
                            "Redis operations per second over the last two minutes",
                            "queries-line",
                            polyline(&values(&|p| Some(p.ops_per_second as f64)), most_ops, MIN_SPAN),
                        )}
                        {chart(
                            format!("evictions/s (top {})", fixed(most_evictions, 0)),
                            "Redis evictions per second over the last two minutes",
                            "evictions-line",
                            polyline(&values(&|p| Some(p.evictions_per_second)), most_evictions, MIN_SPAN),
                        )}
                        {chart(
                            "Redis hit ratio".to_string(),
                            "Redis's own hit ratio over the last two minutes",
                            "ratio-line",
                            polyline(&values(&|p| p.hit_ratio), 1.0, MIN_SPAN),
                        )}
                    }
                })
            }}
        </div>
    }
}

/// The fewest samples a chart spreads across its width (40 s of samples).
const MIN_SPAN: usize = 20;
