#!/usr/bin/env python3
"""Writes zkfarm's operator suite: small ONNX models, one or a few per
operator zkfarm supports, plus small networks of the kinds people prove, each
with a seeded input and onnxruntime's output as the reference
(`NAME.onnx`, `NAME.json`).  `circuits/tests/suite.rs` compiles every model,
runs it by integer inference against that output and proves it with
MockProver.

Networks are held to the accuracy zkfarm promises (0.1, or 1% of the
largest output); single operators to 0.04, five quanta at the default scale.
Inputs lie on the grid of 1/128 (the default scale), so that quantizing them
loses nothing and discontinuous functions (Floor, Sign, comparisons) see the
values onnxruntime saw.  Running this again gives the same files.
Needs `pip install onnx onnxruntime`.  Usage: python3 make_suite.py
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = 128.0

F, I64, I32, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL
NP = {F: np.float32, I64: np.int64, I32: np.int32, B: np.bool_}

rng = np.random.default_rng(2026)
CASES = []


def grid(lo, hi, shape):
    return (np.round(rng.uniform(lo, hi, size=shape) * GRID) / GRID).astype(np.float32)


def weights(shape, scale=0.5):
    return (np.round(rng.normal(0.0, scale, size=shape) * GRID) / GRID).astype(np.float32)


class Case:
    def __init__(self, name, nodes, inputs, outputs=("y",), inits=None, opset=13, **extra):
        """`inputs`: (name, elem type, values); `inits`: name -> array."""
        self.name, self.nodes, self.inputs, self.outputs = name, nodes, inputs, list(outputs)
        self.inits = inits or {}
        self.opset, self.extra = opset, extra


def case(*args, **kw):
    CASES.append(Case(*args, **kw))


def tensor(name, value):
    value = np.asarray(value)
    return numpy_helper.from_array(value, name)


def build(c, out_infos):
    graph = helper.make_graph(
        c.nodes,
        c.name,
        [helper.make_tensor_value_info(n, t, list(np.asarray(v).shape)) for n, t, v in c.inputs],
        out_infos,
        initializer=[tensor(n, v) for n, v in c.inits.items()],
    )
    opsets = [helper.make_opsetid("", c.opset)]
    if any(n.domain == "com.microsoft" for n in c.nodes):
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def run(model, c):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {n: np.asarray(v).astype(NP[t]) for n, t, v in c.inputs}
    return sess.run(None, feeds)


def elem_of(array):
    types = {np.float32: F, np.int64: I64, np.int32: I32, np.bool_: B, np.uint8: TensorProto.UINT8, np.uint32: TensorProto.UINT32, np.int8: TensorProto.INT8}
    return {np.dtype(k): v for k, v in types.items()}[array.dtype]


def write(c):
    # `ref`: an equivalent graph onnxruntime runs where it lacks a form (batch-first recurrent nets).
    ref = c.extra.pop("ref", None)
    # `unchecked`: an op onnxruntime registers in the default domain that onnx's checker does not know.
    unchecked = c.extra.pop("unchecked", False)
    r = Case(c.name, ref, c.inputs, c.outputs, c.inits, c.opset) if ref else c
    # Outputs typed by ONNX's shape inference, shaped as onnxruntime computes them.
    untyped = onnx.shape_inference.infer_shapes(build(r, [helper.make_empty_tensor_value_info(o) for o in r.outputs]))
    types = {o.name: o.type.tensor_type.elem_type for o in untyped.graph.output}
    outs = run(build(r, [helper.make_tensor_value_info(o, types[o] or F, None) for o in r.outputs]), r)
    model = build(c, [helper.make_tensor_value_info(o, elem_of(v), list(v.shape)) for o, v in zip(c.outputs, outs)])
    if not unchecked:
        onnx.checker.check_model(model)
    if not ref:
        outs = run(model, c)
    onnx.save(model, os.path.join(HERE, f"{c.name}.onnx"))
    data = {
        "input_data": [[float(v) for v in np.asarray(x, dtype=np.float64).flatten()] for _, _, x in c.inputs],
        "output_data": [[float(v) for v in np.asarray(o, dtype=np.float64).flatten()] for o in outs],
    }
    data.update(c.extra)
    with open(os.path.join(HERE, f"{c.name}.json"), "w") as f:
        json.dump(data, f)


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op.lower()}_{'_'.join(outputs)}", **attrs)


def unary(op, lo=-3.0, hi=3.0, shape=(2, 3, 4), opset=13, **attrs):
    name = attrs.pop("name", op.lower())
    case(name, [node(op, ["x"], **attrs)], [("x", F, grid(lo, hi, shape))], opset=opset)


# ---- element-wise functions ----
for op, lo, hi in [
    ("Abs", -3, 3), ("Neg", -3, 3), ("Relu", -3, 3), ("Sigmoid", -4, 4), ("Tanh", -3, 3), ("Elu", -3, 3),
    ("Selu", -3, 3), ("Celu", -3, 3), ("Softplus", -3, 3), ("Softsign", -3, 3), ("Erf", -2, 2), ("Exp", -3, 2),
    ("Log", 0.25, 4), ("Sqrt", 0, 4), ("Reciprocal", 0.5, 4), ("Sign", -3, 3), ("Floor", -3, 3), ("Ceil", -3, 3),
    ("Round", -3, 3), ("Sin", -3, 3), ("Cos", -3, 3), ("Tan", -1, 1), ("Asin", -0.9, 0.9), ("Acos", -0.9, 0.9),
    ("Atan", -3, 3), ("Sinh", -2, 2), ("Cosh", -2, 2), ("Asinh", -3, 3), ("Acosh", 1.25, 4), ("Atanh", -0.8, 0.8),
    ("Identity", -3, 3), ("HardSigmoid", -4, 4),
]:
    unary(op, lo, hi)
unary("HardSwish", -4, 4, opset=14)
unary("Mish", -3, 3, opset=18)
unary("Gelu", -3, 3, opset=20)
unary("Gelu", -3, 3, opset=20, approximate="tanh", name="gelu_tanh")
unary("LeakyRelu", -3, 3, alpha=0.1)
unary("ThresholdedRelu", -3, 3, alpha=0.5)
unary("Shrink", -3, 3, bias=0.25, lambd=1.0)
unary("Elu", -3, 3, alpha=0.5, name="elu_alpha")
unary("Softmax", -3, 3, axis=1, name="softmax_axis1")
unary("Softmax", -3, 3, axis=-1)
unary("LogSoftmax", -3, 3, axis=-1)
unary("Hardmax", -3, 3, axis=-1)
unary("Dropout", -3, 3)
case("clip", [node("Clip", ["x", "lo", "hi"])], [("x", F, grid(-3, 3, (2, 6)))], inits={"lo": np.float32(-1.0), "hi": np.float32(2.0)})
case("pow_2", [node("Pow", ["x", "e"])], [("x", F, grid(-2, 2, (2, 6)))], inits={"e": np.float32(2.0)})
case("pow_half", [node("Pow", ["x", "e"])], [("x", F, grid(0, 4, (2, 6)))], inits={"e": np.float32(0.5)})
case("pow_3", [node("Pow", ["x", "e"])], [("x", F, grid(-1.5, 1.5, (2, 6)))], inits={"e": np.float32(3.0)})
case("prelu", [node("PRelu", ["x", "s"])], [("x", F, grid(-3, 3, (1, 3, 4)))], inits={"s": np.array([[0.1], [-0.5], [2.0]], np.float32)})
case("cast_int", [node("Cast", ["x"], to=I64)], [("x", F, grid(-3, 3, (2, 6)))])
case("cast_bool", [node("Cast", ["x"], to=B)], [("x", F, np.array([[0, 1.5, -2, 0, 0.0078125, 3]], np.float32))])

# ---- arithmetic of runtime tensors, with broadcasting ----
for op in ["Add", "Sub", "Mul", "Max", "Min"]:
    case(op.lower(), [node(op, ["a", "b"])], [("a", F, grid(-3, 3, (2, 3, 4))), ("b", F, grid(-3, 3, (3, 1)))])
case("div", [node("Div", ["a", "b"])], [("a", F, grid(-3, 3, (2, 3, 4))), ("b", F, grid(0.5, 3, (1, 4)) * np.array([1, -1, 1, -1], np.float32))])
case("div_const", [node("Div", ["a", "c"])], [("a", F, grid(-3, 3, (2, 6)))], inits={"c": np.float32(3.0)})
for op in ["Sum", "Mean", "Max", "Min"]:
    case(f"{op.lower()}_variadic", [node(op, ["a", "b", "c"])], [(n, F, grid(-3, 3, (2, 5))) for n in "abc"])
case("mod_fmod", [node("Mod", ["a", "b"], fmod=1)], [("a", F, grid(-3, 3, (2, 6))), ("b", F, np.full((2, 6), 1.25, np.float32))])
case("mod_int", [node("Mod", ["a", "b"])], [("a", I64, rng.integers(-20, 20, (2, 6))), ("b", I64, np.full((1, 6), 7))])

# ---- comparison and logic ----
xa, xb = grid(-2, 2, (2, 6)), grid(-2, 2, (2, 6))
xb[0, ::2] = xa[0, ::2]  # ties
for op in ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]:
    case(op.lower(), [node(op, ["a", "b"])], [("a", F, xa), ("b", F, xb)], opset=16)
ba, bb = rng.integers(0, 2, (2, 6)).astype(bool), rng.integers(0, 2, (2, 6)).astype(bool)
for op in ["And", "Or", "Xor"]:
    case(op.lower(), [node(op, ["a", "b"])], [("a", B, ba), ("b", B, bb)])
case("not", [node("Not", ["a"])], [("a", B, ba)])
case("where", [node("Where", ["c", "a", "b"])], [("c", B, ba), ("a", F, xa), ("b", F, xb)])
case("where_compare", [node("Greater", ["a", "b"], ["c"]), node("Where", ["c", "a", "b"])], [("a", F, xa), ("b", F, xb)])

# ---- linear layers ----
case("gemm", [node("Gemm", ["x", "w", "b"], transB=1)], [("x", F, grid(-1, 1, (2, 8)))], inits={"w": weights((5, 8)), "b": weights((5,))})
case("matmul_const", [node("MatMul", ["x", "w"])], [("x", F, grid(-1, 1, (2, 3, 8)))], inits={"w": weights((8, 4))})
case("matmul_runtime", [node("MatMul", ["a", "b"])], [("a", F, grid(-1, 1, (2, 3, 4))), ("b", F, grid(-1, 1, (2, 4, 5)))])
case("einsum_bmm", [node("Einsum", ["a", "b"], equation="bij,bjk->bik")], [("a", F, grid(-1, 1, (2, 3, 4))), ("b", F, grid(-1, 1, (2, 4, 2)))], opset=12)
case("einsum_transpose_sum", [node("Einsum", ["a"], equation="ijk->kj")], [("a", F, grid(-1, 1, (2, 3, 4)))], opset=12)
case("conv", [node("Conv", ["x", "w", "b"], pads=[1, 1, 1, 1], strides=[2, 2])], [("x", F, grid(-1, 1, (1, 2, 7, 7)))], inits={"w": weights((3, 2, 3, 3)), "b": weights((3,))})
case("conv_depthwise", [node("Conv", ["x", "w"], group=3, pads=[1, 1, 1, 1])], [("x", F, grid(-1, 1, (1, 3, 5, 5)))], inits={"w": weights((3, 1, 3, 3))})
case("conv_dilated", [node("Conv", ["x", "w"], dilations=[2, 2])], [("x", F, grid(-1, 1, (1, 1, 7, 7)))], inits={"w": weights((2, 1, 3, 3))})
case("conv_1d", [node("Conv", ["x", "w", "b"], pads=[1, 1])], [("x", F, grid(-1, 1, (1, 2, 9)))], inits={"w": weights((3, 2, 3)), "b": weights((3,))})
case("conv_transpose", [node("ConvTranspose", ["x", "w"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])], [("x", F, grid(-1, 1, (1, 2, 4, 4)))], inits={"w": weights((2, 3, 3, 3))})
bn = {"s": weights((3,)) + 1, "b": weights((3,)), "m": weights((3,)), "v": np.abs(weights((3,))) + 0.5}
case("batchnorm", [node("BatchNormalization", ["x", "s", "b", "m", "v"])], [("x", F, grid(-2, 2, (1, 3, 4, 4)))], inits=bn)
case("conv_batchnorm_relu", [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]), node("Relu", ["n"])], [("x", F, grid(-1, 1, (1, 2, 5, 5)))], inits={"w": weights((3, 2, 3, 3)), **bn})

# ---- pooling ----
case("maxpool", [node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], [("x", F, grid(-2, 2, (1, 2, 6, 6)))])
case("maxpool_padded", [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])], [("x", F, grid(-2, 2, (1, 1, 5, 5)))])
case("avgpool", [node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], [("x", F, grid(-2, 2, (1, 2, 6, 6)))])
case("avgpool_pads", [node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)], [("x", F, grid(-2, 2, (1, 1, 5, 5)))])
case("global_avgpool", [node("GlobalAveragePool", ["x"])], [("x", F, grid(-2, 2, (1, 3, 4, 4)))])

# ---- reductions and selection ----
for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"]:
    lo, hi = (0.5, 1.5) if op == "ReduceProd" else (-2, 2)
    case(op.lower(), [node(op, ["x", "axes"], keepdims=1)], [("x", F, grid(lo, hi, (2, 3, 4)))], inits={"axes": np.array([1], np.int64)}, opset=18)
case("reducemean_all", [node("ReduceMean", ["x"], keepdims=0)], [("x", F, grid(-2, 2, (2, 3, 4)))], opset=18)
case("reducesum_axes_attr", [node("ReduceSum", ["x"], axes=[0, 2], keepdims=0)], [("x", F, grid(-2, 2, (2, 3, 4)))], opset=11)
xs = grid(-2, 2, (3, 5))
for op in ["ArgMax", "ArgMin"]:
    case(op.lower(), [node(op, ["x"], axis=1, keepdims=1)], [("x", F, xs)])
    case(f"{op.lower()}_last", [node(op, ["x"], axis=0, keepdims=0, select_last_index=1)], [("x", F, np.array([[1, 2, 2], [2, 2, 0], [2, 1, 2]], np.float32))])
case("topk", [node("TopK", ["x", "k"], ["v", "i"], axis=1)], [("x", F, xs)], outputs=["v", "i"], inits={"k": np.array([2], np.int64)})
case("topk_smallest", [node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=0)], [("x", F, xs)], outputs=["v", "i"], inits={"k": np.array([3], np.int64)})

# ---- normalization ----
case("layernorm", [node("LayerNormalization", ["x", "g", "b"], axis=-1)], [("x", F, grid(-2, 2, (2, 3, 8)))], inits={"g": weights((8,)) + 1, "b": weights((8,))}, opset=17)
case("instancenorm", [node("InstanceNormalization", ["x", "g", "b"])], [("x", F, grid(-2, 2, (1, 3, 4, 4)))], inits={"g": weights((3,)) + 1, "b": weights((3,))})
case("groupnorm", [node("GroupNormalization", ["x", "g", "b"], num_groups=2)], [("x", F, grid(-2, 2, (1, 4, 3, 3)))], inits={"g": weights((4,)) + 1, "b": weights((4,))}, opset=21)
case("lpnorm", [node("LpNormalization", ["x"], axis=-1, p=2)], [("x", F, grid(0.25, 2, (2, 6)))])

# ---- shape and indexing ----
x234 = grid(-2, 2, (2, 3, 4))
shape_cases = [
    ("reshape", [node("Reshape", ["x", "s"])], {"s": np.array([4, -1], np.int64)}, 13),
    ("flatten", [node("Flatten", ["x"], axis=1)], {}, 13),
    ("transpose", [node("Transpose", ["x"], perm=[2, 0, 1])], {}, 13),
    ("squeeze_unsqueeze", [node("Unsqueeze", ["x", "a"], ["u"]), node("Squeeze", ["u", "a"])], {"a": np.array([1], np.int64)}, 13),
    ("concat", [node("Concat", ["x", "x"], axis=1)], {}, 13),
    ("slice", [node("Slice", ["x", "st", "en", "ax", "sp"])], {"st": np.array([2, 0], np.int64), "en": np.array([-5, 3], np.int64), "ax": np.array([2, 1], np.int64), "sp": np.array([-1, 2], np.int64)}, 13),
    ("split", [node("Split", ["x", "sz"], ["y", "z"], axis=2)], {"sz": np.array([1, 3], np.int64)}, 13),
    ("pad_constant", [node("Pad", ["x", "p", "v"], mode="constant")], {"p": np.array([0, 1, 2, 0, 0, 1], np.int64), "v": np.float32(0.5)}, 13),
    ("pad_reflect", [node("Pad", ["x", "p"], mode="reflect")], {"p": np.array([0, 1, 2, 0, 1, 1], np.int64)}, 13),
    ("pad_edge", [node("Pad", ["x", "p"], mode="edge")], {"p": np.array([0, 0, 2, 0, 0, 1], np.int64)}, 13),
    ("expand", [node("Expand", ["x", "s"])], {"s": np.array([2, 2, 3, 4], np.int64)}, 13),
    ("tile", [node("Tile", ["x", "r"])], {"r": np.array([1, 2, 1], np.int64)}, 13),
    ("gather", [node("Gather", ["x", "i"], axis=2)], {"i": np.array([[3, 0], [-1, 1]], np.int64)}, 13),
    ("gather_elements", [node("GatherElements", ["x", "i"], axis=2)], {"i": rng.integers(0, 4, (2, 3, 2)).astype(np.int64)}, 13),
    ("gather_nd", [node("GatherND", ["x", "i"])], {"i": np.array([[0, 1], [1, 2]], np.int64)}, 13),
    ("scatter_elements", [node("ScatterElements", ["x", "i", "u"], axis=2)], {"i": np.array([[[1, 3]] * 3] * 2, np.int64), "u": weights((2, 3, 2))}, 13),
    ("scatter_nd", [node("ScatterND", ["x", "i", "u"])], {"i": np.array([[1, 0], [0, 2]], np.int64), "u": weights((2, 4))}, 13),
    ("trilu", [node("Trilu", ["x", "k"], upper=0)], {"k": np.array(1, np.int64)}, 14),
    ("depth_to_space", [node("Reshape", ["x", "s"], ["r"]), node("DepthToSpace", ["r"], blocksize=2, mode="CRD")], {"s": np.array([1, 8, 3, 1], np.int64)}, 13),
    ("space_to_depth", [node("Reshape", ["x", "s"], ["r"]), node("SpaceToDepth", ["r"], blocksize=2)], {"s": np.array([1, 1, 4, 6], np.int64)}, 13),
    ("shape_folded", [node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", F, [1], [0.5])), node("Add", ["x", "c"])], {}, 13),
    ("size_folded", [node("Size", ["x"], ["n"]), node("Cast", ["n"], ["f"], to=F), node("Div", ["x", "f"])], {}, 13),
    ("resize_nearest", [node("Reshape", ["x", "s"], ["r"]), node("Resize", ["r", "", "sc"], mode="nearest")], {"s": np.array([1, 2, 3, 4], np.int64), "sc": np.array([1, 1, 2, 2], np.float32)}, 13),
    ("resize_linear", [node("Reshape", ["x", "s"], ["r"]), node("Resize", ["r", "", "sc"], mode="linear", coordinate_transformation_mode="half_pixel")], {"s": np.array([1, 2, 3, 4], np.int64), "sc": np.array([1, 1, 2, 1.5], np.float32)}, 13),
]
for name, nodes, inits, opset in shape_cases:
    outs = ["y", "z"] if name == "split" else ["y"]
    case(name, nodes, [("x", F, x234)], outputs=outs, inits=inits, opset=opset)
case("range_folded", [node("Range", ["s", "l", "d"], ["r"]), node("Add", ["x", "r"])], [("x", F, grid(-2, 2, (2, 5)))], inits={"s": np.float32(0), "l": np.float32(2.5), "d": np.float32(0.5)}, opset=11)
case("onehot", [node("OneHot", ["i", "d", "v"], axis=-1)], [("i", I64, np.array([[0, 3, 1], [2, 2, 4]], np.int64))], inits={"d": np.array(5, np.int64), "v": np.array([0, 1], np.float32)}, opset=11)
case("embedding", [node("Gather", ["e", "i"], axis=0)], [("i", I64, np.array([[1, 5, 0, 7]], np.int64))], inits={"e": weights((8, 6))})
case("upsample", [node("Upsample", ["x", "sc"], mode="nearest")], [("x", F, grid(-2, 2, (1, 1, 2, 3)))], inits={"sc": np.array([1, 1, 2, 2], np.float32)}, opset=9)
case("no_runtime_input", [node("Add", ["a", "b"])], [], inits={"a": weights((2, 3)), "b": weights((2, 3))})

# ---- recurrent ----
H, X, T = 4, 3, 5


def rnn_case(op, gates, direction="forward", **attrs):
    d = 2 if direction == "bidirectional" else 1
    inits = {"W": weights((d, gates * H, X)), "R": weights((d, gates * H, H)), "B": weights((d, 2 * gates * H), 0.1)}
    name = f"{op.lower()}_{direction}"
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    nodes = [helper.make_node(op, ["x", "W", "R", "B"], outs, name=name, hidden_size=H, direction=direction, **attrs)]
    case(name, nodes, [("x", F, grid(-1, 1, (T, 1, X)))], outputs=outs, inits=inits)


rnn_case("LSTM", 4)
rnn_case("LSTM", 4, "bidirectional")
rnn_case("GRU", 3)
rnn_case("GRU", 3, "reverse", linear_before_reset=1)
rnn_case("RNN", 1)

# ---- small networks ----
w1, b1, w2, b2 = weights((16, 12), 0.3), weights((16,), 0.1), weights((4, 16), 0.3), weights((4,), 0.1)
case("net_mlp", [node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), node("Relu", ["h"], ["a"]), node("Gemm", ["a", "w2", "b2"], ["l"], transB=1), node("Softmax", ["l"], axis=-1)], [("x", F, grid(-1, 1, (1, 12)))], inits={"w1": w1, "b1": b1, "w2": w2, "b2": b2}, classify=True, tolerance=0.1)
cnn = {"c1": weights((4, 1, 3, 3), 0.4), "k1": weights((4,), 0.1), "c2": weights((6, 4, 3, 3), 0.2), "f": weights((3, 24), 0.3), "fb": weights((3,), 0.1)}
case(
    "net_cnn",
    [
        node("Conv", ["x", "c1", "k1"], ["a"], pads=[1, 1, 1, 1]),
        node("Relu", ["a"], ["b"]),
        node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Conv", ["c", "c2"], ["d"]),
        node("Sigmoid", ["d"], ["e"]),
        node("Flatten", ["e"], ["f1"]),
        node("Gemm", ["f1", "f", "fb"], transB=1),
    ],
    [("x", F, grid(0, 1, (1, 1, 8, 8)))],
    inits=cnn,
    classify=True,
    tolerance=0.1,
)
# One attention head over 6 tokens of width 8, causally masked.
S, D = 6, 8
att = {"wq": weights((D, D), 0.3), "wk": weights((D, D), 0.3), "wv": weights((D, D), 0.3), "sc": np.float32(1 / np.sqrt(D)),
       "mask": np.triu(np.ones((S, S), bool), 1), "ninf": np.float32(-np.inf), "g": np.ones(D, np.float32), "bb": np.zeros(D, np.float32)}
case(
    "net_attention",
    [
        node("MatMul", ["x", "wq"], ["q"]), node("MatMul", ["x", "wk"], ["k"]), node("MatMul", ["x", "wv"], ["v"]),
        node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), node("MatMul", ["q", "kt"], ["s0"]), node("Mul", ["s0", "sc"], ["s1"]),
        node("Where", ["mask", "ninf", "s1"], ["s2"]), node("Softmax", ["s2"], ["p"], axis=-1), node("MatMul", ["p", "v"], ["o"]),
        node("Add", ["o", "x"], ["r"]), node("LayerNormalization", ["r", "g", "bb"], axis=-1),
    ],
    [("x", F, grid(-1, 1, (1, S, D)))],
    inits=att,
    opset=17,
    tolerance=0.1,
)
vae = {"we": weights((4, 10), 0.3), "wm": weights((2, 4), 0.4), "wd": weights((10, 2), 0.4)}
case(
    "net_autoencoder",
    [
        node("Gemm", ["x", "we"], ["h"], transB=1), node("Tanh", ["h"], ["a"]), node("Gemm", ["a", "wm"], ["z"], transB=1),
        node("Gemm", ["z", "wd"], ["r"], transB=1), node("Sigmoid", ["r"]),
    ],
    [("x", F, grid(0, 1, (1, 10)))],
    inits=vae,
    tolerance=0.1,
)

# ---- added later (appended, so that earlier cases keep their random values) ----
U8 = TensorProto.UINT8
NP[U8] = np.uint8  # noqa: E305
bits = rng.integers(0, 256, (2, 6)).astype(np.uint8)
case("bitshift_right", [node("BitShift", ["x", "k"], direction="RIGHT")], [("x", U8, bits)], inits={"k": np.array([3], np.uint8)}, opset=11)
case("bitshift_left", [node("BitShift", ["x", "k"], direction="LEFT")], [("x", U8, bits // 4)], inits={"k": np.array([2], np.uint8)}, opset=11)
case("gather_runtime_data", [node("Gather", ["x", "i"], axis=1)], [("x", F, grid(-2, 2, (2, 5))), ("i", I64, np.array([[4, -1], [0, 2]], np.int64))])
case("gather_elements_runtime", [node("GatherElements", ["x", "i"], axis=1)], [("x", F, grid(-2, 2, (2, 5))), ("i", I64, np.array([[4, 0, 1], [-2, 2, 2]], np.int64))])
case("gemm_const_a", [node("Gemm", ["w", "x"], transB=1)], [("x", F, grid(-1, 1, (3, 6)))], inits={"w": weights((4, 6))})
case("cumsum", [node("CumSum", ["x", "a"], reverse=1)], [("x", F, grid(-1, 1, (2, 5)))], inits={"a": np.array(1, np.int64)})
case("einsum_three", [node("Einsum", ["a", "b", "c"], equation="ij,jk,k->i")], [("a", F, grid(-1, 1, (2, 3))), ("b", F, grid(-1, 1, (3, 4))), ("c", F, grid(-1, 1, (4,)))], opset=12)
case("conv3d", [node("Conv", ["x", "w", "b"], pads=[1, 0, 1, 1, 0, 1], strides=[2, 1, 1])], [("x", F, grid(-1, 1, (1, 2, 4, 3, 4)))], inits={"w": weights((2, 2, 3, 2, 3)), "b": weights((2,))})
case("resize_cubic", [node("Resize", ["x", "", "sc"], mode="cubic")], [("x", F, grid(-1, 1, (1, 1, 3, 4)))], inits={"sc": np.array([1, 1, 2, 1.5], np.float32)}, opset=13)
case("maxpool_ceil", [node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], [("x", F, grid(-2, 2, (1, 1, 5, 5)))], opset=13)
case("scatter_elements_add", [node("ScatterElements", ["x", "i", "u"], axis=1, reduction="add")], [("x", F, grid(-1, 1, (2, 4))), ("u", F, grid(-1, 1, (2, 3)))], inits={"i": np.array([[1, 1, 3], [0, 2, 0]], np.int64)}, opset=16)
case("pow_runtime", [node("Pow", ["x", "e"])], [("x", F, grid(0.5, 2, (2, 4))), ("e", F, grid(-1, 2, (2, 4)))])

case("scatter_elements_runtime", [node("ScatterElements", ["x", "i", "u"], axis=1)], [("x", F, grid(-1, 1, (2, 5))), ("i", I64, np.array([[4, 0], [-1, 2]], np.int64)), ("u", F, grid(-1, 1, (2, 2)))])
case("div_by_zero_row", [node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1), node("Sub", ["x", "m"], ["d"]), node("Mul", ["d", "d"], ["d2"]), node("ReduceMean", ["d2"], ["v"], axes=[1], keepdims=1), node("Add", ["v", "eps"], ["ve"]), node("Sqrt", ["ve"], ["s"]), node("Div", ["d", "s"])], [("x", F, np.array([[0.5, 0.5, 0.5, 0.5], [1.0, -1.0, 0.5, 0.25]], np.float32))], inits={"eps": np.float32(1e-5)}, opset=13)

# Integer Div truncates toward zero (runtime and constant divisors, both signs); a wide BitShift.
U32 = TensorProto.UINT32
NP[U32] = np.uint32  # noqa: E305
num = rng.integers(-60, 61, (2, 6)).astype(np.int64)
den = np.array([[3, -4, 7, -1, 2, 5], [-3, 9, -2, 1, -7, 4]], np.int64)
case("div_int_runtime", [node("Div", ["a", "b"])], [("a", I64, num), ("b", I64, den)])
case("div_int_const", [node("Div", ["a", "c"])], [("a", I64, num)], inits={"c": np.array([3, -4, 7, -1, 2, 5], np.int64)})
case("div_int_of_cast", [node("Cast", ["x"], ["i"], to=I32), node("Div", ["i", "c"], ["q"]), node("Cast", ["q"], to=F)], [("x", F, grid(-9, 9, (2, 5)))], inits={"c": np.array(2, np.int32)})
case("bitshift_right_wide", [node("BitShift", ["x", "k"], direction="RIGHT")], [("x", U32, rng.integers(0, 5000, (2, 5)).astype(np.uint32))], inits={"k": np.array([9], np.uint32)}, opset=11)
# Normalizations of groups with small and with large spreads; a spread of a few quanta at a finer scale.
tight = (0.4 + 0.15 * rng.standard_normal((1, 3, 2, 3))).astype(np.float32)
case("instance_norm_tight", [node("InstanceNormalization", ["x", "g", "b"])], [("x", F, tight)], inits={"g": np.array([1.0, 0.5, -1.0], np.float32), "b": np.array([0.0, 0.1, -0.2], np.float32)})
spread = np.concatenate([0.15 * rng.standard_normal((1, 2, 8)), 4.0 * rng.standard_normal((1, 2, 8))], axis=1).astype(np.float32)
case("layer_norm_spreads", [node("LayerNormalization", ["x", "g", "b"], axis=-1)], [("x", F, spread)], inits={"g": weights((8,), 0.6), "b": weights((8,), 0.2)}, opset=17)
tiny = (0.4 + 0.03 * rng.standard_normal((1, 2, 6))).astype(np.float32)
case("layer_norm_tiny_scale10", [node("LayerNormalization", ["x", "g", "b"], axis=-1)], [("x", F, tiny)], inits={"g": weights((6,), 0.6), "b": weights((6,), 0.2)}, opset=17, settings={"input_scale": 10, "param_scale": 10})
# Normalizations spelled out op by op (exports before opset 17), at small spreads.
small = (0.3 + 0.15 * rng.standard_normal((1, 3, 8))).astype(np.float32)
case(
    "layer_norm_spelled",
    [
        node("ReduceMean", ["x"], ["m"], axes=[-1]), node("Sub", ["x", "m"], ["d"]), node("Pow", ["d", "two"], ["p"]),
        node("ReduceMean", ["p"], ["v"], axes=[-1]), node("Add", ["v", "eps"], ["ve"]), node("Sqrt", ["ve"], ["sd"]),
        node("Div", ["d", "sd"], ["n"]), node("Mul", ["n", "g"], ["ng"]), node("Add", ["ng", "b"]),
    ],
    [("x", F, small)],
    inits={"two": np.float32(2.0), "eps": np.float32(1e-5), "g": weights((8,), 0.7), "b": weights((8,), 0.2)},
)
case(
    "norm_spelled_reciprocal",
    [
        node("ReduceMean", ["x"], ["m"], axes=[1, 2]), node("Sub", ["x", "m"], ["d"]), node("Mul", ["d", "d"], ["p"]),
        node("ReduceMean", ["p"], ["v"], axes=[1, 2]), node("Add", ["eps", "v"], ["ve"]), node("Sqrt", ["ve"], ["sd"]),
        node("Reciprocal", ["sd"], ["r"]), node("Mul", ["r", "d"]),
    ],
    [("x", F, (0.2 * rng.standard_normal((1, 2, 3, 4))).astype(np.float32))],
    outputs=["y", "d"],
    inits={"eps": np.float32(1e-6)},
)

# Ops built from others: reductions, pools, normalizations, masks, sequences, quantization.
I8 = TensorProto.INT8
NP[I8] = np.int8  # noqa: E305
img = grid(-1, 1, (1, 4, 4, 4))
case("reduce_log_sum", [node("ReduceLogSum", ["x"], axes=[1], keepdims=0)], [("x", F, grid(0.2, 2, (2, 3, 4)))])
case("global_max_pool", [node("GlobalMaxPool", ["x"])], [("x", F, img)])
case("mean_variance_normalization", [node("MeanVarianceNormalization", ["x"])], [("x", F, img)])
case("is_nan_is_inf", [node("IsNaN", ["x"], ["n"]), node("IsInf", ["x"], ["i"]), node("Cast", ["n"], ["nf"], to=F), node("Add", ["x", "nf"])], [("x", F, grid(-2, 2, (2, 3)))])
case("eye_like", [node("EyeLike", ["x"], ["e"], k=1), node("Add", ["x", "e"])], [("x", F, grid(-1, 1, (3, 4)))])
case("compress", [node("Compress", ["x", "c"], axis=1)], [("x", F, grid(-1, 1, (2, 5)))], inits={"c": np.array([1, 0, 1, 1], np.bool_)})
case("compress_flat", [node("Compress", ["x", "c"])], [("x", F, grid(-1, 1, (2, 3)))], inits={"c": np.array([0, 1, 1, 0, 1], np.bool_)})
case("reverse_sequence", [node("ReverseSequence", ["x", "l"], batch_axis=1, time_axis=0)], [("x", F, grid(-1, 1, (4, 3, 2)))], inits={"l": np.array([4, 2, 0], np.int64)})
case("lrn", [node("LRN", ["x"], size=3, alpha=0.5, beta=0.75, bias=1.0)], [("x", F, grid(-1.5, 1.5, (1, 5, 3, 3)))])
case("lp_pool_2", [node("LpPool", ["x"], kernel_shape=[2, 2], strides=[1, 1])], [("x", F, img)], opset=18)
case("lp_pool_1", [node("LpPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], p=1)], [("x", F, img)], opset=18)
case("lp_pool_3", [node("LpPool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], p=3)], [("x", F, 2 * img)], opset=18)
case("cast_like", [node("CastLike", ["x", "t"], ["i"]), node("Cast", ["i"], to=F)], [("x", F, grid(-3, 3, (2, 4)))], inits={"t": np.array([0], np.int32)}, opset=15)
case("quantize_linear", [node("QuantizeLinear", ["x", "s", "z"])], [("x", F, grid(-1, 1, (2, 6)))], inits={"s": np.float32(0.03), "z": np.uint8(20)})
case("quantize_linear_axis", [node("QuantizeLinear", ["x", "s", "z"], axis=1)], [("x", F, grid(-1, 1, (2, 3, 2)))], inits={"s": np.array([0.02, 0.05, 0.1], np.float32), "z": np.array([0, -3, 5], np.int8)})
case("dequantize_linear", [node("DequantizeLinear", ["x", "s", "z"])], [("x", I8, rng.integers(-128, 128, (2, 6)).astype(np.int8))], inits={"s": np.float32(0.02), "z": np.int8(-4)})
wq = rng.integers(-100, 100, (6, 3)).astype(np.int8)
case(
    "qdq_matmul",
    [
        node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=1), node("MatMul", ["xd", "wd"], ["y0"]),
        node("QuantizeLinear", ["y0", "ys", "yz"], ["yq"]), node("DequantizeLinear", ["yq", "ys", "yz"]),
    ],
    [("x", F, grid(-1, 1, (2, 6)))],
    inits={"xs": np.float32(0.01), "xz": np.uint8(128), "w": wq, "ws": np.array([0.004, 0.006, 0.005], np.float32), "wz": np.zeros(3, np.int8), "ys": np.float32(0.02), "yz": np.uint8(120)},
)
case(
    "qlinear_matmul",
    [node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["yq"]), node("DequantizeLinear", ["yq", "ys", "yz"])],
    [("a", TensorProto.UINT8, rng.integers(0, 60, (2, 6)).astype(np.uint8))],
    inits={"as": np.float32(0.02), "az": np.uint8(30), "b": rng.integers(0, 255, (6, 3)).astype(np.uint8), "bs": np.float32(0.004), "bz": np.uint8(128), "ys": np.float32(0.01), "yz": np.uint8(100)},
)
case(
    "qlinear_conv",
    [node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"], pads=[1, 1, 1, 1]), node("DequantizeLinear", ["yq", "ys", "yz"])],
    [("x", TensorProto.UINT8, rng.integers(0, 60, (1, 2, 4, 4)).astype(np.uint8))],
    inits={"xs": np.float32(0.02), "xz": np.uint8(30), "w": rng.integers(-60, 60, (3, 2, 3, 3)).astype(np.int8), "ws": np.array([0.004, 0.003, 0.005], np.float32), "wz": np.zeros(3, np.int8), "ys": np.float32(0.01), "yz": np.uint8(100), "b": np.array([50, -40, 10], np.int32)},
)

# Scatter reductions mul, max and min (indices repeat, so several updates meet).
case("scatter_elements_mul", [node("ScatterElements", ["x", "i", "u"], axis=1, reduction="mul")], [("x", F, grid(-1.5, 1.5, (2, 4))), ("u", F, grid(-1.5, 1.5, (2, 3)))], inits={"i": np.array([[1, 1, 3], [0, 2, 0]], np.int64)}, opset=16)
case("scatter_elements_max", [node("ScatterElements", ["x", "i", "u"], axis=1, reduction="max")], [("x", F, grid(-1, 1, (2, 4))), ("u", F, grid(-1, 1, (2, 3)))], inits={"i": np.array([[1, 1, 3], [0, 2, 0]], np.int64)}, opset=18)
case("scatter_nd_min", [node("ScatterND", ["x", "i", "u"], reduction="min")], [("x", F, grid(-1, 1, (3, 4))), ("u", F, grid(-1, 1, (3, 4)))], inits={"i": np.array([[1], [0], [1]], np.int64)}, opset=18)

# GatherND and ScatterND by runtime index tuples (negative entries count from the end).
case("gather_nd_runtime", [node("GatherND", ["x", "i"])], [("x", F, grid(-1, 1, (3, 4, 2))), ("i", I64, np.array([[0, 1], [2, -1], [-3, 3]], np.int64))])
case("gather_nd_runtime_rows", [node("GatherND", ["x", "i"])], [("x", F, grid(-1, 1, (3, 4))), ("i", I64, np.array([[[2]], [[0]]], np.int64))])
case("scatter_nd_runtime", [node("ScatterND", ["x", "i", "u"])], [("x", F, grid(-1, 1, (3, 4))), ("i", I64, np.array([[1], [-1]], np.int64)), ("u", F, grid(-1, 1, (2, 4)))])
case("scatter_nd_runtime_elements", [node("ScatterND", ["x", "i", "u"])], [("x", F, grid(-1, 1, (2, 3))), ("i", I64, np.array([[0, 2], [1, 0], [1, -2]], np.int64)), ("u", F, grid(-1, 1, (3,)))])

# Recurrent options: batch-first layout (opset 14) with initial states, clip, peepholes, coupled gates.
B2 = 2
lstm_w = {"W": weights((1, 4 * H, X)), "R": weights((1, 4 * H, H)), "B": weights((1, 8 * H), 0.1)}

def batch_first_ref(op, inputs, outs, **attrs):
    """The layout-0 graph a batch-first node equals: its inputs and outputs transposed."""
    swapped = [f"{i}_t" if i and i not in ("W", "R", "B") else i for i in inputs]
    nodes = [node("Transpose", [i], [f"{i}_t"], perm=[1, 0, 2]) for i in inputs if i and i not in ("W", "R", "B")]
    nodes.append(helper.make_node(op, swapped, [f"{o}_t" for o in outs], **attrs))
    for o in outs:
        nodes.append(node("Transpose", [f"{o}_t"], [o], perm=[2, 0, 1, 3] if o == "Y" else [1, 0, 2]))
    return nodes


lstm_bf_in = ["x", "W", "R", "B", "", "h0", "c0"]
case(
    "lstm_batch_first",
    [helper.make_node("LSTM", lstm_bf_in, ["Y", "Y_h", "Y_c"], name="lstm_bf", hidden_size=H, layout=1)],
    [("x", F, grid(-1, 1, (B2, T, X))), ("h0", F, grid(-0.5, 0.5, (B2, 1, H))), ("c0", F, grid(-0.5, 0.5, (B2, 1, H)))],
    outputs=["Y", "Y_h", "Y_c"], inits=lstm_w, opset=14,
    ref=batch_first_ref("LSTM", lstm_bf_in, ["Y", "Y_h", "Y_c"], hidden_size=H),
)
case(
    "lstm_peepholes_clip",
    [helper.make_node("LSTM", ["x", "W", "R", "B", "", "", "", "P"], ["Y", "Y_h"], name="lstm_pc", hidden_size=H, clip=0.8)],
    [("x", F, grid(-1, 1, (T, 1, X)))], outputs=["Y", "Y_h"], inits={**lstm_w, "P": weights((1, 3 * H), 0.5)},
)
case(
    "lstm_input_forget",
    [helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], name="lstm_if", hidden_size=H, input_forget=1)],
    [("x", F, grid(-1, 1, (T, 1, X)))], outputs=["Y"], inits=lstm_w,
)
case(
    "gru_batch_first_clip",
    [helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "Y_h"], name="gru_bfc", hidden_size=H, layout=1, clip=0.5, direction="bidirectional")],
    [("x", F, grid(-1, 1, (B2, T, X)))], outputs=["Y", "Y_h"],
    inits={"W": weights((2, 3 * H, X)), "R": weights((2, 3 * H, H)), "B": weights((2, 6 * H), 0.1)}, opset=14,
    ref=batch_first_ref("GRU", ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H, clip=0.5, direction="bidirectional"),
)

# BatchNormalization by runtime statistics, and in training mode (the batch's own statistics).
bn_x = grid(-1, 1, (2, 3, 2, 2))
case(
    "batchnorm_runtime_params",
    [node("BatchNormalization", ["x", "g", "b", "m", "v"])],
    [("x", F, bn_x), ("m", F, np.array([0.1, -0.2, 0.3], np.float32)), ("v", F, np.array([0.5, 1.5, 0.75], np.float32))],
    inits={"g": weights((3,), 0.8), "b": weights((3,), 0.2)}, opset=15,
)
case(
    "batchnorm_training_mode",
    [node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1, momentum=0.8)],
    [("x", F, bn_x)],
    outputs=["y", "rm", "rv"],
    inits={"g": weights((3,), 0.8), "b": weights((3,), 0.2), "m": np.zeros(3, np.float32), "v": np.ones(3, np.float32)}, opset=15,
)

# If: a constant condition picks a branch; a runtime one selects between both.
def branch(name, nodes, out, shape, inits=()):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, F, shape)], initializer=list(inits))


then_g = branch("then", [node("Mul", ["x", "k"], ["t_out"])], "t_out", [2, 3], [numpy_helper.from_array(np.float32(1.5), "k")])
else_g = branch("else", [node("Tanh", ["x"], ["e_out"])], "e_out", [2, 3])
xs_if = grid(-1, 1, (2, 3))
case("if_constant_then", [node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], [("x", F, xs_if)], inits={"c": np.array(True)})
case("if_constant_else", [node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], [("x", F, xs_if)], inits={"c": np.array(False)})
case(
    "if_runtime",
    [node("ReduceSum", ["x"], ["s"], keepdims=0), node("Greater", ["s", "zero"], ["c"]), node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
    [("x", F, xs_if)],
    inits={"zero": np.float32(0.0)},
)

case("center_crop_pad", [node("CenterCropPad", ["x", "s"], axes=[1, 2])], [("x", F, grid(-1, 1, (2, 5, 4)))], inits={"s": np.array([3, 7], np.int64)}, opset=18)

# onnxruntime's fused transformer ops (com.microsoft), as its transformer optimizer writes them.
def ms(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"ms_{op.lower()}", domain="com.microsoft", **attrs)


tok = grid(-2, 2, (1, 3, 8))
case("ms_gelu", [ms("Gelu", ["x"])], [("x", F, tok)])
case("ms_fast_gelu", [ms("FastGelu", ["x", "b"])], [("x", F, tok)], inits={"b": weights((8,), 0.2)})
case("ms_bias_gelu", [ms("BiasGelu", ["x", "b"])], [("x", F, tok)], inits={"b": weights((8,), 0.2)})
case("ms_quick_gelu", [ms("QuickGelu", ["x"], alpha=1.702)], [("x", F, tok)])
case(
    "ms_skip_layer_norm",
    [ms("SkipLayerNormalization", ["x", "s", "g", "b", "bias"], ["y", "", "", "sum"], epsilon=1e-5)],
    [("x", F, tok), ("s", F, grid(-1, 1, (1, 3, 8)))],
    outputs=["y", "sum"],
    inits={"g": weights((8,), 0.8), "b": weights((8,), 0.2), "bias": weights((8,), 0.2)},
)

# Older opsets' forms of ops whose inputs were once attributes (model-zoo models use opsets 7 to 11).
old_x = grid(-1, 1, (1, 2, 3, 4))
case("pad_opset7", [node("Pad", ["x"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 0], value=0.25)], [("x", F, old_x)], opset=7)
case("slice_opset7", [node("Slice", ["x"], starts=[0, 1], ends=[1, 3], axes=[1, 2])], [("x", F, old_x)], opset=7)
case("clip_opset7", [node("Clip", ["x"], min=-0.5, max=0.25)], [("x", F, old_x)], opset=7)
case("upsample_opset7", [node("Upsample", ["x"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0])], [("x", F, old_x)], opset=7)
case("resize_opset10", [node("Resize", ["x", "sc"], mode="nearest")], [("x", F, old_x)], inits={"sc": np.array([1, 1, 2, 1.5], np.float32)}, opset=10)
case("topk_opset7", [node("TopK", ["x"], ["v", "i"], k=2, axis=-1)], [("x", F, old_x)], outputs=["v", "i"], opset=7)
case("unsqueeze_squeeze_opset11", [node("Unsqueeze", ["x"], ["u"], axes=[0]), node("Squeeze", ["u"], axes=[0])], [("x", F, old_x)], opset=11)
case("reduce_sum_opset11", [node("ReduceSum", ["x"], axes=[1, 3], keepdims=1)], [("x", F, old_x)], opset=11)
case("split_opset7", [node("Split", ["x"], ["y", "z"], axis=3, split=[1, 3])], [("x", F, old_x)], outputs=["y", "z"], opset=7)
case("softmax_opset7", [node("Softmax", ["x"], axis=2)], [("x", F, old_x)], opset=7)
case("batchnorm_opset7", [node("BatchNormalization", ["x", "g", "b", "m", "v"], spatial=1)], [("x", F, old_x)], inits={"g": weights((2,), 0.8), "b": weights((2,), 0.2), "m": np.array([0.1, -0.1], np.float32), "v": np.array([0.5, 1.2], np.float32)}, opset=7)
case("gemm_opset7", [node("Gemm", ["x", "w", "b"], transB=1, alpha=0.5, beta=2.0)], [("x", F, grid(-1, 1, (2, 6)))], inits={"w": weights((3, 6)), "b": weights((3,), 0.2)}, opset=7)
case("dropout_opset7", [node("Dropout", ["x"], ["y"], ratio=0.3), ], [("x", F, old_x)], opset=7)
case("averagepool_opset7", [node("AveragePool", ["x"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)], [("x", F, old_x)], opset=7)
case("conv_auto_pad_opset7", [node("Conv", ["x", "w"], auto_pad="SAME_UPPER", kernel_shape=[3, 3])], [("x", F, old_x)], inits={"w": weights((3, 2, 3, 3), 0.3)}, opset=7)
case("reshape_opset7", [node("Reshape", ["x", "s"])], [("x", F, old_x)], inits={"s": np.array([2, -1], np.int64)}, opset=7)
case("max_opset7", [node("Max", ["x", "z"])], [("x", F, old_x), ("z", F, grid(-0.5, 0.5, (1, 2, 3, 4)))], opset=7)

# RMSNorm: onnxruntime's Simplified forms (opset 23's RMSNormalization lowers as they do; onnx 1.16
# cannot write it), and spelled out as Llama's exports write it.
rms_x = (0.3 * rng.standard_normal((1, 3, 8))).astype(np.float32)
case("simplified_layer_norm", [node("SimplifiedLayerNormalization", ["x", "g"], axis=-1, epsilon=1e-6)], [("x", F, rms_x)], inits={"g": weights((8,), 0.8)}, opset=17, unchecked=True)
case("ms_skip_simplified_layer_norm", [ms("SkipSimplifiedLayerNormalization", ["x", "s", "g"], epsilon=1e-6)], [("x", F, rms_x), ("s", F, grid(-0.5, 0.5, (1, 3, 8)))], inits={"g": weights((8,), 0.8)})
case(
    "rms_norm_spelled",
    [
        node("Pow", ["x", "two"], ["p"]), node("ReduceMean", ["p"], ["v"], axes=[-1]), node("Add", ["v", "eps"], ["ve"]),
        node("Sqrt", ["ve"], ["sd"]), node("Reciprocal", ["sd"], ["r"]), node("Mul", ["x", "r"], ["n"]), node("Mul", ["g", "n"]),
    ],
    [("x", F, rms_x)],
    inits={"two": np.float32(2.0), "eps": np.float32(1e-6), "g": weights((8,), 0.8)},
)
case(
    "rms_norm_spelled_div",
    [node("Mul", ["x", "x"], ["p"]), node("ReduceMean", ["p"], ["v"], axes=[2]), node("Sqrt", ["v"], ["sd"]), node("Div", ["x", "sd"])],
    [("x", F, rms_x)],
)

# Casts: floats to integers over a wide range (exact, no table), integers between widths (unchanged).
case("cast_float_to_int_wide", [node("Cast", ["x"], ["i"], to=I64), node("Cast", ["i"], to=F)], [("x", F, grid(-300, 300, (2, 6)))])
case("cast_int_widths", [node("Cast", ["x"], ["i"], to=I32), node("Cast", ["i"], to=F)], [("x", I64, rng.integers(-5000, 5000, (2, 6)).astype(np.int64))])


if __name__ == "__main__":
    for old in os.listdir(HERE):
        if old.endswith((".onnx", ".json")) and not old.startswith(("torch_", "sklearn_", "quant_", "ml_")):
            os.remove(os.path.join(HERE, old))
    for c in CASES:
        write(c)
    print(f"wrote {len(CASES)} models to {HERE}")
