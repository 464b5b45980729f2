//! The tracker's HTTP API against strangers who try to choke it or to lock others out, over
//! real sockets on loopback (attackers on their own 127.x addresses): thousands of
//! connections trickling their headers (slowloris), one address opening more than its share,
//! wrong passwords aimed at someone else's account, and a forged `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rivulet_tracker::http_serve::HttpLimits;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{Credentials, TrackerClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A tracker with no movies, its configuration adjusted by `tune`.
async fn tracker(tune: impl FnOnce(&mut ServeConfig)) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().unwrap();
    config.ftp = "127.0.0.1:0".parse().unwrap();
    tune(&mut config);
    let server = Server::bind(config).await.unwrap();
    (dir, server)
}

/// HTTP limits as deployed, except that loopback is held to them like any other address.
fn strict() -> HttpLimits {
    HttpLimits {
        exempt_loopback: false,
        ..HttpLimits::default()
    }
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// Whether the server closes `stream` within `within` (it may answer something first).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// 2,000 connections from eight strangers' addresses, each sending its request headers a
/// few bytes at a time, more than the connection cap: the API still answers within a second
/// throughout, and every trickler is closed once the header deadline has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_sockets_do_not_silence_the_api() {
    let (_dir, server) = tracker(|c| {
        c.http_limits = HttpLimits {
            max_connections: 1500,
            header_read_timeout: Duration::from_secs(3),
            ..strict()
        };
    })
    .await;
    let addr = server.http_addr();
    let mut tricklers = tokio::task::JoinSet::new();
    for i in 0..2000u32 {
        let from = IpAddr::from([127, 0, 2, 1 + (i % 8) as u8]);
        let Ok(mut s) = connect_from(from, addr).await else {
            continue;
        };
        tricklers.spawn(async move {
            let started = Instant::now();
            let mut buf = [0u8; 256];
            let head = b"GET /api/v1/videos HTTP/1.1\r\nHost: x\r\n";
            if s.write_all(head).await.is_err() {
                return started.elapsed();
            }
            loop {
                if s.write_all(b"X").await.is_err() {
                    return started.elapsed();
                }
                match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                    _ => {}
                }
                if started.elapsed() > Duration::from_secs(30) {
                    return started.elapsed();
                }
            }
        });
    }
    let client = TrackerClient::new(&server.url());
    for _ in 0..10 {
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(1), client.videos())
            .await
            .expect("the API answers within 1 s while 2,000 sockets trickle")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(started.elapsed() < Duration::from_millis(1100));
    }
    let mut longest = Duration::ZERO;
    while let Some(lived) = tricklers.join_next().await {
        longest = longest.max(lived.unwrap());
    }
    assert!(
        longest < Duration::from_secs(8),
        "a connection that never finished its headers stayed {longest:?}"
    );
    server.shutdown().await.unwrap();
}

/// One address gets `per_address` connections; the rest are closed at once, and the API
/// still answers another address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_of_connections() {
    let limits = strict();
    let (_dir, server) = tracker(|c| c.http_limits = limits).await;
    let addr = server.http_addr();
    let greedy = IpAddr::from([127, 0, 3, 1]);
    let mut held = Vec::new();
    for _ in 0..limits.per_address + 40 {
        held.push(connect_from(greedy, addr).await.unwrap());
    }
    let mut closed = 0;
    for s in &mut held {
        if closed_within(s, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 40,
        "connections past the address's share are closed"
    );
    TrackerClient::new(&server.url()).videos().await.unwrap();
    drop(held);
    server.shutdown().await.unwrap();
}

fn creds(username: &str, password: &str) -> Credentials {
    Credentials {
        username: username.into(),
        password: password.into(),
    }
}

/// Logs in as `user` from `from` (optionally through a proxy's `X-Forwarded-For`); the
/// HTTP status.
async fn log_in(
    server: &Server,
    from: IpAddr,
    forwarded_for: Option<&str>,
    user: &str,
    password: &str,
) -> u16 {
    let http = reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = http
        .post(format!("{}/api/v1/sessions", server.url()))
        .json(&creds(user, password));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap().status().as_u16()
}

const GOOD: &str = "correct-horse-42";
const BAD: &str = "wrong-pass-1";

/// A stranger's wrong passwords lock out only the stranger: the user still logs in from
/// their own address. A spray from many addresses holds back new addresses but not the
/// ones the user has logged in from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_out_from_another_address_is_refused() {
    let (_dir, server) = tracker(|c| c.login_limits.per_address = 1000).await;
    let home = IpAddr::from([127, 0, 0, 1]);
    TrackerClient::new(&server.url())
        .register(&creds("dave", GOOD))
        .await
        .unwrap();
    assert_eq!(log_in(&server, home, None, "dave", GOOD).await, 200);

    let stranger = IpAddr::from([127, 0, 4, 1]);
    for _ in 0..5 {
        assert_eq!(log_in(&server, stranger, None, "dave", BAD).await, 401);
    }
    assert_eq!(log_in(&server, stranger, None, "dave", GOOD).await, 429);
    assert_eq!(log_in(&server, home, None, "dave", GOOD).await, 200);

    // Forty-five more wrong passwords, one from each of forty-five addresses: fifty in all,
    // ten times the per-address limit.
    for host in 1..=45u8 {
        let from = IpAddr::from([127, 0, 5, host]);
        assert_eq!(log_in(&server, from, None, "dave", BAD).await, 401);
    }
    let new_place = IpAddr::from([127, 0, 6, 1]);
    assert_eq!(log_in(&server, new_place, None, "dave", GOOD).await, 429);
    assert_eq!(log_in(&server, home, None, "dave", GOOD).await, 200);
    server.shutdown().await.unwrap();
}

/// `X-Forwarded-For` names the client only when it comes from the trusted proxy: a
/// stranger forging it is still counted by its own address, and behind the proxy a
/// stranger's failures do not lock out the user's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_the_trusted_proxy() {
    let proxy = IpAddr::from([127, 0, 7, 1]);
    let (_dir, server) = tracker(|c| c.trusted_proxy = Some(proxy)).await;
    TrackerClient::new(&server.url())
        .register(&creds("erin", GOOD))
        .await
        .unwrap();

    // A stranger forging a new address each time is still one address.
    let forger = IpAddr::from([127, 0, 8, 1]);
    for i in 0..5 {
        let fake = format!("198.51.100.{i}");
        assert_eq!(log_in(&server, forger, Some(&fake), "erin", BAD).await, 401);
    }
    assert_eq!(
        log_in(&server, forger, Some("198.51.100.99"), "erin", GOOD).await,
        429
    );

    // Through the proxy, the address it forwards is the client's.
    for _ in 0..5 {
        assert_eq!(
            log_in(&server, proxy, Some("203.0.113.5"), "erin", BAD).await,
            401
        );
    }
    assert_eq!(
        log_in(&server, proxy, Some("203.0.113.5"), "erin", GOOD).await,
        429
    );
    assert_eq!(
        log_in(&server, proxy, Some("10.0.0.1, 198.51.100.7"), "erin", GOOD).await,
        200
    );
    server.shutdown().await.unwrap();
}
