//! `cargo xtask bench sandboxes`: many browsers at once, each in a sandbox
//! of its own, over real WebSockets on loopback, against the real back end,
//! Redis and SQLite.
//!
//! Measured in one run, side by side: one browser alone (the baseline),
//! then `--clients` browsers (200 by default) each opening its own sandbox
//! and reading a cached record `--reads` times over its WebSocket. Printed:
//! the p50 and p99 of a cached read as each browser sees it, and what a
//! sandbox costs in memory (the back end's RSS, and Redis's
//! `used_memory`). Bounded: it ends after the reads, whatever the machine.

use std::time::{Duration, Instant};

use backend::{Backend, Config};
use futures_util::{SinkExt, StreamExt};
use load::{redis_used, rss};
use shared::ServerMessage;
use tokio_tungstenite::tungstenite::Message;

#[path = "common/load.rs"]
mod load;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    clients: usize,
    reads: usize,
}

fn args() -> Args {
    let mut args = Args {
        clients: 200,
        reads: 50,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--clients", Some(n)) if (1..=1_000).contains(&n) => args.clients = n,
            ("--reads", Some(n)) if (1..=10_000).contains(&n) => args.reads = n,
            _ => {
                eprintln!("usage: sandboxes [--clients 1..=1000] [--reads 1..=10000]");
                std::process::exit(2);
            }
        }
    }
    args
}

/// A browser: connects (a new sandbox), is greeted.
async fn open(addr: std::net::SocketAddr) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connects");
    match next(&mut socket).await {
        ServerMessage::Hello { .. } => socket,
        other => panic!("expected hello, got {other:?}"),
    }
}

async fn next(socket: &mut Socket) -> ServerMessage {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(&text).expect("a server message")
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

/// One read of user 1 over the socket; how long until its reply.
async fn read(socket: &mut Socket, request_id: u64) -> Duration {
    let started = Instant::now();
    let command = format!(r#"{{"type":"read","request_id":{request_id},"kind":"users","id":1}}"#);
    socket.send(Message::Text(command.into())).await.expect("sends");
    loop {
        match next(socket).await {
            ServerMessage::ReadReply { request_id: id, .. } if id == request_id => return started.elapsed(),
            ServerMessage::Error { message, .. } => panic!("read refused: {message}"),
            _ => {}
        }
    }
}

/// `reads` cached reads (after one read that fills the cache).
async fn browse(mut socket: Socket, reads: usize) -> Vec<Duration> {
    read(&mut socket, 0).await;
    let mut latencies = Vec::with_capacity(reads);
    for n in 1..=reads {
        latencies.push(read(&mut socket, n as u64).await);
    }
    let _ = socket.close(None).await;
    latencies
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1_000.0)
}

#[tokio::main]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.static_dir = dir.path().join("no-front-end");
    // Room for every sandbox and browser of this one address.
    let room = 2 * args.clients as u64 + 10;
    config.max_sandboxes = Some(room);
    config.sockets_per_client = Some(room);
    config.sandboxes_per_minute = Some(u32::try_from(room).unwrap_or(u32::MAX));
    let backend = Backend::start(config).expect("back end starts");
    let redis_url = backend.embedded_redis.as_ref().expect("its own Redis").url();
    let listener = backend.bind().await.expect("binds");
    let addr = listener.local_addr().unwrap();
    let serving = backend.share();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });

    let (rss_before, redis_before) = (rss(), redis_used(&redis_url));
    // The baseline: one browser alone.
    let mut alone = browse(open(addr).await, args.reads).await;
    alone.sort();

    let (rss_one, redis_one) = (rss(), redis_used(&redis_url));
    // Sandboxes alone, without browsers: what one costs by itself.
    let playground = backend.playground.clone();
    for _ in 0..args.clients {
        let sandbox = playground.open_sandbox(None).await.expect("opens").id.clone();
        playground
            .read(&sandbox, shared::Kind::Users, 1, shared::Origin::Rest)
            .await
            .expect("reads");
    }
    let rss_bare = rss();
    let mut sockets = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        sockets.push(open(addr).await);
    }
    let started = Instant::now();
    let browsers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(browse(socket, args.reads)))
        .collect();
    let mut together = Vec::new();
    for browser in browsers {
        together.extend(browser.await.expect("a browser finished"));
    }
    let took = started.elapsed();
    together.sort();
    let (rss_all, redis_all) = (rss(), redis_used(&redis_url));
    let sandboxes = backend.playground.sandboxes.len();

    let n = args.clients as u64;
    println!(
        "\n{} browsers, each in its own sandbox, {} cached reads each over its WebSocket (loopback)",
        args.clients, args.reads
    );
    println!(
        "{:<44} {:>10} {:>10}",
        "cached read, as the browser sees it", "p50", "p99"
    );
    println!(
        "{:<44} {:>10} {:>10}",
        "1 browser alone (baseline)",
        ms(percentile(&alone, 50)),
        ms(percentile(&alone, 99))
    );
    println!(
        "{:<44} {:>10} {:>10}   ({:.0} reads/s in all)",
        format!("{} browsers at once", args.clients),
        ms(percentile(&together, 50)),
        ms(percentile(&together, 99)),
        together.len() as f64 / took.as_secs_f64()
    );
    println!(
        "\nmemory: back end RSS {} MiB with no sandbox, {} MiB with 1 browser's",
        rss_before >> 20,
        rss_one >> 20
    );
    println!(
        "        + {} sandboxes without browsers: {} MiB, {} KiB per sandbox",
        args.clients,
        rss_bare >> 20,
        rss_bare.saturating_sub(rss_one) / n / 1024
    );
    println!(
        "        + {} browsers, each with its own sandbox: {} MiB ({sandboxes} sandboxes), {} KiB per browser and its sandbox",
        args.clients,
        rss_all >> 20,
        rss_all.saturating_sub(rss_bare) / n / 1024
    );
    println!(
        "        Redis used_memory {} KiB, {} KiB, then {} KiB: {} bytes per sandbox (one cached user each)",
        redis_before >> 10,
        redis_one >> 10,
        redis_all >> 10,
        redis_all.saturating_sub(redis_one) / (2 * n)
    );
}
