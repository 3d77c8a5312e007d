//! Commitments on an engine. Under one seed our prover's proof is a function
//! of the key and the witness, so an engine's proof must equal the cpu
//! engine's byte for byte: every commitment it computes must be the point
//! halo2-axiom computes for the same polynomial. These tests check that with
//! an engine that keeps its own copy of the bases, with our MSM kernels run
//! by their CPU emulation, and with the same kernels on the GPU where there
//! is one, and check that halo2-axiom's own verifier accepts the result. A
//! faulty engine falls back to the CPU; an engine that returns a wrong point
//! yields a proof the verifier rejects. halo2-axiom's own prover, for
//! contrast, cannot repeat a proof under one seed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Result};
use halo2_proofs::arithmetic::{best_multiexp, g_to_lagrange};
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G1};
use halo2_proofs::halo2curves::group::prime::PrimeCurveAffine;
use halo2_proofs::plonk::verify_proof;
use halo2_proofs::poly::commitment::{Blind, Params, ParamsProver};
use halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::poly::Polynomial;
use halo2_proofs::transcript::{Blake2bRead, Challenge255, TranscriptReadBuffer};
use rand::SeedableRng;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_kernels::gpu::Gpu;
use zkfarm_kernels_emu::Emu;
use zkfarm_plonk_device::DeviceBases;
use zkfarm_prover::commit::{Basis, EngineParams, ResidentBases};
use zkfarm_prover::{prove, KeyCache, Keys, ProveOptions, ProverImpl, Srs};

struct Fixture {
    model: CompiledModel,
    input: Vec<Vec<f64>>,
    srs: Srs,
    keys: Keys,
    params: ParamsKZG<Bn256>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // ZKFARM_EXAMPLES lets the binary run away from its build tree (scripts/gpu.sh).
        let dir = std::env::var_os("ZKFARM_EXAMPLES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples"));
        let onnx = std::fs::read(dir.join("nonlinear.onnx")).unwrap();
        let input = read_input(&dir.join("nonlinear.input.json")).unwrap();
        let model = CompiledModel::compile(&onnx, &Settings::default()).unwrap();
        let srs = Srs::generate_insecure_dev(model.k, rand_chacha::ChaCha20Rng::seed_from_u64(3)).unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(cache_dir.path().to_path_buf()).unwrap();
        let (keys, _) = cache.get_or_create(&model, &srs).unwrap();
        let params = (*srs.for_k(model.k).unwrap()).clone();
        Fixture { model, input, srs, keys, params }
    })
}

/// Every proof of these tests is made under this seed.
const SEED: u64 = 11;

fn engine_proof(f: &Fixture, params: &EngineParams) -> Vec<u8> {
    proof_by(f, params, ProverImpl::Zkfarm)
}

fn proof_by(f: &Fixture, params: &EngineParams, prover: ProverImpl) -> Vec<u8> {
    let opts = ProveOptions { seed: Some(SEED), prover };
    let receipt = prove(&f.model, &f.keys, params, &f.srs.id, &f.input, &opts).unwrap();
    hex::decode(receipt.proof).unwrap()
}

/// The cpu engine's proof.
fn cpu_reference(f: &Fixture) -> &'static Vec<u8> {
    static R: OnceLock<Vec<u8>> = OnceLock::new();
    R.get_or_init(|| engine_proof(f, &EngineParams::cpu(f.params.clone())))
}

/// Our prover repeats a proof under one seed. halo2-axiom's parts from
/// itself at the first lookup's permuted column (it orders the column by
/// iterating a `HashMap`): what a seed fixes there is the advice
/// commitments alone.
#[test]
fn one_seed_gives_one_proof_with_our_prover_but_not_with_halo2_axiom() {
    let f = fixture();
    assert!(!f.keys.vk.vk.cs().lookups().is_empty(), "the fixture model is meant to have lookups");
    let cpu = cpu_reference(f);
    assert!(*cpu == engine_proof(f, &EngineParams::cpu(f.params.clone())), "two proofs under one seed differ");
    let reference = proof_by(f, &EngineParams::cpu(f.params.clone()), ProverImpl::Halo2Axiom);
    let again = proof_by(f, &EngineParams::cpu(f.params.clone()), ProverImpl::Halo2Axiom);
    assert!(halo2_accepts(f, &reference) && halo2_accepts(f, &again));
    let first_difference = reference.iter().zip(&again).position(|(a, b)| a != b).expect("identical");
    let advice = f.keys.vk.vk.cs().num_advice_columns();
    assert_eq!(first_difference / 32 * 32, 32 * advice, "halo2-axiom's proofs part somewhere else");
}

