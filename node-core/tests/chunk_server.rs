//! The chunk server with a real FTP client: a ticket opens its movie's chunks, the shared
//! upload cap holds the sending rate down (and can be changed while serving), and bytes are
//! counted per receiver; several chunks of a segment travel in one transfer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rivulet_node_core::format::encode_chunk;
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult, ChunkServer};
use rivulet_node_core::peer::ftp::{ChunkSession, FetchError};
use rivulet_node_core::ticket::TicketSigner;

mod common;
use common::{CHUNK, Synthetic, ticket};

#[tokio::test]
async fn tickets_caps_and_counts() {
    let signer = TicketSigner::from_seed(&[3; 32]);
    let server = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "pending",
        signer.public_key(),
        Arc::new(Synthetic),
        0,
    )
    .await
    .unwrap();
    // A cache learns its id after binding; tickets for the old id stop working.
    server.set_server_id("cache-1");
    let addr = server.addr().to_string();
    let t = Duration::from_secs(10);
    let stale = ticket(&signer, "viewer-a", "pending", "film", 60);
    assert!(matches!(
        ChunkSession::connect(&addr, "viewer-a", &stale, "film", t).await,
        Err(FetchError::Refused { .. })
    ));
    let good = ticket(&signer, "viewer-a", "cache-1", "film", 60);
    let mut session = ChunkSession::connect(&addr, "viewer-a", &good, "film", t)
        .await
        .unwrap();

    // Uncapped: four chunks quickly, exact bytes.
    for i in 0..4u16 {
        let got = session.fetch(0, i, CHUNK).await.unwrap();
        assert_eq!(got, vec![i as u8; CHUNK]);
    }
    assert!(matches!(
        session.fetch(0, 64, CHUNK).await,
        Err(FetchError::Missing { .. })
    ));
    // A peer that sends more than asked for is cut off at the limit (what it sent then
    // fails verification).
    let cut = session.fetch(0, 5, CHUNK - 1).await.unwrap();
    assert_eq!(cut.len(), CHUNK - 1);

    // Capped at 8 Mbit/s (1 MB/s): 1 MiB cannot arrive in much less than a second.
    server.upload_cap().set(8_000_000);
    let mut session = ChunkSession::connect(&addr, "viewer-a", &good, "film", t)
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..4u16 {
        session.fetch(1, i, CHUNK).await.unwrap();
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "1 MiB at 8 Mbit/s took {took:?}"
    );

    // The cap is shared: two sessions together still get 1 MB/s.
    let other = ticket(&signer, "viewer-b", "cache-1", "film", 60);
    let mut b = ChunkSession::connect(&addr, "viewer-b", &other, "film", t)
        .await
        .unwrap();
    let mut a = ChunkSession::connect(&addr, "viewer-a", &good, "film", t)
        .await
        .unwrap();
    let started = Instant::now();
    let (ra, rb) = tokio::join!(
        async {
            for i in 0..2u16 {
                a.fetch(2, i, CHUNK).await.unwrap();
            }
        },
        async {
            for i in 0..2u16 {
                b.fetch(3, i, CHUNK).await.unwrap();
            }
        }
    );
    let _ = (ra, rb);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "2 × 512 KiB shared at 8 Mbit/s took {took:?}"
    );

    let mut served = server.served().take_by_peer();
    served.sort();
    let bytes = |peer: &str| {
        served
            .iter()
            .find(|(p, v, _)| p == peer && v == "film")
            .map(|(_, _, b)| *b)
    };
    // viewer-a: 4 + the cut-off one (sent whole by the server) + 4 + 2 chunks; viewer-b: 2.
    assert_eq!(bytes("viewer-a"), Some(11 * CHUNK as u64));
    assert_eq!(bytes("viewer-b"), Some(2 * CHUNK as u64));
    assert!(server.served().take_by_peer().is_empty(), "taken once");
    server.shutdown().await;
}

/// Framed chunks of 64 KiB for even indices only; index 6 is sent framed as index 7 (a
/// liar), index 8 is twice as long as any other.
#[derive(Debug)]
struct Framed;

const FRAMED_PAYLOAD: usize = 64 * 1024;

fn framed(segment: u32, index: u16, len: usize) -> Vec<u8> {
    encode_chunk(segment, index, &[], &vec![index as u8 ^ 0x5a; len])
}

