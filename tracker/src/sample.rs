//! A sample movie made with ffmpeg from its built-in test sources: what the README's first
//! command ingests, and what tests and the demo network use when no real movie is at hand.

use std::path::Path;

use crate::ffmpeg::{ToolError, run_ffmpeg};

/// Writes an MP4 (H.264 + AAC) of `seconds` at `width`×`height`, 25 fps, to `out`.
pub fn make_sample_movie(
    out: &Path,
    seconds: u32,
    width: u32,
    height: u32,
) -> Result<(), ToolError> {
    run_ffmpeg(&[
        "-v".as_ref(),
        "error".as_ref(),
        "-y".as_ref(),
        "-f".as_ref(),
        "lavfi".as_ref(),
        "-i".as_ref(),
        format!("testsrc2=size={width}x{height}:rate=25").as_ref(),
        "-f".as_ref(),
        "lavfi".as_ref(),
        "-i".as_ref(),
        "sine=frequency=440:sample_rate=48000".as_ref(),
        "-t".as_ref(),
        seconds.to_string().as_ref(),
        "-c:v".as_ref(),
        "libx264".as_ref(),
        "-preset".as_ref(),
        "veryfast".as_ref(),
        "-b:v".as_ref(),
        "3M".as_ref(),
        "-g".as_ref(),
        "50".as_ref(),
        "-c:a".as_ref(),
        "aac".as_ref(),
        "-shortest".as_ref(),
        out.as_os_str(),
    ])
}
