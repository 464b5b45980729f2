//! What a chunk server grants a stranger before and after log-in: sessions per address
//! (IPv6 by /64), sessions still logging in (with a deadline that NOOP does not move, and
//! the oldest evicted for a newcomer), passive data listeners per session and per process,
//! and how long a receiver may stall a write. The defences of issue 13 item 3, in one place.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The address a limit keys on: an IPv4 address as it is, an IPv6 address by its /64 (one
/// subscriber usually holds a whole /64, so its single addresses are free to them).
pub fn address_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How much a chunk server lets connections take.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Sessions open at once, logged in or not.
    pub max_sessions: usize,
    /// Sessions open at once that have not logged in yet; a newcomer past this evicts the
    /// oldest of them, so idle connections cannot keep a ticket holder out.
    pub max_logging_in: usize,
    /// Sessions open at once from one address (IPv6: one /64).
    pub per_address: usize,
    /// Loopback connections are not held to `per_address` (a machine's own nodes: the
    /// embedded demo network, local swarms). Tests that play the attacker turn it off.
    pub exempt_loopback: bool,
    /// Time from connecting to a successful log-in; commands (NOOP included) do not extend it.
    pub login_within: Duration,
    /// Idle time after which a logged-in session is closed, seconds.
    pub idle_secs: u64,
    /// Passive listeners open at once for one session; a new EPSV/PASV closes the oldest.
    pub passive_per_session: usize,
    /// Passive listeners a session may open without a transfer in between (each may hold
    /// one idle data connection); past it, EPSV/PASV are refused.
    pub passive_without_transfer: usize,
    /// How long one write of a transfer may wait for the receiver to take bytes.
    pub write_timeout: Duration,
    /// How long an urgent transfer's write may wait before it loses its priority.
    pub urgent_stall: Duration,
    /// The passive (data) ports, first and last: a cache behind a router forwards these
    /// beside its control port (`crate::net::DEFAULT_PASSIVE_PORTS`).
    pub passive_ports: (u16, u16),
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_sessions: 512,
            max_logging_in: 128,
            per_address: 32,
            exempt_loopback: true,
            login_within: Duration::from_secs(5),
            idle_secs: 120,
            passive_per_session: 2,
            passive_without_transfer: 8,
            write_timeout: Duration::from_secs(10),
            urgent_stall: Duration::from_millis(200),
            passive_ports: (49152, 65535),
        }
    }
}

/// Passive listeners open at once in this process, over every server (file descriptors are
/// the process's): past it, EPSV/PASV are refused.
pub const PASSIVE_PER_PROCESS: usize = 512;

/// How long libunftp waits for a client to connect to a passive listener; a listener older
/// than that has been closed by libunftp or has done its work.
const PASSIVE_ACCEPT_WINDOW: Duration = Duration::from_secs(15);

/// Passive listeners open now in this process (counted by [`OpenListener`]).
static PASSIVE_OPEN: AtomicUsize = AtomicUsize::new(0);

/// Passive listeners open now in this process, over every chunk server.
pub fn passive_listeners_open() -> usize {
    PASSIVE_OPEN.load(Ordering::Relaxed)
}

/// A second handle on a socket libunftp owns, so that this side can end it: a listener whose
/// accept should fail, a control connection whose reads should end. Dropping it shuts the
/// socket down.
#[derive(Debug)]
struct Closer(Option<socket2::Socket>);

impl Closer {
    fn of(fd: &impl std::os::fd::AsFd) -> std::io::Result<Closer> {
        socket2::SockRef::from(fd)
            .try_clone()
            .map(|s| Closer(Some(s)))
    }

    /// Lets go of the second handle and leaves the socket as it is.
    fn release(mut self) {
        self.0.take();
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(socket) = self.0.take() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// One passive listener handed to libunftp, counted until this side closes it.
#[derive(Debug)]
struct OpenListener {
    opened: Instant,
    _closer: Closer,
}

impl Drop for OpenListener {
    fn drop(&mut self) {
        PASSIVE_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One session's passive listeners.
#[derive(Debug, Default)]
pub(crate) struct SessionPassive {
    open: Mutex<VecDeque<OpenListener>>,
    since_transfer: AtomicUsize,
}

impl SessionPassive {
    /// Admits a new listener on `socket` (already bound), closing this session's oldest
    /// past its bound; `Err` when the session or the process has too many.
    pub(crate) fn admit(
        &self,
        limits: &ServerLimits,
        socket: &tokio::net::TcpSocket,
    ) -> std::io::Result<()> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|l| l.opened.elapsed() < PASSIVE_ACCEPT_WINDOW);
        if self.since_transfer.load(Ordering::Relaxed) >= limits.passive_without_transfer {
            return Err(std::io::Error::other(
                "too many passive ports without a transfer",
            ));
        }
        while open.len() >= limits.passive_per_session.max(1) {
            open.pop_front();
        }
        if PASSIVE_OPEN.fetch_add(1, Ordering::Relaxed) >= PASSIVE_PER_PROCESS {
            PASSIVE_OPEN.fetch_sub(1, Ordering::Relaxed);
            return Err(std::io::Error::other("too many passive ports open"));
        }
        let listener = OpenListener {
            opened: Instant::now(),
            _closer: Closer::of(socket).inspect_err(|_| {
                PASSIVE_OPEN.fetch_sub(1, Ordering::Relaxed);
            })?,
        };
        open.push_back(listener);
        self.since_transfer.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A transfer started: its client has connected, so every listener of the session is
    /// done with (the one it used has accepted, the others are stale).
    pub(crate) fn transfer_started(&self) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.since_transfer.store(0, Ordering::Relaxed);
    }
}

/// A session that has not logged in yet: what ends it.
#[derive(Debug)]
struct LoggingIn {
    id: u64,
    closer: Mutex<Option<Closer>>,
}

impl LoggingIn {
    /// Ends the session (it has not logged in): its reads end, libunftp closes it.
    fn evict(&self) {
        drop(self.closer.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// The session logged in: it is no longer this side's to end.
    fn logged_in(&self) {
        if let Some(closer) = self.closer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            closer.release();
        }
    }
}

#[derive(Debug, Default)]
struct Census {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    logging_in: VecDeque<Arc<LoggingIn>>,
    next_id: u64,
}

/// Who is connected to one server, by address and by log-in state.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: ServerLimits,
    census: Mutex<Census>,
}

/// Sessions past `max_sessions` that may be open while the ones they evicted close.
const EVICTION_SLACK: usize = 32;

impl Admission {
    pub(crate) fn new(limits: ServerLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            census: Mutex::default(),
        })
    }

