//! LSTM, GRU and RNN (forward, reverse or bidirectional), unrolled over the
//! sequence: each step is one dense layer over the step's input and the
//! hidden state side by side, table functions for the gates and element-wise
//! products for the state updates.

use anyhow::{bail, ensure, Result};
use tract_onnx::pb::NodeProto;

use super::{attr, attr_i, attr_s, Importer, Val};
use crate::graph::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
    Rnn,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }

    /// The functions of a direction: gate, candidate and (LSTM) output.
    fn default_functions(self) -> &'static [&'static str] {
        match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        }
    }
}

/// A recurrent activation by its ONNX name, with its alpha and beta.
fn function(name: &str, alpha: Option<f64>, beta: Option<f64>) -> Result<Activation> {
    Ok(match name {
        "Sigmoid" => Activation::Sigmoid,
        "Tanh" => Activation::Tanh,
        "Relu" => Activation::Relu,
        "HardSigmoid" => Activation::HardSigmoid { alpha: alpha.unwrap_or(0.2), beta: beta.unwrap_or(0.5) },
        "LeakyRelu" => Activation::LeakyRelu { alpha: alpha.unwrap_or(0.01) },
        "Elu" => Activation::Elu { alpha: alpha.unwrap_or(1.0) },
        "ThresholdedRelu" => Activation::ThresholdedRelu { alpha: alpha.unwrap_or(1.0) },
        "Softsign" => Activation::Softsign,
        "Softplus" => Activation::Softplus,
        other => bail!("recurrent activation {other} is not supported"),
    })
}

/// A node's cell options: the clip of the gates' pre-activations, LSTM's
/// coupled input and forget gates, and its peepholes (i, o, f) for the
/// direction at hand.
struct Options {
    clip: Option<f64>,
    input_forget: bool,
    peep: Option<[Val; 3]>,
}

/// One direction's parameters, as dense layers over `[x_t, h]`.
struct Weights {
    /// `[gates·H, features + H]`: W and R side by side, one row per gate unit.
    joint: Tensor,
    /// Wb + Rb per gate unit.
    bias: Vec<f64>,
    /// The rows computed from `[x_t, h]` at once: every gate, but for a GRU
    /// only z and r (its candidate reads `r ⊙ h` or needs R apart).
    gates: Tensor,
    gates_bias: Vec<f64>,
    /// GRU with linear_before_reset: the candidate's R part on its own.
    w_only: Option<(Tensor, Vec<f64>, Tensor, Vec<f64>)>,
}

