//! Log-in rate limiting: failed attempts are counted per account name and per client
//! address in a sliding window; past the limit, log-ins are refused until the window has
//! room again, even with the right password.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits on failed log-ins.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Failures allowed per account name within `window`.
    pub per_account: usize,
    /// Failures allowed per client address within `window`.
    pub per_address: usize,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            per_account: 5,
            per_address: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Failed log-ins in the current window.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_account: HashMap<String, VecDeque<Instant>>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

/// How long until `times` has room for one more within `limit`, if it has none now.
fn wait_for_room(
    times: Option<&VecDeque<Instant>>,
    limit: usize,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    let times = times?;
    let recent: Vec<&Instant> = times
        .iter()
        .filter(|t| now.duration_since(**t) < window)
        .collect();
    if recent.len() < limit {
        return None;
    }
    let oldest_that_counts = recent[recent.len() - limit];
    Some(window.saturating_sub(now.duration_since(*oldest_that_counts)))
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> LoginLimiter {
        LoginLimiter {
            limits,
            failures: Mutex::default(),
        }
    }

    /// Counts an attempt for `account` from `address` before it is checked, so that
    /// concurrent attempts cannot all slip past the limit; `Err` says how long the lock-out
    /// lasts. A successful log-in gives the attempt back with [`LoginLimiter::succeeded`].
    pub fn attempt(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        if let Some(wait) = self.locked_for(account, address) {
            return Err(wait);
        }
        self.failed(account, address);
        Ok(())
    }

    /// If log-ins for `account` from `address` are locked out, for how much longer.
    fn locked_for(&self, account: &str, address: IpAddr) -> Option<Duration> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let l = self.limits;
        let a = wait_for_room(
            f.by_account.get(&account.to_lowercase()),
            l.per_account,
            l.window,
            now,
        );
        let b = wait_for_room(f.by_address.get(&address), l.per_address, l.window, now);
        a.max(b)
    }

    /// Records a failed log-in.
    pub fn failed(&self, account: &str, address: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let window = self.limits.window;
        let push = |q: &mut VecDeque<Instant>| {
            q.retain(|t| now.duration_since(*t) < window);
            q.push_back(now);
        };
        push(f.by_account.entry(account.to_lowercase()).or_default());
        push(f.by_address.entry(address).or_default());
        // Keep the maps from growing without bound under a spray of names.
        if f.by_account.len() > 100_000 {
            f.by_account
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        if f.by_address.len() > 100_000 {
            f.by_address
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
    }

    /// Clears an account's failures after a successful log-in, and gives back the address's
    /// attempt.
    pub fn succeeded(&self, account: &str, address: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.by_account.remove(&account.to_lowercase());
        if let Some(q) = f.by_address.get_mut(&address) {
            q.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_an_account_after_its_limit_and_frees_it_after_success() {
        let limiter = LoginLimiter::new(LoginLimits {
            per_account: 3,
            per_address: 100,
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..2 {
            limiter.failed("Alice", ip);
        }
        assert!(limiter.locked_for("alice", ip).is_none());
        limiter.failed("alice", ip);
        let wait = limiter.locked_for("ALICE", ip).unwrap();
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60));
        assert!(limiter.locked_for("bob", ip).is_none());
        limiter.succeeded("alice", ip);
        assert!(limiter.locked_for("alice", ip).is_none());
    }

    #[test]
    fn locks_an_address_that_sprays_names() {
        let limiter = LoginLimiter::new(LoginLimits {
            per_account: 3,
            per_address: 4,
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = "::1".parse().unwrap();
        for i in 0..4 {
            limiter.failed(&format!("user{i}"), ip);
        }
        assert!(limiter.locked_for("someone-else", ip).is_some());
        assert!(
            limiter
                .locked_for("someone-else", "127.0.0.2".parse().unwrap())
                .is_none()
        );
    }
}
