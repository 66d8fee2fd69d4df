//! A sandbox's settings and counters, each one serializable value, so a URL
//! or a lesson preset can recreate them later.

use serde::{Deserialize, Serialize};

use crate::entity::{InputError, Kind};

/// What a write does to the cache after it has changed the database
/// (tutorial step 3 and section 4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteStrategy {
    /// `DEL` the key right after the database write: the next read misses
    /// and loads the new row. Simplest and most consistent.
    #[default]
    DeleteOnWrite,
    /// Leave the cache alone: the old copy is served until its TTL runs out,
    /// so staleness is bounded by the TTL.
    TtlOnly,
    /// By data class: user profiles are invalidated at once, the product
    /// catalog is left to its TTL.
    Hybrid,
    /// Write the new value into the cache as well (for comparison: this is
    /// the write-through pattern, not cache-aside).
    WriteThrough,
}

impl WriteStrategy {
    /// Every strategy, in the order the UI lists them.
    pub const ALL: [WriteStrategy; 4] = [
        WriteStrategy::DeleteOnWrite,
        WriteStrategy::TtlOnly,
        WriteStrategy::Hybrid,
        WriteStrategy::WriteThrough,
    ];

    /// What the strategy does to the cache after a write of a record of
    /// `kind`: the hybrid strategy decides by data class.
    pub fn action_for(self, kind: Kind) -> CacheWrite {
        match (self, kind) {
            (WriteStrategy::DeleteOnWrite, _) | (WriteStrategy::Hybrid, Kind::Users) => {
                CacheWrite::Invalidate
            }
            (WriteStrategy::TtlOnly, _) | (WriteStrategy::Hybrid, Kind::Products) => CacheWrite::LeaveToTtl,
            (WriteStrategy::WriteThrough, _) => CacheWrite::WriteThrough,
        }
    }

    /// The name used in flags and URLs: `delete-on-write`, `ttl-only`,
    /// `hybrid`, `write-through`.
    pub fn name(self) -> &'static str {
        match self {
            WriteStrategy::DeleteOnWrite => "delete-on-write",
            WriteStrategy::TtlOnly => "ttl-only",
            WriteStrategy::Hybrid => "hybrid",
            WriteStrategy::WriteThrough => "write-through",
        }
    }

    /// The label the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            WriteStrategy::DeleteOnWrite => "delete on write",
            WriteStrategy::TtlOnly => "TTL only",
            WriteStrategy::Hybrid => "hybrid (users: delete, products: TTL)",
            WriteStrategy::WriteThrough => "write-through",
        }
    }
}

