//! The report's Figure 4 experiment on one machine: a real tracker and origin, caches and
//! real-time viewers on loopback (real FTP, decode and verification), viewers joining one
//! by one and watching random movies back to back, optionally caches leaving, joining and
//! crashing. Run once without caches (plain client–server, the baseline) and once with, on
//! the same movies and schedule; a time scale shortens movies, intervals and cache sizes
//! but keeps every rate, so bandwidth figures read as in the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::cache::Cache;
use rivulet_node_core::format::Manifest;
use rivulet_node_core::viewer::{self, Viewer, WatchOptions};
use rivulet_tracker_client::{Credentials, TrackerClient};
use serde::Serialize;
use tokio::sync::Mutex;

const PASSWORD: &str = "swarm-pass-1";

/// How viewers pick movies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Popularity {
    Uniform,
    /// Zipf with this exponent over the catalogue order.
    Zipf(f64),
}

/// The scenario, in the report's (unscaled) units.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    pub caches: u32,
    pub viewers: u32,
    pub videos: u32,
    /// Length of each movie, seconds.
    pub movie_secs: f64,
    /// Playback rate, bits per second.
    pub rate_bps: u64,
    /// A new viewer every this many seconds.
    pub join_every_secs: f64,
    pub cache_bytes: u64,
    pub cache_upload_bps: u64,
    pub popularity: Popularity,
    /// Caches replaced per minute.
    pub churn_per_min: f64,
    /// Whether caches that leave crash (no goodbye) instead of leaving politely.
    pub crash: bool,
    /// Length of the experiment, minutes.
    pub minutes: f64,
    /// Time runs this many times faster (sizes of movies and caches shrink alike).
    pub scale: f64,
    pub seed: u64,
    /// The origin and the caches serve FTPS only, loopback clients included, and every
    /// chunk session is pinned to the certificate the tracker named.
    pub tls: bool,
    /// The share of caches (0..=1) that nobody can connect to: they reach the tracker and
    /// the origin, but what they advertise refuses every connection, as a cache behind a
    /// NAT without a forwarded port does. The tracker's probe finds them unreachable.
    pub unreachable: f64,
}

impl SwarmConfig {
    /// A short name for a Rivulet phase of this configuration (`u30`, `u30-tls`), for its
    /// folders and its files beside the first phase's.
    pub fn tag(&self) -> String {
        format!(
            "u{:.0}{}",
            self.unreachable * 100.0,
            if self.tls { "-tls" } else { "" }
        )
    }

    /// Whether cache number `serial` is one of the unreachable share: spread evenly, so
    /// any prefix of the caches (and every replacement under churn) keeps the share.
    pub fn is_unreachable(&self, serial: u32) -> bool {
        let f = self.unreachable.clamp(0.0, 1.0);
        (f64::from(serial + 1) * f).floor() > (f64::from(serial) * f).floor()
    }
}

/// Where unreachable caches' addresses are: loopback addresses where nothing listens.
const NOWHERE: &str = "127.66.";

/// An address on loopback where nothing listens, distinct per cache: what an unreachable
/// cache advertises (connections to it are refused).
fn unreachable_addr(serial: u32) -> String {
    format!("{NOWHERE}{}.{}:1", serial / 250, serial % 250 + 1)
}

/// Whether the tracker's probe found cache `c` unreachable.
fn probed_unreachable(c: &Cache) -> bool {
    c.status().borrow().unreachable()
}

impl Default for SwarmConfig {
    /// The report's scenario: 60 caches of 1.5 GB and 10 Mbit/s, 60 viewers joining every
    /// 10 s, random movies at 3.2 Mbit/s, 40 minutes; nine times faster here (both phases
    /// within 10 minutes on 2 cores).
    fn default() -> SwarmConfig {
        SwarmConfig {
            caches: 60,
            viewers: 60,
            videos: 10,
            movie_secs: 600.0,
            rate_bps: 3_200_000,
            join_every_secs: 10.0,
            cache_bytes: 1_500_000_000,
            cache_upload_bps: 10_000_000,
            popularity: Popularity::Uniform,
            churn_per_min: 0.0,
            crash: false,
            minutes: 40.0,
            scale: 9.0,
            seed: 1,
            tls: false,
            unreachable: 0.0,
        }
    }
}

