//! The origin: every chunk of every movie made on demand from its stream file and served by
//! node-core's chunk server to holders of origin tickets.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rivulet_node_core::format::StreamChunker;
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult, ChunkServer};
use rivulet_node_core::ticket::TicketKey;

use crate::catalogue_cache::CatalogueCache;
use crate::nodes::ORIGIN;

/// The movies' chunks, made on demand; one chunk producer per movie, shared by sessions.
#[derive(Debug)]
struct OriginChunks {
    catalogue: Arc<CatalogueCache>,
    chunkers: Mutex<HashMap<String, Arc<StreamChunker>>>,
}

impl OriginChunks {
    async fn chunker(&self, video: &str) -> Result<Option<Arc<StreamChunker>>, String> {
        // The catalogue decides: a removed movie is served no more, and one ingested again
        // under the same id gets a new producer.
        let Some(stored) = self.catalogue.get(video).await else {
            self.chunkers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(video);
            return Ok(None);
        };
        if let Some(c) = self
            .chunkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(video)
            .filter(|c| c.manifest().blake3 == stored.manifest.blake3)
        {
            return Ok(Some(c.clone()));
        }
        let chunker = tokio::task::spawn_blocking(move || stored.chunker())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let chunker = Arc::new(chunker);
        self.chunkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(video.to_owned(), chunker.clone());
        Ok(Some(chunker))
    }
}

#[async_trait]
impl ChunkProvider for OriginChunks {
    async fn chunk(&self, video: &str, segment: u32, index: u16) -> ChunkResult {
        let Some(chunker) = self.chunker(video).await? else {
            return Ok(None);
        };
        if segment >= chunker.manifest().segment_count() || index >= chunker.manifest().n {
            return Ok(None);
        }
        tokio::task::spawn_blocking(move || chunker.chunk(segment, index))
            .await
            .map_err(|e| e.to_string())?
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// Starts the origin's FTP server on `bind`, taking tickets signed for `origin`.
pub async fn start(
    bind: SocketAddr,
    catalogue: Arc<CatalogueCache>,
    key: TicketKey,
) -> std::io::Result<ChunkServer> {
    let provider = Arc::new(OriginChunks {
        catalogue,
        chunkers: Mutex::default(),
    });
    ChunkServer::start(bind, ORIGIN, key, provider, 0).await
}
