//! `watch` end to end against a real tracker and origin on loopback: the rebuilt file is the
//! origin's stream file byte for byte, unbought movies are refused unless `--buy`, and real
//! time paces like a player.

use std::time::{Duration, Instant};

use rivulet_e2e::sha256_file;
use rivulet_localnet::{LocalNetwork, MovieSpec};
use rivulet_node_core::headless;
use rivulet_node_core::viewer::WatchOptions;
use rivulet_tracker_client::{Credentials, TrackerClient};

const PASSWORD: &str = "watcher-pass-1";

#[tokio::test]
async fn watch_rebuilds_the_movie_byte_for_byte_from_the_origin() {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("film", 6).price(20))
        .start()
        .await
        .unwrap();
    net.register("ann", PASSWORD).await.unwrap();
    let out = net.path("film.mkv");
    let opts = WatchOptions::default();

    // Not bought, no --buy: refused, nothing written, nothing spent.
    let err = headless::watch(&net.url(), "ann", PASSWORD, "film", &out, &opts, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has not bought"), "{err}");
    assert!(!out.exists());

    let report = headless::watch(&net.url(), "ann", PASSWORD, "film", &out, &opts, true)
        .await
        .unwrap();
    let want = sha256_file(&net.stream_file("film")).unwrap();
    assert_eq!(report.sha256, want);
    assert_eq!(sha256_file(&out).unwrap(), want);
    assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
    assert_eq!(report.from_caches_bytes, 0);
    // Every byte came from the origin as verified data chunks, plus framing and proofs.
    assert!(
        report.from_origin_bytes >= report.bytes
            && report.from_origin_bytes < report.bytes + report.bytes / 50
    );
    assert_eq!((report.stalls, report.stall_ms), (0, 0));

    let me = TrackerClient::new(&net.url())
        .login(&Credentials {
            username: "ann".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .account;
    assert_eq!((me.balance, me.bought), (80, vec!["film".to_owned()]));
    // Watching again is free and gives the same bytes.
    std::fs::remove_file(&out).unwrap();
    let again = headless::watch(&net.url(), "ann", PASSWORD, "film", &out, &opts, true)
        .await
        .unwrap();
    assert_eq!(again.sha256, want);
    net.shutdown().await;
}

#[tokio::test]
async fn real_time_watching_takes_the_movies_length_without_stalls() {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("short", 4).price(0))
        .start()
        .await
        .unwrap();
    net.register("bea", PASSWORD).await.unwrap();
    let out = net.path("short.mkv");
    let opts = WatchOptions {
        realtime: true,
        ..WatchOptions::default()
    };
    let started = Instant::now();
    let report = headless::watch(&net.url(), "bea", PASSWORD, "short", &out, &opts, true)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(3_800),
        "a player takes the movie's length, took {took:?}"
    );
    assert!(report.start_ms < 2_000, "start {} ms", report.start_ms);
    assert_eq!(report.stalls, 0);
    assert_eq!(
        report.sha256,
        sha256_file(&net.stream_file("short")).unwrap()
    );
    net.shutdown().await;
}

#[tokio::test]
async fn bad_tracker_answers_are_clear_errors() {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("m", 2).price(1000))
        .start()
        .await
        .unwrap();
    net.register("cat", PASSWORD).await.unwrap();
    let out = net.path("m.mkv");
    let opts = WatchOptions::default();
    let cases = [
        (
            net.url(),
            "cat",
            "wrong-pass-9",
            "m",
            true,
            "wrong username or password",
        ),
        (net.url(), "cat", PASSWORD, "nope", true, "no video"),
        (net.url(), "cat", PASSWORD, "m", true, "costs 1000 points"),
        (
            "http://127.0.0.1:9".to_owned(),
            "cat",
            PASSWORD,
            "m",
            true,
            "unreachable",
        ),
    ];
    for (tracker, user, pw, video, buy, want) in cases {
        let err = headless::watch(&tracker, user, pw, video, &out, &opts, buy)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains(want), "{err:#}");
        assert!(!out.exists());
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_error_that_leaves_nothing_behind() {
    use std::os::unix::process::CommandExt;
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("big", 6).price(0))
        .start()
        .await
        .unwrap();
    net.register("dan", PASSWORD).await.unwrap();
    let out = net.path("big.mkv");
    let mut command = std::process::Command::new(rivulet_e2e::node_binary());
    command
        .args([
            "watch",
            "--tracker",
            &net.url(),
            "--user",
            "dan",
            "--video",
            "big",
            "--buy",
        ])
        .arg("--out")
        .arg(&out)
        .env("RIVULET_PASSWORD", PASSWORD)
        .env("RIVULET_HOME", net.path("home"));
    // SAFETY: between fork and exec, only async-signal-safe calls: a file size limit of
    // 256 KiB (the disk is "full" past it) and SIGXFSZ ignored so writes fail with EFBIG.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("File too large"), "{err}");
    let left: Vec<_> = std::fs::read_dir(net.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("big.mkv"))
        .collect();
    assert!(left.is_empty(), "{left:?} after {err}");
    net.shutdown().await;
}