impl Importer {
    /// Translates an LSTM, GRU or RNN node and sets its outputs (Y, Y_h and,
    /// for an LSTM, Y_c).
    pub(super) fn recurrent(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        let op = node.op_type.as_str();
        let cell = match op {
            "LSTM" => Cell::Lstm,
            "GRU" => Cell::Gru,
            _ => Cell::Rnn,
        };
        let x = self.input(node, 0)?;
        let xs = self.shape(&x);
        ensure!(xs.len() == 3, "{op} input of shape {xs:?} (it needs [sequence, batch, features])");
        // Layout 1 (batch first): inputs and outputs have their first two
        // axes swapped; the cell runs in layout 0 between transposes.
        let batch_first = match attr_i(node, "layout", 0) {
            0 => false,
            1 => true,
            l => bail!("{op} layout {l} (0 or 1 are defined)"),
        };
        let x = if batch_first { self.swap01(x, &format!("{name}.x_seq_first"))? } else { x };
        let xs = self.shape(&x);
        let clip = match attr(node, "clip") {
            Some(a) if a.f > 0.0 => Some(f64::from(a.f)),
            Some(a) => bail!("{op} clip {} is not positive", a.f),
            None => None,
        };
        let input_forget = attr_i(node, "input_forget", 0) != 0;
        let (seq, batch, feat) = (xs[0], xs[1], xs[2]);
        let w = self.const_input(node, 1, "W")?;
        let r = self.const_input(node, 2, "R")?;
        let dirs = match attr_s(node, "direction").as_deref().unwrap_or("forward") {
            "forward" | "reverse" => 1,
            "bidirectional" => 2,
            d => bail!("{op} direction {d}"),
        };
        let reverse = attr_s(node, "direction").as_deref() == Some("reverse");
        let g = cell.gates();
        ensure!(r.shape.len() == 3, "{op} R of shape {:?}", r.shape);
        let hidden = attr_i(node, "hidden_size", r.shape[2] as i64) as usize;
        ensure!(
            w.shape == [dirs, g * hidden, feat] && r.shape == [dirs, g * hidden, hidden],
            "{op} W {:?} and R {:?} do not match {dirs} direction(s), hidden size {hidden} and {feat} features",
            w.shape,
            r.shape
        );
        let b = match self.opt_input(node, 3)? {
            None => Tensor::new(vec![dirs, 2 * g * hidden], vec![0.0; dirs * 2 * g * hidden]),
            Some(Val::Const(t)) if t.shape == [dirs, 2 * g * hidden] => t,
            Some(_) => bail!("{op} bias B must be a constant of shape [{dirs}, {}]", 2 * g * hidden),
        };
        if let Some(lens) = self.opt_input(node, 4)? {
            let Val::Const(t) = lens else { bail!("{op} with runtime sequence_lens is not supported") };
            ensure!(t.data.iter().all(|&l| l as usize == seq), "{op} with sequence_lens other than {seq}");
        }
        let peepholes = match self.opt_input(node, 7)? {
            None => None,
            Some(Val::Const(t)) if t.data.len() == dirs * 3 * hidden => Some(t),
            Some(_) => bail!("LSTM peepholes P must be a constant of shape [{dirs}, {}]", 3 * hidden),
        };
        let names: Vec<String> = match attr(node, "activations") {
            Some(a) => a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
            None => (0..dirs).flat_map(|_| cell.default_functions().iter().map(|s| s.to_string())).collect(),
        };
        let per_dir = cell.default_functions().len();
        ensure!(names.len() == per_dir * dirs, "{op} needs {} activations, got {}", per_dir * dirs, names.len());
        let alphas = attr(node, "activation_alpha").map(|a| a.floats.clone()).unwrap_or_default();
        let betas = attr(node, "activation_beta").map(|a| a.floats.clone()).unwrap_or_default();
        let functions: Vec<Activation> = names
            .iter()
            .enumerate()
            .map(|(i, n)| function(n, alphas.get(i).map(|&v| v as f64), betas.get(i).map(|&v| v as f64)))
            .collect::<Result<_>>()?;
        let linear_before_reset = attr_i(node, "linear_before_reset", 0) != 0;

        let mut ys = Vec::new();
        let mut last_h = Vec::new();
        let mut last_c = Vec::new();
        for d in 0..dirs {
            let weights = joint_weights(&w, &r, &b, d, cell, hidden, linear_before_reset);
            let h0 = self.initial(node, 5, d, batch, hidden, batch_first)?;
            let c0 = self.initial(node, 6, d, batch, hidden, batch_first)?;
            let peep = peepholes.as_ref().map(|p| {
                let part = |k: usize| {
                    let at = (d * 3 + k) * hidden;
                    Val::Const(Tensor::new(vec![1, hidden], p.data[at..at + hidden].to_vec()))
                };
                [part(0), part(1), part(2)]
            });
            let options = Options { clip, input_forget, peep };
            let order: Vec<usize> = if reverse || d == 1 { (0..seq).rev().collect() } else { (0..seq).collect() };
            let f = &functions[d * per_dir..(d + 1) * per_dir];
            let (mut h, mut c) = (h0, c0);
            let mut outs = vec![None; seq];
            for t in order {
                let at = format!("{name}.d{d}.t{t}");
                let x_t = self.take(x.clone(), &xs, 0, t, 1, &format!("{at}.x"))?;
                let x_t = self.reshape(x_t, vec![batch, feat], &format!("{at}.x2"))?;
                let (nh, nc) = self.step(cell, &weights, f, &options, x_t, h, c, hidden, &at)?;
                outs[t] = Some(nh.clone());
                h = nh;
                c = nc;
            }
            ys.push(outs.into_iter().map(|o| o.expect("every step ran")).collect::<Vec<_>>());
            last_h.push(h);
            last_c.push(c);
        }
        // Y: [seq, dirs, batch, H]; Y_h and Y_c: [dirs, batch, H].
        let mut steps = Vec::new();
        // Y is indexed by time, then direction: the loop mirrors that.
        #[allow(clippy::needless_range_loop)]
        for t in 0..seq {
            let per_dir: Vec<Val> = (0..dirs)
                .map(|d| self.reshape(ys[d][t].clone(), vec![1, 1, batch, hidden], &format!("{name}.y.d{d}.t{t}")))
                .collect::<Result<_>>()?;
            steps.push(self.cat(per_dir, 1, &format!("{name}.y.t{t}"))?);
        }
        let mut outputs = [
            Some(self.cat(steps, 0, &format!("{name}.y"))?),
            Some(self.stack_dirs(last_h, batch, hidden, &format!("{name}.y_h"))?),
            (cell == Cell::Lstm).then(|| self.stack_dirs(last_c, batch, hidden, &format!("{name}.y_c"))).transpose()?,
        ];
        if batch_first {
            // Y to [batch, seq, dirs, H]; Y_h and Y_c to [batch, dirs, H].
            let y = outputs[0].take().expect("Y is always built");
            outputs[0] = Some(self.transpose(y, &[2, 0, 1, 3], &format!("{name}.y_batch_first"))?);
            for (k, out) in outputs.iter_mut().enumerate().skip(1) {
                if let Some(v) = out.take() {
                    *out = Some(self.swap01(v, &format!("{name}.state{k}_batch_first"))?);
                }
            }
        }
        for (out, v) in node.output.iter().zip(outputs) {
            if let (false, Some(v)) = (out.is_empty(), v) {
                self.vals.insert(out.clone(), v);
            }
        }
        Ok(())
    }

