//! An off-the-shelf load balancer in front of back-end replicas: HAProxy
//! (Debian's package), its configuration written here. Used by `cargo
//! xtask cluster` and the scale-out tests.
//!
//! Each sandbox stays on one replica: a request naming a sandbox
//! (`?sandbox=ID`, the WebSocket's and the API's) goes where that sandbox
//! lives, learnt from the replica's answer when it made the sandbox
//! (`X-Playground-Sandbox`, kept in a stick table), else by a consistent
//! hash of the name; a request naming none (a new page) goes round-robin.
//! A replica that fails its health checks (`GET /healthz`) is taken out,
//! and its sandboxes' requests go to another, which takes them over
//! (`--replica`). A request a replica refuses because another holds the
//! sandbox (503) is tried again on another replica: after a restart of the
//! balancer (an empty stick table) it finds the holder.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A back end's configuration as one of several replicas: on the Redis
/// Cluster at `cluster`, sharing `data_dir` with the others.
pub fn replica_config(
    cluster: Vec<String>,
    data_dir: std::path::PathBuf,
) -> impl Fn(&mut backend::Config) + Clone {
    move |config| {
        config.redis_cluster = cluster.clone();
        config.replica = true;
        config.data_dir = data_dir.clone();
    }
}

/// HAProxy's configuration for `replicas`, listening on `listen`.
pub fn haproxy_config(listen: SocketAddr, replicas: &[SocketAddr]) -> String {
    let mut config = format!(
        "# Written by the cache-aside playground (e2e/src/balancer.rs).
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    # WebSockets: once upgraded, a connection is a tunnel.
    timeout tunnel 1h
    # A request whose replica is down, or that another replica holds (503:
    # its stick entry was lost, say by a restart of this balancer, and the
    # name hashes elsewhere), is tried again on another replica; the
    # holder's answer then fills the stick table again.
    retry-on conn-failure empty-response 503
    option redispatch 1
    retries 2

frontend playground
    bind {listen}
    default_backend replicas

backend replicas
    # A sandbox lives on one replica: the one that made it (learnt from
    # its answer), else the one its name hashes to; no name, round-robin.
    balance url_param sandbox
    hash-type consistent
    stick-table type string len 64 size 100k expire 2h
    stick on url_param(sandbox)
    stick store-response res.hdr(x-playground-sandbox)
    option httpchk GET /healthz
    default-server check inter 500ms fall 2 rise 2
"
    );
    for (i, replica) in replicas.iter().enumerate() {
        config.push_str(&format!("    server replica{} {replica}\n", i + 1));
    }
    config
}

/// A running HAProxy; stopped when dropped.
pub struct Balancer {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Balancer {
    /// Starts HAProxy on a free loopback port in front of `replicas` and
    /// waits until it accepts connections.
    ///
    /// # Panics
    /// When `haproxy` is not installed (`cargo xtask test` installs it) or
    /// does not start within 10 s.
    pub fn start(replicas: &[SocketAddr]) -> Balancer {
        Balancer::start_on(SocketAddr::from(([127, 0, 0, 1], free_port())), replicas)
    }

    /// [`Balancer::start`] on `addr`.
    ///
    /// # Panics
    /// As [`Balancer::start`].
    pub fn start_on(addr: SocketAddr, replicas: &[SocketAddr]) -> Balancer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(addr, replicas)).expect("the config is written");
        let child = Command::new(haproxy())
            // -db: stay in the foreground, log to stderr.
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (Debian: apt-get install haproxy; `cargo xtask test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Balancer {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `haproxy` on PATH, or where Debian puts it (`/usr/sbin`, not on every
/// user's PATH).
pub fn haproxy() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/haproxy");
    if sbin.is_file() {
        sbin
    } else {
        PathBuf::from("haproxy")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
