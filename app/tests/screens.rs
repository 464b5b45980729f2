//! The screens against a real tracker on loopback, driven through `App::update` (and, where a
//! click is the point, the `iced_test` simulator): log-in and its failures, the catalogue,
//! buying, the player with real mpv, settings reaching the running cache, points, and what
//! closing the window does with and without a system tray.

mod common;

use std::time::Duration;

use common::{Driver, PASSWORD};
use iced_test::simulator;
use rivulet_app::app::{Message, Screen};
use rivulet_app::screen::{catalogue, first_run, player, points, settings};
use rivulet_app::settings::DownloadLimit;
use rivulet_app::tray::{NO_TRAY, TrayAction, TrayEvent};
use rivulet_localnet::LoginLimits;
use rivulet_localnet::process::walk;
use rivulet_localnet::{LocalNetwork, MovieSpec};

fn cheap() -> MovieSpec {
    MovieSpec::sample("cheap", 12).price(10)
}
fn dear() -> MovieSpec {
    MovieSpec::sample("dear", 4).price(1000)
}

/// Whether the window shows `text` (the iced_test simulator, tiny-skia, no display).
fn sees(d: &Driver, text: &str) -> bool {
    simulator(d.app.view()).find(text).is_ok()
}

/// Clicks what shows `text`; the messages the click produced.
fn click(d: &Driver, text: &str) -> Vec<Message> {
    let mut ui = simulator(d.app.view());
    ui.click(text)
        .unwrap_or_else(|e| panic!("nothing to click shows {text:?}: {e:?}"));
    ui.into_messages().collect()
}

fn catalogue_of(d: &Driver) -> &catalogue::State {
    match &d.app.screen {
        Screen::Catalogue(c) => c,
        other => panic!("expected the catalogue, got {other:?}"),
    }
}

/// A network with the cheap and the dear movie.
async fn two_movies() -> LocalNetwork {
    LocalNetwork::temp()
        .movie(cheap())
        .movie(dear())
        .start()
        .await
        .unwrap()
}

