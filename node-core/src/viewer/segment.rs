//! Fetching one segment: ask the peer set for k distinct chunk indices (caches first, each
//! in proportion to the rate the tracker asked of it and how busy it is), the origin for the
//! rest; race late cache requests against the origin; verify every chunk as it arrives,
//! blaming the sender of a bad one; decode and check the segment.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rivulet_tracker_client::{ChunkRef, PeerBytes};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sources::{Answer, ORIGIN, Request, Source, Sources};
use crate::format::{FormatError, Manifest};
use crate::peer::ftp::FetchError;

/// Most failed origin requests for one segment before the segment gives up.
const ORIGIN_TRIES: u32 = 6;

/// Most caches named in one report's `received` (the tracker's limit per list).
pub const REPORT_MAX_PEERS: usize = 1024;
/// Most receipts (verified chunks) in one report; the rest wait for the next.
pub const REPORT_MAX_CHUNKS: usize = 8192;
/// Most receipts waiting for a report (a tracker gone for a long while): beyond it the
/// oldest are dropped with their bytes, counted in [`Progress::dropped_receipts`].
pub const PENDING_MAX_CHUNKS: usize = 8 * REPORT_MAX_CHUNKS;

/// Verified bytes received, in all and per peer, and what is not reported yet: the bytes
/// from the origin, and a receipt per chunk verified from a cache (its segment, index and
/// bytes), which the tracker credits the cache from.
#[derive(Debug, Default)]
pub struct Progress {
    pub from_origin_bytes: AtomicU64,
    pub from_caches_bytes: AtomicU64,
    /// Chunks asked of the origin, by why: the peers did not hold enough distinct indices
    /// (`gap`), a cache was late for the deadline (`race`), or a cache failed, lied or did
    /// not have it (`retry`).
    pub origin_asks: OriginAsks,
    /// Verified bytes the origin sent for those asks, by the same reasons.
    pub origin_bytes_by: OriginAsks,
    /// Why caches' answers failed (each then asked of another cache or the origin).
    pub peer_failures: PeerFailures,
    unreported: std::sync::Mutex<Unreported>,
    totals: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// What the next reports carry.
#[derive(Debug, Default)]
struct Unreported {
    origin_bytes: u64,
    /// Receipts from caches, oldest first.
    receipts: VecDeque<Receipt>,
    /// Receipts dropped because too many waited.
    dropped: u64,
}

/// One chunk verified from a cache.
#[derive(Debug, Clone)]
struct Receipt {
    peer: Arc<str>,
    chunk: ChunkRef,
    bytes: u64,
}

impl Progress {
    /// Counts `bytes` of chunk (`segment`, `index`) verified from `peer`.
    pub(crate) fn add(&self, peer: &str, segment: u32, index: u16, bytes: u64) {
        let total = if peer == ORIGIN {
            &self.from_origin_bytes
        } else {
            &self.from_caches_bytes
        };
        total.fetch_add(bytes, Ordering::Relaxed);
        *self
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(peer.to_owned())
            .or_default() += bytes;
        let mut unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        if peer == ORIGIN {
            unreported.origin_bytes += bytes;
            return;
        }
        // The same peer as the last receipt (the usual case): share its name.
        let peer = match unreported.receipts.back() {
            Some(last) if &*last.peer == peer => last.peer.clone(),
            _ => Arc::from(peer),
        };
        unreported.receipts.push_back(Receipt {
            peer,
            chunk: ChunkRef(segment, index),
            bytes,
        });
        if unreported.receipts.len() > PENDING_MAX_CHUNKS {
            unreported.receipts.pop_front();
            unreported.dropped += 1;
            if unreported.dropped == 1 {
                tracing::warn!(
                    max = PENDING_MAX_CHUNKS,
                    "too many receipts wait for the tracker; the oldest are dropped \
                     (counted in dropped_receipts)"
                );
            }
        }
    }

