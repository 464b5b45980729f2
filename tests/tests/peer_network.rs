//! The peer network end to end on loopback: a real tracker and origin, caches that fetch
//! what placement gives them and serve it over FTP, viewers that rebuild from caches and the
//! origin. Rebuilt files are byte-exact, warm caches carry the load, bad and dead caches
//! cost nothing but a little origin traffic, and cache owners earn exactly their points.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rivulet_e2e::{eventually, node_binary, sha256_file};
use rivulet_localnet::process::{spawn_reading_line, walk};
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::cache::{Cache, CacheOptions};
use rivulet_node_core::headless;
use rivulet_node_core::peer::ftp::{ChunkSession, FetchError};
use rivulet_node_core::viewer::{WatchOptions, WatchReport};
use rivulet_tracker_client::{Heartbeat, NodeRegistration, TicketRequest};

const PASSWORD: &str = "network-pass-1";
const BYTES_PER_POINT: u64 = 10_000;
const START_POINTS: u64 = 100;
const PLACEMENT_EVERY: Duration = Duration::from_millis(300);

async fn network(seconds: u32) -> LocalNetwork {
    LocalNetwork::temp()
        .movie(MovieSpec::sample("film", seconds).price(10))
        .configure(|config| {
            config.node_timeout = Duration::from_secs(3);
            config.placement_interval = PLACEMENT_EVERY;
            config.bytes_per_point = BYTES_PER_POINT;
            config.initial_points = START_POINTS;
        })
        .start()
        .await
        .unwrap()
}

/// Makes viewer accounts that bought the film (their purchases make it popular).
async fn viewers(net: &LocalNetwork, names: &[&str]) {
    for name in names {
        net.register(name, PASSWORD).await.unwrap();
        net.login(name, PASSWORD)
            .await
            .unwrap()
            .buy("film")
            .await
            .unwrap();
    }
}

/// Distinct chunk indices of the film held complete by the given caches, per the tracker.
async fn held(net: &LocalNetwork, owners: &[&str]) -> BTreeSet<u16> {
    let mut all = BTreeSet::new();
    for owner in owners {
        let Ok(client) = net.login(owner, PASSWORD).await else {
            continue;
        };
        for node in client.my_nodes().await.unwrap_or_default() {
            for h in node.holdings.iter().filter(|h| h.video == "film") {
                all.extend(h.indices.iter().copied());
            }
        }
    }
    all
}

/// Waits until the caches of `owners` hold at least k (16) distinct indices of the film (k − 1
/// for a single owner, who is never given k), then one more placement round, so that peer
/// sets are computed from those holdings.
async fn warm(net: &LocalNetwork, owners: &[&str]) {
    let want = if owners.len() == 1 { 15 } else { 16 };
    assert!(
        eventually(Duration::from_secs(30), || async {
            held(net, owners).await.len() >= want
        })
        .await,
        "caches never warmed: {:?}",
        held(net, owners).await
    );
    tokio::time::sleep(PLACEMENT_EVERY * 2).await;
}

/// Waits until every owner's account shows as credited the bytes viewers verified from its
/// cache, less what no watch needed (a chunk past k of a segment, fetched in a race: the
/// ledger credits k a segment at most), and exactly the points its credit earns.
async fn assert_exact_points(net: &LocalNetwork, expected: &BTreeMap<String, u64>) {
    for (owner, bytes) in expected {
        let client = net.login(owner, PASSWORD).await.unwrap();
        let fits = |credited: u64| credited <= *bytes && credited >= bytes - bytes / 100;
        let settled = eventually(Duration::from_secs(20), || {
            let client = client.clone();
            async move {
                client.me().await.is_ok_and(|me| {
                    fits(me.credited_bytes)
                        && me.balance == START_POINTS + me.credited_bytes / BYTES_PER_POINT
                })
            }
        })
        .await;
        let me = client.me().await.unwrap();
        assert!(
            settled,
            "{owner}: credited {} balance {}, expected up to {bytes} bytes (99% at least) \
             and {} points for them",
            me.credited_bytes,
            me.balance,
            START_POINTS + me.credited_bytes / BYTES_PER_POINT
        );
    }
}

