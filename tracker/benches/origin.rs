//! Chunk throughput of an origin reading a 3-node Garage cluster (ranged GETs through its
//! segment cache) against one reading the local folder, same movie, same run: 4 clients at
//! once, each fetching its own 16 chunk indices of every segment in batches of 16 (as four
//! caches filling their slices do), over plain FTP on loopback.
//!
//! `cargo bench -p rivulet-tracker --bench origin [-- SECONDS_OF_MOVIE]` (default 60 s of
//! 640x360 H.264 at 4 Mbit/s, 29 segments of 1 MiB). Needs `garage` (installer/deps.sh).

use std::path::Path;
use std::time::{Duration, Instant};

use rivulet_localnet::TestGarage;
use rivulet_node_core::format::Manifest;
use rivulet_node_core::peer::ftp::ChunkSession;
use rivulet_node_core::ticket::TicketSigner;
use rivulet_tracker::catalogue::StoredVideo;
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{self, IngestRequest};
use rivulet_tracker::nodes::ORIGIN;
use rivulet_tracker::origin::{Origin, OriginConfig};
use rivulet_tracker::tickets;

const CLIENTS: u16 = 4;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Every client's indices of every segment once; returns (wire bytes, seconds).
async fn pass(origin: &str, signer: &TicketSigner, m: &Manifest) -> (u64, f64) {
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (origin, m) = (origin.to_owned(), m.clone());
        let holder = format!("bench-{c}");
        let claims = tickets::claims(
            &holder,
            ORIGIN,
            "film",
            rivulet_node_core::clock::unix_secs(),
            None,
        );
        let ticket = signer.issue(&claims);
        clients.spawn(async move {
            let mut s = ChunkSession::connect(&origin, &holder, &ticket, "film", TIMEOUT)
                .await
                .expect("the origin takes the session");
            let indices: Vec<u16> = (c * m.k..(c + 1) * m.k).collect();
            let mut bytes = 0u64;
            for segment in 0..m.segment_count() {
                let got = s
                    .fetch_batch(segment, &indices, 1 << 22, false)
                    .await
                    .expect("the origin sends the chunks");
                assert_eq!(got.len(), indices.len(), "every chunk of segment {segment}");
                bytes += got.iter().map(|(_, w)| w.len() as u64).sum::<u64>();
            }
            s.close().await;
            bytes
        });
    }
    let mut bytes = 0;
    while let Some(done) = clients.join_next().await {
        bytes += done.expect("a client finished");
    }
    (bytes, started.elapsed().as_secs_f64())
}

/// Passes over the movie for at least two seconds; their bytes per chunk count and time.
async fn passes(origin: &str, signer: &TicketSigner, m: &Manifest) -> (u64, f64) {
    let (mut bytes, mut secs, mut rounds) = (0, 0.0, 0);
    while secs < 2.0 {
        let (b, s) = pass(origin, signer, m).await;
        (bytes, secs, rounds) = (bytes + b, secs + s, rounds + 1);
    }
    (bytes / rounds, secs / rounds as f64)
}

fn report(name: &str, (bytes, secs): (u64, f64), chunks: u64) {
    println!(
        "{name:<44} {:>8.1} MB/s {:>8.0} chunks/s  ({:.2} s)",
        bytes as f64 / secs / 1e6,
        chunks as f64 / secs,
        secs
    );
}

fn make_movie(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let out = dir.join("movie.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x360:rate=25")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
        ])
        .arg(seconds.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "4M",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the movie");
    out
}

#[tokio::main]
async fn main() {
    let seconds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60);
    let garage = TestGarage::start().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let input = make_movie(dir.path(), seconds);
    let data = dir.path().join("data");
    let local = {
        let (data, input) = (data.clone(), input.clone());
        tokio::task::spawn_blocking(move || {
            let data = DataDir::create(&data).expect("a data dir");
            let request = IngestRequest {
                input,
                title: "Film".into(),
                price: 0,
                id: Some("film".into()),
            };
            ingest::ingest(&data, &request).expect("ingest");
            StoredVideo::load(&data, "film").expect("the movie loads")
        })
        .await
        .expect("ingest ran")
    };
    let store = garage.movies("bench");
    store
        .upload_movie(&local.dir, "film")
        .await
        .expect("upload");
    let m = local.manifest.clone();
    let chunks = u64::from(CLIENTS) * u64::from(m.k) * u64::from(m.segment_count());
    println!(
        "movie: {} bytes, {} segments; {CLIENTS} clients x {} chunks per segment",
        m.file_size,
        m.segment_count(),
        m.k
    );
    // One client, one segment at a time: what a single ranged GET costs.
    let mut took = Vec::new();
    for segment in 0..m.segment_count() {
        let at = m.segment_offset(segment);
        let len = m.segment_len(segment) as u64;
        let started = Instant::now();
        store
            .read_range("film", "stream.mkv", at..at + len)
            .await
            .expect("a ranged GET");
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    println!(
        "{:<44} median {:.1} ms, max {:.1} ms",
        "one ranged GET of a segment, alone",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    let signer = TicketSigner::from_seed(&[5; 32]);
    let origin = |store: Option<(String, _)>, cache: u64| {
        let mut config = OriginConfig::loopback(dir.path().join("o"), store, signer.public_key());
        config.data = data.clone();
        config.segment_cache_bytes = cache;
        Origin::bind(config)
    };
    let folder = origin(None, 0).await.expect("folder origin");
    let addr = folder.addr().to_string();
    pass(&addr, &signer, &m).await; // page cache warm, as a serving origin's is
    report("local folder", passes(&addr, &signer, &m).await, chunks);
    folder.shutdown().await;

    let url = garage.url("bench");
    // Cold: three fresh origins, each reading every segment from Garage once.
    for _ in 0..3 {
        let fresh = origin(Some((url.clone(), garage.settings())), 256 << 20)
            .await
            .expect("store origin");
        let at = fresh.addr().to_string();
        let cold = pass(&at, &signer, &m).await;
        report("Garage, cold segment cache (256 MiB)", cold, chunks);
        fresh.shutdown().await;
    }
    let cached = origin(Some((url.clone(), garage.settings())), 256 << 20)
        .await
        .expect("store origin");
    let addr = cached.addr().to_string();
    pass(&addr, &signer, &m).await;
    report(
        "Garage, warm segment cache",
        passes(&addr, &signer, &m).await,
        chunks,
    );
    cached.shutdown().await;
    let uncached = origin(Some((url, garage.settings())), 0)
        .await
        .expect("store origin");
    let addr = uncached.addr().to_string();
    report(
        "Garage, no segment cache (a GET per batch)",
        pass(&addr, &signer, &m).await,
        chunks,
    );
    uncached.shutdown().await;
}
