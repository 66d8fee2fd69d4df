//! The pattern comparison on a real Redis and SQLite: counts that follow
//! from the workload, exactly; nothing lost by write-behind.

mod common;

use backend::patterns::{workload, Op, KEYS, OPERATIONS};
use shared::{Kind, Pattern, PatternRow, SandboxId};

/// What each pattern must load from the database, worked out from the
/// workload alone: a read loads when its key is not cached; cache-aside
/// and read-through drop the key on a write, write-through and
/// write-behind store the new value (write-behind reads the record first).
fn expected_loads(pattern: Pattern, ops: &[Op]) -> u64 {
    let mut cached = [false; KEYS as usize];
    let mut loads = 0;
    for op in ops {
        match *op {
            Op::Read(i) => {
                if !cached[i as usize] {
                    loads += 1;
                    cached[i as usize] = true;
                }
            }
            Op::Write(i, _) => match pattern {
                Pattern::CacheAside | Pattern::ReadThrough => cached[i as usize] = false,
                Pattern::WriteThrough => cached[i as usize] = true,
                Pattern::WriteBehind => {
                    if !cached[i as usize] {
                        loads += 1;
                    }
                    cached[i as usize] = true;
                }
            },
        }
    }
    loads
}

fn row(rows: &[PatternRow], pattern: Pattern) -> &PatternRow {
    rows.iter().find(|r| r.pattern == pattern).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pattern_runs_the_same_workload_and_only_write_behind_loses_writes_in_a_crash() {
    let t = common::start(|c| c.db_latency_ms = 20);
    let playground = &t.backend.playground;
    let sandbox = SandboxId::default_sandbox();
    let seed = 7;
    let ops = workload(seed);
    let writes = ops.iter().filter(|o| matches!(o, Op::Write(..))).count() as u64;

    let result = playground.compare_patterns(&sandbox, seed).await.unwrap();
    assert_eq!(result.rows.len(), 4);
    for r in &result.rows {
        assert_eq!(r.reads + r.writes, OPERATIONS, "{r:?}");
        assert_eq!(r.writes, writes, "{r:?}");
        assert_eq!(r.database_reads, expected_loads(r.pattern, &ops), "{r:?}");
        // Every acknowledged write reached the database by the end, but
        // those the crash halfway took with it.
        assert_eq!(r.database_writes + r.lost_writes, writes, "{r:?}");
    }
    for pattern in [Pattern::CacheAside, Pattern::ReadThrough, Pattern::WriteThrough] {
        let r = row(&result.rows, pattern);
        assert_eq!(
            r.stale_reads, 0,
            "one client, the key dropped or replaced after each write: {r:?}"
        );
        assert_eq!(r.database_behind, 0, "{r:?}");
        assert_eq!(r.most_unsaved, 0, "{r:?}");
        assert_eq!(r.lost_writes, 0, "a crash loses nothing acknowledged: {r:?}");
    }
    let behind = row(&result.rows, Pattern::WriteBehind);
    assert!(
        behind.most_unsaved >= 1,
        "a write waits for the database: {behind:?}"
    );
    assert!(
        behind.lost_writes >= 1,
        "the crash took the queued writes with it: {behind:?}"
    );
    assert_eq!(
        behind.stale_reads, 0,
        "reads see the newest value, in Redis: {behind:?}"
    );

    // The database ends with each key's last write.
    let last: Option<(u64, u64)> = ops.iter().rev().find_map(|o| match o {
        Op::Write(i, n) => Some((*i, *n)),
        Op::Read(_) => None,
    });
    let (index, n) = last.expect("the workload writes");
    let write_behind_first_id = 900 + 3 * KEYS;
    let row = playground
        .database
        .find(
            Kind::Users,
            write_behind_first_id + index,
            std::time::Duration::ZERO,
        )
        .execute()
        .await
        .unwrap()
        .unwrap();
    match row {
        shared::Record::User(user) => assert_eq!(user.name, format!("Renamed {n}")),
        other => panic!("{other:?}"),
    }

    // The same seed, the same counts (timings aside).
    let again = playground.compare_patterns(&sandbox, seed).await.unwrap();
    for (a, b) in result.rows.iter().zip(&again.rows) {
        assert_eq!(
            (a.reads, a.writes, a.database_reads),
            (b.reads, b.writes, b.database_reads)
        );
    }
}

#[tokio::test]
async fn a_bad_seed_is_explained() {
    let t = common::start(|_| {});
    let served = common::serve(&t).await;
    let response = common::http(
        served.addr,
        "POST",
        "/api/v1/scenarios/patterns?seed=lots",
        &[],
        "",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("seed"), "{response}");
    let err = t
        .backend
        .playground
        .compare_patterns(&SandboxId::default_sandbox(), u64::MAX)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("seed"), "{err}");
}

/// Write-behind's writes go to Redis (reading the record first when it is
/// not cached); the others each wait for the database's simulated 100 ms,
/// so their average cannot be below it: a bound that follows from the
/// simulated delay, not a timing of the machine. Write-behind's are
/// acknowledged before the database has them: writes were at times only
/// in Redis, which no other pattern allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_write_behind_writes_skip_the_database() {
    let t = common::start(|c| c.db_latency_ms = 100);
    let result = t
        .backend
        .playground
        .compare_patterns(&SandboxId::default_sandbox(), 3)
        .await
        .unwrap();
    for pattern in [Pattern::CacheAside, Pattern::ReadThrough, Pattern::WriteThrough] {
        let r = row(&result.rows, pattern);
        assert!(r.write_avg_us >= 100_000, "{r:?}");
    }
    for pattern in [Pattern::CacheAside, Pattern::ReadThrough, Pattern::WriteThrough] {
        assert_eq!(row(&result.rows, pattern).most_unsaved, 0, "{pattern:?}");
    }
    let behind = row(&result.rows, Pattern::WriteBehind);
    assert!(behind.most_unsaved > 0, "{behind:?}");
}
