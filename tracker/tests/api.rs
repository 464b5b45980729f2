//! The HTTP API through the typed client, against a real server on 127.0.0.1:0 with a real
//! SQLite file in a temporary data dir, and movies ingested from media ffmpeg makes.

use std::sync::Arc;

use rivulet_localnet::{LocalNetwork, MovieSpec, TrackerConfig as ServeConfig};
use rivulet_node_core::format::Manifest;
use rivulet_tracker_client::{
    ChunkRef, ClientError, Credentials, ErrorCode, Heartbeat, Holding, NodeKind, NodeRegistration,
    PeerBytes, TrackerClient,
};

struct Tracker {
    net: LocalNetwork,
}

impl Tracker {
    /// A tracker with movies `(id, price)` ingested into its data dir.
    async fn start(movies: &[(&str, u64)]) -> Tracker {
        Tracker::start_with(movies, |_| {}).await
    }

    /// A tracker with movies, its configuration adjusted by `tune`.
    async fn start_with(
        movies: &[(&str, u64)],
        tune: impl FnOnce(&mut ServeConfig) + Send + 'static,
    ) -> Tracker {
        let movies = movies
            .iter()
            .map(|(id, price)| MovieSpec::sample(*id, 2).size(320, 240).price(*price));
        let net = LocalNetwork::temp()
            .engine(rivulet_localnet::test_engine!())
            .movies(movies)
            .initial_points(100)
            // Caches here register at addresses nobody serves (tests/reach.rs probes real ones).
            .configure(|c| c.require_reach = false)
            .configure(tune)
            .start()
            .await
            .unwrap();
        Tracker { net }
    }

    fn client(&self) -> TrackerClient {
        self.net.client()
    }

    /// Registers and logs in; returns a client with the session.
    async fn user(&self, name: &str) -> TrackerClient {
        let creds = creds(name, "correct-horse-42");
        self.client().register(&creds).await.unwrap();
        let session = self.client().login(&creds).await.unwrap();
        self.client().with_token(session.token)
    }
}

