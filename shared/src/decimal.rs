//! Decimal numbers typed into the page's forms ("1.5", "0.25", "-2").
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
    let digits = whole.len() + fraction.len();
    let all_digits = whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit());
    if digits == 0 || digits > MAX_DIGITS || !all_digits {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_forms_hold_as_str_parse_does() {
        for text in [
            "0", "1", "1.0", "0.1", "0.25", "2.5", "10", " 4 ", "-2", "+3", "1.", ".5", "0.30",
            "123456789012345", "0.00000000000001", "99999.9999999999", "0.1234567890123",
            "7.7", "1.15", "3.3333", "-0.0",
        ] {
            let expected: f64 = text.trim().parse().unwrap();
            let got = parse(text).unwrap_or_else(|| panic!("{text:?} refused"));
            assert_eq!(got.to_bits(), expected.to_bits(), "{text:?}");
        }
    }

    /// Every decimal of up to 7 digits with the point anywhere (and some
    /// longer ones): bit for bit the standard parser's answer.
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
            "", " ", "-", "+", ".", "1e3", "inf", "NaN", "1,5", "1.2.3", "0x10", "--1", "1 2",
            "1234567890123456", "٣",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
