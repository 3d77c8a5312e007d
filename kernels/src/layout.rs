//! halo2curves values as the device words the kernels read, and back.
//!
//! The kernels hold a field element as eight little-endian 32-bit words of
//! its Montgomery form, which is exactly halo2curves' four 64-bit limbs, and
//! an affine point as x then y. halo2curves does not promise that layout
//! (`Fr` and `G1Affine` are not `repr(C)`), so it is checked once at run
//! time against `to_raw_bytes`; where it holds, slices are uploaded in
//! place, and where it does not they are converted word by word.

use std::borrow::Cow;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use halo2curves::bn256::{Fq, Fr, G1Affine, G1};
use halo2curves::ff::Field;
use halo2curves::group::Group;
use halo2curves::serde::SerdeObject;
use halo2curves::CurveAffine;

/// Words per field element and per point.
pub const FIELD_WORDS: usize = 8;
pub const AFFINE_WORDS: usize = 16;
pub const XYZZ_WORDS: usize = 32;

fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a plain value of limb arrays with no padding (checked by
    // the caller against its size); reading its bytes is reading the limbs.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// Whether `Fr` and `G1Affine` are laid out as the kernels read them.
fn in_place() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let s = Fr::from(0x0123_4567_89ab_cdefu64) * Fr::from(u64::MAX);
        let g = G1Affine::generator();
        let mut g_raw = g.x.to_raw_bytes();
        g_raw.extend(g.y.to_raw_bytes());
        std::mem::size_of::<Fr>() == 32
            && std::mem::size_of::<G1Affine>() == 64
            && std::mem::align_of::<Fr>() >= 4
            && std::mem::align_of::<G1Affine>() >= 4
            && bytes_of(&s) == s.to_raw_bytes().as_slice()
            && bytes_of(&g) == g_raw.as_slice()
    })
}

/// Reinterprets a slice whose layout was checked by [`in_place`].
fn as_words<T>(v: &[T]) -> &[u32] {
    let words = std::mem::size_of_val(v) / 4;
    // SAFETY: only called when `in_place()` holds: T is 4-aligned, has no
    // padding and its bytes are the words the kernels expect.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u32>(), words) }
}

fn push_words(out: &mut Vec<u32>, raw: &[u8]) {
    out.extend(raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
}

/// Scalars as device words (Montgomery form).
pub fn fr_words(v: &[Fr]) -> Cow<'_, [u32]> {
    if in_place() {
        return Cow::Borrowed(as_words(v));
    }
    let mut out = Vec::with_capacity(v.len() * FIELD_WORDS);
    for s in v {
        push_words(&mut out, &s.to_raw_bytes());
    }
    Cow::Owned(out)
}

/// Reads device words straight into `v`, converting only where
/// halo2curves' layout is not the kernels' own.
pub fn read_fr_into(v: &mut [Fr], read: impl FnOnce(&mut [u32]) -> Result<()>) -> Result<()> {
    if in_place() {
        // SAFETY: as in `as_words`; any words the device writes are
        // reduced Montgomery limbs, which are valid `Fr` values.
        let words = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u32>(), v.len() * FIELD_WORDS) };
        return read(words);
    }
    let mut words = vec![0u32; v.len() * FIELD_WORDS];
    read(&mut words)?;
    v.copy_from_slice(&fr_from_words(&words)?);
    Ok(())
}

/// Affine points as device words: x then y, Montgomery form, (0, 0) the identity.
pub fn affine_words(v: &[G1Affine]) -> Cow<'_, [u32]> {
    if in_place() {
        return Cow::Borrowed(as_words(v));
    }
    let mut out = Vec::with_capacity(v.len() * AFFINE_WORDS);
    for p in v {
        push_words(&mut out, &p.x.to_raw_bytes());
        push_words(&mut out, &p.y.to_raw_bytes());
    }
    Cow::Owned(out)
}

fn field<F: SerdeObject>(w: &[u32]) -> Result<F> {
    let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    F::from_raw_bytes(&bytes).ok_or_else(|| anyhow!("the device returned a field element that is not reduced"))
}

