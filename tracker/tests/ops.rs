//! The operator commands of the real `rivulet-tracker` binary against a running tracker:
//! movies changed and removed, settings stored and applied, accounts disabled, the
//! origin's upload caps, the transfer roll-up, and a backup taken while heartbeats and
//! purchases are written, restored and served with no purchase lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rivulet_localnet::process::spawn_reading_line;
use rivulet_localnet::{LocalNetwork, MovieSpec};
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{
    ClientError, Credentials, ErrorCode, Heartbeat, NodeRegistration, PeerBytes, TicketRequest,
    TrackerClient,
};

const PASSWORD: &str = "correct-horse-42";

/// Starts `rivulet-tracker serve` on free ports; returns the child and its base URL.
fn serve(data: &Path) -> (Child, String) {
    serve_with(data, &[])
}

/// [`serve`] with more flags.
fn serve_with(data: &Path, flags: &[&str]) -> (Child, String) {
    let (child, line) = spawn_reading_line(
        tracker()
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--ftp",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .args(flags)
            .stderr(Stdio::null()),
    );
    assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
    (child, line)
}

/// Stops a serve with SIGTERM and waits for it.
fn stop(mut child: Child) {
    // SAFETY: kill has no memory preconditions; the pid is our live child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Runs the binary off the async threads (the tracker under test may share them).
async fn op(data: &Path, args: &[&str]) -> Output {
    let (data, args) = (
        data.to_owned(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&data, &args)
    })
    .await
    .unwrap()
}

/// Asserts a command succeeded; returns its stdout.
fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed: {}", stderr(&o));
    stdout(&o)
}

fn creds(name: &str) -> Credentials {
    Credentials {
        username: name.into(),
        password: PASSWORD.into(),
    }
}

async fn user(url: &str, name: &str) -> TrackerClient {
    let c = TrackerClient::new(url);
    c.register(&creds(name)).await.unwrap();
    let token = c.login(&creds(name)).await.unwrap().token;
    c.with_token(token)
}

