//! The chunk format end to end on real files: a stream file is hashed into its manifest,
//! chunks are produced on demand, verified one by one, and segments rebuilt byte for byte.

use std::io::Write;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rivulet_node_core::format::{FormatError, LeafTable, Manifest, StreamChunker, build_manifest};

struct Movie {
    _dir: tempfile::TempDir,
    bytes: Vec<u8>,
    chunker: StreamChunker,
}

fn movie(len: usize, segment_size: u32, k: u16, n: u16, seed: u64) -> Movie {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.mkv");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let (manifest, leaves) = build_manifest(&path, segment_size, k, n).unwrap();
    // The manifest and leaf table survive their on-disk forms.
    let manifest = Manifest::from_json(&manifest.to_json()).unwrap();
    let mut table = Vec::new();
    leaves.write(&mut table).unwrap();
    let leaves = LeafTable::read(&mut table.as_slice(), &manifest).unwrap();
    let chunker = StreamChunker::open(&path, manifest, leaves).unwrap();
    Movie {
        _dir: dir,
        bytes,
        chunker,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every pattern of up to n−k missing chunks: the survivors, verified one by one,
    /// rebuild every segment and so the whole file byte for byte.
    #[test]
    fn any_k_verified_chunks_rebuild_the_file(
        len in 1usize..20_000,
        segment_shift in 10u32..=12,
        k in 1u16..=16,
        extra in 0u16..=48,
        seed in any::<u64>(),
    ) {
        let n = k + extra;
        let m = movie(len, 1 << segment_shift, k, n, seed);
        let manifest = m.chunker.manifest().clone();
        let codec = manifest.codec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rebuilt = Vec::new();
        for segment in 0..manifest.segment_count() {
            let mut indices: Vec<u16> = (0..n).collect();
            indices.shuffle(&mut rng);
            let keep = rng.random_range(usize::from(k)..=usize::from(n));
            let wires: Vec<(u16, Vec<u8>)> = indices[..keep]
                .iter()
                .map(|&i| (i, m.chunker.chunk(segment, i).unwrap()))
                .collect();
            let payloads: Vec<(u16, &[u8])> = wires
                .iter()
                .map(|(i, w)| (*i, manifest.verify_chunk(segment, *i, w).unwrap()))
                .collect();
            rebuilt.extend(manifest.rebuild_segment(&codec, segment, &payloads).unwrap());
        }
        prop_assert_eq!(rebuilt, m.bytes);
    }

    /// A single flipped bit anywhere in a chunk (header, proof or payload) is caught by
    /// `verify_chunk`, before the chunk could reach the decoder.
    #[test]
    fn a_flipped_bit_in_any_chunk_is_caught_before_decode(
        segment_pick in any::<prop::sample::Index>(),
        index_pick in any::<prop::sample::Index>(),
        bit_pick in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let m = movie(10_000, 2048, 4, 16, seed);
        let manifest = m.chunker.manifest();
        let segment = segment_pick.index(manifest.segment_count() as usize) as u32;
        let index = index_pick.index(16) as u16;
        let mut wire = m.chunker.chunk(segment, index).unwrap();
        prop_assert!(manifest.verify_chunk(segment, index, &wire).is_ok());
        let bit = bit_pick.index(wire.len() * 8);
        wire[bit / 8] ^= 1 << (bit % 8);
        let caught = matches!(
            manifest.verify_chunk(segment, index, &wire),
            Err(FormatError::BadChunk { .. })
        );
        prop_assert!(caught, "bit {} of chunk {}/{} passed", bit, segment, index);
    }
}

#[test]
fn a_chunk_asked_for_under_another_name_is_refused() {
    let m = movie(10_000, 2048, 4, 16, 7);
    let manifest = m.chunker.manifest();
    let wire = m.chunker.chunk(1, 5).unwrap();
    assert!(manifest.verify_chunk(1, 6, &wire).is_err(), "wrong index");
    assert!(manifest.verify_chunk(2, 5, &wire).is_err(), "wrong segment");
    assert!(
        manifest.verify_chunk(99, 5, &wire).is_err(),
        "no such segment"
    );
    assert!(
        manifest
            .verify_chunk(1, 5, &wire[..wire.len() - 1])
            .is_err(),
        "truncated"
    );
    assert!(manifest.verify_chunk(1, 5, &[]).is_err(), "empty");
}

#[test]
fn a_corrupted_stream_file_yields_chunks_that_fail_verification() {
    let m = movie(10_000, 2048, 4, 16, 8);
    let manifest = m.chunker.manifest().clone();
    let path = m._dir.path().join("stream.mkv");
    let mut bytes = m.bytes.clone();
    bytes[2048 * 3 + 100] ^= 0x40; // segment 3, data shard 0
    std::fs::write(&path, &bytes).unwrap();
    let mut table = Vec::new();
    let (_, leaves) = build_manifest(&path, 2048, 4, 16).unwrap();
    leaves.write(&mut table).unwrap();
    // The leaf table of the corrupted file no longer matches the original manifest...
    assert!(matches!(
        LeafTable::read(&mut table.as_slice(), &manifest),
        Err(FormatError::LeafTable { segment: 3 })
    ));
    // ...and chunks made from the corrupted bytes fail against the original manifest.
    let wire = m.chunker.chunk(3, 0).unwrap();
    assert!(manifest.verify_chunk(3, 0, &wire).is_err());
    let parity = m.chunker.chunk(3, 9).unwrap();
    assert!(manifest.verify_chunk(3, 9, &parity).is_err());
    assert!(
        manifest
            .verify_chunk(2, 0, &m.chunker.chunk(2, 0).unwrap())
            .is_ok()
    );
}

/// The manifest with segment 0's BLAKE3 node changed in its first hex digit.
fn flip_first_segment_hash(json: &str) -> String {
    let mut m: serde_json::Value = serde_json::from_str(json).unwrap();
    let node = m["segments"][0]["blake3"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if node.starts_with('0') { '1' } else { '0' },
        &node[1..]
    );
    m["segments"][0]["blake3"] = flipped.into();
    serde_json::to_string_pretty(&m).unwrap()
}

#[test]
fn the_file_hash_is_plain_blake3_of_the_stream_file() {
    let m = movie(10_000, 2048, 4, 16, 10);
    assert_eq!(m.chunker.manifest().blake3, blake3::hash(&m.bytes).into());
}

#[test]
fn malformed_manifests_are_refused_with_a_reason() {
    let m = movie(5_000, 1024, 4, 8, 9);
    let good = String::from_utf8(m.chunker.manifest().to_json()).unwrap();
    let cases = [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "not valid JSON"),
        (
            &good.replace("\"version\": 1", "\"version\": 2"),
            "version 2",
        ),
        (&good.replace("\"k\": 4", "\"k\": 0"), "k=0"),
        (
            &good.replace("\"segment_size\": 1024", "\"segment_size\": 1000"),
            "not a power of two",
        ),
        (&flip_first_segment_hash(&good), "do not add up"),
        (&good.replace("\"n\": 8", "\"n\": 300"), "n=300"),
        (&good.replace("\"n\": 8", "\"n\": 70000"), "not valid JSON"),
        (
            &good.replace("\"file_size\": 5000", "\"file_size\": 50000"),
            "segments listed",
        ),
        (
            &good.replace("\"file_size\": 5000", "\"file_size\": -1"),
            "not valid JSON",
        ),
        (
            &good.replacen("\"root\": \"", "\"root\": \"zz", 1),
            "bad hash",
        ),
        (&good.replacen("{", "{\"extra\": 1,", 1), "unknown field"),
    ];
    for (text, want) in cases {
        let err = Manifest::from_json(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text:.60}: got {err:?}, want {want:?}");
    }
}

