//! `rivulet-bench simulate`: a flow-level simulation of a Rivulet network far larger than
//! one machine can run with sockets. No sockets and no bytes: time advances in steps, nodes,
//! movies, churn and transfers are synthetic, but placement and peer choice are the
//! tracker's own ([`Network::round_at`], [`Network::peers`], [`Network::hold`],
//! [`Network::sources_for`], [`placement::silence_quiet_caches`]), called as `serve` calls
//! them. The lower bound is computed apart from placement. See `docs/simulation.md`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rivulet_tracker::placement::{self, MovieFacts, Network};
use rivulet_tracker_client::{Holding, NodeInfo, NodeKind};
use serde::Serialize;

use crate::swarm::{Popularity, Rng, percentile};

/// A header and a Merkle proof ride with every chunk (about this many bytes for n = 64).
const CHUNK_OVERHEAD: u64 = 256;
/// A cache fetch that made no progress from its named peer for this long goes to the origin.
const WARM_PATIENCE_SECS: f64 = 30.0;
/// Seconds between two rows of the time series.
const SAMPLE_SECS: f64 = 10.0;

/// The population and its behaviour, in real (unscaled) units.
#[derive(Clone, Debug, Serialize)]
pub struct SimConfig {
    pub caches: u32,
    pub viewers: u32,
    pub movies: u32,
    /// Zipf exponent of movie popularity; 0 for uniform.
    pub zipf: f64,
    /// Movie lengths, seconds, uniform between the two.
    pub movie_secs: (f64, f64),
    /// Playback rates, bits per second, uniform between the two.
    pub rate_bps: (u64, u64),
    pub k: u16,
    pub n: u16,
    pub segment_bytes: u64,
    /// A cache's upload (bits/s) and storage (bytes) are these times one of `multipliers`.
    pub cache_upload_bps: u64,
    pub cache_bytes: u64,
    pub multipliers: Vec<f64>,
    /// How fast a cache fetches what it is placed with, bits/s.
    pub cache_download_bps: u64,
    /// How fast a viewer downloads, bits/s (for the start-delay estimate).
    pub viewer_download_bps: u64,
    /// Share of caches others can connect to (the rest are never placed, as in `serve`).
    pub reachable: f64,
    /// Mean time a cache stays, minutes (0: caches never leave); each one that leaves is
    /// replaced by a new, empty one.
    pub cache_session_mins: f64,
    /// Caches that leave crash (no goodbye) instead of leaving politely.
    pub crash: bool,
    /// Mean time a viewer watches one movie before leaving it, seconds (0: to the end).
    pub mean_watch_secs: f64,
    /// Mean pause between two movies, seconds.
    pub mean_pause_secs: f64,
    /// Seeks per hour of watching.
    pub seeks_per_hour: f64,
    /// Viewer number v first presses play at v × this, seconds.
    pub join_every_secs: f64,
    pub minutes: f64,
    pub step_secs: f64,
    pub placement_every_secs: f64,
    pub heartbeat_secs: f64,
    pub node_timeout_secs: f64,
    /// Round trip between any two nodes, milliseconds (start-delay estimate).
    pub rtt_ms: f64,
    pub seed: u64,
}

impl Default for SimConfig {
    /// Home peers at internet scale: 10,000 caches and 10,000 viewers, 1,000 movies of 20 to
    /// 120 minutes at 2 to 6 Mbit/s with Zipf 0.8 popularity; the report's cache (1.5 GB,
    /// 10 Mbit/s) times 0.2, 0.5 or 1; 60% reachable; caches staying two hours on average.
    fn default() -> SimConfig {
        SimConfig {
            caches: 10_000,
            viewers: 10_000,
            movies: 1_000,
            zipf: 0.8,
            movie_secs: (1_200.0, 7_200.0),
            rate_bps: (2_000_000, 6_000_000),
            k: rivulet_node_core::format::DEFAULT_K,
            n: rivulet_node_core::format::DEFAULT_N,
            segment_bytes: u64::from(rivulet_node_core::format::DEFAULT_SEGMENT_SIZE),
            cache_upload_bps: 10_000_000,
            cache_bytes: 1_500_000_000,
            multipliers: vec![0.2, 0.5, 1.0],
            cache_download_bps: 50_000_000,
            viewer_download_bps: 50_000_000,
            reachable: 0.6,
            cache_session_mins: 120.0,
            crash: true,
            mean_watch_secs: 2_400.0,
            mean_pause_secs: 600.0,
            seeks_per_hour: 2.0,
            join_every_secs: 0.06,
            minutes: 60.0,
            step_secs: 1.0,
            placement_every_secs: 2.0,
            heartbeat_secs: 5.0,
            node_timeout_secs: 15.0,
            rtt_ms: 60.0,
            seed: 1,
        }
    }
}

