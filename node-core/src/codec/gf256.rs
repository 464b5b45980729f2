//! Arithmetic in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D): the field the
//! Reed–Solomon code works in. Tables are built at compile time.

/// The reducing polynomial, without its x^8 term.
const POLY: u16 = 0x11D;

/// `EXP[i] = g^i` for the generator g = 2, doubled so that `EXP[log a + log b]` needs no modulo.
pub(crate) static EXP: [u8; 512] = build_exp();
/// `LOG[a]` for a ≠ 0; `LOG[0]` is unused.
pub(crate) static LOG: [u8; 256] = build_log();

/// For every coefficient c: the products c·x for x in 0..16 (low nibble) and c·(x<<4)
/// (high nibble). `c·b = LO[c][b & 15] ^ HI[c][b >> 4]`: the split tables the SIMD kernels
/// feed to a byte shuffle.
pub(crate) static NIBBLE_TABLES: [[[u8; 16]; 2]; 256] = build_nibble_tables();

/// For every coefficient c: the 8×8 bit matrix of x ↦ c·x in the layout of x86's
/// `GF2P8AFFINEQB` (byte 7−i holds the row that makes output bit i), so one instruction
/// multiplies 64 bytes by c whatever the field's polynomial.
pub(crate) static AFFINE_MATRICES: [u64; 256] = build_affine_matrices();

const fn build_affine_matrices() -> [u64; 256] {
    let exp = build_exp();
    let log = build_log();
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        let mut matrix = 0u64;
        let mut i = 0;
        while i < 8 {
            let mut row = 0u64;
            let mut j = 0;
            while j < 8 {
                if const_mul(&exp, &log, c as u8, 1 << j) >> i & 1 != 0 {
                    row |= 1 << j;
                }
                j += 1;
            }
            matrix |= row << (8 * (7 - i));
            i += 1;
        }
        t[c] = matrix;
        c += 1;
    }
    t
}

const fn build_exp() -> [u8; 512] {
    let mut exp = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    // Indices 510 and 511 are never reached by a sum of two logs (each ≤ 254).
    exp
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

const fn const_mul(exp: &[u8; 512], log: &[u8; 256], a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    exp[log[a as usize] as usize + log[b as usize] as usize]
}

const fn build_nibble_tables() -> [[[u8; 16]; 2]; 256] {
    let exp = build_exp();
    let log = build_log();
    let mut t = [[[0u8; 16]; 2]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][0][x] = const_mul(&exp, &log, c as u8, x as u8);
            t[c][1][x] = const_mul(&exp, &log, c as u8, (x as u8) << 4);
            x += 1;
        }
        c += 1;
    }
    t
}

/// a · b in GF(2^8).
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

/// The multiplicative inverse of a non-zero element.
///
/// # Panics
/// If `a` is zero, which has no inverse: callers only invert elements they know are non-zero.
#[inline]
pub fn inv(a: u8) -> u8 {
    assert!(a != 0, "zero has no inverse in GF(2^8)");
    EXP[255 - LOG[a as usize] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Carry-less multiply and reduce, bit by bit: the definition, slow and obviously right.
    fn reference_mul(a: u8, b: u8) -> u8 {
        let (mut a, mut b, mut p) = (a as u16, b, 0u16);
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            a <<= 1;
            if a & 0x100 != 0 {
                a ^= POLY;
            }
            b >>= 1;
        }
        p as u8
    }

    #[test]
    fn tables_agree_with_the_definition() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let want = reference_mul(a, b);
                assert_eq!(mul(a, b), want, "{a}·{b}");
                let [lo, hi] = NIBBLE_TABLES[a as usize];
                assert_eq!(lo[(b & 15) as usize] ^ hi[(b >> 4) as usize], want);
            }
        }
    }

    #[test]
    fn every_nonzero_element_has_an_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
    }
}
