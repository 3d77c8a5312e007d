//! The steps of a proof that touch whole polynomials, behind one trait.
//!
//! The protocol ([`crate::prover`]) holds only handles: a backend owns the
//! polynomials' storage, so a GPU backend can keep every polynomial of a
//! proof on the device from the witness upload to the last opening. Scalars
//! (challenges, evaluations) and curve points (commitments) cross to the host.

use halo2_proofs::halo2curves::bn256::{Fr, G1Affine};

use crate::domain::{Domain, Grid};
use crate::program::Program;

/// Which SRS basis a commitment uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Basis {
    /// `[s^i]G`: the polynomial is given by its coefficients.
    Monomial,
    /// The Lagrange basis of the 2^k domain: the polynomial is given by its
    /// values on the rows.
    Lagrange,
}

impl Basis {
    pub fn name(self) -> &'static str {
        match self {
            Basis::Monomial => "monomial",
            Basis::Lagrange => "lagrange",
        }
    }
}

/// One factor `a[i] + s·b[i] + c` of a grand product's numerator or
/// denominator.
pub struct Factor<'a, P> {
    pub a: &'a P,
    pub b: Option<(&'a P, Fr)>,
    pub c: Fr,
}

/// An input value of a lookup that the table does not hold: the proof
/// cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmatched {
    /// The first row whose input is missing from the table.
    pub row: usize,
}

/// A step the backend could not run: a device out of memory, a failed
/// launch or copy. The message names the step and the cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

pub type BackendResult<T> = Result<T, BackendError>;

/// A lookup's permuted input and table, or the input row the table lacks.
pub type Permuted<P> = Result<(P, P), Unmatched>;

/// Every step that touches a polynomial may fail on a device; the CPU
/// backend's never do.
pub trait Backend: Send + Sync {
    /// A polynomial the backend holds: values on the rows, coefficients, or
    /// values on the extended coset, as the protocol tracks.
    type Poly: Send + Sync;

    fn name(&self) -> &'static str;
    fn domain(&self) -> &Domain;

    /// Host values into the backend.
    fn upload(&self, values: Vec<Fr>) -> BackendResult<Self::Poly>;
    /// Backend values to the host (tests and debugging; the protocol needs
    /// none).
    fn download(&self, poly: &Self::Poly) -> BackendResult<Vec<Fr>>;

    /// KZG commitments, each against the first `len` bases of `basis`.
    fn commit(&self, polys: &[&Self::Poly], basis: Basis) -> BackendResult<Vec<G1Affine>>;

    /// Values on the 2^k rows to coefficients (batched inverse NTT).
    fn lagrange_to_coeff(&self, polys: &[&Self::Poly]) -> BackendResult<Vec<Self::Poly>>;
    /// Coefficients (n of them) to values on the extended coset (batched
    /// coset NTT).
    fn coeff_to_extended(&self, polys: &[&Self::Poly]) -> BackendResult<Vec<Self::Poly>>;
    /// Values on the extended coset to the first `len` coefficients.
    fn extended_to_coeff(&self, poly: &Self::Poly, len: usize) -> BackendResult<Self::Poly>;
    /// Consecutive pieces of `len` coefficients.
    fn split(&self, poly: &Self::Poly, len: usize) -> BackendResult<Vec<Self::Poly>>;

    /// Runs a constraint program at every point of `grid`, reading slot `i`
    /// from `leaves[i]` (values on that grid).
    fn evaluate_program(
        &self,
        program: &Program,
        leaves: &[&Self::Poly],
        scalars: &[Fr],
        grid: Grid,
    ) -> BackendResult<Self::Poly>;

    /// The running product z over the rows: `z[0] = first`,
    /// `z[i+1] = z[i] · Π num(i) / Π den(i)` for the rows before the
    /// blinding rows, which take `blinding`. Returns z and its value on the
    /// last row before the blinding rows.
    fn grand_product(
        &self,
        num: &[Factor<'_, Self::Poly>],
        den: &[Factor<'_, Self::Poly>],
        first: Fr,
        blinding: &[Fr],
    ) -> BackendResult<(Self::Poly, Fr)>;

    /// The lookup argument's permutation of the first `usable` rows of a
    /// compressed input and table: input values sorted so that equal values
    /// are adjacent, and the table arranged so that the first row of each
    /// run holds the same value. Rows from `usable` on take the blinding
    /// values.
    fn lookup_permute(
        &self,
        input: &Self::Poly,
        table: &Self::Poly,
        usable: usize,
        input_blinding: &[Fr],
        table_blinding: &[Fr],
    ) -> BackendResult<Permuted<Self::Poly>>;

    /// Multiplies values on the extended coset by 1/(X^n − 1).
    fn divide_by_vanishing(&self, poly: &mut Self::Poly) -> BackendResult<()>;

    /// Each polynomial (coefficients) at its point.
    fn evaluate_at(&self, queries: &[(&Self::Poly, Fr)]) -> BackendResult<Vec<Fr>>;

    /// `Σ scalar·poly + low`, where `low` adds to the first coefficients.
    /// The result has the length of the longest term.
    fn linear_combination(&self, terms: &[(&Self::Poly, Fr)], low: &[Fr]) -> BackendResult<Self::Poly>;

    /// Waits until the work queued so far has run (a device runs launches
    /// asynchronously); backends that run each step to completion need not.
    fn synchronize(&self) -> BackendResult<()> {
        Ok(())
    }

    /// The quotient of a polynomial (coefficients) by `Π (X − root)`,
    /// dropping the remainder, padded to the input's length.
    fn divide_by_linear(&self, poly: &Self::Poly, roots: &[Fr]) -> BackendResult<Self::Poly>;
}
