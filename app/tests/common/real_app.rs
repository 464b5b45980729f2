//! The real `rivulet` binary under Xvfb, for the end-to-end tests: started with its own
//! home folder and status file, followed through that file, driven with real X input
//! (keys and clicks through XTEST), photographed with `xwd`, and closed with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use iced::{Point, Rectangle};
use iced_test::selector::Candidate;
use rivulet_app::app::App;
use rivulet_app::report::Status;

use super::Driver;
use super::x11::{Reaped, start_xvfb};

/// The window's size in the app ([`rivulet_app::app::window_settings`]) and of the Xvfb
/// screen, so the window fills the screen at (0, 0).
pub const WINDOW: (f32, f32) = (1320.0, 860.0);

/// An X server and the app in it.
pub struct RealApp {
    process: Option<Reaped>,
    /// The X display the app draws on.
    pub display: String,
    /// `RIVULET_HOME`: every folder the app writes to is under it.
    pub home: PathBuf,
    /// The session bus it is given (`None`: none, so no system tray).
    pub bus: Option<String>,
    status_file: PathBuf,
    log: PathBuf,
    launches: u32,
    _xvfb: Reaped,
}

impl RealApp {
    /// An X server of its own, and a home for the app under `home` (the app is not started).
    pub fn new(home: &Path) -> RealApp {
        let (xvfb, display) = start_xvfb();
        RealApp {
            process: None,
            display,
            home: home.to_owned(),
            bus: None,
            status_file: home.join("status.json"),
            log: home.join("rivulet.log"),
            launches: 0,
            _xvfb: xvfb,
        }
    }

    /// Starts `rivulet ARGS` (logging in the saved user with `password`, if given).
    pub fn launch(&mut self, args: &[&str], password: Option<&str>) {
        assert!(self.process.is_none(), "the app runs already");
        let _ = std::fs::remove_file(&self.status_file);
        self.launches += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_rivulet"));
        command
            .args(args)
            .env("DISPLAY", &self.display)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("RIVULET_PASSWORD")
            .env("RIVULET_HOME", &self.home)
            .env("RIVULET_STATUS_FILE", &self.status_file)
            .env("RIVULET_MPV_AO", "null")
            .env("ICED_BACKEND", "tiny-skia")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        match &self.bus {
            Some(address) => command.env("DBUS_SESSION_BUS_ADDRESS", address),
            None => command.env_remove("DBUS_SESSION_BUS_ADDRESS"),
        };
        if let Some(p) = password {
            command.env("RIVULET_PASSWORD", p);
        }
        self.process = Some(Reaped(command.spawn().unwrap()));
    }

    /// `rivulet ARGS` once more while the app runs (a second launch hands its link over);
    /// waits for it to exit 0.
    pub fn launch_again(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(args)
            .env("DISPLAY", &self.display)
            .env("RIVULET_HOME", &self.home)
            .env_remove("RIVULET_STATUS_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the second launch failed: {out:?}\n{}",
            self.log_text()
        );
    }

