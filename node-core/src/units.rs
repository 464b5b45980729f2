//! Sizes and rates as people write them: `1.5GB`, `300MB`, `2GiB`, `10Mbit`, `500kbit`, or
//! a multiplier of the default such as `0.5x`.

/// Parses a size in bytes; `default` is what a multiplier scales.
pub fn parse_size(s: &str, default: u64) -> Result<u64, String> {
    parse(
        s,
        default,
        &[
            ("gib", 1u64 << 30),
            ("mib", 1 << 20),
            ("kib", 1 << 10),
            ("gb", 1_000_000_000),
            ("mb", 1_000_000),
            ("kb", 1_000),
            ("b", 1),
        ],
        "a size such as 1.5GB, 300MB or 0.5x",
    )
}

/// Parses a rate in bits per second; `default` is what a multiplier scales.
pub fn parse_rate(s: &str, default: u64) -> Result<u64, String> {
    parse(
        s,
        default,
        &[
            ("gbit", 1_000_000_000u64),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
            ("bit", 1),
        ],
        "a rate such as 10Mbit, 500kbit or 0.5x",
    )
}

fn parse(s: &str, default: u64, units: &[(&str, u64)], what: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not {what}");
    let lower = s.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower.strip_suffix('x') {
        (n, default as f64)
    } else {
        units
            .iter()
            .find_map(|(suffix, mult)| lower.strip_suffix(suffix).map(|n| (n, *mult as f64)))
            .unwrap_or((lower.as_str(), 1.0))
    };
    let number = number.trim();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let total = value * scale;
    if !total.is_finite() || total < 1.0 || total > (1u64 << 53) as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_parse_as_written() {
        assert_eq!(parse_size("1.5GB", 0), Ok(1_500_000_000));
        assert_eq!(parse_size("300MB", 0), Ok(300_000_000));
        assert_eq!(parse_size("2GiB", 0), Ok(2 << 30));
        assert_eq!(parse_size("4096", 0), Ok(4096));
        assert_eq!(parse_size("0.2x", 1_500_000_000), Ok(300_000_000));
        assert_eq!(parse_rate("10Mbit", 0), Ok(10_000_000));
        assert_eq!(parse_rate("0.5X", 10_000_000), Ok(5_000_000));
        assert_eq!(parse_rate("500kbit", 0), Ok(500_000));
        for bad in [
            "",
            "x",
            "-1GB",
            "1e9",
            "GB",
            "1.5 parsecs",
            "0",
            "0x",
            "nan",
            "1..2MB",
        ] {
            assert!(parse_size(bad, 100).is_err(), "{bad}");
        }
        assert!(parse_rate("99999999999Gbit", 0).is_err());
    }
}
