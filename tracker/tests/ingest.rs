//! `rivulet-tracker ingest`, `videos` and `verify` on media that ffmpeg makes inside each
//! test, run as the real binary on a temporary data dir.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Where the Matroska Cues element sits, against the first Cluster: the index is at the
/// front when it comes first.
/// ffmpeg, quiet and never reading stdin.
fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error"]);
    command
}

fn cues_before_first_cluster(stream: &Path) -> bool {
    let bytes = std::fs::read(stream).unwrap();
    let find = |id: [u8; 4]| bytes.windows(4).position(|w| w == id);
    let cluster = find([0x1F, 0x43, 0xB6, 0x75]).expect("a cluster");
    // The SeekHead names Cues too, so look for the element itself: ID then a size byte.
    let cues = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0x1C, 0x53, 0xBB, 0x6B])
        .map(|(i, _)| i)
        .find(|&i| {
            bytes
                .get(i + 4)
                .is_some_and(|&size| size & 0x80 == 0 || size != 0x84)
        });
    cues.is_some_and(|c| c < cluster)
}

fn probe_codecs(file: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn four_containers_ingest_and_verify() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let inputs = [
        ("a.mp4", H264_AAC, "h264", "aac"),
        (
            "b.webm",
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
            ][..],
            "vp9",
            "opus",
        ),
        ("c.flv", H264_AAC, "h264", "aac"),
        ("d.ts", H264_AAC, "h264", "aac"),
    ];
    let mut ids = Vec::new();
    for (name, args, vcodec, acodec) in inputs {
        let file = make_media(work.path(), name, 6, args);
        let id = ingest(&data, &file, &format!("Movie {name}"));
        let dir = data.join("videos").join(&id);
        let stream = dir.join("stream.mkv");
        // Copied, not transcoded: the codecs are the input's.
        assert_eq!(probe_codecs(&stream), [vcodec, acodec], "{name}");
        assert!(
            cues_before_first_cluster(&stream),
            "{name}: index at the front"
        );
        let poster = image::open(dir.join("poster.jpg")).unwrap();
        assert!(
            poster.width() <= 480 && poster.height() <= 360 && poster.width() >= 300,
            "{name}: poster {}x{}",
            poster.width(),
            poster.height()
        );
        let o = run(&data, &["verify", &id]);
        assert!(o.status.success(), "verify {name}: {}", stderr(&o));
        assert!(stdout(&o).contains("verified"), "{}", stdout(&o));
        ids.push(id);
    }
    let listed = videos(&data);
    assert_eq!(listed.len(), 4);
    for v in &listed {
        assert!(ids.contains(&v["id"].as_str().unwrap().to_owned()));
        let ms = v["duration_ms"].as_u64().unwrap();
        assert!((5_500..=6_600).contains(&ms), "duration {ms}");
        assert_eq!(v["k"], 16);
        assert_eq!(v["n"], 64);
        assert_eq!(v["price"], 0);
        assert!(v["bytes"].as_u64().unwrap() > 10_000);
        assert_eq!(
            v["segments"].as_u64().unwrap(),
            v["bytes"].as_u64().unwrap().div_ceil(1 << 20)
        );
    }
    // The table form lists the same movies.
    let table = stdout(&run(&data, &["videos"]));
    assert_eq!(table.lines().count(), 5, "{table}");
}

