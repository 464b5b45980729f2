//! The user's settings: tracker address, cache size and upload cap (a multiplier of the
//! defaults or a custom value), the cache's download limit (none, or a rate), cache folder,
//! whether sharing goes on when the window closes. Tolerant: a missing file gives the defaults,
//! a broken one gives the defaults and a warning to show; writes go to a temporary file that is
//! renamed over the old one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rivulet_node_core::cache::{DEFAULT_STORAGE_BYTES, DEFAULT_UPLOAD_BPS};
use serde::{Deserialize, Serialize};

/// The lowest cache port offered (ports below need root).
pub const MIN_LISTEN_PORT: u16 = 1024;

/// Where the tracker is when nothing else is said.
pub const DEFAULT_TRACKER: &str = "http://127.0.0.1:7878";

/// How much of a resource the cache may use.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// A multiple of the default (0.2, 0.5 or 1 in the pane).
    Multiplier(f64),
    /// An exact value: bytes for storage, bits per second for upload.
    Custom(u64),
}

impl Default for Limit {
    fn default() -> Limit {
        Limit::Multiplier(1.0)
    }
}

impl Limit {
    /// The value against `default`; a nonsensical multiplier falls back to 1.
    pub fn resolve(self, default: u64) -> u64 {
        match self {
            Limit::Multiplier(m) if m.is_finite() && m > 0.0 => (default as f64 * m) as u64,
            Limit::Multiplier(_) => default,
            Limit::Custom(v) => v,
        }
    }
}

/// The download limits offered besides "Unlimited" and a custom rate, Mbit/s.
pub const DOWNLOAD_CHOICES_MBIT: [u64; 3] = [10, 25, 50];

/// How fast the cache may download what it keeps (from the origin and other caches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadLimit {
    /// No limit (the default, shown on the first-run screen).
    #[default]
    Unlimited,
    /// At most this many bits per second (0 reads as no limit).
    Capped(u64),
}

impl DownloadLimit {
    /// Bits per second, 0 for none (as [`rivulet_node_core::cache::CacheOptions`] takes it).
    pub fn bps(self) -> u64 {
        match self {
            DownloadLimit::Unlimited => 0,
            DownloadLimit::Capped(bps) => bps,
        }
    }

    /// A limit typed in Mbit/s: a positive number, or what is wrong with it.
    pub fn parse_mbit(typed: &str) -> Result<DownloadLimit, String> {
        let typed = typed.trim();
        match typed.parse::<f64>() {
            Ok(mbit) if mbit.is_finite() && mbit > 0.0 && mbit * 1e6 >= 1.0 => {
                Ok(DownloadLimit::Capped((mbit * 1e6) as u64))
            }
            _ => Err(format!(
                "The download limit must be a positive number of Mbit/s, not {typed:?}."
            )),
        }
    }

    /// For the user: "unlimited" or "25 Mbit/s".
    pub fn label(self) -> String {
        match self.bps() {
            0 => "unlimited".to_owned(),
            bps => format!("{} Mbit/s", bps as f64 / 1e6),
        }
    }
}

/// Everything the settings pane edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The tracker's base URL.
    pub tracker: String,
    /// The last user name logged in (the password lives in the keyring, if anywhere).
    pub username: String,
    /// The cache's storage: a multiplier of 1.5 GB or bytes.
    pub storage: Limit,
    /// The cache's upload cap: a multiplier of 10 Mbit/s or bits per second.
    pub upload: Limit,
    /// The cache's download limit; unlimited unless chosen (a file from before it existed
    /// loads as unlimited).
    pub download: DownloadLimit,
    /// The cache folder; the platform's default when unset.
    pub cache_dir: Option<PathBuf>,
    /// Whether the user asked to be remembered.
    pub remember: bool,
    /// The cache's FTP control port (1024–65535), the one to forward on a router; the
    /// passive ports follow it ([`rivulet_node_core::net::DEFAULT_PASSIVE_PORTS`]).
    pub listen_port: u16,
    /// Run a cache that stores chunks and uploads them to others (earning points); off is
    /// "watch only": no cache runs and nothing is registered as one.
    pub share: bool,
    /// The first-run set-up was done (its choices made); until then no cache starts.
    pub set_up: bool,
    /// Closing the window leaves the app running in the system tray, its cache still serving
    /// (when a tray is there; else closing quits). On unless turned off; nothing to keep in
    /// watch-only mode.
    pub keep_sharing_on_close: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            tracker: DEFAULT_TRACKER.to_owned(),
            username: String::new(),
            storage: Limit::default(),
            upload: Limit::default(),
            download: DownloadLimit::default(),
            cache_dir: None,
            remember: false,
            listen_port: rivulet_node_core::net::DEFAULT_PORT,
            share: true,
            set_up: false,
            keep_sharing_on_close: true,
        }
    }
}