impl SimConfig {
    /// The swarm benchmark's scenario (`rivulet-bench swarm` with its defaults), for the
    /// cross-check: 60 + 60, ten 600 s movies at 3.2 Mbit/s picked uniformly and watched
    /// back to back, viewers joining every 10 s, caches of 1.5 GB and 10 Mbit/s, 40 minutes.
    pub fn like_swarm() -> SimConfig {
        SimConfig {
            caches: 60,
            viewers: 60,
            movies: 10,
            zipf: 0.0,
            movie_secs: (600.0, 600.0),
            rate_bps: (3_200_000, 3_200_000),
            multipliers: vec![1.0],
            reachable: 1.0,
            cache_session_mins: 0.0,
            crash: false,
            mean_watch_secs: 0.0,
            mean_pause_secs: 0.0,
            seeks_per_hour: 0.0,
            join_every_secs: 10.0,
            minutes: 40.0,
            // The swarm runs placement every second at a time scale of nine.
            placement_every_secs: 9.0,
            heartbeat_secs: 5.0,
            // Loopback.
            rtt_ms: 0.0,
            ..SimConfig::default()
        }
    }

    /// Cumulative popularity of the movies in catalogue order (the swarm's Zipf, summed
    /// once so a pick costs a binary search, not a pass over the catalogue).
    fn popularity_cdf(&self) -> Vec<f64> {
        let popularity = if self.zipf > 0.0 {
            Popularity::Zipf(self.zipf)
        } else {
            Popularity::Uniform
        };
        let weight = |rank: u32| match popularity {
            Popularity::Uniform => 1.0,
            Popularity::Zipf(s) => 1.0 / f64::from(rank).powf(s),
        };
        let mut sum = 0.0;
        (1..=self.movies.max(1))
            .map(|r| {
                sum += weight(r);
                sum
            })
            .collect()
    }
}

/// A movie drawn from the cumulative popularity `cdf`.
fn pick_movie(rng: &mut Rng, cdf: &[f64]) -> usize {
    let total = cdf.last().copied().unwrap_or(1.0);
    let x = rng.unit() * total;
    cdf.partition_point(|&c| c <= x)
        .min(cdf.len().saturating_sub(1))
}

/// One row of the time series: rates over the last [`SAMPLE_SECS`], Mbit/s.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimSample {
    /// Minutes since the start.
    pub t_min: f64,
    pub demand: f64,
    pub origin_to_viewers: f64,
    pub origin_to_caches: f64,
    pub caches_to_viewers: f64,
    pub caches_to_caches: f64,
    /// What the origin had to send at least (the capacity part of the bound).
    pub bound_overflow: f64,
    pub live_caches: u32,
    pub watching: u32,
}

/// Checks that must hold in every step; each is the worst seen over the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Invariants {
    /// Most a cache sent in one step, as a share of its upload cap for that step (≤ 1).
    pub worst_cache_load: f64,
    /// Most a viewer received in one step beyond what it asked for, bytes (0).
    pub worst_viewer_excess: f64,
    /// Whether the lower bound stayed at or below what was achieved.
    pub bound_below_achieved: bool,
}

/// What a simulation found.
#[derive(Clone, Debug, Serialize)]
pub struct SimSummary {
    pub config: SimConfig,
    /// Bytes the viewers played (what a client–server origin would have sent).
    pub demand_bytes: u64,
    pub origin_to_viewers_bytes: u64,
    /// The origin's warming traffic: indices caches fetched from it.
    pub origin_to_caches_bytes: u64,
    pub caches_to_viewers_bytes: u64,
    pub caches_to_caches_bytes: u64,
    /// Part of `origin_to_caches_bytes` for indices the fetching cache had held before
    /// (placement took them away and gave them back).
    pub origin_refetch_bytes: u64,
    /// Bytes caches fetched (from anyone) of indices placement took away before they were
    /// complete.
    pub abandoned_bytes: u64,
    /// Origin bytes over demand, whole run and last third (steady state).
    pub origin_share_total: f64,
    pub origin_share_steady: f64,
    /// The lower bound over demand, whole run and last third.
    pub lower_bound_share: f64,
    pub lower_bound_share_steady: f64,
    /// Achieved over bound (1 is the best any placement could do).
    pub achieved_over_bound: f64,
    pub start_p50_ms: f64,
    pub start_p95_ms: f64,
    pub starts: usize,
    pub rounds: usize,
    pub round_p50_ms: f64,
    pub round_max_ms: f64,
    /// Mean wall time of one viewer's peer pick outside a round, microseconds.
    pub peers_call_us: f64,
    /// Heap the tracker's network state held at the end (placement, peer sets, the caches'
    /// infos), MB; 0 when the allocator does not count (see [`set_heap_meter`]).
    pub tracker_heap_mb: f64,
    pub caches_replaced: u32,
    pub wall_secs: f64,
    pub invariants: Invariants,
    #[serde(skip)]
    pub series: Vec<SimSample>,
}

static HEAP_METER: std::sync::OnceLock<fn() -> usize> = std::sync::OnceLock::new();

/// Gives the simulator a reading of the live heap bytes (the bench binary counts its
/// allocations), so it can report what the tracker's state takes.
pub fn set_heap_meter(meter: fn() -> usize) {
    let _ = HEAP_METER.set(meter);
}

fn heap_bytes() -> usize {
    HEAP_METER.get().map_or(0, |m| m())
}

