//! KZG commitments whose multi-scalar multiplications run on a proving
//! engine.
//!
//! [`EngineParams`] holds an SRS's parameters for one k and, when an engine
//! is attached, the engine's resident copy of their bases. Our prover
//! (`zkfarm-plonk`) commits through it as a [`CommitKey`], every MSM of a
//! proof included. halo2-axiom's `create_proof`, kept as the reference
//! prover, commits through it as [`EngineScheme`]: KZG over BN254 with the
//! same SRS and transcript as `KZGCommitmentScheme<Bn256>`, whose SHPLONK
//! opening stays halo2-axiom's (its queries' fields are private), so those
//! two commitments stay on the CPU there. An MSM is exact, so a proof made
//! on an engine is byte for byte the proof the CPU makes from the same
//! witness and randomness, and halo2-axiom's own verifier accepts it with
//! plain `ParamsKZG`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G1};
use halo2_proofs::poly::commitment::{Blind, CommitmentScheme, Params, ParamsProver, Prover};
use halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_proofs::poly::kzg::msm::MSMKZG;
use halo2_proofs::poly::kzg::multiopen::ProverSHPLONK;
use halo2_proofs::poly::{Coeff, LagrangeCoeff, Polynomial, ProverQuery};
use halo2_proofs::transcript::{EncodedChallenge, TranscriptWrite};
use rand::RngCore;
#[cfg(feature = "cuda")]
use zkfarm_kernels::gpu::Gpu;
use zkfarm_plonk::{CommitKey, HostBases};
#[cfg(feature = "cuda")]
use zkfarm_plonk_device::DeviceBases;

#[cfg(feature = "cuda")]
use crate::ledger::{Ledger, Reservation};

pub use zkfarm_plonk::Basis;

/// The SRS bases of one (SRS, k) loaded on an engine, computing
/// `sum scalars[i] * bases[i]` over the first `scalars.len()` bases.
pub trait ResidentBases: Send + Sync {
    /// The engine's name, for logs and metrics.
    fn engine(&self) -> &'static str;
    /// The MSM; an error makes the caller compute it on the CPU instead.
    fn msm(&self, set: Basis, scalars: &[Fr]) -> Result<G1>;
}

/// Bases resident on a kernel device (the GPU, or its emulation in tests).
#[cfg(feature = "cuda")]
impl<B: zkfarm_kernels::backend::Backend> ResidentBases for DeviceBases<B> {
    fn engine(&self) -> &'static str {
        self.backend().name()
    }

    fn msm(&self, set: Basis, scalars: &[Fr]) -> Result<G1> {
        DeviceBases::msm(self, set, scalars)
    }
}

/// Prover parameters of [`EngineScheme`]: the KZG parameters, and the
/// engine's resident copy of their bases when an engine is attached.
#[derive(Clone)]
pub struct EngineParams {
    /// Shared with the SRS's cache; copied only if downsized.
    kzg: Arc<ParamsKZG<Bn256>>,
    device: Option<Arc<dyn ResidentBases>>,
    fallbacks: Arc<AtomicU64>,
    /// The bases copied out for our prover's CPU MSMs, on first use.
    host: Arc<OnceLock<Option<HostBases>>>,
    /// The GPU's resident bases, for our prover's device backend, and the
    /// ledger of the GPU's memory.
    #[cfg(feature = "cuda")]
    gpu: Option<GpuParams>,
}

/// What our prover's device backend needs of the parameters.
#[cfg(feature = "cuda")]
#[derive(Clone)]
pub struct GpuParams {
    pub bases: Arc<DeviceBases<Gpu>>,
    pub ledger: Arc<Ledger>,
    /// The bases' memory, reserved in the ledger while they stay.
    _reserved: Arc<Reservation>,
}

impl fmt::Debug for EngineParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineParams").field("k", &self.kzg.k()).field("engine", &self.engine()).finish()
    }
}

impl EngineParams {
    /// Parameters whose commitments run on the CPU (halo2-axiom's own MSM).
    pub fn cpu(kzg: impl Into<Arc<ParamsKZG<Bn256>>>) -> Self {
        EngineParams {
            kzg: kzg.into(),
            device: None,
            fallbacks: Arc::default(),
            host: Arc::default(),
            #[cfg(feature = "cuda")]
            gpu: None,
        }
    }

    /// Parameters whose commitments run on `device`, which must hold the
    /// bases of `kzg` (same SRS, same k).
    pub fn with_device(kzg: impl Into<Arc<ParamsKZG<Bn256>>>, device: Arc<dyn ResidentBases>) -> Self {
        EngineParams { device: Some(device), ..EngineParams::cpu(kzg) }
    }

    /// Parameters whose bases are resident on the GPU: our prover runs
    /// every step of a proof there, and halo2-axiom's commits there.
    /// `reserved` is the bases' reservation in `ledger`, released when the
    /// last copy of these parameters goes.
    #[cfg(feature = "cuda")]
    pub fn with_gpu(
        kzg: impl Into<Arc<ParamsKZG<Bn256>>>,
        bases: Arc<DeviceBases<Gpu>>,
        ledger: Arc<Ledger>,
        reserved: Reservation,
    ) -> Self {
        let gpu = GpuParams { bases: bases.clone(), ledger, _reserved: Arc::new(reserved) };
        EngineParams { device: Some(bases), gpu: Some(gpu), ..EngineParams::cpu(kzg) }
    }

    /// The GPU's resident bases and memory ledger, when the parameters
    /// have them.
    #[cfg(feature = "cuda")]
    pub fn gpu(&self) -> Option<&GpuParams> {
        self.gpu.as_ref()
    }

