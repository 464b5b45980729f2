//! End to end: the real `rivulet` under a real X server (Xvfb) with a real session bus (a
//! private `dbus-daemon` and a StatusNotifierWatcher on it, as a desktop's tray has), against
//! a tracker on loopback. The app logs in (the saved user, `RIVULET_PASSWORD`), puts its icon
//! in the tray and runs the only cache of the network; its window is asked to close as a
//! window manager does; the window goes, the process stays, and another user's viewer still
//! gets its bytes from that cache; "Open" in the tray's menu opens a window again. SIGTERM
//! then is the full close: exit 0, the cache leaves.

mod common;

use std::time::Duration;

use common::PASSWORD;
use common::bus::{SessionBus, click, labels, menu, watcher};
use common::real_app::{RealApp, run};
use common::x11::{ask_to_close, windows_titled};
use rivulet_app::settings::{Limit, Settings};
use rivulet_localnet::{LocalNetwork, MovieSpec};

const WAIT: Duration = Duration::from_secs(60);

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
    let bus = SessionBus::start();
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    app.bus = Some(bus.address.clone());
    let display = app.display.clone();
    run(Duration::from_secs(240), async {
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
        app.launch(&[], Some(PASSWORD));
        // Logged in, the icon in the tray, the cache registered.
        app.wait_for("no catalogue with the icon in a tray", WAIT, |s| {
            s.screen == "catalogue" && s.tray_shown
        })
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
            app.log_text()
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
            app.log_text()
        );

        // The window is asked to close, as the close button in a window manager does: it
        // goes, the process stays.
        let windows = windows_titled(&display, "Rivulet");
        assert!(!windows.is_empty(), "no window titled Rivulet");
        for w in windows {
            ask_to_close(&display, w);
        }
        app.wait_for("the app did not go to the tray", WAIT, |s| s.in_tray)
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
            app.running(),
            "the app exited when its window closed\n{}",
            app.log_text()
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
            app.log_text()
        );
        assert!(app.status().is_some_and(|s| s.in_tray));

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
        app.wait_for("Open did not bring the window back", WAIT, |s| !s.in_tray)
            .await;
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(10), move || async move {
                !windows_titled(display_ref, "Rivulet").is_empty()
            })
            .await,
            "no window after Open\n{}",
            app.log_text()
        );

        // SIGTERM is the full close: the engine stops, the cache leaves, exit 0.
        app.terminate().await;
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(10), || {
                let ann = ann.clone();
                async move { caches_of(&ann).await.is_empty() }
            })
            .await,
            "the cache did not leave the tracker"
        );
    });
}
