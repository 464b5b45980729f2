//! One process per cache folder: an exclusive lock (flock) on a file in the folder, held for
//! as long as a cache runs on it, so two Rivulets never run two caches on one store. The
//! kernel drops the lock when its holder exits, crashed or not.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file's name inside the cache folder.
pub const LOCK_FILE: &str = ".rivulet-cache.lock";

/// Why a cache folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum FolderLockError {
    /// Another process holds the folder.
    #[error("another Rivulet is using the cache folder {0}")]
    InUse(PathBuf),
    /// The folder or its lock file cannot be made or locked.
    #[error("cannot lock the cache folder {path}: {source}")]
    Io {
        /// The cache folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// A held lock on a cache folder; dropping it lets another process use the folder.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    dir: PathBuf,
}

impl FolderLock {
    /// Creates `dir` if needed and locks it, without waiting: fails at once with
    /// [`FolderLockError::InUse`] when another process holds it.
    pub fn acquire(dir: &Path) -> Result<FolderLock, FolderLockError> {
        let io = |source| FolderLockError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(FolderLock {
                _file: file,
                dir: dir.to_owned(),
            }),
            Err(TryLockError::WouldBlock) => Err(FolderLockError::InUse(dir.to_owned())),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The folder it locks.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("cache");
        let first = FolderLock::acquire(&folder).unwrap();
        assert_eq!(first.dir(), folder);
        // A second open file description, as another process would have: refused.
        let e = FolderLock::acquire(&folder).unwrap_err();
        assert!(matches!(e, FolderLockError::InUse(_)), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "another Rivulet is using the cache folder {}",
                folder.display()
            )
        );
        drop(first);
        FolderLock::acquire(&folder).unwrap();
    }

    #[test]
    fn a_folder_that_cannot_be_made_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let e = FolderLock::acquire(&file.join("cache")).unwrap_err();
        assert!(matches!(e, FolderLockError::Io { .. }), "{e}");
        assert!(
            e.to_string().starts_with("cannot lock the cache folder"),
            "{e}"
        );
    }
}