    /// The app's process id.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("the app runs").0.id()
    }

    /// Whether the app's process is still running.
    pub fn running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| p.0.try_wait().unwrap().is_none())
    }

    /// What the app logged, every launch.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The app's last status, if it wrote one.
    pub fn status(&self) -> Option<Status> {
        serde_json::from_slice(&std::fs::read(&self.status_file).ok()?).ok()
    }

    /// Waits (at most `limit`) until the status satisfies `done`; an error the app reports
    /// meanwhile fails the test.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Status {
        self.wait(what, limit, true, done).await
    }

    /// [`RealApp::wait_for`], with an error the app reports allowed (its log-in screen
    /// saying why a session ended).
    pub async fn wait_for_any(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Status {
        self.wait(what, limit, false, done).await
    }

    async fn wait(
        &self,
        what: &str,
        limit: Duration,
        no_error: bool,
        done: impl Fn(&Status) -> bool,
    ) -> Status {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.status() {
                assert!(
                    !no_error || s.error.is_none(),
                    "{what}: the app reports {s:?}\n{}",
                    self.log_text()
                );
                if done(&s) {
                    return s;
                }
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{what} (within {limit:?}): {:?}\n{}",
                self.status(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses `key` (an X keysym name: `space`, `Right`, `Escape`) in the app's window.
    pub fn key(&self, key: &str) {
        self.xdotool(
            &["search", "--name", "Rivulet", "windowfocus", "--sync"],
            &["key", key],
        );
    }

    /// Types `text` as a keyboard would, into the focused field.
    pub fn type_text(&self, text: &str) {
        self.xdotool(
            &["search", "--name", "Rivulet", "windowfocus", "--sync"],
            &["type", "--delay", "20", text],
        );
    }

    /// A left click at `at` in the window (which sits at the screen's origin).
    pub fn click_at(&self, at: Point) {
        let (x, y) = (at.x.round().to_string(), at.y.round().to_string());
        self.xdotool(&["mousemove", "--sync", &x, &y], &["click", "1"]);
    }

    /// Clicks the `nth` (from 0) label `label` in the real window, where the same screen in
    /// `mirror` (an in-process app in the same state) lays it out; the mirror gets the same
    /// click, so it stays in step for the next one.
    pub async fn click(&self, mirror: &mut Driver, label: &str, nth: usize) {
        let at = Layout::text(&mirror.app, label, nth);
        self.click_at(at);
        let messages: Vec<_> = {
            let mut ui = simulator_of(&mirror.app);
            ui.point_at(at);
            let _ = ui.simulate(iced_test::simulator::click());
            ui.into_messages().collect()
        };
        for m in messages {
            mirror.send(m).await;
        }
    }

    fn xdotool(&self, first: &[&str], then: &[&str]) {
        let done = Command::new("xdotool")
            .args(first)
            .args(then)
            .env("DISPLAY", &self.display)
            .stdout(Stdio::null())
            .status()
            .expect("xdotool runs (installer/deps.sh installs it)");
        assert!(done.success(), "xdotool {first:?} {then:?} failed");
    }

    /// A picture of the whole screen (`xwd | convert`), saved as `name`.png under
    /// target/test-artifacts/app/; its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let shot = artifacts().join(format!("{name}.png"));
        let xwd = Command::new("xwd")
            .args(["-root", "-silent", "-display", &self.display])
            .output()
            .expect("xwd runs (installer/deps.sh installs x11-apps)");
        assert!(xwd.status.success(), "xwd failed");
        let mut convert = Command::new("convert")
            .args(["xwd:-", shot.to_str().unwrap()])
            .stdin(Stdio::piped())
            .spawn()
            .expect("convert runs (installer/deps.sh installs imagemagick)");
        use std::io::Write as _;
        convert
            .stdin
            .take()
            .unwrap()
            .write_all(&xwd.stdout)
            .unwrap();
        assert!(convert.wait().unwrap().success(), "convert failed");
        shot
    }

    /// SIGTERM, the full close: waits for the exit (20 s at most) and asserts it is 0.
    pub async fn terminate(&mut self) {
        let mut process = self.process.take().expect("the app runs");
        let pid = process.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(status) = process.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the app did not exit within 20 s of SIGTERM\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(exit.success(), "exit status {exit:?}\n{}", self.log_text());
    }
}

/// Where the tests leave their screenshots: target/test-artifacts/app/.
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts/app");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the layout of `app`'s window puts where, by iced's own layout in the simulator
/// (same widgets, renderer, fonts and window size as the real window): so a test clicks
/// the real window where a person would see a label.
pub struct Layout;

impl Layout {
    /// The middle of the `nth` (from 0) text or text field showing exactly `label`.
    pub fn text(app: &App, label: &str, nth: usize) -> Point {
        let mut seen = 0;
        Layout::find(app, &format!("{label:?} #{nth}"), |c| {
            let shows = match c {
                Candidate::Text { content, .. } => *content == label,
                Candidate::TextInput { state, .. } => state.text() == label,
                _ => false,
            };
            let hit = shows && seen == nth;
            seen += usize::from(shows);
            hit
        })
    }

    /// The middle of the `nth` (from 0) text field.
    pub fn field(app: &App, nth: usize) -> Point {
        let mut seen = 0;
        Layout::find(app, &format!("text field #{nth}"), |c| {
            let field = matches!(c, Candidate::TextInput { .. });
            let hit = field && seen == nth;
            seen += usize::from(field);
            hit
        })
    }

    fn find(app: &App, what: &str, mut pick: impl FnMut(&Candidate<'_>) -> bool + Send) -> Point {
        let mut ui = simulator_of(app);
        let found: Rectangle = ui
            .find(move |c: Candidate<'_>| pick(&c).then(|| c.bounds()))
            .unwrap_or_else(|e| panic!("the window shows no {what}: {e:?}"));
        found.center()
    }
}

/// A simulator of `app`'s window as the real one is: its size, its font.
fn simulator_of(app: &App) -> iced_test::Simulator<'_, rivulet_app::app::Message> {
    let settings = iced::Settings {
        default_font: iced::Font::with_name(REAL_SANS),
        ..iced::Settings::default()
    };
    iced_test::Simulator::with_size(settings, WINDOW, app.view())
}

/// The family the app's default font is drawn in on this system (fontconfig's sans-serif,
/// Debian's DejaVu Sans), which the simulator must lay text out with to match the window.
const REAL_SANS: &str = "DejaVu Sans";

/// Every regular file under `dir`, however deep.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// Runs an async test body on a two-thread runtime, with a time limit.
pub fn run(limit: Duration, body: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(limit, body)
                .await
                .unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"))
        });
}
