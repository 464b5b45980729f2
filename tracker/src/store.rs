//! Where the movies live: the data dir's `videos/` folder (the default, see `catalogue`), or
//! an S3-compatible object store (`--store s3://BUCKET/PREFIX`) that ingest writes and any
//! number of origins read, with ranged GETs through a bounded in-memory [`SegmentCache`].
//!
//! In a store a movie is the same five files as in a folder, under `PREFIX/<id>/`. Ingest
//! uploads `video.json` last: a movie is in the catalogue exactly when its record is, so a
//! failed or interrupted ingest leaves no movie (only objects no listing shows).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use rivulet_node_core::format::{Digest, LeafTable, Manifest, chunk_of_segment};
use rivulet_node_core::format::{FormatError, tree_hash};
use thiserror::Error;
use tokio::io::AsyncReadExt;

use crate::catalogue::{
    self, CatalogueError, LEAVES_FILE, MANIFEST_FILE, POSTER_FILE, RECORD_FILE, STREAM_FILE,
    StoredVideo, VideoRecord,
};

/// Longest wait for a connection to the store.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one request (a ranged GET of a segment, one part of an upload).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The origin's segment cache when none is configured: 256 MiB, 256 default segments.
pub const DEFAULT_SEGMENT_CACHE_BYTES: u64 = 256 << 20;
/// Largest record, manifest, leaf table or poster read whole from a store.
const MAX_SMALL_OBJECT: u64 = 256 << 20;
/// Segments past the one asked for that the origin fetches ahead (a viewer and a cache
/// read a movie forward, and a GET of the store takes tens of milliseconds).
pub const READ_AHEAD: u32 = 2;
/// Bytes per part of a stream file's multipart upload.
const UPLOAD_PART: usize = 8 << 20;

/// Why the store could not be opened, read or written; one line naming the object.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "--store {0:?}: expected s3://BUCKET[/PREFIX] (a local folder is the data dir's videos/, the default)"
    )]
    BadUrl(String),
    #[error(
        "--store {url}: {var} is not set (the store's endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    MissingEnv { url: String, var: &'static str },
    #[error("--store {url}: {reason}")]
    Config { url: String, reason: String },
    #[error("{0} is not in the store")]
    NotFound(String),
    #[error("{object} is truncated: {wanted} bytes wanted at {at}, the store has {got}")]
    Truncated {
        object: String,
        at: u64,
        wanted: u64,
        got: u64,
    },
    #[error("{object} is {size} bytes, more than the {MAX_SMALL_OBJECT} allowed")]
    TooLarge { object: String, size: u64 },
    #[error("segment {segment} of {object} does not match its hash in the manifest")]
    Corrupt { object: String, segment: u32 },
    #[error("{object}: {reason}")]
    Request { object: String, reason: String },
    #[error("reading {path}: {source}")]
    Local {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to reach an S3-compatible store: what the AWS tools read from the environment.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL`, e.g. `http://127.0.0.1:3900` (AWS's own when unset).
    pub endpoint: Option<String>,
    /// `AWS_REGION` (`garage` for Garage; `us-east-1` when unset).
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("key_id", &self.key_id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish()
    }
}