#[test]
fn only_what_matroska_cannot_carry_is_transcoded() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // MP4 with H.264 video, ADPCM-free PCM µ-law audio (no Matroska mapping in our list) and
    // a mov_text subtitle (MP4-only).
    let srt = work.path().join("s.srt");
    std::fs::write(&srt, "1\n00:00:00,500 --> 00:00:02,000\nHello\n").unwrap();
    let file = work.path().join("mixed.mov");
    let status = ffmpeg()
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-i",
        ])
        .arg(&srt)
        .args([
            "-t",
            "3",
            "-map",
            "0",
            "-map",
            "1",
            "-map",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "pcm_mulaw",
            "-c:s",
            "mov_text",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let id = ingest(&data, &file, "Mixed codecs");
    let stream = data.join("videos").join(&id).join("stream.mkv");
    assert_eq!(probe_codecs(&stream), ["h264", "opus", "subrip"]);
    assert!(run(&data, &["verify", &id]).status.success());
}

#[test]
fn titles_keep_unicode_and_metacharacters_and_ids_can_be_chosen() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = make_media(work.path(), "a.mp4", 2, H264_AAC);
    let title = "Robert'); DROP TABLE videos;-- «映画» ✓";
    let o = run(
        &data,
        &[
            "ingest",
            file.to_str().unwrap(),
            "--title",
            title,
            "--price",
            "25",
            "--id",
            "demo",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "demo");
    let listed = videos(&data);
    assert_eq!(listed[0]["title"], title);
    assert_eq!(listed[0]["price"], 25);
    // The same id again is refused and changes nothing.
    let o = run(
        &data,
        &[
            "ingest",
            file.to_str().unwrap(),
            "--title",
            "Again",
            "--id",
            "demo",
        ],
    );
    assert_one_line_error(&o, "already taken");
    assert_eq!(videos(&data).len(), 1);
    assert_eq!(std::fs::read_dir(data.join("staging")).unwrap().count(), 0);
}

#[test]
fn bad_input_gets_one_line_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let dir = work.path();
    let good = make_media(dir, "good.mp4", 3, H264_AAC);
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a movie\n".repeat(100)).unwrap();
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.join("truncated.mp4");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let audio_only = make_media(dir, "tone.ogg", 2, &["-map", "1:a", "-c:a", "libvorbis"]);
    let still = dir.join("still.png");
    let status = ffmpeg()
        .args(["-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1"])
        .arg(&still)
        .status()
        .unwrap();
    assert!(status.success());
    let long_title = "x".repeat(201);
    let g = good.to_str().unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["ingest", text.to_str().unwrap(), "--title", "T"],
            "is not a video",
        ),
        (
            vec!["ingest", empty.to_str().unwrap(), "--title", "T"],
            "is empty",
        ),
        (
            vec!["ingest", truncated.to_str().unwrap(), "--title", "T"],
            "truncated.mp4",
        ),
        (
            vec!["ingest", audio_only.to_str().unwrap(), "--title", "T"],
            "has no video stream",
        ),
        (
            vec!["ingest", still.to_str().unwrap(), "--title", "T"],
            "still image",
        ),
        (
            vec!["ingest", "/nonexistent/movie.mp4", "--title", "T"],
            "cannot read /nonexistent/movie.mp4: No such file",
        ),
        (
            vec!["ingest", dir.to_str().unwrap(), "--title", "T"],
            "is a directory",
        ),
        (vec!["ingest", g, "--title", ""], "title is empty"),
        (vec!["ingest", g, "--title", "   "], "title is empty"),
        (vec!["ingest", g, "--title", &long_title], "201 characters"),
        (
            vec!["ingest", g, "--title", "a\u{7}b"],
            "control characters",
        ),
        (
            vec!["ingest", g, "--title", "T", "--price", "-5"],
            "--price",
        ),
        (
            vec![
                "ingest",
                g,
                "--title",
                "T",
                "--price",
                "99999999999999999999",
            ],
            "--price",
        ),
        (
            vec!["ingest", g, "--title", "T", "--id", "../escape"],
            "invalid video id",
        ),
        (
            vec!["ingest", g, "--title", "T", "--id", "UPPER"],
            "invalid video id",
        ),
        (vec!["ingest", g], "--title"),
        (
            vec!["verify", "nosuchvideo"],
            "no video with id \"nosuchvideo\"",
        ),
        (vec!["verify", "../../etc"], "invalid video id"),
    ];
    for (args, want) in cases {
        let o = run(&data, &args);
        eprintln!("case {args:?}");
        assert_one_line_error(&o, want);
        assert_nothing_left(&data);
    }
    // A data dir that cannot be created (its parent is a file; root ignores permissions).
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let o = run(&blocker.join("data"), &["ingest", g, "--title", "T"]);
    assert_one_line_error(&o, "is not writable");
    // Without root, a read-only data dir must be refused the same way.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        assert_one_line_error(&run(&ro, &["ingest", g, "--title", "T"]), "is not writable");
    }
}

