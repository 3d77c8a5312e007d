//! Indexing and shape ops with constant parameters — Slice, Gather by
//! constant indices, Pad, Expand, Tile — and the ops that fold when their
//! input's shape is static (Shape, Size, Cast, ConstantOfShape), with the
//! variadic Sum, Mean, Max and Min, and Softmax on any axis: small ONNX models against tract's float
//! inference, with MockProver, and the rearranged values checked exactly
//! against the quantized input.

mod common;

use std::sync::Arc;

use halo2_proofs::dev::MockProver;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tract_onnx::pb;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};

use common::{
    assert_every_cell_constrained, floats, graph_model, int64s, int_attr, ints_attr, model_of, node, string_attr,
    typed_info, value_info,
};

fn settings() -> Settings {
    Settings { input_scale: 8, param_scale: 8, lookup_bits: 12, lanes: 8, public_input: false, ..Settings::default() }
}

const SHAPE: [i64; 3] = [2, 3, 4];

struct Case {
    what: &'static str,
    nodes: Vec<pb::NodeProto>,
    init: Vec<pb::TensorProto>,
    out: Vec<i64>,
    opset: i64,
    /// Whether every output is an input value or a constant, exactly.
    exact: bool,
}

fn one(what: &'static str, n: pb::NodeProto, init: Vec<pb::TensorProto>, out: &[i64], opset: i64) -> Case {
    Case { what, nodes: vec![n], init, out: out.to_vec(), opset, exact: true }
}