#[async_trait]
impl ChunkProvider for Framed {
    async fn chunk(&self, _video: &str, segment: u32, index: u16) -> ChunkResult {
        Ok(match index {
            6 => Some(framed(segment, 7, FRAMED_PAYLOAD)),
            8 => Some(framed(segment, 8, 2 * FRAMED_PAYLOAD)),
            i if i % 2 == 0 => Some(framed(segment, i, FRAMED_PAYLOAD)),
            _ => None,
        })
    }
}

#[tokio::test]
async fn a_batch_brings_what_the_server_holds_in_one_transfer() {
    let signer = TicketSigner::from_seed(&[4; 32]);
    let server = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "cache-2",
        signer.public_key(),
        Arc::new(Framed),
        0,
    )
    .await
    .unwrap();
    let addr = server.addr().to_string();
    let t = Duration::from_secs(10);
    let good = ticket(&signer, "viewer-a", "cache-2", "film", 60);
    let mut session = ChunkSession::connect(&addr, "viewer-a", &good, "film", t)
        .await
        .unwrap();
    let max = framed(0, 0, FRAMED_PAYLOAD).len();

    // Held ones come in the order asked; the odd ones are missing there.
    let got = session
        .fetch_batch(3, &[4, 1, 0, 3, 2], max, false)
        .await
        .unwrap();
    let indices: Vec<u16> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [4, 0, 2]);
    for (i, wire) in &got {
        assert_eq!(*wire, framed(3, *i, FRAMED_PAYLOAD));
    }
    // None held: an empty answer, and the session still works.
    assert!(
        session
            .fetch_batch(3, &[1, 3], max, false)
            .await
            .unwrap()
            .is_empty()
    );
    // A chunk framed under another index is handed over as the one asked for (the caller's
    // verification then fails and blames the sender).
    let got = session.fetch_batch(1, &[6, 2], max, false).await.unwrap();
    assert_eq!(got[0].0, 6);
    assert_eq!(got[0].1, framed(1, 7, FRAMED_PAYLOAD));
    assert_eq!(got[1], (2, framed(1, 2, FRAMED_PAYLOAD)));
    // One chunk over the limit ends the batch.
    assert!(matches!(
        session.fetch_batch(1, &[0, 8], max, false).await,
        Err(FetchError::TooLarge { .. })
    ));

    // Every byte sent is counted: 3 + 2 chunks, then 1 chunk and the long one.
    let served = server.served().take_by_peer();
    assert_eq!(
        served,
        [(
            "viewer-a".to_owned(),
            "film".to_owned(),
            (6 * max + framed(1, 8, 2 * FRAMED_PAYLOAD).len()) as u64
        )]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_urgent_transfer_overtakes_the_others_under_the_cap() {
    let signer = TicketSigner::from_seed(&[5; 32]);
    // 8 Mbit/s: the 16 chunks of the long transfer take about a second.
    let server = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "cache-3",
        signer.public_key(),
        Arc::new(Framed),
        8_000_000,
    )
    .await
    .unwrap();
    let addr = server.addr().to_string();
    let t = Duration::from_secs(10);
    let max = framed(0, 0, FRAMED_PAYLOAD).len();
    let connect = |who: &'static str| {
        let ticket = ticket(&signer, who, "cache-3", "film", 60);
        let addr = addr.clone();
        async move {
            ChunkSession::connect(&addr, who, &ticket, "film", t)
                .await
                .unwrap()
        }
    };
    let (mut long, mut waiting) = (connect("viewer-a").await, connect("viewer-b").await);
    // Honest ones (6 and 8 are not).
    let evens: Vec<u16> = (5..21).map(|i| i * 2).collect();
    let (long_done, urgent_done) = tokio::join!(
        async {
            let got = long.fetch_batch(0, &evens, max, false).await.unwrap();
            assert_eq!(got.len(), 16);
            Instant::now()
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let got = waiting.fetch_batch(1, &[0, 2], max, true).await.unwrap();
            assert_eq!(got.len(), 2);
            Instant::now()
        }
    );
    assert!(
        urgent_done < long_done,
        "the urgent transfer, asked for 200 ms after the long one, finished after it"
    );
    server.shutdown().await;
}
