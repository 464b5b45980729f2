//! The origin: every chunk of every movie made on demand from its stream file and served by
//! node-core's chunk server to holders of origin tickets. The stream file is read from the
//! data dir, or with ranged GETs from the object store through a bounded segment cache.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rivulet_node_core::format::{Digest, StreamChunker};
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult, ChunkServer};
use rivulet_node_core::ticket::TicketKey;

use crate::catalogue::StoredVideo;
use crate::catalogue_cache::CatalogueCache;
use crate::nodes::ORIGIN;
use crate::store::{SegmentCache, StoreChunker};

/// One movie's chunk producer: over its stream file in the data dir, or over the store.
#[derive(Debug, Clone)]
enum Producer {
    File(Arc<StreamChunker>),
    Store(Arc<StoreChunker>),
}

impl Producer {
    fn file_hash(&self) -> Digest {
        match self {
            Producer::File(c) => c.manifest().blake3,
            Producer::Store(c) => c.manifest().blake3,
        }
    }
}

/// The movies' chunks, made on demand; one chunk producer per movie, shared by sessions.
#[derive(Debug)]
struct OriginChunks {
    catalogue: Arc<CatalogueCache>,
    chunkers: Mutex<HashMap<String, Producer>>,
    segments: Arc<SegmentCache>,
}

impl OriginChunks {
    async fn chunker(&self, video: &str) -> Result<Option<Producer>, String> {
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
            .filter(|c| c.file_hash() == stored.manifest.blake3)
        {
            return Ok(Some(c.clone()));
        }
        let producer = self.open(stored).await?;
        self.chunkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(video.to_owned(), producer.clone());
        Ok(Some(producer))
    }

    async fn open(&self, stored: Arc<StoredVideo>) -> Result<Producer, String> {
        if let Some(store) = self.catalogue.store() {
            let chunker = StoreChunker::open(store, &stored)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Producer::Store(Arc::new(chunker)));
        }
        let chunker = tokio::task::spawn_blocking(move || stored.chunker())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(Producer::File(Arc::new(chunker)))
    }
}

#[async_trait]
impl ChunkProvider for OriginChunks {
    async fn chunk(&self, video: &str, segment: u32, index: u16) -> ChunkResult {
        let Some(chunker) = self.chunker(video).await? else {
            return Ok(None);
        };
        let (count, n) = match &chunker {
            Producer::File(c) => (c.manifest().segment_count(), c.manifest().n),
            Producer::Store(c) => (c.manifest().segment_count(), c.manifest().n),
        };
        if segment >= count || index >= n {
            return Ok(None);
        }
        match chunker {
            Producer::File(chunker) => {
                tokio::task::spawn_blocking(move || chunker.chunk(segment, index))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            Producer::Store(chunker) => {
                let data = chunker
                    .segment(&self.segments, segment)
                    .await
                    .map_err(|e| {
                        tracing::warn!("origin: {e}");
                        e.to_string()
                    })?;
                tokio::task::spawn_blocking(move || chunker.chunk(segment, index, &data))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Starts the origin's FTP server on `bind`, taking tickets signed for `origin`; a store's
/// segments are kept in at most `segment_cache_bytes` of memory.
pub async fn start(
    bind: SocketAddr,
    catalogue: Arc<CatalogueCache>,
    key: TicketKey,
    segment_cache_bytes: u64,
) -> std::io::Result<ChunkServer> {
    let provider = Arc::new(OriginChunks {
        catalogue,
        chunkers: Mutex::default(),
        segments: Arc::new(SegmentCache::new(segment_cache_bytes)),
    });
    ChunkServer::start(bind, ORIGIN, key, provider, 0).await
}
