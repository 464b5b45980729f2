//! Shared helpers for the tracker's tests: media made by ffmpeg inside the test, and the
//! real `rivulet-tracker` binary run against a temporary data dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Makes `dir/name` with ffmpeg from its built-in sources: `seconds` of a test pattern and a
/// tone, encoded with `codec_args`, in the container `name`'s extension implies.
pub fn make_media(dir: &Path, name: &str, seconds: u32, codec_args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=25")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
        ])
        .arg(seconds.to_string())
        .args(codec_args)
        .arg("-shortest")
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made {name}");
    out
}

/// Codec arguments for an MP4 of H.264 and AAC, fast to make.
pub const H264_AAC: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"];

/// The tracker binary under test.
pub fn tracker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rivulet-tracker"))
}

/// Runs the tracker with `args` plus `--data DATA`.
pub fn run(data: &Path, args: &[&str]) -> Output {
    tracker()
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("rivulet-tracker runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// Ingests and returns the new id, failing the test with ffmpeg's words if it fails.
pub fn ingest(data: &Path, file: &Path, title: &str) -> String {
    let o = run(data, &["ingest", file.to_str().unwrap(), "--title", title]);
    assert!(
        o.status.success(),
        "ingest {}: {}",
        file.display(),
        stderr(&o)
    );
    stdout(&o)
}

/// The catalogue as `videos --json` prints it.
pub fn videos(data: &Path) -> Vec<serde_json::Value> {
    let o = run(data, &["videos", "--json"]);
    serde_json::from_slice(&o.stdout).expect("videos --json prints JSON")
}

/// Asserts a failed command: non-zero exit, one line on stderr containing `want`.
pub fn assert_one_line_error(o: &Output, want: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr {err:?}"
    );
    assert_eq!(err.lines().count(), 1, "one line on stderr, got {err:?}");
    assert!(err.contains(want), "stderr {err:?} should mention {want:?}");
}

/// Asserts the data dir holds no movie and no staging leftovers.
pub fn assert_nothing_left(data: &Path) {
    for sub in ["videos", "staging"] {
        let dir = data.join(sub);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            assert!(names.is_empty(), "{} still holds {names:?}", dir.display());
        }
    }
}

/// Fetches `path` over an FTP session whole (RETR), as a chunk client would.
pub async fn retr(
    ftp: &mut suppaftp::tokio::AsyncFtpStream,
    path: &str,
) -> Result<Vec<u8>, suppaftp::FtpError> {
    use tokio::io::AsyncReadExt;
    let mut stream = ftp.retr_as_stream(path).await?;
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .await
        .map_err(suppaftp::FtpError::ConnectionError)?;
    stream.finish().await?;
    Ok(buf)
}
