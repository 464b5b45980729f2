//! A real X server for the end-to-end tests (Xvfb on a free display), and what a window
//! manager would do to the app's window: find it by its title and ask it to close.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a display number it picks itself (`-displayfd`: two tests starting at
/// once can never take the same one); returns it with the display.
pub fn start_xvfb() -> (Reaped, String) {
    use std::io::BufRead as _;
    let child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1320x860x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb runs (installer/deps.sh installs xvfb)");
    let mut xvfb = Reaped(child);
    let stdout = xvfb.0.stdout.take().expect("Xvfb's stdout");
    // Xvfb writes the number once it listens; a line read blocks until then (or it dies).
    let mut line = String::new();
    let read = std::io::BufReader::new(stdout).read_line(&mut line);
    let n: u32 = match (read, line.trim().parse()) {
        (Ok(_), Ok(n)) => n,
        _ => panic!("Xvfb did not say which display it took: {line:?}"),
    };
    let until = Instant::now() + Duration::from_secs(10);
    while !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
        assert!(Instant::now() < until, "Xvfb :{n} has no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    (xvfb, format!(":{n}"))
}

/// The windows on `display` titled exactly `title` (xdotool).
pub fn windows_titled(display: &str, title: &str) -> Vec<u32> {
    let found = Command::new("xdotool")
        .args(["search", "--name", &format!("^{title}$")])
        .env("DISPLAY", display)
        .output()
        .expect("xdotool runs (installer/deps.sh installs it)");
    String::from_utf8_lossy(&found.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Asks `window` to close as a window manager does for its close button: a
/// `WM_PROTOCOLS` / `WM_DELETE_WINDOW` client message (the app sees a close request).
pub fn ask_to_close(display: &str, window: u32) {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{ClientMessageEvent, ConnectionExt as _, EventMask};
    let (conn, _) = x11rb::connect(Some(display)).expect("the X server answers");
    let atom = |name: &[u8]| {
        conn.intern_atom(false, name)
            .expect("intern_atom")
            .reply()
            .expect("an atom")
            .atom
    };
    let (protocols, delete) = (atom(b"WM_PROTOCOLS"), atom(b"WM_DELETE_WINDOW"));
    let event = ClientMessageEvent::new(
        32,
        window,
        protocols,
        [delete, x11rb::CURRENT_TIME, 0, 0, 0],
    );
    conn.send_event(false, window, EventMask::NO_EVENT, event)
        .expect("send_event");
    conn.flush().expect("flush");
}
