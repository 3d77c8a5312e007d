//! The float graph IR: what an ONNX model becomes after import, before
//! quantization. Every node has a static shape; weights of dense layers and
//! convolutions are held by the node itself so that BatchNormalization can be
//! folded into them.

use serde::{Deserialize, Serialize};

/// A dense float tensor in row-major order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// Element-wise nonlinearities, each proven with one lookup table: the
/// table maps every input in its range to the rounded function value, so any
/// function of one value is one table. Where a function is not finite (log
/// of zero, a square root of a negative number), [`Activation::eval`] gives
/// what f64 gives, and the table saturates it ([`crate::program::table_value`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    Relu,
    LeakyRelu {
        alpha: f64,
    },
    Clip {
        lo: f64,
        hi: f64,
    },
    Sigmoid,
    Tanh,
    Elu {
        alpha: f64,
    },
    Selu {
        alpha: f64,
        gamma: f64,
    },
    Celu {
        alpha: f64,
    },
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    HardSwish,
    Softplus,
    Softsign,
    Mish,
    Erf,
    /// Gelu, exact (with erf) or with the tanh approximation.
    Gelu {
        tanh: bool,
    },
    ThresholdedRelu {
        alpha: f64,
    },
    Shrink {
        bias: f64,
        lambd: f64,
    },
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Abs,
    Sign,
    Floor,
    Ceil,
    /// Round half to even, as ONNX rounds.
    Round,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    /// x^exponent for an exponent that is not a small positive integer.
    Pow {
        exponent: f64,
    },
    /// 1 where x < 0, else 0: comparisons, on the sign of a difference.
    Negative,
    /// 1 where x ≠ 0, else 0: a cast to bool.
    NonZero,
    /// x rounded toward zero: a cast to an integer type.
    Trunc,
    /// sqrt(max(x, 0) + eps), at least one quantum: the denominator of a
    /// normalization, never zero.
    StdDev {
        eps: f64,
    },
    /// `below.0·x + below.1` for x < 0, `at` at 0, `above.0·x + above.1`
    /// for x > 0: the selectors and lines of a widened table function
    /// (`wide.rs`).
    Piece {
        below: (f64, f64),
        at: f64,
        above: (f64, f64),
    },
}

fn softplus(x: f64) -> f64 {
    // ln(1 + e^x) without overflow for large x.
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

impl Activation {
    pub fn eval(&self, x: f64) -> f64 {
        use std::f64::consts::{FRAC_1_SQRT_2, PI};
        match *self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Activation::Clip { lo, hi } => x.max(lo).min(hi),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Elu { alpha } => {
                if x < 0.0 {
                    alpha * x.exp_m1()
                } else {
                    x
                }
            }
            Activation::Selu { alpha, gamma } => gamma * if x <= 0.0 { alpha * x.exp_m1() } else { x },
            Activation::Celu { alpha } => x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Softplus => softplus(x),
            Activation::Softsign => x / (1.0 + x.abs()),
            Activation::Mish => x * softplus(x).tanh(),
            Activation::Erf => libm::erf(x),
            Activation::Gelu { tanh: false } => 0.5 * x * (1.0 + libm::erf(x * FRAC_1_SQRT_2)),
            Activation::Gelu { tanh: true } => {
                0.5 * x * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::ThresholdedRelu { alpha } => {
                if x > alpha {
                    x
                } else {
                    0.0
                }
            }
            Activation::Shrink { bias, lambd } => {
                if x < -lambd {
                    x + bias
                } else if x > lambd {
                    x - bias
                } else {
                    0.0
                }
            }
            Activation::Exp => x.exp(),
            Activation::Log => x.ln(),
            Activation::Sqrt => x.sqrt(),
            Activation::Reciprocal => 1.0 / x,
            Activation::Abs => x.abs(),
            Activation::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Activation::Floor => x.floor(),
            Activation::Ceil => x.ceil(),
            Activation::Round => x.round_ties_even(),
            Activation::Sin => x.sin(),
            Activation::Cos => x.cos(),
            Activation::Tan => x.tan(),
            Activation::Asin => x.asin(),
            Activation::Acos => x.acos(),
            Activation::Atan => x.atan(),
            Activation::Sinh => x.sinh(),
            Activation::Cosh => x.cosh(),
            Activation::Asinh => x.asinh(),
            Activation::Acosh => x.acosh(),
            Activation::Atanh => x.atanh(),
            Activation::Pow { exponent } => x.powf(exponent),
            Activation::Negative => f64::from(u8::from(x < 0.0)),
            Activation::NonZero => f64::from(u8::from(x != 0.0)),
            Activation::Trunc => x.trunc(),
            Activation::StdDev { eps } => (x.max(0.0) + eps).sqrt(),
            Activation::Piece { below, at, above } => {
                if x < 0.0 {
                    below.0 * x + below.1
                } else if x > 0.0 {
                    above.0 * x + above.1
                } else {
                    at
                }
            }
        }
    }

    /// The ONNX op the activation comes from.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::Clip { .. } => "Clip",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Elu { .. } => "Elu",
            Activation::Selu { .. } => "Selu",
            Activation::Celu { .. } => "Celu",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::HardSwish => "HardSwish",
            Activation::Softplus => "Softplus",
            Activation::Softsign => "Softsign",
            Activation::Mish => "Mish",
            Activation::Erf => "Erf",
            Activation::Gelu { .. } => "Gelu",
            Activation::ThresholdedRelu { .. } => "ThresholdedRelu",
            Activation::Shrink { .. } => "Shrink",
            Activation::Exp => "Exp",
            Activation::Log => "Log",
            Activation::Sqrt => "Sqrt",
            Activation::Reciprocal => "Reciprocal",
            Activation::Abs => "Abs",
            Activation::Sign => "Sign",
            Activation::Floor => "Floor",
            Activation::Ceil => "Ceil",
            Activation::Round => "Round",
            Activation::Sin => "Sin",
            Activation::Cos => "Cos",
            Activation::Tan => "Tan",
            Activation::Asin => "Asin",
            Activation::Acos => "Acos",
            Activation::Atan => "Atan",
            Activation::Sinh => "Sinh",
            Activation::Cosh => "Cosh",
            Activation::Asinh => "Asinh",
            Activation::Acosh => "Acosh",
            Activation::Atanh => "Atanh",
            Activation::Pow { .. } => "Pow",
            Activation::Negative => "Less",
            Activation::NonZero => "Cast",
            Activation::Trunc => "Cast",
            Activation::StdDev { .. } => "Normalization",
            Activation::Piece { .. } => "WideTable",
        }
    }
}

