//! Shared helpers of the end-to-end tests (the network itself comes from
//! `rivulet-localnet`): waiting for a condition, finding the node binary, artifacts, hashes.

pub mod plot;
pub mod simulate;
pub mod swarm;

use std::path::{Path, PathBuf};

/// Waits until `check` holds, polling every 50 ms, for at most `limit`.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// The `rivulet-node` binary beside the test executable (cargo builds it for the
/// workspace's tests).
pub fn node_binary() -> PathBuf {
    workspace_binary("rivulet-node")
}

/// The workspace binary `name` (`rivulet-node`, `rivulet-tracker`) beside the test
/// executable (cargo builds every binary of the workspace for its tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let binary = dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        binary.display()
    );
    binary
}

/// `target/test-artifacts/<what>` (created), where tests leave screenshots and plots.
pub fn artifacts_dir(what: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/test-artifacts/<what>
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("test-artifacts").join(what);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    Ok(hex::encode(sha2::Sha256::digest(std::fs::read(path)?)))
}
