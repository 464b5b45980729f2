//! The cache role: registers with the tracker as its account's cache, holds what placement
//! asks (fetched from the origin within a download budget, kept in the hidden encrypted
//! [`store`]), serves it to viewers over FTP under one upload cap, and reports holdings and
//! bytes sent by heartbeat. Limits change live through [`Cache::set_limits`] and
//! [`Cache::set_download_bps`].

pub mod lock;
pub mod store;
pub mod warm_order;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rivulet_tracker_client::{
    ClientError, Credentials, ErrorCode, Heartbeat, HeartbeatOutbox, HeartbeatReply, Holding,
    NodeRegistration, Peer, PeerBytes, Reach, ReachState, TrackerClient,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::format::Manifest;
use crate::peer::chunk_server::{
    ChunkProvider, ChunkResult, ChunkServer, RateCap, ServedBytes, ServerTls,
};
use crate::peer::ftp::{ChunkSession, MAX_BATCH};
use crate::peer::limits::ServerLimits;
use crate::peer::tls::{self, Identity, TlsMode};
use crate::task::Tasks;
use crate::ticket::TicketKey;
use crate::viewer::{Progress, REPORT_MAX_CHUNKS};
use lock::{FolderLock, FolderLockError};
use store::ChunkStore;
use warm_order::RecentAsks;

/// The report's defaults: 1.5 GB of storage and 10 Mbit/s of upload, each scaled by the
/// multiplier the user picks (0.2, 0.5 or 1).
pub const DEFAULT_STORAGE_BYTES: u64 = 1_500_000_000;
pub const DEFAULT_UPLOAD_BPS: u64 = 10_000_000;
/// The multipliers offered.
pub const MULTIPLIERS: [f64; 3] = [0.2, 0.5, 1.0];

/// How a cache runs.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    pub tracker: String,
    pub user: String,
    pub password: String,
    pub storage_bytes: u64,
    /// Upload cap, bits per second.
    pub upload_bps: u64,
    /// Download budget from the origin, bits per second (0: none).
    pub download_bps: u64,
    /// Where the FTP server binds.
    pub listen: SocketAddr,
    /// The host (or host:port) viewers should dial, when it differs from the bound address.
    pub advertise: Option<String>,
    /// The passive (data) ports, first and last, to forward on a router beside the control
    /// port; [`crate::net::DEFAULT_PASSIVE_PORTS`] for a cache on a real network.
    pub passive_ports: (u16, u16),
    /// The cache folder; the store lives hidden inside it.
    pub dir: PathBuf,
    /// The store key, outside the cache folder.
    pub key_path: PathBuf,
    /// FTPS for the chunk server (the certificate beside the store key) and for fetches
    /// from the origin.
    pub tls: TlsMode,
    /// A PEM CA to trust for an HTTPS tracker (else `RIVULET_TRACKER_CA`'s).
    pub tracker_ca: Option<PathBuf>,
    /// Ask the home router (UPnP, NAT-PMP) to forward the ports, when the cache listens on
    /// every interface behind a NAT.
    pub port_mapping: bool,
}