    /// The first two axes of a rank-3 value swapped (layout 1 to 0 and back).
    fn swap01(&mut self, v: Val, name: &str) -> Result<Val> {
        self.transpose(v, &[1, 0, 2], name)
    }

    /// initial_h or initial_c of direction `d`, or zeros.
    fn initial(
        &mut self,
        node: &NodeProto,
        i: usize,
        d: usize,
        batch: usize,
        hidden: usize,
        batch_first: bool,
    ) -> Result<Val> {
        match self.opt_input(node, i)? {
            None => Ok(Val::Const(Tensor::new(vec![batch, hidden], vec![0.0; batch * hidden]))),
            Some(v) => {
                let s = self.shape(&v);
                ensure!(s.len() == 3, "initial state of shape {s:?}");
                let v = if batch_first { self.swap01(v, &format!("{}.init{i}.dirs_first", node.name))? } else { v };
                let s = self.shape(&v);
                ensure!(s[1..] == [batch, hidden], "initial state of shape {s:?}");
                let one = self.take(v, &s, 0, d, 1, &format!("{}.init{i}", node.name))?;
                self.reshape(one, vec![batch, hidden], &format!("{}.init{i}.2d", node.name))
            }
        }
    }

    /// One step of a cell: the new hidden state (and, for an LSTM, cell state).
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        cell: Cell,
        w: &Weights,
        f: &[Activation],
        opt: &Options,
        x_t: Val,
        h: Val,
        c: Val,
        hidden: usize,
        at: &str,
    ) -> Result<(Val, Val)> {
        let xh = self.cat(vec![x_t.clone(), h.clone()], 1, &format!("{at}.xh"))?;
        let gates = self.dense(xh, &w.gates, &w.gates_bias, &format!("{at}.gates"))?;
        let gs = self.shape(&gates);
        // A gate's pre-activation, with a peephole term `p ⊙ state` added.
        let pre = |imp: &mut Self, k: usize, peep: Option<(&Val, &Val)>, what: &str| -> Result<Val> {
            let pre = imp.take(gates.clone(), &gs, 1, k * hidden, hidden, &format!("{at}.{what}.pre"))?;
            match peep {
                None => Ok(pre),
                Some((p, state)) => {
                    let seen = imp.binary(Arith::Mul, state.clone(), p.clone(), &format!("{at}.{what}.peep"))?;
                    imp.binary(Arith::Add, pre, seen, &format!("{at}.{what}.pre_peep"))
                }
            }
        };
        match cell {
            Cell::Rnn => {
                let p = pre(self, 0, None, "h")?;
                Ok((self.activate(p, f[0], opt, &format!("{at}.h"))?, c))
            }
            Cell::Lstm => {
                // ONNX orders the gates i, o, f, c and the peepholes i, o, f;
                // o's peephole reads the new cell state.
                let peep = |k: usize| opt.peep.as_ref().map(|p| &p[k]);
                let p = pre(self, 0, peep(0).map(|p| (p, &c)), "i")?;
                let i = self.activate(p, f[0], opt, &format!("{at}.i"))?;
                let fg = if opt.input_forget {
                    self.binary(Arith::Sub, super::scalar(1.0), i.clone(), &format!("{at}.f"))?
                } else {
                    let p = pre(self, 2, peep(2).map(|p| (p, &c)), "f")?;
                    self.activate(p, f[0], opt, &format!("{at}.f"))?
                };
                let p = pre(self, 3, None, "g")?;
                let cand = self.activate(p, f[1], opt, &format!("{at}.g"))?;
                let kept = self.binary(Arith::Mul, fg, c, &format!("{at}.kept"))?;
                let new = self.binary(Arith::Mul, i, cand, &format!("{at}.new"))?;
                let c = self.binary(Arith::Add, kept, new, &format!("{at}.c"))?;
                let p = pre(self, 1, peep(1).map(|p| (p, &c)), "o")?;
                let o = self.activate(p, f[0], opt, &format!("{at}.o"))?;
                let hc = self.apply(c.clone(), f[2], &format!("{at}.hc"))?;
                let h = self.binary(Arith::Mul, o, hc, &format!("{at}.h"))?;
                Ok((h, c))
            }
            Cell::Gru => {
                let p = pre(self, 0, None, "z")?;
                let z = self.activate(p, f[0], opt, &format!("{at}.z"))?;
                let p = pre(self, 1, None, "r")?;
                let r = self.activate(p, f[0], opt, &format!("{at}.r"))?;
                let cand_pre = match &w.w_only {
                    // h~ = g(Wh·x + Wbh + r ⊙ (Rh·h + Rbh))
                    Some((wh, wbh, rh, rbh)) => {
                        let wx = self.dense(x_t, wh, wbh, &format!("{at}.wx"))?;
                        let rhh = self.dense(h.clone(), rh, rbh, &format!("{at}.rh"))?;
                        let gated = self.binary(Arith::Mul, r, rhh, &format!("{at}.rgate"))?;
                        self.binary(Arith::Add, wx, gated, &format!("{at}.cand.pre"))?
                    }
                    // h~ = g(Wh·x + Rh·(r ⊙ h) + Wbh + Rbh)
                    None => {
                        let rh = self.binary(Arith::Mul, r, h.clone(), &format!("{at}.rh"))?;
                        let xrh = self.cat(vec![x_t, rh], 1, &format!("{at}.xrh"))?;
                        let (wc, bc) = candidate_rows(&w.joint, &w.bias, hidden);
                        self.dense(xrh, &wc, &bc, &format!("{at}.cand.pre"))?
                    }
                };
                let cand = self.activate(cand_pre, f[1], opt, &format!("{at}.cand"))?;
                // h = (1 - z) ⊙ h~ + z ⊙ h = h~ + z ⊙ (h - h~)
                let diff = self.binary(Arith::Sub, h, cand.clone(), &format!("{at}.diff"))?;
                let zd = self.binary(Arith::Mul, z, diff, &format!("{at}.zdiff"))?;
                Ok((self.binary(Arith::Add, cand, zd, &format!("{at}.h"))?, c))
            }
        }
    }

    /// A gate's activation, of its pre-activation clipped to ±clip where
    /// the node sets one (one table: the clip fuses into the function).
    fn activate(&mut self, pre: Val, act: Activation, opt: &Options, name: &str) -> Result<Val> {
        let pre = match opt.clip {
            Some(c) => self.apply(pre, Activation::Clip { lo: -c, hi: c }, &format!("{name}.clip"))?,
            None => pre,
        };
        self.apply(pre, act, name)
    }

    /// Final states of each direction as `[dirs, batch, H]`.
    fn stack_dirs(&mut self, states: Vec<Val>, batch: usize, hidden: usize, name: &str) -> Result<Val> {
        let parts: Vec<Val> = states
            .into_iter()
            .enumerate()
            .map(|(d, v)| self.reshape(v, vec![1, batch, hidden], &format!("{name}.d{d}")))
            .collect::<Result<_>>()?;
        self.cat(parts, 0, name)
    }
}

