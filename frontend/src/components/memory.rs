//! "Memory and eviction": the sandbox's server's `maxmemory` and eviction
//! policy, changeable on a server of its own (read-only on the shared
//! Redis, with the reason), and fills that push it past the limit to see
//! what each policy keeps.

use leptos::prelude::*;
use shared::{EvictionPolicy, FillSpec, MemorySettings};

use super::ConnectionHandle;
use crate::eviction;
use crate::format;
use crate::state::AppState;

/// The card.
#[component]
pub fn MemoryPanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    // Asked when the card appears, on every (re)connection, and after a
    // reset (which puts the limits back).
    Effect::new(move || {
        if state.is_open() && state.memory.with(Option::is_none) {
            connection.with_value(|c| c.memory());
        }
    });
    let defaults = MemorySettings::default();
    let maxmemory_mb = RwSignal::new((defaults.maxmemory_kb / 1024).to_string());
    let policy = RwSignal::new(defaults.policy);
    let samples = RwSignal::new(defaults.samples.to_string());
    let fill = FillSpec::default();
    let keys = RwSignal::new(fill.keys.to_string());
    let value_bytes = RwSignal::new(fill.value_bytes.to_string());
    let reads = RwSignal::new(fill.reads.to_string());
    let skew = RwSignal::new(shared::decimal::trimmed(fill.skew, 2));
    let seed = RwSignal::new(fill.seed.to_string());
    let with_ttl = RwSignal::new(fill.with_ttl);
    let drift = RwSignal::new(fill.drift);
    let error = RwSignal::new(None::<String>);
    // The form follows the server: what it holds after a change, a
    // lesson's step or a reset.
    Effect::new(move || {
        if let Some(m) = state.memory.get() {
            if m.maxmemory > 0 {
                maxmemory_mb.set((m.maxmemory / (1 << 20)).max(1).to_string());
            }
            if let Some(known) = EvictionPolicy::from_name(&m.policy) {
                policy.set(known);
            }
            if m.samples > 0 {
                samples.set(m.samples.to_string());
            }
        }
    });
    // The fill form shows what the last fill ran, a lesson's included: its
    // estimate ("about 7.8 MB of values") then speaks of that fill, and
    // "Fill Redis" runs it again.
    Effect::new(move || {
        if let Some(spec) = state.fills.with(|f| f.last().map(|f| f.spec.clone())) {
            keys.set(spec.keys.to_string());
            value_bytes.set(spec.value_bytes.to_string());
            reads.set(spec.reads.to_string());
            skew.set(shared::decimal::trimmed(spec.skew, 2));
            seed.set(spec.seed.to_string());
            with_ttl.set(spec.with_ttl);
            drift.set(spec.drift);
        }
    });
    let whole = |name: &str, text: RwSignal<String>| {
        text.get()
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{name} must be a whole number"))
    };
    let limit_kb = move || state.memory.with(|m| m.as_ref().map_or(0, |m| m.limit_kb));
    let settings = move || -> Result<MemorySettings, String> {
        let settings = MemorySettings {
            maxmemory_kb: whole("maxmemory", maxmemory_mb)?.saturating_mul(1024),
            policy: policy.get(),
            samples: whole("samples", samples)?,
        };
        settings
            .validate(limit_kb())
            .map_err(|e| e.to_string().replace("maxmemory_kb", "maxmemory (KB)"))?;
        Ok(settings)
    };
    let spec = move || -> Result<FillSpec, String> {
        let spec = FillSpec {
            keys: whole("keys", keys)?,
            value_bytes: whole("value size", value_bytes)?,
            with_ttl: with_ttl.get(),
            reads: whole("reads", reads)?,
            skew: shared::decimal::parse(&skew.get()).ok_or_else(|| "skew must be a number".to_string())?,
            seed: whole("seed", seed)?,
            drift: drift.get(),
        };
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    };
    let apply = move |_| match settings() {
        Ok(settings) => {
            error.set(None);
            connection.with_value(|c| c.set_memory(settings));
        }
        Err(message) => error.set(Some(message)),
    };
    let run = move |_| match spec() {
        Ok(spec) => {
            error.set(None);
            connection.with_value(|c| c.fill(spec, None));
        }
        Err(message) => error.set(Some(message)),
    };
    let controllable = move || state.memory.with(|m| m.as_ref().is_some_and(|m| m.controllable));
    let filling = move || state.fill_request.with(Option::is_some);
    let field = move |id: &'static str, label: &'static str, text: RwSignal<String>| {
        view! {
            <label for=id>{label}</label>
            <input id=id data-testid=id inputmode="decimal" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
        }
    };
    view! {
        <section class="card memory" aria-labelledby="memory-title" data-spot="memory">
            <h2 id="memory-title">"Memory and eviction"</h2>
            <p class="help">
                "A cache must have a memory limit. Past it, Redis's eviction policy decides which key goes to make room, or refuses the write. Fill the server past its limit and compare what each policy keeps."
            </p>
            <dl class="figures" data-testid="memory-figures">
                {move || state.memory.with(|m| m.clone()).map(|m| {
                    let used = if m.maxmemory > 0 {
                        format!("{} of {}", format::bytes(m.used_memory), format::bytes(m.maxmemory))
                    } else {
                        format!("{} (no limit)", format::bytes(m.used_memory))
                    };
                    view! {
                        <div><dt>"memory"</dt><dd data-testid="memory-used">{used}</dd></div>
                        <div><dt>"policy"</dt><dd data-testid="memory-policy">{m.policy.clone()}</dd></div>
                        <div><dt>"samples"</dt><dd>{if m.samples > 0 { m.samples.to_string() } else { "–".into() }}</dd></div>
                        <div><dt>"keys"</dt><dd>{m.keys}</dd></div>
                        <div><dt>"evicted so far"</dt><dd data-testid="memory-evicted">{m.evicted_keys}</dd></div>
                    }
                })}
            </dl>
            {move || state.memory.with(|m| m.as_ref().and_then(|m| m.reason.clone())).map(|reason| view! {
                <p class="help" data-testid="memory-read-only">
                    {format!("Read-only: {reason}. ")}
                    <a href="?redis=private" data-testid="memory-private">"Open a sandbox with its own redis-server"</a>
                </p>
            })}
            <fieldset class="memory-settings" disabled=move || !controllable()>
                <legend>"Limit and policy"</legend>
                <div class="row">
                    {field("memory-max", "maxmemory (MB)", maxmemory_mb)}
                    {field("memory-samples", "samples", samples)}
                </div>
                <label class="setting">
                    <span>"Policy"</span>
                    <select
                        data-testid="memory-policy-select"
                        on:change=move |ev| {
                            if let Some(chosen) = EvictionPolicy::from_name(&event_target_value(&ev)) {
                                policy.set(chosen);
                            }
                        }
                        prop:value=move || policy.get().name()
                    >
                        {EvictionPolicy::ALL
                            .into_iter()
                            .map(|p| view! { <option value=p.name()>{p.name()}</option> })
                            .collect_view()}
                    </select>
                </label>
                <p class="help" data-testid="memory-policy-explained">{move || policy.get().explain()}</p>
                <button type="button" data-testid="memory-apply" disabled=move || !state.is_open() on:click=apply>
                    "Apply to Redis"
                </button>
            </fieldset>
            <fieldset class="memory-fill" disabled=move || !controllable()>
                <legend>"Fill"</legend>
                <div class="row">
                    {field("fill-keys", "keys", keys)}
                    {field("fill-bytes", "bytes each", value_bytes)}
                    {field("fill-reads", "then reads", reads)}
                </div>
                <div class="row">
                    {field("fill-skew", "skew", skew)}
                    {field("fill-seed", "seed", seed)}
                </div>
                <label class="setting checkbox">
                    <input type="checkbox" data-testid="fill-ttl" prop:checked=move || with_ttl.get() on:change=move |ev| with_ttl.set(event_target_checked(&ev))/>
                    <span>"Store with a TTL (the volatile policies evict only such keys)"</span>
                </label>
                <label class="setting checkbox">
                    <input type="checkbox" data-testid="fill-drift" prop:checked=move || drift.get() on:change=move |ev| drift.set(event_target_checked(&ev))/>
                    <span>"Popularity moves on (the newest keys are the hot ones, as in a feed)"</span>
                </label>
                <p class="help">
                    {move || match (spec(), state.memory.with(|m| m.as_ref().map(|m| m.maxmemory))) {
                        (Ok(spec), Some(limit)) if limit > 0 => format!(
                            "About {} of values against a limit of {}: each key is read once (a miss that stores it), then the reads are drawn hot-first.",
                            format::bytes(spec.keys * spec.value_bytes),
                            format::bytes(limit)
                        ),
                        (Err(message), _) => message,
                        _ => String::new(),
                    }}
                </p>
                <button type="button" class="primary" data-testid="fill-run" disabled=move || !state.is_open() || filling() on:click=run>
                    {move || if filling() { "Filling…" } else { "Fill Redis" }}
                </button>
            </fieldset>
            {move || error.get().map(|e| view! { <p class="help error" role="alert">{e}</p> })}
            <Fills/>
        </section>
    }
}

