//! The ffmpeg and ffprobe processes ingest runs: probing an input, remuxing it into
//! Matroska with its index at the front, and grabbing a poster frame. Every child dies with
//! the thread that started it, so a killed ingest leaves no ffmpeg writing behind it.

use std::io::{BufRead, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// `path` as an input ffmpeg reads as a plain file: never an option (a leading '-') or a
/// protocol (`http:`, `concat:`, ...).
pub fn file_input(path: &Path) -> std::ffi::OsString {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut arg = std::ffi::OsString::from("file:");
    arg.push(absolute.as_os_str());
    arg
}

fn command(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    if tool == "ffmpeg" {
        cmd.arg("-nostdin");
    }
    cmd.stdin(Stdio::null());
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

/// A started tool whose output is being collected.
#[derive(Debug)]
pub struct Running {
    tool: &'static str,
    child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<String>,
}

/// Called with each line a tool writes to stderr, as it writes it.
pub type LineWatcher = Box<dyn FnMut(&str) + Send>;

impl Running {
    fn spawn(tool: &'static str, cmd: Command) -> Result<Running, ToolError> {
        Running::spawn_watched(tool, cmd, None)
    }

    fn spawn_watched(
        tool: &'static str,
        mut cmd: Command,
        mut watch: Option<LineWatcher>,
    ) -> Result<Running, ToolError> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ToolError::Missing { tool, source })?;
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        Ok(Running {
            tool,
            child,
            stdout: std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(o) = out.as_mut() {
                    let _ = o.read_to_end(&mut v);
                }
                v
            }),
            stderr: std::thread::spawn(move || {
                let mut all = String::new();
                let Some(e) = err.take() else { return all };
                for line in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                    if let Some(watch) = watch.as_mut() {
                        watch(&line);
                    }
                    all.push_str(&line);
                    all.push('\n');
                }
                all
            }),
        })
    }

    /// Waits for the end; returns stdout and stderr, or the most telling line of stderr.
    pub fn wait(mut self) -> Result<(Vec<u8>, String), ToolError> {
        let tool = self.tool;
        let status = self
            .child
            .wait()
            .map_err(|source| ToolError::Missing { tool, source })?;
        let out = self.stdout.join().unwrap_or_default();
        let err = self.stderr.join().unwrap_or_default();
        if status.success() {
            Ok((out, err))
        } else {
            Err(ToolError::Failed(
                telling_line(&err).unwrap_or_else(|| format!("{tool} failed ({status})")),
            ))
        }
    }
}

fn run(tool: &'static str, cmd: Command) -> Result<(Vec<u8>, String), ToolError> {
    Running::spawn(tool, cmd)?.wait()
}

