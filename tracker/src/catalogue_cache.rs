//! The catalogue as the server sees it: the committed movies of the data dir, read once and
//! read again only when `videos/` changes (an ingest's commit is a rename into it; an
//! operator's change of a movie in place replaces `videos/.changed`, see [`mark_changed`]);
//! or the movies of an object store (`--store s3://…`), listed again every [`MAX_AGE`].

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::RwLock;

use crate::catalogue::{self, POSTER_FILE, StoredVideo};
use crate::data_dir::DataDir;
use crate::store::{ObjectMovies, StoreError};

/// How long a listing is trusted even when the directory's time has not moved (its
/// resolution can hide two commits in one tick).
const MAX_AGE: Duration = Duration::from_secs(5);

/// The file in `videos/` that [`mark_changed`] replaces (a dot file: never a movie id).
pub const CHANGED_FILE: &str = ".changed";

/// Tells every running serve's cache that a movie changed in place (`video.json` rewritten,
/// which moves no directory time): `videos/.changed` is replaced by a new file, which moves
/// the directory's time and the file's own identity.
pub fn mark_changed(data: &DataDir) -> std::io::Result<()> {
    let dir = data.videos_dir();
    let tmp = dir.join(format!("{CHANGED_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, rivulet_node_core::clock::unix_ms().to_string())?;
    std::fs::rename(&tmp, dir.join(CHANGED_FILE))
}

/// What a listing was read at: the videos directory's time and [`CHANGED_FILE`]'s identity.
type Stamp = (Option<SystemTime>, Option<(u64, i64, i64)>);

/// Movies by title, reloaded when the videos directory's modification time moves, when the
/// listing is older than [`MAX_AGE`], or when the last listing met an error.
#[derive(Debug)]
pub struct CatalogueCache {
    data: DataDir,
    /// The object store the movies are in, when not the data dir.
    store: Option<ObjectMovies>,
    loaded: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: Stamp,
    at: Instant,
    clean: bool,
    videos: Arc<Vec<Arc<StoredVideo>>>,
}

impl CatalogueCache {
    pub fn new(data: DataDir) -> CatalogueCache {
        CatalogueCache::with_store(data, None)
    }

    /// The catalogue of `store` when given, else of the data dir's `videos/`.
    pub fn with_store(data: DataDir, store: Option<ObjectMovies>) -> CatalogueCache {
        CatalogueCache {
            data,
            store,
            loaded: RwLock::new(Loaded {
                stamp: (None, None),
                at: Instant::now(),
                clean: false,
                videos: Arc::new(Vec::new()),
            }),
        }
    }

    fn stamp(&self) -> Stamp {
        let dir = self.data.videos_dir();
        let modified = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        let changed = std::fs::metadata(dir.join(CHANGED_FILE))
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()));
        (modified, changed)
    }

    /// The object store the movies are read from, if not the data dir.
    pub fn store(&self) -> Option<&ObjectMovies> {
        self.store.as_ref()
    }

    /// The JPEG poster of `video`.
    pub async fn poster(&self, video: &StoredVideo) -> Result<Vec<u8>, StoreError> {
        match &self.store {
            Some(store) => store.read(&video.record.id, POSTER_FILE).await,
            None => {
                let path = video.poster_path();
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| StoreError::Local { path, source })
            }
        }
    }

    /// Every movie that loads; broken ones are left out (and named by `videos`/`verify`).
    pub async fn all(&self) -> Arc<Vec<Arc<StoredVideo>>> {
        if let Some(store) = &self.store {
            return self.all_in_store(store).await;
        }
        let stamp = self.stamp();
        {
            let l = self.loaded.read().await;
            if l.clean && l.stamp.0.is_some() && l.stamp == stamp && l.at.elapsed() < MAX_AGE {
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

    /// The store's movies, listed again when the listing is older than [`MAX_AGE`]. A
    /// listing that fails keeps the last good one (a store briefly out of reach does not
    /// empty the catalogue).
    async fn all_in_store(&self, store: &ObjectMovies) -> Arc<Vec<Arc<StoredVideo>>> {
        {
            let l = self.loaded.read().await;
            if l.stamp.0.is_some() && l.at.elapsed() < MAX_AGE {
                return l.videos.clone();
            }
        }
        let mut l = self.loaded.write().await;
        if l.stamp.0.is_some() && l.at.elapsed() < MAX_AGE {
            return l.videos.clone();
        }
        match store.list().await {
            Ok((good, bad)) => {
                for e in &bad {
                    tracing::warn!("{}: {e}", store.url());
                }
                l.videos = Arc::new(good.into_iter().map(Arc::new).collect());
                l.clean = bad.is_empty();
            }
            Err(e) => tracing::warn!("listing the catalogue failed: {e}"),
        }
        // Any stamp marks "listed once"; the store's listing ages by time alone.
        l.stamp = (Some(SystemTime::UNIX_EPOCH), None);
        l.at = Instant::now();
        l.videos.clone()
    }

    /// One movie (shared, not copied: the origin asks for every chunk it serves).
    pub async fn get(&self, id: &str) -> Option<Arc<StoredVideo>> {
        self.all().await.iter().find(|v| v.record.id == id).cloned()
    }
}