    pub fn engine(&self) -> &'static str {
        self.device.as_ref().map_or("cpu", |d| d.engine())
    }

    /// How many commitments the engine failed and the CPU computed instead.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// One commitment: on the engine when attached, else (or when the
    /// engine fails) with halo2-axiom's CPU MSM.
    fn commit_on_engine(&self, set: Basis, scalars: &[Fr], cpu: impl FnOnce() -> G1) -> G1 {
        let Some(device) = &self.device else { return cpu() };
        match device.msm(set, scalars) {
            Ok(point) => point,
            Err(e) => {
                // A proof must not die of a device fault: the CPU result is
                // the same point, only slower. The count makes it visible.
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("zkfarm_engine_fallbacks_total", "engine" => device.engine()).increment(1);
                tracing::error!(
                    engine = device.engine(),
                    bases = set.name(),
                    size = scalars.len(),
                    "engine MSM failed, computing it on the CPU: {e:#}"
                );
                cpu()
            }
        }
    }
}

/// Our prover's commitments: on the engine when attached, else (or when the
/// engine fails) with halo2-axiom's CPU MSM.
impl CommitKey for EngineParams {
    fn commit(&self, values: &[Fr], basis: Basis) -> G1 {
        self.commit_on_engine(basis, values, || match self.host_bases() {
            Some(host) => host.commit(values, basis),
            None => CommitKey::commit(&*self.kzg, values, basis),
        })
    }
}

impl EngineParams {
    fn host_bases(&self) -> Option<&HostBases> {
        self.host
            .get_or_init(|| {
                HostBases::of(&self.kzg)
                    .map_err(|e| tracing::warn!("copying the SRS bases for host MSMs: {e}; using halo2-axiom's"))
                    .ok()
            })
            .as_ref()
    }
}

impl<'params> Params<'params, G1Affine> for EngineParams {
    type MSM = MSMKZG<Bn256>;

    fn k(&self) -> u32 {
        self.kzg.k()
    }

    fn n(&self) -> u64 {
        self.kzg.n()
    }

    fn downsize(&mut self, k: u32) {
        // Resident Lagrange bases belong to one k; a downsized copy commits
        // on the CPU rather than with bases of the wrong domain.
        Arc::make_mut(&mut self.kzg).downsize(k);
        self.device = None;
        self.host = Arc::default();
        #[cfg(feature = "cuda")]
        {
            self.gpu = None;
        }
    }

    fn empty_msm(&'params self) -> MSMKZG<Bn256> {
        MSMKZG::new()
    }

    fn commit_lagrange(&self, poly: &Polynomial<Fr, LagrangeCoeff>, r: Blind<Fr>) -> G1 {
        self.commit_on_engine(Basis::Lagrange, poly, || self.kzg.commit_lagrange(poly, r))
    }

    fn write<W: io::Write>(&self, writer: &mut W) -> io::Result<()> {
        Params::write(&*self.kzg, writer)
    }

    fn read<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        Ok(EngineParams::cpu(<ParamsKZG<Bn256> as Params<G1Affine>>::read(reader)?))
    }
}

impl<'params> ParamsProver<'params, G1Affine> for EngineParams {
    type ParamsVerifier = ParamsKZG<Bn256>;

    fn new(k: u32) -> Self {
        EngineParams::cpu(ParamsKZG::new(k))
    }

    fn commit(&self, poly: &Polynomial<Fr, Coeff>, r: Blind<Fr>) -> G1 {
        self.commit_on_engine(Basis::Monomial, poly, || ParamsProver::commit(&*self.kzg, poly, r))
    }

    fn get_g(&self) -> &[G1Affine] {
        self.kzg.get_g()
    }

    fn verifier_params(&'params self) -> &'params ParamsKZG<Bn256> {
        &self.kzg
    }
}

/// KZG over BN254 with commitments on the engine; verified as
/// `KZGCommitmentScheme<Bn256>`.
#[derive(Debug)]
pub struct EngineScheme;

impl CommitmentScheme for EngineScheme {
    type Scalar = Fr;
    type Curve = G1Affine;
    type ParamsProver = EngineParams;
    type ParamsVerifier = ParamsKZG<Bn256>;

    fn new_params(k: u32) -> EngineParams {
        EngineParams::cpu(ParamsKZG::new(k))
    }

    fn read_params<R: io::Read>(reader: &mut R) -> io::Result<EngineParams> {
        <EngineParams as Params<G1Affine>>::read(reader)
    }
}

/// The SHPLONK multi-open prover for [`EngineScheme`].
#[derive(Debug)]
pub struct EngineShplonk<'params> {
    inner: ProverSHPLONK<'params, Bn256>,
}

impl<'params> Prover<'params, EngineScheme> for EngineShplonk<'params> {
    const QUERY_INSTANCE: bool =
        <ProverSHPLONK<'params, Bn256> as Prover<'params, KZGCommitmentScheme<Bn256>>>::QUERY_INSTANCE;

    fn new(params: &'params EngineParams) -> Self {
        EngineShplonk { inner: ProverSHPLONK::new(&params.kzg) }
    }

    fn create_proof<'com, E, T, R, I>(&self, rng: R, transcript: &mut T, queries: I) -> io::Result<()>
    where
        E: EncodedChallenge<G1Affine>,
        T: TranscriptWrite<G1Affine, E>,
        I: IntoIterator<Item = ProverQuery<'com, G1Affine>> + Clone,
        R: RngCore,
    {
        Prover::<'params, KZGCommitmentScheme<Bn256>>::create_proof(&self.inner, rng, transcript, queries)
    }
}
