//! The key inspector (tutorial sections 4.3 and 4.6): every key a sandbox
//! has in Redis, with its live TTL, type, size and how recently or often it
//! was used, and an audit of the keys that have no TTL at all: a cache
//! that grows until memory runs out.
//!
//! Always `SCAN` (never `KEYS`, which blocks Redis while it walks every
//! key), bounded in calls and keys; the per-key figures come from one Lua
//! script per hundred keys, so they are read in one round trip and none
//! of the reads counts as a use of the key (`TYPE`, `PTTL`, `MEMORY
//! USAGE` and `OBJECT` do not touch its LRU clock).

use cache_aside::RedisError;
use shared::{KeyInfo, KeyReport, RedisFigures};

use crate::sandbox::Sandbox;

/// The most keys one report lists.
pub const MAX_KEYS: usize = 500;
/// The most `SCAN` calls one report makes (on a shared Redis, the walk
/// passes every sandbox's keys).
const MAX_SCANS: usize = 50;

/// Reads each key's type, TTL, size, idle time and LFU frequency; a figure
/// Redis cannot give (idle time under an LFU policy, frequency under an
/// LRU one, `MEMORY` renamed away) comes back as -1.
const FIGURES: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  local ttl = redis.call('PTTL', key)
  local bytes = redis.pcall('MEMORY', 'USAGE', key)
  local idle = redis.pcall('OBJECT', 'IDLETIME', key)
  local freq = redis.pcall('OBJECT', 'FREQ', key)
  if type(bytes) ~= 'number' then bytes = -1 end
  if type(idle) ~= 'number' then idle = -1 end
  if type(freq) ~= 'number' then freq = -1 end
  out[i] = {kind, ttl, bytes, idle, freq}
end
return out";

/// Lists the sandbox's keys (up to [`MAX_KEYS`]) with their figures.
///
/// # Errors
/// [`RedisError`] when Redis fails or is too slow.
pub async fn inspect(sandbox: &Sandbox, now_ms: u64) -> Result<KeyReport, RedisError> {
    let (redis, timeout) = (&sandbox.redis, sandbox.timeout);
    let bad = |e: redis::ParsingError| RedisError::Failed(e.to_string());
    let mut names: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    let mut complete = false;
    for _ in 0..MAX_SCANS {
        let scan = crate::policies::scan_command(&sandbox.keys, cursor, 1_000);
        let node = crate::policies::scan_node(&sandbox.keys);
        let (next, found): (u64, Vec<String>) =
            redis::from_redis_value(redis.query_at(&scan, &node, timeout).await?).map_err(bad)?;
        names.extend(found);
        cursor = next;
        if cursor == 0 {
            complete = true;
            break;
        }
        if names.len() >= MAX_KEYS {
            break;
        }
    }
    // SCAN may return a key twice.
    names.sort();
    names.dedup();
    let truncated = !complete || names.len() > MAX_KEYS;
    names.truncate(MAX_KEYS);

    let mut keys = Vec::with_capacity(names.len());
    for page in names.chunks(100) {
        let mut script = redis::cmd("EVAL");
        script.arg(FIGURES).arg(page.len());
        for name in page {
            script.arg(name);
        }
        let rows: Vec<(String, i64, i64, i64, i64)> =
            redis::from_redis_value(redis.query(&script, timeout).await?).map_err(bad)?;
        for (name, (kind, ttl, bytes, idle, freq)) in page.iter().zip(rows) {
            // Gone between the SCAN and the script: expired or evicted.
            if kind == "none" {
                continue;
            }
            let known = |v: i64| u64::try_from(v).ok();
            keys.push(KeyInfo {
                key: name
                    .strip_prefix(sandbox.keys.prefix())
                    .unwrap_or(name)
                    .to_string(),
                redis_type: kind,
                // -1: no TTL at all.
                ttl_ms: known(ttl),
                bytes: known(bytes),
                idle_secs: known(idle),
                frequency: known(freq),
            });
        }
    }
    let mut policy = redis::cmd("CONFIG");
    policy.arg("GET").arg("maxmemory-policy");
    // A managed Redis may refuse CONFIG: the policy is then unknown.
    let policy = match redis.query(&policy, timeout).await {
        Ok(value) => redis::from_redis_value::<Vec<String>>(value)
            .ok()
            .and_then(|pair| pair.into_iter().nth(1)),
        Err(_) => None,
    };
    Ok(KeyReport {
        without_ttl: keys.iter().filter(|k| k.ttl_ms.is_none()).count() as u64,
        keys,
        truncated,
        policy,
        at_ms: now_ms,
    })
}

/// Redis's own figures, from one `INFO` (its default sections hold the
/// memory and stats figures on every Redis version).
///
/// # Errors
/// [`RedisError`] when Redis fails or is too slow.
pub async fn figures(sandbox: &Sandbox, now_ms: u64) -> Result<RedisFigures, RedisError> {
    let text: String = redis::from_redis_value(
        sandbox
            .redis
            .query_at(
                &redis::cmd("INFO"),
                &crate::policies::scan_node(&sandbox.keys),
                sandbox.timeout,
            )
            .await?,
    )
    .map_err(|e| RedisError::Failed(e.to_string()))?;
    Ok(parse_info(&text, now_ms))
}

/// The figures out of `INFO` text (`name:value` lines); a missing one is 0.
pub fn parse_info(text: &str, now_ms: u64) -> RedisFigures {
    let field = |name: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    RedisFigures {
        at_ms: now_ms,
        used_memory: number("used_memory"),
        maxmemory: number("maxmemory"),
        maxmemory_policy: field("maxmemory_policy").unwrap_or_default().to_string(),
        evicted_keys: number("evicted_keys"),
        expired_keys: number("expired_keys"),
        keyspace_hits: number("keyspace_hits"),
        keyspace_misses: number("keyspace_misses"),
        instantaneous_ops_per_sec: number("instantaneous_ops_per_sec"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_becomes_figures() {
        let text = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:67108864\r\n\
                    maxmemory_policy:allkeys-lru\r\n# Stats\r\nexpired_keys:12\r\nevicted_keys:3\r\n\
                    keyspace_hits:90\r\nkeyspace_misses:10\r\ninstantaneous_ops_per_sec:250\r\n";
        let figures = parse_info(text, 7);
        assert_eq!(
            figures,
            RedisFigures {
                at_ms: 7,
                used_memory: 1_048_576,
                maxmemory: 67_108_864,
                maxmemory_policy: "allkeys-lru".into(),
                evicted_keys: 3,
                expired_keys: 12,
                keyspace_hits: 90,
                keyspace_misses: 10,
                instantaneous_ops_per_sec: 250,
            }
        );
    }
}
