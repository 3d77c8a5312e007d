//! Lowering of the float graph into a fixed-point [`Program`].
//!
//! Every activation carries the single scale `2^input_scale`. Weights carry
//! `2^param_scale`; a product of an activation and a weight is brought back to
//! the activation scale by a rounded division by `2^param_scale`, which the
//! circuit proves with a range-checked remainder.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use crate::graph::*;
use crate::program::{Program, Settings, Step, Table, V};
use crate::wide::{self, Extension};

/// Compiles a graph into a program under the given settings.
pub fn compile(graph: &Graph, settings: &Settings) -> Result<Program> {
    settings.validate()?;
    let mut l = Lowering {
        g: graph,
        s: settings.clone(),
        steps: Vec::new(),
        num_values: 0,
        node: 0,
        vals: vec![None; graph.nodes.len()],
        producer: HashMap::new(),
        consts: HashMap::new(),
        error: None,
        tables: Vec::new(),
        softmax_max_len: 0,
        extensions: HashMap::new(),
        one: None,
        precision_notes: Vec::new(),
        fused_nodes: HashMap::new(),
    };
    check_wide_nodes(graph, settings)?;
    let mut inputs = Vec::new();
    for (i, &id) in graph.inputs.iter().enumerate() {
        let n: usize = graph.nodes[id].shape.iter().product();
        let ids: Vec<V> = (0..n).map(|_| l.fresh()).collect();
        l.node = id as u32;
        for &v in &ids {
            l.steps.push((Step::Input { out: v }, id as u32));
        }
        let typed = ids.iter().map(|&v| l.typed_input(v, graph.input_elem(i))).collect();
        l.vals[id] = Some(typed);
        inputs.push(ids);
    }
    let live = live_nodes(graph);
    for (id, &live) in live.iter().enumerate() {
        if !live || matches!(graph.nodes[id].op, Op::Input { .. } | Op::Const(_)) {
            continue;
        }
        l.node = id as u32;
        let node = &graph.nodes[id];
        let out = l.lower(id).with_context(|| format!("node `{}` ({})", node.name, node.op.kind()))?;
        debug_assert_eq!(out.len(), node.shape.iter().product::<usize>());
        l.vals[id] = Some(out);
    }
    let mut outputs = Vec::new();
    for &id in &graph.outputs {
        outputs.push(l.values(id)?);
    }
    if let Some(e) = l.error.take() {
        bail!(e);
    }
    let exp_scale = if l.softmax_max_len > 0 {
        let need = usize::BITS - (l.softmax_max_len - 1).leading_zeros();
        let es = settings.input_scale.min(settings.lookup_bits.saturating_sub(need));
        if es < 2 {
            bail!("a softmax over {} values does not fit lookup_bits {}", l.softmax_max_len, settings.lookup_bits);
        }
        Some(es)
    } else {
        None
    };
    Ok(Program {
        settings: settings.clone(),
        num_values: l.num_values,
        steps: l.steps,
        node_names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
        node_kinds: graph.nodes.iter().map(|n| n.op.kind().to_string()).collect(),
        inputs,
        input_shapes: graph.input_shapes(),
        input_elems: if graph.input_elems.iter().all(|&e| e == Elem::Float) {
            Vec::new()
        } else {
            (0..graph.inputs.len()).map(|i| graph.input_elem(i)).collect()
        },
        outputs,
        output_shapes: graph.output_shapes(),
        tables: l.tables,
        exp_scale,
        precision_notes: l.precision_notes,
        fused_nodes: l.fused_nodes,
    })
}

/// Every node `wide_nodes` names exists and has a table function to widen.
fn check_wide_nodes(graph: &Graph, settings: &Settings) -> Result<()> {
    for name in settings.wide_nodes.iter().filter(|n| *n != "*") {
        let Some(node) = graph.nodes.iter().find(|n| &n.name == name) else {
            bail!("wide_nodes names `{name}`, which is not a node of the model");
        };
        if !node.op.is_table_fn() {
            bail!(
                "wide_nodes names `{name}` ({}), which has no table function to widen; \
                 only element-wise table functions can be widened",
                node.op.kind()
            );
        }
    }
    Ok(())
}

/// The nodes an output depends on: others (left behind by fusions at
/// import) are not lowered, so they cost no rows.
fn live_nodes(graph: &Graph) -> Vec<bool> {
    let mut live = vec![false; graph.nodes.len()];
    for &o in &graph.outputs {
        live[o] = true;
    }
    for id in (0..graph.nodes.len()).rev() {
        if live[id] {
            for &i in &graph.nodes[id].inputs {
                live[i] = true;
            }
        }
    }
    live
}

struct Lowering<'a> {
    g: &'a Graph,
    s: Settings,
    steps: Vec<(Step, u32)>,
    num_values: usize,
    node: u32,
    vals: Vec<Option<Vec<V>>>,
    /// Step index that produced a value through a `Div`, for fusing the
    /// activation that follows a requantization into the same row.
    producer: HashMap<V, usize>,
    tables: Vec<Table>,
    softmax_max_len: usize,
    /// Values that are constants, with their quantized value: a softmax
    /// leaves out entries that are constant −∞ (attention masks).
    consts: HashMap<V, i64>,
    /// The first problem found where a step cannot report it itself.
    error: Option<String>,
    /// How each widened table continues outside its range.
    extensions: HashMap<u16, Extension>,
    /// The constant 1 (unscaled), shared by widened tables' intercepts.
    one: Option<V>,
    /// Where widened tables lose precision, for `inspect`.
    precision_notes: Vec<String>,
    /// The node of each table lookup fused into a requantization's row.
    fused_nodes: HashMap<V, u32>,
}

/// `e`, but at least one quantum at `scale`: a divisor never rounds to 0.
fn at_least_quantum(e: Expr, scale: u32) -> Expr {
    Expr::Act(Activation::Clip { lo: 2f64.powi(-(scale as i32)), hi: 1e12 }, Box::new(e))
}

fn quant(x: f64, scale: u32) -> i64 {
    (x * (1u64 << scale) as f64).round() as i64
}

