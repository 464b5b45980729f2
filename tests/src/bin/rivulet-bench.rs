//! `rivulet-bench`: benchmarks that span the tracker, caches and viewers, on loopback.
//! `start-seek` measures how long a real-time viewer waits to start and after each seek,
//! from the origin alone (the baseline) and with warm caches, in one run. `simulate` runs
//! the tracker's placement over a synthetic population of up to 100,000s of nodes.

use std::io::SeekFrom;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rivulet_e2e::eventually;
use rivulet_e2e::simulate::{self, SimConfig};
use rivulet_e2e::swarm::{self, Phase, Popularity, Rng, SwarmConfig, percentile};
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::viewer::{JoinOptions, Viewer, WatchOptions};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Counts live heap bytes, so `simulate` can say what the tracker's state takes.
struct Counting;

static LIVE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's layout contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: as for `alloc` and `dealloc`.
        let out = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !out.is_null() {
            LIVE_BYTES.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        }
        out
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

#[derive(Parser, Debug)]
#[command(name = "rivulet-bench", about = "Rivulet's cross-process benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn size_arg(s: &str) -> Result<u64, String> {
    rivulet_node_core::units::parse_size(s, rivulet_node_core::cache::DEFAULT_STORAGE_BYTES)
}

fn popularity_arg(s: &str) -> Result<Popularity, String> {
    match s.split_once(':') {
        None if s == "uniform" => Ok(Popularity::Uniform),
        None if s == "zipf" => Ok(Popularity::Zipf(0.8)),
        Some(("zipf", exp)) => exp
            .parse::<f64>()
            .ok()
            .filter(|e| e.is_finite() && *e > 0.0 && *e < 10.0)
            .map(Popularity::Zipf)
            .ok_or_else(|| format!("{exp:?} is not a Zipf exponent between 0 and 10")),
        _ => Err(format!("{s:?} is not uniform, zipf or zipf:EXPONENT")),
    }
}

fn positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e6)
        .ok_or_else(|| format!("{s:?} is not a positive number"))
}

fn non_negative(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e6)
        .ok_or_else(|| format!("{s:?} is not a number ≥ 0"))
}

fn share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a share between 0 and 1"))
}

fn zipf_exponent(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..10.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a Zipf exponent from 0 to 10"))
}

/// Shares between 0 and 1, from a comma-separated list (`0,0.3,0.5`).
#[derive(Clone, Debug)]
struct Shares(Vec<f64>);

