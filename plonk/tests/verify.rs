//! Proofs of a small circuit with every argument zkfarm circuits use —
//! gates with rotations, multi-column lookups, a permutation over several
//! sets of columns, a public instance — verified by halo2-axiom's own
//! `verify_proof`, and the ways a dishonest witness is caught.

use std::sync::Arc;

use halo2_proofs::circuit::{Layouter, SimpleFloorPlanner, Value};
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_proofs::halo2curves::ff::Field;
use halo2_proofs::plonk::{
    create_proof as axiom_create_proof, keygen_pk, keygen_vk, verify_proof, Advice, Circuit, Column, ConstraintSystem,
    Error, Fixed, Instance, ProvingKey,
};
use halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_proofs::poly::kzg::multiopen::{ProverSHPLONK, VerifierSHPLONK};
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::poly::Rotation;
use halo2_proofs::transcript::{Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zkfarm_plonk::{create_proof, CpuBackend, Domain, ProveError, ProvingData};

const K: u32 = 6;
const ROWS: usize = 20;
const TABLE: u64 = 16;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tamper {
    None,
    /// c = a·b + 1 on one row: a gate fails.
    WrongAdvice,
    /// d differs from the c it is a copy of: only the copy constraint fails.
    BrokenCopy,
    /// a leaves the table (and c follows it): only the lookup fails.
    BrokenLookup,
}

#[derive(Clone)]
struct TestCircuit {
    tamper: Tamper,
}

#[derive(Clone)]
struct Config {
    a: Column<Advice>,
    b: Column<Advice>,
    c: Column<Advice>,
    d: Column<Advice>,
    e: Column<Advice>,
    q_mul: Column<Fixed>,
    q_chain: Column<Fixed>,
    q_lookup: Column<Fixed>,
    t: Column<Fixed>,
    t_on: Column<Fixed>,
    instance: Column<Instance>,
}

fn values(tamper: Tamper) -> Vec<[u64; 5]> {
    let mut e = 0;
    (0..ROWS as u64)
        .map(|i| {
            let mut a = i % TABLE;
            if tamper == Tamper::BrokenLookup && i == 3 {
                a = TABLE + 5;
            }
            let b = (i * 7 + 3) % TABLE;
            let mut c = a * b;
            let d = c + u64::from(tamper == Tamper::BrokenCopy && i == 4);
            e += c;
            if tamper == Tamper::WrongAdvice && i == 5 {
                c += 1;
            }
            [a, b, c, d, e]
        })
        .collect()
}

fn expected_output() -> Fr {
    Fr::from(values(Tamper::None).last().unwrap()[4])
}

impl Circuit<Fr> for TestCircuit {
    type Config = Config;
    type FloorPlanner = SimpleFloorPlanner;
    type Params = ();

    fn without_witnesses(&self) -> Self {
        self.clone()
    }

    fn configure(m: &mut ConstraintSystem<Fr>) -> Config {
        let [a, b, c, d, e] = [(); 5].map(|_| m.advice_column());
        for col in [a, b, c, d, e] {
            m.enable_equality(col);
        }
        let [q_mul, q_chain, q_lookup, t, t_on] = [(); 5].map(|_| m.fixed_column());
        let instance = m.instance_column();
        m.enable_equality(instance);
        m.create_gate("mul", |m| {
            let q = m.query_fixed(q_mul, Rotation::cur());
            let [a, b, c] = [a, b, c].map(|col| m.query_advice(col, Rotation::cur()));
            vec![q * (a * b - c)]
        });
        m.create_gate("chain", |m| {
            let q = m.query_fixed(q_chain, Rotation::cur());
            let e_cur = m.query_advice(e, Rotation::cur());
            let e_prev = m.query_advice(e, Rotation::prev());
            let c = m.query_advice(c, Rotation::cur());
            vec![q * (e_cur - e_prev - c)]
        });
        m.lookup_any("a in table", |m| {
            let q = m.query_fixed(q_lookup, Rotation::cur());
            vec![(q * m.query_advice(a, Rotation::cur()), m.query_fixed(t, Rotation::cur()))]
        });
        m.lookup_any("b in tagged table", |m| {
            let q = m.query_fixed(q_lookup, Rotation::cur());
            vec![
                (q.clone(), m.query_fixed(t_on, Rotation::cur())),
                (q * m.query_advice(b, Rotation::cur()), m.query_fixed(t, Rotation::cur())),
            ]
        });
        Config { a, b, c, d, e, q_mul, q_chain, q_lookup, t, t_on, instance }
    }

    fn synthesize(&self, cfg: Config, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
        let rows = values(self.tamper);
        let last = layouter.assign_region(
            || "rows",
            |mut region| {
                for i in 0..TABLE as usize {
                    region.assign_fixed(cfg.t, i, Fr::from(i as u64));
                    region.assign_fixed(cfg.t_on, i, Fr::ONE);
                }
                let mut last = None;
                for (i, r) in rows.iter().enumerate() {
                    let [a, b, c, d, e] = r.map(Fr::from);
                    region.assign_advice(cfg.a, i, Value::known(a));
                    region.assign_advice(cfg.b, i, Value::known(b));
                    let c_cell = region.assign_advice(cfg.c, i, Value::known(c));
                    let d_cell = region.assign_advice(cfg.d, i, Value::known(d));
                    region.constrain_equal(c_cell.cell(), d_cell.cell());
                    last = Some(region.assign_advice(cfg.e, i, Value::known(e)).cell());
                    region.assign_fixed(cfg.q_mul, i, Fr::ONE);
                    region.assign_fixed(cfg.q_lookup, i, Fr::ONE);
                    if i > 0 {
                        region.assign_fixed(cfg.q_chain, i, Fr::ONE);
                    }
                }
                Ok(last.unwrap())
            },
        )?;
        layouter.constrain_instance(last, cfg.instance, 0);
        Ok(())
    }
}

struct Setup {
    params: Arc<ParamsKZG<Bn256>>,
    pk: ProvingKey<G1Affine>,
    backend: CpuBackend,
    data: ProvingData<CpuBackend>,
}

fn setup() -> Setup {
    let params = Arc::new(ParamsKZG::<Bn256>::setup(K, ChaCha20Rng::seed_from_u64(1)));
    let circuit = TestCircuit { tamper: Tamper::None };
    let vk = keygen_vk(&*params, &circuit).unwrap();
    let pk = keygen_pk(&*params, vk, &circuit).unwrap();
    let backend = CpuBackend::new(Domain::of(pk.get_vk().get_domain()), params.clone());
    let data = ProvingData::new(&backend, &pk).unwrap();
    Setup { params, pk, backend, data }
}

fn prove(s: &Setup, tamper: Tamper, seed: u64) -> Result<Vec<u8>, ProveError> {
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    let instance = [expected_output()];
    create_proof(
        &s.backend,
        &s.pk,
        &s.data,
        &TestCircuit { tamper },
        &[&instance],
        ChaCha20Rng::seed_from_u64(seed),
        &mut transcript,
    )?;
    Ok(transcript.finalize())
}

fn verifies(s: &Setup, proof: &[u8]) -> bool {
    let instance = [expected_output()];
    let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(proof);
    verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
        &*s.params,
        s.pk.get_vk(),
        SingleStrategy::new(&*s.params),
        &[&[&instance]],
        &mut transcript,
    )
    .is_ok()
}