/// A new account `user` on `net`, logged in through the log-in screen.
async fn logged_in(net: &LocalNetwork, user: &str) -> Driver {
    net.register(user, PASSWORD).await.unwrap();
    let mut d = Driver::new(false).await;
    d.log_in(&net.url(), user, PASSWORD).await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_fills_the_catalogue_from_the_tracker() {
    let net = two_movies().await;
    let mut d = logged_in(&net, "alice").await;
    let c = catalogue_of(&d);
    assert_eq!(c.account.username, "alice");
    assert_eq!(c.account.balance, 100);
    let titles: Vec<&str> = c.videos.iter().map(|v| v.title.as_str()).collect();
    assert_eq!(titles, ["Movie cheap", "Movie dear"]);
    assert!(
        c.has_poster("cheap") && c.has_poster("dear"),
        "posters decoded"
    );
    // What the user sees.
    assert!(sees(&d, "Movie cheap"));
    assert!(sees(&d, "Buy for 1000 points"));
    assert!(sees(&d, "alice · 100 points"));
    // Search narrows the grid.
    d.send(Message::Catalogue(catalogue::Message::Search(
        "DEAR".into(),
    )))
    .await;
    let shown: Vec<_> = catalogue_of(&d).shown().map(|v| v.id.clone()).collect();
    assert_eq!(shown, ["dear"]);
    // The settings file remembers the tracker and the user, never the password.
    let saved = std::fs::read_to_string(d.dir.path().join("settings.json")).unwrap();
    assert!(saved.contains(&net.url()) && saved.contains("alice"));
    assert!(!saved.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_failures_are_said_plainly() {
    let net = LocalNetwork::temp()
        .configure(|c| {
            c.login_limits = LoginLimits {
                per_account: 3,
                per_address: 1000,
                window: Duration::from_secs(3600),
            };
        })
        .start()
        .await
        .unwrap();
    net.register("bob", PASSWORD).await.unwrap();
    let mut d = Driver::new(false).await;

    // Empty fields are caught before any call, through a real click.
    let clicked = click(&d, "Log in");
    for m in clicked {
        d.send(m).await;
    }
    assert_eq!(
        d.login_error().as_deref(),
        Some("Enter a user name and a password.")
    );

    d.log_in(&net.url(), "bob", "wrong-password-9").await;
    assert_eq!(
        d.login_error().as_deref(),
        Some("Wrong user name or password.")
    );
    assert!(sees(&d, "Wrong user name or password."));

    // A closed port: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    d.log_in(&format!("http://{closed}"), "bob", PASSWORD).await;
    let e = d.login_error().unwrap();
    assert!(e.starts_with("The tracker cannot be reached"), "{e}");

    d.log_in("tracker.example", "bob", PASSWORD).await;
    assert!(d.login_error().unwrap().contains("http://"));

    // Failures past the limit lock the account, even with the right password.
    for _ in 0..4 {
        d.log_in(&net.url(), "bob", "wrong-password-9").await;
    }
    d.log_in(&net.url(), "bob", PASSWORD).await;
    let e = d.login_error().unwrap();
    assert!(e.starts_with("Too many failed log-ins"), "{e}");

    // Sign-up creates the account and logs in.
    d.log_in(&net.url(), "carol", PASSWORD).await;
    assert_eq!(
        d.login_error().as_deref(),
        Some("Wrong user name or password.")
    );
    d.send(Message::Login(rivulet_app::screen::login::Message::SignUp))
        .await;
    assert_eq!(catalogue_of(&d).account.username, "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buying_with_and_without_enough_points() {
    let net = two_movies().await;
    let mut d = logged_in(&net, "dora").await;

    // Click "Buy", see the confirmation with the balance, click "Confirm".
    let clicked = click(&d, "Buy for 10 points");
    for m in clicked {
        d.send(m).await;
    }
    assert!(sees(
        &d,
        "Buy \"Movie cheap\" for 10 points? You have 100; 90 would be left."
    ));
    let clicked = click(&d, "Confirm");
    for m in clicked {
        d.send(m).await;
    }
    let c = catalogue_of(&d);
    assert_eq!(c.account.balance, 90);
    assert!(c.videos.iter().any(|v| v.id == "cheap" && v.bought));
    assert_eq!(
        c.notice.as_deref(),
        Some("Bought \"Movie cheap\" for 10 points; 90 left.")
    );
    assert!(sees(&d, "Watch"));

    // Too dear: the confirmation says so, and the tracker's refusal is said plainly.
    d.send(Message::Catalogue(catalogue::Message::Buy("dear".into())))
        .await;
    assert!(sees(
        &d,
        "\"Movie dear\" costs 1000 points and you have 90: not enough yet."
    ));
    d.send(Message::Catalogue(catalogue::Message::ConfirmBuy))
        .await;
    let c = catalogue_of(&d);
    assert!(
        c.error
            .as_deref()
            .unwrap()
            .starts_with("You do not have enough points")
    );
    assert_eq!(c.account.balance, 90);
    assert!(c.videos.iter().any(|v| v.id == "dear" && !v.bought));
    // The tracker agrees.
    let me = net.account_of("dora", PASSWORD).await.unwrap();
    assert_eq!((me.balance, me.bought), (90, vec!["cheap".to_owned()]));
}

/// A new account `user` on `net` that bought the cheap movie, logged in with the engine.
async fn owner_of_cheap(net: &LocalNetwork, user: &str) -> Driver {
    net.register(user, PASSWORD).await.unwrap();
    net.login(user, PASSWORD)
        .await
        .unwrap()
        .buy("cheap")
        .await
        .unwrap();
    let mut d = Driver::new(true).await;
    d.log_in(&net.url(), user, PASSWORD).await;
    d
}

/// The player's phase, frames rendered and clock, while the player is open.
fn playing(d: &Driver) -> Option<(player::Phase, u64, f64)> {
    match &d.app.screen {
        Screen::Player(p) => Some((p.phase.clone(), p.frames_rendered(), p.time)),
        _ => None,
    }
}

/// Feeds engine events (stream ready, viewer numbers) and ticks until mpv renders frames
/// and the clock moves.
async fn play_until_the_clock_moves(d: &mut Driver) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut first_time = None;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no playback: {:?}",
            playing(d)
        );
        while let Some(e) = d.events.as_mut().and_then(|events| events.try_recv().ok()) {
            d.send(Message::Node(e)).await;
        }
        d.send(Message::Player(player::Message::Tick)).await;
        let (phase, frames, time) = playing(d).unwrap();
        assert!(!matches!(phase, player::Phase::Failed(_)), "{phase:?}");
        if frames > 5 && time > 0.5 {
            match first_time {
                None => first_time = Some(time),
                Some(t0) if time > t0 + 1.0 => break,
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ticks the player until `done` holds of it, for at most `secs`; false if it never did.
async fn tick_until(d: &mut Driver, secs: u64, done: impl Fn(&player::State) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        d.send(Message::Player(player::Message::Tick)).await;
        if let Screen::Player(p) = &d.app.screen
            && done(p)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Presses `key` as the window would hand it to the player (no modifiers).
async fn press(d: &mut Driver, key: iced::keyboard::Key) {
    let message = player::shortcut(&key, iced::keyboard::Modifiers::empty())
        .unwrap_or_else(|| panic!("{key:?} is a player shortcut"));
    d.send(Message::Player(message)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_then_log_in_as_another_user_shows_their_points() {
    let net = two_movies().await;
    net.register("ben", PASSWORD).await.unwrap();
    net.login("ben", PASSWORD)
        .await
        .unwrap()
        .buy("cheap")
        .await
        .unwrap();
    let mut d = logged_in(&net, "ann").await;
    let ann = catalogue_of(&d).account.clone();
    assert!(sees(&d, &format!("ann · {} points", ann.balance)));
    // The app's client logs in again by itself on a 401; its token alone shows the end.
    let token = d
        .app
        .session
        .as_ref()
        .unwrap()
        .client
        .token()
        .expect("a session token");

    for m in click(&d, "Log out") {
        d.send(m).await;
    }
    // Back at the log-in screen with the name filled in; the tracker ended the session.
    match &d.app.screen {
        Screen::Login(l) => assert_eq!(l.username, "ann"),
        other => panic!("expected the log-in screen, got {other:?}"),
    }
    assert!(d.app.session.is_none() && d.app.cache.is_none());
    assert!(!sees(&d, "Log out"));
    assert_eq!(d.app.notice, None, "the log-out reached the tracker");
    let refused = rivulet_tracker_client::TrackerClient::new(&net.url())
        .with_token(token)
        .me()
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&rivulet_tracker_client::ErrorCode::Unauthorized),
        "{refused}"
    );

    d.log_in(&net.url(), "ben", PASSWORD).await;
    let ben = catalogue_of(&d).account.clone();
    assert_eq!(ben.username, "ben");
    assert_eq!(
        ben.balance + 10,
        ann.balance,
        "ben paid 10 for the cheap movie"
    );
    assert!(sees(&d, &format!("ben · {} points", ben.balance)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_movie_left_part_way_resumes_there_from_the_continue_watching_row() {
    let net = two_movies().await;
    let mut d = owner_of_cheap(&net, "lee").await;
    assert!(!sees(&d, "Continue watching"), "nothing left part-way yet");
    d.send(Message::Catalogue(catalogue::Message::Watch(
        "cheap".into(),
    )))
    .await;
    play_until_the_clock_moves(&mut d).await;
    d.send(Message::Player(player::Message::SeekMoved(8.0)))
        .await;
    d.send(Message::Player(player::Message::SeekReleased)).await;
    assert!(
        tick_until(&mut d, 30, |p| p.time >= 7.5).await,
        "{:?}",
        playing(&d)
    );
    d.send(Message::Player(player::Message::TogglePause)).await;
    let left = playing(&d).unwrap().2;
    d.send(Message::Player(player::Message::Back)).await;

    // The catalogue offers it where it was left, and the place is on disk.
    let spot = d
        .app
        .positions
        .recent(&net.url(), "lee")
        .next()
        .cloned()
        .expect("the place is kept");
    assert_eq!(spot.video, "cheap");
    assert!((spot.secs - left).abs() < 0.01, "{spot:?} vs {left}");
    let saved = std::fs::read_to_string(d.dir.path().join("positions.json")).unwrap_or_default();
    assert!(saved.contains("\"cheap\""), "positions.json: {saved}");
    assert!(sees(&d, "Continue watching"));
    let label = format!(
        "Movie cheap · {} of {}",
        rivulet_app::screen::clock((spot.secs * 1000.0) as u64),
        rivulet_app::screen::clock((spot.duration * 1000.0) as u64)
    );
    for m in click(&d, &label) {
        d.send(m).await;
    }

    // Reopened (the engine's events bring the stream, ticks the frames), mpv itself starts
    // within 2 s of where the movie was left.
    let started = d
        .until(Duration::from_secs(60), |app| match &app.screen {
            Screen::Player(p) => p.resume_at.is_some() && p.phase == player::Phase::Playing,
            _ => false,
        })
        .await;
    assert!(started, "the player did not start: {:?}", playing(&d));
    assert!(
        tick_until(&mut d, 60, |p| p.frames_rendered() > 0).await,
        "no frames after reopening: {:?}",
        playing(&d)
    );
    let Screen::Player(p) = &d.app.screen else {
        unreachable!()
    };
    let at: f64 = p
        .mpv_property("time-pos")
        .and_then(|t| t.parse().ok())
        .expect("mpv has a position");
    assert!((at - left).abs() <= 2.0, "resumed at {at}, left at {left}");
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_player_answers_its_keyboard_shortcuts_in_mpv() {
    use iced::keyboard::{Key, Modifiers, key::Named};
    // Keys with Ctrl or Alt, and keys that are no shortcut, are left alone.
    let space = Key::Named(Named::Space);
    assert!(player::shortcut(&space, Modifiers::CTRL).is_none());
    assert!(player::shortcut(&Key::Character("f".into()), Modifiers::ALT).is_none());
    assert!(player::shortcut(&Key::Character("q".into()), Modifiers::empty()).is_none());

    let net = two_movies().await;
    let mut d = owner_of_cheap(&net, "kim").await;
    d.send(Message::Catalogue(catalogue::Message::Watch(
        "cheap".into(),
    )))
    .await;
    play_until_the_clock_moves(&mut d).await;
    let mpv = |d: &Driver, name: &str| match &d.app.screen {
        Screen::Player(p) => p.mpv_property(name).unwrap_or_default(),
        _ => String::new(),
    };

    // Space pauses mpv itself, and the clock holds; space again plays on.
    press(&mut d, space.clone()).await;
    assert_eq!(mpv(&d, "pause"), "yes");
    let held = playing(&d).unwrap().2;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(tick_until(&mut d, 2, |p| (p.time - held).abs() < 0.3).await);
    press(&mut d, space).await;
    assert_eq!(mpv(&d, "pause"), "no");

    // → seeks 5 s ahead and mpv's clock lands there; ← comes back.
    let from = playing(&d).unwrap().2;
    press(&mut d, Key::Named(Named::ArrowRight)).await;
    assert!(
        tick_until(&mut d, 30, |p| p.time
            >= from + player::SEEK_STEP_SECS - 0.8)
        .await,
        "→ did not seek: {:?} from {from}",
        playing(&d)
    );
    let ahead = playing(&d).unwrap().2;
    press(&mut d, Key::Named(Named::ArrowLeft)).await;
    assert!(
        tick_until(&mut d, 30, |p| p.time
            <= ahead - player::SEEK_STEP_SECS + 1.5)
        .await,
        "← did not seek back: {:?} from {ahead}",
        playing(&d)
    );

    // ↓ and ↑ move mpv's volume by a step; m mutes and unmutes.
    press(&mut d, Key::Named(Named::ArrowDown)).await;
    assert_eq!(mpv(&d, "volume").parse::<f64>().ok(), Some(95.0));
    press(&mut d, Key::Named(Named::ArrowUp)).await;
    assert_eq!(mpv(&d, "volume").parse::<f64>().ok(), Some(100.0));
    press(&mut d, Key::Character("m".into())).await;
    assert_eq!(mpv(&d, "mute"), "yes");
    press(&mut d, Key::Character("M".into())).await;
    assert_eq!(mpv(&d, "mute"), "no");

    // f goes fullscreen; Esc leaves fullscreen first, then the player.
    press(&mut d, Key::Character("f".into())).await;
    assert!(
        sees(&d, "Window"),
        "f turns the fullscreen button into Window"
    );
    press(&mut d, Key::Named(Named::Escape)).await;
    assert!(matches!(&d.app.screen, Screen::Player(p) if !p.fullscreen));
    press(&mut d, Key::Named(Named::Escape)).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_player_plays_and_seeks_a_bought_movie_with_mpv() {
    let net = two_movies().await;
    let mut d = owner_of_cheap(&net, "erin").await;

    // Not bought: a plain message, no player.
    d.send(Message::Catalogue(catalogue::Message::Watch("dear".into())))
        .await;
    assert_eq!(
        catalogue_of(&d).error.as_deref(),
        Some("Buy \"Movie dear\" before watching it.")
    );

    d.send(Message::Catalogue(catalogue::Message::Watch(
        "cheap".into(),
    )))
    .await;
    assert!(playing(&d).is_some());
    play_until_the_clock_moves(&mut d).await;
    // The live panel, fed by the app's subscription to the viewer's status: bytes came in,
    // from the origin at least.
    let feed = d
        .app
        .viewer_feed()
        .cloned()
        .expect("the player follows the viewer");
    let status =
        iced::futures::StreamExt::next(&mut Box::pin(rivulet_app::engine::viewer_status(&feed)))
            .await
            .expect("the viewer's status");
    d.send(Message::Node(status)).await;
    let Screen::Player(p) = &d.app.screen else {
        unreachable!()
    };
    assert!(p.viewer.from_origin_bytes + p.viewer.from_caches_bytes > 0);
    assert!(p.viewer.segments > 0);

    // Seek ahead into a part not played yet: the clock follows and frames keep coming.
    let before = playing(&d).unwrap().1;
    d.send(Message::Player(player::Message::SeekMoved(9.0)))
        .await;
    d.send(Message::Player(player::Message::SeekReleased)).await;
    let jumped = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            d.send(Message::Player(player::Message::Tick)).await;
            if let Screen::Player(p) = &d.app.screen
                && p.time >= 8.5
                && p.frames_rendered() > before + 5
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(jumped.is_ok(), "the seek did not land: {:?}", playing(&d));

    // The audio track list comes from mpv; volume and fullscreen are asked of mpv and the
    // window.
    let audio = match &d.app.screen {
        Screen::Player(p) => p.audio_tracks().to_vec(),
        _ => unreachable!(),
    };
    assert!(!audio.is_empty(), "mpv lists the audio track");
    d.send(Message::Player(player::Message::AudioPicked(
        audio[0].clone(),
    )))
    .await;
    d.send(Message::Player(player::Message::Volume(30.0))).await;
    d.send(Message::Player(player::Message::ToggleFullscreen))
        .await;
    let Screen::Player(p) = &d.app.screen else {
        unreachable!()
    };
    assert!(p.volume == 30.0 && p.fullscreen);
    assert!(
        sees(&d, "Window"),
        "the fullscreen button turns into Window"
    );

    // Pause holds the clock.
    d.send(Message::Player(player::Message::TogglePause)).await;
    assert!(sees(&d, "Play"));

    // Nothing playable is on disk, during playback or after: no file under the app's
    // folders starts with Matroska's magic, and the hidden download area is empty.
    let no_movie_on_disk = |d: &Driver, net: &LocalNetwork| {
        for dir in [d.dir.path().to_owned(), common::isolate()] {
            for entry in walk(&dir) {
                let head = std::fs::read(&entry)
                    .map(|b| b.get(..4).map(<[u8]>::to_vec))
                    .unwrap_or_default();
                assert_ne!(
                    head.as_deref(),
                    Some(&[0x1A, 0x45, 0xDF, 0xA3][..]),
                    "{} is a playable movie",
                    entry.display()
                );
            }
        }
        // Nor behind the process's open files (but the tracker's own, which this test
        // process runs too): the stream's unlinked file is sealed.
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(net.dir())) {
                continue;
            }
            let mut head = [0u8; 4];
            let read = std::fs::File::open(fd.path())
                .and_then(|mut f| {
                    if f.metadata()?.is_file() {
                        std::io::Read::read_exact(&mut f, &mut head)
                    } else {
                        Ok(())
                    }
                })
                .is_ok();
            assert!(
                !(read && head == [0x1A, 0x45, 0xDF, 0xA3]),
                "{:?} behind fd {} is a playable movie",
                std::fs::read_link(fd.path()),
                fd.path().display()
            );
        }
        let downloads = rivulet_app::environment::downloads_dir();
        assert!(
            walk(&downloads).is_empty(),
            "{} holds {:?}",
            downloads.display(),
            walk(&downloads)
        );
    };
    no_movie_on_disk(&d, &net);
    // A leftover from an older version, eight days old: closing the movie cleans it.
    let downloads = rivulet_app::environment::downloads_dir();
    let leftover = downloads.join("old.mkv");
    std::fs::write(&leftover, b"old").unwrap();
    age(&leftover, Duration::from_secs(8 * 24 * 3600));
    // Back to the catalogue; closing stops the engine gracefully.
    d.send(Message::Player(player::Message::Back)).await;
    assert!(
        !leftover.exists(),
        "closing the movie cleans the download area"
    );
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    no_movie_on_disk(&d, &net);
    d.close().await;
}

/// The next change of the session's link, as the app's subscription would deliver it.
async fn next_link_change(
    changes: &mut std::pin::Pin<Box<impl iced::futures::Stream<Item = Message>>>,
) -> Message {
    tokio::time::timeout(
        Duration::from_secs(15),
        iced::futures::StreamExt::next(changes),
    )
    .await
    .expect("the link changed within 15 s")
    .expect("the link is followed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_tracker_shows_a_banner_that_goes_when_it_is_back() {
    let mut net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("ivy", PASSWORD).await.unwrap();
    let url = net.url();
    let mut d = Driver::new(false).await;
    d.log_in(&url, "ivy", PASSWORD).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    let feed = d
        .app
        .link_feed()
        .cloned()
        .expect("the link is followed while logged in");
    let mut changes = Box::pin(rivulet_app::app::link_changes(&feed));

    net.stop_tracker().await;
    // The user goes back to the catalogue: its call finds no tracker.
    d.send(Message::OpenCatalogue).await;
    assert!(catalogue_of(&d).error.is_some());
    let change = next_link_change(&mut changes).await;
    d.send(change).await;
    let (since, error) = d.app.tracker_down.clone().expect("the tracker is down");
    let banner = rivulet_app::app::tracker_down_sentence(&url, since, &error);
    assert!(banner.contains("cannot be reached"));
    assert!(sees(&d, &banner), "the banner shows");
    assert!(d.app.session.is_some(), "still logged in");
    // Still down: the probe the app sends every few seconds changes nothing.
    d.send(Message::Probe).await;
    assert!(d.app.tracker_down.is_some());

    net.start_tracker().await.unwrap();
    d.send(Message::Probe).await;
    let change = next_link_change(&mut changes).await;
    d.send(change).await;
    assert!(d.app.tracker_down.is_none());
    assert!(!sees(&d, &banner), "the banner goes");
    let catalogue = catalogue_of(&d);
    assert!(
        catalogue.error.is_none(),
        "the catalogue loads again: {:?}",
        catalogue.error
    );
    assert!(
        catalogue.videos.iter().any(|v| v.id == "cheap"),
        "its movies show"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_the_tracker_will_not_renew_returns_to_log_in_with_the_name() {
    let net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("jay", PASSWORD).await.unwrap();
    let mut d = Driver::new(false).await;
    d.log_in(&net.url(), "jay", PASSWORD).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    let feed = d.app.link_feed().cloned().expect("followed");
    let mut changes = Box::pin(rivulet_app::app::link_changes(&feed));
    // The password changed elsewhere and the session expired: the kept session cannot be
    // renewed.
    let new_password = "another-pass-2";
    net.set_password("jay", new_password).await.unwrap();
    net.expire_sessions().await.unwrap();
    d.send(Message::OpenCatalogue).await;
    let change = next_link_change(&mut changes).await;
    d.send(change).await;
    let Screen::Login(login) = &d.app.screen else {
        panic!("not the log-in screen: {:?}", d.app.screen);
    };
    assert_eq!(login.username, "jay");
    assert!(
        login
            .error
            .as_deref()
            .is_some_and(|e| e.contains("session has ended")),
        "{:?}",
        login.error
    );
    assert!(d.app.session.is_none() && d.app.link_feed().is_none());
    // The new password logs in from there.
    d.log_in(&net.url(), "jay", new_password).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    net.shutdown().await;
}

/// Sets `path`'s modification time `ago` in the past.
fn age(path: &std::path::Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_app_holds_the_download_area_to_its_age_and_size_at_start_and_while_running() {
    common::isolate();
    let downloads = rivulet_app::environment::downloads_dir();
    std::fs::create_dir_all(&downloads).unwrap();
    // Sparse files: their length counts toward the cap, without the disk.
    let file = |name: &str, len: u64, ago: Duration| {
        let path = downloads.join(name);
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        age(&path, ago);
        path
    };
    let cap = rivulet_node_core::viewer::DOWNLOAD_MAX_BYTES;
    let week = Duration::from_secs(8 * 24 * 3600);
    let old = file("old.mkv", 10, week);
    let big_older = file("big-older.mkv", cap / 2 + 1, Duration::from_secs(7200));
    let big_newer = file("big-newer.mkv", cap / 2 + 1, Duration::from_secs(3600));
    let small = file("small.mkv", 1000, Duration::from_secs(60));
    let mut d = Driver::new(false).await;
    let cleaned = tokio::time::timeout(Duration::from_secs(10), async {
        while old.exists() || big_older.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(cleaned.is_ok(), "the start did not clean the download area");
    assert!(
        big_newer.exists() && small.exists(),
        "what fits the cap stays"
    );
    // While it runs: the periodic clean-up holds it again.
    let again = file("again.mkv", cap, Duration::from_secs(1));
    d.send(Message::CleanDownloads).await;
    assert!(again.exists(), "the newest file stays however big");
    assert!(
        !big_newer.exists() && !small.exists(),
        "older files beyond the cap go"
    );
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_log_in_asks_before_any_cache_starts_and_applies_the_choices() {
    let net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("hal", PASSWORD).await.unwrap();
    // As on a new installation: the set-up has not been done, the limits are the defaults.
    let mut d = Driver::with_settings(true, |s| {
        s.set_up = false;
        s.storage = rivulet_app::settings::Limit::default();
        s.upload = rivulet_app::settings::Limit::default();
    })
    .await;
    let path = d.dir.path().join("settings.json");
    d.log_in(&net.url(), "hal", PASSWORD).await;
    assert!(
        matches!(d.app.screen, Screen::FirstRun(_)),
        "{:?}",
        d.app.screen
    );
    assert!(sees(&d, "Before you watch"));
    assert!(sees(&d, "Share: run a cache"));
    // Nothing runs as a cache while the user decides.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tracker = net.login("hal", PASSWORD).await.unwrap();
    assert!(
        tracker.my_nodes().await.unwrap().is_empty(),
        "a node before the set-up"
    );
    assert!(d.app.cache.is_none());

    // A bad port is said plainly; then 0.2× storage and 0.5× upload start the cache so.
    for m in [
        first_run::Message::Storage(0.2),
        first_run::Message::Upload(0.5),
        first_run::Message::ListenPort("80".into()),
        first_run::Message::Start,
    ] {
        d.send(Message::FirstRun(m)).await;
    }
    assert!(sees(
        &d,
        "The cache port must be from 1024 to 65535, not 80."
    ));
    for m in [
        first_run::Message::ListenPort("0".into()),
        first_run::Message::Start,
    ] {
        d.send(Message::FirstRun(m)).await;
    }
    assert!(
        matches!(d.app.screen, Screen::FirstRun(_)),
        "port 0 is refused too"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .max(1024);
    for m in [
        first_run::Message::ListenPort(port.to_string()),
        first_run::Message::Start,
    ] {
        d.send(Message::FirstRun(m)).await;
    }
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    assert!(
        d.until(Duration::from_secs(30), |app| app
            .cache
            .as_ref()
            .is_some_and(
                |c| c.storage_bytes == 300_000_000 && c.upload_bps == 5_000_000
            ))
        .await,
        "the cache runs with other limits: {:?}",
        d.app.cache
    );
    let saved = rivulet_app::settings::Settings::load(&path).0;
    assert!(saved.set_up && saved.share);
    assert_eq!(
        (saved.storage_bytes(), saved.upload_bps()),
        (300_000_000, 5_000_000)
    );
    assert_eq!(saved.listen_port, port);

    // The next log-in goes straight to the catalogue.
    for m in click(&d, "Log out") {
        d.send(m).await;
    }
    d.log_in(&net.url(), "hal", PASSWORD).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_only_stops_the_cache_and_registers_none_until_sharing_is_back() {
    let net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("gil", PASSWORD).await.unwrap();
    let mut d = Driver::new(true).await;
    d.log_in(&net.url(), "gil", PASSWORD).await;
    let cache_up =
        |app: &rivulet_app::app::App| app.cache.as_ref().is_some_and(|c| !c.node_id.is_empty());
    assert!(
        d.until(Duration::from_secs(30), cache_up).await,
        "no cache at first"
    );
    let tracker = net.login("gil", PASSWORD).await.unwrap();
    let caches = |tracker: rivulet_tracker_client::TrackerClient| async move {
        tracker
            .my_nodes()
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.kind == rivulet_tracker_client::NodeKind::Cache)
            .count()
    };
    assert_eq!(caches(tracker.clone()).await, 1);

    // Watch only: the cache stops and leaves the tracker; the bar says so.
    d.send(Message::OpenSettings).await;
    for m in [settings::Message::Share(false), settings::Message::Apply] {
        d.send(Message::Pane(m)).await;
    }
    assert!(d.app.cache.is_none());
    assert!(sees(&d, "watch only: no cache"));
    assert!(
        rivulet_e2e::eventually(Duration::from_secs(15), || {
            let tracker = tracker.clone();
            async move { caches(tracker).await == 0 }
        })
        .await,
        "the tracker still lists a cache of gil"
    );
    let saved = rivulet_app::settings::Settings::load(&d.dir.path().join("settings.json")).0;
    assert!(!saved.share, "watch only is saved");
    // Logging in again keeps it watch only.
    for m in click(&d, "Log out") {
        d.send(m).await;
    }
    d.log_in(&net.url(), "gil", PASSWORD).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        caches(tracker.clone()).await,
        0,
        "a cache registered while watch only"
    );

    // Sharing again starts the cache.
    d.send(Message::OpenSettings).await;
    for m in [settings::Message::Share(true), settings::Message::Apply] {
        d.send(Message::Pane(m)).await;
    }
    assert!(
        d.until(Duration::from_secs(30), cache_up).await,
        "sharing did not restart the cache"
    );
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settings_change_reaches_the_running_cache() {
    let net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("fred", PASSWORD).await.unwrap();
    let mut d = Driver::new(true).await;
    d.log_in(&net.url(), "fred", PASSWORD).await;
    assert!(
        d.until(Duration::from_secs(30), |app| app
            .cache
            .as_ref()
            .is_some_and(|c| !c.node_id.is_empty()))
            .await,
        "the app's cache never started: {:?}",
        d.app.notice
    );
    assert_eq!(d.app.cache.as_ref().unwrap().storage_bytes, 200_000_000);

    d.send(Message::OpenSettings).await;
    for m in [
        settings::Message::StorageMultiplier(0.2),
        settings::Message::UploadCustom("oops".into()),
        settings::Message::Apply,
    ] {
        d.send(Message::Pane(m)).await;
    }
    let pane = d.app.pane.as_ref().unwrap();
    assert_eq!(
        pane.error.as_deref(),
        Some("The upload in Mbit/s must be a positive number, not \"oops\".")
    );
    for m in [
        settings::Message::UploadCustom("".into()),
        settings::Message::UploadMultiplier(0.5),
        settings::Message::Apply,
    ] {
        d.send(Message::Pane(m)).await;
    }
    assert!(
        d.until(Duration::from_secs(10), |app| app
            .cache
            .as_ref()
            .is_some_and(|c| {
                c.storage_bytes == 300_000_000 && c.upload_bps == 5_000_000
            }))
        .await,
        "the cache kept {:?}",
        d.app.cache
    );
    // The pane shows what the running cache reports; the file has the new values.
    assert!(sees(&d, "Upload: 5.0 Mbit/s"));
    let saved = rivulet_app::settings::Settings::load(&d.dir.path().join("settings.json")).0;
    assert_eq!(saved.storage_bytes(), 300_000_000);
    assert_eq!(saved.upload_bps(), 5_000_000);
    // The tracker knows the new limits.
    let client = net.login("fred", PASSWORD).await.unwrap();
    assert!(
        rivulet_e2e::eventually(Duration::from_secs(15), || {
            let client = client.clone();
            async move {
                client
                    .my_nodes()
                    .await
                    .is_ok_and(|n| n.iter().any(|n| n.storage_bytes == 300_000_000))
            }
        })
        .await
    );
    // A new cache folder restarts the cache there (a relative one is refused first).
    let old_node = d.app.cache.as_ref().unwrap().node_id.clone();
    let moved = d.dir.path().join("moved-cache");
    for m in [
        settings::Message::CacheDir("relative/cache".into()),
        settings::Message::Apply,
    ] {
        d.send(Message::Pane(m)).await;
    }
    assert_eq!(
        d.app.pane.as_ref().unwrap().error.as_deref(),
        Some("The cache folder must be an absolute path, not \"relative/cache\".")
    );
    for m in [
        settings::Message::CacheDir(moved.display().to_string()),
        settings::Message::Apply,
    ] {
        d.send(Message::Pane(m)).await;
    }
    assert!(
        d.until(Duration::from_secs(20), |app| app
            .cache
            .as_ref()
            .is_some_and(|c| !c.node_id.is_empty() && c.node_id != old_node))
            .await,
        "the cache did not restart in the new folder: {:?}",
        d.app.notice
    );
    assert!(moved.exists(), "the new cache folder was not created");
    assert_eq!(d.app.cache.as_ref().unwrap().storage_bytes, 300_000_000);
    d.close().await;
    // Closing told the tracker: the cache is gone from the account's nodes.
    assert!(
        rivulet_e2e::eventually(Duration::from_secs(5), || {
            let client = client.clone();
            async move { client.my_nodes().await.is_ok_and(|n| n.is_empty()) }
        })
        .await
    );
}

/// The settings file's download limit.
fn saved_download(d: &Driver) -> DownloadLimit {
    rivulet_app::settings::Settings::load(&d.dir.path().join("settings.json"))
        .0
        .download
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_run_shows_the_download_limit_and_the_cache_starts_with_the_choice() {
    let net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("dora", PASSWORD).await.unwrap();
    let mut d = Driver::with_settings(true, |s| s.set_up = false).await;
    d.log_in(&net.url(), "dora", PASSWORD).await;
    assert!(
        matches!(d.app.screen, Screen::FirstRun(_)),
        "{:?}",
        d.app.screen
    );
    // The default is said, not assumed.
    assert!(sees(&d, "Download for the cache: unlimited"));
    for m in click(&d, "25 Mbit/s") {
        d.send(m).await;
    }
    assert!(sees(&d, "Download for the cache: 25 Mbit/s"));
    // A custom limit that is not a rate is said once and changes nothing.
    for m in [
        first_run::Message::DownloadCustom("fast".into()),
        first_run::Message::Start,
    ] {
        d.send(Message::FirstRun(m)).await;
    }
    let refused = "The download limit must be a positive number of Mbit/s, not \"fast\".";
    assert!(sees(&d, refused));
    let Screen::FirstRun(state) = &d.app.screen else {
        panic!("left the set-up on a bad limit: {:?}", d.app.screen);
    };
    assert_eq!(state.draft.download, DownloadLimit::Capped(25_000_000));
    assert_eq!(saved_download(&d), DownloadLimit::Unlimited);
    assert!(d.app.cache.is_none());
    // A custom 12.5 Mbit/s is saved and the cache starts held to it.
    for m in [
        first_run::Message::DownloadCustom("12.5".into()),
        first_run::Message::Start,
    ] {
        d.send(Message::FirstRun(m)).await;
    }
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    assert!(
        d.until(Duration::from_secs(30), |app| app
            .cache
            .as_ref()
            .is_some_and(
                |c| !c.node_id.is_empty() && c.download_bps == 12_500_000
            ))
        .await,
        "the cache runs with another download limit: {:?}",
        d.app.cache
    );
    assert_eq!(saved_download(&d), DownloadLimit::Capped(12_500_000));
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_limit_set_in_settings_reaches_the_running_cache() {
    let net = LocalNetwork::temp().movie(cheap()).start().await.unwrap();
    net.register("milo", PASSWORD).await.unwrap();
    let mut d = Driver::new(true).await;
    d.log_in(&net.url(), "milo", PASSWORD).await;
    let limit_is = |bps: u64| {
        move |app: &rivulet_app::app::App| {
            app.cache
                .as_ref()
                .is_some_and(|c| !c.node_id.is_empty() && c.download_bps == bps)
        }
    };
    assert!(
        d.until(Duration::from_secs(30), limit_is(0)).await,
        "no unlimited cache at first: {:?}",
        d.app.cache
    );

    d.send(Message::OpenSettings).await;
    assert!(sees(&d, "Download: unlimited"));
    // Zero is not a limit: said once, nothing changes.
    for m in [
        settings::Message::DownloadCustom("0".into()),
        settings::Message::Apply,
    ] {
        d.send(Message::Pane(m)).await;
    }
    let pane = d.app.pane.as_ref().unwrap();
    assert_eq!(
        pane.error.as_deref(),
        Some("The download limit must be a positive number of Mbit/s, not \"0\".")
    );
    assert_eq!(pane.draft.download, DownloadLimit::Unlimited);
    assert_eq!(saved_download(&d), DownloadLimit::Unlimited);
    assert_eq!(d.app.cache.as_ref().unwrap().download_bps, 0);

    // 2.5 Mbit/s reaches the running cache (the same one: no restart) and the file.
    let node = d.app.cache.as_ref().unwrap().node_id.clone();
    for m in [
        settings::Message::DownloadCustom("2.5".into()),
        settings::Message::Apply,
    ] {
        d.send(Message::Pane(m)).await;
    }
    assert!(
        d.until(Duration::from_secs(10), limit_is(2_500_000)).await,
        "the cache kept {:?}",
        d.app.cache
    );
    assert_eq!(d.app.cache.as_ref().unwrap().node_id, node);
    assert_eq!(d.app.pane.as_ref().unwrap().error, None);
    assert!(sees(&d, "Download: 2.5 Mbit/s"));
    assert_eq!(saved_download(&d), DownloadLimit::Capped(2_500_000));

    // Back to unlimited with its button.
    for m in click(&d, "Unlimited") {
        d.send(m).await;
    }
    d.send(Message::Pane(settings::Message::Apply)).await;
    assert!(
        d.until(Duration::from_secs(10), limit_is(0)).await,
        "the cache kept {:?}",
        d.app.cache
    );
    assert_eq!(saved_download(&d), DownloadLimit::Unlimited);
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_points_screen_follows_the_cache_uploads() {
    let net = LocalNetwork::temp()
        .movie(cheap())
        .configure(|c| {
            c.placement_interval = Duration::from_millis(300);
            c.bytes_per_point = 10_000;
        })
        .start()
        .await
        .unwrap();
    net.register("gina", PASSWORD).await.unwrap();
    net.register("hugo", PASSWORD).await.unwrap();
    let mut d = Driver::new(true).await;
    d.log_in(&net.url(), "gina", PASSWORD).await;
    d.send(Message::OpenPoints).await;
    let Screen::Points(p) = &d.app.screen else {
        panic!("expected the points screen")
    };
    assert_eq!(p.account.credited_bytes, 0);
    let start = p.account.balance;

    // Hugo buys the movie: placement gives gina's cache chunks of it, which it fetches.
    net.login("hugo", PASSWORD)
        .await
        .unwrap()
        .buy("cheap")
        .await
        .unwrap();
    assert!(
        d.until(Duration::from_secs(30), |app| app
            .cache
            .as_ref()
            .is_some_and(|c| c.used_bytes > 0 && !c.holdings.is_empty()))
            .await,
        "the cache never held anything: {:?}",
        d.app.cache
    );
    // Another round so that hugo's peer set includes the cache.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = d.dir.path().join("hugo.mkv");
    let report = rivulet_node_core::headless::watch(
        &net.url(),
        "hugo",
        PASSWORD,
        "cheap",
        &out,
        &rivulet_node_core::viewer::WatchOptions::default(),
        false,
    )
    .await
    .unwrap();
    assert!(report.from_caches_bytes > 0, "{report:?}");

    // The screen refreshes (as its timer does) until the credit shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        d.send(Message::Points(points::Message::Refresh)).await;
        let Screen::Points(p) = &d.app.screen else {
            panic!("left the points screen")
        };
        // Earnings over time come from the tracker's credit history: all of this account's
        // points were earned within the hour, in the newest buckets.
        if p.account.credited_bytes > 0
            && p.account.balance > start
            && p.span_totals() == (p.account.balance - start, p.account.credited_bytes)
        {
            let e = p.earnings.as_ref().unwrap();
            assert_eq!(e.buckets.len(), 60);
            assert!(e.buckets.iter().rev().take(2).any(|b| b.credited_bytes > 0));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no credit: {:?}",
            p.account
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let Screen::Points(p) = &d.app.screen else {
        unreachable!()
    };
    let (earned, credited) = p.span_totals();
    assert!(sees(
        &d,
        &format!(
            "Earned {earned} points ({} credited) in the last hour",
            rivulet_app::screen::bytes(credited)
        )
    ));
    // Another span, through a real click: the day's chart holds the same earnings.
    for m in click(&d, "Day") {
        d.send(m).await;
    }
    let Screen::Points(p) = &d.app.screen else {
        unreachable!()
    };
    assert_eq!(p.span, points::Span::Day);
    assert_eq!(p.earnings.as_ref().map(|e| e.buckets.len()), Some(48));
    assert_eq!(p.span_totals(), (earned, credited));
    assert!(sees(
        &d,
        &format!(
            "Earned {earned} points ({} credited) in the last day",
            rivulet_app::screen::bytes(credited)
        )
    ));

    // "Serving now" shows what the cache sent, as the engine reports it.
    assert!(
        d.until(Duration::from_secs(15), |app| match &app.screen {
            Screen::Points(p) => p.cache.as_ref().is_some_and(|c| c.sent_bytes > 0),
            _ => false,
        })
        .await,
        "the points screen never showed bytes sent: {:?}",
        d.app.cache
    );
    assert!(sees(&d, "Serving now"));
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_me_without_a_keyring_says_so_and_writes_no_password() {
    let net = LocalNetwork::temp().start().await.unwrap();
    net.register("ivan", PASSWORD).await.unwrap();
    let mut d = Driver::new(false).await;
    // No Secret Service here (no session bus): the app must say it did not remember.
    // SAFETY: this test process reads the variable only through the keyring below.
    unsafe { std::env::remove_var("DBUS_SESSION_BUS_ADDRESS") };
    d.send(Message::Login(
        rivulet_app::screen::login::Message::Remember(true),
    ))
    .await;
    d.log_in(&net.url(), "ivan", PASSWORD).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    let notice = d.app.notice.clone().unwrap_or_default();
    assert!(notice.contains("not remembered"), "{notice:?}");
    assert!(sees(&d, &notice));
    // Nothing under the app's folders holds the password.
    for dir in [d.dir.path().to_owned(), common::isolate()] {
        for entry in walk(&dir) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !bytes
                    .windows(PASSWORD.len())
                    .any(|w| w == PASSWORD.as_bytes()),
                "{} holds the password",
                entry.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_its_caches_warming_before_it_plays() {
    let home = common::isolate();
    let (mut app, _) = rivulet_app::app::App::new(
        rivulet_app::link::Launch {
            demo: true,
            watch: None,
        },
        home.join("demo-settings.json"),
    );
    assert!(matches!(app.screen, Screen::Starting(_)));
    let _ = app.update(Message::Node(rivulet_app::engine::NodeEvent::DemoWarming {
        held: 7,
        k: 20,
    }));
    assert_eq!(app.warming, Some((7, 20)));
    let Screen::Starting(sentence) = &app.screen else {
        panic!("expected the starting screen, got {:?}", app.screen)
    };
    assert!(
        sentence.starts_with("Preparing the demo network…"),
        "{sentence}"
    );
    assert!(
        simulator(app.view())
            .find(
                "Preparing the demo network… its caches hold 7 of the 20 chunks of each segment the player needs"
            )
            .is_ok()
    );
}

/// A 6 s movie with two audio tracks (English 440 Hz, French 880 Hz) and an English
/// subtitle track, made by ffmpeg.
fn make_movie_with_tracks(dir: &std::path::Path) -> std::path::PathBuf {
    let srt = dir.join("subs.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,000 --> 00:00:03,000\nHello from the first subtitle\n\n\
         2\n00:00:03,000 --> 00:00:06,000\nAnd the second one\n",
    )
    .unwrap();
    let out = dir.join("tracks.mkv");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=6",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=6"])
        .args(["-f", "lavfi", "-i", "sine=frequency=880:duration=6"])
        .arg("-i")
        .arg(&srt)
        .args(["-map", "0", "-map", "1", "-map", "2", "-map", "3"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-c:a", "aac", "-c:s", "srt"])
        .args([
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:0",
            "title=English",
        ])
        .args([
            "-metadata:s:a:1",
            "language=fra",
            "-metadata:s:a:1",
            "title=French",
        ])
        .args([
            "-metadata:s:s:0",
            "language=eng",
            "-metadata:s:s:0",
            "title=Captions",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the movie");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_player_lists_and_switches_audio_and_subtitle_tracks() {
    // A real tracker whose one movie has two audio tracks and a subtitle track: the tracks
    // go through ingest, the network and the viewer to mpv.
    let work = tempfile::tempdir().unwrap();
    let movie = make_movie_with_tracks(work.path());
    let net = LocalNetwork::temp()
        .movie(
            MovieSpec::file("tracks", movie)
                .title("Two voices")
                .price(10),
        )
        .account("lena", PASSWORD)
        .start()
        .await
        .unwrap();
    let url = net.url();
    net.login("lena", PASSWORD)
        .await
        .unwrap()
        .buy("tracks")
        .await
        .unwrap();

    let mut d = Driver::new(true).await;
    d.log_in(&url, "lena", PASSWORD).await;
    d.send(Message::Catalogue(catalogue::Message::Watch(
        "tracks".into(),
    )))
    .await;
    let player = |d: &Driver| match &d.app.screen {
        Screen::Player(p) => (
            p.audio_tracks().to_vec(),
            p.sub_tracks().to_vec(),
            p.frames_rendered(),
            p.phase.clone(),
        ),
        other => panic!("expected the player, got {other:?}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (audio, subs) = loop {
        while let Some(e) = d.events.as_mut().and_then(|events| events.try_recv().ok()) {
            d.send(Message::Node(e)).await;
        }
        d.send(Message::Player(player::Message::Tick)).await;
        let (audio, subs, frames, phase) = player(&d);
        assert!(!matches!(phase, player::Phase::Failed(_)), "{phase:?}");
        if audio.len() == 2 && frames > 0 {
            break (audio, subs);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mpv never listed the tracks: {audio:?} {subs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The lists as mpv read them from the stream, with their languages and titles.
    assert!(
        audio[0].label.contains("eng") && audio[0].label.contains("English"),
        "{audio:?}"
    );
    assert!(
        audio[1].label.contains("fra") && audio[1].label.contains("French"),
        "{audio:?}"
    );
    assert_eq!(subs.len(), 2, "no subtitles + the captions: {subs:?}");
    assert_eq!(subs[0].label, "no subtitles");
    assert!(subs[1].label.contains("Captions"), "{subs:?}");
    let mpv = |d: &Driver, property: &str| match &d.app.screen {
        Screen::Player(p) => p.playing_track(property),
        _ => None,
    };
    assert_eq!(mpv(&d, "aid").as_deref(), Some("1"));

    // Picking from the lists sets mpv's aid and sid.
    d.send(Message::Player(player::Message::AudioPicked(
        audio[1].clone(),
    )))
    .await;
    assert_eq!(mpv(&d, "aid"), Some(audio[1].id.to_string()));
    d.send(Message::Player(player::Message::SubPicked(subs[1].clone())))
        .await;
    assert_eq!(mpv(&d, "sid"), Some(subs[1].id.to_string()));
    d.send(Message::Player(player::Message::SubPicked(subs[0].clone())))
        .await;
    assert_eq!(mpv(&d, "sid").as_deref(), Some("no"));
    d.send(Message::Player(player::Message::AudioPicked(
        audio[0].clone(),
    )))
    .await;
    assert_eq!(mpv(&d, "aid"), Some(audio[0].id.to_string()));
    d.close().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_sharing_on_close_is_asked_on_the_first_run_and_changed_in_the_pane() {
    let net = LocalNetwork::temp().start().await.unwrap();
    net.register("ivy", PASSWORD).await.unwrap();
    let mut d = Driver::with_settings(false, |s| s.set_up = false).await;
    d.log_in(&net.url(), "ivy", PASSWORD).await;
    let label = first_run::KEEP_SHARING_LABEL;
    let Screen::FirstRun(state) = &d.app.screen else {
        panic!("expected the set-up, got {:?}", d.app.screen);
    };
    // On unless unticked, and only asked while sharing.
    assert!(state.draft.keep_sharing_on_close);
    assert!(sees(&d, label));
    d.send(Message::FirstRun(first_run::Message::Share(false)))
        .await;
    assert!(!sees(&d, label), "asked in watch-only mode");
    d.send(Message::FirstRun(first_run::Message::Share(true)))
        .await;
    // Unticked through a click; "Start" saves it.
    for m in click(&d, label) {
        d.send(m).await;
    }
    d.send(Message::FirstRun(first_run::Message::Start)).await;
    assert!(matches!(d.app.screen, Screen::Catalogue(_)));
    let saved = |d: &Driver| {
        rivulet_app::settings::Settings::load(&d.dir.path().join("settings.json"))
            .0
            .keep_sharing_on_close
    };
    assert!(!saved(&d));
    assert!(d.app.tray_feed().is_none(), "a tray icon nobody asked for");

    // The pane ticks it again; the tray is wanted from then on.
    d.send(Message::OpenSettings).await;
    for m in click(&d, label) {
        d.send(m).await;
    }
    d.send(Message::Pane(settings::Message::Apply)).await;
    assert!(saved(&d));
    assert!(d.app.settings.keep_sharing_on_close);
    assert!(d.app.tray_feed().is_some());
    // No tray on this desktop: the pane says what closing does instead.
    d.send(Message::Tray(TrayEvent::Unavailable(
        "no session bus".into(),
    )))
    .await;
    assert!(sees(&d, NO_TRAY));
    // Turned off again: no icon runs, and what the last one said is forgotten.
    for m in click(&d, label) {
        d.send(m).await;
    }
    d.send(Message::Pane(settings::Message::Apply)).await;
    assert!(d.app.tray_feed().is_none());
    assert_eq!(d.app.tray, rivulet_app::tray::TrayState::Unknown);
    assert!(!saved(&d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_the_window_keeps_sharing_with_a_tray_and_quits_without_one() {
    let net = LocalNetwork::temp()
        .movie(cheap())
        .configure(|c| c.placement_interval = Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    net.register("tess", PASSWORD).await.unwrap();
    net.register("hugo", PASSWORD).await.unwrap();
    let mut d = Driver::new(true).await;
    d.log_in(&net.url(), "tess", PASSWORD).await;
    let cache_up =
        |app: &rivulet_app::app::App| app.cache.as_ref().is_some_and(|c| !c.node_id.is_empty());
    assert!(d.until(Duration::from_secs(30), cache_up).await, "no cache");
    let tracker = net.login("tess", PASSWORD).await.unwrap();
    let caches = |tracker: rivulet_tracker_client::TrackerClient| async move {
        tracker
            .my_nodes()
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.kind == rivulet_tracker_client::NodeKind::Cache)
            .count()
    };
    let caches_become = |n: usize| {
        let tracker = tracker.clone();
        rivulet_e2e::eventually(Duration::from_secs(15), move || {
            let tracker = tracker.clone();
            async move { caches(tracker).await == n }
        })
    };

    // With a tray showing the icon, closing the window leaves the app running: no window,
    // the engine not stopped, the cache still registered.
    d.send(Message::Tray(TrayEvent::Shown)).await;
    d.send(Message::CloseRequested).await;
    assert!(d.app.in_tray && !d.app.closing);
    assert!(
        !d.until(Duration::from_secs(2), |app| app.node.is_none())
            .await,
        "the engine stopped"
    );
    assert_eq!(caches(tracker.clone()).await, 1);

    // And it serves: hugo buys the movie, placement gives the cache chunks of it, and hugo's
    // viewer gets bytes from it (the only cache) while the window is closed.
    net.login("hugo", PASSWORD)
        .await
        .unwrap()
        .buy("cheap")
        .await
        .unwrap();
    assert!(
        d.until(Duration::from_secs(30), |app| app
            .cache
            .as_ref()
            .is_some_and(|c| c.used_bytes > 0 && !c.holdings.is_empty()))
            .await,
        "the cache never held anything: {:?}",
        d.app.cache
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let report = rivulet_node_core::headless::watch(
        &net.url(),
        "hugo",
        PASSWORD,
        "cheap",
        &d.dir.path().join("hugo.mkv"),
        &rivulet_node_core::viewer::WatchOptions::default(),
        false,
    )
    .await
    .unwrap();
    assert!(report.from_caches_bytes > 0, "{report:?}");
    assert!(
        d.until(Duration::from_secs(15), |app| app
            .cache
            .as_ref()
            .is_some_and(|c| c.sent_bytes > 0))
            .await,
        "the cache reports nothing sent: {:?}",
        d.app.cache
    );
    assert!(d.app.in_tray);

    // "Open" brings the window back; "Pause sharing" stops the cache (the tracker sees it
    // leave) and the bar says so; "Resume sharing" starts it again.
    d.send(Message::Tray(TrayEvent::Action(TrayAction::Open)))
        .await;
    assert!(!d.app.in_tray);
    d.send(Message::Tray(TrayEvent::Action(TrayAction::PauseSharing)))
        .await;
    assert!(d.app.sharing_paused && d.app.cache.is_none());
    assert!(sees(&d, "sharing paused"));
    assert!(caches_become(0).await, "the paused cache is still listed");
    d.send(Message::Tray(TrayEvent::Action(TrayAction::ResumeSharing)))
        .await;
    assert!(
        d.until(Duration::from_secs(30), cache_up).await,
        "sharing did not resume"
    );
    assert!(caches_become(1).await);

    // The tray goes away while the window is closed: the window comes back (there would be
    // no way to it otherwise) and the app says, once, that closing now quits.
    d.send(Message::CloseRequested).await;
    assert!(d.app.in_tray);
    d.send(Message::Tray(TrayEvent::Unavailable(
        "the StatusNotifierWatcher left the session bus".into(),
    )))
    .await;
    assert!(!d.app.in_tray);
    assert_eq!(d.app.notice.as_deref(), Some(NO_TRAY));
    d.send(Message::OpenSettings).await;
    assert!(sees(&d, NO_TRAY));

    // Without a tray, closing is the full close: the engine stops, the cache leaves.
    d.send(Message::CloseRequested).await;
    assert!(d.app.closing && !d.app.in_tray);
    assert!(
        d.until(Duration::from_secs(20), |app| app.node.is_none())
            .await,
        "the engine did not stop"
    );
    assert!(
        caches_become(0).await,
        "the cache did not leave the tracker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_to_the_tray_while_a_movie_plays_stops_it_and_keeps_its_place() {
    let net = two_movies().await;
    let mut d = owner_of_cheap(&net, "rae").await;
    assert!(
        d.until(Duration::from_secs(30), |app| app.cache.is_some())
            .await,
        "no cache"
    );
    d.send(Message::Catalogue(catalogue::Message::Watch(
        "cheap".into(),
    )))
    .await;
    play_until_the_clock_moves(&mut d).await;
    // Far enough in to be worth remembering (under 5 s is forgotten).
    d.send(Message::Player(player::Message::SeekMoved(8.0)))
        .await;
    d.send(Message::Player(player::Message::SeekReleased)).await;
    assert!(
        tick_until(&mut d, 30, |p| p.time >= 7.5).await,
        "{:?}",
        playing(&d)
    );
    let left = playing(&d).unwrap().2;

    // There is nothing to show the movie in: it stops, its place is kept, the catalogue
    // waits behind the closed window; the cache goes on.
    d.send(Message::Tray(TrayEvent::Shown)).await;
    d.send(Message::CloseRequested).await;
    assert!(d.app.in_tray && !d.app.closing);
    assert!(
        matches!(d.app.screen, Screen::Catalogue(_)),
        "{:?}",
        d.app.screen
    );
    assert!(d.app.viewer_feed().is_none(), "the viewer still runs");
    let spot = d
        .app
        .positions
        .recent(&net.url(), "rae")
        .next()
        .cloned()
        .expect("the place is kept");
    assert_eq!(spot.video, "cheap");
    assert!(spot.secs >= left - 0.01, "{spot:?} vs {left}");
    assert!(d.app.cache.is_some() && d.app.node.is_some());
    // "Open": the window again, on the catalogue with the movie to continue.
    d.send(Message::Tray(TrayEvent::Action(TrayAction::Open)))
        .await;
    assert!(!d.app.in_tray);
    assert!(sees(&d, "Continue watching"));
    d.close().await;
}
