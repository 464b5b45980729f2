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
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "watch",
                "--tracker",
                "http://127.0.0.1:9",
                "--user",
                "u",
                "--video",
                "v",
                "--out",
                out,
            ],
            "unreachable",
        ),
        (
            vec![
                "watch",
                "--tracker",
                "not a url",
                "--user",
                "u",
                "--video",
                "v",
                "--out",
                out,
            ],
            "logging in",
        ),
        (
            vec!["watch", "--user", "u", "--video", "v", "--out", out],
            "--tracker",
        ),
        (vec!["fly"], "unrecognized subcommand"),
    ];
    for (args, want) in cases {
        let o = node(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(out).exists());
}