struct Movie {
    id: String,
    /// Bytes per second.
    rate: f64,
    secs: f64,
    size: f64,
    index_bytes: u64,
    /// Seconds of playback per segment.
    segment_secs: f64,
    /// Which segments someone has played (each had to leave the origin at least once).
    seen: Vec<bool>,
    seen_segments: u64,
    /// Bought by how many viewers.
    purchases: u64,
}

/// An index being fetched: from a named peer cache (slot, serial) or the origin.
struct Fetch {
    movie: usize,
    index: u16,
    left: f64,
    source: Option<(usize, u64)>,
    idle_secs: f64,
    /// The cache held this index before and gave it up.
    again: bool,
}

struct Cache {
    serial: u64,
    id: String,
    account: String,
    /// Bytes per second.
    upload: f64,
    storage: u64,
    reachable: bool,
    /// Until it leaves or crashes.
    alive: bool,
    /// Time of its last heartbeat (the tracker's `last_seen`), seconds.
    last_seen: f64,
    /// Gone from the tracker's registry too (left, or timed out after a crash).
    expired: bool,
    /// Complete indices per movie.
    held: HashMap<usize, BTreeSet<u16>>,
    /// Every index it ever completed.
    ever: HashSet<(usize, u16)>,
    /// What its last heartbeat said it holds.
    reported: Vec<Holding>,
    fetching: Vec<Fetch>,
    next_heartbeat: f64,
    /// Sent this step, bytes.
    sent: f64,
}

struct Peer {
    slot: usize,
    serial: u64,
    rate: f64,
    indices: Vec<u16>,
}

enum Watch {
    Paused {
        until: f64,
    },
    Watching {
        movie: usize,
        /// Seconds of watching left before it leaves this movie.
        left_secs: f64,
        /// Where in the movie it plays, seconds.
        pos_secs: f64,
    },
}

struct Viewer {
    id: String,
    rng: Rng,
    watch: Watch,
    /// The movie the tracker last heard it watch.
    reported: Option<usize>,
    peers: Vec<Peer>,
    next_heartbeat: f64,
    bought: HashSet<usize>,
}

/// The whole simulated network.
struct World {
    config: SimConfig,
    rng: Rng,
    network: Network,
    epoch: Instant,
    movies: Vec<Movie>,
    movie_of: HashMap<String, usize>,
    caches: Vec<Cache>,
    slot_of: HashMap<String, usize>,
    viewers: Vec<Viewer>,
    next_serial: u64,
    starts_ms: Vec<f64>,
    round_ms: Vec<f64>,
    peers_calls: (u64, Duration),
    invariants: Invariants,
    /// Bytes of indices given up before they were complete.
    abandoned_bytes: f64,
}

/// Unix-like seconds for the tracker's `last_seen` (far from 0, so subtraction is safe).
const CLOCK_BASE: u64 = 1_000_000;

impl World {
    fn new(config: SimConfig) -> World {
        let mut rng = Rng::new(config.seed);
        let uniform = |rng: &mut Rng, (lo, hi): (f64, f64)| lo + (hi - lo) * rng.unit();
        let k = u64::from(config.k.max(1));
        let movies = (0..config.movies)
            .map(|m| {
                let secs = uniform(&mut rng, config.movie_secs);
                let bps = uniform(
                    &mut rng,
                    (config.rate_bps.0 as f64, config.rate_bps.1 as f64),
                );
                let rate = bps / 8.0;
                let size = rate * secs;
                let segments = (size / config.segment_bytes as f64).ceil() as u64;
                Movie {
                    id: format!("m{m}"),
                    rate,
                    secs,
                    size,
                    index_bytes: segments * (config.segment_bytes.div_ceil(k) + CHUNK_OVERHEAD),
                    segment_secs: config.segment_bytes as f64 / rate.max(1.0),
                    seen: vec![false; segments as usize],
                    seen_segments: 0,
                    purchases: 0,
                }
            })
            .collect::<Vec<_>>();
        let movie_of = movies
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let viewers = (0..config.viewers)
            .map(|v| Viewer {
                id: format!("viewer{v}"),
                rng: Rng::new(config.seed.wrapping_mul(1000).wrapping_add(u64::from(v))),
                watch: Watch::Paused {
                    until: f64::from(v) * config.join_every_secs,
                },
                reported: None,
                peers: Vec::new(),
                next_heartbeat: f64::from(v) * config.join_every_secs,
                bought: HashSet::new(),
            })
            .collect();
        let mut world = World {
            rng,
            network: Network::default(),
            epoch: Instant::now(),
            movies,
            movie_of,
            caches: Vec::new(),
            slot_of: HashMap::new(),
            viewers,
            next_serial: 0,
            starts_ms: Vec::new(),
            round_ms: Vec::new(),
            peers_calls: (0, Duration::ZERO),
            abandoned_bytes: 0.0,
            invariants: Invariants {
                bound_below_achieved: true,
                ..Invariants::default()
            },
            config,
        };
        for _ in 0..world.config.caches {
            world.add_cache(0.0);
        }
        world
    }