#[test]
fn the_circuit_is_sound_under_halo2_axioms_own_prover() {
    // The reference: the same circuit through halo2-axiom's create_proof.
    let s = setup();
    let instance = [expected_output()];
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    axiom_create_proof::<KZGCommitmentScheme<Bn256>, ProverSHPLONK<'_, Bn256>, _, _, _, _>(
        &*s.params,
        &s.pk,
        &[TestCircuit { tamper: Tamper::None }],
        &[&[&instance]],
        ChaCha20Rng::seed_from_u64(3),
        &mut transcript,
    )
    .unwrap();
    assert!(verifies(&s, &transcript.finalize()));
    assert!(s.data.compiled.layout.permutation_sets >= 2, "the test covers chained permutation sets");
}

#[test]
fn our_proof_verifies_with_halo2_axiom() {
    let s = setup();
    let proof = prove(&s, Tamper::None, 5).unwrap();
    assert!(verifies(&s, &proof));
    // The same proof against another public output is rejected.
    let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(&proof[..]);
    let wrong = [expected_output() + Fr::ONE];
    assert!(verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
        &*s.params,
        s.pk.get_vk(),
        SingleStrategy::new(&*s.params),
        &[&[&wrong]],
        &mut transcript,
    )
    .is_err());
}

#[test]
fn a_wrong_advice_value_or_a_broken_copy_gives_a_proof_that_is_rejected() {
    let s = setup();
    for tamper in [Tamper::WrongAdvice, Tamper::BrokenCopy] {
        let proof = prove(&s, tamper, 5).unwrap();
        assert!(!verifies(&s, &proof), "{tamper:?} was accepted");
    }
}

#[test]
fn a_broken_lookup_is_refused_naming_the_lookup_and_row() {
    let s = setup();
    let err = prove(&s, Tamper::BrokenLookup, 5).unwrap_err();
    assert_eq!(err.to_string(), "lookup \"a in table\": the input on row 3 is not in the table");
}

#[test]
fn one_seed_gives_one_proof_across_runs_and_thread_counts() {
    let s = setup();
    let a = prove(&s, Tamper::None, 11).unwrap();
    let b = prove(&s, Tamper::None, 11).unwrap();
    assert_eq!(a, b);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let single = pool.install(|| prove(&s, Tamper::None, 11).unwrap());
    assert_eq!(a, single);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    assert_eq!(a, pool.install(|| prove(&s, Tamper::None, 11).unwrap()));
    let other = prove(&s, Tamper::None, 12).unwrap();
    assert_ne!(a, other, "another seed blinds differently");
    assert!(verifies(&s, &other));
}
