//! The order a warming cache fetches in: the segments just ahead of where viewers are asking
//! it first (they will ask for those next, and a chunk it lacks sends them elsewhere, mostly
//! to the origin), then the rest from the start of each movie.
//!
//! A cache is handed to viewers for the indices it was told to hold while it still warms;
//! fetching segment 0 onward leaves a viewer in mid-movie asking for segments the cache
//! reaches only minutes later. What it records is only which segments ticketed nodes asked
//! for, per movie it is placed with, a few per movie, for [`ASK_MEMORY`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an ask says where a viewer is.
pub const ASK_MEMORY: Duration = Duration::from_secs(30);
/// How many segments past an ask count as soon needed.
pub const AHEAD: u32 = 30;
/// Most asks remembered per movie (the most recent positions).
const ASKS_PER_MOVIE: usize = 32;
/// Most movies asks are remembered for (a cache is placed with a few dozen at most).
const MAX_MOVIES: usize = 256;

/// Where viewers last asked, per movie.
#[derive(Debug, Default)]
pub struct RecentAsks {
    by_movie: Mutex<HashMap<String, VecDeque<(u32, Instant)>>>,
    /// Bumped when an ask names a position not remembered yet: the fetch order is stale.
    generation: AtomicU64,
    /// Asks for a chunk not there yet: placed here and still warming, or not placed here
    /// (never, or no longer).
    missed_warming: AtomicU64,
    missed_unplaced: AtomicU64,
}

impl RecentAsks {
    /// Records that a node asked for `segment` of `video` at `now`. The caller records only
    /// movies the cache is placed with.
    pub fn record(&self, video: &str, segment: u32, now: Instant) {
        let mut by_movie = self.by_movie.lock().unwrap_or_else(|e| e.into_inner());
        if !by_movie.contains_key(video) {
            if by_movie.len() >= MAX_MOVIES {
                by_movie.retain(|_, asks| {
                    asks.back()
                        .is_some_and(|(_, at)| now.duration_since(*at) < ASK_MEMORY)
                });
                if by_movie.len() >= MAX_MOVIES {
                    return;
                }
            }
            by_movie.insert(video.to_owned(), VecDeque::new());
        }
        let Some(asks) = by_movie.get_mut(video) else {
            return;
        };
        if let Some(known) = asks.iter().position(|(s, _)| *s == segment) {
            asks.remove(known);
        } else {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        asks.push_back((segment, now));
        while asks.len() > ASKS_PER_MOVIE {
            asks.pop_front();
        }
    }

    /// Counts an ask for a chunk not there: `placed` if the cache is to hold it.
    pub fn missed(&self, placed: bool) {
        let counter = if placed {
            &self.missed_warming
        } else {
            &self.missed_unplaced
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks missed so far: (placed and warming, not placed here).
    pub fn misses(&self) -> (u64, u64) {
        (
            self.missed_warming.load(Ordering::Relaxed),
            self.missed_unplaced.load(Ordering::Relaxed),
        )
    }

    /// Changes whenever a new position was asked for.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The segments asked for within [`ASK_MEMORY`] of `now`, per movie.
    pub fn recent(&self, now: Instant) -> HashMap<String, Vec<u32>> {
        let mut by_movie = self.by_movie.lock().unwrap_or_else(|e| e.into_inner());
        by_movie.retain(|_, asks| {
            asks.retain(|(_, at)| now.saturating_duration_since(*at) < ASK_MEMORY);
            !asks.is_empty()
        });
        by_movie
            .iter()
            .map(|(video, asks)| (video.clone(), asks.iter().map(|(s, _)| *s).collect()))
            .collect()
    }
}

/// How soon segment `segment` of a movie is needed, given the segments just asked for:
/// its distance past the nearest ask at or before it, when within [`AHEAD`].
fn soon(segment: u32, asked: &[u32]) -> Option<u32> {
    asked
        .iter()
        .filter_map(|a| segment.checked_sub(*a))
        .filter(|d| *d <= AHEAD)
        .min()
}

/// Puts the groups (movie, segment) → indices soonest needed first, by distance past an ask
/// (ties and the rest keep their order: segment by segment from the start).
pub fn order<T>(groups: &mut [((String, u32), T)], asked: &HashMap<String, Vec<u32>>) {
    if asked.is_empty() {
        return;
    }
    groups.sort_by_key(|((video, segment), _)| {
        asked
            .get(video)
            .and_then(|a| soon(*segment, a))
            .unwrap_or(u32::MAX)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(list: &[(&str, u32)]) -> Vec<((String, u32), ())> {
        list.iter()
            .map(|(v, s)| ((v.to_string(), *s), ()))
            .collect()
    }

    fn names(groups: &[((String, u32), ())]) -> Vec<(String, u32)> {
        groups.iter().map(|(g, _)| g.clone()).collect()
    }

    #[test]
    fn the_segments_just_past_an_ask_come_first_nearest_first() {
        let asks = RecentAsks::default();
        let now = Instant::now();
        asks.record("b", 40, now);
        let mut list = groups(&[
            ("a", 0),
            ("b", 0),
            ("a", 1),
            ("b", 1),
            ("b", 41),
            ("b", 40),
            ("b", 90),
        ]);
        list.sort_by_key(|((v, s), _)| (*s, v.clone()));
        order(&mut list, &asks.recent(now));
        let got = names(&list);
        assert_eq!(got[0], ("b".to_owned(), 40));
        assert_eq!(got[1], ("b".to_owned(), 41));
        // The rest keep segment-by-segment order; 90 is past AHEAD of 40.
        assert_eq!(
            got[2..],
            [
                ("a".to_owned(), 0),
                ("b".to_owned(), 0),
                ("a".to_owned(), 1),
                ("b".to_owned(), 1),
                ("b".to_owned(), 90)
            ]
        );
    }

    #[test]
    fn old_asks_are_forgotten_and_new_positions_bump_the_generation() {
        let asks = RecentAsks::default();
        let t0 = Instant::now();
        asks.record("a", 10, t0);
        let g = asks.generation();
        asks.record("a", 10, t0);
        assert_eq!(asks.generation(), g, "the same position again is not news");
        asks.record("a", 11, t0);
        assert_ne!(asks.generation(), g);
        assert_eq!(asks.recent(t0)["a"], vec![10, 11]);
        assert!(asks.recent(t0 + ASK_MEMORY).is_empty());
    }

    #[test]
    fn a_flood_of_asks_stays_bounded() {
        let asks = RecentAsks::default();
        let now = Instant::now();
        for m in 0..(MAX_MOVIES as u32 * 2) {
            for s in 0..100 {
                asks.record(&format!("m{m}"), s, now);
            }
        }
        let recent = asks.recent(now);
        assert_eq!(recent.len(), MAX_MOVIES);
        assert!(recent.values().all(|a| a.len() == ASKS_PER_MOVIE));
    }
}
