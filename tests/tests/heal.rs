//! Nodes that heal, against a real tracker and origin on loopback: a viewer keeps playing
//! across a tracker restart (it registers again and finishes the movie byte for byte), a
//! cache keeps earning across an expired session (it logs in again by itself), a kept
//! session never tries a refused password twice, and holdings the tracker refuses leave the
//! cache's store while the cache goes on.

use std::time::{Duration, Instant};

use rivulet_e2e::{eventually, sha256_file};
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec, credentials};
use rivulet_node_core::cache::Cache;
use rivulet_node_core::headless;
use rivulet_node_core::viewer::{self, JoinOptions, Viewer, WatchOptions};
use rivulet_tracker_client::ErrorCode;

const PASSWORD: &str = "healing-pass-1";
const PLACEMENT_EVERY: Duration = Duration::from_millis(300);

/// A network of `movies` (each `seconds` long, free), nodes dropped after 3 s of silence
/// (so they beat every second), placement every 300 ms, a point per 10 kB credited.
async fn network(movies: &[&str], seconds: u32) -> LocalNetwork {
    LocalNetwork::temp()
        .movies(movies.iter().map(|id| MovieSpec::sample(*id, seconds)))
        .configure(|config| {
            config.node_timeout = Duration::from_secs(3);
            config.placement_interval = PLACEMENT_EVERY;
            config.bytes_per_point = 10_000;
        })
        .start()
        .await
        .unwrap()
}

/// Makes accounts that bought `movies` (purchases make them popular, so placement puts
/// them on caches).
async fn buyers(net: &LocalNetwork, names: &[&str], movies: &[&str]) {
    for name in names {
        let client = net.user(name, PASSWORD).await.unwrap();
        for movie in movies {
            client.buy(movie).await.unwrap();
        }
    }
}

/// Starts a cache for a new account `owner` with room and upload to spare.
async fn cache_of(net: &LocalNetwork, owner: &str) -> Cache {
    net.register(owner, PASSWORD).await.unwrap();
    net.start_cache(
        &CacheSpec::new(owner, PASSWORD)
            .storage(200_000_000)
            .upload(1_000_000_000),
    )
    .await
    .unwrap()
}

/// Waits until `cache` holds some index of each of `movies` complete.
async fn warm(cache: &Cache, movies: &[&str]) {
    let status = cache.status();
    let holds_all = || {
        let now = status.borrow().clone();
        movies.iter().all(|m| {
            now.holdings
                .iter()
                .any(|h| h.video == *m && !h.indices.is_empty())
        })
    };
    assert!(
        eventually(Duration::from_secs(40), || async { holds_all() }).await,
        "the cache never held {movies:?}: {:?}",
        status.borrow()
    );
    // One more placement round, so that peer sets see these holdings.
    tokio::time::sleep(PLACEMENT_EVERY * 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_keeps_playing_across_a_tracker_restart() {
    let mut net = network(&["film"], 10).await;
    buyers(&net, &["ann"], &["film"]).await;
    let out = net.path("film.mkv");
    let options = WatchOptions {
        realtime: true,
        look_ahead: 2,
        ..WatchOptions::default()
    };
    let join = JoinOptions::new(viewer::partial_path(&out))
        .credentials(credentials("ann", PASSWORD))
        .watch(options.clone());
    let started = Instant::now();
    let viewer = Viewer::join(&net.client(), "film", &join).await.unwrap();
    let first_id = viewer.node_id();
    let manifest = viewer.manifest().clone();
    let duration_ms = viewer.info().duration_ms;
    let segments = manifest.segment_count();
    assert!(segments >= 4, "a movie of {segments} segments is too short");

    let play = viewer::watch(&viewer, &manifest, duration_ms, &out, &options, started);
    let restart = async {
        let mut status = viewer.status();
        // Playing, but far from done.
        tokio::time::timeout(
            Duration::from_secs(30),
            status.wait_for(|s| s.complete_segments >= 1),
        )
        .await
        .expect("the first segment arrives")
        .unwrap();
        let done_before = viewer.status().borrow().complete_segments;
        net.restart_tracker().await.unwrap();
        // The restarted tracker forgot the viewer; its next heartbeat finds out.
        let healed = eventually(Duration::from_secs(15), || async {
            viewer.node_id() != first_id
        })
        .await;
        (done_before, healed)
    };
    let (report, (done_before, healed)) = tokio::time::timeout(Duration::from_secs(90), async {
        tokio::join!(play, restart)
    })
    .await
    .expect("the watch ends");
    let report = report.unwrap();
    assert!(
        done_before < segments,
        "the restart came after the whole movie ({done_before} of {segments})"
    );
    assert!(healed, "the viewer never registered again");
    // Byte for byte, and every byte verified.
    let want = sha256_file(&net.stream_file("film")).unwrap();
    assert_eq!(report.sha256, want);
    assert_eq!(sha256_file(&out).unwrap(), want);
    assert!(report.from_origin_bytes >= report.bytes);
    assert!(report.bad_peers.is_empty());
    // The tracker knows the viewer under its new id.
    let new_id = viewer.node_id();
    let ann = net.login("ann", PASSWORD).await.unwrap();
    let nodes: Vec<String> = ann
        .my_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(nodes, vec![new_id.clone()]);
    viewer.close().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ann.my_nodes().await.is_ok_and(|n| n.is_empty())
        })
        .await,
        "the viewer left under its new id"
    );
    net.shutdown().await;
}