/// One sample of the load, in the experiment's time and Mbit/s.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Experiment time, seconds.
    pub t: f64,
    pub origin_to_viewers: f64,
    pub origin_to_caches: f64,
    pub caches_to_viewers: f64,
    /// What viewers received: origin→viewers + caches→viewers.
    pub demand: f64,
    /// Bytes the origin sent during the sample.
    #[serde(skip)]
    pub origin_bytes: u64,
}

/// What one phase measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phase {
    pub with_caches: bool,
    pub origin_bytes: u64,
    pub origin_to_viewers_bytes: u64,
    pub origin_to_caches_bytes: u64,
    pub caches_to_viewers_bytes: u64,
    pub viewer_bytes: u64,
    /// Origin bytes in the last third of the run.
    pub origin_bytes_steady: u64,
    pub movies_completed: u32,
    /// Watches that failed.
    pub watch_errors: u32,
    /// Completed watches whose rebuilt file did not match the manifest (never expected).
    pub mismatches: u32,
    pub error_samples: Vec<String>,
    pub starts_ms: Vec<u64>,
    pub stall_ms: u64,
    /// Time spent playing or stalled in completed movies, ms.
    pub watch_ms: u64,
    /// Origin bytes no placement could avoid (see `lower_bound`).
    pub lower_bound_bytes: u64,
    pub cpu_secs: f64,
    pub wall_secs: f64,
    /// Chunks viewers asked of the origin because their peers lacked the indices, because
    /// a cache was late, and to replace a failed, missing or bad chunk.
    pub origin_asks_gap: u64,
    pub origin_asks_race: u64,
    pub origin_asks_retry: u64,
    /// The origin's verified bytes to viewers for those asks: gap, race, retry (what the
    /// origin sent for chunks dropped once their segment was complete is in
    /// `origin_to_viewers_bytes` only).
    pub origin_bytes_by_reason: [u64; 3],
    /// Caches' answers that failed, by kind: missing, unreachable, bad, other.
    pub peer_failures: [u64; 4],
    /// Chunks caches were asked for and lacked: placed there and warming, not placed there.
    pub cache_misses: [u64; 2],
    /// Bytes caches sent to other caches (warming from peers instead of the origin).
    pub caches_to_caches_bytes: u64,
    /// Caches running at the end that the tracker's probe had found unreachable.
    pub caches_probed_unreachable: u32,
    pub series: Vec<Sample>,
}

/// The headline numbers of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Origin bytes with caches ÷ origin bytes without, over the whole run.
    pub origin_share_total: f64,
    /// The same over the last third (the steady state).
    pub origin_share_steady: f64,
    /// The least origin share any placement could have had in this run.
    pub lower_bound_share: f64,
    pub start_p50_ms: f64,
    pub start_p95_ms: f64,
    /// Stalled time ÷ watched time, with caches.
    pub stall_ratio: f64,
    pub viewer_bytes: u64,
    /// Every completed movie was rebuilt byte for byte (checked against the manifest).
    pub byte_exact: bool,
    /// Watches that failed for any reason (with caches).
    pub failed_watches: u32,
    pub movies_completed: u32,
    pub baseline_origin_mbps: f64,
    pub rivulet_origin_mbps: f64,
    pub cpu_secs: f64,
    pub wall_secs: f64,
}

fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// A small deterministic generator (xorshift64*), so one seed gives one schedule.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A movie index by `popularity`.
    pub fn movie(&mut self, count: u32, popularity: Popularity) -> u32 {
        match popularity {
            Popularity::Uniform => (self.next_u64() % u64::from(count.max(1))) as u32,
            Popularity::Zipf(s) => {
                let weights: Vec<f64> = (1..=count).map(|r| 1.0 / f64::from(r).powf(s)).collect();
                let mut pick = self.unit() * weights.iter().sum::<f64>();
                for (i, w) in weights.iter().enumerate() {
                    if pick < *w {
                        return i as u32;
                    }
                    pick -= w;
                }
                count.saturating_sub(1)
            }
        }
    }
}

