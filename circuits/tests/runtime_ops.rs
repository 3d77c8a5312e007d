//! Ops over runtime tensors beyond arithmetic — comparisons, logic, Where,
//! Div by a runtime tensor, the normalizations, Gather by runtime indices
//! (embeddings), casts — and integer and boolean inputs: small ONNX models
//! against tract's float inference on the same (quantized) inputs, with
//! MockProver, and a mutation test over a model that uses all of them.

mod common;

use std::sync::Arc;

use halo2_proofs::dev::MockProver;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tract_onnx::pb;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::program::{Program, Witness};
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};

use common::{assert_every_cell_constrained, floats, int_attr, ints_attr, model_of, node, typed_info};

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const BOOL: i32 = 9;

fn settings() -> Settings {
    Settings { input_scale: 8, param_scale: 8, lookup_bits: 12, lanes: 8, public_input: false, ..Settings::default() }
}

/// One model input: its name, ONNX element type, shape and values.
struct In {
    name: &'static str,
    elem: i32,
    shape: Vec<i64>,
    values: Vec<f64>,
}

struct Case {
    what: &'static str,
    nodes: Vec<pb::NodeProto>,
    init: Vec<pb::TensorProto>,
    inputs: Vec<In>,
    /// The output `y`: element type and shape.
    out: (i32, Vec<i64>),
    opset: i64,
    /// Largest difference from tract allowed.
    tol: f64,
}

fn floats_in(name: &'static str, shape: &[i64], rng: &mut ChaCha20Rng, lo: f64, hi: f64) -> In {
    let n = shape.iter().product::<i64>() as usize;
    In { name, elem: FLOAT, shape: shape.to_vec(), values: (0..n).map(|_| rng.gen_range(lo..hi)).collect() }
}

/// `x` and `z` of shape [2, 3, 4] where a third of z equals x, so that
/// comparisons meet ties.
fn x_and_z(rng: &mut ChaCha20Rng) -> Vec<In> {
    let x = floats_in("x", &[2, 3, 4], rng, -3.0, 3.0);
    let mut z = floats_in("z", &[2, 3, 4], rng, -3.0, 3.0);
    for i in (0..24).step_by(3) {
        z.values[i] = x.values[i];
    }
    vec![x, z]
}

/// Denominators of either sign, away from zero.
fn denominators(rng: &mut ChaCha20Rng) -> In {
    let mut z = floats_in("z", &[2, 3, 4], rng, 0.5, 3.0);
    for v in z.values.iter_mut().step_by(2) {
        *v = -*v;
    }
    z
}

const S: [i64; 3] = [2, 3, 4];