/// What shapes the behaviour of reads in a sandbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SandboxSettings {
    /// How long a cached record lives in Redis (`SET ... EX`), in seconds.
    pub cache_ttl_secs: u64,
    /// How long a "does not exist" marker lives, in seconds; shorter than
    /// `cache_ttl_secs` so a record created later shows up soon.
    pub null_ttl_secs: u64,
    /// The start of every cache key, such as `cache:`.
    pub key_prefix: String,
    /// Delay added to every database query to imitate a remote database, in
    /// milliseconds (the tutorial's figure is 100 ms).
    pub db_latency_ms: u64,
    /// How long one Redis command may take before the read gives up on the
    /// cache and falls back to the database, in milliseconds. Fixed when the
    /// back end starts (`--redis-timeout-ms`); shown here for reference.
    pub redis_timeout_ms: u64,
    /// What writes do to the cache.
    #[serde(default)]
    pub write_strategy: WriteStrategy,
    /// The protection against the stale-set race.
    #[serde(default)]
    pub race_fix: RaceFix,
    /// How much the simulated database latency varies, in percent: each
    /// query waits `db_latency_ms` plus or minus up to this share. Real
    /// latencies vary, and races need that.
    #[serde(default)]
    pub db_jitter_percent: u64,
    /// Whether each application instance keeps an in-process "near" cache
    /// in front of Redis, kept coherent by Pub/Sub invalidation.
    #[serde(default)]
    pub near_cache: bool,
    /// How long a near-cache entry lives, in seconds: the bound on staleness
    /// for an instance that missed an invalidation.
    #[serde(default = "default_near_ttl")]
    pub near_ttl_secs: u64,
    /// Randomize every TTL by up to this percentage either way, so keys
    /// cached together do not expire together (tutorial section 4.1).
    #[serde(default)]
    pub ttl_jitter_percent: u64,
    /// How concurrent misses of one key are kept off the database: every
    /// read of the sandbox (REST, page, herd) goes through it.
    #[serde(default)]
    pub stampede: StampedePolicy,
    /// XFetch's beta, with [`StampedePolicy::EarlyRefresh`]: above 1
    /// refreshes earlier, below 1 later.
    #[serde(default = "default_beta")]
    pub early_refresh_beta: f64,
    /// Whether "does not exist" is cached (for `null_ttl_secs`). Off, every
    /// lookup of a missing id reaches the database (section 4.7).
    #[serde(default = "default_true")]
    pub negative_caching: bool,
    /// How many queries the database runs at once, like a real server's
    /// connections: the rest queue (section 4.1's stampede shows why).
    #[serde(default = "default_db_connections")]
    pub db_connections: u64,
    /// How long a query waits in that queue for a free connection before
    /// the database is reported busy, in milliseconds.
    #[serde(default = "default_db_wait_ms")]
    pub db_wait_ms: u64,
    /// The mistake of section 4.6, switched on to see it: values are
    /// cached with no TTL and stay until deleted or evicted.
    #[serde(default)]
    pub forget_ttl: bool,
    /// A bug of section 7 ("stale data"), switched on to see it: writers
    /// build key names their own way (`users:42`, the table's name) while
    /// readers cache `user:42`, so every invalidation deletes a key nobody
    /// reads.
    #[serde(default)]
    pub mismatched_keys: bool,
    /// How values are written into Redis (section 4.4).
    #[serde(default)]
    pub value_encoding: ValueEncoding,
    /// With [`ValueEncoding::CompressedJson`], values whose JSON is longer
    /// than this many bytes are gzipped; shorter ones are not worth it.
    #[serde(default = "default_compress_above")]
    pub compress_above_bytes: u64,
    /// Filler added to every record loaded, in bytes, to see what a big
    /// value costs on each hit (0: none).
    #[serde(default)]
    pub value_padding_bytes: u64,
    /// How long a cached product lives, in seconds, when products should
    /// not share the users' `cache_ttl_secs` (0: they share it). Different
    /// TTLs for related data is the inconsistency of section 4.6.
    #[serde(default)]
    pub product_ttl_secs: u64,
    /// Whether a read whose Redis command fails falls back to the database
    /// (section 4.5). Off is the naive application of section 7, whose
    /// handler lets the cache's error through: Redis down, request failed.
    #[serde(default = "default_true")]
    pub fallback: bool,
    /// A circuit breaker around Redis: after five outages in a row, reads
    /// skip Redis for two seconds, then one probes (sections 4.5, 6.3).
    #[serde(default)]
    pub breaker: bool,
    /// Fail-safe: keep values this many seconds past their TTL, and serve
    /// one, marked stale, when the database fails (0: off).
    #[serde(default)]
    pub fail_safe_secs: u64,
    /// Keep a write's invalidation that could not reach Redis, and send it
    /// again until Redis takes it (off: the old copy may outlive the
    /// outage until its TTL).
    #[serde(default)]
    pub retry_invalidations: bool,
    /// A command whose connection to Redis turns out dead (the first after
    /// an outage, or after a cut) goes once more on a new one, if it may
    /// safely go twice (off: a read then falls back to the database, or
    /// fails without a fallback).
    #[serde(default)]
    pub resend_dropped: bool,
    /// Share of database queries that fail, in percent: a failing database.
    #[serde(default)]
    pub db_error_percent: u64,
    /// The wrong order of section 4.2, switched on to see it: writes delete
    /// the cached copy *before* changing the database, so a read in between
    /// caches the old row again.
    #[serde(default)]
    pub delete_first: bool,
    /// Whether sensitive fields (a user's phone number) are sealed
    /// (encrypted) before they are cached (section 6.6). Off, to see the
    /// problem: the number rests in Redis in the clear, readable by anyone
    /// who can `GET` the key, `MONITOR` the server or open a backup.
    #[serde(default = "default_true")]
    pub seal_sensitive: bool,
}

/// How a sandbox writes values into Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueEncoding {
    /// Readable in `redis-cli`; the biggest.
    #[default]
    Json,
    /// Binary, smaller, quicker to read.
    #[serde(rename = "messagepack")]
    MessagePack,
    /// JSON, gzipped above [`SandboxSettings::compress_above_bytes`].
    #[serde(rename = "gzip")]
    CompressedJson,
}

