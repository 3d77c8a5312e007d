//! Every step of the device backend, run by the CPU emulation of the
//! kernels, against the CPU backend on the same inputs: the results must be
//! equal element for element (a proof made on the device must equal the
//! CPU's byte for byte). Sizes cross the kernels' block and chunk
//! boundaries: 2^12 rows are two scan blocks and sixteen division chunks,
//! and the extended coset is 2^14.

use std::sync::{Arc, OnceLock};

use halo2_proofs::halo2curves::bn256::{Bn256, Fr};
use halo2_proofs::halo2curves::ff::Field;
use halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_proofs::poly::EvaluationDomain;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfarm_kernels::gpu::Gpu;
use zkfarm_kernels_emu::Emu;
use zkfarm_plonk::backend::{Factor, Unmatched};
use zkfarm_plonk::domain::Grid;
use zkfarm_plonk::program::{Builder, Program};
use zkfarm_plonk::{Backend, Basis, CpuBackend, Domain};
use zkfarm_plonk_device::{DeviceBackend, DeviceBases, ProgramKernel};

const K: u32 = 12;

struct Pair<D: zkfarm_kernels::backend::Backend> {
    cpu: CpuBackend,
    dev: DeviceBackend<D>,
}

fn params() -> &'static Arc<ParamsKZG<Bn256>> {
    static P: OnceLock<Arc<ParamsKZG<Bn256>>> = OnceLock::new();
    P.get_or_init(|| Arc::new(ParamsKZG::<Bn256>::setup(K, ChaCha20Rng::seed_from_u64(2))))
}

fn domain() -> Domain {
    // Constraint degree 4: a quotient of 3 pieces on an extended domain of 2^(k+2).
    Domain::of(&EvaluationDomain::<Fr>::new(4, K))
}

fn pair_on<D: zkfarm_kernels::backend::Backend>(device: Arc<D>) -> Pair<D> {
    pair_with(device, false)
}

/// With `tables`, the bases' MSMs go through tables of their multiples.
fn pair_with<D: zkfarm_kernels::backend::Backend>(device: Arc<D>, tables: bool) -> Pair<D> {
    let params = params();
    let bases = Arc::new(DeviceBases::upload_with(device, params, tables).unwrap());
    Pair { cpu: CpuBackend::new(domain(), params.clone()), dev: DeviceBackend::new(domain(), bases).unwrap() }
}

fn emu() -> &'static Pair<Emu> {
    static P: OnceLock<Pair<Emu>> = OnceLock::new();
    P.get_or_init(|| pair_on(Arc::new(Emu)))
}

fn random(len: usize, seed: u64) -> Vec<Fr> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..len).map(|_| Fr::random(&mut rng)).collect()
}

/// Where two vectors differ, summarised: a failing test prints the count
/// and the first index, not the vectors.
fn same(what: &str, got: &[Fr], want: &[Fr]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let diffs: Vec<usize> = got.iter().zip(want).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
    assert!(diffs.is_empty(), "{what}: {} of {} elements differ, the first at {}", diffs.len(), got.len(), diffs[0]);
}

impl<D: zkfarm_kernels::backend::Backend> Pair<D> {
    fn up(&self, v: &[Fr]) -> zkfarm_plonk_device::DevicePoly<D> {
        self.dev.upload(v.to_vec()).unwrap()
    }

    fn down(&self, p: &zkfarm_plonk_device::DevicePoly<D>) -> Vec<Fr> {
        self.dev.download(p).unwrap()
    }

    fn transforms(&self) {
        let d = domain();
        let values = random(d.n, 1);
        let (c, g) = (&self.cpu, &self.up(&values));
        let coeffs = c.lagrange_to_coeff(&[&values]).unwrap().remove(0);
        let dev_coeffs = self.dev.lagrange_to_coeff(&[g]).unwrap().remove(0);
        same("lagrange_to_coeff", &self.down(&dev_coeffs), &coeffs);
        let ext = c.coeff_to_extended(&[&coeffs]).unwrap().remove(0);
        let dev_ext = self.dev.coeff_to_extended(&[&dev_coeffs]).unwrap().remove(0);
        same("coeff_to_extended", &self.down(&dev_ext), &ext);
        let wide = random(d.extended_n, 2);
        let dev_wide = self.up(&wide);
        for len in [d.extended_n, 3 * d.n, 5] {
            let want = c.extended_to_coeff(&wide, len).unwrap();
            same("extended_to_coeff", &self.down(&self.dev.extended_to_coeff(&dev_wide, len).unwrap()), &want);
        }
        let mut want = wide.clone();
        c.divide_by_vanishing(&mut want).unwrap();
        let mut got = self.up(&wide);
        self.dev.divide_by_vanishing(&mut got).unwrap();
        same("divide_by_vanishing", &self.down(&got), &want);
        let pieces = self.dev.split(&dev_wide, 3 * d.n / 2).unwrap();
        let want = c.split(&wide, 3 * d.n / 2).unwrap();
        assert_eq!(pieces.len(), want.len());
        for (p, w) in pieces.iter().zip(&want) {
            same("split", &self.down(p), w);
        }
    }