impl S3Settings {
    /// The settings from the process environment, as the AWS tools take them.
    pub fn from_env() -> S3Settings {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        S3Settings {
            endpoint: var(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret: var(&["AWS_SECRET_ACCESS_KEY"]),
        }
    }
}

/// The movies of one bucket and prefix of an S3-compatible store.
#[derive(Clone, Debug)]
pub struct ObjectMovies {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl ObjectMovies {
    /// Opens `s3://BUCKET[/PREFIX]` with path-style requests, every request bounded by
    /// [`CONNECT_TIMEOUT`] and [`REQUEST_TIMEOUT`] and retried at most three times. Nothing
    /// is sent yet.
    pub fn open(url: &str, settings: &S3Settings) -> Result<ObjectMovies, StoreError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !bucket_ok {
            return Err(StoreError::BadUrl(url.to_owned()));
        }
        let prefix = Path::parse(prefix.trim_matches('/'))
            .map_err(|_| StoreError::BadUrl(url.to_owned()))?;
        let missing = |var| StoreError::MissingEnv {
            url: url.to_owned(),
            var,
        };
        let key_id = settings
            .key_id
            .as_ref()
            .ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
        let secret = settings
            .secret
            .as_ref()
            .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
        let mut options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: REQUEST_TIMEOUT,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            if endpoint.starts_with("http://") {
                options = options.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
        let store =
            builder
                .with_client_options(options)
                .build()
                .map_err(|e| StoreError::Config {
                    url: url.to_owned(),
                    reason: one_line(&e),
                })?;
        Ok(ObjectMovies {
            store: Arc::new(store),
            prefix,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// `s3://BUCKET/PREFIX` as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, id: &str, file: &str) -> Path {
        self.prefix.child(id).child(file)
    }

    /// The object's URL, for messages.
    pub fn object_url(&self, id: &str, file: &str) -> String {
        format!("{}/{id}/{file}", self.url)
    }

    fn request_error(&self, id: &str, file: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound(self.object_url(id, file)),
            e => StoreError::Request {
                object: self.object_url(id, file),
                reason: one_line(&e),
            },
        }
    }

    /// Whether movie `id` is committed (its record is there).
    pub async fn has_movie(&self, id: &str) -> Result<bool, StoreError> {
        match self.store.head(&self.path(id, RECORD_FILE)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.request_error(id, RECORD_FILE, e)),
        }
    }

    /// A small object read whole (record, manifest, leaf table, poster).
    pub async fn read(&self, id: &str, file: &str) -> Result<Vec<u8>, StoreError> {
        let got = self
            .store
            .get(&self.path(id, file))
            .await
            .map_err(|e| self.request_error(id, file, e))?;
        if got.meta.size > MAX_SMALL_OBJECT {
            return Err(StoreError::TooLarge {
                object: self.object_url(id, file),
                size: got.meta.size,
            });
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.request_error(id, file, e))?;
        Ok(bytes.to_vec())
    }

    /// Bytes `range` of `file` of movie `id` (one ranged GET); fewer bytes than asked is a
    /// [`StoreError::Truncated`].
    pub async fn read_range(
        &self,
        id: &str,
        file: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let wanted = range.end - range.start;
        let truncated = |got| StoreError::Truncated {
            object: self.object_url(id, file),
            at: range.start,
            wanted,
            got,
        };
        match self
            .store
            .get_range(&self.path(id, file), range.clone())
            .await
        {
            Ok(bytes) if bytes.len() as u64 == wanted => Ok(bytes.to_vec()),
            Ok(bytes) => Err(truncated(bytes.len() as u64)),
            // A range past the end (416, or a shorter Content-Range): the object is shorter
            // than the manifest says. Its size decides; an object long enough means the
            // error was something else, passed on as it is.
            Err(e) if is_range_error(&e) => {
                let size = self
                    .store
                    .head(&self.path(id, file))
                    .await
                    .map_err(|e| self.request_error(id, file, e))?
                    .size;
                if size >= range.end {
                    return Err(self.request_error(id, file, e));
                }
                Err(truncated(size.saturating_sub(range.start)))
            }
            Err(e) => Err(self.request_error(id, file, e)),
        }
    }

