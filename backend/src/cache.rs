//! The connection to Redis: the one place that knows where a sandbox's Redis
//! lives.
//!
//! Every Redis command of the playground goes through a [`Cache`], so a
//! per-sandbox server or a fault-injecting proxy can later be slotted in here
//! without touching the cache-aside code. Commands are built as
//! [`RedisCall`] values that carry their own printable text, which is what
//! the trace shows: the command as it was really sent.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::FromRedisValue;

/// A handle on one Redis endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where Redis lives, as given (`redis://127.0.0.1:6379/`).
    url: String,
    client: redis::Client,
    /// Created on first use and then shared. A Tokio mutex, because it is
    /// held across the `await` that connects; it is only taken to clone the
    /// manager, which is cheap, so it never becomes a bottleneck. `None`
    /// until the first successful connection, so the back end starts (and
    /// serves from the database) even while Redis is down.
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// The most a single command may take, connecting included. Reads must
    /// never wait long on a cache (tutorial sections 4.5 and 6.3).
    timeout: Duration,
}

/// Why a Redis command failed. Each variant says when it occurs.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CacheError {
    /// Occurs when the command (or connecting) takes longer than the timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// Occurs when Redis cannot be reached or answers with an error.
    #[error("{0}")]
    Redis(String),
    /// Occurs when Redis answers with a reply of an unexpected type.
    #[error("unexpected reply: {0}")]
    Reply(String),
}

/// Whether a command looks something up (so a nil reply is a miss) or
/// changes something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Lookup,
    Write,
}

/// One Redis command, ready to run, with the text the trace shows for it.
/// `T` is the type the reply is converted to.
pub struct RedisCall<T> {
    pub(crate) cache: Cache,
    pub(crate) command: redis::Cmd,
    pub(crate) text: String,
    pub(crate) kind: CallKind,
    reply: PhantomData<fn() -> T>,
}

impl<T: FromRedisValue> RedisCall<T> {
    fn new(cache: &Cache, kind: CallKind, args: &[&str]) -> RedisCall<T> {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        RedisCall {
            cache: cache.clone(),
            command,
            text: command_text(args),
            kind,
            reply: PhantomData,
        }
    }

    /// Sends the command and converts the reply; the raw reply is returned
    /// too, so the trace can show it.
    pub(crate) async fn run(&self) -> Result<(T, redis::Value), CacheError> {
        let raw = self.cache.query(&self.command).await?;
        let value = T::from_redis_value(raw.clone()).map_err(|e| CacheError::Reply(e.to_string()))?;
        Ok((value, raw))
    }
}

impl Cache {
    /// A handle on the Redis at `url`. Does not connect yet.
    ///
    /// # Errors
    /// Occurs when `url` is not a valid Redis URL.
    pub fn new(url: &str, timeout: Duration) -> Result<Cache, CacheError> {
        let client = redis::Client::open(url).map_err(|e| CacheError::Redis(e.to_string()))?;
        Ok(Cache {
            inner: Arc::new(Inner {
                url: url.to_string(),
                client,
                connection: tokio::sync::Mutex::new(None),
                timeout,
            }),
        })
    }

    /// A handle on the same Redis with a connection of its own (as another
    /// application instance would have).
    ///
    /// # Errors
    /// Never in practice: the URL was valid for `self`.
    pub fn with_new_connection(&self) -> Result<Cache, CacheError> {
        Cache::new(&self.inner.url, self.inner.timeout)
    }

    /// The underlying client, for connections of another kind (Pub/Sub).
    pub fn client(&self) -> redis::Client {
        self.inner.client.clone()
    }

    /// `PUBLISH channel message`: replies how many subscribers got it.
    pub fn publish(&self, channel: &str, message: &str) -> RedisCall<i64> {
        RedisCall::new(self, CallKind::Write, &["PUBLISH", channel, message])
    }

    /// The URL this handle talks to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// `GET key`: the cached value, or `None` on a miss.
    pub fn get(&self, key: &str) -> RedisCall<Option<String>> {
        RedisCall::new(self, CallKind::Lookup, &["GET", key])
    }

    /// `SET key value EX ttl`: store a value that Redis drops by itself after
    /// `ttl_secs` seconds.
    pub fn set_ex(&self, key: &str, value: &str, ttl_secs: u64) -> RedisCall<()> {
        RedisCall::new(
            self,
            CallKind::Write,
            &["SET", key, value, "EX", &ttl_secs.to_string()],
        )
    }

    /// `DEL key`: drop the cached copy; replies how many keys were removed.
    pub fn del(&self, key: &str) -> RedisCall<i64> {
        RedisCall::new(self, CallKind::Write, &["DEL", key])
    }

    /// `SET key value EX secs`, or `PX ms` when the TTL is not a whole
    /// number of seconds (a jittered TTL).
    pub fn set_ttl(&self, key: &str, value: &str, ttl_ms: u64) -> RedisCall<()> {
        if ttl_ms % 1000 == 0 {
            self.set_ex(key, value, ttl_ms / 1000)
        } else {
            self.set_px(key, value, ttl_ms)
        }
    }

