//! The load generator the HTTP benchmarks share: keep-alive HTTP/1.1
//! connections sending GETs back to back, on loopback, timed per request.

#![allow(dead_code)] // each benchmark uses part of it

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many distinct records the requests cycle over (`{path}{1..=IDS}`).
pub const IDS: u64 = 100;

/// The process's resident memory, in bytes.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Two runtimes of two workers each: the servers', and the load
/// generator's own, so the load does not queue behind the servers' tasks
/// (the machine has two cores).
pub fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    };
    (runtime(), runtime())
}

/// Redis's `used_memory`, in bytes.
pub fn redis_used(url: &str) -> u64 {
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut connection).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// What one load run measured.
#[derive(Clone)]
pub struct Run {
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

/// `connections` keep-alive connections, each sending GETs back to back
/// for `duration`.
pub async fn run_load(addr: SocketAddr, path: &'static str, connections: usize, duration: Duration) -> Run {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut errors = 0u64;
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buffer = vec![0u8; 64 * 1024];
            let mut n = c as u64;
            while Instant::now() < deadline {
                n += 1;
                let request = format!("GET {path}{} HTTP/1.1\r\nhost: bench\r\n\r\n", n % IDS + 1);
                let sent = Instant::now();
                if stream.write_all(request.as_bytes()).await.is_err()
                    || !read_response(&mut stream, &mut buffer).await
                {
                    errors += 1;
                    stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    continue;
                }
                let _ = histogram.record(sent.elapsed().as_micros().max(1) as u64);
            }
            (histogram, errors)
        }));
    }
    let mut total = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut errors = 0;
    for task in tasks {
        let (histogram, failed) = task.await.unwrap();
        total.add(histogram).unwrap();
        errors += failed;
    }
    Run {
        per_second: total.len() as f64 / started.elapsed().as_secs_f64(),
        p50_us: total.value_at_quantile(0.5),
        p99_us: total.value_at_quantile(0.99),
        errors,
    }
}

/// Reads one HTTP/1.1 response (headers, then `content-length` bytes);
/// `false` unless it is a 200.
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut [u8]) -> bool {
    let mut filled = 0;
    loop {
        let Ok(n) = stream.read(&mut buffer[filled..]).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        filled += n;
        let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            if filled == buffer.len() {
                return false;
            }
            continue;
        };
        let headers = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = filled - (end + 4);
        while body < length {
            let Ok(n) = stream.read(&mut buffer[..]).await else {
                return false;
            };
            if n == 0 {
                return false;
            }
            body += n;
        }
        return headers.starts_with("http/1.1 200");
    }
}
