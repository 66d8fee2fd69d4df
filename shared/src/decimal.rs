//! Decimal numbers typed into the page's forms ("1.5", "0.25", "-2"), and
//! numbers the page writes with a fixed number of decimals.
//!
//! Both without the standard library's float code, which is large in the
//! page's WebAssembly: [`fixed`] writes what `format!("{x:.1}")` would
//! (without `f64`'s `Display`: its two formatting algorithms, their tables
//! and big-number arithmetic, about 15 KB).
//!
//! The page reads a few such fields (a herd's XFetch beta, a skew, a TTL in
//! seconds). `str::parse::<f64>` would bring the standard library's general
//! float parser into the WebAssembly, with its 10 KB table of powers of
//! five, for inputs that are never more than a few digits. This reads plain
//! decimals only, and gives the same `f64` as `str::parse` for every input
//! it accepts (a test compares them): with at most 15 significant digits
//! the digits make an integer that `f64` holds exactly, and one division
//! by an exact power of ten rounds once, correctly.

/// The most digits a number may have (integer and fraction together).
pub const MAX_DIGITS: usize = 15;

/// Reads `text` (surrounding spaces allowed) as a plain decimal: an
/// optional sign, digits, and optionally a point and more digits, at least
/// one digit in all and at most [`MAX_DIGITS`]. `None` for anything else:
/// exponents, `inf`, `NaN`, commas, or more digits than that.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (unsigned, ""),
    };
    let all_digits = whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !all_digits {
        return None;
    }
    // Zeros before the number and after its last decimal change nothing:
    // they do not count against the limit.
    let (whole, fraction) = (whole.trim_start_matches('0'), fraction.trim_end_matches('0'));
    if whole.len() + fraction.len() > MAX_DIGITS {
        return None;
    }
    // Every digit of both parts as one integer: below 10^15 < 2^53, exact.
    let mantissa = whole
        .bytes()
        .chain(fraction.bytes())
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    // 10^k for k ≤ 15 is exact too, so the division rounds once.
    let scale = 10u64.pow(fraction.len() as u32);
    let magnitude = mantissa as f64 / scale as f64;
    Some(if negative { -magnitude } else { magnitude })
}

/// `value` with `decimals` digits after the point (at most 15), as
/// `format!("{value:.decimals$}")` writes it for the page's numbers, with
/// these differences:
/// - at a decimal half (`0.125` to two places, `0.15` to one) this rounds
///   the decimal away from zero (`0.13`, `0.2`); the standard library
///   rounds the binary value, which may lie on either side (`0.12`, `0.1`);
/// - a negative number that rounds to zero is written without its sign
///   (`0.0`, not `-0.0`);
/// - exact while `value × 10^decimals` stays below 2^53 (9 × 10^15); above,
///   the last digits may differ, and above 2^64 the number saturates.
///
/// `NaN`, `inf` and `-inf` as there.
pub fn fixed(value: f64, decimals: u32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let decimals = decimals.min(15);
    let scale = 10u64.pow(decimals);
    let scaled = (value.abs() * scale as f64).round();
    // `scaled` is a whole number, so the conversion is exact up to 2^64;
    // beyond that (far beyond anything the page shows) it saturates.
    let scaled = scaled as u64;
    let sign = if value < 0.0 && scaled != 0 { "-" } else { "" };
    let (whole, fraction) = (scaled / scale, scaled % scale);
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction:0width$}", width = decimals as usize)
    }
}

