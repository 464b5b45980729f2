//! The one hot loop of the codec: `dst = Σ cⱼ·srcⱼ` over GF(2^8), byte-wise. The kernel is
//! picked at run time: GFNI affine multiplies (AVX-512 or AVX2 width) where the CPU has
//! them, else AVX2 or SSSE3 nibble shuffles, else a portable table kernel.
//!
//! Output is built a block at a time in registers across all inputs, so each output byte is
//! stored once, however many inputs feed it.

use std::sync::OnceLock;

use super::gf256::NIBBLE_TABLES;

/// Which kernel this CPU runs; reported by benchmarks and `Codec::kernel_name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 512-bit GFNI affine multiplies (x86-64 with AVX-512BW and GFNI).
    Avx512Gfni,
    /// 256-bit GFNI affine multiplies (x86-64 with AVX2 and GFNI).
    Avx2Gfni,
    /// 256-bit shuffles (x86-64 with AVX2).
    Avx2,
    /// 128-bit shuffles (x86-64 with SSSE3).
    Ssse3,
    /// Two table lookups per byte; any CPU.
    Portable,
}

impl Kernel {
    /// The best kernel this CPU supports, detected once.
    pub fn detect() -> Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if x86::has_avx512_gfni() {
                    return Kernel::Avx512Gfni;
                }
                if x86::has_avx2_gfni() {
                    return Kernel::Avx2Gfni;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Kernel::Avx2;
                }
                if std::arch::is_x86_feature_detected!("ssse3") {
                    return Kernel::Ssse3;
                }
            }
            Kernel::Portable
        })
    }
}

/// Columns handled per pass over all outputs: the k sources' slices of one block
/// (16 × 2 KiB) stay in L1 while every output is computed from them.
const BLOCK: usize = 2048;

/// `dst = Σ coefs[j]·srcs[j]`. Every source must be exactly as long as `dst`.
///
/// # Panics
/// If the lengths disagree (a bug in the caller, never a property of input data).
pub fn dot(coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8]) {
    dot_many(&[coefs], srcs, &mut [dst]);
}

/// `dsts[o] = Σ rows[o][j]·srcs[j]` for every output o, reading the sources block by block
/// once for all outputs.
///
/// # Panics
/// If a row's length differs from the number of sources or any slice's length differs
/// from the others.
pub fn dot_many(rows: &[&[u8]], srcs: &[&[u8]], dsts: &mut [&mut [u8]]) {
    dot_many_with(Kernel::detect(), rows, srcs, dsts);
}

/// [`dot`] with a chosen kernel; tests run every kernel the CPU has against the portable one.
pub fn dot_with(kernel: Kernel, coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8]) {
    dot_many_with(kernel, &[coefs], srcs, &mut [dst]);
}