/// halo2-axiom's verifier with plain KZG parameters.
fn halo2_accepts(f: &Fixture, proof: &[u8]) -> bool {
    let witness = f.model.run(&f.input).unwrap();
    let inst = instances(&f.model.program, &witness);
    let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(proof);
    verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, Challenge255<G1Affine>, _, _>(
        &f.params,
        &f.keys.vk.vk,
        SingleStrategy::new(&f.params),
        &[&[&inst]],
        &mut transcript,
    )
    .is_ok()
}

/// An engine under test: either its own copy of both bases on the host (the
/// Lagrange basis derived from the monomial one by an inverse FFT over G1)
/// or real resident bases on a kernel backend. It counts the MSMs it is
/// given, checks each result against halo2-axiom's commitment to the same
/// polynomial, and can be made to fail or corrupt them.
struct HostBases {
    source: Source,
    reference: ParamsKZG<Bn256>,
    calls: [AtomicUsize; 2],
    mismatches: AtomicUsize,
    behaviour: Behaviour,
}

enum Source {
    Host { g: Vec<G1Affine>, g_lagrange: Vec<G1Affine> },
    Device(Box<dyn ResidentBases>),
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Exact,
    Fail,
    /// Adds the generator to every commitment to the Lagrange basis.
    CorruptLagrange,
}

impl HostBases {
    fn new(params: &ParamsKZG<Bn256>, behaviour: Behaviour) -> Self {
        let g = params.get_g().to_vec();
        let g_lagrange = g_to_lagrange(g.iter().map(|p| p.to_curve()).collect(), params.k());
        Self::with_source(params, Source::Host { g, g_lagrange }, behaviour)
    }

    fn with_source(params: &ParamsKZG<Bn256>, source: Source, behaviour: Behaviour) -> Self {
        let reference = params.clone();
        HostBases { source, reference, calls: Default::default(), mismatches: AtomicUsize::new(0), behaviour }
    }

    fn calls(&self, set: Basis) -> usize {
        self.calls[set as usize].load(Ordering::Relaxed)
    }

    fn compute(&self, set: Basis, scalars: &[Fr]) -> Result<G1> {
        let (g, g_lagrange) = match &self.source {
            Source::Host { g, g_lagrange } => (g, g_lagrange),
            Source::Device(d) => return d.msm(set, scalars),
        };
        let bases = match set {
            Basis::Monomial => g,
            Basis::Lagrange => g_lagrange,
        };
        if scalars.len() > bases.len() {
            bail!("{} scalars for {} bases", scalars.len(), bases.len());
        }
        Ok(best_multiexp(scalars, &bases[..scalars.len()]))
    }
}

impl ResidentBases for HostBases {
    fn engine(&self) -> &'static str {
        match &self.source {
            Source::Host { .. } => "test",
            Source::Device(d) => d.engine(),
        }
    }

    fn msm(&self, set: Basis, scalars: &[Fr]) -> Result<G1> {
        self.calls[set as usize].fetch_add(1, Ordering::Relaxed);
        let point = self.compute(set, scalars)?;
        let expected = match set {
            Basis::Monomial => self.reference.commit(&Polynomial::new(scalars.to_vec()), Blind::default()),
            Basis::Lagrange => self.reference.commit_lagrange(&Polynomial::new(scalars.to_vec()), Blind::default()),
        };
        if point != expected {
            self.mismatches.fetch_add(1, Ordering::Relaxed);
        }
        match self.behaviour {
            Behaviour::Exact => Ok(point),
            Behaviour::Fail => bail!("simulated device fault"),
            Behaviour::CorruptLagrange if set == Basis::Lagrange => Ok(point + G1::generator()),
            Behaviour::CorruptLagrange => Ok(point),
        }
    }
}

