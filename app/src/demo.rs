//! `rivulet --demo`: a whole network in the app's process — the tracker with its origin,
//! three caches and a demo account that owns the demo movie. The movie is made with ffmpeg on
//! first use and kept in the data folder, so later launches start in seconds.

use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::Context as _;
use iced::futures::future::select_all;
use rivulet_node_core::cache::{Cache, CacheOptions, CacheStatus, DEFAULT_UPLOAD_BPS};
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{Credentials, TrackerClient, codes};

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
                Err(e) if e.code() == Some(codes::USERNAME_TAKEN) => {}
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
        // they fetch them in the background while the app starts playing (the origin fills
        // what they do not hold yet). Say when they are warm, or why not.
        let k = usize::from(anon.video(DEMO_VIDEO).await?.k);
        let status: Vec<_> = caches.iter().map(Cache::status).collect();
        eprintln!(
            "rivulet: demo tracker and {DEMO_CACHES} caches up in {} ms",
            began.elapsed().as_millis()
        );
        tokio::spawn(async move {
            if warm(status.clone(), k, Duration::from_secs(120)).await {
                eprintln!(
                    "rivulet: demo caches hold the demo movie {} ms after start",
                    began.elapsed().as_millis()
                );
            } else {
                let problems: Vec<String> = status
                    .iter()
                    .filter_map(|s| s.borrow().problem.clone())
                    .collect();
                eprintln!("rivulet: the demo caches are still cold ({problems:?})");
            }
        });
        let login = DemoLogin {
            tracker: url,
            username: DEMO_USER.to_owned(),
            password: DEMO_PASSWORD.to_owned(),
        };
        Ok((Demo { tracker, caches }, login))
    }

    /// Stops the caches (they tell the tracker) and then the tracker.
    pub async fn stop(self) {
        for cache in self.caches {
            cache.stop().await;
        }
        let _ = self.tracker.shutdown().await;
    }
}

/// Waits until the caches (their status) together hold `k` distinct chunk indices of the demo movie, or
/// `limit` passes (the origin fills in then).
async fn warm(
    mut status: Vec<tokio::sync::watch::Receiver<CacheStatus>>,
    k: usize,
    limit: Duration,
) -> bool {
    let held = |status: &[tokio::sync::watch::Receiver<CacheStatus>]| {
        let mut indices = std::collections::BTreeSet::new();
        for s in status {
            for h in s.borrow().holdings.iter().filter(|h| h.video == DEMO_VIDEO) {
                indices.extend(h.indices.iter().copied());
            }
        }
        indices.len()
    };
    tokio::time::timeout(limit, async {
        while held(&status) < k {
            let changes = status.iter_mut().map(|s| Box::pin(s.changed()));
            if select_all(changes).await.0.is_err() {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false)
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
