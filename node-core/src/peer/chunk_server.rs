//! A chunk server over FTP, for the origin and for caches alike: read-only, chunks at
//! `/<video>/<segment>/<index>` in the chunk wire format, taken from a [`ChunkProvider`];
//! access only with a valid ticket for this server and that movie; every byte sent counted
//! per receiving node and movie, and held under one upload cap shared by all connections.
//!
//! One libunftp server runs per connection, with TCP_NODELAY (libunftp's own listener costs
//! 44 ms per file), and passive data ports are taken in turn from the configured range with
//! SO_REUSEADDR by `PassivePorts` (libunftp's random pick collides, and port 0 makes the
//! kernel scan every port in TIME_WAIT). What a stranger may hold open (sessions, log-in
//! time, passive listeners, stalled writes) is bounded by
//! [`ServerLimits`](crate::peer::limits::ServerLimits).
//!
//! With [`ChunkServer::set_tls`] it offers FTPS (explicit `AUTH TLS`) and requires it of
//! every client but loopback ones ([`tls::plain_allowed`]), or of all when forced.

use std::collections::HashMap;
use std::fmt::{self, Debug, Display};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result, StorageBackend};

use crate::peer::ftp::{MAX_BATCH, URGENT};
use crate::peer::limits::{Admission, LoginSignal, ServerLimits, SessionPassive};
use crate::peer::tls;
use crate::ticket::{TicketClaims, TicketKey};
use rivulet_tracker_client::{NodeId, NodeKind};

/// A movie id as it may appear in a path: lowercase letters, digits, '-' and '_'.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['-', '_'])
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(not_found()) }
}

/// What a [`ChunkProvider`] answers: the chunk in wire form, `None` when the server does
/// not have it, or why it could not tell.
pub type ChunkResult = std::result::Result<Option<Vec<u8>>, String>;

/// Where a server's chunks come from.
#[async_trait]
pub trait ChunkProvider: Send + Sync + Debug + 'static {
    /// Chunk `index` of `segment` of `video` in wire form; `Ok(None)` when this server does
    /// not have it.
    async fn chunk(&self, video: &str, segment: u32, index: u16) -> ChunkResult;
}

/// Bytes a server has sent.
#[derive(Debug, Default)]
pub struct ServedBytes {
    /// To nodes whose id says they are caches.
    pub to_caches: AtomicU64,
    /// To every other node (viewers).
    pub to_viewers: AtomicU64,
    by_peer: Mutex<HashMap<(String, String), u64>>,
    /// Chunks sent at least once, and their bytes: what this server had to get (a cache
    /// from the origin) for what it served.
    distinct: Mutex<std::collections::HashSet<(String, u32, u16)>>,
    distinct_bytes: AtomicU64,
    /// Whether each chunk sent is logged for [`ServedBytes::take_chunks`] (the origin: the
    /// tracker learns from it what each cache fetched).
    log_chunks: std::sync::atomic::AtomicBool,
    chunks: Mutex<Vec<ServedChunk>>,
}

/// One chunk a server sent whole: to whom, of which movie, (segment, index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedChunk {
    pub holder: String,
    pub video: String,
    pub segment: u32,
    pub index: u16,
}

/// Most chunks logged between two [`ServedBytes::take_chunks`] calls; the rest are not
/// logged (their bytes still count).
const MAX_LOGGED_CHUNKS: usize = 1 << 20;

/// Most (receiving node, movie) pairs counted between two [`ServedBytes::take_by_peer`]
/// calls; bytes for pairs past it still count in the totals.
const MAX_PEER_ENTRIES: usize = 65_536;

impl ServedBytes {
    /// Starts logging every chunk sent, for [`ServedBytes::take_chunks`].
    pub fn log_chunks(&self) {
        self.log_chunks.store(true, Ordering::Relaxed);
    }

