//! The real `rivulet-tracker` binary: `account` creates accounts from RIVULET_PASSWORD or
//! stdin, `serve` prints its address, and a SIGKILL during a burst of purchases loses no
//! committed purchase and takes no uncommitted point, on SQLite and on PostgreSQL.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};

use common::*;
use rivulet_localnet::process::spawn_reading_line;
use rivulet_tracker_client::{Credentials, TrackerClient};

/// Starts `rivulet-tracker serve` on a free port; returns the child and its base URL.
fn serve(data: &std::path::Path) -> (Child, String) {
    serve_on(data, None)
}

/// [`serve`] with its state in `database` when given (`--database`).
fn serve_on(data: &std::path::Path, database: Option<&str>) -> (Child, String) {
    let mut command = tracker();
    command
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--ftp",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(
            database
                .map(|url| ["--database", url])
                .into_iter()
                .flatten(),
        )
        .stderr(Stdio::null());
    let (child, line) = spawn_reading_line(&mut command);
    assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
    (child, line)
}

fn account(
    data: &std::path::Path,
    args: &[&str],
    password: Option<&str>,
    stdin: Option<&str>,
) -> std::process::Output {
    let mut cmd = tracker();
    cmd.arg("account").args(args).arg("--data").arg(data);
    cmd.env_remove("RIVULET_PASSWORD");
    if let Some(p) = password {
        cmd.env("RIVULET_PASSWORD", p);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn accounts_from_the_command_line_log_in_over_http() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let o = account(
        &data,
        &["root", "--admin", "--points", "5000"],
        Some("admin-pass-1"),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = account(&data, &["piped"], None, Some("other-secret-2\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_line_error(&account(&data, &["weak"], Some("short"), None), "password");
    assert_one_line_error(
        &account(&data, &["x"], Some("fine-pass-3"), None),
        "username",
    );
    assert_one_line_error(
        &account(&data, &["root"], Some("other-pass-4"), None),
        "taken",
    );
    assert_one_line_error(
        &account(&data, &["neg", "--points", "-3"], Some("fine-pass-3"), None),
        "--points",
    );

    let (mut child, url) = serve(&data);
    let c = TrackerClient::new(&url);
    let login = |u: &str, p: &str| {
        let c = c.clone();
        let creds = Credentials {
            username: u.into(),
            password: p.into(),
        };
        async move { c.login(&creds).await }
    };
    let root = login("root", "admin-pass-1").await.unwrap().account;
    assert!(root.admin);
    assert_eq!(root.balance, 5000);
    assert!(
        !login("piped", "other-secret-2")
            .await
            .unwrap()
            .account
            .admin
    );
    // SIGTERM stops it gracefully.
    // SAFETY: kill has no memory preconditions; the pid is our live child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn sigkill_during_purchases_keeps_every_balance_consistent() {
    sigkill_during_purchases(None).await;
}

#[tokio::test]
async fn sigkill_during_purchases_on_postgresql_keeps_every_balance_consistent() {
    let pg = rivulet_localnet::TestPostgres::start().unwrap();
    sigkill_during_purchases(Some(&pg.url())).await;
}

/// Concurrent purchases through a real `serve` that is SIGKILLed in the middle, then
/// restarted: no purchase is charged twice or half-written.
async fn sigkill_during_purchases(database: Option<&str>) {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let clip = make_media(work.path(), "clip.mp4", 2, H264_AAC);
    let prices = [
        ("m1", 7u64),
        ("m2", 11),
        ("m3", 13),
        ("m4", 17),
        ("m5", 19),
        ("m6", 23),
    ];
    for (id, price) in prices {
        let o = run(
            &data,
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
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let users: Vec<String> = (0..6).map(|i| format!("buyer{i}")).collect();
    for u in &users {
        let mut args = vec![u.as_str(), "--points", "60"];
        args.extend(
            database
                .map(|url| ["--database", url])
                .into_iter()
                .flatten(),
        );
        let made = account(&data, &args, Some("buyer-pass-1"), None);
        assert!(made.status.success(), "{}", stderr(&made));
    }
    let (mut child, url) = serve_on(&data, database);
    let mut sessions = Vec::new();
    for u in &users {
        let creds = Credentials {
            username: u.clone(),
            password: "buyer-pass-1".into(),
        };
        let token = TrackerClient::new(&url).login(&creds).await.unwrap().token;
        sessions.push(TrackerClient::new(&url).with_token(token));
    }
    // A burst: every user buys every movie, many at once; the tracker dies in the middle.
    let mut tasks = Vec::new();
    let (first_done, mut first_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for round in 0..8 {
        for (i, c) in sessions.iter().enumerate() {
            for (j, (id, _)) in prices.iter().enumerate() {
                if (i + j + round) % 2 == 0 {
                    let (c, id, done) = (c.clone(), id.to_string(), first_done.clone());
                    tasks.push(tokio::spawn(async move {
                        let bought = c.buy(&id).await;
                        if bought.is_ok() {
                            let _ = done.send(());
                        }
                        bought
                    }));
                }
            }
        }
    }
    // Kill as soon as the first purchase has committed, with the rest in flight.
    first_rx.recv().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut cut_off = 0;
    for t in tasks {
        cut_off += usize::from(t.await.unwrap().is_err());
    }
    assert!(
        cut_off > 0,
        "the kill landed after the burst; nothing was tested"
    );

    // After a restart every balance is its start minus the prices of what it owns.
    let (mut child, url) = serve_on(&data, database);
    let mut owned_total = 0;
    for u in &users {
        let creds = Credentials {
            username: u.clone(),
            password: "buyer-pass-1".into(),
        };
        let me = TrackerClient::new(&url)
            .login(&creds)
            .await
            .unwrap()
            .account;
        let spent: u64 = me
            .bought
            .iter()
            .map(|id| prices.iter().find(|(p, _)| p == id).unwrap().1)
            .sum();
        assert_eq!(
            me.balance + spent,
            60,
            "{u}: balance {} bought {:?}",
            me.balance,
            me.bought
        );
        owned_total += me.bought.len();
    }
    assert!(owned_total > 0, "some purchases committed before the kill");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn serve_reads_its_config_file_and_flags_win_over_it() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("from-file");
    let config = work.path().join("tracker.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nhttp = \"127.0.0.1:9\"\nftp = \"127.0.0.1:0\"\ninitial_points = 7\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    // The flag --http wins over the file's unusable port 9; the rest comes from the file.
    let (mut child, url) = spawn_reading_line(
        tracker()
            .args(["serve", "--http", "127.0.0.1:0", "--config"])
            .arg(&config)
            .stderr(Stdio::null()),
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
    assert!(
        data.join("tracker.db").exists(),
        "the file's data dir is used"
    );
    let c = TrackerClient::new(&url);
    let creds = Credentials {
        username: "filed".into(),
        password: "correct-horse-42".into(),
    };
    assert_eq!(c.register(&creds).await.unwrap().balance, 7);
    child.kill().unwrap();
    child.wait().unwrap();

    // A bad file is one line on stderr and exit 2; nothing is started.
    for (text, want) in [
        ("htp = \"127.0.0.1:0\"\n", "unknown field `htp`"),
        ("node_timeout = 0\n", "node_timeout must be"),
    ] {
        std::fs::write(&config, text).unwrap();
        let o = tracker()
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{text:?}");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err:?}");
        assert!(
            err.contains(want) && err.contains("tracker.toml"),
            "{err:?}"
        );
    }
}

#[test]
fn serve_over_https_prints_an_https_url_and_bad_tls_files_are_one_line() {
    use rivulet_node_core::peer::tls::Identity;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let a = Identity::load_or_create(work.path(), "a-cert.pem", "a-key.pem", "localhost").unwrap();
    Identity::load_or_create(work.path(), "b-cert.pem", "b-key.pem", "localhost").unwrap();
    let (mut child, url) = spawn_reading_line(
        tracker()
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--ftp",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(&data)
            .arg("--tls-cert")
            .arg(&a.cert_path)
            .arg("--tls-key")
            .arg(&a.key_path)
            .stderr(Stdio::null()),
    );
    assert!(url.starts_with("https://127.0.0.1:"), "{url:?}");
    child.kill().unwrap();
    child.wait().unwrap();

    let garbage = work.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = work.path().join("missing.pem");
    let (a_cert, b_key) = (a.cert_path.clone(), work.path().join("b-key.pem"));
    for (cert, key, want) in [
        (&missing, &a.key_path, "missing.pem"),
        (&garbage, &a.key_path, "garbage.pem"),
        (&a_cert, &garbage, "garbage.pem"),
        (&a_cert, &b_key, "a-cert.pem"),
    ] {
        let o = tracker()
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--ftp",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(&data)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{cert:?} {key:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.contains("TLS") && err.contains(want), "{err:?}");
    }
}
