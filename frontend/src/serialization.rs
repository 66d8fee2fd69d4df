//! The serialization comparison in words: which encoding made the smallest
//! entry and the cheapest hit, and what the padding cost. Plain Rust,
//! tested natively.

use shared::{EncodingComparison, EncodingRow, ValueEncoding};

use crate::format;

/// The comparison's lesson, in a sentence or two.
pub fn summary(c: &EncodingComparison) -> String {
    let (Some(smallest), Some(quickest), Some(json)) = (
        c.rows.iter().min_by_key(|r| r.bytes),
        c.cheapest_hit(),
        c.rows.iter().find(|r| r.encoding == ValueEncoding::Json),
    ) else {
        return String::new();
    };
    let mut text = format!(
        "Smallest entry: {} ({} bytes, {} of JSON's). Cheapest hit: {} ({} for the GET and the decoding).",
        smallest.encoding.label(),
        smallest.bytes,
        format::percent(smallest.bytes as f64 / json.bytes.max(1) as f64),
        quickest.encoding.label(),
        format::micros(quickest.hit_us().round() as u64),
    );
    if json.bytes <= c.compress_above_bytes {
        text.push_str(&format!(
            " Under {} bytes nothing is gzipped: small values are not worth the CPU. Pad the record to see what compression saves, and what it costs.",
            c.compress_above_bytes
        ));
    }
    text
}

/// A duration in nanoseconds, as people read it.
pub fn nanos(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else {
        format::micros(ns / 1_000)
    }
}

/// The row of `encoding`, if measured.
pub fn row(c: &EncodingComparison, encoding: ValueEncoding) -> Option<&EncodingRow> {
    c.rows.iter().find(|r| r.encoding == encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Kind;

    fn comparison(json: u64, pack: u64, gzip: u64) -> EncodingComparison {
        let row = |encoding, bytes, get_us| EncodingRow {
            encoding,
            bytes,
            encode_ns: 900,
            decode_ns: 2_000,
            get_us,
        };
        EncodingComparison {
            kind: Kind::Users,
            id: 42,
            padding_bytes: 0,
            compress_above_bytes: 1_024,
            rows: vec![
                row(ValueEncoding::Json, json, 90),
                row(ValueEncoding::MessagePack, pack, 80),
                row(ValueEncoding::CompressedJson, gzip, 95),
            ],
        }
    }

    #[test]
    fn small_records_say_gzip_did_not_apply() {
        let text = summary(&comparison(300, 200, 300));
        assert!(
            text.starts_with("Smallest entry: MessagePack (200 bytes, 66.7% of JSON's)"),
            "{text}"
        );
        assert!(text.contains("Cheapest hit: MessagePack (82 µs"), "{text}");
        assert!(text.contains("Under 1024 bytes nothing is gzipped"), "{text}");
    }

    #[test]
    fn big_records_show_what_gzip_saves() {
        let text = summary(&comparison(100_000, 90_000, 3_000));
        assert!(
            text.starts_with("Smallest entry: JSON, gzipped when big (3000 bytes, 3.0% of JSON's)"),
            "{text}"
        );
        assert!(!text.contains("nothing is gzipped"), "{text}");
        assert_eq!(nanos(900), "900 ns");
        assert_eq!(nanos(2_500), "2 µs");
    }
}
