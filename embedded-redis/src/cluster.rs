//! A Redis Cluster of `redis-server` child processes on loopback ports,
//! made the way an operator makes one: each node started with
//! `--cluster-enabled yes`, then `redis-cli --cluster create` spreads the
//! 16,384 hash slots over the masters and introduces the nodes.
//!
//! Without replicas a master that stops takes its slots with it until it
//! is started again (it rejoins from its `nodes.conf`); with a replica per
//! master ([`EmbeddedCluster::start_with_replicas`]) the replica is
//! promoted once the others mark the master failed (after the 2 s node
//! timeout): a failover.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{EmbeddedRedis, EmbeddedRedisError, RedisServerOptions};

/// A running cluster. Dropping it stops every node and removes their
/// cluster files.
#[derive(Debug)]
pub struct EmbeddedCluster {
    nodes: Vec<EmbeddedRedis>,
    dir: PathBuf,
}

impl EmbeddedCluster {
    /// Starts `masters` nodes (at least 3, as Redis requires) and makes
    /// them one cluster; returns once every node says the cluster is ok.
    /// The same thread rule as [`EmbeddedRedis::start`] applies.
    ///
    /// # Errors
    /// See [`EmbeddedRedisError`]; a cluster that does not form in time is
    /// [`EmbeddedRedisError::DidNotStart`] with `redis-cli`'s words.
    pub fn start(
        masters: usize,
        options: &RedisServerOptions,
    ) -> Result<EmbeddedCluster, EmbeddedRedisError> {
        EmbeddedCluster::start_with_replicas(masters, 0, options)
    }

