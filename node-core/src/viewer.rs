//! The viewer role: rebuilds a movie segment by segment from verified chunks and writes it
//! out, pacing itself like a player when asked, and reports what it got from whom.
//!
//! Today every chunk comes from the origin (its data chunks, which the origin serves without
//! encoding); caches join as sources with the peer network (issue 4). Invariants the
//! scheduler keeps: a segment is written only after each of its chunks passed the manifest's
//! Merkle check and the rebuilt segment matched its hash; segments are written in order;
//! nothing is left at the output path unless the whole file matched the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::format::{Digest, FormatError, Manifest};
use crate::peer::ftp::{ChunkSession, FetchError};

/// A server to fetch chunks from, with this node's ticket for it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The server's node id (`origin` for the origin).
    pub peer: String,
    /// Its FTP address, `host:port`.
    pub addr: String,
    /// This node's id (the ticket's holder).
    pub node_id: String,
    pub ticket: String,
}

/// How to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Consume at the movie's bitrate like a player (and count stalls); otherwise as fast as
    /// possible.
    pub realtime: bool,
    /// FTP sessions fetching in parallel.
    pub sessions: usize,
    /// In real time, how many segments ahead of the playhead to fetch.
    pub look_ahead: u32,
    /// Longest wait for one connection or chunk.
    pub timeout: Duration,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            realtime: false,
            sessions: 4,
            look_ahead: 8,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Bytes received so far, read by the heartbeat loop while the watch runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub from_origin_bytes: AtomicU64,
    pub from_caches_bytes: AtomicU64,
}

/// What a watch did, as `rivulet-node watch` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchReport {
    pub video: String,
    pub bytes: u64,
    /// SHA-256 of the rebuilt file.
    pub sha256: String,
    pub from_origin_bytes: u64,
    pub from_caches_bytes: u64,
    /// From the start of the watch to the first segment ready to play.
    pub start_ms: u64,
    /// Times playback had to wait for a segment (real time only).
    pub stalls: u32,
    /// Total time spent waiting (real time only).
    pub stall_ms: u64,
}

#[derive(Debug, Error)]
pub enum WatchError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the rebuilt file does not match the manifest (BLAKE3 {got}, expected {want})")]
    Mismatch { got: String, want: String },
}

/// A rebuilt segment on its way to the writer.
struct Rebuilt {
    segment: u32,
    bytes: Vec<u8>,
}

/// Fetches the k data chunks of `segment` from the session, verifies each and rebuilds it.
async fn fetch_segment(
    session: &mut ChunkSession,
    manifest: &Manifest,
    segment: u32,
    progress: &Progress,
) -> Result<Vec<u8>, WatchError> {
    let codec = manifest.codec();
    let limit = manifest.wire_len(segment);
    // Each chunk is verified once, as it arrives; what is kept is where its payload starts.
    let mut wires = Vec::with_capacity(usize::from(manifest.k));
    for index in 0..manifest.k {
        let wire = session.fetch(segment, index, limit).await?;
        let payload_at = wire.len() - manifest.verify_chunk(segment, index, &wire)?.len();
        progress
            .from_origin_bytes
            .fetch_add(wire.len() as u64, Ordering::Relaxed);
        wires.push((index, wire, payload_at));
    }
    let payloads: Vec<(u16, &[u8])> = wires
        .iter()
        .map(|(index, wire, at)| (*index, &wire[*at..]))
        .collect();
    Ok(manifest.rebuild_segment(&codec, segment, &payloads)?)
}

/// Playback time of each segment, proportional to its bytes.
fn segment_durations(manifest: &Manifest, duration_ms: u64) -> Vec<Duration> {
    (0..manifest.segment_count())
        .map(|s| {
            let share = manifest.segment_len(s) as f64 / manifest.file_size as f64;
            Duration::from_secs_f64(duration_ms as f64 / 1000.0 * share)
        })
        .collect()
}

