//! `cargo xtask bench browser`: the page in headless Chromium against the
//! real back end (release build), measured by the browser itself.
//!
//! - **Time to interactive**: navigation start to the first greeting drawn
//!   with the Read button enabled (the page's `playground-interactive`
//!   performance mark), on loopback, for fresh sessions (empty cache) and
//!   reloads (cached assets), beside the same loads' DOMContentLoaded as
//!   the baseline, and the bytes the browser actually received; and when
//!   every panel shown had its module. For free play (every lab panel) and
//!   a lesson step (one panel, as a documentation page embeds it).
//! - **Under a flood**: 1,000 reads a second for 10 s into the page's
//!   sandbox, beside 10 s with no reads (the baseline, same page): long
//!   tasks over 50 ms (`PerformanceObserver` `longtask`), animation frames
//!   per second, what the log and the animation's queue hold, the JS heap.

use std::time::Duration;

use e2e::{Driver, Server};
use fantoccini::{Client, Locator};
use shared::{Kind, Origin, SandboxId};

const SANDBOX: &str = "bench-browser";
const RUNS: usize = 3;
const FLOOD_SECONDS: u64 = 10;
const READS_PER_SECOND: u64 = 1_000;

#[derive(serde::Deserialize, Debug, Default)]
struct Load {
    interactive_ms: f64,
    /// When every panel the page shows had its code (lab panels are
    /// modules fetched when first shown).
    panels_ms: f64,
    dom_content_loaded_ms: f64,
    /// Bytes received over the network for the page and its assets
    /// (`transferSize`: 0 when served from the cache).
    transferred: f64,
    /// The assets' bodies as sent (compressed).
    encoded: f64,
    /// The assets' bodies decompressed.
    decoded: f64,
}

/// Waits (bounded) for the page's interactive mark and for no panel still
/// loading, then reads the timings. `free_play`: the page has a Read button,
/// which interactive means is enabled.
async fn measure_load(client: &Client, free_play: bool) -> Load {
    let script = r#"
        const done = arguments[arguments.length - 1];
        const started = performance.now();
        (function check() {
            const mark = performance.getEntriesByName("playground-interactive")[0];
            if (mark && !document.querySelector("[data-testid=panel-loading]")) {
                const nav = performance.getEntriesByType("navigation")[0];
                const assets = performance.getEntriesByType("resource")
                    .filter(r => /\.(wasm|js|css)$/.test(new URL(r.name).pathname));
                const sum = k => assets.reduce((n, r) => n + r[k], 0);
                done({
                    interactive_ms: mark.startTime,
                    panels_ms: performance.now(),
                    dom_content_loaded_ms: nav.domContentLoadedEventEnd,
                    transferred: nav.transferSize + sum("transferSize"),
                    encoded: sum("encodedBodySize"),
                    decoded: sum("decodedBodySize"),
                });
            } else if (performance.now() - started > 30000) {
                done(null);
            } else {
                setTimeout(check, 10);
            }
        })();
    "#;
    let value = client
        .execute_async(script, vec![])
        .await
        .expect("the timing script runs");
    let load: Option<Load> = serde_json::from_value(value).expect("timings");
    let load = load.expect("the page became interactive within 30 s");
    if !free_play {
        return load;
    }
    let read = client
        .find(Locator::Css("[data-testid=read]"))
        .await
        .expect("a Read button");
    assert!(
        read.attr("disabled").await.ok().flatten().is_none(),
        "interactive means the Read button is enabled"
    );
    load
}

#[derive(serde::Deserialize, Debug, Default)]
struct Stretch {
    long_tasks: u64,
    longest_ms: f64,
    frames_per_second: f64,
    heap_mb: f64,
}

const START_WATCHING: &str = r#"
    window.__bench = { long: [], frames: 0, since: performance.now() };
    new PerformanceObserver(list => {
        for (const e of list.getEntries()) window.__bench.long.push(e.duration);
    }).observe({ type: "longtask" });
    if (!window.__frameLoop) {
        window.__frameLoop = true;
        (function frame() { window.__bench.frames++; requestAnimationFrame(frame); })();
    }
"#;

const STOP_WATCHING: &str = r#"
    const b = window.__bench;
    const seconds = (performance.now() - b.since) / 1000;
    const result = {
        long_tasks: b.long.filter(d => d > 50).length,
        longest_ms: b.long.length ? Math.max(...b.long) : 0,
        frames_per_second: b.frames / seconds,
        heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : 0,
    };
    window.__bench = { long: [], frames: 0, since: performance.now() };
    return result;
"#;

async fn stretch(client: &Client, reads: Option<&Server>) -> Stretch {
    client
        .execute(START_WATCHING, vec![])
        .await
        .expect("observers start");
    match reads {
        Some(server) => flood(server).await,
        None => tokio::time::sleep(Duration::from_secs(FLOOD_SECONDS)).await,
    }
    let value = client
        .execute(STOP_WATCHING, vec![])
        .await
        .expect("observers report");
    serde_json::from_value(value).expect("a report")
}