    fn add_cache(&mut self, now: f64) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let c = &self.config;
        let pick = |rng: &mut Rng| c.multipliers[(rng.next_u64() as usize) % c.multipliers.len()];
        let upload = c.cache_upload_bps as f64 * pick(&mut self.rng) / 8.0;
        let storage = (c.cache_bytes as f64 * pick(&mut self.rng)) as u64;
        // Reachable ones spread evenly, as in the swarm benchmark.
        let f = (1.0 - c.reachable).clamp(0.0, 1.0);
        let unreachable = ((serial + 1) as f64 * f).floor() > (serial as f64 * f).floor();
        let id = format!("cache{serial}");
        self.slot_of.insert(id.clone(), self.caches.len());
        self.caches.push(Cache {
            serial,
            account: format!("owner{serial}"),
            id,
            upload,
            storage,
            reachable: !unreachable,
            alive: true,
            last_seen: now,
            expired: false,
            held: HashMap::new(),
            ever: HashSet::new(),
            reported: Vec::new(),
            fetching: Vec::new(),
            // Spread over one interval, as real heartbeats are.
            next_heartbeat: now + self.rng.unit() * self.config.heartbeat_secs,
            sent: 0.0,
        });
    }

    fn instant(&self, now: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(now)
    }

    /// The registry as `serve`'s placement loop reads it: every cache that has not expired
    /// and that the probe found reachable, and every viewer with what it watches.
    fn live_nodes(&self) -> Vec<NodeInfo> {
        let node = |id: &str, account: &str, kind, upload_bps, storage_bytes, watching| NodeInfo {
            node_id: id.to_owned(),
            account: account.to_owned(),
            kind,
            bind: String::new(),
            advertise: String::new(),
            addrs: Vec::new(),
            fingerprint: None,
            upload_bps,
            storage_bytes,
            watching,
            holdings: Vec::new(),
            last_seen: 0,
            reach: None,
        };
        let mut live = Vec::with_capacity(self.caches.len() + self.viewers.len());
        for c in self.caches.iter().filter(|c| !c.expired && c.reachable) {
            let mut info = node(
                &c.id,
                &c.account,
                NodeKind::Cache,
                (c.upload * 8.0) as u64,
                c.storage,
                None,
            );
            info.holdings = c.reported.clone();
            info.last_seen = CLOCK_BASE + c.last_seen as u64;
            live.push(info);
        }
        for v in &self.viewers {
            if let Some(m) = v.reported {
                let watching = Some(self.movies[m].id.clone());
                live.push(node(&v.id, &v.id, NodeKind::Viewer, 0, 0, watching));
            }
        }
        live
    }

    fn round(&mut self, now: f64) {
        let mut live = self.live_nodes();
        let quiet_after = 2.0 * (self.config.node_timeout_secs / 3.0).floor().max(1.0) + 1.0;
        let quiet_before = CLOCK_BASE + (now - quiet_after).max(0.0) as u64;
        placement::silence_quiet_caches(&mut live, quiet_before);
        let facts: Vec<MovieFacts> = self
            .movies
            .iter()
            .map(|m| MovieFacts {
                id: m.id.clone(),
                rate: m.rate,
                index_bytes: m.index_bytes,
                k: self.config.k,
                n: self.config.n,
                purchases: m.purchases,
            })
            .collect();
        let at = self.instant(now);
        let started = Instant::now();
        self.network.round_at(&live, &facts, &HashSet::new(), at);
        self.round_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    /// Asks the tracker for viewer `v`'s peers, as a heartbeat or a join does.
    fn refresh_peers(&mut self, v: usize) {
        let Watch::Watching { movie, .. } = self.viewers[v].watch else {
            self.viewers[v].peers.clear();
            return;
        };
        let started = Instant::now();
        let picks = self
            .network
            .peers(&self.viewers[v].id, &self.movies[movie].id);
        self.peers_calls.0 += 1;
        self.peers_calls.1 += started.elapsed();
        let peers = picks
            .into_iter()
            .filter_map(|(info, indices, rate)| {
                let slot = *self.slot_of.get(&info.node_id)?;
                Some(Peer {
                    slot,
                    serial: self.caches[slot].serial,
                    rate,
                    indices,
                })
            })
            .collect();
        self.viewers[v].peers = peers;
    }

    /// A cache's heartbeat: it reports what it holds, drops what it is no longer placed
    /// with, and starts fetching what it lacks (from the peers the tracker names, else the
    /// origin).
    fn cache_heartbeat(&mut self, slot: usize, now: f64) {
        let cache = &mut self.caches[slot];
        cache.last_seen = now;
        cache.next_heartbeat = now + self.config.heartbeat_secs;
        let Some(placed) = self.network.hold(&cache.id) else {
            cache.reported = holdings(&cache.held, &self.movies);
            return;
        };
        let placed: HashMap<usize, BTreeSet<u16>> = placed
            .into_iter()
            .filter_map(|h| {
                let m = *self.movie_of.get(&h.video)?;
                Some((m, h.indices.into_iter().collect()))
            })
            .collect();
        cache.held.retain(|m, indices| {
            if let Some(keep) = placed.get(m) {
                indices.retain(|i| keep.contains(i));
            }
            placed.contains_key(m) && !indices.is_empty()
        });
        let movies = &self.movies;
        let abandoned = &mut self.abandoned_bytes;
        cache.fetching.retain(|f| {
            let keep = placed.get(&f.movie).is_some_and(|s| s.contains(&f.index));
            if !keep {
                *abandoned += movies[f.movie].index_bytes as f64 - f.left;
            }
            keep
        });
        cache.reported = holdings(&cache.held, &self.movies);
        let busy: HashSet<(usize, u16)> =
            cache.fetching.iter().map(|f| (f.movie, f.index)).collect();
        let mut wanted: Vec<(usize, u16)> = placed
            .iter()
            .flat_map(|(&m, indices)| indices.iter().map(move |&i| (m, i)))
            .filter(|(m, i)| !cache.held.get(m).is_some_and(|h| h.contains(i)))
            .filter(|key| !busy.contains(key))
            .collect();
        if wanted.is_empty() {
            return;
        }
        wanted.sort_unstable();
        let id = cache.id.clone();
        let mut sources: HashMap<(usize, u16), (usize, u64)> = HashMap::new();
        for (video, info, indices) in self.network.sources_for(&id) {
            let (Some(&m), Some(&s)) = (self.movie_of.get(&video), self.slot_of.get(&info.node_id))
            else {
                continue;
            };
            for i in indices {
                sources.entry((m, i)).or_insert((s, self.caches[s].serial));
            }
        }
        let cache = &mut self.caches[slot];
        for (m, i) in wanted {
            cache.fetching.push(Fetch {
                movie: m,
                index: i,
                left: self.movies[m].index_bytes as f64,
                source: sources.get(&(m, i)).copied(),
                idle_secs: 0.0,
                again: cache.ever.contains(&(m, i)),
            });
        }
    }

    fn serves(&self, slot: usize, serial: u64, movie: usize, index: u16) -> bool {
        let c = &self.caches[slot];
        c.serial == serial
            && c.alive
            && c.reachable
            && c.held.get(&movie).is_some_and(|h| h.contains(&index))
    }
}

