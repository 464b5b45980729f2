//! A machine-readable status line for tests and benchmarks: when `RIVULET_STATUS_FILE` names
//! a file, the app rewrites it (atomically) with what it is doing — the screen, playback time,
//! frames rendered by mpv and frames shown in the window, and the first error. Tests read it
//! back with the same [`Status`].

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// When the process started, as near as the app can tell: the first call wins (`main` calls
/// it first thing).
pub fn launched() -> Instant {
    static LAUNCHED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *LAUNCHED.get_or_init(Instant::now)
}

/// One snapshot of the app.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Status {
    /// The screen showing: `starting`, `login`, `first-run`, `catalogue`, `player`, `points`.
    pub screen: String,
    /// Milliseconds since the process started.
    pub uptime_ms: u64,
    pub time_pos: f64,
    /// mpv's own pause flag while the player is open.
    pub paused: bool,
    pub frames_rendered: u64,
    pub frames_shown: u64,
    /// Milliseconds from launch until the demo network was ready (its caches warm).
    pub demo_ready_ms: Option<u64>,
    /// Milliseconds from launch to the first frame in the window.
    pub first_frame_ms: Option<u64>,
    /// Milliseconds from asking to play to the first frame in the window.
    pub play_to_frame_ms: Option<u64>,
    pub from_caches_bytes: u64,
    pub from_origin_bytes: u64,
    pub peers: usize,
    pub error: Option<String>,
    /// The movie ids later launches handed over (`rivulet://watch/ID`), oldest first.
    pub links_opened: Vec<String>,
    /// The window is closed and the app runs on from the system tray.
    pub in_tray: bool,
    /// A system tray shows the app's icon.
    pub tray_shown: bool,
    /// The account logged in, if any.
    pub user: Option<String>,
    /// The points the screen shows for that account (its balance).
    pub points: Option<u64>,
    /// The user name the log-in screen has filled in, while it shows.
    pub login_name: Option<String>,
    /// The running cache's limits and traffic, while one runs.
    pub cache: Option<CacheReport>,
    /// The continue-watching row of the catalogue: movie ids, most recent first.
    pub continue_watching: Vec<String>,
    /// The settings pane is open.
    pub pane_open: bool,
}

/// What the running cache is held to and has done, from its last status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CacheReport {
    pub storage_bytes: u64,
    pub upload_bps: u64,
    /// The download budget, bits per second (0: unlimited).
    pub download_bps: u64,
    pub sent_bytes: u64,
}

/// Writes [`Status`] to the file the environment names, if any.
#[derive(Debug)]
pub struct Reporter {
    path: Option<PathBuf>,
    launched: Instant,
    last: Option<Status>,
}

impl Reporter {
    pub fn from_env(launched: Instant) -> Reporter {
        Reporter {
            path: rivulet_node_core::env::status_file(),
            launched,
            last: None,
        }
    }

    /// Milliseconds since launch.
    pub fn uptime_ms(&self) -> u64 {
        self.launched.elapsed().as_millis() as u64
    }

    /// Writes `status` when it differs from the last one written (uptime aside).
    pub fn write(&mut self, mut status: Status) {
        let Some(path) = &self.path else {
            return;
        };
        if self.last.as_ref() == Some(&status) {
            return;
        }
        self.last = Some(status.clone());
        status.uptime_ms = self.uptime_ms();
        let Ok(line) = serde_json::to_vec(&status) else {
            return;
        };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, line).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}
