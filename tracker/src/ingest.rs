//! `rivulet-tracker ingest`: a media file becomes a catalogue movie — remuxed into
//! Matroska with its index at the front, given a poster, hashed into its manifest — and
//! appears in the catalogue by one atomic rename, or not at all.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use rivulet_node_core::format::{self, FormatError, ManifestBuilder};
use thiserror::Error;

use crate::catalogue::{
    self, CatalogueError, LEAVES_FILE, MANIFEST_FILE, MAX_TITLE_CHARS, POSTER_FILE, RECORD_FILE,
    STREAM_FILE, VideoRecord, write_synced,
};
use crate::data_dir::{DataDir, DataDirError, Staging};
use crate::ffmpeg::{self, ToolError};
use crate::matroska::{self, MatroskaHead};
use crate::store::{ObjectMovies, StoreError, UploadError};

/// Longest side of a poster, in pixels.
pub const POSTER_MAX_WIDTH: u32 = 480;
pub const POSTER_MAX_HEIGHT: u32 = 360;

/// Demuxers that turn text into pictures.
const TEXT_FORMATS: &[&str] = &["tty", "bin", "xbin", "adf", "idf"];

/// What to ingest.
#[derive(Clone, Debug)]
pub struct IngestRequest {
    pub input: PathBuf,
    pub title: String,
    pub price: u64,
    /// A chosen id; a random one when `None`.
    pub id: Option<String>,
}

/// Why an ingest failed; each message is one line that names the file or field at fault.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error("title is empty")]
    EmptyTitle,
    #[error("title is {0} characters long; at most {MAX_TITLE_CHARS} are allowed")]
    LongTitle(usize),
    #[error("title contains control characters")]
    TitleControl,
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{0} is empty")]
    EmptyFile(PathBuf),
    #[error("{path} is not a video ffmpeg can read: {reason}")]
    NotVideo { path: PathBuf, reason: String },
    #[error("{0} has no video stream")]
    NoVideoStream(PathBuf),
    #[error("{path} could not be remuxed: {reason}")]
    Remux { path: PathBuf, reason: String },
    #[error("no poster frame could be taken from {path}: {reason}")]
    Poster { path: PathBuf, reason: String },
    #[error("video id {0:?} is already taken")]
    IdTaken(String),
    #[error("{0}")]
    Tool(ToolError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("hashing the stream file failed: {0}")]
    Format(#[from] FormatError),
    #[error("uploading the new video: {0}")]
    Store(#[from] StoreError),
    #[error("writing the new video into {path} failed: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The staging area of the ingest now running, for the signal handler to remove.
static ACTIVE: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);

/// Makes SIGINT, SIGTERM and SIGHUP remove the running ingest's staging area before the
/// process exits, so an interrupted ingest leaves nothing behind. (SIGKILL cannot be caught;
/// its leftovers are swept by the next command that opens the data dir.)
pub fn remove_staging_on_signal() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("ingest-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((dir, lock)) = active.as_ref() {
                    let _ = std::fs::remove_dir_all(dir);
                    let _ = std::fs::remove_file(lock);
                }
                tracing::warn!("interrupted; nothing was added to the catalogue");
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

/// Checks a title and returns it trimmed.
pub fn check_title(title: &str) -> Result<String, IngestError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(IngestError::EmptyTitle);
    }
    let chars = title.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(IngestError::LongTitle(chars));
    }
    if title.chars().any(char::is_control) {
        return Err(IngestError::TitleControl);
    }
    Ok(title.to_owned())
}

/// Wall time of each phase of an ingest, for benchmarks and the curious.
#[derive(Clone, Copy, Debug, Default)]
pub struct IngestTimings {
    /// Checks, ffmpeg's remux, and what runs beside it: ffprobe, the poster, early hashing.
    pub remux: Duration,
    /// Hashing every chunk into the manifest (the stream file's fsync runs meanwhile).
    pub hash: Duration,
    /// Writing the other files, waiting for the fsyncs, and the commit.
    pub commit: Duration,
}

/// A committed ingest.
#[derive(Clone, Debug)]
pub struct Ingested {
    pub id: String,
    pub timings: IngestTimings,
}

/// Ingests one file; returns the new video id.
pub fn ingest(data: &DataDir, request: &IngestRequest) -> Result<String, IngestError> {
    ingest_timed(data, request).map(|done| done.id)
}

/// Where an ingest commits its movie.
#[derive(Clone, Copy, Debug)]
pub enum IngestTarget<'a> {
    /// The data dir's `videos/` (the default).
    DataDir,
    /// An object store (`--store s3://…`); the data dir holds only the staging area.
    Store(&'a ObjectMovies),
}

/// [`ingest`], also telling how long each phase took.
pub fn ingest_timed(data: &DataDir, request: &IngestRequest) -> Result<Ingested, IngestError> {
    ingest_to(data, IngestTarget::DataDir, request)
}