impl Settings {
    pub fn storage_bytes(&self) -> u64 {
        self.storage.resolve(DEFAULT_STORAGE_BYTES)
    }

    pub fn upload_bps(&self) -> u64 {
        self.upload.resolve(DEFAULT_UPLOAD_BPS)
    }

    /// The download limit, bits per second (0: none).
    pub fn download_bps(&self) -> u64 {
        self.download.bps()
    }

    /// A listen port as typed: a number, then [`Settings::check_listen_port`].
    pub fn parse_listen_port(typed: &str) -> Result<u16, String> {
        let typed = typed.trim();
        typed
            .parse::<u16>()
            .map_err(|_| {
                format!("The cache port must be a number from 1024 to 65535, not {typed:?}.")
            })
            .and_then(Settings::check_listen_port)
    }

    /// Checks a listen port: 1024–65535 (ports below need root).
    pub fn check_listen_port(port: u16) -> Result<u16, String> {
        if port >= MIN_LISTEN_PORT {
            Ok(port)
        } else {
            Err(format!(
                "The cache port must be from {MIN_LISTEN_PORT} to 65535, not {port}."
            ))
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(crate::environment::default_cache_dir)
    }

    /// Reads `path`: the settings and, when the file was unreadable or broken, a sentence
    /// saying so (the defaults are used then).
    pub fn load(path: &Path) -> (Settings, Option<String>) {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(e) => (
                Settings::default(),
                Some(format!(
                    "could not read {}: {e}; using the defaults",
                    path.display()
                )),
            ),
            Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(serde_json::Value::Object(fields)) => {
                    let (settings, bad) = Settings::from_fields(fields);
                    let warning = (!bad.is_empty()).then(|| {
                        format!(
                            "{} has bad values for {}; using the defaults for those",
                            path.display(),
                            bad.join(", ")
                        )
                    });
                    (settings, warning)
                }
                Ok(_) => (
                    Settings::default(),
                    Some(format!(
                        "{} is broken (not a JSON object); using the defaults",
                        path.display()
                    )),
                ),
                Err(e) => (
                    Settings::default(),
                    Some(format!(
                        "{} is broken ({e}); using the defaults",
                        path.display()
                    )),
                ),
            },
        }
    }

    /// The settings from a file's fields, one at a time (as Sniffnet's
    /// `deserialize_or_default`): a field whose value does not fit keeps its default and is
    /// named in the list returned, the good ones are kept; unknown fields are ignored.
    fn from_fields(fields: serde_json::Map<String, serde_json::Value>) -> (Settings, Vec<String>) {
        let mut merged = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let mut bad = Vec::new();
        for (name, value) in fields {
            let before = merged.insert(name.clone(), value);
            let parsed =
                serde_json::from_value::<Settings>(serde_json::Value::Object(merged.clone()));
            let fits = parsed.is_ok_and(|s| Settings::check_listen_port(s.listen_port).is_ok());
            if !fits {
                match before {
                    Some(v) => merged.insert(name.clone(), v),
                    None => merged.remove(&name),
                };
                bad.push(format!("`{name}`"));
            }
        }
        let settings =
            serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or_default();
        (settings, bad)
    }

    /// Writes the settings to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .map_or("settings".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_without_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (s, warning) = Settings::load(&dir.path().join("settings.json"));
        assert_eq!(s, Settings::default());
        assert!(warning.is_none());
    }

    #[test]
    fn broken_file_gives_defaults_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, b"{ not json").unwrap();
        let (s, warning) = Settings::load(&path);
        assert_eq!(s, Settings::default());
        assert!(warning.unwrap().contains("broken"));
    }

    #[test]
    fn one_wrong_typed_field_keeps_the_good_ones_and_names_the_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(
            &path,
            br#"{"tracker":"http://t:1","username":"ann","storage":"lots","upload":{"custom":2000000},"remember":true}"#,
        )
        .unwrap();
        let (s, warning) = Settings::load(&path);
        assert_eq!(s.tracker, "http://t:1");
        assert_eq!(s.username, "ann");
        assert_eq!(s.upload, Limit::Custom(2_000_000));
        assert!(s.remember);
        assert_eq!(s.storage, Limit::default());
        let warning = warning.unwrap();
        assert!(warning.contains("`storage`"), "{warning}");
        assert_eq!(s.listen_port, rivulet_node_core::net::DEFAULT_PORT);
        assert!(!warning.contains("`upload`"), "{warning}");
    }

    #[test]
    fn a_listen_port_below_1024_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, br#"{"tracker":"http://t:1","listen_port":80}"#).unwrap();
        let (s, warning) = Settings::load(&path);
        assert_eq!(s.listen_port, rivulet_node_core::net::DEFAULT_PORT);
        assert!(warning.unwrap().contains("`listen_port`"));
        std::fs::write(&path, br#"{"listen_port":9000}"#).unwrap();
        assert_eq!(Settings::load(&path).0.listen_port, 9000);
        assert!(Settings::check_listen_port(1023).is_err());
        assert!(Settings::check_listen_port(1024).is_ok());
    }

    #[test]
    fn unknown_and_missing_fields_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, br#"{"tracker":"http://t:1","colour":"blue"}"#).unwrap();
        let (s, warning) = Settings::load(&path);
        assert!(warning.is_none());
        assert_eq!(s.tracker, "http://t:1");
        assert_eq!(s.storage, Limit::Multiplier(1.0));
    }

    #[test]
    fn a_file_from_before_the_download_limit_loads_as_unlimited_and_round_trips_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(
            &path,
            br#"{"tracker":"http://t:1","username":"ann","storage":{"multiplier":0.5},"upload":{"custom":2000000},"cache_dir":null,"remember":true,"listen_port":9000,"share":true,"set_up":true}"#,
        )
        .unwrap();
        let (s, warning) = Settings::load(&path);
        assert!(warning.is_none(), "{warning:?}");
        assert_eq!(s.download, DownloadLimit::Unlimited);
        assert_eq!(s.download_bps(), 0);
        assert_eq!((s.upload_bps(), s.listen_port), (2_000_000, 9000));
        let capped = Settings {
            download: DownloadLimit::Capped(25_000_000),
            ..s
        };
        capped.save(&path).unwrap();
        assert_eq!(Settings::load(&path), (capped.clone(), None));
        assert_eq!(capped.download_bps(), 25_000_000);
        // A download limit that does not fit is named; the rest is kept.
        std::fs::write(&path, br#"{"username":"ann","download":"fast"}"#).unwrap();
        let (s, warning) = Settings::load(&path);
        assert_eq!(
            (s.username.as_str(), s.download),
            ("ann", DownloadLimit::Unlimited)
        );
        assert!(warning.unwrap().contains("`download`"));
    }

    #[test]
    fn keeping_sharing_on_close_is_on_for_old_files_and_round_trips_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, br#"{"username":"ann","share":true,"set_up":true}"#).unwrap();
        let (s, warning) = Settings::load(&path);
        assert!(warning.is_none(), "{warning:?}");
        assert!(s.keep_sharing_on_close);
        let off = Settings {
            keep_sharing_on_close: false,
            ..s
        };
        off.save(&path).unwrap();
        assert_eq!(Settings::load(&path), (off, None));
        std::fs::write(
            &path,
            br#"{"username":"ann","keep_sharing_on_close":"yes"}"#,
        )
        .unwrap();
        let (s, warning) = Settings::load(&path);
        assert!(s.keep_sharing_on_close);
        assert!(warning.unwrap().contains("`keep_sharing_on_close`"));
    }

    #[test]
    fn a_typed_download_limit_is_a_positive_number_of_mbit() {
        assert_eq!(
            DownloadLimit::parse_mbit(" 12.5 "),
            Ok(DownloadLimit::Capped(12_500_000))
        );
        for bad in ["", "0", "-3", "fast", "NaN", "inf", "1e-9"] {
            assert_eq!(
                DownloadLimit::parse_mbit(bad),
                Err(format!(
                    "The download limit must be a positive number of Mbit/s, not {:?}.",
                    bad.trim()
                ))
            );
        }
        assert_eq!(DownloadLimit::Unlimited.label(), "unlimited");
        assert_eq!(DownloadLimit::Capped(12_500_000).label(), "12.5 Mbit/s");
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/settings.json");
        let s = Settings {
            storage: Limit::Multiplier(0.2),
            upload: Limit::Custom(3_000_000),
            ..Settings::default()
        };
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), (s.clone(), None));
        assert_eq!(s.storage_bytes(), 300_000_000);
        assert_eq!(s.upload_bps(), 3_000_000);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("settings.json")]);
    }
}