#[test]
fn corrupted_stored_files_are_named() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = make_media(
        work.path(),
        "a.mp4",
        8,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "2M",
            "-c:a",
            "aac",
        ],
    );
    let id = ingest(&data, &file, "Fragile");
    let dir = data.join("videos").join(&id);
    let segments = videos(&data)[0]["segments"].as_u64().unwrap();
    assert!(segments >= 2, "need several segments, got {segments}");

    // A flipped byte in segment 1 of the stream file: verify names segment 1.
    let stream = dir.join("stream.mkv");
    let original = std::fs::read(&stream).unwrap();
    let mut bad = original.clone();
    bad[(1 << 20) + 12_345] ^= 0x01;
    std::fs::write(&stream, &bad).unwrap();
    assert_one_line_error(&run(&data, &["verify", &id]), "segment 1");
    // A stream file of the wrong length.
    std::fs::write(&stream, &original[..original.len() - 1]).unwrap();
    assert_one_line_error(&run(&data, &["verify", &id]), "stream.mkv is corrupt");
    std::fs::write(&stream, &original).unwrap();
    assert!(run(&data, &["verify", &id]).status.success());

    // A damaged leaf table.
    let leaves = dir.join("leaves.bin");
    let table = std::fs::read(&leaves).unwrap();
    let mut bad = table.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    std::fs::write(&leaves, &bad).unwrap();
    assert_one_line_error(&run(&data, &["verify", &id]), "leaves.bin is corrupt");
    std::fs::write(&leaves, &table).unwrap();

    // A damaged manifest: a changed root, then garbage.
    let manifest_path = dir.join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let root = m["segments"][0]["root"].as_str().unwrap();
    let flipped = format!(
        "{}{}",
        if root.starts_with('0') { "1" } else { "0" },
        &root[1..]
    );
    std::fs::write(&manifest_path, manifest.replace(root, &flipped)).unwrap();
    assert_one_line_error(&run(&data, &["verify", &id]), "leaves.bin is corrupt");
    std::fs::write(&manifest_path, "{ not json").unwrap();
    assert_one_line_error(&run(&data, &["verify", &id]), "manifest.json is corrupt");
    // The listing still shows the healthy movies, names the broken one and fails.
    let other = ingest(&data, &file, "Healthy");
    let o = run(&data, &["videos", "--json"]);
    assert_one_line_error(&o, "manifest.json is corrupt");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], other.as_str());
}

/// A raw-video input: Matroska gets H.264 instead, so ingest transcodes and takes seconds.
fn slow_input(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("raw.nut");
    let status = ffmpeg()
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25",
            "-t",
            "15",
            "-c:v",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    file
}

#[test]
fn interrupted_ingest_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let input = slow_input(work.path());
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let data = work.path().join(format!("data-{signal}"));
        let mut child = tracker()
            .args([
                "ingest",
                input.to_str().unwrap(),
                "--title",
                "Interrupted",
                "--data",
            ])
            .arg(&data)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until ffmpeg is writing the stream file in the staging area.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let writing = loop {
            let busy = std::fs::read_dir(data.join("staging"))
                .ok()
                .and_then(|entries| {
                    entries.flatten().find(|e| {
                        std::fs::metadata(e.path().join("stream.mkv")).is_ok_and(|m| m.len() > 0)
                    })
                });
            if busy.is_some() {
                break true;
            }
            if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(writing, "signal {signal}: ingest never started writing");
        // SAFETY: kill has no memory preconditions; the pid is our live child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "signal {signal}: ingest reported success"
        );
        if signal != libc::SIGKILL {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("interrupted"), "signal {signal}: {err}");
        }
        // ffmpeg died with its parent: no process still names this data dir.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let needle = data.to_str().unwrap().as_bytes().to_vec();
        let survivors: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
            .filter(|cmd| cmd.windows(needle.len()).any(|w| w == needle.as_slice()))
            .map(|cmd| String::from_utf8_lossy(&cmd).replace('\0', " "))
            .collect();
        assert!(
            survivors.is_empty(),
            "signal {signal}: still running: {survivors:?}"
        );
        // The next command sweeps what a SIGKILL left; the catalogue never saw the movie.
        assert!(videos(&data).is_empty(), "signal {signal}");
        assert_nothing_left(&data);
    }
}

#[test]
fn concurrent_ingests_commit_whole_movies_or_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = make_media(work.path(), "a.mp4", 4, H264_AAC);
    let spawn = |id: Option<&str>| {
        let mut cmd = tracker();
        cmd.args([
            "ingest",
            file.to_str().unwrap(),
            "--title",
            "Race",
            "--data",
        ])
        .arg(&data);
        if let Some(id) = id {
            cmd.args(["--id", id]);
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = vec![
        spawn(None),
        spawn(Some("same")),
        spawn(None),
        spawn(Some("same")),
        spawn(None),
    ];
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ok: Vec<String> = outputs
        .iter()
        .filter(|o| o.status.success())
        .map(stdout)
        .collect();
    let failed: Vec<String> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(stderr)
        .collect();
    assert_eq!(ok.len(), 4, "ok {ok:?} failed {failed:?}");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].contains("\"same\" is already taken"),
        "{failed:?}"
    );
    assert_eq!(ok.iter().filter(|id| *id == "same").count(), 1);
    let listed = videos(&data);
    assert_eq!(listed.len(), 4);
    for id in &ok {
        assert!(run(&data, &["verify", id]).status.success(), "{id}");
    }
    assert_eq!(std::fs::read_dir(data.join("staging")).unwrap().count(), 0);
}