/// The element type of a model input, as the circuit treats it: floats are
/// quantized; integers (token ids, indices) must be whole numbers and are
/// constrained to be; booleans must be 0 or 1 and are constrained to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Elem {
    #[default]
    Float,
    Int,
    Bool,
}

/// Comparisons of two tensors; the output is 1.0 where it holds, else 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    Equal,
}

impl Cmp {
    pub fn of(op: &str) -> Option<Self> {
        Some(match op {
            "Less" => Cmp::Less,
            "Greater" => Cmp::Greater,
            "LessOrEqual" => Cmp::LessOrEqual,
            "GreaterOrEqual" => Cmp::GreaterOrEqual,
            "Equal" => Cmp::Equal,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Cmp::Less => "Less",
            Cmp::Greater => "Greater",
            Cmp::LessOrEqual => "LessOrEqual",
            Cmp::GreaterOrEqual => "GreaterOrEqual",
            Cmp::Equal => "Equal",
        }
    }

    pub fn eval(self, a: f64, b: f64) -> f64 {
        let holds = match self {
            Cmp::Less => a < b,
            Cmp::Greater => a > b,
            Cmp::LessOrEqual => a <= b,
            Cmp::GreaterOrEqual => a >= b,
            Cmp::Equal => a == b,
        };
        f64::from(u8::from(holds))
    }
}

/// An element-wise function of one value `X`, composed of constants, sums,
/// products and table functions: a chain of element-wise ops over one tensor
/// (Gelu written with Erf, x·sigmoid(x)) becomes one lookup table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    X,
    Const(f64),
    Add(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Act(Activation, Box<Expr>),
}

impl Expr {
    pub fn eval(&self, x: f64) -> f64 {
        match self {
            Expr::X => x,
            Expr::Const(c) => *c,
            Expr::Add(a, b) => a.eval(x) + b.eval(x),
            Expr::Mul(a, b) => a.eval(x) * b.eval(x),
            Expr::Act(act, a) => act.eval(a.eval(x)),
        }
    }

    /// Whether a table function appears in it.
    pub fn has_table(&self) -> bool {
        match self {
            Expr::X | Expr::Const(_) => false,
            Expr::Add(a, b) | Expr::Mul(a, b) => a.has_table() || b.has_table(),
            Expr::Act(..) => true,
        }
    }

