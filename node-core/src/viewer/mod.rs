//! The viewer role: joins the network as a viewer of one movie, rebuilds it from verified
//! chunks of many sources into a seekable stream, and reports to the tracker what it got
//! from whom. [`Viewer::join`] is the one way in (log-in, purchase, manifest, registration,
//! peer set, heartbeats); the app plays from its stream and follows its [`ViewerStatus`];
//! [`watch`] consumes the stream like a player and writes the file out, as `rivulet-node
//! watch` does.
//!
//! Invariants: a segment lands in the stream only after each of its chunks passed the
//! manifest's Merkle check and the rebuilt segment matched its hash; nothing is left at the
//! output path unless the whole file matched the manifest.

pub mod http;
mod segment;
pub mod sources;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rivulet_tracker_client::{
    ClientError, Credentials, ErrorCode, Heartbeat, HeartbeatOutbox, HeartbeatReply,
    NodeRegistration, TrackerClient, Video,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

pub use segment::{
    PENDING_MAX_CHUNKS, PeerFailures, Progress, REPORT_MAX_CHUNKS, REPORT_MAX_PEERS,
};
use sources::Sources;
use stream::{Stream, StreamFile, StreamReader, Window};

use crate::format::{Digest, Manifest};
use crate::task::Tasks;

/// How to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Consume at the movie's bitrate like a player (and count stalls); otherwise as fast as
    /// possible.
    pub realtime: bool,
    /// Segments fetched at once.
    pub parallel: usize,
    /// In real time, how many segments ahead of the playhead to fetch.
    pub look_ahead: u32,
    /// Longest wait for one connection or chunk.
    pub timeout: Duration,
    /// The player's byte position, if a player reads the stream ("buffered ahead" in the
    /// status follows it).
    pub playhead: Option<watch::Receiver<u64>>,
    /// Unlink the rebuilt file as soon as it is made and seal its bytes with a key of this
    /// process: they live only behind this process's open file, encrypted, so nothing
    /// playable is left on disk or behind the file, while playing or after a crash (the
    /// player's case). Off, the file stays named and plain (`rivulet-node watch` renames it
    /// to its output).
    pub private: bool,
    /// For a private stream, the most bytes its sealed file holds on disk: segments
    /// farthest from the playhead are dropped (and fetched again on a seek back to them),
    /// and no more is fetched ahead than this leaves room for. At least two segments,
    /// whatever is asked. [`DEFAULT_SPILL_BYTES`] unless set.
    pub spill_bytes: u64,
}

/// 256 MiB: what a private stream holds on disk at most unless told otherwise (about ten
/// minutes of a 3.2 Mbit/s movie).
pub const DEFAULT_SPILL_BYTES: u64 = 256 << 20;

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            realtime: false,
            parallel: 4,
            look_ahead: 8,
            timeout: Duration::from_secs(10),
            playhead: None,
            private: false,
            spill_bytes: DEFAULT_SPILL_BYTES,
        }
    }
}

/// What a watch did, as `rivulet-node watch` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchReport {
    pub video: String,
    pub bytes: u64,
    /// SHA-256 of the rebuilt file.
    pub sha256: String,
    /// Verified bytes received from the origin and from caches.
    pub from_origin_bytes: u64,
    pub from_caches_bytes: u64,
    /// From the start of the watch to the first segment ready to play.
    pub start_ms: u64,
    /// Times playback had to wait for a segment (real time only).
    pub stalls: u32,
    /// Total time spent waiting (real time only).
    pub stall_ms: u64,
    /// Longest single wait (real time only).
    pub longest_stall_ms: u64,
    /// Verified bytes per source (`origin` or a cache's node id).
    pub from_peers: std::collections::BTreeMap<String, u64>,
    /// Caches that sent a chunk that failed verification.
    pub bad_peers: Vec<String>,
}

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("the tracker: {0}")]
    Tracker(#[from] rivulet_tracker_client::ClientError),
    #[error("rebuilding the movie: {0}")]
    Stream(std::io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the rebuilt file does not match the manifest (BLAKE3 {got}, expected {want})")]
    Mismatch { got: String, want: String },
}

/// What a viewer is doing, for the player's live panel: a `tokio::sync::watch` value that
/// changes when a segment lands, the peer set changes or the playhead moves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewerStatus {
    /// The movie being watched.
    pub video: String,
    /// Verified bytes from caches.
    pub from_caches_bytes: u64,
    /// Verified bytes from the origin.
    pub from_origin_bytes: u64,
    /// Caches in the peer set now.
    pub peers: usize,
    /// Rebuilt bytes right after the playhead.
    pub buffered_ahead_bytes: u64,
    /// Segments rebuilt.
    pub complete_segments: u32,
    /// Segments in the movie.
    pub segments: u32,
}