/// Direction `d`'s W and R side by side, one row per gate unit, with the
/// summed biases. ONNX orders the gates iofc (LSTM), zrh (GRU).
fn joint_weights(
    w: &Tensor,
    r: &Tensor,
    b: &Tensor,
    d: usize,
    cell: Cell,
    hidden: usize,
    linear_before_reset: bool,
) -> Weights {
    let (rows, feat) = (w.shape[1], w.shape[2]);
    let width = feat + hidden;
    let mut joint = Vec::with_capacity(rows * width);
    for j in 0..rows {
        joint.extend_from_slice(&w.data[(d * rows + j) * feat..(d * rows + j + 1) * feat]);
        joint.extend_from_slice(&r.data[(d * rows + j) * hidden..(d * rows + j + 1) * hidden]);
    }
    let bd = &b.data[d * 2 * rows..(d + 1) * 2 * rows];
    let bias: Vec<f64> = (0..rows).map(|j| bd[j] + bd[rows + j]).collect();
    let w_only = (cell == Cell::Gru && linear_before_reset).then(|| {
        let cand = 2 * hidden..3 * hidden;
        let wh: Vec<f64> =
            cand.clone().flat_map(|j| w.data[(d * rows + j) * feat..(d * rows + j + 1) * feat].to_vec()).collect();
        let rh: Vec<f64> =
            cand.clone().flat_map(|j| r.data[(d * rows + j) * hidden..(d * rows + j + 1) * hidden].to_vec()).collect();
        (
            Tensor::new(vec![hidden, feat], wh),
            cand.clone().map(|j| bd[j]).collect(),
            Tensor::new(vec![hidden, hidden], rh),
            cand.map(|j| bd[rows + j]).collect(),
        )
    });
    let gate_rows = if cell == Cell::Gru { 2 * hidden } else { rows };
    let gates = Tensor::new(vec![gate_rows, width], joint[..gate_rows * width].to_vec());
    let gates_bias = bias[..gate_rows].to_vec();
    Weights { joint: Tensor::new(vec![rows, width], joint), bias, gates, gates_bias, w_only }
}

/// The GRU candidate's rows of the joint weight and bias.
fn candidate_rows(joint: &Tensor, bias: &[f64], hidden: usize) -> (Tensor, Vec<f64>) {
    let width = joint.shape[1];
    let data = joint.data[2 * hidden * width..3 * hidden * width].to_vec();
    (Tensor::new(vec![hidden, width], data), bias[2 * hidden..3 * hidden].to_vec())
}