/// Makes the test movie: `seconds` of 640×360 video and a tone at about `rate_bps`.
pub fn make_clip(out: &Path, seconds: f64, rate_bps: u64) -> anyhow::Result<()> {
    let audio = 96_000u64;
    let video = rate_bps.saturating_sub(audio).max(100_000);
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x360:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &format!("{seconds:.2}")])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "50"])
        .args(["-b:v", &video.to_string(), "-maxrate", &video.to_string()])
        .args(["-bufsize", &(video / 2).to_string()])
        .args(["-c:a", "aac", "-b:a", &audio.to_string(), "-shortest"])
        .arg(out)
        .status()
        .context("running ffmpeg (installer/deps.sh installs it)")?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the test movie");
    Ok(())
}

/// A catalogue of `count` movies (ids `m0`, `m1`, …) ingested from one clip.
pub fn make_catalogue(data: &Path, clip: &Path, count: u32) -> anyhow::Result<()> {
    let movies: Vec<MovieSpec> = (0..count)
        .map(|i| {
            MovieSpec::file(format!("m{i}"), clip)
                .title(format!("Movie {i}"))
                .price(1)
        })
        .collect();
    let work = clip.parent().unwrap_or(data).join("making");
    rivulet_localnet::ingest_movies(data, &work, &movies)?;
    Ok(())
}

async fn login(url: &str, name: &str) -> anyhow::Result<TrackerClient> {
    let anon = TrackerClient::new(url);
    let creds = Credentials {
        username: name.into(),
        password: PASSWORD.into(),
    };
    let session = match anon.login(&creds).await {
        Ok(s) => s,
        Err(_) => {
            anon.register(&creds).await?;
            anon.login(&creds).await?
        }
    };
    Ok(anon.with_token(session.token))
}

/// What the viewers found, shared while they run.
#[derive(Debug, Default)]
struct Tally {
    starts_ms: Vec<u64>,
    stall_ms: u64,
    watch_ms: u64,
    completed: u32,
    errors: u32,
    /// Completed watches whose file did not match the manifest.
    mismatches: u32,
    /// The first few distinct failures, for the report.
    error_samples: Vec<String>,
    received: u64,
    /// Chunks asked of the origin: gap, race, retry (see `viewer::Progress::origin_asks`).
    origin_asks: [u64; 3],
    /// Verified origin bytes for those asks, by the same reasons.
    origin_bytes_by: [u64; 3],
    /// Failed cache answers: missing, unreachable, bad, other (`viewer::PeerFailures`).
    peer_failures: [u64; 4],
}

impl Tally {
    fn failed(&mut self, why: String) {
        self.errors += 1;
        if self.error_samples.len() < 8 && !self.error_samples.contains(&why) {
            self.error_samples.push(why);
        }
    }
}