fn creds(username: &str, password: &str) -> Credentials {
    Credentials {
        username: username.into(),
        password: password.into(),
    }
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, ErrorCode) {
    match result {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn register_log_in_see_yourself_log_out() {
    let t = Tracker::start(&[]).await;
    let c = t.client();
    let account = c
        .register(&creds("alice", "correct-horse-42"))
        .await
        .unwrap();
    assert_eq!(account.username, "alice");
    assert_eq!(account.balance, 100);
    assert!(!account.admin && account.bought.is_empty() && account.watched.is_empty());
    let session = c.login(&creds("ALICE", "correct-horse-42")).await.unwrap();
    assert_eq!(session.token.len(), 64);
    assert!(session.expires_at > 1_700_000_000);
    let me = c.clone().with_token(&session.token);
    assert_eq!(me.me().await.unwrap(), account);
    me.logout().await.unwrap();
    assert_eq!(code(me.me().await), (401, ErrorCode::Unauthorized));
    assert_eq!(code(me.logout().await), (401, ErrorCode::Unauthorized));
    t.net.shutdown().await;
}

/// A heartbeat from `node` through `client` is answered 404: the tracker does not know it
/// (or not as this account's).
async fn assert_unknown_node(client: &TrackerClient, node: &str) {
    let reply = client.heartbeat(node, &Heartbeat::default()).await;
    assert_eq!(code(reply), (404, ErrorCode::NotFound), "node {node}");
}

/// A tracker with one account `user` (password correct-horse-42), and an anonymous client.
async fn tracker_with(user: &str) -> (Tracker, TrackerClient) {
    let t = Tracker::start(&[]).await;
    let c = t.client();
    c.register(&creds(user, "correct-horse-42")).await.unwrap();
    (t, c)
}

#[tokio::test]
async fn bad_registrations_get_a_clear_4xx() {
    let (t, c) = tracker_with("taken").await;
    let long = "x".repeat(33);
    let cases: Vec<(Credentials, u16, ErrorCode)> = vec![
        (creds("", "correct-horse-42"), 400, ErrorCode::BadRequest),
        (creds("ab", "correct-horse-42"), 400, ErrorCode::BadRequest),
        (creds(&long, "correct-horse-42"), 400, ErrorCode::BadRequest),
        (
            creds("robert'); DROP TABLE accounts;--", "correct-horse-42"),
            400,
            ErrorCode::BadRequest,
        ),
        (
            creds("white space", "correct-horse-42"),
            400,
            ErrorCode::BadRequest,
        ),
        (creds("bob", "short1"), 400, ErrorCode::WeakPassword),
        (creds("bob", "onlyletters"), 400, ErrorCode::WeakPassword),
        (creds("bob", "123456789"), 400, ErrorCode::WeakPassword),
        (creds("bobby", "xxbobby123"), 400, ErrorCode::WeakPassword),
        (
            creds("bob", &"a1".repeat(129)),
            400,
            ErrorCode::WeakPassword,
        ),
        (
            creds("taken", "another-pass-1"),
            409,
            ErrorCode::UsernameTaken,
        ),
        (
            creds("TAKEN", "another-pass-1"),
            409,
            ErrorCode::UsernameTaken,
        ),
    ];
    for (creds, status, want) in cases {
        let got = code(c.register(&creds).await);
        assert_eq!(got, (status, want.to_owned()), "{:?}", creds.username);
    }
    // Unicode letters are names too; the account works.
    let u = c
        .register(&creds("zoë_映画", "correct-horse-42"))
        .await
        .unwrap();
    assert_eq!(u.username, "zoë_映画");
    c.login(&creds("ZOË_映画", "correct-horse-42"))
        .await
        .unwrap();
    t.net.shutdown().await;
}

/// Raw HTTP for what the typed client cannot send: malformed JSON, wrong types, huge bodies.
#[tokio::test]
async fn malformed_requests_get_the_error_body() {
    let t = Tracker::start(&[]).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1{p}", t.net.url());
    let json = |body: &str| {
        http.post(url("/accounts"))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let huge = format!(
        "{{\"username\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(100_000)
    );
    let cases = vec![
        (json("{"), 400, ErrorCode::BadRequest),
        (json("[]"), 400, ErrorCode::BadRequest),
        (
            json("{\"username\": 5, \"password\": \"correct-horse-42\"}"),
            400,
            ErrorCode::BadRequest,
        ),
        (
            json("{\"username\": \"carol\"}"),
            400,
            ErrorCode::BadRequest,
        ),
        (
            json("{\"username\": \"carol\", \"password\": \"correct-horse-42\", \"admin\": true}"),
            400,
            ErrorCode::BadRequest,
        ),
        (json(&huge), 413, ErrorCode::TooLarge),
        (
            http.post(url("/accounts")).body("username=carol"),
            400,
            ErrorCode::BadRequest,
        ),
        (http.get(url("/no/such/thing")), 404, ErrorCode::NotFound),
        (
            http.get(format!("{}/elsewhere", t.net.url())),
            404,
            ErrorCode::NotFound,
        ),
        (http.delete(url("/videos")), 405, ErrorCode::BadRequest),
        (
            http.get(url("/me"))
                .header("authorization", "Bearer forged"),
            401,
            ErrorCode::Unauthorized,
        ),
        (
            http.get(url("/me")).header("authorization", "Basic abc"),
            401,
            ErrorCode::Unauthorized,
        ),
    ];
    for (req, status, want) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], want.as_str(), "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    t.net.shutdown().await;
}

#[tokio::test]
async fn failed_log_ins_lock_the_account_out() {
    let (t, c) = tracker_with("dave").await;
    assert_eq!(
        code(c.login(&creds("nobody", "correct-horse-42")).await),
        (401, ErrorCode::BadCredentials)
    );
    for _ in 0..5 {
        assert_eq!(
            code(c.login(&creds("dave", "wrong-pass-1")).await),
            (401, ErrorCode::BadCredentials)
        );
    }
    // Locked: even the right password is refused, with a time to wait.
    match c.login(&creds("dave", "correct-horse-42")).await {
        Err(ClientError::Api {
            status: 429,
            code,
            message,
        }) => {
            assert_eq!(code, ErrorCode::LockedOut);
            assert!(message.contains("try again in"), "{message}");
        }
        other => panic!("expected a lock-out, got {other:?}"),
    }
    t.net.shutdown().await;
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let t = Tracker::start(&[]).await;
    let c = t.user("erin").await;
    c.me().await.unwrap();
    let db = t.net.db();
    sqlx::query("UPDATE sessions SET expires_at = 0")
        .execute(&db)
        .await
        .unwrap();
    // As if the week had passed: the tracker's remembered sessions are over too.
    t.net.server().forget_sessions();
    assert_eq!(code(c.me().await), (401, ErrorCode::Unauthorized));
    t.net.shutdown().await;
}

#[tokio::test]
async fn catalogue_posters_manifests_and_purchases() {
    let t = Tracker::start(&[("cheap", 30), ("dear", 500), ("free", 0)]).await;
    let anon = t.client();
    let list = anon.videos().await.unwrap();
    let ids: Vec<&str> = list.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["cheap", "dear", "free"]);
    assert!(list.iter().all(|v| !v.bought
        && v.k == 16
        && v.n == 64
        && v.bytes > 0
        && v.duration_ms > 1500));
    let poster = anon.poster("cheap").await.unwrap();
    assert_eq!(&poster[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    assert_eq!(code(anon.video("nope").await), (404, ErrorCode::NotFound));
    assert_eq!(
        code(anon.video("..%2F..%2Fetc").await),
        (404, ErrorCode::NotFound)
    );
    assert_eq!(code(anon.poster("nope").await), (404, ErrorCode::NotFound));
    assert_eq!(
        code(anon.manifest("cheap").await),
        (401, ErrorCode::Unauthorized)
    );
    assert_eq!(
        code(anon.buy("cheap").await),
        (401, ErrorCode::Unauthorized)
    );

    let frank = t.user("frank").await;
    assert_eq!(
        code(frank.manifest("cheap").await),
        (403, ErrorCode::NotBought)
    );
    let bought = frank.buy("cheap").await.unwrap();
    assert_eq!((bought.charged, bought.balance), (30, 70));
    let again = frank.buy("cheap").await.unwrap();
    assert_eq!(
        (again.charged, again.balance),
        (0, 70),
        "buying again is free"
    );
    let manifest = Manifest::from_json(&frank.manifest("cheap").await.unwrap()).unwrap();
    assert_eq!(manifest.k, 16);
    assert!(frank.video("cheap").await.unwrap().bought);
    // Too dear: refused, nothing taken, nothing owned.
    assert_eq!(
        code(frank.buy("dear").await),
        (402, ErrorCode::InsufficientPoints)
    );
    let me = frank.me().await.unwrap();
    assert_eq!(me.balance, 70);
    assert_eq!(me.bought, ["cheap"]);
    assert_eq!(code(frank.buy("nope").await), (404, ErrorCode::NotFound));
    let free = frank.buy("free").await.unwrap();
    assert_eq!((free.charged, free.balance), (0, 70));
    assert_eq!(frank.me().await.unwrap().bought, ["cheap", "free"]);
    t.net.shutdown().await;
}

#[tokio::test]
async fn concurrent_purchases_of_one_movie_charge_once() {
    let t = Tracker::start(&[("hit", 40)]).await;
    let grace = Arc::new(t.user("grace").await);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let g = grace.clone();
            tokio::spawn(async move { g.buy("hit").await })
        })
        .collect();
    let mut charged = 0;
    for task in tasks {
        charged += task.await.unwrap().unwrap().charged;
    }
    assert_eq!(charged, 40);
    assert_eq!(grace.me().await.unwrap().balance, 60);
    t.net.shutdown().await;
}

fn cache_at(port: u16) -> NodeRegistration {
    NodeRegistration::cache(
        format!("0.0.0.0:{port}"),
        format!("cache.example:{port}"),
        10_000_000,
        1_500_000_000,
    )
}

#[tokio::test]
async fn nodes_register_report_and_leave() {
    let t = Tracker::start(&[("m", 0)]).await;
    let alice = t.user("alice").await;
    let cache = alice.register_node(&cache_at(2121)).await.unwrap();
    assert!(cache.node_id.starts_with("cache-"));
    assert_eq!((cache.timeout_secs, cache.heartbeat_secs), (15, 5));
    let v6 = NodeRegistration {
        bind: "[::1]:2122".into(),
        advertise: "[::1]:2122".into(),
        ..cache_at(0)
    };
    alice.register_node(&v6).await.unwrap();
    let view = alice
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap();
    alice.buy("m").await.unwrap();

    let hb = Heartbeat {
        seq: 1,
        holdings: vec![Holding {
            video: "m".into(),
            indices: vec![3, 17, 63],
        }],
        sent: vec![PeerBytes::new(view.node_id.clone(), "m", 65_536)],
        received: vec![PeerBytes::new("origin", "m", 196_608)],
        upload_bps: Some(5_000_000),
        ..Heartbeat::default()
    };
    alice.heartbeat(&cache.node_id, &hb).await.unwrap();
    let watching = Heartbeat {
        seq: 1,
        watching: Some("m".into()),
        received: vec![PeerBytes::new(cache.node_id.clone(), "m", 65_536)],
        ..Heartbeat::default()
    };
    alice.heartbeat(&view.node_id, &watching).await.unwrap();
    let mine = alice.my_nodes().await.unwrap();
    assert_eq!(mine.len(), 3);
    let c = mine.iter().find(|n| n.node_id == cache.node_id).unwrap();
    assert_eq!(c.holdings, hb.holdings);
    assert_eq!(
        (c.upload_bps, c.storage_bytes, c.account.as_str()),
        (5_000_000, 1_500_000_000, "alice")
    );
    assert_eq!(
        mine.iter()
            .find(|n| n.node_id == view.node_id)
            .unwrap()
            .watching
            .as_deref(),
        Some("m")
    );

    // The flows are kept per pair: reported by the sender, confirmed by the receiver (an
    // account's own viewer confirms nothing of its own cache: see tracker/tests/trust.rs).
    let db = t.net.db();
    let rows: Vec<(String, String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT from_node, from_kind, to_node, to_kind, reported_bytes, confirmed_bytes FROM transfers ORDER BY from_kind",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                cache.node_id.clone(),
                "cache".into(),
                view.node_id.clone(),
                "viewer".into(),
                65_536,
                0
            ),
            (
                "origin".into(),
                "origin".into(),
                cache.node_id.clone(),
                "cache".into(),
                0,
                196_608
            ),
        ]
    );

    // Another account cannot touch alice's nodes.
    let bob = t.user("bob").await;
    assert_unknown_node(&bob, &cache.node_id).await;
    assert_eq!(
        code(bob.leave(&cache.node_id).await),
        (404, ErrorCode::NotFound)
    );
    alice.leave(&cache.node_id).await.unwrap();
    assert_unknown_node(&alice, &cache.node_id).await;
    assert_eq!(alice.my_nodes().await.unwrap().len(), 2);
    t.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_for_another_accounts_node_change_nothing_even_beside_the_owners() {
    let t = Tracker::start(&[]).await;
    let (alice, bob) = (t.user("alice").await, t.user("bob").await);
    let cache = alice.register_node(&cache_at(2121)).await.unwrap().node_id;
    // Sent at once, the owner's and the attacker's heartbeats for one node share the
    // tracker's write batches: only the owner's may land.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let (client, owner) = if i % 2 == 0 {
            (alice.clone(), true)
        } else {
            (bob.clone(), false)
        };
        let cache = cache.clone();
        sends.spawn(async move {
            let hb = Heartbeat {
                storage_bytes: Some(if owner { 1_000_000_000 } else { 7 }),
                upload_bps: Some(if owner { 4_000_000 } else { 1 }),
                ..Heartbeat::default()
            };
            (owner, client.heartbeat(&cache, &hb).await.map(|_| ()))
        });
    }
    while let Some(sent) = sends.join_next().await {
        match sent.unwrap() {
            (true, reply) => reply.unwrap(),
            (false, reply) => assert_eq!(code(reply), (404, ErrorCode::NotFound)),
        }
    }
    let mine = alice.my_nodes().await.unwrap();
    let c = mine.iter().find(|n| n.node_id == cache).unwrap();
    assert_eq!((c.upload_bps, c.storage_bytes), (4_000_000, 1_000_000_000));
    t.net.shutdown().await;
}

