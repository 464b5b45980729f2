//! Ingest of a ~200 MB movie beside ffmpeg's own remux of the same file (`ffmpeg -i IN -c copy
//! OUT.mkv`, no fsync), alternating the two so that machine noise hits both alike.
//!
//! `cargo bench -p rivulet-tracker --bench ingest [-- ROUNDS]`

use std::process::Command;
use std::time::{Duration, Instant};

use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, IngestTimings, ingest_timed};

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Flushes earlier rounds' dirty pages so that their writeback does not land on the next
/// measurement (whichever side it is).
fn settle() {
    let status = Command::new("sync").status().expect("sync runs");
    assert!(status.success());
}

/// CPU time (user + system) used so far by this process and its waited-for children.
fn cpu_time() -> Duration {
    let total = |who| {
        // SAFETY: getrusage writes one rusage into the zeroed struct we own.
        let usage = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut u);
            u
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    };
    total(libc::RUSAGE_SELF) + total(libc::RUSAGE_CHILDREN)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(9);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path();
    // 10 s of 720p H.264 at 20 Mbit/s, looped ten times: ~200 MB without a long encode.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        "20M",
        "-maxrate",
        "20M",
        "-bufsize",
        "40M",
        "-g",
        "50",
        "-c:a",
        "aac",
        "-shortest",
        dir.join("ten.mp4").to_str().unwrap(),
    ]);
    let input = dir.join("movie.mp4");
    ffmpeg(&[
        "-stream_loop",
        "9",
        "-i",
        dir.join("ten.mp4").to_str().unwrap(),
        "-c",
        "copy",
        input.to_str().unwrap(),
    ]);
    let size = std::fs::metadata(&input).unwrap().len();
    println!("input: {} MB, {rounds} rounds", size / 1_000_000);

    let mut remux = Vec::new();
    let mut ingest = Vec::new();
    let mut phases = Vec::new();
    let (mut remux_cpu, mut ingest_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let out = dir.join("remux.mkv");
        settle();
        let (t, c) = (Instant::now(), cpu_time());
        ffmpeg(&[
            "-i",
            input.to_str().unwrap(),
            "-c",
            "copy",
            out.to_str().unwrap(),
        ]);
        remux.push(t.elapsed());
        remux_cpu.push(cpu_time() - c);
        std::fs::remove_file(&out).unwrap();

        let data = DataDir::create(dir.join(format!("data{round}"))).unwrap();
        settle();
        let (t, c) = (Instant::now(), cpu_time());
        let done = ingest_timed(
            &data,
            &IngestRequest {
                input: input.clone(),
                title: "Bench".into(),
                price: 0,
                id: None,
            },
        )
        .unwrap_or_else(|e| panic!("ingest: {e}"));
        ingest.push(t.elapsed());
        ingest_cpu.push(cpu_time() - c);
        phases.push(done.timings);
        std::fs::remove_dir_all(data.root()).unwrap();
        println!(
            "round {round}: ffmpeg remux {:>6.0} ms   ingest {:>6.0} ms",
            remux[round].as_secs_f64() * 1e3,
            ingest[round].as_secs_f64() * 1e3
        );
    }
    let (rmin, imin) = (
        remux.iter().min().copied().unwrap_or_default(),
        ingest.iter().min().copied().unwrap_or_default(),
    );
    println!(
        "best: ffmpeg remux {:.0} ms, ingest {:.0} ms, ratio {:.2}",
        rmin.as_secs_f64() * 1e3,
        imin.as_secs_f64() * 1e3,
        imin.as_secs_f64() / rmin.as_secs_f64()
    );
    let (r, i) = (median(remux), median(ingest));
    let (rc, ic) = (median(remux_cpu), median(ingest_cpu));
    println!(
        "median CPU time: ffmpeg remux {:.0} ms, ingest {:.0} ms, ratio {:.2}",
        rc.as_secs_f64() * 1e3,
        ic.as_secs_f64() * 1e3,
        ic.as_secs_f64() / rc.as_secs_f64()
    );
    let phase = |f: fn(&IngestTimings) -> Duration| median(phases.iter().map(f).collect());
    println!(
        "median: ffmpeg remux {:.0} ms, ingest {:.0} ms, ratio {:.2}",
        r.as_secs_f64() * 1e3,
        i.as_secs_f64() * 1e3,
        i.as_secs_f64() / r.as_secs_f64()
    );
    println!(
        "ingest phases (median): remux with early hashing {:.0} ms, rest of hashing + poster + fsync {:.0} ms, commit {:.0} ms",
        phase(|t| t.remux).as_secs_f64() * 1e3,
        phase(|t| t.hash).as_secs_f64() * 1e3,
        phase(|t| t.commit).as_secs_f64() * 1e3,
    );
}
