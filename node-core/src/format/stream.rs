//! The origin's side of the format: hashing a stream file into its manifest at ingest, and
//! producing any chunk of it on demand afterwards. The stream file is stored once; chunks,
//! parity included, are computed from it when asked for.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest as _, Sha256};

use super::merkle::{MerkleTree, leaf_hash};
use super::{Digest, FORMAT_VERSION, FormatError, Manifest, SegmentHashes, encode_chunk};
use crate::codec::Codec;

const LEAF_MAGIC: &[u8; 4] = b"RVLT";

/// The leaf hash of every chunk of every segment (segments × n × 32 bytes), kept beside the
/// stream file so the origin can attach Merkle paths without re-encoding whole segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafTable {
    n: usize,
    leaves: Vec<Digest>,
}

impl LeafTable {
    /// The n leaf hashes of `segment`.
    pub fn segment(&self, segment: u32) -> &[Digest] {
        let at = segment as usize * self.n;
        &self.leaves[at..at + self.n]
    }

    /// Writes the table: magic, n (u16 LE), segment count (u32 LE), then the hashes.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(LEAF_MAGIC)?;
        out.write_all(&(self.n as u16).to_le_bytes())?;
        out.write_all(&((self.leaves.len() / self.n) as u32).to_le_bytes())?;
        for leaf in &self.leaves {
            out.write_all(&leaf.0)?;
        }
        Ok(())
    }

    /// Reads a table and checks every segment's root against `manifest`.
    pub fn read(input: &mut impl Read, manifest: &Manifest) -> Result<LeafTable, FormatError> {
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(FormatError::io("reading the chunk hash table"))?;
        let n = usize::from(manifest.n);
        let segments = manifest.segment_count() as usize;
        let expected = 10 + segments * n * 32;
        if bytes.len() != expected
            || &bytes[0..4] != LEAF_MAGIC
            || bytes[4..6] != manifest.n.to_le_bytes()
            || bytes[6..10] != manifest.segment_count().to_le_bytes()
        {
            return Err(FormatError::StreamMismatch(
                "the chunk hash table is malformed or belongs to another manifest".into(),
            ));
        }
        let leaves: Vec<Digest> = bytes[10..]
            .chunks_exact(32)
            .map(|h| Digest(h.try_into().unwrap_or([0; 32])))
            .collect();
        let table = LeafTable { n, leaves };
        for (segment, hashes) in manifest.segments.iter().enumerate() {
            let segment = segment as u32;
            if MerkleTree::new(table.segment(segment)).root() != hashes.root {
                return Err(FormatError::LeafTable { segment });
            }
        }
        Ok(table)
    }
}

/// Reads `segment` of `file` and zero-pads it to k equal shards.
fn read_padded_segment(
    file: &File,
    manifest: &Manifest,
    segment: u32,
) -> Result<Vec<u8>, FormatError> {
    let len = manifest.segment_len(segment);
    let mut buf = vec![0u8; manifest.chunk_len(segment) * usize::from(manifest.k)];
    file.read_exact_at(&mut buf[..len], manifest.segment_offset(segment))
        .map_err(FormatError::io(format!("reading segment {segment}")))?;
    Ok(buf)
}