    fn commitments(&self) {
        let d = domain();
        let values = random(d.n, 3);
        // Small integers of both signs: the MSM's short path, as witness columns are.
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let small: Vec<Fr> = (0..d.n).map(|_| Fr::from(rng.gen_range(0..1000u64)) - Fr::from(500)).collect();
        let short = values[..37].to_vec();
        for basis in [Basis::Lagrange, Basis::Monomial] {
            let polys = [&values, &small, &short];
            let want = self.cpu.commit(&polys, basis).unwrap();
            let dev: Vec<_> = polys.iter().map(|p| self.up(p)).collect();
            let got = self.dev.commit(&dev.iter().collect::<Vec<_>>(), basis).unwrap();
            assert_eq!(got, want, "{} commitments", basis.name());
        }
    }

    fn grand_products(&self) {
        let n = domain().n;
        let (p, q, r) = (random(n, 5), random(n, 6), random(n, 7));
        let (s, c) = (Fr::from(7), Fr::from(9));
        let (gp, gq, gr) = (self.up(&p), self.up(&q), self.up(&r));
        let blinding = random(5, 8);
        let want = self.cpu.grand_product(
            &[Factor { a: &p, b: Some((&q, s)), c }, Factor { a: &r, b: None, c: s }],
            &[Factor { a: &q, b: None, c }, Factor { a: &r, b: Some((&p, c)), c: s }],
            Fr::from(2),
            &blinding,
        );
        let got = self.dev.grand_product(
            &[Factor { a: &gp, b: Some((&gq, s)), c }, Factor { a: &gr, b: None, c: s }],
            &[Factor { a: &gq, b: None, c }, Factor { a: &gr, b: Some((&gp, c)), c: s }],
            Fr::from(2),
            &blinding,
        );
        let ((want_z, want_last), (got_z, got_last)) = (want.unwrap(), got.unwrap());
        same("grand product", &self.down(&got_z), &want_z);
        assert_eq!(got_last, want_last);
    }

    fn lookups(&self) {
        let n = domain().n;
        let bf = 5;
        let usable = n - bf - 1;
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        // A table of 0..300 with some values twice and large ones; inputs
        // drawn from it with many repeats.
        let mut table: Vec<Fr> = (0..n as u64).map(|i| Fr::from(i % 300)).collect();
        table[7] = -Fr::from(3);
        table[8] = Fr::random(&mut rng);
        let input: Vec<Fr> = (0..n).map(|_| table[rng.gen_range(0..usable)]).collect();
        let (ib, tb) = (random(n - usable, 10), random(n - usable, 11));
        let want = self.cpu.lookup_permute(&input, &table, usable, &ib, &tb).unwrap().unwrap();
        let (gi, gt) = (self.up(&input), self.up(&table));
        let got = self.dev.lookup_permute(&gi, &gt, usable, &ib, &tb).unwrap().unwrap();
        same("permuted input", &self.down(&got.0), &want.0);
        same("permuted table", &self.down(&got.1), &want.1);
        // An input the table lacks is named by its row, as the CPU names it.
        let mut bad = input.clone();
        bad[1234] = Fr::from(100_000);
        bad[2000] = Fr::from(100_000);
        bad[3000] = Fr::from(99_999);
        let want = self.cpu.lookup_permute(&bad, &table, usable, &ib, &tb).unwrap().map(drop);
        let got = self.dev.lookup_permute(&self.up(&bad), &gt, usable, &ib, &tb).unwrap().map(drop);
        assert_eq!(want, Err(Unmatched { row: 3000 }));
        assert_eq!(got, want);
    }

    fn programs(&self) {
        let d = domain();
        let program = sample_program();
        let scalars = [Fr::from(5), Fr::from(3)];
        for (grid, size) in [(Grid::Rows, d.n), (Grid::Extended, d.extended_n)] {
            let leaves = [random(size, 12), random(size, 13), random(size, 14)];
            let want = self.cpu.evaluate_program(&program, &[&leaves[0], &leaves[1], &leaves[2]], &scalars, grid);
            let dev: Vec<_> = leaves.iter().map(|l| self.up(l)).collect();
            let got = self.dev.evaluate_program(&program, &dev.iter().collect::<Vec<_>>(), &scalars, grid).unwrap();
            same(&format!("program on {grid:?}"), &self.down(&got), &want.unwrap());
        }
    }