fn cases() -> Vec<Case> {
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let mut cases = Vec::new();
    for op in ["Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal"] {
        cases.push(Case {
            what: op,
            nodes: vec![node(op, "cmp", &["x", "z"], "y", vec![])],
            init: vec![],
            inputs: x_and_z(&mut rng),
            out: (BOOL, S.to_vec()),
            opset: 13,
            tol: 0.0,
        });
    }
    cases.push(Case {
        what: "a comparison with a constant, broadcast",
        nodes: vec![node("Greater", "cmp", &["x", "c"], "y", vec![])],
        init: vec![floats("c", &[4], &[-1.0, 0.0, 0.5, 2.0])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (BOOL, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    for op in ["And", "Or", "Xor"] {
        cases.push(Case {
            what: op,
            nodes: vec![
                node("Less", "l", &["x", "z"], "a", vec![]),
                node("Greater", "g", &["x", "c"], "b", vec![]),
                node(op, "logic", &["a", "b"], "y", vec![]),
            ],
            init: vec![floats("c", &[], &[0.0])],
            inputs: x_and_z(&mut rng),
            out: (BOOL, S.to_vec()),
            opset: 13,
            tol: 0.0,
        });
    }
    cases.push(Case {
        what: "Not",
        nodes: vec![node("Less", "l", &["x", "z"], "a", vec![]), node("Not", "n", &["a"], "y", vec![])],
        init: vec![],
        inputs: x_and_z(&mut rng),
        out: (BOOL, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "Where, runtime condition",
        nodes: vec![node("Less", "l", &["x", "z"], "c", vec![]), node("Where", "w", &["c", "x", "z"], "y", vec![])],
        init: vec![],
        inputs: x_and_z(&mut rng),
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "Where, constant condition (a mask)",
        nodes: vec![node("Where", "w", &["m", "x", "fill"], "y", vec![])],
        init: vec![
            pb::TensorProto {
                name: "m".into(),
                dims: vec![3, 4],
                data_type: BOOL,
                int32_data: vec![1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0],
                ..Default::default()
            },
            floats("fill", &[], &[-2.5]),
        ],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "Div by a runtime tensor of either sign",
        nodes: vec![node("Div", "d", &["x", "z"], "y", vec![])],
        init: vec![],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0), denominators(&mut rng)],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        // Rounded toward -inf: at most one quantum below.
        tol: 1.0 / 256.0 + 1e-6,
    });
    cases.push(Case {
        what: "LayerNormalization over the last axis",
        nodes: vec![node("LayerNormalization", "ln", &["x", "g", "b"], "y", vec![])],
        init: vec![floats("g", &[4], &[1.0, 0.5, -1.5, 2.0]), floats("b", &[4], &[0.0, 0.25, -0.5, 1.0])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (FLOAT, S.to_vec()),
        opset: 17,
        tol: 0.05,
    });
    cases.push(Case {
        what: "LayerNormalization over the last two axes",
        nodes: vec![node("LayerNormalization", "ln", &["x", "g"], "y", vec![int_attr("axis", 1)])],
        init: vec![floats("g", &[3, 4], &[1.0; 12])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (FLOAT, S.to_vec()),
        opset: 17,
        tol: 0.05,
    });
    cases.push(Case {
        what: "InstanceNormalization",
        nodes: vec![node("InstanceNormalization", "in", &["x", "g", "b"], "y", vec![])],
        init: vec![floats("g", &[3], &[1.0, 0.5, -2.0]), floats("b", &[3], &[0.5, 0.0, -1.0])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.05,
    });
    for (opset, params) in [(18, 2), (21, 4)] {
        cases.push(Case {
            what: if opset == 18 { "GroupNormalization, per-group affine" } else { "GroupNormalization, per channel" },
            nodes: vec![node("GroupNormalization", "gn", &["x", "g", "b"], "y", vec![int_attr("num_groups", 2)])],
            init: vec![
                floats("g", &[params], &[1.0, -0.5, 2.0, 1.5][..params as usize]),
                floats("b", &[params], &[0.0, 0.5, -1.0, 0.25][..params as usize]),
            ],
            inputs: vec![floats_in("x", &[1, 4, 2, 3], &mut rng, -3.0, 3.0)],
            out: (FLOAT, vec![1, 4, 2, 3]),
            opset,
            tol: 0.05,
        });
    }
    for (op, axis) in [("LogSoftmax", -1), ("LogSoftmax", 1), ("Hardmax", -1), ("Hardmax", 0)] {
        cases.push(Case {
            what: Box::leak(format!("{op} on axis {axis}").into_boxed_str()),
            nodes: vec![node(op, "sm", &["x"], "y", vec![int_attr("axis", axis)])],
            init: vec![],
            inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
            out: (FLOAT, S.to_vec()),
            opset: 13,
            tol: 0.02,
        });
    }
    // Ties: every value appears twice, so first and last indices differ.
    let ties: Vec<f64> = (0..24).map(|i| ((i * 5) % 12) as f64 / 4.0 - 1.0).collect();
    for (op, axis, keep, last) in
        [("ArgMax", 2, 1, 0), ("ArgMax", 0, 0, 1), ("ArgMin", -1, 0, 0), ("ArgMin", 1, 1, 1), ("ArgMax", 1, 0, 1)]
    {
        let mut out: Vec<i64> = S.to_vec();
        let a = if axis < 0 { axis + 3 } else { axis } as usize;
        if keep == 1 {
            out[a] = 1;
        } else {
            out.remove(a);
        }
        cases.push(Case {
            what: Box::leak(format!("{op} axis {axis} keepdims {keep} last {last}").into_boxed_str()),
            nodes: vec![node(
                op,
                "arg",
                &["x"],
                "y",
                vec![int_attr("axis", axis), int_attr("keepdims", keep), int_attr("select_last_index", last)],
            )],
            init: vec![],
            inputs: vec![In { name: "x", elem: FLOAT, shape: S.to_vec(), values: ties.clone() }],
            out: (INT64, out),
            opset: 13,
            tol: 0.0,
        });
    }
    for (axis, k, largest, indices) in [(-1, 2, 1, false), (-1, 2, 1, true), (1, 3, 0, false), (1, 3, 0, true)] {
        let mut out = S.to_vec();
        out[if axis < 0 { 2 } else { axis as usize }] = k;
        let outputs = if indices { ["vals", "y"] } else { ["y", "idx"] };
        let mut n = node("TopK", "top", &["x", "k"], "y", vec![int_attr("axis", axis), int_attr("largest", largest)]);
        n.output = outputs.iter().map(|o| o.to_string()).collect();
        cases.push(Case {
            what: Box::leak(format!("TopK axis {axis} k {k} largest {largest} indices {indices}").into_boxed_str()),
            nodes: vec![n],
            init: vec![pb::TensorProto {
                name: "k".into(),
                dims: vec![1],
                data_type: INT64,
                int64_data: vec![k],
                ..Default::default()
            }],
            inputs: vec![In { name: "x", elem: FLOAT, shape: S.to_vec(), values: ties.clone() }],
            out: (if indices { INT64 } else { FLOAT }, out),
            opset: 13,
            tol: 0.0,
        });
    }
    for (op, tol) in [("ReduceProd", 0.02), ("ReduceLogSumExp", 0.02)] {
        cases.push(Case {
            what: op,
            nodes: vec![node(op, "r", &["x"], "y", vec![ints_attr("axes", &[2])])],
            init: vec![],
            inputs: vec![floats_in("x", &S, &mut rng, -1.5, 1.5)],
            out: (FLOAT, vec![2, 3, 1]),
            opset: 13,
            tol,
        });
    }
    let w45: Vec<f32> = (0..20).map(|i| ((i * 7 % 9) as f32 - 4.0) / 5.0).collect();
    for (eq, consts, out) in [
        ("bij,jk->bik", vec![("w", vec![4i64, 5], w45.clone())], vec![2i64, 3, 5]),
        ("bij,jk", vec![("w", vec![4, 5], w45.clone())], vec![2, 3, 5]),
        ("bij,bkj->bik", vec![], vec![2, 3, 3]),
        ("bij->jbi", vec![], vec![3, 2, 4]),
        ("bij->b", vec![], vec![2]),
        ("bij,j->bi", vec![("v", vec![4], vec![0.5, -1.0, 0.25, 2.0])], vec![2, 3]),
    ] {
        let mut inputs = vec!["x"];
        inputs.extend(consts.iter().map(|(n, _, _)| *n));
        if consts.is_empty() && eq.contains(',') {
            inputs.push("x");
        }
        cases.push(Case {
            what: Box::leak(format!("Einsum {eq}").into_boxed_str()),
            nodes: vec![node("Einsum", "e", &inputs, "y", vec![common::string_attr("equation", eq)])],
            init: consts.iter().map(|(n, d, v)| floats(n, d, v)).collect(),
            inputs: vec![floats_in("x", &S, &mut rng, -2.0, 2.0)],
            out: (FLOAT, out),
            opset: 13,
            tol: 0.03,
        });
    }
    let i64s = |name: &str, dims: &[i64], v: &[i64]| pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    };
    cases.push(Case {
        what: "GatherElements on axis 1, negative indices",
        nodes: vec![node("GatherElements", "ge", &["x", "i"], "y", vec![int_attr("axis", 1)])],
        init: vec![i64s("i", &[2, 2, 4], &[0, 2, -1, 1, 1, 0, 0, 2, 2, 2, 1, 0, -3, 1, 2, 0])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (FLOAT, vec![2, 2, 4]),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "GatherND of pairs",
        nodes: vec![node("GatherND", "gnd", &["x", "i"], "y", vec![])],
        init: vec![i64s("i", &[3, 2], &[1, 2, 0, 0, 1, 2])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0)],
        out: (FLOAT, vec![3, 4]),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "ScatterElements of runtime updates on axis 2",
        nodes: vec![node("ScatterElements", "se", &["x", "i", "z"], "y", vec![int_attr("axis", 2)])],
        init: vec![i64s("i", &[2, 3, 1], &[3, 0, 1, -1, 2, 0])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0), floats_in("z", &[2, 3, 1], &mut rng, 5.0, 6.0)],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "ScatterND of rows",
        nodes: vec![node("ScatterND", "snd", &["x", "i", "z"], "y", vec![])],
        init: vec![i64s("i", &[2, 2], &[1, 2, 0, 1])],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0), floats_in("z", &[2, 4], &mut rng, 5.0, 6.0)],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "OneHot of runtime int64 indices, negative ones included",
        nodes: vec![node("OneHot", "oh", &["ids", "depth", "vals"], "y", vec![int_attr("axis", 1)])],
        init: vec![i64s("depth", &[], &[5]), floats("vals", &[2], &[-0.5, 2.0])],
        inputs: vec![In { name: "ids", elem: INT64, shape: vec![2, 3], values: vec![0.0, 4.0, -1.0, 2.0, -5.0, 3.0] }],
        out: (FLOAT, vec![2, 5, 3]),
        opset: 13,
        tol: 0.0,
    });
    let ints = |name: &'static str, lo: i64, hi: i64, rng: &mut ChaCha20Rng, nonzero: bool| In {
        name,
        elem: INT64,
        shape: S.to_vec(),
        values: (0..24)
            .map(|_| loop {
                let v = rng.gen_range(lo..=hi);
                if !nonzero || v != 0 {
                    break v as f64;
                }
            })
            .collect(),
    };
    cases.push(Case {
        what: "Mod of int64 tensors (the divisor's sign)",
        nodes: vec![node("Mod", "m", &["a", "b"], "y", vec![])],
        init: vec![],
        inputs: vec![ints("a", -20, 20, &mut rng, false), ints("b", -7, 7, &mut rng, true)],
        out: (INT64, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "Mod of floats with fmod 1 (the dividend's sign)",
        nodes: vec![node("Mod", "m", &["x", "z"], "y", vec![int_attr("fmod", 1)])],
        init: vec![],
        inputs: vec![floats_in("x", &S, &mut rng, -3.0, 3.0), denominators(&mut rng)],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    for (p, axis) in [(1, 1), (2, -1)] {
        cases.push(Case {
            what: Box::leak(format!("LpNormalization p {p} axis {axis}").into_boxed_str()),
            nodes: vec![node("LpNormalization", "lp", &["x"], "y", vec![int_attr("p", p), int_attr("axis", axis)])],
            init: vec![],
            // The sum of squares enters the square root's table (±8 here).
            inputs: vec![floats_in("x", &S, &mut rng, -1.2, 1.2)],
            out: (FLOAT, S.to_vec()),
            opset: 13,
            tol: 0.02,
        });
    }
    // A causal mask: row i sees columns 0..=i.
    let causal: Vec<i32> = (0..16).map(|i| i32::from(i % 4 <= i / 4)).collect();
    cases.push(Case {
        what: "Softmax of scores masked by Where with -inf (causal attention)",
        nodes: vec![
            node("Where", "mask", &["m", "x", "ninf"], "masked", vec![]),
            node("Softmax", "sm", &["masked"], "y", vec![int_attr("axis", -1)]),
        ],
        init: vec![
            pb::TensorProto {
                name: "m".into(),
                dims: vec![4, 4],
                data_type: BOOL,
                int32_data: causal.clone(),
                ..Default::default()
            },
            floats("ninf", &[], &[f32::NEG_INFINITY]),
        ],
        inputs: vec![floats_in("x", &[2, 4, 4], &mut rng, -3.0, 3.0)],
        out: (FLOAT, vec![2, 4, 4]),
        opset: 13,
        tol: 0.02,
    });
    cases.push(Case {
        what: "Softmax of scores plus an additive mask of float32's lowest value",
        nodes: vec![
            node("Add", "mask", &["x", "add"], "masked", vec![]),
            node("Softmax", "sm", &["masked"], "y", vec![int_attr("axis", -1)]),
        ],
        init: vec![floats(
            "add",
            &[4, 4],
            &causal.iter().map(|&c| if c == 1 { 0.0 } else { f32::MIN }).collect::<Vec<_>>(),
        )],
        inputs: vec![floats_in("x", &[2, 4, 4], &mut rng, -3.0, 3.0)],
        out: (FLOAT, vec![2, 4, 4]),
        opset: 13,
        tol: 0.02,
    });
    let table: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    cases.push(Case {
        what: "Gather of embeddings by int64 token ids, negative ones included",
        nodes: vec![node("Gather", "embed", &["e", "ids"], "y", vec![])],
        init: vec![floats("e", &[10, 4], &table)],
        inputs: vec![In { name: "ids", elem: INT64, shape: vec![2, 3], values: vec![0.0, 9.0, 3.0, -1.0, -10.0, 3.0] }],
        out: (FLOAT, vec![2, 3, 4]),
        opset: 13,
        tol: 1e-6 + 0.5 / 256.0,
    });
    cases.push(Case {
        what: "Gather on axis 1 by runtime indices",
        nodes: vec![node("Gather", "cols", &["e", "ids"], "y", vec![int_attr("axis", 1)])],
        init: vec![floats("e", &[4, 10], &table)],
        inputs: vec![In { name: "ids", elem: INT64, shape: vec![5], values: vec![7.0, 0.0, -3.0, 7.0, 2.0] }],
        out: (FLOAT, vec![4, 5]),
        opset: 13,
        tol: 1e-6 + 0.5 / 256.0,
    });
    cases.push(Case {
        what: "a bool mask input selects, and its negation",
        nodes: vec![node("Not", "n", &["m"], "nm", vec![]), node("Where", "w", &["nm", "x", "fill"], "y", vec![])],
        init: vec![floats("fill", &[], &[-1.0])],
        inputs: vec![
            floats_in("x", &S, &mut rng, -3.0, 3.0),
            In { name: "m", elem: BOOL, shape: S.to_vec(), values: (0..24).map(|i| f64::from(i % 3 == 0)).collect() },
        ],
        out: (FLOAT, S.to_vec()),
        opset: 13,
        tol: 0.0,
    });
    cases.push(Case {
        what: "Cast of a runtime tensor to int64 and back, and to bool",
        nodes: vec![
            node("Cast", "to_int", &["x"], "i", vec![int_attr("to", INT64 as i64)]),
            node("Cast", "to_float", &["i"], "f", vec![int_attr("to", FLOAT as i64)]),
            node("Cast", "to_bool", &["x"], "b", vec![int_attr("to", BOOL as i64)]),
            node("Cast", "b_float", &["b"], "bf", vec![int_attr("to", FLOAT as i64)]),
            node("Add", "y", &["f", "bf"], "y", vec![]),
        ],
        init: vec![],
        inputs: vec![In {
            name: "x",
            elem: FLOAT,
            shape: vec![8],
            values: vec![-2.5, -1.0, -0.25, 0.0, 0.25, 1.0, 1.75, 3.5],
        }],
        out: (FLOAT, vec![8]),
        opset: 13,
        tol: 0.0,
    });
    cases
}

fn onnx_of(c: &Case) -> Vec<u8> {
    let inputs = c.inputs.iter().map(|i| typed_info(i.name, i.elem, &i.shape)).collect();
    model_of(c.nodes.clone(), c.init.clone(), inputs, vec![typed_info("y", c.out.0, &c.out.1)], c.opset)
}

/// The inputs as the circuit sees them: quantized and back.
fn quantized(program: &Program, values: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let s = f64::from(1u32 << program.scale());
    program.quantize_inputs(values).unwrap().into_iter().map(|q| q.iter().map(|&v| v as f64 / s).collect()).collect()
}

/// The largest difference between two outputs.
fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// MockProver accepts the witness with its own instances.
fn assert_satisfied(model: &CompiledModel, witness: Witness) {
    let inst = instances(&model.program, &witness);
    let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
    MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
}

/// Compiles a case, runs it, checks its output against tract's on the same
/// quantized inputs within the case's tolerance and the witness with
/// MockProver; returns the compiled model.
fn check_case(c: &Case, s: &Settings) -> CompiledModel {
    let what = c.what;
    let onnx = onnx_of(c);
    let model = CompiledModel::compile(&onnx, s).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let values: Vec<Vec<f64>> = c.inputs.iter().map(|i| i.values.clone()).collect();
    let witness = model.run(&values).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let shapes: Vec<Vec<usize>> = c.inputs.iter().map(|i| i.shape.iter().map(|&d| d as usize).collect()).collect();
    let float = FloatModel::load(&onnx, &shapes)
        .and_then(|m| m.run(&quantized(&model.program, &values)))
        .unwrap_or_else(|e| panic!("{what}: tract: {e:#}"));
    assert_eq!(ours.len(), float[0].len(), "{what}");
    let worst = max_diff(&ours, &float[0]);
    assert!(worst <= c.tol, "{what}: off by {worst} (ours {ours:?}, tract {:?})", float[0]);
    assert_satisfied(&model, witness);
    model
}

#[test]
fn runtime_ops_track_tract_and_satisfy_the_circuit() {
    let s = settings();
    for c in cases() {
        check_case(&c, &s);
    }
}

/// An embedding wider than one table holds (lookup_bits 7: 64 keys a
/// side) is split over several tables, and still equals tract's.
#[test]
fn wide_embeddings_split_over_tables() {
    let s = Settings {
        input_scale: 4,
        param_scale: 4,
        lookup_bits: 7,
        lanes: 8,
        public_input: false,
        ..Settings::default()
    };
    let table: Vec<f32> = (0..160).map(|i| ((i % 17) as f32 - 8.0) / 4.0).collect();
    let c = Case {
        what: "wide",
        nodes: vec![node("Gather", "embed", &["e", "ids"], "y", vec![])],
        init: vec![floats("e", &[10, 16], &table)],
        inputs: vec![In { name: "ids", elem: INT64, shape: vec![4], values: vec![9.0, 0.0, -4.0, 5.0] }],
        out: (FLOAT, vec![4, 16]),
        opset: 13,
        tol: 0.0,
    };
    let onnx = onnx_of(&c);
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    assert_eq!(model.program.tables.len(), 3, "16 columns of 10 rows, 6 columns to a table of ±64 keys");
    let values = vec![c.inputs[0].values.clone()];
    let witness = model.run(&values).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let float = FloatModel::load(&onnx, &[vec![4]]).unwrap().run(&values).unwrap();
    assert_eq!(ours, float[0]);
    assert_satisfied(&model, witness);
}

#[test]
fn bad_typed_inputs_and_indices_are_refused() {
    let s = settings();
    let cases = cases();
    let embed = cases.iter().find(|c| c.what.starts_with("Gather of embeddings")).unwrap();
    let model = CompiledModel::compile(&onnx_of(embed), &s).unwrap();
    let err = model.run(&[vec![0.0, 1.5, 2.0, 0.0, 0.0, 0.0]]).unwrap_err();
    assert!(format!("{err:#}").contains("holds integers"), "{err:#}");
    let err = model.run(&[vec![0.0, 10.0, 2.0, 0.0, 0.0, 0.0]]).unwrap_err();
    assert!(format!("{err:#}").contains("out of range") && format!("{err:#}").contains("embed"), "{err:#}");
    let mask = cases.iter().find(|c| c.what.starts_with("a bool mask")).unwrap();
    let model = CompiledModel::compile(&onnx_of(mask), &s).unwrap();
    let mut values: Vec<Vec<f64>> = mask.inputs.iter().map(|i| i.values.clone()).collect();
    values[1][3] = 2.0;
    let err = model.run(&values).unwrap_err();
    assert!(format!("{err:#}").contains("booleans"), "{err:#}");
    let div = cases.iter().find(|c| c.what.starts_with("Div by a runtime")).unwrap();
    let model = CompiledModel::compile(&onnx_of(div), &s).unwrap();
    let mut values: Vec<Vec<f64>> = div.inputs.iter().map(|i| i.values.clone()).collect();
    // A divisor that rounds to zero gives 0 (its sign is 0); one beyond
    // 2^B quanta is refused, naming the node.
    values[1][5] = 0.0;
    let w = model.run(&values).unwrap();
    assert_eq!(model.program.output_values(&w)[0][5], 0);
    values[1][5] = 1000.0;
    let err = model.run(&values).unwrap_err();
    assert!(format!("{err:#}").contains("outside") && format!("{err:#}").contains("`d`"), "{err:#}");
}

/// Every advice cell of a model that embeds token ids, compares, selects,
/// divides by a runtime tensor and normalizes is constrained: changing any
/// one is caught by MockProver.
#[test]
fn every_advice_cell_of_the_runtime_ops_is_constrained() {
    let s = Settings { input_scale: 5, param_scale: 5, lookup_bits: 8, ..Settings::default() };
    let c = Case {
        what: "mixed",
        nodes: vec![
            node("Gather", "embed", &["e", "ids"], "g", vec![]),
            node("Less", "l", &["g", "x"], "c", vec![]),
            node("Where", "w", &["c", "g", "x"], "m", vec![]),
            node("Div", "d", &["m", "den"], "q", vec![]),
            node("LayerNormalization", "y", &["q", "gamma"], "y", vec![]),
        ],
        init: vec![
            floats("e", &[3, 2], &[0.5, -1.0, 1.5, 0.25, -0.75, 2.0]),
            floats("den", &[2], &[1.5, -2.0]),
            floats("gamma", &[2], &[1.0, 0.5]),
        ],
        inputs: vec![
            In { name: "ids", elem: INT64, shape: vec![2], values: vec![2.0, -3.0] },
            In { name: "x", elem: FLOAT, shape: vec![2, 2], values: vec![0.25, -0.5, 1.0, 1.75] },
        ],
        out: (FLOAT, vec![2, 2]),
        opset: 17,
        tol: 0.0,
    };
    let model = CompiledModel::compile(&onnx_of(&c), &s).unwrap();
    let values: Vec<Vec<f64>> = c.inputs.iter().map(|i| i.values.clone()).collect();
    let witness = Arc::new(model.run(&values).unwrap());
    assert_every_cell_constrained(&model, witness);
}

/// A MatMul followed by its bias Add and a per-feature scale (by Mul and by
/// Div) becomes one dense layer: no rows for the Add, Mul or Div, and the
/// outputs still track tract's. A Conv's per-channel bias folds the same
/// way; a constant that varies along another axis does not fold.
#[test]
fn bias_and_scale_fold_into_the_layer_before() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(37);
    let w: Vec<f32> = (0..12).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let cases = [
        (
            vec![
                node("MatMul", "mm", &["x", "w"], "h", vec![]),
                node("Add", "bias", &["b", "h"], "h1", vec![]),
                node("Mul", "scale", &["h1", "g"], "h2", vec![]),
                node("Div", "y", &["h2", "d"], "y", vec![]),
            ],
            vec![
                floats("w", &[4, 3], &w),
                floats("b", &[3], &[0.5, -0.25, 1.0]),
                floats("g", &[1, 3], &[2.0, -1.0, 0.5]),
                floats("d", &[], &[4.0]),
            ],
            true,
        ),
        (
            vec![node("MatMul", "mm", &["x", "w"], "h", vec![]), node("Add", "y", &["h", "rows"], "y", vec![])],
            vec![floats("w", &[4, 3], &w), floats("rows", &[2, 3, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
            false,
        ),
    ];
    for (nodes, init, folds) in cases {
        let c = Case {
            what: "fold",
            nodes,
            init,
            inputs: vec![floats_in("x", &[2, 3, 4], &mut rng, -2.0, 2.0)],
            out: (FLOAT, vec![2, 3, 3]),
            opset: 13,
            tol: 0.03,
        };
        let onnx = onnx_of(&c);
        let model = CompiledModel::compile(&onnx, &s).unwrap();
        let kinds: Vec<String> = model.stats().rows_by_op.into_keys().collect();
        if folds {
            assert_eq!(kinds, ["Dense", "Input"], "every constant folded into the layer");
        } else {
            assert!(kinds.contains(&"Add".to_string()), "{kinds:?}");
        }
        let values = vec![c.inputs[0].values.clone()];
        let witness = model.run(&values).unwrap();
        let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
        let float =
            FloatModel::load(&onnx, &[vec![2, 3, 4]]).unwrap().run(&quantized(&model.program, &values)).unwrap();
        let worst = max_diff(&ours, &float[0]);
        assert!(worst <= c.tol, "off by {worst}");
    }
}

/// Chains of element-wise ops over one tensor that hold a table function —
/// Gelu as PyTorch exports it before opset 20, SiLU, Mish spelled out —
/// become one table: one lookup row per element and no rows for the ops in
/// between, within a rounding of tract.
#[test]
fn elementwise_chains_fuse_into_one_table() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let chains: Vec<(&str, Vec<pb::NodeProto>)> = vec![
        (
            "Gelu through Erf",
            vec![
                node("Div", "d", &["x", "sqrt2"], "t1", vec![]),
                node("Erf", "erf", &["t1"], "t2", vec![]),
                node("Add", "a", &["t2", "one"], "t3", vec![]),
                node("Mul", "m", &["x", "t3"], "t4", vec![]),
                node("Mul", "y", &["t4", "half"], "y", vec![]),
            ],
        ),
        ("SiLU", vec![node("Sigmoid", "s", &["x"], "t", vec![]), node("Mul", "y", &["x", "t"], "y", vec![])]),
        (
            "Mish",
            vec![
                node("Softplus", "sp", &["x"], "t1", vec![]),
                node("Tanh", "th", &["t1"], "t2", vec![]),
                node("Mul", "y", &["t2", "x"], "y", vec![]),
            ],
        ),
    ];
    for (what, nodes) in chains {
        let c = Case {
            what,
            nodes,
            init: vec![
                floats("sqrt2", &[], &[std::f32::consts::SQRT_2]),
                floats("one", &[], &[1.0]),
                floats("half", &[], &[0.5]),
            ],
            inputs: vec![floats_in("x", &S, &mut rng, -4.0, 4.0)],
            out: (FLOAT, S.to_vec()),
            opset: 13,
            tol: 1.0 / 256.0,
        };
        let model = check_case(&c, &s);
        let rows = model.stats().rows_by_op;
        assert_eq!(rows.keys().collect::<Vec<_>>(), ["ElementwiseFn", "Input"], "{what}: {rows:?}");
        assert_eq!(rows["ElementwiseFn"], 24, "{what}: one row per element");
    }
}

/// A variance's divisor n·2^s above the table (here 12·2^8 against 2^9) is
/// divided out in factors, so the circuit's remainders stay in range and
/// MockProver accepts; a divisor with a prime factor above 2^B is refused
/// at compile time by name.
#[test]
fn divisors_above_the_table_are_split_or_refused() {
    let s = Settings {
        input_scale: 8,
        param_scale: 8,
        lookup_bits: 9,
        lanes: 8,
        public_input: false,
        ..Settings::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(43);
    let c = Case {
        what: "LayerNormalization over 12 values",
        nodes: vec![node("LayerNormalization", "ln", &["x", "g"], "y", vec![int_attr("axis", 1)])],
        init: vec![floats("g", &[3, 4], &[0.5; 12])],
        inputs: vec![floats_in("x", &S, &mut rng, -0.9, 0.9)],
        out: (FLOAT, S.to_vec()),
        opset: 17,
        tol: 0.05,
    };
    let onnx = onnx_of(&c);
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    let values = vec![c.inputs[0].values.clone()];
    let witness = model.run(&values).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let float = FloatModel::load(&onnx, &[vec![2, 3, 4]]).unwrap().run(&quantized(&model.program, &values)).unwrap();
    let worst = max_diff(&ours, &float[0]);
    assert!(worst <= c.tol, "off by {worst}");
    assert_satisfied(&model, witness);

    let prime = Case {
        what: "a mean over 521 values",
        nodes: vec![node("ReduceMean", "mean521", &["x"], "y", vec![int_attr("keepdims", 0)])],
        init: vec![],
        inputs: vec![floats_in("x", &[521], &mut rng, -0.5, 0.5)],
        out: (FLOAT, vec![]),
        opset: 13,
        tol: 0.0,
    };
    let err = CompiledModel::compile(&onnx_of(&prime), &s).unwrap_err();
    assert!(format!("{err:#}").contains("mean521") && format!("{err:#}").contains("lookup_bits"), "{err:#}");
}

/// Fixed weights shared by the uneven-pads case and the output_shape test.
struct ConvTransposeWeights;

impl ConvTransposeWeights {
    fn get() -> Vec<f32> {
        (0..72).map(|i| ((i * 37 % 19) as f32 - 9.0) / 20.0).collect()
    }
}

/// ConvTranspose to an `output_shape` (which tract 0.23 cannot run) equals
/// it with the pads the shape implies (tested against tract above): 10 × 9
/// from 5 × 5 at stride 2 pads [1, 1, 0, 1].
#[test]
fn conv_transpose_output_shape_implies_its_pads() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(59);
    let x = floats_in("x", &[1, 4, 5, 5], &mut rng, -2.0, 2.0);
    let model = |attrs: Vec<pb::AttributeProto>| {
        let c = Case {
            what: "output_shape",
            nodes: vec![node("ConvTranspose", "up", &["x", "w"], "y", attrs)],
            init: vec![floats("w", &[4, 2, 3, 3], &ConvTransposeWeights::get())],
            inputs: vec![In { name: "x", elem: FLOAT, shape: x.shape.clone(), values: x.values.clone() }],
            out: (FLOAT, vec![1, 2, 10, 9]),
            opset: 13,
            tol: 0.0,
        };
        let model = CompiledModel::compile(&onnx_of(&c), &s).unwrap();
        let witness = model.run(std::slice::from_ref(&x.values)).unwrap();
        model.program.output_values(&witness).remove(0)
    };
    let by_shape = model(vec![ints_attr("strides", &[2, 2]), ints_attr("output_shape", &[10, 9])]);
    let by_pads = model(vec![ints_attr("strides", &[2, 2]), ints_attr("pads", &[1, 1, 0, 1])]);
    assert_eq!(by_shape.len(), 2 * 10 * 9);
    assert_eq!(by_shape, by_pads);
}

/// Depthwise and grouped Conv, ConvTranspose, and Conv, ConvTranspose and pools over 1-D inputs
/// (`[N, C, L]`), against tract, with MockProver.
#[test]
fn grouped_and_one_dimensional_convolutions_track_tract() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(47);
    let mut weights = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-0.5f32..0.5)).collect() };
    let cases = vec![
        Case {
            what: "depthwise Conv (group = channels)",
            nodes: vec![node(
                "Conv",
                "dw",
                &["x", "w", "b"],
                "y",
                vec![int_attr("group", 4), ints_attr("pads", &[1, 1, 1, 1])],
            )],
            init: vec![floats("w", &[4, 1, 3, 3], &weights(36)), floats("b", &[4], &[0.1, -0.2, 0.0, 0.3])],
            inputs: vec![],
            out: (FLOAT, vec![1, 4, 5, 5]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "grouped Conv (2 groups, 6 outputs)",
            nodes: vec![node("Conv", "g2", &["x", "w"], "y", vec![int_attr("group", 2)])],
            init: vec![floats("w", &[6, 2, 2, 2], &weights(48))],
            inputs: vec![],
            out: (FLOAT, vec![1, 6, 4, 4]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "1-D Conv with stride, padding and dilation",
            nodes: vec![node(
                "Conv",
                "c1d",
                &["x", "w", "b"],
                "y",
                vec![ints_attr("strides", &[2]), ints_attr("pads", &[2, 1]), ints_attr("dilations", &[2])],
            )],
            init: vec![floats("w", &[3, 4, 3], &weights(36)), floats("b", &[3], &[0.0, 0.5, -0.5])],
            inputs: vec![],
            out: (FLOAT, vec![1, 3, 11]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "ConvTranspose, stride 2, pads and output_padding",
            nodes: vec![node(
                "ConvTranspose",
                "up",
                &["x", "w", "b"],
                "y",
                vec![
                    ints_attr("strides", &[2, 2]),
                    ints_attr("pads", &[1, 1, 1, 1]),
                    ints_attr("output_padding", &[1, 1]),
                ],
            )],
            init: vec![floats("w", &[4, 3, 3, 3], &weights(108)), floats("b", &[3], &[0.1, 0.0, -0.1])],
            inputs: vec![],
            out: (FLOAT, vec![1, 3, 10, 10]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "ConvTranspose in 2 groups",
            nodes: vec![node("ConvTranspose", "up", &["x", "w"], "y", vec![int_attr("group", 2)])],
            init: vec![floats("w", &[4, 1, 2, 2], &weights(16))],
            inputs: vec![],
            out: (FLOAT, vec![1, 2, 6, 6]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "ConvTranspose with uneven pads",
            nodes: vec![node(
                "ConvTranspose",
                "up",
                &["x", "w"],
                "y",
                vec![ints_attr("strides", &[2, 2]), ints_attr("pads", &[1, 1, 0, 1])],
            )],
            init: vec![floats("w", &[4, 2, 3, 3], &ConvTransposeWeights::get())],
            inputs: vec![],
            out: (FLOAT, vec![1, 2, 10, 9]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "1-D ConvTranspose with stride, dilation and pads",
            nodes: vec![node(
                "ConvTranspose",
                "up1d",
                &["x", "w"],
                "y",
                vec![ints_attr("strides", &[3]), ints_attr("dilations", &[2]), ints_attr("pads", &[2, 0])],
            )],
            init: vec![floats("w", &[4, 2, 3], &weights(24))],
            inputs: vec![],
            out: (FLOAT, vec![1, 2, 69]),
            opset: 13,
            tol: 0.03,
        },
        Case {
            what: "1-D MaxPool",
            nodes: vec![node(
                "MaxPool",
                "mp",
                &["x"],
                "y",
                vec![ints_attr("kernel_shape", &[3]), ints_attr("strides", &[2])],
            )],
            init: vec![],
            inputs: vec![],
            out: (FLOAT, vec![1, 4, 11]),
            opset: 13,
            tol: 0.0,
        },
        Case {
            what: "1-D GlobalAveragePool",
            nodes: vec![node("GlobalAveragePool", "gap", &["x"], "y", vec![])],
            init: vec![],
            inputs: vec![],
            out: (FLOAT, vec![1, 4, 1]),
            opset: 13,
            tol: 0.01,
        },
    ];
    for mut c in cases {
        let what = c.what;
        let in_shape: Vec<i64> = if what.starts_with("1-D") { vec![1, 4, 23] } else { vec![1, 4, 5, 5] };
        c.inputs = vec![floats_in("x", &in_shape, &mut rng, -2.0, 2.0)];
        check_case(&c, &s);
    }
}

/// LSTM, GRU (both reset orders) and RNN, forward and reverse, unrolled:
/// against tract, with MockProver. tract 0.23 computes reverse directions
/// wrongly (the ONNX reference evaluator agrees with us), so a reverse net
/// is checked against tract's forward net over the reversed sequence,
/// reversed back; a bidirectional net must equal its two directions run
/// apart.
#[test]
fn recurrent_nets_track_tract() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(53);
    let (seq, feat, hidden) = (5usize, 3usize, 4usize);
    let mut weights = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-0.6f32..0.6)).collect() };
    let x: Vec<f64> = (0..seq * feat).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.5).collect();
    let reversed = |v: &[f64], width: usize| -> Vec<f64> { v.chunks(width).rev().flatten().copied().collect() };
    for (op, gates, lbr) in [("LSTM", 4, 0), ("GRU", 3, 0), ("GRU", 3, 1), ("RNN", 1, 0)] {
        let (w, r, b) =
            (weights(2 * gates * hidden * feat), weights(2 * gates * hidden * hidden), weights(4 * gates * hidden));
        // Direction d's parameters, or both directions'.
        let params = |dirs: &[usize]| {
            let part = |v: &[f32], d: usize| v[d * v.len() / 2..(d + 1) * v.len() / 2].to_vec();
            let cat = |v: &[f32]| dirs.iter().flat_map(|&d| part(v, d)).collect::<Vec<f32>>();
            let n = dirs.len() as i64;
            let (g, h, f) = (gates as i64, hidden as i64, feat as i64);
            vec![
                floats("w", &[n, g * h, f], &cat(&w)),
                floats("r", &[n, g * h, h], &cat(&r)),
                floats("b", &[n, 2 * g * h], &cat(&b)),
            ]
        };
        let model_of_dir = |direction: &str, dirs: &[usize]| {
            let attrs = vec![
                int_attr("hidden_size", hidden as i64),
                common::string_attr("direction", direction),
                int_attr("linear_before_reset", lbr),
            ];
            let attrs = if op == "GRU" { attrs } else { attrs[..2].to_vec() };
            Case {
                what: "recurrent",
                nodes: vec![node(op, "rec", &["x", "w", "r", "b"], "y", attrs)],
                init: params(dirs),
                inputs: vec![In { name: "x", elem: FLOAT, shape: vec![seq as i64, 1, feat as i64], values: x.clone() }],
                out: (FLOAT, vec![seq as i64, dirs.len() as i64, 1, hidden as i64]),
                opset: 14,
                tol: 0.03,
            }
        };
        let run = |c: &Case| -> (Vec<f64>, Vec<f64>) {
            let onnx = onnx_of(c);
            let model = CompiledModel::compile(&onnx, &s).unwrap_or_else(|e| panic!("{op}: {e:#}"));
            let witness = model.run(std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{op}: {e:#}"));
            let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
            assert_satisfied(&model, witness);
            (ours, quantized(&model.program, std::slice::from_ref(&x)).remove(0))
        };
        let tract = |c: &Case, input: Vec<f64>| -> Vec<f64> {
            FloatModel::load(&onnx_of(c), &[vec![seq, 1, feat]]).and_then(|m| m.run(&[input])).unwrap().remove(0)
        };
        let close = |what: &str, ours: &[f64], want: &[f64], tol: f64| {
            let worst = max_diff(ours, want);
            assert!(worst <= tol, "{op} {what}: off by {worst}\nours  {ours:?}\nwant  {want:?}");
        };
        let forward = model_of_dir("forward", &[0]);
        let (fwd, q) = run(&forward);
        close("forward", &fwd, &tract(&forward, q.clone()), 0.03);
        let reverse = model_of_dir("reverse", &[1]);
        let (rev, q) = run(&reverse);
        let backward = tract(&model_of_dir("forward", &[1]), reversed(&q, feat));
        close("reverse", &rev, &reversed(&backward, hidden), 0.03);
        let (both, _) = run(&model_of_dir("bidirectional", &[0, 1]));
        let apart: Vec<f64> =
            fwd.chunks(hidden).zip(rev.chunks(hidden)).flat_map(|(a, b)| a.iter().chain(b)).copied().collect();
        close("bidirectional", &both, &apart, 0.0);
    }
}

/// An ellipsis stands for the leading axes (tract 0.23 mis-sizes this
/// output, so the reference is the same contraction spelled out, which is
/// checked against tract above).
#[test]
fn einsum_ellipsis_stands_for_the_leading_axes() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(61);
    let x = floats_in("x", &S, &mut rng, -2.0, 2.0);
    let run = |eq: &str| {
        let c = Case {
            what: "ellipsis",
            nodes: vec![node("Einsum", "e", &["x", "v"], "y", vec![common::string_attr("equation", eq)])],
            init: vec![floats("v", &[4], &[0.5, -1.0, 0.25, 2.0])],
            inputs: vec![In { name: "x", elem: FLOAT, shape: S.to_vec(), values: x.values.clone() }],
            out: (FLOAT, vec![2, 3]),
            opset: 13,
            tol: 0.0,
        };
        let model = CompiledModel::compile(&onnx_of(&c), &s).unwrap();
        let witness = model.run(std::slice::from_ref(&x.values)).unwrap();
        model.program.output_values(&witness).remove(0)
    };
    let spelled = run("bij,j->bi");
    assert_eq!(spelled.len(), 6);
    assert_eq!(run("...j,j->..."), spelled);
    assert_eq!(run("...j,j"), spelled);
}

/// A model with no runtime input (every value folds to a constant) and a
/// model with a constant among its outputs compile, run and prove; the
/// constants are the circuit's.
#[test]
fn models_without_runtime_inputs_prove_their_constants() {
    let s = settings();
    let onnx = model_of(
        vec![node("Tanh", "t", &["c"], "t1", vec![]), node("Add", "y", &["t1", "c"], "y", vec![])],
        vec![floats("c", &[3], &[0.5, -1.0, 2.0])],
        vec![],
        vec![typed_info("y", FLOAT, &[3])],
        13,
    );
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    assert!(model.program.inputs.is_empty());
    let witness = model.run(&[]).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let float = FloatModel::load(&onnx, &[]).unwrap().run(&[]).unwrap();
    let worst = max_diff(&ours, &float[0]);
    assert!(worst <= 1.0 / 256.0, "off by {worst}");
    let inst = instances(&model.program, &witness);
    let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
    MockProver::run(model.k, &circuit, vec![inst.clone()]).unwrap().assert_satisfied_par();
    // A changed constant output is refused.
    let mut bad = inst;
    bad[1] += halo2_proofs::halo2curves::bn256::Fr::one();
    assert!(MockProver::run(model.k, &circuit, vec![bad]).unwrap().verify_par().is_err());
}

/// Every advice cell of a model that runs a GRU, takes a TopK, an ArgMax
/// and a LogSoftmax, a Mod, an Einsum of two runtime tensors, a linear
/// Resize, a OneHot and a fused element-wise chain is constrained: changing
/// any one is caught by MockProver.
#[test]
fn every_advice_cell_of_the_sequence_and_selection_ops_is_constrained() {
    let s = Settings { input_scale: 5, param_scale: 5, lookup_bits: 8, ..Settings::default() };
    let gru = |dims: &[i64], seed: u64| -> Vec<f32> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..dims.iter().product::<i64>()).map(|_| rng.gen_range(-0.5f32..0.5)).collect()
    };
    let mut rec = node("GRU", "gru", &["x", "w", "r"], "seq", vec![int_attr("hidden_size", 2)]);
    rec.output = vec!["seq".into(), "h".into()];
    let mut top = node("TopK", "top", &["flat", "k"], "tv", vec![]);
    top.output = vec!["tv".into(), "ti".into()];
    let c = Case {
        what: "mixed",
        nodes: vec![
            rec,
            node("Reshape", "flat_r", &["seq", "shape"], "flat", vec![]),
            top,
            node("ArgMax", "am", &["flat"], "am", vec![int_attr("axis", 1)]),
            node("Cast", "amf", &["am"], "amf", vec![int_attr("to", FLOAT as i64)]),
            node("LogSoftmax", "ls", &["flat"], "ls", vec![]),
            node("Mod", "mod", &["ls", "half"], "md", vec![int_attr("fmod", 1)]),
            node("Einsum", "ein", &["md", "md"], "gram", vec![common::string_attr("equation", "ij,kj->ik")]),
            node("Resize", "rs", &["gram", "", "sc"], "big", vec![common::string_attr("mode", "linear")]),
            node("Sigmoid", "sg", &["big"], "sgo", vec![]),
            node("Mul", "silu", &["big", "sgo"], "silu", vec![]),
            node("OneHot", "oh", &["ti", "depth", "vals"], "hot", vec![]),
            node("ReduceSum", "hs", &["hot", "axis1"], "hsum", vec![int_attr("keepdims", 0)]),
            node("Concat", "y", &["tv", "amf", "hsum"], "y", vec![int_attr("axis", 1)]),
            node("Identity", "keep", &["silu"], "z", vec![]),
        ],
        init: vec![
            floats("w", &[1, 6, 2], &gru(&[1, 6, 2], 1)),
            floats("r", &[1, 6, 2], &gru(&[1, 6, 2], 2)),
            int64s_proto("shape", &[2], &[1, 6]),
            int64s_proto("k", &[1], &[2]),
            floats("half", &[], &[0.75]),
            floats("sc", &[2], &[1.0, 2.0]),
            int64s_proto("depth", &[], &[6]),
            int64s_proto("axis1", &[1], &[1]),
            floats("vals", &[2], &[0.0, 1.0]),
        ],
        inputs: vec![In {
            name: "x",
            elem: FLOAT,
            shape: vec![3, 1, 2],
            values: vec![0.5, -0.25, 1.0, 0.75, -0.5, 0.25],
        }],
        out: (FLOAT, vec![1, 4]),
        opset: 13,
        tol: 0.0,
    };
    let onnx = model_of(
        c.nodes.clone(),
        c.init.clone(),
        vec![typed_info("x", FLOAT, &[3, 1, 2])],
        vec![typed_info("y", FLOAT, &[1, 9]), typed_info("z", FLOAT, &[1, 2])],
        13,
    );
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    let witness = Arc::new(model.run(&[c.inputs[0].values.clone()]).unwrap());
    assert_every_cell_constrained(&model, witness);
}

fn int64s_proto(name: &str, dims: &[i64], v: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// Integer Div (truncating), GatherND by runtime tuples and a normalization
/// of a group with a spread of a few quanta (its fine table): every advice
/// cell is constrained, and the outputs equal tract's.
#[test]
fn every_advice_cell_of_integer_div_tuples_and_fine_norms_is_constrained() {
    let s = Settings { input_scale: 5, param_scale: 5, lookup_bits: 10, ..Settings::default() };
    let c = Case {
        what: "int div, gather nd, norm",
        nodes: vec![
            node("Div", "q", &["a", "b"], "q", vec![]),
            node("Cast", "qf", &["q"], "qf", vec![int_attr("to", 1)]),
            node("GatherND", "g", &["x", "t"], "g", vec![]),
            node("LayerNormalization", "n", &["x", "gamma"], "n", vec![]),
            node("Reshape", "nf", &["n", "six"], "nf", vec![]),
            node("Concat", "y", &["qf", "g", "nf"], "y", vec![int_attr("axis", 0)]),
        ],
        init: vec![floats("gamma", &[3], &[1.0, 0.5, -1.0]), common::int64s("six", &[1], &[6])],
        inputs: vec![
            In { name: "a", elem: INT64, shape: vec![4], values: vec![7.0, -7.0, 9.0, -2.0] },
            In { name: "b", elem: INT64, shape: vec![4], values: vec![2.0, 3.0, -4.0, -3.0] },
            In { name: "x", elem: FLOAT, shape: vec![2, 3], values: vec![0.5, 0.59375, 0.46875, 1.0, -1.5, 0.25] },
            // tract's GatherND refuses negative entries (the suite covers them).
            In { name: "t", elem: INT64, shape: vec![2, 2], values: vec![1.0, 2.0, 0.0, 1.0] },
        ],
        out: (FLOAT, vec![12]),
        opset: 17,
        tol: 0.0,
    };
    let onnx = onnx_of(&c);
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    let values: Vec<Vec<f64>> = c.inputs.iter().map(|i| i.values.clone()).collect();
    let witness = model.run(&values).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let shapes: Vec<Vec<usize>> = c.inputs.iter().map(|i| i.shape.iter().map(|&d| d as usize).collect()).collect();
    let float = FloatModel::load(&onnx, &shapes).unwrap().run(&values).unwrap();
    // Integer Div truncates (3, −2, −2, 0) and GatherND picks exactly.
    assert_eq!(ours[..6], float[0][..6], "{ours:?} vs {:?}", float[0]);
    // The first row's spread is two quanta (1/32 each): still within 0.1.
    assert!(max_diff(&ours[6..], &float[0][6..]) < 0.1, "{ours:?} vs {:?}", float[0]);
    assert_every_cell_constrained(&model, Arc::new(witness));
    // A tuple entry outside its axis is refused, naming the node.
    let mut bad = values.clone();
    bad[3][1] = 3.0;
    let err = model.run(&bad).unwrap_err();
    assert!(format!("{err:#}").contains("out of range") && format!("{err:#}").contains("g."), "{err:#}");
}