fn cases() -> Vec<Case> {
    vec![
        one(
            "Slice with steps",
            node("Slice", "s", &["x", "st", "en", "ax", "sp"], "y", vec![]),
            vec![
                int64s("st", &[3], &[0, 2, -1]),
                int64s("en", &[3], &[2, -10, 0]),
                int64s("ax", &[3], &[0, 1, 2]),
                int64s("sp", &[3], &[1, -2, -2]),
            ],
            &[2, 2, 2],
            13,
        ),
        one(
            "Slice, defaults",
            node("Slice", "s", &["x", "st", "en"], "y", vec![]),
            vec![int64s("st", &[1], &[1]), int64s("en", &[1], &[i64::MAX])],
            &[1, 3, 4],
            13,
        ),
        one(
            "Gather, 2-D indices on axis 1",
            node("Gather", "g", &["x", "i"], "y", vec![int_attr("axis", 1)]),
            vec![int64s("i", &[2, 2], &[2, -3, 1, 1])],
            &[2, 2, 2, 4],
            13,
        ),
        one(
            "Gather, a scalar index",
            node("Gather", "g", &["x", "i"], "y", vec![int_attr("axis", -1)]),
            vec![int64s("i", &[], &[3])],
            &[2, 3],
            13,
        ),
        one(
            "Pad, constant 0.5",
            node("Pad", "p", &["x", "pads", "v"], "y", vec![]),
            vec![int64s("pads", &[6], &[0, 1, 2, 1, 0, 1]), floats("v", &[], &[0.5])],
            &[3, 4, 7],
            13,
        ),
        one(
            "Pad, edge",
            node("Pad", "p", &["x", "pads"], "y", vec![string_attr("mode", "edge")]),
            vec![int64s("pads", &[6], &[0, 2, 1, 0, 1, 3])],
            &[2, 6, 8],
            13,
        ),
        one(
            "Pad, reflect",
            node("Pad", "p", &["x", "pads"], "y", vec![string_attr("mode", "reflect")]),
            vec![int64s("pads", &[6], &[0, 2, 3, 0, 1, 2])],
            &[2, 6, 9],
            13,
        ),
        one(
            "Expand",
            node("Expand", "e", &["x", "shape"], "y", vec![]),
            vec![int64s("shape", &[4], &[2, 1, 1, 4])],
            &[2, 2, 3, 4],
            13,
        ),
        one("Tile", node("Tile", "t", &["x", "r"], "y", vec![]), vec![int64s("r", &[3], &[1, 2, 3])], &[2, 6, 12], 13),
        Case {
            what: "Reshape to its own Shape, through Cast",
            nodes: vec![
                node("Shape", "sh", &["x"], "s", vec![]),
                node("Cast", "c", &["s"], "s2", vec![int_attr("to", 7)]),
                node("Reshape", "r", &["x", "s2"], "y", vec![]),
            ],
            init: vec![],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: true,
        },
        Case {
            what: "Add of ConstantOfShape(Shape), Size",
            nodes: vec![
                node("Shape", "sh", &["x"], "s", vec![]),
                node("ConstantOfShape", "k", &["s"], "half", vec![tensor_attr("value", 0.5)]),
                node("Size", "n", &["x"], "size", vec![]),
                node("Cast", "c", &["size"], "sizef", vec![int_attr("to", 1)]),
                node("Div", "d", &["half", "sizef"], "tiny", vec![]),
                node("Add", "a", &["x", "tiny"], "y", vec![]),
            ],
            init: vec![],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: false,
        },
        Case {
            what: "Split by sizes, the parts concatenated in reverse",
            nodes: vec![
                split_node(&["x", "sizes"], &["a", "b"], vec![int_attr("axis", 2)]),
                node("Concat", "c", &["b", "a"], "y", vec![int_attr("axis", 2)]),
            ],
            init: vec![int64s("sizes", &[2], &[1, 3])],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: true,
        },
        Case {
            what: "Split into num_outputs equal parts (opset 18)",
            nodes: vec![
                split_node(&["x"], &["a", "b", "c"], vec![int_attr("axis", 1), int_attr("num_outputs", 3)]),
                node("Concat", "cat", &["c", "a", "b"], "y", vec![int_attr("axis", 1)]),
            ],
            init: vec![],
            out: SHAPE.to_vec(),
            opset: 18,
            exact: true,
        },
        Case {
            what: "Split by the attribute (opset 11)",
            nodes: vec![
                split_node(&["x"], &["a", "b"], vec![int_attr("axis", 0), ints_attr("split", &[1, 1])]),
                node("Sub", "y", &["b", "a"], "y", vec![]),
            ],
            init: vec![],
            out: vec![1, 3, 4],
            opset: 11,
            exact: false,
        },
        one(
            "Trilu, upper from diagonal 1",
            node("Trilu", "t", &["x", "k"], "y", vec![]),
            vec![int64s("k", &[], &[1])],
            &SHAPE,
            14,
        ),
        one("Trilu, lower", node("Trilu", "t", &["x"], "y", vec![int_attr("upper", 0)]), vec![], &SHAPE, 14),
        Case {
            what: "x plus a Range",
            nodes: vec![
                node("Range", "r", &["start", "limit", "delta"], "ramp", vec![]),
                node("Cast", "f", &["ramp"], "rampf", vec![int_attr("to", 1)]),
                node("Add", "y", &["x", "rampf"], "y", vec![]),
            ],
            // tract 0.23 divides by zero on float Ranges; int64 ones it runs.
            init: vec![int64s("start", &[], &[-3]), int64s("limit", &[], &[5]), int64s("delta", &[], &[2])],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: false,
        },
        Case {
            what: "Resize nearest ×2 (half_pixel, round_prefer_floor)",
            nodes: vec![node("Resize", "r", &["x", "", "sc"], "y", vec![])],
            init: vec![floats("sc", &[3], &[1.0, 2.0, 2.0])],
            out: vec![2, 6, 8],
            opset: 13,
            exact: true,
        },
        Case {
            what: "Resize nearest to sizes (asymmetric, floor)",
            nodes: vec![node(
                "Resize",
                "r",
                &["x", "", "", "sz"],
                "y",
                vec![string_attr("coordinate_transformation_mode", "asymmetric"), string_attr("nearest_mode", "floor")],
            )],
            init: vec![int64s("sz", &[3], &[2, 5, 3])],
            out: vec![2, 5, 3],
            opset: 13,
            exact: true,
        },
        Case {
            what: "Resize linear ×2 (half_pixel)",
            nodes: vec![node("Resize", "r", &["x", "", "sc"], "y", vec![string_attr("mode", "linear")])],
            init: vec![floats("sc", &[3], &[1.0, 2.0, 2.0])],
            out: vec![2, 6, 8],
            opset: 13,
            exact: false,
        },
        Case {
            what: "Resize linear to sizes (align_corners)",
            nodes: vec![node(
                "Resize",
                "r",
                &["x", "", "", "sz"],
                "y",
                vec![string_attr("mode", "linear"), string_attr("coordinate_transformation_mode", "align_corners")],
            )],
            init: vec![int64s("sz", &[3], &[2, 5, 7])],
            out: vec![2, 5, 7],
            opset: 13,
            exact: false,
        },
        Case {
            what: "DepthToSpace (DCR) after SpaceToDepth",
            nodes: vec![
                node("Reshape", "r4", &["x", "s4"], "x4", vec![]),
                node("SpaceToDepth", "s2d", &["x4"], "d", vec![int_attr("blocksize", 2)]),
                node("DepthToSpace", "d2s", &["d"], "y4", vec![int_attr("blocksize", 2)]),
                node("Reshape", "y", &["y4", "s3"], "y", vec![]),
            ],
            init: vec![int64s("s4", &[4], &[1, 2, 6, 2]), int64s("s3", &[3], &[2, 3, 4])],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: true,
        },
        Case {
            what: "DepthToSpace (CRD)",
            nodes: vec![
                node("Reshape", "r4", &["x", "s4"], "x4", vec![]),
                node("DepthToSpace", "d2s", &["x4"], "y4", vec![int_attr("blocksize", 2), string_attr("mode", "CRD")]),
                node("Reshape", "y", &["y4", "s3"], "y", vec![]),
            ],
            init: vec![int64s("s4", &[4], &[1, 8, 3, 1]), int64s("s3", &[3], &[2, 3, 4])],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: true,
        },
        Case {
            what: "SpaceToDepth",
            nodes: vec![
                node("Reshape", "r4", &["x", "s4"], "x4", vec![]),
                node("SpaceToDepth", "s2d", &["x4"], "y4", vec![int_attr("blocksize", 2)]),
                node("Reshape", "y", &["y4", "s3"], "y", vec![]),
            ],
            init: vec![int64s("s4", &[4], &[1, 1, 4, 6]), int64s("s3", &[3], &[2, 3, 4])],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: true,
        },
        Case {
            what: "Sum, Mean, Max and Min of broadcast tensors",
            nodes: vec![
                node("Sum", "s", &["x", "a", "b"], "s1", vec![]),
                node("Mean", "m", &["s1", "x", "a"], "m1", vec![]),
                node("Max", "mx", &["m1", "b"], "mx1", vec![]),
                node("Min", "y", &["mx1", "x", "c"], "y", vec![]),
            ],
            init: vec![
                floats("a", &[4], &[0.5, -0.25, 1.0, 0.0]),
                floats("b", &[3, 1], &[-1.0, 0.25, 0.75]),
                floats("c", &[1], &[1.5]),
            ],
            out: SHAPE.to_vec(),
            opset: 13,
            exact: false,
        },
    ]
}