    /// The chunks sent since the last call (when logging).
    pub fn take_chunks(&self) -> Vec<ServedChunk> {
        std::mem::take(&mut *self.chunks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn add(&self, holder: &str, video: &str, chunk: (u32, u16), bytes: u64) {
        if self.log_chunks.load(Ordering::Relaxed) {
            let mut log = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() < MAX_LOGGED_CHUNKS {
                log.push(ServedChunk {
                    holder: holder.to_owned(),
                    video: video.to_owned(),
                    segment: chunk.0,
                    index: chunk.1,
                });
            }
        }
        let first = self
            .distinct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((video.to_owned(), chunk.0, chunk.1));
        if first {
            self.distinct_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        let counter = if NodeId::kind_of(holder) == Some(NodeKind::Cache) {
            &self.to_caches
        } else {
            &self.to_viewers
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        let key = (holder.to_owned(), video.to_owned());
        if let Some(n) = by_peer.get_mut(&key) {
            *n += bytes;
        } else if by_peer.len() < MAX_PEER_ENTRIES {
            by_peer.insert(key, bytes);
        }
    }

    /// Bytes of the distinct chunks sent so far (each counted once).
    pub fn distinct_bytes(&self) -> u64 {
        self.distinct_bytes.load(Ordering::Relaxed)
    }

    /// Bytes sent per (receiving node, movie) since the last call: what a heartbeat reports.
    pub fn take_by_peer(&self) -> Vec<(String, String, u64)> {
        std::mem::take(&mut *self.by_peer.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|((peer, video), bytes)| (peer, video, bytes))
            .collect()
    }
}

/// A rate cap (a server's upload, shared by all its connections, or a cache's download
/// budget): a token bucket that holds at
/// least 10 ms of traffic (tokio's timers tick at 1 ms; a smaller bucket caps far below the
/// rate) and starts empty, so no transfer gets a free burst. Zero means no cap. The rate can
/// change while transfers run: [`RateCap::set`] wakes every waiter, which then waits by the
/// new rate (or not at all, with no cap).
///
/// Urgent transfers (a player waiting for them) go first: while one runs, the others pause.
#[derive(Debug)]
pub struct RateCap {
    bits_per_sec: AtomicU64,
    bucket: Mutex<(f64, Instant)>,
    urgent: AtomicU64,
    calm: tokio::sync::Notify,
    /// Notified when the rate changes.
    changed: tokio::sync::Notify,
}

/// An urgent transfer in progress (see [`RateCap::urgent`]).
#[derive(Debug)]
pub struct Urgent<'a>(&'a RateCap);

impl Drop for Urgent<'_> {
    fn drop(&mut self) {
        if self.0.urgent.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.calm.notify_waiters();
        }
    }
}

impl RateCap {
    pub fn new(bits_per_sec: u64) -> RateCap {
        RateCap {
            bits_per_sec: AtomicU64::new(bits_per_sec),
            bucket: Mutex::new((0.0, Instant::now())),
            urgent: AtomicU64::new(0),
            calm: tokio::sync::Notify::new(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Marks an urgent transfer until the guard drops: [`RateCap::acquire`] lets only
    /// urgent transfers send meanwhile.
    pub fn urgent(&self) -> Urgent<'_> {
        self.urgent.fetch_add(1, Ordering::AcqRel);
        Urgent(self)
    }

    /// Changes the cap at once (0: none): transfers waiting on the old rate wait by the new.
    pub fn set(&self, bits_per_sec: u64) {
        self.bits_per_sec.store(bits_per_sec, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn get(&self) -> u64 {
        self.bits_per_sec.load(Ordering::Relaxed)
    }

    /// Waits until `bytes` may be sent, after any urgent transfers (with no cap nobody
    /// waits: there is no bucket to share).
    pub async fn acquire(&self, bytes: usize) {
        loop {
            if self.bits_per_sec.load(Ordering::Relaxed) == 0 {
                return;
            }
            let calm = self.calm.notified();
            tokio::pin!(calm);
            // Registered before looking, so the last urgent transfer's end wakes it.
            calm.as_mut().enable();
            if self.urgent.load(Ordering::Acquire) == 0 {
                break;
            }
            calm.await;
        }
        self.acquire_urgent(bytes).await;
    }

    /// Waits until `bytes` may be sent by an urgent transfer (one holding [`Urgent`]): the
    /// bucket alone decides.
    pub async fn acquire_urgent(&self, bytes: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the rate is read, so a change meanwhile cuts the wait short.
            changed.as_mut().enable();
            let rate = self.bits_per_sec.load(Ordering::Relaxed) as f64 / 8.0;
            if rate <= 0.0 {
                return;
            }
            let burst = (rate / 100.0).max(16.0 * 1024.0);
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
                b.1 = now;
                let need = (bytes as f64).min(burst);
                if b.0 >= need {
                    b.0 -= bytes as f64;
                    return;
                }
                Duration::from_secs_f64((need - b.0) / rate)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = changed => {}
            }
        }
    }
}

/// Bytes written per step under a cap.
const CAPPED_PIECE: usize = 16 * 1024;

/// A session's user: the claims of the ticket it logged in with.
#[derive(Clone, Debug)]
pub struct TicketUser(TicketClaims);

impl Display for TicketUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}", self.0.holder, self.0.video)
    }
}

