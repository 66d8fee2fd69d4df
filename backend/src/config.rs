//! Configuration, from command-line flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use shared::SandboxSettings;

/// The cache-aside playground's back end.
///
/// With no REDIS_URL it starts its own redis-server on a free loopback port
/// and stops it on exit; with no DATABASE_URL it opens (and on first start
/// seeds) a SQLite file in the data directory.
#[derive(Clone, Debug, Parser)]
#[command(name = "cache-aside-playground", version)]
pub struct Config {
    /// Address to serve the UI, the API and the WebSocket on.
    #[arg(long, env = "PLAYGROUND_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Redis to use, such as redis://127.0.0.1:6379/. Without it the back end
    /// runs its own redis-server.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// A Redis Cluster to use instead: some of its nodes' URLs,
    /// comma-separated (one is enough). Every key of a sandbox carries the
    /// sandbox's hash tag (`cache:{tab-1}:user:42`), so its scripts and
    /// its reset touch one slot.
    #[arg(long, env = "REDIS_CLUSTER", value_delimiter = ',', hide_env_values = true)]
    pub redis_cluster: Vec<String>,

    /// For a `rediss://` REDIS_URL: the PEM file of the certificate
    /// authority that signed the server's certificate, when it is not one
    /// the system trusts.
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<PathBuf>,

    /// For a `rediss://` REDIS_URL whose server asks clients for a
    /// certificate: this client's certificate (PEM), with --redis-client-key.
    #[arg(long, env = "REDIS_CLIENT_CERT")]
    pub redis_client_cert: Option<PathBuf>,

    /// The private key (PEM) of --redis-client-cert.
    #[arg(long, env = "REDIS_CLIENT_KEY")]
    pub redis_client_key: Option<PathBuf>,

    /// Keys that seal users' phone numbers before they are cached, as
    /// `id:base64-32-bytes,...` (make a key with `openssl rand -base64 32`).
    /// The first seals; all open, so keys rotate: add the new one second,
    /// then first, then drop the old. Without it, a key made at start.
    /// Prefer the environment variable to the flag (flags show in `ps`).
    #[arg(long, env = "CACHE_KEYS", hide_env_values = true)]
    pub cache_keys: Option<String>,

    /// The redis-server program to start when REDIS_URL is not set.
    #[arg(long, env = "REDIS_SERVER", default_value = "redis-server")]
    pub redis_server: PathBuf,

    /// maxmemory of the redis-server the back end starts, such as 256mb.
    /// By default, what the sandbox limits need (see `Limits::redis_bytes`).
    #[arg(long, env = "REDIS_MAXMEMORY")]
    pub redis_maxmemory: Option<String>,

    /// The database: a SQLite file path, or sqlite://PATH. Defaults to
    /// playground.sqlite3 in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where the default SQLite file lives.
    #[arg(long, env = "PLAYGROUND_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Seconds a cached record lives in Redis.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub cache_ttl_secs: u64,

    /// Seconds a "does not exist" marker lives in Redis.
    #[arg(long, env = "NULL_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub null_ttl_secs: u64,

    /// Prefix of every cache key.
    #[arg(long, env = "CACHE_KEY_PREFIX", default_value = "cache:", value_parser = parse_prefix)]
    pub key_prefix: String,

    /// Milliseconds of simulated latency added to each database query (the
    /// real query time is reported separately).
    #[arg(long, env = "DB_LATENCY_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub db_latency_ms: u64,

    /// How much the simulated latency varies, in percent either way.
    #[arg(long, env = "DB_JITTER_PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub db_jitter_percent: u64,

    /// How many queries the database runs at once (each holds a connection
    /// for its whole time, simulated latency included); the rest queue.
    #[arg(long, env = "DB_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub db_connections: u64,

    /// Milliseconds a query waits for a free connection before the
    /// database is reported busy.
    #[arg(long, env = "DB_WAIT_MS", default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(10..=30_000))]
    pub db_wait_ms: u64,

    /// Randomize every TTL by up to this percentage either way, so keys
    /// cached together do not expire together.
    #[arg(long, env = "TTL_JITTER_PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=90))]
    pub ttl_jitter_percent: u64,

