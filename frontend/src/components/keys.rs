//! "Keys in Redis": what the sandbox holds in Redis right now, each key
//! with its TTL counting down, its type, size and use, and a warning for
//! keys that have no TTL (a cache that only grows).

use leptos::prelude::*;
use shared::KeyInfo;

use super::ConnectionHandle;
use crate::state::AppState;
use shared::decimal::fixed;

/// The keys card.
#[component]
pub fn KeysPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    // The page's clock, a tick a second, for the countdowns.
    let now = RwSignal::new(js_sys::Date::now());
    let tick = gloo_timers::callback::Interval::new(1_000, move || now.set(js_sys::Date::now()));
    let tick = StoredValue::new_local(Some(tick));
    on_cleanup(move || tick.update_value(|t| drop(t.take())));
    let inspect = move |_| {
        connection.with_value(|c| c.inspect_keys());
    };
    view! {
        <section class="card keys" aria-labelledby="keys-title" data-spot="keys">
            <h2 id="keys-title">"Keys in Redis"</h2>
            <p class="help">
                "Every key this sandbox has in Redis, found with SCAN (never KEYS, which would block Redis), with its TTL counting down."
            </p>
            <button type="button" data-testid="inspect-keys" disabled=move || !state.is_open() on:click=inspect>
                "Inspect keys"
            </button>
            <RelatedKeys/>
            {move || {
                state.keys.with(|report| {
                    report.as_ref().map(|report| {
                        // Counted from when the server took the report (the
                        // page's clock and the server's agree closely enough
                        // for a countdown in seconds).
                        let received_ms = report.at_ms as f64;
                        let warning = (report.without_ttl > 0).then(|| {
                            view! {
                                <p class="help error" role="alert" data-testid="no-ttl-warning">
                                    {format!(
                                        "{} key(s) have no TTL: they stay until deleted or evicted, and a cache like that only grows.",
                                        report.without_ttl
                                    )}
                                </p>
                            }
                        });
                        let rows = report
                            .keys
                            .iter()
                            .map(|key| key_row(key.clone(), received_ms, now))
                            .collect_view();
                        let summary = format!(
                            "{} key(s){}; eviction policy {}.",
                            report.keys.len(),
                            if report.truncated { " (the first ones only)" } else { "" },
                            report.policy.as_deref().unwrap_or("unknown (CONFIG refused)")
                        );
                        let groups = crate::ttl::by_kind(report);
                        let kinds = groups
                            .iter()
                            .map(|g| match g.longest_ms {
                                Some(ms) => format!("{} ({}): up to {} s", g.kind, g.keys, ms.div_ceil(1000)),
                                None => format!("{} ({}): no TTL", g.kind, g.keys),
                            })
                            .collect::<Vec<_>>()
                            .join(" · ");
                        let spread = crate::ttl::spread(&groups);
                        let flagged = spread.is_some_and(|s| s > shared::RelatedSpec::SPREAD_ALERT);
                        let kinds = match spread {
                            Some(s) => format!(
                                "TTL by kind: {kinds}. Spread {} %{}",
                                fixed(s * 100.0, 0),
                                if flagged { ": over 50 %, data that belongs together goes stale at different moments." } else { "." }
                            ),
                            None => format!("TTL by kind: {kinds}."),
                        };
                        view! {
                            {warning}
                            <p class="help" data-testid="keys-summary">{summary}</p>
                            <p class="help" class:error=flagged data-testid="keys-kinds">{kinds}</p>
                            <div class="table-wrap" tabindex="0" role="region" aria-label="Keys, scrollable">
                                <table data-testid="keys-table">
                                    <thead>
                                        <tr><th>"key"</th><th>"type"</th><th>"TTL"</th><th>"bytes"</th><th title="seconds since last use, or LFU frequency">"idle / freq"</th></tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                            </div>
                        }
                    })
                })
            }}
        </section>
    }
}

