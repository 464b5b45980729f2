//! One app per user, across real processes: a running app (this test binary re-run as the
//! first launch: it holds the lock, listens and prints what it is handed) takes the links
//! of later `rivulet` launches, which exit 0 at once without opening a window; after the app
//! is killed (SIGKILL, its socket left behind) the next launch becomes the app.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rivulet_app::link::Launch;
use rivulet_app::single::{self, Instance};

/// Set in the child that plays the running app: its runtime folder.
const ROLE: &str = "RIVULET_TEST_FIRST_LAUNCH";
/// Starts the child's own output (libtest may print on the same line).
const MARK: &str = "@first-launch: ";

/// A child process killed when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In the child: become the app and print each hand-off; otherwise does nothing.
#[test]
fn first_launch_role() {
    let Some(dir) = std::env::var_os(ROLE) else {
        return;
    };
    let Instance::First(first) = single::claim(Path::new(&dir), &Launch::default()).unwrap() else {
        panic!("the first launch found another app");
    };
    println!("{MARK}ready");
    let (tx, rx) = std::sync::mpsc::channel();
    first.serve(move |h| tx.send(h).unwrap()).unwrap();
    for handoff in rx {
        println!(
            "{MARK}handed {}",
            handoff.watch.as_deref().unwrap_or("focus")
        );
    }
}

/// Starts the first launch for the runtime folder `dir`; returns it once it listens.
fn start_first(dir: &Path) -> (Reaped, BufReader<ChildStdout>) {
    let mut child = Reaped(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "first_launch_role",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    assert_eq!(next_line(&mut out), "ready");
    (child, out)
}

/// The child's next line of its own (libtest's output skipped).
fn next_line(out: &mut BufReader<ChildStdout>) -> String {
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the first launch ended"
        );
        if let Some((_, own)) = line.split_once(MARK) {
            return own.trim().to_owned();
        }
    }
}

/// Runs the real `rivulet` with `args` as a later launch (no display: it must not need one).
fn later_launch(home: &Path, args: &[&str]) -> std::process::Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .env("RIVULET_HOME", home)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a later launch took {:?}",
        started.elapsed()
    );
    out
}

#[test]
fn later_launches_hand_their_links_to_the_running_app() {
    let home = tempfile::tempdir().unwrap();
    let runtime = rivulet_app::environment::runtime_dir_in(home.path());
    let (mut first, mut out) = start_first(&runtime);

    let handed = later_launch(home.path(), &["rivulet://watch/demo"]);
    assert!(
        handed.status.success(),
        "{:?}: {}",
        handed.status,
        String::from_utf8_lossy(&handed.stderr)
    );
    assert_eq!(next_line(&mut out), "handed demo");
    // A second menu click: no link, the app only comes to the front.
    assert!(later_launch(home.path(), &[]).status.success());
    assert_eq!(next_line(&mut out), "handed focus");
    // A bad link is refused by the later launch itself, in one line; nothing is handed.
    let bad = later_launch(home.path(), &["rivulet://watch/../../x"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // The app crashes: its socket stays behind, its lock goes with it.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(runtime.join(single::SOCKET_FILE).exists());
    let (_again, mut out) = start_first(&runtime);
    assert!(
        later_launch(home.path(), &["rivulet://watch/x1"])
            .status
            .success()
    );
    assert_eq!(next_line(&mut out), "handed x1");
}
