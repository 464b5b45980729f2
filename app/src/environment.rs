//! Where the app keeps things, in one place: settings in the platform's config folder, the
//! demo network in its data folder (`directories`); `RIVULET_HOME` puts all of it under one
//! folder, like node-core's own paths (tests, portable installs).

use std::path::PathBuf;

fn base(kind: fn(&directories::ProjectDirs) -> PathBuf, sub: &str) -> PathBuf {
    if let Some(home) = std::env::var_os("RIVULET_HOME") {
        return PathBuf::from(home).join(sub);
    }
    directories::ProjectDirs::from("", "", "rivulet")
        .map(|d| kind(&d))
        .unwrap_or_else(|| PathBuf::from(".rivulet").join(sub))
}

/// The settings file.
pub fn settings_file() -> PathBuf {
    base(|d| d.config_dir().to_owned(), "config").join("settings.json")
}

/// The demo network's folder: tracker data, the demo movie, the demo caches.
pub fn demo_dir() -> PathBuf {
    base(|d| d.data_local_dir().to_owned(), "data").join("demo")
}

/// The app cache's folder when the settings name none.
pub fn default_cache_dir() -> PathBuf {
    rivulet_node_core::paths::cache_dir()
}

/// The key of the app cache's chunk store (apart from the chunks).
pub fn store_key() -> PathBuf {
    rivulet_node_core::paths::store_key()
}

/// The hidden download area the player's rebuilt movies live in.
pub fn downloads_dir() -> PathBuf {
    rivulet_node_core::paths::downloads_dir()
}
