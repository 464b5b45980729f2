//! Systematic Reed–Solomon erasure code over GF(2^8): k data shards, up to 256 chunks in all,
//! any k distinct chunks rebuild the data.
//!
//! The generator is `[I; C]` with C a k-column Cauchy matrix (`C[i][j] = 1 / (xᵢ + yⱼ)`, all
//! xᵢ, yⱼ distinct). Every square submatrix of a Cauchy matrix is invertible, so every k rows of
//! the generator are: the code is MDS. One parity chunk is one row of C times the data shards,
//! so the origin can make any single chunk for the cost of k multiply-adds of a shard, and a
//! decoder that lacks m data shards does m·k.

pub mod gf256;
pub mod kernel;

use thiserror::Error;

pub use kernel::Kernel;

/// Largest number of chunk indices GF(2^8) allows: every xᵢ and yⱼ must be distinct.
pub const MAX_CHUNKS: usize = 256;

/// What can go wrong in coding; every variant is a caller's mistake or missing data, never
/// a property of the bytes themselves (those are checked by hashes, not by the code).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("invalid code parameters k={k}, n={n}: need 1 ≤ k ≤ n ≤ {MAX_CHUNKS}")]
    Parameters { k: usize, n: usize },
    #[error("chunk index {index} is out of range for n={n}")]
    IndexOutOfRange { index: usize, n: usize },
    #[error("{have} distinct chunks given, {need} needed to decode")]
    TooFewChunks { have: usize, need: usize },
    #[error("chunk {index} is {len} bytes, expected {expected}")]
    ChunkLength {
        index: usize,
        len: usize,
        expected: usize,
    },
}

/// A systematic (n, k) Reed–Solomon code. Cheap to build; holds only the (n−k)×k Cauchy matrix.
#[derive(Clone, Debug)]
pub struct Codec {
    k: usize,
    n: usize,
    /// Row i is the coefficients of parity chunk k+i over the k data shards.
    parity: Vec<u8>,
}

impl Codec {
    /// A code with `k` data shards and `n` chunk indices in all.
    pub fn new(k: usize, n: usize) -> Result<Codec, CodecError> {
        if k == 0 || k > n || n > MAX_CHUNKS {
            return Err(CodecError::Parameters { k, n });
        }
        // yⱼ = j for data columns, xᵢ = k + i for parity rows: 0..n, all distinct.
        let mut parity = Vec::with_capacity((n - k) * k);
        for i in 0..n - k {
            for j in 0..k {
                parity.push(gf256::inv(((k + i) ^ j) as u8));
            }
        }
        Ok(Codec { k, n, parity })
    }

    /// Data shards per segment.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Chunk indices per segment: 0..k are the data shards, k..n parity.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Row `index` of the generator: which combination of data shards chunk `index` is.
    fn generator_row(&self, index: usize) -> Vec<u8> {
        if index < self.k {
            let mut row = vec![0; self.k];
            row[index] = 1;
            row
        } else {
            let i = index - self.k;
            self.parity[i * self.k..(i + 1) * self.k].to_vec()
        }
    }

    /// Writes chunk `index` of the segment whose k data shards are `data` into `out`.
    pub fn encode_chunk(
        &self,
        data: &[&[u8]],
        index: usize,
        out: &mut [u8],
    ) -> Result<(), CodecError> {
        self.check_shards(data.iter().copied().enumerate(), out.len())?;
        if data.len() != self.k {
            return Err(CodecError::TooFewChunks {
                have: data.len(),
                need: self.k,
            });
        }
        if index >= self.n {
            return Err(CodecError::IndexOutOfRange { index, n: self.n });
        }
        if index < self.k {
            out.copy_from_slice(data[index]);
        } else {
            let i = index - self.k;
            kernel::dot(&self.parity[i * self.k..(i + 1) * self.k], data, out);
        }
        Ok(())
    }

