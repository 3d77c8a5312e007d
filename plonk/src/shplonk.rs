//! SHPLONK multi-opening (KZG), as halo2-axiom's `VerifierSHPLONK` checks
//! it: queries are grouped by the set of points their polynomial is opened
//! at, each group's quotient is combined with powers of v, and one
//! linearised opening at u closes the argument.

use halo2_proofs::arithmetic::{eval_polynomial, evaluate_vanishing_polynomial, lagrange_interpolate};
use halo2_proofs::halo2curves::bn256::{Fr, G1Affine};
use halo2_proofs::halo2curves::ff::Field;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};

use crate::backend::{Backend, Basis};
use crate::domain::powers;
use crate::{OnBackend, ProveError};

/// Polynomial `poly` (an index into the proof's table of opened
/// polynomials) opened at `point`, where it evaluates to `eval`.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub poly: usize,
    pub point: Fr,
    pub eval: Fr,
}

/// Polynomials opened at the same set of points.
struct RotationSet {
    polys: Vec<usize>,
    points: Vec<Fr>,
    /// evals[j][p]: polynomial j at points[p].
    evals: Vec<Vec<Fr>>,
}

/// Groups queries the way the verifier does: polynomials in order of first
/// query, sets in order of their first polynomial, and sets compared as
/// sets of points (the order of points inside a set does not change any
/// value the verifier computes).
fn rotation_sets(queries: &[Query]) -> (Vec<RotationSet>, Vec<Fr>) {
    let mut super_points: Vec<Fr> = Vec::new();
    let mut per_poly: Vec<(usize, Vec<(Fr, Fr)>)> = Vec::new();
    for q in queries {
        if !super_points.contains(&q.point) {
            super_points.push(q.point);
        }
        match per_poly.iter_mut().find(|(p, _)| *p == q.poly) {
            Some((_, pts)) => pts.push((q.point, q.eval)),
            None => per_poly.push((q.poly, vec![(q.point, q.eval)])),
        }
    }
    let same_set = |a: &[Fr], b: &[(Fr, Fr)]| a.len() == b.len() && b.iter().all(|(p, _)| a.contains(p));
    let mut sets: Vec<RotationSet> = Vec::new();
    for (poly, pts) in per_poly {
        match sets.iter_mut().find(|s| same_set(&s.points, &pts)) {
            Some(set) => {
                let evals = set.points.iter().map(|p| pts.iter().find(|(q, _)| q == p).unwrap().1).collect();
                set.polys.push(poly);
                set.evals.push(evals);
            }
            None => sets.push(RotationSet {
                polys: vec![poly],
                points: pts.iter().map(|(p, _)| *p).collect(),
                evals: vec![pts.iter().map(|(_, e)| *e).collect()],
            }),
        }
    }
    (sets, super_points)
}

/// Writes the two SHPLONK commitments for `queries` over `polys`.
pub fn open<B, E, T>(backend: &B, polys: &[&B::Poly], queries: &[Query], transcript: &mut T) -> Result<(), ProveError>
where
    B: Backend,
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
{
    let y = *transcript.squeeze_challenge_scalar::<()>();
    let (sets, super_points) = rotation_sets(queries);
    // R_ij: the low-degree polynomial through polynomial j's evaluations.
    let interpolations: Vec<Vec<Vec<Fr>>> =
        sets.iter().map(|s| s.evals.iter().map(|e| lagrange_interpolate(&s.points, e)).collect()).collect();

    let v = *transcript.squeeze_challenge_scalar::<()>();
    let v_powers = powers(v, sets.len());
    // Q_i = Σ_j y^j (P_ij − R_ij) / Π (X − r), for r in set i.
    let quotients: Vec<B::Poly> = sets
        .iter()
        .zip(&interpolations)
        .map(|(set, rs)| {
            let y_powers = powers(y, set.polys.len());
            let terms: Vec<(&B::Poly, Fr)> = set.polys.iter().zip(&y_powers).map(|(&p, &c)| (polys[p], c)).collect();
            let mut low = vec![Fr::ZERO; set.points.len()];
            for (r, c) in rs.iter().zip(&y_powers) {
                for (l, coeff) in low.iter_mut().zip(r) {
                    *l -= *coeff * c;
                }
            }
            let numerator = backend.linear_combination(&terms, &low)?;
            backend.divide_by_linear(&numerator, &set.points)
        })
        .collect::<Result<_, _>>()
        .on(backend)?;
    let h_terms: Vec<(&B::Poly, Fr)> = quotients.iter().zip(&v_powers).map(|(q, &c)| (q, c)).collect();
    let h = backend.linear_combination(&h_terms, &[]).on(backend)?;
    let h_commitment = backend.commit(&[&h], Basis::Monomial).on(backend)?[0];
    transcript.write_point(h_commitment)?;
    let u = *transcript.squeeze_challenge_scalar::<()>();

    // L = Σ_i v^i Z_{T∖S_i}(u) Σ_j y^j (P_ij − R_ij(u)) − Z_T(u)·H,
    // normalised by the first set's Z_{T∖S_0}(u), then divided by (X − u).
    let z_diffs: Vec<Fr> = sets
        .iter()
        .map(|s| {
            let rest: Vec<Fr> = super_points.iter().filter(|p| !s.points.contains(p)).copied().collect();
            evaluate_vanishing_polynomial(&rest, u)
        })
        .collect();
    let norm = z_diffs.first().copied().unwrap_or(Fr::ONE).invert().unwrap_or(Fr::ZERO);
    let mut terms: Vec<(&B::Poly, Fr)> = Vec::new();
    let mut constant = Fr::ZERO;
    for (((set, rs), &vi), &zi) in sets.iter().zip(&interpolations).zip(&v_powers).zip(&z_diffs) {
        let y_powers = powers(y, set.polys.len());
        for ((&p, r), &yj) in set.polys.iter().zip(rs).zip(&y_powers) {
            let c = vi * zi * yj * norm;
            terms.push((polys[p], c));
            constant -= c * eval_polynomial(r, u);
        }
    }
    let zt = evaluate_vanishing_polynomial(&super_points, u);
    terms.push((&h, -(zt * norm)));
    let l = backend.linear_combination(&terms, &[constant]).on(backend)?;
    let w = backend.divide_by_linear(&l, &[u]).on(backend)?;
    let w_commitment = backend.commit(&[&w], Basis::Monomial).on(backend)?[0];
    transcript.write_point(w_commitment)?;
    Ok(())
}