/// Hashing segments while the file is still being written, then finishing on the final
/// file, gives exactly the manifest of hashing the final file once — also when the writer
/// went back and changed bytes already hashed.
#[test]
fn hashing_while_writing_matches_hashing_the_finished_file() {
    use rivulet_node_core::format::ManifestBuilder;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.mkv");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let bytes: Vec<u8> = (0..40_000).map(|_| rng.random()).collect();
    let builder = ManifestBuilder::new(4096, 4, 12).unwrap();
    let mut file = std::fs::File::create(&path).unwrap();
    let mut early = 0;
    for piece in bytes.chunks(5000) {
        file.write_all(piece).unwrap();
        let len = file.metadata().unwrap().len();
        early += builder
            .hash_written(&std::fs::File::open(&path).unwrap(), len)
            .unwrap();
    }
    assert!(early >= 7, "segments 1..9 are hashed early, got {early}");
    // The writer rewrites its header and one segment in the middle after they were hashed.
    let mut last = bytes.clone();
    last[10] ^= 0xFF;
    last[4096 * 5 + 3] ^= 0xFF;
    std::fs::write(&path, &last).unwrap();
    let (manifest, leaves) = builder
        .finish(&std::fs::File::open(&path).unwrap())
        .unwrap();
    let (want, want_leaves) = build_manifest(&path, 4096, 4, 12).unwrap();
    assert_eq!(manifest, want);
    assert_eq!(leaves, want_leaves);
    assert_eq!(manifest.blake3, blake3::hash(&last).into());
}
