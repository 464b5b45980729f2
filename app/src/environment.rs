//! Where the app keeps things, in one place: settings in the platform's config folder, the
//! demo network in its data folder, both from node-core's `paths` (so `RIVULET_HOME` puts
//! all of it under one folder for tests and portable installs).

use std::path::PathBuf;

/// The settings file.
pub fn settings_file() -> PathBuf {
    rivulet_node_core::paths::config_dir().join("settings.json")
}

/// The demo network's folder: tracker data, the demo movie, the demo caches.
pub fn demo_dir() -> PathBuf {
    rivulet_node_core::paths::data_dir().join("demo")
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
