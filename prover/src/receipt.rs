//! The receipt: one JSON document per inference, verifiable offline.
//!
//! Every tier shares the same fields (model, input hash, outputs, job and
//! task ids, timestamp). A `zk` receipt adds the Halo2 proof; `signed` and
//! `tee` receipts add an ed25519 signature over those fields, and `tee` an
//! attestation report that binds the signing key to an enclave.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use zkfarm_circuits::model::hash_hex;

/// Domain separator of the bytes that `signed` and `tee` receipts sign.
const SIGNING_DOMAIN: &[u8] = b"zkfarm-receipt-v1\n";

/// What a receipt's evidence is. Every match on it is exhaustive, so a new
/// tier is a compile error wherever it must be handled; it is spelled as a
/// string only at the edges (JSON, SQL, the gRPC enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A Halo2 proof.
    Zk,
    /// An ed25519 signature of the enclave key an attestation report binds.
    Tee,
    /// An ed25519 signature of the worker's registered key.
    Signed,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Zk, Tier::Tee, Tier::Signed];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Zk => "zk",
            Tier::Tee => "tee",
            Tier::Signed => "signed",
        }
    }

    /// Whether the evidence is a proof made by the prover. A proof hides the
    /// input, so the coordinator checks its outputs against its own
    /// inference; the other tiers are signatures over the worker's outputs.
    pub fn is_proof(self) -> bool {
        match self {
            Tier::Zk => true,
            Tier::Tee | Tier::Signed => false,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match Tier::ALL.into_iter().find(|t| t.as_str() == s) {
            Some(t) => Ok(t),
            None => bail!("unknown tier {s:?}: expected zk, tee or signed"),
        }
    }
}

/// Milliseconds since the Unix epoch, as receipts and the job store stamp
/// them.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub tier: Tier,
    /// BLAKE2b-256 of the ONNX file.
    pub model_hash: String,
    /// BLAKE2b-256 of the compiled circuit.
    pub circuit_hash: String,
    pub k: u32,
    /// Dequantized outputs, one flat array per output tensor.
    pub outputs: Vec<Vec<f64>>,
    pub output_shapes: Vec<Vec<usize>>,
    /// BLAKE2b-256 of the input values (see [`input_hash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hash: Option<String>,
    /// Set on receipts made by a farm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Milliseconds since the Unix epoch when the worker finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    /// Hash of the verifying key and its metadata (zk).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vk_hash: String,
    /// The SRS the proof is made against (zk); `insecure-dev:` ids are local
    /// development SRSs whose trapdoor is known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub srs_id: String,
    /// Public instances as 0x-prefixed big-endian field elements (zk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
    /// The proof bytes (SHPLONK over KZG, Blake2b transcript), hex (zk).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proof: String,
    /// The ed25519 signature of `signed` and `tee` receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// The attestation report of a `tee` receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signer {
    pub worker_id: String,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Signature over [`Receipt::signing_bytes`], hex.
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    /// "dev" or "configfs-tsm/<provider>" (e.g. `configfs-tsm/tdx_guest`).
    pub provider: String,
    /// The report or quote, hex.
    pub report: String,
    /// True for the dev provider, whose reports anyone can forge.
    pub insecure: bool,
    /// Extra evidence from the provider, hex: for SEV-SNP, the host's
    /// certificate table (configfs-tsm `auxblob`), which holds the VCEK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<String>,
}

/// The fields a signature covers, in a fixed order.
#[derive(Serialize)]
struct Signed<'a> {
    tier: Tier,
    model_hash: &'a str,
    circuit_hash: &'a str,
    k: u32,
    outputs: &'a [Vec<f64>],
    output_shapes: &'a [Vec<usize>],
    input_hash: &'a Option<String>,
    job_id: &'a Option<String>,
    task_id: &'a Option<String>,
    timestamp_ms: &'a Option<u64>,
    worker_id: &'a str,
    public_key: &'a str,
    attestation: &'a Option<Attestation>,
}

impl Receipt {
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("{} is not a zkfarm receipt", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).context("not a zkfarm receipt")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt serializes")
    }

    /// The bytes an ed25519 signer signs: every field except the signature
    /// and the zk proof, with the signer's id and key.
    pub fn signing_bytes(&self, worker_id: &str, public_key: &str) -> Vec<u8> {
        let fields = Signed {
            tier: self.tier,
            model_hash: &self.model_hash,
            circuit_hash: &self.circuit_hash,
            k: self.k,
            outputs: &self.outputs,
            output_shapes: &self.output_shapes,
            input_hash: &self.input_hash,
            job_id: &self.job_id,
            task_id: &self.task_id,
            timestamp_ms: &self.timestamp_ms,
            worker_id,
            public_key,
            attestation: &self.attestation,
        };
        let mut bytes = SIGNING_DOMAIN.to_vec();
        bytes.extend(serde_json::to_vec(&fields).expect("receipt fields serialize"));
        bytes
    }
}

/// BLAKE2b-256 of the input values as JSON (`[[x, ...], ...]`): what a
/// client computes from its own input to find its receipt's `input_hash`.
pub fn input_hash(inputs: &[Vec<f64>]) -> String {
    hash_hex(&serde_json::to_vec(inputs).expect("floats serialize"))
}