    /// `TTL key`: seconds left before the key expires (-1: no TTL, -2: no key).
    pub fn ttl(&self, key: &str) -> RedisCall<i64> {
        RedisCall::new(self, CallKind::Lookup, &["TTL", key])
    }

    /// `DEL key1 key2`: drop two keys in one command.
    pub fn del2(&self, key1: &str, key2: &str) -> RedisCall<i64> {
        RedisCall::new(self, CallKind::Write, &["DEL", key1, key2])
    }

    /// `SET key value NX PX ms`: take a lock if nobody holds it; replies
    /// `OK` when taken, nil when someone else holds it.
    pub fn set_nx_px(&self, key: &str, value: &str, millis: u64) -> RedisCall<Option<String>> {
        RedisCall::new(
            self,
            CallKind::Write,
            &["SET", key, value, "NX", "PX", &millis.to_string()],
        )
    }

    /// `SET key value PX ms`: a short-lived marker such as a lease.
    pub fn set_px(&self, key: &str, value: &str, millis: u64) -> RedisCall<()> {
        RedisCall::new(
            self,
            CallKind::Write,
            &["SET", key, value, "PX", &millis.to_string()],
        )
    }

    /// `EVAL script numkeys keys... args...`: runs a Lua script atomically
    /// inside Redis; no other command runs between its steps.
    pub fn eval(&self, script: &str, keys: &[&str], args: &[&str]) -> RedisCall<i64> {
        let numkeys = keys.len().to_string();
        let mut all = vec!["EVAL", script, numkeys.as_str()];
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        RedisCall::new(self, CallKind::Write, &all)
    }

    /// `SCAN cursor MATCH pattern COUNT count`: one page of keys; a returned
    /// cursor of 0 means the walk is complete.
    pub fn scan(&self, cursor: u64, pattern: &str, count: usize) -> RedisCall<(u64, Vec<String>)> {
        RedisCall::new(
            self,
            CallKind::Lookup,
            &[
                "SCAN",
                &cursor.to_string(),
                "MATCH",
                pattern,
                "COUNT",
                &count.to_string(),
            ],
        )
    }

    /// Runs a call without recording it, for inspections that are not part
    /// of an operation (the divergence check, health).
    ///
    /// # Errors
    /// Whatever the command returned.
    pub async fn run<T: FromRedisValue>(&self, call: RedisCall<T>) -> Result<T, CacheError> {
        call.run().await.map(|(value, _)| value)
    }

    /// `PING`: whether Redis answers.
    pub fn ping(&self) -> RedisCall<String> {
        RedisCall::new(self, CallKind::Lookup, &["PING"])
    }

    /// Sends one command within the timeout, connecting first if needed.
    async fn query(&self, command: &redis::Cmd) -> Result<redis::Value, CacheError> {
        let timeout = self.inner.timeout;
        let attempt = async {
            let mut connection = self.connection().await?;
            command
                .query_async::<redis::Value>(&mut connection)
                .await
                .map_err(|e| CacheError::Redis(e.to_string()))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout(timeout.as_millis() as u64)),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        // The manager reconnects by itself after the first success; until
        // then each command tries once, bounded by the caller's timeout.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
            .set_number_of_retries(0);
        let connection = self
            .inner
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| CacheError::Redis(e.to_string()))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// Prints a command the way `redis-cli` would accept it: plain words as they
/// are, anything with spaces, quotes or non-printing characters quoted.
pub fn command_text(args: &[&str]) -> String {
    let mut text = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\'' && c != '\\');
        if plain {
            text.push_str(arg);
        } else {
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
    }
    text
}

/// A reply in the short form `redis-cli` prints: `(nil)`, `OK`, `(integer) 5`.
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
            if shown.len() < text.len() {
                format!("\"{shown}…\" ({} bytes)", bytes.len())
            } else {
                format!("\"{shown}\"")
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
        assert_eq!(
            command_text(&["GET", "cache:default:user:42"]),
            "GET cache:default:user:42"
        );
        assert_eq!(
            command_text(&["SET", "k", r#"{"name":"Ada Lovelace"}"#, "EX", "60"]),
            r#"SET k "{\"name\":\"Ada Lovelace\"}" EX 60"#
        );
        assert_eq!(command_text(&["SET", "k", ""]), r#"SET k """#);
    }

    #[test]
    fn replies_print_like_redis_cli_output() {
        assert_eq!(reply_text(&redis::Value::Nil), "(nil)");
        assert_eq!(reply_text(&redis::Value::Okay), "OK");
        assert_eq!(reply_text(&redis::Value::Int(-2)), "(integer) -2");
        let long = redis::Value::BulkString(vec![b'x'; 100]);
        assert!(reply_text(&long).ends_with("(100 bytes)"));
    }
}
