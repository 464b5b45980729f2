//! The one hot loop of the codec: `dst = Σ cⱼ·srcⱼ` over GF(2^8), byte-wise, with an AVX2 or
//! SSSE3 nibble-shuffle kernel picked at run time and a portable table kernel otherwise.
//!
//! Output is built 64 (AVX2) or 32 (SSSE3) bytes at a time in registers across all inputs, so
//! each output byte is stored once, however many inputs feed it.

use std::sync::OnceLock;

use super::gf256::NIBBLE_TABLES;

/// Which kernel this CPU runs; reported by benchmarks and `Codec::kernel_name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
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

/// `dst = Σ coefs[j]·srcs[j]`. Every source must be exactly as long as `dst`.
///
/// # Panics
/// If the lengths disagree (a bug in the caller, never a property of input data).
pub fn dot(coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8]) {
    dot_with(Kernel::detect(), coefs, srcs, dst);
}

/// [`dot`] with a chosen kernel; tests run every kernel the CPU has against the portable one.
pub fn dot_with(kernel: Kernel, coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8]) {
    assert_eq!(coefs.len(), srcs.len(), "one coefficient per source");
    assert!(
        srcs.iter().all(|s| s.len() == dst.len()),
        "sources and destination differ in length"
    );
    let done = match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: AVX2 is present (checked on this line); lengths were checked above.
            unsafe { x86::dot_avx2(coefs, srcs, dst) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Ssse3 | Kernel::Avx2 if std::arch::is_x86_feature_detected!("ssse3") => {
            // SAFETY: SSSE3 is present (checked on this line); lengths were checked above.
            unsafe { x86::dot_ssse3(coefs, srcs, dst) }
        }
        _ => 0,
    };
    dot_portable(coefs, srcs, &mut dst[done..], done);
}

/// The portable kernel on `dst`, reading sources from `offset` on: also the tail of the SIMD
/// kernels, which stop at their last whole block.
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

    use super::NIBBLE_TABLES;

    /// Processes whole 64-byte blocks; returns how many bytes of `dst` it wrote.
    ///
    /// # Safety
    /// The CPU must support AVX2 and every source must be at least as long as `dst`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_avx2(coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8]) -> usize {
        let tables: Vec<(__m256i, __m256i)> = coefs
            .iter()
            .map(|&c| {
                let [lo, hi] = &NIBBLE_TABLES[c as usize];
                // SAFETY: each table is 16 readable bytes.
                unsafe {
                    (
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast())),
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast())),
                    )
                }
            })
            .collect();
        let mask = _mm256_set1_epi8(0x0f);
        let blocks = dst.len() / 64;
        for b in 0..blocks {
            let at = b * 64;
            let mut acc0 = _mm256_setzero_si256();
            let mut acc1 = _mm256_setzero_si256();
            for (src, &(lo, hi)) in srcs.iter().zip(&tables) {
                // SAFETY: at + 64 ≤ dst.len() ≤ src.len().
                let (s0, s1) = unsafe {
                    let p = src.as_ptr().add(at);
                    (
                        _mm256_loadu_si256(p.cast()),
                        _mm256_loadu_si256(p.add(32).cast()),
                    )
                };
                let p0 = _mm256_xor_si256(
                    _mm256_shuffle_epi8(lo, _mm256_and_si256(s0, mask)),
                    _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi64(s0, 4), mask)),
                );
                let p1 = _mm256_xor_si256(
                    _mm256_shuffle_epi8(lo, _mm256_and_si256(s1, mask)),
                    _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi64(s1, 4), mask)),
                );
                acc0 = _mm256_xor_si256(acc0, p0);
                acc1 = _mm256_xor_si256(acc1, p1);
            }
            // SAFETY: at + 64 ≤ dst.len().
            unsafe {
                let p = dst.as_mut_ptr().add(at);
                _mm256_storeu_si256(p.cast(), acc0);
                _mm256_storeu_si256(p.add(32).cast(), acc1);
            }
        }
        blocks * 64
    }

    /// Processes whole 32-byte blocks; returns how many bytes of `dst` it wrote.
    ///
    /// # Safety
    /// The CPU must support SSSE3 and every source must be at least as long as `dst`.
    #[target_feature(enable = "ssse3")]
    pub(super) unsafe fn dot_ssse3(coefs: &[u8], srcs: &[&[u8]], dst: &mut [u8]) -> usize {
        let tables: Vec<(__m128i, __m128i)> = coefs
            .iter()
            .map(|&c| {
                let [lo, hi] = &NIBBLE_TABLES[c as usize];
                // SAFETY: each table is 16 readable bytes.
                unsafe {
                    (
                        _mm_loadu_si128(lo.as_ptr().cast()),
                        _mm_loadu_si128(hi.as_ptr().cast()),
                    )
                }
            })
            .collect();
        let mask = _mm_set1_epi8(0x0f);
        let blocks = dst.len() / 32;
        for b in 0..blocks {
            let at = b * 32;
            let mut acc0 = _mm_setzero_si128();
            let mut acc1 = _mm_setzero_si128();
            for (src, &(lo, hi)) in srcs.iter().zip(&tables) {
                // SAFETY: at + 32 ≤ dst.len() ≤ src.len().
                let (s0, s1) = unsafe {
                    let p = src.as_ptr().add(at);
                    (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast()))
                };
                let p0 = _mm_xor_si128(
                    _mm_shuffle_epi8(lo, _mm_and_si128(s0, mask)),
                    _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi64(s0, 4), mask)),
                );
                let p1 = _mm_xor_si128(
                    _mm_shuffle_epi8(lo, _mm_and_si128(s1, mask)),
                    _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi64(s1, 4), mask)),
                );
                acc0 = _mm_xor_si128(acc0, p0);
                acc1 = _mm_xor_si128(acc1, p1);
            }
            // SAFETY: at + 32 ≤ dst.len().
            unsafe {
                let p = dst.as_mut_ptr().add(at);
                _mm_storeu_si128(p.cast(), acc0);
                _mm_storeu_si128(p.add(16).cast(), acc1);
            }
        }
        blocks * 32
    }
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

    proptest! {
        /// Every kernel agrees with the field's definition, for odd lengths that leave tails.
        #[test]
        fn kernels_match_the_reference(
            len in 0usize..300,
            coefs in proptest::collection::vec(any::<u8>(), 1..20),
            seed in any::<u64>(),
        ) {
            let srcs: Vec<Vec<u8>> = (0..coefs.len())
                .map(|j| (0..len).map(|i| (seed.wrapping_mul(i as u64 + 7 * j as u64 + 1) >> 13) as u8).collect())
                .collect();
            let want = reference(&coefs, &srcs, len);
            let views: Vec<&[u8]> = srcs.iter().map(Vec::as_slice).collect();
            for kernel in [Kernel::Portable, Kernel::Ssse3, Kernel::Avx2] {
                let mut got = vec![0xAA; len];
                dot_with(kernel, &coefs, &views, &mut got);
                prop_assert_eq!(&got, &want, "{:?}", kernel);
            }
        }
    }
}