/// [`ingest_timed`] into `target`: staged in the data dir as always, then moved into
/// `videos/` or uploaded to the store (record last, see `store`). Blocking: for a store it
/// runs its own small runtime, so call it from a thread that is not inside one.
pub fn ingest_to(
    data: &DataDir,
    target: IngestTarget<'_>,
    request: &IngestRequest,
) -> Result<Ingested, IngestError> {
    let mut timings = IngestTimings::default();
    let mut clock = Instant::now();
    let mut lap = move || {
        let now = Instant::now();
        let spent = now - clock;
        clock = now;
        spent
    };
    let (title, id, input_size) = check_request(data, request)?;
    let runtime = match target {
        IngestTarget::DataDir => None,
        IngestTarget::Store(store) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| IngestError::Write {
                    path: data.root().to_owned(),
                    source,
                })?;
            if runtime.block_on(store.has_movie(&id))? {
                return Err(IngestError::IdTaken(id));
            }
            Some(runtime)
        }
    };
    let input = request.input.as_path();
    let staging = data.begin_staging(&format!("{id}.{}", catalogue::new_id()))?;
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((staging.path().to_owned(), staging.lock_path().to_owned()));
    let dir = staging.path().to_owned();
    let stream = dir.join(STREAM_FILE);
    let write_err = |source| IngestError::Write {
        path: data.root().to_owned(),
        source,
    };
    let builder = ManifestBuilder::new(
        format::DEFAULT_SEGMENT_SIZE,
        format::DEFAULT_K,
        format::DEFAULT_N,
    )?;
    let remuxed = remux_phase(input, &stream, &builder, input_size)?;
    timings.remux = lap();
    let (hashed, synced) = hash_phase(data.root(), input, &stream, builder, &remuxed)?;
    timings.hash = lap();
    synced.map_err(write_err)?;
    let record = VideoRecord {
        id: id.clone(),
        title,
        price: request.price,
        duration_ms: remuxed.duration_ms,
        video_codec: codec_name(&remuxed.video),
        audio_codec: remuxed.head.audio().map(codec_name),
        width: remuxed.video.width,
        height: remuxed.video.height,
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    write_files(&dir, &hashed, &record).map_err(write_err)?;
    if let (IngestTarget::Store(store), Some(runtime)) = (target, runtime) {
        let uploaded = runtime.block_on(store.upload_movie(staging.path(), &id));
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        drop(staging);
        timings.commit = lap();
        return match uploaded {
            Ok(()) => Ok(Ingested { id, timings }),
            Err(UploadError::IdTaken(id)) => Err(IngestError::IdTaken(id)),
            Err(UploadError::Store(e)) => Err(IngestError::Store(e)),
        };
    }
    let committed = commit_phase(data, staging, &id);
    timings.commit = lap();
    match committed {
        Ok(()) => Ok(Ingested { id, timings }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(IngestError::IdTaken(id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Err(IngestError::IdTaken(id)),
        Err(source) => Err(write_err(source)),
    }
}

/// Phase 1: checks the title, the id (or makes one) and the input; returns the title
/// trimmed, the id and the input's size.
fn check_request(
    data: &DataDir,
    request: &IngestRequest,
) -> Result<(String, String, u64), IngestError> {
    let title = check_title(&request.title)?;
    let id = match &request.id {
        Some(id) => {
            catalogue::check_id(id)?;
            id.clone()
        }
        None => catalogue::new_id(),
    };
    if data.video_dir(&id).exists() {
        return Err(IngestError::IdTaken(id));
    }
    let input_size = check_readable(&request.input)?;
    Ok((title, id, input_size))
}

/// What the remux learnt: the stream file's head, its length, and the poster when the input
/// gave one early.
struct Remuxed {
    head: MatroskaHead,
    video: matroska::Track,
    duration_ms: u64,
    early_poster: Option<Vec<u8>>,
}

/// Phase 2: the remux. Nearly every input is copied stream for stream: that remux starts at
/// once, and the segments it has written are hashed as it goes. Only when its result is not
/// a plain movie is the input probed, to refuse it with a reason or to transcode what
/// Matroska cannot carry. The poster is taken from the input as soon as ffmpeg has said how
/// long it is.
fn remux_phase(
    input: &Path,
    stream: &Path,
    builder: &ManifestBuilder,
    input_size: u64,
) -> Result<Remuxed, IngestError> {
    let remuxing = AtomicBool::new(true);
    let (duration_tx, duration_rx) = std::sync::mpsc::channel();
    let (head, early_poster) = std::thread::scope(|scope| {
        scope.spawn(|| hash_while_writing(stream, builder, &remuxing));
        let poster = scope.spawn(move || {
            let duration_ms = duration_rx.recv().ok()?;
            make_poster(input, duration_ms).ok()
        });
        let head = remux_movie(input, stream, index_reserve(input_size), duration_tx);
        remuxing.store(false, Ordering::Relaxed);
        (head, join(poster))
    });
    let head = head?;
    let (Some(duration_ms), Some(video)) = (head.duration_ms, head.video()) else {
        return Err(IngestError::NotVideo {
            path: input.to_owned(),
            reason: "it has no duration".into(),
        });
    };
    let video = matroska::Track {
        kind: video.kind,
        codec_id: video.codec_id.clone(),
        width: video.width,
        height: video.height,
    };
    Ok(Remuxed {
        head,
        video,
        duration_ms,
        early_poster,
    })
}

/// What hashing produced: the manifest, its leaf table and the poster.
struct Hashed {
    manifest: format::Manifest,
    leaves: format::LeafTable,
    poster: Vec<u8>,
}

/// Phase 3: the stream file goes to disk while the rest of it is hashed from the page cache
/// (and, if the input gave no poster, the poster is taken from the stream file). Returns the
/// fsync's outcome apart, so that its wait is not counted as hashing.
fn hash_phase(
    root: &Path,
    input: &Path,
    stream: &Path,
    builder: ManifestBuilder,
    remuxed: &Remuxed,
) -> Result<(Hashed, std::io::Result<()>), IngestError> {
    let file = std::fs::File::open(stream).map_err(|source| IngestError::Write {
        path: root.to_owned(),
        source,
    })?;
    let (synced, poster, built) = std::thread::scope(|scope| {
        let synced = scope.spawn(|| file.sync_all());
        let poster = scope.spawn(|| match &remuxed.early_poster {
            Some(poster) => Ok(poster.clone()),
            None => make_poster(stream, remuxed.duration_ms),
        });
        let built = builder.finish(&file);
        (join(synced), join(poster), built)
    });
    let (manifest, leaves) = built?;
    let poster = poster.map_err(|e| match e {
        IngestError::Poster { reason, .. } => IngestError::Poster {
            path: input.to_owned(),
            reason,
        },
        other => other,
    })?;
    let hashed = Hashed {
        manifest,
        leaves,
        poster,
    };
    Ok((hashed, synced))
}

/// Phase 4: writes the poster, manifest, leaf table and record beside the stream file, each
/// synced, then the folder.
fn write_files(dir: &Path, hashed: &Hashed, record: &VideoRecord) -> std::io::Result<()> {
    write_synced(dir, POSTER_FILE, &hashed.poster)?;
    write_synced(dir, MANIFEST_FILE, &hashed.manifest.to_json())?;
    let mut table = Vec::new();
    hashed.leaves.write(&mut table)?;
    write_synced(dir, LEAVES_FILE, &table)?;
    let record_json = serde_json::to_vec_pretty(record).unwrap_or_default();
    write_synced(dir, RECORD_FILE, &record_json)?;
    std::fs::File::open(dir).and_then(|f| f.sync_all())
}

/// Phase 5: moves the staged folder into the catalogue under the signal handler's lock: a
/// signal now waits, then finds nothing to undo.
fn commit_phase(data: &DataDir, staging: Staging, id: &str) -> std::io::Result<()> {
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let committed = staging.commit(&data.video_dir(id));
    *active = None;
    committed
}

/// Waits for a scoped thread, passing a panic on to the caller.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Checks that `path` is a readable, non-empty file; returns its size.
fn check_readable(path: &Path) -> Result<u64, IngestError> {
    let unreadable = |reason: String| IngestError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(unreadable("it is a directory".into()));
    }
    std::fs::File::open(path).map_err(|e| unreadable(io_reason(&e)))?;
    if meta.len() == 0 {
        return Err(IngestError::EmptyFile(path.to_owned()));
    }
    Ok(meta.len())
}

/// An io::Error's message without Rust's " (os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(at) => s[..at].to_owned(),
        None => s,
    }
}

