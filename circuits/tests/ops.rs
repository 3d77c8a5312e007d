//! Per-op tests: each op on random shapes and values is proven with MockProver
//! and with zkfarm's own prover (a real KZG proof that halo2-axiom's verifier
//! must accept), and its public outputs are compared with an integer
//! reference written here independently of the lowering. Then soundness
//! (every advice cell of a compiled model is constrained) and bad input.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use halo2_proofs::dev::MockProver;
use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_proofs::plonk::{keygen_pk, keygen_vk, verify_proof};
use halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::graph::*;
use zkfarm_circuits::quantize::compile;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Program, Settings};
use zkfarm_plonk::{create_proof, CpuBackend, Domain, ProvingData};

const S: u32 = 6;
const P: u32 = 6;

fn settings() -> Settings {
    Settings { input_scale: S, param_scale: P, lookup_bits: 10, lanes: 8, public_input: false, ..Settings::default() }
}

/// A graph with one runtime input of `shape` feeding `op`.
fn single(shape: &[usize], op: Op, out_shape: &[usize]) -> Graph {
    let mut g = Graph::default();
    let x = g.push("x", Op::Input { index: 0 }, vec![], shape.to_vec());
    g.inputs.push(x);
    let y = g.push("op", op, vec![x], out_shape.to_vec());
    g.outputs.push(y);
    g
}

/// Compiles, runs integer inference, checks MockProver and returns the
/// quantized inputs and the public outputs.
fn prove_mock(g: &Graph, s: &Settings, input: &[f64]) -> (Vec<i64>, Vec<i64>) {
    let program = compile(g, s).unwrap();
    let model = CompiledModel::from_program(program, "test".into());
    let witness = model.run(&[input.to_vec()]).unwrap();
    let inst = instances(&model.program, &witness);
    let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(witness.clone())));
    MockProver::run(model.k, &circuit, vec![inst.clone()]).unwrap().assert_satisfied_par();
    prove_for_real(model.k, &circuit, &inst);
    let q = model.program.quantize_inputs(&[input.to_vec()]).unwrap().remove(0);
    (q, model.program.output_values(&witness).remove(0))
}

/// KZG parameters for 2^k rows, made once per k from a fixed seed.
fn params(k: u32) -> Arc<ParamsKZG<Bn256>> {
    static PARAMS: OnceLock<Mutex<HashMap<u32, Arc<ParamsKZG<Bn256>>>>> = OnceLock::new();
    let mut all = PARAMS.get_or_init(Mutex::default).lock().unwrap();
    all.entry(k).or_insert_with(|| Arc::new(ParamsKZG::setup(k, ChaCha20Rng::seed_from_u64(u64::from(k))))).clone()
}

/// Proves `circuit` with zkfarm's prover and checks that halo2-axiom's
/// verifier accepts the proof for `inst` and rejects it for a changed
/// public output.
fn prove_for_real(k: u32, circuit: &ModelCircuit, inst: &[Fr]) {
    let params = params(k);
    let vk = keygen_vk(&*params, circuit).unwrap();
    let pk = keygen_pk(&*params, vk, circuit).unwrap();
    let backend = CpuBackend::new(Domain::of(pk.get_vk().get_domain()), params.clone());
    let data = ProvingData::new(&backend, &pk).unwrap();
    let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
    create_proof(&backend, &pk, &data, circuit, &[inst], ChaCha20Rng::seed_from_u64(0), &mut transcript).unwrap();
    let proof = transcript.finalize();
    let accepts = |inst: &[Fr]| {
        let mut transcript = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(&proof[..]);
        verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
            &*params,
            pk.get_vk(),
            SingleStrategy::new(&*params),
            &[&[inst]],
            &mut transcript,
        )
        .is_ok()
    };
    assert!(accepts(inst), "halo2-axiom rejected zkfarm's proof");
    let mut changed = inst.to_vec();
    changed[0] += Fr::one();
    assert!(!accepts(&changed), "a changed public output was accepted");
}

/// A function value as its table entry: rounded at scale S, 0 where it is
/// not a number, and cut to ±2^40 (±∞ included).
fn table_entry(f: f64) -> i64 {
    let v = (f * (1u64 << S) as f64).round();
    let limit = (1i64 << 40) as f64;
    if v.is_nan() {
        0
    } else if v > limit {
        1 << 40
    } else if v < -limit {
        -(1 << 40)
    } else {
        v as i64
    }
}

