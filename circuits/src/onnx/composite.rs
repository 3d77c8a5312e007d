//! ONNX ops that the importer builds from others: each becomes the few
//! ops (or the constant) that define it, so that it inherits their
//! constraints, folding and fusion. Several are spelled as ONNX nodes of
//! their own (`synth`), which then go through the importer like any other.

use anyhow::{anyhow, bail, ensure, Result};
use tract_onnx::pb::NodeProto;

use super::{attr, attr_f, attr_i, attr_ints, axis, input_name, scalar, Importer, Val};
use crate::graph::*;

/// The ops of onnxruntime's `com.microsoft` domain this module lowers (its
/// quantizer writes them).
pub const MICROSOFT_OPS: &[&str] = &[
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "QGemm",
    "QLinearAdd",
    "QLinearMul",
    "QuickGelu",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
];

/// The ops this module lowers.
pub const COMPOSITE_OPS: &[&str] = &[
    "CastLike",
    "CenterCropPad",
    "Compress",
    "DequantizeLinear",
    "EyeLike",
    "GlobalMaxPool",
    "IsInf",
    "IsNaN",
    "LRN",
    "LpPool",
    "MeanVarianceNormalization",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "RMSNormalization",
    "ReduceLogSum",
    "ReverseSequence",
    "SimplifiedLayerNormalization",
];

impl Importer {
    /// The value of a composite op, or None where `node` is not one.
    pub(super) fn composite(&mut self, node: &NodeProto, name: &str) -> Result<Option<Val>> {
        Ok(Some(match node.op_type.as_str() {
            "ReduceLogSum" => self.reduce_log_sum(node, name)?,
            "GlobalMaxPool" => {
                let x = self.input(node, 0)?;
                let rank = self.shape(&x).len();
                ensure!(rank >= 3, "GlobalMaxPool of a rank-{rank} tensor (needs N, C and spatial axes)");
                self.reduce_over(x, (2..rank).collect(), true, Reduce::Max, name)?
            }
            "MeanVarianceNormalization" => {
                let x = self.input(node, 0)?;
                let rank = self.shape(&x).len();
                let given = attr_ints(node, "axes").unwrap_or_else(|| vec![0, 2, 3]);
                let mut axes = given.iter().map(|&a| axis(a, rank)).collect::<Result<Vec<_>>>()?;
                axes.sort_unstable();
                axes.dedup();
                self.normalized(x, axes, 1e-9, None, None, name)?
            }
            "IsNaN" | "IsInf" => self.is_special(node)?,
            "CastLike" => self.cast(node, name)?,
            "EyeLike" => {
                let shape = self.shape(&self.input(node, 0)?);
                ensure!(shape.len() == 2, "EyeLike of a rank-{} tensor (needs rank 2)", shape.len());
                let k = attr_i(node, "k", 0);
                let mut data = vec![0.0; shape[0] * shape[1]];
                for (i, row) in data.chunks_mut(shape[1]).enumerate() {
                    if let Some(v) =
                        (i as i64).checked_add(k).and_then(|j| usize::try_from(j).ok()).and_then(|j| row.get_mut(j))
                    {
                        *v = 1.0;
                    }
                }
                Val::Const(Tensor::new(shape, data))
            }
            "Compress" => self.compress(node, name)?,
            "CenterCropPad" => self.center_crop_pad(node, name)?,
            "ReverseSequence" => self.reverse_sequence(node, name)?,
            "LRN" => self.lrn(node, name)?,
            "LpPool" => self.lp_pool(node, name)?,
            "QuantizeLinear" => {
                let x = input_name(node, 0)?.to_string();
                self.quantize(node, &x, 1, name)?
            }
            "DequantizeLinear" => {
                ensure!(attr_i(node, "block_size", 0) == 0, "blocked DequantizeLinear is not supported");
                let (x, s) = (input_name(node, 0)?.to_string(), input_name(node, 1)?.to_string());
                let z = node.input.get(2).cloned();
                let a = attr_i(node, "axis", 1);
                self.dequantize(&x, &s, z.as_deref(), Some(a), name)?
            }
            "QLinearMatMul" | "QLinearConv" | "QGemm" | "QLinearAdd" | "QLinearMul" => self.qlinear(node, name)?,
            // onnxruntime's fused transformer ops (com.microsoft).
            "Gelu" | "BiasGelu" | "FastGelu" if node.domain == "com.microsoft" => {
                let x = self.input(node, 0)?;
                let x = match self.opt_input(node, 1)? {
                    Some(bias) => self.binary(Arith::Add, x, bias, &format!("{name}.bias"))?,
                    None => x,
                };
                self.apply(x, Activation::Gelu { tanh: node.op_type == "FastGelu" }, name)?
            }
            "QuickGelu" => {
                let x = self.input(node, 0)?;
                let alpha = attr_f(node, "alpha", 1.702);
                let ax = self.binary(Arith::Mul, x.clone(), scalar(alpha), &format!("{name}.scaled"))?;
                let gate = self.apply(ax, Activation::Sigmoid, &format!("{name}.gate"))?;
                self.binary(Arith::Mul, x, gate, name)?
            }
            "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization" => self.skip_layer_norm(node, name)?,
            // RMSNorm (opset 23) and onnxruntime's name for it.
            "RMSNormalization" | "SimplifiedLayerNormalization" => {
                ensure!(
                    node.output.iter().skip(1).all(String::is_empty),
                    "{}'s inverse deviation output is not supported",
                    node.op_type
                );
                let x = self.input(node, 0)?;
                let rank = self.shape(&x).len();
                let from = axis(attr_i(node, "axis", -1), rank)?;
                let scale = self.input(node, 1)?;
                let eps = attr_f(node, "epsilon", 1e-5);
                self.normalized_as(x, ((from..rank).collect(), eps, true), Some(scale), None, name)?
            }
            _ => return Ok(None),
        }))
    }

