//! The tracker checks before it trusts, against a real tracker on 127.0.0.1:0 and real chunk
//! servers: a cache that answers its probe is reachable and gets viewers; one where nothing
//! listens, one that advertises another cache's address (the attacker) and one where
//! something else answers are unreachable with the reason, never placed, never a peer and
//! get no origin ticket; a probe's ticket logs in and fetches nothing; a public tracker
//! refuses addresses the internet cannot reach or that are not the registration's own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::peer::chunk_server::{ChunkProvider, ChunkResult, ChunkServer};
use rivulet_node_core::ticket::{TicketKey, TicketSigner};
use rivulet_tracker::reach::{self, PROBE_HOLDER};
use rivulet_tracker_client::{
    ClientError, ErrorCode, Heartbeat, HeartbeatReply, NodeKind, NodeRegistration, ReachFailure,
    ReachState, TicketRequest, TrackerClient,
};

const PASSWORD: &str = "correct-horse-42";

/// A tracker with movie "m" (free), placing every 100 ms and probing every second.
async fn network() -> LocalNetwork {
    LocalNetwork::temp()
        .movie(MovieSpec::sample("m", 2).size(320, 240).price(0))
        .initial_points(100)
        .placement_interval(Duration::from_millis(100))
        .configure(|c| c.reach_every = Duration::from_secs(1))
        .start()
        .await
        .unwrap()
}

/// Serves chunks nobody asked for: every request finds something.
#[derive(Debug)]
struct Full;

#[async_trait::async_trait]
impl ChunkProvider for Full {
    async fn chunk(&self, _video: &str, _segment: u32, _index: u16) -> ChunkResult {
        Ok(Some(vec![7; 1024]))
    }
}

/// A real chunk server for `owner`, registered as its cache and told its node id.
async fn real_cache(net: &LocalNetwork, owner: &TrackerClient) -> (String, ChunkServer) {
    let key = TicketKey::from_hex(&net.client().origin().await.unwrap().ticket_key).unwrap();
    let server = ChunkServer::start("127.0.0.1:0".parse().unwrap(), "", key, Arc::new(Full), 0)
        .await
        .unwrap();
    let addr = server.addr().to_string();
    let id = register_at(owner, &addr).await;
    server.set_server_id(&id);
    (id, server)
}

async fn register_at(owner: &TrackerClient, addr: &str) -> String {
    owner
        .register_node(&NodeRegistration::cache(
            "[::]:7880",
            addr,
            100_000_000,
            1_500_000_000,
        ))
        .await
        .unwrap()
        .node_id
}

