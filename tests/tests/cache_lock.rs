//! Two processes never run two caches on one store: a second `rivulet-node cache` on a
//! folder a running cache holds stops at once with one clear line, and once the holder is
//! killed (SIGKILL, as a crash) the folder is free again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rivulet_e2e::node_binary;
use rivulet_localnet::fixture;

const PASSWORD: &str = "lock-pass-1";

/// A child process killed when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rivulet-node cache` for account "owner" of the tracker at `url`, on folder `dir`.
fn cache_command(url: &str, dir: &Path, key: &Path) -> Command {
    let mut cmd = Command::new(node_binary());
    cmd.args(["cache", "--tracker", url, "--user", "owner"])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--size", "50MB", "--dir"])
        .arg(dir)
        .arg("--key")
        .arg(key)
        .env("RIVULET_PASSWORD", PASSWORD);
    cmd
}

/// Starts a cache process; returns it once it serves (its JSON line printed).
fn serving(mut cmd: Command) -> Reaped {
    let mut child = Reaped(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let printed: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the cache printed {line:?}: {e}"));
    assert!(printed["node_id"].is_string(), "{printed}");
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_cache_on_a_held_folder_is_refused_in_one_line() {
    let net = fixture::with_accounts(&["owner"], PASSWORD).await.unwrap();
    let dir = net.path("cache-folder");
    let key = net.path("owner.key");
    let command = || cache_command(&net.url(), &dir, &key);
    let first = command();
    let mut first = tokio::task::spawn_blocking(move || serving(first))
        .await
        .unwrap();

    let started = Instant::now();
    let mut second = command();
    let second = tokio::task::spawn_blocking(move || second.output().unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second cache took {:?} to give up",
        started.elapsed()
    );
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(second.stdout.is_empty(), "{second:?}");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "rivulet-node: another Rivulet is using the cache folder {}",
            dir.display()
        ),
        "{err}"
    );

    // A crash frees the folder: the kernel drops the dead holder's lock.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let again = command();
    let _again = tokio::task::spawn_blocking(move || serving(again))
        .await
        .unwrap();
}