/// How to join a movie with [`Viewer::join`].
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// Log in with these first (the session is kept: see [`TrackerClient::login_kept`]);
    /// `None` when the client already carries a session token.
    pub credentials: Option<Credentials>,
    /// Buy the movie when the account has not (otherwise an unbought movie is refused with
    /// [`JoinError::NotBought`]).
    pub buy: bool,
    /// Where the rebuilt bytes go while the movie plays (a sparse file, created).
    pub download: PathBuf,
    /// How to fetch (and the player's byte position, for
    /// [`ViewerStatus::buffered_ahead_bytes`]).
    pub watch: WatchOptions,
}

impl JoinOptions {
    /// Joins with an already logged-in client, refusing an unbought movie, rebuilding into
    /// `download`, with the default [`WatchOptions`].
    pub fn new(download: impl Into<PathBuf>) -> JoinOptions {
        JoinOptions {
            credentials: None,
            buy: false,
            download: download.into(),
            watch: WatchOptions::default(),
        }
    }

    /// Logs in with `credentials` first.
    pub fn credentials(mut self, credentials: Credentials) -> JoinOptions {
        self.credentials = Some(credentials);
        self
    }

    /// Buys the movie first when it is not bought.
    pub fn buy(mut self, buy: bool) -> JoinOptions {
        self.buy = buy;
        self
    }

    /// Follows the player's byte position.
    pub fn playhead(mut self, playhead: watch::Receiver<u64>) -> JoinOptions {
        self.watch.playhead = Some(playhead);
        self
    }

    /// Fetches this way (keeping a playhead given before).
    pub fn watch(mut self, watch: WatchOptions) -> JoinOptions {
        let playhead = self.watch.playhead.take();
        self.watch = WatchOptions {
            playhead: watch.playhead.or(playhead),
            ..watch
        };
        self
    }
}

