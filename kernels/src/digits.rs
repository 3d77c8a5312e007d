//! Scalar decomposition for Pippenger's MSM: signed windows, and the small
//! scalars of ML witnesses (values below 2^k, or p - s for small s).

use halo2curves::bn256::Fr;
use halo2curves::ff::PrimeField;

/// The scalar as four little-endian u64 limbs of its canonical integer.
pub fn limbs(s: &Fr) -> [u64; 4] {
    let repr = s.to_repr();
    let b = repr.as_ref();
    std::array::from_fn(|i| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes")))
}

/// Bits `[at, at + c)` of a 256-bit integer.
fn window(l: &[u64; 4], at: usize, c: usize) -> u64 {
    let (limb, shift) = (at / 64, at % 64);
    if limb >= 4 {
        return 0;
    }
    let mut v = l[limb] >> shift;
    if shift + c > 64 && limb + 1 < 4 {
        v |= l[limb + 1] << (64 - shift);
    }
    v & ((1u64 << c) - 1)
}

/// Signed digits of width `c` (1..=31): `s = sum d_i 2^(c i)` with
/// `d_i` in `[-2^(c-1), 2^(c-1)]`. Halves the buckets Pippenger needs.
pub fn signed_digits(l: &[u64; 4], bits: usize, c: usize) -> Vec<i64> {
    assert!((1..32).contains(&c), "window width {c} out of range");
    let windows = bits.div_ceil(c) + 1;
    let half = 1i64 << (c - 1);
    let mut carry = 0i64;
    let mut out = Vec::with_capacity(windows);
    for w in 0..windows {
        let mut d = window(l, w * c, c) as i64 + carry;
        carry = 0;
        if d > half {
            d -= 1 << c;
            carry = 1;
        }
        out.push(d);
    }
    out
}

/// How a scalar is best fed to the MSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Small {
    Zero,
    /// `s` itself, below 2^bits.
    Positive(u64),
    /// `p - s` below 2^bits: the point is negated and `p - s` used.
    Negative(u64),
    Large,
}

/// Classifies a scalar for the small-scalar fast path.
pub fn classify(s: &Fr, bits: u32) -> Small {
    if bool::from(halo2curves::ff::Field::is_zero(s)) {
        return Small::Zero;
    }
    let fits = |l: [u64; 4]| l[1] == 0 && l[2] == 0 && l[3] == 0 && (bits >= 64 || l[0] >> bits == 0);
    let l = limbs(s);
    if fits(l) {
        return Small::Positive(l[0]);
    }
    let n = limbs(&-*s);
    if fits(n) {
        return Small::Negative(n[0]);
    }
    Small::Large
}

/// The smallest width, in bits, that holds every scalar in its small form
/// (256 when any is large): how many windows the MSM needs.
pub fn max_small_bits(scalars: &[Fr]) -> u32 {
    let mut most = 0u32;
    for s in scalars {
        let v = match classify(s, 64) {
            Small::Zero => 0,
            Small::Positive(v) | Small::Negative(v) => v,
            Small::Large => return 256,
        };
        most = most.max(64 - v.leading_zeros());
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2curves::ff::Field;
    use rand::SeedableRng;

    fn rebuild(d: &[i64], c: usize) -> Fr {
        let base = Fr::from(2).pow([c as u64]);
        d.iter().rev().fold(Fr::ZERO, |acc, &x| {
            let term = if x < 0 { -Fr::from(x.unsigned_abs()) } else { Fr::from(x as u64) };
            acc * base + term
        })
    }

    #[test]
    fn signed_digits_rebuild_the_scalar_and_stay_in_range() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut scalars: Vec<Fr> = (0..200).map(|_| Fr::random(&mut rng)).collect();
        scalars.extend([Fr::ZERO, Fr::ONE, -Fr::ONE, Fr::from(u64::MAX), -Fr::from(65535)]);
        for c in [1, 4, 7, 13, 16, 20, 31] {
            for s in &scalars {
                let d = signed_digits(&limbs(s), 254, c);
                let half = 1i64 << (c - 1);
                assert!(d.iter().all(|x| (-half..=half).contains(x)), "c = {c}: {d:?}");
                assert_eq!(rebuild(&d, c), *s, "c = {c}");
            }
        }
    }

    #[test]
    fn small_scalars_are_found_in_both_forms() {
        assert_eq!(classify(&Fr::ZERO, 16), Small::Zero);
        assert_eq!(classify(&Fr::from(65535), 16), Small::Positive(65535));
        assert_eq!(classify(&Fr::from(65536), 16), Small::Large);
        assert_eq!(classify(&-Fr::from(3), 16), Small::Negative(3));
        assert_eq!(classify(&-Fr::from(65536), 16), Small::Large);
        let repeated: Vec<Fr> = (0..1000u64).map(|i| Fr::from((i * 2654435761) % 65536)).collect();
        assert_eq!(max_small_bits(&repeated), 16);
        assert_eq!(max_small_bits(&[-Fr::from(5), Fr::from(2)]), 3);
        assert_eq!(max_small_bits(&[Fr::from(2).pow([200])]), 256);
    }
}
