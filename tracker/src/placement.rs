//! Placement and topology: from live demand, decide which chunk indices of which movies each
//! cache holds, and which caches each viewer fetches from at what rate. Pure functions over
//! a snapshot of the network, run every few seconds by [`Network`]; the reasoning and the
//! parameters are in `docs/placement.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::RwLock;
use std::time::Instant;

use rivulet_tracker_client::{Holding, NodeInfo, NodeKind};

use crate::measured::Measured;

/// Extra supply planned above measured demand, so a viewer that joins between two rounds
/// and the jitter of real transfers do not fall straight to the origin.
pub const HEADROOM: f64 = 0.25;
/// Most caches in one viewer's peer set (CalVoD used five; more peers means more
/// connections per viewer for little gain once k indices are covered).
pub const MAX_PEERS: usize = 6;
/// Weight of a movie's past purchases in its demand (in viewers, for the most bought movie)
/// so that caches hold the popular movies before anyone presses play.
pub const PRIOR_VIEWERS: f64 = 0.5;
/// Share of the previous demand kept each round (smoothing over about ten rounds), so a
/// movie between two viewers keeps its chunks.
pub const DEMAND_MEMORY: f64 = 0.9;
/// A new index evicts what a full cache holds of other wanted movies only on a cache that
/// already holds some of its movie, and only for a movie wanted this many times more than
/// the least wanted of them; a cache with none of it evicts nothing for it. Without these
/// limits, when storage is short, movies whose demands cross back and forth evict each
/// other round after round and the origin sends them again and again (the simulator found
/// it; `docs/simulation.md`).
pub const EVICT_MARGIN: f64 = 4.0;
/// A movie takes indices no cache holds (each one sent by the origin) only when its viewers
/// now (smoothed) would play its whole length within this many seconds, or it is among the
/// most bought (below): a two-hour movie fetched for one viewer, who watches part of it,
/// costs the origin more than sending that viewer what it plays.
pub const FRESH_HORIZON_SECS: f64 = 1_200.0;
/// ... or it was bought at least this share as often as the most bought movie.
pub const FRESH_PURCHASES: f64 = 0.1;

/// A cache as placement sees it.
#[derive(Clone, Debug)]
pub struct CacheSnapshot {
    pub id: String,
    /// The account that runs it: one account never holds k distinct indices of a movie
    /// (which would be the movie itself), whatever it claims or is given.
    pub account: String,
    /// Upload cap, bytes per second.
    pub upload: f64,
    pub storage: u64,
    /// Indices it reported complete, or was told to hold last round, per movie: keeping
    /// them avoids fetching them again from the origin.
    pub has: HashMap<String, BTreeSet<u16>>,
}

/// A movie as placement sees it.
#[derive(Clone, Debug)]
pub struct MovieSnapshot {
    pub id: String,
    /// Playback rate, bytes per second.
    pub rate: f64,
    /// Bytes one chunk index takes across all segments.
    pub index_bytes: u64,
    pub k: u16,
    pub n: u16,
    /// Expected concurrent viewers (smoothed live count plus the purchase prior).
    pub demand: f64,
    /// Whether it may take indices that no cache holds ([`FRESH_HORIZON_SECS`]); otherwise only
    /// indices caches have, and replicas of them warmed from those caches.
    pub fresh: bool,
}

/// Chunk indices per movie, per cache.
pub type Placement = BTreeMap<String, BTreeMap<String, BTreeSet<u16>>>;

/// Indices of one movie a cache takes at least, once it takes any: k spread over a peer set
/// of [`MAX_PEERS`] less two (room for a dead and a slow peer), so a viewer's few peers can
/// cover k between them. One index per cache over many caches would leave a viewer with
/// six indices from its six peers and the origin to send the rest.
pub fn block(k: u16) -> usize {
    usize::from(k).div_ceil(MAX_PEERS - 2).max(1)
}

/// Decides what every cache holds. Movies are served in order of demand; for each, index
/// slots (one chunk index at one cache) are added until the planned cache upload covers its
/// demand plus headroom and at least k distinct indices are held. A slot goes, in order of
/// preference, to an index a cache already has (no origin traffic), to a cache with room
/// that evicts nothing it holds of a wanted movie, to a cache that has started a [`block`]
/// of this movie and not finished it, then to the cache with the most upload left; a new index is the one held by the fewest caches (distinct indices first,
/// so caches complement each other). Then, while storage lasts, caches keep whatever else
/// they have of movies still in demand, so a movie whose viewers come and go is not fetched
/// again and again. Other storage stays empty. No account's caches together hold k distinct
/// indices of one movie (k − 1 at most): enough to serve, never enough to decode.
///
/// For one movie only the caches that have some of it, or share an account with one given
/// some, are looked at one by one; every other cache ranks by its room and upload alone, and
/// [`Pool`] keeps those ordered, so a slot costs the movie's holders and a few lookups, not
/// a pass over every cache (see `docs/simulation.md` for how the round grows with N).
pub fn place(caches: &[CacheSnapshot], movies: &[MovieSnapshot]) -> Placement {
    let mut order: Vec<&MovieSnapshot> = movies.iter().filter(|m| m.demand > 0.0).collect();
    order.sort_by(|a, b| b.demand.total_cmp(&a.demand).then(a.id.cmp(&b.id)));
    let wanted: HashMap<&str, &MovieSnapshot> = order.iter().map(|m| (m.id.as_str(), *m)).collect();
    let mut pool = Pool::new(caches, &wanted);
    // Distinct indices per (account, movie) placed so far.
    let mut by_account: HashMap<(&str, &str), BTreeSet<u16>> = HashMap::new();
    let mut plan: Vec<BTreeMap<&str, BTreeSet<u16>>> = vec![BTreeMap::new(); caches.len()];
    // Caches with something of each wanted movie, and each account's caches: for one movie
    // only these can rank apart from the rest, which all rank by their upload and room.
    let mut having: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut of_account: HashMap<&str, Vec<usize>> = HashMap::new();
    for (c, cache) in caches.iter().enumerate() {
        for video in cache.has.keys().filter(|v| wanted.contains_key(v.as_str())) {
            having.entry(video.as_str()).or_default().push(c);
        }
        of_account
            .entry(cache.account.as_str())
            .or_default()
            .push(c);
    }
    // `special_for[c] == ordinal`: cache c is looked at alone for the movie at `ordinal`.
    let mut special_for = vec![usize::MAX; caches.len()];
    for (ordinal, movie) in order.iter().enumerate() {
        let k = f64::from(movie.k.max(1));
        let target = movie.demand * movie.rate * (1.0 + HEADROOM);
        let per_index = movie.demand * movie.rate / k;
        let mut holders = vec![0u32; usize::from(movie.n)];
        let (mut covered, mut distinct) = (0.0, 0u16);
        let mut accounts: HashMap<&str, BTreeSet<u16>> = HashMap::new();
        let bytes = movie.index_bytes;
        // The caches looked at one by one, by rank (best last). A cache's rank changes only
        // when it or a cache of its account is given a slot; which index it would take
        // changes with the holder counts, so that is worked out for the best one only.
        // `waiting`: those with nothing to take now (for a movie that takes no fresh
        // indices, a replica may become possible when a kept index gets its first holder).
        // The movie's slotting view as it stands: taken anew after each change to the pool,
        // the plan or the holder counts (it borrows them).
        macro_rules! slotting {
            () => {
                Slotting {
                    caches,
                    movie,
                    pool: &pool,
                    plan: &plan,
                    accounts: &accounts,
                    holders: &holders,
                    distinct,
                }
            };
        }
        let mut ranked: BTreeSet<Ranked> = BTreeSet::new();
        let mut rank_of: HashMap<usize, Ranked> = HashMap::new();
        let mut waiting: BTreeSet<usize> = BTreeSet::new();
        let mut rerank = |c: usize,
                          ranked: &mut BTreeSet<Ranked>,
                          waiting: &mut BTreeSet<usize>,
                          ctx: &Slotting| {
            if let Some(old) = rank_of.remove(&c) {
                ranked.remove(&old);
            }
            waiting.remove(&c);
            match ctx.candidate(c) {
                Some((_, rank)) => {
                    let key = (
                        rank,
                        ctx.pool.free_upload[c].to_bits(),
                        std::cmp::Reverse(c),
                    );
                    ranked.insert(key);
                    rank_of.insert(c, key);
                }
                None => {
                    waiting.insert(c);
                }
            }
        };
        for c in having.remove(movie.id.as_str()).unwrap_or_default() {
            special_for[c] = ordinal;
            let ctx = slotting!();
            rerank(c, &mut ranked, &mut waiting, &ctx);
        }
        while covered < target || distinct < movie.k {
            let ctx = slotting!();
            let best_ranked = ranked.last().map(|&(rank, _, std::cmp::Reverse(c))| {
                let index = ctx.candidate(c).map(|(i, _)| i);
                (c, index, rank)
            });
            let mut best = best_ranked.and_then(|(c, i, rank)| Some((c, i?, rank)));
            // Every other cache ranks (false, room that evicts nothing, false), then by
            // upload left, and evicts nothing: only the best of them can win.
            const ROOMY: Rank = (false, true, false);
            // Looked for only when it could win, and its index only when there is one.
            if best.is_none_or(|b| b.2 <= ROOMY)
                && let Some(c) = pool.best_other(bytes, |c| special_for[c] == ordinal)
                && let Some(index) = ctx.fewest(&|_| false)
            {
                consider(&mut best, &pool, c, index, ROOMY);
            }
            let Some((c, index, (kept, _, _))) = best else {
                break;
            };
            let slot = &mut holders[usize::from(index)];
            let first = *slot == 0;
            if first {
                distinct += 1;
            }
            *slot += 1;
            plan[c].entry(movie.id.as_str()).or_default().insert(index);
            let account = caches[c].account.as_str();
            accounts.entry(account).or_default().insert(index);
            covered += pool.take(c, bytes, per_index, kept);
            let ctx = slotting!();
            // Its account's caches (itself too) now have a limit on this movie: each is
            // looked at alone, ranked anew.
            for &mate in of_account.get(account).into_iter().flatten() {
                special_for[mate] = ordinal;
                rerank(mate, &mut ranked, &mut waiting, &ctx);
            }
            if first && !movie.fresh {
                for c in std::mem::take(&mut waiting) {
                    rerank(c, &mut ranked, &mut waiting, &ctx);
                }
            }
        }
        for (account, indices) in accounts {
            by_account.insert((account, movie.id.as_str()), indices);
        }
    }
    // Keep the rest of what caches have of movies still in demand, while storage lasts.
    for (c, cache) in caches.iter().enumerate() {
        let mut has: Vec<(&String, &BTreeSet<u16>)> = cache.has.iter().collect();
        has.sort_by(|a, b| {
            let d = |id: &str| wanted.get(id).map_or(0.0, |m| m.demand);
            d(b.0).total_cmp(&d(a.0)).then(a.0.cmp(b.0))
        });
        for (video, indices) in has {
            let Some(movie) = wanted.get(video.as_str()) else {
                continue;
            };
            for &index in indices.iter().filter(|&&i| i < movie.n) {
                if pool.free_storage[c] < movie.index_bytes {
                    break;
                }
                let account = by_account
                    .entry((cache.account.as_str(), movie.id.as_str()))
                    .or_default();
                if !account.contains(&index) && account.len() + 1 >= usize::from(movie.k) {
                    continue;
                }
                account.insert(index);
                if plan[c].entry(movie.id.as_str()).or_default().insert(index) {
                    pool.free_storage[c] -= movie.index_bytes;
                }
            }
        }
    }
    let mut placement = Placement::new();
    for (cache, movies) in caches.iter().zip(plan) {
        let entry = placement.entry(cache.id.clone()).or_default();
        for (video, indices) in movies {
            entry.entry(video.to_owned()).or_default().extend(indices);
        }
    }
    placement
}

