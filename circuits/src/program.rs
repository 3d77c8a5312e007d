//! The quantized model as a flat program of arithmetic steps over integer
//! values. The same program drives exact integer inference (the witness) and
//! the circuit layout, so the two cannot disagree about what is computed.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::graph::{Activation, Elem, Expr};

/// Index of a value (one scalar activation) in the program.
pub type V = u32;

/// Quantization and layout settings of a compiled model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Activations are integers `round(x * 2^input_scale)`.
    pub input_scale: u32,
    /// Weights are integers `round(w * 2^param_scale)`.
    pub param_scale: u32,
    /// Lookup tables hold `2^lookup_bits` rows; activations entering a
    /// nonlinearity must lie in `[-2^(lookup_bits-1), 2^(lookup_bits-1))`.
    pub lookup_bits: u32,
    /// Multiply-accumulates per row of the dense gate.
    pub lanes: usize,
    /// Expose the model input as public instances (private by default).
    pub public_input: bool,
    /// Nodes whose table functions take inputs over the whole proven range
    /// (`2·lookup_bits` signed bits) instead of the table's: a few rows per
    /// value more (see `wide.rs`). `"*"` widens every table function.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wide_nodes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { input_scale: 7, param_scale: 7, lookup_bits: 14, lanes: 8, public_input: false, wide_nodes: vec![] }
    }
}

impl Settings {
    /// Settings from their JSON (as `zkfarm calibrate` writes them): blank
    /// text means the defaults. The result is validated.
    pub fn from_json(text: &str) -> Result<Self> {
        let s: Settings = if text.trim().is_empty() {
            Settings::default()
        } else {
            serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("the settings are not valid zkfarm settings JSON: {e}"))?
        };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=16).contains(&self.input_scale) || !(1..=16).contains(&self.param_scale) {
            bail!(
                "scales must be between 1 and 16 bits (input_scale {}, param_scale {})",
                self.input_scale,
                self.param_scale
            );
        }
        if !(6..=20).contains(&self.lookup_bits) {
            bail!("lookup_bits must be between 6 and 20, got {}", self.lookup_bits);
        }
        if self.param_scale > self.lookup_bits || self.input_scale > self.lookup_bits {
            bail!("scales must not exceed lookup_bits ({})", self.lookup_bits);
        }
        if !(8..=64).contains(&self.lanes) || !self.lanes.is_multiple_of(2) {
            bail!("lanes must be an even number between 8 and 64, got {}", self.lanes);
        }
        if self.wide_nodes.iter().any(|n| n.is_empty()) {
            bail!("wide_nodes holds an empty node name");
        }
        Ok(())
    }

    /// Whether the table functions of node `name` are widened.
    pub fn is_wide(&self, name: &str) -> bool {
        self.wide_nodes.iter().any(|n| n == "*" || n == name)
    }
}

/// One arithmetic step. Every step's outputs are fully constrained by the
/// circuit given its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// A model input element, range-checked to `2 * lookup_bits` signed bits.
    Input { out: V },
    /// `out = bias + sum(x * w)` with constant weights.
    Dot { terms: Vec<(V, i64)>, bias: i64, out: V },
    /// `out = bias + sum(a * b)` over runtime values.
    Mul { pairs: Vec<(V, V)>, bias: i64, out: V },
    /// `out = floor((input + divisor/2) / divisor)`: rounded division by a
    /// constant, with the quotient range-checked. When `act` is set, the
    /// same row also applies a lookup nonlinearity to the quotient.
    Div { input: V, divisor: i64, out: V, act: Option<(u16, V)> },
    /// `out = table(input)`.
    Act { input: V, table: u16, out: V },
    /// `out = max(inputs)`; with `exp`, also `exp[i] = expneg(out - inputs[i])`.
    Max { inputs: Vec<V>, out: V, exp: Option<Vec<V>> },
    /// `out = floor(num * mult / den)` with a runtime denominator.
    DivBy { num: V, den: V, mult: i64, out: V },
}

impl Step {
    /// Advice cells this step assigns (the tamper hook indexes them).
    pub fn advice_cells(&self, lanes: usize) -> usize {
        match self {
            Step::Input { .. } => 3,
            Step::Dot { terms, .. } => terms.len() + self.rows(lanes),
            Step::Mul { pairs, .. } => 2 * pairs.len() + self.rows(lanes),
            Step::Div { act, .. } => 5 + act.is_some() as usize,
            Step::Act { .. } => 2,
            Step::Max { inputs, exp, .. } => inputs.len() * (5 + exp.is_some() as usize),
            Step::DivBy { .. } => 6,
        }
    }

