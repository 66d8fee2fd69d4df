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
        <section class="card instances" aria-labelledby="instances-title" data-spot="instances">
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
            // Keyed by name, each row reading its instance reactively: a
            // cut or a received invalidation updates the row in place, and
            // the button keeps the keyboard focus.
            <ul class="fleet">
                <For
                    each=move || state.instances.with(|all| all.iter().map(|i| i.name.clone()).collect::<Vec<_>>())
                    key=|name| name.clone()
                    children=move |name| {
                        let this = {
                            let name = name.clone();
                            move || state.instances.with(|all| all.iter().find(|i| i.name == name).cloned())
                        };
                        let subscribed = {
                            let this = this.clone();
                            move || this().is_none_or(|i| i.subscribed)
                        };
                        let link = {
                            let subscribed = subscribed.clone();
                            move || {
                                if !near_on() {
                                    "near caches off"
                                } else if subscribed() {
                                    "subscribed"
                                } else {
                                    "link cut: misses invalidations"
                                }
                            }
                        };
                        let counts = move || {
                            this()
                                .map(|i| {
                                    let entries = if i.near_entries == 1 { "entry" } else { "entries" };
                                    format!("{} near {entries} · {} received", i.near_entries, i.received)
                                })
                                .unwrap_or_default()
                        };
                        let (class_sub, label_sub, click_sub) = (subscribed.clone(), subscribed.clone(), subscribed);
                        let target = name.clone();
                        view! {
                            <li
                                class=move || if class_sub() || !near_on() { "instance" } else { "instance cut" }
                                data-testid=format!("instance-{name}")
                            >
                                <strong>{format!("Instance {name}")}</strong>
                                <span class="link">{link}</span>
                                <span class="near">{counts}</span>
                                <button
                                    type="button"
                                    disabled=move || !near_on()
                                    data-testid=format!("link-{name}")
                                    on:click=move |_| {
                                        let connected = !click_sub();
                                        connection.with_value(|c| c.set_instance_link(target.clone(), connected));
                                    }
                                >
                                    {move || if label_sub() || !near_on() { "Cut link" } else { "Reconnect" }}
                                </button>
                            </li>
                        }
                    }
                />
            </ul>
        </section>
    }
}
