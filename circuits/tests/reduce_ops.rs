//! ONNX's reductions (ReduceSum, ReduceMean, ReduceMax, ReduceMin,
//! ReduceSumSquare, ReduceL1, ReduceL2), imported from one-node models with
//! axes as an attribute or as an input as their opsets take them, kept or
//! dropped: the quantized outputs track tract's float inference and
//! MockProver accepts the witness.

mod common;

use std::sync::Arc;

use halo2_proofs::dev::MockProver;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tract_onnx::pb;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};

use common::{int_attr, ints_attr, one_node_model_to};

fn settings() -> Settings {
    Settings { input_scale: 8, param_scale: 8, lookup_bits: 12, lanes: 8, public_input: false, ..Settings::default() }
}

const SHAPE: [i64; 3] = [2, 3, 4];

/// The output shape of reducing SHAPE over `axes` (all when empty).
fn reduced(axes: &[i64], keep: bool) -> Vec<i64> {
    let norm: Vec<usize> = axes.iter().map(|&a| a.rem_euclid(3) as usize).collect();
    (0..3)
        .filter_map(|d| match (norm.is_empty() || norm.contains(&d), keep) {
            (false, _) => Some(SHAPE[d]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// The model with its axes input (initializer `c0`) as int64, as ONNX
/// requires and exporters write it.
fn int64_axes(onnx: Vec<u8>) -> Vec<u8> {
    let mut m = pb::ModelProto::decode(&onnx[..]).unwrap();
    for t in &mut m.graph.as_mut().unwrap().initializer {
        t.int64_data = t.float_data.drain(..).map(|v| v as i64).collect();
        t.data_type = 7;
    }
    m.encode_to_vec()
}

#[test]
fn reductions_track_tract_and_satisfy_the_circuit() {
    let s = settings();
    let scale = f64::from(1u32 << s.input_scale);
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let ops = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2"];
    for (i, op) in ops.iter().enumerate() {
        for (axes, keep, opset) in
            [(vec![-1i64], true, 13), (vec![0, 2], false, 13), (vec![], true, 13), (vec![1], false, 18)]
        {
            let from_input = opset >= 18 || *op == "ReduceSum";
            let mut attrs = vec![int_attr("keepdims", i64::from(keep))];
            let mut consts: Vec<(&[i64], Vec<f32>)> = Vec::new();
            let axes_dims = [axes.len() as i64];
            match (from_input, axes.is_empty()) {
                (_, true) => {}
                (true, false) => consts.push((&axes_dims, axes.iter().map(|&a| a as f32).collect())),
                (false, false) => attrs.push(ints_attr("axes", &axes)),
            }
            let out = reduced(&axes, keep);
            let onnx = int64_axes(one_node_model_to(op, &format!("the_{op}"), attrs, &consts, &SHAPE, &out, opset));
            let what = format!("{op} over {axes:?}, keepdims {keep}, opset {opset}");
            let model = CompiledModel::compile(&onnx, &s).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(model.program.output_shapes[0], out.iter().map(|&d| d as usize).collect::<Vec<_>>(), "{what}");
            let range = if i >= 4 { 1.0 } else { 4.0 };
            let x: Vec<f64> = (0..24).map(|_| rng.gen_range(-range..range)).collect();
            let witness = model.run(std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
            let float = FloatModel::load(&onnx, &[vec![2, 3, 4]]).and_then(|m| m.run(std::slice::from_ref(&x)));
            let float = float.unwrap_or_else(|e| panic!("{what}: tract: {e:#}"));
            let count = 24 / ours.len();
            for (got, want) in ours.iter().zip(&float[0]) {
                // Each input rounds by half a step; squares and roots scale that.
                let tol = (count as f64 + 2.0) / scale * (1.0 + want.abs());
                assert!((got - want).abs() <= tol, "{what}: {got}, tract gives {want}");
            }
            let inst = instances(&model.program, &witness);
            let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
            MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
        }
    }
}

#[test]
fn an_empty_axes_list_with_noop_passes_the_input_through() {
    let attrs = vec![int_attr("noop_with_empty_axes", 1)];
    let onnx = one_node_model_to("ReduceMean", "m", attrs, &[], &SHAPE, &SHAPE, 18);
    let model = CompiledModel::compile(&onnx, &settings()).unwrap();
    let x: Vec<f64> = (0..24).map(|i| i as f64 / 8.0 - 1.5).collect();
    let witness = model.run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(model.program.dequantize(&model.program.output_values(&witness)).remove(0), x);
}
