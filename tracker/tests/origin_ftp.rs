//! The origin's FTP server with real suppaftp clients: a ticket for a movie fetches any of
//! its chunks, parity included, which verify against the manifest; everything else is
//! refused: no ticket, an expired, forged or misdirected one, another movie, paths outside
//! the store, writes.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use common::retr;
use rivulet_localnet::{LocalNetwork, MovieSpec};
use rivulet_node_core::format::Manifest;
use rivulet_node_core::ticket::{TicketClaims, TicketSigner};
use rivulet_tracker::server::Server;
use rivulet_tracker_client::{
    ClientError, Credentials, ErrorCode, NodeKind, NodeRegistration, TicketRequest, TrackerClient,
};
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode};

async fn tracker(dir: &std::path::Path, ftp: &str) -> LocalNetwork {
    let ftp: SocketAddr = ftp.parse().unwrap();
    let movies =
        ["m", "other"].map(|id| MovieSpec::sample(id, 3).size(320, 240).title(id).price(0));
    LocalNetwork::builder(dir)
        .movies(movies)
        .configure(move |config| config.ftp = ftp)
        .start()
        .await
        .unwrap()
}

/// A logged-in account with a viewer node that bought "m".
async fn viewer(server: &Server, name: &str) -> (TrackerClient, String) {
    let c = TrackerClient::new(&server.url());
    let creds = Credentials {
        username: name.into(),
        password: "correct-horse-42".into(),
    };
    c.register(&creds).await.unwrap();
    let c = c.clone().with_token(c.login(&creds).await.unwrap().token);
    let reg = NodeRegistration::viewer();
    let node = c.register_node(&reg).await.unwrap().node_id;
    c.buy("m").await.unwrap();
    (c, node)
}

async fn connect(addr: SocketAddr, user: &str, password: &str) -> Result<AsyncFtpStream, FtpError> {
    let mut ftp = AsyncFtpStream::connect(addr).await?;
    ftp.login(user, password).await?;
    ftp.transfer_type(FileType::Binary).await?;
    ftp.set_mode(Mode::ExtendedPassive);
    Ok(ftp)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_ticket_fetches_verified_chunks_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let net = tracker(dir.path(), "127.0.0.1:0").await;
    let server = net.server();
    let (c, node) = viewer(server, "vera").await;
    let origin = c.origin().await.unwrap();
    assert_eq!(origin.ftp, server.ftp_addr().to_string());
    let manifest = Manifest::from_json(&c.manifest("m").await.unwrap()).unwrap();
    let ticket = c
        .ticket(&TicketRequest::new(node.clone(), "origin", "m"))
        .await
        .unwrap();
    assert!(ticket.expires_at > now());

    let mut ftp = connect(server.ftp_addr(), &node, &ticket.ticket)
        .await
        .unwrap();
    // Data and parity chunks of every segment, over one control connection.
    let mut got = Vec::new();
    for segment in 0..manifest.segment_count() {
        for index in [0u16, 7, 16, 40, 63] {
            let wire = retr(&mut ftp, &format!("/m/{segment}/{index}"))
                .await
                .unwrap();
            manifest.verify_chunk(segment, index, &wire).unwrap();
            got.push((segment, index));
        }
    }
    assert_eq!(got.len(), manifest.segment_count() as usize * 5);
    // Not this ticket's movie, not a chunk, not inside the store: 550, the session lives on.
    let last = manifest.segment_count();
    for path in [
        "/other/0/1",
        "/m/0/64",
        &format!("/m/{last}/0"),
        "/m/0",
        "../../etc/passwd",
        "/etc/passwd",
        "/m/../../data/ticket.key/1",
    ] {
        match retr(&mut ftp, path).await {
            Err(FtpError::UnexpectedResponse(r)) => assert_eq!(r.status.code(), 550, "{path}"),
            other => panic!("{path}: expected 550, got {other:?}"),
        }
    }
    // Read-only.
    let mut body = std::io::Cursor::new(b"junk".to_vec());
    assert!(ftp.put_file("/m/0/99", &mut body).await.is_err());
    retr(&mut ftp, "/m/0/1").await.unwrap();
    ftp.quit().await.unwrap();

    // The origin counted what it sent to viewers.
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rivulet_origin_sent_bytes_total{to=\"viewer\"} "))
        .unwrap()
        .parse()
        .unwrap();
    let expected: usize = (0..manifest.segment_count())
        .map(|s| 5 * manifest.wire_len(s))
        .sum::<usize>()
        + manifest.wire_len(0);
    assert_eq!(sent, expected as u64, "{metrics}");
    let key = std::fs::read(dir.path().join("data/ticket.key")).unwrap();
    let signer = TicketSigner::from_seed(&key.try_into().unwrap());
    let claims = |holder: &str, server: &str, video: &str, expires_at: u64| {
        signer.issue(&TicketClaims {
            holder: holder.into(),
            server: server.into(),
            video: video.into(),
            expires_at,
            indices: None,
        })
    };
    let forged = TicketSigner::from_seed(&[9; 32]).issue(&TicketClaims {
        holder: node.clone(),
        server: "origin".into(),
        video: "m".into(),
        expires_at: now() + 600,
        indices: None,
    });
    let refused = [
        ("anonymous".to_owned(), "guest@".to_owned()),
        (node.clone(), String::new()),
        (node.clone(), claims(&node, "origin", "m", now() - 1)),
        (node.clone(), forged),
        (node.clone(), claims(&node, "cache-0123", "m", now() + 600)),
        (
            "viewer-someone-else".to_owned(),
            claims(&node, "origin", "m", now() + 600),
        ),
        (node.clone(), "not.a.ticket".to_owned()),
    ];
    for (user, password) in refused {
        match connect(server.ftp_addr(), &user, &password).await {
            Err(FtpError::UnexpectedResponse(r)) => {
                assert_eq!(r.status.code(), 530, "{user} {password:.20}")
            }
            Err(e) => panic!("{user}: expected 530, got {e}"),
            Ok(_) => panic!("{user} {password:.30}: logged in"),
        }
    }
    net.shutdown().await;
}

