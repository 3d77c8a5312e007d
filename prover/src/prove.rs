//! Proving and verifying a compiled model (tier `zk`).

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_proofs::halo2curves::ff::PrimeField;
use halo2_proofs::plonk::{create_proof, verify_proof, ProvingKey};
use halo2_proofs::poly::kzg::commitment::KZGCommitmentScheme;
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer};
use rand::rngs::OsRng;
use rand::{RngCore, SeedableRng};
use zkfarm_circuits::circuit::{fe, instances};
use zkfarm_circuits::program::Witness;
use zkfarm_circuits::{CompiledModel, ModelCircuit};
#[cfg(feature = "cuda")]
use zkfarm_kernels::gpu::Gpu;
#[cfg(feature = "cuda")]
use zkfarm_plonk::WorkingSet;
use zkfarm_plonk::{CpuBackend, Domain, ProvingData, Timings};
#[cfg(feature = "cuda")]
use zkfarm_plonk_device::{DeviceBackend, ProgramKernel};

use crate::commit::{EngineParams, EngineScheme, EngineShplonk};
use crate::engine::Engine;
use crate::keys::{KeyCache, KeySource, Keys, VerifierKey};
#[cfg(feature = "cuda")]
use crate::ledger::{Ledger, Reservation};
use crate::receipt::{input_hash, Receipt, Tier};
use crate::srs::Srs;

/// Which implementation of the Halo2 prover makes a proof. Both write
/// proofs halo2-axiom's verifier accepts under the same keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProverImpl {
    /// zkfarm's own prover (`zkfarm-plonk`): every step on the engine's
    /// backend, and reproducible under a seed.
    #[default]
    Zkfarm,
    /// halo2-axiom's `create_proof`: the reference, for tests and the
    /// benchmarks. Its proofs differ run to run even under one seed.
    Halo2Axiom,
}