/// Keeps the better of `best` and cache `c` taking `index` with `rank`: the higher rank,
/// then the more upload left, then the first cache.
fn consider(best: &mut Option<(usize, u16, Rank)>, pool: &Pool, c: usize, index: u16, rank: Rank) {
    let better = best.is_none_or(|(b, _, b_rank)| {
        (rank, pool.free_upload[c], std::cmp::Reverse(c))
            > (b_rank, pool.free_upload[b], std::cmp::Reverse(b))
    });
    if better {
        *best = Some((c, index, rank));
    }
}

/// A cache looked at alone, as kept ordered during one movie: its rank, then its upload
/// left (the bits of a non-negative f64 order as the number does), then the first position.
type Ranked = (Rank, u64, std::cmp::Reverse<usize>);

/// What deciding one slot of `movie` reads.
struct Slotting<'a> {
    caches: &'a [CacheSnapshot],
    movie: &'a MovieSnapshot,
    pool: &'a Pool,
    plan: &'a [BTreeMap<&'a str, BTreeSet<u16>>],
    accounts: &'a HashMap<&'a str, BTreeSet<u16>>,
    holders: &'a [u32],
    distinct: u16,
}

impl Slotting<'_> {
    /// The new index for a cache that may take the ones `held` does not name: the one held
    /// by the fewest caches; distinct indices until a viewer's peers can cover k with two
    /// blocks to spare, beyond that a replica of a held index (fetched from the cache
    /// holding it, not the origin) before another new one. None but held ones for a movie
    /// that takes no fresh indices.
    fn fewest(&self, held: &dyn Fn(u16) -> bool) -> Option<u16> {
        let m = self.movie;
        let spread = usize::from(self.distinct) >= usize::from(m.k) + 2 * block(m.k);
        let holders = |i: u16| self.holders[usize::from(i)];
        (0..m.n)
            .filter(|&i| !held(i) && (m.fresh || holders(i) > 0))
            .min_by_key(|&i| (spread && holders(i) == 0, holders(i), i))
    }

    /// The slot cache `c` would take (an index it has first) and how it ranks, if any.
    fn candidate(&self, c: usize) -> Option<(u16, Rank)> {
        let (m, pool) = (self.movie, self.pool);
        if !pool.fits(c, m.index_bytes) {
            return None;
        }
        let cache = &self.caches[c];
        let mine = self.plan[c].get(m.id.as_str());
        let account = self.accounts.get(cache.account.as_str());
        let allowed =
            |i: u16| account.is_none_or(|s| s.contains(&i) || s.len() + 1 < usize::from(m.k));
        let held = |i: u16| mine.is_some_and(|s| s.contains(&i)) || !allowed(i);
        let open_block = mine.is_some_and(|s| !s.is_empty() && s.len() < block(m.k));
        let kept = cache.has.get(&m.id).and_then(|has| {
            has.iter()
                .copied()
                .filter(|&i| i < m.n && !held(i))
                .min_by_key(|&i| (self.holders[usize::from(i)], i))
        });
        if let Some(i) = kept {
            return Some((i, (true, true, open_block)));
        }
        // A cache that has some of the movie may evict for more of it.
        let spare = pool.spare(c) >= m.index_bytes;
        if !spare && !pool.may_evict(c, m.demand) {
            return None;
        }
        self.fewest(&held).map(|i| (i, (false, spare, open_block)))
    }
}

/// How a candidate slot ranks: (an index the cache already has, room that evicts nothing,
/// an open block of this movie).
type Rank = (bool, bool, bool);

/// Above this many caches clearing a storage threshold, [`Pool::best_other`] walks the caches
/// by upload instead of looking at each of them.
const FEW: usize = 64;

/// What every cache has left during [`place`], with the caches that can still take a slot
/// ordered by upload left and by room, so the best of them is found without a pass over all.
struct Pool {
    free_storage: Vec<u64>,
    free_upload: Vec<f64>,
    /// Storage its holdings of wanted movies take and that has not been placed yet: a new
    /// index goes first where it evicts nothing (it costs one fetch; on a full cache it
    /// costs that fetch and another when the evicted index is wanted again).
    reserved: Vec<u64>,
    /// The least demand among the wanted movies it holds (infinite if none): what a new
    /// index that does not fit beside them would evict first.
    floor: Vec<f64>,
    /// Below this much free storage a cache can take no slot of any wanted movie.
    least_bytes: u64,
    open: Vec<bool>,
    /// (upload left, highest first; then position) of the open caches.
    by_upload: BTreeSet<(std::cmp::Reverse<u64>, usize)>,
    /// (room that evicts nothing, position) of the open ones.
    by_spare: BTreeSet<(u64, usize)>,
}

impl Pool {
    fn new(caches: &[CacheSnapshot], wanted: &HashMap<&str, &MovieSnapshot>) -> Pool {
        let held = |c: &'_ CacheSnapshot| {
            let movies = c.has.iter().filter_map(|(video, indices)| {
                let m = *wanted.get(video.as_str())?;
                let held = indices.iter().filter(|&&i| i < m.n).count() as u64;
                (held > 0).then_some((m, held))
            });
            movies.collect::<Vec<_>>()
        };
        let (reserved, floor) = caches
            .iter()
            .map(|c| {
                let held = held(c);
                let bytes = held.iter().map(|(m, n)| m.index_bytes * n).sum::<u64>();
                let floor = held
                    .iter()
                    .map(|(m, _)| m.demand)
                    .fold(f64::INFINITY, f64::min);
                (bytes, floor)
            })
            .unzip();
        let mut pool = Pool {
            free_storage: caches.iter().map(|c| c.storage).collect(),
            free_upload: caches.iter().map(|c| c.upload).collect(),
            reserved,
            floor,
            least_bytes: wanted.values().map(|m| m.index_bytes).min().unwrap_or(0),
            open: vec![false; caches.len()],
            by_upload: BTreeSet::new(),
            by_spare: BTreeSet::new(),
        };
        for c in 0..caches.len() {
            pool.open(c);
        }
        pool
    }

    fn spare(&self, c: usize) -> u64 {
        self.free_storage[c].saturating_sub(self.reserved[c])
    }

    /// Whether a slot of a movie wanted `demand` may evict what cache `c` holds.
    fn may_evict(&self, c: usize, demand: f64) -> bool {
        demand >= EVICT_MARGIN * self.floor[c]
    }

    /// Whether cache `c` can take a slot of `bytes` per index.
    fn fits(&self, c: usize, bytes: u64) -> bool {
        self.free_storage[c] >= bytes && self.free_upload[c] > 0.0
    }

    fn open(&mut self, c: usize) {
        let open = self.free_upload[c] > 0.0 && self.free_storage[c] >= self.least_bytes;
        if open {
            let upload = std::cmp::Reverse(self.free_upload[c].to_bits());
            self.by_upload.insert((upload, c));
            self.by_spare.insert((self.spare(c), c));
        }
        self.open[c] = open;
    }

    fn close(&mut self, c: usize) {
        if std::mem::take(&mut self.open[c]) {
            let upload = std::cmp::Reverse(self.free_upload[c].to_bits());
            self.by_upload.remove(&(upload, c));
            self.by_spare.remove(&(self.spare(c), c));
        }
    }

    /// Gives cache `c` a slot of `bytes` (one it `kept`: its storage was reserved for it);
    /// returns the upload it brings toward the movie.
    fn take(&mut self, c: usize, bytes: u64, per_index: f64, kept: bool) -> f64 {
        self.close(c);
        if kept {
            self.reserved[c] = self.reserved[c].saturating_sub(bytes);
        }
        self.free_storage[c] -= bytes;
        let used = self.free_upload[c].min(per_index);
        self.free_upload[c] -= used;
        self.open(c);
        used
    }

    /// The open cache, other than those `skip` names, with the most upload left among those
    /// with `bytes` of room that evicts nothing; equal ones by position.
    fn best_other(&self, bytes: u64, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let mut clearing = self.by_spare.range((bytes, 0)..).map(|&(_, c)| c);
        let few: Vec<usize> = clearing.by_ref().take(FEW + 1).collect();
        if few.len() <= FEW {
            return few.into_iter().filter(|&c| !skip(c)).max_by(|&a, &b| {
                self.free_upload[a]
                    .total_cmp(&self.free_upload[b])
                    .then(b.cmp(&a))
            });
        }
        self.by_upload
            .iter()
            .map(|&(_, c)| c)
            .find(|&c| !skip(c) && self.spare(c) >= bytes)
    }
}