    /// Give each application instance a near cache (in-process, in front
    /// of Redis), kept coherent by Redis Pub/Sub invalidation.
    #[arg(long, env = "NEAR_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub near_cache: bool,

    /// Seconds a near-cache entry lives: the bound on staleness for an
    /// instance that missed an invalidation.
    #[arg(long, env = "NEAR_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub near_ttl_secs: u64,

    /// Milliseconds one Redis command may take before a read falls back to
    /// the database.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,

    /// What writes do to the cache: delete-on-write, ttl-only, hybrid
    /// (users deleted, products left to their TTL) or write-through.
    #[arg(long, env = "WRITE_STRATEGY", default_value = "delete-on-write")]
    pub write_strategy: shared::WriteStrategy,

    /// Protection against the stale-set race: none, lease or version.
    #[arg(long, env = "RACE_FIX", default_value = "none")]
    pub race_fix: shared::RaceFix,

    /// What keeps concurrent misses of one key off the database: none,
    /// single-flight, lock, early-refresh or stale-while-revalidate.
    #[arg(long, env = "STAMPEDE", default_value = "none")]
    pub stampede: shared::StampedePolicy,

    /// Seconds a paused (step-through) operation waits for "continue"
    /// before going on by itself.
    #[arg(long, env = "PAUSE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub pause_timeout_secs: u64,

    /// Directory with the built front end (Trunk's dist/).
    #[arg(long, env = "PLAYGROUND_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// Serve everything under this path (`/playground`), for a site that
    /// hosts the playground beside its documentation. The front end finds
    /// its files, the API and the WebSocket relative to where it is served,
    /// so a proxy that strips the prefix works as well.
    #[arg(long, env = "BASE_PATH", default_value = "/", value_parser = parse_base_path)]
    pub base_path: String,

    /// Traces kept per sandbox for a browser that falls behind; beyond this
    /// it is told how many it missed.
    #[arg(long, env = "TRACE_BUFFER", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub trace_buffer: u64,

    /// Serve anonymous visitors (behind a documentation site): new
    /// sandboxes only from server-issued tokens, and the limits below
    /// default to their hosted values.
    #[arg(long, env = "PLAYGROUND_HOSTED", value_parser = clap::builder::FalseyValueParser::new())]
    pub hosted: bool,

    /// One of several back ends behind a load balancer that keeps each
    /// sandbox on one of them (by its `sandbox` parameter), all sharing
    /// Redis and the data directory. A sandbox this one does not know is
    /// taken over under its own name (its replica stopped): its database
    /// file is kept, its cache keys are emptied, and the page is told.
    /// Every response naming a sandbox says which (`X-Playground-Sandbox`),
    /// for the balancer's stickiness.
    #[arg(long, env = "PLAYGROUND_REPLICA", value_parser = clap::builder::FalseyValueParser::new())]
    pub replica: bool,

    /// Origins (scheme://host[:port]) whose pages may use the WebSocket and
    /// the API, besides the playground's own; comma-separated.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Origins whose pages may frame the embed pages (`/embed/*`, CSP
    /// frame-ancestors), besides the playground's own; comma-separated.
    /// Locally, pages on this machine (`http://localhost:*`,
    /// `http://127.0.0.1:*`) may too. Other routes are never framed by
    /// another site.
    #[arg(long, env = "FRAME_ANCESTORS", value_delimiter = ',')]
    pub frame_ancestors: Vec<String>,

    /// Trust the last address of X-Forwarded-For (the one the proxy in
    /// front added) as the client's; only behind a proxy that sets it.
    #[arg(long, env = "TRUST_FORWARDED_FOR", value_parser = clap::builder::FalseyValueParser::new())]
    pub trust_forwarded_for: bool,

    /// Seconds a sandbox with no watcher may stay unused before it is
    /// removed with its keys and files [local 3600, hosted 600].
    #[arg(long, env = "SANDBOX_IDLE_SECS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub sandbox_idle_secs: Option<u64>,

    /// The most sandboxes at once, `default` aside [local 50, hosted 200].
    #[arg(long, env = "MAX_SANDBOXES", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_sandboxes: Option<u64>,