/// Hashes the stream file at `path` into its manifest and leaf table: every chunk of every
/// segment is encoded once to hash it. Segments are spread over all cores while one more
/// thread takes the whole-file SHA-256.
pub fn build_manifest(
    path: &Path,
    segment_size: u32,
    k: u16,
    n: u16,
) -> Result<(Manifest, LeafTable), FormatError> {
    let file = File::open(path).map_err(FormatError::io(format!("opening {}", path.display())))?;
    let file_size = file
        .metadata()
        .map_err(FormatError::io(format!("reading {}", path.display())))?
        .len();
    let segment_count = file_size.div_ceil(u64::from(segment_size.max(1)));
    let mut manifest = Manifest {
        version: FORMAT_VERSION,
        file_size,
        segment_size,
        k,
        n,
        sha256: Digest::default(),
        segments: vec![
            SegmentHashes {
                root: Digest::default(),
                blake3: Digest::default()
            };
            usize::try_from(segment_count)
                .unwrap_or(usize::MAX)
                .min(u32::MAX as usize)
        ],
    };
    manifest.validate()?;
    let codec = manifest.codec();
    let n = usize::from(n);
    let next = AtomicU32::new(0);
    let results: Mutex<Vec<(u32, SegmentHashes, Vec<Digest>)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, |p| p.get());

    let sha256 = std::thread::scope(|scope| -> Result<Digest, FormatError> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<(), FormatError> {
                    let mut parity = Vec::new();
                    loop {
                        let segment = next.fetch_add(1, Ordering::Relaxed);
                        if segment >= manifest.segment_count() {
                            return Ok(());
                        }
                        let data = read_padded_segment(&file, &manifest, segment)?;
                        let shard = manifest.chunk_len(segment);
                        let shards: Vec<&[u8]> = data.chunks(shard).collect();
                        parity.resize((n - shards.len()) * shard, 0);
                        let mut outs: Vec<&mut [u8]> = parity.chunks_mut(shard).collect();
                        codec.encode_parity(&shards, &mut outs)?;
                        let leaves: Vec<Digest> = shards
                            .iter()
                            .copied()
                            .chain(parity.chunks(shard))
                            .enumerate()
                            .map(|(index, payload)| leaf_hash(index as u16, payload))
                            .collect();
                        let hashes = SegmentHashes {
                            root: MerkleTree::new(&leaves).root(),
                            blake3: blake3::hash(&data[..manifest.segment_len(segment)]).into(),
                        };
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((segment, hashes, leaves));
                    }
                })
            })
            .collect();
        let sha = whole_file_sha256(&file);
        for h in handles {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        }
        sha
    })?;

    manifest.sha256 = sha256;
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|r| r.0);
    let mut leaves = Vec::with_capacity(results.len() * n);
    for (segment, hashes, segment_leaves) in results {
        manifest.segments[segment as usize] = hashes;
        leaves.extend(segment_leaves);
    }
    Ok((manifest, LeafTable { n, leaves }))
}

fn whole_file_sha256(file: &File) -> Result<Digest, FormatError> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let got = file
            .read_at(&mut buf, at)
            .map_err(FormatError::io("hashing the stream file"))?;
        if got == 0 {
            return Ok(Digest(sha.finalize().into()));
        }
        sha.update(&buf[..got]);
        at += got as u64;
    }
}

/// Produces chunks of one stored movie on demand: reads the segment from the stream file,
/// computes the asked-for chunk and frames it with its Merkle path.
#[derive(Debug)]
pub struct StreamChunker {
    file: File,
    manifest: Manifest,
    leaves: LeafTable,
    codec: Codec,
}

impl StreamChunker {
    /// Opens a stored movie. Checks the stream file's size and the leaf table against the
    /// manifest; the bytes themselves are checked as chunks are verified.
    pub fn open(
        stream: &Path,
        manifest: Manifest,
        leaves: LeafTable,
    ) -> Result<StreamChunker, FormatError> {
        let file =
            File::open(stream).map_err(FormatError::io(format!("opening {}", stream.display())))?;
        let size = file
            .metadata()
            .map_err(FormatError::io(format!("reading {}", stream.display())))?
            .len();
        if size != manifest.file_size {
            return Err(FormatError::StreamMismatch(format!(
                "{} is {size} bytes, the manifest says {}",
                stream.display(),
                manifest.file_size
            )));
        }
        let codec = manifest.codec();
        Ok(StreamChunker {
            file,
            manifest,
            leaves,
            codec,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Chunk `index` of `segment` in wire form.
    pub fn chunk(&self, segment: u32, index: u16) -> Result<Vec<u8>, FormatError> {
        if segment >= self.manifest.segment_count() {
            return Err(FormatError::SegmentOutOfRange {
                segment,
                count: self.manifest.segment_count(),
            });
        }
        let data = read_padded_segment(&self.file, &self.manifest, segment)?;
        let shard = self.manifest.chunk_len(segment);
        let shards: Vec<&[u8]> = data.chunks(shard).collect();
        let mut payload = vec![0u8; shard];
        self.codec
            .encode_chunk(&shards, usize::from(index), &mut payload)?;
        let proof = MerkleTree::new(self.leaves.segment(segment)).proof(usize::from(index));
        Ok(encode_chunk(segment, index, &proof, &payload))
    }
}
