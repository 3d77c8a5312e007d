#!/usr/bin/env python3
"""Writes the scikit-learn part of zkfarm's operator suite: models trained
on a seeded toy task and turned into tensor programs by hummingbird (every
tree ensemble in each of its three forms: GEMM, tree traversal and
perfect-tree traversal), exported by PyTorch's TorchScript exporter, each
with onnxruntime's output for one input (`sklearn_NAME.onnx`,
`sklearn_NAME.json`), which `circuits/tests/suite.rs` checks like the rest of
the suite.  Running this again gives the same files.
Needs `pip install scikit-learn hummingbird-ml torch onnx onnxruntime`.
Usage: python3 make_sklearn_suite.py
"""
import json
import os
import warnings

import numpy as np
import onnxruntime as ort
import torch
from hummingbird.ml import convert
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
warnings.filterwarnings("ignore")
torch.manual_seed(0)
rng = np.random.default_rng(0)
X = (np.round(rng.uniform(-1, 1, (200, 5)) * 128) / 128).astype(np.float32)
LABELS = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
TARGET = X[:, 0] * 2 + X[:, 3]

TREES = {
    "tree": DecisionTreeClassifier(max_depth=4, random_state=0),
    "forest": RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0),
    "gbdt": GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0),
    "forest_regressor": RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0),
    "extra_trees": ExtraTreesClassifier(n_estimators=4, max_depth=3, random_state=0),
    "isolation_forest": IsolationForest(n_estimators=4, max_samples=32, random_state=0),
}
OTHERS = {
    "logistic_regression": LogisticRegression(),
    "linear_regression": LinearRegression(),
    "linear_svc": LinearSVC(random_state=0),
    "svc_rbf": SVC(),
    "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
    "scaler_logistic": make_pipeline(StandardScaler(), LogisticRegression()),
    "gaussian_nb": GaussianNB(),
    "pca": PCA(n_components=3, random_state=0),
}


def fit(name, model):
    if name in ("pca", "isolation_forest"):
        return model.fit(X)
    return model.fit(X, TARGET if name in ("forest_regressor", "linear_regression") else LABELS)


def write(tag, model, strategy):
    x = X[:1]
    extra = {"tree_implementation": strategy} if strategy else {}
    module = convert(model, "torch", x, extra_config=extra).model
    path = os.path.join(HERE, f"sklearn_{tag}.onnx")
    torch.onnx.export(module, (torch.from_numpy(x),), path, dynamo=False, opset_version=17)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    data = {
        "input_data": [x.astype(np.float64).flatten().tolist()],
        "output_data": [np.asarray(o, dtype=np.float64).flatten().tolist() for o in outs],
        "tolerance": 0.1,
    }
    with open(path[: -len(".onnx")] + ".json", "w") as f:
        json.dump(data, f)


if __name__ == "__main__":
    for old in os.listdir(HERE):
        if old.startswith("sklearn_") and old.endswith((".onnx", ".json")):
            os.remove(os.path.join(HERE, old))
    n = 0
    for name, model in TREES.items():
        fit(name, model)
        for strategy in ("gemm", "tree_trav", "perf_tree_trav"):
            write(f"{name}_{strategy}", model, strategy)
            n += 1
    for name, model in OTHERS.items():
        fit(name, model)
        write(name, model, None)
        n += 1
    print(f"wrote {n} scikit-learn models to {HERE}")