    /// The most records one sandbox may hold in Redis at once (values,
    /// "not found" markers); with the name length cap this bounds its
    /// memory [local 2000, hosted 500].
    #[arg(long, env = "SANDBOX_MAX_KEYS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub sandbox_max_keys: Option<u64>,

    /// New sandboxes one client address may open per minute [local 60, hosted 6].
    #[arg(long, env = "SANDBOXES_PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sandboxes_per_minute: Option<u32>,

    /// Open WebSockets per client address [local 50, hosted 8].
    #[arg(long, env = "SOCKETS_PER_CLIENT", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub sockets_per_client: Option<u64>,

    /// Open WebSockets per sandbox [local 20, hosted 4].
    #[arg(long, env = "SOCKETS_PER_SANDBOX", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub sockets_per_sandbox: Option<u64>,

    /// Operations (reads, writes, herds...) per second one sandbox may run;
    /// 0 for no limit [local 0, hosted 100].
    #[arg(long, env = "SANDBOX_OPS_PER_SECOND", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub sandbox_ops_per_second: Option<u32>,

    /// The most requests one herd may fire [local 5000, hosted 1000].
    #[arg(long, env = "MAX_HERD_REQUESTS", value_parser = clap::value_parser!(u64).range(1..=5_000))]
    pub max_herd_requests: Option<u64>,

    /// The longest TTL a sandbox's settings may ask for, in seconds (cache,
    /// "does not exist", near copies) [local 604800, hosted 3600].
    #[arg(long, env = "MAX_TTL_SECS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub max_ttl_secs: Option<u64>,

    /// Sandboxes that may have a redis-server of their own at once, for
    /// experiments on the server itself; none with REDIS_URL [local 4,
    /// hosted 2].
    #[arg(long, env = "PRIVATE_REDIS_SERVERS", value_parser = clap::value_parser!(u64).range(0..=64))]
    pub private_redis_servers: Option<u64>,

    /// maxmemory of a sandbox's own redis-server.
    #[arg(long, env = "PRIVATE_REDIS_MAXMEMORY", default_value = "8mb")]
    pub private_redis_maxmemory: String,

    /// Seconds a sandbox with a redis-server of its own may stay unused
    /// with no watcher before it is removed and its server stopped: there
    /// are only a few such servers, so a page that left frees its own
    /// sooner; never longer than SANDBOX_IDLE_SECS [local 120, hosted 120].
    #[arg(long, env = "PRIVATE_REDIS_IDLE_SECS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub private_redis_idle_secs: Option<u64>,

    /// Seconds a WebSocket may stay silent (not even answering the
    /// server's pings, sent three times in that span) before it is closed.
    #[arg(long, env = "SOCKET_SILENCE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(3..=3_600))]
    pub socket_silence_secs: u64,

    /// Herds running at once across all sandboxes [local 4, hosted 2].
    #[arg(long, env = "HERDS_AT_ONCE", value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub herds_at_once: Option<u64>,
}

/// The limits in force: each flag, or its local or hosted default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Whether a client may name a new sandbox (local use, tests) rather
    /// than be given a server-issued token.
    pub named_sandboxes: bool,
    /// Whether a sandbox this back end does not know is taken over under
    /// its name (one of several replicas, see `--replica`).
    pub adopt_sandboxes: bool,
    pub sandbox_idle: std::time::Duration,
    pub max_sandboxes: usize,
    /// Records one sandbox may hold in Redis (see `ledger`).
    pub sandbox_max_keys: usize,
    pub sandboxes_per_minute: u32,
    pub sockets_per_client: usize,
    pub sockets_per_sandbox: usize,
    /// 0: no limit.
    pub sandbox_ops_per_second: u32,
    pub max_herd_requests: u64,
    pub herds_at_once: usize,
    /// Sandboxes with a redis-server of their own, at most.
    pub private_redis_servers: usize,
    /// How long such a sandbox is kept once unused and unwatched (at most
    /// `sandbox_idle`).
    pub private_sandbox_idle: std::time::Duration,
    /// The longest TTL a sandbox's settings may ask for, in seconds.
    pub max_ttl_secs: u64,
    /// How long a WebSocket may stay silent before it is closed.
    pub socket_silence: std::time::Duration,
    /// The largest WebSocket message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// The largest request body the API reads, in bytes: far more than any
