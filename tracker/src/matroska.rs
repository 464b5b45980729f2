//! Just enough of Matroska's EBML to read what ingest needs from the head of a stream file:
//! its duration, and whether the index (Cues) comes before the first Cluster, so that a
//! player can seek without first reading the end of the file.

use std::io::Read;
use std::path::Path;

const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const CUES: u32 = 0x1C53_BB6B;
const CLUSTER: u32 = 0x1F43_B675;

/// Bytes of the file's head that are read: far more than any header plus reserved index.
const HEAD_BYTES: u64 = 8 << 20;

/// What the head of a Matroska file says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatroskaHead {
    /// Playing time, if the Info element has a Duration.
    pub duration_ms: Option<u64>,
    /// Whether a Cues element was met before the first Cluster.
    pub cues_first: bool,
}

/// Reads the head of the Matroska file at `path`; `None` if it is not Matroska.
pub fn read_head(path: &Path) -> std::io::Result<Option<MatroskaHead>> {
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
    };
    while at < end {
        let Some((id, data, len)) = element(bytes, at) else {
            break;
        };
        match id {
            CLUSTER => break,
            CUES => head.cues_first = true,
            INFO => {
                head.duration_ms =
                    info_duration(bytes.get(data..data.saturating_add(len).min(bytes.len()))?)
            }
            _ => {}
        }
        at = data.saturating_add(len);
    }
    Some(head)
}

fn info_duration(info: &[u8]) -> Option<u64> {
    let mut scale_ns = 1_000_000u64;
    let mut duration = None;
    let mut at = 0;
    while at < info.len() {
        let (id, data, len) = element(info, at)?;
        let value = info.get(data..data + len)?;
        match (id, len) {
            (TIMESTAMP_SCALE, 1..=8) => {
                scale_ns = value.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            }
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
