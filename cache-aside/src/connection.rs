//! The connection to Redis: the one place that knows where Redis lives.
//!
//! A [`Redis`] connects lazily (an application starts, and serves from its
//! database, even while Redis is down), then shares one multiplexed
//! connection that reconnects by itself. Every command runs under a
//! timeout: a cache that answers slowly is worse than no cache (tutorial
//! sections 4.5 and 6.3). Connecting is not bound by that timeout: it runs
//! in a task of its own, one attempt at a time, so a handshake slower than
//! a command may take (TLS to a distant server) still completes, and
//! commands wait for it only as long as they may.
//!
//! The same handle works on a Redis Cluster ([`Redis::open_cluster`]): the
//! cluster client sends each command to the master that owns its key's
//! hash slot and follows `MOVED` redirections; the engine's key space tags
//! every entry's keys so that the commands and scripts of one entry touch
//! one slot (see [`crate::KeySpace`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

/// A handle on one Redis endpoint and its connection. Cheap to clone; all
/// clones share the connection.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where Redis lives, as given (`redis://127.0.0.1:6379/`; a cluster's
    /// first node).
    url: String,
    /// A client of the one server (for Pub/Sub), or of a cluster's first
    /// node (unused there: the subscriber's cluster connection is sharded).
    client: redis::Client,
    /// Set when Redis is a cluster.
    cluster: Option<ClusterClient>,
    /// The cluster's nodes as given (the Pub/Sub subscriber makes a
    /// connection of its own to them).
    cluster_nodes: Vec<String>,
    /// Made on first use. Once connected, every command gets the
    /// connection without taking a lock; while connecting fails it stays
    /// empty and the next command starts another attempt.
    connection: OnceLock<Connection>,
    /// Whether an attempt to connect is under way (one at a time).
    connecting: AtomicBool,
    /// Woken when an attempt ends, in success or failure.
    attempt_done: tokio::sync::Notify,
    /// Why the last attempt failed.
    last_error: Mutex<Option<String>>,
}

/// The longest one attempt to connect may take, handshakes included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection commands go over: to one server, or to a cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Sends `command`; on a cluster to the master that holds `at`'s slot
    /// when given, else where its own key routes it.
    async fn query(&mut self, command: &redis::Cmd, at: Option<&str>) -> redis::RedisResult<redis::Value> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        match (self, at) {
            (Connection::Single(connection), _) => command.query_async(connection).await,
            (Connection::Cluster(connection), None) => command.query_async(connection).await,
            (Connection::Cluster(connection), Some(key)) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                connection.route_command(command.clone(), routing).await
            }
        }
    }
}

impl Inner {
    fn new(url: &str, client: redis::Client) -> Inner {
        Inner {
            url: url.to_string(),
            client,
            cluster: None,
            cluster_nodes: Vec::new(),
            connection: OnceLock::new(),
            connecting: AtomicBool::new(false),
            attempt_done: tokio::sync::Notify::new(),
            last_error: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &redact_url(&self.inner.url))
            .finish()
    }
}

/// Why a Redis command failed. Each variant says when it occurs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Occurs when the command (connecting included) takes longer than the
    /// timeout.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Occurs when Redis cannot be reached (no connection could be made)
    /// or says it cannot serve now (loading, busy).
    #[error("{0}")]
    Failed(String),
    /// Occurs when the connection turns out dead (closed or refused, by
    /// Redis or by something between) before the reply came: while Redis
    /// is away, and typically for the first command after it returns, on
    /// a connection made (or refused) while it was away. The client is
    /// already making a new one. The command may or may not have run.
    #[error("the connection was dead: {0}")]
    Dropped(String),
    /// Occurs when Redis is up and refuses this command with an error of
    /// its own (`OOM` over `maxmemory`, `WRONGTYPE`): Redis is healthy, so
    /// this does not count against it (see [`RedisError::is_outage`]).
    #[error("{0}")]
    Replied(String),
    /// Occurs when the circuit breaker is open: the command was not sent,
    /// so a Redis known to be failing costs no waiting.
    #[error("not sent: the circuit breaker is open")]
    BreakerOpen,
    /// Occurs when the URL given to [`Redis::open`] is not a Redis URL.
    #[error("not a Redis URL: {0}")]
    Url(String),
}

impl RedisError {
    /// Sorts an error of the client library: Redis's own error replies
    /// apart from failures to reach it.
    fn from_client(error: &redis::RedisError) -> RedisError {
        // Replies that mean "not now" are an outage as much as a dead
        // socket is.
        const UNAVAILABLE: [&str; 5] = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"];
        match error.code() {
            Some(code) if !UNAVAILABLE.contains(&code) => RedisError::Replied(error.to_string()),
            None if error.is_connection_dropped() => RedisError::Dropped(error.to_string()),
            _ => RedisError::Failed(error.to_string()),
        }
    }

