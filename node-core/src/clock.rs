//! The wall clock in the units the tracker's tables and the tickets use: one helper instead
//! of a `SystemTime::now().duration_since(UNIX_EPOCH)` in every module.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_units_tell_the_same_time() {
        let (ms, s) = (super::unix_ms(), super::unix_secs() as i64);
        assert!((ms / 1000 - s).abs() <= 1, "{ms} ms vs {s} s");
        assert!(s > 1_700_000_000, "the clock reads {s}");
    }
}
