//! Caches that come and go, against a real tracker and origin on loopback: a cache placed
//! with indices another cache holds fetches them from that cache (the origin sends it
//! nothing), and a viewer whose peer crashes mid-movie finishes it from the other peers,
//! byte for byte, while the tracker stops handing out the dead cache within seconds; a
//! warming cache fetches first what lies just past where viewers ask it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rivulet_e2e::{eventually, sha256_file};
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::cache::Cache;
use rivulet_node_core::format::Manifest;
use rivulet_node_core::peer::ftp::{ChunkSession, MAX_BATCH};
use rivulet_node_core::viewer::{self, Viewer, WatchOptions};
use rivulet_tracker_client::{NodeRegistration, ReachState, TicketRequest};

const PASSWORD: &str = "churn-pass-1";
const PLACEMENT_EVERY: Duration = Duration::from_millis(300);

/// A network of one free movie of `seconds`, nodes beating every second (dropped after 3 s
/// of silence), placement every 300 ms.
async fn network(seconds: u32) -> LocalNetwork {
    network_with_timeout(seconds, Duration::from_secs(3)).await
}

/// [`network`] with nodes dropped after `timeout` of silence (beating every third of it).
async fn network_with_timeout(seconds: u32, timeout: Duration) -> LocalNetwork {
    LocalNetwork::temp()
        .movie(MovieSpec::sample("m", seconds))
        .configure(move |config| {
            config.node_timeout = timeout;
            config.placement_interval = PLACEMENT_EVERY;
            config.bytes_per_point = 10_000;
        })
        .start()
        .await
        .unwrap()
}

/// Starts cache number `n` of account `owner`, in its own folder, with room and upload to
/// spare.
async fn cache(net: &LocalNetwork, owner: &str, n: u32) -> Cache {
    let spec = CacheSpec::new(owner, PASSWORD)
        .storage(200_000_000)
        .upload(1_000_000_000);
    let mut options = net.cache_options(&spec);
    options.dir = net.dir().join(format!("cache-{owner}-{n}"));
    options.key_path = net
        .dir()
        .join(format!("keys-{owner}-{n}"))
        .join("store.key");
    Cache::start(options).await.unwrap()
}