impl CacheOptions {
    /// A cache of `user`'s account at `tracker`, its folder `dir` and store key `key_path`,
    /// with the report's defaults: 1.5 GB of storage, 10 Mbit/s of upload, no download
    /// budget, listening on a free loopback port, advertising the bound address.
    pub fn new(
        tracker: impl Into<String>,
        credentials: Credentials,
        dir: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> CacheOptions {
        CacheOptions {
            tracker: tracker.into(),
            user: credentials.username,
            password: credentials.password,
            storage_bytes: DEFAULT_STORAGE_BYTES,
            upload_bps: DEFAULT_UPLOAD_BPS,
            download_bps: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            passive_ports: ServerLimits::default().passive_ports,
            dir: dir.into(),
            key_path: key_path.into(),
            tls: TlsMode::default(),
            tracker_ca: None,
            port_mapping: true,
        }
    }

    /// Whether to ask the home router to forward the ports (on unless told).
    pub fn port_mapping(mut self, on: bool) -> CacheOptions {
        self.port_mapping = on;
        self
    }

    /// Trusts the CA in this PEM file for an HTTPS tracker (besides the usual roots).
    pub fn tracker_ca(mut self, path: Option<PathBuf>) -> CacheOptions {
        self.tracker_ca = path;
        self
    }

    /// Whether the chunk server speaks FTPS ([`TlsMode::On`] unless told).
    pub fn tls(mut self, mode: TlsMode) -> CacheOptions {
        self.tls = mode;
        self
    }

    /// Storage budget, bytes.
    pub fn storage_bytes(mut self, bytes: u64) -> CacheOptions {
        self.storage_bytes = bytes;
        self
    }

    /// Upload cap, bits per second.
    pub fn upload_bps(mut self, bps: u64) -> CacheOptions {
        self.upload_bps = bps;
        self
    }

    /// Download budget from the origin, bits per second (0: none).
    pub fn download_bps(mut self, bps: u64) -> CacheOptions {
        self.download_bps = bps;
        self
    }

    /// Where the FTP server binds.
    pub fn listen(mut self, addr: SocketAddr) -> CacheOptions {
        self.listen = addr;
        self
    }

    /// The host (or host:port) viewers should dial.
    pub fn advertise(mut self, host: Option<String>) -> CacheOptions {
        self.advertise = host;
        self
    }

    /// The passive (data) port range.
    pub fn passive_ports(mut self, ports: std::ops::RangeInclusive<u16>) -> CacheOptions {
        self.passive_ports = (*ports.start(), *ports.end());
        self
    }
}

/// Why a cache could not start, in words for the person who runs it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Another process runs a cache on this folder (or the folder cannot be locked).
    #[error(transparent)]
    Locked(FolderLockError),
    /// The chunk store in the cache folder could not be opened or read.
    #[error("opening the chunk store: {0}")]
    Store(#[source] store::StoreError),
    /// Reading the store was interrupted (the runtime is shutting down).
    #[error("reading the chunk store: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
    /// The TLS certificate beside the store key could not be made or read.
    #[error("the cache's TLS certificate: {0}")]
    Tls(String),
    /// The tracker refused the log-in or could not be reached.
    #[error("logging in: {0}")]
    LogIn(#[source] ClientError),
    /// The tracker did not say where the origin is.
    #[error("asking for the origin: {0}")]
    Origin(#[source] ClientError),
    /// The tracker's ticket key does not parse (a tracker of another version?).
    #[error("the tracker's ticket key: {0}")]
    TicketKey(String),
    /// The FTP server could not bind its address (in use, not ours…).
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The tracker refused to register the cache.
    #[error("registering the cache: {0}")]
    Register(#[source] ClientError),
}

/// What a running cache is doing, for the CLI, the app and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheStatus {
    pub node_id: String,
    /// The FTP address viewers dial.
    pub addr: String,
    pub holdings: Vec<Holding>,
    pub used_bytes: u64,
    pub storage_bytes: u64,
    pub upload_bps: u64,
    /// The download budget from the origin and other caches the fetchers are held to, bits
    /// per second (0: none).
    pub download_bps: u64,
    /// Bytes sent to viewers since start.
    pub sent_bytes: u64,
    /// Bytes fetched from the origin since start.
    pub fetched_bytes: u64,
    /// Bytes fetched from other caches since start (verified).
    pub fetched_from_caches_bytes: u64,
    /// Bytes of the distinct chunks sent (each once): the least this cache had to fetch
    /// for what it served.
    pub distinct_sent_bytes: u64,
    /// Chunks asked of it that it did not have: placed here and not fetched yet (warming),
    /// and not placed here (never, or no longer).
    pub missed_warming: u64,
    pub missed_unplaced: u64,
    /// The last problem talking to the tracker or the origin, if it persists.
    pub problem: Option<String>,
    /// What the tracker's reachability probe last found (`None`: an older tracker, or no
    /// answer yet).
    pub reach: Option<Reach>,
    /// The FTP control port it listens on (to forward on a router).
    pub listen_port: u16,
    /// The passive (data) ports, first and last (to forward beside the control port).
    pub passive_ports: (u16, u16),
    /// How the ports are mapped on the home router (`UPnP`, `NAT-PMP`), if they are.
    pub mapping: Option<&'static str>,
}

impl CacheStatus {
    /// Whether the tracker found it unreachable (then it is neither placed nor given to
    /// viewers, and fetches nothing from the origin).
    pub fn unreachable(&self) -> bool {
        self.reach
            .as_ref()
            .is_some_and(|r| r.state == ReachState::Unreachable)
    }

    /// One line for the user: where the cache is reachable, or what to forward.
    pub fn reach_line(&self) -> String {
        let (a, b) = self.passive_ports;
        match &self.reach {
            Some(r) if r.state == ReachState::Reachable => match self.mapping {
                Some(how) => format!("Your cache is reachable at {} ({how} mapping).", r.addr),
                None => format!("Your cache is reachable at {}.", r.addr),
            },
            Some(r) if r.state == ReachState::Unreachable => format!(
                "Your cache is not reachable from the internet ({}). Forward TCP port {} and \
                 {a}–{b} to this computer, or enable UPnP on your router.",
                r.detail, self.listen_port
            ),
            Some(_) => "The tracker is checking whether your cache can be reached.".to_owned(),
            None => "The tracker has not said whether your cache can be reached.".to_owned(),
        }
    }
}

/// Serves the store's chunks, and remembers where viewers ask in the movies the cache is
/// placed with (what it fetches next: [`warm_order`]).
#[derive(Debug)]
struct StoreProvider {
    store: Arc<ChunkStore>,
    asks: Arc<RecentAsks>,
}

#[async_trait]
impl ChunkProvider for StoreProvider {
    async fn chunk(&self, video: &str, segment: u32, index: u16) -> ChunkResult {
        let (store, asks, video) = (self.store.clone(), self.asks.clone(), video.to_owned());
        tokio::task::spawn_blocking(move || {
            let got = store.get(&video, segment, index);
            let placed = got.is_some() || store.wants(&video, segment, index);
            if placed {
                asks.record(&video, segment, std::time::Instant::now());
            }
            if got.is_none() {
                asks.missed(placed);
            }
            got
        })
        .await
        .map_err(|e| e.to_string())
    }
}

/// Limits the user can change while the cache runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    upload_bps: u64,
    storage_bytes: u64,
    /// Ours alone: the tracker is not told it.
    download_bps: u64,
}

impl Limits {
    /// What the tracker is told (a change of the download budget alone is not news to it).
    fn reported(&self) -> (u64, u64) {
        (self.upload_bps, self.storage_bytes)
    }
}

/// What the fetchers share with the heartbeat loop.
#[derive(Debug)]
struct Shared {
    /// Held while any task of the cache runs: no other process uses the folder meanwhile.
    _folder_lock: FolderLock,
    store: Arc<ChunkStore>,
    /// Where viewers asked lately: what to fetch first.
    asks: Arc<RecentAsks>,
    /// The (movie, segment) groups a fetcher is fetching now (the others skip them).
    fetching: Mutex<BTreeSet<(String, u32)>>,
    /// Origin tickets by movie.
    tickets: Mutex<HashMap<String, String>>,
    /// Other caches to fetch placed indices from, by movie (the tracker's latest word).
    sources: Mutex<HashMap<String, Vec<Peer>>>,
    /// Sources that failed, and until when they are not asked again (a bad chunk: never).
    rested: Mutex<HashMap<String, Option<std::time::Instant>>>,
    /// Sources that could not be connected to since the last heartbeat (reported).
    unreachable: Mutex<BTreeSet<String>>,
    /// Chunks verified from other caches and not yet reported, per movie.
    received: Mutex<HashMap<String, Progress>>,
    fetched_from_caches: AtomicU64,
    node_id: Mutex<String>,
    origin_addr: String,
    /// The origin's certificate fingerprint: fetched over FTPS pinned to it when set.
    origin_pin: Option<String>,
    /// The download budget, shared with [`Cache`] to change it live.
    download: Arc<RateCap>,
    storage: AtomicU64,
    fetched: AtomicU64,
    work: Notify,
    /// Fetchers completed an index of a movie: worth telling the tracker before the next
    /// tick, so viewers get this cache as a peer sooner.
    completed: Notify,
    problem: Mutex<Option<String>>,
}

/// A running cache.
#[derive(Debug)]
pub struct Cache {
    served: Arc<ServedBytes>,
    limits: watch::Sender<Limits>,
    /// The fetchers' download budget ([`Shared::download`]).
    download: Arc<RateCap>,
    status: watch::Receiver<CacheStatus>,
    tasks: Tasks,
    /// The tasks of `tasks`, for [`Cache::crash`].
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Cache {
    /// Locks the cache folder (one process per folder: [`CacheError::Locked`] names it), logs
    /// in, opens the store, starts the FTP server and registers; then runs in the
    /// background. Fails with a clear error when any of these cannot be done.
    pub async fn start(options: CacheOptions) -> Result<Cache, CacheError> {
        // First, before anything touches the store: one process per cache folder.
        let folder_lock = FolderLock::acquire(&options.dir).map_err(CacheError::Locked)?;
        let store =
            Arc::new(ChunkStore::open(&options.dir, &options.key_path).map_err(CacheError::Store)?);
        // What it held when it last ran, slots that still verify: reported with the first
        // heartbeat, so placement keeps it here instead of fetching it again.
        let found = store.clone();
        tokio::task::spawn_blocking(move || {
            let (target, manifests) = found.found_on_disk();
            found.retarget(&target, &manifests)
        })
        .await
        .map_err(CacheError::Interrupted)?
        .map_err(CacheError::Store)?;
        // Kept: logged in again before the session ends or when the tracker answers 401,
        // so the cache goes on earning without anyone typing the password again.
        let client =
            crate::env::tracker_client_trusting(&options.tracker, options.tracker_ca.as_deref())
                .map_err(CacheError::LogIn)?
                .login_kept(Credentials {
                    username: options.user.clone(),
                    password: options.password.clone(),
                })
                .await
                .map_err(CacheError::LogIn)?;
        let origin = client.origin().await.map_err(CacheError::Origin)?;
        let key = TicketKey::from_hex(&origin.ticket_key)
            .map_err(|e| CacheError::TicketKey(e.to_string()))?;
        let server_limits = ServerLimits {
            passive_ports: options.passive_ports,
            ..ServerLimits::default()
        };
        let asks = Arc::new(RecentAsks::default());
        let server = ChunkServer::start_with_limits(
            options.listen,
            "",
            key,
            Arc::new(StoreProvider {
                store: store.clone(),
                asks: asks.clone(),
            }),
            options.upload_bps,
            server_limits,
        )
        .await
        .map_err(|source| CacheError::Listen {
            addr: options.listen,
            source,
        })?;
        // Where the tracker saw this host come from: behind NAT, its public IPv4.
        let seen_from = origin.seen_from.parse::<std::net::IpAddr>().ok();
        // Behind a home router: ask it to forward the ports before the tracker probes them,
        // and name the address the tracker sees in PASV replies.
        let mapping = if options.port_mapping {
            crate::net::portmap::map_behind_nat(server.addr(), seen_from, options.passive_ports)
                .await
        } else {
            None
        };
        let mapping = mapping.map(|(mapping, public)| {
            server.set_passive_host(Some(public));
            mapping
        });
        let mut addrs = crate::net::advertised_addrs(
            server.addr(),
            seen_from,
            &crate::net::global_ipv6_addrs(),
        );
        addrs.truncate(1 + crate::net::MAX_EXTRA_ADDRS);
        let extra = addrs.split_off(1.min(addrs.len()));
        let fingerprint = match options.tls {
            TlsMode::Off => None,
            mode => {
                let (dir, cert, key) = tls::files_beside(&options.key_path);
                let identity = Identity::load_or_create(&dir, &cert, &key, "rivulet-cache")
                    .map_err(|e| CacheError::Tls(e.to_string()))?;
                let config = identity
                    .server_config()
                    .map_err(|e| CacheError::Tls(e.to_string()))?;
                server.set_tls(Some(ServerTls {
                    config,
                    forced: mode == TlsMode::Forced,
                }));
                Some(identity.fingerprint)
            }
        };
        let addr = match &options.advertise {
            None => addrs
                .first()
                .cloned()
                .unwrap_or_else(|| server.addr().to_string()),
            Some(host) if host.parse::<SocketAddr>().is_ok() => host.clone(),
            Some(host) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{}", server.addr().port())
            }
            Some(host) => format!("{host}:{}", server.addr().port()),
        };
        let limits = Limits {
            upload_bps: options.upload_bps,
            storage_bytes: options.storage_bytes,
            download_bps: options.download_bps,
        };
        let mut registration = NodeRegistration::cache(
            server.addr().to_string(),
            addr.clone(),
            limits.upload_bps.max(1),
            limits.storage_bytes,
        );
        if options.advertise.is_none() {
            registration.addrs = extra;
        }
        registration.fingerprint = fingerprint;
        let registered = client
            .register_node(&registration)
            .await
            .map_err(CacheError::Register)?;
        server.set_server_id(&registered.node_id);
        let download = Arc::new(RateCap::new(options.download_bps));
        let shared = Arc::new(Shared {
            _folder_lock: folder_lock,
            store,
            asks,
            fetching: Mutex::default(),
            tickets: Mutex::default(),
            sources: Mutex::default(),
            rested: Mutex::default(),
            unreachable: Mutex::default(),
            received: Mutex::default(),
            fetched_from_caches: AtomicU64::new(0),
            node_id: Mutex::new(registered.node_id.clone()),
            origin_addr: origin.ftp,
            origin_pin: origin.fingerprint,
            download: download.clone(),
            storage: AtomicU64::new(limits.storage_bytes),
            completed: Notify::new(),
            fetched: AtomicU64::new(0),
            work: Notify::new(),
            problem: Mutex::default(),
        });
        let (limits_tx, limits_rx) = watch::channel(limits);
        let (status_tx, status_rx) = watch::channel(CacheStatus {
            node_id: registered.node_id.clone(),
            addr,
            storage_bytes: limits.storage_bytes,
            upload_bps: limits.upload_bps,
            download_bps: limits.download_bps,
            reach: registered.reach.clone(),
            listen_port: server.addr().port(),
            passive_ports: options.passive_ports,
            mapping: mapping.as_ref().map(|m| m.protocol.label()),
            ..CacheStatus::default()
        });
        let tasks = Tasks::new();
        let mut handles: Vec<_> = (0..FETCHERS)
            .map(|_| {
                tasks.spawn_until_cancelled(
                    "cache-fetcher",
                    fetch_loop(shared.clone(), tasks.token()),
                )
            })
            .collect();
        if let Some(mapping) = mapping {
            handles.push(tasks.spawn(
                "cache-port-mapping",
                crate::net::portmap::keep(mapping, tasks.token()),
            ));
        }
        let server_served = server.served().clone();
        let beat = HeartbeatLoop {
            client,
            registration,
            server,
            shared,
            every: Duration::from_secs(registered.heartbeat_secs.max(1)),
            limits: limits_rx,
            status: status_tx,
            manifests: HashMap::new(),
            unreported: HashMap::new(),
            outbox: HeartbeatOutbox::new(),
            dropped_entries: 0,
            reported_limits: None,
            sent_total: 0,
            placed: false,
            quick_beats: UNPLACED_QUICK_BEATS,
        };
        handles.push(tasks.spawn("cache-heartbeats", beat.run(tasks.token())));
        Ok(Cache {
            served: server_served,
            limits: limits_tx,
            download,
            status: status_rx,
            tasks,
            handles,
        })
    }

    /// Changes the upload cap (bits/s) and storage budget (bytes); both apply at once.
    pub fn set_limits(&self, upload_bps: u64, storage_bytes: u64) {
        self.limits.send_modify(|l| {
            l.upload_bps = upload_bps;
            l.storage_bytes = storage_bytes;
        });
    }

    /// Changes the download budget (bits/s, 0: none) at once: fetches waiting on the old
    /// rate go on by the new one. The status shows it after the heartbeat that follows.
    pub fn set_download_bps(&self, download_bps: u64) {
        self.download.set(download_bps);
        self.limits.send_modify(|l| l.download_bps = download_bps);
    }

    /// Follows the cache's status.
    pub fn status(&self) -> watch::Receiver<CacheStatus> {
        self.status.clone()
    }

    /// What the cache has sent, counted as it goes.
    pub fn served(&self) -> &Arc<ServedBytes> {
        &self.served
    }

    /// Stops at once without telling anyone, as a crash would: connections drop, the
    /// tracker finds out when the heartbeats stop.
    pub fn crash(self) {
        for task in &self.handles {
            task.abort();
        }
    }

    /// Tells the tracker the cache leaves, stops serving and fetching, and waits until every
    /// task it started has ended.
    pub async fn stop(self) {
        self.tasks.shutdown().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cache's heartbeat loop and what it keeps between beats. Every `every` (or soon after
/// a fetcher completes an index, or at once when the limits change) it reports holdings,
/// bytes sent per viewer and changed limits, follows the reply (placement, origin tickets),
/// registers again if the tracker forgot it, and publishes the status. When stopped it
/// reports the last bytes sent, leaves and shuts the FTP server down.
struct HeartbeatLoop {
    client: TrackerClient,
    /// As first registered, for registering again.
    registration: NodeRegistration,
    server: ChunkServer,
    shared: Arc<Shared>,
    every: Duration,
    limits: watch::Receiver<Limits>,
    status: watch::Sender<CacheStatus>,
    /// Manifests of the movies placed here.
    manifests: HashMap<String, Arc<Manifest>>,
    /// Bytes sent and not yet in a report, per (viewer, movie); at most
    /// [`PENDING_MAX_ENTRIES`] pairs wait.
    unreported: HashMap<(String, String), u64>,
    /// Numbers the reports and keeps the one in flight until answered.
    outbox: HeartbeatOutbox,
    /// (viewer, movie) pairs dropped because too many waited.
    dropped_entries: u64,
    /// The limits the tracker last accepted.
    reported_limits: Option<Limits>,
    /// Bytes sent since start.
    sent_total: u64,
    /// Whether the last reply placed it (until then it asks again every
    /// [`UNPLACED_BEAT_GAP`], at most `quick_beats` more times).
    placed: bool,
    quick_beats: u32,
}

/// Time between heartbeats of a cache the tracker has not placed yet: a new cache learns
/// what to hold from the first reply after the next round (about a second), not a whole
/// heartbeat interval later, so it starts warming and serving that much sooner (under
/// churn, several seconds of every newcomer's life).
const UNPLACED_BEAT_GAP: Duration = Duration::from_secs(1);
/// Quick heartbeats after registering, at most: one the tracker does not place (it could
/// not reach it, say) goes back to the normal interval.
const UNPLACED_QUICK_BEATS: u32 = 10;

impl HeartbeatLoop {
    async fn run(mut self, stop: CancellationToken) -> Result<(), std::convert::Infallible> {
        let mut tick = tokio::time::interval(self.every);
        let mut last_beat = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tokio::time::sleep(UNPLACED_BEAT_GAP), if !self.placed && self.quick_beats > 0 => {
                    self.quick_beats -= 1;
                }
                _ = self.shared.completed.notified() => {
                    // Early, but not more than a few times a second.
                    tokio::time::sleep_until(last_beat + EARLY_BEAT_GAP).await;
                }
                changed = self.limits.changed() => {
                    if changed.is_err() { break; }
                    let now = *self.limits.borrow();
                    self.server.upload_cap().set(now.upload_bps);
                    self.shared.storage.store(now.storage_bytes, Ordering::Relaxed);
                    self.shared.store.shrink_to(now.storage_bytes);
                }
                () = stop.cancelled() => break,
            }
            last_beat = tokio::time::Instant::now();
            self.beat().await;
        }
        self.leave().await;
        Ok(())
    }

    /// One heartbeat and what follows from its reply.
    async fn beat(&mut self) {
        let shared = self.shared.clone();
        let now_limits = *self.limits.borrow();
        self.take_served();
        let changed = self.reported_limits.map(|l| l.reported()) != Some(now_limits.reported());
        let mut heartbeat = Heartbeat {
            holdings: shared.store.holdings(),
            upload_bps: changed.then_some(now_limits.upload_bps.max(1)),
            storage_bytes: changed.then_some(now_limits.storage_bytes),
            ..Heartbeat::default()
        };
        let unreported = &mut self.unreported;
        self.outbox.prepare(&mut heartbeat, || {
            (take_entries(unreported), take_receipts(&shared))
        });
        heartbeat.unreachable = std::mem::take(&mut *lock(&shared.unreachable))
            .into_iter()
            .take(rivulet_tracker_client::MAX_FAILED_PEERS)
            .collect();
        let node_id = lock(&shared.node_id).clone();
        let result = self.client.heartbeat(&node_id, &heartbeat).await;
        self.outbox.settle(&result);
        let mut reach = None;
        let problem = match result {
            Ok(reply) => {
                self.reported_limits = Some(now_limits);
                self.placed = reply.placed;
                reach = reply.reach.clone();
                apply(
                    &self.client,
                    &shared,
                    &mut self.manifests,
                    reply,
                    now_limits,
                )
                .await
                .err()
            }
            Err(e) if e.code() == Some(&ErrorCode::NotFound) => {
                // The tracker restarted or dropped us: register again under a new id; the
                // report it did not take goes as the new id's first.
                match reregister(
                    &self.client,
                    &self.registration,
                    &self.server,
                    &shared,
                    now_limits,
                )
                .await
                {
                    Ok(()) => {
                        self.outbox.restart();
                        self.reported_limits = Some(now_limits);
                        (self.placed, self.quick_beats) = (false, UNPLACED_QUICK_BEATS);
                        None
                    }
                    Err(e) => Some(format!("registering again: {e}")),
                }
            }
            Err(e) => Some(format!("heartbeat: {e}")),
        };
        let problem = problem.or_else(|| lock(&shared.problem).take());
        if let Some(p) = &problem {
            tracing::debug!(node = %node_id, "cache: {p}");
        }
        let (sent_total, distinct) = (self.sent_total, self.server.served().distinct_bytes());
        self.status.send_modify(|s| {
            s.node_id = lock(&shared.node_id).clone();
            s.holdings = shared.store.holdings();
            s.used_bytes = shared.store.used();
            s.storage_bytes = now_limits.storage_bytes;
            s.upload_bps = now_limits.upload_bps;
            s.download_bps = shared.download.get();
            s.sent_bytes = sent_total;
            s.fetched_bytes = shared.fetched.load(Ordering::Relaxed);
            s.fetched_from_caches_bytes = shared.fetched_from_caches.load(Ordering::Relaxed);
            s.distinct_sent_bytes = distinct;
            (s.missed_warming, s.missed_unplaced) = shared.asks.misses();
            s.problem = problem;
            if reach.is_some() {
                s.reach = reach;
            }
        });
    }

    /// Moves what the FTP server counted into `unreported`, dropping the pairs beyond
    /// [`PENDING_MAX_ENTRIES`] (a warning the first time).
    fn take_served(&mut self) {
        for (peer, video, bytes) in self.server.served().take_by_peer() {
            self.sent_total += bytes;
            let key = (peer, video);
            if self.unreported.len() >= PENDING_MAX_ENTRIES && !self.unreported.contains_key(&key) {
                self.dropped_entries += 1;
                if self.dropped_entries == 1 {
                    tracing::warn!(
                        max = PENDING_MAX_ENTRIES,
                        "too many (viewer, movie) byte counts wait for the tracker; \
                         further ones are dropped"
                    );
                }
                continue;
            }
            *self.unreported.entry(key).or_default() += bytes;
        }
    }

    /// Reports the last bytes sent (an unanswered report first, in a few reports at most),
    /// leaves, and stops the FTP server.
    async fn leave(mut self) {
        let shared = self.shared.clone();
        let node_id = lock(&shared.node_id).clone();
        self.take_served();
        for _ in 0..LAST_REPORTS {
            if !self.outbox.has_unanswered() && self.unreported.is_empty() {
                break;
            }
            let mut hb = Heartbeat {
                holdings: shared.store.holdings(),
                ..Heartbeat::default()
            };
            let unreported = &mut self.unreported;
            self.outbox.prepare(&mut hb, || {
                (take_entries(unreported), take_receipts(&shared))
            });
            let result = self.client.heartbeat(&node_id, &hb).await;
            self.outbox.settle(&result);
            if let Err(e) = result {
                tracing::debug!(node = %node_id, "last cache heartbeat: {e}");
                break;
            }
        }
        if let Err(e) = self.client.leave(&node_id).await {
            tracing::debug!(node = %node_id, "leaving: {e}");
        }
        self.server.shutdown().await;
    }
}

/// Most (viewer, movie) entries in one report's `sent` (the tracker's limit per list).
pub const REPORT_MAX_ENTRIES: usize = 1024;
/// Most (viewer, movie) byte counts waiting for a report.
pub const PENDING_MAX_ENTRIES: usize = 4 * REPORT_MAX_ENTRIES;
/// Most reports [`Cache::stop`] sends to get what waits to the tracker.
const LAST_REPORTS: usize = 3;

/// The next report's `sent` entries, taken from `unreported`: at most
/// [`REPORT_MAX_ENTRIES`], the rest waits.
fn take_entries(unreported: &mut HashMap<(String, String), u64>) -> Vec<PeerBytes> {
    let keys: Vec<(String, String)> = unreported
        .keys()
        .take(REPORT_MAX_ENTRIES)
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|key| {
            let bytes = unreported.remove(&key)?;
            Some(PeerBytes::new(key.0, key.1, bytes))
        })
        .filter(|p| p.bytes > 0)
        .collect()
}

/// The next report's `received` entries: per movie and source cache, the chunks verified
/// from it (at most [`REPORT_MAX_ENTRIES`] entries; the rest waits).
fn take_receipts(shared: &Shared) -> Vec<PeerBytes> {
    let mut received = lock(&shared.received);
    let mut out = Vec::new();
    for (video, progress) in received.iter() {
        if out.len() >= REPORT_MAX_ENTRIES {
            break;
        }
        let room = REPORT_MAX_ENTRIES - out.len();
        out.extend(progress.take_received_within(video, room, REPORT_MAX_CHUNKS));
    }
    received.retain(|_, p| p.has_unreported());
    out
}

async fn reregister(
    client: &TrackerClient,
    registration: &NodeRegistration,
    server: &ChunkServer,
    shared: &Shared,
    limits: Limits,
) -> Result<(), ClientError> {
    let mut registration = registration.clone();
    registration.upload_bps = limits.upload_bps.max(1);
    registration.storage_bytes = limits.storage_bytes;
    let registered = client.register_node(&registration).await?;
    server.set_server_id(&registered.node_id);
    *lock(&shared.node_id) = registered.node_id;
    Ok(())
}

/// Follows a heartbeat reply: fetches manifests of newly placed movies, retargets the store
/// and hands the fetchers fresh origin tickets.
async fn apply(
    client: &TrackerClient,
    shared: &Shared,
    manifests: &mut HashMap<String, Arc<Manifest>>,
    reply: HeartbeatReply,
    limits: Limits,
) -> Result<(), String> {
    // A cache nobody can reach does not fetch from the origin (the tracker gives it no
    // tickets either): what it fetched would serve nobody.
    let unreachable = reply
        .reach
        .as_ref()
        .is_some_and(|r| r.state == ReachState::Unreachable);
    {
        let mut tickets = lock(&shared.tickets);
        tickets.clear();
        for t in reply.origin.iter().filter(|_| !unreachable) {
            tickets.insert(t.video.clone(), t.ticket.clone());
        }
        let mut sources = lock(&shared.sources);
        sources.clear();
        for peer in reply.sources.iter().filter(|_| !unreachable) {
            sources
                .entry(peer.video.clone())
                .or_default()
                .push(peer.clone());
        }
    }
    if !reply.refused.is_empty() {
        // Holdings the tracker does not accept (a movie it removed…): gone from the store,
        // the rest goes on.
        let (store, refused) = (shared.store.clone(), reply.refused.clone());
        let dropped = tokio::task::spawn_blocking(move || store.drop_holdings(&refused))
            .await
            .map_err(|e| e.to_string())?;
        for h in &reply.refused {
            if shared.store.manifest(&h.video).is_none() {
                manifests.remove(&h.video);
            }
        }
        tracing::info!(
            chunks = dropped,
            movies = reply.refused.len(),
            "dropped holdings the tracker refused"
        );
    }
    // Not in a placement round yet: keep what the store has (the round will see it).
    if !reply.placed {
        return Ok(());
    }
    let mut target: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for h in &reply.hold {
        if !manifests.contains_key(&h.video) {
            let bytes = client
                .manifest(&h.video)
                .await
                .map_err(|e| format!("manifest of {}: {e}", h.video))?;
            let manifest =
                Manifest::from_json(&bytes).map_err(|e| format!("manifest of {}: {e}", h.video))?;
            manifests.insert(h.video.clone(), Arc::new(manifest));
        }
        target.insert(h.video.clone(), h.indices.iter().copied().collect());
    }
    manifests.retain(|v, _| target.contains_key(v));
    let store = shared.store.clone();
    let m = manifests.clone();
    tokio::task::spawn_blocking(move || store.retarget(&target, &m))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    shared.store.shrink_to(limits.storage_bytes);
    shared.work.notify_waiters();
    Ok(())
}

/// Parallel downloads from the origin.
const FETCHERS: usize = 2;

/// Why storing a batch stopped.
#[derive(Debug)]
enum StoreFailure {
    /// The origin sent a chunk that does not verify.
    Bad,
    /// The store could not write.
    Store(String),
}

/// Verifies a batch from the origin and stores it (within the storage budget), up to the
/// first bad chunk; true if some chunk was stored.
fn store_verified(
    shared: &Shared,
    video: &str,
    manifest: &Manifest,
    segment: u32,
    got: Vec<(u16, Vec<u8>)>,
) -> Result<bool, StoreFailure> {
    let mut any = false;
    for (index, wire) in got {
        manifest
            .verify_chunk(segment, index, &wire)
            .map_err(|_| StoreFailure::Bad)?;
        shared
            .fetched
            .fetch_add(wire.len() as u64, Ordering::Relaxed);
        let budget = shared.storage.load(Ordering::Relaxed);
        any |= shared
            .store
            .put(video, segment, index, &wire, budget)
            .map_err(|e| StoreFailure::Store(e.to_string()))?;
    }
    Ok(any)
}

/// How many (movie, index) the store holds complete.
fn complete_indices(store: &ChunkStore) -> usize {
    store.holdings().iter().map(|h| h.indices.len()).sum()
}

/// Shortest time between a heartbeat and one sent early because an index completed.
const EARLY_BEAT_GAP: Duration = Duration::from_millis(250);

/// A (movie, segment) group one fetcher took; the others skip it until it is dropped.
struct Claim<'a> {
    fetching: &'a Mutex<BTreeSet<(String, u32)>>,
    key: (String, u32),
}