#[tokio::test]
async fn bad_node_reports_are_refused_and_change_nothing() {
    let t = Tracker::start(&[("m", 0)]).await;
    let alice = t.user("alice").await;
    let bad_regs = [
        NodeRegistration {
            kind: NodeKind::Origin,
            ..cache_at(2121)
        },
        NodeRegistration {
            bind: "not an address".into(),
            ..cache_at(2121)
        },
        NodeRegistration {
            bind: "cache.example:2121".into(),
            ..cache_at(2121)
        },
        NodeRegistration {
            advertise: "".into(),
            ..cache_at(2121)
        },
        NodeRegistration {
            advertise: "host:0".into(),
            ..cache_at(2121)
        },
        NodeRegistration {
            advertise: "host:99999".into(),
            ..cache_at(2121)
        },
        NodeRegistration {
            advertise: "bad host;rm:21".into(),
            ..cache_at(2121)
        },
        NodeRegistration {
            upload_bps: u64::MAX,
            ..cache_at(2121)
        },
    ];
    for reg in bad_regs {
        assert_eq!(
            code(alice.register_node(&reg).await),
            (400, ErrorCode::BadRequest),
            "{reg:?}"
        );
    }
    let node = alice.register_node(&cache_at(2121)).await.unwrap().node_id;
    let holding = |indices: Vec<u16>| Heartbeat {
        holdings: vec![Holding {
            video: "m".into(),
            indices,
        }],
        ..Heartbeat::default()
    };
    alice.heartbeat(&node, &holding(vec![1, 2])).await.unwrap();
    let bad_beats = [
        holding(vec![64]),
        holding(vec![5, 5]),
        Heartbeat {
            watching: Some("nope".into()),
            ..Heartbeat::default()
        },
        Heartbeat {
            sent: vec![PeerBytes::new("x", "m", u64::MAX)],
            ..Heartbeat::default()
        },
        Heartbeat {
            sent: vec![PeerBytes::new("", "m", 1)],
            ..Heartbeat::default()
        },
    ];
    for hb in bad_beats {
        assert_eq!(
            code(alice.heartbeat(&node, &hb).await),
            (400, ErrorCode::BadRequest),
            "{hb:?}"
        );
    }
    // Negative numbers and wrong types, as raw JSON.
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/nodes/{node}/heartbeat", t.net.url());
    for body in [
        r#"{"upload_bps": -1}"#,
        r#"{"holdings": [{"video": "m", "indices": [-3]}]}"#,
        r#"{"watching": 7}"#,
    ] {
        let resp = http
            .put(&url)
            .bearer_auth(alice.token().unwrap())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
    }
    let mine = alice.my_nodes().await.unwrap();
    assert_eq!(
        mine[0].holdings,
        holding(vec![1, 2]).holdings,
        "nothing half-written"
    );
    // Holding a movie the tracker does not have (it was removed) is no error: the reply
    // refuses that holding, and the cache drops it and goes on.
    let gone = Holding {
        video: "nope".into(),
        indices: vec![1],
    };
    let mut both = holding(vec![1, 2]);
    both.holdings.push(gone.clone());
    let reply = alice.heartbeat(&node, &both).await.unwrap();
    assert_eq!(reply.refused, vec![gone]);
    let mine = alice.my_nodes().await.unwrap();
    assert_eq!(mine[0].holdings, holding(vec![1, 2]).holdings);
    t.net.shutdown().await;
}

