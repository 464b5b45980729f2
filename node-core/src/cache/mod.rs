//! The cache role: registers with the tracker as its account's cache, holds what placement
//! asks (fetched from the origin within a download budget, kept in the hidden encrypted
//! [`store`]), serves it to viewers over FTP under one upload cap, and reports holdings and
//! bytes sent by heartbeat. Limits change live through [`Cache::set_limits`].

pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use rivulet_tracker_client::{
    ClientError, Credentials, ErrorCode, Heartbeat, HeartbeatReply, Holding, NodeKind,
    NodeRegistration, PeerBytes, TrackerClient,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::format::Manifest;
use crate::peer::chunk_server::{ChunkProvider, ChunkServer, RateCap, ServedBytes};
use crate::peer::ftp::{ChunkSession, MAX_BATCH};
use crate::ticket::TicketKey;
use store::ChunkStore;

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
    /// The cache folder; the store lives hidden inside it.
    pub dir: PathBuf,
    /// The store key, outside the cache folder.
    pub key_path: PathBuf,
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
    /// Bytes sent to viewers since start.
    pub sent_bytes: u64,
    /// Bytes fetched from the origin since start.
    pub fetched_bytes: u64,
    /// Bytes of the distinct chunks sent (each once): the least this cache had to fetch
    /// for what it served.
    pub distinct_sent_bytes: u64,
    /// The last problem talking to the tracker or the origin, if it persists.
    pub problem: Option<String>,
}

/// Serves the store's chunks.
#[derive(Debug)]
struct StoreProvider(Arc<ChunkStore>);

#[async_trait]
impl ChunkProvider for StoreProvider {
    async fn chunk(
        &self,
        video: &str,
        segment: u32,
        index: u16,
    ) -> Result<Option<Vec<u8>>, String> {
        let (store, video) = (self.0.clone(), video.to_owned());
        tokio::task::spawn_blocking(move || store.get(&video, segment, index))
            .await
            .map_err(|e| e.to_string())
    }
}

/// Limits the user can change while the cache runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    upload_bps: u64,
    storage_bytes: u64,
}

