//! `rivulet-node` on bad input: one line on stderr, a non-zero exit, nothing written.

use std::process::Command;

fn node(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rivulet-node"))
        .args(args)
        .env("RIVULET_PASSWORD", "some-pass-1")
        .output()
        .unwrap()
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mkv");
    let out = out.to_str().unwrap();
    let watch = |tracker: &'static str| -> Vec<&str> {
        let args = [
            "watch",
            "--tracker",
            tracker,
            "--user",
            "u",
            "--video",
            "v",
            "--out",
        ];
        args.into_iter().chain([out]).collect()
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (watch("http://127.0.0.1:9"), "unreachable"),
        (watch("not a url"), "logging in"),
        (
            vec!["watch", "--user", "u", "--video", "v", "--out", out],
            "--tracker",
        ),
        (vec!["fly"], "unrecognized subcommand"),
    ];
    let cache_dir = dir.path().join("cache").to_string_lossy().into_owned();
    let key = dir.path().join("store.key").to_string_lossy().into_owned();
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let blocked = blocked.join("cache").to_string_lossy().into_owned();
    let beside = format!("{cache_dir}/store.key");
    let cache = |extra: &[&str], dir: &str, key: &str| -> Vec<String> {
        ["cache", "--tracker", "http://127.0.0.1:9", "--user", "u"]
            .iter()
            .chain(extra)
            .chain(&["--dir", dir, "--key", key])
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = cases
        .into_iter()
        .map(|(args, want)| (args.iter().map(|s| s.to_string()).collect(), want))
        .chain([
            (
                cache(&["--size", "lots"], &cache_dir, &key),
                "is not a size",
            ),
            (cache(&["--size", "0x"], &cache_dir, &key), "out of range"),
            (
                cache(&["--upload=-5Mbit"], &cache_dir, &key),
                "is not a rate",
            ),
            (
                cache(&["--listen", "localhost"], &cache_dir, &key),
                "--listen",
            ),
            (
                cache(&["--passive-ports", "9-20"], &cache_dir, &key),
                "1024 or above",
            ),
            (cache(&[], &cache_dir, &key), "unreachable"),
            (cache(&[], &blocked, &key), "a-file"),
            (cache(&[], &cache_dir, &beside), "must not live inside"),
        ])
        .collect();
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = node(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(out).exists());
}
