//! The record form (read, update, delete), the sandbox settings and the
//! playback controls.

use leptos::prelude::*;
use shared::diagram::nodes::STORE_IN_CACHE;
use shared::{
    entity::parse_id, parse_name, Kind, SandboxSettings, StampedePolicy, WriteChange, WriteStrategy,
};

use super::ConnectionHandle;
use crate::format;
use crate::state::AppState;
use crate::timeline::SPEEDS;

/// An id past the seeded range, for trying a record that does not exist.
const MISSING_ID: u64 = 999_999;

/// Choose a table and an id, and read it through the cache.
#[component]
pub fn ReadForm() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let kind = RwSignal::new(Kind::Users);
    let id_text = RwSignal::new("42".to_string());
    let error = RwSignal::new(None::<String>);

    // Step-through: the read stops before it stores what it loaded, until
    // the learner presses "Continue" (see the race card).
    let send = move |id: u64| {
        let pause_before = if state.step_through.get_untracked() {
            vec![STORE_IN_CACHE]
        } else {
            Vec::new()
        };
        connection.with_value(|c| c.read_stepping(kind.get_untracked(), id, pause_before));
    };
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        match parse_id(&id_text.get_untracked()) {
            Ok(id) => {
                error.set(None);
                send(id);
            }
            Err(e) => error.set(Some(e.to_string())),
        }
    };
    let missing = move |_| {
        id_text.set(MISSING_ID.to_string());
        error.set(None);
        send(MISSING_ID);
    };
    let disabled = move || !state.is_open();
    let name_text = RwSignal::new(String::new());
    // Writes check both fields here, so a typo never reaches the server.
    let write = move |change: Option<String>| {
        let id = match parse_id(&id_text.get_untracked()) {
            Ok(id) => id,
            Err(e) => return error.set(Some(e.to_string())),
        };
        let change = match change {
            Some(name) => match parse_name(&name) {
                Ok(name) => WriteChange::Update { name },
                Err(e) => return error.set(Some(e.to_string())),
            },
            None => WriteChange::Delete,
        };
        error.set(None);
        connection.with_value(|c| c.write(kind.get_untracked(), id, change));
    };

    view! {
        <section class="card read" aria-labelledby="read-title">
            <h2 id="read-title">"Read or change a record"</h2>
            <form on:submit=submit>
                <div class="kinds" role="radiogroup" aria-label="Table">
                    {Kind::ALL
                        .into_iter()
                        .map(|k| {
                            view! {
                                <label class="kind">
                                    <input
                                        type="radio"
                                        name="kind"
                                        value=k.path()
                                        prop:checked=move || kind.get() == k
                                        on:change=move |_| kind.set(k)
                                    />
                                    <span>{k.path()}</span>
                                </label>
                            }
                        })
                        .collect_view()}
                </div>
                <div class="row">
                    <label for="record-id">"id"</label>
                    <input
                        id="record-id"
                        data-testid="record-id"
                        inputmode="numeric"
                        autocomplete="off"
                        prop:value=move || id_text.get()
                        on:input=move |ev| id_text.set(event_target_value(&ev))
                        aria-invalid=move || if error.get().is_some() { "true" } else { "false" }
                        aria-describedby="read-help"
                    />
                    <button type="submit" class="primary" data-testid="read" disabled=disabled>
                        {move || if state.busy() { "Reading…" } else { "Read" }}
                    </button>
                </div>
                <p id="read-help" class=move || if error.get().is_some() { "help error" } else { "help" }>
                    {move || error.get().unwrap_or_else(|| "Ids 1–1000 are users, 1–500 products. Read the same id twice: miss, then hit.".into())}
                </p>
                <button type="button" class="secondary" on:click=missing disabled=disabled data-testid="read-missing">
                    {format!("Read a missing id ({MISSING_ID})")}
                </button>
                <div class="row write">
                    <label for="new-name" class="visually-hidden">"New name"</label>
                    <input
                        id="new-name"
                        data-testid="new-name"
                        placeholder="new name"
                        autocomplete="off"
                        prop:value=move || name_text.get()
                        on:input=move |ev| name_text.set(event_target_value(&ev))
                    />
                    <button type="button" data-testid="update" disabled=disabled on:click=move |_| write(Some(name_text.get_untracked()))>
                        "Update"
                    </button>
                    <button type="button" class="danger" data-testid="delete" disabled=disabled on:click=move |_| write(None)>
                        "Delete"
                    </button>
                </div>
            </form>
            <LastResult/>
            <LastWrite/>
        </section>
    }
}

