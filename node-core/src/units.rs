//! Sizes and rates as people write them (`1.5GB`, `300MB`, `2GiB`, `10Mbit`, `500kbit`, or
//! a multiplier of the default such as `0.5x`) and as people read them: the one formatter
//! the app, the web pages and the command lines share (`1.50 GB`, `3.20 Mbit/s`).

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

/// `v` in the largest unit that keeps it under 1000, with three significant digits.
fn three_digits(v: f64, units: &[&str]) -> String {
    let mut v = v;
    let mut unit = 0;
    while v >= 999.5 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", units[0])
    } else if v < 9.995 {
        format!("{v:.2} {}", units[unit])
    } else if v < 99.95 {
        format!("{v:.1} {}", units[unit])
    } else {
        format!("{v:.0} {}", units[unit])
    }
}

/// Bytes in decimal units with three significant digits: `999 B`, `3.00 kB`, `1.50 GB`.
pub fn format_bytes(n: u64) -> String {
    three_digits(n as f64, &["B", "kB", "MB", "GB", "TB", "PB", "EB"])
}

/// A rate in bits per second with three significant digits: `800 bit/s`, `3.20 Mbit/s`.
pub fn format_rate(bits_per_second: f64) -> String {
    three_digits(
        bits_per_second.max(0.0),
        &["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_read_with_three_digits() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(3000), "3.00 kB");
        assert_eq!(format_bytes(1_500_000_000), "1.50 GB");
        assert_eq!(format_bytes(99_960), "100 kB");
        assert_eq!(format_bytes(u64::MAX), "18.4 EB");
        assert_eq!(format_rate(3_200_000.0), "3.20 Mbit/s");
        assert_eq!(format_rate(-5.0), "0 bit/s");
    }

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