fn quant(x: f64, s: u32) -> i64 {
    (x * (1u64 << s) as f64).round() as i64
}

/// Reference rounded division: floor((z + d/2) / d).
fn rdiv(z: i64, d: i64) -> i64 {
    (z + d / 2).div_euclid(d)
}

fn random_input(rng: &mut ChaCha20Rng, n: usize, range: f64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|_| rng.gen_range(-range..range)).collect();
    // Zero and exact negatives are edge cases of rounding; always include them.
    if n > 2 {
        v[0] = 0.0;
        v[1] = -1.0;
    }
    v
}

#[test]
fn dense_matches_integer_reference() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for _ in 0..4 {
        let (k, n) = (rng.gen_range(1..20), rng.gen_range(1..6));
        let w: Vec<f64> = (0..n * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let g = single(&[1, k], Op::Dense { weight: Tensor::new(vec![n, k], w.clone()), bias: b.clone() }, &[1, n]);
        let x = random_input(&mut rng, k, 2.0);
        let (xq, out) = prove_mock(&g, &settings(), &x);
        for j in 0..n {
            let z: i64 = (0..k).map(|i| xq[i] * quant(w[j * k + i], P)).sum::<i64>() + quant(b[j], S + P);
            assert_eq!(out[j], rdiv(z, 1 << P), "output {j}");
        }
    }
}

#[test]
fn conv_matches_integer_reference() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for (stride, pad) in [(1, 0), (2, 1)] {
        let (ci, co, h, w, kk) = (2, 3, 6, 5, 3);
        let wt: Vec<f64> = (0..co * ci * kk * kk).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let bias: Vec<f64> = (0..co).map(|_| rng.gen_range(-0.5..0.5)).collect();
        let window =
            Window { kernel: [kk, kk], stride: [stride, stride], pads: [pad; 4], dilation: [1, 1], overhang: [0; 2] };
        let [oh, ow] = window.output_hw(h, w).unwrap();
        let op = Op::Conv { weight: Tensor::new(vec![co, ci, kk, kk], wt.clone()), bias: bias.clone(), window };
        let g = single(&[1, ci, h, w], op, &[1, co, oh, ow]);
        let x = random_input(&mut rng, ci * h * w, 1.5);
        let (xq, out) = prove_mock(&g, &settings(), &x);
        let mut idx = 0;
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut z = quant(bias[o], S + P);
                    for c in 0..ci {
                        for ky in 0..kk {
                            for kx in 0..kk {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xv = xq[(c * h + iy as usize) * w + ix as usize];
                                    z += xv * quant(wt[((o * ci + c) * kk + ky) * kk + kx], P);
                                }
                            }
                        }
                    }
                    assert_eq!(out[idx], rdiv(z, 1 << P));
                    idx += 1;
                }
            }
        }
    }
}

#[test]
fn activations_match_rounded_functions_over_the_whole_range() {
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Clip { lo: 0.0, hi: 6.0 },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Elu { alpha: 1.0 },
        Activation::Selu { alpha: 1.67, gamma: 1.05 },
        Activation::Celu { alpha: 2.0 },
        Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Activation::HardSwish,
        Activation::Softplus,
        Activation::Softsign,
        Activation::Mish,
        Activation::Erf,
        Activation::Gelu { tanh: false },
        Activation::Gelu { tanh: true },
        Activation::ThresholdedRelu { alpha: 1.0 },
        Activation::Shrink { bias: 0.5, lambd: 1.0 },
        // Far out of range at the table's ends: saturated.
        Activation::Exp,
        // Not finite at 0 and below: 0 for NaN, −2^40 for −∞.
        Activation::Log,
        Activation::Sqrt,
        Activation::Reciprocal,
        Activation::Abs,
        Activation::Sign,
        Activation::Floor,
        Activation::Ceil,
        Activation::Round,
        Activation::Sin,
        Activation::Cos,
        Activation::Tan,
        Activation::Asin,
        Activation::Acos,
        Activation::Atan,
        Activation::Sinh,
        Activation::Cosh,
        Activation::Asinh,
        Activation::Acosh,
        Activation::Atanh,
        Activation::Pow { exponent: 1.5 },
    ];
    let s = settings();
    let half = 1i64 << (s.lookup_bits - 1);
    // Every value of the lookup range, including both edges.
    let xs: Vec<f64> =
        (-half..half).step_by(7).chain([half - 1, -half]).map(|q| q as f64 / (1u64 << S) as f64).collect();
    for act in acts {
        let g = single(&[xs.len()], Op::Act(act), &[xs.len()]);
        let (xq, out) = prove_mock(&g, &s, &xs);
        for (x, y) in xq.iter().zip(&out) {
            let f = act.eval(*x as f64 / (1u64 << S) as f64);
            assert_eq!(*y, table_entry(f), "{act:?} at {x}");
        }
    }
}

