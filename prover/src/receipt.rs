//! The receipt: one JSON document per proof, verifiable offline.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Verification tier; "zk" for a Halo2 proof.
    pub tier: String,
    /// BLAKE2b-256 of the ONNX file.
    pub model_hash: String,
    /// BLAKE2b-256 of the compiled circuit.
    pub circuit_hash: String,
    /// Hash of the verifying key and its metadata.
    pub vk_hash: String,
    /// The SRS the proof is made against; `insecure-dev:` ids are local
    /// development SRSs whose trapdoor is known.
    pub srs_id: String,
    pub k: u32,
    /// Dequantized outputs, one flat array per output tensor.
    pub outputs: Vec<Vec<f64>>,
    pub output_shapes: Vec<Vec<usize>>,
    /// Public instances as 0x-prefixed big-endian field elements.
    pub instances: Vec<String>,
    /// The proof bytes (SHPLONK over KZG, Blake2b transcript), hex.
    pub proof: String,
}

impl Receipt {
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a zkfarm receipt", path.display()))
    }
}
