//! The rebuilt movie as a seekable byte stream. Segments land in a sparse file as they are
//! rebuilt (in any order); a [`StreamReader`] reads it like a file (`AsyncRead +
//! AsyncSeek`), waiting for bytes not yet rebuilt, and its position tells the scheduler
//! where the playhead is, so a seek moves the fetch window at once. A private stream (the
//! player's) is unlinked at once and sealed: its bytes are written encrypted under a key
//! that lives only in this process, so even the open file holds nothing playable; and it is
//! bounded: it holds at most its spill cap, segments farthest from the playhead are punched
//! out of the file (`fallocate(PUNCH_HOLE)`, so the disk space goes back) and fetched again
//! if the player comes back to them, and the scheduler fetches no further ahead than the cap
//! leaves room for.
//!
//! Invariants of a bounded stream: segments held plus segments in flight stay within the
//! budget, except the one under the playhead (what the player waits for is always fetched);
//! a segment that lands over the budget with nothing to drop for it, and outside the fetch
//! window, is thrown away rather than written; a reader that read a segment while it was
//! dropped (its epoch changed) reads it again once it is back.

use std::fs::File;
use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::segment::{Progress, SegmentError, fetch_segment};
use super::sources::Sources;
use crate::format::Manifest;

/// Without deadlines (not real time), how long a cache request may take before the origin
/// races it.
const RACE_MAX: Duration = Duration::from_secs(1);
/// In real time, a late cache request is raced when its segment is due within this: time
/// for the origin to send it on a busy machine. Until then a slow cache is waited for
/// (every byte it sends is one the origin does not).
const RACE_MARGIN: Duration = Duration::from_millis(1500);
/// Shortest wait: for the segment the player waits for now.
const RACE_MIN: Duration = Duration::from_millis(400);
/// Failed attempts of one segment before the stream fails, if they also span
/// [`SEGMENT_PATIENCE`].
const SEGMENT_TRIES: u32 = 4;
/// Least time from a segment's first failure to giving up on it: a tracker (and its
/// origin) restarting comes back within it, and the stream goes on.
const SEGMENT_PATIENCE: Duration = Duration::from_secs(20);
/// Wait before trying a failed segment again, times its failures so far (at most
/// [`RETRY_MAX`]).
const RETRY_STEP: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// The fewest segments a bounded stream holds: the one being played and the next.
pub const MIN_SPILL_SEGMENTS: u32 = 2;

/// How a stream keeps its rebuilt bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFile {
    /// Named and plain, every segment kept (a watch moves the file to its output).
    Plain,
    /// Unlinked at once, sealed with a key of this process, and holding at most
    /// `spill_bytes` (at least [`MIN_SPILL_SEGMENTS`] segments, whatever is asked).
    Sealed {
        /// The most bytes the file holds on disk.
        spill_bytes: u64,
    },
}

#[derive(Debug, Default)]
struct Presence {
    present: Vec<bool>,
    /// Bumped each time a segment is dropped, so a reader can tell it read a hole.
    epoch: Vec<u32>,
    /// Segments held now.
    count: u32,
    /// Segments dropped so far (a bounded stream).
    dropped: u64,
    failed: Option<String>,
}

/// The key a private stream's bytes are sealed with: random per stream, never written
/// anywhere. ChaCha20 at the byte offset, so any range seals and opens on its own.
struct Seal {
    key: [u8; 32],
    nonce: [u8; 12],
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Seal").finish_non_exhaustive()
    }
}

impl Seal {
    fn new() -> Seal {
        let mut seal = Seal {
            key: [0; 32],
            nonce: [0; 12],
        };
        rand::fill(&mut seal.key);
        rand::fill(&mut seal.nonce);
        seal
    }

    /// Seals or opens (the same XOR) `bytes` that sit at byte `at` of the movie.
    fn apply(&self, at: u64, bytes: &mut [u8]) -> io::Result<()> {
        let mut cipher = ChaCha20::new(&self.key.into(), &self.nonce.into());
        cipher
            .try_seek(at)
            .map_err(|_| io::Error::other(format!("offset {at} is beyond the stream's cipher")))?;
        cipher
            .try_apply_keystream(bytes)
            .map_err(|_| io::Error::other("the stream is too long for its cipher"))
    }
}