/// One viewer's peer pick: the cache and the rate asked of it, bytes per second.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerPick {
    pub cache: String,
    pub rate: f64,
}

/// Picks a viewer's peers for a movie of `rate` bytes/s and `k`, among caches holding
/// complete indices of it (`holders`: cache and its indices). Until the peers hold k
/// distinct indices between them, the next is the cache adding the most indices the others
/// lack (so the viewer needs the origin for none), then the one that can give the most
/// (its upload left, up to the share its indices allow); until the movie's rate plus
/// headroom is covered or [`MAX_PEERS`] are chosen. `residual` is each cache's upload not
/// yet promised to other viewers, and is reduced by what this viewer is promised.
pub fn pick_peers(
    holders: &[(String, Vec<u16>)],
    rate: f64,
    k: u16,
    residual: &mut HashMap<String, f64>,
) -> Vec<PeerPick> {
    let mut picks = Vec::new();
    add_peers(holders, rate, k, residual, &mut picks, 1.0 + HEADROOM);
    picks
}

/// Adds peers to a viewer's `picks` as [`pick_peers`] chooses them, until they hold k
/// distinct indices and offer `rate × share` between them (or [`MAX_PEERS`] are chosen). A
/// round calls it twice over all viewers: first for every viewer's k indices and rate, then
/// for the headroom, so the first viewers' headroom never leaves a later one without k.
pub fn add_peers(
    holders: &[(String, Vec<u16>)],
    rate: f64,
    k: u16,
    residual: &mut HashMap<String, f64>,
    picks: &mut Vec<PeerPick>,
    share: f64,
) {
    let need = usize::from(k.max(1));
    let offer = |cache: &str, indices: usize, residual: &HashMap<String, f64>| -> f64 {
        let left = residual.get(cache).copied().unwrap_or(0.0).max(0.0);
        left.min(rate * (indices as f64 / need as f64).min(1.0))
    };
    let chosen: HashSet<&str> = picks.iter().map(|p| p.cache.as_str()).collect();
    let mut held = BTreeSet::new();
    for (c, indices) in holders {
        if chosen.contains(c.as_str()) {
            held.extend(indices.iter().copied());
        }
    }
    let mut candidates: Vec<(&String, &Vec<u16>, f64)> = holders
        .iter()
        .filter(|(c, _)| !chosen.contains(c.as_str()))
        .map(|(c, indices)| (c, indices, offer(c, indices.len(), residual)))
        .filter(|(_, _, o)| *o > 0.0)
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(b.0));
    let mut covered: f64 = picks.iter().map(|p| p.rate).sum();
    while picks.len() < MAX_PEERS
        && (covered < rate * share || held.len() < need)
        && !candidates.is_empty()
    {
        let missing = need.saturating_sub(held.len());
        let adds = |indices: &[u16]| {
            indices
                .iter()
                .filter(|i| !held.contains(*i))
                .count()
                .min(missing)
        };
        let Some(best) = (0..candidates.len()).max_by(|&a, &b| {
            let (ca, cb) = (&candidates[a], &candidates[b]);
            (adds(ca.1), ca.2)
                .partial_cmp(&(adds(cb.1), cb.2))
                .unwrap_or(std::cmp::Ordering::Equal)
                // Equal ranks: the first by id, so a pick is repeatable.
                .then(b.cmp(&a))
        }) else {
            break;
        };
        // `remove` keeps the rest in id order.
        let (cache, indices, offered) = candidates.remove(best);
        if let Some(left) = residual.get_mut(cache) {
            *left -= offered;
        }
        held.extend(indices.iter().copied());
        covered += offered;
        picks.push(PeerPick {
            cache: cache.clone(),
            rate: offered,
        });
    }
}

/// The network's state between rounds: the last placement, the peer sets, smoothed demand
/// and what each live cache reported.
#[derive(Debug, Default)]
pub struct Network {
    state: RwLock<RoundState>,
    /// What each cache has been credited for uploading: its trusted upload.
    measured: Measured,
}

#[derive(Debug, Default)]
struct RoundState {
    placement: Placement,
    /// Viewer → (movie, peers).
    peers: HashMap<String, (String, Vec<PeerPick>)>,
    /// Cache upload not promised to any viewer yet, bytes/s.
    residual: HashMap<String, f64>,
    demand: HashMap<String, f64>,
    caches: HashMap<String, NodeInfo>,
    /// Movie → caches holding complete indices of it, with those indices, by id.
    holders: HashMap<String, Vec<(String, Vec<u16>)>>,
    /// Movie → caches a viewer may ask for it, with the indices to ask for, by id (see
    /// [`serving_by_movie`]).
    serving: HashMap<String, Vec<(String, Vec<u16>)>>,
    /// Cache → what it was told to hold, by the answer to its last heartbeat.
    told: Placement,
    /// Movie → (rate, k).
    movies: HashMap<String, (f64, u16)>,
    /// Viewer → (movie, every cache handed to it for that movie while it watched it): the
    /// transfers the tracker can vouch for.
    given: HashMap<String, (String, HashSet<String>)>,
    /// Cache → (source cache, movie) → the indices the tracker told it to fetch there:
    /// the cache-to-cache transfers it can vouch for (kept while both are live).
    warm_given: HashMap<String, HashMap<(String, String), BTreeSet<u16>>>,
}

/// Most other caches named to one cache per movie to warm from.
pub const WARM_SOURCES: usize = 3;

/// Where a cache fetches what it is placed with and lacks: for each movie, other caches
/// (its own account's too: that saves the origin, and earns nothing) holding some of the
/// `missing` indices, each with those it holds; the ones with the most upload left first,
/// until every missing index has a source, and at most [`WARM_SOURCES`]. `caches` are the
/// live caches' complete indices per movie (as a round indexes them).
pub fn warm_sources(
    me: &NodeInfo,
    missing: &BTreeMap<String, BTreeSet<u16>>,
    holders: &HashMap<String, Vec<(String, Vec<u16>)>>,
    residual: &HashMap<String, f64>,
) -> Vec<(String, String, Vec<u16>)> {
    let mut out = Vec::new();
    for (video, want) in missing {
        let mut candidates: Vec<(&String, Vec<u16>, f64)> = holders
            .get(video)
            .into_iter()
            .flatten()
            .filter(|(c, _)| *c != me.node_id)
            .filter_map(|(c, held)| {
                let has: Vec<u16> = held.iter().copied().filter(|i| want.contains(i)).collect();
                let left = residual.get(c).copied().unwrap_or(0.0);
                (!has.is_empty()).then_some((c, has, left))
            })
            .collect();
        // Most upload left first; equal ones by id, so the answer is repeatable.
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
        let mut uncovered = want.clone();
        let mut named = 0;
        for (c, has, _) in candidates {
            if named == WARM_SOURCES || uncovered.is_empty() {
                break;
            }
            if !has.iter().any(|i| uncovered.contains(i)) {
                continue;
            }
            for i in &has {
                uncovered.remove(i);
            }
            named += 1;
            out.push((video.clone(), c.clone(), has));
        }
    }
    out
}

/// A movie's facts for a round.
#[derive(Clone, Debug)]
pub struct MovieFacts {
    pub id: String,
    pub rate: f64,
    pub index_bytes: u64,
    pub k: u16,
    pub n: u16,
    /// Accounts that bought it.
    pub purchases: u64,
}

impl Network {
    /// Counts `bytes` the ledger credited to `cache` toward its measured upload.
    pub fn record_upload(&self, cache: &str, bytes: u64, now: Instant) {
        self.measured.record(cache, bytes, now);
    }

    /// Runs one round over the live `nodes` and the catalogue's `movies`. A cache's upload
    /// counts as far as it has been shown ([`Measured::trusted_bps`]), not as declared.
    /// Caches in `waiting` (not placed yet, with claims the tracker has still to check) are
    /// known (their addresses, for the check) but not placed this round.
    pub fn round(&self, nodes: &[NodeInfo], movies: &[MovieFacts], waiting: &HashSet<String>) {
        self.round_at(nodes, movies, waiting, Instant::now());
    }

