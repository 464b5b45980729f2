//! The tracker checks before it trusts: after a cache registers, and then every
//! [`ReachConfig::every`], it connects back to each address the cache advertised, reads the
//! FTP greeting and logs in with a ticket it signs for itself (holder [`PROBE_HOLDER`], for
//! that cache's node id, allowing no chunk at all). A cache at somebody else's address refuses
//! that ticket (it names another server), so an address is only believed when the node that
//! registered it answers there. Unchecked and unreachable caches are neither placed nor given
//! to viewers, and get no origin tickets (when [`ReachConfig::require`] is on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet_node_core::clock::unix_secs;
use rivulet_node_core::net::probe;
use rivulet_node_core::task::Every;
use rivulet_node_core::ticket::{TicketClaims, TicketSigner};
use rivulet_tracker_client::{NodeInfo, NodeKind, Reach, ReachFailure, ReachState};
use sqlx::AnyPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::nodes;

/// The user name the probe logs in with: no node has it (node ids are `cache-…`/`viewer-…`).
pub const PROBE_HOLDER: &str = "reach-probe";
/// The movie a probe ticket names: none (no movie id is empty), and its index list is empty,
/// so a probe session can fetch nothing.
pub const PROBE_VIDEO: &str = "";
/// How long a probe ticket lasts.
const PROBE_TICKET_SECS: u64 = 60;
/// Time between a cache's registration and its first probe: it sets its node id on its
/// FTP server once the registration's answer arrives.
const FIRST_PROBE_AFTER: Duration = Duration::from_millis(250);

/// A cache checked this recently is not probed again on a peer's report.
pub const SUSPECT_GAP: Duration = Duration::from_secs(5);

/// How the probe runs.
#[derive(Clone, Copy, Debug)]
pub struct ReachConfig {
    /// Unchecked and unreachable caches are neither placed nor given to viewers.
    pub require: bool,
    /// Time between two probes of one cache.
    pub every: Duration,
    /// Time one address has to connect, greet and take the log-in.
    pub timeout: Duration,
}

