#!/usr/bin/env python3
"""Writes the ai.onnx.ml part of zkfarm's operator suite: scikit-learn models
trained on seeded toy tasks and converted by skl2onnx (tree ensembles as
TreeEnsembleClassifier/Regressor, linear models as LinearClassifier/Regressor,
Scaler, Normalizer, SVMRegressor, and ArrayFeatureExtractor picking the labels of models
written with standard ops), each with onnxruntime's outputs for three inputs
(`ml_NAME_sK.onnx`, `ml_NAME_sK.json`), which `circuits/tests/suite.rs` checks
like the rest of the suite. Inputs lie on the grid of 1/128 and at least 1/64
from every threshold of the model, so that quantizing them cannot turn a
branch. Running this again gives the same files.
Needs `pip install scikit-learn skl2onnx onnx onnxruntime`.
Usage: python3 make_ml_suite.py
"""
import json
import os
import warnings

import numpy as np
import onnx
import onnx.helper as helper
import onnxruntime as ort
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler
from sklearn.svm import SVR
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

# skl2onnx writes numpy booleans into integer attributes, which onnx before
# 1.17 refuses: they are written as integers.
_make_attribute = helper.make_attribute


def _integer_bools(key, value, *args, **kwargs):
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) and isinstance(value[0], (bool, np.bool_)):
        value = [int(v) for v in value]
    return _make_attribute(key, value, *args, **kwargs)


helper.make_attribute = _integer_bools
from skl2onnx import to_onnx  # noqa: E402

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
GRID = 128.0


def data(kind, seed, classes=2):
    if kind == "reg":
        X, y = make_regression(200, 5, random_state=seed)
        y = y / np.abs(y).max()
    else:
        X, y = make_classification(200, 5, n_informative=3, n_classes=classes, random_state=seed)
    X = np.round(X / np.abs(X).max() * GRID) / GRID
    return X.astype(np.float32), y


def thresholds(model):
    """Each feature's thresholds in the converted model."""
    out = {}
    for node in model.graph.node:
        if node.op_type.startswith("TreeEnsemble"):
            a = {x.name: x for x in node.attribute}
            for f, v, m in zip(a["nodes_featureids"].ints, a["nodes_values"].floats, a["nodes_modes"].strings):
                if m != b"LEAF":
                    out.setdefault(f, []).append(v)
    return out


def samples(X, model, sess, k=3):
    """k rows whose features all lie at least 1/64 from the thresholds and,
    for a classifier, whose two likeliest classes are 0.05 apart (a closer
    call is a tie at the circuit's precision)."""
    t = thresholds(model)
    ok = [x for x in X if all(abs(x[f] - v) >= 1 / 64 for f, vs in t.items() for v in vs)]

    def clear(x):
        outs = sess.run(None, {sess.get_inputs()[0].name: x[None, :]})
        if len(outs) < 2:
            return True
        p = np.sort(np.asarray(outs[1], dtype=np.float64).flatten())
        return p.size < 2 or p[-1] - p[-2] >= 0.05

    ok = [x for x in ok if clear(x)]
    return ok[:: max(1, len(ok) // k)][:k]


def write(name, est, X):
    final = est.steps[-1][1] if hasattr(est, "steps") else est
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    model = to_onnx(est, X[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for k, x in enumerate(samples(X, model, sess)):
        outs = sess.run(None, {sess.get_inputs()[0].name: x[None, :]})
        base = os.path.join(HERE, f"ml_{name}_s{k}")
        onnx.save(model, base + ".onnx")
        data_out = {
            "input_data": [[float(v) for v in x]],
            "output_data": [[float(v) for v in np.asarray(o, dtype=np.float64).flatten()] for o in outs],
            "tolerance": 0.1,
        }
        with open(base + ".json", "w") as f:
            json.dump(data_out, f)


if __name__ == "__main__":
    for old in os.listdir(HERE):
        if old.startswith("ml_") and old.endswith((".onnx", ".json")):
            os.remove(os.path.join(HERE, old))
    Xc, yc = data("cls", 0, 3)
    Xb, yb = data("cls", 1)
    Xr, yr = data("reg", 2)
    models = [
        ("decision_tree_classifier", DecisionTreeClassifier(max_depth=4, random_state=0).fit(Xc, yc), Xc),
        ("random_forest_classifier", RandomForestClassifier(6, max_depth=3, random_state=0).fit(Xc, yc), Xc),
        ("random_forest_binary", RandomForestClassifier(5, max_depth=3, random_state=0).fit(Xb, yb), Xb),
        ("gradient_boosting_binary", GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(Xb, yb), Xb),
        ("gradient_boosting_classifier", GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0).fit(Xc, yc), Xc),
        ("random_forest_regressor", RandomForestRegressor(5, max_depth=3, random_state=0).fit(Xr, yr), Xr),
        ("gradient_boosting_regressor", GradientBoostingRegressor(n_estimators=6, max_depth=2, random_state=0).fit(Xr, yr), Xr),
        ("decision_tree_regressor", DecisionTreeRegressor(max_depth=4, random_state=0).fit(Xr, yr), Xr),
        ("logistic_regression", LogisticRegression(max_iter=500).fit(Xc, yc), Xc),
        ("logistic_regression_binary", LogisticRegression(max_iter=500).fit(Xb, yb), Xb),
        ("linear_regression", LinearRegression().fit(Xr, yr), Xr),
        ("scaler_logistic_regression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(Xc, yc), Xc),
        # Standard ops with ArrayFeatureExtractor picking the label.
        ("mlp_classifier", MLPClassifier((8,), max_iter=300, random_state=0).fit(Xc, yc), Xc),
        ("minmax_mlp_classifier", make_pipeline(MinMaxScaler(), MLPClassifier((6,), max_iter=200, random_state=0)).fit(Xc, yc), Xc),
        ("gaussian_naive_bayes", GaussianNB().fit(Xc, yc), Xc),
        # Support vector regression (SVMRegressor) with three kernels.
        ("svr_rbf", SVR().fit(Xr, yr), Xr),
        ("svr_linear", SVR(kernel="linear").fit(Xr, yr), Xr),
        ("svr_poly", SVR(kernel="poly", degree=2, gamma=0.5).fit(Xr, yr), Xr),
    ]
    for name, est, X in models:
        write(name, est, X)
    print(f"wrote {len([f for f in os.listdir(HERE) if f.startswith('ml_') and f.endswith('.onnx')])} ai.onnx.ml models to {HERE}")
