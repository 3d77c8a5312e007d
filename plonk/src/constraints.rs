//! The constraint system of a proving key compiled into programs: one for
//! the quotient's numerator on the extended coset (every gate, the
//! permutation argument and the lookup arguments, folded with y in the
//! verifier's order), and one per lookup side to compress its columns with
//! θ on the rows.

use halo2_proofs::halo2curves::bn256::{Fr, G1Affine};
use halo2_proofs::halo2curves::ff::{Field, PrimeField};
use halo2_proofs::plonk::{Any, ConstraintSystem, Expression, ProvingKey};

use crate::program::{Builder, Program};
use crate::ProveError;

/// Where each polynomial sits in a program's operand table. Fixed, advice
/// and instance columns come first, in that order, so that the row programs
/// (which read only those) share the quotient program's numbering.
#[derive(Clone, Debug)]
pub struct Layout {
    pub fixed: usize,
    pub advice: usize,
    pub instance: usize,
    pub sigmas: usize,
    pub permutation_sets: usize,
    pub lookups: usize,
}

impl Layout {
    /// The polynomials of a constraint system of degree 3 or more.
    pub fn of(cs: &ConstraintSystem<Fr>) -> Self {
        let chunk_len = cs.degree().max(3) - 2;
        let sigmas = cs.permutation().get_columns().len();
        Layout {
            fixed: cs.num_fixed_columns(),
            advice: cs.num_advice_columns(),
            instance: cs.num_instance_columns(),
            sigmas,
            permutation_sets: sigmas.div_ceil(chunk_len),
            lookups: cs.lookups().len(),
        }
    }

    pub fn fixed(&self, c: usize) -> usize {
        c
    }
    pub fn advice(&self, c: usize) -> usize {
        self.fixed + c
    }
    pub fn instance(&self, c: usize) -> usize {
        self.fixed + self.advice + c
    }
    /// The end of the columns the row programs read.
    pub fn columns(&self) -> usize {
        self.fixed + self.advice + self.instance
    }
    pub fn sigma(&self, j: usize) -> usize {
        self.columns() + j
    }
    pub fn l0(&self) -> usize {
        self.columns() + self.sigmas
    }
    pub fn l_last(&self) -> usize {
        self.l0() + 1
    }
    pub fn l_active(&self) -> usize {
        self.l0() + 2
    }
    pub fn permutation_z(&self, set: usize) -> usize {
        self.l0() + 3 + set
    }
    fn lookup_base(&self, l: usize) -> usize {
        self.permutation_z(self.permutation_sets) + 3 * l
    }
    /// A' (permuted input), S' (permuted table) and Z of lookup `l`.
    pub fn lookup_input(&self, l: usize) -> usize {
        self.lookup_base(l)
    }
    pub fn lookup_table(&self, l: usize) -> usize {
        self.lookup_base(l) + 1
    }
    pub fn lookup_z(&self, l: usize) -> usize {
        self.lookup_base(l) + 2
    }
    pub fn total(&self) -> usize {
        self.lookup_base(self.lookups)
    }
}

/// Runtime scalars, after the circuit's own challenges (none today).
pub const THETA: usize = 0;
pub const BETA: usize = 1;
pub const GAMMA: usize = 2;
pub const Y: usize = 3;

/// Everything compiled from one proving key.
pub struct Compiled {
    pub layout: Layout,
    /// The quotient's numerator, on the extended coset.
    pub quotient: Program,
    /// Per lookup: θ-compressed input and table expressions, on the rows.
    pub lookup_inputs: Vec<Program>,
    pub lookup_tables: Vec<Program>,
    /// Columns per permutation set.
    pub chunk_len: usize,
}