impl UserDetail for TicketUser {}

/// Checks the ticket sent as the password, with the node id as the user name.
#[derive(Debug)]
struct TicketAuth {
    key: TicketKey,
    server: Arc<RwLock<String>>,
}

/// One session's authenticator: [`TicketAuth`], and on success the session leaves the
/// queue of those still logging in.
#[derive(Debug)]
struct SessionAuth {
    tickets: Arc<TicketAuth>,
    login: LoginSignal,
}

#[async_trait]
impl Authenticator for SessionAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> std::result::Result<Principal, AuthenticationError> {
        let principal = self.tickets.authenticate(username, creds).await?;
        self.login.logged_in();
        Ok(principal)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl Authenticator for TicketAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> std::result::Result<Principal, AuthenticationError> {
        let ticket = creds
            .password
            .as_deref()
            .ok_or(AuthenticationError::BadPassword)?;
        let claims = self
            .key
            .verify(
                ticket,
                username,
                &self.server.read().unwrap_or_else(|e| e.into_inner()),
                unix_now(),
            )
            .map_err(|_| AuthenticationError::BadPassword)?;
        // The principal carries the verified claims on to the user detail provider.
        let username =
            serde_json::to_string(&claims).map_err(|_| AuthenticationError::BadPassword)?;
        Ok(Principal { username })
    }
}

#[derive(Debug)]
struct TicketUsers;

#[async_trait]
impl UserDetailProvider for TicketUsers {
    type User = TicketUser;

    async fn provide_user_detail(
        &self,
        principal: &Principal,
    ) -> std::result::Result<TicketUser, UserDetailError> {
        serde_json::from_str(&principal.username)
            .map(TicketUser)
            .map_err(|e| UserDetailError::Generic(e.to_string()))
    }
}

/// What a transfer asks for.
#[derive(Debug, PartialEq)]
struct ChunkPath {
    video: String,
    segment: u32,
    indices: Vec<u16>,
    /// A player waits for them: sent before anything else under the upload cap.
    urgent: bool,
}

/// `/<video>/<segment>/<index>` or `/<video>/<segment>/<index>,<index>,…` (distinct, at
/// most [`MAX_BATCH`]), either followed by `/now` when urgent; `None` for anything else
/// (including `..`).
fn chunk_path(path: &Path) -> Option<ChunkPath> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir | Component::CurDir => None,
            Component::Normal(s) => Some(s.to_str()),
            _ => Some(None),
        })
        .collect::<Option<_>>()?;
    let (video, segment, list, urgent) = match parts.as_slice() {
        [video, segment, list] => (video, segment, list, false),
        [video, segment, list, URGENT] => (video, segment, list, true),
        _ => return None,
    };
    check_id(video).ok()?;
    let indices: Vec<u16> = list
        .split(',')
        .map(|i| i.parse().ok())
        .collect::<Option<_>>()?;
    let distinct: std::collections::BTreeSet<u16> = indices.iter().copied().collect();
    if indices.len() > MAX_BATCH || distinct.len() != indices.len() {
        return None;
    }
    Some(ChunkPath {
        video: (*video).to_owned(),
        segment: segment.parse().ok()?,
        indices,
        urgent,
    })
}

