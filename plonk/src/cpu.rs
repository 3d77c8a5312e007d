//! The CPU backend: every step on all host cores (rayon). Transforms use
//! halo2curves' FFT and commitments the caller's [`CommitKey`] (halo2-axiom's
//! MSM, or an engine's resident bases).

use std::sync::Arc;

use halo2_proofs::arithmetic::best_multiexp;
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G1};
use halo2_proofs::halo2curves::ff::{BatchInvert, Field, PrimeField};
use halo2_proofs::halo2curves::fft::best_fft;
use halo2_proofs::halo2curves::group::Curve;
use halo2_proofs::poly::commitment::{Blind, Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::poly::{LagrangeCoeff, Polynomial};
use halo2_proofs::{SerdeCurveAffine, SerdeFormat};
use rayon::prelude::*;

use crate::backend::{Backend, BackendResult, Basis, Factor, Permuted};
use crate::domain::{Domain, Grid};
use crate::lookup;
use crate::program::Program;

/// Rows per task in row-parallel loops: large enough to amortise a task,
/// small enough to balance two to a hundred cores.
const CHUNK: usize = 1 << 10;

/// The SRS as the CPU backend commits with it.
pub trait CommitKey: Send + Sync {
    /// `Σ values[i]·bases[i]` over the first `values.len()` bases.
    fn commit(&self, values: &[Fr], basis: Basis) -> G1;
}

impl CommitKey for ParamsKZG<Bn256> {
    fn commit(&self, values: &[Fr], basis: Basis) -> G1 {
        match basis {
            Basis::Monomial => best_multiexp(values, &self.get_g()[..values.len()]),
            // halo2-axiom keeps the Lagrange bases private to its params.
            Basis::Lagrange => {
                self.commit_lagrange(&Polynomial::<Fr, LagrangeCoeff>::new(values.to_vec()), Blind::default())
            }
        }
    }
}

/// Both bases of one (SRS, k) held on the host, for MSMs that fold the sign
/// of small negative scalars into the base.
///
/// Witness columns hold small integers, and a negative one is a field
/// element near the modulus: 254 bits to a Pippenger MSM. Committing `−t`
/// against `−G` instead costs only the bits of `t`, and halo2curves' MSM
/// skips the windows above them. The point is the same.
pub struct HostBases {
    monomial: Vec<G1Affine>,
    lagrange: Vec<G1Affine>,
}

impl HostBases {
    /// Reads both bases out of halo2-axiom's raw serialisation of `params`
    /// (k, the monomial points, the Lagrange points, then G2): the Lagrange
    /// basis is private to its params, and recomputing it would take an FFT
    /// over G1.
    pub fn of(params: &ParamsKZG<Bn256>) -> std::io::Result<Self> {
        let n = params.n() as usize;
        let mut raw = Vec::new();
        params.write_custom(&mut raw, SerdeFormat::RawBytesUnchecked)?;
        let mut reader = raw.get(4..).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let mut read = |count: usize| -> std::io::Result<Vec<G1Affine>> {
            (0..count).map(|_| G1Affine::read(&mut reader, SerdeFormat::RawBytesUnchecked)).collect()
        };
        let monomial = read(n)?;
        let lagrange = read(n)?;
        Ok(HostBases { monomial, lagrange })
    }
}

/// Whether a field element is an integer below 2^64.
fn is_small(v: &Fr) -> bool {
    v.to_repr().as_ref()[8..].iter().all(|&b| b == 0)
}

impl CommitKey for HostBases {
    fn commit(&self, values: &[Fr], basis: Basis) -> G1 {
        let bases = match basis {
            Basis::Monomial => &self.monomial[..values.len()],
            Basis::Lagrange => &self.lagrange[..values.len()],
        };
        let negated: Vec<Option<Fr>> = values
            .par_iter()
            .map(|v| {
                let neg = -*v;
                (!is_small(v) && is_small(&neg)).then_some(neg)
            })
            .collect();
        if negated.iter().all(Option::is_none) {
            return best_multiexp(values, bases);
        }
        let (scalars, points): (Vec<Fr>, Vec<G1Affine>) = values
            .par_iter()
            .zip(bases)
            .zip(&negated)
            .map(|((v, g), neg)| match neg {
                Some(t) => (*t, -*g),
                None => (*v, *g),
            })
            .unzip();
        best_multiexp(&scalars, &points)
    }
}

pub struct CpuBackend {
    domain: Domain,
    key: Arc<dyn CommitKey>,
}

impl CpuBackend {
    pub fn new(domain: Domain, key: Arc<dyn CommitKey>) -> Self {
        CpuBackend { domain, key }
    }
}

/// Multiplies `a[i]` by `c^(i mod 3)` given `[1, c, c^2]`: moving coefficients
/// onto (or off) the coset ζ·⟨ω_ext⟩ with ζ a cube root of unity.
fn distribute_cube_root(a: &mut [Fr], c: Fr) {
    let powers = [Fr::ONE, c, c.square()];
    a.par_chunks_mut(3 * CHUNK).for_each(|chunk| {
        for (i, v) in chunk.iter_mut().enumerate() {
            let p = i % 3;
            if p != 0 {
                *v *= powers[p];
            }
        }
    });
}

/// Multiplies `a[i]` by `g^i`.
fn distribute_powers(a: &mut [Fr], g: Fr) {
    a.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let mut power = g.pow_vartime([(c * CHUNK) as u64]);
        for v in chunk {
            *v *= power;
            power *= g;
        }
    });
}