/// The answer to this page's latest read.
#[component]
fn LastResult() -> impl IntoView {
    let state = expect_context::<AppState>();
    move || {
        state.last_result.get().map(|result| {
            let summary = match &result.record {
                Some(record) => format!("{} (show the record)", record.title()),
                None => "no such record".to_string(),
            };
            let record = result.record.as_ref().map(|r| serde_json::to_string_pretty(r).unwrap_or_default());
            // What Redis holds in place of the user's phone number: from
            // this read's trace (a miss stores it), else, for an answer
            // from the cache, from the latest trace of the same record that
            // stored it (a hit's reply is cut before the number). Nothing
            // for a record that does not exist.
            let operation = shared::Operation::Read { kind: result.kind, id: result.id };
            let is_user = matches!(result.record, Some(shared::Record::User(_)));
            let sealed = state.log.with(|log| {
                let this = result.trace_id.and_then(|id| log.iter().find(|t| t.id == id));
                this.and_then(shared::Trace::cached_phone).or_else(|| {
                    result.outcome.from_cache().then(|| {
                        log.iter().filter(|t| t.operation == operation).find_map(shared::Trace::cached_phone)
                    })?
                })
            });
            let sealed = sealed.filter(|_| is_user);
            view! {
                <div class="result" data-testid="result">
                    <p>
                        <span class=format!("outcome {}", result.outcome.label().replace(' ', "-"))>{result.outcome.label()}</span>
                        {format!(" {}/{} in {}", result.kind, result.id, format::micros(result.latency_us))}
                    </p>
                    {match record {
                        Some(json) => view! {
                            <details>
                                <summary>{summary}</summary>
                                <pre tabindex="0" aria-label="The record as JSON">{json}</pre>
                            </details>
                        }
                        .into_any(),
                        None => view! { <p class="help">{summary}</p> }.into_any(),
                    }}
                    {sealed.map(|held| {
                        let (class, before, after) = if shared::looks_sealed(&held) {
                            (
                                "help sealed",
                                "The phone number is sensitive: Redis holds it only encrypted (AES-256-GCM), as ",
                                ". This page got it decrypted: see the record above.",
                            )
                        } else {
                            (
                                "help sealed exposed",
                                "The phone number rests in Redis in the clear: ",
                                ". Anyone who can read this Redis (a GET, MONITOR, a backup) reads it too.",
                            )
                        };
                        view! {
                            <p class=class data-testid="sealed-phone">
                                {before}
                                <code>{format::truncate(&held, 36)}</code>
                                {after}
                            </p>
                        }
                    })}
                </div>
            }
        })
    }
}

/// The answer to this page's latest write.
#[component]
fn LastWrite() -> impl IntoView {
    let state = expect_context::<AppState>();
    move || {
        state.last_write.get().map(|result| {
            let what = match &result.record {
                Some(record) => format!("{}/{} is now {:?} (version {})", result.kind, result.id, record.title(), record.version()),
                None if result.found => format!("{}/{} deleted", result.kind, result.id),
                None => format!("{}/{} does not exist", result.kind, result.id),
            };
            view! {
                <div class="result" data-testid="write-result">
                    <p><span class="outcome written">"written"</span>{format!(" {what} in {}", format::micros(result.latency_us))}</p>
                    <p class="help">{format!("Cache: {}", result.cache.describe())}</p>
                </div>
            }
        })
    }
}