    /// Whether the error says Redis is unreachable, slow or not serving:
    /// what a circuit breaker counts. An error reply from a healthy Redis
    /// is not one.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            RedisError::Timeout(_) | RedisError::Failed(_) | RedisError::Dropped(_)
        )
    }
}

impl Redis {
    /// A handle on the Redis at `url`. Does not connect yet.
    ///
    /// # Errors
    /// [`RedisError::Url`] when `url` is not a valid Redis URL.
    pub fn open(url: &str) -> Result<Redis, RedisError> {
        let client = redis::Client::open(url).map_err(|e| RedisError::Url(e.to_string()))?;
        Ok(Redis::from_client(url, client))
    }

    /// A handle on a Redis Cluster, given some of its nodes' URLs (one is
    /// enough; the client learns the others and which slots each serves).
    /// Does not connect yet.
    ///
    /// # Errors
    /// [`RedisError::Url`] when no URL is given or one is not a Redis URL.
    pub fn open_cluster<S: AsRef<str>>(nodes: &[S]) -> Result<Redis, RedisError> {
        let first = nodes
            .first()
            .ok_or_else(|| RedisError::Url("a cluster needs at least one node's URL".into()))?
            .as_ref();
        let client = redis::Client::open(first).map_err(|e| RedisError::Url(e.to_string()))?;
        let cluster = ClusterClient::builder(nodes.iter().map(|n| n.as_ref().to_string()))
            .connection_timeout(CONNECT_TIMEOUT)
            // Commands bring their own timeout (see `query`); a redirection
            // (`MOVED`, `ASK`) is followed at once, and a node that is down
            // is the caller's fallback, not a wait.
            .retries(1)
            .build()
            .map_err(|e| RedisError::Url(e.to_string()))?;
        let mut inner = Inner::new(first, client);
        inner.cluster = Some(cluster);
        inner.cluster_nodes = nodes.iter().map(|n| n.as_ref().to_string()).collect();
        Ok(Redis {
            inner: Arc::new(inner),
        })
    }

    /// Whether this handle talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// The cluster's nodes as given to [`Redis::open_cluster`] (none for
    /// one server).
    pub fn cluster_nodes(&self) -> &[String] {
        &self.inner.cluster_nodes
    }

    /// `PUBLISH`, or on a cluster `SPUBLISH`: sharded Pub/Sub, where a
    /// message goes only to the shard that owns its channel's slot (the
    /// engine's subscribers subscribe there), not to every node.
    pub fn publish_command(&self) -> redis::Cmd {
        redis::cmd(if self.is_cluster() { "SPUBLISH" } else { "PUBLISH" })
    }

    /// A handle on the Redis `client` connects to (say one built with TLS
    /// certificates); `url` is only what [`Redis::url`] shows.
    pub fn from_client(url: &str, client: redis::Client) -> Redis {
        Redis {
            inner: Arc::new(Inner::new(url, client)),
        }
    }

    /// A handle on the same Redis with a connection of its own, as a second
    /// application instance would have.
    pub fn with_new_connection(&self) -> Redis {
        let mut inner = Inner::new(&self.inner.url, self.inner.client.clone());
        inner.cluster = self.inner.cluster.clone();
        inner.cluster_nodes = self.inner.cluster_nodes.clone();
        Redis {
            inner: Arc::new(inner),
        }
    }

    /// The URL this handle talks to, as given (passwords included: use
    /// [`redact_url`] to show it).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The client, for connections of another kind (Pub/Sub).
    pub fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// Sends one command and waits at most `timeout` for its reply,
    /// connecting (or reconnecting) first if needed: one bound for all of
    /// it, whoever made the connection.
    ///
    /// # Errors
    /// [`RedisError::Timeout`], [`RedisError::Failed`],
    /// [`RedisError::Dropped`] or [`RedisError::Replied`].
    pub async fn query(&self, command: &redis::Cmd, timeout: Duration) -> Result<redis::Value, RedisError> {
        self.send(command, None, timeout).await
    }