fn scale(a: &mut [Fr], c: Fr) {
    a.par_iter_mut().for_each(|v| *v *= c);
}

/// `(a[i] + s·b[i] + c)` for the rows of `out`, multiplied into `out`.
fn multiply_factor(out: &mut [Fr], start: usize, f: &Factor<'_, Vec<Fr>>) {
    match f.b {
        Some((b, s)) => {
            for (i, o) in out.iter_mut().enumerate() {
                *o *= f.a[start + i] + s * b[start + i] + f.c;
            }
        }
        None => {
            for (i, o) in out.iter_mut().enumerate() {
                *o *= f.a[start + i] + f.c;
            }
        }
    }
}

/// Horner evaluation of coefficients at `x`, split over the cores.
fn eval(poly: &[Fr], x: Fr) -> Fr {
    poly.par_chunks(CHUNK * 8)
        .enumerate()
        .map(|(i, c)| {
            let v = c.iter().rev().fold(Fr::ZERO, |acc, a| acc * x + a);
            v * x.pow_vartime([(i * CHUNK * 8) as u64])
        })
        .reduce(|| Fr::ZERO, |a, b| a + b)
}

impl Backend for CpuBackend {
    type Poly = Vec<Fr>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn domain(&self) -> &Domain {
        &self.domain
    }

    fn upload(&self, values: Vec<Fr>) -> BackendResult<Vec<Fr>> {
        Ok(values)
    }

    fn download(&self, poly: &Vec<Fr>) -> BackendResult<Vec<Fr>> {
        Ok(poly.clone())
    }

    fn commit(&self, polys: &[&Vec<Fr>], basis: Basis) -> BackendResult<Vec<G1Affine>> {
        // One MSM at a time: each already uses every core.
        let points: Vec<G1> = polys.iter().map(|p| self.key.commit(p, basis)).collect();
        let mut affine = vec![G1Affine::default(); points.len()];
        G1::batch_normalize(&points, &mut affine);
        Ok(affine)
    }

    fn lagrange_to_coeff(&self, polys: &[&Vec<Fr>]) -> BackendResult<Vec<Vec<Fr>>> {
        let d = &self.domain;
        Ok(polys
            .iter()
            .map(|p| {
                let mut a = p.to_vec();
                best_fft(&mut a, d.omega_inv, d.k);
                scale(&mut a, d.n_inv);
                a
            })
            .collect())
    }

    fn coeff_to_extended(&self, polys: &[&Vec<Fr>]) -> BackendResult<Vec<Vec<Fr>>> {
        let d = &self.domain;
        let parts = d.extended_step();
        // Point j + parts·m of the coset is ζ·ω_ext^j·ω^m, so part j is an
        // n-point transform of the coefficients scaled by (ζ·ω_ext^j)^i:
        // `parts` transforms of n points instead of one of parts·n, most of
        // whose input is zero.
        let shifts: Vec<Fr> = (0..parts).map(|j| d.zeta * d.extended_omega.pow_vartime([j as u64])).collect();
        Ok(polys
            .iter()
            .map(|p| {
                assert_eq!(p.len(), d.n, "a polynomial of n coefficients");
                let pieces: Vec<Vec<Fr>> = shifts
                    .par_iter()
                    .map(|&g| {
                        let mut a = p.to_vec();
                        distribute_powers(&mut a, g);
                        best_fft(&mut a, d.omega, d.k);
                        a
                    })
                    .collect();
                let mut out = vec![Fr::ZERO; d.extended_n];
                out.par_chunks_mut(parts * CHUNK).enumerate().for_each(|(c, chunk)| {
                    for (i, v) in chunk.iter_mut().enumerate() {
                        let at = c * parts * CHUNK + i;
                        *v = pieces[at % parts][at / parts];
                    }
                });
                out
            })
            .collect())
    }

