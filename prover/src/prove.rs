//! Proving and verifying a compiled model (tier `zk`).

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_proofs::halo2curves::ff::PrimeField;
use halo2_proofs::plonk::{create_proof, verify_proof};
use halo2_proofs::poly::kzg::commitment::KZGCommitmentScheme;
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer};
use rand::rngs::OsRng;
use rand::{RngCore, SeedableRng};
use zkfarm_circuits::circuit::{fe, instances};
use zkfarm_circuits::program::Witness;
use zkfarm_circuits::{CompiledModel, ModelCircuit};

use crate::commit::{EngineParams, EngineScheme, EngineShplonk};
use crate::keys::{Keys, VerifierKey};
use crate::receipt::{input_hash, Receipt};
use crate::srs::Srs;

#[derive(Clone, Debug, Default)]
pub struct ProveOptions {
    /// Seed for the blinding factors drawn from the RNG handed to
    /// halo2-axiom. Only for tests: a known seed weakens zero knowledge.
    /// It fixes the advice commitments but does not make proofs
    /// reproducible: halo2-axiom 0.5 orders its lookup columns by iterating
    /// a `HashMap` and draws the vanishing argument's random polynomial from
    /// the thread RNG.
    pub seed: Option<u64>,
}

/// Runs exact integer inference: the receipt fields every tier shares, with
/// no evidence attached yet.
pub fn infer(model: &CompiledModel, inputs: &[Vec<f64>]) -> Result<(Arc<Witness>, Receipt)> {
    let witness = Arc::new(model.run(inputs)?);
    let p = &model.program;
    let receipt = Receipt {
        tier: String::new(),
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
    Ok((witness, receipt))
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
    let (witness, mut receipt) = infer(model, inputs)?;
    let inst = instances(&model.program, &witness);
    let circuit = ModelCircuit::new(model.program.clone(), Some(witness.clone()));
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    let rng: Box<dyn RngCore> = match opts.seed {
        Some(s) => Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(s)),
        None => Box::new(OsRng),
    };
    create_proof::<EngineScheme, EngineShplonk<'_>, Challenge255<G1Affine>, _, _, _>(
        params,
        &keys.pk,
        &[circuit],
        &[&[&inst]],
        rng,
        &mut transcript,
    )
    .map_err(|e| anyhow!("proving failed: {e:?}"))?;
    receipt.tier = "zk".into();
    receipt.vk_hash = keys.vk.hash.clone();
    receipt.srs_id = srs_id.to_string();
    receipt.instances = inst.iter().map(field_hex).collect();
    receipt.proof = hex::encode(transcript.finalize());
    Ok(receipt)
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
    if receipt.tier != "zk" {
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
    let params = srs.for_k(m.k)?;
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
