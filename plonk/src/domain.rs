//! The two evaluation domains of a proof: the 2^k rows of the circuit and
//! the extended coset on which the quotient is computed.

use halo2_proofs::halo2curves::bn256::Fr;
use halo2_proofs::halo2curves::ff::Field;
use halo2_proofs::poly::EvaluationDomain;

/// The constants a backend needs to move polynomials between the domains.
/// Taken from the proving key's `EvaluationDomain`, so that the extended
/// domain, its coset and the vanishing polynomial's values are exactly the
/// ones halo2-axiom's verifier assumes.
#[derive(Clone, Debug)]
pub struct Domain {
    pub k: u32,
    pub n: usize,
    pub extended_k: u32,
    pub extended_n: usize,
    pub omega: Fr,
    pub omega_inv: Fr,
    pub extended_omega: Fr,
    pub extended_omega_inv: Fr,
    /// The coset generator ζ (a cube root of unity): the extended domain is
    /// ζ·⟨extended_omega⟩.
    pub zeta: Fr,
    pub zeta_inv: Fr,
    /// 1/n and 1/extended_n, to finish inverse transforms.
    pub n_inv: Fr,
    pub extended_n_inv: Fr,
    /// 1/(X^n − 1) on the coset; it repeats with period extended_n / n.
    pub vanishing_inv: Vec<Fr>,
    /// The quotient has `quotient_pieces · n` coefficients.
    pub quotient_pieces: usize,
}

impl Domain {
    pub fn of(d: &EvaluationDomain<Fr>) -> Self {
        Domain {
            k: d.k,
            n: d.n as usize,
            extended_k: d.extended_k,
            extended_n: 1 << d.extended_k,
            omega: d.omega,
            omega_inv: d.omega_inv,
            extended_omega: d.extended_omega,
            extended_omega_inv: d.extended_omega_inv,
            zeta: d.g_coset,
            zeta_inv: d.g_coset_inv,
            n_inv: d.ifft_divisor,
            extended_n_inv: d.extended_ifft_divisor,
            vanishing_inv: d.t_evaluations.clone(),
            quotient_pieces: d.quotient_poly_degree as usize,
        }
    }

    /// How many extended points one row of the 2^k domain spans.
    pub fn extended_step(&self) -> usize {
        self.extended_n / self.n
    }
}

/// 1, base, base², … (`count` of them).
pub fn powers(base: Fr, count: usize) -> Vec<Fr> {
    let mut out = Vec::with_capacity(count);
    let mut acc = Fr::ONE;
    for _ in 0..count {
        out.push(acc);
        acc *= base;
    }
    out
}

/// Where a constraint program is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grid {
    /// The 2^k rows, from Lagrange values; X is ω^i.
    Rows,
    /// The extended coset, from coset values; X is ζ·ω_ext^i and a rotation
    /// by one row moves `extended_step` points.
    Extended,
}

impl Grid {
    /// (size, points per row, the first point X, the step between points).
    pub fn shape(self, d: &Domain) -> (usize, usize, Fr, Fr) {
        match self {
            Grid::Rows => (d.n, 1, Fr::ONE, d.omega),
            Grid::Extended => (d.extended_n, d.extended_step(), d.zeta, d.extended_omega),
        }
    }
}
