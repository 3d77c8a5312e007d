//! Constraint programs: expressions flattened into a list of instructions
//! over column-rotation, constant and scalar operands, with common
//! subexpressions shared, evaluated independently at every point of a grid.
//!
//! A program is built once per proving key. Each backend runs the same
//! instruction list: the CPU backend interprets it row-parallel; a GPU
//! backend can interpret it in a kernel or generate source from it.

use std::collections::HashMap;

use halo2_proofs::halo2curves::bn256::Fr;
use halo2_proofs::halo2curves::ff::Field;

/// One instruction. Operands name earlier instructions by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A polynomial (by slot) at a rotation of the current row.
    Leaf {
        slot: u32,
        rotation: i32,
    },
    Constant(Fr),
    /// A scalar known only at proving time (a challenge), by index.
    Scalar(u32),
    /// The grid point itself: ω^i on the rows, ζ·ω_ext^i on the coset.
    X,
    Add(u32, u32),
    Sub(u32, u32),
    Mul(u32, u32),
    Neg(u32),
}

/// Points per block when a backend evaluates a program on the CPU.
const BLOCK: usize = 32;

/// A flat program with one output.
#[derive(Clone, Debug)]
pub struct Program {
    pub nodes: Vec<Node>,
    pub output: u32,
    /// How many leaf slots the program reads (the operand table's length).
    pub slots: usize,
}

/// Builds a program, sharing every repeated subexpression.
#[derive(Default)]
pub struct Builder {
    nodes: Vec<Node>,
    index: HashMap<Node, u32>,
}

impl Builder {
    pub fn push(&mut self, node: Node) -> u32 {
        // Sums and products are commutative: one order for both operands
        // lets `a*b` and `b*a` share an instruction.
        let node = match node {
            Node::Add(a, b) if b < a => Node::Add(b, a),
            Node::Mul(a, b) if b < a => Node::Mul(b, a),
            other => other,
        };
        if let Some(&i) = self.index.get(&node) {
            return i;
        }
        let i = self.nodes.len() as u32;
        self.nodes.push(node);
        self.index.insert(node, i);
        i
    }

    pub fn leaf(&mut self, slot: usize, rotation: i32) -> u32 {
        self.push(Node::Leaf { slot: slot as u32, rotation })
    }

    pub fn constant(&mut self, c: Fr) -> u32 {
        self.push(Node::Constant(c))
    }

    pub fn scalar(&mut self, i: usize) -> u32 {
        self.push(Node::Scalar(i as u32))
    }

    pub fn x(&mut self) -> u32 {
        self.push(Node::X)
    }

    pub fn add(&mut self, a: u32, b: u32) -> u32 {
        self.push(Node::Add(a, b))
    }

    pub fn sub(&mut self, a: u32, b: u32) -> u32 {
        self.push(Node::Sub(a, b))
    }

    pub fn mul(&mut self, a: u32, b: u32) -> u32 {
        self.push(Node::Mul(a, b))
    }

    pub fn neg(&mut self, a: u32) -> u32 {
        self.push(Node::Neg(a))
    }

    /// Horner's rule: ((t0·s + t1)·s + t2)… — the order the verifier folds
    /// lookup columns with θ and constraints with y.
    pub fn fold(&mut self, terms: &[u32], s: u32) -> u32 {
        let mut acc = self.constant(Fr::ZERO);
        for &t in terms {
            let scaled = self.mul(acc, s);
            acc = self.add(scaled, t);
        }
        acc
    }