/// The page's fills side by side, the latest told in words.
#[component]
fn Fills() -> impl IntoView {
    let state = expect_context::<AppState>();
    view! {
        {move || state.fills.with(|fills| {
            let latest = fills.last()?;
            let best = eviction::best_for_latest(fills);
            let rows = fills
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let ratio = r.hit_ratio().map(format::percent).unwrap_or_else(|| "–".into());
                    view! {
                        <tr role="row" data-testid="fill-row" class:best=best == Some(i)>
                            <td role="cell" class="lead">{r.memory.policy.name()}</td>
                            <td role="cell" class="num" data-label="limit">{format::bytes(r.memory.maxmemory_kb * 1024)}</td>
                            <td role="cell" class="num wide" data-label="values">{format!("{} × {} B{}{}", r.spec.keys, r.spec.value_bytes,
                                if r.spec.with_ttl { ", TTL" } else { "" },
                                if r.spec.drift { ", moving" } else { "" })}</td>
                            <td role="cell" class="num" data-label="refused" data-testid="fill-refused">{r.store_failures}</td>
                            <td role="cell" class="num" data-label="evicted" data-testid="fill-evicted">{r.evicted}</td>
                            <td role="cell" class="num" data-label="keys left">{r.keys_left}</td>
                            <td role="cell" class="num" data-label="hit ratio" data-testid="fill-ratio">{ratio}</td>
                        </tr>
                    }
                })
                .collect_view();
            Some(view! {
                <p class="help" data-testid="fill-story" role="status">{eviction::story(latest)}</p>
                <div class="table-wrap" tabindex="0" role="region" aria-label="Fills, scrollable">
                    <table class="stacks" role="table" data-testid="fills-table">
                        <thead role="rowgroup">
                            <tr role="row"><th role="columnheader">"policy"</th><th role="columnheader">"limit"</th><th role="columnheader">"values"</th><th role="columnheader">"refused"</th><th role="columnheader">"evicted"</th><th role="columnheader">"keys left"</th><th role="columnheader" title="hits over the reads after the fill">"hit ratio"</th></tr>
                        </thead>
                        <tbody role="rowgroup">{rows}</tbody>
                    </table>
                </div>
            })
        })}
    }
}