    fn extended_to_coeff(&self, poly: &Vec<Fr>, len: usize) -> BackendResult<Vec<Fr>> {
        let d = &self.domain;
        let mut a = poly.clone();
        best_fft(&mut a, d.extended_omega_inv, d.extended_k);
        scale(&mut a, d.extended_n_inv);
        distribute_cube_root(&mut a, d.zeta_inv);
        a.truncate(len);
        Ok(a)
    }

    fn split(&self, poly: &Vec<Fr>, len: usize) -> BackendResult<Vec<Vec<Fr>>> {
        Ok(poly.chunks(len).map(|c| c.to_vec()).collect())
    }

    fn evaluate_program(
        &self,
        program: &Program,
        leaves: &[&Vec<Fr>],
        scalars: &[Fr],
        grid: Grid,
    ) -> BackendResult<Vec<Fr>> {
        let (size, step, x0, dx) = grid.shape(&self.domain);
        assert!(leaves.len() >= program.slots, "the program reads {} slots", program.slots);
        assert!(leaves.iter().all(|l| l.len() == size), "every leaf has the grid's size");
        let leaves: Vec<&[Fr]> = leaves.iter().map(|l| l.as_slice()).collect();
        let mut out = vec![Fr::ZERO; size];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| {
            program.evaluate_range(&leaves, scalars, size, step, x0, dx, i * CHUNK, chunk);
        });
        Ok(out)
    }

    fn grand_product(
        &self,
        num: &[Factor<'_, Vec<Fr>>],
        den: &[Factor<'_, Vec<Fr>>],
        first: Fr,
        blinding: &[Fr],
    ) -> BackendResult<(Vec<Fr>, Fr)> {
        let n = self.domain.n;
        let computed = n - blinding.len();
        // ratio[i] = Π num(i) / Π den(i) for the rows the product steps over.
        let mut ratio = vec![Fr::ONE; computed - 1];
        ratio.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            let start = c * CHUNK;
            for f in den {
                multiply_factor(chunk, start, f);
            }
            chunk.iter_mut().batch_invert();
            for f in num {
                multiply_factor(chunk, start, f);
            }
        });
        let mut z = Vec::with_capacity(n);
        let mut acc = first;
        z.push(acc);
        for r in &ratio {
            acc *= r;
            z.push(acc);
        }
        z.extend_from_slice(blinding);
        Ok((z, acc))
    }

    fn lookup_permute(
        &self,
        input: &Vec<Fr>,
        table: &Vec<Fr>,
        usable: usize,
        input_blinding: &[Fr],
        table_blinding: &[Fr],
    ) -> BackendResult<Permuted<Vec<Fr>>> {
        Ok(lookup::permute(&input[..usable], &table[..usable]).map(|(mut a, mut s)| {
            a.extend_from_slice(input_blinding);
            s.extend_from_slice(table_blinding);
            (a, s)
        }))
    }

    fn divide_by_vanishing(&self, poly: &mut Vec<Fr>) -> BackendResult<()> {
        let t = &self.domain.vanishing_inv;
        poly.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            for (i, v) in chunk.iter_mut().enumerate() {
                *v *= t[(c * CHUNK + i) % t.len()];
            }
        });
        Ok(())
    }

    fn evaluate_at(&self, queries: &[(&Vec<Fr>, Fr)]) -> BackendResult<Vec<Fr>> {
        Ok(queries.iter().map(|(p, x)| eval(p, *x)).collect())
    }

    fn linear_combination(&self, terms: &[(&Vec<Fr>, Fr)], low: &[Fr]) -> BackendResult<Vec<Fr>> {
        let len = terms.iter().map(|(p, _)| p.len()).max().unwrap_or(0).max(low.len());
        let mut out = vec![Fr::ZERO; len];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            let start = c * CHUNK;
            for (p, s) in terms {
                for (i, o) in chunk.iter_mut().enumerate() {
                    if let Some(v) = p.get(start + i) {
                        *o += *v * s;
                    }
                }
            }
        });
        for (o, l) in out.iter_mut().zip(low) {
            *o += l;
        }
        Ok(out)
    }

    fn divide_by_linear(&self, poly: &Vec<Fr>, roots: &[Fr]) -> BackendResult<Vec<Fr>> {
        let len = poly.len();
        let mut a = poly.clone();
        for root in roots {
            a = divide_by_root(&a, *root);
        }
        a.resize(len, Fr::ZERO);
        Ok(a)
    }
}