fn fractions_arg(s: &str) -> Result<Shares, String> {
    let list: Result<Vec<f64>, String> = s.split(',').map(|v| share(v.trim())).collect();
    match list {
        Ok(l) if l.len() > 8 => Err("at most 8 shares".into()),
        other => other.map(Shares),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The report's Figure 4 experiment: caches and real-time viewers on loopback, the
    /// client–server baseline and Rivulet from one invocation (see docs/benchmarks.md).
    Swarm {
        #[arg(long, default_value_t = 60)]
        caches: u32,
        #[arg(long, default_value_t = 60)]
        viewers: u32,
        /// Movies in the catalogue.
        #[arg(long, default_value_t = 10)]
        videos: u32,
        /// Length of each movie, seconds (before scaling).
        #[arg(long, default_value = "600", value_parser = positive)]
        length: f64,
        /// Playback rate of the movies.
        #[arg(long, default_value = "3.2Mbit", value_parser = rate_arg)]
        rate: u64,
        /// A viewer joins every this many seconds (before scaling).
        #[arg(long, default_value = "10", value_parser = positive)]
        join_every: f64,
        /// Storage per cache (before scaling).
        #[arg(long, default_value = "1.5GB", value_parser = size_arg)]
        cache_size: u64,
        /// Upload cap per cache.
        #[arg(long, default_value = "10Mbit", value_parser = rate_arg)]
        cache_upload: u64,
        /// uniform, zipf or zipf:EXPONENT.
        #[arg(long, default_value = "uniform", value_parser = popularity_arg)]
        popularity: Popularity,
        /// Caches replaced per minute.
        #[arg(long, default_value = "0", value_parser = non_negative)]
        churn: f64,
        /// Caches that leave crash instead of saying goodbye.
        #[arg(long)]
        crash: bool,
        /// Length of the experiment, minutes (before scaling).
        #[arg(long, default_value = "40", value_parser = positive)]
        minutes: f64,
        /// Time runs this many times faster; movie and cache sizes shrink alike, rates stay.
        #[arg(long, default_value = "9", value_parser = positive)]
        scale: f64,
        /// Only the client–server baseline.
        #[arg(long)]
        no_caches: bool,
        /// FTPS everywhere (origin and caches, TLS forced on loopback, pinned sessions).
        #[arg(long)]
        tls: bool,
        /// Run each Rivulet phase twice, in plain FTP and in FTPS, beside one baseline (the
        /// CPU cost of TLS, measured in one run).
        #[arg(long, conflicts_with = "tls")]
        tls_compare: bool,
        /// Shares of caches nobody can connect to (comma-separated, e.g. `0,0.3,0.5`): one
        /// Rivulet phase per share, beside one baseline.
        #[arg(long, default_value = "0", value_parser = fractions_arg)]
        unreachable: Shares,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Write the time series as CSV here.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
        /// Draw the plot (PNG) here.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// A flow-level simulation through the tracker's real placement code: origin share
    /// beside its lower bound, start delays, placement round time and tracker memory, for
    /// populations far beyond one machine's sockets (see docs/simulation.md).
    Simulate {
        /// `internet` (10,000 + 10,000 home peers) or `swarm` (the swarm benchmark's
        /// scenario, for the cross-check); the options below change it.
        #[arg(long, default_value = "internet", value_parser = ["internet", "swarm"])]
        preset: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        caches: Option<u32>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        viewers: Option<u32>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        movies: Option<u32>,
        /// Zipf exponent of popularity (0: uniform).
        #[arg(long, value_parser = zipf_exponent)]
        zipf: Option<f64>,
        /// Share of caches others can connect to.
        #[arg(long, value_parser = share)]
        reachable: Option<f64>,
        /// Mean minutes a cache stays before it leaves (0: never).
        #[arg(long, value_parser = non_negative)]
        session: Option<f64>,
        /// Caches that leave do so politely (the default preset's crash).
        #[arg(long)]
        polite: bool,
        #[arg(long, value_parser = positive)]
        minutes: Option<f64>,
        /// Seconds of simulated time per step.
        #[arg(long, value_parser = positive)]
        step: Option<f64>,
        /// Seconds between placement rounds.
        #[arg(long, value_parser = positive)]
        placement_every: Option<f64>,
        /// Viewer v first presses play at v × this many seconds.
        #[arg(long, value_parser = non_negative)]
        join_every: Option<f64>,
        #[arg(long)]
        seed: Option<u64>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Write the time series as CSV here.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
        /// Draw the plot (PNG) here.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// Start and seek delays of real-time viewers, origin only and with warm caches.
    StartSeek {
        /// Viewers per phase (one after another).
        #[arg(long, default_value_t = 20)]
        viewers: u32,
        /// Seeks per viewer, to random places not rebuilt yet.
        #[arg(long, default_value_t = 10)]
        seeks: u32,
        /// Length of the movie, seconds (3 Mbit/s).
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Caches in the second phase.
        #[arg(long, default_value_t = 4)]
        caches: u32,
        /// Each cache's upload cap (the report's default: 10 Mbit/s).
        #[arg(long, default_value = "10Mbit", value_parser = rate_arg)]
        cache_upload: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

const PASSWORD: &str = "bench-pass-1";

fn rate_arg(s: &str) -> Result<u64, String> {
    rivulet_node_core::units::parse_rate(s, rivulet_node_core::cache::DEFAULT_UPLOAD_BPS)
}

#[derive(Debug, Default, Serialize)]
struct Delays {
    start_p50_ms: f64,
    start_p95_ms: f64,
    seek_p50_ms: f64,
    seek_p95_ms: f64,
    samples_start: usize,
    samples_seek: usize,
    from_caches_share: f64,
}

#[derive(Debug, Serialize)]
struct StartSeekSummary {
    origin_only: Delays,
    with_caches: Delays,
}

/// One viewer after another: log in, join, wait for the first bytes (start), then seek to
/// random places and wait for the bytes there (seek).
async fn measure(
    net: &LocalNetwork,
    prefix: &str,
    viewers: u32,
    seeks: u32,
    rng: &mut Rng,
) -> anyhow::Result<Delays> {
    let (mut starts, mut seek_times) = (Vec::new(), Vec::new());
    let (mut from_caches, mut total) = (0u64, 0u64);
    for v in 0..viewers {
        let name = format!("{prefix}{v}");
        net.register(&name, PASSWORD).await?;
        let setup = net.login(&name, PASSWORD).await?;
        setup.buy("film").await?;
        let started = Instant::now();
        let client = net.login(&name, PASSWORD).await?;
        let options = WatchOptions {
            realtime: true,
            ..WatchOptions::default()
        };
        let download = net.path(&format!(".{name}.part"));
        let join = JoinOptions::new(&download).watch(options);
        let session = Viewer::join(&client, "film", &join).await?;
        let manifest = session.manifest().clone();
        let mut reader = session.stream().reader();
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).await?;
        starts.push(started.elapsed().as_secs_f64() * 1000.0);
        let shared = session.stream().shared().clone();
        for _ in 0..seeks {
            // Seek into a part not rebuilt yet: the case a player waits for.
            let missing: Vec<u32> = (0..manifest.segment_count())
                .filter(|s| !shared.is_present(*s))
                .collect();
            let Some(&segment) = missing.get(rng.next_u64() as usize % missing.len().max(1)) else {
                break;
            };
            let to = manifest.segment_offset(segment)
                + rng.next_u64() % manifest.segment_len(segment) as u64;
            let at = Instant::now();
            reader.seek(SeekFrom::Start(to)).await?;
            reader.read_exact(&mut byte).await?;
            seek_times.push(at.elapsed().as_secs_f64() * 1000.0);
        }
        let p = session.progress();
        from_caches += p
            .from_caches_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        total += p
            .from_caches_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            + p.from_origin_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
        session.close().await;
        let _ = std::fs::remove_file(&download);
    }
    Ok(Delays {
        start_p50_ms: percentile(&starts, 0.5),
        start_p95_ms: percentile(&starts, 0.95),
        seek_p50_ms: percentile(&seek_times, 0.5),
        seek_p95_ms: percentile(&seek_times, 0.95),
        samples_start: starts.len(),
        samples_seek: seek_times.len(),
        from_caches_share: from_caches as f64 / total.max(1) as f64,
    })
}

async fn start_seek(
    viewers: u32,
    seeks: u32,
    seconds: u32,
    caches: u32,
    cache_upload: u64,
    seed: u64,
) -> anyhow::Result<StartSeekSummary> {
    let net = LocalNetwork::temp()
        .movie(MovieSpec::sample("film", seconds).price(1))
        .configure(|c| {
            c.placement_interval = Duration::from_millis(500);
            c.initial_points = 1000;
            // Every simulated account signs up from 127.0.0.1.
            c.signup_limits.per_address = usize::MAX;
            c.login_limits.per_address = usize::MAX;
        })
        .start()
        .await?;
    let mut rng = Rng::new(seed);
    let origin_only = measure(&net, "base", viewers, seeks, &mut rng).await?;
    let mut running = Vec::new();
    for c in 0..caches {
        let owner = format!("cache{c}");
        net.register(&owner, PASSWORD).await?;
        running.push(
            net.start_cache(
                &CacheSpec::new(&owner, PASSWORD)
                    .storage(2_000_000_000)
                    .upload(cache_upload),
            )
            .await?,
        );
    }
    // Warm: the caches hold at least k distinct indices of the film.
    let statuses: Vec<_> = running.iter().map(|c| c.status()).collect();
    let warm = eventually(Duration::from_secs(120), || {
        let held: std::collections::BTreeSet<u16> = statuses
            .iter()
            .flat_map(|s| s.borrow().holdings.clone())
            .flat_map(|h| h.indices)
            .collect();
        async move { held.len() >= 16 }
    })
    .await;
    anyhow::ensure!(warm, "the caches did not warm up within two minutes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_caches = measure(&net, "warm", viewers, seeks, &mut rng).await?;
    for c in running {
        c.stop().await;
    }
    net.shutdown().await;
    Ok(StartSeekSummary {
        origin_only,
        with_caches,
    })
}

/// The name of one Rivulet phase: its unreachable share and whether it ran in FTPS.
fn variant_label(config: &SwarmConfig) -> String {
    format!(
        "unreachable {:.0}%{}",
        config.unreachable * 100.0,
        if config.tls { ", FTPS" } else { "" }
    )
}

/// `path` with `-SUFFIX` before its extension (`swarm.csv` → `swarm-u30.csv`).
fn suffixed(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    path.with_file_name(name)
}

fn phase_json(p: &Phase) -> serde_json::Value {
    serde_json::json!({
        "origin_bytes": p.origin_bytes,
        "origin_to_viewers_bytes": p.origin_to_viewers_bytes,
        "origin_to_caches_bytes": p.origin_to_caches_bytes,
        "caches_to_viewers_bytes": p.caches_to_viewers_bytes,
        "viewer_bytes": p.viewer_bytes,
        "movies_completed": p.movies_completed,
        "watch_errors": p.watch_errors,
        "error_samples": p.error_samples,
        "cpu_secs": p.cpu_secs,
        "wall_secs": p.wall_secs,
        "caches_probed_unreachable": p.caches_probed_unreachable,
        "origin_asks": {
            "gap": p.origin_asks_gap,
            "race": p.origin_asks_race,
            "retry": p.origin_asks_retry,
        },
        // Caches' answers that failed, by kind (each then asked elsewhere).
        "peer_failures": {
            "missing": p.peer_failures[0],
            "unreachable": p.peer_failures[1],
            "bad": p.peer_failures[2],
            "other": p.peer_failures[3],
        },
        // What caches were asked for and lacked (as last heartbeated).
        "cache_misses": {
            "warming": p.cache_misses[0],
            "not_placed": p.cache_misses[1],
        },
        // Where the origin's bytes went, by why they were sent.
        "origin_bytes_by_reason": {
            "warming": p.origin_to_caches_bytes,
            "gap": p.origin_bytes_by_reason[0],
            "race": p.origin_bytes_by_reason[1],
            "retry": p.origin_bytes_by_reason[2],
            "unattributed": p.origin_to_viewers_bytes
                .saturating_sub(p.origin_bytes_by_reason.iter().sum::<u64>()),
        },
        "caches_to_caches_bytes": p.caches_to_caches_bytes,
    })
}

/// One baseline (origin only, in `base`'s mode), then one Rivulet phase per variant on the
/// same movies and schedule. The first variant's figures are the top level of the JSON (as
/// with one variant); with several, `variants` lists each. CSV and plot: the first variant
/// at the path given, the others beside it with a suffix.
async fn run_swarm(
    base: &SwarmConfig,
    variants: &[SwarmConfig],
    no_caches: bool,
    json: bool,
    csv: Option<std::path::PathBuf>,
    plot: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let clip = work.path().join("clip.mp4");
    eprintln!(
        "rivulet-bench: making {} movies of {:.0} s at {:.1} Mbit/s (scaled ×{})",
        base.videos,
        base.movie_secs / base.scale,
        base.rate_bps as f64 / 1e6,
        base.scale
    );
    swarm::make_clip(&clip, base.movie_secs / base.scale, base.rate_bps)?;
    let catalogue = work.path().join("catalogue");
    swarm::make_catalogue(&catalogue, &clip, base.videos)?;
    eprintln!(
        "rivulet-bench: baseline, {:.1} min",
        base.minutes / base.scale
    );
    let baseline = swarm::run_phase(base, false, &catalogue, work.path()).await?;
    if no_caches {
        let secs = base.minutes * 60.0 / base.scale;
        let out = serde_json::json!({
            "origin_mbps": baseline.origin_bytes as f64 * 8.0 / secs / 1e6,
            "viewer_bytes": baseline.viewer_bytes,
            "movies_completed": baseline.movies_completed,
            "byte_exact": baseline.watch_errors == 0,
            "cpu_secs": baseline.cpu_secs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut runs = Vec::new();
    for (i, config) in variants.iter().enumerate() {
        eprintln!(
            "rivulet-bench: with {} caches ({}), {:.1} min",
            config.caches,
            variant_label(config),
            config.minutes / config.scale
        );
        let rivulet = swarm::run_phase(config, true, &catalogue, work.path()).await?;
        let summary = swarm::summarize(config, &baseline, &rivulet);
        let path = |p: &std::path::PathBuf| {
            if i == 0 {
                p.clone()
            } else {
                suffixed(p, &config.tag())
            }
        };
        if let Some(p) = &csv {
            swarm::write_csv(&path(p), &baseline, &rivulet)?;
        }
        if let Some(p) = &plot {
            swarm::write_png(&path(p), &baseline, &rivulet)?;
        }
        runs.push((config, summary, rivulet));
    }
    if json {
        let mut list = Vec::new();
        for (config, summary, rivulet) in &runs {
            let mut v = serde_json::to_value(summary)?;
            v["label"] = variant_label(config).into();
            v["unreachable"] = config.unreachable.into();
            v["tls"] = config.tls.into();
            v["rivulet"] = phase_json(rivulet);
            list.push(v);
        }
        let mut out = list.first().cloned().unwrap_or_default();
        out["baseline"] = phase_json(&baseline);
        if list.len() > 1 {
            out["variants"] = list.into();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (config, summary, rivulet) in &runs {
        println!(
            "[{}] origin: baseline {:.1} Mbit/s, Rivulet {:.1} Mbit/s: {:.1}% of baseline ({:.1}% in the steady state; lower bound {:.1}%)",
            variant_label(config),
            summary.baseline_origin_mbps,
            summary.rivulet_origin_mbps,
            summary.origin_share_total * 100.0,
            summary.origin_share_steady * 100.0,
            summary.lower_bound_share * 100.0
        );
        let by = &rivulet.origin_bytes_by_reason;
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "[{}] origin bytes by reason: warming {:.0} MB, gap {:.0} MB, race {:.0} MB, retry {:.0} MB; caches warmed caches with {:.0} MB",
            variant_label(config),
            mb(rivulet.origin_to_caches_bytes),
            mb(by[0]),
            mb(by[1]),
            mb(by[2]),
            mb(rivulet.caches_to_caches_bytes)
        );
        println!(
            "[{}] start p50 {:.0} ms p95 {:.0} ms, stall ratio {:.4}%, {} movies, byte-exact {}, CPU {:.0} s in {:.0} s (this phase {:.0} s)",
            variant_label(config),
            summary.start_p50_ms,
            summary.start_p95_ms,
            summary.stall_ratio * 100.0,
            summary.movies_completed,
            summary.byte_exact,
            summary.cpu_secs,
            summary.wall_secs,
            rivulet.cpu_secs
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli: Cli = match rivulet_node_core::cli::parse("rivulet-bench") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rivulet-bench: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Swarm {
                caches,
                viewers,
                videos,
                length,
                rate,
                join_every,
                cache_size,
                cache_upload,
                popularity,
                churn,
                crash,
                minutes,
                scale,
                no_caches,
                tls,
                tls_compare,
                unreachable,
                seed,
                json,
                csv,
                plot,
            } => {
                let config = SwarmConfig {
                    caches,
                    viewers,
                    videos: videos.max(1),
                    movie_secs: length,
                    rate_bps: rate,
                    join_every_secs: join_every,
                    cache_bytes: cache_size,
                    cache_upload_bps: cache_upload,
                    popularity,
                    churn_per_min: churn,
                    crash,
                    minutes,
                    scale,
                    seed,
                    tls,
                    unreachable: 0.0,
                };
                let modes = if tls_compare {
                    vec![false, true]
                } else {
                    vec![tls]
                };
                let variants: Vec<SwarmConfig> = unreachable
                    .0
                    .iter()
                    .flat_map(|&share| {
                        modes.iter().map(move |&tls| (share, tls))
                    })
                    .map(|(share, tls)| SwarmConfig {
                        unreachable: share,
                        tls,
                        ..config.clone()
                    })
                    .collect();
                run_swarm(&config, &variants, no_caches, json, csv, plot).await
            }
            Command::Simulate {
                preset,
                caches,
                viewers,
                movies,
                zipf,
                reachable,
                session,
                polite,
                minutes,
                step,
                placement_every,
                join_every,
                seed,
                json,
                csv,
                plot,
            } => {
                let mut config = if preset == "swarm" {
                    SimConfig::like_swarm()
                } else {
                    SimConfig::default()
                };
                let set = |field: &mut f64, value: Option<f64>| {
                    if let Some(v) = value {
                        *field = v;
                    }
                };
                config.caches = caches.unwrap_or(config.caches);
                config.viewers = viewers.unwrap_or(config.viewers);
                config.movies = movies.unwrap_or(config.movies);
                set(&mut config.zipf, zipf);
                set(&mut config.reachable, reachable);
                set(&mut config.cache_session_mins, session);
                set(&mut config.minutes, minutes);
                set(&mut config.step_secs, step);
                set(&mut config.placement_every_secs, placement_every);
                set(&mut config.join_every_secs, join_every);
                config.seed = seed.unwrap_or(config.seed);
                config.crash &= !polite;
                simulate::set_heap_meter(live_bytes);
                let summary = tokio::task::spawn_blocking(move || simulate::run(config)).await?;
                if let Some(p) = &csv {
                    simulate::write_csv(p, &summary)?;
                }
                if let Some(p) = &plot {
                    simulate::write_png(p, &summary)?;
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&summary)?);
                } else {
                    println!(
                        "origin {:.1}% of demand ({:.1}% in the steady state); lower bound {:.1}% ({:.2}× it); start p50 {:.0} ms p95 {:.0} ms; placement round p50 {:.0} ms max {:.0} ms; tracker heap {:.0} MB; {:.0} s",
                        summary.origin_share_total * 100.0,
                        summary.origin_share_steady * 100.0,
                        summary.lower_bound_share * 100.0,
                        summary.achieved_over_bound,
                        summary.start_p50_ms,
                        summary.start_p95_ms,
                        summary.round_p50_ms,
                        summary.round_max_ms,
                        summary.tracker_heap_mb,
                        summary.wall_secs
                    );
                }
                anyhow::Ok(())
            }
            Command::StartSeek {
                viewers,
                seeks,
                seconds,
                caches,
                cache_upload,
                seed,
                json,
            } => {
                let summary =
                    start_seek(viewers, seeks, seconds, caches, cache_upload, seed).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&summary)?);
                } else {
                    for (name, d) in [
                        ("origin only", &summary.origin_only),
                        ("warm caches", &summary.with_caches),
                    ] {
                        println!(
                            "{name:12} start p50 {:6.0} ms p95 {:6.0} ms | seek p50 {:6.0} ms p95 {:6.0} ms | from caches {:5.1}% ({} starts, {} seeks)",
                            d.start_p50_ms,
                            d.start_p95_ms,
                            d.seek_p50_ms,
                            d.seek_p95_ms,
                            d.from_caches_share * 100.0,
                            d.samples_start,
                            d.samples_seek
                        );
                    }
                }
                anyhow::Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rivulet-bench: {}", rivulet_node_core::cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
