//! The catalogue as the server sees it: the committed movies of the data dir, read once and
//! read again only when `videos/` changes (an ingest's commit is a rename into it).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::RwLock;

use crate::catalogue::{self, StoredVideo};
use crate::data_dir::DataDir;

/// Movies by title, reloaded when the videos directory's modification time moves.
#[derive(Debug)]
pub struct CatalogueCache {
    data: DataDir,
    loaded: RwLock<(Option<SystemTime>, Arc<Vec<StoredVideo>>)>,
}

impl CatalogueCache {
    pub fn new(data: DataDir) -> CatalogueCache {
        CatalogueCache {
            data,
            loaded: RwLock::new((None, Arc::new(Vec::new()))),
        }
    }

    fn stamp(&self) -> Option<SystemTime> {
        std::fs::metadata(self.data.videos_dir())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Every movie that loads; broken ones are left out (and named by `videos`/`verify`).
    pub async fn all(&self) -> Arc<Vec<StoredVideo>> {
        let stamp = self.stamp();
        {
            let loaded = self.loaded.read().await;
            if loaded.0.is_some() && loaded.0 == stamp {
                return loaded.1.clone();
            }
        }
        let data = self.data.clone();
        let videos = tokio::task::spawn_blocking(move || {
            catalogue::list(&data)
                .map(|(good, _)| good)
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        let videos = Arc::new(videos);
        *self.loaded.write().await = (stamp, videos.clone());
        videos
    }

    /// One movie.
    pub async fn get(&self, id: &str) -> Option<StoredVideo> {
        self.all().await.iter().find(|v| v.record.id == id).cloned()
    }
}