/// Polls `check` every 50 ms until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ingests `clip` once per id at `price`.
fn ingest_as(data: &Path, clip: &Path, ids: &[&str], price: u64) {
    for id in ids {
        ok(run(
            data,
            &[
                "ingest",
                clip.to_str().unwrap(),
                "--title",
                id,
                "--id",
                id,
                "--price",
                &price.to_string(),
            ],
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_set_and_remove_reach_a_running_serve() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let clip = make_media(work.path(), "clip.mp4", 2, H264_AAC);
    ingest_as(&data, &clip, &["keep", "gone"], 3);
    let (child, url) = serve(&data);
    let buyer = user(&url, "buyer").await;
    buyer.buy("gone").await.unwrap();

    let out = ok(op(
        &data,
        &[
            "videos",
            "set",
            "keep",
            "--title",
            "Kept, renamed",
            "--price",
            "9",
        ],
    )
    .await);
    assert!(out.contains("Kept, renamed"), "{out}");
    let c = TrackerClient::new(&url);
    eventually(
        Duration::from_secs(3),
        "the serve lists the new title and price",
        || {
            let c = c.clone();
            async move {
                c.video("keep")
                    .await
                    .is_ok_and(|v| v.title == "Kept, renamed" && v.price == 9)
            }
        },
    )
    .await;
    let listed = ok(op(&data, &["videos", "list", "--json"]).await);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert!(
        listed.iter().any(|v| v["id"] == "keep" && v["price"] == 9),
        "{listed:?}"
    );

    ok(op(&data, &["videos", "remove", "gone"]).await);
    eventually(
        Duration::from_secs(3),
        "the serve forgets the removed movie",
        || {
            let c = c.clone();
            async move {
                c.video("gone").await.err().and_then(|e| e.code().cloned())
                    == Some(ErrorCode::NotFound)
            }
        },
    )
    .await;
    assert!(!data.join("videos/gone").exists());
    let staging: Vec<_> = std::fs::read_dir(data.join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "{staging:?}");
    // Purchases stay as history.
    assert!(
        buyer
            .me()
            .await
            .unwrap()
            .bought
            .contains(&"gone".to_owned())
    );

    // Bad input: one line on stderr, non-zero exit, nothing changed.
    for (args, want) in [
        (&["videos", "set", "nosuch", "--price", "1"][..], "nosuch"),
        (&["videos", "set", "keep"], "nothing to change"),
        (&["videos", "set", "keep", "--title", "   "], "title"),
        (&["videos", "set", "keep", "--price", "-1"], "--price"),
        (&["videos", "remove", "gone"], "gone"),
        (&["videos", "remove", "../etc"], "invalid video id"),
    ] {
        assert_one_line_error(&op(&data, args).await, want);
    }
    assert_eq!(c.video("keep").await.unwrap().price, 9);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_settings_reach_a_running_serve_and_win_over_its_flags() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = Server::bind(ServeConfig::loopback(data.clone()))
        .await
        .unwrap();
    let show = ok(op(&data, &["settings", "show"]).await);
    assert!(
        show.contains("points-rate") && show.contains("not stored"),
        "{show}"
    );

    ok(op(&data, &["settings", "set", "signup-points", "7"]).await);
    ok(op(&data, &["settings", "set", "points-rate", "12345"]).await);
    eventually(
        Duration::from_secs(5),
        "the running serve applies both",
        || {
            let s = server.settings().clone();
            async move { s.signup_points() == 7 && s.bytes_per_point() == 12345 }
        },
    )
    .await;
    let c = TrackerClient::new(&server.url());
    assert_eq!(c.register(&creds("newcomer")).await.unwrap().balance, 7);
    let show = ok(op(&data, &["settings", "show"]).await);
    assert!(show.contains("12345") && show.contains('7'), "{show}");

    for (args, want) in [
        (
            &["settings", "set", "points-rate", "0"][..],
            "points-rate must be",
        ),
        (
            &["settings", "set", "signup-points", "2000000000"],
            "signup-points must be",
        ),
        (&["settings", "set", "signup-points", "-3"], "-3"),
        (&["settings", "set", "bogus", "1"], "bogus"),
    ] {
        assert_one_line_error(&op(&data, args).await, want);
    }
    assert_one_line_error(
        &op(&work.path().join("nowhere"), &["settings", "show"]).await,
        "no tracker database",
    );
    server.shutdown().await.unwrap();

    // A new serve starts with the stored values, whatever its flags say.
    let mut config = ServeConfig::loopback(data.clone());
    config.initial_points = 500;
    let server = Server::bind(config).await.unwrap();
    assert_eq!(server.settings().signup_points(), 7);
    assert_eq!(server.settings().bytes_per_point(), 12345);
    server.shutdown().await.unwrap();
}

fn api_code(e: &ClientError) -> (u16, ErrorCode) {
    match e {
        ClientError::Api { status, code, .. } => (*status, code.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_cannot_log_in_and_its_sessions_end() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // The serve remembers a checked session for a second: the disable, made by another
    // process, is seen within it.
    let (child, url) = serve_with(&data, &["--session-recheck", "1"]);
    let alice = user(&url, "Alice").await;
    let _bob = user(&url, "bob").await;
    alice.me().await.unwrap();

    ok(op(&data, &["accounts", "disable", "alice"]).await);
    eventually(
        Duration::from_secs(5),
        "a disabled account's session ends within the recheck time",
        || async {
            matches!(
                alice.me().await.map_err(|e| api_code(&e)),
                Err((401, ErrorCode::Unauthorized))
            )
        },
    )
    .await;
    let anon = TrackerClient::new(&url);
    let refused = anon.login(&creds("Alice")).await.unwrap_err();
    assert_eq!(api_code(&refused), (403, ErrorCode::AccountDisabled));
    // A wrong password does not learn that the account exists and is disabled.
    let wrong = Credentials {
        username: "Alice".into(),
        password: "wrong-horse-42".into(),
    };
    assert_eq!(
        api_code(&anon.login(&wrong).await.unwrap_err()).1,
        ErrorCode::BadCredentials
    );
    let list = ok(op(&data, &["accounts", "list", "--json"]).await);
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let disabled: Vec<_> = list
        .iter()
        .map(|a| {
            (
                a["username"].as_str().unwrap(),
                a["disabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(disabled, [("Alice", true), ("bob", false)]);
    assert!(ok(op(&data, &["accounts", "list"]).await).contains("Alice"));

    ok(op(&data, &["accounts", "enable", "ALICE"]).await);
    anon.login(&creds("Alice")).await.unwrap();
    assert_one_line_error(
        &op(&data, &["accounts", "disable", "nobody"]).await,
        "nobody",
    );
    assert_one_line_error(
        &op(&data, &["accounts", "frobnicate", "bob"]).await,
        "frobnicate",
    );
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_heartbeats_and_purchases_are_written_restores_every_purchase() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let clip = make_media(work.path(), "clip.mp4", 2, H264_AAC);
    let movies = ["m1", "m2", "m3", "m4"];
    const PRICE: u64 = 5;
    ingest_as(&data, &clip, &movies, PRICE);
    let (child, url) = serve(&data);
    let mut users = Vec::new();
    for i in 0..8 {
        let name = format!("buyer{i}");
        let c = user(&url, &name).await;
        c.buy("m1").await.unwrap();
        let node = c
            .register_node(&NodeRegistration::viewer())
            .await
            .unwrap()
            .node_id;
        users.push((name, c, node));
    }

    // Heartbeats: every viewer reports origin bytes of m1 as fast as the tracker answers.
    let stop_heartbeats = tokio_util::sync::CancellationToken::new();
    let beats = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut beating = Vec::new();
    for (_, c, node) in &users {
        let (c, node, stop, beats) = (
            c.clone(),
            node.clone(),
            stop_heartbeats.clone(),
            beats.clone(),
        );
        beating.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.is_cancelled() {
                seq += 1;
                let hb = Heartbeat {
                    seq,
                    watching: Some("m1".into()),
                    received: vec![PeerBytes::new("origin", "m1", 40_000)],
                    ..Heartbeat::default()
                };
                if c.heartbeat(&node, &hb).await.is_ok() {
                    beats.lock().unwrap().push(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Purchases: one after another across the accounts, each acknowledged one noted; the
    // last few wait until the backup has ended, so some surely come after it.
    let acked = Arc::new(Mutex::new(Vec::<(Instant, String, String)>::new()));
    let backed_up = Arc::new(tokio::sync::Notify::new());
    let buying = {
        let (acked, backed_up) = (acked.clone(), backed_up.clone());
        let buyers: Vec<_> = users
            .iter()
            .map(|(n, c, _)| (n.clone(), c.clone()))
            .collect();
        tokio::spawn(async move {
            let pairs: Vec<_> = movies[1..]
                .iter()
                .flat_map(|m| buyers.iter().map(move |(n, c)| (n, c, *m)))
                .collect();
            let held_back = pairs.len() - 4;
            for (i, (name, c, movie)) in pairs.into_iter().enumerate() {
                if i == held_back {
                    backed_up.notified().await;
                }
                c.buy(movie).await.unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push((Instant::now(), name.clone(), movie.to_string()));
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    eventually(
        Duration::from_secs(20),
        "some purchases and heartbeats",
        || {
            let (acked, beats) = (acked.clone(), beats.clone());
            async move { acked.lock().unwrap().len() >= 4 && beats.lock().unwrap().len() >= 4 }
        },
    )
    .await;
    let file = work.path().join("tracker-backup.db");
    let started = Instant::now();
    let before: HashSet<(String, String)> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, u, m)| (u.clone(), m.clone()))
        .collect();
    let out = ok(op(&data, &["backup", file.to_str().unwrap()]).await);
    let ended = Instant::now();
    backed_up.notify_one();
    assert!(out.contains("bytes"), "{out}");
    buying.await.unwrap();
    eventually(
        Duration::from_secs(10),
        "a heartbeat after the backup",
        || {
            let beats = beats.clone();
            async move { beats.lock().unwrap().iter().any(|at| *at > ended) }
        },
    )
    .await;
    stop_heartbeats.cancel();
    for b in beating {
        b.await.unwrap();
    }
    // The writers ran on both sides of the backup.
    let acked = acked.lock().unwrap().clone();
    assert!(acked.iter().any(|(at, ..)| *at < started) && acked.iter().any(|(at, ..)| *at > ended));
    let beats = beats.lock().unwrap().clone();
    assert!(beats.iter().any(|at| *at < started) && beats.iter().any(|at| *at > ended));

    // Refused while the serve runs; an existing file is never replaced.
    assert_one_line_error(
        &op(&data, &["restore", file.to_str().unwrap()]).await,
        "serve is running",
    );
    assert_one_line_error(
        &op(&data, &["backup", file.to_str().unwrap()]).await,
        "exists already",
    );
    let junk = work.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all").unwrap();
    stop(child);
    assert_one_line_error(
        &op(&data, &["restore", junk.to_str().unwrap()]).await,
        "junk.db",
    );

    let out = ok(op(&data, &["restore", file.to_str().unwrap()]).await);
    assert!(out.contains("before-restore"), "{out}");
    let (child, url) = serve(&data);
    let mut owned = HashMap::new();
    for (name, ..) in &users {
        let me = TrackerClient::new(&url)
            .login(&creds(name))
            .await
            .unwrap()
            .account;
        assert_eq!(
            me.balance + PRICE * me.bought.len() as u64,
            100,
            "{name}: balance {} bought {:?}",
            me.balance,
            me.bought
        );
        owned.insert(name.clone(), me.bought);
    }
    for (name, movie) in &before {
        assert!(
            owned[name].contains(movie),
            "{name} bought {movie} before the backup; restored it owns {:?}",
            owned[name]
        );
    }
    assert!(
        owned.values().map(Vec::len).sum::<usize>() < users.len() * movies.len(),
        "the backup was taken before the last purchases"
    );
    stop(child);
}

/// Fetches `chunks` of movie "m" from the origin over one FTP connection; returns the bytes.
async fn fetch(net: &LocalNetwork, c: &TrackerClient, node: &str, chunks: &[(u32, u16)]) -> usize {
    use suppaftp::tokio::AsyncFtpStream;
    use tokio::io::AsyncReadExt;
    let ticket = c
        .ticket(&TicketRequest::new(node.to_owned(), "origin", "m"))
        .await
        .unwrap()
        .ticket;
    let mut ftp = AsyncFtpStream::connect(net.server().ftp_addr())
        .await
        .unwrap();
    ftp.login(node, &ticket).await.unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .await
        .unwrap();
    ftp.set_mode(suppaftp::Mode::ExtendedPassive);
    let mut total = 0;
    for (segment, index) in chunks {
        let mut stream = ftp
            .retr_as_stream(format!("/m/{segment}/{index}"))
            .await
            .unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        stream.finish().await.unwrap();
        total += buf.len();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_caps_its_upload_in_total_and_per_connection() {
    const CONNECTION_BPS: u64 = 1_600_000;
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::builder(dir.path())
        .movie(MovieSpec::sample("m", 4).size(320, 240).price(0))
        .configure(|config| {
            config.origin_upload_bps = 3 * CONNECTION_BPS;
            config.origin_connection_bps = CONNECTION_BPS;
        })
        .start()
        .await
        .unwrap();
    let c = net.user("vera", PASSWORD).await.unwrap();
    c.buy("m").await.unwrap();
    let node = c
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let manifest =
        rivulet_node_core::format::Manifest::from_json(&c.manifest("m").await.unwrap()).unwrap();
    let chunks: Vec<(u32, u16)> = (0..manifest.segment_count())
        .flat_map(|s| (0..manifest.k).map(move |i| (s, i)))
        .collect();

    // One connection: at most its own cap (the first 16 KiB may go at once).
    let t = Instant::now();
    let bytes = fetch(&net, &c, &node, &chunks).await;
    let one = t.elapsed();
    let floor = Duration::from_secs_f64((bytes - 16 * 1024) as f64 * 8.0 / CONNECTION_BPS as f64);
    assert!(
        bytes > 64 * 1024,
        "the movie is big enough to measure: {bytes}"
    );
    assert!(
        one >= floor,
        "{bytes} bytes in {one:?}, faster than the connection cap"
    );

    // Four connections at once: each under its cap, all under the total (3 connections' worth).
    let t = Instant::now();
    let all = futures_join(&net, &c, &node, &chunks, 4).await;
    let four = t.elapsed();
    let floor =
        Duration::from_secs_f64((all - 16 * 1024) as f64 * 8.0 / (3 * CONNECTION_BPS) as f64);
    assert!(
        four >= floor,
        "{all} bytes in {four:?}, faster than the total cap"
    );
    assert!(
        four < one * 4,
        "{four:?} for four connections against {one:?} for one: they ran side by side"
    );
    net.shutdown().await;
}

async fn futures_join(
    net: &LocalNetwork,
    c: &TrackerClient,
    node: &str,
    chunks: &[(u32, u16)],
    connections: usize,
) -> usize {
    let mut total = 0;
    let fetches: Vec<_> = (0..connections)
        .map(|_| fetch(net, c, node, chunks))
        .collect();
    for bytes in join_all(fetches).await {
        total += bytes;
    }
    total
}

/// Runs futures side by side on this task.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_transfer_rows_roll_up_into_hours_and_go_after_ninety_days() {
    use rivulet_tracker::ops::{self, KEEP_SECS};
    let dir = tempfile::tempdir().unwrap();
    let net = LocalNetwork::builder(dir.path())
        .movie(MovieSpec::sample("m", 2).size(320, 240).price(0))
        .start()
        .await
        .unwrap();
    let c = net.user("vera", PASSWORD).await.unwrap();
    c.buy("m").await.unwrap();
    let node = c
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    for seq in 1..=5 {
        let hb = Heartbeat {
            seq,
            watching: Some("m".into()),
            received: vec![PeerBytes::new("origin", "m", 10_000 * seq)],
            ..Heartbeat::default()
        };
        c.heartbeat(&node, &hb).await.unwrap();
    }
    let db = net.server().database().clone();
    let rows = |table: &'static str| {
        let db = db.read.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    eventually(
        Duration::from_secs(10),
        "the heartbeats' transfer rows",
        || {
            let rows = rows("transfers");
            async move { rows.await > 0 }
        },
    )
    .await;
    let flows = |db: rivulet_tracker::db::Database, node: String| async move {
        rivulet_tracker::admin::flows(&db.read, &node)
            .await
            .unwrap()
    };
    let sorted = |mut f: rivulet_tracker_client::NodeFlows| {
        f.received
            .sort_by(|a, b| (&a.peer, &a.video).cmp(&(&b.peer, &b.video)));
        f.sent
            .sort_by(|a, b| (&a.peer, &a.video).cmp(&(&b.peer, &b.video)));
        f
    };
    let before = sorted(flows(db.clone(), node.clone()).await);
    assert!(
        before.received.iter().map(|f| f.bytes).sum::<u64>() > 0,
        "{before:?}"
    );

    let now = rivulet_node_core::clock::unix_secs() as i64;
    // Within a day nothing moves.
    let done = ops::roll_up_transfers(&db.write, now).await.unwrap();
    assert_eq!((done.rolled, done.pruned), (0, 0));
    // Two days on, the 10-second rows are hourly rows with the same totals.
    let done = ops::roll_up_transfers(&db.write, now + 2 * 24 * 3600)
        .await
        .unwrap();
    assert!(done.rolled > 0 && done.hours >= 1, "{done:?}");
    assert_eq!(rows("transfers").await, 0);
    assert!(rows("transfer_hours").await > 0);
    assert_eq!(sorted(flows(db.clone(), node.clone()).await), before);
    // Again: nothing left to roll.
    let again = ops::roll_up_transfers(&db.write, now + 2 * 24 * 3600)
        .await
        .unwrap();
    assert_eq!(again.rolled, 0);
    // Past 90 days they are gone.
    let done = ops::roll_up_transfers(&db.write, now + KEEP_SECS + 2 * 3600)
        .await
        .unwrap();
    assert!(done.pruned > 0, "{done:?}");
    assert_eq!(rows("transfer_hours").await, 0);
    assert!(flows(db.clone(), node.clone()).await.received.is_empty());
    net.shutdown().await;
}

#[tokio::test]
async fn a_second_serve_on_one_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::bind(ServeConfig::loopback(dir.path().to_owned()))
        .await
        .unwrap();
    let err = Server::bind(ServeConfig::loopback(dir.path().to_owned()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("serve is running"), "{err}");
    first.shutdown().await.unwrap();
    // Once stopped, the data dir is free again.
    let again = Server::bind(ServeConfig::loopback(dir.path().to_owned()))
        .await
        .unwrap();
    again.shutdown().await.unwrap();
}
