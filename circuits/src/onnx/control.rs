//! If: a constant condition (shape checks in scripted or converted models)
//! inlines the branch it picks; a runtime condition lowers both branches
//! and selects each output by Where, as a circuit must (both are proven).
//! Subgraph values have names unique across scopes, so a branch's nodes are
//! lowered in the graph's own scope.

use anyhow::{anyhow, ensure, Context, Result};
use tract_onnx::pb::{self, NodeProto};

use super::{attr, load_tensor, node_name, Importer, Val};

/// Every node of a graph's node list and of the subgraphs its nodes hold
/// (If branches, loop bodies), a node's subgraphs before the node, so that
/// a walk in this order meets a value's producer before its readers.
pub(super) fn all_nodes(nodes: &[NodeProto]) -> Vec<&NodeProto> {
    let mut out = Vec::new();
    for n in nodes {
        for g in subgraphs(n) {
            out.extend(all_nodes(&g.node));
        }
        out.push(n);
    }
    out
}

/// The graphs a node's attributes hold.
pub(super) fn subgraphs(n: &NodeProto) -> impl Iterator<Item = &pb::GraphProto> {
    n.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs))
}

impl Importer {
    /// Lowers an If node and sets its outputs.
    pub(super) fn if_node(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        let branch = |key: &str| attr(node, key).and_then(|a| a.g.clone()).ok_or_else(|| anyhow!("If without a {key}"));
        let (then_g, else_g) = (branch("then_branch")?, branch("else_branch")?);
        match self.input(node, 0)? {
            Val::Const(t) => {
                ensure!(t.data.len() == 1, "If condition of {} elements", t.data.len());
                let picked = if t.data[0] != 0.0 { &then_g } else { &else_g };
                let outs = self.inline(picked, name)?;
                ensure!(
                    outs.len() >= node.output.len(),
                    "If branch gives {} outputs for {}",
                    outs.len(),
                    node.output.len()
                );
                for (o, v) in node.output.iter().zip(outs) {
                    if !o.is_empty() {
                        self.vals.insert(o.clone(), v);
                    }
                }
            }
            Val::Node(_) => {
                let a = self.inline(&then_g, &format!("{name}.then"))?;
                let b = self.inline(&else_g, &format!("{name}.else"))?;
                ensure!(
                    a.len() >= node.output.len() && b.len() >= node.output.len(),
                    "If branches give {} and {} outputs for {}",
                    a.len(),
                    b.len(),
                    node.output.len()
                );
                for (k, o) in node.output.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
                    let (sa, sb) = (self.shape(&a[k]), self.shape(&b[k]));
                    ensure!(
                        sa == sb,
                        "If with a runtime condition: its branches give output {k} of shapes {sa:?} and {sb:?}, \
                         which must agree (both branches are proven)"
                    );
                    let then_name = self.named(a[k].clone(), &format!("{name}::then{k}"));
                    let else_name = self.named(b[k].clone(), &format!("{name}::else{k}"));
                    let select = NodeProto {
                        op_type: "Where".into(),
                        name: format!("{name}.select{k}"),
                        input: vec![node.input[0].clone(), then_name, else_name],
                        output: vec![o.clone()],
                        ..Default::default()
                    };
                    self.node(&select, &select.name)?;
                }
            }
        }
        Ok(())
    }

    /// A branch's initializers and nodes in this scope; its outputs.
    fn inline(&mut self, g: &pb::GraphProto, name: &str) -> Result<Vec<Val>> {
        for t in &g.initializer {
            let tensor = load_tensor(t).with_context(|| format!("initializer `{}` of If `{name}`", t.name))?;
            self.vals.insert(t.name.clone(), Val::Const(tensor));
        }
        for n in &g.node {
            self.node(n, &node_name(n))
                .with_context(|| format!("node `{}` ({}) of If `{name}`", node_name(n), n.op_type))?;
        }
        g.output
            .iter()
            .map(|o| {
                self.vals.get(&o.name).cloned().ok_or_else(|| anyhow!("If branch output `{}` is not produced", o.name))
            })
            .collect()
    }
}
