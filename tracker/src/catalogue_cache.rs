//! The catalogue as the server sees it: the committed movies of the data dir, read once and
//! read again only when `videos/` changes (an ingest's commit is a rename into it).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::RwLock;

use crate::catalogue::{self, StoredVideo};
use crate::data_dir::DataDir;

/// How long a listing is trusted even when the directory's time has not moved (its
/// resolution can hide two commits in one tick).
const MAX_AGE: Duration = Duration::from_secs(5);

/// Movies by title, reloaded when the videos directory's modification time moves, when the
/// listing is older than [`MAX_AGE`], or when the last listing met an error.
#[derive(Debug)]
pub struct CatalogueCache {
    data: DataDir,
    loaded: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<SystemTime>,
    at: Instant,
    clean: bool,
    videos: Arc<Vec<Arc<StoredVideo>>>,
}

impl CatalogueCache {
    pub fn new(data: DataDir) -> CatalogueCache {
        CatalogueCache {
            data,
            loaded: RwLock::new(Loaded {
                stamp: None,
                at: Instant::now(),
                clean: false,
                videos: Arc::new(Vec::new()),
            }),
        }
    }

    fn stamp(&self) -> Option<SystemTime> {
        std::fs::metadata(self.data.videos_dir())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Every movie that loads; broken ones are left out (and named by `videos`/`verify`).
    pub async fn all(&self) -> Arc<Vec<Arc<StoredVideo>>> {
        let stamp = self.stamp();
        {
            let l = self.loaded.read().await;
            if l.clean && l.stamp.is_some() && l.stamp == stamp && l.at.elapsed() < MAX_AGE {
                return l.videos.clone();
            }
        }
        let data = self.data.clone();
        let listed = tokio::task::spawn_blocking(move || catalogue::list(&data))
            .await
            .ok()
            .and_then(Result::ok);
        let clean = listed.as_ref().is_some_and(|(_, bad)| bad.is_empty());
        let videos = Arc::new(
            listed
                .map(|(good, _)| good.into_iter().map(Arc::new).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        *self.loaded.write().await = Loaded {
            stamp,
            at: Instant::now(),
            clean,
            videos: videos.clone(),
        };
        videos
    }

    /// One movie (shared, not copied: the origin asks for every chunk it serves).
    pub async fn get(&self, id: &str) -> Option<Arc<StoredVideo>> {
        self.all().await.iter().find(|v| v.record.id == id).cloned()
    }
}
