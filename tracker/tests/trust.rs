//! Accounts that lie, played against a real tracker on 127.0.0.1:0: minting points with
//! made-up transfers, replaying heartbeats, getting a movie through claimed holdings, and
//! fetching outside a ticket's indices. Each test is an attack that worked before the
//! ledger, the proofs and ticket indices (see docs/trust.md), beside the honest case that
//! still earns.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rivulet_localnet::{LocalNetwork, MovieSpec};
use rivulet_node_core::format::Manifest;
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult, ChunkServer};
use rivulet_node_core::ticket::TicketKey;
use rivulet_tracker_client::{
    ChunkRef, ClientError, ErrorCode, Heartbeat, HeartbeatReply, Holding, NodeRegistration,
    PeerBytes, TicketRequest, TrackerClient,
};

/// 10 000 bytes a point, so a few chunks show.
const BYTES_PER_POINT: u64 = 10_000;

struct Net {
    net: LocalNetwork,
    manifest: Manifest,
}

impl Net {
    async fn start() -> Net {
        let net = LocalNetwork::temp()
            .engine(rivulet_localnet::test_engine!())
            .movie(MovieSpec::sample("m", 2).size(320, 240).price(10))
            .initial_points(100)
            .bytes_per_point(BYTES_PER_POINT)
            .placement_interval(Duration::from_millis(100))
            // Caches here register at addresses nobody serves (tests/reach.rs probes real ones).
            .configure(|c| c.require_reach = false)
            .start()
            .await
            .unwrap();
        let manifest = std::fs::read(net.stream_file("m").with_file_name("manifest.json")).unwrap();
        let manifest = Manifest::from_json(&manifest).unwrap();
        Net { net, manifest }
    }

    async fn user(&self, name: &str) -> TrackerClient {
        self.net.user(name, "correct-horse-42").await.unwrap()
    }

    /// Bytes `chunks` receipts are worth.
    fn worth(&self, chunks: &[ChunkRef]) -> u64 {
        chunks
            .iter()
            .map(|c| self.manifest.chunk_len(c.0) as u64)
            .sum()
    }
}

/// A cache registration at `addr` with `upload_bps`.
fn cache_at(addr: &str, upload_bps: u64) -> NodeRegistration {
    NodeRegistration::cache(addr, addr, upload_bps, 1_500_000_000)
}