/// One viewer: joins at `join`, watches random movies back to back in real time until
/// `end`.
#[allow(clippy::too_many_arguments)]
async fn viewer_loop(
    url: String,
    name: String,
    join: Instant,
    end: Instant,
    config: SwarmConfig,
    seed: u64,
    dir: PathBuf,
    tally: Arc<Mutex<Tally>>,
) {
    tokio::time::sleep_until(join.into()).await;
    let mut rng = Rng::new(seed);
    let client = match login(&url, &name).await {
        Ok(c) => c,
        Err(e) => {
            tally.lock().await.failed(format!("log-in: {e}"));
            return;
        }
    };
    let options = WatchOptions {
        realtime: true,
        ..WatchOptions::default()
    };
    let mut round = 0u32;
    while Instant::now() < end {
        let movie = format!("m{}", rng.movie(config.videos, config.popularity));
        let started = Instant::now();
        let prepared = async {
            client.buy(&movie).await?;
            let video = client.video(&movie).await?;
            let manifest = Arc::new(Manifest::from_json(&client.manifest(&movie).await?)?);
            anyhow::Ok((video, manifest))
        };
        let (video, manifest) = match prepared.await {
            Ok(p) => p,
            Err(e) => {
                tally.lock().await.failed(format!("buying: {e}"));
                return;
            }
        };
        let out = dir.join(format!("{name}-{round}.mkv"));
        round += 1;
        let download = viewer::partial_path(&out);
        let session = match Viewer::open(
            &client,
            &movie,
            manifest.clone(),
            video.duration_ms,
            &download,
            &options,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                tally.lock().await.failed(format!("joining: {e}"));
                // Not in a tight loop: a player would show the error and wait.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let left = end.saturating_duration_since(Instant::now());
        let watched = tokio::time::timeout(
            left,
            viewer::watch(
                &session,
                &manifest,
                video.duration_ms,
                &out,
                &options,
                started,
            ),
        )
        .await;
        let received = session.progress().from_origin_bytes.load(Ordering::Relaxed)
            + session.progress().from_caches_bytes.load(Ordering::Relaxed);
        let asks = session.progress().origin_asks.get();
        let origin_bytes_by = session.progress().origin_bytes_by.get();
        let peer_failures = session.progress().peer_failures.get();
        session.close().await;
        let mut t = tally.lock().await;
        t.received += received;
        for (total, a) in t.origin_asks.iter_mut().zip(asks) {
            *total += a;
        }
        for (total, b) in t.origin_bytes_by.iter_mut().zip(origin_bytes_by) {
            *total += b;
        }
        for (total, f) in t.peer_failures.iter_mut().zip(peer_failures) {
            *total += f;
        }
        match watched {
            Ok(Ok(report)) => {
                t.completed += 1;
                t.starts_ms.push(report.start_ms);
                t.stall_ms += report.stall_ms;
                t.watch_ms += video.duration_ms + report.stall_ms;
            }
            Ok(Err(e)) => {
                if matches!(e, viewer::WatchError::Mismatch { .. }) {
                    t.mismatches += 1;
                }
                t.failed(format!("watching: {e}"));
            }
            Err(_) => {}
        }
        drop(t);
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&download);
    }
}

