//! Scalar decomposition for Pippenger's MSM: canonical limbs and signed
//! windows. (Small scalars, p - s included, are handled by the MSM's fold:
//! see `msm_plan`.)

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
}
