//! `cargo xtask bench replicas`: REST hits through HAProxy on a
//! three-master Redis Cluster, one back-end replica behind it (the
//! baseline) beside two, measured in the same run: 32 keep-alive
//! connections, 8 sandboxes, 5 s per row, median of 3 interleaved rounds.
//! A shared, noisy 2-core machine runs HAProxy, both replicas and six
//! Redis processes on the same cores: the ratio says what a second replica
//! buys there, not on separate machines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::balancer::Balancer;
use e2e::Server;
use embedded_redis::cluster::EmbeddedCluster;
use embedded_redis::RedisServerOptions;
use futures_util::StreamExt;
use shared::ServerMessage;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 32;
const SANDBOXES: usize = 8;
const ROW: Duration = Duration::from_secs(5);
const ROUNDS: usize = 3;

/// New sandboxes made through the balancer (round-robin over its
/// replicas), each kept open by its page.
async fn sandboxes(addr: SocketAddr) -> (Vec<String>, Vec<impl Sized>) {
    let (mut ids, mut pages) = (Vec::new(), Vec::new());
    for _ in 0..SANDBOXES {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                if let Ok(ServerMessage::Hello { sandbox, .. }) = serde_json::from_str(&text) {
                    ids.push(sandbox.to_string());
                    break;
                }
            }
        }
        pages.push(socket);
    }
    (ids, pages)
}

/// One keep-alive connection's GETs until `stop`; counts the answers.
async fn client(addr: SocketAddr, paths: Vec<String>, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut stream = BufReader::new(stream);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let request = format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", paths[i % paths.len()]);
        i += 1;
        if stream.get_mut().write_all(request.as_bytes()).await.is_err() {
            return;
        }
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests per second through `addr` over `ROW`.
async fn row(addr: SocketAddr, ids: &[String]) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let id = &ids[c % ids.len()];
        let paths = (1..=50)
            .map(|user| format!("/api/v1/users/{user}?sandbox={id}"))
            .collect();
        tasks.push(tokio::spawn(client(addr, paths, stop.clone(), done.clone())));
    }
    let started = Instant::now();
    tokio::time::sleep(ROW).await;
    let answered = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    answered as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let cluster = EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a Redis Cluster");
    let data = tempfile::tempdir().unwrap();
    let base = e2e::balancer::replica_config(cluster.urls(), data.path().to_path_buf());
    let replica = move |c: &mut backend::Config| {
        base(c);
        c.db_latency_ms = 0;
        c.sandbox_ops_per_second = Some(0);
    };
    let first = Server::start_api_only(replica.clone()).await;
    let second = Server::start_api_only(replica).await;
    let one = Balancer::start(&[first.addr]);
    let two = Balancer::start(&[first.addr, second.addr]);
    let (one_ids, _one_pages) = sandboxes(one.addr).await;
    let (two_ids, _two_pages) = sandboxes(two.addr).await;
    // Warm: every user of every sandbox cached.
    row(one.addr, &one_ids).await;
    row(two.addr, &two_ids).await;

    let (mut single, mut double) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        single.push(row(one.addr, &one_ids).await);
        double.push(row(two.addr, &two_ids).await);
    }
    let (single, double) = (median(single), median(double));
    println!("REST hits through HAProxy on a 3-master Redis Cluster ({CONNECTIONS} connections, {SANDBOXES} sandboxes, {} s per row, median of {ROUNDS})", ROW.as_secs());
    println!("| replicas | req/s | ratio |");
    println!("|---|---|---|");
    println!("| 1 (baseline) | {single:.0} | 1.00 |");
    println!("| 2 | {double:.0} | {:.2} |", double / single);
    println!(
        "(goal: none; on one 2-core machine both replicas share the cores with HAProxy and the cluster)"
    );
}