/// What the fetchers share with the heartbeat loop.
#[derive(Debug)]
struct Shared {
    store: Arc<ChunkStore>,
    /// Origin tickets by movie.
    tickets: Mutex<HashMap<String, String>>,
    node_id: Mutex<String>,
    origin_addr: String,
    download: RateCap,
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
    status: watch::Receiver<CacheStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cache {
    /// Logs in, opens the store, starts the FTP server and registers; then runs in the
    /// background. Fails with a clear error when any of these cannot be done.
    pub async fn start(options: CacheOptions) -> anyhow::Result<Cache> {
        let store = Arc::new(
            ChunkStore::open(&options.dir, &options.key_path).context("opening the chunk store")?,
        );
        // What it held when it last ran, slots that still verify: reported with the first
        // heartbeat, so placement keeps it here instead of fetching it again.
        let found = store.clone();
        tokio::task::spawn_blocking(move || {
            let (target, manifests) = found.found_on_disk();
            found.retarget(&target, &manifests)
        })
        .await
        .context("reading the chunk store")?
        .context("reading the chunk store")?;
        let anon = TrackerClient::new(&options.tracker);
        let session = anon
            .login(&Credentials {
                username: options.user.clone(),
                password: options.password.clone(),
            })
            .await
            .context("logging in")?;
        let client = anon.with_token(session.token);
        let origin = client.origin().await.context("asking for the origin")?;
        let key = TicketKey::from_hex(&origin.ticket_key)
            .map_err(|e| anyhow::anyhow!("the tracker's ticket key: {e}"))?;
        let server = ChunkServer::start(
            options.listen,
            "",
            key,
            Arc::new(StoreProvider(store.clone())),
            options.upload_bps,
        )
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
        let addr = match &options.advertise {
            None => server.addr().to_string(),
            Some(host) if host.parse::<SocketAddr>().is_ok() => host.clone(),
            Some(host) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{}", server.addr().port())
            }
            Some(host) => format!("{host}:{}", server.addr().port()),
        };
        let limits = Limits {
            upload_bps: options.upload_bps,
            storage_bytes: options.storage_bytes,
        };
        let registration = NodeRegistration {
            kind: NodeKind::Cache,
            bind: server.addr().to_string(),
            advertise: addr.clone(),
            upload_bps: limits.upload_bps.max(1),
            storage_bytes: limits.storage_bytes,
        };
        let registered = client
            .register_node(&registration)
            .await
            .context("registering the cache")?;
        server.set_server_id(&registered.node_id);
        let shared = Arc::new(Shared {
            store,
            tickets: Mutex::default(),
            node_id: Mutex::new(registered.node_id.clone()),
            origin_addr: origin.ftp,
            download: RateCap::new(options.download_bps),
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
            ..CacheStatus::default()
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let every = Duration::from_secs(registered.heartbeat_secs.max(1));
        let server_served = server.served().clone();
        let task = tokio::spawn(run(
            client,
            registration,
            server,
            shared,
            every,
            limits_rx,
            status_tx,
            stop_rx,
        ));
        Ok(Cache {
            served: server_served,
            limits: limits_tx,
            status: status_rx,
            stop: stop_tx,
            task,
        })
    }

    /// Changes the upload cap (bits/s) and storage budget (bytes); both apply at once.
    pub fn set_limits(&self, upload_bps: u64, storage_bytes: u64) {
        let _ = self.limits.send(Limits {
            upload_bps,
            storage_bytes,
        });
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
        self.task.abort();
    }

    /// Tells the tracker the cache leaves, stops serving and fetching.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: TrackerClient,
    registration: NodeRegistration,
    server: ChunkServer,
    shared: Arc<Shared>,
    every: Duration,
    mut limits: watch::Receiver<Limits>,
    status: watch::Sender<CacheStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut fetchers = JoinSet::new();
    for worker in 0..FETCHERS {
        fetchers.spawn(fetch_loop(shared.clone(), worker, stop.clone()));
    }
    let mut manifests: HashMap<String, Arc<Manifest>> = HashMap::new();
    // Bytes sent and not yet reported (kept when a heartbeat fails).
    let mut unreported: HashMap<(String, String), u64> = HashMap::new();
    let mut reported_limits: Option<Limits> = None;
    let mut sent_total = 0u64;
    let mut tick = tokio::time::interval(every);
    let mut last_beat = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.completed.notified() => {
                // Early, but not more than a few times a second.
                tokio::time::sleep_until(last_beat + EARLY_BEAT_GAP).await;
            }
            changed = limits.changed() => {
                if changed.is_err() { break; }
                let now = *limits.borrow();
                server.upload_cap().set(now.upload_bps);
                shared.storage.store(now.storage_bytes, Ordering::Relaxed);
                shared.store.shrink_to(now.storage_bytes);
            }
            _ = stop.changed() => break,
        }
        let now_limits = *limits.borrow();
        for (peer, video, bytes) in server.served().take_by_peer() {
            sent_total += bytes;
            *unreported.entry((peer, video)).or_default() += bytes;
        }
        let heartbeat = Heartbeat {
            holdings: shared.store.holdings(),
            sent: unreported
                .iter()
                .map(|((peer, video), bytes)| PeerBytes {
                    peer: peer.clone(),
                    video: video.clone(),
                    bytes: *bytes,
                })
                .collect(),
            upload_bps: (reported_limits != Some(now_limits))
                .then_some(now_limits.upload_bps.max(1)),
            storage_bytes: (reported_limits != Some(now_limits))
                .then_some(now_limits.storage_bytes),
            ..Heartbeat::default()
        };
        let node_id = lock(&shared.node_id).clone();
        last_beat = tokio::time::Instant::now();
        let problem = match client.heartbeat(&node_id, &heartbeat).await {
            Ok(reply) => {
                unreported.clear();
                reported_limits = Some(now_limits);
                apply(&client, &shared, &mut manifests, reply, now_limits)
                    .await
                    .err()
            }
            Err(e) if e.code() == Some(&ErrorCode::NotFound) => {
                // The tracker restarted or dropped us: register again under a new id.
                match reregister(&client, &registration, &server, &shared, now_limits).await {
                    Ok(()) => {
                        reported_limits = Some(now_limits);
                        None
                    }
                    Err(e) => Some(format!("registering again: {e}")),
                }
            }
            Err(e) => Some(format!("heartbeat: {e}")),
        };
        let problem = problem.or_else(|| lock(&shared.problem).take());
        status.send_modify(|s| {
            s.node_id = lock(&shared.node_id).clone();
            s.holdings = shared.store.holdings();
            s.used_bytes = shared.store.used();
            s.storage_bytes = now_limits.storage_bytes;
            s.upload_bps = now_limits.upload_bps;
            s.sent_bytes = sent_total;
            s.fetched_bytes = shared.fetched.load(Ordering::Relaxed);
            s.distinct_sent_bytes = server.served().distinct_bytes();
            s.problem = problem;
        });
    }
    fetchers.abort_all();
    let node_id = lock(&shared.node_id).clone();
    // Report the last bytes sent, then leave.
    let last: Vec<PeerBytes> = server
        .served()
        .take_by_peer()
        .into_iter()
        .map(|(peer, video, bytes)| ((peer, video), bytes))
        .chain(unreported)
        .fold(HashMap::<(String, String), u64>::new(), |mut m, (k, b)| {
            *m.entry(k).or_default() += b;
            m
        })
        .into_iter()
        .map(|((peer, video), bytes)| PeerBytes { peer, video, bytes })
        .collect();
    if !last.is_empty() {
        let hb = Heartbeat {
            holdings: shared.store.holdings(),
            sent: last,
            ..Heartbeat::default()
        };
        let _ = client.heartbeat(&node_id, &hb).await;
    }
    let _ = client.leave(&node_id).await;
    server.shutdown().await;
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
    {
        let mut tickets = lock(&shared.tickets);
        tickets.clear();
        for t in &reply.origin {
            tickets.insert(t.video.clone(), t.ticket.clone());
        }
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

/// Fetches missing chunks from the origin, a segment's wanted indices of a movie in one
/// transfer (worker `worker` of [`FETCHERS`] takes every FETCHERS-th such group), verifying
/// each chunk before it is stored.
async fn fetch_loop(shared: Arc<Shared>, worker: usize, stop: watch::Receiver<bool>) {
    let mut sessions: HashMap<String, ChunkSession> = HashMap::new();
    let timeout = Duration::from_secs(10);
    while !*stop.borrow() {
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
        let mine: Vec<_> = groups
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % FETCHERS == worker)
            .map(|(_, g)| g)
            .collect();
        if mine.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.work.notified()).await;
            continue;
        }
        let complete_before = complete_indices(&shared.store);
        let (mut failed, mut stored_any) = (false, false);
        for ((video, segment), mut indices) in mine {
            if *stop.borrow() {
                return;
            }
            indices.retain(|i| shared.store.wants(&video, segment, *i));
            if indices.is_empty() {
                continue;
            }
            let (Some(manifest), Some(ticket)) = (
                shared.store.manifest(&video),
                lock(&shared.tickets).get(&video).cloned(),
            ) else {
                continue;
            };
            if !sessions.contains_key(&video) {
                let node_id = lock(&shared.node_id).clone();
                match ChunkSession::connect(&shared.origin_addr, &node_id, &ticket, &video, timeout)
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
}
