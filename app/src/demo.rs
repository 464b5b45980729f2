//! `rivulet --demo`: a whole network in the app's process — the tracker with its origin,
//! three caches and a demo account that owns the demo movie. The movie is made with ffmpeg on
//! first use and kept in the data folder, so later launches start in seconds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use iced::futures::future::select_all;
use rivulet_node_core::cache::{Cache, CacheOptions, CacheStatus, DEFAULT_UPLOAD_BPS};
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{Credentials, ErrorCode, TrackerClient};
use tokio::sync::watch;

/// The demo movie's id: `rivulet://watch/demo`.
pub const DEMO_VIDEO: &str = "demo";
/// The account the app logs in as.
pub const DEMO_USER: &str = "demo";
/// Its password (a demo runs on loopback only).
pub const DEMO_PASSWORD: &str = "peer-assisted-7";
/// Length of the generated demo movie.
const DEMO_SECONDS: u32 = 90;
/// Caches in the demo network.
const DEMO_CACHES: usize = 3;
/// The demo tracker's node timeout; nodes heartbeat three times per timeout.
const DEMO_NODE_TIMEOUT: Duration = Duration::from_secs(6);

/// How the app logs in to the demo network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoLogin {
    pub tracker: String,
    pub username: String,
    pub password: String,
}

/// A running demo network.
#[derive(Debug)]
pub struct Demo {
    tracker: Server,
    caches: Vec<Cache>,
    /// Chunks a segment of the demo movie needs.
    k: usize,
}

impl Demo {
    /// Starts the network with its data under `dir`, making the demo movie first if needed.
    pub async fn start(dir: &Path) -> anyhow::Result<(Demo, DemoLogin)> {
        let began = std::time::Instant::now();
        let data_path = dir.join("tracker");
        let data = DataDir::create(&data_path)
            .with_context(|| format!("creating the demo data in {}", data_path.display()))?;
        if !data.video_dir(DEMO_VIDEO).exists() {
            let work = dir.join("making");
            tokio::task::spawn_blocking(move || make_demo_movie(&data, &work))
                .await
                .context("making the demo movie")??;
        }
        let mut config = ServeConfig::new(data_path);
        config.http = "127.0.0.1:0".parse()?;
        config.ftp = "127.0.0.1:0".parse()?;
        // Quick rounds on loopback: caches heartbeat every 2 s (a third of the timeout) and
        // placement runs twice a second, so the caches hold the movie seconds after start.
        config.node_timeout = DEMO_NODE_TIMEOUT;
        config.placement_interval = Duration::from_millis(500);
        let tracker = Server::bind(config)
            .await
            .context("starting the demo tracker")?;
        let url = tracker.url();
        let mut users = vec![DEMO_USER.to_owned()];
        users.extend((1..=DEMO_CACHES).map(|i| format!("demo-cache-{i}")));
        let anon = TrackerClient::new(&url);
        for user in &users {
            match anon.register(&credentials(user)).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(&ErrorCode::UsernameTaken) => {}
                Err(e) => return Err(e).context("creating the demo accounts"),
            }
        }
        let session = anon.login(&credentials(DEMO_USER)).await?;
        anon.clone()
            .with_token(session.token)
            .buy(DEMO_VIDEO)
            .await
            .context("buying the demo movie for the demo account")?;
        let mut caches = Vec::new();
        for (i, user) in users.iter().skip(1).enumerate() {
            let cache = Cache::start(CacheOptions {
                tracker: url.clone(),
                user: user.clone(),
                password: DEMO_PASSWORD.to_owned(),
                storage_bytes: 500_000_000,
                upload_bps: DEFAULT_UPLOAD_BPS,
                download_bps: 0,
                listen: "127.0.0.1:0".parse()?,
                advertise: None,
                dir: dir.join("caches").join(i.to_string()),
                key_path: dir.join("keys").join(format!("{i}.key")),
            })
            .await
            .with_context(|| format!("starting demo cache {i}"))?;
            caches.push(cache);
        }
        // Placement gives the caches chunks of the demo movie (the demo account bought it);
        // the app waits (see [`Warmth`]) until they hold k chunks of each segment, so the
        // demo viewer really gets its bytes from them.
        let k = usize::from(anon.video(DEMO_VIDEO).await?.k);
        eprintln!(
            "rivulet: demo tracker and {DEMO_CACHES} caches up in {} ms",
            began.elapsed().as_millis()
        );
        let login = DemoLogin {
            tracker: url,
            username: DEMO_USER.to_owned(),
            password: DEMO_PASSWORD.to_owned(),
        };
        Ok((Demo { tracker, caches, k }, login))
    }

    /// How warm the caches are, to wait on.
    pub fn warmth(&self) -> Warmth {
        Warmth {
            status: self.caches.iter().map(Cache::status).collect(),
            k: self.k,
        }
    }

    /// Stops the caches (they tell the tracker) and then the tracker.
    pub async fn stop(self) {
        for cache in self.caches {
            cache.stop().await;
        }
        let _ = self.tracker.shutdown().await;
    }
}

/// The demo caches' holdings of the demo movie, as they change: the demo viewer is started
/// once they hold `k` distinct chunk indices of every segment (any k rebuild a segment), so
/// that the caches, not the origin, feed it.
#[derive(Debug)]
pub struct Warmth {
    status: Vec<watch::Receiver<CacheStatus>>,
    /// Chunks a segment needs.
    pub k: usize,
}

impl Warmth {
    /// Distinct chunk indices of the demo movie the caches hold for every segment.
    pub fn held(&self) -> usize {
        let mut indices = BTreeSet::new();
        for s in &self.status {
            for h in s.borrow().holdings.iter().filter(|h| h.video == DEMO_VIDEO) {
                indices.extend(h.indices.iter().copied());
            }
        }
        indices.len()
    }

    /// Waits until some cache's status changes (after each of its heartbeats); false when
    /// the caches stopped.
    pub async fn changed(&mut self) -> bool {
        let changes = self.status.iter_mut().map(|s| Box::pin(s.changed()));
        select_all(changes).await.0.is_ok()
    }

    /// Waits until every cache has sent one more heartbeat, so that the tracker knows what
    /// its status shows (the status is read after a heartbeat goes out).
    pub async fn reported(&mut self) {
        for s in &mut self.status {
            s.mark_unchanged();
        }
        for s in &mut self.status {
            let _ = s.changed().await;
        }
    }

    /// The caches' last problems, for a log line when they stay cold.
    pub fn problems(&self) -> Vec<String> {
        self.status
            .iter()
            .filter_map(|s| s.borrow().problem.clone())
            .collect()
    }
}

fn credentials(user: &str) -> Credentials {
    Credentials {
        username: user.to_owned(),
        password: DEMO_PASSWORD.to_owned(),
    }
}

fn make_demo_movie(data: &DataDir, work: &PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(work)?;
    let clip = work.join("demo.mp4");
    make_sample_movie(&clip, DEMO_SECONDS, 1280, 720)
        .context("making the demo movie with ffmpeg (is ffmpeg installed?)")?;
    ingest(
        data,
        &IngestRequest {
            input: clip.clone(),
            title: "Demo: test pattern and tone (720p)".into(),
            price: 10,
            id: Some(DEMO_VIDEO.into()),
        },
    )?;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}