fn holdings(held: &HashMap<usize, BTreeSet<u16>>, movies: &[Movie]) -> Vec<Holding> {
    let mut out: Vec<Holding> = held
        .iter()
        .filter(|(_, i)| !i.is_empty())
        .map(|(&m, i)| Holding {
            video: movies[m].id.clone(),
            indices: i.iter().copied().collect(),
        })
        .collect();
    out.sort_by(|a, b| a.video.cmp(&b.video));
    out
}

/// Exponentially distributed with `mean` (0 stays 0: no limit).
fn exponential(rng: &mut Rng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    -mean * (1.0 - rng.unit()).max(1e-12).ln()
}

/// Byte counters of one step or of the run.
#[derive(Clone, Copy, Default)]
struct Flows {
    demand: f64,
    origin_to_viewers: f64,
    origin_to_caches: f64,
    caches_to_viewers: f64,
    caches_to_caches: f64,
    /// Origin bytes for indices the fetching cache had held before.
    origin_refetch: f64,
    overflow: f64,
}

impl Flows {
    fn add(&mut self, o: &Flows) {
        self.demand += o.demand;
        self.origin_to_viewers += o.origin_to_viewers;
        self.origin_to_caches += o.origin_to_caches;
        self.caches_to_viewers += o.caches_to_viewers;
        self.caches_to_caches += o.caches_to_caches;
        self.origin_refetch += o.origin_refetch;
        self.overflow += o.overflow;
    }

    fn origin(&self) -> f64 {
        self.origin_to_viewers + self.origin_to_caches
    }
}

