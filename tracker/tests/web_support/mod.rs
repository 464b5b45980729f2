//! What the web app's browser tests share: a real tracker on 127.0.0.1:0 with movies and a
//! real SQLite file, a headless Chromium from Debian driven through `chromedriver` over
//! WebDriver, helpers that wait for what a page shows, and PNG screenshots saved under
//! `target/test-artifacts/web/`.

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use rivulet_localnet::{LocalNetwork, MovieSpec, TrackerConfig as ServeConfig};
use rivulet_node_core::format::Manifest;
use rivulet_tracker_client::{
    ChunkRef, Credentials, Heartbeat, NodeRegistration, PeerBytes, TrackerClient,
};

/// The password every test account uses.
pub const PASSWORD: &str = "correct-horse-42";
/// How long a test waits for a page to show something.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running tracker over a temporary data dir.
pub struct Tracker {
    pub net: LocalNetwork,
}

impl Tracker {
    /// A tracker with movies `(id, title, price)`; one point per 1000 credited bytes so
    /// small test transfers show up as points.
    pub async fn start(movies: &[(&str, &str, u64)]) -> Tracker {
        Tracker::start_with(movies, |_| {}).await
    }

    /// Like [`Tracker::start`], with the configuration adjusted by `tune`.
    pub async fn start_with(
        movies: &[(&str, &str, u64)],
        tune: impl FnOnce(&mut ServeConfig) + Send + 'static,
    ) -> Tracker {
        let movies = movies.iter().map(|(id, title, price)| {
            MovieSpec::sample(*id, 2)
                .size(320, 240)
                .title(*title)
                .price(*price)
        });
        let net = LocalNetwork::temp()
            .engine(rivulet_localnet::test_engine!())
            .movies(movies)
            .initial_points(100)
            .bytes_per_point(1000)
            // Caches are placed soon after a purchase, so their transfers are vouched for.
            .placement_interval(Duration::from_millis(200))
            // Nodes stay listed for the whole test even when the machine is slow.
            .node_timeout(Duration::from_secs(600))
            // Caches here register at addresses nobody serves (tests/reach.rs probes real ones).
            .configure(|c| c.require_reach = false)
            .configure(tune)
            .start()
            .await
            .unwrap();
        Tracker { net }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.net.url())
    }

    pub fn client(&self) -> TrackerClient {
        TrackerClient::new(&self.net.url())
    }

    /// Bytes of one chunk of segment 0 of `video`.
    pub async fn chunk_len(&self, video: &str) -> u64 {
        let path = self.net.stream_file(video).with_file_name("manifest.json");
        let json = std::fs::read(path).unwrap();
        Manifest::from_json(&json).unwrap().chunk_len(0) as u64
    }

    /// Heartbeats cache `node` of `owner` until placement has placed it with `video`.
    pub async fn wait_placed(&self, owner: &TrackerClient, node: &str, video: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let reply = owner.heartbeat(node, &Heartbeat::default()).await.unwrap();
            if reply.hold.iter().any(|h| h.video == video) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node} never placed with {video}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tracker's own database pool.
    pub async fn db(&self) -> sqlx::AnyPool {
        self.net.db()
    }

    /// Registers `name` through the API (unless it exists) and returns a logged-in client.
    pub async fn user(&self, name: &str) -> TrackerClient {
        let creds = creds(name);
        let _ = self.client().register(&creds).await;
        let session = self.client().login(&creds).await.unwrap();
        self.client().with_token(session.token)
    }

    /// Makes `name` an administrator, as `rivulet-tracker account --admin` would.
    pub async fn make_admin(&self, name: &str) {
        sqlx::query("UPDATE accounts SET admin = 1 WHERE username = $1")
            .bind(name)
            .execute(&self.db().await)
            .await
            .unwrap();
    }
}

pub fn creds(name: &str) -> Credentials {
    Credentials {
        username: name.into(),
        password: PASSWORD.into(),
    }
}