impl ProverImpl {
    pub fn name(self) -> &'static str {
        match self {
            ProverImpl::Zkfarm => "zkfarm",
            ProverImpl::Halo2Axiom => "halo2-axiom",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ProveOptions {
    /// Seed for every random value of the proof (blinding rows, the
    /// vanishing argument's random polynomial). Only for tests: a known seed
    /// gives up zero knowledge. With our prover one seed gives one proof,
    /// byte for byte.
    pub seed: Option<u64>,
    pub prover: ProverImpl,
}

/// One inference run exactly on integers: the witness a proof is made from
/// and the receipt fields every tier shares, with no evidence attached yet.
pub struct Inference {
    pub witness: Arc<Witness>,
    pub receipt: Receipt,
}

/// Runs exact integer inference for a receipt of `tier`.
pub fn infer(model: &CompiledModel, inputs: &[Vec<f64>], tier: Tier) -> Result<Inference> {
    let witness = Arc::new(model.run(inputs)?);
    let p = &model.program;
    let receipt = Receipt {
        tier,
        model_hash: model.model_hash.clone(),
        circuit_hash: model.circuit_hash.clone(),
        k: model.k,
        outputs: p.dequantize(&p.output_values(&witness)),
        output_shapes: p.output_shapes.clone(),
        input_hash: Some(input_hash(inputs)),
        job_id: None,
        task_id: None,
        timestamp_ms: None,
        vk_hash: String::new(),
        srs_id: String::new(),
        instances: Vec::new(),
        proof: String::new(),
        signer: None,
        attestation: None,
    };
    Ok(Inference { witness, receipt })
}

/// Runs integer inference on `inputs` and proves it.
pub fn prove(
    model: &CompiledModel,
    keys: &Keys,
    params: &EngineParams,
    srs_id: &str,
    inputs: &[Vec<f64>],
    opts: &ProveOptions,
) -> Result<Receipt> {
    prove_inference(model, keys, params, srs_id, infer(model, inputs, Tier::Zk)?, opts)
}

/// Proves an inference already run, so that its witness is computed once.
pub fn prove_inference(
    model: &CompiledModel,
    keys: &Keys,
    params: &EngineParams,
    srs_id: &str,
    inference: Inference,
    opts: &ProveOptions,
) -> Result<Receipt> {
    prove_timed(model, keys, params, None, srs_id, inference, opts).map(|(r, _)| r)
}

/// A proving key compiled for our prover on the backend its parameters
/// prove with: the host's cores, or the GPU where the parameters' bases
/// are resident there.
pub enum PreparedKey {
    Cpu(Box<ProvingData<CpuBackend>>),
    #[cfg(feature = "cuda")]
    Cuda(Box<DeviceKey>),
}

/// A key's constraint programs and fixed polynomials on the GPU, with the
/// backend that holds them, the memory they and each proof take, and the
/// ledger that admits proofs.
#[cfg(feature = "cuda")]
pub struct DeviceKey {
    pub backend: DeviceBackend<Gpu>,
    pub data: ProvingData<DeviceBackend<Gpu>>,
    pub working_set: WorkingSet,
    ledger: Arc<Ledger>,
    _reserved: Reservation,
}

impl PreparedKey {
    /// Compiles `pk` and uploads its polynomials to the backend `params`
    /// prove with.
    pub fn new(pk: &ProvingKey<G1Affine>, params: &EngineParams) -> Result<Self> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = params.gpu() {
            let mut backend = DeviceBackend::new(Domain::of(pk.get_vk().get_domain()), gpu.bases.clone())?;
            let compiled = zkfarm_plonk::constraints::compile(pk)?;
            // Generated program kernels are compiled now; if that fails, the
            // interpreter (which the program may still fit) takes over.
            if let Err(e) = backend.prepare(&compiled) {
                tracing::warn!("cuda engine: {e:#}; this key's constraint programs run on the interpreter");
                backend = backend.with_programs(ProgramKernel::Interpreted);
            }
            match backend.supports(&compiled) {
                Ok(()) => {
                    let working_set = WorkingSet::of(pk.get_vk());
                    let k = pk.get_vk().get_domain().k();
                    let reserved = gpu.ledger.hold(working_set.key, &format!("a proving key of k = {k}"))?;
                    let data = ProvingData::from_compiled(&backend, pk, compiled)?;
                    let ledger = gpu.ledger.clone();
                    let key = DeviceKey { backend, data, working_set, ledger, _reserved: reserved };
                    return Ok(PreparedKey::Cuda(Box::new(key)));
                }
                Err(e) => tracing::warn!("cuda engine: {e:#}; this key proves on the cpu"),
            }
        }
        Ok(PreparedKey::Cpu(Box::new(ProvingData::new(&cpu_backend(pk, params), pk)?)))
    }
}

/// Proves an inference and reports the time of each step of our prover
/// (all zero for halo2-axiom's). `key` is the key compiled for our prover
/// when the caller keeps it across proofs.
pub fn prove_timed(
    model: &CompiledModel,
    keys: &Keys,
    params: &EngineParams,
    key: Option<&PreparedKey>,
    srs_id: &str,
    inference: Inference,
    opts: &ProveOptions,
) -> Result<(Receipt, Timings)> {
    let Inference { witness, mut receipt } = inference;
    let inst = instances(&model.program, &witness);
    let circuit = ModelCircuit::new(model.program.clone(), Some(witness));
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    let rng: Box<dyn RngCore> = match opts.seed {
        Some(s) => Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(s)),
        None => Box::new(OsRng),
    };
    let timings = match opts.prover {
        ProverImpl::Zkfarm => {
            let made;
            let key = match key {
                Some(k) => k,
                None => {
                    made = PreparedKey::new(&keys.pk, params)?;
                    &made
                }
            };
            let pk = &keys.pk;
            match key {
                PreparedKey::Cpu(data) => {
                    let backend = cpu_backend(pk, params);
                    zkfarm_plonk::create_proof(&backend, pk, data, &circuit, &[&inst], rng, &mut transcript)?
                }
                #[cfg(feature = "cuda")]
                PreparedKey::Cuda(k) => {
                    let what = format!("a proof of k = {}", model.k);
                    let _admitted = k.ledger.admit(k.working_set.proof, &what)?;
                    zkfarm_plonk::create_proof(&k.backend, pk, &k.data, &circuit, &[&inst], rng, &mut transcript)?
                }
            }
        }
        ProverImpl::Halo2Axiom => {
            create_proof::<EngineScheme, EngineShplonk<'_>, Challenge255<G1Affine>, _, _, _>(
                params,
                &keys.pk,
                &[circuit],
                &[&[&inst]],
                rng,
                &mut transcript,
            )
            .map_err(|e| anyhow!("proving failed: {e:?}"))?;
            Timings::default()
        }
    };
    receipt.tier = Tier::Zk;
    receipt.vk_hash = keys.vk.hash.clone();
    receipt.srs_id = srs_id.to_string();
    receipt.instances = inst.iter().map(field_hex).collect();
    receipt.proof = hex::encode(transcript.finalize());
    Ok((receipt, timings))
}

