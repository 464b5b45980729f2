//! The ledger: decides how many of the bytes a viewer reports receiving from a cache count
//! toward that cache's points. Only receipts count — the chunks (segment, index) the viewer
//! verified — and only when the tracker itself can vouch for the transfer: two live nodes of
//! different accounts, a viewer that owns and watches the movie, a cache the tracker gave it
//! (or placed with the movie), each chunk once per watch (an account's viewing of a movie, until it pauses for 15
//! minutes) and at most k per segment, within
//! what the cache's upload could carry since it was last credited. Sequence numbers make a
//! heartbeat sent again after a lost reply count once. See `docs/trust.md`.
//!
//! The ledger lives in the heartbeat writer's task (one owner, no lock); it is memory only,
//! like the node registry it follows (a restart forgets every node).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rivulet_node_core::format::Manifest;
use rivulet_tracker_client::ChunkRef;

/// The highest upload a node may declare: 10 Gbit/s.
pub const MAX_UPLOAD_BPS: u64 = 10_000_000_000;
/// The largest storage a node may declare: 64 TiB.
pub const MAX_STORAGE_BYTES: u64 = 64 << 40;
/// How many seconds of a cache's upload may be credited at once (heartbeats are late,
/// batches bunch up).
const BURST_SECS: f64 = 20.0;
/// Slack over the declared upload (rounding, bursts of the token bucket on the wire).
const UPLOAD_SLACK: f64 = 1.25;
/// Most receipts one peer entry may carry.
pub const MAX_RECEIPTS: usize = 8192;
/// Nodes and watches silent this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// A cache as the ledger needs it: who owns it and what it may upload.
#[derive(Clone, Copy, Debug)]
pub struct Sender {
    pub account_id: i64,
    pub upload_bps: u64,
}

/// One viewer's watch of one movie: the chunks it has been credited for.
#[derive(Debug, Default)]
struct Watch {
    chunks: HashSet<ChunkRef>,
    per_segment: HashMap<u32, u16>,
    seen: Option<Instant>,
}

/// A cache's credit allowance: a token bucket filled at its upload rate.
#[derive(Clone, Copy, Debug)]
struct Allowance {
    bytes: f64,
    at: Instant,
}

/// Why a receipt entry earned nothing (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    SameNode,
    SameAccount,
    NotWatching,
    NotGiven,
}

/// Whether receipts come from a viewer watching or a cache warming from another cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Viewing,
    Warming,
}

/// What the tracker remembers to judge receipts.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Node → (highest sequence number counted, last seen).
    seq: HashMap<String, (u64, Instant)>,
    /// Viewer → the owned movie it watched at its previous heartbeat.
    watching: HashMap<String, String>,
    /// (Viewer account, movie) → its watch: a viewer that registers again (or a second
    /// viewer of the same account) continues the same watch until it has been silent for
    /// [`FORGET_AFTER`].
    /// A cache's warming from other caches is its account's own "watch" of the movie,
    /// apart from its viewing ([`Role`]).
    watches: HashMap<(i64, String, Role), Watch>,
    allowances: HashMap<String, Allowance>,
    /// While a batch's transaction runs: how to undo what it changed, should the database
    /// abort it (see [`Ledger::begin`]).
    journal: Option<Vec<Undo>>,
}

/// One change to the ledger, as it is undone.
#[derive(Debug)]
enum Undo {
    Seq(String, Option<(u64, Instant)>),
    Watching(String, Option<String>),
    Allowance(String, Option<Allowance>),
    Chunk((i64, String, Role), ChunkRef),
}

impl Ledger {
    /// Starts keeping what changes, so that [`Ledger::rollback`] can undo it: a batch whose
    /// transaction the database aborts (a deadlock between two trackers) is tried again as
    /// if it had never been judged.
    pub fn begin(&mut self) {
        self.journal = Some(Vec::new());
    }

