//! The application instances: where reads and writes go, each instance's
//! near cache and Pub/Sub link, and a switch to cut a link.

use leptos::prelude::*;

use super::ConnectionHandle;
use crate::state::AppState;

/// The instances card.
#[component]
pub fn InstancesPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let near_on = move || state.settings.with(|s| s.as_ref().is_some_and(|s| s.near_cache));
    let near_ttl = move || {
        state
            .settings
            .with(|s| s.as_ref().map(|s| s.near_ttl_secs).unwrap_or_default())
    };
    let toggle_near = move |on: bool| {
        if let Some(mut settings) = state.settings.get_untracked() {
            settings.near_cache = on;
            connection.with_value(|c| c.update_settings(settings));
        }
    };
    view! {
        <section class="card instances" aria-labelledby="instances-title">
            <h2 id="instances-title">"Application instances"</h2>
            <p class="help">
                "Three copies of the application share Redis and the database. With near caches on, each keeps its own in-memory copy, and writes publish an invalidation on Redis Pub/Sub."
            </p>
            <label class="check">
                <input
                    type="checkbox"
                    data-testid="near-cache"
                    prop:checked=near_on
                    on:change=move |ev| toggle_near(event_target_checked(&ev))
                />
                {move || format!(" Near caches (entries live {} s)", near_ttl())}
            </label>
            <label class="setting">
                <span>"Send my reads and writes to"</span>
                <select
                    data-testid="target-instance"
                    on:change=move |ev| {
                        let value = event_target_value(&ev);
                        state.target_instance.set((!value.is_empty()).then_some(value));
                    }
                >
                    <option value="">"any instance (round-robin)"</option>
                    {move || {
                        state
                            .instances
                            .get()
                            .into_iter()
                            .map(|i| view! { <option value=i.name.clone()>{format!("instance {}", i.name)}</option> })
                            .collect_view()
                    }}
                </select>
            </label>
            <ul class="fleet">
                {move || {
                    state
                        .instances
                        .get()
                        .into_iter()
                        .map(|i| {
                            let name = i.name.clone();
                            let subscribed = i.subscribed;
                            let link = if !near_on() {
                                "near caches off".to_string()
                            } else if subscribed {
                                "subscribed".to_string()
                            } else {
                                "link cut: misses invalidations".to_string()
                            };
                            view! {
                                <li class=if subscribed || !near_on() { "instance" } else { "instance cut" } data-testid=format!("instance-{}", i.name)>
                                    <strong>{format!("Instance {}", i.name)}</strong>
                                    <span class="link">{link}</span>
                                    <span class="near">{format!("{} near entries · {} received", i.near_entries, i.received)}</span>
                                    <button
                                        type="button"
                                        disabled=move || !near_on()
                                        data-testid=format!("link-{}", i.name)
                                        on:click=move |_| {
                                            connection.with_value(|c| c.set_instance_link(name.clone(), !subscribed));
                                        }
                                    >
                                        {if subscribed || !near_on() { "Cut link" } else { "Reconnect" }}
                                    </button>
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ul>
        </section>
    }
}