    /// ReduceLogSum: the log of a sum.
    fn reduce_log_sum(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let rank = self.shape(&x).len();
        // Its axes move from attribute to input at opset 18, as ReduceMean's.
        let sum = match self.reduce_axes(node, Reduce::Mean, rank)? {
            Some(axes) => {
                self.reduce_over(x, axes, attr_i(node, "keepdims", 1) != 0, Reduce::Sum, &format!("{name}.sum"))?
            }
            None => x,
        };
        self.apply(sum, Activation::Log, name)
    }

    /// IsNaN and IsInf: evaluated on constants; a runtime value is a finite
    /// fixed-point number (inputs are refused where they are not), so the
    /// answer there is 0 everywhere.
    fn is_special(&self, node: &NodeProto) -> Result<Val> {
        let (pos, neg) = (attr_i(node, "detect_positive", 1) != 0, attr_i(node, "detect_negative", 1) != 0);
        let test = |v: f64| match node.op_type.as_str() {
            "IsNaN" => v.is_nan(),
            _ => (pos && v == f64::INFINITY) || (neg && v == f64::NEG_INFINITY),
        };
        Ok(match self.input(node, 0)? {
            Val::Const(t) => {
                Val::Const(Tensor::new(t.shape.clone(), t.data.iter().map(|&v| f64::from(u8::from(test(v)))).collect()))
            }
            x => {
                let shape = self.shape(&x);
                Val::Const(Tensor::new(shape.clone(), vec![0.0; shape.iter().product()]))
            }
        })
    }

    /// Compress by a constant condition: the selected slices along the axis
    /// (of the flattened tensor without one).
    fn compress(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let mut x = self.input(node, 0)?;
        let cond = self.const_input(node, 1, "the Compress condition")?;
        let a = match attr(node, "axis") {
            Some(a) => axis(a.i, self.shape(&x).len())?,
            None => {
                let n = self.shape(&x).iter().product();
                x = self.reshape(x, vec![n], &format!("{name}.flat"))?;
                0
            }
        };
        let shape = self.shape(&x);
        ensure!(
            cond.data.len() <= shape[a],
            "Compress condition of {} elements for an axis of {}",
            cond.data.len(),
            shape[a]
        );
        let kept: Vec<usize> = cond.data.iter().enumerate().filter(|(_, &c)| c != 0.0).map(|(i, _)| i).collect();
        let mut out = shape.clone();
        out[a] = kept.len();
        let st = strides(&shape);
        let mut map = Vec::new();
        for_each_index(&out, |pos| {
            map.push(Some(pos.iter().enumerate().map(|(d, &p)| if d == a { kept[p] } else { p } * st[d]).sum()));
        });
        self.rearrange(x, out, map, 0.0, name)
    }

