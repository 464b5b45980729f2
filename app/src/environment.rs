//! Where the app keeps things, in one place: settings in the platform's config folder, the
//! demo network in its data folder, both from node-core's `paths` (so `RIVULET_HOME` puts
//! all of it under one folder for tests and portable installs).

use std::path::{Path, PathBuf};

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

/// The runtime folder, where the running app's lock and socket live (one app per user):
/// `$RIVULET_HOME/runtime` when that is set, else `$XDG_RUNTIME_DIR/rivulet`, else
/// `runtime` in the data folder.
pub fn runtime_dir() -> PathBuf {
    if let Some(home) = rivulet_node_core::env::home() {
        return runtime_dir_in(&home);
    }
    directories::ProjectDirs::from("", "", "rivulet")
        .and_then(|d| d.runtime_dir().map(Path::to_path_buf))
        .unwrap_or_else(|| rivulet_node_core::paths::data_dir().join("runtime"))
}

/// The runtime folder when `RIVULET_HOME` is `home`.
pub fn runtime_dir_in(home: &Path) -> PathBuf {
    home.join("runtime")
}
