//! The real `rivulet-tracker` binary on PostgreSQL: `serve --database postgres://…` and the
//! operator commands share one private PostgreSQL server (started by the test), two serves
//! with separate data dirs see the same accounts, and a database URL that is unsupported,
//! unreachable or malformed fails in one line.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rivulet_localnet::TestPostgres;
use rivulet_localnet::process::spawn_reading_line;
use rivulet_tracker_client::{Credentials, TrackerClient};

const PASSWORD: &str = "correct-horse-42";

fn serve(data: &std::path::Path, database: &str) -> (Child, String) {
    let (child, line) = spawn_reading_line(
        tracker()
            .args(["serve", "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0"])
            .args(["--database", database, "--data"])
            .arg(data)
            .stderr(Stdio::null()),
    );
    assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
    (child, line)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn log_in(url: &str, name: &str) -> TrackerClient {
    let client = TrackerClient::new(url);
    let session = client
        .login(&Credentials {
            username: name.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap();
    client.with_token(session.token)
}

#[tokio::test]
async fn serves_and_operator_commands_share_one_postgresql() {
    let pg = TestPostgres::start().unwrap();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));

    let made = tracker()
        .args([
            "account",
            "root",
            "--admin",
            "--points",
            "70",
            "--database",
            &url,
        ])
        .arg("--data")
        .arg(&one)
        .env("RIVULET_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(made.status.success(), "account: {}", stderr(&made));
    let set = run(
        &one,
        &["settings", "set", "signup-points", "7", "--database", &url],
    );
    assert!(set.status.success(), "settings set: {}", stderr(&set));

    let (first, first_url) = serve(&one, &url);
    let root = log_in(&first_url, "root").await;
    assert_eq!(root.me().await.unwrap().balance, 70);
    // The stored setting is the database's: a sign-up through this serve gets 7 points.
    let newcomer = Credentials {
        username: "newcomer".into(),
        password: PASSWORD.into(),
    };
    TrackerClient::new(&first_url)
        .register(&newcomer)
        .await
        .unwrap();
    assert_eq!(
        log_in(&first_url, "newcomer")
            .await
            .me()
            .await
            .unwrap()
            .balance,
        7
    );

    // A second serve with a data dir of its own, on the same database, knows both accounts,
    // and neither data dir holds a SQLite database.
    let (second, second_url) = serve(&two, &url);
    let admin = log_in(&second_url, "root").await;
    let names: Vec<String> = admin
        .admin_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.username)
        .collect();
    assert_eq!(names, ["newcomer", "root"]);
    for data in [&one, &two] {
        assert!(!data.join("tracker.db").exists(), "{}", data.display());
    }
    stop(first);
    stop(second);

    // The operator's listing reads the same database with no serve running.
    let listed = run(&one, &["accounts", "list", "--json", "--database", &url]);
    assert!(
        listed.status.success(),
        "accounts list: {}",
        stderr(&listed)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[test]
fn database_urls_that_cannot_work_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve_with = |database: &str| {
        tracker()
            .args(["serve", "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0"])
            .args(["--database", database, "--data"])
            .arg(&data)
            .output()
            .unwrap()
    };
    assert_one_line_error(&serve_with("mysql://u@127.0.0.1/x"), "unsupported database");
    assert_one_line_error(&serve_with("/var/lib/tracker.db"), "unsupported database");
    assert_one_line_error(&serve_with("postgres://u@[::1/x"), "database");
    assert_one_line_error(
        &run(&data, &["accounts", "list", "--database", "sqlserver://x"]),
        "unsupported database",
    );
    // Nothing listens on this port: the connect gives up within its timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let began = Instant::now();
    let unreachable = serve_with(&format!("postgres://rivulet@127.0.0.1:{port}/postgres"));
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    assert_one_line_error(&unreachable, "database");
}