/// `owner`'s credited bytes now.
async fn credited(net: &LocalNetwork, owner: &str) -> u64 {
    net.account_of(owner, PASSWORD)
        .await
        .unwrap()
        .credited_bytes
}

/// Watches the film as `who` (not in real time) and returns the bytes it got from caches.
async fn watch_film(net: &LocalNetwork, who: &str, out: &str) -> u64 {
    let out = net.path(out);
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        headless::watch(
            &net.url(),
            who,
            PASSWORD,
            "film",
            &out,
            &WatchOptions::default(),
            false,
        ),
    )
    .await
    .expect("the watch ends")
    .unwrap();
    assert_eq!(
        report.sha256,
        sha256_file(&net.stream_file("film")).unwrap()
    );
    report.from_caches_bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_keeps_earning_across_an_expired_session() {
    let net = network(&["film"], 6).await;
    buyers(&net, &["bea", "cid"], &["film"]).await;
    let cache = cache_of(&net, "owner").await;
    let node_id = cache.status().borrow().node_id.clone();
    warm(&cache, &["film"]).await;

    assert!(watch_film(&net, "bea", "bea.mkv").await > 0);
    assert!(
        eventually(Duration::from_secs(20), || async {
            credited(&net, "owner").await > 0
        })
        .await,
        "the cache earned nothing before its session expired"
    );
    let before = credited(&net, "owner").await;

    // A week passes: every session ends. A client that only has a token is refused.
    let stale = net.login("owner", PASSWORD).await.unwrap();
    assert!(net.expire_sessions().await.unwrap() >= 2);
    let refused = stale.me().await.unwrap_err();
    assert_eq!(refused.code(), Some(&ErrorCode::Unauthorized), "{refused}");

    // The cache logs in again by itself and its bytes are still credited.
    assert!(watch_film(&net, "cid", "cid.mkv").await > 0);
    assert!(
        eventually(Duration::from_secs(30), || async {
            credited(&net, "owner").await > before
        })
        .await,
        "the cache stopped earning after its session expired: {:?}",
        cache.status().borrow()
    );
    // Same node: a new session, not a new registration; and nothing to complain about.
    let status = cache.status().borrow().clone();
    assert_eq!(status.node_id, node_id);
    assert!(
        eventually(Duration::from_secs(10), || async {
            cache.status().borrow().problem.is_none()
        })
        .await,
        "{:?}",
        cache.status().borrow()
    );
    cache.stop().await;
    net.shutdown().await;
}

#[tokio::test]
async fn a_kept_session_logs_in_again_but_never_tries_a_refused_password_twice() {
    let net = network(&[], 1).await;
    net.register("dan", PASSWORD).await.unwrap();
    let kept = net
        .client()
        .login_kept(credentials("dan", PASSWORD))
        .await
        .unwrap();
    let first = kept.token().unwrap();
    // Expired: the next call logs in again and is answered as if nothing happened.
    net.expire_sessions().await.unwrap();
    assert_eq!(kept.me().await.unwrap().username, "dan");
    let second = kept.token().unwrap();
    assert_ne!(first, second);
    // Clones share the session.
    assert_eq!(kept.clone().me().await.unwrap().username, "dan");
    assert_eq!(kept.clone().token().unwrap(), second);

    // The password changed elsewhere, then the session ended: the kept one is refused once
    // and never sent again, so it cannot lock the account out however often it is used.
    net.set_password("dan", "another-pass-2").await.unwrap();
    net.expire_sessions().await.unwrap();
    for _ in 0..12 {
        let e = kept.me().await.unwrap_err();
        assert_eq!(e.code(), Some(&ErrorCode::BadCredentials), "{e}");
    }
    assert_eq!(kept.token(), None);
    let fresh = net.login("dan", "another-pass-2").await.unwrap();
    assert_eq!(fresh.me().await.unwrap().username, "dan");
    // A wrong password at the first log-in is an error at once.
    let wrong = net
        .client()
        .login_kept(credentials("dan", PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(&ErrorCode::BadCredentials));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdings_the_tracker_refuses_leave_the_store_and_the_cache_goes_on() {
    let net = network(&["film", "gone"], 4).await;
    buyers(&net, &["eve"], &["film", "gone"]).await;
    let cache = cache_of(&net, "keeper").await;
    warm(&cache, &["film", "gone"]).await;
    let status = cache.status();
    let used_before = status.borrow().used_bytes;

    net.remove_movie("gone").await.unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            let now = status.borrow().clone();
            !now.holdings.iter().any(|h| h.video == "gone")
                && now.used_bytes < used_before
                && now.problem.is_none()
        })
        .await,
        "the cache kept the removed movie: {:?}",
        status.borrow()
    );
    // It goes on: still registered, heartbeating, holding and serving the other movie.
    let keeper = net.login("keeper", PASSWORD).await.unwrap();
    let seen = keeper.my_nodes().await.unwrap()[0].last_seen;
    assert!(
        eventually(Duration::from_secs(10), || async {
            keeper.my_nodes().await.is_ok_and(|n| {
                n.len() == 1
                    && n[0].last_seen > seen
                    && n[0].holdings.iter().all(|h| h.video == "film")
                    && !n[0].holdings.is_empty()
            })
        })
        .await,
        "the cache stopped heartbeating: {:?}",
        status.borrow()
    );
    assert!(watch_film(&net, "eve", "eve.mkv").await > 0);
    cache.stop().await;
    net.shutdown().await;
}