    fn openings(&self) {
        let d = domain();
        let (p, q) = (random(d.n, 15), random(3 * d.n, 16));
        let short = p[..100].to_vec();
        let (gp, gq, gs) = (self.up(&p), self.up(&q), self.up(&short));
        let (x, y) = (Fr::from(123456789), Fr::random(ChaCha20Rng::seed_from_u64(17)));
        let want = self.cpu.evaluate_at(&[(&p, x), (&q, y), (&short, x), (&p, y)]).unwrap();
        let got = self.dev.evaluate_at(&[(&gp, x), (&gq, y), (&gs, x), (&gp, y)]).unwrap();
        assert_eq!(got, want, "evaluations");
        let low = [Fr::ONE, Fr::from(2)];
        let want = self.cpu.linear_combination(&[(&p, x), (&short, y), (&q, Fr::from(3))], &low).unwrap();
        let got = self.dev.linear_combination(&[(&gp, x), (&gs, y), (&gq, Fr::from(3))], &low).unwrap();
        same("linear combination", &self.down(&got), &want);
        for roots in [vec![x], vec![x, y, Fr::from(3)]] {
            let want = self.cpu.divide_by_linear(&q, &roots).unwrap();
            let got = self.dev.divide_by_linear(&gq, &roots).unwrap();
            same(&format!("division by {} roots", roots.len()), &self.down(&got), &want);
        }
        let tiny = self.up(&[Fr::from(4)]);
        assert_eq!(self.down(&self.dev.divide_by_linear(&tiny, &[x]).unwrap()), vec![Fr::ZERO]);
    }
}

/// Gates of the shapes the constraint compiler emits: rotations both ways,
/// constants, scalars, the grid point and a fold with a scalar.
fn sample_program() -> Program {
    let mut b = Builder::default();
    let (a, a_next, c_prev, t) = (b.leaf(0, 0), b.leaf(0, 1), b.leaf(1, -1), b.leaf(2, 0));
    let x = b.x();
    let (y, beta) = (b.scalar(0), b.scalar(1));
    let seven = b.constant(Fr::from(7));
    let g1 = b.mul(a, a_next);
    let g1 = b.sub(g1, c_prev);
    let g2 = b.add(t, beta);
    let g2 = b.mul(g2, x);
    let g2 = b.neg(g2);
    let g3 = b.sub(a, seven);
    let g3 = b.mul(g3, g1);
    let out = b.fold(&[g1, g2, g3, t], y);
    b.finish(out)
}

#[test]
fn transforms_equal_the_cpu_backends() {
    emu().transforms();
}

#[test]
fn commitments_equal_the_cpu_backends() {
    emu().commitments();
}

#[test]
fn commitments_through_msm_tables_equal_the_cpu_backends() {
    pair_with(Arc::new(Emu), true).commitments();
}

#[test]
fn generated_program_kernels_equal_the_cpu_backends() {
    let mut p = pair_on(Arc::new(Emu));
    p.dev = p.dev.with_programs(ProgramKernel::Generated);
    p.programs();
}

#[test]
fn grand_products_equal_the_cpu_backends() {
    emu().grand_products();
}

#[test]
fn lookup_permutations_equal_the_cpu_backends() {
    emu().lookups();
}

#[test]
fn constraint_programs_equal_the_cpu_backends() {
    emu().programs();
}

#[test]
fn evaluations_combinations_and_divisions_equal_the_cpu_backends() {
    emu().openings();
}

#[test]
fn polynomials_are_metered_while_they_live() {
    // A backend of its own: the other tests' polynomials come and go.
    let p = pair_on(Arc::new(Emu));
    let meter = p.dev.meter();
    let before = meter.live();
    let poly = p.up(&random(1000, 18));
    assert_eq!(meter.live() - before, 1000 * 32);
    assert!(meter.peak() >= meter.live());
    drop(poly);
    assert_eq!(meter.live(), before);
}

/// All of the above on the GPU, where there is one.
#[test]
fn every_step_on_the_gpu_equals_the_cpu_backends() {
    let gpu = match Gpu::open() {
        Ok(g) => Arc::new(g),
        Err(e) => {
            assert!(std::env::var_os("ZKFARM_REQUIRE_GPU").is_none(), "no GPU: {e:#}");
            eprintln!("skipped: {e:#}");
            return;
        }
    };
    let p = pair_on(gpu.clone());
    p.transforms();
    p.commitments();
    p.grand_products();
    p.lookups();
    p.programs();
    p.openings();
    pair_with(gpu.clone(), true).commitments();
    let mut p = pair_on(gpu);
    p.dev = p.dev.with_programs(ProgramKernel::Generated);
    p.programs();
}
