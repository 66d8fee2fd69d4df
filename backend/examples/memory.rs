//! `cargo xtask bench memory`: the back end's resident memory at rest,
//! after the biggest herd a visitor may fire (5,000 reads), after 100
//! sandboxes each read once, and after those sandboxes are reaped, with
//! Redis's `used_memory` beside it. The back end runs in this process and
//! nothing else does: no load generator, no browser.

use std::time::Duration;

use backend::{Backend, Config};
use load::{redis_used, rss};
use shared::{Defence, HerdSpec, HerdTiming, Kind, Origin, SandboxId};

#[path = "common/load.rs"]
mod load;

const SANDBOXES: usize = 100;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.static_dir = dir.path().join("no-front-end");
    config.max_sandboxes = Some(SANDBOXES as u64 + 10);
    let backend = Backend::start(config).expect("back end starts");
    let url = backend.embedded_redis.as_ref().expect("its own Redis").url();
    let playground = backend.playground.clone();
    let mut rows = vec![("idle, just started".to_string(), rss(), redis_used(&url))];

    let herd = HerdSpec {
        kind: Kind::Users,
        id: 1,
        requests: HerdSpec::MAX_REQUESTS,
        defence: Defence::None,
        timing: HerdTiming::Cold,
        beta: 1.0,
        jitter_percent: 0,
    };
    for round in ["", " again"] {
        let result = playground
            .run_herd(&SandboxId::default_sandbox(), herd.clone())
            .await
            .expect("the herd runs");
        rows.push((
            format!(
                "after a {}-request herd{round} (no defence: {} database loads)",
                HerdSpec::MAX_REQUESTS,
                result.database_loads
            ),
            rss(),
            redis_used(&url),
        ));
    }
    // Twice: memory that a visitor's sandboxes leave behind would show as
    // growth in the second round.
    for round in ["", " again"] {
        for _ in 0..SANDBOXES {
            let sandbox = playground.open_sandbox(None).await.expect("opens").id.clone();
            playground
                .read(&sandbox, Kind::Users, 1, Origin::Rest)
                .await
                .expect("reads");
        }
        rows.push((
            format!("+ {SANDBOXES} sandboxes{round}, each read once"),
            rss(),
            redis_used(&url),
        ));
        let reaped = backend.playground.sandboxes.reap(Duration::ZERO).await;
        rows.push((
            format!("after reaping them ({reaped} removed, keys and files too)"),
            rss(),
            redis_used(&url),
        ));
    }

    println!("\nback-end memory (RSS of this process; Redis's used_memory beside it)");
    println!("{:<66} {:>12} {:>14}", "", "RSS", "Redis used");
    for (what, rss, redis) in &rows {
        println!("{what:<66} {:>12} {:>14}", mib(*rss), mib(*redis));
    }
    let per_sandbox = rows[3].1.saturating_sub(rows[2].1) / SANDBOXES as u64;
    println!(
        "a sandbox: about {} KiB of the back end's memory while it lives; the second herd and the second {SANDBOXES} sandboxes show whether anything stays behind",
        per_sandbox / 1024
    );
}
