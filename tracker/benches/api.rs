//! Tracker throughput on this machine, through the typed client over loopback HTTP:
//! heartbeats/s and catalogue reads/s, beside the ceiling of the same HTTP stack answering
//! without touching the database (`GET /origin`), and purchases/s (a fixed batch, each a
//! charge) — with the state in SQLite, in PostgreSQL (a private server the bench starts),
//! and with two trackers sharing that PostgreSQL, the clients split between them.
//!
//! `cargo bench -p rivulet-tracker --bench api [-- SECONDS] [sqlite] [postgres] [postgres2]`
//! (all three when none is named)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rivulet_localnet::TestPostgres;
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{
    Credentials, Heartbeat, Holding, NodeRegistration, PeerBytes, TrackerClient,
};

/// Concurrent client tasks.
const CLIENTS: usize = 32;
/// Movies in the catalogue; each client buys every one in the purchase measurement.
const MOVIES: usize = 40;

async fn measure<F, Fut>(
    name: &str,
    seconds: f64,
    clients: &[(TrackerClient, String)],
    op: F,
) -> f64
where
    F: Fn(TrackerClient, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|(c, node)| {
            let (done, stop, op) = (done.clone(), stop.clone(), op.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    assert!(op(c.clone(), node.clone()).await, "request failed");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{name:<44} {rate:>9.0} /s");
    rate
}

/// What one engine's run measured, in requests per second.
struct Figures {
    ceiling: f64,
    reads: f64,
    beats: f64,
    purchases: f64,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5.0);
    let mut engines: Vec<&str> = ["sqlite", "postgres", "postgres2"]
        .into_iter()
        .filter(|e| args.iter().any(|a| a == e))
        .collect();
    if engines.is_empty() {
        engines = vec!["sqlite", "postgres", "postgres2"];
    }
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path().join("data")).unwrap();
    let clip = dir.path().join("clip.mp4");
    make_sample_movie(&clip, 2, 320, 240).unwrap();
    let ids: Vec<String> = (0..MOVIES).map(|i| format!("movie{i}")).collect();
    for id in &ids {
        let req = IngestRequest {
            input: clip.clone(),
            title: id.clone(),
            price: 1,
            id: Some(id.clone()),
        };
        ingest(&data, &req).unwrap();
    }
    // A second data dir with the same catalogue, for the second tracker on one database.
    rivulet_localnet::copy_data_dir(&dir.path().join("data"), &dir.path().join("data2")).unwrap();
    let pg = engines
        .iter()
        .any(|e| e.starts_with("postgres"))
        .then(|| TestPostgres::start().expect("PostgreSQL starts (installer/deps.sh)"));
    println!(
        "{CLIENTS} clients, {seconds} s per measurement, {MOVIES} movies, {} purchases per run",
        CLIENTS * MOVIES
    );
    let mut results = Vec::new();
    for engine in engines {
        println!("--- {engine}");
        let database = pg
            .as_ref()
            .filter(|_| engine != "sqlite")
            .map(|pg| pg.database(engine).unwrap());
        let trackers = if engine == "postgres2" { 2 } else { 1 };
        let servers: Vec<Server> = {
            let mut servers = Vec::new();
            for t in 0..trackers {
                let name = if t == 0 { "data" } else { "data2" };
                let mut config = ServeConfig::new(dir.path().join(name));
                config.database = database.clone();
                config.http = "127.0.0.1:0".parse().unwrap();
                config.ftp = "127.0.0.1:0".parse().unwrap();
                config.node_timeout = Duration::from_secs(600);
                config.signup_limits.per_address = 1000;
                config.initial_points = 1000;
                servers.push(Server::bind(config).await.unwrap());
            }
            servers
        };
        let figures = run(&servers, &ids, seconds).await;
        for server in servers {
            server.shutdown().await.unwrap();
        }
        results.push((engine, figures));
    }
    println!("--- summary (requests/s; ratio to the first engine's)");
    let first = results.first().map(|(_, f)| (f.beats, f.purchases));
    for (engine, f) in &results {
        let (beats, buys) = first.unwrap_or((1.0, 1.0));
        println!(
            "{engine:<10} ceiling {:>7.0}  reads {:>6.0}  heartbeats {:>6.0} ({:.2}x)  purchases {:>6.0} ({:.2}x)",
            f.ceiling,
            f.reads,
            f.beats,
            f.beats / beats,
            f.purchases,
            f.purchases / buys
        );
    }
}

