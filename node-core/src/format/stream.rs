//! The origin's side of the format: hashing a stream file into its manifest at ingest, and
//! producing any chunk of it on demand afterwards. The stream file is stored once; chunks,
//! parity included, are computed from it when asked for.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use xxhash_rust::xxh3::xxh3_64;

use super::merkle::{MerkleTree, leaf_hash};
use super::{
    Digest, FORMAT_VERSION, FormatError, Manifest, SegmentHashes, encode_chunk, tree_hash,
};
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
    let mut buf = Vec::new();
    read_padded_segment_into(file, manifest, segment, &mut buf)?;
    Ok(buf)
}

/// [`read_padded_segment`] into a reused buffer: fresh megabyte buffers cost page faults and
/// kernel zeroing on every segment.
fn read_padded_segment_into(
    file: &File,
    manifest: &Manifest,
    segment: u32,
    buf: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let len = manifest.segment_len(segment);
    buf.resize(manifest.chunk_len(segment) * usize::from(manifest.k), 0);
    buf[len..].fill(0);
    file.read_exact_at(&mut buf[..len], manifest.segment_offset(segment))
        .map_err(FormatError::io(format!("reading segment {segment}")))
}

/// Buffers one hashing thread reuses from segment to segment.
#[derive(Debug, Default)]
struct Scratch {
    data: Vec<u8>,
    parity: Vec<u8>,
}

/// Everything ingest computes for one segment.
#[derive(Clone, Debug)]
struct SegmentDigest {
    hashes: SegmentHashes,
    leaves: Vec<Digest>,
    /// XXH3 of the bytes digested: a cheap check that they did not change afterwards (the
    /// only "attacker" here is the muxer rewriting its own file).
    check: u64,
}

/// Hashes a stream file into its manifest and leaf table: every chunk of every segment is
/// encoded once to hash it.
///
/// Work can start while the file is still being written: [`ManifestBuilder::hash_written`]
/// digests whole segments already on disk (a muxer rewrites the file's front when it
/// finishes, so segment 0 waits), and [`ManifestBuilder::finish`] re-checks each of those
/// against the final file by a fast checksum, a fraction of the cost of redoing it, before
/// digesting the rest on all cores.
#[derive(Debug)]
pub struct ManifestBuilder {
    segment_size: u32,
    k: u16,
    n: u16,
    codec: Codec,
    early: Mutex<Vec<Option<SegmentDigest>>>,
    /// Buffers of the thread calling `hash_written`.
    scratch: Mutex<Scratch>,
}

impl ManifestBuilder {
    pub fn new(segment_size: u32, k: u16, n: u16) -> Result<ManifestBuilder, FormatError> {
        // A one-byte file checks the parameters.
        Manifest {
            version: FORMAT_VERSION,
            file_size: 1,
            segment_size,
            k,
            n,
            blake3: Digest::default(),
            segments: vec![SegmentHashes {
                root: Digest::default(),
                blake3: Digest::default(),
            }],
        }
        .validate()?;
        Ok(ManifestBuilder {
            segment_size,
            k,
            n,
            codec: Codec::new(k.into(), n.into())?,
            early: Mutex::new(Vec::new()),
            scratch: Mutex::new(Scratch::default()),
        })
    }

    fn layout(&self, file_size: u64) -> Manifest {
        let count = file_size.div_ceil(u64::from(self.segment_size));
        let blank = SegmentHashes {
            root: Digest::default(),
            blake3: Digest::default(),
        };
        Manifest {
            version: FORMAT_VERSION,
            file_size,
            segment_size: self.segment_size,
            k: self.k,
            n: self.n,
            blake3: Digest::default(),
            segments: vec![blank; usize::try_from(count).unwrap_or(0).min(u32::MAX as usize)],
        }
    }

    /// Digests every not yet digested whole segment, but the first, that lies within the
    /// first `written` bytes of `file`. Returns how many it digested.
    pub fn hash_written(&self, file: &File, written: u64) -> Result<usize, FormatError> {
        let full = u32::try_from(written / u64::from(self.segment_size)).unwrap_or(u32::MAX);
        let mut digested = 0;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = &mut *scratch;
        // Any file with more than one whole segment hashes segments as subtrees.
        let layout = self.layout(u64::from(full) * u64::from(self.segment_size) + 1);
        for segment in 1..full {
            let known = {
                let early = self.early.lock().unwrap_or_else(|e| e.into_inner());
                early.get(segment as usize).is_some_and(Option::is_some)
            };
            if known {
                continue;
            }
            let digest = self.digest(file, &layout, segment, scratch)?;
            let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
            if early.len() <= segment as usize {
                early.resize(segment as usize + 1, None);
            }
            early[segment as usize] = Some(digest);
            digested += 1;
        }
        Ok(digested)
    }