/// The line of ffmpeg's stderr that says what went wrong, without the "[demuxer @ 0x…]"
/// prefix. ffmpeg often ends with a generic line, so prefer the first specific one; when the
/// lines carry their level (`-loglevel level+…`), look only at errors.
fn telling_line(stderr: &str) -> Option<String> {
    let strip_context = |l: &str| -> String {
        let l = l.trim();
        match (l.starts_with('['), l.find("] ")) {
            (true, Some(end)) => l[end + 2..].trim().to_owned(),
            _ => l.to_owned(),
        }
    };
    let leveled = stderr.lines().any(|l| l.starts_with("[info] "));
    let lines: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            if !leveled {
                return Some(l);
            }
            l.strip_prefix("[error] ")
                .or_else(|| l.strip_prefix("[fatal] "))
        })
        .map(strip_context)
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
    let mut cmd = command("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ])
    .arg(file_input(path));
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

/// The stream mapping to try before the input is probed: every video, audio, subtitle and
/// attachment stream, copied. Right for nearly every input; [`copies_everything`] tells.
pub fn copy_all_args() -> Vec<String> {
    [
        "-map", "0:V", "-map", "0:a?", "-map", "0:s?", "-map", "0:t?", "-c", "copy",
    ]
    .map(String::from)
    .to_vec()
}

/// Whether [`stream_args`] would copy every stream [`copy_all_args`] maps, and map no other.
pub fn copies_everything(probe: &Probe) -> bool {
    probe.streams.iter().all(|s| match s.kind {
        StreamKind::Video => MKV_VIDEO.contains(&s.codec.as_str()),
        StreamKind::Audio => MKV_AUDIO.contains(&s.codec.as_str()),
        StreamKind::Subtitle => MKV_SUBTITLE.contains(&s.codec.as_str()),
        StreamKind::Attachment | StreamKind::Other => true,
    })
}

/// A running remux of an input into Matroska.
#[derive(Debug)]
pub struct Remux(Running);

impl Remux {
    /// Starts remuxing `input` into Matroska at `output` with the stream arguments
    /// `streams`, reserving `reserve` bytes at the front for the index (cues). The input's
    /// duration, as soon as ffmpeg has read it, goes to `duration` (milliseconds).
    pub fn start(
        input: &Path,
        output: &Path,
        streams: &[String],
        reserve: u64,
        duration: Option<std::sync::mpsc::Sender<u64>>,
    ) -> Result<Remux, ToolError> {
        let mut cmd = command("ffmpeg");
        let watch: Option<LineWatcher> = duration.map(|tx| {
            Box::new(move |line: &str| {
                if let Some(ms) = parse_duration_line(line) {
                    let _ = tx.send(ms);
                }
            }) as LineWatcher
        });
        cmd.args(["-loglevel", "level+info", "-nostats", "-xerror", "-y", "-i"])
            .arg(file_input(input))
            .args(streams)
            .args(["-map_metadata", "0", "-reserve_index_space"])
            .arg(reserve.to_string())
            .args(["-f", "matroska"])
            .arg(output);
        Running::spawn_watched("ffmpeg", cmd, watch).map(Remux)
    }

    /// Waits for the end. Returns how many bytes the cues needed when ffmpeg says the
    /// reserve was too small (it then puts them at the end; the caller retries with room).
    pub fn wait(self) -> Result<Option<u64>, ToolError> {
        let reserve_hint = |l: &str| {
            l.rsplit("needed:")
                .next()
                .and_then(|n| n.trim().trim_end_matches(['.', ')']).trim().parse().ok())
        };
        let (_, stderr) = self.0.wait()?;
        Ok(stderr
            .lines()
            .find(|l| l.contains("Insufficient space reserved for cues"))
            .and_then(reserve_hint))
    }
}

/// The milliseconds of ffmpeg's input banner line "  Duration: 00:01:40.02, start: …".
fn parse_duration_line(line: &str) -> Option<u64> {
    let rest = line.split_once("Duration: ")?.1;
    let hms = rest.split(',').next()?.trim();
    let mut parts = hms.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    let seconds =
        h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| (seconds * 1000.0).round() as u64)
}

/// Runs ffmpeg with `args` (after `-nostdin`) and waits for it.
pub fn run_ffmpeg(args: &[&std::ffi::OsStr]) -> Result<(), ToolError> {
    let mut cmd = command("ffmpeg");
    cmd.args(args);
    run("ffmpeg", cmd).map(|_| ())
}

/// One frame of `input` near `at_ms`, as a binary PPM image (empty if the position is past the
/// end): uncompressed, so neither side spends time on a codec.
pub fn grab_frame(input: &Path, at_ms: u64) -> Result<Vec<u8>, ToolError> {
    let mut cmd = command("ffmpeg");
    // Decoding only keyframes makes the frame cheap: the first keyframe at or after `at_ms`.
    cmd.args(["-v", "error", "-skip_frame", "nokey", "-ss"])
        .arg(format!("{}.{:03}", at_ms / 1000, at_ms % 1000))
        .arg("-i")
        .arg(file_input(input))
        .args([
            "-map",
            "0:V:0",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "ppm",
            "-",
        ]);
    run("ffmpeg", cmd).map(|(out, _)| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_is_read_from_ffmpegs_banner() {
        let line = "[info]   Duration: 00:01:40.02, start: 0.000000, bitrate: 15636 kb/s";
        assert_eq!(parse_duration_line(line), Some(100_020));
        assert_eq!(
            parse_duration_line("  Duration: 01:00:00.50, start: 1.4"),
            Some(3_600_500)
        );
        assert_eq!(parse_duration_line("  Duration: N/A, bitrate: N/A"), None);
        assert_eq!(parse_duration_line("[info] Stream #0:0: Video: h264"), None);
    }

    #[test]
    fn the_telling_line_is_the_first_specific_error() {
        let plain = "[mov,mp4 @ 0x55d0] moov atom not found\nt.mp4: Invalid data found when processing input\n";
        assert_eq!(telling_line(plain).as_deref(), Some("moov atom not found"));
        let leveled = "[info] Input #0, mov, from 'a.mov':\n[info]   Duration: 00:00:03.00\n\
                       [error] [matroska @ 0x1] Subtitle codec 94213 is not supported.\n\
                       [fatal] Conversion failed!\n";
        assert_eq!(
            telling_line(leveled).as_deref(),
            Some("Subtitle codec 94213 is not supported.")
        );
        assert_eq!(telling_line(""), None);
    }
}
