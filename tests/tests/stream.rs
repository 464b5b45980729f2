//! The viewer's stream as a player sees it, against a real tracker and origin: read in
//! order, seek anywhere (also to parts not rebuilt yet) through `AsyncSeek` and through
//! loopback HTTP Range requests, with the random token required; old hidden downloads are
//! cleaned.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rivulet_localnet::{LocalNetwork, MovieSpec};
use rivulet_node_core::format::Manifest;
use rivulet_node_core::viewer::http::StreamServer;
use rivulet_node_core::viewer::{self, Viewer, WatchOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const PASSWORD: &str = "stream-pass-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_reads_and_seeks_the_stream_over_rust_and_http() {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("film", 24).price(0))
        .start()
        .await
        .unwrap();
    net.register("player", PASSWORD).await.unwrap();
    let client = net.login("player", PASSWORD).await.unwrap();
    client.buy("film").await.unwrap();
    let video = client.video("film").await.unwrap();
    let manifest = Arc::new(Manifest::from_json(&client.manifest("film").await.unwrap()).unwrap());
    let origin = std::fs::read(net.stream_file("film")).unwrap();
    // Real time with a short look-ahead: most of the movie is not there when we seek.
    let options = WatchOptions {
        realtime: true,
        look_ahead: 1,
        parallel: 1,
        ..WatchOptions::default()
    };
    let download = net.path(".film.part");
    let session = Viewer::open(
        &client,
        "film",
        manifest.clone(),
        video.duration_ms,
        &download,
        &options,
    )
    .await
    .unwrap();
    let shared = session.stream().shared().clone();
    assert!(manifest.segment_count() >= 6);

    // From Rust: the head, then a seek near the end, which waits for that segment only.
    let mut reader = session.stream().reader();
    let mut head = vec![0u8; 1000];
    reader.read_exact(&mut head).await.unwrap();
    assert_eq!(head, origin[..1000]);
    let tail_at = origin.len() as u64 - 5000;
    reader.seek(SeekFrom::Start(tail_at)).await.unwrap();
    let mut tail = vec![0u8; 5000];
    tokio::time::timeout(Duration::from_secs(10), reader.read_exact(&mut tail))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tail, origin[origin.len() - 5000..]);
    assert!(
        shared.complete_segments() < manifest.segment_count(),
        "the seek fetched the end without the middle"
    );
    assert_eq!(shared.seek_delays().len(), 1, "the seek's wait is recorded");
    assert!(reader.seek(SeekFrom::End(1)).await.is_err());
    assert!(
        reader
            .seek(SeekFrom::Current(-(origin.len() as i64) - 1))
            .await
            .is_err()
    );

    // Over HTTP: ranges anywhere, the token required.
    let server = StreamServer::start(shared.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let middle = origin.len() / 2;
    let got = http
        .get(server.url())
        .header("Range", format!("bytes={middle}-{}", middle + 99_999))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 206);
    assert_eq!(
        got.headers()["content-range"],
        format!("bytes {middle}-{}/{}", middle + 99_999, origin.len()).as_str()
    );
    assert_eq!(got.bytes().await.unwrap(), origin[middle..middle + 100_000]);
    let suffix = http
        .get(server.url())
        .header("Range", "bytes=-777")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.status(), 206);
    assert_eq!(suffix.bytes().await.unwrap(), origin[origin.len() - 777..]);
    let beyond = http
        .get(server.url())
        .header("Range", format!("bytes={}-", origin.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    let (base, token) = server.url().rsplit_once('/').unwrap();
    for url in [
        format!("{base}/{}", "0".repeat(token.len())),
        format!("{}0", server.url()),
    ] {
        assert_eq!(http.get(&url).send().await.unwrap().status(), 404, "{url}");
    }
    let whole = http.get(server.url()).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), origin);
    server.shutdown().await;
    session.close().await;
    net.shutdown().await;
}

#[test]
fn hidden_downloads_older_than_seven_days_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.part");
    let fresh = dir.path().join("fresh.part");
    std::fs::write(&old, b"x").unwrap();
    std::fs::write(&fresh, b"y").unwrap();
    let eight_days = Duration::from_secs(8 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - eight_days)
        .unwrap();
    assert_eq!(
        viewer::clean_downloads(dir.path(), viewer::DOWNLOAD_MAX_AGE),
        1
    );
    assert!(!old.exists() && fresh.exists());
    assert_eq!(
        viewer::clean_downloads(&dir.path().join("missing"), viewer::DOWNLOAD_MAX_AGE),
        0
    );
}
