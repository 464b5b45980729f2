//! End to end: the real `rivulet` under Xvfb against a tracker on loopback, clicked and typed
//! into through X as a person would (where to click comes from iced's own layout of the
//! same screen, see `common::real_app::Layout`). The first-run choices are saved and the
//! running cache starts with them, and a limit changed in the settings pane reaches it at
//! once; "watch only" registers no cache at the tracker; log out
//! and log in as another user shows that user's points and moves the cache to them; a
//! session the tracker will not renew returns to the log-in screen with the name filled in.
//! Each step leaves a screenshot under target/test-artifacts/app/ (docs/app.md shows them).

mod common;

use std::path::Path;
use std::time::Duration;

use common::real_app::{RealApp, run};
use common::{Driver, PASSWORD};
use rivulet_app::app::{Message, Screen};
use rivulet_app::screen::login;
use rivulet_app::settings::{DownloadLimit, Limit, Settings};
use rivulet_app::tray::TrayEvent;
use rivulet_localnet::{AccountSpec, LocalNetwork, MovieSpec};
use rivulet_tracker_client::{NodeInfo, NodeKind, TrackerClient};

const WAIT: Duration = Duration::from_secs(60);

/// The caches `user`'s account runs, as the tracker lists them.
async fn caches_of(client: &TrackerClient) -> Vec<NodeInfo> {
    client
        .my_nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.kind == NodeKind::Cache)
        .collect()
}

/// Saves what the app finds at its first launch for `user` on `net`: the tracker and the
/// name from an earlier log-in, `tune`d.
fn saved_settings(home: &Path, net: &LocalNetwork, user: &str, tune: impl FnOnce(&mut Settings)) {
    let mut settings = Settings {
        tracker: net.url(),
        username: user.into(),
        ..Settings::default()
    };
    tune(&mut settings);
    settings.save(&home.join("config/settings.json")).unwrap();
}

fn settings_in(home: &Path) -> Settings {
    Settings::load(&home.join("config/settings.json")).0
}

/// The in-process twin of the real app's first-run screen: a fresh account on the same
/// tracker, logged in, not set up (so the same screen, laid out the same).
async fn first_run_mirror(net: &LocalNetwork, name: &str) -> Driver {
    net.register(name, PASSWORD).await.unwrap();
    let mut mirror = Driver::with_settings(false, |s| {
        let dir = s.cache_dir.clone();
        *s = Settings {
            cache_dir: dir,
            ..Settings::default()
        };
    })
    .await;
    mirror.log_in(&net.url(), name, PASSWORD).await;
    assert!(
        matches!(mirror.app.screen, Screen::FirstRun(_)),
        "{:?}",
        mirror.app.screen
    );
    mirror
}