/// A proof through `device`: both bases used, every commitment equal to
/// halo2-axiom's, no fallback, and halo2-axiom's verifier accepts it.
fn assert_engine_proves(f: &Fixture, device: Arc<HostBases>, engine: &str) {
    let params = EngineParams::with_device(f.params.clone(), device.clone());
    assert_eq!(params.engine(), engine);
    let proof = engine_proof(f, &params);
    // Witness columns are committed in evaluation form, the quotient pieces
    // in coefficient form: both bases are used.
    assert!(device.calls(Basis::Lagrange) > 0, "no Lagrange commitment reached the engine");
    assert!(device.calls(Basis::Monomial) > 0, "no monomial commitment reached the engine");
    assert_eq!(device.mismatches.load(Ordering::Relaxed), 0, "an engine commitment differs from halo2-axiom's");
    assert_eq!(params.fallbacks(), 0);
    assert!(proof == *cpu_reference(f), "the {engine} engine's proof differs from the cpu engine's");
    assert!(halo2_accepts(f, &proof), "halo2-axiom rejected the engine's proof");
}

#[test]
fn commitments_run_on_the_engine_and_equal_halo2s() {
    let f = fixture();
    assert_engine_proves(f, Arc::new(HostBases::new(&f.params, Behaviour::Exact)), "test");
}

/// The MSM kernels and their driver, run by the CPU emulation, make every
/// commitment of a whole proof.
#[test]
fn emulated_kernels_commit_a_whole_proof() {
    let f = fixture();
    let bases = DeviceBases::upload(Arc::new(Emu), &f.params).unwrap();
    let device = HostBases::with_source(&f.params, Source::Device(Box::new(bases)), Behaviour::Exact);
    assert_engine_proves(f, Arc::new(device), "emu");
}

/// The same on the GPU, where there is one.
#[test]
fn cuda_kernels_commit_a_whole_proof() {
    let gpu = match Gpu::open() {
        Ok(g) => Arc::new(g),
        Err(e) => {
            assert!(std::env::var_os("ZKFARM_REQUIRE_GPU").is_none(), "no GPU: {e:#}");
            eprintln!("skipped: {e:#}");
            return;
        }
    };
    let f = fixture();
    let bases = DeviceBases::upload(gpu, &f.params).unwrap();
    let device = HostBases::with_source(&f.params, Source::Device(Box::new(bases)), Behaviour::Exact);
    assert_engine_proves(f, Arc::new(device), "cuda");
}

#[test]
fn cpu_engine_proofs_verify() {
    let f = fixture();
    assert!(halo2_accepts(f, cpu_reference(f)));
}

#[test]
fn engine_faults_fall_back_to_the_cpu_and_the_proof_verifies() {
    let f = fixture();
    let device = Arc::new(HostBases::new(&f.params, Behaviour::Fail));
    let params = EngineParams::with_device(f.params.clone(), device.clone());
    let proof = engine_proof(f, &params);
    let calls = device.calls(Basis::Lagrange) + device.calls(Basis::Monomial);
    assert!(calls > 0);
    assert_eq!(params.fallbacks(), calls as u64, "every failed MSM is counted");
    assert!(halo2_accepts(f, &proof), "the fallback proof does not verify");
}

#[test]
fn a_wrong_engine_result_makes_a_proof_the_verifier_rejects() {
    let f = fixture();
    let device = Arc::new(HostBases::new(&f.params, Behaviour::CorruptLagrange));
    let params = EngineParams::with_device(f.params.clone(), device);
    let proof = engine_proof(f, &params);
    assert!(!halo2_accepts(f, &proof), "a proof with a corrupted commitment verified");
}

#[test]
fn downsized_params_stop_using_the_resident_bases() {
    let f = fixture();
    let device = Arc::new(HostBases::new(&f.params, Behaviour::Exact));
    let mut params = EngineParams::with_device(f.params.clone(), device);
    Params::downsize(&mut params, f.params.k() - 1);
    assert_eq!(params.engine(), "cpu");
    assert_eq!(Params::k(&params), f.params.k() - 1);
}
