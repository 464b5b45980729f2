//! End to end: the real `rivulet` under a real X server (Xvfb) with a real session bus (a
//! private `dbus-daemon` and a StatusNotifierWatcher on it, as a desktop's tray has), against
//! a tracker on loopback. The app logs in (the saved user, `RIVULET_PASSWORD`), puts its icon
//! in the tray and runs the only cache of the network; its window is asked to close as a
//! window manager does; the window goes, the process stays, and another user's viewer still
//! gets its bytes from that cache; "Open" in the tray's menu opens a window again. SIGTERM
//! then is the full close: exit 0, the cache leaves.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::PASSWORD;
use common::bus::{SessionBus, click, labels, menu, watcher};
use common::x11::{Reaped, ask_to_close, start_xvfb, windows_titled};
use rivulet_app::settings::{Limit, Settings};
use rivulet_localnet::{LocalNetwork, MovieSpec};

#[derive(Debug, serde::Deserialize)]
struct Status {
    screen: String,
    error: Option<String>,
    in_tray: bool,
    tray_shown: bool,
}

fn read_status(path: &Path) -> Option<Status> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Waits until the status file satisfies `done` (60 s at most; an error it reports fails).
async fn status_until(status_file: &Path, log: &Path, what: &str, done: fn(&Status) -> bool) {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = read_status(status_file) {
            assert!(s.error.is_none(), "the app reports: {s:?}\n{}", log_text());
            if done(&s) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: {:?}\n{}",
            read_status(status_file),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn caches_of(tracker: &rivulet_tracker_client::TrackerClient) -> Vec<Vec<String>> {
    tracker
        .my_nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.kind == rivulet_tracker_client::NodeKind::Cache)
        .map(|n| n.holdings.into_iter().map(|h| h.video).collect())
        .collect()
}

#[test]
fn closing_the_window_with_sharing_on_keeps_serving_a_viewer() {
    let (_xvfb, display) = start_xvfb();
    let bus = SessionBus::start();
    let home = tempfile::tempdir().unwrap();
    let status_file = home.path().join("status.json");
    let log_path = home.path().join("rivulet.log");
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), async {
            let (_watcher, mut registrations) = watcher(&bus).await;
            let net = LocalNetwork::temp()
                .movie(MovieSpec::sample("film", 12).price(10))
                .configure(|c| c.placement_interval = Duration::from_millis(300))
                .start()
                .await
                .unwrap();
            net.register("ann", PASSWORD).await.unwrap();
            net.register("ben", PASSWORD).await.unwrap();
            let ann = net.login("ann", PASSWORD).await.unwrap();
            // Ann's settings as the first run leaves them: sharing, and on close keep sharing.
            Settings {
                tracker: net.url(),
                username: "ann".into(),
                storage: Limit::Custom(200_000_000),
                upload: Limit::Custom(1_000_000_000),
                set_up: true,
                ..Settings::default()
            }
            .save(&home.path().join("config/settings.json"))
            .unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut app = Reaped(
                Command::new(env!("CARGO_BIN_EXE_rivulet"))
                    .env("DISPLAY", &display)
                    .env_remove("WAYLAND_DISPLAY")
                    .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
                    .env("RIVULET_HOME", home.path())
                    .env("RIVULET_STATUS_FILE", &status_file)
                    .env("RIVULET_PASSWORD", PASSWORD)
                    .env("RIVULET_MPV_AO", "null")
                    .env("ICED_BACKEND", "tiny-skia")
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            );
            // Logged in, the icon in the tray, the cache registered.
            status_until(
                &status_file,
                &log_path,
                "no catalogue with the icon in a tray",
                |s| s.screen == "catalogue" && s.tray_shown,
            )
            .await;
            let item = tokio::time::timeout(Duration::from_secs(10), registrations.recv())
                .await
                .expect("the icon did not register with the watcher")
                .unwrap();
            assert!(item.starts_with("org.kde.StatusNotifierItem-"), "{item}");
            assert!(
                rivulet_e2e::eventually(Duration::from_secs(30), || {
                    let ann = ann.clone();
                    async move { caches_of(&ann).await.len() == 1 }
                })
                .await,
                "ann's cache did not register\n{}",
                log_text()
            );

            // Ben buys the film: placement gives ann's cache (the only one) chunks of it.
            net.login("ben", PASSWORD)
                .await
                .unwrap()
                .buy("film")
                .await
                .unwrap();
            assert!(
                rivulet_e2e::eventually(Duration::from_secs(30), || {
                    let ann = ann.clone();
                    async move {
                        caches_of(&ann)
                            .await
                            .iter()
                            .any(|held| held.iter().any(|v| v == "film"))
                    }
                })
                .await,
                "ann's cache holds nothing of the film\n{}",
                log_text()
            );

            // The window is asked to close, as the close button in a window manager does: it
            // goes, the process stays.
            let windows = windows_titled(&display, "Rivulet");
            assert!(!windows.is_empty(), "no window titled Rivulet");
            for w in windows {
                ask_to_close(&display, w);
            }
            status_until(
                &status_file,
                &log_path,
                "the app did not go to the tray",
                |s| s.in_tray,
            )
            .await;
            let display_ref = display.as_str();
            assert!(
                rivulet_e2e::eventually(Duration::from_secs(10), move || async move {
                    windows_titled(display_ref, "Rivulet").is_empty()
                })
                .await,
                "the window is still there"
            );
            assert!(
                app.0.try_wait().unwrap().is_none(),
                "the app exited when its window closed\n{}",
                log_text()
            );

            // Ben watches: his bytes come from ann's cache, served by the app with no window.
            tokio::time::sleep(Duration::from_millis(800)).await;
            let report = rivulet_node_core::headless::watch(
                &net.url(),
                "ben",
                PASSWORD,
                "film",
                &home.path().join("ben.mkv"),
                &rivulet_node_core::viewer::WatchOptions::default(),
                false,
            )
            .await
            .unwrap();
            assert!(
                report.from_caches_bytes > 0,
                "nothing from the app's cache: {report:?}\n{}",
                log_text()
            );
            assert!(read_status(&status_file).is_some_and(|s| s.in_tray));

            // "Open" in the tray's menu, as a tray host sends it, opens a window again.
            let host = zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            assert_eq!(
                labels(&menu(&host, &item).await),
                ["Open", "Pause sharing", "Quit"]
            );
            click(&host, &item, "Open").await;
            status_until(
                &status_file,
                &log_path,
                "Open did not bring the window back",
                |s| !s.in_tray,
            )
            .await;
            assert!(
                rivulet_e2e::eventually(Duration::from_secs(10), move || async move {
                    !windows_titled(display_ref, "Rivulet").is_empty()
                })
                .await,
                "no window after Open\n{}",
                log_text()
            );

            // SIGTERM is the full close: the engine stops, the cache leaves, exit 0.
            let pid = app.0.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            );
            let until = tokio::time::Instant::now() + Duration::from_secs(20);
            let exit = loop {
                if let Some(status) = app.0.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    tokio::time::Instant::now() < until,
                    "the app did not exit within 20 s of SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(exit.success(), "exit status {exit:?}\n{}", log_text());
            assert!(
                rivulet_e2e::eventually(Duration::from_secs(10), || {
                    let ann = ann.clone();
                    async move { caches_of(&ann).await.is_empty() }
                })
                .await,
                "the cache did not leave the tracker"
            );
        })
        .await
        .expect("the test did not finish within 240 s");
    });
}
