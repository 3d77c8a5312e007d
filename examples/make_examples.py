#!/usr/bin/env python3
"""Writes the bundled example models and inputs.

Weights are random with a fixed seed, so running this again gives the same
files.  Needs the `onnx` and `numpy` packages (pip install onnx).  Usage: python3 make_examples.py
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def dense(rng, fan_in, fan_out):
    w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
    b = rng.normal(0.0, 0.05, size=(fan_out,))
    return w.astype(np.float32), b.astype(np.float32)


def save(name, nodes, inits, in_shape, out_shape, x):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, f"{name}.onnx"))
    with open(os.path.join(HERE, f"{name}.input.json"), "w") as f:
        json.dump({"input_data": [[round(float(v), 6) for v in x.flatten()]]}, f)


def mlp(rng):
    """MNIST-shaped multilayer perceptron, 784-128-10."""
    w1, b1 = dense(rng, 784, 128)
    w2, b2 = dense(rng, 128, 10)
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["output"], name="fc2", transB=1),
    ]
    inits = [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2)]
    x = rng.uniform(0.0, 1.0, size=(1, 784))
    save("mlp", nodes, inits, [1, 784], [1, 10], x)


def lenet(rng):
    """LeNet-5-style CNN on a 28x28 image, narrowed to keep proofs quick."""
    c1 = rng.normal(0.0, np.sqrt(2.0 / 25), size=(4, 1, 5, 5))
    c1b = rng.normal(0.0, 0.05, size=(4,))
    bn_scale = rng.uniform(0.8, 1.2, size=(4,))
    bn_bias = rng.normal(0.0, 0.1, size=(4,))
    bn_mean = rng.normal(0.0, 0.1, size=(4,))
    bn_var = rng.uniform(0.5, 1.5, size=(4,))
    c2 = rng.normal(0.0, np.sqrt(2.0 / 100), size=(8, 4, 5, 5))
    c2b = rng.normal(0.0, 0.05, size=(8,))
    w3, b3 = dense(rng, 128, 32)
    w4, b4 = dense(rng, 32, 10)
    nodes = [
        helper.make_node("Conv", ["input", "c1", "c1b"], ["x1"], name="conv1",
                         kernel_shape=[5, 5], strides=[1, 1], pads=[0, 0, 0, 0]),
        helper.make_node("BatchNormalization", ["x1", "bn_s", "bn_b", "bn_m", "bn_v"], ["x2"],
                         name="bn1", epsilon=1e-5),
        helper.make_node("Relu", ["x2"], ["x3"], name="relu1"),
        helper.make_node("MaxPool", ["x3"], ["x4"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["x4", "c2", "c2b"], ["x5"], name="conv2",
                         kernel_shape=[5, 5], strides=[1, 1], pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["x5"], ["x6"], name="relu2"),
        helper.make_node("AveragePool", ["x6"], ["x7"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["x7"], ["x8"], name="flatten", axis=1),
        helper.make_node("Gemm", ["x8", "w3", "b3"], ["x9"], name="fc1", transB=1),
        helper.make_node("Relu", ["x9"], ["x10"], name="relu3"),
        helper.make_node("Gemm", ["x10", "w4", "b4"], ["output"], name="fc2", transB=1),
    ]
    inits = [init("c1", c1), init("c1b", c1b), init("bn_s", bn_scale), init("bn_b", bn_bias),
             init("bn_m", bn_mean), init("bn_v", bn_var), init("c2", c2), init("c2b", c2b),
             init("w3", w3), init("b3", b3), init("w4", w4), init("b4", b4)]
    x = rng.uniform(0.0, 1.0, size=(1, 1, 28, 28))
    save("lenet", nodes, inits, [1, 1, 28, 28], [1, 10], x)


def nonlinear(rng):
    """A small model with Sigmoid, Tanh, Softmax and the element-wise ops."""
    w1, b1 = dense(rng, 16, 16)
    w2, b2 = dense(rng, 16, 16)
    w3 = rng.normal(0.0, 0.5, size=(16, 8)).astype(np.float32)
    b3 = rng.normal(0.0, 0.1, size=(8,)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, size=(8,)).astype(np.float32)
    w4, b4 = dense(rng, 16, 6)
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Sigmoid", ["h1"], ["s1"], name="sigmoid"),
        helper.make_node("Gemm", ["s1", "w2", "b2"], ["h2"], name="fc2", transB=1),
        helper.make_node("Tanh", ["h2"], ["t2"], name="tanh"),
        helper.make_node("MatMul", ["t2", "w3"], ["h3"], name="matmul"),
        helper.make_node("Add", ["h3", "b3"], ["h4"], name="bias"),
        helper.make_node("Mul", ["h4", "gain"], ["h5"], name="scale"),
        helper.make_node("LeakyRelu", ["h5"], ["h6"], name="leaky", alpha=0.1),
        helper.make_node("Clip", ["h6", "clip_lo", "clip_hi"], ["h7"], name="relu6"),
        helper.make_node("Mul", ["h7", "h4"], ["h8"], name="gate"),
        helper.make_node("Sub", ["h8", "h6"], ["h9"], name="residual"),
        helper.make_node("Concat", ["h9", "h7"], ["h10"], name="concat", axis=1),
        helper.make_node("Gemm", ["h10", "w4", "b4"], ["h11"], name="fc3", transB=1),
        helper.make_node("Softmax", ["h11"], ["output"], name="softmax", axis=-1),
    ]
    inits = [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2), init("w3", w3),
             init("b3", b3), init("gain", scale), init("clip_lo", 0.0), init("clip_hi", 6.0),
             init("w4", w4), init("b4", b4)]
    x = rng.uniform(-1.0, 1.0, size=(1, 16))
    save("nonlinear", nodes, inits, [1, 16], [1, 6], x)


def tiny_gpt(rng):
    """A nanoGPT-class decoder: 2 layers, width 64, 4 heads, sequence 16,
    vocabulary 65, as PyTorch exports it at opset 17 (token embedding by
    Gather, learned positions, pre-LayerNorm blocks, causally masked attention
    through Where with -inf, Gelu as erf, a linear head). Weights are scaled
    as in a trained model (unit embeddings, 1/sqrt(fan_in) projections) so
    that activations are of order one."""
    vocab, seq, width, heads, layers = 65, 16, 64, 4, 2
    hd = width // heads
    inits = []

    def param(name, array):
        inits.append(init(name, array))
        return name

    def linear(x, out, fan_in, fan_out, name):
        w = param(f"{name}.w", rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(fan_in, fan_out)))
        b = param(f"{name}.b", rng.normal(0.0, 0.02, size=(fan_out,)))
        return [helper.make_node("MatMul", [x, w], [f"{name}.mm"], name=f"{name}.matmul"),
                helper.make_node("Add", [f"{name}.mm", b], [out], name=f"{name}.bias")]

    def layer_norm(x, out, name):
        g = param(f"{name}.g", rng.uniform(0.8, 1.2, size=(width,)))
        b = param(f"{name}.b", rng.normal(0.0, 0.05, size=(width,)))
        return [helper.make_node("LayerNormalization", [x, g, b], [out], name=name, axis=-1, epsilon=1e-5)]

    wte = param("wte", rng.normal(0.0, 1.0, size=(vocab, width)))
    wpe = param("wpe", rng.normal(0.0, 0.5, size=(seq, width)))
    inits.append(numpy_helper.from_array(np.tril(np.ones((seq, seq), dtype=np.float32)), "causal"))
    inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(-np.inf, dtype=np.float32), "ninf"))
    inits.append(numpy_helper.from_array(np.array(1.0 / np.sqrt(hd), dtype=np.float32), "att_scale"))
    inits.append(numpy_helper.from_array(np.array([64, 64, 64], dtype=np.int64), "qkv_split"))
    inits.append(numpy_helper.from_array(np.array([1, seq, heads, hd], dtype=np.int64), "heads_shape"))
    inits.append(numpy_helper.from_array(np.array([1, seq, width], dtype=np.int64), "model_shape"))
    for name, value in [("r0", 0), ("rn", seq), ("r1", 1)]:
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), name))
    for name, value in [("half", 0.5), ("one", 1.0), ("rsqrt2", 1.0 / np.sqrt(2.0))]:
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    nodes = [
        helper.make_node("Gather", [wte, "input"], ["tok"], name="tok_embed"),
        helper.make_node("Range", ["r0", "rn", "r1"], ["pos"], name="positions"),
        helper.make_node("Gather", [wpe, "pos"], ["pos_emb"], name="pos_embed"),
        helper.make_node("Add", ["tok", "pos_emb"], ["x0"], name="embed"),
        helper.make_node("Equal", ["causal", "zero"], ["masked"], name="mask"),
    ]
    x = "x0"
    for i in range(layers):
        p = f"h{i}"
        nodes += layer_norm(x, f"{p}.ln1", f"{p}.ln_1")
        nodes += linear(f"{p}.ln1", f"{p}.qkv", width, 3 * width, f"{p}.c_attn")
        nodes.append(helper.make_node("Split", [f"{p}.qkv", "qkv_split"], [f"{p}.q0", f"{p}.k0", f"{p}.v0"],
                                      name=f"{p}.split", axis=2))
        for t in "qkv":
            nodes.append(helper.make_node("Reshape", [f"{p}.{t}0", "heads_shape"], [f"{p}.{t}1"], name=f"{p}.{t}.view"))
            perm = [0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]
            nodes.append(helper.make_node("Transpose", [f"{p}.{t}1"], [f"{p}.{t}"], name=f"{p}.{t}.heads", perm=perm))
        nodes += [
            helper.make_node("MatMul", [f"{p}.q", f"{p}.k"], [f"{p}.s0"], name=f"{p}.scores"),
            helper.make_node("Mul", [f"{p}.s0", "att_scale"], [f"{p}.s1"], name=f"{p}.scale"),
            helper.make_node("Where", ["masked", "ninf", f"{p}.s1"], [f"{p}.s2"], name=f"{p}.masked_fill"),
            helper.make_node("Softmax", [f"{p}.s2"], [f"{p}.att"], name=f"{p}.softmax", axis=-1),
            helper.make_node("MatMul", [f"{p}.att", f"{p}.v"], [f"{p}.y0"], name=f"{p}.attend"),
            helper.make_node("Transpose", [f"{p}.y0"], [f"{p}.y1"], name=f"{p}.merge", perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}.y1", "model_shape"], [f"{p}.y"], name=f"{p}.concat_heads"),
        ]
        nodes += linear(f"{p}.y", f"{p}.proj", width, width, f"{p}.c_proj")
        nodes.append(helper.make_node("Add", [x, f"{p}.proj"], [f"{p}.x1"], name=f"{p}.residual1"))
        nodes += layer_norm(f"{p}.x1", f"{p}.ln2", f"{p}.ln_2")
        nodes += linear(f"{p}.ln2", f"{p}.fc", width, 4 * width, f"{p}.c_fc")
        nodes += [
            helper.make_node("Mul", [f"{p}.fc", "rsqrt2"], [f"{p}.g0"], name=f"{p}.gelu.scale"),
            helper.make_node("Erf", [f"{p}.g0"], [f"{p}.g1"], name=f"{p}.gelu.erf"),
            helper.make_node("Add", [f"{p}.g1", "one"], [f"{p}.g2"], name=f"{p}.gelu.add"),
            helper.make_node("Mul", [f"{p}.fc", "half"], [f"{p}.g3"], name=f"{p}.gelu.half"),
            helper.make_node("Mul", [f"{p}.g3", f"{p}.g2"], [f"{p}.gelu"], name=f"{p}.gelu"),
        ]
        nodes += linear(f"{p}.gelu", f"{p}.mlp", 4 * width, width, f"{p}.mlp_proj")
        nodes.append(helper.make_node("Add", [f"{p}.x1", f"{p}.mlp"], [f"{p}.out"], name=f"{p}.residual2"))
        x = f"{p}.out"
    nodes += layer_norm(x, "xf", "ln_f")
    head = param("lm_head", rng.normal(0.0, 1.0 / np.sqrt(width), size=(width, vocab)))
    nodes.append(helper.make_node("MatMul", ["xf", head], ["output"], name="head"))
    graph = helper.make_graph(
        nodes,
        "tiny_gpt",
        [helper.make_tensor_value_info("input", TensorProto.INT64, [1, seq])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, seq, vocab])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, "tiny_gpt.onnx"))
    ids = rng.integers(0, vocab, size=(seq,))
    with open(os.path.join(HERE, "tiny_gpt.input.json"), "w") as f:
        json.dump({"input_data": [[int(v) for v in ids]]}, f)


def lstm(rng):
    """A sequence classifier as PyTorch exports nn.LSTM(batch_first=True):
    12 steps of 8 features, a 32-unit LSTM, its last hidden state through a
    linear layer to 5 classes."""
    seq, feat, hidden, classes = 12, 8, 32, 5
    w = rng.normal(0.0, 1.0 / np.sqrt(feat), size=(1, 4 * hidden, feat))
    r = rng.normal(0.0, 1.0 / np.sqrt(hidden), size=(1, 4 * hidden, hidden))
    b = rng.normal(0.0, 0.1, size=(1, 8 * hidden))
    fc_w, fc_b = dense(rng, hidden, classes)
    nodes = [
        helper.make_node("Transpose", ["input"], ["x_tbf"], name="time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["x_tbf", "lstm.w", "lstm.r", "lstm.b"], ["y", "y_h", ""], name="lstm",
                         hidden_size=hidden),
        helper.make_node("Squeeze", ["y_h", "axis0"], ["h"], name="last_hidden"),
        helper.make_node("Gemm", ["h", "fc.w", "fc.b"], ["output"], name="classifier", transB=1),
    ]
    inits = [init("lstm.w", w), init("lstm.r", r), init("lstm.b", b), init("fc.w", fc_w), init("fc.b", fc_b),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")]
    x = rng.normal(0.0, 1.0, size=(1, seq, feat))
    save("lstm", nodes, inits, [1, seq, feat], [1, classes], x)


def forest(rng):
    """A random forest classifier (3 trees of depth 3 over 6 features, 3
    classes) in the GEMM form hummingbird compiles trees to: feature
    selection and thresholds, the path matrix and the leaf counts, leaf
    values, averaged over the trees."""
    trees, depth, feat, classes = 3, 3, 6, 3
    internal, leaves = 2 ** depth - 1, 2 ** depth
    a = np.zeros((feat, trees * internal))
    thresholds = rng.normal(0.0, 0.7, size=(trees * internal,))
    paths = np.zeros((trees, internal, leaves))
    lefts = np.zeros((trees, 1, leaves))
    values = rng.dirichlet(np.ones(classes), size=(trees, leaves))
    for t in range(trees):
        for j in range(internal):
            a[rng.integers(0, feat), t * internal + j] = 1.0
        for leaf in range(leaves):
            node = 0
            for d in range(depth):
                left = (leaf >> (depth - 1 - d)) & 1 == 0
                paths[t, node, leaf] = 1.0 if left else -1.0
                lefts[t, 0, leaf] += left
                node = 2 * node + (1 if left else 2)
    nodes = [
        helper.make_node("MatMul", ["input", "select"], ["picked"], name="select_features"),
        helper.make_node("LessOrEqual", ["picked", "thresholds"], ["go_left"], name="decisions"),
        helper.make_node("Cast", ["go_left"], ["go_left_f"], name="decisions_float", to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["go_left_f", "per_tree"], ["by_tree"], name="by_tree"),
        helper.make_node("Transpose", ["by_tree"], ["tree_major"], name="tree_major", perm=[1, 0, 2]),
        helper.make_node("MatMul", ["tree_major", "paths"], ["agree"], name="match_paths"),
        helper.make_node("Equal", ["agree", "lefts"], ["at_leaf"], name="leaf"),
        helper.make_node("Cast", ["at_leaf"], ["at_leaf_f"], name="leaf_float", to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["at_leaf_f", "values"], ["votes"], name="leaf_values"),
        helper.make_node("ReduceMean", ["votes"], ["output"], name="average", axes=[0], keepdims=0),
    ]
    inits = [init("select", a), init("thresholds", thresholds), init("paths", paths), init("lefts", lefts),
             init("values", values),
             numpy_helper.from_array(np.array([1, trees, internal], dtype=np.int64), "per_tree")]
    x = rng.normal(0.0, 1.0, size=(1, feat))
    save("forest", nodes, inits, [1, feat], [1, classes], x)


def mlp_batch(rng):
    """A farm batch of 8 MLP requests mixing the three tiers, each input the
    example input plus a little noise, clipped to [0, 1]."""
    with open(os.path.join(HERE, "mlp.input.json")) as f:
        base = np.asarray(json.load(f)["input_data"][0])
    tiers = ["zk", "signed", "tee", "signed"]
    requests = []
    for i in range(8):
        x = np.clip(base + rng.uniform(-0.05, 0.05, size=base.shape), 0.0, 1.0)
        requests.append({"input": {"input_data": [[round(float(v), 4) for v in x]]}, "tier": tiers[i % 4]})
    with open(os.path.join(HERE, "mlp.batch.json"), "w") as f:
        json.dump({"model": "mlp.onnx", "requests": requests}, f)


if __name__ == "__main__":
    mlp(np.random.default_rng(1))
    lenet(np.random.default_rng(2))
    nonlinear(np.random.default_rng(3))
    mlp_batch(np.random.default_rng(4))
    tiny_gpt(np.random.default_rng(5))
    lstm(np.random.default_rng(6))
    forest(np.random.default_rng(7))
