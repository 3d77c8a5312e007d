//! The CPU backend: every step on all host cores (rayon). Transforms use
//! halo2curves' FFT and commitments the caller's [`CommitKey`] (halo2-axiom's
//! MSM, or an engine's resident bases).

use std::sync::Arc;

use halo2_proofs::arithmetic::best_multiexp;
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G1};
use halo2_proofs::halo2curves::ff::{BatchInvert, Field};
use halo2_proofs::halo2curves::fft::best_fft;
use halo2_proofs::halo2curves::group::Curve;
use halo2_proofs::poly::commitment::{Blind, Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::poly::{LagrangeCoeff, Polynomial};
use rayon::prelude::*;

use crate::backend::{Backend, Basis, Factor, Unmatched};
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

    fn upload(&self, values: Vec<Fr>) -> Vec<Fr> {
        values
    }

    fn download(&self, poly: &Vec<Fr>) -> Vec<Fr> {
        poly.clone()
    }

    fn commit(&self, polys: &[&Vec<Fr>], basis: Basis) -> Vec<G1Affine> {
        // One MSM at a time: each already uses every core.
        let points: Vec<G1> = polys.iter().map(|p| self.key.commit(p, basis)).collect();
        let mut affine = vec![G1Affine::default(); points.len()];
        G1::batch_normalize(&points, &mut affine);
        affine
    }

    fn lagrange_to_coeff(&self, polys: &[&Vec<Fr>]) -> Vec<Vec<Fr>> {
        let d = &self.domain;
        polys
            .iter()
            .map(|p| {
                let mut a = p.to_vec();
                best_fft(&mut a, d.omega_inv, d.k);
                scale(&mut a, d.n_inv);
                a
            })
            .collect()
    }

    fn coeff_to_extended(&self, polys: &[&Vec<Fr>]) -> Vec<Vec<Fr>> {
        let d = &self.domain;
        polys
            .iter()
            .map(|p| {
                let mut a = Vec::with_capacity(d.extended_n);
                a.extend_from_slice(p);
                distribute_cube_root(&mut a, d.zeta);
                a.resize(d.extended_n, Fr::ZERO);
                best_fft(&mut a, d.extended_omega, d.extended_k);
                a
            })
            .collect()
    }

    fn extended_to_coeff(&self, poly: &Vec<Fr>, len: usize) -> Vec<Fr> {
        let d = &self.domain;
        let mut a = poly.clone();
        best_fft(&mut a, d.extended_omega_inv, d.extended_k);
        scale(&mut a, d.extended_n_inv);
        distribute_cube_root(&mut a, d.zeta_inv);
        a.truncate(len);
        a
    }

    fn split(&self, poly: &Vec<Fr>, len: usize) -> Vec<Vec<Fr>> {
        poly.chunks(len).map(|c| c.to_vec()).collect()
    }

    fn evaluate_program(&self, program: &Program, leaves: &[&Vec<Fr>], scalars: &[Fr], grid: Grid) -> Vec<Fr> {
        let (size, step, x0, dx) = grid.shape(&self.domain);
        assert!(leaves.len() >= program.slots, "the program reads {} slots", program.slots);
        assert!(leaves.iter().all(|l| l.len() == size), "every leaf has the grid's size");
        let leaves: Vec<&[Fr]> = leaves.iter().map(|l| l.as_slice()).collect();
        let mut out = vec![Fr::ZERO; size];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| {
            program.evaluate_range(&leaves, scalars, size, step, x0, dx, i * CHUNK, chunk);
        });
        out
    }

    fn grand_product(
        &self,
        num: &[Factor<'_, Vec<Fr>>],
        den: &[Factor<'_, Vec<Fr>>],
        first: Fr,
        blinding: &[Fr],
    ) -> (Vec<Fr>, Fr) {
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
        (z, acc)
    }

    fn lookup_permute(
        &self,
        input: &Vec<Fr>,
        table: &Vec<Fr>,
        usable: usize,
        input_blinding: &[Fr],
        table_blinding: &[Fr],
    ) -> Result<(Vec<Fr>, Vec<Fr>), Unmatched> {
        let (mut a, mut s) = lookup::permute(&input[..usable], &table[..usable])?;
        a.extend_from_slice(input_blinding);
        s.extend_from_slice(table_blinding);
        Ok((a, s))
    }

    fn divide_by_vanishing(&self, poly: &mut Vec<Fr>) {
        let t = &self.domain.vanishing_inv;
        poly.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            for (i, v) in chunk.iter_mut().enumerate() {
                *v *= t[(c * CHUNK + i) % t.len()];
            }
        });
    }

    fn evaluate_at(&self, queries: &[(&Vec<Fr>, Fr)]) -> Vec<Fr> {
        queries.iter().map(|(p, x)| eval(p, *x)).collect()
    }

    fn linear_combination(&self, terms: &[(&Vec<Fr>, Fr)], low: &[Fr]) -> Vec<Fr> {
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
        out
    }

    fn divide_by_linear(&self, poly: &Vec<Fr>, roots: &[Fr]) -> Vec<Fr> {
        let len = poly.len();
        let mut a = poly.clone();
        for root in roots {
            a = divide_by_root(&a, *root);
        }
        a.resize(len, Fr::ZERO);
        a
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