    /// [`Network::round`] as of `now` (the simulator's clock; `serve` passes the real one).
    pub fn round_at(
        &self,
        nodes: &[NodeInfo],
        movies: &[MovieFacts],
        waiting: &HashSet<String>,
        now: Instant,
    ) {
        let live: HashSet<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
        self.measured.retain(|id| live.contains(id));
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut watching: HashMap<&str, f64> = HashMap::new();
        for node in nodes.iter().filter(|n| n.kind == NodeKind::Viewer) {
            if let Some(v) = &node.watching {
                *watching.entry(v).or_default() += 1.0;
            }
        }
        let most_bought = movies.iter().map(|m| m.purchases).max().unwrap_or(0).max(1) as f64;
        let mut demand = HashMap::new();
        for m in movies {
            let live = watching.get(m.id.as_str()).copied().unwrap_or(0.0);
            let before = state.demand.get(&m.id).copied().unwrap_or(0.0);
            // Smoothed, but never below what is watched now.
            let smoothed = (DEMAND_MEMORY * before + (1.0 - DEMAND_MEMORY) * live).max(live);
            demand.insert(m.id.clone(), smoothed);
        }
        let snapshots: Vec<MovieSnapshot> = movies
            .iter()
            .map(|m| MovieSnapshot {
                id: m.id.clone(),
                rate: m.rate,
                index_bytes: m.index_bytes,
                k: m.k,
                n: m.n,
                demand: demand[&m.id] + PRIOR_VIEWERS * m.purchases as f64 / most_bought,
                fresh: demand[&m.id] * FRESH_HORIZON_SECS * m.rate
                    >= m.index_bytes as f64 * f64::from(m.k)
                    || m.purchases as f64 >= FRESH_PURCHASES * most_bought,
            })
            .collect();
        let caches: Vec<CacheSnapshot> = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Cache && !waiting.contains(&n.node_id))
            .map(|n| {
                let mut has: HashMap<String, BTreeSet<u16>> = n
                    .holdings
                    .iter()
                    .map(|h| (h.video.clone(), h.indices.iter().copied().collect()))
                    .collect();
                for (video, indices) in state.placement.get(&n.node_id).into_iter().flatten() {
                    has.entry(video.clone())
                        .or_default()
                        .extend(indices.iter().copied());
                }
                CacheSnapshot {
                    id: n.node_id.clone(),
                    account: n.account.clone(),
                    upload: self.measured.trusted_bps(&n.node_id, n.upload_bps, now) as f64 / 8.0,
                    storage: n.storage_bytes,
                    has,
                }
            })
            .collect();
        let placement = place(&caches, &snapshots);
        let mut residual: HashMap<String, f64> =
            caches.iter().map(|c| (c.id.clone(), c.upload)).collect();
        let cache_info: HashMap<String, NodeInfo> = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Cache)
            .map(|n| (n.node_id.clone(), n.clone()))
            .collect();
        let facts: HashMap<String, (f64, u16)> = movies
            .iter()
            .map(|m| (m.id.clone(), (m.rate, m.k)))
            .collect();
        let holders = holders_by_movie(&cache_info);
        let mut told = std::mem::take(&mut state.told);
        told.retain(|cache, _| cache_info.contains_key(cache));
        let serving = serving_by_movie(&holders, &caches, &told, &placement);
        let mut peers = HashMap::new();
        let mut given = HashMap::new();
        // What caches were told to fetch from each other, while both are live.
        let mut warm_given = std::mem::take(&mut state.warm_given);
        warm_given.retain(|cache, sources| {
            sources.retain(|(source, _), _| cache_info.contains_key(source));
            cache_info.contains_key(cache) && !sources.is_empty()
        });
        let none = Vec::new();
        let watchers: Vec<(&NodeInfo, &String, f64, u16)> = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Viewer)
            .filter_map(|n| {
                let video = n.watching.as_ref()?;
                let &(rate, k) = facts.get(video)?;
                Some((n, video, rate, k))
            })
            .collect();
        // Every viewer's k indices and rate first, then the headroom (see [`add_peers`]),
        // each from the upload its movie was planned; then, for viewers still short, from
        // whatever upload is left.
        let mut reserved = reserve_by_movie(&serving, &snapshots, &residual);
        let mut all_picks: Vec<Vec<PeerPick>> = vec![Vec::new(); watchers.len()];
        for share in [1.0, 1.0 + HEADROOM] {
            for ((_, video, rate, k), picks) in watchers.iter().zip(&mut all_picks) {
                let serving = serving.get(*video).unwrap_or(&none);
                let reserved = reserved.entry((*video).clone()).or_default();
                add_peers(serving, *rate, *k, reserved, picks, share);
            }
        }
        for left in residual.values_mut() {
            *left = 0.0;
        }
        for (cache, left) in reserved.into_values().flatten() {
            *residual.entry(cache).or_default() += left;
        }
        for ((_, video, rate, k), picks) in watchers.iter().zip(&mut all_picks) {
            let serving = serving.get(*video).unwrap_or(&none);
            add_peers(serving, *rate, *k, &mut residual, picks, 1.0 + HEADROOM);
        }
        for ((node, video, _, _), picks) in watchers.into_iter().zip(all_picks) {
            let mut handed: HashSet<String> = match state.given.remove(&node.node_id) {
                Some((v, handed)) if v == *video => handed,
                _ => HashSet::new(),
            };
            handed.extend(picks.iter().map(|p| p.cache.clone()));
            given.insert(node.node_id.clone(), (video.clone(), handed));
            peers.insert(node.node_id.clone(), (video.clone(), picks));
        }
        *state = RoundState {
            placement,
            peers,
            residual,
            demand,
            caches: cache_info,
            holders,
            serving,
            told,
            movies: facts,
            given,
            warm_given,
        };
    }

    /// Other caches that cache `id` may fetch its placed, missing indices from (see
    /// [`warm_sources`]): (movie, source's info, indices). Remembered, so the receipts of
    /// those transfers count.
    pub fn sources_for(&self, id: &str) -> Vec<(String, NodeInfo, Vec<u16>)> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let (Some(me), Some(placed)) = (state.caches.get(id), state.placement.get(id)) else {
            return Vec::new();
        };
        let held: HashMap<&str, BTreeSet<u16>> = me
            .holdings
            .iter()
            .map(|h| (h.video.as_str(), h.indices.iter().copied().collect()))
            .collect();
        let missing: BTreeMap<String, BTreeSet<u16>> = placed
            .iter()
            .filter_map(|(video, want)| {
                let have = held.get(video.as_str());
                let lack: BTreeSet<u16> = want
                    .iter()
                    .copied()
                    .filter(|i| !have.is_some_and(|h| h.contains(i)))
                    .collect();
                (!lack.is_empty()).then(|| (video.clone(), lack))
            })
            .collect();
        let picks = warm_sources(me, &missing, &state.holders, &state.residual);
        let picks: Vec<(String, NodeInfo, Vec<u16>)> = picks
            .into_iter()
            .filter_map(|(video, source, indices)| {
                let info = state.caches.get(&source)?.clone();
                Some((video, info, indices))
            })
            .collect();
        let given = state.warm_given.entry(id.to_owned()).or_default();
        for (video, source, indices) in &picks {
            given
                .entry((source.node_id.clone(), video.clone()))
                .or_default()
                .extend(indices.iter().copied());
        }
        picks
    }

    /// Whether the tracker handed cache `cache` to node `node` (a viewer's peer for the movie
    /// it watches, or a cache's source to warm from).
    pub fn gave(&self, node: &str, cache: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .given
            .get(node)
            .is_some_and(|(_, caches)| caches.contains(cache))
            || state
                .warm_given
                .get(node)
                .is_some_and(|g| g.keys().any(|(source, _)| source == cache))
    }

    /// Whether the tracker told cache `cache` to fetch index `index` of `video` from cache
    /// `source` (and `cache` is still placed with it): receipts for it count.
    pub fn vouches_for_warming(&self, cache: &str, source: &str, video: &str, index: u16) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let placed = state
            .placement
            .get(cache)
            .and_then(|m| m.get(video))
            .is_some_and(|s| s.contains(&index));
        placed
            && state
                .warm_given
                .get(cache)
                .and_then(|g| g.get(&(source.to_owned(), video.to_owned())))
                .is_some_and(|s| s.contains(&index))
    }

    /// Whether the tracker can vouch for bytes of `video` from `cache` to `viewer`: it handed
    /// that cache to that viewer for that movie, or placed the cache with the movie.
    pub fn vouches_for(&self, viewer: &str, cache: &str, video: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let handed = state
            .given
            .get(viewer)
            .is_some_and(|(v, caches)| v == video && caches.contains(cache));
        handed
            || state
                .placement
                .get(cache)
                .is_some_and(|movies| movies.contains_key(video))
    }

    /// Whether a round has placed cache `id` (its `hold` is the tracker's decision).
    pub fn is_placed_cache(&self, id: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.placement.contains_key(id)
    }

    /// What cache `id` should hold, or `None` when no round has seen it yet.
    pub fn hold(&self, id: &str) -> Option<Vec<Holding>> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        let placed = state.placement.get(id)?;
        // What it has been told: what it may be asked for while it warms.
        state.told.insert(id.to_owned(), placed.clone());
        Some(
            placed
                .iter()
                .map(|(video, indices)| Holding {
                    video: video.clone(),
                    indices: indices.iter().copied().collect(),
                })
                .collect(),
        )
    }

    /// Where cache `id` said it can be reached, as of the last round.
    pub fn address_of(&self, id: &str) -> Option<String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.caches.get(id).map(|c| c.advertise.clone())
    }

    /// The certificate fingerprint cache `id` registered, if it serves FTPS.
    pub fn fingerprint_of(&self, id: &str) -> Option<String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.caches.get(id).and_then(|c| c.fingerprint.clone())
    }

    /// The indices of `video` cache `id` is to hold, if any.
    pub fn placed_indices(&self, id: &str, video: &str) -> Option<Vec<u16>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let indices = state.placement.get(id)?.get(video)?;
        Some(indices.iter().copied().collect())
    }

    /// Whether cache `id` is to hold some of `video`.
    pub fn is_placed(&self, id: &str, video: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .placement
            .get(id)
            .is_some_and(|movies| movies.contains_key(video))
    }

    /// Viewer `id`, watching `video`, could not reach the caches `suspects`: its peer set
    /// drops them (what they were asked for goes back to their upload left) and is topped
    /// up at once from the other caches serving the movie, so the reply to the report that
    /// names them brings their replacements (with no other cache to take their place, the
    /// set stays as it is); a crashed peer costs the viewer a fraction of a
    /// second of origin, not the seconds until its next heartbeat and the next round. Only
    /// this viewer's own set changes: whether others are still given a suspect is for the
    /// tracker's own check of it (`reach.rs`) and its heartbeats.
    pub fn replace_suspects(&self, id: &str, video: &str, suspects: &[String]) {
        if suspects.is_empty() {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        let Some(&(rate, k)) = state.movies.get(video) else {
            return;
        };
        let Some((watching, picks)) = state.peers.get_mut(id) else {
            return;
        };
        if watching != video || !picks.iter().any(|p| suspects.contains(&p.cache)) {
            return;
        }
        let (gone, mut kept): (Vec<PeerPick>, Vec<PeerPick>) = picks
            .iter()
            .cloned()
            .partition(|p| suspects.contains(&p.cache));
        let free = |residual: &mut HashMap<String, f64>, sign: f64| {
            for p in &gone {
                if let Some(left) = residual.get_mut(&p.cache) {
                    *left += sign * p.rate;
                }
            }
        };
        free(&mut state.residual, 1.0);
        let others: Vec<(String, Vec<u16>)> = state
            .serving
            .get(video)
            .into_iter()
            .flatten()
            .filter(|(c, _)| !suspects.contains(c))
            .cloned()
            .collect();
        let before = kept.len();
        add_peers(
            &others,
            rate,
            k,
            &mut state.residual,
            &mut kept,
            1.0 + HEADROOM,
        );
        if kept.len() == before {
            // No one to replace them with: the set stays as it was (the viewer rests a peer
            // that fails, and the tracker's probe decides whether it is dead).
            free(&mut state.residual, -1.0);
            return;
        }
        *picks = kept;
        if let Some((v, handed)) = state.given.get_mut(id)
            && v == video
        {
            handed.extend(picks.iter().map(|p| p.cache.clone()));
        }
    }

    /// Viewer `id`'s peers for `video`: from the last round, or picked now from the upload
    /// left if the viewer is new or changed movie. Each peer comes with its advertised
    /// address and the indices to ask it for (see [`serving_by_movie`]).
    pub fn peers(&self, id: &str, video: &str) -> Vec<(NodeInfo, Vec<u16>, f64)> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let current = match state.peers.get(id) {
            Some((v, picks)) if v == video => picks.clone(),
            _ => {
                let Some(&(rate, k)) = state.movies.get(video) else {
                    return Vec::new();
                };
                let state = &mut *state;
                let none = Vec::new();
                let serving = state.serving.get(video).unwrap_or(&none);
                let picks = pick_peers(serving, rate, k, &mut state.residual);
                state
                    .peers
                    .insert(id.to_owned(), (video.to_owned(), picks.clone()));
                let handed = match state.given.remove(id) {
                    Some((v, handed)) if v == video => handed,
                    _ => HashSet::new(),
                };
                let handed = (video.to_owned(), handed);
                let entry = state.given.entry(id.to_owned()).or_insert(handed);
                entry.1.extend(picks.iter().map(|p| p.cache.clone()));
                picks
            }
        };
        let serving = state.serving.get(video);
        current
            .into_iter()
            .filter_map(|pick| {
                let info = state.caches.get(&pick.cache)?;
                let (_, indices) = serving?.iter().find(|(c, _)| *c == pick.cache)?;
                Some((info.clone(), indices.clone(), pick.rate))
            })
            .collect()
    }
}