impl<'a> Claim<'a> {
    fn take(fetching: &'a Mutex<BTreeSet<(String, u32)>>, key: (String, u32)) -> Option<Self> {
        let taken = lock(fetching).insert(key.clone());
        // Not `then_some`: a Claim made eagerly and dropped would lock `fetching` again.
        taken.then(|| Claim { fetching, key })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(self.fetching).remove(&self.key);
    }
}

/// Fetches missing chunks, a segment's wanted indices of a movie in one transfer, from other
/// caches first and the origin for the rest, verifying each chunk before it is stored. The
/// segments just ahead of where viewers ask come first ([`warm_order`]); the order is made
/// again when they ask somewhere new. [`FETCHERS`] of these run, each taking the next group
/// no other one has.
async fn fetch_loop(
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut sessions: HashMap<String, ChunkSession> = HashMap::new();
    let mut peer_sessions: HashMap<(String, String), ChunkSession> = HashMap::new();
    let timeout = Duration::from_secs(10);
    while !stop.is_cancelled() {
        let mut groups: Vec<((String, u32), Vec<u16>)> = Vec::new();
        for (video, segment, index) in shared.store.missing() {
            match groups.last_mut() {
                Some((at, indices))
                    if at.0 == video && at.1 == segment && indices.len() < MAX_BATCH =>
                {
                    indices.push(index);
                }
                _ => groups.push(((video, segment), vec![index])),
            }
        }
        let plan = shared.asks.generation();
        warm_order::order(&mut groups, &shared.asks.recent(std::time::Instant::now()));
        let complete_before = complete_indices(&shared.store);
        let (mut failed, mut stored_any, mut took_any) = (false, false, false);
        for ((video, segment), mut indices) in groups {
            if stop.is_cancelled() {
                return Ok(());
            }
            if took_any && shared.asks.generation() != plan {
                // Viewers asked somewhere new: order again.
                break;
            }
            let Some(_claim) = Claim::take(&shared.fetching, (video.clone(), segment)) else {
                continue;
            };
            took_any = true;
            indices.retain(|i| shared.store.wants(&video, segment, *i));
            if indices.is_empty() {
                continue;
            }
            let Some(manifest) = shared.store.manifest(&video) else {
                continue;
            };
            // Other caches first: the origin sends only what none of them could.
            let from_peers = fetch_from_peers(
                &shared,
                &mut peer_sessions,
                &manifest,
                &video,
                segment,
                &indices,
            )
            .await;
            stored_any |= from_peers.stored;
            indices.retain(|i| !from_peers.got.contains(i));
            if indices.is_empty() {
                continue;
            }
            let Some(ticket) = lock(&shared.tickets).get(&video).cloned() else {
                continue;
            };
            if !sessions.contains_key(&video) {
                let node_id = lock(&shared.node_id).clone();
                match ChunkSession::connect_pinned(
                    &shared.origin_addr,
                    &node_id,
                    &ticket,
                    &video,
                    timeout,
                    shared.origin_pin.as_deref(),
                )
                .await
                {
                    Ok(s) => {
                        sessions.insert(video.clone(), s);
                    }
                    Err(e) => {
                        *lock(&shared.problem) = Some(format!("origin: {e}"));
                        failed = true;
                        break;
                    }
                }
            }
            let Some(session) = sessions.get_mut(&video) else {
                continue;
            };
            let limit = manifest.wire_len(segment);
            shared.download.acquire(limit * indices.len()).await;
            let got = match session.fetch_batch(segment, &indices, limit, false).await {
                Ok(got) if got.len() == indices.len() => got,
                Ok(_) | Err(_) => {
                    sessions.remove(&video);
                    failed = true;
                    break;
                }
            };
            let (sh, name) = (shared.clone(), video.clone());
            let stored = tokio::task::spawn_blocking(move || {
                store_verified(&sh, &name, &manifest, segment, got)
            })
            .await
            .unwrap_or(Ok(false));
            match stored {
                Ok(any) => stored_any |= any,
                Err(StoreFailure::Bad) => {
                    // A new session next time.
                    sessions.remove(&video);
                    failed = true;
                    break;
                }
                Err(StoreFailure::Store(e)) => {
                    *lock(&shared.problem) = Some(e);
                    failed = true;
                    break;
                }
            }
        }
        if complete_indices(&shared.store) > complete_before {
            shared.completed.notify_one();
        }
        if !stored_any && !failed {
            // Nothing could be fetched (no ticket yet, budget full): wait for news.
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.work.notified()).await;
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// How long a cache that failed as a source is not asked again.
const SOURCE_REST: Duration = Duration::from_secs(10);
/// Longest a fetch from another cache may take to connect or answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`fetch_from_peers`] got.
#[derive(Debug, Default)]
struct FromPeers {
    /// Indices it fetched and verified (stored, or over the storage budget).
    got: BTreeSet<u16>,
    /// Whether some chunk was stored.
    stored: bool,
}

/// Fetches what it can of `indices` of one segment from the other caches the tracker named
/// (each source's share in one transfer, within the download budget), verifying and storing
/// each chunk and keeping a receipt for the tracker. A source that cannot be reached rests
/// for [`SOURCE_REST`] and is reported; one that sends a bad chunk is not asked again.
async fn fetch_from_peers(
    shared: &Shared,
    sessions: &mut HashMap<(String, String), ChunkSession>,
    manifest: &Arc<Manifest>,
    video: &str,
    segment: u32,
    indices: &[u16],
) -> FromPeers {
    let mut out = FromPeers::default();
    let sources = lock(&shared.sources)
        .get(video)
        .cloned()
        .unwrap_or_default();
    let now = std::time::Instant::now();
    for source in sources {
        let resting = lock(&shared.rested)
            .get(&source.node_id)
            .is_some_and(|until| until.is_none_or(|u| u > now));
        let take: Vec<u16> = indices
            .iter()
            .copied()
            .filter(|i| !out.got.contains(i) && source.indices.contains(i))
            .collect();
        if resting || take.is_empty() {
            continue;
        }
        let key = (source.node_id.clone(), video.to_owned());
        let session = match sessions.remove(&key) {
            Some(s) => s,
            None => {
                let node_id = lock(&shared.node_id).clone();
                let mut connected = Err(None);
                for addr in std::iter::once(&source.addr).chain(&source.addrs) {
                    match ChunkSession::connect_pinned(
                        addr,
                        &node_id,
                        &source.ticket,
                        video,
                        PEER_TIMEOUT,
                        source.fingerprint.as_deref(),
                    )
                    .await
                    {
                        Ok(s) => {
                            connected = Ok(s);
                            break;
                        }
                        Err(e) => connected = Err(Some(e)),
                    }
                }
                match connected {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(source = %source.node_id, "warming from a cache: {e:?}");
                        rest(shared, &source.node_id, Some(now + SOURCE_REST));
                        lock(&shared.unreachable).insert(source.node_id.clone());
                        continue;
                    }
                }
            }
        };
        let mut session = session;
        let limit = manifest.wire_len(segment);
        shared.download.acquire(limit * take.len()).await;
        let got = match tokio::time::timeout(
            PEER_TIMEOUT,
            session.fetch_batch(segment, &take, limit, false),
        )
        .await
        {
            Ok(Ok(got)) => got,
            Ok(Err(_)) | Err(_) => {
                rest(shared, &source.node_id, Some(now + SOURCE_REST));
                continue;
            }
        };
        sessions.insert(key, session);
        // Verified and stored off the runtime, up to the first chunk that does not verify.
        let (store, m, name, budget) = (
            shared.store.clone(),
            manifest.clone(),
            video.to_owned(),
            shared.storage.load(Ordering::Relaxed),
        );
        let asked = take.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut kept = Vec::new();
            for (index, wire) in got {
                if !asked.contains(&index) || m.verify_chunk(segment, index, &wire).is_err() {
                    return (kept, Some(Ok(index)));
                }
                match store.put(&name, segment, index, &wire, budget) {
                    Ok(put) => kept.push((index, wire.len() as u64, put)),
                    Err(e) => return (kept, Some(Err(e.to_string()))),
                }
            }
            (kept, None)
        })
        .await;
        let Ok((kept, failure)) = stored else {
            return out;
        };
        for (index, bytes, put) in kept {
            shared
                .fetched_from_caches
                .fetch_add(bytes, Ordering::Relaxed);
            lock(&shared.received)
                .entry(video.to_owned())
                .or_default()
                .add(&source.node_id, segment, index, bytes);
            out.stored |= put;
            out.got.insert(index);
        }
        match failure {
            None => {}
            Some(Ok(index)) => {
                tracing::warn!(source = %source.node_id, video, segment, index,
                    "a cache sent a chunk that does not verify; not asked again");
                rest(shared, &source.node_id, None);
                sessions.retain(|(s, _), _| s != &source.node_id);
            }
            Some(Err(e)) => {
                *lock(&shared.problem) = Some(e);
                return out;
            }
        }
    }
    out
}

/// Rests source `id` until `until` (`None`: for good).
fn rest(shared: &Shared, id: &str, until: Option<std::time::Instant>) {
    lock(&shared.rested).insert(id.to_owned(), until);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_start_from_the_report_defaults() {
        let creds = Credentials {
            username: "ann".into(),
            password: "pw".into(),
        };
        let o = CacheOptions::new("http://t:1", creds, "/c", "/k/store.key");
        assert_eq!((o.user.as_str(), o.password.as_str()), ("ann", "pw"));
        assert_eq!(o.storage_bytes, DEFAULT_STORAGE_BYTES);
        assert_eq!(o.upload_bps, DEFAULT_UPLOAD_BPS);
        assert_eq!(o.download_bps, 0);
        assert!(o.listen.ip().is_loopback() && o.listen.port() == 0);
        assert_eq!(o.advertise, None);
        let o = o.storage_bytes(5).upload_bps(6).download_bps(7);
        assert_eq!((o.storage_bytes, o.upload_bps, o.download_bps), (5, 6, 7));
    }
}