impl ValueEncoding {
    pub const ALL: [ValueEncoding; 3] = [
        ValueEncoding::Json,
        ValueEncoding::MessagePack,
        ValueEncoding::CompressedJson,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ValueEncoding::Json => "json",
            ValueEncoding::MessagePack => "messagepack",
            ValueEncoding::CompressedJson => "gzip",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ValueEncoding::Json => "JSON",
            ValueEncoding::MessagePack => "MessagePack",
            ValueEncoding::CompressedJson => "JSON, gzipped when big",
        }
    }
}

impl std::str::FromStr for ValueEncoding {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ValueEncoding::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                InputError::BadSetting(format!("unknown encoding {s:?}: use json, messagepack or gzip"))
            })
    }
}

fn default_compress_above() -> u64 {
    1_024
}

fn default_db_connections() -> u64 {
    10
}

fn default_db_wait_ms() -> u64 {
    3_000
}

fn default_beta() -> f64 {
    1.0
}

/// A valid beta (0.1 to 10) in an address: to its 15th significant digit,
/// so that `decimal::parse` reads back the same `f64` for any beta a person
/// typed (15 digits at most), without trailing zeros.
fn beta_text(beta: f64) -> String {
    let decimals = if beta.abs() >= 1.0 { 14 } else { 15 };
    crate::decimal::trimmed(beta, decimals)
}

fn default_true() -> bool {
    true
}

/// How a sandbox keeps a crowd of concurrent misses of one key off the
/// database (tutorial section 4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StampedePolicy {
    /// Every miss loads.
    #[default]
    None,
    /// One load per key per application instance.
    SingleFlight,
    /// One load per key overall, under a Redis lock; waiters are handed
    /// the value over Pub/Sub.
    Lock,
    /// XFetch: a hit may refresh a value before it expires.
    EarlyRefresh,
    /// Serve a value past its fresh time while one request refreshes it.
    StaleWhileRevalidate,
}

impl StampedePolicy {
    pub const ALL: [StampedePolicy; 5] = [
        StampedePolicy::None,
        StampedePolicy::SingleFlight,
        StampedePolicy::Lock,
        StampedePolicy::EarlyRefresh,
        StampedePolicy::StaleWhileRevalidate,
    ];

    /// The name used in URLs and messages.
    pub fn name(self) -> &'static str {
        match self {
            StampedePolicy::None => "none",
            StampedePolicy::SingleFlight => "single-flight",
            StampedePolicy::Lock => "lock",
            StampedePolicy::EarlyRefresh => "early-refresh",
            StampedePolicy::StaleWhileRevalidate => "stale-while-revalidate",
        }
    }

    /// The label the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            StampedePolicy::None => "no defence",
            StampedePolicy::SingleFlight => "single flight (per instance)",
            StampedePolicy::Lock => "Redis lock",
            StampedePolicy::EarlyRefresh => "early refresh (XFetch)",
            StampedePolicy::StaleWhileRevalidate => "stale-while-revalidate",
        }
    }
}

impl std::str::FromStr for StampedePolicy {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.replace('_', "-");
        StampedePolicy::ALL
            .into_iter()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| {
                InputError::BadSetting(format!(
                    "unknown stampede policy {s:?}: use one of {}",
                    StampedePolicy::ALL.map(StampedePolicy::name).join(", ")
                ))
            })
    }
}

fn default_near_ttl() -> u64 {
    30
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            cache_ttl_secs: 60,
            null_ttl_secs: 30,
            key_prefix: "cache:".into(),
            db_latency_ms: 100,
            redis_timeout_ms: 250,
            write_strategy: WriteStrategy::DeleteOnWrite,
            race_fix: RaceFix::None,
            db_jitter_percent: 0,
            near_cache: false,
            near_ttl_secs: default_near_ttl(),
            ttl_jitter_percent: 0,
            stampede: StampedePolicy::None,
            early_refresh_beta: default_beta(),
            negative_caching: true,
            db_connections: default_db_connections(),
            db_wait_ms: default_db_wait_ms(),
            forget_ttl: false,
            mismatched_keys: false,
            value_encoding: ValueEncoding::Json,
            compress_above_bytes: default_compress_above(),
            value_padding_bytes: 0,
            product_ttl_secs: 0,
            fallback: true,
            breaker: false,
            fail_safe_secs: 0,
            retry_invalidations: false,
            resend_dropped: false,
            db_error_percent: 0,
            delete_first: false,
            seal_sensitive: true,
        }
    }
}

