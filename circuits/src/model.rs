//! A compiled model: the program, its content hashes and its circuit size.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use blake2::{Blake2b, Digest};
use serde::{Deserialize, Serialize};

use crate::circuit::min_k;
use crate::program::{Program, Settings, Step, Witness};

type Blake2b256 = Blake2b<blake2::digest::consts::U32>;

/// Hex BLAKE2b-256 of some bytes.
pub fn hash_hex(bytes: &[u8]) -> String {
    hex::encode(Blake2b256::digest(bytes))
}

#[derive(Clone, Debug)]
pub struct CompiledModel {
    pub program: Arc<Program>,
    /// Hash of the ONNX bytes.
    pub model_hash: String,
    /// Hash of the compiled program: two models with the same hash have the
    /// same circuit and share keys.
    pub circuit_hash: String,
    pub k: u32,
}

impl CompiledModel {
    pub fn compile(onnx: &[u8], settings: &Settings) -> Result<Self> {
        let graph = crate::onnx::import_bytes(onnx)?;
        let program = crate::quantize::compile(&graph, settings)?;
        Ok(Self::from_program(program, crate::model::hash_hex(onnx)))
    }

    pub fn from_program(program: Program, model_hash: String) -> Self {
        let json = serde_json::to_vec(&program).expect("a program serializes");
        let k = min_k(&program);
        CompiledModel { program: Arc::new(program), model_hash, circuit_hash: hash_hex(&json), k }
    }

    /// Exact integer inference on float inputs.
    pub fn run(&self, inputs: &[Vec<f64>]) -> Result<Witness> {
        self.program.run(inputs)
    }

    pub fn stats(&self) -> CircuitStats {
        let p = &self.program;
        let lanes = p.settings.lanes;
        let mut rows_by_op: BTreeMap<String, usize> = BTreeMap::new();
        let mut lookups = 0usize;
        for (step, node) in &p.steps {
            let kind = if matches!(step, Step::Input { .. }) { "Input" } else { p.node_kinds[*node as usize].as_str() };
            *rows_by_op.entry(kind.to_string()).or_default() += step.rows(lanes);
            lookups += match step {
                Step::Input { .. } => 2,
                Step::Div { act, .. } => 4 + act.is_some() as usize,
                Step::DivBy { .. } => 4,
                Step::Act { .. } => 1,
                Step::Max { inputs, exp, .. } => inputs.len() * (1 + exp.is_some() as usize),
                Step::Dot { .. } | Step::Mul { .. } => 0,
            };
        }
        let tables = p.tables.len() + p.exp_scale.is_some() as usize;
        CircuitStats {
            k: self.k,
            rows: p.step_rows(),
            table_rows: 1 << p.settings.lookup_bits,
            advice_columns: lanes + 1,
            fixed_columns: lanes + 2 + 8 + 2 * p.tables.len() + 3,
            instance_values: p.num_instances(),
            lookup_arguments: 5 + tables,
            lookups,
            lookup_tables: tables,
            rows_by_op,
            settings: p.settings.clone(),
            precision_notes: p.precision_notes.clone(),
        }
    }
}

/// What `zkfarm inspect` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CircuitStats {
    pub k: u32,
    pub rows: usize,
    pub table_rows: usize,
    pub advice_columns: usize,
    pub fixed_columns: usize,
    pub instance_values: usize,
    pub lookup_arguments: usize,
    pub lookups: usize,
    pub lookup_tables: usize,
    pub rows_by_op: BTreeMap<String, usize>,
    pub settings: Settings,
    /// Where the circuit loses precision (widened tables held at an edge).
    pub precision_notes: Vec<String>,
}
