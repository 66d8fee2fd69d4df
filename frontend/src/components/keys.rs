//! "Keys in Redis": what the sandbox holds in Redis right now, each key
//! with its TTL counting down, its type, size and use, and a warning for
//! keys that have no TTL (a cache that only grows).

use leptos::prelude::*;
use shared::KeyInfo;

use super::ConnectionHandle;
use crate::state::AppState;

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
                        view! {
                            {warning}
                            <p class="help" data-testid="keys-summary">{summary}</p>
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
                format!("{:.0} s", (left / 1000.0).ceil())
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