/// Heartbeats `node` until the reply satisfies `done` (within 10 s); returns that reply.
async fn beat_until(
    client: &TrackerClient,
    node: &str,
    hb: &Heartbeat,
    done: impl Fn(&HeartbeatReply) -> bool,
) -> HeartbeatReply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.heartbeat(node, hb).await.unwrap();
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; last reply {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cache of `owner` that placement has placed with movie `m` (a purchase gives it demand).
async fn placed_cache(owner: &TrackerClient, addr: &str) -> (String, Vec<u16>) {
    let id = owner
        .register_node(&cache_at(addr, 100_000_000))
        .await
        .unwrap()
        .node_id;
    let reply = beat_until(owner, &id, &Heartbeat::default(), |r| {
        r.hold.iter().any(|h| h.video == "m")
    })
    .await;
    let indices = reply
        .hold
        .iter()
        .find(|h| h.video == "m")
        .unwrap()
        .indices
        .clone();
    (id, indices)
}

fn receipts(peer: &str, chunks: &[ChunkRef], worth: u64) -> PeerBytes {
    PeerBytes {
        chunks: chunks.to_vec(),
        ..PeerBytes::new(peer, "m", worth)
    }
}

/// A viewer report: watching `m`, these receipts, number `seq`.
fn report(seq: u64, received: Vec<PeerBytes>) -> Heartbeat {
    Heartbeat {
        seq,
        watching: Some("m".into()),
        received,
        ..Heartbeat::default()
    }
}

/// A cache report of bytes sent.
fn sent(seq: u64, to: &str, bytes: u64) -> Heartbeat {
    Heartbeat {
        seq,
        sent: vec![PeerBytes::new(to, "m", bytes)],
        ..Heartbeat::default()
    }
}

async fn credited(client: &TrackerClient) -> u64 {
    client.me().await.unwrap().credited_bytes
}

fn chunks(list: &[(u32, u16)]) -> Vec<ChunkRef> {
    list.iter().map(|&(s, i)| ChunkRef(s, i)).collect()
}

#[tokio::test]
async fn receipts_from_a_viewer_that_bought_the_movie_earn_once_even_when_sent_again() {
    let t = Net::start().await;
    let (alice, bob) = (t.user("alice").await, t.user("bob").await);
    bob.buy("m").await.unwrap();
    let (cache, _) = placed_cache(&alice, "127.0.0.1:2121").await;
    let view = bob
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let got = chunks(&[(0, 0), (0, 1), (0, 2)]);
    let worth = t.worth(&got);
    alice
        .heartbeat(&cache, &sent(1, &view, 10 * worth))
        .await
        .unwrap();
    let hb = report(1, vec![receipts(&cache, &got, worth)]);
    bob.heartbeat(&view, &hb).await.unwrap();
    assert_eq!(credited(&alice).await, worth, "the honest transfer earns");
    // The reply was lost, so the viewer sends the same report again: counted once.
    bob.heartbeat(&view, &hb).await.unwrap();
    // A new report with the same receipts: each chunk counts once per watch.
    bob.heartbeat(&view, &report(2, vec![receipts(&cache, &got, worth)]))
        .await
        .unwrap();
    assert_eq!(credited(&alice).await, worth);
    // Unnumbered reports never count.
    let more = chunks(&[(0, 3)]);
    bob.heartbeat(
        &view,
        &report(0, vec![receipts(&cache, &more, t.worth(&more))]),
    )
    .await
    .unwrap();
    assert_eq!(credited(&alice).await, worth);
    assert_eq!(credited(&bob).await, 0);
    // The admin accounts view names who alice's credit came from: all of it from bob.
    let db = t.net.db();
    sqlx::query("UPDATE accounts SET admin = 1 WHERE username = 'bob'")
        .execute(&db)
        .await
        .unwrap();
    // Made admin underneath the tracker, which remembers bob's session as it was.
    t.net.server().forget_sessions();
    let accounts = bob.admin_accounts().await.unwrap();
    let a = accounts.iter().find(|a| a.username == "alice").unwrap();
    let top = a.top_counterpart.as_ref().unwrap();
    assert_eq!(
        (top.username.as_str(), top.credited_bytes, top.percent),
        ("bob", worth, 100)
    );
    assert!(
        accounts
            .iter()
            .find(|a| a.username == "bob")
            .unwrap()
            .top_counterpart
            .is_none()
    );
}

#[tokio::test]
async fn a_cache_naming_itself_or_its_own_viewer_earns_nothing() {
    let t = Net::start().await;
    let alice = t.user("alice").await;
    alice.buy("m").await.unwrap();
    let (cache, _) = placed_cache(&alice, "127.0.0.1:2121").await;
    let view = alice
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let got = chunks(&[(0, 0), (0, 1)]);
    let worth = t.worth(&got);
    // Self-peer: the cache sends to and receives from itself, 2^40 bytes each way.
    let selfie = Heartbeat {
        seq: 1,
        sent: vec![PeerBytes::new(&cache, "m", 1 << 40)],
        received: vec![receipts(&cache, &got, 1 << 40)],
        ..Heartbeat::default()
    };
    alice.heartbeat(&cache, &selfie).await.unwrap();
    // Same-account pair: alice's viewer confirms alice's cache.
    alice
        .heartbeat(&cache, &sent(2, &view, 1 << 40))
        .await
        .unwrap();
    alice
        .heartbeat(&view, &report(1, vec![receipts(&cache, &got, worth)]))
        .await
        .unwrap();
    assert_eq!(credited(&alice).await, 0);
    // Names the tracker never registered add no transfer rows.
    alice
        .heartbeat(&cache, &sent(3, "viewer-0000000000000000", 1 << 40))
        .await
        .unwrap();
    let db = t.net.db();
    let strangers: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM transfers WHERE to_node = 'viewer-0000000000000000'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(strangers, 0);
}

#[tokio::test]
async fn colluding_accounts_earn_nothing_without_a_purchase_or_a_peer_assignment() {
    let t = Net::start().await;
    let (alice, bob, carol) = (
        t.user("alice").await,
        t.user("bob").await,
        t.user("carol").await,
    );
    // carol's purchase gives the movie demand, so alice's cache gets placed with it.
    carol.buy("m").await.unwrap();
    let (cache, _) = placed_cache(&alice, "127.0.0.1:2121").await;
    let got = chunks(&[(0, 0), (0, 1)]);
    let worth = t.worth(&got);
    // bob never bought the movie: his viewer's "watching" and receipts count for nothing.
    let view = bob
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    alice
        .heartbeat(&cache, &sent(1, &view, 1 << 30))
        .await
        .unwrap();
    bob.heartbeat(&view, &report(1, vec![receipts(&cache, &got, 1 << 30)]))
        .await
        .unwrap();
    assert_eq!(credited(&alice).await, 0, "unbought");
    // dave bought it, but dave's receipts name a cache the tracker never gave him and never
    // placed with the movie: alice's second cache, placed with nothing yet.
    let dave = t.user("dave").await;
    dave.buy("m").await.unwrap();
    // No storage: never placed with anything.
    let stray = alice
        .register_node(&NodeRegistration::cache(
            "127.0.0.1:2122",
            "127.0.0.1:2122",
            1_000,
            0,
        ))
        .await
        .unwrap()
        .node_id;
    let dview = dave
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    alice
        .heartbeat(&stray, &sent(1, &dview, 1 << 30))
        .await
        .unwrap();
    dave.heartbeat(&dview, &report(1, vec![receipts(&stray, &got, worth)]))
        .await
        .unwrap();
    assert_eq!(credited(&alice).await, 0, "not given, not placed");
}

#[tokio::test]
async fn credit_never_exceeds_what_the_upload_could_carry_or_the_watch_needed() {
    let t = Net::start().await;
    let (alice, bob) = (t.user("alice").await, t.user("bob").await);
    bob.buy("m").await.unwrap();
    // Declared so that 20 s of its upload (with the ledger's 1.25 slack) carry two and a
    // half chunks: the ledger credits two at once.
    let chunk = t.manifest.chunk_len(0) as u64;
    let bps = chunk * 8 / 10;
    let burst = bps / 8 * 125 / 100 * 20;
    let cache = alice
        .register_node(&cache_at("127.0.0.1:2121", bps))
        .await
        .unwrap()
        .node_id;
    beat_until(&alice, &cache, &Heartbeat::default(), |r| {
        r.hold.iter().any(|h| h.video == "m")
    })
    .await;
    let view = bob
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let n = t.manifest.n;
    let segments = t.manifest.segment_count();
    let all: Vec<ChunkRef> = (0..segments)
        .flat_map(|s| (0..n).map(move |i| ChunkRef(s, i)))
        .collect();
    alice
        .heartbeat(&cache, &sent(1, &view, 1 << 40))
        .await
        .unwrap();
    bob.heartbeat(&view, &report(1, vec![receipts(&cache, &all, 1 << 40)]))
        .await
        .unwrap();
    let got = credited(&alice).await;
    assert!(
        got <= burst,
        "{got} credited from a {bps} bit/s cache at once"
    );
    assert!(got + chunk > burst, "{got}: the allowance is used");
    assert!(got >= chunk, "{got}");
    // However fast the cache, a watch confirms at most k chunks a segment: the movie's size.
    let fast = alice
        .register_node(&cache_at("127.0.0.1:2123", 10_000_000_000))
        .await
        .unwrap()
        .node_id;
    beat_until(&alice, &fast, &Heartbeat::default(), |r| {
        r.hold.iter().any(|h| h.video == "m")
    })
    .await;
    let before = credited(&alice).await;
    alice
        .heartbeat(&fast, &sent(1, &view, 1 << 40))
        .await
        .unwrap();
    bob.heartbeat(&view, &report(2, vec![receipts(&fast, &all, 1 << 40)]))
        .await
        .unwrap();
    let most: u64 = (0..segments)
        .map(|s| u64::from(t.manifest.k) * t.manifest.chunk_len(s) as u64)
        .sum();
    let watch = credited(&alice).await - before + got;
    assert!(watch <= most, "{watch} > {most}: more than the movie");
}

/// A chunk server that has nothing, for a cache that claims everything.
#[derive(Debug)]
struct Empty;

#[async_trait]
impl ChunkProvider for Empty {
    async fn chunk(&self, _video: &str, _segment: u32, _index: u16) -> ChunkResult {
        Ok(None)
    }
}

#[tokio::test]
async fn claimed_holdings_get_no_viewers_and_no_movie_and_a_failed_check_refuses_them() {
    let t = Net::start().await;
    let (mallory, bob) = (t.user("mallory").await, t.user("bob").await);
    bob.buy("m").await.unwrap();
    let origin = t.net.client().origin().await.unwrap();
    let key = TicketKey::from_hex(&origin.ticket_key).unwrap();
    // mallory's cache runs a real FTP server that holds nothing, declares 10 Gbit/s and
    // claims every index of the movie.
    let server = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "pending",
        key,
        Arc::new(Empty),
        0,
    )
    .await
    .unwrap();
    let addr = server.addr().to_string();
    let cache = mallory
        .register_node(&cache_at(&addr, 10_000_000_000))
        .await
        .unwrap()
        .node_id;
    server.set_server_id(&cache);
    let everything = Heartbeat {
        holdings: vec![Holding {
            video: "m".into(),
            indices: (0..t.manifest.n).collect(),
        }],
        ..Heartbeat::default()
    };
    // The tracker checks before it counts the claim: the check fails and the reply says so.
    let reply = beat_until(&mallory, &cache, &everything, |r| !r.refused.is_empty()).await;
    assert_eq!(reply.refused[0].video, "m");
    // Meanwhile bob's viewer never got mallory's cache as a peer.
    let view = bob
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let watching = report(1, Vec::new());
    let peers = bob.heartbeat(&view, &watching).await.unwrap().peers;
    assert!(peers.iter().all(|p| p.node_id != cache), "{peers:?}");
    // And mallory, who never bought it, gets no ticket for the movie from caches, and from
    // the origin only the indices placement gave her cache: never k of them.
    let from_a_cache = mallory
        .ticket(&TicketRequest::new(&cache, &cache, "m"))
        .await;
    assert!(
        matches!(from_a_cache, Err(ClientError::Api { status: 403, .. })),
        "{from_a_cache:?}"
    );
    let reply = beat_until(&mallory, &cache, &Heartbeat::default(), |r| {
        !r.hold.is_empty()
    })
    .await;
    let hold = &reply.hold.iter().find(|h| h.video == "m").unwrap().indices;
    assert!(hold.len() < usize::from(t.manifest.k), "{hold:?}");
    let viewer = mallory
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    match mallory
        .ticket(&TicketRequest::new(&viewer, "origin", "m"))
        .await
    {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code), (403, ErrorCode::NotBought))
        }
        other => panic!("a viewer of an unbought movie got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_origin_ticket_for_a_placed_cache_fetches_its_indices_and_nothing_else() {
    let t = Net::start().await;
    let (alice, bob) = (t.user("alice").await, t.user("bob").await);
    bob.buy("m").await.unwrap();
    let (cache, indices) = placed_cache(&alice, "127.0.0.1:2121").await;
    let ticket = alice
        .ticket(&TicketRequest::new(&cache, "origin", "m"))
        .await
        .unwrap()
        .ticket;
    let origin = t.net.client().origin().await.unwrap();
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(&origin.ftp)
        .await
        .unwrap();
    ftp.login(&cache, &ticket).await.unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .await
        .unwrap();
    ftp.set_mode(suppaftp::Mode::ExtendedPassive);
    let placed = indices[0];
    let outside = (0..t.manifest.n).find(|i| !indices.contains(i)).unwrap();
    let got = common::retr(&mut ftp, &format!("/m/0/{placed}"))
        .await
        .unwrap();
    assert!(
        t.manifest.verify_chunk(0, placed, &got).is_ok(),
        "a placed index comes whole"
    );
    match common::retr(&mut ftp, &format!("/m/0/{outside}")).await {
        Err(suppaftp::FtpError::UnexpectedResponse(r)) => assert_eq!(r.status.code(), 550),
        other => panic!("index {outside} outside the ticket: {other:?}"),
    }
    let _ = ftp.quit().await;
}