    /// Like [`Redis::query`], for a command with no key of its own that must
    /// run where `key` lives: on a cluster it goes to the master holding
    /// `key`'s hash slot (a `SCAN` of keys that share a hash tag, the
    /// `INFO` of their node); on one server it is [`Redis::query`].
    ///
    /// # Errors
    /// [`RedisError::Timeout`] or [`RedisError::Failed`].
    pub async fn query_at(
        &self,
        command: &redis::Cmd,
        key: &str,
        timeout: Duration,
    ) -> Result<redis::Value, RedisError> {
        self.send(command, Some(key), timeout).await
    }

    async fn send(
        &self,
        command: &redis::Cmd,
        at: Option<&str>,
        timeout: Duration,
    ) -> Result<redis::Value, RedisError> {
        let attempt = async {
            let mut connection = match self.inner.connection.get() {
                Some(connection) => connection.clone(),
                None => self.connection().await?,
            };
            connection
                .query(command, at)
                .await
                .map_err(|e| RedisError::from_client(&e))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout(timeout)),
        }
    }

    /// Whether the first connection has been made (after it, the
    /// connection reconnects by itself).
    pub fn is_connected(&self) -> bool {
        self.inner.connection.get().is_some()
    }

    /// The connection, once an attempt to connect has made it. Starts an
    /// attempt unless one is under way, then waits for it to end; the
    /// caller's timeout bounds the wait, not the attempt.
    async fn connection(&self) -> Result<Connection, RedisError> {
        let inner = &self.inner;
        // Listen before looking, so an attempt that ends in between still
        // wakes this command.
        let done = inner.attempt_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if let Some(connection) = inner.connection.get() {
            return Ok(connection.clone());
        }
        if !inner.connecting.swap(true, Ordering::AcqRel) {
            let inner = inner.clone();
            tokio::spawn(async move {
                // However the attempt ends (cancelled with its runtime,
                // too), the next command may start another, and waiters
                // are woken.
                let _ended = AttemptEnded(inner.clone());
                // After the first success the manager reconnects by itself;
                // commands bring their own timeout, so none here.
                let attempt = async {
                    match &inner.cluster {
                        // The cluster connection reconnects to its nodes
                        // and refreshes the slot map by itself.
                        Some(cluster) => cluster.get_async_connection().await.map(Connection::Cluster),
                        None => {
                            let config = redis::aio::ConnectionManagerConfig::new()
                                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                                .set_response_timeout(None)
                                .set_number_of_retries(0);
                            inner
                                .client
                                .get_connection_manager_with_config(config)
                                .await
                                .map(Connection::Single)
                        }
                    }
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                    Ok(Ok(connection)) => {
                        let _ = inner.connection.set(connection);
                    }
                    Ok(Err(e)) => *lock(&inner.last_error) = Some(e.to_string()),
                    Err(_) => {
                        *lock(&inner.last_error) = Some(format!("connecting took over {CONNECT_TIMEOUT:?}"))
                    }
                }
            });
        }
        done.await;
        match inner.connection.get() {
            Some(connection) => Ok(connection.clone()),
            None => Err(RedisError::Failed(
                lock(&inner.last_error)
                    .clone()
                    .unwrap_or_else(|| "could not connect".into()),
            )),
        }
    }
}

/// Whether `command` may go a second time when the first try's fate is
/// unknown: reads, deletes, and a plain `SET` (the same value again; if
/// the first ran and a writer's `DEL` landed in between, the second brings
/// the value back: the stale-set race an unguarded store has anyway, and
/// guarded stores are scripts). A `SET` with `NX` (a lock, a lease) may
/// not: its second try would find the key its first set. Scripts,
/// `PUBLISH` and counters may not either. A resent `DEL` may report that
/// the key did not exist when its first try deleted it.
pub(crate) fn is_idempotent(command: &redis::Cmd) -> bool {
    let mut args = command.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => bytes,
        // A cursor, or a kind of argument added later: matches nothing.
        _ => &[][..],
    });
    let Some(name) = args.next() else {
        return false;
    };
    const SAFE: [&[u8]; 11] = [
        b"GET", b"MGET", b"DEL", b"UNLINK", b"EXISTS", b"PTTL", b"TTL", b"PING", b"SCAN", b"INFO", b"MEMORY",
    ];
    if SAFE.iter().any(|safe| name.eq_ignore_ascii_case(safe)) {
        return true;
    }
    name.eq_ignore_ascii_case(b"SET")
        && !args.any(|arg| arg.eq_ignore_ascii_case(b"NX") || arg.eq_ignore_ascii_case(b"GET"))
}

/// Marks an attempt to connect as over when dropped.
struct AttemptEnded(Arc<Inner>);

