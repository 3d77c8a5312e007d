//! The `ai.onnx.ml` ops that scikit-learn models converted by skl2onnx use:
//! tree ensembles (TreeEnsembleClassifier, TreeEnsembleRegressor), linear
//! models (LinearClassifier, LinearRegressor), Scaler and Normalizer.
//!
//! A tree ensemble becomes three layers, whatever the number of trees:
//! every branch node's decision (`x_f ≤ v` and the like, 0 or 1) by one
//! comparison of the gathered features with the thresholds; each leaf's
//! indicator as `[Σ_path (d or 1 − d) ≥ depth]`, a dense step over the
//! decisions and one comparison; and the scores as a dense step over the
//! indicators with the leaves' weights. Scores then take the op's post
//! transform, and a classifier's label is the class of the largest score,
//! with onnxruntime's rules for two classes scored by one column.

use std::collections::HashMap;

use anyhow::{anyhow, bail, ensure, Result};
use tract_onnx::pb::NodeProto;

use super::{attr, attr_i, attr_s, scalar, Importer, Val};
use crate::graph::*;

/// The `ai.onnx.ml` ops the importer lowers.
pub const ML_OPS: &[&str] = &[
    "ArrayFeatureExtractor",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "SVMRegressor",
    "Scaler",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
];

/// A float list attribute, or its `_as_tensor` form.
fn floats(node: &NodeProto, name: &str) -> Result<Vec<f64>> {
    if let Some(a) = attr(node, name) {
        return Ok(a.floats.iter().map(|&v| f64::from(v)).collect());
    }
    match attr(node, &format!("{name}_as_tensor")).and_then(|a| a.t.as_ref()) {
        Some(t) => Ok(super::load_tensor(t)?.data),
        None => Ok(Vec::new()),
    }
}