#[test]
fn activation_outside_the_table_is_a_clear_error() {
    let s = settings();
    let half = (1i64 << (s.lookup_bits - 1)) as f64 / (1u64 << S) as f64;
    let g = single(&[1], Op::Act(Activation::Sigmoid), &[1]);
    let program = compile(&g, &s).unwrap();
    let err = program.run(&[vec![half]]).unwrap_err();
    assert!(format!("{err:#}").contains("lookup table range"), "{err:#}");
    assert!(format!("{err:#}").contains("node `op`"), "{err:#}");
}

#[test]
fn arithmetic_with_broadcasting() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for op in [Arith::Add, Arith::Sub, Arith::Mul] {
        let mut g = Graph::default();
        let a = g.push("a", Op::Input { index: 0 }, vec![], vec![2, 3]);
        g.inputs.push(a);
        let b = g.push("b", Op::Input { index: 1 }, vec![], vec![3]);
        g.inputs.push(b);
        let c: Vec<f64> = (0..3).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let k = g.push("k", Op::Const(Tensor::new(vec![2, 1], vec![0.5, -1.25])), vec![], vec![2, 1]);
        let y = g.push("y", Op::Arith(op), vec![a, b], vec![2, 3]);
        let z = g.push("z", Op::Arith(op), vec![y, k], vec![2, 3]);
        g.outputs.push(z);
        let xa = random_input(&mut rng, 6, 2.0);
        let program = compile(&g, &settings()).unwrap();
        let model = CompiledModel::from_program(program, "t".into());
        let w = model.run(&[xa.clone(), c.clone()]).unwrap();
        let circuit = ModelCircuit::new(model.program.clone(), Some(Arc::new(w.clone())));
        let inst = instances(&model.program, &w);
        MockProver::run(model.k, &circuit, vec![inst.clone()]).unwrap().assert_satisfied_par();
        prove_for_real(model.k, &circuit, &inst);
        let q = model.program.quantize_inputs(&[xa, c]).unwrap();
        let out = &model.program.output_values(&w)[0];
        let kq = [0.5, -1.25];
        for i in 0..2 {
            for j in 0..3 {
                let (p, r) = (q[0][i * 3 + j], q[1][j]);
                let y = match op {
                    Arith::Add => p + r,
                    Arith::Sub => p - r,
                    Arith::Mul => rdiv(p * r, 1 << S),
                };
                let z = match op {
                    Arith::Add => y + quant(kq[i], S),
                    Arith::Sub => y - quant(kq[i], S),
                    Arith::Mul => rdiv(y * quant(kq[i], P), 1 << P),
                };
                assert_eq!(out[i * 3 + j], z, "{op:?} at {i},{j}");
            }
        }
    }
}

#[test]
fn pools_match_integer_reference() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (c, h, w) = (2, 5, 4);
    let x = random_input(&mut rng, c * h * w, 3.0);
    let win = Window { kernel: [2, 2], stride: [2, 2], pads: [0, 0, 1, 0], dilation: [1, 1], overhang: [0; 2] };
    let [oh, ow] = win.output_hw(h, w).unwrap();
    for avg in [false, true] {
        let op =
            if avg { Op::AvgPool { window: win.clone(), count_include_pad: false } } else { Op::MaxPool(win.clone()) };
        let g = single(&[1, c, h, w], op, &[1, c, oh, ow]);
        let (xq, out) = prove_mock(&g, &settings(), &x);
        let mut idx = 0;
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let taps: Vec<i64> = (0..2)
                        .flat_map(|ky| (0..2).map(move |kx| (oy * 2 + ky, ox * 2 + kx)))
                        .filter(|&(iy, ix)| iy < h && ix < w)
                        .map(|(iy, ix)| xq[(ch * h + iy) * w + ix])
                        .collect();
                    let want =
                        if avg { rdiv(taps.iter().sum(), taps.len() as i64) } else { *taps.iter().max().unwrap() };
                    assert_eq!(out[idx], want);
                    idx += 1;
                }
            }
        }
    }
    let g = single(&[1, c, h, w], Op::GlobalAvgPool, &[1, c, 1, 1]);
    let (xq, out) = prove_mock(&g, &settings(), &x);
    for ch in 0..c {
        assert_eq!(out[ch], rdiv(xq[ch * h * w..(ch + 1) * h * w].iter().sum(), (h * w) as i64));
    }
}

