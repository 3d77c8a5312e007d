//! The Halo2 circuit of a compiled model.
//!
//! One region, one row per step (a dense step takes `ceil(terms / lanes)`
//! rows). Columns:
//!
//! * advice `x[0..lanes]`, `acc`: inputs and outputs of every gate;
//! * fixed `w[0..lanes]`, `c`, `chain`: weights, constants, accumulator chaining;
//! * fixed selectors, one per gate kind and one per lookup table;
//! * fixed tables `t_on`, `t_u = 0..2^B`, one column per table (a nonlinearity or
//!   gathered constants), `t_exp`;
//! * one instance column: the outputs, then the inputs when public.
//!
//! Gates (each multiplied by its selector):
//! * dot:  `acc = chain*acc[-1] + c + sum x_i*w_i`            (weights fixed)
//! * mul:  `acc = chain*acc[-1] + c + sum x_2j*x_2j+1`        (runtime products)
//! * div:  `x0 + c = x1*w0 + x2`, `x2 in [0, w0)`           (rounded division)
//! * ddiv: `x0*w0 = x1*x6 + x2`, `x2 in [0, x6)`            (softmax division)
//! * limb: `x1 + 2^(2B-1) = x3 + x4*2^B`, `x3, x4 in [0, 2^B)`  (quotient range)
//! * max:  `acc = (chain ? acc[-1] : 1) * (x1 - x0)`, `x1 - x0 = x3 + x4*2^B`
//!   with `x3, x4 in [0, 2^B)` (so `x1 - x0 in [0, 2^2B)`),
//!   `chain*(x1 - x1[-1]) = 0`, and `acc = 0` on the last row of a maximum;
//! * act_t: `(x1, x5) in (t_u - 2^(B-1), f_t)`; exp: `(x1 - x0, x5) in (t_u, t_exp)`.
//!
//! Every value a step outputs is thereby fixed by its inputs: linear results by
//! equality, quotients by a range-checked remainder and quotient, table values
//! by a tagged lookup, and a maximum by being at least every input and equal to
//! one of them. Values move between rows through copy constraints.

use std::sync::Arc;

use halo2_proofs::circuit::{Cell, Layouter, Region, SimpleFloorPlanner, Value};
use halo2_proofs::halo2curves::bn256::Fr;
use halo2_proofs::halo2curves::ff::{Field, PrimeField};
use halo2_proofs::plonk::{Advice, Circuit, Column, ConstraintSystem, Error, Expression, Fixed, Instance};
use halo2_proofs::poly::Rotation;
use serde::{Deserialize, Serialize};

use crate::program::{expneg_value, Program, Step, Table, Witness, V};

/// What `configure` needs to know: the shape of the constraint system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitParams {
    pub lanes: usize,
    pub lookup_bits: u32,
    pub scale: u32,
    pub tables: Vec<Table>,
    pub exp_scale: Option<u32>,
}

