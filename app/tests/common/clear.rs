//! What an attacker with the app's user account finds of a movie: files that start with
//! Matroska's magic, or hold any piece of the movie's bytes in clear — under the app's
//! folders, or behind the files the process has open (through /proc, even when unlinked).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The first bytes of every Matroska (and WebM) file.
pub const MATROSKA_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// How far apart the pieces looked for are taken, and how long each is.
const EVERY: usize = 16 * 1024;
const PIECE: usize = 32;

/// 32-byte pieces of a movie, at most one every 16 KiB (those with some variety: padding
/// says nothing), indexed by their first 8 bytes.
pub struct Pieces(HashMap<[u8; 8], Vec<[u8; PIECE]>>);

impl Pieces {
    /// The pieces of `movie` (a Matroska file); checks that they find the movie itself.
    pub fn of(movie: &[u8]) -> Pieces {
        assert!(movie.starts_with(&MATROSKA_MAGIC), "not a Matroska file");
        let mut pieces: HashMap<[u8; 8], Vec<[u8; PIECE]>> = HashMap::new();
        for at in (64..movie.len().saturating_sub(PIECE)).step_by(EVERY) {
            let piece: [u8; PIECE] = movie[at..at + PIECE].try_into().unwrap();
            if piece.iter().collect::<HashSet<_>>().len() >= 12 {
                let key = piece[..8].try_into().unwrap();
                pieces.entry(key).or_default().push(piece);
            }
        }
        let pieces = Pieces(pieces);
        assert!(pieces.count() > 20, "too few pieces to look for");
        assert!(
            pieces.found_in(&movie[5000..]).is_some(),
            "the check does not find the movie where it is in clear"
        );
        pieces
    }

    /// How many pieces there are.
    pub fn count(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    /// Where `bytes` holds the first piece of the movie, if it holds one.
    pub fn found_in(&self, bytes: &[u8]) -> Option<usize> {
        (0..bytes.len().saturating_sub(PIECE)).find(|&i| {
            let key: [u8; 8] = bytes[i..i + 8].try_into().unwrap();
            self.0
                .get(&key)
                .is_some_and(|ps| ps.iter().any(|p| bytes[i..i + PIECE] == *p))
        })
    }
}

/// What in `files` is playable or holds the movie in clear, said for the failure.
pub fn in_clear(files: &[PathBuf], pieces: &Pieces) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        if bytes.starts_with(&MATROSKA_MAGIC) {
            found.push(format!("{} starts with the Matroska magic", f.display()));
        } else if let Some(at) = pieces.found_in(&bytes) {
            found.push(format!(
                "{} holds the movie's bytes in clear at {at}",
                f.display()
            ));
        }
    }
    found
}

/// The regular files the process `pid` has open (`/proc/PID/fd/N`, readable even when
/// unlinked).
pub fn open_files(pid: u32) -> Vec<PathBuf> {
    open_files_except(pid, &[])
}

/// [`open_files`] but those opened under `except`.
pub fn open_files_except(pid: u32, except: &[PathBuf]) -> Vec<PathBuf> {
    let fds = PathBuf::from(format!("/proc/{pid}/fd"));
    std::fs::read_dir(&fds)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|fd| std::fs::metadata(fd).is_ok_and(|m| m.is_file()))
        .filter(|fd| {
            std::fs::read_link(fd).map_or(true, |to| !except.iter().any(|e| to.starts_with(e)))
        })
        .collect()
}

/// Every regular file under `dir`, however deep, but those under `except`.
pub fn files_under_except(dir: &Path, except: &[PathBuf]) -> Vec<PathBuf> {
    super::real_app::files_under(dir)
        .into_iter()
        .filter(|f| !except.iter().any(|e| f.starts_with(e)))
        .collect()
}
