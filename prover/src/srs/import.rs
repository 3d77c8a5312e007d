//! Importing a ceremony's KZG parameters: halo2's `ParamsKZG` files (raw or
//! compressed points), checked before use. Every point must be on the
//! curve, g[0] and g2 the generators, s·g2 in G2's prime-order subgroup, one
//! τ behind every consecutive pair of powers, and the Lagrange bases
//! consistent with the powers: a random linear combination each, so two
//! pairings and a few MSMs, not 2^k pairings.

use anyhow::{anyhow, bail, Result};
use halo2_proofs::arithmetic::{best_multiexp, CurveAffine};
use halo2_proofs::halo2curves::bn256::{pairing, Bn256, Fr, G1Affine, G2Affine};
use halo2_proofs::halo2curves::ff::Field;
use halo2_proofs::halo2curves::group::prime::PrimeCurveAffine;
use halo2_proofs::halo2curves::group::{Curve, Group};
use halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::poly::EvaluationDomain;
use halo2_proofs::{SerdeCurveAffine, SerdeFormat};
use rand::rngs::OsRng;

use super::{Srs, MAX_K};

impl Srs {
    /// Imports halo2 KZG parameters (`ParamsKZG::write`'s file, as PSE's and
    /// EZKL's published `kzg{k}.srs` are) after checking them; see the module
    /// documentation. The result is not marked insecure: its trapdoor is as
    /// secret as the ceremony that made it.
    pub fn import(bytes: &[u8]) -> Result<Self> {
        let (k, format) = layout(bytes)?;
        let params = ParamsKZG::<Bn256>::read_custom(&mut &bytes[..], format)
            .map_err(|e| anyhow!("a point of the k = {k} parameters is not on the curve: {e}"))?;
        check_ceremony(&params, &lagrange_bases(bytes, k, format)?)?;
        Ok(Self::from_params(params, false))
    }
}

/// Bytes of one G1 and one G2 point in each of halo2's layouts: raw
/// (uncompressed, Montgomery form) and compressed.
pub(super) const RAW: (usize, usize) = (64, 128);
const COMPRESSED: (usize, usize) = (32, 64);

/// The k and point layout of halo2 KZG parameters, from their size: a
/// little-endian k, 2^k powers and 2^k Lagrange bases in G1, then g2 and s·g2.
pub(super) fn layout(bytes: &[u8]) -> Result<(u32, SerdeFormat)> {
    let Some(head) = bytes.get(..4) else { bail!("not KZG parameters: {} bytes", bytes.len()) };
    let k = u32::from_le_bytes(head.try_into().expect("4 bytes"));
    if !(1..=MAX_K).contains(&k) {
        bail!("not KZG parameters of a supported size: k = {k} (zkfarm takes 1 to {MAX_K})");
    }
    let size = |(g1, g2): (usize, usize)| 4 + 2 * (1usize << k) * g1 + 2 * g2;
    if bytes.len() == size(RAW) {
        Ok((k, SerdeFormat::RawBytes))
    } else if bytes.len() == size(COMPRESSED) {
        Ok((k, SerdeFormat::Processed))
    } else {
        bail!(
            "truncated or corrupt KZG parameters: {} bytes, where k = {k} takes {} (raw points) or {} (compressed)",
            bytes.len(),
            size(RAW),
            size(COMPRESSED)
        )
    }
}

/// The Lagrange bases of a halo2 parameter file whose layout is known.
fn lagrange_bases(bytes: &[u8], k: u32, format: SerdeFormat) -> Result<Vec<G1Affine>> {
    let (g1, _) = if matches!(format, SerdeFormat::RawBytes) { RAW } else { COMPRESSED };
    let n = 1usize << k;
    let mut rest = &bytes[4 + n * g1..4 + 2 * n * g1];
    (0..n)
        .map(|_| {
            G1Affine::read(&mut rest, format).map_err(|e| anyhow!("a Lagrange basis point is not on the curve: {e}"))
        })
        .collect()
}

