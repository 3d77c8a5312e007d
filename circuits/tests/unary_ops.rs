//! ONNX's element-wise functions of one value (activations, exponentials
//! and logarithms, roots, rounding, trigonometric and hyperbolic functions),
//! Neg, Pow and PRelu, each imported from a one-node ONNX model: the
//! quantized outputs track the function (written here from its ONNX
//! definition) and tract's float inference, and MockProver accepts the
//! witness.

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

use common::{float_attr, one_node_model, string_attr, value_info};

/// Scale 2^8 and a table of 2^12 entries: inputs in [−8, 8).
fn settings() -> Settings {
    Settings { input_scale: 8, param_scale: 8, lookup_bits: 12, lanes: 8, public_input: false, ..Settings::default() }
}

/// One node `op` reading input `x` of `shape` (and constant second inputs),
/// at `opset`.
fn model(
    op: &str,
    attrs: Vec<pb::AttributeProto>,
    consts: &[(&[i64], Vec<f32>)],
    shape: &[i64],
    opset: i64,
) -> Vec<u8> {
    one_node_model(op, &format!("the_{op}"), attrs, consts, shape, opset)
}

struct Case {
    op: &'static str,
    attrs: Vec<pb::AttributeProto>,
    consts: Vec<(&'static [i64], Vec<f32>)>,
    opset: i64,
    /// Inputs are drawn from [lo, hi).
    lo: f64,
    hi: f64,
    /// The function from ONNX's definition, at input index i (for PRelu's
    /// per-channel slope).
    f: Box<dyn Fn(f64, usize) -> f64>,
    /// Whether tract's float inference is a reference for this case.
    tract: bool,
}

fn case(op: &'static str, lo: f64, hi: f64, f: impl Fn(f64) -> f64 + 'static) -> Case {
    Case { op, attrs: vec![], consts: vec![], opset: 13, lo, hi, f: Box::new(move |x, _| f(x)), tract: true }
}

fn softplus(x: f64) -> f64 {
    (1.0 + x.exp()).ln()
}

fn cases() -> Vec<Case> {
    let erf = |x: f64| libm::erf(x);
    let mut v = vec![
        case("Elu", -4.0, 4.0, |x| if x < 0.0 { x.exp() - 1.0 } else { x }),
        case("Selu", -4.0, 4.0, |x| {
            1.0507009873554805 * if x <= 0.0 { 1.6732632423543772 * (x.exp() - 1.0) } else { x }
        }),
        case("HardSigmoid", -4.0, 4.0, |x| (0.2 * x + 0.5).clamp(0.0, 1.0)),
        case("Softplus", -4.0, 4.0, softplus),
        case("Softsign", -4.0, 4.0, |x| x / (1.0 + x.abs())),
        case("Erf", -3.0, 3.0, erf),
        case("Exp", -4.0, 3.0, f64::exp),
        case("Log", 0.1, 6.0, f64::ln),
        case("Sqrt", 0.0, 6.0, f64::sqrt),
        case("Reciprocal", 0.5, 6.0, |x| 1.0 / x),
        case("Abs", -4.0, 4.0, f64::abs),
        case("Neg", -4.0, 4.0, |x| -x),
        case("Sign", -4.0, 4.0, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        case("Floor", -4.0, 4.0, f64::floor),
        case("Ceil", -4.0, 4.0, f64::ceil),
        case("Round", -4.0, 4.0, f64::round_ties_even),
        case("Sin", -4.0, 4.0, f64::sin),
        case("Cos", -4.0, 4.0, f64::cos),
        case("Tan", -1.2, 1.2, f64::tan),
        case("Asin", -0.95, 0.95, f64::asin),
        case("Acos", -0.95, 0.95, f64::acos),
        case("Atan", -4.0, 4.0, f64::atan),
        case("Sinh", -3.0, 3.0, f64::sinh),
        case("Cosh", -3.0, 3.0, f64::cosh),
        case("Asinh", -4.0, 4.0, f64::asinh),
        case("Acosh", 1.0, 6.0, f64::acosh),
        case("Atanh", -0.9, 0.9, f64::atanh),
    ];
    let mut with = |op: &'static str, attrs: Vec<pb::AttributeProto>, opset: i64, f: Box<dyn Fn(f64, usize) -> f64>| {
        v.push(Case { op, attrs, consts: vec![], opset, lo: -4.0, hi: 4.0, f, tract: op != "Celu" });
    };
    with("Elu", vec![float_attr("alpha", 0.5)], 13, Box::new(|x, _| if x < 0.0 { 0.5 * (x.exp() - 1.0) } else { x }));
    with(
        "Celu",
        vec![float_attr("alpha", 2.0)],
        13,
        Box::new(|x, _| x.max(0.0) + (2.0 * ((x / 2.0).exp() - 1.0)).min(0.0)),
    );
    // tract 0.23 computes Celu as exp(x/α) − 1 below zero, without ONNX's
    // factor α (so `with` does not compare Celu with tract): the definition
    // above is the reference.
    with("HardSwish", vec![], 14, Box::new(|x, _| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)));
    with("Mish", vec![], 18, Box::new(|x, _| x * softplus(x).tanh()));
    with("Gelu", vec![], 20, Box::new(move |x, _| 0.5 * x * (1.0 + erf(x / 2f64.sqrt()))));
    with(
        "Gelu",
        vec![string_attr("approximate", "tanh")],
        20,
        Box::new(|x, _| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())),
    );
    with("ThresholdedRelu", vec![float_attr("alpha", 0.5)], 13, Box::new(|x, _| if x > 0.5 { x } else { 0.0 }));
    with(
        "Shrink",
        vec![float_attr("bias", 0.25), float_attr("lambd", 1.0)],
        13,
        Box::new(|x, _| {
            if x < -1.0 {
                x + 0.25
            } else if x > 1.0 {
                x - 0.25
            } else {
                0.0
            }
        }),
    );
    // Pow by products (2, 3), by a table (0.5, −1), and x^0.
    for (e, lo, hi) in [(2.0f32, -2.5, 2.5), (3.0, -1.8, 1.8), (0.5, 0.0, 6.0), (-1.0, 0.5, 6.0), (0.0, -4.0, 4.0)] {
        v.push(Case {
            op: "Pow",
            attrs: vec![],
            consts: vec![(&[], vec![e])],
            opset: 13,
            lo,
            hi,
            f: Box::new(move |x, _| x.powf(f64::from(e))),
            tract: true,
        });
    }
    // PRelu with one slope, and with one per channel of a [1, 3, 4] input.
    v.push(Case {
        op: "PRelu",
        attrs: vec![],
        consts: vec![(&[1], vec![0.25])],
        opset: 13,
        lo: -4.0,
        hi: 4.0,
        f: Box::new(|x, _| if x < 0.0 { 0.25 * x } else { x }),
        tract: true,
    });
    let slopes = [0.1, -0.5, 2.0];
    v.push(Case {
        op: "PRelu",
        attrs: vec![],
        consts: vec![(&[3, 1], slopes.to_vec())],
        opset: 13,
        lo: -4.0,
        hi: 4.0,
        f: Box::new(move |x, i| if x < 0.0 { f64::from(slopes[i / 4]) * x } else { x }),
        tract: true,
    });
    v
}