impl CircuitParams {
    pub fn of(p: &Program) -> Self {
        CircuitParams {
            lanes: p.settings.lanes,
            lookup_bits: p.settings.lookup_bits,
            scale: p.settings.input_scale,
            tables: p.tables.clone(),
            exp_scale: p.exp_scale,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    params: CircuitParams,
    x: Vec<Column<Advice>>,
    acc: Column<Advice>,
    w: Vec<Column<Fixed>>,
    c: Column<Fixed>,
    chain: Column<Fixed>,
    q_dot: Column<Fixed>,
    q_mul: Column<Fixed>,
    q_div: Column<Fixed>,
    q_ddiv: Column<Fixed>,
    q_limb: Column<Fixed>,
    q_max: Column<Fixed>,
    q_last: Column<Fixed>,
    q_exp: Column<Fixed>,
    q_act: Vec<Column<Fixed>>,
    t_on: Column<Fixed>,
    t_u: Column<Fixed>,
    t_act: Vec<Column<Fixed>>,
    t_exp: Column<Fixed>,
    instance: Column<Instance>,
}

/// A model circuit: the program, and the witness when proving.
#[derive(Clone, Debug)]
pub struct ModelCircuit {
    pub program: Arc<Program>,
    pub witness: Option<Arc<Witness>>,
    /// Test hook: add one to the n-th advice cell assigned, to show that
    /// every cell is constrained.
    pub tamper: Option<usize>,
}

impl ModelCircuit {
    pub fn new(program: Arc<Program>, witness: Option<Arc<Witness>>) -> Self {
        ModelCircuit { program, witness, tamper: None }
    }
}

/// Field element of a signed integer.
pub fn fe(v: i128) -> Fr {
    if v >= 0 {
        Fr::from_u128(v as u128)
    } else {
        -Fr::from_u128(v.unsigned_abs())
    }
}

/// Public instances of a witness as field elements.
pub fn instances(program: &Program, w: &Witness) -> Vec<Fr> {
    program.instance_values(w).into_iter().map(|v| fe(v as i128)).collect()
}

impl Circuit<Fr> for ModelCircuit {
    type Config = ModelConfig;
    type FloorPlanner = SimpleFloorPlanner;
    type Params = CircuitParams;

    fn without_witnesses(&self) -> Self {
        ModelCircuit { program: self.program.clone(), witness: None, tamper: None }
    }

    fn params(&self) -> CircuitParams {
        CircuitParams::of(&self.program)
    }

    fn configure(_meta: &mut ConstraintSystem<Fr>) -> ModelConfig {
        unreachable!("ModelCircuit is configured with parameters")
    }

    fn configure_with_params(meta: &mut ConstraintSystem<Fr>, params: CircuitParams) -> ModelConfig {
        configure(meta, params)
    }

    fn synthesize(&self, config: ModelConfig, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
        let homes = layouter.assign_region(
            || "model",
            |region| {
                let mut a = Assigner::new(&config, region, &self.program, self.witness.as_deref(), self.tamper);
                a.tables();
                a.steps();
                Ok(a.homes)
            },
        )?;
        let mut row = 0;
        let mut public = |v: V| {
            let cell = homes[v as usize].expect("every output has been assigned");
            layouter.constrain_instance(cell, config.instance, row);
            row += 1;
        };
        for ids in &self.program.outputs {
            ids.iter().for_each(|&v| public(v));
        }
        if self.program.settings.public_input {
            for ids in &self.program.inputs {
                ids.iter().for_each(|&v| public(v));
            }
        }
        Ok(())
    }
}

fn configure(meta: &mut ConstraintSystem<Fr>, params: CircuitParams) -> ModelConfig {
    let lanes = params.lanes;
    let x: Vec<_> = (0..lanes).map(|_| meta.advice_column()).collect();
    let acc = meta.advice_column();
    for &col in x.iter().chain([&acc]) {
        meta.enable_equality(col);
    }
    let mut fixed = || meta.fixed_column();
    let w: Vec<_> = (0..lanes).map(|_| fixed()).collect();
    let (c, chain) = (fixed(), fixed());
    let (q_dot, q_mul, q_div, q_ddiv, q_limb, q_max, q_last, q_exp) =
        (fixed(), fixed(), fixed(), fixed(), fixed(), fixed(), fixed(), fixed());
    let q_act: Vec<_> = params.tables.iter().map(|_| fixed()).collect();
    let (t_on, t_u, t_exp) = (fixed(), fixed(), fixed());
    let t_act: Vec<_> = params.tables.iter().map(|_| fixed()).collect();
    let instance = meta.instance_column();
    meta.enable_equality(instance);

    let b = params.lookup_bits;
    let two_b = Expression::Constant(Fr::from(1u64 << b));
    let half = Expression::Constant(Fr::from(1u64 << (b - 1)));
    let limb_offset = Expression::Constant(Fr::from_u128(1u128 << (2 * b - 1)));
    let one = Expression::Constant(Fr::ONE);

    meta.create_gate("dot", |m| {
        let q = m.query_fixed(q_dot, Rotation::cur());
        let sum = (0..lanes).fold(Expression::Constant(Fr::ZERO), |s, i| {
            s + m.query_advice(x[i], Rotation::cur()) * m.query_fixed(w[i], Rotation::cur())
        });
        let prev = m.query_fixed(chain, Rotation::cur()) * m.query_advice(acc, Rotation::prev());
        vec![q * (m.query_advice(acc, Rotation::cur()) - prev - m.query_fixed(c, Rotation::cur()) - sum)]
    });
    meta.create_gate("mul", |m| {
        let q = m.query_fixed(q_mul, Rotation::cur());
        let sum = (0..lanes / 2).fold(Expression::Constant(Fr::ZERO), |s, j| {
            s + m.query_advice(x[2 * j], Rotation::cur()) * m.query_advice(x[2 * j + 1], Rotation::cur())
        });
        let prev = m.query_fixed(chain, Rotation::cur()) * m.query_advice(acc, Rotation::prev());
        vec![q * (m.query_advice(acc, Rotation::cur()) - prev - m.query_fixed(c, Rotation::cur()) - sum)]
    });
    meta.create_gate("div", |m| {
        let q = m.query_fixed(q_div, Rotation::cur());
        let [x0, x1, x2] = [0, 1, 2].map(|i| m.query_advice(x[i], Rotation::cur()));
        let (d, h) = (m.query_fixed(w[0], Rotation::cur()), m.query_fixed(c, Rotation::cur()));
        vec![q * (x0 + h - x1 * d - x2)]
    });
    meta.create_gate("ddiv", |m| {
        let q = m.query_fixed(q_ddiv, Rotation::cur());
        let [x0, x1, x2, x6] = [0, 1, 2, 6].map(|i| m.query_advice(x[i], Rotation::cur()));
        let mult = m.query_fixed(w[0], Rotation::cur());
        vec![q * (x0 * mult - x1 * x6 - x2)]
    });
    meta.create_gate("limb", |m| {
        let q = m.query_fixed(q_limb, Rotation::cur());
        let [x1, x3, x4] = [1, 3, 4].map(|i| m.query_advice(x[i], Rotation::cur()));
        vec![q * (x1 + limb_offset.clone() - x3 - x4 * two_b.clone())]
    });
    meta.create_gate("max", |m| {
        let q = m.query_fixed(q_max, Rotation::cur());
        let ch = m.query_fixed(chain, Rotation::cur());
        let [x0, x1] = [0, 1].map(|i| m.query_advice(x[i], Rotation::cur()));
        let x1_prev = m.query_advice(x[1], Rotation::prev());
        let acc_cur = m.query_advice(acc, Rotation::cur());
        let start = ch.clone() * m.query_advice(acc, Rotation::prev()) + one.clone() - ch.clone();
        let last = m.query_fixed(q_last, Rotation::cur());
        let [x3, x4] = [3, 4].map(|i| m.query_advice(x[i], Rotation::cur()));
        let spread = x1.clone() - x0;
        vec![
            q.clone() * (acc_cur.clone() - start * spread.clone()),
            q.clone() * (spread - x3 - x4 * two_b.clone()),
            q * ch * (x1 - x1_prev),
            last * acc_cur,
        ]
    });

    // Range checks against t_u = [0, 2^B).
    meta.lookup_any("remainder", |m| {
        let q = m.query_fixed(q_div, Rotation::cur()) + m.query_fixed(q_ddiv, Rotation::cur());
        vec![(q * m.query_advice(x[2], Rotation::cur()), m.query_fixed(t_u, Rotation::cur()))]
    });
    meta.lookup_any("remainder below divisor", |m| {
        let x2 = m.query_advice(x[2], Rotation::cur());
        let static_bound =
            m.query_fixed(q_div, Rotation::cur()) * (m.query_fixed(w[0], Rotation::cur()) - one.clone() - x2.clone());
        let dyn_bound =
            m.query_fixed(q_ddiv, Rotation::cur()) * (m.query_advice(x[6], Rotation::cur()) - one.clone() - x2);
        vec![(static_bound + dyn_bound, m.query_fixed(t_u, Rotation::cur()))]
    });
    // The limbs of a quotient's range check, and of a maximum's spread.
    for (name, col) in [("low limb", 3), ("high limb", 4)] {
        meta.lookup_any(name, |m| {
            let q = m.query_fixed(q_limb, Rotation::cur()) + m.query_fixed(q_max, Rotation::cur());
            vec![(q * m.query_advice(x[col], Rotation::cur()), m.query_fixed(t_u, Rotation::cur()))]
        });
    }
    // Function tables, tagged by t_on so that rows past the table (all zero)
    // never match an enabled lookup.
    for (t, (&q_t, &f_t)) in q_act.iter().zip(&t_act).enumerate() {
        meta.lookup_any(format!("table {t}"), |m| {
            let q = m.query_fixed(q_t, Rotation::cur());
            let input = m.query_advice(x[1], Rotation::cur()) + half.clone();
            vec![
                (q.clone(), m.query_fixed(t_on, Rotation::cur())),
                (q.clone() * input, m.query_fixed(t_u, Rotation::cur())),
                (q * m.query_advice(x[5], Rotation::cur()), m.query_fixed(f_t, Rotation::cur())),
            ]
        });
    }
    if params.exp_scale.is_some() {
        meta.lookup_any("exp", |m| {
            let q = m.query_fixed(q_exp, Rotation::cur());
            let d = m.query_advice(x[1], Rotation::cur()) - m.query_advice(x[0], Rotation::cur());
            vec![
                (q.clone(), m.query_fixed(t_on, Rotation::cur())),
                (q.clone() * d, m.query_fixed(t_u, Rotation::cur())),
                (q * m.query_advice(x[5], Rotation::cur()), m.query_fixed(t_exp, Rotation::cur())),
            ]
        });
    }

    ModelConfig {
        params,
        x,
        acc,
        w,
        c,
        chain,
        q_dot,
        q_mul,
        q_div,
        q_ddiv,
        q_limb,
        q_max,
        q_last,
        q_exp,
        q_act,
        t_on,
        t_u,
        t_act,
        t_exp,
        instance,
    }
}

/// Lays out tables and steps in one region.
struct Assigner<'a, 'r> {
    cfg: &'a ModelConfig,
    region: Region<'r, Fr>,
    program: &'a Program,
    vals: Option<&'a [i64]>,
    tamper: Option<usize>,
    advice_count: usize,
    row: usize,
    homes: Vec<Option<Cell>>,
}

impl<'a, 'r> Assigner<'a, 'r> {
    fn new(
        cfg: &'a ModelConfig,
        region: Region<'r, Fr>,
        program: &'a Program,
        witness: Option<&'a Witness>,
        tamper: Option<usize>,
    ) -> Self {
        Assigner {
            cfg,
            region,
            program,
            vals: witness.map(|w| w.values.as_slice()),
            tamper,
            advice_count: 0,
            row: 0,
            homes: vec![None; program.num_values],
        }
    }

    fn val(&self, v: V) -> i128 {
        self.vals.map(|w| w[v as usize] as i128).unwrap_or(0)
    }

    fn fixed(&mut self, col: Column<Fixed>, row: usize, v: i128) {
        if v != 0 {
            self.region.assign_fixed(col, row, fe(v));
        }
    }

    /// Assigns an advice cell in the current row.
    fn advice(&mut self, col: Column<Advice>, v: Fr) -> Cell {
        let mut v = v;
        if self.tamper == Some(self.advice_count) {
            v += Fr::ONE;
        }
        self.advice_count += 1;
        let value = if self.vals.is_some() { Value::known(v) } else { Value::unknown() };
        self.region.assign_advice(col, self.row, value).cell()
    }

    /// Assigns an integer to an advice cell in the current row.
    fn int(&mut self, col: Column<Advice>, v: i128) -> Cell {
        self.advice(col, fe(v))
    }

    /// Assigns `v` as the home cell of a value produced in this row.
    fn define(&mut self, col: Column<Advice>, v: V) -> Cell {
        let cell = self.int(col, self.val(v));
        self.homes[v as usize] = Some(cell);
        cell
    }

    /// Copies value `v` into a cell of the current row.
    fn copy(&mut self, col: Column<Advice>, v: V) {
        let cell = self.int(col, self.val(v));
        let home = self.homes[v as usize].expect("values are defined before use");
        self.region.constrain_equal(cell, home);
    }

    fn on(&mut self, col: Column<Fixed>) {
        self.region.assign_fixed(col, self.row, Fr::ONE);
    }

    fn tables(&mut self) {
        let p = &self.cfg.params;
        let n = 1i64 << p.lookup_bits;
        let half = n / 2;
        for i in 0..n {
            let r = i as usize;
            self.region.assign_fixed(self.cfg.t_on, r, Fr::ONE);
            self.fixed(self.cfg.t_u, r, i as i128);
            for (t, table) in p.tables.iter().enumerate() {
                self.fixed(self.cfg.t_act[t], r, table.value(i - half, p.scale) as i128);
            }
            if let Some(es) = p.exp_scale {
                self.fixed(self.cfg.t_exp, r, expneg_value(i, p.scale, es) as i128);
            }
        }
    }

    fn steps(&mut self) {
        for (step, _) in &self.program.steps {
            match step {
                Step::Input { out } => self.input(*out),
                Step::Dot { terms, bias, out } => self.dot(terms, *bias, *out),
                Step::Mul { pairs, bias, out } => self.mul(pairs, *bias, *out),
                Step::Div { input, divisor, out, act } => self.div(*input, *divisor, *out, *act),
                Step::Act { input, table, out } => {
                    self.copy(self.cfg.x[1], *input);
                    self.define(self.cfg.x[5], *out);
                    self.on(self.cfg.q_act[*table as usize]);
                    self.row += 1;
                }
                Step::Max { inputs, out, exp } => self.max(inputs, *out, exp.as_deref()),
                Step::DivBy { num, den, mult, out } => self.div_by(*num, *den, *mult, *out),
            }
        }
    }

    /// Limb decomposition of the value in x1 (range check of a quotient).
    fn limbs(&mut self, v: i128) {
        let b = self.cfg.params.lookup_bits;
        let u = v + (1i128 << (2 * b - 1));
        self.int(self.cfg.x[3], u & ((1 << b) - 1));
        self.int(self.cfg.x[4], u >> b);
        self.on(self.cfg.q_limb);
    }

    fn input(&mut self, out: V) {
        self.define(self.cfg.x[1], out);
        self.limbs(self.val(out));
        self.row += 1;
    }

    /// Dense rows shared by `dot` and `mul`: each row adds `lanes` terms.
    fn accumulate<T: Copy>(
        &mut self,
        items: &[T],
        per_row: usize,
        bias: i64,
        out: V,
        selector: Column<Fixed>,
        row_fn: impl Fn(&mut Self, &[T]) -> i128,
    ) {
        let chunks: Vec<&[T]> = if items.is_empty() { vec![&[]] } else { items.chunks(per_row).collect() };
        let mut acc = bias as i128;
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            acc += row_fn(self, chunk);
            if i == 0 {
                self.fixed(self.cfg.c, self.row, bias as i128);
            } else {
                self.on(self.cfg.chain);
            }
            self.on(selector);
            if i == last {
                self.define(self.cfg.acc, out);
            } else {
                self.int(self.cfg.acc, acc);
            }
            self.row += 1;
        }
    }

    fn dot(&mut self, terms: &[(V, i64)], bias: i64, out: V) {
        let lanes = self.cfg.params.lanes;
        self.accumulate(terms, lanes, bias, out, self.cfg.q_dot, |s, chunk| {
            let mut sum = 0;
            for (i, &(v, w)) in chunk.iter().enumerate() {
                s.copy(s.cfg.x[i], v);
                s.fixed(s.cfg.w[i], s.row, w as i128);
                sum += s.val(v) * w as i128;
            }
            sum
        });
    }

    fn mul(&mut self, pairs: &[(V, V)], bias: i64, out: V) {
        let per_row = self.cfg.params.lanes / 2;
        self.accumulate(pairs, per_row, bias, out, self.cfg.q_mul, |s, chunk| {
            let mut sum = 0;
            for (j, &(a, b)) in chunk.iter().enumerate() {
                s.copy(s.cfg.x[2 * j], a);
                s.copy(s.cfg.x[2 * j + 1], b);
                sum += s.val(a) * s.val(b);
            }
            sum
        });
    }

    fn div(&mut self, input: V, divisor: i64, out: V, act: Option<(u16, V)>) {
        let (z, d) = (self.val(input), divisor as i128);
        let q = self.val(out);
        self.copy(self.cfg.x[0], input);
        self.define(self.cfg.x[1], out);
        self.int(self.cfg.x[2], z + d / 2 - q * d);
        self.limbs(q);
        self.fixed(self.cfg.w[0], self.row, d);
        self.fixed(self.cfg.c, self.row, d / 2);
        self.on(self.cfg.q_div);
        if let Some((t, o)) = act {
            self.define(self.cfg.x[5], o);
            self.on(self.cfg.q_act[t as usize]);
        }
        self.row += 1;
    }

    fn max(&mut self, inputs: &[V], out: V, exp: Option<&[V]>) {
        let m = self.val(out);
        let mut prod = Fr::ONE;
        for (i, &v) in inputs.iter().enumerate() {
            self.copy(self.cfg.x[0], v);
            if i == 0 {
                self.define(self.cfg.x[1], out);
            } else {
                self.int(self.cfg.x[1], m);
                self.on(self.cfg.chain);
            }
            let spread = m - self.val(v);
            prod *= fe(spread);
            self.advice(self.cfg.acc, prod);
            let b = self.cfg.params.lookup_bits;
            self.int(self.cfg.x[3], spread & ((1 << b) - 1));
            self.int(self.cfg.x[4], spread >> b);
            self.on(self.cfg.q_max);
            if i + 1 == inputs.len() {
                self.on(self.cfg.q_last);
            }
            if let Some(exp) = exp {
                self.define(self.cfg.x[5], exp[i]);
                self.on(self.cfg.q_exp);
            }
            self.row += 1;
        }
    }

    fn div_by(&mut self, num: V, den: V, mult: i64, out: V) {
        let (n, d, o) = (self.val(num), self.val(den), self.val(out));
        self.copy(self.cfg.x[0], num);
        self.define(self.cfg.x[1], out);
        self.int(self.cfg.x[2], n * mult as i128 - o * d);
        self.limbs(o);
        self.copy(self.cfg.x[6], den);
        self.fixed(self.cfg.w[0], self.row, mult as i128);
        self.on(self.cfg.q_ddiv);
        self.row += 1;
    }
}

/// Rows reserved at the end of the domain for blinding.
pub const RESERVED_ROWS: usize = 10;

/// Smallest k whose domain holds the program's rows and lookup tables.
pub fn min_k(program: &Program) -> u32 {
    let rows = program.step_rows().max(1 << program.settings.lookup_bits) + RESERVED_ROWS;
    let mut k = 4;
    while (1usize << k) < rows {
        k += 1;
    }
    k
}