    /// Writes the parity chunks `k..n` of the segment whose data shards are `data` into
    /// `parity` (n−k buffers), reading the data once for all of them.
    pub fn encode_parity(
        &self,
        data: &[&[u8]],
        parity: &mut [&mut [u8]],
    ) -> Result<(), CodecError> {
        let len = data.first().map_or(0, |d| d.len());
        if data.len() != self.k {
            return Err(CodecError::TooFewChunks {
                have: data.len(),
                need: self.k,
            });
        }
        if parity.len() != self.n - self.k {
            return Err(CodecError::IndexOutOfRange {
                index: self.k + parity.len(),
                n: self.n,
            });
        }
        self.check_shards(data.iter().copied().enumerate(), len)?;
        self.check_shards(
            parity.iter().enumerate().map(|(i, p)| (self.k + i, &**p)),
            len,
        )?;
        let rows: Vec<&[u8]> = self.parity.chunks(self.k).collect();
        kernel::dot_many(&rows, data, parity);
        Ok(())
    }

    /// The SIMD kernel this CPU uses.
    pub fn kernel(&self) -> Kernel {
        Kernel::detect()
    }

    /// Rebuilds the k data shards, concatenated into `out` (k × shard length), from any k
    /// distinct chunks given as (index, bytes). Chunks beyond the first k distinct indices
    /// are not used and duplicates are skipped, but every index must be below n.
    pub fn decode(&self, chunks: &[(usize, &[u8])], out: &mut [u8]) -> Result<(), CodecError> {
        let shard = out.len() / self.k;
        if out.is_empty() || !out.len().is_multiple_of(self.k) {
            return Err(CodecError::ChunkLength {
                index: 0,
                len: out.len(),
                expected: shard * self.k,
            });
        }
        let mut seen = [false; MAX_CHUNKS];
        let mut chosen: Vec<(usize, &[u8])> = Vec::with_capacity(self.k);
        for &(index, bytes) in chunks {
            if index >= self.n {
                return Err(CodecError::IndexOutOfRange { index, n: self.n });
            }
            if !seen[index] && chosen.len() < self.k {
                seen[index] = true;
                chosen.push((index, bytes));
            }
        }
        if chosen.len() < self.k {
            return Err(CodecError::TooFewChunks {
                have: chosen.len(),
                need: self.k,
            });
        }
        self.check_shards(chosen.iter().copied(), shard)?;

        // Data shards we hold go straight to their place.
        for &(index, bytes) in chosen.iter().filter(|(i, _)| *i < self.k) {
            out[index * shard..(index + 1) * shard].copy_from_slice(bytes);
        }
        let missing: Vec<usize> = (0..self.k).filter(|&j| !seen[j]).collect();
        if missing.is_empty() {
            return Ok(());
        }
        // The chosen rows of the generator form an invertible k×k matrix A with
        // A · data = chosen; row j of A⁻¹ gives data shard j from the chosen chunks.
        let rows: Vec<u8> = chosen
            .iter()
            .flat_map(|&(index, _)| self.generator_row(index))
            .collect();
        let inverse = invert(&rows, self.k);
        let sources: Vec<&[u8]> = chosen.iter().map(|&(_, bytes)| bytes).collect();
        let rows: Vec<&[u8]> = missing
            .iter()
            .map(|&j| &inverse[j * self.k..(j + 1) * self.k])
            .collect();
        let mut targets: Vec<&mut [u8]> = out
            .chunks_mut(shard)
            .enumerate()
            .filter(|(j, _)| !seen[*j])
            .map(|(_, t)| t)
            .collect();
        kernel::dot_many(&rows, &sources, &mut targets);
        Ok(())
    }

