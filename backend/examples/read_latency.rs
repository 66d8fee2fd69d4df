//! Read latency by outcome against a real `redis-server` and SQLite:
//! `cargo xtask bench read-latency` runs it. Numbers depend on the
//! machine; the shape (a hit is about a hundred times faster than a miss
//! with the tutorial's 100 ms database) is the point. Each table starts
//! with its baseline, measured in the same run: one `GET` of a cached
//! entry straight from redis-rs, which a hit can only add to.

use std::time::Duration;

use backend::{Backend, Config};
use shared::{Kind, Origin, Outcome, SandboxId};

#[tokio::main]
async fn main() {
    for db_latency_ms in [100, 0] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.data_dir = dir.path().to_path_buf();
        config.db_latency_ms = db_latency_ms;
        let mut backend = Backend::start(config).expect("back end starts");
        let sandbox = SandboxId::parse("bench").unwrap();
        backend.playground.open_sandbox(Some(&sandbox)).await.unwrap();
        backend.playground.open_sandbox(Some(&sandbox)).await.unwrap();
        let playground = backend.playground.clone();
        let read = |id: u64| {
            let playground = playground.clone();
            let sandbox = sandbox.clone();
            async move {
                playground
                    .read(&sandbox, Kind::Users, id, Origin::Rest)
                    .await
                    .unwrap()
            }
        };

        let mut samples: Vec<(Outcome, u64)> = Vec::new();
        let ids = 1..=100u64;
        for id in ids.clone() {
            let r = read(id).await;
            samples.push((r.outcome, r.latency_us));
        }
        for _ in 0..20 {
            for id in ids.clone() {
                let r = read(id).await;
                samples.push((r.outcome, r.latency_us));
            }
        }
        for _ in 0..10 {
            let r = read(999_999).await;
            samples.push((r.outcome, r.latency_us));
        }
        // The baseline, in the same run: one `GET` of the same cached entry
        // straight from redis-rs, with nothing of the engine or the
        // playground around it.
        let baseline = baseline_gets(backend.embedded_redis.as_ref().unwrap().url(), 2_000).await;
        backend.embedded_redis.as_mut().unwrap().stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for id in 1..=30 {
            let r = read(id).await;
            samples.push((r.outcome, r.latency_us));
        }

        println!("\nsimulated database latency {db_latency_ms} ms (latencies in microseconds)");
        println!(
            "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10} {:>12}",
            "outcome", "reads", "p50", "p90", "p99", "max", "p50 ÷ GET"
        );
        let baseline_p50 = row("baseline: one redis-rs GET", baseline, None);
        for outcome in [Outcome::Hit, Outcome::NullHit, Outcome::Miss, Outcome::Fallback] {
            let values: Vec<u64> = samples
                .iter()
                .filter(|(o, _)| *o == outcome)
                .map(|(_, v)| *v)
                .collect();
            if !values.is_empty() {
                row(outcome.label(), values, Some(baseline_p50));
            }
        }
    }
}

/// Prints one row of percentiles (and its median against the baseline's);
/// returns its median.
fn row(label: &str, mut values: Vec<u64>, baseline_p50: Option<u64>) -> u64 {
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let ratio = match baseline_p50 {
        Some(base) => format!("×{:.1}", at(0.5) as f64 / base.max(1) as f64),
        None => "1".into(),
    };
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10} {:>12}",
        label,
        values.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        values[values.len() - 1],
        ratio
    );
    at(0.5)
}

/// `n` timed `GET`s of a cached user, in microseconds, on a connection of
/// their own.
async fn baseline_gets(url: String, n: usize) -> Vec<u64> {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*user:1")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let key = keys.first().expect("user 1 is cached").clone();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = std::time::Instant::now();
        let _: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("GET");
        took.push(started.elapsed().as_micros() as u64);
    }
    took
}
