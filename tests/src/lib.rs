//! Shared set-up for the end-to-end tests: a real tracker with its origin on loopback, movies
//! made by ffmpeg and ingested, and accounts.

use std::path::{Path, PathBuf};

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

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    Ok(hex::encode(sha2::Sha256::digest(std::fs::read(path)?)))
}
