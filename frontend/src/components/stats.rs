//! Live counters of the sandbox: hits, misses, hit ratio and latency with
//! and without the cache.

use leptos::prelude::*;

use crate::components::ConnectionHandle;
use crate::format;
use crate::state::AppState;

/// The counters, and below them whatever the page adds (the reset button).
#[component]
pub fn StatsPanel(#[prop(optional)] children: Option<Children>) -> impl IntoView {
    let state = expect_context::<AppState>();
    let stats = state.stats;
    let ratio = move || stats.with(|s| s.hit_ratio());
    view! {
        <section class="card stats" aria-labelledby="stats-title" data-testid="stats" data-spot="stats">
            <h2 id="stats-title">"This sandbox"</h2>
            <dl class="counters">
                <div><dt>"reads"</dt><dd data-testid="reads">{move || stats.with(|s| s.reads())}</dd></div>
                <div><dt>"hits"</dt><dd class="hit" data-testid="hits">{move || stats.with(|s| s.hits)}</dd></div>
                <div><dt>"null hits"</dt><dd class="null-hit">{move || stats.with(|s| s.null_hits)}</dd></div>
                <div data-spot="misses"><dt>"misses"</dt><dd class="miss" data-testid="misses">{move || stats.with(|s| s.misses)}</dd></div>
                <div><dt>"fallbacks"</dt><dd class="fallback">{move || stats.with(|s| s.fallbacks)}</dd></div>
            </dl>
            // Reads that got no answer at all: not reads the cache or the
            // database answered, so not in the counters above or the ratio.
            {move || {
                let failed = stats.with(|s| s.failures);
                (failed > 0).then(|| view! {
                    <p class="help error" data-testid="failed-reads">
                        {format!("{failed} operation(s) failed with no answer (reads or writes): not counted above or in the hit ratio.")}
                    </p>
                })
            }}
            <div class="ratio">
                <span>"hit ratio "<strong>{move || ratio().map(format::percent).unwrap_or_else(|| "–".into())}</strong></span>
                <span class="bar" aria-hidden="true">
                    <span class="fill" style=move || format!("width: {}%", shared::decimal::fixed(ratio().unwrap_or(0.0) * 100.0, 1))></span>
                </span>
            </div>
            <dl class="latency">
                <div>
                    <dt>"average read, with the cache"</dt>
                    <dd>{move || stats.with(|s| s.average_latency_us().map(format::micros).unwrap_or_else(|| "–".into()))}</dd>
                </div>
                <div>
                    <dt>"a database read (every read, without a cache)"</dt>
                    <dd>{move || stats.with(|s| s.average_database_us().map(format::micros).unwrap_or_else(|| "–".into()))}</dd>
                </div>
                <div>
                    <dt>"the cache made reads faster by"</dt>
                    <dd>
                        {move || {
                            // Only once something came from the cache: before the
                            // first hit there is nothing to compare.
                            stats.with(|s| match (s.hits + s.null_hits, s.average_database_us(), s.average_latency_us()) {
                                (1.., Some(db), Some(avg)) => format::speedup(db, avg).unwrap_or_else(|| "–".into()),
                                _ => "–".into(),
                            })
                        }}
                    </dd>
                </div>
            </dl>
            {move || {
                let untraced = stats.with(|s| s.untraced);
                (untraced > 0).then(|| {
                    // The latest flood's rate and latency, from the server's
                    // summaries; its reads are the counts on the arrows.
                    let flood = state.flood.with(|f| {
                        let rate = f.per_second()?;
                        Some(format!(
                            " Latest flood: {} reads/s, p50 under {}, p99 under {}; the arrows count its reads.",
                            shared::decimal::fixed(rate, 0),
                            format::micros(f.quantile_us(0.5)?),
                            format::micros(f.quantile_us(0.99)?)
                        ))
                    });
                    view! {
                        <p class="help" data-testid="untraced">
                            {format!(
                                "{untraced} read(s) came faster than the page can draw them: counted above, not animated.{}",
                                flood.unwrap_or_default()
                            )}
                        </p>
                    }
                })
            }}
            <p class="help" data-testid="bulk-apart" hidden=move || !state.ran_in_bulk()>
                "Herds, fills and comparisons of patterns are not in these counters: each card sums up its own reads."
            </p>
            <p class="help" data-testid="redis-placement">
                {move || {
                    let redis = state.redis.get();
                    (!redis.is_empty()).then(|| format!("Redis: {redis}."))
                }}
            </p>
            {children.map(|children| children())}
        </section>
    }
}

/// "Reset this sandbox": its rows back to the seed, its cache emptied, its
/// counters cleared, for every page watching it.
#[component]
pub fn ResetSandbox() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let shared = move || {
        state.sandbox.with(|s| {
            s.as_ref()
                .is_some_and(|s| s.as_str() == shared::SandboxId::DEFAULT)
        })
    };
    view! {
        <div class="reset">
            <button
                type="button"
                class="secondary"
                data-testid="reset"
                aria-describedby="reset-help"
                disabled=move || !state.is_open()
                on:click=move |_| {
                    connection.with_value(|c| c.reset());
                }
            >
                "Reset this sandbox"
            </button>
            <p class="help" id="reset-help">
                {move || if shared() {
                    "Puts the rows back to the seed data, empties the cache and clears these counters, for everyone watching the shared sandbox."
                } else {
                    "Puts the rows back to the seed data, empties the cache and clears these counters."
                }}
            </p>
        </div>
    }
}