#[derive(Debug)]
pub struct ChunkMeta {
    len: u64,
    dir: bool,
}

impl Metadata for ChunkMeta {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
    fn is_file(&self) -> bool {
        !self.dir
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> Result<SystemTime> {
        Ok(SystemTime::UNIX_EPOCH)
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
}

/// The storage backend of every session: chunks from the provider, sent under the cap.
#[derive(Clone, Debug)]
struct ProviderStore {
    provider: Arc<dyn ChunkProvider>,
    served: Arc<ServedBytes>,
    cap: Arc<RateCap>,
    /// This connection's own cap (0: none), taken before the shared one.
    connection_cap: Arc<RateCap>,
    limits: ServerLimits,
    /// This session's passive listeners (a transfer closes them).
    passive: Arc<SessionPassive>,
}

/// The error of a write the receiver did not take in time.
fn stalled() -> Error {
    Error::new(ErrorKind::LocalError, "the receiver stopped reading")
}

fn not_found() -> Error {
    Error::from(ErrorKind::PermanentFileNotAvailable)
}

/// The chunks of one request that the provider holds, in the order asked.
struct Found {
    video: String,
    segment: u32,
    urgent: bool,
    chunks: Vec<(u16, Vec<u8>)>,
}

impl Found {
    fn len(&self) -> usize {
        self.chunks.iter().map(|(_, c)| c.len()).sum()
    }
}

impl ProviderStore {
    /// The chunks at `path` for `user`, in wire form; not found when it holds none.
    async fn chunks(&self, user: &TicketUser, path: &Path) -> Result<Found> {
        let ChunkPath {
            video,
            segment,
            indices,
            urgent,
        } = chunk_path(path).ok_or_else(not_found)?;
        // A session lives no longer than its ticket.
        if video != user.0.video || user.0.expires_at <= unix_now() {
            return Err(ErrorKind::PermissionDenied.into());
        }
        // A cache's ticket may list the indices placement gave it: nothing else.
        if !indices.iter().any(|&i| user.0.allows(i)) {
            return Err(ErrorKind::PermissionDenied.into());
        }
        let mut chunks = Vec::with_capacity(indices.len());
        for index in indices.into_iter().filter(|&i| user.0.allows(i)) {
            match self.provider.chunk(&video, segment, index).await {
                Ok(Some(chunk)) => chunks.push((index, chunk)),
                Ok(None) => {}
                Err(e) => return Err(Error::new(ErrorKind::LocalError, e)),
            }
        }
        if chunks.is_empty() {
            return Err(not_found());
        }
        Ok(Found {
            video,
            segment,
            urgent,
            chunks,
        })
    }
}

fn read_only<T>() -> Result<T> {
    Err(ErrorKind::PermissionDenied.into())
}

#[async_trait]
impl StorageBackend<TicketUser> for ProviderStore {
    type Metadata = ChunkMeta;

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TicketUser,
        path: P,
    ) -> Result<ChunkMeta> {
        let path = path.as_ref();
        if chunk_path(path).is_none() {
            let depth = path
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count();
            return if depth <= 2 {
                Ok(ChunkMeta { len: 0, dir: true })
            } else {
                Err(not_found())
            };
        }
        let found = self.chunks(user, path).await?;
        Ok(ChunkMeta {
            len: found.len() as u64,
            dir: false,
        })
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &TicketUser,
        _path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, ChunkMeta>>> {
        Ok(Vec::new())
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TicketUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let found = self.chunks(user, path.as_ref()).await?;
        let mut all = Vec::with_capacity(found.len());
        for (index, chunk) in &found.chunks {
            let skip = usize::try_from(start_pos.saturating_sub(all.len() as u64))
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            self.served.add(
                &user.0.holder,
                &found.video,
                (found.segment, *index),
                (chunk.len() - skip) as u64,
            );
            all.extend_from_slice(chunk);
        }
        let start = usize::try_from(start_pos)
            .unwrap_or(usize::MAX)
            .min(all.len());
        all.drain(..start);
        Ok(Box::new(std::io::Cursor::new(all)))
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &TicketUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        self.passive.transfer_started();
        let found = self.chunks(user, path.as_ref()).await?;
        // Priority lasts while the receiver takes the bytes: a write that stalls past
        // `urgent_stall` demotes the transfer for good, so a reader that stops cannot hold
        // the others; any write stalled past `write_timeout` ends the transfer.
        let mut urgent = found.urgent.then(|| self.cap.urgent());
        let (mut offset, mut sent) = (0u64, 0u64);
        for (index, chunk) in &found.chunks {
            let skip = usize::try_from(start_pos.saturating_sub(offset))
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            offset += chunk.len() as u64;
            for piece in chunk[skip..].chunks(CAPPED_PIECE) {
                self.connection_cap.acquire_urgent(piece.len()).await;
                if urgent.is_some() {
                    self.cap.acquire_urgent(piece.len()).await;
                } else {
                    self.cap.acquire(piece.len()).await;
                }
                let write = output.write_all(piece);
                tokio::pin!(write);
                if urgent.is_some() {
                    match tokio::time::timeout(self.limits.urgent_stall, &mut write).await {
                        Ok(done) => {
                            done?;
                            continue;
                        }
                        Err(_) => urgent = None,
                    }
                }
                tokio::time::timeout(self.limits.write_timeout, write)
                    .await
                    .map_err(|_| stalled())??;
            }
            let bytes = (chunk.len() - skip) as u64;
            self.served
                .add(&user.0.holder, &found.video, (found.segment, *index), bytes);
            sent += bytes;
        }
        Ok(sent)
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        _user: &TicketUser,
        _input: R,
        _path: P,
        _start: u64,
    ) -> Result<u64> {
        read_only()
    }
    async fn del<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, _path: P) -> Result<()> {
        read_only()
    }
    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, _path: P) -> Result<()> {
        read_only()
    }
    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &TicketUser,
        _from: P,
        _to: P,
    ) -> Result<()> {
        read_only()
    }
    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, _path: P) -> Result<()> {
        read_only()
    }
    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, path: P) -> Result<()> {
        let depth = path
            .as_ref()
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        if depth <= 2 { Ok(()) } else { Err(not_found()) }
    }
}