/// What the scheduler and readers share.
#[derive(Debug)]
pub struct StreamShared {
    manifest: Arc<Manifest>,
    file: File,
    /// Set for a private stream: the file's bytes are sealed with it.
    seal: Option<Seal>,
    /// Set for a bounded stream: the most segments held at once.
    budget: Option<u32>,
    path: PathBuf,
    presence: Mutex<Presence>,
    /// Bumped whenever a segment lands or the stream fails.
    version: watch::Sender<u64>,
    /// The segment the player wants next.
    want: watch::Sender<u32>,
    /// From each seek to the first bytes read after it.
    seeks: Mutex<Vec<Duration>>,
}

impl StreamShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `segment` is rebuilt.
    pub fn is_present(&self, segment: u32) -> bool {
        self.lock()
            .present
            .get(segment as usize)
            .copied()
            .unwrap_or(false)
    }

    fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    fn fail(&self, why: String) {
        self.lock().failed.get_or_insert(why);
        self.version.send_modify(|v| *v += 1);
    }

    /// How long each seek so far waited for its first bytes.
    pub fn seek_delays(&self) -> Vec<Duration> {
        self.seeks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Segments rebuilt and held now (a bounded stream drops those far from the playhead).
    pub fn complete_segments(&self) -> u32 {
        self.lock().count
    }

    /// Segments dropped from the file so far to keep it within its spill cap.
    pub fn dropped_segments(&self) -> u64 {
        self.lock().dropped
    }

    /// The most bytes the file holds on disk (a bounded stream; the cap asked for, raised to
    /// [`MIN_SPILL_SEGMENTS`] segments), or `None` when it keeps every segment.
    pub fn spill_cap(&self) -> Option<u64> {
        let segments = self.budget?;
        Some(u64::from(segments) * u64::from(self.manifest.segment_size))
    }

    /// `segment`'s epoch if it is held.
    fn held(&self, segment: u32) -> Option<u32> {
        let presence = self.lock();
        let s = segment as usize;
        presence
            .present
            .get(s)
            .copied()
            .unwrap_or(false)
            .then(|| presence.epoch[s])
    }

    /// Drops the held segment farthest from `playhead` outside the fetch window
    /// `playhead..end`, punching its bytes out of the file; false when there is none.
    fn drop_farthest(&self, playhead: u32, end: u32) -> bool {
        let victim = {
            let mut presence = self.lock();
            let distance = |t: u32| t.abs_diff(playhead);
            let victim = (0..presence.present.len() as u32)
                .filter(|&t| presence.present[t as usize] && !(playhead..end).contains(&t))
                .max_by_key(|&t| distance(t));
            let Some(t) = victim else { return false };
            presence.present[t as usize] = false;
            presence.epoch[t as usize] = presence.epoch[t as usize].wrapping_add(1);
            presence.count -= 1;
            presence.dropped += 1;
            t
        };
        let m = &self.manifest;
        let (at, len) = (m.segment_offset(victim), m.segment_len(victim) as u64);
        if let Err(e) = punch_hole(&self.file, at, len) {
            // Still forgotten (and sealed): only the disk space stays taken.
            tracing::warn!(
                segment = victim,
                "punching a dropped segment out of the stream file: {e}"
            );
        }
        tracing::trace!(segment = victim, playhead, "dropped from the stream file");
        true
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Where the rebuilt bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until `segment` is rebuilt, or the stream failed.
    pub async fn wait_for(&self, segment: u32) -> io::Result<()> {
        let mut version = self.version.subscribe();
        loop {
            if self.is_present(segment) {
                return Ok(());
            }
            if let Some(why) = self.failure() {
                return Err(io::Error::other(why));
            }
            if version.changed().await.is_err() {
                return Err(io::Error::other("the stream was closed"));
            }
        }
    }

    /// A receiver that changes whenever a segment lands or the stream fails.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Tells the scheduler the player is at `segment`.
    pub fn set_playhead(&self, segment: u32) {
        self.want.send_if_modified(|w| {
            let changed = *w != segment;
            *w = segment;
            changed
        });
    }

    /// Bytes segments at and after `from` hold contiguously: the buffer ahead.
    pub fn buffered_after(&self, from: u64) -> u64 {
        let m = &self.manifest;
        let presence = self.lock();
        let first = (from / u64::from(m.segment_size)) as u32;
        let mut end = from;
        for s in first..m.segment_count() {
            if !presence.present[s as usize] {
                break;
            }
            end = m.segment_offset(s) + m.segment_len(s) as u64;
        }
        end - from
    }
}

/// How the scheduler fetches.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Segments fetched at once.
    pub parallel: usize,
    /// How far past the playhead to fetch (None: to the end, as fast as possible).
    pub ahead: Option<u32>,
    /// Playback time of one segment, for deadlines (None: no deadlines but [`RACE_MAX`]).
    pub segment_time: Option<Duration>,
}

