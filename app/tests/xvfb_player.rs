//! End to end: the real `rivulet` under Xvfb plays a movie from a tracker on loopback
//! (opened by its `rivulet://watch/ID` link). Reopening the movie, from a second launch or
//! after a restart, resumes within 2 s of where it was left; while it plays and after the
//! player closes, no file the app can reach (its open descriptors, everything under its
//! folders) starts with the Matroska magic or holds any piece of the movie in clear.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::PASSWORD;
use common::real_app::{RealApp, files_under, run};
use rivulet_app::resume::Positions;
use rivulet_app::settings::{Limit, Settings};
use rivulet_localnet::{LocalNetwork, MovieSpec};

const WAIT: Duration = Duration::from_secs(60);
const MATROSKA_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// A network with a 40 s movie that ann owns, and the app's settings for ann (set up; a
/// small cache when `share`).
async fn ann_owns_a_film(home: &Path, share: bool) -> LocalNetwork {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("film", 40).price(10))
        .start()
        .await
        .unwrap();
    net.register("ann", PASSWORD).await.unwrap();
    net.login("ann", PASSWORD)
        .await
        .unwrap()
        .buy("film")
        .await
        .unwrap();
    Settings {
        tracker: net.url(),
        username: "ann".into(),
        storage: Limit::Custom(200_000_000),
        share,
        set_up: true,
        ..Settings::default()
    }
    .save(&home.join("config/settings.json"))
    .unwrap();
    net
}

/// Where the app saved that ann left the film (what the next opening resumes at).
fn left_at(home: &Path, net: &LocalNetwork) -> f64 {
    Positions::load(&home.join("config/positions.json"))
        .resume_at(&net.url(), "ann", "film")
        .expect("no place kept for the film")
}

/// Waits for the film's first frames and checks they start within 2 s of `left`; then that
/// mpv's clock runs on from there.
async fn resumes_near(app: &RealApp, left: f64) {
    let s = app
        .wait_for("the film did not open again", WAIT, |s| {
            s.screen == "player" && s.frames_shown > 0
        })
        .await;
    assert!(
        (s.time_pos - left).abs() <= 2.0,
        "left at {left:.1} s, opened again at {:.1} s: {s:?}",
        s.time_pos
    );
    let on = app
        .wait_for("the film does not play on", WAIT, |s| {
            s.time_pos >= left + 1.0
        })
        .await;
    assert!(on.time_pos <= left + 8.0, "{on:?}");
    eprintln!("left at {left:.2} s, resumed at {:.2} s", s.time_pos);
}