impl std::str::FromStr for WriteStrategy {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.replace('_', "-");
        WriteStrategy::ALL
            .into_iter()
            .find(|w| w.name() == wanted)
            .ok_or_else(|| {
                InputError::BadSetting(format!(
                    "unknown write strategy {s:?}: use one of {}",
                    WriteStrategy::ALL.map(WriteStrategy::name).join(", ")
                ))
            })
    }
}

/// How the cache is protected from the stale-set race: a reader that
/// loaded an old row storing it after a writer has invalidated the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaceFix {
    /// No protection: the race can leave a stale value until its TTL.
    #[default]
    None,
    /// Leases, as in Facebook's memcache: a miss takes a lease token, a write
    /// revokes it, and a store with a revoked token is refused (atomically,
    /// in a Lua script).
    Lease,
    /// Version checks: values carry their row version, a write leaves a
    /// marker with the new version, and an older version never overwrites a
    /// newer one (atomically, in a Lua script).
    Version,
}

impl RaceFix {
    pub const ALL: [RaceFix; 3] = [RaceFix::None, RaceFix::Lease, RaceFix::Version];

    /// The name used in flags and messages.
    pub fn name(self) -> &'static str {
        match self {
            RaceFix::None => "none",
            RaceFix::Lease => "lease",
            RaceFix::Version => "version",
        }
    }

    /// The label the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            RaceFix::None => "no protection",
            RaceFix::Lease => "leases (memcache style)",
            RaceFix::Version => "version checks",
        }
    }
}

impl std::str::FromStr for RaceFix {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RaceFix::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            InputError::BadSetting(format!(
                "unknown race fix {s:?}: use one of {}",
                RaceFix::ALL.map(RaceFix::name).join(", ")
            ))
        })
    }
}

/// What happens to the cached copy after a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheWrite {
    /// `DEL` the key.
    Invalidate,
    /// Leave it; its TTL bounds the staleness.
    LeaveToTtl,
    /// `SET` the new value (or `DEL` after a delete).
    WriteThrough,
}

impl SandboxSettings {
    /// The TTL of cached records of `kind`, in seconds.
    pub fn ttl_secs_for(&self, kind: crate::Kind) -> u64 {
        match kind {
            crate::Kind::Products if self.product_ttl_secs > 0 => self.product_ttl_secs,
            _ => self.cache_ttl_secs,
        }
    }

    /// The ranges each setting must be in.
    pub const CACHE_TTL_SECS: (u64, u64) = (1, 604_800);
    pub const DB_LATENCY_MS: (u64, u64) = (0, 10_000);
    pub const REDIS_TIMEOUT_MS: (u64, u64) = (1, 10_000);
    pub const DB_CONNECTIONS: (u64, u64) = (1, 100);
    pub const DB_WAIT_MS: (u64, u64) = (10, 30_000);
    /// Up to 1 MiB: where gzip starts to pay.
    pub const VALUE_BYTES: (u64, u64) = (0, 1 << 20);
    /// Filler up to 128 KiB: a value that big shows what it costs on every
    /// hit, and stays small enough to send to a page and to count in a
    /// sandbox's share of Redis (a padded record counts as several).
    pub const PADDING_BYTES: (u64, u64) = (0, 128 << 10);
    /// Fail-safe's window: up to a day past the TTL.
    pub const FAIL_SAFE_SECS: (u64, u64) = (0, 86_400);
    /// XFetch's beta (NaN is outside every range, so it is refused too).
    pub const BETA: (f64, f64) = (0.1, 10.0);

