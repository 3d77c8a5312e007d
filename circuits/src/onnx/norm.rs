//! The normalizations that exports spell out op by op: LayerNorm before
//! opset 17, `(x − mean(x)) / sqrt(mean((x − mean(x))²) + eps)`, and
//! RMSNorm, `x / sqrt(mean(x²) + eps)`, recognised and
//! lowered as one Normalize: its parts, lowered one by one, would round the
//! variance at the activation scale and lose most of its digits where the
//! spread is a few quanta. The parts stay in the graph, and are lowered
//! only if something else reads them.

use anyhow::Result;
use tract_onnx::pb::NodeProto;

use super::{Importer, Val};
use crate::graph::*;

/// A normalization found spelled out: its input node, axes, eps and
/// whether it is the root-mean-square form.
pub(super) struct SpelledNorm {
    pub x: NodeId,
    pub axes: Vec<usize>,
    pub eps: f64,
    pub rms: bool,
}

impl Importer {
    /// The spelled-out normalization a Div (or a Mul by a Reciprocal, or
    /// by 1 / ·) ends: its input node, axes, eps and whether it is the
    /// root-mean-square form `x / sqrt(mean(x²) + eps)` (RMSNorm, as Llama
    /// writes it) rather than the centred one; None where the node is not
    /// one.
    pub(super) fn spelled_norm(&self, node: &NodeProto) -> Result<Option<SpelledNorm>> {
        if node.input.len() != 2 {
            return Ok(None);
        }
        let (dev, den) = match node.op_type.as_str() {
            "Div" => (&node.input[0], self.producer(&node.input[1], "Sqrt")),
            "Mul" => {
                let inverse = |i: usize| self.inverse_sqrt(&node.input[i]);
                match (inverse(1), inverse(0)) {
                    (Some(sqrt), _) => (&node.input[0], Some(sqrt)),
                    (None, Some(sqrt)) => (&node.input[1], Some(sqrt)),
                    (None, None) => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let Some(sqrt) = den else { return Ok(None) };
        // The variance, with eps added on either side or none.
        let (var_name, eps) = match self.producer(&sqrt.input[0], "Add") {
            Some(add) => match (self.scalar(&add.input[1]), self.scalar(&add.input[0])) {
                (Some(e), _) => (&add.input[0], e),
                (None, Some(e)) => (&add.input[1], e),
                (None, None) => return Ok(None),
            },
            None => (&sqrt.input[0], 0.0),
        };
        let Some(mean_sq) = self.producer(var_name, "ReduceMean") else { return Ok(None) };
        let squares_dev = match self.producer(&mean_sq.input[0], "Pow") {
            Some(pow) => &pow.input[0] == dev && self.scalar(&pow.input[1]) == Some(2.0),
            None => self.producer(&mean_sq.input[0], "Mul").is_some_and(|m| m.input[0] == *dev && m.input[1] == *dev),
        };
        let Some(axes) = self.mean_axes(mean_sq)? else { return Ok(None) };
        if !squares_dev || eps < 0.0 {
            return Ok(None);
        }
        if let Some((x, centre_axes)) = self.deviation(dev)? {
            return Ok((centre_axes == axes).then_some(SpelledNorm { x, axes, eps, rms: false }));
        }
        match self.vals.get(dev) {
            Some(Val::Node(x)) => Ok(Some(SpelledNorm { x: *x, axes, eps, rms: true })),
            _ => Ok(None),
        }
    }

    /// The Sqrt whose inverse `name` is: Reciprocal(Sqrt(·)) or 1 / Sqrt(·).
    fn inverse_sqrt(&self, name: &str) -> Option<&NodeProto> {
        if let Some(r) = self.producer(name, "Reciprocal") {
            return self.producer(&r.input[0], "Sqrt");
        }
        let div = self.producer(name, "Div")?;
        (self.scalar(&div.input[0]) == Some(1.0)).then(|| self.producer(&div.input[1], "Sqrt")).flatten()
    }

    /// `x − ReduceMean(x)` (keepdims): the runtime node x and the axes.
    fn deviation(&self, name: &str) -> Result<Option<(NodeId, Vec<usize>)>> {
        let Some(sub) = self.producer(name, "Sub") else { return Ok(None) };
        let Some(mean) = self.producer(&sub.input[1], "ReduceMean") else { return Ok(None) };
        if mean.input[0] != sub.input[0] {
            return Ok(None);
        }
        let Some(Val::Node(x)) = self.vals.get(&sub.input[0]) else { return Ok(None) };
        Ok(self.mean_axes(mean)?.map(|axes| (*x, axes)))
    }

    /// A ReduceMean's axes, where it keeps its reduced dimensions.
    fn mean_axes(&self, mean: &NodeProto) -> Result<Option<Vec<usize>>> {
        if super::attr_i(mean, "keepdims", 1) == 0 {
            return Ok(None);
        }
        let Some(Val::Node(x)) = self.vals.get(&mean.input[0]) else { return Ok(None) };
        self.reduce_axes(mean, Reduce::Mean, self.graph.nodes[*x].shape.len())
    }

    /// The node of type `op` that produces `name`, if that is what does
    /// (and it has the inputs its op needs).
    fn producer(&self, name: &str, op: &str) -> Option<&NodeProto> {
        let arity = if matches!(op, "Add" | "Sub" | "Mul" | "Pow" | "Div") { 2 } else { 1 };
        self.producers.get(name).filter(|n| n.op_type == op && n.input.len() >= arity)
    }

    /// The value of a one-element constant.
    fn scalar(&self, name: &str) -> Option<f64> {
        match self.vals.get(name) {
            Some(Val::Const(t)) if t.data.len() == 1 => Some(t.data[0]),
            _ => None,
        }
    }
}
