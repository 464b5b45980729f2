//! Where each movie was left, per tracker, account and movie: recorded when the player
//! closes, read when it opens again (mpv starts there), and listed newest first as the
//! catalogue's "continue watching" row. Kept in `positions.json` beside the settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Places kept at most (the oldest go first).
pub const KEEP: usize = 200;
/// Left before this: the movie starts from the beginning next time.
pub const MIN_SECS: f64 = 5.0;
/// Left within this of the end (or within the last twentieth of a short movie): watched to
/// the end, so it starts over next time.
pub const END_SECS: f64 = 15.0;

/// Where one movie was left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spot {
    pub tracker: String,
    pub user: String,
    pub video: String,
    pub title: String,
    /// Seconds from the start.
    pub secs: f64,
    /// The movie's length in seconds (0 when unknown).
    pub duration: f64,
    /// When it was left, Unix milliseconds.
    pub at_ms: u64,
}

/// Every place kept, newest first.
#[derive(Debug)]
pub struct Positions {
    path: PathBuf,
    spots: Vec<Spot>,
}

impl Positions {
    /// The places in `path`; none when it is missing or unreadable (a broken file is
    /// replaced at the next save).
    pub fn load(path: &Path) -> Positions {
        let spots: Vec<Spot> = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Positions {
            path: path.to_owned(),
            spots: spots
                .into_iter()
                .filter(|s| s.secs.is_finite() && s.duration.is_finite())
                .take(KEEP)
                .collect(),
        }
    }

    /// Where `video` was left by `user` of `tracker`, if it is worth resuming.
    pub fn resume_at(&self, tracker: &str, user: &str, video: &str) -> Option<f64> {
        self.spots
            .iter()
            .find(|s| s.tracker == tracker && s.user == user && s.video == video)
            .map(|s| s.secs)
    }

    /// Notes that `user` of `tracker` left `video` at `secs`: kept when it is worth resuming
    /// (not at the very start, not at the end), forgotten otherwise.
    pub fn record(&mut self, spot: Spot) {
        self.spots.retain(|s| {
            !(s.tracker == spot.tracker && s.user == spot.user && s.video == spot.video)
        });
        let finished =
            spot.duration > 0.0 && spot.secs >= spot.duration - END_SECS.min(spot.duration / 20.0);
        if spot.secs.is_finite() && spot.secs >= MIN_SECS && !finished {
            self.spots.insert(0, spot);
            self.spots.truncate(KEEP);
        }
    }

    /// `user`'s places on `tracker`, newest first.
    pub fn recent<'a>(&'a self, tracker: &'a str, user: &'a str) -> impl Iterator<Item = &'a Spot> {
        self.spots
            .iter()
            .filter(move |s| s.tracker == tracker && s.user == user)
    }

    /// Writes the places (a temporary file renamed over the old one).
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.spots)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spot(user: &str, video: &str, secs: f64) -> Spot {
        Spot {
            tracker: "http://t".into(),
            user: user.into(),
            video: video.into(),
            title: video.to_uppercase(),
            secs,
            duration: 600.0,
            at_ms: 1,
        }
    }

    #[test]
    fn places_are_kept_per_account_and_movie_newest_first_and_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let mut p = Positions::load(&path);
        p.record(spot("ann", "a", 42.0));
        p.record(spot("ann", "b", 100.0));
        p.record(spot("bob", "a", 300.0));
        p.record(spot("ann", "a", 50.0));
        p.save().unwrap();
        let p = Positions::load(&path);
        assert_eq!(p.resume_at("http://t", "ann", "a"), Some(50.0));
        assert_eq!(p.resume_at("http://t", "bob", "a"), Some(300.0));
        assert_eq!(p.resume_at("http://other", "ann", "a"), None);
        let recent: Vec<&str> = p
            .recent("http://t", "ann")
            .map(|s| s.video.as_str())
            .collect();
        assert_eq!(recent, ["a", "b"]);
        assert!(!dir.path().join("positions.json.tmp").exists());
    }

    #[test]
    fn the_very_start_and_the_end_are_not_kept_and_the_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Positions::load(&dir.path().join("positions.json"));
        p.record(spot("ann", "a", 200.0));
        p.record(spot("ann", "a", 590.0));
        assert_eq!(
            p.resume_at("http://t", "ann", "a"),
            None,
            "watched to the end"
        );
        p.record(spot("ann", "b", 2.0));
        assert_eq!(p.resume_at("http://t", "ann", "b"), None, "barely started");
        p.record(spot("ann", "c", f64::NAN));
        assert_eq!(p.resume_at("http://t", "ann", "c"), None);
        for i in 0..KEEP + 10 {
            p.record(spot("ann", &format!("m{i}"), 60.0));
        }
        assert_eq!(p.recent("http://t", "ann").count(), KEEP);
        assert_eq!(
            p.resume_at("http://t", "ann", "m0"),
            None,
            "the oldest went"
        );
    }

    #[test]
    fn a_broken_file_gives_no_places() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Positions::load(&path).recent("http://t", "ann").count(), 0);
    }
}
