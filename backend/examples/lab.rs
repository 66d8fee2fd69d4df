//! The traffic and memory lab's figures, `cargo xtask bench lab`, each
//! beside a baseline measured in the same run:
//!
//! - the hit ratio a steady load reaches (200 reads/s over 100 users, Zipf
//!   skew 1: the hottest fifth gets about 70 % of the reads), against the
//!   same load with a 1 s TTL;
//! - eviction on a redis-server of its own with a 3 MB limit: 6,000 values
//!   of 1 KB, then 12,000 reads, steady and with moving popularity, under
//!   allkeys-random (the baseline), allkeys-lru and allkeys-lfu;
//! - one user padded to 100 KB under each value encoding, JSON the
//!   baseline.

use std::time::Duration;

use backend::{Backend, Config};
use shared::{EvictionPolicy, FillSpec, LoadSpec, MemorySettings, SandboxId, ValueEncoding};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.db_latency_ms = 100;
    config.private_redis_servers = Some(1);
    let backend = Backend::start(config).expect("back end starts");
    let playground = &backend.playground;

    // 1. The hit ratio a steady load reaches.
    println!(
        "\nsteady load: 200 reads/s for 20 s over 100 users, Zipf skew 1 (the hottest fifth gets {:.0} %)",
        LoadSpec::default().share_of_top(0.2) * 100.0
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "TTL", "0-5 s", "5-10 s", "10-15 s", "15-20 s"
    );
    for (label, ttl) in [("1 s (baseline)", 1), ("300 s", 300)] {
        let sandbox = SandboxId::parse(&format!("lab-ttl-{ttl}")).unwrap();
        playground.open_sandbox(Some(&sandbox)).await.unwrap();
        let mut settings = playground.sandbox(&sandbox).unwrap().settings();
        settings.cache_ttl_secs = ttl;
        playground.update_settings(&sandbox, settings).unwrap();
        let spec = LoadSpec {
            per_second: 200,
            keys: 100,
            skew: 1.0,
            seconds: 20,
            ..LoadSpec::default()
        };
        backend::load::start(playground, &sandbox, spec).expect("load starts");
        let running = playground.sandbox(&sandbox).unwrap();
        let mut ratios = Vec::new();
        let mut before = running.stats();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let now = running.stats();
            let hits = now.hits + now.null_hits - before.hits - before.null_hits;
            let reads = now.reads() - before.reads();
            ratios.push(format!("{:.1} %", 100.0 * hits as f64 / reads.max(1) as f64));
            before = now;
        }
        println!(
            "{label:<34} {:>9} {:>9} {:>9} {:>9}",
            ratios[0], ratios[1], ratios[2], ratios[3]
        );
    }

    // 2. Eviction under each allkeys policy.
    let own = playground
        .open_sandbox_with(None, true)
        .await
        .expect("a redis-server of its own")
        .id
        .clone();
    for drift in [false, true] {
        println!(
            "\neviction: 6,000 values of 1 KB into a 3 MB redis-server, then 12,000 reads, {}",
            if drift {
                "popularity moving (the newest keys hottest)"
            } else {
                "steady popularity (Zipf skew 1.1)"
            }
        );
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>10} {:>7}",
            "policy", "evicted", "refused", "hit ratio", "vs random", "ms"
        );
        let mut baseline = None;
        for policy in [
            EvictionPolicy::AllkeysRandom,
            EvictionPolicy::AllkeysLru,
            EvictionPolicy::AllkeysLfu,
        ] {
            playground.reset(&own).await.unwrap();
            let memory = MemorySettings {
                maxmemory_kb: 3 * 1024,
                policy,
                samples: 5,
            };
            playground.set_memory(&own, memory).await.unwrap();
            let spec = FillSpec {
                keys: 6_000,
                value_bytes: 1_024,
                with_ttl: false,
                reads: 12_000,
                skew: if drift { 1.0 } else { 1.1 },
                seed: 1,
                drift,
            };
            let r = playground.fill(&own, spec).await.expect("fill");
            let ratio = r.hit_ratio().unwrap_or(0.0);
            let base = *baseline.get_or_insert(ratio);
            println!(
                "{:<28} {:>9} {:>9} {:>8.1} % {:>10.2} {:>7}",
                policy.name(),
                r.evicted,
                r.store_failures,
                ratio * 100.0,
                ratio / base.max(f64::MIN_POSITIVE),
                r.duration_ms
            );
        }
    }

    // 3. Value encodings.
    let shared_sandbox = SandboxId::default_sandbox();
    for padding in [0, 100_000] {
        let c = playground
            .compare_encodings(&shared_sandbox, shared::Kind::Users, 42, padding)
            .await
            .expect("comparison");
        println!(
            "\nuser 42{}: one entry under each encoding (medians)",
            if padding > 0 { " padded by 100 KB" } else { "" }
        );
        println!(
            "{:<26} {:>9} {:>11} {:>11} {:>9} {:>10}",
            "encoding", "bytes", "encode µs", "decode µs", "GET µs", "size ratio"
        );
        let json = c
            .rows
            .iter()
            .find(|r| r.encoding == ValueEncoding::Json)
            .map_or(1, |r| r.bytes.max(1));
        for r in &c.rows {
            println!(
                "{:<26} {:>9} {:>11.1} {:>11.1} {:>9} {:>10.2}",
                r.encoding.label(),
                r.bytes,
                r.encode_ns as f64 / 1000.0,
                r.decode_ns as f64 / 1000.0,
                r.get_us,
                r.bytes as f64 / json as f64
            );
        }
    }
}
