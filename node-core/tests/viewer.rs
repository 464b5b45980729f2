//! The viewer's fetching against real FTP chunk servers that misbehave: one sends the wrong
//! chunk, one garbage, one cuts chunks short, one is not there at all, one is slow. The
//! rebuilt movie is still byte-exact, every liar is blamed and never counted, and the slow
//! one is raced by the origin.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rivulet_node_core::format::{Manifest, StreamChunker, build_manifest};
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult, ChunkServer};
use rivulet_node_core::ticket::{TicketClaims, TicketSigner};
use rivulet_node_core::viewer::sources::Sources;
use rivulet_node_core::viewer::stream::{Stream, StreamFile, Window};
use rivulet_node_core::viewer::{DEFAULT_SPILL_BYTES, Progress};
use rivulet_tracker_client::{HeartbeatReply, Peer, VideoTicket};
use tokio::io::AsyncReadExt;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    Honest,
    WrongChunk,
    Garbage,
    Short,
    Slow,
}

#[derive(Debug)]
struct Provider {
    chunker: StreamChunker,
    behaviour: Behaviour,
}

#[async_trait]
impl ChunkProvider for Provider {
    async fn chunk(&self, _video: &str, segment: u32, index: u16) -> ChunkResult {
        let n = self.chunker.manifest().n;
        let wire = |i: u16| self.chunker.chunk(segment, i).map_err(|e| e.to_string());
        Ok(Some(match self.behaviour {
            Behaviour::Honest => wire(index)?,
            Behaviour::WrongChunk => wire((index + 1) % n)?,
            Behaviour::Garbage => vec![0x5a; wire(index)?.len()],
            Behaviour::Short => {
                let mut w = wire(index)?;
                w.truncate(w.len() / 2);
                w
            }
            Behaviour::Slow => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                wire(index)?
            }
        }))
    }
}

fn movie(dir: &Path) -> (Manifest, Vec<u8>, std::path::PathBuf) {
    let path = dir.join("movie.bin");
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let (manifest, _) = build_manifest(&path, 32 * 1024, 8, 32).unwrap();
    (manifest, bytes, path)
}

fn ticket(signer: &TicketSigner, server: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    signer.issue(&TicketClaims {
        holder: "viewer-1".into(),
        server: server.into(),
        video: "film".into(),
        expires_at: now + 600,
        indices: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_are_blamed_the_dead_skipped_the_slow_raced_and_the_movie_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes, path) = movie(dir.path());
    let signer = TicketSigner::from_seed(&[9; 32]);
    let mut servers = Vec::new();
    let mut peers = Vec::new();
    let behaviours = [
        ("origin", Behaviour::Honest),
        ("cache-honest", Behaviour::Honest),
        ("cache-wrong", Behaviour::WrongChunk),
        ("cache-garbage", Behaviour::Garbage),
        ("cache-short", Behaviour::Short),
        ("cache-slow", Behaviour::Slow),
    ];
    let (_, leaves) = build_manifest(&path, 32 * 1024, 8, 32).unwrap();
    for (i, (id, behaviour)) in behaviours.iter().enumerate() {
        let chunker = StreamChunker::open(&path, manifest.clone(), leaves.clone()).unwrap();
        let server = ChunkServer::start(
            "127.0.0.1:0".parse().unwrap(),
            id,
            signer.public_key(),
            Arc::new(Provider {
                chunker,
                behaviour: *behaviour,
            }),
            0,
        )
        .await
        .unwrap();
        if *id != "origin" {
            // Each cache holds 4 distinct indices: together, all 8 data chunks and more.
            let first = (i as u16 - 1) * 4;
            peers.push(Peer {
                node_id: id.to_string(),
                addr: server.addr().to_string(),
                addrs: Vec::new(),
                fingerprint: None,
                video: "film".into(),
                indices: (first..first + 4).collect(),
                rate: 1_000_000,
                ticket: ticket(&signer, id),
                expires_at: 0,
            });
        }
        servers.push(server);
    }
    // A cache that is not there at all.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap().to_string();
    drop(gone);
    peers.push(Peer {
        node_id: "cache-gone".into(),
        addr: gone_addr,
        addrs: Vec::new(),
        fingerprint: None,
        video: "film".into(),
        indices: vec![20, 21, 22, 23],
        rate: 1_000_000,
        ticket: ticket(&signer, "cache-gone"),
        expires_at: 0,
    });
    let sources = Arc::new(Sources::new(
        "film",
        "viewer-1",
        &servers[0].addr().to_string(),
        Duration::from_secs(10),
    ));
    sources.update(&HeartbeatReply {
        hold: Vec::new(),
        placed: false,
        peers,
        origin: vec![VideoTicket {
            video: "film".into(),
            ticket: ticket(&signer, "origin"),
            expires_at: 0,
        }],
        ..HeartbeatReply::default()
    });
    let progress = Arc::new(Progress::default());
    let stream = Stream::start(
        Arc::new(manifest.clone()),
        &dir.path().join("rebuilt"),
        sources.clone(),
        Window {
            parallel: 2,
            ahead: None,
            segment_time: None,
        },
        progress.clone(),
        StreamFile::Sealed {
            spill_bytes: DEFAULT_SPILL_BYTES,
        },
    )
    .unwrap();
    // Unnamed: the rebuilt bytes have no name on disk while they are read.
    assert!(
        !dir.path().join("rebuilt").exists(),
        "the rebuilt file has a name"
    );
    let mut rebuilt = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        stream.reader().read_to_end(&mut rebuilt),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(rebuilt == bytes, "the rebuilt movie differs");
    let blamed = sources.blamed();
    assert_eq!(blamed, vec!["cache-garbage", "cache-short", "cache-wrong"]);
    let from = progress.by_peer();
    for liar in &blamed {
        assert!(!from.contains_key(liar), "{liar} counted: {from:?}");
    }
    assert!(from["cache-honest"] > 0);
    assert!(from["origin"] > 0);
    // The slow cache answered after its requests were raced: the origin filled in.
    assert_eq!(
        stream.shared().complete_segments(),
        manifest.segment_count()
    );
    for server in servers {
        server.shutdown().await;
    }
}
