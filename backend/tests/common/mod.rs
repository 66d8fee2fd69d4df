//! Test harness: a real back end with its own throwaway `redis-server` and
//! SQLite file, both removed when the test ends.

#![allow(dead_code)]

use backend::{Backend, Config};
use shared::{Kind, Origin, ReadResult, SandboxId, Trace};

/// A back end for one test. Drop stops its Redis and deletes its files.
pub struct TestBackend {
    pub backend: Backend,
    // Declared after `backend`, so the database is closed before its
    // directory is removed.
    _dir: tempfile::TempDir,
}

/// Starts a back end with test-friendly defaults (no simulated database
/// delay), after `tweak` has adjusted the configuration.
pub fn start(tweak: impl FnOnce(&mut Config)) -> TestBackend {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.static_dir = dir.path().join("no-front-end");
    config.db_latency_ms = 0;
    tweak(&mut config);
    let backend = Backend::start(config).expect("back end starts");
    TestBackend { backend, _dir: dir }
}

impl TestBackend {
    /// A direct connection to the test's Redis, to look behind the cache's
    /// back.
    pub fn redis(&self) -> redis::Connection {
        let url = self
            .backend
            .embedded_redis
            .as_ref()
            .expect("embedded redis")
            .url();
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    /// Stops the test's Redis, as if it had crashed.
    pub fn stop_redis(&mut self) {
        self.backend
            .embedded_redis
            .as_mut()
            .expect("embedded redis")
            .stop();
    }

    /// Starts the test's Redis again on the same port, empty.
    pub fn restart_redis(&mut self) {
        self.backend
            .embedded_redis
            .as_mut()
            .expect("embedded redis")
            .restart()
            .expect("redis restarts");
    }

    /// Reads through the playground in sandbox `default`.
    pub async fn read(&self, kind: Kind, id: u64) -> ReadResult {
        self.read_in("default", kind, id).await
    }

    /// Reads through the playground in the named sandbox, opening it first
    /// if need be (tests run in local mode, where sandboxes may be named).
    pub async fn read_in(&self, sandbox: &str, kind: Kind, id: u64) -> ReadResult {
        let sandbox = SandboxId::parse(sandbox).unwrap();
        self.backend
            .playground
            .open_sandbox(Some(&sandbox))
            .await
            .expect("sandbox opens");
        self.backend
            .playground
            .read(&sandbox, kind, id, Origin::Rest)
            .await
            .expect("read succeeds")
    }

    /// How many queries reached the database so far.
    pub fn database_queries(&self) -> u64 {
        self.backend.playground.database.query_count()
    }
}

/// The node ids of a trace's steps, in order.
pub fn nodes(trace: &Trace) -> Vec<&str> {
    trace.steps.iter().map(|s| s.node.as_str()).collect()
}
