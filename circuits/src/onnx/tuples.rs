//! GatherND and ScatterND by runtime index tuples. Each tuple names a slice
//! of the data by its first `q` axes; the tuple becomes one position along
//! those axes flattened (`Σ_d i_d · stride_d`), and the op becomes a Gather
//! or a ScatterElements along that one flattened axis, which compare each
//! position with every one of the axis.

use anyhow::{anyhow, ensure, Result};

use super::{Importer, Val};
use crate::graph::*;

impl Importer {
    /// GatherND (batch_dims 0) of `x` by the runtime tuples `idx`.
    pub(super) fn gather_nd_dyn(&mut self, x: Val, idx: NodeId, name: &str) -> Result<Val> {
        let shape = self.shape(&x);
        let (flat, q) = self.flat_positions(idx, &shape, name)?;
        let mut lead = vec![shape[..q].iter().product()];
        lead.extend(&shape[q..]);
        let data = self.reshape(x, lead, &format!("{name}.flat_data"))?;
        self.gather_runtime(data, flat, 0, name)
    }

    /// ScatterND (no reduction) of `updates` into `data` at the runtime
    /// tuples `idx`, applied in order.
    pub(super) fn scatter_nd_dyn(&mut self, data: Val, idx: NodeId, updates: Val, name: &str) -> Result<Val> {
        let shape = self.shape(&data);
        let (flat, q) = self.flat_positions(idx, &shape, name)?;
        let positions: Vec<usize> = self.graph.nodes[flat].shape.clone();
        let u: usize = positions.iter().product();
        let inner: usize = shape[q..].iter().product();
        let mut expected = positions.clone();
        expected.extend(&shape[q..]);
        ensure!(
            self.shape(&updates) == expected,
            "ScatterND updates {:?}, where {expected:?} is needed",
            self.shape(&updates)
        );
        let n: usize = shape[..q].iter().product();
        let data2 = self.reshape(data, vec![n, inner], &format!("{name}.flat_data"))?;
        let updates2 = self.reshape(updates, vec![u, inner], &format!("{name}.flat_updates"))?;
        // Each update row's position, repeated along the row.
        let map = (0..u * inner).map(|i| Some(i / inner)).collect();
        let spread = self.rearrange(Val::Node(flat), vec![u, inner], map, 0.0, &format!("{name}.rows"))?;
        let Val::Node(spread) = spread else { return Err(anyhow!("ScatterND positions folded to a constant")) };
        let out = self.scatter_dyn_at(data2, spread, updates2, 0, &format!("{name}.scatter"))?;
        self.reshape(out, shape, name)
    }

    /// Each tuple of `idx` (its last axis, of `q` ≤ rank entries) as one
    /// position along the data's first `q` axes flattened. Each entry is
    /// first brought into `[0, n_d)` by a lookup of the axis's positions
    /// (negative entries count from the end; one outside the axis is an
    /// error naming the node), then one dense step weighs them by the
    /// flattened strides, exactly.
    fn flat_positions(&mut self, idx: NodeId, shape: &[usize], name: &str) -> Result<(NodeId, usize)> {
        let ishape = self.graph.nodes[idx].shape.clone();
        let q = *ishape.last().ok_or_else(|| anyhow!("index tuples of rank 0"))?;
        ensure!(q >= 1 && q <= shape.len(), "index tuples of {q} for data of rank {}", shape.len());
        let tuples: usize = ishape[..ishape.len() - 1].iter().product();
        // Each tuple is compared with every position of the flattened axes.
        let positions: usize = shape[..q].iter().product();
        ensure!(
            tuples.checked_mul(positions).is_some_and(|m| m <= super::MAX_TENSOR_ELEMENTS),
            "{tuples} index tuples over {positions} positions is too large"
        );
        let mut parts = Vec::with_capacity(q);
        for (d, &n) in shape[..q].iter().enumerate() {
            let map = (0..tuples).map(|t| Some(t * q + d)).collect();
            let entry = self.rearrange(Val::Node(idx), vec![tuples, 1], map, 0.0, &format!("{name}.entry{d}"))?;
            let Val::Node(entry) = entry else { return Err(anyhow!("index tuples folded to a constant")) };
            let positions = Val::Const(Tensor::new(vec![n], (0..n).map(|i| i as f64).collect()));
            parts.push(self.gather_runtime(positions, entry, 0, &format!("{name}.axis{d}"))?);
        }
        let joined = self.cat(parts, 1, &format!("{name}.entries"))?;
        let Val::Node(joined) = joined else { return Err(anyhow!("index tuples folded to a constant")) };
        let strides: Vec<f64> = (0..q).map(|d| shape[d + 1..q].iter().product::<usize>() as f64).collect();
        let dense = Op::Dense { weight: Tensor::new(vec![1, q], strides), bias: vec![0.0] };
        let flat = self.push(&format!("{name}.position"), dense, vec![joined], vec![tuples, 1]);
        let out_shape = ishape[..ishape.len() - 1].to_vec();
        let Val::Node(flat) = self.reshape(flat, out_shape, &format!("{name}.positions"))? else {
            return Err(anyhow!("index tuples folded to a constant"));
        };
        Ok((flat, q))
    }
}
