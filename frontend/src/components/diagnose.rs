//! The diagnostics drawer: the tutorial's troubleshooting checks run on
//! this sandbox, and puzzles that break it for the learner to diagnose.

use leptos::prelude::*;
use shared::{FaultAction, Kind, LoadSpec};

use super::ConnectionHandle;
use crate::diagnose::{diagnose, Evidence};
use crate::state::AppState;

/// A puzzle: a sandbox set up wrong, and a load to show it.
struct Puzzle {
    name: &'static str,
    test_id: &'static str,
    /// How it breaks the settings.
    breaks: fn(&mut shared::SandboxSettings),
    /// Share of the load's operations that are writes.
    write_percent: u64,
    /// Whether it fills Redis first (a server of one's own only).
    fills_redis: bool,
    /// What it does to Redis through the fault proxy, if anything (the
    /// fault card mends it).
    fault: Option<FaultAction>,
}

const PUZZLES: [Puzzle; 6] = [
    Puzzle {
        name: "Puzzle: reads keep missing",
        test_id: "puzzle-short-ttl",
        breaks: |s| s.cache_ttl_secs = 1,
        write_percent: 0,
        fills_redis: false,
        fault: None,
    },
    Puzzle {
        name: "Puzzle: Redis keeps growing",
        test_id: "puzzle-no-ttl",
        breaks: |s| s.forget_ttl = true,
        write_percent: 0,
        fills_redis: false,
        fault: None,
    },
    Puzzle {
        name: "Puzzle: updates never show",
        test_id: "puzzle-mismatched-keys",
        breaks: |s| s.mismatched_keys = true,
        write_percent: 10,
        fills_redis: false,
        fault: None,
    },
    Puzzle {
        name: "Puzzle: new values are not cached",
        test_id: "puzzle-full-memory",
        breaks: |_| {},
        write_percent: 0,
        fills_redis: true,
        fault: None,
    },
    Puzzle {
        name: "Puzzle: every read is slow",
        test_id: "puzzle-slow-redis",
        breaks: |_| {},
        write_percent: 0,
        fills_redis: false,
        fault: Some(FaultAction::SlowRedis { delay_ms: 20 }),
    },
    Puzzle {
        name: "Puzzle: errors in the logs",
        test_id: "puzzle-redis-down",
        breaks: |_| {},
        write_percent: 0,
        fills_redis: false,
        fault: Some(FaultAction::StopRedis),
    },
];

/// What the full-memory puzzle fills Redis with: 3 MB of values into 2 MB
/// under noeviction, with no reads of its own.
fn filled_full() -> (shared::FillSpec, shared::MemorySettings) {
    (
        shared::FillSpec {
            keys: 3_000,
            value_bytes: 1_024,
            reads: 0,
            // With TTLs: the puzzle is the full memory, not missing TTLs.
            with_ttl: true,
            ..shared::FillSpec::default()
        },
        shared::MemorySettings {
            maxmemory_kb: shared::MemorySettings::MAXMEMORY_KB.0,
            policy: shared::EvictionPolicy::Noeviction,
            samples: 5,
        },
    )
}

/// The drawer.
#[component]
pub fn DiagnosePanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let connection = expect_context::<ConnectionHandle>();
    let ran = RwSignal::new(false);
    let run = move |_| {
        ran.set(true);
        connection.with_value(|c| {
            c.check_divergence();
            c.inspect_keys();
            c.redis_info();
        });
    };
    // A puzzle starts from a clean sandbox: it resets it (rows, keys,
    // counters, faults), and once the reset is heard, breaks the lessons'
    // baseline settings its own way and starts its load. Its findings are
    // then its own, not an earlier puzzle's.
    let pending = StoredValue::new(None::<&'static Puzzle>);
    let start_puzzle = move |puzzle: &'static Puzzle| {
        pending.set_value(Some(puzzle));
        ran.set(false);
        connection.with_value(|c| c.reset());
    };
    let break_sandbox = move |puzzle: &'static Puzzle| {
        let Some(current) = state.settings.get_untracked() else {
            return;
        };
        let mut settings = shared::lessons::baseline(&current);
        (puzzle.breaks)(&mut settings);
        connection.with_value(|c| {
            c.update_settings(settings);
            if puzzle.fills_redis {
                let (fill, memory) = filled_full();
                c.fill(fill, Some(memory));
            }
            if let Some(fault) = puzzle.fault {
                c.fault(Some(fault));
            }
            c.start_load(LoadSpec {
                kind: Kind::Users,
                per_second: 100,
                write_percent: puzzle.write_percent,
                keys: 200,
                skew: 0.6,
                seconds: 20,
                seed: 3,
            });
        });
    };
    Effect::new(move |heard: Option<u64>| {
        let resets = state.resets.get();
        if heard.is_some_and(|heard| heard != resets) {
            if let Some(puzzle) = pending.get_value() {
                pending.set_value(None);
                break_sandbox(puzzle);
            }
        }
        resets
    });
    let findings = move || {
        let (stats, settings) = (state.stats.get(), state.settings.get());
        state.redis_watch.with(|redis| {
            state.divergence.with(|divergence| {
                state.keys.with(|keys| {
                    state.writes.with(|writes| {
                        diagnose(&Evidence {
                            stats: &stats,
                            settings: settings.as_ref(),
                            redis,
                            divergence: divergence.as_ref(),
                            keys: keys.as_ref(),
                            writes,
                        })
                    })
                })
            })
        })
    };
    view! {
        <section class="card diagnose" aria-labelledby="diagnose-title" data-spot="diagnose">
            <h2 id="diagnose-title">"Diagnostics"</h2>
            <p class="help">
                "The usual suspects when a cache misbehaves, checked on this sandbox: hit ratio, memory, latency, stale data, Redis errors, lookups of missing records. Or start a puzzle: it resets the sandbox, breaks it and runs a load; find out what is wrong."
            </p>
            <div class="row">
                <button type="button" class="primary" data-testid="run-diagnostics" disabled=move || !state.is_open() on:click=run>
                    "Run the checks"
                </button>
                {PUZZLES
                    .iter()
                    .map(|p| {
                        // Filling Redis needs a server of one's own.
                        let off = move || {
                            !state.is_open()
                                || (p.fills_redis && !state.memory.with(|m| m.as_ref().is_some_and(|m| m.controllable)))
                        };
                        let title = p.fills_redis.then_some("needs a sandbox with a redis-server of its own");
                        view! {
                            <button type="button" data-testid=p.test_id title=title disabled=off on:click=move |_| start_puzzle(p)>
                                {p.name}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
            {move || ran.get().then(|| view! {
                <ul class="findings" data-testid="findings">
                    {findings()
                        .into_iter()
                        .map(|f| view! {
                            <li class=if f.problem { "finding problem" } else { "finding" } data-testid="finding">
                                <strong>{f.check}</strong>
                                {if f.problem { ": a problem. " } else { ": fine. " }}
                                {f.text}
                            </li>
                        })
                        .collect_view()}
                </ul>
            })}
        </section>
    }
}
