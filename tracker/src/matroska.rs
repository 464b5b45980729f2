//! Just enough of Matroska's EBML to read what ingest needs from the head of a stream file:
//! its duration, its tracks, and whether the index (Cues) comes before the first Cluster, so
//! that a player can seek without first reading the end of the file.

use std::io::Read;
use std::path::Path;

const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const CUES: u32 = 0x1C53_BB6B;
const CLUSTER: u32 = 0x1F43_B675;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;

/// Matroska codec IDs of the codecs ingest copies, with ffmpeg's short names.
const KNOWN_CODECS: &[(&str, &str)] = &[
    ("V_MPEG4/ISO/AVC", "h264"),
    ("V_MPEGH/ISO/HEVC", "hevc"),
    ("V_VP8", "vp8"),
    ("V_VP9", "vp9"),
    ("V_AV1", "av1"),
    ("V_MPEG1", "mpeg1video"),
    ("V_MPEG2", "mpeg2video"),
    ("V_MPEG4/ISO/ASP", "mpeg4"),
    ("V_MPEG4/ISO/SP", "mpeg4"),
    ("V_THEORA", "theora"),
    ("V_PRORES", "prores"),
    ("V_FFV1", "ffv1"),
    ("A_AAC", "aac"),
    ("A_OPUS", "opus"),
    ("A_VORBIS", "vorbis"),
    ("A_FLAC", "flac"),
    ("A_AC3", "ac3"),
    ("A_EAC3", "eac3"),
    ("A_DTS", "dts"),
    ("A_TRUEHD", "truehd"),
    ("A_ALAC", "alac"),
    ("A_MPEG/L3", "mp3"),
    ("A_MPEG/L2", "mp2"),
    ("A_PCM/INT/LIT", "pcm"),
    ("A_PCM/INT/BIG", "pcm"),
    ("A_PCM/FLOAT/IEEE", "pcm"),
    ("S_TEXT/UTF8", "subrip"),
    ("S_TEXT/ASS", "ass"),
    ("S_TEXT/SSA", "ssa"),
    ("S_TEXT/WEBVTT", "webvtt"),
    ("S_HDMV/PGS", "hdmv_pgs_subtitle"),
    ("S_VOBSUB", "dvd_subtitle"),
    ("S_DVBSUB", "dvb_subtitle"),
];

/// What a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Subtitle,
    Other,
}

/// One track of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub kind: TrackKind,
    /// Matroska's codec ID, e.g. "V_MPEG4/ISO/AVC".
    pub codec_id: String,
    pub width: u32,
    pub height: u32,
}

impl Track {
    /// ffmpeg's short name of the codec ("h264"), or `None` for a codec ingest does not
    /// know to be a plain copy.
    pub fn codec_name(&self) -> Option<&'static str> {
        KNOWN_CODECS
            .iter()
            .find(|(id, _)| *id == self.codec_id)
            .map(|(_, name)| *name)
    }
}

/// Bytes of the file's head that are read: far more than any header plus reserved index.
const HEAD_BYTES: u64 = 8 << 20;

/// What the head of a Matroska file says.
#[derive(Clone, Debug, PartialEq)]
pub struct MatroskaHead {
    /// Playing time, if the Info element has a Duration.
    pub duration_ms: Option<u64>,
    /// Whether a Cues element was met before the first Cluster.
    pub cues_first: bool,
    /// The tracks, in file order.
    pub tracks: Vec<Track>,
}

impl MatroskaHead {
    /// The first video track.
    pub fn video(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Video)
    }

    /// The first audio track.
    pub fn audio(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Audio)
    }

    /// A movie ingest can take as it is: a video track, and only codecs it knows.
    pub fn is_plain_movie(&self) -> bool {
        self.video().is_some() && self.tracks.iter().all(|t| t.codec_name().is_some())
    }
}

/// Reads the head of the Matroska file at `path`; `None` if it is not Matroska.
pub fn read_head(path: &Path) -> std::io::Result<Option<MatroskaHead>> {
    // Reads only the head: a long movie's clusters are never touched.
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(HEAD_BYTES)
        .read_to_end(&mut head)?;
    Ok(parse_head(&head))
}

