//! Every `RIVULET_*` environment variable Rivulet reads, read here and nowhere else, so a
//! newcomer finds them all (and what each does) in one file.

use std::ffi::OsString;
use std::path::PathBuf;

/// Puts config, data, cache and the store key under one folder (tests, portable installs).
pub const HOME: &str = "RIVULET_HOME";
/// A password for the headless commands and the app's saved user (never argv).
pub const PASSWORD: &str = "RIVULET_PASSWORD";
/// When set, the app rewrites this file with a machine-readable status line (tests, benches).
pub const STATUS_FILE: &str = "RIVULET_STATUS_FILE";
/// The audio output mpv uses in the app (`auto` unless set; tests use `null`).
pub const MPV_AO: &str = "RIVULET_MPV_AO";
/// A PEM file with the certificate authority of a tracker served over HTTPS with a
/// private CA (trusted besides the web PKI and the system's roots).
pub const TRACKER_CA: &str = "RIVULET_TRACKER_CA";

/// Every variable above, with what it does: for `--help` texts and docs.
pub const ALL: [(&str, &str); 5] = [
    (HOME, "one folder for config, data, cache and the store key"),
    (PASSWORD, "the password, instead of reading it from stdin"),
    (
        STATUS_FILE,
        "a file the app rewrites with its status (tests)",
    ),
    (MPV_AO, "mpv's audio output in the app (default auto)"),
    (
        TRACKER_CA,
        "a PEM CA certificate to trust for an HTTPS tracker",
    ),
];

/// `RIVULET_HOME`, if set.
pub fn home() -> Option<PathBuf> {
    std::env::var_os(HOME).map(PathBuf::from)
}

/// `RIVULET_PASSWORD`, if set (an empty value counts as set: it is a password).
pub fn password() -> Option<String> {
    std::env::var(PASSWORD).ok()
}

/// `RIVULET_STATUS_FILE`, if set.
pub fn status_file() -> Option<PathBuf> {
    std::env::var_os(STATUS_FILE).map(PathBuf::from)
}

/// `RIVULET_MPV_AO`, or `auto`.
pub fn mpv_audio_output() -> String {
    std::env::var(MPV_AO).unwrap_or_else(|_| "auto".into())
}

/// `RIVULET_TRACKER_CA`, if set.
pub fn tracker_ca() -> Option<PathBuf> {
    std::env::var_os(TRACKER_CA).map(PathBuf::from)
}

/// A client for the tracker at `url`, trusting the CA in `RIVULET_TRACKER_CA` when it is
/// set; an unreadable or empty CA file is an error naming the file.
pub fn tracker_client(
    url: &str,
) -> Result<rivulet_tracker_client::TrackerClient, rivulet_tracker_client::ClientError> {
    tracker_client_trusting(url, None)
}

/// [`tracker_client`], trusting the CA in `ca` (else the one `RIVULET_TRACKER_CA` names).
pub fn tracker_client_trusting(
    url: &str,
    ca: Option<&std::path::Path>,
) -> Result<rivulet_tracker_client::TrackerClient, rivulet_tracker_client::ClientError> {
    let client = rivulet_tracker_client::TrackerClient::new(url);
    let Some(path) = ca.map(PathBuf::from).or_else(tracker_ca) else {
        return Ok(client);
    };
    let pem = std::fs::read(&path).map_err(|e| {
        rivulet_tracker_client::ClientError::Transport(format!(
            "{TRACKER_CA}={}: {e}",
            path.display()
        ))
    })?;
    client.with_root_certificate(&pem).map_err(|e| {
        rivulet_tracker_client::ClientError::Transport(format!(
            "{TRACKER_CA}={}: {e}",
            path.display()
        ))
    })
}

/// The raw value of one of the variables above (for a child process's environment).
pub fn raw(name: &str) -> Option<OsString> {
    debug_assert!(ALL.iter().any(|(n, _)| *n == name), "{name} is not listed");
    std::env::var_os(name)
}