    fn digest(
        &self,
        file: &File,
        layout: &Manifest,
        segment: u32,
        scratch: &mut Scratch,
    ) -> Result<SegmentDigest, FormatError> {
        read_padded_segment_into(file, layout, segment, &mut scratch.data)?;
        let (data, parity) = (&scratch.data, &mut scratch.parity);
        let shard = layout.chunk_len(segment);
        let shards: Vec<&[u8]> = data.chunks(shard).collect();
        parity.resize((usize::from(self.n) - shards.len()) * shard, 0);
        let mut outs: Vec<&mut [u8]> = parity.chunks_mut(shard).collect();
        self.codec.encode_parity(&shards, &mut outs)?;
        let leaves: Vec<Digest> = shards
            .iter()
            .copied()
            .chain(parity.chunks(shard))
            .enumerate()
            .map(|(index, payload)| leaf_hash(index as u16, payload))
            .collect();
        let node = tree_hash::segment_hash(
            &data[..layout.segment_len(segment)],
            layout.segment_offset(segment),
            layout.segment_count(),
        );
        Ok(SegmentDigest {
            hashes: SegmentHashes {
                root: MerkleTree::new(&leaves).root(),
                blake3: node,
            },
            leaves,
            check: xxh3_64(data),
        })
    }

    /// Completes the manifest for `file` as it now is, on all cores.
    pub fn finish(self, file: &File) -> Result<(Manifest, LeafTable), FormatError> {
        let file_size = file
            .metadata()
            .map_err(FormatError::io("reading the stream file's size"))?
            .len();
        let mut manifest = self.layout(file_size);
        manifest.validate()?;
        let count = manifest.segment_count();
        let mut early = std::mem::take(&mut *self.early.lock().unwrap_or_else(|e| e.into_inner()));
        early.resize(count as usize, None);
        let slots: Vec<Mutex<Option<SegmentDigest>>> = early.into_iter().map(Mutex::new).collect();
        let next = AtomicU32::new(0);
        let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<(), FormatError> {
                        let mut scratch = Scratch::default();
                        loop {
                            let segment = next.fetch_add(1, Ordering::Relaxed);
                            if segment >= count {
                                return Ok(());
                            }
                            let mut slot = slots[segment as usize]
                                .lock()
                                .unwrap_or_else(|e| e.into_inner());
                            let still_valid = slot.as_ref().is_some_and(|d| {
                                manifest.segment_len(segment) == self.segment_size as usize
                                    && read_padded_segment_into(
                                        file,
                                        &manifest,
                                        segment,
                                        &mut scratch.data,
                                    )
                                    .is_ok_and(|()| xxh3_64(&scratch.data) == d.check)
                            });
                            if !still_valid {
                                *slot =
                                    Some(self.digest(file, &manifest, segment, &mut scratch)?);
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
        let mut leaves = Vec::with_capacity(count as usize * usize::from(self.n));
        for (segment, slot) in slots.into_iter().enumerate() {
            let digest = slot
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .ok_or_else(|| {
                    FormatError::StreamMismatch(format!("segment {segment} was not hashed"))
                })?;
            manifest.segments[segment] = digest.hashes;
            leaves.extend(digest.leaves);
        }
        let nodes: Vec<Digest> = manifest.segments.iter().map(|s| s.blake3).collect();
        manifest.blake3 = tree_hash::file_hash(&nodes);
        Ok((
            manifest,
            LeafTable {
                n: usize::from(self.n),
                leaves,
            },
        ))
    }
}

/// Hashes the finished stream file at `path` into its manifest and leaf table.
pub fn build_manifest(
    path: &Path,
    segment_size: u32,
    k: u16,
    n: u16,
) -> Result<(Manifest, LeafTable), FormatError> {
    let file = File::open(path).map_err(FormatError::io(format!("opening {}", path.display())))?;
    ManifestBuilder::new(segment_size, k, n)?.finish(&file)
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
        chunk_of_segment(
            &self.manifest,
            &self.codec,
            &self.leaves,
            segment,
            index,
            &data,
        )
    }
}

/// Chunk `index` of `segment` in wire form (coded shard, Merkle proof, header), from the
/// segment's bytes padded to k shards of [`Manifest::chunk_len`]: what an origin sends,
/// whether it read the segment from a file or from an object store.
pub fn chunk_of_segment(
    manifest: &Manifest,
    codec: &Codec,
    leaves: &LeafTable,
    segment: u32,
    index: u16,
    data: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let shard = manifest.chunk_len(segment);
    let shards: Vec<&[u8]> = data.chunks(shard).collect();
    let mut payload = vec![0u8; shard];
    codec.encode_chunk(&shards, usize::from(index), &mut payload)?;
    let proof = MerkleTree::new(leaves.segment(segment)).proof(usize::from(index));
    Ok(encode_chunk(segment, index, &proof, &payload))
}
