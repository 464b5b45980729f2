//! Shared set-up for the end-to-end tests: a real tracker with its origin on loopback, movies
//! made by ffmpeg and ingested, and accounts.

pub mod swarm;

use std::path::{Path, PathBuf};

use rivulet_node_core::cache::{Cache, CacheOptions};
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{Credentials, TrackerClient};

/// A running tracker in a temporary data dir.
#[derive(Debug)]
pub struct Network {
    pub dir: tempfile::TempDir,
    pub tracker: Server,
}

/// A movie to ingest: id, length in seconds, price.
#[derive(Clone, Copy, Debug)]
pub struct MovieSpec {
    pub id: &'static str,
    pub seconds: u32,
    pub price: u64,
}

impl Network {
    /// Ingests `movies` (640×360 test pattern with tone) and starts the tracker on loopback.
    pub async fn start(movies: &[MovieSpec]) -> anyhow::Result<Network> {
        Network::start_with(movies, |_| {}).await
    }

    /// Like [`Network::start`], with the tracker's configuration adjusted by `tune`.
    pub async fn start_with(
        movies: &[MovieSpec],
        tune: impl FnOnce(&mut ServeConfig),
    ) -> anyhow::Result<Network> {
        let dir = tempfile::tempdir()?;
        let data = DataDir::create(dir.path().join("data"))?;
        for m in movies {
            let clip = dir.path().join(format!("{}.mp4", m.id));
            make_sample_movie(&clip, m.seconds, 640, 360)?;
            ingest(
                &data,
                &IngestRequest {
                    input: clip,
                    title: format!("Movie {}", m.id),
                    price: m.price,
                    id: Some(m.id.to_owned()),
                },
            )?;
        }
        let mut config = ServeConfig::new(dir.path().join("data"));
        config.http = "127.0.0.1:0".parse()?;
        config.ftp = "127.0.0.1:0".parse()?;
        tune(&mut config);
        let tracker = Server::bind(config).await?;
        Ok(Network { dir, tracker })
    }

    pub fn url(&self) -> String {
        self.tracker.url()
    }

    /// The origin's stream file of movie `id`.
    pub fn stream_file(&self, id: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/videos")
            .join(id)
            .join("stream.mkv")
    }

    /// A scratch path in the network's temporary dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Registers `name` with `password`.
    pub async fn account(&self, name: &str, password: &str) -> anyhow::Result<()> {
        TrackerClient::new(&self.url())
            .register(&Credentials {
                username: name.into(),
                password: password.into(),
            })
            .await?;
        Ok(())
    }
}

impl Network {
    /// Logs `name` in.
    pub async fn login(&self, name: &str, password: &str) -> anyhow::Result<TrackerClient> {
        let anon = TrackerClient::new(&self.url());
        let session = anon
            .login(&Credentials {
                username: name.into(),
                password: password.into(),
            })
            .await?;
        Ok(anon.with_token(session.token))
    }

    /// Starts an in-process cache for account `name` on 127.0.0.1, with its folder and key
    /// under the network's temporary dir.
    pub async fn cache(
        &self,
        name: &str,
        password: &str,
        storage_bytes: u64,
        upload_bps: u64,
    ) -> anyhow::Result<Cache> {
        Cache::start(CacheOptions {
            tracker: self.url(),
            user: name.into(),
            password: password.into(),
            storage_bytes,
            upload_bps,
            download_bps: 0,
            listen: "127.0.0.1:0".parse()?,
            advertise: None,
            dir: self.cache_dir(name),
            key_path: self.path("keys").join(format!("{name}.key")),
        })
        .await
        .map_err(anyhow::Error::from)
    }

    /// The cache folder of account `name`'s cache.
    pub fn cache_dir(&self, name: &str) -> PathBuf {
        self.path(&format!("cache-{name}"))
    }
}

/// Waits until `check` holds, polling every 50 ms, for at most `limit`.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// The `rivulet-node` binary beside the test executable (cargo builds it for the
/// workspace's tests).
pub fn node_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let binary = dir.join("rivulet-node");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        binary.display()
    );
    binary
}

/// `target/test-artifacts/<what>` (created), where tests leave screenshots and plots.
pub fn artifacts_dir(what: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/test-artifacts/<what>
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("test-artifacts").join(what);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    Ok(hex::encode(sha2::Sha256::digest(std::fs::read(path)?)))
}