#[test]
fn the_first_run_choices_are_saved_and_the_running_cache_starts_with_them() {
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    run(Duration::from_secs(240), async {
        let net = LocalNetwork::temp().start().await.unwrap();
        net.register("ann", PASSWORD).await.unwrap();
        let ann = net.login("ann", PASSWORD).await.unwrap();
        saved_settings(home.path(), &net, "ann", |_| {});
        app.launch(&[], Some(PASSWORD));
        app.wait_for("no first-run screen", WAIT, |s| s.screen == "first-run")
            .await;
        let mut mirror = first_run_mirror(&net, "mirror-1").await;
        // Nothing runs before the choices are made.
        assert!(caches_of(&ann).await.is_empty());

        // Storage 0.5×, upload 0.2× (the second row of multipliers), download 10 Mbit/s.
        app.click(&mut mirror, "0.5×", 0).await;
        app.click(&mut mirror, "0.2×", 1).await;
        app.click(&mut mirror, &DownloadLimit::Capped(10_000_000).label(), 0)
            .await;
        let Screen::FirstRun(draft) = &mirror.app.screen else {
            panic!("{:?}", mirror.app.screen)
        };
        assert_eq!(draft.draft.storage, Limit::Multiplier(0.5));
        assert_eq!(draft.draft.upload, Limit::Multiplier(0.2));
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.screenshot("first-run");
        app.click(&mut mirror, "Start", 0).await;

        let status = app
            .wait_for("the cache did not start with the choices", WAIT, |s| {
                s.screen == "catalogue" && s.cache.is_some()
            })
            .await;
        let cache = status.cache.unwrap();
        let chosen = Settings {
            storage: Limit::Multiplier(0.5),
            upload: Limit::Multiplier(0.2),
            download: DownloadLimit::Capped(10_000_000),
            ..Settings::default()
        };
        assert_eq!(
            (cache.storage_bytes, cache.upload_bps, cache.download_bps),
            (
                chosen.storage_bytes(),
                chosen.upload_bps(),
                chosen.download_bps()
            ),
            "the running cache's limits"
        );
        let saved = settings_in(home.path());
        assert!(saved.set_up && saved.share && saved.keep_sharing_on_close);
        assert_eq!(
            (saved.storage, saved.upload, saved.download),
            (chosen.storage, chosen.upload, chosen.download)
        );
        // The tracker knows the cache by the same limits.
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(20), || {
                let ann = ann.clone();
                let want = (chosen.upload_bps(), chosen.storage_bytes());
                async move {
                    caches_of(&ann)
                        .await
                        .iter()
                        .any(|n| (n.upload_bps, n.storage_bytes) == want)
                }
            })
            .await,
            "the tracker has no cache of ann's with the chosen limits: {:?}\n{}",
            caches_of(&ann).await,
            app.log_text()
        );
        // Without a system tray the status bar says that closing stops sharing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.screenshot("tray-notice");

        // The settings pane shows the choices (the twin told there is no tray either, so
        // its pane has the same note and the same layout).
        mirror
            .send(Message::Tray(TrayEvent::Unavailable(
                "no session bus".into(),
            )))
            .await;
        app.click(&mut mirror, "Settings", 0).await;
        app.wait_for("the settings pane did not open", WAIT, |s| s.pane_open)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.screenshot("settings-pane");
        // Changed there, the download limit reaches the running cache at once.
        let faster = DownloadLimit::Capped(25_000_000);
        app.click(&mut mirror, &faster.label(), 0).await;
        app.click(&mut mirror, "Apply", 0).await;
        app.wait_for(
            "the new download limit did not reach the cache",
            WAIT,
            |s| {
                s.cache
                    .as_ref()
                    .is_some_and(|c| c.download_bps == 25_000_000)
            },
        )
        .await;
        let home_dir = home.path();
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(10), || async move {
                settings_in(home_dir).download == faster
            })
            .await,
            "the pane's download limit was not saved"
        );

        app.terminate().await;
        net.shutdown().await;
    });
}

#[test]
fn watch_only_registers_no_cache_at_the_tracker() {
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    run(Duration::from_secs(240), async {
        let net = LocalNetwork::temp().start().await.unwrap();
        net.register("bea", PASSWORD).await.unwrap();
        let bea = net.login("bea", PASSWORD).await.unwrap();
        saved_settings(home.path(), &net, "bea", |_| {});
        app.launch(&[], Some(PASSWORD));
        app.wait_for("no first-run screen", WAIT, |s| s.screen == "first-run")
            .await;
        let mut mirror = first_run_mirror(&net, "mirror-2").await;
        app.click(&mut mirror, "Share: run a cache", 0).await;
        assert!(
            matches!(&mirror.app.screen, Screen::FirstRun(f) if !f.draft.share),
            "the click did not untick sharing"
        );
        app.click(&mut mirror, "Start", 0).await;
        app.wait_for("no catalogue after the first run", WAIT, |s| {
            s.screen == "catalogue" && s.user.as_deref() == Some("bea")
        })
        .await;
        let saved = settings_in(home.path());
        assert!(saved.set_up && !saved.share, "{saved:?}");
        // A cache the app starts registers within a second or two (the first-run test); give
        // it five, then nothing must be there, and nothing must be running.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(caches_of(&bea).await.is_empty(), "watch only runs a cache");
        let status = app.status().unwrap();
        assert!(status.cache.is_none(), "{status:?}");
        app.terminate().await;
        net.shutdown().await;
    });
}