    /// CenterCropPad: each listed axis cropped or zero-padded to its target
    /// length about its centre (the odd element going to the end).
    fn center_crop_pad(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        let target = self.const_input(node, 1, "the CenterCropPad shape")?;
        let axes = match attr_ints(node, "axes") {
            Some(a) => a.iter().map(|&a| axis(a, shape.len())).collect::<Result<Vec<_>>>()?,
            None => (0..shape.len()).collect(),
        };
        ensure!(
            target.data.len() == axes.len(),
            "CenterCropPad shape of {} for {} axes",
            target.data.len(),
            axes.len()
        );
        ensure!(target.data.iter().all(|&t| t >= 1.0), "CenterCropPad shape {:?} is not positive", target.data);
        let mut out = shape.clone();
        // Per axis: the input index of output index 0 (negative where padded).
        let mut offset = vec![0i64; shape.len()];
        for (&a, &t) in axes.iter().zip(&target.data) {
            let (dim, t) = (shape[a] as i64, t as i64);
            offset[a] = if t <= dim { (dim - t) / 2 } else { -((t - dim) / 2) };
            out[a] = t as usize;
        }
        super::check_size(&out)?;
        let st = strides(&shape);
        let mut map = Vec::new();
        for_each_index(&out, |pos| {
            let mut at = 0i64;
            let mut inside = true;
            for (d, &p) in pos.iter().enumerate() {
                let i = p as i64 + offset[d];
                inside &= (0..shape[d] as i64).contains(&i);
                at += i * st[d] as i64;
            }
            map.push(inside.then_some(at as usize));
        });
        self.rearrange(x, out, map, 0.0, name)
    }

    /// ReverseSequence by constant lengths: each batch entry's first
    /// `len` steps along the time axis reversed, the rest kept.
    fn reverse_sequence(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let lens = self.const_input(node, 1, "the ReverseSequence lengths")?;
        let shape = self.shape(&x);
        let (b, t) = (attr_i(node, "batch_axis", 1) as usize, attr_i(node, "time_axis", 0) as usize);
        ensure!(
            b < shape.len() && t < shape.len() && b != t,
            "ReverseSequence axes {b} and {t} for rank {}",
            shape.len()
        );
        ensure!(lens.data.len() == shape[b], "{} sequence lengths for a batch of {}", lens.data.len(), shape[b]);
        ensure!(
            lens.data.iter().all(|&l| l >= 0.0 && l as usize <= shape[t]),
            "sequence lengths {:?} outside [0, {}]",
            lens.data,
            shape[t]
        );
        let st = strides(&shape);
        let mut map = Vec::new();
        for_each_index(&shape, |pos| {
            let len = lens.data[pos[b]] as usize;
            let src = |d: usize, p: usize| if d == t && p < len { len - 1 - p } else { p };
            map.push(Some(pos.iter().enumerate().map(|(d, &p)| src(d, p) * st[d]).sum()));
        });
        self.rearrange(x, shape, map, 0.0, name)
    }

    /// LRN: `x / (bias + alpha/size · Σ x²)^beta`, the sum over the `size`
    /// channels around each: the squares (an exact product), the window sum
    /// as a banded dense layer over channels (channels moved last), and one
    /// table for the rest.
    fn lrn(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let x = self.input(node, 0)?;
        let shape = self.shape(&x);
        ensure!(shape.len() >= 3, "LRN of a rank-{} tensor (needs N, C and spatial axes)", shape.len());
        let size = attr_i(node, "size", 0);
        ensure!(size >= 1, "LRN size {size} is not positive");
        let (alpha, beta, bias) = (attr_f(node, "alpha", 1e-4), attr_f(node, "beta", 0.75), attr_f(node, "bias", 1.0));
        let c = shape[1];
        ensure!(c * c <= super::MAX_TENSOR_ELEMENTS, "LRN over {c} channels (its band of weights is too large)");
        let (below, above) = ((size - 1) / 2, (size - 1) - (size - 1) / 2);
        let mut band = vec![0.0; c * c];
        for j in 0..c as i64 {
            for i in (j - below).max(0)..=(j + above).min(c as i64 - 1) {
                band[(j * c as i64 + i) as usize] = 1.0;
            }
        }
        let square = self.binary(Arith::Mul, x.clone(), x.clone(), &format!("{name}.square"))?;
        let rank = shape.len();
        let last: Vec<usize> = std::iter::once(0).chain(2..rank).chain(std::iter::once(1)).collect();
        let moved = self.transpose(square, &last, &format!("{name}.channels_last"))?;
        let Val::Node(m) = moved else { bail!("LRN of a constant") };
        let mshape = self.graph.nodes[m].shape.clone();
        let dense = Op::Dense { weight: Tensor::new(vec![c, c], band), bias: vec![0.0; c] };
        let sums = self.push(&format!("{name}.window"), dense, vec![m], mshape);
        let scaled = self.binary(Arith::Mul, sums, scalar(alpha / size as f64), &format!("{name}.alpha"))?;
        let based = self.binary(Arith::Add, scaled, scalar(bias), &format!("{name}.bias"))?;
        let factor = self.apply(based, Activation::Pow { exponent: -beta }, &format!("{name}.factor"))?;
        let mut back = vec![0; rank];
        for (i, &p) in last.iter().enumerate() {
            back[p] = i;
        }
        let factor = self.transpose(factor, &back, &format!("{name}.channels_first"))?;
        self.binary(Arith::Mul, x, factor, name)
    }