#[test]
fn reopening_a_movie_resumes_within_2_s_of_where_it_was_left() {
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    run(Duration::from_secs(240), async {
        // Watch only: the player's own path, with no cache beside it.
        let net = ann_owns_a_film(home.path(), false).await;
        app.launch(&["rivulet://watch/film"], Some(PASSWORD));
        app.wait_for("the film did not play to 8 s", WAIT, |s| {
            s.screen == "player" && s.frames_shown > 0 && s.time_pos >= 8.0
        })
        .await;
        // Esc leaves the player; the catalogue offers to continue the film.
        app.key("Escape");
        app.wait_for("no continue-watching row", WAIT, |s| {
            s.screen == "catalogue" && s.continue_watching == ["film"]
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.screenshot("continue-watching");
        let left = left_at(home.path(), &net);
        assert!(left >= 7.5, "{left}");

        // Opened again by its link (a second launch hands it to the running app).
        app.launch_again(&["rivulet://watch/film"]);
        resumes_near(&app, left).await;

        // Closed while playing (SIGTERM, the full close), then opened at the next start.
        let s = app
            .wait_for("the film did not play on to 14 s", WAIT, |s| {
                s.time_pos >= 14.0
            })
            .await;
        app.terminate().await;
        let left = left_at(home.path(), &net);
        assert!(left >= s.time_pos - 0.5, "kept {left}, was at {s:?}");
        app.launch(&["rivulet://watch/film"], Some(PASSWORD));
        resumes_near(&app, left).await;
        app.terminate().await;
        net.shutdown().await;
    });
}

/// 32-byte pieces of `movie` every 16 KiB (those with some variety: padding says nothing),
/// indexed by their first 8 bytes.
fn pieces_of(movie: &[u8]) -> HashMap<[u8; 8], Vec<[u8; 32]>> {
    let mut pieces: HashMap<[u8; 8], Vec<[u8; 32]>> = HashMap::new();
    for at in (64..movie.len().saturating_sub(32)).step_by(16 * 1024) {
        let piece: [u8; 32] = movie[at..at + 32].try_into().unwrap();
        let distinct: std::collections::HashSet<u8> = piece.iter().copied().collect();
        if distinct.len() >= 12 {
            pieces
                .entry(piece[..8].try_into().unwrap())
                .or_default()
                .push(piece);
        }
    }
    pieces
}

/// The first piece of the movie `bytes` holds, with where.
fn piece_in(bytes: &[u8], pieces: &HashMap<[u8; 8], Vec<[u8; 32]>>) -> Option<usize> {
    (0..bytes.len().saturating_sub(32)).find(|&i| {
        let key: [u8; 8] = bytes[i..i + 8].try_into().unwrap();
        pieces
            .get(&key)
            .is_some_and(|ps| ps.iter().any(|p| bytes[i..i + 32] == *p))
    })
}

/// What in `files` is playable or holds the movie in clear, said for the failure.
fn in_clear(files: &[PathBuf], pieces: &HashMap<[u8; 8], Vec<[u8; 32]>>) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        if bytes.starts_with(&MATROSKA_MAGIC) {
            found.push(format!("{} starts with the Matroska magic", f.display()));
        } else if let Some(at) = piece_in(&bytes, pieces) {
            found.push(format!(
                "{} holds the movie's bytes in clear at {at}",
                f.display()
            ));
        }
    }
    found
}

/// The regular files the process `pid` has open (as an attacker with the same user reads
/// them: through /proc, even when unlinked).
fn open_files(pid: u32) -> Vec<PathBuf> {
    let fds = PathBuf::from(format!("/proc/{pid}/fd"));
    std::fs::read_dir(&fds)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|fd| std::fs::metadata(fd).is_ok_and(|m| m.is_file()))
        .collect()
}

#[test]
fn no_file_holds_the_movie_in_clear_while_it_plays_or_after_the_player_closes() {
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    run(Duration::from_secs(240), async {
        // Sharing: the cache's store is under the app's folders too.
        let net = ann_owns_a_film(home.path(), true).await;
        let movie = std::fs::read(net.stream_file("film")).unwrap();
        assert!(movie.starts_with(&MATROSKA_MAGIC));
        let pieces = pieces_of(&movie);
        assert!(pieces.len() > 20, "too few pieces to look for");
        // The check finds the movie where it is in clear.
        assert_eq!(piece_in(&movie[5000..], &pieces).map(|_| ()), Some(()));

        app.launch(&["rivulet://watch/film"], Some(PASSWORD));
        app.wait_for("the film did not play to 6 s", WAIT, |s| {
            s.screen == "player" && s.frames_shown > 0 && s.time_pos >= 6.0
        })
        .await;
        let open = open_files(app.pid());
        let found = in_clear(&open, &pieces);
        assert!(found.is_empty(), "while playing: {found:#?}");
        let found = in_clear(&files_under(home.path()), &pieces);
        assert!(found.is_empty(), "while playing: {found:#?}");

        app.key("Escape");
        app.wait_for("the player did not close", WAIT, |s| {
            s.screen == "catalogue"
        })
        .await;
        // The viewer stops and the download area is cleaned as the player closes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let files = files_under(home.path());
        let found = in_clear(&files, &pieces);
        assert!(found.is_empty(), "after the player closed: {found:#?}");
        let found = in_clear(&open_files(app.pid()), &pieces);
        assert!(found.is_empty(), "after the player closed: {found:#?}");
        eprintln!(
            "checked {} open files while playing and {} files under the app's home after, {} pieces of a {} byte movie",
            open.len(),
            files.len(),
            pieces.values().map(Vec::len).sum::<usize>(),
            movie.len()
        );
        app.terminate().await;
        net.shutdown().await;
    });
}
