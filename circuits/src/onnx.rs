//! ONNX import: the protobuf is decoded by tract-onnx, then each node is
//! translated into the float graph IR with static shapes. BatchNormalization
//! is folded into the Conv or Gemm before it when nothing else reads that
//! layer's output; constant sub-expressions are folded at import.

use std::collections::HashMap;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tract_onnx::pb::{self, AttributeProto, NodeProto, TensorProto};
use tract_onnx::prelude::Framework;

use crate::graph::*;

mod composite;
mod control;
mod ml;
pub use composite::{COMPOSITE_OPS, MICROSOFT_OPS};
pub use ml::ML_OPS;
mod norm;
mod recurrent;
mod tuples;
mod types;

/// Largest tensor (in elements) that import accepts; bigger ones are refused
/// before any allocation so that a hostile file cannot exhaust memory.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 24;

/// The ONNX ops the importer translates (besides comparisons and reductions,
/// named by [`Cmp::of`] and [`Reduce::of`]).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "BitShift",
    "Cast",
    "Ceil",
    "Celu",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DepthToSpace",
    "Div",
    "Dropout",
    "Einsum",
    "Elu",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GroupNormalization",
    "HardSigmoid",
    "Hardmax",
    "HardSwish",
    "If",
    "Identity",
    "InstanceNormalization",
    "LSTM",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "NonZero",
    "Not",
    "OneHot",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "RNN",
    "Range",
    "Reciprocal",
    "Relu",
    "Reshape",
    "Resize",
    "Round",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Whether the importer translates an op of the default domain.
pub fn is_supported(op: &str) -> bool {
    SUPPORTED_OPS.contains(&op)
        || composite::COMPOSITE_OPS.contains(&op)
        || Cmp::of(op).is_some()
        || Reduce::of(op).is_some()
}

/// Whether a node is one of the ops of another domain that the importer
/// lowers: onnxruntime's `com.microsoft` ops and `ai.onnx.ml`'s models.
fn is_other_domain_supported(node: &NodeProto) -> bool {
    let op = node.op_type.as_str();
    (node.domain == "com.microsoft" && composite::MICROSOFT_OPS.contains(&op))
        || (node.domain == "ai.onnx.ml" && ml::ML_OPS.contains(&op))
}

/// Decodes ONNX bytes and translates them into a [`Graph`].
pub fn import_bytes(bytes: &[u8]) -> Result<Graph> {
    let proto =
        tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).map_err(|e| anyhow!("not a valid ONNX model: {e}"))?;
    import_proto(&proto)
}

/// Reads and imports an ONNX file.
pub fn import_file(path: &std::path::Path) -> Result<Graph> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    import_bytes(&bytes).with_context(|| format!("importing {}", path.display()))
}

/// A value in the ONNX graph: either a runtime node or a folded constant.
#[derive(Clone)]
enum Val {
    Node(NodeId),
    Const(Tensor),
}

struct Importer {
    graph: Graph,
    vals: HashMap<String, Val>,
    /// How many nodes read each value, to decide whether folding is safe.
    readers: HashMap<String, usize>,
    graph_outputs: Vec<String>,
    opset: i64,
    /// Nodes that are element-wise functions of another node (their base),
    /// for fusing chains of element-wise ops into one table.
    fns: HashMap<NodeId, (NodeId, Expr)>,
    /// The element type code of each value (ONNX's semantics differ for
    /// integers).
    types: HashMap<String, i32>,
    /// The node that produces each value, for recognising patterns.
    producers: HashMap<String, NodeProto>,
}

fn import_proto(proto: &pb::ModelProto) -> Result<Graph> {
    let g = proto.graph.as_ref().ok_or_else(|| anyhow!("the ONNX model has no graph"))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(13);
    let mut imp = Importer {
        graph: Graph::default(),
        vals: HashMap::new(),
        readers: HashMap::new(),
        graph_outputs: g.output.iter().map(|o| o.name.clone()).collect(),
        opset,
        fns: HashMap::new(),
        types: types::value_types(g),
        producers: control::all_nodes(&g.node)
            .into_iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.clone(), n.clone())))
            .collect(),
    };
    for t in &g.initializer {
        let tensor = load_tensor(t).with_context(|| format!("initializer `{}`", t.name))?;
        imp.vals.insert(t.name.clone(), Val::Const(tensor));
    }
    for input in &g.input {
        if imp.vals.contains_key(&input.name) {
            continue;
        }
        let (shape, elem) = input_shape(input)?;
        let index = imp.graph.inputs.len();
        let id = imp.graph.push(&input.name, Op::Input { index }, vec![], shape);
        imp.graph.inputs.push(id);
        imp.graph.input_elems.push(elem);
        imp.vals.insert(input.name.clone(), Val::Node(id));
    }
    let every_node = control::all_nodes(&g.node);
    for node in &every_node {
        // A subgraph's outputs are read by the node that holds it.
        let returned = control::subgraphs(node).flat_map(|sub| sub.output.iter().map(|o| &o.name));
        for i in node.input.iter().chain(returned) {
            *imp.readers.entry(i.clone()).or_default() += 1;
        }
    }
    check_ops(&every_node)?;
    for node in &g.node {
        imp.node(node, &node_name(node)).with_context(|| format!("node `{}` ({})", node_name(node), node.op_type))?;
    }
    for out in &g.output {
        match imp.vals.get(&out.name) {
            Some(Val::Node(id)) => imp.graph.outputs.push(*id),
            // A constant output (every output, when the model has no
            // runtime input) is proven as a constant of the circuit.
            Some(Val::Const(t)) => {
                let id = imp.node_of(Val::Const(t.clone()), &out.name);
                imp.graph.outputs.push(id);
            }
            None => bail!("model output `{}` is not produced by any node", out.name),
        }
    }
    Ok(imp.graph)
}

/// The element type of an ONNX tensor type code, as inputs are treated.
fn elem_of(code: i32) -> Option<Elem> {
    match code {
        1 | 10 | 11 | 16 => Some(Elem::Float),
        c if types::is_integer_code(c) => Some(Elem::Int),
        9 => Some(Elem::Bool),
        _ => None,
    }
}

/// A node's name, or its first output's where it has none.
fn node_name(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

/// Every op of the model that is not supported, named with its nodes, in
/// one error, so that a user learns all a model lacks at once.
fn check_ops(nodes: &[&NodeProto]) -> Result<()> {
    let mut missing: Vec<(String, Vec<String>)> = Vec::new();
    for node in nodes {
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        if (default_domain && is_supported(&node.op_type)) || is_other_domain_supported(node) {
            continue;
        }
        let op = if default_domain { node.op_type.clone() } else { format!("{}:{}", node.domain, node.op_type) };
        match missing.iter_mut().find(|(o, _)| *o == op) {
            Some((_, names)) => names.push(node_name(node)),
            None => missing.push((op, vec![node_name(node)])),
        }
    }
    let describe = |(op, names): &(String, Vec<String>)| {
        let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
        let more = if names.len() > 3 { format!(" and {} more", names.len() - 3) } else { String::new() };
        let nodes = if names.len() == 1 { "node" } else { "nodes" };
        format!("`{op}` at {nodes} {}{more}", shown.join(", "))
    };
    match missing.len() {
        0 => Ok(()),
        1 => bail!("unsupported op {}", describe(&missing[0])),
        n => bail!("{n} unsupported ops: {}", missing.iter().map(describe).collect::<Vec<_>>().join("; ")),
    }
}

fn input_shape(input: &pb::ValueInfoProto) -> Result<(Vec<usize>, Elem)> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Ty;
    let Some(Ty::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        bail!("input `{}` is not a tensor", input.name);
    };
    let elem = elem_of(t.elem_type).ok_or_else(|| {
        anyhow!("input `{}` has element type {}; float, integer and bool inputs are supported", input.name, t.elem_type)
    })?;
    let shape = t.shape.as_ref().ok_or_else(|| anyhow!("input `{}` has no shape", input.name))?;
    let mut dims = Vec::new();
    for d in &shape.dim {
        dims.push(match &d.value {
            Some(Dim::DimValue(v)) if *v > 0 => *v as usize,
            Some(Dim::DimValue(v)) => bail!("input `{}` has dimension {v}", input.name),
            // A symbolic dimension is the batch size; one inference is one sample.
            Some(Dim::DimParam(_)) | None => 1,
        });
    }
    check_size(&dims)?;
    Ok((dims, elem))
}

fn check_size(shape: &[usize]) -> Result<()> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| anyhow!("tensor of shape {shape:?} exceeds the limit of {MAX_TENSOR_ELEMENTS} elements"))?;
    }
    Ok(())
}