    /// Checks every setting against its range.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), InputError> {
        let check = check_range;
        check("cache_ttl_secs", self.cache_ttl_secs, Self::CACHE_TTL_SECS)?;
        check("null_ttl_secs", self.null_ttl_secs, Self::CACHE_TTL_SECS)?;
        check("db_latency_ms", self.db_latency_ms, Self::DB_LATENCY_MS)?;
        check("db_jitter_percent", self.db_jitter_percent, (0, 100))?;
        check("near_ttl_secs", self.near_ttl_secs, Self::CACHE_TTL_SECS)?;
        check("ttl_jitter_percent", self.ttl_jitter_percent, (0, 90))?;
        check("redis_timeout_ms", self.redis_timeout_ms, Self::REDIS_TIMEOUT_MS)?;
        check("db_connections", self.db_connections, Self::DB_CONNECTIONS)?;
        check("db_wait_ms", self.db_wait_ms, Self::DB_WAIT_MS)?;
        check(
            "compress_above_bytes",
            self.compress_above_bytes,
            Self::VALUE_BYTES,
        )?;
        check(
            "value_padding_bytes",
            self.value_padding_bytes,
            Self::PADDING_BYTES,
        )?;
        check(
            "product_ttl_secs",
            self.product_ttl_secs,
            (0, Self::CACHE_TTL_SECS.1),
        )?;
        check("fail_safe_secs", self.fail_safe_secs, Self::FAIL_SAFE_SECS)?;
        check("db_error_percent", self.db_error_percent, (0, 100))?;
        check_float_range("early_refresh_beta", self.early_refresh_beta, Self::BETA)?;
        Ok(())
    }

    /// The settings a learner chooses, as address parameters a person can
    /// read and edit: `ttl=300&null_ttl=60&db_ms=100&...`. The key prefix
    /// and the Redis timeout are the server's, not the page's.
    pub fn to_query(&self) -> String {
        let flag = |on: bool| if on { "1" } else { "0" };
        format!(
            "ttl={}&no_ttl={}&null_ttl={}&negative={}&db_ms={}&db_jitter={}&db_conns={}&db_wait={}&write={}&key_typo={}&race={}&near={}&near_ttl={}&ttl_jitter={}&stampede={}&beta={}&encoding={}&compress_above={}&padding={}&product_ttl={}&fallback={}&breaker={}&fail_safe={}&retry_inval={}&resend={}&db_errors={}&delete_first={}&seal={}",
            self.cache_ttl_secs,
            flag(self.forget_ttl),
            self.null_ttl_secs,
            flag(self.negative_caching),
            self.db_latency_ms,
            self.db_jitter_percent,
            self.db_connections,
            self.db_wait_ms,
            self.write_strategy.name(),
            flag(self.mismatched_keys),
            self.race_fix.name(),
            flag(self.near_cache),
            self.near_ttl_secs,
            self.ttl_jitter_percent,
            self.stampede.name(),
            beta_text(self.early_refresh_beta),
            self.value_encoding.name(),
            self.compress_above_bytes,
            self.value_padding_bytes,
            self.product_ttl_secs,
            flag(self.fallback),
            flag(self.breaker),
            self.fail_safe_secs,
            flag(self.retry_invalidations),
            flag(self.resend_dropped),
            self.db_error_percent,
            flag(self.delete_first),
            flag(self.seal_sensitive),
        )
    }

    /// Whether an address's parameters name any setting.
    pub fn in_query<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
        names.into_iter().any(|n| QUERY_NAMES.contains(&n))
    }

    /// These settings with the address parameters applied; other
    /// parameters are ignored.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] naming the first parameter that is not a
    /// valid value, or a setting out of range.
    pub fn with_query<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<SandboxSettings, InputError> {
        fn bad(name: &str, value: &str) -> InputError {
            let value: String = value.chars().take(20).collect();
            InputError::BadSetting(format!("{name}={value:?} is not a valid value"))
        }
        fn number(name: &str, value: &str) -> Result<u64, InputError> {
            value.trim().parse().map_err(|_| bad(name, value))
        }
        fn flag(name: &str, value: &str) -> Result<bool, InputError> {
            match value {
                "1" | "true" | "on" => Ok(true),
                "0" | "false" | "off" => Ok(false),
                _ => Err(bad(name, value)),
            }
        }
        fn named<T: Copy>(
            name: &str,
            value: &str,
            all: &[T],
            name_of: fn(T) -> &'static str,
        ) -> Result<T, InputError> {
            all.iter()
                .copied()
                .find(|v| name_of(*v) == value)
                .ok_or_else(|| bad(name, value))
        }
        let mut s = self.clone();
        for (name, value) in pairs {
            match name {
                "ttl" => s.cache_ttl_secs = number(name, value)?,
                "no_ttl" => s.forget_ttl = flag(name, value)?,
                "null_ttl" => s.null_ttl_secs = number(name, value)?,
                "negative" => s.negative_caching = flag(name, value)?,
                "db_ms" => s.db_latency_ms = number(name, value)?,
                "db_jitter" => s.db_jitter_percent = number(name, value)?,
                "db_conns" => s.db_connections = number(name, value)?,
                "db_wait" => s.db_wait_ms = number(name, value)?,
                "write" => s.write_strategy = named(name, value, &WriteStrategy::ALL, WriteStrategy::name)?,
                "key_typo" => s.mismatched_keys = flag(name, value)?,
                "race" => s.race_fix = named(name, value, &RaceFix::ALL, RaceFix::name)?,
                "near" => s.near_cache = flag(name, value)?,
                "near_ttl" => s.near_ttl_secs = number(name, value)?,
                "ttl_jitter" => s.ttl_jitter_percent = number(name, value)?,
                "stampede" => s.stampede = named(name, value, &StampedePolicy::ALL, StampedePolicy::name)?,
                "encoding" => {
                    s.value_encoding = named(name, value, &ValueEncoding::ALL, ValueEncoding::name)?
                }
                "compress_above" => s.compress_above_bytes = number(name, value)?,
                "padding" => s.value_padding_bytes = number(name, value)?,
                "product_ttl" => s.product_ttl_secs = number(name, value)?,
                "fallback" => s.fallback = flag(name, value)?,
                "breaker" => s.breaker = flag(name, value)?,
                "fail_safe" => s.fail_safe_secs = number(name, value)?,
                "retry_inval" => s.retry_invalidations = flag(name, value)?,
                "resend" => s.resend_dropped = flag(name, value)?,
                "db_errors" => s.db_error_percent = number(name, value)?,
                "delete_first" => s.delete_first = flag(name, value)?,
                "seal" => s.seal_sensitive = flag(name, value)?,
                "beta" => {
                    s.early_refresh_beta = crate::decimal::parse(value).ok_or_else(|| bad(name, value))?;
                }
                _ => {}
            }
        }
        // Out of range: named as the address names it (`ttl`), not by the
        // field (`cache_ttl_secs`).
        s.validate().map_err(|e| match e {
            InputError::BadSetting(message) => InputError::BadSetting(
                ADDRESS_NAMES
                    .iter()
                    .find_map(|(field, name)| {
                        message
                            .strip_prefix(field)
                            .filter(|rest| rest.starts_with(' '))
                            .map(|rest| format!("{name}{rest}"))
                    })
                    .unwrap_or(message),
            ),
            other => other,
        })?;
        Ok(s)
    }
}

