//! "Serialization": one record written as JSON, MessagePack and gzipped
//! JSON, padded to the size the learner picks, with each entry's size and
//! its measured encode, decode and `GET` times side by side.

use leptos::prelude::*;
use shared::{Kind, SandboxSettings};

use super::ConnectionHandle;
use crate::format;
use crate::serialization::{nanos, summary};
use crate::state::AppState;

/// The card.
#[component]
pub fn SerializationPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let id = RwSignal::new("42".to_string());
    let padding = RwSignal::new("0".to_string());
    let error = RwSignal::new(None::<String>);
    // The form shows what the table below measured, a lesson's run too.
    Effect::new(move || {
        if let Some((user, bytes)) = state
            .encodings
            .with(|e| e.as_ref().map(|e| (e.id, e.padding_bytes)))
        {
            id.set(user.to_string());
            padding.set(bytes.to_string());
        }
    });
    let compare = move |_| {
        let parsed = shared::parse_id(id.get_untracked().trim())
            .map_err(|e| e.to_string())
            .and_then(|id| {
                let bytes = padding
                    .get_untracked()
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|b| *b <= SandboxSettings::PADDING_BYTES.1)
                    .ok_or_else(|| {
                        format!(
                            "padding must be from 0 to {} bytes",
                            SandboxSettings::PADDING_BYTES.1
                        )
                    })?;
                Ok((id, bytes))
            });
        match parsed {
            Ok((id, bytes)) => {
                error.set(None);
                connection.with_value(|c| c.compare_encodings(Kind::Users, id, bytes));
            }
            Err(message) => error.set(Some(message)),
        }
    };
    view! {
        <section class="card serialization" aria-labelledby="serialization-title" data-spot="serialization">
            <h2 id="serialization-title">"Serialization"</h2>
            <p class="help">
                "Every hit pays for reading the value out of Redis and decoding it. Measure one user written three ways, padded to any size up to 128 KB; the sandbox's own encoding is a setting."
            </p>
            <div class="row">
                <label for="encodings-id">"user"</label>
                <input id="encodings-id" data-testid="encodings-id" inputmode="numeric" prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev))/>
                <label for="encodings-padding">"pad by (bytes)"</label>
                <input id="encodings-padding" data-testid="encodings-padding" inputmode="numeric" prop:value=move || padding.get() on:input=move |ev| padding.set(event_target_value(&ev))/>
                <button type="button" class="primary" data-testid="compare-encodings" disabled=move || !state.is_open() on:click=compare>
                    "Compare"
                </button>
            </div>
            {move || error.get().map(|e| view! { <p class="help error" role="alert">{e}</p> })}
            {move || state.encodings.get().map(|c| {
                let rows = c
                    .rows
                    .iter()
                    .map(|r| view! {
                        <tr data-testid="encoding-row">
                            <td>{r.encoding.label()}</td>
                            <td class="num" data-testid="encoding-bytes">{r.bytes}</td>
                            <td class="num">{nanos(r.encode_ns)}</td>
                            <td class="num">{nanos(r.decode_ns)}</td>
                            <td class="num">{format::micros(r.get_us)}</td>
                            <td class="num">{format::micros(r.hit_us().round() as u64)}</td>
                        </tr>
                    })
                    .collect_view();
                let measured = format!(
                    "{} {}{}; gzip applies above {} bytes of JSON.",
                    c.kind,
                    c.id,
                    if c.padding_bytes > 0 { format!(", padded by {} bytes", c.padding_bytes) } else { String::new() },
                    c.compress_above_bytes
                );
                view! {
                    <p class="help" data-testid="encodings-measured">{measured}</p>
                    <p class="help" data-testid="encodings-summary">{summary(&c)}</p>
                    <div class="table-wrap" tabindex="0" role="region" aria-label="Encodings, scrollable">
                        <table data-testid="encodings-table">
                            <thead>
                                <tr><th>"encoding"</th><th>"bytes in Redis"</th><th>"encode"</th><th>"decode"</th><th>"GET"</th><th title="the GET and the decoding">"a hit"</th></tr>
                            </thead>
                            <tbody>{rows}</tbody>
                        </table>
                    </div>
                }
            })}
        </section>
    }
}
