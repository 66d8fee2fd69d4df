//! "Redis itself": the server's own figures every two seconds (memory
//! against maxmemory, evictions, expirations, its hit ratio, operations a
//! second) and the alerts a production cache would page someone for.

use leptos::prelude::*;

use super::ConnectionHandle;
use crate::format;
use crate::state::AppState;

/// How often the page asks for Redis's figures while the card is shown.
const EVERY_MS: u32 = 2_000;

/// The card.
#[component]
pub fn RedisPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let ask = move || {
        if state.is_open() {
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
                        <div><dt>"evictions/s"</dt><dd>{rates.as_ref().map(|r| format!("{:.0}", r.evictions_per_second)).unwrap_or_else(|| "–".into())}</dd></div>
                        <div><dt>"expirations/s"</dt><dd>{rates.as_ref().map(|r| format!("{:.1}", r.expirations_per_second)).unwrap_or_else(|| "–".into())}</dd></div>
                        <div><dt>"Redis hit ratio"</dt><dd>{rates.and_then(|r| r.hit_ratio).map(format::percent).unwrap_or_else(|| "–".into())}</dd></div>
                    }
                })}
            </dl>
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
