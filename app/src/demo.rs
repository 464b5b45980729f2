//! `rivulet --demo`: a whole network in the app's process, started by `rivulet-localnet` —
//! the tracker with its origin, three caches and a demo account that owns the demo movie.
//! The movie is made with ffmpeg on first use and kept in the data folder, so later launches
//! start in seconds. What stays here is the app's side: how it logs in ([`DemoLogin`]) and
//! how warm the caches are ([`Warmth`]). Without the `demo` feature the app links no server
//! code and [`Demo::start`] says so.

use std::collections::BTreeSet;
use std::path::Path;
#[cfg(feature = "demo")]
use std::time::Duration;

use iced::futures::future::select_all;
#[cfg(feature = "demo")]
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::cache::CacheStatus;
use tokio::sync::watch;

/// The demo movie's id: `rivulet://watch/demo`.
pub const DEMO_VIDEO: &str = "demo";
/// The account the app logs in as.
pub const DEMO_USER: &str = "demo";
/// Its password (a demo runs on loopback only).
pub const DEMO_PASSWORD: &str = "peer-assisted-7";
/// Length of the generated demo movie.
#[cfg(feature = "demo")]
const DEMO_SECONDS: u32 = 90;
/// Caches in the demo network.
#[cfg(feature = "demo")]
const DEMO_CACHES: usize = 3;
/// The demo tracker's node timeout; nodes heartbeat three times per timeout.
#[cfg(feature = "demo")]
const DEMO_NODE_TIMEOUT: Duration = Duration::from_secs(6);
/// What `--demo` says in a build without the `demo` feature.
pub const NO_DEMO: &str =
    "this build of rivulet has no demo network (built without the `demo` feature)";

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
    #[cfg(feature = "demo")]
    net: LocalNetwork,
    /// Chunks a segment of the demo movie needs.
    k: usize,
}

impl Demo {
    /// Starts the network with its data under `dir`, making the demo movie first if needed.
    #[cfg(feature = "demo")]
    pub async fn start(dir: &Path) -> Result<(Demo, DemoLogin), DemoError> {
        let movie = MovieSpec::sample(DEMO_VIDEO, DEMO_SECONDS)
            .size(1280, 720)
            .title("Demo: test pattern and tone (720p)")
            .price(10);
        let mut builder = LocalNetwork::builder(dir)
            .data_dir(dir.join("tracker"))
            .movie(movie)
            .account(DEMO_USER, DEMO_PASSWORD)
            // Quick rounds on loopback: caches heartbeat every 2 s (a third of the timeout)
            // and placement runs twice a second, so the caches hold the movie seconds after
            // start.
            .node_timeout(DEMO_NODE_TIMEOUT)
            .placement_interval(Duration::from_millis(500));
        for i in 1..=DEMO_CACHES {
            let user = format!("demo-cache-{i}");
            builder = builder
                .account(&user, DEMO_PASSWORD)
                .cache(CacheSpec::new(user, DEMO_PASSWORD));
        }
        let net = builder.start().await?;
        let me = net.login(DEMO_USER, DEMO_PASSWORD).await?;
        me.buy(DEMO_VIDEO).await.map_err(DemoError::Buy)?;
        // Placement gives the caches chunks of the demo movie (the demo account bought it);
        // the app waits (see [`Warmth`]) until they hold k chunks of each segment, so the
        // demo viewer really gets its bytes from them.
        let k = usize::from(me.video(DEMO_VIDEO).await.map_err(DemoError::Buy)?.k);
        let login = DemoLogin {
            tracker: net.url(),
            username: DEMO_USER.to_owned(),
            password: DEMO_PASSWORD.to_owned(),
        };
        Ok((Demo { net, k }, login))
    }

    /// A build without the `demo` feature has no demo network.
    #[cfg(not(feature = "demo"))]
    pub async fn start(_dir: &Path) -> Result<(Demo, DemoLogin), DemoError> {
        Err(DemoError::NotBuilt)
    }

    /// How warm the caches are, to wait on.
    pub fn warmth(&self) -> Warmth {
        #[cfg(feature = "demo")]
        let status = self.net.caches().iter().map(|c| c.status()).collect();
        #[cfg(not(feature = "demo"))]
        let status = Vec::new();
        Warmth { status, k: self.k }
    }

    /// Stops the caches (they tell the tracker) and then the tracker.
    pub async fn stop(self) {
        #[cfg(feature = "demo")]
        self.net.shutdown().await;
    }
}

/// Why the demo network did not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The local network did not start.
    #[cfg(feature = "demo")]
    #[error(transparent)]
    Network(#[from] rivulet_localnet::LocalNetError),
    /// The demo account could not buy or read the demo movie.
    #[error("buying the demo movie for the demo account: {0}")]
    Buy(#[source] rivulet_tracker_client::ClientError),
    /// This build has no demo network.
    #[error("{NO_DEMO}")]
    NotBuilt,
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
