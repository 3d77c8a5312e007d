//! How much memory a proof holds: the polynomials a proving key keeps on
//! the backend and those one proof holds at its peak, counted from the
//! constraint system the way [`crate::prover`] allocates them. A GPU
//! worker admits a proof by this figure, and the coordinator schedules by
//! it; the device backend's meter checks it in the tests.

use halo2_proofs::halo2curves::bn256::{Fr, G1Affine};
use halo2_proofs::plonk::{ConstraintSystem, VerifyingKey};

use crate::constraints::Layout;

/// Bytes of one field element.
const ELEMENT: u64 = 32;

/// Memory of proofs of one key, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkingSet {
    /// Held while the key is prepared: fixed and permutation columns as
    /// values, coefficients and on the extended coset, the Lagrange
    /// polynomials, and the transform tables.
    pub key: u64,
    /// Held by one proof at its peak: the witness columns and the
    /// arguments' columns in all three forms, the quotient's numerator,
    /// and an allowance for the scratch of MSMs and sorts.
    pub proof: u64,
    /// The SRS bases of the key's size, monomial and Lagrange.
    pub bases: u64,
}

impl WorkingSet {
    pub fn of(vk: &VerifyingKey<G1Affine>) -> Self {
        let domain = vk.get_domain();
        Self::of_system(vk.cs(), domain.k(), domain.extended_k())
    }

    /// The same from a circuit's constraint system and size, before any
    /// key is generated: the extended domain is the one keygen would make.
    pub fn of_circuit(cs: &ConstraintSystem<Fr>, k: u32) -> Self {
        let quotient_degree = cs.degree().max(3) as u32 - 1;
        let extended_k = k + quotient_degree.next_power_of_two().trailing_zeros();
        Self::of_system(cs, k, extended_k)
    }

    fn of_system(cs: &ConstraintSystem<Fr>, k: u32, extended_k: u32) -> Self {
        let n = 1u64 << k;
        let ext = 1u64 << extended_k;
        let l = Layout::of(cs);
        let [fixed, advice, instance, sigmas, sets, lookups] =
            [l.fixed, l.advice, l.instance, l.sigmas, l.permutation_sets, l.lookups].map(|c| c as u64);

        // ProvingData: fixed and σ values and coefficients (2n each) and
        // their cosets, l_0, l_last and l_active on the coset, ω^i; the NTT
        // tables of the coset (twiddles both ways, ζ^i and ζ^-i).
        let key = (fixed + sigmas) * (2 * n + ext) + 3 * ext + n + 3 * ext;

        // The polynomials the quotient reads, as coefficients and on the coset.
        let opened = advice + instance + sets + 3 * lookups;
        let held = (advice + instance) * n + opened * (n + ext) + n;
        // Peak one: every coset transform done, the lookups' compressed
        // columns and A', S' and the grand products still held.
        let transforms = held + 4 * lookups * n + (sets + lookups) * n;
        // Peak two: the quotient's numerator next to everything it reads.
        let quotient = held + ext;
        // Scratch: an MSM over n scalars, or a lookup's sort (two padded
        // copies and three index arrays), whichever is larger.
        let scratch = msm_scratch(k).max(lookups.min(1) * (2 * n * ELEMENT + 12 * n));

        WorkingSet { key: key * ELEMENT, proof: transforms.max(quotient) * ELEMENT + scratch, bases: 2 * n * 64 }
    }

    /// Everything a worker needs for its first proof of the key.
    pub fn total(&self) -> u64 {
        self.key + self.proof + self.bases
    }
}

/// The device MSM's scratch for 2^k full-width scalars, after the window
/// plan of `zkfarm_kernels::msm_plan::Plan` (window c = k − 2, clamped to
/// 4..=20; one window more than 254 bits need): the folded scalars and
/// their signs (36 bytes each), per window and scalar a digit pair and its
/// sorted copy (16 bytes) and the partial sums of the first accumulation
/// level (a 4-byte key and a 128-byte point per 16 pairs, twice: about 9
/// bytes), and per bucket a count and a 128-byte point.
fn msm_scratch(k: u32) -> u64 {
    let n = 1u64 << k;
    let c = u64::from(k.saturating_sub(2).clamp(4, 20));
    let windows = 254u64.div_ceil(c) + 1;
    let buckets = windows << (c - 1);
    n * (36 + 25 * windows) + 132 * buckets
}
