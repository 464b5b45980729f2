//! What the chunk-server tests share: a provider of synthetic chunks and a ticket maker.

use async_trait::async_trait;
use rivulet_node_core::clock::unix_secs;
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult};
use rivulet_node_core::ticket::{TicketClaims, TicketSigner};

/// Chunks of 256 KiB of the movie `film` (indices below 64) whose bytes say where they are
/// from: every byte is `segment ^ index`.
#[derive(Debug)]
pub struct Synthetic;

/// Bytes of one synthetic chunk.
pub const CHUNK: usize = 256 * 1024;

#[async_trait]
impl ChunkProvider for Synthetic {
    async fn chunk(&self, video: &str, segment: u32, index: u16) -> ChunkResult {
        if video != "film" || index >= 64 {
            return Ok(None);
        }
        Ok(Some(vec![(segment as u8) ^ (index as u8); CHUNK]))
    }
}

/// A ticket for `holder` to fetch `video` from `server`, valid for `ttl_secs`.
pub fn ticket(
    signer: &TicketSigner,
    holder: &str,
    server: &str,
    video: &str,
    ttl_secs: u64,
) -> String {
    signer.issue(&TicketClaims {
        holder: holder.into(),
        server: server.into(),
        video: video.into(),
        expires_at: unix_secs() + ttl_secs,
        indices: None,
    })
}
