//! Test harness: a real back end with its own throwaway `redis-server` and
//! SQLite file, both removed when the test ends.

#![allow(dead_code)]

use backend::{Backend, Config};
use std::time::Duration;

use futures_util::StreamExt;
use shared::{Kind, Origin, ReadResult, SandboxId, ServerMessage, Trace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

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
    // Tests count loads and outcomes; on a loaded 2-core machine a herd can
    // hold a Redis reply past the 250 ms default, and a read that gives up
    // on Redis rightly loads by itself. Tests of the timeout set their own.
    config.redis_timeout_ms = 5_000;
    // Likewise herds count every load: the most connections, and the
    // longest wait for one. Tests of a saturated database set their own.
    config.db_connections = 100;
    config.db_wait_ms = 30_000;
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

// Over real sockets.

/// A served back end on a real port, stopped when dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

pub async fn serve(t: &TestBackend) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend = t.backend.share();
    let done = tokio::spawn(async move {
        backend
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Served {
        addr,
        stop: Some(stop),
        done,
    }
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(addr: std::net::SocketAddr, query: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws{query}"))
        .await
        .unwrap();
    socket
}

pub async fn receive(socket: &mut Socket) -> ServerMessage {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            // A socket that asked for `?wire=binary`.
            Message::Binary(bytes) => return shared::wire::from_binary(&bytes).unwrap(),
            _ => {}
        }
    }
}

/// A plain HTTP/1.1 GET over TCP, the way curl would send it.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http(addr, "GET", path, &[], "").await
}

/// A refused session: the error the page was sent, and the close code.
pub async fn refusal(socket: &mut Socket) -> (String, u16) {
    let message = match receive(socket).await {
        ServerMessage::Error { message, .. } => message,
        other => panic!("expected an error, got {other:?}"),
    };
    let close = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("closed within 10 s");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => (message, u16::from(frame.code)),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// An HTTP/1.1 request over TCP with the given headers and body; the whole
/// response as text.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Opens a WebSocket with extra request headers (an `Origin`, an
/// `X-Forwarded-For`).
pub async fn connect_with(
    addr: std::net::SocketAddr,
    query: &str,
    headers: &[(&'static str, &str)],
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/ws{query}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Waits until `check` holds, looking every 20 ms, for at most `within`:
/// for effects that finish in the background with no event to wait on
/// (a socket closed by a task that ends, a file removed).
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many file descriptors this process has open on files under `dir`
/// (a test's own data directory). Counting every descriptor of the process
/// would also count those of the tests running beside it in this binary.
pub fn open_files_under(dir: &std::path::Path) -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

impl TestBackend {
    /// How many clients the test's Redis has connected.
    pub fn redis_clients(&self) -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut self.redis()).unwrap();
        // Less the connection that asked.
        list.lines().count().saturating_sub(1)
    }

    /// Every key in the test's Redis (`KEYS`: fine for a test's small Redis).
    pub fn all_keys(&self) -> Vec<String> {
        let mut connection = self.redis();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut connection).unwrap();
        keys
    }
}

/// The greeting's sandbox.
pub async fn greeted(socket: &mut Socket) -> SandboxId {
    match receive(socket).await {
        ServerMessage::Hello { sandbox, .. } => sandbox,
        other => panic!("expected hello, got {other:?}"),
    }
}

/// The status code of a raw HTTP response (0 if it has none).
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A header of a raw HTTP response, by name (any case).
pub fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The next `n` traces on a sandbox's feed, skipping its other messages
/// (settings, summaries); bounded by a generous wait for each.
#[allow(dead_code)]
pub async fn traces_of(feed: &mut backend::feed::Subscription, n: usize) -> Vec<Trace> {
    let mut traces = Vec::new();
    while traces.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .expect("a trace within 30 s");
        match event {
            Some(backend::feed::FeedEvent::Message(published)) => {
                if let ServerMessage::Trace { trace, .. } = published.message().clone() {
                    traces.push(trace);
                }
            }
            Some(_) => {}
            None => panic!("the feed ended"),
        }
    }
    traces
}

/// Readers and writers racing on users 1–3 of the default sandbox, `ops`
/// operations, 64 at a time (one write in four, a deterministic mix); then
/// one quiet read per key, so every key is cached, and the cache compared
/// with the database. Returns the keys left stale. The back end's config
/// decides the race fix and the latencies.
pub async fn stale_keys_after_a_storm(t: &TestBackend, ops: u64) -> usize {
    use shared::WriteChange;
    let playground = t.backend.playground.clone();
    let sandbox = SandboxId::default_sandbox();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for op in 0..ops {
        let (playground, sandbox) = (playground.clone(), sandbox.clone());
        let id = 1 + (op * 7_919) % 3;
        let slot = slots.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let done = if op % 4 == 0 {
                let change = WriteChange::Update {
                    name: format!("name {op}"),
                };
                playground
                    .write(&sandbox, Kind::Users, id, change, Origin::Rest)
                    .await
                    .map(|_| ())
            } else {
                playground
                    .read(&sandbox, Kind::Users, id, Origin::Rest)
                    .await
                    .map(|_| ())
            };
            drop(slot);
            done
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // A stale copy is served (and stays); a fixed cache loads fresh rows.
    for id in 1..=3 {
        playground
            .read(&sandbox, Kind::Users, id, Origin::Rest)
            .await
            .unwrap();
    }
    let report = playground.check_divergence(&sandbox).await.unwrap();
    println!(
        "{} stale keys of {} after {ops} operations",
        report.stale(),
        report.entries.len()
    );
    report.stale()
}