    pub fn finish(self, output: u32) -> Program {
        let slots = self
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Leaf { slot, .. } => Some(*slot as usize + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Program { nodes: self.nodes, output, slots }
    }
}

impl Program {
    /// Evaluates the program at points `start..start + out.len()` of a grid
    /// of `size` points, where one row spans `step` points, the first point
    /// is `x0` and consecutive points differ by the factor `dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_range(
        &self,
        leaves: &[&[Fr]],
        scalars: &[Fr],
        size: usize,
        step: usize,
        x0: Fr,
        dx: Fr,
        start: usize,
        out: &mut [Fr],
    ) {
        // Instruction by instruction over a block of points: each one is a
        // tight loop over arrays rather than a dispatch per point, and a
        // block's registers stay in cache.
        let mut regs = vec![[Fr::ZERO; BLOCK]; self.nodes.len()];
        // Rotations are offsets modulo the grid size, computed once.
        let offsets: Vec<usize> = self
            .nodes
            .iter()
            .map(|n| match n {
                Node::Leaf { rotation, .. } => (*rotation as i64 * step as i64).rem_euclid(size as i64) as usize,
                _ => 0,
            })
            .collect();
        // Constants and scalars are the same at every point.
        for (r, node) in regs.iter_mut().zip(&self.nodes) {
            match *node {
                Node::Constant(c) => r.fill(c),
                Node::Scalar(s) => r.fill(scalars[s as usize]),
                _ => {}
            }
        }
        // Builders make one X node at most, so X advances once per block.
        let mut x = x0 * dx.pow_vartime([start as u64]);
        for (b, chunk) in out.chunks_mut(BLOCK).enumerate() {
            let base = start + b * BLOCK;
            let len = chunk.len();
            for (j, node) in self.nodes.iter().enumerate() {
                // Operands are earlier instructions.
                let (done, rest) = regs.split_at_mut(j);
                let r = &mut rest[0][..len];
                match *node {
                    Node::Leaf { slot, .. } => {
                        let column = leaves[slot as usize];
                        let mut at = base + offsets[j];
                        if at >= size {
                            at -= size;
                        }
                        for v in r.iter_mut() {
                            *v = column[at];
                            at += 1;
                            if at == size {
                                at = 0;
                            }
                        }
                    }
                    Node::Constant(_) | Node::Scalar(_) => {}
                    Node::X => {
                        for v in r.iter_mut() {
                            *v = x;
                            x *= dx;
                        }
                    }
                    Node::Add(a, c) => {
                        for ((v, p), q) in r.iter_mut().zip(&done[a as usize]).zip(&done[c as usize]) {
                            *v = *p + q;
                        }
                    }
                    Node::Sub(a, c) => {
                        for ((v, p), q) in r.iter_mut().zip(&done[a as usize]).zip(&done[c as usize]) {
                            *v = *p - q;
                        }
                    }
                    Node::Mul(a, c) => {
                        for ((v, p), q) in r.iter_mut().zip(&done[a as usize]).zip(&done[c as usize]) {
                            *v = *p * q;
                        }
                    }
                    Node::Neg(a) => {
                        for (v, p) in r.iter_mut().zip(&done[a as usize]) {
                            *v = -*p;
                        }
                    }
                }
            }
            chunk.copy_from_slice(&regs[self.output as usize][..len]);
        }
    }

    /// The program at one point, from a closure giving leaf values: the
    /// plain reference the backends are tested against.
    pub fn evaluate_at(&self, leaf: impl Fn(u32, i32) -> Fr, scalars: &[Fr], x: Fr) -> Fr {
        let mut regs: Vec<Fr> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let v = match *node {
                Node::Leaf { slot, rotation } => leaf(slot, rotation),
                Node::Constant(c) => c,
                Node::Scalar(s) => scalars[s as usize],
                Node::X => x,
                Node::Add(a, b) => regs[a as usize] + regs[b as usize],
                Node::Sub(a, b) => regs[a as usize] - regs[b as usize],
                Node::Mul(a, b) => regs[a as usize] * regs[b as usize],
                Node::Neg(a) => -regs[a as usize],
            };
            regs.push(v);
        }
        regs[self.output as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subexpressions_are_built_once_and_evaluate_like_the_tree() {
        let mut b = Builder::default();
        let (a, c) = (b.leaf(0, 0), b.leaf(1, -1));
        let ab = b.mul(a, c);
        let ba = b.mul(c, a);
        assert_eq!(ab, ba);
        let two = b.constant(Fr::from(2));
        let s = b.scalar(0);
        let t = b.sub(ab, two);
        let out = b.fold(&[ab, t], s);
        let p = b.finish(out);
        assert_eq!(p.slots, 2);
        let col0 = [Fr::from(3), Fr::from(5), Fr::from(7), Fr::from(11)];
        let col1 = [Fr::from(13), Fr::from(17), Fr::from(19), Fr::from(23)];
        let mut out = [Fr::ZERO; 4];
        let y = Fr::from(10);
        p.evaluate_range(&[&col0, &col1], &[y], 4, 1, Fr::ONE, Fr::ONE, 0, &mut out);
        for (row, v) in out.iter().enumerate() {
            let prod = col0[row] * col1[(row + 3) % 4];
            assert_eq!(*v, prod * y + prod - Fr::from(2), "row {row}");
        }
    }
}
