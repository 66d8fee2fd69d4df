//! The eviction lab (tutorial sections 4.4 and 5.3): a sandbox with a
//! redis-server of its own sets that server's memory limit and eviction
//! policy, then fills it past the limit with a cache-aside workload and
//! counts what Redis kept, evicted or refused.

use serde::{Deserialize, Serialize};

use crate::settings::{check_float_range, check_range};
use crate::InputError;

/// Redis's `maxmemory-policy`: what Redis does when a write needs memory
/// past `maxmemory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    /// Evict nothing: the write fails with an out-of-memory error.
    Noeviction,
    /// Evict the least recently used key, any key.
    AllkeysLru,
    /// Evict the least frequently used key, any key.
    AllkeysLfu,
    /// Evict a key at random, any key.
    AllkeysRandom,
    /// Evict the least recently used key among keys with a TTL.
    VolatileLru,
    /// Evict the least frequently used key among keys with a TTL.
    VolatileLfu,
    /// Evict a key with a TTL at random.
    VolatileRandom,
    /// Evict the key with a TTL that would expire soonest.
    VolatileTtl,
}

impl EvictionPolicy {
    pub const ALL: [EvictionPolicy; 8] = [
        EvictionPolicy::Noeviction,
        EvictionPolicy::AllkeysLru,
        EvictionPolicy::AllkeysLfu,
        EvictionPolicy::AllkeysRandom,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ];

    /// Its name in Redis (`allkeys-lru`).
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "noeviction",
            EvictionPolicy::AllkeysLru => "allkeys-lru",
            EvictionPolicy::AllkeysLfu => "allkeys-lfu",
            EvictionPolicy::AllkeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    /// What it does, in a few words, for the page.
    pub fn explain(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "refuses writes once memory is full; nothing is evicted",
            EvictionPolicy::AllkeysLru => "drops the key unused the longest (the usual choice for a cache)",
            EvictionPolicy::AllkeysLfu => "drops the key used the least often",
            EvictionPolicy::AllkeysRandom => "drops any key at random, hot or cold",
            EvictionPolicy::VolatileLru => {
                "drops the key with a TTL unused the longest; keys without a TTL stay"
            }
            EvictionPolicy::VolatileLfu => {
                "drops the key with a TTL used the least often; keys without a TTL stay"
            }
            EvictionPolicy::VolatileRandom => "drops a key with a TTL at random; keys without a TTL stay",
            EvictionPolicy::VolatileTtl => "drops the key with a TTL closest to expiring",
        }
    }

    /// Whether only keys with a TTL can be evicted.
    pub fn volatile_only(self) -> bool {
        self.name().starts_with("volatile")
    }

    /// The policy Redis names `name`.
    pub fn from_name(name: &str) -> Option<EvictionPolicy> {
        EvictionPolicy::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The limit and policy to give the sandbox's own server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySettings {
    /// `maxmemory`, in KiB: from [`MemorySettings::MAXMEMORY_KB`]'s lower
    /// bound to the server's configured limit.
    pub maxmemory_kb: u64,
    pub policy: EvictionPolicy,
    /// `maxmemory-samples`: how many keys Redis looks at to pick one to
    /// evict (the LRU, LFU and TTL policies are approximations).
    pub samples: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            maxmemory_kb: 4 * 1024,
            policy: EvictionPolicy::AllkeysLru,
            samples: 5,
        }
    }
}

impl MemorySettings {
    /// An empty redis-server already uses about 1 MiB: a limit under 2 MiB
    /// leaves no room for a single key. The upper bound is the server's own.
    pub const MAXMEMORY_KB: (u64, u64) = (2 * 1024, 1024 * 1024);
    pub const SAMPLES: (u64, u64) = (1, 64);

    /// Checks every field against its range, `maxmemory_kb` against the
    /// server's configured limit too.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] naming the first field out of range.
    pub fn validate(&self, limit_kb: u64) -> Result<(), InputError> {
        let highest = Self::MAXMEMORY_KB.1.min(limit_kb).max(Self::MAXMEMORY_KB.0);
        check_range("maxmemory_kb", self.maxmemory_kb, (Self::MAXMEMORY_KB.0, highest))?;
        check_range("samples", self.samples, Self::SAMPLES)
    }
}

/// The sandbox's server's memory as it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryState {
    /// Whether this sandbox may change the limit and policy (only on a
    /// server of its own).
    pub controllable: bool,
    /// Why it may not, when it may not.
    pub reason: Option<String>,
    /// The highest `maxmemory_kb` it may set.
    pub limit_kb: u64,
    /// `maxmemory` in bytes (0: none).
    pub maxmemory: u64,
    /// `maxmemory-policy` as Redis names it.
    pub policy: String,
    pub samples: u64,
    pub used_memory: u64,
    /// Keys in the server (`DBSIZE`).
    pub keys: u64,
    /// Evicted since the server started.
    pub evicted_keys: u64,
}

/// A cache-aside workload that fills the server: every key read once in
/// order (each a miss that stores a value), then reads drawn by Zipf's law
/// (key 1 the hottest), each miss loading and storing again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FillSpec {
    /// How many distinct keys (`blob:1` to `blob:N`).
    pub keys: u64,
    /// The size of each value, in bytes.
    pub value_bytes: u64,
    /// Whether values are stored with a TTL (the volatile-* policies evict
    /// only those).
    pub with_ttl: bool,
    /// Reads after the fill, drawn by Zipf's law.
    pub reads: u64,
    /// Zipf's exponent for those reads: 0 uniform, higher more skewed.
    pub skew: f64,
    /// The seed of the read sequence.
    pub seed: u64,
    /// Whether what is hot moves on, like the newest posts of a feed: over
    /// the reads the hottest key walks once through all the keys, and the
    /// hot ones are those it passed last. Popularity that moves favours
    /// recency (LRU); steady popularity favours frequency (LFU).
    #[serde(default)]
    pub drift: bool,
}

