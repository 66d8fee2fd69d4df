//! The stampede benchmark, `cargo xtask bench stampede`: a herd of 1,000
//! concurrent reads on a cold key across 3 instances, with the tutorial's
//! 100 ms database, under each defence, first with a database of 100
//! connections (the baseline: no queue to speak of), then with the
//! default 10 connections and a 3 s wait, where it saturates; then the
//! same around the moment a cached key expires (default database).

use backend::{Backend, Config};
use shared::{Defence, HerdSpec, HerdTiming, Kind, SandboxId};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.db_latency_ms = 100;
    let backend = Backend::start(config).expect("back end starts");
    let sandbox = SandboxId::parse("bench").unwrap();
    backend.playground.open_sandbox(Some(&sandbox)).await.unwrap();
    let runs = [
        (HerdTiming::Cold, 100, "1000 concurrent reads of a cold key, 3 instances, 100 ms database with 100 connections (baseline)"),
        (HerdTiming::Cold, 10, "the same with the default database: 10 connections, a query waits at most 3 s for one"),
        (HerdTiming::AtExpiry, 10, "1000 reads spread over the 800 ms around the moment a cached key expires (default database)"),
    ];
    for (timing, connections, title) in runs {
        // (The many-keys workload follows the loop.)
        let mut settings = backend.playground.sandbox(&sandbox).unwrap().settings();
        settings.db_connections = connections;
        settings.db_wait_ms = 3_000;
        backend
            .playground
            .update_settings(&sandbox, settings)
            .expect("settings apply");
        println!("\n{title} (latencies in ms)");
        println!(
            "{:<30} {:>9} {:>11} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
            "defence",
            "db loads",
            "from cache",
            "failed",
            "waited",
            "stale",
            "early",
            "p50",
            "p90",
            "p99",
            "max"
        );
        for defence in Defence::ALL {
            let spec = HerdSpec {
                kind: Kind::Users,
                id: 1,
                requests: 1_000,
                defence,
                timing,
                beta: 1.0,
                jitter_percent: 25,
            };
            let r = backend
                .playground
                .run_herd(&sandbox, spec)
                .await
                .expect("herd runs");
            let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
            println!(
                "{:<30} {:>9} {:>11} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
                defence.label(),
                r.database_loads,
                r.from_cache,
                r.failed,
                r.waited,
                r.served_stale,
                r.early_recomputes,
                ms(r.p50_us),
                ms(r.p90_us),
                ms(r.p99_us),
                ms(r.max_us)
            );
        }
    }
    println!("\n50 keys cached at the same moment, 2,000 reads over 4 s: the reload spike");
    for defence in [Defence::None, Defence::TtlJitter] {
        let spec = HerdSpec {
            kind: Kind::Users,
            id: 1,
            requests: 2_000,
            defence,
            timing: HerdTiming::ManyKeys,
            beta: 1.0,
            jitter_percent: 50,
        };
        let r = backend
            .playground
            .run_herd(&sandbox, spec)
            .await
            .expect("herd runs");
        println!(
            "{:<30} {:>4} database loads, at most {:>3} in any 100 ms",
            if defence == Defence::TtlJitter {
                "TTL jitter (50 %)"
            } else {
                "no jitter"
            },
            r.database_loads,
            r.peak_loads_per_100ms
        );
    }
}