    /// Keeps what changed since [`Ledger::begin`].
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes what changed since [`Ledger::begin`], newest first.
    pub fn rollback(&mut self) {
        for undo in self.journal.take().unwrap_or_default().into_iter().rev() {
            match undo {
                Undo::Seq(node, Some(was)) => drop(self.seq.insert(node, was)),
                Undo::Seq(node, None) => drop(self.seq.remove(&node)),
                Undo::Watching(node, Some(was)) => drop(self.watching.insert(node, was)),
                Undo::Watching(node, None) => drop(self.watching.remove(&node)),
                Undo::Allowance(cache, Some(was)) => drop(self.allowances.insert(cache, was)),
                Undo::Allowance(cache, None) => drop(self.allowances.remove(&cache)),
                Undo::Chunk(key, chunk) => {
                    if let Some(watch) = self.watches.get_mut(&key) {
                        watch.chunks.remove(&chunk);
                        if let Some(count) = watch.per_segment.get_mut(&chunk.0) {
                            *count = count.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }

    fn journal(&mut self, undo: impl FnOnce() -> Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo());
        }
    }

    /// Whether heartbeat `seq` of `node` is new: its bytes count. 0 never counts; a number
    /// at or below the highest counted is a heartbeat sent again.
    pub fn fresh(&mut self, node: &str, seq: u64, now: Instant) -> bool {
        let was = self.seq.get(node).copied();
        self.journal(|| Undo::Seq(node.to_owned(), was));
        let entry = self.seq.entry(node.to_owned()).or_insert((0, now));
        entry.1 = now;
        if seq == 0 || seq <= entry.0 {
            return false;
        }
        entry.0 = seq;
        true
    }

    /// Records what viewer `node` watches now (an owned movie, or none) and returns what it
    /// watched at its previous heartbeat.
    pub fn watch(&mut self, node: &str, now_watching: Option<&str>) -> Option<String> {
        let was = match now_watching {
            Some(v) => self.watching.insert(node.to_owned(), v.to_owned()),
            None => self.watching.remove(node),
        };
        let undo = was.clone();
        self.journal(|| Undo::Watching(node.to_owned(), undo));
        was
    }

    /// Checks the pair, then counts the receipts `chunks` of `video` that viewer `viewer`
    /// (of `viewer_account`) got from cache `cache`; returns the bytes credited. `watched`
    /// says whether the viewer owns `video` and watched it now or at its previous heartbeat;
    /// `given` whether the tracker gave it this cache for `video` or placed the cache with it.
    #[allow(clippy::too_many_arguments)]
    pub fn confirm(
        &mut self,
        viewer: &str,
        viewer_account: i64,
        cache: &str,
        sender: Sender,
        video: &str,
        manifest: &Manifest,
        chunks: &[ChunkRef],
        watched: bool,
        given: bool,
        now: Instant,
    ) -> Result<u64, Refusal> {
        let role = Role::Viewing;
        self.confirm_as(
            role,
            (viewer, viewer_account),
            (cache, sender),
            video,
            manifest,
            chunks,
            (watched, given),
            now,
        )
    }

    /// [`Ledger::confirm`] in `role`: for [`Role::Warming`], `viewer` is a cache warming from
    /// cache `cache`, and `given` says whether the tracker told it to fetch these chunks
    /// there (the caller keeps only chunks of indices placed with it and named for that
    /// source).
    #[allow(clippy::too_many_arguments)]
    pub fn confirm_as(
        &mut self,
        role: Role,
        (viewer, viewer_account): (&str, i64),
        (cache, sender): (&str, Sender),
        video: &str,
        manifest: &Manifest,
        chunks: &[ChunkRef],
        (watched, given): (bool, bool),
        now: Instant,
    ) -> Result<u64, Refusal> {
        if viewer == cache {
            return Err(Refusal::SameNode);
        }
        if viewer_account == sender.account_id {
            return Err(Refusal::SameAccount);
        }
        if !watched {
            return Err(Refusal::NotWatching);
        }
        if !given {
            return Err(Refusal::NotGiven);
        }
        let rate = sender.upload_bps.min(MAX_UPLOAD_BPS) as f64 / 8.0 * UPLOAD_SLACK;
        let burst = rate * BURST_SECS;
        let was = self.allowances.get(cache).copied();
        self.journal(|| Undo::Allowance(cache.to_owned(), was));
        let key = (viewer_account, video.to_owned(), role);
        let journal = &mut self.journal;
        let allowance = self
            .allowances
            .entry(cache.to_owned())
            .or_insert(Allowance {
                bytes: burst,
                at: now,
            });
        let elapsed = now.saturating_duration_since(allowance.at).as_secs_f64();
        allowance.bytes = (allowance.bytes + rate * elapsed).min(burst);
        allowance.at = now;
        let watch = self.watches.entry(key.clone()).or_default();
        watch.seen = Some(now);
        let mut credited = 0u64;
        for &chunk in chunks.iter().take(MAX_RECEIPTS) {
            let ChunkRef(segment, index) = chunk;
            if segment >= manifest.segment_count() || index >= manifest.n {
                continue;
            }
            let len = manifest.chunk_len(segment) as u64;
            let count = watch.per_segment.get(&segment).copied().unwrap_or(0);
            if count >= manifest.k || watch.chunks.contains(&chunk) || allowance.bytes < len as f64
            {
                continue;
            }
            watch.chunks.insert(chunk);
            watch.per_segment.insert(segment, count + 1);
            if let Some(journal) = journal {
                journal.push(Undo::Chunk(key.clone(), chunk));
            }
            allowance.bytes -= len as f64;
            credited += len;
        }
        Ok(credited)
    }

    /// Forgets nodes and watches silent for a while.
    pub fn sweep(&mut self, now: Instant) {
        let old = |at: Instant| now.saturating_duration_since(at) > FORGET_AFTER;
        self.seq.retain(|_, (_, at)| !old(*at));
        let seq = &self.seq;
        self.watching.retain(|node, _| seq.contains_key(node));
        self.allowances.retain(|node, _| seq.contains_key(node));
        self.watches
            .retain(|_, w| w.seen.is_some_and(|at| !old(at)));
    }

    /// How many chunks this ledger has credited to account `viewer_account`'s watch of
    /// `video`.
    #[cfg(test)]
    fn credited_chunks(&self, viewer_account: i64, video: &str) -> usize {
        self.watches
            .get(&(viewer_account, video.to_owned(), Role::Viewing))
            .map_or(0, |w| w.chunks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_node_core::format::SegmentHashes;

    fn manifest(segments: u32, k: u16, n: u16) -> Manifest {
        Manifest {
            version: 1,
            file_size: u64::from(segments) << 20,
            segment_size: 1 << 20,
            k,
            n,
            blake3: Default::default(),
            segments: (0..segments)
                .map(|_| SegmentHashes {
                    root: Default::default(),
                    blake3: Default::default(),
                })
                .collect(),
        }
    }

    fn sender(account_id: i64, upload_bps: u64) -> Sender {
        Sender {
            account_id,
            upload_bps,
        }
    }

    #[test]
    fn a_chunk_counts_once_per_watch_and_k_per_segment() {
        let m = manifest(2, 4, 8);
        let mut l = Ledger::default();
        let now = Instant::now();
        let chunks: Vec<ChunkRef> = (0..8).map(|i| ChunkRef(0, i)).collect();
        let c = l
            .confirm(
                "v",
                1,
                "c",
                sender(2, 1 << 30),
                "m",
                &m,
                &chunks,
                true,
                true,
                now,
            )
            .unwrap();
        assert_eq!(
            c,
            4 * m.chunk_len(0) as u64,
            "at most k chunks of a segment"
        );
        let again = l
            .confirm(
                "v",
                1,
                "c",
                sender(2, 1 << 30),
                "m",
                &m,
                &chunks,
                true,
                true,
                now,
            )
            .unwrap();
        assert_eq!(again, 0, "a receipt sent again earns nothing");
        assert_eq!(l.credited_chunks(1, "m"), 4);
    }

    #[test]
    fn a_batch_rolled_back_is_judged_again_as_if_it_never_ran() {
        let m = manifest(2, 4, 8);
        let mut l = Ledger::default();
        let now = Instant::now();
        let chunks: Vec<ChunkRef> = (0..4).map(|i| ChunkRef(0, i)).collect();
        // A small upload cap: the allowance runs out, and must come back on rollback.
        let s = sender(2, 8 * 3 * m.chunk_len(0) as u64 / 25);
        let judge = |l: &mut Ledger| {
            let fresh = l.fresh("v", 1, now);
            let before = l.watch("v", Some("m"));
            let credited = l
                .confirm("v", 1, "c", s, "m", &m, &chunks, true, true, now)
                .unwrap();
            (fresh, before, credited)
        };
        l.begin();
        let first = judge(&mut l);
        assert!(first.0 && first.2 > 0, "{first:?}");
        l.rollback();
        l.begin();
        assert_eq!(judge(&mut l), first, "the same judgement again");
        l.commit();
        assert_eq!(
            l.credited_chunks(1, "m") as u64 * m.chunk_len(0) as u64,
            first.2
        );
        assert!(!l.fresh("v", 1, now), "once committed, seq 1 is counted");
    }

    #[test]
    fn pairs_the_tracker_cannot_vouch_for_earn_nothing() {
        let m = manifest(1, 4, 8);
        let mut l = Ledger::default();
        let now = Instant::now();
        let ch = [ChunkRef(0, 0)];
        let s = sender(2, 1 << 30);
        assert_eq!(
            l.confirm("v", 1, "v", s, "m", &m, &ch, true, true, now),
            Err(Refusal::SameNode)
        );
        assert_eq!(
            l.confirm("v", 2, "c", s, "m", &m, &ch, true, true, now),
            Err(Refusal::SameAccount)
        );
        assert_eq!(
            l.confirm("v", 1, "c", s, "m", &m, &ch, false, true, now),
            Err(Refusal::NotWatching)
        );
        assert_eq!(
            l.confirm("v", 1, "c", s, "m", &m, &ch, true, false, now),
            Err(Refusal::NotGiven)
        );
    }

    #[test]
    fn credit_fits_what_the_upload_could_carry() {
        let m = manifest(100, 4, 8);
        let mut l = Ledger::default();
        let t0 = Instant::now();
        // 1 Mbit/s: 125 kB/s × 1.25 × 20 s burst ≈ 3.1 MB at once.
        let s = sender(2, 1_000_000);
        let all: Vec<ChunkRef> = (0..100)
            .flat_map(|seg| (0..4).map(move |i| ChunkRef(seg, i)))
            .collect();
        let first = l
            .confirm("v", 1, "c", s, "m", &m, &all, true, true, t0)
            .unwrap();
        assert!(first <= 3_125_000, "{first}");
        assert!(first >= 3_125_000 - m.chunk_len(0) as u64, "{first}");
        let later = l
            .confirm(
                "v",
                1,
                "c",
                s,
                "m",
                &m,
                &all,
                true,
                true,
                t0 + Duration::from_secs(8),
            )
            .unwrap();
        assert!(later <= 1_250_000 + m.chunk_len(0) as u64, "{later}");
        assert!(later > 0);
    }

    #[test]
    fn a_heartbeat_counts_once() {
        let mut l = Ledger::default();
        let now = Instant::now();
        assert!(!l.fresh("n", 0, now));
        assert!(l.fresh("n", 1, now));
        assert!(!l.fresh("n", 1, now), "the same report sent again");
        assert!(l.fresh("n", 2, now));
        assert!(!l.fresh("n", 1, now));
    }
}