/// Why a viewer could not join a movie, in words for the person who asked.
#[derive(Debug, Error)]
pub enum JoinError {
    /// The tracker refused the log-in or could not be reached.
    #[error("logging in: {0}")]
    LogIn(#[source] ClientError),
    /// The movie could not be looked up (unknown id, tracker unreachable…).
    #[error("looking up the movie: {0}")]
    Lookup(#[source] ClientError),
    /// The account does not own the movie and buying was not asked for.
    #[error("the account has not bought \"{title}\" ({price} points)")]
    NotBought {
        /// The movie's title.
        title: String,
        /// Its price in points.
        price: u64,
    },
    /// The purchase was refused (not enough points…).
    #[error("buying the movie: {0}")]
    Buy(#[source] ClientError),
    /// The manifest could not be fetched.
    #[error("fetching the manifest: {0}")]
    Manifest(#[source] ClientError),
    /// The tracker's manifest does not parse.
    #[error("the tracker sent a broken manifest: {0}")]
    BadManifest(#[source] crate::format::FormatError),
    /// The folder for the rebuilt bytes could not be made.
    #[error("cannot create the download folder {path}: {source}")]
    Download {
        /// The folder.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Registering, the peer set or the download file failed.
    #[error("joining the network: {0}")]
    Network(#[source] WatchError),
}

impl JoinError {
    /// The tracker's error behind this one, if any (for a front-end's own wording).
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            JoinError::LogIn(e) | JoinError::Lookup(e) | JoinError::Buy(e) => Some(e),
            JoinError::Manifest(e) => Some(e),
            JoinError::Network(WatchError::Tracker(e)) => Some(e),
            _ => None,
        }
    }
}

/// A viewer in the network, watching one movie.
#[derive(Debug)]
pub struct Viewer {
    reporter: Arc<Reporter>,
    video: String,
    info: Video,
    manifest: Arc<Manifest>,
    stream: Stream,
    sources: Arc<Sources>,
    progress: Arc<Progress>,
    status: watch::Receiver<ViewerStatus>,
    tasks: Tasks,
}

impl Viewer {
    /// The one way to join a movie: logs in (if [`JoinOptions::credentials`] says so), buys
    /// the movie if asked (an unbought one is refused otherwise), fetches its manifest,
    /// registers a viewer node, takes its peer set and origin ticket, and starts rebuilding
    /// into [`JoinOptions::download`] while heartbeats report what came from whom.
    pub async fn join(
        client: &TrackerClient,
        video: &str,
        options: &JoinOptions,
    ) -> Result<Viewer, JoinError> {
        let client = match &options.credentials {
            Some(creds) => client
                .login_kept(creds.clone())
                .await
                .map_err(JoinError::LogIn)?,
            None => client.clone(),
        };
        let info = client.video(video).await.map_err(JoinError::Lookup)?;
        if !info.bought {
            if !options.buy {
                return Err(JoinError::NotBought {
                    title: info.title,
                    price: info.price,
                });
            }
            client.buy(video).await.map_err(JoinError::Buy)?;
        }
        let bytes = client.manifest(video).await.map_err(JoinError::Manifest)?;
        let manifest = Arc::new(Manifest::from_json(&bytes).map_err(JoinError::BadManifest)?);
        if let Some(dir) = options
            .download
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| JoinError::Download {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut viewer = Viewer::open(
            &client,
            video,
            manifest,
            info.duration_ms,
            &options.download,
            &options.watch,
        )
        .await
        .map_err(JoinError::Network)?;
        viewer.info = info;
        Ok(viewer)
    }

    /// Registers a viewer of `video` (which the account must own) with a client already
    /// logged in and a manifest in hand, gets its peer set and starts rebuilding into
    /// `download` (a sparse file, created). [`Viewer::join`] is the whole path.
    pub async fn open(
        client: &TrackerClient,
        video: &str,
        manifest: Arc<Manifest>,
        duration_ms: u64,
        download: &Path,
        options: &WatchOptions,
    ) -> Result<Viewer, WatchError> {
        let playhead = options.playhead.clone();
        let node = client.register_node(&NodeRegistration::viewer()).await?;
        let origin = client.origin().await?;
        let sources = Arc::new(
            Sources::new(video, &node.node_id, &origin.ftp, options.timeout)
                .origin_pin(origin.fingerprint.clone()),
        );
        let progress = Arc::new(Progress::default());
        let reporter = Arc::new(Reporter {
            client: client.clone(),
            node_id: Mutex::new(node.node_id.clone()),
            video: video.to_owned(),
            sources: sources.clone(),
            progress: progress.clone(),
            outbox: Mutex::new(HeartbeatOutbox::new()),
        });
        reporter.beat().await?;
        let count = manifest.segment_count().max(1);
        let window = Window {
            parallel: options.parallel.max(1),
            ahead: options.realtime.then_some(options.look_ahead),
            segment_time: options
                .realtime
                .then(|| Duration::from_millis(duration_ms / u64::from(count))),
        };
        let stream = Stream::start(
            manifest.clone(),
            download,
            sources.clone(),
            window,
            progress.clone(),
            if options.private {
                StreamFile::Sealed {
                    spill_bytes: options.spill_bytes,
                }
            } else {
                StreamFile::Plain
            },
        )
        .map_err(|source| WatchError::Write {
            path: download.to_owned(),
            source,
        })?;
        let tasks = Tasks::new();
        let (status_tx, status) = watch::channel(ViewerStatus {
            video: video.to_owned(),
            segments: manifest.segment_count(),
            peers: sources.peer_count(),
            ..ViewerStatus::default()
        });
        let beat = Beat {
            reporter: reporter.clone(),
            every: Duration::from_secs(node.heartbeat_secs.max(1)),
        };
        tasks.spawn_until_cancelled("viewer-heartbeats", beat.run());
        let report = StatusReport {
            status: status_tx,
            shared: stream.shared().clone(),
            sources: sources.clone(),
            progress: progress.clone(),
        };
        tasks.spawn("viewer-status", report.run(playhead, tasks.token()));
        Ok(Viewer {
            reporter,
            video: video.to_owned(),
            info: Video {
                id: video.to_owned(),
                title: video.to_owned(),
                duration_ms,
                bytes: manifest.file_size,
                segments: manifest.segment_count(),
                k: manifest.k,
                n: manifest.n,
                price: 0,
                bought: true,
            },
            manifest,
            stream,
            sources,
            progress,
            status,
            tasks,
        })
    }

    /// The stream being rebuilt.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// This viewer's node id now (a new one after the tracker forgot it and the viewer
    /// registered again).
    pub fn node_id(&self) -> String {
        self.reporter.node_id()
    }

    /// The movie's id.
    pub fn video(&self) -> &str {
        &self.video
    }

    /// The movie as the tracker describes it (title, length, price); after [`Viewer::open`],
    /// which does not ask, the title is the id and the price 0.
    pub fn info(&self) -> &Video {
        &self.info
    }

    /// The movie's manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Verified bytes received so far.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Follows the viewer's status (see [`ViewerStatus`]).
    pub fn status(&self) -> watch::Receiver<ViewerStatus> {
        self.status.clone()
    }

    /// Caches in the peer set now.
    pub fn peer_count(&self) -> usize {
        self.sources.peer_count()
    }

    /// Caches that sent a chunk that failed verification.
    pub fn blamed(&self) -> Vec<String> {
        self.sources.blamed()
    }

    /// Stops its tasks (waiting for each), reports the last verified bytes and leaves the
    /// network.
    pub async fn close(self) {
        self.tasks.shutdown().await;
        self.reporter.last_reports().await;
        let node_id = self.reporter.node_id();
        if let Err(e) = self.reporter.client.leave(&node_id).await {
            tracing::debug!(node = %node_id, "leaving: {e}");
        }
    }
}

/// What the viewer tells the tracker: numbered reports of the verified bytes and receipts
/// per peer (a report whose answer was lost goes again as it was, see [`HeartbeatOutbox`]),
/// and what it does when the tracker forgot it (restarted, or silence past its timeout):
/// it registers again and goes on under the new node id.
#[derive(Debug)]
struct Reporter {
    client: TrackerClient,
    /// The node id reports go to; new after registering again.
    node_id: Mutex<String>,
    video: String,
    sources: Arc<Sources>,
    progress: Arc<Progress>,
    outbox: Mutex<HeartbeatOutbox>,
}

/// Most reports [`Viewer::close`] sends to get what waits to the tracker.
const LAST_REPORTS: usize = 3;

impl Reporter {
    fn node_id(&self) -> String {
        lock(&self.node_id).clone()
    }

    /// The next report: the unanswered one again, or a fresh one with what waits.
    fn prepare(&self, watching: bool) -> Heartbeat {
        let mut hb = Heartbeat {
            watching: watching.then(|| self.video.clone()),
            ..Heartbeat::default()
        };
        lock(&self.outbox).prepare(&mut hb, || {
            (Vec::new(), self.progress.take_received(&self.video))
        });
        hb.unreachable = self.sources.take_unreachable();
        hb
    }

    /// Sends one report to `node_id` and settles it in the outbox.
    async fn send(&self, node_id: &str, watching: bool) -> Result<HeartbeatReply, ClientError> {
        let hb = self.prepare(watching);
        let result = self.client.heartbeat(node_id, &hb).await;
        lock(&self.outbox).settle(&result);
        result
    }

    /// One heartbeat while watching; its reply updates the peer set. A tracker that no
    /// longer knows the node (404) gets a new registration and the report under it.
    async fn beat(&self) -> Result<(), ClientError> {
        let node_id = self.node_id();
        match self.send(&node_id, true).await {
            Ok(reply) => {
                // Tickets of the first reply after registering again name the new id.
                self.sources.rebind(&node_id, &reply);
                Ok(())
            }
            Err(e) if e.code() == Some(&ErrorCode::NotFound) => self.register_again().await,
            Err(e) => Err(e),
        }
    }

    async fn register_again(&self) -> Result<(), ClientError> {
        let old = self.node_id();
        let node = self
            .client
            .register_node(&NodeRegistration::viewer())
            .await?;
        tracing::info!(old = %old, new = %node.node_id, "the tracker forgot this viewer; registered again");
        *lock(&self.node_id) = node.node_id.clone();
        lock(&self.outbox).restart();
        let reply = self.send(&node.node_id, true).await?;
        self.sources.rebind(&node.node_id, &reply);
        Ok(())
    }

    /// The reports after watching: what waits (an unanswered report, bytes not yet
    /// reported) goes, in a few reports at most; failures are only logged.
    async fn last_reports(&self) {
        let node_id = self.node_id();
        for _ in 0..LAST_REPORTS {
            let waiting = lock(&self.outbox).has_unanswered() || self.progress.has_unreported();
            if !waiting {
                break;
            }
            if let Err(e) = self.send(&node_id, false).await {
                tracing::debug!(node = %node_id, "last viewer heartbeat: {e}");
                break;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pause between a cache failing and the early report naming it.
const SUSPECT_REPORT_DELAY: Duration = Duration::from_millis(250);

/// The viewer's heartbeat loop: every `every` one [`Reporter::beat`], and soon after a
/// cache is suspected dead.
struct Beat {
    reporter: Arc<Reporter>,
    every: Duration,
}

impl Beat {
    async fn run(self) -> Result<(), std::convert::Infallible> {
        loop {
            // A cache suspected dead is reported soon, so the tracker checks it and stops
            // handing it out within seconds (a short pause gathers other failures).
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                () = self.reporter.sources.suspected() => {
                    tokio::time::sleep(SUSPECT_REPORT_DELAY).await;
                }
            }
            if let Err(e) = self.reporter.beat().await {
                tracing::debug!(node = %self.reporter.node_id(), "viewer heartbeat: {e}");
            }
        }
    }
}

/// Least time between two status updates (the playhead moves every frame).
const STATUS_GAP: Duration = Duration::from_millis(100);
/// Longest time without a status update (bytes arrive between segments; peers change).
const STATUS_MAX_GAP: Duration = Duration::from_secs(1);

/// Keeps a [`ViewerStatus`] up to date: woken when a segment lands or the playhead moves,
/// at most every [`STATUS_GAP`], at least every [`STATUS_MAX_GAP`].
struct StatusReport {
    status: watch::Sender<ViewerStatus>,
    shared: Arc<stream::StreamShared>,
    sources: Arc<Sources>,
    progress: Arc<Progress>,
}

impl StatusReport {
    async fn run(
        self,
        playhead: Option<watch::Receiver<u64>>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        let mut landed = self.shared.changes();
        // Stands in for a player that gave none or has gone, keeping its last position.
        let mut idle = watch::Sender::new(0u64);
        let mut playhead = playhead.unwrap_or_else(|| idle.subscribe());
        loop {
            let at = *playhead.borrow_and_update();
            self.status.send_if_modified(|s| {
                let now = ViewerStatus {
                    video: std::mem::take(&mut s.video),
                    from_caches_bytes: self.progress.from_caches_bytes.load(Ordering::Relaxed),
                    from_origin_bytes: self.progress.from_origin_bytes.load(Ordering::Relaxed),
                    peers: self.sources.peer_count(),
                    buffered_ahead_bytes: self.shared.buffered_after(at),
                    complete_segments: self.shared.complete_segments(),
                    segments: s.segments,
                };
                let changed = now != *s;
                *s = now;
                changed
            });
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(STATUS_GAP) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = landed.changed() => {}
                changed = playhead.changed() => {
                    if changed.is_err() {
                        idle = watch::Sender::new(*playhead.borrow());
                        playhead = idle.subscribe();
                    }
                }
                () = tokio::time::sleep(STATUS_MAX_GAP) => {}
            }
        }
    }
}

/// Playback time of each segment, proportional to its bytes.
fn segment_durations(manifest: &Manifest, duration_ms: u64) -> Vec<Duration> {
    (0..manifest.segment_count())
        .map(|s| {
            let share = manifest.segment_len(s) as f64 / manifest.file_size.max(1) as f64;
            Duration::from_secs_f64(duration_ms as f64 / 1000.0 * share)
        })
        .collect()
}

/// Where a watch keeps the movie while it is incomplete: a hidden file beside `out`.
pub fn partial_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "movie".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.rivulet-partial"))
}

/// Plays the session's stream from the start like a player (paced in real time if asked,
/// counting stalls), checks the whole file and moves it to `out`.
pub async fn watch(
    session: &Viewer,
    manifest: &Manifest,
    duration_ms: u64,
    out: &Path,
    options: &WatchOptions,
    started: Instant,
) -> Result<WatchReport, WatchError> {
    let mut reader: StreamReader = session.stream().reader();
    let durations = segment_durations(manifest, duration_ms);
    let mut sha = Sha256::new();
    let mut whole = blake3::Hasher::new();
    let mut start_ms = 0u64;
    let (mut stalls, mut stall_total, mut longest) = (0u32, Duration::ZERO, Duration::ZERO);
    let mut play_start: Option<Instant> = None;
    let mut buf = vec![0u8; manifest.segment_size as usize];
    for segment in 0..manifest.segment_count() {
        let len = manifest.segment_len(segment);
        if let Some(ps) = play_start
            && options.realtime
        {
            // The player reaches this segment when the earlier ones have played.
            let due = ps + durations[..segment as usize].iter().sum::<Duration>() + stall_total;
            tokio::time::sleep_until(due.into()).await;
            let shared = session.stream().shared();
            let waited = stream::time_until_present(shared, segment)
                .await
                .map_err(WatchError::Stream)?;
            if waited > Duration::from_millis(1) {
                stalls += 1;
                stall_total += waited;
                longest = longest.max(waited);
            }
        }
        reader
            .read_exact(&mut buf[..len])
            .await
            .map_err(WatchError::Stream)?;
        if play_start.is_none() {
            start_ms = started.elapsed().as_millis() as u64;
            play_start = Some(Instant::now());
        }
        sha.update(&buf[..len]);
        whole.update(&buf[..len]);
    }
    if let (true, Some(ps)) = (options.realtime, play_start) {
        // A player finishes when the last segment has played.
        let end = ps + durations.iter().sum::<Duration>() + stall_total;
        tokio::time::sleep_until(end.into()).await;
    }
    let got = Digest::from(whole.finalize());
    if got != manifest.blake3 {
        return Err(WatchError::Mismatch {
            got: got.to_hex(),
            want: manifest.blake3.to_hex(),
        });
    }
    let partial = session.stream().shared().path().to_owned();
    let write_err = |source| WatchError::Write {
        path: out.to_owned(),
        source,
    };
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(write_err)?;
    tokio::fs::rename(&partial, out).await.map_err(write_err)?;
    Ok(WatchReport {
        video: session.video.clone(),
        bytes: manifest.file_size,
        sha256: hex::encode(sha.finalize()),
        from_origin_bytes: session.progress.from_origin_bytes.load(Ordering::Relaxed),
        from_caches_bytes: session.progress.from_caches_bytes.load(Ordering::Relaxed),
        start_ms,
        stalls,
        stall_ms: stall_total.as_millis() as u64,
        longest_stall_ms: longest.as_millis() as u64,
        from_peers: session.progress.by_peer(),
        bad_peers: session.blamed(),
    })
}

/// What the hidden download area may keep: files younger than `max_age`, and of those the
/// newest up to `max_bytes` together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadLimits {
    pub max_age: Duration,
    pub max_bytes: u64,
}

impl Default for DownloadLimits {
    fn default() -> DownloadLimits {
        DownloadLimits {
            max_age: DOWNLOAD_MAX_AGE,
            max_bytes: DOWNLOAD_MAX_BYTES,
        }
    }
}

/// Deletes the files in `dir` (the hidden download area) beyond `limits`: every file last
/// modified more than `max_age` ago, then the oldest until the rest fit in `max_bytes`.
/// Returns how many went. Run at node start and, by the app, while it runs.
pub fn clean_downloads(dir: &Path, limits: DownloadLimits) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            // A time in the future counts as now: kept by age, first to go by size.
            let modified = m.modified().ok().map_or(now, |t| t.min(now));
            Some((modified, m.len(), e.path()))
        })
        .collect();
    // Newest first: what fits in the size cap is kept from the top.
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut kept = 0u64;
    files
        .into_iter()
        .filter(|(modified, len, _)| {
            let old = now
                .duration_since(*modified)
                .is_ok_and(|age| age > limits.max_age);
            let fits = kept.saturating_add(*len) <= limits.max_bytes;
            if !old && fits {
                kept += len;
            }
            old || !fits
        })
        .filter(|(_, _, path)| std::fs::remove_file(path).is_ok())
        .count()
}

/// Seven days: how long hidden downloads are kept.
pub const DOWNLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// 4 GB: the most the hidden download area keeps, however young its files.
pub const DOWNLOAD_MAX_BYTES: u64 = 4_000_000_000;

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{post, put};
    use axum::{Json, Router};
    use rivulet_tracker_client::{ChunkRef, ErrorBody, ErrorDetail, NodeRegistered};

    use super::*;

    /// How the fake tracker answers a heartbeat (after recording it).
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        /// 200 with a body cut short: the tracker took the report, the answer was lost.
        Lost,
        /// 503.
        Unavailable,
        /// 404: the tracker forgot the node.
        Forgot,
        Fine,
    }

    /// A tracker of two endpoints on 127.0.0.1:0 that records every heartbeat and answers
    /// as it is told.
    #[derive(Debug, Default)]
    struct FakeTracker {
        seen: Mutex<Vec<(String, Heartbeat)>>,
        answers: Mutex<VecDeque<Answer>>,
    }

    fn error(status: StatusCode, code: ErrorCode) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: "fake".into(),
            },
        };
        (status, Json(body)).into_response()
    }

    async fn heartbeat(
        State(fake): State<Arc<FakeTracker>>,
        UrlPath(id): UrlPath<String>,
        Json(hb): Json<Heartbeat>,
    ) -> Response {
        lock(&fake.seen).push((id, hb));
        let answer = lock(&fake.answers).pop_front().unwrap_or(Answer::Fine);
        match answer {
            Answer::Lost => (StatusCode::OK, "{\"hold\": [").into_response(),
            Answer::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal),
            Answer::Forgot => error(StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Answer::Fine => Json(HeartbeatReply::default()).into_response(),
        }
    }

    async fn register() -> Json<NodeRegistered> {
        Json(NodeRegistered {
            node_id: "viewer-new".into(),
            heartbeat_secs: 1,
            timeout_secs: 3,
            seen_from: "127.0.0.1".into(),
            reach: None,
        })
    }

    async fn fake_tracker(fake: Arc<FakeTracker>) -> String {
        let app = Router::new()
            .route("/api/v1/nodes/{id}/heartbeat", put(heartbeat))
            .route("/api/v1/nodes", post(register))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn a_report_whose_answer_was_lost_goes_again_with_its_number_and_a_forgotten_viewer_registers_again()
     {
        let fake = Arc::new(FakeTracker::default());
        lock(&fake.answers).extend([
            Answer::Lost,
            Answer::Unavailable,
            Answer::Fine,
            Answer::Fine,
            Answer::Forgot,
        ]);
        let url = fake_tracker(fake.clone()).await;
        let sources = Arc::new(Sources::new(
            "m",
            "viewer-old",
            "127.0.0.1:9",
            Duration::from_secs(1),
        ));
        let progress = Arc::new(Progress::default());
        let reporter = Reporter {
            client: TrackerClient::new(&url),
            node_id: Mutex::new("viewer-old".into()),
            video: "m".into(),
            sources: sources.clone(),
            progress: progress.clone(),
            outbox: Mutex::new(HeartbeatOutbox::new()),
        };
        let run = async {
            progress.add("cache-a", 0, 1, 100);
            assert!(reporter.beat().await.is_err(), "the answer was lost");
            // Verified after the first report was made: waits for the next number.
            progress.add("cache-a", 0, 2, 100);
            assert!(reporter.beat().await.is_err(), "503");
            reporter.beat().await.unwrap();
            reporter.beat().await.unwrap();
            progress.add("cache-a", 0, 3, 100);
            // 404: registers again and sends the report under the new id, as its first.
            reporter.beat().await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the fake tracker answers at once");

        let seen = lock(&fake.seen).clone();
        let summary: Vec<(&str, u64, Vec<ChunkRef>)> = seen
            .iter()
            .map(|(id, hb)| {
                assert_eq!(hb.watching.as_deref(), Some("m"));
                let chunks = hb.received.iter().flat_map(|e| e.chunks.clone()).collect();
                (id.as_str(), hb.seq, chunks)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("viewer-old", 1, vec![ChunkRef(0, 1)]),
                ("viewer-old", 1, vec![ChunkRef(0, 1)]),
                ("viewer-old", 1, vec![ChunkRef(0, 1)]),
                ("viewer-old", 2, vec![ChunkRef(0, 2)]),
                ("viewer-old", 3, vec![ChunkRef(0, 3)]),
                ("viewer-new", 1, vec![ChunkRef(0, 3)]),
            ]
        );
        // The same report, entry for entry, each time it went again.
        assert_eq!(seen[0].1, seen[1].1);
        assert_eq!(seen[0].1, seen[2].1);
        assert_eq!(seen[0].1.received[0].bytes, 100);
        assert_eq!(reporter.node_id(), "viewer-new");
        assert_eq!(sources.node_id(), "viewer-new");
    }
}
