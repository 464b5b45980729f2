//! The ffmpeg and ffprobe processes ingest runs: probing an input, remuxing it into
//! Matroska with its index at the front, and grabbing a poster frame. Every child dies with
//! the thread that started it, so a killed ingest leaves no ffmpeg writing behind it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// What kind of stream ffprobe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Video,
    Audio,
    Subtitle,
    Attachment,
    Other,
}

/// One input stream.
#[derive(Clone, Debug)]
pub struct ProbedStream {
    pub index: u32,
    pub kind: StreamKind,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

/// What ffprobe tells of a file.
#[derive(Clone, Debug)]
pub struct Probe {
    pub format_name: String,
    pub duration_ms: Option<u64>,
    pub streams: Vec<ProbedStream>,
}

impl Probe {
    /// The first real video stream (cover art does not count).
    pub fn video(&self) -> Option<&ProbedStream> {
        self.streams.iter().find(|s| s.kind == StreamKind::Video)
    }

    pub fn audio(&self) -> Option<&ProbedStream> {
        self.streams.iter().find(|s| s.kind == StreamKind::Audio)
    }
}

/// A failure of an ffmpeg tool, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} is not installed or cannot start ({source}); run installer/deps.sh")]
    Missing {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn command(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.arg("-nostdin").stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill this child when
    // the thread that forked it dies.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs `cmd` to the end; returns stdout, or the most telling line of stderr on failure.
fn run(tool: &'static str, mut cmd: Command) -> Result<(Vec<u8>, String), ToolError> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Missing { tool, source })?;
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut out = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut out);
    }
    let status = child
        .wait()
        .map_err(|source| ToolError::Missing { tool, source })?;
    let err = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok((out, err))
    } else {
        Err(ToolError::Failed(
            telling_line(&err).unwrap_or_else(|| format!("{tool} failed ({status})")),
        ))
    }
}

/// The line of ffmpeg's stderr that says what went wrong, without the "[demuxer @ 0x…]"
/// prefix. ffmpeg often ends with a generic line, so prefer the first specific one.
fn telling_line(stderr: &str) -> Option<String> {
    let clean = |l: &str| -> String {
        let l = l.trim();
        match (l.starts_with('['), l.find("] ")) {
            (true, Some(end)) => l[end + 2..].trim().to_owned(),
            _ => l.to_owned(),
        }
    };
    let lines: Vec<String> = stderr
        .lines()
        .map(clean)
        .filter(|l| !l.is_empty())
        .collect();
    let generic = ["Conversion failed!", "Error opening input files"];
    lines
        .iter()
        .find(|l| !generic.iter().any(|g| l.starts_with(g)))
        .or(lines.first())
        .cloned()
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawStream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    disposition: Option<RawDisposition>,
}

#[derive(Deserialize)]
struct RawDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

/// Runs ffprobe on `path`.
pub fn probe(path: &Path) -> Result<Probe, ToolError> {
    let mut cmd = Command::new("ffprobe");
    cmd.stdin(Stdio::null());
    cmd.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ])
    .arg(path);
    let (out, _) = run("ffprobe", cmd)?;
    let raw: RawProbe = serde_json::from_slice(&out)
        .map_err(|e| ToolError::Failed(format!("ffprobe printed something unexpected: {e}")))?;
    let format = raw
        .format
        .ok_or_else(|| ToolError::Failed("ffprobe found no container".into()))?;
    let streams = raw
        .streams
        .into_iter()
        .map(|s| {
            let cover = s.disposition.is_some_and(|d| d.attached_pic != 0);
            let kind = match s.codec_type.as_deref() {
                Some("video") if !cover => StreamKind::Video,
                Some("audio") => StreamKind::Audio,
                Some("subtitle") => StreamKind::Subtitle,
                Some("attachment") => StreamKind::Attachment,
                _ => StreamKind::Other,
            };
            ProbedStream {
                index: s.index,
                kind,
                codec: s.codec_name.unwrap_or_default(),
                width: s.width.unwrap_or(0),
                height: s.height.unwrap_or(0),
            }
        })
        .collect();
    let duration_ms = format
        .duration
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .map(|d| (d * 1000.0).round() as u64);
    Ok(Probe {
        format_name: format.format_name.unwrap_or_default(),
        duration_ms,
        streams,
    })
}

