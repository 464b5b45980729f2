//! Where the tracker keeps its files, all paths in one place:
//!
//! ```text
//! DATA/videos/<id>/      one committed movie (see `catalogue`)
//! DATA/staging/<name>/   an ingest in progress; <name>.lock is held while it runs
//! ```
//!
//! A movie appears in `videos/` only by one atomic rename of a finished staging directory,
//! so a reader never sees half a movie. Staging left by a killed ingest is swept by the
//! next command that opens the data dir.

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Problems with the data directory itself.
#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data dir {path} is not writable: {source}")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data dir {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The tracker's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The default location: the platform's data directory for Rivulet's tracker
    /// (`~/.local/share/rivulet-tracker` on Linux), `$RIVULET_HOME/tracker` when that is set,
    /// or `./rivulet-data` without a home ([`rivulet_node_core::paths::tracker_dir`]).
    pub fn default_path() -> PathBuf {
        rivulet_node_core::paths::tracker_dir()
    }

    /// Opens `root` for reading; nothing is created. A missing directory reads as empty.
    pub fn open(root: impl Into<PathBuf>) -> DataDir {
        let dir = DataDir { root: root.into() };
        dir.sweep_staging();
        dir
    }

    /// Opens `root` for writing, creating it and its subdirectories as needed.
    pub fn create(root: impl Into<PathBuf>) -> Result<DataDir, DataDirError> {
        let dir = DataDir { root: root.into() };
        for sub in [dir.videos_dir(), dir.staging_dir()] {
            fs::create_dir_all(&sub).map_err(|source| DataDirError::NotWritable {
                path: dir.root.clone(),
                source,
            })?;
        }
        dir.sweep_staging();
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn videos_dir(&self) -> PathBuf {
        self.root.join("videos")
    }

    pub fn video_dir(&self, id: &str) -> PathBuf {
        self.videos_dir().join(id)
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Starts a staging area: takes `<name>.lock`, then makes `<name>/`. The area is removed
    /// when the returned guard drops, unless it was committed.
    pub fn begin_staging(&self, name: &str) -> Result<Staging, DataDirError> {
        let not_writable = |source| DataDirError::NotWritable {
            path: self.root.clone(),
            source,
        };
        let dir = self.staging_dir().join(name);
        let lock_path = lock_path_of(&dir);
        // A sweep in another process can take the new lock file between its creation and
        // our lock and remove it; then the lock protects nothing, so start again.
        for _ in 0..8 {
            let lock = File::create(&lock_path).map_err(not_writable)?;
            lock.lock().map_err(not_writable)?;
            let held = lock.metadata().map_err(not_writable)?;
            let still_ours = fs::metadata(&lock_path)
                .is_ok_and(|m| m.dev() == held.dev() && m.ino() == held.ino());
            if !still_ours {
                continue;
            }
            fs::create_dir(&dir).map_err(not_writable)?;
            return Ok(Staging {
                dir,
                lock_path,
                _lock: lock,
                committed: false,
            });
        }
        Err(not_writable(io::Error::other(
            "another process keeps removing the staging lock",
        )))
    }

    /// Removes staging areas whose ingest is gone (its lock is free). Best effort: a sweep
    /// that fails leaves the area for the next one.
    pub fn sweep_staging(&self) {
        let Ok(entries) = fs::read_dir(self.staging_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(dir) = path.to_str().and_then(|p| p.strip_suffix(".lock")) {
                let dir = PathBuf::from(dir);
                let Ok(lock) = File::open(&path) else {
                    continue;
                };
                match lock.try_lock() {
                    Ok(()) => {
                        let _ = fs::remove_dir_all(&dir);
                        let _ = fs::remove_file(&path);
                    }
                    Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {}
                }
            } else if path.is_dir() && !lock_path_of(&path).exists() {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
}

/// `<dir>.lock` beside a staging directory (names may contain dots, so not an extension).
fn lock_path_of(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A staging directory owned by this process; removed on drop unless committed.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    committed: bool,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The lock file that marks this area as in use.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Removes the staging area now (also what drop does).
    pub fn discard(&self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }

    /// Moves the finished area to `target` in one atomic step that fails if `target` exists.
    pub fn commit(mut self, target: &Path) -> io::Result<()> {
        rename_noreplace(&self.dir, target)?;
        self.committed = true;
        // The rename is the commit; flushing the directory only makes it survive a power cut
        // sooner, so a failure here must not report the ingest as failed.
        if let Some(parent) = target.parent() {
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            let _ = fs::remove_file(&self.lock_path);
        } else {
            self.discard();
        }
    }
}

/// `rename(2)` that refuses to replace an existing target (Linux `RENAME_NOREPLACE`).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
