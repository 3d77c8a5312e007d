//! ONNX models built in the tests, and the advice-mutation check.

// Each test file uses part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use halo2_proofs::dev::MockProver;
use prost::Message;
use tract_onnx::pb;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::program::Witness;
use zkfarm_circuits::{CompiledModel, ModelCircuit};

/// A float tensor of `shape` named `name`.
pub fn value_info(name: &str, shape: &[i64]) -> pb::ValueInfoProto {
    typed_info(name, 1, shape)
}

/// One node `op` named `name` reading input `x` of `shape` and constant
/// further inputs (initializers `c0`, `c1`, …), writing `y` of the same
/// shape, at `opset`.
pub fn one_node_model(
    op: &str,
    name: &str,
    attrs: Vec<pb::AttributeProto>,
    consts: &[(&[i64], Vec<f32>)],
    shape: &[i64],
    opset: i64,
) -> Vec<u8> {
    one_node_model_to(op, name, attrs, consts, shape, shape, opset)
}

/// The same with an output of `out_shape`.
pub fn one_node_model_to(
    op: &str,
    name: &str,
    attrs: Vec<pb::AttributeProto>,
    consts: &[(&[i64], Vec<f32>)],
    shape: &[i64],
    out_shape: &[i64],
    opset: i64,
) -> Vec<u8> {
    let names: Vec<String> = (0..consts.len()).map(|i| format!("c{i}")).collect();
    let initializer = consts.iter().zip(&names).map(|((dims, data), n)| floats(n, dims, data)).collect();
    let mut inputs = vec!["x"];
    inputs.extend(names.iter().map(String::as_str));
    graph_model(vec![node(op, name, &inputs, "y", attrs)], initializer, shape, out_shape, opset)
}

/// An integer-list attribute.
pub fn ints_attr(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 7, ints: v.to_vec(), ..Default::default() }
}

/// An integer attribute.
pub fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 2, i, ..Default::default() }
}

/// A node `op` from `inputs` to `y`, named `name`.
pub fn node(op: &str, name: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

/// An int64 initializer.
pub fn int64s(name: &str, dims: &[i64], data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 7,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

/// A float initializer.
pub fn floats(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

/// A model of `nodes` with one float input `x` of `shape` and one output `y`
/// of `out_shape`.
pub fn graph_model(
    nodes: Vec<pb::NodeProto>,
    initializer: Vec<pb::TensorProto>,
    shape: &[i64],
    out_shape: &[i64],
    opset: i64,
) -> Vec<u8> {
    model_of(nodes, initializer, vec![value_info("x", shape)], vec![value_info("y", out_shape)], opset)
}

/// A float attribute.
pub fn float_attr(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 1, f, ..Default::default() }
}

/// A string attribute.
pub fn string_attr(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 3, s: s.as_bytes().to_vec(), ..Default::default() }
}

/// A tensor input or output of element type `elem` (ONNX's code: 1 float,
/// 7 int64, 9 bool, …).
pub fn typed_info(name: &str, elem: i32, shape: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem,
                shape: Some(pb::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&v| pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model of `nodes` with the given inputs and outputs.
pub fn model_of(
    nodes: Vec<pb::NodeProto>,
    initializer: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    opset: i64,
) -> Vec<u8> {
    let graph = pb::GraphProto {
        name: "g".into(),
        node: nodes,
        initializer,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: opset }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Adding one to any advice cell of the witness is caught by MockProver.
pub fn assert_every_cell_constrained(model: &CompiledModel, witness: Arc<Witness>) {
    let inst = instances(&model.program, &witness);
    let p = &model.program;
    let cells: usize = p.steps.iter().map(|(s, _)| s.advice_cells(p.settings.lanes)).sum();
    let check = |tamper: Option<usize>| {
        let mut circuit = ModelCircuit::new(model.program.clone(), Some(witness.clone()));
        circuit.tamper = tamper;
        MockProver::run(model.k, &circuit, vec![inst.clone()]).unwrap().verify_par().is_ok()
    };
    assert!(check(None));
    // Past the last cell the hook changes nothing: the count is exact.
    assert!(check(Some(cells)));
    let accepted: Vec<usize> = (0..cells).filter(|&i| check(Some(i))).collect();
    assert!(accepted.is_empty(), "mutations of cells {accepted:?} of {cells} were accepted");
}