    /// Movie `id` as the catalogue sees it: its record and manifest, checked.
    pub async fn load(&self, id: &str) -> Result<StoredVideo, CatalogueError> {
        catalogue::check_id(id)?;
        let corrupt = |file: &'static str| {
            let id = id.to_owned();
            move |reason: String| CatalogueError::Corrupt { id, file, reason }
        };
        let (record, manifest) =
            tokio::join!(self.read(id, RECORD_FILE), self.read(id, MANIFEST_FILE));
        let record = match record {
            Err(StoreError::NotFound(_)) => return Err(CatalogueError::NotFound(id.to_owned())),
            other => other.map_err(|e| corrupt(RECORD_FILE)(e.to_string()))?,
        };
        let record: VideoRecord =
            serde_json::from_slice(&record).map_err(|e| corrupt(RECORD_FILE)(e.to_string()))?;
        if record.id != id {
            return Err(corrupt(RECORD_FILE)(format!(
                "it names video {:?}",
                record.id
            )));
        }
        let manifest = manifest.map_err(|e| corrupt(MANIFEST_FILE)(e.to_string()))?;
        let manifest =
            Manifest::from_json(&manifest).map_err(|e| corrupt(MANIFEST_FILE)(e.to_string()))?;
        Ok(StoredVideo {
            dir: self.object_url(id, "").trim_end_matches('/').into(),
            record,
            manifest,
        })
    }

    /// Every committed movie, sorted by title then id, and the entries that failed to load.
    /// A folder without a record is an ingest that did not finish: not a movie, not an error.
    /// The listing itself failing is an error.
    pub async fn list(&self) -> Result<(Vec<StoredVideo>, Vec<CatalogueError>), StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| StoreError::Request {
                object: format!("{}/", self.url),
                reason: one_line(&e),
            })?;
        let mut loads = tokio::task::JoinSet::new();
        for dir in listed.common_prefixes {
            let Some(id) = dir.filename().map(str::to_owned) else {
                continue;
            };
            if catalogue::check_id(&id).is_err() {
                continue;
            }
            let this = self.clone();
            loads.spawn(async move { this.load(&id).await });
        }
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        while let Some(done) = loads.join_next().await {
            match done {
                Ok(Ok(video)) => good.push(video),
                Ok(Err(CatalogueError::NotFound(_))) => {}
                Ok(Err(e)) => bad.push(e),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        good.sort_by(|a, b| {
            (a.record.title.as_str(), a.record.id.as_str())
                .cmp(&(b.record.title.as_str(), b.record.id.as_str()))
        });
        Ok((good, bad))
    }

    /// Uploads a finished ingest's folder `dir` as movie `id`: the stream file in parts, then
    /// poster, manifest and leaf table, and the record last, which commits it. Refuses an id
    /// whose record is already there (checked before the upload and again before the record:
    /// two ingests racing for one id can still both pass; ids are random unless chosen).
    pub async fn upload_movie(&self, dir: &FsPath, id: &str) -> Result<(), UploadError> {
        if self.has_movie(id).await? {
            return Err(UploadError::IdTaken(id.to_owned()));
        }
        self.upload_file(dir, id, STREAM_FILE).await?;
        for file in [POSTER_FILE, MANIFEST_FILE, LEAVES_FILE] {
            self.put_small(dir, id, file).await?;
        }
        if self.has_movie(id).await? {
            return Err(UploadError::IdTaken(id.to_owned()));
        }
        self.put_small(dir, id, RECORD_FILE).await?;
        Ok(())
    }

    async fn put_small(&self, dir: &FsPath, id: &str, file: &str) -> Result<(), StoreError> {
        let path = dir.join(file);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|source| StoreError::Local { path, source })?;
        self.store
            .put(&self.path(id, file), PutPayload::from(bytes))
            .await
            .map_err(|e| self.request_error(id, file, e))?;
        Ok(())
    }

