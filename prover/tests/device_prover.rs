//! Whole proofs of a model on the device backend, its kernels run by their
//! CPU emulation (and by the GPU where there is one): under one seed the
//! proof must equal the CPU backend's byte for byte, halo2-axiom's verifier
//! must accept it, a dishonest witness must be refused or rejected as on
//! the CPU, and every polynomial a proof put on the device must be freed
//! when it ends, whether it succeeded or failed.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_proofs::plonk::{verify_proof, Circuit, ConstraintSystem};
use halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer};
use rand::SeedableRng;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};
use zkfarm_kernels::backend::Backend as Device;
use zkfarm_kernels::gpu::Gpu;
use zkfarm_kernels_emu::Emu;
use zkfarm_plonk::{create_proof, Backend, Domain, ProveError, ProvingData, WorkingSet};
use zkfarm_plonk_device::{DeviceBackend, DeviceBases, ProgramKernel};
use zkfarm_prover::commit::EngineParams;
use zkfarm_prover::prove::cpu_backend;
use zkfarm_prover::{KeyCache, Keys, Srs};

const SEED: u64 = 21;

struct Fixture {
    model: CompiledModel,
    keys: Keys,
    params: Arc<ParamsKZG<Bn256>>,
    witness: Arc<zkfarm_circuits::program::Witness>,
    inst: Vec<Fr>,
}

/// The nonlinear example (activations by lookup tables, a permutation, an
/// instance column) at a small scale: k = 10, so the emulator proves it in
/// seconds.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::var_os("ZKFARM_EXAMPLES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples"));
        let onnx = std::fs::read(dir.join("nonlinear.onnx")).unwrap();
        let input = read_input(&dir.join("nonlinear.input.json")).unwrap();
        let settings = Settings { input_scale: 5, param_scale: 5, lookup_bits: 9, ..Settings::default() };
        let model = CompiledModel::compile(&onnx, &settings).unwrap();
        assert!(model.k <= 12, "the fixture is meant to be small, not k = {}", model.k);
        let srs = Srs::generate_insecure_dev(model.k, rand_chacha::ChaCha20Rng::seed_from_u64(5)).unwrap();
        let key_dir = tempfile::tempdir().unwrap();
        let (keys, _) = KeyCache::new(key_dir.path().to_path_buf()).unwrap().get_or_create(&model, &srs).unwrap();
        let params = srs.for_k(model.k).unwrap();
        let witness = Arc::new(model.run(&input).unwrap());
        let inst = instances(&model.program, &witness);
        Fixture { model, keys, params, witness, inst }
    })
}

/// A proof by `backend` of the fixture, with cell `tamper` of the witness
/// changed when given.
fn proof_on<B: Backend>(
    f: &Fixture,
    backend: &B,
    data: &ProvingData<B>,
    tamper: Option<usize>,
) -> Result<Vec<u8>, ProveError> {
    let mut circuit = ModelCircuit::new(f.model.program.clone(), Some(f.witness.clone()));
    circuit.tamper = tamper;
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(SEED);
    create_proof(backend, &f.keys.pk, data, &circuit, &[&f.inst], rng, &mut transcript)?;
    Ok(transcript.finalize())
}

fn cpu_proof(f: &Fixture, tamper: Option<usize>) -> Result<Vec<u8>, ProveError> {
    let backend = cpu_backend(&f.keys.pk, &EngineParams::cpu(f.params.clone()));
    let data = ProvingData::new(&backend, &f.keys.pk).unwrap();
    proof_on(f, &backend, &data, tamper)
}

fn halo2_accepts(f: &Fixture, proof: &[u8]) -> bool {
    let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(proof);
    verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, Challenge255<G1Affine>, _, _>(
        &f.params,
        &f.keys.vk.vk,
        SingleStrategy::new(&f.params),
        &[&[&f.inst]],
        &mut transcript,
    )
    .is_ok()
}

