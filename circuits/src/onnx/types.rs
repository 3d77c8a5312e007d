//! Element types of a graph's values. The circuit holds every value as a
//! fixed-point number, so types matter only where ONNX's integer semantics
//! differ from the real-number ones: an integer Div truncates toward zero.
//! A value's type is what the model declares for it (inputs, initializers,
//! `value_info`, outputs) or, where it declares none, what its op's type
//! rule gives.

use std::collections::HashMap;

use tract_onnx::pb::{self, NodeProto};

use super::control::{all_nodes, subgraphs};
use super::{attr, attr_i};

/// ONNX's tensor element type codes.
const FLOAT: i32 = 1;
const BOOL: i32 = 9;
const UINT8: i32 = 2;
const INT32: i32 = 6;
const INT64: i32 = 7;

/// Whether an ONNX element type code is an integer type (int8 to uint64).
pub(super) fn is_integer_code(code: i32) -> bool {
    matches!(code, 2..=7 | 12 | 13)
}

/// The element type code of each of the graph's values.
pub(super) fn value_types(g: &pb::GraphProto) -> HashMap<String, i32> {
    let mut types: HashMap<&str, i32> = HashMap::new();
    for t in &g.initializer {
        types.insert(&t.name, t.data_type);
    }
    let nodes = all_nodes(&g.node);
    let graphs = std::iter::once(g).chain(nodes.iter().flat_map(|n| subgraphs(n)));
    for sub in graphs {
        for t in &sub.initializer {
            types.entry(&t.name).or_insert(t.data_type);
        }
        for v in sub.input.iter().chain(&sub.value_info).chain(&sub.output) {
            if let Some(code) = declared(v) {
                types.entry(&v.name).or_insert(code);
            }
        }
    }
    for node in nodes {
        for (k, out) in node.output.iter().enumerate() {
            if out.is_empty() || types.contains_key(out.as_str()) {
                continue;
            }
            let code = if node.op_type == "If" {
                // The then-branch's output k (its nodes came first).
                let branch = attr(node, "then_branch").and_then(|a| a.g.as_ref());
                branch.and_then(|b| b.output.get(k)).and_then(|o| types.get(o.name.as_str())).copied().unwrap_or(FLOAT)
            } else {
                let input = |i: usize| node.input.get(i).and_then(|n| types.get(n.as_str())).copied().unwrap_or(FLOAT);
                output_type(node, k, input)
            };
            types.insert(out, code);
        }
    }
    types.into_iter().map(|(name, code)| (name.to_string(), code)).collect()
}

/// The element type a value's declaration names, if it names one.
fn declared(v: &pb::ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) if t.elem_type != 0 => Some(t.elem_type),
        _ => None,
    }
}

/// ONNX's type rule for output `k` of a node, given its inputs' types.
fn output_type(node: &NodeProto, k: usize, input: impl Fn(usize) -> i32) -> i32 {
    match node.op_type.as_str() {
        "Cast" => attr_i(node, "to", i64::from(FLOAT)) as i32,
        "CastLike" => input(1),
        "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" => INT64,
        "TopK" if k == 1 => INT64,
        "Unique" if k > 0 => INT64,
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "Not" | "And" | "Or" | "Xor" | "IsNaN"
        | "IsInf" => BOOL,
        "Constant" => constant_type(node),
        "ConstantOfShape" => attr(node, "value").and_then(|a| a.t.as_ref()).map_or(FLOAT, |t| t.data_type),
        "Where" => input(1),
        "OneHot" => input(2),
        "DequantizeLinear" => FLOAT,
        // output_dtype (opset 21), else the zero point's type, else uint8.
        "QuantizeLinear" if attr_i(node, "output_dtype", 0) != 0 => attr_i(node, "output_dtype", 0) as i32,
        "QuantizeLinear" if node.input.get(2).is_some_and(|z| !z.is_empty()) => input(2),
        "QuantizeLinear" => UINT8,
        "DynamicQuantizeLinear" => [UINT8, FLOAT, UINT8][k.min(2)],
        // ai.onnx.ml: labels are int64, scores and regressions float.
        "LinearClassifier" | "TreeEnsembleClassifier" | "SVMClassifier" if k == 0 => INT64,
        "LinearClassifier"
        | "TreeEnsembleClassifier"
        | "SVMClassifier"
        | "LinearRegressor"
        | "TreeEnsembleRegressor"
        | "SVMRegressor"
        | "Scaler"
        | "Normalizer" => FLOAT,
        "LabelEncoder" if attr(node, "values_int64s").is_some() => INT64,
        "LabelEncoder" => FLOAT,
        "MatMulInteger" | "ConvInteger" => INT32,
        "QLinearMatMul" | "QLinearConv" | "QLinearAdd" | "QLinearMul" => input(7),
        "QGemm" if node.input.len() > 8 => input(8),
        "QGemm" => FLOAT,
        "EyeLike" | "RandomNormalLike" | "RandomUniformLike" => attr(node, "dtype").map_or(input(0), |a| a.i as i32),
        // Every other op keeps its (first) data input's type.
        _ => input(0),
    }
}

/// The type of a Constant node's value, whichever attribute holds it.
fn constant_type(node: &NodeProto) -> i32 {
    if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
        return t.data_type;
    }
    if attr(node, "value_int").is_some() || attr(node, "value_ints").is_some() {
        return INT64;
    }
    FLOAT
}