    /// LpPool: `(Σ |x|^p)^(1/p)` over each window: |x|^p (a product for
    /// p = 2, a table otherwise), an average pool counting pads (zeros in
    /// the sum), and one table for `(k · mean)^(1/p)`.
    fn lp_pool(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        let (x, shape) = self.spatial_input(node)?;
        let p = match attr(node, "p") {
            Some(a) if a.r#type == 1 => f64::from(a.f),
            Some(a) => a.i as f64,
            None => 2.0,
        };
        ensure!(p > 0.0, "LpPool p = {p} is not positive");
        let powered = if p == 2.0 {
            self.binary(Arith::Mul, Val::Node(x), Val::Node(x), &format!("{name}.square"))?
        } else {
            let abs = self.apply(Val::Node(x), Activation::Abs, &format!("{name}.abs"))?;
            if p == 1.0 {
                abs
            } else {
                self.apply(abs, Activation::Pow { exponent: p }, &format!("{name}.pow"))?
            }
        };
        let Val::Node(powered) = powered else { bail!("LpPool of a constant") };
        let window = self.window(node, &shape, None)?;
        let hw = window.output_hw(shape[2], shape[3]).ok_or_else(|| anyhow!("window larger than input"))?;
        // A ceil_mode window past the edge would be averaged over fewer taps.
        ensure!(window.overhang == [0, 0], "LpPool with ceil_mode windows past the edge is not supported");
        let k = (window.kernel[0] * window.kernel[1]) as f64;
        let op = Op::AvgPool { window, count_include_pad: true };
        let mean = self.push(&format!("{name}.mean"), op, vec![powered], vec![shape[0], shape[1], hw[0], hw[1]]);
        let sum = self.binary(Arith::Mul, mean, scalar(k), &format!("{name}.sum"))?;
        if p == 1.0 {
            return Ok(sum);
        }
        self.apply(sum, Activation::Pow { exponent: 1.0 / p }, name)
    }

    /// QuantizeLinear of the value `x`: `saturate(round(x / scale) + zero
    /// point)`, rounded half to even, saturated to the output type's range
    /// (the zero point's type, uint8 without one); the scale and zero point
    /// are inputs `s` and `s + 1` of `node`, per tensor or per axis.
    fn quantize(&mut self, node: &NodeProto, x: &str, s: usize, name: &str) -> Result<Val> {
        ensure!(attr_i(node, "block_size", 0) == 0, "blocked {} is not supported", node.op_type);
        let scale = self.const_input(node, s, "the quantization scale")?;
        ensure!(scale.data.iter().all(|&v| v > 0.0), "quantization scale {:?} is not positive", scale.data);
        let zero = self.opt_const(node, s + 1)?;
        let out = node.output.first().ok_or_else(|| anyhow!("{} has no output", node.op_type))?;
        let code = self.types.get(out).copied().unwrap_or(2);
        let (lo, hi) =
            integer_range(code).ok_or_else(|| anyhow!("quantization to element type {code} is not supported"))?;
        let xv = self.vals.get(x).cloned().ok_or_else(|| anyhow!("value `{x}` is not defined"))?;
        let rank = self.shape(&xv).len();
        let a = attr_i(node, "axis", 1);
        let inv = along_axis(&Tensor::new(scale.shape.clone(), scale.data.iter().map(|v| 1.0 / v).collect()), a, rank)?;
        let ratio = self.binary(Arith::Mul, xv, Val::Const(inv), &format!("{name}.ratio"))?;
        let rounded = self.apply(ratio, Activation::Round, &format!("{name}.round"))?;
        let shifted = match zero {
            Some(z) => {
                self.binary(Arith::Add, rounded, Val::Const(along_axis(&z, a, rank)?), &format!("{name}.zero"))?
            }
            None => rounded,
        };
        self.apply(shifted, Activation::Clip { lo, hi }, name)
    }