/// Runs the simulation `config` describes.
pub fn run(config: SimConfig) -> SimSummary {
    let wall = Instant::now();
    let mut w = World::new(config);
    let c = w.config.clone();
    let dt = c.step_secs.max(0.01);
    let steps = (c.minutes * 60.0 / dt).ceil() as u64;
    let steady_from = c.minutes * 60.0 * 2.0 / 3.0;
    let replace_every = if c.cache_session_mins > 0.0 {
        c.cache_session_mins * 60.0 / f64::from(c.caches.max(1))
    } else {
        f64::INFINITY
    };
    let mut next_replace = replace_every;
    let mut next_round = 0.0;
    let (mut total, mut steady, mut window) =
        (Flows::default(), Flows::default(), Flows::default());
    let mut next_sample = SAMPLE_SECS;
    let mut series = Vec::new();
    let mut replaced = 0u32;
    let seg_bytes = c.segment_bytes as f64;
    let cdf = c.popularity_cdf();
    for step in 0..steps {
        let now = step as f64 * dt;
        // Churn: a random live cache leaves (or crashes) and a new, empty one joins.
        while now >= next_replace {
            next_replace += replace_every;
            let alive: Vec<usize> = (0..w.caches.len()).filter(|&s| w.caches[s].alive).collect();
            if alive.is_empty() {
                break;
            }
            let victim = alive[(w.rng.next_u64() as usize) % alive.len()];
            let cache = &mut w.caches[victim];
            cache.alive = false;
            // A polite cache says goodbye: the tracker forgets it at once.
            cache.expired = !c.crash;
            w.add_cache(now);
            replaced += 1;
        }
        // A crashed cache expires when its heartbeats have been missing for the timeout.
        for cache in w.caches.iter_mut().filter(|c| !c.alive && !c.expired) {
            if now - cache.last_seen > c.node_timeout_secs {
                cache.expired = true;
            }
        }
        if now >= next_round {
            next_round += c.placement_every_secs;
            w.round(now);
        }
        // Heartbeats: caches report and learn their placement; viewers learn their peers.
        for slot in 0..w.caches.len() {
            if w.caches[slot].alive && now >= w.caches[slot].next_heartbeat {
                w.cache_heartbeat(slot, now);
            }
        }
        // Viewers start, stop, seek.
        for v in 0..w.viewers.len() {
            let viewer = &mut w.viewers[v];
            let mut started = false;
            match viewer.watch {
                Watch::Paused { until } if now >= until => {
                    let movie = pick_movie(&mut viewer.rng, &cdf);
                    let length = w.movies[movie].secs;
                    let watch = exponential(&mut viewer.rng, c.mean_watch_secs);
                    let left_secs = if watch > 0.0 {
                        watch.min(length)
                    } else {
                        length
                    };
                    viewer.watch = Watch::Watching {
                        movie,
                        left_secs,
                        pos_secs: 0.0,
                    };
                    if viewer.bought.insert(movie) {
                        w.movies[movie].purchases += 1;
                    }
                    started = true;
                }
                Watch::Watching { left_secs, .. } if left_secs <= 0.0 => {
                    let pause = exponential(&mut viewer.rng, c.mean_pause_secs);
                    viewer.watch = Watch::Paused { until: now + pause };
                    if pause > 0.0 {
                        viewer.reported = None;
                        viewer.peers.clear();
                    } else {
                        continue;
                    }
                }
                _ => {}
            }
            let seek = matches!(viewer.watch, Watch::Watching { .. })
                && c.seeks_per_hour > 0.0
                && viewer.rng.unit() < c.seeks_per_hour * dt / 3600.0;
            if started {
                let Watch::Watching { movie, .. } = w.viewers[v].watch else {
                    continue;
                };
                // Joining tells the tracker and returns the peers at once.
                w.viewers[v].reported = Some(movie);
                w.viewers[v].next_heartbeat = now + c.heartbeat_secs;
                w.refresh_peers(v);
                let estimate = start_estimate(&w, v, seg_bytes);
                w.starts_ms.push(estimate);
            } else if seek {
                let Watch::Watching {
                    movie,
                    left_secs,
                    pos_secs,
                } = w.viewers[v].watch
                else {
                    continue;
                };
                // A seek lands up to a quarter of the movie ahead or behind; it still
                // leaves the movie at its end.
                let length = w.movies[movie].secs;
                let jump = (w.viewers[v].rng.unit() - 0.5) * length * 0.5;
                let pos = (pos_secs + jump).clamp(0.0, length);
                w.viewers[v].watch = Watch::Watching {
                    movie,
                    left_secs: left_secs.min(length - pos),
                    pos_secs: pos,
                };
                let estimate = start_estimate(&w, v, seg_bytes);
                w.starts_ms.push(estimate);
            } else if now >= w.viewers[v].next_heartbeat {
                w.viewers[v].next_heartbeat = now + c.heartbeat_secs;
                w.refresh_peers(v);
            }
        }
        let flows = transfer(&mut w, now, dt);
        total.add(&flows);
        window.add(&flows);
        if now >= steady_from {
            steady.add(&flows);
        }
        if now + dt >= next_sample {
            let mbps = |bytes: f64| bytes * 8.0 / SAMPLE_SECS / 1e6;
            series.push(SimSample {
                t_min: (now + dt) / 60.0,
                demand: mbps(window.demand),
                origin_to_viewers: mbps(window.origin_to_viewers),
                origin_to_caches: mbps(window.origin_to_caches),
                caches_to_viewers: mbps(window.caches_to_viewers),
                caches_to_caches: mbps(window.caches_to_caches),
                bound_overflow: mbps(window.overflow),
                live_caches: w.caches.iter().filter(|c| c.alive).count() as u32,
                watching: w
                    .viewers
                    .iter()
                    .filter(|v| matches!(v.watch, Watch::Watching { .. }))
                    .count() as u32,
            });
            window = Flows::default();
            next_sample += SAMPLE_SECS;
        }
    }
    // The bound, apart from placement: the origin sends at least what all the caches'
    // uploads could not carry, and at least once each movie's content (k indices' worth)
    // before caches can serve it, unless it is cheaper to send its viewers everything.
    let content: f64 = w
        .movies
        .iter()
        .map(|m| (m.seen_segments as f64 * seg_bytes).min(m.size))
        .sum();
    let bound = total.overflow.max(content);
    let bound_steady = steady.overflow;
    let achieved = total.origin();
    if bound > achieved + 1.0 {
        w.invariants.bound_below_achieved = false;
    }
    let heap_before = heap_bytes();
    let network = std::mem::take(&mut w.network);
    drop(network);
    let tracker_heap = heap_before.saturating_sub(heap_bytes());
    let share = |bytes: f64, of: f64| bytes / of.max(1.0);
    SimSummary {
        demand_bytes: total.demand as u64,
        origin_to_viewers_bytes: total.origin_to_viewers as u64,
        origin_to_caches_bytes: total.origin_to_caches as u64,
        caches_to_viewers_bytes: total.caches_to_viewers as u64,
        caches_to_caches_bytes: total.caches_to_caches as u64,
        origin_refetch_bytes: total.origin_refetch as u64,
        abandoned_bytes: w.abandoned_bytes as u64,
        origin_share_total: share(achieved, total.demand),
        origin_share_steady: share(steady.origin(), steady.demand),
        lower_bound_share: share(bound, total.demand),
        lower_bound_share_steady: share(bound_steady, steady.demand),
        achieved_over_bound: achieved / bound.max(1.0),
        start_p50_ms: percentile(&w.starts_ms, 0.5),
        start_p95_ms: percentile(&w.starts_ms, 0.95),
        starts: w.starts_ms.len(),
        rounds: w.round_ms.len(),
        round_p50_ms: percentile(&w.round_ms, 0.5),
        round_max_ms: w.round_ms.iter().copied().fold(0.0, f64::max),
        peers_call_us: w.peers_calls.1.as_secs_f64() * 1e6 / w.peers_calls.0.max(1) as f64,
        tracker_heap_mb: tracker_heap as f64 / 1e6,
        caches_replaced: replaced,
        wall_secs: wall.elapsed().as_secs_f64(),
        invariants: w.invariants.clone(),
        config: c,
        series,
    }
}