#[test]
fn log_out_then_in_as_another_user_shows_their_points_and_moves_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    run(Duration::from_secs(240), async {
        let net = LocalNetwork::temp()
            .movie(MovieSpec::sample("film", 4).price(10))
            .account_spec(AccountSpec::new("ann", PASSWORD).points(120))
            .account_spec(AccountSpec::new("ben", PASSWORD).points(345))
            .start()
            .await
            .unwrap();
        let (ann, ben) = (
            net.login("ann", PASSWORD).await.unwrap(),
            net.login("ben", PASSWORD).await.unwrap(),
        );
        let small = |s: &mut Settings| {
            s.set_up = true;
            s.storage = Limit::Custom(200_000_000);
        };
        saved_settings(home.path(), &net, "ann", small);
        app.launch(&[], Some(PASSWORD));
        let s = app
            .wait_for("ann is not logged in", WAIT, |s| {
                s.screen == "catalogue" && s.points.is_some() && s.cache.is_some()
            })
            .await;
        assert_eq!((s.user.as_deref(), s.points), (Some("ann"), Some(120)));
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(20), || {
                let ann = ann.clone();
                async move { caches_of(&ann).await.len() == 1 }
            })
            .await
        );
        // The twin: ann in-process, on the catalogue too.
        let mut mirror = Driver::with_settings(false, small).await;
        mirror.log_in(&net.url(), "ann", PASSWORD).await;

        app.click(&mut mirror, "Log out", 0).await;
        let s = app
            .wait_for("no log-in screen after Log out", WAIT, |s| {
                s.screen == "login"
            })
            .await;
        assert_eq!(s.login_name.as_deref(), Some("ann"), "{s:?}");
        assert!(s.user.is_none() && s.cache.is_none(), "{s:?}");
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(20), || {
                let ann = ann.clone();
                async move { caches_of(&ann).await.is_empty() }
            })
            .await,
            "ann's cache did not leave with her"
        );

        // Ben's name over ann's, his password, Enter.
        app.click(&mut mirror, "ann", 0).await;
        app.key("ctrl+a");
        app.type_text("ben");
        mirror
            .send(Message::Login(login::Message::Username("ben".into())))
            .await;
        app.click_at(common::real_app::Layout::field(&mirror.app, 2));
        app.type_text(PASSWORD);
        app.key("Return");
        let s = app
            .wait_for("ben is not logged in", WAIT, |s| {
                s.screen == "catalogue" && s.user.as_deref() == Some("ben") && s.points.is_some()
            })
            .await;
        assert_eq!(s.points, Some(345), "{s:?}");
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(20), || {
                let ben = ben.clone();
                async move { caches_of(&ben).await.len() == 1 }
            })
            .await,
            "no cache runs for ben\n{}",
            app.log_text()
        );
        assert!(caches_of(&ann).await.is_empty());
        mirror
            .send(Message::Login(login::Message::Password(PASSWORD.into())))
            .await;
        mirror.send(Message::Login(login::Message::LogIn)).await;

        // Ben's password changes elsewhere and his session expires: the next call cannot
        // renew it, and the log-in screen comes back with his name and why.
        net.set_password("ben", "changed-elsewhere-9")
            .await
            .unwrap();
        net.expire_sessions().await.unwrap();
        app.click(&mut mirror, "Catalogue", 0).await;
        let s = app
            .wait_for_any("no log-in screen after the session ended", WAIT, |s| {
                s.screen == "login"
            })
            .await;
        assert_eq!(s.login_name.as_deref(), Some("ben"), "{s:?}");
        assert!(
            s.error
                .as_deref()
                .is_some_and(|e| e.contains("session has ended")),
            "{s:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.screenshot("login-session-ended");
        app.terminate().await;
        net.shutdown().await;
    });
}