/// The measurements against `servers`, the clients dealt out among them in turn.
async fn run(servers: &[Server], ids: &[String], seconds: f64) -> Figures {
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let server = &servers[i % servers.len()];
        let creds = Credentials {
            username: format!("user{i}"),
            password: "bench-pass-1".into(),
        };
        let c = TrackerClient::new(&server.url());
        c.register(&creds).await.unwrap();
        let c = c.clone().with_token(c.login(&creds).await.unwrap().token);
        let reg = NodeRegistration::cache(
            format!("127.0.0.1:{}", 20000 + i),
            format!("127.0.0.1:{}", 20000 + i),
            10_000_000,
            1_500_000_000,
        );
        let node = c.register_node(&reg).await.unwrap().node_id;
        clients.push((c, node));
    }
    let peers: Vec<String> = clients.iter().map(|(_, n)| n.clone()).collect();

    let ceiling = measure(
        "ceiling: GET /origin (no database)",
        seconds,
        &clients,
        |c, _| async move { c.origin().await.is_ok() },
    )
    .await;
    let reads = measure(
        "catalogue reads: GET /videos",
        seconds,
        &clients,
        |c, _| async move { c.videos().await.is_ok() },
    )
    .await;
    let movies = Arc::new(ids.to_vec());
    let peers = Arc::new(peers);
    // One rising counter numbers every node's reports, so each counts (the ledger ignores a
    // number it has seen).
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let beats = measure(
        "heartbeats: PUT /nodes/{id}/heartbeat",
        seconds,
        &clients,
        move |c, node| {
            let (ids, peers) = (movies.clone(), peers.clone());
            let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                // A cache's report: two movies held, bytes sent to two viewers, one from the origin.
                let hb = Heartbeat {
                    holdings: vec![
                        Holding {
                            video: ids[0].clone(),
                            indices: vec![16, 17, 18, 19],
                        },
                        Holding {
                            video: ids[1].clone(),
                            indices: vec![20, 21],
                        },
                    ],
                    sent: vec![
                        PeerBytes::new(peers[1].clone(), ids[0].clone(), 262_144),
                        PeerBytes::new(peers[2].clone(), ids[1].clone(), 131_072),
                    ],
                    received: vec![PeerBytes::new("origin", ids[0].clone(), 65_536)],
                    seq,
                    ..Heartbeat::default()
                };
                c.heartbeat(&node, &hb).await.is_ok()
            }
        },
    )
    .await;
    // Every client buys every movie once: a fixed batch of charges, timed whole.
    let started = Instant::now();
    let buyers: Vec<_> = clients
        .iter()
        .cloned()
        .map(|(c, _)| {
            let ids = ids.to_vec();
            tokio::spawn(async move {
                for id in &ids {
                    let bought = c.buy(id).await.expect("purchase");
                    assert_eq!(bought.charged, 1, "{id} charged once");
                }
            })
        })
        .collect();
    for b in buyers {
        b.await.unwrap();
    }
    let purchases = (CLIENTS * ids.len()) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<44} {purchases:>9.0} /s",
        "purchases: POST /videos/{id}/buy"
    );
    println!(
        "heartbeats at {:.0}% of the ceiling, catalogue reads at {:.0}%",
        100.0 * beats / ceiling,
        100.0 * reads / ceiling
    );
    Figures {
        ceiling,
        reads,
        beats,
        purchases,
    }
}