/// Scalars from device words.
pub fn fr_from_words(w: &[u32]) -> Result<Vec<Fr>> {
    w.chunks_exact(FIELD_WORDS).map(field::<Fr>).collect()
}

/// A point in XYZZ coordinates (x = X/ZZ, y = Y/ZZZ, ZZ = 0 the identity),
/// checked to lie on the curve.
pub fn xyzz_to_g1(w: &[u32]) -> Result<G1> {
    let [x, y, zz, zzz] = [0, 1, 2, 3].map(|i| field::<Fq>(&w[i * FIELD_WORDS..(i + 1) * FIELD_WORDS]));
    let (x, y, zz, zzz) = (x?, y?, zz?, zzz?);
    if bool::from(zz.is_zero()) {
        return Ok(G1::identity());
    }
    let inv = |v: Fq| Option::<Fq>::from(v.invert()).ok_or_else(|| anyhow!("ZZZ is zero while ZZ is not"));
    let p = Option::<G1Affine>::from(G1Affine::from_xy(x * inv(zz)?, y * inv(zzz)?))
        .ok_or_else(|| anyhow!("the device returned a point that is not on the curve"))?;
    Ok(p.into())
}

/// An affine point from device words ((0, 0) the identity), checked to lie
/// on the curve.
pub fn affine_from_words(w: &[u32]) -> Result<G1Affine> {
    let (x, y) = (field::<Fq>(&w[..FIELD_WORDS])?, field::<Fq>(&w[FIELD_WORDS..AFFINE_WORDS])?);
    if bool::from(x.is_zero() & y.is_zero()) {
        return Ok(G1Affine::default());
    }
    Option::<G1Affine>::from(G1Affine::from_xy(x, y))
        .ok_or_else(|| anyhow!("the device returned a point that is not on the curve"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2curves::group::prime::PrimeCurveAffine;
    use halo2curves::group::Curve;
    use rand::SeedableRng;

    #[test]
    fn words_match_the_raw_bytes_either_way() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let s: Vec<Fr> = (0..5).map(|_| Fr::random(&mut rng)).collect();
        let p: Vec<G1Affine> = (0..3).map(|_| G1::random(&mut rng).to_affine()).chain([G1Affine::identity()]).collect();
        let mut want = Vec::new();
        s.iter().for_each(|x| push_words(&mut want, &x.to_raw_bytes()));
        assert_eq!(fr_words(&s).as_ref(), want.as_slice());
        assert_eq!(fr_from_words(&want).unwrap(), s);
        let mut want = Vec::new();
        p.iter().for_each(|q| {
            push_words(&mut want, &q.x.to_raw_bytes());
            push_words(&mut want, &q.y.to_raw_bytes());
        });
        assert_eq!(affine_words(&p).as_ref(), want.as_slice());
        assert_eq!(&want[3 * AFFINE_WORDS..], &[0u32; AFFINE_WORDS], "the identity is (0, 0)");
        let back: Vec<G1Affine> = want.chunks_exact(AFFINE_WORDS).map(|w| affine_from_words(w).unwrap()).collect();
        assert_eq!(back, p);
        let mut off = want[..AFFINE_WORDS].to_vec();
        off[0] ^= 1;
        assert!(affine_from_words(&off).is_err(), "a point off the curve is refused");
    }

    #[test]
    fn xyzz_words_decode_to_the_point() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let p = G1::random(&mut rng).to_affine();
        // Any nonzero t: (x t^2, y t^3, t^2, t^3) is the same point.
        let t = Fq::random(&mut rng);
        let mut w = Vec::new();
        for v in [p.x * t.square(), p.y * t.square() * t, t.square(), t.square() * t] {
            push_words(&mut w, &v.to_raw_bytes());
        }
        assert_eq!(xyzz_to_g1(&w).unwrap().to_affine(), p);
        let mut id = w.clone();
        id[2 * FIELD_WORDS..].fill(0);
        assert!(bool::from(xyzz_to_g1(&id).unwrap().is_identity()));
        // A point off the curve is refused, not returned.
        let mut bad = w;
        bad[0] ^= 1;
        assert!(xyzz_to_g1(&bad).is_err());
    }
}