/// The settings' fields and their names in an address, where they differ.
const ADDRESS_NAMES: [(&str, &str); 14] = [
    ("cache_ttl_secs", "ttl"),
    ("null_ttl_secs", "null_ttl"),
    ("db_latency_ms", "db_ms"),
    ("db_jitter_percent", "db_jitter"),
    ("near_ttl_secs", "near_ttl"),
    ("ttl_jitter_percent", "ttl_jitter"),
    ("db_connections", "db_conns"),
    ("db_wait_ms", "db_wait"),
    ("compress_above_bytes", "compress_above"),
    ("value_padding_bytes", "padding"),
    ("product_ttl_secs", "product_ttl"),
    ("fail_safe_secs", "fail_safe"),
    ("db_error_percent", "db_errors"),
    ("early_refresh_beta", "beta"),
];

/// `Ok` when `value` lies in `lo..=hi`; otherwise an error naming the
/// setting and its range.
pub fn check_range(name: &str, value: u64, (lo, hi): (u64, u64)) -> Result<(), InputError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(InputError::BadSetting(format!(
            "{name} must be from {lo} to {hi}, not {value}"
        )))
    }
}

/// Like [`check_range`] for a fraction or exponent; NaN is outside every
/// range.
pub(crate) fn check_float_range(name: &str, value: f64, (lo, hi): (f64, f64)) -> Result<(), InputError> {
    if (lo..=hi).contains(&value) {
        return Ok(());
    }
    // Written without f64's Display (see `decimal`); the value itself only
    // when it reads well (not NaN, 1e300 or 1e-12).
    let number = |v: f64| crate::decimal::trimmed(v, 6);
    let shown = if (1e-6..1e9).contains(&value.abs()) {
        format!(", not {}", number(value))
    } else {
        String::new()
    };
    Err(InputError::BadSetting(format!(
        "{name} must be from {} to {}{shown}",
        number(lo),
        number(hi)
    )))
}

