//! Calibration: picks the scales and lookup range that give the best accuracy
//! on sample inputs while the circuit still fits the largest allowed k, or,
//! given a tolerance, the smallest circuit whose outputs stay within it.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::circuit::min_k;
use crate::float::FloatModel;
use crate::graph::Graph;
use crate::program::{OutsideTable, Program, Settings};
use crate::quantize::compile;

/// One setting tried during calibration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub input_scale: u32,
    pub param_scale: u32,
    pub lookup_bits: u32,
    pub k: u32,
    /// Largest absolute difference from the float outputs over all samples.
    pub max_abs_error: f64,
    /// Nodes whose table functions had to be widened for the samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wide_nodes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    pub settings: Settings,
    pub chosen: Candidate,
    pub tried: Vec<Candidate>,
}

/// Largest scale tried; more bits rarely help and cost lookup range.
const MAX_SCALE: u32 = 12;
const MAX_LOOKUP_BITS: u32 = 18;

pub fn calibrate(
    graph: &Graph,
    onnx: &[u8],
    samples: &[Vec<Vec<f64>>],
    base: &Settings,
    max_k: u32,
    tolerance: Option<f64>,
) -> Result<Calibration> {
    if samples.is_empty() {
        bail!("calibration needs at least one sample input");
    }
    let float = FloatModel::load(onnx, &graph.input_shapes())?;
    let reference: Vec<Vec<Vec<f64>>> = samples.iter().map(|s| float.run(s)).collect::<Result<_>>()?;
    let mut tried = Vec::new();
    for scale in 4..=MAX_SCALE {
        // The smallest lookup range that holds every sample, plus one bit of headroom.
        let mut found = None;
        for bits in (scale + 1).max(8)..=MAX_LOOKUP_BITS {
            let settings = Settings { input_scale: scale, param_scale: scale, lookup_bits: bits, ..base.clone() };
            if let Some(fit) = fit(graph, settings, samples, &reference)? {
                found = Some(fit);
                break;
            }
        }
        let Some((mut settings, mut err)) = found else { continue };
        if settings.lookup_bits < MAX_LOOKUP_BITS {
            // One bit more, from the caller's wide nodes: it may need fewer.
            let wider = Settings {
                lookup_bits: settings.lookup_bits + 1,
                wide_nodes: base.wide_nodes.clone(),
                ..settings.clone()
            };
            if let Some((wider, e)) = fit(graph, wider, samples, &reference)? {
                if min_k(&compile(graph, &wider)?) <= max_k {
                    settings = wider;
                    err = e;
                }
            }
        }
        let k = min_k(&compile(graph, &settings)?);
        tried.push(Candidate {
            input_scale: settings.input_scale,
            param_scale: settings.param_scale,
            lookup_bits: settings.lookup_bits,
            k,
            max_abs_error: err,
            wide_nodes: settings.wide_nodes,
        });
    }
    let fits = || tried.iter().filter(|c| c.k <= max_k);
    // Within the tolerance: the smallest circuit (its lookup table sets k
    // for small models), then the smaller error. Otherwise the best error.
    let cheapest = tolerance.and_then(|t| {
        fits().filter(|c| c.max_abs_error <= t).min_by(|a, b| {
            (a.k, a.lookup_bits).cmp(&(b.k, b.lookup_bits)).then(a.max_abs_error.total_cmp(&b.max_abs_error))
        })
    });
    let chosen = cheapest
        .or_else(|| fits().min_by(|a, b| a.max_abs_error.total_cmp(&b.max_abs_error).then(a.k.cmp(&b.k))))
        .cloned();
    let Some(chosen) = chosen else {
        bail!("no scale between 4 and {MAX_SCALE} bits fits k <= {max_k} for these samples");
    };
    let settings = Settings {
        input_scale: chosen.input_scale,
        param_scale: chosen.param_scale,
        lookup_bits: chosen.lookup_bits,
        wide_nodes: chosen.wide_nodes.clone(),
        ..base.clone()
    };
    Ok(Calibration { settings, chosen, tried })
}

/// The settings (widening the table functions that samples take outside
/// their tables) and the largest output error over the samples, or `None`
/// if some sample leaves a range the circuit can prove in another way.
fn fit(
    graph: &Graph,
    mut settings: Settings,
    samples: &[Vec<Vec<f64>>],
    reference: &[Vec<Vec<f64>>],
) -> Result<Option<(Settings, f64)>> {
    loop {
        let program = compile(graph, &settings)?;
        match max_error(&program, samples, reference) {
            Ok(err) => return Ok(Some((settings, err))),
            Err(Some(node))
                if !settings.is_wide(&node) && graph.nodes.iter().any(|n| n.name == node && n.op.is_table_fn()) =>
            {
                settings.wide_nodes.push(node);
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Largest output error over the samples; if some sample leaves the ranges
/// the circuit can prove, the node whose table it left, where that is why.
fn max_error(program: &Program, samples: &[Vec<Vec<f64>>], reference: &[Vec<Vec<f64>>]) -> Result<f64, Option<String>> {
    let mut worst: f64 = 0.0;
    for (s, r) in samples.iter().zip(reference) {
        let w = program.run(s).map_err(|e| e.downcast_ref::<OutsideTable>().map(|o| o.node.clone()))?;
        let out = program.dequantize(&program.output_values(&w));
        for (a, b) in out.iter().flatten().zip(r.iter().flatten()) {
            worst = worst.max((a - b).abs());
        }
    }
    Ok(worst)
}