fn split_node(inputs: &[&str], outputs: &[&str], attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        output: outputs.iter().map(|o| o.to_string()).collect(),
        ..node("Split", "split", inputs, "", attrs)
    }
}

fn tensor_attr(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 4, t: Some(floats("v", &[1], &[v])), ..Default::default() }
}

#[test]
fn shape_and_index_ops_track_tract_and_satisfy_the_circuit() {
    let s = settings();
    let scale = f64::from(1u32 << s.input_scale);
    let mut rng = ChaCha20Rng::seed_from_u64(19);
    for c in cases() {
        let onnx = graph_model(c.nodes, c.init, &SHAPE, &c.out, c.opset);
        let what = c.what;
        let model = CompiledModel::compile(&onnx, &s).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let x: Vec<f64> = (0..24).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let witness = model.run(std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
        let q: Vec<f64> = model
            .program
            .quantize_inputs(std::slice::from_ref(&x))
            .unwrap()
            .remove(0)
            .iter()
            .map(|&v| v as f64 / scale)
            .collect();
        // tract runs on the quantized inputs, so rearranged values must be
        // exactly equal and computed ones within a rounding or two.
        let float = FloatModel::load(&onnx, &[vec![2, 3, 4]]).and_then(|m| m.run(&[q]));
        let float = float.unwrap_or_else(|e| panic!("{what}: tract: {e:#}"));
        assert_eq!(ours.len(), float[0].len(), "{what}");
        for (got, want) in ours.iter().zip(&float[0]) {
            let tol = if c.exact { 1e-6 } else { 2.0 / scale };
            assert!((got - want).abs() <= tol, "{what}: {got}, tract gives {want}");
        }
        let inst = instances(&model.program, &witness);
        let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
        MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
    }
}

/// Softmax over a middle or first axis (opset 13), and over a flattened
/// tail (opset 11's 2-D coercion): against tract, with MockProver.
#[test]
fn softmax_on_any_axis_tracks_tract() {
    let s = settings();
    let mut rng = ChaCha20Rng::seed_from_u64(20);
    for (axis, opset) in [(1i64, 13), (0, 13), (-2, 13), (1, 11), (0, 11)] {
        let what = format!("Softmax axis {axis}, opset {opset}");
        let onnx = graph_model(
            vec![node("Softmax", "sm", &["x"], "y", vec![int_attr("axis", axis)])],
            vec![],
            &SHAPE,
            &SHAPE,
            opset,
        );
        let model = CompiledModel::compile(&onnx, &s).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let x: Vec<f64> = (0..24).map(|_| rng.gen_range(-3.0..3.0)).collect();
        let witness = model.run(std::slice::from_ref(&x)).unwrap();
        let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
        let float = FloatModel::load(&onnx, &[vec![2, 3, 4]]).and_then(|m| m.run(std::slice::from_ref(&x))).unwrap();
        for (got, want) in ours.iter().zip(&float[0]) {
            assert!((got - want).abs() < 0.02, "{what}: {got}, tract gives {want}");
        }
        let inst = instances(&model.program, &witness);
        let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness)));
        MockProver::run(model.k, &circuit, vec![inst]).unwrap().assert_satisfied_par();
    }
}