    fn check_shards<'a>(
        &self,
        shards: impl Iterator<Item = (usize, &'a [u8])>,
        expected: usize,
    ) -> Result<(), CodecError> {
        for (index, bytes) in shards {
            if bytes.len() != expected {
                return Err(CodecError::ChunkLength {
                    index,
                    len: bytes.len(),
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// Gauss–Jordan inverse of a k×k matrix over GF(2^8), row-major.
///
/// # Panics
/// If the matrix is singular; any k distinct generator rows are invertible (MDS), so a
/// singular matrix here is a bug in the code's construction, not bad input.
fn invert(matrix: &[u8], k: usize) -> Vec<u8> {
    let mut a = matrix.to_vec();
    let mut inv = vec![0u8; k * k];
    for i in 0..k {
        inv[i * k + i] = 1;
    }
    for col in 0..k {
        let pivot = (col..k)
            .find(|&r| a[r * k + col] != 0)
            .expect("generator rows of an MDS code are independent");
        if pivot != col {
            for c in 0..k {
                a.swap(pivot * k + c, col * k + c);
                inv.swap(pivot * k + c, col * k + c);
            }
        }
        let scale = gf256::inv(a[col * k + col]);
        for c in 0..k {
            a[col * k + c] = gf256::mul(a[col * k + c], scale);
            inv[col * k + c] = gf256::mul(inv[col * k + c], scale);
        }
        for r in 0..k {
            let factor = a[r * k + col];
            if r == col || factor == 0 {
                continue;
            }
            for c in 0..k {
                a[r * k + c] ^= gf256::mul(factor, a[col * k + c]);
                inv[r * k + c] ^= gf256::mul(factor, inv[col * k + c]);
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn segment(k: usize, shard: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..k * shard).map(|_| rng.random()).collect()
    }

    fn all_chunks(codec: &Codec, data: &[u8]) -> Vec<Vec<u8>> {
        let shard = data.len() / codec.k();
        let shards: Vec<&[u8]> = data.chunks(shard).collect();
        (0..codec.n())
            .map(|i| {
                let mut c = vec![0; shard];
                codec.encode_chunk(&shards, i, &mut c).unwrap();
                c
            })
            .collect()
    }

    #[test]
    fn rejects_impossible_parameters() {
        assert!(Codec::new(0, 4).is_err());
        assert!(Codec::new(5, 4).is_err());
        assert!(Codec::new(16, 257).is_err());
        assert!(Codec::new(256, 256).is_ok());
    }

    #[test]
    fn too_few_or_duplicate_chunks_are_an_error() {
        let codec = Codec::new(4, 8).unwrap();
        let data = segment(4, 8, 1);
        let chunks = all_chunks(&codec, &data);
        let mut out = vec![0; data.len()];
        let dup: Vec<(usize, &[u8])> = vec![
            (5, &chunks[5]),
            (5, &chunks[5]),
            (6, &chunks[6]),
            (7, &chunks[7]),
        ];
        assert_eq!(
            codec.decode(&dup, &mut out),
            Err(CodecError::TooFewChunks { have: 3, need: 4 })
        );
        let bad_index: Vec<(usize, &[u8])> = vec![(8, &chunks[0])];
        assert!(matches!(
            codec.decode(&bad_index, &mut out),
            Err(CodecError::IndexOutOfRange { .. })
        ));
        let short = [0u8; 3];
        let bad_len: Vec<(usize, &[u8])> = vec![
            (0, &short),
            (1, &chunks[1]),
            (2, &chunks[2]),
            (3, &chunks[3]),
        ];
        assert!(matches!(
            codec.decode(&bad_len, &mut out),
            Err(CodecError::ChunkLength { .. })
        ));
    }

    #[test]
    fn the_largest_code_rebuilds_from_the_last_k_parity_chunks() {
        let codec = Codec::new(16, 256).unwrap();
        let data = segment(16, 100, 9);
        let chunks = all_chunks(&codec, &data);
        let last: Vec<(usize, &[u8])> = (240..256).map(|i| (i, chunks[i].as_slice())).collect();
        let mut out = vec![0; data.len()];
        codec.decode(&last, &mut out).unwrap();
        assert_eq!(out, data);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any pattern of up to n−k lost chunks: the k survivors, in any order, rebuild the
        /// data byte for byte.
        #[test]
        fn any_k_distinct_chunks_rebuild_the_data(
            k in 1usize..=32,
            extra in 0usize..=64,
            shard in 1usize..200,
            seed in any::<u64>(),
        ) {
            let n = (k + extra).min(MAX_CHUNKS);
            let codec = Codec::new(k, n).unwrap();
            let data = segment(k, shard, seed);
            let chunks = all_chunks(&codec, &data);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut indices: Vec<usize> = (0..n).collect();
            indices.shuffle(&mut rng);
            let survivors: Vec<(usize, &[u8])> =
                indices[..k].iter().map(|&i| (i, chunks[i].as_slice())).collect();
            let mut out = vec![0; data.len()];
            codec.decode(&survivors, &mut out).unwrap();
            prop_assert_eq!(out, data);
        }
    }
}
