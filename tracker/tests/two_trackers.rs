//! Two trackers on one PostgreSQL (started by the test): exactly one leads (placement, node
//! expiry), the other takes over within seconds of the leader's death, a tracker starting
//! beside a live one keeps the nodes registered through it, and heartbeats of the same
//! accounts through both at once are all written and credited exactly.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rivulet_localnet::process::spawn_reading_line;
use rivulet_localnet::{Engine, LocalNetwork, MovieSpec, TestPostgres};
use rivulet_tracker::server::Server;
use rivulet_tracker_client::{Credentials, Heartbeat, NodeRegistration, PeerBytes, TrackerClient};

const PASSWORD: &str = "correct-horse-42";

/// A private PostgreSQL server; without PostgreSQL the test fails with the one line saying so.
fn postgres() -> TestPostgres {
    TestPostgres::start().unwrap_or_else(|e| panic!("{e}"))
}

/// `fut`, failing the test if it takes longer than `secs`.
async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {secs} s"))
}

fn serve(data: &Path, database: &str) -> (Child, String) {
    let (child, line) = spawn_reading_line(
        tracker()
            .args(["serve", "--http", "127.0.0.1:0", "--ftp", "127.0.0.1:0"])
            .args(["--node-timeout", "60", "--database", database, "--data"])
            .arg(data)
            .stderr(Stdio::null()),
    );
    assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
    (child, line)
}

/// Whether the tracker at `url` says it leads (its `/metrics` gauge); `None` if it does not
/// answer.
async fn leads(url: &str) -> Option<bool> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("rivulet_tracker_leader "))?;
    Some(value.trim() == "1")
}

async fn user(url: &str, name: &str) -> TrackerClient {
    let creds = Credentials {
        username: name.into(),
        password: PASSWORD.into(),
    };
    let client = TrackerClient::new(url);
    let _ = client.register(&creds).await;
    let session = client.login(&creds).await.unwrap();
    client.with_token(session.token)
}