/// Negative pads crop (tract 0.23 overflows on them, so the expected values
/// are written here).
#[test]
fn negative_pads_crop() {
    let s = settings();
    let onnx = graph_model(
        vec![node("Pad", "p", &["x", "pads"], "y", vec![])],
        vec![int64s("pads", &[6], &[0, 0, -1, 0, -1, -1])],
        &SHAPE,
        &[2, 2, 2],
        13,
    );
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    let x: Vec<f64> = (0..24).map(|i| i as f64 / 4.0).collect();
    let witness = model.run(std::slice::from_ref(&x)).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let want: Vec<f64> =
        (0..2).flat_map(|a| (0..2).flat_map(move |b| (1..3).map(move |c| (a * 12 + b * 4 + c) as f64 / 4.0))).collect();
    assert_eq!(ours, want);
}

/// Wrap mode (opset 19, which tract 0.23 lacks): each padded element is
/// the one a period away.
#[test]
fn wrap_pads_repeat_the_axis() {
    let onnx = graph_model(
        vec![node("Pad", "p", &["x", "pads"], "y", vec![string_attr("mode", "wrap")])],
        vec![int64s("pads", &[6], &[0, 0, 1, 0, 0, 2])],
        &SHAPE,
        &[2, 3, 7],
        19,
    );
    let model = CompiledModel::compile(&onnx, &settings()).unwrap();
    let x: Vec<f64> = (0..24).map(|i| i as f64 / 4.0).collect();
    let witness = model.run(std::slice::from_ref(&x)).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let want: Vec<f64> = (0..6).flat_map(|row| (0..7).map(move |c| (row * 4 + (c + 3) % 4) as f64 / 4.0)).collect();
    assert_eq!(ours, want);
}

