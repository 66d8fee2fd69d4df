//! A `redis-server` child process the playground owns.
//!
//! With no `REDIS_URL`, the back end starts its own Redis on a free loopback
//! port, so `cargo xtask run` needs no set-up. Tests use the same type to get
//! a throwaway server each, which they can stop to watch the fallback path.
//! [`proxy::FaultProxy`] makes any Redis slow, hung or unreachable for the
//! clients that connect through it.

pub mod cluster;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the server.
#[derive(Clone, Debug)]
pub struct RedisServerOptions {
    /// The `redis-server` program to run.
    pub program: PathBuf,
    /// Redis's `maxmemory`, such as `64mb`: a cache must have a bound
    /// (tutorial section 4.3).
    pub maxmemory: String,
    /// Redis's `maxmemory-policy`; `allkeys-lru` is the tutorial's general
    /// purpose choice.
    pub maxmemory_policy: String,
    /// More arguments for `redis-server` (a cluster node's, say).
    pub extra_args: Vec<String>,
}

impl Default for RedisServerOptions {
    fn default() -> Self {
        RedisServerOptions {
            program: PathBuf::from("redis-server"),
            maxmemory: "64mb".into(),
            maxmemory_policy: "allkeys-lru".into(),
            extra_args: Vec::new(),
        }
    }
}

/// A running `redis-server`. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedRedis {
    child: Option<Child>,
    port: u16,
    options: RedisServerOptions,
}

/// Why the server could not be started. Each variant says when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedRedisError {
    /// Occurs when the `redis-server` program is not installed or not on PATH.
    #[error(
        "could not run {program:?}: {source}. Install Redis (on Debian or Ubuntu: \
         `sudo apt-get install -y redis-server`), or point REDIS_URL at a running server"
    )]
    NotInstalled {
        program: PathBuf,
        source: std::io::Error,
    },
    /// Occurs when the server exits or does not answer `PING` in time.
    #[error("redis-server did not start on port {port}: {detail}")]
    DidNotStart { port: u16, detail: String },
    /// Occurs when no free loopback port can be found.
    #[error("no free loopback port for redis-server: {0}")]
    NoPort(std::io::Error),
}

impl EmbeddedRedis {
    /// Starts a server on a free loopback port and waits until it answers
    /// `PING`. Nothing is persisted: no RDB snapshots, no AOF.
    ///
    /// On Linux the kernel stops the server when the *thread* that called
    /// this ends (so none outlives a crashed parent): call it from a thread
    /// that lives as long as the server should, never from a pool thread
    /// that may end when idle (Tokio's `spawn_blocking`).
    ///
    /// # Errors
    /// See [`EmbeddedRedisError`].
    pub fn start(options: &RedisServerOptions) -> Result<EmbeddedRedis, EmbeddedRedisError> {
        // Another process may grab the port between our probe and Redis's
        // bind; try a few ports before giving up.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port().map_err(EmbeddedRedisError::NoPort)?;
            match Self::start_on(options, port) {
                Ok(server) => return Ok(server),
                Err(e @ EmbeddedRedisError::NotInstalled { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("the loop ran at least once"))
    }

    fn start_on(options: &RedisServerOptions, port: u16) -> Result<EmbeddedRedis, EmbeddedRedisError> {
        let mut command = Command::new(&options.program);
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--maxmemory", &options.maxmemory])
            .args(["--maxmemory-policy", &options.maxmemory_policy])
            // Never the working directory: a server loads any `dump.rdb` it
            // finds there at start (a stray one would put keys in every
            // test's Redis), and a cluster replica writes what it syncs.
            // A name no other server uses, in the temporary directory
            // (a cluster node's own directory overrides it below).
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args([
                "--dbfilename",
                &format!("embedded-redis-{}-{port}.rdb", std::process::id()),
            ])
            .args(&options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        stop_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|source| EmbeddedRedisError::NotInstalled {
                program: options.program.clone(),
                source,
            })?;
        let mut server = EmbeddedRedis {
            child: Some(child),
            port,
            options: options.clone(),
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Starts the server again on the same port after [`EmbeddedRedis::stop`]
    /// (empty: nothing is persisted), as after a crash and restart.
    ///
    /// # Errors
    /// See [`EmbeddedRedisError`].
    pub fn restart(&mut self) -> Result<(), EmbeddedRedisError> {
        self.stop();
        let fresh = Self::start_on(&self.options, self.port)?;
        *self = fresh;
        Ok(())
    }

    fn wait_until_ready(&mut self) -> Result<(), EmbeddedRedisError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return Ok(());
            }
            let child = self.child.as_mut().expect("child present until stop");
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(EmbeddedRedisError::DidNotStart {
                    port: self.port,
                    detail: format!("exited with {status}: {}", stderr.trim()),
                });
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(EmbeddedRedisError::DidNotStart {
                    port: self.port,
                    detail: "no answer to PING within 10 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs (to `SIGSTOP` it in a test).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A URL for the `redis` crate.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server now and waits for it to exit. Calling it twice is
    /// harmless.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EmbeddedRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the kernel for a free loopback port.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Sends a raw `PING` and checks for `+PONG`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// On Linux, asks the kernel to stop the child if the back end dies without
/// running its destructors (a `kill -9`, a crash), so no stray `redis-server`
/// outlives the playground.
#[cfg(target_os = "linux")]
fn stop_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: `prctl` is async-signal-safe and touches no memory of the
    // parent; it is the only call made between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn stop_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing program gives an error that says how to install Redis.
    #[test]
    fn missing_redis_server_says_how_to_install_it() {
        let options = RedisServerOptions {
            program: "/nonexistent/redis-server".into(),
            ..RedisServerOptions::default()
        };
        let err = EmbeddedRedis::start(&options).unwrap_err();
        assert!(
            err.to_string().contains("apt-get install -y redis-server"),
            "{err}"
        );
    }

    /// The server answers while it runs and is gone once stopped.
    #[test]
    fn starts_answers_and_stops() {
        let mut server = EmbeddedRedis::start(&RedisServerOptions::default()).unwrap();
        assert!(ping(server.port()));
        server.stop();
        assert!(!ping(server.port()));
    }
}
