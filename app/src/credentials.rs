//! Remembered log-ins, kept only in the OS keyring (Secret Service on Linux). Where there is
//! no keyring (a bare X server, CI) nothing is remembered and the caller is told why; nothing
//! ever goes to a plain file.

const SERVICE: &str = "rivulet";

fn entry(tracker: &str, user: &str) -> Result<keyring::Entry, String> {
    keyring::Entry::new(SERVICE, &format!("{user}@{tracker}")).map_err(explain)
}

fn explain(e: keyring::Error) -> String {
    match e {
        keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_) => {
            format!("no OS keyring is available, so the password is not remembered ({e})")
        }
        other => format!("the OS keyring refused: {other}"),
    }
}

/// Keeps `password` for `user` on `tracker`. Blocking: call from a worker thread.
pub fn store(tracker: &str, user: &str, password: &str) -> Result<(), String> {
    entry(tracker, user)?
        .set_password(password)
        .map_err(explain)
}

/// The remembered password, if any. Blocking.
pub fn recall(tracker: &str, user: &str) -> Option<String> {
    entry(tracker, user).ok()?.get_password().ok()
}

/// Forgets the password. Blocking.
pub fn forget(tracker: &str, user: &str) {
    if let Ok(e) = entry(tracker, user) {
        let _ = e.delete_credential();
    }
}