/// Our prover's CPU backend for a key, committing through `params` (so on
/// the engine's resident bases when it has them).
pub fn cpu_backend(pk: &ProvingKey<G1Affine>, params: &EngineParams) -> CpuBackend {
    CpuBackend::new(Domain::of(pk.get_vk().get_domain()), Arc::new(params.clone()))
}

/// The proving facade: an SRS, a key cache and an engine. The CLI, the
/// worker and the benchmarks prove through it.
pub struct Prover {
    pub srs: Arc<Srs>,
    pub keys: Arc<KeyCache>,
    pub engine: Engine,
}

impl Prover {
    pub fn new(srs: Arc<Srs>, keys: Arc<KeyCache>, engine: Engine) -> Self {
        Prover { srs, keys, engine }
    }

    /// The model's keys from the cache (disk, then the shared layer), else
    /// generated. With `expect_vk`, a key whose hash differs is refused.
    pub fn keys_for(&self, model: &CompiledModel, expect_vk: Option<&str>) -> Result<(Keys, KeySource)> {
        self.keys.get_checked(model, &self.srs, expect_vk)
    }

    /// Infers and proves one request.
    pub fn prove(
        &self,
        model: &CompiledModel,
        keys: &Keys,
        inputs: &[Vec<f64>],
        opts: &ProveOptions,
    ) -> Result<Receipt> {
        self.prove_inference(model, keys, infer(model, inputs, Tier::Zk)?, opts)
    }

    /// Proves an inference whose witness the caller already computed.
    pub fn prove_inference(
        &self,
        model: &CompiledModel,
        keys: &Keys,
        inference: Inference,
        opts: &ProveOptions,
    ) -> Result<Receipt> {
        self.prove_timed(model, keys, inference, opts).map(|(r, _)| r)
    }

    /// Proves an inference and reports the time of each step of our prover.
    /// The key's compiled constraints and resident polynomials are kept by
    /// the engine across proofs.
    pub fn prove_timed(
        &self,
        model: &CompiledModel,
        keys: &Keys,
        inference: Inference,
        opts: &ProveOptions,
    ) -> Result<(Receipt, Timings)> {
        let params = self.engine.params(&self.srs, model.k)?;
        let data = match opts.prover {
            ProverImpl::Zkfarm => Some(self.engine.prepared(keys, || PreparedKey::new(&keys.pk, &params))?),
            ProverImpl::Halo2Axiom => None,
        };
        prove_timed(model, keys, &params, data.as_deref(), &self.srs.id, inference, opts)
    }

    /// The key compiled for our prover on this engine, as proofs use it
    /// (made and kept on first use): where it proves, and on the GPU what
    /// its polynomials occupy.
    pub fn prepared(&self, keys: &Keys) -> Result<Arc<PreparedKey>> {
        let params = self.engine.params(&self.srs, keys.vk.meta.k)?;
        self.engine.prepared(keys, || PreparedKey::new(&keys.pk, &params))
    }

    /// Verifies a zk receipt against a verifying key and this SRS.
    pub fn verify(&self, receipt: &Receipt, vk: &VerifierKey) -> Result<()> {
        verify(receipt, vk, &self.srs)
    }
}