#[test]
fn unary_ops_track_their_functions_and_tract_and_satisfy_the_circuit() {
    let s = settings();
    let scale = f64::from(1u32 << s.input_scale);
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let shape: [i64; 3] = [1, 3, 4];
    let mut compared_with_tract = 0;
    for c in cases() {
        let what = format!("{} {:?}", c.op, c.attrs.iter().map(|a| &a.name).collect::<Vec<_>>());
        let onnx = model(c.op, c.attrs, &c.consts, &shape, c.opset);
        let model = CompiledModel::compile(&onnx, &s).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let mut x: Vec<f64> = (0..12).map(|_| rng.gen_range(c.lo..c.hi)).collect();
        // Grid points, and the domain's edges where the function is defined there.
        x[0] = (c.lo * scale).ceil() / scale;
        x[1] = 0.0f64.clamp(c.lo, c.hi - 1.0 / scale);
        x[2] = (2.5 * scale).round() / scale;
        x[2] = x[2].clamp(c.lo, c.hi - 1.0 / scale);
        let witness = model.run(&[x.clone()]).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
        let q: Vec<f64> =
            model.program.quantize_inputs(&[x.clone()]).unwrap().remove(0).iter().map(|&v| v as f64 / scale).collect();
        for (i, (&xi, &got)) in q.iter().zip(&ours).enumerate() {
            let want = (c.f)(xi, i);
            // One rounding of the output, plus what the products of Pow round.
            let tol = 1.5 / scale * (1.0 + want.abs().min(8.0));
            assert!((got - want).abs() <= tol, "{what} at {xi}: {got}, the function gives {want}");
        }
        // tract, on the unquantized inputs: rounding an input moves the
        // function by up to its change over half a step, read off the
        // function itself (steep near the edge of a domain, as acosh at 1).
        let float = if c.tract {
            FloatModel::load(&onnx, &[vec![1, 3, 4]]).and_then(|m| m.run(&[x.clone()]))
        } else {
            Err(anyhow::anyhow!("not a reference"))
        };
        if let Ok(float) = float {
            compared_with_tract += 1;
            let h = 0.5 / scale;
            for (i, ((&xi, &got), &want)) in x.iter().zip(&ours).zip(&float[0]).enumerate() {
                let moved = [xi - h, xi + h]
                    .iter()
                    .filter(|&&y| y >= c.lo && y < c.hi)
                    .map(|&y| ((c.f)(y, i) - (c.f)(xi, i)).abs())
                    .fold(0.0, f64::max);
                let tol = moved + 1.5 / scale * (1.0 + want.abs().min(8.0)) + 1e-4 * want.abs();
                assert!((got - want).abs() <= tol, "{what} at {xi}: {got}, tract gives {want}");
            }
        }
        let inst = instances(&model.program, &witness);
        let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
        MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
    }
    assert!(compared_with_tract >= 30, "tract ran only {compared_with_tract} of the cases");
}

/// A runtime exponent is `exp(y · ln x)`: two tables and a product, for a
/// positive base.
#[test]
fn pow_by_a_runtime_exponent_follows_the_function_and_satisfies_the_circuit() {
    let s = settings();
    // The second input is a graph input, not an initializer.
    let mut m = pb::ModelProto::decode(&model("Pow", vec![], &[(&[], vec![2.0])], &[1, 4], 13)[..]).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.initializer.clear();
    g.input.push(value_info("c0", &[]));
    let model = CompiledModel::compile(&m.encode_to_vec(), &s).unwrap();
    let (x, y) = (vec![0.5, 1.0, 1.5, 2.25], 1.5);
    let witness = model.run(&[x.clone(), vec![y]]).unwrap();
    let got = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    for (xi, gi) in x.iter().zip(&got) {
        let want = f64::powf(*xi, y);
        assert!((gi - want).abs() <= 4.0 / 256.0 * want.max(1.0), "{xi}^{y}: {gi}, want {want}");
    }
    let inst = instances(&model.program, &witness);
    let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
    MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
}

#[test]
fn gelu_refuses_an_unknown_approximation_by_name() {
    let err = CompiledModel::compile(
        &model("Gelu", vec![string_attr("approximate", "cubic")], &[], &[1, 4], 20),
        &settings(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("cubic"), "{err:#}");
}
