//! Steady load: a seeded stream of reads (and a few writes) over hot and
//! cold keys, and the sandbox's hit ratio, database queries and latency
//! charted as it runs.

use leptos::prelude::*;
use shared::{Kind, LoadSpec};

use super::ConnectionHandle;
use crate::format;
use crate::series::{polyline, Point, Series, POINTS};
use crate::state::AppState;
use shared::decimal::fixed;

/// The load card.
#[component]
pub fn LoadPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let defaults = LoadSpec::default();
    let per_second = RwSignal::new(defaults.per_second.to_string());
    let write_percent = RwSignal::new(defaults.write_percent.to_string());
    let keys = RwSignal::new(defaults.keys.to_string());
    let skew = RwSignal::new(shared::decimal::trimmed(defaults.skew, 2));
    let seconds = RwSignal::new(defaults.seconds.to_string());
    let seed = RwSignal::new(defaults.seed.to_string());
    let error = RwSignal::new(None::<String>);
    // The form shows the load that runs or ran last, a lesson's or another
    // page's included: its numbers then match the charts below. Set once
    // per load (the memo ignores progress reports, which repeat the spec),
    // so typing is not undone.
    let running_spec = Memo::new(move |_| state.load.with(|l| l.as_ref().map(|l| l.spec.clone())));
    Effect::new(move || {
        let Some(spec) = running_spec.get() else {
            return;
        };
        per_second.set(spec.per_second.to_string());
        write_percent.set(spec.write_percent.to_string());
        keys.set(spec.keys.to_string());
        skew.set(shared::decimal::trimmed(spec.skew, 2));
        seconds.set(spec.seconds.to_string());
        seed.set(spec.seed.to_string());
    });
    // The spec as typed, or what is wrong with it.
    let spec = move || -> Result<LoadSpec, String> {
        let whole = |name: &str, text: RwSignal<String>| {
            text.get()
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{name} must be a whole number"))
        };
        let spec = LoadSpec {
            kind: Kind::Users,
            per_second: whole("operations/s", per_second)?,
            write_percent: whole("writes %", write_percent)?,
            keys: whole("users", keys)?,
            skew: shared::decimal::parse(&skew.get()).ok_or_else(|| "skew must be a number".to_string())?,
            seconds: whole("seconds", seconds)?,
            seed: whole("seed", seed)?,
        };
        // The check names the API's fields; the form says its labels.
        spec.validate().map_err(|e| {
            let message = e.to_string();
            [
                ("per_second", "operations/s"),
                ("write_percent", "writes %"),
                ("keys", "users"),
            ]
            .into_iter()
            .find_map(|(field, label)| message.strip_prefix(field).map(|rest| format!("{label}{rest}")))
            .unwrap_or(message)
        })?;
        Ok(spec)
    };
    let running = move || state.load.with(|l| l.as_ref().is_some_and(|l| l.running));
    let start = move |_| match spec() {
        Ok(spec) => {
            error.set(None);
            connection.with_value(|c| c.start_load(spec));
        }
        Err(message) => error.set(Some(message)),
    };
    let stop = move |_| {
        connection.with_value(|c| c.stop_load());
    };
    let field = move |id: &'static str, label: &'static str, text: RwSignal<String>| {
        view! {
            <label for=id>{label}</label>
            <input id=id data-testid=id inputmode="decimal" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
        }
    };
    view! {
        <section class="card load" aria-labelledby="load-title" data-spot="load">
            <h2 id="load-title">"Steady load"</h2>
            <p class="help">
                "Reads (and some writes) at a steady rate over a set of users, a few of them hot, as real traffic is. Watch the hit ratio climb as the hot keys are cached and the database queries fall."
            </p>
            <div class="row">
                {field("load-rate", "operations/s", per_second)}
                {field("load-writes", "writes %", write_percent)}
                {field("load-seconds", "seconds", seconds)}
            </div>
            <div class="row">
                {field("load-keys", "users", keys)}
                {field("load-skew", "skew", skew)}
                {field("load-seed", "seed", seed)}
            </div>
            <p class="help" data-testid="load-shape">
                {move || match spec() {
                    Ok(spec) => format!(
                        "The hottest fifth of the users gets {} of the operations (skew 0: every user alike).",
                        format::percent(spec.share_of_top(0.2))
                    ),
                    Err(message) => message,
                }}
            </p>
            <div class="row">
                <button type="button" class="primary" data-testid="start-load" disabled=move || !state.is_open() on:click=start>
                    {move || if running() { "Restart" } else { "Start" }}
                </button>
                <button type="button" data-testid="stop-load" disabled=move || !running() on:click=stop>
                    "Stop"
                </button>
                <span class="help" data-testid="load-status" aria-live="polite">
                    {move || state.load.with(|l| match l {
                        Some(l) if l.running => format!("running: {} of {} sent", l.sent, l.spec.per_second * l.spec.seconds),
                        Some(l) => format!("ended: {} operations sent", l.sent),
                        None => String::new(),
                    })}
                </span>
            </div>
            {move || error.get().map(|e| view! { <p class="help error">{e}</p> })}
            <Charts series=state.series/>
            <Distribution/>
        </section>
    }
}