    /// Streams a local file up in [`UPLOAD_PART`] parts, two in flight.
    async fn upload_file(&self, dir: &FsPath, id: &str, file: &str) -> Result<(), StoreError> {
        let path = dir.join(file);
        let local = |source| StoreError::Local {
            path: path.clone(),
            source,
        };
        let mut input = tokio::fs::File::open(&path).await.map_err(local)?;
        let upload = self
            .store
            .put_multipart(&self.path(id, file))
            .await
            .map_err(|e| self.request_error(id, file, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match input.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(local(e));
                }
            };
            if let Err(e) = writer.wait_for_capacity(2).await {
                return Err(self.request_error(id, file, e));
            }
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.request_error(id, file, e))?;
        Ok(())
    }

    /// Removes every object of movie `id`, the record first (so it leaves the catalogue at
    /// once). For tests and operators.
    pub async fn remove_movie(&self, id: &str) -> Result<(), StoreError> {
        for file in [
            RECORD_FILE,
            STREAM_FILE,
            POSTER_FILE,
            MANIFEST_FILE,
            LEAVES_FILE,
        ] {
            match self.store.delete(&self.path(id, file)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.request_error(id, file, e)),
            }
        }
        Ok(())
    }

    /// Writes `bytes` as `file` of movie `id` as they are (tests put hostile objects so).
    pub async fn put_raw(&self, id: &str, file: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .put(&self.path(id, file), PutPayload::from(bytes))
            .await
            .map_err(|e| self.request_error(id, file, e))?;
        Ok(())
    }
}

