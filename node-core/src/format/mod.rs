//! The media format: a stream file cut into fixed-size segments, each coded into n chunks of
//! which any k rebuild it; the manifest that lets a receiver verify every chunk before use;
//! and the chunk's wire and disk form. `docs/format.md` explains the numbers chosen here.

mod chunk;
mod digest;
mod manifest;
pub mod merkle;
mod stream;
pub mod tree_hash;

pub use chunk::{CHUNK_HEADER_LEN, ChunkHeader, encode_chunk};
pub use digest::Digest;
pub use manifest::{FORMAT_VERSION, Manifest, SegmentHashes};
pub use stream::{LeafTable, ManifestBuilder, StreamChunker, build_manifest, chunk_of_segment};

use thiserror::Error;

use crate::codec::CodecError;

/// Bytes per segment: 1 MiB, about 2.6 s of video at 3.2 Mbit/s and 1 s at 8 Mbit/s.
pub const DEFAULT_SEGMENT_SIZE: u32 = 1 << 20;
/// Data shards per segment: 16 chunks of 64 KiB rebuild a full segment.
pub const DEFAULT_K: u16 = 16;
/// Chunk indices per segment: 4× redundancy, so up to 64 caches can each hold a different
/// sixteenth of a movie.
pub const DEFAULT_N: u16 = 64;
/// Longest manifest accepted from disk or the network.
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// Why a manifest, a chunk or a segment was refused. Messages name the segment and chunk.
#[derive(Debug, Error)]
pub enum FormatError {
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    ManifestSyntax(#[from] serde_json::Error),
    #[error("manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES} allowed")]
    ManifestTooLarge(usize),
    #[error("manifest version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    ManifestVersion(u32),
    #[error("manifest is inconsistent: {0}")]
    ManifestInvalid(String),
    #[error("segment {segment}, chunk {index}: {reason}")]
    BadChunk {
        segment: u32,
        index: u16,
        reason: String,
    },
    #[error("segment {segment} rebuilt from chunks does not match its hash")]
    SegmentHash { segment: u32 },
    #[error("segment {segment} is out of range (the movie has {count} segments)")]
    SegmentOutOfRange { segment: u32, count: u32 },
    #[error("the chunk hash table does not match the manifest at segment {segment}")]
    LeafTable { segment: u32 },
    #[error("stream file does not match the manifest: {0}")]
    StreamMismatch(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl FormatError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FormatError {
        let context = context.into();
        move |source| FormatError::Io { context, source }
    }
}