#[test]
fn softmax_tracks_the_float_softmax() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let x = random_input(&mut rng, 12, 3.0);
    let g = single(&[2, 6], Op::Softmax, &[2, 6]);
    let (xq, out) = prove_mock(&g, &settings(), &x);
    for row in 0..2 {
        let r: Vec<f64> = xq[row * 6..(row + 1) * 6].iter().map(|&q| q as f64 / (1u64 << S) as f64).collect();
        let m = r.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = r.iter().map(|v| (v - m).exp()).sum();
        for i in 0..6 {
            let want = (r[i] - m).exp() / sum;
            let got = out[row * 6 + i] as f64 / (1u64 << S) as f64;
            assert!((want - got).abs() < 0.05, "row {row} item {i}: {got} vs {want}");
        }
    }
}

#[test]
fn shape_ops_and_dynamic_matmul() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut g = Graph::default();
    let a = g.push("a", Op::Input { index: 0 }, vec![], vec![2, 3]);
    g.inputs.push(a);
    let t = g.push("t", Op::Transpose { perm: vec![1, 0] }, vec![a], vec![3, 2]);
    let m = g.push("m", Op::MatMulDyn, vec![a, t], vec![2, 2]);
    let r = g.push("r", Op::Reshape, vec![m], vec![4]);
    let f = g.push("f", Op::Reshape, vec![a], vec![6]);
    let c = g.push("c", Op::Concat { axis: 0 }, vec![r, f], vec![10]);
    g.outputs.push(c);
    let x = random_input(&mut rng, 6, 2.0);
    let (xq, out) = prove_mock(&g, &settings(), &x);
    for i in 0..2 {
        for j in 0..2 {
            let z: i64 = (0..3).map(|k| xq[i * 3 + k] * xq[j * 3 + k]).sum();
            assert_eq!(out[i * 2 + j], rdiv(z, 1 << S));
        }
    }
    assert_eq!(&out[4..], &xq[..]);
}

#[test]
fn reductions_match_integer_reference() {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let shape = [2usize, 3, 4];
    let kinds =
        [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min, Reduce::SumSquare, Reduce::L1, Reduce::L2, Reduce::Prod];
    for (i, kind) in kinds.into_iter().enumerate() {
        // A different set of axes for each kind, kept or dropped.
        let axes: Vec<usize> =
            [vec![2], vec![0, 2], vec![1], vec![0, 1, 2], vec![1, 2], vec![0], vec![2], vec![1]][i].clone();
        let keep = i % 2 == 0;
        let out_shape: Vec<usize> =
            (0..3).filter_map(|d| if axes.contains(&d) { keep.then_some(1) } else { Some(shape[d]) }).collect();
        let g = single(&shape, Op::Reduce { kind, axes: axes.clone() }, &out_shape);
        let x = random_input(&mut rng, 24, 1.0);
        let (xq, out) = prove_mock(&g, &settings(), &x);
        let groups = reduction_groups(&shape, &axes);
        assert_eq!(out.len(), groups.len());
        for (g, y) in groups.iter().zip(&out) {
            let q: Vec<i64> = g.iter().map(|&i| xq[i]).collect();
            let sum_sq = rdiv(q.iter().map(|v| v * v).sum(), 1 << S);
            let want = match kind {
                Reduce::Sum => q.iter().sum(),
                Reduce::Mean => rdiv(q.iter().sum(), q.len() as i64),
                Reduce::Max => *q.iter().max().unwrap(),
                Reduce::Min => *q.iter().min().unwrap(),
                Reduce::SumSquare => sum_sq,
                Reduce::L1 => q.iter().map(|v| v.abs()).sum(),
                Reduce::L2 => table_entry((sum_sq as f64 / (1u64 << S) as f64).sqrt()),
                // Rescaled after each product.
                Reduce::Prod => q[1..].iter().fold(q[0], |acc, v| rdiv(acc * v, 1 << S)),
                Reduce::LogSumExp => unreachable!("not in this list: runtime_ops checks it against tract"),
            };
            assert_eq!(*y, want, "{kind:?} over {axes:?} of {q:?}");
        }
    }
}

