//! Stopping the real binary: Ctrl-C lets open requests finish; a second
//! Ctrl-C stops at once, and the Redis it started stops with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
}

/// Kills the binary if the test is still running after its time, or if the
/// test fails first: a binary that hangs closes its pipes, so the test's
/// blocking reads end and it fails saying where, instead of stalling the
/// suite (or leaving the process behind).
struct Watchdog {
    pid: u32,
    _done: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn new(pid: u32, within: Duration) -> Self {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Disconnected when the test ends; a timeout means it did not.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(within) {
                kill(pid);
            }
        });
        Watchdog { pid, _done: done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            kill(self.pid);
        }
    }
}

#[test]
fn a_second_ctrl_c_stops_at_once_even_with_a_request_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cache-aside-playground"))
        .args(["--addr", "127.0.0.1:0"])
        .env("PLAYGROUND_DATA_DIR", dir.path())
        .env("PLAYGROUND_STATIC_DIR", dir.path().join("none"))
        // A database so slow that a read outlives the test.
        .env("DB_LATENCY_MS", "10000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _watchdog = Watchdog::new(child.id(), Duration::from_secs(120));
    // The address and Redis's port, from what it prints.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    // Reads the log until a line containing `what`.
    let mut read_log_until = |what: &str, log: &mut String| loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the log ended before {what:?}:\n{log}"
        );
        log.push_str(&line);
        if line.contains(what) {
            return;
        }
    };
    read_log_until("database:", &mut log);

    // A read that takes ten seconds, open while the signals arrive.
    let mut request = TcpStream::connect(&addr).unwrap();
    request
        .write_all(b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The request has reached the back end once its health check answers
    // on another connection (requests are served concurrently).
    let mut health = TcpStream::connect(&addr).unwrap();
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    health.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    interrupt(child.id());
    // The first Ctrl-C is heard: it waits for the open read.
    read_log_until("Ctrl-C again", &mut log);
    interrupt(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    // The open read got no answer: the process stopped before it was done.
    request.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    let _ = request.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    read_log_until("second signal", &mut log);
    // Its Redis went with it.
    let port = log
        .split("started redis-server on port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Redis port in {log}"));
    assert!(TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err());
}
