//! Proofs of holding: a cache's reported holdings count (for placement and peer sets) only
//! when the tracker knows the cache has them — it fetched every segment of that index from
//! the origin under its node id (the origin logs what it sends), or it passed a spot-check
//! (the tracker fetched random chunks of those indices from it over FTP and checked them
//! against the manifest's Merkle roots). A failed check refuses the holding: the heartbeat
//! reply tells the cache to drop it. See `docs/trust.md`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rivulet_node_core::clock::unix_secs;
use rivulet_node_core::peer::chunk_server::{ServedBytes, ServedChunk};
use rivulet_node_core::peer::ftp::ChunkSession;
use rivulet_node_core::task::Every;
use rivulet_node_core::ticket::TicketSigner;
use rivulet_tracker_client::{Holding, NodeId, NodeInfo, NodeKind};
use tokio_util::sync::CancellationToken;

use crate::catalogue_cache::CatalogueCache;
use crate::tickets;

/// Chunks fetched per spot-check.
const CHECKED_CHUNKS: usize = 2;
/// Longest a spot-check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before checking an unreachable cache again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Spot-checks running at once.
const PARALLEL_CHECKS: usize = 4;
/// The ticket holder name the tracker logs in to caches with.
pub const CHECKER: &str = "origin";

type Key = (String, String);

/// Where a cache can be reached and the fingerprint of its FTPS certificate (checked over
/// FTPS pinned to it when it has one), looked up at check time.
pub type Addresses = Arc<dyn Fn(&str) -> Option<(String, Option<String>)> + Send + Sync>;

#[derive(Debug, Default)]
struct Inner {
    /// (cache, movie) → index → segments the origin sent it.
    fetched: HashMap<Key, HashMap<u16, HashSet<u32>>>,
    /// (cache, movie) → indices that passed a spot-check.
    checked: HashMap<Key, BTreeSet<u16>>,
    /// (cache, movie) → indices that failed one: refused until the cache drops them.
    failed: HashMap<Key, BTreeSet<u16>>,
    /// Claims waiting for a check, and when each may be tried.
    queue: HashMap<Key, (BTreeSet<u16>, Instant)>,
    running: HashSet<Key>,
}

/// What the tracker knows of each cache's holdings.
#[derive(Debug, Default)]
pub struct Proofs {
    inner: Mutex<Inner>,
}

impl Proofs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in what the origin sent.
    pub fn record(&self, sent: Vec<ServedChunk>) {
        let mut inner = self.lock();
        // Viewers fetch from the origin too; only what caches fetch proves a holding.
        for c in sent
            .into_iter()
            .filter(|c| NodeId::kind_of(&c.holder) == Some(NodeKind::Cache))
        {
            // Fetched from the origin now: no longer refused.
            if let Some(failed) = inner.failed.get_mut(&(c.holder.clone(), c.video.clone())) {
                failed.remove(&c.index);
            }
            inner
                .fetched
                .entry((c.holder, c.video))
                .or_default()
                .entry(c.index)
                .or_default()
                .insert(c.segment);
        }
    }

    /// Replaces each live cache's holdings in `nodes` by the part the tracker knows of,
    /// queues the rest for a spot-check, and forgets caches that are gone. `segments` gives
    /// each movie's segment count. Returns the caches with claims still waiting for a check
    /// (queued or running).
    pub fn filter(
        &self,
        nodes: &mut [NodeInfo],
        segments: &HashMap<String, u32>,
    ) -> HashSet<String> {
        let mut inner = self.lock();
        let live: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Cache)
            .map(|n| n.node_id.as_str())
            .collect();
        inner.fetched.retain(|(c, _), _| live.contains(c.as_str()));
        inner.checked.retain(|(c, _), _| live.contains(c.as_str()));
        inner.failed.retain(|(c, _), _| live.contains(c.as_str()));
        inner.queue.retain(|(c, _), _| live.contains(c.as_str()));
        // A refusal lasts while the cache still claims what failed.
        {
            let claims: HashSet<(&str, &str, u16)> = nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Cache)
                .flat_map(|n| {
                    n.holdings.iter().flat_map(move |h| {
                        h.indices
                            .iter()
                            .map(move |&i| (n.node_id.as_str(), h.video.as_str(), i))
                    })
                })
                .collect();
            inner.failed.retain(|(c, v), indices| {
                indices.retain(|&i| claims.contains(&(c.as_str(), v.as_str(), i)));
                !indices.is_empty()
            });
        }
        let now = Instant::now();
        for node in nodes.iter_mut().filter(|n| n.kind == NodeKind::Cache) {
            for holding in &mut node.holdings {
                let key = (node.node_id.clone(), holding.video.clone());
                let count = segments.get(&holding.video).copied().unwrap_or(u32::MAX);
                let fetched = inner.fetched.get(&key);
                let checked = inner.checked.get(&key);
                let proven = |i: &u16| {
                    fetched
                        .and_then(|f| f.get(i))
                        .is_some_and(|segs| segs.len() as u64 >= u64::from(count))
                        || checked.is_some_and(|c| c.contains(i))
                };
                let failed = inner.failed.get(&key);
                let unproven: BTreeSet<u16> = holding
                    .indices
                    .iter()
                    .filter(|i| !proven(i) && !failed.is_some_and(|f| f.contains(i)))
                    .copied()
                    .collect();
                holding.indices.retain(|i| proven(i));
                if !unproven.is_empty() && !inner.running.contains(&key) {
                    let entry = inner.queue.entry(key).or_insert((BTreeSet::new(), now));
                    entry.0 = unproven;
                }
            }
            node.holdings.retain(|h| !h.indices.is_empty());
        }
        inner
            .queue
            .keys()
            .chain(inner.running.iter())
            .map(|(cache, _)| cache.clone())
            .collect()
    }

    /// Holdings of `cache` that failed a spot-check: the reply tells it to drop them.
    pub fn refused(&self, cache: &str) -> Vec<Holding> {
        self.lock()
            .failed
            .iter()
            .filter(|((c, _), _)| c == cache)
            .map(|((_, video), indices)| Holding {
                video: video.clone(),
                indices: indices.iter().copied().collect(),
            })
            .collect()
    }

    /// Claims due for a check now, at most `max`, marked running.
    fn due(&self, max: usize) -> Vec<(Key, BTreeSet<u16>)> {
        let mut inner = self.lock();
        let now = Instant::now();
        let keys: Vec<Key> = inner
            .queue
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .take(max)
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let (indices, _) = inner.queue.remove(&k)?;
                inner.running.insert(k.clone());
                Some((k, indices))
            })
            .collect()
    }

    fn finish(&self, key: Key, indices: BTreeSet<u16>, outcome: CheckOutcome) {
        let mut inner = self.lock();
        inner.running.remove(&key);
        match outcome {
            CheckOutcome::Passed => inner.checked.entry(key).or_default().extend(indices),
            CheckOutcome::Failed => inner.failed.entry(key).or_default().extend(indices),
            CheckOutcome::Unreachable => {
                inner
                    .queue
                    .insert(key, (indices, Instant::now() + RETRY_AFTER));
            }
        }
    }
}