impl Default for ReachConfig {
    fn default() -> ReachConfig {
        ReachConfig {
            require: true,
            every: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
struct Probed {
    reach: Reach,
    due: Instant,
    probing: bool,
}

/// What the probe found, per live cache, in memory (a restarted tracker probes again).
#[derive(Debug)]
pub struct Reachability {
    require: bool,
    caches: Mutex<HashMap<String, Probed>>,
    registered: Notify,
}

fn unchecked() -> Reach {
    Reach {
        state: ReachState::Unchecked,
        addr: String::new(),
        reason: None,
        detail: String::new(),
        checked_at: 0,
    }
}

impl Reachability {
    /// Nothing probed yet; `require`: see [`ReachConfig::require`].
    pub fn new(require: bool) -> Reachability {
        Reachability {
            require,
            caches: Mutex::default(),
            registered: Notify::new(),
        }
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, HashMap<String, Probed>> {
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cache registered: unchecked, probed shortly.
    pub fn registered(&self, node_id: &str) {
        self.caches().insert(
            node_id.to_owned(),
            Probed {
                reach: unchecked(),
                due: Instant::now() + FIRST_PROBE_AFTER,
                probing: false,
            },
        );
        self.registered.notify_one();
    }

    /// A peer said it could not connect to cache `node_id`: probe it now (unless it was
    /// checked within [`SUSPECT_GAP`] or is being checked), so a cache that died stops being
    /// handed out within seconds, and one that lives is not dropped on a peer's word.
    pub fn suspect(&self, node_id: &str) {
        let now = Instant::now();
        let mut caches = self.caches();
        let Some(p) = caches.get_mut(node_id) else {
            return;
        };
        let recent = unix_secs().saturating_sub(p.reach.checked_at) < SUSPECT_GAP.as_secs();
        if p.probing || recent || p.due <= now {
            return;
        }
        p.due = now;
        drop(caches);
        self.registered.notify_one();
    }

    /// What the probe found for cache `node_id` (`None`: not a cache it knows).
    pub fn reach(&self, node_id: &str) -> Option<Reach> {
        self.caches().get(node_id).map(|p| p.reach.clone())
    }

    /// Whether cache `node_id` may be placed, given to viewers and given origin tickets:
    /// probed reachable, or the tracker does not require it.
    pub fn allows(&self, node_id: &str) -> bool {
        !self.require
            || self
                .caches()
                .get(node_id)
                .is_some_and(|p| p.reach.state == ReachState::Reachable)
    }

    /// `nodes` with each cache's reach filled in.
    pub fn fill(&self, nodes: &mut [NodeInfo]) {
        let caches = self.caches();
        for n in nodes.iter_mut().filter(|n| n.kind == NodeKind::Cache) {
            n.reach = Some(
                caches
                    .get(&n.node_id)
                    .map_or_else(unchecked, |p| p.reach.clone()),
            );
        }
    }

    /// Forgets caches no longer live, adds live ones it did not know (due now), and takes
    /// out the ones due for a probe with their addresses.
    fn due(&self, live: &[NodeInfo], now: Instant) -> Vec<(String, Vec<String>, Option<String>)> {
        let mut caches = self.caches();
        // A cache that registered after `live` was read stays until its first probe.
        caches.retain(|id, p| {
            live.iter().any(|n| &n.node_id == id)
                || (p.reach.state == ReachState::Unchecked && !p.probing && p.due > now)
        });
        let mut due = Vec::new();
        for n in live.iter().filter(|n| n.kind == NodeKind::Cache) {
            let p = caches.entry(n.node_id.clone()).or_insert_with(|| Probed {
                reach: unchecked(),
                due: now,
                probing: false,
            });
            if !p.probing && p.due <= now {
                p.probing = true;
                let addrs = std::iter::once(n.advertise.clone())
                    .chain(n.addrs.iter().cloned())
                    .filter(|a| !a.is_empty())
                    .collect();
                due.push((n.node_id.clone(), addrs, n.fingerprint.clone()));
            }
        }
        due
    }

    fn found(&self, node_id: &str, reach: Reach, next: Instant) {
        if let Some(p) = self.caches().get_mut(node_id) {
            if p.reach.state != reach.state {
                tracing::info!(node = node_id, state = ?reach.state, detail = %reach.detail, "cache reachability");
            }
            p.reach = reach;
            p.due = next;
            p.probing = false;
        }
    }
}

/// The ticket the probe logs in to cache `node_id` with: holder [`PROBE_HOLDER`], movie
/// [`PROBE_VIDEO`], no index.
pub fn probe_ticket(signer: &TicketSigner, node_id: &str, now: u64) -> String {
    signer.issue(&TicketClaims {
        holder: PROBE_HOLDER.to_owned(),
        server: node_id.to_owned(),
        video: PROBE_VIDEO.to_owned(),
        expires_at: now + PROBE_TICKET_SECS,
        indices: Some(Vec::new()),
    })
}

/// Probes cache `node_id` at each of `addrs`. Reachable when one of them logs the probe in
/// and none is another cache (refusing the ticket: an address that is not this node's);
/// else unreachable, with the first address's failure.
pub async fn probe_cache(
    signer: &TicketSigner,
    node_id: &str,
    addrs: &[String],
    pin: Option<&str>,
    timeout: Duration,
) -> Reach {
    let ticket = probe_ticket(signer, node_id, unix_secs());
    let mut worked = None;
    let mut failures = Vec::new();
    for addr in addrs {
        match probe::probe(addr, PROBE_HOLDER, &ticket, pin, timeout).await {
            Ok(()) => {
                worked.get_or_insert_with(|| addr.clone());
            }
            Err(e) => failures.push((addr.clone(), e)),
        }
    }
    let foreign = failures
        .iter()
        .find(|(_, e)| e.reason == ReachFailure::LoginRefused);
    let checked_at = unix_secs();
    match (worked, foreign, failures.first()) {
        (Some(addr), None, _) => Reach {
            state: ReachState::Reachable,
            addr,
            reason: None,
            detail: String::new(),
            checked_at,
        },
        (_, Some((addr, e)), _) | (None, None, Some((addr, e))) => Reach {
            state: ReachState::Unreachable,
            addr: addr.clone(),
            reason: Some(e.reason),
            detail: e.detail.clone(),
            checked_at,
        },
        (None, None, None) => Reach {
            state: ReachState::Unreachable,
            addr: String::new(),
            reason: Some(ReachFailure::NoRoute),
            detail: "no address to probe".into(),
            checked_at,
        },
    }
}

/// Probes every live cache when it registers and then every `config.every`, until `stop`.
pub async fn run(
    reach: Arc<Reachability>,
    db: AnyPool,
    signer: Arc<TicketSigner>,
    config: ReachConfig,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut probes: JoinSet<(String, Reach)> = JoinSet::new();
    let mut every = Every::new(
        config
            .every
            .clamp(Duration::from_millis(100), Duration::from_secs(1)),
    );
    loop {
        tokio::select! {
            ticked = every.tick(&stop) => {
                if !ticked {
                    break;
                }
            }
            () = reach.registered.notified() => tokio::time::sleep(FIRST_PROBE_AFTER).await,
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                if let Ok((id, found)) = done {
                    reach.found(&id, found, Instant::now() + config.every);
                }
                continue;
            }
        }
        let live = match nodes::list(&db, None).await {
            Ok(live) => live,
            Err(e) => {
                if !stop.is_cancelled() {
                    tracing::warn!("reachability skipped a round: {e}");
                }
                continue;
            }
        };
        for (id, addrs, pin) in reach.due(&live, Instant::now()) {
            let signer = signer.clone();
            probes.spawn(async move {
                let found = probe_cache(&signer, &id, &addrs, pin.as_deref(), config.timeout).await;
                (id, found)
            });
        }
    }
    probes.abort_all();
    Ok(())
}

/// What a public tracker requires of a cache's advertised addresses: each an IP (not a host
/// name) that the internet can reach (not loopback, private, link-local, multicast,
/// unspecified, CGNAT or documentation), and each IPv4 the one the registration came from
/// (`seen_from`): a node behind NAT advertises what the tracker sees, nobody else's host.
pub fn check_public_addrs<'a>(
    addrs: impl IntoIterator<Item = &'a str>,
    seen_from: std::net::IpAddr,
) -> Result<(), nodes::NodeError> {
    let seen_from = seen_from.to_canonical();
    for addr in addrs {
        let refused = |why: &str| {
            Err(nodes::NodeError::AddressRefused(format!(
                "this tracker is public: the advertised address {addr:?} {why}"
            )))
        };
        let Ok(sa) = addr.parse::<std::net::SocketAddr>() else {
            return refused("is not an IP address and port (host names are not accepted)");
        };
        let ip = sa.ip().to_canonical();
        if !rivulet_node_core::net::is_public(ip) {
            return refused(
                "cannot be reached from the internet (loopback, private, link-local, \
                 multicast or reserved)",
            );
        }
        if ip.is_ipv4() && ip != seen_from {
            return refused(&format!(
                "is not the IPv4 address this registration came from ({seen_from})"
            ));
        }
    }
    Ok(())
}