    /// Verified bytes per peer since the start.
    pub fn by_peer(&self) -> std::collections::BTreeMap<String, u64> {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Receipts dropped unreported because too many waited (see [`PENDING_MAX_CHUNKS`]).
    pub fn dropped_receipts(&self) -> u64 {
        self.unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dropped
    }

    /// Whether verified bytes wait to be reported.
    pub fn has_unreported(&self) -> bool {
        let unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        unreported.origin_bytes > 0 || !unreported.receipts.is_empty()
    }

    /// Receipts waiting to be reported.
    pub fn pending_receipts(&self) -> usize {
        self.unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .receipts
            .len()
    }

    /// The next report's `received` entries for `video`, taken: the origin's bytes, and per
    /// cache its bytes with the receipts of its chunks, oldest first, at most
    /// [`REPORT_MAX_PEERS`] caches and [`REPORT_MAX_CHUNKS`] receipts; the rest waits.
    pub fn take_received(&self, video: &str) -> Vec<PeerBytes> {
        self.take_received_within(video, REPORT_MAX_PEERS, REPORT_MAX_CHUNKS)
    }

    /// [`Progress::take_received`] with other bounds (`max_peers` counts caches only).
    pub fn take_received_within(
        &self,
        video: &str,
        max_peers: usize,
        max_chunks: usize,
    ) -> Vec<PeerBytes> {
        let mut unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PeerBytes> = Vec::new();
        let origin = std::mem::take(&mut unreported.origin_bytes);
        if origin > 0 {
            out.push(PeerBytes::new(ORIGIN, video, origin));
        }
        let mut at: HashMap<Arc<str>, usize> = HashMap::new();
        let mut left = VecDeque::new();
        let mut taken = 0usize;
        while taken < max_chunks {
            let Some(receipt) = unreported.receipts.pop_front() else {
                break;
            };
            let slot = match at.get(&receipt.peer) {
                Some(&slot) => slot,
                None if at.len() < max_peers => {
                    out.push(PeerBytes::new(&*receipt.peer, video, 0));
                    at.insert(receipt.peer.clone(), out.len() - 1);
                    out.len() - 1
                }
                // One cache too many for this report: it waits, in its place.
                None => {
                    left.push_back(receipt);
                    continue;
                }
            };
            out[slot].bytes += receipt.bytes;
            out[slot].chunks.push(receipt.chunk);
            taken += 1;
        }
        while let Some(receipt) = left.pop_back() {
            unreported.receipts.push_front(receipt);
        }
        out
    }
}

/// See [`Progress::origin_asks`]: a count per reason (asks, or bytes).
#[derive(Debug, Default)]
pub struct OriginAsks {
    pub gap: AtomicU64,
    pub race: AtomicU64,
    pub retry: AtomicU64,
}

/// Why a chunk was asked of the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Gap,
    Race,
    Retry,
}

impl OriginAsks {
    fn of(&self, why: Why) -> &AtomicU64 {
        match why {
            Why::Gap => &self.gap,
            Why::Race => &self.race,
            Why::Retry => &self.retry,
        }
    }