    /// Rows this step occupies in the circuit.
    pub fn rows(&self, lanes: usize) -> usize {
        match self {
            Step::Dot { terms, .. } => terms.len().div_ceil(lanes).max(1),
            Step::Mul { pairs, .. } => pairs.len().div_ceil(lanes / 2).max(1),
            Step::Max { inputs, .. } => inputs.len(),
            Step::Input { .. } | Step::Div { .. } | Step::Act { .. } | Step::DivBy { .. } => 1,
        }
    }
}

/// A compiled model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub settings: Settings,
    pub num_values: usize,
    /// Each step with the index of the graph node it came from.
    pub steps: Vec<(Step, u32)>,
    /// Graph node names and op kinds, for errors and `inspect`.
    pub node_names: Vec<String>,
    pub node_kinds: Vec<String>,
    pub inputs: Vec<Vec<V>>,
    pub input_shapes: Vec<Vec<usize>>,
    /// Element types of the inputs; empty when every input is a float.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_elems: Vec<Elem>,
    pub outputs: Vec<Vec<V>>,
    pub output_shapes: Vec<Vec<usize>>,
    /// Lookup tables: nonlinearities and gathered constants.
    pub tables: Vec<Table>,
    /// Output scale of the softmax exponential table, when a softmax is used.
    pub exp_scale: Option<u32>,
    /// Where the circuit computes less precisely than its scale allows
    /// (widened table functions cut at the table's edge), for `inspect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precision_notes: Vec<String>,
    /// The node of each table function looked up in the row of the
    /// requantization before it, by its output value, so that an error
    /// names that node; not part of the circuit.
    #[serde(skip)]
    pub fused_nodes: std::collections::HashMap<V, u32>,
}

/// A value entering a table function outside the table's range, at a node
/// whose table functions are not widened: `calibrate` widens such nodes.
#[derive(Debug, thiserror::Error)]
#[error(
    "input {value} of node `{node}` ({kind}) is outside the lookup table range [{lo}, {hi}); \
     lower input_scale or raise lookup_bits (see `zkfarm calibrate`), or, for an element-wise \
     function, add \"{node}\" to wide_nodes"
)]
pub struct OutsideTable {
    pub node: String,
    pub kind: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// One lookup table: each key `u` in `[-2^(B-1), 2^(B-1))` maps to one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Table {
    /// A function of the fixed-point value `u / 2^scale`.
    Fn(Activation),
    /// A composed element-wise function of `u / 2^scale`.
    Expr(Expr),
    /// Constants by key: `values[u]` for `u` in `[0, n)` and `values[u + n]`
    /// for `u` in `[-n, 0)` (ONNX's negative indices), 0 elsewhere.
    Data { values: Vec<i64> },
}

impl Table {
    /// The table's value at key `u`.
    pub fn value(&self, u: i64, scale: u32) -> i64 {
        match self {
            Table::Fn(act) => table_value(act, u, scale),
            Table::Expr(e) => {
                let s = (1u64 << scale) as f64;
                saturate((e.eval(u as f64 / s) * s).round())
            }
            Table::Data { values } => {
                let n = values.len() as i64;
                match u {
                    u if (0..n).contains(&u) => values[u as usize],
                    u if (-n..0).contains(&u) => values[(u + n) as usize],
                    _ => 0,
                }
            }
        }
    }
}

impl Table {
    /// The table's function at key `u` before rounding, in quanta, where it
    /// is a finite number inside the table's limits; the entry elsewhere.
    pub fn unrounded(&self, u: i64, scale: u32) -> f64 {
        let s = (1u64 << scale) as f64;
        let v = match self {
            Table::Fn(act) => act.eval(u as f64 / s) * s,
            Table::Expr(e) => e.eval(u as f64 / s) * s,
            Table::Data { .. } => f64::NAN,
        };
        if v.is_finite() && v.abs() <= TABLE_LIMIT as f64 {
            v
        } else {
            self.value(u, scale) as f64
        }
    }
}

/// Signed fixed-point evaluation of a table nonlinearity at integer `x`.
pub fn table_value(act: &Activation, x: i64, scale: u32) -> i64 {
    let s = (1u64 << scale) as f64;
    let v = saturate((act.eval(x as f64 / s) * s).round());
    match act {
        // A divisor: the smallest one is one quantum, not zero.
        Activation::StdDev { .. } => v.max(1),
        _ => v,
    }
}

