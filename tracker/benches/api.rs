//! Tracker throughput on this machine, through the typed client over loopback HTTP:
//! heartbeats/s (each a SQLite write transaction) and catalogue reads/s, beside the
//! ceiling of the same HTTP stack answering without touching the database (`GET /origin`).
//!
//! `cargo bench -p rivulet-tracker --bench api [-- SECONDS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{
    Credentials, Heartbeat, Holding, NodeRegistration, PeerBytes, TrackerClient,
};

/// Concurrent client tasks.
const CLIENTS: usize = 32;

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

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5.0);
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::create(dir.path().join("data")).unwrap();
    let clip = dir.path().join("clip.mp4");
    make_sample_movie(&clip, 2, 320, 240).unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("movie{i}")).collect();
    for id in &ids {
        let req = IngestRequest {
            input: clip.clone(),
            title: id.clone(),
            price: 0,
            id: Some(id.clone()),
        };
        ingest(&data, &req).unwrap();
    }
    let mut config = ServeConfig::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().unwrap();
    config.ftp = "127.0.0.1:0".parse().unwrap();
    config.node_timeout = Duration::from_secs(600);
    config.signup_limits.per_address = 1000;
    let server = Server::bind(config).await.unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
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
    println!(
        "{CLIENTS} clients, {seconds} s per measurement, {} movies",
        ids.len()
    );

    let ceiling = measure(
        "ceiling: GET /origin (no database)",
        seconds,
        &clients,
        |c, _| async move { c.origin().await.is_ok() },
    )
    .await;
    let reads = measure(
        "catalogue reads: GET /videos (20 movies)",
        seconds,
        &clients,
        |c, _| async move { c.videos().await.is_ok() },
    )
    .await;
    let ids = Arc::new(ids);
    let peers = Arc::new(peers);
    // One rising counter numbers every node's reports, so each counts (the ledger ignores a
    // number it has seen).
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let beats = measure(
        "heartbeats: PUT /nodes/{id}/heartbeat",
        seconds,
        &clients,
        move |c, node| {
            let (ids, peers) = (ids.clone(), peers.clone());
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
    println!(
        "heartbeats at {:.0}% of the ceiling, catalogue reads at {:.0}%",
        100.0 * beats / ceiling,
        100.0 * reads / ceiling
    );
    server.shutdown().await.unwrap();
}