pub fn cache_at(port: u16) -> NodeRegistration {
    NodeRegistration::cache(
        format!("0.0.0.0:{port}"),
        format!("cache{port}.example:{port}"),
        10_000_000,
        1_500_000_000,
    )
}

/// One `PeerBytes` entry.
pub fn peer_bytes(peer: &str, video: &str, bytes: u64) -> PeerBytes {
    PeerBytes::new(peer, video, bytes)
}

/// A fresh heartbeat number: one counter for every node of the test process, so each
/// node's numbers rise.
pub fn seq() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A numbered heartbeat that only reports bytes.
pub fn moved(sent: Vec<PeerBytes>, received: Vec<PeerBytes>) -> Heartbeat {
    Heartbeat {
        seq: seq(),
        sent,
        received,
        ..Heartbeat::default()
    }
}

/// A viewer's receipts for chunks `indices` of segment 0 of `video` from `peer`, each
/// `chunk_len` bytes.
pub fn receipts(
    peer: &str,
    video: &str,
    indices: std::ops::Range<u16>,
    chunk_len: u64,
) -> PeerBytes {
    let count = u64::from(indices.end.saturating_sub(indices.start));
    PeerBytes {
        chunks: indices.map(|i| ChunkRef(0, i)).collect(),
        ..PeerBytes::new(peer, video, count * chunk_len)
    }
}

/// Where screenshots go: `<target dir>/test-artifacts/web/`.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts").join("web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `check` gives `Some`, trying every 100 ms for [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium behind its own `chromedriver` on a free loopback port. Dropping it
/// ends both (the driver runs in its own process group, browser included).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    base: String,
}

impl Browser {
    /// Starts the driver and a browser session for pages of `tracker`.
    pub async fn start(tracker: &Tracker) -> Browser {
        use std::os::unix::process::CommandExt;
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver runs (installer/deps.sh installs chromium-driver)");
        let stdout = driver.stdout.take().unwrap();
        // The driver says which port it took; read until it does, off the async threads.
        let port = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim().trim_end_matches('.').parse::<u16>().ok())
            });
            // Keep draining so the driver never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
            port
        });
        let port = tokio::time::timeout(PATIENCE, port)
            .await
            .expect("chromedriver starts in time")
            .unwrap()
            .expect("chromedriver reports its port");
        let profile = tempfile::tempdir().unwrap();
        let mut options = serde_json::json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session starts");
        Browser {
            client,
            driver,
            _profile: profile,
            base: tracker.net.url(),
        }
    }

    /// Opens a page of the tracker.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits for an element.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css:?} on {}: {e}", self.base))
    }

    /// Waits for an element and returns its text.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits for an element and returns an attribute.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.unwrap()
    }

    /// Every element matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Waits until the element's text is `want`.
    pub async fn wait_text(&self, css: &str, want: &str) {
        let mut last = String::new();
        let start = Instant::now();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if text == want {
                    return;
                }
                last = text;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{css:?} shows {last:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into a field, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Fills the log-in form and sends it.
    pub async fn log_in(&self, name: &str, password: &str) {
        self.open("/login").await;
        self.fill("#username", name).await;
        self.fill("#password", password).await;
        self.click("#submit").await;
    }

    /// The session cookie's value.
    pub async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie(rivulet_tracker::web::SESSION_COOKIE)
            .await
            .expect("the browser holds a session cookie")
            .value()
            .to_owned()
    }

    /// Saves a PNG of the whole page as `<artifacts>/<name>.png`: the window grows to the
    /// page's height for the picture and shrinks back after.
    pub async fn screenshot(&self, name: &str) {
        // The window's height is the page's plus the browser's own frame.
        let height = self
            .client
            .execute(
                "return document.documentElement.scrollHeight \
                     + Math.max(0, window.outerHeight - window.innerHeight)",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(1000)
            .clamp(1000, 4000) as u32;
        self.client.set_window_size(1280, height).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(1280, 1000).await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(artifacts_dir().join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the browser session and the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own process group; the browser is in it.
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