/// Largest magnitude a table entry takes: a function value beyond it (e^x
/// for large x, 1/x near zero, ±∞) is cut to it, and one that is not a
/// number (log of a negative) is 0. 2^40 keeps every later step far inside
/// [`VALUE_LIMIT`].
pub const TABLE_LIMIT: i64 = 1 << 40;

/// A rounded function value as a table entry.
pub fn saturate(v: f64) -> i64 {
    if v.is_nan() {
        0
    } else {
        v.clamp(-(TABLE_LIMIT as f64), TABLE_LIMIT as f64) as i64
    }
}

/// The softmax table: `round(exp(-u / 2^scale) * 2^exp_scale)`.
pub fn expneg_value(u: i64, scale: u32, exp_scale: u32) -> i64 {
    ((-(u as f64) / (1u64 << scale) as f64).exp() * (1u64 << exp_scale) as f64).round() as i64
}

/// The values of every step, as computed by exact integer inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Witness {
    pub values: Vec<i64>,
}

/// Largest magnitude a value may reach; far below the field modulus, so that
/// every constraint holds over the integers and not only modulo p.
const VALUE_LIMIT: i128 = 1 << 100;

impl Program {
    pub fn scale(&self) -> u32 {
        self.settings.input_scale
    }

    /// Rows used by the steps (without lookup tables).
    pub fn step_rows(&self) -> usize {
        self.steps.iter().map(|(s, _)| s.rows(self.settings.lanes)).sum()
    }

    /// Number of public instances: outputs, then inputs when public.
    pub fn num_instances(&self) -> usize {
        let outs: usize = self.outputs.iter().map(Vec::len).sum();
        let ins: usize = if self.settings.public_input { self.inputs.iter().map(Vec::len).sum() } else { 0 };
        outs + ins
    }

    /// Quantizes float inputs (one flat array per model input).
    pub fn quantize_inputs(&self, inputs: &[Vec<f64>]) -> Result<Vec<Vec<i64>>> {
        if inputs.len() != self.inputs.len() {
            bail!("the model takes {} input tensor(s) but {} were given", self.inputs.len(), inputs.len());
        }
        let s = (1u64 << self.scale()) as f64;
        let limit = (1i64 << (2 * self.settings.lookup_bits - 1)) as f64;
        let mut out = Vec::new();
        for (i, (data, shape)) in inputs.iter().zip(&self.input_shapes).enumerate() {
            let n: usize = shape.iter().product();
            if data.len() != n {
                bail!("input {i} has {} values but the model expects shape {shape:?} ({n} values)", data.len());
            }
            let elem = self.input_elems.get(i).copied().unwrap_or_default();
            let mut q = Vec::with_capacity(n);
            for (j, &x) in data.iter().enumerate() {
                if !x.is_finite() {
                    bail!("input {i} value {j} is {x}; inputs must be finite numbers");
                }
                match elem {
                    Elem::Int if x.fract() != 0.0 => {
                        bail!("input {i} value {j} is {x}; the model's input {i} holds integers")
                    }
                    Elem::Bool if x != 0.0 && x != 1.0 => {
                        bail!("input {i} value {j} is {x}; the model's input {i} holds booleans (0 or 1)")
                    }
                    _ => {}
                }
                let v = (x * s).round();
                if v.abs() >= limit {
                    bail!("input {i} value {j} = {x} is outside the quantized range ±{}", limit / s);
                }
                q.push(v as i64);
            }
            out.push(q);
        }
        Ok(out)
    }