/// How long viewer `v` waits for the first segment of its movie: a join and a connection
/// (three round trips), then the segment from its peers at their whole upload (the
/// request is urgent), the part they do not hold from the origin, both within the
/// viewer's download.
fn start_estimate(w: &World, v: usize, seg_bytes: f64) -> f64 {
    let k = usize::from(w.config.k.max(1));
    let mut held = BTreeSet::new();
    let mut peer_rate = 0.0;
    for p in &w.viewers[v].peers {
        let cache = &w.caches[p.slot];
        if cache.serial != p.serial || !cache.alive {
            continue;
        }
        held.extend(p.indices.iter().copied());
        // A waiting player's requests go first under a cache's upload cap.
        peer_rate += cache.upload;
    }
    let from_peers = seg_bytes * held.len().min(k) as f64 / k as f64;
    let download = w.config.viewer_download_bps as f64 / 8.0;
    let peers_secs = if from_peers > 0.0 {
        from_peers / peer_rate.min(download).max(1.0)
    } else {
        0.0
    };
    let secs = peers_secs.max(seg_bytes / download);
    3.0 * w.config.rtt_ms + secs * 1000.0
}

/// One step of transfers: viewers ask their peers for their share of the movie (each
/// within the rate the tracker gave, the indices it holds and, all together, its upload
/// cap), the origin fills the rest; caches fetch what they lack from the peers named to
/// them with what upload is left, else from the origin.
fn transfer(w: &mut World, now: f64, dt: f64) -> Flows {
    let k = f64::from(w.config.k.max(1));
    let mut flows = Flows::default();
    for cache in &mut w.caches {
        cache.sent = 0.0;
    }
    // What each viewer asks of each peer this step.
    let mut asks: Vec<(usize, usize, f64)> = Vec::new();
    let mut per_cache: HashMap<usize, f64> = HashMap::new();
    let mut needs = vec![0.0; w.viewers.len()];
    for (v, viewer) in w.viewers.iter().enumerate() {
        let Watch::Watching { movie, .. } = viewer.watch else {
            continue;
        };
        let need = w.movies[movie].rate * dt;
        needs[v] = need;
        let mut union = BTreeSet::new();
        let first = asks.len();
        for p in &viewer.peers {
            let live: Vec<u16> = p
                .indices
                .iter()
                .copied()
                .filter(|&i| w.serves(p.slot, p.serial, movie, i))
                .collect();
            if live.is_empty() {
                continue;
            }
            union.extend(live.iter().copied());
            let share = need * (live.len() as f64 / k).min(1.0);
            asks.push((v, p.slot, (p.rate * dt).min(share)));
        }
        // Between them the peers give at most the part of each segment their distinct
        // indices cover.
        let cap = need * (union.len() as f64 / k).min(1.0);
        let asked: f64 = asks[first..].iter().map(|a| a.2).sum();
        if asked > cap {
            for a in &mut asks[first..] {
                a.2 *= cap / asked;
            }
        }
        for a in &asks[first..] {
            *per_cache.entry(a.1).or_default() += a.2;
        }
    }
    // Each cache serves its asks within its upload, in proportion.
    let mut got = vec![0.0; w.viewers.len()];
    for (v, slot, ask) in asks {
        let cache = &mut w.caches[slot];
        let asked = per_cache[&slot];
        let cap = cache.upload * dt;
        let given = if asked > cap { ask * cap / asked } else { ask };
        cache.sent += given;
        got[v] += given;
    }
    for (v, viewer) in w.viewers.iter().enumerate() {
        if !matches!(viewer.watch, Watch::Watching { .. }) {
            continue;
        }
        let from_origin = (needs[v] - got[v]).max(0.0);
        w.invariants.worst_viewer_excess = w
            .invariants
            .worst_viewer_excess
            .max(got[v] + from_origin - needs[v]);
        flows.demand += needs[v];
        flows.caches_to_viewers += got[v];
        flows.origin_to_viewers += from_origin;
    }
    for viewer in &mut w.viewers {
        if let Watch::Watching {
            movie,
            left_secs,
            pos_secs,
        } = &mut viewer.watch
        {
            let m = &mut w.movies[*movie];
            let last = m.seen.len().saturating_sub(1);
            let from = ((*pos_secs / m.segment_secs) as usize).min(last);
            let to = (((*pos_secs + dt) / m.segment_secs) as usize).min(last);
            for seg in from..=to {
                if let Some(seen) = m.seen.get_mut(seg).filter(|s| !**s) {
                    *seen = true;
                    m.seen_segments += 1;
                }
            }
            *left_secs -= dt;
            *pos_secs += dt;
        }
    }
    // Warming: what caches lack, from named peers with upload left, else the origin.
    let download = w.config.cache_download_bps as f64 / 8.0 * dt;
    for slot in 0..w.caches.len() {
        if !w.caches[slot].alive || w.caches[slot].fetching.is_empty() {
            continue;
        }
        let mut budget = download;
        let mut fetching = std::mem::take(&mut w.caches[slot].fetching);
        for f in &mut fetching {
            if budget <= 0.0 {
                break;
            }
            let peer = f
                .source
                .filter(|&(s, serial)| w.serves(s, serial, f.movie, f.index))
                .filter(|_| f.idle_secs < WARM_PATIENCE_SECS);
            let taken = match peer {
                Some((s, _)) => {
                    let src = &mut w.caches[s];
                    let spare = (src.upload * dt - src.sent).max(0.0);
                    let x = budget.min(f.left).min(spare);
                    src.sent += x;
                    flows.caches_to_caches += x;
                    if x <= 0.0 {
                        f.idle_secs += dt;
                    }
                    x
                }
                None => {
                    let x = budget.min(f.left);
                    flows.origin_to_caches += x;
                    if f.again {
                        flows.origin_refetch += x;
                    }
                    x
                }
            };
            f.left -= taken;
            budget -= taken;
        }
        let cache = &mut w.caches[slot];
        for f in fetching.iter().filter(|f| f.left <= 0.5) {
            cache.held.entry(f.movie).or_default().insert(f.index);
            cache.ever.insert((f.movie, f.index));
        }
        fetching.retain(|f| f.left > 0.5);
        cache.fetching = fetching;
    }
    // Credited upload (the ledger's receipts, honest here) feeds the tracker's meter.
    let at = w.instant(now);
    let mut capacity = 0.0;
    for cache in &w.caches {
        if cache.alive && cache.reachable {
            capacity += cache.upload * dt;
        }
        w.invariants.worst_cache_load = w
            .invariants
            .worst_cache_load
            .max(cache.sent / (cache.upload * dt).max(1e-9));
        if cache.sent > 0.0 {
            w.network.record_upload(&cache.id, cache.sent as u64, at);
        }
    }
    flows.overflow = (flows.demand - capacity).max(0.0);
    flows
}

