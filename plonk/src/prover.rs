//! The Halo2 protocol, in the transcript order halo2-axiom's `verify_proof`
//! with `VerifierSHPLONK` reads: instances, advice commitments, θ, lookup
//! permutations, β and γ, permutation and lookup products, the vanishing
//! argument's random polynomial, y, the quotient pieces, x, the evaluations,
//! and the multi-opening.

use std::time::{Duration, Instant};

use halo2_proofs::halo2curves::bn256::{Fr, G1Affine};
use halo2_proofs::halo2curves::ff::{Field, PrimeField};
use halo2_proofs::plonk::{Any, Circuit, ProvingKey};
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use rand::RngCore;

use crate::backend::{Backend, Basis, Factor};
use crate::constraints::{compile, Compiled, BETA, GAMMA, THETA, Y};
use crate::domain::{powers, Domain, Grid};
use crate::shplonk::{self, Query};
use crate::witness;
use crate::{OnBackend, ProveError};

/// What a proving key contributes to every proof, compiled and resident on
/// a backend: the constraint programs, and the fixed and permutation
/// polynomials on the rows, as coefficients and on the extended coset.
pub struct ProvingData<B: Backend> {
    pub compiled: Compiled,
    fixed_values: Vec<B::Poly>,
    fixed_coeffs: Vec<B::Poly>,
    fixed_ext: Vec<B::Poly>,
    sigma_values: Vec<B::Poly>,
    sigma_coeffs: Vec<B::Poly>,
    sigma_ext: Vec<B::Poly>,
    /// l_0, l_last and l_active on the extended coset.
    l_ext: Vec<B::Poly>,
    /// ω^i on the rows: the identity permutation's values, up to δ^j.
    omega_powers: B::Poly,
}

impl<B: Backend> ProvingData<B> {
    pub fn new(backend: &B, pk: &ProvingKey<G1Affine>) -> Result<Self, ProveError> {
        Self::from_compiled(backend, pk, compile(pk)?)
    }

    /// The same, with the key's constraints already compiled (by
    /// [`compile`]) for a look before anything is uploaded.
    pub fn from_compiled(backend: &B, pk: &ProvingKey<G1Affine>, compiled: Compiled) -> Result<Self, ProveError> {
        check_domain(backend.domain(), pk)?;
        let up = |polys: Vec<Vec<Fr>>| {
            polys.into_iter().map(|p| backend.upload(p).on(backend)).collect::<Result<Vec<_>, _>>()
        };
        let fixed_values = up(pk.fixed_values().iter().map(|p| p.to_vec()).collect())?;
        let fixed_coeffs = up(pk.fixed_polys().iter().map(|p| p.to_vec()).collect())?;
        let sigma_values = up(pk.permutation().permutations().iter().map(|p| p.to_vec()).collect())?;
        let sigma_coeffs = up(pk.permutation().polys().iter().map(|p| p.to_vec()).collect())?;
        let ls = up([pk.l0(), pk.l_last(), pk.l_active_row()].iter().map(|p| p.to_vec()).collect())?;
        let fixed_ext = backend.coeff_to_extended(&fixed_coeffs.iter().collect::<Vec<_>>()).on(backend)?;
        let sigma_ext = backend.coeff_to_extended(&sigma_coeffs.iter().collect::<Vec<_>>()).on(backend)?;
        let l_ext = backend.coeff_to_extended(&ls.iter().collect::<Vec<_>>()).on(backend)?;
        let d = backend.domain();
        let omega_powers = backend.upload(powers(d.omega, d.n)).on(backend)?;
        Ok(ProvingData {
            compiled,
            fixed_values,
            fixed_coeffs,
            fixed_ext,
            sigma_values,
            sigma_coeffs,
            sigma_ext,
            l_ext,
            omega_powers,
        })
    }
}

fn check_domain(d: &Domain, pk: &ProvingKey<G1Affine>) -> Result<(), ProveError> {
    let key = pk.get_vk().get_domain();
    if d.k != key.k() || d.extended_k != key.extended_k() {
        return Err(ProveError::Domain { key: key.k(), backend: d.k });
    }
    Ok(())
}