fn check_byte_exact(net: &LocalNetwork, report: &WatchReport, out: &std::path::Path) {
    let want = sha256_file(&net.stream_file("film")).unwrap();
    assert_eq!(report.sha256, want);
    assert_eq!(sha256_file(out).unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_caches_carry_the_viewers_and_their_owners_earn_exact_points() {
    let net = network(16).await;
    let owners = ["own1", "own2", "own3", "own4"];
    let mut caches: Vec<(String, Cache)> = Vec::new();
    for owner in owners {
        net.register(owner, PASSWORD).await.unwrap();
        let cache = net
            .start_cache(
                &CacheSpec::new(owner, PASSWORD)
                    .storage(100_000_000)
                    .upload(1_000_000_000),
            )
            .await
            .unwrap();
        caches.push((owner.to_owned(), cache));
    }
    // Nobody wants the film yet: nothing is placed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(held(&net, &owners).await.is_empty());
    // Purchases make it popular: placement spreads it over all four caches.
    viewers(&net, &["viewer1", "viewer2", "viewer3"]).await;
    // Placement spreads at least k distinct indices over the caches, which fetch them.
    warm(&net, &owners).await;
    for (owner, cache) in &caches {
        let status = cache.status().borrow().clone();
        assert!(status.used_bytes > 0 && status.used_bytes <= status.storage_bytes);
        // The store is hidden and not playable: no movie file, nothing named after it.
        let store = net.cache_dir(owner).join(".rivulet-store");
        for entry in walk(&store) {
            let name = entry.to_string_lossy().into_owned();
            assert!(!name.contains("film") && !name.ends_with(".mkv"), "{name}");
        }
    }

    // FTP to a cache without a valid ticket for it is refused.
    let cache_addr = caches[0].1.status().borrow().addr.clone();
    let cache_id = caches[0].1.status().borrow().node_id.clone();
    let other_id = caches[1].1.status().borrow().node_id.clone();
    let v1 = net.login("viewer1", PASSWORD).await.unwrap();
    let me = v1.register_node(&NodeRegistration::viewer()).await.unwrap();
    let for_other = v1
        .ticket(&TicketRequest::new(me.node_id.clone(), other_id, "film"))
        .await
        .unwrap();
    let for_this = v1
        .ticket(&TicketRequest::new(
            me.node_id.clone(),
            cache_id.clone(),
            "film",
        ))
        .await
        .unwrap();
    let t = Duration::from_secs(5);
    for (user, ticket) in [
        ("anonymous", ""),
        (me.node_id.as_str(), "garbage"),
        (me.node_id.as_str(), for_other.ticket.as_str()),
        ("viewer-someone-else", for_this.ticket.as_str()),
    ] {
        let refused = ChunkSession::connect(&cache_addr, user, ticket, "film", t).await;
        assert!(
            matches!(refused, Err(FetchError::Refused { .. })),
            "{user}/{ticket}: {refused:?}"
        );
    }
    let mut ok = ChunkSession::connect(&cache_addr, &me.node_id, &for_this.ticket, "film", t)
        .await
        .unwrap();
    let held_here = held(&net, &[&caches[0].0]).await;
    let held_here = *held_here
        .first()
        .expect("the first cache holds some of the film");
    assert!(ok.fetch(0, held_here, 1 << 20).await.is_ok());
    v1.leave(&me.node_id).await.unwrap();

    // Three viewers at once: byte-exact, and the origin sends under 10% of their bytes.
    let mut watches = Vec::new();
    for name in ["viewer1", "viewer2", "viewer3"] {
        let (url, out) = (net.url(), net.path(&format!("{name}.mkv")));
        watches.push(tokio::spawn(async move {
            let report = headless::watch(
                &url,
                name,
                PASSWORD,
                "film",
                &out,
                &WatchOptions::default(),
                false,
            )
            .await;
            (out, report)
        }));
    }
    let mut reports = Vec::new();
    for w in watches {
        let (out, report) = w.await.unwrap();
        let report = report.unwrap();
        check_byte_exact(&net, &report, &out);
        reports.push(report);
    }
    let origin: u64 = reports.iter().map(|r| r.from_origin_bytes).sum();
    let total: u64 = reports
        .iter()
        .map(|r| r.from_origin_bytes + r.from_caches_bytes)
        .sum();
    assert!(
        origin * 10 < total,
        "origin sent {origin} of {total} bytes: {reports:#?}"
    );
    assert!(reports.iter().all(|r| r.bad_peers.is_empty()));

    // Each owner is credited exactly what viewers verified from its cache.
    let mut expected = BTreeMap::new();
    for (owner, cache) in &caches {
        let id = cache.status().borrow().node_id.clone();
        let bytes: u64 = reports
            .iter()
            .map(|r| r.from_peers.get(&id).copied().unwrap_or(0))
            .sum();
        expected.insert(owner.clone(), bytes);
    }
    assert!(expected.values().all(|b| *b > 0), "{expected:?}");
    assert_exact_points(&net, &expected).await;
    for (_, cache) in caches {
        cache.stop().await;
    }
    net.shutdown().await;
}

/// A `rivulet-node cache` process and the node id it printed.
struct CacheProcess {
    child: Child,
    node_id: String,
}

impl Drop for CacheProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_cache(net: &LocalNetwork, owner: &str) -> CacheProcess {
    let (child, line) = spawn_reading_line(
        Command::new(node_binary())
            .args(["cache", "--tracker", &net.url(), "--user", owner])
            .args(["--listen", "127.0.0.1:0"])
            .args([
                "--size",
                "100MB",
                "--upload",
                "1Gbit",
                "--download",
                "1Gbit",
            ])
            .arg("--dir")
            .arg(net.cache_dir(owner))
            .arg("--key")
            .arg(net.path("keys").join(format!("{owner}.key")))
            .env("RIVULET_PASSWORD", PASSWORD)
            .stderr(Stdio::inherit()),
    );
    let printed: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!("cache printed {line:?}: {e}");
    });
    CacheProcess {
        child,
        node_id: printed["node_id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_cache_is_blamed_and_a_killed_cache_costs_no_long_stall() {
    let net = network(20).await;
    let owners = ["bad", "dies", "ok1", "ok2"];
    let mut caches = Vec::new();
    for owner in owners {
        net.register(owner, PASSWORD).await.unwrap();
        caches.push(spawn_cache(&net, owner));
    }
    // Bought once all four caches are up, so placement spreads the film over them.
    viewers(&net, &["watcher1", "watcher2"]).await;
    warm(&net, &owners).await;
    // The "bad" cache's disk rots: every byte of its store flipped.
    let rotten = walk(&net.cache_dir("bad").join(".rivulet-store"))
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let flipped: Vec<u8> = std::fs::read(&p).unwrap().iter().map(|b| !b).collect();
            std::fs::write(&p, flipped).unwrap();
        })
        .count();
    assert!(rotten > 0);

    let options = WatchOptions {
        realtime: true,
        ..WatchOptions::default()
    };
    let mut watches = Vec::new();
    for name in ["watcher1", "watcher2"] {
        let (url, out, options) = (net.url(), net.path(&format!("{name}.mkv")), options.clone());
        watches.push(tokio::spawn(async move {
            let report = headless::watch(&url, name, PASSWORD, "film", &out, &options, false).await;
            (out, report)
        }));
    }
    // Mid-stream, the "dies" cache is killed without a word.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let dies = caches.remove(1);
    let dead_id = dies.node_id.clone();
    drop(dies);

    let video = net.login("watcher1", PASSWORD).await.unwrap();
    let film = video.video("film").await.unwrap();
    let segment_ms = film.duration_ms / u64::from(film.segments);
    let bad_id = caches[0].node_id.clone();
    let mut verified = BTreeMap::<String, u64>::new();
    for w in watches {
        let (out, report) = w.await.unwrap();
        let report = report.unwrap();
        check_byte_exact(&net, &report, &out);
        assert!(
            report.longest_stall_ms <= segment_ms,
            "a stall of {} ms, longer than a segment ({segment_ms} ms): {report:#?}",
            report.longest_stall_ms
        );
        assert_eq!(report.bad_peers, vec![bad_id.clone()], "{report:#?}");
        assert!(report.from_caches_bytes > 0, "{report:#?}");
        for (peer, bytes) in &report.from_peers {
            *verified.entry(peer.clone()).or_default() += bytes;
        }
        assert!(!report.from_peers.contains_key(&bad_id), "{report:#?}");
    }
    // The corrupt cache's owner earns nothing; the others exactly what was verified.
    let mut expected = BTreeMap::new();
    expected.insert("bad".to_owned(), 0);
    for (owner, cache) in [("ok1", &caches[1]), ("ok2", &caches[2])] {
        expected.insert(
            owner.to_owned(),
            verified.get(&cache.node_id).copied().unwrap_or(0),
        );
    }
    assert_exact_points(&net, &expected).await;
    // The killed cache never reported its last bytes: it is credited at most what the
    // viewers verified from it.
    let dies = net.account_of("dies", PASSWORD).await.unwrap();
    assert!(dies.credited_bytes <= verified.get(&dead_id).copied().unwrap_or(0));
    drop(caches);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_on_ipv6_and_behind_an_advertised_name_serve_viewers() {
    let net = network(8).await;
    let mut caches = Vec::new();
    for (owner, listen, advertise) in [
        ("six", "[::1]:0", None),
        ("named", "127.0.0.1:0", Some("localhost")),
    ] {
        net.register(owner, PASSWORD).await.unwrap();
        let options = CacheOptions {
            listen: listen.parse().unwrap(),
            advertise: advertise.map(str::to_owned),
            ..net.cache_options(
                &CacheSpec::new(owner, PASSWORD)
                    .upload(1_000_000_000)
                    .storage(100_000_000),
            )
        };
        let cache = Cache::start(options).await.unwrap();
        caches.push(cache);
    }
    let six = caches[0].status().borrow().clone();
    let named = caches[1].status().borrow().clone();
    assert!(six.addr.starts_with("[::1]:"), "{}", six.addr);
    assert!(named.addr.starts_with("localhost:"), "{}", named.addr);
    let nodes = net
        .login("six", PASSWORD)
        .await
        .unwrap()
        .my_nodes()
        .await
        .unwrap();
    assert_eq!(nodes[0].advertise, six.addr);
    viewers(&net, &["viewer6"]).await;
    warm(&net, &["six", "named"]).await;
    let out = net.path("six.mkv");
    let report = headless::watch(
        &net.url(),
        "viewer6",
        PASSWORD,
        "film",
        &out,
        &WatchOptions::default(),
        false,
    )
    .await
    .unwrap();
    check_byte_exact(&net, &report, &out);
    for status in [&six, &named] {
        assert!(
            report
                .from_peers
                .get(&status.node_id)
                .is_some_and(|b| *b > 0),
            "{} sent nothing: {report:#?}",
            status.addr
        );
    }
    for cache in caches {
        cache.stop().await;
    }
    net.shutdown().await;
}

/// The film's indices a cache's status says it holds complete.
fn film_indices(status: &rivulet_node_core::cache::CacheStatus) -> BTreeSet<u16> {
    status
        .holdings
        .iter()
        .filter(|h| h.video == "film")
        .flat_map(|h| h.indices.clone())
        .collect()
}

/// A cache that stops and starts again (the app closed and opened) finds what it held in
/// its own store, reports it, and placement leaves it there: nothing is fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_started_again_keeps_what_it_held_without_fetching() {
    let net = network(20).await;
    viewers(&net, &["fan"]).await;
    net.register("keeper", PASSWORD).await.unwrap();
    let keeper = CacheSpec::new("keeper", PASSWORD)
        .storage(2_000_000_000)
        .upload(10_000_000);
    let cache = net.start_cache(&keeper).await.unwrap();
    warm(&net, &["keeper"]).await;
    // Until it has fetched all it was given (what it fetches no longer grows).
    let status = cache.status();
    let mut last = u64::MAX;
    for _ in 0..40 {
        let now = status.borrow().fetched_bytes;
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = status.borrow().clone();
    assert!(before.fetched_bytes > 0);
    let had = film_indices(&before);
    cache.stop().await;

    let again = net.start_cache(&keeper).await.unwrap();
    // Its first heartbeats report the same indices, and the tracker sees them.
    assert!(
        eventually(Duration::from_secs(10), || async {
            held(&net, &["keeper"]).await == had
        })
        .await,
        "held {:?} after the restart, {had:?} before",
        held(&net, &["keeper"]).await
    );
    // Under its new node id the tracker has not seen it fetch anything: it counts the
    // holdings once its spot-check (two random chunks over FTP, Merkle-verified) passes,
    // and then hands the cache to viewers again.
    let fan = net.login("fan", PASSWORD).await.unwrap();
    let viewer = fan
        .register_node(&NodeRegistration::viewer())
        .await
        .unwrap()
        .node_id;
    let again_id = again.status().borrow().node_id.clone();
    let watching = Heartbeat {
        watching: Some("film".into()),
        ..Heartbeat::default()
    };
    assert!(
        eventually(Duration::from_secs(15), || async {
            fan.heartbeat(&viewer, &watching)
                .await
                .is_ok_and(|r| r.peers.iter().any(|p| p.node_id == again_id))
        })
        .await,
        "the restarted cache never passed its spot-check"
    );
    // Several placement rounds later it still holds them and has fetched nothing.
    tokio::time::sleep(PLACEMENT_EVERY * 8).await;
    let after = again.status().borrow().clone();
    assert_eq!(after.fetched_bytes, 0, "{after:?}");
    assert_eq!(film_indices(&after), had);
    again.stop().await;
}
