//! Codec throughput: Rivulet's Cauchy code at the chosen and the rejected parameters, the two
//! codec crates measured in the recipe, and a plain memcpy of the same bytes as the ceiling.
//! Throughput is in segment bytes (what a viewer rebuilds), except where a group says so.
//!
//! `cargo bench -p rivulet-node-core --bench codec`

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rivulet_node_core::codec::Codec;
use rivulet_node_core::codec::kernel::{Kernel, dot_with};
use rivulet_node_core::format::{
    Digest, FORMAT_VERSION, Manifest, SegmentHashes, encode_chunk, merkle,
};
use std::hint::black_box;

const SEGMENT: usize = 1 << 20;

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

fn chunks(codec: &Codec, segment: &[u8], indices: &[usize]) -> Vec<Vec<u8>> {
    let shard = segment.len() / codec.k();
    let shards: Vec<&[u8]> = segment.chunks(shard).collect();
    indices
        .iter()
        .map(|&i| {
            let mut c = vec![0; shard];
            codec.encode_chunk(&shards, i, &mut c).unwrap();
            c
        })
        .collect()
}

fn ceiling(c: &mut Criterion) {
    let src = random(SEGMENT, 1);
    let mut dst = vec![0u8; SEGMENT];
    let mut g = c.benchmark_group("ceiling");
    g.throughput(Throughput::Bytes(SEGMENT as u64));
    g.bench_function("memcpy_1MiB", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    // One output chunk from 16 inputs of 64 KiB: throughput in input bytes consumed.
    let srcs: Vec<Vec<u8>> = (0..16).map(|i| random(65536, i)).collect();
    let views: Vec<&[u8]> = srcs.iter().map(Vec::as_slice).collect();
    let coefs: Vec<u8> = (1..=16).collect();
    let mut dst = vec![0u8; 65536];
    let mut g = c.benchmark_group("kernel_dot16x64KiB");
    g.throughput(Throughput::Bytes(16 * 65536));
    for kernel in [
        Kernel::Portable,
        Kernel::Ssse3,
        Kernel::Avx2,
        Kernel::Avx2Gfni,
        Kernel::Avx512Gfni,
    ] {
        g.bench_function(format!("{kernel:?}"), |b| {
            b.iter(|| dot_with(kernel, &coefs, &views, &mut dst))
        });
    }
    g.finish();
}

fn rivulet(c: &mut Criterion) {
    let segment = random(SEGMENT, 2);
    let mut g = c.benchmark_group("rivulet");
    g.throughput(Throughput::Bytes(SEGMENT as u64));
    for (k, n) in [(8usize, 64usize), (16, 64), (16, 256), (32, 64), (32, 256)] {
        let codec = Codec::new(k, n).unwrap();
        let shard = SEGMENT / k;
        let name = format!("k{k}n{n}");
        // Decode with every data shard lost (k parity chunks, the usual case when chunks
        // come from many caches), with half lost, and with none lost.
        for (label, lost) in [
            ("all_data_lost", k),
            ("half_data_lost", k / 2),
            ("no_loss", 0),
        ] {
            let indices: Vec<usize> = (lost..k).chain(n - lost..n).collect();
            let got = chunks(&codec, &segment, &indices);
            let given: Vec<(usize, &[u8])> = indices
                .iter()
                .copied()
                .zip(got.iter().map(Vec::as_slice))
                .collect();
            let mut out = vec![0u8; SEGMENT];
            g.bench_function(BenchmarkId::new(format!("decode_{label}"), &name), |b| {
                b.iter(|| codec.decode(black_box(&given), &mut out).unwrap())
            });
        }
        // What ingest pays to hash every chunk: all n−k parity chunks of a segment.
        let shards: Vec<&[u8]> = segment.chunks(shard).collect();
        let mut out = vec![0u8; shard];
        g.bench_function(BenchmarkId::new("encode_all_parity", &name), |b| {
            b.iter(|| {
                for i in k..n {
                    codec.encode_chunk(&shards, i, &mut out).unwrap();
                }
            })
        });
    }
    g.finish();

    // The origin's cost per chunk served: one parity chunk (throughput in chunk bytes).
    let mut g = c.benchmark_group("rivulet_one_chunk");
    let codec = Codec::new(16, 64).unwrap();
    let shards: Vec<&[u8]> = segment.chunks(SEGMENT / 16).collect();
    let mut out = vec![0u8; SEGMENT / 16];
    g.throughput(Throughput::Bytes((SEGMENT / 16) as u64));
    g.bench_function("encode_parity_chunk_k16", |b| {
        b.iter(|| codec.encode_chunk(&shards, 40, &mut out).unwrap())
    });
    g.finish();
}

/// A viewer's whole per-segment cost: verify 16 parity chunks against the manifest, decode,
/// check the segment hash.
fn viewer_path(c: &mut Criterion) {
    let segment = random(SEGMENT, 3);
    let codec = Codec::new(16, 64).unwrap();
    let all: Vec<usize> = (0..64).collect();
    let coded = chunks(&codec, &segment, &all);
    let leaves: Vec<Digest> = coded
        .iter()
        .enumerate()
        .map(|(i, c)| merkle::leaf_hash(i as u16, c))
        .collect();
    let tree = merkle::MerkleTree::new(&leaves);
    let manifest = Manifest {
        version: FORMAT_VERSION,
        file_size: SEGMENT as u64,
        segment_size: SEGMENT as u32,
        k: 16,
        n: 64,
        blake3: blake3::hash(&segment).into(),
        segments: vec![SegmentHashes {
            root: tree.root(),
            blake3: blake3::hash(&segment).into(),
        }],
    };
    let wires: Vec<(u16, Vec<u8>)> = (48..64)
        .map(|i| {
            (
                i as u16,
                encode_chunk(0, i as u16, &tree.proof(i), &coded[i]),
            )
        })
        .collect();
    let mut g = c.benchmark_group("viewer");
    g.throughput(Throughput::Bytes(SEGMENT as u64));
    g.bench_function("verify16_decode_check_k16n64", |b| {
        b.iter(|| {
            let payloads: Vec<(u16, &[u8])> = wires
                .iter()
                .map(|(i, w)| (*i, manifest.verify_chunk(0, *i, w).unwrap()))
                .collect();
            manifest.rebuild_segment(&codec, 0, &payloads).unwrap()
        })
    });
    g.finish();
}

/// The crates the recipe measured, at Rivulet's k=16, n=64.
fn other_crates(c: &mut Criterion) {
    let segment = random(SEGMENT, 4);
    let (k, m) = (16usize, 48usize);
    let shard = SEGMENT / k;
    let mut g = c.benchmark_group("crates_k16n64");
    g.throughput(Throughput::Bytes(SEGMENT as u64));

    let rse = reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).unwrap();
    let mut shards: Vec<Vec<u8>> = segment.chunks(shard).map(<[u8]>::to_vec).collect();
    shards.resize(k + m, vec![0u8; shard]);
    rse.encode(&mut shards).unwrap();
    g.bench_function("reed-solomon-erasure/encode_all_parity", |b| {
        b.iter(|| rse.encode(&mut shards).unwrap())
    });
    g.bench_function("reed-solomon-erasure/decode_all_data_lost", |b| {
        b.iter_batched(
            || {
                let mut given: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                for s in given.iter_mut().take(m) {
                    *s = None;
                }
                given
            },
            |mut given| {
                rse.reconstruct_data(&mut given).unwrap();
                given
            },
            BatchSize::LargeInput,
        )
    });

    let originals: Vec<&[u8]> = segment.chunks(shard).collect();
    let mut encoder = reed_solomon_simd::ReedSolomonEncoder::new(k, m, shard).unwrap();
    g.bench_function("reed-solomon-simd/encode_all_parity", |b| {
        b.iter(|| {
            encoder.reset(k, m, shard).unwrap();
            for o in &originals {
                encoder.add_original_shard(o).unwrap();
            }
            encoder.encode().unwrap().recovery_iter().count()
        })
    });
    encoder.reset(k, m, shard).unwrap();
    for o in &originals {
        encoder.add_original_shard(o).unwrap();
    }
    let recovery: Vec<Vec<u8>> = encoder
        .encode()
        .unwrap()
        .recovery_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let mut decoder = reed_solomon_simd::ReedSolomonDecoder::new(k, m, shard).unwrap();
    g.bench_function("reed-solomon-simd/decode_all_data_lost", |b| {
        b.iter(|| {
            decoder.reset(k, m, shard).unwrap();
            for (i, r) in recovery.iter().enumerate().skip(m - k) {
                decoder.add_recovery_shard(i, r).unwrap();
            }
            decoder.decode().unwrap().restored_original_iter().count()
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ceiling, kernels, rivulet, viewer_path, other_crates
}
criterion_main!(benches);
