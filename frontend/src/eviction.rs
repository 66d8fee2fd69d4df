//! The eviction lab's results in words: what Redis did when a fill went
//! past `maxmemory`, and which of the page's fills kept the most hits.
//! Plain Rust, tested natively.

use shared::FillResult;

use crate::format;

/// What one fill showed, in a sentence or two.
pub fn story(r: &FillResult) -> String {
    let policy = r.memory.policy;
    let limit = format::bytes(r.memory.maxmemory_kb * 1024);
    let reads = match r.hit_ratio() {
        Some(ratio) => format!(
            " The {} reads after the fill hit {}.",
            r.hits + r.misses,
            format::percent(ratio)
        ),
        None => String::new(),
    };
    if r.store_failures > 0 && r.evicted == 0 {
        let why = if policy.volatile_only() && !r.spec.with_ttl {
            format!(
                "{} evicts only keys with a TTL, and no key had one",
                policy.name()
            )
        } else {
            format!("{} evicts nothing", policy.name())
        };
        let refused = if r.stored == 0 {
            format!("every one of the {} stores", r.store_failures)
        } else {
            format!("{} of {} stores", r.store_failures, r.stored + r.store_failures)
        };
        return format!(
            "Memory filled up at {limit} and stayed full: {why}, so Redis refused {refused} (out of memory). Every read still answered, from the database when the value could not be kept.{reads}"
        );
    }
    if r.evicted > 0 {
        return format!(
            "Redis evicted {} keys to stay under {limit} ({}); {} of the {} keys are left.{reads}",
            r.evicted,
            policy.name(),
            r.keys_left.min(r.spec.keys),
            r.spec.keys
        );
    }
    format!(
        "Everything fitted under {limit}: nothing was evicted or refused. Fill more keys, or bigger ones, to see {} at work.{reads}",
        policy.name()
    )
}

/// The index of the fill with the highest hit ratio among those run with
/// the same workload as the latest one (and more than one of them), to
/// point at the policy that kept the hot keys best.
pub fn best_for_latest(fills: &[FillResult]) -> Option<usize> {
    let latest = fills.last()?;
    let same: Vec<usize> = (0..fills.len())
        .filter(|&i| fills[i].spec == latest.spec && fills[i].hit_ratio().is_some())
        .collect();
    if same.len() < 2 {
        return None;
    }
    same.into_iter().max_by(|&a, &b| {
        let ratio = |i: usize| fills[i].hit_ratio().unwrap_or(0.0);
        ratio(a).total_cmp(&ratio(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{EvictionPolicy, FillSpec, MemorySettings};

    fn result(policy: EvictionPolicy, with_ttl: bool) -> FillResult {
        FillResult {
            spec: FillSpec {
                with_ttl,
                ..FillSpec::default()
            },
            memory: MemorySettings {
                policy,
                ..MemorySettings::default()
            },
            stored: 3_000,
            store_failures: 0,
            hits: 12_000,
            misses: 4_000,
            fallbacks: 0,
            evicted: 0,
            keys_left: 2_900,
            used_memory: 4 << 20,
            duration_ms: 900,
        }
    }

    #[test]
    fn a_volatile_policy_with_no_ttl_is_explained() {
        let r = FillResult {
            store_failures: 5_000,
            ..result(EvictionPolicy::VolatileLru, false)
        };
        let text = story(&r);
        assert!(
            text.contains("volatile-lru evicts only keys with a TTL"),
            "{text}"
        );
        assert!(text.contains("refused 5000 of 8000 stores"), "{text}");
        let r = FillResult {
            store_failures: 5_000,
            ..result(EvictionPolicy::Noeviction, true)
        };
        assert!(story(&r).contains("noeviction evicts nothing"));
        let r = FillResult {
            stored: 0,
            store_failures: 4_000,
            ..result(EvictionPolicy::Noeviction, true)
        };
        assert!(
            story(&r).contains("refused every one of the 4000 stores"),
            "{}",
            story(&r)
        );
    }

    #[test]
    fn evictions_and_the_hit_ratio_are_told() {
        let r = FillResult {
            evicted: 5_100,
            ..result(EvictionPolicy::AllkeysLru, false)
        };
        let text = story(&r);
        assert!(
            text.contains("evicted 5100 keys to stay under 4.0 MB (allkeys-lru)"),
            "{text}"
        );
        assert!(text.contains("2900 of the 8000 keys are left"), "{text}");
        assert!(text.contains("16000 reads after the fill hit 75.0%"), "{text}");
        assert!(story(&result(EvictionPolicy::AllkeysLru, false)).contains("Everything fitted"));
    }

    #[test]
    fn the_best_policy_is_picked_among_fills_of_the_same_workload() {
        let lru = result(EvictionPolicy::AllkeysLru, false);
        let lfu = FillResult {
            hits: 13_000,
            misses: 3_000,
            ..result(EvictionPolicy::AllkeysLfu, false)
        };
        let other_workload = FillResult {
            hits: 15_000,
            misses: 1_000,
            spec: FillSpec {
                keys: 100,
                ..FillSpec::default()
            },
            ..lru.clone()
        };
        assert_eq!(
            best_for_latest(std::slice::from_ref(&lru)),
            None,
            "nothing to compare"
        );
        assert_eq!(
            best_for_latest(&[other_workload, lfu.clone(), lru.clone()]),
            Some(1)
        );
        assert_eq!(best_for_latest(&[lfu, lru]), Some(0));
    }
}
