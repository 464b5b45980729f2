//! The chunk server against strangers who try to choke it, over real sockets on loopback
//! (attackers on their own 127.x addresses): idle and NOOPing connections that never log in,
//! one address opening more than its share, a ticket holder flooding EPSV, and an urgent
//! reader that stops reading. Each test is bounded in sockets and in time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_node_core::peer::chunk_server::ChunkServer;
use rivulet_node_core::peer::ftp::ChunkSession;
use rivulet_node_core::peer::limits::ServerLimits;
use rivulet_node_core::ticket::TicketSigner;

mod common;
use common::{CHUNK, Synthetic};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// A ticket for `holder` to fetch `film` from `cache-1` for five minutes.
fn ticket(signer: &TicketSigner, holder: &str) -> String {
    common::ticket(signer, holder, "cache-1", "film", 300)
}

/// A ticketed session of `holder` to the server at `addr`, for `film`, within `timeout`.
async fn log_in(
    addr: SocketAddr,
    signer: &TicketSigner,
    holder: &str,
    timeout: Duration,
) -> Result<ChunkSession, rivulet_node_core::peer::ftp::FetchError> {
    let ticket = ticket(signer, holder);
    ChunkSession::connect(&addr.to_string(), holder, &ticket, "film", timeout).await
}

/// Limits as deployed, except that loopback is held to them like any other address.
fn strict() -> ServerLimits {
    ServerLimits {
        exempt_loopback: false,
        ..ServerLimits::default()
    }
}