/// Heartbeats cache `node` until the reply's reach is no longer unchecked (within 15 s).
async fn probed(owner: &TrackerClient, node: &str) -> HeartbeatReply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = owner.heartbeat(node, &Heartbeat::default()).await.unwrap();
        if reply
            .reach
            .as_ref()
            .is_some_and(|r| r.state != ReachState::Unchecked)
        {
            return reply;
        }
        assert!(Instant::now() < deadline, "never probed: {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A viewer of `who` watching "m"; its heartbeat with sequence number `seq`.
fn watching(seq: u64) -> Heartbeat {
    Heartbeat {
        seq,
        watching: Some("m".into()),
        ..Heartbeat::default()
    }
}

/// Asserts over a few placement rounds that cache `node` is neither placed nor given
/// origin tickets nor handed to `viewer` as a peer, and gets no ticket for placed indices.
async fn never_trusted(owner: &TrackerClient, node: &str, viewer_of: &TrackerClient, viewer: &str) {
    for seq in 1..=10 {
        let reply = owner.heartbeat(node, &Heartbeat::default()).await.unwrap();
        assert!(!reply.placed && reply.hold.is_empty(), "{reply:?}");
        assert!(reply.origin.is_empty(), "{reply:?}");
        let peers = viewer_of
            .heartbeat(viewer, &watching(seq))
            .await
            .unwrap()
            .peers;
        assert!(peers.iter().all(|p| p.node_id != node), "{peers:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let ticket = owner.ticket(&TicketRequest::new(node, "origin", "m")).await;
    assert!(
        matches!(ticket, Err(ClientError::Api { status: 403, .. })),
        "{ticket:?}"
    );
}

/// A viewer of a new account that bought "m", and that account's client.
async fn viewer(net: &LocalNetwork, name: &str) -> (TrackerClient, String) {
    let c = net.user(name, PASSWORD).await.unwrap();
    c.buy("m").await.unwrap();
    let id = c
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    (c, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cache_is_probed_reachable_and_gets_viewers() {
    let net = network().await;
    net.register("carol", PASSWORD).await.unwrap();
    let cache = net
        .start_cache(&CacheSpec::new("carol", PASSWORD))
        .await
        .unwrap();
    let (bob, view) = viewer(&net, "bob").await;
    let id = cache.status().borrow().node_id.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 0;
    loop {
        seq += 1;
        let peers = bob.heartbeat(&view, &watching(seq)).await.unwrap().peers;
        if peers.iter().any(|p| p.node_id == id) {
            break;
        }
        assert!(Instant::now() < deadline, "never a peer: {peers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The cache's status says where it was reached, and so does the owner's node list.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = cache.status().borrow().clone();
        if status.reach.is_some() {
            break status;
        }
        assert!(Instant::now() < deadline, "no reach in the status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reach = status.reach.clone().unwrap();
    assert_eq!(reach.state, ReachState::Reachable, "{reach:?}");
    assert_eq!(reach.addr, status.addr);
    assert!(
        status.reach_line().contains(&status.addr),
        "{}",
        status.reach_line()
    );
    let carol = net.login("carol", PASSWORD).await.unwrap();
    let mine = carol.my_nodes().await.unwrap();
    let listed = mine.iter().find(|n| n.node_id == id).unwrap();
    assert_eq!(listed.reach.as_ref().unwrap().state, ReachState::Reachable);
    cache.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_where_nothing_listens_is_refused_and_never_trusted() {
    let net = network().await;
    let (bob, view) = viewer(&net, "bob").await;
    let mallory = net.user("mallory", PASSWORD).await.unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let id = register_at(&mallory, &addr).await;
    let reach = probed(&mallory, &id).await.reach.unwrap();
    assert_eq!(reach.state, ReachState::Unreachable);
    assert_eq!(reach.reason, Some(ReachFailure::Refused), "{reach:?}");
    assert_eq!(reach.addr, addr);
    never_trusted(&mallory, &id, &bob, &view).await;
    let listed = mallory.my_nodes().await.unwrap();
    let r = listed[0].reach.as_ref().unwrap();
    assert_eq!(
        (r.state, r.reason),
        (ReachState::Unreachable, Some(ReachFailure::Refused))
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_advertising_another_caches_address_is_refused_its_ticket() {
    let net = network().await;
    let (bob, view) = viewer(&net, "bob").await;
    let alice = net.user("alice", PASSWORD).await.unwrap();
    let (honest, server) = real_cache(&net, &alice).await;
    // mallory claims alice's cache as hers, to be placed and paid for what alice serves.
    let mallory = net.user("mallory", PASSWORD).await.unwrap();
    let id = register_at(&mallory, &server.addr().to_string()).await;
    let reach = probed(&mallory, &id).await.reach.unwrap();
    assert_eq!(reach.state, ReachState::Unreachable);
    assert_eq!(reach.reason, Some(ReachFailure::LoginRefused), "{reach:?}");
    never_trusted(&mallory, &id, &bob, &view).await;
    // alice, at her own address, is reachable.
    let reach = probed(&alice, &honest).await.reach.unwrap();
    assert_eq!(reach.state, ReachState::Reachable, "{reach:?}");
    server.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_is_not_ftp_is_a_wrong_greeting() {
    let net = network().await;
    let (bob, view) = viewer(&net, "bob").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let web = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut open = Vec::new();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            open.push(s);
        }
    });
    let mallory = net.user("mallory", PASSWORD).await.unwrap();
    let id = register_at(&mallory, &addr).await;
    let reach = probed(&mallory, &id).await.reach.unwrap();
    assert_eq!(reach.state, ReachState::Unreachable);
    assert_eq!(reach.reason, Some(ReachFailure::WrongGreeting), "{reach:?}");
    never_trusted(&mallory, &id, &bob, &view).await;
    web.abort();
    net.shutdown().await;
}

#[tokio::test]
async fn a_probe_ticket_logs_in_and_fetches_nothing() {
    let signer = TicketSigner::from_seed(&[3; 32]);
    let server = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "cache-1",
        signer.public_key(),
        Arc::new(Full),
        0,
    )
    .await
    .unwrap();
    let addr = server.addr();
    let ticket = reach::probe_ticket(&signer, "cache-1", rivulet_node_core::clock::unix_secs());
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(addr)
        .await
        .unwrap();
    ftp.login(PROBE_HOLDER, &ticket).await.unwrap();
    ftp.set_mode(suppaftp::Mode::ExtendedPassive);
    for path in ["/m/0/0", "//0/0", "/m/0/0,1,2"] {
        let got = common::retr(&mut ftp, path).await;
        assert!(got.is_err(), "{path}: {got:?}");
    }
    assert!(server.served().take_by_peer().is_empty());
    // Elsewhere it is refused: it names cache-1 only.
    let other = ChunkServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "cache-2",
        signer.public_key(),
        Arc::new(Full),
        0,
    )
    .await
    .unwrap();
    let found = rivulet_node_core::net::probe::probe(
        &other.addr().to_string(),
        PROBE_HOLDER,
        &ticket,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(found.reason, ReachFailure::LoginRefused);
    server.shutdown().await;
    other.shutdown().await;
}

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_tracker_refuses_addresses_the_internet_cannot_reach() {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("m", 2).size(320, 240).price(0))
        .configure(|c| c.public = true)
        .start()
        .await
        .unwrap();
    let origin = net.client().origin().await.unwrap();
    assert!(origin.public);
    assert_eq!(origin.seen_from, "127.0.0.1");
    let mallory = net.user("mallory", PASSWORD).await.unwrap();
    for addr in [
        "127.0.0.1:7880",
        "10.1.2.3:7880",
        "192.168.1.20:7880",
        "100.64.0.1:7880",
        "[fe80::1]:7880",
        "[ff02::1]:7880",
        "[fd00::1]:7880",
        "cache.example:7880",
        // Public, but not where this registration came from (127.0.0.1).
        "8.8.8.8:7880",
    ] {
        let reg = NodeRegistration::cache("0.0.0.0:7880", addr, 1_000_000, 1_000_000_000);
        match mallory.register_node(&reg).await {
            Err(ClientError::Api {
                status,
                code,
                message,
            }) => {
                assert_eq!(
                    (status, code.clone()),
                    (400, ErrorCode::AddressRefused),
                    "{addr}"
                );
                assert!(
                    message.contains(addr.trim_start_matches('[').split(']').next().unwrap()),
                    "{addr}: {message}"
                );
            }
            other => panic!("{addr}: {other:?}"),
        }
        // Hidden among further addresses too.
        let mut reg = NodeRegistration::cache("0.0.0.0:7880", "[2a00:1450::1]:7880", 1, 1);
        reg.addrs = vec![addr.to_owned()];
        let refused = mallory.register_node(&reg).await;
        assert!(
            matches!(
                &refused,
                Err(ClientError::Api {
                    status: 400,
                    code: ErrorCode::AddressRefused,
                    ..
                })
            ),
            "{addr}: {refused:?}"
        );
    }
    // A viewer has no address to check; a cache at a global IPv6 is taken (and probed).
    mallory
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap();
    let reg = NodeRegistration::cache("[::]:7880", "[2a00:1450::1]:7880", 1, 1);
    let registered = mallory.register_node(&reg).await.unwrap();
    assert_eq!(registered.seen_from, "127.0.0.1");
    assert_eq!(
        registered.reach.map(|r| r.state),
        Some(ReachState::Unchecked)
    );
    let listed = mallory.my_nodes().await.unwrap();
    assert!(listed.iter().any(|n| n.kind == NodeKind::Cache));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_tracker_takes_private_addresses() {
    let net = network().await;
    let origin = net.client().origin().await.unwrap();
    assert!(!origin.public);
    let alice = net.user("alice", PASSWORD).await.unwrap();
    for addr in ["192.168.1.20:7880", "cache.lan:7880", "[fe80::1]:7880"] {
        register_at(&alice, addr).await;
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_its_proxy_a_public_tracker_sees_the_forwarded_address() {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("m", 2).size(320, 240).price(0))
        .configure(|c| {
            c.public = true;
            c.trusted_proxy = Some("127.0.0.1".parse().unwrap());
        })
        .start()
        .await
        .unwrap();
    net.register("nat", PASSWORD).await.unwrap();
    let session = net
        .client()
        .login(&rivulet_localnet::credentials("nat", PASSWORD))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let origin: serde_json::Value = http
        .get(format!("{}/api/v1/origin", net.url()))
        .header("x-forwarded-for", "8.8.8.8")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(origin["seen_from"], "8.8.8.8", "{origin}");
    let register = |advertise: &str| {
        http.post(format!("{}/api/v1/nodes", net.url()))
            .bearer_auth(&session.token)
            .header("x-forwarded-for", "8.8.8.8")
            .json(&NodeRegistration::cache(
                "[::]:7880",
                advertise,
                1_000_000,
                1_000_000_000,
            ))
            .send()
    };
    let taken = register("8.8.8.8:7880").await.unwrap();
    assert_eq!(taken.status(), 201);
    let taken: serde_json::Value = taken.json().await.unwrap();
    assert_eq!(taken["seen_from"], "8.8.8.8");
    let refused = register("8.8.4.4:7880").await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "address_refused", "{body}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_calling_a_live_cache_dead_does_not_get_it_dropped() {
    // Probes every 30 s unless a report asks for one sooner: what mallory's reports make
    // the tracker do is check, and the check finds the cache alive.
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("m", 2).size(320, 240).price(0))
        .initial_points(100)
        .placement_interval(Duration::from_millis(100))
        .configure(|c| c.reach_every = Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    net.register("carol", PASSWORD).await.unwrap();
    let cache = net
        .start_cache(&CacheSpec::new("carol", PASSWORD))
        .await
        .unwrap();
    let id = cache.status().borrow().node_id.clone();
    let (mallory, view) = viewer(&net, "mallory").await;
    let given = |peers: &[rivulet_tracker_client::Peer]| peers.iter().any(|p| p.node_id == id);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 0;
    loop {
        seq += 1;
        let peers = mallory
            .heartbeat(&view, &watching(seq))
            .await
            .unwrap()
            .peers;
        if given(&peers) {
            break;
        }
        assert!(Instant::now() < deadline, "never a peer: {peers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every heartbeat for 8 s says the cache could not be connected to.
    let carol = net.login("carol", PASSWORD).await.unwrap();
    let checked = || async {
        let mine = carol.my_nodes().await.unwrap();
        mine.iter()
            .find(|n| n.node_id == id)
            .unwrap()
            .reach
            .clone()
            .unwrap()
    };
    let first = checked().await;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        seq += 1;
        let hb = Heartbeat {
            unreachable: vec![id.clone()],
            ..watching(seq)
        };
        let peers = mallory.heartbeat(&view, &hb).await.unwrap().peers;
        assert!(given(&peers), "dropped on a viewer's word: {peers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = checked().await;
    assert_eq!(last.state, ReachState::Reachable, "{last:?}");
    assert!(
        last.checked_at > first.checked_at,
        "the reports made the tracker check ({first:?} then {last:?})"
    );
    // An oversized report is refused whole.
    let flood = Heartbeat {
        unreachable: (0..65).map(|i| format!("cache-{i}")).collect(),
        ..watching(seq + 1)
    };
    match mallory.heartbeat(&view, &flood).await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code), (400, ErrorCode::BadRequest))
        }
        other => panic!("65 unreachable peers: {other:?}"),
    }
    cache.stop().await;
    net.shutdown().await;
}