/// Makes caches silent since before `quiet_before` (Unix seconds) unplaceable for a round:
/// they are not handed to anyone (they may have crashed) but stay placed until they expire,
/// and what they hold counts again when they speak.
pub fn silence_quiet_caches(live: &mut [NodeInfo], quiet_before: u64) {
    for n in live
        .iter_mut()
        .filter(|n| n.kind == NodeKind::Cache && n.last_seen < quiet_before)
    {
        n.holdings.clear();
        // No upload to give: nothing new is placed on it, nothing it was placed with is
        // handed out, and its movies' supply is made up elsewhere at once.
        n.upload_bps = 0;
    }
}

/// Each cache's upload (`upload`) split over the movies it holds complete indices of, in
/// proportion to what placement plans per index of each (demand × rate / k) times the indices
/// it holds: movie → cache → upload for that movie's viewers. Without it the viewers of the
/// movie looked at first take upload that the plan meant for another movie, whose viewers
/// then lack indices only those caches hold.
fn reserve_by_movie(
    holders: &HashMap<String, Vec<(String, Vec<u16>)>>,
    movies: &[MovieSnapshot],
    upload: &HashMap<String, f64>,
) -> HashMap<String, HashMap<String, f64>> {
    let per_index: HashMap<&str, f64> = movies
        .iter()
        .map(|m| (m.id.as_str(), m.demand * m.rate / f64::from(m.k.max(1))))
        .collect();
    let weight = |video: &str, indices: &[u16]| {
        per_index.get(video).copied().unwrap_or(0.0) * indices.len() as f64
    };
    let mut total: HashMap<&str, f64> = HashMap::new();
    for (video, caches) in holders {
        for (cache, indices) in caches {
            *total.entry(cache.as_str()).or_default() += weight(video, indices);
        }
    }
    let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for (video, caches) in holders {
        let entry = out.entry(video.clone()).or_default();
        for (cache, indices) in caches {
            let (Some(&up), Some(&all)) = (upload.get(cache), total.get(cache.as_str())) else {
                continue;
            };
            if all > 0.0 {
                entry.insert(cache.clone(), up * weight(video, indices) / all);
            }
        }
    }
    out
}

/// For each movie, the caches a viewer may ask for it, with the indices to ask for, by id:
/// those it holds complete, and those it is placed with and was told of by the answer to a
/// heartbeat (`told`): it is warming them in segment order, and a segment it has not got
/// yet answers "missing" at once, so the viewer asks elsewhere. Waiting for a warming cache
/// to complete a whole index, report it and be picked left viewers asking the origin for
/// seconds after every placement change. Only caches with upload to give count (a quiet
/// one has none, see [`silence_quiet_caches`]). `holders` are the complete ones
/// ([`holders_by_movie`]).
fn serving_by_movie(
    holders: &HashMap<String, Vec<(String, Vec<u16>)>>,
    caches: &[CacheSnapshot],
    told: &Placement,
    now: &Placement,
) -> HashMap<String, Vec<(String, Vec<u16>)>> {
    let mut by_movie: HashMap<String, BTreeMap<String, BTreeSet<u16>>> = HashMap::new();
    for (video, list) in holders {
        let entry = by_movie.entry(video.clone()).or_default();
        for (cache, indices) in list {
            entry
                .entry(cache.clone())
                .or_default()
                .extend(indices.iter().copied());
        }
    }
    for cache in caches.iter().filter(|c| c.upload > 0.0) {
        let (Some(was), Some(is)) = (told.get(&cache.id), now.get(&cache.id)) else {
            continue;
        };
        for (video, indices) in is {
            let Some(was) = was.get(video) else {
                continue;
            };
            let kept: Vec<u16> = indices.intersection(was).copied().collect();
            if !kept.is_empty() {
                by_movie
                    .entry(video.clone())
                    .or_default()
                    .entry(cache.id.clone())
                    .or_default()
                    .extend(kept);
            }
        }
    }
    by_movie
        .into_iter()
        .map(|(video, caches)| {
            let list = caches
                .into_iter()
                .map(|(c, indices)| (c, indices.into_iter().collect()))
                .collect();
            (video, list)
        })
        .collect()
}