    /// `self op other` for Add, Sub and Mul.
    pub fn arith(self, op: Arith, other: Expr) -> Expr {
        match op {
            Arith::Add => Expr::Add(Box::new(self), Box::new(other)),
            Arith::Sub => Expr::Add(Box::new(self), Box::new(Expr::Mul(Box::new(Expr::Const(-1.0)), Box::new(other)))),
            Arith::Mul => Expr::Mul(Box::new(self), Box::new(other)),
        }
    }
}

/// Binary element-wise arithmetic with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arith {
    Add,
    Sub,
    Mul,
}

/// Window geometry shared by convolutions and pools (2-D, NCHW).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    /// Of the bottom and right pads, the part `ceil_mode` adds so that the
    /// last window fits: an average counts it out even where it counts pads.
    #[serde(default)]
    pub overhang: [usize; 2],
}

impl Op {
    /// Whether the op is an element-wise table function (which `wide_nodes`
    /// may widen).
    pub fn is_table_fn(&self) -> bool {
        matches!(self, Op::Act(_) | Op::Fn(_))
    }
}

impl Window {
    /// Output height and width for an input of `h` x `w`.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let eh = self.dilation[0] * (self.kernel[0] - 1) + 1;
        let ew = self.dilation[1] * (self.kernel[1] - 1) + 1;
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        if ph < eh || pw < ew || self.stride[0] == 0 || self.stride[1] == 0 {
            return None;
        }
        Some([(ph - eh) / self.stride[0] + 1, (pw - ew) / self.stride[1] + 1])
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The model's `index`-th input.
    Input {
        index: usize,
    },
    /// A constant (an initializer or a Constant node).
    Const(Tensor),
    /// `y[.., n] = sum_k x[.., k] * weight[n][k] + bias[n]` over the last axis.
    /// Weight is `[out, in]`.
    Dense {
        weight: Tensor,
        bias: Vec<f64>,
    },
    /// `y[.., m, n] = sum_k weight[m][k] * x[.., k, n] + bias`: a constant on the
    /// left of a MatMul. Weight is `[m, k]`.
    DenseLeft {
        weight: Tensor,
    },
    /// 2-D convolution, NCHW, weight `[co, ci, kh, kw]`, groups 1.
    Conv {
        weight: Tensor,
        bias: Vec<f64>,
        window: Window,
    },
    /// MatMul of two runtime tensors over their last two axes.
    MatMulDyn,
    /// Per-channel affine along axis 1 (an unfolded BatchNormalization).
    Affine {
        scale: Vec<f64>,
        shift: Vec<f64>,
    },
    Arith(Arith),
    /// `a / b` of two runtime tensors (broadcast), rounded toward -inf.
    DivDyn,
    /// `a / b` of integer tensors (broadcast; b may be a constant node),
    /// truncated toward zero as ONNX's integer Div is.
    IntDiv,
    /// `a mod b` (broadcast): with the divisor's sign (ONNX's fmod 0, as
    /// Python's %), or with `fmod` the dividend's (C's fmod).
    Mod {
        fmod: bool,
    },
    /// A comparison of two tensors (broadcast).
    Compare(Cmp),
    /// Where with a constant condition: each output element is the first
    /// input's (where `first` holds) or the second's, broadcast. No rows.
    Select {
        first: Vec<bool>,
    },
    /// Einsum over one or two inputs (constants among them are nodes):
    /// each input's axes labelled by `labels`, the output's by `out`; labels
    /// missing from the output are summed over.
    Einsum {
        labels: Vec<Vec<u8>>,
        out: Vec<u8>,
    },
    /// ScatterElements by runtime indices (inputs: data, indices, updates):
    /// update `u` writes into the data element `rows[u][j]` where index
    /// element `u` is `j`, updates applied in order.
    ScatterDyn {
        n: usize,
        rows: Vec<Vec<usize>>,
    },
    /// x rounded toward zero (a Cast of floats to an integer type): exact
    /// over the whole proven range, by a floor division, no table.
    Trunc,
    /// `floor(x / 2^bits)` of whole numbers (BitShift right): exact, by one
    /// range-checked division, no table.
    ShiftRight {
        bits: u32,
    },
    /// Gather by runtime indices from a runtime tensor (the node's inputs:
    /// data, then indices): output element `i` is data element
    /// `choices[i][j]` where index element `which[i]` is `j` (negative
    /// indices count from the end; each of the `n` choices is one position
    /// along the gathered axis).
    GatherDyn {
        n: usize,
        choices: Vec<Vec<usize>>,
        which: Vec<usize>,
    },
    /// Gather from a constant tensor by runtime indices (the node's one
    /// input): embeddings. `data` has the gathered axis first; each index
    /// selects one of its `data.shape[0]` slices of `data.len() / shape[0]`
    /// values, and the output holds, for each index, its slice.
    GatherConst {
        data: Tensor,
    },
    /// `(x - mean) / sqrt(var + eps) · scale + shift` over `axes`
    /// (LayerNormalization, InstanceNormalization, GroupNormalization);
    /// `scale` and `shift` hold one value per element, or are empty (1, 0).
    /// With `rms`, no mean is taken: `x / sqrt(mean(x²) + eps)` (RMSNorm).
    Normalize {
        axes: Vec<usize>,
        eps: f64,
        scale: Vec<f64>,
        shift: Vec<f64>,
        #[serde(default)]
        rms: bool,
    },
    Act(Activation),
    /// An element-wise function of the input, one table.
    Fn(Expr),
    /// Softmax over the last axis.
    Softmax,
    /// LogSoftmax over the last axis.
    LogSoftmax,
    /// Hardmax over the last axis: 1 at the first maximum, 0 elsewhere.
    Hardmax,
    /// The `k` largest (or smallest) values along the last axis, in order,
    /// then their indices: the last axis of the node's shape is `2k`.
    TopK {
        k: usize,
        largest: bool,
    },
    /// The index of the maximum (or minimum) along the last axis, which the
    /// node's shape keeps as 1: the first one, or with `last` the last.
    ArgExtreme {
        min: bool,
        last: bool,
    },
    MaxPool(Window),
    AvgPool {
        window: Window,
        count_include_pad: bool,
    },
    GlobalAvgPool,
    Reshape,
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    /// Output element i is input element `map[i]`, or the constant `fill`
    /// where that is `None`: Slice, Gather by constant indices, Pad,
    /// Expand and Tile. It costs no rows beyond one constant.
    Rearrange {
        map: Vec<Option<usize>>,
        fill: f64,
    },
    /// The element-wise maximum (or minimum) of the inputs, broadcast to
    /// the node's shape.
    Extremum {
        min: bool,
    },
    /// A reduction over `axes` of the input (sorted, distinct); the node's
    /// shape says whether they are kept as ones.
    Reduce {
        kind: Reduce,
        axes: Vec<usize>,
    },
}