/// Picks passive data ports itself, walking the configured range from a shared cursor and
/// binding each explicitly (with SO_REUSEADDR, so ports whose last transfer still lingers
/// in TIME_WAIT can be reused at once); a port another listener holds is skipped. Neither
/// alternative holds up under load: libunftp's random pick collides, and asking the kernel
/// for port 0 makes it scan every port with tens of thousands of TIME_WAIT sockets about
/// (one per chunk transfer: measured 65% of a busy swarm's CPU in that scan).
///
/// Each listener is also admitted by the session's [`SessionPassive`]: a bounded number per
/// session and per process, the oldest closed when a session asks for more.
#[derive(Debug, Clone)]
struct PassivePorts {
    limits: ServerLimits,
    session: Arc<SessionPassive>,
}

/// Where the next passive bind starts looking, shared by every server in the process.
static NEXT_PASSIVE_PORT: AtomicU64 = AtomicU64::new(0);

/// Ports tried before falling back to the kernel's choice.
const PASSIVE_TRIES: usize = 64;

#[async_trait]
impl libunftp::options::Binder for PassivePorts {
    async fn bind(
        &mut self,
        ip: std::net::IpAddr,
        range: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<tokio::net::TcpSocket> {
        let s = self.bind_port(ip, range)?;
        self.session.admit(&self.limits, &s)?;
        Ok(s)
    }
}

impl PassivePorts {
    fn bind_port(
        &self,
        ip: std::net::IpAddr,
        range: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<tokio::net::TcpSocket> {
        let socket = || -> std::io::Result<tokio::net::TcpSocket> {
            let s = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            s.set_reuseaddr(true)?;
            Ok(s)
        };
        let (first, span) = (
            u64::from(*range.start()),
            u64::from(range.end().saturating_sub(*range.start())) + 1,
        );
        if !range.is_empty() {
            for _ in 0..PASSIVE_TRIES {
                let port = first + NEXT_PASSIVE_PORT.fetch_add(1, Ordering::Relaxed) % span;
                let s = socket()?;
                match s.bind(SocketAddr::new(ip, port as u16)) {
                    Ok(()) => return Ok(s),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let s = socket()?;
        s.bind(SocketAddr::new(ip, 0))?;
        Ok(s)
    }
}

/// A running chunk server.
#[derive(Debug)]
pub struct ChunkServer {
    addr: SocketAddr,
    server_id: Arc<RwLock<String>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    served: Arc<ServedBytes>,
    cap: Arc<RateCap>,
    connection_bps: Arc<AtomicU64>,
    tls: Arc<RwLock<Option<ServerTls>>>,
    /// The address PASV replies name, when not the connection's own.
    passive_host: Arc<RwLock<Option<Ipv4Addr>>>,
}

/// What FTPS a chunk server offers and requires.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The certificate and key it serves.
    pub config: Arc<rustls::ServerConfig>,
    /// TLS required of loopback clients too (tests, `rivulet-bench swarm --tls`).
    pub forced: bool,
}

impl Drop for ChunkServer {
    /// A server dropped without [`ChunkServer::shutdown`] (its owner crashed) stops too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ChunkServer {
    /// Binds `bind` and serves `provider`'s chunks to holders of tickets for `server_id`,
    /// signed by `key`, under an upload cap of `upload_bps` bits/s (0: none), with the
    /// default [`ServerLimits`].
    pub async fn start(
        bind: SocketAddr,
        server_id: &str,
        key: TicketKey,
        provider: Arc<dyn ChunkProvider>,
        upload_bps: u64,
    ) -> std::io::Result<ChunkServer> {
        Self::start_with_limits(
            bind,
            server_id,
            key,
            provider,
            upload_bps,
            ServerLimits::default(),
        )
        .await
    }

    /// [`ChunkServer::start`] with other limits on what connections may hold.
    pub async fn start_with_limits(
        bind: SocketAddr,
        server_id: &str,
        key: TicketKey,
        provider: Arc<dyn ChunkProvider>,
        upload_bps: u64,
        limits: ServerLimits,
    ) -> std::io::Result<ChunkServer> {
        // `[::]` listens on IPv6 and IPv4 at once (crate::net::listen).
        let listener = crate::net::listen(bind)?;
        let addr = listener.local_addr()?;
        let served = Arc::new(ServedBytes::default());
        let cap = Arc::new(RateCap::new(upload_bps));
        let connection_bps = Arc::new(AtomicU64::new(0));
        let tls_setting: Arc<RwLock<Option<ServerTls>>> = Arc::default();
        let tls_now = tls_setting.clone();
        let passive_host: Arc<RwLock<Option<Ipv4Addr>>> = Arc::default();
        let passive_host_now = passive_host.clone();
        let server_id = Arc::new(RwLock::new(server_id.to_owned()));
        let store = ProviderStore {
            provider,
            served: served.clone(),
            cap: cap.clone(),
            connection_cap: Arc::new(RateCap::new(0)),
            limits,
            passive: Arc::default(),
        };
        let admission = Admission::new(limits);
        let auth = Arc::new(TicketAuth {
            key,
            server: server_id.clone(),
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let per_connection = connection_bps.clone();
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else {
                            // Out of file descriptors, most likely: give sessions time to end.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let Some(slot) = admission.admit(peer.ip(), &stream) else {
                            drop(stream);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let passive = Arc::new(SessionPassive::default());
                        let store = ProviderStore {
                            passive: passive.clone(),
                            connection_cap: Arc::new(RateCap::new(
                                per_connection.load(Ordering::Relaxed),
                            )),
                            ..store.clone()
                        };
                        let mut builder = libunftp::ServerBuilder::with_user_detail_provider(
                            Box::new(move || store.clone()),
                            Arc::new(TicketUsers),
                        );
                        let tls = tls_now.read().unwrap_or_else(|e| e.into_inner()).clone();
                        if let Some(tls) = tls {
                            builder = builder.ftps_manual::<PathBuf>(tls.config);
                            if !tls::plain_allowed(peer.ip(), tls.forced) {
                                use libunftp::options::FtpsRequired;
                                builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
                            }
                        }
                        let server = builder
                        .authenticator(Arc::new(SessionAuth {
                            tickets: auth.clone(),
                            login: slot.login_signal(),
                        }))
                        .passive_host(
                            match *passive_host_now.read().unwrap_or_else(|e| e.into_inner()) {
                                Some(ip) => libunftp::options::PassiveHost::Ip(ip),
                                None => libunftp::options::PassiveHost::FromConnection,
                            },
                        )
                        .passive_ports(limits.passive_ports.0..=limits.passive_ports.1)
                        .binder(PassivePorts {
                            limits,
                            session: passive,
                        })
                        .idle_session_timeout(admission.limits().idle_secs)
                        .logger(slog::Logger::root(slog::Discard, slog::o!()))
                        .build();
                        if let Ok(server) = server {
                            sessions.spawn(async move {
                                let service = server.service(stream);
                                tokio::pin!(service);
                                // Log in by the deadline or go, whatever was sent meanwhile.
                                tokio::select! {
                                    _ = &mut service => return,
                                    _ = tokio::time::sleep(limits.login_within) => {
                                        slot.expire_unless_logged_in();
                                    }
                                }
                                let _ = service.await;
                                drop(slot);
                            });
                        }
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                    () = stopped.cancelled() => break,
                }
            }
            drop(listener);
            // Sessions get a moment to finish what they are sending.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while sessions.join_next().await.is_some() {}
            })
            .await;
            sessions.abort_all();
        });
        Ok(ChunkServer {
            addr,
            server_id,
            stop,
            task,
            served,
            cap,
            connection_bps,
            tls: tls_setting,
            passive_host,
        })
    }

