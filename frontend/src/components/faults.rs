//! "Faults": break this sandbox's Redis (stop, hang, slow, cut), fail its
//! database, and switch the application's defences on and off; the
//! breakers, owed invalidations and a timeline show what it did.

use leptos::prelude::*;
use shared::{FaultAction, SandboxSettings};

use super::controls::{FlagSetting, NumberSetting};
use super::ConnectionHandle;
use crate::faults::{breakers, headline, invalidations, moving, timeline};
use crate::state::AppState;

/// How often the card asks again while something is moving.
const POLL_MS: u32 = 1_000;

/// The card.
#[component]
pub fn FaultsPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let delay = RwSignal::new("300".to_string());
    let error = RwSignal::new(None::<String>);
    let send = move |action: FaultAction| {
        connection.with_value(|c| c.fault(Some(action)));
    };
    // Asked once when shown, then every second while a fault, a breaker or
    // a retry is still moving (nothing tells the page when a breaker's
    // timer runs out).
    let poll = gloo_timers::callback::Interval::new(POLL_MS, move || {
        let stale = state.faults.with_untracked(|r| r.as_ref().is_none_or(moving));
        if stale && state.link.with_untracked(|l| *l == crate::state::Link::Open) {
            connection.with_value(|c| c.fault(None));
        }
    });
    let poll = StoredValue::new_local(Some(poll));
    on_cleanup(move || poll.update_value(|p| drop(p.take())));
    Effect::new(move |_| {
        if state.is_open() && state.faults.with(Option::is_none) {
            connection.with_value(|c| c.fault(None));
        }
    });
    let slow = move |_| match delay
        .get_untracked()
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms <= FaultAction::MAX_DELAY_MS)
    {
        Some(delay_ms) => {
            error.set(None);
            send(FaultAction::SlowRedis { delay_ms });
        }
        None => error.set(Some(format!(
            "the delay must be from 0 to {} ms",
            FaultAction::MAX_DELAY_MS
        ))),
    };
    let redis = move || {
        state
            .faults
            .with(|r| r.as_ref().map(|r| r.redis).unwrap_or_default())
    };
    let closed = move || !state.is_open();
    view! {
        <section class="card faults" aria-labelledby="faults-title" data-spot="faults" data-testid="faults">
            <h2 id="faults-title">"Faults"</h2>
            <p class="help">
                "Break this sandbox's Redis or its database and watch the application cope. Redis is broken by a proxy between this sandbox's application and Redis: no other sandbox notices, and the playground's own checks still see Redis."
            </p>
            <p class="fault-headline" role="status" data-testid="fault-headline" class:broken=move || redis().any()>
                {move || headline(&redis())}
            </p>
            <div class="row" role="group" aria-label="Redis">
                <button type="button" class="danger" data-testid="stop-redis" disabled=move || closed() || redis().down on:click=move |_| send(FaultAction::StopRedis)>
                    "Stop Redis"
                </button>
                <button type="button" data-testid="start-redis" disabled=move || closed() || !redis().down on:click=move |_| send(FaultAction::StartRedis { empty: false })>
                    "Start it, data kept"
                </button>
                <button type="button" data-testid="start-redis-empty" disabled=closed on:click=move |_| send(FaultAction::StartRedis { empty: true })>
                    "Restart it empty"
                </button>
                <button type="button" data-testid="hang-redis" disabled=closed on:click=move |_| send(FaultAction::HangRedis { hung: !redis().hung })>
                    {move || if redis().hung { "Let Redis answer" } else { "Hang Redis" }}
                </button>
                <button type="button" data-testid="cut-connections" disabled=closed on:click=move |_| send(FaultAction::CutConnections)>
                    "Cut connections"
                </button>
            </div>
            <div class="row">
                <label for="fault-delay">"added latency (ms)"</label>
                <input id="fault-delay" data-testid="fault-delay" inputmode="numeric" prop:value=move || delay.get() on:input=move |ev| delay.set(event_target_value(&ev))/>
                <button type="button" data-testid="slow-redis" disabled=closed on:click=slow>"Slow Redis"</button>
                <button
                    type="button"
                    data-testid="full-speed"
                    disabled=move || closed() || redis().delay_ms == 0
                    on:click=move |_| send(FaultAction::SlowRedis { delay_ms: 0 })
                >
                    "Full speed"
                </button>
                <button type="button" data-testid="warm-cache" disabled=closed on:click=move |_| send(FaultAction::WarmCache)>
                    "Warm the cache"
                </button>
            </div>
            {move || error.get().map(|e| view! { <p class="help error" role="alert">{e}</p> })}
            <h3>"What the application does"</h3>
            <div class="settings-grid">
                <FlagSetting label="Fall back to the database when Redis fails" test_id="fallback" get=|s| s.fallback set=|s, on| s.fallback = on/>
                <FlagSetting label="Circuit breaker (5 failures in a row open it for 2 s)" test_id="breaker" get=|s| s.breaker set=|s, on| s.breaker = on/>
                <FlagSetting label="Retry invalidations Redis did not take" test_id="retry-invalidations" get=|s| s.retry_invalidations set=|s, on| s.retry_invalidations = on/>
                <FlagSetting label="Send a command again when its connection was dead (after an outage or a cut)" test_id="resend-dropped" get=|s| s.resend_dropped set=|s, on| s.resend_dropped = on/>
                <FlagSetting label="Delete before the database write (the wrong order)" test_id="delete-first" get=|s| s.delete_first set=|s, on| s.delete_first = on/>
                <NumberSetting label="Fail-safe: keep values past their TTL (s; 0 off)" range=SandboxSettings::FAIL_SAFE_SECS get=|s| s.fail_safe_secs set=|s, v| s.fail_safe_secs = v test_id="fail-safe"/>
                <NumberSetting label="Database queries that fail (%)" range=(0, 100) get=|s| s.db_error_percent set=|s, v| s.db_error_percent = v test_id="db-errors"/>
                <NumberSetting label="Database latency (ms): a slow database" range=SandboxSettings::DB_LATENCY_MS get=|s| s.db_latency_ms set=|s, v| s.db_latency_ms = v/>
            </div>
            {move || state.faults.with(|report| report.as_ref().map(|report| {
                let rows = timeline(report)
                    .into_iter()
                    .map(|(at, text)| view! { <li><span class="when">{at}</span>" "{text}</li> })
                    .collect_view();
                view! {
                    {report.refusal.clone().map(|r| view! { <p class="help error" role="alert">{r}</p> })}
                    <p data-testid="breakers">"Breakers: "{breakers(report)}</p>
                    <p data-testid="fault-counts">{move || state.stats.with(|s| format!(
                        "Since the last reset: {} reads answered by the database after a Redis error, {} failed.",
                        s.fallbacks, s.failures
                    ))}</p>
                    {invalidations(report).map(|text| view! { <p data-testid="owed">{text}</p> })}
                    {(!report.events.is_empty()).then(|| view! {
                        <ol class="fault-timeline" data-testid="fault-timeline" aria-label="Fault timeline">{rows}</ol>
                    })}
                }
            }))}
            // Latency over time: what each fault and defence did to reads.
            {move || state.series.with(|s| (!s.is_empty()).then(|| {
                let most = s.points().filter_map(|p| p.average_us).max().unwrap_or(1).max(1);
                // (Headroom above the slowest second, so a flat line shows.)
                let latency = super::load::line(s, most as f64 * 1.25, |p| p.average_us.map(|us| us as f64));
                view! {
                    <figure class="chart" data-testid="fault-latency">
                        <figcaption>{format!("average read, a point a second (top {})", crate::format::micros(most))}</figcaption>
                        <svg viewBox="0 0 240 60" preserveAspectRatio="none" role="img" aria-label="average read latency over the last two minutes">
                            <polyline class="queries-line" points=latency/>
                        </svg>
                    </figure>
                }
            }))}
            {move || state.divergence.with(|d| d.as_ref().map(|d| view! {
                <p data-testid="fault-divergence">
                    {format!("Last cache-versus-database check: {} of {} cached keys stale.", d.stale(), d.entries.len())}
                </p>
            }))}
        </section>
    }
}
