//! The viewer role: joins the network as a viewer of one movie, rebuilds it from verified
//! chunks of many sources into a seekable stream, and reports to the tracker what it got
//! from whom. [`Session`] is the role (the app plays from its stream); [`watch`] consumes the
//! stream like a player and writes the file out, as `rivulet-node watch` does.
//!
//! Invariants: a segment lands in the stream only after each of its chunks passed the
//! manifest's Merkle check and the rebuilt segment matched its hash; nothing is left at the
//! output path unless the whole file matched the manifest.

pub mod http;
mod segment;
pub mod sources;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rivulet_tracker_client::{Heartbeat, NodeKind, NodeRegistration, PeerBytes, TrackerClient};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio::io::AsyncReadExt;

pub use segment::Progress;
use sources::Sources;
use stream::{Stream, StreamReader, Window};

use crate::format::{Digest, Manifest};

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
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            realtime: false,
            parallel: 4,
            look_ahead: 8,
            timeout: Duration::from_secs(10),
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

/// A viewer in the network, watching one movie.
#[derive(Debug)]
pub struct Session {
    client: TrackerClient,
    node_id: String,
    video: String,
    stream: Stream,
    sources: Arc<Sources>,
    progress: Arc<Progress>,
    beats: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Registers a viewer of `video` (which the account must own), gets its peer set and
    /// starts rebuilding into `download` (a sparse file, created).
    pub async fn open(
        client: &TrackerClient,
        video: &str,
        manifest: Arc<Manifest>,
        duration_ms: u64,
        download: &Path,
        options: &WatchOptions,
    ) -> Result<Session, WatchError> {
        let node = client
            .register_node(&NodeRegistration {
                kind: NodeKind::Viewer,
                bind: String::new(),
                advertise: String::new(),
                upload_bps: 0,
                storage_bytes: 0,
            })
            .await?;
        let origin = client.origin().await?;
        let sources = Arc::new(Sources::new(
            video,
            &node.node_id,
            &origin.ftp,
            options.timeout,
        ));
        let watching = Heartbeat {
            watching: Some(video.to_owned()),
            ..Heartbeat::default()
        };
        let reply = client.heartbeat(&node.node_id, &watching).await?;
        sources.update(&reply);
        let progress = Arc::new(Progress::default());
        let count = manifest.segment_count().max(1);
        let window = Window {
            parallel: options.parallel.max(1),
            ahead: options.realtime.then_some(options.look_ahead),
            segment_time: options
                .realtime
                .then(|| Duration::from_millis(duration_ms / u64::from(count))),
        };
        let stream = Stream::start(
            manifest,
            download,
            sources.clone(),
            window,
            progress.clone(),
        )
        .map_err(|source| WatchError::Write {
            path: download.to_owned(),
            source,
        })?;
        let every = Duration::from_secs(node.heartbeat_secs.max(1));
        let beats = tokio::spawn(heartbeats(
            client.clone(),
            node.node_id.clone(),
            video.to_owned(),
            sources.clone(),
            progress.clone(),
            every,
        ));
        Ok(Session {
            client: client.clone(),
            node_id: node.node_id,
            video: video.to_owned(),
            stream,
            sources,
            progress,
            beats,
        })
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// This viewer's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Caches in the peer set now.
    pub fn peer_count(&self) -> usize {
        self.sources.peer_count()
    }

    pub fn blamed(&self) -> Vec<String> {
        self.sources.blamed()
    }

    /// Reports the last verified bytes and leaves the network.
    pub async fn close(self) {
        self.beats.abort();
        let received = received(&self.video, self.progress.take_unreported());
        if !received.is_empty() {
            let hb = Heartbeat {
                received,
                ..Heartbeat::default()
            };
            let _ = self.client.heartbeat(&self.node_id, &hb).await;
        }
        let _ = self.client.leave(&self.node_id).await;
    }
}

fn received(video: &str, bytes: std::collections::HashMap<String, u64>) -> Vec<PeerBytes> {
    bytes
        .into_iter()
        .filter(|(_, b)| *b > 0)
        .map(|(peer, bytes)| PeerBytes {
            peer,
            video: video.to_owned(),
            bytes,
        })
        .collect()
}

/// Reports verified bytes per peer and takes in the fresh peer set, every `every`.
async fn heartbeats(
    client: TrackerClient,
    node_id: String,
    video: String,
    sources: Arc<Sources>,
    progress: Arc<Progress>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let bytes = progress.take_unreported();
        let hb = Heartbeat {
            watching: Some(video.clone()),
            received: received(&video, bytes.clone()),
            ..Heartbeat::default()
        };
        match client.heartbeat(&node_id, &hb).await {
            Ok(reply) => sources.update(&reply),
            Err(_) => progress.restore(bytes),
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
    session: &Session,
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

/// Deletes files in `dir` last modified more than `max_age` ago (the hidden download area
/// at node start); returns how many went.
pub fn clean_downloads(dir: &Path, max_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    entries
        .flatten()
        .filter(|e| {
            e.metadata().is_ok_and(|m| {
                m.is_file()
                    && m.modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|age| age > max_age)
            })
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Seven days: how long hidden downloads are kept.
pub const DOWNLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