    /// The three counts: gap, race, retry.
    pub fn get(&self) -> [u64; 3] {
        [&self.gap, &self.race, &self.retry].map(|a| a.load(Ordering::Relaxed))
    }
}

/// See [`Progress::peer_failures`]: failed cache answers, by kind.
#[derive(Debug, Default)]
pub struct PeerFailures {
    /// The cache did not have the chunk (not yet warmed, or no longer placed there).
    pub missing: AtomicU64,
    /// It could not be connected to, the transfer broke, or it timed out (gone, or busy).
    pub unreachable: AtomicU64,
    /// It sent a chunk that does not verify.
    pub bad: AtomicU64,
    /// Any other failure (an answer too large, a refusal).
    pub other: AtomicU64,
}

impl PeerFailures {
    fn count(&self, e: &FetchError) {
        let counter = match e {
            FetchError::Missing { .. } => &self.missing,
            FetchError::Connect { .. }
            | FetchError::Transfer { .. }
            | FetchError::Timeout { .. } => &self.unreachable,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The four counts: missing, unreachable, bad, other.
    pub fn get(&self) -> [u64; 4] {
        [&self.missing, &self.unreachable, &self.bad, &self.other]
            .map(|a| a.load(Ordering::Relaxed))
    }
}

/// Why a segment could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("no origin ticket yet")]
    NoOrigin,
    #[error("the origin keeps failing: {0}")]
    Origin(FetchError),
    #[error("the origin sent a bad chunk: {0}")]
    OriginBad(FormatError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

struct Attempt<'a> {
    manifest: &'a Manifest,
    /// When the segment should be complete: the urgency of its requests.
    due: std::time::Instant,
    segment: u32,
    max_len: usize,
    asked: BTreeSet<u16>,
    /// Outstanding requests: index → peer.
    pending: HashMap<u16, String>,
    /// Why each index asked of the origin was asked.
    why: HashMap<u16, Why>,
    reply: mpsc::UnboundedSender<Answer>,
}

impl Attempt<'_> {
    fn ask(&mut self, source: &Source, index: u16) -> bool {
        let request = Request {
            due: self.due,
            segment: self.segment,
            index,
            max_len: self.max_len,
            reply: self.reply.clone(),
        };
        if !source.ask(request) {
            return false;
        }
        self.asked.insert(index);
        self.pending.insert(index, source.peer.clone());
        true
    }

    /// Asks one index no one was asked for of a cache other than `failed` (the least busy
    /// per unit of its rate among those holding one); false if none can.
    fn ask_another_cache(&mut self, caches: &[Arc<Source>], failed: &str) -> bool {
        let mut best: Option<(&Arc<Source>, u16, f64)> = None;
        for cache in caches.iter().filter(|c| c.peer != failed) {
            let Some(index) = cache
                .indices()
                .into_iter()
                .find(|i| !self.asked.contains(i))
            else {
                continue;
            };
            let work = cache.busy.load(Ordering::Relaxed) as f64 + 1.0;
            let score = work / (cache.rate().max(1) as f64);
            if best.is_none_or(|(_, _, b)| score < b) {
                best = Some((cache, index, score));
            }
        }
        best.is_some_and(|(cache, index, _)| self.ask(cache, index))
    }

    /// Asks the origin for `count` more indices no one was asked for: data chunks first
    /// (the origin sends those without encoding), then parity.
    fn ask_origin(&mut self, origin: &Source, count: usize, why: Why, asks: &OriginAsks) {
        let fresh: Vec<u16> = (0..self.manifest.n)
            .filter(|i| !self.asked.contains(i))
            .take(count)
            .collect();
        for index in fresh {
            if self.ask(origin, index) {
                asks.of(why).fetch_add(1, Ordering::Relaxed);
                self.why.insert(index, why);
            }
        }
    }
}

/// Fetches, verifies and rebuilds `segment`. Cache requests still unanswered after
/// `race_after` are raced against the origin.
pub async fn fetch_segment(
    sources: &Sources,
    manifest: &Manifest,
    segment: u32,
    race_after: Duration,
    progress: &Progress,
) -> Result<Vec<u8>, SegmentError> {
    let k = usize::from(manifest.k);
    let origin = sources.origin().ok_or(SegmentError::NoOrigin)?;
    let (reply, mut answers) = mpsc::unbounded_channel();
    let race_at = Instant::now() + race_after;
    let mut attempt = Attempt {
        manifest,
        due: race_at.into_std(),
        segment,
        max_len: manifest.wire_len(segment),
        asked: BTreeSet::new(),
        pending: HashMap::new(),
        why: HashMap::new(),
        reply,
    };
    plan_caches(&mut attempt, &sources.caches(), k);
    let missing = k.saturating_sub(attempt.asked.len());
    attempt.ask_origin(&origin, missing, Why::Gap, &progress.origin_asks);

    let mut got: Vec<(u16, Vec<u8>, usize)> = Vec::with_capacity(k);
    let mut raced = false;
    let mut origin_failures = 0u32;
    while got.len() < k {
        tokio::select! {
            answer = answers.recv() => {
                let Some(Answer { peer, index, result }) = answer else { break };
                attempt.pending.remove(&index);
                match result {
                    Ok(wire) => match manifest.verify_chunk(segment, index, &wire) {
                        Ok(payload) => {
                            let at = wire.len() - payload.len();
                            progress.add(&peer, segment, index, wire.len() as u64);
                            if let (true, Some(why)) = (peer == ORIGIN, attempt.why.get(&index)) {
                                progress
                                    .origin_bytes_by
                                    .of(*why)
                                    .fetch_add(wire.len() as u64, Ordering::Relaxed);
                            }
                            sources.worked(&peer);
                            got.push((index, wire, at));
                        }
                        Err(e) if peer == ORIGIN => return Err(SegmentError::OriginBad(e)),
                        Err(_) => {
                            progress.peer_failures.bad.fetch_add(1, Ordering::Relaxed);
                            sources.blame(&peer);
                            if raced || !attempt.ask_another_cache(&sources.caches(), &peer) {
                                attempt.ask_origin(&origin, 1, Why::Retry, &progress.origin_asks);
                            }
                        }
                    },
                    Err(e) => {
                        if peer == ORIGIN {
                            origin_failures += 1;
                            if origin_failures >= ORIGIN_TRIES {
                                return Err(SegmentError::Origin(e));
                            }
                        } else {
                            progress.peer_failures.count(&e);
                        }
                        if peer != ORIGIN && !matches!(e, FetchError::Missing { .. }) {
                            sources.failed(
                                &peer,
                                matches!(
                                    e,
                                    FetchError::Connect { .. }
                                        | FetchError::Transfer { .. }
                                        | FetchError::Timeout { .. }
                                ),
                            );
                        }
                        // A cache that died mid-segment: another live one holding other
                        // indices first, the origin when none can (or time is short).
                        let retried = peer != ORIGIN
                            && !raced
                            && attempt.ask_another_cache(&sources.caches(), &peer);
                        if !retried {
                            attempt.ask_origin(&origin, 1, Why::Retry, &progress.origin_asks);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(race_at), if !raced => {
                raced = true;
                let late = attempt.pending.values().filter(|p| *p != ORIGIN).count();
                attempt.ask_origin(&origin, late, Why::Race, &progress.origin_asks);
            }
        }
        // Everything answered and still short (a source's workers are gone): the origin.
        if attempt.pending.is_empty() && got.len() < k {
            attempt.ask_origin(&origin, k - got.len(), Why::Retry, &progress.origin_asks);
            if attempt.pending.is_empty() {
                return Err(SegmentError::Origin(FetchError::Missing {
                    addr: "every chunk index".into(),
                }));
            }
        }
    }
    let payloads: Vec<(u16, &[u8])> = got
        .iter()
        .take(k)
        .map(|(index, wire, at)| (*index, &wire[*at..]))
        .collect();
    Ok(manifest.rebuild_segment(&manifest.codec(), segment, &payloads)?)
}

/// Spreads up to k distinct indices over the caches: each next chunk goes to the cache with
/// the least work per unit of the rate the tracker asked of it (queued requests count), and
/// it takes the first index of its own not yet asked for.
fn plan_caches(attempt: &mut Attempt<'_>, caches: &[Arc<Source>], k: usize) {
    let mut assigned = vec![0usize; caches.len()];
    while attempt.asked.len() < k {
        let mut best: Option<(usize, u16, f64)> = None;
        for (c, cache) in caches.iter().enumerate() {
            let Some(index) = cache
                .indices()
                .into_iter()
                .find(|i| !attempt.asked.contains(i))
            else {
                continue;
            };
            let work = (assigned[c] + cache.busy.load(Ordering::Relaxed)) as f64 + 1.0;
            let score = work / (cache.rate().max(1) as f64);
            if best.is_none_or(|(_, _, b)| score < b) {
                best = Some((c, index, score));
            }
        }
        let Some((c, index, _)) = best else { break };
        if attempt.ask(&caches[c], index) {
            assigned[c] += 1;
        } else {
            // Its workers are gone; do not pick its indices again this time.
            attempt.asked.insert(index);
        }
    }
    // Indices skipped for a dead cache were never requested.
    let requested: BTreeSet<u16> = attempt.pending.keys().copied().collect();
    attempt.asked = requested;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(report: &[PeerBytes], peer: &str) -> Vec<ChunkRef> {
        report
            .iter()
            .find(|p| p.peer == peer)
            .map(|p| p.chunks.clone())
            .unwrap_or_default()
    }

    #[test]
    fn receipts_name_every_verified_chunk_per_cache_and_the_origin_carries_none() {
        let p = Progress::default();
        p.add("cache-a", 0, 1, 100);
        p.add(ORIGIN, 0, 2, 100);
        p.add("cache-b", 0, 3, 90);
        p.add("cache-a", 1, 1, 80);
        assert!(p.has_unreported());
        let report = p.take_received("m");
        assert_eq!(report.len(), 3);
        let origin = report.iter().find(|e| e.peer == ORIGIN).unwrap();
        assert_eq!((origin.bytes, origin.chunks.len()), (100, 0));
        let a = report.iter().find(|e| e.peer == "cache-a").unwrap();
        assert_eq!(a.bytes, 180);
        assert_eq!(a.chunks, vec![ChunkRef(0, 1), ChunkRef(1, 1)]);
        assert_eq!(chunks_of(&report, "cache-b"), vec![ChunkRef(0, 3)]);
        assert!(report.iter().all(|e| e.video == "m"));
        // Taken: the next report is empty; the totals stay.
        assert!(!p.has_unreported() && p.take_received("m").is_empty());
        assert_eq!(p.by_peer()["cache-a"], 180);
    }

    #[test]
    fn a_report_carries_at_most_its_bounds_and_the_rest_waits_in_order() {
        let p = Progress::default();
        // 3 caches, 4 chunks each, interleaved; reports of at most 2 caches and 5 chunks.
        for segment in 0..4 {
            for cache in ["c1", "c2", "c3"] {
                p.add(cache, segment, 7, 10);
            }
        }
        let first = p.take_received_within("m", 2, 5);
        assert_eq!(first.len(), 2);
        assert_eq!(first.iter().map(|e| e.chunks.len()).sum::<usize>(), 5);
        assert_eq!(chunks_of(&first, "c1").len(), 3);
        assert_eq!(chunks_of(&first, "c2").len(), 2);
        assert_eq!(chunks_of(&first, "c3"), vec![]);
        assert!(first.iter().all(|e| e.bytes == 10 * e.chunks.len() as u64));
        assert_eq!(p.pending_receipts(), 7);
        // c3 waited in its place: the oldest first.
        let second = p.take_received_within("m", 2, 5);
        assert_eq!(chunks_of(&second, "c3")[0], ChunkRef(0, 7));
        let mut all: Vec<(String, ChunkRef)> = Vec::new();
        for report in [first, second, p.take_received_within("m", 2, 5)] {
            for e in report {
                all.extend(e.chunks.iter().map(|c| (e.peer.clone(), *c)));
            }
        }
        // Every receipt reported exactly once.
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12);
        assert_eq!(p.pending_receipts(), 0);
        // The real bounds.
        for i in 0..(REPORT_MAX_CHUNKS as u32 + 10) {
            p.add(&format!("cache-{}", i % 2000), i, 0, 1);
        }
        let report = p.take_received("m");
        assert_eq!(report.len(), REPORT_MAX_PEERS);
        assert!(report.iter().map(|e| e.chunks.len()).sum::<usize>() <= REPORT_MAX_CHUNKS);
    }

    #[test]
    fn what_waits_is_bounded_by_dropping_the_oldest_and_counting_them() {
        let p = Progress::default();
        let extra = 25u32;
        for i in 0..PENDING_MAX_CHUNKS as u32 + extra {
            p.add("cache-a", i, 0, 1);
        }
        assert_eq!(p.pending_receipts(), PENDING_MAX_CHUNKS);
        assert_eq!(p.dropped_receipts(), u64::from(extra));
        let report = p.take_received("m");
        // The oldest went; the first left is the first after them.
        assert_eq!(report[0].chunks[0], ChunkRef(extra, 0));
        assert_eq!(report[0].chunks.len(), REPORT_MAX_CHUNKS);
        assert_eq!(report[0].bytes, REPORT_MAX_CHUNKS as u64);
        // Verified bytes still count in the totals.
        assert_eq!(
            p.from_caches_bytes.load(Ordering::Relaxed),
            u64::from(PENDING_MAX_CHUNKS as u32 + extra)
        );
    }
}