/// How a spot-check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    /// A chunk was missing or did not verify.
    Failed,
    /// The cache could not be reached or logged in to: asked again later, never counted.
    Unreachable,
}

/// Fetches [`CHECKED_CHUNKS`] random chunks among `indices` of `video` from `cache` at
/// `addr` (over FTPS pinned to `pin` when set) and checks them against the manifest.
pub async fn spot_check(
    signer: &TicketSigner,
    catalogue: &CatalogueCache,
    cache: &str,
    (addr, pin): (&str, Option<&str>),
    video: &str,
    indices: &BTreeSet<u16>,
) -> CheckOutcome {
    let Some(stored) = catalogue
        .all()
        .await
        .iter()
        .find(|v| v.record.id == video)
        .cloned()
    else {
        return CheckOutcome::Failed;
    };
    let manifest = &stored.manifest;
    let list: Vec<u16> = indices.iter().copied().collect();
    if list.is_empty() || manifest.segment_count() == 0 {
        return CheckOutcome::Failed;
    }
    let picks: Vec<(u32, u16)> = {
        let mut rng = rand::rng();
        (0..CHECKED_CHUNKS)
            .map(|_| {
                (
                    rng.random_range(0..manifest.segment_count()),
                    list[rng.random_range(0..list.len())],
                )
            })
            .collect()
    };
    let claims = tickets::claims(CHECKER, cache, video, unix_secs(), None);
    let ticket = signer.issue(&claims);
    let check = async {
        let mut session =
            match ChunkSession::connect_pinned(addr, CHECKER, &ticket, video, CHECK_TIMEOUT, pin)
                .await
            {
                Ok(s) => s,
                Err(_) => return CheckOutcome::Unreachable,
            };
        for (segment, index) in picks {
            let max = manifest.wire_len(segment);
            let ok = match session.fetch(segment, index, max).await {
                Ok(wire) => manifest.verify_chunk(segment, index, &wire).is_ok(),
                Err(_) => false,
            };
            if !ok {
                return CheckOutcome::Failed;
            }
        }
        session.close().await;
        CheckOutcome::Passed
    };
    tokio::time::timeout(CHECK_TIMEOUT * 2, check)
        .await
        .unwrap_or(CheckOutcome::Unreachable)
}

/// Takes in the origin's log and runs due spot-checks until `stop`. `addresses` is looked up
/// for each cache at check time.
pub async fn run(
    proofs: Arc<Proofs>,
    origin: Arc<ServedBytes>,
    signer: Arc<TicketSigner>,
    catalogue: Arc<CatalogueCache>,
    addresses: Addresses,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = Every::new(Duration::from_millis(250));
    let mut checks = tokio::task::JoinSet::new();
    while every.tick(&stop).await {
        proofs.record(origin.take_chunks());
        while checks.try_join_next().is_some() {}
        let room = PARALLEL_CHECKS.saturating_sub(checks.len());
        for ((cache, video), indices) in proofs.due(room) {
            let Some((addr, pin)) = addresses(&cache) else {
                proofs.finish((cache, video), indices, CheckOutcome::Unreachable);
                continue;
            };
            let (proofs, signer, catalogue) = (proofs.clone(), signer.clone(), catalogue.clone());
            checks.spawn(async move {
                let outcome = spot_check(
                    &signer,
                    &catalogue,
                    &cache,
                    (addr.as_str(), pin.as_deref()),
                    &video,
                    &indices,
                )
                .await;
                tracing::debug!(%cache, %video, ?indices, ?outcome, "spot-check");
                proofs.finish((cache, video), indices, outcome);
            });
        }
    }
    Ok(())
}