/// Why an upload into the store failed.
#[derive(Debug, Error)]
pub enum UploadError {
    #[error("video id {0:?} is already taken")]
    IdTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `e` may be the store refusing a range (416) or answering a shorter one
/// (object_store's range errors are not public types, so this reads the message).
fn is_range_error(e: &object_store::Error) -> bool {
    let text = e.to_string();
    text.contains("416") || text.contains("Range") || text.contains("range")
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// One movie's chunks made from segments read out of a store: the leaf table is read once,
/// each segment through the [`SegmentCache`], checked against its hash before use.
#[derive(Debug)]
pub struct StoreChunker {
    movies: ObjectMovies,
    id: String,
    manifest: Manifest,
    leaves: LeafTable,
    codec: rivulet_node_core::codec::Codec,
}

impl StoreChunker {
    /// Reads and checks the leaf table of `video`.
    pub async fn open(
        movies: &ObjectMovies,
        video: &StoredVideo,
    ) -> Result<StoreChunker, StoreError> {
        let id = &video.record.id;
        let table = movies.read(id, LEAVES_FILE).await?;
        let leaves = LeafTable::read(&mut table.as_slice(), &video.manifest).map_err(|e| {
            StoreError::Request {
                object: movies.object_url(id, LEAVES_FILE),
                reason: e.to_string(),
            }
        })?;
        Ok(StoreChunker {
            movies: movies.clone(),
            id: id.clone(),
            codec: video.manifest.codec(),
            manifest: video.manifest.clone(),
            leaves,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Segment `segment`, zero-padded to k whole shards, from `cache` or one ranged GET;
    /// the next [`READ_AHEAD`] segments are fetched meanwhile when the cache has not got
    /// them.
    pub async fn segment(
        self: &Arc<Self>,
        cache: &Arc<SegmentCache>,
        segment: u32,
    ) -> Result<Arc<Vec<u8>>, StoreError> {
        let ahead = (segment + 1)..(segment + 1 + READ_AHEAD).min(self.manifest.segment_count());
        for next in ahead {
            let key = self.key(next);
            if !cache.has(&key) {
                let (this, cache) = (self.clone(), cache.clone());
                tokio::spawn(async move {
                    // A failed read-ahead is not kept; the read that needs it reports it.
                    let _ = cache.get_or_fetch(key, || this.fetch_segment(next)).await;
                });
            }
        }
        cache
            .get_or_fetch(self.key(segment), || self.fetch_segment(segment))
            .await
    }

    fn key(&self, segment: u32) -> SegmentKey {
        SegmentKey {
            video: self.id.clone(),
            file: self.manifest.blake3,
            segment,
        }
    }

    async fn fetch_segment(&self, segment: u32) -> Result<Vec<u8>, StoreError> {
        let m = &self.manifest;
        let at = m.segment_offset(segment);
        let len = m.segment_len(segment) as u64;
        let mut data = self
            .movies
            .read_range(&self.id, STREAM_FILE, at..at + len)
            .await?;
        let hash = tree_hash::segment_hash(&data, at, m.segment_count());
        if m.segments.get(segment as usize).map(|s| s.blake3) != Some(hash) {
            return Err(StoreError::Corrupt {
                object: self.movies.object_url(&self.id, STREAM_FILE),
                segment,
            });
        }
        data.resize(m.chunk_len(segment) * usize::from(m.k), 0);
        Ok(data)
    }

    /// Chunk `index` of `segment` in wire form, from the padded segment bytes `data`.
    pub fn chunk(&self, segment: u32, index: u16, data: &[u8]) -> Result<Vec<u8>, FormatError> {
        chunk_of_segment(
            &self.manifest,
            &self.codec,
            &self.leaves,
            segment,
            index,
            data,
        )
    }
}

/// A segment of one version of one movie (a movie ingested again under its id has another
/// file hash, so its old segments are never served for it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SegmentKey {
    pub video: String,
    pub file: Digest,
    pub segment: u32,
}

type Slot = Arc<tokio::sync::OnceCell<Arc<Vec<u8>>>>;

/// The origin's segments in memory, least recently used out first, never more than its
/// capacity in bytes (a segment larger than the whole cache is served but not kept). The
/// chunks of one segment are asked for together, so concurrent misses of one segment wait
/// for a single GET.
#[derive(Debug)]
pub struct SegmentCache {
    capacity: u64,
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    slots: HashMap<SegmentKey, (Slot, u64)>,
    /// Filled slots by last use.
    order: BTreeMap<u64, SegmentKey>,
    tick: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
}

/// What the segment cache holds and has done, for tests and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentCacheStats {
    pub bytes: u64,
    pub segments: usize,
    pub hits: u64,
    pub misses: u64,
}

impl SegmentCache {
    pub fn new(capacity: u64) -> SegmentCache {
        SegmentCache {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> SegmentCacheStats {
        let l = self.lock();
        SegmentCacheStats {
            bytes: l.bytes,
            segments: l.order.len(),
            hits: l.hits,
            misses: l.misses,
        }
    }

    /// Whether segment `key` is held or being fetched.
    pub fn has(&self, key: &SegmentKey) -> bool {
        self.lock().slots.contains_key(key)
    }

    /// The segment `key` from memory, or from `fetch` (once, however many ask at a time).
    /// A failed fetch is not remembered: the next request tries again.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: SegmentKey,
        fetch: F,
    ) -> Result<Arc<Vec<u8>>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, StoreError>>,
    {
        let slot = {
            let mut l = self.lock();
            l.tick += 1;
            let tick = l.tick;
            match l.slots.get_mut(&key) {
                Some((slot, used)) if slot.initialized() => {
                    let (slot, old) = (slot.clone(), std::mem::replace(used, tick));
                    l.order.remove(&old);
                    l.order.insert(tick, key.clone());
                    l.hits += 1;
                    return Ok(slot.get().cloned().unwrap_or_default());
                }
                Some((slot, _)) => slot.clone(),
                None => {
                    let slot = Slot::default();
                    l.slots.insert(key.clone(), (slot.clone(), tick));
                    slot
                }
            }
        };
        let mut fetched = false;
        let got = slot
            .get_or_try_init(|| async {
                fetched = true;
                fetch().await.map(Arc::new)
            })
            .await
            .cloned();
        let mut l = self.lock();
        match &got {
            Ok(data) if fetched => {
                l.misses += 1;
                let size = data.len() as u64;
                if size > self.capacity {
                    l.slots.remove(&key);
                } else {
                    l.tick += 1;
                    let tick = l.tick;
                    if let Some((_, used)) = l.slots.get_mut(&key) {
                        *used = tick;
                        l.order.insert(tick, key.clone());
                        l.bytes += size;
                    }
                    l.evict(self.capacity);
                }
            }
            Ok(_) => l.hits += 1,
            Err(_) => {
                if l.slots
                    .get(&key)
                    .is_some_and(|(s, _)| Arc::ptr_eq(s, &slot))
                {
                    l.slots.remove(&key);
                }
            }
        }
        got
    }
}

impl Lru {
    /// Drops least recently used segments until at most `capacity` bytes are held.
    fn evict(&mut self, capacity: u64) {
        while self.bytes > capacity {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((slot, _)) = self.slots.remove(&key) {
                self.bytes -= slot.get().map_or(0, |d| d.len() as u64);
            }
        }
    }
}

/// `--store`'s value: `s3://…`, or nothing for the data dir's folder; reached with
/// `settings`, or those of the environment.
pub fn open_configured(
    store: Option<&str>,
    settings: Option<&S3Settings>,
) -> Result<Option<ObjectMovies>, StoreError> {
    let from_env;
    let settings = match settings {
        Some(s) => s,
        None => {
            from_env = S3Settings::from_env();
            &from_env
        }
    };
    store
        .map(|url| ObjectMovies::open(url, settings))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(segment: u32) -> SegmentKey {
        SegmentKey {
            video: "v".into(),
            file: Digest([0; 32]),
            segment,
        }
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_its_capacity_and_drops_the_least_recently_used() {
        let cache = SegmentCache::new(300);
        for s in 0..3 {
            cache
                .get_or_fetch(key(s), || async { Ok(vec![0; 100]) })
                .await
                .unwrap();
        }
        // Segment 0 used again: segment 1 is now the oldest.
        cache
            .get_or_fetch(key(0), || async { panic!("cached") })
            .await
            .unwrap();
        cache
            .get_or_fetch(key(3), || async { Ok(vec![0; 100]) })
            .await
            .unwrap();
        let stats = cache.stats();
        assert_eq!(
            (stats.bytes, stats.segments, stats.hits, stats.misses),
            (300, 3, 1, 4)
        );
        let mut refetched = false;
        cache
            .get_or_fetch(key(1), || async {
                refetched = true;
                Ok(vec![0; 100])
            })
            .await
            .unwrap();
        assert!(refetched, "segment 1 was evicted");
        cache
            .get_or_fetch(key(0), || async { panic!("0 stays") })
            .await
            .unwrap();
        // Larger than the whole cache: served, not kept.
        let big = cache
            .get_or_fetch(key(9), || async { Ok(vec![1; 400]) })
            .await
            .unwrap();
        assert_eq!(big.len(), 400);
        assert!(cache.stats().bytes <= 300);
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once_and_failures_are_not_kept() {
        let cache = Arc::new(SegmentCache::new(1 << 20));
        let fetches = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            all.spawn(async move {
                cache
                    .get_or_fetch(key(0), || async move {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(vec![7; 1000])
                    })
                    .await
                    .unwrap()
            });
        }
        while let Some(done) = all.join_next().await {
            assert_eq!(done.unwrap().len(), 1000);
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        let failed = cache
            .get_or_fetch(key(1), || async { Err(StoreError::NotFound("x".into())) })
            .await;
        assert!(failed.is_err());
        let again = cache.get_or_fetch(key(1), || async { Ok(vec![1]) }).await;
        assert_eq!(again.unwrap().as_slice(), &[1]);
    }

    #[test]
    fn bad_urls_and_missing_credentials_are_one_clear_line() {
        let none = S3Settings::default();
        for url in ["movies", "s3://", "file:///x", "s3://bad bucket/x"] {
            let e = ObjectMovies::open(url, &none).unwrap_err().to_string();
            assert!(e.contains("expected s3://BUCKET"), "{url}: {e}");
        }
        let e = ObjectMovies::open("s3://movies/p", &none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID is not set"), "{e}");
        assert!(!e.contains('\n'));
    }
}
