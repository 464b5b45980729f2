//! Movies in an object store, against a real 3-node Garage cluster each test starts on
//! loopback (`rivulet_localnet::TestGarage`): ingest uploads a real ffmpeg-made movie, an
//! origin reading it with ranged GETs serves the same chunks byte for byte as one reading
//! the local folder, hostile objects (missing, truncated, corrupt, half-ingested) are clear
//! errors and never panics, the command line works end to end, and a viewer watches a movie
//! whose only source is a standalone origin reading Garage.

mod common;

use std::path::Path;
use std::time::Duration;

use rivulet_localnet::{LocalNetwork, TestGarage};
use rivulet_node_core::format::Manifest;
use rivulet_node_core::headless;
use rivulet_node_core::peer::ftp::ChunkSession;
use rivulet_node_core::ticket::TicketSigner;
use rivulet_node_core::viewer::WatchOptions;
use rivulet_tracker::catalogue::StoredVideo;
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{self, IngestRequest, IngestTarget};
use rivulet_tracker::nodes::ORIGIN;
use rivulet_tracker::origin::{Origin, OriginConfig};
use rivulet_tracker::store::{SegmentCache, SegmentKey, StoreChunker, StoreError};
use rivulet_tracker::tickets;

/// Every test's bound: Garage, ffmpeg and the transfers together.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

async fn garage() -> TestGarage {
    match TestGarage::start().await {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    }
}

/// A real movie made by ffmpeg: `seconds` of 640x360 H.264 at about 4 Mbit/s, so that it
/// spans several segments.
fn movie(dir: &Path, seconds: u32) -> std::path::PathBuf {
    common::make_media(
        dir,
        "movie.mp4",
        seconds,
        &[
            "-s",
            "640x360",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "4M",
            "-c:a",
            "aac",
        ],
    )
}

/// Ingests `input` as `id` into the data dir `data`, off the async runtime.
async fn ingest_local(data: &Path, input: &Path, id: &str) -> StoredVideo {
    let (data, input, id) = (data.to_owned(), input.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        let data = DataDir::create(&data).unwrap();
        ingest::ingest(&data, &request(&input, &id)).unwrap();
        StoredVideo::load(&data, &id).unwrap()
    })
    .await
    .unwrap()
}

fn request(input: &Path, id: &str) -> IngestRequest {
    IngestRequest {
        input: input.to_owned(),
        title: format!("Movie {id}"),
        price: 0,
        id: Some(id.into()),
    }
}

/// A session with `origin` for `video`, holding a ticket `signer` signed.
async fn session(signer: &TicketSigner, origin: &str, video: &str) -> ChunkSession {
    let claims = tickets::claims(
        "viewer-1",
        ORIGIN,
        video,
        rivulet_node_core::clock::unix_secs(),
        None,
    );
    ChunkSession::connect(
        origin,
        "viewer-1",
        &signer.issue(&claims),
        video,
        FETCH_TIMEOUT,
    )
    .await
    .unwrap()
}