impl Drop for AttemptEnded {
    fn drop(&mut self) {
        self.0.connecting.store(false, Ordering::Release);
        self.0.attempt_done.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `redis://user:secret@host/` → `redis://user:***@host/`: a URL fit for a
/// log line or an error message.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let shown = match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    match path {
        Some(path) => format!("{scheme}://{shown}@{host}/{path}"),
        None => format!("{scheme}://{shown}@{host}"),
    }
}

/// Prints a command the way `redis-cli` would accept it: plain words as
/// they are; anything with spaces, quotes or control characters quoted.
pub fn command_text(command: &redis::Cmd) -> String {
    let mut text = String::new();
    for (i, arg) in command.args_iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        match arg {
            redis::Arg::Simple(bytes) => push_quoted(&mut text, &String::from_utf8_lossy(bytes)),
            // A cursor placeholder (SCAN iterators) or a future kind of
            // argument: shown as Redis would receive a fresh cursor.
            _ => text.push('0'),
        }
    }
    text
}

fn push_quoted(text: &mut String, arg: &str) {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\'' && c != '\\');
    if plain {
        text.push_str(arg);
        return;
    }
    text.push('"');
    for c in arg.chars() {
        match c {
            '"' => text.push_str("\\\""),
            '\\' => text.push_str("\\\\"),
            '\n' => text.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(text, "\\x{:02x}", c as u32);
            }
            c => text.push(c),
        }
    }
    text.push('"');
}

/// A reply in the short form `redis-cli` prints: `(nil)`, `OK`,
/// `(integer) 5`, a quoted string cut after 80 characters.
pub fn reply_text(value: &redis::Value) -> String {
    use redis::Value;
    match value {
        Value::Nil => "(nil)".into(),
        Value::Okay => "OK".into(),
        Value::Int(i) => format!("(integer) {i}"),
        Value::SimpleString(s) => s.clone(),
        Value::BulkString(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let shown: String = text.chars().take(80).collect();
            let mut quoted = String::new();
            push_quoted(&mut quoted, &shown);
            if shown.len() < text.len() {
                format!("{quoted}… ({} bytes)", bytes.len())
            } else {
                quoted
            }
        }
        Value::Array(items) => format!("({} items)", items.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_print_like_redis_cli_input() {
        let mut get = redis::cmd("GET");
        get.arg("cache:default:user:42");
        assert_eq!(command_text(&get), "GET cache:default:user:42");
        let mut set = redis::cmd("SET");
        set.arg("k")
            .arg("ca1 v 1 2 3\n{\"name\":\"Ada\"}")
            .arg("EX")
            .arg(60);
        assert_eq!(
            command_text(&set),
            r#"SET k "ca1 v 1 2 3\n{\"name\":\"Ada\"}" EX 60"#
        );
        let mut empty = redis::cmd("SET");
        empty.arg("k").arg("");
        assert_eq!(command_text(&empty), r#"SET k """#);
    }

    #[test]
    fn replies_print_like_redis_cli_output() {
        assert_eq!(reply_text(&redis::Value::Nil), "(nil)");
        assert_eq!(reply_text(&redis::Value::Okay), "OK");
        assert_eq!(reply_text(&redis::Value::Int(-2)), "(integer) -2");
        let long = redis::Value::BulkString(vec![b'x'; 100]);
        assert!(reply_text(&long).ends_with("(100 bytes)"));
        let envelope = redis::Value::BulkString(b"ca1 n 0 5 0\n".to_vec());
        assert_eq!(reply_text(&envelope), r#""ca1 n 0 5 0\n""#);
    }

    #[test]
    fn only_commands_that_may_go_twice_are_sent_again() {
        let command = |args: &[&str]| {
            let mut command = redis::cmd(args[0]);
            for arg in &args[1..] {
                command.arg(*arg);
            }
            command
        };
        for safe in [
            &["GET", "k"][..],
            &["get", "k"],
            &["DEL", "k", "k#lease"],
            &["SET", "k", "v", "PX", "1000"],
            &["PING"],
        ] {
            assert!(is_idempotent(&command(safe)), "{safe:?}");
        }
        for unsafe_ in [
            &["SET", "k#lock", "token", "NX", "PX", "1000"][..],
            &["set", "k", "v", "nx"],
            &["SET", "k", "v", "GET"],
            &["EVALSHA", "abc", "1", "k"],
            &["PUBLISH", "channel", "k"],
            &["INCR", "k"],
        ] {
            assert!(!is_idempotent(&command(unsafe_)), "{unsafe_:?}");
        }
    }

    #[test]
    fn a_bad_url_is_refused() {
        assert!(matches!(Redis::open("http://nope"), Err(RedisError::Url(_))));
    }
}