/// [`fixed`] without the trailing zeros (and without a trailing point):
/// `0.25`, `1`, `2.5`.
pub fn trimmed(value: f64, decimals: u32) -> String {
    let text = fixed(value, decimals);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_forms_hold_as_str_parse_does() {
        for text in [
            "0",
            "1",
            "1.0",
            "0.1",
            "0.25",
            "2.5",
            "10",
            " 4 ",
            "-2",
            "+3",
            "1.",
            ".5",
            "0.30",
            "123456789012345",
            "0.00000000000001",
            "99999.9999999999",
            "0.1234567890123",
            "7.7",
            "1.15",
            "3.3333",
            "-0.0",
            "0.1000000000000000",
            "000000000000001.5",
            "9.99999999999999",
            "0.123456789012345",
        ] {
            let expected: f64 = text.trim().parse().unwrap();
            let got = parse(text).unwrap_or_else(|| panic!("{text:?} refused"));
            assert_eq!(got.to_bits(), expected.to_bits(), "{text:?}");
        }
    }

    /// Every number below 1,000 and a spread up to 7 digits, each with the
    /// point at every place: bit for bit the standard parser's answer.
    #[test]
    fn agrees_with_str_parse_across_many_decimals() {
        let mut checked = 0;
        let mut n: u64 = 1;
        while n < 10_000_000 {
            let digits = n.to_string();
            for point in 0..=digits.len() {
                let text = format!("{}.{}", &digits[..point], &digits[point..]);
                let expected: f64 = text.parse().unwrap();
                assert_eq!(parse(&text).map(f64::to_bits), Some(expected.to_bits()), "{text}");
                checked += 1;
            }
            // Every number below 1,000, then a spread above it.
            n = if n < 1_000 { n + 1 } else { n * 3 + 7 };
        }
        assert!(checked > 3_000, "{checked}");
    }

    #[test]
    fn refuses_anything_but_a_plain_decimal() {
        for text in [
            "",
            " ",
            "-",
            "+",
            ".",
            "1e3",
            "inf",
            "NaN",
            "1,5",
            "1.2.3",
            "0x10",
            "--1",
            "1 2",
            "1234567890123456",
            "0.1234567890123456",
            "٣",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// Away from exact halves, the same text as `format!` (which the page
    /// no longer calls): a spread of values, each to 0 to 3 decimals.
    #[test]
    fn fixed_writes_what_format_writes() {
        let mut checked = 0;
        let mut magnitude = 0.000_731_f64;
        while magnitude < 1.0e6 {
            for value in [magnitude, -magnitude] {
                for decimals in 0..=3u32 {
                    let scaled = value.abs() * 10f64.powi(decimals as i32);
                    if (scaled - scaled.trunc() - 0.5).abs() < 1e-6 {
                        continue; // an exact half: the documented difference
                    }
                    let expected = format!("{value:.prec$}", prec = decimals as usize);
                    // A negative that rounds to zero is written "0" here, "-0" there.
                    let zero = expected
                        .trim_start_matches('-')
                        .bytes()
                        .all(|b| b == b'0' || b == b'.');
                    let expected = if zero {
                        expected.trim_start_matches('-').to_string()
                    } else {
                        expected
                    };
                    assert_eq!(fixed(value, decimals), expected, "{value} to {decimals}");
                    checked += 1;
                }
            }
            magnitude = magnitude * 1.37 + 0.0173;
        }
        for (value, decimals) in [(0.0, 1), (101.3, 1), (0.8 * 100.0, 1), (-2.26, 1)] {
            assert_eq!(
                fixed(value, decimals),
                format!("{value:.prec$}", prec = decimals as usize)
            );
        }
        assert_eq!(fixed(-0.04, 1), "0.0", "no sign on a zero");
        assert!(checked > 100, "{checked}");
        assert_eq!(fixed(f64::NAN, 1), "NaN");
        assert_eq!(fixed(f64::INFINITY, 2), "inf");
        assert_eq!(fixed(0.125, 2), "0.13", "a half rounds away from zero");
    }

    #[test]
    fn trimmed_drops_trailing_zeros() {
        assert_eq!(trimmed(0.25, 2), "0.25");
        assert_eq!(trimmed(1.0, 2), "1");
        assert_eq!(trimmed(2.5, 2), "2.5");
        assert_eq!(trimmed(10.0, 2), "10");
        assert_eq!(trimmed(0.0, 2), "0");
    }
}