/// Synthetic division of `a(X)` by `(X − b)`: the quotient, one coefficient
/// shorter, without the remainder.
fn divide_by_root(a: &[Fr], b: Fr) -> Vec<Fr> {
    if a.len() < 2 {
        return Vec::new();
    }
    let mut q = vec![Fr::ZERO; a.len() - 1];
    let mut carry = Fr::ZERO;
    for i in (1..a.len()).rev() {
        carry = a[i] + b * carry;
        q[i - 1] = carry;
    }
    q
}

/// Each step against a plain reference: Horner evaluation at the domain's
/// points, halo2-axiom's MSM and polynomial evaluation, explicit inversion.
#[cfg(test)]
mod tests {
    use halo2_proofs::arithmetic::eval_polynomial;
    use halo2_proofs::poly::EvaluationDomain;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::program::Builder;

    const K: u32 = 5;

    fn backend() -> (CpuBackend, Arc<ParamsKZG<Bn256>>) {
        let params = Arc::new(ParamsKZG::<Bn256>::setup(K, ChaCha20Rng::seed_from_u64(2)));
        // Constraint degree 4: a quotient of 3 pieces on an extended domain of 2^(k+2).
        let domain = Domain::of(&EvaluationDomain::<Fr>::new(4, K));
        (CpuBackend::new(domain, params.clone()), params)
    }

