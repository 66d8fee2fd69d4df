//! `cargo xtask bench fanout`: what watching costs. The playground's REST
//! read of cached keys in one sandbox, with 0, 1 and `--watchers` (50)
//! clients watching that sandbox over real WebSockets in JSON, and as many
//! on the page's binary wire, side by side in one run; each watcher reads
//! every message it is sent, as a page does.
//!
//! Printed per row: requests per second (median of `--rounds` interleaved
//! rounds of `--seconds` each, 32 keep-alive connections), the ratio to no
//! watcher (goal: 50 watchers within 15 %), messages and bytes each watcher
//! received per second, and the process's RSS before, during and after.
//! The load generator shares the process (its own runtime), the same way
//! for every row.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{Backend, Config};
use futures_util::StreamExt;
use load::{rss, run_load, Run, IDS};
use tokio_tungstenite::tungstenite::Message;

#[path = "common/load.rs"]
mod load;

struct Args {
    seconds: u64,
    rounds: usize,
    watchers: usize,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 6,
        rounds: 3,
        watchers: 50,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        match (pair[0].as_str(), value) {
            ("--seconds", Some(v)) if (1..=600).contains(&v) => args.seconds = v,
            ("--rounds", Some(v)) if (1..=20).contains(&v) => args.rounds = v as usize,
            ("--watchers", Some(v)) if (1..=500).contains(&v) => args.watchers = v as usize,
            (flag, _) => {
                eprintln!(
                    "usage: fanout [--seconds 1..=600] [--rounds 1..=20] [--watchers 1..=500] (not {flag:?})"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// What the watchers of one row received.
#[derive(Default)]
struct Received {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// `n` browsers watching the default sandbox until `stop`; each counts
/// what it is sent. Returns once all of them are greeted.
async fn watch(addr: SocketAddr, n: usize, binary: bool, received: Arc<Received>, stop: Arc<AtomicBool>) {
    let mut greeted = Vec::new();
    let wire = if binary { "&wire=binary" } else { "" };
    for _ in 0..n {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws?sandbox=default{wire}"))
                .await
                .expect("a watcher connects");
        // The greeting is not part of the load's traffic; a refusal (too
        // many watchers) would make the row meaningless.
        match socket.next().await {
            Some(Ok(Message::Text(text))) if !binary && text.starts_with(r#"{"type":"hello""#) => {}
            Some(Ok(Message::Binary(bytes)))
                if binary && shared::wire::greeting_version(&bytes) == Some(shared::PROTOCOL_VERSION) => {}
            other => panic!("a watcher was not greeted: {other:?}"),
        }
        let (received, stop) = (received.clone(), stop.clone());
        greeted.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), socket.next()).await {
                    Ok(Some(Ok(message))) => {
                        let size = match &message {
                            Message::Text(text) => text.len(),
                            other => other.len(),
                        };
                        received.messages.fetch_add(1, Ordering::Relaxed);
                        received.bytes.fetch_add(size as u64, Ordering::Relaxed);
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            let _ = socket.close(None).await;
        }));
    }
    // Detached: they end when `stop` is set.
    drop(greeted);
}

struct Row {
    watchers: usize,
    /// On the page's binary wire, not JSON.
    binary: bool,
    runs: Vec<Run>,
    messages_per_watcher_s: Vec<f64>,
    bytes_per_watcher_s: Vec<f64>,
    rss_during: u64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = args();
    let (servers, load) = load::runtimes();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.static_dir = dir.path().join("no-front-end");
    config.db_latency_ms = 0;
    let room = args.watchers as u64 + 10;
    config.sockets_per_client = Some(room);
    config.sockets_per_sandbox = Some(room);
    let backend = Arc::new(Backend::start(config).expect("back end starts"));
    let addr = servers.block_on(async {
        let listener = backend.bind().await.expect("binds");
        let addr = listener.local_addr().unwrap();
        let serving = backend.clone();
        tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
        // Every key cached before measuring: each request is a hit.
        for id in 1..=IDS {
            backend
                .playground
                .read(
                    &shared::SandboxId::default_sandbox(),
                    shared::Kind::Users,
                    id,
                    shared::Origin::Rest,
                )
                .await
                .expect("reads");
        }
        addr
    });
    let path = "/api/v1/users/";
    let rss_before = rss();
    // Warm the paths.
    load.block_on(run_load(addr, path, 32, Duration::from_secs(1)));

    let mut rows: Vec<Row> = [
        (0, false),
        (1, false),
        (args.watchers, false),
        (args.watchers, true),
    ]
    .into_iter()
    .map(|(watchers, binary)| Row {
        watchers,
        binary,
        runs: Vec::new(),
        messages_per_watcher_s: Vec::new(),
        bytes_per_watcher_s: Vec::new(),
        rss_during: 0,
    })
    .collect();
    for _ in 0..args.rounds {
        for row in &mut rows {
            let received = Arc::new(Received::default());
            let stop = Arc::new(AtomicBool::new(false));
            load.block_on(watch(
                addr,
                row.watchers,
                row.binary,
                received.clone(),
                stop.clone(),
            ));
            let started = Instant::now();
            let run = load.block_on(run_load(addr, path, 32, Duration::from_secs(args.seconds)));
            // What was in flight to the watchers arrives within a summary
            // interval.
            load.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
            let seconds = started.elapsed().as_secs_f64();
            row.rss_during = row.rss_during.max(rss());
            stop.store(true, Ordering::Relaxed);
            if row.watchers > 0 {
                let n = row.watchers as f64;
                row.messages_per_watcher_s
                    .push(received.messages.load(Ordering::Relaxed) as f64 / n / seconds);
                row.bytes_per_watcher_s
                    .push(received.bytes.load(Ordering::Relaxed) as f64 / n / seconds);
            }
            row.runs.push(run);
            // Let the watchers go before the next row.
            load.block_on(async { tokio::time::sleep(Duration::from_millis(400)).await });
        }
    }
    let rss_after = rss();

    println!(
        "\nfan-out: the playground's REST read (all hits) in one sandbox, 32 connections, {} s per row, median of {} rounds",
        args.seconds, args.rounds
    );
    println!(
        "{:<22} {:>10} {:>8} {:>9} {:>9} {:>14} {:>16} {:>10}",
        "watchers", "req/s", "ratio", "p50 µs", "p99 µs", "msgs/s each", "bytes/s each", "RSS MiB"
    );
    let mut baseline = 0.0;
    let mut ratios = Vec::new();
    for row in &mut rows {
        row.runs.sort_by(|x, y| x.per_second.total_cmp(&y.per_second));
        let run = row.runs[row.runs.len() / 2].clone();
        if row.watchers == 0 {
            baseline = run.per_second;
        }
        let ratio = run.per_second / baseline;
        ratios.push(ratio);
        let (messages, bytes) = if row.watchers == 0 {
            ("–".to_string(), "–".to_string())
        } else {
            (
                format!("{:.1}", median(&mut row.messages_per_watcher_s)),
                format!("{:.0}", median(&mut row.bytes_per_watcher_s)),
            )
        };
        println!(
            "{:<22} {:>10.0} {:>8.2} {:>9} {:>9} {:>14} {:>16} {:>10}",
            match (row.watchers, row.binary) {
                (0, _) => "0 (baseline)".to_string(),
                (n, false) => format!("{n} (JSON)"),
                (n, true) => format!("{n} (binary, a page's)"),
            },
            run.per_second,
            ratio,
            run.p50_us,
            run.p99_us,
            messages,
            bytes,
            row.rss_during >> 20
        );
        if run.errors > 0 {
            println!("{:<22} {} requests failed", "", run.errors);
        }
    }
    println!(
        "{} watchers / none = {:.2} in JSON, {:.2} in binary (goal ≥ 0.85); RSS {} MiB before, {} MiB at most during, {} MiB after the watchers left",
        args.watchers,
        ratios[2],
        ratios[3],
        rss_before >> 20,
        rows.iter().map(|r| r.rss_during).max().unwrap_or(0) >> 20,
        rss_after >> 20
    );
    drop(servers);
}