/// Number of advice cells the circuit assigns for a program.
fn advice_cells(p: &Program) -> usize {
    p.steps.iter().map(|(s, _)| s.advice_cells(p.settings.lanes)).sum()
}

/// Adds one to each advice cell of the witness in turn: MockProver must
/// reject every single mutation.
#[test]
fn every_advice_cell_is_constrained() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let onnx = std::fs::read(dir.join("nonlinear.onnx")).unwrap();
    let input = zkfarm_circuits::input::read_input(&dir.join("nonlinear.input.json")).unwrap();
    let s = Settings { input_scale: 5, param_scale: 5, lookup_bits: 9, ..Settings::default() };
    let model = CompiledModel::compile(&onnx, &s).unwrap();
    let witness = Arc::new(model.run(&input).unwrap());
    let cells = advice_cells(&model.program);
    assert!(cells > 500, "{cells}");
    common::assert_every_cell_constrained(&model, witness);
}

#[test]
fn changed_public_output_is_rejected() {
    let g = single(&[4], Op::Act(Activation::Tanh), &[4]);
    let model = CompiledModel::from_program(compile(&g, &settings()).unwrap(), "t".into());
    let w = model.run(&[vec![0.5, -0.25, 1.0, 0.0]]).unwrap();
    let mut inst = instances(&model.program, &w);
    inst[2] += Fr::one();
    let c = ModelCircuit::new(model.program.clone(), Some(Arc::new(w)));
    assert!(MockProver::run(model.k, &c, vec![inst]).unwrap().verify_par().is_err());
}

mod bad_input {
    use super::*;

    fn onnx_with(op: &str, name: &str) -> Vec<u8> {
        crate::common::one_node_model(op, name, vec![], &[], &[1, 4], 13)
    }

    #[test]
    fn unsupported_op_names_op_and_node() {
        let err = CompiledModel::compile(&onnx_with("Det", "my_det"), &Settings::default()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("Det") && msg.contains("my_det"), "{msg}");
        // The same graph with a supported op compiles.
        assert!(CompiledModel::compile(&onnx_with("Relu", "r"), &Settings::default()).is_ok());
    }

    /// Every unsupported op of a model is named at once, with its nodes.
    #[test]
    fn all_unsupported_ops_are_listed_at_once() {
        use crate::common::{graph_model, node};
        let onnx = graph_model(
            vec![
                node("Det", "d1", &["x"], "a", vec![]),
                node("Relu", "r", &["a"], "b", vec![]),
                node("STFT", "p1", &["b"], "c", vec![]),
                node("Det", "d2", &["c"], "y", vec![]),
            ],
            vec![],
            &[1, 4],
            &[1, 4],
            13,
        );
        let msg = format!("{:#}", CompiledModel::compile(&onnx, &Settings::default()).unwrap_err());
        assert!(msg.contains("2 unsupported ops"), "{msg}");
        assert!(msg.contains("`Det` at nodes `d1`, `d2`") && msg.contains("`STFT` at node `p1`"), "{msg}");
        assert!(!msg.contains("Relu"), "{msg}");
    }

