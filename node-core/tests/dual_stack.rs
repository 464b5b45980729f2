//! One cache listening on `[::]` (IPv6 with IPV6_V6ONLY off) serves an IPv6 viewer on
//! `[::1]` and an IPv4 viewer on `127.0.0.1`, both over EPSV data connections, from its
//! limited passive port range.

use std::sync::Arc;
use std::time::Duration;

use rivulet_node_core::peer::chunk_server::ChunkServer;
use rivulet_node_core::peer::ftp::ChunkSession;
use rivulet_node_core::peer::limits::ServerLimits;
use rivulet_node_core::ticket::TicketSigner;

mod common;
use common::{CHUNK, Synthetic};

#[tokio::test]
async fn one_dual_stack_cache_serves_an_ipv6_and_an_ipv4_viewer() {
    let signer = TicketSigner::from_seed(&[11; 32]);
    // A free range of its own, so other tests' servers do not take these ports.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first = probe.local_addr().unwrap().port();
    drop(probe);
    let limits = ServerLimits {
        passive_ports: (first, first.saturating_add(7)),
        ..ServerLimits::default()
    };
    let server = ChunkServer::start_with_limits(
        "[::]:0".parse().unwrap(),
        "cache-1",
        signer.public_key(),
        Arc::new(Synthetic),
        0,
        limits,
    )
    .await
    .unwrap();
    let port = server.addr().port();
    assert!(server.addr().is_ipv6(), "{}", server.addr());
    for (holder, addr) in [
        ("viewer-6", format!("[::1]:{port}")),
        ("viewer-4", format!("127.0.0.1:{port}")),
    ] {
        let ticket = common::ticket(&signer, holder, "cache-1", "film", 300);
        let mut session = tokio::time::timeout(
            Duration::from_secs(10),
            ChunkSession::connect(&addr, holder, &ticket, "film", Duration::from_secs(5)),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{holder} at {addr}: {e}"));
        let chunk = session.fetch(0, 1, CHUNK).await.unwrap();
        assert_eq!(chunk.len(), CHUNK, "{holder}");
    }
    let by_peer = server.served().take_by_peer();
    for holder in ["viewer-6", "viewer-4"] {
        assert!(
            by_peer.iter().any(|(p, _, b)| p == holder && *b > 0),
            "{holder}: {by_peer:?}"
        );
    }
    server.shutdown().await;
}