    /// DequantizeLinear of the value `x` by the values `s` (scale) and `z`
    /// (zero point): `(x − z) · s`, per tensor or along `axis`.
    fn dequantize(&mut self, x: &str, s: &str, z: Option<&str>, a: Option<i64>, name: &str) -> Result<Val> {
        let get = |imp: &Self, n: &str| imp.vals.get(n).cloned().ok_or_else(|| anyhow!("value `{n}` is not defined"));
        let xv = get(self, x)?;
        let rank = self.shape(&xv).len();
        let place = |t: Tensor| -> Result<Val> {
            Ok(Val::Const(match a {
                Some(a) => along_axis(&t, a, rank)?,
                None => t,
            }))
        };
        let Val::Const(scale) = get(self, s)? else { bail!("the dequantization scale must be a constant") };
        let centred = match z.filter(|z| !z.is_empty()) {
            Some(z) => {
                let Val::Const(zero) = get(self, z)? else { bail!("the zero point must be a constant") };
                self.binary(Arith::Sub, xv, place(zero)?, &format!("{name}.centre"))?
            }
            None => xv,
        };
        self.binary(Arith::Mul, centred, place(scale)?, name)
    }

    /// onnxruntime's SkipLayerNormalization: a LayerNorm over the last axis
    /// of `input + skip (+ bias)`, with gamma and beta; its optional fourth
    /// output is that sum (mean and inverse deviation are refused). The
    /// Simplified form is an RMSNorm, with gamma alone (and the bias as
    /// its fourth input).
    fn skip_layer_norm(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        ensure!(
            node.output.get(1).is_none_or(String::is_empty) && node.output.get(2).is_none_or(String::is_empty),
            "SkipLayerNormalization's mean and inverse deviation outputs are not supported"
        );
        let rms = node.op_type == "SkipSimplifiedLayerNormalization";
        let (x, skip) = (self.input(node, 0)?, self.input(node, 1)?);
        let mut sum = self.binary(Arith::Add, x, skip, &format!("{name}.skip"))?;
        if let Some(bias) = self.opt_input(node, if rms { 3 } else { 4 })? {
            sum = self.binary(Arith::Add, sum, bias, &format!("{name}.bias"))?;
        }
        if let Some(out) = node.output.get(3).filter(|o| !o.is_empty()) {
            self.vals.insert(out.clone(), sum.clone());
        }
        let rank = self.shape(&sum).len();
        ensure!(rank >= 1, "SkipLayerNormalization of a scalar");
        let gamma = self.input(node, 2)?;
        let beta = if rms { None } else { self.opt_input(node, 3)? };
        let eps = attr_f(node, "epsilon", 1e-12);
        self.normalized_as(sum, (vec![rank - 1], eps, rms), Some(gamma), beta, name)
    }