/// Decodes a TensorProto holding float or integer data into f64 values.
fn load_tensor(t: &TensorProto) -> Result<Tensor> {
    if t.data_location == Some(1) {
        bail!("tensor `{}` uses external data, which is not supported", t.name);
    }
    let mut shape = Vec::new();
    for &d in &t.dims {
        if d < 0 {
            bail!("tensor `{}` has negative dimension {d}", t.name);
        }
        shape.push(d as usize);
    }
    check_size(&shape)?;
    let n: usize = shape.iter().product();
    let raw = &t.raw_data;
    let data: Vec<f64> = match t.data_type {
        1 if !raw.is_empty() => {
            chunks(raw, 4, n, &t.name)?.map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        1 => t.float_data.iter().map(|&v| v as f64).collect(),
        11 if !raw.is_empty() => {
            chunks(raw, 8, n, &t.name)?.map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
        }
        11 => t.double_data.clone(),
        7 if !raw.is_empty() => {
            chunks(raw, 8, n, &t.name)?.map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        7 => t.int64_data.iter().map(|&v| v as f64).collect(),
        6 if !raw.is_empty() => {
            chunks(raw, 4, n, &t.name)?.map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        // int32, int16, int8, uint16, uint8 and bool: int32_data holds them
        // widened; raw data holds them at their own width.
        6 => t.int32_data.iter().map(|&v| v as f64).collect(),
        5 if !raw.is_empty() => {
            chunks(raw, 2, n, &t.name)?.map(|c| i16::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        4 if !raw.is_empty() => {
            chunks(raw, 2, n, &t.name)?.map(|c| u16::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        3 if !raw.is_empty() => chunks(raw, 1, n, &t.name)?.map(|c| c[0] as i8 as f64).collect(),
        2 | 9 if !raw.is_empty() => chunks(raw, 1, n, &t.name)?.map(|c| c[0] as f64).collect(),
        2..=5 | 9 => t.int32_data.iter().map(|&v| v as f64).collect(),
        12 if !raw.is_empty() => {
            chunks(raw, 4, n, &t.name)?.map(|c| u32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        13 if !raw.is_empty() => {
            chunks(raw, 8, n, &t.name)?.map(|c| u64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        12 | 13 => t.uint64_data.iter().map(|&v| v as f64).collect(),
        // float16 and bfloat16: raw little-endian halves, or in int32_data
        // as their bit patterns.
        10 | 16 => {
            let bits: Vec<u16> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u16).collect()
            } else {
                chunks(raw, 2, n, &t.name)?.map(|c| u16::from_le_bytes(c.try_into().unwrap())).collect()
            };
            if t.data_type == 10 {
                bits.into_iter().map(|b| half::f16::from_bits(b).to_f64()).collect()
            } else {
                bits.into_iter().map(|b| half::bf16::from_bits(b).to_f64()).collect()
            }
        }
        other => bail!("tensor `{}` has unsupported data type {other}", t.name),
    };
    if data.len() != n {
        bail!("tensor `{}` holds {} values but its shape {shape:?} needs {n}", t.name, data.len());
    }
    // Infinities are kept: -inf fills attention masks.
    if data.iter().any(|v| v.is_nan()) {
        bail!("tensor `{}` contains NaN", t.name);
    }
    Ok(Tensor::new(shape, data))
}

fn chunks<'a>(raw: &'a [u8], size: usize, n: usize, name: &str) -> Result<std::slice::ChunksExact<'a, u8>> {
    if raw.len() != size * n {
        bail!("tensor `{name}` has {} raw bytes, expected {}", raw.len(), size * n);
    }
    Ok(raw.chunks_exact(size))
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
/// The activation of an ONNX op that is a function of one value with no
/// attributes.
fn unary(op: &str) -> Option<Activation> {
    Some(match op {
        "HardSwish" => Activation::HardSwish,
        "Softplus" => Activation::Softplus,
        "Softsign" => Activation::Softsign,
        "Mish" => Activation::Mish,
        "Erf" => Activation::Erf,
        "Exp" => Activation::Exp,
        "Log" => Activation::Log,
        "Sqrt" => Activation::Sqrt,
        "Reciprocal" => Activation::Reciprocal,
        "Abs" => Activation::Abs,
        "Sign" => Activation::Sign,
        "Floor" => Activation::Floor,
        "Ceil" => Activation::Ceil,
        "Round" => Activation::Round,
        "Sin" => Activation::Sin,
        "Cos" => Activation::Cos,
        "Tan" => Activation::Tan,
        "Asin" => Activation::Asin,
        "Acos" => Activation::Acos,
        "Atan" => Activation::Atan,
        "Sinh" => Activation::Sinh,
        "Cosh" => Activation::Cosh,
        "Asinh" => Activation::Asinh,
        "Acosh" => Activation::Acosh,
        "Atanh" => Activation::Atanh,
        _ => return None,
    })
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map(|a| a.i).unwrap_or(default)
}
fn attr_f(node: &NodeProto, name: &str, default: f64) -> f64 {
    attr(node, name).map(|a| a.f as f64).unwrap_or(default)
}
fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}
fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// A constant scalar.
fn scalar(v: f64) -> Val {
    Val::Const(Tensor::new(vec![], vec![v]))
}

/// The name of a node's input `i`, which must be present.
fn input_name(node: &NodeProto, i: usize) -> Result<&str> {
    node.input.get(i).filter(|n| !n.is_empty()).map(String::as_str).ok_or_else(|| anyhow!("missing input {i}"))
}

/// Resolves a possibly negative axis against `rank`.
fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

impl Importer {
    fn input(&self, node: &NodeProto, i: usize) -> Result<Val> {
        let name = input_name(node, i)?;
        self.vals.get(name).cloned().ok_or_else(|| anyhow!("input `{name}` is not defined"))
    }
    fn opt_input(&self, node: &NodeProto, i: usize) -> Result<Option<Val>> {
        match node.input.get(i) {
            Some(n) if !n.is_empty() => self.input(node, i).map(Some),
            _ => Ok(None),
        }
    }
    fn const_input(&self, node: &NodeProto, i: usize, what: &str) -> Result<Tensor> {
        match self.input(node, i)? {
            Val::Const(t) => Ok(t),
            Val::Node(_) => bail!("{what} (input {i}) must be a constant initializer"),
        }
    }
    fn shape(&self, v: &Val) -> Vec<usize> {
        match v {
            Val::Node(id) => self.graph.nodes[*id].shape.clone(),
            Val::Const(t) => t.shape.clone(),
        }
    }
    /// Turns a value into a node id, materializing constants as Const nodes.
    fn node_of(&mut self, v: Val, name: &str) -> NodeId {
        match v {
            Val::Node(id) => id,
            Val::Const(t) => {
                let shape = t.shape.clone();
                self.graph.push(name, Op::Const(t), vec![], shape)
            }
        }
    }
    fn set(&mut self, node: &NodeProto, v: Val) -> Result<()> {
        let out = node.output.first().ok_or_else(|| anyhow!("node has no output"))?;
        if let Val::Node(id) = &v {
            check_size(&self.graph.nodes[*id].shape)?;
        }
        self.vals.insert(out.clone(), v);
        Ok(())
    }
    /// Whether the value named `name` has an integer type.
    fn is_integer(&self, name: &str) -> bool {
        self.types.get(name).is_some_and(|&c| types::is_integer_code(c))
    }
    fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> Val {
        Val::Node(self.graph.push(name, op, inputs, shape))
    }
    /// Whether the value named `out` is read by exactly one node and is not a
    /// model output, so that the node producing it may be rewritten in place.
    fn private_output(&self, out: &str) -> bool {
        self.readers.get(out).copied() == Some(1) && !self.graph_outputs.iter().any(|o| o == out)
    }

    fn node(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx" || is_other_domain_supported(node)) {
            bail!("unsupported op `{}` from domain `{}` at node `{name}`", node.op_type, node.domain);
        }
        if node.op_type == "Split" {
            return self.split(node, name);
        }
        if node.op_type == "If" {
            return self.if_node(node, name);
        }
        if node.domain == "ai.onnx.ml" {
            return self.ml(node, name);
        }
        if node.op_type == "TopK" {
            return self.top_k(node, name);
        }
        if matches!(node.op_type.as_str(), "LSTM" | "GRU" | "RNN") {
            return self.recurrent(node, name);
        }
        if let Some(v) = self.one_dimensional(node, name)? {
            return self.set(node, v);
        }
        if let Some(v) = self.composite(node, name)? {
            return self.set(node, v);
        }
        let v = match node.op_type.as_str() {
            "Identity" | "Dropout" => self.input(node, 0)?,
            "Range" => self.range(node)?,
            "Trilu" => self.trilu(node, name)?,
            "Constant" => {
                let t = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| anyhow!("Constant without a tensor `value` attribute"))?;
                Val::Const(load_tensor(t)?)
            }
            "Gemm" => self.gemm(node, name)?,
            "MatMul" => self.matmul(node, name)?,
            "Conv" => self.conv(node, name)?,
            "ConvTranspose" => self.conv_transpose(node, name)?,
            "Resize" | "Upsample" => self.resize(node, name)?,
            "Einsum" => self.einsum(node, name)?,
            "CumSum" => self.cum_sum(node, name)?,
            "BitShift" => self.bit_shift(node, name)?,
            "NonZero" => match self.input(node, 0)? {
                // Its output's size depends on the data: only constants.
                Val::Const(t) => Val::Const(non_zero(&t)),
                Val::Node(_) => {
                    bail!("NonZero of a runtime tensor is not supported (its output size depends on the data)")
                }
            },
            "GatherElements" | "GatherND" => self.gather_indexed(node, name)?,
            "ScatterElements" | "Scatter" | "ScatterND" => self.scatter(node, name)?,
            "OneHot" => self.one_hot(node, name)?,
            "Mod" => self.modulo(node, name)?,
            "LpNormalization" => self.lp_norm(node, name)?,
            "DepthToSpace" | "SpaceToDepth" => self.depth_space(node, name)?,
            "BatchNormalization" => self.batchnorm(node, name)?,
            "Add" | "Sub" | "Mul" | "Div" => self.arith(node, name)?,
            op if Cmp::of(op).is_some() => self.compare(node, name, Cmp::of(op).expect("checked"))?,
            "Not" => {
                let x = self.input(node, 0)?;
                self.binary(Arith::Sub, Val::Const(Tensor::new(vec![], vec![1.0])), x, name)?
            }
            "And" | "Or" | "Xor" => self.logic(node, name)?,
            "Where" => self.select(node, name)?,
            "LayerNormalization" => self.layer_norm(node, name)?,
            "InstanceNormalization" => self.instance_norm(node, name)?,
            "GroupNormalization" => self.group_norm(node, name)?,
            "Relu" => self.act(node, name, Activation::Relu)?,
            "Sigmoid" => self.act(node, name, Activation::Sigmoid)?,
            "Tanh" => self.act(node, name, Activation::Tanh)?,
            "LeakyRelu" => {
                let alpha = attr_f(node, "alpha", 0.01);
                self.act(node, name, Activation::LeakyRelu { alpha })?
            }
            "Elu" => self.act(node, name, Activation::Elu { alpha: attr_f(node, "alpha", 1.0) })?,
            "Selu" => {
                let alpha = attr_f(node, "alpha", 1.673_263_192_176_818_8);
                let gamma = attr_f(node, "gamma", 1.050_701_022_148_132_3);
                self.act(node, name, Activation::Selu { alpha, gamma })?
            }
            "Celu" => {
                let alpha = attr_f(node, "alpha", 1.0);
                ensure!(alpha != 0.0, "Celu with alpha 0");
                self.act(node, name, Activation::Celu { alpha })?
            }
            "HardSigmoid" => {
                let (alpha, beta) = (attr_f(node, "alpha", 0.2), attr_f(node, "beta", 0.5));
                self.act(node, name, Activation::HardSigmoid { alpha, beta })?
            }
            "ThresholdedRelu" => {
                self.act(node, name, Activation::ThresholdedRelu { alpha: attr_f(node, "alpha", 1.0) })?
            }
            "Shrink" => {
                let (bias, lambd) = (attr_f(node, "bias", 0.0), attr_f(node, "lambd", 0.5));
                self.act(node, name, Activation::Shrink { bias, lambd })?
            }
            "Gelu" => {
                let tanh = match attr_s(node, "approximate").as_deref() {
                    None | Some("none") => false,
                    Some("tanh") => true,
                    Some(other) => bail!("Gelu approximation {other:?} is not one of none, tanh"),
                };
                self.act(node, name, Activation::Gelu { tanh })?
            }
            "HardSwish" | "Softplus" | "Softsign" | "Mish" | "Erf" | "Exp" | "Log" | "Sqrt" | "Reciprocal" | "Abs"
            | "Sign" | "Floor" | "Ceil" | "Round" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh"
            | "Cosh" | "Asinh" | "Acosh" | "Atanh" => {
                let act = unary(&node.op_type).expect("listed above");
                self.act(node, name, act)?
            }
            "Neg" => self.scaled(node, name, -1.0)?,
            "Pow" => self.pow(node, name)?,
            "PRelu" => self.prelu(node, name)?,
            "Clip" => self.clip(node, name)?,
            "Softmax" | "LogSoftmax" | "Hardmax" => self.softmax(node, name)?,
            "ArgMax" | "ArgMin" => self.arg_extreme(node, name)?,
            "MaxPool" => {
                if node.output.len() > 1 && !node.output[1].is_empty() {
                    bail!("MaxPool with an Indices output is not supported");
                }
                let (x, shape) = self.spatial_input(node)?;
                let window = self.window(node, &shape, None)?;
                let hw = window.output_hw(shape[2], shape[3]).ok_or_else(|| anyhow!("window larger than input"))?;
                self.push(name, Op::MaxPool(window), vec![x], vec![shape[0], shape[1], hw[0], hw[1]])
            }
            "AveragePool" => {
                let (x, shape) = self.spatial_input(node)?;
                let window = self.window(node, &shape, None)?;
                let count_include_pad = attr_i(node, "count_include_pad", 0) != 0;
                let hw = window.output_hw(shape[2], shape[3]).ok_or_else(|| anyhow!("window larger than input"))?;
                let op = Op::AvgPool { window, count_include_pad };
                self.push(name, op, vec![x], vec![shape[0], shape[1], hw[0], hw[1]])
            }
            "GlobalAveragePool" => {
                let (x, shape) = self.spatial_input(node)?;
                self.push(name, Op::GlobalAvgPool, vec![x], vec![shape[0], shape[1], 1, 1])
            }
            "Flatten" => {
                let x = self.input(node, 0)?;
                let shape = self.shape(&x);
                let a = axis(attr_i(node, "axis", 1), shape.len() + 1)?;
                let outer: usize = shape[..a].iter().product();
                let inner: usize = shape[a..].iter().product();
                self.reshape(x, vec![outer, inner], name)?
            }
            "Reshape" => {
                let x = self.input(node, 0)?;
                let target = self.const_input(node, 1, "the Reshape shape")?;
                let allowzero = attr_i(node, "allowzero", 0) != 0;
                let shape = reshape_target(&self.shape(&x), &target.data, allowzero)?;
                self.reshape(x, shape, name)?
            }
            "Squeeze" | "Unsqueeze" => self.squeeze(node, name)?,
            "Transpose" => {
                let x = self.input(node, 0)?;
                let shape = self.shape(&x);
                let perm = match attr_ints(node, "perm") {
                    Some(p) => p.iter().map(|&a| axis(a, shape.len())).collect::<Result<Vec<_>>>()?,
                    None => (0..shape.len()).rev().collect(),
                };
                let mut sorted = perm.clone();
                sorted.sort();
                if sorted != (0..shape.len()).collect::<Vec<_>>() {
                    bail!("perm {perm:?} is not a permutation of the {} axes", shape.len());
                }
                let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
                match x {
                    Val::Const(t) => Val::Const(transpose_const(&t, &perm)),
                    Val::Node(id) => self.push(name, Op::Transpose { perm }, vec![id], out),
                }
            }
            "Concat" => self.concat(node, name)?,
            op if Reduce::of(op).is_some() => self.reduce(node, name, Reduce::of(op).expect("checked"))?,
            "Slice" => self.slice(node, name)?,
            "Gather" => self.gather(node, name)?,
            "Pad" => self.pad(node, name)?,
            "Expand" => {
                let x = self.input(node, 0)?;
                let target = self.const_input(node, 1, "the Expand shape")?;
                let dims = target.data.iter().map(|&d| d as usize).collect::<Vec<_>>();
                let shape = self.shape(&x);
                let out = broadcast_shapes(&shape, &dims)
                    .ok_or_else(|| anyhow!("Expand of shape {shape:?} to {dims:?}: the shapes do not broadcast"))?;
                let mut map = Vec::new();
                for_each_index(&out, |pos| map.push(Some(broadcast_index(&shape, pos))));
                self.rearrange(x, out, map, 0.0, name)?
            }
            "Tile" => {
                let x = self.input(node, 0)?;
                let reps = self.const_input(node, 1, "the Tile repeats")?;
                let shape = self.shape(&x);
                ensure!(reps.len() == shape.len(), "Tile repeats {:?} do not match rank {}", reps.data, shape.len());
                ensure!(reps.data.iter().all(|&r| r >= 0.0), "Tile repeats must not be negative");
                let out: Vec<usize> = shape.iter().zip(&reps.data).map(|(&d, &r)| d * r as usize).collect();
                let st = strides(&shape);
                let mut map = Vec::new();
                for_each_index(&out, |pos| {
                    map.push(Some(pos.iter().zip(&shape).zip(&st).map(|((&p, &d), &s)| (p % d) * s).sum()));
                });
                self.rearrange(x, out, map, 0.0, name)?
            }
            "Shape" => {
                let shape = self.shape(&self.input(node, 0)?);
                let rank = shape.len() as i64;
                // Opset 15's start and end, clamped as ONNX clamps them.
                let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let (start, end) = (clamp(attr_i(node, "start", 0)), clamp(attr_i(node, "end", rank)));
                let dims: Vec<f64> = shape[start..end.max(start)].iter().map(|&d| d as f64).collect();
                Val::Const(Tensor::new(vec![dims.len()], dims))
            }
            "Size" => {
                let n = self.shape(&self.input(node, 0)?).iter().product::<usize>();
                Val::Const(Tensor::new(vec![], vec![n as f64]))
            }
            "Cast" => self.cast(node, name)?,
            "ConstantOfShape" => {
                let dims = self.const_input(node, 0, "the ConstantOfShape shape")?;
                let shape: Vec<usize> = dims.data.iter().map(|&d| d as usize).collect();
                check_size(&shape)?;
                let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => {
                        *load_tensor(t)?.data.first().ok_or_else(|| anyhow!("an empty ConstantOfShape value"))?
                    }
                    None => 0.0,
                };
                let n = shape.iter().product();
                Val::Const(Tensor::new(shape, vec![value; n]))
            }
            "Sum" => {
                let mut acc = self.input(node, 0)?;
                for i in 1..node.input.len() {
                    let next = self.input(node, i)?;
                    acc = self.binary(Arith::Add, acc, next, &format!("{name}.{i}"))?;
                }
                acc
            }
            "Mean" => self.mean(node, name)?,
            "Max" | "Min" => self.extremum(node, name)?,
            other => bail!("unsupported op `{other}` at node `{name}`"),
        };
        self.set(node, v)
    }

    fn reshape(&mut self, x: Val, shape: Vec<usize>, name: &str) -> Result<Val> {
        let n: usize = self.shape(&x).iter().product();
        if shape.iter().product::<usize>() != n {
            bail!("cannot reshape {:?} into {shape:?}", self.shape(&x));
        }
        Ok(match x {
            Val::Const(t) => Val::Const(Tensor::new(shape, t.data)),
            Val::Node(id) => self.push(name, Op::Reshape, vec![id], shape),
        })
    }

    fn squeeze(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let axes: Option<Vec<i64>> = match self.opt_input(node, 1)? {
            Some(Val::Const(t)) => Some(t.data.iter().map(|&v| v as i64).collect()),
            Some(Val::Node(_)) => bail!("axes must be a constant"),
            None => attr_ints(node, "axes"),
        };
        let out = if node.op_type == "Squeeze" {
            match axes {
                None => shape.iter().copied().filter(|&d| d != 1).collect(),
                Some(axes) => {
                    let axes = axes.iter().map(|&a| axis(a, shape.len())).collect::<Result<Vec<_>>>()?;
                    if axes.iter().any(|&a| shape[a] != 1) {
                        bail!("cannot squeeze an axis whose size is not 1");
                    }
                    shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
                }
            }
        } else {
            let axes = axes.ok_or_else(|| anyhow!("Unsqueeze needs axes"))?;
            let rank = shape.len() + axes.len();
            let mut axes = axes.iter().map(|&a| axis(a, rank)).collect::<Result<Vec<_>>>()?;
            axes.sort();
            let mut out = shape.clone();
            for a in axes {
                out.insert(a, 1);
            }
            out
        };
        self.reshape(x, out, name)
    }

    fn gemm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        if let Val::Node(_) = self.input(node, 1)? {
            return self.gemm_runtime_b(node, name);
        }
        let a = self.input(node, 0)?;
        let b = self.const_input(node, 1, "the Gemm weight B")?;
        let alpha = attr_f(node, "alpha", 1.0);
        let beta = attr_f(node, "beta", 1.0);
        let trans_a = attr_i(node, "transA", 0) != 0;
        let trans_b = attr_i(node, "transB", 0) != 0;
        let Val::Node(mut a) = a else { bail!("Gemm with a constant input A is not supported") };
        let mut ashape = self.graph.nodes[a].shape.clone();
        if ashape.len() != 2 || b.shape.len() != 2 {
            bail!("Gemm needs 2-D inputs, got {ashape:?} and {:?}", b.shape);
        }
        if trans_a {
            ashape = vec![ashape[1], ashape[0]];
            a = self.graph.push(&format!("{name}.transA"), Op::Transpose { perm: vec![1, 0] }, vec![a], ashape.clone());
        }
        // Weight as [out, in].
        let weight = if trans_b { b.clone() } else { transpose_const(&b, &[1, 0]) };
        let (n, k) = (weight.shape[0], weight.shape[1]);
        if ashape[1] != k {
            bail!("Gemm inner dimensions differ: A is {ashape:?}, B gives {k}");
        }
        let weight = Tensor::new(weight.shape.clone(), weight.data.iter().map(|w| w * alpha).collect());
        let bias = match self.opt_input(node, 2)? {
            None => vec![0.0; n],
            Some(Val::Const(c)) => {
                let ok = c.len() == n || c.len() == 1;
                if !ok {
                    bail!("Gemm bias C of shape {:?} does not broadcast to [{n}]", c.shape);
                }
                (0..n).map(|j| beta * c.data[if c.len() == 1 { 0 } else { j }]).collect()
            }
            Some(Val::Node(_)) => bail!("Gemm bias C must be a constant initializer"),
        };
        Ok(self.push(name, Op::Dense { weight, bias }, vec![a], vec![ashape[0], n]))
    }

    /// Gemm whose B is a runtime tensor (tree ensembles in hummingbird's
    /// GEMM form put the constant on the left): `alpha·A'·B' + beta·C` as a
    /// MatMul of the (transposed) operands, then the scaled C added.
    fn gemm_runtime_b(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let alpha = attr_f(node, "alpha", 1.0);
        let beta = attr_f(node, "beta", 1.0);
        let mut operands = Vec::new();
        for (i, flag) in [(0, "transA"), (1, "transB")] {
            let v = self.input(node, i)?;
            let shape = self.shape(&v);
            ensure!(shape.len() == 2, "Gemm needs 2-D inputs, got {shape:?} for input {i}");
            let v = if attr_i(node, flag, 0) == 0 {
                v
            } else {
                match v {
                    Val::Const(t) => Val::Const(transpose_const(&t, &[1, 0])),
                    Val::Node(id) => {
                        let op = Op::Transpose { perm: vec![1, 0] };
                        self.push(&format!("{name}.{flag}"), op, vec![id], vec![shape[1], shape[0]])
                    }
                }
            };
            operands.push(v);
        }
        let b = operands.pop().expect("two operands");
        let a = match operands.pop().expect("two operands") {
            Val::Const(t) => Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|v| v * alpha).collect())),
            node_a if alpha == 1.0 => node_a,
            node_a => {
                self.binary(Arith::Mul, node_a, Val::Const(Tensor::new(vec![], vec![alpha])), &format!("{name}.alpha"))?
            }
        };
        let (sa, sb) = (self.shape(&a), self.shape(&b));
        ensure!(sa[1] == sb[0], "Gemm inner dimensions differ: {sa:?} and {sb:?}");
        let product = self.matmul_vals(a, b, &format!("{name}.mm"))?;
        match self.opt_input(node, 2)? {
            None => Ok(product),
            Some(Val::Const(c)) => {
                let c = Tensor::new(c.shape.clone(), c.data.iter().map(|v| v * beta).collect());
                self.binary(Arith::Add, product, Val::Const(c), name)
            }
            Some(c) => {
                let c = if beta == 1.0 {
                    c
                } else {
                    self.binary(Arith::Mul, c, Val::Const(Tensor::new(vec![], vec![beta])), &format!("{name}.beta"))?
                };
                self.binary(Arith::Add, product, c, name)
            }
        }
    }

    fn matmul(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let a = self.input(node, 0)?;
        let b = self.input(node, 1)?;
        self.matmul_vals(a, b, name)
    }

    fn matmul_vals(&mut self, a: Val, b: Val, name: &str) -> Result<Val> {
        match (a, b) {
            (Val::Node(a), Val::Const(b)) if b.shape.len() > 2 => self.batched_matmul(a, &b, name),
            (Val::Node(a), Val::Const(b)) => {
                let ashape = self.graph.nodes[a].shape.clone();
                if b.shape.len() != 2 || ashape.is_empty() || ashape[ashape.len() - 1] != b.shape[0] {
                    bail!("MatMul shapes {ashape:?} x {:?} are not supported", b.shape);
                }
                let n = b.shape[1];
                let weight = transpose_const(&b, &[1, 0]);
                let mut shape = ashape.clone();
                *shape.last_mut().unwrap() = n;
                Ok(self.push(name, Op::Dense { weight, bias: vec![0.0; n] }, vec![a], shape))
            }
            (Val::Const(a), Val::Node(b)) if a.shape.len() > 2 => {
                // a·b = (bᵀ·aᵀ)ᵀ over the last two axes: a constant on the
                // right, with batch axes.
                let swap = |r: usize| -> Vec<usize> {
                    let mut p: Vec<usize> = (0..r).collect();
                    p.swap(r - 2, r - 1);
                    p
                };
                let bshape = self.graph.nodes[b].shape.clone();
                ensure!(bshape.len() >= 2, "MatMul shapes {:?} x {bshape:?} are not supported", a.shape);
                let mut bt_shape = bshape.clone();
                bt_shape.swap(bshape.len() - 2, bshape.len() - 1);
                let bt = self.graph.push(
                    &format!("{name}.bT"),
                    Op::Transpose { perm: swap(bshape.len()) },
                    vec![b],
                    bt_shape,
                );
                let at = transpose_const(&a, &swap(a.shape.len()));
                let yt = self.batched_matmul(bt, &at, &format!("{name}.T"))?;
                let yshape = self.shape(&yt);
                let r = yshape.len();
                let mut shape = yshape.clone();
                shape.swap(r - 2, r - 1);
                let Val::Node(yt) = yt else { unreachable!("a runtime product") };
                Ok(self.push(name, Op::Transpose { perm: swap(r) }, vec![yt], shape))
            }
            (Val::Const(a), Val::Node(b)) => {
                let bshape = self.graph.nodes[b].shape.clone();
                let r = bshape.len();
                if a.shape.len() != 2 || r < 2 || bshape[r - 2] != a.shape[1] {
                    bail!("MatMul shapes {:?} x {bshape:?} are not supported", a.shape);
                }
                let mut shape = bshape.clone();
                shape[r - 2] = a.shape[0];
                Ok(self.push(name, Op::DenseLeft { weight: a }, vec![b], shape))
            }
            (Val::Node(a), Val::Node(b)) => {
                let (sa, sb) = (self.graph.nodes[a].shape.clone(), self.graph.nodes[b].shape.clone());
                let (ra, rb) = (sa.len(), sb.len());
                if ra < 2 || ra != rb || sa[..ra - 2] != sb[..rb - 2] || sa[ra - 1] != sb[rb - 2] {
                    bail!("MatMul of runtime tensors {sa:?} x {sb:?} is not supported");
                }
                let mut shape = sa.clone();
                shape[ra - 1] = sb[rb - 1];
                Ok(self.push(name, Op::MatMulDyn, vec![a, b], shape))
            }
            (Val::Const(_), Val::Const(_)) => bail!("MatMul of two constants is not supported"),
        }
    }

    /// The single NCHW input of a spatial op, with its shape.
    fn spatial_input(&mut self, node: &NodeProto) -> Result<(NodeId, Vec<usize>)> {
        let Val::Node(x) = self.input(node, 0)? else { bail!("the input must not be a constant") };
        let shape = self.graph.nodes[x].shape.clone();
        if shape.len() != 4 {
            bail!("only 2-D spatial inputs (NCHW) are supported, got shape {shape:?}");
        }
        Ok((x, shape))
    }

    fn window(&self, node: &NodeProto, shape: &[usize], kernel: Option<[usize; 2]>) -> Result<Window> {
        let pair = |name: &str, default: usize| -> Result<[usize; 2]> {
            match attr_ints(node, name) {
                None => Ok([default, default]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
                Some(v) => bail!("attribute {name} = {v:?} is not two positive integers"),
            }
        };
        let kernel = match (attr_ints(node, "kernel_shape"), kernel) {
            (Some(_), _) | (None, None) => pair("kernel_shape", 0)?,
            (None, Some(k)) => k,
        };
        if kernel.contains(&0) {
            bail!("missing kernel_shape");
        }
        let stride = pair("strides", 1)?;
        let dilation = pair("dilations", 1)?;
        let mut pads = [0usize; 4];
        match attr_s(node, "auto_pad").as_deref().unwrap_or("NOTSET") {
            "NOTSET" => {
                if let Some(p) = attr_ints(node, "pads") {
                    if p.len() != 4 || p.iter().any(|&x| x < 0) {
                        bail!("pads {p:?} is not four non-negative integers");
                    }
                    // ONNX order is [top, left, bottom, right].
                    pads = [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize];
                }
            }
            "VALID" => {}
            mode @ ("SAME_UPPER" | "SAME_LOWER") => {
                for d in 0..2 {
                    let input = shape[2 + d];
                    let out = input.div_ceil(stride[d]);
                    let eff = dilation[d] * (kernel[d] - 1) + 1;
                    let total = ((out - 1) * stride[d] + eff).saturating_sub(input);
                    let (small, big) = (total / 2, total - total / 2);
                    let (before, after) = if mode == "SAME_UPPER" { (small, big) } else { (big, small) };
                    pads[d] = before;
                    pads[d + 2] = after;
                }
            }
            other => bail!("auto_pad {other} is not supported"),
        }
        // ceil_mode: the output rounds up, the last window starting inside
        // the input or its leading pad, and the bottom and right pads grow
        // to hold it.
        let mut overhang = [0usize; 2];
        if attr_i(node, "ceil_mode", 0) != 0 {
            for d in 0..2 {
                let eff = dilation[d] * (kernel[d] - 1) + 1;
                let padded = shape[2 + d] + pads[d] + pads[d + 2];
                ensure!(padded >= eff, "the pooling window is larger than its padded input");
                let mut out = (padded - eff).div_ceil(stride[d]) + 1;
                if (out - 1) * stride[d] >= shape[2 + d] + pads[d] {
                    out -= 1;
                }
                overhang[d] = ((out - 1) * stride[d] + eff).saturating_sub(padded);
                pads[d + 2] += overhang[d];
            }
        }
        Ok(Window { kernel, stride, pads, dilation, overhang })
    }

    fn conv(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        if let Val::Node(x) = self.input(node, 0)? {
            if self.graph.nodes[x].shape.len() == 5 {
                return self.conv3d(node, name, x);
            }
        }
        let (x, shape) = self.spatial_input(node)?;
        let weight = self.const_input(node, 1, "the Conv weight")?;
        let groups = attr_i(node, "group", 1);
        ensure!(groups >= 1, "Conv group {groups}");
        let groups = groups as usize;
        if weight.shape.len() != 4 || weight.shape[1] * groups != shape[1] || !weight.shape[0].is_multiple_of(groups) {
            bail!("Conv weight {:?} in {groups} group(s) does not match input {shape:?}", weight.shape);
        }
        let weight = if groups == 1 { weight } else { ungroup(&weight, groups) };
        let co = weight.shape[0];
        let bias = match self.opt_input(node, 2)? {
            None => vec![0.0; co],
            Some(Val::Const(b)) if b.len() == co => b.data,
            Some(_) => bail!("Conv bias must be a constant of {co} values"),
        };
        let window = self.window(node, &shape, Some([weight.shape[2], weight.shape[3]]))?;
        if window.kernel != [weight.shape[2], weight.shape[3]] {
            bail!("kernel_shape {:?} does not match the weight {:?}", window.kernel, weight.shape);
        }
        let hw = window.output_hw(shape[2], shape[3]).ok_or_else(|| anyhow!("kernel larger than input"))?;
        Ok(self.push(name, Op::Conv { weight, bias, window }, vec![x], vec![shape[0], co, hw[0], hw[1]]))
    }

    /// A 3-D convolution (NCDHW) as 2-D ones: each output depth plane is
    /// the sum, over the kernel's depth taps that land inside the input, of
    /// a 2-D convolution of one input plane with that tap's 2-D kernel (the
    /// bias on the first); the planes are then stacked.
    fn conv3d(&mut self, node: &NodeProto, name: &str, x: NodeId) -> Result<Val> {
        let shape = self.graph.nodes[x].shape.clone();
        let w = self.const_input(node, 1, "the Conv weight")?;
        ensure!(w.shape.len() == 5, "3-D Conv weight {:?} is not 5-D", w.shape);
        ensure!(
            attr_s(node, "auto_pad").is_none_or(|p| p == "NOTSET" || p == "VALID"),
            "3-D Conv with auto_pad SAME is not supported"
        );
        let triple = |attr_name: &str, default: i64| -> Result<[usize; 3]> {
            match attr_ints(node, attr_name) {
                None => Ok([default as usize; 3]),
                Some(v) if v.len() == 3 && v.iter().all(|&x| x > 0) => {
                    Ok([v[0] as usize, v[1] as usize, v[2] as usize])
                }
                Some(v) => bail!("attribute {attr_name} = {v:?} is not three positive integers"),
            }
        };
        let (stride, dilation) = (triple("strides", 1)?, triple("dilations", 1)?);
        let pads: Vec<usize> = match attr_ints(node, "pads") {
            None => vec![0; 6],
            Some(p) if p.len() == 6 && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
            Some(p) => bail!("pads {p:?} is not six non-negative integers"),
        };
        let (depth, kd) = (shape[2], w.shape[2]);
        let reach = dilation[0] * (kd - 1) + 1;
        ensure!(depth + pads[0] + pads[3] >= reach, "the kernel is deeper than the padded input");
        let out_depth = (depth + pads[0] + pads[3] - reach) / stride[0] + 1;
        let ints = |n: &str, v: Vec<i64>| AttributeProto { name: n.into(), r#type: 7, ints: v, ..Default::default() };
        let mut attribute = vec![
            ints("kernel_shape", vec![w.shape[3] as i64, w.shape[4] as i64]),
            ints("strides", vec![stride[1] as i64, stride[2] as i64]),
            ints("dilations", vec![dilation[1] as i64, dilation[2] as i64]),
            ints("pads", vec![pads[1] as i64, pads[2] as i64, pads[4] as i64, pads[5] as i64]),
        ];
        attribute.extend(attr(node, "group").cloned());
        let st = strides(&shape);
        let plane = vec![shape[0], shape[1], shape[3], shape[4]];
        let tap = w.shape[1] * w.shape[3] * w.shape[4];
        let mut planes = Vec::with_capacity(out_depth);
        for o in 0..out_depth {
            let mut sum: Option<Val> = None;
            for k in 0..kd {
                let Some(d) = (o * stride[0] + k * dilation[0]).checked_sub(pads[0]).filter(|&d| d < depth) else {
                    continue;
                };
                let at = format!("{name}#d{o}k{k}");
                let mut map = Vec::new();
                for_each_index(&plane, |p| {
                    map.push(Some(p[0] * st[0] + p[1] * st[1] + d * st[2] + p[2] * st[3] + p[3] * st[4]))
                });
                let input = self.rearrange(Val::Node(x), plane.clone(), map, 0.0, &format!("{at}.in"))?;
                let mut wk = Vec::with_capacity(w.shape[0] * tap);
                for chunk in w.data.chunks(w.data.len() / w.shape[0]) {
                    for ci in 0..w.shape[1] {
                        let from = (ci * kd + k) * w.shape[3] * w.shape[4];
                        wk.extend_from_slice(&chunk[from..from + w.shape[3] * w.shape[4]]);
                    }
                }
                let wk = Tensor::new(vec![w.shape[0], w.shape[1], w.shape[3], w.shape[4]], wk);
                self.vals.insert(format!("{at}.x"), input);
                self.vals.insert(format!("{at}.w"), Val::Const(wk));
                let mut inputs = vec![format!("{at}.x"), format!("{at}.w")];
                if sum.is_none() && node.input.len() > 2 && !node.input[2].is_empty() {
                    inputs.push(node.input[2].clone());
                }
                let conv2d = NodeProto {
                    op_type: "Conv".into(),
                    input: inputs,
                    output: vec![format!("{at}.y")],
                    attribute: attribute.clone(),
                    ..Default::default()
                };
                let y = self.conv(&conv2d, &format!("{name}.d{o}k{k}"))?;
                sum = Some(match sum {
                    None => y,
                    Some(s) => self.binary(Arith::Add, s, y, &format!("{name}.d{o}k{k}.sum"))?,
                });
            }
            let plane_out = sum.ok_or_else(|| anyhow!("an output depth's window lies entirely in the padding"))?;
            let ps = self.shape(&plane_out);
            planes.push(self.reshape(plane_out, vec![ps[0], ps[1], 1, ps[2], ps[3]], &format!("{name}.d{o}"))?);
        }
        self.cat(planes, 2, name)
    }

    /// ConvTranspose as the convolution it equals: the input spread out by
    /// the stride (zeros between its elements), padded by `dilation·(k−1)`
    /// less the pads (cropped where the pads are larger), and convolved at
    /// stride 1 with the kernel flipped and its channel axes swapped. The
    /// zeros are one constant; groups become a block-diagonal weight.
    fn conv_transpose(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let (x, shape) = self.spatial_input(node)?;
        let w = self.const_input(node, 1, "the ConvTranspose weight")?;
        let groups = attr_i(node, "group", 1).max(1) as usize;
        ensure!(
            w.shape.len() == 4 && w.shape[0] == shape[1] && shape[1].is_multiple_of(groups),
            "ConvTranspose weight {:?} in {groups} group(s) does not match input {shape:?}",
            w.shape
        );
        let (ci, cog, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        let co = cog * groups;
        let pair = |attr_name: &str, default: i64| -> Result<[usize; 2]> {
            match attr_ints(node, attr_name) {
                None => Ok([default as usize; 2]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => Ok([v[0] as usize, v[1] as usize]),
                Some(v) => bail!("attribute {attr_name} = {v:?} is not two non-negative integers"),
            }
        };
        let stride = pair("strides", 1)?;
        let dilation = pair("dilations", 1)?;
        let out_pad = pair("output_padding", 0)?;
        ensure!(stride.iter().chain(&dilation).all(|&v| v > 0), "ConvTranspose strides and dilations must be positive");
        let kernel = [kh, kw];
        let span = |d: usize| dilation[d] * (kernel[d] - 1) + 1;
        // Pads [begin_h, begin_w, end_h, end_w], from `pads` or `output_shape`.
        let mut pads = [0usize; 4];
        let auto = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        if let Some(out) = attr_ints(node, "output_shape") {
            ensure!(out.len() == 2, "output_shape {out:?} is not two sizes");
            for d in 0..2 {
                let full = stride[d] * (shape[2 + d] - 1) + out_pad[d] + span(d);
                let total = full as i64 - out[d];
                ensure!(total >= 0, "output_shape {out:?} is larger than the transposed convolution gives");
                let total = total as usize;
                let (small, big) = (total / 2, total - total / 2);
                (pads[d], pads[d + 2]) = if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
            }
        } else if matches!(auto.as_str(), "SAME_UPPER" | "SAME_LOWER") {
            for d in 0..2 {
                let full = stride[d] * (shape[2 + d] - 1) + out_pad[d] + span(d);
                let total = full - shape[2 + d] * stride[d];
                let (small, big) = (total / 2, total - total / 2);
                (pads[d], pads[d + 2]) = if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
            }
        } else if let Some(p) = attr_ints(node, "pads") {
            ensure!(p.len() == 4 && p.iter().all(|&v| v >= 0), "pads {p:?} is not four non-negative integers");
            pads = [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize];
        }
        // The spread and padded input.
        let (n, h, wd) = (shape[0], shape[2], shape[3]);
        let before = |d: usize| span(d) as i64 - 1 - pads[d] as i64;
        let after = |d: usize| span(d) as i64 - 1 - pads[d + 2] as i64 + out_pad[d] as i64;
        let dims = [h, wd];
        let size = |d: usize| (stride[d] * (dims[d] - 1) + 1) as i64 + before(d) + after(d);
        ensure!(size(0) >= span(0) as i64 && size(1) >= span(1) as i64, "ConvTranspose output would be empty");
        let (sh, sw) = (size(0) as usize, size(1) as usize);
        let mut map = Vec::with_capacity(n * ci * sh * sw);
        for b in 0..n {
            for c in 0..ci {
                for y in 0..sh {
                    for xx in 0..sw {
                        let src = |pos: usize, d: usize| -> Option<usize> {
                            let p = pos as i64 - before(d);
                            (p >= 0 && p % stride[d] as i64 == 0 && ((p / stride[d] as i64) as usize) < dims[d])
                                .then(|| (p / stride[d] as i64) as usize)
                        };
                        map.push(match (src(y, 0), src(xx, 1)) {
                            (Some(iy), Some(ix)) => Some(((b * ci + c) * h + iy) * wd + ix),
                            _ => None,
                        });
                    }
                }
            }
        }
        let spread = self.rearrange(Val::Node(x), vec![n, ci, sh, sw], map, 0.0, &format!("{name}.spread"))?;
        // The equivalent convolution's weight [co, ci, kh, kw]: flipped, axes swapped.
        let cig = ci / groups;
        let mut data = vec![0.0; co * ci * kh * kw];
        for i in 0..ci {
            let g = i / cig;
            for j in 0..cog {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let from = ((i * cog + j) * kh + ky) * kw + kx;
                        let to = (((g * cog + j) * ci + i) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx);
                        data[to] = w.data[from];
                    }
                }
            }
        }
        let weight = Tensor::new(vec![co, ci, kh, kw], data);
        let bias = match self.opt_input(node, 2)? {
            None => vec![0.0; co],
            Some(Val::Const(b)) if b.len() == co => b.data,
            Some(_) => bail!("ConvTranspose bias must be a constant of {co} values"),
        };
        let window = Window { kernel, stride: [1, 1], pads: [0; 4], dilation, overhang: [0; 2] };
        let hw = window.output_hw(sh, sw).ok_or_else(|| anyhow!("ConvTranspose kernel larger than its input"))?;
        let Val::Node(spread) = spread else { unreachable!("a runtime input stays runtime") };
        Ok(self.push(name, Op::Conv { weight, bias, window }, vec![spread], vec![n, co, hw[0], hw[1]]))
    }

    /// Resize and Upsample, nearest or linear, by scales or sizes, with
    /// ONNX's coordinate transformations and nearest modes. Nearest is a
    /// rearrangement; linear is separable, one dense layer (at most two
    /// weights per output) along each axis that changes.
    fn resize(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let rank = shape.len();
        let upsample = node.op_type == "Upsample";
        ensure!(attr_i(node, "antialias", 0) == 0, "Resize with antialias is not supported");
        ensure!(attr(node, "axes").is_none(), "Resize with axes is not supported");
        let mode = attr_s(node, "mode").unwrap_or_else(|| "nearest".into());
        ensure!(
            matches!(mode.as_str(), "nearest" | "linear" | "bilinear" | "cubic" | "bicubic"),
            "Resize mode {mode} is not supported"
        );
        let cubic = mode.ends_with("cubic");
        let cubic_a = attr_f(node, "cubic_coeff_a", -0.75);
        let exclude_outside = attr_i(node, "exclude_outside", 0) != 0;
        let old_semantics = upsample || self.opset < 11;
        let coords = if old_semantics {
            "asymmetric".to_string()
        } else {
            attr_s(node, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into())
        };
        let nearest = if old_semantics && mode == "nearest" {
            "floor".to_string()
        } else {
            attr_s(node, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into())
        };
        let (scales_at, sizes_at) = if upsample || self.opset < 11 { (1, usize::MAX) } else { (2, 3) };
        let scales = if upsample && self.opset < 9 {
            attr(node, "scales").map(|a| a.floats.iter().map(|&v| v as f64).collect::<Vec<_>>())
        } else {
            self.opt_input(node, scales_at)?
                .map(|v| match v {
                    Val::Const(t) => Ok(t.data),
                    Val::Node(_) => bail!("Resize with runtime scales is not supported"),
                })
                .transpose()?
                .filter(|s| !s.is_empty())
        };
        let sizes = if sizes_at == usize::MAX {
            None
        } else {
            self.opt_input(node, sizes_at)?
                .map(|v| match v {
                    Val::Const(t) => Ok(t.data.iter().map(|&v| v as usize).collect::<Vec<_>>()),
                    Val::Node(_) => bail!("Resize with runtime sizes is not supported"),
                })
                .transpose()?
                .filter(|s| !s.is_empty())
        };
        let (out, scale): (Vec<usize>, Vec<f64>) = match (sizes, scales) {
            (Some(sz), _) => {
                ensure!(sz.len() == rank, "Resize sizes {sz:?} for a rank-{rank} input");
                ensure!(sz.iter().all(|&v| v > 0), "Resize to an empty size {sz:?}");
                let sc = sz.iter().zip(&shape).map(|(&o, &i)| o as f64 / i as f64).collect();
                (sz, sc)
            }
            (None, Some(sc)) => {
                ensure!(
                    sc.len() == rank && sc.iter().all(|&v| v > 0.0),
                    "Resize scales {sc:?} for a rank-{rank} input"
                );
                ((0..rank).map(|d| (shape[d] as f64 * sc[d]).floor().max(1.0) as usize).collect(), sc)
            }
            (None, None) => bail!("Resize needs scales or sizes"),
        };
        check_size(&out)?;
        // Source coordinate of output index o along an axis.
        let source = |o: usize, d: usize| -> Result<f64> {
            let (o, i, n, s) = (o as f64, shape[d] as f64, out[d] as f64, scale[d]);
            Ok(match coords.as_str() {
                "half_pixel" => (o + 0.5) / s - 0.5,
                "pytorch_half_pixel" if n > 1.0 => (o + 0.5) / s - 0.5,
                "pytorch_half_pixel" => 0.0,
                "asymmetric" => o / s,
                "align_corners" if n > 1.0 => o * (i - 1.0) / (n - 1.0),
                "align_corners" => 0.0,
                "half_pixel_symmetric" => {
                    let adj = n / (s * i);
                    let offset = i / 2.0 * (1.0 - adj);
                    offset + (o + 0.5) / s - 0.5
                }
                other => bail!("Resize coordinate_transformation_mode {other} is not supported"),
            })
        };
        if mode == "nearest" {
            let mut index: Vec<Vec<usize>> = Vec::with_capacity(rank);
            for d in 0..rank {
                let mut along = Vec::with_capacity(out[d]);
                for o in 0..out[d] {
                    let c = source(o, d)?;
                    let frac = c - c.floor();
                    let r = match nearest.as_str() {
                        "round_prefer_floor" if frac == 0.5 => c.floor(),
                        "round_prefer_ceil" if frac == 0.5 => c.ceil(),
                        "round_prefer_floor" | "round_prefer_ceil" => c.round(),
                        "floor" => c.floor(),
                        "ceil" => c.ceil(),
                        other => bail!("Resize nearest_mode {other} is not supported"),
                    };
                    along.push(r.clamp(0.0, (shape[d] - 1) as f64) as usize);
                }
                index.push(along);
            }
            let st = strides(&shape);
            let mut map = Vec::new();
            for_each_index(&out, |pos| map.push(Some(pos.iter().enumerate().map(|(d, &p)| index[d][p] * st[d]).sum())));
            return self.rearrange(x, out, map, 0.0, name);
        }
        // Linear and cubic: one axis at a time, moved last for a dense layer.
        let mut y = x;
        let mut cur = shape.clone();
        for d in 0..rank {
            let mut weight = vec![0.0; out[d] * shape[d]];
            let n = shape[d];
            for o in 0..out[d] {
                let row = &mut weight[o * n..(o + 1) * n];
                if cubic {
                    cubic_taps(source(o, d)?, n, cubic_a, exclude_outside, row);
                    continue;
                }
                let c = source(o, d)?.clamp(0.0, (n - 1) as f64);
                let i0 = c.floor() as usize;
                let i1 = (i0 + 1).min(n - 1);
                let t = c - i0 as f64;
                row[i0] += 1.0 - t;
                row[i1] += t;
            }
            let identity = out[d] == shape[d] && (0..out[d]).all(|o| weight[o * shape[d] + o] == 1.0);
            if identity {
                continue;
            }
            let weight = Tensor::new(vec![out[d], shape[d]], weight);
            let (perm, back, moved) = axis_last(&cur, d);
            let node_y = self.node_of(y, &format!("{name}.in{d}"));
            let t = self.graph.push(&format!("{name}.axis{d}"), Op::Transpose { perm }, vec![node_y], moved);
            let dense = self.dense(Val::Node(t), &weight, &vec![0.0; out[d]], &format!("{name}.lerp{d}"))?;
            cur[d] = out[d];
            let Val::Node(dn) = dense else { unreachable!("a dense layer is a runtime value") };
            y = self.push(&format!("{name}.back{d}"), Op::Transpose { perm: back }, vec![dn], cur.clone());
        }
        Ok(y)
    }

    /// Einsum of one or two tensors: the equation parsed (an ellipsis stands
    /// for the leading axes its input has beyond its letters, the same for
    /// every input), the output's labels explicit or, without `->`, the
    /// ellipsis then the letters used once, in alphabetical order.
    fn einsum(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let eq: String = attr_s(node, "equation").unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
        let vals: Vec<Val> = (0..node.input.len()).map(|i| self.input(node, i)).collect::<Result<_>>()?;
        ensure!(!vals.is_empty(), "Einsum without inputs");
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        ensure!(terms.len() == vals.len(), "Einsum equation `{eq}` names {} inputs for {}", terms.len(), vals.len());
        // Ellipsis axes get labels no letter uses.
        let mut ellipsis: Option<usize> = None;
        let mut labels = Vec::new();
        for (t, v) in terms.iter().zip(&vals) {
            let rank = self.shape(v).len();
            let letters = t.replace("...", "");
            ensure!(letters.bytes().all(|c| c.is_ascii_alphabetic()), "Einsum equation `{eq}` has a bad term `{t}`");
            let mut l: Vec<u8> = Vec::new();
            if t.contains("...") {
                let extra = rank
                    .checked_sub(letters.len())
                    .ok_or_else(|| anyhow!("Einsum term `{t}` for a rank-{rank} input"))?;
                ensure!(ellipsis.is_none_or(|e| e == extra), "Einsum ellipses of different ranks are not supported");
                ellipsis = Some(extra);
                let (before, after) = t.split_once("...").expect("checked");
                l.extend(before.bytes());
                l.extend((0..extra).map(|i| b'0' + i as u8));
                l.extend(after.bytes());
            } else {
                l.extend(letters.bytes());
            }
            ensure!(l.len() == rank, "Einsum term `{t}` for a rank-{rank} input");
            labels.push(l);
        }
        let mut size = [0usize; 256];
        for (l, v) in labels.iter().zip(&vals) {
            for (&c, &n) in l.iter().zip(&self.shape(v)) {
                ensure!(size[c as usize] == 0 || size[c as usize] == n, "Einsum label `{}` of two sizes", c as char);
                size[c as usize] = n;
            }
        }
        let ell: Vec<u8> = (0..ellipsis.unwrap_or(0)).map(|i| b'0' + i as u8).collect();
        let out: Vec<u8> = match rhs {
            Some(r) => {
                let mut o = Vec::new();
                let (before, after) = r.split_once("...").unwrap_or((r.as_str(), ""));
                o.extend(before.bytes());
                if r.contains("...") {
                    o.extend(&ell);
                }
                o.extend(after.bytes());
                ensure!(o.iter().all(|&c| size[c as usize] > 0), "Einsum output `{r}` names a label no input has");
                o
            }
            None => {
                let mut once: Vec<u8> = labels
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|c| c.is_ascii_alphabetic() && labels.iter().flatten().filter(|&d| d == c).count() == 1)
                    .collect();
                once.sort_unstable();
                ell.iter().copied().chain(once).collect()
            }
        };
        let shape: Vec<usize> = out.iter().map(|&c| size[c as usize]).collect();
        check_size(&shape)?;
        let ids: Vec<NodeId> =
            vals.into_iter().enumerate().map(|(i, v)| self.node_of(v, &format!("{name}.in{i}"))).collect();
        if ids.len() <= 2 {
            return Ok(self.push(name, Op::Einsum { labels, out }, ids, shape));
        }
        // Three or more inputs: contracted pairwise, left to right, each
        // step keeping the labels a later input or the output still needs.
        let (mut acc, mut acc_labels) = (ids[0], labels[0].clone());
        for i in 1..ids.len() - 1 {
            let needed = |c: &u8| labels[i + 1..].iter().flatten().chain(&out).any(|d| d == c);
            let mut kept: Vec<u8> = Vec::new();
            for &c in acc_labels.iter().chain(&labels[i]) {
                if needed(&c) && !kept.contains(&c) {
                    kept.push(c);
                }
            }
            let step_shape: Vec<usize> = kept.iter().map(|&c| size[c as usize]).collect();
            check_size(&step_shape)?;
            let op = Op::Einsum { labels: vec![acc_labels, labels[i].clone()], out: kept.clone() };
            acc = self.graph.push(&format!("{name}.{i}"), op, vec![acc, ids[i]], step_shape);
            acc_labels = kept;
        }
        let last = ids.len() - 1;
        let op = Op::Einsum { labels: vec![acc_labels, labels[last].clone()], out };
        Ok(self.push(name, op, vec![acc, ids[last]], shape))
    }

    /// BitShift by constant amounts: LEFT multiplies by 2^k (exact), RIGHT
    /// floors the division by 2^k (one range-checked division); folded on
    /// constants.
    fn bit_shift(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let amounts = match self.input(node, 1)? {
            Val::Const(t) => t,
            Val::Node(_) => bail!("BitShift by runtime amounts is not supported"),
        };
        let right = match attr_s(node, "direction").as_deref() {
            Some("RIGHT") => true,
            Some("LEFT") => false,
            other => bail!("BitShift direction {other:?} is not LEFT or RIGHT"),
        };
        let k = amounts.data.first().copied().unwrap_or(0.0);
        ensure!(
            amounts.data.iter().all(|&a| a == k) && (0.0..=31.0).contains(&k) && k.fract() == 0.0,
            "BitShift amounts {:?} are not one whole number from 0 to 31",
            amounts.data
        );
        let factor = 2f64.powi(k as i32);
        if let Val::Const(t) = &x {
            let data = t.data.iter().map(|&v| if right { (v / factor).floor() } else { v * factor }).collect();
            return Ok(Val::Const(Tensor::new(t.shape.clone(), data)));
        }
        if !right {
            return self.multiply(x, Val::Const(Tensor::new(vec![], vec![factor])), name);
        }
        let Val::Node(id) = x else { unreachable!("constants returned above") };
        let shape = self.graph.nodes[id].shape.clone();
        Ok(self.push(name, Op::ShiftRight { bits: k as u32 }, vec![id], shape))
    }

    /// CumSum along an axis (exclusive, reverse): an Einsum with a constant
    /// triangular matrix, so one dense step per output; folded on constants.
    fn cum_sum(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let ax = self.const_input(node, 1, "the CumSum axis")?;
        ensure!(ax.data.len() == 1, "the CumSum axis must be one value");
        let a = axis(ax.data[0] as i64, shape.len())?;
        let (exclusive, reverse) = (attr_i(node, "exclusive", 0) != 0, attr_i(node, "reverse", 0) != 0);
        let n = shape[a];
        // t[i][j] = 1 where output i sums input j.
        let takes = |i: usize, j: usize| match (reverse, exclusive) {
            (false, false) => j <= i,
            (false, true) => j < i,
            (true, false) => j >= i,
            (true, true) => j > i,
        };
        let t: Vec<f64> = (0..n * n).map(|k| f64::from(u8::from(takes(k / n, k % n)))).collect();
        if let Val::Const(c) = &x {
            let st = strides(&shape);
            let mut data = vec![0.0; c.data.len()];
            for (k, out) in data.iter_mut().enumerate() {
                let i = k / st[a] % n;
                let base = k - i * st[a];
                *out = (0..n).filter(|&j| takes(i, j)).map(|j| c.data[base + j * st[a]]).sum();
            }
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        let labels: Vec<u8> = (0..shape.len()).map(|d| b'a' + d as u8).collect();
        let mut out = labels.clone();
        out[a] = b'z';
        let tri = self.graph.push(&format!("{name}.tri"), Op::Const(Tensor::new(vec![n, n], t)), vec![], vec![n, n]);
        let Val::Node(xid) = x else { unreachable!("constants returned above") };
        let op = Op::Einsum { labels: vec![labels.clone(), vec![b'z', labels[a]]], out };
        Ok(self.push(name, op, vec![xid, tri], shape))
    }

    /// Constant indices of an indexing op, each made non-negative and
    /// checked against the extent `n` of the axis it indexes.
    fn const_indices(&self, node: &NodeProto, i: usize) -> Result<Tensor> {
        match self.input(node, i)? {
            Val::Const(t) => Ok(t),
            Val::Node(_) => bail!("{} with runtime indices is not supported", node.op_type),
        }
    }

    /// GatherElements (an index per output element along an axis) and
    /// GatherND (index tuples into the leading axes; batch_dims 0) by
    /// constant indices: rearrangements.
    fn gather_indexed(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        match (self.input(node, 1)?, node.op_type.as_str()) {
            (Val::Node(idx), "GatherElements") => {
                let a = axis(attr_i(node, "axis", 0), shape.len())?;
                return self.gather_elements_dyn(x, idx, a, name);
            }
            (Val::Node(idx), _) => {
                ensure!(attr_i(node, "batch_dims", 0) == 0, "GatherND with batch_dims is not supported");
                return self.gather_nd_dyn(x, idx, name);
            }
            (Val::Const(_), _) => {}
        }
        let idx = self.const_indices(node, 1)?;
        let st = strides(&shape);
        let wrap = |v: f64, n: usize| -> Result<usize> {
            let i = v as i64;
            let j = if i < 0 { i + n as i64 } else { i };
            ensure!((0..n as i64).contains(&j), "index {i} is out of range for an axis of {n}");
            Ok(j as usize)
        };
        if node.op_type == "GatherElements" {
            let a = axis(attr_i(node, "axis", 0), shape.len())?;
            ensure!(
                idx.shape.len() == shape.len(),
                "GatherElements indices of rank {} for data of rank {}",
                idx.shape.len(),
                shape.len()
            );
            let mut map = Vec::with_capacity(idx.len());
            let mut flat = 0;
            let mut err = None;
            for_each_index(&idx.shape, |pos| {
                match wrap(idx.data[flat], shape[a]) {
                    Ok(j) => {
                        map.push(Some(pos.iter().enumerate().map(|(d, &p)| if d == a { j } else { p } * st[d]).sum()))
                    }
                    Err(e) => {
                        err.get_or_insert(e);
                    }
                }
                flat += 1;
            });
            if let Some(e) = err {
                return Err(e);
            }
            return self.rearrange(x, idx.shape.clone(), map, 0.0, name);
        }
        ensure!(attr_i(node, "batch_dims", 0) == 0, "GatherND with batch_dims is not supported");
        let q = *idx.shape.last().ok_or_else(|| anyhow!("GatherND with scalar indices"))?;
        ensure!(q >= 1 && q <= shape.len(), "GatherND tuples of {q} for data of rank {}", shape.len());
        let inner: usize = shape[q..].iter().product();
        let mut out = idx.shape[..idx.shape.len() - 1].to_vec();
        out.extend(&shape[q..]);
        let mut map = Vec::new();
        for tuple in idx.data.chunks(q) {
            let mut base = 0;
            for (d, &v) in tuple.iter().enumerate() {
                base += wrap(v, shape[d])? * st[d];
            }
            map.extend((0..inner).map(|k| Some(base + k)));
        }
        self.rearrange(x, out, map, 0.0, name)
    }

    /// ScatterElements (and the older Scatter) and ScatterND with constant
    /// indices and no reduction: the data and the updates side by side,
    /// each output element taken from one of them.
    fn scatter(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let data = self.input(node, 0)?;
        let updates = self.input(node, 2)?;
        let shape = self.shape(&data);
        let ushape = self.shape(&updates);
        if let Val::Node(idx) = self.input(node, 1)? {
            return self.scatter_dyn(node, name, data, idx, updates);
        }
        let idx = self.const_indices(node, 1)?;
        let reduction = attr_s(node, "reduction").unwrap_or_else(|| "none".into());
        let combine = match reduction.as_str() {
            "none" | "add" => None,
            "mul" => Some(Reduce::Prod),
            "max" => Some(Reduce::Max),
            "min" => Some(Reduce::Min),
            other => bail!("{} with reduction {other} is not supported", node.op_type),
        };
        // Whether each element keeps every source written to it.
        let add = reduction != "none";
        let n: usize = shape.iter().product();
        let st = strides(&shape);
        let wrap = |v: f64, len: usize| -> Result<usize> {
            let i = v as i64;
            let j = if i < 0 { i + len as i64 } else { i };
            ensure!((0..len as i64).contains(&j), "index {i} is out of range for an axis of {len}");
            Ok(j as usize)
        };
        // Sources of each output element, in the data and then the updates
        // concatenated: its own, replaced by the last update written there,
        // or (reduction add) followed by every update written there.
        let mut sources: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        let mut write = |at: usize, from: usize| {
            if add {
                sources[at].push(from);
            } else {
                sources[at] = vec![from];
            }
        };
        if node.op_type == "ScatterND" {
            let q = *idx.shape.last().ok_or_else(|| anyhow!("ScatterND with scalar indices"))?;
            ensure!(q >= 1 && q <= shape.len(), "ScatterND tuples of {q} for data of rank {}", shape.len());
            let inner: usize = shape[q..].iter().product();
            for (u, tuple) in idx.data.chunks(q).enumerate() {
                let mut base = 0;
                for (d, &v) in tuple.iter().enumerate() {
                    base += wrap(v, shape[d])? * st[d];
                }
                for k in 0..inner {
                    write(base + k, n + u * inner + k);
                }
            }
        } else {
            let a = axis(attr_i(node, "axis", 0), shape.len())?;
            ensure!(idx.shape == ushape, "{} indices {:?} and updates {ushape:?} differ", node.op_type, idx.shape);
            let mut positions = Vec::new();
            for_each_index(&idx.shape, |pos| positions.push(pos.to_vec()));
            for (u, pos) in positions.iter().enumerate() {
                let j = wrap(idx.data[u], shape[a])?;
                let at: usize = pos.iter().enumerate().map(|(d, &p)| if d == a { j } else { p } * st[d]).sum();
                write(at, n + u);
            }
        }
        let flat_data = self.reshape(data, vec![n], &format!("{name}.data"))?;
        let m: usize = ushape.iter().product();
        let flat_updates = self.reshape(updates, vec![m], &format!("{name}.updates"))?;
        let both = self.cat(vec![flat_data, flat_updates], 0, &format!("{name}.both"))?;
        if !add {
            let map = sources.into_iter().map(|s| s.first().copied()).collect();
            return self.rearrange(both, shape, map, 0.0, name);
        }
        if let Some(kind) = combine {
            // Each element's sources side by side (a product's padded with
            // 1, an extreme's with its own value), reduced along them.
            let width = sources.iter().map(Vec::len).max().unwrap_or(1);
            let mut map = Vec::with_capacity(n * width);
            for s in &sources {
                map.extend(
                    (0..width).map(|k| s.get(k).copied().or(if kind == Reduce::Prod { None } else { Some(s[0]) })),
                );
            }
            let side = self.rearrange(both, vec![n, width], map, 1.0, &format!("{name}.sources"))?;
            let flat = self.reduce_over(side, vec![1], false, kind, &format!("{name}.combine"))?;
            return self.reshape(flat, shape, name);
        }
        // Sums: a constant 0/1 matrix times the concatenation, one dense
        // step per output; folded on constants.
        let mut sum = vec![0.0; n * (n + m)];
        for (i, s) in sources.iter().enumerate() {
            for &j in s {
                sum[i * (n + m) + j] += 1.0;
            }
        }
        let flat = match both {
            Val::Const(t) => {
                let data = (0..n).map(|i| (0..n + m).map(|j| sum[i * (n + m) + j] * t.data[j]).sum()).collect();
                Val::Const(Tensor::new(vec![n], data))
            }
            Val::Node(id) => {
                let matrix = Op::Const(Tensor::new(vec![n, n + m], sum));
                let matrix = self.graph.push(&format!("{name}.sum"), matrix, vec![], vec![n, n + m]);
                let op = Op::Einsum { labels: vec![vec![b'j'], vec![b'i', b'j']], out: vec![b'i'] };
                self.push(&format!("{name}.flat"), op, vec![id, matrix], vec![n])
            }
        };
        self.reshape(flat, shape, name)
    }

    /// ScatterElements by runtime indices (reduction none): each update
    /// chooses its position along the axis at run time.
    fn scatter_dyn(&mut self, node: &NodeProto, name: &str, data: Val, idx: NodeId, updates: Val) -> Result<Val> {
        ensure!(
            attr_s(node, "reduction").is_none_or(|r| r == "none"),
            "{} by runtime indices is supported without a reduction only",
            node.op_type
        );
        if node.op_type == "ScatterND" {
            return self.scatter_nd_dyn(data, idx, updates, name);
        }
        let a = axis(attr_i(node, "axis", 0), self.shape(&data).len())?;
        self.scatter_dyn_at(data, idx, updates, a, name)
    }

    /// ScatterElements along axis `a` by runtime indices.
    fn scatter_dyn_at(&mut self, data: Val, idx: NodeId, updates: Val, a: usize, name: &str) -> Result<Val> {
        let shape = self.shape(&data);
        let ishape = self.graph.nodes[idx].shape.clone();
        ensure!(ishape == self.shape(&updates), "ScatterElements indices {ishape:?} and updates differ in shape");
        ensure!(
            ishape.len() == shape.len() && ishape.iter().zip(&shape).all(|(i, d)| i <= d),
            "ScatterElements indices {ishape:?} for data {shape:?}"
        );
        let rows = axis_rows(&ishape, &shape, a);
        let data = self.node_of(data, &format!("{name}.data"));
        let updates = self.node_of(updates, &format!("{name}.updates"));
        Ok(self.push(name, Op::ScatterDyn { n: shape[a], rows }, vec![data, idx, updates], shape))
    }

    /// Mod: with fmod 0 the result takes the divisor's sign, with fmod 1
    /// the dividend's; folded on constants, otherwise exact arithmetic.
    fn modulo(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let fmod = attr_i(node, "fmod", 0) != 0;
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        if let (Val::Const(x), Val::Const(y)) = (&a, &b) {
            let shape = broadcast_shapes(&x.shape, &y.shape).ok_or_else(|| anyhow!("Mod inputs do not broadcast"))?;
            let mut data = Vec::new();
            for_each_index(&shape, |pos| {
                let (p, q) = (x.data[broadcast_index(&x.shape, pos)], y.data[broadcast_index(&y.shape, pos)]);
                data.push(if fmod { p % q } else { p - q * (p / q).floor() });
            });
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        self.broadcast_node(Op::Mod { fmod }, a, b, name)
    }

    /// LpNormalization: `x / ‖x‖_p` along an axis, p 1 or 2.
    fn lp_norm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let Val::Node(x) = self.input(node, 0)? else { bail!("LpNormalization of a constant") };
        let shape = self.graph.nodes[x].shape.clone();
        let a = axis(attr_i(node, "axis", -1), shape.len())?;
        let kind = match attr_i(node, "p", 2) {
            1 => Reduce::L1,
            2 => Reduce::L2,
            p => bail!("LpNormalization with p = {p} (1 or 2 are defined)"),
        };
        let mut kept = shape.clone();
        kept[a] = 1;
        let norm = self.push(&format!("{name}.norm"), Op::Reduce { kind, axes: vec![a] }, vec![x], kept);
        self.broadcast_node(Op::DivDyn, Val::Node(x), norm, name)
    }

    /// OneHot: `values[1]` where the index equals the position along the new
    /// axis, `values[0]` elsewhere. Constant indices fold; runtime ones
    /// compare each index with every position.
    fn one_hot(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let indices = self.input(node, 0)?;
        let depth = match self.input(node, 1)? {
            Val::Const(t) if t.len() == 1 && t.data[0] >= 1.0 => t.data[0] as usize,
            _ => bail!("OneHot needs a constant depth of at least 1"),
        };
        let values = match self.input(node, 2)? {
            Val::Const(t) if t.len() == 2 => [t.data[0], t.data[1]],
            _ => bail!("OneHot needs two constant values"),
        };
        let ishape = self.shape(&indices);
        let a = axis(attr_i(node, "axis", -1), ishape.len() + 1)?;
        let mut out = ishape.clone();
        out.insert(a, depth);
        check_size(&out)?;
        // Positions along the new axis, broadcast against the indices.
        let mut pos_shape = vec![1; out.len()];
        pos_shape[a] = depth;
        let positions = Val::Const(Tensor::new(pos_shape, (0..depth).map(|p| p as f64).collect()));
        let mut ushape = ishape;
        ushape.insert(a, 1);
        let idx = self.reshape(indices, ushape, &format!("{name}.indices"))?;
        // Negative indices count from the end: i + depth·(i < 0).
        let negative = self.compare_vals(
            Cmp::Less,
            idx.clone(),
            Val::Const(Tensor::new(vec![], vec![0.0])),
            &format!("{name}.neg"),
        )?;
        let shift = self.binary(
            Arith::Mul,
            negative,
            Val::Const(Tensor::new(vec![], vec![depth as f64])),
            &format!("{name}.shift"),
        )?;
        let idx = self.binary(Arith::Add, idx, shift, &format!("{name}.wrapped"))?;
        let hot = self.compare_vals(Cmp::Equal, idx, positions, &format!("{name}.eq"))?;
        let span = self.binary(
            Arith::Mul,
            hot,
            Val::Const(Tensor::new(vec![], vec![values[1] - values[0]])),
            &format!("{name}.span"),
        )?;
        self.binary(Arith::Add, span, Val::Const(Tensor::new(vec![], vec![values[0]])), name)
    }

    /// DepthToSpace (DCR or CRD) and SpaceToDepth: rearrangements.
    fn depth_space(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        ensure!(shape.len() == 4, "{} of a rank-{} tensor", node.op_type, shape.len());
        let b = attr_i(node, "blocksize", 0);
        ensure!(b > 0, "{} without a blocksize", node.op_type);
        let b = b as usize;
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let st = strides(&shape);
        let mut map = Vec::new();
        let out = if node.op_type == "DepthToSpace" {
            ensure!(c.is_multiple_of(b * b), "DepthToSpace of {c} channels by blocks of {b}");
            let co = c / (b * b);
            let crd = attr_s(node, "mode").as_deref() == Some("CRD");
            let out = vec![n, co, h * b, w * b];
            for_each_index(&out, |p| {
                let (oy, ox) = (p[2], p[3]);
                let (by, bx) = (oy % b, ox % b);
                let ch = if crd { p[1] * b * b + by * b + bx } else { (by * b + bx) * co + p[1] };
                map.push(Some(p[0] * st[0] + ch * st[1] + (oy / b) * st[2] + (ox / b) * st[3]));
            });
            out
        } else {
            ensure!(h.is_multiple_of(b) && w.is_multiple_of(b), "SpaceToDepth of {h}×{w} by blocks of {b}");
            let out = vec![n, c * b * b, h / b, w / b];
            for_each_index(&out, |p| {
                let (blk, ch) = (p[1] / c, p[1] % c);
                let (by, bx) = (blk / b, blk % b);
                map.push(Some(p[0] * st[0] + ch * st[1] + (p[2] * b + by) * st[2] + (p[3] * b + bx) * st[3]));
            });
            out
        };
        self.rearrange(x, out, map, 0.0, name)
    }

    fn batchnorm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let Val::Node(x) = self.input(node, 0)? else { bail!("BatchNormalization of a constant") };
        let eps = attr_f(node, "epsilon", 1e-5);
        let shape = self.graph.nodes[x].shape.clone();
        let c = *shape.get(1).ok_or_else(|| anyhow!("BatchNormalization needs a channel axis"))?;
        let per_channel = |imp: &mut Self, i: usize| -> Result<Val> {
            let v = imp.input(node, i)?;
            ensure!(
                imp.shape(&v).iter().product::<usize>() == c,
                "BatchNormalization parameters must each hold {c} values"
            );
            let mut to = vec![c];
            to.extend(std::iter::repeat_n(1, shape.len().saturating_sub(2)));
            imp.reshape(v, to, &format!("{name}.param{i}"))
        };
        if attr_i(node, "training_mode", 0) != 0 {
            // Normalized by the batch's own statistics, per channel; the
            // running statistics move toward them by (1 − momentum).
            let (gamma, beta) = (per_channel(self, 1)?, per_channel(self, 2)?);
            let axes: Vec<usize> = std::iter::once(0).chain(2..shape.len()).collect();
            let momentum = attr_f(node, "momentum", 0.9);
            for (k, out) in node.output.iter().enumerate().skip(1).filter(|(_, o)| !o.is_empty()) {
                let stat = self.batch_statistic(x, &axes, k == 2, &format!("{name}.batch{k}"))?;
                let old = self.input(node, k + 2)?;
                let old = self.binary(Arith::Mul, old, scalar(momentum), &format!("{name}.old{k}"))?;
                let new = self.binary(Arith::Mul, stat, scalar(1.0 - momentum), &format!("{name}.new{k}"))?;
                let running = self.binary(Arith::Add, old, new, &format!("{name}.running{k}"))?;
                self.vals.insert(out.clone(), running);
            }
            return self.normalized(Val::Node(x), axes, eps, Some(gamma), Some(beta), name);
        }
        ensure!(
            node.output.iter().skip(1).all(String::is_empty),
            "BatchNormalization's running mean and variance outputs need training_mode"
        );
        let runtime = (1..5).any(|i| matches!(self.input(node, i), Ok(Val::Node(_))));
        if runtime {
            // (x − mean) / sqrt(var + eps) · gamma + beta, spelled out.
            let p: Vec<Val> = (1..5).map(|i| per_channel(self, i)).collect::<Result<_>>()?;
            let eps_c = scalar(eps);
            let centred = self.binary(Arith::Sub, Val::Node(x), p[2].clone(), &format!("{name}.centred"))?;
            let var = self.binary(Arith::Add, p[3].clone(), eps_c, &format!("{name}.var"))?;
            let sd = self.apply(var, Activation::Sqrt, &format!("{name}.sd"))?;
            let normed = match sd {
                Val::Const(t) => {
                    let inv = Tensor::new(t.shape.clone(), t.data.iter().map(|v| 1.0 / v).collect());
                    self.binary(Arith::Mul, centred, Val::Const(inv), &format!("{name}.normed"))?
                }
                sd => self.broadcast_node(Op::DivDyn, centred, sd, &format!("{name}.normed"))?,
            };
            let scaled = self.binary(Arith::Mul, normed, p[0].clone(), &format!("{name}.scaled"))?;
            return self.binary(Arith::Add, scaled, p[1].clone(), name);
        }
        let params: Vec<Tensor> =
            (1..5).map(|i| self.const_input(node, i, "a BatchNormalization parameter")).collect::<Result<_>>()?;
        if params.iter().any(|p| p.len() != c) {
            bail!("BatchNormalization parameters must each hold {c} values");
        }
        let (gamma, beta, mean, var) = (&params[0].data, &params[1].data, &params[2].data, &params[3].data);
        let scale: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
        let shift: Vec<f64> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        let input_name = &node.input[0];
        let foldable = self.private_output(input_name)
            && matches!(self.graph.nodes[x].op, Op::Conv { .. } | Op::Dense { .. })
            && (shape.len() == 4 || shape.len() == 2);
        if foldable {
            // y = (W x + b) * s + t  ==  (s W) x + (s b + t), per output channel.
            match &mut self.graph.nodes[x].op {
                Op::Conv { weight, bias, .. } | Op::Dense { weight, bias } => {
                    let per = weight.len() / c;
                    for (i, w) in weight.data.iter_mut().enumerate() {
                        *w *= scale[i / per];
                    }
                    for i in 0..c {
                        bias[i] = bias[i] * scale[i] + shift[i];
                    }
                }
                _ => unreachable!(),
            }
            return Ok(Val::Node(x));
        }
        Ok(self.push(name, Op::Affine { scale, shift }, vec![x], shape))
    }

    /// The mean (or, with `var`, the population variance) of `x` over
    /// `axes`, one value per remaining (channel) position.
    fn batch_statistic(&mut self, x: NodeId, axes: &[usize], var: bool, name: &str) -> Result<Val> {
        let mean = self.reduce_over(Val::Node(x), axes.to_vec(), var, Reduce::Mean, &format!("{name}.mean"))?;
        if !var {
            return Ok(mean);
        }
        let d = self.binary(Arith::Sub, Val::Node(x), mean, &format!("{name}.dev"))?;
        let sq = self.binary(Arith::Mul, d.clone(), d, &format!("{name}.sq"))?;
        self.reduce_over(sq, axes.to_vec(), false, Reduce::Mean, name)
    }

    fn arith(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        if node.op_type == "Div" && node.output.first().is_some_and(|o| self.is_integer(o)) {
            return self.int_div(node, name);
        }
        if let Some(norm::SpelledNorm { x, axes, eps, rms }) = self.spelled_norm(node)? {
            let shape = self.graph.nodes[x].shape.clone();
            let op = Op::Normalize { axes, eps, scale: vec![], shift: vec![], rms };
            return Ok(self.push(name, op, vec![x], shape));
        }
        if let Some(v) = self.fold_into_layer(node)? {
            return Ok(v);
        }
        let a = self.input(node, 0)?;
        let mut b = self.input(node, 1)?;
        let mut op = match node.op_type.as_str() {
            "Add" => Arith::Add,
            "Sub" => Arith::Sub,
            _ => Arith::Mul,
        };
        if node.op_type == "Div" {
            // Division is supported by a constant divisor only: multiply by its inverse.
            match &b {
                Val::Const(t) if t.data.iter().all(|&v| v != 0.0) => {
                    b = Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|v| 1.0 / v).collect()));
                }
                Val::Const(_) => bail!("division by zero"),
                Val::Node(_) => return self.broadcast_node(Op::DivDyn, a, b, name),
            }
            op = Arith::Mul;
        }
        self.binary(op, a, b, name)
    }

    /// Div of integer tensors, truncated toward zero; folded on constants.
    fn int_div(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        if let Val::Const(t) = &b {
            ensure!(t.data.iter().all(|&v| v != 0.0), "integer division by zero");
        }
        if let (Val::Const(x), Val::Const(y)) = (&a, &b) {
            let shape = broadcast_shapes(&x.shape, &y.shape)
                .ok_or_else(|| anyhow!("shapes {:?} and {:?} do not broadcast", x.shape, y.shape))?;
            let mut data = Vec::new();
            for_each_index(&shape, |pos| {
                data.push((x.data[broadcast_index(&x.shape, pos)] / y.data[broadcast_index(&y.shape, pos)]).trunc())
            });
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        self.broadcast_node(Op::IntDiv, a, b, name)
    }

    /// A sum with, difference from, product with or quotient by a constant
    /// (the constant first for sums and products too) of a Dense or Conv
    /// layer's output that nothing else reads, the constant varying only
    /// along the layer's output features (or channels): folded into the
    /// layer's weights and bias, so a MatMul followed by its bias costs no
    /// more rows than a Gemm. None when the pattern does not apply.
    fn fold_into_layer(&mut self, node: &NodeProto) -> Result<Option<Val>> {
        let op = node.op_type.as_str();
        let (x, c, swapped) = match (self.input(node, 0)?, self.input(node, 1)?) {
            (Val::Node(x), Val::Const(c)) => (x, c, false),
            (Val::Const(c), Val::Node(x)) if op == "Add" || op == "Mul" => (x, c, true),
            _ => return Ok(None),
        };
        let x_name = &node.input[usize::from(swapped)];
        if !self.private_output(x_name) {
            return Ok(None);
        }
        let shape = self.graph.nodes[x].shape.clone();
        if let Op::Normalize { .. } = self.graph.nodes[x].op {
            return Ok(self.fold_into_norm(x, op, &c).then_some(Val::Node(x)));
        }
        let axis = match &self.graph.nodes[x].op {
            Op::Dense { .. } => shape.len() - 1,
            Op::Conv { .. } => 1,
            _ => return Ok(None),
        };
        let Some(per) = per_index(&c, &shape, axis) else { return Ok(None) };
        if op == "Div" && per.contains(&0.0) {
            return Ok(None);
        }
        let (Op::Dense { weight, bias } | Op::Conv { weight, bias, .. }) = &mut self.graph.nodes[x].op else {
            unreachable!("matched above")
        };
        let fan_in = weight.len() / bias.len();
        match op {
            "Add" => bias.iter_mut().zip(&per).for_each(|(b, c)| *b += c),
            "Sub" => bias.iter_mut().zip(&per).for_each(|(b, c)| *b -= c),
            "Mul" | "Div" => {
                let f = |c: f64| if op == "Div" { 1.0 / c } else { c };
                for (j, b) in bias.iter_mut().enumerate() {
                    *b *= f(per[j]);
                }
                for (i, w) in weight.data.iter_mut().enumerate() {
                    *w *= f(per[i / fan_in]);
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(Val::Node(x)))
    }

    /// A constant sum, difference, product or quotient of a normalization's
    /// output folded into its per-element scale and shift (the affine
    /// parameters of a normalization spelled out op by op). False where the
    /// constant does not broadcast to the output or divides by zero.
    fn fold_into_norm(&mut self, x: NodeId, op: &str, c: &Tensor) -> bool {
        let shape = self.graph.nodes[x].shape.clone();
        if broadcast_shapes(&shape, &c.shape).as_deref() != Some(&shape[..]) || (op == "Div" && c.data.contains(&0.0)) {
            return false;
        }
        let mut per = Vec::new();
        for_each_index(&shape, |pos| per.push(c.data[broadcast_index(&c.shape, pos)]));
        let Op::Normalize { scale, shift, .. } = &mut self.graph.nodes[x].op else { return false };
        let n = per.len();
        if scale.is_empty() {
            *scale = vec![1.0; n];
        }
        if shift.is_empty() {
            *shift = vec![0.0; n];
        }
        for i in 0..n {
            match op {
                "Add" => shift[i] += per[i],
                "Sub" => shift[i] -= per[i],
                "Mul" => (scale[i], shift[i]) = (scale[i] * per[i], shift[i] * per[i]),
                _ => (scale[i], shift[i]) = (scale[i] / per[i], shift[i] / per[i]),
            }
        }
        true
    }

    /// `a op b` with broadcasting, folded when both are constant.
    fn binary(&mut self, op: Arith, a: Val, b: Val, name: &str) -> Result<Val> {
        let shape = broadcast_shapes(&self.shape(&a), &self.shape(&b))
            .ok_or_else(|| anyhow!("shapes {:?} and {:?} do not broadcast", self.shape(&a), self.shape(&b)))?;
        if let (Val::Const(x), Val::Const(y)) = (&a, &b) {
            let mut data = Vec::new();
            for_each_index(&shape, |pos| {
                let (p, q) = (x.data[broadcast_index(&x.shape, pos)], y.data[broadcast_index(&y.shape, pos)]);
                data.push(match op {
                    Arith::Add => p + q,
                    Arith::Sub => p - q,
                    Arith::Mul => p * q,
                });
            });
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        let composed = self.compose(op, &a, &b, &shape);
        if let Some(v) = self.fused(composed.clone(), &[&a, &b], name) {
            return Ok(v);
        }
        let a = self.node_of(a, &format!("{name}.a"));
        let b = self.node_of(b, &format!("{name}.b"));
        let v = self.push(name, Op::Arith(op), vec![a, b], shape);
        self.record(&v, composed);
        Ok(v)
    }

    /// A runtime node as an element-wise function of its base.
    fn elem_fn(&self, id: NodeId) -> (NodeId, Expr) {
        self.fns.get(&id).cloned().unwrap_or((id, Expr::X))
    }

    /// `a op b` as an element-wise function of one base node, where it is
    /// one: a function of the base with a scalar constant, or two functions
    /// of the same base, all of the base's shape.
    fn compose(&self, op: Arith, a: &Val, b: &Val, shape: &[usize]) -> Option<(NodeId, Expr)> {
        let scalar = |t: &Tensor| (t.len() == 1).then(|| Expr::Const(t.data[0]));
        let (base, ea, eb) = match (a, b) {
            (Val::Node(x), Val::Const(c)) => {
                let (base, e) = self.elem_fn(*x);
                (base, e, scalar(c)?)
            }
            (Val::Const(c), Val::Node(x)) => {
                let (base, e) = self.elem_fn(*x);
                (base, scalar(c)?, e)
            }
            (Val::Node(x), Val::Node(y)) => {
                let ((bx, ex), (by, ey)) = (self.elem_fn(*x), self.elem_fn(*y));
                if bx != by {
                    return None;
                }
                (bx, ex, ey)
            }
            (Val::Const(_), Val::Const(_)) => return None,
        };
        (self.graph.nodes[base].shape == shape).then(|| (base, ea.arith(op, eb)))
    }

    /// One table node for a composed function that holds a table function,
    /// when it would otherwise cost rows of its own: it combines two
    /// runtime values, or works on a table's output. The nodes it replaces
    /// are left unread and are not lowered.
    fn fused(&mut self, composed: Option<(NodeId, Expr)>, inputs: &[&Val], name: &str) -> Option<Val> {
        let (base, e) = composed?;
        let runtime: Vec<NodeId> =
            inputs.iter().filter_map(|v| if let Val::Node(id) = v { Some(*id) } else { None }).collect();
        let on_table = runtime.iter().any(|&id| matches!(self.graph.nodes[id].op, Op::Act(_) | Op::Fn(_)));
        if !e.has_table() || !(runtime.len() == 2 || on_table) {
            return None;
        }
        let shape = self.graph.nodes[base].shape.clone();
        let v = self.push(name, Op::Fn(e.clone()), vec![base], shape);
        self.record(&v, Some((base, e)));
        Some(v)
    }

    fn record(&mut self, v: &Val, composed: Option<(NodeId, Expr)>) {
        if let (Val::Node(id), Some(c)) = (v, composed) {
            self.fns.insert(*id, c);
        }
    }

    /// A binary op node over two values (constants become nodes), of their
    /// broadcast shape.
    fn broadcast_node(&mut self, op: Op, a: Val, b: Val, name: &str) -> Result<Val> {
        let shape = broadcast_shapes(&self.shape(&a), &self.shape(&b))
            .ok_or_else(|| anyhow!("shapes {:?} and {:?} do not broadcast", self.shape(&a), self.shape(&b)))?;
        let a = self.node_of(a, &format!("{name}.a"));
        let b = self.node_of(b, &format!("{name}.b"));
        Ok(self.push(name, op, vec![a, b], shape))
    }

    /// Less, Greater, LessOrEqual, GreaterOrEqual and Equal: 1.0 where the
    /// comparison holds, folded when both sides are constant.
    fn compare(&mut self, node: &NodeProto, name: &str, cmp: Cmp) -> Result<Val> {
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        self.compare_vals(cmp, a, b, name)
    }

    fn compare_vals(&mut self, cmp: Cmp, a: Val, b: Val, name: &str) -> Result<Val> {
        if let (Val::Const(x), Val::Const(y)) = (&a, &b) {
            let shape = broadcast_shapes(&x.shape, &y.shape)
                .ok_or_else(|| anyhow!("shapes {:?} and {:?} do not broadcast", x.shape, y.shape))?;
            let mut data = Vec::new();
            for_each_index(&shape, |pos| {
                data.push(cmp.eval(x.data[broadcast_index(&x.shape, pos)], y.data[broadcast_index(&y.shape, pos)]))
            });
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        self.broadcast_node(Op::Compare(cmp), a, b, name)
    }

    /// And, Or and Xor of booleans (0 or 1) as arithmetic: a·b, a + b - a·b
    /// and a + b - 2·a·b.
    fn logic(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        let ab = self.binary(Arith::Mul, a.clone(), b.clone(), &format!("{name}.and"))?;
        if node.op_type == "And" {
            return Ok(ab);
        }
        let sum = self.binary(Arith::Add, a, b, &format!("{name}.sum"))?;
        let twice = if node.op_type == "Xor" {
            self.binary(Arith::Mul, ab, Val::Const(Tensor::new(vec![], vec![2.0])), &format!("{name}.twice"))?
        } else {
            ab
        };
        self.binary(Arith::Sub, sum, twice, name)
    }

    /// Where: with a constant condition, a selection of elements (no rows);
    /// with a runtime one, `b + c·(a - b)`.
    fn select(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let (c, a, b) = (self.input(node, 0)?, self.input(node, 1)?, self.input(node, 2)?);
        let shape = [&c, &a, &b].iter().try_fold(Vec::new(), |acc, v| {
            broadcast_shapes(&acc, &self.shape(v)).ok_or_else(|| anyhow!("Where inputs do not broadcast"))
        })?;
        let Val::Const(cond) = &c else {
            let diff = self.binary(Arith::Sub, a, b.clone(), &format!("{name}.diff"))?;
            let picked = self.binary(Arith::Mul, c, diff, &format!("{name}.pick"))?;
            return self.binary(Arith::Add, b, picked, name);
        };
        let mut first = Vec::new();
        for_each_index(&shape, |pos| first.push(cond.data[broadcast_index(&cond.shape, pos)] != 0.0));
        if let (Val::Const(x), Val::Const(y)) = (&a, &b) {
            let mut data = Vec::new();
            let mut i = 0;
            for_each_index(&shape, |pos| {
                let v = if first[i] {
                    x.data[broadcast_index(&x.shape, pos)]
                } else {
                    y.data[broadcast_index(&y.shape, pos)]
                };
                data.push(v);
                i += 1;
            });
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        let a = self.node_of(a, &format!("{name}.a"));
        let b = self.node_of(b, &format!("{name}.b"));
        Ok(self.push(name, Op::Select { first }, vec![a, b], shape))
    }

    /// `y = normalize(x over axes) · scale + bias`, the affine part through
    /// the ordinary broadcast Mul and Add (constants fold into dense steps).
    fn normalized(
        &mut self,
        x: Val,
        axes: Vec<usize>,
        eps: f64,
        scale: Option<Val>,
        bias: Option<Val>,
        name: &str,
    ) -> Result<Val> {
        self.normalized_as(x, (axes, eps, false), scale, bias, name)
    }

    /// [`Self::normalized`], or with `rms` the root-mean-square form (no
    /// mean subtracted).
    fn normalized_as(
        &mut self,
        x: Val,
        (axes, eps, rms): (Vec<usize>, f64, bool),
        scale: Option<Val>,
        bias: Option<Val>,
        name: &str,
    ) -> Result<Val> {
        let shape = self.shape(&x);
        let x = self.node_of(x, &format!("{name}.x"));
        // Constant scale and shift fold into the normalization, one value
        // per element; runtime ones are an ordinary Mul and Add.
        let per_element = |v: &Option<Val>| -> Result<Option<Vec<f64>>> {
            let Some(Val::Const(t)) = v else { return Ok(None) };
            ensure!(
                broadcast_shapes(&shape, &t.shape).as_deref() == Some(&shape[..]),
                "a normalization parameter of shape {:?} for an input of shape {shape:?}",
                t.shape
            );
            let mut out = Vec::new();
            for_each_index(&shape, |pos| out.push(t.data[broadcast_index(&t.shape, pos)]));
            Ok(Some(out))
        };
        let (s, b) = (per_element(&scale)?, per_element(&bias)?);
        let (scale_v, shift_v) = (s.clone().unwrap_or_default(), b.clone().unwrap_or_default());
        let op = Op::Normalize { axes, eps, scale: scale_v, shift: shift_v, rms };
        let mut y = self.push(name, op, vec![x], shape.clone());
        if let (Some(v), None) = (scale, &s) {
            y = self.binary(Arith::Mul, y, v, &format!("{name}.scale"))?;
        }
        if let (Some(v), None) = (bias, &b) {
            y = self.binary(Arith::Add, y, v, &format!("{name}.bias"))?;
        }
        Ok(y)
    }

    /// LayerNormalization (opset 17): over the axes from `axis` on.
    fn layer_norm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        ensure!(
            node.output.len() == 1 || node.output[1..].iter().all(String::is_empty),
            "LayerNormalization's mean and inverse deviation outputs are not supported"
        );
        let x = self.input(node, 0)?;
        let rank = self.shape(&x).len();
        let a = axis(attr_i(node, "axis", -1), rank)?;
        let scale = self.opt_input(node, 1)?;
        let bias = self.opt_input(node, 2)?;
        self.normalized(x, (a..rank).collect(), attr_f(node, "epsilon", 1e-5), scale, bias, name)
    }

    /// A per-channel parameter (shape [C]) shaped to broadcast along axis 1
    /// of a rank-`rank` tensor.
    fn per_channel(&self, node: &NodeProto, i: usize, rank: usize, what: &str) -> Result<Val> {
        let t = self.const_input(node, i, what)?;
        let mut shape = vec![t.len()];
        shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
        Ok(Val::Const(Tensor::new(shape, t.data)))
    }

    /// InstanceNormalization: each channel of each sample over its spatial
    /// axes, then per-channel scale and bias.
    fn instance_norm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let rank = self.shape(&x).len();
        ensure!(rank >= 3, "InstanceNormalization of a rank-{rank} tensor (needs N, C and spatial axes)");
        let scale = self.per_channel(node, 1, rank, "scale")?;
        let bias = self.per_channel(node, 2, rank, "B")?;
        self.normalized(x, (2..rank).collect(), attr_f(node, "epsilon", 1e-5), Some(scale), Some(bias), name)
    }

    /// GroupNormalization (opsets 18 and 21): channels in `num_groups`
    /// groups, each normalized over its channels and spatial axes; scale
    /// and bias per channel (opset 21) or per group (opset 18).
    fn group_norm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let rank = shape.len();
        ensure!(rank >= 3, "GroupNormalization of a rank-{rank} tensor (needs N, C and spatial axes)");
        let groups = attr_i(node, "num_groups", 0);
        let c = shape[1];
        ensure!(groups > 0 && c.is_multiple_of(groups as usize), "num_groups {groups} does not divide {c} channels");
        let g = groups as usize;
        let inner: usize = shape[2..].iter().product();
        let grouped_shape = vec![shape[0], g, c / g * inner];
        let grouped = self.reshape(x, grouped_shape.clone(), &format!("{name}.groups"))?;
        let per_group = self.opset < 21;
        // Scale and shift per element of the grouped layout (the same order
        // as the input's), so that they fold into the normalization.
        let param = |i: usize, what: &str| -> Result<Val> {
            let t = self.const_input(node, i, what)?;
            let per_channel: Vec<f64> = if per_group {
                ensure!(t.len() == g, "GroupNormalization {what} of {} values for {g} groups", t.len());
                (0..c).map(|ch| t.data[ch / (c / g)]).collect()
            } else {
                ensure!(t.len() == c, "GroupNormalization {what} of {} values for {c} channels", t.len());
                t.data
            };
            let data = (0..shape[0] * c * inner).map(|i| per_channel[(i / inner) % c]).collect();
            Ok(Val::Const(Tensor::new(grouped_shape.clone(), data)))
        };
        let (scale, bias) = (param(1, "scale")?, param(2, "bias")?);
        let eps = attr_f(node, "epsilon", 1e-5);
        let norm = self.normalized(grouped, vec![2], eps, Some(scale), Some(bias), &format!("{name}.norm"))?;
        self.reshape(norm, shape, name)
    }

    fn act(&mut self, node: &NodeProto, name: &str, act: Activation) -> Result<Val> {
        let x = self.input(node, 0)?;
        self.apply(x, act, name)
    }

    /// A table function of a value, folded on constants and fused with the
    /// element-wise chain before it where that saves rows.
    fn apply(&mut self, x: Val, act: Activation, name: &str) -> Result<Val> {
        match x {
            Val::Const(t) => {
                Ok(Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|&v| act.eval(v)).collect())))
            }
            Val::Node(x) => {
                let (base, e) = self.elem_fn(x);
                let composed = Some((base, Expr::Act(act, Box::new(e))));
                if let Some(v) = self.fused(composed.clone(), &[&Val::Node(x)], name) {
                    return Ok(v);
                }
                let shape = self.graph.nodes[x].shape.clone();
                let v = self.push(name, Op::Act(act), vec![x], shape);
                self.record(&v, composed);
                Ok(v)
            }
        }
    }

    /// `x · c` for a constant c: a dense step, with no table range.
    fn scaled(&mut self, node: &NodeProto, name: &str, c: f64) -> Result<Val> {
        let x = self.input(node, 0)?;
        self.multiply(x, Val::Const(Tensor::new(vec![], vec![c])), name)
    }

    fn multiply(&mut self, a: Val, b: Val, name: &str) -> Result<Val> {
        self.binary(Arith::Mul, a, b, name)
    }

    /// Pow with a constant scalar exponent: 2 to 4 as repeated products of
    /// the runtime tensor (no table, so no range limit); any other exponent
    /// (0 included, so that the output stays a runtime value), one table.
    fn pow(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let e = match self.input(node, 1)? {
            Val::Const(t) if t.len() == 1 => t.data[0],
            // x^y = exp(y · ln x): a positive base (ln of others is cut to 0).
            y => {
                let ln = self.apply(x, Activation::Log, &format!("{name}.ln"))?;
                let prod = self.multiply(y, ln, &format!("{name}.mul"))?;
                return self.apply(prod, Activation::Exp, name);
            }
        };
        if let Val::Const(t) = &x {
            return Ok(Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|v| v.powf(e)).collect())));
        }
        match e {
            1.0 => Ok(x),
            2.0 | 3.0 | 4.0 => {
                let mut acc = x.clone();
                for i in 1..e as usize {
                    acc = self.multiply(acc, x.clone(), &format!("{name}.pow{}", i + 1))?;
                }
                Ok(acc)
            }
            _ => self.act(node, name, Activation::Pow { exponent: e }),
        }
    }

    /// PRelu: a scalar slope is one table (LeakyRelu); a per-channel slope
    /// is relu(x) − slope · relu(−x), two tables of Relu and products by
    /// the constant slope.
    fn prelu(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let slope = match self.input(node, 1)? {
            Val::Const(t) => t,
            Val::Node(_) => bail!("PRelu with a runtime slope is not supported"),
        };
        if slope.len() == 1 {
            return self.act(node, name, Activation::LeakyRelu { alpha: slope.data[0] });
        }
        let xn = match self.input(node, 0)? {
            Val::Node(x) => x,
            Val::Const(t) => {
                let shape = broadcast_shapes(&t.shape, &slope.shape)
                    .ok_or_else(|| anyhow!("PRelu slope of shape {:?} does not broadcast", slope.shape))?;
                let mut data = Vec::new();
                for_each_index(&shape, |pos| {
                    let v = t.data[broadcast_index(&t.shape, pos)];
                    data.push(if v < 0.0 { slope.data[broadcast_index(&slope.shape, pos)] * v } else { v });
                });
                return Ok(Val::Const(Tensor::new(shape, data)));
            }
        };
        let shape = self.graph.nodes[xn].shape.clone();
        let positive = self.push(&format!("{name}.pos"), Op::Act(Activation::Relu), vec![xn], shape.clone());
        let minus_x =
            self.multiply(Val::Node(xn), Val::Const(Tensor::new(vec![], vec![-1.0])), &format!("{name}.neg"))?;
        let Val::Node(mx) = minus_x else { unreachable!("a runtime tensor times a constant") };
        let negative = self.push(&format!("{name}.negpart"), Op::Act(Activation::Relu), vec![mx], shape);
        let minus_slope = Tensor::new(slope.shape.clone(), slope.data.iter().map(|a| -a).collect());
        let scaled = self.multiply(negative, Val::Const(minus_slope), &format!("{name}.scaled"))?;
        let (Val::Node(p), Val::Node(q)) = (positive, scaled) else { unreachable!("runtime tensors") };
        let out_shape = broadcast_shapes(&self.graph.nodes[p].shape, &self.graph.nodes[q].shape)
            .ok_or_else(|| anyhow!("PRelu slope of shape {:?} does not broadcast", slope.shape))?;
        Ok(self.push(name, Op::Arith(Arith::Add), vec![p, q], out_shape))
    }

    fn clip(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let bound = |imp: &Self, i: usize, attr_name: &str, default: f64| -> Result<f64> {
            if imp.opset < 11 {
                return Ok(attr_f(node, attr_name, default));
            }
            match imp.opset_input_const(node, i)? {
                Some(t) if t.len() == 1 => Ok(t.data[0]),
                Some(_) => bail!("Clip bounds must be scalars"),
                None => Ok(default),
            }
        };
        let lo = bound(self, 1, "min", f64::NEG_INFINITY)?;
        let hi = bound(self, 2, "max", f64::INFINITY)?;
        if lo > hi {
            bail!("Clip min {lo} is above max {hi}");
        }
        let act = if lo == 0.0 && hi == f64::INFINITY { Activation::Relu } else { Activation::Clip { lo, hi } };
        self.act(node, name, act)
    }

    /// Output element i is element `map[i]` of `x` (or `fill`), folded when
    /// `x` is constant.
    fn rearrange(&mut self, x: Val, out: Vec<usize>, map: Vec<Option<usize>>, fill: f64, name: &str) -> Result<Val> {
        check_size(&out)?;
        Ok(match x {
            Val::Const(t) => {
                let data = map.iter().map(|m| m.map_or(fill, |j| t.data[j])).collect();
                Val::Const(Tensor::new(out, data))
            }
            Val::Node(id) => self.push(name, Op::Rearrange { map, fill }, vec![id], out),
        })
    }

    /// Integers of an opset-dependent input (opset ≥ `since`) or attribute.
    fn ints_of(&self, node: &NodeProto, input: usize, attr_name: &str, since: i64) -> Result<Option<Vec<i64>>> {
        if self.opset >= since {
            Ok(self.opset_input_const(node, input)?.map(|t| t.data.iter().map(|&v| v as i64).collect()))
        } else {
            Ok(attr_ints(node, attr_name))
        }
    }

    fn slice(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let rank = shape.len();
        let starts = self.ints_of(node, 1, "starts", 10)?.ok_or_else(|| anyhow!("Slice without starts"))?;
        let ends = self.ints_of(node, 2, "ends", 10)?.ok_or_else(|| anyhow!("Slice without ends"))?;
        ensure!(starts.len() == ends.len(), "Slice has {} starts but {} ends", starts.len(), ends.len());
        let axes = match self.ints_of(node, 3, "axes", 10)? {
            Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<Result<Vec<_>>>()?,
            None => (0..starts.len()).collect(),
        };
        let steps = if self.opset >= 10 { self.ints_of(node, 4, "steps", 10)? } else { None };
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        ensure!(
            axes.len() == starts.len() && steps.len() == starts.len(),
            "Slice's axes and steps do not match its starts"
        );
        // Per axis: first index, step and count, clamped as ONNX clamps them.
        let mut first: Vec<i64> = vec![0; rank];
        let mut step: Vec<i64> = vec![1; rank];
        let mut out = shape.clone();
        for (((&a, &st), &en), &sp) in axes.iter().zip(&starts).zip(&ends).zip(&steps) {
            ensure!(sp != 0, "Slice step 0 on axis {a}");
            let d = shape[a] as i64;
            let norm = |v: i64| if v < 0 { v + d } else { v };
            let (b, e) = if sp > 0 {
                (norm(st).clamp(0, d), norm(en).clamp(0, d))
            } else {
                (norm(st).clamp(0, d - 1), norm(en).clamp(-1, d - 1))
            };
            let count = if sp > 0 {
                (e - b).max(0).div_euclid(sp) + i64::from((e - b).max(0) % sp != 0)
            } else {
                (b - e).max(0).div_euclid(-sp) + i64::from((b - e).max(0) % -sp != 0)
            };
            first[a] = b;
            step[a] = sp;
            out[a] = count as usize;
        }
        let st = strides(&shape);
        let mut map = Vec::new();
        for_each_index(&out, |pos| {
            let idx: i64 = pos.iter().enumerate().map(|(d, &p)| (first[d] + p as i64 * step[d]) * st[d] as i64).sum();
            map.push(Some(idx as usize));
        });
        self.rearrange(x, out, map, 0.0, name)
    }

    /// Gather along an axis by constant indices (runtime data or constant).
    fn gather(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let a = axis(attr_i(node, "axis", 0), shape.len())?;
        let indices = match self.input(node, 1)? {
            Val::Const(t) => t,
            Val::Node(idx) => return self.gather_runtime(x, idx, a, name),
        };
        let d = shape[a] as i64;
        let idx: Vec<usize> = indices
            .data
            .iter()
            .map(|&i| {
                let i = i as i64;
                let j = if i < 0 { i + d } else { i };
                ensure!((0..d).contains(&j), "Gather index {i} is out of range for an axis of {d}");
                Ok(j as usize)
            })
            .collect::<Result<_>>()?;
        let mut out = shape[..a].to_vec();
        out.extend(&indices.shape);
        out.extend(&shape[a + 1..]);
        let st = strides(&shape);
        let k = indices.shape.len();
        let mut map = Vec::new();
        let ist = strides(&indices.shape);
        for_each_index(&out, |pos| {
            let lin_idx = pos[a..a + k].iter().zip(&ist).map(|(&p, &s)| p * s).sum::<usize>();
            let mut at = idx[lin_idx] * st[a];
            for (dim, &p) in pos[..a].iter().enumerate() {
                at += p * st[dim];
            }
            for (j, &p) in pos[a + k..].iter().enumerate() {
                at += p * st[a + 1 + j];
            }
            map.push(Some(at));
        });
        self.rearrange(x, out, map, 0.0, name)
    }

    /// A dense layer `x·Wᵀ + b` over the last axis.
    fn dense(&mut self, x: Val, weight: &Tensor, bias: &[f64], name: &str) -> Result<Val> {
        let mut shape = self.shape(&x);
        *shape.last_mut().ok_or_else(|| anyhow!("a dense layer over a scalar"))? = weight.shape[0];
        let x = self.node_of(x, &format!("{name}.x"));
        Ok(self.push(name, Op::Dense { weight: weight.clone(), bias: bias.to_vec() }, vec![x], shape))
    }

    /// `len` entries from `start` along `axis` of a value of `shape`.
    fn take(&mut self, v: Val, shape: &[usize], axis: usize, start: usize, len: usize, name: &str) -> Result<Val> {
        let mut out = shape.to_vec();
        out[axis] = len;
        let st = strides(shape);
        let mut map = Vec::new();
        for_each_index(&out, |pos| {
            let idx: usize =
                pos.iter().enumerate().map(|(d, &p)| (p + if d == axis { start } else { 0 }) * st[d]).sum();
            map.push(Some(idx));
        });
        self.rearrange(v, out, map, 0.0, name)
    }

    /// Values joined along `axis`, folded when all are constant.
    fn cat(&mut self, vals: Vec<Val>, axis: usize, name: &str) -> Result<Val> {
        let shapes: Vec<Vec<usize>> = vals.iter().map(|v| self.shape(v)).collect();
        let mut out = shapes[0].clone();
        out[axis] = shapes.iter().map(|s| s[axis]).sum();
        if vals.iter().all(|v| matches!(v, Val::Const(_))) {
            let outer: usize = out[..axis].iter().product();
            let mut data = Vec::new();
            for o in 0..outer {
                for (v, s) in vals.iter().zip(&shapes) {
                    let Val::Const(t) = v else { unreachable!("checked") };
                    let chunk: usize = s[axis..].iter().product();
                    data.extend_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
                }
            }
            return Ok(Val::Const(Tensor::new(out, data)));
        }
        let ids: Vec<NodeId> =
            vals.into_iter().enumerate().map(|(i, v)| self.node_of(v, &format!("{name}.{i}"))).collect();
        Ok(self.push(name, Op::Concat { axis }, ids, out))
    }

    /// MatMul of a runtime tensor `[.., m, k]` by a constant with batch axes
    /// `[.., k, n]` (the two sharing their batch axes, or the runtime one
    /// 2-D and broadcast): one dense layer per batch, joined.
    fn batched_matmul(&mut self, a: NodeId, b: &Tensor, name: &str) -> Result<Val> {
        let ashape = self.graph.nodes[a].shape.clone();
        let (ra, rb) = (ashape.len(), b.shape.len());
        let (k, n) = (b.shape[rb - 2], b.shape[rb - 1]);
        let batch_dims = &b.shape[..rb - 2];
        let batches: usize = batch_dims.iter().product();
        let shared = ra == rb && ashape[..ra - 2] == *batch_dims;
        ensure!(
            ra >= 2 && ashape[ra - 1] == k && (shared || ra == 2),
            "MatMul shapes {ashape:?} x {:?} are not supported",
            b.shape
        );
        let m = ashape[ra - 2];
        let x = if shared {
            self.reshape(Val::Node(a), vec![batches, m, k], &format!("{name}.batches"))?
        } else {
            Val::Node(a)
        };
        let mut parts = Vec::with_capacity(batches);
        for i in 0..batches {
            let xi = if shared {
                let one = self.take(x.clone(), &[batches, m, k], 0, i, 1, &format!("{name}.in{i}"))?;
                self.reshape(one, vec![m, k], &format!("{name}.in{i}.2d"))?
            } else {
                x.clone()
            };
            let slice = Tensor::new(vec![k, n], b.data[i * k * n..(i + 1) * k * n].to_vec());
            let weight = transpose_const(&slice, &[1, 0]);
            let yi = self.dense(xi, &weight, &vec![0.0; n], &format!("{name}.{i}"))?;
            parts.push(self.reshape(yi, vec![1, m, n], &format!("{name}.{i}.3d"))?);
        }
        let joined = self.cat(parts, 0, &format!("{name}.joined"))?;
        let mut out = batch_dims.to_vec();
        out.extend([m, n]);
        self.reshape(joined, out, name)
    }

    /// Conv, MaxPool, AveragePool and GlobalAveragePool over a 1-D input
    /// `[N, C, L]`: the same op over `[N, C, 1, L]`, with the weight and the
    /// window attributes lifted to two dimensions, and the output flattened
    /// back. None for other ops and ranks.
    fn one_dimensional(&mut self, node: &NodeProto, name: &str) -> Result<Option<Val>> {
        let op = node.op_type.as_str();
        if !matches!(op, "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "GlobalAveragePool")
            || node.input.is_empty()
        {
            return Ok(None);
        }
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        if shape.len() != 3 {
            return Ok(None);
        }
        let mut lifted = node.clone();
        lifted.attribute = node.attribute.iter().map(lift_attr).collect();
        lifted.input[0] = format!("{name}#2d.x");
        lifted.output = vec![format!("{name}#2d.y")];
        let x4 = self.reshape(x, vec![shape[0], shape[1], 1, shape[2]], &format!("{name}.2d"))?;
        self.vals.insert(lifted.input[0].clone(), x4);
        if op == "Conv" || op == "ConvTranspose" {
            let w = self.const_input(node, 1, "the Conv weight")?;
            ensure!(w.shape.len() == 3, "a 1-D {op}'s weight {:?} is not 3-D", w.shape);
            let w4 = Tensor::new(vec![w.shape[0], w.shape[1], 1, w.shape[2]], w.data);
            lifted.input[1] = format!("{name}#2d.w");
            self.vals.insert(lifted.input[1].clone(), Val::Const(w4));
        }
        self.node(&lifted, name)?;
        let y = self.vals.remove(&lifted.output[0]).ok_or_else(|| anyhow!("the 2-D form produced no output"))?;
        let ys = self.shape(&y);
        Ok(Some(self.reshape(y, vec![ys[0], ys[1], ys[3]], name)?))
    }

    /// Split into consecutive parts along an axis: sizes from the `split`
    /// input (opset 13) or attribute, else `num_outputs` (opset 18) or the
    /// number of outputs, the last part taking the remainder.
    fn split(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let a = axis(attr_i(node, "axis", 0), shape.len())?;
        let d = shape[a];
        let parts = node.output.len();
        ensure!(parts > 0, "Split without outputs");
        let sizes: Vec<usize> = match self.ints_of(node, 1, "split", 13)? {
            Some(s) => {
                ensure!(s.len() == parts, "Split into {} sizes for {parts} outputs", s.len());
                ensure!(s.iter().all(|&v| v >= 0), "Split with a negative size");
                s.iter().map(|&v| v as usize).collect()
            }
            None => {
                let n = attr_i(node, "num_outputs", parts as i64).max(1) as usize;
                ensure!(n == parts, "Split num_outputs {n} for {parts} outputs");
                let each = d.div_ceil(n);
                (0..n).map(|i| each.min(d.saturating_sub(i * each))).collect()
            }
        };
        ensure!(sizes.iter().sum::<usize>() == d, "Split sizes {sizes:?} do not add up to the axis of {d}");
        let st = strides(&shape);
        let mut start = 0;
        for (out_name, &len) in node.output.iter().zip(&sizes) {
            let mut out = shape.clone();
            out[a] = len;
            let mut map = Vec::new();
            for_each_index(&out, |pos| {
                let idx: usize =
                    pos.iter().enumerate().map(|(dim, &p)| (p + if dim == a { start } else { 0 }) * st[dim]).sum();
                map.push(Some(idx));
            });
            let v = self.rearrange(x.clone(), out, map, 0.0, &format!("{name}.{out_name}"))?;
            if let Val::Node(id) = &v {
                check_size(&self.graph.nodes[*id].shape)?;
            }
            self.vals.insert(out_name.clone(), v);
            start += len;
        }
        Ok(())
    }

    /// Range of constant start, limit and delta: a constant.
    fn range(&mut self, node: &NodeProto) -> Result<Val> {
        let scalar = |i: usize, what: &str| -> Result<f64> {
            let t = self.const_input(node, i, what)?;
            ensure!(t.len() == 1, "Range {what} is not a scalar");
            Ok(t.data[0])
        };
        let (start, limit, delta) = (scalar(0, "start")?, scalar(1, "limit")?, scalar(2, "delta")?);
        ensure!(delta != 0.0, "Range with delta 0");
        let n = ((limit - start) / delta).ceil().max(0.0);
        ensure!(n <= MAX_TENSOR_ELEMENTS as f64, "Range of {n} elements exceeds the limit of {MAX_TENSOR_ELEMENTS}");
        let data: Vec<f64> = (0..n as usize).map(|i| start + i as f64 * delta).collect();
        Ok(Val::Const(Tensor::new(vec![data.len()], data)))
    }

    /// Trilu: the upper (or lower) triangle of the last two axes from
    /// diagonal k on, the rest 0 — a rearrangement.
    fn trilu(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let r = shape.len();
        ensure!(r >= 2, "Trilu of a rank-{r} tensor");
        let k = match self.opt_input(node, 1)? {
            Some(Val::Const(t)) if t.len() == 1 => t.data[0] as i64,
            Some(_) => bail!("Trilu with a runtime or non-scalar k is not supported"),
            None => 0,
        };
        let upper = attr_i(node, "upper", 1) != 0;
        let mut map = Vec::new();
        let mut flat = 0;
        for_each_index(&shape, |pos| {
            let (i, j) = (pos[r - 2] as i64, pos[r - 1] as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            map.push(keep.then_some(flat));
            flat += 1;
        });
        self.rearrange(x, shape, map, 0.0, name)
    }

    /// TopK with a constant k along an axis (largest or smallest; always
    /// sorted, which every `sorted` admits): the axis moved last, the values
    /// and indices found there, each moved back into its output.
    fn top_k(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        let Val::Node(x) = self.input(node, 0)? else { bail!("TopK of a constant") };
        let k = if self.opset >= 10 {
            match self.input(node, 1)? {
                Val::Const(t) if t.len() == 1 && t.data[0] >= 1.0 => t.data[0] as usize,
                _ => bail!("TopK needs a constant k of at least 1"),
            }
        } else {
            attr_i(node, "k", 0).max(0) as usize
        };
        let largest = attr_i(node, "largest", 1) != 0;
        let shape = self.graph.nodes[x].shape.clone();
        let rank = shape.len();
        ensure!(rank > 0, "TopK of a scalar");
        let a = axis(attr_i(node, "axis", -1), rank)?;
        ensure!(k >= 1 && k <= shape[a], "TopK k = {k} for an axis of {}", shape[a]);
        let (perm, back, moved) = axis_last(&shape, a);
        let t = self.graph.push(&format!("{name}.to_last"), Op::Transpose { perm }, vec![x], moved.clone());
        let mut both = moved;
        both[rank - 1] = 2 * k;
        let found = self.graph.push(&format!("{name}.found"), Op::TopK { k, largest }, vec![t], both.clone());
        let mut out_shape = shape.clone();
        out_shape[a] = k;
        for (i, out) in node.output.iter().enumerate().take(2) {
            if out.is_empty() {
                continue;
            }
            let half = self.take(Val::Node(found), &both, rank - 1, i * k, k, &format!("{name}.{out}.last"))?;
            let Val::Node(h) = half else { unreachable!("a runtime value stays runtime") };
            let v =
                self.push(&format!("{name}.{out}"), Op::Transpose { perm: back.clone() }, vec![h], out_shape.clone());
            self.vals.insert(out.clone(), v);
        }
        Ok(())
    }

    /// ArgMax and ArgMin along an axis (keepdims, select_last_index): the
    /// axis moved last, the index found there, and the result reshaped.
    fn arg_extreme(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let min = node.op_type == "ArgMin";
        let last = attr_i(node, "select_last_index", 0) != 0;
        let Val::Node(x) = self.input(node, 0)? else { bail!("{} of a constant", node.op_type) };
        let shape = self.graph.nodes[x].shape.clone();
        let rank = shape.len();
        ensure!(rank > 0, "{} of a scalar", node.op_type);
        let a = axis(attr_i(node, "axis", 0), rank)?;
        let (perm, _, moved) = axis_last(&shape, a);
        let t = if a + 1 == rank {
            x
        } else {
            self.graph.push(&format!("{name}.to_last"), Op::Transpose { perm }, vec![x], moved.clone())
        };
        let mut found = moved.clone();
        found[rank - 1] = 1;
        let idx = self.graph.push(&format!("{name}.index"), Op::ArgExtreme { min, last }, vec![t], found);
        let mut out = shape.clone();
        if attr_i(node, "keepdims", 1) != 0 {
            out[a] = 1;
        } else {
            out.remove(a);
        }
        Ok(self.push(name, Op::Reshape, vec![idx], out))
    }

    /// Gather by runtime indices from constant data (embeddings): the data
    /// with the gathered axis moved first goes into lookup tables, and the
    /// output, indices' axes first, is moved back into ONNX's order.
    fn gather_runtime(&mut self, x: Val, idx: NodeId, a: usize, name: &str) -> Result<Val> {
        let data = match x {
            Val::Const(data) => data,
            Val::Node(x) => return self.gather_dyn(x, idx, a, name),
        };
        let rank = data.shape.len();
        let mut perm = vec![a];
        perm.extend((0..rank).filter(|&d| d != a));
        let moved = transpose_const(&data, &perm);
        let ishape = self.graph.nodes[idx].shape.clone();
        let mut out = ishape.clone();
        out.extend(&moved.shape[1..]);
        check_size(&out)?;
        let gathered = self.push(&format!("{name}.rows"), Op::GatherConst { data: moved }, vec![idx], out.clone());
        if a == 0 {
            return Ok(gathered);
        }
        // [indices.., pre.., post..] to [pre.., indices.., post..].
        let k = ishape.len();
        let mut back: Vec<usize> = (k..k + a).collect();
        back.extend(0..k);
        back.extend(k + a..out.len());
        let final_shape: Vec<usize> = back.iter().map(|&d| out[d]).collect();
        let Val::Node(id) = gathered else { unreachable!("pushed nodes are runtime values") };
        Ok(self.push(name, Op::Transpose { perm: back }, vec![id], final_shape))
    }

    /// Gather along axis `a` of runtime data by runtime indices: output
    /// `[pre.., indices.., post..]`, each element choosing among the `n`
    /// positions of its data row.
    fn gather_dyn(&mut self, x: NodeId, idx: NodeId, a: usize, name: &str) -> Result<Val> {
        let shape = self.graph.nodes[x].shape.clone();
        let ishape = self.graph.nodes[idx].shape.clone();
        let (n, k) = (shape[a], ishape.len());
        let mut out = shape[..a].to_vec();
        out.extend(&ishape);
        out.extend(&shape[a + 1..]);
        check_size(&out)?;
        let (st, ist) = (strides(&shape), strides(&ishape));
        let (mut choices, mut which) = (Vec::new(), Vec::new());
        for_each_index(&out, |pos| {
            which.push(pos[a..a + k].iter().zip(&ist).map(|(p, s)| p * s).sum());
            let base: usize = pos[..a].iter().zip(&st).map(|(p, s)| p * s).sum::<usize>()
                + pos[a + k..].iter().zip(&st[a + 1..]).map(|(p, s)| p * s).sum::<usize>();
            choices.push((0..n).map(|j| base + j * st[a]).collect());
        });
        Ok(self.push(name, Op::GatherDyn { n, choices, which }, vec![x, idx], out))
    }

    /// GatherElements by runtime indices: output element `p` chooses among
    /// the positions of its data row along axis `a`.
    fn gather_elements_dyn(&mut self, x: Val, idx: NodeId, a: usize, name: &str) -> Result<Val> {
        let shape = self.shape(&x);
        let ishape = self.graph.nodes[idx].shape.clone();
        ensure!(ishape.len() == shape.len(), "GatherElements indices {ishape:?} for data {shape:?}");
        ensure!(
            (0..shape.len()).all(|d| d == a || ishape[d] <= shape[d]),
            "GatherElements indices {ishape:?} exceed data {shape:?} off axis {a}"
        );
        let choices = axis_rows(&ishape, &shape, a);
        let which = (0..choices.len()).collect();
        let x = self.node_of(x, &format!("{name}.data"));
        Ok(self.push(name, Op::GatherDyn { n: shape[a], choices, which }, vec![x, idx], ishape))
    }

    /// Pad in constant, edge, reflect or wrap mode; negative pads crop.
    fn pad(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let rank = shape.len();
        let pads = self.ints_of(node, 1, "pads", 11)?.ok_or_else(|| anyhow!("Pad without pads"))?;
        let value = if self.opset >= 11 {
            match self.opset_input_const(node, 2)? {
                Some(t) => t.data.first().copied().unwrap_or(0.0),
                None => 0.0,
            }
        } else {
            attr_f(node, "value", 0.0)
        };
        let axes = match if self.opset >= 18 { self.opset_input_const(node, 3)? } else { None } {
            Some(t) => t.data.iter().map(|&a| axis(a as i64, rank)).collect::<Result<Vec<_>>>()?,
            None => (0..rank).collect(),
        };
        ensure!(pads.len() == 2 * axes.len(), "Pad has {} pads for {} axes", pads.len(), axes.len());
        let mode = attr_s(node, "mode").unwrap_or_else(|| "constant".into());
        ensure!(
            matches!(mode.as_str(), "constant" | "edge" | "reflect" | "wrap"),
            "Pad mode {mode:?} is not one of constant, edge, reflect, wrap"
        );
        let mut before = vec![0i64; rank];
        let mut out = shape.clone();
        for (i, &a) in axes.iter().enumerate() {
            let (b, e) = (pads[i], pads[i + axes.len()]);
            before[a] = b;
            let n = shape[a] as i64 + b + e;
            ensure!(n >= 0, "Pad crops axis {a} below nothing");
            ensure!(
                mode != "reflect" || (b < shape[a] as i64 && e < shape[a] as i64),
                "reflect pads must be smaller than the axis"
            );
            out[a] = n as usize;
        }
        let st = strides(&shape);
        let mut map = Vec::new();
        for_each_index(&out, |pos| {
            let mut at = Some(0usize);
            for (dim, &p) in pos.iter().enumerate() {
                let d = shape[dim] as i64;
                let i = p as i64 - before[dim];
                let j = if (0..d).contains(&i) {
                    Some(i)
                } else {
                    match mode.as_str() {
                        "edge" => Some(i.clamp(0, d - 1)),
                        "wrap" => Some(i.rem_euclid(d)),
                        "reflect" if d > 1 => {
                            let period = 2 * (d - 1);
                            let r = i.rem_euclid(period);
                            Some(if r < d { r } else { period - r })
                        }
                        "reflect" => Some(0),
                        _ => None,
                    }
                };
                at = match (at, j) {
                    (Some(a), Some(j)) => Some(a + j as usize * st[dim]),
                    _ => None,
                };
            }
            map.push(at);
        });
        self.rearrange(x, out, map, value, name)
    }

    /// Cast: folded on constants (truncated toward zero for integer types,
    /// 0 or 1 for bool); a runtime tensor cast to a float type is itself.
    fn cast(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let to = match node.op_type.as_str() {
            // CastLike: to the type of its second input.
            "CastLike" => i64::from(self.types.get(input_name(node, 1)?).copied().unwrap_or(1)),
            _ => attr_i(node, "to", 0),
        };
        let float = matches!(to, 1 | 10 | 11 | 16);
        let integer = types::is_integer_code(to as i32);
        match self.input(node, 0)? {
            Val::Const(t) => {
                let f = |v: f64| {
                    if float {
                        v
                    } else if to == 9 {
                        f64::from(u8::from(v != 0.0))
                    } else {
                        v.trunc()
                    }
                };
                ensure!(float || integer || to == 9, "Cast to type {to} is not supported at node `{name}`");
                Ok(Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|&v| f(v)).collect())))
            }
            Val::Node(x) if float => Ok(Val::Node(x)),
            Val::Node(x) if integer || to == 9 => {
                let shape = self.graph.nodes[x].shape.clone();
                let from = self.types.get(input_name(node, 0)?).copied().unwrap_or(1);
                let whole = types::is_integer_code(from) || from == 9;
                Ok(match (to == 9, whole) {
                    // Between whole-number types a value stays itself.
                    (false, true) => Val::Node(x),
                    (true, _) if from == 9 => Val::Node(x),
                    (true, _) => self.push(name, Op::Act(Activation::NonZero), vec![x], shape),
                    (false, false) => self.push(name, Op::Trunc, vec![x], shape),
                })
            }
            Val::Node(_) => bail!("Cast of a runtime tensor to type {to} is not supported"),
        }
    }

    /// A variadic op's inputs and the shape they broadcast to.
    fn broadcast_inputs(&self, node: &NodeProto) -> Result<(Vec<Val>, Vec<usize>)> {
        let vals: Vec<Val> = (0..node.input.len()).map(|i| self.input(node, i)).collect::<Result<_>>()?;
        ensure!(!vals.is_empty(), "{} of no inputs", node.op_type);
        let mut out: Vec<usize> = Vec::new();
        for v in &vals {
            out = broadcast_shapes(&out, &self.shape(v))
                .ok_or_else(|| anyhow!("{} inputs of shapes that do not broadcast", node.op_type))?;
        }
        Ok((vals, out))
    }

    /// Mean of several tensors, broadcast: stacked on a new first axis and
    /// reduced over it, so the sum is exact and divided once, rounded.
    fn mean(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let (vals, out) = self.broadcast_inputs(node)?;
        let n = vals.len();
        if n == 1 {
            return Ok(vals.into_iter().next().expect("one"));
        }
        let mut stacked_shape = vec![1];
        stacked_shape.extend(&out);
        let mut parts = Vec::with_capacity(n);
        for (i, v) in vals.into_iter().enumerate() {
            let shape = self.shape(&v);
            let mut map = Vec::new();
            for_each_index(&out, |pos| map.push(Some(broadcast_index(&shape, pos))));
            let full = self.rearrange(v, out.clone(), map, 0.0, &format!("{name}.{i}"))?;
            let full = self.node_of(full, &format!("{name}.{i}.const"));
            parts.push(self.graph.push(&format!("{name}.{i}.row"), Op::Reshape, vec![full], stacked_shape.clone()));
        }
        let mut cat_shape = vec![n];
        cat_shape.extend(&out);
        let cat = self.graph.push(&format!("{name}.stack"), Op::Concat { axis: 0 }, parts, cat_shape);
        Ok(self.push(name, Op::Reduce { kind: Reduce::Mean, axes: vec![0] }, vec![cat], out))
    }

    /// Max or Min of several tensors, broadcast.
    fn extremum(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let min = node.op_type == "Min";
        let (vals, out) = self.broadcast_inputs(node)?;
        if vals.iter().all(|v| matches!(v, Val::Const(_))) {
            let ts: Vec<&Tensor> =
                vals.iter().map(|v| if let Val::Const(t) = v { t } else { unreachable!() }).collect();
            let mut data = Vec::new();
            for_each_index(&out, |pos| {
                let it = ts.iter().map(|t| t.data[broadcast_index(&t.shape, pos)]);
                data.push(if min { it.fold(f64::INFINITY, f64::min) } else { it.fold(f64::NEG_INFINITY, f64::max) });
            });
            return Ok(Val::Const(Tensor::new(out, data)));
        }
        if vals.len() == 1 {
            return Ok(vals.into_iter().next().expect("one"));
        }
        let ids: Vec<NodeId> =
            vals.into_iter().enumerate().map(|(i, v)| self.node_of(v, &format!("{name}.{i}"))).collect();
        Ok(self.push(name, Op::Extremum { min }, ids, out))
    }

    /// A reduction: axes from the attribute, or from the second input where
    /// the op's opset takes them there (ReduceSum from 13, the others from
    /// 18); no axes reduce everything unless `noop_with_empty_axes`.
    /// A reduction's axes, sorted (None for a no-op: empty axes with
    /// noop_with_empty_axes).
    fn reduce_axes(&self, node: &NodeProto, kind: Reduce, rank: usize) -> Result<Option<Vec<usize>>> {
        let axes_from_input = self.opset >= 18 || (kind == Reduce::Sum && self.opset >= 13);
        let given: Vec<i64> = if axes_from_input {
            match self.opset_input_const(node, 1)? {
                Some(t) => t.data.iter().map(|&a| a as i64).collect(),
                None => Vec::new(),
            }
        } else {
            attr_ints(node, "axes").unwrap_or_default()
        };
        if given.is_empty() && attr_i(node, "noop_with_empty_axes", 0) != 0 {
            return Ok(None);
        }
        let mut axes: Vec<usize> = if given.is_empty() {
            (0..rank).collect()
        } else {
            given.iter().map(|&a| axis(a, rank)).collect::<Result<_>>()?
        };
        axes.sort_unstable();
        axes.dedup();
        Ok(Some(axes))
    }

    fn reduce(&mut self, node: &NodeProto, name: &str, kind: Reduce) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let Some(axes) = self.reduce_axes(node, kind, shape.len())? else { return Ok(x) };
        self.reduce_over(x, axes, attr_i(node, "keepdims", 1) != 0, kind, name)
    }

    /// A reduction of `x` over `axes` (sorted), folded on constants.
    fn reduce_over(&mut self, x: Val, axes: Vec<usize>, keep: bool, kind: Reduce, name: &str) -> Result<Val> {
        let shape = self.shape(&x);
        let out_shape: Vec<usize> = shape
            .iter()
            .enumerate()
            .filter_map(|(d, &n)| match (axes.contains(&d), keep) {
                (false, _) => Some(n),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        match x {
            Val::Const(t) => {
                let data = reduction_groups(&t.shape, &axes)
                    .iter()
                    .map(|g| kind.eval(&g.iter().map(|&i| t.data[i]).collect::<Vec<_>>()))
                    .collect();
                Ok(Val::Const(Tensor::new(out_shape, data)))
            }
            Val::Node(id) => {
                ensure!(shape.iter().product::<usize>() > 0, "{} of an empty tensor", kind.name());
                Ok(self.push(name, Op::Reduce { kind, axes }, vec![id], out_shape))
            }
        }
    }

    fn opset_input_const(&self, node: &NodeProto, i: usize) -> Result<Option<Tensor>> {
        match self.opt_input(node, i)? {
            None => Ok(None),
            Some(Val::Const(t)) => Ok(Some(t)),
            Some(Val::Node(_)) => bail!("input {i} must be a constant"),
        }
    }

    /// Softmax, LogSoftmax and Hardmax on any axis.
    fn softmax(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let op = match node.op_type.as_str() {
            "LogSoftmax" => Op::LogSoftmax,
            "Hardmax" => Op::Hardmax,
            _ => Op::Softmax,
        };
        let Val::Node(x) = self.input(node, 0)? else { bail!("{} of a constant", node.op_type) };
        let shape = self.graph.nodes[x].shape.clone();
        let default = if self.opset >= 13 { -1 } else { 1 };
        let rank = shape.len();
        let a = axis(attr_i(node, "axis", default), rank)?;
        if a + 1 == rank {
            return Ok(self.push(name, op, vec![x], shape));
        }
        if self.opset < 13 {
            // Before opset 13 the input is flattened to 2-D at the axis and
            // each row normalised: a reshape either side of a last-axis softmax.
            let flat = vec![shape[..a].iter().product(), shape[a..].iter().product()];
            let rows = self.graph.push(&format!("{name}.rows"), Op::Reshape, vec![x], flat.clone());
            let soft = self.graph.push(&format!("{name}.rows.op"), op, vec![rows], flat);
            return Ok(self.push(name, Op::Reshape, vec![soft], shape));
        }
        // Any other axis: moved last, normalised, and moved back.
        let (perm, back, moved) = axis_last(&shape, a);
        let t = self.graph.push(&format!("{name}.to_last"), Op::Transpose { perm }, vec![x], moved.clone());
        let soft = self.graph.push(&format!("{name}.last"), op, vec![t], moved);
        Ok(self.push(name, Op::Transpose { perm: back }, vec![soft], shape))
    }

    fn concat(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let vals: Vec<Val> = (0..node.input.len()).map(|i| self.input(node, i)).collect::<Result<_>>()?;
        if vals.is_empty() {
            bail!("Concat without inputs");
        }
        let first = self.shape(&vals[0]);
        let a = axis(attr_i(node, "axis", 0), first.len())?;
        let mut shape = first.clone();
        shape[a] = 0;
        for v in &vals {
            let s = self.shape(v);
            if s.len() != first.len() || (0..s.len()).any(|d| d != a && s[d] != first[d]) {
                bail!("Concat inputs {first:?} and {s:?} differ off axis {a}");
            }
            shape[a] += s[a];
        }
        // Constants only (a shape computed from Shape, Gather and Unsqueeze,
        // as PyTorch's exporter writes it): folded.
        if vals.iter().all(|v| matches!(v, Val::Const(_))) {
            let outer: usize = first[..a].iter().product();
            let mut data = Vec::with_capacity(shape.iter().product());
            for o in 0..outer {
                for v in &vals {
                    let Val::Const(t) = v else { unreachable!("checked above") };
                    let block = t.data.len() / outer.max(1);
                    data.extend_from_slice(&t.data[o * block..(o + 1) * block]);
                }
            }
            return Ok(Val::Const(Tensor::new(shape, data)));
        }
        let ids = vals.into_iter().enumerate().map(|(i, v)| self.node_of(v, &format!("{name}.in{i}"))).collect();
        Ok(self.push(name, Op::Concat { axis: a }, ids, shape))
    }
}

/// The weights of cubic interpolation at source coordinate `c` over an axis
/// of `n` inputs (Keys' kernel with coefficient `a`), added into `row`: four
/// taps, those outside the axis moved to its edge or, with
/// `exclude_outside`, dropped and the rest scaled to sum to one.
fn cubic_taps(c: f64, n: usize, a: f64, exclude_outside: bool, row: &mut [f64]) {
    let kernel = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            (a + 2.0) * x.powi(3) - (a + 3.0) * x.powi(2) + 1.0
        } else if x < 2.0 {
            a * x.powi(3) - 5.0 * a * x.powi(2) + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    let base = c.floor();
    let taps: Vec<(i64, f64)> = (-1..=2).map(|k| (base as i64 + k, kernel(c - (base + k as f64)))).collect();
    let inside = |i: i64| (0..n as i64).contains(&i);
    let total: f64 = if exclude_outside { taps.iter().filter(|t| inside(t.0)).map(|t| t.1).sum() } else { 1.0 };
    for (i, w) in taps {
        if exclude_outside && !inside(i) {
            continue;
        }
        row[i.clamp(0, n as i64 - 1) as usize] += w / total;
    }
}

/// For each position of an index tensor of `ishape` (GatherElements,
/// ScatterElements), the data elements along axis `a` it may choose among:
/// its own coordinates off the axis, every position on it.
fn axis_rows(ishape: &[usize], shape: &[usize], a: usize) -> Vec<Vec<usize>> {
    let st = strides(shape);
    let mut rows = Vec::new();
    for_each_index(ishape, |pos| {
        let base: usize = pos.iter().enumerate().filter(|&(d, _)| d != a).map(|(d, p)| p * st[d]).sum();
        rows.push((0..shape[a]).map(|j| base + j * st[a]).collect());
    });
    rows
}

/// The indices of a tensor's non-zero elements, `[rank, count]`, in row-major
/// order, as ONNX's NonZero gives them.
fn non_zero(t: &Tensor) -> Tensor {
    let rank = t.shape.len();
    let mut hits: Vec<Vec<usize>> = Vec::new();
    let mut k = 0;
    for_each_index(&t.shape, |pos| {
        if t.data[k] != 0.0 {
            hits.push(pos.to_vec());
        }
        k += 1;
    });
    let mut data = Vec::with_capacity(rank * hits.len());
    for d in 0..rank {
        data.extend(hits.iter().map(|p| p[d] as f64));
    }
    Tensor::new(vec![rank, hits.len()], data)
}

/// A grouped convolution's weight `[co, ci/g, kh, kw]` as the full
/// `[co, ci, kh, kw]` one, zero between groups: the zeros cost no rows, as
/// dense steps leave out zero weights.
fn ungroup(w: &Tensor, groups: usize) -> Tensor {
    let (co, cig, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let ci = cig * groups;
    let taps = kh * kw;
    let mut data = vec![0.0; co * ci * taps];
    for o in 0..co {
        let first = o / (co / groups) * cig;
        for c in 0..cig {
            let from = (o * cig + c) * taps;
            let to = (o * ci + first + c) * taps;
            data[to..to + taps].copy_from_slice(&w.data[from..from + taps]);
        }
    }
    Tensor::new(vec![co, ci, kh, kw], data)
}

/// A 1-D window attribute as its 2-D form over a height of one.
fn lift_attr(a: &AttributeProto) -> AttributeProto {
    let ints = match a.name.as_str() {
        "kernel_shape" | "strides" | "dilations" | "output_padding" | "output_shape" if a.ints.len() == 1 => {
            vec![if a.name == "output_padding" { 0 } else { 1 }, a.ints[0]]
        }
        "pads" if a.ints.len() == 2 => vec![0, a.ints[0], 0, a.ints[1]],
        _ => return a.clone(),
    };
    AttributeProto { ints, ..a.clone() }
}

/// Moving axis `a` of `shape` last: the permutation, its inverse and the
/// moved shape.
fn axis_last(shape: &[usize], a: usize) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut perm: Vec<usize> = (0..shape.len()).filter(|&d| d != a).collect();
    perm.push(a);
    let mut back = vec![0; shape.len()];
    for (i, &p) in perm.iter().enumerate() {
        back[p] = i;
    }
    let moved = perm.iter().map(|&p| shape[p]).collect();
    (perm, back, moved)
}

/// The values of constant `c` along `axis` of `shape`, when `c` broadcasts
/// to `shape` without enlarging it and varies along no other axis.
fn per_index(c: &Tensor, shape: &[usize], axis: usize) -> Option<Vec<f64>> {
    if c.shape.len() > shape.len() || broadcast_shapes(shape, &c.shape)? != shape {
        return None;
    }
    let offset = shape.len() - c.shape.len();
    let along = axis.checked_sub(offset).map_or(1, |a| c.shape[a]);
    if c.shape.iter().enumerate().any(|(d, &n)| n != 1 && d + offset != axis) {
        return None;
    }
    Some((0..shape[axis]).map(|i| c.data[if along == 1 { 0 } else { i }]).collect())
}

fn reshape_target(input: &[usize], target: &[f64], allowzero: bool) -> Result<Vec<usize>> {
    let n: usize = input.iter().product();
    let mut out = Vec::new();
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        let t = t as i64;
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| anyhow!("Reshape copies a missing dimension"))?),
            t if t > 0 => out.push(t as usize),
            t => bail!("invalid Reshape dimension {t}"),
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || !n.is_multiple_of(rest) {
            bail!("cannot infer the -1 dimension reshaping {input:?} to {target:?}");
        }
        out[i] = n / rest;
    }
    Ok(out)
}

pub fn transpose_const(t: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let st = strides(&t.shape);
    let mut data = Vec::with_capacity(t.len());
    for_each_index(&shape, |pos| {
        let idx: usize = pos.iter().enumerate().map(|(d, &p)| p * st[perm[d]]).sum();
        data.push(t.data[idx]);
    });
    Tensor::new(shape, data)
}
