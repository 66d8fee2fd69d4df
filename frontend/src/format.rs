//! How the UI shows times, ratios and commands. Plain functions, tested
//! natively. Numbers are written with integer arithmetic or
//! [`shared::decimal::fixed`], never `f64`'s `Display` (see there why).

use shared::decimal::fixed;

/// `n / d` rounded half up (without overflow, even near `u64::MAX`).
fn div_round(n: u64, d: u64) -> u64 {
    n / d + u64::from(n % d >= d - d / 2)
}

/// `hundredths` as `1.24`.
fn two_places(hundredths: u64) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// `tenths` as `101.3`.
fn one_place(tenths: u64) -> String {
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// A duration in microseconds, in the unit a person reads most easily:
/// `850 µs`, `1.24 ms`, `101.3 ms`, `2.50 s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=9_999 => format!("{} ms", two_places(div_round(us, 10))),
        10_000..=999_999 => format!("{} ms", one_place(div_round(us, 100))),
        _ => format!("{} s", two_places(div_round(us, 10_000))),
    }
}

/// A ratio from 0 to 1 as a percentage with one decimal.
pub fn percent(ratio: f64) -> String {
    format!("{}%", fixed(ratio * 100.0, 1))
}

/// A size in bytes, in KB up to a MB and in MB above (1,024 each).
pub fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{} MB", one_place(div_round(n.saturating_mul(10), 1 << 20)))
    } else {
        format!("{} KB", div_round(n, 1024))
    }
}

/// How many times faster `fast` is than `slow`, such as `×96`.
pub fn speedup(slow_us: u64, fast_us: u64) -> Option<String> {
    if fast_us == 0 || slow_us == 0 {
        return None;
    }
    Some(if slow_us >= fast_us.saturating_mul(10) {
        format!("×{}", div_round(slow_us, fast_us))
    } else {
        format!("×{}", one_place(div_round(slow_us.saturating_mul(10), fast_us)))
    })
}

/// Shortens `text` to at most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A speed factor as shown on its button: `0.25×`, `1×`, `4×`.
pub fn speed(factor: f64) -> String {
    format!("{}×", shared::decimal::trimmed(factor, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(micros(0), "0 µs");
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(1_240), "1.24 ms");
        assert_eq!(micros(101_300), "101.3 ms");
        assert_eq!(micros(2_500_000), "2.50 s");
        assert_eq!(micros(9_999), "10.00 ms", "rounded, as the unit says");
        assert_eq!(micros(999_960), "1000.0 ms");
    }

    #[test]
    fn sizes_in_kilobytes_and_megabytes() {
        assert_eq!(bytes(0), "0 KB");
        assert_eq!(bytes(1_536), "2 KB");
        assert_eq!(bytes(1 << 20), "1.0 MB");
        assert_eq!(bytes(5 * (1 << 20) / 2), "2.5 MB");
        // No overflow at the far end: rounded, not wrapped to zero.
        assert_eq!(micros(u64::MAX), "18446744073709.55 s");
        assert!(bytes(u64::MAX).ends_with(" MB"));
        assert_eq!(div_round(u64::MAX, 2), 1 << 63);
        assert_eq!((div_round(5, 10), div_round(4, 10), div_round(15, 10)), (1, 0, 2));
    }

    #[test]
    fn ratios_and_speedups() {
        assert_eq!(percent(0.8), "80.0%");
        assert_eq!(speedup(101_000, 1_000).as_deref(), Some("×101"));
        assert_eq!(speedup(3_000, 2_000).as_deref(), Some("×1.5"));
        assert_eq!(speedup(10_000, 1_000).as_deref(), Some("×10"));
        assert_eq!(speedup(9_990, 1_000).as_deref(), Some("×10.0"));
        assert_eq!(speedup(0, 1), None);
    }

    #[test]
    fn truncation_keeps_short_text_and_marks_cuts() {
        assert_eq!(truncate("GET k", 10), "GET k");
        assert_eq!(truncate("GET cache:default:user:42", 10), "GET cache…");
        assert_eq!(speed(0.25), "0.25×");
        assert_eq!(speed(1.0), "1×");
    }
}
