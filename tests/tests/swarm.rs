//! `rivulet-bench swarm` in miniature, so the benchmark cannot rot: a handful of caches and
//! viewers for a few seconds, the baseline and Rivulet from one invocation, with the JSON
//! summary, the CSV and the plot; and bad arguments refused in one line.

use std::process::Command;

fn bench() -> std::path::PathBuf {
    let node = rivulet_e2e::node_binary();
    node.with_file_name("rivulet-bench")
}

#[test]
fn a_small_swarm_runs_end_to_end_and_reports_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, png) = (dir.path().join("swarm.csv"), dir.path().join("swarm.png"));
    let out = Command::new(bench())
        .args(["swarm", "--caches", "3", "--viewers", "3", "--videos", "2"])
        .args([
            "--length",
            "8",
            "--join-every",
            "1",
            "--minutes",
            "0.3",
            "--scale",
            "1",
        ])
        .args([
            "--cache-upload",
            "20Mbit",
            "--popularity",
            "zipf:1.0",
            "--json",
        ])
        .arg("--csv")
        .arg(&csv)
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "origin_share_total",
        "origin_share_steady",
        "lower_bound_share",
        "start_p50_ms",
        "start_p95_ms",
        "stall_ratio",
        "viewer_bytes",
        "cpu_secs",
    ] {
        assert!(summary[field].is_number(), "{field}: {summary}");
    }
    assert_eq!(summary["byte_exact"], true, "{summary}");
    assert_eq!(summary["failed_watches"], 0, "{summary}");
    assert!(
        summary["viewer_bytes"].as_u64().unwrap() > 1_000_000,
        "{summary}"
    );
    assert!(
        summary["movies_completed"].as_u64().unwrap() >= 3,
        "{summary}"
    );
    // The caches carried some of the load, and the bound is below what was achieved.
    assert!(
        summary["rivulet"]["caches_to_viewers_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let share = summary["origin_share_total"].as_f64().unwrap();
    let bound = summary["lower_bound_share"].as_f64().unwrap();
    assert!(bound <= share + 1e-9, "{summary}");
    let series = std::fs::read_to_string(&csv).unwrap();
    assert!(series.starts_with("phase,t_secs,origin_to_viewers_mbps"));
    assert!(series.lines().filter(|l| l.starts_with("rivulet,")).count() >= 10);
    assert!(
        series
            .lines()
            .filter(|l| l.starts_with("baseline,"))
            .count()
            >= 10
    );
    let plot = std::fs::read(&png).unwrap();
    assert_eq!(&plot[..8], b"\x89PNG\r\n\x1a\n");
    let artifacts = rivulet_e2e::artifacts_dir("swarm");
    let _ = std::fs::copy(&png, artifacts.join("swarm.png"));
}

/// Half the caches advertise an address nobody can connect to: the tracker's probe finds
/// them unreachable (and them only), while the other half still carries load; the run with
/// none unreachable comes first, beside the same baseline.
#[test]
fn unreachable_caches_serve_nobody_beside_the_same_baseline() {
    let out = Command::new(bench())
        .args(["swarm", "--caches", "4", "--viewers", "3", "--videos", "2"])
        .args(["--length", "8", "--join-every", "1", "--minutes", "0.3"])
        .args(["--scale", "1", "--cache-upload", "20Mbit"])
        .args(["--unreachable", "0,0.5", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let variants = summary["variants"].as_array().expect("two variants");
    assert_eq!(variants.len(), 2, "{summary}");
    assert_eq!(variants[0]["unreachable"], 0.0);
    assert_eq!(variants[1]["unreachable"], 0.5);
    assert_eq!(summary["label"], variants[0]["label"]);
    for (v, unreachable) in variants.iter().zip([0, 2]) {
        assert_eq!(v["byte_exact"], true, "{v}");
        assert_eq!(
            v["rivulet"]["caches_probed_unreachable"], unreachable,
            "{v}"
        );
        assert!(
            v["rivulet"]["caches_to_viewers_bytes"].as_u64().unwrap() > 0,
            "{v}"
        );
    }
}

#[test]
fn bad_arguments_are_one_line() {
    for (args, want) in [
        (vec!["swarm", "--scale", "0"], "positive"),
        (vec!["swarm", "--popularity", "pareto"], "uniform, zipf"),
        (vec!["swarm", "--rate", "fast"], "is not a rate"),
        (vec!["swarm", "--churn", "-1"], "unexpected argument"),
        (
            vec!["swarm", "--unreachable", "0,1.5"],
            "share between 0 and 1",
        ),
        (
            vec!["swarm", "--tls", "--tls-compare"],
            "cannot be used with",
        ),
    ] {
        let out = Command::new(bench()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