/// A rebuilding movie: the shared file and the scheduler filling it.
#[derive(Debug)]
pub struct Stream {
    shared: Arc<StreamShared>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

impl Stream {
    /// Starts rebuilding `manifest`'s movie into `path` (created, sparse) from `sources`;
    /// when `private`, `path` is unlinked at once and the bytes live only behind the open
    /// file (readers read through it, never by name), sealed with a key of this process.
    pub fn start(
        manifest: Arc<Manifest>,
        path: &Path,
        sources: Arc<Sources>,
        window: Window,
        progress: Arc<Progress>,
        keep: StreamFile,
    ) -> io::Result<Stream> {
        let private = matches!(keep, StreamFile::Sealed { .. });
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        if let Err(e) = file.set_len(manifest.file_size) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        if private {
            std::fs::remove_file(path)?;
        }
        let count = manifest.segment_count();
        let budget = match keep {
            StreamFile::Plain => None,
            StreamFile::Sealed { spill_bytes } => spill_budget(&manifest, spill_bytes),
        };
        let shared = Arc::new(StreamShared {
            manifest,
            file,
            seal: private.then(Seal::new),
            budget,
            path: path.to_owned(),
            presence: Mutex::new(Presence {
                present: vec![false; count as usize],
                epoch: vec![0; count as usize],
                ..Presence::default()
            }),
            version: watch::channel(0).0,
            want: watch::channel(0).0,
            seeks: Mutex::default(),
        });
        let scheduler = tokio::spawn(schedule(shared.clone(), sources, window, progress));
        Ok(Stream { shared, scheduler })
    }

    pub fn shared(&self) -> &Arc<StreamShared> {
        &self.shared
    }

    /// A reader at the start of the movie.
    pub fn reader(&self) -> StreamReader {
        StreamReader::new(self.shared.clone())
    }
}

/// The most segments a stream sealed with `spill_bytes` holds: at least
/// [`MIN_SPILL_SEGMENTS`]; `None` when the whole movie fits.
fn spill_budget(manifest: &Manifest, spill_bytes: u64) -> Option<u32> {
    let asked = spill_bytes / u64::from(manifest.segment_size);
    let segments = u32::try_from(asked).unwrap_or(u32::MAX);
    if segments < MIN_SPILL_SEGMENTS {
        tracing::warn!(
            spill_bytes,
            segment_size = manifest.segment_size,
            "a spill cap under {MIN_SPILL_SEGMENTS} segments: raised to {MIN_SPILL_SEGMENTS}"
        );
    }
    let segments = segments.max(MIN_SPILL_SEGMENTS);
    (segments < manifest.segment_count()).then_some(segments)
}

/// Frees `len` bytes of `file`'s disk space at `at`, keeping its size (reads there give
/// zeros).
#[cfg(target_os = "linux")]
fn punch_hole(file: &File, at: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (libc::off_t::try_from(at), libc::off_t::try_from(len)) else {
        return Err(io::Error::other("a range beyond the file offsets"));
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: the descriptor stays open while `file` is borrowed, and fallocate reads no
    // memory of ours.
    let done = unsafe { libc::fallocate(file.as_raw_fd(), mode, at, len) };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_file: &File, _at: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "punching holes needs Linux",
    ))
}