/// The sandbox's settings: write strategy, TTL and database latency. A
/// change applies to every tab watching the sandbox.
#[component]
pub fn SettingsPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let apply = move |change: &dyn Fn(&mut shared::SandboxSettings)| {
        if let Some(mut settings) = state.settings.get_untracked() {
            change(&mut settings);
            connection.with_value(|c| c.update_settings(settings));
        }
    };
    view! {
        <section class="card settings" aria-labelledby="settings-title">
            <h2 id="settings-title">"Sandbox settings"</h2>
            <label class="setting">
                <span>"On write"</span>
                <select
                    data-testid="strategy"
                    on:change=move |ev| {
                        if let Ok(strategy) = event_target_value(&ev).parse::<WriteStrategy>() {
                            apply(&|s| s.write_strategy = strategy);
                        }
                    }
                >
                    {WriteStrategy::ALL
                        .into_iter()
                        .map(|w| {
                            view! {
                                <option
                                    value=w.name()
                                    selected=move || state.settings.with(|s| s.as_ref().map(|s| s.write_strategy) == Some(w))
                                >
                                    {w.label()}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </label>
            <label class="setting">
                <span>"Race protection"</span>
                <select
                    data-testid="race-fix"
                    on:change=move |ev| {
                        if let Ok(fix) = event_target_value(&ev).parse::<shared::RaceFix>() {
                            apply(&|s| s.race_fix = fix);
                        }
                    }
                    prop:value=move || state.settings.with(|s| s.as_ref().map(|s| s.race_fix.name()).unwrap_or("none"))
                >
                    {super::race::race_fix_options()}
                </select>
            </label>
            <label class="setting">
                <span>"Stampede defence"</span>
                <select
                    data-testid="stampede"
                    on:change=move |ev| {
                        if let Ok(policy) = event_target_value(&ev).parse::<StampedePolicy>() {
                            apply(&|s| s.stampede = policy);
                        }
                    }
                    prop:value=move || state.settings.with(|s| s.as_ref().map(|s| s.stampede.name()).unwrap_or("none"))
                >
                    {StampedePolicy::ALL
                        .into_iter()
                        .map(|p| view! { <option value=p.name()>{p.label()}</option> })
                        .collect_view()}
                </select>
            </label>
            <FlagSetting
                label="Cache \"does not exist\""
                test_id="negative-caching"
                get=|s| s.negative_caching
                set=|s, on| s.negative_caching = on
            />
            <FlagSetting
                label="Forget the TTL (the bug: keys never expire)"
                test_id="forget-ttl"
                get=|s| s.forget_ttl
                set=|s, on| s.forget_ttl = on
            />
            <FlagSetting
                label="Writers name keys their own way (the bug: users:42 deleted, user:42 cached)"
                test_id="mismatched-keys"
                get=|s| s.mismatched_keys
                set=|s, on| s.mismatched_keys = on
            />
            <NumberSetting label="TTL jitter (%)" range=(0, 90) get=|s| s.ttl_jitter_percent set=|s, v| s.ttl_jitter_percent = v/>
            <NumberSetting label="Cache TTL (s)" range=SandboxSettings::CACHE_TTL_SECS get=|s| s.cache_ttl_secs set=|s, v| s.cache_ttl_secs = v test_id="cache-ttl"/>
            <NumberSetting
                label="Products' TTL (s; 0: the same)"
                range=(0, SandboxSettings::CACHE_TTL_SECS.1)
                get=|s| s.product_ttl_secs
                set=|s, v| s.product_ttl_secs = v
                test_id="product-ttl"
            />
            <NumberSetting label="Latency jitter (%)" range=(0, 100) get=|s| s.db_jitter_percent set=|s, v| s.db_jitter_percent = v/>
            <NumberSetting label="Database latency (ms)" range=SandboxSettings::DB_LATENCY_MS get=|s| s.db_latency_ms set=|s, v| s.db_latency_ms = v/>
            <NumberSetting
                label="Database connections"
                range=SandboxSettings::DB_CONNECTIONS
                get=|s| s.db_connections
                set=|s, v| s.db_connections = v
                test_id="db-connections"
            />
            <NumberSetting
                label="Wait for a connection (ms)"
                range=SandboxSettings::DB_WAIT_MS
                get=|s| s.db_wait_ms
                set=|s, v| s.db_wait_ms = v
                test_id="db-wait"
            />
            <label class="setting">
                <span>"Value encoding"</span>
                <select
                    data-testid="value-encoding"
                    on:change=move |ev| {
                        if let Ok(encoding) = event_target_value(&ev).parse::<shared::ValueEncoding>() {
                            apply(&|s| s.value_encoding = encoding);
                        }
                    }
                    prop:value=move || state.settings.with(|s| s.as_ref().map(|s| s.value_encoding.name()).unwrap_or("json"))
                >
                    {shared::ValueEncoding::ALL
                        .into_iter()
                        .map(|e| view! { <option value=e.name()>{e.label()}</option> })
                        .collect_view()}
                </select>
            </label>
            <NumberSetting
                label="Gzip above (bytes)"
                range=SandboxSettings::VALUE_BYTES
                get=|s| s.compress_above_bytes
                set=|s, v| s.compress_above_bytes = v
                test_id="compress-above"
            />
            <NumberSetting
                label="Pad values by (bytes)"
                range=SandboxSettings::PADDING_BYTES
                get=|s| s.value_padding_bytes
                set=|s, v| s.value_padding_bytes = v
                test_id="value-padding"
            />
            <FlagSetting
                label="Encrypt phone numbers before caching (off: in the clear in Redis)"
                test_id="seal-sensitive"
                get=|s| s.seal_sensitive
                set=|s, on| s.seal_sensitive = on
            />
            <super::SetupLink/>
        </section>
    }
}

/// One whole-number setting: shown from the sandbox's settings, sent on
/// change when it is a whole number within `range`. Anything else is not
/// sent: the field says why beside it and shows the setting as it is
/// again, so what the field shows is always what the sandbox uses. (The
/// server checks `range` too, for clients other than this page.)
#[component]
pub(super) fn NumberSetting(
    label: &'static str,
    range: (u64, u64),
    get: fn(&SandboxSettings) -> u64,
    set: fn(&mut SandboxSettings, u64),
    #[prop(optional)] test_id: &'static str,
) -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let error = RwSignal::new(None::<String>);
    let shown = move |s: &Option<SandboxSettings>| s.as_ref().map(|s| get(s).to_string()).unwrap_or_default();
    let current = move || state.settings.with(shown);
    let input = NodeRef::<leptos::html::Input>::new();
    // A value sent and not yet taken. Taken, the settings change and the
    // field follows them; refused by the back end (a limit of a hosted
    // playground, say), the page's notice says why and the field shows
    // the setting as it is again.
    let sent = RwSignal::new(false);
    Effect::new(move || {
        state.settings.track();
        sent.set(false);
        error.set(None);
    });
    Effect::new(move || {
        if state.notice.with(Option::is_some) && sent.get_untracked() {
            sent.set(false);
            if let Some(field) = input.get_untracked() {
                field.set_value(&state.settings.with_untracked(shown));
            }
        }
    });
    view! {
        <label class="setting">
            <span>{label}</span>
            <input
                node_ref=input
                type="number"
                min=range.0
                max=range.1
                aria-invalid=move || error.with(Option::is_some).then_some("true")
                data-testid=(!test_id.is_empty()).then_some(test_id)
                prop:value=current
                on:change=move |ev| {
                    let typed = event_target_value(&ev);
                    let Some(mut settings) = state.settings.get_untracked() else { return };
                    match typed.trim().parse::<u64>() {
                        Ok(v) if (range.0..=range.1).contains(&v) => {
                            error.set(None);
                            set(&mut settings, v);
                            sent.set(connection.with_value(|c| c.update_settings(settings)));
                        }
                        _ => {
                            let kept = get(&settings);
                            let typed = typed.trim();
                            let (lo, hi) = range;
                            error.set(Some(if typed.is_empty() {
                                format!("Use a whole number from {lo} to {hi}; kept {kept}.")
                            } else {
                                format!("Use a whole number from {lo} to {hi}, not “{typed}”; kept {kept}.")
                            }));
                            event_target::<web_sys::HtmlInputElement>(&ev).set_value(&kept.to_string());
                        }
                    }
                }
            />
            {move || error.get().map(|e| view! { <span class="help error" role="alert">{e}</span> })}
        </label>
    }
}

/// One on/off setting, shown from the sandbox's settings and sent on
/// change.
#[component]
pub(super) fn FlagSetting(
    label: &'static str,
    test_id: &'static str,
    get: fn(&SandboxSettings) -> bool,
    set: fn(&mut SandboxSettings, bool),
) -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    view! {
        <label class="setting checkbox">
            <input
                type="checkbox"
                data-testid=test_id
                prop:checked=move || state.settings.with(|s| s.as_ref().is_some_and(get))
                on:change=move |ev| {
                    let on = event_target_checked(&ev);
                    if let Some(mut settings) = state.settings.get_untracked() {
                        set(&mut settings, on);
                        connection.with_value(|c| c.update_settings(settings));
                    }
                }
            />
            <span>{label}</span>
        </label>
    }
}

/// Play/pause, step, replay and speed, plus what waits in line.
#[component]
pub fn PlaybackControls() -> impl IntoView {
    let state = expect_context::<AppState>();
    let timeline = state.timeline;
    let paused = move || timeline.with(|t| t.is_paused());
    view! {
        <div class="toolbar" role="toolbar" aria-label="Animation">
            <button
                type="button"
                on:click=move |_| timeline.update(|t| t.toggle_paused())
                aria-keyshortcuts=move || state.shortcuts.get().then_some("Space")
                data-testid="play"
            >
                {move || if paused() { "▶ Play" } else { "❚❚ Pause" }}
            </button>
            <button type="button" on:click=move |_| timeline.update(|t| t.step_forward()) aria-keyshortcuts=move || state.shortcuts.get().then_some("ArrowRight")>
                "Step ›"
            </button>
            <button type="button" on:click=move |_| timeline.update(|t| t.replay()) aria-keyshortcuts=move || state.shortcuts.get().then_some("R")>
                "↺ Replay"
            </button>
            <label class="speed">
                "Speed "
                <select on:change=move |ev| {
                    let value = shared::decimal::parse(&event_target_value(&ev)).unwrap_or(1.0);
                    timeline.update(|t| t.set_speed(value));
                }>
                    {SPEEDS
                        .into_iter()
                        .map(|s| view! { <option value=shared::decimal::trimmed(s, 2) selected=s == 1.0>{format::speed(s)}</option> })
                        .collect_view()}
                </select>
            </label>
            <label class="check shortcuts">
                <input
                    type="checkbox"
                    data-testid="shortcuts"
                    prop:checked=move || state.shortcuts.get()
                    on:change=move |ev| state.shortcuts.set(event_target_checked(&ev))
                />
                " Keys: Space, →, R"
            </label>
            <span class="queue" aria-live="polite">
                {move || {
                    timeline.with(|t| {
                        let mut parts = Vec::new();
                        if t.queued() > 0 {
                            parts.push(format!("{} waiting", t.queued()));
                        }
                        if t.skipped() > 0 {
                            parts.push(format!("{} skipped (in the log)", t.skipped()));
                        }
                        parts.join(" · ")
                    })
                }}
            </span>
        </div>
    }
}