async fn server(signer: &TicketSigner, upload_bps: u64, limits: ServerLimits) -> ChunkServer {
    ChunkServer::start_with_limits(
        "127.0.0.1:0".parse().unwrap(),
        "cache-1",
        signer.public_key(),
        Arc::new(Synthetic),
        upload_bps,
        limits,
    )
    .await
    .unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// A hand-driven FTP control connection, for what a polite client never does.
struct RawFtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawFtp {
    async fn login(addr: SocketAddr, user: &str, ticket: &str) -> RawFtp {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut ftp = RawFtp {
            reader: BufReader::new(r),
            writer: w,
        };
        assert_eq!(ftp.reply().await.0, 220);
        assert_eq!(ftp.command(&format!("USER {user}")).await.0, 331);
        assert_eq!(ftp.command(&format!("PASS {ticket}")).await.0, 230);
        assert_eq!(ftp.command("TYPE I").await.0, 200);
        ftp
    }

    /// The next complete reply: its code and last line.
    async fn reply(&mut self) -> (u16, String) {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("the server answers within 10 s")
                .unwrap();
            assert!(n > 0, "the server closed the control connection");
            let b = line.as_bytes();
            if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
                return (line[..3].parse().unwrap(), line.trim_end().to_owned());
            }
        }
    }

    async fn command(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// EPSV; the data port when the server granted one.
    async fn epsv(&mut self) -> Option<u16> {
        let (code, text) = self.command("EPSV").await;
        if code != 229 {
            return None;
        }
        let port = text.split("|||").nth(1)?.trim_end_matches([')', '|']);
        port.parse().ok()
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("this test counts /proc/self/fd and needs Linux's /proc")
        .count()
}

/// 512 connections from 32 strangers' addresses that never log in, half of them sending
/// NOOP to look alive: a ticket holder still logs in within a second, and every one of
/// them is gone once the log-in deadline has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_nooping_sockets_do_not_keep_a_ticket_holder_out() {
    let signer = TicketSigner::from_seed(&[5; 32]);
    let limits = ServerLimits {
        login_within: Duration::from_secs(2),
        ..strict()
    };
    let server = server(&signer, 0, limits).await;
    let addr = server.addr();

    let mut idle = Vec::new();
    for host in 1..=32u8 {
        for _ in 0..16 {
            idle.push(
                connect_from(IpAddr::from([127, 0, 1, host]), addr)
                    .await
                    .unwrap(),
            );
        }
    }
    // Every other one keeps sending NOOP, which before log-in must not buy it time.
    let mut noopers = tokio::task::JoinSet::new();
    for (i, mut s) in idle.into_iter().enumerate() {
        noopers.spawn(async move {
            let started = Instant::now();
            let mut buf = [0u8; 512];
            loop {
                if i % 2 == 0 && s.write_all(b"NOOP\r\n").await.is_err() {
                    return started.elapsed();
                }
                match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                    _ => {}
                }
                if started.elapsed() > Duration::from_secs(20) {
                    return started.elapsed();
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let mut session = log_in(addr, &signer, "viewer-a", Duration::from_secs(1))
        .await
        .expect("a ticket holder logs in within 1 s while 512 idle sockets are open");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(session.fetch(0, 1, CHUNK).await.unwrap().len(), CHUNK);

    // Past the deadline (2 s) every stranger has been closed, NOOPing or not; the logged-in
    // session lives on.
    let mut longest = Duration::ZERO;
    while let Some(lived) = noopers.join_next().await {
        longest = longest.max(lived.unwrap());
    }
    assert!(
        longest < Duration::from_secs(5),
        "a connection that never logged in stayed {longest:?}"
    );
    assert_eq!(session.fetch(0, 2, CHUNK).await.unwrap().len(), CHUNK);
    session.close().await;
    server.shutdown().await;
}

/// One address gets `per_address` sessions; the rest are closed at once, and another
/// address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_and_no_more() {
    let signer = TicketSigner::from_seed(&[6; 32]);
    let limits = strict();
    let server = server(&signer, 0, limits).await;
    let addr = server.addr();
    let greedy = IpAddr::from([127, 0, 2, 1]);
    let mut held = Vec::new();
    for _ in 0..limits.per_address + 8 {
        held.push(connect_from(greedy, addr).await.unwrap());
    }
    let mut greeted = 0;
    for s in &mut held {
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
            && n > 0
            && buf.starts_with(b"220")
        {
            greeted += 1;
        }
    }
    assert_eq!(
        greeted, limits.per_address,
        "sessions granted to one address"
    );
    let mut session = log_in(addr, &signer, "viewer-a", Duration::from_secs(1))
        .await
        .expect("another address is still served");
    session.fetch(0, 0, CHUNK).await.unwrap();
    session.close().await;
    server.shutdown().await;
}

/// A ticket holder sends 2,000 EPSVs over four sessions without ever transferring: the
/// process's open descriptors stay bounded (each EPSV used to hold a listener for 15 s),
/// and an honest session still fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epsv_flood_keeps_the_descriptor_count_bounded() {
    let signer = TicketSigner::from_seed(&[7; 32]);
    let server = server(&signer, 0, strict()).await;
    let addr = server.addr();
    let ticket = ticket(&signer, "viewer-a");
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(RawFtp::login(addr, "viewer-a", &ticket).await);
    }
    let before = open_fds();
    let (mut peak, mut granted) = (before, 0);
    for round in 0..500 {
        for s in &mut sessions {
            granted += usize::from(s.epsv().await.is_some());
        }
        if round % 25 == 0 {
            peak = peak.max(open_fds());
        }
    }
    peak = peak.max(open_fds());
    assert!(
        peak <= before + 64,
        "2,000 EPSVs took the process from {before} to {peak} open descriptors"
    );
    assert!(
        granted < 100,
        "{granted} passive ports granted without a transfer"
    );
    let mut honest = log_in(addr, &signer, "viewer-b", Duration::from_secs(2))
        .await
        .unwrap();
    for i in 0..8 {
        assert_eq!(honest.fetch(0, i, CHUNK).await.unwrap().len(), CHUNK);
    }
    honest.close().await;
    drop(sessions);
    server.shutdown().await;
}

/// Under the upload cap, an urgent (`/now`) transfer whose reader stops reading: another
/// viewer's transfer still completes, and the stalled one is ended after the write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_urgent_reader_does_not_hold_other_transfers() {
    let signer = TicketSigner::from_seed(&[8; 32]);
    let limits = ServerLimits {
        write_timeout: Duration::from_secs(2),
        ..strict()
    };
    // 40 Mbit/s: 5 MB/s.
    let server = server(&signer, 40_000_000, limits).await;
    let addr = server.addr();

    let mut staller = RawFtp::login(addr, "viewer-s", &ticket(&signer, "viewer-s")).await;
    let port = staller.epsv().await.expect("a passive port");
    let data = TcpSocket::new_v4().unwrap();
    data.set_recv_buffer_size(4096).unwrap();
    let data = data
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let all: Vec<String> = (0..32).map(|i| i.to_string()).collect();
    let (code, _) = staller
        .command(&format!("RETR /film/0/{}/now", all.join(",")))
        .await;
    assert_eq!(code, 150, "the urgent transfer starts");
    // It is never read.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let mut other = log_in(addr, &signer, "viewer-a", Duration::from_secs(8))
        .await
        .unwrap();
    for i in 0..4 {
        assert_eq!(other.fetch(1, i, CHUNK).await.unwrap().len(), CHUNK);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "1 MiB at 5 MB/s beside a stalled urgent reader took {took:?}"
    );
    // The stalled transfer is ended: its control connection hears why.
    let (code, line) = staller.reply().await;
    assert!(code >= 400, "the stalled transfer ended with {line}");
    drop(data);
    other.close().await;
    server.shutdown().await;
}
