//! The catalogue of committed movies, one directory each:
//!
//! ```text
//! videos/<id>/video.json     title, price, duration, codecs (VideoRecord)
//! videos/<id>/manifest.json  sizes, k, n, hashes (node-core's Manifest)
//! videos/<id>/leaves.bin     leaf hash of every chunk, for Merkle paths
//! videos/<id>/stream.mkv     the stream file viewers rebuild byte for byte
//! videos/<id>/poster.jpg     the catalogue's poster
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use rivulet_node_core::format::{FormatError, LeafTable, Manifest, StreamChunker};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data_dir::{DataDir, DataDirError};

pub const RECORD_FILE: &str = "video.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const LEAVES_FILE: &str = "leaves.bin";
pub const STREAM_FILE: &str = "stream.mkv";
pub const POSTER_FILE: &str = "poster.jpg";

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest video id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// What the catalogue knows of a movie besides its manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoRecord {
    /// Stable id: lowercase letters, digits, '-' and '_'.
    pub id: String,
    /// Display title.
    pub title: String,
    /// Price in points.
    pub price: u64,
    /// Playing time in milliseconds.
    pub duration_ms: u64,
    /// Codec of the video stream, e.g. "h264".
    pub video_codec: String,
    /// Codec of the first audio stream, if any.
    pub audio_codec: Option<String>,
    /// Frame size of the video stream.
    pub width: u32,
    pub height: u32,
    /// Seconds since the Unix epoch when the ingest committed.
    pub created_at: u64,
}

/// One catalogue line, as `videos --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    pub id: String,
    pub title: String,
    pub duration_ms: u64,
    pub bytes: u64,
    pub segments: u32,
    pub k: u16,
    pub n: u16,
    pub price: u64,
}

/// Why a catalogue entry could not be read.
#[derive(Debug, Error)]
pub enum CatalogueError {
    #[error("no video with id {0:?}")]
    NotFound(String),
    #[error("invalid video id {0:?}: use 1–64 lowercase letters, digits, '-' or '_'")]
    BadId(String),
    #[error("video {id}: {file} is corrupt: {reason}")]
    Corrupt {
        id: String,
        file: &'static str,
        reason: String,
    },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
}

/// Checks a video id: it names a directory, so it must be a plain, safe name.
pub fn check_id(id: &str) -> Result<(), CatalogueError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !id.starts_with(['-', '_']);
    if ok {
        Ok(())
    } else {
        Err(CatalogueError::BadId(id.to_owned()))
    }
}

/// A fresh random id: 12 characters of [a-z0-9].
pub fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A committed movie as stored.
#[derive(Clone, Debug)]
pub struct StoredVideo {
    pub dir: PathBuf,
    pub record: VideoRecord,
    pub manifest: Manifest,
}

impl StoredVideo {
    /// Reads and checks `video.json` and `manifest.json` of movie `id`.
    pub fn load(data: &DataDir, id: &str) -> Result<StoredVideo, CatalogueError> {
        check_id(id)?;
        let dir = data.video_dir(id);
        if !dir.is_dir() {
            return Err(CatalogueError::NotFound(id.to_owned()));
        }
        let corrupt = |file: &'static str| {
            let id = id.to_owned();
            move |reason: String| CatalogueError::Corrupt { id, file, reason }
        };
        let record_bytes = std::fs::read(dir.join(RECORD_FILE))
            .map_err(|e| corrupt(RECORD_FILE)(e.to_string()))?;
        let record: VideoRecord = serde_json::from_slice(&record_bytes)
            .map_err(|e| corrupt(RECORD_FILE)(e.to_string()))?;
        if record.id != id {
            return Err(corrupt(RECORD_FILE)(format!(
                "it names video {:?}",
                record.id
            )));
        }
        let manifest_bytes = std::fs::read(dir.join(MANIFEST_FILE))
            .map_err(|e| corrupt(MANIFEST_FILE)(e.to_string()))?;
        let manifest = Manifest::from_json(&manifest_bytes)
            .map_err(|e| corrupt(MANIFEST_FILE)(e.to_string()))?;
        Ok(StoredVideo {
            dir,
            record,
            manifest,
        })
    }

    pub fn entry(&self) -> CatalogueEntry {
        CatalogueEntry {
            id: self.record.id.clone(),
            title: self.record.title.clone(),
            duration_ms: self.record.duration_ms,
            bytes: self.manifest.file_size,
            segments: self.manifest.segment_count(),
            k: self.manifest.k,
            n: self.manifest.n,
            price: self.record.price,
        }
    }

    pub fn stream_path(&self) -> PathBuf {
        self.dir.join(STREAM_FILE)
    }

    pub fn poster_path(&self) -> PathBuf {
        self.dir.join(POSTER_FILE)
    }

    /// Opens the origin's chunk producer for this movie, checking the leaf table and the
    /// stream file's size against the manifest.
    pub fn chunker(&self) -> Result<StreamChunker, CatalogueError> {
        let id = &self.record.id;
        let corrupt = |file: &'static str, e: FormatError| CatalogueError::Corrupt {
            id: id.clone(),
            file,
            reason: e.to_string(),
        };
        let mut leaves_file = File::open(self.dir.join(LEAVES_FILE)).map_err(|e| {
            corrupt(
                LEAVES_FILE,
                FormatError::Io {
                    context: "opening".into(),
                    source: e,
                },
            )
        })?;
        let leaves = LeafTable::read(&mut leaves_file, &self.manifest)
            .map_err(|e| corrupt(LEAVES_FILE, e))?;
        StreamChunker::open(&self.stream_path(), self.manifest.clone(), leaves)
            .map_err(|e| corrupt(STREAM_FILE, e))
    }
}

/// Every committed movie, sorted by title then id. Entries that fail to load are returned
/// beside the good ones so one bad movie does not hide the rest.
pub fn list(data: &DataDir) -> Result<(Vec<StoredVideo>, Vec<CatalogueError>), CatalogueError> {
    let dir = data.videos_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(source) => {
            return Err(DataDirError::Unreadable {
                path: data.root().to_path_buf(),
                source,
            }
            .into());
        }
    };
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().filter(|id| check_id(id).is_ok()) else {
            continue;
        };
        match StoredVideo::load(data, id) {
            Ok(video) => good.push(video),
            Err(e) => bad.push(e),
        }
    }
    good.sort_by(|a, b| {
        (a.record.title.as_str(), a.record.id.as_str())
            .cmp(&(b.record.title.as_str(), b.record.id.as_str()))
    });
    Ok((good, bad))
}

/// Writes `bytes` to `dir/name` and flushes it to disk.
pub(crate) fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = File::create(dir.join(name))?;
    f.write_all(bytes)?;
    f.sync_all()
}