#[tokio::test]
async fn silent_nodes_are_dropped_and_register_again() {
    let t = Tracker::start_with(&[("m", 0)], |c| {
        c.node_timeout = std::time::Duration::from_secs(2)
    })
    .await;
    let alice = t.user("alice").await;
    let quiet = alice.register_node(&cache_at(2121)).await.unwrap().node_id;
    let chatty = alice.register_node(&cache_at(2122)).await.unwrap().node_id;
    // The chatty node beats ten times per timeout; the quiet one stays silent past it.
    for _ in 0..14 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        alice
            .heartbeat(&chatty, &Heartbeat::default())
            .await
            .unwrap();
    }
    let ids: Vec<String> = alice
        .my_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(ids, std::slice::from_ref(&chatty));
    assert_unknown_node(&alice, &quiet).await;
    alice.register_node(&cache_at(2121)).await.unwrap();
    assert_eq!(alice.my_nodes().await.unwrap().len(), 2);
    t.net.shutdown().await;
}

#[tokio::test]
async fn nodes_register_again_after_a_tracker_restart() {
    let t = Tracker::start(&[("m", 0)]).await;
    let alice = t.user("alice").await;
    let node = alice.register_node(&cache_at(2121)).await.unwrap().node_id;
    let Tracker { mut net } = t;
    net.restart_tracker().await.unwrap();
    let server = net.server();
    // Sessions survive the restart; nodes are forgotten and say so.
    let alice = TrackerClient::new(&server.url()).with_token(alice.token().unwrap());
    assert_unknown_node(&alice, &node).await;
    let again = alice.register_node(&cache_at(2121)).await.unwrap().node_id;
    alice
        .heartbeat(&again, &Heartbeat::default())
        .await
        .unwrap();
    assert_eq!(alice.my_nodes().await.unwrap().len(), 1);
    net.shutdown().await;
}

