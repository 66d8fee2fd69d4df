//! Read latency by outcome against a real `redis-server` and SQLite:
//! `cargo xtask bench` runs it. Numbers depend on the machine; the shape
//! (a hit is about a hundred times faster than a miss with the tutorial's
//! 100 ms database) is the point.

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
        backend.embedded_redis.as_mut().unwrap().stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for id in 1..=30 {
            let r = read(id).await;
            samples.push((r.outcome, r.latency_us));
        }

        println!("\nsimulated database latency {db_latency_ms} ms (latencies in microseconds)");
        println!(
            "{:<10} {:>6} {:>10} {:>10} {:>10} {:>10}",
            "outcome", "reads", "p50", "p90", "p99", "max"
        );
        for outcome in [Outcome::Hit, Outcome::NullHit, Outcome::Miss, Outcome::Fallback] {
            let mut values: Vec<u64> = samples
                .iter()
                .filter(|(o, _)| *o == outcome)
                .map(|(_, v)| *v)
                .collect();
            if values.is_empty() {
                continue;
            }
            values.sort_unstable();
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
            println!(
                "{:<10} {:>6} {:>10} {:>10} {:>10} {:>10}",
                outcome.label(),
                values.len(),
                at(0.5),
                at(0.9),
                at(0.99),
                values[values.len() - 1]
            );
        }
    }
}
