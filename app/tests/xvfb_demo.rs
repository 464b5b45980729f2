//! End to end under a real X server (Xvfb): `rivulet --demo` starts its embedded network,
//! logs in and plays the demo movie in the window. Asserts from the app's status file that
//! playback time advances, decoded frames reach the window and bytes come from the demo
//! caches (the demo waits for them to warm before it plays), then takes a screenshot of
//! the screen (saved under target/test-artifacts/app/) and checks it shows a picture.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::x11::{Reaped, start_xvfb};

#[derive(Debug, serde::Deserialize)]
struct Status {
    screen: String,
    time_pos: f64,
    paused: bool,
    frames_shown: u64,
    frames_rendered: u64,
    first_frame_ms: Option<u64>,
    demo_ready_ms: Option<u64>,
    play_to_frame_ms: Option<u64>,
    from_caches_bytes: u64,
    from_origin_bytes: u64,
    error: Option<String>,
}

fn read_status(path: &Path) -> Option<Status> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts/app");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_plays_the_demo_movie_in_a_real_window() {
    let (_xvfb, display) = start_xvfb();
    let home = tempfile::tempdir().unwrap();
    let status_file = home.path().join("status.json");
    let log = std::fs::File::create(home.path().join("rivulet.log")).unwrap();
    let started = Instant::now();
    let mut app = Reaped(
        Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .arg("--demo")
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env("RIVULET_HOME", home.path())
            .env("RIVULET_STATUS_FILE", &status_file)
            .env("RIVULET_MPV_AO", "null")
            .env("ICED_BACKEND", "tiny-skia")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log_text = || std::fs::read_to_string(home.path().join("rivulet.log")).unwrap_or_default();

    // The first launch makes the demo movie with ffmpeg: allow for it.
    let deadline = started + Duration::from_secs(300);
    let mut first: Option<(Instant, f64)> = None;
    let status = loop {
        assert!(
            Instant::now() < deadline,
            "no playback in 300 s: {:?}\n{}",
            read_status(&status_file),
            log_text()
        );
        if let Some(s) = read_status(&status_file) {
            assert!(s.error.is_none(), "the app reports: {s:?}\n{}", log_text());
            if s.screen == "player" && s.frames_shown > 0 {
                match first {
                    None => first = Some((Instant::now(), s.time_pos)),
                    Some((_, t0)) if s.time_pos >= t0 + 2.0 => break s,
                    Some(_) => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.frames_rendered > 0 && status.frames_shown > 10,
        "{status:?}"
    );
    // The demo waited for its caches to warm before playing: the peer path feeds the player
    // (the live panel's numbers, as the status file reports them).
    let until = Instant::now() + Duration::from_secs(60);
    let mut status = status;
    let status = loop {
        if let Some(s) = read_status(&status_file) {
            status = s;
        }
        if status.from_caches_bytes > 0 {
            break status;
        }
        assert!(
            Instant::now() < until,
            "no bytes from the demo caches: {status:?}\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.demo_ready_ms.is_some(), "{status:?}");
    assert!(
        log_text().contains("the demo caches hold the demo movie"),
        "the caches did not warm before playing:\n{}",
        log_text()
    );
    eprintln!(
        "demo: launch → first frame {:?} ms, play → first frame {:?} ms, {:.0}% of the bytes from caches, {status:?}",
        status.first_frame_ms,
        status.play_to_frame_ms,
        status.from_caches_bytes as f64 * 100.0
            / (status.from_caches_bytes + status.from_origin_bytes) as f64
    );

    // A screenshot of the whole screen, as a person would see it.
    let shot = artifacts().join("demo.png");
    let xwd = Command::new("xwd")
        .args(["-root", "-silent", "-display", &display])
        .output()
        .expect("xwd runs (x11-apps)");
    assert!(xwd.status.success(), "xwd failed");
    let mut convert = Command::new("convert")
        .args(["xwd:-", shot.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .expect("convert runs (imagemagick)");
    use std::io::Write as _;
    convert
        .stdin
        .take()
        .unwrap()
        .write_all(&xwd.stdout)
        .unwrap();
    assert!(convert.wait().unwrap().success(), "convert failed");
    let picture = image::open(&shot).unwrap().to_rgb8();
    // The video area (upper middle of the window) holds many colours, not a blank.
    let (w, h) = picture.dimensions();
    let mut colours = std::collections::HashSet::new();
    for y in (h / 8..h * 5 / 8).step_by(4) {
        for x in (w / 8..w * 7 / 8).step_by(4) {
            colours.insert(picture.get_pixel(x, y).0);
        }
    }
    assert!(
        colours.len() > 50,
        "the screenshot looks blank ({} colours): {}",
        colours.len(),
        shot.display()
    );

    // Keys reach the player through the window (XTEST events, as a keyboard makes them):
    // space pauses mpv and the clock holds, space plays on, → seeks 5 s ahead.
    let key = |name: &str| {
        let done = Command::new("xdotool")
            .args([
                "search",
                "--name",
                "Rivulet",
                "windowfocus",
                "--sync",
                "key",
                name,
            ])
            .env("DISPLAY", &display)
            .status()
            .expect("xdotool runs (installer/deps.sh installs it)");
        assert!(done.success(), "xdotool key {name}");
    };
    let wait_for = |what: &str, done: &dyn Fn(&Status) -> bool| {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = read_status(&status_file).filter(|s| done(s)) {
                return s;
            }
            assert!(
                Instant::now() < until,
                "{what}: {:?}\n{}",
                read_status(&status_file),
                log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    key("space");
    let paused = wait_for("space did not pause mpv", &|s| s.paused);
    std::thread::sleep(Duration::from_millis(1000));
    let still = read_status(&status_file).unwrap();
    assert!(
        still.paused && (still.time_pos - paused.time_pos).abs() <= 0.3,
        "the clock moved while paused: {paused:?} then {still:?}"
    );
    key("space");
    let playing = wait_for("space did not resume", &|s| !s.paused);
    key("Right");
    wait_for("→ did not seek 5 s ahead", &|s| {
        s.time_pos >= playing.time_pos + 4.0
    });

    // SIGTERM closes like the window's close button: the engine stops, the app exits 0.
    let pid = app.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let until = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "the app did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}\n{}", log_text());
}
