//! Log-in rate limiting that an attacker cannot aim at someone else: failed attempts are
//! counted per (account, address prefix) and per address prefix (IPv4 /32, IPv6 /64) in a
//! sliding window, so wrong passwords from elsewhere lock out only elsewhere. An account's
//! failures from all addresses together are counted too; past ten times the per-account
//! limit, only prefixes the account has logged in from before still get through.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rivulet_node_core::peer::limits::address_prefix;

/// Limits on failed log-ins.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Failures allowed per account name from one address prefix within `window`; from all
    /// prefixes together, ten times this (then only prefixes it logged in from pass).
    pub per_account: usize,
    /// Failures allowed per client address prefix (any account names) within `window`.
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

/// How long a prefix an account logged in from stays known to it.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Prefixes remembered per account.
const KNOWN_PER_ACCOUNT: usize = 16;

/// Keys kept per map before stale ones are swept.
const SWEEP_AT: usize = 100_000;

/// Failed log-ins in the current window.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_pair: HashMap<(String, IpAddr), VecDeque<Instant>>,
    by_account: HashMap<String, VecDeque<Instant>>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
    /// Prefixes each account has logged in from, oldest first.
    known: HashMap<String, VecDeque<(IpAddr, Instant)>>,
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

fn sweep<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    now: Instant,
    window: Duration,
) {
    if map.len() > SWEEP_AT {
        map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
    }
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
        let account = account.to_lowercase();
        let prefix = address_prefix(address);
        let pair = wait_for_room(
            f.by_pair.get(&(account.clone(), prefix)),
            l.per_account,
            l.window,
            now,
        );
        let from_there = wait_for_room(f.by_address.get(&prefix), l.per_address, l.window, now);
        let known = f.known.get(&account).is_some_and(|k| {
            k.iter()
                .any(|(p, at)| *p == prefix && now.duration_since(*at) < KNOWN_FOR)
        });
        let everywhere = if known {
            None
        } else {
            wait_for_room(
                f.by_account.get(&account),
                l.per_account.saturating_mul(10),
                l.window,
                now,
            )
        };
        pair.max(from_there).max(everywhere)
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
        let account = account.to_lowercase();
        let prefix = address_prefix(address);
        push(f.by_pair.entry((account.clone(), prefix)).or_default());
        push(f.by_account.entry(account).or_default());
        push(f.by_address.entry(prefix).or_default());
        // Keep the maps from growing without bound under a spray of names and addresses.
        sweep(&mut f.by_pair, now, window);
        sweep(&mut f.by_account, now, window);
        sweep(&mut f.by_address, now, window);
    }

    /// After a successful log-in: clears the account's failures from that prefix, gives
    /// back the attempt, and remembers the prefix as one the account uses.
    pub fn succeeded(&self, account: &str, address: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let account = account.to_lowercase();
        let prefix = address_prefix(address);
        f.by_pair.remove(&(account.clone(), prefix));
        if let Some(q) = f.by_account.get_mut(&account) {
            q.pop_back();
        }
        if let Some(q) = f.by_address.get_mut(&prefix) {
            q.pop_back();
        }
        let known = f.known.entry(account).or_default();
        known.retain(|(p, at)| *p != prefix && now.duration_since(*at) < KNOWN_FOR);
        known.push_back((prefix, now));
        while known.len() > KNOWN_PER_ACCOUNT {
            known.pop_front();
        }
        if f.known.len() > SWEEP_AT {
            f.known.retain(|_, k| {
                k.back()
                    .is_some_and(|(_, at)| now.duration_since(*at) < KNOWN_FOR)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_account: usize, per_address: usize) -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_account,
            per_address,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn locks_an_account_after_its_limit_and_frees_it_after_success() {
        let limiter = limiter(3, 100);
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
        let limiter = limiter(3, 4);
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

    #[test]
    fn a_stranger_locks_out_only_their_own_address() {
        let limiter = limiter(5, 20);
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let user: IpAddr = "198.51.100.4".parse().unwrap();
        for _ in 0..5 {
            limiter.failed("admin", attacker);
        }
        assert!(limiter.locked_for("admin", attacker).is_some());
        assert!(limiter.locked_for("admin", user).is_none());
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let limiter = limiter(3, 20);
        for i in 1..=3 {
            limiter.failed("alice", format!("2001:db8:7:7::{i}").parse().unwrap());
        }
        // Another address in the same /64 is the same attacker.
        assert!(
            limiter
                .locked_for("alice", "2001:db8:7:7:ffff::1".parse().unwrap())
                .is_some()
        );
        assert!(
            limiter
                .locked_for("alice", "2001:db8:7:8::1".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn a_spray_from_many_addresses_spares_the_addresses_the_user_logs_in_from() {
        let limiter = limiter(2, 20);
        let home: IpAddr = "198.51.100.4".parse().unwrap();
        limiter.attempt("alice", home).unwrap();
        limiter.succeeded("alice", home);
        for host in 1..=20u8 {
            limiter.failed("alice", IpAddr::from([203, 0, 113, host]));
        }
        // Twenty failures from twenty addresses: new addresses wait, home does not.
        assert!(
            limiter
                .locked_for("alice", "192.0.2.1".parse().unwrap())
                .is_some()
        );
        assert!(limiter.locked_for("alice", home).is_none());
    }
}