/// The steps a proof's time is reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Witness,
    Commitments,
    Ntt,
    Quotient,
    Lookups,
    GrandProducts,
    Evaluations,
    Openings,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::Witness,
        Step::Commitments,
        Step::Ntt,
        Step::Quotient,
        Step::Lookups,
        Step::GrandProducts,
        Step::Evaluations,
        Step::Openings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Witness => "witness",
            Step::Commitments => "commitments",
            Step::Ntt => "ntt",
            Step::Quotient => "quotient",
            Step::Lookups => "lookups",
            Step::GrandProducts => "grand products",
            Step::Evaluations => "evaluations",
            Step::Openings => "openings",
        }
    }
}

/// Time spent per step in one proof.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    spent: [Duration; 8],
}

impl Timings {
    pub fn get(&self, step: Step) -> Duration {
        self.spent[step as usize]
    }

    pub fn total(&self) -> Duration {
        self.spent.iter().sum()
    }

    /// Runs `f` as part of `step`. The backend finishes the work `f`
    /// queued before the clock stops, so that a device's asynchronous
    /// launches are counted in the step that queued them. A failure to
    /// finish is left to the next call that touches the device, which
    /// reports it.
    fn time<B: Backend, T>(&mut self, step: Step, backend: &B, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let _ = backend.synchronize();
        self.spent[step as usize] += start.elapsed();
        out
    }
}

fn random(rng: &mut impl RngCore, count: usize) -> Vec<Fr> {
    (0..count).map(|_| Fr::random(&mut *rng)).collect()
}