/// Video codecs Matroska carries as they are.
const MKV_VIDEO: &[&str] = &[
    "h264",
    "hevc",
    "vp8",
    "vp9",
    "av1",
    "mpeg1video",
    "mpeg2video",
    "mpeg4",
    "theora",
    "prores",
    "ffv1",
    "mjpeg",
    "msmpeg4v3",
    "vc1",
    "dirac",
];
/// Audio codecs Matroska carries as they are.
const MKV_AUDIO: &[&str] = &[
    "aac",
    "mp3",
    "mp2",
    "opus",
    "vorbis",
    "flac",
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "alac",
    "pcm_s16le",
    "pcm_s24le",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_u8",
    "pcm_s16be",
    "pcm_s24be",
];
/// Subtitle codecs Matroska carries as they are; text ones it cannot are turned into SRT.
const MKV_SUBTITLE: &[&str] = &[
    "subrip",
    "ass",
    "ssa",
    "webvtt",
    "hdmv_pgs_subtitle",
    "dvd_subtitle",
    "dvb_subtitle",
];
const TEXT_SUBTITLE: &[&str] = &["mov_text", "text", "microdvd", "sami", "realtext"];

/// How each input stream reaches the stream file: copied whenever Matroska can carry it,
/// transcoded only when it cannot.
pub fn stream_args(probe: &Probe) -> Vec<String> {
    let mut args = Vec::new();
    let mut out = 0;
    for s in &probe.streams {
        let codec: &[&str] = match s.kind {
            StreamKind::Video if MKV_VIDEO.contains(&s.codec.as_str()) => &["copy"],
            StreamKind::Video => &[
                "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            ],
            StreamKind::Audio if MKV_AUDIO.contains(&s.codec.as_str()) => &["copy"],
            StreamKind::Audio => &["libopus", "-b", "128k"],
            StreamKind::Subtitle if MKV_SUBTITLE.contains(&s.codec.as_str()) => &["copy"],
            StreamKind::Subtitle if TEXT_SUBTITLE.contains(&s.codec.as_str()) => &["srt"],
            StreamKind::Attachment => &["copy"],
            _ => continue,
        };
        args.push("-map".into());
        args.push(format!("0:{}", s.index));
        args.push(format!("-c:{out}"));
        args.push(codec[0].into());
        for extra in &codec[1..] {
            // Per-stream options that follow the encoder apply to this output stream.
            if extra.starts_with('-') {
                args.push(format!("{extra}:{out}"));
            } else {
                args.push((*extra).into());
            }
        }
        out += 1;
    }
    args
}

/// Remuxes `input` into Matroska at `output`, reserving `reserve` bytes at the front for the
/// index (cues). Returns how many bytes the cues needed when ffmpeg says the reserve was too
/// small (it then puts them at the end, and the caller retries with more room).
pub fn remux(
    input: &Path,
    output: &Path,
    streams: &[String],
    reserve: u64,
) -> Result<Option<u64>, ToolError> {
    let mut cmd = command("ffmpeg");
    cmd.args(["-v", "warning", "-xerror", "-y", "-i"])
        .arg(input)
        .args(streams)
        .args(["-map_metadata", "0", "-reserve_index_space"])
        .arg(reserve.to_string())
        .args(["-f", "matroska"])
        .arg(output);
    let (_, stderr) = run("ffmpeg", cmd)?;
    Ok(stderr
        .lines()
        .find(|l| l.contains("Insufficient space reserved for cues"))
        .map(|l| {
            l.rsplit("needed:")
                .next()
                .and_then(|n| n.trim().trim_end_matches(['.', ')']).trim().parse().ok())
                .unwrap_or(reserve * 4)
        }))
}

/// Runs ffmpeg with `args` (after `-nostdin`) and waits for it.
pub fn run_ffmpeg(args: &[&std::ffi::OsStr]) -> Result<(), ToolError> {
    let mut cmd = command("ffmpeg");
    cmd.args(args);
    run("ffmpeg", cmd).map(|_| ())
}

/// One frame of `input` at `at_ms`, as PNG bytes (empty if the position is past the end).
pub fn grab_frame(input: &Path, at_ms: u64) -> Result<Vec<u8>, ToolError> {
    let mut cmd = command("ffmpeg");
    cmd.args(["-v", "error", "-ss"])
        .arg(format!("{}.{:03}", at_ms / 1000, at_ms % 1000))
        .arg("-i")
        .arg(input)
        .args([
            "-map",
            "0:V:0",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "-",
        ]);
    run("ffmpeg", cmd).map(|(out, _)| out)
}