/// The address parameters [`SandboxSettings::with_query`] reads.
pub const QUERY_NAMES: [&str; 28] = [
    "ttl",
    "no_ttl",
    "null_ttl",
    "negative",
    "db_ms",
    "db_jitter",
    "db_conns",
    "db_wait",
    "write",
    "key_typo",
    "race",
    "near",
    "near_ttl",
    "ttl_jitter",
    "stampede",
    "beta",
    "encoding",
    "compress_above",
    "padding",
    "product_ttl",
    "fallback",
    "breaker",
    "fail_safe",
    "retry_inval",
    "resend",
    "db_errors",
    "delete_first",
    "seal",
];

/// Running counters of one sandbox since the back end started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Reads answered from the cache with a value.
    pub hits: u64,
    /// Reads answered from the cache with a "does not exist" marker.
    pub null_hits: u64,
    /// Reads that found nothing in Redis and went to the database.
    pub misses: u64,
    /// Reads where Redis failed and the database answered.
    pub fallbacks: u64,
    /// Reads that failed because the database failed.
    pub failures: u64,
    /// Writes (updates and deletes) that reached the database.
    #[serde(default)]
    pub writes: u64,
    /// Sum of the wall time of every answered read, in microseconds.
    pub total_latency_us: u64,
    /// Number of reads that went to the database.
    pub database_reads: u64,
    /// Sum of the wall time of those database reads (query plus simulated
    /// delay), in microseconds: what every read would cost with no cache.
    pub database_latency_us: u64,
    /// Reads counted here but not drawn: beyond the traces a sandbox draws
    /// per second, a flood of reads is counted, not traced one by one.
    #[serde(default)]
    pub untraced: u64,
    /// Of the database reads, those that found no row: lookups of records
    /// that do not exist (the tutorial alerts over 10 % of all queries).
    #[serde(default)]
    pub database_not_found: u64,
}

impl Stats {
    /// All reads counted.
    pub fn reads(&self) -> u64 {
        self.hits + self.null_hits + self.misses + self.fallbacks
    }

