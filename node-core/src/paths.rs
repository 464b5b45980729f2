//! Where a node keeps things by default, from the platform's conventions (`directories`):
//! the cache folder, the store key (kept apart from the chunks), and the hidden download
//! area. `RIVULET_HOME` puts all of them under one folder (tests, portable installs).

use std::path::PathBuf;

fn base(kind: fn(&directories::ProjectDirs) -> PathBuf, sub: &str) -> PathBuf {
    if let Some(home) = crate::env::home() {
        return home.join(sub);
    }
    directories::ProjectDirs::from("", "", "rivulet")
        .map(|d| kind(&d))
        .unwrap_or_else(|| PathBuf::from(".rivulet").join(sub))
}

/// The platform's config folder for Rivulet (settings, the store key).
pub fn config_dir() -> PathBuf {
    base(|d| d.config_dir().to_owned(), "config")
}

/// The platform's local data folder for Rivulet (downloads, the demo network).
pub fn data_dir() -> PathBuf {
    base(|d| d.data_local_dir().to_owned(), "data")
}

/// The default cache folder (the chunk store lives hidden inside it).
pub fn cache_dir() -> PathBuf {
    base(|d| d.cache_dir().to_owned(), "cache")
}

/// The store key: in the config folder, never beside the chunks.
pub fn store_key() -> PathBuf {
    config_dir().join("store.key")
}

/// The hidden download area, cleaned of files older than seven days when a node starts.
pub fn downloads_dir() -> PathBuf {
    data_dir().join(".downloads")
}

/// The tracker's default data directory (its database, ticket key and movies):
/// `rivulet-tracker` under the platform's data folder, or `$RIVULET_HOME/tracker`.
pub fn tracker_dir() -> PathBuf {
    if let Some(home) = crate::env::home() {
        return home.join("tracker");
    }
    directories::ProjectDirs::from("org", "Rivulet", "rivulet-tracker")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("rivulet-data"))
}