/// Index space to reserve at the front: ~16 bytes per second of the longest movie the file
/// could be (at 0.5 Mbit/s), at least 64 KiB. Too little costs one more remux, never a
/// wrong file.
fn index_reserve(input_size: u64) -> u64 {
    (input_size / 62_500 * 16).max(64 * 1024)
}

/// Probes the input and refuses what is not a movie.
fn probe_input(input: &Path) -> Result<ffmpeg::Probe, IngestError> {
    let not_video = |reason: String| IngestError::NotVideo {
        path: input.to_owned(),
        reason,
    };
    let probe = ffmpeg::probe(input).map_err(|e| match e {
        ToolError::Failed(reason) => not_video(reason),
        other => IngestError::Tool(other),
    })?;
    if probe.format_name.contains("_pipe") || probe.format_name == "image2" {
        return Err(not_video("it is a still image".into()));
    }
    // ffmpeg renders any text file as a video of "ANSI art"; that is not a movie.
    if TEXT_FORMATS.contains(&probe.format_name.as_str()) {
        return Err(not_video("it is a text file".into()));
    }
    if probe.video().is_none() {
        return Err(IngestError::NoVideoStream(input.to_owned()));
    }
    Ok(probe)
}

/// Remuxes `input` into the stream file: first copying every stream; when the result is not
/// a plain movie (or the copy fails), probing the input to refuse it with a reason or to
/// remux it again with the streams Matroska cannot carry transcoded.
///
/// The input's duration goes to `duration` as soon as the first remux has read it.
fn remux_movie(
    input: &Path,
    stream: &Path,
    reserve: u64,
    duration: std::sync::mpsc::Sender<u64>,
) -> Result<MatroskaHead, IngestError> {
    let copied = remux(
        input,
        stream,
        &ffmpeg::copy_all_args(),
        reserve,
        Some(duration),
    );
    if copied.as_ref().is_ok_and(MatroskaHead::is_plain_movie) {
        return copied;
    }
    let probe = probe_input(input)?;
    let head = if ffmpeg::copies_everything(&probe) {
        copied?
    } else {
        remux(input, stream, &ffmpeg::stream_args(&probe), reserve, None)?
    };
    if head.video().is_none() {
        return Err(IngestError::NoVideoStream(input.to_owned()));
    }
    Ok(head)
}

