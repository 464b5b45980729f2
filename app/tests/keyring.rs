//! "Remember me" against a real Secret Service: a private D-Bus session bus with
//! gnome-keyring-daemon on it (what a Linux desktop user has), started for this test process
//! alone. Remembering stores the password in the keyring and in no file; a restart logs in
//! without asking; "Forget my saved password" removes it, and the next start asks again.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Driver, PASSWORD};
use iced_test::simulator;
use rivulet_app::app::{Message, Screen};
use rivulet_app::credentials;
use rivulet_app::screen::login;
use rivulet_localnet::LocalNetwork;

/// A session bus and a Secret Service on it, stopped when dropped.
struct SecretService {
    bus: Child,
    keyring: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl SecretService {
    fn start() -> SecretService {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon runs (installer/deps.sh installs dbus)");
        wait_for(|| socket.exists(), "the session bus");
        let runtime = dir.path().join("run");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon runs (installer/deps.sh installs gnome-keyring)");
        // The login keyring's own password, on stdin, then EOF.
        {
            use std::io::Write as _;
            let mut stdin = keyring.stdin.take().unwrap();
            stdin.write_all(b"keyring-test-unlock").unwrap();
        }
        let service = SecretService {
            bus,
            keyring,
            address,
            _dir: dir,
        };
        wait_for(
            || service.has_secrets(),
            "org.freedesktop.secrets on the bus",
        );
        service
    }

    /// Whether the Secret Service has claimed its name on the bus.
    fn has_secrets(&self) -> bool {
        Command::new("dbus-send")
            .args([
                &format!("--bus={}", self.address),
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(Instant::now() < until, "{what} did not come up within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the keyring holds for `user` on `tracker`, asked the way the app asks.
async fn in_keyring(tracker: &str, user: &str) -> Option<String> {
    let (tracker, user) = (tracker.to_owned(), user.to_owned());
    tokio::task::spawn_blocking(move || credentials::recall(&tracker, &user))
        .await
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn remember_me_keeps_the_password_in_the_keyring_until_forgotten() {
    let home = common::isolate();
    let secrets = SecretService::start();
    // SAFETY: set before the runtime below starts any thread; the keyring reads it.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &secrets.address) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let net = LocalNetwork::temp().start().await.unwrap();
            net.register("kim", PASSWORD).await.unwrap();
            let url = net.url();
            let mut d = Driver::new(false).await;
            assert_eq!(in_keyring(&url, "kim").await, None);

            // Log in with "remember me" ticked.
            d.send(Message::Login(login::Message::Remember(true))).await;
            d.log_in(&url, "kim", PASSWORD).await;
            assert!(matches!(d.app.screen, Screen::Catalogue(_)));
            assert_eq!(d.app.notice, None, "the keyring took the password");
            assert_eq!(in_keyring(&url, "kim").await.as_deref(), Some(PASSWORD));
            // The password is in the keyring and in none of the app's files.
            for file in files_under(&home) {
                let bytes = std::fs::read(&file).unwrap_or_default();
                assert!(
                    !bytes
                        .windows(PASSWORD.len())
                        .any(|w| w == PASSWORD.as_bytes()),
                    "{} holds the password",
                    file.display()
                );
            }

            // A restart logs in without asking.
            d.restart().await;
            match &d.app.screen {
                Screen::Catalogue(c) => assert_eq!(c.account.username, "kim"),
                other => panic!("the restart did not log in by itself: {other:?}"),
            }

            // "Forget my saved password" in the settings pane, through a real click.
            d.send(Message::OpenSettings).await;
            let clicked = {
                let mut ui = simulator(d.app.view());
                ui.click("Forget my saved password")
                    .expect("the pane offers to forget the password");
                ui.into_messages().collect::<Vec<_>>()
            };
            for m in clicked {
                d.send(m).await;
            }
            assert_eq!(
                d.app.notice.as_deref(),
                Some("Your password is no longer remembered.")
            );
            assert_eq!(in_keyring(&url, "kim").await, None);
            assert!(
                simulator(d.app.view())
                    .find("Forget my saved password")
                    .is_err()
            );

            // The next start asks again, with the user name filled in.
            d.restart().await;
            match &d.app.screen {
                Screen::Login(l) => {
                    assert_eq!((l.username.as_str(), l.password.as_str()), ("kim", ""));
                    assert!(!l.remember);
                }
                other => panic!("expected the log-in screen, got {other:?}"),
            }
        })
        .await
        .expect("the test did not finish within 120 s");
    });
}