/// `READS_PER_SECOND` reads of the page's sandbox for `FLOOD_SECONDS`, in
/// ticks of 10 ms, each read its own task (as concurrent requests are).
async fn flood(server: &Server) {
    let sandbox = SandboxId::parse(SANDBOX).expect("a sandbox id");
    let per_tick = READS_PER_SECOND / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut tasks = Vec::new();
    for n in 0..FLOOD_SECONDS * 100 {
        tick.tick().await;
        for k in 0..per_tick {
            let (playground, sandbox) = (server.backend.clone(), sandbox.clone());
            tasks.push(tokio::spawn(async move {
                playground
                    .read(&sandbox, Kind::Users, (n * per_tick + k) % 20 + 1, Origin::Rest)
                    .await
                    .is_ok()
            }));
        }
    }
    let mut failed = 0;
    for task in tasks {
        failed += u32::from(!task.await.unwrap_or(false));
    }
    assert_eq!(failed, 0, "every read of the flood answered");
}

async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = Server::start(|config| config.db_latency_ms = 100).await;
    let driver = Driver::start();
    let page = server.page(SANDBOX);

    // Time to interactive: fresh sessions (nothing cached), then reloads;
    // free play, then a lesson step with one lab panel.
    let lesson = format!("http://{}/?lesson=stampede&step=1", server.addr);
    let mut rows: Vec<(&str, Vec<Load>)> = vec![
        ("free play, fresh session", Vec::new()),
        ("free play, reload (cached)", Vec::new()),
        ("lesson step, fresh session", Vec::new()),
        ("lesson step, reload (cached)", Vec::new()),
    ];
    for _ in 0..RUNS {
        for (first, url, free_play) in [(0, &page, true), (2, &lesson, false)] {
            let client = driver.browser(1280, 800).await;
            client.goto(url).await.expect("the page loads");
            rows[first].1.push(measure_load(&client, free_play).await);
            client.goto(url).await.expect("the page reloads");
            rows[first + 1].1.push(measure_load(&client, free_play).await);
            client.close().await.expect("closes");
        }
    }
    println!("\ntime to interactive on loopback, headless Chromium, median of {RUNS}");
    println!(
        "{:<30} {:>12} {:>18} {:>18} {:>11} {:>12} {:>11}",
        "", "interactive", "panels drawn", "DOMContentLoaded", "received", "assets sent", "unpacked"
    );
    for (name, loads) in &rows {
        println!(
            "{:<30} {:>9.0} ms {:>15.0} ms {:>15.0} ms {:>8.0} KB {:>9.0} KB {:>8.0} KB",
            name,
            median(loads.iter().map(|l| l.interactive_ms).collect()),
            median(loads.iter().map(|l| l.panels_ms).collect()),
            median(loads.iter().map(|l| l.dom_content_loaded_ms).collect()),
            median(loads.iter().map(|l| l.transferred).collect()) / 1024.0,
            median(loads.iter().map(|l| l.encoded).collect()) / 1024.0,
            median(loads.iter().map(|l| l.decoded).collect()) / 1024.0,
        );
    }
    println!("goal: interactive ≤ 500 ms (fresh session)");

    // Under a flood, beside a quiet stretch of the same page.
    let client = driver.browser(1280, 800).await;
    client.goto(&page).await.expect("the page loads");
    measure_load(&client, true).await;
    let quiet = stretch(&client, None).await;
    let flooded = stretch(&client, Some(&server)).await;
    // What came in is on the page within a summary interval.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = client
        .find_all(Locator::Css("[data-testid=log] .entry"))
        .await
        .map_or(0, |entries| entries.len());
    let queue = text(&client, ".toolbar .queue").await;
    let untraced = text(&client, "[data-testid=untraced]").await;
    println!(
        "\nthe page under {READS_PER_SECOND} reads/s for {FLOOD_SECONDS} s, beside {FLOOD_SECONDS} s with no reads"
    );
    println!(
        "{:<24} {:>22} {:>12} {:>14} {:>10}",
        "", "long tasks > 50 ms", "longest", "frames/s", "JS heap"
    );
    for (name, s) in [("no reads (baseline)", &quiet), ("1,000 reads/s", &flooded)] {
        println!(
            "{:<24} {:>22} {:>9.0} ms {:>14.1} {:>7.1} MB",
            name, s.long_tasks, s.longest_ms, s.frames_per_second, s.heap_mb
        );
    }
    println!("goal: no long task over 50 ms under the flood");
    println!("log entries: {log} (bounded at 50); animation queue: {queue}");
    println!("page says: {untraced}");
    client.close().await.expect("closes");
}