/// Runs one phase over the catalogue in `data` (copied per phase so both start alike).
pub async fn run_phase(
    config: &SwarmConfig,
    with_caches: bool,
    catalogue: &Path,
    work: &Path,
) -> anyhow::Result<Phase> {
    let scale = config.scale.max(0.01);
    // Each phase on its own tracker and folders: several Rivulet phases share one baseline.
    let name = if with_caches {
        format!("rivulet-{}", config.tag())
    } else {
        "baseline".to_owned()
    };
    let data = work.join(&name);
    rivulet_localnet::copy_data_dir(catalogue, &data)?;
    let net = LocalNetwork::builder(work.join(format!("home-{name}")))
        .data_dir(&data)
        // The tracker's default: an overloaded machine must not drop nodes that are only slow.
        .node_timeout(Duration::from_secs(15))
        .placement_interval(Duration::from_secs(1))
        .initial_points(1 << 40)
        .configure({
            let tls = config.tls;
            move |serve| {
                serve.signup_limits.per_address = usize::MAX;
                serve.login_limits.per_address = usize::MAX;
                if tls {
                    // The caches follow the origin's mode (`LocalNetwork::cache_options`).
                    serve.origin_tls = rivulet_node_core::peer::tls::TlsMode::Forced;
                }
            }
        })
        .start()
        .await?;
    let tracker = net.server();
    let url = tracker.url();
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let length = Duration::from_secs_f64(config.minutes * 60.0 / scale);
    let end = start + length;

    let mut caches: Vec<Cache> = Vec::new();
    let mut gone_distinct = 0u64;
    // Chunks caches were asked for and lacked: (placed, warming; not placed there).
    let mut gone_missed = (0u64, 0u64);
    let mut gone_sent = 0u64;
    let mut gone_to_caches = 0u64;
    let mut cache_serial = 0u32;
    let start_cache = |serial: u32| {
        let url = url.clone();
        let spec = CacheSpec::new(format!("cache{serial}"), PASSWORD)
            .storage((config.cache_bytes as f64 / scale) as u64)
            .upload(config.cache_upload_bps);
        let net = &net;
        let unreachable = config.is_unreachable(serial);
        async move {
            login(&url, &spec.user).await?;
            if unreachable {
                let options = net
                    .cache_options(&spec)
                    .advertise(Some(unreachable_addr(serial)));
                return anyhow::Ok(Cache::start(options).await?);
            }
            anyhow::Ok(net.start_cache(&spec).await?)
        }
    };
    if with_caches {
        for _ in 0..config.caches {
            caches.push(start_cache(cache_serial).await?);
            cache_serial += 1;
        }
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut viewers = tokio::task::JoinSet::new();
    let views = work.join(format!("views-{name}"));
    std::fs::create_dir_all(&views)?;
    for v in 0..config.viewers {
        let join = start + Duration::from_secs_f64(f64::from(v) * config.join_every_secs / scale);
        viewers.spawn(viewer_loop(
            url.clone(),
            format!("viewer{v}"),
            join,
            end,
            config.clone(),
            config.seed.wrapping_mul(1000).wrapping_add(u64::from(v)),
            views.clone(),
            tally.clone(),
        ));
    }

    // Sample the load once a (wall) second; replace caches as churn asks.
    let mut rng = Rng::new(config.seed ^ 0xC0FFEE);
    let churn_every = (config.churn_per_min > 0.0)
        .then(|| Duration::from_secs_f64(60.0 / config.churn_per_min / scale));
    let mut next_churn = churn_every.map(|e| start + e);
    let mut series = Vec::new();
    let mut last = (0u64, 0u64, 0u64, Instant::now());
    let mut lower_bound_overflow = 0f64;
    // Only reachable caches can serve anyone.
    let reachable = (0..config.caches)
        .filter(|&c| !config.is_unreachable(c))
        .count();
    let cap_total = reachable as f64 * config.cache_upload_bps as f64 / 8.0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let origin = tracker.origin_served();
        let o2v = origin.to_viewers.load(Ordering::Relaxed);
        let o2c = origin.to_caches.load(Ordering::Relaxed);
        let c2v = gone_sent
            + caches
                .iter()
                .map(|c| c.served().to_viewers.load(Ordering::Relaxed))
                .sum::<u64>();
        let dt = now.duration_since(last.3).as_secs_f64().max(1e-3);
        let mbps = |bytes: u64| bytes as f64 * 8.0 / dt / 1e6;
        let sample = Sample {
            t: now.duration_since(start).as_secs_f64() * scale,
            origin_to_viewers: mbps(o2v - last.0),
            origin_to_caches: mbps(o2c - last.1),
            caches_to_viewers: mbps(c2v - last.2),
            demand: mbps(o2v - last.0 + c2v - last.2),
            origin_bytes: o2v - last.0 + o2c - last.1,
        };
        if with_caches {
            // Demand beyond what all caches could upload had to come from the origin.
            let demand_bytes = (o2v - last.0 + c2v - last.2) as f64;
            lower_bound_overflow += (demand_bytes - cap_total * dt).max(0.0);
        }
        series.push(sample);
        last = (o2v, o2c, c2v, now);
        if now >= end {
            break;
        }
        if let (Some(at), Some(every)) = (next_churn, churn_every)
            && now >= at
            && !caches.is_empty()
        {
            next_churn = Some(at + every);
            let victim = caches.swap_remove((rng.next_u64() % caches.len() as u64) as usize);
            gone_distinct += victim.status().borrow().distinct_sent_bytes;
            let s = victim.status().borrow().clone();
            gone_missed.0 += s.missed_warming;
            gone_missed.1 += s.missed_unplaced;
            gone_sent += victim.served().to_viewers.load(Ordering::Relaxed);
            gone_to_caches += victim.served().to_caches.load(Ordering::Relaxed);
            if config.crash {
                victim.crash();
            } else {
                victim.stop().await;
            }
            caches.push(start_cache(cache_serial).await?);
            cache_serial += 1;
        }
    }
    while viewers.join_next().await.is_some() {}
    let origin = tracker.origin_served();
    let o2v = origin.to_viewers.load(Ordering::Relaxed);
    let o2c = origin.to_caches.load(Ordering::Relaxed);
    let cache_misses = caches.iter().fold(gone_missed, |(w, u), c| {
        let s = c.status().borrow().clone();
        (w + s.missed_warming, u + s.missed_unplaced)
    });
    let distinct: u64 = gone_distinct
        + caches
            .iter()
            .map(|c| c.served().distinct_bytes())
            .sum::<u64>();
    let c2v = gone_sent
        + caches
            .iter()
            .map(|c| c.served().to_viewers.load(Ordering::Relaxed))
            .sum::<u64>();
    let c2c = gone_to_caches
        + caches
            .iter()
            .map(|c| c.served().to_caches.load(Ordering::Relaxed))
            .sum::<u64>();
    let probed = caches.iter().filter(|c| probed_unreachable(c)).count() as u32;
    for cache in caches {
        cache.stop().await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    net.shutdown().await;
    let steady_from = config.minutes * 60.0 * 2.0 / 3.0;
    let origin_steady: u64 = series
        .iter()
        .filter(|s| s.t >= steady_from)
        .map(|s| s.origin_bytes)
        .sum();
    let tally = Arc::try_unwrap(tally)
        .map(Mutex::into_inner)
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&views);
    Ok(Phase {
        with_caches,
        origin_bytes: o2v + o2c,
        origin_to_viewers_bytes: o2v,
        origin_to_caches_bytes: o2c,
        caches_to_viewers_bytes: c2v,
        viewer_bytes: tally.received,
        origin_bytes_steady: origin_steady,
        movies_completed: tally.completed,
        watch_errors: tally.errors,
        mismatches: tally.mismatches,
        error_samples: tally.error_samples,
        starts_ms: tally.starts_ms,
        stall_ms: tally.stall_ms,
        watch_ms: tally.watch_ms,
        lower_bound_bytes: if with_caches {
            distinct + lower_bound_overflow as u64
        } else {
            o2v + o2c
        },
        cpu_secs: cpu,
        wall_secs: wall,
        origin_asks_gap: tally.origin_asks[0],
        origin_asks_race: tally.origin_asks[1],
        origin_asks_retry: tally.origin_asks[2],
        origin_bytes_by_reason: tally.origin_bytes_by,
        peer_failures: tally.peer_failures,
        cache_misses: [cache_misses.0, cache_misses.1],
        caches_to_caches_bytes: c2c,
        caches_probed_unreachable: probed,
        series,
    })
}

