//! The HTTP API through the typed client, against a real server on 127.0.0.1:0 with a real
//! SQLite file in a temporary data dir, and movies ingested from media ffmpeg makes.

use std::sync::Arc;

use rivulet_node_core::format::Manifest;
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{ClientError, Credentials, TrackerClient, codes};

struct Tracker {
    dir: tempfile::TempDir,
    server: Server,
}

impl Tracker {
    /// A tracker with movies `(id, price)` ingested into its data dir.
    async fn start(movies: &[(&str, u64)]) -> Tracker {
        let dir = tempfile::tempdir().unwrap();
        let data_path = dir.path().join("data");
        let data = DataDir::create(&data_path).unwrap();
        let clip = dir.path().join("clip.mp4");
        make_sample_movie(&clip, 2, 320, 240).unwrap();
        for (id, price) in movies {
            ingest(
                &data,
                &IngestRequest {
                    input: clip.clone(),
                    title: format!("Movie {id}"),
                    price: *price,
                    id: Some((*id).to_owned()),
                },
            )
            .unwrap();
        }
        let mut config = ServeConfig::new(data_path);
        config.http = "127.0.0.1:0".parse().unwrap();
        config.initial_points = 100;
        let server = Server::bind(config).await.unwrap();
        Tracker { dir, server }
    }

    fn client(&self) -> TrackerClient {
        TrackerClient::new(&self.server.url())
    }

    fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("tracker.db")
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

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
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
    assert_eq!(code(me.me().await), (401, codes::UNAUTHORIZED.into()));
    assert_eq!(code(me.logout().await), (401, codes::UNAUTHORIZED.into()));
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_registrations_get_a_clear_4xx() {
    let t = Tracker::start(&[]).await;
    let c = t.client();
    c.register(&creds("taken", "correct-horse-42"))
        .await
        .unwrap();
    let long = "x".repeat(33);
    let cases: Vec<(Credentials, u16, &str)> = vec![
        (creds("", "correct-horse-42"), 400, codes::BAD_REQUEST),
        (creds("ab", "correct-horse-42"), 400, codes::BAD_REQUEST),
        (creds(&long, "correct-horse-42"), 400, codes::BAD_REQUEST),
        (
            creds("robert'); DROP TABLE accounts;--", "correct-horse-42"),
            400,
            codes::BAD_REQUEST,
        ),
        (
            creds("white space", "correct-horse-42"),
            400,
            codes::BAD_REQUEST,
        ),
        (creds("bob", "short1"), 400, codes::WEAK_PASSWORD),
        (creds("bob", "onlyletters"), 400, codes::WEAK_PASSWORD),
        (creds("bob", "123456789"), 400, codes::WEAK_PASSWORD),
        (creds("bobby", "xxbobby123"), 400, codes::WEAK_PASSWORD),
        (creds("bob", &"a1".repeat(129)), 400, codes::WEAK_PASSWORD),
        (creds("taken", "another-pass-1"), 409, codes::USERNAME_TAKEN),
        (creds("TAKEN", "another-pass-1"), 409, codes::USERNAME_TAKEN),
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
    t.server.shutdown().await.unwrap();
}

/// Raw HTTP for what the typed client cannot send: malformed JSON, wrong types, huge bodies.
#[tokio::test]
async fn malformed_requests_get_the_error_body() {
    let t = Tracker::start(&[]).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1{p}", t.server.url());
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
        (json("{"), 400, codes::BAD_REQUEST),
        (json("[]"), 400, codes::BAD_REQUEST),
        (
            json("{\"username\": 5, \"password\": \"correct-horse-42\"}"),
            400,
            codes::BAD_REQUEST,
        ),
        (json("{\"username\": \"carol\"}"), 400, codes::BAD_REQUEST),
        (
            json("{\"username\": \"carol\", \"password\": \"correct-horse-42\", \"admin\": true}"),
            400,
            codes::BAD_REQUEST,
        ),
        (json(&huge), 413, codes::TOO_LARGE),
        (
            http.post(url("/accounts")).body("username=carol"),
            400,
            codes::BAD_REQUEST,
        ),
        (http.get(url("/no/such/thing")), 404, codes::NOT_FOUND),
        (
            http.get(format!("{}/elsewhere", t.server.url())),
            404,
            codes::NOT_FOUND,
        ),
        (http.delete(url("/videos")), 405, codes::BAD_REQUEST),
        (
            http.get(url("/me"))
                .header("authorization", "Bearer forged"),
            401,
            codes::UNAUTHORIZED,
        ),
        (
            http.get(url("/me")).header("authorization", "Basic abc"),
            401,
            codes::UNAUTHORIZED,
        ),
    ];
    for (req, status, want) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], want, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn failed_log_ins_lock_the_account_out() {
    let t = Tracker::start(&[]).await;
    let c = t.client();
    c.register(&creds("dave", "correct-horse-42"))
        .await
        .unwrap();
    assert_eq!(
        code(c.login(&creds("nobody", "correct-horse-42")).await),
        (401, codes::BAD_CREDENTIALS.into())
    );
    for _ in 0..5 {
        assert_eq!(
            code(c.login(&creds("dave", "wrong-pass-1")).await),
            (401, codes::BAD_CREDENTIALS.into())
        );
    }
    // Locked: even the right password is refused, with a time to wait.
    match c.login(&creds("dave", "correct-horse-42")).await {
        Err(ClientError::Api {
            status: 429,
            code,
            message,
        }) => {
            assert_eq!(code, codes::LOCKED_OUT);
            assert!(message.contains("try again in"), "{message}");
        }
        other => panic!("expected a lock-out, got {other:?}"),
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let t = Tracker::start(&[]).await;
    let c = t.user("erin").await;
    c.me().await.unwrap();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", t.db_path().display()))
        .await
        .unwrap();
    sqlx::query("UPDATE sessions SET expires_at = 0")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(code(c.me().await), (401, codes::UNAUTHORIZED.into()));
    t.server.shutdown().await.unwrap();
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
    assert_eq!(
        code(anon.video("nope").await),
        (404, codes::NOT_FOUND.into())
    );
    assert_eq!(
        code(anon.video("..%2F..%2Fetc").await),
        (404, codes::NOT_FOUND.into())
    );
    assert_eq!(
        code(anon.poster("nope").await),
        (404, codes::NOT_FOUND.into())
    );
    assert_eq!(
        code(anon.manifest("cheap").await),
        (401, codes::UNAUTHORIZED.into())
    );
    assert_eq!(
        code(anon.buy("cheap").await),
        (401, codes::UNAUTHORIZED.into())
    );

    let frank = t.user("frank").await;
    assert_eq!(
        code(frank.manifest("cheap").await),
        (403, codes::NOT_BOUGHT.into())
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
        (402, codes::INSUFFICIENT_POINTS.into())
    );
    let me = frank.me().await.unwrap();
    assert_eq!(me.balance, 70);
    assert_eq!(me.bought, ["cheap"]);
    assert_eq!(
        code(frank.buy("nope").await),
        (404, codes::NOT_FOUND.into())
    );
    let free = frank.buy("free").await.unwrap();
    assert_eq!((free.charged, free.balance), (0, 70));
    assert_eq!(frank.me().await.unwrap().bought, ["cheap", "free"]);
    t.server.shutdown().await.unwrap();
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
    t.server.shutdown().await.unwrap();
}
