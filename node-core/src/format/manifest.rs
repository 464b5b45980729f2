//! The manifest: everything a receiver needs to check a movie's chunks and segments, and
//! nothing it could use to skip the checks. Versioned; validated whole on load.

use serde::{Deserialize, Serialize};

use super::chunk::ChunkHeader;
use super::merkle::{self, leaf_hash, root_from_proof};
use super::{Digest, FormatError, MAX_MANIFEST_BYTES, tree_hash};
use crate::codec::{Codec, MAX_CHUNKS};

/// The manifest version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Largest segment a manifest may declare (bounds a receiver's memory per segment).
const MAX_SEGMENT_SIZE: u32 = 64 << 20;
/// Smallest segment: one BLAKE3 chunk, so that every segment is a subtree of the file's hash.
const MIN_SEGMENT_SIZE: u32 = 1024;

/// Hashes of one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentHashes {
    /// Merkle root over the leaf hashes of its n chunks.
    pub root: Digest,
    /// The segment's node in the file's BLAKE3 tree (see `tree_hash`), checked after
    /// decoding; the nodes of all segments add up to the file's hash.
    pub blake3: Digest,
}

/// Sizes, code parameters and hashes of one stream file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`] for manifests this build accepts.
    pub version: u32,
    /// Bytes in the stream file.
    pub file_size: u64,
    /// Bytes per segment, a power of two ≥ 1 KiB; the last segment may be shorter.
    pub segment_size: u32,
    /// Data shards per segment: any k distinct chunks rebuild it.
    pub k: u16,
    /// Chunk indices per segment (0..k data, k..n parity).
    pub n: u16,
    /// BLAKE3 of the whole stream file (as `b3sum` prints it).
    pub blake3: Digest,
    /// One entry per segment, in order.
    pub segments: Vec<SegmentHashes>,
}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, FormatError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(FormatError::ManifestTooLarge(bytes.len()));
        }
        // Read the version first so a future manifest gets a version error, not a shape error.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes)?;
        if version != FORMAT_VERSION {
            return Err(FormatError::ManifestVersion(version));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        manifest.validate()?;
        manifest.check_hashes()?;
        Ok(manifest)
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // A Manifest holds only integers, strings and vectors: serialization cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Checks that the fields agree with each other.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |s: String| Err(FormatError::ManifestInvalid(s));
        if self.version != FORMAT_VERSION {
            return Err(FormatError::ManifestVersion(self.version));
        }
        if self.k == 0 || self.k > self.n || usize::from(self.n) > MAX_CHUNKS {
            return bad(format!(
                "k={} n={}: need 1 ≤ k ≤ n ≤ {MAX_CHUNKS}",
                self.k, self.n
            ));
        }
        if !self.segment_size.is_power_of_two()
            || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size)
        {
            return bad(format!(
                "segment size {} is not a power of two from {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE}",
                self.segment_size
            ));
        }
        if self.file_size == 0 {
            return bad("file size is zero".into());
        }
        let want = self.file_size.div_ceil(u64::from(self.segment_size));
        if want > u64::from(u32::MAX) || self.segments.len() as u64 != want {
            return bad(format!(
                "{} segments listed, {want} expected for {} bytes",
                self.segments.len(),
                self.file_size
            ));
        }
        Ok(())
    }

    /// Checks that the segment hashes add up to the file hash: a manifest whose parts
    /// disagree is refused before any chunk is fetched.
    fn check_hashes(&self) -> Result<(), FormatError> {
        let nodes: Vec<Digest> = self.segments.iter().map(|s| s.blake3).collect();
        if tree_hash::file_hash(&nodes) != self.blake3 {
            return Err(FormatError::ManifestInvalid(
                "segment hashes do not add up to the file hash".into(),
            ));
        }
        Ok(())
    }

    /// Number of segments.
    pub fn segment_count(&self) -> u32 {
        self.segments.len() as u32
    }

    /// Byte offset of `segment` in the stream file.
    pub fn segment_offset(&self, segment: u32) -> u64 {
        u64::from(segment) * u64::from(self.segment_size)
    }

    /// Bytes in `segment` (the last may be short).
    pub fn segment_len(&self, segment: u32) -> usize {
        let rest = self.file_size - self.segment_offset(segment);
        rest.min(u64::from(self.segment_size)) as usize
    }

    /// Bytes in each chunk of `segment`: the segment split into k shards, the last one
    /// zero-padded.
    pub fn chunk_len(&self, segment: u32) -> usize {
        self.segment_len(segment).div_ceil(usize::from(self.k))
    }

    /// Bytes of a chunk in its wire form (header, proof and payload).
    pub fn wire_len(&self, segment: u32) -> usize {
        ChunkHeader::wire_len(merkle::proof_len(self.n.into()), self.chunk_len(segment))
    }

    /// The code this manifest's chunks are made with.
    pub fn codec(&self) -> Codec {
        // validate() guarantees 1 ≤ k ≤ n ≤ 256.
        Codec::new(self.k.into(), self.n.into()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check_segment(&self, segment: u32) -> Result<&SegmentHashes, FormatError> {
        self.segments
            .get(segment as usize)
            .ok_or(FormatError::SegmentOutOfRange {
                segment,
                count: self.segment_count(),
            })
    }

    /// Verifies chunk `index` of `segment` in wire form and returns its payload. Checks the
    /// header against what was asked for and the Merkle path against the segment's root.
    pub fn verify_chunk<'a>(
        &self,
        segment: u32,
        index: u16,
        wire: &'a [u8],
    ) -> Result<&'a [u8], FormatError> {
        let hashes = self.check_segment(segment)?;
        let bad = |reason: String| FormatError::BadChunk {
            segment,
            index,
            reason,
        };
        if index >= self.n {
            return Err(bad(format!("index out of range (n={})", self.n)));
        }
        let (header, proof, payload) = ChunkHeader::parse(wire).map_err(bad)?;
        if header.segment != segment || header.index != index {
            return Err(bad(format!(
                "holds segment {} chunk {} instead",
                header.segment, header.index
            )));
        }
        if proof.len() != merkle::proof_len(self.n.into()) {
            return Err(bad(format!("proof has {} hashes", proof.len())));
        }
        if payload.len() != self.chunk_len(segment) {
            return Err(bad(format!(
                "payload is {} bytes, expected {}",
                payload.len(),
                self.chunk_len(segment)
            )));
        }
        let root = root_from_proof(index.into(), leaf_hash(index, payload), &proof);
        if root != hashes.root {
            return Err(bad("hash does not match the manifest".into()));
        }
        Ok(payload)
    }

    /// Decodes `segment` from at least k verified chunk payloads (index, bytes) and checks the
    /// result against the segment's hash. Returns exactly the segment's bytes.
    pub fn rebuild_segment(
        &self,
        codec: &Codec,
        segment: u32,
        chunks: &[(u16, &[u8])],
    ) -> Result<Vec<u8>, FormatError> {
        let hashes = self.check_segment(segment)?;
        let shard = self.chunk_len(segment);
        let mut out = vec![0u8; shard * usize::from(self.k)];
        let chunks: Vec<(usize, &[u8])> = chunks.iter().map(|&(i, b)| (i.into(), b)).collect();
        codec.decode(&chunks, &mut out)?;
        out.truncate(self.segment_len(segment));
        let node =
            tree_hash::segment_hash(&out, self.segment_offset(segment), self.segment_count());
        if node != hashes.blake3 {
            return Err(FormatError::SegmentHash { segment });
        }
        Ok(out)
    }
}