#[tokio::test]
async fn administrators_see_accounts_nodes_videos_load_and_flows() {
    let t = Tracker::start(&[("m", 10), ("n", 0)]).await;
    let root = t.user("root").await;
    let db = t.net.db();
    sqlx::query("UPDATE accounts SET admin = 1 WHERE username = 'root'")
        .execute(&db)
        .await
        .unwrap();
    let carl = t.user("carl").await;
    carl.buy("m").await.unwrap();
    let cache = carl.register_node(&cache_at(2121)).await.unwrap().node_id;
    let view = carl
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let bytes = |peer: &str, n: u64| vec![PeerBytes::new(peer, "m", n)];
    carl.heartbeat(
        &cache,
        &Heartbeat {
            holdings: vec![Holding {
                video: "m".into(),
                indices: vec![16, 17],
            }],
            seq: 1,
            received: bytes("origin", 1000),
            sent: bytes(&view, 300),
            ..Heartbeat::default()
        },
    )
    .await
    .unwrap();
    carl.heartbeat(
        &view,
        &Heartbeat {
            seq: 1,
            watching: Some("m".into()),
            received: [bytes("origin", 500), bytes(&cache, 300)].concat(),
            ..Heartbeat::default()
        },
    )
    .await
    .unwrap();

    // Not for others.
    for c in [&carl, &t.client()] {
        let want = if c.token().is_some() {
            (403, ErrorCode::Forbidden)
        } else {
            (401, ErrorCode::Unauthorized)
        };
        let want = (want.0, want.1.to_owned());
        assert_eq!(code(c.admin_accounts().await), want);
        assert_eq!(code(c.admin_nodes().await), want);
        assert_eq!(code(c.admin_videos().await), want);
        assert_eq!(code(c.admin_load(60).await), want);
        assert_eq!(code(c.admin_flows(&view).await), want);
    }

    let accounts = root.admin_accounts().await.unwrap();
    let c = accounts.iter().find(|a| a.username == "carl").unwrap();
    assert_eq!(
        (c.balance, c.purchases, c.nodes, c.admin),
        (90, 1, 2, false)
    );
    assert!(
        accounts
            .iter()
            .find(|a| a.username == "root")
            .unwrap()
            .admin
    );
    assert_eq!(root.admin_nodes().await.unwrap().len(), 2);
    let videos = root.admin_videos().await.unwrap();
    let m = videos.iter().find(|v| v.video.id == "m").unwrap();
    assert_eq!((m.viewers_now, m.caches_holding, m.purchases), (1, 1, 1));
    let n = videos.iter().find(|v| v.video.id == "n").unwrap();
    assert_eq!((n.viewers_now, n.caches_holding, n.purchases), (0, 0, 0));

    let load = root.admin_load(5).await.unwrap();
    let total = |f: fn(&rivulet_tracker_client::LoadPoint) -> u64| load.iter().map(f).sum::<u64>();
    assert_eq!(total(|p| p.origin_to_caches), 1000);
    assert_eq!(total(|p| p.origin_to_viewers), 500);
    assert_eq!(total(|p| p.caches_to_viewers), 300);
    assert_eq!(total(|p| p.demand), 800);
    assert!(load.iter().all(|p| p.secs == 10 && p.at % 10 == 0));

    let vf = root.admin_flows(&view).await.unwrap();
    let received: Vec<(&str, u64)> = vf
        .received
        .iter()
        .map(|f| (f.peer_kind.as_str(), f.bytes))
        .collect();
    assert_eq!(received, [("origin", 500), ("cache", 300)]);
    let cf = root.admin_flows(&cache).await.unwrap();
    assert_eq!(cf.sent.len(), 1);
    assert_eq!(
        (cf.sent[0].peer.as_str(), cf.sent[0].bytes),
        (view.as_str(), 300)
    );
    assert_eq!(cf.received[0].peer, "origin");

    // Out-of-range and malformed queries.
    let http = reqwest::Client::new();
    for q in [
        "minutes=0",
        "minutes=100000",
        "minutes=-5",
        "minutes=abc",
        "hours=2",
    ] {
        let resp = http
            .get(format!("{}/api/v1/admin/load?{q}", t.net.url()))
            .bearer_auth(root.token().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{q}");
    }
    t.net.shutdown().await;
}

/// The OpenAPI document lists exactly the routes the server answers: every documented
/// operation reaches a handler (no routing 404/405), and every handler the other tests call
/// is documented.
#[tokio::test]
async fn earnings_over_time_follow_the_credited_bytes() {
    let t = Tracker::start_with(&[("m", 0)], |c| {
        c.bytes_per_point = 10_000;
        c.placement_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let alice = t.user("alice").await;
    let bob = t.user("bob").await;
    bob.buy("m").await.unwrap();
    let manifest = Manifest::from_json(&bob.manifest("m").await.unwrap()).unwrap();
    let chunk = manifest.chunk_len(0) as u64;
    let cache = alice.register_node(&cache_at(2121)).await.unwrap();
    // Placement gives the cache the movie (bob's purchase is its demand): the tracker can
    // vouch for what it sends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !alice
        .heartbeat(&cache.node_id, &Heartbeat::default())
        .await
        .unwrap()
        .placed
    {
        assert!(std::time::Instant::now() < deadline, "never placed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let view = bob
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap();
    // Nothing credited yet: every bucket is empty.
    let none = alice.earnings(60, 12).await.unwrap();
    assert_eq!((none.bucket_secs, none.buckets.len()), (300, 12));
    assert!(
        none.buckets
            .iter()
            .all(|b| b.credited_bytes == 0 && b.points == 0)
    );
    assert!(
        none.buckets
            .windows(2)
            .all(|w| w[1].start == w[0].start + 300)
    );

    // The cache reports two and a half chunks to bob's viewer, whose receipts confirm two:
    // alice is credited the smaller.
    let reported = chunk * 5 / 2;
    let sent = Heartbeat {
        seq: 1,
        sent: vec![PeerBytes::new(view.node_id.clone(), "m", reported)],
        ..Heartbeat::default()
    };
    let got = |seq, indices: &[u16]| Heartbeat {
        seq,
        watching: Some("m".into()),
        received: vec![PeerBytes {
            chunks: indices.iter().map(|&i| ChunkRef(0, i)).collect(),
            ..PeerBytes::new(cache.node_id.clone(), "m", indices.len() as u64 * chunk)
        }],
        ..Heartbeat::default()
    };
    alice.heartbeat(&cache.node_id, &sent).await.unwrap();
    bob.heartbeat(&view.node_id, &got(1, &[0, 1]))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let e = alice.earnings(60, 12).await.unwrap();
    let filled: Vec<_> = e.buckets.iter().filter(|b| b.credited_bytes > 0).collect();
    assert_eq!(filled.len(), 1, "{e:?}");
    let b = filled[0];
    assert_eq!(
        (b.uploaded_bytes, b.credited_bytes, b.points),
        (reported, 2 * chunk, 2 * chunk / 10_000)
    );
    assert!(b.start <= now && now < b.start + 300, "{b:?} at {now}");
    assert_eq!(e.buckets.last(), Some(b), "the newest bucket holds it");
    // The totals agree with the account.
    let me = alice.me().await.unwrap();
    assert_eq!(
        (me.credited_bytes, me.balance),
        (2 * chunk, 100 + 2 * chunk / 10_000)
    );
    // bob's viewer earned nothing.
    assert!(
        bob.earnings(60, 12)
            .await
            .unwrap()
            .buckets
            .iter()
            .all(|b| b.credited_bytes == 0)
    );
    // The rest of the confirmation arrives later: a second event, summed in its bucket, up
    // to what the cache reported.
    bob.heartbeat(&view.node_id, &got(2, &[2])).await.unwrap();
    let e = alice.earnings(60, 1).await.unwrap();
    assert_eq!(e.buckets.len(), 1);
    assert_eq!(
        (e.buckets[0].credited_bytes, e.buckets[0].points),
        (reported, reported / 10_000)
    );
    let db = t.net.db();
    let (rows, uploaded, credited, points): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(uploaded_bytes) AS BIGINT),
                CAST(SUM(credited_bytes) AS BIGINT), CAST(SUM(points) AS BIGINT)
         FROM credit_minutes",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    // The report and the two confirmations add up in one row per minute (two if the test
    // straddled a minute's end).
    assert!((1..=2).contains(&rows), "{rows} rows");
    assert_eq!(
        (uploaded, credited, points),
        (reported as i64, reported as i64, (reported / 10_000) as i64)
    );

    // Bad input: one 4xx with the shared error body; no session: 401.
    for (minutes, buckets) in [(0, 12), (43_201, 12), (60, 0), (600, 241), (30, 31)] {
        assert_eq!(
            code(alice.earnings(minutes, buckets).await),
            (400, ErrorCode::BadRequest),
            "minutes={minutes} buckets={buckets}"
        );
    }
    assert_eq!(
        code(t.client().earnings(60, 12).await),
        (401, ErrorCode::Unauthorized)
    );
    let token = t
        .client()
        .login(&creds("alice", "correct-horse-42"))
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    for query in ["minutes=soon", "buckets=-1", "colour=red"] {
        let resp = http
            .get(format!("{}/api/v1/me/earnings?{query}", t.net.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{query}");
        let body: rivulet_tracker_client::ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error.code, ErrorCode::BadRequest, "{query}");
        assert!(!body.error.message.is_empty());
    }
    t.net.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let t = Tracker::start(&[]).await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{}/api/v1/openapi.json", t.net.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    operations.sort();
    let expected = [
        ("DELETE", "/api/v1/nodes/{id}"),
        ("DELETE", "/api/v1/sessions/current"),
        ("GET", "/api/v1/admin/accounts"),
        ("GET", "/api/v1/admin/flows/{node}"),
        ("GET", "/api/v1/admin/load"),
        ("GET", "/api/v1/admin/nodes"),
        ("GET", "/api/v1/admin/videos"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/me/earnings"),
        ("GET", "/api/v1/me/nodes"),
        ("GET", "/api/v1/origin"),
        ("GET", "/api/v1/videos"),
        ("GET", "/api/v1/videos/{id}"),
        ("GET", "/api/v1/videos/{id}/manifest"),
        ("GET", "/api/v1/videos/{id}/poster"),
        ("POST", "/api/v1/accounts"),
        ("POST", "/api/v1/nodes"),
        ("POST", "/api/v1/sessions"),
        ("POST", "/api/v1/tickets"),
        ("POST", "/api/v1/videos/{id}/purchase"),
        ("PUT", "/api/v1/nodes/{id}/heartbeat"),
    ];
    let got: Vec<(&str, &str)> = operations
        .iter()
        .map(|(m, p)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(got, expected);
    for (method, path) in &operations {
        let url = format!(
            "{}{}",
            t.net.url(),
            path.replace("{id}", "x").replace("{node}", "x")
        );
        let req = http.request(method.parse().unwrap(), url);
        let req = if method == "POST" || method == "PUT" {
            req.json(&serde_json::json!({}))
        } else {
            req
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}");
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path}: {status} {body}"
        );
    }
    t.net.shutdown().await;
}

/// Parallel wrong passwords cannot slip past the lock-out: each attempt is counted before it
/// is checked.
#[tokio::test]
async fn parallel_guesses_are_counted_before_they_are_checked() {
    let t = Tracker::start(&[]).await;
    t.client()
        .register(&creds("gina", "correct-horse-42"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let c = t.client();
            tokio::spawn(async move { c.login(&creds("gina", &format!("guess-{i}-x"))).await })
        })
        .collect();
    let mut wrong = 0;
    let mut locked = 0;
    for task in tasks {
        match code(task.await.unwrap()) {
            (401, ErrorCode::BadCredentials) => wrong += 1,
            (429, ErrorCode::LockedOut) => locked += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((wrong, locked), (5, 19));
    assert_eq!(
        code(t.client().login(&creds("gina", "correct-horse-42")).await).0,
        429
    );
    t.net.shutdown().await;
}

/// Byte totals stop at a ceiling instead of overflowing; the admin views keep working.
#[tokio::test]
async fn transfer_totals_cannot_overflow() {
    let t = Tracker::start(&[("m", 0)]).await;
    let root = t.user("root").await;
    let db = t.net.db();
    sqlx::query("UPDATE accounts SET admin = 1 WHERE username = 'root'")
        .execute(&db)
        .await
        .unwrap();
    let cache = root.register_node(&cache_at(2121)).await.unwrap().node_id;
    let view = root
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let huge = |seq| Heartbeat {
        seq,
        sent: vec![PeerBytes::new(view.clone(), "m", 1 << 40)],
        ..Heartbeat::default()
    };
    root.heartbeat(&cache, &huge(1)).await.unwrap();
    // Push the row to the brink, as years of traffic (or a liar) would.
    sqlx::query("UPDATE transfers SET reported_bytes = 4611686018427387000")
        .execute(&db)
        .await
        .unwrap();
    for seq in 2..5 {
        root.heartbeat(&cache, &huge(seq)).await.unwrap();
    }
    let stored: i64 = sqlx::query_scalar("SELECT MAX(reported_bytes) FROM transfers")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 1 << 62);
    // A second row at the ceiling: the sums exceed 64 bits and still answer.
    let other = root.register_node(&cache_at(2122)).await.unwrap().node_id;
    root.heartbeat(&other, &huge(1)).await.unwrap();
    sqlx::query("UPDATE transfers SET reported_bytes = 4611686018427387904")
        .execute(&db)
        .await
        .unwrap();
    let load = root.admin_load(5).await.unwrap();
    assert!(
        load.iter().map(|p| p.demand).sum::<u64>() >= 1 << 63,
        "{load:?}"
    );
    root.admin_flows(&cache).await.unwrap();
    // Duplicate entries in one heartbeat are refused.
    let twice = Heartbeat {
        sent: [huge(9).sent, huge(9).sent].concat(),
        ..Heartbeat::default()
    };
    assert_eq!(code(root.heartbeat(&cache, &twice).await).0, 400);
    t.net.shutdown().await;
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let t = Tracker::start_with(&[], |c| c.signup_limits.per_address = 3).await;
    for name in ["ann", "ben", "cid"] {
        t.client()
            .register(&creds(name, "correct-horse-42"))
            .await
            .unwrap();
    }
    assert_eq!(
        code(t.client().register(&creds("dot", "correct-horse-42")).await),
        (429, ErrorCode::LockedOut)
    );
    // Refused requests that never reach the limit check do not use it up.
    assert_eq!(
        code(t.client().register(&creds("x", "correct-horse-42")).await).0,
        400
    );
    t.net.shutdown().await;
}