pub fn compile(pk: &ProvingKey<G1Affine>) -> Result<Compiled, ProveError> {
    let cs = pk.get_vk().cs();
    let degree = cs.degree();
    if degree < 3 {
        return Err(ProveError::Unsupported(format!("constraint degree {degree} (the permutation argument needs 3)")));
    }
    let chunk_len = degree - 2;
    let layout = Layout::of(cs);

    let mut b = Builder::default();
    let mut roots = Vec::new();
    for gate in cs.gates() {
        for poly in gate.polynomials() {
            roots.push(expression(&mut b, &layout, poly)?);
        }
    }
    permutation_constraints(&mut b, &layout, cs, chunk_len, &mut roots);
    for (l, lookup) in cs.lookups().iter().enumerate() {
        let input = compress(&mut b, &layout, lookup.input_expressions())?;
        let table = compress(&mut b, &layout, lookup.table_expressions())?;
        lookup_constraints(&mut b, &layout, l, input, table, &mut roots);
    }
    let y = b.scalar(Y);
    let out = b.fold(&roots, y);
    let quotient = b.finish(out);

    let mut lookup_inputs = Vec::new();
    let mut lookup_tables = Vec::new();
    for lookup in cs.lookups() {
        for (exprs, into) in
            [(lookup.input_expressions(), &mut lookup_inputs), (lookup.table_expressions(), &mut lookup_tables)]
        {
            let mut b = Builder::default();
            let out = compress(&mut b, &layout, exprs)?;
            into.push(b.finish(out));
        }
    }
    Ok(Compiled { layout, quotient, lookup_inputs, lookup_tables, chunk_len })
}

fn expression(b: &mut Builder, layout: &Layout, e: &Expression<Fr>) -> Result<u32, ProveError> {
    Ok(match e {
        Expression::Constant(c) => b.constant(*c),
        Expression::Selector(_) => {
            return Err(ProveError::Unsupported("a virtual selector left in the constraint system".into()))
        }
        Expression::Fixed(q) => b.leaf(layout.fixed(q.column_index()), q.rotation().0),
        Expression::Advice(q) => b.leaf(layout.advice(q.column_index()), q.rotation().0),
        Expression::Instance(q) => b.leaf(layout.instance(q.column_index()), q.rotation().0),
        Expression::Challenge(_) => return Err(ProveError::Unsupported("circuits with challenges".into())),
        Expression::Negated(a) => {
            let a = expression(b, layout, a)?;
            b.neg(a)
        }
        Expression::Sum(l, r) => {
            let (l, r) = (expression(b, layout, l)?, expression(b, layout, r)?);
            b.add(l, r)
        }
        Expression::Product(l, r) => {
            let (l, r) = (expression(b, layout, l)?, expression(b, layout, r)?);
            b.mul(l, r)
        }
        Expression::Scaled(a, c) => {
            let a = expression(b, layout, a)?;
            let c = b.constant(*c);
            b.mul(a, c)
        }
    })
}

/// θ^{m-1}·e_0 + … + e_{m-1}.
fn compress(b: &mut Builder, layout: &Layout, exprs: &[Expression<Fr>]) -> Result<u32, ProveError> {
    let terms = exprs.iter().map(|e| expression(b, layout, e)).collect::<Result<Vec<_>, _>>()?;
    let theta = b.scalar(THETA);
    Ok(b.fold(&terms, theta))
}

fn column_slot(layout: &Layout, column: &halo2_proofs::plonk::Column<Any>) -> usize {
    match column.column_type() {
        Any::Advice(_) => layout.advice(column.index()),
        Any::Fixed => layout.fixed(column.index()),
        Any::Instance => layout.instance(column.index()),
    }
}