/// Rebuilds the movie of `manifest` (`duration_ms` long) from `source` into `out`. The file
/// appears at `out` only once it matches the manifest.
pub async fn watch(
    video: &str,
    manifest: Arc<Manifest>,
    duration_ms: u64,
    source: Source,
    out: &Path,
    options: &WatchOptions,
    progress: Arc<Progress>,
) -> Result<WatchReport, WatchError> {
    let started = Instant::now();
    let partial = out.with_extension("partial");
    let write_err = |source| WatchError::Write {
        path: out.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::create(&partial).await.map_err(write_err)?;
    let count = manifest.segment_count();
    let next = Arc::new(AtomicU32::new(0));
    // The segment playing now (real time), which bounds how far ahead workers fetch.
    let (playhead_tx, playhead_rx) = watch::channel(0u32);
    let (rebuilt_tx, mut rebuilt_rx) =
        mpsc::channel::<Result<Rebuilt, WatchError>>(options.sessions * 2);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.sessions.max(1) {
        let (manifest, next, progress, source, tx) = (
            manifest.clone(),
            next.clone(),
            progress.clone(),
            source.clone(),
            rebuilt_tx.clone(),
        );
        let mut playhead = playhead_rx.clone();
        let (realtime, look_ahead, timeout) =
            (options.realtime, options.look_ahead, options.timeout);
        let video = video.to_owned();
        workers.spawn(async move {
            let mut session: Option<ChunkSession> = None;
            loop {
                let segment = next.fetch_add(1, Ordering::Relaxed);
                if segment >= manifest.segment_count() {
                    return;
                }
                if realtime {
                    let _ = playhead.wait_for(|p| segment <= p + look_ahead).await;
                }
                // One retry on a fresh session before giving up on the source.
                let mut result = Err(WatchError::Fetch(FetchError::Missing {
                    addr: source.addr.clone(),
                }));
                for _ in 0..2 {
                    if session.is_none() {
                        match ChunkSession::connect(
                            &source.addr,
                            &source.node_id,
                            &source.ticket,
                            &video,
                            timeout,
                        )
                        .await
                        {
                            Ok(s) => session = Some(s),
                            Err(e) => {
                                result = Err(e.into());
                                continue;
                            }
                        }
                    }
                    let Some(s) = session.as_mut() else { continue };
                    result = fetch_segment(s, &manifest, segment, &progress).await;
                    if result.is_ok() {
                        break;
                    }
                    session = None;
                }
                let failed = result.is_err();
                if tx
                    .send(result.map(|bytes| Rebuilt { segment, bytes }))
                    .await
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        });
    }
    drop(rebuilt_tx);

    let durations = segment_durations(&manifest, duration_ms);
    let mut pending: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut written = 0u32;
    let mut sha = Sha256::new();
    let mut whole = blake3::Hasher::new();
    let mut start_ms = 0u64;
    let (mut stalls, mut stall_total) = (0u32, Duration::ZERO);
    // When playback started, and how far it has been pushed back by stalls.
    let mut play_start: Option<Instant> = None;
    let due = |segment: u32, play_start: Instant, stall_total: Duration| {
        play_start + durations[..segment as usize].iter().sum::<Duration>() + stall_total
    };
    while written < count {
        let Some(next_rebuilt) = rebuilt_rx.recv().await else {
            break;
        };
        let rebuilt = next_rebuilt?;
        pending.insert(rebuilt.segment, rebuilt.bytes);
        while let Some(bytes) = pending.remove(&written) {
            file.write_all(&bytes).await.map_err(write_err)?;
            sha.update(&bytes);
            whole.update(&bytes);
            let now = Instant::now();
            match play_start {
                None => {
                    start_ms = started.elapsed().as_millis() as u64;
                    play_start = Some(now);
                }
                Some(ps) if options.realtime => {
                    let due_at = due(written, ps, stall_total);
                    if now > due_at {
                        stalls += 1;
                        stall_total += now - due_at;
                    }
                }
                Some(_) => {}
            }
            written += 1;
            if let (true, Some(ps)) = (options.realtime, play_start) {
                let elapsed = now.saturating_duration_since(ps + stall_total);
                let mut playing = 0u32;
                let mut t = Duration::ZERO;
                while playing + 1 < count && t + durations[playing as usize] <= elapsed {
                    t += durations[playing as usize];
                    playing += 1;
                }
                let _ = playhead_tx.send(playing);
            }
        }
    }
    workers.abort_all();
    if written < count {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(WatchError::Fetch(FetchError::Transfer {
            addr: source.addr,
            reason: "the sources stopped before the movie was complete".into(),
        }));
    }
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    let got = Digest::from(whole.finalize());
    if got != manifest.blake3 {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(WatchError::Mismatch {
            got: got.to_hex(),
            want: manifest.blake3.to_hex(),
        });
    }
    if let (true, Some(ps)) = (options.realtime, play_start) {
        // A player finishes when the last segment has played.
        let end = due(count - 1, ps, stall_total) + durations[count as usize - 1];
        tokio::time::sleep_until(end.into()).await;
    }
    tokio::fs::rename(&partial, out).await.map_err(write_err)?;
    Ok(WatchReport {
        video: video.to_owned(),
        bytes: manifest.file_size,
        sha256: hex::encode(sha.finalize()),
        from_origin_bytes: progress.from_origin_bytes.load(Ordering::Relaxed),
        from_caches_bytes: progress.from_caches_bytes.load(Ordering::Relaxed),
        start_ms,
        stalls,
        stall_ms: stall_total.as_millis() as u64,
    })
}