#[tokio::test]
async fn tickets_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let net = tracker(dir.path(), "127.0.0.1:0").await;
    let server = net.server();
    let (c, node) = viewer(server, "walt").await;
    let ask = |holder: &str, server: &str, video: &str| {
        let c = c.clone();
        let req = TicketRequest::new(holder, server, video);
        async move { c.ticket(&req).await }
    };
    let code = |r: Result<_, ClientError>| match r {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        Ok(_) => panic!("expected a refusal"),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        code(ask(&node, "origin", "other").await),
        (403, ErrorCode::NotBought)
    );
    assert_eq!(
        code(ask(&node, "origin", "nope").await),
        (404, ErrorCode::NotFound)
    );
    assert_eq!(
        code(ask("viewer-not-mine", "origin", "m").await),
        (404, ErrorCode::NotFound)
    );
    assert_eq!(
        code(ask(&node, "cache-nowhere", "m").await),
        (404, ErrorCode::NotFound)
    );
    assert_eq!(
        code(
            TrackerClient::new(&server.url())
                .ticket(&TicketRequest::new(node.clone(), "origin", "m"))
                .await
        ),
        (401, ErrorCode::Unauthorized)
    );
    // Another account cannot use walt's node.
    let (x, _) = viewer(server, "xena").await;
    assert_eq!(
        code(
            x.ticket(&TicketRequest::new(node.clone(), "origin", "m"))
                .await
        ),
        (404, ErrorCode::NotFound)
    );
    ask(&node, "origin", "m").await.unwrap();
    // A cache of an account that did not buy the movie gets no ticket for it either: the
    // data chunks are the movie's bytes.
    let cache = NodeRegistration {
        kind: NodeKind::Cache,
        bind: "127.0.0.1:2999".into(),
        advertise: "127.0.0.1:2999".into(),
        upload_bps: 0,
        storage_bytes: 0,
        addrs: Vec::new(),
        fingerprint: None,
    };
    let cache = c.register_node(&cache).await.unwrap().node_id;
    assert_eq!(
        code(ask(&cache, "origin", "other").await),
        (403, ErrorCode::NotBought)
    );
    ask(&cache, "origin", "m").await.unwrap();
    net.shutdown().await;
}

#[tokio::test]
async fn the_origin_serves_over_ipv6_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let net = tracker(dir.path(), "[::1]:0").await;
    let server = net.server();
    let (c, node) = viewer(server, "yuki").await;
    let manifest = Manifest::from_json(&c.manifest("m").await.unwrap()).unwrap();
    let ticket = c
        .ticket(&TicketRequest::new(node.clone(), "origin", "m"))
        .await
        .unwrap();
    assert!(server.ftp_addr().is_ipv6());
    let mut ftp = connect(server.ftp_addr(), &node, &ticket.ticket)
        .await
        .unwrap();
    let wire = retr(&mut ftp, "/m/0/50").await.unwrap();
    manifest.verify_chunk(0, 50, &wire).unwrap();
    net.shutdown().await;
}