/// Waits until `cache` holds every index placement gave it complete, and at least one.
async fn settled(cache: &Cache) -> usize {
    let status = cache.status();
    let held = || {
        status
            .borrow()
            .holdings
            .iter()
            .map(|h| h.indices.len())
            .sum::<usize>()
    };
    let mut last = 0;
    for _ in 0..3 {
        assert!(
            eventually(Duration::from_secs(40), || async { held() > last }).await || last > 0,
            "the cache never held anything: {:?}",
            status.borrow()
        );
        last = held();
        tokio::time::sleep(PLACEMENT_EVERY * 6).await;
        if held() == last {
            break;
        }
    }
    held()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_placed_with_indices_another_holds_fetches_them_there_not_from_the_origin() {
    let net = network(8).await;
    net.register("ann", PASSWORD).await.unwrap();
    // Someone bought the movie: placement wants it cached.
    let buyer = net.user("bob", PASSWORD).await.unwrap();
    buyer.buy("m").await.unwrap();
    // Ann's first cache warms from the origin: k − 1 indices (one account never holds k).
    let first = cache(&net, "ann", 1).await;
    let held = settled(&first).await;
    assert_eq!(held, 15, "{:?}", first.status().borrow().holdings);
    let origin = net.server().origin_served();
    let to_caches = || origin.to_caches.load(Ordering::Relaxed);
    let before = to_caches();
    assert!(before > 0 && first.status().borrow().fetched_bytes > 0);
    // Her second cache may hold only those same indices: the tracker names the first as
    // its source, and it fetches everything there.
    let second = cache(&net, "ann", 2).await;
    let held2 = settled(&second).await;
    let status = second.status().borrow().clone();
    assert_eq!(
        status.holdings,
        first.status().borrow().holdings,
        "the second cache holds the same indices"
    );
    assert!(held2 > 0);
    assert_eq!(
        status.fetched_bytes, 0,
        "nothing from the origin: {status:?}"
    );
    assert!(status.fetched_from_caches_bytes > 0, "{status:?}");
    assert_eq!(
        to_caches(),
        before,
        "the origin sent no cache anything more"
    );
    assert!(
        first.served().to_caches.load(Ordering::Relaxed) >= status.fetched_from_caches_bytes,
        "the first cache counted what it sent"
    );
    second.stop().await;
    first.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_whose_peer_crashes_finishes_from_the_other_peers_and_the_tracker_drops_it() {
    // Heartbeats every 5 s, silence dropped after 15 s: only a viewer's report of the dead
    // cache, checked by the tracker's own probe, can drop it sooner.
    let net = network_with_timeout(30, Duration::from_secs(15)).await;
    let viewer_client = net.user("vera", PASSWORD).await.unwrap();
    viewer_client.buy("m").await.unwrap();
    // Three caches of three accounts: any two of them hold more than k indices.
    let owners = ["ann", "cid", "dee"];
    let mut caches = Vec::new();
    for owner in owners {
        net.register(owner, PASSWORD).await.unwrap();
        caches.push(cache(&net, owner, 1).await);
    }
    for c in &caches {
        settled(c).await;
    }
    let manifest = std::sync::Arc::new(
        Manifest::from_json(&viewer_client.manifest("m").await.unwrap()).unwrap(),
    );
    let video = viewer_client.video("m").await.unwrap();
    let out = net.dir().join("watched.mkv");
    // Like a player: a few segments ahead, so the crash lands mid-movie.
    let options = WatchOptions {
        realtime: true,
        look_ahead: 2,
        parallel: 2,
        ..WatchOptions::default()
    };
    let session = Viewer::open(
        &viewer_client,
        "m",
        manifest.clone(),
        video.duration_ms,
        &viewer::partial_path(&out),
        &options,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let watching = viewer::watch(
        &session,
        &manifest,
        video.duration_ms,
        &out,
        &options,
        started,
    );
    let crash = async {
        // A few seconds in, the cache that sent this viewer the most dies.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let by_peer = session.progress().by_peer();
        let sent = |c: &Cache| {
            by_peer
                .get(&c.status().borrow().node_id)
                .copied()
                .unwrap_or(0)
        };
        let victim = (0..caches.len()).max_by_key(|&i| sent(&caches[i])).unwrap();
        assert!(
            sent(&caches[victim]) > 0,
            "the caches were serving: {by_peer:?}"
        );
        let dead = caches.remove(victim);
        let dead_id = dead.status().borrow().node_id.clone();
        let before = (
            session.progress().origin_asks.get(),
            session.progress().from_caches_bytes.load(Ordering::Relaxed),
        );
        dead.crash();
        let crashed_at = std::time::Instant::now();
        // The tracker finds it unreachable on the viewer's word and its own probe, long
        // before its silence would drop it.
        let owner = net.login(owners[victim], PASSWORD).await.unwrap();
        let dropped = eventually(Duration::from_secs(10), || async {
            owner.my_nodes().await.is_ok_and(|nodes| {
                nodes.iter().any(|n| {
                    n.node_id == dead_id
                        && n.reach
                            .as_ref()
                            .is_some_and(|r| r.state == ReachState::Unreachable)
                })
            })
        })
        .await;
        (dropped, crashed_at.elapsed(), before)
    };
    let (watched, (dropped, after, before)) = tokio::join!(watching, crash);
    watched.unwrap();
    assert!(
        dropped,
        "the dead cache was still handed out after {after:?}"
    );
    assert!(after < Duration::from_secs(10), "{after:?}");
    assert_eq!(
        sha256_file(&out).unwrap(),
        sha256_file(&net.stream_file("m")).unwrap(),
        "byte-exact"
    );
    let asks = session.progress().origin_asks.get();
    let from_caches = session.progress().from_caches_bytes.load(Ordering::Relaxed);
    assert!(from_caches > before.1, "the other caches went on serving");
    // What the dead cache owed was asked of the live ones: the crash cost the origin less
    // than one segment's chunks (k), over the rest of the movie.
    let after_crash: u64 = (0..3).map(|i| asks[i] - before.0[i]).sum();
    assert!(
        after_crash < u64::from(manifest.k),
        "the origin was asked {after_crash} chunks after the crash ({:?} then {asks:?})",
        before.0
    );
    session.close().await;
    for c in caches {
        c.stop().await;
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cache_learns_its_placement_from_the_next_round_not_its_next_heartbeat() {
    // Heartbeats every 10 s: a cache that waited for its second heartbeat to learn what to
    // hold would hold nothing for 10 s.
    let net = network_with_timeout(8, Duration::from_secs(30)).await;
    net.register("ann", PASSWORD).await.unwrap();
    let buyer = net.user("bob", PASSWORD).await.unwrap();
    buyer.buy("m").await.unwrap();
    let started = std::time::Instant::now();
    let fresh = cache(&net, "ann", 1).await;
    let status = fresh.status();
    let holds = || {
        status
            .borrow()
            .holdings
            .iter()
            .any(|h| !h.indices.is_empty())
    };
    assert!(
        eventually(Duration::from_secs(6), || async { holds() }).await,
        "nothing held {:?} after registering: {:?}",
        started.elapsed(),
        status.borrow()
    );
    fresh.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warming_cache_fetches_next_what_lies_just_past_where_viewers_ask() {
    let net = network(120).await;
    net.register("ann", PASSWORD).await.unwrap();
    let viewer_client = net.user("vera", PASSWORD).await.unwrap();
    viewer_client.buy("m").await.unwrap();
    let manifest = Manifest::from_json(&viewer_client.manifest("m").await.unwrap()).unwrap();
    let segments = manifest.segment_count();
    assert!(
        segments >= 40,
        "the movie is long enough to warm slowly: {segments}"
    );
    // Its download budget lets the cache warm about a segment a second (k − 1 indices of
    // each): from the start, it would reach the last third only after half a minute.
    let wire = manifest.wire_len(1) as u64;
    let per_segment = wire * u64::from(manifest.k - 1);
    let spec = CacheSpec::new("ann", PASSWORD)
        .storage(200_000_000)
        .upload(1_000_000_000);
    let mut options = net.cache_options(&spec);
    options.download_bps = per_segment * 8;
    let cache = Cache::start(options).await.unwrap();
    let status = cache.status();
    assert!(
        eventually(Duration::from_secs(20), || async {
            status.borrow().fetched_bytes > 0
        })
        .await,
        "the cache never began to warm: {:?}",
        status.borrow()
    );
    // A viewer in the last third asks the cache for a segment it does not have yet.
    let me = viewer_client
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap();
    let (addr, cache_id) = {
        let s = status.borrow();
        (s.addr.clone(), s.node_id.clone())
    };
    let ticket = viewer_client
        .ticket(&TicketRequest::new(me.node_id.clone(), cache_id, "m"))
        .await
        .unwrap()
        .ticket;
    let there = |segment: u32| chunks_there(&addr, &me.node_id, &ticket, &manifest, segment);
    let whole = usize::from(manifest.k - 1);
    let asked = segments * 2 / 3;
    let first = there(asked).await;
    assert!(
        first < whole,
        "the cache had segment {asked} already ({first} chunks): warming was not slow"
    );
    let started = std::time::Instant::now();
    // It fetches the segments just past the ask next, long before it would reach them
    // from the start.
    let next = asked + 2;
    let mut held = 0;
    while held < whole && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        held = there(next).await;
    }
    assert!(
        held >= whole,
        "segment {next} never came ahead of the rest: {held} chunks after {:?}",
        started.elapsed()
    );
    // While a segment between the start and the ask is still missing: it skipped ahead.
    let middle = asked - 5;
    assert!(
        there(middle).await < whole,
        "segment {middle} was there too: the cache did not skip ahead"
    );
    cache.stop().await;
    net.shutdown().await;
}

/// How many chunks of `segment` the cache at `addr` sends a viewer asking for every index.
async fn chunks_there(
    addr: &str,
    viewer: &str,
    ticket: &str,
    manifest: &Manifest,
    segment: u32,
) -> usize {
    let t = Duration::from_secs(5);
    let mut session = ChunkSession::connect(addr, viewer, ticket, "m", t)
        .await
        .unwrap();
    let indices: Vec<u16> = (0..manifest.n).collect();
    let mut got = 0;
    for batch in indices.chunks(MAX_BATCH) {
        got += session
            .fetch_batch(segment, batch, manifest.wire_len(segment), false)
            .await
            .map_or(0, |chunks| chunks.len());
    }
    session.close().await;
    got
}
