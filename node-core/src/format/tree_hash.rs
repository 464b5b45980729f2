//! Segment hashes that add up to the file's BLAKE3 hash. BLAKE3 is a tree hash: with
//! segments of a power-of-two number of 1 KiB chunks, each segment is one subtree, its
//! chaining value is the segment's hash, and merging those values the way BLAKE3 splits its
//! tree gives exactly `blake3(file)` (what `b3sum` prints). Segments can so be hashed in any
//! order, even while the file is still being written, and the whole-file hash costs nothing
//! more.

use blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

use super::Digest;

/// The hash of segment bytes `data` at byte `offset` of a file of `segments` segments: its
/// BLAKE3 chaining value, or the file's BLAKE3 hash when the file is this one segment.
pub fn segment_hash(data: &[u8], offset: u64, segments: u32) -> Digest {
    if segments == 1 {
        return blake3::hash(data).into();
    }
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(data);
    Digest(hasher.finalize_non_root())
}

/// The file's BLAKE3 hash from its segment hashes, in order.
pub fn file_hash(segments: &[Digest]) -> Digest {
    match segments {
        [] => blake3::hash(&[]).into(),
        [only] => *only,
        _ => {
            let (left, right) = split(segments);
            Digest(merge_subtrees_root(&subtree(left), &subtree(right), Mode::Hash).into())
        }
    }
}

/// BLAKE3 gives a parent's left child the largest power of two of chunks below the total;
/// with equal power-of-two segments (the last may be short) that is the largest power of two
/// of segments below their count.
fn split(segments: &[Digest]) -> (&[Digest], &[Digest]) {
    let below = segments.len() - 1;
    segments.split_at(1 << (usize::BITS - 1 - below.leading_zeros()))
}

fn subtree(segments: &[Digest]) -> [u8; 32] {
    match segments {
        [only] => only.0,
        _ => {
            let (left, right) = split(segments);
            merge_subtrees_non_root(&subtree(left), &subtree(right), Mode::Hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_hashes_add_up_to_the_plain_blake3_of_the_file() {
        for segment_size in [1024usize, 4096] {
            for len in [
                1usize,
                1000,
                1024,
                1025,
                4096,
                4097,
                3 * 4096 + 7,
                8 * 4096,
                9 * 4096 - 1,
                23 * 4096 + 100,
            ] {
                let file: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let count = len.div_ceil(segment_size) as u32;
                let hashes: Vec<Digest> = file
                    .chunks(segment_size)
                    .enumerate()
                    .map(|(s, data)| segment_hash(data, (s * segment_size) as u64, count))
                    .collect();
                assert_eq!(
                    file_hash(&hashes),
                    blake3::hash(&file).into(),
                    "{segment_size} {len}"
                );
            }
        }
    }
}