/// Proves `circuit` with `instances` under `pk`, writing the proof to
/// `transcript`. Every random value (blinding rows, the vanishing
/// argument's random polynomial) is drawn from `rng` in a fixed order, and
/// every step is deterministic: under a seeded `rng` the proof is a function
/// of the key, the witness and the seed, on any backend and thread count.
#[allow(clippy::too_many_arguments)]
pub fn create_proof<B, C, E, T, R>(
    backend: &B,
    pk: &ProvingKey<G1Affine>,
    data: &ProvingData<B>,
    circuit: &C,
    instances: &[&[Fr]],
    mut rng: R,
    transcript: &mut T,
) -> Result<Timings, ProveError>
where
    B: Backend,
    C: Circuit<Fr>,
    E: EncodedChallenge<G1Affine>,
    T: TranscriptWrite<G1Affine, E>,
    R: RngCore,
{
    check_domain(backend.domain(), pk)?;
    let mut times = Timings::default();
    let vk = pk.get_vk();
    let cs = vk.cs();
    let d = backend.domain();
    // Query points are the key's domain's rotations of x.
    let rotate = |x: Fr, at: Rotation| vk.get_domain().rotate_omega(x, at);
    let n = d.n;
    let bf = cs.blinding_factors();
    let usable = n - (bf + 1);
    let layout = &data.compiled.layout;
    if instances.len() != cs.num_instance_columns() {
        return Err(ProveError::Instances { expected: cs.num_instance_columns(), given: instances.len() });
    }
    for (column, values) in instances.iter().enumerate() {
        if values.len() > usable {
            return Err(ProveError::InstanceTooLarge { column, len: values.len(), usable });
        }
    }
    vk.hash_into(transcript)?;

    // Witness: the circuit's advice, blinded on the unusable rows.
    let mut advice = times.time(Step::Witness, backend, || witness::synthesize(circuit, cs, n, usable, instances))?;
    for column in &mut advice {
        for (cell, r) in column[usable..].iter_mut().zip(random(&mut rng, n - usable)) {
            *cell = r;
        }
    }
    for values in instances {
        for v in values.iter() {
            transcript.common_scalar(*v)?;
        }
    }
    let instance_values: Vec<B::Poly> = instances
        .iter()
        .map(|values| {
            let mut col = values.to_vec();
            col.resize(n, Fr::ZERO);
            backend.upload(col).on(backend)
        })
        .collect::<Result<_, _>>()?;
    let advice_values: Vec<B::Poly> =
        advice.into_iter().map(|c| backend.upload(c).on(backend)).collect::<Result<_, _>>()?;
    let commitments = times
        .time(Step::Commitments, backend, || backend.commit(&advice_values.iter().collect::<Vec<_>>(), Basis::Lagrange))
        .on(backend)?;
    for c in commitments {
        transcript.write_point(c)?;
    }

    // Lookups: compress with θ, permute, commit to A' and S'.
    let theta = *transcript.squeeze_challenge_scalar::<()>();
    let row_leaves: Vec<&B::Poly> = data.fixed_values.iter().chain(&advice_values).chain(&instance_values).collect();
    struct Lookup<P> {
        input: P,
        table: P,
        permuted_input: P,
        permuted_table: P,
    }
    let mut lookups = Vec::with_capacity(layout.lookups);
    for (l, argument) in cs.lookups().iter().enumerate() {
        let (input_blind, table_blind) = (random(&mut rng, n - usable), random(&mut rng, n - usable));
        let lookup = times.time(Step::Lookups, backend, || {
            let c = &data.compiled;
            let input = backend.evaluate_program(&c.lookup_inputs[l], &row_leaves, &[theta], Grid::Rows).on(backend)?;
            let table = backend.evaluate_program(&c.lookup_tables[l], &row_leaves, &[theta], Grid::Rows).on(backend)?;
            let (permuted_input, permuted_table) = backend
                .lookup_permute(&input, &table, usable, &input_blind, &table_blind)
                .on(backend)?
                .map_err(|u| ProveError::Lookup { name: argument.name().to_string(), row: u.row })?;
            Ok::<_, ProveError>(Lookup { input, table, permuted_input, permuted_table })
        })?;
        let points = times
            .time(Step::Commitments, backend, || {
                backend.commit(&[&lookup.permuted_input, &lookup.permuted_table], Basis::Lagrange)
            })
            .on(backend)?;
        for p in points {
            transcript.write_point(p)?;
        }
        lookups.push(lookup);
    }

    // Permutation: one running product per set of columns, chained.
    let beta = *transcript.squeeze_challenge_scalar::<()>();
    let gamma = *transcript.squeeze_challenge_scalar::<()>();
    let columns = cs.permutation().get_columns();
    let value_of = |column: &halo2_proofs::plonk::Column<Any>| match column.column_type() {
        Any::Advice(_) => &advice_values[column.index()],
        Any::Fixed => &data.fixed_values[column.index()],
        Any::Instance => &instance_values[column.index()],
    };
    let mut permutation_z = Vec::with_capacity(layout.permutation_sets);
    let mut last = Fr::ONE;
    for (s, chunk) in columns.chunks(data.compiled.chunk_len).enumerate() {
        let blinding = random(&mut rng, bf);
        let (z, z_last) = times
            .time(Step::GrandProducts, backend, || {
                let mut num = Vec::new();
                let mut den = Vec::new();
                for (j, column) in chunk.iter().enumerate() {
                    let global = s * data.compiled.chunk_len + j;
                    let delta = Fr::DELTA.pow_vartime([global as u64]);
                    let v = value_of(column);
                    den.push(Factor { a: v, b: Some((&data.sigma_values[global], beta)), c: gamma });
                    num.push(Factor { a: v, b: Some((&data.omega_powers, beta * delta)), c: gamma });
                }
                backend.grand_product(&num, &den, last, &blinding)
            })
            .on(backend)?;
        last = z_last;
        let point = times.time(Step::Commitments, backend, || backend.commit(&[&z], Basis::Lagrange)).on(backend)?[0];
        transcript.write_point(point)?;
        permutation_z.push(z);
    }

    let mut lookup_z = Vec::with_capacity(layout.lookups);
    for lookup in &lookups {
        let blinding = random(&mut rng, bf);
        let (z, _) = times
            .time(Step::GrandProducts, backend, || {
                let num =
                    [Factor { a: &lookup.input, b: None, c: beta }, Factor { a: &lookup.table, b: None, c: gamma }];
                let den = [
                    Factor { a: &lookup.permuted_input, b: None, c: beta },
                    Factor { a: &lookup.permuted_table, b: None, c: gamma },
                ];
                backend.grand_product(&num, &den, Fr::ONE, &blinding)
            })
            .on(backend)?;
        let point = times.time(Step::Commitments, backend, || backend.commit(&[&z], Basis::Lagrange)).on(backend)?[0];
        transcript.write_point(point)?;
        lookup_z.push(z);
    }

    // The vanishing argument's random polynomial blinds h at x.
    let random_poly = backend.upload(random(&mut rng, n)).on(backend)?;
    let point =
        times.time(Step::Commitments, backend, || backend.commit(&[&random_poly], Basis::Monomial)).on(backend)?[0];
    transcript.write_point(point)?;
    let y = *transcript.squeeze_challenge_scalar::<()>();

    // Everything the quotient reads, as coefficients and on the coset.
    let mut on_rows: Vec<&B::Poly> = advice_values.iter().chain(&instance_values).chain(&permutation_z).collect();
    for (lookup, z) in lookups.iter().zip(&lookup_z) {
        on_rows.extend([&lookup.permuted_input, &lookup.permuted_table, z]);
    }
    let coeffs = times.time(Step::Ntt, backend, || backend.lagrange_to_coeff(&on_rows)).on(backend)?;
    let ext =
        times.time(Step::Ntt, backend, || backend.coeff_to_extended(&coeffs.iter().collect::<Vec<_>>())).on(backend)?;
    drop(on_rows);
    drop(lookups);
    drop((permutation_z, lookup_z));
    let (a, i, p) = (layout.advice, layout.instance, layout.permutation_sets);
    let advice_coeffs = &coeffs[..a];
    let permutation_coeffs = &coeffs[a + i..a + i + p];
    let lookup_coeffs = &coeffs[a + i + p..];

    let mut leaves: Vec<&B::Poly> = data.fixed_ext.iter().collect();
    leaves.extend(&ext[..a + i]);
    leaves.extend(&data.sigma_ext);
    leaves.extend(&data.l_ext);
    leaves.extend(&ext[a + i..]);
    debug_assert_eq!(leaves.len(), layout.total());
    let mut scalars = vec![Fr::ZERO; 4];
    scalars[THETA] = theta;
    scalars[BETA] = beta;
    scalars[GAMMA] = gamma;
    scalars[Y] = y;
    let numerator = times
        .time(Step::Quotient, backend, || {
            let mut h = backend.evaluate_program(&data.compiled.quotient, &leaves, &scalars, Grid::Extended)?;
            backend.divide_by_vanishing(&mut h)?;
            Ok(h)
        })
        .on(backend)?;
    drop(leaves);
    drop(ext);
    let h =
        times.time(Step::Ntt, backend, || backend.extended_to_coeff(&numerator, n * d.quotient_pieces)).on(backend)?;
    drop(numerator);
    let pieces = backend.split(&h, n).on(backend)?;
    drop(h);
    let points = times
        .time(Step::Commitments, backend, || backend.commit(&pieces.iter().collect::<Vec<_>>(), Basis::Monomial))
        .on(backend)?;
    for p in points {
        transcript.write_point(p)?;
    }

    // Evaluations at x and its rotations, in the verifier's reading order.
    let x = *transcript.squeeze_challenge_scalar::<()>();
    let xn = x.pow_vartime([n as u64]);
    let x_next = rotate(x, Rotation::next());
    let x_prev = rotate(x, Rotation::prev());
    let x_last = rotate(x, Rotation(-((bf + 1) as i32)));

    // Every opened polynomial by index; queries refer to these indices.
    let h_terms: Vec<(&B::Poly, Fr)> = pieces.iter().zip(powers(xn, pieces.len())).collect();
    let h_x = backend.linear_combination(&h_terms, &[]).on(backend)?;
    let polys: Vec<&B::Poly> = advice_coeffs
        .iter()
        .chain(&data.fixed_coeffs)
        .chain(&data.sigma_coeffs)
        .chain(permutation_coeffs)
        .chain(lookup_coeffs)
        .chain([&h_x, &random_poly])
        .collect();
    let ranges = |start: usize, len: usize| (start..start + len).collect::<Vec<usize>>();
    let advice_ids = ranges(0, a);
    let fixed_ids = ranges(a, layout.fixed);
    let sigma_ids = ranges(a + layout.fixed, layout.sigmas);
    let perm_ids = ranges(a + layout.fixed + layout.sigmas, p);
    let lookup_start = a + layout.fixed + layout.sigmas + p;
    let lookup_ids: Vec<[usize; 3]> =
        (0..layout.lookups).map(|l| [0, 1, 2].map(|j| lookup_start + 3 * l + j)).collect();
    let h_id = lookup_start + 3 * layout.lookups;
    let random_id = h_id + 1;
    debug_assert_eq!(polys.len(), random_id + 1);

    // The transcript's order.
    let mut written: Vec<(usize, Fr)> = Vec::new();
    for (column, at) in cs.advice_queries() {
        written.push((advice_ids[column.index()], rotate(x, *at)));
    }
    for (column, at) in cs.fixed_queries() {
        written.push((fixed_ids[column.index()], rotate(x, *at)));
    }
    written.push((random_id, x));
    written.extend(sigma_ids.iter().map(|&s| (s, x)));
    for (s, &z) in perm_ids.iter().enumerate() {
        written.extend([(z, x), (z, x_next)]);
        if s + 1 < perm_ids.len() {
            written.push((z, x_last));
        }
    }
    for &[a_id, s_id, z_id] in &lookup_ids {
        written.extend([(z_id, x), (z_id, x_next), (a_id, x), (a_id, x_prev), (s_id, x)]);
    }
    let evals = times
        .time(Step::Evaluations, backend, || {
            backend.evaluate_at(&written.iter().map(|&(p, at)| (polys[p], at)).collect::<Vec<_>>())
        })
        .on(backend)?;
    for e in &evals {
        transcript.write_scalar(*e)?;
    }
    let h_eval = times.time(Step::Evaluations, backend, || backend.evaluate_at(&[(&h_x, x)])).on(backend)?[0];
    let eval_of = |poly: usize, point: Fr| -> Fr {
        if poly == h_id {
            return h_eval;
        }
        let at = written.iter().position(|&(p, q)| p == poly && q == point).expect("every opening was evaluated");
        evals[at]
    };

    // The openings, in the verifier's query order.
    let mut opened: Vec<(usize, Fr)> = Vec::new();
    for (column, at) in cs.advice_queries() {
        opened.push((advice_ids[column.index()], rotate(x, *at)));
    }
    for &z in &perm_ids {
        opened.extend([(z, x), (z, x_next)]);
    }
    for &z in perm_ids.iter().rev().skip(1) {
        opened.push((z, x_last));
    }
    for &[a_id, s_id, z_id] in &lookup_ids {
        opened.extend([(z_id, x), (a_id, x), (s_id, x), (a_id, x_prev), (z_id, x_next)]);
    }
    for (column, at) in cs.fixed_queries() {
        opened.push((fixed_ids[column.index()], rotate(x, *at)));
    }
    opened.extend(sigma_ids.iter().map(|&s| (s, x)));
    opened.extend([(h_id, x), (random_id, x)]);
    let queries: Vec<Query> =
        opened.iter().map(|&(poly, point)| Query { poly, point, eval: eval_of(poly, point) }).collect();
    times.time(Step::Openings, backend, || shplonk::open(backend, &polys, &queries, transcript))?;
    Ok(times)
}