/// Gather and GatherElements of runtime data by runtime indices (tree
/// traversal, `x[:, idx]`): each output picks its position by comparing the
/// whole index with every one; negative indices wrap; an index outside the
/// axis is refused by the integer inference; every advice cell is
/// constrained.
#[test]
fn runtime_data_is_gathered_by_runtime_indices() {
    let x: Vec<f64> = (0..24).map(|i| i as f64 / 4.0 - 2.0).collect();
    let nodes = vec![
        node("Gather", "g", &["x", "i"], "y", vec![int_attr("axis", 2)]),
        node("GatherElements", "ge", &["x", "e"], "z", vec![int_attr("axis", 1)]),
    ];
    let inputs = vec![value_info("x", &SHAPE), typed_info("i", 7, &[2]), typed_info("e", 7, &[2, 2, 4])];
    let outputs = vec![value_info("y", &[2, 3, 2]), value_info("z", &[2, 2, 4])];
    let onnx = model_of(nodes, vec![], inputs, outputs, 13);
    let model = CompiledModel::compile(&onnx, &settings()).unwrap();
    let i = vec![3.0, -4.0];
    let e: Vec<f64> = (0..16).map(|k| f64::from((k * 7 % 5) as u8 % 3) - if k % 5 == 0 { 3.0 } else { 0.0 }).collect();
    let witness = model.run(&[x.clone(), i.clone(), e.clone()]).unwrap();
    let out = model.program.dequantize(&model.program.output_values(&witness));
    let wrap = |v: f64, n: usize| (if v < 0.0 { v + n as f64 } else { v }) as usize;
    let y: Vec<f64> =
        (0..6).flat_map(|r| i.iter().map(move |&v| (r * 4 + wrap(v, 4)) as f64)).map(|k| x[k as usize]).collect();
    let z: Vec<f64> = (0..16).map(|k| x[(k / 8) * 12 + wrap(e[k], 3) * 4 + k % 4]).collect();
    assert_eq!(out, vec![y, z]);
    assert_every_cell_constrained(&model, Arc::new(witness));
    let err = model.run(&[x, vec![4.0, 0.0], e]).unwrap_err();
    assert!(format!("{err:#}").contains("out of range") && format!("{err:#}").contains("`g`"), "{err:#}");
}

#[test]
fn unsupported_pads_are_refused_by_name() {
    let s = settings();
    let pad = graph_model(
        vec![node("Pad", "p", &["x", "pads"], "y", vec![string_attr("mode", "mirror")])],
        vec![int64s("pads", &[6], &[0; 6])],
        &SHAPE,
        &SHAPE,
        13,
    );
    assert!(format!("{:#}", CompiledModel::compile(&pad, &s).unwrap_err()).contains("mirror"));
}

/// Upsample (opset 9, which tract 0.23 lacks): nearest repeats each element
/// along each axis, `y[c][i][j] = x[c][i / 2][j / 3]`.
#[test]
fn upsample_repeats_nearest_elements() {
    let onnx = graph_model(
        vec![node("Upsample", "u", &["x", "sc"], "y", vec![])],
        vec![floats("sc", &[3], &[1.0, 2.0, 3.0])],
        &SHAPE,
        &[2, 6, 12],
        9,
    );
    let model = CompiledModel::compile(&onnx, &settings()).unwrap();
    let x: Vec<f64> = (0..24).map(|i| i as f64 / 4.0).collect();
    let witness = model.run(std::slice::from_ref(&x)).unwrap();
    let ours = model.program.dequantize(&model.program.output_values(&witness)).remove(0);
    let want: Vec<f64> = (0..2)
        .flat_map(|c| (0..6).flat_map(move |i| (0..12).map(move |j| (c * 12 + (i / 2) * 4 + j / 3) as f64 / 4.0)))
        .collect();
    assert_eq!(ours, want);
}
