//! Settings an operator may change while the tracker runs: the points rate and the points a
//! new account starts with. Read on every use, so a change applies to the next heartbeat
//! batch and the next sign-up.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live settings, shared by the API, the web app and the heartbeat writer.
#[derive(Debug)]
pub struct Settings {
    signup_points: AtomicU64,
    bytes_per_point: AtomicU64,
}

impl Settings {
    /// Settings starting at these values (`bytes_per_point` at least 1).
    pub fn new(signup_points: u64, bytes_per_point: u64) -> Settings {
        Settings {
            signup_points: AtomicU64::new(signup_points),
            bytes_per_point: AtomicU64::new(bytes_per_point.max(1)),
        }
    }

    /// Points a new account starts with.
    pub fn signup_points(&self) -> u64 {
        self.signup_points.load(Ordering::Relaxed)
    }

    /// Credited bytes per point earned.
    pub fn bytes_per_point(&self) -> u64 {
        self.bytes_per_point.load(Ordering::Relaxed)
    }

    /// Changes the points a new account starts with.
    pub fn set_signup_points(&self, points: u64) {
        self.signup_points.store(points, Ordering::Relaxed);
    }

    /// Changes the points rate (at least 1 byte per point).
    pub fn set_bytes_per_point(&self, bytes: u64) {
        self.bytes_per_point.store(bytes.max(1), Ordering::Relaxed);
    }
}