/// The hit ratio and the database's queries per second over the last two
/// minutes, a point a second.
#[component]
fn Charts(series: RwSignal<Series>) -> impl IntoView {
    let latest = move || series.with(|s| s.latest().cloned());
    view! {
        <div class="charts" data-testid="load-charts">
            {move || {
                series.with(|s| {
                    (!s.is_empty()).then(|| {
                        let ratios = line(s, 1.0, |p| p.hit_ratio);
                        let most = s.points().map(|p| p.database_per_second).fold(1.0, f64::max);
                        let queries = line(s, most, |p| Some(p.database_per_second));
                        view! {
                            <figure class="chart">
                                <figcaption>"hit ratio"</figcaption>
                                <svg viewBox="0 0 240 60" preserveAspectRatio="none" role="img" aria-label="hit ratio over the last two minutes">
                                    <polyline class="ratio-line" points=ratios/>
                                </svg>
                            </figure>
                            <figure class="chart">
                                <figcaption>{format!("database queries/s (top {})", fixed(most, 0))}</figcaption>
                                <svg viewBox="0 0 240 60" preserveAspectRatio="none" role="img" aria-label="database queries per second over the last two minutes">
                                    <polyline class="queries-line" points=queries/>
                                </svg>
                            </figure>
                        }
                    })
                })
            }}
            <p class="help" data-testid="load-latest">
                {move || latest().map(|p| format!(
                    "Last second: {} reads, hit ratio {}, {} database queries/s, average read {}.",
                    p.reads,
                    p.hit_ratio.map(format::percent).unwrap_or_else(|| "–".into()),
                    fixed(p.database_per_second, 0),
                    p.average_us.map(format::micros).unwrap_or_else(|| "–".into()),
                ))}
            </p>
        </div>
    }
}

/// The chart line of `value` of each point (see [`polyline`]).
pub(super) fn line(series: &Series, top: f64, value: impl Fn(&Point) -> Option<f64>) -> String {
    let values: Vec<Option<f64>> = series.points().map(value).collect();
    polyline(&values, top, MIN_SPAN.min(POINTS))
}

/// The fewest points a chart spreads across its width.
const MIN_SPAN: usize = 20;

/// Read latency with and without the cache: two distributions over the
/// same power-of-two buckets, each as a share of its own reads, with their
/// p50 and p99.
#[component]
fn Distribution() -> impl IntoView {
    use crate::latency::From;
    let state = expect_context::<AppState>();
    view! {
        {move || state.latencies.with(|l| {
            let bars = l.bars();
            (!bars.is_empty()).then(|| {
                let width = 240.0 / bars.len() as f64;
                let rects = bars
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, cache, database))| {
                        let x = i as f64 * width;
                        let half = (width / 2.0 - 1.0).max(1.0);
                        view! {
                            <rect class="cache-bar" x=fixed(x, 1) y=fixed(58.0 - 56.0 * cache, 1) width=fixed(half, 1) height=fixed(56.0 * cache, 1)/>
                            <rect class="database-bar" x=fixed(x + half, 1) y=fixed(58.0 - 56.0 * database, 1) width=fixed(half, 1) height=fixed(56.0 * database, 1)/>
                        }
                    })
                    .collect_view();
                let line = |from: From, name: &str| match (l.quantile_us(from, 0.5), l.quantile_us(from, 0.99)) {
                    (Some(p50), Some(p99)) => format!(
                        "{name}: {} reads, p50 ≤ {}, p99 ≤ {}",
                        l.count(from),
                        format::micros(p50),
                        format::micros(p99)
                    ),
                    _ => format!("{name}: none yet"),
                };
                let range = format!(
                    "from ≤ {} to ≤ {}",
                    format::micros(bars[0].0),
                    format::micros(bars[bars.len() - 1].0)
                );
                view! {
                    <figure class="chart distribution" data-testid="latency-distribution">
                        <figcaption>{format!("read latency, each bar a doubling ({range})")}</figcaption>
                        <svg viewBox="0 0 240 60" preserveAspectRatio="none" role="img" aria-label="read latency distributions, from the cache and from the database">
                            {rects}
                        </svg>
                        <p class="help"><span class="key cache-key"></span>{line(From::Cache, "from the cache")}</p>
                        <p class="help"><span class="key database-key"></span>{line(From::Database, "from the database")}</p>
                    </figure>
                }
            })
        })}
    }
}