/// Every data chunk and two parity chunks of every segment of `m`.
async fn all_chunks(s: &mut ChunkSession, m: &Manifest) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for segment in 0..m.segment_count() {
        let mut indices: Vec<u16> = (0..m.k).collect();
        indices.extend([m.k, m.n - 1]);
        for i in indices {
            out.push(s.fetch(segment, i, 1 << 22).await.unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_reading_garage_serves_the_same_bytes_as_one_reading_the_folder() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let g = garage().await;
        let dir = tempfile::tempdir().unwrap();
        let input = movie(dir.path(), 12);
        let data = dir.path().join("data");
        let local = ingest_local(&data, &input, "film").await;
        let m = &local.manifest;
        assert!(m.segment_count() >= 3, "{} segments", m.segment_count());
        // The folder ingest made, uploaded as it is: the same stream file in both stores.
        let store = g.movies("exact");
        store.upload_movie(&local.dir, "film").await.unwrap();

        // Ranged GETs read exactly the bytes asked for, across segment edges too.
        let file = std::fs::read(local.stream_path()).unwrap();
        for range in [
            0..1,
            1000..(1 << 20) + 5000,
            (file.len() as u64 - 17)..file.len() as u64,
        ] {
            let got = store
                .read_range("film", "stream.mkv", range.clone())
                .await
                .unwrap();
            assert_eq!(got, file[range.start as usize..range.end as usize]);
        }
        // Past the end: truncated, one clear line.
        let past = file.len() as u64;
        let e = store
            .read_range("film", "stream.mkv", past - 10..past + 10)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Truncated { got: 10, .. }), "{e}");

        // The store's catalogue is the folder's.
        let (listed, bad) = store.list().await.unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].record, local.record);
        assert_eq!(listed[0].manifest, local.manifest);

        let signer = TicketSigner::from_seed(&[7; 32]);
        let from_folder = Origin::bind(OriginConfig::loopback(
            data.clone(),
            None,
            signer.public_key(),
        ))
        .await
        .unwrap();
        let mut cached = OriginConfig::loopback(
            dir.path().join("origin-data"),
            Some((g.url("exact"), g.settings())),
            signer.public_key(),
        );
        // Room for two segments: the cache turns over while the movie is read.
        cached.segment_cache_bytes = 2 << 20;
        let from_store = Origin::bind(cached).await.unwrap();
        let mut a = session(&signer, &from_folder.addr().to_string(), "film").await;
        let mut b = session(&signer, &from_store.addr().to_string(), "film").await;
        let folder_chunks = all_chunks(&mut a, m).await;
        let store_chunks = all_chunks(&mut b, m).await;
        assert_eq!(folder_chunks.len(), store_chunks.len());
        assert!(folder_chunks == store_chunks, "the chunks differ");
        // And again, now partly from the cache.
        assert!(all_chunks(&mut b, m).await == folder_chunks);
        a.close().await;
        b.close().await;
        from_folder.shutdown().await;
        from_store.shutdown().await;
    })
    .await
    .expect("within the test's time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_objects_are_clear_errors_and_the_origin_keeps_serving() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let g = garage().await;
        let dir = tempfile::tempdir().unwrap();
        let input = movie(dir.path(), 6);
        let data = dir.path().join("data");
        let local = ingest_local(&data, &input, "good").await;
        let store = g.movies("hostile");
        let file = std::fs::read(local.stream_path()).unwrap();
        for id in ["good", "short", "gone", "flipped", "noleaves"] {
            store.upload_movie(&local.dir, id).await.unwrap();
        }
        // A second upload of a committed id is refused.
        let again = store.upload_movie(&local.dir, "good").await.unwrap_err();
        assert!(again.to_string().contains("already taken"), "{again}");
        // The record names itself: the copies need their own.
        for id in ["short", "gone", "flipped", "noleaves"] {
            let mut record = local.record.clone();
            record.id = id.into();
            store
                .put_raw(id, "video.json", serde_json::to_vec(&record).unwrap())
                .await
                .unwrap();
        }
        store
            .put_raw("short", "stream.mkv", file[..file.len() - 1000].to_vec())
            .await
            .unwrap();
        store
            .put_raw("gone", "stream.mkv", Vec::new())
            .await
            .unwrap();
        let mut flipped = file.clone();
        flipped[file.len() / 2] ^= 0x40;
        store
            .put_raw("flipped", "stream.mkv", flipped)
            .await
            .unwrap();
        store.remove_movie("noleaves").await.unwrap();
        for f in ["stream.mkv", "manifest.json", "poster.jpg"] {
            let bytes = std::fs::read(local.dir.join(f)).unwrap();
            store.put_raw("noleaves", f, bytes).await.unwrap();
        }
        let mut record = local.record.clone();
        record.id = "noleaves".into();
        store
            .put_raw(
                "noleaves",
                "video.json",
                serde_json::to_vec(&record).unwrap(),
            )
            .await
            .unwrap();
        // Half an ingest (no record) is no movie; a broken record is named, not a panic.
        store
            .put_raw("halfway", "stream.mkv", file[..4096].to_vec())
            .await
            .unwrap();
        store
            .put_raw("broken", "video.json", b"{not json".to_vec())
            .await
            .unwrap();

        let (listed, bad) = store.list().await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|v| v.record.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ["flipped", "gone", "good", "noleaves", "short"]);
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].to_string().contains("broken") && bad[0].to_string().contains("video.json"),
            "{}",
            bad[0]
        );

        let cache = std::sync::Arc::new(SegmentCache::new(8 << 20));
        let load = |id: &str| {
            let mut v = local.clone();
            v.record.id = id.into();
            v
        };
        let last = local.manifest.segment_count() - 1;
        let middle = (file.len() as u64 / 2 / u64::from(local.manifest.segment_size)) as u32;
        let short = std::sync::Arc::new(StoreChunker::open(&store, &load("short")).await.unwrap());
        let e = short.segment(&cache, last).await.unwrap_err();
        assert!(matches!(e, StoreError::Truncated { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("hostile/short/stream.mkv is truncated"),
            "{e}"
        );
        let gone = std::sync::Arc::new(StoreChunker::open(&store, &load("gone")).await.unwrap());
        let e = gone.segment(&cache, 0).await.unwrap_err();
        assert!(matches!(e, StoreError::Truncated { got: 0, .. }), "{e}");
        let flipped =
            std::sync::Arc::new(StoreChunker::open(&store, &load("flipped")).await.unwrap());
        let e = flipped.segment(&cache, middle).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains(&format!("segment {middle}")), "{e}");
        let e = StoreChunker::open(&store, &load("noleaves"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::NotFound(_)) && e.to_string().contains("leaves.bin"),
            "{e}"
        );
        // No segment that failed its read is kept.
        for (id, segment) in [("short", last), ("gone", 0), ("flipped", middle)] {
            let key = SegmentKey {
                video: id.into(),
                file: local.manifest.blake3,
                segment,
            };
            assert!(!cache.has(&key), "{id} segment {segment} kept");
        }

        // Through the origin: each hostile movie fails its transfer; the good one is served.
        let signer = TicketSigner::from_seed(&[9; 32]);
        let origin = Origin::bind(OriginConfig::loopback(
            dir.path().join("origin-data"),
            Some((g.url("hostile"), g.settings())),
            signer.public_key(),
        ))
        .await
        .unwrap();
        let addr = origin.addr().to_string();
        for (id, segment) in [
            ("short", last),
            ("gone", 0),
            ("flipped", middle),
            ("noleaves", 0),
        ] {
            let mut s = session(&signer, &addr, id).await;
            assert!(s.fetch(segment, 0, 1 << 22).await.is_err(), "{id} served");
        }
        let mut s = session(&signer, &addr, "good").await;
        let chunk = s.fetch(last, 0, 1 << 22).await.unwrap();
        assert!(!chunk.is_empty());
        origin.shutdown().await;
    })
    .await
    .expect("within the test's time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_ingests_into_garage_and_a_standalone_origin_serves_it() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let g = garage().await;
        let dir = tempfile::tempdir().unwrap();
        let input = movie(dir.path(), 6);
        let data = dir.path().join("data");
        let url = g.url("cli");
        let with_env = |args: &[&str]| {
            let mut c = common::tracker();
            c.args(args).arg("--data").arg(&data).envs(g.env());
            c
        };
        let out = with_env(&[
            "ingest",
            input.to_str().unwrap(),
            "--title",
            "Clip",
            "--id",
            "clip",
            "--store",
            &url,
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert_eq!(common::stdout(&out), "clip");
        // Nothing was left in the data dir: the movie is in the store only.
        common::assert_nothing_left(&data);
        let again = with_env(&[
            "ingest",
            input.to_str().unwrap(),
            "--title",
            "Clip",
            "--id",
            "clip",
            "--store",
            &url,
        ])
        .output()
        .unwrap();
        common::assert_one_line_error(&again, "video id \"clip\" is already taken");

        // Bad stores: one line, non-zero, quickly.
        let bad = with_env(&[
            "ingest",
            input.to_str().unwrap(),
            "--title",
            "X",
            "--store",
            "movies/x",
        ])
        .output()
        .unwrap();
        common::assert_one_line_error(&bad, "expected s3://BUCKET");
        let no_keys = common::run(
            &data,
            &[
                "ingest",
                input.to_str().unwrap(),
                "--title",
                "X",
                "--store",
                &url,
            ],
        );
        common::assert_one_line_error(&no_keys, "AWS_ACCESS_KEY_ID is not set");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let started = std::time::Instant::now();
        let unreachable = with_env(&[
            "ingest",
            input.to_str().unwrap(),
            "--title",
            "X",
            "--store",
            &url,
        ])
        .env("AWS_ENDPOINT_URL", format!("http://{closed}"))
        .output()
        .unwrap();
        common::assert_one_line_error(&unreachable, "cli/");
        assert!(started.elapsed() < Duration::from_secs(60));

        // A standalone origin with the tracker's public key serves the movie.
        let signer = TicketSigner::from_seed(&[3; 32]);
        let mut origin = with_env(&[
            "origin",
            "--store",
            &url,
            "--ftp",
            "127.0.0.1:0",
            "--ticket-key",
            &signer.public_key().to_hex(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        let addr = {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(origin.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            line.trim().to_owned()
        };
        let stored = g.movies("cli").load("clip").await.unwrap();
        let m = &stored.manifest;
        let codec = m.codec();
        let mut s = session(&signer, &addr, "clip").await;
        let mut rebuilt = Vec::new();
        for segment in 0..m.segment_count() {
            // Parity only: every byte is decoded from chunks the origin computed.
            let mut wires = Vec::new();
            for i in m.k..2 * m.k {
                wires.push((i, s.fetch(segment, i, 1 << 22).await.unwrap()));
            }
            let payloads: Vec<(u16, &[u8])> = wires
                .iter()
                .map(|(i, w)| (*i, m.verify_chunk(segment, *i, w).unwrap()))
                .collect();
            rebuilt.extend(m.rebuild_segment(&codec, segment, &payloads).unwrap());
        }
        assert_eq!(blake3::hash(&rebuilt).as_bytes(), &m.blake3.0);
        s.close().await;
        // Bad origin settings: one line each.
        let bad_key = with_env(&["origin", "--store", &url, "--ticket-key", "zz"])
            .output()
            .unwrap();
        common::assert_one_line_error(&bad_key, "not a public ticket key");
        let no_key = with_env(&["origin", "--store", &url]).output().unwrap();
        common::assert_one_line_error(&no_key, "no ticket key");
        // `ticket-key` prints the public half of the data dir's key, which origins take.
        let tracker_key = tickets::load_or_create(&data)
            .unwrap()
            .public_key()
            .to_hex();
        let printed = with_env(&["ticket-key"]).output().unwrap();
        assert_eq!(common::stdout(&printed), tracker_key);
        let bad_store = with_env(&["origin", "--store", "s3:/movies"])
            .output()
            .unwrap();
        common::assert_one_line_error(&bad_store, "expected s3://BUCKET");
        let serve = with_env(&["serve", "--store", "gs://movies", "--http", "127.0.0.1:0"])
            .output()
            .unwrap();
        common::assert_one_line_error(&serve, "expected s3://BUCKET");
        terminate(&mut origin);
    })
    .await
    .expect("within the test's time");
}

/// Stops a child process with SIGTERM and waits for it.
fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_watches_a_movie_whose_only_source_is_an_origin_reading_garage() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let g = garage().await;
        let dir = tempfile::tempdir().unwrap();
        let input = movie(dir.path(), 8);
        let store = g.movies("e2e");
        let staging = dir.path().join("staging-data");
        {
            let (store, staging, input) = (store.clone(), staging.clone(), input.clone());
            tokio::task::spawn_blocking(move || {
                let data = DataDir::create(&staging).unwrap();
                ingest::ingest_to(&data, IngestTarget::Store(&store), &request(&input, "film"))
                    .unwrap();
            })
            .await
            .unwrap();
        }
        // The tracker's key exists before either starts, so the origin can take its public half.
        let data = dir.path().join("tracker-data");
        std::fs::create_dir_all(&data).unwrap();
        let key = tickets::load_or_create(&data).unwrap().public_key();
        let origin = Origin::bind(OriginConfig::loopback(
            dir.path().join("origin-data"),
            Some((g.url("e2e"), g.settings())),
            key,
        ))
        .await
        .unwrap();
        let (url, s3, at) = (g.url("e2e"), g.settings(), origin.addr().to_string());
        let net = LocalNetwork::builder(dir.path().join("net"))
            .data_dir(&data)
            .configure(move |c| {
                c.store = Some(url);
                c.s3 = Some(s3);
                c.origin_address = Some(at);
            })
            .start()
            .await
            .unwrap();
        net.register("ann", "watcher-pass-1").await.unwrap();
        let out = dir.path().join("watched.mkv");
        let report = headless::watch(
            &net.url(),
            "ann",
            "watcher-pass-1",
            "film",
            &out,
            &WatchOptions::default(),
            true,
        )
        .await
        .unwrap();
        let stored = store.load("film").await.unwrap();
        let watched = std::fs::read(&out).unwrap();
        assert_eq!(watched.len() as u64, stored.manifest.file_size);
        assert_eq!(blake3::hash(&watched).as_bytes(), &stored.manifest.blake3.0);
        assert_eq!(report.from_caches_bytes, 0);
        let sent = origin
            .served()
            .to_viewers
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            sent >= stored.manifest.file_size,
            "the standalone origin sent it: {sent}"
        );
        // The tracker's poster comes from the store too.
        let poster = reqwest::get(format!("{}/api/v1/videos/film/poster", net.url()))
            .await
            .unwrap();
        assert_eq!(poster.status(), 200);
        assert_eq!(
            poster.bytes().await.unwrap().to_vec(),
            store.read("film", "poster.jpg").await.unwrap()
        );
        net.shutdown().await;
        origin.shutdown().await;
    })
    .await
    .expect("within the test's time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_keeps_serving_when_a_garage_node_dies_mid_movie() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut g = garage().await;
        let dir = tempfile::tempdir().unwrap();
        let input = movie(dir.path(), 8);
        let data = dir.path().join("data");
        let local = ingest_local(&data, &input, "film").await;
        g.movies("quorum")
            .upload_movie(&local.dir, "film")
            .await
            .unwrap();
        let signer = TicketSigner::from_seed(&[4; 32]);
        let folder = Origin::bind(OriginConfig::loopback(data, None, signer.public_key()))
            .await
            .unwrap();
        let mut config = OriginConfig::loopback(
            dir.path().join("origin-data"),
            Some((g.url("quorum"), g.settings())),
            signer.public_key(),
        );
        // No segment kept: every batch after the kill is read from the cluster again.
        config.segment_cache_bytes = 0;
        let store = Origin::bind(config).await.unwrap();
        let m = &local.manifest;
        let mut a = session(&signer, &folder.addr().to_string(), "film").await;
        let mut b = session(&signer, &store.addr().to_string(), "film").await;
        let half = m.segment_count() / 2;
        for segment in 0..m.segment_count() {
            if segment == half {
                // Node 3 dies (the origin talks to node 1): 2 of 3 replicas still answer.
                g.kill_node(2);
            }
            let want = a.fetch(segment, m.k + 1, 1 << 22).await.unwrap();
            let got = b.fetch(segment, m.k + 1, 1 << 22).await.unwrap();
            assert!(want == got, "segment {segment} differs");
        }
        a.close().await;
        b.close().await;
        folder.shutdown().await;
        store.shutdown().await;
    })
    .await
    .expect("within the test's time");
}