/// The `p` quantile (0..=1) of `values`, nearest rank; 0 when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

/// The headline numbers from the baseline and the Rivulet phase.
pub fn summarize(config: &SwarmConfig, baseline: &Phase, rivulet: &Phase) -> Summary {
    let base = baseline.origin_bytes.max(1) as f64;
    let starts: Vec<f64> = rivulet.starts_ms.iter().map(|&ms| ms as f64).collect();
    let secs = config.minutes * 60.0 / config.scale.max(0.01);
    Summary {
        origin_share_total: rivulet.origin_bytes as f64 / base,
        origin_share_steady: rivulet.origin_bytes_steady as f64
            / baseline.origin_bytes_steady.max(1) as f64,
        lower_bound_share: rivulet.lower_bound_bytes as f64 / base,
        start_p50_ms: percentile(&starts, 0.5),
        start_p95_ms: percentile(&starts, 0.95),
        stall_ratio: rivulet.stall_ms as f64 / rivulet.watch_ms.max(1) as f64,
        viewer_bytes: rivulet.viewer_bytes,
        byte_exact: baseline.mismatches == 0 && rivulet.mismatches == 0,
        failed_watches: rivulet.watch_errors,
        movies_completed: rivulet.movies_completed,
        baseline_origin_mbps: baseline.origin_bytes as f64 * 8.0 / secs / 1e6,
        rivulet_origin_mbps: rivulet.origin_bytes as f64 * 8.0 / secs / 1e6,
        cpu_secs: baseline.cpu_secs + rivulet.cpu_secs,
        wall_secs: baseline.wall_secs + rivulet.wall_secs,
    }
}