#[tokio::test]
async fn a_cache_confirming_warming_its_tracker_never_asked_for_earns_its_partner_nothing() {
    let t = Net::start().await;
    let (alice, carol, bob) = (
        t.user("alice").await,
        t.user("carol").await,
        t.user("bob").await,
    );
    // bob's purchase gives the movie demand: both colluders' caches get placed with it.
    bob.buy("m").await.unwrap();
    let (partner, _) = placed_cache(&alice, "127.0.0.1:2121").await;
    let (receiver, placed) = placed_cache(&carol, "127.0.0.1:2123").await;
    // carol's cache "received" chunks from alice's: of its own placed indices and of others,
    // none of which the tracker told it to fetch there (alice's cache holds nothing proven,
    // so it is nobody's source).
    let outside = (0..t.manifest.n).find(|i| !placed.contains(i)).unwrap();
    let got = chunks(&[(0, placed[0]), (0, placed[1]), (0, outside)]);
    let worth = t.worth(&got);
    alice
        .heartbeat(&partner, &sent(1, &receiver, 1 << 30))
        .await
        .unwrap();
    let hb = Heartbeat {
        seq: 1,
        received: vec![receipts(&partner, &got, worth)],
        ..Heartbeat::default()
    };
    let reply = carol.heartbeat(&receiver, &hb).await.unwrap();
    assert!(
        reply.sources.iter().all(|s| s.node_id != partner),
        "{reply:?}"
    );
    assert_eq!(credited(&alice).await, 0, "warming nobody asked for");
    assert_eq!(credited(&carol).await, 0);
}