    /// Exact integer inference: evaluates every step on quantized inputs.
    pub fn run(&self, inputs: &[Vec<f64>]) -> Result<Witness> {
        let q = self.quantize_inputs(inputs)?;
        let mut vals = vec![0i64; self.num_values];
        for (ids, data) in self.inputs.iter().zip(&q) {
            for (&v, &x) in ids.iter().zip(data) {
                vals[v as usize] = x;
            }
        }
        let b = self.settings.lookup_bits;
        let full = 1i128 << b;
        let qlimit = 1i128 << (2 * b - 1);
        let scale = self.scale();
        for (step, node) in &self.steps {
            let node = *node as usize;
            let at = || format!("node `{}` ({})", self.node_names[node], self.node_kinds[node]);
            let get = |vals: &[i64], v: &V| vals[*v as usize] as i128;
            let check = |x: i128| -> Result<i64> {
                if x.abs() >= VALUE_LIMIT {
                    bail!("value {x} overflows at {}", at());
                }
                Ok(x as i64)
            };
            match step {
                Step::Input { .. } => {}
                Step::Dot { terms, bias, out } => {
                    let s = terms.iter().map(|(v, w)| get(&vals, v) * *w as i128).sum::<i128>() + *bias as i128;
                    vals[*out as usize] = check(s)?;
                }
                Step::Mul { pairs, bias, out } => {
                    let s = pairs.iter().map(|(a, b)| get(&vals, a) * get(&vals, b)).sum::<i128>() + *bias as i128;
                    vals[*out as usize] = check(s)?;
                }
                Step::Div { input, divisor, out, act } => {
                    let d = *divisor as i128;
                    let qv = (get(&vals, input) + d / 2).div_euclid(d);
                    if qv < -qlimit || qv >= qlimit {
                        bail!(
                            "value {} at {} is outside the range-checked interval ±{} (2^{} at scale {scale}); \
                             lower the scales or raise lookup_bits (see `zkfarm calibrate`)",
                            qv as f64 / (1u64 << scale) as f64,
                            at(),
                            qlimit as f64 / (1u64 << scale) as f64,
                            2 * b - 1
                        );
                    }
                    vals[*out as usize] = qv as i64;
                    if let Some((t, o)) = act {
                        let act_node = self.fused_nodes.get(o).map_or(node, |&n| n as usize);
                        let act_at = || format!("node `{}` ({})", self.node_names[act_node], self.node_kinds[act_node]);
                        vals[*o as usize] = self.lookup(*t, qv, act_node, &act_at)?;
                    }
                }
                Step::Act { input, table, out } => {
                    vals[*out as usize] = self.lookup(*table, get(&vals, input), node, &at)?;
                }
                Step::Max { inputs, out, exp } => {
                    let m = inputs.iter().map(|v| get(&vals, v)).max().unwrap_or(0);
                    vals[*out as usize] = m as i64;
                    // The spread is range-checked to 2B bits; a softmax's
                    // exp table takes it as a key, so B bits there.
                    let limit = if exp.is_some() { full } else { full * full };
                    for (i, v) in inputs.iter().enumerate() {
                        let u = m - get(&vals, v);
                        if u >= limit {
                            bail!(
                                "the spread of the inputs of {} ({}) exceeds the range {} at scale {scale}; \
                                 raise lookup_bits or lower input_scale",
                                at(),
                                u as f64 / (1u64 << scale) as f64,
                                limit as f64 / (1u64 << scale) as f64
                            );
                        }
                        if let Some(exp) = exp {
                            let es = self.exp_scale.unwrap_or(scale);
                            vals[exp[i] as usize] = expneg_value(u as i64, scale, es);
                        }
                    }
                }
                Step::DivBy { num, den, mult, out } => {
                    let d = get(&vals, den);
                    if d <= 0 || d > full {
                        bail!("denominator {d} at {} is outside (0, 2^{b}]", at());
                    }
                    vals[*out as usize] = check((get(&vals, num) * *mult as i128).div_euclid(d))?;
                }
            }
        }
        Ok(Witness { values: vals })
    }

    fn lookup(&self, table: u16, x: i128, node: usize, at: &dyn Fn() -> String) -> Result<i64> {
        let table = &self.tables[table as usize];
        if let Table::Data { values } = table {
            let n = values.len() as i128;
            if x < -n || x >= n {
                bail!("a runtime index at {} is out of range for the data it gathers from", at());
            }
        }
        let b = self.settings.lookup_bits;
        let half = 1i128 << (b - 1);
        if x < -half || x >= half {
            let s = (1u64 << self.scale()) as f64;
            return Err(OutsideTable {
                node: self.node_names[node].clone(),
                kind: self.node_kinds[node].clone(),
                value: x as f64 / s,
                lo: -half as f64 / s,
                hi: half as f64 / s,
            }
            .into());
        }
        Ok(table.value(x as i64, self.scale()))
    }

    /// Quantized outputs (one array per output tensor).
    pub fn output_values(&self, w: &Witness) -> Vec<Vec<i64>> {
        self.outputs.iter().map(|ids| ids.iter().map(|&v| w.values[v as usize]).collect()).collect()
    }

    /// Dequantized outputs.
    pub fn dequantize(&self, q: &[Vec<i64>]) -> Vec<Vec<f64>> {
        let s = (1u64 << self.scale()) as f64;
        q.iter().map(|t| t.iter().map(|&v| v as f64 / s).collect()).collect()
    }

    /// Public instances as integers: outputs, then inputs when public.
    pub fn instance_values(&self, w: &Witness) -> Vec<i64> {
        let mut out: Vec<i64> = self.output_values(w).into_iter().flatten().collect();
        if self.settings.public_input {
            for ids in &self.inputs {
                out.extend(ids.iter().map(|&v| w.values[v as usize]));
            }
        }
        out
    }
}