    /// Share of reads answered from the cache, from 0 to 1; `None` before
    /// the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.reads();
        (reads > 0).then(|| (self.hits + self.null_hits) as f64 / reads as f64)
    }

    /// Average latency of reads as they ran, with the cache, in microseconds.
    pub fn average_latency_us(&self) -> Option<u64> {
        let reads = self.reads();
        (reads > 0).then(|| self.total_latency_us / reads)
    }

    /// Average cost of one database read, in microseconds: the latency every
    /// read would have without a cache.
    pub fn average_database_us(&self) -> Option<u64> {
        (self.database_reads > 0).then(|| self.database_latency_us / self.database_reads)
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(&str, &str)> {
        query.split('&').filter_map(|p| p.split_once('=')).collect()
    }

    #[test]
    fn settings_round_trip_through_the_address() {
        let chosen = SandboxSettings {
            cache_ttl_secs: 5,
            negative_caching: false,
            write_strategy: WriteStrategy::TtlOnly,
            race_fix: RaceFix::Lease,
            near_cache: true,
            stampede: StampedePolicy::Lock,
            early_refresh_beta: 2.5,
            db_connections: 3,
            db_wait_ms: 500,
            forget_ttl: true,
            fallback: false,
            breaker: true,
            fail_safe_secs: 120,
            retry_invalidations: true,
            resend_dropped: true,
            db_error_percent: 30,
            delete_first: true,
            seal_sensitive: false,
            ..SandboxSettings::default()
        };
        let query = chosen.to_query();
        assert!(query.starts_with("ttl=5&"), "{query}");
        assert!(
            query.contains("write=ttl_only") || query.contains("write="),
            "{query}"
        );
        let back = SandboxSettings::default().with_query(pairs(&query)).unwrap();
        assert_eq!(back, chosen);
        assert!(SandboxSettings::in_query(
            pairs(&query).into_iter().map(|(n, _)| n)
        ));
        assert!(!SandboxSettings::in_query(["lesson", "step", "theme"]));
    }

    /// A beta of up to 15 digits, as typed, comes back from the address
    /// bit for bit; an exponent is refused by name, and an absurd value is
    /// not printed back.
    #[test]
    fn beta_survives_the_address_and_bad_ones_are_named() {
        for typed in [
            "0.1",
            "0.123456789012345",
            "1",
            "2.5",
            "9.99999999999999",
            "10",
            "3.14159265358979",
        ] {
            let beta = crate::decimal::parse(typed).unwrap();
            let chosen = SandboxSettings {
                early_refresh_beta: beta,
                ..SandboxSettings::default()
            };
            let back = SandboxSettings::default()
                .with_query(pairs(&chosen.to_query()))
                .unwrap();
            assert_eq!(back.early_refresh_beta.to_bits(), beta.to_bits(), "{typed}");
            assert!(chosen.to_query().contains(&format!("&beta={typed}&")), "{typed}");
        }
        let base = SandboxSettings::default();
        let err = base.with_query([("beta", "1e-1")]).unwrap_err().to_string();
        assert!(err.contains("beta=\"1e-1\""), "{err}");
        let err = base.with_query([("beta", "11")]).unwrap_err().to_string();
        assert_eq!(err, "beta must be from 0.1 to 10, not 11");
        let err = base
            .with_query([("beta", "99999999999")])
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("must be from 0.1 to 10"), "{err}");
    }

    #[test]
    fn bad_values_are_named_and_ranges_checked() {
        let base = SandboxSettings::default();
        let err = base.with_query([("stampede", "everything")]).unwrap_err();
        assert!(err.to_string().contains("stampede"), "{err}");
        // Named as the address names them.
        let err = base.with_query([("ttl", "0")]).unwrap_err();
        assert_eq!(err.to_string(), "ttl must be from 1 to 604800, not 0");
        let err = base.with_query([("near", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("near"), "{err}");
        let err = base.with_query([("db_conns", "0")]).unwrap_err();
        assert!(
            err.to_string().starts_with("db_conns must be from 1 to 100"),
            "{err}"
        );
        let err = base.with_query([("db_wait", "100000")]).unwrap_err();
        assert!(err.to_string().starts_with("db_wait must be"), "{err}");
        // Unknown parameters are someone else's.
        assert_eq!(base.with_query([("lesson", "basics")]).unwrap(), base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_resolves_by_data_class() {
        assert_eq!(
            WriteStrategy::Hybrid.action_for(Kind::Users),
            CacheWrite::Invalidate
        );
        assert_eq!(
            WriteStrategy::Hybrid.action_for(Kind::Products),
            CacheWrite::LeaveToTtl
        );
        assert_eq!(
            WriteStrategy::TtlOnly.action_for(Kind::Users),
            CacheWrite::LeaveToTtl
        );
        assert_eq!(
            WriteStrategy::WriteThrough.action_for(Kind::Users),
            CacheWrite::WriteThrough
        );
    }

    #[test]
    fn strategies_and_fixes_parse_from_their_names() {
        for w in WriteStrategy::ALL {
            assert_eq!(w.name().parse::<WriteStrategy>(), Ok(w));
        }
        assert_eq!("ttl_only".parse::<WriteStrategy>(), Ok(WriteStrategy::TtlOnly));
        assert!("sometimes".parse::<WriteStrategy>().is_err());
        for f in RaceFix::ALL {
            assert_eq!(f.name().parse::<RaceFix>(), Ok(f));
        }
        for p in StampedePolicy::ALL {
            assert_eq!(p.name().parse::<StampedePolicy>(), Ok(p));
        }
        assert!("maybe".parse::<StampedePolicy>().is_err());
    }

    #[test]
    fn settings_out_of_range_are_named() {
        assert!(SandboxSettings::default().validate().is_ok());
        let bad = SandboxSettings {
            cache_ttl_secs: 0,
            ..SandboxSettings::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("cache_ttl_secs"), "{err}");
        for beta in [0.0, f64::NAN, 11.0] {
            let bad = SandboxSettings {
                early_refresh_beta: beta,
                ..SandboxSettings::default()
            };
            assert!(bad.validate().unwrap_err().to_string().contains("beta"));
        }
    }

    #[test]
    fn ratios_follow_the_tutorials_arithmetic() {
        // Section 2.5: 80 % hits at 1 ms and 20 % misses at 101 ms.
        let stats = Stats {
            hits: 8,
            misses: 2,
            total_latency_us: 8 * 1_000 + 2 * 101_000,
            database_reads: 2,
            database_latency_us: 2 * 100_000,
            ..Stats::default()
        };
        assert_eq!(stats.hit_ratio(), Some(0.8));
        assert_eq!(stats.average_latency_us(), Some(21_000));
        assert_eq!(stats.average_database_us(), Some(100_000));
        assert_eq!(Stats::default().hit_ratio(), None);
    }
}