/// For each movie, the caches holding complete indices of it, with those indices, by id:
/// built once a round so a viewer's pick looks only at its movie's holders.
fn holders_by_movie(
    caches: &HashMap<String, NodeInfo>,
) -> HashMap<String, Vec<(String, Vec<u16>)>> {
    let mut by_movie: HashMap<String, Vec<(String, Vec<u16>)>> = HashMap::new();
    for c in caches.values() {
        // A movie listed twice counts as its first listing.
        let mut seen = HashSet::new();
        let first = c.holdings.iter().filter(|h| seen.insert(h.video.as_str()));
        for h in first.filter(|h| !h.indices.is_empty()) {
            by_movie
                .entry(h.video.clone())
                .or_default()
                .push((c.node_id.clone(), h.indices.clone()));
        }
    }
    for holders in by_movie.values_mut() {
        holders.sort();
    }
    by_movie
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `place` as a pass over every cache for every slot, as it was before [`Pool`], with the
    /// same rules: the ordered one must decide exactly as this one does.
    fn place_reference(caches: &[CacheSnapshot], movies: &[MovieSnapshot]) -> Placement {
        // Distinct indices per (account, movie) placed so far.
        let mut by_account: HashMap<(&str, &str), BTreeSet<u16>> = HashMap::new();
        let mut free_storage: Vec<u64> = caches.iter().map(|c| c.storage).collect();
        let mut free_upload: Vec<f64> = caches.iter().map(|c| c.upload).collect();
        let mut plan: Placement = caches
            .iter()
            .map(|c| (c.id.clone(), BTreeMap::new()))
            .collect();
        let mut order: Vec<&MovieSnapshot> = movies.iter().filter(|m| m.demand > 0.0).collect();
        order.sort_by(|a, b| b.demand.total_cmp(&a.demand).then(a.id.cmp(&b.id)));
        // Storage each cache's holdings of wanted movies take and have not been placed yet: a
        // new index goes first where it evicts nothing (it costs one fetch; on a full cache it
        // costs that fetch and another when the evicted index is wanted again).
        let mut reserved: Vec<u64> = caches
            .iter()
            .map(|c| {
                order
                    .iter()
                    .filter_map(|m| {
                        let held = c.has.get(&m.id)?.iter().filter(|&&i| i < m.n).count();
                        Some(m.index_bytes * held as u64)
                    })
                    .sum()
            })
            .collect();
        let floor: Vec<f64> = caches
            .iter()
            .map(|c| {
                order
                    .iter()
                    .filter(|m| c.has.get(&m.id).is_some_and(|h| h.iter().any(|&i| i < m.n)))
                    .map(|m| m.demand)
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        for movie in order {
            let k = f64::from(movie.k.max(1));
            let target = movie.demand * movie.rate * (1.0 + HEADROOM);
            let per_index = movie.demand * movie.rate / k;
            let mut holders = vec![0u32; usize::from(movie.n)];
            let (mut covered, mut distinct) = (0.0, 0u16);
            let block = block(movie.k);
            let spread_to = usize::from(movie.k) + 2 * block;
            while covered < target || distinct < movie.k {
                let spread = usize::from(distinct) >= spread_to;
                // Kept slots first: a cache that has an index it is not yet planned to keep.
                let mut best: Option<(usize, u16, (bool, bool, bool))> = None;
                for (c, cache) in caches.iter().enumerate() {
                    if free_storage[c] < movie.index_bytes || free_upload[c] <= 0.0 {
                        continue;
                    }
                    let mine = plan[&cache.id].get(&movie.id);
                    let account = by_account.get(&(cache.account.as_str(), movie.id.as_str()));
                    let allowed = |i: u16| {
                        account.is_none_or(|s| s.contains(&i) || s.len() + 1 < usize::from(movie.k))
                    };
                    let held = |i: u16| mine.is_some_and(|s| s.contains(&i)) || !allowed(i);
                    let kept = cache.has.get(&movie.id).and_then(|has| {
                        has.iter()
                            .copied()
                            .filter(|&i| i < movie.n && !held(i))
                            .min_by_key(|&i| (holders[usize::from(i)], i))
                    });
                    let open_block = mine.is_some_and(|s| !s.is_empty() && s.len() < block);
                    let spare = free_storage[c].saturating_sub(reserved[c]) >= movie.index_bytes;
                    let holds_some =
                        cache.has.contains_key(&movie.id) || mine.is_some() || account.is_some();
                    let candidate = match kept {
                        Some(i) => (c, i, (true, true, open_block)),
                        // Distinct indices until a viewer's peers can cover k with two blocks to
                        // spare; beyond that a replica of a held index (fetched from the cache
                        // holding it, not the origin) before another new one.
                        None => match (0..movie.n)
                            .filter(|&i| !held(i) && (movie.fresh || holders[usize::from(i)] > 0))
                            .min_by_key(|&i| {
                                let h = holders[usize::from(i)];
                                (spread && h == 0, h, i)
                            }) {
                            Some(i)
                                if spare
                                    || (holds_some && movie.demand >= EVICT_MARGIN * floor[c]) =>
                            {
                                (c, i, (false, spare, open_block))
                            }
                            _ => continue,
                        },
                    };
                    // Kept indices first, then room that evicts nothing, then open blocks, then
                    // the most upload left.
                    let better = match best {
                        None => true,
                        Some((b, _, b_rank)) => {
                            (candidate.2, free_upload[c]) > (b_rank, free_upload[b])
                        }
                    };
                    if better {
                        best = Some(candidate);
                    }
                }
                let Some((c, index, (kept, _, _))) = best else {
                    break;
                };
                if kept {
                    reserved[c] = reserved[c].saturating_sub(movie.index_bytes);
                }
                let slot = &mut holders[usize::from(index)];
                if *slot == 0 {
                    distinct += 1;
                }
                *slot += 1;
                plan.get_mut(&caches[c].id)
                    .map(|movies| movies.entry(movie.id.clone()).or_default().insert(index));
                by_account
                    .entry((caches[c].account.as_str(), movie.id.as_str()))
                    .or_default()
                    .insert(index);
                free_storage[c] -= movie.index_bytes;
                let used = free_upload[c].min(per_index);
                free_upload[c] -= used;
                covered += used;
            }
        }
        // Keep the rest of what caches have of movies still in demand, while storage lasts.
        let wanted: BTreeMap<&str, &MovieSnapshot> = movies
            .iter()
            .filter(|m| m.demand > 0.0)
            .map(|m| (m.id.as_str(), m))
            .collect();
        for (c, cache) in caches.iter().enumerate() {
            let mut has: Vec<(&String, &BTreeSet<u16>)> = cache.has.iter().collect();
            has.sort_by(|a, b| {
                let d = |id: &str| wanted.get(id).map_or(0.0, |m| m.demand);
                d(b.0).total_cmp(&d(a.0)).then(a.0.cmp(b.0))
            });
            for (video, indices) in has {
                let Some(movie) = wanted.get(video.as_str()) else {
                    continue;
                };
                for &index in indices.iter().filter(|&&i| i < movie.n) {
                    if free_storage[c] < movie.index_bytes {
                        break;
                    }
                    let account = by_account
                        .entry((cache.account.as_str(), movie.id.as_str()))
                        .or_default();
                    if !account.contains(&index) && account.len() + 1 >= usize::from(movie.k) {
                        continue;
                    }
                    account.insert(index);
                    let planned = plan
                        .get_mut(&cache.id)
                        .map(|m| m.entry(video.clone()).or_default().insert(index));
                    if planned == Some(true) {
                        free_storage[c] -= movie.index_bytes;
                    }
                }
            }
        }
        plan
    }

    fn node(id: &str, kind: NodeKind, upload_bps: u64, holds: &[u16]) -> NodeInfo {
        NodeInfo {
            node_id: id.into(),
            account: format!("account-of-{id}"),
            kind,
            bind: String::new(),
            advertise: format!("{id}:21"),
            addrs: Vec::new(),
            fingerprint: None,
            reach: None,
            upload_bps,
            storage_bytes: 10_000_000_000,
            watching: (kind == NodeKind::Viewer).then(|| "m".to_owned()),
            holdings: if holds.is_empty() {
                Vec::new()
            } else {
                vec![Holding {
                    video: "m".into(),
                    indices: holds.to_vec(),
                }]
            },
            last_seen: 0,
        }
    }

    #[test]
    fn a_declared_upload_wins_viewers_only_as_far_as_it_was_shown() {
        // Mallory's cache declares 10 Gbit/s, an honest one 10 Mbit/s; both hold k indices.
        // 60 viewers at 400 kB/s want far more than either can give.
        let all: Vec<u16> = (0..12).collect();
        let mut nodes = vec![
            node("mallory", NodeKind::Cache, 10_000_000_000, &all),
            node("honest", NodeKind::Cache, 10_000_000, &all),
        ];
        for i in 0..60 {
            nodes.push(node(&format!("v{i}"), NodeKind::Viewer, 0, &[]));
        }
        let movies = [MovieFacts {
            id: "m".into(),
            rate: 400_000.0,
            index_bytes: 1_000_000,
            k: 12,
            n: 24,
            purchases: 60,
        }];
        let promised = |net: &Network, cache: &str| -> f64 {
            (0..60)
                .flat_map(|i| net.peers(&format!("v{i}"), "m"))
                .filter(|(info, _, _)| info.node_id == cache)
                .map(|(_, _, rate)| rate)
                .sum()
        };
        let net = Network::default();
        net.round(&nodes, &movies, &HashSet::new());
        let unproven = crate::measured::UNPROVEN_UPLOAD_BPS as f64 / 8.0;
        let (liar, honest) = (promised(&net, "mallory"), promised(&net, "honest"));
        assert!(liar <= unproven + 1.0, "mallory was promised {liar} B/s");
        assert!(honest > 0.0 && liar <= honest + 1.0, "{liar} vs {honest}");
        // Once viewers' receipts show it uploading 40 Mbit/s, it is trusted with 80.
        let t0 = Instant::now();
        let net2 = Network::default();
        net2.record_upload("mallory", 50_000_000, t0);
        net2.record_upload("mallory", 1, t0 + std::time::Duration::from_secs(10));
        net2.round(&nodes, &movies, &HashSet::new());
        let shown = promised(&net2, "mallory");
        assert!(
            shown > 4.0 * unproven,
            "{shown} B/s after showing 40 Mbit/s"
        );
        assert!(shown <= 10_000_000.0 + 1.0, "{shown}");
    }

    /// A node holding (or watching) movies of its own naming.
    fn node_of(id: &str, kind: NodeKind, upload_bps: u64, holds: &[(&str, &[u16])]) -> NodeInfo {
        NodeInfo {
            watching: None,
            holdings: holds
                .iter()
                .map(|(video, indices)| Holding {
                    video: (*video).into(),
                    indices: indices.to_vec(),
                })
                .collect(),
            ..node(id, kind, upload_bps, &[])
        }
    }

    fn facts(id: &str, rate: f64, k: u16) -> MovieFacts {
        MovieFacts {
            id: id.into(),
            rate,
            index_bytes: 1_000_000,
            k,
            n: 4 * k,
            purchases: 0,
        }
    }

    /// Distinct indices of `video` that viewer `v`'s peers hold between them.
    fn covered_by_peers(net: &Network, v: &str, video: &str) -> BTreeSet<u16> {
        net.peers(v, video)
            .into_iter()
            .flat_map(|(_, indices, _)| indices)
            .collect()
    }

    #[test]
    fn the_first_viewers_headroom_never_leaves_a_later_one_without_k() {
        // k = 16 in blocks of 4; c4 holds two blocks. Rates in bytes/s of a 400 kB/s movie:
        // c4 and c2, c3 can serve two viewers' share of their blocks, c0 and c1 one.
        let rate = 400_000.0;
        let bps = |share: f64| (share * rate * 8.0) as u64;
        let block = |b: u16| (b * 4..b * 4 + 4).collect::<Vec<u16>>();
        let both: Vec<u16> = (0..8).collect();
        let mut nodes = vec![
            node_of("c0", NodeKind::Cache, bps(0.25), &[("m", &block(0))]),
            node_of("c1", NodeKind::Cache, bps(0.25), &[("m", &block(1))]),
            node_of("c2", NodeKind::Cache, bps(0.5), &[("m", &block(2))]),
            node_of("c3", NodeKind::Cache, bps(0.5), &[("m", &block(3))]),
            node_of("c4", NodeKind::Cache, bps(0.5), &[("m", &both)]),
        ];
        for v in ["v1", "v2"] {
            nodes.push(NodeInfo {
                watching: Some("m".into()),
                ..node_of(v, NodeKind::Viewer, 0, &[])
            });
        }
        // Below the unproven allowance every declared upload is trusted as it is.
        assert!(bps(0.5) < crate::measured::UNPROVEN_UPLOAD_BPS);
        let net = Network::default();
        net.round(&nodes, &[facts("m", rate, 16)], &HashSet::new());
        // In one pass per viewer, v1's headroom took c0 and v2 was left 12 indices.
        for v in ["v1", "v2"] {
            assert_eq!(covered_by_peers(&net, v, "m").len(), 16, "{v}");
        }
    }

    #[test]
    fn the_viewers_of_one_movie_leave_another_the_upload_planned_for_it() {
        // "shared" is the only cache with indices 0–3 of the little-watched movie b; movie a
        // has sixteen viewers, who would take all of shared's upload if they could.
        let a_all: Vec<u16> = (0..16).collect();
        let mut nodes = vec![
            node_of(
                "shared",
                NodeKind::Cache,
                10_000_000,
                &[("a", &a_all[..4]), ("b", &[0, 1, 2, 3])],
            ),
            node_of("a-rest", NodeKind::Cache, 10_000_000, &[("a", &a_all[4..])]),
            node_of("b-rest", NodeKind::Cache, 10_000_000, &[("b", &a_all[4..])]),
        ];
        for i in 0..16 {
            nodes.push(NodeInfo {
                watching: Some("a".into()),
                ..node_of(&format!("a{i:02}"), NodeKind::Viewer, 0, &[])
            });
        }
        nodes.push(NodeInfo {
            watching: Some("b".into()),
            ..node_of("b-viewer", NodeKind::Viewer, 0, &[])
        });
        let movies = [facts("a", 400_000.0, 16), facts("b", 400_000.0, 16)];
        let net = Network::default();
        net.round(&nodes, &movies, &HashSet::new());
        assert_eq!(covered_by_peers(&net, "b-viewer", "b").len(), 16);
        let shared_for_b: f64 = net
            .peers("b-viewer", "b")
            .iter()
            .filter(|(info, _, _)| info.node_id == "shared")
            .map(|(_, _, rate)| rate)
            .sum();
        assert!(shared_for_b > 0.0);
    }

    /// Four caches with a complete block each of a k = 16 movie, an empty "fresh" one, and
    /// twelve viewers wanting more upload than the four have.
    fn warming_scene() -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = (0..4u16)
            .map(|b| {
                let block: Vec<u16> = (b * 4..b * 4 + 4).collect();
                node_of(
                    &format!("c{b}"),
                    NodeKind::Cache,
                    10_000_000,
                    &[("m", &block)],
                )
            })
            .collect();
        nodes.push(node_of("fresh", NodeKind::Cache, 10_000_000, &[]));
        for i in 0..12 {
            nodes.push(NodeInfo {
                watching: Some("m".into()),
                ..node_of(&format!("v{i:02}"), NodeKind::Viewer, 0, &[])
            });
        }
        nodes
    }

    /// The indices viewers were told to ask `cache` for, over all twelve.
    fn asked_of(net: &Network, cache: &str) -> BTreeSet<u16> {
        (0..12)
            .flat_map(|i| net.peers(&format!("v{i:02}"), "m"))
            .filter(|(info, _, _)| info.node_id == cache)
            .flat_map(|(_, indices, _)| indices)
            .collect()
    }

    #[test]
    fn a_cache_told_what_to_hold_is_handed_to_viewers_while_it_warms() {
        let nodes = warming_scene();
        let movies = [facts("m", 400_000.0, 16)];
        let net = Network::default();
        net.round(&nodes, &movies, &HashSet::new());
        let placed = net
            .placed_indices("fresh", "m")
            .expect("fresh takes a share");
        assert!(!placed.is_empty());
        net.round(&nodes, &movies, &HashSet::new());
        assert!(
            asked_of(&net, "fresh").is_empty(),
            "placed, but not told yet"
        );
        // Its heartbeat's answer tells it; it reports nothing complete yet, and serves what
        // it warms.
        assert!(net.hold("fresh").is_some_and(|h| !h.is_empty()));
        net.round(&nodes, &movies, &HashSet::new());
        let asked = asked_of(&net, "fresh");
        let still: BTreeSet<u16> = net
            .placed_indices("fresh", "m")
            .unwrap()
            .into_iter()
            .collect();
        assert!(
            !asked.is_empty(),
            "a warming cache is asked for what it was placed with"
        );
        assert!(asked.is_subset(&still), "{asked:?} ⊄ {still:?}");
    }

    #[test]
    fn a_quiet_cache_is_handed_to_no_one_and_its_supply_is_made_up_at_once() {
        let mut nodes = warming_scene();
        let movies = [facts("m", 400_000.0, 16)];
        let net = Network::default();
        net.round(&nodes, &movies, &HashSet::new());
        for c in ["c0", "c1", "c2", "c3", "fresh"] {
            net.hold(c);
        }
        net.round(&nodes, &movies, &HashSet::new());
        assert!(!asked_of(&net, "c0").is_empty());
        let fresh_before = net.placed_indices("fresh", "m").unwrap_or_default().len();
        // c0 falls silent (crashed?): last seen long ago.
        for n in &mut nodes {
            n.last_seen = if n.node_id == "c0" { 10 } else { 1_000 };
        }
        silence_quiet_caches(&mut nodes, 500);
        net.round(&nodes, &movies, &HashSet::new());
        assert!(asked_of(&net, "c0").is_empty(), "handed to no one");
        assert!(
            net.placed_indices("c0", "m").is_some_and(|i| i.len() == 4),
            "still placed until it expires"
        );
        let fresh_after = net.placed_indices("fresh", "m").unwrap_or_default().len();
        assert!(fresh_after > fresh_before, "{fresh_before} → {fresh_after}");
    }

    #[test]
    fn a_viewer_that_cannot_reach_a_peer_gets_its_replacement_in_the_same_reply() {
        // c0 and "spare" hold the same five indices; four caches of five cover a viewer's
        // k = 16 and rate with headroom. The one it was given crashes.
        let rate = 400_000.0;
        let mut nodes: Vec<NodeInfo> = (0..4u16)
            .map(|b| {
                let five: Vec<u16> = (b * 5..b * 5 + 5).collect();
                node_of(
                    &format!("c{b}"),
                    NodeKind::Cache,
                    10_000_000,
                    &[("m", &five)],
                )
            })
            .collect();
        let first: Vec<u16> = (0..5).collect();
        nodes.push(node_of(
            "spare",
            NodeKind::Cache,
            10_000_000,
            &[("m", &first)],
        ));
        nodes.push(NodeInfo {
            watching: Some("m".into()),
            ..node_of("v", NodeKind::Viewer, 0, &[])
        });
        let net = Network::default();
        net.round(&nodes, &[facts("m", rate, 16)], &HashSet::new());
        let names = |net: &Network| -> BTreeSet<String> {
            net.peers("v", "m")
                .into_iter()
                .map(|(info, _, _)| info.node_id)
                .collect()
        };
        let before = names(&net);
        // Whichever of the two it was given, that one is the one it cannot reach.
        let (dead, other) = if before.contains("c0") {
            ("c0", "spare")
        } else {
            ("spare", "c0")
        };
        assert!(
            before.contains(dead) && !before.contains(other),
            "{before:?}"
        );
        // Naming a cache it was never given changes nothing.
        net.replace_suspects("v", "m", &[other.to_owned()]);
        assert_eq!(names(&net), before);
        net.replace_suspects("v", "m", &[dead.to_owned()]);
        let after = names(&net);
        assert!(!after.contains(dead) && after.contains(other), "{after:?}");
        assert!(covered_by_peers(&net, "v", "m").len() >= 16);
        assert!(
            net.gave("v", other),
            "the replacement's transfers are vouched for"
        );
    }

    fn cache(id: &str, upload: f64, storage: u64) -> CacheSnapshot {
        CacheSnapshot {
            id: id.into(),
            account: format!("account-of-{id}"),
            upload,
            storage,
            has: HashMap::new(),
        }
    }

    fn movie(id: &str, demand: f64) -> MovieSnapshot {
        MovieSnapshot {
            id: id.into(),
            rate: 400_000.0,
            index_bytes: 1_000_000,
            k: 16,
            n: 64,
            demand,
            fresh: true,
        }
    }

    fn indices(plan: &Placement, cache: &str, movie: &str) -> BTreeSet<u16> {
        plan[cache].get(movie).cloned().unwrap_or_default()
    }

    /// Random networks, small and large (large ones take [`Pool`]'s walk by upload), with
    /// shared accounts, idle and full caches, held indices out of range and of movies
    /// nobody wants: the ordered placement decides exactly as the pass over every cache.
    #[test]
    fn ordered_placement_decides_exactly_as_a_pass_over_every_cache() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        for round in 0..300 {
            let movies: Vec<MovieSnapshot> = (0..rng.random_range(1..8))
                .map(|m| {
                    let k = rng.random_range(1..=16);
                    MovieSnapshot {
                        id: format!("m{m}"),
                        rate: rng.random_range(1e5..2e6),
                        index_bytes: rng.random_range(1..20) * 10_000_000,
                        k,
                        n: k + rng.random_range(0..=48),
                        demand: if rng.random_bool(0.2) {
                            0.0
                        } else {
                            rng.random_range(0.01..40.0)
                        },
                        fresh: rng.random_bool(0.7),
                    }
                })
                .collect();
            let count = if round % 3 == 0 {
                rng.random_range(65..300)
            } else {
                rng.random_range(0..40)
            };
            let accounts = rng.random_range(1..=count.max(1));
            let caches: Vec<CacheSnapshot> = (0..count)
                .map(|c| {
                    let mut has = HashMap::new();
                    for m in &movies {
                        if rng.random_bool(0.3) {
                            let held = (0..rng.random_range(1..12))
                                .map(|_| rng.random_range(0..m.n + 2))
                                .collect();
                            has.insert(m.id.clone(), held);
                        }
                    }
                    if rng.random_bool(0.1) {
                        has.insert("gone".into(), BTreeSet::from([0, 1]));
                    }
                    CacheSnapshot {
                        id: format!("c{c:03}"),
                        account: format!("a{}", rng.random_range(0..accounts)),
                        upload: match rng.random_range(0..4) {
                            0 => 0.0,
                            1 => 1_250_000.0,
                            _ => rng.random_range(1e4..5e6),
                        },
                        storage: rng.random_range(0..40) * 25_000_000,
                        has,
                    }
                })
                .collect();
            assert_eq!(
                place(&caches, &movies),
                place_reference(&caches, &movies),
                "network {round}"
            );
        }
    }

    #[test]
    fn caches_complement_each_other_with_distinct_indices() {
        let caches: Vec<_> = (0..4)
            .map(|i| cache(&format!("c{i}"), 10e6, 100_000_000))
            .collect();
        let plan = place(&caches, &[movie("m", 3.0)]);
        let all: Vec<u16> = (0..4)
            .flat_map(|i| indices(&plan, &format!("c{i}"), "m"))
            .collect();
        let distinct: BTreeSet<u16> = all.iter().copied().collect();
        assert_eq!(all.len(), distinct.len(), "no index twice: {all:?}");
        assert!(distinct.len() >= 16);
        // Spread evenly: every cache holds some.
        for i in 0..4 {
            assert!(!indices(&plan, &format!("c{i}"), "m").is_empty());
        }
    }

    #[test]
    fn demand_beyond_one_cache_spreads_and_replicates() {
        // Each cache uploads one movie rate; 10 viewers need 10 rates + headroom.
        let caches: Vec<_> = (0..16)
            .map(|i| cache(&format!("c{i:02}"), 400_000.0, 1_000_000_000))
            .collect();
        let plan = place(&caches, &[movie("m", 10.0)]);
        let total: usize = plan
            .values()
            .map(|m| m.get("m").map_or(0, |s| s.len()))
            .sum();
        // 12.5 rates of coverage: each cache gives its whole rate in two slots (10/16 and
        // 6/16 of a rate), so 13 caches and 25 slots.
        assert_eq!(total, 25);
        let used = plan.values().filter(|m| m.contains_key("m")).count();
        assert_eq!(used, 13);
        // k + two blocks distinct (24), then a replica: it warms from a cache, not the
        // origin.
        let distinct: BTreeSet<u16> = plan
            .values()
            .filter_map(|m| m.get("m"))
            .flatten()
            .copied()
            .collect();
        assert_eq!(distinct.len(), 24, "{plan:?}");
    }

    #[test]
    fn storage_goes_to_the_most_demanded_movie() {
        // Room for 20 indices in all: the popular movie gets what it needs first (k − 1 of
        // them: one account never holds k).
        let caches = vec![cache("c", 1e9, 20_000_000)];
        let plan = place(&caches, &[movie("cold", 0.2), movie("hot", 5.0)]);
        assert_eq!(indices(&plan, "c", "hot").len(), 15);
        assert!(indices(&plan, "c", "cold").len() <= 5);
        // Nothing is placed for movies without demand.
        let plan = place(&caches, &[movie("none", 0.0)]);
        assert!(plan["c"].is_empty());
    }

    #[test]
    fn caches_take_blocks_so_a_few_peers_cover_k() {
        // Plenty of upload everywhere: a movie is not sprinkled one index per cache.
        let caches: Vec<_> = (0..20)
            .map(|i| cache(&format!("c{i:02}"), 10e6, 1_000_000_000))
            .collect();
        let plan = place(&caches, &[movie("m", 2.0)]);
        for (c, movies) in &plan {
            if let Some(held) = movies.get("m") {
                assert!(held.len() >= block(16), "{c} holds {held:?}");
            }
        }
        assert_eq!(block(16), 4);
    }

    #[test]
    fn what_caches_have_of_wanted_movies_stays_while_storage_lasts() {
        let mut a = cache("a", 10e6, 100_000_000);
        a.has.insert("m".into(), (0..12).collect());
        a.has.insert("gone".into(), (0..8).collect());
        let mut b = cache("b", 10e6, 100_000_000);
        b.has.insert("m".into(), (20..32).collect());
        let plan = place(&[a, b], &[movie("m", 0.5), movie("gone", 0.0)]);
        assert_eq!(indices(&plan, "a", "m").len(), 12, "kept beyond the demand");
        assert_eq!(indices(&plan, "b", "m").len(), 12, "kept beyond the demand");
        assert!(indices(&plan, "a", "gone").is_empty(), "no demand: evicted");
        // Storage runs out: only what fits stays.
        let mut small = cache("s", 10e6, 10_000_000);
        small.has.insert("m".into(), (0..12).collect());
        let plan = place(&[small], &[movie("m", 0.5)]);
        assert_eq!(indices(&plan, "s", "m").len(), 10);
    }

    #[test]
    fn one_account_never_holds_k_distinct_indices_of_a_movie() {
        // Two caches of one account, each claiming the whole movie, with room and upload
        // for much more: together they are placed with k − 1 distinct indices, never k.
        let mut caches: Vec<_> = (0..2)
            .map(|i| {
                let mut c = cache(&format!("m{i}"), 1e9, 1_000_000_000);
                c.account = "mallory".into();
                c.has.insert("m".into(), (0..64).collect());
                c
            })
            .collect();
        let plan = place(&caches, &[movie("m", 8.0)]);
        let together: BTreeSet<u16> = ["m0", "m1"]
            .iter()
            .flat_map(|c| indices(&plan, c, "m"))
            .collect();
        assert_eq!(together.len(), 15, "{together:?}");
        // Another account's cache beside them completes the movie for the viewers.
        caches.push(cache("honest", 1e9, 1_000_000_000));
        let plan = place(&caches, &[movie("m", 8.0)]);
        let all: BTreeSet<u16> = ["m0", "m1", "honest"]
            .iter()
            .flat_map(|c| indices(&plan, c, "m"))
            .collect();
        assert!(all.len() >= 16, "{all:?}");
    }

    #[test]
    fn held_indices_are_kept() {
        let mut a = cache("a", 10e6, 100_000_000);
        a.has.insert("m".into(), [40, 41, 42].into_iter().collect());
        let b = cache("b", 10e6, 100_000_000);
        let plan = place(&[a, b], &[movie("m", 1.0)]);
        let kept = indices(&plan, "a", "m");
        assert!(kept.is_superset(&[40, 41, 42].into_iter().collect()));
        assert!(indices(&plan, "b", "m").is_disjoint(&kept));
    }

    #[test]
    fn peer_sets_are_bounded_and_respect_upload_left() {
        let holders: Vec<(String, Vec<u16>)> = (0..10)
            .map(|i| (format!("c{i}"), (i * 8..i * 8 + 8).collect()))
            .collect();
        let mut residual: HashMap<String, f64> = holders
            .iter()
            .map(|(c, _)| (c.clone(), 100_000.0))
            .collect();
        let picks = pick_peers(&holders, 400_000.0, 16, &mut residual);
        assert_eq!(picks.len(), 5, "5 × 100 kB/s cover 400 kB/s + 25%");
        assert!(picks.iter().all(|p| (p.rate - 100_000.0).abs() < 1e-6));
        let picks = pick_peers(&holders, 4_000_000.0, 16, &mut residual);
        assert_eq!(picks.len(), 5, "only five caches have upload left");
        let picks = pick_peers(&holders, 4_000_000.0, 16, &mut residual);
        assert!(picks.is_empty(), "no upload left anywhere");
    }

    #[test]
    fn peers_cover_k_distinct_indices_before_anything_else() {
        // Eight caches hold the same block with the most upload; four hold one each of four
        // other blocks with less. Picking by upload alone would leave the viewer 4 indices.
        let mut holders: Vec<(String, Vec<u16>)> = (0..8)
            .map(|i| (format!("a{i}"), (0..4).collect()))
            .collect();
        holders.extend((1..5).map(|b| (format!("b{b}"), (b * 4..b * 4 + 4).collect())));
        let mut residual: HashMap<String, f64> = holders
            .iter()
            .map(|(c, _)| (c.clone(), if c.starts_with('a') { 1e6 } else { 5e4 }))
            .collect();
        let picks = pick_peers(&holders, 400_000.0, 16, &mut residual);
        let chosen: BTreeSet<&str> = picks.iter().map(|p| p.cache.as_str()).collect();
        let distinct: BTreeSet<u16> = holders
            .iter()
            .filter(|(c, _)| chosen.contains(c.as_str()))
            .flat_map(|(_, i)| i.iter().copied())
            .collect();
        assert!(picks.len() <= MAX_PEERS);
        assert!(distinct.len() >= 16, "{picks:?} hold {distinct:?}");
        assert!(chosen.contains("a0"), "then the most upload: {picks:?}");
    }

    /// Holdings of `plan` as what each cache reports next round.
    fn reported(caches: &[CacheSnapshot], plan: &Placement) -> Vec<CacheSnapshot> {
        caches
            .iter()
            .map(|c| CacheSnapshot {
                has: plan[&c.id]
                    .iter()
                    .map(|(m, s)| (m.clone(), s.clone()))
                    .collect(),
                ..c.clone()
            })
            .collect()
    }

    #[test]
    fn a_round_after_a_cache_leaves_moves_nothing_a_live_cache_holds() {
        // Twelve caches, four movies of falling demand (80 slots wanted), storage for 8
        // indices each (96): tight enough that a careless round evicts to make room.
        let caches: Vec<_> = (0..12)
            .map(|i| cache(&format!("c{i:02}"), 1_500_000.0, 8_000_000))
            .collect();
        let movies = [
            movie("a", 6.0),
            movie("b", 3.0),
            movie("c", 1.5),
            movie("d", 0.5),
        ];
        let first = place(&caches, &movies);
        let caches = reported(&caches, &first);
        let settled = place(&caches, &movies);
        assert_eq!(settled, first, "a round without change changes nothing");
        // The cache holding the most leaves; every other keeps all it holds.
        let gone = caches
            .iter()
            .max_by_key(|c| c.has.values().map(BTreeSet::len).sum::<usize>())
            .unwrap()
            .id
            .clone();
        let survivors: Vec<_> = caches.iter().filter(|c| c.id != gone).cloned().collect();
        let after = place(&survivors, &movies);
        for cache in &survivors {
            for (movie, held) in &settled[&cache.id] {
                let now = indices(&after, &cache.id, movie);
                assert!(
                    now.is_superset(held),
                    "{} lost {:?} of {movie}",
                    cache.id,
                    held.difference(&now).collect::<Vec<_>>()
                );
            }
        }
        // What left with it is placed again where there is room, so every movie still has
        // k distinct indices among the live caches.
        for m in &movies {
            let distinct: BTreeSet<u16> = survivors
                .iter()
                .flat_map(|c| indices(&after, &c.id, &m.id))
                .collect();
            assert!(distinct.len() >= 16, "{}: {distinct:?}", m.id);
        }
    }
}