    /// Each op the importer claims reaches its own translation: a node of it
    /// with no inputs fails on what it lacks, never as unsupported.
    #[test]
    fn every_listed_op_is_translated() {
        let listed = zkfarm_circuits::onnx::SUPPORTED_OPS.iter().chain(zkfarm_circuits::onnx::COMPOSITE_OPS);
        for op in listed.copied().chain(["Less", "Equal", "ReduceL2"]) {
            assert!(zkfarm_circuits::onnx::is_supported(op), "{op}");
            let onnx = crate::common::graph_model(
                vec![crate::common::node(op, "n", &[], "y", vec![])],
                vec![],
                &[1, 4],
                &[1, 4],
                13,
            );
            if let Err(e) = CompiledModel::compile(&onnx, &Settings::default()) {
                assert!(!format!("{e:#}").contains("unsupported op"), "{op}: {e:#}");
            }
        }
        assert!(!zkfarm_circuits::onnx::is_supported("Det"));
        // onnxruntime's com.microsoft ops and ai.onnx.ml's, likewise.
        let ms = zkfarm_circuits::onnx::MICROSOFT_OPS.iter().map(|op| (op, "com.microsoft"));
        for (op, domain) in ms.chain(zkfarm_circuits::onnx::ML_OPS.iter().map(|op| (op, "ai.onnx.ml"))) {
            let mut n = crate::common::node(op, "n", &[], "y", vec![]);
            n.domain = domain.into();
            let onnx = crate::common::graph_model(vec![n], vec![], &[1, 4], &[1, 4], 13);
            let err = CompiledModel::compile(&onnx, &Settings::default()).unwrap_err();
            assert!(!format!("{err:#}").contains("unsupported op"), "{op}: {err:#}");
        }
    }

    /// A tree ensemble whose branch reaches one node by both edges (paths
    /// would multiply), or whose node points at itself, is refused.
    #[test]
    fn malformed_tree_ensembles_are_errors() {
        use tract_onnx::pb::AttributeProto;
        let ints = |name: &str, v: &[i64]| AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        };
        let floats = |name: &str, v: &[f32]| AttributeProto {
            name: name.into(),
            r#type: 6,
            floats: v.to_vec(),
            ..Default::default()
        };
        let modes = |v: &[&str]| AttributeProto {
            name: "nodes_modes".into(),
            r#type: 8,
            strings: v.iter().map(|m| m.as_bytes().to_vec()).collect(),
            ..Default::default()
        };
        for (yes, no, what) in [([1, 1], [1, 1], "twice"), ([0, 1], [1, 1], "")] {
            let attrs = vec![
                ints("nodes_treeids", &[0, 0]),
                ints("nodes_nodeids", &[0, 1]),
                ints("nodes_featureids", &[0, 0]),
                floats("nodes_values", &[0.5, 0.0]),
                modes(&["BRANCH_LEQ", "LEAF"]),
                ints("nodes_truenodeids", &yes),
                ints("nodes_falsenodeids", &no),
                ints("target_treeids", &[0]),
                ints("target_nodeids", &[1]),
                ints("target_ids", &[0]),
                floats("target_weights", &[1.0]),
            ];
            let mut n = crate::common::node("TreeEnsembleRegressor", "t", &["x"], "y", attrs);
            n.domain = "ai.onnx.ml".into();
            let onnx = crate::common::graph_model(vec![n], vec![], &[1, 4], &[1, 1], 13);
            let err = CompiledModel::compile(&onnx, &Settings::default()).unwrap_err();
            assert!(format!("{err:#}").contains(what), "{err:#}");
        }
    }

    #[test]
    fn corrupt_onnx_is_an_error() {
        let err = CompiledModel::compile(b"\x08\x01garbage\xff\xff", &Settings::default()).unwrap_err();
        assert!(format!("{err:#}").contains("not a valid ONNX model"), "{err:#}");
        let good = onnx_with("Relu", "r");
        for cut in [1, good.len() / 2, good.len() - 1] {
            assert!(CompiledModel::compile(&good[..cut], &Settings::default()).is_err());
        }
    }

    #[test]
    fn wrong_shape_and_nan_are_errors() {
        let model = CompiledModel::compile(&onnx_with("Relu", "r"), &Settings::default()).unwrap();
        let err = model.run(&[vec![1.0, 2.0]]).unwrap_err();
        assert!(format!("{err:#}").contains("expects shape [1, 4]"), "{err:#}");
        let err = model.run(&[vec![1.0, f64::NAN, 0.0, 0.0]]).unwrap_err();
        assert!(format!("{err:#}").contains("NaN"), "{err:#}");
        let err = model.run(&[vec![1.0; 4], vec![1.0; 4]]).unwrap_err();
        assert!(format!("{err:#}").contains("takes 1 input"), "{err:#}");
        assert!(zkfarm_circuits::onnx::import_file(std::path::Path::new("/nonexistent.onnx")).is_err());
    }
}