/// ffmpeg's short name for a track's codec, or its Matroska codec ID.
fn codec_name(track: &matroska::Track) -> String {
    track
        .codec_name()
        .map_or_else(|| track.codec_id.clone(), str::to_owned)
}

/// Remuxes with the stream arguments `streams` and checks that the index landed at the
/// front, growing the reserved index space and trying again when it did not.
fn remux(
    input: &Path,
    output: &Path,
    streams: &[String],
    mut reserve: u64,
    mut duration: Option<std::sync::mpsc::Sender<u64>>,
) -> Result<MatroskaHead, IngestError> {
    let failed = |reason: String| IngestError::Remux {
        path: input.to_owned(),
        reason,
    };
    let tool = |e| match e {
        ToolError::Failed(reason) => failed(reason),
        other => IngestError::Tool(other),
    };
    for _ in 0..3 {
        let needed = ffmpeg::Remux::start(input, output, streams, reserve, duration.take())
            .map_err(tool)?
            .wait()
            .map_err(tool)?;
        let head = matroska::read_head(output)
            .map_err(|e| failed(format!("the remuxed file does not read back: {e}")))?
            .ok_or_else(|| failed("ffmpeg did not write Matroska".into()))?;
        if head.cues_first {
            return Ok(head);
        }
        reserve = needed.map_or(reserve * 4, |n| n + n / 4 + 4096);
    }
    Err(failed(
        "its index did not fit at the front of the file".into(),
    ))
}

/// Hashes the segments ffmpeg has finished writing until `remuxing` turns false. Best
/// effort: whatever it misses or gets wrong, `ManifestBuilder::finish` redoes.
fn hash_while_writing(stream: &Path, builder: &ManifestBuilder, remuxing: &AtomicBool) {
    let mut file = None;
    while remuxing.load(Ordering::Relaxed) {
        if file.is_none() {
            file = std::fs::File::open(stream).ok();
        }
        let progressed = file.as_ref().is_some_and(|f| {
            f.metadata()
                .ok()
                .and_then(|m| builder.hash_written(f, m.len()).ok())
                .is_some_and(|n| n > 0)
        });
        if !progressed {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Takes a frame a tenth of the way in (the very first is often black), scales it to fit
/// the poster box and encodes it as JPEG.
fn make_poster(input: &Path, duration_ms: u64) -> Result<Vec<u8>, IngestError> {
    let failed = |reason: String| IngestError::Poster {
        path: input.to_owned(),
        reason,
    };
    let mut ppm = ffmpeg::grab_frame(input, duration_ms / 10).map_err(|e| failed(e.to_string()))?;
    if ppm.is_empty() {
        ppm = ffmpeg::grab_frame(input, 0).map_err(|e| failed(e.to_string()))?;
    }
    if ppm.is_empty() {
        return Err(failed("ffmpeg decoded no frame".into()));
    }
    let frame = image::load_from_memory_with_format(&ppm, image::ImageFormat::Pnm)
        .map_err(|e| failed(e.to_string()))?;
    let poster = frame
        .resize(POSTER_MAX_WIDTH, POSTER_MAX_HEIGHT, FilterType::Triangle)
        .to_rgb8();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), 85)
        .encode_image(&poster)
        .map_err(|e| failed(e.to_string()))?;
    Ok(jpeg)
}
