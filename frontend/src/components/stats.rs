//! Live counters of the sandbox: hits, misses, hit ratio and latency with
//! and without the cache.

use leptos::prelude::*;

use crate::format;
use crate::state::AppState;

/// The counters.
#[component]
pub fn StatsPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let stats = state.stats;
    let ratio = move || stats.with(|s| s.hit_ratio());
    view! {
        <section class="card stats" aria-labelledby="stats-title" data-testid="stats">
            <h2 id="stats-title">"This sandbox"</h2>
            <dl class="counters">
                <div><dt>"reads"</dt><dd data-testid="reads">{move || stats.with(|s| s.reads())}</dd></div>
                <div><dt>"hits"</dt><dd class="hit" data-testid="hits">{move || stats.with(|s| s.hits)}</dd></div>
                <div><dt>"null hits"</dt><dd class="null-hit">{move || stats.with(|s| s.null_hits)}</dd></div>
                <div><dt>"misses"</dt><dd class="miss" data-testid="misses">{move || stats.with(|s| s.misses)}</dd></div>
                <div><dt>"fallbacks"</dt><dd class="fallback">{move || stats.with(|s| s.fallbacks)}</dd></div>
            </dl>
            <div class="ratio">
                <span>"hit ratio "<strong>{move || ratio().map(format::percent).unwrap_or_else(|| "–".into())}</strong></span>
                <span class="bar" aria-hidden="true">
                    <span class="fill" style=move || format!("width: {:.1}%", ratio().unwrap_or(0.0) * 100.0)></span>
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
                    view! {
                        <p class="help" data-testid="untraced">
                            {format!(
                                "{untraced} read(s) came faster than the page can draw them: counted above, not animated."
                            )}
                        </p>
                    }
                })
            }}
        </section>
    }
}