fn field_hex(f: &Fr) -> String {
    let mut bytes = f.to_repr().as_ref().to_vec();
    bytes.reverse();
    format!("0x{}", hex::encode(bytes))
}

fn parse_field(s: &str) -> Result<Fr> {
    let h = s.strip_prefix("0x").ok_or_else(|| anyhow!("instance {s:?} lacks the 0x prefix"))?;
    let mut bytes = hex::decode(h).with_context(|| format!("instance {s:?} is not hex"))?;
    if bytes.len() != 32 {
        bail!("instance {s:?} is not 32 bytes");
    }
    bytes.reverse();
    let mut repr = <Fr as PrimeField>::Repr::default();
    repr.as_mut().copy_from_slice(&bytes);
    Option::from(Fr::from_repr(repr)).ok_or_else(|| anyhow!("instance {s:?} is not a canonical field element"))
}

/// The signed integer a field element encodes, if it is small.
fn small_int(f: &Fr) -> Option<i64> {
    for v in [f, &-*f] {
        let repr = v.to_repr();
        let b = repr.as_ref();
        if b[8..].iter().all(|&x| x == 0) {
            let n = u64::from_le_bytes(b[..8].try_into().unwrap());
            if n < 1 << 62 {
                return Some(if v == f { n as i64 } else { -(n as i64) });
            }
        }
    }
    None
}

/// Verifies a zk receipt: the outputs must be exactly what the public
/// instances encode, and the proof must verify against the key and SRS.
pub fn verify(receipt: &Receipt, vk: &VerifierKey, srs: &Srs) -> Result<()> {
    if receipt.tier != Tier::Zk {
        bail!("receipt tier {:?} is not zk", receipt.tier);
    }
    if receipt.vk_hash != vk.hash {
        bail!("the receipt was made for verifying key {} but the key given is {}", receipt.vk_hash, vk.hash);
    }
    let m = &vk.meta;
    if receipt.srs_id != srs.id || m.srs_id != srs.id {
        bail!("the receipt names SRS {} but the SRS given is {}", receipt.srs_id, srs.id);
    }
    if receipt.model_hash != m.model_hash || receipt.circuit_hash != m.circuit_hash || receipt.k != m.k {
        bail!("the receipt's model, circuit or k differ from the verifying key's");
    }
    if receipt.output_shapes != m.output_shapes {
        bail!("the receipt's output shapes differ from the verifying key's");
    }
    let inst: Vec<Fr> = receipt.instances.iter().map(|s| parse_field(s)).collect::<Result<_>>()?;
    if inst.len() != m.num_instances {
        bail!("the receipt has {} public instances, the circuit has {}", inst.len(), m.num_instances);
    }
    let scale = (1u64 << m.scale) as f64;
    let outputs: Vec<f64> = receipt.outputs.iter().flatten().copied().collect();
    let expected: usize = m.output_shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    if outputs.len() != expected {
        bail!("the receipt has {} output values, the model has {expected}", outputs.len());
    }
    for (i, (o, f)) in outputs.iter().zip(&inst).enumerate() {
        let q = small_int(f).ok_or_else(|| anyhow!("public output {i} is not a small integer"))?;
        if fe(q as i128) != *f || (o * scale - q as f64).abs() > 1e-6 {
            bail!("output {i} is {o} but the proof's public instance says {}", q as f64 / scale);
        }
    }
    let params = srs.verifier_params(m.k)?;
    let proof = hex::decode(&receipt.proof).context("the proof is not hex")?;
    let mut rest = &proof[..];
    let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(&mut rest);
    verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, Challenge255<G1Affine>, _, _>(
        &params,
        &vk.vk,
        SingleStrategy::new(&params),
        &[&[&inst]],
        &mut transcript,
    )
    .map_err(|e| anyhow!("the proof does not verify: {e:?}"))?;
    if !rest.is_empty() {
        bail!("the proof has {} trailing bytes", rest.len());
    }
    Ok(())
}