/// The permutation argument's constraints, as halo2-axiom's verifier lists
/// them.
fn permutation_constraints(
    b: &mut Builder,
    layout: &Layout,
    cs: &ConstraintSystem<Fr>,
    chunk_len: usize,
    roots: &mut Vec<u32>,
) {
    let sets = layout.permutation_sets;
    if sets == 0 {
        return;
    }
    let last_row = -((cs.blinding_factors() + 1) as i32);
    let one = b.constant(Fr::ONE);
    let l0 = b.leaf(layout.l0(), 0);
    let l_last = b.leaf(layout.l_last(), 0);
    let l_active = b.leaf(layout.l_active(), 0);
    let (beta, gamma) = (b.scalar(BETA), b.scalar(GAMMA));
    let z = |b: &mut Builder, s: usize, rot: i32| b.leaf(layout.permutation_z(s), rot);

    // l_0 (1 − z_0)
    let z0 = z(b, 0, 0);
    let t = b.sub(one, z0);
    roots.push(b.mul(l0, t));
    // l_last (z_l² − z_l)
    let zl = z(b, sets - 1, 0);
    let sq = b.mul(zl, zl);
    let t = b.sub(sq, zl);
    roots.push(b.mul(l_last, t));
    // l_0 (z_i − z_{i−1}(ω^last X)) chains the sets.
    for s in 1..sets {
        let (cur, prev_last) = (z(b, s, 0), z(b, s - 1, last_row));
        let t = b.sub(cur, prev_last);
        roots.push(b.mul(l0, t));
    }
    // l_active (z_i(ωX) Π (p + β σ + γ) − z_i(X) Π (p + δ^j β X + γ))
    let x = b.x();
    let beta_x = b.mul(beta, x);
    for (s, chunk) in cs.permutation().get_columns().chunks(chunk_len).enumerate() {
        let mut left = z(b, s, 1);
        let mut right = z(b, s, 0);
        for (j, column) in chunk.iter().enumerate() {
            let global = s * chunk_len + j;
            let p = b.leaf(column_slot(layout, column), 0);
            let sigma = b.leaf(layout.sigma(global), 0);
            let bs = b.mul(beta, sigma);
            let t = b.add(p, bs);
            let t = b.add(t, gamma);
            left = b.mul(left, t);
            let delta = b.constant(Fr::DELTA.pow_vartime([global as u64]));
            let id = b.mul(beta_x, delta);
            let t = b.add(p, id);
            let t = b.add(t, gamma);
            right = b.mul(right, t);
        }
        let t = b.sub(left, right);
        roots.push(b.mul(l_active, t));
    }
}

/// One lookup argument's constraints, as halo2-axiom's verifier lists them.
fn lookup_constraints(b: &mut Builder, layout: &Layout, l: usize, input: u32, table: u32, roots: &mut Vec<u32>) {
    let one = b.constant(Fr::ONE);
    let l0 = b.leaf(layout.l0(), 0);
    let l_last = b.leaf(layout.l_last(), 0);
    let l_active = b.leaf(layout.l_active(), 0);
    let (beta, gamma) = (b.scalar(BETA), b.scalar(GAMMA));
    let z = b.leaf(layout.lookup_z(l), 0);
    let z_next = b.leaf(layout.lookup_z(l), 1);
    let a = b.leaf(layout.lookup_input(l), 0);
    let a_prev = b.leaf(layout.lookup_input(l), -1);
    let s = b.leaf(layout.lookup_table(l), 0);

    // l_0 (1 − z)
    let t = b.sub(one, z);
    roots.push(b.mul(l0, t));
    // l_last (z² − z)
    let sq = b.mul(z, z);
    let t = b.sub(sq, z);
    roots.push(b.mul(l_last, t));
    // l_active (z(ωX)(A' + β)(S' + γ) − z(X)(input + β)(table + γ))
    let ab = b.add(a, beta);
    let sg = b.add(s, gamma);
    let left = b.mul(z_next, ab);
    let left = b.mul(left, sg);
    let ib = b.add(input, beta);
    let tg = b.add(table, gamma);
    let right = b.mul(z, ib);
    let right = b.mul(right, tg);
    let t = b.sub(left, right);
    roots.push(b.mul(l_active, t));
    // l_0 (A' − S')
    let a_s = b.sub(a, s);
    roots.push(b.mul(l0, a_s));
    // l_active (A' − S')(A' − A'(ω⁻¹X))
    let a_a = b.sub(a, a_prev);
    let t = b.mul(a_s, a_a);
    roots.push(b.mul(l_active, t));
}
