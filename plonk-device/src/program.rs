//! Constraint programs as the device interprets them (`poly_program` in
//! kernels/cuda/poly.cu): register instructions of four words, with the
//! registers allocated so that a thread holds only the values still to be
//! read.
//!
//! Leaves, constants and scalars are not kept in registers between uses: a
//! leaf is a load from a column and a constant a load from a small table,
//! so each use loads it afresh into a register freed right after. Only
//! computed values (and the grid point X, which costs a power) live across
//! instructions, each from its definition to its last use.

use halo2_proofs::halo2curves::bn256::Fr;
use halo2_proofs::halo2curves::ff::Field;
use zkfarm_plonk::program::{Node, Program};

/// Registers per thread in `poly_program` (`PROGRAM_REGS`). The register
/// file is local memory that the device reserves for every resident
/// thread, so it is kept small; with operands ordered by need, the
/// quotient of a compiled model takes about ten.
pub const REGISTERS: u32 = 64;

const OP_LEAF: u32 = 0;
const OP_CONST: u32 = 1;
const OP_X: u32 = 2;
const OP_ADD: u32 = 3;
const OP_SUB: u32 = 4;
const OP_MUL: u32 = 5;
const OP_NEG: u32 = 6;

/// A program compiled for one grid: instructions, the constant table it
/// indexes (program constants, then the scalars, then X's first point and
/// step) and the register holding the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceProgram {
    pub code: Vec<u32>,
    pub consts: Vec<Fr>,
    pub output: u32,
    /// Registers the program uses at most.
    pub registers: u32,
}

impl DeviceProgram {
    pub fn instructions(&self) -> usize {
        self.code.len() / 4
    }
}

/// Why a program cannot run on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooManyRegisters {
    pub needed: u32,
}

/// How the device evaluates constraint programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKernel {
    /// `poly_program` interprets the instruction list: one kernel for
    /// every program, registers in local memory, at most [`REGISTERS`].
    Interpreted,
    /// Each program becomes CUDA source ([`cuda_source`]) compiled when
    /// first used (NVRTC on the GPU): straight-line code whose values the
    /// compiler keeps in the register file, and no register limit.
    Generated,
}

impl ProgramKernel {
    /// `ZKFARM_PROGRAM_KERNEL` (`interpreted` or `generated`), else the
    /// interpreter; an unknown value is an error that names it.
    pub fn from_env() -> anyhow::Result<ProgramKernel> {
        Self::named(std::env::var("ZKFARM_PROGRAM_KERNEL").ok().as_deref())
    }

    /// The kernel a value of `ZKFARM_PROGRAM_KERNEL` names (none: the interpreter).
    pub fn named(value: Option<&str>) -> anyhow::Result<ProgramKernel> {
        match value {
            None | Some("") | Some("interpreted") => Ok(ProgramKernel::Interpreted),
            Some("generated") => Ok(ProgramKernel::Generated),
            Some(other) => anyhow::bail!("ZKFARM_PROGRAM_KERNEL is {other:?}; it takes interpreted or generated"),
        }
    }

    /// The most registers a program may need on this kernel.
    pub fn registers(self) -> u32 {
        match self {
            ProgramKernel::Interpreted => REGISTERS,
            ProgramKernel::Generated => u32::MAX,
        }
    }
}

/// The kernel that [`cuda_source`] defines.
pub const GENERATED_KERNEL: &str = "zkfarm_program";

/// Programs with more multiplications than this call one out-of-line
/// multiplication instead of inlining each: a quotient of thousands of
/// products would otherwise be a kernel of millions of instructions, slow
/// to compile and too large for the instruction cache. The threshold is a
/// first guess, to be set by measuring on a GPU.
const INLINE_MULTIPLICATIONS: usize = 256;