impl Default for FillSpec {
    fn default() -> Self {
        FillSpec {
            keys: 8_000,
            value_bytes: 1_024,
            with_ttl: false,
            reads: 16_000,
            skew: 1.0,
            seed: 1,
            drift: false,
        }
    }
}

impl FillSpec {
    pub const KEYS: (u64, u64) = (1, 20_000);
    pub const VALUE_BYTES: (u64, u64) = (16, 64 * 1024);
    pub const READS: (u64, u64) = (0, 50_000);
    pub const SKEW: (f64, f64) = (0.0, 3.0);

    /// Checks every field against its range.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), InputError> {
        check_range("keys", self.keys, Self::KEYS)?;
        check_range("value_bytes", self.value_bytes, Self::VALUE_BYTES)?;
        check_range("reads", self.reads, Self::READS)?;
        check_range("seed", self.seed, (0, crate::protocol::MAX_SEED))?;
        check_float_range("skew", self.skew, Self::SKEW)
    }

    /// The key read `n`-th after the fill, for a Zipf draw of `rank` (1 the
    /// hottest): the rank itself, or, when popularity drifts, the key
    /// `rank - 1` places behind where the walk is at read `n`.
    pub fn key_of(&self, n: u64, rank: u64) -> u64 {
        if !self.drift || self.reads == 0 {
            return rank;
        }
        let walked = n * self.keys / self.reads;
        (walked + self.keys - (rank - 1) % self.keys) % self.keys + 1
    }

    /// The Zipf spec its reads are drawn from.
    pub fn distribution(&self) -> crate::LoadSpec {
        crate::LoadSpec {
            keys: self.keys,
            skew: self.skew,
            seed: self.seed,
            ..crate::LoadSpec::default()
        }
    }
}

/// What a fill did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FillResult {
    pub spec: FillSpec,
    /// The limit and policy it ran under.
    pub memory: MemorySettings,
    /// Values Redis accepted.
    pub stored: u64,
    /// Stores Redis refused (out of memory, under `noeviction` or a
    /// volatile policy with no key to evict). The reads still answered,
    /// from the database.
    pub store_failures: u64,
    /// Reads after the fill answered from Redis.
    pub hits: u64,
    /// Reads after the fill that missed and went to the database.
    pub misses: u64,
    /// Reads after the fill where Redis failed or was too slow, answered
    /// by the database (a full Redis is not a reason to fail a read).
    pub fallbacks: u64,
    /// Keys Redis evicted during the fill.
    pub evicted: u64,
    /// Keys in the server at the end.
    pub keys_left: u64,
    /// `used_memory` at the end, in bytes.
    pub used_memory: u64,
    pub duration_ms: u64,
}

impl FillResult {
    /// Hits over the reads after the fill (`None` without reads).
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_has_its_redis_name_and_back() {
        for policy in EvictionPolicy::ALL {
            assert_eq!(EvictionPolicy::from_name(policy.name()), Some(policy));
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{}\"", policy.name()));
        }
        assert_eq!(EvictionPolicy::from_name("allkeys-fifo"), None);
        assert!(EvictionPolicy::VolatileTtl.volatile_only());
        assert!(!EvictionPolicy::AllkeysLfu.volatile_only());
    }

    #[test]
    fn memory_settings_stay_within_the_servers_limit() {
        let ok = MemorySettings::default();
        assert!(ok.validate(64 * 1024).is_ok());
        let error = MemorySettings {
            maxmemory_kb: 128 * 1024,
            ..ok
        }
        .validate(64 * 1024)
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("maxmemory_kb must be from 2048 to 65536"),
            "{error}"
        );
        let error = MemorySettings { samples: 0, ..ok }
            .validate(64 * 1024)
            .unwrap_err();
        assert!(error.to_string().contains("samples"), "{error}");
        let error = MemorySettings {
            maxmemory_kb: 1024,
            ..ok
        }
        .validate(64 * 1024)
        .unwrap_err();
        assert!(error.to_string().contains("maxmemory_kb"), "{error}");
    }

    #[test]
    fn drifting_popularity_makes_the_keys_just_passed_the_hot_ones() {
        let steady = FillSpec {
            keys: 100,
            reads: 400,
            ..FillSpec::default()
        };
        assert_eq!(steady.key_of(399, 1), 1);
        let drifting = FillSpec {
            drift: true,
            ..steady
        };
        assert_eq!(drifting.key_of(0, 1), 1);
        assert_eq!(drifting.key_of(200, 1), 51, "half the reads: half the keys on");
        assert_eq!(drifting.key_of(200, 3), 49, "the next hottest just behind");
        assert_eq!(drifting.key_of(0, 2), 100, "wraps around");
        assert_eq!(drifting.key_of(399, 100), 1);
    }

    #[test]
    fn fill_specs_are_bounded() {
        assert!(FillSpec::default().validate().is_ok());
        for bad in [
            FillSpec {
                keys: 0,
                ..FillSpec::default()
            },
            FillSpec {
                keys: 20_001,
                ..FillSpec::default()
            },
            FillSpec {
                value_bytes: 1 << 20,
                ..FillSpec::default()
            },
            FillSpec {
                reads: 50_001,
                ..FillSpec::default()
            },
            FillSpec {
                skew: f64::NAN,
                ..FillSpec::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
