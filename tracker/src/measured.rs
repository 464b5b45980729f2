//! Measured upload: what each cache has been seen to deliver, so placement and peer rates
//! trust a declared upload only as far as the cache has shown it. A cache starts trusted for
//! at most [`UNPROVEN_UPLOAD_BPS`]; each credited byte (a viewer's receipts, judged by the
//! ledger) feeds a meter, and the trusted rate is twice the best 10-second window of the
//! last 10 minutes, never above what the cache declared. An account that declares 10 Gbit/s
//! gets the share of an ordinary home cache until it really uploads more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The upload a cache is trusted with before it has shown any: the desktop app's default
/// (10 Mbit/s), so an honest default cache is never held back.
pub const UNPROVEN_UPLOAD_BPS: u64 = 10_000_000;
/// Room above the best measured window: demand that may go to a cache beyond what it has
/// shown, so an honest cache with more upload grows into it (doubling per window).
const HEADROOM: f64 = 2.0;
/// Length of one measuring window.
const WINDOW: Duration = Duration::from_secs(10);
/// How long the best window counts.
const PEAK_LIFE: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Meter {
    window_start: Instant,
    window_bytes: u64,
    /// Best closed window, bits per second, and when it closed.
    peak_bps: f64,
    peak_at: Instant,
}

/// Credited upload per cache.
#[derive(Debug, Default)]
pub struct Measured {
    meters: Mutex<HashMap<String, Meter>>,
}

impl Measured {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Meter>> {
        self.meters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `bytes` credited to `cache` at `now`.
    pub fn record(&self, cache: &str, bytes: u64, now: Instant) {
        if bytes == 0 {
            return;
        }
        let mut meters = self.lock();
        let meter = meters.entry(cache.to_owned()).or_insert(Meter {
            window_start: now,
            window_bytes: 0,
            peak_bps: 0.0,
            peak_at: now,
        });
        let elapsed = now.saturating_duration_since(meter.window_start);
        if elapsed >= WINDOW {
            let bps = meter.window_bytes as f64 * 8.0 / elapsed.as_secs_f64();
            if bps >= meter.peak_bps || now.saturating_duration_since(meter.peak_at) > PEAK_LIFE {
                meter.peak_bps = bps;
                meter.peak_at = now;
            }
            meter.window_start = now;
            meter.window_bytes = 0;
        }
        meter.window_bytes = meter.window_bytes.saturating_add(bytes);
    }

    /// The upload `cache` is trusted with, bits per second: at most `declared_bps`, at
    /// least the unproven allowance, and otherwise twice its best recent window.
    pub fn trusted_bps(&self, cache: &str, declared_bps: u64, now: Instant) -> u64 {
        let shown = self.lock().get(cache).map_or(0.0, |m| {
            if now.saturating_duration_since(m.peak_at) > PEAK_LIFE {
                0.0
            } else {
                m.peak_bps
            }
        });
        let trusted = (shown * HEADROOM).max(UNPROVEN_UPLOAD_BPS as f64);
        declared_bps.min(trusted as u64)
    }

    /// Forgets caches that are no longer live.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.lock().retain(|id, _| live(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_upload_counts_only_as_far_as_it_was_shown() {
        let m = Measured::default();
        let t0 = Instant::now();
        // Declared 10 Gbit/s, nothing shown: the unproven allowance.
        assert_eq!(m.trusted_bps("c", 10_000_000_000, t0), UNPROVEN_UPLOAD_BPS);
        // Below the allowance, the declared figure.
        assert_eq!(m.trusted_bps("c", 2_000_000, t0), 2_000_000);
        // 25 MB in one 10-second window = 20 Mbit/s shown: trusted up to 40 Mbit/s.
        m.record("c", 25_000_000, t0);
        m.record("c", 1, t0 + WINDOW);
        let t1 = t0 + WINDOW;
        assert_eq!(m.trusted_bps("c", 10_000_000_000, t1), 40_000_000);
        assert_eq!(m.trusted_bps("c", 30_000_000, t1), 30_000_000);
        // Another cache is not helped by it.
        assert_eq!(m.trusted_bps("d", 10_000_000_000, t1), UNPROVEN_UPLOAD_BPS);
        // The best window ages out.
        let late = t1 + PEAK_LIFE + Duration::from_secs(1);
        assert_eq!(
            m.trusted_bps("c", 10_000_000_000, late),
            UNPROVEN_UPLOAD_BPS
        );
        m.retain(|_| false);
        assert_eq!(m.trusted_bps("c", 10_000_000_000, t1), UNPROVEN_UPLOAD_BPS);
    }
}