/// CUDA source of one kernel, [`GENERATED_KERNEL`]`(Fr* out, const Fr*
/// const* leaves, const Fr* consts, u32 size)`, that computes `p` at every
/// point of its grid: the interpreter's work with each instruction spelled
/// out, so the compiler keeps the values in registers and no instruction
/// is decoded at run time. `consts` is `p.consts`, as for the interpreter;
/// the source depends on the program and the grid, not on the scalars.
pub fn cuda_source(p: &DeviceProgram) -> String {
    use std::fmt::Write;
    let muls = p.code.chunks_exact(4).filter(|i| i[0] == OP_MUL || i[0] == OP_X).count();
    let mut src = String::with_capacity(p.code.len() * 12 + 1024);
    src.push_str("#include \"field.cuh\"\n\n");
    if muls > INLINE_MULTIPLICATIONS {
        src.push_str("static __device__ __noinline__ Fr program_mul(Fr a, Fr b) { return Fr::mul(a, b); }\n");
    } else {
        src.push_str("static __device__ __forceinline__ Fr program_mul(Fr a, Fr b) { return Fr::mul(a, b); }\n");
    }
    let _ = write!(
        src,
        "\nextern \"C\" __global__ void {GENERATED_KERNEL}(Fr* out, const Fr* const* leaves, const Fr* consts, u32 size) {{\n\
         \x20   u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n\
         \x20   if (i >= size) return;\n"
    );
    let registers = p.registers.max(p.output + 1);
    for r in 0..registers {
        let _ = writeln!(src, "    Fr r{r};");
    }
    for ins in p.code.chunks_exact(4) {
        let [op, d, a, b] = [ins[0], ins[1], ins[2], ins[3]];
        let _ = match op {
            // b < size, so one subtraction wraps the row.
            OP_LEAF if b == 0 => writeln!(src, "    r{d} = leaves[{a}][i];"),
            OP_LEAF => {
                writeln!(src, "    {{ u32 at = i + {b}u; if (at >= size) at -= size; r{d} = leaves[{a}][at]; }}")
            }
            OP_CONST => writeln!(src, "    r{d} = consts[{a}];"),
            OP_X => writeln!(src, "    r{d} = program_mul(consts[{a}], fr_pow(consts[{b}], i));"),
            OP_ADD => writeln!(src, "    r{d} = Fr::add(r{a}, r{b});"),
            OP_SUB => writeln!(src, "    r{d} = Fr::sub(r{a}, r{b});"),
            OP_MUL => writeln!(src, "    r{d} = program_mul(r{a}, r{b});"),
            _ => writeln!(src, "    r{d} = Fr::neg(r{a});"),
        };
    }
    let _ = writeln!(src, "    out[i] = r{};\n}}", p.output);
    src
}

