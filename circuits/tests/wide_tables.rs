//! Widened table functions: inputs far outside the lookup table (hundreds of
//! table widths) give the function's value — exactly for the rounding
//! functions, to a quantum or two for those that follow a line — where an
//! unwidened node refuses them by name; MockProver accepts the witness,
//! every advice cell is constrained, `calibrate` widens the nodes its
//! samples need, and precision lost at a table's edge is reported.

mod common;

use std::sync::Arc;

use halo2_proofs::dev::MockProver;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tract_onnx::pb;
use zkfarm_circuits::calibrate::calibrate;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::program::OutsideTable;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};

use common::{
    assert_every_cell_constrained, float_attr, floats, model_of, node, one_node_model, string_attr, value_info,
};

/// Scale 2^5 and tables of 2^12 keys: the tables hold [−64, 64), the
/// proven range is ±2^18.
fn settings(wide: &[&str]) -> Settings {
    Settings {
        input_scale: 5,
        param_scale: 5,
        lookup_bits: 12,
        wide_nodes: wide.iter().map(|s| s.to_string()).collect(),
        ..Settings::default()
    }
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

type Case = (&'static str, Vec<pb::AttributeProto>, i64, fn(f64) -> f64);

fn cases() -> Vec<Case> {
    vec![
        ("Relu", vec![], 13, |x| x.max(0.0)),
        ("LeakyRelu", vec![float_attr("alpha", 0.1)], 13, |x| if x < 0.0 { 0.1 * x } else { x }),
        ("Sigmoid", vec![], 13, |x| 1.0 / (1.0 + (-x).exp())),
        ("Tanh", vec![], 13, f64::tanh),
        ("Erf", vec![], 13, libm::erf),
        ("Gelu", vec![], 20, |x| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()))),
        ("Gelu", vec![string_attr("approximate", "tanh")], 20, |x| {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }),
        ("Softplus", vec![], 13, softplus),
        ("Elu", vec![float_attr("alpha", 0.5)], 13, |x| if x < 0.0 { 0.5 * x.exp_m1() } else { x }),
        ("HardSwish", vec![], 14, |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        ("Mish", vec![], 18, |x| x * softplus(x).tanh()),
        ("Abs", vec![], 13, f64::abs),
        ("Floor", vec![], 13, f64::floor),
        ("Ceil", vec![], 13, f64::ceil),
        ("Round", vec![], 13, f64::round_ties_even),
    ]
}

/// Inputs inside the table, at its edges and far beyond them.
fn inputs(rng: &mut ChaCha20Rng, scale: f64) -> Vec<f64> {
    let mut x: Vec<f64> = [-64.0, 63.96875, -64.03125, 64.0, -3000.0, 7000.5, 0.0, -0.5]
        .into_iter()
        .chain((0..16).map(|_| rng.gen_range(-4000.0..4000.0)))
        .collect();
    x.extend((0..8).map(|_| rng.gen_range(-60.0..60.0)));
    x.iter().map(|v| (v * scale).round() / scale).collect()
}

#[test]
fn widened_functions_hold_far_outside_their_tables_and_satisfy_the_circuit() {
    let scale = 32.0;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let x = inputs(&mut rng, scale);
    let shape = [1, x.len() as i64];
    for (op, attrs, opset, f) in cases() {
        let onnx = one_node_model(op, "act", attrs, &[], &shape, opset);
        // Unwidened, the node refuses what leaves its table, by name.
        let narrow = CompiledModel::compile(&onnx, &settings(&[])).unwrap();
        let err = narrow.run(std::slice::from_ref(&x)).unwrap_err();
        let outside = err.downcast_ref::<OutsideTable>().unwrap_or_else(|| panic!("{op}: {err:#}"));
        assert_eq!(outside.node, "act");
        assert!(format!("{err}").contains("wide_nodes"), "{err}");

        let model = CompiledModel::compile(&onnx, &settings(&["act"])).unwrap_or_else(|e| panic!("{op}: {e:#}"));
        assert!(model.program.precision_notes.is_empty(), "{op}: {:?}", model.program.precision_notes);
        let witness = model.run(std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{op}: {e:#}"));
        let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
        let float = FloatModel::load(&onnx, &[shape.iter().map(|&d| d as usize).collect()])
            .and_then(|m| m.run(std::slice::from_ref(&x)))
            .unwrap_or_else(|e| panic!("{op}: tract: {e:#}"));
        for ((&xi, &got), &tract) in x.iter().zip(&ours).zip(&float[0]) {
            let want = f(xi);
            // Rounding of the table entry and of the line's division; the
            // rounding functions are exact.
            let tol = if ["Floor", "Ceil", "Round"].contains(&op) { 0.0 } else { 2.0 / scale };
            assert!((got - want).abs() <= tol, "{op} at {xi}: {got}, the function gives {want}");
            // tract computes in f32: a relative error at large values, and
            // Softplus overflows there.
            if tract.is_finite() {
                assert!((got - tract).abs() <= tol + 1e-6 * tract.abs(), "{op} at {xi}: {got}, tract gives {tract}");
            }
        }
        let inst = instances(&model.program, &witness);
        let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
        MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
    }
}

/// Sigmoid of LeakyRelu (one composed table, with lines) and Floor (a
/// periodic extension), widened, on a small table: changing any advice cell
/// is caught.
#[test]
fn every_cell_of_widened_functions_is_constrained() {
    let s = Settings {
        input_scale: 3,
        param_scale: 3,
        lookup_bits: 8,
        wide_nodes: vec!["*".into()],
        ..Settings::default()
    };
    let nodes = vec![
        node("LeakyRelu", "leaky", &["x"], "a", vec![float_attr("alpha", 0.25)]),
        node("Sigmoid", "sig", &["a"], "b", vec![]),
        node("Floor", "floor", &["z"], "c", vec![]),
        node("Add", "add", &["b", "c"], "y", vec![]),
    ];
    let inputs = vec![value_info("x", &[1, 4]), value_info("z", &[1, 4])];
    let onnx = model_of(nodes, vec![], inputs, vec![value_info("y", &[1, 4])], 13);
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    assert!(model.program.precision_notes.is_empty(), "{:?}", model.program.precision_notes);
    // The table holds [−16, 16); some inputs lie far beyond it.
    let x = vec![-900.25, 3.5, 150.125, -2.0];
    let z = vec![-900.25, 1000.5, 15.875, -16.125];
    let witness = model.run(&[x.clone(), z.clone()]).unwrap();
    let got = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    let want: Vec<f64> = x
        .iter()
        .zip(&z)
        .map(|(&v, &w): (&f64, &f64)| (sigmoid(if v < 0.0 { 0.25 * v } else { v }) * 8.0).round() / 8.0 + w.floor())
        .collect();
    assert_eq!(got, want);
    assert_every_cell_constrained(&model, Arc::new(witness));
}

#[test]
fn calibration_widens_the_nodes_its_samples_take_outside_their_tables() {
    // y = sigmoid(x·W) with weights that spread the inputs over ±1000.
    let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 40.0).collect();
    let nodes = vec![node("MatMul", "mm", &["x", "w"], "h", vec![]), node("Sigmoid", "sig", &["h"], "y", vec![])];
    let onnx = model_of(
        nodes,
        vec![floats("w", &[4, 3], &w)],
        vec![value_info("x", &[1, 4])],
        vec![value_info("y", &[1, 3])],
        13,
    );
    let graph = zkfarm_circuits::onnx::import_bytes(&onnx).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let samples: Vec<Vec<Vec<f64>>> =
        (0..6).map(|_| vec![(0..4).map(|_| rng.gen_range(-1.0..1.0)).collect()]).collect();
    let base = Settings { lookup_bits: 12, ..Settings::default() };
    let cal = calibrate(&graph, &onnx, &samples, &base, 14, Some(0.02)).unwrap();
    assert!(cal.chosen.max_abs_error <= 0.02, "{:?}", cal.chosen);
    assert!(cal.tried.iter().any(|c| c.wide_nodes == ["sig"]), "{:?}", cal.tried);
    let model = CompiledModel::compile(&onnx, &cal.settings).unwrap();
    for s in &samples {
        model.run(s).unwrap();
    }
}

#[test]
fn precision_lost_at_a_tables_edge_is_reported_and_bad_wide_nodes_are_refused() {
    // Scale 2^8: the tables hold [−8, 8), where Softsign is still 0.89.
    let s = |wide: &str| Settings { input_scale: 8, param_scale: 8, wide_nodes: vec![wide.into()], ..settings(&[]) };
    let onnx = one_node_model("Softsign", "soft", vec![], &[], &[1, 4], 13);
    let model = CompiledModel::compile(&onnx, &s("soft")).unwrap();
    let notes = &model.stats().precision_notes;
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("`soft` (Softsign)") && notes[0].contains("below"), "{notes:?}");
    // Held at the edge: softsign(8) is 0.89, softsign(5000) is 0.9998.
    let w = model.run(&[vec![5000.0, -5000.0, 1.0, 0.0]]).unwrap();
    let got = model.program.dequantize(&model.program.output_values(&w)).remove(0);
    assert!((got[0] - 8.0 / 9.0).abs() <= 1.0 / 256.0, "{got:?}");
    assert!((got[1] + 8.0 / 9.0).abs() <= 1.0 / 256.0, "{got:?}");

    // Exp tends to 0 below its table, so only above is reported.
    let onnx = one_node_model("Exp", "exp", vec![], &[], &[1, 4], 13);
    let notes = CompiledModel::compile(&onnx, &s("exp")).unwrap().stats().precision_notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("above"), "{notes:?}");

    let err = CompiledModel::compile(&onnx, &s("nope")).unwrap_err();
    assert!(format!("{err:#}").contains("`nope`, which is not a node"), "{err:#}");
    let onnx = one_node_model("Neg", "neg", vec![], &[], &[1, 4], 13);
    let err = CompiledModel::compile(&onnx, &s("neg")).unwrap_err();
    assert!(format!("{err:#}").contains("no table function"), "{err:#}");
}