/// ONNX's reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
    Min,
    SumSquare,
    L1,
    L2,
    Prod,
    LogSumExp,
}

impl Reduce {
    /// The reduction of an ONNX op name.
    pub fn of(op: &str) -> Option<Self> {
        Some(match op {
            "ReduceSum" => Reduce::Sum,
            "ReduceMean" => Reduce::Mean,
            "ReduceMax" => Reduce::Max,
            "ReduceMin" => Reduce::Min,
            "ReduceSumSquare" => Reduce::SumSquare,
            "ReduceL1" => Reduce::L1,
            "ReduceL2" => Reduce::L2,
            "ReduceProd" => Reduce::Prod,
            "ReduceLogSumExp" => Reduce::LogSumExp,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "ReduceSum",
            Reduce::Mean => "ReduceMean",
            Reduce::Max => "ReduceMax",
            Reduce::Min => "ReduceMin",
            Reduce::SumSquare => "ReduceSumSquare",
            Reduce::L1 => "ReduceL1",
            Reduce::L2 => "ReduceL2",
            Reduce::Prod => "ReduceProd",
            Reduce::LogSumExp => "ReduceLogSumExp",
        }
    }

    /// The reduction of float values (constant folding).
    pub fn eval(self, v: &[f64]) -> f64 {
        let sum_sq = || v.iter().map(|x| x * x).sum::<f64>();
        match self {
            Reduce::Sum => v.iter().sum(),
            Reduce::Mean => v.iter().sum::<f64>() / v.len() as f64,
            Reduce::Max => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Reduce::Min => v.iter().copied().fold(f64::INFINITY, f64::min),
            Reduce::SumSquare => sum_sq(),
            Reduce::L1 => v.iter().map(|x| x.abs()).sum(),
            Reduce::L2 => sum_sq().sqrt(),
            Reduce::Prod => v.iter().product(),
            Reduce::LogSumExp => {
                let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
            }
        }
    }
}

/// For an input of `shape` reduced over `axes`, the flat input indices that
/// make each output element, outputs in row-major order.
pub fn reduction_groups(shape: &[usize], axes: &[usize]) -> Vec<Vec<usize>> {
    let out_shape: Vec<usize> = shape.iter().enumerate().map(|(d, &n)| if axes.contains(&d) { 1 } else { n }).collect();
    let out_strides = strides(&out_shape);
    let mut groups = vec![Vec::new(); out_shape.iter().product()];
    let mut flat = 0;
    for_each_index(shape, |pos| {
        let o: usize = pos
            .iter()
            .zip(&out_strides)
            .enumerate()
            .map(|(d, (&p, &st))| if axes.contains(&d) { 0 } else { p * st })
            .sum();
        groups[o].push(flat);
        flat += 1;
    });
    groups
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Const(_) => "Const",
            Op::Dense { .. } | Op::DenseLeft { .. } => "Dense",
            Op::Conv { .. } => "Conv",
            Op::MatMulDyn => "MatMul",
            Op::Affine { .. } => "Affine",
            Op::Arith(Arith::Add) => "Add",
            Op::Arith(Arith::Sub) => "Sub",
            Op::Arith(Arith::Mul) => "Mul",
            Op::Act(a) => a.name(),
            Op::Fn(_) => "ElementwiseFn",
            Op::DivDyn | Op::IntDiv => "Div",
            Op::Mod { .. } => "Mod",
            Op::Compare(c) => c.name(),
            Op::Select { .. } => "Where",
            Op::GatherConst { .. } | Op::GatherDyn { .. } => "Gather",
            Op::ShiftRight { .. } => "BitShift",
            Op::Trunc => "Cast",
            Op::ScatterDyn { .. } => "ScatterElements",
            Op::Einsum { .. } => "Einsum",
            Op::Normalize { .. } => "Normalization",
            Op::Softmax => "Softmax",
            Op::LogSoftmax => "LogSoftmax",
            Op::Hardmax => "Hardmax",
            Op::TopK { .. } => "TopK",
            Op::ArgExtreme { min: false, .. } => "ArgMax",
            Op::ArgExtreme { min: true, .. } => "ArgMin",
            Op::MaxPool(_) => "MaxPool",
            Op::AvgPool { .. } => "AveragePool",
            Op::GlobalAvgPool => "GlobalAveragePool",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Reduce { kind, .. } => kind.name(),
            Op::Rearrange { .. } => "Rearrange",
            Op::Extremum { min: false } => "Max",
            Op::Extremum { min: true } => "Min",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The ONNX node name (or the output name when the node has none).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Vec<usize>,
}

/// A model as a topologically ordered list of nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Node ids of the model inputs, in ONNX order.
    pub inputs: Vec<NodeId>,
    /// Node ids of the model outputs, in ONNX order.
    pub outputs: Vec<NodeId>,
    /// Element types of the inputs (missing ones are floats).
    #[serde(default)]
    pub input_elems: Vec<Elem>,
}