/// The time series of both phases as CSV.
pub fn write_csv(path: &Path, baseline: &Phase, rivulet: &Phase) -> std::io::Result<()> {
    let mut out = String::from(
        "phase,t_secs,origin_to_viewers_mbps,origin_to_caches_mbps,caches_to_viewers_mbps,demand_mbps\n",
    );
    for phase in [baseline, rivulet] {
        let name = if phase.with_caches {
            "rivulet"
        } else {
            "baseline"
        };
        for s in &phase.series {
            out.push_str(&format!(
                "{name},{:.1},{:.3},{:.3},{:.3},{:.3}\n",
                s.t, s.origin_to_viewers, s.origin_to_caches, s.caches_to_viewers, s.demand
            ));
        }
    }
    std::fs::write(path, out)
}

/// Averages samples over windows of `window` experiment seconds, for a readable plot.
fn smooth(series: &[Sample], window: f64) -> Vec<Sample> {
    let mut buckets: BTreeMap<u64, (Sample, u32)> = BTreeMap::new();
    for s in series {
        let key = (s.t / window) as u64;
        let (sum, n) = buckets.entry(key).or_default();
        sum.origin_to_viewers += s.origin_to_viewers;
        sum.origin_to_caches += s.origin_to_caches;
        sum.caches_to_viewers += s.caches_to_viewers;
        sum.demand += s.demand;
        sum.origin_bytes += s.origin_bytes;
        *n += 1;
    }
    buckets
        .into_iter()
        .map(|(k, (s, n))| {
            let n = f64::from(n);
            Sample {
                t: (k as f64 + 0.5) * window,
                origin_to_viewers: s.origin_to_viewers / n,
                origin_to_caches: s.origin_to_caches / n,
                caches_to_viewers: s.caches_to_viewers / n,
                demand: s.demand / n,
                origin_bytes: s.origin_bytes,
            }
        })
        .collect()
}

/// A plot like the report's Figure 4: the four flows over time, and the baseline's origin.
pub fn write_png(path: &Path, baseline: &Phase, rivulet: &Phase) -> anyhow::Result<()> {
    use plotters::style::RGBColor;
    // About forty points per line, and never finer than the ten-second samples' noise.
    let span = rivulet.series.last().map_or(600.0, |s| s.t);
    let window = (span / 40.0).max(10.0);
    let base = smooth(&baseline.series, window);
    let riv = smooth(&rivulet.series, window);
    let line = |series: &[Sample], f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        series.iter().map(|s| (s.t / 60.0, f(s))).collect()
    };
    let lines: Vec<crate::plot::Line> = vec![
        (
            "client–server origin (baseline)",
            RGBColor(150, 150, 150),
            line(&base, |s| s.origin_to_viewers + s.origin_to_caches),
        ),
        ("demand", RGBColor(0, 0, 0), line(&riv, |s| s.demand)),
        (
            "caches → viewers",
            RGBColor(30, 120, 200),
            line(&riv, |s| s.caches_to_viewers),
        ),
        (
            "origin → viewers",
            RGBColor(220, 60, 40),
            line(&riv, |s| s.origin_to_viewers),
        ),
        (
            "origin → caches",
            RGBColor(240, 160, 20),
            line(&riv, |s| s.origin_to_caches),
        ),
    ];
    crate::plot::draw(path, "Rivulet swarm: bandwidth over time", lines)
}