/// The segments to fetch for a player at `playhead`: `playhead..end`, and whether the
/// holes before it come next (only when the window and the budget are both unbounded).
fn fetch_window(playhead: u32, count: u32, window: &Window, budget: Option<u32>) -> (u32, bool) {
    // A bounded stream keeps a quarter of its budget for what lies behind the playhead.
    let room = budget.map(|b| (b - b / 4).max(1));
    let span = match (window.ahead.map(|a| a.saturating_add(1)), room) {
        (Some(a), Some(r)) => Some(a.min(r)),
        (a, r) => a.or(r),
    };
    let end = span.map_or(count, |n| playhead.saturating_add(n).min(count));
    (end, span.is_none())
}

/// Keeps `window.parallel` segments in flight, nearest the playhead first, then fills the
/// rest of the movie; a seek (a new playhead) is served before anything else. A bounded
/// stream fetches within its budget, dropping the held segments farthest from the playhead
/// to make room.
async fn schedule(
    shared: Arc<StreamShared>,
    sources: Arc<Sources>,
    window: Window,
    progress: Arc<Progress>,
) {
    let count = shared.manifest.segment_count();
    let mut want = shared.want.subscribe();
    let mut in_flight: JoinSet<(u32, Result<Vec<u8>, SegmentError>)> = JoinSet::new();
    let mut flying = vec![false; count as usize];
    let mut tries = vec![0u32; count as usize];
    let mut first_failure: Vec<Option<tokio::time::Instant>> = vec![None; count as usize];
    let budget = shared.budget;
    loop {
        let playhead = *want.borrow_and_update();
        // What to fetch next: from the playhead on (within the window), then the holes.
        let (limit, wrap) = fetch_window(playhead, count, &window, budget);
        let candidates = (playhead..limit).chain(if wrap { 0..playhead } else { 0..0 });
        let mut next = Vec::new();
        {
            let presence = shared.lock();
            if presence.count == count || presence.failed.is_some() {
                return;
            }
            for s in candidates {
                if !presence.present[s as usize] && !flying[s as usize] {
                    next.push(s);
                }
            }
        }
        for s in next {
            // The segment under the playhead may go over the limit: it is what stalls.
            if in_flight.len() >= window.parallel
                && !(s == playhead && in_flight.len() < window.parallel * 2)
            {
                break;
            }
            if let Some(budget) = budget {
                let full =
                    || shared.complete_segments() as usize + in_flight.len() >= budget as usize;
                while full() && shared.drop_farthest(playhead, limit) {}
                // Over the budget only for what the player waits for.
                if full() && s != playhead {
                    break;
                }
            }
            flying[s as usize] = true;
            let race_after = match window.segment_time {
                Some(t) => (t * s.saturating_sub(playhead))
                    .saturating_sub(RACE_MARGIN)
                    .max(RACE_MIN),
                None => RACE_MAX,
            };
            let (sources, manifest, progress) =
                (sources.clone(), shared.manifest.clone(), progress.clone());
            in_flight.spawn(async move {
                let result = fetch_segment(&sources, &manifest, s, race_after, &progress).await;
                (s, result)
            });
            // The player waits for it (a start or a seek): it has the peers to itself until
            // it lands, instead of sharing their upload with the segments after it.
            if s == playhead {
                break;
            }
        }
        tokio::select! {
            done = in_flight.join_next(), if !in_flight.is_empty() => {
                let Some(Ok((s, result))) = done else { continue };
                flying[s as usize] = false;
                match result {
                    Ok(mut bytes) => {
                        if let Some(budget) = budget
                            && shared.complete_segments() >= budget
                        {
                            let playhead = *want.borrow();
                            let (end, _) = fetch_window(playhead, count, &window, Some(budget));
                            if !shared.drop_farthest(playhead, end) && !(playhead..end).contains(&s) {
                                // Left behind by a seek, and no room: not worth a drop.
                                continue;
                            }
                        }
                        let at = shared.manifest.segment_offset(s);
                        let sealed = match &shared.seal {
                            Some(seal) => seal.apply(at, &mut bytes),
                            None => Ok(()),
                        };
                        if let Err(e) = sealed.and_then(|()| shared.file.write_all_at(&bytes, at)) {
                            shared.fail(format!("writing {}: {e}", shared.path.display()));
                            return;
                        }
                        let mut presence = shared.lock();
                        presence.present[s as usize] = true;
                        presence.count += 1;
                        drop(presence);
                        shared.version.send_modify(|v| *v += 1);
                    }
                    Err(SegmentError::NoOrigin) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        tries[s as usize] += 1;
                        let since = *first_failure[s as usize]
                            .get_or_insert_with(tokio::time::Instant::now);
                        if tries[s as usize] >= SEGMENT_TRIES
                            && since.elapsed() >= SEGMENT_PATIENCE
                        {
                            shared.fail(format!("segment {s}: {e}"));
                            return;
                        }
                        tokio::time::sleep((RETRY_STEP * tries[s as usize]).min(RETRY_MAX)).await;
                    }
                }
            }
            changed = want.changed() => {
                if changed.is_err() { return; }
            }
        }
    }
}

