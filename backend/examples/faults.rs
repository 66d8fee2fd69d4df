//! The fault lab's figures, `cargo xtask bench faults`: a Redis outage
//! under steady load, without and with the defences, side by side.
//!
//! 200 requests a second (reads of 20 users, one write in ten until Redis
//! is back) for 30 s; Redis is stopped (through the fault proxy, data
//! kept) at 10 s and started at 20 s. The baseline has the fallback alone;
//! the other rows add resending a command whose connection was dead, the
//! circuit breaker and retried invalidations, then all three. Then the same with Redis
//! hung (accepting commands, never answering) instead of stopped, where
//! the breaker's worth shows: without it every read waits out the command
//! timeout (250 ms). Reported: failed reads, reads answered by the
//! database during the fault, their median and p99, how long after the
//! restart the first hit came, how many reads fell back after it (Redis
//! back, but a dead connection or an open breaker), and stale keys once
//! the retries are delivered.

use std::time::{Duration, Instant};

use backend::{Backend, Config};
use shared::{FaultAction, Kind, Origin, Outcome, SandboxId, WriteChange};

const RATE: u64 = 200;
const SECONDS: u64 = 30;

#[derive(Default)]
struct Row {
    failed: u64,
    during: Vec<u64>,
    first_hit_ms: Option<u64>,
    /// Reads that fell back although Redis was back (a dead connection,
    /// an open breaker).
    fell_back_after: u64,
    stale: usize,
    opened: u64,
}

async fn outage(
    playground: &std::sync::Arc<backend::Playground>,
    name: &str,
    (defended, resend): (bool, bool),
    hang: bool,
) -> Row {
    let sandbox = SandboxId::parse(name).unwrap();
    playground.open_sandbox(Some(&sandbox)).await.unwrap();
    let mut settings = playground.sandbox(&sandbox).unwrap().settings();
    settings.breaker = defended;
    settings.retry_invalidations = defended;
    settings.resend_dropped = resend;
    playground.update_settings(&sandbox, settings).unwrap();

    let (fault, mend) = if hang {
        (
            FaultAction::HangRedis { hung: true },
            FaultAction::HangRedis { hung: false },
        )
    } else {
        (FaultAction::StopRedis, FaultAction::StartRedis { empty: false })
    };
    let mut pace = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut row = Row::default();
    let (mut broken, mut mended_at) = (false, None::<Instant>);
    // Requests run concurrently, as a load balancer's would: a hung Redis
    // slows each one, not the rate they arrive at.
    let mut requests = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        pace.tick().await;
        let at = started.elapsed();
        if !broken && at >= Duration::from_secs(10) {
            playground.fault(&sandbox, Some(fault)).await.unwrap();
            broken = true;
        }
        if broken && mended_at.is_none() && at >= Duration::from_secs(20) {
            playground.fault(&sandbox, Some(mend)).await.unwrap();
            mended_at = Some(Instant::now());
        }
        n += 1;
        // Reads go round the 20 users; writes too, a user each time.
        let id = if n % 10 == 0 {
            1 + (n / 10) % 20
        } else {
            1 + n % 20
        };
        let (playground, sandbox) = (playground.clone(), sandbox.clone());
        let in_fault = broken && mended_at.is_none();
        let mended = mended_at;
        requests.spawn(async move {
            let request_started = Instant::now();
            // Writes stop when Redis is back: from then on only a retried
            // invalidation can remove a copy the outage left stale.
            if n % 10 == 0 && mended.is_none() {
                let change = WriteChange::Update {
                    name: format!("User {id}, write {n}"),
                };
                let ok = playground
                    .write(&sandbox, Kind::Users, id, change, Origin::Load)
                    .await
                    .is_ok();
                return (ok, None, in_fault, 0, None, false);
            }
            let result = playground.read(&sandbox, Kind::Users, id, Origin::Load).await;
            let took = request_started.elapsed().as_micros() as u64;
            let hit_after = match (&result, mended) {
                (Ok(r), Some(mended)) if r.outcome == Outcome::Hit => {
                    Some(mended.elapsed().as_millis() as u64)
                }
                _ => None,
            };
            (
                result.is_ok(),
                result.ok().map(|r| r.outcome),
                in_fault,
                took,
                hit_after,
                mended.is_some(),
            )
        });
        while let Some(done) = requests.try_join_next() {
            tally(done.unwrap(), &mut row);
        }
    }
    while let Some(done) = requests.join_next().await {
        tally(done.unwrap(), &mut row);
    }
    let running = playground.sandbox(&sandbox).unwrap();
    for instance in &running.fleet().instances {
        instance
            .cache
            .invalidations_delivered(Duration::from_secs(10))
            .await;
    }
    row.stale = playground.check_divergence(&sandbox).await.unwrap().stale();
    row.opened = backend::faults::report(&running)
        .breakers
        .iter()
        .map(|b| b.opened)
        .sum();
    row
}

/// Adds one request's result: (answered, outcome, during the fault, its
/// time in µs, ms from the restart to this hit).
/// One request: whether it answered, how, whether during the fault, how
/// long it took, when it hit after the mend, whether after the mend.
type Done = (bool, Option<Outcome>, bool, u64, Option<u64>, bool);

fn tally((ok, outcome, in_fault, took, hit_after, after): Done, row: &mut Row) {
    if !ok {
        row.failed += 1;
    }
    if in_fault && outcome.is_some() {
        row.during.push(took);
    }
    if after && outcome == Some(Outcome::Fallback) {
        row.fell_back_after += 1;
    }
    if let Some(ms) = hit_after {
        row.first_hit_ms = Some(row.first_hit_ms.map_or(ms, |m| m.min(ms)));
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.db_latency_ms = 20;
    let backend = Backend::start(config).expect("back end starts");
    let playground = &backend.playground;
    for hang in [false, true] {
        println!(
            "\nRedis {} at 10 s, back at 20 s; {RATE} requests/s (one write in ten) for {SECONDS} s; database 20 ms",
            if hang {
                "hung (accepts, never answers)"
            } else {
                "stopped"
            }
        );
        println!(
            "{:<36} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7} {:>7}",
            "", "failed", "fallbacks", "p50", "p99", "first hit", "fell back", "stale", "opened"
        );
        for (label, defences) in [
            ("fallback only (baseline)", (false, false)),
            ("+ resend on a dead connection", (false, true)),
            ("+ breaker, retried invalidations", (true, false)),
            ("+ all three", (true, true)),
        ] {
            let name = format!(
                "bench-{}-{}{}",
                if hang { "hang" } else { "stop" },
                u8::from(defences.0),
                u8::from(defences.1)
            );
            let mut row = outage(playground, &name, defences, hang).await;
            row.during.sort_unstable();
            println!(
                "{label:<36} {:>7} {:>9} {:>7.1}ms {:>7.1}ms {:>10} {:>10} {:>7} {:>7}",
                row.failed,
                row.during.len(),
                percentile(&row.during, 0.5) as f64 / 1000.0,
                percentile(&row.during, 0.99) as f64 / 1000.0,
                row.first_hit_ms
                    .map_or("none".to_string(), |ms| format!("{ms} ms")),
                row.fell_back_after,
                row.stale,
                row.opened
            );
        }
    }
    println!("\ngoal: 0 failed reads, hits back within 2 s of the restart, 0 stale keys with retries");
}