/// An element's ID (marker bits kept) or size (marker bit cleared) at `at`, and its length.
fn vint(bytes: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *bytes.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let raw = bytes.get(at..at + len)?;
    let mut value = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & (0xFF >> len)
    };
    for &b in &raw[1..] {
        value = value << 8 | u64::from(b);
    }
    Some((value, len))
}

/// (id, start of data, data length) of the element at `at`; an unknown size reads to the end.
fn element(bytes: &[u8], at: usize) -> Option<(u32, usize, usize)> {
    let (id, id_len) = vint(bytes, at, true)?;
    let (size, size_len) = vint(bytes, at + id_len, false)?;
    let data = at + id_len + size_len;
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    let len = if unknown {
        bytes.len().saturating_sub(data)
    } else {
        usize::try_from(size).ok()?
    };
    Some((u32::try_from(id).ok()?, data, len))
}

fn parse_head(bytes: &[u8]) -> Option<MatroskaHead> {
    // The EBML header, then the Segment.
    let (_, data, len) = element(bytes, 0)?;
    let (id, mut at, seg_len) = element(bytes, data + len)?;
    if id != SEGMENT {
        return None;
    }
    let end = at.saturating_add(seg_len).min(bytes.len());
    let mut head = MatroskaHead {
        duration_ms: None,
        cues_first: false,
        tracks: Vec::new(),
    };
    while at < end {
        let Some((id, data, len)) = element(bytes, at) else {
            break;
        };
        match id {
            CLUSTER => break,
            CUES => head.cues_first = true,
            INFO => head.duration_ms = info_duration(children(bytes, data, len)?),
            TRACKS => head.tracks = tracks(children(bytes, data, len)?)?,
            _ => {}
        }
        at = data.saturating_add(len);
    }
    Some(head)
}

/// The bytes of an element's data, cut at the end of what was read.
fn children(bytes: &[u8], data: usize, len: usize) -> Option<&[u8]> {
    bytes.get(data..data.saturating_add(len).min(bytes.len()))
}

/// Calls `each(id, data)` for every child element in `bytes`.
fn for_each_child(bytes: &[u8], mut each: impl FnMut(u32, &[u8])) -> Option<()> {
    let mut at = 0;
    while at < bytes.len() {
        let (id, data, len) = element(bytes, at)?;
        each(id, bytes.get(data..data + len)?);
        at = data + len;
    }
    Some(())
}

fn uint(value: &[u8]) -> u64 {
    value.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
}

fn tracks(bytes: &[u8]) -> Option<Vec<Track>> {
    let mut tracks = Vec::new();
    for_each_child(bytes, |id, entry| {
        if id != TRACK_ENTRY {
            return;
        }
        let mut track = Track {
            kind: TrackKind::Other,
            codec_id: String::new(),
            width: 0,
            height: 0,
        };
        for_each_child(entry, |id, value| match id {
            TRACK_TYPE => {
                track.kind = match uint(value) {
                    1 => TrackKind::Video,
                    2 => TrackKind::Audio,
                    0x11 => TrackKind::Subtitle,
                    _ => TrackKind::Other,
                }
            }
            CODEC_ID => {
                track.codec_id = String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_owned()
            }
            VIDEO => {
                for_each_child(value, |id, v| match id {
                    PIXEL_WIDTH => track.width = u32::try_from(uint(v)).unwrap_or(0),
                    PIXEL_HEIGHT => track.height = u32::try_from(uint(v)).unwrap_or(0),
                    _ => {}
                });
            }
            _ => {}
        });
        tracks.push(track);
    })?;
    Some(tracks)
}

fn info_duration(info: &[u8]) -> Option<u64> {
    let mut scale_ns = 1_000_000u64;
    let mut duration = None;
    let mut at = 0;
    while at < info.len() {
        let (id, data, len) = element(info, at)?;
        let value = info.get(data..data + len)?;
        match (id, len) {
            (TIMESTAMP_SCALE, 1..=8) => scale_ns = uint(value),
            (DURATION, 4) => duration = Some(f64::from(f32::from_be_bytes(value.try_into().ok()?))),
            (DURATION, 8) => duration = Some(f64::from_be_bytes(value.try_into().ok()?)),
            _ => {}
        }
        at = data + len;
    }
    duration
        .filter(|d| d.is_finite() && *d > 0.0)
        .map(|d| (d * scale_ns as f64 / 1e6).round() as u64)
}