/// The checks of this file on one kernel device.
fn proves_like_the_cpu_on<D: Device>(device: Arc<D>) {
    let f = fixture();
    let bases = Arc::new(DeviceBases::upload(device, &f.params).unwrap());
    let backend = DeviceBackend::new(Domain::of(f.keys.pk.get_vk().get_domain()), bases).unwrap();
    let data = ProvingData::new(&backend, &f.keys.pk).unwrap();
    let meter = backend.meter().clone();
    let resident = meter.live();
    assert!(resident > 0, "the key's fixed polynomials live on the device");
    meter.reset_peak();

    let cpu = cpu_proof(f, None).unwrap();
    let dev = proof_on(f, &backend, &data, None).unwrap();
    assert!(dev == cpu, "the {} backend's proof differs from the cpu backend's", backend.name());
    assert!(halo2_accepts(f, &dev), "halo2-axiom rejected the device backend's proof");
    assert_eq!(meter.live(), resident, "a proof left polynomials on the device");
    assert!(meter.peak() > resident, "the proof's working set was not metered");
    // The estimate workers admit proofs by bounds what was held, and is not
    // far above it: the polynomials it counts are the ones the prover makes.
    let estimate = WorkingSet::of(f.keys.pk.get_vk());
    // The coordinator's figure, from the circuit before any key exists, is the same.
    let mut cs = ConstraintSystem::default();
    ModelCircuit::configure_with_params(&mut cs, ModelCircuit::new(f.model.program.clone(), None).params());
    assert_eq!(WorkingSet::of_circuit(&cs, f.model.k), estimate);
    let held = meter.peak() - resident;
    eprintln!("key {resident} of {}, proof {held} of {} estimated", estimate.key, estimate.proof);
    assert!(resident <= estimate.key, "the key holds {resident} bytes, {} estimated", estimate.key);
    assert!(held <= estimate.proof, "a proof held {held} bytes, {} estimated", estimate.proof);
    assert!(resident * 2 > estimate.key, "the key holds {resident} bytes, far below the {} estimated", estimate.key);
    assert!(held * 2 > estimate.proof, "a proof held {held} bytes, far below the {} estimated", estimate.proof);

    // Dishonest witnesses: the same refusal or the same (rejected) proof as
    // on the CPU, and nothing left behind either way. The cells are spread
    // over the witness; the fixture's layout puts lookups among them.
    let cells = f.witness.values.len();
    let mut refused = 0;
    for tamper in [cells / 7, cells / 3, cells / 2, cells - 1] {
        let (c, d) = (cpu_proof(f, Some(tamper)), proof_on(f, &backend, &data, Some(tamper)));
        match (c, d) {
            (Ok(c), Ok(d)) => {
                assert!(c == d, "tamper {tamper}: the proofs differ");
                assert!(!halo2_accepts(f, &d), "tamper {tamper}: a dishonest proof verified");
            }
            (Err(c), Err(d)) => {
                assert_eq!(c.to_string(), d.to_string(), "tamper {tamper}");
                refused += 1;
            }
            (c, d) => panic!("tamper {tamper}: the cpu gave {:?}, the device {:?}", c.err(), d.err()),
        }
        assert_eq!(meter.live(), resident, "tamper {tamper}: a proof left polynomials on the device");
    }
    eprintln!("{refused} of 4 tampered witnesses refused; device peak {} bytes", meter.peak());
}

/// An honest proof with constraint programs compiled to kernels of their
/// own and MSMs through tables of the bases' multiples: the kernels' other
/// choices, which must not change a byte either.
fn variants_prove_like_the_cpu_on<D: Device>(device: Arc<D>) {
    let f = fixture();
    let bases = Arc::new(DeviceBases::upload_with(device, &f.params, true).unwrap());
    let backend = DeviceBackend::new(Domain::of(f.keys.pk.get_vk().get_domain()), bases)
        .unwrap()
        .with_programs(ProgramKernel::Generated);
    let data = ProvingData::new(&backend, &f.keys.pk).unwrap();
    let dev = proof_on(f, &backend, &data, None).unwrap();
    assert!(dev == cpu_proof(f, None).unwrap(), "generated programs and MSM tables changed the proof");
    assert!(halo2_accepts(f, &dev), "halo2-axiom rejected the proof");
}