/// Reads the rebuilt movie; see the module docs.
pub struct StreamReader {
    shared: Arc<StreamShared>,
    pos: u64,
    /// The segment being waited for, and the wait.
    waiting: Option<(u32, WaitFuture)>,
    /// When the last seek happened, until bytes are read after it.
    seeked_at: Option<std::time::Instant>,
}

type WaitFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// A reader at the start of `shared`'s movie.
    pub fn new(shared: Arc<StreamShared>) -> StreamReader {
        StreamReader {
            shared,
            pos: 0,
            waiting: None,
            seeked_at: None,
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn len(&self) -> u64 {
        self.shared.manifest.file_size
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shared(&self) -> &Arc<StreamShared> {
        &self.shared
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let m = self.shared.manifest.clone();
        if self.pos >= m.file_size || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let segment = (self.pos / u64::from(m.segment_size)) as u32;
        self.shared.set_playhead(segment);
        let end = m.segment_offset(segment) + m.segment_len(segment) as u64;
        let n = ((end - self.pos) as usize).min(buf.remaining());
        loop {
            let Some(epoch) = self.shared.held(segment) else {
                // A wait left from another segment (before a seek) is not this one's.
                if self.waiting.as_ref().is_some_and(|(s, _)| *s != segment) {
                    self.waiting = None;
                }
                let shared = self.shared.clone();
                let (_, waiting) = self.waiting.get_or_insert_with(|| {
                    (
                        segment,
                        Box::pin(async move { shared.wait_for(segment).await }),
                    )
                });
                match waiting.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        self.waiting = None;
                        result?;
                        continue;
                    }
                }
            };
            self.waiting = None;
            let pos = self.pos;
            self.shared
                .file
                .read_exact_at(buf.initialize_unfilled_to(n), pos)?;
            // Dropped while it was read: what was read may be a hole; read it once back.
            if self.shared.held(segment) == Some(epoch) {
                break;
            }
        }
        let filled = buf.initialize_unfilled_to(n);
        if let Some(seal) = &self.shared.seal {
            seal.apply(self.pos, filled)?;
        }
        buf.advance(n);
        self.pos += n as u64;
        if let Some(at) = self.seeked_at.take() {
            self.shared
                .seeks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(at.elapsed());
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for StreamReader {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let size = self.shared.manifest.file_size as i128;
        let target = match position {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => size + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if !(0..=size).contains(&target) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek to {target} outside 0..={size}"),
            ));
        }
        if self.pos != target as u64 {
            self.seeked_at = Some(std::time::Instant::now());
        }
        self.pos = target as u64;
        self.waiting = None;
        let segment_size = u64::from(self.shared.manifest.segment_size);
        let last = self.shared.manifest.segment_count().saturating_sub(1);
        let segment = ((self.pos / segment_size) as u32).min(last);
        self.shared.set_playhead(segment);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

/// When a waited-for segment became available, for measuring start and seek delays.
pub async fn time_until_present(shared: &StreamShared, segment: u32) -> io::Result<Duration> {
    let started = Instant::now();
    shared.wait_for(segment).await?;
    Ok(started.elapsed())
}
