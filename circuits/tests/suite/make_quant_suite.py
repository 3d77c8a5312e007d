#!/usr/bin/env python3
"""Writes the quantized part of zkfarm's operator suite: small float models
(written with onnx's helpers) quantized by onnxruntime's static quantizer in
both of its formats, QDQ (QuantizeLinear/DequantizeLinear pairs around float
ops) and QOperator (QLinearConv, QLinearMatMul), per tensor and per
channel, each with onnxruntime's output for one input (`quant_NAME.onnx`,
`quant_NAME.json`), which `circuits/tests/suite.rs` checks like the rest of
the suite. Running this again gives the same files.
Needs `pip install onnx onnxruntime numpy`.
Usage: python3 make_quant_suite.py
"""
import json
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(11)


def weights(shape, scale=0.4):
    return numpy_helper.from_array((rng.normal(0.0, scale, size=shape)).astype(np.float32))


def cnn():
    """Conv, Relu, MaxPool, Conv, Relu, Flatten, Gemm: a small classifier."""
    inits = [weights((4, 1, 3, 3)), weights((4,), 0.1), weights((6, 4, 3, 3), 0.3), weights((6,), 0.1), weights((5, 54), 0.2), weights((5,), 0.1)]
    for t, n in zip(inits, ["w1", "b1", "w2", "b2", "w3", "b3"]):
        t.name = n
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), (1, 1, 6, 6)


def mlp():
    """MatMul, Add, Relu, MatMul, Add: a two-layer perceptron."""
    inits = [weights((8, 12)), weights((12,), 0.1), weights((12, 4)), weights((4,), 0.1)]
    for t, n in zip(inits, ["w1", "b1", "w2", "b2"]):
        t.name = n
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), (1, 8)


class Samples(CalibrationDataReader):
    def __init__(self, shape):
        self.items = iter([{"x": rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.items, None)


def write(name, build, fmt, per_channel, settings=None):
    model, shape = build()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float.onnx")
        onnx.save(model, src)
        out = os.path.join(HERE, f"quant_{name}.onnx")
        quantize_static(src, out, Samples(shape), quant_format=fmt, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    data = {
        "input_data": [[float(v) for v in x.flatten()]],
        "output_data": [[float(v) for v in y.flatten()]],
        "tolerance": 0.1,
    }
    if settings:
        data["settings"] = settings
    with open(os.path.join(HERE, f"quant_{name}.json"), "w") as f:
        json.dump(data, f)


if __name__ == "__main__":
    for old in os.listdir(HERE):
        if old.startswith("quant_") and old.endswith((".onnx", ".json")):
            os.remove(os.path.join(HERE, old))
    cases = [
        ("cnn_qdq", cnn, QuantFormat.QDQ, False),
        ("cnn_qdq_per_channel", cnn, QuantFormat.QDQ, True),
        ("cnn_qoperator", cnn, QuantFormat.QOperator, False),
        ("mlp_qdq", mlp, QuantFormat.QDQ, False),
        ("mlp_qoperator_per_channel", mlp, QuantFormat.QOperator, True),
    ]
    for c in cases:
        write(*c)
    print(f"wrote {len(cases)} quantized models to {HERE}")