#[test]
fn emulated_device_proofs_equal_cpu_proofs() {
    proves_like_the_cpu_on(Arc::new(Emu));
}

#[test]
fn emulated_proofs_with_generated_programs_and_msm_tables_equal_cpu_proofs() {
    variants_prove_like_the_cpu_on(Arc::new(Emu));
}

/// The fixture's constraint programs, as generated kernels, compile with
/// NVRTC for the GPUs zkfarm targets (NVRTC needs no GPU; `scripts/test.sh`
/// installs it and makes its absence a failure).
#[test]
fn generated_programs_compile_with_nvrtc() {
    use zkfarm_plonk::domain::Grid;
    use zkfarm_plonk_device::program::{compile_for, cuda_source, GENERATED_KERNEL};

    if !zkfarm_kernels::source::nvrtc_available() {
        assert!(std::env::var_os("ZKFARM_REQUIRE_NVRTC").is_none(), "NVRTC is required here but cannot be loaded");
        eprintln!("skipped: NVRTC is not installed (scripts/test.sh installs it)");
        return;
    }
    let f = fixture();
    let compiled = zkfarm_plonk::constraints::compile(&f.keys.pk).unwrap();
    let domain = Domain::of(f.keys.pk.get_vk().get_domain());
    let scalars = [Fr::from(0); 4];
    let programs = [(&compiled.quotient, Grid::Extended, 4)]
        .into_iter()
        .chain(compiled.lookup_inputs.iter().chain(&compiled.lookup_tables).map(|p| (p, Grid::Rows, 1)));
    for (program, grid, count) in programs {
        let (size, step, x0, dx) = grid.shape(&domain);
        let p = compile_for(program, &scalars[..count], size, step, x0, dx, u32::MAX).unwrap();
        let source = cuda_source(&p);
        // The large one for both targets, the small ones for one.
        let archs: &[&'static str] = if grid == Grid::Extended { &["sm_80", "sm_90"] } else { &["sm_90"] };
        for &arch in archs {
            let start = std::time::Instant::now();
            let ptx =
                zkfarm_kernels::source::compile(GENERATED_KERNEL, &source, arch).unwrap_or_else(|e| panic!("{e:#}"));
            let text = ptx.to_src();
            assert!(text.contains(&format!(".entry {GENERATED_KERNEL}(")), "{grid:?} program for {arch}: no kernel");
            eprintln!(
                "{grid:?} program, {} instructions, {} registers: PTX for {arch} in {:.2} s",
                p.instructions(),
                p.registers,
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs `check` on the GPU, or says why it is skipped (a failure with
/// `ZKFARM_REQUIRE_GPU` set).
fn on_the_gpu(check: impl FnOnce(Arc<Gpu>)) {
    match Gpu::open() {
        Ok(g) => check(Arc::new(g)),
        Err(e) => {
            assert!(std::env::var_os("ZKFARM_REQUIRE_GPU").is_none(), "no GPU: {e:#}");
            eprintln!("skipped: {e:#}");
        }
    }
}

#[test]
fn gpu_proofs_equal_cpu_proofs() {
    on_the_gpu(proves_like_the_cpu_on);
}

/// Apart from the test above, so that the sanitizers (`scripts/gpu.sh
/// sanitize`) can run that one alone, without NVRTC and table builds.
#[test]
fn gpu_proofs_with_generated_programs_and_msm_tables_equal_cpu_proofs() {
    on_the_gpu(variants_prove_like_the_cpu_on);
}