    /// [`EmbeddedCluster::start`] with `replicas` replicas per master (the
    /// first `masters` nodes are the masters, as `redis-cli` assigns them).
    ///
    /// # Errors
    /// As [`EmbeddedCluster::start`].
    pub fn start_with_replicas(
        masters: usize,
        replicas: usize,
        options: &RedisServerOptions,
    ) -> Result<EmbeddedCluster, EmbeddedRedisError> {
        let masters = masters.max(3);
        let port = crate::free_port().map_err(EmbeddedRedisError::NoPort)?;
        let dir = std::env::temp_dir().join(format!("embedded-redis-cluster-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(EmbeddedRedisError::NoPort)?;
        let mut cluster = EmbeddedCluster {
            nodes: Vec::new(),
            dir,
        };
        for i in 0..masters * (1 + replicas) {
            let node_options = RedisServerOptions {
                extra_args: [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &cluster.dir.join(format!("nodes-{i}.conf")).to_string_lossy(),
                    // A stopped master is marked failed after this long.
                    "--cluster-node-timeout",
                    "2000",
                    // The other masters keep serving their slots while one
                    // is down.
                    "--cluster-require-full-coverage",
                    "no",
                    // A replica syncs at once (not after the default 5 s),
                    // so it can take over from the first moments.
                    "--repl-diskless-sync-delay",
                    "0",
                    // What a replica syncs goes to disk here, removed on drop.
                    "--dir",
                    &cluster.dir.to_string_lossy(),
                ]
                .iter()
                .map(|s| s.to_string())
                .chain(options.extra_args.iter().cloned())
                .collect(),
                ..options.clone()
            };
            cluster.nodes.push(EmbeddedRedis::start(&node_options)?);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let created = Command::new(redis_cli(options))
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .map_err(|source| EmbeddedRedisError::NotInstalled {
                program: redis_cli(options),
                source,
            })?;
        if !created.status.success() {
            return Err(EmbeddedRedisError::DidNotStart {
                port: cluster.nodes[0].port(),
                detail: format!(
                    "redis-cli --cluster create failed: {}",
                    String::from_utf8_lossy(&created.stdout).trim()
                ),
            });
        }
        cluster.wait_until_ok(Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// Every node's URL, for a cluster client's initial nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(EmbeddedRedis::url).collect()
    }

    /// The nodes, in the order they were started.
    pub fn nodes(&self) -> &[EmbeddedRedis] {
        &self.nodes
    }

    /// A node, to stop or restart it.
    pub fn node_mut(&mut self, index: usize) -> &mut EmbeddedRedis {
        &mut self.nodes[index]
    }

    /// The index of the node that is master of the slot `key` hashes to,
    /// as the first running node sees the cluster now.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let cli = redis_cli(&RedisServerOptions::default());
        let node = self.nodes.iter().find(|n| n.pid().is_some())?;
        let port = node.port().to_string();
        let slot = Command::new(&cli)
            .args(["-p", &port, "cluster", "keyslot", key])
            .output()
            .ok()?;
        let slot: u32 = String::from_utf8_lossy(&slot.stdout).trim().parse().ok()?;
        let shards = Command::new(&cli)
            .args(["-p", &port, "cluster", "slots"])
            .output()
            .ok()?;
        // `CLUSTER SLOTS`, one value per line: start, end, then the
        // master's host, port and id, then each replica's.
        let lines: Vec<String> = String::from_utf8_lossy(&shards.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            let (start, end) = (lines[i].parse::<u32>(), lines[i + 1].parse::<u32>());
            if let (Ok(start), Ok(end)) = (start, end) {
                if (start..=end).contains(&slot) {
                    let master_port: u16 = lines[i + 3].parse().ok()?;
                    return self.nodes.iter().position(|n| n.port() == master_port);
                }
            }
            i += 1;
        }
        None
    }

    /// Moves `slots` hash slots, keys and all, from node `from` to node `to`
    /// (`redis-cli --cluster reshard`), as an operator rebalancing would:
    /// clients meanwhile meet `ASK` and then `MOVED` redirections.
    ///
    /// # Errors
    /// [`EmbeddedRedisError::DidNotStart`] with `redis-cli`'s words.
    pub fn move_slots(&self, from: usize, to: usize, slots: u32) -> Result<(), EmbeddedRedisError> {
        let cli = redis_cli(&RedisServerOptions::default());
        let id_of = |node: &EmbeddedRedis| {
            Command::new(&cli)
                .args(["-p", &node.port().to_string(), "cluster", "myid"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let (source, target) = (id_of(&self.nodes[from]), id_of(&self.nodes[to]));
        let moved = Command::new(&cli)
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{}", self.nodes[from].port()),
            ])
            .args(["--cluster-from", &source, "--cluster-to", &target])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .map_err(|e| EmbeddedRedisError::DidNotStart {
                port: self.nodes[from].port(),
                detail: format!("redis-cli: {e}"),
            })?;
        if !moved.status.success() {
            return Err(EmbeddedRedisError::DidNotStart {
                port: self.nodes[from].port(),
                detail: format!(
                    "redis-cli --cluster reshard failed: {}",
                    String::from_utf8_lossy(&moved.stdout).trim()
                ),
            });
        }
        Ok(())
    }

    /// Waits until every running node reports `cluster_state:ok` (after a
    /// stopped master is started again, say), at most `within`.
    ///
    /// # Errors
    /// [`EmbeddedRedisError::DidNotStart`] with the last state seen.
    pub fn wait_until_ok(&self, within: Duration) -> Result<(), EmbeddedRedisError> {
        let deadline = Instant::now() + within;
        let cli = redis_cli(&RedisServerOptions::default());
        loop {
            let mut last = String::new();
            let all_ok = self.nodes.iter().filter(|n| n.pid().is_some()).all(|node| {
                let info = Command::new(&cli)
                    .args(["-p", &node.port().to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default();
                let ok = info.lines().any(|l| l.trim() == "cluster_state:ok");
                if !ok {
                    last = format!(
                        "node {}: {}",
                        node.port(),
                        info.lines().next().unwrap_or("no answer")
                    );
                }
                ok
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EmbeddedRedisError::DidNotStart {
                    port: self.nodes[0].port(),
                    detail: format!("the cluster is not ok after {within:?}: {last}"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli` beside the `redis-server` the options name (Debian installs
/// both), or on PATH.
fn redis_cli(options: &RedisServerOptions) -> PathBuf {
    let beside = options.program.with_file_name("redis-cli");
    if options.program.components().count() > 1 && beside.is_file() {
        beside
    } else {
        PathBuf::from("redis-cli")
    }
}