    pub(crate) fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// Admits a connection from `peer` on `stream`, or `None` when its address already has
    /// its share or the server is full of logged-in sessions.
    pub(crate) fn admit(
        self: &Arc<Admission>,
        peer: IpAddr,
        stream: &tokio::net::TcpStream,
    ) -> Option<Slot> {
        let key = address_prefix(peer);
        let capped = !(self.limits.exempt_loopback && peer.is_loopback());
        let closer = Closer::of(stream).ok()?;
        let mut c = self.census.lock().unwrap_or_else(|e| e.into_inner());
        if capped && c.by_address.get(&key).copied().unwrap_or(0) >= self.limits.per_address {
            return None;
        }
        let full = c.total >= self.limits.max_sessions;
        if full || c.logging_in.len() >= self.limits.max_logging_in {
            match c.logging_in.pop_front() {
                Some(oldest) if c.total < self.limits.max_sessions + EVICTION_SLACK => {
                    oldest.evict()
                }
                Some(oldest) => {
                    c.logging_in.push_front(oldest);
                    return None;
                }
                None if full => return None,
                None => {}
            }
        }
        c.total += 1;
        *c.by_address.entry(key).or_default() += 1;
        c.next_id += 1;
        let pending = Arc::new(LoggingIn {
            id: c.next_id,
            closer: Mutex::new(Some(closer)),
        });
        c.logging_in.push_back(pending.clone());
        Some(Slot {
            admission: self.clone(),
            key,
            pending,
        })
    }

    fn forget_pending(&self, c: &mut Census, id: u64) {
        if let Some(at) = c.logging_in.iter().position(|p| p.id == id) {
            c.logging_in.remove(at);
        }
    }
}

/// One admitted session; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    key: IpAddr,
    pending: Arc<LoggingIn>,
}

impl Slot {
    /// What the authenticator calls when this session logs in.
    pub(crate) fn login_signal(&self) -> LoginSignal {
        LoginSignal {
            admission: self.admission.clone(),
            pending: self.pending.clone(),
        }
    }

    /// Ends the session if it has not logged in (its deadline passed).
    pub(crate) fn expire_unless_logged_in(&self) {
        self.pending.evict();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .admission
            .census
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.key);
            }
        }
        let id = self.pending.id;
        self.admission.forget_pending(&mut c, id);
    }
}

/// Marks a session logged in: it leaves the queue of sessions that may be evicted.
#[derive(Debug, Clone)]
pub(crate) struct LoginSignal {
    admission: Arc<Admission>,
    pending: Arc<LoggingIn>,
}

impl LoginSignal {
    pub(crate) fn logged_in(&self) {
        self.pending.logged_in();
        let mut c = self
            .admission
            .census
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let id = self.pending.id;
        self.admission.forget_pending(&mut c, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_key_ipv6_on_its_64_and_ipv4_on_the_address() {
        let p = |s: &str| address_prefix(s.parse().unwrap());
        assert_eq!(p("2001:db8:1:2:aaaa::1"), p("2001:db8:1:2:ffff::9"));
        assert_ne!(p("2001:db8:1:2::1"), p("2001:db8:1:3::1"));
        assert_eq!(p("192.0.2.7"), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_ne!(p("192.0.2.7"), p("192.0.2.8"));
        assert_eq!(p("::ffff:192.0.2.7"), p("192.0.2.7"));
    }

    /// What the bounds rest on: shutting a listener down through a second handle makes the
    /// owner's pending accept fail at once, so the owner lets the socket go.
    #[tokio::test]
    async fn a_closer_ends_a_pending_accept() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closer = Closer::of(&socket).unwrap();
        let listener = socket.listen(8).unwrap();
        let accept = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), listener.accept()).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        drop(closer);
        let ended = accept.await.unwrap();
        assert!(matches!(ended, Ok(Err(_))), "accept ended with {ended:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
