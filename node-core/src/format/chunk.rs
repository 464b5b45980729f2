//! A chunk's wire and disk form: a fixed header naming the segment and index, the Merkle
//! path to the segment's root, then the payload.
//!
//! ```text
//! 0..4   magic "RVCH"            8..12  segment   (u32 LE)
//! 4      format version (1)      12..16 payload length (u32 LE)
//! 5      proof length p (hashes) 16..   p × 32-byte sibling hashes, then the payload
//! 6..8   chunk index (u16 LE)
//! ```

use super::Digest;

const MAGIC: &[u8; 4] = b"RVCH";
const WIRE_VERSION: u8 = 1;
/// Bytes before the proof.
pub const CHUNK_HEADER_LEN: usize = 16;

/// The fixed part of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub segment: u32,
    pub index: u16,
}

impl ChunkHeader {
    /// Total wire bytes for a chunk with `proof_len` hashes and `payload_len` bytes.
    pub fn wire_len(proof_len: usize, payload_len: usize) -> usize {
        CHUNK_HEADER_LEN + proof_len * 32 + payload_len
    }

    /// The whole chunk's length as its first [`CHUNK_HEADER_LEN`] bytes frame it, or `None`
    /// when they are not a chunk header; lets a reader cut chunks out of one stream.
    pub fn framed_len(head: &[u8]) -> Option<usize> {
        if head.len() < CHUNK_HEADER_LEN || &head[0..4] != MAGIC || head[4] != WIRE_VERSION {
            return None;
        }
        let payload_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        Some(Self::wire_len(
            usize::from(head[5]),
            usize::try_from(payload_len).ok()?,
        ))
    }

    /// Splits a wire chunk into header, proof and payload, checking only its framing.
    pub(crate) fn parse(wire: &[u8]) -> Result<(ChunkHeader, Vec<Digest>, &[u8]), String> {
        if wire.len() < CHUNK_HEADER_LEN {
            return Err(format!("truncated: {} bytes", wire.len()));
        }
        if &wire[0..4] != MAGIC {
            return Err("not a Rivulet chunk (bad magic)".into());
        }
        if wire[4] != WIRE_VERSION {
            return Err(format!("chunk format version {} not supported", wire[4]));
        }
        let proof_len = usize::from(wire[5]);
        let le16 = |at: usize| u16::from_le_bytes([wire[at], wire[at + 1]]);
        let le32 =
            |at: usize| u32::from_le_bytes([wire[at], wire[at + 1], wire[at + 2], wire[at + 3]]);
        let header = ChunkHeader {
            index: le16(6),
            segment: le32(8),
        };
        let payload_len = le32(12) as usize;
        if wire.len() != Self::wire_len(proof_len, payload_len) {
            return Err(format!(
                "length {} does not match its header ({})",
                wire.len(),
                Self::wire_len(proof_len, payload_len)
            ));
        }
        let proof_end = CHUNK_HEADER_LEN + proof_len * 32;
        let proof = wire[CHUNK_HEADER_LEN..proof_end]
            .chunks_exact(32)
            .map(|h| Digest(h.try_into().unwrap_or([0; 32])))
            .collect();
        Ok((header, proof, &wire[proof_end..]))
    }
}

/// Frames a chunk for the wire or the disk.
pub fn encode_chunk(segment: u32, index: u16, proof: &[Digest], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ChunkHeader::wire_len(proof.len(), payload.len()));
    out.extend_from_slice(MAGIC);
    out.push(WIRE_VERSION);
    out.push(u8::try_from(proof.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    for h in proof {
        out.extend_from_slice(&h.0);
    }
    out.extend_from_slice(payload);
    out
}