/// Compiles `program` for a grid of `size` points where a row spans
/// `step` points and X runs x0, x0·dx, …, within `max_registers` (see
/// [`ProgramKernel::registers`]).
pub fn compile_for(
    program: &Program,
    scalars: &[Fr],
    size: usize,
    step: usize,
    x0: Fr,
    dx: Fr,
    max_registers: u32,
) -> Result<DeviceProgram, TooManyRegisters> {
    let nodes = &program.nodes;
    let kept = |n: &Node| !matches!(n, Node::Leaf { .. } | Node::Constant(_) | Node::Scalar(_));

    // Constant table: the program's constants, the scalars, then x0 and dx.
    let mut consts: Vec<Fr> = Vec::new();
    let mut const_index = vec![0u32; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Node::Constant(c) = n {
            const_index[i] = consts.len() as u32;
            consts.push(*c);
        }
    }
    let scalar_base = consts.len() as u32;
    consts.extend_from_slice(scalars);
    let x_at = consts.len() as u32;
    consts.extend([x0, dx]);

    // Instructions in the order the output demands them: each value is
    // computed just before its first reader, so a fold over many terms
    // holds one term at a time rather than all of them.
    let out = program.output as usize;
    let order = demand_order(nodes, out, kept);
    // The position of the last instruction that reads each kept value (the
    // output is read after all of them).
    let mut last_use = vec![0usize; nodes.len()];
    for (at, &j) in order.iter().enumerate() {
        for op in operands(&nodes[j]) {
            last_use[op as usize] = at;
        }
    }
    last_use[out] = usize::MAX;

    let mut alloc = Registers::default();
    let mut reg = vec![u32::MAX; nodes.len()];
    let mut code = Vec::with_capacity(order.len() * 8);
    // A load of a leaf, constant or scalar into a fresh register.
    let load = |node: usize, alloc: &mut Registers, code: &mut Vec<u32>| -> u32 {
        let r = alloc.take();
        match nodes[node] {
            Node::Leaf { slot, rotation } => {
                let offset = (rotation as i64 * step as i64).rem_euclid(size as i64) as u32;
                code.extend([OP_LEAF, r, slot, offset]);
            }
            Node::Constant(_) => code.extend([OP_CONST, r, const_index[node], 0]),
            Node::Scalar(s) => code.extend([OP_CONST, r, scalar_base + s, 0]),
            _ => unreachable!("only leaves, constants and scalars are loaded"),
        }
        r
    };
    for (at, &j) in order.iter().enumerate() {
        let n = &nodes[j];
        // Operands: kept values from their registers, the rest loaded now.
        let mut temps = Vec::new();
        let mut regs = Vec::new();
        for op in operands(n) {
            let op = op as usize;
            if kept(&nodes[op]) {
                regs.push(reg[op]);
            } else {
                let r = load(op, &mut alloc, &mut code);
                temps.push(r);
                regs.push(r);
            }
        }
        // Operands read for the last time free their registers before the
        // result takes one: an instruction reads its operands first.
        for t in temps {
            alloc.free(t);
        }
        let mut freed = Vec::new();
        for op in operands(n) {
            let op = op as usize;
            if kept(&nodes[op]) && last_use[op] == at && !freed.contains(&op) {
                alloc.free(reg[op]);
                freed.push(op);
            }
        }
        let dst = alloc.take();
        reg[j] = dst;
        let ins = match *n {
            Node::X => [OP_X, dst, x_at, x_at + 1],
            Node::Add(..) => [OP_ADD, dst, regs[0], regs[1]],
            Node::Sub(..) => [OP_SUB, dst, regs[0], regs[1]],
            Node::Mul(..) => [OP_MUL, dst, regs[0], regs[1]],
            Node::Neg(_) => [OP_NEG, dst, regs[0], 0],
            _ => unreachable!("kept nodes are computed"),
        };
        code.extend(ins);
    }
    let output = if kept(&nodes[out]) { reg[out] } else { load(out, &mut alloc, &mut code) };
    if alloc.high > max_registers {
        return Err(TooManyRegisters { needed: alloc.high });
    }
    Ok(DeviceProgram { code, consts, output, registers: alloc.high })
}

/// The kept nodes that `out` depends on, each after its operands and in
/// the order a depth-first walk from `out` first needs them (iterative: a
/// fold over thousands of terms is that deep).
fn demand_order(nodes: &[Node], out: usize, kept: impl Fn(&Node) -> bool) -> Vec<usize> {
    // Registers each node needs to be computed from scratch, ignoring
    // sharing: a load takes one; an operation, the larger of its operands'
    // needs, or one more when they are equal.
    // Ties go to the deeper operand, so that a long chain (a fold) is
    // walked before the short term added to it, not below it.
    let mut need = vec![(1u32, 0u32); nodes.len()];
    for (j, n) in nodes.iter().enumerate() {
        let ops: Vec<(u32, u32)> = operands(n).map(|o| need[o as usize]).collect();
        need[j] = match ops[..] {
            [(a, da), (b, db)] => (if a == b { a + 1 } else { a.max(b) }, da.max(db) + 1),
            [(a, da)] => (a, da + 1),
            _ => (1, 0),
        };
    }
    let mut order = Vec::new();
    let mut done = vec![false; nodes.len()];
    // (node, whether its operands have been pushed)
    let mut stack = vec![(out, false)];
    while let Some((j, expanded)) = stack.pop() {
        if done[j] || !kept(&nodes[j]) {
            continue;
        }
        if expanded {
            done[j] = true;
            order.push(j);
            continue;
        }
        stack.push((j, true));
        // The operand that needs more registers is walked first (Sethi and
        // Ullman): its registers are free again when the other one starts.
        let mut ops: Vec<u32> = operands(&nodes[j]).collect();
        ops.sort_by_key(|&op| need[op as usize]);
        for &op in &ops {
            if !done[op as usize] {
                stack.push((op as usize, false));
            }
        }
    }
    order
}