impl Lowering<'_> {
    fn fresh(&mut self) -> V {
        self.num_values += 1;
        (self.num_values - 1) as V
    }
    fn push(&mut self, step: Step) {
        self.steps.push((step, self.node));
    }

    /// The values of a node, materializing constants at the activation scale.
    fn values(&mut self, id: NodeId) -> Result<Vec<V>> {
        if let Some(v) = &self.vals[id] {
            return Ok(v.clone());
        }
        let Op::Const(t) = &self.g.nodes[id].op else { bail!("node {id} used before it is defined") };
        let scale = self.s.input_scale;
        let saved = self.node;
        self.node = id as u32;
        let ids: Vec<V> = t.data.iter().map(|&c| self.constant(quant(c, scale))).collect();
        self.node = saved;
        self.vals[id] = Some(ids.clone());
        Ok(ids)
    }

    /// A constant value (quantized).
    fn constant(&mut self, q: i64) -> V {
        let out = self.fresh();
        self.push(Step::Dot { terms: vec![], bias: q, out });
        self.consts.insert(out, q);
        out
    }

    /// Whether `v` is a constant below anything an input may hold: −∞ for
    /// a softmax (masked_fill with -inf, finfo.min or -1e9).
    fn is_neg_inf(&self, v: V) -> bool {
        self.consts.get(&v).is_some_and(|&q| q <= self.neg_limit())
    }

    /// The quantized value at and below which a constant counts as −∞.
    fn neg_limit(&self) -> i64 {
        -(1i64 << (2 * self.s.lookup_bits - 1))
    }

    /// Whether a float constant counts as −∞.
    fn below_inputs(&self, c: f64) -> bool {
        quant(c, self.s.input_scale) <= self.neg_limit()
    }

    /// A constant-weight dot product followed by requantization to the
    /// activation scale: `round((bias + sum x*w) / 2^param_scale)`.
    fn dense(&mut self, terms: impl Iterator<Item = (V, f64)>, bias: f64) -> V {
        let p = self.s.param_scale;
        let terms: Vec<(V, i64)> = terms.map(|(v, w)| (v, quant(w, p))).filter(|&(_, w)| w != 0).collect();
        let bias = quant(bias, p + self.s.input_scale);
        let acc = self.fresh();
        self.push(Step::Dot { terms, bias, out: acc });
        self.div(acc, 1 << p)
    }

    /// `round(v · c)` for one constant factor: the factor carries the
    /// range check's B bits (at least the parameter scale's), so that a
    /// small one (a quantization scale, 1/√d) keeps its digits, at the
    /// cost of a dense product's rows.
    fn times(&mut self, v: V, c: f64) -> V {
        let bits = self.s.lookup_bits.max(self.s.param_scale);
        let acc = self.fresh();
        let w = quant(c, bits);
        self.push(Step::Dot { terms: if w == 0 { vec![] } else { vec![(v, w)] }, bias: 0, out: acc });
        self.div(acc, 1 << bits)
    }

    /// `round(input / divisor)`. The circuit range-checks a remainder
    /// against `2^B`, so a larger divisor is divided out in factors of at
    /// most `2^B` (rounding at each); one with no such factorization is an
    /// error at the end of the compilation.
    fn div(&mut self, input: V, divisor: i64) -> V {
        let limit = 1i64 << self.s.lookup_bits;
        if divisor > limit {
            let factor = (2..=limit).rev().find(|f| divisor % f == 0);
            match factor {
                Some(f) => {
                    let part = self.div(input, f);
                    return self.div(part, divisor / f);
                }
                None => {
                    let node = &self.g.nodes[self.node as usize].name;
                    self.error.get_or_insert(format!(
                        "node `{node}` divides by {divisor}, which exceeds 2^{} and has no factors below it; \
                         raise lookup_bits",
                        self.s.lookup_bits
                    ));
                }
            }
        }
        let out = self.fresh();
        self.producer.insert(out, self.steps.len());
        self.push(Step::Div { input, divisor, out, act: None });
        out
    }

    fn table(&mut self, table: Table) -> u16 {
        if let Some(i) = self.tables.iter().position(|t| *t == table) {
            return i as u16;
        }
        self.tables.push(table);
        (self.tables.len() - 1) as u16
    }

    fn act(&mut self, input: V, act: Activation) -> V {
        let table = self.table(Table::Fn(act));
        self.lookup(input, table)
    }

    /// An input value as its element type requires: an integer is rounded
    /// to a whole number (a range-checked division by the scale and the
    /// product back), a boolean mapped to 0 or 1 by a table, so that the
    /// circuit computes the model on an input of the model's type.
    fn typed_input(&mut self, v: V, elem: Elem) -> V {
        match elem {
            Elem::Float => v,
            Elem::Int => {
                let whole = self.div(v, 1 << self.s.input_scale);
                self.rescale_up(whole)
            }
            Elem::Bool => self.act(v, Activation::NonZero),
        }
    }

    /// `v · 2^scale`: a whole number at the activation scale.
    fn rescale_up(&mut self, v: V) -> V {
        let out = self.fresh();
        self.push(Step::Dot { terms: vec![(v, 1 << self.s.input_scale)], bias: 0, out });
        out
    }

    /// A node's table function: widened when the settings say so.
    fn table_fn(&mut self, input: V, table: u16) -> V {
        if self.s.is_wide(&self.g.nodes[self.node as usize].name) {
            self.wide_lookup(input, table)
        } else {
            self.lookup(input, table)
        }
    }

    /// `table[input]` for an input anywhere in the proven range (`wide.rs`):
    /// `m = round(x / 2^B)` and `y = x − m·2^B` (always a key), then the
    /// table's periodic step or the selection between `f(y)` and the line
    /// the function follows on m's side.
    fn wide_lookup(&mut self, x: V, table: u16) -> V {
        let bits = self.s.lookup_bits;
        let extension = match self.extensions.get(&table) {
            Some(e) => e.clone(),
            None => {
                let e = wide::extension(&self.tables[table as usize], self.s.input_scale, bits);
                self.note_precision(&e);
                self.extensions.insert(table, e.clone());
                e
            }
        };
        let period = 1i64 << bits;
        let m = self.div(x, period);
        let y = self.fresh();
        self.push(Step::Dot { terms: vec![(x, 1), (m, -period)], bias: 0, out: y });
        let fy = self.lookup(y, table);
        match extension {
            Extension::Periodic { step } => {
                let out = self.fresh();
                self.push(Step::Dot { terms: vec![(fy, 1), (m, step)], bias: 0, out });
                out
            }
            Extension::Lines { below, above } => {
                // Entries of 1 and 0 (unscaled), and lines in m, as `Piece`
                // tables: their key is m/2^s and their entries are scaled by 2^s.
                let unit = self.quantum();
                let scale = 1.0 / unit;
                let inside = self.piece((0.0, 0.0), unit, (0.0, 0.0));
                let mut pairs = vec![(self.lookup(m, inside), fy)];
                // G(m) = a·2^B·m + b on m's side.
                let (gb, ga) = (
                    (below.slope * period as f64, below.intercept / scale),
                    (above.slope * period as f64, above.intercept / scale),
                );
                if [gb.0, gb.1, ga.0, ga.1].iter().any(|&c| c != 0.0) {
                    let g = self.piece(gb, 0.0, ga);
                    let g = self.lookup(m, g);
                    let one = self.one();
                    pairs.push((g, one));
                }
                // a·y on m's side, selected by [m < 0] or [m > 0].
                for (line, on) in [(&below, ((0.0, unit), 0.0, (0.0, 0.0))), (&above, ((0.0, 0.0), 0.0, (0.0, unit)))] {
                    if line.slope == 0.0 {
                        continue;
                    }
                    let selector = self.piece(on.0, on.1, on.2);
                    let selector = self.lookup(m, selector);
                    let ay = if line.slope == 1.0 {
                        y
                    } else {
                        let t = self.piece((line.slope, 0.0), 0.0, (line.slope, 0.0));
                        self.lookup(y, t)
                    };
                    pairs.push((selector, ay));
                }
                let out = self.fresh();
                self.push(Step::Mul { pairs, bias: 0, out });
                out
            }
        }
    }

    /// The constant 1 (unscaled), made once.
    fn one(&mut self) -> V {
        if let Some(one) = self.one {
            return one;
        }
        let one = self.constant(1);
        self.one = Some(one);
        one
    }

    /// One quantum at the activation scale, as a real number.
    fn quantum(&self) -> f64 {
        1.0 / (1u64 << self.s.input_scale) as f64
    }

    /// A `Piece` table: lines below and above zero, a value at zero.
    fn piece(&mut self, below: (f64, f64), at: f64, above: (f64, f64)) -> u16 {
        self.table(Table::Fn(Activation::Piece { below, at, above }))
    }

    /// Records the sides where a widened table is held at its edge.
    fn note_precision(&mut self, e: &Extension) {
        let Extension::Lines { below, above, .. } = e else { return };
        let node = &self.g.nodes[self.node as usize];
        let s = (1u64 << self.s.input_scale) as f64;
        for (line, side) in [(below, "below"), (above, "above")] {
            if !line.follows {
                self.precision_notes.push(format!(
                    "node `{}` ({}): inputs {side} its table ({} to {}) follow no line; they get the value at \
                     the table's edge, off by up to {:.4} (at {})",
                    node.name,
                    node.op.kind(),
                    -(1i64 << (self.s.lookup_bits - 1)) as f64 / s,
                    (1i64 << (self.s.lookup_bits - 1)) as f64 / s,
                    line.worst / s,
                    line.worst_at as f64 / s
                ));
            }
        }
    }

    /// `table[input]`, in the row of the requantization that produced the
    /// input where that row has no lookup yet.
    fn lookup(&mut self, input: V, table: u16) -> V {
        let out = self.fresh();
        // Reuse the row of the requantization that produced the input.
        if let Some(&i) = self.producer.get(&input) {
            if let (Step::Div { act: slot @ None, .. }, _) = &mut self.steps[i] {
                *slot = Some((table, out));
                self.fused_nodes.insert(out, self.node);
                return out;
            }
        }
        self.push(Step::Act { input, table, out });
        out
    }

    // Index loops mirror the tensor formulas (weights, biases and inputs are
    // indexed together), which iterator chains would obscure.
    #[allow(clippy::needless_range_loop)]
    fn lower(&mut self, id: NodeId) -> Result<Vec<V>> {
        let node = &self.g.nodes[id];
        let shape = node.shape.clone();
        let ins: Vec<NodeId> = node.inputs.clone();
        Ok(match &node.op {
            Op::Input { .. } | Op::Const(_) => unreachable!(),
            Op::Reshape => self.values(ins[0])?,
            Op::Transpose { perm } => {
                let x = self.values(ins[0])?;
                let st = strides(&self.g.nodes[ins[0]].shape);
                let mut out = Vec::with_capacity(x.len());
                for_each_index(&shape, |pos| {
                    let idx: usize = pos.iter().enumerate().map(|(d, &p)| p * st[perm[d]]).sum();
                    out.push(x[idx]);
                });
                out
            }
            Op::Concat { axis } => {
                let parts: Vec<(Vec<V>, Vec<usize>)> =
                    ins.iter().map(|&i| Ok((self.values(i)?, self.g.nodes[i].shape.clone()))).collect::<Result<_>>()?;
                let outer: usize = shape[..*axis].iter().product();
                let mut out = Vec::new();
                for o in 0..outer {
                    for (vals, s) in &parts {
                        let chunk: usize = s[*axis..].iter().product();
                        out.extend_from_slice(&vals[o * chunk..(o + 1) * chunk]);
                    }
                }
                out
            }
            Op::Dense { weight, bias } => {
                let x = self.values(ins[0])?;
                let (n, k) = (weight.shape[0], weight.shape[1]);
                let rows = x.len() / k;
                let mut out = Vec::with_capacity(rows * n);
                for r in 0..rows {
                    for j in 0..n {
                        let terms = (0..k).map(|i| (x[r * k + i], weight.data[j * k + i]));
                        out.push(self.dense(terms, bias[j]));
                    }
                }
                out
            }
            Op::DenseLeft { weight } => {
                let x = self.values(ins[0])?;
                let (m, k) = (weight.shape[0], weight.shape[1]);
                let r = shape.len();
                let n = shape[r - 1];
                let batch = x.len() / (k * n);
                let mut out = Vec::with_capacity(batch * m * n);
                for b in 0..batch {
                    for i in 0..m {
                        for j in 0..n {
                            let terms = (0..k).map(|t| (x[b * k * n + t * n + j], weight.data[i * k + t]));
                            out.push(self.dense(terms, 0.0));
                        }
                    }
                }
                out
            }
            Op::MatMulDyn => {
                let (a, b) = (self.values(ins[0])?, self.values(ins[1])?);
                let sa = &self.g.nodes[ins[0]].shape;
                let r = sa.len();
                let (m, k, n) = (sa[r - 2], sa[r - 1], shape[r - 1]);
                let batch = a.len() / (m * k);
                let mut out = Vec::new();
                for bt in 0..batch {
                    for i in 0..m {
                        for j in 0..n {
                            let pairs =
                                (0..k).map(|t| (a[bt * m * k + i * k + t], b[bt * k * n + t * n + j])).collect();
                            let acc = self.fresh();
                            self.push(Step::Mul { pairs, bias: 0, out: acc });
                            out.push(self.div(acc, 1 << self.s.input_scale));
                        }
                    }
                }
                out
            }
            Op::Conv { weight, bias, window } => {
                let x = self.values(ins[0])?;
                let xs = self.g.nodes[ins[0]].shape.clone();
                let (ci, h, w) = (xs[1], xs[2], xs[3]);
                let [kh, kw] = window.kernel;
                let mut out = Vec::new();
                for b in 0..shape[0] {
                    for co in 0..shape[1] {
                        for oy in 0..shape[2] {
                            for ox in 0..shape[3] {
                                let mut terms = Vec::new();
                                for c in 0..ci {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            if let Some((iy, ix)) = window_pos(window, oy, ox, ky, kx, h, w) {
                                                let xv = x[((b * ci + c) * h + iy) * w + ix];
                                                terms.push((xv, weight.data[((co * ci + c) * kh + ky) * kw + kx]));
                                            }
                                        }
                                    }
                                }
                                out.push(self.dense(terms.into_iter(), bias[co]));
                            }
                        }
                    }
                }
                out
            }
            Op::Affine { scale, shift } => {
                let x = self.values(ins[0])?;
                let c = shape[1];
                let inner: usize = shape[2..].iter().product();
                (0..x.len())
                    .map(|i| {
                        let ch = (i / inner) % c;
                        self.dense(std::iter::once((x[i], scale[ch])), shift[ch])
                    })
                    .collect()
            }
            Op::Arith(op) => self.arith(*op, ins[0], ins[1], &shape)?,
            Op::DivDyn => self.pairwise(ins[0], ins[1], &shape, |q, a, b| q.div_dyn(a, b))?,
            Op::IntDiv => self.pairwise(ins[0], ins[1], &shape, |q, a, b| q.int_div(a, b))?,
            Op::Mod { fmod: false } => self.pairwise(ins[0], ins[1], &shape, |q, a, b| q.modulo(a, b))?,
            Op::Mod { fmod: true } => self.pairwise(ins[0], ins[1], &shape, |q, a, b| q.fmod(a, b))?,
            Op::Compare(c) => self.pairwise(ins[0], ins[1], &shape, |q, a, b| q.compare(*c, a, b))?,
            Op::Select { first } => {
                let mut i = 0;
                self.pairwise(ins[0], ins[1], &shape, |_, a, b| {
                    i += 1;
                    if first[i - 1] {
                        a
                    } else {
                        b
                    }
                })?
            }
            Op::GatherConst { data } => self.gather(ins[0], data)?,
            Op::GatherDyn { n, choices, which } => self.gather_dyn(ins[0], ins[1], *n, choices, which)?,
            Op::ScatterDyn { n, rows } => self.scatter_dyn(&ins, *n, rows)?,
            Op::Trunc => {
                let x = self.values(ins[0])?;
                x.into_iter().map(|v| self.trunc(v)).collect()
            }
            Op::ShiftRight { bits } => {
                // floor(z / 2^(s+bits)) of z = x·2^s, back at the activation scale.
                let d = 1i64 << (self.s.input_scale + bits);
                let x = self.values(ins[0])?;
                x.into_iter()
                    .map(|v| {
                        let q = self.floor_div(v, d);
                        self.rescale_up(q)
                    })
                    .collect()
            }
            Op::Einsum { labels, out } => self.einsum(&ins, labels, out, &shape)?,
            Op::Normalize { axes, eps, scale, shift, rms } => {
                let x = self.values(ins[0])?;
                let groups = reduction_groups(&self.g.nodes[ins[0]].shape, axes);
                let mut out = vec![0; x.len()];
                for g in groups {
                    let vals: Vec<V> = g.iter().map(|&i| x[i]).collect();
                    let affine: Vec<(f64, f64)> = g
                        .iter()
                        .map(|&i| (scale.get(i).copied().unwrap_or(1.0), shift.get(i).copied().unwrap_or(0.0)))
                        .collect();
                    for (i, y) in g.into_iter().zip(self.normalize(&vals, *eps, &affine, *rms)) {
                        out[i] = y;
                    }
                }
                out
            }
            Op::Act(a) => {
                let x = self.values(ins[0])?;
                let table = self.table(Table::Fn(*a));
                x.into_iter().map(|v| self.table_fn(v, table)).collect()
            }
            Op::Fn(e) => {
                let x = self.values(ins[0])?;
                let table = self.table(Table::Expr(e.clone()));
                x.into_iter().map(|v| self.table_fn(v, table)).collect()
            }
            Op::Softmax => {
                let x = self.values(ins[0])?;
                let n = *shape.last().unwrap_or(&1);
                let mut out = Vec::with_capacity(x.len());
                let mut zero = None;
                for full_row in x.chunks(n) {
                    // Masked entries (constant −∞) are 0 and take no part.
                    let row: Vec<V> = full_row.iter().copied().filter(|&v| !self.is_neg_inf(v)).collect();
                    if row.is_empty() {
                        bail!("every entry of a softmax row is masked (−∞)");
                    }
                    self.softmax_max_len = self.softmax_max_len.max(row.len());
                    let mut probs = Vec::with_capacity(row.len());
                    let m = self.fresh();
                    let exp: Vec<V> = row.iter().map(|_| self.fresh()).collect();
                    self.push(Step::Max { inputs: row.to_vec(), out: m, exp: Some(exp.clone()) });
                    let sum = self.fresh();
                    self.push(Step::Dot { terms: exp.iter().map(|&e| (e, 1)).collect(), bias: 0, out: sum });
                    for &e in &exp {
                        let o = self.fresh();
                        self.push(Step::DivBy { num: e, den: sum, mult: 1 << self.s.input_scale, out: o });
                        probs.push(o);
                    }
                    let mut probs = probs.into_iter();
                    for &v in full_row {
                        out.push(if self.is_neg_inf(v) {
                            *zero.get_or_insert_with(|| self.constant(0))
                        } else {
                            probs.next().expect("one probability per unmasked entry")
                        });
                    }
                }
                out
            }
            Op::LogSoftmax => {
                let x = self.values(ins[0])?;
                let n = *shape.last().unwrap_or(&1);
                let mut out = Vec::with_capacity(x.len());
                for row in x.chunks(n) {
                    let (_, d) = self.centred(row);
                    let log_sum = self.log_sum_exp(&d);
                    for v in d {
                        let o = self.fresh();
                        self.push(Step::Dot { terms: vec![(v, 1), (log_sum, -1)], bias: 0, out: o });
                        out.push(o);
                    }
                }
                out
            }
            Op::Hardmax => {
                let x = self.values(ins[0])?;
                let n = *shape.last().unwrap_or(&1);
                let mut out = Vec::with_capacity(x.len());
                for row in x.chunks(n) {
                    out.extend(self.arg_extreme(row, false, false).0);
                }
                out
            }
            Op::TopK { k, largest } => {
                let x = self.values(ins[0])?;
                let n = *self.g.nodes[ins[0]].shape.last().unwrap_or(&1);
                let mut out = Vec::with_capacity(x.len() / n * 2 * k);
                for row in x.chunks(n) {
                    out.extend(self.top_k(row, *k, *largest));
                }
                out
            }
            Op::ArgExtreme { min, last } => {
                let x = self.values(ins[0])?;
                let n = *self.g.nodes[ins[0]].shape.last().unwrap_or(&1);
                x.chunks(n).map(|row| self.arg_extreme(row, *min, *last).1).collect()
            }
            Op::MaxPool(window) => self.pool(ins[0], &shape, window, None)?,
            Op::AvgPool { window, count_include_pad } => self.pool(ins[0], &shape, window, Some(*count_include_pad))?,
            Op::Rearrange { map, fill } => {
                let x = self.values(ins[0])?;
                let mut constant = None;
                let mut out = Vec::with_capacity(map.len());
                for m in map {
                    out.push(match m {
                        Some(j) => x[*j],
                        None => *constant.get_or_insert_with(|| self.constant(quant(*fill, self.s.input_scale))),
                    });
                }
                out
            }
            Op::Extremum { min } => {
                let inputs: Vec<(Vec<V>, Vec<usize>)> =
                    ins.iter().map(|&i| Ok((self.values(i)?, self.g.nodes[i].shape.clone()))).collect::<Result<_>>()?;
                let mut positions = Vec::new();
                for_each_index(&shape, |pos| positions.push(pos.to_vec()));
                let mut out = Vec::with_capacity(positions.len());
                for pos in positions {
                    let vals: Vec<V> = inputs.iter().map(|(v, s)| v[broadcast_index(s, &pos)]).collect();
                    out.push(self.reduce(if *min { Reduce::Min } else { Reduce::Max }, vals));
                }
                out
            }
            Op::Reduce { kind, axes } => {
                let x = self.values(ins[0])?;
                let groups = reduction_groups(&self.g.nodes[ins[0]].shape, axes);
                groups.iter().map(|g| self.reduce(*kind, g.iter().map(|&i| x[i]).collect())).collect()
            }
            Op::GlobalAvgPool => {
                let x = self.values(ins[0])?;
                let xs = &self.g.nodes[ins[0]].shape;
                let hw = xs[2] * xs[3];
                x.chunks(hw)
                    .map(|c| {
                        let acc = self.fresh();
                        self.push(Step::Dot { terms: c.iter().map(|&v| (v, 1)).collect(), bias: 0, out: acc });
                        self.div(acc, hw as i64)
                    })
                    .collect()
            }
        })
    }

    fn arith(&mut self, op: Arith, a: NodeId, b: NodeId, shape: &[usize]) -> Result<Vec<V>> {
        let konst = |id: NodeId| match &self.g.nodes[id].op {
            Op::Const(t) => Some(t.clone()),
            _ => None,
        };
        let (ca, cb) = (konst(a), konst(b));
        let (sa, sb) = (self.g.nodes[a].shape.clone(), self.g.nodes[b].shape.clone());
        let va = if ca.is_none() { self.values(a)? } else { vec![] };
        let vb = if cb.is_none() { self.values(b)? } else { vec![] };
        let s = self.s.input_scale;
        let mut pos_list = Vec::new();
        for_each_index(shape, |pos| pos_list.push((broadcast_index(&sa, pos), broadcast_index(&sb, pos))));
        let mut out = Vec::with_capacity(pos_list.len());
        for (ia, ib) in pos_list {
            let v = match (&ca, &cb, op) {
                (None, None, Arith::Mul) => {
                    let acc = self.fresh();
                    self.push(Step::Mul { pairs: vec![(va[ia], vb[ib])], bias: 0, out: acc });
                    self.div(acc, 1 << s)
                }
                (None, None, _) => {
                    let sign = if op == Arith::Sub { -1 } else { 1 };
                    let acc = self.fresh();
                    self.push(Step::Dot { terms: vec![(va[ia], 1), (vb[ib], sign)], bias: 0, out: acc });
                    acc
                }
                (None, Some(c), Arith::Mul) => self.times(va[ia], c.data[ib]),
                (Some(c), None, Arith::Mul) => self.times(vb[ib], c.data[ia]),
                (None, Some(c), _) if self.below_inputs(if op == Arith::Sub { -c.data[ib] } else { c.data[ib] }) => {
                    // x + (−∞) is −∞: an additive attention mask.
                    self.constant(quant(if op == Arith::Sub { -c.data[ib] } else { c.data[ib] }, s))
                }
                (Some(c), None, Arith::Add) if self.below_inputs(c.data[ia]) => self.constant(quant(c.data[ia], s)),
                (None, Some(c), _) => {
                    let k = if op == Arith::Sub { -c.data[ib] } else { c.data[ib] };
                    let acc = self.fresh();
                    self.push(Step::Dot { terms: vec![(va[ia], 1)], bias: quant(k, s), out: acc });
                    acc
                }
                (Some(c), None, _) => {
                    let sign = if op == Arith::Sub { -1 } else { 1 };
                    let acc = self.fresh();
                    self.push(Step::Dot { terms: vec![(vb[ib], sign)], bias: quant(c.data[ia], s), out: acc });
                    acc
                }
                (Some(_), Some(_), _) => bail!("arithmetic on two constants should have been folded"),
            };
            out.push(v);
        }
        Ok(out)
    }

    /// The maximum of a row and each value's difference from it (all ≤ 0).
    fn centred(&mut self, row: &[V]) -> (V, Vec<V>) {
        let m = self.fresh();
        self.push(Step::Max { inputs: row.to_vec(), out: m, exp: None });
        let d = row
            .iter()
            .map(|&v| {
                let out = self.fresh();
                self.push(Step::Dot { terms: vec![(v, 1), (m, -1)], bias: 0, out });
                out
            })
            .collect();
        (m, d)
    }

    /// `ln Σ exp(d_i)` for differences `d_i ≤ 0` from a row's maximum: each
    /// exp by a table, the sum divided by the smallest `k` that brings it
    /// into the table's range, and its log by a table in the same row, plus
    /// `ln k`.
    fn log_sum_exp(&mut self, d: &[V]) -> V {
        let s = self.s.input_scale;
        let e: Vec<V> = d.iter().map(|&v| self.act(v, Activation::Exp)).collect();
        let sum = self.fresh();
        self.push(Step::Dot { terms: e.iter().map(|&v| (v, 1)).collect(), bias: 0, out: sum });
        let half = 1i64 << (self.s.lookup_bits - 1);
        let k = (((d.len() as i64) << s) + half - 2) / (half - 1);
        let scaled = self.div(sum, k);
        let log = self.act(scaled, Activation::Log);
        let out = self.fresh();
        self.push(Step::Dot { terms: vec![(log, 1)], bias: quant((k as f64).ln(), s), out });
        out
    }

    /// For each value of a row, 1 where it is the row's first (or, with
    /// `last`, last) maximum (or minimum), else 0; and the index of that
    /// position. `eq_i` marks the values equal to the extreme (never beyond
    /// it), `found_i` whether one has been seen up to i, and `first_i =
    /// eq_i − found_{i−1}·eq_i`.
    fn arg_extreme(&mut self, row: &[V], min: bool, last: bool) -> (Vec<V>, V) {
        let s = self.s.input_scale;
        let m = self.reduce(if min { Reduce::Min } else { Reduce::Max }, row.to_vec());
        let order: Vec<usize> = if last { (0..row.len()).rev().collect() } else { (0..row.len()).collect() };
        let mut first = vec![0; row.len()];
        let mut found: Option<V> = None;
        for i in order {
            let beyond = if min { self.less(m, row[i]) } else { self.less(row[i], m) };
            let eq = self.one_minus(&[beyond]);
            first[i] = match found {
                None => {
                    found = Some(eq);
                    eq
                }
                Some(f) => {
                    let prod = self.fresh();
                    self.push(Step::Mul { pairs: vec![(f, eq)], bias: 0, out: prod });
                    let both = self.div(prod, 1 << s);
                    let first_here = self.fresh();
                    self.push(Step::Dot { terms: vec![(eq, 1), (both, -1)], bias: 0, out: first_here });
                    let now = self.fresh();
                    self.push(Step::Dot { terms: vec![(f, 1), (first_here, 1)], bias: 0, out: now });
                    found = Some(now);
                    first_here
                }
            };
        }
        let index = self.fresh();
        let terms = first.iter().enumerate().filter(|&(i, _)| i > 0).map(|(i, &v)| (v, i as i64)).collect();
        self.push(Step::Dot { terms, bias: 0, out: index });
        (first, index)
    }

    /// Einsum over one or two inputs: each output element sums, over the
    /// labels the output lacks, the input element (one input), the input
    /// times a constant weight (a dense step), or the product of two runtime
    /// elements (a product step), requantized.
    fn einsum(&mut self, ins: &[NodeId], labels: &[Vec<u8>], out: &[u8], shape: &[usize]) -> Result<Vec<V>> {
        let mut size = [0usize; 256];
        for (&id, l) in ins.iter().zip(labels) {
            for (&c, &n) in l.iter().zip(&self.g.nodes[id].shape) {
                size[c as usize] = n;
            }
        }
        let mut summed: Vec<u8> = Vec::new();
        for &c in labels.iter().flatten() {
            if !out.contains(&c) && !summed.contains(&c) {
                summed.push(c);
            }
        }
        let sum_shape: Vec<usize> = summed.iter().map(|&c| size[c as usize]).collect();
        let konst = |id: NodeId| match &self.g.nodes[id].op {
            Op::Const(t) => Some(t.data.clone()),
            _ => None,
        };
        let consts: Vec<Option<Vec<f64>>> = ins.iter().map(|&id| konst(id)).collect();
        let vals: Vec<Vec<V>> = ins
            .iter()
            .zip(&consts)
            .map(|(&id, c)| if c.is_some() && ins.len() == 2 { Ok(Vec::new()) } else { self.values(id) })
            .collect::<Result<_>>()?;
        let st: Vec<Vec<usize>> = ins.iter().map(|&id| strides(&self.g.nodes[id].shape)).collect();
        let mut positions = Vec::new();
        for_each_index(shape, |pos| positions.push(pos.to_vec()));
        let mut result = Vec::with_capacity(positions.len());
        for pos in positions {
            let mut at = [0usize; 256];
            for (&c, &p) in out.iter().zip(&pos) {
                at[c as usize] = p;
            }
            let mut flat: Vec<Vec<usize>> = vec![Vec::new(); ins.len()];
            for_each_index(&sum_shape, |sp| {
                let mut at = at;
                for (&c, &p) in summed.iter().zip(sp) {
                    at[c as usize] = p;
                }
                for (i, l) in labels.iter().enumerate() {
                    flat[i].push(l.iter().zip(&st[i]).map(|(&c, &s)| at[c as usize] * s).sum());
                }
            });
            let v = match (ins.len(), &consts[..]) {
                (1, _) => {
                    let acc = self.fresh();
                    self.push(Step::Dot {
                        terms: flat[0].iter().map(|&j| (vals[0][j], 1)).collect(),
                        bias: 0,
                        out: acc,
                    });
                    acc
                }
                (_, [Some(w), None]) => {
                    let terms: Vec<(V, f64)> =
                        flat[0].iter().zip(&flat[1]).map(|(&i, &j)| (vals[1][j], w[i])).collect();
                    self.dense(terms.into_iter(), 0.0)
                }
                (_, [None, Some(w)]) => {
                    let terms: Vec<(V, f64)> =
                        flat[0].iter().zip(&flat[1]).map(|(&i, &j)| (vals[0][i], w[j])).collect();
                    self.dense(terms.into_iter(), 0.0)
                }
                _ => {
                    let a = if vals[0].is_empty() { self.values(ins[0])? } else { vals[0].clone() };
                    let b = if vals[1].is_empty() { self.values(ins[1])? } else { vals[1].clone() };
                    let pairs = flat[0].iter().zip(&flat[1]).map(|(&i, &j)| (a[i], b[j])).collect();
                    let acc = self.fresh();
                    self.push(Step::Mul { pairs, bias: 0, out: acc });
                    self.div(acc, 1 << self.s.input_scale)
                }
            };
            result.push(v);
        }
        Ok(result)
    }

    /// The `k` largest (or smallest) values of a row, in order, then their
    /// indices: `k` rounds of [`Self::arg_extreme`], each moving the value
    /// it took to one quantum beyond the row's other extreme, so that it is
    /// never taken again while another remains (ties go to the lower index).
    fn top_k(&mut self, row: &[V], k: usize, largest: bool) -> Vec<V> {
        let s = self.s.input_scale;
        let floor = self.reduce(if largest { Reduce::Min } else { Reduce::Max }, row.to_vec());
        let past = self.fresh();
        self.push(Step::Dot { terms: vec![(floor, 1)], bias: if largest { -1 } else { 1 }, out: past });
        let mut cur = row.to_vec();
        let (mut values, mut indices) = (Vec::with_capacity(k), Vec::with_capacity(k));
        for round in 0..k {
            let (first, index) = self.arg_extreme(&cur, !largest, false);
            // The value taken: Σ first_i · x_i, exact (first_i is 0 or 1).
            let prod = self.fresh();
            self.push(Step::Mul {
                pairs: first.iter().copied().zip(cur.iter().copied()).collect(),
                bias: 0,
                out: prod,
            });
            values.push(self.div(prod, 1 << s));
            indices.push(index);
            if round + 1 == k {
                break;
            }
            cur = cur.iter().zip(&first).map(|(&v, &f)| self.blend(v, f, past)).collect();
        }
        values.extend(indices);
        values
    }

    /// `f(a, b)` for each output position of a broadcast binary op.
    fn pairwise(
        &mut self,
        a: NodeId,
        b: NodeId,
        shape: &[usize],
        mut f: impl FnMut(&mut Self, V, V) -> V,
    ) -> Result<Vec<V>> {
        let (va, vb) = (self.values(a)?, self.values(b)?);
        let (sa, sb) = (self.g.nodes[a].shape.clone(), self.g.nodes[b].shape.clone());
        let mut pos_list = Vec::new();
        for_each_index(shape, |pos| pos_list.push((broadcast_index(&sa, pos), broadcast_index(&sb, pos))));
        Ok(pos_list.into_iter().map(|(ia, ib)| f(self, va[ia], vb[ib])).collect())
    }

    /// `v + flag·(to − v)` for a flag of 0 or 1 at the activation scale:
    /// `to` where the flag is set, `v` elsewhere, exactly.
    fn blend(&mut self, v: V, flag: V, to: V) -> V {
        let gap = self.fresh();
        self.push(Step::Dot { terms: vec![(to, 1), (v, -1)], bias: 0, out: gap });
        let wide = self.fresh();
        self.push(Step::Mul { pairs: vec![(flag, gap)], bias: 0, out: wide });
        let moved = self.div(wide, 1 << self.s.input_scale);
        let out = self.fresh();
        self.push(Step::Dot { terms: vec![(v, 1), (moved, 1)], bias: 0, out });
        out
    }

    /// 1 - Σ vs at the activation scale.
    fn one_minus(&mut self, vs: &[V]) -> V {
        let out = self.fresh();
        self.push(Step::Dot { terms: vs.iter().map(|&v| (v, -1)).collect(), bias: 1 << self.s.input_scale, out });
        out
    }

    /// 1 where a < b, else 0: the sign of floor((a - b) / 2^B), one
    /// range-checked division and one table lookup in its row, exact for
    /// any |a - b| < 2^(2B-1) (the division's range check refuses more).
    fn less(&mut self, a: V, b: V) -> V {
        self.negative(vec![(a, 1), (b, -1)])
    }

    /// 1 where the sum of `terms` is negative, else 0 (as [`Self::less`]).
    fn negative(&mut self, terms: Vec<(V, i64)>) -> V {
        self.negative_offset(terms, 0)
    }

    /// 1 where `bias` plus the sum of `terms` is negative, else 0.
    fn negative_offset(&mut self, terms: Vec<(V, i64)>, bias: i64) -> V {
        let full = 1i64 << self.s.lookup_bits;
        let diff = self.fresh();
        // Offset by half the divisor, so that the rounded division floors.
        self.push(Step::Dot { terms, bias: bias - full / 2, out: diff });
        let q = self.div(diff, full);
        self.act(q, Activation::Negative)
    }

    /// `floor(z / d)` for d > 0, exact: one rounded division of z less half
    /// the divisor, or, for d above the range check's 2^B, nested floor
    /// divisions by its factors (⌊⌊z/f⌋/g⌋ = ⌊z/fg⌋, where nested roundings
    /// would drift); a d with no factors below 2^B is an error at the end
    /// of the compilation, as in [`Self::div`].
    fn floor_div(&mut self, z: V, d: i64) -> V {
        let limit = 1i64 << self.s.lookup_bits;
        if d > limit {
            if let Some(f) = (2..=limit).rev().find(|f| d % f == 0) {
                let part = self.floor_div(z, f);
                return self.floor_div(part, d / f);
            }
        }
        let shifted = self.fresh();
        self.push(Step::Dot { terms: vec![(z, 1)], bias: -(d / 2), out: shifted });
        self.div(shifted, d)
    }

    /// `x` rounded toward zero at the activation scale, exact for any
    /// value the range checks allow: with `a = x·2^s`, the floor of
    /// `(a + [a<0]·(2^s − 1)) / 2^s` (the ceiling for a negative `a`).
    fn trunc(&mut self, v: V) -> V {
        let unit = 1i64 << self.s.input_scale;
        let neg = self.negative(vec![(v, 1)]);
        // Scaled by 2^s once more, so that the offset's coefficient is whole.
        let offset = self.fresh();
        self.push(Step::Dot { terms: vec![(v, unit), (neg, unit - 1)], bias: 0, out: offset });
        let whole = self.floor_div(offset, unit * unit);
        self.rescale_up(whole)
    }

    /// `trunc(a / b)` of whole numbers at the activation scale (ONNX's
    /// integer Div), exact. The divisor's sign moves to the numerator, and
    /// a negative numerator n is offset by |b| − 1, so that the floor of the
    /// quotient truncates: trunc(n/|b|) = floor((n + [n<0]·(|b|−1)) / |b|).
    fn int_div(&mut self, a: V, b: V) -> V {
        let unit = 1i64 << self.s.input_scale;
        if let Some(&q) = self.consts.get(&b) {
            // A constant divisor (a non-zero whole number, checked at import).
            let c = q / unit;
            let neg = self.negative(vec![(a, 1)]);
            let offset = self.fresh();
            self.push(Step::Dot { terms: vec![(a, 1), (neg, c.abs() - 1)], bias: 0, out: offset });
            let whole = self.floor_div(offset, c.abs() * unit);
            let out = self.fresh();
            self.push(Step::Dot { terms: vec![(whole, c.signum() * unit)], bias: 0, out });
            return out;
        }
        let (num, den) = self.sign_to_numerator(a, b);
        let neg = self.negative(vec![(num, 1)]);
        let wide = self.fresh();
        self.push(Step::Mul { pairs: vec![(neg, den)], bias: 0, out: wide });
        let neg_den = self.div(wide, unit);
        let offset = self.fresh();
        self.push(Step::Dot { terms: vec![(num, 1), (neg_den, 1), (neg, -1)], bias: 0, out: offset });
        let whole = self.fresh();
        self.push(Step::DivBy { num: offset, den, mult: 1, out: whole });
        self.rescale_up(whole)
    }

    fn compare(&mut self, c: Cmp, a: V, b: V) -> V {
        match c {
            Cmp::Less => self.less(a, b),
            Cmp::Greater => self.less(b, a),
            Cmp::LessOrEqual => {
                let gt = self.less(b, a);
                self.one_minus(&[gt])
            }
            Cmp::GreaterOrEqual => {
                let lt = self.less(a, b);
                self.one_minus(&[lt])
            }
            Cmp::Equal => {
                let (lt, gt) = (self.less(a, b), self.less(b, a));
                self.one_minus(&[lt, gt])
            }
        }
    }

    /// `floor(a / b)` at the activation scale for a runtime b: the sign of b
    /// moves to the numerator (a product by ±1, exact), and |b| divides it
    /// with a range-checked remainder. |b| must be non-zero and at most
    /// 2^B quanta; a run outside that fails with an error naming the node.
    fn div_dyn(&mut self, a: V, b: V) -> V {
        let (num, den) = self.sign_to_numerator(a, b);
        let out = self.fresh();
        self.push(Step::DivBy { num, den, mult: 1 << self.s.input_scale, out });
        out
    }

    /// `(a·sign(b), |b|)`, so that `a / b` is a division by a positive
    /// divisor: |b| and sign(b) by tables, the product exact.
    fn sign_to_numerator(&mut self, a: V, b: V) -> (V, V) {
        // |b|, at least one quantum: a divisor that rounds to 0 (sqrt(var +
        // eps) of a constant row, as a LayerNorm spelled out computes it) has
        // sign 0, so the quotient is 0 rather than an error.
        let abs = at_least_quantum(Expr::Act(Activation::Abs, Box::new(Expr::X)), self.s.input_scale);
        let table = self.table(Table::Expr(abs));
        let abs = self.lookup(b, table);
        let sign = self.act(b, Activation::Sign);
        let prod = self.fresh();
        self.push(Step::Mul { pairs: vec![(a, sign)], bias: 0, out: prod });
        (self.div(prod, 1 << self.s.input_scale), abs)
    }

    /// `a − b·floor(a / b)`: the whole quotient by a division with a
    /// range-checked remainder (the divisor's sign moved to the numerator,
    /// as in [`Self::div_dyn`]), then one product and one sum, exact.
    fn modulo(&mut self, a: V, b: V) -> V {
        let (num, den) = self.sign_to_numerator(a, b);
        let whole = self.fresh();
        self.push(Step::DivBy { num, den, mult: 1, out: whole });
        let taken = self.fresh();
        self.push(Step::Mul { pairs: vec![(b, whole)], bias: 0, out: taken });
        let out = self.fresh();
        self.push(Step::Dot { terms: vec![(a, 1), (taken, -1)], bias: 0, out });
        out
    }

    /// C's fmod, `sign(a)·(|a| mod |b|)`: the magnitudes by tables, the
    /// whole quotient by a division with a range-checked remainder, the
    /// sign restored by an exact product.
    fn fmod(&mut self, a: V, b: V) -> V {
        let s = self.s.input_scale;
        let (abs_a, abs_b) = (self.act(a, Activation::Abs), self.act(b, Activation::Abs));
        let sign = self.act(a, Activation::Sign);
        let whole = self.fresh();
        self.push(Step::DivBy { num: abs_a, den: abs_b, mult: 1, out: whole });
        let taken = self.fresh();
        self.push(Step::Mul { pairs: vec![(abs_b, whole)], bias: 0, out: taken });
        let rest = self.fresh();
        self.push(Step::Dot { terms: vec![(abs_a, 1), (taken, -1)], bias: 0, out: rest });
        let signed = self.fresh();
        self.push(Step::Mul { pairs: vec![(sign, rest)], bias: 0, out: signed });
        self.div(signed, 1 << s)
    }

    /// `(x - mean) / sqrt(var + eps) · scale + shift` over one group. The
    /// mean (a rounded division) and the deviations carry `t` more bits
    /// than the activation scale, so that rounding the mean costs no
    /// precision where the spread is a few quanta; the denominator is
    /// [`Self::std_dev`] at the same finer scale, and each output a division
    /// with a range-checked remainder whose multiplier carries the scale; a
    /// non-zero shift adds one dense row.
    fn normalize(&mut self, x: &[V], eps: f64, affine: &[(f64, f64)], rms: bool) -> Vec<V> {
        let s = self.s.input_scale;
        let t = self.s.lookup_bits.saturating_sub(s) / 2;
        let n = x.len() as i64;
        // With `rms`, the values themselves are the deviations (no mean).
        let mean = (!rms).then(|| {
            let sum = self.fresh();
            self.push(Step::Dot { terms: x.iter().map(|&v| (v, 1 << t)).collect(), bias: 0, out: sum });
            self.div(sum, n)
        });
        let d: Vec<V> = x
            .iter()
            .map(|&v| {
                let out = self.fresh();
                let mut terms = vec![(v, 1 << t)];
                terms.extend(mean.map(|m| (m, -1)));
                self.push(Step::Dot { terms, bias: 0, out });
                out
            })
            .collect();
        let sq = self.fresh();
        self.push(Step::Mul { pairs: d.iter().map(|&v| (v, v)).collect(), bias: 0, out: sq });
        let den = self.std_dev(sq, n, eps, t);
        d.into_iter()
            .zip(affine)
            .map(|(num, &(scale, shift))| {
                let out = self.fresh();
                self.push(Step::DivBy { num, den, mult: quant(scale, s), out });
                let shift = quant(shift, s);
                if shift == 0 {
                    return out;
                }
                let shifted = self.fresh();
                self.push(Step::Dot { terms: vec![(out, 1)], bias: shift, out: shifted });
                shifted
            })
            .collect()
    }

    /// `sqrt(var + eps)` at scale `s + t` of a group of `n` values whose
    /// squared deviations (at scale `2(s + t)`) sum to `sq`, as precise as
    /// tables allow over the whole range, as a floating-point number would
    /// be: the variance at scale `s` keys a coarse table, and tiers at finer
    /// scales (steps of about B/2 bits, up to `2(s + t)`, where the key is
    /// `sq / n` itself) take over where the variance is small enough for
    /// their tables, each then keeping about B/2 significant bits. Each
    /// tier's flag is the previous tier's flag and its key below the tier's
    /// range; its key is the gated product, so that it stays in its table
    /// when the flag is off. The caller picks `t` at most (B − s)/2, which
    /// keeps the denominator within the division's 2^B.
    fn std_dev(&mut self, sq: V, n: i64, eps: f64, t: u32) -> V {
        let (s, b) = (self.s.input_scale, self.s.lookup_bits);
        let top = 2 * (s + t);
        let tier_fn = |u: u32| {
            let var = Expr::Mul(Box::new(Expr::Const(2f64.powi(s as i32 - u as i32))), Box::new(Expr::X));
            let root = Expr::Act(Activation::StdDev { eps }, Box::new(var));
            at_least_quantum(Expr::Mul(Box::new(Expr::Const(2f64.powi(t as i32))), Box::new(root)), s)
        };
        let mut key = self.div(sq, n << (top - s));
        let coarse = self.table(Table::Expr(tier_fn(s)));
        let mut den = self.lookup(key, coarse);
        let step = (b.saturating_sub(1)).div_ceil(2).max(1);
        let (mut scale, mut flag) = (s, None);
        while scale < top && b >= step + 2 {
            let u = (scale + step).min(top);
            // This tier's table holds keys below 2^(B−1): a previous key
            // below 2^(B−1−(u−scale)) − 1 scales to one.
            let limit = (1i64 << (b - 1 - (u - scale))) - 1;
            let fits = self.negative_offset(vec![(key, 1)], -limit);
            let on = match flag {
                None => fits,
                Some(f) => {
                    let both = self.fresh();
                    self.push(Step::Mul { pairs: vec![(f, fits)], bias: 0, out: both });
                    self.div(both, 1 << s)
                }
            };
            let gated = self.fresh();
            self.push(Step::Mul { pairs: vec![(on, sq)], bias: 0, out: gated });
            key = self.div(gated, n << (top + s - u));
            let table = self.table(Table::Expr(tier_fn(u)));
            let value = self.lookup(key, table);
            let next = self.blend(den, on, value);
            (den, scale, flag) = (next, u, Some(on));
        }
        den
    }

    /// Gather by runtime indices from runtime data: each index element is
    /// made whole (a division by 2^s) and brought into `[0, n)` by a table
    /// of the `n` positions (negative indices wrap; one outside `[-n, n)`
    /// is an error in the integer inference, as for embeddings), then
    /// compared with every position `j` (`[q − j = 0]` by one table, 0 or
    /// 1), and each output is `Σ_j [q = j]·data_j`, one product step.
    fn gather_dyn(
        &mut self,
        data: NodeId,
        indices: NodeId,
        n: usize,
        choices: &[Vec<usize>],
        which: &[usize],
    ) -> Result<Vec<V>> {
        let (data, indices) = (self.values(data)?, self.values(indices)?);
        let mut hits: HashMap<usize, Vec<V>> = HashMap::new();
        let mut out = Vec::with_capacity(choices.len());
        for (choice, &w) in choices.iter().zip(which) {
            if let std::collections::hash_map::Entry::Vacant(slot) = hits.entry(w) {
                slot.insert(self.one_hot(indices[w], n));
            }
            let pairs = hits[&w].iter().zip(choice).map(|(&e, &c)| (e, data[c])).collect();
            let y = self.fresh();
            self.push(Step::Mul { pairs, bias: 0, out: y });
            out.push(y);
        }
        Ok(out)
    }

    /// `[q = j]` (0 or 1, unscaled) for `j` in `[0, n)`, where `q` is the
    /// runtime index made whole and brought into `[0, n)` (negative indices
    /// wrap; others fail the lookup of the positions table).
    fn one_hot(&mut self, index: V, n: usize) -> Vec<V> {
        let positions = self.table(Table::Data { values: (0..n as i64).collect() });
        let is_zero = self.piece((0.0, 0.0), self.quantum(), (0.0, 0.0));
        let whole = self.div(index, 1 << self.s.input_scale);
        let q = self.lookup(whole, positions);
        (0..n as i64)
            .map(|j| {
                let key = self.fresh();
                self.push(Step::Dot { terms: vec![(q, 1)], bias: -j, out: key });
                self.lookup(key, is_zero)
            })
            .collect()
    }

    /// ScatterElements by runtime indices, update by update in order (a
    /// later write wins): each position `j` of the update's row becomes
    /// `cur + [q = j]·(update − cur)`.
    fn scatter_dyn(&mut self, ins: &[NodeId], n: usize, rows: &[Vec<usize>]) -> Result<Vec<V>> {
        let mut cur = self.values(ins[0])?;
        let (indices, updates) = (self.values(ins[1])?, self.values(ins[2])?);
        for (u, row) in rows.iter().enumerate() {
            let hot = self.one_hot(indices[u], n);
            for (&e, &p) in hot.iter().zip(row) {
                let diff = self.fresh();
                self.push(Step::Dot { terms: vec![(updates[u], 1), (cur[p], -1)], bias: 0, out: diff });
                let prod = self.fresh();
                self.push(Step::Mul { pairs: vec![(e, diff)], bias: 0, out: prod });
                let next = self.fresh();
                self.push(Step::Dot { terms: vec![(cur[p], 1), (prod, 1)], bias: 0, out: next });
                cur[p] = next;
            }
        }
        Ok(cur)
    }

    /// Gather from constant `data` (gathered axis first) by the runtime
    /// indices of node `indices`. Each index is made a whole number (a
    /// rounded, range-checked division by the scale); each output is one
    /// lookup of `index · width + column` in a table of the data. The
    /// columns are split over as many tables as it takes for every key,
    /// negative indices included, to lie in the table's range.
    fn gather(&mut self, indices: NodeId, data: &Tensor) -> Result<Vec<V>> {
        let idx = self.values(indices)?;
        let rows = data.shape[0];
        let width = data.len() / rows.max(1);
        let half = 1usize << (self.s.lookup_bits - 1);
        let per = (half / rows.max(1)).min(width);
        if per == 0 {
            bail!(
                "a Gather from {rows} rows needs lookup tables of at least 2·{rows} entries; \
                 raise lookup_bits above {}",
                self.s.lookup_bits
            );
        }
        let scale = self.s.input_scale;
        let tables: Vec<(u16, usize)> = (0..width.div_ceil(per))
            .map(|c| {
                let cols = per.min(width - c * per);
                let values = (0..rows)
                    .flat_map(|r| (0..cols).map(move |j| r * width + c * per + j))
                    .map(|i| quant(data.data[i], scale))
                    .collect();
                (self.table(Table::Data { values }), cols)
            })
            .collect();
        let mut out = Vec::with_capacity(idx.len() * width);
        for &i in &idx {
            let whole = self.div(i, 1 << scale);
            for j in 0..width {
                let (table, cols) = tables[j / per];
                let key = self.fresh();
                self.push(Step::Dot { terms: vec![(whole, cols as i64)], bias: (j % per) as i64, out: key });
                out.push(self.lookup(key, table));
            }
        }
        Ok(out)
    }

    /// One output of a reduction: sums and means as one dot step (and a
    /// rounded division), maxima as one max step, minima as the negated
    /// maximum of the negated values, sums of squares as one product step
    /// rescaled, L1 through the Abs table and L2 through the Sqrt table.
    fn reduce(&mut self, kind: Reduce, vals: Vec<V>) -> V {
        let sum = |q: &mut Self, vals: &[V]| {
            let acc = q.fresh();
            q.push(Step::Dot { terms: vals.iter().map(|&v| (v, 1)).collect(), bias: 0, out: acc });
            acc
        };
        let negate = |q: &mut Self, v: V| {
            let out = q.fresh();
            q.push(Step::Dot { terms: vec![(v, -1)], bias: 0, out });
            out
        };
        let max = |q: &mut Self, inputs: Vec<V>| {
            let out = q.fresh();
            q.push(Step::Max { inputs, out, exp: None });
            out
        };
        let sum_sq = |q: &mut Self, vals: &[V]| {
            let acc = q.fresh();
            q.push(Step::Mul { pairs: vals.iter().map(|&v| (v, v)).collect(), bias: 0, out: acc });
            q.div(acc, 1 << q.s.input_scale)
        };
        match kind {
            Reduce::Sum => sum(self, &vals),
            Reduce::Mean => {
                let acc = sum(self, &vals);
                self.div(acc, vals.len() as i64)
            }
            Reduce::Max => max(self, vals),
            Reduce::Min => {
                let negated: Vec<V> = vals.iter().map(|&v| negate(self, v)).collect();
                let m = max(self, negated);
                negate(self, m)
            }
            Reduce::SumSquare => sum_sq(self, &vals),
            Reduce::L1 => {
                let abs: Vec<V> = vals.iter().map(|&v| self.act(v, Activation::Abs)).collect();
                sum(self, &abs)
            }
            Reduce::Prod => {
                let mut acc = vals[0];
                for &v in &vals[1..] {
                    let prod = self.fresh();
                    self.push(Step::Mul { pairs: vec![(acc, v)], bias: 0, out: prod });
                    acc = self.div(prod, 1 << self.s.input_scale);
                }
                acc
            }
            Reduce::LogSumExp => {
                let (m, d) = self.centred(&vals);
                let log_sum = self.log_sum_exp(&d);
                let out = self.fresh();
                self.push(Step::Dot { terms: vec![(m, 1), (log_sum, 1)], bias: 0, out });
                out
            }
            Reduce::L2 => {
                let sq = sum_sq(self, &vals);
                self.act(sq, Activation::Sqrt)
            }
        }
    }

    fn pool(&mut self, input: NodeId, shape: &[usize], window: &Window, avg: Option<bool>) -> Result<Vec<V>> {
        let x = self.values(input)?;
        let xs = self.g.nodes[input].shape.clone();
        let (h, w) = (xs[2], xs[3]);
        let [kh, kw] = window.kernel;
        let mut out = Vec::new();
        for bc in 0..shape[0] * shape[1] {
            for oy in 0..shape[2] {
                for ox in 0..shape[3] {
                    let mut taps = Vec::new();
                    for ky in 0..kh {
                        for kx in 0..kw {
                            if let Some((iy, ix)) = window_pos(window, oy, ox, ky, kx, h, w) {
                                taps.push(x[(bc * h + iy) * w + ix]);
                            }
                        }
                    }
                    if taps.is_empty() {
                        bail!("a pooling window lies entirely in the padding");
                    }
                    out.push(match avg {
                        None => {
                            let m = self.fresh();
                            self.push(Step::Max { inputs: taps, out: m, exp: None });
                            m
                        }
                        Some(include_pad) => {
                            let count = if include_pad { inside_pads(window, oy, ox, h, w) } else { taps.len() };
                            let acc = self.fresh();
                            self.push(Step::Dot { terms: taps.iter().map(|&v| (v, 1)).collect(), bias: 0, out: acc });
                            self.div(acc, count as i64)
                        }
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Taps of output (oy, ox) inside the input or its pads, not counting the
/// overhang `ceil_mode` adds.
fn inside_pads(win: &Window, oy: usize, ox: usize, h: usize, w: usize) -> usize {
    let extent = [h + win.pads[0] + win.pads[2] - win.overhang[0], w + win.pads[1] + win.pads[3] - win.overhang[1]];
    let along = |d: usize, o: usize| {
        (0..win.kernel[d]).filter(|&k| o * win.stride[d] + k * win.dilation[d] < extent[d]).count()
    };
    along(0, oy) * along(1, ox)
}

/// Input position read by kernel tap (ky, kx) of output (oy, ox), or `None`
/// when it falls in the padding.
fn window_pos(win: &Window, oy: usize, ox: usize, ky: usize, kx: usize, h: usize, w: usize) -> Option<(usize, usize)> {
    let iy = (oy * win.stride[0] + ky * win.dilation[0]).checked_sub(win.pads[0])?;
    let ix = (ox * win.stride[1] + kx * win.dilation[1]).checked_sub(win.pads[1])?;
    (iy < h && ix < w).then_some((iy, ix))
}
