//! End to end under a real X server (Xvfb): `rivulet --demo` starts its embedded network,
//! logs in and plays the demo movie in the window. Asserts from the app's status file that
//! playback time advances, decoded frames reach the window and bytes come from the demo
//! caches (the demo waits for them to warm before it plays), then takes a screenshot of
//! the screen (saved under target/test-artifacts/app/) and checks it shows a picture; keys
//! pause and seek mpv; after Esc closes the player no file of the app holds the movie.

mod common;

use std::time::{Duration, Instant};

use common::clear::{MATROSKA_MAGIC, Pieces, files_under_except, in_clear, open_files_except};
use common::real_app::{RealApp, files_under, run};

#[test]
fn demo_plays_the_demo_movie_in_a_real_window() {
    let home = tempfile::tempdir().unwrap();
    let mut app = RealApp::new(home.path());
    run(Duration::from_secs(420), async {
        let started = Instant::now();
        app.launch(&["--demo"], None);
        // The first launch makes the demo movie with ffmpeg: allow for it. Playing: the
        // clock moves 2 s past the first frame.
        let first = app
            .wait_for("no playback", Duration::from_secs(300), |s| {
                s.screen == "player" && s.frames_shown > 0
            })
            .await;
        let status = app
            .wait_for("the clock did not move", Duration::from_secs(60), |s| {
                s.time_pos >= first.time_pos + 2.0
            })
            .await;
        assert!(
            status.frames_rendered > 0 && status.frames_shown > 10,
            "{status:?}"
        );
        // The demo waited for its caches to warm before playing: the peer path feeds the
        // player (the live panel's numbers, as the status file reports them).
        let status = app
            .wait_for(
                "no bytes from the demo caches",
                Duration::from_secs(60),
                |s| s.from_caches_bytes > 0,
            )
            .await;
        assert!(status.demo_ready_ms.is_some(), "{status:?}");
        assert!(
            app.log_text()
                .contains("the demo caches hold the demo movie"),
            "the caches did not warm before playing:\n{}",
            app.log_text()
        );
        eprintln!(
            "demo: launch → first frame {:?} ms, play → first frame {:?} ms, {:.0}% of the bytes from caches, {:.1} s in all, {status:?}",
            status.first_frame_ms,
            status.play_to_frame_ms,
            status.from_caches_bytes as f64 * 100.0
                / (status.from_caches_bytes + status.from_origin_bytes) as f64,
            started.elapsed().as_secs_f64()
        );

        // A screenshot of the whole screen, as a person would see it.
        let shot = app.screenshot("demo");
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

        // Keys reach the player through the window (XTEST events, as a keyboard makes
        // them): space pauses mpv and the clock holds, space plays on, → seeks 5 s ahead.
        let keys = Duration::from_secs(20);
        app.key("space");
        let paused = app
            .wait_for("space did not pause mpv", keys, |s| s.paused)
            .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let still = app.status().unwrap();
        assert!(
            still.paused && (still.time_pos - paused.time_pos).abs() <= 0.3,
            "the clock moved while paused: {paused:?} then {still:?}"
        );
        app.key("space");
        let playing = app
            .wait_for("space did not resume", keys, |s| !s.paused)
            .await;
        app.key("Right");
        app.wait_for("→ did not seek 5 s ahead", keys, |s| {
            s.time_pos >= playing.time_pos + 4.0
        })
        .await;

        // Esc closes the player. Then nothing under the app's folders and nothing the
        // process has open (the demo network's own tracker and origin aside: they are the
        // server, which keeps the movie and serves it from an open file) starts with the Matroska magic or holds any piece
        // of the demo movie in clear.
        app.key("Escape");
        app.wait_for("Esc did not close the player", keys, |s| {
            s.screen == "catalogue"
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let server = home.path().join("data/demo/tracker");
        let movie = files_under(&server)
            .into_iter()
            .filter_map(|f| std::fs::read(f).ok())
            .filter(|b| b.starts_with(&MATROSKA_MAGIC))
            .max_by_key(Vec::len)
            .expect("the demo's origin holds no movie");
        let pieces = Pieces::of(&movie);
        let files = files_under_except(home.path(), std::slice::from_ref(&server));
        let found = in_clear(&files, &pieces);
        assert!(found.is_empty(), "after the player closed: {found:#?}");
        let found = in_clear(&open_files_except(app.pid(), &[server]), &pieces);
        assert!(
            found.is_empty(),
            "open files after the player closed: {found:#?}"
        );

        // SIGTERM closes like the window's close button: the engine stops, the app exits 0.
        app.terminate().await;
    });
}