fn operands(n: &Node) -> impl Iterator<Item = u32> {
    let (a, b) = match *n {
        Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) => (Some(a), Some(b)),
        Node::Neg(a) => (Some(a), None),
        _ => (None, None),
    };
    a.into_iter().chain(b)
}

/// Free registers, lowest first, and the most ever in use.
#[derive(Default)]
struct Registers {
    free: Vec<u32>,
    next: u32,
    high: u32,
}

impl Registers {
    fn take(&mut self) -> u32 {
        let r = match self.free.pop() {
            Some(r) => r,
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        self.high = self.high.max(self.next);
        r
    }

    fn free(&mut self, r: u32) {
        self.free.push(r);
        // Lowest on top, so that the register file stays compact.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}

/// Runs compiled code at one point the way the kernel does: the reference
/// the compiler is tested against, next to [`Program::evaluate_at`].
pub fn run_at(p: &DeviceProgram, leaf: impl Fn(u32, u32) -> Fr, i: u64) -> Fr {
    let mut r = vec![Fr::ZERO; p.registers.max(p.output + 1) as usize];
    for ins in p.code.chunks_exact(4) {
        let [op, dst, a, b] = [ins[0], ins[1], ins[2], ins[3]];
        let v = match op {
            OP_LEAF => leaf(a, b),
            OP_CONST => p.consts[a as usize],
            OP_X => p.consts[a as usize] * p.consts[b as usize].pow_vartime([i]),
            OP_ADD => r[a as usize] + r[b as usize],
            OP_SUB => r[a as usize] - r[b as usize],
            OP_MUL => r[a as usize] * r[b as usize],
            _ => -r[a as usize],
        };
        r[dst as usize] = v;
    }
    r[p.output as usize]
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use zkfarm_plonk::program::Builder;

    use super::*;

    /// A random program over three columns with rotations, constants,
    /// scalars and X, shaped like a folded constraint system: many terms,
    /// each a small product, folded with a scalar.
    fn random_program(rng: &mut ChaCha20Rng, terms: usize) -> Program {
        let mut b = Builder::default();
        let y = b.scalar(1);
        let x = b.x();
        let mut folded = Vec::new();
        let mut shared = Vec::new();
        for t in 0..terms {
            let l1 = b.leaf(rng.gen_range(0..3), rng.gen_range(-2..=2));
            let l2 = b.leaf(rng.gen_range(0..3), rng.gen_range(-1..=1));
            let c = b.constant(Fr::from(rng.gen_range(1..50u64)));
            let p = b.mul(l1, l2);
            let q = b.sub(p, c);
            let q = if t % 5 == 0 { b.mul(q, x) } else { q };
            let q = if t % 7 == 0 { b.neg(q) } else { q };
            // A value kept for a later term: a CSE-shared subexpression.
            if t % 3 == 0 {
                shared.push(q);
            }
            // Shared values are read again a few terms later, as the
            // compiler's shared subexpressions are.
            let recent = shared.len().saturating_sub(4);
            let q = match shared.get(rng.gen_range(recent..shared.len().max(recent + 1))) {
                Some(&s) if t % 4 == 0 => b.add(q, s),
                _ => q,
            };
            let s0 = b.scalar(0);
            folded.push(b.mul(q, s0));
        }
        let out = b.fold(&folded, y);
        b.finish(out)
    }

    #[test]
    fn compiled_code_computes_what_the_program_computes() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (size, step) = (64usize, 4usize);
        let cols: Vec<Vec<Fr>> = (0..3).map(|_| (0..size).map(|_| Fr::random(&mut rng)).collect()).collect();
        let scalars = [Fr::from(3), Fr::from(11)];
        let (x0, dx) = (Fr::from(7), Fr::from(5));
        for terms in [1, 2, 10, 200] {
            let program = random_program(&mut rng, terms);
            let compiled = compile_for(&program, &scalars, size, step, x0, dx, REGISTERS).unwrap();
            assert!(compiled.registers <= REGISTERS);
            for i in [0usize, 1, 17, size - 1] {
                let x = x0 * dx.pow_vartime([i as u64]);
                let reference = program.evaluate_at(
                    |slot, rot| {
                        cols[slot as usize][(i as i64 + rot as i64 * step as i64).rem_euclid(size as i64) as usize]
                    },
                    &scalars,
                    x,
                );
                let got = run_at(&compiled, |slot, off| cols[slot as usize][(i + off as usize) % size], i as u64);
                assert_eq!(got, reference, "{terms} terms, point {i}");
            }
        }
    }

    /// Generated kernels, compiled by the emulator, compute what the
    /// programs compute: short programs with inlined products and long ones
    /// with the out-of-line product, rotations wrapping both ways.
    #[test]
    fn generated_kernels_compute_what_the_program_computes() {
        use zkfarm_kernels::backend::{upload_fr, Arg, Backend as _};
        use zkfarm_kernels::layout::read_fr_into;
        use zkfarm_kernels_emu::Emu;

        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (size, step) = (96usize, 4usize);
        let cols: Vec<Vec<Fr>> = (0..3).map(|_| (0..size).map(|_| Fr::random(&mut rng)).collect()).collect();
        let scalars = [Fr::from(3), Fr::random(&mut rng)];
        let (x0, dx) = (Fr::from(7), Fr::random(&mut rng));
        let e = Emu;
        let leaves: Vec<_> = cols.iter().map(|c| upload_fr(&e, c).unwrap()).collect();
        let leaf_refs: Vec<_> = leaves.iter().collect();
        for terms in [1, 10, 300] {
            let program = random_program(&mut rng, terms);
            let compiled = compile_for(&program, &scalars, size, step, x0, dx, u32::MAX).unwrap();
            let source = cuda_source(&compiled);
            let muls = compiled.code.chunks_exact(4).filter(|i| i[0] == OP_MUL || i[0] == OP_X).count();
            assert_eq!(source.contains("__noinline__"), muls > INLINE_MULTIPLICATIONS, "{terms} terms");
            let kernel = e.compile_kernel(&source, GENERATED_KERNEL).unwrap();
            let consts = upload_fr(&e, &compiled.consts).unwrap();
            let out = e.alloc_uninit(size * 8).unwrap();
            let args = [Arg::Buf(&out), Arg::Bufs(&leaf_refs), Arg::Buf(&consts), Arg::U32(size as u32)];
            e.launch_compiled(&kernel, 3, 32, &args).unwrap();
            let mut got = vec![Fr::ZERO; size];
            read_fr_into(&mut got, |w| e.download(&out, 0, w)).unwrap();
            for (i, got) in got.iter().enumerate() {
                let want = run_at(&compiled, |slot, off| cols[slot as usize][(i + off as usize) % size], i as u64);
                assert_eq!(*got, want, "{terms} terms, point {i}");
            }
        }
    }

    #[test]
    fn the_program_kernel_switch_names_its_choices() {
        assert_eq!(ProgramKernel::named(None).unwrap(), ProgramKernel::Interpreted);
        assert_eq!(ProgramKernel::named(Some("generated")).unwrap(), ProgramKernel::Generated);
        let err = ProgramKernel::named(Some("jit")).unwrap_err().to_string();
        assert!(err.contains("ZKFARM_PROGRAM_KERNEL is \"jit\""), "{err}");
    }

    #[test]
    fn registers_track_live_values_not_instructions() {
        // A long fold of distinct terms needs a handful of registers,
        // however many there are.
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let mut b = Builder::default();
        let y = b.scalar(0);
        let terms: Vec<u32> = (0..500)
            .map(|i| {
                let l = b.leaf(rng.gen_range(0..3), i);
                let m = b.leaf(rng.gen_range(0..3), -1);
                b.mul(l, m)
            })
            .collect();
        let out = b.fold(&terms, y);
        let p = compile_for(&b.finish(out), &[Fr::ONE], 8, 1, Fr::ONE, Fr::ONE, REGISTERS).unwrap();
        assert!(p.registers <= 4, "{} registers", p.registers);
        // An output that is a bare leaf is loaded.
        let mut b = Builder::default();
        let l = b.leaf(2, -1);
        let p = compile_for(&b.finish(l), &[], 8, 2, Fr::ONE, Fr::ONE, REGISTERS).unwrap();
        assert_eq!(p.code, vec![OP_LEAF, 0, 2, 6]);
    }
}