/// [`dot_many`] with a chosen kernel (falling back to the best one the CPU has below it).
pub fn dot_many_with(kernel: Kernel, rows: &[&[u8]], srcs: &[&[u8]], dsts: &mut [&mut [u8]]) {
    assert_eq!(rows.len(), dsts.len(), "one row per output");
    if dsts.is_empty() {
        return;
    }
    assert!(
        rows.iter().all(|r| r.len() == srcs.len()),
        "one coefficient per source"
    );
    let len = dsts.first().map_or(0, |d| d.len());
    assert!(
        srcs.iter().all(|s| s.len() == len) && dsts.iter().all(|d| d.len() == len),
        "sources and destinations differ in length"
    );
    if srcs.is_empty() {
        dsts.iter_mut().for_each(|d| d.fill(0));
        return;
    }
    let done = match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Gfni if x86::has_avx512_gfni() => {
            // SAFETY: AVX-512BW and GFNI are present (checked on this line); lengths were
            // checked above.
            unsafe { x86::many_avx512_gfni(rows, srcs, dsts) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Gfni | Kernel::Avx512Gfni if x86::has_avx2_gfni() => {
            // SAFETY: AVX2 and GFNI are present (checked on this line); lengths were checked.
            unsafe { x86::many_avx2_gfni(rows, srcs, dsts) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx2Gfni | Kernel::Avx512Gfni
            if std::arch::is_x86_feature_detected!("avx2") =>
        {
            // SAFETY: AVX2 is present (checked on this line); lengths were checked above.
            unsafe { x86::many_avx2(rows, srcs, dsts) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Ssse3 | Kernel::Avx2 | Kernel::Avx2Gfni | Kernel::Avx512Gfni
            if std::arch::is_x86_feature_detected!("ssse3") =>
        {
            // SAFETY: SSSE3 is present (checked on this line); lengths were checked above.
            unsafe { x86::many_ssse3(rows, srcs, dsts) }
        }
        _ => 0,
    };
    for (row, dst) in rows.iter().zip(dsts.iter_mut()) {
        dot_portable(row, srcs, &mut dst[done..], done);
    }
}

/// The portable kernel on `dst`, reading sources from `offset` on: also the tail of the SIMD
/// kernels, which stop at their last whole vector pair.
fn dot_portable(coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8], offset: usize) {
    dst.fill(0);
    for (&c, src) in coefs.iter().zip(srcs) {
        let src = &src[offset..offset + dst.len()];
        match c {
            0 => {}
            1 => dst.iter_mut().zip(src).for_each(|(d, s)| *d ^= s),
            _ => {
                let [lo, hi] = &NIBBLE_TABLES[c as usize];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d ^= lo[(s & 15) as usize] ^ hi[(s >> 4) as usize];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BLOCK, NIBBLE_TABLES};
    use crate::codec::gf256::AFFINE_MATRICES;

    pub(super) fn has_avx512_gfni() -> bool {
        std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("gfni")
    }

    pub(super) fn has_avx2_gfni() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("gfni")
    }

    /// Defines `$name(rows, srcs, dsts) -> bytes done`: the blocked multi-output loop for one
    /// vector width. `$prep` turns a coefficient into what `$mul` needs to multiply a vector
    /// by it; each step handles two vectors per output for instruction-level parallelism.
    macro_rules! kernel {
        ($name:ident, $feature:literal, $vec:ty, $width:literal, $lanes:literal, $prep:ty,
         prep: |$c:ident| $prep_body:expr,
         mul: |$p:ident, $v:ident| $mul_body:expr,
         load: $load:path, store: $store:path, zero: $zero:path, xor: $xor:path) => {
            /// # Safety
            /// The CPU must have the named features; every source and destination must be
            /// as long as the first destination.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(
                rows: &[&[u8]],
                srcs: &[&[u8]],
                dsts: &mut [&mut [u8]],
            ) -> usize {
                let step = $lanes * $width;
                let len = dsts.first().map_or(0, |d| d.len());
                let whole = len / step * step;
                let prepared: Vec<Vec<$prep>> = rows
                    .iter()
                    .map(|row| row.iter().map(|&$c| $prep_body).collect())
                    .collect();
                let mut start = 0;
                while start < whole {
                    let end = (start + BLOCK).min(whole);
                    for (coefs, dst) in prepared.iter().zip(dsts.iter_mut()) {
                        let mut at = start;
                        while at < end {
                            let mut acc: [$vec; $lanes] = [$zero(); $lanes];
                            for (src, &$p) in srcs.iter().zip(coefs) {
                                for (lane, acc) in acc.iter_mut().enumerate() {
                                    // SAFETY: at + step ≤ whole ≤ src.len().
                                    let $v: $vec = unsafe {
                                        $load(src.as_ptr().add(at + lane * $width).cast())
                                    };
                                    *acc = $xor(*acc, $mul_body);
                                }
                            }
                            for (lane, acc) in acc.iter().enumerate() {
                                // SAFETY: at + step ≤ whole ≤ dst.len().
                                unsafe {
                                    $store(dst.as_mut_ptr().add(at + lane * $width).cast(), *acc)
                                };
                            }
                            at += step;
                        }
                    }
                    start = end;
                }
                whole
            }
        };
    }

    kernel!(many_avx512_gfni, "avx512bw,gfni", __m512i, 64, 16, __m512i,
        prep: |c| _mm512_set1_epi64(AFFINE_MATRICES[c as usize] as i64),
        mul: |m, v| _mm512_gf2p8affine_epi64_epi8::<0>(v, m),
        load: _mm512_loadu_si512, store: _mm512_storeu_si512,
        zero: _mm512_setzero_si512, xor: _mm512_xor_si512);

    kernel!(many_avx2_gfni, "avx2,gfni", __m256i, 32, 8, __m256i,
        prep: |c| _mm256_set1_epi64x(AFFINE_MATRICES[c as usize] as i64),
        mul: |m, v| _mm256_gf2p8affine_epi64_epi8::<0>(v, m),
        load: _mm256_loadu_si256, store: _mm256_storeu_si256,
        zero: _mm256_setzero_si256, xor: _mm256_xor_si256);

    kernel!(many_avx2, "avx2", __m256i, 32, 8, (__m256i, __m256i),
        prep: |c| {
            let [lo, hi] = &NIBBLE_TABLES[c as usize];
            // SAFETY: each table is 16 readable bytes.
            unsafe {
                (
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast())),
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast())),
                )
            }
        },
        mul: |t, v| {
            let mask = _mm256_set1_epi8(0x0f);
            _mm256_xor_si256(
                _mm256_shuffle_epi8(t.0, _mm256_and_si256(v, mask)),
                _mm256_shuffle_epi8(t.1, _mm256_and_si256(_mm256_srli_epi64(v, 4), mask)),
            )
        },
        load: _mm256_loadu_si256, store: _mm256_storeu_si256,
        zero: _mm256_setzero_si256, xor: _mm256_xor_si256);

    kernel!(many_ssse3, "ssse3", __m128i, 16, 8, (__m128i, __m128i),
        prep: |c| {
            let [lo, hi] = &NIBBLE_TABLES[c as usize];
            // SAFETY: each table is 16 readable bytes.
            unsafe { (_mm_loadu_si128(lo.as_ptr().cast()), _mm_loadu_si128(hi.as_ptr().cast())) }
        },
        mul: |t, v| {
            let mask = _mm_set1_epi8(0x0f);
            _mm_xor_si128(
                _mm_shuffle_epi8(t.0, _mm_and_si128(v, mask)),
                _mm_shuffle_epi8(t.1, _mm_and_si128(_mm_srli_epi64(v, 4), mask)),
            )
        },
        load: _mm_loadu_si128, store: _mm_storeu_si128,
        zero: _mm_setzero_si128, xor: _mm_xor_si128);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::gf256::mul;

    fn reference(coefs: &[u8], srcs: &[Vec<u8>], len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                coefs
                    .iter()
                    .zip(srcs)
                    .fold(0, |acc, (&c, s)| acc ^ mul(c, s[i]))
            })
            .collect()
    }

    const ALL: [Kernel; 5] = [
        Kernel::Portable,
        Kernel::Ssse3,
        Kernel::Avx2,
        Kernel::Avx2Gfni,
        Kernel::Avx512Gfni,
    ];

    proptest! {
        /// Every kernel agrees with the field's definition, for odd lengths that leave tails.
        #[test]
        fn kernels_match_the_reference(
            len in 0usize..3000,
            coefs in proptest::collection::vec(any::<u8>(), 1..20),
            seed in any::<u64>(),
        ) {
            let srcs: Vec<Vec<u8>> = (0..coefs.len())
                .map(|j| (0..len).map(|i| (seed.wrapping_mul(i as u64 + 7 * j as u64 + 1) >> 13) as u8).collect())
                .collect();
            let want = reference(&coefs, &srcs, len);
            let views: Vec<&[u8]> = srcs.iter().map(Vec::as_slice).collect();
            for kernel in ALL {
                let mut got = vec![0xAA; len];
                dot_with(kernel, &coefs, &views, &mut got);
                prop_assert_eq!(&got, &want, "{:?}", kernel);
            }
        }

        /// Many outputs at once agree with one at a time, across block boundaries.
        #[test]
        fn many_outputs_match_single_outputs(
            len in 0usize..5000,
            outputs in 1usize..6,
            seed in any::<u64>(),
        ) {
            let k = 5;
            let srcs: Vec<Vec<u8>> = (0..k)
                .map(|j| (0..len).map(|i| (seed.wrapping_mul(i as u64 * 31 + j as u64 + 3) >> 17) as u8).collect())
                .collect();
            let views: Vec<&[u8]> = srcs.iter().map(Vec::as_slice).collect();
            let rows: Vec<Vec<u8>> = (0..outputs)
                .map(|o| (0..k).map(|j| (seed >> (o * 7 + j)) as u8).collect())
                .collect();
            let row_views: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
            for kernel in ALL {
                let mut outs = vec![vec![0x55u8; len]; outputs];
                let mut out_views: Vec<&mut [u8]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
                dot_many_with(kernel, &row_views, &views, &mut out_views);
                for (o, row) in rows.iter().enumerate() {
                    prop_assert_eq!(&outs[o], &reference(row, &srcs, len), "{:?} output {}", kernel, o);
                }
            }
        }
    }
}
