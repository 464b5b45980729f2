//! FTPS between a real chunk server and the real FTP client with pinned fingerprints: the
//! right pin fetches byte-exact; a wrong pin, a server showing the pinned certificate
//! without its key, and a plain-only server are refused before the ticket is sent and
//! nothing is fetched; a plain client to a server that requires TLS is turned away.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rivulet_node_core::peer::chunk_server::{ChunkServer, ServerTls};
use rivulet_node_core::peer::ftp::{ChunkSession, FetchError};
use rivulet_node_core::peer::tls::{self, Identity};
use rivulet_node_core::ticket::TicketSigner;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod common;
use common::{CHUNK, Synthetic, ticket};

const T: Duration = Duration::from_secs(10);

fn identity(dir: &Path, name: &str) -> Identity {
    Identity::load_or_create(
        dir,
        &format!("{name}-cert.pem"),
        &format!("{name}-key.pem"),
        name,
    )
    .unwrap()
}

async fn server(signer: &TicketSigner, tls: Option<ServerTls>) -> ChunkServer {
    let server = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "cache-1",
        signer.public_key(),
        Arc::new(Synthetic),
        0,
    )
    .await
    .unwrap();
    server.set_tls(tls);
    server
}

fn forced(identity: &Identity) -> Option<ServerTls> {
    Some(ServerTls {
        config: identity.server_config().unwrap(),
        forced: true,
    })
}

#[tokio::test]
async fn the_right_pin_fetches_byte_exact_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cache = identity(dir.path(), "cache");
    let signer = TicketSigner::from_seed(&[5; 32]);
    let server = server(&signer, forced(&cache)).await;
    let addr = server.addr().to_string();
    let good = ticket(&signer, "viewer-a", "cache-1", "film", 60);
    let mut session = ChunkSession::connect_pinned(
        &addr,
        "viewer-a",
        &good,
        "film",
        T,
        Some(&cache.fingerprint),
    )
    .await
    .unwrap();
    for i in 0..4u16 {
        assert_eq!(
            session.fetch(0, i, CHUNK).await.unwrap(),
            vec![i as u8; CHUNK]
        );
    }
    let batch = session.fetch_batch(2, &[1, 3], CHUNK, false).await.unwrap();
    assert_eq!(
        batch.len(),
        1,
        "unframed chunks: the first takes the transfer"
    );
    assert!(matches!(
        session.fetch(0, 64, CHUNK).await,
        Err(FetchError::Missing { .. })
    ));
    session.close().await;
    assert!(server.served().distinct_bytes() >= 4 * CHUNK as u64);
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_pin_is_untrusted_and_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = identity(dir.path(), "cache");
    let other = identity(dir.path(), "other");
    let signer = TicketSigner::from_seed(&[5; 32]);
    let server = server(&signer, forced(&cache)).await;
    let addr = server.addr().to_string();
    let good = ticket(&signer, "viewer-a", "cache-1", "film", 60);
    // The tracker named `other`'s certificate: whoever answers here is not that peer.
    let got = ChunkSession::connect_pinned(
        &addr,
        "viewer-a",
        &good,
        "film",
        T,
        Some(&other.fingerprint),
    )
    .await;
    match got {
        Err(FetchError::Untrusted { reason, .. }) => {
            assert!(reason.contains(tls::NOT_PINNED), "{reason}")
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert_eq!(server.served().distinct_bytes(), 0);
    assert!(server.served().take_by_peer().is_empty());
    server.shutdown().await;
}

/// Presents a certificate chain with a key that is not its own.
#[derive(Debug)]
struct Impostor(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn the_pinned_certificate_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let victim = identity(dir.path(), "victim");
    let attacker = identity(dir.path(), "attacker");
    // The attacker copied the victim's (public) certificate but signs with its own key:
    // the fingerprint matches, the handshake signature must not.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_file(&attacker.key_path).unwrap())
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&victim.cert_path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Impostor(Arc::new(
            rustls::sign::CertifiedKey::new(chain, key),
        ))));
    let signer = TicketSigner::from_seed(&[5; 32]);
    let server = server(
        &signer,
        Some(ServerTls {
            config: Arc::new(config),
            forced: true,
        }),
    )
    .await;
    let addr = server.addr().to_string();
    let good = ticket(&signer, "viewer-a", "cache-1", "film", 60);
    let got = ChunkSession::connect_pinned(
        &addr,
        "viewer-a",
        &good,
        "film",
        T,
        Some(&victim.fingerprint),
    )
    .await;
    assert!(matches!(got, Err(FetchError::Untrusted { .. })), "{got:?}");
    assert_eq!(server.served().distinct_bytes(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_pinning_client_never_falls_back_to_plain() {
    let dir = tempfile::tempdir().unwrap();
    let cache = identity(dir.path(), "cache");
    let signer = TicketSigner::from_seed(&[5; 32]);
    let plain_only = server(&signer, None).await;
    let addr = plain_only.addr().to_string();
    let good = ticket(&signer, "viewer-a", "cache-1", "film", 60);
    let got = ChunkSession::connect_pinned(
        &addr,
        "viewer-a",
        &good,
        "film",
        T,
        Some(&cache.fingerprint),
    )
    .await;
    assert!(matches!(got, Err(FetchError::Untrusted { .. })), "{got:?}");
    assert_eq!(plain_only.served().distinct_bytes(), 0);
    plain_only.shutdown().await;
}

#[tokio::test]
async fn a_plain_client_is_turned_away_where_tls_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let cache = identity(dir.path(), "cache");
    let signer = TicketSigner::from_seed(&[5; 32]);
    let good = ticket(&signer, "viewer-a", "cache-1", "film", 60);

    // Required of every client (what a non-loopback client meets: `plain_allowed`).
    assert!(!tls::plain_allowed("203.0.113.9".parse().unwrap(), false));
    let required = server(&signer, forced(&cache)).await;
    let addr = required.addr().to_string();
    let got = ChunkSession::connect(&addr, "viewer-a", &good, "film", T).await;
    assert!(got.is_err(), "a plain log-in was let in");
    assert_eq!(required.served().distinct_bytes(), 0);
    required.shutdown().await;

    // Offered, not forced: a loopback client may still go plain.
    let offered = server(
        &signer,
        Some(ServerTls {
            config: cache.server_config().unwrap(),
            forced: false,
        }),
    )
    .await;
    let addr = offered.addr().to_string();
    let mut plain = ChunkSession::connect(&addr, "viewer-a", &good, "film", T)
        .await
        .unwrap();
    assert_eq!(plain.fetch(1, 2, CHUNK).await.unwrap(), vec![3u8; CHUNK]);
    plain.close().await;
    let mut pinned = ChunkSession::connect_pinned(
        &addr,
        "viewer-a",
        &good,
        "film",
        T,
        Some(&cache.fingerprint),
    )
    .await
    .unwrap();
    assert_eq!(pinned.fetch(1, 2, CHUNK).await.unwrap(), vec![3u8; CHUNK]);
    pinned.close().await;
    offered.shutdown().await;
}
