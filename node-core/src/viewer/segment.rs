//! Fetching one segment: ask the peer set for k distinct chunk indices (caches first, each
//! in proportion to the rate the tracker asked of it and how busy it is), the origin for the
//! rest; race late cache requests against the origin; verify every chunk as it arrives,
//! blaming the sender of a bad one; decode and check the segment.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sources::{Answer, ORIGIN, Request, Source, Sources};
use crate::format::{FormatError, Manifest};
use crate::peer::ftp::FetchError;

/// Most failed origin requests for one segment before the segment gives up.
const ORIGIN_TRIES: u32 = 6;

/// Verified bytes received, in all and per peer (not yet reported).
#[derive(Debug, Default)]
pub struct Progress {
    pub from_origin_bytes: AtomicU64,
    pub from_caches_bytes: AtomicU64,
    /// Chunks asked of the origin, by why: the peers did not hold enough distinct indices
    /// (`gap`), a cache was late for the deadline (`race`), or a cache failed, lied or did
    /// not have it (`retry`).
    pub origin_asks: OriginAsks,
    unreported: std::sync::Mutex<HashMap<String, u64>>,
    totals: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Progress {
    fn add(&self, peer: &str, bytes: u64) {
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
        *self
            .unreported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(peer.to_owned())
            .or_default() += bytes;
    }

    /// Verified bytes per peer since the start.
    pub fn by_peer(&self) -> std::collections::BTreeMap<String, u64> {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Verified bytes per peer since the last call.
    pub fn take_unreported(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.unreported.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back bytes a failed heartbeat could not report.
    pub fn restore(&self, bytes: HashMap<String, u64>) {
        let mut unreported = self.unreported.lock().unwrap_or_else(|e| e.into_inner());
        for (peer, b) in bytes {
            *unreported.entry(peer).or_default() += b;
        }
    }
}

/// See [`Progress::origin_asks`].
#[derive(Debug, Default)]
pub struct OriginAsks {
    pub gap: AtomicU64,
    pub race: AtomicU64,
    pub retry: AtomicU64,
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

    /// Asks the origin for `count` more indices no one was asked for: data chunks first
    /// (the origin sends those without encoding), then parity.
    fn ask_origin(&mut self, origin: &Source, count: usize, why: &AtomicU64) {
        let fresh: Vec<u16> = (0..self.manifest.n)
            .filter(|i| !self.asked.contains(i))
            .take(count)
            .collect();
        for index in fresh {
            if self.ask(origin, index) {
                why.fetch_add(1, Ordering::Relaxed);
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
        reply,
    };
    plan_caches(&mut attempt, &sources.caches(), k);
    let missing = k.saturating_sub(attempt.asked.len());
    attempt.ask_origin(&origin, missing, &progress.origin_asks.gap);

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
                            progress.add(&peer, wire.len() as u64);
                            sources.worked(&peer);
                            got.push((index, wire, at));
                        }
                        Err(e) if peer == ORIGIN => return Err(SegmentError::OriginBad(e)),
                        Err(_) => {
                            sources.blame(&peer);
                            attempt.ask_origin(&origin, 1, &progress.origin_asks.retry);
                        }
                    },
                    Err(e) => {
                        if peer == ORIGIN {
                            origin_failures += 1;
                            if origin_failures >= ORIGIN_TRIES {
                                return Err(SegmentError::Origin(e));
                            }
                        } else if !matches!(e, FetchError::Missing { .. }) {
                            sources.failed(&peer);
                        }
                        attempt.ask_origin(&origin, 1, &progress.origin_asks.retry);
                    }
                }
            }
            _ = tokio::time::sleep_until(race_at), if !raced => {
                raced = true;
                let late = attempt.pending.values().filter(|p| *p != ORIGIN).count();
                attempt.ask_origin(&origin, late, &progress.origin_asks.race);
            }
        }
        // Everything answered and still short (a source's workers are gone): the origin.
        if attempt.pending.is_empty() && got.len() < k {
            attempt.ask_origin(&origin, k - got.len(), &progress.origin_asks.retry);
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