/// request of ours needs.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The most one cached record takes in Redis, key and Redis's own
/// overhead included: a user with the longest name (80 four-byte
/// characters) measured about 1,300 bytes (a test keeps this true); a "not
/// found" marker takes a tenth of that.
pub const RECORD_BYTES: u64 = 2048;

impl Limits {
    /// The most all sandbox keys can take in Redis: every sandbox (and
    /// `default`) holding all it may, each record as large as it can be.
    /// The back end's own Redis gets this much, so it never has to evict.
    pub fn redis_bytes(&self) -> u64 {
        let sandboxes = self.max_sandboxes as u64 + 1;
        // Plus one scratch value each, as large as padding makes it: the
        // serialization lab's, stored for a moment while it measures.
        let scratch = shared::SandboxSettings::PADDING_BYTES.1 + RECORD_BYTES;
        sandboxes * (self.sandbox_max_keys as u64 * RECORD_BYTES + scratch)
    }
}

/// `/`, or a path of letters, digits, `-`, `_`, `.` segments, without a
/// trailing slash: `/playground`, `/docs/cache`.
fn parse_base_path(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    let valid = trimmed.starts_with('/')
        && trimmed.len() <= 100
        && trimmed[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if valid {
        Ok(trimmed.to_string())
    } else {
        Err(format!("{text:?} is not a path such as /playground"))
    }
}

impl Config {
    /// Who may frame the embed pages besides the playground: the
    /// configured origins, and locally any page served from this machine
    /// (a documentation site previewed with `mdbook serve`, say).
    pub fn embed_ancestors(&self) -> Vec<String> {
        let mut ancestors = self.frame_ancestors.clone();
        if !self.hosted {
            ancestors.extend(["http://localhost:*".to_string(), "http://127.0.0.1:*".to_string()]);
        }
        ancestors
    }

    /// The settings every new sandbox starts with.
    pub fn sandbox_defaults(&self) -> SandboxSettings {
        SandboxSettings {
            cache_ttl_secs: self.cache_ttl_secs,
            null_ttl_secs: self.null_ttl_secs,
            key_prefix: self.key_prefix.clone(),
            db_latency_ms: self.db_latency_ms,
            redis_timeout_ms: self.redis_timeout_ms,
            write_strategy: self.write_strategy,
            race_fix: self.race_fix,
            db_jitter_percent: self.db_jitter_percent,
            db_connections: self.db_connections,
            db_wait_ms: self.db_wait_ms,
            near_cache: self.near_cache,
            near_ttl_secs: self.near_ttl_secs,
            ttl_jitter_percent: self.ttl_jitter_percent,
            stampede: self.stampede,
            ..SandboxSettings::default()
        }
    }

    /// The maxmemory of the back end's own Redis: as configured, or what
    /// the limits need, at least 64 MB.
    pub fn redis_maxmemory(&self, limits: &Limits) -> String {
        match &self.redis_maxmemory {
            Some(maxmemory) => maxmemory.clone(),
            None => format!("{}mb", (limits.redis_bytes() / (1 << 20) + 1).max(64)),
        }
    }

    /// The limits in force (see [`Limits`]).
    pub fn limits(&self) -> Limits {
        let pick = |flag: Option<u64>, local: u64, hosted: u64| {
            flag.unwrap_or(if self.hosted { hosted } else { local })
        };
        let sandbox_idle = std::time::Duration::from_secs(pick(self.sandbox_idle_secs, 3_600, 600));
        Limits {
            named_sandboxes: !self.hosted,
            adopt_sandboxes: self.replica,
            sandbox_idle,
            max_sandboxes: pick(self.max_sandboxes, 50, 200) as usize,
            sandbox_max_keys: pick(self.sandbox_max_keys, 2_000, 500) as usize,
            sandboxes_per_minute: self
                .sandboxes_per_minute
                .unwrap_or(if self.hosted { 6 } else { 60 }),
            sockets_per_client: pick(self.sockets_per_client, 50, 8) as usize,
            sockets_per_sandbox: pick(self.sockets_per_sandbox, 20, 4) as usize,
            sandbox_ops_per_second: self
                .sandbox_ops_per_second
                .unwrap_or(if self.hosted { 100 } else { 0 }),
            max_herd_requests: pick(self.max_herd_requests, 5_000, 1_000),
            herds_at_once: pick(self.herds_at_once, 4, 2) as usize,
            private_redis_servers: pick(self.private_redis_servers, 4, 2) as usize,
            private_sandbox_idle: std::time::Duration::from_secs(pick(
                self.private_redis_idle_secs,
                120,
                120,
            ))
            .min(sandbox_idle),
            max_ttl_secs: pick(self.max_ttl_secs, 604_800, 3_600),
            socket_silence: std::time::Duration::from_secs(self.socket_silence_secs),
            max_message_bytes: 16 * 1024,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }

    /// The SQLite file to open.
    ///
    /// # Errors
    /// A message when DATABASE_URL names a database other than SQLite.
    pub fn database_path(&self) -> Result<PathBuf, String> {
        let Some(url) = &self.database_url else {
            return Ok(self.data_dir.join("playground.sqlite3"));
        };
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Ok(PathBuf::from(path));
        }
        if url.contains("://") {
            return Err(format!(
                "DATABASE_URL {url:?} is not supported: only SQLite is, as a file path or sqlite://PATH"
            ));
        }
        Ok(PathBuf::from(url))
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Config {
        Config::parse_from(["cache-aside-playground"])
    }
}

/// Key prefixes end up in every key: keep them to safe characters.
fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err("use up to 32 letters, digits, '-', '_', ':' or '.'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_plain_paths() {
        assert_eq!(parse_base_path("/").unwrap(), "/");
        assert_eq!(parse_base_path("").unwrap(), "/");
        assert_eq!(parse_base_path("/playground/").unwrap(), "/playground");
        assert_eq!(parse_base_path("/docs/cache-1.2").unwrap(), "/docs/cache-1.2");
        for bad in ["playground", "/a/../b", "/a//b", "/a b", "/<x>", "/?q"] {
            assert!(parse_base_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_the_tutorial() {
        let config = Config::defaults();
        let settings = config.sandbox_defaults();
        assert_eq!(settings, SandboxSettings::default());
        assert_eq!(
            config.database_path().unwrap(),
            PathBuf::from("data/playground.sqlite3")
        );
    }

    #[test]
    fn database_urls_must_be_sqlite() {
        let mut config = Config::defaults();
        config.database_url = Some("sqlite:///tmp/x.db".into());
        assert_eq!(config.database_path().unwrap(), PathBuf::from("/tmp/x.db"));
        config.database_url = Some("postgres://localhost/db".into());
        assert!(config.database_path().unwrap_err().contains("only SQLite"));
    }

    #[test]
    fn hosted_mode_tightens_every_default_and_flags_still_win() {
        let local = Config::defaults().limits();
        let hosted = Config::try_parse_from(["x", "--hosted"]).unwrap().limits();
        assert!(local.named_sandboxes && !hosted.named_sandboxes);
        assert!(hosted.sandbox_idle < local.sandbox_idle);
        assert!(hosted.sockets_per_client < local.sockets_per_client);
        assert!(hosted.sandbox_ops_per_second > 0 && local.sandbox_ops_per_second == 0);
        let chosen = Config::try_parse_from(["x", "--hosted", "--max-herd-requests", "10"]).unwrap();
        assert_eq!(chosen.limits().max_herd_requests, 10);
    }

    #[test]
    fn bad_values_are_rejected_with_a_message() {
        let err = Config::try_parse_from(["x", "--cache-ttl-secs", "0"]).unwrap_err();
        assert!(err.to_string().contains("cache-ttl-secs"), "{err}");
        let err = Config::try_parse_from(["x", "--key-prefix", "a b"]).unwrap_err();
        assert!(err.to_string().contains("letters"), "{err}");
    }
}
