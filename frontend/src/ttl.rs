//! TTLs compared across keys (tutorial section 4.6): the longest TTL left
//! per kind of key, how far apart kinds are, and what the related-keys
//! experiment showed, in words. Plain Rust, tested natively.

use shared::{KeyReport, RelatedResult, RelatedSpec};

/// The keys of one kind (the part of the key before its first `:`).
#[derive(Clone, Debug, PartialEq)]
pub struct KindTtl {
    pub kind: String,
    pub keys: usize,
    /// The longest TTL left among them, in milliseconds (close to the TTL
    /// they are given, for the freshest key); `None` if none has a TTL.
    pub longest_ms: Option<u64>,
}

/// The report's keys by kind, in order of kind.
pub fn by_kind(report: &KeyReport) -> Vec<KindTtl> {
    let mut groups: Vec<KindTtl> = Vec::new();
    for key in &report.keys {
        let kind = key.key.split(':').next().unwrap_or_default().to_string();
        let group = match groups.iter_mut().find(|g| g.kind == kind) {
            Some(group) => group,
            None => {
                groups.push(KindTtl {
                    kind,
                    keys: 0,
                    longest_ms: None,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.keys += 1;
        group.longest_ms = group.longest_ms.max(key.ttl_ms);
    }
    groups.sort_by(|a, b| a.kind.cmp(&b.kind));
    groups
}

/// How far apart the kinds' TTLs are, as a share of the longest (`None`
/// with fewer than two kinds that have TTLs).
pub fn spread(groups: &[KindTtl]) -> Option<f64> {
    let ttls: Vec<u64> = groups.iter().filter_map(|g| g.longest_ms).collect();
    if ttls.len() < 2 {
        return None;
    }
    let (short, long) = (*ttls.iter().min()?, *ttls.iter().max()?);
    Some((long - short) as f64 / long.max(1) as f64)
}

/// The related-keys experiment in words.
pub fn related_story(r: &RelatedResult) -> String {
    let price = |cents: u64| format!("{}.{:02}", cents / 100, cents % 100);
    let mut text = format!(
        "Price {} → {}, stock {} → {}, written to the database only. ",
        price(r.before.0),
        price(r.after.0),
        r.before.1,
        r.after.1
    );
    if r.mismatched_ms > 0 {
        text.push_str(&format!(
            "For about {} s a reader saw one key changed and not the other (a new price with the old stock, or the reverse). ",
            shared::decimal::fixed(r.mismatched_ms as f64 / 1000.0, 1)
        ));
    } else {
        text.push_str("Both keys showed the change together. ");
    }
    text.push_str(&format!(
        "TTL spread {} %{}",
        shared::decimal::fixed(r.spread * 100.0, 0),
        if r.flagged {
            format!(
                ": over {} %, the alert for related keys. Give them one TTL, or cache them as one value.",
                shared::decimal::fixed(RelatedSpec::SPREAD_ALERT * 100.0, 0)
            )
        } else {
            ".".to_string()
        }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{KeyInfo, RelatedSample};

    fn key(name: &str, ttl_ms: Option<u64>) -> KeyInfo {
        KeyInfo {
            key: name.into(),
            redis_type: "string".into(),
            ttl_ms,
            bytes: None,
            idle_secs: None,
            frequency: None,
        }
    }

    #[test]
    fn kinds_are_grouped_and_their_spread_measured() {
        let report = KeyReport {
            keys: vec![
                key("user:1", Some(50_000)),
                key("user:2", Some(59_000)),
                key("product:7", Some(9_000)),
                key("blob:1", None),
            ],
            without_ttl: 1,
            truncated: false,
            policy: None,
            at_ms: 0,
        };
        let groups = by_kind(&report);
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.kind.as_str(), g.keys, g.longest_ms))
                .collect::<Vec<_>>(),
            [
                ("blob", 1, None),
                ("product", 1, Some(9_000)),
                ("user", 2, Some(59_000))
            ]
        );
        let spread = spread(&groups).unwrap();
        assert!((spread - 50.0 / 59.0).abs() < 1e-9, "{spread}");
        assert_eq!(super::spread(&groups[..2]), None, "one kind with a TTL");
    }

    #[test]
    fn the_related_keys_story_names_the_mismatch_and_the_alert() {
        let result = RelatedResult {
            spec: RelatedSpec {
                id: 7,
                price_ttl_ms: 1_000,
                stock_ttl_ms: 4_000,
            },
            before: (1_999, 40),
            after: (2_099, 45),
            samples: vec![RelatedSample {
                at_ms: 0,
                price_new: false,
                stock_new: false,
            }],
            mismatched_ms: 3_000,
            spread: 0.75,
            flagged: true,
        };
        let text = related_story(&result);
        assert!(text.starts_with("Price 19.99 → 20.99, stock 40 → 45"), "{text}");
        assert!(
            text.contains("For about 3.0 s a reader saw one key changed"),
            "{text}"
        );
        assert!(text.contains("TTL spread 75 %: over 50 %"), "{text}");
        let calm = RelatedResult {
            mismatched_ms: 0,
            spread: 0.0,
            flagged: false,
            ..result
        };
        assert!(related_story(&calm).contains("Both keys showed the change together. TTL spread 0 %."));
    }
}