#[tokio::test]
async fn of_two_serves_one_leads_and_the_other_takes_over_within_10_s_of_its_kill() {
    let pg = postgres();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let (mut first, first_url) = serve(&dir.path().join("one"), &url);
    assert_eq!(leads(&first_url).await, Some(true), "alone, it leads");
    let ann = user(&first_url, "ann").await;
    let node = ann
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;

    // A second tracker starts beside the first: it follows, and the node stays registered.
    let (second, second_url) = serve(&dir.path().join("two"), &url);
    for _ in 0..6 {
        let both = (leads(&first_url).await, leads(&second_url).await);
        assert_eq!(both, (Some(true), Some(false)), "exactly one leads");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let moved = TrackerClient::new(&second_url).with_token(ann.token().unwrap());
    let ids = |nodes: Vec<rivulet_tracker_client::NodeInfo>| -> Vec<String> {
        nodes.into_iter().map(|n| n.node_id).collect()
    };
    assert_eq!(
        ids(moved.my_nodes().await.unwrap()),
        std::slice::from_ref(&node)
    );
    // The node moves to the second tracker and keeps its registration.
    moved.heartbeat(&node, &Heartbeat::default()).await.unwrap();

    // The leader dies without a word (SIGKILL): PostgreSQL frees its lock with its session.
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();
    within(10, "the second tracker taking over", async {
        while leads(&second_url).await != Some(true) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    println!("took over {:?} after the leader's kill", killed.elapsed());
    assert_eq!(
        ids(moved.my_nodes().await.unwrap()),
        std::slice::from_ref(&node)
    );
    moved.heartbeat(&node, &Heartbeat::default()).await.unwrap();

    // A tracker starting now beside the new leader follows and forgets nothing either.
    let (third, third_url) = serve(&dir.path().join("three"), &url);
    assert_eq!(leads(&third_url).await, Some(false));
    assert_eq!(leads(&second_url).await, Some(true));
    assert_eq!(ids(moved.my_nodes().await.unwrap()), [node]);
    for mut child in [second, third] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Heartbeats each cache sends.
const ROUNDS: u64 = 40;
/// Accounts that own caches, and caches per account.
const OWNERS: usize = 5;
const CACHES_EACH: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_the_same_accounts_through_two_trackers_at_once_credit_exactly() {
    let net = within(
        120,
        "the first tracker",
        LocalNetwork::temp()
            .engine(Engine::Postgres)
            .movie(MovieSpec::sample("m", 2).size(320, 240))
            .configure(|c| c.require_reach = false)
            .start(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The second tracker: its own data dir with the same movie and ticket key, the same
    // database.
    let other = tempfile::tempdir().unwrap();
    copy_dir(&net.data_dir().join("videos"), &other.path().join("videos"));
    std::fs::copy(
        net.data_dir().join("ticket.key"),
        other.path().join("ticket.key"),
    )
    .unwrap();
    let mut config = net.config().clone();
    config.data = other.path().to_owned();
    let second = within(30, "the second tracker", Server::bind(config))
        .await
        .unwrap();
    assert!(net.server().is_leader() && !second.is_leader());
    let urls = [net.url(), second.url()];

    let viewer = user(&urls[0], "vera").await;
    let peer = viewer
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let mut caches = Vec::new();
    for owner in 0..OWNERS {
        let name = format!("owner{owner}");
        // Registered through alternate trackers: the registry is one.
        let client = user(&urls[owner % 2], &name).await;
        for c in 0..CACHES_EACH {
            let reg = NodeRegistration::cache(
                format!("0.0.0.0:{}", 3000 + owner * 10 + c),
                format!("cache.example:{}", 3000 + owner * 10 + c),
                10_000_000,
                1_500_000_000,
            );
            let id = client.register_node(&reg).await.unwrap().node_id;
            // Each cache reports its own amount, so a lost or doubled one shows.
            let bytes = 1_000 + (owner * CACHES_EACH + c) as u64;
            caches.push((name.clone(), client.token().unwrap().to_owned(), id, bytes));
        }
    }

    // Every cache beats ROUNDS times as fast as it can, odd heartbeats through one tracker
    // and even ones through the other, all caches at once: both trackers' batches hold the
    // same accounts at the same time.
    let began = Instant::now();
    let mut beats = tokio::task::JoinSet::new();
    for (_, token, id, bytes) in caches.clone() {
        let (peer, urls) = (peer.clone(), urls.clone());
        beats.spawn(async move {
            let clients = urls.map(|u| TrackerClient::new(&u).with_token(token.clone()));
            for seq in 1..=ROUNDS {
                let hb = Heartbeat {
                    seq,
                    sent: vec![PeerBytes::new(&peer, "m", bytes)],
                    ..Heartbeat::default()
                };
                clients[(seq % 2) as usize]
                    .heartbeat(&id, &hb)
                    .await
                    .unwrap_or_else(|e| panic!("heartbeat {seq} of {id}: {e}"));
            }
        });
    }
    within(120, "the heartbeats", async {
        while let Some(done) = beats.join_next().await {
            done.unwrap();
        }
    })
    .await;
    let beats = (OWNERS * CACHES_EACH) as u64 * ROUNDS;
    println!(
        "{beats} heartbeats through two trackers in {:?}",
        began.elapsed()
    );

    let db = net.db();
    for owner in 0..OWNERS {
        let name = format!("owner{owner}");
        let want: u64 = caches
            .iter()
            .filter(|(n, ..)| *n == name)
            .map(|(.., bytes)| bytes * ROUNDS)
            .sum();
        let (uploaded,): (i64,) =
            sqlx::query_as("SELECT uploaded_bytes FROM accounts WHERE username = $1")
                .bind(&name)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(uploaded as u64, want, "{name}'s uploaded bytes");
    }
    for (_, _, id, bytes) in &caches {
        let (reported,): (i64,) = sqlx::query_as(
            "SELECT reported_bytes FROM pair_totals WHERE from_node = $1 AND to_node = $2",
        )
        .bind(id)
        .bind(&peer)
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(reported as u64, bytes * ROUNDS, "{id} → {peer}");
    }

    // The leader stops: the other takes over.
    within(30, "the leader's shutdown", net.server().shutdown())
        .await
        .unwrap();
    within(10, "the second taking over", async {
        while !second.is_leader() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within(30, "the second's shutdown", second.shutdown())
        .await
        .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