fn ints(node: &NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn strings(node: &NodeProto, name: &str) -> Vec<String> {
    attr(node, name)
        .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default()
}

/// One branch node: its feature, threshold and comparison.
struct Branch {
    feature: usize,
    threshold: f64,
    mode: String,
}

/// A leaf: its (tree, node) key and its path of (branch, went true).
struct Leaf {
    key: (i64, i64),
    path: Vec<(usize, bool)>,
}

/// The trees of an ensemble, in the layout the three layers need.
struct Forest {
    branches: Vec<Branch>,
    leaves: Vec<Leaf>,
}

impl Forest {
    fn parse(node: &NodeProto, features: usize) -> Result<Forest> {
        let (trees, ids) = (ints(node, "nodes_treeids"), ints(node, "nodes_nodeids"));
        let (feats, modes) = (ints(node, "nodes_featureids"), strings(node, "nodes_modes"));
        let values = floats(node, "nodes_values")?;
        let (yes, no) = (ints(node, "nodes_truenodeids"), ints(node, "nodes_falsenodeids"));
        let n = trees.len();
        ensure!(
            [ids.len(), feats.len(), modes.len(), values.len(), yes.len(), no.len()].iter().all(|&l| l == n),
            "{} node attributes of different lengths",
            node.op_type
        );
        let at: HashMap<(i64, i64), usize> = (0..n).map(|i| ((trees[i], ids[i]), i)).collect();
        let mut branch_of = vec![None; n];
        let mut branches = Vec::new();
        for i in 0..n {
            if modes[i] == "LEAF" {
                continue;
            }
            ensure!(
                matches!(modes[i].as_str(), "BRANCH_LEQ" | "BRANCH_LT" | "BRANCH_GTE" | "BRANCH_GT"),
                "tree node mode {} is not supported",
                modes[i]
            );
            let feature = usize::try_from(feats[i]).ok().filter(|&f| f < features);
            let feature =
                feature.ok_or_else(|| anyhow!("tree node feature {} outside {features} features", feats[i]))?;
            branch_of[i] = Some(branches.len());
            branches.push(Branch { feature, threshold: values[i], mode: modes[i].clone() });
        }
        // Walk each tree from its root (the node no other node points to);
        // a node pointed to twice would make paths multiply, so each tree
        // must be a tree.
        let mut pointed = vec![false; n];
        for i in (0..n).filter(|&i| branch_of[i].is_some()) {
            for child in [yes[i], no[i]] {
                let c = *at.get(&(trees[i], child)).ok_or_else(|| anyhow!("tree {} has no node {child}", trees[i]))?;
                ensure!(!pointed[c], "tree {} reaches node {child} twice", trees[i]);
                pointed[c] = true;
            }
        }
        let mut leaves = Vec::new();
        let mut visited = vec![false; n];
        for root in (0..n).filter(|&i| !pointed[i]) {
            let mut stack = vec![(root, Vec::new())];
            while let Some((i, path)) = stack.pop() {
                ensure!(!visited[i], "tree {} has a cycle", trees[i]);
                visited[i] = true;
                match branch_of[i] {
                    None => leaves.push(Leaf { key: (trees[i], ids[i]), path }),
                    Some(b) => {
                        for (child, went) in [(yes[i], true), (no[i], false)] {
                            let mut p: Vec<(usize, bool)> = path.clone();
                            p.push((b, went));
                            stack.push((at[&(trees[i], child)], p));
                        }
                    }
                }
            }
        }
        Ok(Forest { branches, leaves })
    }
}

impl Importer {
    /// Lowers an `ai.onnx.ml` node and sets its outputs.
    pub(super) fn ml(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        match node.op_type.as_str() {
            "ArrayFeatureExtractor" => {
                let v = self.array_feature_extractor(node, name)?;
                return self.set(node, v);
            }
            "LabelEncoder" => {
                let v = self.label_encoder(node, name)?;
                return self.set(node, v);
            }
            _ => {}
        }
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        ensure!(shape.len() == 2, "{} of an input of shape {shape:?} (it needs [N, features])", node.op_type);
        let outputs: Vec<Option<Val>> = match node.op_type.as_str() {
            "Scaler" => {
                let (offset, scale) = (floats(node, "offset")?, floats(node, "scale")?);
                let per = |v: Vec<f64>, default: f64| -> Result<Val> {
                    let v = if v.is_empty() { vec![default] } else { v };
                    ensure!(
                        v.len() == 1 || v.len() == shape[1],
                        "Scaler parameters of {} for {} features",
                        v.len(),
                        shape[1]
                    );
                    Ok(Val::Const(Tensor::new(vec![v.len()], v)))
                };
                let centred = self.binary(Arith::Sub, x, per(offset, 0.0)?, &format!("{name}.offset"))?;
                vec![Some(self.binary(Arith::Mul, centred, per(scale, 1.0)?, name)?)]
            }
            "Normalizer" => vec![Some(self.ml_normalize(x, node, name)?)],
            "SVMRegressor" => vec![Some(self.svm_regressor(x, node, name)?)],
            "LinearRegressor" => {
                let targets = attr_i(node, "targets", 1).max(1) as usize;
                let scores = self.linear(x, node, targets, "coefficients", "intercepts", name)?;
                ensure!(attr_s(node, "post_transform").is_none_or(|p| p == "NONE"), "LinearRegressor post_transform");
                vec![Some(scores)]
            }
            "LinearClassifier" => {
                let labels = ints(node, "classlabels_ints");
                ensure!(!labels.is_empty(), "LinearClassifier with string labels is not supported");
                let coefficients = floats(node, "coefficients")?;
                let rows = coefficients.len() / shape[1].max(1);
                let scores = self.linear(x, node, rows, "coefficients", "intercepts", &format!("{name}.raw"))?;
                self.classify(scores, &labels, rows == 1, false, node, name)?
            }
            "TreeEnsembleRegressor" => {
                let targets = attr_i(node, "n_targets", 1).max(1) as usize;
                let scores = self.forest(x, node, "target", targets, name)?;
                let post = attr_s(node, "post_transform").unwrap_or_else(|| "NONE".into());
                vec![Some(self.post_transform(scores, &post, &format!("{name}.post"))?)]
            }
            _ => {
                let labels = ints(node, "classlabels_int64s");
                ensure!(!labels.is_empty(), "TreeEnsembleClassifier with string labels is not supported");
                let class_ids = ints(node, "class_ids");
                // One column of weights for two classes: onnxruntime's binary case.
                let single =
                    labels.len() == 2 && class_ids.iter().all(|&c| c == class_ids.first().copied().unwrap_or(0));
                let columns = if single { 1 } else { labels.len() };
                let scores = self.forest(x, node, "class", columns, &format!("{name}.raw"))?;
                let positive = floats(node, "class_weights")?.iter().all(|&w| w >= 0.0);
                self.classify(scores, &labels, single, positive, node, name)?
            }
        };
        for (out, v) in node.output.iter().zip(outputs) {
            if let (false, Some(v)) = (out.is_empty(), v) {
                self.vals.insert(out.clone(), v);
            }
        }
        Ok(())
    }

    /// ArrayFeatureExtractor: the input's elements at the given indices of
    /// its last axis (a 1-D input gives `[1, n]`, as onnxruntime shapes it).
    fn array_feature_extractor(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        ensure!(!shape.is_empty(), "ArrayFeatureExtractor of a scalar");
        let last = shape.len() - 1;
        let y = self.input(node, 1)?;
        let n: usize = self.shape(&y).iter().product();
        let y = self.reshape(y, vec![n], &format!("{name}.indices"))?;
        let picked = match y {
            Val::Const(t) => {
                let width = shape[last];
                let mut cols = Vec::with_capacity(n);
                for &v in &t.data {
                    let i = v as i64;
                    let j = if i < 0 { i + width as i64 } else { i };
                    ensure!((0..width as i64).contains(&j), "index {i} is out of range for an axis of {width}");
                    cols.push(j as usize);
                }
                let mut out = shape.clone();
                out[last] = n;
                let map = (0..out.iter().product::<usize>()).map(|i| Some((i / n) * width + cols[i % n])).collect();
                self.rearrange(x, out, map, 0.0, name)?
            }
            Val::Node(idx) => self.gather_runtime(x, idx, last, &format!("{name}.gather"))?,
        };
        if shape.len() == 1 {
            return self.reshape(picked, vec![1, n], name);
        }
        Ok(picked)
    }

    /// LabelEncoder of numbers: each key's value (the default elsewhere),
    /// looked up in a table indexed by the key less the smallest one; a
    /// runtime key outside the keys' span is an error naming the node.
    fn label_encoder(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let keys: Vec<f64> = match attr(node, "keys_int64s") {
            Some(a) => a.ints.iter().map(|&v| v as f64).collect(),
            None => floats(node, "keys_floats")?,
        };
        let values: Vec<f64> = match attr(node, "values_int64s") {
            Some(a) => a.ints.iter().map(|&v| v as f64).collect(),
            None => floats(node, "values_floats")?,
        };
        ensure!(
            !keys.is_empty() && keys.len() == values.len(),
            "LabelEncoder needs numeric keys and values of one length"
        );
        ensure!(keys.iter().all(|k| k.fract() == 0.0), "LabelEncoder with non-integer keys is not supported");
        let default = match attr(node, "default_int64") {
            Some(a) => a.i as f64,
            None => attr(node, "default_float").map_or(-0.0, |a| f64::from(a.f)),
        };
        let lo = keys.iter().cloned().fold(f64::INFINITY, f64::min);
        let width = keys.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - lo;
        ensure!(width < 65536.0, "LabelEncoder keys spanning {width} values");
        let span = width as usize + 1;
        ensure!(span <= 1 << 16, "LabelEncoder keys spanning {span} values");
        let mut table = vec![default; span];
        for (k, v) in keys.iter().zip(&values) {
            table[(k - lo) as usize] = *v;
        }
        let table = Tensor::new(vec![span], table);
        let x = self.input(node, 0)?;
        match x {
            Val::Const(t) => {
                let map = |k: f64| keys.iter().position(|&key| key == k).map_or(default, |i| values[i]);
                Ok(Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|&k| map(k)).collect())))
            }
            x => {
                let shifted = self.binary(Arith::Sub, x, scalar(lo), &format!("{name}.offset"))?;
                let Val::Node(idx) = shifted else { bail!("LabelEncoder keys folded to a constant") };
                self.gather_runtime(Val::Const(table), idx, 0, name)
            }
        }
    }

    /// SVMRegressor: `Σ_j c_j·K(x, sv_j) + rho` (or its sign, for a
    /// one-class model). The kernels of every support vector come from one
    /// dense step (`x·sv_j`, or for RBF `‖sv_j‖² − 2x·sv_j`, plus `‖x‖²`)
    /// and one table; the sum is a second dense step.
    fn svm_regressor(&mut self, x: Val, node: &NodeProto, name: &str) -> Result<Val> {
        let Val::Node(xid) = x else { bail!("SVMRegressor of a constant") };
        let [n, features] = self.graph.nodes[xid].shape[..] else { bail!("SVMRegressor needs [N, features]") };
        let sv = floats(node, "support_vectors")?;
        let coef = floats(node, "coefficients")?;
        let count = coef.len();
        ensure!(
            count > 0 && sv.len() == count * features,
            "SVMRegressor: {} support vector values for {count} coefficients of {features} features",
            sv.len()
        );
        let params = floats(node, "kernel_params")?;
        let (gamma, coef0, degree) = (
            params.first().copied().unwrap_or(1.0),
            params.get(1).copied().unwrap_or(0.0),
            params.get(2).copied().unwrap_or(3.0),
        );
        let kind = attr_s(node, "kernel_type").unwrap_or_else(|| "LINEAR".into());
        let rbf = kind == "RBF";
        let (weight, bias): (Vec<f64>, Vec<f64>) = if rbf {
            let norms = sv.chunks(features).map(|v| v.iter().map(|a| a * a).sum()).collect();
            (sv.iter().map(|v| -2.0 * v).collect(), norms)
        } else {
            (sv.clone(), vec![0.0; count])
        };
        let dots = self.push(
            &format!("{name}.dots"),
            Op::Dense { weight: Tensor::new(vec![count, features], weight), bias },
            vec![xid],
            vec![n, count],
        );
        let kernels = match kind.as_str() {
            "LINEAR" => dots,
            "RBF" => {
                let sq = self.push(
                    &format!("{name}.xx"),
                    Op::Reduce { kind: Reduce::SumSquare, axes: vec![1] },
                    vec![xid],
                    vec![n, 1],
                );
                let dist = self.binary(Arith::Add, dots, sq, &format!("{name}.dist"))?;
                let scaled = self.binary(Arith::Mul, dist, scalar(-gamma), &format!("{name}.scaled"))?;
                self.apply(scaled, Activation::Exp, &format!("{name}.kernel"))?
            }
            "POLY" | "SIGMOID" => {
                let scaled = self.binary(Arith::Mul, dots, scalar(gamma), &format!("{name}.scaled"))?;
                let shifted = self.binary(Arith::Add, scaled, scalar(coef0), &format!("{name}.shifted"))?;
                let act = if kind == "POLY" { Activation::Pow { exponent: degree } } else { Activation::Tanh };
                self.apply(shifted, act, &format!("{name}.kernel"))?
            }
            other => bail!("SVMRegressor kernel {other} is not supported"),
        };
        let Val::Node(k) = kernels else { bail!("SVM kernels folded to a constant") };
        let rho = floats(node, "rho")?.first().copied().unwrap_or(0.0);
        let f = self.push(
            name,
            Op::Dense { weight: Tensor::new(vec![1, count], coef), bias: vec![rho] },
            vec![k],
            vec![n, 1],
        );
        ensure!(attr_s(node, "post_transform").is_none_or(|p| p == "NONE"), "SVMRegressor post_transform");
        if attr_i(node, "one_class", 0) == 0 {
            return Ok(f);
        }
        // One class: 1 where the decision is positive, −1 elsewhere.
        let positive = self.compare_vals(Cmp::Greater, f, scalar(0.0), &format!("{name}.positive"))?;
        let doubled = self.binary(Arith::Mul, positive, scalar(2.0), &format!("{name}.doubled"))?;
        self.binary(Arith::Sub, doubled, scalar(1.0), &format!("{name}.sign"))
    }

    /// `x · coefficientsᵀ + intercepts`, `rows` outputs per sample.
    fn linear(&mut self, x: Val, node: &NodeProto, rows: usize, coef: &str, icpt: &str, name: &str) -> Result<Val> {
        let Val::Node(x) = x else { bail!("{} of a constant", node.op_type) };
        let features = self.graph.nodes[x].shape[1];
        let weights = floats(node, coef)?;
        ensure!(
            weights.len() == rows * features,
            "{} coefficients for {rows} outputs of {features} features",
            weights.len()
        );
        let mut bias = floats(node, icpt)?;
        bias.resize(rows, 0.0);
        let n = self.graph.nodes[x].shape[0];
        let op = Op::Dense { weight: Tensor::new(vec![rows, features], weights), bias };
        Ok(self.push(name, op, vec![x], vec![n, rows]))
    }

    /// Normalizer: each row divided by its MAX, L1 or L2 norm.
    fn ml_normalize(&mut self, x: Val, node: &NodeProto, name: &str) -> Result<Val> {
        let Val::Node(xid) = x else { bail!("Normalizer of a constant") };
        let mut kept = self.graph.nodes[xid].shape.clone();
        kept[1] = 1;
        let kind = match attr_s(node, "norm").as_deref().unwrap_or("MAX") {
            "MAX" => Reduce::Max,
            "L1" => Reduce::L1,
            "L2" => Reduce::L2,
            other => bail!("Normalizer norm {other}"),
        };
        let norm = self.push(&format!("{name}.norm"), Op::Reduce { kind, axes: vec![1] }, vec![xid], kept);
        self.broadcast_node(Op::DivDyn, Val::Node(xid), norm, name)
    }

    /// A tree ensemble's scores, `[N, columns]`: `prefix` is "target" or
    /// "class" (the attributes of the leaves' weights).
    fn forest(&mut self, x: Val, node: &NodeProto, prefix: &str, columns: usize, name: &str) -> Result<Val> {
        let Val::Node(xid) = x else { bail!("{} of a constant", node.op_type) };
        let [n, features] = self.graph.nodes[xid].shape[..] else { bail!("a tree ensemble needs [N, features]") };
        let forest = Forest::parse(node, features)?;
        let b = forest.branches.len();
        // Decisions: 1 where a branch goes to its true child.
        let decisions = if b == 0 {
            Val::Const(Tensor::new(vec![n, 0], vec![]))
        } else {
            let map = (0..n * b).map(|i| Some((i / b) * features + forest.branches[i % b].feature)).collect();
            let picked = self.rearrange(Val::Node(xid), vec![n, b], map, 0.0, &format!("{name}.features"))?;
            let thresholds = Val::Const(Tensor::new(vec![b], forest.branches.iter().map(|br| br.threshold).collect()));
            let uses = |modes: &[&str]| forest.branches.iter().any(|br| modes.contains(&br.mode.as_str()));
            let leq = if uses(&["BRANCH_LEQ", "BRANCH_GT"]) {
                Some(self.compare_vals(Cmp::LessOrEqual, picked.clone(), thresholds.clone(), &format!("{name}.leq"))?)
            } else {
                None
            };
            let lt = if uses(&["BRANCH_LT", "BRANCH_GTE"]) {
                Some(self.compare_vals(Cmp::Less, picked, thresholds, &format!("{name}.lt"))?)
            } else {
                None
            };
            // d = c + s_leq·[x ≤ v] + s_lt·[x < v], per branch.
            let per = |f: &dyn Fn(&str) -> f64| {
                Val::Const(Tensor::new(vec![b], forest.branches.iter().map(|br| f(&br.mode)).collect()))
            };
            let base = per(&|m| f64::from(u8::from(m == "BRANCH_GT" || m == "BRANCH_GTE")));
            let mut d = base;
            for (cmp, modes, what) in
                [(leq, ["BRANCH_LEQ", "BRANCH_GT"], "leq"), (lt, ["BRANCH_LT", "BRANCH_GTE"], "lt")]
            {
                if let Some(c) = cmp {
                    let sign = per(&|m| {
                        if m == modes[0] {
                            1.0
                        } else if m == modes[1] {
                            -1.0
                        } else {
                            0.0
                        }
                    });
                    let signed = self.binary(Arith::Mul, c, sign, &format!("{name}.{what}.signed"))?;
                    d = self.binary(Arith::Add, d, signed, &format!("{name}.{what}.d"))?;
                }
            }
            d
        };
        // Leaf indicators: [Σ_path (d or 1 − d) ≥ depth].
        let l = forest.leaves.len();
        ensure!(
            l.checked_mul(b).is_some_and(|m| m <= super::MAX_TENSOR_ELEMENTS),
            "a tree ensemble of {l} leaves and {b} branches is too large"
        );
        let mut weight = vec![0.0; l * b];
        let mut bias = vec![0.0; l];
        for (k, leaf) in forest.leaves.iter().enumerate() {
            for &(br, went) in &leaf.path {
                weight[k * b + br] += if went { 1.0 } else { -1.0 };
                bias[k] += if went { 0.0 } else { 1.0 };
            }
        }
        let depth_less_half =
            Val::Const(Tensor::new(vec![l], forest.leaves.iter().map(|leaf| leaf.path.len() as f64 - 0.5).collect()));
        let sums = match decisions {
            Val::Node(d) => self.push(
                &format!("{name}.paths"),
                Op::Dense { weight: Tensor::new(vec![l, b], weight), bias },
                vec![d],
                vec![n, l],
            ),
            Val::Const(_) => Val::Const(Tensor::new(vec![n, l], (0..n * l).map(|i| bias[i % l]).collect())),
        };
        let leaves = self.compare_vals(Cmp::Greater, sums, depth_less_half, &format!("{name}.leaves"))?;
        // Scores: the leaves' weights summed per column, plus the base values.
        let index: HashMap<(i64, i64), usize> =
            forest.leaves.iter().enumerate().map(|(k, leaf)| (leaf.key, k)).collect();
        let (trees, ids, cols) = (
            ints(node, &format!("{prefix}_treeids")),
            ints(node, &format!("{prefix}_nodeids")),
            ints(node, &format!("{prefix}_ids")),
        );
        let w = floats(node, &format!("{prefix}_weights"))?;
        ensure!(
            trees.len() == ids.len() && ids.len() == cols.len() && cols.len() == w.len(),
            "{} leaf weight attributes of different lengths",
            node.op_type
        );
        let scale = match attr_s(node, "aggregate_function").as_deref().unwrap_or("SUM") {
            "SUM" => 1.0,
            "AVERAGE" => {
                1.0 / ints(node, "nodes_treeids").iter().collect::<std::collections::HashSet<_>>().len().max(1) as f64
            }
            other => bail!("tree ensemble aggregate_function {other} is not supported"),
        };
        let mut score_w = vec![0.0; columns * l];
        for i in 0..w.len() {
            let k = *index
                .get(&(trees[i], ids[i]))
                .ok_or_else(|| anyhow!("weight for tree {} node {}, not a leaf", trees[i], ids[i]))?;
            let c = if columns == 1 {
                0
            } else {
                usize::try_from(cols[i])
                    .ok()
                    .filter(|&c| c < columns)
                    .ok_or_else(|| anyhow!("leaf weight for column {}", cols[i]))?
            };
            score_w[c * l + k] += w[i] * scale;
        }
        let mut base = floats(node, "base_values")?;
        base.resize(columns, 0.0);
        let leaves = self.node_of(leaves, &format!("{name}.leaves_node"));
        Ok(self.push(
            name,
            Op::Dense { weight: Tensor::new(vec![columns, l], score_w), bias: base },
            vec![leaves],
            vec![n, columns],
        ))
    }

    /// A classifier's outputs (label, scores) from raw scores: the label of
    /// the largest raw score (a saturated post transform would tie), and
    /// the scores after the post transform. `single` is one column scoring
    /// two classes, onnxruntime's binary case: `[1 − s, s]` for a tree
    /// ensemble whose weights are all non-negative (no post transform),
    /// `[−s, s]` for one with negative weights.
    fn classify(
        &mut self,
        raw: Val,
        labels: &[i64],
        single: bool,
        positive: bool,
        node: &NodeProto,
        name: &str,
    ) -> Result<Vec<Option<Val>>> {
        let post = attr_s(node, "post_transform").unwrap_or_else(|| "NONE".into());
        let raw = if single {
            ensure!(
                node.op_type == "TreeEnsembleClassifier" && !(positive && post != "NONE"),
                "{} scoring two classes in one column with post_transform {post} is not supported",
                node.op_type
            );
            let first = if positive {
                self.binary(Arith::Sub, scalar(1.0), raw.clone(), &format!("{name}.other"))?
            } else {
                self.binary(Arith::Mul, raw.clone(), scalar(-1.0), &format!("{name}.other"))?
            };
            self.cat(vec![first, raw], 1, &format!("{name}.both"))?
        } else {
            raw
        };
        let Val::Node(r) = raw.clone() else { bail!("{} scores folded to a constant", node.op_type) };
        let n = self.graph.nodes[r].shape[0];
        let idx =
            self.graph.push(&format!("{name}.argmax"), Op::ArgExtreme { min: false, last: false }, vec![r], vec![n, 1]);
        let idx = self.push(&format!("{name}.index"), Op::Reshape, vec![idx], vec![n]);
        let Val::Node(idx) = idx else { unreachable!("a node") };
        let table = Tensor::new(vec![labels.len()], labels.iter().map(|&v| v as f64).collect());
        let label = self.gather_runtime(Val::Const(table), idx, 0, &format!("{name}.label"))?;
        let scores = self.post_transform(raw, &post, &format!("{name}.scores"))?;
        Ok(vec![Some(label), Some(scores)])
    }

    /// A tree ensemble's or linear model's post transform.
    fn post_transform(&mut self, scores: Val, post: &str, name: &str) -> Result<Val> {
        Ok(match post {
            "NONE" => scores,
            "LOGISTIC" => self.apply(scores, Activation::Sigmoid, name)?,
            "SOFTMAX" => {
                let Val::Node(s) = scores else { bail!("softmax of constant scores") };
                let shape = self.graph.nodes[s].shape.clone();
                self.push(name, Op::Softmax, vec![s], shape)
            }
            other => bail!("post_transform {other} is not supported"),
        })
    }
}