fn key_row(key: KeyInfo, received_ms: f64, now: RwSignal<f64>) -> impl IntoView {
    let ttl = move || match key.ttl_ms {
        None => "none".to_string(),
        Some(ms) => {
            // The page's clock ticks once a second and may lag the report:
            // never count up past what Redis said.
            let left = ms as f64 - (now.get() - received_ms).max(0.0);
            if left <= 0.0 {
                "expired".to_string()
            } else {
                format!("{} s", fixed((left / 1000.0).ceil(), 0))
            }
        }
    };
    let use_ = match (key.idle_secs, key.frequency) {
        (Some(idle), _) => format!("{idle} s idle"),
        (None, Some(freq)) => format!("freq {freq}"),
        (None, None) => "–".to_string(),
    };
    view! {
        <tr data-testid="key-row" class:no-ttl=key.ttl_ms.is_none()>
            <td class="key">{key.key.clone()}</td>
            <td>{key.redis_type.clone()}</td>
            <td class="num" data-testid="key-ttl">{ttl}</td>
            <td class="num">{key.bytes.map(|b| b.to_string()).unwrap_or_else(|| "–".into())}</td>
            <td class="num">{use_}</td>
        </tr>
    }
}

/// Related keys with TTLs of their own: a product's price and stock cached
/// apart, changed together in the database, watched until both show it.
#[component]
fn RelatedKeys() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let price_ttl = RwSignal::new("1".to_string());
    let stock_ttl = RwSignal::new("4".to_string());
    let error = RwSignal::new(None::<String>);
    // The form shows the TTLs of the run below, a lesson's too.
    Effect::new(move || {
        if let Some(spec) = state.related.with(|r| r.as_ref().map(|r| r.spec.clone())) {
            let seconds = |ms: u64| shared::decimal::trimmed(ms as f64 / 1000.0, 3);
            price_ttl.set(seconds(spec.price_ttl_ms));
            stock_ttl.set(seconds(spec.stock_ttl_ms));
        }
    });
    let run = move |_| {
        let millis = |text: RwSignal<String>| {
            shared::decimal::parse(&text.get_untracked())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| (s * 1000.0).round() as u64)
        };
        let spec = match (millis(price_ttl), millis(stock_ttl)) {
            (Some(price_ttl_ms), Some(stock_ttl_ms)) => shared::RelatedSpec {
                id: 7,
                price_ttl_ms,
                stock_ttl_ms,
            },
            _ => {
                error.set(Some("the TTLs are seconds, such as 1 or 2.5".into()));
                return;
            }
        };
        match spec.validate() {
            Ok(()) => {
                error.set(None);
                connection.with_value(|c| c.related_keys(spec));
            }
            // Said in seconds, as the fields are (the spec counts in ms).
            Err(_) => {
                let (lo, hi) = shared::RelatedSpec::TTL_MS;
                error.set(Some(format!(
                    "each TTL must be from {} to {} s",
                    fixed(lo as f64 / 1000.0, 1),
                    fixed(hi as f64 / 1000.0, 0)
                )));
            }
        }
    };
    view! {
        <div class="related" data-spot="related">
            <h3>"Related keys, different TTLs"</h3>
            <p class="help">
                "Product 7's price and stock, cached under two keys with their own TTLs. Both change in the database (no invalidation: the TTLs are trusted), then both keys are read every 250 ms until they show it."
            </p>
            <div class="row">
                <label for="related-price">"price TTL (s)"</label>
                <input id="related-price" data-testid="related-price" inputmode="decimal" prop:value=move || price_ttl.get() on:input=move |ev| price_ttl.set(event_target_value(&ev))/>
                <label for="related-stock">"stock TTL (s)"</label>
                <input id="related-stock" data-testid="related-stock" inputmode="decimal" prop:value=move || stock_ttl.get() on:input=move |ev| stock_ttl.set(event_target_value(&ev))/>
                <button type="button" data-testid="run-related" disabled=move || !state.is_open() on:click=run>
                    "Change both and watch"
                </button>
            </div>
            {move || error.get().map(|e| view! { <p class="help error" role="alert">{e}</p> })}
            {move || state.related.get().map(|r| {
                let cells = r
                    .samples
                    .iter()
                    .map(|s| {
                        let (class, title) = match (s.price_new, s.stock_new) {
                            (true, true) => ("sample both-new", "both new"),
                            (false, false) => ("sample both-old", "both old"),
                            _ => ("sample mismatched", "one new, one old"),
                        };
                        view! { <span class=class title=format!("{} s: {title}", fixed(s.at_ms as f64 / 1000.0, 2))></span> }
                    })
                    .collect_view();
                view! {
                    <div class="samples" data-testid="related-samples" role="img" aria-label="what a reader saw every 250 ms: both old, one new, both new">{cells}</div>
                    <p class="small">"Every 250 ms: grey, both keys old; red, one new and one old; green, both new."</p>
                    <p class="help" class:error=r.flagged data-testid="related-story">{crate::ttl::related_story(&r)}</p>
                }
            })}
        </div>
    }
}