    fn random(len: usize, seed: u64) -> Vec<Fr> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..len).map(|_| Fr::random(&mut rng)).collect()
    }

    fn horner(c: &[Fr], x: Fr) -> Fr {
        c.iter().rev().fold(Fr::ZERO, |acc, a| acc * x + a)
    }

    #[test]
    fn transforms_agree_with_evaluation_at_the_domains_points() {
        let (b, _) = backend();
        let d = b.domain().clone();
        let values = random(d.n, 1);
        let coeffs = b.lagrange_to_coeff(&[&values]).unwrap().remove(0);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(horner(&coeffs, d.omega.pow_vartime([i as u64])), *v, "row {i}");
        }
        let ext = b.coeff_to_extended(&[&coeffs]).unwrap().remove(0);
        assert_eq!(ext.len(), d.extended_n);
        for (i, v) in ext.iter().enumerate() {
            let x = d.zeta * d.extended_omega.pow_vartime([i as u64]);
            assert_eq!(horner(&coeffs, x), *v, "coset point {i}");
        }
        // Back from the coset: a polynomial of the extended degree.
        let wide = random(d.extended_n, 2);
        let on_coset: Vec<Fr> =
            (0..d.extended_n).map(|i| horner(&wide, d.zeta * d.extended_omega.pow_vartime([i as u64]))).collect();
        assert_eq!(b.extended_to_coeff(&on_coset, d.extended_n).unwrap(), wide);
        assert_eq!(b.extended_to_coeff(&on_coset, 3 * d.n).unwrap(), wide[..3 * d.n]);
        let mut divided = on_coset.clone();
        b.divide_by_vanishing(&mut divided).unwrap();
        for i in 0..d.extended_n {
            let x = d.zeta * d.extended_omega.pow_vartime([i as u64]);
            assert_eq!(divided[i] * (x.pow_vartime([d.n as u64]) - Fr::ONE), on_coset[i], "point {i}");
        }
    }

    #[test]
    fn commitments_equal_halo2_axioms_msm_in_both_bases() {
        let (b, params) = backend();
        let d = b.domain().clone();
        let values = random(d.n, 3);
        let coeffs = b.lagrange_to_coeff(&[&values]).unwrap().remove(0);
        let [monomial, lagrange] =
            [b.commit(&[&coeffs], Basis::Monomial).unwrap()[0], b.commit(&[&values], Basis::Lagrange).unwrap()[0]];
        assert_eq!(monomial, best_multiexp(&coeffs, params.get_g()).to_affine());
        // The same polynomial committed from its values or its coefficients.
        assert_eq!(lagrange, monomial);
        // Host bases with small negative scalars folded into the bases.
        let host = HostBases::of(&params).unwrap();
        let mut small: Vec<Fr> = (0..d.n as u64).map(|i| Fr::from(i * 37 % 1000)).collect();
        for v in small.iter_mut().step_by(3) {
            *v = -*v;
        }
        for (basis, set) in [(Basis::Monomial, &small), (Basis::Lagrange, &values)] {
            let expected = CommitKey::commit(&*params, set, basis);
            assert_eq!(host.commit(set, basis), expected, "{}", basis.name());
        }
        assert_eq!(host.commit(&small, Basis::Lagrange), CommitKey::commit(&*params, &small, Basis::Lagrange));
        // A short polynomial uses the first bases.
        assert_eq!(
            b.commit(&[&coeffs[..5].to_vec()], Basis::Monomial).unwrap()[0],
            best_multiexp(&coeffs[..5], &params.get_g()[..5]).to_affine()
        );
    }

    #[test]
    fn grand_products_match_the_running_product_with_explicit_inverses() {
        let (b, _) = backend();
        let n = b.domain().n;
        let (p, q, r) = (random(n, 4), random(n, 5), random(n, 6));
        let (s, c) = (Fr::from(7), Fr::from(9));
        let num = [Factor { a: &p, b: Some((&q, s)), c }];
        let den = [Factor { a: &q, b: None, c }, Factor { a: &r, b: Some((&p, c)), c: s }];
        let blinding = random(3, 7);
        let (z, last) = b.grand_product(&num, &den, Fr::from(2), &blinding).unwrap();
        assert_eq!(z.len(), n);
        let mut acc = Fr::from(2);
        for i in 0..n - 3 {
            assert_eq!(z[i], acc, "row {i}");
            let ratio = (p[i] + s * q[i] + c) * ((q[i] + c) * (r[i] + c * p[i] + s)).invert().unwrap();
            acc *= ratio;
        }
        assert_eq!(last, z[n - 4]);
        assert_eq!(&z[n - 3..], &blinding[..]);
    }

    #[test]
    fn programs_on_the_coset_match_the_pointwise_reference() {
        let (b, _) = backend();
        let d = b.domain().clone();
        let mut builder = Builder::default();
        let (a, a_next, c) = (builder.leaf(0, 0), builder.leaf(0, 1), builder.leaf(1, -2));
        let x = builder.x();
        let s = builder.scalar(0);
        let t = builder.mul(a_next, c);
        let t = builder.sub(t, x);
        let out = builder.fold(&[a, t], s);
        let program = builder.finish(out);
        let leaves = [random(d.extended_n, 8), random(d.extended_n, 9)];
        let scalars = [Fr::from(5)];
        let got = b.evaluate_program(&program, &[&leaves[0], &leaves[1]], &scalars, Grid::Extended).unwrap();
        let step = d.extended_step() as i64;
        for (i, v) in got.iter().enumerate() {
            let leaf = |slot: u32, rot: i32| {
                leaves[slot as usize][(i as i64 + rot as i64 * step).rem_euclid(d.extended_n as i64) as usize]
            };
            let x = d.zeta * d.extended_omega.pow_vartime([i as u64]);
            assert_eq!(*v, program.evaluate_at(leaf, &scalars, x), "point {i}");
        }
    }

    #[test]
    fn evaluation_combination_and_division_match_plain_arithmetic() {
        let (b, _) = backend();
        let n = b.domain().n;
        let (p, q) = (random(n, 10), random(n, 11));
        let x = Fr::from(123456789);
        assert_eq!(b.evaluate_at(&[(&p, x), (&q, x)]).unwrap(), vec![eval_polynomial(&p, x), eval_polynomial(&q, x)]);
        let short = p[..4].to_vec();
        let sum = b.linear_combination(&[(&p, Fr::from(3)), (&short, Fr::from(5))], &[Fr::ONE]).unwrap();
        for i in 0..n {
            let expected = p[i] * Fr::from(3) + if i < 4 { p[i] * Fr::from(5) } else { Fr::ZERO };
            assert_eq!(sum[i], expected + if i == 0 { Fr::ONE } else { Fr::ZERO });
        }
        // q(X) = (p(X) − p(r)) / (X − r): q(y)·(y − r) = p(y) − p(r) at any y.
        let (r1, r2) = (Fr::from(3), Fr::from(17));
        let quotient = b.divide_by_linear(&p, &[r1]).unwrap();
        assert_eq!(quotient.len(), n);
        let y = Fr::from(99);
        assert_eq!(horner(&quotient, y) * (y - r1), horner(&p, y) - horner(&p, r1));
        // Dividing by two roots of a multiple of (X − r1)(X − r2) is exact.
        let mut m = vec![r1 * r2, -(r1 + r2), Fr::ONE];
        m.resize(n, Fr::ZERO);
        let product = b.linear_combination(&[(&m, Fr::ONE)], &[]).unwrap();
        let two = b.divide_by_linear(&product, &[r1, r2]).unwrap();
        assert_eq!(two[0], Fr::ONE);
        assert!(two[1..].iter().all(|c| *c == Fr::ZERO));
    }
}