    /// QLinearMatMul, QLinearConv and onnxruntime's QGemm, QLinearAdd and
    /// QLinearMul: the quantized inputs dequantized, the float op (its
    /// attributes kept; an int32 bias scaled by the input and weight
    /// scales), and the result quantized to the output's scale and zero
    /// point (QGemm without them gives the float result).
    fn qlinear(&mut self, node: &NodeProto, name: &str) -> Result<Val> {
        // The float op, where a bias is and where the output scale is.
        let (op, bias_at, out_at) = match node.op_type.as_str() {
            "QLinearMatMul" => ("MatMul", None, 6),
            "QLinearConv" => ("Conv", Some(8), 6),
            "QGemm" => ("Gemm", Some(6), 7),
            "QLinearAdd" => ("Add", None, 6),
            _ => ("Mul", None, 6),
        };
        ensure!(node.input.len() >= 6, "{} has {} inputs", node.op_type, node.input.len());
        if op == "Gemm" {
            ensure!(attr_f(node, "alpha", 1.0) == 1.0, "QGemm with alpha other than 1 is not supported");
        }
        let i = |k: usize| node.input.get(k).cloned().unwrap_or_default();
        let a = self.dequantize(&i(0), &i(1), Some(&i(2)), None, &format!("{name}.a"))?;
        // A per-channel weight scale runs along the output features: a
        // Conv's first axis, a Gemm's B rows (transposed) or columns, and a
        // MatMul's last axis, where a 1-D scale broadcasts by itself.
        let b_axis = match op {
            "Conv" => Some(0),
            "Gemm" => Some(if attr_i(node, "transB", 0) != 0 { 0 } else { 1 }),
            _ => None,
        };
        let b = self.dequantize(&i(3), &i(4), Some(&i(5)), b_axis, &format!("{name}.b"))?;
        let mut inputs = vec![self.named(a, &format!("{name}::a")), self.named(b, &format!("{name}::b"))];
        if let Some(k) = bias_at.filter(|&k| !i(k).is_empty()) {
            let bias = self.const_input(node, k, "the quantized bias")?;
            let xs = self.const_input(node, 1, "the input scale")?;
            let ws = self.const_input(node, 4, "the weight scale")?;
            ensure!(xs.data.len() == 1, "an input scale of {} elements", xs.data.len());
            ensure!(
                ws.data.len() == 1 || ws.data.len() == bias.data.len(),
                "a weight scale of {} elements for a bias of {}",
                ws.data.len(),
                bias.data.len()
            );
            let per = |j: usize| ws.data[if ws.data.len() == 1 { 0 } else { j }];
            let data = bias.data.iter().enumerate().map(|(j, &v)| v * xs.data[0] * per(j)).collect();
            inputs.push(self.named(Val::Const(Tensor::new(bias.shape.clone(), data)), &format!("{name}::bias")));
        }
        let quantized = !i(out_at).is_empty();
        let out = node.output.first().ok_or_else(|| anyhow!("{} has no output", node.op_type))?;
        let y = if quantized { format!("{name}::y") } else { out.clone() };
        let float = NodeProto {
            op_type: op.to_string(),
            name: format!("{name}.float"),
            input: inputs,
            output: vec![y.clone()],
            attribute: node.attribute.clone(),
            ..Default::default()
        };
        if quantized {
            self.readers.insert(y.clone(), 1);
        }
        self.node(&float, &float.name)?;
        if !quantized {
            return self.vals.get(&y).cloned().ok_or_else(|| anyhow!("QGemm produced no value"));
        }
        let quant = NodeProto {
            op_type: "QuantizeLinear".into(),
            input: vec![y.clone(), i(out_at), i(out_at + 1)],
            output: node.output.clone(),
            ..Default::default()
        };
        self.quantize(&quant, &y, 1, name)
    }

    /// `v` under a new name only this module reads, once.
    pub(super) fn named(&mut self, v: Val, n: &str) -> String {
        self.vals.insert(n.to_string(), v);
        self.readers.insert(n.to_string(), 1);
        n.to_string()
    }

    /// An optional constant input.
    fn opt_const(&self, node: &NodeProto, i: usize) -> Result<Option<Tensor>> {
        match self.opt_input(node, i)? {
            None => Ok(None),
            Some(Val::Const(t)) => Ok(Some(t)),
            Some(Val::Node(_)) => bail!("input {i} of {} must be a constant", node.op_type),
        }
    }

    /// `x` with its axes permuted, folded on constants.
    pub(super) fn transpose(&mut self, x: Val, perm: &[usize], name: &str) -> Result<Val> {
        let shape = self.shape(&x);
        let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        Ok(match x {
            Val::Const(t) => Val::Const(super::transpose_const(&t, perm)),
            Val::Node(id) => self.push(name, Op::Transpose { perm: perm.to_vec() }, vec![id], out),
        })
    }
}

/// A per-tensor (one element) or per-axis (1-D) quantization parameter,
/// shaped to broadcast along axis `a` of a rank-`rank` tensor.
fn along_axis(t: &Tensor, a: i64, rank: usize) -> Result<Tensor> {
    if t.data.len() == 1 || t.shape.len() != 1 {
        return Ok(t.clone());
    }
    let a = axis(a, rank)?;
    let mut shape = vec![1; rank];
    shape[a] = t.data.len();
    Ok(Tensor::new(shape, t.data.clone()))
}

/// The range of an integer element type (ONNX type code).
fn integer_range(code: i32) -> Option<(f64, f64)> {
    Some(match code {
        2 => (0.0, 255.0),
        3 => (-128.0, 127.0),
        4 => (0.0, 65535.0),
        5 => (-32768.0, 32767.0),
        6 => (-2_147_483_648.0, 2_147_483_647.0),
        12 => (0.0, 4_294_967_295.0),
        _ => return None,
    })
}