    /// Names `ip` in PASV replies from now on (a router's public address, when the ports are
    /// mapped on it), or with `None` the address the client reached the server at. EPSV
    /// replies carry only a port and need neither.
    pub fn set_passive_host(&self, ip: Option<Ipv4Addr>) {
        *self.passive_host.write().unwrap_or_else(|e| e.into_inner()) = ip;
    }

    /// Offers FTPS with `tls` (required of all but loopback clients, or of all when
    /// forced), or plain FTP alone with `None`; applies to connections accepted from now on.
    pub fn set_tls(&self, tls: Option<ServerTls>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts tickets for `server_id` from now on (a cache learns its node id only after it
    /// has bound and registered).
    pub fn set_server_id(&self, server_id: &str) {
        *self.server_id.write().unwrap_or_else(|e| e.into_inner()) = server_id.to_owned();
    }

    /// What has been sent.
    pub fn served(&self) -> &Arc<ServedBytes> {
        &self.served
    }

    /// The shared upload cap, adjustable while serving.
    pub fn upload_cap(&self) -> &Arc<RateCap> {
        &self.cap
    }

    /// Caps each connection's upload at `bits_per_sec` (0: none), besides the shared cap;
    /// applies to connections accepted from now on.
    pub fn set_connection_cap(&self, bits_per_sec: u64) {
        self.connection_bps.store(bits_per_sec, Ordering::Relaxed);
    }

    /// Stops accepting, lets sessions finish briefly, then ends them.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunk_paths_inside_the_store_parse() {
        let path = |video: &str, segment, indices: &[u16], urgent| {
            Some(ChunkPath {
                video: video.into(),
                segment,
                indices: indices.to_vec(),
                urgent,
            })
        };
        assert_eq!(
            chunk_path(Path::new("/demo/3/17")),
            path("demo", 3, &[17], false)
        );
        assert_eq!(
            chunk_path(Path::new("demo/0/0")),
            path("demo", 0, &[0], false)
        );
        assert_eq!(
            chunk_path(Path::new("/demo/2/5,1,9")),
            path("demo", 2, &[5, 1, 9], false)
        );
        assert_eq!(
            chunk_path(Path::new("/demo/2/5,1/now")),
            path("demo", 2, &[5, 1], true)
        );
        let most: Vec<String> = (0..MAX_BATCH).map(|i| i.to_string()).collect();
        let too_many: Vec<String> = (0..=MAX_BATCH).map(|i| i.to_string()).collect();
        assert!(chunk_path(Path::new(&format!("/demo/1/{}", most.join(",")))).is_some());
        assert_eq!(
            chunk_path(Path::new(&format!("/demo/1/{}", too_many.join(",")))),
            None
        );
        for bad in [
            "/demo/3",
            "/../demo/3/17",
            "/demo/../../etc/passwd",
            "/etc/passwd",
            "/demo/x/1",
            "/demo/1/70000",
            "/Demo/1/1",
            "/demo/1/2/3",
            "/demo/1/2,2",
            "/demo/1/2,",
            "/demo/1/,2",
            "/demo/1/2;3",
            "/demo/1/2,70000",
            "/demo/1/2/later",
            "/demo/1/2/now/now",
        ] {
            assert_eq!(chunk_path(Path::new(bad)), None, "{bad}");
        }
    }

    /// How long `cap` takes to let `total` bytes through in [`CAPPED_PIECE`] steps.
    async fn time_to_pass(cap: &RateCap, total: usize) -> Duration {
        let began = Instant::now();
        for _ in 0..total / CAPPED_PIECE {
            cap.acquire(CAPPED_PIECE).await;
        }
        began.elapsed()
    }

    /// A download budget raised while the cache runs applies at once: the same bytes take
    /// about bytes / rate at the low cap and a small fraction of that after the raise.
    /// (The bucket reads the system clock, so the times are real and the checks generous.)
    #[tokio::test]
    async fn download_cap_raised_live_lets_the_same_bytes_through_far_sooner() {
        let total = 20 * CAPPED_PIECE;
        // 2.6 Mbit/s: 320 KiB in ≈ 1 s.
        let cap = RateCap::new(2_621_440);
        let low = time_to_pass(&cap, total).await;
        assert!(low >= Duration::from_millis(800), "{low:?} at the low cap");
        cap.set(262_144_000);
        assert_eq!(cap.get(), 262_144_000);
        let high = time_to_pass(&cap, total).await;
        assert!(high * 5 < low, "{high:?} after the raise, {low:?} before");
        // Lowered again, it slows down again.
        cap.set(2_621_440);
        let again = time_to_pass(&cap, total).await;
        assert!(
            again >= Duration::from_millis(800),
            "{again:?} lowered again"
        );
    }

    /// A transfer waiting on a very low cap is released by a change of rate, not at the end
    /// of the wait the old rate asked for.
    #[tokio::test]
    async fn a_download_cap_change_wakes_the_transfers_waiting_on_the_old_rate() {
        for new_rate in [0, 800_000_000] {
            // 8 kbit/s: the first 16 KiB would take 16 s.
            let cap = Arc::new(RateCap::new(8_000));
            let waiting = tokio::spawn({
                let cap = cap.clone();
                async move { cap.acquire(CAPPED_PIECE).await }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!waiting.is_finished(), "passed a cap of 8 kbit/s at once");
            cap.set(new_rate);
            tokio::time::timeout(Duration::from_secs(2), waiting)
                .await
                .unwrap_or_else(|_| panic!("still waiting 2 s after the cap became {new_rate}"))
                .unwrap();
        }
    }
}