/// The time series as CSV.
pub fn write_csv(path: &Path, summary: &SimSummary) -> std::io::Result<()> {
    let mut out = String::from(
        "t_min,demand_mbps,origin_to_viewers_mbps,origin_to_caches_mbps,caches_to_viewers_mbps,\
         caches_to_caches_mbps,bound_overflow_mbps,live_caches,watching\n",
    );
    for s in &summary.series {
        out.push_str(&format!(
            "{:.2},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}\n",
            s.t_min,
            s.demand,
            s.origin_to_viewers,
            s.origin_to_caches,
            s.caches_to_viewers,
            s.caches_to_caches,
            s.bound_overflow,
            s.live_caches,
            s.watching
        ));
    }
    std::fs::write(path, out)
}

/// The flows over time as a PNG.
pub fn write_png(path: &Path, summary: &SimSummary) -> anyhow::Result<()> {
    use plotters::style::RGBColor;
    let line = |f: fn(&SimSample) -> f64| -> Vec<(f64, f64)> {
        summary.series.iter().map(|s| (s.t_min, f(s))).collect()
    };
    let lines: Vec<crate::plot::Line> = vec![
        ("demand", RGBColor(0, 0, 0), line(|s| s.demand)),
        (
            "caches → viewers",
            RGBColor(30, 120, 200),
            line(|s| s.caches_to_viewers),
        ),
        (
            "origin → viewers",
            RGBColor(220, 60, 40),
            line(|s| s.origin_to_viewers),
        ),
        (
            "origin → caches",
            RGBColor(240, 160, 20),
            line(|s| s.origin_to_caches),
        ),
        (
            "caches → caches",
            RGBColor(60, 160, 80),
            line(|s| s.caches_to_caches),
        ),
    ];
    let caption = format!(
        "Rivulet simulated: {} caches + {} viewers, {} movies",
        summary.config.caches, summary.config.viewers, summary.config.movies
    );
    crate::plot::draw(path, &caption, lines)
}