impl Graph {
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs.iter().map(|&i| self.nodes[i].shape.clone()).collect()
    }
    /// The element type of input `i`.
    pub fn input_elem(&self, i: usize) -> Elem {
        self.input_elems.get(i).copied().unwrap_or_default()
    }
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs.iter().map(|&i| self.nodes[i].shape.clone()).collect()
    }
    /// Appends a node and returns its id.
    pub fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> NodeId {
        self.nodes.push(Node { name: name.to_string(), op, inputs, shape });
        self.nodes.len() - 1
    }
}

/// Numpy broadcasting of two shapes; `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Flat index into a tensor of `shape` for the broadcast position `pos` of an
/// output of rank `pos.len()`.
pub fn broadcast_index(shape: &[usize], pos: &[usize]) -> usize {
    let offset = pos.len() - shape.len();
    let mut idx = 0;
    for (d, &n) in shape.iter().enumerate() {
        let p = if n == 1 { 0 } else { pos[d + offset] };
        idx = idx * n + p;
    }
    idx
}

/// Iterates over every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut pos = vec![0; shape.len()];
    loop {
        f(&pos);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            pos[d] += 1;
            if pos[d] < shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shapes(&[2, 1], &[1, 4]), Some(vec![2, 4]));
        assert_eq!(broadcast_shapes(&[2, 3], &[2]), None);
        assert_eq!(broadcast_index(&[3], &[1, 2]), 2);
        assert_eq!(broadcast_index(&[2, 1], &[1, 2]), 1);
    }

    #[test]
    fn window_output_size() {
        let w = Window { kernel: [5, 5], stride: [1, 1], pads: [2, 2, 2, 2], dilation: [1, 1], overhang: [0; 2] };
        assert_eq!(w.output_hw(28, 28), Some([28, 28]));
        let p = Window { kernel: [2, 2], stride: [2, 2], pads: [0; 4], dilation: [1, 1], overhang: [0; 2] };
        assert_eq!(p.output_hw(7, 7), Some([3, 3]));
    }
}