/// The checks an imported SRS passes, each failure naming its check.
/// `lagrange` is the file's Lagrange bases (halo2-axiom keeps its own copy
/// private).
fn check_ceremony(p: &ParamsKZG<Bn256>, lagrange: &[G1Affine]) -> Result<()> {
    let g = p.get_g();
    // halo2curves' raw reads check coordinates, not the curve equation.
    for (what, points) in [("g", g), ("the Lagrange bases", lagrange)] {
        if let Some(i) = points.iter().position(|q| !bool::from(q.is_on_curve())) {
            bail!("point {i} of {what} is not on the curve");
        }
    }
    for (what, q) in [("g2", p.g2()), ("s·g2", p.s_g2())] {
        if !bool::from(q.is_on_curve()) {
            bail!("{what} is not on the curve");
        }
    }
    if g[0] != G1Affine::generator() {
        bail!("g[0] is not the generator of G1");
    }
    if p.g2() != G2Affine::generator() {
        bail!("g2 is not the generator of G2");
    }
    // G1 has cofactor 1, so its points on the curve are in the group; G2's
    // are not all in the prime-order subgroup: [r - 1]·P + P is the identity
    // exactly for P in it.
    let s_g2 = p.s_g2().to_curve();
    if !bool::from((s_g2 * -Fr::ONE + s_g2).is_identity()) {
        bail!("s·g2 is not in G2's prime-order subgroup");
    }
    if g.len() > 1 && pairing(&g[1], &p.g2()) != pairing(&g[0], &p.s_g2()) {
        bail!("the first power is not τ·g for the τ of s·g2: e(g[1], g2) != e(g[0], s·g2)");
    }
    // Σ rᵢ·g[i+1] = τ·Σ rᵢ·g[i] for random rᵢ: every consecutive pair shares τ.
    let r: Vec<Fr> = (1..g.len()).map(|_| Fr::random(OsRng)).collect();
    let next = best_multiexp(&r, &g[1..]).to_affine();
    let prev = best_multiexp(&r, &g[..g.len() - 1]).to_affine();
    if pairing(&next, &p.g2()) != pairing(&prev, &p.s_g2()) {
        bail!("the powers of τ are not consistent: some g[i+1] is not τ·g[i]");
    }
    // The Lagrange bases are the inverse DFT of the powers: for random rⱼ,
    // Σ rⱼ·L[j] = Σ cᵢ·g[i] where c is the inverse DFT of r.
    let domain = EvaluationDomain::<Fr>::new(1, p.k());
    let r: Vec<Fr> = (0..g.len()).map(|_| Fr::random(OsRng)).collect();
    let c = domain.lagrange_to_coeff(domain.lagrange_from_vec(r.clone()));
    if lagrange.len() != g.len() || best_multiexp(&r, lagrange) != best_multiexp(&c, g) {
        bail!("the Lagrange bases do not match the powers of τ");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// halo2-axiom's own file of parameters with τ drawn from `seed`.
    fn halo2_file(k: u32, seed: u64, format: SerdeFormat) -> Vec<u8> {
        let params = ParamsKZG::<Bn256>::setup(k, rand_chacha::ChaCha20Rng::seed_from_u64(seed));
        let mut bytes = Vec::new();
        params.write_custom(&mut bytes, format).unwrap();
        bytes
    }

    fn refused(bytes: &[u8]) -> String {
        format!("{:#}", Srs::import(bytes).err().expect("the parameters must be refused"))
    }

    #[test]
    fn ceremony_parameters_import_in_both_layouts_with_a_stable_id() {
        let raw = Srs::import(&halo2_file(5, 9, SerdeFormat::RawBytes)).unwrap();
        let compressed = Srs::import(&halo2_file(5, 9, SerdeFormat::Processed)).unwrap();
        assert!(raw.id.starts_with("kzg:") && !raw.insecure);
        assert_eq!(raw.id, compressed.id, "the id depends on the SRS, not on its file's layout");
        assert_eq!(raw.k(), 5);
        // Saved as a zkfarm SRS, it loads back as the same, still not insecure.
        let dir = tempfile::tempdir().unwrap();
        raw.save(&dir.path().join("c.srs")).unwrap();
        let back = Srs::load(&dir.path().join("c.srs")).unwrap();
        assert_eq!((back.id.as_str(), back.insecure), (raw.id.as_str(), false));
    }

    #[test]
    fn tampered_ceremony_parameters_are_refused_naming_the_check() {
        let good = halo2_file(5, 9, SerdeFormat::RawBytes);
        let other = halo2_file(5, 10, SerdeFormat::RawBytes);
        let n = 32;
        let g1 = |i: usize| 4 + i * 64..4 + (i + 1) * 64;
        let lagrange = |i: usize| g1(n + i);

        assert!(refused(&good[..good.len() - 1]).contains("truncated or corrupt"));
        assert!(refused(&[]).contains("not KZG parameters"));
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&40u32.to_le_bytes());
        assert!(refused(&huge).contains("supported size"));

        let mut off_curve = good.clone();
        off_curve[g1(3).start] ^= 1;
        assert!(refused(&off_curve).contains("not on the curve"), "{}", refused(&off_curve));

        let mut not_generator = good.clone();
        not_generator.copy_within(g1(1), g1(0).start);
        assert!(refused(&not_generator).contains("g[0] is not the generator"));

        // Another ceremony's s·g2: the first power does not match it.
        let mut wrong_tau = good.clone();
        let s_g2 = good.len() - 128..good.len();
        wrong_tau[s_g2.clone()].copy_from_slice(&other[s_g2]);
        assert!(refused(&wrong_tau).contains("e(g[1], g2) != e(g[0], s·g2)"));

        // One power from another ceremony, deep inside.
        let mut spliced = good.clone();
        spliced[g1(17)].copy_from_slice(&other[g1(17)]);
        assert!(refused(&spliced).contains("powers of τ are not consistent"));

        let mut lagrange_swapped = good.clone();
        lagrange_swapped.copy_within(lagrange(1), lagrange(0).start);
        assert!(refused(&lagrange_swapped).contains("Lagrange bases do not match"));
    }
}
